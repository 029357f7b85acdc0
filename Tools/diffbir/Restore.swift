import ArgumentParser
import Executor
import Foundation
import Importers
import Kernels
import Pipeline
import Plan
import Tensors

#if canImport(Glibc)
import Glibc
#endif

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore photos with a compiled plan (DiffBIR, or a restoration network on its own): PNG, JPEG or WebP in and out.",
        discussion: """
        A plan of one image-to-image network (compile --model bsrnet|swinir|scunet, --ncnn, --onnx: \
        one input [1, 3, H, W], one output [1, 3, s·H, s·W]) restores on its own: the image is cut \
        into the plan's H×W tiles overlapping by --overlap pixels (edges padded by replication), \
        the outputs blended with weights that ramp down over the overlap (no seams), and written \
        rounded to 8 bits at s times the size (or --upscale times, resized bicubically); the \
        diffusion's options (--steps, --cfg, --sampler, --strength, --prompt, ...) are refused. \
        --stage1-only does the same with a DiffBIR plan's stage 1.

        With a DiffBIR plan: \
        The flow is DiffBIR's (v2.1 code, which runs the v1, v2 and v2.1 models): pre-resize by \
        --upscale (PIL bicubic; not for BSRNet, which upsamples ×4 itself), stage 1 (SwinIR, \
        BSRNet or SCUNet, as compiled), short side to at least 512 (bicubic, antialiased), the \
        condition latent (VAE encoder), the sampler with ControlNet + UNet and classifier-free \
        guidance, the VAE decoder, the colour fix against the stage-1 output, the final resize, \
        and truncation to 8 bits. Defaults are the version's (v2.1: edm_dpm++_3m_sde, 10 steps, \
        cfg 6; v2: spaced, 50 steps, cfg 4; v1: spaced, 50 steps, cfg 1).

        The plan's entry points have a fixed tile size (compile --size, 512 by default). An image \
        whose padded size is that tile runs each network once, as DiffBIR does; any other size runs \
        every network on overlapping tiles blended with Gaussian weights (DiffBIR's tiled mode), \
        so any size works. The noise comes from a seeded generator: the same --seed gives the same \
        output, bit for bit, on any thread count (not the same numbers as PyTorch's generator).

        Inputs are PNG, JPEG or WebP files, folders of them (--recursive: their subfolders too, the \
        layout kept under -o), or - to read one path a line from standard input. The output's format \
        follows its extension (.png, .jpg/.jpeg, .webp; --format forces one; JPEG and WebP at \
        --quality 95); a JPEG carries a comment naming the plan and the settings. With several \
        images, or when -o ends in / or is a folder, -o is a folder (created if missing) and each \
        output is named after its input (.png unless --format); two inputs of one name get -2, -3, ... Every name is settled before any \
        image is read: an existing output stops the batch before it starts unless --overwrite or \
        --skip-existing. Outputs are written atomically (nothing half-written, even on Ctrl-C). A \
        failing image stops the batch, or with --keep-going is reported and the rest done; the exit \
        code is then 1.
        """
    )

    @Option(help: "The plan: a DiffBIR plan (compile --model diffbir-v2.1 ...) or one image-to-image network (compile --ncnn, --model bsrnet, ...).")
    var plan: String

    @Argument(help: "Input images (PNG, JPEG, WebP), folders of them, or - (paths from standard input).")
    var inputs: [String]

    @Option(name: .shortAndLong, help: "The output image (.png, .jpg, .webp), a folder (created if missing; required with several inputs), or - for standard output (one image; PNG unless --format).")
    var output: String

    @Option(help: "Output format: png, jpeg or webp (default: the output's extension; PNG in a folder).")
    var format: ImageFormat?

    @Option(help: "JPEG and WebP quality, 1...100.")
    var quality: Int = 95

    @Flag(help: "Also read the images in the input folders' subfolders (their layout kept under -o).")
    var recursive = false

    @Flag(name: .customLong("skip-existing"), help: "Leave images whose output exists (instead of stopping before the batch).")
    var skipExisting = false

    @Flag(name: .customLong("keep-going"), help: "On a failing image, report it and go on with the rest (exit code 1 at the end).")
    var keepGoing = false

    @Option(help: "The task the plan was compiled for (sr, face, denoise); checked against the plan.")
    var task: DiffBIRPlanMetadata.Task?

    @Option(help: "Scale of the output relative to the input (default: 4 for sr, 1 otherwise).")
    var upscale: Double?

    @Option(help: "Sampler: \(SamplerKind.allCases.map(\.rawValue).joined(separator: ", ")) (default: the version's).")
    var sampler: SamplerKind?

    @Option(help: "Sampling steps (default: the version's).")
    var steps: Int?

    @Option(help: "Classifier-free guidance scale; 1 disables it (default: the version's).")
    var cfg: Double?

    @Flag(name: .customLong("rescale-cfg"), help: "Rise the guidance scale from 1 to 1+cfg over the steps (DiffBIR's --rescale_cfg).")
    var rescaleCFG = false

    @Option(help: "Prompt (needs a plan compiled with --text-encoder; default: the plan's).")
    var prompt: String?

    @Option(name: .customLong("negative-prompt"), help: "Negative prompt (needs --text-encoder in the plan).")
    var negativePrompt: String?

    @Option(help: "Control strength: the scale of the IRControlNet's residuals.")
    var strength: Double = 1

    @Option(help: "Seed of the noise.")
    var seed: UInt64 = 231

    @Option(name: .customLong("guidance-scale"), help: "Latent restoration guidance strength (0: off; spaced sampler only).")
    var guidanceScale: Double = 0

    @Option(name: .customLong("guidance-start"), help: "Guidance is active while guidance-stop < t+1 < guidance-start.")
    var guidanceStart: Int = 1001

    @Option(name: .customLong("guidance-stop"), help: "See --guidance-start.")
    var guidanceStop: Int = -1

    @Option(name: .customLong("guidance-repeat"), help: "Guidance updates per step.")
    var guidanceRepeat: Int = 1

    @Option(name: .customLong("color-fix"), help: "Colour correction: wavelet, adain, none.")
    var colorFix: ColorFix = .wavelet

    @OptionGroup(title: "Threads")
    var threading: ThreadOptions
    var threads: Int { threading.threads }

    @Option(help: traceHelp)
    var trace: String?

    @Option(name: .customLong("max-memory"), help: "Peak memory to stay under, e.g. 3G or 500M (default: the memory the machine has available). Below the weights plus the working memory, weights are streamed from the page cache instead of kept resident.")
    var maxMemory: ByteSize?

    @Option(help: "Tile size in pixels; must be the plan's (compile --size), which the whole flow uses.")
    var tile: Int?

    @Flag(name: .customLong("stage1-only"), help: "With a DiffBIR plan: stop after stage 1 (the restoration network's output, DiffBIR's intermediate), resized to the output size.")
    var stage1Only = false

    @Option(help: "With an image-to-image plan: pixels of input by which neighbouring tiles overlap (default: a quarter of the tile).")
    var overlap: Int?

    @OptionGroup(title: "Output")
    var out: OutputOptions
    var overwrite: Bool { out.overwrite }
    var quiet: Bool { out.quiet }
    var json: Bool { out.json }

    func validate() throws {
        if inputs.isEmpty { throw ValidationError("give at least one input image") }
        if output == "-" && json { throw ValidationError("-o - writes the image to standard output: --json cannot share it") }
        if !(1...100).contains(quality) { throw ValidationError("--quality must be in 1...100") }
        if let steps, steps < 1 || steps > 1000 { throw ValidationError("--steps must be in 1...1000") }
        if let upscale, !(upscale > 0 && upscale <= 16) { throw ValidationError("--upscale must be in (0, 16]") }
        if guidanceRepeat < 1 { throw ValidationError("--guidance-repeat must be at least 1") }
        if let overlap, overlap < 0 { throw ValidationError("--overlap must be at least 0") }
        if let cfg, !(cfg.isFinite && cfg >= 0 && cfg <= 100) { throw ValidationError("--cfg \(cfg): must be a number in 0...100") }
        if !(strength.isFinite && strength >= 0 && strength <= 10) { throw ValidationError("--strength \(strength): must be a number in 0...10") }
        if !(guidanceScale.isFinite && guidanceScale >= 0) { throw ValidationError("--guidance-scale \(guidanceScale): must be a finite number ≥ 0") }
    }

    /// The batch: inputs expanded, outputs named and checked, folders created (before any work).
    func batch() throws -> [BatchItem] {
        if overwrite && skipExisting { throw ToolError("--overwrite and --skip-existing contradict each other") }
        var notes: [String] = []
        let items: [BatchItem]
        do {
            let expanded = try Batch.expand(inputs, recursive: recursive) {
                var lines: [String] = []
                while let line = readLine() { lines.append(line.trimmingCharacters(in: .whitespaces)) }
                return lines
            }
            let forced = format
            items = try Batch.plan(expanded, output: output, format: forced, overwrite: overwrite, skipExisting: skipExisting, notes: &notes)
        } catch { throw ToolError(error.description) }
        if !quiet { for n in notes { printError("note: " + n) } }
        return items
    }

    /// Runs the batch: `body` per image (not skipped), progress labelled i/N, failures per
    /// --keep-going; a summary line when anything was skipped or failed, exit code 1 on failures.
    func runBatch(_ items: [BatchItem], _ body: (BatchItem, String) throws -> Void) throws {
        let toDo = items.filter { !$0.skip }.count
        let batchStart = Date()
        var started = 0
        let outcome = Batch.run(items, keepGoing: keepGoing, report: { item, i, result in
            switch result {
            case nil:
                if json { print(JSONValue.object([("input", .string(item.input)), ("output", .string(item.output)), ("status", .string("skipped"))]).serialized) }
                else if !quiet { printError("\(item.input): skipped, \(item.output) exists") }
            case .failure(let error)?:
                if json {
                    print(JSONValue.object([("input", .string(item.input)), ("output", .string(item.output)), ("status", .string("failed")),
                                            ("error", .string("\(error)"))]).serialized)
                }
                printError("diffbir: error: \(error)")
            case .success?: break
            }
        }) { item, i in
            // "i/N name", and once an image is done, the whole batch's time left at the mean so far.
            var label = items.count > 1 ? "\(i + 1)/\(items.count) \(FilePaths.fileName(of: item.input))" : FilePaths.fileName(of: item.input)
            if started > 0 {
                let perImage = Date().timeIntervalSince(batchStart) / Double(started)
                label += String(format: " (batch: about %.0f s left)", perImage * Double(toDo - started))
            }
            started += 1
            try body(item, label)
        }
        if items.count > 1 && !quiet && !json {
            printError("\(outcome.done.count) restored, \(outcome.skipped.count) skipped, \(outcome.failed.count) failed"
                       + (outcome.done.count + outcome.skipped.count + outcome.failed.count < items.count ? ", the rest not started (no --keep-going)" : ""))
        }
        if !outcome.failed.isEmpty { throw ExitCode.failure }
    }

    /// An input image: RGB, and apart its alpha and 16-bit samples (see `InputImage.load`).
    func load(_ input: String) throws -> LoadedImage {
        // Under --max-memory, the decoded samples get a sixteenth of it (the restore holds several
        // float copies of the image, at 4 bytes a sample and larger), checked before decoding.
        let limit = maxMemory.map { max($0.bytes / 16, 1) } ?? PNG.defaultMaxBytes
        do { return try InputImage.load(input, maxDecodedBytes: min(limit, PNG.defaultMaxBytes)) } catch { throw ToolError("\(error)") }
    }

    /// Runs `body` with a progress bar labelled `label`; errors name the input.
    func withProgress<T>(_ input: String, label: String, _ body: (ProgressBar) throws -> T) throws -> T {
        let bar = ProgressBar(enabled: !quiet, label: label)
        defer { bar.finish() }
        do { return try body(bar) } catch { throw ToolError("\(input): \(error)") }
    }

    /// Writes the encoded image (atomically; kept unless --overwrite), or to standard output.
    func write(_ bytes: [UInt8], to item: BatchItem) throws {
        if item.output == "-" {
            FileHandle.standardOutput.write(Data(bytes))
            return
        }
        do { try ImageFile.write(encoded: bytes, to: item.output, overwrite: overwrite) } catch { throw ToolError(error.description) }
    }

    /// A restored image's summary line: on standard output, or on standard error (unless --quiet)
    /// when standard output carries the image (`-o -`).
    func summary(_ text: String) {
        if output == "-" { if !quiet { printError(text) } } else { print(text) }
    }

    /// What this command asks of every restore (the options the service also takes, and the
    /// CLI's own: overlap, prompts, colour fix, guidance).
    var parameters: RestoreParameters {
        var p = RestoreParameters()
        p.upscale = upscale
        p.steps = steps
        p.cfg = cfg
        p.sampler = sampler
        p.seed = seed
        p.strength = strength
        p.stage1Only = stage1Only
        p.quality = quality
        p.overlap = overlap
        p.rescaleCFG = rescaleCFG
        p.colorFix = colorFix
        p.prompt = prompt
        p.negativePrompt = negativePrompt
        if guidanceScale != 0 {
            p.guidance = LatentGuidance(scale: guidanceScale, start: guidanceStart, stop: guidanceStop, repeats: guidanceRepeat)
        }
        return p
    }

    static func peakRSS() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
    }

    /// Every image goes through `RestoreSession`, as the service's jobs do: the same defaults,
    /// noise, encoder and comment, so the same bytes.
    func run() throws {
        let file: PlanFile
        do { file = try PlanFile(path: plan) } catch { throw ToolError(error.description) }
        let session: RestoreSession
        do { session = try RestoreSession(plan: file, name: FilePaths.fileName(of: plan), threads: threads) } catch { throw ToolError("\(error)") }
        if let note = CPU.precisionNote(file.program.activations, isa: .best) { out.note("note: \(plan): \(note)") }
        if trace != nil { session.trace = TraceRecorder() }
        defer { if let trace, let recorder = session.trace { try? writeTrace(recorder, to: trace, quiet: quiet || json) } }
        var p = parameters
        /// What the plan is, and for a DiffBIR plan the options every image gets.
        enum Kind { case diffbir(DiffBIRPlanInfo, RestoreOptions), image(ImagePlanInfo) }
        let kind: Kind
        let budget: Int?
        if let info = session.diffbirInfo {
            if let tile, tile != info.tile {
                throw ToolError("--tile \(tile): \(plan) was compiled for \(info.tile)-pixel tiles; compile another plan with --size \(tile)x\(tile)")
            }
            if let task, task != info.task {
                throw ToolError("--task \(task): \(plan) was compiled for task \(info.task) (its stage 1 is \(info.cleaner)); compile a plan with --task \(task)")
            }
            if overlap != nil { throw ToolError("--overlap is for image-to-image plans; a DiffBIR plan's tiles overlap by half (DiffBIR's tiled mode)") }
            if guidanceScale != 0 && (sampler ?? info.defaultSampler) != .spaced {
                throw ToolError("--guidance-scale works with --sampler spaced (as in DiffBIR)")
            }
            let options: RestoreOptions?
            do { options = try session.diffbirOptions(p) } catch { throw ToolError("\(error)") }
            guard let options else { throw ToolError("\(plan): not a DiffBIR plan") }
            kind = .diffbir(info, options)
            budget = maxMemory?.bytes ?? SystemMemory.available()
        } else {
            guard let info = session.imageInfo else { throw ToolError("\(plan): neither a DiffBIR plan nor an image-to-image plan") }
            let diffusionOptions: [(String, Bool)] = [("--sampler", sampler != nil), ("--steps", steps != nil), ("--cfg", cfg != nil), ("--prompt", prompt != nil),
                                                      ("--negative-prompt", negativePrompt != nil), ("--task", task != nil), ("--tile", tile != nil),
                                                      ("--guidance-scale", guidanceScale != 0), ("--stage1-only", stage1Only),
                                                      ("--strength", strength != 1), ("--rescale-cfg", rescaleCFG)]
            if let given = diffusionOptions.first(where: { $0.1 }) {
                throw ToolError("\(given.0) is for DiffBIR plans; \(plan) holds one image-to-image network (entry '\(info.entry)', ×\(info.scale))")
            }
            kind = .image(info)
            budget = maxMemory?.bytes
        }
        let items = try batch()
        try runBatch(items) { item, label in
            let (input, target) = (item.input, item.output)
            let start = Date()
            let loaded = try load(input)
            let (w, h) = (loaded.width, loaded.height)
            if case .diffbir(_, let options) = kind, let budget, !quiet, let need = session.diffbirMemoryNeeds(height: h, width: w, upscale: options.upscale),
               need.fixed + need.weights > budget {
                printError(String(format: "note: memory budget %.2f GB < %.2f GB (weights %.2f GB + working memory): weights are streamed from the page cache",
                                  Double(budget) / 1e9, Double(need.fixed + need.weights) / 1e9, Double(need.weights) / 1e9))
            }
            p.format = item.format
            let result = try withProgress(input, label: label) { bar in
                try session.restore(loaded, p, memoryBudget: budget) { stage, done, total in bar.update(stage, done, total) }
            }
            if !quiet { for n in result.notes { printError("note: \(input): " + n) } }
            try write(result.bytes, to: item)
            let total = Date().timeIntervalSince(start)
            let rss = Self.peakRSS()
            let (ow, oh) = result.outputSize
            let common: [(String, JSONValue)] = [
                ("input", .string(input)), ("output", .string(target)), ("status", .string("restored")),
                ("input_size", .array([.integer(Int64(w)), .integer(Int64(h))])),
                ("output_size", .array([.integer(Int64(ow)), .integer(Int64(oh))])),
            ]
            switch kind {
            case .diffbir(let info, let options):
                if json {
                    print(JSONValue.object(common + [
                        ("version", .string(info.version)), ("sampler", .string(options.sampler.rawValue)), ("steps", .integer(Int64(options.steps))),
                        ("cfg", .number(options.cfgScale)), ("seed", .integer(Int64(bitPattern: seed))),
                        ("seconds", .object(result.seconds.map { ($0.stage, .number($0.seconds)) })), ("total_seconds", .number(total)),
                        ("peak_rss_bytes", .integer(Int64(rss))),
                    ]).serialized)
                } else {
                    summary("\(input) → \(target): \(w)×\(h) → \(ow)×\(oh); "
                          + result.seconds.map { String(format: "%@ %.1f s", $0.stage, $0.seconds) }.joined(separator: ", ")
                          + String(format: "; total %.1f s; peak RSS %@", total, formatBytes(rss)))
                }
            case .image(let info):
                let network = result.seconds.first?.seconds ?? 0
                if json {
                    print(JSONValue.object(common + [
                        ("plan", .string(plan)), ("entry", .string(info.entry)), ("scale", .integer(Int64(info.scale))),
                        ("tile", .array([.integer(Int64(info.tileWidth)), .integer(Int64(info.tileHeight))])),
                        ("network_seconds", .number(network)), ("total_seconds", .number(total)), ("peak_rss_bytes", .integer(Int64(rss))),
                    ]).serialized)
                } else {
                    summary("\(input) → \(target): \(w)×\(h) → \(ow)×\(oh); "
                          + String(format: "network %.2f s; total %.2f s; peak RSS %@", network, total, formatBytes(rss)))
                }
            }
        }
    }
}

/// A one-line progress bar on standard error: stage, step i/N, elapsed, remaining.
final class ProgressBar: @unchecked Sendable {
    let enabled: Bool
    let label: String
    let start = Date()
    var stageStart = Date()
    var stage = ""
    var lastDraw = Date.distantPast
    let tty = isatty(2) != 0

    init(enabled: Bool, label: String) {
        self.enabled = enabled
        self.label = label
    }

    func update(_ name: String, _ done: Int, _ total: Int) {
        guard enabled else { return }
        if name != stage {
            if !stage.isEmpty && tty { printError("") }
            stage = name
            stageStart = Date()
        }
        let now = Date()
        guard done > 0 else { return }
        guard done == total || now.timeIntervalSince(lastDraw) > 0.2 else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(stageStart)
        let remaining = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let width = 24
        let filled = total > 0 ? width * done / total : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = "\(label) \(name.padding(toLength: 10, withPad: " ", startingAt: 0)) [\(bar)] \(done)/\(total)"
            + String(format: "  elapsed %.0f s  remaining %.0f s  (total %.0f s)", elapsed, remaining, now.timeIntervalSince(start))
        if tty { printError("\r" + line + "   ", terminator: "") } else if done == total { printError(line) }
    }

    func finish() {
        if enabled && tty && !stage.isEmpty { printError("") }
        stage = ""
    }
}

extension ImageFormat: ExpressibleByArgument {
    /// png, jpeg, webp, or an extension (jpg).
    public init?(argument: String) { self.init(extension: argument) }
}
extension SamplerKind: ExpressibleByArgument {}
extension ColorFix: ExpressibleByArgument {}
