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
