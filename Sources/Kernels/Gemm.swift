import Dispatch
import CKernels
import KernelsAVX2
import KernelsAVX512

/// The instruction sets our GEMM micro-kernels are written for, best first. `openblas` is the
/// portable fallback (and the reference for speed): every kernel then calls `cblas_sgemm`.
public enum ISA: String, Sendable, CaseIterable, CustomStringConvertible {
    case avx512
    case avx2
    case openblas

    public var description: String { rawValue }

    /// Whether this processor (and its OS) can run the kernels of this set.
    public var isSupported: Bool {
        switch self {
        case .avx512: return CPU.features & UInt32(CK_AVX512) != 0
        case .avx2: return CPU.features & UInt32(CK_AVX2_FMA) != 0
        case .openblas: return true
        }
    }

    /// The best set this processor runs.
    public static var best: ISA { allCases.first { $0.isSupported }! }
}

/// What the processor has, read once with CPUID.
public enum CPU {
    public static let features: UInt32 = ck_cpu_features()

    public static var summary: String {
        var s: [String] = []
        if features & UInt32(CK_AVX2_FMA) != 0 { s.append("AVX2+FMA") }
        if features & UInt32(CK_AVX512) != 0 { s.append("AVX-512") }
        if features & UInt32(CK_AVX512_VNNI) != 0 { s.append("VNNI") }
        if features & UInt32(CK_AVX512_BF16) != 0 { s.append("BF16") }
        return s.isEmpty ? "baseline x86-64" : s.joined(separator: ", ")
    }
}

/// A matrix stored as the micro-kernel reads it: panels of `width` rows of A (or columns of B), each
/// panel `k` groups of `width` values, zero-padded at the last panel. Made once per weight (when a
/// plan's instruction first uses it) so that the GEMMs never repack weights.
public final class PackedMatrix: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    /// Rows (A side) or columns (B side) packed, per group.
    public let extent: Int
    public let k: Int
    public let width: Int
    public let groups: Int
    public var panels: Int { (extent + width - 1) / width }
    public var panelStride: Int { k * width }
    public var groupStride: Int { panels * panelStride }
    public var byteCount: Int { groups * groupStride * 4 }

    init(extent: Int, k: Int, width: Int, groups: Int) {
        self.extent = extent
        self.k = k
        self.width = width
        self.groups = groups
        let count = max(1, groups * ((extent + width - 1) / width) * k * width)
        pointer = .allocate(capacity: count)
    }

    deinit { pointer.deallocate() }

    /// Rows of `a [groups·rows, k]` (row-major, as convolution weights `[oc, ic/g·kh·kw]` are) as A panels.
    public static func rowsOf(_ a: UnsafePointer<Float>, rows: Int, k: Int, groups: Int = 1, width: Int) -> PackedMatrix {
        let p = PackedMatrix(extent: rows, k: k, width: width, groups: groups)
        for g in 0..<groups {
            Gemm.packA(a + g * rows * k, lda: k, transposed: false, rows: 0..<rows, depth: 0..<k, width: width,
                       into: p.pointer + g * p.groupStride)
        }
        return p
    }

    /// Rows of `w [columns, k]` (as linear weights `[out, in]` are) as B panels of `wᵀ`.
    public static func columnsOf(_ w: UnsafePointer<Float>, columns: Int, k: Int, width: Int) -> PackedMatrix {
        let p = PackedMatrix(extent: columns, k: k, width: width, groups: 1)
        Gemm.packB(w, ldb: k, transposed: true, columns: 0..<columns, depth: 0..<k, width: width, into: p.pointer)
        return p
    }
}

/// One operand of a GEMM: a row-major matrix (possibly transposed) packed block by block as the
/// product runs, or panels packed beforehand (first panel at k = 0, `panelStride` apart).
public enum GemmOperand {
    case matrix(UnsafePointer<Float>, ld: Int, transposed: Bool)
    case panels(UnsafePointer<Float>, panelStride: Int)
    /// B only: `pack(dst, depth, columns, width)` writes `B[depth, columns]` as panels of `width`
    /// columns (`dst[(panel·depth.count + p)·width + j]`, zeros past the last column), e.g. a
    /// convolution's im2col straight from the input (implicit GEMM).
    case packer((UnsafeMutablePointer<Float>, Range<Int>, Range<Int>, Int) -> Void)
    /// B only, read in place: `B[p, j] = base[offsets[p] + (j / width)·rowStride + j % width]`, with
    /// `width` a multiple of the micro-kernel's `nr` (a stride-1 convolution's taps in a padded copy
    /// of the input rows: output row `j / width`, column `j % width`).
    case indirect(UnsafePointer<Float>, offsets: UnsafePointer<Int>, width: Int, rowStride: Int)
}

/// Per-thread buffers for the blocks of A and B a GEMM packs, grown on demand and kept for the
/// next product of the same thread.
public final class GemmScratch: @unchecked Sendable {
    private(set) var a: UnsafeMutablePointer<Float>? = nil
    private(set) var b: UnsafeMutablePointer<Float>? = nil
    private var aCount = 0, bCount = 0
    public init() {}
    deinit { a?.deallocate(); b?.deallocate() }

    func aBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > aCount { a?.deallocate(); a = .allocate(capacity: count); aCount = count }
        return a!
    }

    func bBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > bCount { b?.deallocate(); b = .allocate(capacity: count); bCount = count }
        return b!
    }
}

/// Our single-precision GEMM: BLIS-style blocking (`kc` deep blocks of B packed in `nc` columns, A
/// in `mc` rows), a register-blocked micro-kernel per instruction set, edge blocks through a small
/// buffer. Single-threaded: the fused kernels above split their work into fixed tiles and call this
/// once per tile, so results never depend on the thread count. Each element of C is summed in the
/// order k = 0, 1, ... (blocks of `kc`), with fused multiply-adds, on every instruction set.
public struct Gemm: Sendable {
    public static let kc = 2048
    public static let mc = 384
    public static let nc = 384

    public let isa: ISA
    /// Rows of the micro-kernel's block (A panel width) and columns (B panel width).
    public let mr: Int
    public let nr: Int

    public init(_ isa: ISA = .best) {
        precondition(isa.isSupported, "this processor cannot run the \(isa) kernels")
        self.isa = isa
        switch isa {
        case .avx512: (mr, nr) = (sgemmRowsAVX512, sgemmColumnsAVX512)
        case .avx2, .openblas: (mr, nr) = (sgemmRowsAVX2, sgemmColumnsAVX2)
        }
    }

    /// Whether the fused kernels call OpenBLAS instead of our micro-kernels.
    public var usesBLAS: Bool { isa == .openblas }

    /// The attention kernel's online-softmax step over `rows` key rows of `nr` query scores.
    @inline(__always)
    func softmaxColumns(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                        _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>) {
        switch isa {
        case .avx512: softmaxColumns32AVX512(s, rows, runningMax, runningSum, correction)
        default: softmaxColumns16AVX2(s, rows, runningMax, runningSum, correction)
        }
    }

    @inline(__always)
    func indirectMicro(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ offsets: UnsafePointer<Int>,
                       _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
        switch isa {
        case .avx512: sgemmIndirectMicroKernelAVX512(kc, a, b, offsets, c, ldc, accumulate)
        default: sgemmIndirectMicroKernelAVX2(kc, a, b, offsets, c, ldc, accumulate)
        }
    }

    @inline(__always)
    func micro(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
        switch isa {
        case .avx512: sgemmMicroKernelAVX512(kc, a, b, c, ldc, accumulate)
        default: sgemmMicroKernelAVX2(kc, a, b, c, ldc, accumulate)
        }
    }

    /// Row-major `C = op(A)·op(B) (+ C when beta is 1)` with the contract of `BLAS.sgemm` (alpha 1,
    /// beta 0 or 1); OpenBLAS when this engine is `openblas`.
    public func sgemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, scratch: GemmScratch? = nil) {
        precondition(beta == 0 || beta == 1)
        if usesBLAS {
            BLAS.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                       beta: beta, c: c, ldc: ldc)
            return
        }
        run(m: m, n: n, k: k, a: .matrix(a, ld: lda, transposed: transposeA), b: .matrix(b, ld: ldb, transposed: transposeB),
            c: c, ldc: ldc, accumulate: beta == 1, scratch: scratch)
    }

    /// `C[m × n] (+)= A[m × k] · B[k × n]` with either operand packed beforehand (with this engine's
    /// `mr`/`nr`) or packed here.
    public func run(m: Int, n: Int, k: Int, a: GemmOperand, b: GemmOperand, c: UnsafeMutablePointer<Float>, ldc: Int,
                    accumulate: Bool, scratch: GemmScratch? = nil) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).initialize(repeating: 0, count: n) } }
            return
        }
        let s = scratch ?? GemmScratch()
        let (mr, nr) = (self.mr, self.nr)
        let edge = UnsafeMutablePointer<Float>.allocate(capacity: 32 * 32)
        defer { edge.deallocate() }
        var jc = 0
        while jc < n {
            let ncb = min(Gemm.nc, n - jc)
            var pc = 0
            while pc < k {
                let kcb = min(Gemm.kc, k - pc)
                // B block [pc, pc+kcb) × [jc, jc+ncb): panel j at bp + j·bStride.
                var bp = UnsafePointer<Float>(bitPattern: 64)!, bStride = 0
                var indirect: (base: UnsafePointer<Float>, offsets: UnsafePointer<Int>, width: Int, rowStride: Int)? = nil
                switch b {
                case .indirect(let base, let offsets, let width, let rowStride):
                    precondition(width % nr == 0, "indirect B: row width \(width) is not a multiple of \(nr)")
                    indirect = (base, offsets + pc, width, rowStride)
                case .matrix(let ptr, let ld, let t):
                    let buffer = s.bBuffer(min(k, Gemm.kc) * ((min(n, Gemm.nc) + nr - 1) / nr) * nr)
                    Gemm.packB(ptr, ldb: ld, transposed: t, columns: jc..<(jc + ncb), depth: pc..<(pc + kcb), width: nr, into: buffer)
                    (bp, bStride) = (UnsafePointer(buffer), kcb * nr)
                case .panels(let ptr, let stride):
                    (bp, bStride) = (ptr + (jc / nr) * stride + pc * nr, stride)
                case .packer(let pack):
                    let buffer = s.bBuffer(min(k, Gemm.kc) * ((min(n, Gemm.nc) + nr - 1) / nr) * nr)
                    pack(buffer, pc..<(pc + kcb), jc..<(jc + ncb), nr)
                    (bp, bStride) = (UnsafePointer(buffer), kcb * nr)
                }
                let add = accumulate || pc > 0
                var ic = 0
                while ic < m {
                    let mcb = min(Gemm.mc, m - ic)
                    let ap: UnsafePointer<Float>, aStride: Int
                    switch a {
                    case .matrix(let ptr, let ld, let t):
                        let buffer = s.aBuffer(min(k, Gemm.kc) * ((min(m, Gemm.mc) + mr - 1) / mr) * mr)
                        Gemm.packA(ptr, lda: ld, transposed: t, rows: ic..<(ic + mcb), depth: pc..<(pc + kcb), width: mr, into: buffer)
                        (ap, aStride) = (UnsafePointer(buffer), kcb * mr)
                    case .panels(let ptr, let stride):
                        (ap, aStride) = (ptr + (ic / mr) * stride + pc * mr, stride)
                    case .packer, .indirect:
                        preconditionFailure("GemmOperand.packer and .indirect are for B")
                    }
                    // Re-stream the smaller block: with few columns, each A panel stays in cache over all
                    // the B panels; otherwise each B panel stays over all the A panels.
                    @inline(__always) func tile(_ ir: Int, _ jr: Int) {
                        let rows = min(mr, mcb - ir), cols = min(nr, ncb - jr)
                        let apanel = ap + (ir / mr) * aStride
                        let cp = c + (ic + ir) * ldc + jc + jr
                        if let indirect {
                            let j = jc + jr
                            let bpanel = indirect.base + (j / indirect.width) * indirect.rowStride + j % indirect.width
                            if rows == mr {
                                indirectMicro(kcb, apanel, bpanel, indirect.offsets, cp, ldc, add)
                            } else {
                                indirectMicro(kcb, apanel, bpanel, indirect.offsets, edge, nr, false)
                                for r in 0..<rows {
                                    let d = cp + r * ldc, e = edge + r * nr
                                    if add { for j in 0..<cols { d[j] += e[j] } } else { for j in 0..<cols { d[j] = e[j] } }
                                }
                            }
                            return
                        }
                        let bpanel = bp + (jr / nr) * bStride
                        if rows == mr && cols == nr {
                            micro(kcb, apanel, bpanel, cp, ldc, add)
                        } else {
                            micro(kcb, apanel, bpanel, edge, nr, false)
                            for r in 0..<rows {
                                let d = cp + r * ldc, e = edge + r * nr
                                if add { for j in 0..<cols { d[j] += e[j] } } else { for j in 0..<cols { d[j] = e[j] } }
                            }
                        }
                    }
                    if ncb < mcb {
                        for ir in stride(from: 0, to: mcb, by: mr) { for jr in stride(from: 0, to: ncb, by: nr) { tile(ir, jr) } }
                    } else {
                        for jr in stride(from: 0, to: ncb, by: nr) { for ir in stride(from: 0, to: mcb, by: mr) { tile(ir, jr) } }
                    }
                    ic += mcb
                }
                pc += kcb
            }
            jc += ncb
        }
    }

    /// Packs rows `rows` × depth `depth` of A (`a[i·lda + p]`, or `a[p·lda + i]` when transposed)
    /// into panels of `width` rows: `dst[(panel·depth + p)·width + r]`, zeros past the last row.
    static func packA(_ a: UnsafePointer<Float>, lda: Int, transposed: Bool, rows: Range<Int>, depth: Range<Int>, width: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        let kd = depth.count
        var panel = 0, i0 = rows.lowerBound
        while i0 < rows.upperBound {
            let h = min(width, rows.upperBound - i0)
            let d = dst + panel * kd * width
            if transposed {
                for p in 0..<kd {
                    let src = a + (depth.lowerBound + p) * lda + i0, o = d + p * width
                    for r in 0..<h { o[r] = src[r] }
                    for r in h..<width { o[r] = 0 }
                }
            } else {
                for r in 0..<h {
                    let src = a + (i0 + r) * lda + depth.lowerBound
                    for p in 0..<kd { d[p * width + r] = src[p] }
                }
                if h < width { for p in 0..<kd { for r in h..<width { d[p * width + r] = 0 } } }
            }
            panel += 1
            i0 += width
        }
    }

    /// Packs depth `depth` × columns `columns` of B (`b[p·ldb + j]`, or `b[j·ldb + p]` when
    /// transposed) into panels of `width` columns: `dst[(panel·depth + p)·width + j]`, zeros past the last column.
    static func packB(_ b: UnsafePointer<Float>, ldb: Int, transposed: Bool, columns: Range<Int>, depth: Range<Int>, width: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        let kd = depth.count
        var panel = 0, j0 = columns.lowerBound
        while j0 < columns.upperBound {
            let w = min(width, columns.upperBound - j0)
            let d = dst + panel * kd * width
            if transposed {
                for j in 0..<w {
                    let src = b + (j0 + j) * ldb + depth.lowerBound
                    for p in 0..<kd { d[p * width + j] = src[p] }
                }
                if w < width { for p in 0..<kd { for j in w..<width { d[p * width + j] = 0 } } }
            } else {
                for p in 0..<kd {
                    let src = b + (depth.lowerBound + p) * ldb + j0, o = d + p * width
                    o.update(from: src, count: w)
                    if w < width { (o + w).initialize(repeating: 0, count: width - w) }
                }
            }
            panel += 1
            j0 += width
        }
    }
}

extension Gemm {
    /// f32 FMA throughput of this instruction set with `threads` cores busy (register-only loop, the
    /// median of `repeats` runs of about 0.2 s), in flop/s. OpenBLAS has no such loop: it reports the
    /// AVX2 figure.
    public func measurePeak(threads: Int, repeats: Int = 5) -> Double {
        let iterations = 50_000_000
        let lanes = isa == .avx512 ? 16 : 8
        var rates: [Double] = []
        for _ in 0..<repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let isa = self.isa
            DispatchQueue.concurrentPerform(iterations: threads) { i in
                let v = isa == .avx512 ? fmaPeakAVX512(iterations, Float(i)) : fmaPeakAVX2(iterations, Float(i))
                if v.isNaN { print("") }
            }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            rates.append(Double(threads * iterations * 12 * lanes * 2) / dt)
        }
        return rates.sorted()[rates.count / 2]
    }
}
