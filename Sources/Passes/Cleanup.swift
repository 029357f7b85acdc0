import IR
import Tensors

/// Cleanup passes: dead code, common subexpressions, constant folding, reshape/transpose simplification.
enum Cleanup {
    static let deadCode = Pass(name: "dead-code", summary: "remove nodes whose results nothing uses") { g, _ in
        let before = g.nodes.count
        g = g.withoutDeadNodes()
        return before - g.nodes.count
    }

    static let commonSubexpressions = Pass(name: "cse", summary: "merge nodes with the same op and inputs") { g, _ in
        struct Key: Hashable {
            let op: Op
            let inputs: [ValueID]
        }
        var seen: [Key: Int] = [:]
        var changes = 0
        for i in g.nodes.indices {
            let n = g.nodes[i]
            let key = Key(op: n.op, inputs: n.inputs)
            if let j = seen[key] {
                for (a, b) in zip(n.outputs, g.nodes[j].outputs) { g.replaceUses(of: a, with: b) }
                changes += 1
            } else {
                seen[key] = i
            }
        }
        g = g.withoutDeadNodes()
        return changes
    }

    static let constantFolding = Pass(name: "constant-folding", summary: "evaluate nodes whose inputs are all constant (reference kernels)") { g, options in
        var changes = 0
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard !n.inputs.isEmpty, n.inputs.allSatisfy({ g.values[$0].isConstant }) else { continue }
            let bytes = n.outputs.reduce(0) { $0 + g.type($1).count * g.type($1).dtype.byteSize }
            guard bytes <= options.maxFoldedBytes else { continue }
            let results = try options.evaluator.evaluate(n.op, n.inputs.map { g.values[$0].constant! }, outputTypes: n.outputs.map { g.type($0) })
            for (v, t) in zip(n.outputs, results) {
                g.values[v].definition = .constant(t)
            }
            // The node no longer defines its outputs: drop it by giving it no outputs.
            g.nodes[i].outputs = []
            g.nodes[i].inputs = []
            changes += 1
        }
        if changes > 0 { g = g.withoutDeadNodesKeepingConstants() }
        return changes
    }

    static let reshapeTransposeSimplification = Pass(name: "reshape-transpose", summary: "drop identity reshapes/transposes, merge chains") { g, _ in
        var changes = 0
        for i in g.nodes.indices {
            let n = g.nodes[i]
            switch n.op {
            case .reshape(let s):
                let x = n.inputs[0]
                if g.type(x).shape == s {
                    g.replaceUses(of: n.outputs[0], with: x)
                    changes += 1
                } else if let (_, p) = g.producerNode(x), case .reshape = p.op {
                    g.nodes[i].inputs = [p.inputs[0]]
                    changes += 1
                }
            case .transpose(let perm):
                if perm == Array(0..<perm.count) {
                    g.replaceUses(of: n.outputs[0], with: n.inputs[0])
                    changes += 1
                } else if let (_, p) = g.producerNode(n.inputs[0]), case .transpose(let inner) = p.op {
                    let composed = perm.map { inner[$0] }
                    if composed == Array(0..<composed.count) {
                        g.replaceUses(of: n.outputs[0], with: p.inputs[0])
                    } else {
                        g.nodes[i] = Node(op: .transpose(composed), inputs: [p.inputs[0]], outputs: n.outputs, name: n.name)
                    }
                    changes += 1
                }
            default: break
            }
        }
        g = g.withoutDeadNodes()
        return changes
    }
}

extension Graph {
    /// Dead-code removal after folding: nodes emptied by folding disappear, their outputs stay as constants.
    func withoutDeadNodesKeepingConstants() -> Graph {
        var g = self
        g.nodes = g.nodes.filter { !$0.outputs.isEmpty }
        // Renumber producers after the removal.
        for (i, n) in g.nodes.enumerated() {
            for (k, v) in n.outputs.enumerated() { g.values[v].definition = .node(i, output: k) }
        }
        return g.withoutDeadNodes()
    }
}
