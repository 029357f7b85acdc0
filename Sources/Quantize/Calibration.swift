import Kernels
import Executor
import Foundation
import Importers
import Plan
import Tensors

/// `compile --calibrate`: a quantised plan against the f32 plan of the same graphs, on the same
/// inputs. Per layer (convolution or linear with a quantised weight): its output with the quantised
/// weight against its f32 output, both on the f32 plan's activations (the error this layer adds by
/// itself), as an SNR in dB; per entry point: the end-to-end relative L2 error of every output.
public struct Calibration {
    public struct Layer {
        public var entry: String
        public var name: String
        public var weight: String
        public var noise = 0.0
        public var signal = 0.0
        public var snrDB: Double { noise == 0 ? .infinity : 10 * log10(signal / noise) }
    }

    public var layers: [Layer] = []
    /// (entry, output, relative L2, max relative error) over all inputs.
    public var outputs: [(entry: String, output: String, relativeL2: Double, maxRelative: Double)] = []
    public var inputsDescription = ""

    /// Seeded inputs of an entry's types: scalars named `t` uniform in [0, 1000) (a timestep),
    /// other scalars 1 (scales), integer inputs zeros, the rest uniform in [−1, 1].
    public static func randomInputs(_ e: EntryPoint, seed: UInt64) -> [String: Tensor] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
        func next() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53)
        }
        var feed: [String: Tensor] = [:]
        for b in e.inputs {
            if !b.dtype.isFloatingPoint { feed[b.name] = Tensor.zeros(b.dtype, b.shape); continue }
            let values: [Float]
            if b.shape.count == 1 {
                values = [b.name == "t" ? Float((next() * 1000).rounded(.down)) : 1]
            } else {
                values = (0..<b.shape.count).map { _ in Float(2 * next() - 1) }
            }
            feed[b.name] = Tensor(values, shape: b.shape).converted(to: b.dtype)
        }
        return feed
    }

    /// Input sets for `entry`: every .safetensors in `directory` holding all of its inputs, or
    /// `count` seeded random sets.
    public static func inputSets(_ e: EntryPoint, count: Int, directory: String?) throws -> [[String: Tensor]] {
        guard let directory else { return (0..<count).map { randomInputs(e, seed: UInt64($0 + 1)) } }
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
        var sets: [[String: Tensor]] = []
        for f in files {
            let c = try Checkpoint.open(directory + "/" + f)
            var feed: [String: Tensor] = [:]
            for t in c.tensors where e.inputs.contains(where: { $0.name == t.name }) { feed[t.name] = t.load() }
            if feed.count == e.inputs.count { sets.append(feed) }
            if sets.count == count { break }
        }
        return sets
    }

    /// Runs both plans over every entry point.
    public static func run(quantized: PlanFile, reference: PlanFile, count: Int, directory: String?, threads: Int, perLayer: Bool,
                    log: (String) -> Void) throws -> Calibration {
        var c = Calibration()
        c.inputsDescription = directory.map { "the inputs in \($0)" } ?? "\(count) seeded random input set\(count == 1 ? "" : "s")"
        let q = Executor(plan: quantized, threads: threads)
        let f = Executor(plan: reference, threads: threads)
        final class Sink: @unchecked Sendable { var layers: [Int: (String, Double, Double)] = [:] }
        for e in reference.program.entryPoints {
            let sets = try inputSets(e, count: count, directory: directory)
            if sets.isEmpty { log("calibration: no inputs for entry \(e.name) in \(directory ?? "")"); continue }
            let sink = Sink()
            var noise: [String: Double] = [:], signal: [String: Double] = [:], worst: [String: Double] = [:]
            for (i, feed) in sets.enumerated() {
                log("calibrating \(e.name): input set \(i + 1)/\(sets.count)")
                var options = RunOptions()
                if perLayer {
                    options.observer = ShadowComparison(shadow: q) { index, name, n, s in
                        let old = sink.layers[index] ?? (name, 0, 0)
                        sink.layers[index] = (name, old.1 + n, old.2 + s)
                    }
                }
                let exact = try f.run(entry: e.name, inputs: feed, options: options)
                let approx = try q.run(entry: e.name, inputs: feed)
                for ((name, a), (_, b)) in zip(approx.outputs, exact.outputs) {
                    let e2 = Quantization.error(a, b)
                    noise[name, default: 0] += e2.relativeL2 * e2.relativeL2 * sumSquares(b)
                    signal[name, default: 0] += sumSquares(b)
                    worst[name] = max(worst[name] ?? 0, Executor.relativeError(a, b))
                }
            }
            for b in e.outputs {
                c.outputs.append((e.name, b.name, ((noise[b.name] ?? 0) / max(signal[b.name] ?? 1, 1e-300)).squareRoot(), worst[b.name] ?? 0))
            }
            for (index, (name, n, s)) in sink.layers.sorted(by: { $0.key < $1.key }) {
                guard case .weight(let w) = quantized.program.entry(e.name)!.instructions[index].operands[1] else { continue }
                c.layers.append(Layer(entry: e.name, name: name, weight: quantized.program.weights[w].name, noise: n, signal: s))
            }
        }
        return c
    }

    public static func sumSquares(_ t: Tensor) -> Double {
        t.converted(to: .f32).withElements(as: Float.self) { $0.reduce(0) { $0 + Double($1) * Double($1) } }
    }

    /// The weights of the `k` layers with the lowest SNR (distinct weights).
    public func worstWeights(_ k: Int) -> [String] {
        var seen = Set<String>(), out: [String] = []
        for l in layers.sorted(by: { $0.snrDB < $1.snrDB }) where out.count < k && seen.insert(l.weight).inserted { out.append(l.weight) }
        return out
    }

    public func report(suggest: Int) -> String {
        var s = "calibration against the f32 plan of the same graphs, on \(inputsDescription):\n"
        for o in outputs {
            s += "  entry \(o.entry), output \(o.output): relative L2 error " + String(format: "%.3e", o.relativeL2)
                + " (max |Δ| / max |f32| " + String(format: "%.3e", o.maxRelative) + ")\n"
        }
        if !layers.isEmpty {
            s += "per-layer SNR (the layer's output with its quantised weight against f32, both on f32 activations), lowest first:\n"
            s += "  SNR dB   rel. L2    entry      layer\n"
            for l in layers.sorted(by: { $0.snrDB < $1.snrDB }) {
                let rel = l.signal > 0 ? (l.noise / l.signal).squareRoot() : 0
                s += String(format: "  %6.2f  %9.3e  ", l.snrDB.isFinite ? l.snrDB : 999.99, rel) + l.entry.padding(toLength: 9, withPad: " ", startingAt: 0) + "  " + l.name + "\n"
            }
            let worst = worstWeights(suggest)
            if !worst.isEmpty {
                s += "the layers whose move to f16 would help most (lowest SNR; `--auto-keep \(worst.count)` keeps them in f16):\n"
                for w in worst { s += "  --quant-rule '\(w)=f16'\n" }
            }
        }
        return s
    }
}
