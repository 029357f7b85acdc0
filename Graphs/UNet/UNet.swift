import Foundation
import IR
import Tensors

/// The SD 2.1 UNet and the IRControlNet (`diffbir/model/unet.py`, `controlnet.py`; `cldm.yaml` `unet_cfg`
/// and `controlnet_cfg`; docs/diffbir.md §2.1-2.3). JSON keys are those of the yaml.
public struct UNetConfig: Codable, Sendable, Equatable {
    public var in_channels = 4
    public var out_channels = 4
    public var model_channels = 320
    public var num_res_blocks = 2
    /// Downsampling factors at which a SpatialTransformer follows each ResBlock.
    public var attention_resolutions = [4, 2, 1]
    public var channel_mult = [1, 2, 4, 4]
    public var num_head_channels = 64
    public var context_dim = 1024
    /// ControlNet only: channels of the condition latent concatenated to the input.
    public var hint_channels = 4

    public init() {}

    /// The latent's sides must be multiples of this (one halving per level below the first).
    public var multiple: Int { 1 << (channel_mult.count - 1) }
    public var embedDim: Int { 4 * model_channels }
}

extension ModelBuilder {
    /// `t [N]` (float) → the timestep embedding MLP `[N, 4·model_channels]`.
    mutating func timeEmbedding(_ t: ValueID, _ cfg: UNetConfig) throws -> ValueID {
        let half = cfg.model_channels / 2
        let freqs = (0..<half).map { Float(exp(-log(10000.0) * Double($0) / Double(half))) }
        let n = dims(t)[0]
        let args = try mul(reshape(t, [n, 1], "t:column"), constant(freqs, [1, half], name: "t:freqs"), "t:args")
        let emb = try op(.concat(axis: 1), [op(.unary(.cos), [args], "t:cos"), op(.unary(.sin), [args], "t:sin")], "t:embedding")
        let h = try silu(linear(emb, "time_embed.0", out: cfg.embedDim), "time_embed.1")
        return try linear(h, "time_embed.2", out: cfg.embedDim)
    }

    mutating func resBlock(_ x: ValueID, _ emb: ValueID, _ key: String, out: Int) throws -> ValueID {
        let ch = dims(x)[1]
        var h = try conv(silu(groupNorm(x, key + ".in_layers.0", epsilon: 1e-5), key + ".in_layers.1"), key + ".in_layers.2", out: out)
        let e = try linear(silu(emb, key + ".emb_layers.0"), key + ".emb_layers.1", out: out)
        h = try add(h, reshape(e, [dims(e)[0], out, 1, 1], key + ":emb"), key + ":emb_add")
        h = try conv(silu(groupNorm(h, key + ".out_layers.0", epsilon: 1e-5), key + ".out_layers.1"), key + ".out_layers.3", out: out)
        let skip = ch == out ? x : try conv(x, key + ".skip_connection", out: out, kernel: 1)
        return try add(skip, h, key)
    }

    mutating func crossAttention(_ x: ValueID, _ context: ValueID, _ key: String, heads: Int, dimHead: Int) throws -> ValueID {
        let d = dims(x), cd = dims(context)
        let inner = heads * dimHead
        func split(_ v: ValueID, _ len: Int, _ tag: String, _ b: inout ModelBuilder) throws -> ValueID {
            try b.transpose(b.reshape(v, [d[0], len, heads, dimHead], key + ":" + tag + "_heads"), [0, 2, 1, 3], key + ":" + tag)
        }
        let q = try split(linear(x, key + ".to_q", out: inner, bias: false), d[1], "q", &self)
        let k = try split(linear(context, key + ".to_k", out: inner, bias: false), cd[1], "k", &self)
        let v = try split(linear(context, key + ".to_v", out: inner, bias: false), cd[1], "v", &self)
        let a = try attention(q: q, k: k, v: v, scale: Float(pow(Double(dimHead), -0.5)), key + ".attention")
        let merged = try reshape(transpose(a, [0, 2, 1, 3], key + ":merge_t"), [d[0], d[1], inner], key + ":merge")
        return try linear(merged, key + ".to_out.0", out: d[2])
    }

    mutating func spatialTransformer(_ x: ValueID, _ context: ValueID, _ key: String, cfg: UNetConfig) throws -> ValueID {
        let d = dims(x)
        let c = d[1], heads = c / cfg.num_head_channels
        var t = try linear(tokens(groupNorm(x, key + ".norm", epsilon: 1e-6), key), key + ".proj_in", out: c)
        let b = key + ".transformer_blocks.0"
        let n1 = try layerNorm(t, b + ".norm1")
        t = try add(crossAttention(n1, n1, b + ".attn1", heads: heads, dimHead: cfg.num_head_channels), t, b + ":attn1_residual")
        t = try add(crossAttention(layerNorm(t, b + ".norm2"), context, b + ".attn2", heads: heads, dimHead: cfg.num_head_channels), t, b + ":attn2_residual")
        // GEGLU feed-forward: proj → (a, gate) → a·GELU(gate) → Linear.
        let proj = try linear(layerNorm(t, b + ".norm3"), b + ".ff.net.0.proj", out: 8 * c)
        let halves = try ops(.split(axis: 2, sizes: [4 * c, 4 * c]), [proj], b + ".ff.net.0:split")
        let geglu = try mul(halves[0], gelu(halves[1], b + ".ff.net.0:gelu"), b + ".ff.net.0")
        t = try add(linear(geglu, b + ".ff.net.2", out: c), t, b + ":ff_residual")
        return try add(image(linear(t, key + ".proj_out", out: c), height: d[2], width: d[3], key), x, key + ":residual")
    }

    /// Input blocks and middle block; returns every input block's output and the middle output.
    mutating func unetEncoder(_ x: ValueID, _ emb: ValueID, _ context: ValueID, _ cfg: UNetConfig) throws -> (skips: [ValueID], middle: ValueID) {
        let mc = cfg.model_channels
        var h = try conv(x, "input_blocks.0.0", out: mc)
        var skips = [h]
        var ds = 1, index = 1
        for (level, mult) in cfg.channel_mult.enumerated() {
            for _ in 0..<cfg.num_res_blocks {
                h = try resBlock(h, emb, "input_blocks.\(index).0", out: mult * mc)
                if cfg.attention_resolutions.contains(ds) { h = try spatialTransformer(h, context, "input_blocks.\(index).1", cfg: cfg) }
                skips.append(h)
                index += 1
            }
            if level != cfg.channel_mult.count - 1 {
                h = try conv(h, "input_blocks.\(index).0.op", out: dims(h)[1], stride: 2)
                skips.append(h)
                index += 1
                ds *= 2
            }
        }
        let ch = dims(h)[1]
        h = try resBlock(h, emb, "middle_block.0", out: ch)
        h = try spatialTransformer(h, context, "middle_block.1", cfg: cfg)
        h = try resBlock(h, emb, "middle_block.2", out: ch)
        return (skips, h)
    }

    func checkLatent(_ x: ValueID, channels: Int, _ cfg: UNetConfig, _ what: String) throws {
        let d = dims(x)
        guard d.count == 4, d[1] == channels, d[2] % cfg.multiple == 0, d[3] % cfg.multiple == 0 else {
            throw ModelError("\(what): x must be [N, \(channels), h, w] with h and w multiples of \(cfg.multiple), got \(Shape(d))")
        }
    }

    /// `x [N, 4, h, w], t [N], context [N, L, context_dim], control (one per input block + middle)` → `out`.
    public mutating func controlledUNet(x: ValueID, t: ValueID, context: ValueID, control: [ValueID], _ cfg: UNetConfig) throws -> ValueID {
        try checkLatent(x, channels: cfg.in_channels, cfg, "unet")
        let emb = try timeEmbedding(t, cfg)
        let (skips, middle) = try unetEncoder(x, emb, context, cfg)
        guard control.count == skips.count + 1 else { throw ModelError("unet: needs \(skips.count + 1) control tensors, got \(control.count)") }
        var h = try add(middle, control[skips.count], "middle_block:control")
        let mc = cfg.model_channels
        var ds = 1 << (cfg.channel_mult.count - 1)
        var index = 0
        for (level, mult) in cfg.channel_mult.enumerated().reversed() {
            for i in 0...cfg.num_res_blocks {
                let s = skips.count - 1 - index
                let skip = try add(skips[s], control[s], "output_blocks.\(index):control")
                h = try resBlock(op(.concat(axis: 1), [h, skip], "output_blocks.\(index):cat"), emb, "output_blocks.\(index).0", out: mult * mc)
                var sub = 1
                if cfg.attention_resolutions.contains(ds) {
                    h = try spatialTransformer(h, context, "output_blocks.\(index).1", cfg: cfg)
                    sub = 2
                }
                if level != 0 && i == cfg.num_res_blocks {
                    h = try conv(upsample2x(h, "output_blocks.\(index).\(sub):up"), "output_blocks.\(index).\(sub).conv", out: dims(h)[1])
                    ds /= 2
                }
                index += 1
            }
        }
        return try conv(silu(groupNorm(h, "out.0", epsilon: 1e-5), "out.1"), "out.2", out: cfg.out_channels)
    }

    /// `x, hint (condition latent), t, context` → one residual per input block plus the middle one.
    public mutating func controlNet(x: ValueID, hint: ValueID, t: ValueID, context: ValueID, _ cfg: UNetConfig) throws -> [ValueID] {
        try checkLatent(x, channels: cfg.in_channels, cfg, "controlnet")
        guard dims(hint) == [dims(x)[0], cfg.hint_channels, dims(x)[2], dims(x)[3]] else {
            throw ModelError("controlnet: hint must be [N, \(cfg.hint_channels), h, w] like x, got \(type(hint).shape)")
        }
        let emb = try timeEmbedding(t, cfg)
        let (skips, middle) = try unetEncoder(op(.concat(axis: 1), [x, hint], "input:cat"), emb, context, cfg)
        var outs: [ValueID] = []
        for (i, s) in skips.enumerated() { outs.append(try conv(s, "zero_convs.\(i).0", out: dims(s)[1], kernel: 1)) }
        outs.append(try conv(middle, "middle_block_out.0", out: dims(middle)[1], kernel: 1))
        return outs
    }

    /// The number of control tensors a UNet configuration takes.
    public static func controlCount(_ cfg: UNetConfig) -> Int {
        1 + cfg.channel_mult.count * cfg.num_res_blocks + (cfg.channel_mult.count - 1) + 1
    }
}
