import Executor
import Foundation
import Plan
import Tensors

/// What a DiffBIR plan holds: its typed metadata (`DiffBIRPlanMetadata`), checked against the entry
/// points this restorer calls.
public struct DiffBIRPlanInfo: Sendable {
    public var metadata: DiffBIRPlanMetadata
    public var version: String { metadata.version }
    public var task: DiffBIRPlanMetadata.Task { metadata.task }
    public var cleaner: DiffBIRPlanMetadata.StageOne { metadata.cleaner }
    public var parameterization: Parameterization { metadata.parameterization }
    public var zeroTerminalSNR: Bool { metadata.zeroTerminalSNR }
    /// Tile size in pixels the entry points were compiled for (latent tiles are tile/8).
    public var tile: Int { metadata.tile }
    public var latentFactor: Int { metadata.latentFactor }
    /// The smallest side the stage-1 output is brought to (512 in DiffBIR).
    public var minimumSide: Int { metadata.minimumSide }
    public var positivePrompt: String? { metadata.positivePrompt }
    public var negativePrompt: String? { metadata.negativePrompt }
    /// Defaults of the version (docs/diffbir.md §5).
    public var defaultSampler: SamplerKind { metadata.defaults.sampler }
    public var defaultSteps: Int { metadata.defaults.steps }
    public var defaultCFG: Double { metadata.defaults.cfg }
    public var defaultUpscale: Double { metadata.defaults.upscale }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    public init(_ plan: PlanFile) throws {
        let parsed: DiffBIRPlanMetadata?
        do { parsed = try plan.program.diffbir() } catch { throw Invalid(description: "\(plan.path): \(error)") }
        guard let parsed else {
            throw Invalid(description: "\(plan.path) is not a DiffBIR plan (compile it with --model diffbir-v1|diffbir-v2|diffbir-v2.1)")
        }
        metadata = parsed
        for e in [DiffBIREntryPoints.Entry.stage1, .encode, .denoise, .decode] where plan.program.entry(e.rawValue) == nil {
            throw Invalid(description: "\(plan.path): no entry point '\(e.rawValue)'")
        }
        // The entry points' interfaces this restorer calls (a plan compiled by an older version may lack some).
        for (e, output) in DiffBIREntryPoints.requiredOutputs where !(plan.program.entry(e.rawValue)?.outputs.contains { $0.name == output } ?? false) {
            throw Invalid(description: "\(plan.path): entry point '\(e.rawValue)' has no output '\(output)' (compiled by an older version? compile the plan again)")
        }
        if positivePrompt == nil && plan.program.entry(DiffBIREntryPoints.Entry.text.rawValue) == nil {
            throw Invalid(description: "\(plan.path): neither baked prompt embeddings nor a text entry point")
        }
    }
}

public struct RestoreOptions: Sendable {
    public var upscale: Double
    public var sampler: SamplerKind
    public var steps: Int
    public var cfgScale: Double
    public var rescaleCFG = false
    public var strength = 1.0
    public var colorFix = ColorFix.wavelet
    public var guidance: LatentGuidance?
    /// Prompts for a plan with a text entry point (nil: the plan's baked embeddings).
    public var prompt: String?
    public var negativePrompt: String?
    public var eta = 1.0
    public var sNoise = 1.0
    /// Peak memory to stay under, in bytes (nil: no limit).
    public var memoryBudget: Int?
    /// Stop after stage 1: the restoration network's output (DiffBIR's intermediate `cond_img`),
    /// resized to the output size, without the diffusion stage.
    public var stage1Only = false

    public init(defaultsOf info: DiffBIRPlanInfo) {
        upscale = info.defaultUpscale
        sampler = info.defaultSampler
        steps = info.defaultSteps
        cfgScale = info.defaultCFG
    }
}

/// Thrown when a restore's `isCancelled` said so, between two network runs.
public struct RestoreCancelled: Error, CustomStringConvertible, Sendable {
    public init() {}
    public var description: String { "cancelled" }
}

/// A stage of a restore, for progress reports.
public enum RestoreStage: String, Sendable {
    case stage1 = "stage 1", encode = "encode", text = "text", sampling = "sampling", decode = "decode", finish = "colour fix"
}

public struct RestoreError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The DiffBIR flow of docs/diffbir.md §1.3 (v2.1 code, which runs v1, v2 and v2.1 models) on a plan's
/// entry points. Entry points have static shapes (the plan's tile); an image whose padded size is
/// the tile runs each network once, exactly as DiffBIR does; any other size runs them on overlapping
/// tiles blended with Gaussian weights (§1.7), which is DiffBIR's tiled mode.
public final class Restorer {
    public let plan: PlanFile
    public let info: DiffBIRPlanInfo
    let executor: Executor
    /// Records every instruction the restores run (Chrome / Perfetto trace).
    public var trace: TraceRecorder? {
        get { executor.trace }
        set { executor.trace = newValue }
    }
    public private(set) var seconds: [RestoreStage: Double] = [:]
    var runOptions = RunOptions()
    /// Whether the restore under way has a memory budget.
    private var budgeted = false
    /// Whether the last restore streamed the weights (budget below weights + working memory).
    public private(set) var streamedWeights = false
    /// Asked before each network run (each step, each tile): true stops the restore with
    /// `RestoreCancelled` (a service's DELETE).
    public var isCancelled: @Sendable () -> Bool = { false }

    /// What a restore of an `height`×`width` input needs: the arena, the full-size images the flow
    /// holds at once (about ten float planes of the stage-1 output), the weights of the largest entry
    /// point, and the largest single weight (the least that streaming keeps resident).
    public func memoryNeeds(height: Int, width: Int, upscale: Double) -> (fixed: Int, weights: Int, largestWeight: Int) {
        let scale = info.cleaner == .bsrnet ? 4.0 : upscale
        var (h, w) = (Double(height) * scale, Double(width) * scale)
        let side = Double(info.minimumSide)
        if min(h, w) < side { let f = side / min(h, w); h *= f; w *= f }
        let images = Int(10 * 3 * 4 * (h + 64) * (w + 64))
        var perEntry = 0, largest = 0
        for e in plan.program.entryPoints {
            var used = Set<Int>()
            for i in e.instructions { for o in i.operands { if case .weight(let k) = o { used.insert(k) } } }
            perEntry = max(perEntry, used.reduce(0) { $0 + plan.program.weights[$1].byteCount })
            largest = max(largest, used.map { plan.program.weights[$0].byteCount }.max() ?? 0)
        }
        return (executor.arenaBytes + images + (96 << 20), perEntry, largest)
    }

    public init(plan: PlanFile, threads: Int) throws {
        self.plan = plan
        info = try DiffBIRPlanInfo(plan)
        executor = Executor(plan: plan, threads: threads)
    }

    func timed<T>(_ stage: RestoreStage, _ body: () throws -> T) rethrows -> T {
        // Under a memory budget, only the weights of the stage's network stay packed: the packed
        // weights of the others are dropped (packed again if a later image needs them).
        if budgeted, let entry = [RestoreStage.stage1: DiffBIREntryPoints.Entry.stage1, .encode: .encode, .sampling: .denoise, .decode: .decode, .text: .text][stage]?.rawValue {
            executor.releasePacked(keepingWeightsOf: entry)
        }
        let start = DispatchTime.now().uptimeNanoseconds
        defer { seconds[stage, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        return try body()
    }

    /// The plan's entry points, typed.
    var entries: DiffBIREntryPoints {
        DiffBIREntryPoints(program: plan.program) { entry, inputs in
            if self.isCancelled() { throw RestoreCancelled() }
            let r = try self.executor.run(entry: entry.rawValue, inputs: inputs, options: self.runOptions)
            return Dictionary(uniqueKeysWithValues: r.outputs.map { ($0.name, $0.tensor) })
        }
    }

    static func tensor(_ p: Planar) -> Tensor { Tensor(p.data, shape: Shape(p.shape)) }
    static func planar(_ t: Tensor) -> Planar {
        let d = t.shape.dims
        return Planar(channels: d[1], height: d[2], width: d[3], data: t.floats())
    }

    // MARK: networks on any size

    /// An image network (`network` on one tile of `size`) on `x`: once when `x` has that size, else
    /// on tiles of it with stride half of it.
    func image(size: Int, _ x: Planar, scale: Int, divide: Int, outChannels: Int, progress: (Int, Int) -> Void,
               _ network: @escaping (Tensor) throws -> Planar) throws -> Planar {
        var source = x
        // Smaller than a tile in a dimension: pad with zeros up to it, crop after.
        let (h, w) = (x.height, x.width)
        if h < size || w < size { source = x.padded(height: max(h, size), width: max(w, size)) }
        let run1: (Planar) throws -> Planar = { tile in try network(Self.tensor(tile)) }
        var y: Planar
        if source.height == size && source.width == size {
            progress(0, 1)
            y = try run1(source)
            progress(1, 1)
        } else {
            y = try Tiler.run(source, size: size, stride: size / 2, scale: scale, divide: divide, outChannels: outChannels,
                              progress: progress) { tile, _, _ in try run1(tile) }
        }
        if source.height != h || source.width != w {
            y = y.crop(y: 0, x: 0, height: h * scale / divide, width: w * scale / divide)
        }
        return y
    }

    // MARK: the flow

    /// Restores an 8-bit RGB image; returns the output pixels and size.
    public func restore<N: NoiseSource>(rgb8: [UInt8], height: Int, width: Int, options o: RestoreOptions, noise: inout N,
                                         progress: (RestoreStage, Int, Int) -> Void = { _, _, _ in }) throws -> (pixels: [UInt8], height: Int, width: Int) {
        seconds = [:]
        runOptions = RunOptions()
        streamedWeights = false
        budgeted = o.memoryBudget != nil
        if let budget = o.memoryBudget {
            let need = memoryNeeds(height: height, width: width, upscale: o.upscale)
            func gb(_ n: Int) -> String { String(format: "%.2f GB", Double(n) / 1e9) }
            guard need.fixed + need.largestWeight <= budget else {
                throw RestoreError("a memory budget of \(gb(budget)) is too small for this image with this plan: even streaming the weights it needs "
                                   + "\(gb(need.fixed + need.largestWeight)) (arena \(gb(executor.arenaBytes)) for \(info.tile)-pixel tiles, the "
                                   + "full-size images, the largest weight); compile a plan with smaller tiles or give more memory")
            }
            if need.fixed + need.weights > budget {
                runOptions.streamWeights = true
                streamedWeights = true
            }
        }
        let bsrnet = info.cleaner == .bsrnet
        // Pre-resize (PIL bicubic), except for BSRNet which upsamples ×4 itself.
        var (h, w) = (height, width)
        var pixels = rgb8
        if !bsrnet {
            let (nh, nw) = (Int(Double(height) * o.upscale), Int(Double(width) * o.upscale))
            guard nh > 0 && nw > 0 else { throw RestoreError("an upscale of \(o.upscale) makes the \(width)×\(height) image empty") }
            pixels = Resample.pilBicubic(rgb8, height: height, width: width, channels: 3, toHeight: nh, toWidth: nw)
            (h, w) = (nh, nw)
        }
        let lq = Planar(rgb8: pixels, height: h, width: w)
        let outputSize = bsrnet ? (Int(Double(h) * o.upscale), Int(Double(w) * o.upscale)) : (h, w)
        let cond = try timed(.stage1) { try stage1(lq, outputSize: outputSize, progress: { progress(.stage1, $0, $1) }) }
        if o.stage1Only {
            let out = timed(.finish) { Resample.bicubicAntialias(cond, height: outputSize.0, width: outputSize.1) }
            return (out.rgb8(), out.height, out.width)
        }
        guard cond.height >= info.minimumSide && cond.width >= info.minimumSide else {
            throw RestoreError("the stage-1 output is \(cond.width)×\(cond.height); both sides must be at least \(info.minimumSide)")
        }
        let sample = try stage2(cond, options: o, noise: &noise, progress: progress)
        let out = timed(.finish) { () -> Planar in
            let fixed = o.colorFix.apply(content: sample.map { ($0 + 1) / 2 }, style: cond)
            return Resample.bicubicAntialias(fixed, height: outputSize.0, width: outputSize.1)
        }
        progress(.finish, 1, 1)
        return (out.rgb8(), out.height, out.width)
    }

    func stage1(_ x: Planar, outputSize: (Int, Int), progress: (Int, Int) -> Void) throws -> Planar {
        let side = info.minimumSide
        switch info.cleaner {
        case .bsrnet:
            let y = try image(size: entries.tileSize(.stage1), x, scale: 4, divide: 1, outChannels: 3, progress: progress) { Self.planar(try self.entries.stage1(image: $0)) }
            if min(outputSize.0, outputSize.1) < side { return Resample.shortEdge(y, to: side) }
            return Resample.bicubicAntialias(y, height: outputSize.0, width: outputSize.1)
        case .scunet:
            let y = try image(size: entries.tileSize(.stage1), x, scale: 1, divide: 1, outChannels: 3, progress: progress) { Self.planar(try self.entries.stage1(image: $0)) }
            return min(y.height, y.width) < side ? Resample.shortEdge(y, to: side) : y
        case .swinir:
            // SwinIR: resize first, pad to 64, run, crop.
            var input = x
            if min(x.height, x.width) < side { input = Resample.shortEdge(x, to: side) }
            let padded = input.padded(toMultipleOf: 64)
            let y = try image(size: entries.tileSize(.stage1), padded, scale: 1, divide: 1, outChannels: 3, progress: progress) { Self.planar(try self.entries.stage1(image: $0)) }
            return y.crop(y: 0, x: 0, height: input.height, width: input.width)
        }
    }

    /// The text embeddings (positive, negative): baked in the plan, or computed by its text entry.
    func contexts(_ o: RestoreOptions) throws -> (Tensor, Tensor) {
        if o.prompt == nil && o.negativePrompt == nil, let p = plan.program.weightIndex(named: "diffbir.text.positive"),
           let n = plan.program.weightIndex(named: "diffbir.text.negative") {
            return (plan.weight(p).converted(to: .f32), plan.weight(n).converted(to: .f32))
        }
        guard plan.program.entry(DiffBIREntryPoints.Entry.text.rawValue) != nil else {
            throw RestoreError("\(plan.path) has its prompts baked in (\"\(info.positivePrompt ?? "")\" / \"\(info.negativePrompt ?? "")\"); "
                               + "recompile with --prompt/--negative-prompt or --text-encoder to change them")
        }
        let tokenizer = try CLIPTokenizer()
        func encode(_ s: String) throws -> Tensor {
            let ids = tokenizer.tokenize(s).map { Int64($0) }
            let t = Tensor(dtype: .i64, shape: [1, ids.count], storage: TensorStorage(byteCount: ids.count * 8))
            ids.withUnsafeBytes { t.storage.mutableBytes!.copyMemory(from: $0) }
            return try entries.text(tokens: t)
        }
        return try timed(.text) { (try encode(o.prompt ?? info.positivePrompt ?? ""), try encode(o.negativePrompt ?? info.negativePrompt ?? "")) }
    }

    func stage2<N: NoiseSource>(_ cond: Planar, options o: RestoreOptions, noise: inout N, progress: (RestoreStage, Int, Int) -> Void) throws -> Planar {
        let f = info.latentFactor
        let (h0, w0) = (cond.height, cond.width)
        let padded = cond.padded(toMultipleOf: 64)
        // The condition latent (posterior mean × 0.18215) and the posterior's std (same scale).
        let encoded = try timed(.encode) {
            // (The mean's and the std's channels side by side, tiled as one.)
            try image(size: entries.tileSize(.encode), padded.map { $0 * 2 - 1 }, scale: 1, divide: f, outChannels: 8,
                      progress: { progress(.encode, $0, $1) }) { tile in
                let (latent, std) = try self.entries.encode(image: tile)
                let (a, b) = (Self.planar(latent), Self.planar(std))
                return Planar(channels: a.channels + b.channels, height: a.height, width: a.width, data: a.data + b.data)
            }
        }
        let plane = encoded.height * encoded.width
        let cImg = Planar(channels: 4, height: encoded.height, width: encoded.width, data: Array(encoded.data[0..<(4 * plane)]))
        let cStd = Array(encoded.data[(4 * plane)...])
        let (h1, w1) = (cImg.height, cImg.width)
        let latent = cImg.padded(toMultipleOf: 8)
        let (h2, w2) = (latent.height, latent.width)
        let (positive, negative) = try contexts(o)
        let schedule = NoiseSchedule.stableDiffusion(zeroTerminalSNR: info.zeroTerminalSNR)
        var so = SamplerOptions(kind: o.sampler, steps: o.steps, cfgScale: o.cfgScale, parameterization: info.parameterization)
        so.rescaleCFG = o.rescaleCFG
        so.eta = o.eta
        so.sNoise = o.sNoise
        let xT = try noise.normal(count: 4 * h2 * w2)
        let tileLatent = entries.tileSize(.denoise)
        let scale = Tensor([Float(o.strength)], shape: [1])
        let model: LatentModel = { x, t, isPositive in
            let xp = Planar(channels: 4, height: h2, width: w2, data: x)
            let ctx = isPositive ? positive : negative
            let tt = Tensor([t], shape: [1])
            func one(_ tile: Planar, _ hint: Planar) throws -> Planar {
                Self.planar(try self.entries.denoise(x: Self.tensor(tile), t: tt, hint: Self.tensor(hint), context: ctx, controlScale: scale))
            }
            if h2 == tileLatent && w2 == tileLatent { return try one(xp, latent).data }
            // Tiled: x and the condition latent sliced alike; smaller than a tile → padded.
            let (ph, pw) = (max(h2, tileLatent), max(w2, tileLatent))
            let (xs, hs) = (xp.padded(height: ph, width: pw), latent.padded(height: ph, width: pw))
            let y = try Tiler.run(xs, size: tileLatent, stride: tileLatent / 2, outChannels: 4) { tile, ty, tx in
                try one(tile, hs.crop(y: ty, x: tx, height: tileLatent, width: tileLatent))
            }
            return y.crop(y: 0, x: 0, height: h2, width: w2).data
        }
        var guidanceFn: Sampler.Guidance?
        if let g = o.guidance {
            // v2.0's latent MSE guidance (`SpacedSampler.apply_cond_fn`): per repeat, the target is a
            // posterior sample of the condition, c = 0.18215·(μ + σ·ε), δ = −3000·scale·2(x̂₀ − c)/n,
            // and x̂₀ += δ/c1 (so the posterior mean moves by δ).
            let mean = latent.data
            let std = Planar(channels: 4, height: h1, width: w1, data: cStd).padded(height: h2, width: w2).data
            let n = Float(mean.count)
            guidanceFn = { x0, t, c1, draw in
                guard g.active(t) else { return x0 }
                var cur = x0
                let factor = Float(-3000 * g.scale) * 2 / n
                let rescale = 1 / c1
                for _ in 0..<max(1, g.repeats) {
                    let eps = try draw(mean.count)
                    for i in cur.indices {
                        let target = mean[i] + std[i] * eps[i]
                        cur[i] += factor * (cur[i] - target) * rescale
                    }
                }
                return cur
            }
        }
        progress(.sampling, 0, o.steps)
        let z = try timed(.sampling) {
            try Sampler.sample(so, schedule: schedule, xT: xT, noise: &noise, model: model, guidance: guidanceFn,
                               progress: { progress(.sampling, $0, $1) })
        }
        let zp = Planar(channels: 4, height: h2, width: w2, data: z).crop(y: 0, x: 0, height: h1, width: w1)
        let decoded = try timed(.decode) {
            try image(size: entries.tileSize(.decode), zp, scale: f, divide: 1, outChannels: 3, progress: { progress(.decode, $0, $1) }) {
                Self.planar(try self.entries.decode(latent: $0))
            }
        }
        return decoded.crop(y: 0, x: 0, height: h0, width: w0)
    }
}

/// An input image as `restore` uses it: RGB for the networks (8-bit, and for 16-bit files the
/// samples at full precision), alpha apart.
public struct LoadedImage: Sendable {
    public var width: Int
    public var height: Int
    /// 8-bit RGB, interleaved (16-bit samples reduced to their high byte, as PIL reads them).
    public var rgb8: [UInt8]
    /// The file's bits per sample (8, or 16 for 16-bit PNGs).
    public var bitDepth: Int
    /// For 16-bit files: RGB in [0, 1] at full precision (`sample / 65535`).
    public var rgb16: Planar?
    /// The alpha channel in [0, 1], when the file has one.
    public var alpha: Planar?

    public init(width: Int, height: Int, rgb8: [UInt8], bitDepth: Int = 8, rgb16: Planar? = nil, alpha: Planar? = nil) {
        self.width = width
        self.height = height
        self.rgb8 = rgb8
        self.bitDepth = bitDepth
        self.rgb16 = rgb16
        self.alpha = alpha
    }
}

/// Inputs of `restore`.
public enum InputImage {
    /// Any PNG, JPEG or WebP: RGB (gray replicated) and, apart, alpha and 16-bit precision.
    public static func load(_ path: String, maxDecodedBytes: Int = PNG.defaultMaxBytes) throws -> LoadedImage {
        guard FileManager.default.fileExists(atPath: path) else { throw RestoreError("\(path): no such file") }
        let image: Image
        do { image = try ImageFile.read(path, maxBytes: maxDecodedBytes) } catch { throw refusal(error, maxDecodedBytes) }
        return try loaded(image, name: path)
    }

    /// As `load`, from the bytes of a file (a request's body); `name` names it in errors.
    public static func decode(_ bytes: UnsafeRawBufferPointer, name: String, maxDecodedBytes: Int = PNG.defaultMaxBytes) throws -> LoadedImage {
        let image: Image
        do { image = try ImageFile.decode(bytes, path: name, maxBytes: maxDecodedBytes) } catch { throw refusal(error, maxDecodedBytes) }
        return try loaded(image, name: name)
    }

    static func refusal(_ error: ImageFile.Failure, _ maxDecodedBytes: Int) -> RestoreError {
        if error.message.contains("exceed the memory limit") {
            return RestoreError(String(format: "%@: its decoded samples would take more than %.1f MB, more than the memory limit allows (--max-memory)",
                                       error.path, Double(maxDecodedBytes) / 1e6))
        }
        return RestoreError(error.description)
    }

    static func loaded(_ image: Image, name path: String) throws -> LoadedImage {
        guard image.width > 0 && image.height > 0 else { throw RestoreError("\(path): the image is \(image.width)×\(image.height); nothing to restore") }
        let c = image.channels, plane = image.width * image.height
        let scale: Float = image.bitDepth == 16 ? 65535 : 255
        var rgb = [UInt8](repeating: 0, count: plane * 3)
        var precise = image.bitDepth == 16 ? Planar(channels: 3, height: image.height, width: image.width) : nil
        var alpha = c == 2 || c == 4 ? Planar(channels: 1, height: image.height, width: image.width) : nil
        for p in 0..<plane {
            for k in 0..<3 {
                let v = image.samples[p * c + (c >= 3 ? k : 0)]
                rgb[p * 3 + k] = UInt8(image.bitDepth == 16 ? v >> 8 : v)
                precise?.data[k * plane + p] = Float(v) / scale
            }
            alpha?.data[p] = Float(image.samples[p * c + c - 1]) / scale
        }
        return LoadedImage(width: image.width, height: image.height, rgb8: rgb, bitDepth: image.bitDepth, rgb16: precise, alpha: alpha)
    }


    /// A PNG, JPEG or WebP as 8-bit RGB the way DiffBIR's `Image.open(path).convert("RGB")` gives it: gray
    /// replicated, alpha dropped, 16-bit samples reduced to their high byte (as PIL reads them); the
    /// note says what was changed.
    /// `maxDecodedBytes`: the most the decoded samples may take, checked from the PNG's header before
    /// anything is decoded (a small file can hold a huge image).
    public static func loadRGB8(_ path: String, maxDecodedBytes: Int = PNG.defaultMaxBytes) throws -> (pixels: [UInt8], width: Int, height: Int, note: String?) {
        guard FileManager.default.fileExists(atPath: path) else { throw RestoreError("\(path): no such file") }
        let image: Image
        do { image = try ImageFile.read(path, maxBytes: maxDecodedBytes) } catch {
            if error.message.contains("exceed the memory limit") {
                throw RestoreError(String(format: "%@: its decoded samples would take more than %.1f MB, more than the memory limit allows (--max-memory)",
                                          path, Double(maxDecodedBytes) / 1e6))
            }
            throw RestoreError(error.description)
        }
        guard image.width > 0 && image.height > 0 else { throw RestoreError("\(path): the image is \(image.width)×\(image.height); nothing to restore") }
        var rgb = [UInt8](repeating: 0, count: image.width * image.height * 3)
        let c = image.channels
        for p in 0..<(image.width * image.height) {
            for k in 0..<3 {
                let v = image.samples[p * c + (c >= 3 ? k : 0)]
                rgb[p * 3 + k] = UInt8(image.bitDepth == 16 ? v >> 8 : v)
            }
        }
        var parts: [String] = []
        if image.bitDepth == 16 { parts.append("16-bit samples reduced to 8 bits (high byte, as PIL does)") }
        if c == 2 || c == 4 { parts.append("alpha channel dropped") }
        return (rgb, image.width, image.height, parts.isEmpty ? nil : "\(path): " + parts.joined(separator: "; "))
    }
}
