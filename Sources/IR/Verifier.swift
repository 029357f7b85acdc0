extension Graph {
    /// Checks the invariants documented on `Graph`; throws the first violation, naming the node.
    public func verify() throws(IRError) {
        var defined = [Bool](repeating: false, count: values.count)
        for i in inputs {
            guard i >= 0, i < values.count, case .input = values[i].definition else {
                throw IRError(node: "", "graph input %\(i) is not an input value")
            }
            defined[i] = true
        }
        for (i, v) in values.enumerated() {
            switch v.definition {
            case .constant(let t):
                guard t.dtype == v.type.dtype, t.shape == v.type.shape else {
                    throw IRError(node: v.name, "constant holds \(t.dtype)\(t.shape) but is typed \(v.type)")
                }
                defined[i] = true
            case .weight(_, let t):
                if let t, t.dtype != v.type.dtype || t.shape != v.type.shape {
                    throw IRError(node: v.name, "weight holds \(t.dtype)\(t.shape) but is typed \(v.type)")
                }
                defined[i] = true
            case .input:
                guard inputs.contains(i) else { throw IRError(node: v.name, "input value %\(i) is not listed as a graph input") }
            case .node(let n, let k):
                guard n >= 0, n < nodes.count, k < nodes[n].outputs.count, nodes[n].outputs[k] == i else {
                    throw IRError(node: v.name, "value %\(i) claims to be output \(k) of node \(n), which does not produce it")
                }
            }
        }
        for (index, node) in nodes.enumerated() {
            for v in node.inputs {
                guard v >= 0, v < values.count else { throw IRError(node: node.name, "input %\(v) does not exist") }
                guard defined[v] else {
                    throw IRError(node: node.name, "input %\(v) ('\(values[v].name)') is used before it is produced (a cycle, or nodes out of order)")
                }
            }
            let expected = try node.op.inferTypes(node.inputs.map { values[$0].type }, node: node.name)
            guard expected.count == node.outputs.count else {
                throw IRError(node: node.name, "\(node.op.name) should have \(expected.count) outputs, has \(node.outputs.count)")
            }
            for (k, v) in node.outputs.enumerated() {
                guard v >= 0, v < values.count, case .node(index, k) = values[v].definition else {
                    throw IRError(node: node.name, "output \(k) (%\(v)) is not marked as produced by this node")
                }
                guard !defined[v] else { throw IRError(node: node.name, "output %\(v) is defined twice") }
                guard values[v].type == expected[k] else {
                    throw IRError(node: node.name, "output \(k) is typed \(values[v].type), inference gives \(expected[k])")
                }
                defined[v] = true
            }
        }
        for (name, v) in outputs {
            guard v >= 0, v < values.count, defined[v] else { throw IRError(node: "", "graph output '\(name)' refers to no defined value") }
        }
    }
}
