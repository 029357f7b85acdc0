import Tensors

extension Op {
    /// The attributes in a stable, readable form (`strides=[2,2] pads=[1,1,1,1]`).
    public var attributeText: String {
        func list(_ a: [Int]) -> String { "[" + a.map(String.init).joined(separator: ",") + "]" }
        func flist(_ a: [Float]) -> String { "[" + a.map { "\($0)" }.joined(separator: ",") + "]" }
        switch self {
        case .unary, .binary, .select, .matmul, .linear: return ""
        case .leakyRelu(let a): return "alpha=\(a)"
        case .gelu(let g): return "approximate=\(g.rawValue)"
        case .clip(let lo, let hi): return "min=\(lo) max=\(hi)"
        case .elu(let a): return "alpha=\(a)"
        case .hardSigmoid(let a, let b): return "alpha=\(a) beta=\(b)"
        case .cast(let d): return "to=\(d)"
        case .softmax(let a), .logSoftmax(let a): return "axis=\(a)"
        case .layerNorm(let a, let e): return "axis=\(a) eps=\(e)"
        case .groupNorm(let g, let e): return "groups=\(g) eps=\(e)"
        case .instanceNorm(let e), .batchNorm(let e): return "eps=\(e)"
        case .conv(let c): return "strides=\(list(c.strides)) pads=\(list(c.pads)) dilations=\(list(c.dilations)) groups=\(c.groups)"
        case .convTranspose(let c):
            return "strides=\(list(c.strides)) pads=\(list(c.pads)) dilations=\(list(c.dilations)) groups=\(c.groups) output_padding=\(list(c.outputPadding))"
        case .einsum(let e): return "\"\(e)\""
        case .reshape(let s): return "shape=\(list(s.dims))"
        case .transpose(let p): return "perm=\(list(p))"
        case .concat(let a): return "axis=\(a)"
        case .split(let a, let s): return "axis=\(a) sizes=\(list(s))"
        case .slice(let s): return "starts=\(list(s.starts)) ends=\(list(s.ends)) steps=\(list(s.steps))"
        case .pad(let m, let p, let v): return "mode=\(m.rawValue) pads=\(list(p))" + (m == .constant ? " value=\(v)" : "")
        case .gather(let a): return "axis=\(a)"
        case .expand(let s): return "shape=\(list(s.dims))"
        case .tile(let r): return "repeats=\(list(r))"
        case .resize(let r):
            var t = "mode=\(r.mode.rawValue) coordinates=\(r.coordinateTransform.rawValue) sizes=\(list(r.sizes)) scales=[" + r.scales.map { "\($0)" }.joined(separator: ",") + "]"
            if r.mode == .nearest { t += " nearest=\(r.nearestMode.rawValue)" }
            if r.mode == .cubic { t += " a=\(r.cubicCoeffA)" + (r.excludeOutside ? " exclude_outside" : "") }
            if r.antialias { t += " antialias" }
            return t
        case .depthToSpace(let b, let o), .spaceToDepth(let b, let o): return "block=\(b) order=\(o.rawValue)"
        case .reduce(_, let axes, let keep): return "axes=\(list(axes)) keepdims=\(keep)"
        case .argExtreme(_, let a, let keep, let last): return "axis=\(a) keepdims=\(keep)" + (last ? " last" : "")
        case .trilu(let upper, let k): return (upper ? "upper" : "lower") + " k=\(k)"
        case .cumsum(let a, let ex, let rev): return "axis=\(a)" + (ex ? " exclusive" : "") + (rev ? " reverse" : "")
        case .scatterND(let r): return "reduction=\(r.rawValue)"
        case .matmulTransposed(let a, let b): return "transpose_a=\(a) transpose_b=\(b)"
        case .convFused(let c, let f):
            var t = "strides=\(list(c.strides)) pads=\(list(c.pads)) dilations=\(list(c.dilations)) groups=\(c.groups)"
            if let p = f.prologue { t += " prologue=group_norm(\(p.groups),\(p.epsilon))" + (p.silu ? "+silu" : "") }
            if f.upsampleNearest { t += " upsample_nearest=2" }
            return t + Op.epilogueText(f.epilogue)
        case .linearFused(let f):
            return (f.layerNorm.map { "prologue=layer_norm(\($0.epsilon))" } ?? "") + (f.gathersInput ? " gathers_input" : "")
                + (f.scattersOutput ? " scatters_output" : "") + (f.outputShape.map { " output_shape=\(list($0))" } ?? "") + (f.geglu ? " geglu" : "")
                + Op.epilogueText(f.epilogue)
        case .attention(let a):
            return "scale=\(a.scale)" + (a.scaleQueries ? " scale_queries" : "") + (a.keysTransposed ? " keys_transposed" : "") + " biases=\(a.biasCount)"
        case .geglu: return ""
        }
    }
}

extension Op {
    static func epilogueText(_ steps: [EpilogueOp]) -> String {
        guard !steps.isEmpty else { return "" }
        return " epilogue=" + steps.map { s -> String in
            switch s {
            case .activation(let a):
                if case .leakyRelu(let alpha) = a { return "leaky_relu(\(alpha))" }
                return a.name
            case .scale(let v): return "scale(\(v))"
            case .addResidual: return "add_residual"
            case .addChannels: return "add_channels"
            case .scaleByInput: return "scale_by_input"
            case .preluChannels: return "prelu_channels"
            }
        }.joined(separator: ",")
    }
}

extension Graph {
    /// A stable text form: one line per input, constant, node and output, values as `%N`.
    ///
    ///     input %0 "x": f32[1,3,8,8]
    ///     const %1 "conv.weight": f32[4,3,3,3]
    ///     %3 = conv strides=[1,1] pads=[1,1,1,1] dilations=[1,1] groups=1 (%0, %1, %2): f32[1,4,8,8]  # conv
    ///     output "y" = %3
    public var text: String {
        var lines: [String] = []
        for i in inputs { lines.append("input %\(i) \"\(values[i].name)\": \(values[i].type)") }
        for (i, v) in values.enumerated() {
            switch v.definition {
            case .constant(let t):
                lines.append("const %\(i) \"\(v.name)\": \(v.type)" + (t.storage.isMapped ? " (mapped)" : ""))
            case .weight(let key, let t):
                lines.append("weight %\(i) \"\(key)\": \(v.type)" + (t == nil ? " (unbound)" : t!.storage.isMapped ? " (mapped)" : ""))
            default: break
            }
        }
        for n in nodes {
            let outs = n.outputs.map { "%\($0)" }.joined(separator: ", ")
            let types = n.outputs.map { values[$0].type.description }.joined(separator: ", ")
            let attrs = n.op.attributeText
            lines.append("\(outs) = \(n.op.name)\(attrs.isEmpty ? "" : " " + attrs) (\(n.inputs.map { "%\($0)" }.joined(separator: ", "))): \(types)  # \(n.name)")
        }
        for (name, v) in outputs { lines.append("output \"\(name)\" = %\(v)") }
        return lines.joined(separator: "\n") + "\n"
    }
}
