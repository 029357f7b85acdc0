import IR
import ReferenceKernels
import Tensors

/// Evaluates IR operations with the reference kernels: the oracle for tests, constant folding
/// (importers fold exporters' shape arithmetic through it) and `diffbir run` before compilation.
public struct ReferenceEvaluator: ConstantEvaluator {
    public init() {}

    public func evaluate(_ op: Op, _ inputs: [Tensor], outputTypes: [TensorType]) throws -> [Tensor] {
        let out = outputTypes.first
        func opt(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
        switch op {
        case .unary(let u):
            guard let f = Reference.Unary(rawValue: u.rawValue) else { throw IRError(node: "", "no reference for \(u)") }
            return [Reference.unary(f, inputs[0])]
        case .binary(let b):
            guard let f = Reference.Binary(rawValue: b.rawValue) else { throw IRError(node: "", "no reference for \(b)") }
            return [Reference.binary(f, inputs[0], inputs[1], outShape: out!.shape, outType: out!.dtype)]
        case .leakyRelu(let a): return [Reference.leakyRelu(inputs[0], alpha: Double(a))]
        case .gelu(let g): return [Reference.gelu(inputs[0], tanhApproximation: g == .tanh)]
        case .clip(let lo, let hi): return [Reference.clip(inputs[0], min: Double(lo), max: Double(hi))]
        case .elu(let a): return [Reference.elu(inputs[0], alpha: Double(a))]
        case .hardSigmoid(let a, let b): return [Reference.hardSigmoid(inputs[0], alpha: Double(a), beta: Double(b))]
        case .select: return [Reference.select(inputs[0], inputs[1], inputs[2], outShape: out!.shape)]
        case .cast(let d): return [Reference.cast(inputs[0], to: d)]
        case .softmax(let a): return [Reference.softmax(inputs[0], axis: a)]
        case .logSoftmax(let a): return [Reference.softmax(inputs[0], axis: a, log: true)]
        case .layerNorm(let a, let e): return [Reference.layerNorm(inputs[0], inputs[1], opt(2), axis: a, epsilon: Double(e))]
        case .groupNorm(let g, let e): return [Reference.groupNorm(inputs[0], inputs[1], inputs[2], groups: g, epsilon: Double(e))]
        case .instanceNorm(let e):
            return [Reference.groupNorm(inputs[0], inputs[1], inputs[2], groups: inputs[0].shape.dims[1], epsilon: Double(e))]
        case .batchNorm(let e):
            return [Reference.batchNorm(inputs[0], scale: inputs[1], bias: inputs[2], mean: inputs[3], variance: inputs[4], epsilon: Double(e))]
        case .matmul: return [Reference.matmul(inputs[0], inputs[1], outShape: out!.shape)]
        case .linear: return [Reference.linear(inputs[0], inputs[1], opt(2))]
        case .conv(let c):
            return [Reference.conv2d(inputs[0], inputs[1], opt(2), strides: c.strides, pads: c.pads, dilations: c.dilations,
                                     groups: c.groups, outShape: out!.shape)]
        case .convTranspose(let c):
            return [Reference.convTranspose2d(inputs[0], inputs[1], opt(2), strides: c.strides, pads: c.pads,
                                              dilations: c.dilations, groups: c.groups, outShape: out!.shape)]
        case .einsum(let equation):
            guard let spec = EinsumSpec.parse(equation, ranks: inputs.map(\.shape.rank)) else { throw IRError(node: "", "bad einsum") }
            return [Reference.einsum(inputs, labels: spec.operands, outputLabels: spec.output, outShape: out!.shape)]
        case .reshape(let s): return [Reference.reshape(inputs[0], to: s)]
        case .transpose(let p): return [Reference.transpose(inputs[0], perm: p)]
        case .concat(let a): return [Reference.concat(inputs, axis: a)]
        case .split(let a, let sizes): return Reference.split(inputs[0], axis: a, sizes: sizes)
        case .slice(let s): return [Reference.slice(inputs[0], starts: s.starts, ends: s.ends, steps: s.steps)]
        case .pad(let mode, let pads, let value):
            return [Reference.pad(inputs[0], mode: Reference.PadMode(rawValue: mode.rawValue)!, pads: pads, value: Double(value))]
        case .gather(let a): return [Reference.gather(inputs[0], indices: inputs[1], axis: a)]
        case .expand: return [Reference.expand(inputs[0], to: out!.shape)]
        case .tile(let r): return [Reference.tile(inputs[0], repeats: r)]
        case .resize(let r):
            let options = Reference.ResizeOptions(
                mode: r.mode, coordinateTransform: r.coordinateTransform,
                nearestMode: r.nearestMode, cubicCoeffA: Double(r.cubicCoeffA), excludeOutside: r.excludeOutside,
                antialias: r.antialias, sizes: r.sizes, scales: r.scales, roi: r.roi, extrapolationValue: Double(r.extrapolationValue))
            return [Reference.resize(inputs[0], options)]
        case .depthToSpace(let b, let order): return [Reference.depthToSpace(inputs[0], blockSize: b, crd: order == .crd)]
        case .spaceToDepth(let b, let order): return [Reference.spaceToDepth(inputs[0], blockSize: b, crd: order == .crd)]
        case .reduce(let r, let axes, let keep):
            return [Reference.reduce(inputs[0], Reference.Reduction(rawValue: r.rawValue)!, axes: axes, keepDims: keep)]
        case .argExtreme(let max, let axis, let keep, let last):
            return [Reference.argExtreme(inputs[0], max: max, axis: axis, keepDims: keep, selectLastIndex: last)]
        case .trilu(let upper, let k): return [Reference.trilu(inputs[0], upper: upper, k: k)]
        case .cumsum(let a, let ex, let rev): return [Reference.cumsum(inputs[0], axis: a, exclusive: ex, reverse: rev)]
        case .scatterND(let r):
            return [Reference.scatterND(inputs[0], inputs[1], inputs[2], reduction: Reference.ScatterReduction(rawValue: r.rawValue)!)]
        case .matmulTransposed(let ta, let tb):
            func t(_ x: Tensor, _ flag: Bool) -> Tensor {
                guard flag else { return x }
                var perm = Array(0..<x.shape.rank)
                perm.swapAt(perm.count - 1, perm.count - 2)
                return Reference.transpose(x, perm: perm)
            }
            return [Reference.matmul(t(inputs[0], ta), t(inputs[1], tb), outShape: out!.shape)]
        case .convFused(let c, let f):
            var x = f.upsampleNearest ? Reference.upsampleNearest2x(inputs[0]) : inputs[0]
            var k = 2 + (f.hasBias ? 1 : 0)
            if let p = f.prologue {
                x = Reference.groupNorm(x, inputs[k], inputs[k + 1], groups: p.groups, epsilon: Double(p.epsilon))
                if p.silu { x = Reference.unary(.silu, x) }
                k += 2
            }
            let y = Reference.conv2d(x, inputs[1], f.hasBias ? inputs[2] : nil, strides: c.strides, pads: c.pads, dilations: c.dilations,
                                     groups: c.groups, outShape: out!.shape)
            return [Self.epilogue(y, f.epilogue, residuals: Array(inputs[k...]))]
        case .linearFused(let f):
            var x = inputs[0]
            if f.gathersInput {
                x = Reference.gatherLayout(x, rows: inputs[f.inputTables], columns: inputs[f.inputTables + 1])
            }
            if let ln = f.layerNorm {
                let at = f.normOperands
                x = Reference.layerNorm(x, inputs[at], ln.hasBias ? inputs[at + 1] : nil, axis: -1, epsilon: Double(ln.epsilon))
            }
            var y = Reference.linear(x, inputs[1], f.hasBias ? inputs[2] : nil)
            if f.geglu { y = Reference.geglu(y) }
            if f.scattersOutput {
                y = Reference.scatterLayout(y, rows: inputs[f.outputTables], columns: inputs[f.outputTables + 1], shape: Shape(f.outputShape!))
            } else if let shape = f.outputShape {
                y = Reference.reshape(y, to: Shape(shape))
            }
            return [Self.epilogue(y, f.epilogue, residuals: Array(inputs[f.operandCount...]))]
        case .attention(let a):
            var q = inputs[0], k = inputs[1]
            if !a.keysTransposed {
                var perm = Array(0..<k.shape.rank)
                perm.swapAt(perm.count - 1, perm.count - 2)
                k = Reference.transpose(k, perm: perm)
            }
            let scale = Reference.tensor([Double(a.scale)], q.dtype, [])
            var scoresShape = q.shape.dims
            scoresShape[scoresShape.count - 1] = k.shape.dims.last!
            if let batch = broadcastShapes([Array(q.shape.dims.dropLast(2)), Array(k.shape.dims.dropLast(2))]) {
                scoresShape = batch + [q.shape.dims[q.shape.rank - 2], k.shape.dims.last!]
            }
            var scores: Tensor
            if a.scaleQueries {
                q = Reference.binary(.mul, q, scale, outShape: q.shape, outType: q.dtype)
                scores = Reference.matmul(q, k, outShape: Shape(scoresShape))
            } else {
                scores = Reference.matmul(q, k, outShape: Shape(scoresShape))
                scores = Reference.binary(.mul, scores, scale, outShape: scores.shape, outType: scores.dtype)
            }
            for b in inputs.dropFirst(3) {
                let shape = Shape(broadcastShapes([scores.shape.dims, b.shape.dims])!)
                scores = Reference.binary(.add, scores, b, outShape: shape, outType: scores.dtype)
            }
            return [Reference.matmul(Reference.softmax(scores, axis: -1), inputs[2], outShape: out!.shape)]
        case .geglu: return [Reference.geglu(inputs[0])]
        }
    }
}

extension ReferenceEvaluator {
    /// Applies epilogue steps in order (`addResidual` takes the residuals in order).
    static func epilogue(_ y: Tensor, _ steps: [EpilogueOp], residuals: [Tensor]) -> Tensor {
        var out = y
        var next = 0
        for step in steps {
            switch step {
            case .activation(let a): out = activation(out, a)
            case .scale(let s):
                out = Reference.binary(.mul, out, Reference.tensor([Double(s)], out.dtype, []), outShape: out.shape, outType: out.dtype)
            case .addResidual, .addChannels:
                out = Reference.binary(.add, out, residuals[next], outShape: out.shape, outType: out.dtype)
                next += 1
            case .scaleByInput:
                out = Reference.binary(.mul, out, residuals[next], outShape: out.shape, outType: out.dtype)
                next += 1
            case .preluChannels:
                out = Reference.preluChannels(out, residuals[next])
                next += 1
            }
        }
        return out
    }

    static func activation(_ x: Tensor, _ a: Activation) -> Tensor {
        switch a {
        case .silu: return Reference.unary(.silu, x)
        case .gelu: return Reference.gelu(x, tanhApproximation: false)
        case .geluTanh: return Reference.gelu(x, tanhApproximation: true)
        case .relu: return Reference.unary(.relu, x)
        case .sigmoid: return Reference.unary(.sigmoid, x)
        case .leakyRelu(let alpha): return Reference.leakyRelu(x, alpha: Double(alpha))
        }
    }
}

/// Runs a whole graph with the reference kernels, node by node, freeing each intermediate after
/// its last use.
public enum Interpreter {
    /// `inputs` by graph input name; returns the graph outputs by name.
    public static func run(_ graph: Graph, inputs: [String: Tensor], evaluator: ConstantEvaluator = ReferenceEvaluator()) throws -> [String: Tensor] {
        var live = [Tensor?](repeating: nil, count: graph.values.count)
        for i in graph.inputs {
            let v = graph.values[i]
            guard let t = inputs[v.name] else { throw IRError(node: "", "missing input '\(v.name)' (\(v.type))") }
            guard t.dtype == v.type.dtype, t.shape == v.type.shape else {
                throw IRError(node: "", "input '\(v.name)' is \(t.dtype)\(t.shape), the graph expects \(v.type)")
            }
            live[i] = t
        }
        let known = Set(graph.inputs.map { graph.values[$0].name })
        if let extra = inputs.keys.sorted().first(where: { !known.contains($0) }) {
            throw IRError(node: "", "no graph input is named '\(extra)' (inputs: \(known.sorted().joined(separator: ", ")))")
        }
        for (i, v) in graph.values.enumerated() {
            if case .weight(let key, nil) = v.definition { throw IRError(node: key, "weight has no data (bind the checkpoint first)") }
            if let c = v.constant { live[i] = c }
        }
        var remaining = [Int](repeating: 0, count: graph.values.count)
        for n in graph.nodes { for v in n.inputs { remaining[v] += 1 } }
        let kept = Set(graph.outputs.map(\.value))
        for n in graph.nodes {
            let args = n.inputs.map { live[$0]! }
            let results = try evaluator.evaluate(n.op, args, outputTypes: n.outputs.map { graph.values[$0].type })
            for (k, v) in n.outputs.enumerated() { live[v] = results[k] }
            for v in n.inputs {
                remaining[v] -= 1
                if remaining[v] == 0, !kept.contains(v), !graph.values[v].isConstant { live[v] = nil }
            }
        }
        var out: [String: Tensor] = [:]
        for (name, v) in graph.outputs { out[name] = live[v]! }
        return out
    }
}
