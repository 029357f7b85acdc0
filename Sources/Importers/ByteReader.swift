/// Bounds-checked little-endian reads from a byte buffer; every failure reports the offset.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    struct OutOfBounds: Error {
        let offset: Int
        let needed: Int
    }

    var remaining: Int { bytes.count - offset }

    func has(_ n: Int) -> Bool { n >= 0 && offset <= bytes.count && bytes.count - offset >= n }

    mutating func u8() throws(OutOfBounds) -> UInt8 {
        guard has(1) else { throw OutOfBounds(offset: offset, needed: 1) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func le<T: FixedWidthInteger>(_: T.Type) throws(OutOfBounds) -> T {
        let n = MemoryLayout<T>.size
        guard has(n) else { throw OutOfBounds(offset: offset, needed: n) }
        defer { offset += n }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    mutating func take(_ n: Int) throws(OutOfBounds) -> UnsafeRawBufferPointer {
        guard has(n) else { throw OutOfBounds(offset: offset, needed: n) }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
    }
}
