import Kernels
import Plan
import ReferenceKernels
import Tensors
import Testing

/// Linear layers that gather their rows and scatter their results through offset tables
/// (`LinearKernel.inputOffsets/outputOffsets`, from the `linear-layout` pass): against the reference
/// twin (`Reference.execute`), with random row permutations and column runs of odd lengths, a
/// layer-norm prologue, bias, GELU and a residual at the destination, row counts past a tile and
/// below the row-tile threshold (the column-tile path), on every instruction set, in f32, bf16 and
/// int8 × int8 (both int8 kernels).
@Suite struct LinearLayoutTests {
    struct Case: Sendable, CustomStringConvertible {
        var rows: Int, k: Int, n: Int, gather: Bool, scatter: Bool, norm: Bool
        /// Channels-first tables (row i at i, column j at j·rows): moved in 16 × 16 blocks.
        var transposed = false
        var description: String { "\(rows)×\(k)→\(n) gather \(gather) scatter \(scatter) norm \(norm)" + (transposed ? " channels-first" : "") }
    }

    /// A permutation of `count` items in blocks, and column runs of `run` (the last shorter).
    static func tables(rows: Int, columns: Int, run: Int, seed: UInt32) -> (rows: [Int32], columns: [Int32], count: Int) {
        var state = seed
        func next(_ m: Int) -> Int { state = state &* 1_103_515_245 &+ 12345; return Int(state >> 8) % m }
        var order = Array(0..<rows)
        for i in stride(from: rows - 1, to: 0, by: -1) { order.swapAt(i, next(i + 1)) }
        // Column runs laid out in reverse order of runs, a gap of 3 between them.
        let runs = (columns + run - 1) / run
        var c = [Int32](repeating: 0, count: columns)
        var at = 0
        for r in (0..<runs).reversed() {
            for j in (r * run)..<min(columns, (r + 1) * run) { c[j] = Int32(at + j - r * run) }
            at += min(columns, (r + 1) * run) - r * run + 3
        }
        let width = at
        return (order.map { Int32($0 * width) }, c, rows * width)
    }

    static func int32s(_ v: [Int32]) -> Tensor {
        let t = Tensor.zeros(.i32, Shape([v.count]))
        v.withUnsafeBytes { t.storage.mutableBytes!.copyMemory(from: $0) }
        return t
    }

    @Test(arguments: [Case(rows: 600, k: 37, n: 45, gather: true, scatter: true, norm: true),
                      Case(rows: 77, k: 64, n: 530, gather: true, scatter: false, norm: false),
                      Case(rows: 90, k: 33, n: 600, gather: true, scatter: true, norm: true),  // few rows: tiles of columns
                      Case(rows: 301, k: 48, n: 40, gather: false, scatter: true, norm: false),
                      Case(rows: 50, k: 20, n: 33, gather: true, scatter: true, norm: false),
                      Case(rows: 1700, k: 24, n: 40, gather: true, scatter: true, norm: true),  // int8: tiles stored as they finish
                      Case(rows: 4100, k: 20, n: 520, gather: true, scatter: true, norm: true),  // int8: two chunks of rows (2 M results each)
                      // Channels-first in and out (a transformer's proj_in and proj_out): partial
                      // 16 × 16 blocks, few rows (tiles of columns), int8 chunks.
                      Case(rows: 300, k: 40, n: 50, gather: true, scatter: true, norm: false, transposed: true),
                      Case(rows: 90, k: 33, n: 600, gather: true, scatter: true, norm: true, transposed: true),
                      Case(rows: 1700, k: 24, n: 40, gather: false, scatter: true, norm: false, transposed: true)])
    func matchesReference(_ t: Case) throws {
        var (inRows, inCols, inCount) = Self.tables(rows: t.rows, columns: t.k, run: 16, seed: 3)
        let (outRows, outCols, _) = Self.tables(rows: t.rows, columns: t.n, run: 17, seed: 5)
        // The output is exactly the scattered positions (a permutation): the gaps closed up, which
        // keeps the tables separable (rows permuted, column runs reordered).
        let used = Set(outRows.flatMap { r in outCols.map { Int(r + $0) } }).sorted()
        let index = Dictionary(uniqueKeysWithValues: used.enumerated().map { ($1, $0) })
        var outRowsDense = outRows.map { Int32(index[Int($0)]!) }, outColsDense = outCols.map { Int32(index[Int(outRows[0] + $0)]! - index[Int(outRows[0])]!) }
        if t.transposed {
            (inRows, inCols, inCount) = ((0..<t.rows).map { Int32($0) }, (0..<t.k).map { Int32($0 * t.rows) }, t.rows * t.k)
            (outRowsDense, outColsDense) = ((0..<t.rows).map { Int32($0) }, (0..<t.n).map { Int32($0 * t.rows) })
        }
        var x = GemmTests.values(t.gather ? inCount : t.rows * t.k, seed: 11)
        for i in 0..<min(x.count, t.k) { x[i] *= 40 }  // a larger row: one quantisation scale of its own
        let w = GemmTests.values(t.n * t.k, seed: 13), bias = GemmTests.values(t.n, seed: 17)
        let lnScale = GemmTests.values(t.k, seed: 19).map { 1 + $0 / 5 }, lnBias = GemmTests.values(t.k, seed: 23)
        var operands = [Tensor(x, shape: Shape([x.count])), Tensor(w, shape: Shape([t.n, t.k])), Tensor(bias, shape: Shape([t.n]))]
        var prologue: LayerNormPrologue?
        if t.norm {
            prologue = LayerNormPrologue(epsilon: 1e-5, scaleOperand: operands.count, biasOperand: operands.count + 1)
            operands += [Tensor(lnScale, shape: Shape([t.k])), Tensor(lnBias, shape: Shape([t.k]))]
        }
        var inputOffsets: Int?, outputOffsets: Int?
        if t.gather {
            inputOffsets = operands.count
            operands += [Self.int32s(inRows), Self.int32s(inCols)]
        }
        let outShape = Shape([t.rows * t.n])
        if t.scatter {
            outputOffsets = operands.count
            operands += [Self.int32s(outRowsDense), Self.int32s(outColsDense)]
        }
        let residual = GemmTests.values(outShape.count, seed: 29)
        let epilogue: [EpilogueStep] = [.activation(.gelu, alpha: 0), .addResidual(operand: operands.count)]
        operands.append(Tensor(residual, shape: outShape))
        if !t.gather { operands[0] = Tensor(x, shape: Shape([t.rows, t.k])) }
        let kernel = LinearKernel(hasBias: true, prologue: prologue, epilogue: epilogue, inputOffsets: inputOffsets, outputOffsets: outputOffsets)
        let expected = try Reference.execute(.linear(kernel), operands, results: [(.f32, outShape)])[0].floats()
        let scale = expected.map(abs).max()!
        for isa in [ISA.avx512, .avx2] where isa.isSupported {
            for (precision, bound) in [(GemmPrecision.f32, Float(1e-5)), (.bf16, 2e-2)] {
                let gemm = Gemm(isa, precision: precision)
                let wv = OwnKernelTests.view(operands[1])
                let packed = precision == .bf16 ? PackedMatrix.columnsOf16(wv, columns: t.n, k: t.k, width: gemm.nr, threads: 2)
                                                : PackedMatrix.columnsOf(wv.floats, columns: t.n, k: t.k, width: gemm.nr, threads: 2)
                for threads in [1, 3] {
                    let result = Tensor.zeros(.f32, outShape)
                    FusedLinear.run(kernel, x: OwnKernelTests.view(operands[0]), weight: OwnKernelTests.view(operands[1]), packed: packed,
                                    operands: operands.map(OwnKernelTests.view), out: OwnKernelTests.view(result), gemm: gemm, threads: threads)
                    let err = zip(result.floats(), expected).map { abs($0 - $1) }.max()! / scale
                    #expect(err <= bound, "\(t) \(isa) \(precision) threads \(threads): \(err)")
                }
            }
            // int8 × int8 (rows quantised from the gathered, normalised buffer).
            let q = Quantization.quantize(operands[1], as: .int8Channel)
            let panels = q.values.bytes.withMemoryRebound(to: Int8.self) { v in
                q.scales!.withElements(as: Float.self) { Int8WeightPanels(v.baseAddress!, scales: $0.baseAddress!, n: t.n, k: t.k, threads: 2) }
            }
            guard Int8Linear.kernel(rows: t.rows, isa: isa) != nil else { continue }
            let result = Tensor.zeros(.f32, outShape)
            FusedLinear.run(kernel, x: OwnKernelTests.view(operands[0]), weight: OwnKernelTests.view(operands[1]), int8: panels,
                            operands: operands.map(OwnKernelTests.view), out: OwnKernelTests.view(result), gemm: Gemm(isa), threads: 2)
            let err = zip(result.floats(), expected).map { abs($0 - $1) }.max()! / scale
            #expect(err <= 5e-2, "\(t) \(isa) int8 × int8: \(err)")
        }
    }
}
