import Foundation
import IR
import Tensors

/// The VAE of SD 2.1 (AutoencoderKL; `diffbir/model/vae.py`, `cldm.yaml` `vae_cfg`; docs/diffbir.md §2.4).
/// JSON keys are those of the yaml's `ddconfig` (plus `embed_dim` and the latent scale).
public struct VAEConfig: Codable, Sendable, Equatable {
    public var embed_dim = 4
    public var z_channels = 4
    public var ch = 128
    public var ch_mult = [1, 2, 4, 4]
    public var num_res_blocks = 2
    public var in_channels = 3
    public var out_ch = 3
    public var scale_factor: Float = 0.18215
    /// Ours, not DiffBIR's: the encoder also outputs `std`, the posterior's standard deviation times
    /// the latent scale (`latent + std·ε` is DiffBIR's `vae_encode(sample=True)`), for guidance.
    public var posterior_std = false

    public init() {}

    // Decoding tolerates configurations without `posterior_std` (all of DiffBIR's).
    enum CodingKeys: String, CodingKey { case embed_dim, z_channels, ch, ch_mult, num_res_blocks, in_channels, out_ch, scale_factor, posterior_std }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        embed_dim = try c.decode(Int.self, forKey: .embed_dim)
        z_channels = try c.decode(Int.self, forKey: .z_channels)
        ch = try c.decode(Int.self, forKey: .ch)
        ch_mult = try c.decode([Int].self, forKey: .ch_mult)
        num_res_blocks = try c.decode(Int.self, forKey: .num_res_blocks)
        in_channels = try c.decode(Int.self, forKey: .in_channels)
        out_ch = try c.decode(Int.self, forKey: .out_ch)
        scale_factor = try c.decode(Float.self, forKey: .scale_factor)
        posterior_std = try c.decodeIfPresent(Bool.self, forKey: .posterior_std) ?? false
    }

    public var multiple: Int { 1 << (ch_mult.count - 1) }
}

extension ModelBuilder {
    mutating func vaeResBlock(_ x: ValueID, _ key: String, out: Int) throws -> ValueID {
        let cin = dims(x)[1]
        var h = try conv(silu(groupNorm(x, key + ".norm1", epsilon: 1e-6), key + ":silu1"), key + ".conv1", out: out)
        h = try conv(silu(groupNorm(h, key + ".norm2", epsilon: 1e-6), key + ":silu2"), key + ".conv2", out: out)
        let skip = cin == out ? x : try conv(x, key + ".nin_shortcut", out: out, kernel: 1)
        return try add(skip, h, key)
    }

    /// Single-head self-attention over all positions, 1×1 convolutions for q, k, v and the output.
    mutating func vaeAttention(_ x: ValueID, _ key: String) throws -> ValueID {
        let d = dims(x)
        let (b, c, hw) = (d[0], d[1], d[2] * d[3])
        let n = try groupNorm(x, key + ".norm", epsilon: 1e-6)
        // softmax(q·k / √c)·v over the H·W positions, written as tokens [b, hw, c] so that the attention
        // kernel runs it without materialising the hw × hw scores (PyTorch computes v·aᵀ: the same sums).
        let q = try transpose(reshape(conv(n, key + ".q", out: c, kernel: 1), [b, c, hw], key + ":q_flat"), [0, 2, 1], key + ":q")
        let kt = try reshape(conv(n, key + ".k", out: c, kernel: 1), [b, c, hw], key + ":k")
        let v = try transpose(reshape(conv(n, key + ".v", out: c, kernel: 1), [b, c, hw], key + ":v_flat"), [0, 2, 1], key + ":v")
        let scores = try mul(op(.matmul, [q, kt], key + ":qk"), scalar(Float(pow(Double(c), -0.5)), name: key + ":scale"), key + ":scores")
        let a = try op(.matmul, [op(.softmax(axis: -1), [scores], key + ":softmax"), v], key + ":context")
        let h = try transpose(a, [0, 2, 1], key + ":channels")
        return try add(x, conv(reshape(h, d, key + ":image"), key + ".proj_out", out: c, kernel: 1), key)
    }

    mutating func vaeMid(_ x: ValueID, _ key: String) throws -> ValueID {
        let c = dims(x)[1]
        return try vaeResBlock(vaeAttention(vaeResBlock(x, key + ".block_1", out: c), key + ".attn_1"), key + ".block_2", out: c)
    }

    /// `image [N, 3, H, W]` in [−1, 1] → posterior mean × scale `[N, 4, H/8, W/8]` (`encoder.*`, `quant_conv.*`).
    public mutating func vaeEncoder(_ input: ValueID, _ cfg: VAEConfig) throws -> ValueID {
        let d = dims(input)
        guard d.count == 4, d[1] == cfg.in_channels, d[2] % cfg.multiple == 0, d[3] % cfg.multiple == 0 else {
            throw ModelError("vae-encoder: the image must be [N, \(cfg.in_channels), H, W] with H and W multiples of \(cfg.multiple), got \(Shape(d))")
        }
        var h = try conv(input, "encoder.conv_in", out: cfg.ch)
        for (i, m) in cfg.ch_mult.enumerated() {
            for j in 0..<cfg.num_res_blocks { h = try vaeResBlock(h, "encoder.down.\(i).block.\(j)", out: cfg.ch * m) }
            if i != cfg.ch_mult.count - 1 {
                // Zero-pad right and bottom by one, then a stride-2 convolution without padding.
                let padded = try op(.pad(mode: .constant, pads: [0, 0, 0, 0, 0, 0, 1, 1], value: 0), [h], "encoder.down.\(i).downsample:pad")
                h = try conv(padded, "encoder.down.\(i).downsample.conv", out: dims(h)[1], stride: 2, pad: 0)
            }
        }
        h = try vaeMid(h, "encoder.mid")
        h = try conv(silu(groupNorm(h, "encoder.norm_out", epsilon: 1e-6), "encoder:silu_out"), "encoder.conv_out", out: 2 * cfg.z_channels)
        let moments = try conv(h, "quant_conv", out: 2 * cfg.embed_dim, kernel: 1)
        let md = dims(moments)
        let mean = try op(.slice(SliceSpec(starts: [0, 0, 0, 0], ends: [md[0], cfg.embed_dim, md[2], md[3]], steps: [1, 1, 1, 1])), [moments], "posterior_mean")
        if cfg.posterior_std {
            // DiagonalGaussianDistribution: logvar clamped to [−30, 20], std = exp(logvar / 2).
            let logvar = try op(.slice(SliceSpec(starts: [0, cfg.embed_dim, 0, 0], ends: [md[0], 2 * cfg.embed_dim, md[2], md[3]], steps: [1, 1, 1, 1])),
                                [moments], "posterior_logvar")
            let clamped = try op(.clip(min: -30, max: 20), [logvar], "posterior_logvar:clamp")
            let std = try op(.unary(.exp), [try mul(clamped, scalar(0.5, name: "half"), "posterior_logvar:half")], "posterior_std")
            output("std", try mul(std, scalar(cfg.scale_factor, name: "scale_factor_std"), "std"))
        }
        return try mul(mean, scalar(cfg.scale_factor, name: "scale_factor"), "latent")
    }

    /// `latent [N, 4, h, w]` (scaled) → image ≈ [−1, 1] `[N, 3, 8h, 8w]` (`post_quant_conv.*`, `decoder.*`).
    public mutating func vaeDecoder(_ latent: ValueID, _ cfg: VAEConfig) throws -> ValueID {
        let d = dims(latent)
        guard d.count == 4, d[1] == cfg.embed_dim else { throw ModelError("vae-decoder: the latent must be [N, \(cfg.embed_dim), h, w], got \(Shape(d))") }
        let z = try op(.binary(.div), [latent, scalar(cfg.scale_factor, name: "scale_factor")], "unscale")
        var h = try conv(conv(z, "post_quant_conv", out: cfg.z_channels, kernel: 1), "decoder.conv_in", out: cfg.ch * cfg.ch_mult.last!)
        h = try vaeMid(h, "decoder.mid")
        for (i, m) in cfg.ch_mult.enumerated().reversed() {
            for j in 0...cfg.num_res_blocks { h = try vaeResBlock(h, "decoder.up.\(i).block.\(j)", out: cfg.ch * m) }
            if i != 0 { h = try conv(upsample2x(h, "decoder.up.\(i).upsample:up"), "decoder.up.\(i).upsample.conv", out: dims(h)[1]) }
        }
        return try conv(silu(groupNorm(h, "decoder.norm_out", epsilon: 1e-6), "decoder:silu_out"), "decoder.conv_out", out: cfg.out_ch)
    }
}
