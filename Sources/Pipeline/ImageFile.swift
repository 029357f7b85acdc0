import CImageCodecs
import Tensors

/// Image file formats `restore` reads and writes.
public enum ImageFormat: String, CaseIterable, Sendable {
    case png, jpeg, webp

    /// The format of an output path's extension (`.png`, `.jpg`/`.jpeg`, `.webp`, any case).
    public init?(extension ext: String) {
        switch ext.lowercased() {
        case "png": self = .png
        case "jpg", "jpeg": self = .jpeg
        case "webp": self = .webp
        default: return nil
        }
    }

    /// The format of a file's first bytes.
    public init?(signature b: UnsafeRawBufferPointer) {
        if b.count >= 8, Array(b[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { self = .png }
        else if b.count >= 3, b[0] == 0xFF, b[1] == 0xD8, b[2] == 0xFF { self = .jpeg }
        else if b.count >= 12, Array(b[0..<4]) == Array("RIFF".utf8), Array(b[8..<12]) == Array("WEBP".utf8) { self = .webp }
        else { return nil }
    }

    /// The extension written for the format.
    public var fileExtension: String { self == .jpeg ? "jpg" : rawValue }
}

/// Reading and writing PNG, JPEG and WebP files as `Image`s (8-bit, or 16-bit for PNG).
public enum ImageFile {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let path: String
        public let message: String
        public var description: String { "\(path): \(message)".escapingControlCharacters }
    }

    /// Decodes `path` by its first bytes; the decoded samples may take at most `maxBytes`, checked
    /// from the file's header before anything is decoded.
    public static func read(_ path: String, maxBytes: Int = PNG.defaultMaxBytes) throws(Failure) -> Image {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw Failure(path: path, message: error.message) }
        return try decode(file.bytes, path: path, maxBytes: maxBytes)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String, maxBytes: Int = PNG.defaultMaxBytes) throws(Failure) -> Image {
        guard let format = ImageFormat(signature: bytes) else {
            throw Failure(path: path, message: "not a PNG, JPEG or WebP file (its first bytes are none of theirs)")
        }
        switch format {
        case .png:
            do { return try PNG.decode(bytes, path: path, maxBytes: maxBytes) } catch { throw Failure(path: path, message: error.message) }
        case .jpeg, .webp:
            var image = cic_image()
            var message = [CChar](repeating: 0, count: 512)
            let status = format == .jpeg
                ? cic_jpeg_decode(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count, max(0, maxBytes), &image, &message, message.count)
                : cic_webp_decode(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count, max(0, maxBytes), &image, &message, message.count)
            guard status == 0, let pixels = image.pixels else {
                let text = Self.text(of: message)
                throw Failure(path: path, message: text.contains("more than the limit") ? "the decoded image would exceed the memory limit: \(text)"
                                                                                         : "\(format == .jpeg ? "JPEG" : "WebP"): \(text)")
            }
            defer { cic_free(pixels) }
            let samples = UnsafeBufferPointer(start: pixels, count: image.size).map { UInt16($0) }
            return Image(width: Int(image.width), height: Int(image.height), channels: Int(image.channels), bitDepth: 8, samples: samples)
        }
    }

    /// A C library's message: the bytes up to the first NUL, as UTF-8.
    static func text(of message: [CChar]) -> String {
        String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Encodes `image` (8-bit RGB or RGBA for JPEG and WebP; JPEG drops alpha) in `format`.
    /// `comment`: a PNG `Comment` tEXt chunk or a JPEG COM marker (WebP: not stored). `quality` for
    /// JPEG and lossy WebP.
    public static func encode(_ image: Image, format: ImageFormat, quality: Int = 95, comment: String? = nil) throws(Failure) -> [UInt8] {
        switch format {
        case .png:
            do { return try PNG.encode(image, comment: comment) } catch { throw Failure(path: "", message: error.message) }
        case .jpeg, .webp:
            guard image.bitDepth == 8, image.channels == 3 || image.channels == 4 else {
                throw Failure(path: "", message: "\(format.rawValue) takes 8-bit RGB or RGBA, not \(image.channels) channels of \(image.bitDepth) bits")
            }
            let keep = format == .jpeg ? 3 : image.channels
            var pixels = [UInt8](repeating: 0, count: image.width * image.height * keep)
            for p in 0..<(image.width * image.height) {
                for k in 0..<keep { pixels[p * keep + k] = UInt8(truncatingIfNeeded: image.samples[p * image.channels + k]) }
            }
            var out: UnsafeMutablePointer<UInt8>?
            var length = 0
            var message = [CChar](repeating: 0, count: 512)
            let status = format == .jpeg
                ? cic_jpeg_encode(pixels, UInt32(image.width), UInt32(image.height), Int32(quality), comment, &out, &length, &message, message.count)
                : cic_webp_encode(pixels, UInt32(image.width), UInt32(image.height), Int32(keep), Float(quality), &out, &length, &message, message.count)
            guard status == 0, let out else { throw Failure(path: "", message: Self.text(of: message)) }
            defer { cic_free(out) }
            return Array(UnsafeBufferPointer(start: out, count: length))
        }
    }

    /// Writes atomically in the format of the path's extension (or `format`); an existing file is
    /// kept unless `overwrite`.
    public static func write(_ image: Image, to path: String, format: ImageFormat? = nil, quality: Int = 95, comment: String? = nil,
                             overwrite: Bool = false) throws(Failure) {
        let ext = FilePaths.fileName(of: path).split(separator: ".", omittingEmptySubsequences: false).last.map(String.init) ?? ""
        guard let f = format ?? ImageFormat(extension: ext) else {
            throw Failure(path: path, message: "'.\(ext)' is not an image format this build writes (.png, .jpg, .jpeg, .webp)")
        }
        let bytes: [UInt8]
        do { bytes = try encode(image, format: f, quality: quality, comment: comment) } catch { throw Failure(path: path, message: error.message) }
        try write(encoded: bytes, to: path, overwrite: overwrite)
    }

    /// Writes an encoded image atomically (a temporary file renamed over `path`; an existing file
    /// kept unless `overwrite`).
    public static func write(encoded bytes: [UInt8], to path: String, overwrite: Bool = false) throws(Failure) {
        do {
            let out = try OutputFile(path: path, overwrite: overwrite)
            try out.write(bytes)
            try out.commit()
        } catch {
            throw Failure(path: path, message: error.message)
        }
    }
}

/// The image `restore` writes.
public enum OutputImage {
    /// The restored RGB (8-bit pixels, or `precise`: the network's output at full precision, for
    /// 16-bit inputs) with the input's alpha enlarged by bicubic to the output size, as Real-ESRGAN
    /// does; 16 bits only in PNG, alpha not in JPEG. `notes` says what could not be kept.
    public static func compose(rgb8: [UInt8], precise: Planar?, width: Int, height: Int, input: LoadedImage,
                               format: ImageFormat) -> (image: Image, notes: [String]) {
        var notes: [String] = []
        var bits = precise != nil ? 16 : 8
        if bits == 16 && format != .png { bits = 8; notes.append("\(format.rawValue) keeps 8 bits; the 16-bit input is written at 8") }
        if input.bitDepth == 16 && precise == nil { notes.append("restored at 8 bits (as DiffBIR does); the 16-bit input is written at 8") }
        var alpha: [UInt16]?
        if let a = input.alpha {
            if format == .jpeg {
                notes.append("JPEG has no alpha; the input's alpha channel is dropped")
            } else {
                alpha = Resample.bicubicAntialias(a, height: height, width: width).samples(bits: bits)
            }
        }
        let rgb: [UInt16] = bits == 16 ? precise!.samples(bits: 16) : (precise.map { $0.samples(bits: 8) } ?? rgb8.map { UInt16($0) })
        guard let alpha else { return (Image(width: width, height: height, channels: 3, bitDepth: bits, samples: rgb), notes) }
        var rgba = [UInt16](repeating: 0, count: width * height * 4)
        for p in 0..<(width * height) {
            rgba[p * 4] = rgb[p * 3]; rgba[p * 4 + 1] = rgb[p * 3 + 1]; rgba[p * 4 + 2] = rgb[p * 3 + 2]; rgba[p * 4 + 3] = alpha[p]
        }
        return (Image(width: width, height: height, channels: 4, bitDepth: bits, samples: rgba), notes)
    }
}
