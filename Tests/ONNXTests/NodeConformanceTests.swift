import Foundation
import IR
import Importers
import Passes
import Tensors
import Testing
import TestSupport

/// The ONNX backend node test cases (Tests/Fixtures/onnx-node, made by
/// Tools/fixtures/make_onnx_node_tests.py from the `onnx` package's case generators) for every op
/// the importer supports: imported, run with the reference kernels, compared at each case's
/// tolerances the way numpy's assert_allclose compares (|actual − expected| ≤ atol + rtol·|expected|,
/// NaN equal to NaN).
@Suite struct NodeConformanceTests {
    /// Cases of supported ops that are not expected to pass, with the reason.
    static let skipped: [String: String] = {
        var s: [String: String] = [:]
        let sixteenBit = "the expected values round every intermediate (the QK matmul, the softmax sums) to 16 bits; the reference kernels compute each op exactly and round its output once, which differs by 1-2 units in the last place, beyond the case's rtol 1e-3"
        for c in ["test_attention_3d_causal_bf16_expanded", "test_attention_4d_attn_mask_causal_bf16_expanded", "test_attention_4d_causal_bf16_expanded",
                  "test_attention_4d_causal_fp16_expanded", "test_attention_4d_causal_padded_kv_bf16_expanded", "test_attention_4d_padded_kv_bf16_expanded"] {
            s[c] = sixteenBit
        }
        let training = "training mode (random dropout masks, batch statistics): the IR is for inference"
        for c in ["test_batchnorm_epsilon_training_mode", "test_batchnorm_example_training_mode", "test_training_dropout", "test_training_dropout_default",
                  "test_training_dropout_default_mask", "test_training_dropout_mask", "test_training_dropout_zero_ratio", "test_training_dropout_zero_ratio_mask"] {
            s[c] = training
        }
        s["test_convtranspose_3d"] = "3-D transposed convolution: the IR has 1-D and 2-D convolutions (no DiffBIR network uses 3-D)"
        return s
    }()

    struct Outcome {
        var passed: [String] = []
        var failed: [(String, String)] = []
    }

    static func manifest() throws -> (cases: [String: [String: Any]], omitted: [String: String]) {
        let m = try Fixtures.json("onnx-node/manifest.json")
        return (m["cases"] as! [String: [String: Any]], m["omitted"] as! [String: String])
    }

    /// Element-wise comparison; nil when equal within tolerance, else what differs.
    static func compare(_ actual: Tensor, _ expected: Tensor, rtol: Double, atol: Double) -> String? {
        guard actual.dtype == expected.dtype else { return "dtype \(actual.dtype), expected \(expected.dtype)" }
        guard actual.shape == expected.shape else { return "shape \(actual.shape), expected \(expected.shape)" }
        let a = actual.converted(to: .f64).withElements(as: Double.self) { Array($0) }
        let e = expected.converted(to: .f64).withElements(as: Double.self) { Array($0) }
        let exact = !actual.dtype.isFloatingPoint
        for i in 0..<a.count {
            if a[i].isNaN && e[i].isNaN { continue }
            if a[i] == e[i] { continue }
            if exact || !(abs(a[i] - e[i]) <= atol + rtol * abs(e[i])) {
                return "element \(i): \(a[i]), expected \(e[i]) (of \(a.count))"
            }
        }
        return nil
    }

    /// Imports, binding as constants the graph inputs the importer needs at compile time.
    static func importBinding(_ path: String, _ given: [String: Tensor]) throws -> ONNXImport {
        var options = ONNXImportOptions(evaluator: ReferenceEvaluator())
        for _ in 0...given.count {
            let result = Result { () throws(CheckpointError) -> ONNXImport in try ONNXImporter.load(path, options: options) }
            switch result {
            case .success(let imported): return imported
            case .failure(let e):
                guard let name = e.requiredConstant, let value = given[name], options.constants[name] == nil else { throw e }
                options.constants[name] = value
            }
        }
        throw CheckpointError(path, "binding constants did not converge")
    }

    static func run(_ name: String, rtol: Double, atol: Double) -> String? {
        let dir = Fixtures.path("onnx-node/" + name)
        do {
            let sets = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("test_data_set_") }.sorted()
            for set in sets {
                let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/" + set)
                let inputCount = files.filter { $0.hasPrefix("input_") }.count, outputCount = files.filter { $0.hasPrefix("output_") }.count
                var given: [String: Tensor] = [:]
                for k in 0..<inputCount {
                    let (protoName, t) = try ONNXImporter.readTensorProto("\(dir)/\(set)/input_\(k).pb")
                    given[protoName] = t
                }
                // Import, binding as constants the inputs the importer says it needs at compile
                // time (axes, pads, shapes, scales that the case feeds as inputs).
                let imported = try Self.importBinding(dir + "/model.onnx", given)
                let graphInputs = Set(imported.graph.inputs.map { imported.graph.values[$0].name })
                let inputs = given.filter { graphInputs.contains($0.key) }
                let outputs = try Interpreter.run(imported.graph, inputs: inputs)
                for k in 0..<outputCount {
                    let (protoName, expected) = try ONNXImporter.readTensorProto("\(dir)/\(set)/output_\(k).pb")
                    let key = protoName.isEmpty ? imported.graph.outputs[k].name : protoName
                    guard let actual = outputs[key] else { return "\(set): no output '\(key)'" }
                    if let diff = compare(actual, expected, rtol: rtol, atol: atol) { return "\(set) output '\(key)': \(diff)" }
                }
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func nodeTestsPass() throws {
        let (cases, omitted) = try Self.manifest()
        var outcome = Outcome()
        var perOp: [String: (passed: Int, total: Int)] = [:]
        for name in cases.keys.sorted() {
            let info = cases[name]!
            let ops = info["ops"] as! [String]
            let failure = Self.run(name, rtol: info["rtol"] as! Double, atol: info["atol"] as! Double)
            for op in ops {
                var entry = perOp[op] ?? (0, 0)
                entry.total += 1
                if failure == nil { entry.passed += 1 }
                perOp[op] = entry
            }
            if let failure {
                if Self.skipped[name] == nil { outcome.failed.append((name, failure)) }
            } else {
                outcome.passed.append(name)
                #expect(Self.skipped[name] == nil, "\(name) passes but is listed as skipped")
            }
        }
        // The summary the README quotes.
        print("ONNX node tests: \(outcome.passed.count) of \(cases.count) passed; \(Self.skipped.count) skipped; \(omitted.count) omitted (unsupported types or opsets)")
        for op in perOp.keys.sorted() { print("  \(op): \(perOp[op]!.passed)/\(perOp[op]!.total)") }
        for (name, why) in outcome.failed.prefix(400) { Issue.record("\(name): \(why)") }
    }

    /// The writer round trip: every passing case, written back as ONNX by `ONNXWriter` and imported
    /// again, gives the same outputs as the original import.
    @Test func writerRoundTrip() throws {
        let (cases, _) = try Self.manifest()
        let dir = TemporaryDirectory()
        var checked = 0
        for name in cases.keys.sorted() where Self.skipped[name] == nil {
            let caseDir = Fixtures.path("onnx-node/" + name)
            let set = caseDir + "/test_data_set_0"
            let files = try FileManager.default.contentsOfDirectory(atPath: set)
            var given: [String: Tensor] = [:]
            for k in 0..<files.filter({ $0.hasPrefix("input_") }).count {
                let (protoName, t) = try ONNXImporter.readTensorProto("\(set)/input_\(k).pb")
                given[protoName] = t
            }
            let original = try Self.importBinding(caseDir + "/model.onnx", given)
            let written = dir.file(name + ".onnx")
            try ONNXWriter.write(original.graph, to: written)
            let again = try ONNXImporter.load(written, options: ONNXImportOptions(evaluator: ReferenceEvaluator()))
            let inputNames = Set(original.graph.inputs.map { original.graph.values[$0].name })
            let inputs = given.filter { inputNames.contains($0.key) }
            let a = try Interpreter.run(original.graph, inputs: inputs), b = try Interpreter.run(again.graph, inputs: inputs)
            #expect(Set(a.keys) == Set(b.keys), "\(name)")
            for (k, t) in a {
                guard let u = b[k] else { continue }
                #expect(Self.compare(u, t, rtol: 0, atol: 0) == nil, "\(name) output \(k): \(Self.compare(u, t, rtol: 0, atol: 0) ?? "")")
            }
            checked += 1
        }
        #expect(checked > 900)
    }

    /// supported-ops.txt (which the fixture script reads) lists exactly the importer's ops.
    @Test func supportedOpListIsCurrent() throws {
        let listed = Set(try String(contentsOfFile: Fixtures.path("onnx-node/supported-ops.txt"), encoding: .utf8).split(separator: "\n").map(String.init))
        #expect(listed == Set(ONNXImporter.supportedOps))
    }
}
