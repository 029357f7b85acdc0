#include "cimagecodecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <webp/decode.h>
#include <webp/encode.h>

void cic_free(void *p) { free(p); }

static void set_error(char *error, size_t length, const char *message) {
    if (error && length) snprintf(error, length, "%s", message);
}

// MARK: JPEG

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_error;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_error *e = (jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo; (void)level; }

int cic_jpeg_decode(const uint8_t *data, size_t length, size_t max_bytes, cic_image *out, char *error, size_t error_length) {
    struct jpeg_decompress_struct cinfo;
    jpeg_error err;
    uint8_t *volatile pixels = NULL;  // (the pointer volatile: longjmp must see the allocation)
    memset(out, 0, sizeof *out);
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = jpeg_fail;
    err.base.emit_message = jpeg_quiet;
    if (setjmp(err.jump)) {
        set_error(error, error_length, err.message);
        jpeg_destroy_decompress(&cinfo);
        free((void *)pixels);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)length);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        set_error(error, error_length, "CMYK JPEG is not supported (convert it to RGB)");
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    uint64_t bytes = (uint64_t)cinfo.image_width * cinfo.image_height * 3;
    if (cinfo.image_width == 0 || cinfo.image_height == 0 || bytes > max_bytes) {
        snprintf(error, error_length, "%ux%u pixels: %llu bytes decoded, more than the limit of %zu",
                 cinfo.image_width, cinfo.image_height, (unsigned long long)bytes, max_bytes);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * 3;
    pixels = malloc(stride * cinfo.output_height);
    if (!pixels) longjmp(err.jump, 1);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = (JSAMPROW)(pixels + stride * cinfo.output_scanline);
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    out->width = cinfo.output_width;
    out->height = cinfo.output_height;
    out->channels = 3;
    out->pixels = (uint8_t *)pixels;
    out->size = stride * cinfo.output_height;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

int cic_jpeg_encode(const uint8_t *rgb, uint32_t width, uint32_t height, int quality, const char *comment,
                    uint8_t **out, size_t *out_length, char *error, size_t error_length) {
    struct jpeg_compress_struct cinfo;
    jpeg_error err;
    unsigned char *buffer = NULL;
    unsigned long size = 0;
    *out = NULL;
    *out_length = 0;
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = jpeg_fail;
    err.base.emit_message = jpeg_quiet;
    if (setjmp(err.jump)) {
        set_error(error, error_length, err.message);
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return 1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &buffer, &size);
    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    if (comment) jpeg_write_marker(&cinfo, JPEG_COM, (const JOCTET *)comment, (unsigned int)strlen(comment));
    size_t stride = (size_t)width * 3;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + stride * cinfo.next_scanline);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = buffer;
    *out_length = size;
    return 0;
}

// MARK: WebP

int cic_webp_decode(const uint8_t *data, size_t length, size_t max_bytes, cic_image *out, char *error, size_t error_length) {
    memset(out, 0, sizeof *out);
    WebPBitstreamFeatures features;
    if (WebPGetFeatures(data, length, &features) != VP8_STATUS_OK) {
        set_error(error, error_length, "not a valid WebP file (its header does not parse)");
        return 1;
    }
    int channels = features.has_alpha ? 4 : 3;
    uint64_t bytes = (uint64_t)features.width * features.height * channels;
    if (features.width <= 0 || features.height <= 0 || bytes > max_bytes) {
        snprintf(error, error_length, "%dx%d pixels: %llu bytes decoded, more than the limit of %zu",
                 features.width, features.height, (unsigned long long)bytes, max_bytes);
        return 1;
    }
    int w = 0, h = 0;
    uint8_t *pixels = features.has_alpha ? WebPDecodeRGBA(data, length, &w, &h) : WebPDecodeRGB(data, length, &w, &h);
    if (!pixels) {
        set_error(error, error_length, "WebP data is corrupt or truncated");
        return 1;
    }
    // (Copied into malloc'ed memory, so that one free releases every decoder's pixels.)
    out->size = (size_t)w * h * channels;
    out->pixels = malloc(out->size);
    if (!out->pixels) {
        WebPFree(pixels);
        set_error(error, error_length, "out of memory");
        return 1;
    }
    memcpy(out->pixels, pixels, out->size);
    WebPFree(pixels);
    out->width = (uint32_t)w;
    out->height = (uint32_t)h;
    out->channels = channels;
    return 0;
}

int cic_webp_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels, float quality,
                    uint8_t **out, size_t *out_length, char *error, size_t error_length) {
    *out = NULL;
    *out_length = 0;
    if (width > WEBP_MAX_DIMENSION || height > WEBP_MAX_DIMENSION) {
        snprintf(error, error_length, "%ux%u is larger than WebP's %d pixels a side", width, height, WEBP_MAX_DIMENSION);
        return 1;
    }
    uint8_t *encoded = NULL;
    int stride = (int)width * channels;
    size_t size;
    if (quality < 0) {
        size = channels == 4 ? WebPEncodeLosslessRGBA(pixels, (int)width, (int)height, stride, &encoded)
                             : WebPEncodeLosslessRGB(pixels, (int)width, (int)height, stride, &encoded);
    } else {
        size = channels == 4 ? WebPEncodeRGBA(pixels, (int)width, (int)height, stride, quality, &encoded)
                             : WebPEncodeRGB(pixels, (int)width, (int)height, stride, quality, &encoded);
    }
    if (size == 0 || !encoded) {
        set_error(error, error_length, "WebP encoding failed");
        return 1;
    }
    *out = malloc(size);
    if (!*out) {
        WebPFree(encoded);
        set_error(error, error_length, "out of memory");
        return 1;
    }
    memcpy(*out, encoded, size);
    WebPFree(encoded);
    *out_length = size;
    return 0;
}
