import Plan
import Foundation
import IR
import Tensors

/// The published DiffBIR models (docs/diffbir.md §1.2, §5): which cleaner serves which task, the diffusion
/// parameterisation and schedule, and the defaults of the version's own inference code.
public enum DiffBIRVersion: String, CaseIterable, Sendable {
    case v1 = "diffbir-v1", v2 = "diffbir-v2", v21 = "diffbir-v2.1"

    public static let defaultPositivePrompt = "Cinematic, High Contrast, highly detailed, taken using a Canon EOS R camera, hyper detailed photo - realistic maximum detail, 32k, Color Grading, ultra HD, extreme meticulous detailing, skin pore detailing, hyper sharpness, perfect without deformations."
    public static let defaultNegativePrompt = "painting, oil painting, illustration, drawing, art, sketch, oil painting, cartoon, CG Style, 3D render, unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, jpeg artifacts, deformed, lowres, over-smooth."

    public var short: String { String(rawValue.dropFirst("diffbir-".count)) }

    /// The stage-1 network for a task.
    public func cleaner(task: DiffBIRPlanMetadata.Task) -> DiffBIRPlanMetadata.StageOne {
        switch (self, task) {
        case (.v1, _), (.v21, _), (.v2, .face): return .swinir
        case (.v2, .sr): return .bsrnet
        case (.v2, .denoise): return .scunet
        }
    }

    public var parameterization: Parameterization { self == .v21 ? .v : .eps }
    public var zeroTerminalSNR: Bool { self == .v21 }

    /// Prompts baked in by default: v1 "" / ""; v2 the paper's; v2.1 its CLI defaults.
    public var prompts: (positive: String, negative: String) {
        switch self {
        case .v1: return ("", "")
        case .v2: return ("", "low quality, blurry, low-resolution, noisy, unsharp, weird textures")
        case .v21: return (Self.defaultPositivePrompt, Self.defaultNegativePrompt)
        }
    }

    /// (sampler, steps, cfg) of the version's recommended settings: v1 `inference.py` (spaced, 50,
    /// cfg 1), v2 paper settings (spaced, 50, cfg 4), v2.1 CLI (edm_dpm++_3m_sde, 10, cfg 6).
    public var sampling: (sampler: SamplerKind, steps: Int, cfg: Double) {
        switch self {
        case .v1: return (.spaced, 50, 1)
        case .v2: return (.spaced, 50, 4)
        case .v21: return (.edmDpmpp3mSDE, 10, 6)
        }
    }

    /// The default `--upscale` of a task: 4 for super-resolution, 1 otherwise.
    public func upscale(task: DiffBIRPlanMetadata.Task) -> Double { task == .sr ? 4 : 1 }
}

extension NetworkConfig {
    /// Every part from one JSON object with a section per network kind: `{"unet": {...}, "vae":
    /// {...}, "clip": {...}, "swinir": {...}, "bsrnet": {...}, "scunet": {...}}` (sections optional).
    public static func load(sections json: Data) throws -> NetworkConfig {
        guard let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw ModelError("configuration must be a JSON object with sections unet, vae, clip, swinir, bsrnet, scunet")
        }
        var c = NetworkConfig()
        let known = ["unet", "vae", "clip", "swinir", "bsrnet", "scunet"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw ModelError("unknown configuration section '\(unknown)' (sections: \(known.joined(separator: ", ")))")
        }
        func part(_ k: String) throws -> Data? { try object[k].map { try JSONSerialization.data(withJSONObject: $0) } }
        if let d = try part("unet") { c.unet = try overlay(c.unet, d) }
        if let d = try part("vae") { c.vae = try overlay(c.vae, d) }
        if let d = try part("clip") { c.clip = try overlay(c.clip, d) }
        if let d = try part("swinir") { c.swinir = try overlay(c.swinir, d) }
        if let d = try part("bsrnet") { c.bsrnet = try overlay(c.bsrnet, d) }
        if let d = try part("scunet") { c.scunet = try overlay(c.scunet, d) }
        return c
    }
}

/// The graphs of a DiffBIR plan, weights bound: `stage1`, `encode`, `denoise`, `decode` at tiles of
/// `tile` pixels (latent tiles tile/8), the text encoder (kept as entry `text`, or run once to bake
/// the prompts), and the metadata the pipeline reads.
public struct DiffBIRPlanSpec {
    public var entries: [(name: String, graph: Graph)]
    /// The text encoder, when asked for.
    public var text: Graph?
    public var metadata: DiffBIRPlanMetadata
}

extension DiffBIRVersion {
    public func planSpec(task: DiffBIRPlanMetadata.Task, tile: Int, config cfg: NetworkConfig, files: [WeightFile],
                         prompts: (positive: String, negative: String), textEncoder: Bool = true) throws -> DiffBIRPlanSpec {
        let stageOne = cleaner(task: task)
        let cleaner = Network(stageOne)
        let f = Network.latentFactor(cfg)
        guard tile % 64 == 0, tile % (8 * f) == 0 else { throw ModelError("tile \(tile): must be a multiple of 64 pixels") }
        func bound(_ network: Network, _ inputs: [String: TensorType], _ label: String) throws -> Graph {
            var graph: Graph
            do { graph = try network.graph(cfg, inputs: inputs) } catch { throw ModelError("\(label): \(error)") }
            _ = try network.bind(&graph, config: cfg, files: files)
            return graph
        }
        let stage1Input = cleaner == .bsrnet ? tile / 4 : tile
        // The encoder also gives the posterior's std (guidance targets are posterior samples).
        func boundEncoder() throws -> Graph {
            var c = cfg
            c.vae.posterior_std = true
            var graph: Graph
            do { graph = try Network.vaeEncoder.graph(c, inputs: Network.vaeEncoder.inputs(c, height: tile, width: tile)) } catch { throw ModelError("VAE encoder: \(error)") }
            _ = try Network.vaeEncoder.bind(&graph, config: c, files: files)
            return graph
        }
        let entries: [(name: String, graph: Graph)] = [
            ("stage1", try bound(cleaner, cleaner.inputs(cfg, height: stage1Input, width: stage1Input), "stage 1 (\(cleaner.rawValue))")),
            ("encode", try boundEncoder()),
            ("denoise", try bound(.denoise, Network.denoise.inputs(cfg, height: tile, width: tile), "denoise")),
            ("decode", try bound(.vaeDecoder, Network.vaeDecoder.inputs(cfg, height: tile, width: tile), "VAE decoder")),
        ]
        let text = textEncoder ? try bound(.clipText, Network.clipText.inputs(cfg, height: tile, width: tile), "CLIP text encoder") : nil
        let s = sampling
        let metadata = DiffBIRPlanMetadata(
            version: short, task: task, cleaner: stageOne, parameterization: parameterization, zeroTerminalSNR: zeroTerminalSNR,
            tile: tile, latentFactor: f, minimumSide: 512, positivePrompt: prompts.positive, negativePrompt: prompts.negative,
            defaults: .init(sampler: s.sampler, steps: s.steps, cfg: s.cfg, upscale: upscale(task: task)))
        return DiffBIRPlanSpec(entries: entries, text: text, metadata: metadata)
    }
}
