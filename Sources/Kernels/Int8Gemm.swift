import Dispatch
import CKernels
import KernelsAVX2
import KernelsVNNI

/// The int8 GEMM that quantised plans (issue 8) build on: `C_s32 = A_s8 · B_u8`, exact in int32.
/// A (the weights, signed) is packed in panels of 12 rows, each step a word of four consecutive k;
/// B (activations, unsigned: symmetric s8 activations plus 128, with the `128·Σ_k A` compensation
/// applied by the caller) in panels of 32 columns. Two micro-kernels read these panels: AVX512-VNNI
/// `vpdpbusd` (u8 × s8 products summed four at a time into int32) and, without VNNI, AVX2 `vpmaddwd`
/// on both sides widened to 16 bits (pairs summed into int32); both exact, no 16-bit saturation.
/// Plans with int8 activations run the blocked variants (`convBlocked`, `linearBlocked`): the same
/// exact int32 sums over blocks of 32 values of k, each scaled by its block's activation scale
/// into f32 (`Int8Convolution`, `Int8Linear`); `multiply` and `timeKernel` keep the plain ones.
public enum Int8Gemm {
    public static let mr = 12
    public static let nr = 32

    /// The micro-kernel an int8 product runs.
    public enum Kernel: String, Sendable, CaseIterable {
        case vnni
        case avx2

        public var isSupported: Bool {
            switch self {
            case .vnni: return CPU.features & UInt32(CK_AVX512_VNNI) != 0
            case .avx2: return CPU.features & UInt32(CK_AVX2_FMA) != 0
            }
        }

        /// VNNI where the processor has it, else AVX2 (nil off x86-64).
        public static var best: Kernel? { allCases.first { $0.isSupported } }

        /// The int8 kernel that goes with an f32 kernel choice (`--isa`): VNNI needs the AVX-512 one.
        public static func matching(_ isa: ISA) -> Kernel? {
            switch isa {
            case .avx512: return best
            case .avx2: return Kernel.avx2.isSupported ? .avx2 : nil
            default: return nil
            }
        }

        /// Whether the kernel takes its unsigned (activation) operand widened to 16 bits: a 64-bit
        /// word of four values per step instead of a 32-bit word of four bytes (AVX2).
        public var widensActivations: Bool { self == .avx2 }

        /// `C[12 × 32] (+)= A_s8 · B_u8` over `ksteps` words of four k; B words of 64 bits when
        /// `widensActivations`.
        @inline(__always)
        func s8u8(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafeRawPointer, _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) {
            switch self {
            case .vnni: s8gemmMicroKernelVNNI(ksteps, a, b.assumingMemoryBound(to: UInt32.self), c, ldc, accumulate)
            case .avx2: s8s16gemmMicroKernelAVX2(ksteps, a, b.assumingMemoryBound(to: UInt64.self), c, ldc, accumulate)
            }
        }

        /// `C[12 × 32] (+)= A_u8 · B_s8` over `ksteps` words of four k; A words of 64 bits when
        /// `widensActivations`.
        @inline(__always)
        func u8s8(_ ksteps: Int, _ a: UnsafeRawPointer, _ b: UnsafePointer<UInt32>, _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) {
            switch self {
            case .vnni: u8s8gemmMicroKernelVNNI(ksteps, a.assumingMemoryBound(to: UInt32.self), b, c, ldc, accumulate)
            case .avx2: u16s8gemmMicroKernelAVX2(ksteps, a.assumingMemoryBound(to: UInt64.self), b, c, ldc, accumulate)
            }
        }

        /// `C[12 × 32] (+)= Σ_blocks scale · (A_u8 · B_s8)` in f32 over `blocks` blocks of `blockSteps`
        /// words of four k (convolutions: weights `w + 128` on A, activations on B; one scale per column
        /// and block); B words of 64 bits (signed 16-bit values) when `widensActivations`.
        @inline(__always)
        func convBlocked(_ blocks: Int, _ blockSteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafeRawPointer, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                         _ scales: UnsafePointer<Float>, _ accumulate: Bool) {
            switch self {
            case .vnni: convBlockedMicroKernelVNNI(blocks, blockSteps, a, b.assumingMemoryBound(to: UInt32.self), c, ldc, scales, accumulate)
            case .avx2: convBlockedMicroKernelAVX2(blocks, blockSteps, a, b.assumingMemoryBound(to: UInt64.self), c, ldc, scales, accumulate)
            }
        }

        /// `C[12 × 32] (+)= Σ_blocks scale · (A_s8 · B_u8)` in f32 (linear layers: activations on A,
        /// one scale per row and block; weights `w + 128` on B); A words of 64 bits when `widensActivations`.
        @inline(__always)
        func linearBlocked(_ blocks: Int, _ blockSteps: Int, _ a: UnsafeRawPointer, _ b: UnsafePointer<UInt32>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                           _ scales: UnsafePointer<Float>, _ accumulate: Bool) {
            switch self {
            case .vnni: linearBlockedMicroKernelVNNI(blocks, blockSteps, a.assumingMemoryBound(to: UInt32.self), b, c, ldc, scales, accumulate)
            case .avx2: linearBlockedMicroKernelAVX2(blocks, blockSteps, a.assumingMemoryBound(to: UInt64.self), b, c, ldc, scales, accumulate)
            }
        }

        /// Steps of k per block of the convolution's B panels: a block stays in L1/L2.
        var blockSteps: Int { self == .avx2 ? 128 : 256 }
    }

    /// Words of four k per block of activation scales, for `steps` words: the largest divisor of
    /// `steps` up to `maximum` (8: blocks of 32 values, the linear layers'; convolutions pass the
    /// words of one tap, so that a block never spans two taps, and `Int8Convolution.blockStepsMaximum`).
    public static func activationBlockSteps(_ steps: Int, maximum: Int = 8) -> Int {
        var d = min(maximum, max(1, steps))
        while steps % d != 0 { d -= 1 }
        return d
    }

    /// Four signed bytes → four signed 16-bit values, in order: int8 activations' words for the AVX2 kernels.
    @inline(__always)
    public static func widenSigned(_ w: UInt32) -> UInt64 {
        let u = widen(w)
        // Bytes ≥ 128 are negative: set the high byte of each such lane.
        let negative = (u & 0x0080_0080_0080_0080) >> 7
        return u | negative &* 0xFF00
    }

    /// Four bytes → four 16-bit values (zero-extended), in order: the activations' words for the AVX2 kernels.
    @inline(__always)
    public static func widen(_ w: UInt32) -> UInt64 {
        var x = UInt64(w)
        x = (x | x << 16) & 0x0000_FFFF_0000_FFFF
        return (x | x << 8) & 0x00FF_00FF_00FF_00FF
    }

    /// Whether the VNNI micro-kernel runs on this processor.
    public static var hasVNNI: Bool { Kernel.vnni.isSupported }

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

    /// B `[k, n]` u8 (row-major, `ldb`) as panels: `dst[(panel·steps + s)·32 + j]` = bytes of rows
    /// 4s..4s+3 of column j (as 16-bit values in 64-bit words when `wide`).
    static func packB(_ b: UnsafePointer<UInt8>, ldb: Int, k: Int, n: Int, into raw: UnsafeMutableRawPointer, wide: Bool) {
        let steps = (k + 3) / 4, panels = (n + nr - 1) / nr
        for panel in 0..<panels {
            for s in 0..<steps {
                let o = (panel * steps + s) * nr
                for j in 0..<nr {
                    let col = panel * nr + j
                    var word: UInt32 = 0
                    if col < n {
                        for q in 0..<4 where 4 * s + q < k { word |= UInt32(b[(4 * s + q) * ldb + col]) << (8 * q) }
                    }
                    if wide { raw.storeBytes(of: widen(word), toByteOffset: 8 * (o + j), as: UInt64.self) } else { raw.storeBytes(of: word, toByteOffset: 4 * (o + j), as: UInt32.self) }
                }
            }
        }
    }

    /// `C[m × n] = A[m × k] · B[k × n]` (int32, row-major `ldc`), single-threaded; `kernel` nil: a plain loop.
    public static func multiply(m: Int, n: Int, k: Int, a: UnsafePointer<Int8>, lda: Int, b: UnsafePointer<UInt8>, ldb: Int,
                                c: UnsafeMutablePointer<Int32>, ldc: Int, kernel: Kernel? = .best) {
        guard m > 0, n > 0 else { return }
        guard let kernel else {
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
        let pb = UnsafeMutableRawPointer.allocate(byteCount: max(1, bPanels * steps * nr) * 8, alignment: 64)
        let edge = UnsafeMutablePointer<Int32>.allocate(capacity: mr * nr)
        defer { pa.deallocate(); pb.deallocate(); edge.deallocate() }
        packA(a, lda: lda, m: m, k: k, into: pa)
        packB(b, ldb: ldb, k: k, n: n, into: pb, wide: kernel.widensActivations)
        let bWord = kernel.widensActivations ? 8 : 4
        for jp in 0..<bPanels {
            let cols = min(nr, n - jp * nr)
            for ip in 0..<aPanels {
                let rows = min(mr, m - ip * mr)
                let cp = c + ip * mr * ldc + jp * nr
                if rows == mr && cols == nr {
                    kernel.s8u8(steps, pa + ip * steps * mr, pb + jp * steps * nr * bWord, cp, ldc, false)
                } else {
                    kernel.s8u8(steps, pa + ip * steps * mr, pb + jp * steps * nr * bWord, edge, nr, false)
                    for r in 0..<rows { for j in 0..<cols { cp[r * ldc + j] = edge[r * nr + j] } }
                }
            }
        }
    }

    /// The micro-kernel alone on packed panels (activations in the kernel's form, weights bytes), as
    /// the convolution drives it: `C[m × n]` over blocks of steps of k, columns split between
    /// `threads`; the median seconds of `runs` (after one warm-up). With `activationBlockSteps`, the
    /// blocked kernel of int8 × int8 convolutions (f32 C, one scale per column and block of that
    /// many steps) instead of the plain int32 one.
    public static func timeKernel(_ kernel: Kernel, m: Int, n: Int, k: Int, threads: Int, runs: Int, activationBlockSteps bs: Int? = nil) -> Double {
        let steps = (k + 3) / 4, kc = kernel.blockSteps
        let aPanels = (m + mr - 1) / mr, bPanels = (n + nr - 1) / nr
        let word = kernel.widensActivations ? 8 : 4
        let pa = UnsafeMutablePointer<UInt32>.allocate(capacity: aPanels * steps * mr)
        let pb = UnsafeMutableRawPointer.allocate(byteCount: bPanels * steps * nr * word, alignment: 64)
        let c = UnsafeMutablePointer<Int32>.allocate(capacity: aPanels * mr * bPanels * nr)
        defer { pa.deallocate(); pb.deallocate(); c.deallocate() }
        for i in 0..<(aPanels * steps * mr) { pa[i] = UInt32(truncatingIfNeeded: i &* 2_654_435_761) }
        for i in 0..<(bPanels * steps * nr) {
            let v = UInt32(truncatingIfNeeded: i &* 2_654_435_761)
            if word == 8 { pb.storeBytes(of: widen(v), toByteOffset: 8 * i, as: UInt64.self) } else { pb.storeBytes(of: v, toByteOffset: 4 * i, as: UInt32.self) }
        }
        let ldc = bPanels * nr
        let blocks = bs.map { steps / $0 } ?? 0
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: max(1, bPanels * blocks * nr))
        scales.initialize(repeating: 1.0 / 1024, count: max(1, bPanels * blocks * nr))
        defer { scales.deallocate() }
        let cf = UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self)
        func once() -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            Parallel.forRanges(bPanels, threads: threads) { range in
                var s0 = 0
                while s0 < steps {
                    let ks = min(kc, steps - s0)
                    for jp in range {
                        for ip in 0..<aPanels {
                            if let bs {
                                let b0 = s0 / bs
                                kernel.convBlocked(ks / bs, bs, pa + (ip * steps + s0) * mr, UnsafeRawPointer(pb + (jp * steps + s0) * nr * word),
                                                   cf + ip * mr * ldc + jp * nr, ldc, scales + (jp * blocks + b0) * nr, s0 > 0)
                            } else {
                                kernel.s8u8(ks, pa + (ip * steps + s0) * mr, UnsafeRawPointer(pb + (jp * steps + s0) * nr * word),
                                            c + ip * mr * ldc + jp * nr, ldc, s0 > 0)
                            }
                        }
                    }
                    s0 += ks
                }
            }
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        _ = once()
        let times = (0..<max(1, runs)).map { _ in once() }.sorted()
        return times[times.count / 2]
    }

    /// int8 operations per second of AVX2 `vpmaddwd` + `vpaddd` (16 multiply-adds) on `threads` cores.
    public static func measurePeakAVX2(threads: Int) -> Double {
        guard Kernel.avx2.isSupported else { return 0 }
        return peak(threads: threads, operationsPerIteration: 12 * 16 * 2) { maddPeakAVX2($0, $1) }
    }

    /// int8 operations per second of `vpdpbusd` on `threads` cores (register-only loop), or 0 without VNNI.
    public static func measurePeak(threads: Int) -> Double {
        guard hasVNNI else { return 0 }
        return peak(threads: threads, operationsPerIteration: 12 * 16 * 4 * 2) { vnniPeak($0, $1) }
    }

    /// The middle of three timings of a register-only `loop(iterations, seed)` on every thread.
    static func peak(threads: Int, operationsPerIteration: Int, _ loop: @escaping @Sendable (Int, Int32) -> Int32) -> Double {
        let iterations = 50_000_000
        var rates: [Double] = []
        for _ in 0..<3 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: threads) { i in
                if loop(iterations, Int32(i)) == 42 { print("") }
            }
            rates.append(Double(threads * iterations * operationsPerIteration) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
        }
        return rates.sorted()[1]
    }
}
