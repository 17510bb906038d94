/* Antialiased bicubic resize of uint8 RGB, computed as PyTorch computes it for uint8 CPU tensors
 * (torchvision resize(antialias=True) -> aten upsample_bicubic2d_aa -> the Pillow-SIMD port in
 * UpSampleKernel.cpp / UpSampleKernelAVXAntialias.h):
 *   - per axis, float64 weights of the Keys cubic (a = -0.5) with support 2*max(1, in/out),
 *     normalised by their sum, then rounded to int16 with a precision chosen so that the largest
 *     weight of the axis fits in int16 (at most 22 bits);
 *   - pixel = clamp((2^(p-1) + sum w_i * x_i) >> p, 0, 255), int32 accumulation;
 *   - horizontal pass first into a uint8 buffer, then the vertical pass; a pass whose size does
 *     not change is skipped.
 * Both passes run one vectorisable kernel (filter_rows); the horizontal one on a transposed copy.
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

/* One pass of the separable filter along y: each output row is a weighted sum of whole input rows.
 * Columns go in blocks of 16 with fixed-length inner loops, which compilers turn into SIMD code even
 * at -O2. The horizontal pass runs the same kernel on the transposed image (see qvl_resize_bicubic):
 * summing the same products in the same order, it gives the same bytes as a direct loop along x. */
enum { VBLOCK = 16 };

#ifdef __SSE2__
#include <emmintrin.h>

/* 16 columns, taps in pairs: bytes of rows j and j+1 interleaved and widened to int16, so one
 * _mm_madd_epi16 adds w_j*a + w_j+1*b per column into int32 (Pillow-SIMD's vertical kernel). Integer
 * sums, so the bytes equal those of the plain loop below. */
static size_t filter_block_sse2(const uint8_t *first, size_t n, const int16_t *k, int taps, int half, int p,
                                uint8_t *o) {
    const __m128i z = _mm_setzero_si128();
    size_t i0 = 0;
    for (; i0 + VBLOCK <= n; i0 += VBLOCK) {
        __m128i a0 = _mm_set1_epi32(half), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < taps; j += 2) {
            const uint8_t *r0 = first + (size_t)j * n + i0;
            int pair = j + 1 < taps;
            const uint8_t *r1 = pair ? r0 + n : r0;
            uint32_t wbits = (uint32_t)(uint16_t)k[j] | (uint32_t)(uint16_t)(pair ? k[j + 1] : 0) << 16;
            __m128i wp = _mm_set1_epi32((int)wbits);
            __m128i x0 = _mm_loadu_si128((const __m128i *)r0), x1 = _mm_loadu_si128((const __m128i *)r1);
            __m128i lo = _mm_unpacklo_epi8(x0, x1), hi = _mm_unpackhi_epi8(x0, x1);
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi8(lo, z), wp));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi8(lo, z), wp));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi8(hi, z), wp));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi8(hi, z), wp));
        }
        __m128i s01 = _mm_packs_epi32(_mm_srai_epi32(a0, p), _mm_srai_epi32(a1, p));
        __m128i s23 = _mm_packs_epi32(_mm_srai_epi32(a2, p), _mm_srai_epi32(a3, p));
        _mm_storeu_si128((__m128i *)(o + i0), _mm_packus_epi16(s01, s23)); /* = clamp to 0..255 */
    }
    return i0;
}
#endif

static void filter_rows(void *arg, int y0, int y1) {
    const pass_ctx *ctx = arg;
    const axis_coeffs *c = ctx->c;
    int p = c->precision, half = p > 0 ? 1 << (p - 1) : 0;
    size_t n = (size_t)ctx->out_w * 3;
    for (int y = y0; y < y1; y++) {
        const int16_t *k = c->w + (size_t)y * c->ksize;
        const uint8_t *first = ctx->in + (size_t)c->start[y] * n;
        uint8_t *restrict o = ctx->out + (size_t)y * n;
        int taps = c->count[y];
        size_t i0 = 0;
#ifdef __SSE2__
        i0 = filter_block_sse2(first, n, k, taps, half, p, o);
#endif
        for (; i0 + VBLOCK <= n; i0 += VBLOCK) {
            int32_t acc[VBLOCK];
            for (int l = 0; l < VBLOCK; l++) acc[l] = half;
            for (int j = 0; j < taps; j++) {
                const uint8_t *restrict s = first + (size_t)j * n + i0;
                int32_t wj = k[j];
                for (int l = 0; l < VBLOCK; l++) acc[l] += wj * s[l];
            }
            for (int l = 0; l < VBLOCK; l++) {
                int32_t v = acc[l] >> p;
                o[i0 + l] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
        for (; i0 < n; i0++) {
            int32_t a = half;
            for (int j = 0; j < taps; j++) a += k[j] * first[(size_t)j * n + i0];
            o[i0] = clip_shift(a, p);
        }
    }
}

/* Pixel (3-byte) transpose of rows [y0, y1): in is h x w, out is w x h. Blocked for the caches;
 * pixels move as 4-byte words, the spare byte landing on the next output pixel, which is written
 * right after, except for the last row of this range, which is copied byte by byte (it may border
 * another thread's range, and its source may be the last pixel of the buffer). */
typedef struct {
    const uint8_t *in;
    uint8_t *out;
    int h, w;
} transpose_ctx;

static void transpose_rows(void *arg, int y0, int y1) {
    const transpose_ctx *t = arg;
    enum { B = 32 };
    size_t out_stride = (size_t)t->h * 3;
    for (int by = y0; by < y1; by += B) {
        int ey = by + B < y1 ? by + B : y1;
        int last = ey == y1 ? ey - 1 : ey;   /* rows [by, last) use word moves */
        for (int bx = 0; bx < t->w; bx += B) {
            int ex = bx + B < t->w ? bx + B : t->w;
            for (int x = bx; x < ex; x++) {
                const uint8_t *s = t->in + ((size_t)by * t->w + x) * 3;
                uint8_t *d = t->out + (size_t)x * out_stride + (size_t)by * 3;
                int y = by;
                for (; y < last; y++, s += (size_t)t->w * 3, d += 3) memcpy(d, s, 4);
                for (; y < ey; y++, s += (size_t)t->w * 3, d += 3) d[0] = s[0], d[1] = s[1], d[2] = s[2];
            }
        }
    }
}

static void transpose_rgb(const uint8_t *in, int h, int w, uint8_t *out, int threads) {
    transpose_ctx t = {in, out, h, w};
    qvl_parallel_for(threads, h, 64, transpose_rows, &t);
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
    uint8_t *tin = NULL, *tmid = NULL, *mid = NULL;
    int rc = 0;
    if (need_h && axis_init(&ch, in_w, out_w)) return -1;
    if (need_v && axis_init(&cv, in_h, out_h)) {
        axis_free(&ch);
        return -1;
    }
    const uint8_t *src = in;
    if (need_h) {
        /* along x = along y of the transposed image: transpose, filter, transpose back */
        tin = malloc((size_t)in_h * in_w * 3);
        tmid = malloc((size_t)in_h * out_w * 3);
        uint8_t *dst = need_v ? (mid = malloc((size_t)in_h * out_w * 3)) : out;
        if (!tin || !tmid || !dst) {
            rc = qvl_errorf("resize: out of memory");
            goto done;
        }
        transpose_rgb(in, in_h, in_w, tin, threads);
        pass_ctx hc = {tin, tmid, in_h, in_h, &ch};
        qvl_parallel_for(threads, out_w, 16, filter_rows, &hc);
        transpose_rgb(tmid, out_w, in_h, dst, threads);
        src = dst;
    }
    if (need_v) {
        pass_ctx vc = {src, out, out_w, out_w, &cv};
        qvl_parallel_for(threads, out_h, 16, filter_rows, &vc);
    }
done:
    free(tin);
    free(tmid);
    free(mid);
    axis_free(&ch);
    axis_free(&cv);
    return rc;
}
