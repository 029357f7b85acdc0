import Compilation
import Quantize
import ArgumentParser
import Executor
import Foundation
import Importers
import IR
import Kernels
import ModelGraphs
import Passes
import Pipeline
import Plan
import Tensors

struct Compile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compile networks into a plan: optimised, memory-planned, one mmappable file.",
        discussion: """
        Each --model (a network name, as for `run`) or --onnx file becomes an entry point of the plan, \
        named after the network (or the ONNX file's name without extension); all share one weight \
        section (weights are deduplicated by checkpoint key) and one activation arena. --weights are \
        the published checkpoints, in any format; each network takes the keys it needs from them.

        --size HxW is the image size in pixels the plan is compiled for (static shapes; default \
        512x512). Networks on latents (vae-decoder, unet, controlnet, denoise) take the latent of \
        that image, an eighth per side: --size 512x512 compiles denoise for a 64x64 latent.

        The passes, in order (switch one off with --disable-pass NAME, repeatable):
        \(PassPipeline.standard.map { "  \($0.name.padding(toLength: 34, withPad: " ", startingAt: 0)) \($0.summary)" }.joined(separator: "\n"))

        The report (printed, and stored in the plan for `diffbir inspect PLAN`): nodes before and \
        after each pass, the kernels, FLOPs, weight bytes, and per entry point the arena beside the \
        naive sum of all intermediates and the largest single tensor. The plan is written to a \
        temporary file and renamed at the end: an interrupted compile leaves nothing behind.
        """
    )

    @Option(help: "A network to compile (repeatable): \(Network.allCases.map(\.rawValue).joined(separator: ", ")); or a whole DiffBIR model: \(DiffBIRVersion.allCases.map(\.rawValue).joined(separator: ", ")).")
    var model: [String] = []

    @Option(help: "For a DiffBIR model: the task whose stage-1 network goes in the plan (sr, face, denoise).")
    var task: DiffBIRPlanMetadata.Task = .sr

    @Option(help: "For a DiffBIR model: the prompt baked in (default: the version's).")
    var prompt: String?

    @Option(name: .customLong("negative-prompt"), help: "For a DiffBIR model: the negative prompt baked in (default: the version's).")
    var negativePrompt: String?

    @Option(name: .customLong("prompt-embeddings"), help: "For a DiffBIR model: bake these embeddings (a .safetensors with 'positive' and 'negative', [1, 77, context]) instead of running the text encoder.")
    var promptEmbeddings: String?

    @Flag(name: .customLong("text-encoder"), help: "For a DiffBIR model: include the CLIP text encoder (entry `text`) so that `restore --prompt` can change the prompts; without it the prompts are baked in and the encoder is left out.")
    var textEncoder = false

    @Option(help: "An ONNX model to compile (repeatable); it carries its own weights.")
    var onnx: [String] = []

    @Option(help: "An ncnn model to compile (repeatable): X.param, with X.bin beside it. Its input shape comes from the file or --shape BLOB=1,C,H,W.")
    var ncnn: [String] = []

    @Option(parsing: .upToNextOption, help: "Checkpoints holding the networks' weights (.safetensors, .pt, .pth, .ckpt).")
    var weights: [String] = []

    @Option(help: "The network's configuration as JSON (DiffBIR's yaml keys), for every --model; default: DiffBIR's.")
    var config: String?

    @Option(help: "Image size in pixels, HxW (latent networks take size/8).")
    var size: String = "512x512"

    @Option(help: "For an ONNX model: static shape of a graph input, NAME=D1,D2,... (repeatable).")
    var shape: [String] = []

    @Option(name: .customLong("const"), help: "For an ONNX model: fix a graph input at import, NAME=FILE (repeatable).")
    var constants: [String] = []

    @OptionGroup(title: "Quantisation")
    var quantisation: QuantizationOptions
    /// The precision `--precision` gives, `auto` resolved for this processor; nil when the weight
    /// formats and activations come from the other options.
    var precision: PrecisionArgument? { resolvedPrecision.precision }

    /// `--precision auto` (the default): bf16 where this processor multiplies bf16 natively
    /// (AVX512-BF16) and no other option chooses the formats, f32 otherwise; with why.
    var resolvedPrecision: (precision: PrecisionArgument?, reason: String) {
        switch quantisation.precision {
        case .f32?: return (.f32, "--precision f32")
        case .bf16?: return (.bf16, "--precision bf16")
        case .auto?, nil:
            if weightsDType != nil || activations != nil || !quantRules.isEmpty || calibrate > 0 || autoKeep > 0 || calibrateInputs != nil || gptq {
                return (nil, "auto: the formats of --weights-dtype, --activations, --quant-rule")
            }
            return CPU.hasBF16(.avx512)
                ? (.bf16, "auto: this processor (\(CPU.summary)) has AVX512-BF16; --precision f32 for f32 products")
                : (.f32, "auto: this processor (\(CPU.summary)) has no AVX512-BF16, which bf16 products would emulate")
        }
    }
    var weightsDType: WeightFormat? { quantisation.weightsDType }
    var activations: ActivationPrecision? { quantisation.activations }
    var quantRules: [String] { quantisation.quantRules }

    @OptionGroup(title: "Calibration and error compensation")
    var calibration: CalibrationOptions
    var calibrate: Int { calibration.calibrate }
    var calibrateInputs: String? { calibration.calibrateInputs }
    var autoKeep: Int { calibration.autoKeep }
    var gptq: Bool { calibration.gptq }
    var gptqDamping: Float { calibration.gptqDamping }
    var gptqActOrder: Bool { calibration.gptqActOrder }
    var gptqMinSamples: Double { calibration.gptqMinSamples }
    var gptqMemory: ByteSize { calibration.gptqMemory }

    @Option(name: .customLong("disable-pass"), help: "Switch a pass off by name (repeatable).")
    var disabledPasses: [String] = []

    @Flag(name: .customLong("prepack"), help: ArgumentHelp(
        "Also store the weights packed for this processor's kernels, so that the first step packs nothing.",
        discussion: "f32 and bf16 weights as the GEMMs' panels (Winograd's as transformed kernels), and with --activations int8 the int8 weights as the int8 kernels' panels. A run on a processor of the same kernels (AVX2 or AVX-512) maps them in place instead of packing each weight into memory at its first use; other processors, OpenBLAS and --validate read the plain weights, which stay. The plan grows by about the packed weights' bytes (Winograd's transformed kernels: 16/9 or 4 times theirs)."))
    var prepack = false

    @Flag(name: .customLong("verify-each"), help: "Run the IR verifier after every pass.")
    var verifyEach = false

    @Option(name: .shortAndLong, help: "The plan file to write.")
    var output: String

    @OptionGroup(title: "Output")
    var out: OutputOptions
    var overwrite: Bool { out.overwrite }
    /// (-q: only the report, not each pass as it runs.)
    var quiet: Bool { out.quiet }

    @OptionGroup(title: "Threads (calibration and error compensation run the plans)")
    var threading: ThreadOptions

    /// The report and calibration results: on standard output, or on standard error with --json
    /// (standard output then holds the JSON object alone).
    func say(_ text: String, terminator: String = "\n") {
        if !out.json { print(text, terminator: terminator) } else if !quiet { printError(text, terminator: terminator) }
    }

    func validate() throws {
        if model.isEmpty && onnx.isEmpty && ncnn.isEmpty { throw ValidationError("give at least one --model NAME, --onnx FILE or --ncnn FILE.param") }
        if gptq && weightsDType?.isInt8 != true
            && !quantRules.contains(where: { WeightFormat(userName: String($0.split(separator: "=").last ?? ""))?.isInt8 == true }) {
            throw ValidationError("--gptq rounds int8 weights: give --weights-dtype int8 (or an int8 --quant-rule)")
        }
        if prepack && (calibrate > 0 || autoKeep > 0 || calibrateInputs != nil || gptq) {
            throw ValidationError("--prepack is not taken with --calibrate, --auto-keep or --gptq, which recompile the plan afterwards: give one or the other")
        }
        if !overwrite && FileManager.default.fileExists(atPath: output) {
            throw ValidationError("\(output) exists; pass --overwrite to replace it")
        }
    }

    func parseSize() throws -> (Int, Int) {
        let parts = size.lowercased().split(separator: "x").map { Int($0) }
        guard parts.count == 2, let h = parts[0], let w = parts[1], h > 0, w > 0 else {
            throw ToolError("--size \(size): expected HxW, e.g. 512x512")
        }
        return (h, w)
    }

    func run() throws {
        let start = Date()
        let (h, w) = try parseSize()
        var entries: [(name: String, graph: Graph)] = []
        var baked: [(name: String, tensor: Tensor)] = []
        var metadata: [String: String]?
        let files = try weights.map(WeightFile.open)
        if let version = model.first.flatMap({ DiffBIRVersion(rawValue: $0) }) {
            guard model.count == 1, onnx.isEmpty, ncnn.isEmpty else { throw ToolError("a DiffBIR model is compiled on its own (no other --model, --onnx or --ncnn)") }
            guard h == w else { throw ToolError("--size \(size): a DiffBIR plan's tile must be square") }
            (entries, baked, metadata) = try diffbirEntries(version, tile: h, files: files)
        } else {
            try networkEntries(&entries, h, w, files)
        }
        var onnxEntries = Set<String>()
        for path in onnx {
            let graph = try importONNX(path, shapes: parseShapes(shape), constants: parseConstants(constants)).graph
            let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            entries.append((stem, graph))
            onnxEntries.insert(stem)
        }
        for path in ncnn {
            let graph = try importNCNN(path, shapes: parseShapes(shape)).graph
            let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            guard !entries.contains(where: { $0.name == stem }) else { throw ToolError("\(path): an entry point named '\(stem)' exists already") }
            entries.append((stem, graph))
            onnxEntries.insert(stem)
        }
        var options = CompileOptions()
        options.disabled = Set(disabledPasses)
        // Without AVX-512, f32 3×3 convolutions of 16×16 outputs run as Winograd F(2,3) too (the
        // denoise step 4–9 % faster on AVX2 code, for 0.75 GB of transformed kernels).
        options.f32WinogradMinimumPlane = ISA.best == .avx512 ? 32 * 32 : 16 * 16
        options.verifyEach = verifyEach
        options.quantization = try quantizationPolicy()
        options.keepFirstAndLast = onnxEntries
        options.bf16Activations = try bf16Activations()
        options.int8Activations = activations == .int8
        if options.int8Activations && options.quantization.defaultFormat.hasBlockCodes {
            throw ToolError("--activations int8 multiplies int8 × int8 with one scale per output channel: give --weights-dtype int8 (\(options.quantization.defaultFormat.rawValue) weights run with f32 activations; a --quant-rule may still give single layers a block format)")
        }
        if options.int8Activations && options.quantization.defaultFormat != .int8Channel && !options.quantization.rules.contains(where: { $0.format == .int8Channel }) {
            throw ToolError("--activations int8 needs int8 weights (--weights-dtype int8)")
        }
        var compiled: CompiledPlan
        do {
            compiled = try Compiler.compile(entries, options: options, constants: baked, metadata: metadata, log: { if !quiet { printError($0) } })
        } catch let e as IRError {
            throw ToolError("compile: \(e)")
        }
        // What --precision chose, first in the report (kept in the plan).
        let chosen = resolvedPrecision
        var first = "precision: \(chosen.precision?.rawValue ?? "as the formats give") (\(chosen.reason))\n"
        if chosen.precision == .f32, let plane = options.f32WinogradPlane, plane < 32 * 32 {
            first += "winograd: f32 3×3 convolutions from 16×16 outputs (no AVX-512 here; --disable-pass winograd-16 keeps 32×32, for less memory)\n"
        }
        if prepack {
            let started = Date()
            let gemm = Gemm(ISA.best)
            let packed = Prepacking.add(to: &compiled, gemm: gemm, threads: threading.threads)
            first += "prepack: \(packed.forms) weights also stored packed for the \(gemm.isa) kernels (\(formatBytes(packed.bytes)), "
                + String(format: "%.1f s", Date().timeIntervalSince(started)) + "); other processors pack them at first use\n"
        }
        compiled.report = first + compiled.report
        var lastShown = Date()
        try PlanWriter.write(path: output, program: compiled.program, summary: compiled.report, weights: compiled.weights,
                             overwrite: overwrite, progress: { i, n in
            if !quiet, Date().timeIntervalSince(lastShown) > 1 {
                lastShown = Date()
                printError("writing weights \(i)/\(n)\r", terminator: "")
            }
        })
        say(compiled.report, terminator: "")
        if calibrate > 0 || autoKeep > 0 || calibrateInputs != nil || gptq {
            try calibrateAndKeep(entries: entries, baked: baked, metadata: metadata, options: options)
        }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        let seconds = Date().timeIntervalSince(start)
        let entryPoints = compiled.program.entryPoints.map { e in
            JSONValue.object([("name", .string(e.name)), ("instructions", .int(e.instructions.count)), ("arenaBytes", .int(e.arenaBytes))])
        }
        out.result("wrote \(output): \(formatBytes(bytes)), " + String(format: "%.2f s", seconds),
                   json: .object([("output", .string(output)), ("bytes", .int(bytes)), ("seconds", .seconds(seconds)),
                                  ("precision", .string(compiled.program.activations.rawValue)), ("precisionReason", .string(chosen.reason)),
                                  ("entryPoints", .array(entryPoints)), ("report", .string(compiled.report))]))
    }

    /// `--calibrate`, `--auto-keep`, `--gptq`: `QuantizationLoop` (in `Quantize`), its results printed.
    func calibrateAndKeep(entries: [(name: String, graph: Graph)], baked: [(name: String, tensor: Tensor)], metadata: [String: String]?,
                          options: CompileOptions) throws {
        guard !options.quantization.isIdentity else { throw ToolError("--calibrate compares a quantised plan with f32: give --weights-dtype or --quant-rule") }
        var loop = QuantizationLoop(entries: entries, constants: baked, metadata: metadata, options: options, output: output)
        loop.count = calibrate > 0 ? calibrate : (gptq ? 8 : 1)
        loop.inputsDirectory = calibrateInputs
        loop.threads = threading.threads
        loop.autoKeep = autoKeep
        if gptq {
            let budget = gptqMemory.bytes
            loop.compensation = .init(damping: gptqDamping, activationOrder: gptqActOrder, minSamples: gptqMinSamples, memoryBudget: budget)
        }
        do {
            try loop.run(log: { if !quiet { printError($0) } }, report: { say($0, terminator: "") })
        } catch { throw ToolError(error.description) }
    }

    /// The weight formats from --precision, --weights-dtype, --quant-rule and the models' exclusions.
    func quantizationPolicy() throws -> QuantizationPolicy {
        var format = WeightFormat.f32
        if let explicit = quantisation.precision, explicit != .auto, weightsDType != nil {
            throw ToolError("--precision \(explicit.rawValue) and --weights-dtype exclude each other")
        }
        if let precision { format = precision == .bf16 ? .bf16 : .f32 }
        if let weightsDType { format = weightsDType }
        let rules = try quantRules.map { r -> QuantRule in
            do { return try QuantRule(parsing: r) } catch let e as IRError { throw ToolError("--quant-rule: \(e.message)") }
        }
        var exclusions: [String] = []
        if let first = model.first, DiffBIRVersion(rawValue: first) != nil {
            exclusions = Network.allCases.flatMap(\.quantizationExclusions)
        } else {
            exclusions = model.compactMap(Network.init(rawValue:)).flatMap(\.quantizationExclusions)
        }
        let policy = QuantizationPolicy(defaultFormat: format, rules: rules, exclusions: exclusions)
        // bf16 weights need bf16 activations (the bf16 kernels), and the others f32 ones.
        let formats = Set([format] + rules.map(\.format))
        if formats.contains(.bf16) && formats.count > 1 && formats != [.bf16, .f32] {
            throw ToolError("bf16 weights run bf16 GEMMs: they do not mix with f16 or int8 weights in one plan")
        }
        return policy
    }

    func bf16Activations() throws -> Bool {
        let weightFormat = weightsDType ?? (precision == .bf16 ? .bf16 : .f32)
        let chosen = activations ?? (weightFormat == .bf16 ? .bf16 : .f32)
        switch chosen {
        case .f32:
            if weightFormat == .bf16 { throw ToolError("bf16 weights run bf16 GEMMs: they take --activations bf16 (or give f32, f16 or int8 weights)") }
            return false
        case .bf16:
            guard weightFormat == .bf16 || weightFormat == .f32 else {
                throw ToolError("--activations bf16 goes with f32 or bf16 weights, not \(weightFormat == .int8Channel ? "int8" : weightFormat.rawValue)")
            }
            return true
        case .int8: return false
        }
    }

    /// Builds `network` at `inputs` and binds its weights.
    func bound(_ network: Network, _ cfg: NetworkConfig, _ inputs: [String: TensorType], _ files: [WeightFile], label: String) throws -> Graph {
        var graph: Graph
        do { graph = try network.graph(cfg, inputs: inputs) } catch { throw ToolError("\(label): \(error)") }
        do { _ = try network.bind(&graph, config: cfg, files: files) } catch let e as WeightBindingError {
            throw ToolError(e.description)
        }
        return graph
    }

    /// The entry points of a DiffBIR plan: stage1, encode, denoise, decode (and text), tiles of `tile`
    /// pixels; the prompts' embeddings computed now (or read from --prompt-embeddings) unless the text
    /// encoder is kept.
    func diffbirEntries(_ version: DiffBIRVersion, tile: Int, files: [WeightFile]) throws
        -> ([(name: String, graph: Graph)], [(name: String, tensor: Tensor)], [String: String]) {
        guard !files.isEmpty else { throw ToolError("--model \(version.rawValue) needs --weights (the SD 2.1 checkpoint, the IRControlNet and the stage-1 model)") }
        var cfg = NetworkConfig()
        if let config {
            guard let data = FileManager.default.contents(atPath: config) else { throw ToolError("\(config): cannot read the configuration") }
            do { cfg = try NetworkConfig.load(sections: data) } catch { throw ToolError("\(config): \(error)") }
        }
        let (pos, neg) = (prompt ?? version.prompts.positive, negativePrompt ?? version.prompts.negative)
        let spec: DiffBIRPlanSpec
        do {
            spec = try version.planSpec(task: task, tile: tile, config: cfg, files: files, prompts: (pos, neg), textEncoder: promptEmbeddings == nil)
        } catch let e as WeightBindingError {
            throw ToolError(e.description)
        } catch {
            throw ToolError("\(version.rawValue): \(error)")
        }
        var entries = spec.entries
        var metadata = spec.metadata
        var constants: [(name: String, tensor: Tensor)] = []
        if textEncoder {
            if promptEmbeddings != nil { throw ToolError("--text-encoder and --prompt-embeddings exclude each other") }
            guard let text = spec.text else { throw ToolError("\(version.rawValue): no text encoder was built") }
            entries.append(("text", text))
        } else if let promptEmbeddings {
            constants = try PromptEmbeddings.load(promptEmbeddings, contextDim: cfg.unet.context_dim)
            metadata.positivePrompt = "(embedding from \(FilePaths.fileName(of: promptEmbeddings)))"
            metadata.negativePrompt = metadata.positivePrompt
        } else if let text = spec.text {
            // Computed now, stored with the weights; the text encoder stays out of the plan.
            constants = try PromptEmbeddings.bake(text: text, prompts: (pos, neg), contextLength: cfg.clip.context_length)
        }
        return (entries, constants, metadata.table)
    }

    func networkEntries(_ entries: inout [(name: String, graph: Graph)], _ h: Int, _ w: Int, _ files: [WeightFile]) throws {
        for name in model {
            guard let network = Network(rawValue: name) else {
                throw ToolError("unknown model '\(name)': one of \(Network.allCases.map(\.rawValue).joined(separator: ", ")) (an ONNX file goes to --onnx)")
            }
            guard !files.isEmpty else { throw ToolError("--model \(name) needs --weights") }
            let cfg = try networkConfig(network, config)
            let f = Network.latentFactor(cfg)
            if [.vaeEncoder, .vaeDecoder, .unet, .controlnet, .denoise].contains(network) && (h % f != 0 || w % f != 0) {
                throw ToolError("--size \(size): \(name) needs a size divisible by \(f) (the VAE's factor)")
            }
            var graph: Graph
            do { graph = try network.graph(cfg, inputs: network.inputs(cfg, height: h, width: w)) } catch {
                throw ToolError("\(name) at \(h)x\(w): \(error)")
            }
            do { _ = try network.bind(&graph, config: cfg, files: files) } catch let e as WeightBindingError {
                throw ToolError(e.description)
            }
            entries.append((name, graph))
        }
    }
}


/// `--precision`: auto (for this processor), f32, or bf16 (weights and products).
enum PrecisionArgument: String, ExpressibleByArgument, CaseIterable {
    case auto, f32, bf16
}

extension ActivationPrecision: ExpressibleByArgument {}
extension DiffBIRPlanMetadata.Task: ExpressibleByArgument {}

extension WeightFormat: ExpressibleByArgument {
    /// The names `WeightFormat(userName:)` takes (`int8` for int8-channel, fp16, ...).
    public init?(argument: String) { self.init(userName: argument) }
    public static var allValueStrings: [String] { ["f32", "bf16", "f16", "int8", "int8-block32", "int8-block16"] }
}
