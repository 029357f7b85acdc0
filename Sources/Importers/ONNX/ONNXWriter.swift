import IR
import Tensors

/// IR → ONNX (opset 21, default domain), for running our graphs in other engines.
///
/// Each IR op becomes one ONNX node or a short chain (SiLU → Sigmoid·Mul, linear → Transpose·MatMul·Add,
/// CRD space-to-depth → Reshape·Transpose·Reshape). Initializers larger than `externalThreshold` in a
/// model whose weights exceed 2 GB (protobuf's limit) go to an external data file beside the model.
public enum ONNXWriter {
    public static let opset = 21

    public struct Options: Sendable {
        /// Total initializer bytes above which data is written externally (default: 1.8 GB).
        public var externalDataAbove = 1_800_000_000
        public var overwrite = false
        public init() {}
    }

    /// Writes `graph` to `path` (and `path.data` when external data is used). Atomic.
    public static func write(_ graph: Graph, to path: String, options: Options = Options()) throws(CheckpointError) {
        var builder = Builder(graph: graph)
        do { try builder.build() } catch { throw CheckpointError(path, "cannot write as ONNX: \(error)") }
        let weightBytes = builder.initializers.reduce(0) { $0 + $1.tensor.byteCount }
        let external = weightBytes > options.externalDataAbove
        let dataName = (path.split(separator: "/").last.map(String.init) ?? path) + ".data"
        var dataOutput: OutputFile?
        var dataOffset = 0
        do {
            if external { dataOutput = try OutputFile(path: path + ".data", overwrite: options.overwrite) }
            var g = ProtobufWriter()
            for node in builder.nodes { g.message(1, node) }
            g.string(2, "diffbir")
            for t in builder.initializers {
                var tp = ProtobufWriter()
                tp.packedInts(1, t.tensor.shape.dims)
                tp.int(2, Int(ONNXType.code(t.tensor.dtype)))
                tp.string(8, t.name)
                if let out = dataOutput, t.tensor.byteCount >= 1024 {
                    // 64-byte aligned records in the external file.
                    let pad = (64 - dataOffset % 64) % 64
                    if pad > 0 { try out.write([UInt8](repeating: 0, count: pad)); dataOffset += pad }
                    try out.write(t.tensor.bytes)
                    for (k, v) in [("location", dataName), ("offset", String(dataOffset)), ("length", String(t.tensor.byteCount))] {
                        var e = ProtobufWriter()
                        e.string(1, k)
                        e.string(2, v)
                        tp.message(13, e)
                    }
                    tp.int(14, 1)  // data_location = EXTERNAL
                    dataOffset += t.tensor.byteCount
                } else {
                    tp.data(9, t.tensor.bytes)
                }
                g.message(5, tp)
            }
            for v in graph.inputs { g.message(11, valueInfo(graph.values[v].name, graph.values[v].type)) }
            for (name, _) in graph.outputs { g.message(12, valueInfo(name, builder.outputTypes[name]!)) }
            var m = ProtobufWriter()
            m.int(1, 9)  // ir_version 9 (ONNX 1.15+, opset 21)
            m.string(2, "diffbir")
            m.string(3, "0.1")
            m.message(7, g)
            var opsetId = ProtobufWriter()
            opsetId.string(1, "")
            opsetId.int(2, opset)
            m.message(8, opsetId)
            let out = try OutputFile(path: path, overwrite: options.overwrite)
            try out.write(m.bytes)
            try dataOutput?.commit()
            try out.commit()
        } catch {
            dataOutput?.discard()
            throw CheckpointError(path, error.message)
        }
    }

    static func valueInfo(_ name: String, _ type: TensorType) -> ProtobufWriter {
        var shape = ProtobufWriter()
        for d in type.dims {
            var dim = ProtobufWriter()
            dim.int(1, d)
            shape.message(1, dim)
        }
        var tensorType = ProtobufWriter()
        tensorType.int(1, Int(ONNXType.code(type.dtype)))
        tensorType.message(2, shape)
        var typeProto = ProtobufWriter()
        typeProto.message(1, tensorType)
        var v = ProtobufWriter()
        v.string(1, name)
        v.message(2, typeProto)
        return v
    }

    /// Turns IR nodes into ONNX nodes, naming every value uniquely.
    struct Builder {
        let graph: Graph
        var nodes: [ProtobufWriter] = []
        var initializers: [(name: String, tensor: Tensor)] = []
        var names: [String]
        var outputTypes: [String: TensorType] = [:]
        private var used = Set<String>()
        private var counter = 0

        init(graph: Graph) {
            self.graph = graph
            names = [String](repeating: "", count: graph.values.count)
        }

        mutating func unique(_ base: String) -> String {
            var name = base.isEmpty ? "v" : base
            while used.contains(name) {
                counter += 1
                name = "\(base)_\(counter)"
            }
            used.insert(name)
            return name
        }

        /// An extra initializer (shapes, axes, pads).
        mutating func ints(_ values: [Int], _ hint: String) -> String {
            let name = unique(hint)
            let t = Tensor.zeros(.i64, Shape([values.count]))
            values.map { Int64($0) }.withUnsafeBytes { t.storage.mutableBytes!.copyMemory(from: $0) }
            initializers.append((name, t))
            return name
        }

        /// A 0-D int64 initializer.
        mutating func intScalar(_ value: Int, _ hint: String) -> String {
            let name = unique(hint)
            let t = Tensor.zeros(.i64, [])
            t.storage.mutableBytes!.storeBytes(of: Int64(value), as: Int64.self)
            initializers.append((name, t))
            return name
        }

        mutating func scalar(_ value: Float, _ dtype: DType, _ hint: String) -> String {
            let name = unique(hint)
            initializers.append((name, Tensor([value], shape: []).converted(to: dtype)))
            return name
        }

        enum Attribute {
            case int(Int), float(Float), string(String), ints([Int]), floats([Float])
        }

        mutating func node(_ op: String, _ inputs: [String], _ outputs: [String], _ attributes: [(String, Attribute)] = [], name: String) {
            var n = ProtobufWriter()
            for i in inputs { n.string(1, i) }
            for o in outputs { n.string(2, o) }
            n.string(3, name)
            n.string(4, op)
            for (key, value) in attributes {
                var a = ProtobufWriter()
                a.string(1, key)
                switch value {
                case .int(let v): a.int(3, v); a.int(20, 2)
                case .float(let v): a.float(2, v); a.int(20, 1)
                case .string(let v): a.data(4, Array(v.utf8)); a.int(20, 3)
                case .ints(let v): for x in v { a.int(8, x) }; a.int(20, 7)
                case .floats(let v): for x in v { a.float(7, x) }; a.int(20, 6)
                }
                n.message(5, a)
            }
            nodes.append(n)
        }

        mutating func build() throws(IRError) {
            for (i, v) in graph.values.enumerated() {
                switch v.definition {
                case .input: names[i] = unique(v.name)
                case .constant(let t):
                    names[i] = unique(v.name)
                    initializers.append((names[i], t))
                case .weight(let key, let t):
                    guard let t else { throw IRError(node: key, "weight has no data: bind the checkpoint before writing") }
                    names[i] = unique(key)
                    initializers.append((names[i], t))
                case .node: break
                }
            }
            // Graph outputs keep their names: the node producing one writes it directly.
            var outputName: [ValueID: String] = [:]
            for (name, v) in graph.outputs where outputName[v] == nil && !used.contains(name) {
                if case .node = graph.values[v].definition {
                    outputName[v] = name
                    used.insert(name)
                }
            }
            for n in graph.nodes {
                for v in n.outputs { names[v] = outputName[v] ?? unique(graph.values[v].name) }
                try emit(n)
            }
            for (name, v) in graph.outputs {
                outputTypes[name] = graph.values[v].type
                if names[v] != name {
                    node("Identity", [names[v]], [name], name: "output_" + name)
                }
            }
        }

        /// Group norm (+ SiLU) as ONNX nodes; returns the result's name.
        mutating func prologueGroupNorm(_ x: String, _ scale: String, _ bias: String, _ p: GroupNormPrologue, _ name: String) -> String {
            let gn = unique(name + "_gn")
            node("GroupNormalization", [x, scale, bias], [gn], [("num_groups", .int(p.groups)), ("epsilon", .float(p.epsilon))], name: name + "_gn")
            guard p.silu else { return gn }
            let s = unique(name + "_gn_sigmoid"), y = unique(name + "_gn_silu")
            node("Sigmoid", [gn], [s], name: name + "_gn_sigmoid")
            node("Mul", [gn, s], [y], name: name + "_gn_silu")
            return y
        }

        /// Epilogue steps as ONNX nodes, the last one writing `out`.
        mutating func epilogue(_ start: String, _ steps: [EpilogueOp], residuals: [String], out: String, name: String) {
            var current = start
            var next = 0
            for (i, step) in steps.enumerated() {
                let target = i == steps.count - 1 ? out : unique("\(out)_e\(i)")
                switch step {
                case .activation(let a):
                    switch a {
                    case .silu:
                        let s = unique("\(out)_e\(i)_sigmoid")
                        node("Sigmoid", [current], [s], name: "\(name)_e\(i)_sigmoid")
                        node("Mul", [current, s], [target], name: "\(name)_e\(i)")
                    case .gelu: node("Gelu", [current], [target], name: "\(name)_e\(i)")
                    case .geluTanh: node("Gelu", [current], [target], [("approximate", .string("tanh"))], name: "\(name)_e\(i)")
                    case .relu: node("Relu", [current], [target], name: "\(name)_e\(i)")
                    case .sigmoid: node("Sigmoid", [current], [target], name: "\(name)_e\(i)")
                    case .leakyRelu(let alpha): node("LeakyRelu", [current], [target], [("alpha", .float(alpha))], name: "\(name)_e\(i)")
                    }
                case .scale(let v): node("Mul", [current, scalar(v, .f32, "\(name)_e\(i)_scale")], [target], name: "\(name)_e\(i)")
                case .addResidual, .addChannels:
                    // (ONNX's Add broadcasts the [N, C, 1, 1] channel values.)
                    node("Add", [current, residuals[next]], [target], name: "\(name)_e\(i)")
                    next += 1
                case .scaleByInput:
                    node("Mul", [current, residuals[next]], [target], name: "\(name)_e\(i)")
                    next += 1
                case .preluChannels:
                    node("PRelu", [current, residuals[next]], [target], name: "\(name)_e\(i)")
                    next += 1
                }
                current = target
            }
            if steps.isEmpty { node("Identity", [current], [out], name: name) }
        }

        mutating func emit(_ n: Node) throws(IRError) {
            let ins = n.inputs.map { names[$0] }
            let outs = n.outputs.map { names[$0] }
            let x = ins.first ?? ""
            let xt = n.inputs.first.map { graph.type($0) }
            switch n.op {
            case .unary(let u):
                let table: [UnaryOp: String] = [
                    .abs: "Abs", .neg: "Neg", .sqrt: "Sqrt", .reciprocal: "Reciprocal", .exp: "Exp", .log: "Log", .sin: "Sin", .cos: "Cos",
                    .tan: "Tan", .tanh: "Tanh", .erf: "Erf", .sigmoid: "Sigmoid", .relu: "Relu", .floor: "Floor", .ceil: "Ceil",
                    .round: "Round", .sign: "Sign", .not: "Not", .softplus: "Softplus", .softsign: "Softsign", .mish: "Mish",
                    .isNaN: "IsNaN", .isInf: "IsInf", .asin: "Asin", .acos: "Acos", .atan: "Atan", .sinh: "Sinh", .cosh: "Cosh",
                    .asinh: "Asinh", .acosh: "Acosh", .atanh: "Atanh",
                ]
                if u == .silu {
                    let s = unique(outs[0] + "_sigmoid")
                    node("Sigmoid", [x], [s], name: n.name + "_sigmoid")
                    node("Mul", [x, s], outs, name: n.name)
                } else {
                    node(table[u]!, ins, outs, name: n.name)
                }
            case .binary(let b):
                let table: [BinaryOp: String] = [
                    .add: "Add", .sub: "Sub", .mul: "Mul", .div: "Div", .pow: "Pow", .max: "Max", .min: "Min", .equal: "Equal",
                    .less: "Less", .lessOrEqual: "LessOrEqual", .greater: "Greater", .greaterOrEqual: "GreaterOrEqual",
                    .and: "And", .or: "Or", .xor: "Xor",
                ]
                switch b {
                case .fmod: node("Mod", ins, outs, [("fmod", .int(1))], name: n.name)
                case .mod: node("Mod", ins, outs, [("fmod", .int(0))], name: n.name)
                default: node(table[b]!, ins, outs, name: n.name)
                }
            case .leakyRelu(let a): node("LeakyRelu", ins, outs, [("alpha", .float(a))], name: n.name)
            case .gelu(let g): node("Gelu", ins, outs, [("approximate", .string(g.rawValue))], name: n.name)
            case .clip(let lo, let hi):
                let t = xt!.dtype
                node("Clip", [x, scalar(lo, t, n.name + "_min"), scalar(hi, t, n.name + "_max")], outs, name: n.name)
            case .elu(let a): node("Elu", ins, outs, [("alpha", .float(a))], name: n.name)
            case .hardSigmoid(let a, let b): node("HardSigmoid", ins, outs, [("alpha", .float(a)), ("beta", .float(b))], name: n.name)
            case .select: node("Where", ins, outs, name: n.name)
            case .cast(let d): node("Cast", ins, outs, [("to", .int(Int(ONNXType.code(d))))], name: n.name)
            case .softmax(let a): node("Softmax", ins, outs, [("axis", .int(a))], name: n.name)
            case .logSoftmax(let a): node("LogSoftmax", ins, outs, [("axis", .int(a))], name: n.name)
            case .layerNorm(let a, let e): node("LayerNormalization", ins, outs, [("axis", .int(a)), ("epsilon", .float(e))], name: n.name)
            case .groupNorm(let g, let e): node("GroupNormalization", ins, outs, [("num_groups", .int(g)), ("epsilon", .float(e))], name: n.name)
            case .instanceNorm(let e): node("InstanceNormalization", ins, outs, [("epsilon", .float(e))], name: n.name)
            case .batchNorm(let e): node("BatchNormalization", ins, outs, [("epsilon", .float(e))], name: n.name)
            case .matmul: node("MatMul", ins, outs, name: n.name)
            case .linear:
                if xt!.rank == 2 {
                    node("Gemm", ins, outs, [("transB", .int(1))], name: n.name)
                } else {
                    let wt = unique(outs[0] + "_weight_t")
                    node("Transpose", [ins[1]], [wt], [("perm", .ints([1, 0]))], name: n.name + "_weight_t")
                    if ins.count == 3 {
                        let product = unique(outs[0] + "_product")
                        node("MatMul", [x, wt], [product], name: n.name + "_matmul")
                        node("Add", [product, ins[2]], outs, name: n.name)
                    } else {
                        node("MatMul", [x, wt], outs, name: n.name)
                    }
                }
            case .conv(let c):
                node("Conv", ins, outs, [("strides", .ints(c.strides)), ("pads", .ints(c.pads)), ("dilations", .ints(c.dilations)),
                                         ("group", .int(c.groups))], name: n.name)
            case .convTranspose(let c):
                node("ConvTranspose", ins, outs, [("strides", .ints(c.strides)), ("pads", .ints(c.pads)), ("dilations", .ints(c.dilations)),
                                                  ("group", .int(c.groups)), ("output_padding", .ints(c.outputPadding))], name: n.name)
            case .einsum(let e): node("Einsum", ins, outs, [("equation", .string(e))], name: n.name)
            case .reshape(let s):
                // A literal 0 in the shape needs allowzero, or ONNX reads it as "copy this dimension".
                node("Reshape", [x, ints(s.dims, n.name + "_shape")], outs, s.dims.contains(0) ? [("allowzero", .int(1))] : [], name: n.name)
            case .transpose(let p): node("Transpose", ins, outs, [("perm", .ints(p))], name: n.name)
            case .concat(let a): node("Concat", ins, outs, [("axis", .int(a))], name: n.name)
            case .split(let a, let sizes): node("Split", [x, ints(sizes, n.name + "_split")], outs, [("axis", .int(a))], name: n.name)
            case .slice(let s):
                // A backwards slice ending before element 0 needs an end below -dim (ONNX clamps it to -1).
                let ends = zip(s.ends, s.steps).map { $1 < 0 && $0 < 0 ? Int(Int64.min) : $0 }
                let axes = Array(0..<s.starts.count)
                node("Slice", [x, ints(s.starts, n.name + "_starts"), ints(ends, n.name + "_ends"), ints(axes, n.name + "_axes"),
                               ints(s.steps, n.name + "_steps")], outs, name: n.name)
            case .pad(let mode, let pads, let value):
                node("Pad", [x, ints(pads, n.name + "_pads"), scalar(value, xt!.dtype, n.name + "_value")], outs,
                     [("mode", .string(mode.rawValue))], name: n.name)
            case .gather(let a): node("Gather", ins, outs, [("axis", .int(a))], name: n.name)
            case .expand(let s): node("Expand", [x, ints(s.dims, n.name + "_shape")], outs, name: n.name)
            case .tile(let r): node("Tile", [x, ints(r, n.name + "_repeats")], outs, name: n.name)
            case .resize(let r):
                var attrs: [(String, Attribute)] = [("mode", .string(r.mode.rawValue)), ("coordinate_transformation_mode", .string(r.coordinateTransform.rawValue)),
                                                    ("nearest_mode", .string(r.nearestMode.rawValue)), ("cubic_coeff_a", .float(r.cubicCoeffA)),
                                                    ("exclude_outside", .int(r.excludeOutside ? 1 : 0)), ("antialias", .int(r.antialias ? 1 : 0)),
                                                    ("extrapolation_value", .float(r.extrapolationValue))]
                attrs.append(("keep_aspect_ratio_policy", .string("stretch")))
                let roi = r.roi.isEmpty ? "" : { () -> String in
                    let name = unique(n.name + "_roi")
                    initializers.append((name, Tensor(r.roi.map { Float($0) }, shape: [r.roi.count])))
                    return name
                }()
                let scalesName = unique(n.name + "_scales")
                initializers.append((scalesName, Tensor(r.scales.map { Float($0) }, shape: [r.scales.count])))
                // Sizes when the scales would floor to a different size, else scales (they carry the exact transform).
                let floorSizes = zip(xt!.dims, r.scales).map { Int((Double($0) * Double(Float($1))).rounded(.down)) }
                if floorSizes == r.sizes {
                    node("Resize", [x, roi, scalesName], outs, attrs, name: n.name)
                } else {
                    node("Resize", [x, roi, "", ints(r.sizes, n.name + "_sizes")], outs, attrs, name: n.name)
                }
            case .depthToSpace(let b, let o):
                node("DepthToSpace", ins, outs, [("blocksize", .int(b)), ("mode", .string(o == .crd ? "CRD" : "DCR"))], name: n.name)
            case .spaceToDepth(let b, let o):
                if o == .dcr {
                    node("SpaceToDepth", ins, outs, [("blocksize", .int(b))], name: n.name)
                } else {
                    let d = xt!.dims
                    let r1 = unique(outs[0] + "_blocks"), t1 = unique(outs[0] + "_moved")
                    node("Reshape", [x, ints([d[0], d[1], d[2] / b, b, d[3] / b, b], n.name + "_shape1")], [r1], name: n.name + "_reshape1")
                    node("Transpose", [r1], [t1], [("perm", .ints([0, 1, 3, 5, 2, 4]))], name: n.name + "_transpose")
                    node("Reshape", [t1, ints([d[0], d[1] * b * b, d[2] / b, d[3] / b], n.name + "_shape2")], outs, name: n.name)
                }
            case .reduce(let r, let axes, let keep):
                let table: [ReduceOp: String] = [.sum: "ReduceSum", .mean: "ReduceMean", .max: "ReduceMax", .min: "ReduceMin", .prod: "ReduceProd",
                                                 .sumSquare: "ReduceSumSquare", .l1: "ReduceL1", .l2: "ReduceL2", .logSum: "ReduceLogSum",
                                                 .logSumExp: "ReduceLogSumExp"]
                let all = axes.isEmpty ? Array(0..<xt!.rank) : axes
                node(table[r]!, [x, ints(all, n.name + "_axes")], outs, [("keepdims", .int(keep ? 1 : 0))], name: n.name)
            case .argExtreme(let max, let axis, let keep, let last):
                node(max ? "ArgMax" : "ArgMin", ins, outs, [("axis", .int(axis)), ("keepdims", .int(keep ? 1 : 0)),
                                                            ("select_last_index", .int(last ? 1 : 0))], name: n.name)
            case .trilu(let upper, let k):
                node("Trilu", [x, intScalar(k, n.name + "_k")], outs, [("upper", .int(upper ? 1 : 0))], name: n.name)
            case .scatterND(let r): node("ScatterND", ins, outs, [("reduction", .string(r.rawValue))], name: n.name)
            case .matmulTransposed(let ta, let tb):
                var operands = ins
                for (i, flag) in [ta, tb].enumerated() where flag {
                    let r = graph.type(n.inputs[i]).rank
                    var perm = Array(0..<r)
                    perm.swapAt(r - 1, r - 2)
                    operands[i] = unique(outs[0] + "_t\(i)")
                    node("Transpose", [ins[i]], [operands[i]], [("perm", .ints(perm))], name: n.name + "_t\(i)")
                }
                node("MatMul", operands, outs, name: n.name)
            case .geglu:
                let last = graph.type(n.outputs[0]).dims.last!
                let a = unique(outs[0] + "_a"), g = unique(outs[0] + "_gate"), ge = unique(outs[0] + "_gelu")
                node("Split", [x, ints([last, last], n.name + "_split")], [a, g], [("axis", .int(-1))], name: n.name + "_split")
                node("Gelu", [g], [ge], name: n.name + "_gelu")
                node("Mul", [a, ge], outs, name: n.name)
            case .convFused(let c, let f):
                guard !f.upsampleNearest else {
                    throw IRError(node: n.name, "a convolution with an absorbed upsample (the `upsample-conv` pass) has no ONNX form: write the graph before the passes")
                }
                var input = x
                var k = 2 + (f.hasBias ? 1 : 0)
                if let p = f.prologue {
                    input = prologueGroupNorm(x, ins[k], ins[k + 1], p, n.name)
                    k += 2
                }
                let y = unique(outs[0] + "_conv")
                node("Conv", [input, ins[1]] + (f.hasBias ? [ins[2]] : []), [y], [("strides", .ints(c.strides)), ("pads", .ints(c.pads)),
                                                                                 ("dilations", .ints(c.dilations)), ("group", .int(c.groups))], name: n.name + "_conv")
                epilogue(y, f.epilogue, residuals: Array(ins[k...]), out: outs[0], name: n.name)
            case .linearFused(let f):
                guard !f.gathersInput, !f.scattersOutput, f.outputShape == nil else {
                    throw IRError(node: n.name, "a linear with an absorbed layout (the `linear-layout` pass) has no ONNX form: write the graph before the passes")
                }
                var input = x
                var k = 2 + (f.hasBias ? 1 : 0)
                if let ln = f.layerNorm {
                    input = unique(outs[0] + "_ln")
                    node("LayerNormalization", [x, ins[k]] + (ln.hasBias ? [ins[k + 1]] : []), [input], [("axis", .int(-1)), ("epsilon", .float(ln.epsilon))],
                         name: n.name + "_ln")
                    k += ln.hasBias ? 2 : 1
                }
                let wt = unique(outs[0] + "_wt"), product = unique(outs[0] + "_matmul")
                node("Transpose", [ins[1]], [wt], [("perm", .ints([1, 0]))], name: n.name + "_wt")
                node("MatMul", [input, wt], [product], name: n.name + "_matmul")
                var y = product
                if f.hasBias {
                    y = unique(outs[0] + "_bias")
                    node("Add", [product, ins[2]], [y], name: n.name + "_bias")
                }
                if f.geglu {
                    let half = graph.type(n.outputs[0]).dims.last!
                    let a = unique(outs[0] + "_a"), g = unique(outs[0] + "_gate"), ge = unique(outs[0] + "_gelu"), gated = unique(outs[0] + "_geglu")
                    node("Split", [y, ints([half, half], n.name + "_split")], [a, g], [("axis", .int(-1))], name: n.name + "_split")
                    node("Gelu", [g], [ge], name: n.name + "_gelu")
                    node("Mul", [a, ge], [gated], name: n.name + "_geglu")
                    y = gated
                }
                epilogue(y, f.epilogue, residuals: Array(ins[k...]), out: outs[0], name: n.name)
            case .attention(let a):
                let qt = graph.type(n.inputs[0])
                var q = x, kt = ins[1]
                if !a.keysTransposed {
                    let r = graph.type(n.inputs[1]).rank
                    var perm = Array(0..<r)
                    perm.swapAt(r - 1, r - 2)
                    kt = unique(outs[0] + "_kt")
                    node("Transpose", [ins[1]], [kt], [("perm", .ints(perm))], name: n.name + "_kt")
                }
                let scale = scalar(a.scale, qt.dtype, n.name + "_scale")
                var scores = unique(outs[0] + "_scores")
                if a.scaleQueries {
                    q = unique(outs[0] + "_q")
                    node("Mul", [x, scale], [q], name: n.name + "_q")
                    node("MatMul", [q, kt], [scores], name: n.name + "_qk")
                } else {
                    let qk = unique(outs[0] + "_qk")
                    node("MatMul", [q, kt], [qk], name: n.name + "_qk")
                    node("Mul", [qk, scale], [scores], name: n.name + "_scaled")
                }
                for (i, b) in ins.dropFirst(3).enumerated() {
                    let next = unique(outs[0] + "_bias\(i)")
                    node("Add", [scores, b], [next], name: n.name + "_bias\(i)")
                    scores = next
                }
                let p = unique(outs[0] + "_softmax")
                node("Softmax", [scores], [p], [("axis", .int(-1))], name: n.name + "_softmax")
                node("MatMul", [p, ins[2]], outs, name: n.name)
            case .cumsum(let a, let ex, let rev):
                node("CumSum", [x, intScalar(a, n.name + "_axis")], outs, [("exclusive", .int(ex ? 1 : 0)), ("reverse", .int(rev ? 1 : 0))], name: n.name)
            }
        }
    }
}
