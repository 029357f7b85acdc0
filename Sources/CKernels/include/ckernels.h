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

#endif
