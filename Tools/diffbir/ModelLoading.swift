import Foundation
import Importers
import IR
import ModelGraphs
import Tensors


/// The configuration of `network` with `--config FILE` applied: DiffBIR's own yaml files as
/// published (`cldm.yaml`, `swinir.yaml`, ...; ignored keys noted on standard error), or JSON.
func networkConfig(_ network: Network, _ path: String?) throws -> NetworkConfig {
    guard let path else { return NetworkConfig() }
    guard let data = FileManager.default.contents(atPath: path) else { throw ToolError("\(path): cannot read the configuration") }
    let lower = path.lowercased()
    if lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") {
        var notes: [String] = []
        do {
            let config = try NetworkConfig.load(network, yaml: String(decoding: data, as: UTF8.self), notes: &notes)
            for n in notes { printError("note: \(path) (\(network.rawValue)): \(n)") }
            return config
        } catch { throw ToolError("\(path): \(error)") }
    }
    do { return try NetworkConfig.load(network, json: data) } catch { throw ToolError("\(path): \(error)") }
}

/// `--model NAME`, or nil when the value is a file (an ONNX model).
func builtinNetwork(_ model: String) throws -> Network? {
    if let n = Network(rawValue: model) { return n }
    if model.hasSuffix(".onnx") || FileManager.default.fileExists(atPath: model) { return nil }
    throw ToolError("unknown model '\(model)': give an .onnx file or one of \(Network.allCases.map(\.rawValue).joined(separator: ", "))")
}
