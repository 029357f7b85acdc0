import Foundation
import Kernels
import Testing

/// The vectorised activations against libm, over a dense sweep and the extremes.
@Suite struct VectorMathTests {
    static let xs: [Float] = stride(from: Float(-30), through: 30, by: 0.00731).map { $0 } + [-100, -88, -87, 0, 87, 88, 100, 1e-7, -1e-7]

    static func sweep(_ f: (Float8) -> Float8, _ reference: (Double) -> Double) -> (absolute: Double, relative: Double) {
        var worstAbs = 0.0, worstRel = 0.0
        var i = 0
        while i < xs.count {
            var v = Float8()
            for k in 0..<8 { v[k] = xs[min(i + k, xs.count - 1)] }
            let y = f(v)
            for k in 0..<8 {
                let x = Double(v[k]), r = reference(x), e = abs(Double(y[k]) - r)
                worstAbs = max(worstAbs, e)
                if abs(r) > 1e-30 && r.isFinite { worstRel = max(worstRel, e / abs(r)) }
            }
            i += 8
        }
        return (worstAbs, worstRel)
    }

    @Test func expIsWithinAFewUlp() {
        let (_, rel) = Self.sweep(VectorMath.exp) { x in Foundation.exp(min(max(x, -87.33654), 88)) }
        #expect(rel < 4e-7, "exp relative error \(rel)")
    }

    @Test func erfIsWithin5e7() {
        let (abs, _) = Self.sweep(VectorMath.erf) { Foundation.erf($0) }
        #expect(abs < 5e-7, "erf absolute error \(abs)")
    }

    @Test func activationsMatchTheirDefinitions() {
        let silu = Self.sweep(VectorMath.silu) { $0 / (1 + Foundation.exp(-$0)) }
        let gelu = Self.sweep(VectorMath.gelu) { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }
        let geluTanh = Self.sweep(VectorMath.geluTanh) { 0.5 * $0 * (1 + Foundation.tanh(0.7978845608028654 * ($0 + 0.044715 * $0 * $0 * $0))) }
        let sigmoid = Self.sweep(VectorMath.sigmoid) { 1 / (1 + Foundation.exp(-$0)) }
        // Relative to the value where it is not tiny, absolute near zero.
        for (name, e) in [("silu", silu), ("gelu", gelu), ("gelu_tanh", geluTanh), ("sigmoid", sigmoid)] {
            #expect(e.absolute < 1e-5, "\(name) absolute \(e.absolute)")
        }
        #expect(silu.absolute / 30 < 1e-6)
    }

    /// GEGLU's one-pass combination gives the bits of the bias add, the eight-lane `VectorMath.gelu`
    /// and the product done one after the other, with and without biases, over whole and partial
    /// blocks of sixteen (a tail lane loaded from the wrong place fails it).
    @Test(arguments: [1, 16, 37, 128])
    func gegluCombineMatchesSeparateSteps(count: Int) {
        let a0 = (0..<count).map { Float($0 % 11) * 0.37 - 1.9 }, g0 = (0..<count).map { Self.xs[($0 * 97) % Self.xs.count] / 3 }
        let ba = (0..<count).map { Float($0 % 5) * 0.11 - 0.2 }, bg = (0..<count).map { Float($0 % 7) * -0.13 + 0.4 }
        for biased in [false, true] {
            var expected = [Float](repeating: 0, count: count)
            for j in 0..<count {
                let a = biased ? a0[j] + ba[j] : a0[j], g = biased ? g0[j] + bg[j] : g0[j]
                expected[j] = VectorMath.gelu(Float8(repeating: g))[0] * a
            }
            var a = a0, g = g0, got = [Float](repeating: .nan, count: count + 3)
            a.withUnsafeMutableBufferPointer { pa in
                g.withUnsafeMutableBufferPointer { pg in
                    got.withUnsafeMutableBufferPointer { d in
                        VectorMath.gegluCombine(pa.baseAddress!, pg.baseAddress!, biasA: biased ? ba : nil, biasG: biased ? bg : nil, d.baseAddress!, count)
                    }
                }
            }
            let same = Array(got.prefix(count)) == expected, untouched = got.suffix(3).allSatisfy(\.isNaN)
            #expect(same, "count \(count) biased \(biased)")
            #expect(untouched, "count \(count): wrote past the row")
        }
    }
}
