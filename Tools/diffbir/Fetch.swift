import ArgumentParser
import Foundation
import Importers
import Pipeline

struct Fetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download DiffBIR's published weights, resumably, and check them.",
        discussion: """
        Names are those of DiffBIR's pretrained_models.py (--list shows them with their addresses \
        and the plans that need them). Each file is downloaded to DIR/FILE.part and renamed into \
        place only when complete: an interrupted download (Ctrl-C, a dropped connection) continues \
        where it stopped when the same command runs again. The size is checked against the \
        server's, the SHA-256 against the published one where the host pins it (otherwise it is \
        printed), and the file is opened as a checkpoint (its tensors counted) before it is kept. \
        A file already in DIR is checked, not downloaded again.
        """
    )

    @Argument(help: "Published names (bsrnet, swinir_realesrgan, sd_v2.1_zsnr, v2.1, ...).")
    var names: [String] = []

    @Option(help: "The folder to write into.")
    var dir: String = "weights"

    @Option(help: "A mirror: each file is fetched from MIRROR/FILE instead of its published address.")
    var mirror: String?

    @Flag(help: "List the published files and exit.")
    var list = false

    @OptionGroup(title: "Output (--overwrite downloads afresh a file that is there; it is replaced once the new one is complete and checked)")
    var out: OutputOptions
    var quiet: Bool { out.quiet }
    var json: Bool { out.json }

    func validate() throws {
        if !list && names.isEmpty { throw ValidationError("give the names to fetch (diffbir fetch --list shows them)") }
        for n in names where PublishedFile.named(n) == nil {
            throw ValidationError("unknown name '\(n)': one of \(PublishedFile.all.map(\.name).joined(separator: ", "))")
        }
    }

    func run() throws {
        if list {
            for f in PublishedFile.all {
                if json {
                    print(JSONValue.object([("name", .string(f.name)), ("file", .string(f.fileName)), ("url", .string(f.url)),
                                            ("used_by", .string(f.usedBy))]).serialized)
                } else {
                    print(f.name.padding(toLength: 18, withPad: " ", startingAt: 0) + " " + f.fileName.padding(toLength: 38, withPad: " ", startingAt: 0)
                          + " " + f.usedBy + "\n" + String(repeating: " ", count: 19) + f.url)
                }
            }
            return
        }
        for name in names {
            var file = PublishedFile.named(name)!
            if let mirror { file.url = (mirror.hasSuffix("/") ? mirror : mirror + "/") + file.fileName }
            let bar = ProgressBar(enabled: !quiet, label: file.fileName)
            let result: Fetcher.Result
            do {
                result = try Fetcher.fetch(file, into: dir, replace: out.overwrite) { done, total in
                    bar.update("download", done >> 20, (total ?? max(done, 1)) >> 20)
                }
            } catch {
                bar.finish()
                throw ToolError(error.description)
            }
            bar.finish()
            // The layout: a checkpoint that opens, with tensors.
            let tensors: Int
            do { tensors = try Checkpoint.open(result.path).tensors.count } catch {
                throw ToolError("\(result.path): downloaded, but it does not open as a checkpoint: \(error)")
            }
            if json {
                print(JSONValue.object([("name", .string(name)), ("path", .string(result.path)), ("bytes", .integer(Int64(result.bytes))),
                                        ("sha256", .string(result.sha256)), ("tensors", .integer(Int64(tensors))),
                                        ("resumed_from", .integer(Int64(result.resumedFrom))), ("already_present", .bool(result.alreadyPresent))]).serialized)
            } else {
                print("\(result.path): \(formatBytes(result.bytes)), \(tensors) tensors, sha256 \(result.sha256)"
                      + (result.alreadyPresent ? " (already there)" : result.resumedFrom > 0 ? " (resumed at \(formatBytes(result.resumedFrom)))" : ""))
            }
        }
    }
}
