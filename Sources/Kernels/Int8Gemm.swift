import Dispatch
import CKernels
import KernelsVNNI

/// The int8 GEMM that quantised plans (issue 8) build on: `C_s32 = A_s8 · B_u8`, exact in int32.
/// A (the weights, signed) is packed in panels of 12 rows, each step a word of four consecutive k;
/// B (activations, unsigned: symmetric s8 activations plus 128, with the `128·Σ_k A` compensation
/// applied by the caller) in panels of 32 columns. The micro-kernel is AVX512-VNNI `vpdpbusd`
/// (u8 × s8 products summed four at a time into int32, no 16-bit saturation); without VNNI a plain
/// loop computes the same numbers (an AVX2 kernel is still to come).
public enum Int8Gemm {
    public static let mr = 12
    public static let nr = 32

    /// Whether the VNNI micro-kernel runs on this processor.
    public static var hasVNNI: Bool { CPU.features & UInt32(CK_AVX512_VNNI) != 0 }

    /// A `[m, k]` s8 (row-major, `lda`) as panels: `dst[(panel·steps + s)·12 + r]` = bytes k = 4s..4s+3 of row r.
    static func packA(_ a: UnsafePointer<Int8>, lda: Int, m: Int, k: Int, into dst: UnsafeMutablePointer<UInt32>) {
        let steps = (k + 3) / 4, panels = (m + mr - 1) / mr
        for panel in 0..<panels {
            for r in 0..<mr {
                let i = panel * mr + r
                for s in 0..<steps {
                    var word: UInt32 = 0
                    if i < m {
                        for q in 0..<4 where 4 * s + q < k { word |= UInt32(UInt8(bitPattern: a[i * lda + 4 * s + q])) << (8 * q) }
                    }
                    dst[(panel * steps + s) * mr + r] = word
                }
            }
        }
    }

    /// B `[k, n]` u8 (row-major, `ldb`) as panels: `dst[(panel·steps + s)·32 + j]` = bytes of rows 4s..4s+3 of column j.
    static func packB(_ b: UnsafePointer<UInt8>, ldb: Int, k: Int, n: Int, into dst: UnsafeMutablePointer<UInt32>) {
        let steps = (k + 3) / 4, panels = (n + nr - 1) / nr
        for panel in 0..<panels {
            for s in 0..<steps {
                let o = dst + (panel * steps + s) * nr
                for j in 0..<nr {
                    let col = panel * nr + j
                    var word: UInt32 = 0
                    if col < n {
                        for q in 0..<4 where 4 * s + q < k { word |= UInt32(b[(4 * s + q) * ldb + col]) << (8 * q) }
                    }
                    o[j] = word
                }
            }
        }
    }

    /// `C[m × n] = A[m × k] · B[k × n]` (int32, row-major `ldc`), single-threaded.
    public static func multiply(m: Int, n: Int, k: Int, a: UnsafePointer<Int8>, lda: Int, b: UnsafePointer<UInt8>, ldb: Int,
                                c: UnsafeMutablePointer<Int32>, ldc: Int, useVNNI: Bool = hasVNNI) {
        guard m > 0, n > 0 else { return }
        guard useVNNI else {
            for i in 0..<m {
                for j in 0..<n {
                    var s: Int32 = 0
                    for p in 0..<k { s &+= Int32(a[i * lda + p]) * Int32(b[p * ldb + j]) }
                    c[i * ldc + j] = s
                }
            }
            return
        }
        let steps = (k + 3) / 4
        let aPanels = (m + mr - 1) / mr, bPanels = (n + nr - 1) / nr
        let pa = UnsafeMutablePointer<UInt32>.allocate(capacity: max(1, aPanels * steps * mr))
        let pb = UnsafeMutablePointer<UInt32>.allocate(capacity: max(1, bPanels * steps * nr))
        let edge = UnsafeMutablePointer<Int32>.allocate(capacity: mr * nr)
        defer { pa.deallocate(); pb.deallocate(); edge.deallocate() }
        packA(a, lda: lda, m: m, k: k, into: pa)
        packB(b, ldb: ldb, k: k, n: n, into: pb)
        for jp in 0..<bPanels {
            let cols = min(nr, n - jp * nr)
            for ip in 0..<aPanels {
                let rows = min(mr, m - ip * mr)
                let cp = c + ip * mr * ldc + jp * nr
                if rows == mr && cols == nr {
                    s8gemmMicroKernelVNNI(steps, pa + ip * steps * mr, pb + jp * steps * nr, cp, ldc, false)
                } else {
                    s8gemmMicroKernelVNNI(steps, pa + ip * steps * mr, pb + jp * steps * nr, edge, nr, false)
                    for r in 0..<rows { for j in 0..<cols { cp[r * ldc + j] = edge[r * nr + j] } }
                }
            }
        }
    }

    /// int8 operations per second of `vpdpbusd` on `threads` cores (register-only loop), or 0 without VNNI.
    public static func measurePeak(threads: Int) -> Double {
        guard hasVNNI else { return 0 }
        let iterations = 50_000_000
        var rates: [Double] = []
        for _ in 0..<3 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: threads) { i in
                if vnniPeak(iterations, Int32(i)) == 42 { print("") }
            }
            rates.append(Double(threads * iterations * 12 * 16 * 4 * 2) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
        }
        return rates.sorted()[1]
    }
}
