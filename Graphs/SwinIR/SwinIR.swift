import Foundation
import IR
import Tensors

/// DiffBIR's SwinIR (`diffbir/model/swinir.py`, `configs/inference/swinir.yaml`; docs/diffbir.md §2.6).
/// JSON keys are those of the yaml.
public struct SwinIRConfig: Codable, Sendable, Equatable {
    public var embed_dim = 180
    public var depths = [6, 6, 6, 6, 6, 6, 6, 6]
    public var num_heads = [6, 6, 6, 6, 6, 6, 6, 6]
    public var window_size = 8
    public var mlp_ratio = 2.0
    /// The feature resolution the shift masks are stored for; a block shifts only when it exceeds the window.
    public var img_size = 64
    public var unshuffle_scale = 8
    /// Channels of the upsampler (hard-coded 64 in DiffBIR; smaller for test fixtures).
    public var num_feat = 64

    public init() {}

    /// Inputs must be multiples of this many pixels (unshuffle × window).
    public var multiple: Int { unshuffle_scale * window_size }
}

/// The key layout the checkpoints store but the graph recomputes.
public enum SwinIRKeys {
    static func ignored(_ key: String) -> Bool { key.hasSuffix(".attn_mask") || key.hasSuffix(".relative_position_index") }
}

extension ModelBuilder {
    /// `image [N, 3, H, W]` in [0, 1] → restored image, same size; H, W multiples of 64 (with the
    /// DiffBIR config).
    public mutating func swinIR(_ input: ValueID, _ cfg: SwinIRConfig) throws -> ValueID {
        let d = dims(input)
        guard d.count == 4, d[1] == 3, d[2] % cfg.multiple == 0, d[3] % cfg.multiple == 0 else {
            throw ModelError("swinir: the image must be [N, 3, H, W] with H and W multiples of \(cfg.multiple), got \(Shape(d))")
        }
        let mean = constant([0.4488, 0.4371, 0.4040], [1, 3, 1, 1], name: "mean")
        let s = cfg.unshuffle_scale, c = cfg.embed_dim
        var x = try op(.binary(.sub), [input, mean], "sub_mean")
        x = try op(.spaceToDepth(blockSize: s, order: .crd), [x], "conv_first.0")
        x = try conv(x, "conv_first.1", out: c)
        let (h, w) = (d[2] / s, d[3] / s)
        var t = try layerNorm(tokens(x, "patch_embed"), "patch_embed.norm")
        let ws = cfg.img_size > cfg.window_size ? cfg.window_size : cfg.img_size
        for (i, (depth, heads)) in zip(cfg.depths, cfg.num_heads).enumerated() {
            let layerInput = t
            for j in 0..<depth {
                let shift = j % 2 == 1 && cfg.img_size > cfg.window_size ? ws / 2 : 0
                t = try swinBlock(t, "layers.\(i).residual_group.blocks.\(j)", heads: heads, ws: ws, shift: shift, height: h, width: w, mlpRatio: cfg.mlp_ratio)
            }
            let y = try conv(image(t, height: h, width: w, "layers.\(i).patch_unembed"), "layers.\(i).conv", out: c)
            t = try add(tokens(y, "layers.\(i).patch_embed"), layerInput, "layers.\(i)")
        }
        t = try layerNorm(t, "norm")
        x = try add(conv(image(t, height: h, width: w, "patch_unembed"), "conv_after_body", out: c), x, "body")
        x = try leakyRelu(conv(x, "conv_before_upsample.0", out: cfg.num_feat), 0.01, "conv_before_upsample.1")
        var level = 1
        var scale = 1
        while scale < s {
            x = try leakyRelu(conv(upsample2x(x, "up\(level)"), "conv_up\(level)", out: cfg.num_feat), 0.2, "lrelu_up\(level)")
            level += 1
            scale *= 2
        }
        x = try conv(leakyRelu(conv(x, "conv_hr", out: cfg.num_feat), 0.2, "lrelu_hr"), "conv_last", out: 3)
        return try add(x, mean, "add_mean")
    }

    /// One Swin block on tokens `[B, h·w, C]`.
    mutating func swinBlock(_ x: ValueID, _ key: String, heads: Int, ws: Int, shift: Int, height h: Int, width w: Int, mlpRatio: Double) throws -> ValueID {
        let d = dims(x)
        let (b, c) = (d[0], d[2])
        let n = ws * ws, nw = (h / ws) * (w / ws), hd = c / heads
        var y = try reshape(layerNorm(x, key + ".norm1"), [b, h, w, c], key + ":grid")
        if shift > 0 {
            y = try roll(roll(y, shift: -shift, axis: 1, key + ":roll_h"), shift: -shift, axis: 2, key + ":roll_w")
        }
        // Windows, row-major: [B·nW, ws², C].
        y = try reshape(y, [b, h / ws, ws, w / ws, ws, c], key + ":split")
        y = try reshape(transpose(y, [0, 1, 3, 2, 4, 5], key + ":windows_t"), [b * nw, n, c], key + ":windows")
        let qkv = try linear(y, key + ".attn.qkv", out: 3 * c)
        let parts = try ops(.split(axis: 0, sizes: [1, 1, 1]),
                            [transpose(reshape(qkv, [b * nw, n, 3, heads, hd], key + ":qkv_split"), [2, 0, 3, 1, 4], key + ":qkv_t")], key + ":qkv")
        let (q, k, v) = try (reshape(parts[0], [b * nw, heads, n, hd], key + ":q"), reshape(parts[1], [b * nw, heads, n, hd], key + ":k"),
                             reshape(parts[2], [b * nw, heads, n, hd], key + ":v"))
        // Relative position bias: table[(Δrow + ws − 1)·(2ws − 1) + Δcol + ws − 1] → [heads, n, n].
        let table = try weight(key + ".attn.relative_position_bias_table", [(2 * ws - 1) * (2 * ws - 1), heads])
        let index = graph.addConstant(SwinIRMasks.relativeIndex(ws), name: key + ".attn.relative_position_index")
        let gathered = try op(.gather(axis: 0), [table, index], key + ":bias_gather")
        let bias = try transpose(reshape(gathered, [n, n, heads], key + ":bias_grid"), [2, 0, 1], key + ":bias")
        // scale = head_dim ** -0.5, applied to q; scores + bias, then (shifted windows) + mask, per image.
        let scale = Float(pow(Double(hd), -0.5))
        var a: ValueID
        if shift > 0 {
            let mask = constant(SwinIRMasks.shiftMask(height: h, width: w, ws: ws, shift: shift), [1, nw, 1, n, n], name: key + ".attn_mask")
            let qs = try reshape(q, [b, nw, heads, n, hd], key + ":q5"), ks = try reshape(k, [b, nw, heads, n, hd], key + ":k5")
            let vs = try reshape(v, [b, nw, heads, n, hd], key + ":v5")
            a = try attention(q: qs, k: ks, v: vs, scale: scale, biases: [reshape(bias, [1, 1, heads, n, n], key + ":bias5"), mask],
                              scaleQueries: true, key + ".attn")
            a = try reshape(a, [b * nw, heads, n, hd], key + ":attn4")
        } else {
            a = try attention(q: q, k: k, v: v, scale: scale, biases: [bias], scaleQueries: true, key + ".attn")
        }
        a = try linear(reshape(transpose(a, [0, 2, 1, 3], key + ":heads_t"), [b * nw, n, c], key + ":merge"), key + ".attn.proj", out: c)
        // Windows back to the grid, undo the shift.
        a = try reshape(transpose(reshape(a, [b, h / ws, w / ws, ws, ws, c], key + ":unsplit"), [0, 1, 3, 2, 4, 5], key + ":grid_t"), [b, h, w, c], key + ":grid_back")
        if shift > 0 {
            a = try roll(roll(a, shift: shift, axis: 1, key + ":unroll_h"), shift: shift, axis: 2, key + ":unroll_w")
        }
        let r = try add(x, reshape(a, [b, h * w, c], key + ":tokens_back"), key + ":residual1")
        var m = try linear(layerNorm(r, key + ".norm2"), key + ".mlp.fc1", out: Int(Double(c) * mlpRatio))
        m = try linear(gelu(m, key + ".mlp.act"), key + ".mlp.fc2", out: c)
        return try add(r, m, key)
    }
}

/// SwinIR's deterministic buffers, computed as DiffBIR computes them.
public enum SwinIRMasks {
    /// `relative_position_index` [ws², ws²] (int64): `(Δrow + ws − 1)·(2ws − 1) + Δcol + ws − 1`.
    public static func relativeIndex(_ ws: Int) -> Tensor {
        let n = ws * ws
        let t = Tensor.zeros(.i64, [n, n])
        let p = t.storage.mutableBytes!.bindMemory(to: Int64.self)
        for i in 0..<n {
            for j in 0..<n {
                let dr = i / ws - j / ws + ws - 1, dc = i % ws - j % ws + ws - 1
                p[i * n + j] = Int64(dr * (2 * ws - 1) + dc)
            }
        }
        return t
    }

    /// `attn_mask` [nW, ws², ws²]: 0 between tokens of the same band pair, −100 otherwise; bands per
    /// axis `[0, L−ws)`, `[L−ws, L−shift)`, `[L−shift, L)`; windows row-major.
    public static func shiftMask(height h: Int, width w: Int, ws: Int, shift: Int) -> [Float] {
        func band(_ i: Int, _ l: Int) -> Int { i < l - ws ? 0 : (i < l - shift ? 1 : 2) }
        let n = ws * ws, nw = (h / ws) * (w / ws)
        var mask = [Float](repeating: 0, count: nw * n * n)
        for wy in 0..<(h / ws) {
            for wx in 0..<(w / ws) {
                let win = wy * (w / ws) + wx
                var region = [Int](repeating: 0, count: n)
                for p in 0..<n { region[p] = band(wy * ws + p / ws, h) * 3 + band(wx * ws + p % ws, w) }
                for i in 0..<n { for j in 0..<n where region[i] != region[j] { mask[(win * n + i) * n + j] = -100 } }
            }
        }
        return mask
    }
}
