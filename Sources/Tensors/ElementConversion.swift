/// Converts packed elements between any two dtypes.
///
/// Float ↔ float goes through binary32 with round-to-nearest-even (`FloatConversion`); f64 goes
/// straight to f32 (Swift's conversion, also nearest-even) and f64 → f16/bf16 rounds twice, via f32.
/// Integers and bool convert through `Double`/`Int64`: float → integer truncates toward zero and
/// saturates at the target's range, NaN becomes 0; anything → bool is `value != 0`.
public enum ElementConversion {
    /// Bytes of float32 scratch used per step by the chunked paths.
    static let chunk = 4096

    public static func convert(_ src: UnsafeRawBufferPointer, from: DType,
                               into dst: UnsafeMutableRawBufferPointer, as to: DType, count: Int) {
        precondition(src.count >= count * from.byteSize && dst.count >= count * to.byteSize)
        guard count > 0 else { return }
        if from == to {
            dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[0..<(count * from.byteSize)]))
            return
        }
        let s = src.baseAddress!, d = dst.baseAddress!
        switch (from, to) {
        case (.f16, .f32):
            FloatConversion.f16ToF32(UnsafeBufferPointer(start: s.assumingMemoryBound(to: UInt16.self), count: count),
                                     UnsafeMutableBufferPointer(start: d.assumingMemoryBound(to: Float.self), count: count))
        case (.bf16, .f32):
            FloatConversion.bf16ToF32(UnsafeBufferPointer(start: s.assumingMemoryBound(to: UInt16.self), count: count),
                                      UnsafeMutableBufferPointer(start: d.assumingMemoryBound(to: Float.self), count: count))
        case (.f32, .f16):
            FloatConversion.f32ToF16(UnsafeBufferPointer(start: s.assumingMemoryBound(to: Float.self), count: count),
                                     UnsafeMutableBufferPointer(start: d.assumingMemoryBound(to: UInt16.self), count: count))
        case (.f32, .bf16):
            FloatConversion.f32ToBF16(UnsafeBufferPointer(start: s.assumingMemoryBound(to: Float.self), count: count),
                                      UnsafeMutableBufferPointer(start: d.assumingMemoryBound(to: UInt16.self), count: count))
        case (.f64, .f32):
            let a = s.assumingMemoryBound(to: Double.self), b = d.assumingMemoryBound(to: Float.self)
            for i in 0..<count { b[i] = Float(a[i]) }
        case (.f32, .f64):
            let a = s.assumingMemoryBound(to: Float.self), b = d.assumingMemoryBound(to: Double.self)
            for i in 0..<count { b[i] = Double(a[i]) }
        case (.f16, _), (.bf16, _), (_, .f16), (_, .bf16):
            // Through float32 in chunks.
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk * 4, alignment: 64)
            defer { scratch.deallocate() }
            var i = 0
            while i < count {
                let n = min(chunk, count - i)
                convert(UnsafeRawBufferPointer(start: s + i * from.byteSize, count: n * from.byteSize), from: from,
                        into: scratch, as: .f32, count: n)
                convert(UnsafeRawBufferPointer(scratch), from: .f32,
                        into: UnsafeMutableRawBufferPointer(start: d + i * to.byteSize, count: n * to.byteSize),
                        as: to, count: n)
                i += n
            }
        default:
            for i in 0..<count { store(load(s, from, i), d, to, i) }
        }
    }

    /// An element as a `Scalar` (integers kept exact, floats as Double).
    enum Scalar {
        case integer(Int64)
        case real(Double)
    }

    static func load(_ p: UnsafeRawPointer, _ t: DType, _ i: Int) -> Scalar {
        switch t {
        case .f32: return .real(Double(p.load(fromByteOffset: i * 4, as: Float.self)))
        case .f64: return .real(p.load(fromByteOffset: i * 8, as: Double.self))
        case .f16: return .real(Double(FloatConversion.f16ToF32(p.load(fromByteOffset: i * 2, as: UInt16.self))))
        case .bf16: return .real(Double(Float(bitPattern: UInt32(p.load(fromByteOffset: i * 2, as: UInt16.self)) << 16)))
        case .i8: return .integer(Int64(p.load(fromByteOffset: i, as: Int8.self)))
        case .u8: return .integer(Int64(p.load(fromByteOffset: i, as: UInt8.self)))
        case .i16: return .integer(Int64(p.load(fromByteOffset: i * 2, as: Int16.self)))
        case .i32: return .integer(Int64(p.load(fromByteOffset: i * 4, as: Int32.self)))
        case .i64: return .integer(p.load(fromByteOffset: i * 8, as: Int64.self))
        case .bool: return .integer(p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0)
        }
    }

    static func store(_ v: Scalar, _ p: UnsafeMutableRawPointer, _ t: DType, _ i: Int) {
        func integer(_ lo: Int64, _ hi: Int64) -> Int64 {
            switch v {
            case .integer(let x): return min(max(x, lo), hi)
            case .real(let x):
                if x.isNaN { return 0 }
                let r = x.rounded(.towardZero)
                if r <= Double(lo) { return lo }
                if r >= Double(hi) { return hi }
                return Int64(r)
            }
        }
        var real: Double {
            switch v {
            case .integer(let x): return Double(x)
            case .real(let x): return x
            }
        }
        switch t {
        case .f32: p.storeBytes(of: Float(real), toByteOffset: i * 4, as: Float.self)
        case .f64: p.storeBytes(of: real, toByteOffset: i * 8, as: Double.self)
        case .f16: p.storeBytes(of: FloatConversion.f32ToF16(Float(real)), toByteOffset: i * 2, as: UInt16.self)
        case .bf16: p.storeBytes(of: FloatConversion.f32ToBF16(Float(real)), toByteOffset: i * 2, as: UInt16.self)
        case .i8: p.storeBytes(of: Int8(integer(Int64(Int8.min), Int64(Int8.max))), toByteOffset: i, as: Int8.self)
        case .u8: p.storeBytes(of: UInt8(integer(0, 255)), toByteOffset: i, as: UInt8.self)
        case .i16: p.storeBytes(of: Int16(integer(Int64(Int16.min), Int64(Int16.max))), toByteOffset: i * 2, as: Int16.self)
        case .i32: p.storeBytes(of: Int32(integer(Int64(Int32.min), Int64(Int32.max))), toByteOffset: i * 4, as: Int32.self)
        case .i64: p.storeBytes(of: integer(Int64.min, Int64.max), toByteOffset: i * 8, as: Int64.self)
        case .bool:
            let nonzero: Bool
            switch v {
            case .integer(let x): nonzero = x != 0
            case .real(let x): nonzero = x != 0
            }
            p.storeBytes(of: nonzero ? 1 : 0, toByteOffset: i, as: UInt8.self)
        }
    }
}
