import Kernels
import Plan
import ReferenceKernels
import Tensors
import Testing

/// The linear layer with GEGLU applied as it writes (`LinearKernel.geglu`, the feed-forward's first
/// layer) against its reference twin: tiles of rows and of 128 output columns (a partial last one),
/// the layer-norm prologue, a residual epilogue after the GEGLU; f32 and bf16 on both instruction
/// sets, OpenBLAS, int8 weights expanded as packed, int8 × int8; any thread count. And the fused
/// kernel gives the numbers of the plain linear layer followed by the GEGLU kernel.
@Suite struct GEGLULinearTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var rows: Int, k: Int, half: Int, norm: Bool
        var testDescription: String { "rows \(rows) k \(k) h \(half) norm=\(norm)" }
    }

    @Test(arguments: [Case(rows: 5, k: 37, half: 64, norm: true), Case(rows: 300, k: 64, half: 160, norm: false),
                      Case(rows: 600, k: 48, half: 96, norm: true), Case(rows: 1030, k: 20, half: 256, norm: true),
                      Case(rows: 520, k: 19, half: 96, norm: false),
                      // int8 × int8: tiles of ten output panels and a last one of two (1600 = 50 · 32).
                      Case(rows: 700, k: 16, half: 1600, norm: true),
                      // int8 × int8 with halves not of whole panels: the product in blocks of rows, then combined.
                      Case(rows: 300, k: 40, half: 100, norm: true)])
    func matchesReference(_ t: Case) throws {
        let n = 2 * t.half
        let x = GemmTests.values(t.rows * t.k, seed: 31).map { $0 * 2 }
        let w = GemmTests.values(n * t.k, seed: 37), bias = GemmTests.values(n, seed: 41)
        var operands = [Tensor(x, shape: Shape([t.rows, t.k])), Tensor(w, shape: Shape([n, t.k])), Tensor(bias, shape: Shape([n]))]
        var prologue: LayerNormPrologue?
        if t.norm {
            prologue = LayerNormPrologue(epsilon: 1e-5, scaleOperand: operands.count, biasOperand: operands.count + 1)
            operands += [Tensor(GemmTests.values(t.k, seed: 43).map { 1 + $0 / 5 }, shape: Shape([t.k])),
                         Tensor(GemmTests.values(t.k, seed: 47), shape: Shape([t.k]))]
        }
        let outShape = Shape([t.rows, t.half])
        let residual = operands.count
        operands.append(Tensor(GemmTests.values(outShape.count, seed: 53), shape: outShape))
        let kernel = LinearKernel(hasBias: true, prologue: prologue, epilogue: [.addResidual(operand: residual)], geglu: true)
        let expected = try Reference.execute(.linear(kernel), operands, results: [(.f32, outShape)])[0].floats()
        let scale = expected.map(abs).max()!
        func run(_ k: LinearKernel, packed: PackedMatrix?, int8: Int8WeightPanels? = nil, gemm: Gemm, threads: Int, shape: Shape = outShape) -> [Float] {
            let result = Tensor.zeros(.f32, shape)
            FusedLinear.run(k, x: OwnKernelTests.view(operands[0]), weight: OwnKernelTests.view(operands[1]), packed: packed, int8: int8,
                            operands: operands.map(OwnKernelTests.view), out: OwnKernelTests.view(result), gemm: gemm, threads: threads)
            return result.floats()
        }
        func error(_ got: [Float]) -> Float { zip(got, expected).map { abs($0 - $1) }.max()! / scale }
        let wv = OwnKernelTests.view(operands[1])
        for isa in [ISA.avx512, .avx2] where isa.isSupported {
            for (precision, bound) in [(GemmPrecision.f32, Float(1e-5)), (.bf16, 2e-2)] {
                let gemm = Gemm(isa, precision: precision)
                let packed = precision == .bf16 ? PackedMatrix.columnsOf16(wv, columns: n, k: t.k, width: gemm.nr, threads: 2)
                                                : PackedMatrix.columnsOf(wv.floats, columns: n, k: t.k, width: gemm.nr, threads: 2)
                let one = run(kernel, packed: packed, gemm: gemm, threads: 1), three = run(kernel, packed: packed, gemm: gemm, threads: 3)
                #expect(error(one) <= bound && error(one) > 0, "\(t) \(isa) \(precision): \(error(one))")
                let sameForThreads = one == three  // (compared first: a failing #expect would print both arrays)
                #expect(sameForThreads, "\(t) \(isa) \(precision): the result depends on the thread count")
                // Unfused: the plain layer's 2h columns, then the GEGLU kernel, then the residual.
                var plain = kernel
                (plain.geglu, plain.epilogue) = (nil, [])
                let wide = Tensor(run(plain, packed: packed, gemm: gemm, threads: 2, shape: Shape([t.rows, n])), shape: Shape([t.rows, n]))
                let gated = Tensor.zeros(.f32, outShape)
                ElementwiseKernels.run(.geglu, operands: [OwnKernelTests.view(wide)], out: OwnKernelTests.view(gated), threads: 2)
                let unfused = zip(gated.floats(), operands[residual].floats()).map { $0 + $1 }
                let sameAsUnfused = one == unfused
                #expect(sameAsUnfused, "\(t) \(isa) \(precision): fused and unfused differ by \(zip(one, unfused).map { abs($0 - $1) }.max()!)")
            }
            // int8 weights expanded as packed (f32 products).
            let q = Quantization.quantize(operands[1], as: .int8Channel)
            let gemm = Gemm(isa)
            let expanded = q.values.bytes.withMemoryRebound(to: Int8.self) { v in
                q.scales!.withElements(as: Float.self) { PackedMatrix.int8Rows(v.baseAddress!, scales: $0.baseAddress!, rows: n, k: t.k, groups: 1, width: gemm.nr, threads: 2) }
            }
            #expect(error(run(kernel, packed: expanded, gemm: gemm, threads: 2)) <= 3e-2, "\(t) \(isa) int8 weights")
            // int8 × int8 (blocks of rows of up to 2 M products; tiles of whole rows combined as they finish).
            guard Int8Linear.kernel(rows: t.rows, isa: isa) != nil else { continue }
            let panels = q.values.bytes.withMemoryRebound(to: Int8.self) { v in
                q.scales!.withElements(as: Float.self) { Int8WeightPanels(v.baseAddress!, scales: $0.baseAddress!, n: n, k: t.k, threads: 2) }
            }
            let int8 = run(kernel, packed: nil, int8: panels, gemm: gemm, threads: 2)
            #expect(error(int8) <= 5e-2, "\(t) \(isa) int8 × int8: \(error(int8))")
            let sameForThreads = int8 == run(kernel, packed: nil, int8: panels, gemm: gemm, threads: 1)
            #expect(sameForThreads, "\(t) \(isa) int8 × int8: the result depends on the thread count")
        }
        let blas = run(kernel, packed: nil, gemm: Gemm(.openblas), threads: 2)
        #expect(error(blas) <= 1e-5, "\(t) OpenBLAS: \(error(blas))")
    }
}
