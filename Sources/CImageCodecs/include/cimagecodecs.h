// Thin C layers over libjpeg(-turbo) and libwebp for the pipeline's image files. libjpeg reports
// errors by longjmp, which Swift cannot catch, so JPEG runs here and returns an error string; libwebp
// is wrapped alongside for one interface. Every decoder reads the header first and refuses images
// whose decoded samples would exceed `max_bytes`, before allocating them.
#ifndef CIMAGECODECS_H
#define CIMAGECODECS_H

#include <stddef.h>
#include <stdint.h>

/// A decoded 8-bit image: interleaved samples (3 RGB or 4 RGBA), rows top to bottom.
typedef struct {
    uint32_t width;
    uint32_t height;
    int channels;
    uint8_t *pixels;   // malloc'ed; free with cic_free
    size_t size;
} cic_image;

/// JPEG to 8-bit RGB (grayscale and YCbCr; CMYK refused). Returns 0 or fills `error`.
int cic_jpeg_decode(const uint8_t *data, size_t length, size_t max_bytes, cic_image *out, char *error, size_t error_length);

/// 8-bit RGB to JPEG at `quality` (1...100), with a COM marker holding `comment` when not NULL.
int cic_jpeg_encode(const uint8_t *rgb, uint32_t width, uint32_t height, int quality, const char *comment,
                    uint8_t **out, size_t *out_length, char *error, size_t error_length);

/// WebP to 8-bit RGB, or RGBA when the file has alpha. Returns 0 or fills `error`.
int cic_webp_decode(const uint8_t *data, size_t length, size_t max_bytes, cic_image *out, char *error, size_t error_length);

/// 8-bit RGB or RGBA (`channels` 3 or 4) to WebP: lossy at `quality` (0...100), or lossless when
/// `quality` is negative.
int cic_webp_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels, float quality,
                    uint8_t **out, size_t *out_length, char *error, size_t error_length);

void cic_free(void *p);

#endif
