import Foundation
import Importers
import IR
import Passes
import Tensors
import Testing
import TestSupport

/// A graph after the fusion passes, written as ONNX and read back, computes what it did: the GEGLU
/// linear (`geglu-linear`), a convolution's per-channel addend and runtime scale (`addChannels`,
/// `scaleByInput`) and a residual expand into standard ONNX nodes.
@Suite struct FusedExportTests {
    @Test func fusedFormsRoundTrip() throws {
        var g = Graph()
        func constant(_ dims: [Int], _ seed: Int) -> ValueID {
            let n = dims.reduce(1, *)
            let values = (0..<n).map { Float(((($0 + 1) * (seed * 7919 + 13)) % 2001) - 1000) / 4000 }
            return g.addConstant(Tensor(values, shape: Shape(dims)), name: "c\(seed)")
        }
        let x = g.addInput("x", TensorType(.f32, [1, 5, 16])), e = g.addInput("e", TensorType(.f32, [1, 4, 1, 1]))
        let s = g.addInput("s", TensorType(.f32, [1])), image = g.addInput("image", TensorType(.f32, [1, 3, 6, 6]))
        let skip = g.addInput("skip", TensorType(.f32, [1, 4, 6, 6]))
        // The feed-forward's first layer: layer norm, linear to 2h = 128, GEGLU.
        let ln = try g.add1(.layerNorm(axis: -1, epsilon: 1e-5), [x, constant([16], 1), constant([16], 2)], name: "ln")
        let l = try g.add1(.linear, [ln, constant([128, 16], 3), constant([128], 4)], name: "proj")
        let parts = try g.add(.split(axis: -1, sizes: [64, 64]), [l], name: "split")
        let gate = try g.add1(.gelu(.none), [parts[1]], name: "gelu")
        g.setOutput("ff", try g.add1(.binary(.mul), [parts[0], gate], name: "geglu"))
        // A ResBlock-like convolution: + time embedding, · control scale, + skip.
        let c = try g.add1(.conv(Conv2D(pads: [1, 1, 1, 1])), [image, constant([4, 3, 3, 3], 5), constant([4], 6)], name: "conv")
        let added = try g.add1(.binary(.add), [c, e], name: "emb_add")
        let scaled = try g.add1(.binary(.mul), [added, s], name: "scale")
        g.setOutput("conv", try g.add1(.binary(.add), [skip, scaled], name: "control"))
        var fused = g
        _ = try PassPipeline.run(&fused, options: CompileOptions())
        let ops = fused.nodes.map(\.op.name)
        #expect(ops.sorted() == ["conv_fused", "linear_fused"], "\(ops)")
        let dir = TemporaryDirectory()
        try ONNXWriter.write(fused, to: dir.file("fused.onnx"))
        let again = try ONNXImporter.load(dir.file("fused.onnx"), options: ONNXImportOptions(evaluator: ReferenceEvaluator()))
        var feed: [String: Tensor] = [:]
        for (i, v) in g.inputs.enumerated() {
            let t = g.type(v)
            feed[g.values[v].name] = Tensor((0..<t.count).map { Float((($0 * 37 + i * 11) % 200) - 100) / 50 }, shape: t.shape)
        }
        let want = try Interpreter.run(g, inputs: feed), got = try Interpreter.run(again.graph, inputs: feed)
        for (k, t) in want {
            let a = t.floats(), b = got[k]!.floats()
            let scale = max(a.map(abs).max()!, 1e-30)
            #expect(zip(a, b).map { abs($0 - $1) }.max()! / scale <= 1e-6, "\(k)")
        }
    }
}
