// Built with `-target-cpu skylake-avx512` (AVX-512 F/CD/BW/DQ/VL): call only after `CPU.features`
// says the processor has them (Kernels/Gemm.swift dispatches).
// x86-64 only (the package still builds elsewhere, with OpenBLAS as the only GEMM).
#if arch(x86_64)
import _Builtin_intrinsics.intel

/// Rows × columns of the f32 micro-kernel's block of C (`ck_sgemm_avx512`), and the A/B panel widths it reads.
public let sgemmRowsAVX512 = 12
public let sgemmColumnsAVX512 = 32

// (The f32 micro-kernel itself is `ck_sgemm_avx512` in CKernels/sgemm.c: C for its software
// prefetches, which Swift cannot emit.)

/// Runs `iterations` × 12 independent zmm FMAs (no memory traffic) and returns a value that depends
/// on them: `12 · 32 · iterations` flops, the processor's f32 FMA peak on one core.
@inline(never)
public func fmaPeakAVX512(_ iterations: Int, _ seed: Float) -> Float {
    let m = _mm512_set1_ps(0.999999), a = _mm512_set1_ps(1e-7)
    var c0 = _mm512_set1_ps(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0
    var c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0
    for _ in 0..<iterations {
        c0 = _mm512_fmadd_ps(c0, m, a); c1 = _mm512_fmadd_ps(c1, m, a); c2 = _mm512_fmadd_ps(c2, m, a)
        c3 = _mm512_fmadd_ps(c3, m, a); c4 = _mm512_fmadd_ps(c4, m, a); c5 = _mm512_fmadd_ps(c5, m, a)
        c6 = _mm512_fmadd_ps(c6, m, a); c7 = _mm512_fmadd_ps(c7, m, a); c8 = _mm512_fmadd_ps(c8, m, a)
        c9 = _mm512_fmadd_ps(c9, m, a); c10 = _mm512_fmadd_ps(c10, m, a); c11 = _mm512_fmadd_ps(c11, m, a)
    }
    let s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)), _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)))
    return _mm512_reduce_add_ps(_mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11))))
}

/// e^x for 16 lanes (Cephes' single-precision polynomial on x − n·ln 2, scaled by 2^n with
/// `vscalefps`): relative error about 2 ulp; −∞ gives 0.
@inline(__always)
func exp16(_ v: __m512) -> __m512 {
    let x = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-103.972)), _mm512_set1_ps(88.7228))
    let magic = _mm512_set1_ps(12582912)  // 1.5·2²³: adding and subtracting it rounds to an integer
    let n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341)), magic), magic)
    var r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375), x)
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4), r)
    var p = _mm512_set1_ps(1.9875691500e-4)
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3))
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3))
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2))
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1))
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1))
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1)))
    return _mm512_scalef_ps(p, n)
}

/// One key tile of the online softmax, in the transposed layout of the attention kernel: `s` holds
/// `rows` keys × 32 queries of scores. Updates each query's running maximum and sum, replaces the
/// scores by e^(score − maximum) and writes each query's correction e^(old maximum − new maximum).
@inline(never)
public func softmaxColumns32AVX512(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                                   _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>) {
    softmaxColumns32(s, rows, runningMax, runningSum, correction, exp16)
}

/// The same with scores in base-2 units (the queries were scaled by log₂e) and a shorter 2^x (relative
/// error ~4e-5): for bf16 attention, whose probabilities are rounded to bf16 (2⁻⁹) anyway.
@inline(never)
public func softmaxColumns32Base2AVX512(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                                        _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>) {
    softmaxColumns32(s, rows, runningMax, runningSum, correction, exp2Short16)
}

/// `softmaxColumns32Base2AVX512`, with the probabilities written as the bf16 kernels' words
/// (`pairs[(r/2)·32 + j]`: row r in the low half, row r+1 in the high half, 0 past the last row)
/// instead of back into `s`: the same numbers as that step followed by `bf16PairRowsAVX512`, in one
/// pass.
@inline(never)
public func softmaxColumns32Base2PairsAVX512(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                                             _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>,
                                             _ pairs: UnsafeMutablePointer<UInt32>) {
    let b = softmaxBases32(s, rows, runningMax)
    let one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7FFF), high = _mm512_set1_epi32(Int32(bitPattern: 0xFFFF_0000))
    @inline(__always) func rounded(_ v: __m512) -> __m512i {
        let w = _mm512_castps_si512(v)
        return _mm512_add_epi32(_mm512_add_epi32(w, bias), _mm512_and_si512(_mm512_srli_epi32(w, 16), one))
    }
    var sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps()
    var r = 0
    while r < rows {
        let p = s + r * 32
        let e0 = exp2Short16(_mm512_sub_ps(_mm512_loadu_ps(p), b.base0)), e1 = exp2Short16(_mm512_sub_ps(_mm512_loadu_ps(p + 16), b.base1))
        sum0 = _mm512_add_ps(sum0, e0)
        sum1 = _mm512_add_ps(sum1, e1)
        var w0 = _mm512_srli_epi32(rounded(e0), 16), w1 = _mm512_srli_epi32(rounded(e1), 16)
        if r + 1 < rows {
            let q = p + 32
            let f0 = exp2Short16(_mm512_sub_ps(_mm512_loadu_ps(q), b.base0)), f1 = exp2Short16(_mm512_sub_ps(_mm512_loadu_ps(q + 16), b.base1))
            sum0 = _mm512_add_ps(sum0, f0)
            sum1 = _mm512_add_ps(sum1, f1)
            w0 = _mm512_or_si512(w0, _mm512_and_si512(rounded(f0), high))
            w1 = _mm512_or_si512(w1, _mm512_and_si512(rounded(f1), high))
        }
        let d = UnsafeMutableRawPointer(pairs + (r / 2) * 32)
        _mm512_storeu_si512(d, w0)
        _mm512_storeu_si512(d + 64, w1)
        r += 2
    }
    softmaxFinish32(b, sum0, sum1, runningMax, runningSum, correction, exp2Short16)
}

/// 2^x for 16 lanes: x − round(x) through a degree-4 polynomial, scaled with `vscalefps`.
@inline(__always)
func exp2Short16(_ v: __m512) -> __m512 {
    let x = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-150)), _mm512_set1_ps(128))
    let magic = _mm512_set1_ps(12582912)
    let n = _mm512_sub_ps(_mm512_add_ps(x, magic), magic)
    let f = _mm512_sub_ps(x, n)
    var p = _mm512_set1_ps(9.6181291e-3)
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2))
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1))
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1))
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1))
    return _mm512_scalef_ps(p, n)
}

@inline(__always)
func softmaxColumns32(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                      _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>, _ exp16: (__m512) -> __m512) {
    let b = softmaxBases32(s, rows, runningMax)
    var sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps()
    for r in 0..<rows {
        let p = s + r * 32
        let e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(p), b.base0)), e1 = exp16(_mm512_sub_ps(_mm512_loadu_ps(p + 16), b.base1))
        _mm512_storeu_ps(p, e0)
        _mm512_storeu_ps(p + 16, e1)
        sum0 = _mm512_add_ps(sum0, e0)
        sum1 = _mm512_add_ps(sum1, e1)
    }
    softmaxFinish32(b, sum0, sum1, runningMax, runningSum, correction, exp16)
}

/// The online softmax's running maxima after `rows` more rows of 32 scores, the previous maxima,
/// and the base each exponent subtracts (0 for a query whose scores are all −∞ so far: its terms
/// are all 0; m + FLT_MAX is negative only for −∞, and its sign bit selects).
@inline(__always)
func softmaxBases32(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>)
    -> (m0: __m512, m1: __m512, old0: __m512, old1: __m512, base0: __m512, base1: __m512) {
    var m0 = _mm512_loadu_ps(runningMax), m1 = _mm512_loadu_ps(runningMax + 16)
    let old0 = m0, old1 = m1
    for r in 0..<rows {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + r * 32))
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(s + r * 32 + 16))
    }
    let big = _mm512_set1_ps(Float.greatestFiniteMagnitude), zero = _mm512_setzero_ps()
    let base0 = _mm512_mask_blend_ps(_mm512_movepi32_mask(_mm512_castps_si512(_mm512_add_ps(m0, big))), m0, zero)
    let base1 = _mm512_mask_blend_ps(_mm512_movepi32_mask(_mm512_castps_si512(_mm512_add_ps(m1, big))), m1, zero)
    return (m0, m1, old0, old1, base0, base1)
}

/// Stores the correction of the previous terms, the running sums and the new maxima.
@inline(__always)
func softmaxFinish32(_ b: (m0: __m512, m1: __m512, old0: __m512, old1: __m512, base0: __m512, base1: __m512), _ sum0: __m512, _ sum1: __m512,
                     _ runningMax: UnsafeMutablePointer<Float>, _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>,
                     _ exp16: (__m512) -> __m512) {
    let c0 = exp16(_mm512_sub_ps(b.old0, b.base0)), c1 = exp16(_mm512_sub_ps(b.old1, b.base1))
    _mm512_storeu_ps(correction, c0)
    _mm512_storeu_ps(correction + 16, c1)
    _mm512_storeu_ps(runningSum, _mm512_fmadd_ps(_mm512_loadu_ps(runningSum), c0, sum0))
    _mm512_storeu_ps(runningSum + 16, _mm512_fmadd_ps(_mm512_loadu_ps(runningSum + 16), c1, sum1))
    _mm512_storeu_ps(runningMax, b.m0)
    _mm512_storeu_ps(runningMax + 16, b.m1)
}

/// `dst[j]` = the bf16 values of `r0[j]` (low half) and `r1[j]` (high half; 0 without `r1`), rounded
/// to nearest even, for `count` columns: two rows of f32 as one row of the bf16 kernels' words.
@inline(never)
public func bf16PairRowsAVX512(_ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<UInt32>, _ count: Int) {
    let one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7FFF), high = _mm512_set1_epi32(Int32(bitPattern: 0xFFFF_0000))
    @inline(__always) func rounded(_ v: __m512i) -> __m512i {
        _mm512_add_epi32(_mm512_add_epi32(v, bias), _mm512_and_si512(_mm512_srli_epi32(v, 16), one))
    }
    var j = 0
    while j + 16 <= count {
        let lo = _mm512_srli_epi32(rounded(_mm512_castps_si512(_mm512_loadu_ps(r0 + j))), 16)
        var word = lo
        if let r1 { word = _mm512_or_si512(lo, _mm512_and_si512(rounded(_mm512_castps_si512(_mm512_loadu_ps(r1 + j))), high)) }
        _mm512_storeu_si512(UnsafeMutableRawPointer(dst + j), word)
        j += 16
    }
    while j < count {
        let a = r0[j].bitPattern, b = r1?[j].bitPattern ?? 0
        let ra = (a &+ 0x7FFF &+ ((a >> 16) & 1)) >> 16, rb = r1 == nil ? 0 : (b &+ 0x7FFF &+ ((b >> 16) & 1)) & 0xFFFF_0000
        dst[j] = ra | rb
        j += 1
    }
}
#endif

#if arch(x86_64)
/// GELU (erf form) in place over `count` floats, sixteen at a time (`gelu16`).
public func geluInPlaceAVX512(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
    var i = 0
    while i + 16 <= count {
        let r = UnsafeMutableRawPointer(p + i)
        r.storeBytes(of: gelu16(r.loadUnaligned(as: SIMD16<Float>.self)), as: SIMD16<Float>.self)
        i += 16
    }
    if i < count {
        var t = SIMD16<Float>()
        withUnsafeMutableBytes(of: &t) { $0.copyMemory(from: UnsafeRawBufferPointer(start: p + i, count: (count - i) * 4)) }
        t = gelu16(t)
        withUnsafeBytes(of: &t) { UnsafeMutableRawPointer(p + i).copyMemory(from: $0.baseAddress!, byteCount: (count - i) * 4) }
    }
}

/// GEGLU's combination in one pass: `dst[j] = (a[j] + biasA[j]) · gelu(g[j] + biasG[j])` (no add
/// where a bias is nil), sixteen at a time; per element the operations of the separate bias add,
/// `geluInPlaceAVX512` and product, so the same bits.
public func gegluCombineAVX512(_ a: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ biasA: UnsafePointer<Float>?,
                               _ biasG: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
    @inline(__always) func load(_ p: UnsafePointer<Float>, _ i: Int, _ n: Int) -> SIMD16<Float> {
        if n == 16 { return UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self) }
        var t = SIMD16<Float>()
        withUnsafeMutableBytes(of: &t) { $0.copyMemory(from: UnsafeRawBufferPointer(start: p + i, count: n * 4)) }
        return t
    }
    @inline(__always) func step(_ i: Int, _ n: Int) {
        var av = load(a, i, n), gv = load(g, i, n)
        if let biasA { av = av + load(biasA, i, n) }
        if let biasG { gv = gv + load(biasG, i, n) }
        var d = gelu16(gv) * av
        if n == 16 {
            UnsafeMutableRawPointer(dst + i).storeBytes(of: d, as: SIMD16<Float>.self)
        } else {
            withUnsafeBytes(of: &d) { UnsafeMutableRawPointer(dst + i).copyMemory(from: $0.baseAddress!, byteCount: n * 4) }
        }
    }
    var i = 0
    while i + 16 <= count { step(i, 16); i += 16 }
    if i < count { step(i, count - i) }
}

/// GELU (erf form) on sixteen lanes: the same rational erf and the same operations in the same order
/// as the eight-lane `VectorMath.gelu`, so both give the same bits.
@inline(__always) func gelu16(_ v: SIMD16<Float>) -> SIMD16<Float> {
    var x = v * 0.70710678118654752
    x = x.replacing(with: -4, where: x .< -4)
    x = x.replacing(with: 4, where: x .> 4)
    let x2 = x * x
    var a = SIMD16<Float>(repeating: -2.72614225801306e-10)
    a = a * x2 + 2.77068142495902e-08
    a = a * x2 + -2.10102402082508e-06
    a = a * x2 + -5.69250639462346e-05
    a = a * x2 + -7.34990630326855e-04
    a = a * x2 + -2.95459980854025e-03
    a = a * x2 + -1.60960333262415e-02
    var b = SIMD16<Float>(repeating: -1.45660718464996e-05)
    b = b * x2 + -2.13374055278905e-04
    b = b * x2 + -1.68282697438203e-03
    b = b * x2 + -7.37332916720468e-03
    b = b * x2 + -1.42647390514189e-02
    return 0.5 * v * (1 + x * a / b)
}
#endif

#if arch(x86_64)
/// The 16 × 16 block of 32-bit values at `src` (row stride `srcStride`) transposed into `dst` (row
/// stride `dstStride`). Values are moved, never computed on: any bit pattern (bf16 words too) comes
/// out unchanged.
public func transpose16x16AVX512(_ src: UnsafePointer<Float>, _ srcStride: Int, _ dst: UnsafeMutablePointer<Float>, _ dstStride: Int) {
    var r0 = _mm512_loadu_ps(src + 0 * srcStride)
    var r1 = _mm512_loadu_ps(src + 1 * srcStride)
    var r2 = _mm512_loadu_ps(src + 2 * srcStride)
    var r3 = _mm512_loadu_ps(src + 3 * srcStride)
    var r4 = _mm512_loadu_ps(src + 4 * srcStride)
    var r5 = _mm512_loadu_ps(src + 5 * srcStride)
    var r6 = _mm512_loadu_ps(src + 6 * srcStride)
    var r7 = _mm512_loadu_ps(src + 7 * srcStride)
    var r8 = _mm512_loadu_ps(src + 8 * srcStride)
    var r9 = _mm512_loadu_ps(src + 9 * srcStride)
    var r10 = _mm512_loadu_ps(src + 10 * srcStride)
    var r11 = _mm512_loadu_ps(src + 11 * srcStride)
    var r12 = _mm512_loadu_ps(src + 12 * srcStride)
    var r13 = _mm512_loadu_ps(src + 13 * srcStride)
    var r14 = _mm512_loadu_ps(src + 14 * srcStride)
    var r15 = _mm512_loadu_ps(src + 15 * srcStride)
    transpose16(&r0, &r1, &r2, &r3, &r4, &r5, &r6, &r7, &r8, &r9, &r10, &r11, &r12, &r13, &r14, &r15)
    _mm512_storeu_ps(dst + 0 * dstStride, r0)
    _mm512_storeu_ps(dst + 1 * dstStride, r1)
    _mm512_storeu_ps(dst + 2 * dstStride, r2)
    _mm512_storeu_ps(dst + 3 * dstStride, r3)
    _mm512_storeu_ps(dst + 4 * dstStride, r4)
    _mm512_storeu_ps(dst + 5 * dstStride, r5)
    _mm512_storeu_ps(dst + 6 * dstStride, r6)
    _mm512_storeu_ps(dst + 7 * dstStride, r7)
    _mm512_storeu_ps(dst + 8 * dstStride, r8)
    _mm512_storeu_ps(dst + 9 * dstStride, r9)
    _mm512_storeu_ps(dst + 10 * dstStride, r10)
    _mm512_storeu_ps(dst + 11 * dstStride, r11)
    _mm512_storeu_ps(dst + 12 * dstStride, r12)
    _mm512_storeu_ps(dst + 13 * dstStride, r13)
    _mm512_storeu_ps(dst + 14 * dstStride, r14)
    _mm512_storeu_ps(dst + 15 * dstStride, r15)
}

/// The first `count` (≤ 16) rows of the transpose of the 16 × 16 block at `src` (row stride
/// `srcStride`; only its first `width` rows are used) into `dst`, `width` (≤ 16) values a row, rows
/// `width` apart: sixteen steps of a packed panel `width` wide from `width` rows of words.
public func transposeIntoPanelAVX512(_ src: UnsafePointer<Float>, _ srcStride: Int, _ dst: UnsafeMutablePointer<Float>, width: Int, count: Int) {
    var r0 = 0 < width ? _mm512_loadu_ps(src + 0 * srcStride) : _mm512_setzero_ps()
    var r1 = 1 < width ? _mm512_loadu_ps(src + 1 * srcStride) : _mm512_setzero_ps()
    var r2 = 2 < width ? _mm512_loadu_ps(src + 2 * srcStride) : _mm512_setzero_ps()
    var r3 = 3 < width ? _mm512_loadu_ps(src + 3 * srcStride) : _mm512_setzero_ps()
    var r4 = 4 < width ? _mm512_loadu_ps(src + 4 * srcStride) : _mm512_setzero_ps()
    var r5 = 5 < width ? _mm512_loadu_ps(src + 5 * srcStride) : _mm512_setzero_ps()
    var r6 = 6 < width ? _mm512_loadu_ps(src + 6 * srcStride) : _mm512_setzero_ps()
    var r7 = 7 < width ? _mm512_loadu_ps(src + 7 * srcStride) : _mm512_setzero_ps()
    var r8 = 8 < width ? _mm512_loadu_ps(src + 8 * srcStride) : _mm512_setzero_ps()
    var r9 = 9 < width ? _mm512_loadu_ps(src + 9 * srcStride) : _mm512_setzero_ps()
    var r10 = 10 < width ? _mm512_loadu_ps(src + 10 * srcStride) : _mm512_setzero_ps()
    var r11 = 11 < width ? _mm512_loadu_ps(src + 11 * srcStride) : _mm512_setzero_ps()
    var r12 = 12 < width ? _mm512_loadu_ps(src + 12 * srcStride) : _mm512_setzero_ps()
    var r13 = 13 < width ? _mm512_loadu_ps(src + 13 * srcStride) : _mm512_setzero_ps()
    var r14 = 14 < width ? _mm512_loadu_ps(src + 14 * srcStride) : _mm512_setzero_ps()
    var r15 = 15 < width ? _mm512_loadu_ps(src + 15 * srcStride) : _mm512_setzero_ps()
    transpose16(&r0, &r1, &r2, &r3, &r4, &r5, &r6, &r7, &r8, &r9, &r10, &r11, &r12, &r13, &r14, &r15)
    let mask = __mmask16(truncatingIfNeeded: (1 << width) - 1)
    let rows = (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15)
    withUnsafeBytes(of: rows) { b in
        let v = b.baseAddress!.assumingMemoryBound(to: __m512.self)
        for i in 0..<count { _mm512_mask_storeu_ps(dst + i * width, mask, v[i]) }
    }
}

/// Sixteen rows of sixteen 32-bit values transposed in registers: four rounds of two-source
/// permutes, round k exchanging bit k of the row index with bit k of the column index (rows i and
/// i + 2ᵏ; a column j with bit k clear takes row i's value at j in the first and at j + 2ᵏ in the
/// second, one with bit k set row i + 2ᵏ's at j − 2ᵏ and j).
@inline(__always)
func transpose16(_ r0: inout __m512, _ r1: inout __m512, _ r2: inout __m512, _ r3: inout __m512, _ r4: inout __m512, _ r5: inout __m512, _ r6: inout __m512, _ r7: inout __m512, _ r8: inout __m512, _ r9: inout __m512, _ r10: inout __m512, _ r11: inout __m512, _ r12: inout __m512, _ r13: inout __m512, _ r14: inout __m512, _ r15: inout __m512) {
    do {  // round 0: rows i and i + 1
        let lo = _mm512_set_epi32(30, 14, 28, 12, 26, 10, 24, 8, 22, 6, 20, 4, 18, 2, 16, 0)
        let hi = _mm512_set_epi32(31, 15, 29, 13, 27, 11, 25, 9, 23, 7, 21, 5, 19, 3, 17, 1)
        (r0, r1) = (_mm512_permutex2var_ps(r0, lo, r1), _mm512_permutex2var_ps(r0, hi, r1))
        (r2, r3) = (_mm512_permutex2var_ps(r2, lo, r3), _mm512_permutex2var_ps(r2, hi, r3))
        (r4, r5) = (_mm512_permutex2var_ps(r4, lo, r5), _mm512_permutex2var_ps(r4, hi, r5))
        (r6, r7) = (_mm512_permutex2var_ps(r6, lo, r7), _mm512_permutex2var_ps(r6, hi, r7))
        (r8, r9) = (_mm512_permutex2var_ps(r8, lo, r9), _mm512_permutex2var_ps(r8, hi, r9))
        (r10, r11) = (_mm512_permutex2var_ps(r10, lo, r11), _mm512_permutex2var_ps(r10, hi, r11))
        (r12, r13) = (_mm512_permutex2var_ps(r12, lo, r13), _mm512_permutex2var_ps(r12, hi, r13))
        (r14, r15) = (_mm512_permutex2var_ps(r14, lo, r15), _mm512_permutex2var_ps(r14, hi, r15))
    }
    do {  // round 1: rows i and i + 2
        let lo = _mm512_set_epi32(29, 28, 13, 12, 25, 24, 9, 8, 21, 20, 5, 4, 17, 16, 1, 0)
        let hi = _mm512_set_epi32(31, 30, 15, 14, 27, 26, 11, 10, 23, 22, 7, 6, 19, 18, 3, 2)
        (r0, r2) = (_mm512_permutex2var_ps(r0, lo, r2), _mm512_permutex2var_ps(r0, hi, r2))
        (r1, r3) = (_mm512_permutex2var_ps(r1, lo, r3), _mm512_permutex2var_ps(r1, hi, r3))
        (r4, r6) = (_mm512_permutex2var_ps(r4, lo, r6), _mm512_permutex2var_ps(r4, hi, r6))
        (r5, r7) = (_mm512_permutex2var_ps(r5, lo, r7), _mm512_permutex2var_ps(r5, hi, r7))
        (r8, r10) = (_mm512_permutex2var_ps(r8, lo, r10), _mm512_permutex2var_ps(r8, hi, r10))
        (r9, r11) = (_mm512_permutex2var_ps(r9, lo, r11), _mm512_permutex2var_ps(r9, hi, r11))
        (r12, r14) = (_mm512_permutex2var_ps(r12, lo, r14), _mm512_permutex2var_ps(r12, hi, r14))
        (r13, r15) = (_mm512_permutex2var_ps(r13, lo, r15), _mm512_permutex2var_ps(r13, hi, r15))
    }
    do {  // round 2: rows i and i + 4
        let lo = _mm512_set_epi32(27, 26, 25, 24, 11, 10, 9, 8, 19, 18, 17, 16, 3, 2, 1, 0)
        let hi = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 23, 22, 21, 20, 7, 6, 5, 4)
        (r0, r4) = (_mm512_permutex2var_ps(r0, lo, r4), _mm512_permutex2var_ps(r0, hi, r4))
        (r1, r5) = (_mm512_permutex2var_ps(r1, lo, r5), _mm512_permutex2var_ps(r1, hi, r5))
        (r2, r6) = (_mm512_permutex2var_ps(r2, lo, r6), _mm512_permutex2var_ps(r2, hi, r6))
        (r3, r7) = (_mm512_permutex2var_ps(r3, lo, r7), _mm512_permutex2var_ps(r3, hi, r7))
        (r8, r12) = (_mm512_permutex2var_ps(r8, lo, r12), _mm512_permutex2var_ps(r8, hi, r12))
        (r9, r13) = (_mm512_permutex2var_ps(r9, lo, r13), _mm512_permutex2var_ps(r9, hi, r13))
        (r10, r14) = (_mm512_permutex2var_ps(r10, lo, r14), _mm512_permutex2var_ps(r10, hi, r14))
        (r11, r15) = (_mm512_permutex2var_ps(r11, lo, r15), _mm512_permutex2var_ps(r11, hi, r15))
    }
    do {  // round 3: rows i and i + 8
        let lo = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 7, 6, 5, 4, 3, 2, 1, 0)
        let hi = _mm512_set_epi32(31, 30, 29, 28, 27, 26, 25, 24, 15, 14, 13, 12, 11, 10, 9, 8)
        (r0, r8) = (_mm512_permutex2var_ps(r0, lo, r8), _mm512_permutex2var_ps(r0, hi, r8))
        (r1, r9) = (_mm512_permutex2var_ps(r1, lo, r9), _mm512_permutex2var_ps(r1, hi, r9))
        (r2, r10) = (_mm512_permutex2var_ps(r2, lo, r10), _mm512_permutex2var_ps(r2, hi, r10))
        (r3, r11) = (_mm512_permutex2var_ps(r3, lo, r11), _mm512_permutex2var_ps(r3, hi, r11))
        (r4, r12) = (_mm512_permutex2var_ps(r4, lo, r12), _mm512_permutex2var_ps(r4, hi, r12))
        (r5, r13) = (_mm512_permutex2var_ps(r5, lo, r13), _mm512_permutex2var_ps(r5, hi, r13))
        (r6, r14) = (_mm512_permutex2var_ps(r6, lo, r14), _mm512_permutex2var_ps(r6, hi, r14))
        (r7, r15) = (_mm512_permutex2var_ps(r7, lo, r15), _mm512_permutex2var_ps(r7, hi, r15))
    }
}
#endif
