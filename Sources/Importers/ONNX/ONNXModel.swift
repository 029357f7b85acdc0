import ONNXProto
import Tensors

/// ONNX element types (TensorProto.DataType) and ours.
enum ONNXType {
    static let toDType: [Int32: DType] = [1: .f32, 2: .u8, 3: .i8, 5: .i16, 6: .i32, 7: .i64, 9: .bool, 10: .f16, 11: .f64, 16: .bf16]
    static let names: [Int32: String] = [
        0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING", 9: "BOOL",
        10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16",
        17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1",
    ]
    static func code(_ d: DType) -> Int32 { toDType.first { $0.value == d }!.key }
    static func name(_ code: Int32) -> String { names[code] ?? "type \(code)" }
}

/// A TensorProto, with its data still as stored (raw bytes, typed fields or an external file).
struct ONNXTensor {
    var name: String
    var dataType: Int32
    var dims: [Int]
    var raw: [UInt8]?
    var floats: [Float] = []
    var int32s: [Int32] = []
    var int64s: [Int64] = []
    var doubles: [Double] = []
    var uint64s: [UInt64] = []
    var stringCount = 0
    /// `location`, `offset`, `length` (and `checksum`) when the data is in an external file.
    var external: [String: String]?
}

struct ONNXAttribute {
    enum Kind: Int32 { case undefined = 0, float = 1, int = 2, string = 3, tensor = 4, graph = 5, floats = 6, ints = 7, strings = 8, tensors = 9, graphs = 10, sparseTensor = 11, sparseTensors = 12, typeProto = 13, typeProtos = 14 }
    var name: String
    var kind: Kind
    var f: Float = 0
    var i: Int = 0
    var s: String = ""
    var t: ONNXTensor?
    var floats: [Float] = []
    var ints: [Int] = []
    var strings: [String] = []
    /// Set when the attribute refers to an attribute of an enclosing function (unsupported).
    var refAttrName: String?
}

struct ONNXNode {
    var name: String
    var opType: String
    var domain: String
    var inputs: [String]
    var outputs: [String]
    var attributes: [ONNXAttribute]

    func attribute(_ name: String) -> ONNXAttribute? { attributes.first { $0.name == name } }
}

struct ONNXValueInfo {
    enum Dim: Equatable { case value(Int), param(String), unknown }
    var name: String
    /// nil when the value is not a tensor (sequence, map, optional).
    var elemType: Int32?
    /// nil when the shape is not given at all.
    var dims: [Dim]?
}

struct ONNXGraph {
    var name: String
    var nodes: [ONNXNode]
    var initializers: [ONNXTensor]
    var inputs: [ONNXValueInfo]
    var outputs: [ONNXValueInfo]
    var valueInfo: [ONNXValueInfo]
}

struct ONNXModel {
    var irVersion: Int
    var producer: String
    /// Opset version per domain ("" is the default ONNX domain).
    var opsets: [String: Int]
    var graph: ONNXGraph
}

/// Parses serialized ModelProto / TensorProto bytes with the protobuf-c code generated from
/// onnx.proto, and converts the result to Swift values at once.
enum ONNXProtobuf {
    struct Failure: Error { let message: String }

    static func model(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> ONNXModel {
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw Failure(message: "empty file") }
        do { try ONNXNesting.check(bytes) } catch { throw Failure(message: error.message) }
        guard let m = onnx__model_proto__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
            throw Failure(message: "not a valid ONNX protobuf (ModelProto could not be parsed: corrupt or truncated)")
        }
        defer { onnx__model_proto__free_unpacked(m, nil) }
        var opsets: [String: Int] = [:]
        for o in messages(m.pointee.opset_import, m.pointee.n_opset_import) { opsets[str(o.domain)] = Int(o.version) }
        guard let g = m.pointee.graph else { throw Failure(message: "the model has no graph") }
        return ONNXModel(irVersion: Int(m.pointee.ir_version), producer: str(m.pointee.producer_name) + " " + str(m.pointee.producer_version),
                         opsets: opsets, graph: try graph(g.pointee))
    }

    static func tensorProto(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> ONNXTensor {
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw Failure(message: "empty file") }
        guard let t = onnx__tensor_proto__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
            throw Failure(message: "not a valid TensorProto")
        }
        defer { onnx__tensor_proto__free_unpacked(t, nil) }
        return tensor(t.pointee)
    }

    private static func str(_ p: UnsafeMutablePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }

    private static func array<T>(_ p: UnsafeMutablePointer<T>?, _ n: Int) -> [T] {
        guard let p, n > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    /// A repeated message field: protobuf-c's array of `n` pointers (null ones, which protobuf-c
    /// never leaves, skipped rather than trusted).
    private static func messages<T>(_ p: UnsafeMutablePointer<UnsafeMutablePointer<T>?>?, _ n: Int) -> [T] {
        guard let p, n > 0 else { return [] }
        return UnsafeBufferPointer(start: p, count: n).compactMap { $0?.pointee }
    }

    private static func graph(_ g: Onnx__GraphProto) throws(Failure) -> ONNXGraph {
        var nodes: [ONNXNode] = []
        for n in messages(g.node, g.n_node) {
            let attributes = messages(n.attribute, n.n_attribute).map(attribute)
            nodes.append(ONNXNode(name: str(n.name), opType: str(n.op_type), domain: str(n.domain),
                                  inputs: (0..<n.n_input).map { str(n.input[$0]) },
                                  outputs: (0..<n.n_output).map { str(n.output[$0]) }, attributes: attributes))
        }
        return ONNXGraph(name: str(g.name), nodes: nodes,
                         initializers: messages(g.initializer, g.n_initializer).map(tensor),
                         inputs: messages(g.input, g.n_input).map(valueInfo),
                         outputs: messages(g.output, g.n_output).map(valueInfo),
                         valueInfo: messages(g.value_info, g.n_value_info).map(valueInfo))
    }

    private static func attribute(_ a: Onnx__AttributeProto) -> ONNXAttribute {
        var out = ONNXAttribute(name: str(a.name), kind: ONNXAttribute.Kind(rawValue: Int32(a.type.rawValue)) ?? .undefined)
        out.f = a.f
        out.i = Int(a.i)
        if a.s.len > 0 { out.s = String(decoding: UnsafeBufferPointer(start: a.s.data, count: a.s.len), as: UTF8.self) }
        if let t = a.t { out.t = tensor(t.pointee) }
        out.floats = array(a.floats, a.n_floats)
        out.ints = array(a.ints, a.n_ints).map { Int($0) }
        out.strings = (0..<a.n_strings).map { k in
            let b = a.strings[k]
            return String(decoding: UnsafeBufferPointer(start: b.data, count: b.len), as: UTF8.self)
        }
        let ref = str(a.ref_attr_name)
        if !ref.isEmpty { out.refAttrName = ref }
        if out.kind == .undefined {
            // Old files may omit `type`: infer it from the field that is set.
            if a.n_ints > 0 { out.kind = .ints } else if a.n_floats > 0 { out.kind = .floats } else if a.t != nil { out.kind = .tensor }
            else if a.has_s != 0 { out.kind = .string } else if a.has_f != 0 { out.kind = .float } else if a.has_i != 0 { out.kind = .int }
        }
        return out
    }

    private static func tensor(_ t: Onnx__TensorProto) -> ONNXTensor {
        var out = ONNXTensor(name: str(t.name), dataType: t.data_type, dims: array(t.dims, t.n_dims).map { Int($0) }, raw: nil)
        if t.has_raw_data != 0 {
            out.raw = t.raw_data.len > 0 ? Array(UnsafeBufferPointer(start: t.raw_data.data, count: t.raw_data.len)) : []
        }
        out.floats = array(t.float_data, t.n_float_data)
        out.int32s = array(t.int32_data, t.n_int32_data)
        out.int64s = array(t.int64_data, t.n_int64_data)
        out.doubles = array(t.double_data, t.n_double_data)
        out.uint64s = array(t.uint64_data, t.n_uint64_data)
        out.stringCount = t.n_string_data
        if t.has_data_location != 0, t.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL {
            var entries: [String: String] = [:]
            for e in messages(t.external_data, t.n_external_data) { entries[str(e.key)] = str(e.value) }
            out.external = entries
        }
        return out
    }

    private static func valueInfo(_ v: Onnx__ValueInfoProto) -> ONNXValueInfo {
        var out = ONNXValueInfo(name: str(v.name), elemType: nil, dims: nil)
        guard let type = v.type, type.pointee.value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE,
              let tt = type.pointee.tensor_type else { return out }
        out.elemType = tt.pointee.elem_type
        if let shape = tt.pointee.shape {
            out.dims = messages(shape.pointee.dim, shape.pointee.n_dim).map { d in
                switch d.value_case {
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE: return .value(Int(d.dim_value))
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM: return .param(str(d.dim_param))
                default: return .unknown
                }
            }
        }
        return out
    }
}
