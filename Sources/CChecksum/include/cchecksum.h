#ifndef CCHECKSUM_H
#define CCHECKSUM_H
#include <stddef.h>
#include <stdint.h>

/// zlib's crc32 (polynomial 0xEDB88320, the same values as `crc32_z(crc, p, n)`), folded with
/// carry-less multiplies (PCLMULQDQ) where the processor has them: plan checksums at memory speed.
uint32_t dc_crc32(uint32_t crc, const unsigned char *p, size_t n);

#endif
