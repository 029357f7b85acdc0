import Tensors

/// Index of a value in `Graph.values`.
public typealias ValueID = Int

/// A value of the graph: a graph input, a constant (weight or folded tensor), or a node output.
public struct Value: Sendable {
    public enum Definition: Sendable {
        case input
        /// A constant: a weight (often a zero-copy view of a mapped checkpoint) or a folded tensor.
        case constant(Tensor)
        /// Output `output` of node `node`.
        case node(Int, output: Int)
    }

    public var type: TensorType
    /// The name it had where it came from (ONNX value name, checkpoint key), for messages.
    public var name: String
    public var definition: Definition

    public var isConstant: Bool {
        if case .constant = definition { return true }
        return false
    }

    public var constant: Tensor? {
        if case .constant(let t) = definition { return t }
        return nil
    }
}

/// One operation. `name` is its provenance (ONNX node name or checkpoint key prefix).
public struct Node: Sendable {
    public var op: Op
    public var inputs: [ValueID]
    public var outputs: [ValueID]
    public var name: String

    public init(op: Op, inputs: [ValueID], outputs: [ValueID], name: String) {
        self.op = op
        self.inputs = inputs
        self.outputs = outputs
        self.name = name
    }
}

/// A graph of typed values and nodes.
///
/// Invariants (checked by `verify()`): nodes are in a valid execution order (every input is a graph
/// input, a constant, or an output of an earlier node); every value is defined once and its
/// `definition` says where; every node's output types are what `Op.inferTypes` gives for its input
/// types; graph outputs refer to existing values.
public struct Graph: Sendable {
    public var values: [Value] = []
    public var nodes: [Node] = []
    public var inputs: [ValueID] = []
    /// Graph outputs by name (a value may be exposed under several names).
    public var outputs: [(name: String, value: ValueID)] = []

    public init() {}

    public func type(_ v: ValueID) -> TensorType { values[v].type }

    /// Adds a graph input.
    @discardableResult
    public mutating func addInput(_ name: String, _ type: TensorType) -> ValueID {
        values.append(Value(type: type, name: name, definition: .input))
        inputs.append(values.count - 1)
        return values.count - 1
    }

    /// Adds a constant.
    @discardableResult
    public mutating func addConstant(_ tensor: Tensor, name: String) -> ValueID {
        values.append(Value(type: TensorType(tensor.dtype, tensor.shape), name: name, definition: .constant(tensor)))
        return values.count - 1
    }

    /// Appends a node after inferring its output types; returns the output values.
    @discardableResult
    public mutating func add(_ op: Op, _ inputs: [ValueID], name: String, outputNames: [String]? = nil) throws(IRError) -> [ValueID] {
        for i in inputs where i < 0 || i >= values.count {
            throw IRError(node: name, "input value %\(i) does not exist")
        }
        let types = try op.inferTypes(inputs.map { values[$0].type }, node: name)
        let index = nodes.count
        var outs: [ValueID] = []
        for (k, t) in types.enumerated() {
            let n = outputNames.flatMap { k < $0.count ? $0[k] : nil } ?? (types.count == 1 ? name : "\(name):\(k)")
            values.append(Value(type: t, name: n, definition: .node(index, output: k)))
            outs.append(values.count - 1)
        }
        nodes.append(Node(op: op, inputs: inputs, outputs: outs, name: name))
        return outs
    }

    /// Appends a single-output node; returns its output.
    public mutating func add1(_ op: Op, _ inputs: [ValueID], name: String) throws(IRError) -> ValueID {
        let outs = try add(op, inputs, name: name)
        guard outs.count == 1 else { throw IRError(node: name, "\(op.name) has \(outs.count) outputs, expected one") }
        return outs[0]
    }

    public mutating func setOutput(_ name: String, _ value: ValueID) {
        outputs.append((name, value))
    }

    /// For each value, the nodes that read it (as many entries as uses).
    public func users() -> [[Int]] {
        var u = [[Int]](repeating: [], count: values.count)
        for (i, n) in nodes.enumerated() {
            for v in n.inputs { u[v].append(i) }
        }
        return u
    }
}

/// An error building or checking a graph: names the node (or value) and what is wrong.
public struct IRError: Error, CustomStringConvertible, Sendable {
    public let node: String
    public let message: String

    public init(node: String, _ message: String) {
        self.node = node
        self.message = message
    }

    public var description: String { node.isEmpty ? message : "node '\(node)': \(message)" }
}

/// Evaluates one operation on constant inputs: how the importers fold exporters' shape arithmetic
/// without importing the reference kernels themselves (the tool passes the reference evaluator).
public protocol ConstantEvaluator: Sendable {
    func evaluate(_ op: Op, _ inputs: [Tensor], outputTypes: [TensorType]) throws -> [Tensor]
}
