import Importers
import IR
import Passes
import Tensors

/// `--shape name=1,4,64,64` values.
func parseShapes(_ values: [String]) throws -> [String: [Int]] {
    var out: [String: [Int]] = [:]
    for v in values {
        let parts = v.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty else { throw ToolError("--shape \(v): expected NAME=D1,D2,...") }
        let dims = parts[1].split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !dims.isEmpty, dims.allSatisfy({ $0 != nil && $0! >= 0 }) else { throw ToolError("--shape \(v): dimensions must be non-negative integers") }
        out[String(parts[0])] = dims.map { $0! }
    }
    return out
}

/// `--const name=FILE`: a safetensors file (its tensor of that name, or its only tensor) or a
/// TensorProto (.pb) file.
func parseConstants(_ values: [String]) throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for v in values {
        let parts = v.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw ToolError("--const \(v): expected NAME=FILE") }
        let (name, path) = (parts[0], parts[1])
        if path.hasSuffix(".pb") {
            out[name] = try ONNXImporter.readTensorProto(path).tensor
            continue
        }
        let c = try Checkpoint.open(path)
        guard let entry = c.tensors.first(where: { $0.name == name }) ?? (c.tensors.count == 1 ? c.tensors[0] : nil) else {
            throw ToolError("\(path): no tensor named '\(name)' (and more than one tensor)")
        }
        out[name] = entry.load()
    }
    return out
}

/// Imports an ONNX model; graph inputs it needs as constants are taken from `available` (e.g.
/// the tensors of the inputs file) when present there.
func importONNX(_ path: String, shapes: [String: [Int]], constants: [String: Tensor], available: [String: Tensor] = [:]) throws -> ONNXImport {
    var options = ONNXImportOptions(evaluator: ReferenceEvaluator(), shapes: shapes)
    options.constants = constants
    while true {
        do {
            return try ONNXImporter.load(path, options: options)
        } catch {
            guard let name = error.requiredConstant, options.constants[name] == nil, let value = available[name] else { throw ToolError(error.description) }
            options.constants[name] = value
        }
    }
}
