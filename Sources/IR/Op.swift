import Tensors

/// The closed set of IR operations. Inputs are listed per case; optional inputs are trailing.
///
/// Layouts follow PyTorch: images NCHW, linear weights `[out, in]`, convolution weights
/// `[out, in/groups, kh, kw]`. Broadcasting follows NumPy (trailing axes aligned).
public enum Op: Hashable, Sendable {
    /// `x` → `op(x)`, same shape; `not`, `isNaN`, `isInf` produce bool.
    case unary(UnaryOp)
    /// `a, b` → `a op b`, broadcast.
    case binary(BinaryOp)
    /// `x` → `x ≥ 0 ? x : alpha·x`
    case leakyRelu(alpha: Float)
    /// `x` → GELU(x)
    case gelu(GeluApproximation)
    /// `x` → `min(max(x, min), max)`
    case clip(min: Float, max: Float)
    /// `x` → `x ≥ 0 ? x : alpha·(exp(x) − 1)`
    case elu(alpha: Float)
    /// `x` → `max(0, min(1, alpha·x + beta))`
    case hardSigmoid(alpha: Float, beta: Float)
    /// `condition (bool), a, b` → `condition ? a : b`, broadcast.
    case select
    /// `x` → `x` converted to the dtype (float → int truncates toward zero).
    case cast(DType)

    /// `x` → softmax along `axis`.
    case softmax(axis: Int)
    case logSoftmax(axis: Int)
    /// `x, scale, bias?` → normalised over the axes from `axis` to the last.
    case layerNorm(axis: Int, epsilon: Float)
    /// `x [N, C, ...], scale [C], bias [C]` → normalised over each group of `C / groups` channels.
    case groupNorm(groups: Int, epsilon: Float)
    /// `x [N, C, ...], scale [C], bias [C]` → normalised per sample and channel.
    case instanceNorm(epsilon: Float)
    /// `x [N, C, ...], scale, bias, mean, variance` (all `[C]`) → inference-mode batch norm.
    case batchNorm(epsilon: Float)

    /// `a [..., M, K], b [..., K, N]` → `[..., M, N]`, batch dims broadcast; rank-1 operands as NumPy.
    case matmul
    /// `x [..., K], weight [N, K], bias [N]?` → `x·weightᵀ + bias`.
    case linear
    /// `x, weight, bias?`
    case conv(Conv2D)
    /// `x, weight, bias?`
    case convTranspose(ConvTranspose2D)
    /// Operands → result, for the equation (explicit `->`, no ellipsis beyond a leading `...`).
    case einsum(String)

    /// `x` → the same elements in the new shape.
    case reshape(Shape)
    /// `x` → axes permuted (`perm[i]` = input axis of output axis `i`).
    case transpose([Int])
    /// Inputs → joined along `axis`.
    case concat(axis: Int)
    /// `x` → one output per size along `axis`.
    case split(axis: Int, sizes: [Int])
    case slice(SliceSpec)
    /// `x` → padded; `pads` is `[begin per axis..., end per axis...]`, negative crops.
    case pad(mode: PadMode, pads: [Int], value: Float)
    /// `data, indices (integer)` → `take(data, indices, axis)`; negative indices count from the end.
    case gather(axis: Int)
    /// `x` → broadcast to the shape.
    case expand(Shape)
    /// `x` → repeated `repeats[i]` times along each axis.
    case tile([Int])
    case resize(Resize)
    /// `[N, C·b², H, W]` → `[N, C, H·b, W·b]`
    case depthToSpace(blockSize: Int, order: BlockOrder)
    /// `[N, C, H·b, W·b]` → `[N, C·b², H, W]`
    case spaceToDepth(blockSize: Int, order: BlockOrder)
    /// `x` → reduced over `axes` (empty: all axes).
    case reduce(ReduceOp, axes: [Int], keepDims: Bool)
    /// `x` → index of the max/min along `axis` (int64), first occurrence unless `selectLastIndex`.
    case argExtreme(max: Bool, axis: Int, keepDims: Bool, selectLastIndex: Bool)
    /// `x [..., M, N]` → upper (or lower) triangle from diagonal `k`, the rest zero.
    case trilu(upper: Bool, k: Int)
    /// `x` → running sum along `axis`.
    case cumsum(axis: Int, exclusive: Bool, reverse: Bool)
    /// `data, indices [..., k] (integer), updates` → data with the slices at `indices` replaced
    /// (or combined with `reduction`), as ONNX ScatterND.
    case scatterND(ScatterReduction)
    /// `a, b` → matmul with either operand transposed (last two axes), batch dims broadcast.
    case matmulTransposed(a: Bool, b: Bool)

    // Fused ops, produced by the compiler's fusion passes.
    /// A convolution with a group-norm prologue and an epilogue (operands in `ConvFusion`).
    case convFused(Conv2D, ConvFusion)
    /// A linear with a layer-norm prologue and an epilogue (operands in `LinearFusion`).
    case linearFused(LinearFusion)
    /// `softmax(q·kᵀ·scale + biases)·v` without materialising the scores.
    case attention(AttentionSpec)
    /// `x [..., 2n]` → `x[..., :n] · GELU(x[..., n:])`.
    case geglu

    /// A short name, for printing and profiles.
    public var name: String {
        switch self {
        case .unary(let u): return u.rawValue
        case .binary(let b): return b.rawValue
        case .leakyRelu: return "leaky_relu"
        case .gelu: return "gelu"
        case .clip: return "clip"
        case .elu: return "elu"
        case .hardSigmoid: return "hard_sigmoid"
        case .select: return "select"
        case .cast: return "cast"
        case .softmax: return "softmax"
        case .logSoftmax: return "log_softmax"
        case .layerNorm: return "layer_norm"
        case .groupNorm: return "group_norm"
        case .instanceNorm: return "instance_norm"
        case .batchNorm: return "batch_norm"
        case .matmul: return "matmul"
        case .linear: return "linear"
        case .conv: return "conv"
        case .convTranspose: return "conv_transpose"
        case .einsum: return "einsum"
        case .reshape: return "reshape"
        case .transpose: return "transpose"
        case .concat: return "concat"
        case .split: return "split"
        case .slice: return "slice"
        case .pad: return "pad"
        case .gather: return "gather"
        case .expand: return "expand"
        case .tile: return "tile"
        case .resize: return "resize"
        case .depthToSpace: return "depth_to_space"
        case .spaceToDepth: return "space_to_depth"
        case .reduce(let r, _, _): return "reduce_" + r.rawValue
        case .argExtreme(let max, _, _, _): return max ? "argmax" : "argmin"
        case .trilu: return "trilu"
        case .cumsum: return "cumsum"
        case .scatterND: return "scatter_nd"
        case .matmulTransposed: return "matmul_t"
        case .convFused: return "conv_fused"
        case .linearFused: return "linear_fused"
        case .attention: return "attention"
        case .geglu: return "geglu"
        }
    }
}
