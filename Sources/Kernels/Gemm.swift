import Synchronization
import Foundation
import Dispatch
import CKernels
import KernelsAVX2
import KernelsAVX512
import Tensors

/// What the micro-kernels multiply. Panels hold 4-byte words: an f32, or (bf16) the values of k
/// and k+1 in the low and high halves, so that a bf16 GEMM over K runs ⌈K/2⌉ steps.
public enum GemmPrecision: String, Sendable, CaseIterable {
    case f32
    case bf16
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
    /// Panels of int8 or f16 weights (f32 GEMMs only), expanded to f32 block by block as they are
    /// packed: the product equals the f32 product with the dequantised matrix.
    case quantized(QuantizedPanels)
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
    /// f32 products, or bf16 operands with f32 accumulation.
    public let precision: GemmPrecision
    /// Rows of the micro-kernel's block (A panel width) and columns (B panel width).
    public let mr: Int
    public let nr: Int
    /// bf16 with `vdpbf16ps` (AVX512_BF16), or emulated with shifts and FMAs (the AVX2 kernel).
    public let nativeBF16: Bool

    public init(_ isa: ISA = .best, precision: GemmPrecision = .f32) {
        precondition(isa.isSupported, "this processor cannot run the \(isa) kernels")
        self.isa = isa
        self.precision = precision
        nativeBF16 = isa == .avx512 && CPU.features & UInt32(CK_AVX512_BF16) != 0
        switch (isa, precision) {
        case (.avx512, .f32): (mr, nr) = (sgemmRowsAVX512, sgemmColumnsAVX512)
        case (.avx512, .bf16) where nativeBF16: (mr, nr) = (12, 32)
        default: (mr, nr) = (sgemmRowsAVX2, sgemmColumnsAVX2)
        }
    }

    /// The same kernel set for the other precision.
    public func with(_ precision: GemmPrecision) -> Gemm { Gemm(isa, precision: precision) }

    /// Whether the fused kernels call OpenBLAS instead of our micro-kernels.
    public var usesBLAS: Bool { isa == .openblas }

    /// The attention kernel's online-softmax step over `rows` key rows of `nr` query scores (bf16:
    /// scores in base-2 units, a shorter 2^x).
    @inline(__always)
    func softmaxColumns(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                        _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>) {
        switch (isa, precision) {
        case (.avx512, .f32): softmaxColumns32AVX512(s, rows, runningMax, runningSum, correction)
        case (.avx512, .bf16) where nr == 32: softmaxColumns32Base2AVX512(s, rows, runningMax, runningSum, correction)
        case (_, .bf16): softmaxColumns16Base2AVX2(s, rows, runningMax, runningSum, correction)
        default: softmaxColumns16AVX2(s, rows, runningMax, runningSum, correction)
        }
    }

    /// The bf16 online-softmax step writing the probabilities straight as bf16 words (rows 2s and
    /// 2s+1 of `s` in `pairs` row s); false where this kernel set has none (then `softmaxColumns`
    /// and `pairRows`, which give the same numbers).
    @inline(__always)
    func softmaxColumnsToPairs(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                               _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>,
                               _ pairs: UnsafeMutablePointer<Float>) -> Bool {
        guard isa == .avx512, precision == .bf16, nr == 32 else { return false }
        let words = UnsafeMutableRawPointer(pairs).assumingMemoryBound(to: UInt32.self)
        if nativeBF16 {
            // (vcvtne2ps2bf16 rounds and pairs in two instructions where the Swift step takes eleven.)
            ck_softmax_columns32_base2_pairs(s, rows, runningMax, runningSum, correction, words)
        } else {
            softmaxColumns32Base2PairsAVX512(s, rows, runningMax, runningSum, correction, words)
        }
        return true
    }

    @inline(__always)
    func indirectMicro(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ offsets: UnsafePointer<Int>,
                       _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
        if precision == .bf16 {
            bf16Micro(kc, a, b, offsets, c, ldc, accumulate)
            return
        }
        switch isa {
        case .avx512: ck_sgemm_avx512(kc, a, b, offsets, c, ldc, accumulate ? 1 : 0)
        default: sgemmIndirectMicroKernelAVX2(kc, a, b, offsets, c, ldc, accumulate)
        }
    }

    @inline(__always)
    func bf16Micro(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ offsets: UnsafePointer<Int>?,
                   _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
        let (wa, wb) = (UnsafeRawPointer(a).assumingMemoryBound(to: UInt32.self), UnsafeRawPointer(b).assumingMemoryBound(to: UInt32.self))
        if nativeBF16 {
            ck_sbgemm_avx512bf16(kc, wa, wb, offsets, c, ldc, accumulate ? 1 : 0)
        } else {
            sbgemmMicroKernelAVX2(kc, wa, wb, offsets, c, ldc, accumulate)
        }
    }

    /// `micro` when only the first `rows` rows of the A panel (and of C) matter: with native bf16
    /// or AVX-512 f32, a panel's last 4 or 8 rows skip the multiplies of its padding (the same sums;
    /// C's rows past 4 or 8 are left alone).
    @inline(__always)
    func microRows(_ rows: Int, _ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                   _ accumulate: Bool) {
        if rows <= 8, precision == .bf16, nativeBF16 {
            let (wa, wb) = (UnsafeRawPointer(a).assumingMemoryBound(to: UInt32.self), UnsafeRawPointer(b).assumingMemoryBound(to: UInt32.self))
            if rows <= 4 { ck_sbgemm_avx512bf16_rows4(kc, wa, mr, wb, c, ldc, accumulate ? 1 : 0) }
            else { ck_sbgemm_avx512bf16_rows8(kc, wa, mr, wb, c, ldc, accumulate ? 1 : 0) }
            return
        }
        if rows <= 8, precision == .f32, isa == .avx512 {
            if rows <= 4 { ck_sgemm_avx512_rows4(kc, a, mr, b, c, ldc, accumulate ? 1 : 0) }
            else { ck_sgemm_avx512_rows8(kc, a, mr, b, c, ldc, accumulate ? 1 : 0) }
            return
        }
        micro(kc, a, b, c, ldc, accumulate)
    }

    @inline(__always)
    func micro(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
        if precision == .bf16 {
            bf16Micro(kc, a, b, nil, c, ldc, accumulate)
            return
        }
        switch isa {
        case .avx512: ck_sgemm_avx512(kc, a, b, nil, c, ldc, accumulate ? 1 : 0)
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
    /// `mr`/`nr`) or packed here. For bf16, `k` counts steps (pairs of the depth) and `.matrix`
    /// operands are f32 matrices of depth `depth` (default 2k), rounded to bf16 as they are packed.
    public func run(m: Int, n: Int, k: Int, depth: Int? = nil, a: GemmOperand, b: GemmOperand, c: UnsafeMutablePointer<Float>, ldc: Int,
                    accumulate: Bool, scratch: GemmScratch? = nil) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).initialize(repeating: 0, count: n) } }
            return
        }
        let s = scratch ?? GemmScratch()
        let (mr, nr) = (self.mr, self.nr)
        // A row-major A used by several column blocks is packed once, whole.
        if case .matrix(let ptr, let ld, let t) = a, n > Gemm.nc, m * k <= 8 << 20 {
            let panels = (m + mr - 1) / mr
            let whole = s.wholeBuffer(panels * mr * k)
            if precision == .bf16 {
                Gemm.packA16(ptr, lda: ld, transposed: t, rows: 0..<m, steps: 0..<k, depth: depth ?? 2 * k, width: mr, into: whole, isa: isa)
            } else {
                Gemm.packA(ptr, lda: ld, transposed: t, rows: 0..<m, depth: 0..<k, width: mr, into: whole)
            }
            run(m: m, n: n, k: k, a: .panels(whole, panelStride: k * mr), b: b, c: c, ldc: ldc, accumulate: accumulate, scratch: s)
            return
        }
        if case .quantized(let q) = a {
            precondition(precision == .f32, "quantised panels feed f32 GEMMs")
            // Expanded once per call when several column blocks use them, else block by block below.
            if n > Gemm.nc, m * k <= 8 << 20 {
                let panels = (m + mr - 1) / mr
                let whole = s.wholeBuffer(panels * mr * k)
                q.expand(panels: 0..<panels, depth: 0..<k, width: mr, into: whole)
                run(m: m, n: n, k: k, a: .panels(whole, panelStride: k * mr), b: b, c: c, ldc: ldc, accumulate: accumulate, scratch: s)
                return
            }
        }
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
                    if precision == .bf16 {
                        Gemm.packB16(ptr, ldb: ld, transposed: t, columns: jc..<(jc + ncb), steps: pc..<(pc + kcb), depth: depth ?? 2 * k,
                                     width: nr, into: buffer)
                    } else {
                        Gemm.packB(ptr, ldb: ld, transposed: t, columns: jc..<(jc + ncb), depth: pc..<(pc + kcb), width: nr, into: buffer)
                    }
                    (bp, bStride) = (UnsafePointer(buffer), kcb * nr)
                case .panels(let ptr, let stride):
                    (bp, bStride) = (ptr + (jc / nr) * stride + pc * nr, stride)
                case .packer(let pack):
                    let buffer = s.bBuffer(min(k, Gemm.kc) * ((min(n, Gemm.nc) + nr - 1) / nr) * nr)
                    pack(buffer, pc..<(pc + kcb), jc..<(jc + ncb), nr)
                    (bp, bStride) = (UnsafePointer(buffer), kcb * nr)
                case .quantized(let q):
                    precondition(precision == .f32, "quantised panels feed f32 GEMMs")
                    let buffer = s.bBuffer(min(k, Gemm.kc) * ((min(n, Gemm.nc) + nr - 1) / nr) * nr)
                    q.expand(panels: (jc / nr)..<((jc + ncb + nr - 1) / nr), depth: pc..<(pc + kcb), width: nr, into: buffer)
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
                        if precision == .bf16 {
                            Gemm.packA16(ptr, lda: ld, transposed: t, rows: ic..<(ic + mcb), steps: pc..<(pc + kcb), depth: depth ?? 2 * k,
                                         width: mr, into: buffer, isa: isa)
                        } else {
                            Gemm.packA(ptr, lda: ld, transposed: t, rows: ic..<(ic + mcb), depth: pc..<(pc + kcb), width: mr, into: buffer)
                        }
                        (ap, aStride) = (UnsafePointer(buffer), kcb * mr)
                    case .panels(let ptr, let stride):
                        (ap, aStride) = (ptr + (ic / mr) * stride + pc * mr, stride)
                    case .quantized(let q):
                        let buffer = s.aBuffer(min(k, Gemm.kc) * ((min(m, Gemm.mc) + mr - 1) / mr) * mr)
                        q.expand(panels: (ic / mr)..<((ic + mcb + mr - 1) / mr), depth: pc..<(pc + kcb), width: mr, into: buffer)
                        (ap, aStride) = (UnsafePointer(buffer), kcb * mr)
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
                            // (A panel's last rows: 4 or 8 of them where the kernel set has those forms.)
                            microRows(rows, kcb, apanel, bpanel, edge, nr, false)
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

    /// f32 → bf16 bits, rounding to nearest even (a NaN stays a NaN).
    @inline(__always)
    public static func bf16(_ v: Float) -> UInt32 {
        let bits = v.bitPattern
        if bits & 0x7FFF_FFFF > 0x7F80_0000 { return (bits >> 16) | 0x40 }
        return (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16
    }

    /// f32 → bf16 (nearest even) of `count` values: the processor's conversion where it has one.
    public static func convertToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, _ count: Int) {
        if CPU.features & UInt32(CK_AVX512_BF16) != 0 {
            ck_f32_to_bf16_avx512bf16(src, dst, count)
        } else {
            for i in 0..<count { dst[i] = UInt16(truncatingIfNeeded: bf16(src[i])) }
        }
    }

    /// The 16 × 16 block of 32-bit values at `src` (row stride `srcStride`) transposed into `dst`
    /// (AVX-512 only: callers check `isa`).
    @inline(__always)
    static func transpose16x16(_ src: UnsafePointer<Float>, _ srcStride: Int, _ dst: UnsafeMutablePointer<Float>, _ dstStride: Int) {
        transpose16x16AVX512(src, srcStride, dst, dstStride)
    }

    /// `dst[j]` = bf16 words of `r0[j]` (low half) and `r1[j]` (high half, 0 without `r1`), rounded
    /// to nearest even by integer arithmetic (the same bits on every path).
    public static func pairRows(_ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        let words = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: UInt32.self)
        if CPU.features & UInt32(CK_AVX512) != 0 {
            bf16PairRowsAVX512(r0, r1, words, count)
        } else if CPU.features & UInt32(CK_AVX2_FMA) != 0 {
            bf16PairRowsAVX2(r0, r1, words, count)
        } else {
            for j in 0..<count { dst[j] = bf16Pair(r0[j], r1?[j] ?? 0) }
        }
    }

    /// A word of two bf16 values: `low` in the low half (depth k), `high` in the high half (k+1).
    @inline(__always)
    public static func bf16Pair(_ low: Float, _ high: Float) -> Float {
        Float(bitPattern: bf16(low) | (bf16(high) << 16))
    }

    /// `packA` for bf16: rows × steps (pairs of the depth, which is `depth` long; past it, zeros).
    static func packA16(_ a: UnsafePointer<Float>, lda: Int, transposed: Bool, rows: Range<Int>, steps: Range<Int>, depth: Int, width: Int,
                        into dst: UnsafeMutablePointer<Float>, isa: ISA) {
        // Aᵀ row-major is B: pairs of its rows become words, vectorised (`pairRows`), straight into the panels.
        if transposed {
            packB16(a, ldb: lda, transposed: false, columns: rows, steps: steps, depth: depth, width: width, into: dst)
            return
        }
        let ks = steps.count
        // (`isa`: the calling kernel set's, so that a forced AVX2 run takes the portable path.)
        if width <= 16, ks > 0, isa == .avx512 {
            // A panel's rows rounded to words into a tile (a row of words each, zeros past the depth
            // and for absent rows), then sixteen steps at a time transposed into the panel.
            let ksPad = (ks + 15) / 16 * 16
            let tile = UnsafeMutablePointer<Float>.allocate(capacity: width * ksPad)
            defer { tile.deallocate() }
            let k0 = 2 * steps.lowerBound, count = max(0, min(2 * ks, depth - k0))
            var panel = 0, i0 = rows.lowerBound
            while i0 < rows.upperBound {
                let h = min(width, rows.upperBound - i0)
                for r in 0..<width {
                    let t = tile + r * ksPad
                    if r >= h { t.initialize(repeating: 0, count: ksPad); continue }
                    let t16 = UnsafeMutableRawPointer(t).assumingMemoryBound(to: UInt16.self)
                    convertToBF16(a + (i0 + r) * lda + k0, t16, count)
                    if count < 2 * ksPad { (t16 + count).initialize(repeating: 0, count: 2 * ksPad - count) }
                }
                let d = dst + panel * ks * width
                for sb in stride(from: 0, to: ks, by: 16) {
                    transposeIntoPanelAVX512(tile + sb, ksPad, d + sb * width, width: width, count: min(16, ks - sb))
                }
                panel += 1
                i0 += width
            }
            return
        }
        // A row's bf16 values in order are its words (k in the low half, k+1 in the high half).
        let row16 = transposed ? nil : UnsafeMutablePointer<UInt16>.allocate(capacity: 2 * ks)
        defer { row16?.deallocate() }
        var panel = 0, i0 = rows.lowerBound
        while i0 < rows.upperBound {
            let h = min(width, rows.upperBound - i0)
            let d = dst + panel * ks * width
            for r in 0..<width {
                if r >= h { for p in 0..<ks { d[p * width + r] = 0 }; continue }
                if let row16 {
                    let k0 = 2 * steps.lowerBound, count = max(0, min(2 * ks, depth - k0))
                    convertToBF16(a + (i0 + r) * lda + k0, row16, count)
                    if count < 2 * ks { (row16 + count).initialize(repeating: 0, count: 2 * ks - count) }
                    let words = UnsafeRawPointer(row16).assumingMemoryBound(to: Float.self)
                    for p in 0..<ks { d[p * width + r] = words[p] }
                    continue
                }
                let i = i0 + r
                for p in 0..<ks {
                    let k0 = 2 * (steps.lowerBound + p), k1 = k0 + 1
                    let x0: Float = k0 < depth ? (transposed ? a[k0 * lda + i] : a[i * lda + k0]) : 0
                    let x1: Float = k1 < depth ? (transposed ? a[k1 * lda + i] : a[i * lda + k1]) : 0
                    d[p * width + r] = bf16Pair(x0, x1)
                }
            }
            panel += 1
            i0 += width
        }
    }

    /// `packB` for bf16: steps (pairs of the depth, `depth` long) × columns.
    static func packB16(_ b: UnsafePointer<Float>, ldb: Int, transposed: Bool, columns: Range<Int>, steps: Range<Int>, depth: Int, width: Int,
                        into dst: UnsafeMutablePointer<Float>) {
        let ks = steps.count
        var panel = 0, j0 = columns.lowerBound
        while j0 < columns.upperBound {
            let w = min(width, columns.upperBound - j0)
            let d = dst + panel * ks * width
            for p in 0..<ks {
                let k0 = 2 * (steps.lowerBound + p), k1 = k0 + 1
                let o = d + p * width
                if transposed {
                    for j in 0..<w {
                        let row = b + (j0 + j) * ldb
                        o[j] = bf16Pair(k0 < depth ? row[k0] : 0, k1 < depth ? row[k1] : 0)
                    }
                } else {
                    let r0 = b + k0 * ldb + j0, r1 = b + k1 * ldb + j0
                    pairRows(r0, k1 < depth ? r1 : nil, o, w)
                }
                for j in w..<width { o[j] = 0 }
            }
            panel += 1
            j0 += width
        }
    }

    /// Packs rows `rows` × depth `depth` of A (`a[i·lda + p]`, or `a[p·lda + i]` when transposed)
    /// into panels of `width` rows: `dst[(panel·depth + p)·width + r]`, zeros past the last row.
    static func packA(_ a: UnsafePointer<Float>, lda: Int, transposed: Bool, rows: Range<Int>, depth: Range<Int>, width: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        // A's rows are the columns of Aᵀ: the same panels as packing B = Aᵀ.
        packB(a, ldb: lda, transposed: !transposed, columns: rows, depth: depth, width: width, into: dst)
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
                // Step by step across the panel's columns: contiguous writes, `w` read streams.
                var columnsBase = [UnsafePointer<Float>](repeating: b, count: width)
                for j in 0..<w { columnsBase[j] = b + (j0 + j) * ldb + depth.lowerBound }
                columnsBase.withUnsafeBufferPointer { src in
                    for p in 0..<kd {
                        let o = d + p * width
                        for j in 0..<w { o[j] = src[j][p] }
                        for j in w..<width { o[j] = 0 }
                    }
                }
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

