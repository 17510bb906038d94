/* PNG via libpng, converted as PIL does (PngImagePlugin modes, then convert("RGB")):
 * - 16-bit samples keep their high byte (PIL's ";16B" unpackers), except 16-bit grayscale, which PIL
 *   opens as "I;16" and converts to RGB by clamping the value to 255;
 * - 1/2/4-bit grayscale scales to 0..255 (x255, x85, x17), palettes are expanded;
 * - alpha (and tRNS transparency) is dropped, never composited. No gamma or colour management. */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image/decode_internal.h"
#include "util/error.h"

typedef struct {
    const uint8_t *data;
    size_t n, pos;
    char msg[200];
} png_source;

static void read_bytes(png_structp png, png_bytep out, png_size_t len) {
    png_source *s = png_get_io_ptr(png);
    if (len > s->n - s->pos) png_error(png, "truncated file");
    memcpy(out, s->data + s->pos, len);
    s->pos += len;
}

static void on_error(png_structp png, png_const_charp msg) {
    png_source *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

int qvl_decode_png(const uint8_t *data, size_t n, const char *name, qvl_image *img) {
    png_source src = {data, n, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_error, on_warning);
    if (!png) return qvl_errorf("%s: out of memory", name);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile buf = NULL;     /* volatile: read after longjmp */
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        free(buf);
        free(rows);
        return qvl_errorf("%s: corrupt or truncated PNG (%s)", name, src.msg[0] ? src.msg : "out of memory");
    }
    png_set_read_fn(png, &src, read_bytes);
    /* Don't let libpng refuse large images on its own; our limit is checked below. */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (qvl_image_check_size(name, (long)w, (long)h)) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    int gray16 = (ctype == PNG_COLOR_TYPE_GRAY && depth == 16);
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !gray16) png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    int channels = png_get_channels(png, info);
    if (qvl_image_alloc(img, (int)w, (int)h, name)) png_error(png, "out of memory");
    /* Interlaced files need the whole image in memory; others are converted row by row. */
    size_t nrows = interlace == PNG_INTERLACE_NONE ? 1 : h;
    buf = malloc(rowbytes * nrows);
    rows = malloc(sizeof(png_bytep) * nrows);
    if (!buf || !rows) png_error(png, "out of memory");
    for (size_t y = 0; y < nrows; y++) rows[y] = buf + rowbytes * y;
    if (nrows > 1) png_read_image(png, rows);
    for (png_uint_32 y = 0; y < h; y++) {
        const uint8_t *s = rows[nrows > 1 ? y : 0];
        if (nrows == 1) png_read_row(png, rows[0], NULL);
        uint8_t *d = img->rgb + (size_t)y * w * 3;
        if (gray16) {
            for (png_uint_32 x = 0; x < w; x++, d += 3) {
                unsigned v = (unsigned)s[2 * x] << 8 | s[2 * x + 1];
                d[0] = d[1] = d[2] = (uint8_t)(v > 255 ? 255 : v);
            }
        } else if (channels <= 2) {
            for (png_uint_32 x = 0; x < w; x++, d += 3) d[0] = d[1] = d[2] = s[x * channels];
        } else if (channels == 3) {
            memcpy(d, s, (size_t)w * 3);
        } else {
            for (png_uint_32 x = 0; x < w; x++, d += 3) memcpy(d, s + (size_t)x * channels, 3);
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(buf);
    free(rows);
    return 0;
}
