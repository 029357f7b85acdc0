// Built with `-target-cpu skylake-avx512`: call only when `CPU.features` says the processor has
// AVX-512 F (Kernels/Winograd43.swift dispatches on the GEMM's instruction set).
#if arch(x86_64)
import _Builtin_intrinsics.intel

/// Winograd F(4,3)'s input transform V = Bᵀ d B of `count` (1...16) consecutive 6×6 tiles, lane l =
/// tile l, read straight from a `[height, width]` plane: tile l's rows are `firstRow ..< firstRow + 6`,
/// its columns `firstColumn + 4l ..< firstColumn + 4l + 6`, zeros outside the plane (masked loads:
/// nothing outside it is touched). V_ξ (ξ = 6i + j: i the vertical, j the horizontal frequency) of
/// tile `first + l` goes to the GEMMs' B panels, `dst + ξ·xiStride + ((first + l) / nr)·panelStride +
/// (first + l) % nr` (`nr` ≥ 16, so sixteen tiles span at most two panels). The same operations in
/// the same order as the portable `Winograd43.transformInput` (Bᵀ over the rows, then B over the
/// columns), so both give the same values.
public func winograd43InputAVX512(_ plane: UnsafePointer<Float>, height: Int, width: Int, firstRow: Int, firstColumn: Int, count: Int,
                                  _ dst: UnsafeMutablePointer<Float>, xiStride: Int, first: Int, nr: Int, panelStride: Int) {
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0)
    let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1)
    // Lanes moved down by one, the last from the second operand's lane 0 (q4) or 1 (q5).
    let next0 = _mm512_set_epi32(16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
    let next1 = _mm512_set_epi32(17, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
    let four = _mm512_set1_ps(4), five = _mm512_set1_ps(5), two = _mm512_set1_ps(2)
    /// Lanes of the 16 (or `lanes`) columns from `c0` that lie inside the plane.
    @inline(__always) func inside(_ c0: Int, _ lanes: Int = 16) -> __mmask16 {
        let lo = max(0, -c0), hi = min(lanes, width - c0)
        guard hi > lo else { return 0 }
        return __mmask16(truncatingIfNeeded: ((1 << hi) - 1) & ~((1 << lo) - 1))
    }
    let c0 = firstColumn
    let k0 = inside(c0), k1 = inside(c0 + 16), k2 = inside(c0 + 32), k3 = inside(c0 + 48), kt = inside(c0 + 64, 2)
    @inline(__always) func bt(_ x0: __m512, _ x1: __m512, _ x2: __m512, _ x3: __m512, _ x4: __m512, _ x5: __m512)
        -> (__m512, __m512, __m512, __m512, __m512, __m512) {
        let a = _mm512_sub_ps(x4, _mm512_mul_ps(four, x2)), b = _mm512_sub_ps(x3, _mm512_mul_ps(four, x1))
        let e = _mm512_sub_ps(x4, x2), f = _mm512_mul_ps(two, _mm512_sub_ps(x3, x1))
        return (_mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(four, x0), _mm512_mul_ps(five, x2)), x4),
                _mm512_add_ps(a, b), _mm512_sub_ps(a, b), _mm512_add_ps(e, f), _mm512_sub_ps(e, f),
                _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(four, x1), _mm512_mul_ps(five, x3)), x5))
    }
    /// Row r of the tiles: its six columns q (zeros for a row outside the plane).
    @inline(__always) func row(_ r: Int) -> (__m512, __m512, __m512, __m512, __m512, __m512) {
        let y = firstRow + r
        guard y >= 0 && y < height else {
            let z = _mm512_setzero_ps()
            return (z, z, z, z, z, z)
        }
        let p = plane + y * width + c0
        let v0 = _mm512_maskz_loadu_ps(k0, p), v1 = _mm512_maskz_loadu_ps(k1, p + 16)
        let v2 = _mm512_maskz_loadu_ps(k2, p + 32), v3 = _mm512_maskz_loadu_ps(k3, p + 48)
        let tail = _mm512_maskz_loadu_ps(kt, p + 64)
        let e01 = _mm512_permutex2var_ps(v0, even, v1), o01 = _mm512_permutex2var_ps(v0, odd, v1)
        let e23 = _mm512_permutex2var_ps(v2, even, v3), o23 = _mm512_permutex2var_ps(v2, odd, v3)
        let q0 = _mm512_permutex2var_ps(e01, even, e23), q2 = _mm512_permutex2var_ps(e01, odd, e23)
        let q1 = _mm512_permutex2var_ps(o01, even, o23), q3 = _mm512_permutex2var_ps(o01, odd, o23)
        let q4 = _mm512_permutex2var_ps(q0, next0, tail), q5 = _mm512_permutex2var_ps(q1, next1, tail)
        return (q0, q1, q2, q3, q4, q5)
    }
    let w0 = row(0), w1 = row(1), w2 = row(2), w3 = row(3), w4 = row(4), w5 = row(5)
    // Bᵀ d over the rows, column by column (t_i[q]), as the portable transform does.
    let c0t = bt(w0.0, w1.0, w2.0, w3.0, w4.0, w5.0), c1t = bt(w0.1, w1.1, w2.1, w3.1, w4.1, w5.1)
    let c2t = bt(w0.2, w1.2, w2.2, w3.2, w4.2, w5.2), c3t = bt(w0.3, w1.3, w2.3, w3.3, w4.3, w5.3)
    let c4t = bt(w0.4, w1.4, w2.4, w3.4, w4.4, w5.4), c5t = bt(w0.5, w1.5, w2.5, w3.5, w4.5, w5.5)
    // Lanes [0, split) into the first tile's panel, the rest into the next one.
    let offset = first % nr, split = min(count, nr - offset)
    let d0 = dst + (first / nr) * panelStride + offset, d1 = dst + (first / nr + 1) * panelStride - split
    let whole = count == 16 && split == 16
    let m0 = __mmask16(truncatingIfNeeded: (1 << split) - 1), m1 = __mmask16(truncatingIfNeeded: ((1 << count) - 1) & ~((1 << split) - 1))
    @inline(__always) func store(_ xi: Int, _ v: __m512) {
        if whole { _mm512_storeu_ps(d0 + xi * xiStride, v); return }
        _mm512_mask_storeu_ps(d0 + xi * xiStride, m0, v)
        if m1 != 0 { _mm512_mask_storeu_ps(d1 + xi * xiStride, m1, v) }
    }
    /// Row i of Bᵀ d, then times B: V_ξ for ξ = 6i ..< 6i + 6.
    @inline(__always) func frequencies(_ i: Int, _ x0: __m512, _ x1: __m512, _ x2: __m512, _ x3: __m512, _ x4: __m512, _ x5: __m512) {
        let c = bt(x0, x1, x2, x3, x4, x5)
        store(6 * i, c.0); store(6 * i + 1, c.1); store(6 * i + 2, c.2); store(6 * i + 3, c.3); store(6 * i + 4, c.4); store(6 * i + 5, c.5)
    }
    frequencies(0, c0t.0, c1t.0, c2t.0, c3t.0, c4t.0, c5t.0)
    frequencies(1, c0t.1, c1t.1, c2t.1, c3t.1, c4t.1, c5t.1)
    frequencies(2, c0t.2, c1t.2, c2t.2, c3t.2, c4t.2, c5t.2)
    frequencies(3, c0t.3, c1t.3, c2t.3, c3t.3, c4t.3, c5t.3)
    frequencies(4, c0t.4, c1t.4, c2t.4, c3t.4, c4t.4, c5t.4)
    frequencies(5, c0t.5, c1t.5, c2t.5, c3t.5, c4t.5, c5t.5)
}

/// Winograd F(4,3)'s output transform Y = Aᵀ M A of sixteen consecutive tiles (M_ξ's sixteen lanes
/// at `m + ξ·xiStride`), plus `bias`, into the first `rows` (≤ 4) of their four output rows
/// (`out + i·rowStride`, 64 floats each: tile l's columns 4l ..< 4l + 4). The same operations as the
/// portable `Winograd43.outputTransform` (columns of M first, then rows), then the bias; with
/// `activate`, values with the sign bit set are multiplied by `slope` (PReLU, leaky ReLU).
public func winograd43Output16AVX512(_ m: UnsafePointer<Float>, _ xiStride: Int, _ out: UnsafeMutablePointer<Float>, _ rowStride: Int,
                                     _ rows: Int, _ bias: Float, activate: Bool, slope: Float) {
    let two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), eight = _mm512_set1_ps(8)
    @inline(__always) func at(_ x0: __m512, _ x1: __m512, _ x2: __m512, _ x3: __m512, _ x4: __m512, _ x5: __m512) -> (__m512, __m512, __m512, __m512) {
        let a = _mm512_add_ps(x1, x2), b = _mm512_sub_ps(x1, x2), c = _mm512_add_ps(x3, x4), d = _mm512_sub_ps(x3, x4)
        return (_mm512_add_ps(_mm512_add_ps(x0, a), c), _mm512_add_ps(b, _mm512_mul_ps(two, d)), _mm512_add_ps(a, _mm512_mul_ps(four, c)),
                _mm512_add_ps(_mm512_add_ps(b, _mm512_mul_ps(eight, d)), x5))
    }
    @inline(__always) func load(_ xi: Int) -> __m512 { _mm512_loadu_ps(m + xi * xiStride) }
    // Aᵀ M over the rows, for each column q: s_i[q].
    @inline(__always) func column(_ q: Int) -> (__m512, __m512, __m512, __m512) {
        at(load(q), load(6 + q), load(12 + q), load(18 + q), load(24 + q), load(30 + q))
    }
    let c0 = column(0), c1 = column(1), c2 = column(2), c3 = column(3), c4 = column(4), c5 = column(5)
    let b = _mm512_set1_ps(bias), s = _mm512_set1_ps(slope)
    // out[4l + j] = y_j[l]: pairs (y0, y1) and (y2, y3) interleaved, then the pairs' 64-bit halves.
    let pairLow = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0)
    let pairHigh = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8)
    let quadLow = _mm512_set_epi32(23, 22, 7, 6, 21, 20, 5, 4, 19, 18, 3, 2, 17, 16, 1, 0)
    let quadHigh = _mm512_set_epi32(31, 30, 15, 14, 29, 28, 13, 12, 27, 26, 11, 10, 25, 24, 9, 8)
    @inline(__always) func store(_ i: Int, _ x0: __m512, _ x1: __m512, _ x2: __m512, _ x3: __m512, _ x4: __m512, _ x5: __m512) {
        let y = at(x0, x1, x2, x3, x4, x5)
        @inline(__always) func finish(_ v: __m512) -> __m512 {
            let x = _mm512_add_ps(v, b)
            return activate ? _mm512_mask_mul_ps(x, _mm512_movepi32_mask(_mm512_castps_si512(x)), x, s) : x
        }
        let (y0, y1, y2, y3) = (finish(y.0), finish(y.1), finish(y.2), finish(y.3))
        let p0 = _mm512_permutex2var_ps(y0, pairLow, y1), p1 = _mm512_permutex2var_ps(y0, pairHigh, y1)
        let r0 = _mm512_permutex2var_ps(y2, pairLow, y3), r1 = _mm512_permutex2var_ps(y2, pairHigh, y3)
        let dst = out + i * rowStride
        _mm512_storeu_ps(dst, _mm512_permutex2var_ps(p0, quadLow, r0))
        _mm512_storeu_ps(dst + 16, _mm512_permutex2var_ps(p0, quadHigh, r0))
        _mm512_storeu_ps(dst + 32, _mm512_permutex2var_ps(p1, quadLow, r1))
        _mm512_storeu_ps(dst + 48, _mm512_permutex2var_ps(p1, quadHigh, r1))
    }
    if rows > 0 { store(0, c0.0, c1.0, c2.0, c3.0, c4.0, c5.0) }
    if rows > 1 { store(1, c0.1, c1.1, c2.1, c3.1, c4.1, c5.1) }
    if rows > 2 { store(2, c0.2, c1.2, c2.2, c3.2, c4.2, c5.2) }
    if rows > 3 { store(3, c0.3, c1.3, c2.3, c3.3, c4.3, c5.3) }
}
#endif
