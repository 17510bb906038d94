/* Per-format decoders behind qvl_image_decode. Each fills img with RGB exactly as PIL's
 * Image.open(...).convert("RGB") would, or returns -1 with qvl_errorf("<name>: <reason>"). */
#ifndef QVL_IMAGE_DECODE_INTERNAL_H
#define QVL_IMAGE_DECODE_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

/* PIL raises DecompressionBombError above 2 * Image.MAX_IMAGE_PIXELS (2 * 89478485); we refuse the
 * same sizes, from the header, before allocating anything. */
#define QVL_IMAGE_MAX_PIXELS 178956970L

/* 0 if width x height is a decodable size, else -1 + error naming the file. */
int qvl_image_check_size(const char *name, long width, long height);
/* Allocates img->rgb for width x height (after qvl_image_check_size). */
int qvl_image_alloc(qvl_image *img, int width, int height, const char *name);

int qvl_decode_jpeg(const uint8_t *data, size_t n, const char *name, qvl_image *img);
int qvl_decode_png(const uint8_t *data, size_t n, const char *name, qvl_image *img);
int qvl_decode_webp(const uint8_t *data, size_t n, const char *name, qvl_image *img);
int qvl_decode_gif(const uint8_t *data, size_t n, const char *name, qvl_image *img);
int qvl_decode_bmp(const uint8_t *data, size_t n, const char *name, qvl_image *img);

/* A BMP's header, palette and layout, checked as qvl_decode_bmp needs them (also by probe.c, so that
 * a header probe refuses exactly what the decoder refuses). */
typedef struct {
    long w, h;
    int top_down, bits, is565, r_shift, g_shift, b_shift;
    size_t off, stride;
    uint8_t pal[256][3];
} qvl_bmp_header;
int qvl_bmp_parse_header(const uint8_t *data, size_t n, const char *name, qvl_bmp_header *hd);

#endif
