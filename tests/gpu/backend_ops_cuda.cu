/* Device side of the kernel test harness (backend_ops.h): host floats in, one CUDA operation of
 * src/backend/cuda, host floats out. Every call allocates its device buffers, synchronizes and frees
 * them, so that a failing operation leaves nothing behind for the next. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_ops.h"
#include "backend_ops.h"
extern "C" {
#include "util/error.h"
}

static cudaStream_t S;
static void *ws;                 /* cuBLASLt workspace */
static const size_t WS_BYTES = 32u << 20;
static qvl_gemm *gemm;           /* the multi-row products (gemv variants get their own handle) */

enum { MAX_ALLOCS = 64 };
static void *allocs[MAX_ALLOCS];
static int n_allocs;

static void free_all(void) {
    for (int i = 0; i < n_allocs; i++) cudaFree(allocs[i]);
    n_allocs = 0;
}

static int fail(const char *op, cudaError_t e) {
    free_all();
    cudaGetLastError(); /* clear a non-sticky error for the next case */
    return qvl_errorf("%s: %s", op, cudaGetErrorString(e));
}

static int setup(void) {
    cudaGetLastError(); /* every case starts clean: a failure earlier is that case's, not this one's */
    if (S) return 0;
    if (cudaStreamCreateWithFlags(&S, cudaStreamNonBlocking) != cudaSuccess || cudaMalloc(&ws, WS_BYTES) != cudaSuccess)
        return qvl_errorf("backend ops: no CUDA stream or workspace");
    if (!(gemm = qvl_gemm_new(ws, WS_BYTES, 0))) return qvl_errorf("backend ops: qvl_gemm_new failed");
    return 0;
}

void bo_clear_error(void) { cudaGetLastError(); }

void bo_release(void) {
    if (gemm) qvl_gemm_free(gemm);
    if (ws) cudaFree(ws);
    if (S) cudaStreamDestroy(S);
    gemm = NULL, ws = NULL, S = NULL;
}

/* Device memory of n bytes (+ 64 spare for offsets), zeroed; NULL when out of memory. */
static void *dalloc(size_t n) {
    void *p = NULL;
    if (n_allocs >= MAX_ALLOCS || cudaMalloc(&p, n + 64) != cudaSuccess) return NULL;
    cudaMemset(p, 0, n + 64);
    allocs[n_allocs++] = p;
    return p;
}

static uint16_t to_bits(float f) { /* round to nearest even */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float from_bits(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A BF16 device copy of h[n] at element offset off (h NULL: zeros); NULL when out of memory. */
static bf16 *up(const float *h, size_t n, int off) {
    bf16 *d = (bf16 *)dalloc((n + (size_t)off) * 2);
    if (!d) return NULL;
    d += off;
    if (h && n) {
        uint16_t *t = (uint16_t *)malloc(n * 2);
        if (!t) return NULL;
        for (size_t i = 0; i < n; i++) t[i] = to_bits(h[i]);
        cudaMemcpy(d, t, n * 2, cudaMemcpyHostToDevice);
        free(t);
    }
    return d;
}
static float *up_f32(const float *h, size_t n) {
    float *d = (float *)dalloc(n * 4);
    if (d && h && n) cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice);
    return d;
}
static int32_t *up_i32(const int32_t *h, size_t n) {
    int32_t *d = (int32_t *)dalloc(n * 4);
    if (d && h && n) cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice);
    return d;
}
static void down(float *h, const bf16 *d, size_t n) {
    uint16_t *t = (uint16_t *)malloc(n * 2 + 2);
    cudaMemcpy(t, d, n * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < n; i++) h[i] = from_bits(t[i]);
    free(t);
}

/* Waits for the stream; 0, or -1 + error naming op. Frees the call's device buffers. */
static int finish(const char *op) {
    cudaError_t e = cudaStreamSynchronize(S);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return fail(op, e);
    free_all();
    return 0;
}

#define NEED(p)                                                      \
    do {                                                             \
        if (!(p)) return fail(__func__, cudaErrorMemoryAllocation);  \
    } while (0)

int bo_convert(float *y, const float *x, size_t n) {
    if (setup()) return -1;
    float *xd = up_f32(x, n), *yd = (float *)dalloc(n * 4);
    bf16 *b = (bf16 *)dalloc(n * 2);
    NEED(xd && yd && b);
    qvl_k_f32_to_bf16(S, b, xd, n);
    qvl_k_bf16_to_f32(S, yd, b, n);
    cudaMemcpyAsync(y, yd, n * 4, cudaMemcpyDeviceToHost, S);
    return finish("f32_to_bf16/bf16_to_f32");
}

int bo_norm(float *y, float *x_io, const float *r, const float *w, const float *b, int rows, int dim, float eps,
            int off) {
    if (setup()) return -1;
    size_t n = (size_t)rows * dim;
    bf16 *xd = up(x_io, n, off), *rd = r ? up(r, n, off) : NULL, *wd = up(w, dim, off), *bd = b ? up(b, dim, off) : NULL;
    bf16 *yd = up(NULL, n, off);
    NEED(xd && wd && yd && (!r || rd) && (!b || bd));
    if (b && r) qvl_k_add_layernorm(S, yd, xd, rd, wd, bd, rows, dim, eps);
    else if (b) qvl_k_layernorm(S, yd, xd, wd, bd, rows, dim, eps);
    else if (r) qvl_k_add_rmsnorm(S, yd, xd, rd, wd, rows, dim, eps);
    else qvl_k_rmsnorm(S, yd, xd, wd, rows, dim, eps);
    if (cudaStreamSynchronize(S) == cudaSuccess) {
        down(y, yd, n);
        down(x_io, xd, n);
    }
    return finish(b ? "layernorm" : "rmsnorm");
}

int bo_add(float *x_io, const float *y, size_t n, int off) {
    if (setup()) return -1;
    bf16 *xd = up(x_io, n, off), *yd = up(y, n, off);
    NEED(xd && yd);
    qvl_k_add(S, xd, yd, n);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(x_io, xd, n);
    return finish("add");
}

int bo_gelu(float *x_io, size_t n, int erf) {
    if (setup()) return -1;
    bf16 *xd = up(x_io, n, 0);
    NEED(xd);
    if (erf) qvl_k_gelu_erf(S, xd, n);
    else qvl_k_gelu_tanh(S, xd, n);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(x_io, xd, n);
    return finish(erf ? "gelu_erf" : "gelu_tanh");
}

int bo_silu_mul(float *out, const float *gu, int rows, int I, int off) {
    if (setup()) return -1;
    bf16 *gd = up(gu, (size_t)rows * 2 * I, off), *od = up(NULL, (size_t)rows * I, off);
    NEED(gd && od);
    qvl_k_silu_mul(S, od, gd, rows, I);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(out, od, (size_t)rows * I);
    return finish("silu_mul");
}

int bo_vision_pos_embed(float *x_io, const float *table, int G, int Dv, int grid_t, int grid_h, int grid_w, int M) {
    if (setup()) return -1;
    size_t n = (size_t)grid_t * grid_h * grid_w * Dv;
    bf16 *xd = up(x_io, n, 0), *td = up(table, (size_t)G * G * Dv, 0);
    NEED(xd && td);
    qvl_k_vision_pos_embed(S, xd, td, G, Dv, grid_t, grid_h, grid_w, M);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(x_io, xd, n);
    return finish("vision_pos_embed");
}

int bo_vision_rope(float *qkv_io, const float *inv_freq, int n, int Dv, int H, int hd, int grid_h, int grid_w, int M,
                   int off) {
    if (setup()) return -1;
    size_t total = (size_t)n * 3 * Dv;
    bf16 *xd = up(qkv_io, total, off);
    float *fd = up_f32(inv_freq, (size_t)hd / 4);
    NEED(xd && fd);
    qvl_k_vision_rope(S, xd, fd, n, Dv, H, hd, grid_h, grid_w, M);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(qkv_io, xd, total);
    return finish("vision_rope");
}

int bo_qk_norm_rope(const bo_rope *d, float *q_out, int q_stride, float *k_cache, float *v_cache, int cache_rows,
                    const float *qkv, const float *q_norm, const float *k_norm, const float *inv_freq, int n, int p0,
                    const int32_t *pos, int pos_scalar, int use_step, const int32_t *slots) {
    if (setup()) return -1;
    const int kv = d->Hkv * d->hd, row = d->Hq * d->hd + 2 * kv;
    qvl_rope_desc rd;
    rd.Hq = d->Hq, rd.Hkv = d->Hkv, rd.hd = d->hd, rd.interleaved = d->interleaved, rd.eps = d->eps;
    for (int i = 0; i < 3; i++) rd.sec[i] = d->sec[i];
    bf16 *qd = up(q_out, (size_t)n * q_stride, 0), *kd = up(k_cache, (size_t)cache_rows * kv, 0);
    bf16 *vd = up(v_cache, (size_t)cache_rows * kv, 0), *xd = up(qkv, (size_t)n * row, 0);
    bf16 *qn = up(q_norm, d->hd, 0), *kn = up(k_norm, d->hd, 0);
    float *fd = up_f32(inv_freq, (size_t)d->hd / 2);
    int32_t *pd = pos ? up_i32(pos, (size_t)3 * n) : NULL;
    int32_t step_h[2] = {p0, pos_scalar - p0};
    int32_t *sd = use_step ? up_i32(step_h, 2) : NULL, *sl = slots ? up_i32(slots, n) : NULL;
    NEED(qd && kd && vd && xd && qn && kn && fd && (!pos || pd) && (!use_step || sd) && (!slots || sl));
    if (slots) /* the batched form: positions from pos, cache rows from slots */
        qvl_k_qk_norm_rope_slots(S, &rd, qd, q_stride, kd, vd, xd, qn, kn, fd, n, pd, n, sl);
    else
    /* with the step, the launch's own p0 and pos_scalar are wrong on purpose: the step must win */
    qvl_k_qk_norm_rope(S, &rd, qd, q_stride, kd, vd, xd, qn, kn, fd, n, use_step ? 12345 : p0, pd, n,
                       use_step ? -777 : pos_scalar, sd);
    if (cudaStreamSynchronize(S) == cudaSuccess) {
        down(q_out, qd, (size_t)n * q_stride);
        down(k_cache, kd, (size_t)cache_rows * kv);
        down(v_cache, vd, (size_t)cache_rows * kv);
    }
    return finish("qk_norm_rope");
}

int bo_embed(float *x, const float *embed, int vocab, const int32_t *ids, const int32_t *vis_row, const float *img,
             int img_rows, int n, int D) {
    if (setup()) return -1;
    bf16 *xd = up(NULL, (size_t)n * D, 0), *ed = up(embed, (size_t)vocab * D, 0);
    bf16 *id = img ? up(img, (size_t)img_rows * D, 0) : NULL;
    int32_t *idd = up_i32(ids, n), *vd = vis_row ? up_i32(vis_row, n) : NULL;
    NEED(xd && ed && idd && (!img || id) && (!vis_row || vd));
    qvl_k_embed(S, xd, ed, idd, vd, id, n, D);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(x, xd, (size_t)n * D);
    return finish("embed");
}

int bo_deepstack_add(float *x_io, const int32_t *vis_row, const float *ds, int ds_rows, int n, int D) {
    if (setup()) return -1;
    bf16 *xd = up(x_io, (size_t)n * D, 0), *dd = up(ds, (size_t)ds_rows * D, 0);
    int32_t *vd = up_i32(vis_row, n);
    NEED(xd && dd && vd);
    qvl_k_deepstack_add(S, xd, vd, dd, n, D);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(x_io, xd, (size_t)n * D);
    return finish("deepstack_add");
}

int bo_argmax(int32_t *out, const float *logits, int rows, int V) {
    if (setup()) return -1;
    qvl_sync *sy = (qvl_sync *)dalloc(sizeof(qvl_sync));
    bf16 *ld = up(logits, (size_t)rows * V, 0);
    int32_t *od = up_i32(NULL, rows);
    NEED(sy && ld && od);
    qvl_k_argmax(S, od, ld, rows, V, sy);
    cudaMemcpyAsync(out, od, (size_t)rows * 4, cudaMemcpyDeviceToHost, S);
    return finish("argmax");
}

int bo_gemm(float *y, int ldy, const float *x, int ldx, const float *w, const float *b, int M, int K, int N, int gelu,
            int off) {
    if (setup()) return -1;
    bf16 *xd = up(x, (size_t)M * ldx, off), *wd = up(w, (size_t)N * K, off), *bd = b ? up(b, N, off) : NULL;
    bf16 *yd = up(y, (size_t)M * ldy, off);
    NEED(xd && wd && yd && (!b || bd));
    int rc = gelu ? qvl_gemm_run_gelu(gemm, S, yd, ldy, xd, ldx, wd, bd, M, K, N)
                  : qvl_gemm_run(gemm, S, yd, ldy, xd, ldx, wd, bd, M, K, N);
    if (rc) {
        free_all();
        return qvl_errorf("gemm M=%d K=%d N=%d: the launcher refused (rc %d)", M, K, N, rc);
    }
    if (cudaStreamSynchronize(S) == cudaSuccess) down(y, yd, (size_t)M * ldy);
    return finish(gelu ? "gemm_gelu" : "gemm");
}

int bo_gemv(float *y_io, const float *x, const float *w, int K, int N, int mode, const float *norm_w, float eps,
            int resid, int variant) {
    if (setup()) return -1;
    bf16 *xd = up(x, (size_t)(mode == QVL_GEMV_SWIGLU ? 2 : 1) * K, 0), *wd = up(w, (size_t)N * K, 0);
    bf16 *nd = norm_w ? up(norm_w, K, 0) : NULL, *yd = up(y_io, N, 0), *scratch = up(NULL, N, 0);
    NEED(xd && wd && yd && scratch && (!norm_w || nd));
    qvl_gemm *g = qvl_gemm_new(ws, WS_BYTES, variant);
    if (!g) {
        free_all();
        return qvl_errorf("gemv: qvl_gemm_new failed");
    }
    /* the timing pass registers the shape with the fixed (or fastest) variant; it writes scratch */
    const bf16 *wl[1] = {wd};
    int rc = qvl_gemm_tune_m1(g, S, scratch, xd, wl, 1, K, N);
    if (!rc) rc = qvl_gemv(g, S, yd, xd, wd, K, N, mode, nd, eps, resid);
    if (!rc && cudaStreamSynchronize(S) == cudaSuccess) down(y_io, yd, N);
    qvl_gemm_free(g);
    if (rc) {
        free_all();
        return qvl_errorf("gemv K=%d N=%d: the launcher refused (rc %d)", K, N, rc);
    }
    return finish("gemv");
}

int bo_attention(float *out, const float *q, int q_stride, const float *k, const float *v, int kv_stride, int n_q,
                 int n_kv, int Hq, int Hkv, int hd, int causal_pos0, int impl, int split, int off) {
    if (setup()) return -1;
    bf16 *qd = up(q, (size_t)n_q * q_stride, off), *kd = up(k, (size_t)n_kv * kv_stride, off);
    bf16 *vd = up(v, (size_t)n_kv * kv_stride, off), *od = up(NULL, (size_t)n_q * Hq * hd, off);
    float *part = split ? (float *)dalloc(qvl_attention_partial_floats(Hkv, hd) * 4) : NULL;
    NEED(qd && kd && vd && od && (!split || part));
    qvl_attention(S, od, Hq * hd, qd, q_stride, kd, vd, kv_stride, n_q, n_kv, Hq, Hkv, hd, causal_pos0, part, impl);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(out, od, (size_t)n_q * Hq * hd);
    return finish("attention");
}

int bo_attention_decode(float *out, const float *q, const float *k, const float *v, int n_kv, int Hq, int Hkv, int hd) {
    if (setup()) return -1;
    const int kv = Hkv * hd;
    bf16 *qd = up(q, (size_t)Hq * hd, 0), *kd = up(k, (size_t)n_kv * kv, 0), *vd = up(v, (size_t)n_kv * kv, 0);
    bf16 *od = up(NULL, (size_t)Hq * hd, 0);
    float *part = (float *)dalloc(qvl_attention_partial_floats(Hkv, hd) * 4);
    qvl_sync *sy = (qvl_sync *)dalloc(sizeof(qvl_sync));
    int32_t step = n_kv - 1, *sd = up_i32(&step, 1);
    NEED(qd && kd && vd && od && part && sy && sd);
    qvl_attention_decode(S, od, Hq * hd, qd, Hq * hd, kd, vd, kv, Hq, Hkv, hd, sd, part, sy);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(out, od, (size_t)Hq * hd);
    return finish("attention_decode");
}

/* ---- batched backend (cuda_paged.cu) ---- */

int bo_attention_paged_ok(int Hq, int Hkv, int hd) { return qvl_attention_paged_ok(Hq, Hkv, hd); }

int bo_attention_paged(float *out, const float *q, int q_rows, const float *k_pool, const float *v_pool, int pool_rows,
                       const int32_t *rows, int n_rows, const int32_t *seq, const int32_t *kv_len, int n_seqs,
                       const int32_t *tables, int blocks_per_seq, int block, int Hq, int Hkv, int hd, int splits) {
    if (setup()) return -1;
    const int qs = Hq * hd, kvs = Hkv * hd;
    bf16 *qd = up(q, (size_t)q_rows * qs, 0), *kd = up(k_pool, (size_t)pool_rows * kvs, 0);
    bf16 *vd = up(v_pool, (size_t)pool_rows * kvs, 0), *od = up(out, (size_t)q_rows * qs, 0);
    int32_t *rd = up_i32(rows, n_rows), *sd = up_i32(seq, q_rows), *ld = up_i32(kv_len, q_rows);
    int32_t *td = up_i32(tables, (size_t)n_seqs * blocks_per_seq);
    float *part = splits > 1 ? (float *)dalloc((size_t)n_rows * Hq * splits * (hd + 2) * 4) : NULL;
    NEED(qd && kd && vd && od && rd && sd && ld && td && (splits <= 1 || part));
    qvl_attention_paged(S, od, qs, qd, qs, kd, vd, kvs, rd, n_rows, sd, ld, td, blocks_per_seq, block, Hq, Hkv, hd, splits,
                        part);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(out, od, (size_t)q_rows * qs);
    return finish("attention_paged");
}

int bo_kv_gather(float *k_dst, float *v_dst, const float *k_pool, const float *v_pool, int pool_rows, int kv,
                 const int32_t *table, int n_blocks, int block, int n) {
    if (setup()) return -1;
    bf16 *kp = up(k_pool, (size_t)pool_rows * kv, 0), *vp = up(v_pool, (size_t)pool_rows * kv, 0);
    bf16 *kd = up(NULL, (size_t)n * kv, 0), *vd = up(NULL, (size_t)n * kv, 0);
    int32_t *td = up_i32(table, n_blocks);
    NEED(kp && vp && kd && vd && td);
    qvl_k_kv_gather(S, kd, vd, kp, vp, kv, td, block, n);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(k_dst, kd, (size_t)n * kv), down(v_dst, vd, (size_t)n * kv);
    return finish("kv_gather");
}

/* ---- FP8 KV pool (cuda_paged.cu, cuda_kernels.cu) ---- */
static uint8_t *up_u8(const uint8_t *h, size_t n) {
    uint8_t *d = (uint8_t *)dalloc(n);
    if (d && h && n) cudaMemcpy(d, h, n, cudaMemcpyHostToDevice);
    return d;
}

int bo_kv_fp8_convert(uint8_t *codes, const float *x, size_t n, float *table) {
    if (setup()) return -1;
    uint8_t all[256];
    for (int c = 0; c < 256; c++) all[c] = (uint8_t)c;
    float *xd = up_f32(x, n), *td = (float *)dalloc(256 * 4);
    uint8_t *cd = (uint8_t *)dalloc(n), *ad = up_u8(all, 256);
    NEED(xd && td && cd && ad);
    qvl_k_kv_fp8_encode(S, cd, xd, n);
    qvl_k_kv_fp8_decode(S, td, ad, 256);
    cudaMemcpyAsync(codes, cd, n, cudaMemcpyDeviceToHost, S);
    cudaMemcpyAsync(table, td, 256 * 4, cudaMemcpyDeviceToHost, S);
    return finish("kv_fp8_encode/kv_fp8_decode");
}

int bo_attention_paged_fp8(float *out, const float *q, int q_rows, const uint8_t *k_pool, const uint8_t *v_pool,
                           int pool_rows, const int32_t *rows, int n_rows, const int32_t *seq, const int32_t *kv_len,
                           int n_seqs, const int32_t *tables, int blocks_per_seq, int block, int Hq, int Hkv, int hd,
                           int splits) {
    if (setup()) return -1;
    const int qs = Hq * hd, kvs = Hkv * hd;
    bf16 *qd = up(q, (size_t)q_rows * qs, 0), *od = up(out, (size_t)q_rows * qs, 0);
    uint8_t *kd = up_u8(k_pool, (size_t)pool_rows * kvs), *vd = up_u8(v_pool, (size_t)pool_rows * kvs);
    int32_t *rd = up_i32(rows, n_rows), *sd = up_i32(seq, q_rows), *ld = up_i32(kv_len, q_rows);
    int32_t *td = up_i32(tables, (size_t)n_seqs * blocks_per_seq);
    float *part = splits > 1 ? (float *)dalloc((size_t)n_rows * Hq * splits * (hd + 2) * 4) : NULL;
    NEED(qd && kd && vd && od && rd && sd && ld && td && (splits <= 1 || part));
    qvl_attention_paged_fp8(S, od, qs, qd, qs, kd, vd, kvs, rd, n_rows, sd, ld, td, blocks_per_seq, block, Hq, Hkv, hd,
                            splits, part);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(out, od, (size_t)q_rows * qs);
    return finish("attention_paged_fp8");
}

int bo_kv_gather_fp8(float *k_dst, float *v_dst, const uint8_t *k_pool, const uint8_t *v_pool, int pool_rows, int kv,
                     const int32_t *table, int n_blocks, int block, int n) {
    if (setup()) return -1;
    uint8_t *kp = up_u8(k_pool, (size_t)pool_rows * kv), *vp = up_u8(v_pool, (size_t)pool_rows * kv);
    bf16 *kd = up(NULL, (size_t)n * kv, 0), *vd = up(NULL, (size_t)n * kv, 0);
    int32_t *td = up_i32(table, n_blocks);
    NEED(kp && vp && kd && vd && td);
    qvl_k_kv_gather_fp8(S, kd, vd, kp, vp, kv, td, block, n);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(k_dst, kd, (size_t)n * kv), down(v_dst, vd, (size_t)n * kv);
    return finish("kv_gather_fp8");
}

int bo_qk_norm_rope_fp8(const bo_rope *d, float *q_out, int q_stride, uint8_t *k_cache, uint8_t *v_cache, int cache_rows,
                        const float *qkv, const float *q_norm, const float *k_norm, const float *inv_freq, int n,
                        const int32_t *pos, const int32_t *slots) {
    if (setup()) return -1;
    const int kv = d->Hkv * d->hd, row = d->Hq * d->hd + 2 * kv;
    qvl_rope_desc rd;
    rd.Hq = d->Hq, rd.Hkv = d->Hkv, rd.hd = d->hd, rd.interleaved = d->interleaved, rd.eps = d->eps;
    for (int i = 0; i < 3; i++) rd.sec[i] = d->sec[i];
    bf16 *qd = up(q_out, (size_t)n * q_stride, 0), *xd = up(qkv, (size_t)n * row, 0);
    uint8_t *kd = up_u8(k_cache, (size_t)cache_rows * kv), *vd = up_u8(v_cache, (size_t)cache_rows * kv);
    bf16 *qn = up(q_norm, d->hd, 0), *kn = up(k_norm, d->hd, 0);
    float *fd = up_f32(inv_freq, (size_t)d->hd / 2);
    int32_t *pd = up_i32(pos, (size_t)3 * n), *sl = up_i32(slots, n);
    NEED(qd && kd && vd && xd && qn && kn && fd && pd && sl);
    qvl_k_qk_norm_rope_slots_fp8(S, &rd, qd, q_stride, kd, vd, xd, qn, kn, fd, n, pd, n, sl);
    if (cudaStreamSynchronize(S) == cudaSuccess) {
        down(q_out, qd, (size_t)n * q_stride);
        cudaMemcpy(k_cache, kd, (size_t)cache_rows * kv, cudaMemcpyDeviceToHost);
        cudaMemcpy(v_cache, vd, (size_t)cache_rows * kv, cudaMemcpyDeviceToHost);
    }
    return finish("qk_norm_rope_slots_fp8");
}

int bo_gather_rows(float *dst, const float *src, int src_rows, const int32_t *rows, int n, int D) {
    if (setup()) return -1;
    bf16 *sd = up(src, (size_t)src_rows * D, 0), *dd = up(NULL, (size_t)n * D, 0);
    int32_t *rd = up_i32(rows, n);
    NEED(sd && dd && rd);
    qvl_k_gather_rows(S, dd, sd, rd, n, D);
    if (cudaStreamSynchronize(S) == cudaSuccess) down(dst, dd, (size_t)n * D);
    return finish("gather_rows");
}

/* ---- two streams at once ---- */
static uint32_t lcg = 12345u;
static float rnd_bf16(float scale) {
    lcg = lcg * 1664525u + 1013904223u;
    return from_bits(to_bits(((float)(lcg >> 8) / 16777216.0f - 0.5f) * 2.0f * scale));
}

int bo_two_streams(int op, int pairs, long *wrong, long *total) {
    if (setup()) return -1;
    *wrong = *total = 0;
    cudaStream_t s2[2];
    if (cudaStreamCreateWithFlags(&s2[0], cudaStreamNonBlocking) != cudaSuccess) return fail("two streams", cudaErrorUnknown);
    if (cudaStreamCreateWithFlags(&s2[1], cudaStreamNonBlocking) != cudaSuccess) {
        cudaStreamDestroy(s2[0]);
        return fail("two streams", cudaErrorUnknown);
    }
    /* argmax: V = 151936 (one decoding row); attention_decode: the 8B's layer shape at 3000 keys */
    const int V = 151936, Hq = 32, Hkv = 8, hd = 128, n_kv = 3000, kv = Hkv * hd;
    const size_t in_n = op == 0 ? (size_t)V : (size_t)Hq * hd + 2 * (size_t)n_kv * kv;
    const size_t out_n = op == 0 ? 1 : (size_t)Hq * hd; /* elements of one launch's output */
    float *h = (float *)malloc(in_n * 4);
    bf16 *in[2] = {NULL, NULL};
    void *out[2], *ref[2];
    float *part[2];
    qvl_sync *sync[2];   /* each stream's own, as each engine owns one */
    int32_t *step[2];
    int rc = 0;
    for (int s = 0; s < 2 && !rc; s++) {
        for (size_t i = 0; i < in_n; i++) h[i] = rnd_bf16(op == 0 ? 8.0f : 1.0f);
        in[s] = up(h, in_n, 0);
        out[s] = dalloc(out_n * (size_t)pairs * (op == 0 ? 4 : 2));
        ref[s] = dalloc(out_n * (op == 0 ? 4 : 2));
        part[s] = op == 1 ? (float *)dalloc(qvl_attention_partial_floats(Hkv, hd) * 4) : NULL;
        sync[s] = (qvl_sync *)dalloc(sizeof(qvl_sync));
        int32_t st = n_kv - 1;
        step[s] = up_i32(&st, 1);
        if (!h || !in[s] || !out[s] || !ref[s] || (op == 1 && !part[s]) || !sync[s] || !step[s]) rc = -1;
    }
    if (rc) {
        free(h);
        cudaStreamDestroy(s2[0]), cudaStreamDestroy(s2[1]);
        return fail("two streams", cudaErrorMemoryAllocation);
    }
    /* launch(s, dst): stream s's op into dst */
    auto launch = [&](int s, cudaStream_t st, void *dst) {
        if (op == 0) qvl_k_argmax(st, (int32_t *)dst, in[s], 1, V, sync[s]);
        else {
            const bf16 *q = in[s], *k = in[s] + (size_t)Hq * hd, *v = k + (size_t)n_kv * kv;
            qvl_attention_decode(st, (bf16 *)dst, Hq * hd, q, Hq * hd, k, v, kv, Hq, Hkv, hd, step[s], part[s], sync[s]);
        }
    };
    cudaDeviceSynchronize(); /* the zeroed buffers (legacy stream) before the non-blocking streams */
    for (int s = 0; s < 2; s++) launch(s, S, ref[s]); /* alone, one after the other */
    cudaStreamSynchronize(S);
    for (int p = 0; p < pairs; p++)
        for (int s = 0; s < 2; s++)
            launch(s, s2[s], (char *)out[s] + (size_t)p * out_n * (op == 0 ? 4 : 2));
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e == cudaSuccess) {
        const size_t eb = op == 0 ? 4 : 2, bytes = out_n * eb;
        char *hr = (char *)malloc(bytes), *ho = (char *)malloc(bytes * (size_t)pairs);
        for (int s = 0; s < 2; s++) {
            cudaMemcpy(hr, ref[s], bytes, cudaMemcpyDeviceToHost);
            cudaMemcpy(ho, out[s], bytes * (size_t)pairs, cudaMemcpyDeviceToHost);
            for (int p = 0; p < pairs; p++) {
                *total += 1;
                *wrong += memcmp(hr, ho + (size_t)p * bytes, bytes) != 0;
            }
        }
        free(hr), free(ho);
    }
    free(h);
    cudaStreamDestroy(s2[0]), cudaStreamDestroy(s2[1]);
    if (e != cudaSuccess) return fail("two streams", e);
    free_all();
    return 0;
}
