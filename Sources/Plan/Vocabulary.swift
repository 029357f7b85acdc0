/// The small vocabularies the compiler and the runtime share: defined here once, used by the IR,
/// the plan's kernels, the fast kernels and their reference twins. Each is stored in a plan by its
/// raw value (the names plans have always carried); a value this build does not know refuses the
/// plan when it is opened (JSON decoding fails, naming the field).

/// Unary elementwise functions.
public enum UnaryOp: String, Codable, Hashable, Sendable, CaseIterable {
    case abs, neg, sqrt, reciprocal, exp, log, sin, cos, tan, tanh, erf, sigmoid, relu, silu
    case floor, ceil, round, sign, not, softplus, softsign, mish, isNaN, isInf
    case asin, acos, atan, sinh, cosh, asinh, acosh, atanh

    /// Predicates produce bool.
    public var producesBool: Bool { self == .not || self == .isNaN || self == .isInf }
}

/// Binary elementwise functions (broadcasting).
public enum BinaryOp: String, Codable, Hashable, Sendable, CaseIterable {
    case add, sub, mul, div, pow, max, min
    /// C `fmod` (sign of the dividend).
    case fmod
    /// Python-style modulo (sign of the divisor), for integers.
    case mod
    case equal, less, lessOrEqual, greater, greaterOrEqual, and, or, xor

    /// Comparisons and logical ops produce bool.
    public var producesBool: Bool {
        switch self {
        case .equal, .less, .lessOrEqual, .greater, .greaterOrEqual, .and, .or, .xor: return true
        default: return false
        }
    }
}

/// Reductions over axes.
public enum ReduceOp: String, Codable, Hashable, Sendable, CaseIterable {
    case sum, mean, max, min, prod, sumSquare, l1, l2, logSum, logSumExp
}

/// How padding fills the border.
public enum PadMode: String, Codable, Hashable, Sendable, CaseIterable {
    case constant, reflect, edge, wrap
}

/// Resize interpolation.
public enum ResizeMode: String, Codable, Hashable, Sendable, CaseIterable {
    case nearest, linear, cubic
}

/// How a resize maps output coordinates to input coordinates (ONNX's names).
public enum CoordinateTransform: String, Codable, Hashable, Sendable, CaseIterable {
    case halfPixel = "half_pixel", halfPixelSymmetric = "half_pixel_symmetric", pytorchHalfPixel = "pytorch_half_pixel"
    case alignCorners = "align_corners", asymmetric, tfCropAndResize = "tf_crop_and_resize"
}

/// How a nearest-neighbour resize rounds (ONNX's names).
public enum NearestMode: String, Codable, Hashable, Sendable, CaseIterable {
    case roundPreferFloor = "round_prefer_floor", roundPreferCeil = "round_prefer_ceil", floor, ceil
}

/// How ScatterND combines an update with the value there.
public enum ScatterReduction: String, Codable, Hashable, Sendable, CaseIterable {
    case none, add, mul, max, min
}

/// Activation functions applied by an epilogue of a convolution or linear (leaky ReLU's slope and
/// PReLU's slopes travel beside it).
public enum ActivationKind: String, Codable, Hashable, Sendable, CaseIterable {
    case silu, gelu, geluTanh = "gelu_tanh", relu, sigmoid, leakyRelu = "leaky_relu"
}

/// The precision of the activations fed to the GEMMs of a plan.
public enum ActivationPrecision: String, Codable, Hashable, Sendable, CaseIterable {
    case f32, bf16, int8
}

/// How a weight is laid out for the GEMM micro-kernels when a plan stores it packed (`compile
/// --prepack`): the key the executor asks for, with the panel width of the processor's kernels.
public enum PanelLayout: String, Codable, Hashable, Sendable, CaseIterable {
    /// A convolution's rows `[oc / groups, ic · kh · kw]` per group, as f32 A panels (an upsampling
    /// convolution's four phase kernels as four groups).
    case rows
    /// The same as bf16 pairs of input channels, tap by tap.
    case rowsBF16 = "rows-bf16"
    /// Winograd F(2,3): the 16 transformed kernels, f32 A panels (16 groups).
    case winograd
    /// The same as bf16 pairs of input channels.
    case winogradBF16 = "winograd-bf16"
    /// Winograd F(4,3): the 36 transformed kernels, f32 A panels (36 groups).
    case winograd43 = "winograd43"
    /// A linear layer's `wᵀ` as f32 B panels.
    case columns
    /// The same as bf16 pairs of steps.
    case columnsBF16 = "columns-bf16"
    /// A linear layer's int8 weight for the int8 × int8 kernels (`--activations int8`): B panels of
    /// words of four consecutive inputs (each `w + 128`), ⌈k / 4⌉ steps, then one f32 scale per column.
    case int8Columns = "int8-columns"
    /// A convolution's int8 weight for the int8 × int8 kernels: A panels stepping tap by tap over
    /// words of four input channels (each `w + 128`), then one f32 scale per output channel.
    case int8Taps = "int8-taps"

    /// Whether the panels hold int8 words of an int8 weight, followed by a scale per row or column.
    public var isInt8: Bool { self == .int8Columns || self == .int8Taps }

    /// Rows or columns packed, steps per panel and groups of panels of the packed form of a weight of
    /// `dims` in a kernel of `groups` groups (a convolution's, 4 for an upsampling convolution's
    /// phases, 1 for the others); nil when the layout does not apply to such a weight.
    public func geometry(weight dims: [Int], groups: Int) -> (extent: Int, k: Int, groups: Int)? {
        func half(_ n: Int) -> Int { (n + 1) / 2 }
        switch self {
        case .rows, .rowsBF16:
            guard dims.count == 4, groups > 0, dims[0] % groups == 0 else { return nil }
            let taps = dims[2] * dims[3]
            return (dims[0] / groups, self == .rows ? dims[1] * taps : taps * half(dims[1]), groups)
        case .winograd, .winogradBF16, .winograd43:
            guard dims.count == 4, groups == 1, dims[2] == 3, dims[3] == 3 else { return nil }
            return (dims[0], self == .winogradBF16 ? half(dims[1]) : dims[1], self == .winograd43 ? 36 : 16)
        case .columns, .columnsBF16:
            guard dims.count == 2, groups == 1 else { return nil }
            return (dims[0], self == .columns ? dims[1] : half(dims[1]), 1)
        case .int8Columns:
            guard dims.count == 2, groups == 1 else { return nil }
            return (dims[0], (dims[1] + 3) / 4, 1)
        case .int8Taps:
            guard dims.count == 4, groups == 1 else { return nil }
            return (dims[0], dims[2] * dims[3] * ((dims[1] + 3) / 4), 1)
        }
    }
}
