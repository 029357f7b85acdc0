import Dispatch
import Executor
import Foundation
import Plan
import Tensors

/// What one restore asks for, beyond the plan's own defaults: the options `diffbir restore` and
/// the service's `POST /v1/restores` share. nil: the plan's default.
public struct RestoreParameters: Sendable, Equatable {
    public var upscale: Double?
    public var steps: Int?
    public var cfg: Double?
    public var sampler: SamplerKind?
    public var seed: UInt64 = 231
    public var strength: Double = 1
    public var stage1Only = false
    public var format: ImageFormat = .png
    public var quality = 95
    /// Image-to-image plans: input pixels by which neighbouring tiles overlap (nil: a quarter of a tile).
    public var overlap: Int?
    /// DiffBIR plans only (the CLI's; the service does not offer them): guidance rising from 1 to
    /// 1 + cfg, the colour fix, prompts (plans with a text entry), latent restoration guidance.
    public var rescaleCFG = false
    public var colorFix = ColorFix.wavelet
    public var prompt: String?
    public var negativePrompt: String?
    public var guidance: LatentGuidance?

    public init() {}

    /// The ranges `diffbir restore` accepts; the error names the parameter.
    public func validate() throws(RestoreError) {
        if let steps, !(1...1000).contains(steps) { throw RestoreError("steps \(steps): must be in 1...1000") }
        if let upscale, !(upscale > 0 && upscale <= 16) { throw RestoreError("upscale \(upscale): must be in (0, 16]") }
        if let cfg, !(cfg.isFinite && cfg >= 0 && cfg <= 100) { throw RestoreError("cfg \(cfg): must be a number in 0...100") }
        if !(strength.isFinite && strength >= 0 && strength <= 10) { throw RestoreError("strength \(strength): must be a number in 0...10") }
        if !(1...100).contains(quality) { throw RestoreError("quality \(quality): must be in 1...100") }
        if let overlap, overlap < 0 { throw RestoreError("overlap \(overlap): must be at least 0") }
        if let guidance {
            if !(guidance.scale.isFinite && guidance.scale >= 0) { throw RestoreError("guidance scale \(guidance.scale): must be a finite number ≥ 0") }
            if guidance.repeats < 1 { throw RestoreError("guidance repeats \(guidance.repeats): must be at least 1") }
        }
    }

    /// The DiffBIR-only settings that are not at their defaults, by name (for a refusal on an
    /// image-to-image plan).
    var diffbirOnlySettings: [String] {
        [("steps", steps != nil), ("cfg", cfg != nil), ("sampler", sampler != nil), ("strength", strength != 1),
         ("stage1-only", stage1Only), ("rescale-cfg", rescaleCFG), ("prompt", prompt != nil),
         ("negative-prompt", negativePrompt != nil), ("guidance", guidance != nil)].filter(\.1).map(\.0)
    }
}

/// A finished restore: the encoded image and how it was made.
public struct RestoreOutcome: Sendable {
    public var bytes: [UInt8]
    public var format: ImageFormat
    public var inputSize: (width: Int, height: Int)
    public var outputSize: (width: Int, height: Int)
    /// Seconds by stage (`stage1`, `encode`, `sampling`, `decode`, ...; `network` for image plans).
    public var seconds: [(stage: String, seconds: Double)]
    /// What could not be kept (alpha in JPEG, 16 bits in JPEG/WebP, ...).
    public var notes: [String]

    public init(bytes: [UInt8], format: ImageFormat, inputSize: (width: Int, height: Int), outputSize: (width: Int, height: Int),
                seconds: [(stage: String, seconds: Double)], notes: [String]) {
        self.bytes = bytes
        self.format = format
        self.inputSize = inputSize
        self.outputSize = outputSize
        self.seconds = seconds
        self.notes = notes
    }
}

/// One plan, mapped once, restoring encoded images end to end as `diffbir restore` does (same
/// defaults, same noise for the same seed, same encoder and comment: the same bytes). Not for use
/// from two threads at once: a service keeps one session per concurrent job, all on the same
/// mapped `PlanFile`.
public final class RestoreSession: @unchecked Sendable {
    public let plan: PlanFile
    /// The plan's file name, recorded in each image's comment.
    public let planName: String
    let diffbir: Restorer?
    let image: ImageRestorer?

    public init(plan: PlanFile, name: String, threads: Int) throws {
        self.plan = plan
        planName = name
        if DiffBIRPlanMetadata.describes(plan.program.metadata) {
            diffbir = try Restorer(plan: plan, threads: threads)
            image = nil
        } else {
            image = try ImageRestorer(plan: plan, threads: threads)
            diffbir = nil
        }
    }

    /// Whether the plan is a DiffBIR plan (else: one image-to-image network).
    public var isDiffBIR: Bool { diffbir != nil }
    public var diffbirInfo: DiffBIRPlanInfo? { diffbir?.info }
    public var imageInfo: ImagePlanInfo? { image?.info }

    /// Asked between network runs; true ends the restore with `RestoreCancelled`.
    public var isCancelled: @Sendable () -> Bool = { false } {
        didSet {
            diffbir?.isCancelled = isCancelled
            image?.isCancelled = isCancelled
        }
    }

    /// Bytes of the plan's weights (mapped once, shared by every session of the plan).
    public var weightBytes: Int { plan.program.weights.reduce(0) { $0 + $1.byteCount } }

    /// Working memory of one restore of an `height`×`width` input (arena, images, packing), the
    /// shared weights not counted.
    public func workingMemory(height: Int, width: Int, upscale: Double? = nil) -> Int {
        if let diffbir {
            return diffbir.memoryNeeds(height: height, width: width, upscale: upscale ?? diffbir.info.defaultUpscale).fixed
        }
        guard let image else { return 0 }
        return image.memoryNeeds(height: height, width: width) - weightBytes
    }

    /// Restores `input` (decoded by `InputImage`). `memoryBudget` as `--max-memory`; `progress`
    /// gets (stage, done, total).
    public func restore(_ input: LoadedImage, _ p: RestoreParameters, memoryBudget: Int? = nil,
                        progress: (String, Int, Int) -> Void = { _, _, _ in }) throws -> RestoreOutcome {
        try p.validate()
        let (w, h) = (input.width, input.height)
        if let image {
            let given = p.diffbirOnlySettings
            if !given.isEmpty {
                throw RestoreError("\(given.joined(separator: ", ")): for DiffBIR plans; \(planName) holds one image-to-image network (×\(image.info.scale))")
            }
            var options = ImageRestoreOptions()
            options.upscale = p.upscale
            options.overlap = p.overlap
            options.memoryBudget = memoryBudget
            let restored = try image.restore(input.rgb16 ?? Planar(rgb8: input.rgb8, height: h, width: w), options: options) { progress("tiles", $0, $1) }
            let composed = input.rgb16 != nil
                ? OutputImage.compose(rgb8: [], precise: restored, width: restored.width, height: restored.height, input: input, format: p.format)
                : OutputImage.compose(rgb8: restored.rgb8Rounded(), precise: nil, width: restored.width, height: restored.height, input: input, format: p.format)
            let comment = "diffbir restore; plan \(planName); entry \(image.info.entry); x\(image.info.scale)"
            let bytes = try ImageFile.encode(composed.image, format: p.format, quality: p.quality, comment: comment)
            return RestoreOutcome(bytes: bytes, format: p.format, inputSize: (w, h), outputSize: (restored.width, restored.height),
                                  seconds: [("network", image.seconds)], notes: composed.notes)
        }
        guard let diffbir else { throw RestoreError("\(planName): no restorer") }
        let info = diffbir.info
        var options = try diffbirOptions(p, info: info)
        options.memoryBudget = memoryBudget
        var noise = SeededNoise(seed: p.seed)
        let result = try diffbir.restore(rgb8: input.rgb8, height: h, width: w, options: options, noise: &noise) { stage, done, total in
            progress(stage.rawValue, done, total)
        }
        let composed = OutputImage.compose(rgb8: result.pixels, precise: nil, width: result.width, height: result.height, input: input, format: p.format)
        let comment = "diffbir restore; plan \(planName); DiffBIR \(info.version); sampler \(options.sampler.rawValue); steps \(options.steps); cfg \(options.cfgScale); seed \(p.seed)"
        let bytes = try ImageFile.encode(composed.image, format: p.format, quality: p.quality, comment: comment)
        let stages: [RestoreStage] = [.stage1, .text, .encode, .sampling, .decode, .finish]
        return RestoreOutcome(bytes: bytes, format: p.format, inputSize: (w, h), outputSize: (result.width, result.height),
                              seconds: stages.compactMap { s in diffbir.seconds[s].map { (s.rawValue, $0) } }, notes: composed.notes)
    }
}

extension RestoreSession {
    /// Records every instruction the restores run (Chrome / Perfetto trace).
    public var trace: TraceRecorder? {
        get { diffbir?.trace ?? image?.trace }
        set {
            diffbir?.trace = newValue
            image?.trace = newValue
        }
    }

    /// A DiffBIR plan's options for `p`: the plan's defaults, then what `p` sets (nil for an
    /// image-to-image plan). Refuses settings the plan cannot take.
    public func diffbirOptions(_ p: RestoreParameters) throws(RestoreError) -> RestoreOptions? {
        guard let diffbir else { return nil }
        return try diffbirOptions(p, info: diffbir.info)
    }

    func diffbirOptions(_ p: RestoreParameters, info: DiffBIRPlanInfo) throws(RestoreError) -> RestoreOptions {
        if p.overlap != nil { throw RestoreError("overlap is for image-to-image plans; a DiffBIR plan's tiles overlap by half (DiffBIR's tiled mode)") }
        var options = RestoreOptions(defaultsOf: info)
        if let upscale = p.upscale { options.upscale = upscale }
        if let sampler = p.sampler { options.sampler = sampler }
        if let steps = p.steps { options.steps = steps }
        if let cfg = p.cfg { options.cfgScale = cfg }
        options.rescaleCFG = p.rescaleCFG
        options.strength = p.strength
        options.colorFix = p.colorFix
        options.prompt = p.prompt
        options.negativePrompt = p.negativePrompt
        options.stage1Only = p.stage1Only
        if let guidance = p.guidance, guidance.scale != 0 {
            guard options.sampler == .spaced else { throw RestoreError("latent guidance works with the spaced sampler (as in DiffBIR)") }
            options.guidance = guidance
        }
        return options
    }

    /// A DiffBIR restore's memory: working memory and the weights it maps (nil for an
    /// image-to-image plan).
    public func diffbirMemoryNeeds(height: Int, width: Int, upscale: Double) -> (fixed: Int, weights: Int)? {
        guard let diffbir else { return nil }
        let need = diffbir.memoryNeeds(height: height, width: width, upscale: upscale)
        return (need.fixed, need.weights)
    }
}

/// The machine's memory as Linux reports it.
public enum SystemMemory {
    /// MemAvailable of /proc/meminfo, in bytes (nil where there is none).
    public static func available() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }
}
