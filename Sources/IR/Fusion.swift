/// Attributes of the fused ops the compiler's fusion passes produce.

/// An activation applied by an epilogue.
public enum Activation: Hashable, Sendable {
    case silu, gelu, geluTanh, relu, sigmoid
    case leakyRelu(Float)

    public var name: String {
        switch self {
        case .silu: return "silu"
        case .gelu: return "gelu"
        case .geluTanh: return "gelu_tanh"
        case .relu: return "relu"
        case .sigmoid: return "sigmoid"
        case .leakyRelu: return "leaky_relu"
        }
    }
}

/// One step of an epilogue, applied to every output element in order.
public enum EpilogueOp: Hashable, Sendable {
    case activation(Activation)
    case scale(Float)
    /// Add the next residual input (same shape as the output).
    case addResidual
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

/// Operands: `x, weight, bias?, [norm scale, norm bias], residuals...` (one per `addResidual`).
public struct ConvFusion: Hashable, Sendable {
    public var hasBias: Bool
    public var prologue: GroupNormPrologue?
    public var epilogue: [EpilogueOp]
    public init(hasBias: Bool, prologue: GroupNormPrologue? = nil, epilogue: [EpilogueOp] = []) {
        self.hasBias = hasBias
        self.prologue = prologue
        self.epilogue = epilogue
    }
    public var residualCount: Int { epilogue.filter { $0 == .addResidual }.count }
}

/// Operands: `x, weight, bias?, [norm scale, norm bias?], residuals...`.
public struct LinearFusion: Hashable, Sendable {
    public var hasBias: Bool
    /// Layer norm over the last axis of x: epsilon and whether it has a bias.
    public var layerNorm: LayerNormPrologue?
    public var epilogue: [EpilogueOp]
    public init(hasBias: Bool, layerNorm: LayerNormPrologue? = nil, epilogue: [EpilogueOp] = []) {
        self.hasBias = hasBias
        self.layerNorm = layerNorm
        self.epilogue = epilogue
    }
    public var residualCount: Int { epilogue.filter { $0 == .addResidual }.count }
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
