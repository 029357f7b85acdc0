import Foundation
import Plan
import IR
import Tensors

/// The networks `diffbir run --model NAME` and `synth` know, by the names scripts rely on.
public enum Network: String, CaseIterable, Sendable {
    case swinir, bsrnet, scunet, unet, controlnet, denoise
    case vaeEncoder = "vae-encoder", vaeDecoder = "vae-decoder", clipText = "clip-text"

    /// The network of a DiffBIR stage 1.
    public init(_ stageOne: DiffBIRPlanMetadata.StageOne) {
        switch stageOne {
        case .swinir: self = .swinir
        case .bsrnet: self = .bsrnet
        case .scunet: self = .scunet
        }
    }

    /// Graph input names, in order.
    public func inputNames(_ config: NetworkConfig) -> [String] {
        switch self {
        case .swinir, .bsrnet, .scunet, .vaeEncoder: return ["image"]
        case .unet: return ["x", "t", "context"] + (0..<ModelBuilder.controlCount(config.unet)).map { "control_\($0)" }
        case .controlnet: return ["x", "t", "hint", "context"]
        case .denoise: return ["x", "t", "hint", "context", "control_scale"]
        case .vaeDecoder: return ["latent"]
        case .clipText: return ["tokens"]
        }
    }

    /// Weights this network keeps in f32 when a plan is quantised (`compile --weights-dtype`), as
    /// glob patterns over checkpoint keys (with or without a prefix): the first and last
    /// convolutions (they see raw pixels or latents, and write the output), the time embedding, and
    /// the ControlNet's 1×1 output convolutions whose results are added into the UNet. A
    /// `--quant-rule` overrides them. Norms, biases and embeddings are never quantised.
    public var quantizationExclusions: [String] {
        func anyPrefix(_ p: [String]) -> [String] { p.flatMap { [$0, "*." + $0] } }
        switch self {
        case .swinir, .bsrnet: return anyPrefix(["conv_first*", "conv_last*"])
        case .scunet: return anyPrefix(["m_head.*", "m_tail.*"])
        case .unet: return anyPrefix(["time_embed.*", "input_blocks.0.0.*", "out.2.*"])
        case .controlnet: return anyPrefix(["time_embed.*", "input_blocks.0.0.*", "zero_convs.*", "middle_block_out.*"])
        case .denoise: return Network.unet.quantizationExclusions + Network.controlnet.quantizationExclusions
        case .vaeEncoder: return anyPrefix(["encoder.conv_in.*", "encoder.conv_out.*", "quant_conv.*"])
        case .vaeDecoder: return anyPrefix(["decoder.conv_in.*", "decoder.conv_out.*", "post_quant_conv.*"])
        case .clipText: return []
        }
    }

    /// Inputs that may be left out (fed as zeros).
    public func isOptionalInput(_ name: String) -> Bool { self == .unet && name.hasPrefix("control_") }

    /// The input types of a typical call (batch 1): DiffBIR's sizes (512×512 pixels, 64×64 latents,
    /// 77 tokens), or the smallest the configuration allows when that is larger.
    public func defaultInputs(_ config: NetworkConfig) -> [String: TensorType] {
        self == .bsrnet ? inputs(config, height: 128, width: 128) : inputs(config, height: 512, width: 512)
    }

    /// The VAE's downsampling factor: 2^(levels − 1), 8 for Stable Diffusion's.
    public static func latentFactor(_ config: NetworkConfig) -> Int { 1 << max(0, config.vae.ch_mult.count - 1) }

    /// The input types for an image of `height`×`width` pixels, batch 1: latent networks (VAE decoder,
    /// UNet, ControlNet, denoise) take the latent of that image, `latentFactor` (8) times smaller per side.
    public func inputs(_ config: NetworkConfig, height: Int, width: Int) -> [String: TensorType] {
        let f = Self.latentFactor(config)
        let (lh, lw) = (height / f, width / f)
        switch self {
        case .swinir, .bsrnet, .scunet, .vaeEncoder: return ["image": TensorType(.f32, [1, 3, height, width])]
        case .vaeDecoder: return ["latent": TensorType(.f32, [1, config.vae.embed_dim, lh, lw])]
        case .clipText: return ["tokens": TensorType(.i64, [1, config.clip.context_length])]
        case .unet, .controlnet, .denoise:
            let u = config.unet
            var t: [String: TensorType] = [
                "x": TensorType(.f32, [1, u.in_channels, lh, lw]), "t": TensorType(.f32, [1]),
                "context": TensorType(.f32, [1, 77, u.context_dim]), "hint": TensorType(.f32, [1, u.hint_channels, lh, lw]),
                "control_scale": TensorType(.f32, [1]),
            ]
            if self == .unet {
                var b = ModelBuilder()
                if let g = try? Network.unet.build(config, inputs: ["x": t["x"]!, "t": t["t"]!, "context": t["context"]!], controlShapes: true, builder: &b) {
                    for (k, v) in g { t[k] = v }
                }
            }
            return t.filter { inputNames(config).contains($0.key) }
        }
    }

    /// Builds the graph for these input types (missing optional inputs are added as graph inputs with
    /// their required shapes). Weights are declared, not bound.
    public func graph(_ config: NetworkConfig, inputs: [String: TensorType]) throws -> Graph {
        var b = ModelBuilder()
        _ = try build(config, inputs: inputs, controlShapes: false, builder: &b)
        return b.graph
    }

    /// Builds into `builder`; with `controlShapes` (UNet only), returns the control inputs' types instead.
    func build(_ config: NetworkConfig, inputs: [String: TensorType], controlShapes: Bool, builder b: inout ModelBuilder) throws -> [String: TensorType] {
        func input(_ name: String) throws -> ValueID {
            guard let t = inputs[name] else { throw ModelError("\(rawValue): missing input '\(name)'") }
            return b.input(name, t.dtype, t.shape)
        }
        for name in inputs.keys where !inputNames(config).contains(name) && !(controlShapes && name.hasPrefix("control_")) {
            throw ModelError("\(rawValue) has no input '\(name)' (inputs: \(inputNames(config).joined(separator: ", ")))")
        }
        switch self {
        case .swinir: b.output("image", try b.swinIR(input("image"), config.swinir))
        case .bsrnet: b.output("image", try b.rrdbNet(input("image"), config.bsrnet))
        case .scunet: b.output("image", try b.scuNet(input("image"), config.scunet))
        case .vaeEncoder: b.output("latent", try b.vaeEncoder(input("image"), config.vae))
        case .vaeDecoder: b.output("image", try b.vaeDecoder(input("latent"), config.vae))
        case .clipText: b.output("context", try b.clipText(input("tokens"), config.clip))
        case .controlnet:
            let outs = try b.controlNet(x: input("x"), hint: input("hint"), t: input("t"), context: input("context"), config.unet)
            for (i, o) in outs.enumerated() { b.output("control_\(i)", o) }
        case .unet:
            let x = try input("x"), t = try input("t"), context = try input("context")
            // The control tensors have the shapes of the encoder's outputs: build a ControlNet-free encoder to learn them.
            var probe = ModelBuilder()
            let px = probe.input("x", b.type(x).dtype, b.type(x).shape), pt = probe.input("t", .f32, b.type(t).shape)
            let pc = probe.input("context", .f32, b.type(context).shape)
            let emb = try probe.timeEmbedding(pt, config.unet)
            let (skips, middle) = try probe.unetEncoder(px, emb, pc, config.unet)
            let shapes = (skips + [middle]).map { probe.type($0) }
            if controlShapes {
                return Dictionary(uniqueKeysWithValues: shapes.enumerated().map { ("control_\($0.offset)", $0.element) })
            }
            var control: [ValueID] = []
            for (i, s) in shapes.enumerated() {
                let name = "control_\(i)"
                if let given = inputs[name], given != s { throw ModelError("unet: input \(name) must be \(s), got \(given)") }
                control.append(b.input(name, s.dtype, s.shape))
            }
            b.output("out", try b.controlledUNet(x: x, t: t, context: context, control: control, config.unet))
        case .denoise:
            let x = try input("x"), t = try input("t"), hint = try input("hint"), context = try input("context"), scale = try input("control_scale")
            b.keyPrefix = "controlnet."
            let control = try b.controlNet(x: x, hint: hint, t: t, context: context, config.unet)
            let scaled = try control.enumerated().map { i, c throws -> ValueID in try b.mul(c, scale, "control_scale.\(i)") }
            b.keyPrefix = "unet."
            let out = try b.controlledUNet(x: x, t: t, context: context, control: scaled, config.unet)
            b.keyPrefix = ""
            b.output("out", out)
        }
        return [:]
    }

    /// The checkpoint parts the network's weights come from.
    public func parts(_ config: NetworkConfig) -> [WeightPart] {
        switch self {
        case .unet: return [.unet(graphPrefix: "")]
        case .controlnet: return [.controlNet(graphPrefix: "")]
        case .denoise: return [.controlNet(graphPrefix: "controlnet."), .unet(graphPrefix: "unet.")]
        case .vaeEncoder:
            return [WeightPart(name: "vae-encoder", graphPrefix: "", prefixes: ["first_stage_model.", "cond_encoder.", ""],
                               signature: "encoder.conv_in.weight", claims: ["encoder.", "quant_conv."])]
        case .vaeDecoder:
            return [WeightPart(name: "vae-decoder", graphPrefix: "", prefixes: ["first_stage_model.", ""],
                               signature: "decoder.conv_in.weight", claims: ["decoder.", "post_quant_conv."])]
        case .clipText:
            let used = config.clip.layersUsed
            return [WeightPart(name: "clip-text", graphPrefix: "", prefixes: ["cond_stage_model.", ""], signature: "model.token_embedding.weight",
                               claims: ["model."], ignored: { WeightPart.clipIgnored($0, layersUsed: used) })]
        case .swinir:
            return [WeightPart(name: "swinir", graphPrefix: "", prefixes: ["preprocess_model.", ""], signature: "conv_first.1.weight",
                               ignored: { SwinIRKeys.ignored($0) })]
        case .bsrnet: return [WeightPart(name: "bsrnet", graphPrefix: "", prefixes: [""], signature: "RRDB_trunk.0.RDB1.conv1.weight")]
        case .scunet: return [WeightPart(name: "scunet", graphPrefix: "", prefixes: [""], signature: "m_head.0.weight")]
        }
    }
}

/// Every network's configuration; `--config FILE.json` gives the selected network's part with the
/// yaml's keys (`{"model_channels": 32, ...}`), absent keys keeping DiffBIR's values.
public struct NetworkConfig: Sendable, Equatable {
    public var unet = UNetConfig()
    public var vae = VAEConfig()
    public var clip = CLIPTextConfig()
    public var swinir = SwinIRConfig()
    public var bsrnet = RRDBNetConfig()
    public var scunet = SCUNetConfig()

    public init() {}

    /// DiffBIR's configuration, with `json` (an object of yaml keys) applied to `network`'s part.
    public static func load(_ network: Network, json: Data?) throws -> NetworkConfig {
        var c = NetworkConfig()
        guard let json else { return c }
        switch network {
        case .unet, .controlnet, .denoise: c.unet = try overlay(c.unet, json)
        case .vaeEncoder, .vaeDecoder: c.vae = try overlay(c.vae, json)
        case .clipText: c.clip = try overlay(c.clip, json)
        case .swinir: c.swinir = try overlay(c.swinir, json)
        case .bsrnet: c.bsrnet = try overlay(c.bsrnet, json)
        case .scunet: c.scunet = try overlay(c.scunet, json)
        }
        return c
    }

    /// `defaults` with the keys of `json` replaced; a key the config does not have is an error.
    static func overlay<T: Codable>(_ defaults: T, _ json: Data) throws -> T {
        guard let base = try JSONSerialization.jsonObject(with: JSONEncoder().encode(defaults)) as? [String: Any] else {
            throw ModelError("cannot encode the default configuration")
        }
        let given: Any
        do { given = try JSONSerialization.jsonObject(with: json) } catch { throw ModelError("configuration is not valid JSON: \(error.localizedDescription)") }
        guard let user = given as? [String: Any] else { throw ModelError("configuration must be a JSON object of settings") }
        if let unknown = user.keys.sorted().first(where: { base[$0] == nil }) {
            throw ModelError("unknown configuration key '\(unknown)' (known: \(base.keys.sorted().joined(separator: ", ")))")
        }
        let merged = base.merging(user) { $1 }
        do {
            return try JSONDecoder().decode(T.self, from: JSONSerialization.data(withJSONObject: merged))
        } catch {
            throw ModelError("configuration has a value of the wrong type: \(error)")
        }
    }
}
