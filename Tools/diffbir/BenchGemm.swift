import ArgumentParser
import Dispatch
import Foundation
import Kernels

/// `diffbir bench-gemm`: the processor's FMA peak and the GEMM throughput of each kernel set.
struct BenchGemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-gemm",
        abstract: "Measure the processor's f32 FMA peak and our GEMM kernels against OpenBLAS.",
        discussion: """
        The peak is a register-only loop of 12 independent FMAs per iteration on every thread (no \
        memory traffic), per instruction set. Each GEMM shape MxNxK is C[M×N] = A[M×K]·B[K×N] as the \
        convolution kernel runs it: A (the weights) packed once beforehand, B packed block by block, \
        the larger of M and N split into one part per thread (as the kernels' tiles split them). \
        OpenBLAS runs the same split with \
        cblas_sgemm single-threaded per part; its kernel set is the one OPENBLAS_CORETYPE selects.
        """
    )

    @Option(help: "Comma-separated shapes MxNxK.")
    var shapes = "320x4096x2880,640x1024x5760,1280x256x11520,4096x320x320,2048x2048x2048"

    @OptionGroup(title: "Threads")
    var threading: ThreadOptions
    var threads: Int { threading.threads }

    @Option(help: "Timed runs per shape (the median is printed).")
    var runs: Int = 5

    @Option(help: "Kernel sets, comma-separated (avx512, avx2, openblas); default: every one this processor runs.")
    var isa: String?

    @Flag(help: "Pack B beforehand too (time the product of packed operands only).")
    var packedColumns = false

    @Flag(help: "Also time the int8 micro-kernels this processor runs (VNNI, AVX2) on packed panels (packing not timed), plain and blocked as int8 x int8 convolutions run them (-blk64: a scale per 64 activations, the convolutions' block), and their peaks.")
    var int8 = false

    @OptionGroup(title: "Output")
    var report: ReportOptions
    var json: Bool { report.json }

    func run() throws {
        let sets: [ISA] = try isa.map { s in
            try s.split(separator: ",").map { name in
                guard let i = ISA(rawValue: String(name)) else { throw ToolError("--isa: unknown kernel set '\(name)' (avx512, avx2, openblas)") }
                guard i.isSupported else { throw ToolError("--isa: this processor cannot run \(i)") }
                return i
            }
        } ?? ISA.allCases.filter(\.isSupported)
        let parsed: [(Int, Int, Int)] = try shapes.split(separator: ",").map { s in
            let d = s.split(separator: "x").compactMap { Int($0) }
            guard d.count == 3, d.allSatisfy({ $0 > 0 }) else { throw ToolError("--shapes: '\(s)' is not MxNxK") }
            return (d[0], d[1], d[2])
        }
        BLAS.setThreads(1)
        var peaks: [String: Double] = [:]
        for s in sets where s != .openblas { peaks[s.rawValue] = Gemm(s).measurePeak(threads: threads) }
        var rows: [[String: Any]] = []
        if !json {
            print("CPU: \(CPU.summary); OpenBLAS kernels: \(BLAS.coreName); \(threads) threads")
            for (k, v) in peaks.sorted(by: { $0.key < $1.key }) { print(String(format: "FMA peak %@: %.1f GFLOP/s", k, v / 1e9)) }
        }
        for (m, n, k) in parsed {
            let a = UnsafeMutablePointer<Float>.allocate(capacity: m * k), b = UnsafeMutablePointer<Float>.allocate(capacity: k * n)
            let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
            defer { a.deallocate(); b.deallocate(); c.deallocate() }
            for i in 0..<(m * k) { a[i] = Float(i % 7) * 0.01 }
            for i in 0..<(k * n) { b[i] = Float(i % 5) * 0.01 }
            // The threads split the larger of M and N, as the kernels' tiles do (convolutions of small
            // images split their output channels): parts of N in multiples of 32, of M in multiples of 48.
            let byRows = m > n
            let part = byRows ? ((m + threads - 1) / threads + 47) / 48 * 48 : ((n + threads - 1) / threads + 31) / 32 * 32
            let parts = ((byRows ? m : n) + part - 1) / part
            for s in sets {
                let gemm = Gemm(s)
                let packed = s == .openblas ? nil : PackedMatrix.rowsOf(a, rows: m, k: k, width: gemm.mr)
                // B packed beforehand too (as the convolution's im2col writes it), one matrix per part.
                let packedB: [PackedMatrix]? = s == .openblas || !packedColumns ? nil : (0..<(byRows ? 1 : parts)).map { t in
                    let j0 = byRows ? 0 : t * part, w = byRows ? n : min(part, n - j0)
                    let bt = UnsafeMutablePointer<Float>.allocate(capacity: w * k)
                    defer { bt.deallocate() }
                    for j in 0..<w { for p in 0..<k { bt[j * k + p] = b[p * n + j0 + j] } }
                    return PackedMatrix.columnsOf(bt, columns: w, k: k, width: gemm.nr)
                }
                let scratch = (0..<parts).map { _ in GemmScratch() }
                func once() -> Double {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    Parallel.forRanges(parts, threads: threads) { range in
                        for t in range {
                        let j0 = byRows ? 0 : t * part, w = byRows ? n : min(part, n - j0)
                        let i0 = byRows ? t * part : 0, h = byRows ? min(part, m - i0) : m
                        let cp = c + i0 * n + j0
                        if let packed {
                            let ap = packed.pointer + (i0 / gemm.mr) * packed.panelStride
                            if let packedB {
                                let pb = packedB[byRows ? 0 : t]
                                gemm.run(m: h, n: w, k: k, a: .panels(ap, panelStride: packed.panelStride),
                                         b: .panels(pb.pointer, panelStride: pb.panelStride), c: cp, ldc: n, accumulate: false, scratch: scratch[t])
                            } else {
                                gemm.run(m: h, n: w, k: k, a: .panels(ap, panelStride: packed.panelStride),
                                         b: .matrix(b + j0, ld: n, transposed: false), c: cp, ldc: n, accumulate: false, scratch: scratch[t])
                            }
                        } else {
                            BLAS.sgemm(m: h, n: w, k: k, a: a + i0 * k, lda: k, b: b + j0, ldb: n, c: cp, ldc: n)
                        }
                        }
                    }
                    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                }
                _ = once()
                let times = (0..<runs).map { _ in once() }.sorted()
                let median = times[times.count / 2]
                let rate = 2.0 * Double(m) * Double(n) * Double(k) / median
                let peak = peaks[ISA.avx512.rawValue] ?? peaks[ISA.avx2.rawValue]
                var row: [String: Any] = ["shape": "\(m)x\(n)x\(k)", "isa": s.rawValue, "median_s": median, "gflops": rate / 1e9]
                if let peak { row["fraction_of_peak"] = rate / peak }
                rows.append(row)
                if !json {
                    print(String(format: "%-18@ %-9@ %9.3f ms  %7.1f GFLOP/s", "\(m)x\(n)x\(k)", s.rawValue, median * 1000, rate / 1e9)
                          + (peak.map { String(format: "  %5.1f%% of the best peak", 100 * rate / $0) } ?? ""))
                }
            }
        }
        if int8 {
            let peak = Int8Gemm.measurePeak(threads: threads)
            let peakAVX2 = Int8Gemm.measurePeakAVX2(threads: threads)
            if !json && peak > 0 { print(String(format: "int8 VNNI peak: %.1f GOP/s", peak / 1e9)) }
            if !json && peakAVX2 > 0 { print(String(format: "int8 AVX2 peak (vpmaddwd + vpaddd): %.1f GOP/s", peakAVX2 / 1e9)) }
            // The micro-kernels on packed panels (as the int8 convolution drives them; packing not timed).
            for kernel in Int8Gemm.Kernel.allCases where kernel.isSupported {
                do {
                    // Plain (int32 sums), then blocked as int8 × int8 convolutions run it (blocks of 64
                    // activations, each block's sum scaled into f32).
                    for ((m, n, k), blocked) in parsed.map({ ($0, false) }) + parsed.map({ ($0, true) }) {
                        let blockSteps = Int8Convolution.blockStepsMaximum
                        if blocked && ((k + 3) / 4) % blockSteps != 0 { continue }
                        let median = Int8Gemm.timeKernel(kernel, m: m, n: n, k: k, threads: threads, runs: runs, activationBlockSteps: blocked ? blockSteps : nil)
                        let rate = 2.0 * Double(m) * Double(n) * Double(k) / median
                        let name = "int8-\(kernel.rawValue)" + (blocked ? "-blk\(4 * blockSteps)" : "")
                        rows.append(["shape": "\(m)x\(n)x\(k)", "isa": name, "median_s": median, "gops": rate / 1e9])
                        if !json {
                            print(String(format: "%-18@ %-14@ %9.3f ms  %7.1f GOP/s", "\(m)x\(n)x\(k)", name, median * 1000, rate / 1e9)
                                  + String(format: "  %5.1f%% of its int8 peak", 100 * rate / (kernel == .vnni ? peak : peakAVX2)))
                        }
                    }
                }
            }
        }
        if json {
            let object: [String: Any] = ["cpu": CPU.summary, "openblas_core": BLAS.coreName, "threads": threads,
                                         "peak_gflops": peaks.mapValues { $0 / 1e9 }, "gemm": rows]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
