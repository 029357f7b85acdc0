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

extension Cleanup {
    /// `gather(x, i, axis)` with a constant single index (exporters write `qkv[0]`, `qkv[1]`, `qkv[2]`
    /// this way) → one part of a split of `x` along the axis, reshaped to drop it. All of `x`'s gathers
    /// on that axis share one split, which lowering makes views where the axis has nothing outside it
    /// (no copy at all); the reshapes are aliases. Axes of up to 16 entries.
    static let gatherAsSplit = Pass(name: "gather-split", summary: "gathers of single constant indices as parts of one split") { g, _ in
        struct Key: Hashable { let value: ValueID, axis: Int }
        var parts: [Int: (key: Key, index: Int)] = [:]
        for (i, n) in g.nodes.enumerated() {
            guard case .gather(let axis) = n.op, n.inputs.count == 2, n.outputs.count == 1, let index = g.values[n.inputs[1]].constant,
                  index.count == 1, index.shape.rank <= 1, index.dtype == .i64 || index.dtype == .i32 else { continue }
            let t = g.type(n.inputs[0])
            let a = axis < 0 ? axis + t.rank : axis
            guard a >= 0, a < t.rank, t.dims[a] <= 16 else { continue }
            var k = Int(index.converted(to: .i64).withElements(as: Int64.self) { $0[0] })
            if k < 0 { k += t.dims[a] }
            guard (0..<t.dims[a]).contains(k) else { continue }
            parts[i] = (Key(value: n.inputs[0], axis: a), k)
        }
        guard !parts.isEmpty else { return 0 }
        var splits: [Key: [ValueID]] = [:]
        var nodes: [Node] = []
        for (i, n) in g.nodes.enumerated() {
            guard let (key, k) = parts[i] else { nodes.append(n); continue }
            if splits[key] == nil {
                let t = g.type(key.value)
                var dims = t.dims
                dims[key.axis] = 1
                let outputs = (0..<t.dims[key.axis]).map { j -> ValueID in
                    // (Definitions are renumbered by withoutDeadNodes below.)
                    g.values.append(Value(type: TensorType(t.dtype, Shape(dims)), name: g.values[key.value].name + ":\(j)", definition: .node(nodes.count, output: j)))
                    return g.values.count - 1
                }
                nodes.append(Node(op: .split(axis: key.axis, sizes: Array(repeating: 1, count: t.dims[key.axis])), inputs: [key.value],
                                  outputs: outputs, name: n.name + ":split"))
                splits[key] = outputs
            }
            guard let part = splits[key]?[k] else { nodes.append(n); continue }
            nodes.append(Node(op: .reshape(g.type(n.outputs[0]).shape), inputs: [part], outputs: n.outputs, name: n.name))
        }
        g.nodes = nodes
        g = g.withoutDeadNodes()
        return parts.count
    }
}

extension Cleanup {
    /// `reshape(add(reshape(y, [1…1] + shape(y)), c), shape(y))` with `c` a constant whose leading
    /// axes are 1 → `add(y, c′)`, `c′` being `c` without them. Exporters of shifted-window attention
    /// add the window mask this way (`attn.view(1, nW, nH, N, N) + mask`, then `view(-1, nH, N, N)`);
    /// without the detour the additions reach the attention fusion as its biases.
    static let unitAxesAroundAdd = Pass(name: "unit-axes-add", summary: "an add of a constant between reshapes that only add leading 1s, without them") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard case .reshape(let back) = n.op, uses.absorbable(n.inputs[0]), let (_, add) = g.producerNode(n.inputs[0]),
                  add.op == .binary(.add) else { continue }
            for (k, other) in [(0, 1), (1, 0)] {
                guard uses.absorbable(add.inputs[k]), let (_, r) = g.producerNode(add.inputs[k]), case .reshape(let out) = r.op,
                      let c = g.values[add.inputs[other]].constant else { continue }
                let y = r.inputs[0]
                let m = out.rank - g.type(y).rank
                guard m > 0, back == g.type(y).shape, out.dims.dropFirst(m).elementsEqual(g.type(y).dims), out.dims.prefix(m).allSatisfy({ $0 == 1 }),
                      c.shape.rank == out.rank, c.shape.dims.prefix(m).allSatisfy({ $0 == 1 }), g.type(add.outputs[0]).shape == out,
                      c.dtype == g.type(y).dtype else { continue }
                let reduced = g.addConstant(Tensor(dtype: c.dtype, shape: Shape(Array(c.shape.dims.dropFirst(m))), storage: c.storage),
                                            name: g.values[add.inputs[other]].name)
                g.nodes[i] = Node(op: .binary(.add), inputs: k == 0 ? [y, reduced] : [reduced, y], outputs: n.outputs, name: add.name)
                changes += 1
                break
            }
        }
        g = g.withoutDeadNodes()
        return changes
    }
}

extension Cleanup {
    /// Slices of one value along one axis (step 1, every other axis whole) whose ranges cover the axis
    /// exactly, each once → one split whose parts are those slices' values. Exporters write
    /// `x.chunk(2, dim=-1)` this way (`Slice(x, 0, n)`, `Slice(x, n, 2n)` with bounds from the shape),
    /// so the feed-forward's GEGLU, `a · gelu(gate)` over the halves, fuses as in our own graphs.
    static let slicesAsSplit = Pass(name: "slices-split", summary: "slices that cover an axis exactly as one split") { g, _ in
        struct Key: Hashable { let value: ValueID, axis: Int }
        var groups: [Key: [(node: Int, start: Int, count: Int)]] = [:]
        for (i, n) in g.nodes.enumerated() {
            guard case .slice(let s) = n.op, n.inputs.count == 1, n.outputs.count == 1 else { continue }
            let x = g.type(n.inputs[0]), y = g.type(n.outputs[0])
            guard x.rank == y.rank, x.rank > 0, s.steps.allSatisfy({ $0 == 1 }) else { continue }
            let partial = (0..<x.rank).filter { y.dims[$0] != x.dims[$0] || s.starts[$0] != 0 }
            guard partial.count == 1, let a = partial.first, y.dims[a] > 0 else { continue }
            groups[Key(value: n.inputs[0], axis: a), default: []].append((i, s.starts[a], y.dims[a]))
        }
        var replaced: [Int: Node] = [:]
        var removed = Set<Int>()
        let users = g.users()
        for (key, parts) in groups where parts.count >= 2 {
            // Parts that only a concat reads are a roll (`torch.roll` exports as slices and a concat):
            // the layout passes take it into a linear layer's offset tables.
            let readers = Set(parts.flatMap { users[g.nodes[$0.node].outputs[0]] })
            if readers.count == 1, let r = readers.first, case .concat = g.nodes[r].op { continue }
            let sorted = parts.sorted { $0.start < $1.start }
            var next = 0
            for p in sorted where p.start == next { next += p.count }
            guard next == g.type(key.value).dims[key.axis], sorted.count == Set(sorted.map(\.start)).count,
                  zip(sorted, sorted.dropFirst()).allSatisfy({ $0.start + $0.count == $1.start }) else { continue }
            let first = sorted.map(\.node).min()!
            replaced[first] = Node(op: .split(axis: key.axis, sizes: sorted.map(\.count)), inputs: [key.value],
                                   outputs: sorted.map { g.nodes[$0.node].outputs[0] }, name: g.nodes[first].name + ":split")
            removed.formUnion(sorted.map(\.node).filter { $0 != first })
        }
        guard !replaced.isEmpty else { return 0 }
        // The split stands where the first of its slices stood, before every reader of any part.
        var nodes: [Node] = []
        for (i, n) in g.nodes.enumerated() where !removed.contains(i) { nodes.append(replaced[i] ?? n) }
        g.nodes = nodes
        g = g.withoutDeadNodes()
        return replaced.count
    }
}
