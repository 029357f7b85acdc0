import Foundation
import Importers
import IR
import ModelGraphs
import Passes
import Tensors
import Testing
import TestSupport

/// A fixture network (Tests/Fixtures/networks), built, bound and ready to run.
struct FixtureNetwork {
    let network: Network
    let graph: Graph
    let inputs: [String: Tensor]
    let expected: [String: Tensor]

    static let all: [(Network, [String], String, [String: String])] = [
        (.swinir, ["swinir"], "swinir", ["image": "output"]), (.bsrnet, ["bsrnet"], "bsrnet", ["image": "output"]),
        (.scunet, ["scunet"], "scunet", ["image": "output"]), (.unet, ["unet"], "unet", ["out": "out"]),
        (.controlnet, ["controlnet"], "unet", Dictionary(uniqueKeysWithValues: (0..<5).map { ("control_\($0)", "control_\($0)") })),
        (.denoise, ["unet", "controlnet"], "unet", ["out": "out"]), (.vaeEncoder, ["vae-encoder"], "vae", ["latent": "latent"]),
        (.vaeDecoder, ["vae-decoder"], "vae", ["image": "output"]), (.clipText, ["clip-text"], "clip-text", ["context": "context"]),
    ]

    static func load(_ index: Int) throws -> FixtureNetwork {
        let (network, weights, configName, outputs) = all[index]
        let dir = Fixtures.path("networks/")
        let config = try NetworkConfig.load(network, json: Data(contentsOf: URL(fileURLWithPath: dir + configName + ".config.json")))
        var io: [String: Tensor] = [:]
        for e in try Checkpoint.open(dir + network.rawValue + ".io.safetensors").tensors { io[e.name] = e.load() }
        var types: [String: TensorType] = [:]
        for name in network.inputNames(config) { if let t = io[name] { types[name] = TensorType(t.dtype, t.shape) } }
        var graph = try network.graph(config, inputs: types)
        var files: [WeightFile] = []
        for w in weights { files.append(try WeightFile.open(dir + w + ".weights.safetensors")) }
        _ = try network.bind(&graph, config: config, files: files)
        return FixtureNetwork(network: network, graph: graph, inputs: io.filter { types[$0.key] != nil },
                              expected: Dictionary(uniqueKeysWithValues: outputs.map { ($0.key, io[$0.value]!) }))
    }

    static func relativeError(_ a: Tensor, _ b: Tensor) -> Double {
        let x = a.floats(), y = b.floats()
        let scale = y.map { abs(Double($0)) }.max() ?? 1
        return zip(x, y).map { abs(Double($0) - Double($1)) }.max()! / max(scale, 1e-30)
    }
}

@Suite struct NetworkOptimizationTests {
    /// The optimised graph (verified after every pass) computes what the unoptimised one does.
    @Test(arguments: Array(0..<FixtureNetwork.all.count))
    func optimizedMatchesUnoptimized(index: Int) throws {
        let f = try FixtureNetwork.load(index)
        var g = f.graph
        var options = CompileOptions()
        options.verifyEach = true
        let records = try PassPipeline.run(&g, options: options)
        #expect(records.count == PassPipeline.standard.count)
        let before = try Interpreter.run(f.graph, inputs: f.inputs), after = try Interpreter.run(g, inputs: f.inputs)
        for (name, t) in before {
            let e = FixtureNetwork.relativeError(after[name]!, t)
            #expect(e <= 1e-5, "\(f.network.rawValue) \(name): \(e)")
            #expect(FixtureNetwork.relativeError(after[name]!, f.expected[name]!) <= 1e-4)
        }
        let ops = g.nodes.map(\.op.name)
        print("\(f.network.rawValue): \(f.graph.nodes.count) → \(g.nodes.count) nodes; fused: " +
              ["conv_fused", "linear_fused", "attention", "geglu", "matmul_t"].map { k in "\(k) \(ops.filter { $0 == k }.count)" }.joined(separator: ", "))
    }
}
