import Foundation
import Plan
import Tensors

/// Elementwise kernels on f32 views with NumPy broadcasting (fast paths for equal shapes and scalars).
public enum ElementwiseKernels {
    /// A unary function's fast f32 form, or nil when it has none here.
    static func unary(_ op: UnaryOp) -> ((Float) -> Float)? {
        switch op {
        case .abs: return { Swift.abs($0) }
        case .neg: return { -$0 }
        case .sqrt: return { $0.squareRoot() }
        case .reciprocal: return { 1 / $0 }
        case .exp: return { expf($0) }
        case .log: return { logf($0) }
        case .sin: return { sinf($0) }
        case .cos: return { cosf($0) }
        case .tanh: return { tanhf($0) }
        case .erf: return { erff($0) }
        case .sigmoid: return { 1 / (1 + expf(-$0)) }
        case .relu: return { max($0, 0) }
        case .silu: return { $0 / (1 + expf(-$0)) }
        case .floor: return { $0.rounded(.down) }
        case .ceil: return { $0.rounded(.up) }
        default: return nil
        }
    }

    static func binary(_ op: BinaryOp) -> ((Float, Float) -> Float)? {
        switch op {
        case .add: return { $0 + $1 }
        case .sub: return { $0 - $1 }
        case .mul: return { $0 * $1 }
        case .div: return { $0 / $1 }
        case .max: return { $0.isNaN || $1.isNaN ? .nan : Swift.max($0, $1) }
        case .min: return { $0.isNaN || $1.isNaN ? .nan : Swift.min($0, $1) }
        case .pow: return { powf($0, $1) }
        default: return nil
        }
    }

    /// Whether `kernel` runs here for these dtypes.
    public static func supports(_ e: Elementwise, _ operands: [View], _ result: View) -> Bool {
        guard result.dtype == .f32, operands.allSatisfy({ $0.dtype == .f32 }) else { return false }
        switch e {
        case .unary(let n): return unary(n) != nil
        case .binary(let n): return binary(n) != nil
        case .leakyRelu, .gelu, .clip, .geglu: return true
        default: return false
        }
    }

    /// Strides (in elements) of `dims` broadcast to `out`.
    static func broadcastStrides(_ dims: [Int], _ out: [Int]) -> [Int] {
        let padded = [Int](repeating: 1, count: out.count - dims.count) + dims
        var strides = [Int](repeating: 0, count: out.count)
        var s = 1
        for i in stride(from: out.count - 1, through: 0, by: -1) {
            strides[i] = padded[i] == 1 ? 0 : s
            s *= padded[i]
        }
        return strides
    }

    public static func run(_ e: Elementwise, operands: [View], out: View, threads: Int) {
        let n = out.count
        let o = out.floats
        switch e {
        case .unary(let op) where op == .silu || op == .sigmoid || op == .exp:
            let x = operands[0].floats
            Parallel.forRanges((n + 1023) / 1024, threads: threads, minimumPerThread: 16) { r in
                let lo = r.lowerBound * 1024, hi = min(n, r.upperBound * 1024)
                switch op {
                case .silu: VectorMath.map(x + lo, o + lo, hi - lo, VectorMath.silu)
                case .sigmoid: VectorMath.map(x + lo, o + lo, hi - lo, VectorMath.sigmoid)
                default: VectorMath.map(x + lo, o + lo, hi - lo, VectorMath.exp)
                }
            }
        case .unary(let op):
            guard let f = unary(op) else { return }  // (`supports` said no: the executor runs the reference kernel)
            let x = operands[0].floats
            Parallel.forRanges(n, threads: threads, minimumPerThread: 1 << 15) { r in for i in r { o[i] = f(x[i]) } }
        case .leakyRelu(let alpha):
            let x = operands[0].floats
            Parallel.forRanges(n, threads: threads, minimumPerThread: 1 << 15) { r in for i in r { o[i] = x[i] >= 0 ? x[i] : alpha * x[i] } }
        case .gelu(let tanh):
            let x = operands[0].floats
            Parallel.forRanges((n + 1023) / 1024, threads: threads, minimumPerThread: 16) { r in
                let lo = r.lowerBound * 1024, hi = min(n, r.upperBound * 1024)
                VectorMath.map(x + lo, o + lo, hi - lo, tanh ? VectorMath.geluTanh : VectorMath.gelu)
            }
        case .clip(let lo, let hi):
            let x = operands[0].floats
            Parallel.forRanges(n, threads: threads, minimumPerThread: 1 << 15) { r in for i in r { o[i] = x[i].isNaN ? x[i] : min(max(x[i], lo), hi) } }
        case .geglu:
            let x = operands[0].floats
            let half = out.dims.last!
            let rows = n / half
            Parallel.forRanges(rows, threads: threads, minimumPerThread: 64) { r in
                for row in r {
                    let src = x + row * 2 * half, dst = o + row * half
                    VectorMath.map(src + half, dst, half, VectorMath.gelu)
                    for j in 0..<half { dst[j] *= src[j] }
                }
            }
        case .binary(let op):
            // Each operator gets its own copy of the loops (the closure is inlined, the loops vectorise).
            switch op {
            case .add: binaryLoops(operands, out, threads) { $0 + $1 }
            case .sub: binaryLoops(operands, out, threads) { $0 - $1 }
            case .mul: binaryLoops(operands, out, threads) { $0 * $1 }
            case .div: binaryLoops(operands, out, threads) { $0 / $1 }
            default:
                guard let f = binary(op) else { return }
                binaryLoops(operands, out, threads, f)
            }
        default: break
        }
    }

    @inline(__always)
    static func binaryLoops(_ operands: [View], _ out: View, _ threads: Int, _ f: (Float, Float) -> Float) {
        let n = out.count
        let o = out.floats
        let a = operands[0], b = operands[1]
        let (x, y) = (a.floats, b.floats)
        if a.count == n && b.count == n {
            Parallel.forRanges(n, threads: threads, minimumPerThread: 1 << 15) { r in for i in r { o[i] = f(x[i], y[i]) } }
        } else if b.count == 1 && a.count == n {
            let s = y[0]
            Parallel.forRanges(n, threads: threads, minimumPerThread: 1 << 15) { r in for i in r { o[i] = f(x[i], s) } }
        } else if a.count == 1 && b.count == n {
            let s = x[0]
            Parallel.forRanges(n, threads: threads, minimumPerThread: 1 << 15) { r in for i in r { o[i] = f(s, y[i]) } }
        } else {
            let dims = out.dims
            let sa = broadcastStrides(a.dims, dims), sb = broadcastStrides(b.dims, dims)
            let inner = dims.last ?? 1
            let rows = n / max(inner, 1)
            let (ia, ib) = (sa.last ?? 0, sb.last ?? 0)
            Parallel.forRanges(rows, threads: threads, minimumPerThread: 64) { r in
                var index = [Int](repeating: 0, count: max(dims.count - 1, 0))
                // Row r's multi-index over the leading axes.
                for row in r {
                    var rem = row
                    for d in stride(from: dims.count - 2, through: 0, by: -1) { index[d] = rem % dims[d]; rem /= dims[d] }
                    var oa = 0, ob = 0
                    for d in 0..<(dims.count - 1) { oa += index[d] * sa[d]; ob += index[d] * sb[d] }
                    let dst = o + row * inner
                    if ia == 1 && ib == 1 {
                        let (p, q) = (x + oa, y + ob)
                        for j in 0..<inner { dst[j] = f(p[j], q[j]) }
                    } else if ia == 1 && ib == 0 {
                        let (p, v) = (x + oa, y[ob])
                        for j in 0..<inner { dst[j] = f(p[j], v) }
                    } else {
                        for j in 0..<inner { dst[j] = f(x[oa + j * ia], y[ob + j * ib]) }
                    }
                }
            }
        }
    }
}
