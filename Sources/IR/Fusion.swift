import Plan
/// Attributes of the fused ops the compiler's fusion passes produce.

/// An activation applied by an epilogue.
public enum Activation: Hashable, Sendable {
    case silu, gelu, geluTanh, relu, sigmoid
    case leakyRelu(Float)

    /// The plan's name for it (leaky ReLU's slope travels beside it).
    public var kind: ActivationKind {
        switch self {
        case .silu: return .silu
        case .gelu: return .gelu
        case .geluTanh: return .geluTanh
        case .relu: return .relu
        case .sigmoid: return .sigmoid
        case .leakyRelu: return .leakyRelu
        }
    }

    public var name: String { kind.rawValue }
}

/// One step of an epilogue, applied to every output element in order.
public enum EpilogueOp: Hashable, Sendable {
    case activation(Activation)
    case scale(Float)
    /// Add the next residual input (same shape as the output).
    case addResidual
    /// Add the next residual input, one value per (image, channel) of a convolution's `[N, C, H, W]`
    /// output: shape `[N, C, 1, 1]`, broadcast over the plane (a time embedding added per channel).
    case addChannels
    /// Multiply by the next residual input, a single value known only at run time (a control scale).
    case scaleByInput
    /// PReLU with one slope per channel of a convolution's `[N, C, H, W]` output, the next residual
    /// input (shape `[1, C, 1, 1]`): `x ≥ 0 ? x : slope·x`.
    case preluChannels

    /// Whether this step takes the next residual input.
    public var takesOperand: Bool { self == .addResidual || self == .addChannels || self == .scaleByInput || self == .preluChannels }
}

/// Group norm (+ SiLU) of a convolution's input, applied while the convolution reads it.
public struct GroupNormPrologue: Hashable, Sendable {
    public var groups: Int
    public var epsilon: Float
    public var silu: Bool
    public init(groups: Int, epsilon: Float, silu: Bool) {
        self.groups = groups
        self.epsilon = epsilon
        self.silu = silu
    }
}

/// Operands: `x, weight, bias?, [norm scale, norm bias], residuals...` (one per epilogue step that `takesOperand`).
/// `upsampleNearest`: the convolution reads x enlarged twice by nearest neighbour (a 2× nearest resize
/// absorbed by the `upsample-conv` pass; x is the small image).
public struct ConvFusion: Hashable, Sendable {
    public var hasBias: Bool
    public var prologue: GroupNormPrologue?
    public var epilogue: [EpilogueOp]
    public var upsampleNearest: Bool
    public init(hasBias: Bool, prologue: GroupNormPrologue? = nil, epilogue: [EpilogueOp] = [], upsampleNearest: Bool = false) {
        self.hasBias = hasBias
        self.prologue = prologue
        self.epilogue = epilogue
        self.upsampleNearest = upsampleNearest
    }
    public var residualCount: Int { epilogue.filter(\.takesOperand).count }
}

/// Operands: `x, weight, bias?, [norm scale, norm bias?], [input rows, input columns]?,
/// [output rows, output columns]?, residuals...`.
///
/// Layouts (movement ops absorbed by the `linear-layout` pass): with `gathersInput`, element (r, j) of
/// the `[rows, k]` matrix the linear multiplies is `x.flat[inputRows[r] + inputColumns[j]]` (i32
/// tables, `rows = x.count / k`); with `outputShape`, the result (r, j) of the `[rows, n]` product
/// goes to `out.flat[outputRows[r] + outputColumns[j]]` (a permutation) when `scattersOutput`, and
/// the output has that shape. Epilogue steps apply in the output's layout.
public struct LinearFusion: Hashable, Sendable {
    public var hasBias: Bool
    /// Layer norm over the last axis of x: epsilon and whether it has a bias.
    public var layerNorm: LayerNormPrologue?
    public var epilogue: [EpilogueOp]
    public var gathersInput: Bool
    public var scattersOutput: Bool
    /// The output's shape when a layout makes it differ from `x.dims.dropLast() + [n]`.
    public var outputShape: [Int]?
    /// GEGLU of the product (the feed-forward's first layer): y = x·Wᵀ + b has n = 2h columns and the
    /// output h, `y[.., j] · gelu(y[.., h + j])`; the epilogue follows. No layouts with it.
    public var geglu: Bool
    public init(hasBias: Bool, layerNorm: LayerNormPrologue? = nil, epilogue: [EpilogueOp] = [], gathersInput: Bool = false,
                scattersOutput: Bool = false, outputShape: [Int]? = nil, geglu: Bool = false) {
        self.hasBias = hasBias
        self.layerNorm = layerNorm
        self.epilogue = epilogue
        self.gathersInput = gathersInput
        self.scattersOutput = scattersOutput
        self.outputShape = outputShape
        self.geglu = geglu
    }
    public var residualCount: Int { epilogue.filter(\.takesOperand).count }
    /// Index of the first layer-norm operand (or where it would go).
    public var normOperands: Int { 2 + (hasBias ? 1 : 0) }
    /// Index of the input row table (then the input column table), if `gathersInput`.
    public var inputTables: Int { normOperands + (layerNorm.map { $0.hasBias ? 2 : 1 } ?? 0) }
    /// Index of the output row table (then the output column table), if `scattersOutput`.
    public var outputTables: Int { inputTables + (gathersInput ? 2 : 0) }
    /// Operands before the residuals.
    public var operandCount: Int { outputTables + (scattersOutput ? 2 : 0) }
}

public struct LayerNormPrologue: Hashable, Sendable {
    public var epsilon: Float
    public var hasBias: Bool
    public init(epsilon: Float, hasBias: Bool) {
        self.epsilon = epsilon
        self.hasBias = hasBias
    }
}

/// Operands: `q [..., N, d], k [..., M, d] (or kᵀ [..., d, M]), v [..., M, dv], biases...`.
public struct AttentionSpec: Hashable, Sendable {
    public var scale: Float
    public var scaleQueries: Bool
    public var keysTransposed: Bool
    public var biasCount: Int
    public init(scale: Float, scaleQueries: Bool, keysTransposed: Bool, biasCount: Int) {
        self.scale = scale
        self.scaleQueries = scaleQueries
        self.keysTransposed = keysTransposed
        self.biasCount = biasCount
    }
}
