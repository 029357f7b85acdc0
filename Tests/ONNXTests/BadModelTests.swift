import Foundation
@testable import Importers
import IR
import Passes
import Tensors
import Testing
import TestSupport

/// Malformed ONNX files: each is an error naming the file and the node or tensor; nothing crashes.
@Suite struct BadModelTests {
    /// A minimal ModelProto: float inputs `x`, `y` [2, 3], the given nodes, initializers and outputs.
    static func model(nodes: [(op: String, inputs: [String], outputs: [String], attributes: [(String, Int32, Int?, Float?)])],
                      initializers: [(name: String, dims: [Int], raw: [UInt8])] = [], outputs: [String] = ["z"], opset: Int = 17) -> [UInt8] {
        var g = ProtobufWriter()
        for (k, n) in nodes.enumerated() {
            var p = ProtobufWriter()
            for i in n.inputs { p.string(1, i) }
            for o in n.outputs { p.string(2, o) }
            p.string(3, "node\(k)")
            p.string(4, n.op)
            for (name, type, i, f) in n.attributes {
                var a = ProtobufWriter()
                a.string(1, name)
                if let i { a.int(3, i) }
                if let f { a.float(2, f) }
                a.int(20, Int(type))
                p.message(5, a)
            }
            g.message(1, p)
        }
        g.string(2, "bad")
        for t in initializers {
            var p = ProtobufWriter()
            p.packedInts(1, t.dims)
            p.int(2, 1)
            p.string(8, t.name)
            p.data(9, t.raw)
            g.message(5, p)
        }
        for name in ["x", "y"] { g.message(11, ONNXWriter.valueInfo(name, TensorType(.f32, [2, 3]))) }
        for name in outputs { g.message(12, ONNXWriter.valueInfo(name, TensorType(.f32, [2, 3]))) }
        var m = ProtobufWriter()
        m.int(1, 9)
        m.message(7, g)
        var o = ProtobufWriter()
        o.string(1, "")
        o.int(2, opset)
        m.message(8, o)
        return m.bytes
    }

    static func load(_ bytes: [UInt8]) throws -> ONNXImport {
        let dir = TemporaryDirectory()
        let path = dir.file("model.onnx")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return try ONNXImporter.load(path, options: ONNXImportOptions(evaluator: ReferenceEvaluator()))
    }

    static func expectError(_ bytes: [UInt8], _ phrases: String...) {
        do {
            _ = try load(bytes)
            Issue.record("accepted a bad model")
        } catch {
            let text = "\(error)"
            for p in phrases { #expect(text.contains(p), "\(text)") }
            #expect(text.contains("model.onnx"))
        }
    }

    @Test func aValidModelLoads() throws {
        let m = try Self.load(Self.model(nodes: [("Add", ["x", "y"], ["z"], [])]))
        #expect(m.graph.nodes.count == 1)
    }

    @Test func corruptProtobuf() throws {
        var bytes = Self.model(nodes: [("Add", ["x", "y"], ["z"], [])])
        Self.expectError(Array(bytes.prefix(bytes.count / 2)), "not a valid ONNX protobuf")
        bytes[3] = 0xFF
        bytes[4] = 0xFF
        Self.expectError(bytes, "not a valid ONNX protobuf")
        Self.expectError(Array("not a model at all".utf8), "not a valid ONNX protobuf")
    }

    @Test func initializerSizeDisagreesWithItsType() {
        let bytes = Self.model(nodes: [("Add", ["x", "w"], ["z"], [])], initializers: [("w", [2, 3], [UInt8](repeating: 0, count: 20))])
        Self.expectError(bytes, "initializer 'w'", "raw data holds 20 bytes", "needs 24")
    }

    @Test func cycle() {
        let bytes = Self.model(nodes: [("Add", ["x", "b"], ["a"], []), ("Relu", ["a"], ["b"], []), ("Identity", ["b"], ["z"], [])])
        Self.expectError(bytes, "node 'node0' (Add)", "input 'b'", "cycle")
    }

    @Test func attributeOfTheWrongType() {
        let bytes = Self.model(nodes: [("Softmax", ["x"], ["z"], [("axis", 1, nil, 1.0)])])  // FLOAT, expected INT
        Self.expectError(bytes, "node 'node0' (Softmax)", "attribute 'axis' has type float, expected int")
    }

    @Test func outputNothingProduces() {
        let bytes = Self.model(nodes: [("Add", ["x", "y"], ["z"], [])], outputs: ["z", "missing"])
        Self.expectError(bytes, "graph output 'missing'", "no node produces it")
    }

    @Test func unsupportedOperatorAndOpset() {
        Self.expectError(Self.model(nodes: [("LSTM", ["x"], ["z"], [])]), "node 'node0' (LSTM)", "unsupported operator LSTM (opset 17)")
        Self.expectError(Self.model(nodes: [("Add", ["x", "y"], ["z"], [])], opset: 9), "opset 9 is older")
    }

    /// External data: a missing file, a file too short for the offsets, and a byte count that does
    /// not match the tensor.
    @Test func badExternalData() throws {
        let dir = TemporaryDirectory()
        let source = Fixtures.path("networks/bsrnet.onnx")
        try copyFile(source, dir.file("bsrnet.onnx"))
        let options = ONNXImportOptions(evaluator: ReferenceEvaluator())
        var error = #expect(throws: CheckpointError.self) { try ONNXImporter.load(dir.file("bsrnet.onnx"), options: options) }
        #expect(error?.description.contains("external data file") == true && error?.description.contains("bsrnet.weights.safetensors") == true,
                "\(error?.description ?? "")")
        #expect(error?.description.contains("initializer 'module.") == true)
        try copyFile(Fixtures.path("networks/bsrnet.weights.safetensors"), dir.file("bsrnet.weights.safetensors"), truncatedTo: 5000)
        error = #expect(throws: CheckpointError.self) { try ONNXImporter.load(dir.file("bsrnet.onnx"), options: options) }
        #expect(error?.description.contains("runs past the end") == true, "\(error?.description ?? "")")
    }

    /// The writer moves weights to an external file past a threshold; the result reads back.
    @Test func writerExternalData() throws {
        let options = ONNXImportOptions(evaluator: ReferenceEvaluator())
        let imported = try ONNXImporter.load(Fixtures.path("networks/vae-decoder.onnx"), options: options)
        let dir = TemporaryDirectory()
        var writeOptions = ONNXWriter.Options()
        writeOptions.externalDataAbove = 0
        try ONNXWriter.write(imported.graph, to: dir.file("vae.onnx"), options: writeOptions)
        #expect(dir.contents == ["vae.onnx", "vae.onnx.data"])
        let again = try ONNXImporter.load(dir.file("vae.onnx"), options: options)
        #expect(again.graph.values.contains { $0.constant?.storage.isMapped == true })
        #expect(try NetworkExportTests.runAndCompare(again.graph, "vae-decoder") <= 1e-4)
    }

    @Test func symbolicDimensionsNeedAShape() throws {
        // An input with a symbolic dimension.
        var g = ProtobufWriter()
        var n = ProtobufWriter()
        n.string(1, "x"); n.string(2, "z"); n.string(4, "Relu")
        g.message(1, n)
        var dim = ProtobufWriter(); dim.string(2, "batch")
        var dim2 = ProtobufWriter(); dim2.int(1, 3)
        var shape = ProtobufWriter(); shape.message(1, dim); shape.message(1, dim2)
        var tt = ProtobufWriter(); tt.int(1, 1); tt.message(2, shape)
        var tp = ProtobufWriter(); tp.message(1, tt)
        var vi = ProtobufWriter(); vi.string(1, "x"); vi.message(2, tp)
        g.message(11, vi)
        g.message(12, ONNXWriter.valueInfo("z", TensorType(.f32, [2, 3])))
        var m = ProtobufWriter(); m.int(1, 9); m.message(7, g)
        var o = ProtobufWriter(); o.string(1, ""); o.int(2, 17); m.message(8, o)
        let dir = TemporaryDirectory()
        try Data(m.bytes).write(to: URL(fileURLWithPath: dir.file("m.onnx")))
        let e = #expect(throws: CheckpointError.self) { try ONNXImporter.load(dir.file("m.onnx"), options: ONNXImportOptions(evaluator: ReferenceEvaluator())) }
        #expect(e?.description.contains("dimension 'batch' is symbolic; bind it with --shape x=") == true, "\(e?.description ?? "")")
        let bound = try ONNXImporter.load(dir.file("m.onnx"), options: ONNXImportOptions(evaluator: ReferenceEvaluator(), shapes: ["x": [5, 3]]))
        #expect(bound.graph.type(bound.graph.inputs[0]) == TensorType(.f32, [5, 3]))
        #expect(throws: CheckpointError.self) { try ONNXImporter.load(dir.file("m.onnx"), options: ONNXImportOptions(evaluator: ReferenceEvaluator(), shapes: ["x": [5, 4]])) }
    }
}

/// Hostile ONNX files: sizes that would exhaust memory or overflow, nesting that would overflow
/// protobuf-c's stack, external data that would block: refused with the file named.
@Suite struct HostileModelTests {
    /// `model` with int64 initializers (`values`), for shape inputs.
    static func model(nodes: [(op: String, inputs: [String], outputs: [String], attributes: [(String, Int32, Int?, Float?)])],
                      ints: [(String, [Int])] = [], floats: [(String, Float)] = [], input: [Int] = [2, 3]) -> [UInt8] {
        var g = ProtobufWriter()
        for (k, n) in nodes.enumerated() {
            var p = ProtobufWriter()
            for i in n.inputs { p.string(1, i) }
            for o in n.outputs { p.string(2, o) }
            p.string(3, "node\(k)")
            p.string(4, n.op)
            g.message(1, p)
        }
        g.string(2, "hostile")
        for (name, values) in ints {
            var p = ProtobufWriter()
            p.packedInts(1, [values.count])
            p.int(2, 7)  // INT64
            p.string(8, name)
            p.data(9, values.flatMap { v in withUnsafeBytes(of: Int64(v).littleEndian) { Array($0) } })
            g.message(5, p)
        }
        for (name, value) in floats {
            var p = ProtobufWriter()
            p.int(2, 1)  // FLOAT, a scalar
            p.string(8, name)
            p.data(9, withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) })
            g.message(5, p)
        }
        g.message(11, ONNXWriter.valueInfo("x", TensorType(.f32, Shape(input))))
        g.message(12, ONNXWriter.valueInfo("z", TensorType(.f32, [2, 3])))
        var m = ProtobufWriter()
        m.int(1, 9)
        m.message(7, g)
        var o = ProtobufWriter()
        o.string(1, "")
        o.int(2, 17)
        m.message(8, o)
        return m.bytes
    }

    @Test func constantsTooLargeToFoldAreRefused() {
        // ConstantOfShape([2³⁰, 2³⁰]): 2⁶⁰ values.
        BadModelTests.expectError(Self.model(nodes: [("ConstantOfShape", ["s"], ["z"], [])], ints: [("s", [1 << 30, 1 << 30])]),
                                  "node 'node0' (ConstantOfShape)", "larger than")
        // ConstantOfShape of a shape whose product overflows.
        BadModelTests.expectError(Self.model(nodes: [("ConstantOfShape", ["s"], ["z"], [])], ints: [("s", [1 << 40, 1 << 40, 1 << 40])]),
                                  "ConstantOfShape", "larger than")
        // Range(0, 1e18, 1), and Range to infinity.
        BadModelTests.expectError(Self.model(nodes: [("Range", ["a", "b", "c"], ["z"], [])], floats: [("a", 0), ("b", 1e18), ("c", 1)]),
                                  "node 'node0' (Range)", "MB")
        BadModelTests.expectError(Self.model(nodes: [("Range", ["a", "b", "c"], ["z"], [])], floats: [("a", 0), ("b", .infinity), ("c", 1)]),
                                  "node 'node0' (Range)", "finite")
    }

    /// An initializer declaring 2³⁶ floats (256 GB) with no data: refused before anything is allocated.
    @Test func hugeInitializersWithoutDataAreRefused() {
        var g = ProtobufWriter()
        var n = ProtobufWriter()
        n.string(1, "x"); n.string(1, "w"); n.string(2, "z"); n.string(3, "node0"); n.string(4, "Add")
        g.message(1, n)
        var w = ProtobufWriter()
        w.packedInts(1, [1 << 36])
        w.int(2, 1)
        w.string(8, "w")
        g.message(5, w)
        g.message(11, ONNXWriter.valueInfo("x", TensorType(.f32, [2, 3])))
        g.message(12, ONNXWriter.valueInfo("z", TensorType(.f32, [2, 3])))
        var m = ProtobufWriter()
        m.int(1, 9)
        m.message(7, g)
        var o = ProtobufWriter()
        o.string(1, ""); o.int(2, 17)
        m.message(8, o)
        BadModelTests.expectError(m.bytes, "initializer 'w'", "float_data holds 0 values")
    }

    @Test func inputsWhoseSizeOverflowsAreRefused() {
        BadModelTests.expectError(Self.model(nodes: [("Relu", ["x"], ["z"], [])], input: [1 << 31, 1 << 31, 1 << 31]),
                                  "graph input 'x'", "larger than")
    }

    /// 20 000 If nodes, each holding the next in its then_branch: refused from the wire format before
    /// protobuf-c (which recurses once per level) reads it.
    @Test func deeplyNestedSubgraphsAreRefused() {
        let levels = 20_000
        func varint(_ v: Int) -> [UInt8] {
            var out: [UInt8] = [], x = UInt64(v)
            while x >= 0x80 { out.append(UInt8(x & 0x7F) | 0x80); x >>= 7 }
            return out + [UInt8(x)]
        }
        let name: [UInt8] = [0x0A, 11] + Array("then_branch".utf8)  // AttributeProto.name
        let op: [UInt8] = [0x22, 2] + Array("If".utf8)               // NodeProto.op_type
        // Sizes from the innermost graph (empty) out: graph(k) = node{attr{name, g: graph(k-1)}, op}.
        var graph = [0], attribute = [0], node = [0]
        for k in 1...levels {
            attribute.append(name.count + 1 + varint(graph[k - 1]).count + graph[k - 1])
            node.append(1 + varint(attribute[k]).count + attribute[k] + op.count)
            graph.append(1 + varint(node[k]).count + node[k])
        }
        var bytes: [UInt8] = [0x08, 9, 0x3A] + varint(graph[levels])  // ir_version, ModelProto.graph
        bytes.reserveCapacity(graph[levels] + 16)
        for k in stride(from: levels, through: 1, by: -1) {
            bytes += [0x0A] + varint(node[k])                       // GraphProto.node
            bytes += [0x2A] + varint(attribute[k]) + name            // NodeProto.attribute
            bytes += [0x32] + varint(graph[k - 1])                   // AttributeProto.g
        }
        for _ in 1...levels { bytes += op }                          // each node's op_type, innermost first
        BadModelTests.expectError(bytes, "nested more than \(ONNXNesting.maxDepth) deep")
    }

    /// External data naming a FIFO: refused at once rather than waiting for a writer.
    @Test func externalDataThatIsAFIFOIsRefused() throws {
        let dir = TemporaryDirectory()
        try copyFile(Fixtures.path("networks/bsrnet.onnx"), dir.file("bsrnet.onnx"))
        #expect(mkfifo(dir.file("bsrnet.weights.safetensors"), 0o600) == 0)
        let error = #expect(throws: CheckpointError.self) {
            try ONNXImporter.load(dir.file("bsrnet.onnx"), options: ONNXImportOptions(evaluator: ReferenceEvaluator()))
        }
        #expect(error?.description.contains("not a regular file") == true, "\(error?.description ?? "")")
    }
}

/// Convolutions whose weight rank, strides, dilations or pads disagree with the input's rank:
/// refused before any attribute is indexed (found by fuzzing: a 1-D Conv with a rank-2 weight).
@Suite struct MismatchedConvolutionTests {
    static func conv(_ op: String, input: [Int], weight: [Int], ints: [(String, [Int])]) -> [UInt8] {
        var g = ProtobufWriter()
        var n = ProtobufWriter()
        n.string(1, "x"); n.string(1, "w"); n.string(2, "z"); n.string(3, "node0"); n.string(4, op)
        for (name, values) in ints {
            var a = ProtobufWriter()
            a.string(1, name)
            for v in values { a.int(8, v) }
            a.int(20, 7)  // INTS
            n.message(5, a)
        }
        g.message(1, n)
        g.string(2, "conv")
        g.message(11, ONNXWriter.valueInfo("x", TensorType(.f32, Shape(input))))
        g.message(11, ONNXWriter.valueInfo("w", TensorType(.f32, Shape(weight))))
        g.message(12, ONNXWriter.valueInfo("z", TensorType(.f32, Shape(input))))
        var m = ProtobufWriter()
        m.int(1, 9)
        m.message(7, g)
        var o = ProtobufWriter()
        o.string(1, ""); o.int(2, 17)
        m.message(8, o)
        return m.bytes
    }

    @Test func mismatchedAttributesAreRefused() {
        for op in ["Conv", "ConvTranspose"] {
            BadModelTests.expectError(Self.conv(op, input: [1, 1, 5], weight: [1, 1], ints: []), "node0", "spatial dims")
            BadModelTests.expectError(Self.conv(op, input: [1, 1, 5, 5], weight: [1, 1, 3, 3], ints: [("strides", [1])]), "strides [1]")
            BadModelTests.expectError(Self.conv(op, input: [1, 1, 5, 5], weight: [1, 1, 3, 3], ints: [("strides", [0, 1])]), "strides [0, 1]")
            BadModelTests.expectError(Self.conv(op, input: [1, 1, 5], weight: [1, 1, 3], ints: [("dilations", [1, 1, 1])]), "dilations")
            BadModelTests.expectError(Self.conv(op, input: [1, 1, 5], weight: [1, 1, 3], ints: [("pads", [1])]), "1 pads")
        }
        BadModelTests.expectError(Self.conv("ConvTranspose", input: [1, 1, 5], weight: [1, 1, 3], ints: [("output_padding", [1, 1])]), "output_padding")
    }
}
