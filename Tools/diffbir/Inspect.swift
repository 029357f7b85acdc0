import ArgumentParser
import Foundation
import Importers
import Tensors

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a checkpoint holds: tensors, dtypes, shapes, sizes.",
        discussion: """
        Reads only the header (safetensors) or the pickle and zip directory (torch .pt/.pth/.ckpt): \
        tensor data is never touched, so a 5 GB checkpoint is inspected in milliseconds. The format \
        is recognised from the file's first bytes, not its extension.

        For a PyTorch Lightning checkpoint the tensors of its `state_dict` are listed and the other \
        entries (epoch, callbacks, optimizer state, ...) are named as skipped. `parameters` counts \
        the elements of all tensors, buffers included.

        JSON output (--json): {"path", "format", "wrapper", "metadata", "tensors": [{"name", "dtype", \
        "shape", "bytes"}], "skipped": [{"name", "summary"}], "tensor_count", "total_bytes", "parameters"}.
        """
    )

    @Argument(help: "A .safetensors, .pt, .pth or .ckpt file.")
    var file: String

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Option(help: "List at most this many tensors in the table (totals still count all).")
    var limit: Int?

    func run() throws {
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
}
