/* cuBLASLt BF16 GEMMs with F32 accumulation. A GEMM's descriptors and chosen algorithm are
 * cached per shape, so the decode loop pays the heuristic query only once per shape.
 * Row-major y[M,N] = x[M,K] w[N,K]^T is column-major y^T[N,M] = (w as K x N)^T (x as K x M). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_ops.h"

enum { CACHE = 512 };

typedef struct {
    int M, K, N, ldx, ldy, bias;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} entry;

struct qvl_gemm {
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
    entry e[CACHE];
    int n;
    int use_gemv;   /* QVL_GEMV=1: own kernel for M = 1 (read once at creation) */
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
    g->use_gemv = env && env[0] == '1';
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

static int entry_init(qvl_gemm *g, entry *e, int M, int K, int N, int ldx, int ldy, int bias) {
    memset(e, 0, sizeof *e);
    e->M = M, e->K = K, e->N = N, e->ldx = ldx, e->ldy = ldy, e->bias = bias;
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
    cublasLtMatmulPreference_t pref;
    if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return -1;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g->ws_bytes,
                                         sizeof g->ws_bytes);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(g->lt, e->op, e->a, e->b, e->c, e->c, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || found < 1) return -1;
    e->algo = res.algo;
    return 0;
}

/* One row (decoding), opt-in with QVL_GEMV=1: a warp per GEMV_R outputs streams their weight rows
 * with 16-byte loads, GEMV_U chunks in flight per row, F32 accumulation, bias added before the
 * single rounding. */
enum { GEMV_R = 2, GEMV_U = 4 };
static __global__ void __launch_bounds__(256) k_gemv(bf16 *__restrict__ y, const bf16 *__restrict__ x,
                                                     const bf16 *__restrict__ w, const bf16 *__restrict__ b, int K, int N) {
    int warp = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    int n0 = warp * GEMV_R;
    if (n0 >= N) return;
    float acc[GEMV_R];
#pragma unroll
    for (int r = 0; r < GEMV_R; r++) acc[r] = 0.0f;
    const int step = 32 * 8;
    for (int k0 = lane * 8; k0 < K; k0 += step * GEMV_U) {
        uint4 wv[GEMV_U][GEMV_R], xv[GEMV_U];
#pragma unroll
        for (int u = 0; u < GEMV_U; u++) {
            int k = k0 + u * step;
            xv[u] = k < K ? __ldg((const uint4 *)(x + k)) : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int r = 0; r < GEMV_R; r++)
                wv[u][r] = k < K && n0 + r < N ? __ldg((const uint4 *)(w + (size_t)(n0 + r) * K + k)) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < GEMV_U; u++) {
            const __nv_bfloat162 *xp = (const __nv_bfloat162 *)&xv[u];
#pragma unroll
            for (int r = 0; r < GEMV_R; r++) {
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
    for (int r = 0; r < GEMV_R; r++) {
        float a = acc[r];
        for (int o = 16; o; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
        if (lane == 0 && n0 + r < N) y[n0 + r] = __float2bfloat16(a + (b ? __bfloat162float(b[n0 + r]) : 0.0f));
    }
}

int qvl_gemm_run(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                 const bf16 *b, int M, int K, int N) {
    if (M <= 0) return 0;
    if (M == 1 && K % 8 == 0 && (((uintptr_t)x | (uintptr_t)w) & 15) == 0 && g->use_gemv) {
        int warps = (N + GEMV_R - 1) / GEMV_R;
        k_gemv<<<(warps + 7) / 8, 256, 0, st>>>(y, x, w, b, K, N);
        return cudaPeekAtLastError() == cudaSuccess ? 0 : -1;
    }
    int bias = b != NULL;
    entry *e = NULL, tmp;
    for (int i = 0; i < g->n; i++)
        if (g->e[i].M == M && g->e[i].K == K && g->e[i].N == N && g->e[i].ldx == ldx && g->e[i].ldy == ldy &&
            g->e[i].bias == bias) {
            e = &g->e[i];
            break;
        }
    int cached = e != NULL;
    if (!e) {
        e = g->n < CACHE ? &g->e[g->n] : &tmp;
        if (entry_init(g, e, M, K, N, ldx, ldy, bias) != 0) {
            entry_free(e);
            return -1;
        }
        if (e != &tmp) g->n++;
    }
    if (bias) cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b);
    float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t s = cublasLtMatmul(g->lt, e->op, &alpha, w, e->a, x, e->b, &beta, y, e->c, y, e->c, &e->algo,
                                      g->ws, g->ws_bytes, st);
    if (!cached && e == &tmp) entry_free(e);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : -1;
}
