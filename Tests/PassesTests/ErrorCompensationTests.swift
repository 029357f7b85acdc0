import Quantize
import Executor
import Foundation
import Kernels
import Passes
import Plan
import ReferenceKernels
import Tensors
import Testing
import TestSupport

/// Error compensation (`compile --gptq`): the layers' GEMM inputs as the executor reports them, the
/// compensated rounding itself, and a compensated plan against plain rounding.
@Suite struct ErrorCompensationTests {
    /// Seeded values in [−1, 1].
    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 &+ 7
        return (0..<count).map { _ in
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Double(s >> 11) / Double(1 << 53) * 2 - 1)
        }
    }

    /// `x · Wᵀ + b` from the reported inputs equals the reference convolution with its GroupNorm/SiLU
    /// prologue, at a stride, uneven pads and a dilation (the patch order is the weight's
    /// `[ic, kh, kw]`; a patch reading padding holds zeros).
    @Test(arguments: [(1, 1, [1, 1, 1, 1], 1), (2, 2, [1, 0, 2, 1], 1), (1, 1, [2, 2, 2, 2], 2)])
    func convolutionInputsReproduceTheLayer(stride: Int, batch: Int, pads: [Int], dilation: Int) throws {
        let (c, oc, h, w, kh, kw) = (8, 5, 7, 6, 3, 3)
        let x = Tensor(Self.values(batch * c * h * w, seed: 1).map { $0 * 3 + 0.5 }, shape: [batch, c, h, w])
        let weight = Tensor(Self.values(oc * c * kh * kw, seed: 2), shape: [oc, c, kh, kw])
        let bias = Tensor(Self.values(oc, seed: 3), shape: [oc])
        let scale = Tensor(Self.values(c, seed: 4), shape: [c]), shift = Tensor(Self.values(c, seed: 5), shape: [c])
        let kernel = Kernel.conv2d(Conv2DKernel(strides: [stride, stride], pads: pads, dilations: [dilation, dilation], groups: 1, hasBias: true,
                                                prologue: NormPrologue(groups: 4, epsilon: 1e-5, silu: true, scaleOperand: 3, biasOperand: 4)))
        let oh = (h + pads[0] + pads[2] - dilation * (kh - 1) - 1) / stride + 1
        let ow = (w + pads[1] + pads[3] - dilation * (kw - 1) - 1) / stride + 1
        let expected = try Reference.execute(kernel, [x, weight, bias, scale, shift], results: [(.f32, Shape([batch, oc, oh, ow]))])[0].floats()
        let groups = try #require(Executor.gemmInputs(kernel, [x, Tensor.zeros(.f32, [0]), bias, scale, shift], weightShape: weight.shape))
        #expect(groups.count == 1 && groups[0].rows == 0..<oc)
        let patches = groups[0].vectors
        let k = c * kh * kw
        #expect(patches.shape == Shape([batch * oh * ow, k]))
        let p = patches.floats(), wv = weight.floats(), bv = bias.floats()
        var worst: Float = 0
        for b in 0..<batch {
            for o in 0..<oc {
                for pix in 0..<(oh * ow) {
                    var s = bv[o]
                    for i in 0..<k { s += p[(b * oh * ow + pix) * k + i] * wv[o * k + i] }
                    worst = max(worst, abs(s - expected[(b * oc + o) * oh * ow + pix]))
                }
            }
        }
        #expect(worst < 1e-4, "max difference \(worst)")
    }

    /// An upsampling convolution (the phase kernels of `upsample-conv`): each phase's rows times its
    /// own 2 × 2 patches of the small image give that phase's output pixels.
    @Test func upsamplingPhasesReproduceTheLayer() throws {
        let (c, oc, h, w) = (6, 5, 4, 5)
        let x = Tensor(Self.values(c * h * w, seed: 20), shape: [1, c, h, w])
        let phases = Tensor(Self.values(4 * oc * c * 4, seed: 21), shape: [4 * oc, c, 2, 2])
        let kernel = Kernel.conv2d(Conv2DKernel(strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, hasBias: false, upsample: true))
        let expected = try Reference.execute(kernel, [x, phases], results: [(.f32, Shape([1, oc, 2 * h, 2 * w]))])[0].floats()
        let groups = try #require(Executor.gemmInputs(kernel, [x, Tensor.zeros(.f32, [0])], weightShape: phases.shape))
        #expect(groups.map(\.rows) == [0..<oc, oc..<2 * oc, 2 * oc..<3 * oc, 3 * oc..<4 * oc])
        let k = c * 4, wv = phases.floats()
        var worst: Float = 0
        for (p, g) in groups.enumerated() {
            #expect(g.vectors.shape == Shape([h * w, k]))
            let v = g.vectors.floats()
            let (a, b) = (p / 2, p % 2)
            for o in 0..<oc {
                for i in 0..<h {
                    for j in 0..<w {
                        var s: Float = 0
                        for t in 0..<k { s += v[(i * w + j) * k + t] * wv[(p * oc + o) * k + t] }
                        worst = max(worst, abs(s - expected[(o * 2 * h + 2 * i + a) * 2 * w + 2 * j + b]))
                    }
                }
            }
        }
        #expect(worst < 1e-5, "max difference \(worst)")
    }

    /// A linear layer's inputs: the gathered layout (a transpose) and the LayerNorm prologue applied.
    @Test func linearInputsReproduceTheLayer() throws {
        let (rows, k, n) = (6, 10, 4)
        let x = Tensor(Self.values(rows * k, seed: 6), shape: [k, rows])  // stored transposed
        let weight = Tensor(Self.values(n * k, seed: 7), shape: [n, k])
        let gamma = Tensor(Self.values(k, seed: 8), shape: [k]), beta = Tensor(Self.values(k, seed: 9), shape: [k])
        let rowOffsets = Tensor(dtype: .i32, shape: [rows], storage: TensorStorage(byteCount: rows * 4))
        let columnOffsets = Tensor(dtype: .i32, shape: [k], storage: TensorStorage(byteCount: k * 4))
        for r in 0..<rows { rowOffsets.storage.mutableBytes!.bindMemory(to: Int32.self)[r] = Int32(r) }
        for j in 0..<k { columnOffsets.storage.mutableBytes!.bindMemory(to: Int32.self)[j] = Int32(j * rows) }
        let kernel = Kernel.linear(LinearKernel(hasBias: false, prologue: LayerNormPrologue(epsilon: 1e-5, scaleOperand: 2, biasOperand: 3), inputOffsets: 4))
        let operands = [x, weight, gamma, beta, rowOffsets, columnOffsets]
        let expected = try Reference.execute(kernel, operands, results: [(.f32, Shape([rows, n]))])[0].floats()
        var withoutWeight = operands
        withoutWeight[1] = Tensor.zeros(.f32, [0])
        let groups = try #require(Executor.gemmInputs(kernel, withoutWeight, weightShape: weight.shape))
        #expect(groups.count == 1 && groups[0].rows == 0..<n)
        let input = groups[0].vectors
        #expect(input.shape == Shape([rows, k]))
        let a = input.floats(), wv = weight.floats()
        var worst: Float = 0
        for r in 0..<rows {
            for j in 0..<n {
                var s: Float = 0
                for i in 0..<k { s += a[r * k + i] * wv[j * k + i] }
                worst = max(worst, abs(s - expected[r * n + j]))
            }
        }
        #expect(worst < 1e-5, "max difference \(worst)")
    }

    /// `accumulate` sums xᵀx into the upper triangle.
    @Test func statisticsAreTheInputsGram() {
        let (rows, k) = (13, 9)
        let x = Self.values(rows * k, seed: 10)
        var h = [Float](repeating: 0, count: k * k)
        x.withUnsafeBufferPointer { xp in
            h.withUnsafeMutableBufferPointer { ErrorCompensation.accumulate($0.baseAddress!, k: k, x: xp.baseAddress!, rows: rows) }
            h.withUnsafeMutableBufferPointer { ErrorCompensation.accumulate($0.baseAddress!, k: k, x: xp.baseAddress!, rows: rows) }
        }
        for i in 0..<k {
            for j in i..<k {
                var s = 0.0
                for r in 0..<rows { s += Double(x[r * k + i]) * Double(x[r * k + j]) }
                #expect(abs(Double(h[i * k + j]) - 2 * s) < 1e-4)
            }
        }
    }

    /// Uncorrelated inputs (diagonal statistics) leave nothing to compensate: the result is plain
    /// rounding, bit for bit.
    @Test(arguments: [false, true])
    func uncorrelatedInputsGivePlainRounding(activationOrder: Bool) throws {
        let (rows, k) = (7, 45)
        let w = Tensor(Self.values(rows * k, seed: 11), shape: [rows, k])
        var h = [Float](repeating: 0, count: k * k)
        for i in 0..<k { h[i * k + i] = Float(1 + i % 5) }
        let (values, scales) = try h.withUnsafeMutableBufferPointer { try ErrorCompensation.quantizeInt8PerRow(w, hessian: $0.baseAddress!, damping: 0.01, activationOrder: activationOrder, block: 16) }
        let plain = Quantization.quantizeInt8PerRow(w)
        #expect(values.withElements(as: Int8.self) { Array($0) } == plain.values.withElements(as: Int8.self) { Array($0) })
        #expect(scales.floats() == plain.scales.floats())
    }

    /// On correlated inputs the layer's output error on *other* inputs of the same kind is well below
    /// plain rounding's, with the same scales and int8 range; a row 1000× the others (an outlier
    /// channel), a row of zeros and blocks that do not divide k are handled.
    /// `n` vectors of `k`: `factors` shared factors mixed by `mix [factors, k]`, plus a little noise.
    static func correlated(_ n: Int, k: Int, mix: [Float], factors: Int, seed: UInt64) -> [Float] {
        let z = values(n * factors, seed: seed), e = values(n * k, seed: seed + 1)
        var x = [Float](repeating: 0, count: n * k)
        for r in 0..<n { for i in 0..<k { var s: Float = 0.05 * e[r * k + i]; for f in 0..<factors { s += z[r * factors + f] * mix[f * k + i] }; x[r * k + i] = s } }
        return x
    }

    @Test(arguments: [(16, false), (128, false), (16, true)])
    func correlatedInputsLowerTheOutputError(block: Int, activationOrder: Bool) throws {
        let (rows, k, factors) = (12, 61, 6)
        var wv = Self.values(rows * k, seed: 12)
        for i in 0..<k { wv[3 * k + i] *= 1000; wv[5 * k + i] = 0 }
        let w = Tensor(wv, shape: [rows, k])
        // Inputs: a few shared factors plus a little noise (strongly correlated columns).
        let mix = Self.values(factors * k, seed: 13)
        func inputs(_ n: Int, seed: UInt64) -> [Float] { Self.correlated(n, k: k, mix: mix, factors: factors, seed: seed) }
        let calibration = inputs(400, seed: 14), test = inputs(300, seed: 16)
        var h = [Float](repeating: 0, count: k * k)
        calibration.withUnsafeBufferPointer { x in h.withUnsafeMutableBufferPointer { ErrorCompensation.accumulate($0.baseAddress!, k: k, x: x.baseAddress!, rows: 400) } }
        let (values, scales) = try h.withUnsafeMutableBufferPointer { try ErrorCompensation.quantizeInt8PerRow(w, hessian: $0.baseAddress!, damping: 0.01, activationOrder: activationOrder, block: block) }
        let plain = Quantization.quantizeInt8PerRow(w)
        #expect(scales.floats() == plain.scales.floats())
        let q = values.withElements(as: Int8.self) { Array($0) }
        #expect(q.allSatisfy { $0 >= -127 })
        #expect(q[(5 * k)..<(6 * k)].allSatisfy { $0 == 0 })
        func outputError(_ d: [Float]) -> Double {
            var noise = 0.0, signal = 0.0
            for r in 0..<300 {
                for o in 0..<rows where o != 3 {  // the outlier row would dominate both sums
                    var e = 0.0, y = 0.0
                    for i in 0..<k { e += Double(d[o * k + i] - wv[o * k + i]) * Double(test[r * k + i]); y += Double(wv[o * k + i]) * Double(test[r * k + i]) }
                    noise += e * e
                    signal += y * y
                }
            }
            return (noise / signal).squareRoot()
        }
        let compensated = outputError(Quantization.dequantizeInt8PerRow(values, scales: scales).floats())
        let rounded = outputError(Quantization.dequantizeInt8PerRow(plain.values, scales: plain.scales).floats())
        #expect(compensated < 0.5 * rounded, "compensated \(compensated), plain \(rounded)")
    }

    /// int8-block32 and int8-block16: the row scales and block codes of plain rounding; uncorrelated
    /// inputs give plain rounding's values bit for bit, correlated ones less than half its output
    /// error on other inputs.
    @Test(arguments: [false, true], [WeightFormat.int8Block32, .int8Block16])
    func blockScalesKeepTheirCodes(activationOrder: Bool, format: WeightFormat) throws {
        let (rows, k, factors) = (9, 75, 5)
        var wv = Self.values(rows * k, seed: 21)
        for i in 0..<k { wv[2 * k + i] *= 1000 }
        for i in 32..<64 { wv[4 * k + i] *= 0.01 }  // a quiet block
        let w = Tensor(wv, shape: [rows, k])
        let plain = Quantization.quantize(w, as: format)
        var diagonal = [Float](repeating: 0, count: k * k)
        for i in 0..<k { diagonal[i * k + i] = Float(1 + i % 3) }
        let same = try diagonal.withUnsafeMutableBufferPointer {
            try ErrorCompensation.quantizeInt8(w, format: format, hessian: $0.baseAddress!, damping: 0.01, activationOrder: activationOrder, block: 16)
        }
        #expect(same.values.withElements(as: Int8.self) { Array($0) } == plain.values.withElements(as: Int8.self) { Array($0) })
        #expect(same.scales!.floats() == plain.scales!.floats())
        #expect(same.blockCodes!.withElements(as: UInt8.self) { Array($0) } == plain.blockCodes!.withElements(as: UInt8.self) { Array($0) })
        let mix = Self.values(factors * k, seed: 22)
        func inputs(_ n: Int, seed: UInt64) -> [Float] { Self.correlated(n, k: k, mix: mix, factors: factors, seed: seed) }
        let calibration = inputs(400, seed: 23), test = inputs(300, seed: 25)
        var h = [Float](repeating: 0, count: k * k)
        calibration.withUnsafeBufferPointer { x in h.withUnsafeMutableBufferPointer { ErrorCompensation.accumulate($0.baseAddress!, k: k, x: x.baseAddress!, rows: 400) } }
        let q = try h.withUnsafeMutableBufferPointer {
            try ErrorCompensation.quantizeInt8(w, format: format, hessian: $0.baseAddress!, damping: 0.01, activationOrder: activationOrder, block: 32)
        }
        #expect(q.format == format && q.scales!.floats() == plain.scales!.floats())
        #expect(q.blockCodes!.withElements(as: UInt8.self) { Array($0) } == plain.blockCodes!.withElements(as: UInt8.self) { Array($0) })
        #expect(q.values.withElements(as: Int8.self) { $0.allSatisfy { $0 >= -127 } })
        func outputError(_ d: [Float]) -> Double {
            var noise = 0.0, signal = 0.0
            for r in 0..<300 {
                for o in 0..<rows where o != 2 {
                    var e = 0.0, y = 0.0
                    for i in 0..<k { e += Double(d[o * k + i] - wv[o * k + i]) * Double(test[r * k + i]); y += Double(wv[o * k + i]) * Double(test[r * k + i]) }
                    noise += e * e
                    signal += y * y
                }
            }
            return (noise / signal).squareRoot()
        }
        let compensated = outputError(Quantization.dequantize(q).floats()), rounded = outputError(Quantization.dequantize(plain).floats())
        #expect(compensated < 0.5 * rounded, "compensated \(compensated), plain \(rounded)")
    }

    /// A fixture UNet as an int8 plan (each int8 format): compensated from calibration inputs through the f32 plan, its
    /// error on the fixture's own (held-out) inputs is below plain rounding's; the plan's weights are
    /// the compensated ones and the report says so.
    @Test(arguments: [WeightFormat.int8Channel, .int8Block32, .int8Block16])
    func compensatedPlanBeatsPlainRounding(format: WeightFormat) throws {
        let f = try FixtureNetwork.load(3)
        let dir = TemporaryDirectory()
        let (plan32, _) = try PlanExecutionTests.compile(f, into: dir)
        var o = CompileOptions()
        o.quantization = QuantizationPolicy(defaultFormat: format, exclusions: f.network.quantizationExclusions)
        let plainDir = TemporaryDirectory()
        let (plan8, _) = try PlanExecutionTests.compile(f, into: plainDir, options: o)
        let entry = plan32.program.entryPoints[0]
        let sets: [[String: Tensor]] = (0..<6).map { s in
            var feed: [String: Tensor] = [:]
            for b in entry.inputs {
                let t = f.inputs[b.name]!
                feed[b.name] = b.shape.count == 1 ? t : Tensor(Self.values(t.count, seed: UInt64(100 + s)).map { $0 * 1.7 }, shape: t.shape)
            }
            return feed
        }
        let c = try Compensation.run(quantized: plan8, reference: plan32, inputs: [entry.name: sets], threads: 2, damping: 0.1, minSamples: 0.25, memoryBudget: 1 << 20)
        #expect(c.compensated > 0 && c.passes > 1)
        o.int8Overrides = c.overrides
        let gptqDir = TemporaryDirectory()
        let (planG, compiled) = try PlanExecutionTests.compile(f, into: gptqDir, options: o)
        #expect(compiled.report.contains("error-compensated"))
        for (name, q) in c.overrides {
            let i = try #require(planG.program.weights.firstIndex { $0.name == name })
            #expect(planG.weight(i).withElements(as: Int8.self) { Array($0) } == q.values.withElements(as: Int8.self) { Array($0) })
            #expect(planG.program.weights[i].format == format && (planG.program.weights[i].blockCodes != nil) == format.hasBlockCodes)
        }
        let exact = try Executor(plan: plan32, threads: 2).run(entry: entry.name, inputs: f.inputs).outputs[0].tensor
        func error(_ p: PlanFile) throws -> Double {
            Quantization.error(try Executor(plan: p, threads: 2).run(entry: entry.name, inputs: f.inputs).outputs[0].tensor, exact).relativeL2
        }
        let (plain, compensated) = (try error(plan8), try error(planG))
        #expect(compensated < 0.92 * plain, "compensated \(compensated), plain \(plain)")
    }
}
