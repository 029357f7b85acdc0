import Foundation
import IR
import Importers
import Passes
import Tensors
import Testing
import TestSupport

/// DiffBIR's networks at reduced widths, exported by torch.onnx.export
/// (Tools/fixtures/make_network_exports.py): imported, run with the reference kernels, and compared
/// with PyTorch's outputs (max error relative to the output's max magnitude ≤ 1e-4).
@Suite struct NetworkExportTests {
    static let networks = ["swinir", "bsrnet", "scunet", "unet", "controlnet", "vae-encoder", "vae-decoder", "clip-text"]

    static func maxRelativeError(_ a: Tensor, _ b: Tensor) -> Double {
        let x = a.floats(), y = b.floats()
        let scale = y.map { abs(Double($0)) }.max() ?? 1
        return zip(x, y).map { abs(Double($0) - Double($1)) }.max()! / max(scale, 1e-30)
    }

    static func runAndCompare(_ graph: Graph, _ name: String) throws -> Double {
        let io = try Checkpoint.open(Fixtures.path("networks/\(name).io.safetensors"))
        var tensors: [String: Tensor] = [:]
        for e in io.tensors { tensors[e.name] = e.load() }
        let inputNames = Set(graph.inputs.map { graph.values[$0].name })
        let outputs = try Interpreter.run(graph, inputs: tensors.filter { inputNames.contains($0.key) })
        var worst = 0.0
        for (outName, _) in graph.outputs {
            let expected = try #require(tensors[outName], "no reference for \(outName)")
            let actual = try #require(outputs[outName])
            #expect(actual.shape == expected.shape, "\(name) \(outName)")
            worst = max(worst, maxRelativeError(actual, expected))
        }
        return worst
    }

    @Test(arguments: networks)
    func matchesPyTorch(name: String) throws {
        let imported = try ONNXImporter.load(Fixtures.path("networks/\(name).onnx"), options: ONNXImportOptions(evaluator: ReferenceEvaluator()))
        // The weights are external data inside the safetensors file: views of the mapping, not copies.
        #expect(imported.graph.values.contains { $0.constant?.storage.isMapped == true })
        let error = try Self.runAndCompare(imported.graph, name)
        #expect(error <= 1e-4, "\(name): max relative error \(error)")
    }

    /// The writer's ONNX of each network, imported again, computes the same (onnxruntime runs the
    /// same files in the fixture script: writer.check.json).
    @Test(arguments: networks)
    func writerOutputMatches(name: String) throws {
        let options = ONNXImportOptions(evaluator: ReferenceEvaluator())
        let imported = try ONNXImporter.load(Fixtures.path("networks/\(name).onnx"), options: options)
        let dir = TemporaryDirectory()
        try ONNXWriter.write(imported.graph, to: dir.file("\(name).onnx"))
        let again = try ONNXImporter.load(dir.file("\(name).onnx"), options: options)
        #expect(try Self.runAndCompare(again.graph, name) <= 1e-4)
        let check = try #require(try Fixtures.json("networks/writer.check.json")[name] as? [String: Any])
        #expect(check["ok"] as? Bool == true)
    }

    /// Exporter decompositions (opset 16) are raised to IR ops, and not where an intermediate has
    /// another consumer.
    @Test func decompositionsAreRaised() throws {
        let imported = try ONNXImporter.load(Fixtures.path("networks/decompositions.onnx"), options: ONNXImportOptions(evaluator: ReferenceEvaluator()))
        #expect(imported.raised == ["layer_norm": 1, "group_norm": 1, "gelu": 1, "silu": 1])
        let ops = imported.graph.nodes.map(\.op.name)
        #expect(ops.contains("erf"), "the GELU whose x/√2 is reused must stay decomposed")
        #expect(try Self.runAndCompare(imported.graph, "decompositions") <= 1e-5)
        var options = ONNXImportOptions(evaluator: ReferenceEvaluator())
        options.raiseDecompositions = false
        let plain = try ONNXImporter.load(Fixtures.path("networks/decompositions.onnx"), options: options)
        #expect(plain.raised.isEmpty && !plain.graph.nodes.contains { $0.op.name == "group_norm" })
        #expect(try Self.runAndCompare(plain.graph, "decompositions") <= 1e-5)
    }
}

/// An imported graph has no model definition to declare what stays f32: `compile --weights-dtype
/// int8` keeps its first and last convolution or linear layer in f32, and quantises the rest.
@Suite struct ImportedGraphQuantisationTests {
    @Test func firstAndLastLayersStayF32() throws {
        let imported = try ONNXImporter.load(Fixtures.path("networks/bsrnet.onnx"), options: ONNXImportOptions(evaluator: ReferenceEvaluator()))
        var options = CompileOptions()
        options.quantization = QuantizationPolicy(defaultFormat: .int8Channel)
        options.keepFirstAndLast = ["bsrnet"]
        let plan = try Compiler.compile([("bsrnet", imported.graph)], options: options)
        let convs = plan.program.weights.filter { $0.shape.dims.count == 4 }
        let kept = convs.filter { $0.format == .f32 }.map(\.name).sorted()
        #expect(kept == ["module.conv_first.weight", "module.conv_last.weight"])
        #expect(convs.filter { $0.format == .int8Channel }.count == convs.count - 2)
        #expect(plan.report.contains("first or last layer of its graph"))
        // Without the option (or with a rule naming them) they are quantised too.
        options.keepFirstAndLast = []
        let all = try Compiler.compile([("bsrnet", imported.graph)], options: options)
        #expect(all.program.weights.filter { $0.shape.dims.count == 4 && $0.format == .f32 }.isEmpty)
    }
}
