/* Kernel test harness in the spirit of llama.cpp's test-backend-ops: every CUDA operation of
 * src/backend/cuda checked against the CPU operation (backend/cpu/ops.h, the CPU sampler, the CPU
 * int4 product; or a plain reference written here where the CPU backend has none as a function) on
 * random BF16-exact inputs over shape families: odd sizes, one row, large rows, unaligned buffers
 * (the scalar fallback kernels), every implementation a launcher can pick.
 *
 * One table: an entry per operation names the CUDA function(s), the reference, and the tolerance
 * with its reason; its shape families are rows of parameters. Per element the test requires
 *     |gpu - ref| <= rtol * (|ref| + mag) + atol * scale
 * where mag is the size of an intermediate the GPU rounds to BF16 (0 where there is none) and scale
 * is 1, or the magnitude the operation's error is proportional to (sum |x w| of a product, the
 * rotated pair of a rotary, ...) where the entry says so. One BF16 rounding is off by at most
 * 2^-8 of the value (BF16 keeps 8 significant bits); tolerances take twice the bound they derive.
 * One line per op x shape family: compared values, max abs and max relative error (over values above
 * 1e-3 of the largest), worst = max |d| / allowed (1 = at tolerance).
 * Adding an operation: a run function and one table row.
 * QVL_OPS=name[,name] runs only those entries (substring match). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kv_fp8.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/pool.h"
#include "backend/cuda/cuda_quant.h"
#include "backend/cuda/cuda_sample.h"
#include "backend_ops.h"
#include "engine/sampler.h"
#include "gpu_test.h"
#include "model/quant.h"
#include "util/error.h"

/* ---- random BF16-exact data ---- */
static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [0, 1) */
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) * (1.0 / 9007199254740992.0);
}
/* Near-Gaussian (Irwin-Hall of 4, unit variance, |x| < 3.5): cheap for the 300M values of an lm_head. */
static double grand(void) { return (urand() + urand() + urand() + urand() - 2) * 1.7320508075688772; }
static float bf(double x) { return qvl_round_bf16((float)x); }
static float *gauss_buf(size_t n, double scale) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = bf(grand() * scale);
    return x;
}
static float *unif_buf(size_t n, double lo, double hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = bf(lo + (hi - lo) * urand());
    return x;
}
static float *dup_buf(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}
static void round_all(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = qvl_round_bf16(x[i]);
}

/* ---- comparison ---- */
typedef struct {
    long n, bad;
    double max_abs, max_rel, worst;
    int failed_to_run;
    char note[96];
} stats;

typedef struct {
    const char *label;
    int p[8];
} shape;

typedef struct op_entry op_entry;
struct op_entry {
    const char *name;   /* the operation (CUDA launcher) */
    const char *ref;    /* what it is compared with */
    double rtol, atol;  /* per element: |d| <= rtol * (|ref| + mag) + atol * scale */
    const char *why;    /* the reason for the tolerance */
    void (*run)(const op_entry *e, const shape *sh, stats *st);
    const shape *shapes;
    int n_shapes;
};

/* Adds n values to st: got vs ref with e's tolerance (exact: rtol = atol = 0 given explicitly). mag,
 * scale: per-element arrays or NULL (0 and 1). Two NaNs agree. */
static void cmp_tol(stats *st, const float *got, const float *ref, const float *mag, const float *scale, size_t n,
                    double rtol, double atol) {
    double peak = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > peak && isfinite(ref[i])) peak = fabs(ref[i]);
    for (size_t i = 0; i < n; i++) {
        st->n++;
        if (isnan(got[i]) && isnan(ref[i])) continue;
        if (got[i] == ref[i]) continue; /* equal, infinities included (0 * inf would make the bound NaN) */
        double d = fabs((double)got[i] - (double)ref[i]);
        double allowed = rtol * (fabs(ref[i]) + (mag ? mag[i] : 0)) + atol * (scale ? scale[i] : 1);
        if (!(d <= allowed)) {
            if (st->bad < 3)
                printf("      element %zu: gpu %.9g, ref %.9g (|d| %.3g > %.3g)\n", i, got[i], ref[i], d, allowed);
            st->bad++;
        }
        if (!(d <= st->max_abs)) st->max_abs = d;
        if (fabs(ref[i]) >= peak * 1e-3 && ref[i] != 0 && d / fabs(ref[i]) > st->max_rel) st->max_rel = d / fabs(ref[i]);
        double w = d == 0 ? 0 : allowed > 0 ? d / allowed : INFINITY;
        if (!(w <= st->worst)) st->worst = w;
    }
}
static void cmp(stats *st, const op_entry *e, const float *got, const float *ref, const float *mag, const float *scale,
                size_t n) {
    cmp_tol(st, got, ref, mag, scale, n, e->rtol, e->atol);
}
static void cmp_exact(stats *st, const float *got, const float *ref, size_t n) {
    cmp_tol(st, got, ref, NULL, NULL, n, 0, 0);
}
static void cmp_ids(stats *st, const int32_t *got, const int32_t *ref, size_t n) {
    for (size_t i = 0; i < n; i++) {
        st->n++;
        if (got[i] != ref[i]) {
            if (st->bad < 3) printf("      row %zu: gpu id %d, ref id %d\n", i, got[i], ref[i]);
            st->bad++;
            st->worst = INFINITY;
        }
    }
}
static void ran(stats *st, int rc) {
    if (rc) {
        st->failed_to_run = 1;
        snprintf(st->note, sizeof st->note, "%s", qvl_error());
    }
}

static qvl_pool *pool;

/* ---- elementwise and row operations ---- */

/* p: n, kind (0 gaussian, 1 ties + specials) */
static void run_convert(const op_entry *e, const shape *sh, stats *st) {
    size_t n = (size_t)sh->p[0];
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *ref = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++) {
        if (sh->p[1]) { /* exact ties (round to even both ways), huge, tiny, subnormal, inf, nan */
            uint32_t u = (uint32_t)(urand() * 4294967296.0);
            switch (i % 6) {
            case 0: u = (u & 0xffff0000u) | 0x8000u; break;
            case 1: u = (u & 0x807f0000u) | 0x7f000000u | (u & 0xffffu); break;
            case 2: u &= 0x807fffffu; break;
            case 3: u = (u & 0x80000000u) | 0x7f800000u; break;
            case 4: u = 0x7fc00000u; break;
            default: break;
            }
            memcpy(&x[i], &u, 4);
        } else
            x[i] = (float)(grand() * 100);
        ref[i] = qvl_bf16_round(x[i]);
    }
    ran(st, bo_convert(y, x, n));
    if (!st->failed_to_run) cmp_exact(st, y, ref, n);
    (void)e;
    free(x), free(y), free(ref);
}

/* p: rows, dim, add (x = bf16(x + r) first), off, layernorm */
static void run_norm(const op_entry *e, const shape *sh, stats *st) {
    const int rows = sh->p[0], dim = sh->p[1], add = sh->p[2], off = sh->p[3], ln = sh->p[4];
    const size_t n = (size_t)rows * dim;
    const float eps = 1e-6f;
    float *x = gauss_buf(n, 2), *r = add ? gauss_buf(n, 1) : NULL, *w = gauss_buf(dim, 0.3), *b = ln ? gauss_buf(dim, 0.3) : NULL;
    for (int i = 0; i < dim; i++) w[i] = bf(1 + w[i]);
    float *xg = dup_buf(x, n), *y = malloc(n * sizeof *y), *ref = malloc(n * sizeof *ref);
    ran(st, bo_norm(y, xg, r, w, b, rows, dim, eps, off));
    if (add) { /* the residual stream: exactly bf16(x + r) */
        for (size_t i = 0; i < n; i++) x[i] = qvl_round_bf16(x[i] + r[i]);
        if (!st->failed_to_run) cmp_exact(st, xg, x, n);
    }
    if (ln) qvl_cpu_layernorm(pool, ref, x, w, b, rows, dim, eps);
    else qvl_cpu_rmsnorm(pool, ref, x, w, rows, dim, eps);
    if (!st->failed_to_run) cmp(st, e, y, ref, NULL, NULL, n);
    free(x), free(r), free(w), free(b), free(xg), free(y), free(ref);
}

/* p: n, off */
static void run_add(const op_entry *e, const shape *sh, stats *st) {
    size_t n = (size_t)sh->p[0];
    float *x = gauss_buf(n, 3), *y = gauss_buf(n, 3), *g = dup_buf(x, n);
    ran(st, bo_add(g, y, n, sh->p[1]));
    qvl_cpu_add(x, y, n);
    round_all(x, n); /* the one rounding of the sum */
    if (!st->failed_to_run) cmp(st, e, g, x, NULL, NULL, n);
    free(x), free(y), free(g);
}

/* p: n, erf */
static void run_gelu(const op_entry *e, const shape *sh, stats *st) {
    size_t n = (size_t)sh->p[0];
    float *x = gauss_buf(n, 3), *g = dup_buf(x, n);
    ran(st, bo_gelu(g, n, sh->p[1]));
    if (sh->p[1]) qvl_cpu_gelu_erf(pool, x, n);
    else qvl_cpu_gelu_tanh(pool, x, n);
    if (!st->failed_to_run) cmp(st, e, g, x, NULL, NULL, n);
    free(x), free(g);
}

/* p: rows, I, off */
static void run_silu_mul(const op_entry *e, const shape *sh, stats *st) {
    const int rows = sh->p[0], I = sh->p[1];
    const size_t n = (size_t)rows * I;
    float *gu = gauss_buf(2 * n, 3), *out = malloc(n * sizeof *out), *gate = malloc(n * sizeof *gate),
          *up = malloc(n * sizeof *up);
    for (int r = 0; r < rows; r++) {
        memcpy(gate + (size_t)r * I, gu + (size_t)r * 2 * I, (size_t)I * sizeof *gate);
        memcpy(up + (size_t)r * I, gu + (size_t)r * 2 * I + I, (size_t)I * sizeof *up);
    }
    ran(st, bo_silu_mul(out, gu, rows, I, sh->p[2]));
    qvl_cpu_silu_mul(pool, gate, up, n);
    if (!st->failed_to_run) cmp(st, e, out, gate, NULL, NULL, n);
    free(gu), free(out), free(gate), free(up);
}

/* Row and column of patch q of a frame in merge-block order (spec 2.1 step 6). */
static void merge_rc(int q, int grid_w, int M, int *row, int *col) {
    int block = q / (M * M), in = q % (M * M), bw = grid_w / M;
    *row = block / bw * M + in / M;
    *col = block % bw * M + in % M;
}

/* p: G, Dv, grid_t, grid_h, grid_w, M. Plain reference: the CPU vision tower's bilinear
 * interpolation (backend/cpu/vision.c pos_embed_interpolate, static there), then x + pos. */
static void run_pos_embed(const op_entry *e, const shape *sh, stats *st) {
    const int G = sh->p[0], Dv = sh->p[1], gt = sh->p[2], gh = sh->p[3], gw = sh->p[4], M = sh->p[5];
    const int frame = gh * gw, n = gt * frame;
    float *table = gauss_buf((size_t)G * G * Dv, 1), *x = gauss_buf((size_t)n * Dv, 1), *g = dup_buf(x, (size_t)n * Dv);
    float *ref = malloc((size_t)n * Dv * sizeof *ref), *scale = malloc((size_t)n * Dv * sizeof *scale);
    float *hs = malloc((size_t)gh * sizeof *hs), *ws = malloc((size_t)gw * sizeof *ws);
    ran(st, bo_vision_pos_embed(g, table, G, Dv, gt, gh, gw, M));
    for (int i = 0; i < gh; i++) hs[i] = gh == 1 ? 0.0f : (float)((double)(G - 1) * i / (gh - 1));
    for (int i = 0; i < gw; i++) ws[i] = gw == 1 ? 0.0f : (float)((double)(G - 1) * i / (gw - 1));
    for (int p = 0; p < n; p++) {
        int r, c;
        merge_rc(p % frame, gw, M, &r, &c);
        int h0 = (int)hs[r], w0 = (int)ws[c], h1 = h0 + 1 < G - 1 ? h0 + 1 : G - 1, w1 = w0 + 1 < G - 1 ? w0 + 1 : G - 1;
        float dh = hs[r] - (float)h0, dw = ws[c] - (float)w0;
        float wt[4] = {(1 - dh) * (1 - dw), (1 - dh) * dw, dh * (1 - dw), dh * dw};
        const float *e4[4] = {table + (size_t)(h0 * G + w0) * Dv, table + (size_t)(h0 * G + w1) * Dv,
                              table + (size_t)(h1 * G + w0) * Dv, table + (size_t)(h1 * G + w1) * Dv};
        for (int d = 0; d < Dv; d++) {
            size_t i = (size_t)p * Dv + d;
            ref[i] = x[i] + (((e4[0][d] * wt[0] + e4[1][d] * wt[1]) + e4[2][d] * wt[2]) + e4[3][d] * wt[3]);
            scale[i] = fabsf(e4[0][d] * wt[0]) + fabsf(e4[1][d] * wt[1]) + fabsf(e4[2][d] * wt[2]) + fabsf(e4[3][d] * wt[3]);
        }
    }
    if (!st->failed_to_run) cmp(st, e, g, ref, NULL, scale, (size_t)n * Dv);
    free(table), free(x), free(g), free(ref), free(scale), free(hs), free(ws);
}

/* p: grid_t, grid_h, grid_w, M, H, hd, off. Reference: the CPU tower's rotary tables (row angles for
 * the first hd/4 frequencies, column angles for the next) through qvl_cpu_rope_half. */
static void run_vision_rope(const op_entry *e, const shape *sh, stats *st) {
    const int gt = sh->p[0], gh = sh->p[1], gw = sh->p[2], M = sh->p[3], H = sh->p[4], hd = sh->p[5];
    const int n = gt * gh * gw, Dv = H * hd, half = hd / 2, nf = half / 2;
    const size_t total = (size_t)n * 3 * Dv;
    float *qkv = gauss_buf(total, 2), *g = dup_buf(qkv, total), *ref = dup_buf(qkv, total);
    float *scale = malloc(total * sizeof *scale), *inv = malloc((size_t)nf * sizeof *inv);
    float *cs = malloc((size_t)hd * sizeof *cs), *sn = malloc((size_t)hd * sizeof *sn);
    for (int j = 0; j < nf; j++) inv[j] = 1.0f / powf(10000.0f, (float)(2 * j) / (float)half);
    ran(st, bo_vision_rope(g, inv, n, Dv, H, hd, gh, gw, M, sh->p[6]));
    for (size_t i = 0; i < total; i++) scale[i] = 0;
    for (int p = 0; p < n; p++) {
        int r, c;
        merge_rc(p % (gh * gw), gw, M, &r, &c);
        for (int j = 0; j < nf; j++) {
            float a = (float)r * inv[j], b = (float)c * inv[j];
            cs[j] = cs[j + half] = cosf(a), sn[j] = sn[j + half] = sinf(a);
            cs[nf + j] = cs[nf + j + half] = cosf(b), sn[nf + j] = sn[nf + j + half] = sinf(b);
        }
        for (int part = 0; part < 2; part++)
            for (int h = 0; h < H; h++) {
                float *x = ref + (size_t)p * 3 * Dv + (size_t)part * Dv + (size_t)h * hd;
                float *s = scale + (size_t)p * 3 * Dv + (size_t)part * Dv + (size_t)h * hd;
                for (int d = 0; d < half; d++) s[d] = s[d + half] = fabsf(x[d]) + fabsf(x[d + half]);
                qvl_cpu_rope_half(x, cs, sn, hd);
            }
    }
    /* v (part 2) untouched: scale 0 there makes the comparison exact */
    if (!st->failed_to_run) cmp(st, e, g, ref, NULL, scale, total);
    free(qkv), free(g), free(ref), free(scale), free(inv), free(cs), free(sn);
}

/* p: Hq, Hkv, hd, n, p0, pos mode (0 scalar, 1 T/H/W rows, 2 device step, 3 T/H/W rows + scattered
 * cache rows: the batched form), interleaved. Reference:
 * the CPU text layer's steps (per-head qvl_cpu_rmsnorm, M-RoPE angles, qvl_cpu_rope_half), v copied. */
static void run_qk_norm_rope(const op_entry *e, const shape *sh, stats *st) {
    const int Hq = sh->p[0], Hkv = sh->p[1], hd = sh->p[2], n = sh->p[3], p0 = sh->p[4], mode = sh->p[5];
    const int half = hd / 2, kv = Hkv * hd, qdim = Hq * hd, row = qdim + 2 * kv, rows = p0 + n + 3;
    bo_rope d = {Hq, Hkv, hd, {0, 0, 0}, sh->p[6], 1e-6f};
    /* Qwen3-VL's sections [24, 20, 20] of 64 frequencies, scaled to this head size */
    d.sec[1] = half * 20 / 64, d.sec[2] = half * 20 / 64, d.sec[0] = half - d.sec[1] - d.sec[2];
    float *qkv = gauss_buf((size_t)n * row, 2), *qn = gauss_buf(hd, 0.2), *kn = gauss_buf(hd, 0.2);
    for (int i = 0; i < hd; i++) qn[i] = bf(1 + qn[i]), kn[i] = bf(1 + kn[i]);
    float *kc = gauss_buf((size_t)rows * kv, 1), *vc = gauss_buf((size_t)rows * kv, 1);
    float *kg = dup_buf(kc, (size_t)rows * kv), *vg = dup_buf(vc, (size_t)rows * kv);
    float *qg = calloc((size_t)n * qdim, sizeof *qg), *qr = malloc((size_t)n * qdim * sizeof *qr);
    float *qs = malloc((size_t)n * qdim * sizeof *qs), *ks = calloc((size_t)rows * kv, sizeof *ks);
    float *inv = malloc((size_t)half * sizeof *inv), *cs = malloc((size_t)hd * sizeof *cs), *sn = malloc((size_t)hd * sizeof *sn);
    int32_t *pos = malloc((size_t)3 * n * sizeof *pos);
    for (int i = 0; i < half; i++) inv[i] = 1.0f / powf(5000000.0f, (float)(2 * i) / (float)hd);
    const int pos_scalar = p0 + 7; /* a rope delta of 7, as after an image */
    int32_t *slot = malloc((size_t)n * sizeof *slot); /* mode 3: row i's cache row, distinct, shuffled */
    for (int i = 0; i < n; i++) slot[i] = p0 + i;
    for (int i = n - 1; mode == 3 && i > 0; i--) {
        int j = (int)(urand() * (i + 1));
        int32_t t = slot[i];
        slot[i] = slot[j], slot[j] = t;
    }
    for (int i = 0; i < n; i++)
        for (int a = 0; a < 3; a++) pos[a * n + i] = mode == 1 || mode == 3 ? (int32_t)(urand() * 3000) : pos_scalar + i;
    ran(st, bo_qk_norm_rope(&d, qg, qdim, kg, vg, rows, qkv, qn, kn, inv, n, p0, mode == 1 || mode == 3 ? pos : NULL,
                            pos_scalar, mode == 2, mode == 3 ? slot : NULL));
    for (int i = 0; i < n; i++) {
        for (int f = 0; f < half; f++) {
            int axis = 0;
            if (d.interleaved) axis = f % 3 == 1 && f < 3 * d.sec[1] ? 1 : f % 3 == 2 && f < 3 * d.sec[2] ? 2 : 0;
            else axis = f < d.sec[0] ? 0 : f < d.sec[0] + d.sec[1] ? 1 : 2;
            float ang = (float)pos[axis * n + i] * inv[f];
            cs[f] = cs[f + half] = cosf(ang), sn[f] = sn[f + half] = sinf(ang);
        }
        const float *src = qkv + (size_t)i * row;
        for (int h = 0; h < Hq + Hkv; h++) {
            float *dst = h < Hq ? qr + (size_t)i * qdim + (size_t)h * hd : kc + (size_t)slot[i] * kv + (size_t)(h - Hq) * hd;
            float *sc = h < Hq ? qs + (size_t)i * qdim + (size_t)h * hd : ks + (size_t)slot[i] * kv + (size_t)(h - Hq) * hd;
            qvl_cpu_rmsnorm(NULL, dst, src + (size_t)h * hd, h < Hq ? qn : kn, 1, hd, d.eps);
            for (int j = 0; j < half; j++) sc[j] = sc[j + half] = fabsf(dst[j]) + fabsf(dst[j + half]);
            qvl_cpu_rope_half(dst, cs, sn, hd);
        }
        memcpy(vc + (size_t)slot[i] * kv, src + qdim + kv, (size_t)kv * sizeof *vc);
    }
    if (!st->failed_to_run) {
        cmp(st, e, qg, qr, NULL, qs, (size_t)n * qdim);
        cmp(st, e, kg, kc, NULL, ks, (size_t)rows * kv); /* scale 0 outside the new rows: unchanged exactly */
        cmp_exact(st, vg, vc, (size_t)rows * kv);
    }
    free(qkv), free(qn), free(kn), free(kc), free(vc), free(kg), free(vg), free(qg), free(qr), free(qs), free(ks);
    free(inv), free(cs), free(sn), free(pos), free(slot);
}

/* p: n, D, vocab, image rows (0: no vis_row) */
static void run_embed(const op_entry *e, const shape *sh, stats *st) {
    const int n = sh->p[0], D = sh->p[1], V = sh->p[2], R = sh->p[3];
    float *emb = gauss_buf((size_t)V * D, 1), *img = R ? gauss_buf((size_t)R * D, 1) : NULL;
    float *x = malloc((size_t)n * D * sizeof *x), *ref = malloc((size_t)n * D * sizeof *ref);
    int32_t *ids = malloc((size_t)n * sizeof *ids), *vis = malloc((size_t)n * sizeof *vis);
    int next = 0;
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)(urand() * V);
        vis[i] = R && next < R && urand() < 0.5 ? next++ : -1;
        memcpy(ref + (size_t)i * D, vis[i] >= 0 ? img + (size_t)vis[i] * D : emb + (size_t)ids[i] * D, (size_t)D * sizeof *ref);
    }
    ran(st, bo_embed(x, emb, V, ids, R ? vis : NULL, img, R, n, D));
    if (!st->failed_to_run) cmp(st, e, x, ref, NULL, NULL, (size_t)n * D);
    free(emb), free(img), free(x), free(ref), free(ids), free(vis);
}

/* p: n, D, ds rows */
static void run_deepstack(const op_entry *e, const shape *sh, stats *st) {
    const int n = sh->p[0], D = sh->p[1], R = sh->p[2];
    float *x = gauss_buf((size_t)n * D, 2), *ds = gauss_buf((size_t)R * D, 1), *g = dup_buf(x, (size_t)n * D);
    int32_t *vis = malloc((size_t)n * sizeof *vis);
    for (int i = 0, next = 0; i < n; i++) vis[i] = next < R && urand() < 0.6 ? next++ : -1;
    ran(st, bo_deepstack_add(g, vis, ds, R, n, D));
    for (int i = 0; i < n; i++)
        if (vis[i] >= 0) qvl_cpu_add(x + (size_t)i * D, ds + (size_t)vis[i] * D, (size_t)D);
    round_all(x, (size_t)n * D);
    if (!st->failed_to_run) cmp(st, e, g, x, NULL, NULL, (size_t)n * D);
    free(x), free(ds), free(g), free(vis);
}

/* p: rows, V, ties (values on a coarse grid: many equal maxima) */
static void run_argmax(const op_entry *e, const shape *sh, stats *st) {
    const int rows = sh->p[0], V = sh->p[1];
    float *x = gauss_buf((size_t)rows * V, 4);
    if (sh->p[2])
        for (size_t i = 0; i < (size_t)rows * V; i++) x[i] = floorf(x[i]);
    int32_t *got = malloc((size_t)rows * sizeof *got), *ref = malloc((size_t)rows * sizeof *ref);
    ran(st, bo_argmax(got, x, rows, V));
    for (int r = 0; r < rows; r++) ref[r] = qvl_argmax_lowest(x + (size_t)r * V, V);
    if (!st->failed_to_run) cmp_ids(st, got, ref, (size_t)rows);
    (void)e;
    free(x), free(got), free(ref);
}

/* ---- products ---- */

/* sum_k |x[m,k] w[n,k]| (+ |b[n]|): the scale of an F32 sum's error (x rows of K values) */
static float *abs_products(const float *x, const float *w, const float *b, int M, int K, int N) {
    float *s = malloc((size_t)M * N * sizeof *s), *ax = malloc((size_t)M * K * sizeof *ax);
    float *aw = malloc((size_t)N * K * sizeof *aw), *ab = b ? malloc((size_t)N * sizeof *ab) : NULL;
    for (size_t i = 0; i < (size_t)M * K; i++) ax[i] = fabsf(x[i]);
    for (size_t i = 0; i < (size_t)N * K; i++) aw[i] = fabsf(w[i]);
    for (int n = 0; b && n < N; n++) ab[n] = fabsf(b[n]);
    qvl_cpu_matmul(pool, s, ax, aw, ab, M, K, N);
    free(ax), free(aw), free(ab);
    return s;
}

/* p: M, K, N, ldx pad, ldy pad, bias, gelu, off */
static void run_gemm(const op_entry *e, const shape *sh, stats *st) {
    const int M = sh->p[0], K = sh->p[1], N = sh->p[2], ldx = K + sh->p[3], ldy = N + sh->p[4], gelu = sh->p[6];
    float *x = gauss_buf((size_t)M * ldx, 1), *w = gauss_buf((size_t)N * K, 1.0 / sqrt(K));
    float *b = sh->p[5] || gelu ? gauss_buf(N, 0.5) : NULL, *y = gauss_buf((size_t)M * ldy, 1);
    float *y0 = dup_buf(y, (size_t)M * ldy), *xc = malloc((size_t)M * K * sizeof *xc), *ref = malloc((size_t)M * N * sizeof *ref);
    float *got = calloc((size_t)M * N, sizeof *got);
    for (int m = 0; m < M; m++) memcpy(xc + (size_t)m * K, x + (size_t)m * ldx, (size_t)K * sizeof *xc);
    ran(st, bo_gemm(y, ldy, x, ldx, w, b, M, K, N, gelu, sh->p[7]));
    qvl_cpu_matmul(pool, ref, xc, w, b, M, K, N);
    if (gelu) qvl_cpu_gelu_tanh(pool, ref, (size_t)M * N);
    float *s = abs_products(xc, w, b, M, K, N);
    for (int m = 0; m < M; m++) memcpy(got + (size_t)m * N, y + (size_t)m * ldy, (size_t)N * sizeof *got);
    if (!st->failed_to_run) {
        cmp(st, e, got, ref, NULL, s, (size_t)M * N);
        for (int m = 0; m < M; m++) /* the padding columns of y untouched */
            cmp_exact(st, y + (size_t)m * ldy + N, y0 + (size_t)m * ldy + N, (size_t)(ldy - N));
    }
    free(x), free(w), free(b), free(y), free(y0), free(xc), free(ref), free(got), free(s);
}

/* p: K, N, mode (0 plain, 1 RMSNorm, 2 SwiGLU), resid, variant (0 fastest, 1..5) */
static void run_gemv(const op_entry *e, const shape *sh, stats *st) {
    const int K = sh->p[0], N = sh->p[1], mode = sh->p[2], resid = sh->p[3];
    const float eps = 1e-6f;
    float *x = gauss_buf((size_t)(mode == 2 ? 2 : 1) * K, 2), *w = gauss_buf((size_t)N * K, 1.0 / sqrt(K));
    float *nw = mode == 1 ? gauss_buf(K, 0.2) : NULL, *y = gauss_buf(N, 1), *y0 = dup_buf(y, N);
    float *in = malloc((size_t)K * sizeof *in), *ref = malloc((size_t)N * sizeof *ref), *mag = calloc((size_t)N, sizeof *mag);
    if (nw)
        for (int k = 0; k < K; k++) nw[k] = bf(1 + nw[k]);
    ran(st, bo_gemv(y, x, w, K, N, mode, nw, eps, resid, sh->p[4]));
    if (mode == 1) qvl_cpu_rmsnorm(pool, in, x, nw, 1, K, eps);
    else if (mode == 2) {
        memcpy(in, x, (size_t)K * sizeof *in);
        qvl_cpu_silu_mul(pool, in, x + K, (size_t)K);
    } else
        memcpy(in, x, (size_t)K * sizeof *in);
    qvl_cpu_matmul(pool, ref, in, w, NULL, 1, K, N);
    float *s = abs_products(in, w, NULL, 1, K, N);
    if (resid)
        for (int n = 0; n < N; n++) mag[n] = fabsf(ref[n]), ref[n] += y0[n]; /* the product is rounded before the sum */
    if (!st->failed_to_run) cmp(st, e, y, ref, mag, s, (size_t)N);
    free(x), free(w), free(nw), free(y), free(y0), free(in), free(ref), free(mag), free(s);
}

/* ---- attention ---- */

/* p: n_q, n_kv, Hq, Hkv, hd, causal (1: causal_pos0 = n_kv - n_q, 0: bidirectional), impl + 2
 * (1 auto, 2 FA2, 3 + c wgmma c), split | 2 * off | 4 * (q scale x4: peaked softmax). v in [-1, 1]. */
static void run_attention(const op_entry *e, const shape *sh, stats *st) {
    const int n_q = sh->p[0], n_kv = sh->p[1], Hq = sh->p[2], Hkv = sh->p[3], hd = sh->p[4];
    const int c0 = sh->p[5] ? n_kv - n_q : -1, impl = sh->p[6] - 2, flags = sh->p[7];
    const int qs = Hq * hd, kvs = Hkv * hd;
    float *q = gauss_buf((size_t)n_q * qs, flags & 4 ? 4 : 1), *k = gauss_buf((size_t)n_kv * kvs, 1);
    float *v = unif_buf((size_t)n_kv * kvs, -1, 1), *got = malloc((size_t)n_q * qs * sizeof *got);
    float *ref = malloc((size_t)n_q * qs * sizeof *ref);
    float *scratch = malloc(qvl_cpu_attention_scratch(qvl_pool_threads(pool), n_kv) * sizeof *scratch);
    ran(st, bo_attention(got, q, qs, k, v, kvs, n_q, n_kv, Hq, Hkv, hd, c0, impl, flags & 1, (flags >> 1) & 1));
    qvl_cpu_attention(pool, ref, qs, q, qs, k, v, kvs, n_q, n_kv, Hq, Hkv, hd, c0, scratch);
    if (!st->failed_to_run) cmp(st, e, got, ref, NULL, NULL, (size_t)n_q * qs);
    free(q), free(k), free(v), free(got), free(ref), free(scratch);
}

/* p: n_kv, Hq, Hkv, hd */
static void run_attention_decode(const op_entry *e, const shape *sh, stats *st) {
    const int n_kv = sh->p[0], Hq = sh->p[1], Hkv = sh->p[2], hd = sh->p[3], kvs = Hkv * hd;
    float *q = gauss_buf((size_t)Hq * hd, 1), *k = gauss_buf((size_t)n_kv * kvs, 1), *v = unif_buf((size_t)n_kv * kvs, -1, 1);
    float *got = malloc((size_t)Hq * hd * sizeof *got), *ref = malloc((size_t)Hq * hd * sizeof *ref);
    float *scratch = malloc(qvl_cpu_attention_scratch(qvl_pool_threads(pool), n_kv) * sizeof *scratch);
    ran(st, bo_attention_decode(got, q, k, v, n_kv, Hq, Hkv, hd));
    qvl_cpu_attention(pool, ref, Hq * hd, q, Hq * hd, k, v, kvs, 1, n_kv, Hq, Hkv, hd, n_kv - 1, scratch);
    if (!st->failed_to_run) cmp(st, e, got, ref, NULL, NULL, (size_t)Hq * hd);
    free(q), free(k), free(v), free(got), free(ref), free(scratch);
}

/* ---- batched backend: paged KV (cuda_paged.cu) ---- */

/* A random paged layout: n_seqs sequences of kv_len[s] in 1..max_len keys (the first max_len, the
 * second 1), their blocks scattered over a pool of n_seqs * bps blocks + 3 spare ones. */
typedef struct {
    int n_seqs, bps, block, pool_rows;
    int32_t *kv_len, *tables;
} paged_layout;
static paged_layout paged_new(int n_seqs, int max_len, int block) {
    paged_layout L = {n_seqs, (max_len + block - 1) / block, block, 0, NULL, NULL};
    const int n_blocks = n_seqs * L.bps + 3;
    L.pool_rows = n_blocks * block;
    L.kv_len = malloc((size_t)n_seqs * sizeof *L.kv_len);
    L.tables = malloc((size_t)n_seqs * L.bps * sizeof *L.tables);
    int32_t *perm = malloc((size_t)n_blocks * sizeof *perm);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(urand() * (i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int s = 0; s < n_seqs; s++) {
        L.kv_len[s] = s == 0 ? max_len : s == 1 ? 1 : 1 + (int)(urand() * max_len);
        for (int b = 0; b < L.bps; b++) L.tables[(size_t)s * L.bps + b] = perm[(size_t)s * L.bps + b];
    }
    free(perm);
    return L;
}
static void paged_free(paged_layout *L) { free(L->kv_len), free(L->tables); }
/* Keys 0..n-1 of sequence s, gathered from the pool (rows of kv values). */
static void paged_gather(const paged_layout *L, int s, const float *pool_, int kv, int n, float *dst) {
    for (int j = 0; j < n; j++)
        memcpy(dst + (size_t)j * kv, pool_ + ((size_t)L->tables[(size_t)s * L->bps + j / L->block] * L->block + j % L->block) * kv,
               (size_t)kv * sizeof *dst);
}

/* p: n_seqs, max kv_len, Hq, Hkv, hd, block, splits, every (rows = every p[7]-th batch row; the others
 * must stay unchanged). Batch row r decodes sequence n_seqs - 1 - r. */
static void run_attention_paged(const op_entry *e, const shape *sh, stats *st) {
    const int n_seqs = sh->p[0], max_len = sh->p[1], Hq = sh->p[2], Hkv = sh->p[3], hd = sh->p[4], every = sh->p[7];
    const int qs = Hq * hd, kvs = Hkv * hd;
    paged_layout L = paged_new(n_seqs, max_len, sh->p[5]);
    float *q = gauss_buf((size_t)n_seqs * qs, 1), *kp = gauss_buf((size_t)L.pool_rows * kvs, 1);
    float *vp = unif_buf((size_t)L.pool_rows * kvs, -1, 1), *got = gauss_buf((size_t)n_seqs * qs, 1);
    float *ref = dup_buf(got, (size_t)n_seqs * qs), *kc = malloc((size_t)max_len * kvs * sizeof *kc);
    float *vc = malloc((size_t)max_len * kvs * sizeof *vc);
    float *scratch = malloc(qvl_cpu_attention_scratch(qvl_pool_threads(pool), max_len) * sizeof *scratch);
    int32_t *rows = malloc((size_t)n_seqs * sizeof *rows), *seq = malloc((size_t)n_seqs * sizeof *seq);
    int32_t *len = malloc((size_t)n_seqs * sizeof *len);
    int n_rows = 0;
    for (int r = 0; r < n_seqs; r++) {
        seq[r] = n_seqs - 1 - r, len[r] = L.kv_len[seq[r]];
        if (r % every == 0) rows[n_rows++] = r;
    }
    if (!bo_attention_paged_ok(Hq, Hkv, hd)) ran(st, qvl_errorf("qvl_attention_paged_ok refuses Hq %d Hkv %d hd %d", Hq, Hkv, hd));
    else ran(st, bo_attention_paged(got, q, n_seqs, kp, vp, L.pool_rows, rows, n_rows, seq, len, n_seqs, L.tables, L.bps,
                                    L.block, Hq, Hkv, hd, sh->p[6]));
    for (int i = 0; i < n_rows; i++) {
        const int r = rows[i], n = len[r];
        paged_gather(&L, seq[r], kp, kvs, n, kc);
        paged_gather(&L, seq[r], vp, kvs, n, vc);
        qvl_cpu_attention(pool, ref + (size_t)r * qs, qs, q + (size_t)r * qs, qs, kc, vc, kvs, 1, n, Hq, Hkv, hd, n - 1, scratch);
    }
    if (!st->failed_to_run) cmp(st, e, got, ref, NULL, NULL, (size_t)n_seqs * qs); /* rows not decoded: ref = what was there */
    paged_free(&L);
    free(q), free(kp), free(vp), free(got), free(ref), free(kc), free(vc), free(scratch), free(rows), free(seq), free(len);
}

/* p: n (keys), kv, block, pool blocks (>= ceil(n / block)) */
static void run_kv_gather(const op_entry *e, const shape *sh, stats *st) {
    const int n = sh->p[0], kv = sh->p[1];
    paged_layout L = paged_new(1, n, sh->p[2]);
    float *kp = gauss_buf((size_t)L.pool_rows * kv, 1), *vp = gauss_buf((size_t)L.pool_rows * kv, 1);
    float *kg = malloc((size_t)n * kv * sizeof *kg), *vg = malloc((size_t)n * kv * sizeof *vg);
    float *kr = malloc((size_t)n * kv * sizeof *kr), *vr = malloc((size_t)n * kv * sizeof *vr);
    ran(st, bo_kv_gather(kg, vg, kp, vp, L.pool_rows, kv, L.tables, L.bps, L.block, n));
    paged_gather(&L, 0, kp, kv, n, kr);
    paged_gather(&L, 0, vp, kv, n, vr);
    if (!st->failed_to_run) cmp(st, e, kg, kr, NULL, NULL, (size_t)n * kv), cmp(st, e, vg, vr, NULL, NULL, (size_t)n * kv);
    paged_free(&L);
    free(kp), free(vp), free(kg), free(vg), free(kr), free(vr);
}

/* ---- FP8 KV pool (--kv-dtype fp8) ---- */

/* Codes agree bit for bit; a NaN input gives a NaN code (0x7f / 0xff) on both sides (the CPU keeps
 * the sign, the device's conversion gives the canonical 0x7f). */
static void cmp_codes(stats *st, const uint8_t *got, const uint8_t *ref, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        st->n++;
        if (got[i] == ref[i] || (isnan(x[i]) && (got[i] & 0x7f) == 0x7f && (ref[i] & 0x7f) == 0x7f)) continue;
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        if (st->bad < 3) printf("      value %.9g (bits %08x): gpu code 0x%02x, cpu 0x%02x\n", x[i], bits, got[i], ref[i]);
        st->bad++;
        st->worst = INFINITY;
    }
}

/* p: n, kind (0 gaussian x 100, 1 specials: ties, saturation, subnormals, infinities, NaN, -0,
 * 2 every float with a stride of 4099 bits). Also the decode of all 256 codes against the table. */
static void run_kv_fp8_convert(const op_entry *e, const shape *sh, stats *st) {
    const size_t n = (size_t)sh->p[0];
    float *x = malloc(n * sizeof *x), *table = malloc(256 * sizeof *table);
    uint8_t *got = malloc(n), *ref = malloc(n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(urand() * 4294967296.0);
        float v = (float)(grand() * 100);
        if (sh->p[1] == 1) {
            const int code = (int)(urand() * 127), sign = urand() < 0.5 ? -1 : 1;
            const float lo = qvl_kv_fp8_table()[code], hi = code < 126 ? qvl_kv_fp8_table()[code + 1] : 480.0f;
            switch (i % 10) {
            case 0: v = sign * 0.5f * (lo + hi); break;                               /* a tie between two codes */
            case 1: v = sign * (448.0f + (float)urand() * 1e6f); break;               /* saturates to +-448 */
            case 2: v = sign * ldexpf((float)urand(), -6); break;                     /* the subnormal codes' range */
            case 3: v = sign * INFINITY; break;
            case 4: u |= 0x7f800001u, memcpy(&v, &u, 4); break;                     /* NaN, any payload and sign */
            case 5: v = sign * 0.0f; break;
            case 6: v = sign * ldexpf((float)urand(), -12); break;                    /* below the smallest subnormal */
            case 7: v = sign * 464.0f; break;                                          /* the tie above 448 */
            case 8: memcpy(&v, &u, 4); if (isnan(v)) v = 1.0f; break;               /* any bits */
            default: v = sign * (lo + (hi - lo) * (float)urand()); break;
            }
        } else if (sh->p[1] == 2) {
            uint32_t b = (uint32_t)(i * 4099u);
            memcpy(&v, &b, 4);
        }
        x[i] = v;
    }
    qvl_kv_fp8_encode(ref, x, n);
    ran(st, bo_kv_fp8_convert(got, x, n, table));
    if (!st->failed_to_run) {
        cmp_codes(st, got, ref, x, n);
        cmp_exact(st, table, qvl_kv_fp8_table(), 256);
    }
    (void)e;
    free(x), free(table), free(got), free(ref);
}

/* p: as paged_shapes, + p[7] scale of the keys and values. The pools are the e4m3 codes of random
 * values; the reference is the CPU op reading the same codes (qvl_cpu_attention_segs over paged
 * blocks with fp8 = 1: per block its K rows then its V rows). */
static void run_attention_paged_fp8(const op_entry *e, const shape *sh, stats *st) {
    const int n_seqs = sh->p[0], max_len = sh->p[1], Hq = sh->p[2], Hkv = sh->p[3], hd = sh->p[4], block = sh->p[5];
    const int qs = Hq * hd, kvs = Hkv * hd;
    paged_layout L = paged_new(n_seqs, max_len, block);
    const size_t pool_n = (size_t)L.pool_rows * kvs, blk_n = (size_t)block * kvs;
    float *q = gauss_buf((size_t)n_seqs * qs, 1), *kp = gauss_buf(pool_n, sh->p[7]), *vp = gauss_buf(pool_n, sh->p[7]);
    float *got = gauss_buf((size_t)n_seqs * qs, 1), *ref = dup_buf(got, (size_t)n_seqs * qs);
    uint8_t *k8 = malloc(pool_n), *v8 = malloc(pool_n), *kvb = malloc(2 * pool_n);
    const int n_blocks = L.pool_rows / block;
    void **blocks = malloc((size_t)n_blocks * sizeof *blocks);
    qvl_kv_fp8_encode(k8, kp, pool_n);
    qvl_kv_fp8_encode(v8, vp, pool_n);
    for (int b = 0; b < n_blocks; b++) {
        blocks[b] = kvb + 2 * blk_n * b;
        memcpy(kvb + 2 * blk_n * b, k8 + blk_n * b, blk_n);
        memcpy(kvb + 2 * blk_n * b + blk_n, v8 + blk_n * b, blk_n);
    }
    float *scratch = malloc(qvl_cpu_attention_scratch(qvl_pool_threads(pool), max_len) * sizeof *scratch);
    int32_t *rows = malloc((size_t)n_seqs * sizeof *rows), *seq = malloc((size_t)n_seqs * sizeof *seq);
    int32_t *len = malloc((size_t)n_seqs * sizeof *len);
    for (int r = 0; r < n_seqs; r++) seq[r] = n_seqs - 1 - r, len[r] = L.kv_len[seq[r]], rows[r] = r;
    if (!bo_attention_paged_ok(Hq, Hkv, hd)) ran(st, qvl_errorf("qvl_attention_paged_ok refuses Hq %d Hkv %d hd %d", Hq, Hkv, hd));
    else ran(st, bo_attention_paged_fp8(got, q, n_seqs, k8, v8, L.pool_rows, rows, n_seqs, seq, len, n_seqs, L.tables,
                                        L.bps, block, Hq, Hkv, hd, sh->p[6]));
    qvl_attn_paged pg = {blocks, 0, blk_n, block, 1};
    for (int r = 0; r < n_seqs; r++) {
        qvl_attn_seg sg = {.row0 = r, .n_q = 1, .n_kv = len[r], .causal_pos0 = len[r] - 1,
                           .table = L.tables + (size_t)seq[r] * L.bps};
        qvl_cpu_attention_segs(pool, ref, qs, q, qs, kvs, &sg, 1, &pg, Hq, Hkv, hd, scratch, max_len);
    }
    if (!st->failed_to_run) cmp(st, e, got, ref, NULL, NULL, (size_t)n_seqs * qs);
    paged_free(&L);
    free(q), free(kp), free(vp), free(got), free(ref), free(k8), free(v8), free(kvb), free(blocks), free(scratch);
    free(rows), free(seq), free(len);
}

/* p: n (keys), kv, block. The gathered BF16 rows are the decoded codes exactly. */
static void run_kv_gather_fp8(const op_entry *e, const shape *sh, stats *st) {
    const int n = sh->p[0], kv = sh->p[1];
    paged_layout L = paged_new(1, n, sh->p[2]);
    const size_t pool_n = (size_t)L.pool_rows * kv;
    float *kp = gauss_buf(pool_n, 30), *vp = gauss_buf(pool_n, 0.01);
    uint8_t *k8 = malloc(pool_n), *v8 = malloc(pool_n);
    qvl_kv_fp8_encode(k8, kp, pool_n);
    qvl_kv_fp8_encode(v8, vp, pool_n);
    qvl_kv_fp8_decode(kp, k8, pool_n);
    qvl_kv_fp8_decode(vp, v8, pool_n);
    float *kg = malloc((size_t)n * kv * sizeof *kg), *vg = malloc((size_t)n * kv * sizeof *vg);
    float *kr = malloc((size_t)n * kv * sizeof *kr), *vr = malloc((size_t)n * kv * sizeof *vr);
    ran(st, bo_kv_gather_fp8(kg, vg, k8, v8, L.pool_rows, kv, L.tables, L.bps, L.block, n));
    paged_gather(&L, 0, kp, kv, n, kr);
    paged_gather(&L, 0, vp, kv, n, vr);
    if (!st->failed_to_run) cmp_exact(st, kg, kr, (size_t)n * kv), cmp_exact(st, vg, vr, (size_t)n * kv);
    (void)e;
    paged_free(&L);
    free(kp), free(vp), free(k8), free(v8), free(kg), free(vg), free(kr), free(vr);
}

/* p: Hq, Hkv, hd, n, first cache row. The FP8 write against the BF16 one on the same inputs: q the
 * same bits, each new cache row the e4m3 codes of the BF16 row (qvl_kv_fp8_encode), the other rows
 * untouched. */
static void run_qk_norm_rope_fp8(const op_entry *e, const shape *sh, stats *st) {
    const int Hq = sh->p[0], Hkv = sh->p[1], hd = sh->p[2], n = sh->p[3], p0 = sh->p[4];
    const int half = hd / 2, kv = Hkv * hd, qdim = Hq * hd, row = qdim + 2 * kv, rows = p0 + n + 3;
    bo_rope d = {Hq, Hkv, hd, {0, 0, 0}, 1, 1e-6f};
    d.sec[1] = half * 20 / 64, d.sec[2] = half * 20 / 64, d.sec[0] = half - d.sec[1] - d.sec[2];
    float *qkv = gauss_buf((size_t)n * row, 2), *qn = gauss_buf(hd, 0.2), *kn = gauss_buf(hd, 0.2);
    for (int i = 0; i < hd; i++) qn[i] = bf(1 + qn[i]), kn[i] = bf(1 + kn[i]);
    for (size_t i = 0; i < (size_t)n * row; i++)
        if (i % 97 == 0) qkv[i] = bf(qkv[i] * 300); /* v values beyond 448 saturate */
    float *kc = calloc((size_t)rows * kv, sizeof *kc), *vc = calloc((size_t)rows * kv, sizeof *vc);
    float *qb = calloc((size_t)n * qdim, sizeof *qb), *q8 = calloc((size_t)n * qdim, sizeof *q8);
    float *inv = malloc((size_t)half * sizeof *inv);
    uint8_t *k8 = malloc((size_t)rows * kv), *v8 = malloc((size_t)rows * kv);
    uint8_t *kr = malloc((size_t)rows * kv), *vr = malloc((size_t)rows * kv);
    for (size_t i = 0; i < (size_t)rows * kv; i++) kr[i] = k8[i] = (uint8_t)(urand() * 256), vr[i] = v8[i] = (uint8_t)(urand() * 256);
    int32_t *pos = malloc((size_t)3 * n * sizeof *pos), *slot = malloc((size_t)n * sizeof *slot);
    for (int i = 0; i < half; i++) inv[i] = 1.0f / powf(5000000.0f, (float)(2 * i) / (float)hd);
    for (int i = 0; i < n; i++) slot[i] = p0 + i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(urand() * (i + 1));
        int32_t t = slot[i];
        slot[i] = slot[j], slot[j] = t;
    }
    for (int i = 0; i < 3 * n; i++) pos[i] = (int32_t)(urand() * 3000);
    ran(st, bo_qk_norm_rope(&d, qb, qdim, kc, vc, rows, qkv, qn, kn, inv, n, 0, pos, 0, 0, slot));
    if (!st->failed_to_run) ran(st, bo_qk_norm_rope_fp8(&d, q8, qdim, k8, v8, rows, qkv, qn, kn, inv, n, pos, slot));
    for (int i = 0; i < n; i++) {
        qvl_kv_fp8_encode(kr + (size_t)slot[i] * kv, kc + (size_t)slot[i] * kv, (size_t)kv);
        qvl_kv_fp8_encode(vr + (size_t)slot[i] * kv, vc + (size_t)slot[i] * kv, (size_t)kv);
    }
    if (!st->failed_to_run) {
        cmp_exact(st, q8, qb, (size_t)n * qdim);
        cmp_codes(st, k8, kr, kc, (size_t)rows * kv);
        cmp_codes(st, v8, vr, vc, (size_t)rows * kv);
    }
    (void)e;
    free(qkv), free(qn), free(kn), free(kc), free(vc), free(qb), free(q8), free(inv), free(k8), free(v8), free(kr), free(vr);
    free(pos), free(slot);
}

/* p: n, D, source rows */
static void run_gather_rows(const op_entry *e, const shape *sh, stats *st) {
    const int n = sh->p[0], D = sh->p[1], R = sh->p[2];
    float *src = gauss_buf((size_t)R * D, 1), *got = malloc((size_t)n * D * sizeof *got), *ref = malloc((size_t)n * D * sizeof *ref);
    int32_t *rows = malloc((size_t)n * sizeof *rows);
    for (int i = 0; i < n; i++) {
        rows[i] = (int32_t)(urand() * R);
        memcpy(ref + (size_t)i * D, src + (size_t)rows[i] * D, (size_t)D * sizeof *ref);
    }
    ran(st, bo_gather_rows(got, src, R, rows, n, D));
    if (!st->failed_to_run) cmp(st, e, got, ref, NULL, NULL, (size_t)n * D);
    free(src), free(got), free(ref), free(rows);
}

/* p: op (0 argmax, 1 attention_decode), pairs */
static void run_two_streams(const op_entry *e, const shape *sh, stats *st) {
    long wrong = 0, total = 0;
    ran(st, bo_two_streams(sh->p[0], sh->p[1], &wrong, &total));
    st->n = total, st->bad = wrong;
    st->worst = wrong ? INFINITY : 0;
    if (wrong) snprintf(st->note, sizeof st->note, "%ld of %ld launches differ from the same launch alone", wrong, total);
    (void)e;
}

/* ---- next-token picking ---- */

/* p: V, case (0 greedy, 1 greedy + penalties, 2 t 0.7 k 20 p 0.8, 3 + penalties, 4 k off p 0.8, 5 k 65,
 * 6 t 100), path (0 one-block kernel, 1 fast path, 2 fast path then the one-block kernel), picks */
static void run_pick(const op_entry *e, const shape *sh, stats *st) {
    const int V = sh->p[0], cs = sh->p[1], picks = sh->p[3];
    static const float cases[7][5] = {{0, 0, 1, 1, 0}, {0, 0, 1, 1.3f, 0.7f}, {0.7f, 20, 0.8f, 1, 0}, {0.7f, 20, 0.8f, 1.1f, 1.5f},
                                      {1, 0, 0.8f, 1, 0}, {0.8f, 65, 0.95f, 1, 0}, {100, 0, 0.8f, 1, 0}};
    qvl_sampler_params p = qvl_sampler_params_greedy();
    p.do_sample = cases[cs][0] > 0, p.temperature = cases[cs][0], p.top_k = (int)cases[cs][1], p.top_p = cases[cs][2];
    p.repetition_penalty = cases[cs][3], p.presence_penalty = cases[cs][4], p.seed = 4242u + (uint64_t)cs;
    qvl_sampler *cpu = qvl_sampler_new(V, &p), *stream = qvl_sampler_new(V, &p);
    qvl_cuda_picker *gpu = qvl_cuda_picker_new(V, picks);
    float *row = malloc((size_t)V * sizeof *row), *copy = malloc((size_t)V * sizeof *copy);
    double *u = malloc((size_t)picks * sizeof *u);
    int32_t prompt[16], *got = malloc((size_t)picks * sizeof *got), *ref = malloc((size_t)picks * sizeof *ref);
    if (!cpu || !stream || !gpu) {
        ran(st, -1);
        goto done;
    }
    for (int i = 0; i < 16; i++) prompt[i] = (int32_t)(urand() * V);
    qvl_sampler_accept_prompt(cpu, prompt, 16);
    qvl_sampler_uniforms(stream, u, picks);
    qvl_cuda_pick_params pp = {p.do_sample, p.temperature, p.top_k, p.top_p, p.repetition_penalty, p.presence_penalty};
    ran(st, qvl_cuda_picker_reset(gpu, &pp, prompt, 16, u, picks));
    qvl_cuda_picker_set_path(gpu, sh->p[2]);
    for (int k = 0; k < picks && !st->failed_to_run; k++) {
        double scale = 0.5 + 5 * urand();
        for (int i = 0; i < V; i++) row[i] = (float)(scale * grand());
        if (k % 3 == 0)
            for (int i = 0; i < V; i++) row[i] = floorf(row[i] * 2) / 2; /* exact ties */
        row[(int)(urand() * V)] += 8;
        memcpy(copy, row, (size_t)V * sizeof *row);
        ref[k] = qvl_sampler_pick(cpu, copy);
        qvl_sampler_accept(cpu, ref[k]);
        got[k] = qvl_cuda_picker_pick(gpu, row);
        if (got[k] < 0) ran(st, -1);
    }
    if (!st->failed_to_run) cmp_ids(st, got, ref, (size_t)picks);
done:
    (void)e;
    qvl_sampler_free(cpu), qvl_sampler_free(stream), qvl_cuda_picker_free(gpu);
    free(row), free(copy), free(u), free(got), free(ref);
}

/* ---- packed products (cuda_quant): int4 and FP8 ---- */

/* p: M, K, N, group, round (int4: QVL_QW_ROUND_*), force_gemm, symmetric (int4), fp8 */
static void run_qlin(const op_entry *e, const shape *sh, stats *st) {
    const int M = sh->p[0], K = sh->p[1], N = sh->p[2], g = sh->p[3], fp8 = sh->p[7];
    qvl_qweight w;
    memset(&w, 0, sizeof w);
    w.N = N, w.K = K, w.group = g;
    snprintf(w.name, sizeof w.name, "random %s %dx%d", fp8 ? "fp8" : "int4", N, K);
    size_t G;
    if (fp8) {
        w.kind = QVL_QW_FP8, w.block_n = g, w.act_quant = 1;
        G = (size_t)((N + g - 1) / g) * ((K + g - 1) / g);
        w.q = malloc((size_t)N * K);
        for (size_t i = 0; i < (size_t)N * K; i++) {
            uint8_t c = (uint8_t)(urand() * 256);
            w.q[i] = (c & 0x7f) == 0x7f ? 0 : c; /* no NaN codes */
        }
        w.scale = malloc(G * sizeof *w.scale);
        for (size_t i = 0; i < G; i++) w.scale[i] = (float)((0.5 + urand()) / (64 * sqrt(K)));
    } else {
        w.kind = QVL_QW_INT4, w.round = sh->p[4];
        G = (size_t)N * K / g;
        w.q = malloc((size_t)N * K / 2), w.zero = malloc(G), w.scale = malloc(G * sizeof *w.scale);
        for (size_t i = 0; i < (size_t)N * K / 2; i++) w.q[i] = (uint8_t)(urand() * 256);
        for (size_t i = 0; i < G; i++) {
            w.zero[i] = sh->p[6] ? 8 : (uint8_t)(urand() * 16);
            float s = (float)((0.5 + urand()) * 0.2 / sqrt(K));
            w.scale[i] = w.round == QVL_QW_ROUND_F16 ? qvl_round_f16(s) : w.round == QVL_QW_ROUND_BF16 ? qvl_round_bf16(s) : s;
        }
    }
    float *x = gauss_buf((size_t)M * K, 1), *y = malloc((size_t)M * N * sizeof *y), *ref = malloc((size_t)M * N * sizeof *ref);
    float *wd = malloc((size_t)N * K * sizeof *wd);
    uint16_t *xb = malloc((size_t)M * K * sizeof *xb);
    for (size_t i = 0; i < (size_t)M * K; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        xb[i] = (uint16_t)(u >> 16); /* x is BF16-exact */
    }
    qvl_cuda_qlin d;
    if (!qvl_cuda_qlin_plan_loaded(&w, &d)) {
        ran(st, qvl_errorf("%s: group %d not on the GPU path", w.name, g));
    } else {
        bo_clear_error();
        ran(st, qvl_cuda_qlin_run_host(&w, xb, M, sh->p[5], y, 0, NULL));
        qvl_cpu_matmul_q(pool, ref, x, &w, NULL, M, K, N);
        qvl_qweight_dequant_rows(&w, 0, N, wd);
        float *s = abs_products(x, wd, NULL, M, K, N);
        if (!st->failed_to_run) cmp(st, e, y, ref, NULL, s, (size_t)M * N);
        free(s);
    }
    free(w.q), free(w.zero), free(w.scale), free(x), free(y), free(ref), free(wd), free(xb);
}

/* ---- the table ---- */
#define SHAPES(a) a, (int)(sizeof a / sizeof a[0])

static const shape convert_shapes[] = {{"n=1", {1, 0}}, {"n=1000003 gaussian", {1000003, 0}}, {"n=60000 ties/inf/nan/subnormal", {60000, 1}}};
static const shape rmsnorm_shapes[] = {
    {"rows=1 dim=2048 (vec)", {1, 2048, 0, 0}},      {"rows=7 dim=4096 add (vec)", {7, 4096, 1, 0}},
    {"rows=3 dim=8 add (vec)", {3, 8, 1, 0}},          {"rows=5 dim=32768 (vec, 4 chunks/thread)", {5, 32768, 0, 0}},
    {"rows=65 dim=40000 add (scalar: > 4096 chunks)", {65, 40000, 1, 0}}, {"rows=9 dim=1000 unaligned (scalar)", {9, 1000, 0, 1}},
    {"rows=4 dim=77 add (scalar: odd)", {4, 77, 1, 0}}, {"rows=1 dim=1", {1, 1, 0, 0}},
    {"rows=300 dim=128 add unaligned", {300, 128, 1, 1}},
};
static const shape layernorm_shapes[] = {
    {"rows=1 dim=1152 (vec)", {1, 1152, 0, 0, 1}},       {"rows=1024 dim=1024 add (vec)", {1024, 1024, 1, 0, 1}},
    {"rows=3 dim=16384 add (vec, 2 chunks/thread)", {3, 16384, 1, 0, 1}}, {"rows=2 dim=33000 (scalar: > 4096 chunks)", {2, 33000, 0, 0, 1}},
    {"rows=17 dim=1152 unaligned (scalar)", {17, 1152, 0, 1, 1}},       {"rows=5 dim=99 add (scalar: odd)", {5, 99, 1, 0, 1}},
    {"rows=1 dim=1", {1, 1, 0, 0, 1}},
};
static const shape add_shapes[] = {{"n=1", {1, 0}}, {"n=4097", {4097, 0}}, {"n=3000001 unaligned", {3000001, 1}}};
static const shape gelu_shapes[] = {{"tanh n=1", {1, 0}}, {"tanh n=2000003", {2000003, 0}}, {"erf n=1", {1, 1}}, {"erf n=2000003", {2000003, 1}}};
static const shape silu_shapes[] = {
    {"rows=1 I=6144 (vec)", {1, 6144, 0}}, {"rows=33 I=12288 (vec)", {33, 12288, 0}}, {"rows=5 I=1001 (scalar: odd)", {5, 1001, 0}},
    {"rows=7 I=512 unaligned (scalar)", {7, 512, 1}}, {"rows=1 I=1", {1, 1, 0}},
};
static const shape pos_embed_shapes[] = {
    {"G=48 Dv=1152 grid 1x32x44 M=2", {48, 1152, 1, 32, 44, 2}}, {"G=48 Dv=64 grid 2x2x2 M=2", {48, 64, 2, 2, 2, 2}},
    {"G=48 Dv=36 grid 1x94x62 M=2", {48, 36, 1, 94, 62, 2}},     {"G=4 Dv=8 grid 1x4x6 M=2", {4, 8, 1, 4, 6, 2}},
    {"G=16 Dv=24 grid 3x3x3 M=1", {16, 24, 3, 3, 3, 1}},
};
static const shape vision_rope_shapes[] = {
    {"grid 1x32x44 M=2 H=16 hd=72 (vec)", {1, 32, 44, 2, 16, 72, 0}}, {"grid 1x2x2 M=2 H=16 hd=64 (vec)", {1, 2, 2, 2, 16, 64, 0}},
    {"grid 2x8x6 M=2 H=3 hd=40 (scalar: hd/2 % 8)", {2, 8, 6, 2, 3, 40, 0}}, {"grid 1x10x12 M=2 H=4 hd=64 unaligned", {1, 10, 12, 2, 4, 64, 1}},
    {"grid 1x94x62 M=2 H=16 hd=80", {1, 94, 62, 2, 16, 80, 0}},
};
static const shape qk_rope_shapes[] = {
    {"8B Hq=32 Hkv=8 hd=128 n=1 p0=100 step", {32, 8, 128, 1, 100, 2, 1}},
    {"8B Hq=32 Hkv=8 hd=128 n=129 p0=0 THW", {32, 8, 128, 129, 0, 1, 1}},
    {"2B Hq=16 Hkv=8 hd=128 n=7 p0=3000 scalar", {16, 8, 128, 7, 3000, 0, 1}},
    {"Hq=14 Hkv=2 hd=64 n=33 p0=5 THW chunked sections", {14, 2, 64, 33, 5, 1, 0}},
    {"Hq=40 Hkv=8 hd=96 n=3 p0=1 (heads > 32 warps)", {40, 8, 96, 3, 1, 1, 1}},
    {"Hq=2 Hkv=1 hd=16 n=1 p0=0", {2, 1, 16, 1, 0, 0, 1}},
    {"slots: 8B Hq=32 Hkv=8 hd=128 n=37 rows 500.. shuffled", {32, 8, 128, 37, 500, 3, 1}},
    {"slots: Hq=14 Hkv=2 hd=64 n=1 row 9", {14, 2, 64, 1, 9, 3, 1}},
};
static const shape embed_shapes[] = {{"n=1 D=2048 text", {1, 2048, 1000, 0}}, {"n=300 D=4096 images", {300, 4096, 500, 150}}, {"n=5 D=7 images", {5, 7, 11, 3}}};
static const shape deepstack_shapes[] = {{"n=300 D=4096", {300, 4096, 200}}, {"n=5 D=7", {5, 7, 3}}, {"n=1 D=2048", {1, 2048, 1}}};
static const shape argmax_shapes[] = {
    {"rows=1 V=151936 (many blocks)", {1, 151936, 0}}, {"rows=1 V=151936 ties", {1, 151936, 1}}, {"rows=1 V=1", {1, 1, 0}},
    {"rows=1 V=33 ties", {1, 33, 1}}, {"rows=9 V=151936 ties", {9, 151936, 1}}, {"rows=64 V=1001", {64, 1001, 0}},
};
static const shape gemm_shapes[] = {
    {"M=1 K=2048 N=2048", {1, 2048, 2048, 0, 0, 0, 0, 0}},
    {"M=3 K=64 N=7", {3, 64, 7, 0, 0, 0, 0, 0}},
    {"M=17 K=1152 N=3456 bias", {17, 1152, 3456, 0, 0, 1, 0, 0}},
    {"M=257 K=1024 N=1000 bias", {257, 1024, 1000, 0, 0, 1, 0, 0}},
    {"M=1024 K=2048 N=512", {1024, 2048, 512, 0, 0, 0, 0, 0}},
    {"M=100 K=4096 N=4096 ldx+8 ldy+24", {100, 4096, 4096, 8, 24, 0, 0, 0}},
    {"M=33 K=72 N=40 bias unaligned", {33, 72, 40, 0, 0, 1, 0, 1}},
    {"M=513 K=1152 N=4304 GELU-tanh epilogue", {513, 1152, 4304, 0, 0, 1, 1, 0}},
    {"M=2 K=16 N=24 GELU-tanh epilogue", {2, 16, 24, 0, 0, 1, 1, 0}},
};
static const shape gemv_shapes[] = {
    {"K=2048 N=6144 variant 1", {2048, 6144, 0, 0, 1}},    {"K=2048 N=6144 variant 2", {2048, 6144, 0, 0, 2}},
    {"K=2048 N=6144 variant 3", {2048, 6144, 0, 0, 3}},    {"K=2048 N=6144 variant 4", {2048, 6144, 0, 0, 4}},
    {"K=2048 N=6144 variant 5", {2048, 6144, 0, 0, 5}},    {"K=4104 N=129 resid variant 1", {4104, 129, 0, 1, 1}},
    {"K=8 N=1 variant 3", {8, 1, 0, 0, 3}},                {"K=24560 N=7 resid variant 5 (largest K)", {24560, 7, 0, 1, 5}},
    {"K=4096 N=4096 resid fastest", {4096, 4096, 0, 1, 0}}, {"K=2048 N=151936 fastest (lm_head)", {2048, 151936, 0, 0, 0}},
};
static const shape gemv_fused_shapes[] = {
    {"RMSNorm K=2048 N=6144 variant 1", {2048, 6144, 1, 0, 1}}, {"RMSNorm K=4096 N=24576 variant 4", {4096, 24576, 1, 0, 4}},
    {"RMSNorm K=8 N=3 variant 2", {8, 3, 1, 0, 2}},             {"RMSNorm K=2048 N=32000 fastest", {2048, 32000, 1, 0, 0}},
    {"SwiGLU K=6144 N=2048 resid variant 1", {6144, 2048, 2, 1, 1}}, {"SwiGLU K=12288 N=4096 resid variant 3", {12288, 4096, 2, 1, 3}},
    {"SwiGLU K=24 N=5 resid variant 5", {24, 5, 2, 1, 5}},
};
static const shape attention_shapes[] = {
    /* n_q, n_kv, Hq, Hkv, hd, causal, impl + 2, flags (1 split, 2 unaligned, 4 peaked) */
    {"vision n=1024 H=16 hd=64 auto", {1024, 1024, 16, 16, 64, 0, 1, 0}},
    {"vision n=1024 H=16 hd=72 auto", {1024, 1024, 16, 16, 72, 0, 1, 0}},
    {"vision n=777 H=16 hd=80 FA2", {777, 777, 16, 16, 80, 0, 2, 0}},
    {"vision n=300 H=12 hd=128 auto peaked", {300, 300, 12, 12, 128, 0, 1, 4}},
    {"prefill 8B n=500 kv=500 Hq=32 Hkv=8 hd=128 auto", {500, 500, 32, 8, 128, 1, 1, 0}},
    {"prefill n=200 kv=1200 Hq=16 Hkv=8 hd=128 FA2 peaked", {200, 1200, 16, 8, 128, 1, 2, 4}},
    {"prefill n=129 kv=129 Hq=14 Hkv=2 hd=64 auto", {129, 129, 14, 2, 64, 1, 1, 0}},
    {"prefill n=64 kv=64 Hq=8 Hkv=8 hd=48 auto (FA2 hd 48)", {64, 64, 8, 8, 48, 1, 1, 0}},
    {"wgmma config 0 n=400 H=16 hd=64", {400, 400, 16, 16, 64, 0, 3, 0}},
    {"wgmma config 1 n=400 H=16 hd=64", {400, 400, 16, 16, 64, 0, 4, 0}},
    {"wgmma config 2 n=400 H=16 hd=64", {400, 400, 16, 16, 64, 1, 5, 0}},
    {"wgmma config 3 n=400 Hq=32 Hkv=8 hd=128", {400, 400, 32, 8, 128, 1, 6, 0}},
    {"wgmma config 4 n=400 Hq=32 Hkv=8 hd=128", {400, 400, 32, 8, 128, 1, 7, 0}},
    {"wgmma config 5 n=400 Hq=32 Hkv=8 hd=128", {400, 400, 32, 8, 128, 0, 8, 0}},
    {"wgmma config 6 n=400 H=16 hd=80", {400, 400, 16, 16, 80, 0, 9, 0}},
    {"wgmma config 7 n=400 H=16 hd=72", {400, 400, 16, 16, 72, 1, 10, 0}},
    {"wgmma config 8 n=400 H=16 hd=128", {400, 400, 16, 16, 128, 1, 11, 0}},
    {"short n=3 kv=2000 Hq=16 Hkv=8 hd=128 split", {3, 2000, 16, 8, 128, 1, 1, 1}},
    {"short n=1 kv=4097 Hq=32 Hkv=8 hd=128 split", {1, 4097, 32, 8, 128, 1, 1, 1}},
    {"short n=2 kv=37 Hq=4 Hkv=4 hd=64 no split", {2, 37, 4, 4, 64, 1, 1, 0}},
    {"n=100 kv=100 H=4 hd=36 (scalar: hd % 8)", {100, 100, 4, 4, 36, 0, 1, 0}},
    {"n=70 kv=90 Hq=6 Hkv=2 hd=64 unaligned (scalar)", {70, 90, 6, 2, 64, 1, 1, 2}},
    {"n=1 kv=1 H=1 hd=8", {1, 1, 1, 1, 8, 1, 1, 0}},
};
static const shape decode_shapes[] = {
    {"8B kv=1 Hq=32 Hkv=8 hd=128", {1, 32, 8, 128}},      {"8B kv=4097 Hq=32 Hkv=8 hd=128", {4097, 32, 8, 128}},
    {"2B kv=30000 Hq=16 Hkv=8 hd=128", {30000, 16, 8, 128}}, {"kv=333 Hq=14 Hkv=2 hd=64", {333, 14, 2, 64}},
    {"kv=77 Hq=8 Hkv=8 hd=32", {77, 8, 8, 32}},            {"kv=500 Hq=32 Hkv=2 hd=128 (group 16: 32-row kernel)", {500, 32, 2, 128}},
    {"kv=500 Hq=8 Hkv=4 hd=80 (hd 80: 32-row kernel)", {500, 8, 4, 80}}, {"kv=200 Hq=72 Hkv=72 hd=32 (Hkv > 64: no fused combine)", {200, 72, 72, 32}},
};
static const shape paged_shapes[] = {
    /* n_seqs, max kv_len, Hq, Hkv, hd, block, splits, every */
    {"8B 16 seqs kv<=3000 block 64 splits 8", {16, 3000, 32, 8, 128, 64, 8, 1}},
    {"8B 5 seqs kv<=700 block 64 one split", {5, 700, 32, 8, 128, 64, 1, 1}},
    {"2B 64 seqs kv<=300 block 16 splits 4, every 3rd row", {64, 300, 16, 8, 128, 16, 4, 3}},
    {"Hq=14 Hkv=2 hd=64 9 seqs kv<=1025 block 64 splits 16", {9, 1025, 14, 2, 64, 64, 16, 1}},
    {"Hq=8 Hkv=8 hd=32 3 seqs kv<=65 block 64 splits 2", {3, 65, 8, 8, 32, 64, 2, 1}},
    {"2 seqs kv<=1 block 64 splits 4 (more splits than keys)", {2, 1, 16, 8, 128, 64, 4, 1}},
};
static const shape kv_gather_shapes[] = {{"n=1000 kv=1024 block 64", {1000, 1024, 64}}, {"n=1 kv=128 block 64", {1, 128, 64}},
                                         {"n=77 kv=20 block 16 (kv % 8)", {77, 20, 16}}};
static const shape kv_fp8_convert_shapes[] = {{"n=1000003 gaussian x100", {1000003, 0}},
                                              {"n=200000 ties/saturation/subnormal/inf/nan/-0", {200000, 1}},
                                              {"every 4099th float bit pattern (n=1047808)", {1047808, 2}}};
static const shape paged_fp8_shapes[] = {
    /* n_seqs, max kv_len, Hq, Hkv, hd, block, splits, scale of K and V */
    {"8B 16 seqs kv<=3000 block 64 splits 8", {16, 3000, 32, 8, 128, 64, 8, 1}},
    {"8B 5 seqs kv<=700 block 64 one split, K/V x30", {5, 700, 32, 8, 128, 64, 1, 30}},
    {"2B 64 seqs kv<=300 block 16 splits 4", {64, 300, 16, 8, 128, 16, 4, 1}},
    {"Hq=14 Hkv=2 hd=64 9 seqs kv<=1025 block 64 splits 16", {9, 1025, 14, 2, 64, 64, 16, 1}},
    {"Hq=8 Hkv=8 hd=32 3 seqs kv<=65 block 64 splits 2", {3, 65, 8, 8, 32, 64, 2, 1}},
    {"2 seqs kv<=1 block 64 splits 4 (more splits than keys)", {2, 1, 16, 8, 128, 64, 4, 1}},
};
static const shape kv_gather_fp8_shapes[] = {{"n=1000 kv=1024 block 64", {1000, 1024, 64}}, {"n=1 kv=128 block 64", {1, 128, 64}},
                                             {"n=77 kv=20 block 16 (kv % 8)", {77, 20, 16}}};
static const shape qk_rope_fp8_shapes[] = {{"8B Hq=32 Hkv=8 hd=128 n=37 rows 500.. shuffled", {32, 8, 128, 37, 500}},
                                           {"Hq=14 Hkv=2 hd=64 n=1 row 9", {14, 2, 64, 1, 9}},
                                           {"Hq=40 Hkv=8 hd=96 n=3 (heads > 32 warps)", {40, 8, 96, 3, 1}}};
static const shape gather_rows_shapes[] = {{"n=300 D=4096 of 1000", {300, 4096, 1000}}, {"n=1 D=2048 of 1", {1, 2048, 1}},
                                           {"n=33 D=7 of 50", {33, 7, 50}}};
static const shape two_stream_shapes[] = {{"argmax rows=1 V=151936 x 2 streams", {0, 300}}, {"attention_decode 8B kv=3000 x 2 streams", {1, 300}}};
static const shape pick_shapes[] = {
    {"V=151936 greedy path 1", {151936, 0, 1, 20}},          {"V=151936 greedy + penalties path 1", {151936, 1, 1, 20}},
    {"V=151936 t0.7 k20 p0.8 path 1", {151936, 2, 1, 30}},   {"V=151936 t0.7 k20 p0.8 + penalties path 2", {151936, 3, 2, 20}},
    {"V=151936 k off p0.8 path 1", {151936, 4, 1, 20}},      {"V=151936 k65 path 0", {151936, 5, 0, 20}},
    {"V=7 t0.7 k20 p0.8 path 1", {7, 2, 1, 200}},            {"V=2049 t100 p0.8 path 1", {2049, 6, 1, 100}},
    {"V=5000 greedy + penalties path 0", {5000, 1, 0, 100}},
};
static const shape int4_shapes[] = {
    {"M=1 K=4096 N=6144 g128 asym (GEMV)", {1, 4096, 6144, 128, QVL_QW_ROUND_BF16, 0, 0}},
    {"M=8 K=2048 N=1000 g32 sym (GEMV)", {8, 2048, 1000, 32, QVL_QW_ROUND_BF16, 0, 1}},
    {"M=3 K=12288 N=33 g128 f32 scales (GEMV)", {3, 12288, 33, 128, QVL_QW_ROUND_F32, 0, 0}},
    {"M=9 K=1024 N=512 g64 (dequant + GEMM)", {9, 1024, 512, 64, QVL_QW_ROUND_BF16, 0, 0}},
    {"M=2 K=512 N=96 g128 forced GEMM", {2, 512, 96, 128, QVL_QW_ROUND_BF16, 1, 1}},
};
static const shape awq_shapes[] = {
    {"M=1 K=2048 N=2048 g128 (GEMV)", {1, 2048, 2048, 128, QVL_QW_ROUND_F16, 0, 0}},
    {"M=40 K=2048 N=768 g128 (dequant + GEMM)", {40, 2048, 768, 128, QVL_QW_ROUND_F16, 0, 0}},
};

/* K must be whole 128-blocks (cuda_quant_layout.c fp8_ok); a Linear with a ragged K (none in Qwen's
 * FP8 checkpoints) is held in BF16 by the loader (cuda_model.cu take_linear) and runs as the BF16 GEMM. */
static const shape fp8_shapes[] = {
    {"M=1 K=4096 N=6144 (block GEMV)", {1, 4096, 6144, 128, 0, 0, 0, 1}},
    {"M=8 K=2048 N=1000 (block GEMV, N % 128)", {8, 2048, 1000, 128, 0, 0, 0, 1}},
    {"M=40 K=2048 N=768 (fake-quantized BF16 + GEMM)", {40, 2048, 768, 128, 0, 0, 0, 1}},
    {"M=2 K=512 N=96 forced GEMM", {2, 512, 96, 128, 0, 1, 0, 1}},
};

static const op_entry ops[] = {
    {"f32_to_bf16+bf16_to_f32", "round to nearest even (qvl_bf16_round)", 0, 0, "exact: one rounding, the same rule",
     run_convert, SHAPES(convert_shapes)},
    {"rmsnorm", "qvl_cpu_rmsnorm (F32)", 0x1p-6, 0x1p-20,
     "HF order rounds x*rsqrt to BF16, then * w again: two roundings of <= 2^-8 (BF16's unit roundoff), x2 margin; the add_ variant's x = bf16(x + r) exact",
     run_norm, SHAPES(rmsnorm_shapes)},
    {"layernorm", "qvl_cpu_layernorm (F32)", 0x1p-7, 0x1p-16,
     "one BF16 rounding of the output (<= 2^-8), x2 margin; F32 statistics in another order (atol for outputs near 0)",
     run_norm, SHAPES(layernorm_shapes)},
    {"add", "qvl_cpu_add, rounded to BF16", 0, 0, "exact: the same F32 sum and one rounding", run_add, SHAPES(add_shapes)},
    {"gelu", "qvl_cpu_gelu_tanh / qvl_cpu_gelu_erf (F32)", 0x1p-7, 0x1p-16,
     "one rounding of the output (<= 2^-8, x2 margin); device tanhf/erff ulps (atol: 1 + tanh cancels for x < -3)", run_gelu, SHAPES(gelu_shapes)},
    {"silu_mul", "qvl_cpu_silu_mul (F32)", 0x1p-6, 0x1p-20, "silu(gate) rounded to BF16, then the product: two roundings of <= 2^-8, x2 margin",
     run_silu_mul, SHAPES(silu_shapes)},
    {"vision_pos_embed", "the CPU tower's bilinear interpolation (plain reference here), F32", 0x1p-7, 0x1p-5,
     "weights, four products and three partial sums rounded to BF16 (7 x 2^-8 < 2^-5 of scale = sum |e w|), the add once (2^-8, x2 margin)",
     run_pos_embed, SHAPES(pos_embed_shapes)},
    {"vision_rope", "qvl_cpu_rope_half with the CPU tower's rotary angles", 0x1p-7, 0x1p-16,
     "F32 rotation, one rounding (<= 2^-8, x2 margin); device cosf/sinf ulps of scale = |x_d| + |x_d+hd/2|; q/k elsewhere and v exact",
     run_vision_rope, SHAPES(vision_rope_shapes)},
    {"qk_norm_rope", "per-head qvl_cpu_rmsnorm + M-RoPE + qvl_cpu_rope_half; v copied", 0x1p-7, 0x1p-5,
     "normalized q/k rounded twice, cos/sin and both products rounded to BF16 (HF bf16 arithmetic): 4 x 2^-8 = 2^-6 of "
     "scale = the rotated pair, x2 margin; the sum's rounding 2^-8 |ref|, x2; cache rows outside p0..p0+n-1 and v exact",
     run_qk_norm_rope, SHAPES(qk_rope_shapes)},
    {"embed", "row copy", 0, 0, "exact copy", run_embed, SHAPES(embed_shapes)},
    {"deepstack_add", "qvl_cpu_add on image rows, rounded", 0, 0, "exact: one rounding", run_deepstack, SHAPES(deepstack_shapes)},
    {"argmax", "qvl_argmax_lowest", 0, 0, "exact ids, lowest id on ties", run_argmax, SHAPES(argmax_shapes)},
    {"gemm (cuBLASLt)", "qvl_cpu_matmul (+ qvl_cpu_gelu_tanh)", 0x1p-7, 0x1p-12,
     "one BF16 rounding of the output (<= 2^-8, x2 margin); F32 accumulation in another order: <= 2^-12 of scale = sum |x w| (+|b|)",
     run_gemm, SHAPES(gemm_shapes)},
    {"gemv", "qvl_cpu_matmul, 1 row", 0x1p-7, 0x1p-12,
     "output rounding, 2^-8 x2 margin (and the product's own rounding before the residual sum: mag = |product|); F32 sums of scale = sum |x w|",
     run_gemv, SHAPES(gemv_shapes)},
    {"gemv fused RMSNorm / SwiGLU", "qvl_cpu_rmsnorm / qvl_cpu_silu_mul, then qvl_cpu_matmul", 0x1p-7, 0x1p-6,
     "the fused input is rounded to BF16 twice (2^-7 of every term) before the product: of scale = sum |x' w|, x2 margin",
     run_gemv, SHAPES(gemv_fused_shapes)},
    {"attention", "qvl_cpu_attention (F32)", 0x1p-7, 0x1p-7,
     "tensor-core kernels round the probabilities to BF16 for P V (2^-8 of max |v| = 1), plus the output rounding; x2 margin",
     run_attention, SHAPES(attention_shapes)},
    {"attention_decode", "qvl_cpu_attention, 1 row (F32)", 0x1p-7, 0x1p-12,
     "F32 throughout (split keys merged in another order); output rounding (2^-8, x2 margin)", run_attention_decode, SHAPES(decode_shapes)},
    {"attention_paged", "qvl_cpu_attention on the sequence's gathered keys (F32)", 0x1p-7, 0x1p-12,
     "F32 throughout (split keys merged in another order); output rounding (2^-8, x2 margin); rows not decoded unchanged",
     run_attention_paged, SHAPES(paged_shapes)},
    {"kv_gather", "row copies through the block table", 0, 0, "exact copy", run_kv_gather, SHAPES(kv_gather_shapes)},
    {"gather_rows", "row copy", 0, 0, "exact copy", run_gather_rows, SHAPES(gather_rows_shapes)},
    {"kv_fp8 encode/decode", "qvl_kv_fp8_encode / qvl_kv_fp8_table (backend/cpu/kv_fp8.c)", 0, 0,
     "exact: e4m3 codes bit for bit (RNE, saturation to +-448); a NaN gives a NaN code both sides; all 256 codes decode equal",
     run_kv_fp8_convert, SHAPES(kv_fp8_convert_shapes)},
    {"attention_paged fp8 KV", "qvl_cpu_attention_segs over the same e4m3 blocks (fp8 = 1)", 0x1p-7, 0x1p-12,
     "both read the same codes as F32 (exact upcast); F32 throughout, split keys merged in another order; output rounding "
     "(2^-8, x2 margin)", run_attention_paged_fp8, SHAPES(paged_fp8_shapes)},
    {"kv_gather fp8 KV", "qvl_kv_fp8_decode of the codes, through the block table", 0, 0,
     "exact: e4m3 values are BF16 values", run_kv_gather_fp8, SHAPES(kv_gather_fp8_shapes)},
    {"qk_norm_rope fp8 KV", "the BF16 kernel's q and cache rows, cache rows through qvl_kv_fp8_encode", 0, 0,
     "exact: the same arithmetic, then one e4m3 rounding of each BF16 key and value; other rows untouched",
     run_qk_norm_rope_fp8, SHAPES(qk_rope_fp8_shapes)},
    {"two streams at once", "the same launch alone", 0, 0,
     "exact: kernels with process-wide device state (counters) must not mix launches of two engines", run_two_streams,
     SHAPES(two_stream_shapes)},
    {"pick (cuda_sample)", "the CPU sampler (engine/sampler.c), same seed", 0, 0, "exact ids", run_pick, SHAPES(pick_shapes)},
    {"int4 (cuda_quant)", "qvl_cpu_matmul_q", 0x1p-7, 0x1p-12,
     "dequantization bit for bit; output rounding; F32 sums of scale = sum |x w|", run_qlin, SHAPES(int4_shapes)},
    {"int4 AutoAWQ (fp16 weights)", "qvl_cpu_matmul_q", 0x1p-7, 0x1p-7,
     "the GEMM path rounds the fp16 weights once more to BF16: 2^-8 of scale = sum |x w|, x2 margin", run_qlin,
     SHAPES(awq_shapes)},
    {"fp8 (cuda_quant)", "qvl_cpu_matmul_q (inputs quantized per token as act_quant)", 0x1p-7, 0x1p-6,
     "<= 8 rows: code x code sums in F32 (exact products); more rows: the fake-quantized input and the dequantized weight "
     "rounded to BF16 (2^-8 each of scale = sum |x w|), x2 margin; the output rounding", run_qlin, SHAPES(fp8_shapes)},
};

static int selected(const char *name) {
    const char *f = getenv("QVL_OPS");
    if (!f || !*f) return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", f);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
        if (strstr(name, t)) return 1;
    return 0;
}

TEST(gpu_backend_ops) {
    if (!have_gpu()) return;
    pool = qvl_pool_new(0);
    CHECK(pool != NULL);
    if (!pool) return;
    int fails = 0, lines = 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const op_entry *e = &ops[i];
        if (!selected(e->name)) continue;
        printf("  %s vs %s\n    tolerance |d| <= %g |ref| + %g (scale): %s\n", e->name, e->ref, e->rtol, e->atol, e->why);
        for (int s = 0; s < e->n_shapes; s++) {
            stats st;
            memset(&st, 0, sizeof st);
            e->run(e, &e->shapes[s], &st);
            int ok = !st.failed_to_run && st.bad == 0 && st.n > 0;
            printf("    %-52s n=%-9ld max_abs %-9.3g max_rel %-9.3g worst %-7.3g %s%s%s\n", e->shapes[s].label, st.n, st.max_abs,
                   st.max_rel, st.worst, ok ? "ok" : "FAIL", st.note[0] ? "  " : "", st.note);
            fflush(stdout);
            if (!ok) {
                fails++;
                test_fail(__FILE__, __LINE__, "%s %s: %ld of %ld values over the tolerance%s%s", e->name, e->shapes[s].label,
                          st.bad, st.n, st.failed_to_run ? ", did not run: " : "", st.note);
            }
            lines++;
        }
    }
    printf("  backend ops: %d op x shape lines, %d failed\n", lines, fails);
    bo_release();
    qvl_pool_free(pool);
}
