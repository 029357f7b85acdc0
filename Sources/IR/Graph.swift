import Tensors

/// Index of a value in `Graph.values`.
public typealias ValueID = Int

/// A value of the graph: a graph input, a constant (weight or folded tensor), or a node output.
public struct Value: Sendable {
    public enum Definition: Sendable {
        case input
        /// A constant: a folded tensor or an ONNX initializer (often a zero-copy view of a mapped file).
        case constant(Tensor)
        /// A weight of a model definition, named by its checkpoint key: typed when the graph is
        /// built, its data bound later (nil until then) from a checkpoint or a synthetic source.
        case weight(String, Tensor?)
        /// Output `output` of node `node`.
        case node(Int, output: Int)
    }

    public var type: TensorType
    /// The name it had where it came from (ONNX value name, checkpoint key), for messages.
    public var name: String
    public var definition: Definition

    public init(type: TensorType, name: String, definition: Definition) {
        self.type = type
        self.name = name
        self.definition = definition
    }

    /// A constant or a bound weight: data known before the graph runs.
    public var isConstant: Bool { constant != nil }

    public var constant: Tensor? {
        switch definition {
        case .constant(let t): return t
        case .weight(_, let t): return t
        default: return nil
        }
    }

    /// The checkpoint key of a weight.
    public var weightKey: String? {
        if case .weight(let key, _) = definition { return key }
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
    /// Weight value by key.
    public private(set) var weightIndex: [String: ValueID] = [:]

    public init() {}

    public func type(_ v: ValueID) -> TensorType { values[v].type }

    /// The largest tensor a graph may hold (1 TB): sizes read from files are refused past it, and
    /// the arithmetic on them never overflows.
    public static let maxTensorBytes = 1 << 40

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

    /// Adds a weight named by its checkpoint key (its data is bound later); a key may be declared once.
    @discardableResult
    public mutating func addWeight(_ key: String, _ type: TensorType) throws(IRError) -> ValueID {
        if weightIndex[key] != nil { throw IRError(node: key, "weight declared twice") }
        values.append(Value(type: type, name: key, definition: .weight(key, nil)))
        weightIndex[key] = values.count - 1
        return values.count - 1
    }

    /// The weights, in declaration order: key, type, and whether data is bound.
    public var weights: [(key: String, type: TensorType, bound: Bool)] {
        values.compactMap { v in
            if case .weight(let key, let t) = v.definition { return (key, v.type, t != nil) }
            return nil
        }
    }

    /// Binds data to a weight; dtype and shape must match its declaration.
    public mutating func bindWeight(_ key: String, _ tensor: Tensor) throws(IRError) {
        guard let v = weightIndex[key] else { throw IRError(node: key, "no such weight") }
        guard tensor.dtype == values[v].type.dtype, tensor.shape == values[v].type.shape else {
            throw IRError(node: key, "data \(tensor.dtype)\(tensor.shape) does not match the weight's type \(values[v].type)")
        }
        values[v].definition = .weight(key, tensor)
    }

    /// Appends a node after inferring its output types; returns the output values.
    @discardableResult
    public mutating func add(_ op: Op, _ inputs: [ValueID], name: String, outputNames: [String]? = nil) throws(IRError) -> [ValueID] {
        for i in inputs where i < 0 || i >= values.count {
            throw IRError(node: name, "input value %\(i) does not exist")
        }
        let types = try op.inferTypes(inputs.map { values[$0].type }, node: name)
        for t in types where t.checkedByteCount.map({ $0 > Self.maxTensorBytes }) ?? true {
            throw IRError(node: name, "\(op.name): its result \(t) would take more than \(Self.maxTensorBytes >> 30) GB")
        }
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
