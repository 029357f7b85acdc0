#include "cpng.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    size_t length;
    size_t offset;
    char *error;
    size_t error_length;
} reader_state;

static void on_error(png_structp png, png_const_charp message) {
    reader_state *s = (reader_state *)png_get_error_ptr(png);
    if (s && s->error && s->error_length) snprintf(s->error, s->error_length, "%s", message);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;  // warnings (bad gamma chunk, ...) do not stop decoding
}

static void read_bytes(png_structp png, png_bytep out, png_size_t n) {
    reader_state *s = (reader_state *)png_get_io_ptr(png);
    if (n > s->length - s->offset) {
        png_error(png, "the file ends before the image data does (truncated PNG)");
    }
    memcpy(out, s->data + s->offset, n);
    s->offset += n;
}

int cpng_decode(const uint8_t *data, size_t length, size_t max_bytes, cpng_image *out, char *error, size_t error_length) {
    memset(out, 0, sizeof(*out));
    if (error && error_length) error[0] = 0;
    if (length < 8 || png_sig_cmp((png_const_bytep)data, 0, 8) != 0) {
        snprintf(error, error_length, "not a PNG file (no PNG signature)");
        return 1;
    }
    reader_state state = {data, length, 0, error, error_length};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
    if (!png) { snprintf(error, error_length, "out of memory"); return 1; }
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) { png_destroy_read_struct(&png, NULL, NULL); snprintf(error, error_length, "out of memory"); return 1; }
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    png_set_read_fn(png, &state, read_bytes);
    png_read_info(png, info);
    png_uint_32 width = 0, height = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &depth, &color, &interlace, NULL, NULL);
    out->source_color_type = color;
    out->source_bit_depth = depth;

    png_set_expand(png);                       // palette → RGB, gray < 8 → 8, tRNS → alpha
    if (depth == 16) png_set_swap(png);        // big-endian file samples → little-endian host
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    int out_depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (width == 0 || height == 0) png_error(png, "image has a zero dimension");
    if (rowbytes != (size_t)width * channels * (out_depth / 8)) png_error(png, "unexpected row layout after expansion");
    if (height > max_bytes / rowbytes) png_error(png, "decoded image would exceed the memory limit");
    pixels = malloc(rowbytes * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);

    out->width = width;
    out->height = height;
    out->channels = channels;
    out->bit_depth = out_depth;
    out->pixels = pixels;
    out->size = rowbytes * height;
    return 0;
}

typedef struct {
    uint8_t *data;
    size_t length;
    size_t capacity;
    int failed;
} writer_state;

static void write_bytes(png_structp png, png_bytep in, png_size_t n) {
    writer_state *w = (writer_state *)png_get_io_ptr(png);
    if (w->length + n > w->capacity) {
        size_t cap = w->capacity ? w->capacity : 65536;
        while (cap < w->length + n) cap *= 2;
        uint8_t *p = realloc(w->data, cap);
        if (!p) png_error(png, "out of memory");
        w->data = p;
        w->capacity = cap;
    }
    memcpy(w->data + w->length, in, n);
    w->length += n;
}

static void flush_nothing(png_structp png) { (void)png; }

int cpng_encode(const void *pixels, uint32_t width, uint32_t height, int channels, int bit_depth,
                int compression_level, const char *comment, uint8_t **out, size_t *out_length, char *error, size_t error_length) {
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    *out = NULL;
    *out_length = 0;
    if (channels < 1 || channels > 4 || (bit_depth != 8 && bit_depth != 16) || width == 0 || height == 0) {
        snprintf(error, error_length, "cannot encode %ux%u with %d channels at %d bits", width, height, channels, bit_depth);
        return 1;
    }
    reader_state errors = {NULL, 0, 0, error, error_length};
    writer_state w = {NULL, 0, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &errors, on_error, on_warning);
    if (!png) { snprintf(error, error_length, "out of memory"); return 1; }
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(w.data);
        return 1;
    }
    png_set_write_fn(png, &w, write_bytes, flush_nothing);
    png_set_compression_level(png, compression_level);
    png_set_IHDR(png, info, width, height, bit_depth, types[channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (comment) {
        png_text text;
        memset(&text, 0, sizeof text);
        text.compression = PNG_TEXT_COMPRESSION_NONE;
        text.key = (png_charp)"Comment";
        text.text = (png_charp)comment;
        text.text_length = strlen(comment);
        png_set_text(png, info, &text, 1);
    }
    png_write_info(png, info);
    if (bit_depth == 16) png_set_swap(png);
    size_t rowbytes = (size_t)width * channels * (bit_depth / 8);
    for (uint32_t y = 0; y < height; y++) {
        png_write_row(png, (png_const_bytep)pixels + (size_t)y * rowbytes);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = w.data;
    *out_length = w.length;
    return 0;
}

void cpng_free(void *p) { free(p); }
