// Runtime CPU feature detection (the compiler's cpu model, which also checks XCR0 for the AVX and
// AVX-512 register state): Swift has no equivalent of __builtin_cpu_supports.
#include "ckernels.h"

unsigned ck_cpu_features(void) {
    unsigned f = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) f |= CK_AVX2_FMA;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) f |= CK_AVX512;
    if ((f & CK_AVX512) && __builtin_cpu_supports("avx512vnni")) f |= CK_AVX512_VNNI;
    if ((f & CK_AVX512) && __builtin_cpu_supports("avx512bf16")) f |= CK_AVX512_BF16;
#endif
    return f;
}

// A spin-wait hint (`pause`): Swift cannot call the intrinsic, which the header defines inline.
void ck_spin_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}
