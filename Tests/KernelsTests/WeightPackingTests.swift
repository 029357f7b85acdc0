import Kernels
import Plan
import Tensors
import Testing

/// `WeightPacking`, the one choice of packed layout that the executor and `compile --prepack` share:
/// what it packs has exactly the geometry `PanelLayout.geometry` gives the plan verifier, for every
/// layout, on every kernel set this processor runs, in f32 and bf16.
@Suite struct WeightPackingTests {
    static let sets: [ISA] = ISA.allCases.filter { $0 != .openblas && $0.isSupported }

    func check(_ kernel: Kernel, input: [Int], weight: [Int], dtype: DType, gemm: Gemm, expect layout: PanelLayout?) throws {
        let choice = WeightPacking.choice(kernel, input: input, weight: weight, weightType: dtype, gemm: gemm)
        #expect(choice?.layout == layout, "\(kernel) \(weight) \(dtype) on \(gemm.isa)")
        guard let choice else { return }
        let count = weight.reduce(1, *)
        let t = dtype == .f32 ? Tensor(GemmTests.values(count, seed: 5), shape: Shape(weight))
            : Tensor(dtype: .bf16, shape: Shape(weight), storage: TensorStorage(byteCount: count * 2))
        let view = View(pointer: UnsafeMutableRawPointer(mutating: t.bytes.baseAddress!), dtype: dtype, shape: Shape(weight))
        let packed = WeightPacking.pack(view, choice, threads: 2)
        let g = try #require(choice.layout.geometry(weight: weight, groups: choice.groups))
        #expect(packed.extent == g.extent && packed.k == g.k && packed.groups == g.groups, "\(choice)")
        let record = PackedWeight(weight: 1, storage: 2, layout: choice.layout, width: choice.width, extent: packed.extent, k: packed.k, groups: packed.groups)
        #expect(record.panelBytes == packed.byteCount)
        #expect(packed.width == (choice.layout == .columns || choice.layout == .columnsBF16 ? gemm.nr : gemm.mr))
    }

    @Test func everyLayoutHasTheGeometryTheVerifierChecks() throws {
        let plain = Conv2DKernel(strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, hasBias: false)
        var winograd = plain
        winograd.winograd = true
        var winograd43 = winograd
        winograd43.winogradTile = 4
        let grouped = Conv2DKernel(strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 2, hasBias: false)
        let upsample = Conv2DKernel(strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, hasBias: false, upsample: true)
        for isa in Self.sets {
            let g = Gemm(isa)
            try check(.conv2d(plain), input: [1, 5, 9, 9], weight: [7, 5, 3, 3], dtype: .f32, gemm: g, expect: .rows)
            try check(.conv2d(plain), input: [1, 5, 9, 9], weight: [7, 5, 3, 3], dtype: .bf16, gemm: g, expect: .rowsBF16)
            try check(.conv2d(grouped), input: [1, 6, 9, 9], weight: [8, 3, 1, 1], dtype: .f32, gemm: g, expect: .rows)
            try check(.conv2d(winograd), input: [1, 5, 9, 9], weight: [7, 5, 3, 3], dtype: .f32, gemm: g, expect: .winograd)
            try check(.conv2d(winograd), input: [1, 5, 9, 9], weight: [7, 5, 3, 3], dtype: .bf16, gemm: g, expect: .winogradBF16)
            try check(.conv2d(winograd43), input: [1, 5, 9, 9], weight: [7, 5, 3, 3], dtype: .f32, gemm: g, expect: .winograd43)
            try check(.conv2d(upsample), input: [1, 3, 4, g.nr], weight: [4 * 5, 3, 2, 2], dtype: .f32, gemm: g, expect: .rows)
            try check(.conv2d(upsample), input: [1, 3, 4, g.nr + 1], weight: [4 * 5, 3, 2, 2], dtype: .f32, gemm: g, expect: nil)
            try check(.linear(LinearKernel(hasBias: false)), input: [3, 11], weight: [9, 11], dtype: .f32, gemm: g, expect: .columns)
            try check(.linear(LinearKernel(hasBias: false)), input: [3, 11], weight: [9, 11], dtype: .bf16, gemm: g, expect: .columnsBF16)
            // Quantised weights are expanded as used, never stored packed.
            try check(.linear(LinearKernel(hasBias: false)), input: [3, 11], weight: [9, 11], dtype: .i8, gemm: g, expect: nil)
        }
        // OpenBLAS packs for itself.
        #expect(WeightPacking.choice(.linear(LinearKernel(hasBias: false)), input: [3, 11], weight: [9, 11], weightType: .f32, gemm: Gemm(.openblas)) == nil)
    }
}
