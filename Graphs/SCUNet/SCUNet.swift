import Foundation
import IR
import Tensors

/// SCUNet (`diffbir/model/scunet.py`, `configs/inference/scunet.yaml`; docs/diffbir.md §2.8).
public struct SCUNetConfig: Codable, Sendable, Equatable {
    public var in_nc = 3
    public var config = [4, 4, 4, 4, 4, 4, 4]
    public var dim = 64
    /// Hard-coded 32 in DiffBIR; smaller for test fixtures.
    public var head_dim = 32
    /// Hard-coded 8 in DiffBIR.
    public var window_size = 8
    /// Blocks whose configured resolution is not above the window are not shifted.
    public var input_resolution = 256

    public init() {}
}

extension ModelBuilder {
    /// `image [N, 3, H, W]` in [0, 1] → same size; edge-padded to multiples of 64 inside, cropped after.
    public mutating func scuNet(_ input: ValueID, _ cfg: SCUNetConfig) throws -> ValueID {
        let d = dims(input)
        guard d.count == 4, d[1] == cfg.in_nc else { throw ModelError("scunet: the image must be [N, \(cfg.in_nc), H, W], got \(Shape(d))") }
        let (h, w) = (d[2], d[3])
        let ph = (64 - h % 64) % 64, pw = (64 - w % 64) % 64
        let x0 = ph + pw == 0 ? input : try op(.pad(mode: .edge, pads: [0, 0, 0, 0, 0, 0, ph, pw], value: 0), [input], "pad")
        let dim = cfg.dim, r = cfg.input_resolution
        func blocks(_ x: ValueID, _ key: String, start: Int, count: Int, c: Int, res: Int, b: inout ModelBuilder) throws -> ValueID {
            var y = x
            for i in 0..<count {
                y = try b.convTransBlock(y, "\(key).\(start + i)", convDim: c, transDim: c, cfg: cfg, shifted: i % 2 == 1 && res > cfg.window_size)
            }
            return y
        }
        let x1 = try conv(x0, "m_head.0", out: dim, bias: false)
        var x2 = try blocks(x1, "m_down1", start: 0, count: cfg.config[0], c: dim / 2, res: r, b: &self)
        x2 = try conv(x2, "m_down1.\(cfg.config[0])", out: 2 * dim, kernel: 2, stride: 2, pad: 0, bias: false)
        var x3 = try blocks(x2, "m_down2", start: 0, count: cfg.config[1], c: dim, res: r / 2, b: &self)
        x3 = try conv(x3, "m_down2.\(cfg.config[1])", out: 4 * dim, kernel: 2, stride: 2, pad: 0, bias: false)
        var x4 = try blocks(x3, "m_down3", start: 0, count: cfg.config[2], c: 2 * dim, res: r / 4, b: &self)
        x4 = try conv(x4, "m_down3.\(cfg.config[2])", out: 8 * dim, kernel: 2, stride: 2, pad: 0, bias: false)
        var x = try blocks(x4, "m_body", start: 0, count: cfg.config[3], c: 4 * dim, res: r / 8, b: &self)
        x = try convTranspose(add(x, x4, "skip4"), "m_up3.0", out: 4 * dim, kernel: 2, stride: 2, bias: false)
        x = try blocks(x, "m_up3", start: 1, count: cfg.config[4], c: 2 * dim, res: r / 4, b: &self)
        x = try convTranspose(add(x, x3, "skip3"), "m_up2.0", out: 2 * dim, kernel: 2, stride: 2, bias: false)
        x = try blocks(x, "m_up2", start: 1, count: cfg.config[5], c: dim, res: r / 2, b: &self)
        x = try convTranspose(add(x, x2, "skip2"), "m_up1.0", out: dim, kernel: 2, stride: 2, bias: false)
        x = try blocks(x, "m_up1", start: 1, count: cfg.config[6], c: dim / 2, res: r, b: &self)
        x = try conv(add(x, x1, "skip1"), "m_tail.0", out: cfg.in_nc, bias: false)
        if ph + pw == 0 { return x }
        return try op(.slice(SliceSpec(starts: [0, 0, 0, 0], ends: [d[0], cfg.in_nc, h, w], steps: [1, 1, 1, 1])), [x], "crop")
    }

    /// ConvTransBlock: split → (conv branch, Swin branch) → concat → 1×1 conv, residual.
    mutating func convTransBlock(_ x: ValueID, _ key: String, convDim: Int, transDim: Int, cfg: SCUNetConfig, shifted: Bool) throws -> ValueID {
        let parts = try ops(.split(axis: 1, sizes: [convDim, transDim]), [conv(x, key + ".conv1_1", out: convDim + transDim, kernel: 1)], key + ":split")
        var a = try conv(parts[0], key + ".conv_block.0", out: convDim, bias: false)
        a = try add(conv(op(.unary(.relu), [a], key + ".conv_block.1"), key + ".conv_block.2", out: convDim, bias: false), parts[0], key + ":conv_residual")
        var t = try transpose(parts[1], [0, 2, 3, 1], key + ":nhwc")
        t = try add(t, wmsa(layerNorm(t, key + ".trans_block.ln1"), key + ".trans_block.msa", cfg: cfg, shifted: shifted), key + ":msa_residual")
        var m = try linear(layerNorm(t, key + ".trans_block.ln2"), key + ".trans_block.mlp.0", out: 4 * transDim)
        m = try linear(gelu(m, key + ".trans_block.mlp.1"), key + ".trans_block.mlp.2", out: transDim)
        t = try transpose(add(t, m, key + ":mlp_residual"), [0, 3, 1, 2], key + ":nchw")
        let res = try conv(op(.concat(axis: 1), [a, t], key + ":cat"), key + ".conv1_2", out: convDim + transDim, kernel: 1)
        return try add(x, res, key)
    }

    /// Window self-attention on NHWC features, shifted (with the wrapped sub-windows masked) or not.
    mutating func wmsa(_ x: ValueID, _ key: String, cfg: SCUNetConfig, shifted: Bool) throws -> ValueID {
        let d = dims(x)
        let (b, h, w, c) = (d[0], d[1], d[2], d[3])
        let p = cfg.window_size, heads = c / cfg.head_dim, hd = cfg.head_dim
        let (hw, ww) = (h / p, w / p), n = p * p, nw = hw * ww
        var y = x
        if shifted { y = try roll(roll(y, shift: -(p / 2), axis: 1, key + ":roll_h"), shift: -(p / 2), axis: 2, key + ":roll_w") }
        y = try reshape(transpose(reshape(y, [b, hw, p, ww, p, c], key + ":split"), [0, 1, 3, 2, 4, 5], key + ":windows_t"), [b, nw, n, c], key + ":windows")
        let qkv = try linear(y, key + ".embedding_layer", out: 3 * c)
        let heads3 = try transpose(reshape(qkv, [b, nw, n, 3 * heads, hd], key + ":qkv_heads"), [3, 0, 1, 2, 4], key + ":qkv_t")
        let qkvParts = try ops(.split(axis: 0, sizes: [heads, heads, heads]), [heads3], key + ":qkv")
        // Relative bias: params [heads, 2p−1, 2p−1] at (Δrow + p − 1, Δcol + p − 1).
        let params = try weight(key + ".relative_position_params", [heads, 2 * p - 1, 2 * p - 1])
        let flat = try reshape(params, [heads, (2 * p - 1) * (2 * p - 1)], key + ":params_flat")
        var index = [Float](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { index[i * n + j] = Float((i / p - j / p + p - 1) * (2 * p - 1) + (i % p - j % p + p - 1)) } }
        let indexConst = graph.addConstant(Tensor(index, shape: [n * n]).converted(to: .i64), name: key + ":relative_index")
        let bias = try reshape(op(.gather(axis: 1), [flat, indexConst], key + ":bias_gather"), [heads, 1, 1, n, n], key + ":bias")
        var biases = [bias]
        if shifted {
            biases.append(constant(SCUNetMasks.shiftMask(hw: hw, ww: ww, p: p), [1, 1, nw, n, n], name: key + ":mask"))
        }
        var a = try attention(q: qkvParts[0], k: qkvParts[1], v: qkvParts[2], scale: Float(pow(Double(hd), -0.5)), biases: biases, key + ":attention")
        a = try reshape(transpose(a, [1, 2, 3, 0, 4], key + ":heads_t"), [b, nw, n, c], key + ":merge")
        a = try linear(a, key + ".linear", out: c)
        a = try reshape(transpose(reshape(a, [b, hw, ww, p, p, c], key + ":unsplit"), [0, 1, 3, 2, 4, 5], key + ":grid_t"), [b, h, w, c], key + ":grid")
        if shifted { a = try roll(roll(a, shift: p / 2, axis: 1, key + ":unroll_h"), shift: p / 2, axis: 2, key + ":unroll_w") }
        return a
    }
}

public enum SCUNetMasks {
    /// The shifted-window mask as an additive bias [nW·p²·p²]: −∞ between the wrapped sub-windows of
    /// the last window row and column (SCUNet's `generate_mask`), 0 elsewhere.
    public static func shiftMask(hw: Int, ww: Int, p: Int) -> [Float] {
        let s = p - p / 2, n = p * p
        var mask = [Float](repeating: 0, count: hw * ww * n * n)
        for wy in 0..<hw {
            for wx in 0..<ww {
                for i in 0..<n {
                    for j in 0..<n {
                        let (p1, p2, p3, p4) = (i / p, i % p, j / p, j % p)
                        var masked = false
                        if wy == hw - 1 && ((p1 < s && p3 >= s) || (p1 >= s && p3 < s)) { masked = true }
                        if wx == ww - 1 && ((p2 < s && p4 >= s) || (p2 >= s && p4 < s)) { masked = true }
                        if masked { mask[((wy * ww + wx) * n + i) * n + j] = -.infinity }
                    }
                }
            }
        }
        return mask
    }
}
