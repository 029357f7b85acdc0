import CPNG
import Tensors

/// An image as interleaved samples, rows top to bottom: 1 (gray), 2 (gray+alpha), 3 (RGB) or
/// 4 (RGBA) channels of 8 or 16 bits.
public struct Image: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public let bitDepth: Int
    /// `width * height * channels` samples in 0 ... 2^bitDepth - 1.
    public var samples: [UInt16]

    public init(width: Int, height: Int, channels: Int, bitDepth: Int, samples: [UInt16]) {
        precondition((1...4).contains(channels) && (bitDepth == 8 || bitDepth == 16))
        precondition(samples.count == width * height * channels)
        self.width = width
        self.height = height
        self.channels = channels
        self.bitDepth = bitDepth
        self.samples = samples
    }

    public var maxValue: Int { (1 << bitDepth) - 1 }

    /// The image as a float32 tensor `[1, channels, height, width]` (NCHW) with values in [0, 1].
    public func tensor() -> Tensor {
        let plane = width * height
        var values = [Float](repeating: 0, count: plane * channels)
        let scale = 1 / Float(maxValue)
        for p in 0..<plane {
            for c in 0..<channels { values[c * plane + p] = Float(samples[p * channels + c]) * scale }
        }
        return Tensor(values, shape: [1, channels, height, width])
    }

    /// An image from a float tensor `[1, C, H, W]` or `[C, H, W]` (C in 1...4): values are clamped
    /// to [0, 1] and rounded to the nearest level.
    public init(tensor: Tensor, bitDepth: Int = 8) {
        let dims = tensor.shape.dims
        precondition(dims.count == 4 && dims[0] == 1 || dims.count == 3, "image tensor must be [1, C, H, W] or [C, H, W]")
        let c = dims[dims.count - 3], h = dims[dims.count - 2], w = dims[dims.count - 1]
        let values = tensor.floats()
        let maxValue = Float((1 << bitDepth) - 1)
        var samples = [UInt16](repeating: 0, count: c * h * w)
        let plane = h * w
        for p in 0..<plane {
            for ch in 0..<c {
                let v = values[ch * plane + p]
                let clamped = v.isNaN ? 0 : min(max(v, 0), 1)
                samples[p * c + ch] = UInt16((clamped * maxValue).rounded())
            }
        }
        self.init(width: w, height: h, channels: c, bitDepth: bitDepth, samples: samples)
    }
}

/// An error reading or writing a PNG, naming the file.
public struct PNGError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}

/// PNG files through libpng: every colour type and bit depth in, 8- or 16-bit gray/GA/RGB/RGBA out.
public enum PNG {
    /// Largest decoded image accepted, in bytes of samples (a 16k × 16k RGBA 16-bit image is 2 GiB).
    public static let defaultMaxBytes = 2 << 30

    public static func read(_ path: String, maxBytes: Int = defaultMaxBytes) throws(PNGError) -> Image {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw PNGError(path: path, message: error.message) }
        return try decode(file.bytes, path: path, maxBytes: maxBytes)
    }

    /// Known signatures of other image formats, for a helpful message when a file is misnamed.
    static let otherFormats: [([UInt8], String)] = [
        ([0xFF, 0xD8, 0xFF], "a JPEG"), ([0x47, 0x49, 0x46, 0x38], "a GIF"), ([0x42, 0x4D], "a BMP"),
        ([0x52, 0x49, 0x46, 0x46], "a RIFF (WebP?)"), ([0x49, 0x49, 0x2A, 0x00], "a TIFF"), ([0x4D, 0x4D, 0x00, 0x2A], "a TIFF"),
    ]

    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String, maxBytes: Int = defaultMaxBytes) throws(PNGError) -> Image {
        let head = Array(bytes.prefix(8))
        if head.count < 8 || head != [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] {
            if bytes.isEmpty { throw PNGError(path: path, message: "not a PNG file: the file is empty") }
            if let other = otherFormats.first(where: { head.starts(with: $0.0) }) {
                throw PNGError(path: path, message: "not a PNG file: it is \(other.1) image (convert it to PNG first)")
            }
            throw PNGError(path: path, message: "not a PNG file (no PNG signature)")
        }
        var image = cpng_image()
        var message = [CChar](repeating: 0, count: 256)
        let status = cpng_decode(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count, maxBytes, &image, &message, message.count)
        guard status == 0 else {
            throw PNGError(path: path, message: "invalid PNG: " + String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        defer { cpng_free(image.pixels) }
        let count = Int(image.width) * Int(image.height) * Int(image.channels)
        var samples = [UInt16](repeating: 0, count: count)
        if image.bit_depth == 16 {
            let p = image.pixels.assumingMemoryBound(to: UInt16.self)
            for i in 0..<count { samples[i] = p[i] }
        } else {
            let p = image.pixels.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { samples[i] = UInt16(p[i]) }
        }
        return Image(width: Int(image.width), height: Int(image.height), channels: Int(image.channels),
                     bitDepth: Int(image.bit_depth), samples: samples)
    }

    /// `comment`: a `Comment` tEXt chunk (PIL: `im.text["Comment"]`).
    public static func encode(_ image: Image, compressionLevel: Int = 6, comment: String? = nil) throws(PNGError) -> [UInt8] {
        var message = [CChar](repeating: 0, count: 256)
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        let status: Int32
        if image.bitDepth == 16 {
            status = image.samples.withUnsafeBytes { b in
                cpng_encode(b.baseAddress, UInt32(image.width), UInt32(image.height), Int32(image.channels), 16,
                            Int32(compressionLevel), comment, &out, &length, &message, message.count)
            }
        } else {
            let bytes = image.samples.map { UInt8(truncatingIfNeeded: $0) }
            status = bytes.withUnsafeBytes { b in
                cpng_encode(b.baseAddress, UInt32(image.width), UInt32(image.height), Int32(image.channels), 8,
                            Int32(compressionLevel), comment, &out, &length, &message, message.count)
            }
        }
        guard status == 0, let out else {
            throw PNGError(path: "", message: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        defer { cpng_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: length))
    }

    /// Writes atomically (temporary file, then rename); an existing file is kept unless `overwrite`.
    public static func write(_ image: Image, to path: String, overwrite: Bool = false) throws(PNGError) {
        let bytes: [UInt8]
        do { bytes = try encode(image) } catch { throw PNGError(path: path, message: error.message) }
        do {
            let out = try OutputFile(path: path, overwrite: overwrite)
            try out.write(bytes)
            try out.commit()
        } catch {
            throw PNGError(path: path, message: error.message)
        }
    }
}
