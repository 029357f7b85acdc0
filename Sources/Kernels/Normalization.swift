import Foundation
import Tensors

/// Group norm (+ SiLU), layer norm and softmax on f32 views; statistics in double precision.
public enum Normalization {
    /// Σ f(x[i]) over `count` floats: sixteen f32 lanes, flushed into a double every 1024 values (so
    /// the f32 partial sums stay short), in a fixed order.
    @inline(__always)
    static func sum(_ x: UnsafePointer<Float>, count: Int, _ f: (SIMD16<Float>) -> SIMD16<Float>) -> Double {
        var total = 0.0
        var i = 0
        while i < count {
            let end = min(count, i + 1024)
            var lanes = SIMD16<Float>()
            while i + 16 <= end {
                lanes += f(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self))
                i += 16
            }
            var partial = Double(lanes.sum())
            if i < end {
                // The tail: copied into a zeroed vector, lanes past it masked out after `f`.
                var t = SIMD16<Float>()
                withUnsafeMutableBytes(of: &t) { $0.copyMemory(from: UnsafeRawBufferPointer(start: x + i, count: (end - i) * 4)) }
                let lane = SIMD16<Float>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
                partial += Double(f(t).replacing(with: 0, where: lane .>= Float(end - i)).sum())
                i = end
            }
            total += partial
        }
        return total
    }

    /// Mean and 1/√(variance + ε) of `count` floats: two passes (the mean, then the squared
    /// deviations from it), vectorised, partial sums in double precision.
    @inline(__always)
    public static func statistics(_ x: UnsafePointer<Float>, count: Int, epsilon: Float) -> (mean: Double, rstd: Double) {
        let n = Double(max(count, 1))
        let mean = sum(x, count: count) { $0 } / n
        let m = SIMD16<Float>(repeating: Float(mean))
        let variance = sum(x, count: count) { ($0 - m) * ($0 - m) } / n
        return (mean, 1 / (max(0, variance) + Double(epsilon)).squareRoot())
    }

    /// `dst[i] = (src[i] − mean)·rstd·scale[i] + bias[i]`, eight at a time.
    @inline(__always)
    public static func normalizeRow(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int, mean: Float, rstd: Float,
                                    scale: UnsafePointer<Float>, bias: UnsafePointer<Float>?) {
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
            let s = UnsafeRawPointer(scale + i).loadUnaligned(as: SIMD8<Float>.self)
            let b = bias.map { UnsafeRawPointer($0 + i).loadUnaligned(as: SIMD8<Float>.self) } ?? SIMD8<Float>()
            UnsafeMutableRawPointer(dst + i).storeBytes(of: (v - mean) * rstd * s + b, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count {
            dst[i] = (src[i] - mean) * rstd * scale[i] + (bias?[i] ?? 0)
            i += 1
        }
    }

    public static func groupNorm(x: View, scale: View, bias: View, out: View, groups: Int, epsilon: Float, silu: Bool, threads: Int) {
        let (n, c) = (x.dims[0], x.dims[1])
        let spatial = x.count / (n * c), cg = c / groups
        Parallel.forRanges(n * groups, threads: threads) { range in
            for ng in range {
                let (b, g) = (ng / groups, ng % groups)
                let offset = (b * c + g * cg) * spatial
                let src = x.floats + offset, dst = out.floats + offset
                let (mean, rstd) = statistics(src, count: cg * spatial, epsilon: epsilon)
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
                let (mean, rstdD) = statistics(src, count: width, epsilon: epsilon)
                let rstd = Float(rstdD), m = Float(mean)
                if full {
                    normalizeRow(src, dst, width, mean: m, rstd: rstd, scale: scale.floats, bias: bias?.floats)
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
