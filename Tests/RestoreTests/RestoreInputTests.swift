import Foundation
import Pipeline
import Plan
import Testing
import TestSupport

/// Inputs a new user would try: each bad one is refused with a message naming the file and the
/// problem; a 16-bit RGBA PNG is read (as PIL reads it) with a note; a budget too small is refused
/// before any work.
@Suite struct RestoreInputTests {
    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        let body = Array(type.utf8) + data
        return be(UInt32(data.count)) + body + be(body.withUnsafeBytes { crc32($0) })
    }

    /// A 0×0 RGB PNG (its IDAT an empty zlib stream): libpng refuses the header.
    static func emptyPNG() -> [UInt8] {
        [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", [0, 0, 0, 0, 0, 0, 0, 0, 8, 2, 0, 0, 0])
            + chunk("IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) + chunk("IEND", [])
    }

    static func message(_ path: String) -> String? {
        do { _ = try InputImage.loadRGB8(path); return nil } catch { return "\(error)" }
    }

    @Test func badInputsAreRefusedClearly() throws {
        let dir = TemporaryDirectory()
        // A JPEG named .png.
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46, 0x49, 0x46, 0x00, 0x01] + [UInt8](repeating: 0, count: 64))
            .write(to: URL(fileURLWithPath: dir.file("photo.png")))
        #expect(Self.message(dir.file("photo.png"))?.contains("JPEG") == true)
        // A PNG cut in half.
        try copyFile(Fixtures.path("pipeline/lq64.png"), dir.file("cut.png"), truncatedTo: 4000)
        #expect(Self.message(dir.file("cut.png"))?.contains("truncated") == true)
        // 0×0.
        try Data(Self.emptyPNG()).write(to: URL(fileURLWithPath: dir.file("empty.png")))
        #expect(Self.message(dir.file("empty.png"))?.contains("empty.png") == true)
        // A path that does not exist.
        #expect(Self.message(dir.file("nothing-here.png"))?.contains("no such file") == true)
    }

    @Test func sixteenBitRGBAIsReadAsPILReadsIt() throws {
        let dir = TemporaryDirectory()
        // 2×1: (0x1234, 0xABCD, 0xFF00, alpha) and (0x00FF, 0x0100, 0x8080, alpha).
        let image = Image(width: 2, height: 1, channels: 4, bitDepth: 16, samples: [0x1234, 0xABCD, 0xFF00, 0x0010, 0x00FF, 0x0100, 0x8080, 0xFFFF])
        try PNG.write(image, to: dir.file("rgba16.png"))
        let r = try InputImage.loadRGB8(dir.file("rgba16.png"))
        #expect(r.pixels == [0x12, 0xAB, 0xFF, 0x00, 0x01, 0x80])
        #expect(r.note?.contains("16-bit") == true && r.note?.contains("alpha") == true)
    }

    @Test func budgetTooSmallIsRefusedBeforeWork() throws {
        let dir = TemporaryDirectory()
        let plan = try PipelineParityTests.plan(version: "v2.1", task: .sr, in: dir)
        let restorer = try Restorer(plan: plan, threads: 1)
        var o = RestoreOptions(defaultsOf: restorer.info)
        o.memoryBudget = 50_000_000
        let input = try PipelineParityTests.rgb("pipeline/lq64.png")
        var noise = SeededNoise(seed: 1)
        #expect { try restorer.restore(rgb8: input.pixels, height: input.height, width: input.width, options: o, noise: &noise) } throws: { e in
            "\(e)".contains("too small")
        }
        // Enough for the work but not for the weights: streamed, same result as unlimited.
        let need = restorer.memoryNeeds(height: input.height, width: input.width, upscale: o.upscale)
        o.steps = 1
        o.memoryBudget = need.fixed + need.largestWeight + 1
        var n1 = SeededNoise(seed: 1)
        let streamed = try restorer.restore(rgb8: input.pixels, height: input.height, width: input.width, options: o, noise: &n1)
        #expect(restorer.streamedWeights)
        o.memoryBudget = nil
        var n2 = SeededNoise(seed: 1)
        let resident = try restorer.restore(rgb8: input.pixels, height: input.height, width: input.width, options: o, noise: &n2)
        #expect(!restorer.streamedWeights)
        #expect(streamed.pixels == resident.pixels)
    }

    /// A small file that holds a large image is refused from its header when its samples would pass
    /// the limit (restore passes a sixteenth of --max-memory), before anything is decoded.
    @Test func decodedSizeIsCheckedBeforeDecoding() throws {
        let dir = TemporaryDirectory()
        let big = Image(width: 3000, height: 2000, channels: 3, bitDepth: 8, samples: [UInt16](repeating: 7, count: 3000 * 2000 * 3))
        try PNG.write(big, to: dir.file("big.png"))
        let size = try FileManager.default.attributesOfItem(atPath: dir.file("big.png"))[.size] as! Int
        #expect(size < 200_000)  // 18 MB of samples in a small file
        do {
            _ = try InputImage.loadRGB8(dir.file("big.png"), maxDecodedBytes: 4 << 20)
            Issue.record("a 3000×2000 image was decoded under a 4 MB limit")
        } catch {
            #expect("\(error)".contains("big.png") && "\(error)".contains("memory limit"), "\(error)")
        }
        #expect(try InputImage.loadRGB8(dir.file("big.png"), maxDecodedBytes: 32 << 20).width == 3000)
    }
}
