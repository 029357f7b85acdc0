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
        peak minus the weights. Inputs come from --inputs (tensors named like the entry's inputs, \
        every one of them, an input `NAME.1` that PyTorch's exporter renamed also from `NAME`; \
        tensors named `ref.OUTPUT` there are compared with the outputs) or, without it, are seeded \
        random values of the entry's types (zeros for integer inputs).

        The kernel set (--isa) and the OpenBLAS kernel in use (OPENBLAS_CORETYPE selects it) are \
        printed. --peer runs the same network on a peer in a separate process after ours, with the \
        same inputs, thread count, warm-up and runs, and prints the ratio of the medians (with \
        --rounds N, ours and the peers take turns N times and the ratio is the median of the \
        rounds' ratios, which the machine's drifting speed disturbs less): \
        onnxruntime (Tools/bench/ort_bench.py on --peer-dir/bench-NETWORK.onnx), onnxruntime-int8 \
        (the same model through onnxruntime's dynamic int8 quantisation with u8 weights, its fast \
        path here, made once as bench-NETWORK.int8u8.onnx; `ort_bench.py --int8 --int8-weights s8` \
        runs quantize_dynamic's default s8 weights, whose ConvInteger is about 3x slower), torch and \
        torch-bf16 (Tools/bench/torch_bench.py, the network built by Tools/bench/export_full_onnx.py \
        from --peer-dir's checkpoints), ncnn (Tools/bench/ncnn_bench.py on --peer-dir/NETWORK.param, \
        ncnn's CPU runtime in f32). --peer-model names the peer's model file instead (an .onnx for \
        onnxruntime, a .param for ncnn). They need a Python with those packages (--python, default \
        ~/venv/bin/python); Tools/bench/export_full_onnx.py writes the exports and the inputs.
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

    @OptionGroup(title: "Threads")
    var threading: ThreadOptions
    var threads: Int { threading.threads }

    @Option(help: traceHelp)
    var trace: String?

    @Option(help: "Run the same network on a peer too (repeatable): onnxruntime, onnxruntime-int8 (its dynamic int8 quantisation), torch, torch-bf16, ncnn.")
    var peer: [Peer] = []

    @Option(help: "The peers' directory: bench-NETWORK.onnx, the synthetic checkpoints (default: the plan's directory).")
    var peerDir: String?

    @Option(name: .customLong("peer-model"), help: "A peer's model file, by extension (repeatable: an .onnx for onnxruntime, a .param for ncnn), instead of the one --peer-dir names.")
    var peerModel: [String] = []

    @Option(help: "The network the peers run (default: the entry's name; DiffBIR plan entries map to their networks).")
    var peerNetwork: String?

    @Option(help: "The Python interpreter with onnxruntime / torch (default: ~/venv/bin/python).")
    var python: String?

    @Option(help: "Rounds of ours then each peer, interleaved (the machine's speed drifts: each round's ratio compares runs minutes apart at most); the ratio printed is the median of the rounds' ratios.")
    var rounds: Int = 1

    @Flag(help: "Print the time per kernel kind and the slowest instructions of the last run (on stderr).")
    var profile = false

    @Option(help: isaHelp)
    var isa: ISA?

    @OptionGroup(title: "Output")
    var report: ReportOptions
    var json: Bool { report.json }

    func validate() throws {
        if runs < 1 || warmup < 0 || rounds < 1 {
            throw ValidationError("--runs and --rounds must be at least 1, --warmup at least 0")
        }
    }

    static func peakRSSBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
    }

    /// The peer network of an entry: its name, or for a DiffBIR plan's entries the network behind them.
    static func network(of entry: String, metadata: [String: String]?) -> String {
        switch entry {
        case "stage1": return metadata.flatMap { try? DiffBIRPlanMetadata(table: $0) }?.cleaner.rawValue ?? "swinir"
        case "encode": return "vae-encoder"
        case "decode": return "vae-decoder"
        case "text": return "clip-text"
        default: return entry
        }
    }

    /// ‖a − b‖₂ / ‖b‖₂
    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return .nan }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func relativeL2(_ a: Tensor, _ b: Tensor) -> Double {
        let x = a.converted(to: .f64).withElements(as: Double.self) { Array($0) }
        let y = b.converted(to: .f64).withElements(as: Double.self) { Array($0) }
        guard x.count == y.count else { return .infinity }
        var d = 0.0, n = 0.0
        for i in 0..<x.count { d += (x[i] - y[i]) * (x[i] - y[i]); n += y[i] * y[i] }
        return (d / max(n, 1e-300)).squareRoot()
    }

    /// Runs a peer script and returns its JSON result.
    func runPeer(_ peer: Peer, network: String, inputs: String, planDirectory: String) throws -> [String: Any] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let py = python ?? (NSHomeDirectory() + "/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: py) else {
            throw ToolError("--peer \(peer): no Python at \(py) (give --python, with onnxruntime/torch installed)")
        }
        let dir = peerDir ?? planDirectory
        var arguments: [String]
        switch peer {
        case .ncnn:
            let model = peerModel.first { $0.hasSuffix(".param") } ?? dir + "/\(network).param"
            guard FileManager.default.fileExists(atPath: model) else {
                throw ToolError("--peer ncnn: no \(model) (give the ncnn model with --peer-model X.param)")
            }
            arguments = [root.appendingPathComponent("Tools/bench/ncnn_bench.py").path, model, inputs]
        case .onnxruntime, .onnxruntimeInt8:
            let model = peerModel.first { $0.hasSuffix(".onnx") } ?? dir + "/bench-\(network).onnx"
            guard FileManager.default.fileExists(atPath: model) else {
                throw ToolError("--peer \(peer): no \(model) (Tools/bench/export_full_onnx.py \(dir) \(network) makes it)")
            }
            arguments = [root.appendingPathComponent("Tools/bench/ort_bench.py").path, model, inputs]
            if peer == .onnxruntimeInt8 { arguments.append("--int8") }
        case .torch, .torchBF16:
            arguments = [root.appendingPathComponent("Tools/bench/torch_bench.py").path, dir, network, inputs]
            if peer == .torchBF16 { arguments.append("--bf16") }
        }
        arguments += ["--threads", "\(threads)", "--runs", "\(runs)", "--warmup", "\(warmup)", "--json"]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: py)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw ToolError("--peer \(peer): \(py) \(arguments.joined(separator: " ")) failed (exit \(process.terminationStatus))")
        }
        return object
    }

    func run() throws {
        let file: PlanFile
        do { file = try PlanFile(path: plan) } catch { throw ToolError(error.description) }
        let names = file.program.entryPoints.map(\.name)
        if let entry, file.program.entry(entry) == nil {
            throw ToolError("\(plan): no entry point '\(entry)' (\(names.joined(separator: ", ")))")
        }
        if !peer.isEmpty && inputs == nil { throw ToolError("--peer needs --inputs (the same inputs for both; Tools/bench/export_full_onnx.py writes them)") }
        let executor = Executor(plan: file, threads: threads, isa: try kernelSet(isa))
        if let note = CPU.precisionNote(file.program.activations, isa: executor.gemm.isa), !report.quiet { printError("note: \(plan): \(note)") }
        if trace != nil { executor.trace = TraceRecorder() }
        defer { if let trace, let recorder = executor.trace { try? writeTrace(recorder, to: trace, quiet: json || report.quiet) } }
        var results: [JSONValue] = []
        for name in entry.map({ [$0] }) ?? names {
            results.append(try bench(entry: name, file: file, executor: executor))
        }
        if json {
            print(JSONValue.object([("plan", .string(plan)), ("threads", .integer(Int64(threads))), ("kernels", .string(executor.gemm.isa.rawValue)),
                                    ("cpu", .string(CPU.summary)), ("openblas_core", .string(BLAS.coreName)), ("entries", .array(results))]).serialized)
        }
    }

    func bench(entry name: String, file: PlanFile, executor: Executor) throws -> JSONValue {
        let e = file.program.entry(name)!
        var feed: [String: Tensor] = [:]
        var references: [String: Tensor] = [:]
        if let inputs {
            let c = try Checkpoint.open(inputs)
            var given: [String: TensorEntry] = [:]
            for t in c.tensors {
                if t.name.hasPrefix("ref.") { references[String(t.name.dropFirst(4))] = t.load() } else { given[t.name] = t }
            }
            for b in e.inputs {
                // PyTorch's TorchScript exporter renames an input that shares its name with an output
                // ("image" → "image.1"): such an input is fed from the tensor of its first name.
                let base = b.name.lastIndex(of: ".").flatMap { dot in
                    b.name[b.name.index(after: dot)...].allSatisfy(\.isNumber) && dot > b.name.startIndex ? String(b.name[..<dot]) : nil
                }
                guard let t = given[b.name] ?? base.flatMap({ given[$0] }) else {
                    throw ToolError("\(inputs) has no tensor '\(b.name)' for entry \(name)'s input (it has: \(given.keys.sorted().joined(separator: ", ")))")
                }
                feed[b.name] = t.load()
            }
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for b in e.inputs where feed[b.name] == nil {
            if b.dtype.isFloatingPoint {
                let values = (0..<b.shape.count).map { _ -> Float in
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
                }
                feed[b.name] = Tensor(values, shape: b.shape)
            } else {
                feed[b.name] = Tensor.zeros(b.dtype, b.shape)
            }
        }
        var times: [Double] = []
        var last: RunResult?
        /// The very first run (warm-up or not): it packs the weights the plan does not hold packed.
        var firstRun: Double?
        /// Our timed runs (after the warm-up, first round only).
        func timeOurs(round: Int) throws -> [Double] {
            var times: [Double] = []
            let total = (round == 0 ? warmup : 0) + runs
            for i in 0..<total {
                let r: RunResult
                var options = RunOptions()
                let warming = i < total - runs
                options.profile = profile && round == rounds - 1 && i == total - 1
                options.profileInstructions = 400
                do { r = try executor.run(entry: name, inputs: feed, options: options) } catch { throw ToolError("\(error)") }
                if let p = r.profile { printError(p.formatted) }
                if !warming { times.append(r.seconds) }
                if firstRun == nil { firstRun = r.seconds }
                last = r
                if !json && !report.quiet {
                    let label = rounds > 1 ? "round \(round + 1) " : ""
                    printError(String(format: "%@ %@%@ %d: %.3f s", name, label, warming ? "warm-up" : "run", warming ? i + 1 : i - (total - runs) + 1, r.seconds))
                }
            }
            return times
        }
        let network = peerNetwork ?? Self.network(of: name, metadata: file.program.metadata)
        var roundMedians: [Double] = []
        var peerRounds: [Peer: [[String: Any]]] = [:]
        for round in 0..<rounds {
            let t = try timeOurs(round: round)
            times += t
            roundMedians.append(Self.median(t))
            for p in peer {
                peerRounds[p, default: []].append(try runPeer(p, network: network, inputs: inputs!, planDirectory: FilePaths.directory(of: plan)))
            }
        }
        if let f = last?.fallbacks, !f.isEmpty {
            printError("note: \(name): reference kernels ran (no fast kernel for these with --isa \(executor.gemm.isa)): "
                       + f.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        let sorted = times.sorted()
        let median = Self.median(times)
        let peak = Self.peakRSSBytes()
        let weightBytes = file.program.weights.reduce(0) { $0 + $1.byteCount }
        var errors: [(String, Double, Double)] = []
        for (k, t) in last!.outputs {
            if let ref = references[k] { errors.append((k, Executor.relativeError(t, ref), Self.relativeL2(t, ref))) }
        }
        var fields: [(String, JSONValue)] = [
            ("entry", .string(name)), ("times_s", .array(times.map { .number($0) })),
            ("median_s", .number(median)), ("min_s", .number(sorted[0])), ("max_s", .number(sorted.last!)), ("peak_rss_bytes", .integer(Int64(peak))),
            ("weight_bytes", .integer(Int64(weightBytes))), ("arena_bytes", .integer(Int64(e.arenaBytes))),
            ("peak_rss_minus_weights_bytes", .integer(Int64(peak - weightBytes))),
            ("first_run_s", .number(firstRun ?? .nan)), ("packed_from_plan", .integer(Int64(executor.packedFromPlan))),
            ("packed_at_first_use", .integer(Int64(executor.packedHere))),
            ("relative_error", .object(errors.map { ($0.0, .number($0.1)) })),
            ("relative_l2_error", .object(errors.map { ($0.0, .number($0.2)) })),
        ]
        if !json {
            print("\(plan) entry \(name): \(threads) threads, kernels \(executor.gemm.isa) (\(CPU.summary)), OpenBLAS \(BLAS.coreName), \(runs) runs after \(warmup) warm-up")
            print("times: " + times.map { String(format: "%.3f", $0) }.joined(separator: " ")
                  + String(format: " s; median %.3f s, min %.3f s, max %.3f s", median, sorted[0], sorted.last!))
            print(String(format: "first run %.3f s; f32/bf16 weights packed: %d from the plan, %d at first use", firstRun ?? .nan,
                         executor.packedFromPlan, executor.packedHere))
            print("peak RSS \(formatBytes(peak)); weights \(formatBytes(weightBytes)); peak RSS minus weights \(formatBytes(peak - weightBytes)); arena \(formatBytes(e.arenaBytes))")
            for (k, err, l2) in errors { print(String(format: "%@ vs ref.%@: relative error %.2e (max), %.2e (L2)", k, k, err, l2)) }
        }
        var peers: [(String, JSONValue)] = []
        for p in peer {
            let rs = peerRounds[p] ?? []
            let medians = rs.map { $0["median_s"] as? Double ?? .nan }, mins = rs.map { $0["min_s"] as? Double ?? .nan }
            let theirs = Self.median(medians)
            let ratios = zip(roundMedians, medians).map { $0 / $1 }
            let ratio = rounds > 1 ? Self.median(ratios) : median / theirs
            let peerPeak = rs.map { $0["peak_rss_bytes"] as? Int ?? 0 }.max() ?? 0
            let r = rs.last ?? [:]
            var object: [(String, JSONValue)] = [("median_s", .number(theirs)), ("min_s", .number(mins.min() ?? .nan)),
                                                 ("max_s", .number(r["max_s"] as? Double ?? .nan)), ("peak_rss_bytes", .integer(Int64(peerPeak))),
                                                 ("ratio", .number(ratio)),
                                                 ("relative_error", .number((r["relative_error"] as? [String: Double])?.values.first ?? .nan)),
                                                 ("relative_l2_error", .number((r["relative_l2_error"] as? [String: Double])?.values.first ?? .nan))]
            if rounds > 1 {
                object.append(("rounds", .array(zip(roundMedians, medians).map { .object([("ours_median_s", .number($0.0)), ("median_s", .number($0.1)),
                                                                                            ("ratio", .number($0.0 / $0.1))]) })))
            }
            peers.append((p.rawValue, .object(object)))
            if !json {
                if rounds > 1 {
                    for (i, (o, t)) in zip(roundMedians, medians).enumerated() {
                        print(String(format: "round %d: ours median %.3f s, %@ median %.3f s: %.2f×", i + 1, o, p.rawValue, t, o / t))
                    }
                }
                let how = rounds > 1 ? String(format: "median of %d rounds' ratios", rounds) : "ratio of the medians"
                print(String(format: "peer %@ (%@): median %.3f s, min %.3f s, peak RSS %@; ours / theirs = %.2f× (%@)", p.rawValue, network, theirs,
                             mins.min() ?? .nan, formatBytes(peerPeak), ratio, how))
            }
        }
        if !peers.isEmpty { fields.append(("peers", .object(peers))) }
        return .object(fields)
    }
}

/// `--peer`: the engines `bench` runs the same network on.
enum Peer: String, ExpressibleByArgument, CaseIterable {
    case onnxruntime, onnxruntimeInt8 = "onnxruntime-int8", torch, torchBF16 = "torch-bf16", ncnn
}
