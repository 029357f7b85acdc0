import IR
import Plan
import Tensors

extension Lowering {
    /// The plan kernel of an IR node (reshapes are aliases and never reach here).
    static func kernel(_ n: Node, _ g: Graph) throws -> Kernel {
        func epilogue(_ steps: [EpilogueOp], firstResidual: Int) -> [EpilogueStep] {
            var next = firstResidual
            return steps.map { s in
                switch s {
                case .activation(let a):
                    if case .leakyRelu(let alpha) = a { return .activation(.leakyRelu, alpha: alpha) }
                    return .activation(a.kind, alpha: 0)
                case .scale(let v): return .scale(v)
                case .addResidual:
                    defer { next += 1 }
                    return .addResidual(operand: next)
                case .addChannels:
                    defer { next += 1 }
                    return .addChannels(operand: next)
                case .scaleByInput:
                    defer { next += 1 }
                    return .scaleBy(operand: next)
                case .preluChannels:
                    defer { next += 1 }
                    return .preluChannels(operand: next)
                }
            }
        }
        switch n.op {
        case .conv(let c):
            return .conv2d(Conv2DKernel(strides: c.strides, pads: c.pads, dilations: c.dilations, groups: c.groups, hasBias: n.inputs.count == 3))
        case .convFused(let c, let f):
            var k = 2 + (f.hasBias ? 1 : 0)
            var prologue: NormPrologue?
            if let p = f.prologue {
                prologue = NormPrologue(groups: p.groups, epsilon: p.epsilon, silu: p.silu, scaleOperand: k, biasOperand: k + 1)
                k += 2
            }
            return .conv2d(Conv2DKernel(strides: c.strides, pads: c.pads, dilations: c.dilations, groups: c.groups, hasBias: f.hasBias,
                                        prologue: prologue, epilogue: epilogue(f.epilogue, firstResidual: k), upsample: f.upsampleNearest ? true : nil))
        case .convTranspose(let c):
            return .convTranspose2d(ConvTransposeKernel(strides: c.strides, pads: c.pads, dilations: c.dilations, groups: c.groups,
                                                        outputPadding: c.outputPadding, hasBias: n.inputs.count == 3))
        case .linear: return .linear(LinearKernel(hasBias: n.inputs.count == 3))
        case .linearFused(let f):
            var prologue: Plan.LayerNormPrologue?
            if let ln = f.layerNorm {
                let k = f.normOperands
                prologue = Plan.LayerNormPrologue(epsilon: ln.epsilon, scaleOperand: k, biasOperand: ln.hasBias ? k + 1 : nil)
            }
            return .linear(LinearKernel(hasBias: f.hasBias, prologue: prologue, epilogue: epilogue(f.epilogue, firstResidual: f.operandCount),
                                        inputOffsets: f.gathersInput ? f.inputTables : nil, outputOffsets: f.scattersOutput ? f.outputTables : nil,
                                        geglu: f.geglu ? true : nil))
        case .matmul: return .matmul(MatmulKernel())
        case .matmulTransposed(let a, let b): return .matmul(MatmulKernel(transposeA: a, transposeB: b))
        case .attention(let a):
            return .attention(AttentionKernel(scale: a.scale, scaleQueries: a.scaleQueries, keysTransposed: a.keysTransposed, biasCount: a.biasCount))
        case .groupNorm(let groups, let eps): return .groupNorm(groups: groups, epsilon: eps, silu: false)
        case .instanceNorm(let eps): return .groupNorm(groups: g.type(n.inputs[0]).dims[1], epsilon: eps, silu: false)
        case .layerNorm(let axis, let eps): return .layerNorm(axis: axis, epsilon: eps)
        case .batchNorm(let eps): return .batchNorm(epsilon: eps)
        case .softmax(let axis): return .softmax(axis: axis, log: false)
        case .logSoftmax(let axis): return .softmax(axis: axis, log: true)
        case .unary(let u): return .elementwise(.unary(u))
        case .binary(let b): return .elementwise(.binary(b))
        case .leakyRelu(let a): return .elementwise(.leakyRelu(alpha: a))
        case .gelu(let a): return .elementwise(.gelu(tanh: a == .tanh))
        case .clip(let lo, let hi): return .elementwise(.clip(min: lo, max: hi))
        case .elu(let a): return .elementwise(.elu(alpha: a))
        case .hardSigmoid(let a, let b): return .elementwise(.hardSigmoid(alpha: a, beta: b))
        case .select: return .elementwise(.select)
        case .cast(let d): return .elementwise(.cast(d))
        case .geglu: return .elementwise(.geglu)
        case .reduce(let r, let axes, let keep): return .reduce(kind: r, axes: axes, keepDims: keep)
        case .argExtreme(let max, let axis, let keep, let last): return .argExtreme(max: max, axis: axis, keepDims: keep, selectLastIndex: last)
        case .cumsum(let a, let ex, let rev): return .cumsum(axis: a, exclusive: ex, reverse: rev)
        case .einsum(let equation):
            guard let spec = EinsumSpec.parse(equation, ranks: n.inputs.map { g.type($0).rank }) else { throw IRError(node: n.name, "bad einsum") }
            return .einsum(operands: spec.operands, output: spec.output)
        case .scatterND(let r): return .scatterND(reduction: r)
        case .reshape: return .copy
        case .transpose(let p): return .movement(.transpose(perm: p))
        case .concat(let a): return .movement(.concat(axis: a))
        case .split(let a, let s): return .movement(.split(axis: a, sizes: s))
        case .slice(let s): return .movement(.slice(starts: s.starts, ends: s.ends, steps: s.steps))
        case .pad(let m, let p, let v): return .movement(.pad(mode: m, pads: p, value: v))
        case .gather(let a): return .movement(.gather(axis: a))
        case .expand: return .movement(.expand)
        case .tile(let r): return .movement(.tile(repeats: r))
        case .resize(let r):
            return .movement(.resize(ResizeKernel(mode: r.mode, coordinateTransform: r.coordinateTransform, nearestMode: r.nearestMode,
                                                  cubicCoeffA: r.cubicCoeffA, excludeOutside: r.excludeOutside, antialias: r.antialias, scales: r.scales,
                                                  roi: r.roi, extrapolationValue: r.extrapolationValue)))
        case .depthToSpace(let b, let o): return .movement(.depthToSpace(blockSize: b, crd: o == .crd))
        case .spaceToDepth(let b, let o): return .movement(.spaceToDepth(blockSize: b, crd: o == .crd))
        case .trilu(let upper, let k): return .movement(.trilu(upper: upper, k: k))
        }
    }
}
