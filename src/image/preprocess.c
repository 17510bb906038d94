/* RGB image -> pixel_values: smart_resize, bicubic resize (resize.c), then rescale+normalize and the
 * Qwen2-VL patch layout:
 *   frames F[Tp, 3, h, w] (the image repeated Tp times) viewed as
 *   [gt, Tp, C, gh/m, m, P, gw/m, m, P] -> permuted to [gt, gh/m, gw/m, m, m, C, Tp, P, P]
 *   -> rows = patches in 2x2 merge-block order, columns ((c*Tp + tp)*P + py)*P + px. */
#include <stdlib.h>
#include <string.h>

#include "image/big_alloc.h"
#include "image/image.h"
#include "util/error.h"
#include "util/parallel.h"

typedef struct {
    const uint8_t *rgb;
    int w, P, Tp, m, gw;
    float lut[3][256];
    uint16_t lut16[3][256]; /* bf16 bits of lut (out_bf16) */
    float *out;
    uint16_t *out16;        /* out_bf16: written instead of out */
    int row_len;
} patch_ctx;

/* float -> bfloat16 bits, round to nearest even (as __float2bfloat16 / torch .to(bfloat16); the
 * table values are finite). */
static uint16_t f32_to_bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* One output row type, both element sizes: the same loops over the same table. */
#define PATCH_ROWS(NAME, T, OUT, LUT)                                                                      \
    static void NAME(void *arg, int i0, int i1) {                                                          \
        const patch_ctx *c = arg;                                                                          \
        int P = c->P, m = c->m, blocks_w = c->gw / m;                                                      \
        for (int i = i0; i < i1; i++) {                                                                    \
            /* i = ((br * blocks_w + bc) * m + ih) * m + iw */                                             \
            int iw = i % m, ih = (i / m) % m, blk = i / (m * m);                                           \
            int bc = blk % blocks_w, br = blk / blocks_w;                                                  \
            int prow = br * m + ih, pcol = bc * m + iw;                                                    \
            T *o = c->OUT + (size_t)i * c->row_len;                                                        \
            for (int ch = 0; ch < 3; ch++) {                                                               \
                T *first = o;                                                                              \
                const T *lut = c->LUT[ch];                                                                 \
                for (int py = 0; py < P; py++) {                                                           \
                    const uint8_t *s = c->rgb + ((size_t)(prow * P + py) * c->w + (size_t)pcol * P) * 3 + ch; \
                    for (int px = 0; px < P; px++) o[px] = lut[s[3 * px]];                                 \
                    o += P;                                                                                \
                }                                                                                          \
                for (int tp = 1; tp < c->Tp; tp++, o += P * P) memcpy(o, first, sizeof(T) * P * P);        \
            }                                                                                              \
        }                                                                                                  \
    }
PATCH_ROWS(patch_rows, float, out, lut)
PATCH_ROWS(patch_rows_bf16, uint16_t, out16, lut16)

int qvl_image_patchify(const uint8_t *rgb, int h, int w, const qvl_image_params *p, qvl_pixel_values *out) {
    memset(out, 0, sizeof *out);
    int P = p->patch_size, Tp = p->temporal_patch_size, m = p->merge_size;
    if (P <= 0 || Tp <= 0 || m <= 0 || h % (P * m) || w % (P * m))
        return qvl_errorf("patchify: %dx%d is not a multiple of patch %d x merge %d", w, h, P, m);
    patch_ctx *c = malloc(sizeof *c);
    if (!c) return qvl_errorf("patchify: out of memory");
    c->rgb = rgb, c->w = w, c->P = P, c->Tp = Tp, c->m = m, c->gw = w / P;
    c->row_len = 3 * Tp * P * P;
    /* The torchvision backend fuses rescale into normalize: mean' = mean / (1/255), std' likewise, in
     * float32, then (x - mean') / std' in float32. With mean = std = 0.5 that is (x - 127.5) / 127.5. */
    float inv_rescale = (float)(1.0 / (1.0 / 255.0));
    for (int ch = 0; ch < 3; ch++) {
        float mean = p->image_mean[ch] * inv_rescale, std = p->image_std[ch] * inv_rescale;
        for (int v = 0; v < 256; v++) {
            c->lut[ch][v] = ((float)v - mean) / std;
            c->lut16[ch][v] = f32_to_bf16_bits(c->lut[ch][v]);
        }
    }
    int gh = h / P, gw = w / P, n = gh * gw;
    const size_t elems = (size_t)n * c->row_len;
    c->out = NULL, c->out16 = NULL;
    if (p->out_bf16) {
        if (!p->bf16_buf || p->bf16_buf_bytes < elems * sizeof(uint16_t)) {
            free(c);
            return qvl_errorf("patchify: %d patches need %zu bytes of BF16 pixels, the buffer holds %zu", n,
                              elems * sizeof(uint16_t), p->bf16_buf ? p->bf16_buf_bytes : 0);
        }
        c->out16 = p->bf16_buf;
    } else if (!(c->out = qvl_big_alloc(sizeof(float) * elems))) {
        free(c);
        return qvl_errorf("patchify: out of memory for %d patches", n);
    }
    qvl_parallel_for(p->threads, n, 64, p->out_bf16 ? patch_rows_bf16 : patch_rows, c);
    out->data = c->out;
    out->num_patches = n;
    out->row_len = c->row_len;
    out->grid_t = 1;
    out->grid_h = gh;
    out->grid_w = gw;
    out->resized_h = h;
    out->resized_w = w;
    out->image_tokens = n / (m * m);
    free(c);
    return 0;
}

int qvl_image_preprocess(const qvl_image *img, const qvl_image_params *p, qvl_pixel_values *out) {
    memset(out, 0, sizeof *out);
    if (!img || !img->rgb) return qvl_errorf("preprocess: no image");
    int h, w;
    if (qvl_smart_resize(img->height, img->width, p->patch_size * p->merge_size, p->min_pixels,
                         p->max_pixels, &h, &w))
        return -1;
    const uint8_t *rgb = img->rgb;
    uint8_t *resized = NULL;
    if (h != img->height || w != img->width) {
        resized = qvl_big_alloc((size_t)h * w * 3);
        if (!resized) return qvl_errorf("preprocess: out of memory resizing to %dx%d", w, h);
        if (qvl_resize_bicubic(img->rgb, img->height, img->width, resized, h, w, p->threads)) {
            free(resized);
            return -1;
        }
        rgb = resized;
    }
    int rc = qvl_image_patchify(rgb, h, w, p, out);
    free(resized);
    return rc;
}

void qvl_pixel_values_free(qvl_pixel_values *pv) {
    if (!pv) return;
    free(pv->data);
    memset(pv, 0, sizeof *pv);
}
