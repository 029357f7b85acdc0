import Foundation
import Kernels
import Plan
import ReferenceKernels
import Tensors
import Testing

/// GEMMs with int8 (per-channel, and per block of 32 within a channel) and f16 weight panels, expanded to f32 inside the packing: the
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
        let packed = Self.pack(q, format: format, extent: extent, k: k, width: width)
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

    /// Quantised `[extent, k]` weights as panels of `width` in their own format.
    static func pack(_ q: QuantizedWeight, format: WeightFormat, extent: Int, k: Int, width: Int) -> PackedMatrix {
        let packed: PackedMatrix
        if format.hasBlockCodes {
            packed = q.values.bytes.withMemoryRebound(to: Int8.self) { v in
                q.scales!.withElements(as: Float.self) { s in
                    q.blockCodes!.withElements(as: UInt8.self) { c in
                        PackedMatrix.int8BlockRows(v.baseAddress!, scales: s.baseAddress!, codes: c.baseAddress!, format: format, rows: extent, k: k,
                                                   width: width, threads: 2)
                    }
                }
            }
        } else if format == .int8Channel {
            packed = q.values.bytes.withMemoryRebound(to: Int8.self) { v in
                q.scales!.withElements(as: Float.self) { s in
                    PackedMatrix.int8Rows(v.baseAddress!, scales: s.baseAddress!, rows: extent, k: k, width: width, threads: 2)
                }
            }
        } else {
            packed = q.values.bytes.withMemoryRebound(to: UInt16.self) { v in PackedMatrix.f16Rows(v.baseAddress!, rows: extent, k: k, width: width, threads: 2) }
        }
        return packed
    }

    /// Winograd F(2,3) on quantised 3×3 kernels (transformed per call, block of output channels and
    /// chunk of input channels at a time) against the reference convolution with the dequantised
    /// weights: outlier output channels and a zero one, panels partly filled, 400 input channels (two
    /// chunks, the GEMMs accumulating), the prologue and a residual epilogue, both work splits, 1 and
    /// 3 threads (the same numbers whatever the split or thread count). With `winogradTile` 4, F(4,3)
    /// from the 36 transformed kernels computed once a call (`Winograd43.runQuantized`).
    @Test(arguments: [([1, 5, 9, 11], 7, true), ([1, 400, 9, 10], 30, false), ([2, 16, 20, 66], 50, true)], [2, 4])
    func winogradOnQuantisedKernels(_ shape: (x: [Int], oc: Int, prologue: Bool), tile: Int) throws {
        let (xDims, oc, withPrologue) = (shape.x, shape.oc, shape.prologue)
        let c = xDims[1], k = c * 9
        let (oh, ow) = (xDims[2], xDims[3])
        let outDims = [xDims[0], oc, oh, ow]
        let w2 = Self.weights(rows: oc, k: k)
        var operands = [OwnKernelTests.random(xDims, 1), Tensor(w2.floats().map { $0 * 0.3 }, shape: Shape([oc, c, 3, 3])), OwnKernelTests.random([oc], 3)]
        var prologue: NormPrologue? = nil
        if withPrologue {
            prologue = NormPrologue(groups: 1, epsilon: 1e-5, silu: true, scaleOperand: operands.count, biasOperand: operands.count + 1)
            operands += [OwnKernelTests.random([c], 4), OwnKernelTests.random([c], 5)]
        }
        let epilogue: [EpilogueStep] = [.activation(.silu, alpha: 0), .addResidual(operand: operands.count)]
        operands.append(OwnKernelTests.random(outDims, 6))
        var kernel = Conv2DKernel(strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, hasBias: true, prologue: prologue,
                                  epilogue: epilogue, winograd: true)
        kernel.winogradTile = tile == 4 ? 4 : nil
        for format in [WeightFormat.int8Channel, .int8Block16, .int8Block32, .f16] {
            let q = Quantization.quantize(Tensor(operands[1].floats(), shape: Shape([oc, k])), as: format)
            var deqOperands = operands
            deqOperands[1] = Tensor(Quantization.dequantize(q).floats(), shape: Shape([oc, c, 3, 3]))
            let expected = try Reference.execute(.conv2d(kernel), deqOperands, results: [(.f32, Shape(outDims))])[0]
            for isa in Self.engines {
                let gemm = Gemm(isa)
                let packed = Self.pack(q, format: format, extent: oc, k: k, width: gemm.mr)
                var results: [[Float]] = []
                // (F(4,3) has one schedule: bands per thread.)
                for schedule in tile == 4 ? [Winograd.Schedule.automatic] : [.bandPerThread, .sharedBands] {
                    for threads in [1, 3] {
                        let out = Tensor.zeros(.f32, Shape(outDims))
                        FusedConvolution.run(kernel, x: OwnKernelTests.view(operands[0]), weight: OwnKernelTests.view(operands[1]), packed: packed,
                                             operands: operands.map(OwnKernelTests.view), out: OwnKernelTests.view(out), gemm: gemm, threads: threads,
                                             winogradSchedule: schedule)
                        let err = OwnKernelTests.relativeError(out, expected)
                        // (F(4,3)'s transforms reach 8 and 1/24: a few times F(2,3)'s rounding, 1.1e-5 at 400 channels.)
                        #expect(err < (tile == 4 ? 3e-5 : 1e-5), "\(isa) \(format) \(schedule) threads \(threads): relative error \(err)")
                        results.append(out.floats())
                    }
                }
                #expect(results.allSatisfy { $0 == results[0] }, "\(isa) \(format): the result depends on the thread count or the schedule")
                if tile == 4 {
                    // Another path than F(2,3)'s: other roundings.
                    var f23 = kernel
                    f23.winogradTile = nil
                    let out = Tensor.zeros(.f32, Shape(outDims))
                    FusedConvolution.run(f23, x: OwnKernelTests.view(operands[0]), weight: OwnKernelTests.view(operands[1]), packed: packed,
                                         operands: operands.map(OwnKernelTests.view), out: OwnKernelTests.view(out), gemm: gemm, threads: 1)
                    #expect(out.floats() != results[0], "\(isa) \(format): F(4,3) gave F(2,3)'s numbers")
                }
            }
        }
    }

    @Test(arguments: [(1, 1, 1), (13, 33, 257), (25, 390, 300), (385, 70, 40), (50, 17, 2100), (12, 32, 16)])
    func expandedPanelsEqualDequantisedWeights(m: Int, n: Int, k: Int) {
        for isa in Self.engines {
            let gemm = Gemm(isa)
            for format in [WeightFormat.int8Channel, .int8Block32, .int8Block16, .f16] {
                for side in [Side.a, .b] {
                    let (got, expected) = Self.products(gemm, format: format, side: side, rows: m, cols: n, k: k)
                    #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "\(isa) \(format) side \(side) \(m)×\(n)×\(k)")
                }
            }
        }
    }

    /// A linear layer of many tiles of rows (more than `FusedLinear.rowTile` · 3) expands its quantised
    /// weights once for the call instead of once per tile: the same numbers, to the bit, as the f32
    /// panels of the dequantised weights, with a bias and an epilogue, any thread count.
    @Test(arguments: [(3 * FusedLinear.rowTile + 5, 40, 70), (4 * FusedLinear.rowTile, 33, 257)])
    func linearOfManyRowTilesExpandsOnce(rows: Int, n: Int, k: Int) {
        for isa in Self.engines {
            let gemm = Gemm(isa)
            for format in [WeightFormat.int8Channel, .int8Block16, .f16] {
                let w = Self.weights(rows: n, k: k)
                let q = Quantization.quantize(w, as: format)
                let deq = Quantization.dequantize(q)
                let packed = Self.pack(q, format: format, extent: n, k: k, width: gemm.nr)
                let reference = deq.floats().withUnsafeBufferPointer { PackedMatrix.columnsOf($0.baseAddress!, columns: n, k: k, width: gemm.nr) }
                let x = Tensor(GemmTests.values(rows * k, seed: 29), shape: Shape([rows, k]))
                let bias = Tensor(GemmTests.values(n, seed: 31), shape: Shape([n]))
                let kernel = LinearKernel(hasBias: true, epilogue: [.activation(.silu, alpha: 0)])
                func run(_ p: PackedMatrix, threads: Int) -> [UInt32] {
                    let out = Tensor.zeros(.f32, Shape([rows, n]))
                    let views = [x, deq, bias].map { View(pointer: UnsafeMutableRawPointer(mutating: $0.bytes.baseAddress!), dtype: $0.dtype, shape: $0.shape) }
                    let o = View(pointer: UnsafeMutableRawPointer(mutating: out.bytes.baseAddress!), dtype: .f32, shape: out.shape)
                    FusedLinear.run(kernel, x: views[0], weight: views[1], packed: p, operands: views, out: o, gemm: gemm, threads: threads)
                    return out.floats().map(\.bitPattern)
                }
                let expected = run(reference, threads: 2)
                for threads in [1, 3] {
                    #expect(run(packed, threads: threads) == expected, "\(isa) \(format) \(rows)×\(n)×\(k), \(threads) threads")
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

    /// int8-block32 and int8-block16: the row scales of int8-channel, and per block of 32 (16) values
    /// (the last one shorter) the smallest code whose step covers the block's largest value; every
    /// value within half its block's step, zeros exact (a zero block has code 0), the codes in
    /// `[rows, ceil(k/32)]` bytes (two 4-bit codes a byte for blocks of 16), and on Gaussian rows less
    /// error than one scale per row.
    @Test(arguments: [(20, 37), (9, 64), (5, 1), (3, 100), (4, 47)], [WeightFormat.int8Block32, .int8Block16])
    func int8BlockQuantisation(shape: (Int, Int), format: WeightFormat) {
        let (rows, k) = shape
        var values = Self.weights(rows: rows, k: k).floats()
        if k >= 64 { for i in 32..<64 { values[i] = 0 } }  // a zero block in row 0 (two for blocks of 16)
        let w = Tensor(values, shape: Shape([rows, k]))
        let q = Quantization.quantize(w, as: format)
        let coding = Quantization.BlockCoding(format)!
        let size = coding.size, blocks = (k + size - 1) / size
        #expect(q.values.dtype == .i8 && q.scales!.shape == Shape([rows]) && q.blockCodes!.shape == Shape([rows, (k + 31) / 32]) && q.blockCodes!.dtype == .u8)
        let deq = Quantization.dequantize(q).floats(), s = q.scales!.floats()
        let codes = q.blockCodes!.withElements(as: UInt8.self) { Array($0) }
        for r in 0..<rows {
            let m = (0..<k).map { abs(values[r * k + $0]) }.max()!
            #expect(s[r] == m / 127)
            for b in 0..<blocks {
                let range = (r * k + b * size)..<(r * k + min(k, (b + 1) * size))
                let mb = range.map { abs(values[$0]) }.max()!
                let byte = codes[r * ((k + 31) / 32) + (size == 32 ? b : b / 2)]
                let c = size == 32 ? byte : (byte >> (4 * UInt8(b % 2))) & 15
                #expect(codes.withUnsafeBufferPointer { coding.code($0.baseAddress!, row: r, block: b, k: k) } == c)
                let step = coding.scale(s[r], c)
                if mb == 0 { #expect(c == 0); continue }
                #expect((127 * step >= mb || c == coding.maxCode) && (c == 1 || 127 * coding.scale(s[r], c - 1) < mb), "row \(r) block \(b): code \(c)")
                for i in range { #expect(abs(deq[i] - values[i]) <= step * 0.5001, "row \(r) value \(i)") }
            }
        }
        if k >= 64 { #expect(deq[32..<64].allSatisfy { $0 == 0 }) }
        // Gaussian rows: smaller error than one scale per row.
        if k >= 64 {
            // Box–Muller: Gaussian values, whose rows' largest values stand out of most of their blocks.
            let u = GemmTests.values(rows * 512, seed: 5).map { Double(abs($0)) * 0.999 + 0.001 }, v = GemmTests.values(rows * 512, seed: 6)
            let g = Tensor((0..<(rows * 512)).map { Float((-2 * log(u[$0])).squareRoot() * cos(Double.pi * Double(v[$0]))) }, shape: Shape([rows, 512]))
            let perBlock = Quantization.error(Quantization.dequantize(Quantization.quantize(g, as: format)), g).relativeL2
            let perRow = Quantization.error(Quantization.dequantize(Quantization.quantize(g, as: .int8Channel)), g).relativeL2
            #expect(perBlock < 0.8 * perRow, "\(perBlock) vs \(perRow)")
        }
    }

}

/// Linear layers with int8 weights and int8 activations (VNNI and AVX2 kernels): against the same arithmetic in
/// double precision (each row quantised symmetric per block of `4 · activationBlockSteps` values of
/// k, scale max|x|/127 of the block; products summed in double), with a layer-norm prologue, bias and
/// epilogue, odd sizes (k not a multiple of 4 or 32, columns past a panel, rows past a tile), outlier
/// rows, features and output channels, a zero block, any thread count.
@Suite struct Int8LinearTests {
    @Test(arguments: [(48, 33, 37), (97, 64, 320), (200, 77, 1030), (50, 5, 4), (100, 40, 96), (250, 17, 301), (60, 31, 1153)])
    func matchesQuantisedArithmetic(rows: Int, out: Int, k: Int) throws {
        var x = GemmTests.values(rows * k, seed: 31).map { $0 * 3 + 0.5 }
        for i in 0..<k { x[5 * k + i] *= 100 }  // an outlier row keeps its own scales
        for r in 0..<rows { x[r * k + k / 3] *= 40 }  // an outlier feature: its block's scale only
        for i in 0..<min(k, 32) { x[7 * k + i] = 0 }  // a zero block
        let w = QuantizedGemmTests.weights(rows: out, k: k)
        let q = Quantization.quantize(w, as: .int8Channel)
        let bias = GemmTests.values(out, seed: 37)
        let lnScale = GemmTests.values(k, seed: 41).map { 1 + $0 / 10 }, lnBias = GemmTests.values(k, seed: 43).map { $0 / 10 }
        let width = 4 * Int8Gemm.activationBlockSteps((k + 3) / 4)
        for layerNorm in [false, true] {
            let kernel = LinearKernel(hasBias: true, prologue: layerNorm ? LayerNormPrologue(epsilon: 1e-5, scaleOperand: 3, biasOperand: 4) : nil,
                                      epilogue: [.activation(.relu, alpha: 0)])
            // The expected numbers: the prologue, each row quantised per block, sums in double, scaled back.
            let wq = q.values.withElements(as: Int8.self) { Array($0) }, ws = q.scales!.floats()
            var expected = [Float](repeating: 0, count: rows * out)
            var bound = [Float](repeating: 0, count: rows * out)
            for r in 0..<rows {
                var row = (0..<k).map { x[r * k + $0] }
                if layerNorm {
                    let mean = row.reduce(0, +) / Float(k)
                    let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(k)
                    row = (0..<k).map { (row[$0] - mean) / (variance + 1e-5).squareRoot() * lnScale[$0] + lnBias[$0] }
                }
                let (qx, sx) = Int8ConvolutionTests.quantized(row, c: k, plane: 1, blockChannels: width)
                for j in 0..<out {
                    var acc = 0.0, magnitude = 0.0
                    for i in 0..<k {
                        let wv = Double(wq[j * k + i])
                        acc += Double(qx[i]) * Double(sx[i]) * wv
                        magnitude += abs(Double(qx[i]) * Double(sx[i])) * (abs(wv) + 128)
                    }
                    expected[r * out + j] = max(0, Float(acc * Double(ws[j])) + bias[j])
                    // f32 sums of the blocks (and of the `w + 128` offsets); with the prologue, whose
                    // rounding (f32 here, vectorised there) may move a value across one step of its block.
                    bound[r * out + j] = Float(4e-6 * magnitude * Double(ws[j])) + 1e-5 * abs(expected[r * out + j])
                        + (layerNorm ? sx.max()! * ws[j] * 127 : 0)
                }
            }
            let operands = [Tensor(x, shape: Shape([rows, k])), Tensor(w.floats(), shape: Shape([out, k])), Tensor(bias, shape: Shape([out])),
                            Tensor(lnScale, shape: Shape([k])), Tensor(lnBias, shape: Shape([k]))]
            let panels = q.values.bytes.withMemoryRebound(to: Int8.self) { v in
                q.scales!.withElements(as: Float.self) { Int8WeightPanels(v.baseAddress!, scales: $0.baseAddress!, n: out, k: k, threads: 2) }
            }
            // Both int8 micro-kernels (the AVX-512 choice takes VNNI where the processor has it).
            for (isa, threads) in [(ISA.avx2, 1), (.avx2, 3), (.avx512, 1), (.avx512, 3)] where isa.isSupported {
                #expect(Int8Linear.kernel(rows: rows, isa: isa) != nil)
                let result = Tensor.zeros(.f32, Shape([rows, out]))
                FusedLinear.run(kernel, x: OwnKernelTests.view(operands[0]), weight: OwnKernelTests.view(operands[1]), int8: panels,
                                operands: operands.map(OwnKernelTests.view), out: OwnKernelTests.view(result), gemm: Gemm(isa), threads: threads)
                let got = result.floats()
                let bad = (0..<got.count).filter { abs(got[$0] - expected[$0]) > bound[$0] }, off = bad.count
                #expect(off == 0, "\(rows)×\(out)×\(k) LN \(layerNorm) \(isa) threads \(threads): \(bad.count) of \(got.count) off, first \(bad.first.map { "\(got[$0]) vs \(expected[$0])" } ?? "")")
            }
        }
    }
}

/// Convolutions with int8 weights and int8 activations (VNNI and AVX2 kernels): against the same arithmetic done
/// plainly (the input quantised symmetric per pixel and block of channels, padding 0; the products
/// summed in double), over strides, padding, dilation, channel counts that are not multiples of four
/// or of 64 (blocks of 4 · `Int8Convolution.activationBlockSteps` channels), outputs narrower than a panel, pixel counts past a
/// band, more than one call's blocks of k, outlier pixels and channels, and thread counts.
@Suite struct Int8ConvolutionTests {
    struct Case: Sendable, CustomStringConvertible {
        var n: Int, c: Int, h: Int, w: Int, oc: Int, kh: Int, kw: Int, stride: Int, pad: Int, dilation: Int
        init(n: Int = 1, c: Int, h: Int, w: Int, oc: Int, kh: Int = 3, kw: Int = 3, stride: Int = 1, pad: Int = 1, dilation: Int = 1) {
            (self.n, self.c, self.h, self.w, self.oc, self.kh, self.kw, self.stride, self.pad, self.dilation) = (n, c, h, w, oc, kh, kw, stride, pad, dilation)
        }
        var description: String { "n\(n) c\(c) \(h)×\(w) oc\(oc) k\(kh)×\(kw) s\(stride) p\(pad) d\(dilation)" }
    }

    /// The activations as the kernels quantise them: per pixel and block of channels, `q = round(y · 127/m)`.
    static func quantized(_ img: [Float], c: Int, plane: Int, blockChannels bc: Int) -> (q: [Int], scale: [Float]) {
        var q = [Int](repeating: 0, count: img.count), scale = [Float](repeating: 0, count: img.count)
        for p in 0..<plane {
            for c0 in stride(from: 0, to: c, by: bc) {
                let chans = c0..<min(c, c0 + bc)
                let m = chans.map { abs(img[$0 * plane + p]) }.max()!
                let inv: Float = m > 0 ? 127 / m : 0
                for ch in chans {
                    q[ch * plane + p] = Int(min(127, max(-127, img[ch * plane + p] * inv)).rounded(.toNearestOrEven))
                    scale[ch * plane + p] = m / 127
                }
            }
        }
        return (q, scale)
    }

    @Test(arguments: [Case(c: 5, h: 9, w: 7, oc: 13), Case(n: 2, c: 8, h: 16, w: 40, oc: 30, stride: 2),
                      Case(c: 120, h: 12, w: 36, oc: 40), Case(c: 4, h: 33, w: 33, oc: 12, kh: 1, kw: 1, pad: 0),
                      Case(c: 6, h: 11, w: 13, oc: 7, dilation: 2), Case(c: 16, h: 40, w: 32, oc: 50),
                      Case(c: 320, h: 6, w: 10, oc: 14)])
    func matchesQuantisedArithmetic(_ t: Case) throws {
        let oh = (t.h + 2 * t.pad - t.dilation * (t.kh - 1) - 1) / t.stride + 1
        let ow = (t.w + 2 * t.pad - t.dilation * (t.kw - 1) - 1) / t.stride + 1
        var x = GemmTests.values(t.n * t.c * t.h * t.w, seed: 51).map { $0 * 2 + 0.5 }  // asymmetric range
        // Outliers: one channel 50× everywhere, one pixel 200× in every channel.
        for b in 0..<t.n { for p in 0..<(t.h * t.w) { x[(b * t.c + t.c / 2) * t.h * t.w + p] *= 50 } }
        for ch in 0..<t.c { x[ch * t.h * t.w + t.w + 1] *= 200 }
        let wt = QuantizedGemmTests.weights(rows: t.oc, k: t.c * t.kh * t.kw)
        let q = Quantization.quantize(wt, as: .int8Channel)
        let wq = q.values.withElements(as: Int8.self) { Array($0) }, ws = q.scales!.floats()
        let bias = GemmTests.values(t.oc, seed: 53)
        let residual = GemmTests.values(t.n * t.oc * oh * ow, seed: 57)
        let perChannel = GemmTests.values(t.n * t.oc, seed: 59)
        let blockChannels = 4 * Int8Convolution.activationBlockSteps((t.c + 3) / 4)
        var expected = [Float](repeating: 0, count: residual.count), bound = expected
        for b in 0..<t.n {
            let img = Array(x[(b * t.c * t.h * t.w)..<((b + 1) * t.c * t.h * t.w)])
            let (u, us) = Self.quantized(img, c: t.c, plane: t.h * t.w, blockChannels: blockChannels)
            for o in 0..<t.oc {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var acc = 0.0, magnitude = 0.0
                        for ci in 0..<t.c {
                            for ky in 0..<t.kh {
                                for kx in 0..<t.kw {
                                    let iy = oy * t.stride - t.pad + ky * t.dilation, ix = ox * t.stride - t.pad + kx * t.dilation
                                    guard iy >= 0 && iy < t.h && ix >= 0 && ix < t.w else { continue }
                                    let at = (ci * t.h + iy) * t.w + ix
                                    let wv = Double(wq[((o * t.c + ci) * t.kh + ky) * t.kw + kx])
                                    acc += Double(u[at]) * Double(us[at]) * wv
                                    magnitude += abs(Double(u[at]) * Double(us[at])) * (abs(wv) + 128)
                                }
                            }
                        }
                        let i = ((b * t.oc + o) * oh + oy) * ow + ox
                        expected[i] = Float(acc * Double(ws[o])) + bias[o] + perChannel[b * t.oc + o] + residual[i]
                        // f32 sums of the blocks' scaled products (and of the `w + 128` offsets).
                        bound[i] = Float(4e-6 * magnitude * Double(ws[o])) + 1e-5 * abs(expected[i])
                    }
                }
            }
        }
        let kernel = Conv2DKernel(strides: [t.stride, t.stride], pads: [t.pad, t.pad, t.pad, t.pad], dilations: [t.dilation, t.dilation],
                                  groups: 1, hasBias: true, epilogue: [.addChannels(operand: 4), .addResidual(operand: 3)])
        let operands = [Tensor(x, shape: Shape([t.n, t.c, t.h, t.w])), Tensor(wt.floats(), shape: Shape([t.oc, t.c, t.kh, t.kw])),
                        Tensor(bias, shape: Shape([t.oc])), Tensor(residual, shape: Shape([t.n, t.oc, oh, ow])),
                        Tensor(perChannel, shape: Shape([t.n, t.oc, 1, 1]))]
        let packed = q.values.bytes.withMemoryRebound(to: Int8.self) { v in
            q.scales!.withElements(as: Float.self) { Int8ConvWeights(v.baseAddress!, scales: $0.baseAddress!, oc: t.oc, ic: t.c, kh: t.kh, kw: t.kw, threads: 2) }
        }
        let kernels = Int8Gemm.Kernel.allCases.filter(\.isSupported)
        #expect(!kernels.isEmpty)
        for int8 in kernels {
        for threads in [1, 3] {
            let result = Tensor.zeros(.f32, Shape([t.n, t.oc, oh, ow]))
            Int8Convolution.run(kernel, x: OwnKernelTests.view(operands[0]), weights: packed, operands: operands.map(OwnKernelTests.view),
                                out: OwnKernelTests.view(result), kernel: int8, threads: threads)
            let got = result.floats()
            let bad = (0..<got.count).filter { abs(got[$0] - expected[$0]) > bound[$0] }, off = bad.count
            #expect(off == 0, "\(t) \(int8) threads \(threads): \(bad.count) of \(got.count) off, first \(bad.first.map { "\(got[$0]) vs \(expected[$0])" } ?? "")")
        }
        }
    }
}

