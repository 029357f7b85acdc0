import Foundation
import IR
import Tensors

/// The OpenCLIP ViT-H/14 text tower as DiffBIR uses it (`diffbir/model/clip.py`; `cldm.yaml`
/// `clip_cfg.text_cfg`; docs/diffbir.md §2.5): the penultimate layer's output, then `ln_final`.
public struct CLIPTextConfig: Codable, Sendable, Equatable {
    public var context_length = 77
    public var vocab_size = 49408
    public var width = 1024
    public var heads = 16
    public var layers = 24
    /// "penultimate" (DiffBIR) or "last".
    public var layer = "penultimate"

    public init() {}

    /// Transformer blocks that run.
    public var layersUsed: Int { layer == "last" ? layers : layers - 1 }
}

extension ModelBuilder {
    /// `tokens [N, 77]` (int64) → `context [N, 77, width]`.
    public mutating func clipText(_ tokens: ValueID, _ cfg: CLIPTextConfig) throws -> ValueID {
        let d = dims(tokens)
        guard d.count == 2, d[1] == cfg.context_length, type(tokens).dtype == .i64 else {
            throw ModelError("clip-text: tokens must be int64 [N, \(cfg.context_length)], got \(type(tokens))")
        }
        let (n, l, w) = (d[0], cfg.context_length, cfg.width)
        let table = try weight("model.token_embedding.weight", [cfg.vocab_size, w])
        var x = try add(op(.gather(axis: 0), [table, tokens], "model.token_embedding"), weight("model.positional_embedding", [l, w]), "model.positional_embedding:add")
        // Causal mask: −∞ above the diagonal.
        var mask = [Float](repeating: 0, count: l * l)
        for i in 0..<l { for j in (i + 1)..<max(i + 1, l) { mask[i * l + j] = -.infinity } }
        let causal = constant(mask, [l, l], name: "attn_mask")
        let heads = cfg.heads, hd = w / heads
        for i in 0..<cfg.layersUsed {
            let key = "model.transformer.resblocks.\(i)"
            let y = try layerNorm(x, key + ".ln_1")
            // nn.MultiheadAttention: packed in_proj (q | k | v), q scaled by head_dim^-0.5, out_proj.
            let inProj = try op(.linear, [y, weight(key + ".attn.in_proj_weight", [3 * w, w]), weight(key + ".attn.in_proj_bias", [3 * w])], key + ".attn.in_proj")
            let qkv = try ops(.split(axis: 2, sizes: [w, w, w]), [inProj], key + ".attn:qkv")
            func heads4(_ v: ValueID, _ tag: String, _ b: inout ModelBuilder) throws -> ValueID {
                try b.transpose(b.reshape(v, [n, l, heads, hd], key + ".attn:" + tag + "_heads"), [0, 2, 1, 3], key + ".attn:" + tag)
            }
            let a = try attention(q: heads4(qkv[0], "q", &self), k: heads4(qkv[1], "k", &self), v: heads4(qkv[2], "v", &self),
                                  scale: Float(pow(Double(hd), -0.5)), biases: [causal], scaleQueries: true, key + ".attn")
            let merged = try reshape(transpose(a, [0, 2, 1, 3], key + ".attn:merge_t"), [n, l, w], key + ".attn:merge")
            x = try add(x, linear(merged, key + ".attn.out_proj", out: w), key + ":attn_residual")
            let m = try linear(gelu(linear(layerNorm(x, key + ".ln_2"), key + ".mlp.c_fc", out: 4 * w), key + ".mlp.gelu"), key + ".mlp.c_proj", out: w)
            x = try add(x, m, key)
        }
        return try layerNorm(x, "model.ln_final")
    }
}
