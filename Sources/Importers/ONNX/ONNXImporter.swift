import IR
import Tensors

/// Options of the ONNX import.
public struct ONNXImportOptions: Sendable {
    /// Static shapes for graph inputs whose shapes have symbolic or unknown dimensions.
    public var shapes: [String: [Int]] = [:]
    /// Evaluates nodes whose inputs are all constants (exporters' shape arithmetic) during import.
    public var evaluator: ConstantEvaluator
    /// Recognise exporters' decompositions (GroupNorm, GELU, LayerNorm, SiLU) and raise them to IR ops.
    public var raiseDecompositions = true
    /// Graph inputs fixed at import time (they become constants): inputs that carry axes, pads,
    /// shapes or scales, which the static IR needs to know.
    public var constants: [String: Tensor] = [:]

    public init(evaluator: ConstantEvaluator, shapes: [String: [Int]] = [:]) {
        self.evaluator = evaluator
        self.shapes = shapes
    }
}

/// An imported model: the IR graph, and what the file said about itself.
public struct ONNXImport: Sendable {
    public var graph: Graph
    public var opset: Int
    public var producer: String
    /// Decompositions raised to IR ops, by kind (e.g. "gelu": 12).
    public var raised: [String: Int]
}

/// ONNX → IR. Opsets 13 and later of the default domain are read (each op at the version in
/// effect for the model's opset); ops are mapped to IR ops by the table in `ONNXOpTable.swift`.
/// Graph inputs must have static shapes, or be bound with `options.shapes`.
public enum ONNXImporter {
    public static let minimumOpset = 13
    public static let maximumOpset = 28

    public static func load(_ path: String, options: ONNXImportOptions) throws(CheckpointError) -> ONNXImport {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw CheckpointError(path, error.message) }
        let model: ONNXModel
        do { model = try ONNXProtobuf.model(file.bytes) } catch { throw CheckpointError(path, error.message) }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        return try importModel(model, path: path, directory: directory, options: options)
    }

    static func importModel(_ model: ONNXModel, path: String, directory: String, options: ONNXImportOptions) throws(CheckpointError) -> ONNXImport {
        let opset = model.opsets[""] ?? model.opsets["ai.onnx"] ?? 0
        guard opset >= minimumOpset else {
            throw CheckpointError(path, "opset \(opset) is older than the oldest this importer reads (\(minimumOpset)); upgrade the model with onnx.version_converter")
        }
        guard opset <= maximumOpset else {
            throw CheckpointError(path, "opset \(opset) is newer than the newest this importer knows (\(maximumOpset))")
        }
        var context = ImportContext(path: path, directory: directory, opset: opset, evaluator: options.evaluator)
        let g = model.graph

        // Initializers first: they may also be listed as inputs (older exporters), and then they are constants.
        for t in g.initializers {
            let tensor = try context.tensor(t, what: "initializer '\(t.name)'")
            context.names[t.name] = context.graph.addConstant(tensor, name: t.name)
        }
        var bound = Set<String>()
        for (name, t) in options.constants {
            guard let input = g.inputs.first(where: { $0.name == name }) else {
                throw CheckpointError(path, "a constant is given for '\(name)', which is not a graph input")
            }
            if let code = input.elemType, ONNXType.toDType[code] != t.dtype {
                throw CheckpointError(path, at: "graph input '\(name)'", "is \(ONNXType.name(code)), the constant given is \(t.dtype)")
            }
            context.names[name] = context.graph.addConstant(t, name: name)
            bound.insert(name)
        }
        for input in g.inputs where context.names[input.name] == nil {
            let at = "graph input '\(input.name)'"
            guard let code = input.elemType else { throw CheckpointError(path, at: at, "is not a tensor (sequences, maps and optionals are not supported)") }
            guard let dtype = ONNXType.toDType[code] else { throw CheckpointError(path, at: at, "element type \(ONNXType.name(code)) is not supported") }
            var dims: [Int] = []
            if let given = options.shapes[input.name] {
                if let declared = input.dims {
                    guard declared.count == given.count else {
                        throw CheckpointError(path, at: at, "--shape gives \(given.count) dimensions, the model declares \(declared.count)")
                    }
                    for (d, v) in zip(declared, given) {
                        if case .value(let fixed) = d, fixed != v {
                            throw CheckpointError(path, at: at, "--shape \(Shape(given)) disagrees with the declared dimension \(fixed)")
                        }
                    }
                }
                dims = given
                bound.insert(input.name)
            } else {
                guard let declared = input.dims else {
                    throw CheckpointError(path, at: at, "has no shape; give one with --shape \(input.name)=D1,D2,...")
                }
                for d in declared {
                    switch d {
                    case .value(let v) where v >= 0: dims.append(v)
                    case .param(let p):
                        throw CheckpointError(path, at: at, "dimension '\(p)' is symbolic; bind it with --shape \(input.name)=D1,D2,...")
                    default:
                        throw CheckpointError(path, at: at, "has an unknown dimension; bind it with --shape \(input.name)=D1,D2,...")
                    }
                }
            }
            let type = TensorType(dtype, Shape(dims))
            guard let bytes = type.checkedByteCount, bytes <= Graph.maxTensorBytes else {
                throw CheckpointError(path, at: at, "shape \(dims) is larger than \(Graph.maxTensorBytes >> 30) GB")
            }
            context.names[input.name] = context.graph.addInput(input.name, type)
        }
        if let unknown = options.shapes.keys.sorted().first(where: { !bound.contains($0) }) {
            throw CheckpointError(path, "--shape names '\(unknown)', which is not a graph input (inputs: \(g.inputs.map(\.name).joined(separator: ", ")))")
        }

        for node in g.nodes {
            let label = "node '\(node.name.isEmpty ? node.outputs.first ?? "?" : node.name)' (\(node.opType))"
            do { try context.convert(node) } catch let e as IRError {
                throw CheckpointError(path, at: label, e.message)
            } catch let e as ImportFailure {
                // A runtime value where a constant is needed: name the graph input it comes from,
                // so it can be bound at import.
                let input = e.value.flatMap { v in context.graphInputFeeding(v) }
                throw CheckpointError(path, at: label, e.message + (input.map { "; it comes from graph input '\($0)': give that input's value at import (--const \($0)=FILE)" } ?? ""),
                                      requiredConstant: input)
            } catch let e as CheckpointError {
                throw e
            } catch {
                throw CheckpointError(path, at: label, "\(error)")
            }
        }
        for output in g.outputs {
            guard let v = context.names[output.name] else {
                throw CheckpointError(path, at: "graph output '\(output.name)'", "no node produces it and it is not an input or initializer")
            }
            context.graph.setOutput(output.name, v)
        }
        var graph = context.graph
        var raised: [String: Int] = [:]
        if options.raiseDecompositions {
            raised = raiseDecompositions(&graph)
        }
        graph = graph.withoutDeadNodes()
        do { try graph.verify() } catch { throw CheckpointError(path, "imported graph fails verification: \(error)") }
        return ONNXImport(graph: graph, opset: opset, producer: model.producer, raised: raised)
    }
}

/// A conversion error for one node (the caller adds the file and node).
struct ImportFailure: Error {
    let message: String
    /// The ONNX value the failure is about, when there is one.
    var value: String?
    init(_ message: String, value: String? = nil) {
        self.message = message
        self.value = value
    }
}

/// State while converting nodes: the graph so far and the ONNX name of every value.
struct ImportContext {
    /// The largest constant folded at import (ConstantOfShape, Range, shape arithmetic): exporters'
    /// are small; past it the model is refused rather than a huge allocation tried.
    static let maxFoldedBytes = 1 << 30
    let path: String
    let directory: String
    let opset: Int
    let evaluator: ConstantEvaluator
    var graph = Graph()
    var names: [String: ValueID] = [:]
    /// External data files, mapped once each.
    var externalFiles: [String: MappedFile] = [:]

    init(path: String, directory: String, opset: Int, evaluator: ConstantEvaluator) {
        self.path = path
        self.directory = directory
        self.opset = opset
        self.evaluator = evaluator
    }

    /// The graph input a value is computed from (the first, if several), or nil.
    func graphInputFeeding(_ name: String) -> String? {
        guard let start = names[name] else { return nil }
        var stack = [start], seen = Set<ValueID>()
        while let v = stack.popLast() {
            guard seen.insert(v).inserted else { continue }
            switch graph.values[v].definition {
            case .input: return graph.values[v].name
            case .node(let n, _): stack += graph.nodes[n].inputs.reversed()
            case .constant, .weight: break
            }
        }
        return nil
    }

    /// The IR value of an ONNX value name.
    func value(_ name: String) throws(ImportFailure) -> ValueID {
        guard let v = names[name] else { throw ImportFailure("input '\(name)' is produced by no earlier node, input or initializer (a cycle, or a missing producer)") }
        return v
    }

    func type(_ name: String) throws(ImportFailure) -> TensorType { graph.type(try value(name)) }

    /// The constant behind a value name, or nil when it is computed at run time.
    func constant(_ name: String) -> Tensor? { names[name].flatMap { graph.values[$0].constant } }

    /// An input that must be a constant, as integers (`what` names it in errors).
    func ints(_ name: String, _ what: String) throws(ImportFailure) -> [Int] {
        guard let t = constant(name) else { throw ImportFailure("\(what) must be a constant (computed from static shapes), but '\(name)' is computed at run time", value: name) }
        guard !t.dtype.isFloatingPoint || t.dtype == .f32 || t.dtype == .f64 else { throw ImportFailure("\(what) has dtype \(t.dtype)") }
        return Reference64.ints(t)
    }

    func doubles(_ name: String, _ what: String) throws(ImportFailure) -> [Double] {
        guard let t = constant(name) else { throw ImportFailure("\(what) must be a constant, but '\(name)' is computed at run time", value: name) }
        return Reference64.values(t)
    }

    /// Adds a node, or folds it into constants when every input is constant.
    mutating func add(_ op: Op, _ inputs: [ValueID], name: String) throws -> [ValueID] {
        let allConstant = inputs.allSatisfy { graph.values[$0].isConstant }
        if allConstant {
            let types = try op.inferTypes(inputs.map { graph.type($0) }, node: name)
            for t in types where t.checkedByteCount.map({ $0 > Self.maxFoldedBytes }) ?? true {
                throw ImportFailure("folding it at import would make a constant \(t) of more than \(Self.maxFoldedBytes >> 20) MB")
            }
            let results = try evaluator.evaluate(op, inputs.map { graph.values[$0].constant! }, outputTypes: types)
            return results.enumerated().map { graph.addConstant($1, name: types.count == 1 ? name : "\(name):\($0)") }
        }
        return try graph.add(op, inputs, name: name)
    }

    mutating func add1(_ op: Op, _ inputs: [ValueID], name: String) throws -> ValueID {
        try add(op, inputs, name: name)[0]
    }

    /// A small constant (scalars, shapes) for the lowering of one node.
    mutating func scalar(_ value: Double, _ dtype: DType, name: String) -> ValueID {
        graph.addConstant(Reference64.tensor([value], dtype, []), name: name)
    }

    /// Converts a TensorProto: raw bytes, typed fields, or external data (memory-mapped, no copy).
    mutating func tensor(_ t: ONNXTensor, what: String) throws(CheckpointError) -> Tensor {
        guard let dtype = ONNXType.toDType[t.dataType] else {
            throw CheckpointError(path, at: what, "element type \(ONNXType.name(t.dataType)) is not supported")
        }
        guard let bytes = Checked.bytes(t.dims, elementSize: dtype.byteSize) else {
            throw CheckpointError(path, at: what, "dimensions \(t.dims) are negative or larger than \(Checked.maxBytes >> 30) GB")
        }
        let shape = Shape(t.dims)
        if let external = t.external {
            guard let location = external["location"], !location.isEmpty else { throw CheckpointError(path, at: what, "external data without a location") }
            guard !location.hasPrefix("/"), !location.split(separator: "/").contains("..") else {
                throw CheckpointError(path, at: what, "external data location '\(location)' leaves the model's directory")
            }
            let filePath = directory + "/" + location
            let file: MappedFile
            if let f = externalFiles[filePath] { file = f } else {
                do { file = try MappedFile(path: filePath) } catch { throw CheckpointError(path, at: what, "external data file: \(error)") }
                externalFiles[filePath] = file
            }
            let offset = Int(external["offset"] ?? "0") ?? -1
            let length = external["length"].map { Int($0) ?? -1 } ?? (file.size - max(offset, 0))
            guard offset >= 0, length >= 0 else { throw CheckpointError(path, at: what, "bad external data offset/length") }
            guard length == bytes else {
                throw CheckpointError(path, at: what, "external data holds \(length) bytes, but \(dtype)\(shape) needs \(bytes)")
            }
            guard let range = Checked.range(offset: offset, length: length, within: file.size) else {
                throw CheckpointError(path, at: what, "external data [\(offset), +\(length)) runs past the end of \(filePath) (\(file.size) bytes): missing or short file")
            }
            return Tensor(dtype: dtype, shape: shape, storage: TensorStorage(file: file, range: range))
        }
        if let raw = t.raw {
            guard raw.count == bytes else {
                throw CheckpointError(path, at: what, "raw data holds \(raw.count) bytes, but \(dtype)\(shape) needs \(bytes)")
            }
            let storage = TensorStorage(byteCount: bytes)
            raw.withUnsafeBytes { storage.mutableBytes!.copyMemory(from: $0) }
            return Tensor(dtype: dtype, shape: shape, storage: storage)
        }
        // Typed fields: float_data (f32), int32_data (i32, i16, i8, u8, bool, and f16/bf16 bits),
        // int64_data, double_data. Their count is checked before the tensor is allocated: a huge
        // shape with no data is refused, not allocated.
        let count = bytes / dtype.byteSize
        let (field, values): (String, Int)
        switch dtype {
        case .f32: (field, values) = ("float_data", t.floats.count)
        case .f64: (field, values) = ("double_data", t.doubles.count)
        case .i64: (field, values) = ("int64_data", t.int64s.count)
        case .i32, .i16, .i8, .u8, .bool, .f16, .bf16: (field, values) = ("int32_data", t.int32s.count)
        }
        guard values == count else {
            throw CheckpointError(path, at: what, "\(field) holds \(values) values, but \(dtype)\(shape) has \(count) elements")
        }
        let out = Tensor.zeros(dtype, shape)
        let dst = out.storage.mutableBytes!
        switch dtype {
        case .f32:
            t.floats.withUnsafeBytes { dst.copyMemory(from: $0) }
        case .f64:
            t.doubles.withUnsafeBytes { dst.copyMemory(from: $0) }
        case .i64:
            t.int64s.withUnsafeBytes { dst.copyMemory(from: $0) }
        case .i32:
            t.int32s.withUnsafeBytes { dst.copyMemory(from: $0) }
        case .i16, .i8, .u8, .bool, .f16, .bf16:
            for (i, v) in t.int32s.enumerated() {
                switch dtype.byteSize {
                case 1: dst.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
                default: dst.storeBytes(of: UInt16(truncatingIfNeeded: v), toByteOffset: 2 * i, as: UInt16.self)
                }
            }
        }
        return out
    }
}

/// Double-precision element access for import-time arithmetic on small constants.
enum Reference64 {
    /// Integer elements exactly (int64 extremes included); floats truncated and clamped.
    static func ints(_ t: Tensor) -> [Int] {
        switch t.dtype {
        case .i64: return t.withElements(as: Int64.self) { $0.map { Int($0) } }
        case .i32: return t.withElements(as: Int32.self) { $0.map { Int($0) } }
        default: return values(t).map { $0.isNaN ? 0 : Int(clamping: Int64(exactly: $0.rounded(.towardZero)) ?? ($0 < 0 ? Int64.min : Int64.max)) }
        }
    }

    static func values(_ t: Tensor) -> [Double] {
        var out = [Double](repeating: 0, count: t.count)
        out.withUnsafeMutableBytes { ElementConversion.convert(t.bytes, from: t.dtype, into: $0, as: .f64, count: t.count) }
        return out
    }

    static func tensor(_ values: [Double], _ dtype: DType, _ shape: Shape) -> Tensor {
        let out = Tensor.zeros(dtype, shape)
        values.withUnsafeBytes { ElementConversion.convert($0, from: .f64, into: out.storage.mutableBytes!, as: dtype, count: values.count) }
        return out
    }
}

extension ONNXImporter {
    /// Reads a serialized TensorProto file (as ONNX test data sets store inputs and outputs).
    public static func readTensorProto(_ path: String) throws(CheckpointError) -> (name: String, tensor: Tensor) {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw CheckpointError(path, error.message) }
        let proto: ONNXTensor
        do { proto = try ONNXProtobuf.tensorProto(file.bytes) } catch { throw CheckpointError(path, error.message) }
        let slash = path.lastIndex(of: "/")
        var context = ImportContext(path: path, directory: slash.map { String(path[..<$0]) } ?? ".", opset: maximumOpset, evaluator: NoEvaluator())
        return (proto.name, try context.tensor(proto, what: "tensor '\(proto.name)'"))
    }
}

/// For reading tensors alone: nothing is evaluated.
struct NoEvaluator: ConstantEvaluator {
    func evaluate(_ op: Op, _ inputs: [Tensor], outputTypes: [TensorType]) throws -> [Tensor] {
        throw IRError(node: "", "no evaluator")
    }
}

extension ONNXImporter {
    /// The ONNX op types the importer converts.
    public static var supportedOps: [String] { ONNXOps.table.keys.sorted() }
}
