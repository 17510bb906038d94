/* cuBLASLt BF16 GEMMs with F32 accumulation. A GEMM's descriptors and chosen algorithm are
 * cached per shape, so the decode loop pays the heuristic query only once per shape.
 * Row-major y[M,N] = x[M,K] w[N,K]^T is column-major y^T[N,M] = (w as K x N)^T (x as K x M). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_ops.h"

enum { CACHE = 512, M1_SHAPES = 16, M1_CANDIDATES = 4 };

/* For one-row products (decoding) of shape K x N: which kernel won the timing at start-up
 * (0: cuBLASLt, r: k_gemv with r rows a warp) and the microseconds each candidate took. */
typedef struct {
    int K, N, choice;
    float us[M1_CANDIDATES];
} m1_choice;

typedef struct {
    int M, K, N, ldx, ldy, bias, split; /* split > 1: K in `split` batched slices into F32 partials */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} entry;

struct qvl_gemm {
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
    entry e[CACHE];
    int n, victim;
    int gemv_mode;  /* QVL_GEMV: 0 never the own M = 1 kernel, 1 always (2 rows a warp), else as tuned */
    m1_choice m1[M1_SHAPES];
    int n_m1;
    float *part;      /* QVL_SPLITK=1: split-K partials (the upper half of the workspace), else NULL */
    size_t part_bytes;
};

qvl_gemm *qvl_gemm_new(void *workspace, size_t workspace_bytes) {
    qvl_gemm *g = (qvl_gemm *)calloc(1, sizeof *g);
    if (!g) return NULL;
    if (cublasLtCreate(&g->lt) != CUBLAS_STATUS_SUCCESS) {
        free(g);
        return NULL;
    }
    g->ws = workspace;
    g->ws_bytes = workspace_bytes;
    const char *env = getenv("QVL_GEMV");
    g->gemv_mode = env && env[0] == '0' ? 0 : env && env[0] == '1' ? 1 : 2;
    env = getenv("QVL_SPLITK");
    if (env && env[0] == '1') { /* experimental: half of the workspace holds split-K partials */
        g->ws_bytes = workspace_bytes / 2;
        g->part = (float *)((char *)workspace + g->ws_bytes);
        g->part_bytes = workspace_bytes - g->ws_bytes;
    }
    return g;
}

static void entry_free(entry *e) {
    if (e->op) cublasLtMatmulDescDestroy(e->op);
    if (e->a) cublasLtMatrixLayoutDestroy(e->a);
    if (e->b) cublasLtMatrixLayoutDestroy(e->b);
    if (e->c) cublasLtMatrixLayoutDestroy(e->c);
    memset(e, 0, sizeof *e);
}

void qvl_gemm_free(qvl_gemm *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) entry_free(&g->e[i]);
    cublasLtDestroy(g->lt);
    free(g);
}

/* Split-K for few rows (QVL_SPLITK=1): a 128 x 128-tile GEMM with M <= a few hundred rows has
 * ceil(N/128) * ceil(M/128) blocks, often far fewer than the 132 SMs, each streaming a long K
 * panel. Slicing K into `split` batched GEMMs multiplies the blocks; a small kernel sums the F32
 * partials, adds the bias and rounds once. */
static int choose_split(const qvl_gemm *g, int M, int K, int N) {
    if (!g->part || M < 2 || M > 1024) return 1;
    long tiles = (long)((N + 127) / 128) * ((M + 127) / 128);
    int S = 1;
    while (S < 8 && tiles * S < 132 && K % (2 * S * 64) == 0 && (size_t)2 * S * M * N * sizeof(float) <= g->part_bytes)
        S *= 2;
    return S;
}

static __global__ void k_splitk_reduce(bf16 *y, int ldy, const float *p, const bf16 *b, int M, int N, int S) {
    size_t MN = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < MN; i += (size_t)gridDim.x * blockDim.x) {
        int n = (int)(i % N), m = (int)(i / N);
        float acc = 0.0f;
        for (int s = 0; s < S; s++) acc += p[s * MN + i];
        if (b) acc += __bfloat162float(b[n]);
        y[(size_t)m * ldy + n] = __float2bfloat16(acc);
    }
}

/* cuBLASLt's first heuristic choice for the entry's descriptors within the workspace. */
static int pick_algo(qvl_gemm *g, entry *e) {
    cublasLtMatmulPreference_t pref;
    if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return -1;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g->ws_bytes,
                                         sizeof g->ws_bytes);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g->lt, e->op, e->a, e->b, e->c, e->c, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found < 1) return -1;
    e->algo = res.algo;
    return 0;
}

static int entry_init(qvl_gemm *g, entry *e, int M, int K, int N, int ldx, int ldy, int bias) {
    memset(e, 0, sizeof *e);
    e->M = M, e->K = K, e->N = N, e->ldx = ldx, e->ldy = ldy, e->bias = bias;
    e->split = choose_split(g, M, K, N);
    if (e->split > 1) {
        const int S = e->split, Ks = K / S;
        const int64_t sa = Ks, sc = (int64_t)M * N;
        if (cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return -1;
        cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
        cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
        if (cublasLtMatrixLayoutCreate(&e->a, CUDA_R_16BF, Ks, N, K) != CUBLAS_STATUS_SUCCESS ||
            cublasLtMatrixLayoutCreate(&e->b, CUDA_R_16BF, Ks, M, ldx) != CUBLAS_STATUS_SUCCESS ||
            cublasLtMatrixLayoutCreate(&e->c, CUDA_R_32F, N, M, N) != CUBLAS_STATUS_SUCCESS)
            return -1;
        int32_t bc = S;
        cublasLtMatrixLayout_t ls[3] = {e->a, e->b, e->c};
        const int64_t offs[3] = {sa, sa, sc};
        for (int i = 0; i < 3; i++) {
            cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc);
            cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &offs[i], sizeof offs[i]);
        }
        return pick_algo(g, e);
    }
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    if (cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return -1;
    cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (bias) {
        cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = CUDA_R_16BF;
        cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep);
        cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
    }
    if (cublasLtMatrixLayoutCreate(&e->a, CUDA_R_16BF, K, N, K) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatrixLayoutCreate(&e->b, CUDA_R_16BF, K, M, ldx) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatrixLayoutCreate(&e->c, CUDA_R_16BF, N, M, ldy) != CUBLAS_STATUS_SUCCESS)
        return -1;
    return pick_algo(g, e);
}

/* One row (decoding): a warp per R outputs streams their weight rows with 16-byte loads, GEMV_U
 * chunks in flight per row, F32 accumulation, bias added before the single rounding. Whether it
 * beats cuBLASLt depends on the shape and the card, so qvl_gemm_tune_m1 times both at start-up. */
enum { GEMV_U = 4 };
template <int R>
static __global__ void __launch_bounds__(256) k_gemv(bf16 *__restrict__ y, const bf16 *__restrict__ x,
                                                     const bf16 *__restrict__ w, const bf16 *__restrict__ b, int K, int N) {
    int warp = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    int n0 = warp * R;
    if (n0 >= N) return;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    const int step = 32 * 8;
    for (int k0 = lane * 8; k0 < K; k0 += step * GEMV_U) {
        uint4 wv[GEMV_U][R], xv[GEMV_U];
#pragma unroll
        for (int u = 0; u < GEMV_U; u++) {
            int k = k0 + u * step;
            xv[u] = k < K ? __ldg((const uint4 *)(x + k)) : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int r = 0; r < R; r++)
                wv[u][r] = k < K && n0 + r < N ? __ldcs((const uint4 *)(w + (size_t)(n0 + r) * K + k)) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < GEMV_U; u++) {
            const __nv_bfloat162 *xp = (const __nv_bfloat162 *)&xv[u];
#pragma unroll
            for (int r = 0; r < R; r++) {
                const __nv_bfloat162 *wp = (const __nv_bfloat162 *)&wv[u][r];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float2 wf = __bfloat1622float2(wp[e]), xf = __bfloat1622float2(xp[e]);
                    acc[r] += wf.x * xf.x + wf.y * xf.y;
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        float a = acc[r];
        for (int o = 16; o; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
        if (lane == 0 && n0 + r < N) y[n0 + r] = __float2bfloat16(a + (b ? __bfloat162float(b[n0 + r]) : 0.0f));
    }
}

static void launch_gemv(int r, cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *w, const bf16 *b, int K, int N) {
    int warps = (N + r - 1) / r;
    unsigned blocks = (unsigned)((warps + 7) / 8);
    if (r == 1)
        k_gemv<1><<<blocks, 256, 0, st>>>(y, x, w, b, K, N);
    else if (r == 2)
        k_gemv<2><<<blocks, 256, 0, st>>>(y, x, w, b, K, N);
    else
        k_gemv<4><<<blocks, 256, 0, st>>>(y, x, w, b, K, N);
}

static int gemv_ok(const bf16 *x, const bf16 *w, int K) { return K % 8 == 0 && (((uintptr_t)x | (uintptr_t)w) & 15) == 0; }

static int gemm_lt(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w, const bf16 *b,
                   int M, int K, int N);

int qvl_gemm_tune_m1(qvl_gemm *g, cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *const *ws, int n_ws, int K, int N) {
    if (g->n_m1 >= M1_SHAPES || n_ws < 1) return 0;
    for (int i = 0; i < n_ws; i++)
        if (!gemv_ok(x, ws[i], K)) return 0; /* stays on cuBLASLt */
    for (int i = 0; i < g->n_m1; i++)
        if (g->m1[i].K == K && g->m1[i].N == N) return 0;
    m1_choice c;
    memset(&c, 0, sizeof c);
    c.K = K, c.N = N;
    cudaEvent_t e0, e1;
    if (cudaEventCreate(&e0) != cudaSuccess) return -1;
    if (cudaEventCreate(&e1) != cudaSuccess) {
        cudaEventDestroy(e0);
        return -1;
    }
    static const int rows_of[M1_CANDIDATES] = {0, 1, 2, 4};
    int rc = 0;
    for (int cand = 0; cand < M1_CANDIDATES && !rc; cand++) {
        /* Once over all the weights to warm up, then twice timed: the weights of all layers
         * together exceed L2, so this measures the HBM streaming that decoding sees. */
        for (int rep = 0; rep < 3 && !rc; rep++) {
            if (rep == 1) cudaEventRecord(e0, st);
            for (int i = 0; i < n_ws && !rc; i++) {
                if (cand == 0) rc = gemm_lt(g, st, y, N, x, K, ws[i], NULL, 1, K, N);
                else launch_gemv(rows_of[cand], st, y, x, ws[i], NULL, K, N);
            }
        }
        cudaEventRecord(e1, st);
        float ms = 0;
        if (!rc && (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)) rc = -1;
        c.us[cand] = ms * 1000.0f / (2.0f * n_ws);
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    if (rc || cudaGetLastError() != cudaSuccess) return -1;
    for (int cand = 1; cand < M1_CANDIDATES; cand++)
        if (c.us[cand] < c.us[c.choice]) c.choice = cand;
    c.choice = rows_of[c.choice];
    g->m1[g->n_m1++] = c;
    return 0;
}

int qvl_gemm_m1_report(const qvl_gemm *g, char *buf, size_t size) {
    size_t used = 0;
    if (size) buf[0] = 0;
    for (int i = 0; i < g->n_m1 && used < size; i++) {
        const m1_choice *c = &g->m1[i];
        int n = snprintf(buf + used, size - used, "%s%dx%d: lt %.1f us, gemv1 %.1f, gemv2 %.1f, gemv4 %.1f -> %s%s",
                         i ? "; " : "", c->N, c->K, c->us[0], c->us[1], c->us[2], c->us[3], c->choice ? "gemv" : "lt",
                         c->choice == 1 ? "1" : c->choice == 2 ? "2" : c->choice == 4 ? "4" : "");
        if (n < 0) break;
        used += (size_t)n;
    }
    return 0;
}

int qvl_gemm_run(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                 const bf16 *b, int M, int K, int N) {
    if (M <= 0) return 0;
    if (M == 1 && g->gemv_mode && gemv_ok(x, w, K)) {
        int r = g->gemv_mode == 1 ? 2 : 0;
        for (int i = 0; i < g->n_m1 && !r; i++)
            if (g->m1[i].K == K && g->m1[i].N == N) r = g->m1[i].choice ? g->m1[i].choice : -1;
        if (r > 0) {
            launch_gemv(r, st, y, x, w, b, K, N);
            return cudaPeekAtLastError() == cudaSuccess ? 0 : -1;
        }
    }
    return gemm_lt(g, st, y, ldy, x, ldx, w, b, M, K, N);
}

/* cuBLASLt with the per-shape descriptor cache. */
static int gemm_lt(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w, const bf16 *b,
                   int M, int K, int N) {
    int bias = b != NULL;
    entry *e = NULL;
    for (int i = 0; i < g->n; i++)
        if (g->e[i].M == M && g->e[i].K == K && g->e[i].N == N && g->e[i].ldx == ldx && g->e[i].ldy == ldy &&
            g->e[i].bias == bias) {
            e = &g->e[i];
            break;
        }
    if (!e) {
        /* A full cache recycles its entries in turn (prompt and image sizes vary per sample). */
        if (g->n >= CACHE) entry_free(&g->e[g->victim]), g->victim = (g->victim + 1) % CACHE;
        e = g->n < CACHE ? &g->e[g->n] : &g->e[(g->victim + CACHE - 1) % CACHE];
        if (entry_init(g, e, M, K, N, ldx, ldy, bias) != 0) {
            entry_free(e);
            return -1;
        }
        if (g->n < CACHE) g->n++;
    }
    float alpha = 1.0f, beta = 0.0f;
    if (e->split > 1) {
        if (cublasLtMatmul(g->lt, e->op, &alpha, w, e->a, x, e->b, &beta, g->part, e->c, g->part, e->c, &e->algo, g->ws,
                           g->ws_bytes, st) != CUBLAS_STATUS_SUCCESS)
            return -1;
        size_t mn = (size_t)M * N;
        unsigned blocks = (unsigned)((mn + 255) / 256 < 1024 ? (mn + 255) / 256 : 1024);
        k_splitk_reduce<<<blocks, 256, 0, st>>>(y, ldy, g->part, b, M, N, e->split);
        return cudaPeekAtLastError() == cudaSuccess ? 0 : -1;
    }
    if (bias) cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b);
    cublasStatus_t s = cublasLtMatmul(g->lt, e->op, &alpha, w, e->a, x, e->b, &beta, y, e->c, y, e->c, &e->algo,
                                      g->ws, g->ws_bytes, st);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : -1;
}
