import Testing
import Tensors
import TestSupport

@Suite struct FloatConversionTests {
    /// Every binary16 bit pattern against Swift's own `Float16` conversion (hardware or compiler-rt).
    @Test func f16ToF32IsExactForAllPatterns() {
        let src = (0...UInt16.max).map { $0 }
        var dst = [Float](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in dst.withUnsafeMutableBufferPointer { d in FloatConversion.f16ToF32(s, d) } }
        var mismatches = 0
        for (i, h) in src.enumerated() {
            let expected = Float(Float16(bitPattern: h))
            if expected.isNaN {
                if !dst[i].isNaN { mismatches += 1 }
            } else if dst[i].bitPattern != expected.bitPattern {
                mismatches += 1
            }
        }
        #expect(mismatches == 0)
    }

    /// f32 → f16 rounds to nearest even: compared with `Float16(Float)` on every f16 value, every
    /// midpoint between neighbours (ties), the midpoints ± 1 ulp, and values around the overflow and
    /// subnormal boundaries.
    @Test func f32ToF16RoundsToNearestEven() {
        var inputs: [Float] = [0, -0, .infinity, -.infinity, 65504, 65519.99, 65520, 1e-8, 5.96e-8, 2.98e-8, 2.99e-8]
        for h in UInt16(0)..<0x7C00 {
            let a = Float(Float16(bitPattern: h)), b = Float(Float16(bitPattern: h + 1))
            let mid = (a + b) / 2  // exact in f32
            inputs += [a, mid, mid.nextUp, mid.nextDown, -mid, -a]
        }
        var dst = [UInt16](repeating: 0, count: inputs.count)
        inputs.withUnsafeBufferPointer { s in dst.withUnsafeMutableBufferPointer { d in FloatConversion.f32ToF16(s, d) } }
        var mismatches: [(Float, UInt16, UInt16)] = []
        for (i, x) in inputs.enumerated() where Float16(x).bitPattern != dst[i] {
            mismatches.append((x, Float16(x).bitPattern, dst[i]))
        }
        #expect(mismatches.isEmpty, "first: \(mismatches.prefix(3))")
    }

    @Test func nanBecomesQuietNaNLikePyTorch() {
        let nan = Float(bitPattern: 0x7F80_0001), negNaN = Float(bitPattern: 0xFFC0_0000)
        #expect(FloatConversion.f32ToF16(nan) == 0x7E00)
        #expect(FloatConversion.f32ToF16(negNaN) == 0xFE00)
        #expect(FloatConversion.f32ToBF16(nan) == 0x7FC0)
        #expect(FloatConversion.f32ToBF16(negNaN) == 0xFFC0)
        #expect(FloatConversion.f16ToF32(0x7E00).isNaN)
    }

    /// bf16 rounding: ties go to even, everything else to nearest.
    @Test func f32ToBF16RoundsToNearestEven() {
        // 1 + 2^-8 is exactly between bf16 1.0 (even) and 1.0078125 (odd): goes to 1.0.
        #expect(FloatConversion.f32ToBF16(1 + 0x1p-8) == 0x3F80)
        // 1.0078125 + 2^-8 is between odd 0x3F81 and even 0x3F82: goes up.
        #expect(FloatConversion.f32ToBF16(1.0078125 + 0x1p-8) == 0x3F82)
        #expect(FloatConversion.f32ToBF16((1 + 0x1p-8).nextUp) == 0x3F81)
        #expect(FloatConversion.f32ToBF16(Float.greatestFiniteMagnitude) == 0x7F80)  // rounds to inf
        // A sweep checked against a plain scalar definition, over lengths with tails.
        var state: UInt32 = 12345
        let values: [Float] = (0..<1003).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(bitPattern: state & 0xBFFF_FFFF)  // finite, both signs
        }
        var out = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in FloatConversion.f32ToBF16(s, d) } }
        for (i, x) in values.enumerated() {
            let b = x.bitPattern
            let lower = b >> 16, rest = b & 0xFFFF
            let expected = rest > 0x8000 || (rest == 0x8000 && lower & 1 == 1) ? lower + 1 : lower
            #expect(out[i] == UInt16(expected), "\(x)")
        }
        var back = [Float](repeating: 0, count: out.count)
        out.withUnsafeBufferPointer { s in back.withUnsafeMutableBufferPointer { d in FloatConversion.bf16ToF32(s, d) } }
        for i in 0..<out.count { #expect(back[i].bitPattern == UInt32(out[i]) << 16) }
    }

    @Test(arguments: [DType.f64, .f32, .f16, .bf16, .i64, .i32, .i16, .i8, .u8, .bool])
    func tensorConversionRoundTrips(dtype: DType) {
        let values: [Float] = [0, 1, -2, 3, 100, -100, 7, 1]
        let t = Tensor(values, shape: [2, 4])
        let back = t.converted(to: dtype).converted(to: .f32).floats()
        switch dtype {
        case .u8: #expect(back == [0, 1, 0, 3, 100, 0, 7, 1])  // saturates at 0
        case .bool: #expect(back == [0, 1, 1, 1, 1, 1, 1, 1])
        default: #expect(back == values)
        }
    }

    @Test func floatToIntegerTruncatesAndSaturates() {
        let t = Tensor([1.9, -1.9, 300, -300, .nan, 40000], shape: [6])
        #expect(t.converted(to: .i8).converted(to: .f32).floats() == [1, -1, 127, -128, 0, 127])
        #expect(t.converted(to: .i16).converted(to: .f32).floats() == [1, -1, 300, -300, 0, 32767])
    }
}

@Suite struct CRC32Tests {
    @Test func matchesZlib() {
        var state: UInt32 = 7
        for length in [0, 1, 7, 8, 9, 63, 64, 1000, 4099] {
            let bytes = (0..<length).map { _ -> UInt8 in state = state &* 1_664_525 &+ 1_013_904_223; return UInt8(state >> 24) }
            bytes.withUnsafeBytes { b in
                #expect(CRC32.checksum(b) == TestSupport.crc32(b), "length \(length)")
                // Incremental updates agree with one pass.
                let half = b.count / 2
                #expect(CRC32.update(CRC32.checksum(UnsafeRawBufferPointer(rebasing: b[0..<half])), UnsafeRawBufferPointer(rebasing: b[half...])) == CRC32.checksum(b))
            }
        }
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) } == 0xCBF4_3926)
    }
}
