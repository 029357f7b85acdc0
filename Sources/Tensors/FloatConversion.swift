/// IEEE binary16 and bfloat16 ↔ binary32 conversion on raw bit patterns, eight lanes at a time.
///
/// Both directions are exact to the IEEE rules: f32 → f16/bf16 rounds to nearest, ties to even;
/// overflow gives ±inf; NaN becomes the quiet NaN PyTorch produces (f16 `0x7E00`, bf16 `0x7FC0`,
/// sign kept). f16 subnormals are handled in both directions. The loops use portable SIMD integer
/// arithmetic, so they vectorise on any target without needing F16C or AVX512_BF16.
public enum FloatConversion {
    public typealias Lanes = SIMD8<UInt32>

    // Lane masks from integer arithmetic: the standard library's `replace(with:where:)` runs lane by
    // lane through memory, these stay in vector registers. Valid for lanes below 2^31.

    /// All ones where `a < b`.
    @inline(__always) static func less(_ a: Lanes, _ b: Lanes) -> Lanes { 0 &- ((a &- b) &>> 31) }
    /// All ones where `a == b`.
    @inline(__always) static func equal(_ a: Lanes, _ b: Lanes) -> Lanes { less(a ^ b, Lanes(repeating: 1)) }
    /// `a` where `mask` is all ones, else `b`.
    @inline(__always) static func select(_ mask: Lanes, _ a: Lanes, _ b: Lanes) -> Lanes { (a & mask) | (b & ~mask) }

    // MARK: binary16

    @inline(__always)
    static func f16ToF32Bits(_ h: Lanes) -> Lanes {
        let sign = (h & 0x8000) &<< 16
        let shifted = (h & 0x7FFF) &<< 13
        let exponent = shifted & 0x0F80_0000
        let normal = shifted &+ 0x3800_0000  // rebias: (127 - 15) << 23
        // Inf/NaN: the exponent becomes all ones.
        let special = normal &+ 0x3800_0000
        // Zero/subnormal: compute the value exactly in float arithmetic (magic = 2^-14 as f32 bits).
        let magic = Lanes(repeating: 0x3880_0000)
        let sub = unsafeBitCast(unsafeBitCast(shifted &+ magic, to: SIMD8<Float>.self)
                                - unsafeBitCast(magic, to: SIMD8<Float>.self), to: Lanes.self)
        var out = select(equal(exponent, Lanes(repeating: 0x0F80_0000)), special, normal)
        out = select(equal(exponent, Lanes(repeating: 0)), sub, out)
        return out | sign
    }

    @inline(__always)
    static func f32ToF16Bits(_ bits: Lanes) -> Lanes {
        let sign = bits & 0x8000_0000
        let f = bits ^ sign
        // Large: inf, or quiet NaN, or overflow to inf.
        var out = Lanes(repeating: 0x7C00) | (less(Lanes(repeating: 0x7F80_0000), f) & 0x0200)
        // Small: subnormal f16 or zero; the float add rounds to nearest even for us.
        let denormMagic = Lanes(repeating: 0x3F00_0000)  // ((127 - 15) + (23 - 10) + 1) << 23
        let sub = unsafeBitCast(unsafeBitCast(f, to: SIMD8<Float>.self)
                                + unsafeBitCast(denormMagic, to: SIMD8<Float>.self), to: Lanes.self) &- denormMagic
        // Normal: rebias and round to nearest even on the 13 dropped bits.
        let mantOdd = (f &>> 13) & 1
        let normal = (f &+ 0xC800_0FFF &+ mantOdd) &>> 13  // ((15 - 127) << 23) + 0xfff, wrapping
        out = select(less(f, Lanes(repeating: 0x4780_0000)), normal, out)  // below (127 + 16) << 23
        out = select(less(f, Lanes(repeating: 0x3880_0000)), sub, out)     // below 113 << 23
        return out | (sign &>> 16)
    }

    // MARK: bfloat16

    @inline(__always)
    static func f32ToBF16Bits(_ bits: Lanes) -> Lanes {
        let rounded = (bits &+ 0x7FFF &+ ((bits &>> 16) & 1)) &>> 16
        let isNaN = less(Lanes(repeating: 0x7F80_0000), bits & 0x7FFF_FFFF)
        return select(isNaN, ((bits &>> 16) & 0x8000) | 0x7FC0, rounded)
    }

    // MARK: buffers

    public static func f16ToF32(_ src: UnsafeBufferPointer<UInt16>, _ dst: UnsafeMutableBufferPointer<Float>) {
        precondition(dst.count >= src.count)
        let n = src.count
        var i = 0
        let s = src.baseAddress!, d = UnsafeMutableRawPointer(dst.baseAddress!)
        while i + 8 <= n {
            let h = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD8<UInt16>.self)
            let f = f16ToF32Bits(Lanes(truncatingIfNeeded: h))
            d.storeBytes(of: f, toByteOffset: i * 4, as: Lanes.self)
            i += 8
        }
        if i < n {
            var h = SIMD8<UInt16>()
            for j in 0..<(n - i) { h[j] = s[i + j] }
            let f = f16ToF32Bits(Lanes(truncatingIfNeeded: h))
            for j in 0..<(n - i) { dst[i + j] = Float(bitPattern: f[j]) }
        }
    }

    public static func f32ToF16(_ src: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableBufferPointer<UInt16>) {
        narrow(src, dst, f32ToF16Bits)
    }

    public static func f32ToBF16(_ src: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableBufferPointer<UInt16>) {
        narrow(src, dst, f32ToBF16Bits)
    }

    public static func bf16ToF32(_ src: UnsafeBufferPointer<UInt16>, _ dst: UnsafeMutableBufferPointer<Float>) {
        precondition(dst.count >= src.count)
        let n = src.count
        var i = 0
        let s = src.baseAddress!, d = UnsafeMutableRawPointer(dst.baseAddress!)
        while i + 8 <= n {
            let h = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD8<UInt16>.self)
            d.storeBytes(of: Lanes(truncatingIfNeeded: h) &<< 16, toByteOffset: i * 4, as: Lanes.self)
            i += 8
        }
        while i < n {
            dst[i] = Float(bitPattern: UInt32(s[i]) << 16)
            i += 1
        }
    }

    @inline(__always)
    private static func narrow(_ src: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableBufferPointer<UInt16>,
                               _ op: (Lanes) -> Lanes) {
        precondition(dst.count >= src.count)
        let n = src.count
        var i = 0
        let s = UnsafeRawPointer(src.baseAddress!), d = dst.baseAddress!
        while i + 8 <= n {
            let bits = s.loadUnaligned(fromByteOffset: i * 4, as: Lanes.self)
            let h = SIMD8<UInt16>(truncatingIfNeeded: op(bits))
            UnsafeMutableRawPointer(d + i).storeBytes(of: h, as: SIMD8<UInt16>.self)
            i += 8
        }
        if i < n {
            var bits = Lanes()
            for j in 0..<(n - i) { bits[j] = src[i + j].bitPattern }
            let h = op(bits)
            for j in 0..<(n - i) { d[i + j] = UInt16(truncatingIfNeeded: h[j]) }
        }
    }

    /// One value, binary16 bits → float.
    public static func f16ToF32(_ h: UInt16) -> Float {
        Float(bitPattern: f16ToF32Bits(Lanes(repeating: UInt32(h)))[0])
    }

    /// One value, float → binary16 bits (round to nearest even).
    public static func f32ToF16(_ f: Float) -> UInt16 {
        UInt16(truncatingIfNeeded: f32ToF16Bits(Lanes(repeating: f.bitPattern))[0])
    }

    /// One value, float → bfloat16 bits (round to nearest even).
    public static func f32ToBF16(_ f: Float) -> UInt16 {
        UInt16(truncatingIfNeeded: f32ToBF16Bits(Lanes(repeating: f.bitPattern))[0])
    }
}
