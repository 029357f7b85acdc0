import Foundation
import Tensors

extension Reference {
    /// Softmax (or log-softmax) along `axis`, max-subtracted, sums in double precision.
    public static func softmax(_ x: Tensor, axis: Int, log: Bool = false) -> Tensor {
        let dims = x.shape.dims
        let a = axis < 0 ? axis + dims.count : axis
        let inner = dims[(a + 1)...].reduce(1, *), n = dims[a], outer = dims[..<a].reduce(1, *)
        var v = doubles(x)
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * n * inner + i
                var m = -Double.infinity
                for k in 0..<n { m = max(m, v[base + k * inner]) }
                var s = 0.0
                for k in 0..<n { s += Foundation.exp(v[base + k * inner] - m) }
                for k in 0..<n {
                    let e = v[base + k * inner] - m
                    v[base + k * inner] = log ? e - Foundation.log(s) : Foundation.exp(e) / s
                }
            }
        }
        return tensor(v, x.dtype, x.shape)
    }

    /// Layer norm over the axes from `axis` on; scale and bias broadcast to the normalised shape.
    public static func layerNorm(_ x: Tensor, _ scale: Tensor, _ bias: Tensor?, axis: Int, epsilon: Double) -> Tensor {
        let dims = x.shape.dims
        let a = axis < 0 ? axis + dims.count : axis
        let normalized = Array(dims[a...])
        let m = normalized.reduce(1, *), rows = x.count / max(m, 1)
        let s = doubles(scale), b = bias.map(doubles)
        let si = broadcastIndices(from: scale.shape.dims, to: normalized)
        let bi = bias.map { broadcastIndices(from: $0.shape.dims, to: normalized) }
        var v = doubles(x)
        for r in 0..<rows {
            let base = r * m
            var mean = 0.0
            for k in 0..<m { mean += v[base + k] }
            mean /= Double(m)
            var variance = 0.0
            for k in 0..<m { variance += (v[base + k] - mean) * (v[base + k] - mean) }
            variance /= Double(m)
            let inv = 1 / (variance + epsilon).squareRoot()
            for k in 0..<m {
                v[base + k] = (v[base + k] - mean) * inv * s[si[k]] + (b.map { $0[bi![k]] } ?? 0)
            }
        }
        return tensor(v, x.dtype, x.shape)
    }

    /// Normalises `x [N, C, ...]` over groups of `C / groups` channels (and all spatial positions),
    /// then applies per-channel `scale` and `bias`. `groups == C` is instance norm.
    public static func groupNorm(_ x: Tensor, _ scale: Tensor, _ bias: Tensor, groups: Int, epsilon: Double) -> Tensor {
        let dims = x.shape.dims
        let n = dims[0], c = dims[1], spatial = dims[2...].reduce(1, *)
        let cg = c / groups, span = cg * spatial
        let s = doubles(scale), b = doubles(bias)
        var v = doubles(x)
        for i in 0..<n {
            for g in 0..<groups {
                let base = (i * c + g * cg) * spatial
                var mean = 0.0
                for k in 0..<span { mean += v[base + k] }
                mean /= Double(span)
                var variance = 0.0
                for k in 0..<span { variance += (v[base + k] - mean) * (v[base + k] - mean) }
                variance /= Double(span)
                let inv = 1 / (variance + epsilon).squareRoot()
                for k in 0..<span {
                    let ch = g * cg + k / spatial
                    v[base + k] = (v[base + k] - mean) * inv * s[ch] + b[ch]
                }
            }
        }
        return tensor(v, x.dtype, x.shape)
    }

    /// Inference-mode batch norm: `(x − mean) / √(var + ε) · scale + bias`, per channel (axis 1).
    public static func batchNorm(_ x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, variance: Tensor, epsilon: Double) -> Tensor {
        let dims = x.shape.dims
        let c = dims[1], spatial = dims[2...].reduce(1, *)
        let s = doubles(scale), b = doubles(bias), m = doubles(mean), va = doubles(variance)
        var v = doubles(x)
        for i in 0..<v.count {
            let ch = (i / spatial) % c
            v[i] = (v[i] - m[ch]) / (va[ch] + epsilon).squareRoot() * s[ch] + b[ch]
        }
        return tensor(v, x.dtype, x.shape)
    }
}
