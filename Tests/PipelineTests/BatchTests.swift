import Foundation
import Pipeline
import Tensors
import Testing
import TestSupport

/// `restore`'s batches: inputs expanded, outputs named before any work, failures per --keep-going.
@Suite struct BatchTests {
    /// A folder of six inputs: four PNGs (one in a subfolder with the name of another), one corrupt
    /// JPEG, one text file (not an image, ignored); one output exists already.
    static func folder() throws -> (TemporaryDirectory, String, String) {
        let dir = TemporaryDirectory()
        let input = dir.file("in"), output = dir.file("out")
        for d in [input, input + "/sub", output] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        let png = Fixtures.path("photos/astronaut-lq.png")
        for name in ["a.png", "b.PNG", "sub/a.png", "c.png"] { try copyFile(png, input + "/" + name) }
        // A JPEG cut short: its header reads, its data does not.
        let jpeg = try ImageFile.encode(Image(width: 16, height: 16, channels: 3, bitDepth: 8, samples: [UInt16](repeating: 90, count: 768)), format: .jpeg)
        _ = FileManager.default.createFile(atPath: input + "/bad.jpg", contents: Data(jpeg.prefix(jpeg.count / 2)))
        _ = FileManager.default.createFile(atPath: input + "/notes.txt", contents: Data("text".utf8))
        _ = FileManager.default.createFile(atPath: output + "/c.png", contents: Data("old".utf8))
        return (dir, input, output)
    }

    @Test func foldersCollisionsAndExistingOutputs() throws {
        let (dir, input, output) = try Self.folder()
        _ = dir
        let flat = try Batch.expand([input], recursive: false)
        #expect(flat.map(\.relative) == ["a.png", "b.PNG", "bad.jpg", "c.png"])
        let all = try Batch.expand([input], recursive: true)
        #expect(all.map(\.relative) == ["a.png", "b.PNG", "bad.jpg", "c.png", "sub/a.png"])
        // An existing output stops the batch before it starts, naming the file and the ways out.
        var notes: [String] = []
        let refusal = #expect(throws: BatchError.self) { try Batch.plan(flat, output: output, overwrite: false, skipExisting: false, notes: &notes) }
        #expect(refusal?.description.contains("c.png exists; pass --overwrite") == true)
        // Recursive into a new folder: the subfolder kept; with --skip-existing, the existing one skipped.
        let items = try Batch.plan(all, output: output, overwrite: false, skipExisting: true, notes: &notes)
        #expect(items.map { String($0.output.dropFirst(output.count + 1)) } == ["a.png", "b.png", "bad.png", "c.png", "sub/a.png"])
        #expect(items.map(\.skip) == [false, false, false, true, false])
        #expect(FileManager.default.fileExists(atPath: output + "/sub"))
        // Flat: the two a.png collide once the subfolder is given as a file too.
        notes = []
        let collided = try Batch.plan(flat + [(input + "/sub/a.png", "a.png")], output: output, overwrite: true, skipExisting: false, notes: &notes)
        #expect(collided.last?.output == output + "/a-2.png")
        #expect(notes.count == 1 && notes[0].contains("a-2.png"))
    }

    /// A bad input stops the batch, or with keepGoing is recorded and the rest done; outputs are
    /// written atomically, so a failed image leaves nothing.
    @Test(arguments: [false, true])
    func failuresAndKeepGoing(keepGoing: Bool) throws {
        let (dir, input, output) = try Self.folder()
        _ = dir
        var notes: [String] = []
        let items = try Batch.plan(try Batch.expand([input], recursive: true), output: output, overwrite: false, skipExisting: true, notes: &notes)
        let outcome = Batch.run(items, keepGoing: keepGoing) { item, _ in
            // The work of a restore: decode (the corrupt file throws here), then write atomically.
            let image = try ImageFile.read(item.input)
            try ImageFile.write(image, to: item.output, format: item.format)
        }
        #expect(outcome.failed.map { FilePaths.fileName(of: $0.item.input) } == ["bad.jpg"])
        #expect(outcome.failed.first?.error.contains("JPEG") == true, "\(outcome.failed.first?.error ?? "")")
        let written = (try FileManager.default.subpathsOfDirectory(atPath: output)).filter { $0.hasSuffix(".png") }.sorted()
        if keepGoing {
            #expect(outcome.done.count == 3 && outcome.skipped.count == 1)
            #expect(written == ["a.png", "b.png", "c.png", "sub/a.png"])
        } else {
            #expect(outcome.done.count == 2)
            #expect(written == ["a.png", "b.png", "c.png"])
        }
        // Nothing half-written: no temporary files, the skipped output untouched.
        #expect((try FileManager.default.subpathsOfDirectory(atPath: output)).allSatisfy { !$0.contains(".tmp-") })
        #expect(try String(contentsOfFile: output + "/c.png", encoding: .utf8) == "old")
    }

    @Test func unknownOutputFormatsAndMissingInputsAreRefused() throws {
        let dir = TemporaryDirectory()
        let png = dir.file("x.png")
        try copyFile(Fixtures.path("photos/astronaut-lq.png"), png)
        var notes: [String] = []
        let bmp = #expect(throws: BatchError.self) { try Batch.plan([(png, "x.png")], output: dir.file("y.bmp"), overwrite: false, skipExisting: false, notes: &notes) }
        #expect(bmp?.description.contains("output format 'bmp' is not one this build writes") == true)
        // A folder's outputs in the forced format.
        let webp = try Batch.plan([(png, "x.png")], output: dir.file("w") + "/", format: .webp, overwrite: false, skipExisting: false, notes: &notes)
        #expect(webp.first?.output == dir.file("w") + "/x.webp" && webp.first?.format == .webp)
        let missing = #expect(throws: BatchError.self) { try Batch.expand([dir.file("nope.png")], recursive: false) }
        #expect(missing?.description.contains("no such file or folder") == true)
        // One input and -o ending in /: a folder, created.
        let items = try Batch.plan([(png, "x.png")], output: dir.file("new") + "/", overwrite: false, skipExisting: false, notes: &notes)
        #expect(items.first?.output == dir.file("new") + "/x.png")
    }
}
