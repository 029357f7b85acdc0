import Foundation
import Pipeline
import Tensors
import Testing
import TestSupport

/// JPEG and WebP beside PNG: round trips, formats by signature and extension, budgets checked from
/// the header, corrupt files refused with the file named.
@Suite struct ImageFileTests {
    /// A 40×24 RGB gradient with a disc: smooth enough that lossy codecs keep it close.
    static let image: Image = {
        let (w, h) = (40, 24)
        var s = [UInt16](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                let inDisc = (x - 20) * (x - 20) + (y - 12) * (y - 12) < 64
                s[(y * w + x) * 3] = UInt16(x * 6)
                s[(y * w + x) * 3 + 1] = UInt16(y * 10)
                s[(y * w + x) * 3 + 2] = inDisc ? 200 : 40
            }
        }
        return Image(width: w, height: h, channels: 3, bitDepth: 8, samples: s)
    }()

    /// Mean absolute difference of the samples (lossy codecs move the disc's sharp edge most).
    static func meanDifference(_ a: Image, _ b: Image) -> Double {
        Double(zip(a.samples, b.samples).map { abs(Int($0) - Int($1)) }.reduce(0, +)) / Double(a.samples.count)
    }

    @Test(arguments: [(ImageFormat.jpeg, 4.0), (.webp, 4.0), (.png, 0.0)])
    func roundTrips(format: ImageFormat, tolerance: Double) throws {
        let bytes = try ImageFile.encode(Self.image, format: format, quality: 95, comment: "diffbir test")
        let decoded = try bytes.withUnsafeBytes { b in try ImageFile.decode(b, path: "x") }
        #expect(bytes.withUnsafeBytes { ImageFormat(signature: $0) } == format)
        #expect(decoded.width == 40 && decoded.height == 24 && decoded.channels == 3 && decoded.bitDepth == 8)
        #expect(Self.meanDifference(decoded, Self.image) <= tolerance)
        if format == .jpeg {
            // The COM marker holds the comment.
            #expect(bytes.count > 20 && String(decoding: bytes, as: UTF8.self).contains("diffbir test"))
        }
    }

    @Test func budgetsAreCheckedFromTheHeader() throws {
        for format in [ImageFormat.jpeg, .webp] {
            let bytes = try ImageFile.encode(Self.image, format: format)
            let error = #expect(throws: ImageFile.Failure.self) { try bytes.withUnsafeBytes { try ImageFile.decode($0, path: "small.img", maxBytes: 1000) } }
            #expect(error?.description.contains("exceed the memory limit") == true, "\(format): \(error?.description ?? "")")
        }
    }

    @Test func corruptFilesAreRefused() throws {
        for format in [ImageFormat.jpeg, .webp] {
            var bytes = try ImageFile.encode(Self.image, format: format)
            bytes = Array(bytes.prefix(bytes.count / 3))
            let error = #expect(throws: ImageFile.Failure.self) { try bytes.withUnsafeBytes { try ImageFile.decode($0, path: "cut.img") } }
            #expect(error?.description.hasPrefix("cut.img: ") == true, "\(error?.description ?? "")")
        }
        let text = Array("GIF89a not supported".utf8)
        let error = #expect(throws: ImageFile.Failure.self) { try text.withUnsafeBytes { try ImageFile.decode($0, path: "x.gif") } }
        #expect(error?.description.contains("not a PNG, JPEG or WebP") == true)
    }

    @Test func writesFollowTheExtension() throws {
        let dir = TemporaryDirectory()
        for (name, format) in [("a.jpg", ImageFormat.jpeg), ("b.JPEG", .jpeg), ("c.webp", .webp), ("d.png", .png)] {
            try ImageFile.write(Self.image, to: dir.file(name))
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.file(name))))
            #expect(bytes.withUnsafeBytes { ImageFormat(signature: $0) } == format, "\(name)")
        }
        let error = #expect(throws: ImageFile.Failure.self) { try ImageFile.write(Self.image, to: dir.file("e.bmp")) }
        #expect(error?.description.contains("'.bmp' is not an image format") == true)
        #expect(!FileManager.default.fileExists(atPath: dir.file("e.bmp")))
    }
}
