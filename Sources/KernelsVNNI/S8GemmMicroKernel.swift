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

/// The 12 × 32 int32 accumulators of the VNNI micro-kernels (24 zmm registers once inlined).
struct VNNITile {
    var c00 = _mm512_setzero_si512(), c01 = _mm512_setzero_si512()
    var c10 = _mm512_setzero_si512(), c11 = _mm512_setzero_si512()
    var c20 = _mm512_setzero_si512(), c21 = _mm512_setzero_si512()
    var c30 = _mm512_setzero_si512(), c31 = _mm512_setzero_si512()
    var c40 = _mm512_setzero_si512(), c41 = _mm512_setzero_si512()
    var c50 = _mm512_setzero_si512(), c51 = _mm512_setzero_si512()
    var c60 = _mm512_setzero_si512(), c61 = _mm512_setzero_si512()
    var c70 = _mm512_setzero_si512(), c71 = _mm512_setzero_si512()
    var c80 = _mm512_setzero_si512(), c81 = _mm512_setzero_si512()
    var c90 = _mm512_setzero_si512(), c91 = _mm512_setzero_si512()
    var ca0 = _mm512_setzero_si512(), ca1 = _mm512_setzero_si512()
    var cb0 = _mm512_setzero_si512(), cb1 = _mm512_setzero_si512()

    /// `steps` words of four k: A's 12 row words broadcast, B's 32 column words in two loads, each
    /// pair multiplied by `vpdpbusd` (its first source unsigned: A's bytes when `unsignedA`, else B's).
    @inline(__always)
    mutating func accumulate(_ steps: Int, _ pa: inout UnsafePointer<UInt32>, _ pb: inout UnsafePointer<UInt32>, unsignedA: Bool) {
        @inline(__always) func dp(_ acc: __m512i, _ bv: __m512i, _ x: __m512i) -> __m512i {
            unsignedA ? _mm512_dpbusd_epi32(acc, x, bv) : _mm512_dpbusd_epi32(acc, bv, x)
        }
        for _ in 0..<steps {
            let b0 = _mm512_loadu_si512(UnsafeRawPointer(pb)), b1 = _mm512_loadu_si512(UnsafeRawPointer(pb + 16))
            var x = _mm512_set1_epi32(Int32(bitPattern: pa[0])); c00 = dp(c00, b0, x); c01 = dp(c01, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[1])); c10 = dp(c10, b0, x); c11 = dp(c11, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[2])); c20 = dp(c20, b0, x); c21 = dp(c21, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[3])); c30 = dp(c30, b0, x); c31 = dp(c31, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[4])); c40 = dp(c40, b0, x); c41 = dp(c41, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[5])); c50 = dp(c50, b0, x); c51 = dp(c51, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[6])); c60 = dp(c60, b0, x); c61 = dp(c61, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[7])); c70 = dp(c70, b0, x); c71 = dp(c71, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[8])); c80 = dp(c80, b0, x); c81 = dp(c81, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[9])); c90 = dp(c90, b0, x); c91 = dp(c91, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[10])); ca0 = dp(ca0, b0, x); ca1 = dp(ca1, b1, x)
            x = _mm512_set1_epi32(Int32(bitPattern: pa[11])); cb0 = dp(cb0, b0, x); cb1 = dp(cb1, b1, x)
            pa += 12
            pb += 32
        }
    }

    /// `row(r, columns 0..<16, columns 16..<32)` for the 12 rows.
    @inline(__always)
    func rows(_ row: (Int, __m512i, __m512i) -> Void) {
        row(0, c00, c01); row(1, c10, c11); row(2, c20, c21); row(3, c30, c31)
        row(4, c40, c41); row(5, c50, c51); row(6, c60, c61); row(7, c70, c71)
        row(8, c80, c81); row(9, c90, c91); row(10, ca0, ca1); row(11, cb0, cb1)
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

@inline(__always)
func vnniBlockedBody(_ blocks: Int, _ blockSteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>,
                     _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ scales: UnsafePointer<Float>, _ accumulate: Bool,
                     activationsOnA: Bool) {
    var pa = a, pb = b
    for block in 0..<blocks {
        // The weights are the unsigned operand: on B for linear layers, on A for convolutions.
        var tile = VNNITile()
        tile.accumulate(blockSteps, &pa, &pb, unsignedA: !activationsOnA)
        let first = block == 0 && !accumulate
        let s = scales + block * (activationsOnA ? 12 : 32)
        let sc0 = activationsOnA ? _mm512_setzero_ps() : _mm512_loadu_ps(UnsafeRawPointer(s))
        let sc1 = activationsOnA ? _mm512_setzero_ps() : _mm512_loadu_ps(UnsafeRawPointer(s + 16))
        tile.rows { r, v0, v1 in
            let p = UnsafeMutableRawPointer(c + r * ldc)
            let (f0, f1) = activationsOnA ? (_mm512_set1_ps(s[r]), _mm512_set1_ps(s[r])) : (sc0, sc1)
            if first {
                _mm512_storeu_ps(p, _mm512_mul_ps(_mm512_cvtepi32_ps(v0), f0))
                _mm512_storeu_ps(p + 64, _mm512_mul_ps(_mm512_cvtepi32_ps(v1), f1))
            } else {
                _mm512_storeu_ps(p, _mm512_fmadd_ps(_mm512_cvtepi32_ps(v0), f0, _mm512_loadu_ps(UnsafeRawPointer(p))))
                _mm512_storeu_ps(p + 64, _mm512_fmadd_ps(_mm512_cvtepi32_ps(v1), f1, _mm512_loadu_ps(UnsafeRawPointer(p + 64))))
            }
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
