import Foundation
import Importers
import IR
import ModelGraphs
import Passes
import Tensors
import Testing
import TestSupport

/// A checkpoint's tensors as the binder sees them.
func weightFile(_ path: String) throws -> WeightFile { try WeightFile.open(path) }

func tensors(_ path: String) throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for e in try Checkpoint.open(path).tensors { out[e.name] = e.load() }
    return out
}

/// Every network built from its definition in Graphs/, bound to weights saved by PyTorch under the
/// published key names (Tools/fixtures/make_network_exports.py, reduced widths), run with the
/// reference kernels and compared with PyTorch's outputs: max error relative to the output's max ≤ 1e-4.
@Suite struct NetworkParityTests {
    /// network, weights files, config file, (our output name, the fixture's name) pairs.
    static let cases: [(Network, [String], String, [(String, String)])] = [
        (.swinir, ["swinir"], "swinir", [("image", "output")]),
        (.bsrnet, ["bsrnet"], "bsrnet", [("image", "output")]),
        (.scunet, ["scunet"], "scunet", [("image", "output")]),
        (.unet, ["unet"], "unet", [("out", "out")]),
        (.controlnet, ["controlnet"], "unet", (0..<5).map { ("control_\($0)", "control_\($0)") }),
        (.denoise, ["unet", "controlnet"], "unet", [("out", "out")]),
        (.vaeEncoder, ["vae-encoder"], "vae", [("latent", "latent")]),
        (.vaeDecoder, ["vae-decoder"], "vae", [("image", "output")]),
        (.clipText, ["clip-text"], "clip-text", [("context", "context")]),
    ]

    static func run(_ index: Int) throws -> Double {
        let (network, weights, configName, outputs) = cases[index]
        let dir = Fixtures.path("networks/")
        let config = try NetworkConfig.load(network, json: Data(contentsOf: URL(fileURLWithPath: dir + configName + ".config.json")))
        let io = try tensors(dir + network.rawValue + ".io.safetensors")
        var types: [String: TensorType] = [:]
        for name in network.inputNames(config) { if let t = io[name] { types[name] = TensorType(t.dtype, t.shape) } }
        var graph = try network.graph(config, inputs: types)
        try graph.verify()
        let report = try network.bind(&graph, config: config, files: weights.map { try weightFile(dir + $0 + ".weights.safetensors") })
        #expect(report.bound == graph.weights.count)
        let results = try Interpreter.run(graph, inputs: io.filter { types[$0.key] != nil })
        var worst = 0.0
        for (ours, theirs) in outputs {
            let a = try #require(results[ours]).floats(), b = try #require(io[theirs]).floats()
            #expect(a.count == b.count)
            let scale = b.map { abs(Double($0)) }.max()!
            worst = max(worst, zip(a, b).map { abs(Double($0) - Double($1)) }.max()! / scale)
        }
        return worst
    }

    @Test(arguments: Array(0..<cases.count))
    func matchesPyTorch(index: Int) throws {
        let error = try Self.run(index)
        #expect(error <= 1e-4, "\(Self.cases[index].0.rawValue): max relative error \(error)")
    }
}
