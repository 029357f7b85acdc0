import ArgumentParser
import Executor
import Foundation
import Importers
import Kernels
import Plan
import Tensors

#if canImport(Glibc)
import Glibc
#endif

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time an entry point of a plan and measure the process's peak memory.",
        discussion: """
        Runs the entry point --warmup times untimed, then --runs times timed, and prints each time, \
        the median and the minimum, the process's peak resident set size (getrusage's ru_maxrss: \
        weights mapped and touched, the arena, scratch, the program), the plan's weight bytes and the \
        peak minus the weights. Inputs come from --inputs (tensors named like the entry's inputs; \
        tensors named `ref.OUTPUT` there are compared with the outputs) or, without it, are seeded \
        random values of the entry's types (zeros for integer inputs).

        The OpenBLAS kernel in use is printed (OPENBLAS_CORETYPE selects it); compare with a peer \
        in the same session, on the same thread count (Tools/bench/plan-vs-onnxruntime.sh).
        """
    )

    @Option(help: "The compiled plan.")
    var plan: String

    @Option(help: "The entry point (default: the plan's only one).")
    var entry: String?

    @Option(help: "Input tensors (.safetensors); default: seeded random values.")
    var inputs: String?

    @Option(help: "Timed runs.")
    var runs: Int = 5

    @Option(help: "Untimed runs before them.")
    var warmup: Int = 1

    @Option(help: "Threads for the kernels.")
    var threads: Int = 2

    @Flag(help: "Print the time per kernel kind and the slowest instructions of the last run (on stderr).")
    var profile = false

    @Option(help: isaHelp)
    var isa: ISA?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        if runs < 1 || warmup < 0 || threads < 1 { throw ValidationError("--runs and --threads must be at least 1, --warmup at least 0") }
    }

    static func peakRSSBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
    }

    func run() throws {
        let file: PlanFile
        do { file = try PlanFile(path: plan) } catch { throw ToolError(error.description) }
        let names = file.program.entryPoints.map(\.name)
        guard let name = entry ?? (names.count == 1 ? names[0] : nil), let e = file.program.entry(name) else {
            throw ToolError("\(plan): choose an entry point with --entry (\(names.joined(separator: ", ")))")
        }
        var feed: [String: Tensor] = [:]
        var references: [String: Tensor] = [:]
        if let inputs {
            let c = try Checkpoint.open(inputs)
            for t in c.tensors {
                if t.name.hasPrefix("ref.") { references[String(t.name.dropFirst(4))] = t.load() }
                else if e.inputs.contains(where: { $0.name == t.name }) { feed[t.name] = t.load() }
            }
        } else {
            var state: UInt64 = 0x9E3779B97F4A7C15
            for b in e.inputs {
                if b.dtype == .f32 {
                    let values = (0..<b.shape.count).map { _ -> Float in
                        state = state &* 6364136223846793005 &+ 1442695040888963407
                        return Float(Int64(bitPattern: state >> 11) % 1_000_000) / 1_000_000
                    }
                    feed[b.name] = Tensor(values, shape: b.shape)
                } else {
                    feed[b.name] = Tensor.zeros(b.dtype, b.shape)
                }
            }
        }
        let executor = Executor(plan: file, threads: threads, isa: try kernelSet(isa))
        var times: [Double] = []
        var last: RunResult?
        for i in 0..<(warmup + runs) {
            let r: RunResult
            var options = RunOptions()
            options.profile = profile && i == warmup + runs - 1
            options.profileInstructions = 400
            do { r = try executor.run(entry: name, inputs: feed, options: options) } catch { throw ToolError("\(error)") }
            if let p = r.profile { printError(p.formatted) }
            if i >= warmup { times.append(r.seconds) }
            last = r
            if !json { printError(String(format: "%@ %d: %.3f s", i < warmup ? "warm-up" : "run", i < warmup ? i + 1 : i - warmup + 1, r.seconds)) }
        }
        let sorted = times.sorted()
        let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        let peak = Self.peakRSSBytes()
        let weightBytes = file.program.weights.reduce(0) { $0 + $1.byteCount }
        var errors: [(String, Double)] = []
        for (k, t) in last!.outputs { if let ref = references[k] { errors.append((k, Executor.relativeError(t, ref))) } }
        if json {
            var fields: [(String, JSONValue)] = [
                ("plan", .string(plan)), ("entry", .string(name)), ("threads", .integer(Int64(threads))),
                ("openblas_core", .string(BLAS.coreName)), ("kernels", .string(executor.gemm.isa.rawValue)), ("times_s", .array(times.map { .number($0) })),
                ("median_s", .number(median)), ("min_s", .number(sorted[0])), ("peak_rss_bytes", .integer(Int64(peak))),
                ("weight_bytes", .integer(Int64(weightBytes))), ("arena_bytes", .integer(Int64(e.arenaBytes))),
                ("peak_rss_minus_weights_bytes", .integer(Int64(peak - weightBytes))),
            ]
            fields.append(("relative_error", .object(errors.map { ($0.0, .number($0.1)) })))
            print(JSONValue.object(fields).serialized)
            return
        }
        print("\(plan) entry \(name): \(threads) threads, kernels \(executor.gemm.isa), OpenBLAS \(BLAS.coreName), \(runs) runs after \(warmup) warm-up")
        print("times: " + times.map { String(format: "%.3f", $0) }.joined(separator: " ") + String(format: " s; median %.3f s, min %.3f s", median, sorted[0]))
        print("peak RSS \(formatBytes(peak)); weights \(formatBytes(weightBytes)); peak RSS minus weights \(formatBytes(peak - weightBytes)); arena \(formatBytes(e.arenaBytes))")
        for (k, err) in errors { print(String(format: "%@ vs ref.%@: relative error %.2e", k, k, err)) }
    }
}
