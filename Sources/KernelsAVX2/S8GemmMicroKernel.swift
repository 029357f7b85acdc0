// Built with `-target-cpu haswell` (AVX2): the int8 micro-kernels for processors without AVX512-VNNI
// (Kernels/Int8Gemm.swift dispatches). x86-64 only.
#if arch(x86_64)
import _Builtin_intrinsics.intel

/// `C[12 × 32] (+)= A · B` in int32 over `ksteps` groups of four k, for processors without
/// AVX512-VNNI. AVX2 has no u8 × s8 dot product that is exact (`vpmaddubsw` saturates at 16 bits),
/// so both sides are 16-bit and `vpmaddwd` sums pairs into int32, exact for u8 × s8 operands.
/// A: 12 words of four signed bytes per step (the weights, as for VNNI), widened as they are
/// broadcast; B: already widened, each column's step a 64-bit word of four 16-bit values (0...255),
/// 32 columns per step, fed to `vpmaddwd` straight from memory (convolutions widen the pixels they
/// gather once per band). Blocks of 2 × 16: eight accumulators, no spills.
@inline(never)
public func s8s16gemmMicroKernelAVX2(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt64>,
                                     _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) {
    for r0 in stride(from: 0, to: 12, by: 2) {
        int8Block2x16AVX2(ksteps, a + r0, b, c + r0 * ldc, ldc, accumulate)
        int8Block2x16AVX2(ksteps, a + r0, b + 16, c + r0 * ldc + 16, ldc, accumulate)
    }
}

/// Two rows × sixteen columns: per step two A words broadcast and widened, four 32-byte B loads
/// (four columns × four k each), eight `vpmaddwd` whose int32 lanes hold, per column, the sums of
/// k pairs (0, 1) and (2, 3).
@inline(__always)
func int8Block2x16AVX2(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt64>,
                       _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) {
    @inline(__always) func widenA(_ w: UInt32) -> __m256i { _mm256_cvtepi8_epi16(_mm_set1_epi32(Int32(bitPattern: w))) }
    @inline(__always) func widenB(_ p: UnsafePointer<UInt64>, _ g: Int) -> __m256i {
        _mm256_loadu_si256(UnsafeRawPointer(p + 4 * g).assumingMemoryBound(to: __m256i.self))
    }
    var c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00
    var c10 = c00, c11 = c00, c12 = c00, c13 = c00
    var pa = a, pb = b
    for _ in 0..<ksteps {
        let a0 = widenA(pa[0]), a1 = widenA(pa[1])
        var x = widenB(pb, 0)
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x, a0)); c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x, a1))
        x = widenB(pb, 1)
        c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x, a0)); c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x, a1))
        x = widenB(pb, 2)
        c02 = _mm256_add_epi32(c02, _mm256_madd_epi16(x, a0)); c12 = _mm256_add_epi32(c12, _mm256_madd_epi16(x, a1))
        x = widenB(pb, 3)
        c03 = _mm256_add_epi32(c03, _mm256_madd_epi16(x, a0)); c13 = _mm256_add_epi32(c13, _mm256_madd_epi16(x, a1))
        pa += 12
        pb += 32
    }
    // Lanes (column j, pair p) → column sums: `vphaddd` adds the pairs of two groups within each
    // 128-bit half; a lane permutation puts the eight columns in order.
    let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)
    @inline(__always) func store(_ r: Int, _ g0: __m256i, _ g1: __m256i, _ g2: __m256i, _ g3: __m256i) {
        let lo = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(g0, g1), order)
        let hi = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(g2, g3), order)
        let p = UnsafeMutableRawPointer(c + r * ldc).assumingMemoryBound(to: __m256i.self)
        if accumulate {
            _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), lo))
            _mm256_storeu_si256(p + 1, _mm256_add_epi32(_mm256_loadu_si256(p + 1), hi))
        } else {
            _mm256_storeu_si256(p, lo)
            _mm256_storeu_si256(p + 1, hi)
        }
    }
    store(0, c00, c01, c02, c03); store(1, c10, c11, c12, c13)
}

/// `C[12 × 32] (+)= A · B` with A (activations) already widened: each row's step a 64-bit word of
/// four 16-bit values (0...255), 12 rows per step; B words of four signed bytes, 32 columns per step
/// (the weights). A is broadcast straight from memory; only B is widened in the loop.
@inline(never)
public func u16s8gemmMicroKernelAVX2(_ ksteps: Int, _ a: UnsafePointer<UInt64>, _ b: UnsafePointer<UInt32>,
                                     _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) {
    for r0 in stride(from: 0, to: 12, by: 6) {
        for j0 in stride(from: 0, to: 32, by: 8) {
            int8Block6x8AVX2(ksteps, a + r0, b + j0, c + r0 * ldc + j0, ldc, accumulate)
        }
    }
}

/// Six rows × eight columns: per step two B loads of four columns widened to 16 bits, six A words
/// broadcast, twelve `vpmaddwd` (twelve accumulators; lanes as in `int8Block2x16AVX2`).
@inline(__always)
func int8Block6x8AVX2(_ ksteps: Int, _ a: UnsafePointer<UInt64>, _ b: UnsafePointer<UInt32>,
                           _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) {
    @inline(__always) func widenB(_ p: UnsafePointer<UInt32>) -> __m256i {
        _mm256_cvtepi8_epi16(_mm_loadu_si128(UnsafeRawPointer(p).assumingMemoryBound(to: __m128i.self)))
    }
    @inline(__always) func row(_ w: UInt64) -> __m256i { _mm256_set1_epi64x(Int64(bitPattern: w)) }
    var c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00
    var c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00
    var pa = a, pb = b
    for _ in 0..<ksteps {
        let b0 = widenB(pb), b1 = widenB(pb + 4)
        var x = row(pa[0]); c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(b0, x)); c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(b1, x))
        x = row(pa[1]); c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(b0, x)); c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(b1, x))
        x = row(pa[2]); c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(b0, x)); c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(b1, x))
        x = row(pa[3]); c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(b0, x)); c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(b1, x))
        x = row(pa[4]); c40 = _mm256_add_epi32(c40, _mm256_madd_epi16(b0, x)); c41 = _mm256_add_epi32(c41, _mm256_madd_epi16(b1, x))
        x = row(pa[5]); c50 = _mm256_add_epi32(c50, _mm256_madd_epi16(b0, x)); c51 = _mm256_add_epi32(c51, _mm256_madd_epi16(b1, x))
        pa += 12
        pb += 32
    }
    let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)
    @inline(__always) func store(_ r: Int, _ g0: __m256i, _ g1: __m256i) {
        let v = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(g0, g1), order)
        let p = UnsafeMutableRawPointer(c + r * ldc).assumingMemoryBound(to: __m256i.self)
        _mm256_storeu_si256(p, accumulate ? _mm256_add_epi32(_mm256_loadu_si256(p), v) : v)
    }
    store(0, c00, c01); store(1, c10, c11); store(2, c20, c21); store(3, c30, c31); store(4, c40, c41); store(5, c50, c51)
}

/// 12 independent `vpmaddwd` + `vpaddd` per iteration on registers: 12 · 16 multiply-adds each.
@inline(never)
public func maddPeakAVX2(_ iterations: Int, _ seed: Int32) -> Int32 {
    let a = _mm256_set1_epi32(0x0001_0002)
    var c0 = _mm256_set1_epi32(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0
    var c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0
    @inline(__always) func f(_ c: __m256i) -> __m256i { _mm256_add_epi32(c, _mm256_madd_epi16(a, c)) }
    for _ in 0..<iterations {
        c0 = f(c0); c1 = f(c1); c2 = f(c2); c3 = f(c3); c4 = f(c4); c5 = f(c5)
        c6 = f(c6); c7 = f(c7); c8 = f(c8); c9 = f(c9); c10 = f(c10); c11 = f(c11)
    }
    let s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3)), _mm256_add_epi32(_mm256_add_epi32(c4, c5), _mm256_add_epi32(c6, c7)))
    let t = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_add_epi32(c8, c9), _mm256_add_epi32(c10, c11)))
    return _mm256_cvtsi256_si32(t)
}
#endif
