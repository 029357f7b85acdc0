import Foundation
import IR
import Plan
import Tensors

/// A plan ready to write: the program, the weight tensors by index, and the report.
public struct CompiledPlan {
    public var program: Program
    /// Tensors of `program.weights`, same indices (index 0 is nil).
    public var weights: [Tensor?]
    /// The report printed by `compile` and stored as the plan's summary section.
    public var report: String
    public var entryReports: [Lowering.EntryReport]
    public var passRecords: [String: [PassRecord]]
}

/// Graphs in, plan out: the pass pipeline on each entry point's graph, then lowering (kernels,
/// weights shared by key across entries, one arena per entry planned and checked).
public enum Compiler {
    public static func compile(_ entries: [(name: String, graph: Graph)], options: CompileOptions,
                               constants: [(name: String, tensor: Tensor)] = [], metadata: [String: String]? = nil,
                               log: (String) -> Void = { _ in }) throws -> CompiledPlan {
        guard !entries.isEmpty else { throw IRError(node: "", "nothing to compile: no entry point") }
        var names = Set<String>()
        for e in entries where !names.insert(e.name).inserted { throw IRError(node: "", "two entry points are named '\(e.name)'") }
        var lowering = Lowering()
        var records: [String: [PassRecord]] = [:]
        var nodeCounts: [String: (Int, Int)] = [:]
        for (name, graph) in entries {
            var g = graph
            let before = g.nodes.count
            log("\(name): \(before) nodes")
            records[name] = try PassPipeline.run(&g, options: options) { log("  " + $0) }
            nodeCounts[name] = (before, g.nodes.count)
            try lowering.add(entry: name, graph: g)
            let r = lowering.reports.last!
            log("  lowered: \(r.instructions) instructions, arena \(bytes(r.arenaBytes))")
        }
        for (name, t) in constants { lowering.addNamedConstant(name, t) }
        let f32WeightBytes = lowering.weightBytes
        var quantized: [Lowering.QuantizedRecord] = []
        if !options.quantization.isIdentity {
            log("quantising convolution and linear weights")
            quantized = lowering.quantizeGemmWeights(options.quantization, keepEnds: options.keepFirstAndLast, overrides: options.int8Overrides) { n, body in
                nonisolated(unsafe) let work = body
                DispatchQueue.concurrentPerform(iterations: n) { work($0) }
            }
        }
        let converted = quantized.filter { $0.format != .f32 }.count
        // Winograd for the 3×3 convolutions (a plan pass: --disable-pass winograd), F(4,3) for f32
        // weights (--disable-pass winograd-f43 keeps F(2,3)) from 64×64 outputs, or from 32×32 with
        // transformed kernels of at most 16 MB (one convolution, 2 threads, Zen 5: 320 ch at 64²
        // 25 → 13 ms, 512 at 128² 190 → 110 ms, but 640 at 32² 17 → 46 ms; RRDBNet ×4 at 128² → 512²
        // 3.50 → 2.63 s), F(2,3) otherwise:
        // from 32×32 outputs, or 16×16 with bf16 weights (there, 7–35 % faster a convolution, for
        // transformed weights 16/9 of the kernel's: +0.3 GB for the denoise step's; f32's add 0.75 GB
        // for 5 % of the step, taken where `options.f32WinogradMinimumPlane` says: `compile` on
        // processors without AVX-512) or quantised ones (transformed per call as they are used, so no memory
        // for transformed kernels; the 16×16 level took ~90 ms off the int8-block16 step).
        var winograd = 0
        if let f32Plane = options.f32WinogradPlane {
            winograd = lowering.markWinograd(minimumChannels: 32, minimumPlane: f32Plane, minimumPlaneBF16: 16 * 16,
                                             minimumPlaneQuantized: 16 * 16,
                                             int8Activations: options.int8Activations,
                                             f32Tile4Plane: options.disabled.contains("winograd-f43") ? nil : 64 * 64, f32Tile4SmallPlane: 32 * 32)
        }
        var report = ""
        func line(_ s: String) { report += s + "\n" }
        if let metadata, !metadata.isEmpty {
            line("model: " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
        }
        for r in lowering.reports {
            line("entry \(r.name)")
            let (before, after) = nodeCounts[r.name]!
            line("  nodes: \(before) before passes, \(after) after")
            for p in records[r.name]! where p.changes > 0 || p.nodesBefore != p.nodesAfter {
                line("    \(p.name.padding(toLength: 34, withPad: " ", startingAt: 0)) \(p.changes) changes, \(p.nodesBefore) → \(p.nodesAfter) nodes")
            }
            for d in options.disabled.sorted() { line("    \(d.padding(toLength: 34, withPad: " ", startingAt: 0)) disabled") }
            let kinds = r.kernels.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            line("  kernels: \(r.instructions) instructions (\(kinds))")
            line(String(format: "  FLOPs: %.3g (%.2f GFLOP)", r.flops, r.flops / 1e9))
            line("  arena: \(bytes(r.arenaBytes)) (naive sum of intermediates \(bytes(r.naiveBytes)), largest tensor \(bytes(r.largestTensorBytes)), "
                 + String(format: "%.1f%% of naive", r.naiveBytes > 0 ? 100 * Double(r.arenaBytes) / Double(r.naiveBytes) : 0)
                 + ", \(r.inPlace) in place)")
        }
        let weightCount = lowering.weights.count - 1
        line("weights: \(weightCount) tensors, \(bytes(lowering.weightBytes)) (shared by all entry points)"
             + (converted > 0 ? String(format: ", %.1f%% of their f32 size", 100 * Double(lowering.weightBytes) / Double(max(1, f32WeightBytes))) : ""))
        if !quantized.isEmpty { report += quantizationReport(quantized, rules: options.quantization.rules) }
        let tile4 = lowering.entries.flatMap(\.instructions).filter { if case .conv2d(let c) = $0.kernel { return c.winogradTile == 4 } else { return false } }.count
        line("winograd: \(options.disabled.contains("winograd") ? "disabled" : "\(winograd - tile4) convolutions as F(2,3), \(tile4) as F(4,3)")")
        line("arena for all entry points: \(bytes(lowering.entries.map(\.arenaBytes).max() ?? 0))")
        let program = Program(entryPoints: lowering.entries, weights: lowering.weights, activations: options.int8Activations ? .int8 : options.bf16Activations ? .bf16 : .f32, report: report, metadata: metadata)
        return CompiledPlan(program: program, weights: lowering.weightData, report: report, entryReports: lowering.reports, passRecords: records)
    }

    /// The quantisation section of the report: totals per format, then every convolution and linear
    /// weight with its format, the reason, its size and its error against f32.
    static func quantizationReport(_ records: [Lowering.QuantizedRecord], rules: [QuantRule] = []) -> String {
        var out = "quantisation of convolution and linear weights (int8: per output channel; int8-block32, int8-block16: and per block of 32, 16):\n"
        for r in rules {
            let n = records.filter { $0.reason == "rule \(r)" }.count
            out += "  rule \(r): \(n) weight\(n == 1 ? "" : "s")" + (n == 0 ? " (matches no convolution or linear weight not matched by an earlier rule)" : "") + "\n"
        }
        for f in WeightFormat.allCases {
            let r = records.filter { $0.format == f }
            guard !r.isEmpty else { continue }
            let f32 = r.reduce(0) { $0 + $1.f32Bytes }, stored = r.reduce(0) { $0 + $1.storedBytes }
            let worst = r.map(\.relativeL2).max() ?? 0
            out += "  \(f.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)) \(r.count) weights, \(bytes(stored)) for \(bytes(f32)) in f32 ("
                + String(format: "%.1f%%", 100 * Double(stored) / Double(max(1, f32))) + (f == .f32 ? ")" : String(format: "), worst relative L2 error %.2e", worst)) + "\n"
        }
        out += "  weight                                                            format         rel. L2     max abs    SNR dB  why\n"
        for r in records {
            let name = r.name.count > 64 ? "…" + r.name.suffix(63) : r.name
            out += "  " + name.padding(toLength: 64, withPad: " ", startingAt: 0) + "  " + r.format.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)
                + String(format: " %10.3e  %10.3e  %8.2f  ", r.relativeL2, r.maxAbs, r.snrDB.isFinite ? r.snrDB : 999.99) + r.reason + "\n"
        }
        return out
    }

    /// Byte counts as in reports: exact bytes and a readable size.
    static func bytes(_ n: Int) -> String {
        let units = ["B", "KB", "MB", "GB"]
        var v = Double(n), u = 0
        while v >= 1000, u < units.count - 1 { v /= 1000; u += 1 }
        return u == 0 ? "\(n) B" : String(format: "%.2f %@", v, units[u]) + " (\(n) B)"
    }
}
