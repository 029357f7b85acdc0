import Kernels
import Tensors
import Testing

/// GEMMs with int8 (per-channel) and f16 weight panels, expanded to f32 inside the packing: the
/// product must equal, bit for bit, the f32 product with the dequantised weights (the same
/// micro-kernel on the same values), on every instruction set, as the A side (convolutions: one
/// scale per row) and the B side (linear layers: one scale per column), at odd sizes, across the
/// kc/mc/nc block edges, and with outlier channels (one row 1000× the others).
@Suite struct QuantizedGemmTests {
    static let engines: [ISA] = ISA.allCases.filter { $0 != .openblas && $0.isSupported }

    /// `[rows, k]` weights with every seventh row scaled by 1000 (outliers) and one row of zeros.
    static func weights(rows: Int, k: Int) -> Tensor {
        var w = GemmTests.values(rows * k, seed: 17)
        for r in stride(from: 3, to: rows, by: 7) { for i in 0..<k { w[r * k + i] *= 1000 } }
        if rows > 1 { for i in 0..<k { w[k + i] = 0 } }
        return Tensor(w, shape: Shape([rows, k]))
    }

    enum Side { case a, b }

    /// (got, expected) for `w` as `format` on `side`, with activations `x`.
    static func products(_ gemm: Gemm, format: WeightFormat, side: Side, rows: Int, cols: Int, k: Int) -> ([Float], [Float]) {
        let w = weights(rows: side == .a ? rows : cols, k: k)
        let q = Quantization.quantize(w, as: format)
        let deq = Quantization.dequantize(q).floats()
        let other = GemmTests.values((side == .a ? cols : rows) * k, seed: 23)
        let extent = side == .a ? rows : cols
        let width = side == .a ? gemm.mr : gemm.nr
        let packed: PackedMatrix
        if format == .int8Channel {
            packed = q.values.bytes.withMemoryRebound(to: Int8.self) { v in
                q.scales!.withElements(as: Float.self) { s in
                    PackedMatrix.int8Rows(v.baseAddress!, scales: s.baseAddress!, rows: extent, k: k, width: width, threads: 2)
                }
            }
        } else {
            packed = q.values.bytes.withMemoryRebound(to: UInt16.self) { v in PackedMatrix.f16Rows(v.baseAddress!, rows: extent, k: k, width: width, threads: 2) }
        }
        let reference: PackedMatrix = deq.withUnsafeBufferPointer {
            side == .a ? PackedMatrix.rowsOf($0.baseAddress!, rows: extent, k: k, width: width)
                       : PackedMatrix.columnsOf($0.baseAddress!, columns: extent, k: k, width: width)
        }
        func run(_ p: PackedMatrix) -> [Float] {
            var c = [Float](repeating: .nan, count: rows * cols)
            other.withUnsafeBufferPointer { o in
                c.withUnsafeMutableBufferPointer { pc in
                    // Activations: B = [k, cols] for the A side, A = [rows, k] for the B side.
                    if side == .a {
                        gemm.run(m: rows, n: cols, k: k, a: p.operand(), b: .matrix(o.baseAddress!, ld: cols, transposed: false),
                                 c: pc.baseAddress!, ldc: cols, accumulate: false)
                    } else {
                        gemm.run(m: rows, n: cols, k: k, a: .matrix(o.baseAddress!, ld: k, transposed: false), b: p.operand(),
                                 c: pc.baseAddress!, ldc: cols, accumulate: false)
                    }
                }
            }
            return c
        }
        return (run(packed), run(reference))
    }

    @Test(arguments: [(1, 1, 1), (13, 33, 257), (25, 390, 300), (385, 70, 40), (50, 17, 2100), (12, 32, 16)])
    func expandedPanelsEqualDequantisedWeights(m: Int, n: Int, k: Int) {
        for isa in Self.engines {
            let gemm = Gemm(isa)
            for format in [WeightFormat.int8Channel, .f16] {
                for side in [Side.a, .b] {
                    let (got, expected) = Self.products(gemm, format: format, side: side, rows: m, cols: n, k: k)
                    #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "\(isa) \(format) side \(side) \(m)×\(n)×\(k)")
                }
            }
        }
    }

    /// The reference quantiser: symmetric, one scale per row (an outlier row does not coarsen the
    /// others), every value within half a step, zeros exact, f16 within half an ulp.
    @Test func int8PerChannelQuantisation() {
        let w = Self.weights(rows: 20, k: 37)
        let q = Quantization.quantize(w, as: .int8Channel)
        let values = w.floats(), deq = Quantization.dequantize(q).floats(), s = q.scales!.floats()
        #expect(q.values.dtype == .i8 && q.scales!.shape == Shape([20]))
        #expect(q.values.withElements(as: Int8.self) { $0.allSatisfy { $0 >= -127 } })
        for r in 0..<20 {
            let m = (0..<37).map { abs(values[r * 37 + $0]) }.max()!
            #expect(s[r] == m / 127)
            for i in 0..<37 { #expect(abs(deq[r * 37 + i] - values[r * 37 + i]) <= s[r] * 0.5001, "row \(r)") }
        }
        #expect(deq[37..<74].allSatisfy { $0 == 0 })
        // Rows next to an outlier row keep their own resolution.
        let e = Quantization.error(Quantization.dequantize(q), w)
        #expect(e.relativeL2 < 5e-3 && e.relativeL2 > 0)
        let h = Quantization.quantize(w, as: .f16)
        #expect(h.values.dtype == .f16 && h.scales == nil)
        #expect(Quantization.error(Quantization.dequantize(h), w).relativeL2 < 5e-4)
    }
}
