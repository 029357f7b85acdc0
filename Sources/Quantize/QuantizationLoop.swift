import Executor
import Foundation
import IR
import Passes
import Plan
import Tensors

/// `compile --calibrate`, `--auto-keep`, `--gptq`: the compile → measure → recompile loop around a
/// quantised plan already written at `output`. The f32 plan of the same graphs is written beside it
/// for the duration (and removed); the quantised plan is measured against it (`Calibration`); with
/// `compensation`, its int8 weights are rounded again with error compensation (`Compensation`) and
/// the plan recompiled; with `autoKeep`, the K layers with the lowest SNR are recompiled in f16 and
/// the error measured again.
public struct QuantizationLoop {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// GPTQ's settings (`compile --gptq-*`).
    public struct CompensationSettings {
        public var damping: Float
        public var activationOrder: Bool
        public var minSamples: Double
        public var memoryBudget: Int
        public init(damping: Float, activationOrder: Bool, minSamples: Double, memoryBudget: Int) {
            self.damping = damping
            self.activationOrder = activationOrder
            self.minSamples = minSamples
            self.memoryBudget = memoryBudget
        }
    }

    public var entries: [(name: String, graph: Graph)]
    public var constants: [(name: String, tensor: Tensor)]
    public var metadata: [String: String]?
    public var options: CompileOptions
    public var output: String
    /// Calibration input sets per entry point (seeded random unless `inputsDirectory`).
    public var count = 1
    public var inputsDirectory: String?
    public var threads = 1
    public var autoKeep = 0
    public var compensation: CompensationSettings?

    public init(entries: [(name: String, graph: Graph)], constants: [(name: String, tensor: Tensor)], metadata: [String: String]?,
                options: CompileOptions, output: String) {
        self.entries = entries
        self.constants = constants
        self.metadata = metadata
        self.options = options
        self.output = output
    }

    func compile(_ o: CompileOptions, to path: String) throws(Failure) {
        do {
            let compiled = try Compiler.compile(entries, options: o, constants: constants, metadata: metadata)
            try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: true)
        } catch { throw Failure(description: "compile: \(error)") }
    }

    /// Runs the loop; `log` gets progress, `report` the results (text, as `compile` prints them).
    public func run(log: (String) -> Void, report: (String) -> Void) throws(Failure) {
        guard !options.quantization.isIdentity else { throw Failure(description: "--calibrate compares a quantised plan with f32: give --weights-dtype or --quant-rule") }
        var options = self.options
        var f32Options = options
        f32Options.quantization = QuantizationPolicy()
        f32Options.bf16Activations = false
        let referencePath = output + ".calibration-f32.plan"
        defer { try? FileManager.default.removeItem(atPath: referencePath) }
        log("calibration: compiling the f32 plan of the same graphs (\(referencePath), removed afterwards)")
        try compile(f32Options, to: referencePath)
        func measure(perLayer: Bool) throws(Failure) -> Calibration {
            do {
                return try Calibration.run(quantized: try PlanFile(path: output), reference: try PlanFile(path: referencePath), count: count,
                                           directory: inputsDirectory, threads: threads, perLayer: perLayer, log: log)
            } catch { throw Failure(description: "calibration: \(error)") }
        }
        if let g = compensation {
            guard options.quantization.defaultFormat.isInt8 || options.quantization.rules.contains(where: { $0.format.isInt8 }) else {
                throw Failure(description: "--gptq rounds int8 weights: give --weights-dtype int8")
            }
            let plain = try measure(perLayer: false)
            let started = Date()
            let c: Compensation
            do {
                let reference = try PlanFile(path: referencePath)
                var sets: [String: [[String: Tensor]]] = [:]
                for e in reference.program.entryPoints { sets[e.name] = try Calibration.inputSets(e, count: count, directory: inputsDirectory) }
                c = try Compensation.run(quantized: try PlanFile(path: output), reference: reference, inputs: sets, threads: threads, damping: g.damping,
                                         activationOrder: g.activationOrder, minSamples: g.minSamples, memoryBudget: g.memoryBudget, log: log)
            } catch { throw Failure(description: "error compensation: \(error)") }
            options.int8Overrides = c.overrides
            log("error compensation: recompiling with \(c.compensated) compensated layers")
            try compile(options, to: output)
            var text = "error compensation (GPTQ, damping \(g.damping)\(g.activationOrder ? ", act-order" : "")): \(c.compensated) int8 layers compensated, \(c.plain) rounded plainly (fewer than "
                + "\(g.minSamples) × k calibration inputs), \(c.passes) pass\(c.passes == 1 ? "" : "es") over \(count) input set\(count == 1 ? "" : "s"), "
                + String(format: "%.1f s", Date().timeIntervalSince(started)) + "\n"
            for f in c.failed { text += "  \(f.name): rounded plainly: \(f.reason)\n" }
            for o in plain.outputs {
                text += "  entry \(o.entry), output \(o.output): relative L2 error before compensation " + String(format: "%.3e", o.relativeL2) + "\n"
            }
            report(text)
        }
        let first = try measure(perLayer: true)
        report(first.report(suggest: autoKeep > 0 ? autoKeep : 10))
        guard autoKeep > 0 else { return }
        let keep = first.worstWeights(autoKeep)
        var kept = options
        kept.quantization.rules = keep.map { QuantRule(pattern: $0, format: .f16) } + options.quantization.rules
        log("auto-keep: recompiling with \(keep.count) layers in f16")
        let summary: String
        do {
            let compiled = try Compiler.compile(entries, options: kept, constants: constants, metadata: metadata)
            try PlanWriter.write(path: output, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: true)
            summary = compiled.report
        } catch { throw Failure(description: "compile: \(error)") }
        let second = try measure(perLayer: false)
        let weightsLine = summary.split(separator: "\n").first { $0.hasPrefix("weights:") } ?? ""
        var text = "auto-keep: \(keep.count) layers kept in f16; \(weightsLine)\n"
        for o in second.outputs {
            let before = first.outputs.first { $0.entry == o.entry && $0.output == o.output }?.relativeL2 ?? .nan
            text += "  entry \(o.entry), output \(o.output): relative L2 error " + String(format: "%.3e (was %.3e)", o.relativeL2, before) + "\n"
        }
        report(text)
    }
}
