/// Protocol-buffer wire encoding for the few message shapes the ONNX writer emits: varints,
/// length-delimited fields and packed repeated integers (field numbers from onnx.proto).
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var x = v
        while x >= 0x80 {
            bytes.append(UInt8(x & 0x7F) | 0x80)
            x >>= 7
        }
        bytes.append(UInt8(x))
    }

    mutating func tag(_ field: Int, _ wire: UInt64) { varint(UInt64(field) << 3 | wire) }

    mutating func int(_ field: Int, _ v: Int) {
        tag(field, 0)
        varint(UInt64(bitPattern: Int64(v)))
    }

    mutating func float(_ field: Int, _ v: Float) {
        tag(field, 5)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
    }

    mutating func data(_ field: Int, _ d: [UInt8]) {
        tag(field, 2)
        varint(UInt64(d.count))
        bytes += d
    }

    mutating func data(_ field: Int, _ d: UnsafeRawBufferPointer) {
        tag(field, 2)
        varint(UInt64(d.count))
        bytes += d
    }

    mutating func string(_ field: Int, _ s: String) { data(field, Array(s.utf8)) }

    mutating func message(_ field: Int, _ m: ProtobufWriter) { data(field, m.bytes) }

    /// A packed repeated int64 field.
    mutating func packedInts(_ field: Int, _ values: [Int]) {
        var inner = ProtobufWriter()
        for v in values { inner.varint(UInt64(bitPattern: Int64(v))) }
        data(field, inner.bytes)
    }

    /// A packed repeated float field.
    mutating func packedFloats(_ field: Int, _ values: [Float]) {
        var inner = ProtobufWriter()
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { inner.bytes += $0 } }
        data(field, inner.bytes)
    }
}
