import Tensors

/// How a weight array is stored in an ncnn `.bin` file (ncnn's `src/modelbin.cpp`).
///
/// Layers read their arrays in order, each starting where the previous ended. An array read "with
/// a tag" starts with a 4-byte little-endian tag:
///
/// | tag | then |
/// |---|---|
/// | `0x00000000` | `count` f32 values |
/// | `0x01306B47` | `count` f16 values, padded to 4 bytes |
/// | `0x000D4B38` | `count` int8 values, padded to 4 bytes (scales come from later arrays) |
/// | `0x0002C056` | `count` f32 values (raw data with extra scaling) |
/// | any other tag whose bytes do not sum to 0 | a 256-entry f32 table, then `count` u8 indices into it, padded to 4 bytes |
///
/// An array read "raw" (biases, scales, slopes) is `count` f32 values with no tag.
public enum NCNNStorage: String, Sendable, CaseIterable {
    case f32, f16, int8, f32Scaled = "f32-scaled", table = "u8-table"
}

/// Reads a layer's arrays from a `.bin` file, checking every size against the file.
public struct NCNNWeightReader: ~Copyable {
    public let file: MappedFile
    public private(set) var offset = 0
    /// Bytes of each storage form read so far.
    public private(set) var bytesByStorage: [NCNNStorage: Int] = [:]

    public init(file: MappedFile) { self.file = file }

    static let tagF16: UInt32 = 0x0130_6B47, tagInt8: UInt32 = 0x000D_4B38, tagScaled: UInt32 = 0x0002_C056

    /// The largest array one layer may declare (values), whatever the file's size.
    public static let maximumCount = 1 << 31

    mutating func take(_ bytes: Int, _ what: String, layer: NCNNLayer) throws(CheckpointError) -> Range<Int> {
        guard bytes >= 0, bytes <= file.size - offset else {
            throw CheckpointError(file.path, at: "offset \(offset)",
                                  "layer '\(layer.name)' (line \(layer.line)): \(what) needs \(bytes) bytes, the file has \(file.size - offset) left (truncated .bin, or a .param that does not match it)")
        }
        defer { offset += bytes }
        return offset..<(offset + bytes)
    }

    /// `count` values read with a tag (weights), as f32 (int8 values as they are: the caller scales them).
    public mutating func tagged(_ count: Int, layer: NCNNLayer, what: String) throws(CheckpointError) -> (values: Tensor, storage: NCNNStorage) {
        guard (0...Self.maximumCount).contains(count) else {
            throw CheckpointError(file.path, at: "offset \(offset)", "layer '\(layer.name)' (line \(layer.line)): \(what) of \(count) values is out of range")
        }
        let tagAt = offset
        let tagRange = try take(4, what + " tag", layer: layer)
        let b = file.bytes(tagRange)
        let tag = UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
        let padded4 = { (n: Int) in (n + 3) & ~3 }
        let out = Tensor.zeros(.f32, [count])
        let dst = out.storage.mutableBytes!.bindMemory(to: Float.self)
        let storage: NCNNStorage
        switch tag {
        case Self.tagF16:
            let r = try take(padded4(count * 2), what + " (f16)", layer: layer)
            // (2-byte aligned: the mapping is page-aligned and every array starts at a multiple of 4.)
            FloatConversion.f16ToF32(UnsafeBufferPointer(start: file.bytes(r).baseAddress!.assumingMemoryBound(to: UInt16.self), count: count), dst)
            storage = .f16
        case Self.tagInt8:
            let r = try take(padded4(count), what + " (int8)", layer: layer)
            let src = file.bytes(r)
            for i in 0..<count { dst[i] = Float(Int8(bitPattern: src[i])) }
            storage = .int8
        case Self.tagScaled, 0:
            let r = try take(count * 4, what + " (f32)", layer: layer)
            UnsafeMutableRawBufferPointer(dst).copyMemory(from: file.bytes(r))
            storage = tag == 0 ? .f32 : .f32Scaled
        default:
            // Any other non-zero tag: a quantisation table (ncnn tests that the tag's bytes do not sum to 0).
            let tableRange = try take(256 * 4, what + " (u8 table)", layer: layer)
            let r = try take(padded4(count), what + " (u8 indices)", layer: layer)
            let table = file.bytes(tableRange), src = file.bytes(r)
            for i in 0..<count { dst[i] = table.loadUnaligned(fromByteOffset: 4 * Int(src[i]), as: Float.self) }
            storage = .table
        }
        bytesByStorage[storage, default: 0] += offset - tagAt
        return (out, storage)
    }

    /// `count` raw f32 values (no tag): biases, scales, slopes.
    public mutating func raw(_ count: Int, layer: NCNNLayer, what: String) throws(CheckpointError) -> Tensor {
        guard (0...Self.maximumCount).contains(count) else {
            throw CheckpointError(file.path, at: "offset \(offset)", "layer '\(layer.name)' (line \(layer.line)): \(what) of \(count) values is out of range")
        }
        let r = try take(count * 4, what, layer: layer)
        let out = Tensor.zeros(.f32, [count])
        out.storage.mutableBytes!.copyMemory(from: file.bytes(r))
        bytesByStorage[.f32, default: 0] += count * 4
        return out
    }
}
