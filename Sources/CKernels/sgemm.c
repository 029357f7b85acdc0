// The f32 AVX-512 micro-kernel, C[12 × 32] (+)= A · B, in C for one thing Swift cannot say: software
// prefetches. The panels streamed from memory once (a convolution's weights as A, a linear layer's
// as B when it has few rows) are fetched ahead of the loads; the hardware prefetcher alone left the
// kernel waiting for memory (CLIP's 77-row layers, the UNet's 8 × 8 level). The arithmetic is the
// Swift kernel's (KernelsAVX512): per step two B loads, twelve broadcasts, 24 FMAs; C once at the end.
#include "ckernels.h"
#if defined(__x86_64__)
#include <immintrin.h>

#define CK_F32_A_AHEAD 64   /* steps of 12 floats: 3 KB */
#define CK_F32_B_AHEAD 16   /* steps of 32 floats: 2 KB */

#define CK_FACC(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
#define CK_FSTEP(r) { __m512 x = _mm512_set1_ps(pa[r]); \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0); c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1); }
#define CK_FSTORE(r) { float *p = c + (r) * ldc; \
    if (accumulate) { c##r##0 = _mm512_add_ps(_mm512_loadu_ps(p), c##r##0); c##r##1 = _mm512_add_ps(_mm512_loadu_ps(p + 16), c##r##1); } \
    _mm512_storeu_ps(p, c##r##0); _mm512_storeu_ps(p + 16, c##r##1); }
#define CK_FBODY \
        __m512 b0 = _mm512_loadu_ps(pb), b1 = _mm512_loadu_ps(pb + 16); \
        _mm_prefetch((const char *)(pa + 12 * CK_F32_A_AHEAD), _MM_HINT_T0); \
        CK_FSTEP(0) CK_FSTEP(1) CK_FSTEP(2) CK_FSTEP(3) CK_FSTEP(4) CK_FSTEP(5) \
        CK_FSTEP(6) CK_FSTEP(7) CK_FSTEP(8) CK_FSTEP(9) CK_FSTEP(10) CK_FSTEP(11) \
        pa += 12;

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
void ck_sgemm_avx512(long kc, const float *a, const float *b, const long *offsets, float *c, long ldc, int accumulate) {
    CK_FACC(0) CK_FACC(1) CK_FACC(2) CK_FACC(3) CK_FACC(4) CK_FACC(5)
    CK_FACC(6) CK_FACC(7) CK_FACC(8) CK_FACC(9) CK_FACC(10) CK_FACC(11)
    const float *pa = a;
    if (offsets) {
        for (long p = 0; p < kc; p++) {
            const float *pb = b + offsets[p];
            CK_FBODY
        }
    } else {
        for (long p = 0; p < kc; p++) {
            const float *pb = b + p * 32;
            _mm_prefetch((const char *)(pb + 32 * CK_F32_B_AHEAD), _MM_HINT_T0);
            _mm_prefetch((const char *)(pb + 32 * CK_F32_B_AHEAD + 16), _MM_HINT_T0);
            CK_FBODY
        }
    }
    CK_FSTORE(0) CK_FSTORE(1) CK_FSTORE(2) CK_FSTORE(3) CK_FSTORE(4) CK_FSTORE(5)
    CK_FSTORE(6) CK_FSTORE(7) CK_FSTORE(8) CK_FSTORE(9) CK_FSTORE(10) CK_FSTORE(11)
}

// The first 4 (or 8) rows of a 12-row A panel only (A steps `a_stride` floats apart): a panel's
// tail rows without the multiplies of its padding (77 rows are 6 panels and 5 rows).
#define CK_FPARTIAL(NAME, ACCS, STEPS, STORES) \
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) \
void NAME(long kc, const float *a, long a_stride, const float *b, float *c, long ldc, int accumulate) { \
    ACCS \
    const float *pa = a; \
    for (long p = 0; p < kc; p++) { \
        const float *pb = b + p * 32; \
        __m512 b0 = _mm512_loadu_ps(pb), b1 = _mm512_loadu_ps(pb + 16); \
        STEPS \
        pa += a_stride; \
    } \
    STORES \
}
CK_FPARTIAL(ck_sgemm_avx512_rows4, CK_FACC(0) CK_FACC(1) CK_FACC(2) CK_FACC(3),
            CK_FSTEP(0) CK_FSTEP(1) CK_FSTEP(2) CK_FSTEP(3), CK_FSTORE(0) CK_FSTORE(1) CK_FSTORE(2) CK_FSTORE(3))
CK_FPARTIAL(ck_sgemm_avx512_rows8, CK_FACC(0) CK_FACC(1) CK_FACC(2) CK_FACC(3) CK_FACC(4) CK_FACC(5) CK_FACC(6) CK_FACC(7),
            CK_FSTEP(0) CK_FSTEP(1) CK_FSTEP(2) CK_FSTEP(3) CK_FSTEP(4) CK_FSTEP(5) CK_FSTEP(6) CK_FSTEP(7),
            CK_FSTORE(0) CK_FSTORE(1) CK_FSTORE(2) CK_FSTORE(3) CK_FSTORE(4) CK_FSTORE(5) CK_FSTORE(6) CK_FSTORE(7))
#else
void ck_sgemm_avx512(long kc, const float *a, const float *b, const long *offsets, float *c, long ldc, int accumulate) {}
void ck_sgemm_avx512_rows4(long kc, const float *a, long a_stride, const float *b, float *c, long ldc, int accumulate) {}
void ck_sgemm_avx512_rows8(long kc, const float *a, long a_stride, const float *b, float *c, long ldc, int accumulate) {}
#endif
