#ifndef CKERNELS_H
#define CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Processor features the kernels dispatch on (each includes the OS's support for the register state). */
enum {
    CK_AVX2_FMA = 1 << 0,   /* AVX2 and FMA3 */
    CK_AVX512 = 1 << 1,     /* AVX-512 F, CD, BW, DQ, VL */
    CK_AVX512_VNNI = 1 << 2,
    CK_AVX512_BF16 = 1 << 3,
};
unsigned ck_cpu_features(void);
// One spin-wait hint (x86 `pause`; nothing elsewhere).
void ck_spin_pause(void);

/* C[12 x 32] (+)= A . B over `ksteps` pairs of k: A a packed panel of 12 rows per step (each a
   32-bit word holding the bf16 values of k and k+1), B a packed panel of 32 such words per step,
   or (offsets non-null) the 32 words at b + offsets[step]. f32 accumulation (vdpbf16ps).
   Only on processors with AVX512_BF16. */
void ck_sbgemm_avx512bf16(long ksteps, const uint32_t *a, const uint32_t *b, const long *offsets,
                          float *c, long ldc, int accumulate);
/* C[12 x 32] (+)= A . B in f32 over `kc` steps (A: 12 floats a step, B: 32 floats a step, or the 32
   floats at b + offsets[step]), with A and B prefetched ahead. AVX-512 only. */
void ck_sgemm_avx512(long kc, const float *a, const float *b, const long *offsets, float *c, long ldc, int accumulate);
/* Its first 4 (or 8) rows only, A steps `a_stride` floats apart. */
void ck_sgemm_avx512_rows4(long kc, const float *a, long a_stride, const float *b, float *c, long ldc, int accumulate);
void ck_sgemm_avx512_rows8(long kc, const float *a, long a_stride, const float *b, float *c, long ldc, int accumulate);
/* The same product for the first 4 (or 8) rows of a 12-row A panel only (A steps `a_stride` words
   apart): a panel's tail rows without the multiplies of its padding. */
void ck_sbgemm_avx512bf16_rows4(long ksteps, const uint32_t *a, long a_stride, const uint32_t *b, float *c, long ldc, int accumulate);
void ck_sbgemm_avx512bf16_rows8(long ksteps, const uint32_t *a, long a_stride, const uint32_t *b, float *c, long ldc, int accumulate);
/* 12 independent vdpbf16ps per iteration (12 * 64 flops): the bf16 peak of one core. */
float ck_bf16_peak(long iterations, float seed);
/* The bf16 attention's online-softmax step over `rows` key rows of 32 query scores (base-2 units):
   new maxima, 2^(s - max) with the running sums and the corrections of the previous terms, and the
   probabilities as bf16 words (rows 2i and 2i+1 of s in word row i of `pairs`), converted by
   vcvtne2ps2bf16. The operations of the Swift step (KernelsAVX512), so the same sums. */
void ck_softmax_columns32_base2_pairs(const float *s, long rows, float *running_max, float *running_sum, float *correction,
                                      uint32_t *pairs);
/* f32 -> bf16 rounding to nearest even, with the native conversion. */
void ck_f32_to_bf16_avx512bf16(const float *src, uint16_t *dst, long count);

#endif
