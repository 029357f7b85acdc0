import IR
import Tensors

/// BSRNet = RRDBNet ×4 (`diffbir/model/bsrnet.py`, `configs/inference/bsrnet.yaml`; docs/diffbir.md §2.7).
public struct RRDBNetConfig: Codable, Sendable, Equatable {
    public var in_nc = 3
    public var out_nc = 3
    public var nf = 64
    public var nb = 23
    public var gc = 32
    public var sf = 4

    public init() {}
}

extension ModelBuilder {
    /// `image [N, 3, H, W]` in [0, 1] → `[N, 3, 4H, 4W]`.
    public mutating func rrdbNet(_ input: ValueID, _ cfg: RRDBNetConfig) throws -> ValueID {
        let d = dims(input)
        guard d.count == 4, d[1] == cfg.in_nc, cfg.sf == 4 else { throw ModelError("bsrnet: the image must be [N, \(cfg.in_nc), H, W] (scale 4), got \(Shape(d))") }
        let f = try conv(input, "conv_first", out: cfg.nf)
        var t = f
        for i in 0..<cfg.nb {
            let key = "RRDB_trunk.\(i)"
            var x = t
            for r in 1...3 { x = try rdb(x, "\(key).RDB\(r)", nf: cfg.nf, gc: cfg.gc) }
            t = try add(mul(x, scalar(0.2, name: key + ":scale"), key + ":scaled"), t, key)
        }
        var y = try add(f, conv(t, "trunk_conv", out: cfg.nf), "trunk")
        y = try leakyRelu(conv(upsample2x(y, "up1"), "upconv1", out: cfg.nf), 0.2, "lrelu_up1")
        y = try leakyRelu(conv(upsample2x(y, "up2"), "upconv2", out: cfg.nf), 0.2, "lrelu_up2")
        return try conv(leakyRelu(conv(y, "HRconv", out: cfg.nf), 0.2, "lrelu_hr"), "conv_last", out: cfg.out_nc)
    }

    /// Residual dense block: five convolutions over the growing concatenation, `0.2·x5 + x`.
    mutating func rdb(_ x: ValueID, _ key: String, nf: Int, gc: Int) throws -> ValueID {
        var features = [x]
        for k in 1...4 {
            let cat = features.count == 1 ? x : try op(.concat(axis: 1), features, "\(key).cat\(k)")
            features.append(try leakyRelu(conv(cat, "\(key).conv\(k)", out: gc), 0.2, "\(key).lrelu\(k)"))
        }
        let x5 = try conv(op(.concat(axis: 1), features, "\(key).cat5"), "\(key).conv5", out: nf)
        return try add(mul(x5, scalar(0.2, name: key + ":scale"), key + ":scaled"), x, key)
    }
}
