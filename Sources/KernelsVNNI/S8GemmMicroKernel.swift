// Built with `-target-cpu cascadelake` (AVX-512 with VNNI): call only after `CPU.features` says the
// processor has AVX512_VNNI (Kernels/Int8Gemm.swift dispatches).
// x86-64 only (the package still builds elsewhere, with OpenBLAS as the only GEMM).
#if arch(x86_64)
import _Builtin_intrinsics.intel

/// `C[12 × 32] (+)= A · B` in int32 over `ksteps` groups of four k: A a packed panel of 12 rows per
/// step, each a 32-bit word of four signed bytes (k..k+3); B a packed panel of 32 columns per step,
/// each a word of four unsigned bytes. `vpdpbusd` multiplies u8 × s8 pairs and adds the four products
/// of a word into each int32 lane exactly (no 16-bit saturation); 24 zmm accumulators.
@inline(never)
public func s8gemmMicroKernelVNNI(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>,
                                  _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) {
    vnniMicroKernelBody(ksteps, a, b, c, ldc, accumulate, unsignedA: false)
}

/// `C[12 × 32] (+)= A · B` in int32 with the roles of the signs swapped: A (activations, broadcast)
/// words of four unsigned bytes, B (weights) words of four signed bytes. Same layout and exactness
/// as `s8gemmMicroKernelVNNI`; used by linear layers, whose weights are the B side.
@inline(never)
public func u8s8gemmMicroKernelVNNI(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>,
                                    _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) {
    vnniMicroKernelBody(ksteps, a, b, c, ldc, accumulate, unsignedA: true)
}

/// The 12 × 32 int32 accumulators of the VNNI micro-kernels (24 zmm registers once inlined): two
/// six-row halves sharing each step's B loads.
struct VNNITile {
    var top = VNNIHalfTile(), bottom = VNNIHalfTile()

    /// `steps` words of four k: B's 32 column words in two loads, multiplied with A's 12 row words
    /// broadcast by `vpdpbusd` (its first source unsigned: A's bytes when `unsignedA`, else B's).
    @inline(__always)
    mutating func accumulate(_ steps: Int, _ pa: inout UnsafePointer<UInt32>, _ pb: inout UnsafePointer<UInt32>, unsignedA: Bool) {
        for _ in 0..<steps {
            let b0 = _mm512_loadu_si512(UnsafeRawPointer(pb)), b1 = _mm512_loadu_si512(UnsafeRawPointer(pb + 16))
            top.step(b0, b1, pa, unsignedA: unsignedA)
            bottom.step(b0, b1, pa + 6, unsignedA: unsignedA)
            pa += 12
            pb += 32
        }
    }

    /// `row(r, columns 0..<16, columns 16..<32)` for the 12 rows.
    @inline(__always)
    func rows(_ row: (Int, __m512i, __m512i) -> Void) {
        top.rows(row)
        bottom.rows { r, v0, v1 in row(6 + r, v0, v1) }
    }
}

@inline(__always)
func vnniMicroKernelBody(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>,
                         _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool, unsignedA: Bool) {
    var tile = VNNITile()
    var pa = a, pb = b
    tile.accumulate(ksteps, &pa, &pb, unsignedA: unsignedA)
    tile.rows { r, v0, v1 in
        let p = UnsafeMutableRawPointer(c + r * ldc)
        if accumulate {
            _mm512_storeu_si512(p, _mm512_add_epi32(_mm512_loadu_si512(UnsafeRawPointer(p)), v0))
            _mm512_storeu_si512(p + 64, _mm512_add_epi32(_mm512_loadu_si512(UnsafeRawPointer(p + 64)), v1))
        } else {
            _mm512_storeu_si512(p, v0)
            _mm512_storeu_si512(p + 64, v1)
        }
    }
}

/// Attention scores of plans with int8 activations: `C[r][j] = (Σ_k A[r][k] · B[k][j] − offsets[r]) ·
/// rowScales[r] · columnScales[j]` in f32 for the first `rows` of the 12 rows (32 columns). A: keys
/// as signed bytes (panel of 12 rows, words of four k), B: queries as unsigned bytes `q + 128`
/// (panel of 32 columns), so `offsets[r] = 128 · Σ_k A[r][k]` takes the `+ 128` out exactly in
/// int32 (a sum of 64 products stays far below 2²⁴, so the conversion to f32 is exact too).
@inline(never)
public func scoresMicroKernelVNNI(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                                  _ rows: Int, _ offsets: UnsafePointer<Int32>, _ rowScales: UnsafePointer<Float>, _ columnScales: UnsafePointer<Float>) {
    var tile = VNNITile()
    var pa = a, pb = b
    tile.accumulate(ksteps, &pa, &pb, unsignedA: false)
    let s0 = _mm512_loadu_ps(UnsafeRawPointer(columnScales)), s1 = _mm512_loadu_ps(UnsafeRawPointer(columnScales + 16))
    tile.rows { r, v0, v1 in
        guard r < rows else { return }
        let off = _mm512_set1_epi32(offsets[r]), rs = _mm512_set1_ps(rowScales[r])
        let p = UnsafeMutableRawPointer(c + r * ldc)
        _mm512_storeu_ps(p, _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v0, off)), rs), s0))
        _mm512_storeu_ps(p + 64, _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v1, off)), rs), s1))
    }
}

/// The int8 × int8 products of plans with int8 activations, in blocks of k: `C[12 × 32] (+)=
/// Σ_blocks scale_block · (A · B)_block` in f32 (C in memory, row-major `ldc`), each block `blockSteps`
/// words of four k summed exactly in int32 by `vpdpbusd`, converted (exact: a block's sum stays
/// below 2²⁴) and scaled. Convolutions: A the weights as unsigned bytes (`w + 128`), B the
/// activations as signed bytes, one scale per column and block (`scales[block · 32 + j]`).
@inline(never)
public func convBlockedMicroKernelVNNI(_ blocks: Int, _ blockSteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>,
                                       _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ scales: UnsafePointer<Float>, _ accumulate: Bool) {
    vnniBlockedBody(blocks, blockSteps, a, b, c, ldc, scales, accumulate, activationsOnA: false)
}

/// As `convBlockedMicroKernelVNNI` for linear layers: A the activations as signed bytes, B the
/// weights as unsigned bytes (`w + 128`), one scale per row and block (`scales[block · 12 + r]`).
@inline(never)
public func linearBlockedMicroKernelVNNI(_ blocks: Int, _ blockSteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>,
                                         _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ scales: UnsafePointer<Float>, _ accumulate: Bool) {
    vnniBlockedBody(blocks, blockSteps, a, b, c, ldc, scales, accumulate, activationsOnA: true)
}

/// Six rows of the 12 × 32 int32 accumulators (12 zmm), for the blocked kernels: with the six rows'
/// f32 sums (12 more) everything stays in registers across the blocks.
struct VNNIHalfTile {
    var c00 = _mm512_setzero_si512(), c01 = _mm512_setzero_si512()
    var c10 = _mm512_setzero_si512(), c11 = _mm512_setzero_si512()
    var c20 = _mm512_setzero_si512(), c21 = _mm512_setzero_si512()
    var c30 = _mm512_setzero_si512(), c31 = _mm512_setzero_si512()
    var c40 = _mm512_setzero_si512(), c41 = _mm512_setzero_si512()
    var c50 = _mm512_setzero_si512(), c51 = _mm512_setzero_si512()

    /// One step of four k: the six row words `pa[0..<6]` broadcast against B's columns `b0`, `b1`.
    @inline(__always)
    mutating func step(_ b0: __m512i, _ b1: __m512i, _ pa: UnsafePointer<UInt32>, unsignedA: Bool) {
        @inline(__always) func dp(_ acc: __m512i, _ bv: __m512i, _ x: __m512i) -> __m512i {
            unsignedA ? _mm512_dpbusd_epi32(acc, x, bv) : _mm512_dpbusd_epi32(acc, bv, x)
        }
        var x = _mm512_set1_epi32(Int32(bitPattern: pa[0])); c00 = dp(c00, b0, x); c01 = dp(c01, b1, x)
        x = _mm512_set1_epi32(Int32(bitPattern: pa[1])); c10 = dp(c10, b0, x); c11 = dp(c11, b1, x)
        x = _mm512_set1_epi32(Int32(bitPattern: pa[2])); c20 = dp(c20, b0, x); c21 = dp(c21, b1, x)
        x = _mm512_set1_epi32(Int32(bitPattern: pa[3])); c30 = dp(c30, b0, x); c31 = dp(c31, b1, x)
        x = _mm512_set1_epi32(Int32(bitPattern: pa[4])); c40 = dp(c40, b0, x); c41 = dp(c41, b1, x)
        x = _mm512_set1_epi32(Int32(bitPattern: pa[5])); c50 = dp(c50, b0, x); c51 = dp(c51, b1, x)
    }

    /// `steps` words of four k of rows `pa[0..<6]` (a 12-row panel: `pa` advances 12 a step).
    @inline(__always)
    mutating func accumulate(_ steps: Int, _ pa: inout UnsafePointer<UInt32>, _ pb: inout UnsafePointer<UInt32>, unsignedA: Bool) {
        for _ in 0..<steps {
            step(_mm512_loadu_si512(UnsafeRawPointer(pb)), _mm512_loadu_si512(UnsafeRawPointer(pb + 16)), pa, unsignedA: unsignedA)
            pa += 12
            pb += 32
        }
    }

    /// `row(r, columns 0..<16, columns 16..<32)` for the six rows.
    @inline(__always)
    func rows(_ row: (Int, __m512i, __m512i) -> Void) {
        row(0, c00, c01); row(1, c10, c11); row(2, c20, c21); row(3, c30, c31); row(4, c40, c41); row(5, c50, c51)
    }
}

/// f32 sums of six rows × 32 columns (12 zmm).
struct HalfTileF32 {
    var f00 = _mm512_setzero_ps(), f01 = _mm512_setzero_ps()
    var f10 = _mm512_setzero_ps(), f11 = _mm512_setzero_ps()
    var f20 = _mm512_setzero_ps(), f21 = _mm512_setzero_ps()
    var f30 = _mm512_setzero_ps(), f31 = _mm512_setzero_ps()
    var f40 = _mm512_setzero_ps(), f41 = _mm512_setzero_ps()
    var f50 = _mm512_setzero_ps(), f51 = _mm512_setzero_ps()

    /// `f += float(t) · scale`: row scales `rowScale(r)` (linear layers) or column scales `(s0, s1)`.
    @inline(__always)
    mutating func add(_ t: VNNIHalfTile, _ s0: __m512, _ s1: __m512, rowScales: UnsafePointer<Float>?) {
        @inline(__always) func f(_ c: __m512i, _ s: __m512, _ acc: __m512) -> __m512 { _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), s, acc) }
        if let r = rowScales {
            var s = _mm512_set1_ps(r[0]); f00 = f(t.c00, s, f00); f01 = f(t.c01, s, f01)
            s = _mm512_set1_ps(r[1]); f10 = f(t.c10, s, f10); f11 = f(t.c11, s, f11)
            s = _mm512_set1_ps(r[2]); f20 = f(t.c20, s, f20); f21 = f(t.c21, s, f21)
            s = _mm512_set1_ps(r[3]); f30 = f(t.c30, s, f30); f31 = f(t.c31, s, f31)
            s = _mm512_set1_ps(r[4]); f40 = f(t.c40, s, f40); f41 = f(t.c41, s, f41)
            s = _mm512_set1_ps(r[5]); f50 = f(t.c50, s, f50); f51 = f(t.c51, s, f51)
        } else {
            f00 = f(t.c00, s0, f00); f01 = f(t.c01, s1, f01)
            f10 = f(t.c10, s0, f10); f11 = f(t.c11, s1, f11)
            f20 = f(t.c20, s0, f20); f21 = f(t.c21, s1, f21)
            f30 = f(t.c30, s0, f30); f31 = f(t.c31, s1, f31)
            f40 = f(t.c40, s0, f40); f41 = f(t.c41, s1, f41)
            f50 = f(t.c50, s0, f50); f51 = f(t.c51, s1, f51)
        }
    }

    @inline(__always)
    func rows(_ row: (Int, __m512, __m512) -> Void) {
        row(0, f00, f01); row(1, f10, f11); row(2, f20, f21); row(3, f30, f31); row(4, f40, f41); row(5, f50, f51)
    }
}

/// The blocked products six rows at a time, their f32 sums kept in registers across the blocks
/// (the 12-row tile's sums went through memory after every block); the same operations on each
/// value, in the same order, as the 12-row body.
@inline(__always)
func vnniBlockedBody(_ blocks: Int, _ blockSteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>,
                     _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ scales: UnsafePointer<Float>, _ accumulate: Bool,
                     activationsOnA: Bool) {
    for half in 0..<2 {
        var sums = HalfTileF32()
        let c0 = c + 6 * half * ldc
        var pa = a + 6 * half, pb = b
        for block in 0..<blocks {
            var tile = VNNIHalfTile()
            tile.accumulate(blockSteps, &pa, &pb, unsignedA: !activationsOnA)
            if block == 0 && accumulate {
                // The first block adds to what C holds (the order of the 12-row body: fma onto C).
                var loaded = HalfTileF32()
                @inline(__always) func ld(_ r: Int, _ o: Int) -> __m512 { _mm512_loadu_ps(UnsafeRawPointer(c0 + r * ldc + o)) }
                loaded.f00 = ld(0, 0); loaded.f01 = ld(0, 16); loaded.f10 = ld(1, 0); loaded.f11 = ld(1, 16)
                loaded.f20 = ld(2, 0); loaded.f21 = ld(2, 16); loaded.f30 = ld(3, 0); loaded.f31 = ld(3, 16)
                loaded.f40 = ld(4, 0); loaded.f41 = ld(4, 16); loaded.f50 = ld(5, 0); loaded.f51 = ld(5, 16)
                sums = loaded
            }
            let s = scales + block * (activationsOnA ? 12 : 32)
            if activationsOnA {
                sums.add(tile, _mm512_setzero_ps(), _mm512_setzero_ps(), rowScales: s + 6 * half)
            } else {
                sums.add(tile, _mm512_loadu_ps(UnsafeRawPointer(s)), _mm512_loadu_ps(UnsafeRawPointer(s + 16)), rowScales: nil)
            }
        }
        sums.rows { r, v0, v1 in
            let p = UnsafeMutableRawPointer(c0 + r * ldc)
            _mm512_storeu_ps(p, v0)
            _mm512_storeu_ps(p + 64, v1)
        }
    }
}

/// 12 independent `vpdpbusd` per iteration on registers: 12 · 16 · 4 · 2 int8 operations each.
@inline(never)
public func vnniPeak(_ iterations: Int, _ seed: Int32) -> Int32 {
    let a = _mm512_set1_epi32(0x0101_0101), b = _mm512_set1_epi32(0x0102_0304)
    var c0 = _mm512_set1_epi32(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0
    var c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0
    for _ in 0..<iterations {
        c0 = _mm512_dpbusd_epi32(c0, a, b); c1 = _mm512_dpbusd_epi32(c1, a, b); c2 = _mm512_dpbusd_epi32(c2, a, b)
        c3 = _mm512_dpbusd_epi32(c3, a, b); c4 = _mm512_dpbusd_epi32(c4, a, b); c5 = _mm512_dpbusd_epi32(c5, a, b)
        c6 = _mm512_dpbusd_epi32(c6, a, b); c7 = _mm512_dpbusd_epi32(c7, a, b); c8 = _mm512_dpbusd_epi32(c8, a, b)
        c9 = _mm512_dpbusd_epi32(c9, a, b); c10 = _mm512_dpbusd_epi32(c10, a, b); c11 = _mm512_dpbusd_epi32(c11, a, b)
    }
    let s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)), _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)))
    return _mm512_reduce_add_epi32(_mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11))))
}
#endif
