import Foundation
import Tensors

/// Group norm (+ SiLU), layer norm and softmax on f32 views; statistics in double precision.
public enum Normalization {
    /// Mean and 1/√(variance + ε) of `count` floats, accumulated in double precision in order.
    @inline(__always)
    public static func statistics(_ x: UnsafePointer<Float>, count: Int, epsilon: Float) -> (mean: Double, rstd: Double) {
        var sum = 0.0, sq = 0.0
        for i in 0..<count { let v = Double(x[i]); sum += v; sq += v * v }
        let mean = sum / Double(max(count, 1))
        return (mean, 1 / (max(0, sq / Double(max(count, 1)) - mean * mean) + Double(epsilon)).squareRoot())
    }

    public static func groupNorm(x: View, scale: View, bias: View, out: View, groups: Int, epsilon: Float, silu: Bool, threads: Int) {
        let (n, c) = (x.dims[0], x.dims[1])
        let spatial = x.count / (n * c), cg = c / groups
        Parallel.forRanges(n * groups, threads: threads) { range in
            for ng in range {
                let (b, g) = (ng / groups, ng % groups)
                let offset = (b * c + g * cg) * spatial
                let src = x.floats + offset, dst = out.floats + offset
                var sum = 0.0, sq = 0.0
                for i in 0..<(cg * spatial) { let v = Double(src[i]); sum += v; sq += v * v }
                let count = Double(cg * spatial)
                let mean = sum / count
                let rstd = 1 / (max(0, sq / count - mean * mean) + Double(epsilon)).squareRoot()
                for k in 0..<cg {
                    let ch = g * cg + k
                    let a = Float(Double(scale.floats[ch]) * rstd), bb = Float(Double(bias.floats[ch]) - mean * Double(scale.floats[ch]) * rstd)
                    let s = src + k * spatial, d = dst + k * spatial
                    if silu {
                        VectorMath.map(s, d, spatial) { VectorMath.silu($0 * a + bb) }
                    } else {
                        VectorMath.map(s, d, spatial) { $0 * a + bb }
                    }
                }
            }
        }
    }

    /// Over the trailing axes from `axis`; scale and bias broadcast to the normalised shape.
    public static func layerNorm(x: View, scale: View, bias: View?, out: View, axis: Int, epsilon: Float, threads: Int) {
        let a = axis < 0 ? axis + x.dims.count : axis
        let width = x.dims[a...].reduce(1, *)
        let rows = x.count / max(width, 1)
        let full = scale.count == width && (bias == nil || bias!.count == width)
        Parallel.forRanges(rows, threads: threads, minimumPerThread: 8) { range in
            for r in range {
                let src = x.floats + r * width, dst = out.floats + r * width
                var sum = 0.0, sq = 0.0
                for i in 0..<width { let v = Double(src[i]); sum += v; sq += v * v }
                let mean = sum / Double(width)
                let rstd = Float(1 / (max(0, sq / Double(width) - mean * mean) + Double(epsilon)).squareRoot())
                let m = Float(mean)
                if full {
                    for i in 0..<width { dst[i] = (src[i] - m) * rstd * scale.floats[i] + (bias?.floats[i] ?? 0) }
                } else {
                    // Scale/bias smaller than the row: broadcast from the right.
                    for i in 0..<width {
                        dst[i] = (src[i] - m) * rstd * scale.floats[i % scale.count] + (bias.map { $0.floats[i % $0.count] } ?? 0)
                    }
                }
            }
        }
    }

    public static func softmax(x: View, out: View, axis: Int, log: Bool, threads: Int) {
        let a = axis < 0 ? axis + x.dims.count : axis
        let inner = x.dims[(a + 1)...].reduce(1, *), len = x.dims[a], outer = x.dims[..<a].reduce(1, *)
        Parallel.forRanges(outer * inner, threads: threads, minimumPerThread: 8) { range in
            for oi in range {
                let (o, i) = (oi / inner, oi % inner)
                let src = x.floats + o * len * inner + i, dst = out.floats + o * len * inner + i
                var mx = -Float.infinity
                for k in 0..<len where src[k * inner] > mx { mx = src[k * inner] }
                var sum: Float = 0
                if log {
                    // Sum first: dst may be src (in place).
                    for k in 0..<len { sum += expf(src[k * inner] - mx) }
                    let ls = logf(sum)
                    for k in 0..<len { dst[k * inner] = src[k * inner] - mx - ls }
                } else {
                    for k in 0..<len { let e = expf(src[k * inner] - mx); dst[k * inner] = e; sum += e }
                    let inv = 1 / sum
                    for k in 0..<len { dst[k * inner] *= inv }
                }
            }
        }
    }
}
