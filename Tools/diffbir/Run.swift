import ArgumentParser
import Compilation
import Foundation
import Importers
import IR
import ModelGraphs
import Passes
import Plan
import Executor
import Kernels
import Tensors

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a plan's entry point, or a model, on tensors: safetensors in, safetensors out.",
        discussion: """
        --plan PLAN runs an entry point of a compiled plan (see `diffbir compile`) with the fast \
        kernels: --entry names it (needed when the plan has several), --threads sets the threads, \
        --validate re-runs every instruction with the reference kernels on the same operands and \
        reports the first whose result differs by more than --tolerance (relative to the largest \
        reference value), --profile prints the time per kernel kind. Input shapes must be the ones \
        the plan was compiled for.

        --model takes a network name with --weights (the published checkpoints, any format), or an \
        ONNX file. Networks and their tensor names:
          swinir, bsrnet, scunet   image [N,3,H,W] in [0,1] -> image
          vae-encoder              image [N,3,H,W] in [-1,1] -> latent (posterior mean x 0.18215)
          vae-decoder              latent [N,4,h,w] -> image
          clip-text                tokens int64 [N,77] -> context
          unet                     x, t, context, control_0..control_12 (optional, zero when absent) -> out
          controlnet               x, t, hint, context -> control_0..control_12
          denoise                  x, t, hint, context, control_scale -> out
        Input shapes are taken from the inputs file. --config FILE.json changes the network's \
        configuration (the keys of DiffBIR's yaml, e.g. {"model_channels": 32}); loading is strict: \
        missing, unused and mis-shaped keys are errors, all listed.

        An ONNX model's inputs and outputs are named by its graph; graph inputs with symbolic \
        dimensions need --shape NAME=D1,D2,...

        The graph is static: inputs that decide shapes (axes, pads, target shapes, resize scales \
        or sizes) are constants at import. If the model takes them as inputs, give their values \
        with --const NAME=FILE (safetensors or TensorProto .pb), or put them in the inputs file.

        This version runs the graph with the reference kernels (plain double-precision loops): \
        exact and slow, the oracle the compiled executor is checked against. --fast runs \
        convolutions and matrix products on OpenBLAS (f32) and the rest with the reference kernels.
        """
    )

    @Option(help: "A compiled plan to run (see `diffbir compile`).")
    var plan: String?

    @Option(help: "The plan's entry point (default: its only one).")
    var entry: String?

    @Option(help: isaHelp)
    var isa: ISA?

    @OptionGroup(title: "Threads")
    var threading: ThreadOptions
    var threads: Int { threading.threads }

    @Option(help: traceHelp)
    var trace: String?

    @Flag(name: .customLong("validate"), help: "Check every instruction of the plan against the reference kernels; report the first divergence.")
    var validateKernels = false

    @Option(help: "Relative error --validate accepts.")
    var tolerance: Double = 1e-4

    @Flag(help: "Print the time per kernel kind.")
    var profile = false

    @Option(help: "The model: a network name (see above), an .onnx file or an ncnn .param file (its .bin beside it).")
    var model: String?

    @Option(parsing: .upToNextOption, help: "Checkpoints holding the network's weights (.safetensors, .pt, .pth, .ckpt).")
    var weights: [String] = []

    @Option(help: "The network's configuration as JSON (DiffBIR's yaml keys); default: DiffBIR's.")
    var config: String?

    @Option(help: "Input tensors (.safetensors), by graph input name.")
    var inputs: String

    @Option(name: .shortAndLong, help: "Output .safetensors file.")
    var output: String

    @Option(help: "Static shape for a graph input: NAME=D1,D2,... (repeatable).")
    var shape: [String] = []

    @Option(name: .customLong("const"), help: "Fix a graph input at import: NAME=FILE (repeatable).")
    var constants: [String] = []

    @OptionGroup(title: "Output")
    var out: OutputOptions
    var overwrite: Bool { out.overwrite }

    @Flag(help: "Run convolutions and matrix products on OpenBLAS instead of the reference kernels.")
    var fast = false

    func validate() throws {
        if (plan == nil) == (model == nil) { throw ValidationError("give either --plan PLAN or --model MODEL") }
        if plan == nil && (entry != nil || validateKernels || profile) { throw ValidationError("--entry, --validate and --profile are for --plan") }
        if !overwrite && FileManager.default.fileExists(atPath: output) { throw ValidationError("\(output) exists; pass --overwrite to replace it") }
    }

    func run() throws {
        let start = Date()
        let given = try Checkpoint.open(inputs)
        var tensors: [String: Tensor] = [:]
        for e in given.tensors { tensors[e.name] = e.load() }
        if let plan { return try runPlan(plan, tensors, start: start) }
        let model = model!
        var graph: Graph
        if let network = try builtinNetwork(model) {
            (graph, tensors) = try buildNetwork(network, tensors)
        } else {
            if !weights.isEmpty { throw ToolError("--weights is for a network name; an ONNX or ncnn model carries its weights") }
            graph = isNCNNParam(model) ? try importNCNN(model, shapes: parseShapes(shape)).graph : try importONNX(model, shapes: parseShapes(shape), constants: parseConstants(constants), available: tensors).graph
        }
        let names = graph.inputs.map { graph.values[$0].name }
        var feed: [String: Tensor] = [:]
        for name in names {
            guard let t = tensors[name] else { throw ToolError("\(inputs): no tensor for graph input '\(name)' (\(graph.values[graph.inputs[names.firstIndex(of: name)!]].type))") }
            feed[name] = t
        }
        let results: [String: Tensor]
        do {
            results = try Interpreter.run(graph, inputs: feed, evaluator: fast ? FastEvaluator() : ReferenceEvaluator())
        } catch { throw ToolError("\(model): \(error)") }
        let ordered = graph.outputs.map { ($0.name, results[$0.name]!) }
        try SafetensorsWriter.write(path: output, tensors: ordered, metadata: [("format", "pt")], overwrite: overwrite)
        let seconds = Date().timeIntervalSince(start)
        out.result("wrote \(output): " + ordered.map { "\($0.0) \($0.1.dtype)\($0.1.shape)" }.joined(separator: ", ")
                   + String(format: " (%d nodes, %.2f s)", graph.nodes.count, seconds),
                   json: .object([("output", .string(output)), ("outputs", Self.tensorsJSON(ordered)), ("nodes", .int(graph.nodes.count)),
                                  ("seconds", .seconds(seconds))]))
    }

    func runPlan(_ path: String, _ tensors: [String: Tensor], start: Date) throws {
        let file: PlanFile
        do { file = try PlanFile(path: path) } catch { throw ToolError(error.description) }
        let entries = file.program.entryPoints.map(\.name)
        guard let name = entry ?? (entries.count == 1 ? entries[0] : nil) else {
            throw ToolError("\(path) has \(entries.count) entry points (\(entries.joined(separator: ", "))): choose one with --entry")
        }
        let executor = Executor(plan: file, threads: threads, isa: try kernelSet(isa))
        if let note = CPU.precisionNote(file.program.activations, isa: executor.gemm.isa) { out.note("note: \(path): \(note)") }
        if trace != nil { executor.trace = TraceRecorder() }
        defer { if let trace, let recorder = executor.trace { try? writeTrace(recorder, to: trace, quiet: out.quiet) } }
        var options = RunOptions()
        options.validate = validateKernels
        options.tolerance = tolerance
        options.profile = profile
        let result: RunResult
        // The inputs file may hold more tensors (e.g. expected outputs): take the entry's inputs.
        let wanted = Set(file.program.entry(name)?.inputs.map(\.name) ?? [])
        do { result = try executor.run(entry: name, inputs: tensors.filter { wanted.contains($0.key) }, options: options) } catch { throw ToolError("\(inputs): \(error)") }
        try SafetensorsWriter.write(path: output, tensors: result.outputs.map { ($0.name, $0.tensor) }, metadata: [("format", "pt")], overwrite: overwrite)
        let instructions = file.program.entry(name)?.instructions.count ?? 0
        let total = Date().timeIntervalSince(start)
        var fields: [(String, JSONValue)] = [
            ("output", .string(output)), ("outputs", Self.tensorsJSON(result.outputs.map { ($0.name, $0.tensor) })), ("entry", .string(name)),
            ("instructions", .int(instructions)), ("arenaBytes", .int(executor.arenaBytes)), ("runSeconds", .seconds(result.seconds)),
            ("totalSeconds", .seconds(total)), ("threads", .int(threads)), ("kernels", .string(executor.gemm.isa.rawValue)),
            ("openblas", .string(BLAS.coreName)), ("processor", .string(CPU.summary)),
            ("packedFromPlan", .int(executor.packedFromPlan)), ("packedAtFirstUse", .int(executor.packedHere)),
        ]
        if let v = result.validation {
            fields.append(("validation", .object([("instructions", .int(v.instructions)), ("tolerance", .number(tolerance)),
                                                  ("firstDivergence", v.first.map { .string("\($0.index) \($0.name)") } ?? .null)])))
        }
        out.result("wrote \(output): " + result.outputs.map { "\($0.name) \($0.tensor.dtype)\($0.tensor.shape)" }.joined(separator: ", ")
                   + String(format: " (entry %@, %d instructions, arena %@, run %.3f s, total %.2f s, %d threads, kernels %@, OpenBLAS %@)",
                            name, instructions, formatBytes(executor.arenaBytes), result.seconds,
                            total, threads, executor.gemm.isa.rawValue, BLAS.coreName),
                   json: .object(fields))
        if out.json {
            if let v = result.validation, v.first != nil { throw ExitCode(2) }
            return
        }
        if !result.fallbacks.isEmpty {
            print("reference kernels ran: " + result.fallbacks.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if let p = result.profile { print(p.formatted) }
        if let v = result.validation {
            let worst = v.worstByKind.sorted { $0.value > $1.value }.map { String(format: "%@ %.2e", $0.key, $0.value) }.joined(separator: ", ")
            if let d = v.first {
                print(String(format: "validate: instruction %d (%@, %@) diverges: relative error %.3e > %.1e", d.index, d.name, d.kind, d.relativeError, tolerance))
                print("validate: worst relative error by kind: " + worst)
                throw ExitCode(2)
            }
            print(String(format: "validate: all %d instructions within %.1e of the reference kernels; worst by kind: ", v.instructions, tolerance) + worst)
        }
    }

    /// Output tensors as JSON: name, dtype, shape.
    static func tensorsJSON(_ tensors: [(String, Tensor)]) -> JSONValue {
        .array(tensors.map { name, t in
            .object([("name", .string(name)), ("dtype", .string(t.dtype.rawValue)), ("shape", .array(t.shape.dims.map { .int($0) }))])
        })
    }

    /// Builds a network for the shapes of the given tensors and binds its weights.
    func buildNetwork(_ network: Network, _ given: [String: Tensor]) throws -> (Graph, [String: Tensor]) {
        guard !weights.isEmpty else { throw ToolError("--model \(network.rawValue) needs --weights") }
        let cfg = try networkConfig(network, config)
        var tensors = given
        var types: [String: TensorType] = [:]
        // Every input of these networks is floating-point; integers (DiffBIR passes its timesteps
        // as int64 and the UNet casts them) are converted, as the networks do.
        for (name, t) in tensors where !t.dtype.isFloatingPoint && network.inputNames(cfg).contains(name) {
            tensors[name] = t.converted(to: .f32)
        }
        for name in network.inputNames(cfg) {
            if let t = tensors[name] { types[name] = TensorType(t.dtype, t.shape) }
            else if !network.isOptionalInput(name) { throw ToolError("\(inputs): no tensor for input '\(name)' of \(network.rawValue)") }
        }
        var graph: Graph
        do { graph = try network.graph(cfg, inputs: types) } catch { throw ToolError("\(network.rawValue): \(error)") }
        // Optional inputs left out are zeros.
        for i in graph.inputs where tensors[graph.values[i].name] == nil {
            tensors[graph.values[i].name] = Tensor.zeros(graph.values[i].type.dtype, graph.values[i].type.shape)
        }
        do { _ = try network.bind(&graph, config: cfg, files: weights.map(WeightFile.open)) } catch let e as WeightBindingError {
            throw ToolError(e.description)
        }
        return (graph, tensors)
    }
}
