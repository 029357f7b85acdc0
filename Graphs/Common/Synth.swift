import Foundation
import IR
import Tensors

/// Synthetic checkpoints with the exact published layouts (names, shapes, dtypes, nesting), filled
/// with seeded random values scaled so that activations stay finite and non-trivial through the
/// networks: matrices N(0, 1/fan_in), norm scales 1 + N(0, 0.01), biases and position tables
/// N(0, 0.01). In the networks without normalisation (SCUNet, BSRNet) the last layer of each
/// residual branch is scaled down (`residualGains`), or the residual sums grow without bound. Buffers get their real values (SwinIR's shift masks and index tables, the SD DDPM
/// schedule). docs/diffbir.md §3.1 lists the files.
public enum SynthLayout: String, CaseIterable, Sendable {
    /// `v2-1_512-ema-pruned.ckpt`: Lightning `state_dict` with the UNet, VAE, the 24-layer CLIP text
    /// tower with `text_projection` and `logit_scale`, and the DDPM buffers.
    case sd21
    /// `sd2.1-base-zsnr-laionaes5.ckpt`: as converted from diffusers (inferred): 23 CLIP layers, no
    /// projection, no DDPM buffers.
    case sd21Zsnr = "sd21-zsnr"
    /// `general_full_v1.ckpt` / `face_full_v1.ckpt`: sd21 plus `control_model.`, `preprocess_model.`
    /// (SwinIR), `cond_encoder.` (a copy of the VAE encoder) and `logvar`.
    case diffbirV1Full = "diffbir-v1-full"
    /// `v2.pth`, `DiffBIR_v2.1.pt`, `v1_general.pth`, `v1_face.pth`: the IRControlNet, unprefixed.
    case controlnet
    /// `general_swinir_v1.ckpt`, `face_swinir_v1.ckpt`, `realesrgan_s4_swinir_100k.pth`, ...: SwinIR with its buffers.
    case swinir
    /// `BSRNet.pth`.
    case bsrnet
    /// `scunet_color_real_psnr.pth`.
    case scunet

    /// Whether the published file wraps its tensors in Lightning's `{"state_dict": ...}`.
    public var wrapper: String? {
        switch self {
        case .sd21, .sd21Zsnr, .diffbirV1Full: return "state_dict"
        default: return nil
        }
    }

    /// The networks whose configuration `--config` may change, by section name.
    public var configSections: [String] {
        switch self {
        case .sd21, .sd21Zsnr: return ["unet", "vae", "clip-text"]
        case .diffbirV1Full: return ["unet", "vae", "clip-text", "swinir"]
        case .controlnet: return ["unet"]
        case .swinir: return ["swinir"]
        case .bsrnet: return ["bsrnet"]
        case .scunet: return ["scunet"]
        }
    }
}

/// One tensor of a synthetic checkpoint.
public struct SynthTensor: Sendable {
    public enum Role: Sendable {
        /// N(0, gain²/fan_in).
        case matrix(fanIn: Int, gain: Float)
        case normScale, small, buffer([Double])
        /// A parameter with a fixed value (CLIP's `logit_scale`).
        case fixed([Double])
        case index(Tensor)
    }
    public let key: String
    public let shape: Shape
    public let role: Role
    /// Counted in the parameter total (buffers are not).
    public var isParameter: Bool {
        switch role {
        case .buffer, .index: return false
        default: return true
        }
    }

    /// The tensor's values, in `dtype` for floating-point data.
    public func make(seed: UInt64, dtype: DType) -> Tensor {
        switch role {
        case .index(let t): return t
        case .buffer(let values), .fixed(let values): return Tensor(values.map { Float($0) }, shape: shape).converted(to: dtype)
        default: break
        }
        var rng = SynthRandom(seed: seed ^ SynthRandom.hash(key))
        let n = shape.count
        var values = [Float](repeating: 0, count: n)
        switch role {
        case .matrix(let fanIn, let gain):
            let s = gain / Float(Double(max(fanIn, 1)).squareRoot())
            for i in 0..<n { values[i] = rng.normal() * s }
        case .normScale:
            for i in 0..<n { values[i] = 1 + 0.1 * rng.normal() }
        default:
            for i in 0..<n { values[i] = 0.1 * rng.normal() }
        }
        let t = Tensor(values, shape: shape)
        return dtype == .f32 ? t : t.converted(to: dtype)
    }
}

/// SplitMix64 + Box-Muller: the same values on every platform.
struct SynthRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private var spare: Float?

    mutating func normal() -> Float {
        if let s = spare { spare = nil; return s }
        let u1 = (Double(next() >> 11) + 0.5) * 0x1p-53, u2 = Double(next() >> 11) * 0x1p-53
        let r = (-2 * log(u1)).squareRoot()
        spare = Float(r * sin(2 * .pi * u2))
        return Float(r * cos(2 * .pi * u2))
    }

    /// FNV-1a of a key, so each tensor's values depend on its name and the seed only.
    static func hash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }
}

extension SynthLayout {
    /// The tensors of the layout, in file order.
    public func tensors(_ config: NetworkConfig) throws -> [SynthTensor] {
        switch self {
        case .sd21, .sd21Zsnr:
            var clip = config
            if self == .sd21 { clip.clip.layer = "last" }  // all 24 blocks are stored
            var out = try Self.network(.unet, config, prefix: "model.diffusion_model.")
            out += try Self.network(.vaeEncoder, config, prefix: "first_stage_model.")
            out += try Self.network(.vaeDecoder, config, prefix: "first_stage_model.")
            out += try Self.network(.clipText, clip, prefix: "cond_stage_model.")
            if self == .sd21 {
                let w = config.clip.width
                out.append(SynthTensor(key: "cond_stage_model.model.text_projection", shape: [w, w], role: .matrix(fanIn: w, gain: 1)))
                out.append(SynthTensor(key: "cond_stage_model.model.logit_scale", shape: [], role: .fixed([log(1 / 0.07)])))
                out += Self.ddpmBuffers()
            }
            return out
        case .diffbirV1Full:
            var out = try SynthLayout.sd21.tensors(config)
            out += try Self.network(.controlnet, config, prefix: "control_model.")
            out += try Self.swinIR(config.swinir, prefix: "preprocess_model.")
            out += try Self.network(.vaeEncoder, config, prefix: "cond_encoder.")
            out.append(SynthTensor(key: "logvar", shape: [1000], role: .buffer([Double](repeating: 0, count: 1000))))
            return out
        case .controlnet: return try Self.network(.controlnet, config, prefix: "")
        case .swinir: return try Self.swinIR(config.swinir, prefix: "")
        case .bsrnet: return try Self.network(.bsrnet, config, prefix: "")
        case .scunet: return try Self.network(.scunet, config, prefix: "")
        }
    }

    /// The smallest inputs a network's graph can be built with (weights do not depend on them).
    static func smallInputs(_ network: Network, _ c: NetworkConfig) -> [String: TensorType] {
        var t = network.defaultInputs(c)
        switch network {
        case .swinir: t["image"] = TensorType(.f32, [1, 3, c.swinir.multiple, c.swinir.multiple])
        case .scunet: t["image"] = TensorType(.f32, [1, 3, 64, 64])
        case .bsrnet: t["image"] = TensorType(.f32, [1, 3, 8, 8])
        case .vaeEncoder: t["image"] = TensorType(.f32, [1, 3, c.vae.multiple, c.vae.multiple])
        case .vaeDecoder: t["latent"] = TensorType(.f32, [1, c.vae.embed_dim, 1, 1])
        case .unet, .controlnet, .denoise:
            let m = c.unet.multiple
            for k in ["x", "hint"] where t[k] != nil { t[k] = TensorType(.f32, [1, t[k]!.dims[1], m, m]) }
            t["context"] = TensorType(.f32, [1, 1, c.unet.context_dim])
            t = t.filter { !$0.key.hasPrefix("control_") }
        case .clipText: break
        }
        return t
    }

    /// Gains of residual-branch output layers, by key fragment (found by running the full-size
    /// PyTorch networks: without them SCUNet's output reaches 1e5).
    static let residualGains: [Network: [(String, Float)]] = [
        .scunet: [(".conv1_2.", 0.3), (".conv_block.2.", 0.5)],
        .bsrnet: [(".conv5.", 0.5), ("trunk_conv.", 0.5)],
    ]

    /// A network's weights with their roles, read from how the graph uses each.
    static func network(_ network: Network, _ config: NetworkConfig, prefix: String) throws -> [SynthTensor] {
        let g = try network.graph(config, inputs: smallInputs(network, config))
        var role: [ValueID: SynthTensor.Role] = [:]
        for n in g.nodes {
            for (k, v) in n.inputs.enumerated() where g.values[v].weightKey != nil && role[v] == nil {
                let d = g.type(v).dims
                switch (n.op, k) {
                case (.layerNorm, 1), (.groupNorm, 1): role[v] = .normScale
                case (.layerNorm, 2), (.groupNorm, 2), (.conv, 2), (.convTranspose, 2), (.linear, 2): role[v] = .small
                case (.conv, 1), (.linear, 1):
                    let key = g.values[v].weightKey!
                    let gain = residualGains[network]?.first { key.contains($0.0) }?.1 ?? 1
                    role[v] = .matrix(fanIn: d.dropFirst().reduce(1, *), gain: gain)
                case (.convTranspose, 1): role[v] = .matrix(fanIn: d[0], gain: 1)
                case (.gather, 0) where d.count == 2 && network == .clipText: role[v] = .matrix(fanIn: d[1], gain: 1)
                default: role[v] = .small
                }
            }
        }
        return g.weights.map { w in
            SynthTensor(key: prefix + w.key, shape: w.type.shape, role: role[g.weightIndex[w.key]!] ?? .small)
        }
    }

    /// SwinIR's parameters and, after each block's, its stored buffers: `attn_mask` (odd blocks, for
    /// the configured resolution) and `relative_position_index` (int64).
    static func swinIR(_ cfg: SwinIRConfig, prefix: String) throws -> [SynthTensor] {
        var c = NetworkConfig()
        c.swinir = cfg
        let params = try network(.swinir, c, prefix: prefix)
        let ws = cfg.img_size > cfg.window_size ? cfg.window_size : cfg.img_size
        var out: [SynthTensor] = []
        for p in params {
            out.append(p)
            // The buffers are emitted beside the block's relative position table.
            if p.key.hasSuffix(".attn.relative_position_bias_table") {
                let block = String(p.key.dropLast(".attn.relative_position_bias_table".count))
                let j = Int(block.split(separator: ".").last!)!
                if j % 2 == 1 && cfg.img_size > cfg.window_size {
                    let n = ws * ws, nw = (cfg.img_size / ws) * (cfg.img_size / ws)
                    let mask = SwinIRMasks.shiftMask(height: cfg.img_size, width: cfg.img_size, ws: ws, shift: ws / 2)
                    out.append(SynthTensor(key: block + ".attn_mask", shape: [nw, n, n], role: .buffer(mask.map(Double.init))))
                }
                out.append(SynthTensor(key: block + ".attn.relative_position_index", shape: [ws * ws, ws * ws], role: .index(SwinIRMasks.relativeIndex(ws))))
            }
        }
        return out
    }

    /// The DDPM buffers of SD 2.1's LatentDiffusion (linear β from 0.00085 to 0.012 in √-space, 1000 steps).
    static func ddpmBuffers() -> [SynthTensor] {
        let t = 1000
        let betas = (0..<t).map { i -> Double in
            let s = 0.00085.squareRoot() + (0.012.squareRoot() - 0.00085.squareRoot()) * Double(i) / Double(t - 1)
            return s * s
        }
        var ac: [Double] = []
        var p = 1.0
        for b in betas { p *= 1 - b; ac.append(p) }
        let prev: [Double] = [1.0] + Array(ac.dropLast())
        var variance = [Double](repeating: 0, count: t), coef1 = variance, coef2 = variance
        for i in 0..<t {
            let oneMinus = 1 - ac[i]
            variance[i] = betas[i] * (1 - prev[i]) / oneMinus
            coef1[i] = betas[i] * prev[i].squareRoot() / oneMinus
            coef2[i] = (1 - prev[i]) * (1 - betas[i]).squareRoot() / oneMinus
        }
        var buffers: [(String, [Double])] = [("betas", betas), ("alphas_cumprod", ac), ("alphas_cumprod_prev", prev)]
        buffers.append(("sqrt_alphas_cumprod", ac.map { $0.squareRoot() }))
        buffers.append(("sqrt_one_minus_alphas_cumprod", ac.map { (1 - $0).squareRoot() }))
        buffers.append(("log_one_minus_alphas_cumprod", ac.map { log(1 - $0) }))
        buffers.append(("sqrt_recip_alphas_cumprod", ac.map { (1 / $0).squareRoot() }))
        buffers.append(("sqrt_recipm1_alphas_cumprod", ac.map { (1 / $0 - 1).squareRoot() }))
        buffers.append(("posterior_variance", variance))
        buffers.append(("posterior_log_variance_clipped", variance.map { log(max($0, 1e-20)) }))
        buffers.append(("posterior_mean_coef1", coef1))
        buffers.append(("posterior_mean_coef2", coef2))
        return buffers.map { SynthTensor(key: $0.0, shape: [t], role: .buffer($0.1)) }
    }

    /// The layout's configuration from `--config`: sections by network for multi-network layouts
    /// (`{"unet": {...}, "vae": {...}}`), the network's own keys otherwise.
    public func config(json: Data?) throws -> NetworkConfig {
        guard let json else { return NetworkConfig() }
        let sections = configSections
        if sections.count == 1 {
            let network: Network = sections[0] == "unet" ? .controlnet : Network(rawValue: sections[0])!
            return try NetworkConfig.load(network, json: json)
        }
        guard let object = try JSONSerialization.jsonObject(with: json) as? [String: Any] else { throw ModelError("configuration must be a JSON object") }
        var c = NetworkConfig()
        for (key, value) in object {
            guard sections.contains(key) else { throw ModelError("unknown section '\(key)' for layout \(rawValue) (sections: \(sections.joined(separator: ", ")))") }
            let data = try JSONSerialization.data(withJSONObject: value)
            switch key {
            case "unet": c.unet = try NetworkConfig.load(.unet, json: data).unet
            case "vae": c.vae = try NetworkConfig.load(.vaeEncoder, json: data).vae
            case "clip-text": c.clip = try NetworkConfig.load(.clipText, json: data).clip
            case "swinir": c.swinir = try NetworkConfig.load(.swinir, json: data).swinir
            default: break
            }
        }
        return c
    }
}
