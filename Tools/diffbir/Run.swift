import ArgumentParser
import Foundation
import Importers
import IR
import Passes
import Tensors

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on tensors: safetensors in, safetensors out.",
        discussion: """
        --model takes an ONNX file. Inputs and outputs are named by the graph's input and output \
        names; the inputs file must hold a tensor for every graph input, with the declared dtype \
        and shape. Graph inputs with symbolic dimensions need --shape NAME=D1,D2,...

        The graph is static: inputs that decide shapes (axes, pads, target shapes, resize scales \
        or sizes) are constants at import. If the model takes them as inputs, give their values \
        with --const NAME=FILE (safetensors or TensorProto .pb), or put them in the inputs file.

        This version runs the graph with the reference kernels (plain double-precision loops): \
        exact and slow, the oracle the compiled executor is checked against.
        """
    )

    @Option(help: "The model: an .onnx file.")
    var model: String

    @Option(help: "Input tensors (.safetensors), by graph input name.")
    var inputs: String

    @Option(name: .shortAndLong, help: "Output .safetensors file.")
    var output: String

    @Option(help: "Static shape for a graph input: NAME=D1,D2,... (repeatable).")
    var shape: [String] = []

    @Option(name: .customLong("const"), help: "Fix a graph input at import: NAME=FILE (repeatable).")
    var constants: [String] = []

    @Flag(help: "Replace the output if it exists.")
    var overwrite = false

    func run() throws {
        let start = Date()
        let given = try Checkpoint.open(inputs)
        var tensors: [String: Tensor] = [:]
        for e in given.tensors { tensors[e.name] = e.load() }
        let imported = try importONNX(model, shapes: parseShapes(shape), constants: parseConstants(constants), available: tensors)
        let graph = imported.graph
        let names = graph.inputs.map { graph.values[$0].name }
        var feed: [String: Tensor] = [:]
        for name in names {
            guard let t = tensors[name] else { throw ToolError("\(inputs): no tensor for graph input '\(name)' (\(graph.values[graph.inputs[names.firstIndex(of: name)!]].type))") }
            feed[name] = t
        }
        let results: [String: Tensor]
        do { results = try Interpreter.run(graph, inputs: feed) } catch { throw ToolError("\(model): \(error)") }
        let ordered = graph.outputs.map { ($0.name, results[$0.name]!) }
        try SafetensorsWriter.write(path: output, tensors: ordered, metadata: [("format", "pt")], overwrite: overwrite)
        print("wrote \(output): " + ordered.map { "\($0.0) \($0.1.dtype)\($0.1.shape)" }.joined(separator: ", ")
              + String(format: " (%d nodes, %.2f s)", graph.nodes.count, Date().timeIntervalSince(start)))
    }
}
