import ArgumentParser
import Importers

/// `--overwrite`, `--quiet/-q` and `--json`: the same three options, with the same meaning, on every
/// subcommand that writes files.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Replace outputs that exist (default: refuse, naming the file; nothing is written).")
    var overwrite = false

    @Flag(name: .shortAndLong, help: "No progress or notes on standard error (errors still print).")
    var quiet = false

    @Flag(help: "Print the result as JSON on standard output: one object (for a batch, one object per line).")
    var json = false

    /// Prints the command's result: `object` with --json, `text` otherwise.
    func result(_ text: @autoclosure () -> String, json object: @autoclosure () -> JSONValue) {
        print(json ? object().serialized : text())
    }

    /// A note on standard error unless --quiet (with --json the notes stay off standard output).
    func note(_ text: @autoclosure () -> String) {
        if !quiet { printError(text()) }
    }
}

/// `--quiet/-q` and `--json` on subcommands that only read and report.
struct ReportOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "No progress or notes on standard error (errors still print).")
    var quiet = false

    @Flag(help: "Print the result as one JSON object on standard output.")
    var json = false

    func result(_ text: @autoclosure () -> String, json object: @autoclosure () -> JSONValue) {
        print(json ? object().serialized : text())
    }
}

/// `--threads`, the same default everywhere: the physical cores.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Threads for the kernels, ours and OpenBLAS's (default: the physical cores, \(physicalCores) here).")
    var threads: Int = physicalCores

    func validate() throws {
        if threads < 1 { throw ValidationError("--threads must be at least 1") }
    }
}

/// A byte size as given on the command line: `3G`, `500M`, `100K`, `2T` (powers of 1000, an
/// optional `B`) or plain bytes; positive, finite and below 2⁶² (`1e400G` is refused, not a trap).
struct ByteSize: ExpressibleByArgument, CustomStringConvertible {
    let bytes: Int
    let description: String

    init?(argument: String) {
        let units: [Character: Double] = ["K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12]
        var text = argument.uppercased()
        if text.hasSuffix("B") { text.removeLast() }
        if let u = text.last, let f = units[u], let v = Double(text.dropLast()), v > 0, (v * f).isFinite, v * f < 0x1p62 {
            bytes = Int(v * f)
        } else if let n = Int(text), n > 0 {
            bytes = n
        } else {
            return nil
        }
        description = argument
    }

    init(bytes: Int, description: String) {
        self.bytes = bytes
        self.description = description
    }

    var defaultValueDescription: String { description }
}

extension JSONValue {
    static func int(_ v: Int) -> JSONValue { .integer(Int64(v)) }
    /// Seconds rounded to the millisecond.
    static func seconds(_ v: Double) -> JSONValue { .number((v * 1000).rounded() / 1000) }
}
