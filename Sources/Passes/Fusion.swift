import IR
import Tensors

/// Fusion rules. Each is legality first (the absorbed intermediates have one consumer, are not graph
/// outputs, and are float32, the dtype the fused kernels take), then a rewrite of the chain's last
/// node in place (same output value and type); the absorbed nodes become dead code.
enum Fusion {
    static func isF32(_ g: Graph, _ vs: [ValueID]) -> Bool { vs.allSatisfy { g.type($0).dtype == .f32 } }

    static func swapsLastTwo(_ perm: [Int]) -> Bool {
        let r = perm.count
        guard r >= 2 else { return false }
        return perm == Array(0..<(r - 2)) + [r - 1, r - 2]
    }

    // MARK: attention

    /// `softmax(matmul(q, kᵀ)·scale + biases)·v`, or with q scaled before the product → `attention`.
    static let attention = Pass(name: "attention", summary: "softmax(QKᵀ·scale + bias)·V as one kernel") { g, _ in
        var changes = 0
        var uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard n.op == .matmul, let (_, sm) = g.producerNode(n.inputs[0]), case .softmax(let axis) = sm.op,
                  uses.absorbable(n.inputs[0]), axis == -1 || axis == g.type(sm.inputs[0]).rank - 1 else { continue }
            // Walk back over bias additions to the scaled product.
            var scores = sm.inputs[0]
            var biases: [ValueID] = []
            while uses.absorbable(scores), let (_, add) = g.producerNode(scores), add.op == .binary(.add) {
                let (a, b) = (add.inputs[0], add.inputs[1])
                // The running scores are the operand with the scores' own shape.
                if g.type(a) == g.type(scores), let (_, pa) = g.producerNode(a), [Op.binary(.add), .binary(.mul), .binary(.div), .matmul].contains(pa.op) {
                    biases.insert(b, at: 0)
                    scores = a
                } else if g.type(b) == g.type(scores), let (_, pb) = g.producerNode(b), [Op.binary(.add), .binary(.mul), .binary(.div), .matmul].contains(pb.op) {
                    biases.insert(a, at: 0)
                    scores = b
                } else {
                    break
                }
            }
            guard uses.absorbable(scores), let (_, sn) = g.producerNode(scores) else { continue }
            var q: ValueID, kt: ValueID, scale: Double, scaleQueries: Bool
            if sn.op == .matmul, let (_, qs) = g.producerNode(sn.inputs[0]), qs.op == .binary(.mul), uses.absorbable(sn.inputs[0]),
               let s = g.scalarConstant(qs.inputs[1]) ?? g.scalarConstant(qs.inputs[0]) {
                q = g.scalarConstant(qs.inputs[1]) != nil ? qs.inputs[0] : qs.inputs[1]
                (kt, scale, scaleQueries) = (sn.inputs[1], s, true)
            } else if sn.op == .binary(.mul) || sn.op == .binary(.div) {
                let product = g.scalarConstant(sn.inputs[1]) != nil ? sn.inputs[0] : sn.inputs[1]
                guard let s = g.scalarConstant(sn.op == .binary(.div) ? sn.inputs[1] : (product == sn.inputs[0] ? sn.inputs[1] : sn.inputs[0])),
                      uses.absorbable(product), let (_, mm) = g.producerNode(product), mm.op == .matmul else { continue }
                if sn.op == .binary(.div) && product != sn.inputs[0] { continue }
                (q, kt, scale, scaleQueries) = (mm.inputs[0], mm.inputs[1], sn.op == .binary(.div) ? 1 / s : s, false)
            } else if sn.op == .matmul {
                (q, kt, scale, scaleQueries) = (sn.inputs[0], sn.inputs[1], 1, false)
            } else {
                continue
            }
            var k = kt
            var keysTransposed = true
            if uses.absorbable(kt), let (_, t) = g.producerNode(kt), case .transpose(let perm) = t.op, swapsLastTwo(perm) {
                k = t.inputs[0]
                keysTransposed = false
            }
            let operands = [q, k, n.inputs[1]] + biases
            guard isF32(g, operands), g.type(q).rank >= 2, g.type(k).rank == g.type(q).rank else { continue }
            let spec = AttentionSpec(scale: Float(scale), scaleQueries: scaleQueries, keysTransposed: keysTransposed, biasCount: biases.count)
            guard (try? Op.attention(spec).inferTypes(operands.map { g.type($0) })) == [g.type(n.outputs[0])] else { continue }
            g.nodes[i] = Node(op: .attention(spec), inputs: operands, outputs: n.outputs, name: n.name)
            changes += 1
            uses = Uses(g)
        }
        g = g.withoutDeadNodes()
        return changes
    }

    // MARK: GEGLU

    /// `split(x, [n, n])` → `a · gelu(gate)` → `geglu(x)`.
    static let geglu = Pass(name: "geglu", summary: "split + GELU + mul of the feed-forward as one kernel") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard n.op == .binary(.mul) else { continue }
            for (a, b) in [(n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])] {
                guard let (_, gelu) = g.producerNode(b), gelu.op == .gelu(.none), uses.absorbable(b), uses.absorbable(a),
                      let (_, split) = g.producerNode(a), case .split(let axis, let sizes) = split.op, sizes.count == 2, sizes[0] == sizes[1],
                      split.outputs == [a, gelu.inputs[0]], uses.absorbable(gelu.inputs[0]),
                      axis == -1 || axis == g.type(split.inputs[0]).rank - 1, isF32(g, [split.inputs[0]]) else { continue }
                g.nodes[i] = Node(op: .geglu, inputs: [split.inputs[0]], outputs: n.outputs, name: n.name)
                changes += 1
                break
            }
        }
        g = g.withoutDeadNodes()
        return changes
    }

    // MARK: prologues

    /// `conv(silu?(group_norm(x)))` → a convolution that normalises while it reads.
    static let convPrologue = Pass(name: "conv-prologue", summary: "GroupNorm (→ SiLU) folded into the next convolution") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard case .conv(let c) = n.op else { continue }
            var x = n.inputs[0]
            var silu = false
            if let (_, s) = g.producerNode(x), s.op == .unary(.silu), uses.absorbable(x) {
                silu = true
                x = s.inputs[0]
            }
            guard uses.absorbable(x), let (_, gn) = g.producerNode(x), case .groupNorm(let groups, let eps) = gn.op,
                  isF32(g, [gn.inputs[0], n.outputs[0]]) else { continue }
            let fusion = ConvFusion(hasBias: n.inputs.count == 3, prologue: GroupNormPrologue(groups: groups, epsilon: eps, silu: silu))
            g.nodes[i] = Node(op: .convFused(c, fusion), inputs: [gn.inputs[0]] + n.inputs.dropFirst() + [gn.inputs[1], gn.inputs[2]],
                              outputs: n.outputs, name: n.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }

    /// `linear(layer_norm(x))` (normalised over the last axis) → a linear that normalises while it reads.
    static let layerNormLinear = Pass(name: "layernorm-linear", summary: "LayerNorm folded into the next linear") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard n.op == .linear, uses.absorbable(n.inputs[0]), let (_, ln) = g.producerNode(n.inputs[0]),
                  case .layerNorm(let axis, let eps) = ln.op, axis == -1 || axis == g.type(ln.inputs[0]).rank - 1,
                  ln.inputs.dropFirst().allSatisfy({ g.type($0).rank == 1 }), isF32(g, [ln.inputs[0]]) else { continue }
            let fusion = LinearFusion(hasBias: n.inputs.count == 3, layerNorm: LayerNormPrologue(epsilon: eps, hasBias: ln.inputs.count == 3))
            g.nodes[i] = Node(op: .linearFused(fusion), inputs: [ln.inputs[0]] + n.inputs.dropFirst() + ln.inputs.dropFirst(), outputs: n.outputs, name: n.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }

    // MARK: epilogues

    /// Activation, constant scale and residual add after a convolution or linear, as epilogue steps.
    static let epilogues = Pass(name: "epilogues", summary: "activation, scale and residual add applied as the conv/linear writes") { g, _ in
        var changes = 0
        var uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            var step: EpilogueOp
            var source: ValueID
            var residual: ValueID?
            switch n.op {
            case .unary(.silu): (step, source) = (.activation(.silu), n.inputs[0])
            case .unary(.relu): (step, source) = (.activation(.relu), n.inputs[0])
            case .unary(.sigmoid): (step, source) = (.activation(.sigmoid), n.inputs[0])
            case .gelu(let a): (step, source) = (.activation(a == .tanh ? .geluTanh : .gelu), n.inputs[0])
            case .leakyRelu(let alpha): (step, source) = (.activation(.leakyRelu(alpha)), n.inputs[0])
            case .binary(.mul):
                if let s = g.scalarConstant(n.inputs[1]) { (step, source) = (.scale(Float(s)), n.inputs[0]) }
                else if let s = g.scalarConstant(n.inputs[0]) { (step, source) = (.scale(Float(s)), n.inputs[1]) }
                else { continue }
            case .binary(.add):
                // The fused producer is the operand that is a conv/linear result; the other, of the same type, is the residual.
                let (a, b) = (n.inputs[0], n.inputs[1])
                guard g.type(a) == g.type(b) else { continue }
                func fusible(_ v: ValueID) -> Bool {
                    guard let (_, p) = g.producerNode(v) else { return false }
                    switch p.op {
                    case .conv, .convFused, .linear, .linearFused: return true
                    default: return false
                    }
                }
                if fusible(a) && uses.absorbable(a) { (step, source, residual) = (.addResidual, a, b) }
                else if fusible(b) && uses.absorbable(b) { (step, source, residual) = (.addResidual, b, a) }
                else { continue }
            default: continue
            }
            guard uses.absorbable(source), let (_, p) = g.producerNode(source), isF32(g, [source, n.outputs[0]]) else { continue }
            if let residual, residual == source { continue }
            let extra = residual.map { [$0] } ?? []
            switch p.op {
            case .conv(let c):
                let f = ConvFusion(hasBias: p.inputs.count == 3, epilogue: [step])
                g.nodes[i] = Node(op: .convFused(c, f), inputs: p.inputs + extra, outputs: n.outputs, name: p.name)
            case .convFused(let c, var f):
                f.epilogue.append(step)
                g.nodes[i] = Node(op: .convFused(c, f), inputs: p.inputs + extra, outputs: n.outputs, name: p.name)
            case .linear:
                let f = LinearFusion(hasBias: p.inputs.count == 3, epilogue: [step])
                g.nodes[i] = Node(op: .linearFused(f), inputs: p.inputs + extra, outputs: n.outputs, name: p.name)
            case .linearFused(var f):
                f.epilogue.append(step)
                g.nodes[i] = Node(op: .linearFused(f), inputs: p.inputs + extra, outputs: n.outputs, name: p.name)
            default: continue
            }
            changes += 1
            uses = Uses(g)
        }
        g = g.withoutDeadNodes()
        return changes
    }

    // MARK: batch norm

    /// `batch_norm(conv(x, w, b))` with constant parameters → the conv with folded weights and bias.
    static let batchNormFolding = Pass(name: "batchnorm-folding", summary: "inference BatchNorm folded into the convolution before it") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard case .batchNorm(let eps) = n.op, uses.absorbable(n.inputs[0]), let (_, conv) = g.producerNode(n.inputs[0]),
                  case .conv(let c) = conv.op, let w = g.values[conv.inputs[1]].constant, isF32(g, [n.outputs[0]]),
                  n.inputs.dropFirst().allSatisfy({ g.values[$0].isConstant }) else { continue }
            let p = n.inputs.dropFirst().map { g.values[$0].constant!.converted(to: .f64).withElements(as: Double.self) { Array($0) } }
            let (scale, bias, mean, variance) = (p[0], p[1], p[2], p[3])
            let oc = w.shape.dims[0], per = w.count / oc
            var wv = w.converted(to: .f64).withElements(as: Double.self) { Array($0) }
            var bv = conv.inputs.count == 3 ? g.values[conv.inputs[2]].constant!.converted(to: .f64).withElements(as: Double.self) { Array($0) }
                                            : [Double](repeating: 0, count: oc)
            for o in 0..<oc {
                let f = scale[o] / (variance[o] + Double(eps)).squareRoot()
                for k in 0..<per { wv[o * per + k] *= f }
                bv[o] = (bv[o] - mean[o]) * f + bias[o]
            }
            let newW = g.addConstant(Tensor(wv.map { Float($0) }, shape: w.shape), name: conv.name + ".weight(bn)")
            let newB = g.addConstant(Tensor(bv.map { Float($0) }, shape: [oc]), name: conv.name + ".bias(bn)")
            g.nodes[i] = Node(op: .conv(c), inputs: [conv.inputs[0], newW, newB], outputs: n.outputs, name: conv.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }
}

/// Layout choices that pay: transposes of matmul operands become flags of the product (no copy).
enum Layout {
    static let transposeIntoMatmul = Pass(name: "layout", summary: "transposes of matmul operands read in place as transposed operands") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            var flags: (Bool, Bool)
            switch n.op {
            case .matmul: flags = (false, false)
            case .matmulTransposed(let a, let b): flags = (a, b)
            default: continue
            }
            guard g.type(n.inputs[0]).rank >= 2, g.type(n.inputs[1]).rank >= 2, Fusion.isF32(g, n.inputs) else { continue }
            var inputs = n.inputs
            var changed = false
            for k in 0..<2 {
                if uses.absorbable(inputs[k]), let (_, t) = g.producerNode(inputs[k]), case .transpose(let perm) = t.op, Fusion.swapsLastTwo(perm) {
                    inputs[k] = t.inputs[0]
                    if k == 0 { flags.0.toggle() } else { flags.1.toggle() }
                    changed = true
                }
            }
            guard changed else { continue }
            let op: Op = flags == (false, false) ? .matmul : .matmulTransposed(a: flags.0, b: flags.1)
            g.nodes[i] = Node(op: op, inputs: inputs, outputs: n.outputs, name: n.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }
}
