import IR
import Tensors

/// Builds a network's IR graph with its weights declared under their checkpoint keys.
///
/// Layers are named by the key prefix of their weights (`input_blocks.1.1.proj_in`), which makes
/// every node's provenance the checkpoint path. Activations are NCHW; token sequences `[B, N, C]`.
public struct ModelBuilder {
    public var graph = Graph()
    /// Prefix put before every weight key (`unet.` in the denoise graph).
    public var keyPrefix = ""

    public init() {}

    public func type(_ v: ValueID) -> TensorType { graph.type(v) }
    public func dims(_ v: ValueID) -> [Int] { graph.type(v).dims }

    public mutating func input(_ name: String, _ dtype: DType, _ shape: Shape) -> ValueID {
        graph.addInput(name, TensorType(dtype, shape))
    }

    public mutating func output(_ name: String, _ v: ValueID) { graph.setOutput(name, v) }

    /// A float32 weight under `key` (relative to `keyPrefix`).
    public mutating func weight(_ key: String, _ shape: Shape, _ dtype: DType = .f32) throws -> ValueID {
        try graph.addWeight(keyPrefix + key, TensorType(dtype, shape))
    }

    public mutating func constant(_ values: [Float], _ shape: Shape, name: String) -> ValueID {
        graph.addConstant(Tensor(values, shape: shape), name: name)
    }

    public mutating func scalar(_ value: Float, name: String = "scalar") -> ValueID {
        graph.addConstant(Tensor([value], shape: []), name: name)
    }

    public mutating func op(_ op: Op, _ inputs: [ValueID], _ name: String) throws -> ValueID {
        try graph.add1(op, inputs, name: keyPrefix + name)
    }

    public mutating func ops(_ op: Op, _ inputs: [ValueID], _ name: String) throws -> [ValueID] {
        try graph.add(op, inputs, name: keyPrefix + name)
    }

    // MARK: layers

    /// `Conv2d` with weight `key.weight` `[out, in/groups, k, k]` and optional `key.bias`.
    public mutating func conv(_ x: ValueID, _ key: String, out: Int, kernel: Int = 3, stride: Int = 1, pad: Int? = nil,
                              bias: Bool = true, groups: Int = 1) throws -> ValueID {
        let cin = dims(x)[1]
        let w = try weight(key + ".weight", [out, cin / groups, kernel, kernel])
        let b = bias ? [try weight(key + ".bias", [out])] : []
        let p = pad ?? kernel / 2
        return try op(.conv(Conv2D(strides: [stride, stride], pads: [p, p, p, p], groups: groups)), [x, w] + b, key)
    }

    /// `ConvTranspose2d` with weight `[in, out, k, k]`.
    public mutating func convTranspose(_ x: ValueID, _ key: String, out: Int, kernel: Int, stride: Int, bias: Bool = true) throws -> ValueID {
        let cin = dims(x)[1]
        let w = try weight(key + ".weight", [cin, out, kernel, kernel])
        let b = bias ? [try weight(key + ".bias", [out])] : []
        return try op(.convTranspose(ConvTranspose2D(strides: [stride, stride])), [x, w] + b, key)
    }

    /// `Linear` on the last axis: weight `[out, in]`, optional bias `[out]`.
    public mutating func linear(_ x: ValueID, _ key: String, out: Int, bias: Bool = true) throws -> ValueID {
        let cin = dims(x).last!
        let w = try weight(key + ".weight", [out, cin])
        let b = bias ? [try weight(key + ".bias", [out])] : []
        return try op(.linear, [x, w] + b, key)
    }

    public mutating func layerNorm(_ x: ValueID, _ key: String, epsilon: Float = 1e-5) throws -> ValueID {
        let c = dims(x).last!
        return try op(.layerNorm(axis: -1, epsilon: epsilon), [x, try weight(key + ".weight", [c]), try weight(key + ".bias", [c])], key)
    }

    public mutating func groupNorm(_ x: ValueID, _ key: String, groups: Int = 32, epsilon: Float) throws -> ValueID {
        let c = dims(x)[1]
        return try op(.groupNorm(groups: groups, epsilon: epsilon), [x, try weight(key + ".weight", [c]), try weight(key + ".bias", [c])], key)
    }

    public mutating func silu(_ x: ValueID, _ name: String) throws -> ValueID { try op(.unary(.silu), [x], name) }
    public mutating func gelu(_ x: ValueID, _ name: String) throws -> ValueID { try op(.gelu(.none), [x], name) }
    public mutating func leakyRelu(_ x: ValueID, _ slope: Float, _ name: String) throws -> ValueID { try op(.leakyRelu(alpha: slope), [x], name) }
    public mutating func add(_ a: ValueID, _ b: ValueID, _ name: String) throws -> ValueID { try op(.binary(.add), [a, b], name) }
    public mutating func mul(_ a: ValueID, _ b: ValueID, _ name: String) throws -> ValueID { try op(.binary(.mul), [a, b], name) }
    public mutating func reshape(_ x: ValueID, _ shape: [Int], _ name: String) throws -> ValueID { try op(.reshape(Shape(shape)), [x], name) }
    public mutating func transpose(_ x: ValueID, _ perm: [Int], _ name: String) throws -> ValueID { try op(.transpose(perm), [x], name) }

    /// Nearest-neighbour ×2 (PyTorch `interpolate(scale_factor=2, mode="nearest")`).
    public mutating func upsample2x(_ x: ValueID, _ name: String) throws -> ValueID {
        let d = dims(x)
        let r = Resize(mode: .nearest, coordinateTransform: .asymmetric, nearestMode: .floor, sizes: [d[0], d[1], 2 * d[2], 2 * d[3]],
                       scales: [1, 1, 2, 2])
        return try op(.resize(r), [x], name)
    }

    /// NCHW image → tokens `[B, H·W, C]`.
    public mutating func tokens(_ x: ValueID, _ name: String) throws -> ValueID {
        let d = dims(x)
        return try transpose(try reshape(x, [d[0], d[1], d[2] * d[3]], name + ":flat"), [0, 2, 1], name + ":tokens")
    }

    /// Tokens `[B, H·W, C]` → NCHW image.
    public mutating func image(_ t: ValueID, height: Int, width: Int, _ name: String) throws -> ValueID {
        let d = dims(t)
        return try reshape(try transpose(t, [0, 2, 1], name + ":channels"), [d[0], d[2], height, width], name + ":image")
    }

    /// Circular shift along `axis` by `shift` (torch.roll): `concat(x[-shift:], x[:-shift])`.
    public mutating func roll(_ x: ValueID, shift: Int, axis: Int, _ name: String) throws -> ValueID {
        let d = dims(x)
        let n = d[axis]
        let s = ((shift % n) + n) % n
        guard s != 0 else { return x }
        func part(_ start: Int, _ end: Int, _ tag: String) throws -> ValueID {
            var starts = [Int](repeating: 0, count: d.count), ends = d
            starts[axis] = start
            ends[axis] = end
            return try op(.slice(SliceSpec(starts: starts, ends: ends, steps: [Int](repeating: 1, count: d.count))), [x], name + tag)
        }
        return try op(.concat(axis: axis), [try part(n - s, n, ":tail"), try part(0, n - s, ":head")], name)
    }

    /// `softmax(q·kᵀ·scale + biases...)·v` over the last two axes (`q [..., N, d]`, `k, v [..., M, d]`);
    /// biases are added in order. `scaleQueries` scales q before the product (as SwinIR and
    /// PyTorch's MultiheadAttention do) instead of the scores after it.
    public mutating func attention(q: ValueID, k: ValueID, v: ValueID, scale: Float, biases: [ValueID] = [], scaleQueries: Bool = false,
                                   _ name: String) throws -> ValueID {
        let r = dims(k).count
        var perm = Array(0..<r)
        perm.swapAt(r - 1, r - 2)
        let kt = try transpose(k, perm, name + ":k_t")
        var scores: ValueID
        if scaleQueries {
            scores = try op(.matmul, [try mul(q, scalar(scale, name: name + ":scale"), name + ":q_scaled"), kt], name + ":scores")
        } else {
            scores = try mul(try op(.matmul, [q, kt], name + ":qk"), scalar(scale, name: name + ":scale"), name + ":scores")
        }
        for (i, bias) in biases.enumerated() { scores = try add(scores, bias, name + ":bias\(i)") }
        return try op(.matmul, [try op(.softmax(axis: -1), [scores], name + ":softmax"), v], name + ":context")
    }
}

/// An error building a network: a bad configuration or an input shape the network cannot take.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
