import ArgumentParser
import Foundation
import Importers
import Pipeline
import Plan
import Tensors

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a checkpoint, ONNX or ncnn model, or compiled plan holds.",
        discussion: """
        Reads only the header (safetensors) or the pickle and zip directory (torch .pt/.pth/.ckpt): \
        tensor data is never touched, so a 5 GB checkpoint is inspected in milliseconds. The format \
        is recognised from the file's first bytes, not its extension.

        For a PyTorch Lightning checkpoint the tensors of its `state_dict` are listed and the other \
        entries (epoch, callbacks, optimizer state, ...) are named as skipped. `parameters` counts \
        the elements of all tensors, buffers included.

        JSON output (--json): {"path", "format", "wrapper", "metadata", "tensors": [{"name", "dtype", \
        "shape", "bytes"}], "skipped": [{"name", "summary"}], "tensor_count", "total_bytes", "parameters"}.

        A compiled plan (recognised by its DIFFBIRP magic; every section's checksum is checked first) \
        prints its compile report, then each entry point's inputs, outputs, instruction count and \
        arena; --limit N lists its first N weights. JSON: {"path", "format": "plan", "version", \
        "file_bytes", "entry_points": [{"name", "inputs", "outputs", "instructions", "arena_bytes", \
        "kernels"}], "weight_count", "weight_bytes", "arena_bytes", "target_features", "report"}.

        An ncnn model (X.param, with X.bin beside it) lists its layers by type, its input and output \
        blobs with their shapes, and the .bin's bytes by storage (f32, f16, int8, u8 table); an input \
        without a shape in the file needs --shape NAME=1,C,H,W. JSON: {"path", "format": "ncnn", \
        "layers", "blobs", "layer_types", "inputs", "outputs", "weight_bytes", "parameters"}.
        """
    )

    @Argument(help: "A .safetensors, .pt, .pth, .ckpt, .onnx, ncnn .param or plan file.")
    var file: String

    @Flag(help: "For a plan: only check it (header, checksums, then the program against itself: every instruction's operands, shapes and parameters, every weight and arena slot in bounds) and print one line; exit 1 naming the first instruction at fault.")
    var verify = false

    @Option(name: .customLong("memory-svg"), help: "For a plan: draw each entry point's arena (every intermediate over the instructions that make and read it, and the weights each reads) into this SVG file.")
    var memorySVG: String?

    @OptionGroup(title: "Output (--overwrite: for --memory-svg)")
    var out: OutputOptions
    var json: Bool { out.json }

    @Option(help: "List at most this many tensors in the table (totals still count all).")
    var limit: Int?

    @Flag(help: "For a model (.onnx): print its graph in the IR's text form.")
    var ir = false

    @Option(help: "For an .onnx or ncnn model: static shape for a graph input, NAME=D1,D2,... (repeatable).")
    var shape: [String] = []

    @Option(name: .customLong("const"), help: "For an .onnx model: fix a graph input, NAME=FILE (repeatable).")
    var constants: [String] = []

    @Option(help: "For an ncnn model: its .bin file (default: beside the .param).")
    var bin: String?

    func run() throws {
        if file.hasSuffix(".onnx") { return try inspectONNX() }
        if isNCNNParam(file) { return try inspectNCNN() }
        if Self.isPlan(file) {
            if ir { throw ToolError("--ir needs a model (.onnx); \(file) is a compiled plan") }
            return try inspectPlan()
        }
        if ir { throw ToolError("--ir needs a model (.onnx); \(file) holds weights only") }
        let checkpoint: Checkpoint
        do { checkpoint = try Checkpoint.open(file) } catch { throw ToolError(error.description) }
        if json {
            print(jsonReport(checkpoint).serialized)
            return
        }
        print("\(checkpoint.path): \(checkpoint.format.rawValue)" + (checkpoint.wrapper.map { ", tensors under '\($0)'" } ?? ""))
        for (k, v) in checkpoint.metadata { print("  metadata \(k) = \(v)") }
        let shown = limit.map { Array(checkpoint.tensors.prefix($0)) } ?? checkpoint.tensors
        let nameWidth = min(90, max(4, shown.map(\.name.count).max() ?? 4))
        if !shown.isEmpty {
            print(column("name", nameWidth) + "  " + column("dtype", 5) + "  " + column("shape", 22) + "  bytes")
            for t in shown {
                print(column(t.name, nameWidth) + "  " + column(t.dtype.rawValue, 5) + "  " + column(t.shape.description, 22) + "  " + formatCount(t.byteCount))
            }
        }
        if shown.count < checkpoint.tensors.count { print("... \(checkpoint.tensors.count - shown.count) more tensors") }
        var byType: [DType: Int] = [:]
        for t in checkpoint.tensors { byType[t.dtype, default: 0] += 1 }
        let types = DType.allCases.compactMap { d in byType[d].map { "\($0) \(d)" } }.joined(separator: ", ")
        print("\(formatCount(checkpoint.tensors.count)) tensors (\(types)), \(formatCount(checkpoint.parameterCount)) parameters, \(formatBytes(checkpoint.totalBytes))")
        if !checkpoint.skipped.isEmpty {
            print("skipped \(checkpoint.skipped.count) non-tensor entries: " + checkpoint.skipped.prefix(8).map { "\($0.name) (\($0.summary))" }.joined(separator: ", ")
                  + (checkpoint.skipped.count > 8 ? ", ..." : ""))
        }
    }

    func jsonReport(_ c: Checkpoint) -> JSONValue {
        .object([
            ("path", .string(c.path)),
            ("format", .string(c.format.rawValue)),
            ("wrapper", c.wrapper.map { .string($0) } ?? .null),
            ("metadata", .object(c.metadata.map { ($0.0, .string($0.1)) })),
            ("tensors", .array(c.tensors.map { t in
                .object([
                    ("name", .string(t.name)), ("dtype", .string(t.dtype.rawValue)),
                    ("shape", .array(t.shape.dims.map { .integer(Int64($0)) })), ("bytes", .integer(Int64(t.byteCount))),
                ])
            })),
            ("skipped", .array(c.skipped.map { .object([("name", .string($0.name)), ("summary", .string($0.summary))]) })),
            ("tensor_count", .integer(Int64(c.tensors.count))),
            ("total_bytes", .integer(Int64(c.totalBytes))),
            ("parameters", .integer(Int64(c.parameterCount))),
        ])
    }

    func inspectONNX() throws {
        let imported = try importONNX(file, shapes: parseShapes(shape), constants: parseConstants(constants))
        let g = imported.graph
        if ir {
            print(g.text, terminator: "")
            return
        }
        let constants = g.values.filter(\.isConstant)
        let weightBytes = constants.reduce(0) { $0 + $1.type.count * $1.type.dtype.byteSize }
        var ops: [String: Int] = [:]
        for n in g.nodes { ops[n.op.name, default: 0] += 1 }
        if json {
            let report: JSONValue = .object([
                ("path", .string(file)), ("format", .string("onnx")), ("opset", .integer(Int64(imported.opset))),
                ("producer", .string(imported.producer)),
                ("inputs", .array(g.inputs.map { .object([("name", .string(g.values[$0].name)), ("type", .string(g.values[$0].type.description))]) })),
                ("outputs", .array(g.outputs.map { .object([("name", .string($0.name)), ("type", .string(g.values[$0.value].type.description))]) })),
                ("tensors", .array(constants.map { v in .object([("name", .string(v.name)), ("dtype", .string(v.type.dtype.rawValue)),
                                                                   ("shape", .array(v.type.dims.map { .integer(Int64($0)) })),
                                                                   ("bytes", .integer(Int64(v.type.count * v.type.dtype.byteSize)))]) })),
                ("nodes", .integer(Int64(g.nodes.count))),
                ("ops", .object(ops.keys.sorted().map { ($0, .integer(Int64(ops[$0]!))) })),
                ("raised", .object(imported.raised.keys.sorted().map { ($0, .integer(Int64(imported.raised[$0]!))) })),
                ("tensor_count", .integer(Int64(constants.count))), ("total_bytes", .integer(Int64(weightBytes))),
                ("parameters", .integer(Int64(constants.reduce(0) { $0 + $1.type.count }))),
            ])
            print(report.serialized)
            return
        }
        print("\(file): onnx, opset \(imported.opset), \(imported.producer)")
        for i in g.inputs { print("  input  \(g.values[i].name): \(g.values[i].type)") }
        for o in g.outputs { print("  output \(o.name): \(g.values[o.value].type)") }
        print("\(g.nodes.count) nodes: " + ops.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if !imported.raised.isEmpty {
            print("raised from exporter decompositions: " + imported.raised.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        print("\(formatCount(constants.count)) constants, \(formatCount(constants.reduce(0) { $0 + $1.type.count })) parameters, \(formatBytes(weightBytes))")
    }
}

extension Inspect {
    func inspectNCNN() throws {
        let m = try importNCNN(file, bin: bin, shapes: parseShapes(shape), assumeShapes: true)
        let g = m.graph
        if ir {
            print(g.text, terminator: "")
            return
        }
        let parameters = m.weights.reduce(0) { $0 + $1.tensor.count }
        if json {
            print(JSONValue.object([
                ("path", .string(file)), ("format", .string("ncnn")),
                ("layers", .integer(Int64(m.params.layers.count))), ("blobs", .integer(Int64(m.params.blobCount))),
                ("layer_types", .object(m.layerTypes.map { ($0.type, .integer(Int64($0.count))) })),
                ("inputs", .array(g.inputs.map { .object([("name", .string(g.values[$0].name)), ("type", .string(g.values[$0].type.description))]) })),
                ("outputs", .array(g.outputs.map { .object([("name", .string($0.name)), ("type", .string(g.values[$0.value].type.description))]) })),
                ("weight_bytes", .object(m.weightBytes.map { ($0.storage.rawValue, .integer(Int64($0.bytes))) })),
                ("parameters", .integer(Int64(parameters))),
            ]).serialized)
            return
        }
        print("\(file): ncnn, \(m.params.layers.count) layers, \(m.params.blobCount) blobs")
        let assumed = Set(NCNNImporter.assumedInputShapes(m.params).keys).subtracting(try parseShapes(shape).keys)
        for i in g.inputs {
            let name = g.values[i].name
            print("  input  \(name): \(g.values[i].type)" + (assumed.contains(name) ? " (not in the file: assumed; give --shape \(name)=1,C,H,W)" : ""))
        }
        for o in g.outputs { print("  output \(o.name): \(g.values[o.value].type)") }
        print("layers: " + m.layerTypes.map { "\($0.type) \($0.count)" }.joined(separator: ", "))
        print("weights: \(formatCount(parameters)) parameters; .bin " + m.weightBytes.map { "\($0.storage.rawValue) \(formatBytes($0.bytes))" }.joined(separator: ", "))
        print("\(g.nodes.count) IR nodes")
    }

    /// Whether `path` starts with the plan magic.
    static func isPlan(_ path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 8)).map { Array($0) == PlanFormat.magic } ?? false
    }

    /// A plan: its stored compile report, then its entry points and weights (or JSON).
    func inspectPlan() throws {
        let plan: PlanFile
        do { plan = try PlanFile(path: file) } catch { throw ToolError(error.description) }
        let p = plan.program
        if let memorySVG {
            do {
                let svg = try OutputFile(path: memorySVG, overwrite: out.overwrite)
                try svg.write(Array(MemoryPicture.svg(p).utf8))
                try svg.commit()
            } catch { throw ToolError("\(memorySVG): \(error)") }
            out.result("wrote \(memorySVG): \(p.entryPoints.count) entry point(s)",
                       json: .object([("output", .string(memorySVG)), ("entryPoints", .int(p.entryPoints.count))]))
            return
        }
        if verify {
            let instructions = p.entryPoints.reduce(0) { $0 + $1.instructions.count }
            if json {
                print(JSONValue.object([("path", .string(file)), ("verified", .bool(true)), ("entry_points", .integer(Int64(p.entryPoints.count))),
                                        ("instructions", .integer(Int64(instructions))), ("weights", .integer(Int64(p.weights.count - 1)))]).serialized)
            } else {
                print("\(file): verified: \(p.entryPoints.count) entry point(s), \(instructions) instructions, \(p.weights.count - 1) weights")
            }
            return
        }
        if json {
            func binding(_ b: Binding) -> JSONValue {
                .object([("name", .string(b.name)), ("dtype", .string(b.dtype.rawValue)),
                         ("shape", .array(b.shape.dims.map { .integer(Int64($0)) })), ("offset", .integer(Int64(b.offset)))])
            }
            let entries: [JSONValue] = p.entryPoints.map { e in
                var kinds: [String: Int] = [:]
                for i in e.instructions { kinds[i.kernel.kindName, default: 0] += 1 }
                return .object([
                    ("name", .string(e.name)), ("inputs", .array(e.inputs.map(binding))), ("outputs", .array(e.outputs.map(binding))),
                    ("instructions", .integer(Int64(e.instructions.count))), ("arena_bytes", .integer(Int64(e.arenaBytes))),
                    ("kernels", .object(kinds.sorted { $0.key < $1.key }.map { ($0.key, .integer(Int64($0.value))) })),
                ])
            }
            let weightBytes = p.weights.reduce(0) { $0 + $1.byteCount }
            print(JSONValue.object([
                ("path", .string(file)), ("format", .string("plan")), ("version", .integer(Int64(PlanFormat.version))),
                ("file_bytes", .integer(Int64(plan.file.size))), ("entry_points", .array(entries)),
                ("weight_count", .integer(Int64(p.weights.count - 1))), ("weight_bytes", .integer(Int64(weightBytes))),
                ("arena_bytes", .integer(Int64(p.arenaBytes))), ("activations", .string(p.activations.rawValue)),
                ("packed_weights", .array(p.packedWeights.map { w in
                    .object([("weight", .string(p.weights[w.weight].name)), ("layout", .string(w.layout.rawValue)), ("width", .integer(Int64(w.width))),
                             ("bytes", .integer(Int64(p.weights[w.storage].byteCount)))])
                })),
                ("report", .string(plan.summary)),
            ]).serialized)
            return
        }
        print("\(file): diffbir plan, format version \(PlanFormat.version), \(formatBytes(plan.file.size))")
        print(plan.summary, terminator: plan.summary.hasSuffix("\n") ? "" : "\n")
        for e in p.entryPoints {
            let io = { (bs: [Binding]) in bs.map { "\($0.name) \($0.dtype)\($0.shape)" }.joined(separator: ", ") }
            print("entry \(e.name): \(io(e.inputs)) -> \(io(e.outputs)); \(e.instructions.count) instructions, arena \(formatBytes(e.arenaBytes))")
        }
        if let limit, limit > 0 {
            for (i, w) in p.weights.enumerated().dropFirst().prefix(limit) {
                let format = w.format == nil || w.format?.rawValue == w.dtype.rawValue ? "" : " (\(w.format?.rawValue ?? "")" + (w.scale.map { ", scales in weight \($0)" } ?? "") + (w.blockCodes.map { ", block codes in weight \($0)" } ?? "") + ")"
                print("  weight \(i): \(w.name) \(w.dtype)\(w.shape)\(format) at \(w.offset), \(formatBytes(w.byteCount))")
            }
        }
    }
}
