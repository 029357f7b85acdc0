import Foundation
import Plan
import Tensors

extension Reference {
    public typealias Unary = UnaryOp
    public typealias Binary = BinaryOp
}

extension UnaryOp {
        /// The function in float64 (the reference kernels' arithmetic).
        public func apply(_ x: Double) -> Double {
            switch self {
            case .abs: return Swift.abs(x)
            case .neg: return -x
            case .sqrt: return x.squareRoot()
            case .reciprocal: return 1 / x
            case .exp: return Foundation.exp(x)
            case .log: return Foundation.log(x)
            case .sin: return Foundation.sin(x)
            case .cos: return Foundation.cos(x)
            case .tan: return Foundation.tan(x)
            case .tanh: return Foundation.tanh(x)
            case .erf: return Foundation.erf(x)
            case .sigmoid: return 1 / (1 + Foundation.exp(-x))
            case .relu: return x > 0 ? x : 0
            case .silu: return x / (1 + Foundation.exp(-x))
            case .floor: return x.rounded(.down)
            case .ceil: return x.rounded(.up)
            case .round: return x.rounded(.toNearestOrEven)
            case .sign: return x > 0 ? 1 : (x < 0 ? -1 : 0)
            case .not: return x == 0 ? 1 : 0
            case .softplus: return x > 20 ? x : Foundation.log1p(Foundation.exp(x))
            case .softsign: return x / (1 + Swift.abs(x))
            case .mish: return x * Foundation.tanh(x > 20 ? x : Foundation.log1p(Foundation.exp(x)))
            case .isNaN: return x.isNaN ? 1 : 0
            case .isInf: return x.isInfinite ? 1 : 0
            case .asin: return Foundation.asin(x)
            case .acos: return Foundation.acos(x)
            case .atan: return Foundation.atan(x)
            case .sinh: return Foundation.sinh(x)
            case .cosh: return Foundation.cosh(x)
            case .asinh: return Foundation.asinh(x)
            case .acosh: return Foundation.acosh(x)
            case .atanh: return Foundation.atanh(x)
            }
        }
}

extension BinaryOp {
        /// `integer`: the operands are integers, so `div` truncates and `mod` follows the divisor's sign.
        public func apply(_ a: Double, _ b: Double, integer: Bool) -> Double {
            switch self {
            case .add: return a + b
            case .sub: return a - b
            case .mul: return a * b
            case .div: return integer ? (b == 0 ? 0 : (a / b).rounded(.towardZero)) : a / b
            case .pow: return Foundation.pow(a, b)
            case .max: return a.isNaN || b.isNaN ? .nan : Swift.max(a, b)
            case .min: return a.isNaN || b.isNaN ? .nan : Swift.min(a, b)
            case .fmod: return Foundation.fmod(a, b)
            case .mod:
                if integer {
                    guard b != 0 else { return 0 }
                    let r = Foundation.fmod(a, b)
                    return r != 0 && (r < 0) != (b < 0) ? r + b : r
                }
                let r = Foundation.fmod(a, b)
                return r != 0 && (r < 0) != (b < 0) ? r + b : r
            case .equal: return a == b ? 1 : 0
            case .less: return a < b ? 1 : 0
            case .lessOrEqual: return a <= b ? 1 : 0
            case .greater: return a > b ? 1 : 0
            case .greaterOrEqual: return a >= b ? 1 : 0
            case .and: return a != 0 && b != 0 ? 1 : 0
            case .or: return a != 0 || b != 0 ? 1 : 0
            case .xor: return (a != 0) != (b != 0) ? 1 : 0
            }
        }
}

extension Reference {
    /// `f(x)` elementwise into `dtype` (default: the input's).
    public static func map(_ x: Tensor, to dtype: DType? = nil, _ f: (Double) -> Double) -> Tensor {
        tensor(doubles(x).map(f), dtype ?? x.dtype, x.shape)
    }

    public static func unary(_ f: Unary, _ x: Tensor) -> Tensor {
        let out: DType = [.not, .isNaN, .isInf].contains(f) ? .bool : x.dtype
        return map(x, to: out, f.apply)
    }

    /// `f(a, b)` with broadcasting to `outShape`.
    public static func binary(_ f: Binary, _ a: Tensor, _ b: Tensor, outShape: Shape, outType: DType) -> Tensor {
        let integer = !a.dtype.isFloatingPoint
        let x = doubles(a), y = doubles(b)
        let ia = broadcastIndices(from: a.shape.dims, to: outShape.dims)
        let ib = broadcastIndices(from: b.shape.dims, to: outShape.dims)
        var out = [Double](repeating: 0, count: outShape.count)
        for i in 0..<out.count { out[i] = f.apply(x[ia[i]], y[ib[i]], integer: integer) }
        return tensor(out, outType, outShape)
    }

    /// `condition ? a : b` with broadcasting.
    public static func select(_ condition: Tensor, _ a: Tensor, _ b: Tensor, outShape: Shape) -> Tensor {
        let c = doubles(condition), x = doubles(a), y = doubles(b)
        let ic = broadcastIndices(from: condition.shape.dims, to: outShape.dims)
        let ia = broadcastIndices(from: a.shape.dims, to: outShape.dims)
        let ib = broadcastIndices(from: b.shape.dims, to: outShape.dims)
        var out = [Double](repeating: 0, count: outShape.count)
        for i in 0..<out.count { out[i] = c[ic[i]] != 0 ? x[ia[i]] : y[ib[i]] }
        return tensor(out, a.dtype, outShape)
    }

    public static func cast(_ x: Tensor, to dtype: DType) -> Tensor { x.converted(to: dtype) }

    public static func leakyRelu(_ x: Tensor, alpha: Double) -> Tensor { map(x) { $0 >= 0 ? $0 : alpha * $0 } }

    public static func gelu(_ x: Tensor, tanhApproximation: Bool) -> Tensor {
        map(x) { v in
            tanhApproximation
                ? 0.5 * v * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
                : 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot()))
        }
    }

    /// GEGLU over the last axis: its first half times the exact GELU of its second half.
    public static func geglu(_ x: Tensor) -> Tensor {
        let n = x.shape.dims.last! / 2
        let halves = split(x, axis: -1, sizes: [n, n])
        return binary(.mul, halves[0], gelu(halves[1], tanhApproximation: false), outShape: halves[0].shape, outType: x.dtype)
    }

    public static func clip(_ x: Tensor, min lo: Double, max hi: Double) -> Tensor {
        map(x) { $0.isNaN ? $0 : Swift.min(Swift.max($0, lo), hi) }
    }

    public static func elu(_ x: Tensor, alpha: Double) -> Tensor { map(x) { $0 >= 0 ? $0 : alpha * (Foundation.exp($0) - 1) } }

    public static func hardSigmoid(_ x: Tensor, alpha: Double, beta: Double) -> Tensor {
        map(x) { Swift.max(0, Swift.min(1, alpha * $0 + beta)) }
    }
}
