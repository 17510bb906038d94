/* Quantized Linear weights (quant.h): checking a checkpoint's tensors, reading them into qvl_qweight,
 * and dequantizing rows exactly as the reference code does. */
#include "model/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/tensor_check.h"
#include "util/error.h"
#include "util/parallel.h"

/* Four NaN bit patterns no converted checkpoint holds in a row. */
static const uint32_t QW_MAGIC[4] = {0x7FC0A11Cu, 0xFFC0B0B0u, 0x7FC1CAFEu, 0xFFC1D00Du};

/* AutoAWQ stores out column 8j + p in nibble REV[p] of word j (AWQ_ORDER's inverse). */
static const int AWQ_REVERSE[8] = {0, 4, 1, 5, 2, 6, 3, 7};

static int cdiv(int a, int b) { return (a + b - 1) / b; }

/* ---- scalar conversions ------------------------------------------------------------------------- */

float qvl_round_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return f;
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f32_to_f16_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00 : 0x7c00);
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* 65520 and up round to infinity */
    if (ax < 0x38800000u) {                       /* below 2^-14: a multiple of 2^-24 */
        float a;
        memcpy(&a, &ax, 4);
        return sign | (uint16_t)nearbyintf(a * 16777216.0f);
    }
    uint32_t r = (ax + 0xfffu + ((ax >> 13) & 1u)) >> 13;
    return sign | (uint16_t)(r - (112u << 10));
}

float qvl_round_f16(float f) { return qvl_f16_to_f32(f32_to_f16_bits(f)); }

uint8_t qvl_f32_to_e4m3(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7f;
    float a;
    memcpy(&a, &ax, 4);
    if (a < 0.015625f) /* below 2^-6: a multiple of 2^-9 (code m is m * 2^-9, 8 being 2^-6) */
        return sign | (uint8_t)nearbyintf(a * 512.0f);
    uint32_t r = (ax + 0x7ffffu + ((ax >> 20) & 1u)) >> 20;
    uint32_t code = r - (120u << 3);
    return sign | (uint8_t)(code > 0x7e ? 0x7e : code); /* saturate at 448 */
}

/* ---- which tensors a quantized Linear has -------------------------------------------------------- */

static int is_linear_spec(const qvl_tensor_spec *s) {
    size_t L = strlen(s->name);
    return s->ndim == 2 && L > 7 && !strcmp(s->name + L - 7, ".weight") && !strstr(s->name, "embed_tokens") &&
           !strstr(s->name, "pos_embed");
}

static void module_of(const qvl_tensor_spec *s, char *mod, size_t cap) {
    snprintf(mod, cap, "%.*s", (int)(strlen(s->name) - 7), s->name);
}

static const qvl_tensor *find(const qvl_safetensors *st, const char *mod, const char *suffix) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", mod, suffix);
    return qvl_st_find(st, name);
}

static int is16(const qvl_tensor *t) { return t && (t->dtype == QVL_BF16 || t->dtype == QVL_F16 || t->dtype == QVL_F32); }

int qvl_quant_linear_stored(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s) {
    if (!cfg->quant.method || !is_linear_spec(s)) return 0;
    char mod[128];
    module_of(s, mod, sizeof mod);
    if (!qvl_quant_wants(cfg, mod)) return 0;
    const qvl_tensor *w = find(st, mod, "weight");
    switch (cfg->quant.method) {
    case QVL_QUANT_CT: return find(st, mod, "weight_packed") || !is16(w);
    case QVL_QUANT_AWQ: return find(st, mod, "qweight") || !is16(w);
    default: return !is16(w);
    }
}

/* Checks tensor MOD.SUFFIX: present, ndim 2 (or 1) of shape (a, b), dtype in mask (bits of qvl_dtype). */
static int need(const qvl_safetensors *st, const char *mod, const char *suffix, unsigned mask, int ndim, int64_t a,
                int64_t b, const qvl_tensor **out) {
    char name[160], want[64], got[64];
    snprintf(name, sizeof name, "%s.%s", mod, suffix);
    int64_t shape[2] = {a, b};
    qvl_shape_str(shape, ndim, want, sizeof want);
    const qvl_tensor *t = qvl_st_find(st, name);
    if (!t) return qvl_errorf("%s: missing tensor %s (expected shape %s)", qvl_st_path(st), name, want);
    int same = t->ndim == ndim && t->shape[0] == a && (ndim == 1 || t->shape[1] == b);
    if (!same) {
        qvl_shape_str(t->shape, t->ndim, got, sizeof got);
        return qvl_errorf("%s: tensor %s has shape %s, expected %s", t->file, name, got, want);
    }
    if (!(mask & (1u << t->dtype))) {
        char list[64] = "";
        for (int d = 0; d < QVL_DTYPE_COUNT; d++)
            if (mask & (1u << d)) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? " or " : "", qvl_dtype_name((qvl_dtype)d));
        return qvl_errorf("%s: tensor %s has dtype %s, expected %s", t->file, name, qvl_dtype_name(t->dtype), list);
    }
    if (out) *out = t;
    return 0;
}

#define M16 ((1u << QVL_BF16) | (1u << QVL_F16) | (1u << QVL_F32))

static int64_t rd_i64(const qvl_tensor *t, int64_t i) {
    int64_t v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

static uint32_t rd_u32(const qvl_tensor *t, int64_t i) {
    uint32_t v;
    memcpy(&v, (const char *)t->data + 4 * i, 4);
    return v;
}

int qvl_quant_check_linear(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s) {
    const qvl_quant_config *qc = &cfg->quant;
    char mod[128];
    module_of(s, mod, sizeof mod);
    const int N = (int)s->shape[0], K = (int)s->shape[1];
    const qvl_tensor *t;
    if (qc->method == QVL_QUANT_CT) {
        int g = qc->group_size ? qc->group_size : K;
        if (K % g)
            return qvl_errorf("%s: %s: input width %d is not a multiple of the group size %d", qvl_st_path(st), mod, K, g);
        if (need(st, mod, "weight_packed", 1u << QVL_I32, 2, N, cdiv(K, 8), NULL) ||
            need(st, mod, "weight_scale", M16, 2, N, K / g, NULL) || need(st, mod, "weight_shape", (1u << QVL_I64) | (1u << QVL_I32), 1, 2, 0, &t))
            return -1;
        int64_t a = t->dtype == QVL_I64 ? rd_i64(t, 0) : (int32_t)rd_u32(t, 0);
        int64_t b = t->dtype == QVL_I64 ? rd_i64(t, 1) : (int32_t)rd_u32(t, 1);
        if (a != N || b != K)
            return qvl_errorf("%s: tensor %s.weight_shape says [%lld, %lld], expected [%d, %d]", t->file, mod, (long long)a,
                              (long long)b, N, K);
        if (!qc->symmetric && need(st, mod, "weight_zero_point", 1u << QVL_I32, 2, cdiv(N, 8), K / g, NULL)) return -1;
        if ((t = find(st, mod, "weight_g_idx")))
            return qvl_errorf("%s: tensor %s: activation ordering (g_idx) is not supported", t->file, t->name);
        return 0;
    }
    if (qc->method == QVL_QUANT_AWQ) {
        int g = qc->group_size;
        if (K % g || N % 8)
            return qvl_errorf("%s: %s: shape [%d, %d] does not fit AWQ packing (in %% group %d, out %% 8)", qvl_st_path(st), mod,
                              N, K, g);
        return need(st, mod, "qweight", 1u << QVL_I32, 2, K, N / 8, NULL) ||
                       need(st, mod, "qzeros", 1u << QVL_I32, 2, K / g, N / 8, NULL) ||
                       need(st, mod, "scales", (1u << QVL_F16) | (1u << QVL_BF16) | (1u << QVL_F32), 2, K / g, N, NULL)
                   ? -1
                   : 0;
    }
    int bn = qc->block[0], bk = qc->block[1];
    if (K % bk)
        return qvl_errorf("%s: %s: input width %d is not a multiple of the activation block %d", qvl_st_path(st), mod, K, bk);
    return need(st, mod, "weight", 1u << QVL_F8_E4M3, 2, N, K, NULL) ||
                   need(st, mod, "weight_scale_inv", M16, 2, cdiv(N, bn), cdiv(K, bk), NULL)
               ? -1
               : 0;
}

size_t qvl_quant_linear_bytes(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s) {
    static const char *suffixes[3][4] = {{"weight_packed", "weight_scale", "weight_shape", "weight_zero_point"},
                                         {"qweight", "qzeros", "scales", NULL},
                                         {"weight", "weight_scale_inv", NULL, NULL}};
    char mod[128];
    module_of(s, mod, sizeof mod);
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        const char *suf = suffixes[cfg->quant.method - 1][i];
        const qvl_tensor *t = suf ? find(st, mod, suf) : NULL;
        if (t) n += t->nbytes;
    }
    return n;
}

/* ---- loading ------------------------------------------------------------------------------------- */

const qvl_qweight *qvl_qweight_of(const float *w) {
    if (!w) return NULL;
    uint32_t head[4];
    memcpy(head, w, sizeof head);
    return memcmp(head, QW_MAGIC, sizeof head) ? NULL : (const qvl_qweight *)(const void *)w;
}

void qvl_qweight_free(qvl_qweight *w) {
    if (!w) return;
    free(w->q);
    free(w->zero);
    free(w->scale);
    free(w);
}

static void put_nibble(uint8_t *row, int k, unsigned v) {
    if (k & 1) row[k / 2] = (uint8_t)((row[k / 2] & 0x0f) | (v << 4));
    else row[k / 2] = (uint8_t)((row[k / 2] & 0xf0) | v);
}

/* AutoAWQ's qweight [K, N/8] into rows: word columns [j0, j1) (rows 8 j0 .. 8 j1 - 1: threads never share a row). */
typedef struct {
    qvl_qweight *w;
    const qvl_tensor *qw;
    int W, K;
    size_t qrow;
} awq_unpack;

static void awq_unpack_words(void *vctx, int j0, int j1) {
    const awq_unpack *c = vctx;
    for (int k = 0; k < c->K; k++)
        for (int j = j0; j < j1; j++) {
            const uint32_t word = rd_u32(c->qw, (int64_t)k * c->W + j);
            for (int p = 0; p < 8; p++) put_nibble(c->w->q + (size_t)(8 * j + p) * c->qrow, k, (word >> (4 * AWQ_REVERSE[p])) & 15u);
        }
}

static int unpack_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 16 ? 16 : (int)n;
}

qvl_qweight *qvl_qweight_load(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s) {
    if (qvl_quant_check_linear(cfg, st, s)) return NULL;
    const qvl_quant_config *qc = &cfg->quant;
    char mod[128];
    module_of(s, mod, sizeof mod);
    const int N = (int)s->shape[0], K = (int)s->shape[1];
    qvl_qweight *w = calloc(1, sizeof *w);
    if (!w) {
        qvl_errorf("%s: out of memory", mod);
        return NULL;
    }
    memcpy(w->magic, QW_MAGIC, sizeof QW_MAGIC);
    snprintf(w->name, sizeof w->name, "%s", mod);
    w->N = N;
    w->K = K;
    if (qc->method == QVL_QUANT_FP8) {
        const qvl_tensor *q = find(st, mod, "weight"), *sc = find(st, mod, "weight_scale_inv");
        w->kind = QVL_QW_FP8;
        w->block_n = qc->block[0];
        w->group = qc->block[1];
        w->act_quant = 1;
        size_t ns = (size_t)qvl_tensor_numel(sc);
        w->q = malloc((size_t)N * K);
        w->scale = malloc(ns * sizeof(float));
        if (!w->q || !w->scale) goto oom;
        memcpy(w->q, q->data, (size_t)N * K);
        if (qvl_tensor_to_f32(sc, w->scale)) goto fail;
        return w;
    }
    w->kind = QVL_QW_INT4;
    int g = qc->group_size ? qc->group_size : K, G = K / g;
    w->group = g;
    w->q = calloc((size_t)N * ((K + 1) / 2), 1);
    w->zero = malloc((size_t)N * G);
    w->scale = malloc((size_t)N * G * sizeof(float));
    if (!w->q || !w->zero || !w->scale) goto oom;
    const size_t qrow = (size_t)(K + 1) / 2;
    if (qc->method == QVL_QUANT_CT) {
        const qvl_tensor *p = find(st, mod, "weight_packed"), *sc = find(st, mod, "weight_scale");
        const qvl_tensor *zp = qc->symmetric ? NULL : find(st, mod, "weight_zero_point");
        const int W = cdiv(K, 8);
        w->round = sc->dtype == QVL_BF16 ? QVL_QW_ROUND_BF16 : sc->dtype == QVL_F16 ? QVL_QW_ROUND_F16 : QVL_QW_ROUND_F32;
        if (K % 8 == 0) /* little-endian words of nibbles (element k in bits 4*(k%8)) are this layout's bytes */
            for (int n = 0; n < N; n++) memcpy(w->q + n * qrow, (const char *)p->data + (size_t)n * W * 4, qrow);
        else
            for (int n = 0; n < N; n++)
                for (int k = 0; k < K; k++)
                    put_nibble(w->q + n * qrow, k, (rd_u32(p, (int64_t)n * W + k / 8) >> (4 * (k % 8))) & 15u);
        if (qvl_tensor_to_f32(sc, w->scale)) goto fail;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < G; j++)
                w->zero[(size_t)n * G + j] = zp ? (uint8_t)((rd_u32(zp, (int64_t)(n / 8) * G + j) >> (4 * (n % 8))) & 15u) : 8;
        return w;
    }
    /* AutoAWQ GEMM: [K, N/8] words, scales [K/g, N] */
    const qvl_tensor *qw = find(st, mod, "qweight"), *qz = find(st, mod, "qzeros"), *sc = find(st, mod, "scales");
    const int W = N / 8;
    w->round = sc->dtype == QVL_BF16 ? QVL_QW_ROUND_BF16 : sc->dtype == QVL_F16 ? QVL_QW_ROUND_F16 : QVL_QW_ROUND_F32;
    awq_unpack ctx = {w, qw, W, K, qrow};
    qvl_parallel_for(unpack_threads(), W, 8, awq_unpack_words, &ctx);
    for (int j = 0; j < G; j++)
        for (int n = 0; n < N; n++) {
            w->zero[(size_t)n * G + j] = (uint8_t)((rd_u32(qz, (int64_t)j * W + n / 8) >> (4 * AWQ_REVERSE[n % 8])) & 15u);
            w->scale[(size_t)n * G + j] = qvl_tensor_get_f32(sc, (int64_t)j * N + n);
        }
    return w;
oom:
    qvl_errorf("%s: out of memory reading %s", qvl_st_path(st), mod);
fail:
    qvl_qweight_free(w);
    return NULL;
}

/* ---- dequantization -------------------------------------------------------------------------------- */

void qvl_qweight_dequant_rows(const qvl_qweight *w, int n0, int n1, float *out) {
    const int K = w->K;
    if (w->kind == QVL_QW_FP8) {
        const int kb = cdiv(K, w->group);
        for (int n = n0; n < n1; n++) {
            const uint8_t *q = w->q + (size_t)n * K;
            const float *s = w->scale + (size_t)(n / w->block_n) * kb;
            float *o = out + (size_t)(n - n0) * K;
            for (int k = 0; k < K; k++) o[k] = qvl_f8e4m3_to_f32(q[k]) * s[k / w->group];
        }
        return;
    }
    const int g = w->group, G = K / g;
    const size_t qrow = (size_t)(K + 1) / 2;
    for (int n = n0; n < n1; n++) {
        const uint8_t *q = w->q + (size_t)n * qrow;
        float *o = out + (size_t)(n - n0) * K;
        for (int j = 0; j < G; j++) {
            const float s = w->scale[(size_t)n * G + j];
            const int z = w->zero[(size_t)n * G + j];
            for (int k = j * g; k < (j + 1) * g; k++) {
                int u = (q[k / 2] >> (4 * (k & 1))) & 15;
                float v = (float)(u - z) * s; /* one rounding of the product, as in the reference */
                o[k] = w->round == QVL_QW_ROUND_BF16 ? qvl_round_bf16(v) : w->round == QVL_QW_ROUND_F16 ? qvl_round_f16(v) : v;
            }
        }
    }
}

void qvl_fp8_act_quant_row(float *x, int K, int g) {
    for (int k0 = 0; k0 < K; k0 += g) {
        int k1 = k0 + g < K ? k0 + g : K;
        float amax = 0;
        for (int k = k0; k < k1; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
        const float s = amax / 448.0f;
        for (int k = k0; k < k1; k++) x[k] = s > 0 ? qvl_f8e4m3_to_f32(qvl_f32_to_e4m3(x[k] / s)) * s : 0.0f;
    }
}
