// The bf16 micro-kernel (AVX512_BF16 `vdpbf16ps`, f32 accumulation). C because Swift does not
// import the bf16 vector types and intrinsics; compiled for that extension only in this function
// and called only when CPUID reports it (Kernels/Gemm.swift dispatches).
#include "ckernels.h"
#if defined(__x86_64__)
#include <immintrin.h>

#define CK_ACC(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
#define CK_STEP(r) { __m512bh x = (__m512bh)_mm512_set1_epi32((int)pa[r]); \
    c##r##0 = _mm512_dpbf16_ps(c##r##0, x, b0); c##r##1 = _mm512_dpbf16_ps(c##r##1, x, b1); }
#define CK_STORE(r) { float *p = c + (r) * ldc; \
    if (accumulate) { c##r##0 = _mm512_add_ps(_mm512_loadu_ps(p), c##r##0); c##r##1 = _mm512_add_ps(_mm512_loadu_ps(p + 16), c##r##1); } \
    _mm512_storeu_ps(p, c##r##0); _mm512_storeu_ps(p + 16, c##r##1); }
// A (the packed panel: a convolution's weights, streamed from memory once per tile) is prefetched
// 96 steps (4.5 KB) ahead: at the deep levels of a UNet the hardware prefetcher alone left the
// kernel waiting for memory (a panel is a 98 KB run, then a jump to the next panel).
#define CK_PREFETCH_STEPS 96
#define CK_LOOP(ADDRESS) \
    for (long p = 0; p < ksteps; p++) { \
        const uint32_t *pb = (ADDRESS); \
        _mm_prefetch((const char *)(pa + 12 * CK_PREFETCH_STEPS), _MM_HINT_T0); \
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(pb), b1 = (__m512bh)_mm512_loadu_si512(pb + 16); \
        CK_STEP(0) CK_STEP(1) CK_STEP(2) CK_STEP(3) CK_STEP(4) CK_STEP(5) \
        CK_STEP(6) CK_STEP(7) CK_STEP(8) CK_STEP(9) CK_STEP(10) CK_STEP(11) \
        pa += 12; \
    }

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
void ck_sbgemm_avx512bf16(long ksteps, const uint32_t *a, const uint32_t *b, const long *offsets,
                          float *c, long ldc, int accumulate) {
    CK_ACC(0) CK_ACC(1) CK_ACC(2) CK_ACC(3) CK_ACC(4) CK_ACC(5)
    CK_ACC(6) CK_ACC(7) CK_ACC(8) CK_ACC(9) CK_ACC(10) CK_ACC(11)
    const uint32_t *pa = a;
    if (offsets) {
        CK_LOOP(b + offsets[p])
    } else {
        CK_LOOP(b + p * 32)
    }
    CK_STORE(0) CK_STORE(1) CK_STORE(2) CK_STORE(3) CK_STORE(4) CK_STORE(5)
    CK_STORE(6) CK_STORE(7) CK_STORE(8) CK_STORE(9) CK_STORE(10) CK_STORE(11)
}

#define CK_PARTIAL_LOOP(STEPS) \
    for (long p = 0; p < ksteps; p++) { \
        const uint32_t *pb = b + p * 32; \
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(pb), b1 = (__m512bh)_mm512_loadu_si512(pb + 16); \
        STEPS \
        pa += a_stride; \
    }

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
void ck_sbgemm_avx512bf16_rows4(long ksteps, const uint32_t *a, long a_stride, const uint32_t *b, float *c, long ldc, int accumulate) {
    CK_ACC(0) CK_ACC(1) CK_ACC(2) CK_ACC(3)
    const uint32_t *pa = a;
    CK_PARTIAL_LOOP(CK_STEP(0) CK_STEP(1) CK_STEP(2) CK_STEP(3))
    CK_STORE(0) CK_STORE(1) CK_STORE(2) CK_STORE(3)
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
void ck_sbgemm_avx512bf16_rows8(long ksteps, const uint32_t *a, long a_stride, const uint32_t *b, float *c, long ldc, int accumulate) {
    CK_ACC(0) CK_ACC(1) CK_ACC(2) CK_ACC(3) CK_ACC(4) CK_ACC(5) CK_ACC(6) CK_ACC(7)
    const uint32_t *pa = a;
    CK_PARTIAL_LOOP(CK_STEP(0) CK_STEP(1) CK_STEP(2) CK_STEP(3) CK_STEP(4) CK_STEP(5) CK_STEP(6) CK_STEP(7))
    CK_STORE(0) CK_STORE(1) CK_STORE(2) CK_STORE(3) CK_STORE(4) CK_STORE(5) CK_STORE(6) CK_STORE(7)
}

__attribute__((target("avx512f,avx512bf16")))
float ck_bf16_peak(long iterations, float seed) {
    __m512 c0 = _mm512_set1_ps(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33803380);
    for (long t = 0; t < iterations; t++) {
        c0 = _mm512_dpbf16_ps(c0, a, b); c1 = _mm512_dpbf16_ps(c1, a, b); c2 = _mm512_dpbf16_ps(c2, a, b);
        c3 = _mm512_dpbf16_ps(c3, a, b); c4 = _mm512_dpbf16_ps(c4, a, b); c5 = _mm512_dpbf16_ps(c5, a, b);
        c6 = _mm512_dpbf16_ps(c6, a, b); c7 = _mm512_dpbf16_ps(c7, a, b); c8 = _mm512_dpbf16_ps(c8, a, b);
        c9 = _mm512_dpbf16_ps(c9, a, b); c10 = _mm512_dpbf16_ps(c10, a, b); c11 = _mm512_dpbf16_ps(c11, a, b);
        __asm__ volatile("" : "+v"(a), "+v"(b));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)), _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    return _mm512_reduce_add_ps(s);
}

#define CK_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

// 2^x for 16 lanes: x − round(x) through a degree-4 polynomial, scaled with vscalefps (as
// `exp2Short16` in KernelsAVX512, operation for operation).
static inline CK_TARGET_BF16 __m512 ck_exp2_short16(__m512 v) {
    __m512 x = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-150.0f)), _mm512_set1_ps(128.0f));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 n = _mm512_sub_ps(_mm512_add_ps(x, magic), magic);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(9.6181291e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

CK_TARGET_BF16
void ck_softmax_columns32_base2_pairs(const float *s, long rows, float *running_max, float *running_sum, float *correction,
                                      uint32_t *pairs) {
    __m512 m0 = _mm512_loadu_ps(running_max), m1 = _mm512_loadu_ps(running_max + 16);
    const __m512 old0 = m0, old1 = m1;
    for (long r = 0; r < rows; r++) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + r * 32));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(s + r * 32 + 16));
    }
    // Base 0 for a query whose scores are all −∞ so far (m + FLT_MAX is negative only for −∞).
    const __m512 big = _mm512_set1_ps(3.40282347e+38f), zero = _mm512_setzero_ps();
    const __m512 base0 = _mm512_mask_blend_ps(_mm512_movepi32_mask(_mm512_castps_si512(_mm512_add_ps(m0, big))), m0, zero);
    const __m512 base1 = _mm512_mask_blend_ps(_mm512_movepi32_mask(_mm512_castps_si512(_mm512_add_ps(m1, big))), m1, zero);
    // vcvtne2ps2bf16 puts row 2i's 16 values below row 2i+1's: interleave them into words.
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512 sum0 = zero, sum1 = zero;
    for (long r = 0; r < rows; r += 2) {
        const float *p = s + r * 32;
        __m512 e0 = ck_exp2_short16(_mm512_sub_ps(_mm512_loadu_ps(p), base0));
        __m512 e1 = ck_exp2_short16(_mm512_sub_ps(_mm512_loadu_ps(p + 16), base1));
        sum0 = _mm512_add_ps(sum0, e0);
        sum1 = _mm512_add_ps(sum1, e1);
        __m512 f0 = zero, f1 = zero;
        if (r + 1 < rows) {
            f0 = ck_exp2_short16(_mm512_sub_ps(_mm512_loadu_ps(p + 32), base0));
            f1 = ck_exp2_short16(_mm512_sub_ps(_mm512_loadu_ps(p + 48), base1));
            sum0 = _mm512_add_ps(sum0, f0);
            sum1 = _mm512_add_ps(sum1, f1);
        }
        __m512i w0 = _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(f0, e0));
        __m512i w1 = _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(f1, e1));
        _mm512_storeu_si512(pairs + (r / 2) * 32, w0);
        _mm512_storeu_si512(pairs + (r / 2) * 32 + 16, w1);
    }
    const __m512 c0 = ck_exp2_short16(_mm512_sub_ps(old0, base0)), c1 = ck_exp2_short16(_mm512_sub_ps(old1, base1));
    _mm512_storeu_ps(correction, c0);
    _mm512_storeu_ps(correction + 16, c1);
    _mm512_storeu_ps(running_sum, _mm512_fmadd_ps(_mm512_loadu_ps(running_sum), c0, sum0));
    _mm512_storeu_ps(running_sum + 16, _mm512_fmadd_ps(_mm512_loadu_ps(running_sum + 16), c1, sum1));
    _mm512_storeu_ps(running_max, m0);
    _mm512_storeu_ps(running_max + 16, m1);
}

// f32 → bf16, round to nearest even (NaN stays NaN), 16 at a time where the CPU converts natively.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
void ck_f32_to_bf16_avx512bf16(const float *src, uint16_t *dst, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)v);
    }
    for (; i < count; i++) {
        uint32_t bits; __builtin_memcpy(&bits, src + i, 4);
        if ((bits & 0x7fffffff) > 0x7f800000) dst[i] = (uint16_t)((bits >> 16) | 0x40);
        else dst[i] = (uint16_t)((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
    }
}
#else
void ck_sbgemm_avx512bf16(long ksteps, const uint32_t *a, const uint32_t *b, const long *offsets, float *c, long ldc, int accumulate) {}
float ck_bf16_peak(long iterations, float seed) { return 0; }
void ck_sbgemm_avx512bf16_rows4(long ksteps, const uint32_t *a, long a_stride, const uint32_t *b, float *c, long ldc, int accumulate) {}
void ck_sbgemm_avx512bf16_rows8(long ksteps, const uint32_t *a, long a_stride, const uint32_t *b, float *c, long ldc, int accumulate) {}
void ck_f32_to_bf16_avx512bf16(const float *src, uint16_t *dst, long count) {}
void ck_softmax_columns32_base2_pairs(const float *s, long rows, float *running_max, float *running_sum, float *correction,
                                      uint32_t *pairs) {}
#endif
