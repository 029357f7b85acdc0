extension Graph {
    /// The graph without nodes whose outputs nothing uses (transitively) and without unused
    /// constants; values are renumbered, names and order kept.
    public func withoutDeadNodes() -> Graph {
        var needed = [Bool](repeating: false, count: values.count)
        for (_, v) in outputs { needed[v] = true }
        var keepNode = [Bool](repeating: false, count: nodes.count)
        for i in stride(from: nodes.count - 1, through: 0, by: -1) where nodes[i].outputs.contains(where: { needed[$0] }) {
            keepNode[i] = true
            for v in nodes[i].inputs { needed[v] = true }
        }
        for i in inputs { needed[i] = true }
        var remap = [ValueID](repeating: -1, count: values.count)
        var g = Graph()
        for (i, v) in values.enumerated() where needed[i] {
            switch v.definition {
            case .input: remap[i] = g.addInput(v.name, v.type)
            case .constant(let t): remap[i] = g.addConstant(t, name: v.name)
            case .weight(let key, let t):
                remap[i] = (try? g.addWeight(key, v.type)) ?? -1
                if let t { try? g.bindWeight(key, t) }
            case .node: break
            }
        }
        // Inputs keep their order.
        g.inputs = inputs.map { remap[$0] }
        for (i, n) in nodes.enumerated() where keepNode[i] {
            let index = g.nodes.count
            var outs: [ValueID] = []
            for (k, v) in n.outputs.enumerated() {
                var value = values[v]
                value.definition = .node(index, output: k)
                g.values.append(value)
                remap[v] = g.values.count - 1
                outs.append(g.values.count - 1)
            }
            g.nodes.append(Node(op: n.op, inputs: n.inputs.map { remap[$0] }, outputs: outs, name: n.name))
        }
        g.outputs = outputs.map { ($0.name, remap[$0.value]) }
        return g
    }

    /// Replaces every use of value `old` by `new` (in nodes and graph outputs).
    public mutating func replaceUses(of old: ValueID, with new: ValueID) {
        for i in nodes.indices {
            for k in nodes[i].inputs.indices where nodes[i].inputs[k] == old { nodes[i].inputs[k] = new }
        }
        for k in outputs.indices where outputs[k].value == old { outputs[k].value = new }
    }

    /// The node producing `v`, if any.
    public func producer(_ v: ValueID) -> Node? {
        if case .node(let n, _) = values[v].definition { return nodes[n] }
        return nil
    }
}
