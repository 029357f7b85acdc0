// Built with `-target-cpu haswell` (AVX2, FMA3): call only after `CPU.features` says the processor
// has them (Kernels/Gemm.swift dispatches).
// x86-64 only (the package still builds elsewhere, with OpenBLAS as the only GEMM).
#if arch(x86_64)
import _Builtin_intrinsics.intel

/// Rows × columns of the f32 micro-kernel's block of C, and the A/B panel widths it reads.
public let sgemmRowsAVX2 = 6
public let sgemmColumnsAVX2 = 16

/// `C[6 × 16] (+)= A · B` over `kc` steps (packed panels as in the AVX-512 kernel, 6 rows and
/// 16 columns wide): twelve ymm accumulators, two B loads and six broadcasts per step.
@inline(never)
public func sgemmMicroKernelAVX2(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                   _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
    sgemmMicroKernelBodyAVX2(kc, a, { b + $0 * 16 }, c, ldc, accumulate)
}

/// As the packed micro-kernel, but step p's B values are the contiguous floats at `b + offsets[p]`
/// (a convolution's taps read in place from a padded copy of the input rows: no im2col, no packing).
@inline(never)
public func sgemmIndirectMicroKernelAVX2(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ offsets: UnsafePointer<Int>,
                                   _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
    sgemmMicroKernelBodyAVX2(kc, a, { b + offsets[$0] }, c, ldc, accumulate)
}

@inline(__always)
func sgemmMicroKernelBodyAVX2(_ kc: Int, _ a: UnsafePointer<Float>, _ bAt: (Int) -> UnsafePointer<Float>,
                                 _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
    var c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps()
    var c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps()
    var c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps()
    var c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps()
    var c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps()
    var c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps()
    var pa = a
    for p in 0..<kc {
        let pb = bAt(p)
        let b0 = _mm256_loadu_ps(pb), b1 = _mm256_loadu_ps(pb + 8)
        var x = _mm256_set1_ps(pa[0]); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01)
        x = _mm256_set1_ps(pa[1]); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11)
        x = _mm256_set1_ps(pa[2]); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21)
        x = _mm256_set1_ps(pa[3]); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31)
        x = _mm256_set1_ps(pa[4]); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41)
        x = _mm256_set1_ps(pa[5]); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51)
        pa += 6
    }
    @inline(__always) func store(_ r: Int, _ v0: __m256, _ v1: __m256) {
        let p = c + r * ldc
        if accumulate {
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v0))
            _mm256_storeu_ps(p + 8, _mm256_add_ps(_mm256_loadu_ps(p + 8), v1))
        } else {
            _mm256_storeu_ps(p, v0)
            _mm256_storeu_ps(p + 8, v1)
        }
    }
    store(0, c00, c01); store(1, c10, c11); store(2, c20, c21)
    store(3, c30, c31); store(4, c40, c41); store(5, c50, c51)
}


/// Runs `iterations` × 12 independent ymm FMAs (no memory traffic): `12 · 16 · iterations` flops.
@inline(never)
public func fmaPeakAVX2(_ iterations: Int, _ seed: Float) -> Float {
    let m = _mm256_set1_ps(0.999999), a = _mm256_set1_ps(1e-7)
    var c0 = _mm256_set1_ps(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0
    var c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0
    for _ in 0..<iterations {
        c0 = _mm256_fmadd_ps(c0, m, a); c1 = _mm256_fmadd_ps(c1, m, a); c2 = _mm256_fmadd_ps(c2, m, a)
        c3 = _mm256_fmadd_ps(c3, m, a); c4 = _mm256_fmadd_ps(c4, m, a); c5 = _mm256_fmadd_ps(c5, m, a)
        c6 = _mm256_fmadd_ps(c6, m, a); c7 = _mm256_fmadd_ps(c7, m, a); c8 = _mm256_fmadd_ps(c8, m, a)
        c9 = _mm256_fmadd_ps(c9, m, a); c10 = _mm256_fmadd_ps(c10, m, a); c11 = _mm256_fmadd_ps(c11, m, a)
    }
    var t = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)), _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)))
    t = _mm256_add_ps(t, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)))
    var lanes = [Float](repeating: 0, count: 8)
    lanes.withUnsafeMutableBufferPointer { _mm256_storeu_ps($0.baseAddress!, t) }
    return lanes.reduce(0, +)
}

/// e^x for 8 lanes (the polynomial of the AVX-512 version; 2^n built in the exponent bits).
@inline(__always)
func exp8(_ v: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-87.3365)), _mm256_set1_ps(88.7228))
    let magic = _mm256_set1_ps(12582912)
    let n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341)), magic), magic)
    var r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375), x)
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4), r)
    var p = _mm256_set1_ps(1.9875691500e-4)
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3))
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3))
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2))
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1))
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1))
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1)))
    // 2^n in the exponent bits (n ≥ −126 after the clamp); inputs below the clamp give 0 (the
    // sign of v − threshold selects).
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
    return _mm256_blendv_ps(_mm256_mul_ps(p, scale), _mm256_setzero_ps(), _mm256_sub_ps(v, _mm256_set1_ps(-87.3365)))
}

/// The AVX-512 kernel's online-softmax step for 16 queries per key row.
@inline(never)
public func softmaxColumns16AVX2(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                                 _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>) {
    softmaxColumns16(s, rows, runningMax, runningSum, correction, exp8)
}

/// The same with scores in base-2 units and a shorter 2^x (bf16 attention).
@inline(never)
public func softmaxColumns16Base2AVX2(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                                      _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>) {
    softmaxColumns16(s, rows, runningMax, runningSum, correction, exp2Short8)
}

/// 2^x for 8 lanes: degree-4 polynomial, 2^n in the exponent bits (n ≥ −126; below, 0).
@inline(__always)
func exp2Short8(_ v: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-126)), _mm256_set1_ps(127))
    let magic = _mm256_set1_ps(12582912)
    let n = _mm256_sub_ps(_mm256_add_ps(x, magic), magic)
    let f = _mm256_sub_ps(x, n)
    var p = _mm256_set1_ps(9.6181291e-3)
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504109e-2))
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022651e-1))
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718e-1))
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1))
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
    return _mm256_blendv_ps(_mm256_mul_ps(p, scale), _mm256_setzero_ps(), _mm256_sub_ps(v, _mm256_set1_ps(-126)))
}

@inline(__always)
func softmaxColumns16(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ runningMax: UnsafeMutablePointer<Float>,
                      _ runningSum: UnsafeMutablePointer<Float>, _ correction: UnsafeMutablePointer<Float>, _ exp8: (__m256) -> __m256) {
    var m0 = _mm256_loadu_ps(runningMax), m1 = _mm256_loadu_ps(runningMax + 8)
    let old0 = m0, old1 = m1
    for r in 0..<rows {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(s + r * 16))
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(s + r * 16 + 8))
    }
    let zero = _mm256_setzero_ps()
    // −∞ maxima become 0 (m + FLT_MAX is negative only for −∞).
    let big = _mm256_set1_ps(Float.greatestFiniteMagnitude)
    let base0 = _mm256_blendv_ps(m0, zero, _mm256_add_ps(m0, big))
    let base1 = _mm256_blendv_ps(m1, zero, _mm256_add_ps(m1, big))
    var sum0 = zero, sum1 = zero
    for r in 0..<rows {
        let p = s + r * 16
        let e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), base0)), e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + 8), base1))
        _mm256_storeu_ps(p, e0)
        _mm256_storeu_ps(p + 8, e1)
        sum0 = _mm256_add_ps(sum0, e0)
        sum1 = _mm256_add_ps(sum1, e1)
    }
    let c0 = exp8(_mm256_sub_ps(old0, base0)), c1 = exp8(_mm256_sub_ps(old1, base1))
    _mm256_storeu_ps(correction, c0)
    _mm256_storeu_ps(correction + 8, c1)
    _mm256_storeu_ps(runningSum, _mm256_fmadd_ps(_mm256_loadu_ps(runningSum), c0, sum0))
    _mm256_storeu_ps(runningSum + 8, _mm256_fmadd_ps(_mm256_loadu_ps(runningSum + 8), c1, sum1))
    _mm256_storeu_ps(runningMax, m0)
    _mm256_storeu_ps(runningMax + 8, m1)
}

/// The bf16 micro-kernel where the processor has no bf16 dot product: `C[6 × 16] (+)= A · B` over
/// `ksteps` pairs of k, panels of 32-bit words each holding the bf16 values of k and k+1 (the layout
/// of the AVX512_BF16 kernel, 6 rows and 16 columns wide). Each bf16 becomes an f32 by a shift (it
/// is the high half of one), then two FMAs per pair: exact products, f32 sums in k order.
@inline(never)
public func sbgemmMicroKernelAVX2(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>, _ offsets: UnsafePointer<Int>?,
                                  _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
    if let offsets {
        sbgemmBodyAVX2(ksteps, a, { b + offsets[$0] }, c, ldc, accumulate)
    } else {
        sbgemmBodyAVX2(ksteps, a, { b + $0 * 16 }, c, ldc, accumulate)
    }
}

@inline(__always)
func sbgemmBodyAVX2(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ bAt: (Int) -> UnsafePointer<UInt32>,
                    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
    var c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps()
    var c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps()
    var c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps()
    var c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps()
    var c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps()
    var c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps()
    let high = _mm256_set1_epi32(Int32(bitPattern: 0xFFFF_0000))
    var pa = a
    for p in 0..<ksteps {
        let raw = UnsafeRawPointer(bAt(p)).assumingMemoryBound(to: __m256i.self)
        let w0 = _mm256_loadu_si256(raw), w1 = _mm256_loadu_si256(raw + 1)
        // k: the low halves shifted up.
        var b0 = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)), b1 = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16))
        var x = _mm256_set1_ps(Float(bitPattern: pa[0] << 16)); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01)
        x = _mm256_set1_ps(Float(bitPattern: pa[1] << 16)); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11)
        x = _mm256_set1_ps(Float(bitPattern: pa[2] << 16)); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21)
        x = _mm256_set1_ps(Float(bitPattern: pa[3] << 16)); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31)
        x = _mm256_set1_ps(Float(bitPattern: pa[4] << 16)); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41)
        x = _mm256_set1_ps(Float(bitPattern: pa[5] << 16)); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51)
        // k + 1: the high halves.
        b0 = _mm256_castsi256_ps(_mm256_and_si256(w0, high)); b1 = _mm256_castsi256_ps(_mm256_and_si256(w1, high))
        x = _mm256_set1_ps(Float(bitPattern: pa[0] & 0xFFFF_0000)); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01)
        x = _mm256_set1_ps(Float(bitPattern: pa[1] & 0xFFFF_0000)); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11)
        x = _mm256_set1_ps(Float(bitPattern: pa[2] & 0xFFFF_0000)); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21)
        x = _mm256_set1_ps(Float(bitPattern: pa[3] & 0xFFFF_0000)); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31)
        x = _mm256_set1_ps(Float(bitPattern: pa[4] & 0xFFFF_0000)); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41)
        x = _mm256_set1_ps(Float(bitPattern: pa[5] & 0xFFFF_0000)); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51)
        pa += 6
    }
    @inline(__always) func store(_ r: Int, _ v0: __m256, _ v1: __m256) {
        let p = c + r * ldc
        if accumulate {
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v0))
            _mm256_storeu_ps(p + 8, _mm256_add_ps(_mm256_loadu_ps(p + 8), v1))
        } else {
            _mm256_storeu_ps(p, v0)
            _mm256_storeu_ps(p + 8, v1)
        }
    }
    store(0, c00, c01); store(1, c10, c11); store(2, c20, c21)
    store(3, c30, c31); store(4, c40, c41); store(5, c50, c51)
}

/// `dst[j]` = the bf16 values of `r0[j]` (low half) and `r1[j]` (high half; 0 without `r1`), rounded
/// to nearest even, for `count` columns.
@inline(never)
public func bf16PairRowsAVX2(_ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<UInt32>, _ count: Int) {
    let one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7FFF), high = _mm256_set1_epi32(Int32(bitPattern: 0xFFFF_0000))
    @inline(__always) func rounded(_ v: __m256i) -> __m256i {
        _mm256_add_epi32(_mm256_add_epi32(v, bias), _mm256_and_si256(_mm256_srli_epi32(v, 16), one))
    }
    var j = 0
    while j + 8 <= count {
        let lo = _mm256_srli_epi32(rounded(_mm256_castps_si256(_mm256_loadu_ps(r0 + j))), 16)
        var word = lo
        if let r1 { word = _mm256_or_si256(lo, _mm256_and_si256(rounded(_mm256_castps_si256(_mm256_loadu_ps(r1 + j))), high)) }
        _mm256_storeu_si256(UnsafeMutableRawPointer(dst + j).assumingMemoryBound(to: __m256i.self), word)
        j += 8
    }
    while j < count {
        let a = r0[j].bitPattern, b = r1?[j].bitPattern ?? 0
        let ra = (a &+ 0x7FFF &+ ((a >> 16) & 1)) >> 16, rb = r1 == nil ? 0 : (b &+ 0x7FFF &+ ((b >> 16) & 1)) & 0xFFFF_0000
        dst[j] = ra | rb
        j += 1
    }
}
#endif
