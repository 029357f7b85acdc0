// CRC-32 of zlib and zip (reflected polynomial 0xEDB88320), the bulk folded with carry-less
// multiplies as in Intel's white paper "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
// Instruction" (Gopal et al., 2009): four 128-bit lanes are folded forward 512 bits at a time
// (multiplying by x^(512±64) mod P), then into one lane (x^(128±64) mod P), 128 → 64 → 32 bits,
// and a Barrett reduction gives the remainder. Constants are the paper's for this polynomial in the
// bit-reflected domain. The tail (under 16 bytes), short inputs and processors without PCLMULQDQ
// take zlib's crc32_z. In C, not Swift: the plan reader is built without optimisation in tests, and
// this loop is what every plan open runs over all of its weights.
#include "cchecksum.h"
#include <zlib.h>

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("pclmul,sse4.1")))
static inline __m128i fold_lane(__m128i x, __m128i k, __m128i next) {
    // x·(k.lo) for x's low half and x·(k.hi) for its high half, both moved 128 bits on, plus the data there.
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}

/// The CRC register (pre- and post-inverted by the caller, as zlib keeps it) after `len` bytes:
/// `len` ≥ 64 and a multiple of 16.
__attribute__((target("pclmul,sse4.1")))
static uint32_t fold(const unsigned char *p, size_t len, uint32_t reg) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
    const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);  // μ (high), P' (low)
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
    __m128i x1 = _mm_loadu_si128((const __m128i *)p), x2 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32)), x4 = _mm_loadu_si128((const __m128i *)(p + 48));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)reg));
    p += 64;
    len -= 64;
    while (len >= 64) {
        x1 = fold_lane(x1, k1k2, _mm_loadu_si128((const __m128i *)p));
        x2 = fold_lane(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
        x3 = fold_lane(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
        x4 = fold_lane(x4, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        len -= 64;
    }
    // Four lanes into one, then the remaining 16-byte blocks.
    x1 = fold_lane(x1, k3k4, x2);
    x1 = fold_lane(x1, k3k4, x3);
    x1 = fold_lane(x1, k3k4, x4);
    while (len >= 16) {
        x1 = fold_lane(x1, k3k4, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        len -= 16;
    }
    // 128 → 64 bits.
    __m128i t = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), t);
    // 64 → 32 bits (and 32 more to reduce).
    t = _mm_srli_si128(x1, 4);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00), t);
    // Barrett reduction.
    t = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), poly, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), poly, 0x00);
    x1 = _mm_xor_si128(x1, t);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

uint32_t dc_crc32(uint32_t crc, const unsigned char *p, size_t n) {
#if defined(__x86_64__)
    if (n >= 64 && __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) {
        size_t bulk = n & ~(size_t)15;
        crc = ~fold(p, bulk, ~crc);
        p += bulk;
        n -= bulk;
    }
#endif
    if (n == 0) return crc;
    return (uint32_t)crc32_z(crc, p, n);
}
