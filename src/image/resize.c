/* Antialiased bicubic resize of uint8 RGB, computed as PyTorch computes it for uint8 CPU tensors
 * (torchvision resize(antialias=True) -> aten upsample_bicubic2d_aa -> the Pillow-SIMD port in
 * UpSampleKernel.cpp / UpSampleKernelAVXAntialias.h):
 *   - per axis, float64 weights of the Keys cubic (a = -0.5) with support 2*max(1, in/out),
 *     normalised by their sum, then rounded to int16 with a precision chosen so that the largest
 *     weight of the axis fits in int16 (at most 22 bits);
 *   - pixel = clamp((2^(p-1) + sum w_i * x_i) >> p, 0, 255), int32 accumulation;
 *   - horizontal pass first into a uint8 buffer, then the vertical pass; a pass whose size does
 *     not change is skipped.
 * Pillow itself uses 22-bit int32 weights for every axis, so PIL's resize can differ by 1 LSB. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "image/parallel.h"
#include "util/error.h"

typedef struct {
    int ksize, precision;
    int *start, *count;   /* [out] first input index and number of taps */
    int16_t *w;           /* [out][ksize] */
} axis_coeffs;

/* HelperInterpCubic::aa_filter (Keys cubic, a = -0.5), same float64 operation order. */
static double keys_cubic(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0;
}

static void axis_free(axis_coeffs *c) {
    free(c->start);
    free(c->count);
    free(c->w);
}

static int axis_init(axis_coeffs *c, int in, int out) {
    double scale = (double)in / out;
    double support = scale >= 1.0 ? 2.0 * scale : 2.0;
    double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    int ksize = (int)ceil(support) * 2 + 1;
    double *wf = malloc(sizeof(double) * (size_t)out * ksize);
    c->start = malloc(sizeof(int) * out);
    c->count = malloc(sizeof(int) * out);
    c->w = malloc(sizeof(int16_t) * (size_t)out * ksize);
    c->ksize = ksize;
    if (!wf || !c->start || !c->count || !c->w) {
        free(wf);
        axis_free(c);
        return qvl_errorf("resize: out of memory");
    }
    double wt_max = 0.0;
    for (int i = 0; i < out; i++) {
        double center = scale * (i + 0.5);
        long xmin = (long)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        long xmax = (long)(center + support + 0.5);
        long xsize = (xmax < in ? xmax : in) - xmin;
        if (xsize < 0) xsize = 0;
        if (xsize > ksize) xsize = ksize;
        double *k = wf + (size_t)i * ksize, total = 0.0;
        for (long j = 0; j < xsize; j++) {
            k[j] = keys_cubic(((double)(j + xmin) - center + 0.5) * invscale);
            total += k[j];
        }
        if (total != 0.0)
            for (long j = 0; j < xsize; j++) {
                k[j] /= total;
                if (k[j] > wt_max) wt_max = k[j];
            }
        for (long j = xsize; j < ksize; j++) k[j] = 0.0;
        c->start[i] = (int)xmin;
        c->count[i] = (int)xsize;
    }
    int p;
    for (p = 0; p < 22; p++)
        if ((int)(0.5 + wt_max * (1 << (p + 1))) >= (1 << 15)) break;
    c->precision = p;
    for (size_t i = 0; i < (size_t)out * ksize; i++) {
        double v = wf[i] * (1 << p);
        c->w[i] = (int16_t)(v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v));
    }
    free(wf);
    return 0;
}

static inline uint8_t clip_shift(int acc, int p) {
    acc >>= p; /* arithmetic shift, as _mm_srai_epi32 */
    return (uint8_t)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

typedef struct {
    const uint8_t *in;
    uint8_t *out;
    int in_w, out_w;       /* pixels per row (RGB) */
    const axis_coeffs *c;
} pass_ctx;

static void horizontal_rows(void *arg, int y0, int y1) {
    const pass_ctx *ctx = arg;
    const axis_coeffs *c = ctx->c;
    int p = c->precision, half = p > 0 ? 1 << (p - 1) : 0;
    for (int y = y0; y < y1; y++) {
        const uint8_t *row = ctx->in + (size_t)y * ctx->in_w * 3;
        uint8_t *o = ctx->out + (size_t)y * ctx->out_w * 3;
        for (int x = 0; x < ctx->out_w; x++, o += 3) {
            const int16_t *k = c->w + (size_t)x * c->ksize;
            const uint8_t *s = row + (size_t)c->start[x] * 3;
            int r = half, g = half, b = half;
            for (int j = 0; j < c->count[x]; j++, s += 3) {
                r += k[j] * s[0];
                g += k[j] * s[1];
                b += k[j] * s[2];
            }
            o[0] = clip_shift(r, p), o[1] = clip_shift(g, p), o[2] = clip_shift(b, p);
        }
    }
}

/* Vertical pass: for each output row, a weighted sum of whole input rows (vectorises well). */
static void vertical_rows(void *arg, int y0, int y1) {
    const pass_ctx *ctx = arg;
    const axis_coeffs *c = ctx->c;
    int p = c->precision, half = p > 0 ? 1 << (p - 1) : 0;
    size_t n = (size_t)ctx->out_w * 3;
    int *acc = malloc(sizeof(int) * n);
    for (int y = y0; y < y1 && !acc; y++) { /* out of memory: the same sums, one value at a time */
        const int16_t *k = c->w + (size_t)y * c->ksize;
        for (size_t i = 0; i < n; i++) {
            int a = half;
            for (int j = 0; j < c->count[y]; j++) a += k[j] * ctx->in[(size_t)(c->start[y] + j) * n + i];
            ctx->out[(size_t)y * n + i] = clip_shift(a, p);
        }
    }
    for (int y = y0; y < y1 && acc; y++) {
        const int16_t *k = c->w + (size_t)y * c->ksize;
        for (size_t i = 0; i < n; i++) acc[i] = half;
        for (int j = 0; j < c->count[y]; j++) {
            const uint8_t *s = ctx->in + (size_t)(c->start[y] + j) * n;
            int wj = k[j];
            for (size_t i = 0; i < n; i++) acc[i] += wj * s[i];
        }
        uint8_t *o = ctx->out + (size_t)y * n;
        for (size_t i = 0; i < n; i++) o[i] = clip_shift(acc[i], p);
    }
    free(acc);
}

int qvl_resize_bicubic(const uint8_t *in, int in_h, int in_w, uint8_t *out, int out_h, int out_w,
                       int threads) {
    if (in_h <= 0 || in_w <= 0 || out_h <= 0 || out_w <= 0)
        return qvl_errorf("resize: bad size %dx%d -> %dx%d", in_w, in_h, out_w, out_h);
    int need_h = out_w != in_w, need_v = out_h != in_h;
    if (!need_h && !need_v) {
        memcpy(out, in, (size_t)in_h * in_w * 3);
        return 0;
    }
    axis_coeffs ch = {0}, cv = {0};
    uint8_t *mid = NULL;
    int rc = 0;
    if (need_h && axis_init(&ch, in_w, out_w)) return -1;
    if (need_v && axis_init(&cv, in_h, out_h)) {
        axis_free(&ch);
        return -1;
    }
    const uint8_t *src = in;
    if (need_h) {
        uint8_t *dst = need_v ? (mid = malloc((size_t)in_h * out_w * 3)) : out;
        if (!dst) {
            rc = qvl_errorf("resize: out of memory");
            goto done;
        }
        pass_ctx hc = {in, dst, in_w, out_w, &ch};
        qvl_parallel_for(threads, in_h, 16, horizontal_rows, &hc);
        src = dst;
    }
    if (need_v) {
        pass_ctx vc = {src, out, out_w, out_w, &cv};
        qvl_parallel_for(threads, out_h, 16, vertical_rows, &vc);
    }
done:
    free(mid);
    axis_free(&ch);
    axis_free(&cv);
    return rc;
}
