import Plan
import Tensors

/// How a convolution's weight is laid out for the GEMM, chosen here from the kernel, the weight's
/// dtype and the GEMM's kernels (the executor only asks and caches the result).
public enum ConvolutionPacking: Equatable, Sendable {
    /// int8 and f16 weights stay in their format, expanded to f32 panel by panel as they are packed
    /// (the executor supplies the scales and block codes).
    case quantizedPanels
    /// Winograd F(4,3) transformed weights (f32 weights, f32 GEMM).
    case winograd43
    /// Winograd F(2,3) transformed weights, as bf16 or f32.
    case winogradBF16, winograd
    /// Plain rows `[oc / groups, ic · kh · kw]` per group, as bf16 or f32.
    case rowsBF16, rows

    /// The layout for convolution `c` with `weight` on `gemm` (already switched to bf16 for bf16
    /// weights).
    public static func choose(_ c: Conv2DKernel, weight: View, gemm: Gemm) -> ConvolutionPacking {
        let quantized = weight.dtype == .i8 || weight.dtype == .f16
        if quantized { return .quantizedPanels }
        // (Quantised weights stay quantised: Winograd transforms them as it uses them.)
        let winograd = c.winograd == true && Winograd.eligible(c, weight: weight.dims)
        if winograd && c.winogradTile == 4 && gemm.precision != .bf16 && weight.dtype == .f32 { return .winograd43 }
        if winograd { return gemm.precision == .bf16 ? .winogradBF16 : .winograd }
        return gemm.precision == .bf16 ? .rowsBF16 : .rows
    }

    /// Packs `weight` `[oc, ic / groups, kh, kw]` for every layout but `quantizedPanels`.
    public func pack(_ weight: View, groups: Int, width: Int, threads: Int) -> PackedMatrix {
        let w = weight.dims
        switch self {
        case .winograd43: return PackedMatrix.winogradWeights43(weight.floats, oc: w[0], ic: w[1], width: width, threads: threads)
        case .winogradBF16: return PackedMatrix.winogradWeights16(weight, oc: w[0], ic: w[1], width: width, threads: threads)
        case .winograd: return PackedMatrix.winogradWeights(weight.floats, oc: w[0], ic: w[1], width: width, threads: threads)
        case .rowsBF16: return PackedMatrix.convolutionWeights16(weight, groups: groups, width: width, threads: threads)
        case .rows, .quantizedPanels:
            return PackedMatrix.rowsOf(weight.floats, rows: w[0] / groups, k: w[1] * w[2] * w[3], groups: groups, width: width, threads: threads)
        }
    }
}
