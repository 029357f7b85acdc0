import Tensors

/// The kernels a plan's instructions name: the compiler–runtime contract. Every kernel has a fast
/// implementation in `Kernels`/`Executor` or runs its reference twin, and every kernel has a reference
/// twin in `ReferenceKernels` (`--validate`). Parameters are typed and static; layouts as in the IR
/// (NCHW images, `[out, in]` linear weights, `[out, in/groups, kh, kw]` convolution weights).
public enum Kernel: Codable, Sendable, Equatable {
    /// `x, weight, bias?, [prologue scale, prologue bias], [residual]` → conv with prologue and epilogue.
    case conv2d(Conv2DKernel)
    /// `x, weight [in, out/g, kh, kw], bias?`
    case convTranspose2d(ConvTransposeKernel)
    /// `x [..., K], weight [N, K], bias?, [prologue scale, bias], [residual]`
    case linear(LinearKernel)
    /// `a, b` → batched product, broadcast batch dimensions, optionally transposed operands.
    case matmul(MatmulKernel)
    /// `q [..., N, d], k [..., M, d], v [..., M, dv], biases...` → `softmax(q·kᵀ·scale + biases)·v`.
    case attention(AttentionKernel)
    /// `x [N, C, ...], scale [C], bias [C]` → group norm, optionally followed by SiLU.
    case groupNorm(groups: Int, epsilon: Float, silu: Bool)
    /// `x, scale, bias?` over the axes from `axis`.
    case layerNorm(axis: Int, epsilon: Float)
    case batchNorm(epsilon: Float)
    case softmax(axis: Int, log: Bool)
    /// Elementwise functions, broadcasting their inputs to the output shape.
    case elementwise(Elementwise)
    case reduce(kind: ReduceOp, axes: [Int], keepDims: Bool)
    case argExtreme(max: Bool, axis: Int, keepDims: Bool, selectLastIndex: Bool)
    case cumsum(axis: Int, exclusive: Bool, reverse: Bool)
    /// Data movement (any dtype).
    case movement(Movement)
    /// `operands` → einsum with labels per operand and for the output.
    case einsum(operands: [[Int]], output: [Int])
    case scatterND(reduction: ScatterReduction)
    /// A view: the output is the input's bytes under another shape (no instruction is emitted for
    /// reshapes; this kernel exists for an output that must be a copy).
    case copy
}

/// One step applied to every output element after a convolution or a linear, in order.
public enum EpilogueStep: Codable, Sendable, Equatable {
    /// An activation function (`alpha`: leaky ReLU's slope).
    case activation(ActivationKind, alpha: Float)
    /// Multiply by a constant.
    case scale(Float)
    /// Add the extra input at this operand index (same shape as the output).
    case addResidual(operand: Int)
    /// Add the extra input at this operand index, one value per (image, channel) of a convolution's
    /// `[N, C, H, W]` output (shape `[N, C, 1, 1]`), to every element of that channel's plane.
    case addChannels(operand: Int)
    /// Multiply by the single value of the operand at this index (read when the kernel runs).
    case scaleBy(operand: Int)
    /// PReLU with the operand at this index as one slope per channel of a convolution's
    /// `[N, C, H, W]` output (shape `[1, C, 1, 1]`): `x ≥ 0 ? x : slope·x`.
    case preluChannels(operand: Int)
}

/// Group norm (+ SiLU) of the input, applied while the convolution reads it.
public struct NormPrologue: Codable, Sendable, Equatable {
    public var groups: Int
    public var epsilon: Float
    public var silu: Bool
    /// Operand indices of the norm's scale and bias.
    public var scaleOperand: Int
    public var biasOperand: Int
    public init(groups: Int, epsilon: Float, silu: Bool, scaleOperand: Int, biasOperand: Int) {
        self.groups = groups
        self.epsilon = epsilon
        self.silu = silu
        self.scaleOperand = scaleOperand
        self.biasOperand = biasOperand
    }
}

public struct Conv2DKernel: Codable, Sendable, Equatable {
    public var strides: [Int]
    public var pads: [Int]
    public var dilations: [Int]
    public var groups: Int
    public var hasBias: Bool
    public var prologue: NormPrologue?
    public var epilogue: [EpilogueStep]
    /// Set by the compiler's `winograd` pass on 3×3 stride-1 convolutions: run as Winograd F(2,3)
    /// (16 products of transformed tiles instead of 36 multiplies per 2×2 outputs). Absent in plans
    /// written before it (decoded as off).
    public var winograd: Bool?
    /// With `winograd`: the output tile, 2 (F(2,3)) or 4 (F(4,3); with quantised weights only while
    /// their 36 transformed kernels fit `quantizedWinograd43Bytes`). Absent in plans written before it (2).
    public var winogradTile: Int?
    /// The most scratch F(4,3) on quantised weights takes for the transformed kernels of one call
    /// (36 · oc · ic f32 values): what the compiler marks and the runtime accepts.
    public static let quantizedWinograd43Bytes = 64 << 20
    /// The input is the small image: the convolution reads it enlarged 2× by nearest neighbour (set by
    /// the `upsample-conv` pass), and its weight operand holds the 3×3 kernel's four 2×2 phase kernels
    /// `[4·oc, ic, 2, 2]` (phase 2a + b: output pixels (2i + a, 2j + b)), computed by the compiler from
    /// the f32 checkpoint. Absent in older plans (off).
    public var upsample: Bool?
    public init(strides: [Int], pads: [Int], dilations: [Int], groups: Int, hasBias: Bool, prologue: NormPrologue? = nil, epilogue: [EpilogueStep] = [],
                winograd: Bool? = nil, upsample: Bool? = nil) {
        self.winograd = winograd
        self.upsample = upsample
        self.strides = strides
        self.pads = pads
        self.dilations = dilations
        self.groups = groups
        self.hasBias = hasBias
        self.prologue = prologue
        self.epilogue = epilogue
    }
}

public struct ConvTransposeKernel: Codable, Sendable, Equatable {
    public var strides: [Int]
    public var pads: [Int]
    public var dilations: [Int]
    public var groups: Int
    public var outputPadding: [Int]
    public var hasBias: Bool
    public init(strides: [Int], pads: [Int], dilations: [Int], groups: Int, outputPadding: [Int], hasBias: Bool) {
        self.strides = strides
        self.pads = pads
        self.dilations = dilations
        self.groups = groups
        self.outputPadding = outputPadding
        self.hasBias = hasBias
    }
}

/// Layer norm of each row, applied while the linear reads it.
public struct LayerNormPrologue: Codable, Sendable, Equatable {
    public var epsilon: Float
    public var scaleOperand: Int
    /// nil when the norm has no bias.
    public var biasOperand: Int?
    public init(epsilon: Float, scaleOperand: Int, biasOperand: Int?) {
        self.epsilon = epsilon
        self.scaleOperand = scaleOperand
        self.biasOperand = biasOperand
    }
}

public struct LinearKernel: Codable, Sendable, Equatable {
    public var hasBias: Bool
    public var prologue: LayerNormPrologue?
    public var epilogue: [EpilogueStep]
    /// Operand index of the input's row offsets (i32 `[rows]`; the column offsets, i32 `[k]`, follow):
    /// the matrix's element (r, j) is the input's flat element `rows[r] + columns[j]`.
    public var inputOffsets: Int?
    /// Operand index of the output's row offsets (i32 `[rows]`; column offsets `[n]` follow): result
    /// (r, j) is stored at the output's flat element `rows[r] + columns[j]`.
    public var outputOffsets: Int?
    /// GEGLU of the product (`true`; absent in other plans): the weight has 2h rows, the output h
    /// columns, `y[r, j] · gelu(y[r, h + j])` with y = x·Wᵀ + b, then the epilogue. No layouts with it.
    public var geglu: Bool?
    public init(hasBias: Bool, prologue: LayerNormPrologue? = nil, epilogue: [EpilogueStep] = [], inputOffsets: Int? = nil, outputOffsets: Int? = nil,
                geglu: Bool? = nil) {
        self.hasBias = hasBias
        self.prologue = prologue
        self.epilogue = epilogue
        self.inputOffsets = inputOffsets
        self.outputOffsets = outputOffsets
        self.geglu = geglu
    }
}

public struct MatmulKernel: Codable, Sendable, Equatable {
    public var transposeA: Bool
    public var transposeB: Bool
    public init(transposeA: Bool = false, transposeB: Bool = false) {
        self.transposeA = transposeA
        self.transposeB = transposeB
    }
}

public struct AttentionKernel: Codable, Sendable, Equatable {
    public var scale: Float
    /// Scale q before the product (SwinIR, MultiheadAttention) instead of the scores after it.
    public var scaleQueries: Bool
    /// k is given as `kᵀ [..., d, M]` (what the graph computed).
    public var keysTransposed: Bool
    /// Number of additive biases after q (broadcast to `[..., N, M]`).
    public var biasCount: Int
    public init(scale: Float, scaleQueries: Bool, keysTransposed: Bool, biasCount: Int) {
        self.scale = scale
        self.scaleQueries = scaleQueries
        self.keysTransposed = keysTransposed
        self.biasCount = biasCount
    }
}

/// Elementwise kernels.
public enum Elementwise: Codable, Sendable, Equatable {
    case unary(UnaryOp)
    case binary(BinaryOp)
    case leakyRelu(alpha: Float)
    case gelu(tanh: Bool)
    case clip(min: Float, max: Float)
    case elu(alpha: Float)
    case hardSigmoid(alpha: Float, beta: Float)
    /// `condition, a, b`
    case select
    case cast(DType)
    /// `x [..., 2n]` → `x[..., :n] · GELU(x[..., n:])`.
    case geglu
}

/// Data movement kernels (dtype-agnostic).
public enum Movement: Codable, Sendable, Equatable {
    case transpose(perm: [Int])
    case concat(axis: Int)
    case split(axis: Int, sizes: [Int])
    case slice(starts: [Int], ends: [Int], steps: [Int])
    case pad(mode: PadMode, pads: [Int], value: Float)
    case gather(axis: Int)
    case expand
    case tile(repeats: [Int])
    case resize(ResizeKernel)
    case depthToSpace(blockSize: Int, crd: Bool)
    case spaceToDepth(blockSize: Int, crd: Bool)
    case trilu(upper: Bool, k: Int)
}

public struct ResizeKernel: Codable, Sendable, Equatable {
    public var mode: ResizeMode
    public var coordinateTransform: CoordinateTransform
    public var nearestMode: NearestMode
    public var cubicCoeffA: Float
    public var excludeOutside: Bool
    public var antialias: Bool
    public var scales: [Double]
    public var roi: [Double]
    public var extrapolationValue: Float
    public init(mode: ResizeMode, coordinateTransform: CoordinateTransform, nearestMode: NearestMode, cubicCoeffA: Float, excludeOutside: Bool, antialias: Bool,
                scales: [Double], roi: [Double], extrapolationValue: Float) {
        self.mode = mode
        self.coordinateTransform = coordinateTransform
        self.nearestMode = nearestMode
        self.cubicCoeffA = cubicCoeffA
        self.excludeOutside = excludeOutside
        self.antialias = antialias
        self.scales = scales
        self.roi = roi
        self.extrapolationValue = extrapolationValue
    }
}

extension Kernel {
    /// A short name for profiles and reports (`conv2d`, `attention`, `elementwise.add`, ...).
    public var kindName: String {
        switch self {
        case .conv2d(let c): return c.prologue != nil ? "conv2d+groupnorm" : "conv2d"
        case .convTranspose2d: return "conv_transpose2d"
        case .linear(let l): return l.prologue != nil ? "linear+layernorm" : "linear"
        case .matmul: return "matmul"
        case .attention: return "attention"
        case .groupNorm: return "group_norm"
        case .layerNorm: return "layer_norm"
        case .batchNorm: return "batch_norm"
        case .softmax: return "softmax"
        case .elementwise(let e):
            switch e {
            case .unary(let u): return "elementwise." + u.rawValue
            case .binary(let b): return "elementwise." + b.rawValue
            case .geglu: return "geglu"
            default: return "elementwise"
            }
        case .reduce: return "reduce"
        case .argExtreme: return "arg_extreme"
        case .cumsum: return "cumsum"
        case .movement(let m):
            switch m {
            case .transpose: return "transpose"
            case .concat: return "concat"
            case .split: return "split"
            case .slice: return "slice"
            case .pad: return "pad"
            case .gather: return "gather"
            case .resize: return "resize"
            default: return "movement"
            }
        case .einsum: return "einsum"
        case .scatterND: return "scatter_nd"
        case .copy: return "copy"
        }
    }
}
