import Plan
import Tensors

extension Reference {
    public struct KernelError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs a plan kernel on tensors with the reference kernels: the twin of every fast kernel,
    /// used by `--validate` and for kernels without a fast implementation.
    public static func execute(_ kernel: Kernel, _ x: [Tensor], results: [(DType, Shape)]) throws -> [Tensor] {
        let out = results.first
        func epilogue(_ y: Tensor, _ steps: [EpilogueStep]) -> Tensor {
            var t = y
            for s in steps {
                switch s {
                case .activation(let name, let alpha): t = activation(t, name, alpha)
                case .scale(let v): t = binary(.mul, t, tensor([Double(v)], t.dtype, []), outShape: t.shape, outType: t.dtype)
                case .addResidual(let i), .addChannels(let i): t = binary(.add, t, x[i], outShape: t.shape, outType: t.dtype)
                case .scaleBy(let i): t = binary(.mul, t, x[i], outShape: t.shape, outType: t.dtype)
                case .preluChannels(let i): t = preluChannels(t, x[i])
                }
            }
            return t
        }
        switch kernel {
        case .conv2d(let c):
            // (Upsampling: the weight operand holds the four phase kernels.)
            if c.upsample == true { return [epilogue(upsampleConv2d(x[0], phases: x[1], bias: c.hasBias ? x[2] : nil), c.epilogue)] }
            var input = x[0]
            if let p = c.prologue {
                input = groupNorm(input, x[p.scaleOperand], x[p.biasOperand], groups: p.groups, epsilon: Double(p.epsilon))
                if p.silu { input = unary(.silu, input) }
            }
            let y = conv2d(input, x[1], c.hasBias ? x[2] : nil, strides: c.strides, pads: c.pads, dilations: c.dilations, groups: c.groups, outShape: out!.1)
            return [epilogue(y, c.epilogue)]
        case .convTranspose2d(let c):
            return [convTranspose2d(x[0], x[1], c.hasBias ? x[2] : nil, strides: c.strides, pads: c.pads, dilations: c.dilations, groups: c.groups, outShape: out!.1)]
        case .linear(let l):
            var input = x[0]
            if let i = l.inputOffsets { input = gatherLayout(input, rows: x[i], columns: x[i + 1]) }
            if let p = l.prologue { input = layerNorm(input, x[p.scaleOperand], p.biasOperand.map { x[$0] }, axis: -1, epsilon: Double(p.epsilon)) }
            var y = linear(input, x[1], l.hasBias ? x[2] : nil)
            if l.geglu == true { y = geglu(y) }
            if let o = l.outputOffsets { y = scatterLayout(y, rows: x[o], columns: x[o + 1], shape: out!.1) } else if y.shape != out!.1 { y = reshape(y, to: out!.1) }
            return [epilogue(y, l.epilogue)]
        case .matmul(let m):
            return [matmul(m.transposeA ? swapLast(x[0]) : x[0], m.transposeB ? swapLast(x[1]) : x[1], outShape: out!.1)]
        case .attention(let a):
            var q = x[0]
            let k = a.keysTransposed ? x[1] : swapLast(x[1])
            let batch = broadcastShapes(Array(q.shape.dims.dropLast(2)), Array(k.shape.dims.dropLast(2)))
            let scoresShape = batch + [q.shape.dims[q.shape.rank - 2], k.shape.dims.last!]
            let s = tensor([Double(a.scale)], q.dtype, [])
            var scores: Tensor
            if a.scaleQueries {
                q = binary(.mul, q, s, outShape: q.shape, outType: q.dtype)
                scores = matmul(q, k, outShape: Shape(scoresShape))
            } else {
                scores = binary(.mul, matmul(q, k, outShape: Shape(scoresShape)), s, outShape: Shape(scoresShape), outType: q.dtype)
            }
            for b in x.dropFirst(3) {
                scores = binary(.add, scores, b, outShape: Shape(broadcastShapes(scores.shape.dims, b.shape.dims)), outType: scores.dtype)
            }
            return [matmul(softmax(scores, axis: -1), x[2], outShape: out!.1)]
        case .groupNorm(let groups, let eps, let silu):
            let y = groupNorm(x[0], x[1], x[2], groups: groups, epsilon: Double(eps))
            return [silu ? unary(.silu, y) : y]
        case .layerNorm(let axis, let eps): return [layerNorm(x[0], x[1], x.count > 2 ? x[2] : nil, axis: axis, epsilon: Double(eps))]
        case .batchNorm(let eps): return [batchNorm(x[0], scale: x[1], bias: x[2], mean: x[3], variance: x[4], epsilon: Double(eps))]
        case .softmax(let axis, let log): return [softmax(x[0], axis: axis, log: log)]
        case .elementwise(let e):
            switch e {
            case .unary(let f): return [unary(f, x[0])]
            case .binary(let f): return [binary(f, x[0], x[1], outShape: out!.1, outType: out!.0)]
            case .leakyRelu(let a): return [leakyRelu(x[0], alpha: Double(a))]
            case .gelu(let t): return [gelu(x[0], tanhApproximation: t)]
            case .clip(let lo, let hi): return [clip(x[0], min: Double(lo), max: Double(hi))]
            case .elu(let a): return [elu(x[0], alpha: Double(a))]
            case .hardSigmoid(let a, let b): return [hardSigmoid(x[0], alpha: Double(a), beta: Double(b))]
            case .select: return [select(x[0], x[1], x[2], outShape: out!.1)]
            case .cast(let d): return [cast(x[0], to: d)]
            case .geglu: return [geglu(x[0])]
            }
        case .reduce(let kind, let axes, let keep): return [reduce(x[0], kind, axes: axes, keepDims: keep)]
        case .argExtreme(let max, let axis, let keep, let last): return [argExtreme(x[0], max: max, axis: axis, keepDims: keep, selectLastIndex: last)]
        case .cumsum(let a, let ex, let rev): return [cumsum(x[0], axis: a, exclusive: ex, reverse: rev)]
        case .einsum(let operands, let output): return [einsum(x, labels: operands, outputLabels: output, outShape: out!.1)]
        case .scatterND(let r): return [scatterND(x[0], x[1], x[2], reduction: r)]
        case .copy: return [reshape(x[0], to: out!.1)]
        case .movement(let m):
            switch m {
            case .transpose(let p): return [transpose(x[0], perm: p)]
            case .concat(let a): return [concat(x, axis: a)]
            case .split(let a, let s): return split(x[0], axis: a, sizes: s)
            case .slice(let s, let e, let st): return [slice(x[0], starts: s, ends: e, steps: st)]
            case .pad(let mode, let pads, let v): return [pad(x[0], mode: mode, pads: pads, value: Double(v))]
            case .gather(let a): return [gather(x[0], indices: x[1], axis: a)]
            case .expand: return [expand(x[0], to: out!.1)]
            case .tile(let r): return [tile(x[0], repeats: r)]
            case .resize(let r):
                return [resize(x[0], ResizeOptions(mode: r.mode, coordinateTransform: r.coordinateTransform, nearestMode: r.nearestMode,
                                                   cubicCoeffA: Double(r.cubicCoeffA), excludeOutside: r.excludeOutside, antialias: r.antialias,
                                                   sizes: out!.1.dims, scales: r.scales, roi: r.roi, extrapolationValue: Double(r.extrapolationValue)))]
            case .depthToSpace(let b, let crd): return [depthToSpace(x[0], blockSize: b, crd: crd)]
            case .spaceToDepth(let b, let crd): return [spaceToDepth(x[0], blockSize: b, crd: crd)]
            case .trilu(let upper, let k): return [trilu(x[0], upper: upper, k: k)]
            }
        }
    }

    static func swapLast(_ t: Tensor) -> Tensor {
        var perm = Array(0..<t.shape.rank)
        perm.swapAt(perm.count - 1, perm.count - 2)
        return transpose(t, perm: perm)
    }

    static func activation(_ t: Tensor, _ kind: ActivationKind, _ alpha: Float) -> Tensor {
        switch kind {
        case .silu: return unary(.silu, t)
        case .gelu: return gelu(t, tanhApproximation: false)
        case .geluTanh: return gelu(t, tanhApproximation: true)
        case .relu: return unary(.relu, t)
        case .sigmoid: return unary(.sigmoid, t)
        case .leakyRelu: return leakyRelu(t, alpha: Double(alpha))
        }
    }
}

extension Reference {
    /// `x ≥ 0 ? x : slope·x` with one slope per channel (axis 1) of `x`; `slopes` holds C values.
    public static func preluChannels(_ x: Tensor, _ slopes: Tensor) -> Tensor {
        let v = x.floats(), s = slopes.floats()
        let d = x.shape.dims
        let channels = d.count > 1 ? d[1] : 1, plane = d.count > 2 ? d[2...].reduce(1, *) : 1
        var out = v
        for i in out.indices where out[i] < 0 { out[i] = Float(Double(out[i]) * Double(s[(i / plane) % channels])) }
        return Tensor(out, shape: x.shape).converted(to: x.dtype)
    }
}
