// A thin C layer over libpng (and zlib, re-exported): libpng reports errors by longjmp, which
// Swift cannot catch, so decoding and encoding run here and return an error string instead.
#ifndef CPNG_H
#define CPNG_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/// A decoded image: interleaved samples, rows top to bottom, 8-bit samples as bytes or 16-bit
/// samples as native-endian uint16. Palette images are expanded to RGB (RGBA with tRNS), gray
/// below 8 bits is scaled to 8 bits, a tRNS colour key becomes an alpha channel.
typedef struct {
    uint32_t width;
    uint32_t height;
    int channels;      // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    int bit_depth;     // 8 or 16
    int source_color_type;  // PNG colour type of the file (0 gray, 2 RGB, 3 palette, 4 GA, 6 RGBA)
    int source_bit_depth;
    void *pixels;      // malloc'ed; free with cpng_free
    size_t size;       // bytes of pixels
} cpng_image;

/// Decodes a PNG held in memory. Returns 0 on success; otherwise fills `error` (NUL-terminated).
/// Images whose decoded size would exceed `max_bytes` are refused before allocation.
int cpng_decode(const uint8_t *data, size_t length, size_t max_bytes, cpng_image *out, char *error, size_t error_length);

/// Encodes interleaved samples (8-bit bytes or native-endian uint16) as a PNG in memory, with a
/// `Comment` tEXt chunk when `comment` is not NULL. `channels` 1..4 as in cpng_image. On success
/// `*out` is malloc'ed (free with cpng_free).
int cpng_encode(const void *pixels, uint32_t width, uint32_t height, int channels, int bit_depth,
                int compression_level, const char *comment, uint8_t **out, size_t *out_length, char *error, size_t error_length);

void cpng_free(void *p);

#endif
