import Quantize
import Executor
import Kernels
import Foundation
import IR
import ModelGraphs
import Passes
import Plan
import Tensors
import Testing
import TestSupport

/// Every fixture network compiled to a plan file, mapped and run by the executor with the fast kernels.
@Suite struct PlanExecutionTests {
    static func compile(_ f: FixtureNetwork, into dir: TemporaryDirectory, options: CompileOptions = CompileOptions()) throws -> (PlanFile, CompiledPlan) {
        var o = options
        o.verifyEach = true
        let compiled = try Compiler.compile([(f.network.rawValue, f.graph)], options: o)
        let path = dir.file(f.network.rawValue + ".plan")
        try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: true)
        return (try PlanFile(path: path), compiled)
    }

    /// The plan's outputs match the unfused reference interpreter (≤1e-5) and PyTorch (≤1e-4).
    @Test(arguments: Array(0..<FixtureNetwork.all.count))
    func planMatchesReference(index: Int) throws {
        let f = try FixtureNetwork.load(index)
        let dir = TemporaryDirectory()
        let (plan, compiled) = try Self.compile(f, into: dir)
        let reference = try Interpreter.run(f.graph, inputs: f.inputs)
        var first: [[Float]]?
        for threads in [1, 2, 3] {
            let executor = Executor(plan: plan, threads: threads)
            let result = try executor.run(entry: f.network.rawValue, inputs: f.inputs)
            // Bit-identical for any thread count (tiles fixed by the shapes, not the threads).
            let bits = result.outputs.map { $0.tensor.floats() }
            if let first { #expect(bits.elementsEqual(first) { $0.map(\.bitPattern) == $1.map(\.bitPattern) }, "\(f.network.rawValue): \(threads) threads differ from 1") }
            first = first ?? bits
            #expect(result.fallbacks.isEmpty || f.network == .clipText, "\(f.network.rawValue): reference kernels ran for \(result.fallbacks)")
            for (name, t) in result.outputs {
                let e = FixtureNetwork.relativeError(t, reference[name]!)
                #expect(e <= 1e-5, "\(f.network.rawValue) \(name) (\(threads) threads) vs reference: \(e)")
                let p = FixtureNetwork.relativeError(t, f.expected[name]!)
                #expect(p <= 1e-4, "\(f.network.rawValue) \(name) (\(threads) threads) vs PyTorch: \(p)")
            }
        }
        let r = compiled.entryReports[0]
        #expect(r.arenaBytes <= r.naiveBytes)
        #expect(r.arenaBytes >= r.largestTensorBytes)
        print("\(f.network.rawValue): \(r.instructions) instructions, arena \(r.arenaBytes) B, naive \(r.naiveBytes) B, largest \(r.largestTensorBytes) B")
    }

    /// Plans with int8 (per output channel, or per block of 32) and f16 convolution and linear weights: the weights are
    /// stored in that form (int8 ≤ 27 % of their f32 bytes, f16 ≤ 51 %), every instruction matches
    /// its reference on the dequantised weights (`--validate`, on AVX-512 and forced AVX2), nothing
    /// falls back to the reference kernels, and the outputs stay near the f32 plan's.
    @Test(arguments: Array(0..<FixtureNetwork.all.count))
    func quantizedPlans(index: Int) throws {
        let f = try FixtureNetwork.load(index)
        let dir = TemporaryDirectory()
        let (plan32, _) = try Self.compile(f, into: dir)
        let exact = try Executor(plan: plan32, threads: 2).run(entry: f.network.rawValue, inputs: f.inputs)
        for (format, bound, int8Activations) in [(WeightFormat.int8Channel, 5e-2, false), (.int8Block32, 5e-2, false), (.int8Block16, 5e-2, false), (.f16, 2e-3, false), (.int8Channel, 5e-2, true)] {
            var o = CompileOptions()
            o.quantization = QuantizationPolicy(defaultFormat: format, exclusions: f.network.quantizationExclusions)
            o.int8Activations = int8Activations
            let sub = TemporaryDirectory()
            let (plan, compiled) = try Self.compile(f, into: sub, options: o)
            let gemmWeights = plan.program.weights.filter { $0.format == format }
            #expect(!gemmWeights.isEmpty, "\(f.network.rawValue): no weight stored as \(format)")
            #expect(compiled.report.contains("quantisation of convolution and linear weights"))
            let ratio = Double(gemmWeights.reduce(0) { $0 + $1.byteCount + ($1.scale.map { plan.program.weights[$0].byteCount } ?? 0) + ($1.blockCodes.map { plan.program.weights[$0].byteCount } ?? 0) })
                / Double(gemmWeights.reduce(0) { $0 + $1.shape.count * 4 })
            // Values: 1 byte (int8) or 2 (f16) each; int8 adds one f32 scale per output channel (these
            // fixtures are narrow, so the scales weigh more than in full-size models).
            #expect(gemmWeights.allSatisfy { $0.byteCount == $0.shape.count * (format == .f16 ? 2 : 1) })
            #expect(ratio <= (format == .f16 ? 0.5 : 0.3), "\(f.network.rawValue) \(format): \(ratio) of f32 bytes")
            for isa in ISA.allCases where isa.isSupported {
                var options = RunOptions()
                // Every instruction against its reference twin on the best set; the forced AVX2 set runs
                // plainly; OpenBLAS has no quantised GEMM, so those instructions run their reference twins
                // (dequantised weights) and are reported as fallbacks.
                options.validate = isa == ISA.best
                // int8 activations: the linear layers differ from their f32 twins by the rows' quantisation.
                options.tolerance = int8Activations ? 5e-2 : 1e-4
                let r = try Executor(plan: plan, threads: 2, isa: isa).run(entry: f.network.rawValue, inputs: f.inputs, options: options)
                #expect(r.validation?.first == nil, "\(f.network.rawValue) \(format) \(isa): \(r.validation?.first.map { "\($0.name) \($0.kind) \($0.relativeError)" } ?? "")")
                #expect(r.fallbacks.isEmpty || f.network == .clipText || isa == .openblas, "\(f.network.rawValue) \(format): reference kernels ran for \(r.fallbacks)")
                var changed = false
                for ((name, t), (_, e)) in zip(r.outputs, exact.outputs) {
                    let err = FixtureNetwork.relativeError(t, e)
                    changed = changed || err > 0
                    #expect(err <= bound, "\(f.network.rawValue) \(name) \(format) \(isa): \(err) vs the f32 plan")
                    print("\(f.network.rawValue) \(name) \(format)\(int8Activations ? "+int8 activations" : "") \(isa): relative error \(err) vs f32 plan, weights at \(ratio) of f32")
                }
                #expect(changed, "\(f.network.rawValue) \(format): the outputs equal the f32 plan's (were the weights quantised?)")
            }
        }
    }

    /// Calibration's per-layer comparison (`ShadowComparison`, a `RunObserver`): every layer with an int8 weight is
    /// reported once, with an error that is neither zero nor large (int8 per channel: 35–70 dB; a layer
    /// with a fused residual add reports against its sum, hence the higher end);
    /// f32 layers (the model's exclusions) are not reported; the run's own outputs are unchanged.
    @Test func shadowRunReportsEachQuantisedLayer() throws {
        let f = try FixtureNetwork.load(0)
        let dir = TemporaryDirectory()
        let (plan32, _) = try Self.compile(f, into: dir)
        var o = CompileOptions()
        o.quantization = QuantizationPolicy(defaultFormat: .int8Channel, exclusions: f.network.quantizationExclusions)
        let sub = TemporaryDirectory()
        let (plan8, _) = try Self.compile(f, into: sub, options: o)
        final class Sink: @unchecked Sendable { var rows: [(Int, String, Double, Double)] = [] }
        let sink = Sink()
        var options = RunOptions()
        options.observer = ShadowComparison(shadow: Executor(plan: plan8, threads: 2)) { sink.rows.append(($0, $1, $2, $3)) }
        let executor = Executor(plan: plan32, threads: 2)
        let shadowed = try executor.run(entry: "swinir", inputs: f.inputs, options: options)
        let plain = try executor.run(entry: "swinir", inputs: f.inputs)
        #expect(shadowed.outputs[0].tensor.floats() == plain.outputs[0].tensor.floats())
        let quantised = plan8.program.entryPoints[0].instructions.filter {
            if case .weight(let w) = $0.operands.count > 1 ? $0.operands[1] : .weight(0) { return plan8.program.weights[w].format == .int8Channel }
            return false
        }
        #expect(sink.rows.count == quantised.count && !quantised.isEmpty)
        #expect(Set(sink.rows.map(\.1)) == Set(quantised.map(\.name)))
        for (_, name, noise, signal) in sink.rows {
            let snr = 10 * log10(signal / noise)
            #expect(snr > 35 && snr < 70, "\(name): SNR \(snr) dB")
        }
    }

    /// `--validate` finds nothing on a correct plan, and names the instruction when a weight is wrong.
    @Test func validationFindsACorruptedKernel() throws {
        let f = try FixtureNetwork.load(0)
        let dir = TemporaryDirectory()
        let (plan, _) = try Self.compile(f, into: dir)
        var options = RunOptions()
        options.validate = true
        let ok = try Executor(plan: plan, threads: 2).run(entry: "swinir", inputs: f.inputs, options: options)
        #expect(ok.validation?.first == nil)
        #expect((ok.validation?.worstByKind.count ?? 0) > 3)
        options.profile = true
        let profiled = try Executor(plan: plan, threads: 1).run(entry: "swinir", inputs: f.inputs, options: options)
        #expect(profiled.profile!.rows.reduce(0) { $0 + $1.count } == plan.program.entryPoints[0].instructions.count)
    }

    @Test func wrongInputsAreRefused() throws {
        let f = try FixtureNetwork.load(1)
        let dir = TemporaryDirectory()
        let (plan, _) = try Self.compile(f, into: dir)
        let executor = Executor(plan: plan, threads: 1)
        #expect(throws: ExecutorError.self) { try executor.run(entry: "nope", inputs: f.inputs) }
        #expect(throws: ExecutorError.self) { try executor.run(entry: "bsrnet", inputs: [:]) }
        #expect(throws: ExecutorError.self) { try executor.run(entry: "bsrnet", inputs: ["image": Tensor.zeros(.f32, [1, 3, 5, 5])]) }
    }

    /// Two entry points in one plan share weights by key and one arena.
    /// Under a memory budget the pipeline keeps only the current network's packed weights:
    /// `releasePacked` drops the others (int8 and int8 × int8 packs alike) and the next run packs
    /// again with the same results.
    @Test(arguments: [false, true])
    func releasePackedKeepsOnlyOneEntry(int8Activations: Bool) throws {
        let enc = try FixtureNetwork.load(6), dec = try FixtureNetwork.load(7)
        var o = CompileOptions()
        o.quantization = QuantizationPolicy(defaultFormat: .int8Channel)
        o.int8Activations = int8Activations
        let compiled = try Compiler.compile([("encode", enc.graph), ("decode", dec.graph)], options: o)
        let dir = TemporaryDirectory()
        let path = dir.file("vae.plan")
        try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: true)
        let executor = Executor(plan: try PlanFile(path: path), threads: 2)
        let first = try executor.run(entry: "decode", inputs: dec.inputs).outputs[0].tensor.floats()
        let decodeOnly = executor.packedBytes
        _ = try executor.run(entry: "encode", inputs: enc.inputs)
        let both = executor.packedBytes
        #expect(decodeOnly > 0 && both > decodeOnly)
        executor.releasePacked(keepingWeightsOf: "decode")
        #expect(executor.packedBytes == decodeOnly)
        executor.releasePacked(keepingWeightsOf: "encode")  // the encoder's packs went with the first release
        #expect(executor.packedBytes == 0)
        let again = try executor.run(entry: "decode", inputs: dec.inputs).outputs[0].tensor.floats()
        #expect(again == first)
    }

    @Test func entryPointsShareWeightsAndArena() throws {
        let enc = try FixtureNetwork.load(6), dec = try FixtureNetwork.load(7)
        let compiled = try Compiler.compile([("encode", enc.graph), ("decode", dec.graph), ("decode-again", dec.graph)], options: CompileOptions())
        let dir = TemporaryDirectory()
        let path = dir.file("vae.plan")
        try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: false)
        let plan = try PlanFile(path: path)
        #expect(plan.program.entryPoints.map(\.name) == ["encode", "decode", "decode-again"])
        let single = try Compiler.compile([("decode", dec.graph)], options: CompileOptions())
        let singleEnc = try Compiler.compile([("encode", enc.graph)], options: CompileOptions())
        // The second decoder adds no weights.
        #expect(compiled.program.weights.count == single.program.weights.count + singleEnc.program.weights.count - 1)
        #expect(plan.program.arenaBytes == max(single.program.arenaBytes, singleEnc.program.arenaBytes))
        let executor = Executor(plan: plan, threads: 2)
        let a = try executor.run(entry: "decode", inputs: dec.inputs)
        _ = try executor.run(entry: "encode", inputs: enc.inputs)
        let b = try executor.run(entry: "decode-again", inputs: dec.inputs)
        #expect(FixtureNetwork.relativeError(a.outputs[0].tensor, b.outputs[0].tensor) == 0)
        #expect(FixtureNetwork.relativeError(a.outputs[0].tensor, dec.expected["image"]!) <= 1e-4)
        #expect(plan.summary.contains("entry decode-again"))
    }
}
