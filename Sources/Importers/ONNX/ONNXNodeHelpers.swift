import IR
import Tensors

/// Typed access to a node's attributes and optional inputs; errors name the attribute.
extension ONNXNode {
    /// The name of input `i`, or nil when absent or empty (an omitted optional input).
    func input(_ i: Int) -> String? { i < inputs.count && !inputs[i].isEmpty ? inputs[i] : nil }

    func attr(_ name: String, _ kinds: [ONNXAttribute.Kind]) throws(ImportFailure) -> ONNXAttribute? {
        guard let a = attribute(name) else { return nil }
        if let ref = a.refAttrName { throw ImportFailure("attribute '\(name)' refers to function attribute '\(ref)', which is not supported") }
        guard kinds.contains(a.kind) else {
            throw ImportFailure("attribute '\(name)' has type \(a.kind), expected \(kinds.map { "\($0)" }.joined(separator: " or "))")
        }
        return a
    }

    func int(_ name: String, _ fallback: Int) throws(ImportFailure) -> Int { try attr(name, [.int])?.i ?? fallback }
    func float(_ name: String, _ fallback: Float) throws(ImportFailure) -> Float { try attr(name, [.float])?.f ?? fallback }
    func string(_ name: String, _ fallback: String) throws(ImportFailure) -> String { try attr(name, [.string])?.s ?? fallback }
    func ints(_ name: String) throws(ImportFailure) -> [Int]? { try attr(name, [.ints])?.ints }
    func floats(_ name: String) throws(ImportFailure) -> [Float]? { try attr(name, [.floats])?.floats }
}

extension ImportContext {
    /// Binds the node's outputs to values; outputs the node does not produce must be unused (empty names).
    mutating func bind(_ node: ONNXNode, _ values: [ValueID]) throws(ImportFailure) {
        for (k, name) in node.outputs.enumerated() where !name.isEmpty {
            guard k < values.count else { throw ImportFailure("output \(k) ('\(name)') is not supported") }
            names[name] = values[k]
        }
    }

    mutating func bind1(_ node: ONNXNode, _ value: ValueID) throws(ImportFailure) { try bind(node, [value]) }

    func required(_ node: ONNXNode, _ i: Int) throws(ImportFailure) -> ValueID {
        guard let name = node.input(i) else { throw ImportFailure("input \(i) is required") }
        return try value(name)
    }

    /// A constant of `dtype` holding `values` with `shape` (default: 1-D).
    mutating func constant(_ values: [Double], _ dtype: DType, _ shape: Shape? = nil, name: String) -> ValueID {
        graph.addConstant(Reference64.tensor(values, dtype, shape ?? Shape([values.count])), name: name)
    }

    /// The axes a node names, normalised against `rank`.
    func normalize(_ axes: [Int], rank: Int) throws(ImportFailure) -> [Int] {
        var out: [Int] = []
        for a in axes {
            guard let n = normalizeAxis(a, rank: rank) else { throw ImportFailure("axis \(a) out of range for rank \(rank)") }
            out.append(n)
        }
        return out
    }
}
