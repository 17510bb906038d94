/* Antialiased bicubic resize of uint8 RGB, computed as PyTorch computes it for uint8 CPU tensors
 * (torchvision resize(antialias=True) -> aten upsample_bicubic2d_aa -> the Pillow-SIMD port in
 * UpSampleKernel.cpp / UpSampleKernelAVXAntialias.h):
 *   - per axis, float64 weights of the Keys cubic (a = -0.5) with support 2*max(1, in/out),
 *     normalised by their sum, then rounded to int16 with a precision chosen so that the largest
 *     weight of the axis fits in int16 (at most 22 bits);
 *   - pixel = clamp((2^(p-1) + sum w_i * x_i) >> p, 0, 255), int32 accumulation;
 *   - horizontal pass first into a uint8 buffer, then the vertical pass; a pass whose size does
 *     not change is skipped.
 * Both passes have an SSE2 kernel (x86-64 baseline) and a plain C one; they give identical bytes.
 * Pillow itself uses 22-bit int32 weights for every axis, so PIL's resize differs in rare values by
 * 1-2 (measured in tests/test_image_parity.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/big_alloc.h"
#include "image/image.h"
#include "util/error.h"
#include "util/parallel.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef struct {
    int ksize, precision;
    int *start, *count;   /* [out] first input index and number of taps */
    int16_t *w;           /* [out][ksize] */
    uint32_t *pairs;      /* [out][(ksize+1)/2]: (w_2i, w_2i+1) packed as two int16, for _mm_madd_epi16 */
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
    free(c->pairs);
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
    c->pairs = malloc(sizeof(uint32_t) * (size_t)out * ((ksize + 1) / 2));
    c->ksize = ksize;
    if (!wf || !c->start || !c->count || !c->w || !c->pairs) {
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
    int np = (ksize + 1) / 2;
    for (int i = 0; i < out; i++)
        for (int j = 0; j < np; j++) {
            const int16_t *k = c->w + (size_t)i * ksize;
            int16_t hi = 2 * j + 1 < ksize ? k[2 * j + 1] : 0; /* weights past count are 0 */
            c->pairs[(size_t)i * np + j] = (uint32_t)(uint16_t)k[2 * j] | (uint32_t)(uint16_t)hi << 16;
        }
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
    int in_h;              /* rows in `in` (bounds for the 8-byte reads of the horizontal pass) */
    const axis_coeffs *c;
} pass_ctx;

/* Horizontal pass, along x on interleaved RGB. One output pixel = sum over its taps of w_j * pixel_j
 * per channel. The SSE2 path takes taps in pairs: 8 bytes from pixel j hold pixels j and j+1; their
 * bytes are interleaved per channel (r_j r_j+1 g_j g_j+1 ...), widened to int16, and one
 * _mm_madd_epi16 with (w_j, w_j+1) gives the three channel sums (the fourth lane is discarded).
 * Integer sums in any order give the same bytes as the plain loop, which handles the pixels whose
 * 8-byte reads would pass the end of the buffer. */
static void h_pixel_plain(const uint8_t *s, const int16_t *k, int taps, int half, int p, uint8_t *o) {
    int32_t r = half, g = half, b = half;
    for (int j = 0; j < taps; j++, s += 3) {
        r += k[j] * s[0];
        g += k[j] * s[1];
        b += k[j] * s[2];
    }
    o[0] = clip_shift(r, p), o[1] = clip_shift(g, p), o[2] = clip_shift(b, p);
}

static void horizontal_rows(void *arg, int y0, int y1) {
    const pass_ctx *ctx = arg;
    const axis_coeffs *c = ctx->c;
    int p = c->precision, half = p > 0 ? 1 << (p - 1) : 0;
    size_t in_row = (size_t)ctx->in_w * 3, total = in_row * ctx->in_h;
    for (int y = y0; y < y1; y++) {
        const uint8_t *row = ctx->in + (size_t)y * in_row;
        uint8_t *o = ctx->out + (size_t)y * ctx->out_w * 3;
        for (int x = 0; x < ctx->out_w; x++, o += 3) {
            const int16_t *k = c->w + (size_t)x * c->ksize;
            const uint8_t *s = row + (size_t)c->start[x] * 3;
            int taps = c->count[x];
#ifdef __SSE2__
            if ((size_t)(s - ctx->in) + (size_t)(taps > 0 ? taps - 1 : 0) * 3 + 8 <= total) {
                const __m128i z = _mm_setzero_si128();
                const uint32_t *wp = c->pairs + (size_t)x * ((c->ksize + 1) / 2);
                __m128i acc = _mm_set1_epi32(half);
                for (int j = 0; j < taps; j += 2) {
                    __m128i px = _mm_loadl_epi64((const __m128i *)(s + 3 * j));
                    __m128i il = _mm_unpacklo_epi8(px, _mm_srli_si128(px, 3));
                    acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_unpacklo_epi8(il, z), _mm_set1_epi32((int)wp[j / 2])));
                }
                acc = _mm_srai_epi32(acc, p);
                __m128i b8 = _mm_packus_epi16(_mm_packs_epi32(acc, acc), z); /* clamp to 0..255 */
                uint32_t v = (uint32_t)_mm_cvtsi128_si32(b8);
                o[0] = (uint8_t)v, o[1] = (uint8_t)(v >> 8), o[2] = (uint8_t)(v >> 16);
                continue;
            }
#endif
            h_pixel_plain(s, k, taps, half, p, o);
        }
    }
}

/* Vertical pass: each output row is a weighted sum of whole input rows. Columns go in blocks of 16
 * with fixed-length inner loops, which compilers turn into SIMD code even at -O2 (the SSE2 path pairs
 * taps for _mm_madd_epi16, as Pillow-SIMD does). */
enum { VBLOCK = 16 };

#ifdef __SSE2__

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
        uint8_t *dst = need_v ? (mid = qvl_big_alloc((size_t)in_h * out_w * 3)) : out;
        if (!dst) {
            rc = qvl_errorf("resize: out of memory");
            goto done;
        }
        pass_ctx hc = {in, dst, in_w, out_w, in_h, &ch};
        qvl_parallel_for(threads, in_h, 16, horizontal_rows, &hc);
        src = dst;
    }
    if (need_v) {
        pass_ctx vc = {src, out, out_w, out_w, in_h, &cv};
        qvl_parallel_for(threads, out_h, 16, filter_rows, &vc);
    }
done:
    free(mid);
    axis_free(&ch);
    axis_free(&cv);
    return rc;
}
