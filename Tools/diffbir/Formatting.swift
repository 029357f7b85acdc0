import Foundation
import ArgumentParser
import Executor
import Kernels
import Tensors

/// Human-readable byte counts: 1.5 KB, 5.21 GB (powers of 1000, as file sizes are quoted).
func formatBytes(_ n: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var v = Double(n)
    var u = 0
    while v >= 1000, u < units.count - 1 {
        v /= 1000
        u += 1
    }
    return u == 0 ? "\(n) B" : String(format: "%.2f %@", v, units[u])
}

/// `1,234,567`
func formatCount(_ n: Int) -> String {
    let s = String(n)
    var out = ""
    for (i, c) in s.reversed().enumerated() {
        if i > 0, i % 3 == 0, c != "-" { out.append(",") }
        out.append(c)
    }
    return String(out.reversed())
}

/// Writes to standard error (progress, warnings), unbuffered.
func printError(_ text: String, terminator: String = "\n") {
    FileHandle.standardError.write((text + terminator).data(using: .utf8)!)
}

/// Pads or truncates to a column width.
func column(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

/// A tool error: printed as `diffbir: error: message` with exit code 1.
struct ToolError: Error, CustomStringConvertible {
    let description: String
    /// (Control characters from file names or file contents shown escaped: one line, terminal untouched.)
    init(_ description: String) { self.description = description.escapingControlCharacters }
}

extension ISA: ExpressibleByArgument {}

/// The GEMM kernel set asked for (or the best this processor runs), refused when the processor cannot run it.
func kernelSet(_ asked: ISA?) throws -> ISA {
    guard let asked else { return .best }
    guard asked.isSupported else { throw ToolError("--isa \(asked): this processor (\(CPU.summary)) cannot run those kernels") }
    return asked
}

let isaHelp = ArgumentHelp("GEMM kernels: avx512, avx2 or openblas (default: the best this processor runs).")

/// The default of every `--threads`: the physical cores this process may run on (hyper-threads
/// share a core's FMA units, so more threads only contend), from sysfs; all processors otherwise.
let physicalCores: Int = {
    var cores = Set<String>()
    let online = ProcessInfo.processInfo.activeProcessorCount
    for cpu in 0..<max(online, 1) {
        let base = "/sys/devices/system/cpu/cpu\(cpu)/topology/"
        guard let core = try? String(contentsOfFile: base + "core_id", encoding: .utf8),
              let package = try? String(contentsOfFile: base + "physical_package_id", encoding: .utf8) else { return online }
        cores.insert(package.trimmingCharacters(in: .whitespacesAndNewlines) + ":" + core.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    return max(1, min(cores.count, online))
}()

let traceHelp: ArgumentHelp = "Write a Chrome/Perfetto trace of every instruction run (kernel, shapes, time) to this JSON file, replacing it (open it in ui.perfetto.dev or chrome://tracing)."

/// Writes `trace` as a Chrome trace (atomically).
func writeTrace(_ trace: TraceRecorder, to path: String, quiet: Bool = false) throws {
    do {
        let data = try trace.chromeJSON()
        let out = try OutputFile(path: path, overwrite: true)
        try out.write(Array(data))
        try out.commit()
        if !quiet { printError("wrote \(path): \(trace.events.count) instructions traced") }
    } catch { throw ToolError("\(path): \(error)") }
}
