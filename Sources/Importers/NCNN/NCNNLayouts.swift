import Tensors

/// Published checkpoint layouts an ncnn model's weights can be written in, recognised from the
/// model's structure (not from its layer names, which are the exporter's).
public enum NCNNLayout: String, Sendable, CaseIterable {
    /// RRDBNet ×4 (ESRGAN, Real-ESRGAN x4plus, BSRNet) under BSRNet's published keys (KAIR's
    /// `BSRNet.pth`, DiffBIR v2's stage 1): `conv_first`, `RRDB_trunk.N.RDBk.convj` (N blocks of
    /// 3 dense blocks of 5 convolutions), `trunk_conv`, `upconv1`, `upconv2`, `HRconv`, `conv_last`.
    case bsrnet

    /// The configuration a recognised RRDBNet has (`nf`, `nb`, `gc`, channels).
    public struct RRDBNetShape: Sendable, Equatable {
        public var inChannels: Int, outChannels: Int, nf: Int, nb: Int, gc: Int
    }

    /// The model's weights under the layout's keys, in the layout's order; throws naming the first
    /// layer that does not fit.
    public func tensors(_ model: NCNNImport) throws(CheckpointError) -> (tensors: [(String, Tensor)], shape: RRDBNetShape) {
        let path = model.params.path
        let convs = model.params.layers.filter { $0.type == "Convolution" }
        let others = Set(model.params.layers.map(\.type)).subtracting(["Input", "Convolution", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"])
        guard others.isEmpty else {
            throw CheckpointError(path, "not an RRDBNet: it has \(others.sorted().joined(separator: ", ")) layers (an RRDBNet has convolutions, concatenations, sums and two nearest ×2 upsamplings)")
        }
        let interps = model.params.layers.filter { $0.type == "Interp" }
        guard interps.count == 2, (try? interps.allSatisfy({ try $0.int(0, 0) == 1 && $0.float(1, 1) == 2 && $0.float(2, 1) == 2 })) == true else {
            throw CheckpointError(path, "not an RRDBNet ×4: it needs exactly two nearest ×2 Interp layers, it has \(interps.count) Interp layers")
        }
        guard convs.count >= 21, (convs.count - 6) % 15 == 0 else {
            throw CheckpointError(path, "not an RRDBNet: \(convs.count) convolutions, expected 1 + 15·nb + 5")
        }
        let nb = (convs.count - 6) / 15
        var byLayer: [String: (weight: Tensor?, bias: Tensor?)] = [:]
        for w in model.weights {
            if w.name.hasSuffix(".weight") { byLayer[w.layer, default: (nil, nil)].weight = w.tensor }
            if w.name.hasSuffix(".bias") { byLayer[w.layer, default: (nil, nil)].bias = w.tensor }
        }
        func dims(_ l: NCNNLayer) throws(CheckpointError) -> [Int] {
            guard let w = byLayer[l.name]?.weight, byLayer[l.name]?.bias != nil else { throw l.error("an RRDBNet convolution has a weight and a bias", path: path) }
            return w.shape.dims
        }
        let first = try dims(convs[0])
        guard first.count == 4, first[2] == 3, first[3] == 3 else { throw convs[0].error("conv_first must be 3×3", path: path) }
        let nf = first[0], inC = first[1]
        let gc = try dims(convs[1])[0]
        let outC = try dims(convs[convs.count - 1])[0]
        let shape = RRDBNetShape(inChannels: inC, outChannels: outC, nf: nf, nb: nb, gc: gc)
        var names: [String] = ["conv_first"]
        var expected: [[Int]] = [[nf, inC, 3, 3]]
        var leaky: [Bool] = [false]
        for i in 0..<nb {
            for r in 1...3 {
                for j in 1...5 {
                    names.append("RRDB_trunk.\(i).RDB\(r).conv\(j)")
                    expected.append([j == 5 ? nf : gc, nf + (j - 1) * gc, 3, 3])
                    leaky.append(j < 5)
                }
            }
        }
        for (n, l) in [("trunk_conv", false), ("upconv1", true), ("upconv2", true), ("HRconv", true), ("conv_last", false)] {
            names.append(n)
            expected.append(n == "conv_last" ? [outC, nf, 3, 3] : [nf, nf, 3, 3])
            leaky.append(l)
        }
        var out: [(String, Tensor)] = []
        for (k, layer) in convs.enumerated() {
            let d = try dims(layer)
            guard d == expected[k] else {
                throw layer.error("as \(names[k]) of an RRDBNet (nf \(nf), gc \(gc), \(nb) blocks) its weight should be \(Shape(expected[k])), it is \(Shape(d))", path: path)
            }
            let activation = try layer.int(9, 0), slope = try layer.array(10).first ?? 0
            guard leaky[k] ? (activation == 2 && abs(slope - 0.2) < 1e-6) : activation == 0 else {
                throw layer.error("as \(names[k]) of an RRDBNet it should \(leaky[k] ? "end in a leaky ReLU of slope 0.2" : "have no activation")", path: path)
            }
            out.append((names[k] + ".weight", byLayer[layer.name]!.weight!))
            out.append((names[k] + ".bias", byLayer[layer.name]!.bias!))
        }
        return (out, shape)
    }
}
