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
        for j0 in stride(from: 0, to: 32, by: 16) {
            var tile = Tile2x16()
            var pa = a + r0, pb = b + j0
            tile.accumulate(ksteps, &pa, &pb, unsignedA: false)
            tile.rows { r, lo, hi in
                let p = UnsafeMutableRawPointer(c + (r0 + r) * ldc + j0).assumingMemoryBound(to: __m256i.self)
                if accumulate {
                    _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), lo))
                    _mm256_storeu_si256(p + 1, _mm256_add_epi32(_mm256_loadu_si256(p + 1), hi))
                } else {
                    _mm256_storeu_si256(p, lo)
                    _mm256_storeu_si256(p + 1, hi)
                }
            }
        }
    }
}

/// Two rows × sixteen columns of int32 sums (eight ymm accumulators once inlined): per step two A
/// words broadcast and widened, four 32-byte B loads (four columns × four k each), eight `vpmaddwd`
/// whose int32 lanes hold, per column, the sums of k pairs (0, 1) and (2, 3).
struct Tile2x16 {
    var c00 = _mm256_setzero_si256(), c01 = _mm256_setzero_si256(), c02 = _mm256_setzero_si256(), c03 = _mm256_setzero_si256()
    var c10 = _mm256_setzero_si256(), c11 = _mm256_setzero_si256(), c12 = _mm256_setzero_si256(), c13 = _mm256_setzero_si256()

    /// `steps` steps; A's bytes sign-extended, or zero-extended when `unsignedA`; B already 16-bit.
    @inline(__always)
    mutating func accumulate(_ steps: Int, _ pa: inout UnsafePointer<UInt32>, _ pb: inout UnsafePointer<UInt64>, unsignedA: Bool) {
        @inline(__always) func widenA(_ w: UInt32) -> __m256i {
            let v = _mm_set1_epi32(Int32(bitPattern: w))
            return unsignedA ? _mm256_cvtepu8_epi16(v) : _mm256_cvtepi8_epi16(v)
        }
        @inline(__always) func loadB(_ p: UnsafePointer<UInt64>, _ g: Int) -> __m256i {
            _mm256_loadu_si256(UnsafeRawPointer(p + 4 * g).assumingMemoryBound(to: __m256i.self))
        }
        for _ in 0..<steps {
            let a0 = widenA(pa[0]), a1 = widenA(pa[1])
            var x = loadB(pb, 0)
            c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x, a0)); c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x, a1))
            x = loadB(pb, 1)
            c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x, a0)); c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x, a1))
            x = loadB(pb, 2)
            c02 = _mm256_add_epi32(c02, _mm256_madd_epi16(x, a0)); c12 = _mm256_add_epi32(c12, _mm256_madd_epi16(x, a1))
            x = loadB(pb, 3)
            c03 = _mm256_add_epi32(c03, _mm256_madd_epi16(x, a0)); c13 = _mm256_add_epi32(c13, _mm256_madd_epi16(x, a1))
            pa += 12
            pb += 32
        }
    }

    /// `row(r, columns 0..<8, columns 8..<16)` for the two rows: `vphaddd` adds the pairs of two
    /// groups within each 128-bit half; a lane permutation puts the eight columns in order.
    @inline(__always)
    func rows(_ row: (Int, __m256i, __m256i) -> Void) {
        let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)
        row(0, _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(c00, c01), order), _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(c02, c03), order))
        row(1, _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(c10, c11), order), _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(c12, c13), order))
    }
}

/// `C[12 × 32] (+)= A · B` with A (activations) already widened: each row's step a 64-bit word of
/// four 16-bit values (0...255), 12 rows per step; B words of four signed bytes, 32 columns per step
/// (the weights). A is broadcast straight from memory; only B is widened in the loop.
@inline(never)
public func u16s8gemmMicroKernelAVX2(_ ksteps: Int, _ a: UnsafePointer<UInt64>, _ b: UnsafePointer<UInt32>,
                                     _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) {
    for r0 in stride(from: 0, to: 12, by: 6) {
        for j0 in stride(from: 0, to: 32, by: 8) {
            var tile = Tile6x8()
            var pa = a + r0, pb = b + j0
            tile.accumulate(ksteps, &pa, &pb, unsignedB: false)
            tile.rows { r, v in
                let p = UnsafeMutableRawPointer(c + (r0 + r) * ldc + j0).assumingMemoryBound(to: __m256i.self)
                _mm256_storeu_si256(p, accumulate ? _mm256_add_epi32(_mm256_loadu_si256(p), v) : v)
            }
        }
    }
}

/// Six rows × eight columns of int32 sums (twelve ymm accumulators once inlined): per step two B
/// loads of four columns widened to 16 bits, six A words broadcast, twelve `vpmaddwd` (lanes as in
/// `Tile2x16`).
struct Tile6x8 {
    var c00 = _mm256_setzero_si256(), c01 = _mm256_setzero_si256(), c10 = _mm256_setzero_si256(), c11 = _mm256_setzero_si256()
    var c20 = _mm256_setzero_si256(), c21 = _mm256_setzero_si256(), c30 = _mm256_setzero_si256(), c31 = _mm256_setzero_si256()
    var c40 = _mm256_setzero_si256(), c41 = _mm256_setzero_si256(), c50 = _mm256_setzero_si256(), c51 = _mm256_setzero_si256()

    /// `steps` steps; A already 16-bit; B's bytes sign-extended, or zero-extended when `unsignedB`.
    @inline(__always)
    mutating func accumulate(_ steps: Int, _ pa: inout UnsafePointer<UInt64>, _ pb: inout UnsafePointer<UInt32>, unsignedB: Bool) {
        @inline(__always) func widenB(_ p: UnsafePointer<UInt32>) -> __m256i {
            let v = _mm_loadu_si128(UnsafeRawPointer(p).assumingMemoryBound(to: __m128i.self))
            return unsignedB ? _mm256_cvtepu8_epi16(v) : _mm256_cvtepi8_epi16(v)
        }
        @inline(__always) func row(_ w: UInt64) -> __m256i { _mm256_set1_epi64x(Int64(bitPattern: w)) }
        for _ in 0..<steps {
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
    }

    /// `row(r, columns 0..<8)` for the six rows.
    @inline(__always)
    func rows(_ row: (Int, __m256i) -> Void) {
        let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)
        @inline(__always) func sums(_ g0: __m256i, _ g1: __m256i) -> __m256i { _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(g0, g1), order) }
        row(0, sums(c00, c01)); row(1, sums(c10, c11)); row(2, sums(c20, c21))
        row(3, sums(c30, c31)); row(4, sums(c40, c41)); row(5, sums(c50, c51))
    }
}

/// The int8 × int8 products of plans with int8 activations, in blocks of k, without VNNI:
/// `C[12 × 32] (+)= Σ_blocks scale_block · (A · B)_block` in f32 (C in memory, row-major `ldc`),
/// each block `blockSteps` steps of four k summed exactly in int32 by `vpmaddwd` on 16-bit values,
/// then converted and scaled; the same sums as `convBlockedMicroKernelVNNI`. Convolutions: A the
/// weights as unsigned bytes (`w + 128`, widened as broadcast), B the activations already widened
/// (signed 16-bit values, a 64-bit word per column and step), one scale per column and block.
@inline(never)
public func convBlockedMicroKernelAVX2(_ blocks: Int, _ blockSteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt64>,
                                       _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ scales: UnsafePointer<Float>, _ accumulate: Bool) {
    for r0 in stride(from: 0, to: 12, by: 2) {
        for j0 in stride(from: 0, to: 32, by: 16) {
            var pa = a + r0, pb = b + j0
            for block in 0..<blocks {
                var tile = Tile2x16()
                tile.accumulate(blockSteps, &pa, &pb, unsignedA: true)
                let first = block == 0 && !accumulate
                let s = scales + block * 32 + j0
                let s0 = _mm256_loadu_ps(s), s1 = _mm256_loadu_ps(s + 8)
                tile.rows { r, lo, hi in
                    let p = c + (r0 + r) * ldc + j0
                    let (flo, fhi) = (_mm256_cvtepi32_ps(lo), _mm256_cvtepi32_ps(hi))
                    if first {
                        _mm256_storeu_ps(p, _mm256_mul_ps(flo, s0))
                        _mm256_storeu_ps(p + 8, _mm256_mul_ps(fhi, s1))
                    } else {
                        _mm256_storeu_ps(p, _mm256_fmadd_ps(flo, s0, _mm256_loadu_ps(p)))
                        _mm256_storeu_ps(p + 8, _mm256_fmadd_ps(fhi, s1, _mm256_loadu_ps(p + 8)))
                    }
                }
            }
        }
    }
}

/// As `convBlockedMicroKernelAVX2` for linear layers: A the activations already widened (signed
/// 16-bit values, a 64-bit word per row and step), B the weights as unsigned bytes (`w + 128`),
/// one scale per row and block (`scales[block · 12 + r]`).
@inline(never)
public func linearBlockedMicroKernelAVX2(_ blocks: Int, _ blockSteps: Int, _ a: UnsafePointer<UInt64>, _ b: UnsafePointer<UInt32>,
                                         _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ scales: UnsafePointer<Float>, _ accumulate: Bool) {
    for r0 in stride(from: 0, to: 12, by: 6) {
        for j0 in stride(from: 0, to: 32, by: 8) {
            var pa = a + r0, pb = b + j0
            for block in 0..<blocks {
                var tile = Tile6x8()
                tile.accumulate(blockSteps, &pa, &pb, unsignedB: true)
                let first = block == 0 && !accumulate
                let s = scales + block * 12 + r0
                tile.rows { r, v in
                    let f = _mm256_set1_ps(s[r])
                    let p = c + (r0 + r) * ldc + j0
                    let x = _mm256_cvtepi32_ps(v)
                    _mm256_storeu_ps(p, first ? _mm256_mul_ps(x, f) : _mm256_fmadd_ps(x, f, _mm256_loadu_ps(p)))
                }
            }
        }
    }
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
