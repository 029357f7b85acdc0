import Foundation
import Pipeline
import Tensors
import Testing
import TestSupport

@Suite struct PNGTests {
    static var expected: [String: [String: Any]] {
        (try? Fixtures.json("png/expected.json") as? [String: [String: Any]]) ?? [:]
    }
    static let names: [String] = expected.keys.sorted()

    /// Every fixture decodes to the samples the generator encoded (after expansion).
    @Test(arguments: names)
    func decodesFixture(name: String) throws {
        let e = try #require(Self.expected[name])
        let image = try PNG.read(Fixtures.path("png/" + name))
        #expect(image.width == e["width"] as? Int && image.height == e["height"] as? Int)
        #expect(image.channels == e["channels"] as? Int, "\(name)")
        #expect(image.bitDepth == e["bit_depth"] as? Int, "\(name)")
        #expect(image.samples.map(Int.init) == e["samples"] as? [Int], "\(name)")
    }

    @Test func coversEveryColourTypeAndDepth() {
        let names = Set(Self.expected.keys)
        for n in ["gray1.png", "gray2.png", "gray4.png", "gray8.png", "gray16.png", "graya8.png", "graya16.png", "rgb8.png",
                  "rgb16.png", "rgba8.png", "rgba16.png", "palette4.png", "palette8_trns.png", "rgb8_interlaced.png"] {
            #expect(names.contains(n), "\(n)")
        }
    }

    @Test(arguments: [8, 16])
    func writeReadRoundTrip(bitDepth: Int) throws {
        let dir = TemporaryDirectory()
        for channels in 1...4 {
            let (w, h) = (13, 6)
            let samples = (0..<(w * h * channels)).map { UInt16(($0 * 7919) % (1 << bitDepth)) }
            let image = Image(width: w, height: h, channels: channels, bitDepth: bitDepth, samples: samples)
            let path = dir.file("rt-\(channels).png")
            try PNG.write(image, to: path)
            #expect(try PNG.read(path) == image)
        }
    }

    @Test func tensorConversion() throws {
        let image = try PNG.read(Fixtures.path("png/rgb16.png"))
        let t = image.tensor()
        #expect(t.shape == [1, 3, 5, 7])
        let values = t.floats()
        #expect(values.allSatisfy { (0...1).contains($0) })
        // Red of pixel (x 1, y 0) is sample 3; the tensor holds it in channel plane 0.
        #expect(values[1] == Float(image.samples[3]) / 65535)
        #expect(Image(tensor: t, bitDepth: 16) == image)
        // Out-of-range values clamp; 8-bit rounding to nearest.
        let clamped = Image(tensor: Tensor([-1, 2, 0.5, .nan], shape: [1, 1, 2, 2]))
        #expect(clamped.samples == [0, 255, 128, 0])
    }

    @Test func badFiles() throws {
        let dir = TemporaryDirectory()
        let source = Fixtures.path("png/rgb8.png")
        let size = try FileManager.default.attributesOfItem(atPath: source)[.size] as! Int
        // Cut in half, and cut at several other places: always an error, never a crash.
        for length in [size / 2, 8, 20, 40, size - 13, size - 1] {
            let path = dir.file("cut-\(length).png")
            try copyFile(source, path, truncatedTo: length)
            let error = #expect(throws: PNGError.self) { try PNG.read(path) }
            #expect(error?.description.hasPrefix(path) == true)
        }
        let jpeg = dir.file("photo.png")
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 0x4A, 0x46, 0x49, 0x46, 0]).write(to: URL(fileURLWithPath: jpeg))
        let e1 = #expect(throws: PNGError.self) { try PNG.read(jpeg) }
        #expect(e1?.description.contains("it is a JPEG image") == true)
        let empty = dir.file("empty.png")
        try Data().write(to: URL(fileURLWithPath: empty))
        #expect(throws: PNGError.self) { try PNG.read(empty) }
        let e2 = #expect(throws: PNGError.self) { try PNG.read(dir.file("missing.png")) }
        #expect(e2?.description.contains("No such file") == true)
        // A flipped byte in the image data fails the CRC or the inflate.
        let flipped = dir.file("flipped.png")
        try copyFile(source, flipped) { $0[$0.count / 2] ^= 0xFF }
        #expect(throws: PNGError.self) { try PNG.read(flipped) }
        // A decoded-size limit is enforced before allocating.
        let e3 = #expect(throws: PNGError.self) { try PNG.read(source, maxBytes: 10) }
        #expect(e3?.description.contains("memory limit") == true)
    }

    @Test func writeIsAtomicAndKeepsExisting() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("out.png")
        let image = Image(width: 2, height: 2, channels: 1, bitDepth: 8, samples: [0, 1, 2, 3])
        try PNG.write(image, to: path)
        let e = #expect(throws: PNGError.self) { try PNG.write(image, to: path) }
        #expect(e?.description.contains("already exists") == true)
        try PNG.write(image, to: path, overwrite: true)
        #expect(dir.contents == ["out.png"])
        #expect(throws: PNGError.self) { try PNG.write(image, to: dir.file("no-such-dir/out.png")) }
    }
}
