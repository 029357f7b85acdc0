import IR
import Tensors

/// Recognises the decompositions exporters emit for ops older opsets lacked, and raises them to
/// the IR op: the final node of the pattern is rewritten in place (same output, same type) and the
/// rest becomes dead code. Only single-use intermediates are absorbed, so nothing else changes.
func raiseDecompositions(_ g: inout Graph) -> [String: Int] {
    var counts: [String: Int] = [:]
    var uses = g.users().map(\.count)
    for (_, v) in g.outputs { uses[v] += 1 }

    func node(_ v: ValueID) -> (Int, Node)? {
        if case .node(let i, _) = g.values[v].definition { return (i, g.nodes[i]) }
        return nil
    }
    /// The producer of `v` if it has this op name and `v` is used once.
    func single(_ v: ValueID, _ test: (Op) -> Bool) -> Node? {
        guard uses[v] == 1, let (_, n) = node(v), test(n.op) else { return nil }
        return n
    }
    func scalar(_ v: ValueID) -> Double? {
        guard let t = g.values[v].constant, t.count == 1 else { return nil }
        return Reference64.values(t)[0]
    }
    func isBinary(_ op: Op, _ b: BinaryOp) -> Bool { if case .binary(b) = op { return true } else { return false } }
    /// For a commutative binary node, the operand that is not a scalar constant equal to `value`.
    func other(_ n: Node, constant value: Double, tolerance: Double = 1e-6) -> ValueID? {
        if let s = scalar(n.inputs[1]), abs(s - value) <= tolerance { return n.inputs[0] }
        if let s = scalar(n.inputs[0]), abs(s - value) <= tolerance { return n.inputs[1] }
        return nil
    }

    for i in g.nodes.indices {
        let n = g.nodes[i]
        guard case .binary(let b) = n.op else { continue }
        let out = n.outputs[0]

        // SiLU: x * sigmoid(x).
        if b == .mul {
            for (a, s) in [(n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])] {
                if let sig = single(s, { $0 == .unary(.sigmoid) }), sig.inputs[0] == a {
                    g.nodes[i] = Node(op: .unary(.silu), inputs: [a], outputs: [out], name: n.name)
                    counts["silu", default: 0] += 1
                    break
                }
            }
            if g.nodes[i].op == .unary(.silu) { continue }
        }

        // GELU (erf): ((x * (erf(x / √2) + 1)) * 0.5), in the orders exporters use.
        if b == .mul, let half = other(n, constant: 0.5) {
            if let inner = single(half, { isBinary($0, .mul) }) {
                for (x, sum) in [(inner.inputs[0], inner.inputs[1]), (inner.inputs[1], inner.inputs[0])] {
                    guard let add = single(sum, { isBinary($0, .add) }), let e = other(add, constant: 1),
                          let erf = single(e, { $0 == .unary(.erf) }) else { continue }
                    let arg = erf.inputs[0]
                    var matches = false
                    if let d = single(arg, { isBinary($0, .div) }), d.inputs[0] == x, let s = scalar(d.inputs[1]), abs(s - 2.0.squareRoot()) < 1e-5 { matches = true }
                    if let m = single(arg, { isBinary($0, .mul) }), other(m, constant: 1 / 2.0.squareRoot(), tolerance: 1e-5) == x { matches = true }
                    if matches {
                        g.nodes[i] = Node(op: .gelu(.none), inputs: [x], outputs: [out], name: n.name)
                        counts["gelu", default: 0] += 1
                        break
                    }
                }
            }
            if g.nodes[i].op == .gelu(.none) { continue }
        }

        // LayerNorm: (x − mean) / sqrt(mean((x − mean)²) + ε) [· γ] [+ β], over trailing axes.
        if b == .add || b == .mul || b == .div {
            var tail = n
            var gamma: ValueID?, beta: ValueID?
            if b == .add, let m = (g.values[n.inputs[1]].isConstant ? single(n.inputs[0], { isBinary($0, .mul) }) : nil) {
                beta = n.inputs[1]
                tail = m
            }
            if isBinary(tail.op, .mul), g.values[tail.inputs[1]].isConstant, let d = single(tail.inputs[0], { isBinary($0, .div) }) {
                gamma = tail.inputs[1]
                tail = d
            }
            if isBinary(tail.op, .div), let sub = node(tail.inputs[0])?.1, isBinary(sub.op, .sub),
               let sqrt = single(tail.inputs[1], { $0 == .unary(.sqrt) }),
               let addEps = single(sqrt.inputs[0], { isBinary($0, .add) }), let eps = scalar(addEps.inputs[1]),
               let varMean = single(addEps.inputs[0], { if case .reduce(.mean, _, true) = $0 { return true } else { return false } }),
               let sq = single(varMean.inputs[0], { isBinary($0, .pow) || isBinary($0, .mul) }),
               sq.inputs[0] == sub.outputs[0], (isBinary(sq.op, .pow) ? scalar(sq.inputs[1]) == 2 : sq.inputs[1] == sub.outputs[0]),
               let mean = node(sub.inputs[1])?.1, case .reduce(.mean, let axes, true) = mean.op, mean.inputs[0] == sub.inputs[0],
               case .reduce(.mean, let axes2, true) = varMean.op, axes == axes2 {
                let x = sub.inputs[0]
                let rank = g.type(x).rank
                let sorted = axes.map { $0 < 0 ? $0 + rank : $0 }.sorted()
                let normalized = Array(g.type(x).dims[(sorted.first ?? rank)...])
                if !sorted.isEmpty, sorted == Array(sorted[0]..<rank), uses[sub.outputs[0]] == 2, uses[mean.outputs[0]] == 1 {
                    let dtype = g.type(x).dtype
                    let scale = gamma ?? g.addConstant(Reference64.tensor([Double](repeating: 1, count: normalized.reduce(1, *)), dtype, Shape(normalized)), name: n.name + ":ones")
                    g.nodes[i] = Node(op: .layerNorm(axis: sorted[0], epsilon: Float(eps)), inputs: [x, scale] + (beta.map { [$0] } ?? []),
                                      outputs: [out], name: n.name)
                    counts["layer_norm", default: 0] += 1
                    continue
                }
            }
        }

        // GroupNorm: reshape [N, G, -1] → instance norm (γ = 1, β = 0) → reshape back → · γ[C,1,1] → + β[C,1,1].
        if b == .add, let betaTensor = g.values[n.inputs[1]].constant,
           let mul = single(n.inputs[0], { isBinary($0, .mul) }), let gammaTensor = g.values[mul.inputs[1]].constant,
           let back = single(mul.inputs[0], { if case .reshape = $0 { return true } else { return false } }),
           let inorm = single(back.inputs[0], { if case .instanceNorm = $0 { return true } else { return false } }),
           case .instanceNorm(let eps) = inorm.op,
           let grouped = single(inorm.inputs[0], { if case .reshape = $0 { return true } else { return false } }) {
            let x = grouped.inputs[0]
            let xt = g.type(x), gt = g.type(grouped.outputs[0])
            let unitScale = Reference64.values(g.values[inorm.inputs[1]].constant ?? Tensor([0], shape: [1])).allSatisfy { $0 == 1 }
            let zeroBias = Reference64.values(g.values[inorm.inputs[2]].constant ?? Tensor([1], shape: [1])).allSatisfy { $0 == 0 }
            if xt.rank >= 3, gt.rank == 3, gt.dims[0] == xt.dims[0], g.type(back.outputs[0]) == xt, unitScale, zeroBias,
               gammaTensor.count == xt.dims[1], betaTensor.count == xt.dims[1] {
                let channels = xt.dims[1]
                let gamma = g.addConstant(Reference64.tensor(Reference64.values(gammaTensor), xt.dtype, [channels]), name: n.name + ":gamma")
                let beta = g.addConstant(Reference64.tensor(Reference64.values(betaTensor), xt.dtype, [channels]), name: n.name + ":beta")
                g.nodes[i] = Node(op: .groupNorm(groups: gt.dims[1], epsilon: eps), inputs: [x, gamma, beta], outputs: [out], name: n.name)
                counts["group_norm", default: 0] += 1
            }
        }
    }
    return counts
}
