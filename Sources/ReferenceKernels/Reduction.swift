import Foundation
import Plan
import Tensors

extension Reference {
    public typealias Reduction = ReduceOp

    /// Reduces over `axes` (empty: all), keeping them as size 1 when `keepDims`.
    public static func reduce(_ x: Tensor, _ kind: Reduction, axes: [Int], keepDims: Bool) -> Tensor {
        let dims = x.shape.dims
        let set = axes.isEmpty ? Set(0..<dims.count) : Set(axes.map { $0 < 0 ? $0 + dims.count : $0 })
        let keptDims = dims.enumerated().map { set.contains($0.offset) ? 1 : $0.element }
        let outCount = keptDims.reduce(1, *)
        let v = doubles(x)
        var acc = [Double](repeating: 0, count: outCount)
        var counts = [Int](repeating: 0, count: outCount)
        let outStrides = strides(keptDims)
        // Reducing an empty set gives the identity: the dtype's lowest (max) or highest (min) value.
        let (lowest, highest): (Double, Double) = {
            switch x.dtype {
            case .bool: return (0, 1)
            case .u8: return (0, 255)
            case .i8: return (-128, 127)
            case .i16: return (-32768, 32767)
            case .i32: return (Double(Int32.min), Double(Int32.max))
            case .i64: return (Double(Int64.min), Double(Int64.max))
            default: return (-.infinity, .infinity)
            }
        }()
        switch kind {
        case .max: acc = [Double](repeating: lowest, count: outCount)
        case .min: acc = [Double](repeating: highest, count: outCount)
        case .prod: acc = [Double](repeating: 1, count: outCount)
        default: break
        }
        // logSumExp: subtract the max first.
        var maxima: [Double] = []
        if kind == .logSumExp {
            maxima = [Double](repeating: -.infinity, count: outCount)
            forEachIndex(dims) { i, index in
                var o = 0
                for d in 0..<dims.count where !set.contains(d) { o += index[d] * outStrides[d] }
                maxima[o] = Swift.max(maxima[o], v[i])
            }
        }
        forEachIndex(dims) { i, index in
            var o = 0
            for d in 0..<dims.count where !set.contains(d) { o += index[d] * outStrides[d] }
            let e = v[i]
            counts[o] += 1
            switch kind {
            case .sum, .mean, .logSum: acc[o] += e
            case .max: acc[o] = e.isNaN || acc[o].isNaN ? .nan : Swift.max(acc[o], e)
            case .min: acc[o] = e.isNaN || acc[o].isNaN ? .nan : Swift.min(acc[o], e)
            case .prod: acc[o] *= e
            case .sumSquare, .l2: acc[o] += e * e
            case .l1: acc[o] += Swift.abs(e)
            case .logSumExp: acc[o] += Foundation.exp(e - (maxima[o].isFinite ? maxima[o] : 0))
            }
        }
        for o in 0..<outCount {
            switch kind {
            case .mean: acc[o] /= Double(Swift.max(counts[o], 1))
            case .l2: acc[o] = acc[o].squareRoot()
            case .logSum: acc[o] = Foundation.log(acc[o])
            case .logSumExp: acc[o] = Foundation.log(acc[o]) + (maxima[o].isFinite ? maxima[o] : 0)
            default: break
            }
        }
        let outDims = keepDims ? keptDims : dims.enumerated().filter { !set.contains($0.offset) }.map(\.element)
        return tensor(acc, x.dtype, Shape(outDims))
    }

    /// Index of the max (or min) along `axis`, as int64.
    public static func argExtreme(_ x: Tensor, max: Bool, axis: Int, keepDims: Bool, selectLastIndex: Bool) -> Tensor {
        let dims = x.shape.dims
        let a = axis < 0 ? axis + dims.count : axis
        let inner = dims[(a + 1)...].reduce(1, *), n = dims[a], outer = dims[..<a].reduce(1, *)
        let v = doubles(x)
        var out = [Double](repeating: 0, count: outer * inner)
        for o in 0..<outer {
            for i in 0..<inner {
                var best = 0
                for k in 1..<Swift.max(n, 1) {
                    let cur = v[(o * n + k) * inner + i], b = v[(o * n + best) * inner + i]
                    let better = max ? cur > b : cur < b
                    if better || (selectLastIndex && cur == b) { best = k }
                }
                out[o * inner + i] = Double(best)
            }
        }
        var outDims = dims
        if keepDims { outDims[a] = 1 } else { outDims.remove(at: a) }
        return tensor(out, .i64, Shape(outDims))
    }

    /// Running sum along `axis`.
    public static func cumsum(_ x: Tensor, axis: Int, exclusive: Bool, reverse: Bool) -> Tensor {
        let dims = x.shape.dims
        let a = axis < 0 ? axis + dims.count : axis
        let inner = dims[(a + 1)...].reduce(1, *), n = dims[a], outer = dims[..<a].reduce(1, *)
        let v = doubles(x)
        var out = [Double](repeating: 0, count: v.count)
        for o in 0..<outer {
            for i in 0..<inner {
                var s = 0.0
                for step in 0..<n {
                    let k = reverse ? n - 1 - step : step
                    let idx = (o * n + k) * inner + i
                    if exclusive { out[idx] = s; s += v[idx] } else { s += v[idx]; out[idx] = s }
                }
            }
        }
        return tensor(out, x.dtype, x.shape)
    }
}
