// The fuzz targets of the readers that face untrusted files: one binary, the target named by its
// first argument (replay) or by DIFFBIR_FUZZ_TARGET (libFuzzer).
//
// Built normally (`swift build`), it replays inputs: `diffbir-fuzz TARGET FILE...` runs each file
// through the target once (CI replays the committed corpus this way). Built for fuzzing
// (`Tools/fuzz.sh`: `-sanitize=fuzzer,address -DFUZZING`), its entry point hands over to
// libFuzzer's driver, which takes libFuzzer's options.
#if canImport(Glibc)
import Glibc
#endif
import Importers
import IR
import Passes
import Pipeline
import Plan
import Tensors

enum Target: String, CaseIterable {
    case safetensors, torch, onnx, png, jpeg, webp, ncnn, plan
    /// A plan's program JSON, wrapped in a plan with right checksums and a zero weight section: the
    /// verifier's own target (a mutated plan file mostly fails its checksums first).
    case program

    /// The file name an input is written to (the readers recognise formats by content, the ncnn
    /// reader by name).
    var fileName: String {
        switch self {
        case .safetensors: return "input.safetensors"
        case .torch: return "input.pt"
        case .onnx: return "input.onnx"
        case .png: return "input.png"
        case .jpeg: return "input.jpg"
        case .webp: return "input.webp"
        case .ncnn: return "input.param"
        case .plan, .program: return "input.plan"
        }
    }
}

/// A directory of this process's (tmpfs where there is one): readers take paths.
let workDirectory: String = {
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    let dir = "\(base)/diffbir-fuzz-\(getpid())"
    mkdir(dir, 0o700)
    return dir
}()

/// A line on standard error.
func complain(_ text: String) {
    let line = Array((text + "\n").utf8)
    _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
}

func write(_ bytes: UnsafeRawBufferPointer, to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return }
    var offset = 0
    while offset < bytes.count {
        let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if n <= 0 { break }
        offset += n
    }
    close(fd)
}

/// Loads the tensors of a checkpoint that are small (their views, strides and storages checked by
/// reading them).
func touch(_ c: Checkpoint) {
    var budget = 1 << 24
    for t in c.tensors where t.byteCount <= budget {
        budget -= t.byteCount
        _ = t.load()
    }
}

/// One input through one target: any error is fine, a crash, hang or runaway allocation is not.
func run(_ target: Target, _ bytes: UnsafeRawBufferPointer) {
    let path = workDirectory + "/" + target.fileName
    switch target {
    case .png:
        _ = try? PNG.decode(bytes, path: "input.png", maxBytes: 64 << 20)
    case .jpeg, .webp:
        _ = try? ImageFile.decode(bytes, path: target.fileName, maxBytes: 64 << 20)
    case .safetensors, .torch:
        write(bytes, to: path)
        if let c = try? Checkpoint.open(path) { touch(c) }
    case .onnx:
        write(bytes, to: path)
        _ = try? ONNXImporter.load(path, options: ONNXImportOptions(evaluator: ReferenceEvaluator()))
    case .ncnn:
        // The .param text, a NUL byte, then the .bin.
        let split = bytes.firstIndex(of: 0) ?? bytes.count
        write(UnsafeRawBufferPointer(rebasing: bytes[0..<split]), to: path)
        let bin = workDirectory + "/input.bin"
        write(split < bytes.count ? UnsafeRawBufferPointer(rebasing: bytes[(split + 1)...]) : UnsafeRawBufferPointer(start: nil, count: 0), to: bin)
        _ = try? NCNNImporter.load(param: path, bin: bin, assumeShapes: true)
    case .plan:
        write(bytes, to: path)
        _ = try? PlanFile(path: path)
    case .program:
        let plan = wrapProgram(bytes)
        plan.withUnsafeBytes { write($0, to: path) }
        _ = try? PlanFile(path: path)
    }
}

/// A plan file around `program` (JSON bytes): header, an empty summary, the program, 64 KB of zero
/// weights, the section table, every checksum right (the layout of `Plan/PlanFile.swift`).
func wrapProgram(_ program: UnsafeRawBufferPointer) -> [UInt8] {
    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func pad(_ b: inout [UInt8], _ alignment: Int) { b += [UInt8](repeating: 0, count: (alignment - b.count % alignment) % alignment) }
    var file = [UInt8](repeating: 0, count: PlanFormat.headerSize)
    var table: [(UInt32, Int, Int, UInt32)] = []
    table.append((PlanFormat.SectionKind.summary.rawValue, file.count, 0, 0))
    let programOffset = file.count
    file += Array(program)
    table.append((PlanFormat.SectionKind.program.rawValue, programOffset, program.count, planCRC32(program)))
    pad(&file, 4096)
    let weights = [UInt8](repeating: 0, count: 1 << 16)
    table.append((PlanFormat.SectionKind.weights.rawValue, file.count, weights.count, weights.withUnsafeBytes { planCRC32($0) }))
    file += weights
    pad(&file, 64)
    let tableOffset = file.count
    var tableBytes: [UInt8] = []
    for (kind, offset, size, crc) in table { tableBytes += le(kind) + le(UInt32(0)) + le(UInt64(offset)) + le(UInt64(size)) + le(crc) + le(UInt32(0)) }
    file += tableBytes
    var header = PlanFormat.magic + le(PlanFormat.version) + le(UInt32(0)) + le(UInt64(file.count)) + le(UInt64(tableOffset)) + le(UInt32(table.count))
    header += le(tableBytes.withUnsafeBytes { planCRC32($0) })
    header += [UInt8](repeating: 0, count: 60 - header.count)
    header += le(header.withUnsafeBytes { planCRC32($0) })
    file.replaceSubrange(0..<64, with: header)
    return file
}

#if FUZZING
typealias TestOneInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: TestOneInput) -> CInt

nonisolated(unsafe) var fuzzTarget = Target.safetensors

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    run(fuzzTarget, UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#endif

@main
struct DiffBIRFuzz {
    static func main() {
        #if FUZZING
        guard let name = getenv("DIFFBIR_FUZZ_TARGET").map({ String(cString: $0) }), let t = Target(rawValue: name) else {
            complain("set DIFFBIR_FUZZ_TARGET to one of: \(Target.allCases.map(\.rawValue).joined(separator: ", "))")
            exit(2)
        }
        fuzzTarget = t
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
        #else
        let args = Array(CommandLine.arguments.dropFirst())
        guard let name = args.first, let target = Target(rawValue: name) else {
            complain("usage: diffbir-fuzz TARGET FILE...   (TARGET: \(Target.allCases.map(\.rawValue).joined(separator: ", ")))")
            exit(2)
        }
        var count = 0
        for file in args.dropFirst() {
            guard let f = try? MappedFile(path: file) else {
                complain("diffbir-fuzz: cannot read \(file)")
                exit(1)
            }
            run(target, f.bytes)
            count += 1
        }
        print("\(target.rawValue): \(count) inputs replayed")
        #endif
    }
}
