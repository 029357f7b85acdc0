import Executor
import Foundation
import IR
import Importers
import Passes
import Plan
import Tensors
import Testing
import TestSupport

/// Small ncnn models made by Tools/fixtures/make_ncnn_fixtures.py (every layer type and weight tag
/// the importer reads), compared with ncnn's own CPU runtime (fp32, one thread).
@Suite struct NCNNImporterTests {
    static let models = ["conv", "deconv", "elementwise", "activation", "resize", "shape", "srvgg"]

    static func load(_ name: String) throws -> NCNNImport {
        try NCNNImporter.load(param: Fixtures.path("ncnn/\(name).param"), bin: Fixtures.path("ncnn/\(name).bin"))
    }

    static func tensors(_ relative: String) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for e in try Checkpoint.open(Fixtures.path(relative)).tensors { out[e.name] = e.load() }
        return out
    }

    static func maxRelativeError(_ a: Tensor, _ b: Tensor) -> Double {
        let x = a.floats(), y = b.floats()
        let scale = y.map { abs(Double($0)) }.max() ?? 1
        return zip(x, y).map { abs(Double($0) - Double($1)) }.max()! / max(scale, 1e-30)
    }

    @Test(arguments: models)
    func matchesNCNN(name: String) throws {
        let imported = try Self.load(name)
        let io = try Self.tensors("ncnn/\(name).io.safetensors")
        let inputNames = imported.graph.inputs.map { imported.graph.values[$0].name }
        let inputs = io.filter { inputNames.contains($0.key) }
        #expect(inputs.count == inputNames.count)
        let outputs = try Interpreter.run(imported.graph, inputs: inputs)
        // The reference outputs recorded are a subset of the graph's (some fixtures also record intermediates).
        var compared = 0
        for (key, expected) in io where !inputNames.contains(key) {
            let actual: Tensor
            if let o = outputs[key] { actual = o } else {
                // An intermediate: expose it and run again.
                var g = imported.graph
                let v = try #require(imported.blobs[key], "no blob \(key)")
                g.setOutput(key, v)
                actual = try #require(try Interpreter.run(g, inputs: inputs)[key])
            }
            #expect(actual.shape == expected.shape, "\(name).\(key): \(actual.shape) vs ncnn \(expected.shape)")
            let e = Self.maxRelativeError(actual, expected)
            #expect(e <= 1e-5, "\(name).\(key): max relative error \(e)")
            compared += 1
        }
        #expect(compared >= 1)
    }

    /// The same models compiled into plans and run by the executor.
    @Test(arguments: models)
    func planMatchesNCNN(name: String) throws {
        let imported = try Self.load(name)
        let io = try Self.tensors("ncnn/\(name).io.safetensors")
        let compiled = try Compiler.compile([(name, imported.graph)], options: CompileOptions())
        let dir = TemporaryDirectory()
        try PlanWriter.write(path: dir.file("p.plan"), program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: true)
        let plan = try PlanFile(path: dir.file("p.plan"))
        if name == "srvgg" {
            // Both PReLUs became epilogues of their convolutions (per channel, and a single slope as leaky ReLU).
            let steps = plan.program.entryPoints[0].instructions.compactMap { i -> [EpilogueStep]? in
                if case .conv2d(let c) = i.kernel { return c.epilogue }
                return nil
            }.flatMap { $0 }
            #expect(steps.contains { if case .preluChannels = $0 { return true } else { return false } }, "\(steps)")
            #expect(steps.contains(.activation(.leakyRelu, alpha: 0.1)), "\(steps)")
        }
        let inputNames = imported.graph.inputs.map { imported.graph.values[$0].name }
        let result = try Executor(plan: plan, threads: 2).run(entry: name, inputs: io.filter { inputNames.contains($0.key) })
        for o in result.outputs {
            let expected = try #require(io[o.name], "no reference for \(o.name)")
            let e = Self.maxRelativeError(o.tensor, expected)
            #expect(e <= 1e-4, "\(name).\(o.name): max relative error \(e)")
        }
    }

    @Test func weightTagsAndBytes() throws {
        let conv = try Self.load("conv")
        let storage = Dictionary(uniqueKeysWithValues: conv.weightBytes.map { ($0.storage, $0.bytes) })
        #expect(storage[.f32] != nil && storage[.f16] != nil && storage[.table] != nil)
        #expect(conv.weightBytes.reduce(0) { $0 + $1.bytes } == (try FileManager.default.attributesOfItem(atPath: Fixtures.path("ncnn/conv.bin"))[.size] as! Int))
        // int8 weights with per-channel scales are dequantised.
        let int8 = try Self.load("int8")
        let expected = try Self.tensors("ncnn/int8.expected.safetensors")["conv_int8.weight"]!
        let got = try #require(int8.weights.first { $0.name == "conv_int8.weight" })
        #expect(got.tensor.shape == expected.shape)
        #expect(Self.maxRelativeError(got.tensor, expected) == 0)
        #expect(int8.weightBytes.contains { $0.storage == .int8 })
    }

    // MARK: bad files are refused, naming the layer

    func refusal(param: String, bin: [UInt8] = [], shapes: [String: [Int]] = [:]) -> String {
        let dir = TemporaryDirectory()
        let p = dir.file("m.param"), b = dir.file("m.bin")
        _ = FileManager.default.createFile(atPath: p, contents: Data(param.utf8))
        _ = FileManager.default.createFile(atPath: b, contents: Data(bin))
        do {
            _ = try NCNNImporter.load(param: p, bin: b, shapes: shapes)
            return "accepted"
        } catch {
            return error.description
        }
    }

    static let convLine = "Convolution conv 1 1 data out 0=2 1=1 5=1 6=6"
    static func header(_ layers: Int, _ blobs: Int) -> String { "7767517\n\(layers) \(blobs)\n" }
    static let input = "Input input 0 1 data 0=4 1=4 2=3\n"

    @Test func truncatedBin() throws {
        let message = refusal(param: Self.header(2, 2) + Self.input + Self.convLine + "\n", bin: [0, 0, 0, 0] + [UInt8](repeating: 0, count: 20))
        #expect(message.contains("layer 'conv'") && message.contains("offset 4") && message.contains("truncated"), "\(message)")
    }

    @Test func trailingBytes() throws {
        let message = refusal(param: Self.header(2, 2) + Self.input + Self.convLine + "\n", bin: [UInt8](repeating: 0, count: 4 + 24 + 8 + 4))
        #expect(message.contains("does not belong"), "\(message)")
    }

    @Test func wrongWeightCount() throws {
        let message = refusal(param: Self.header(2, 2) + Self.input + "Convolution conv 1 1 data out 0=2 1=3 5=1 6=6\n", bin: [])
        #expect(message.contains("layer 'conv'") && message.contains("weight_data_size 6"), "\(message)")
    }

    @Test func badTag() throws {
        // A table tag whose table is cut short.
        let message = refusal(param: Self.header(2, 2) + Self.input + Self.convLine + "\n", bin: [7, 0, 0, 0] + [UInt8](repeating: 0, count: 100))
        #expect(message.contains("u8 table") && message.contains("layer 'conv'"), "\(message)")
    }

    @Test func headerCounts() throws {
        #expect(refusal(param: "7767518\n1 1\n" + Self.input).contains("magic"))
        #expect(refusal(param: Self.header(3, 2) + Self.input + Self.convLine + "\n").contains("declares 3 layers"))
        #expect(refusal(param: Self.header(2, 5) + Self.input + Self.convLine + "\n", bin: [UInt8](repeating: 0, count: 4 + 24 + 8)).contains("declares 5 blobs"))
        #expect(refusal(param: "7767517\n-1 2\n").contains("LAYER_COUNT"))
    }

    @Test func unknownBlobAndLayer() throws {
        #expect(refusal(param: Self.header(2, 2) + Self.input + "ReLU relu 1 1 nothing out\n").contains("reads blob 'nothing'"))
        #expect(refusal(param: Self.header(2, 2) + Self.input + "Magic m 1 1 data out\n").contains("'Magic' is not supported"))
        #expect(refusal(param: Self.header(2, 2) + Self.input + "ReLU relu 1 1 data data\n").contains("already exists"))
    }

    @Test func badParameters() throws {
        #expect(refusal(param: Self.header(2, 2) + Self.input + "ReLU relu 1 1 data out 40=1\n").contains("out of range"))
        #expect(refusal(param: Self.header(2, 2) + Self.input + "ReLU relu 1 1 data out 0=x\n").contains("not an integer"))
        #expect(refusal(param: Self.header(2, 2) + Self.input + "Eltwise e 1 1 data out -23301=3,1\n").contains("COUNT,V1"))
        #expect(refusal(param: Self.header(2, 2) + Self.input + "Convolution conv 1 1 data out 0=2 1=1 3=0 6=6\n").contains("line 4"))
        #expect(refusal(param: Self.header(2, 2) + "Input input 0 1 data\n" + "ReLU relu 1 1 data out\n").contains("--shape data="))
        #expect(refusal(param: Self.header(2, 2) + Self.input + "ReLU relu 1 1 data out\n", shapes: ["x": [1, 3, 4, 4]]).contains("no input blob"))
        #expect(refusal(param: Self.header(2, 2) + Self.input + "ReLU relu 1 1 data out\n", shapes: ["data": [1, 3, Int.max, 4]]).contains("positive dimensions"))
        // (Found by fuzzing: a block factor whose square overflows trapped type inference.)
        let shuffle = refusal(param: Self.header(2, 2) + Self.input + "PixelShuffle ps 1 1 data out 0=77777777772\n")
        #expect(shuffle.contains("overflow"), "\(shuffle)")
        // (Found by fuzzing: a scale whose output size does not fit an Int trapped the conversion.)
        for scale in ["2.000000e+20", "3.0e38"] {
            let message = refusal(param: Self.header(2, 2) + Self.input + "Interp up 1 1 data out 0=1 1=2.0 2=\(scale)\n")
            #expect(message.contains("layer 'up'") || message.contains("up"), "\(message)")
            #expect(message.contains("more than 2²⁰"), "\(message)")
        }
    }
}
