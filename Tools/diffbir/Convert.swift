import ArgumentParser
import Foundation
import Importers
import Tensors

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert checkpoints (.pt/.pth/.ckpt/.safetensors) to one .safetensors file; ONNX and ncnn models to ONNX or .safetensors.",
        discussion: """
        Tensors are copied one at a time, in pieces of a few MB, from the memory-mapped input to the \
        output: converting a 5 GB checkpoint holds little more than one piece in memory. Views and \
        strided tensors are written contiguous. With several inputs the tensors are merged; a name \
        that occurs twice is an error.

        --dtype changes floating-point tensors only (rounding to nearest even); integer and bool \
        tensors keep their type. --select keeps tensors whose original name starts with a prefix; \
        --strip-prefix then removes a prefix from the names (e.g. `--select first_stage_model. \
        --strip-prefix first_stage_model.` extracts the VAE of a Stable Diffusion checkpoint).

        An ncnn model (X.param with X.bin beside it) converts to ONNX (`-o X.onnx`) or to its \
        weights (`-o X.safetensors`, named LAYER.weight/LAYER.bias); `--layout bsrnet` recognises an \
        RRDBNet ×4 (Real-ESRGAN x4plus, ESRGAN) and writes BSRNet's published key names, so that \
        `compile --model bsrnet` and DiffBIR v2 plans take it.

        The output is written to a temporary file beside it and renamed into place at the end: \
        on any error nothing is left behind. An existing output is kept unless --overwrite.
        """
    )

    @Argument(help: "Input checkpoints.")
    var inputs: [String]

    @Option(name: .shortAndLong, help: "Output .safetensors file.")
    var output: String

    @Option(help: "Floating-point dtype of the output: f32, f16, bf16 or f64 (default: unchanged).")
    var dtype: FloatDType?

    @Option(help: "Keep only tensors whose name starts with this prefix (repeatable).")
    var select: [String] = []

    @Option(help: "Remove this prefix from tensor names (repeatable; the first that matches).")
    var stripPrefix: [String] = []

    @OptionGroup(title: "Output")
    var out: OutputOptions
    var overwrite: Bool { out.overwrite }
    var quiet: Bool { out.quiet }

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one input checkpoint") }
    }

    @Option(help: "For an .onnx or ncnn input: static shape for a graph input, NAME=D1,D2,... (repeatable).")
    var shape: [String] = []

    @Option(help: "For an ncnn input: its .bin file (default: beside the .param).")
    var bin: String?

    @Option(help: "For an ncnn input written as .safetensors: the published layout to name the weights by (bsrnet: an RRDBNet ×4 under BSRNet's keys).")
    var layout: NCNNLayoutArgument?

    func run() throws {
        if inputs.count == 1, inputs[0].hasSuffix(".onnx") { return try convertONNX() }
        if inputs.count == 1, isNCNNParam(inputs[0]) { return try convertNCNN() }
        if layout != nil { throw ToolError("--layout is for an ncnn model (.param)") }
        if !output.hasSuffix(".safetensors") {
            throw ToolError("\(output): checkpoints convert to .safetensors (the output's extension must be .safetensors)")
        }
        if output.hasSuffix(".onnx") { throw ToolError("an .onnx output needs an .onnx input (weights alone have no graph)") }
        let start = Date()
        var options = ConvertOptions(dtype: dtype?.value, selectPrefixes: select, stripPrefixes: stripPrefix, overwrite: overwrite)
        options.chunkBytes = 8 << 20
        var lastShown = Date.distantPast
        let showProgress = !quiet && isatty(2) != 0
        let report: ConvertReport
        do {
            let checkpoints = try inputs.map { path throws(CheckpointError) in try Checkpoint.open(path) }
            report = try Converter.convert(checkpoints, to: output, options: options) { p in
                guard showProgress, Date().timeIntervalSince(lastShown) > 0.25 || p.bytesDone == p.bytesTotal else { return }
                lastShown = Date()
                let percent = p.bytesTotal > 0 ? 100 * Double(p.bytesDone) / Double(p.bytesTotal) : 100
                printError(String(format: "\rconverting: tensor %d/%d, %@ of %@ (%.0f%%)   ", p.tensor + 1, p.tensorCount,
                                  formatBytes(p.bytesDone), formatBytes(p.bytesTotal), percent), terminator: "")
            }
        } catch {
            if showProgress { printError("") }
            throw ToolError(error.description)
        }
        if showProgress { printError("") }
        let seconds = Date().timeIntervalSince(start)
        out.result("wrote \(output): \(report.tensors) tensors (\(report.retyped) converted to \(options.dtype?.rawValue ?? "-")), "
                   + "\(formatBytes(report.bytesWritten)) from \(formatBytes(report.bytesRead)) in \(String(format: "%.2f", seconds)) s",
                   json: .object([("output", .string(output)), ("format", .string("safetensors")), ("tensors", .int(report.tensors)),
                                  ("converted", .int(report.retyped)), ("bytesWritten", .int(report.bytesWritten)),
                                  ("bytesRead", .int(report.bytesRead)), ("seconds", .seconds(seconds))]))
    }

    /// .onnx → .onnx through the IR (imported, decompositions raised, written back at opset 21),
    /// or .onnx → .safetensors (its weights).
    func convertONNX() throws {
        let imported = try importONNX(inputs[0], shapes: parseShapes(shape), constants: [:])
        if output.hasSuffix(".onnx") {
            var options = ONNXWriter.Options()
            options.overwrite = overwrite
            try ONNXWriter.write(imported.graph, to: output, options: options)
            out.result("wrote \(output): \(imported.graph.nodes.count) IR nodes, opset \(ONNXWriter.opset)",
                       json: .object([("output", .string(output)), ("format", .string("onnx")), ("nodes", .int(imported.graph.nodes.count)),
                                      ("opset", .int(ONNXWriter.opset))]))
            return
        }
        let g = imported.graph
        var tensors: [(String, Tensor)] = []
        var seen = Set<String>()
        for v in g.values where v.isConstant && seen.insert(v.name).inserted {
            if !select.isEmpty, !select.contains(where: { v.name.hasPrefix($0) }) { continue }
            var t = v.constant!
            if let d = dtype?.value, t.dtype.isFloatingPoint { t = t.converted(to: d) }
            tensors.append((v.name, t))
        }
        try SafetensorsWriter.write(path: output, tensors: tensors, metadata: [("format", "pt")], overwrite: overwrite)
        out.result("wrote \(output): \(tensors.count) tensors",
                   json: .object([("output", .string(output)), ("format", .string("safetensors")), ("tensors", .int(tensors.count))]))
    }

    /// ncnn → .onnx (the graph) or .safetensors (the weights, optionally under a published layout).
    func convertNCNN() throws {
        let imported = try importNCNN(inputs[0], bin: bin, shapes: parseShapes(shape), assumeShapes: !output.hasSuffix(".onnx"))
        if output.hasSuffix(".onnx") {
            if layout != nil { throw ToolError("--layout names the weights of a .safetensors output; an .onnx output keeps the model's graph") }
            var options = ONNXWriter.Options()
            options.overwrite = overwrite
            try ONNXWriter.write(imported.graph, to: output, options: options)
            out.result("wrote \(output): \(imported.params.layers.count) ncnn layers as \(imported.graph.nodes.count) IR nodes, opset \(ONNXWriter.opset)",
                       json: .object([("output", .string(output)), ("format", .string("onnx")), ("layers", .int(imported.params.layers.count)),
                                      ("nodes", .int(imported.graph.nodes.count)), ("opset", .int(ONNXWriter.opset))]))
            return
        }
        guard output.hasSuffix(".safetensors") else { throw ToolError("\(output): an ncnn model converts to .onnx or .safetensors") }
        var tensors: [(String, Tensor)]
        var note = ""
        if let layout {
            do {
                let (t, s) = try layout.value.tensors(imported)
                tensors = t
                note = " (\(layout.value.rawValue) layout: RRDBNet nf \(s.nf), nb \(s.nb), gc \(s.gc))"
            } catch { throw ToolError(error.description) }
        } else {
            tensors = imported.weights.map { ($0.name, $0.tensor) }
        }
        if let d = dtype?.value { tensors = tensors.map { ($0.0, $0.1.converted(to: d)) } }
        try SafetensorsWriter.write(path: output, tensors: tensors, metadata: [("format", "pt")], overwrite: overwrite)
        out.result("wrote \(output): \(tensors.count) tensors\(note)",
                   json: .object([("output", .string(output)), ("format", .string("safetensors")), ("tensors", .int(tensors.count)),
                                  ("layout", layout.map { .string($0.rawValue) } ?? .null)]))
    }
}

/// `--layout` values.
enum NCNNLayoutArgument: String, ExpressibleByArgument, CaseIterable {
    case bsrnet
    var value: NCNNLayout { NCNNLayout(rawValue: rawValue)! }
}

/// `convert --dtype`: the floating-point dtypes a checkpoint's float tensors may be converted to.
enum FloatDType: String, ExpressibleByArgument, CaseIterable {
    case f32, f16, bf16, f64
    var value: DType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .f64: return .f64
        }
    }
}
