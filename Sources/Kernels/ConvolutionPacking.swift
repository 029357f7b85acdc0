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
        choose(c, weight: weight.dims, weightType: weight.dtype, gemm: gemm)
    }

    public static func choose(_ c: Conv2DKernel, weight: [Int], weightType: DType, gemm: Gemm) -> ConvolutionPacking {
        let quantized = weightType == .i8 || weightType == .f16
        if quantized { return .quantizedPanels }
        // (Quantised weights stay quantised: Winograd transforms them as it uses them.)
        let winograd = c.winograd == true && Winograd.eligible(c, weight: weight)
        if winograd && c.winogradTile == 4 && gemm.precision != .bf16 && weightType == .f32 { return .winograd43 }
        if winograd { return gemm.precision == .bf16 ? .winogradBF16 : .winograd }
        return gemm.precision == .bf16 ? .rowsBF16 : .rows
    }

    /// The layout a plan may store packed (`PanelLayout`); nil for quantised panels.
    public var panelLayout: PanelLayout? {
        switch self {
        case .quantizedPanels: return nil
        case .winograd43: return .winograd43
        case .winogradBF16: return .winogradBF16
        case .winograd: return .winograd
        case .rowsBF16: return .rowsBF16
        case .rows: return .rows
        }
    }

}

/// Which f32 or bf16 weights the fast kernels read packed, and how: the one decision the executor
/// (packing at first use) and `compile --prepack` (packing into the plan) share, so that a stored
/// packed form is found exactly where the executor would have made it.
public enum WeightPacking {
    public struct Choice: Equatable, Sendable {
        public var layout: PanelLayout
        public var groups: Int
        public var width: Int
        public init(layout: PanelLayout, groups: Int, width: Int) {
            (self.layout, self.groups, self.width) = (layout, groups, width)
        }
    }

    /// The packed form of operand 1 (the weight) of `kernel` with input `input` and an f32 or bf16
    /// weight of `weight` dims on `gemm`'s kernels; nil when it is read unpacked (OpenBLAS, quantised
    /// weights, kernels without panels, an upsampling convolution that runs phase by phase).
    public static func choice(_ kernel: Kernel, input: [Int], weight: [Int], weightType: DType, gemm: Gemm) -> Choice? {
        guard !gemm.usesBLAS, weightType == .f32 || weightType == .bf16 else { return nil }
        // bf16 weights run the bf16 kernels (f32 accumulation).
        let g = weightType == .bf16 ? gemm.with(.bf16) : gemm
        switch kernel {
        case .conv2d(let c):
            guard input.count == 4, weight.count == 4 else { return nil }
            if c.upsample == true {
                // The four 2×2 phase kernels as four groups of rows.
                guard UpsampleConvolution.eligible(c, input: input, weight: weight, gemm: g) else { return nil }
                return Choice(layout: g.precision == .bf16 ? .rowsBF16 : .rows, groups: 4, width: g.mr)
            }
            guard let layout = ConvolutionPacking.choose(c, weight: weight, weightType: weightType, gemm: g).panelLayout else { return nil }
            return Choice(layout: layout, groups: layout == .rows || layout == .rowsBF16 ? c.groups : 1, width: g.mr)
        case .linear:
            guard weight.count == 2 else { return nil }
            return Choice(layout: g.precision == .bf16 ? .columnsBF16 : .columns, groups: 1, width: g.nr)
        default:
            return nil
        }
    }

    /// The packed form the int8 × int8 kernels take of operand 1 of `kernel`, an int8-channel weight
    /// of `weight` dims, in a plan with int8 activations (`Int8WeightPanels`, `Int8ConvWeights`); nil
    /// where the executor runs the weight otherwise (too few rows, AVX2's Winograd on the int8 weights,
    /// upsampling convolutions too large for the phase planes).
    public static func int8Choice(_ kernel: Kernel, input: [Int], output: [Int], weight: [Int], gemm: Gemm) -> Choice? {
        guard !gemm.usesBLAS else { return nil }
        switch kernel {
        case .conv2d(let c):
            guard input.count == 4, weight.count == 4, Int8Convolution.kernel(c, isa: gemm.isa) != nil, c.winograd != true,
                  !Int8Convolution.runsAsF32Winograd(c, weight: weight, output: output, isa: gemm.isa) else { return nil }
            if c.upsample == true && !Int8Convolution.upsampleEligible(c, input: input, weight: weight) { return nil }
            return Choice(layout: .int8Taps, groups: 1, width: Int8Gemm.mr)
        case .linear:
            guard weight.count == 2, Int8Linear.kernel(rows: input.reduce(1, *) / max(weight[1], 1), isa: gemm.isa) != nil else { return nil }
            return Choice(layout: .int8Columns, groups: 1, width: Int8Gemm.nr)
        default:
            return nil
        }
    }

    /// Packs `weight` (f32, or bf16 for the bf16 layouts and their f32 twins' bf16 weights) as
    /// `choice` says.
    public static func pack(_ weight: View, _ choice: Choice, threads: Int) -> PackedMatrix {
        let w = weight.dims
        switch choice.layout {
        case .rows: return PackedMatrix.rowsOf(weight.floats, rows: w[0] / choice.groups, k: w[1] * w[2] * w[3], groups: choice.groups, width: choice.width, threads: threads)
        case .rowsBF16: return PackedMatrix.convolutionWeights16(weight, groups: choice.groups, width: choice.width, threads: threads)
        case .winograd: return PackedMatrix.winogradWeights(weight.floats, oc: w[0], ic: w[1], width: choice.width, threads: threads)
        case .winogradBF16: return PackedMatrix.winogradWeights16(weight, oc: w[0], ic: w[1], width: choice.width, threads: threads)
        case .winograd43: return PackedMatrix.winogradWeights43(weight.floats, oc: w[0], ic: w[1], width: choice.width, threads: threads)
        case .columns: return PackedMatrix.columnsOf(weight.floats, columns: w[0], k: w[1], width: choice.width, threads: threads)
        case .columnsBF16: return PackedMatrix.columnsOf16(weight, columns: w[0], k: w[1], width: choice.width, threads: threads)
        case .int8Columns, .int8Taps: preconditionFailure("the int8 layouts are Int8WeightPanels' and Int8ConvWeights'")
        }
    }
}
