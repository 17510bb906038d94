/* The device layout of packed Linears (cuda_quant.h), host-only so that `qvl mem` plans it on any
 * machine: which Linears stay packed on the GPU, their sections and bytes, the dequantization
 * scratch, and the weights' device bytes. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_quant.h"
#include "model/tensor_check.h"

static size_t up16(size_t b) { return (b + 15) & ~(size_t)15; }

/* int4 shapes the kernels take: K and the group multiples of 32 (16-byte packed chunks in one group). */
static int int4_ok(int K, int group) { return group > 0 && K % group == 0 && K % 32 == 0 && group % 32 == 0; }

/* fp8 shapes the kernels take: 16-byte rows of codes, whole K blocks; a fused part other than the
 * last fills whole N blocks (its scale rows are its own). */
static int fp8_ok(int K, int bk) { return bk > 0 && K % bk == 0 && K % 16 == 0 && bk % 16 == 0; }

int qvl_cuda_qlin_plan(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *parts, int n,
                       qvl_cuda_qlin *d) {
    memset(d, 0, sizeof *d);
    if (cfg->quant.method == QVL_QUANT_FP8) {
        const int K = (int)parts[0].shape[1], bn = cfg->quant.block[0], bk = cfg->quant.block[1];
        int N = 0;
        if (bn <= 0 || !fp8_ok(K, bk)) return 0;
        for (int i = 0; i < n; i++) {
            if (parts[i].ndim != 2 || parts[i].shape[1] != K || !qvl_quant_linear_stored(cfg, st, &parts[i])) return 0;
            if (i + 1 < n && parts[i].shape[0] % bn) return 0;
            N += (int)parts[i].shape[0];
        }
        d->kind = QVL_QW_FP8, d->N = N, d->K = K, d->group = bk, d->block_n = bn;
        return 1;
    }
    if (cfg->quant.method != QVL_QUANT_CT && cfg->quant.method != QVL_QUANT_AWQ) return 0;
    if (cfg->quant.bits != 4) return 0;
    int N = 0, K = (int)parts[0].shape[1];
    for (int i = 0; i < n; i++) {
        if (parts[i].ndim != 2 || parts[i].shape[1] != K || !qvl_quant_linear_stored(cfg, st, &parts[i])) return 0;
        N += (int)parts[i].shape[0];
    }
    int g = cfg->quant.group_size > 0 ? cfg->quant.group_size : K;
    if (!int4_ok(K, g)) return 0;
    d->kind = QVL_QW_INT4, d->N = N, d->K = K, d->group = g;
    return 1;
}

int qvl_cuda_qlin_plan_loaded(const qvl_qweight *w, qvl_cuda_qlin *d) {
    memset(d, 0, sizeof *d);
    if (w && w->kind == QVL_QW_FP8 && w->block_n > 0 && fp8_ok(w->K, w->group)) {
        d->kind = QVL_QW_FP8, d->N = w->N, d->K = w->K, d->group = w->group, d->block_n = w->block_n;
        return 1;
    }
    if (!w || w->kind != QVL_QW_INT4 || !int4_ok(w->K, w->group)) return 0;
    d->kind = QVL_QW_INT4, d->N = w->N, d->K = w->K, d->group = w->group, d->round = w->round;
    return 1;
}

static void sections(const qvl_cuda_qlin *d, size_t off[3], size_t *total) {
    if (d->kind == QVL_QW_FP8) { /* codes [N][K], no zeros, scales [ceil(N/bn)][K/bk] */
        off[0] = 0;
        off[1] = off[2] = up16((size_t)d->N * d->K);
        *total = off[2] + up16((size_t)((d->N + d->block_n - 1) / d->block_n) * (d->K / d->group) * sizeof(float));
        return;
    }
    size_t G = (size_t)d->N * (d->K / d->group);
    off[0] = 0;
    off[1] = up16((size_t)d->N * d->K / 2);
    off[2] = off[1] + up16(G);
    *total = off[2] + up16(G * sizeof(float));
}

size_t qvl_cuda_qlin_bytes(const qvl_cuda_qlin *d) {
    size_t off[3], total;
    sections(d, off, &total);
    return total;
}

void qvl_cuda_qlin_place(qvl_cuda_qlin *d, void *mem) {
    size_t off[3], total;
    sections(d, off, &total);
    char *p = (char *)mem;
    d->q = (uint32_t *)(void *)(p + off[0]);
    d->zero = (uint8_t *)(p + off[1]);
    d->scale = (float *)(void *)(p + off[2]);
}

size_t qvl_cuda_qlin_scratch(const qvl_cuda_qlin *d) {
    size_t all = (size_t)d->N * d->K;
    all = all < (size_t)QVL_CUDA_QLIN_SCRATCH ? all : (size_t)QVL_CUDA_QLIN_SCRATCH;
    if (d->kind == QVL_QW_FP8) { /* the few-rows path's activation codes and scales (8 rows) */
        size_t act = (8 * (size_t)d->K + 8 * (size_t)(d->K / d->group) * sizeof(float) + 64) / 2;
        if (act > all) all = act;
    }
    return all;
}

int qvl_cuda_embed_on_host(const qvl_config *cfg) { return cfg->quant.method && !cfg->text.tie_word_embeddings; }

double qvl_cuda_weight_bytes(const qvl_config *cfg, const qvl_safetensors *st) {
    int n = 0;
    qvl_tensor_spec *s = qvl_expected_tensors(cfg, &n);
    if (!s) return -1;
    double bytes = 0;
    size_t scratch = 0;
    for (int i = 0; i < n; i++) {
        qvl_cuda_qlin d;
        if (qvl_cuda_embed_on_host(cfg) && strstr(s[i].name, "embed_tokens")) continue;
        if (qvl_cuda_qlin_plan(cfg, st, &s[i], 1, &d)) {
            bytes += (double)qvl_cuda_qlin_bytes(&d);
            if (qvl_cuda_qlin_scratch(&d) > scratch) scratch = qvl_cuda_qlin_scratch(&d);
        } else {
            bytes += (double)qvl_tensor_spec_numel(&s[i]) * 2.0;
        }
    }
    free(s);
    return bytes + (double)scratch * 2.0;
}
