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
}
