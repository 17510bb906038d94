/* cuBLASLt BF16 GEMMs with F32 accumulation, and the own one-row kernels of decoding.
 * Row-major y[M,N] = x[M,K] w[N,K]^T is column-major y^T[N,M] = (w as K x N)^T (x as K x M).
 *
 * Algorithm cache: cuBLASLt's heuristic query (and the first launch of a kernel cuBLAS has not
 * loaded yet) costs milliseconds, and every image and prompt brings new row counts M. So the
 * descriptors and the chosen algorithm are kept per (bucket of M, K, N, strides, epilogue): M is
 * rounded up to a quarter octave (exact up to 16 rows), the heuristic runs once per bucket at its
 * upper end, and calls inside the bucket only change the row count of the layouts. qvl_gemm_prepare
 * walks all buckets of a shape at open, so that no heuristic query runs while serving. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cuda/cuda_ops.h"

enum { SLOTS = 4096, M1_SHAPES = 16, M1_CANDIDATES = 6 };

/* The own one-row kernel's variants: warps per output row, 16-byte loads in flight per lane. */
static const int ks_of[M1_CANDIDATES] = {0, 1, 2, 4, 1, 2}, u_of[M1_CANDIDATES] = {0, 4, 4, 4, 8, 8};

/* For one-row products (decoding) of shape K x N: the microseconds cuBLASLt (candidate 0) and the
 * own kernel's variants took at start-up, and the fastest own variant. */
typedef struct {
    int K, N, best;
    float us[M1_CANDIDATES];
} m1_choice;

typedef struct {
    int used, Mb, K, N, ldx, ldy, epi; /* epi: 0 none, 1 bias, 2 GELU(tanh) + bias */
    int64_t rows;                      /* row count the b and c layouts carry now */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} entry;

struct qvl_gemm {
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
    entry *e; /* SLOTS, open addressing */
    int n;
    int pdl;       /* one-row kernels launched as programmatic dependents (Hopper) */
    int variant;   /* 0: the fastest one-row variant per shape; 1..M1_CANDIDATES-1: that one always */
    int sms;
    m1_choice m1[M1_SHAPES];
    int n_m1;
    int setups;
    double setup_ms;
};

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

qvl_gemm *qvl_gemm_new(void *workspace, size_t workspace_bytes, int gemv_variant) {
    qvl_gemm *g = (qvl_gemm *)calloc(1, sizeof *g);
    if (!g) return NULL;
    g->e = (entry *)calloc(SLOTS, sizeof *g->e);
    if (!g->e || cublasLtCreate(&g->lt) != CUBLAS_STATUS_SUCCESS) {
        free(g->e);
        free(g);
        return NULL;
    }
    g->ws = workspace;
    g->ws_bytes = workspace_bytes;
    g->variant = gemv_variant >= 1 && gemv_variant < M1_CANDIDATES ? gemv_variant : 0;
    int dev = 0, cc = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&g->sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        g->sms = 132;
    if (cudaDeviceGetAttribute(&cc, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) cc = 0;
    g->pdl = cc >= 9;
    return g;
}

static void entry_free(entry *e) {
    if (e->op) cublasLtMatmulDescDestroy(e->op);
    if (e->a) cublasLtMatrixLayoutDestroy(e->a);
    if (e->b) cublasLtMatrixLayoutDestroy(e->b);
    if (e->c) cublasLtMatrixLayoutDestroy(e->c);
    memset(e, 0, sizeof *e);
}

static void clear_cache(qvl_gemm *g) {
    for (int i = 0; i < SLOTS; i++)
        if (g->e[i].used) entry_free(&g->e[i]);
    g->n = 0;
}

void qvl_gemm_free(qvl_gemm *g) {
    if (!g) return;
    clear_cache(g);
    cublasLtDestroy(g->lt);
    free(g->e);
    free(g);
}

void qvl_gemm_setup_stats(const qvl_gemm *g, int *count, double *ms) {
    *count = g->setups;
    *ms = g->setup_ms;
}

/* The row count whose heuristic choice serves M: M itself up to 16, else M rounded up to a
 * multiple of a quarter of the octave below it (at most 25% above M). */
static int bucket(const qvl_gemm *g, int M) {
    if (M <= 16) return M;
    int p = 1;
    while (p * 2 <= M) p *= 2;
    int q = p / 4;
    return (M + q - 1) / q * q;
}

/* cuBLASLt's first heuristic choice for the entry's descriptors (at their current row count). */
static int pick_algo(qvl_gemm *g, entry *e) {
    double t0 = now_ms();
    cublasLtMatmulPreference_t pref;
    if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return -1;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g->ws_bytes,
                                         sizeof g->ws_bytes);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g->lt, e->op, e->a, e->b, e->c, e->c, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    g->setups++;
    g->setup_ms += now_ms() - t0;
    if (st != CUBLAS_STATUS_SUCCESS || found < 1) return -1;
    e->algo = res.algo;
    return 0;
}

static int set_rows(entry *e, int64_t M) {
    if (e->rows == M) return 0;
    uint64_t cols = (uint64_t)M;
    if (cublasLtMatrixLayoutSetAttribute(e->b, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof cols) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatrixLayoutSetAttribute(e->c, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof cols) != CUBLAS_STATUS_SUCCESS)
        return -1;
    e->rows = M;
    return 0;
}

static int entry_init(qvl_gemm *g, entry *e, int Mb, int K, int N, int ldx, int ldy, int epi) {
    memset(e, 0, sizeof *e);
    e->used = 1, e->Mb = Mb, e->K = K, e->N = N, e->ldx = ldx, e->ldy = ldy, e->epi = epi, e->rows = Mb;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    if (cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return -1;
    cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (epi) {
        cublasLtEpilogue_t ep = epi == 2 ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = CUDA_R_16BF;
        cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep);
        cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
    }
    if (cublasLtMatrixLayoutCreate(&e->a, CUDA_R_16BF, K, N, K) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatrixLayoutCreate(&e->b, CUDA_R_16BF, K, Mb, ldx) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatrixLayoutCreate(&e->c, CUDA_R_16BF, N, Mb, ldy) != CUBLAS_STATUS_SUCCESS)
        return -1;
    return pick_algo(g, e);
}

static unsigned slot_of(int Mb, int K, int N, int ldx, int ldy, int epi) {
    uint64_t h = 1469598103934665603ull;
    const int v[6] = {Mb, K, N, ldx, ldy, epi};
    for (int i = 0; i < 6; i++) h = (h ^ (uint32_t)v[i]) * 1099511628211ull;
    return (unsigned)(h ^ (h >> 29)) & (SLOTS - 1);
}

/* The cache entry of a shape, created (heuristic query) on first use. */
static entry *lookup(qvl_gemm *g, int M, int K, int N, int ldx, int ldy, int epi) {
    const int Mb = bucket(g, M);
    if (g->n >= SLOTS * 3 / 4) clear_cache(g); /* never at one model's shapes; keeps probing short */
    for (unsigned s = slot_of(Mb, K, N, ldx, ldy, epi);; s = (s + 1) & (SLOTS - 1)) {
        entry *e = &g->e[s];
        if (!e->used) {
            if (entry_init(g, e, Mb, K, N, ldx, ldy, epi) != 0) {
                entry_free(e);
                return NULL;
            }
            g->n++;
            return e;
        }
        if (e->Mb == Mb && e->K == K && e->N == N && e->ldx == ldx && e->ldy == ldy && e->epi == epi) return e;
    }
}

static int gemm_lt(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w, const bf16 *b,
                   int M, int K, int N, int gelu) {
    const int epi = b ? (gelu ? 2 : 1) : 0;
    entry *e = lookup(g, M, K, N, ldx, ldy, epi);
    if (!e || set_rows(e, M)) return -1;
    if (epi) cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b);
    float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t s = cublasLtMatmul(g->lt, e->op, &alpha, w, e->a, x, e->b, &beta, y, e->c, y, e->c, &e->algo,
                                      g->ws, g->ws_bytes, st);
    if (s != CUBLAS_STATUS_SUCCESS && e->rows != e->Mb) {
        /* The bucket's algorithm does not take this row count: ask for this one (kept for the bucket). */
        if (pick_algo(g, e)) return -1;
        s = cublasLtMatmul(g->lt, e->op, &alpha, w, e->a, x, e->b, &beta, y, e->c, y, e->c, &e->algo, g->ws,
                           g->ws_bytes, st);
    }
    return s == CUBLAS_STATUS_SUCCESS ? 0 : -1;
}

int qvl_gemm_run_gelu(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                      const bf16 *b, int M, int K, int N) {
    if (M <= 0) return 0;
    return gemm_lt(g, st, y, ldy, x, ldx, w, b, M, K, N, 1);
}

int qvl_gemm_prepare(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                     const bf16 *b, int M_max, int K, int N, int gelu) {
    for (int M = 1; M <= M_max;) {
        if (gemm_lt(g, st, y, ldy, x, ldx, w, b, M, K, N, gelu)) return -1;
        int Mb = bucket(g, M);
        M = Mb + 1;
    }
    return cudaPeekAtLastError() == cudaSuccess ? 0 : -1;
}

/* ---- one-row products (decoding) ----
 * A block of 256 threads computes 8 / KS output rows at a time (grid-stride), KS warps per row,
 * each streaming its share of the weight row with 16-byte loads, U loads in flight per lane,
 * F32 accumulation. The input row is first built in shared memory by the prologue: a copy, the
 * RMSNorm of the row (HF rounding: bf16(w * bf16(x * rsqrt(mean(x^2) + eps)))), or SwiGLU of a
 * [gate | up] row (bf16(bf16(silu(g)) * u)). Epilogue: y = bf16(acc), or with resid the residual
 * add y = bf16(y + bf16(acc)), the rounding of a separate add kernel.
 *
 * Programmatic dependent launch (Hopper): launched with pdl, a kernel may start while the kernel
 * before it still runs; it only prefetches its own weight rows towards L2 (constant data) until
 * griddepcontrol.wait returns, i.e. until the kernel before has completed and its writes are
 * visible; every read of activations and every write comes after that. Each one-row kernel
 * lets its successor launch right away (launch_dependents); a successor launched without pdl
 * waits for completion as usual, so only these kernels overlap. */
enum { GEMV_THREADS = 256 };

static __device__ __forceinline__ float bf(bf16 v) { return __bfloat162float(v); }
static __device__ __forceinline__ float rbf(float v) { return __bfloat162float(__float2bfloat16(v)); }

/* The prologue: the block's input row into shared memory xs4 (K / 8 chunks of 8 bf16). */
template <int MODE>
static __device__ __forceinline__ void gemv_prologue(uint4 *xs4, float *red, const bf16 *__restrict__ x,
                                                     const bf16 *__restrict__ nw, float eps, int K) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, chunks = K / 8;
    if (MODE == QVL_GEMV_RMSNORM) {
        float s = 0;
        for (int c = threadIdx.x; c < chunks; c += GEMV_THREADS) {
            uint4 v = ((const uint4 *)x)[c];
            const bf16 *e = (const bf16 *)&v;
#pragma unroll
            for (int j = 0; j < 8; j++) s += bf(e[j]) * bf(e[j]);
        }
        for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) red[warp] = s;
        __syncthreads();
        float tot = 0;
#pragma unroll
        for (int i = 0; i < GEMV_THREADS / 32; i++) tot += red[i];
        const float inv = rsqrtf(tot / K + eps);
        for (int c = threadIdx.x; c < chunks; c += GEMV_THREADS) {
            uint4 v = ((const uint4 *)x)[c], wv = ((const uint4 *)nw)[c], o;
            const bf16 *e = (const bf16 *)&v, *we = (const bf16 *)&wv;
            bf16 *oe = (bf16 *)&o;
#pragma unroll
            for (int j = 0; j < 8; j++) oe[j] = __float2bfloat16(bf(we[j]) * rbf(bf(e[j]) * inv));
            xs4[c] = o;
        }
    } else if (MODE == QVL_GEMV_SWIGLU) {
        for (int c = threadIdx.x; c < chunks; c += GEMV_THREADS) {
            uint4 gv = ((const uint4 *)x)[c], uv = ((const uint4 *)(x + K))[c], o;
            const bf16 *ge = (const bf16 *)&gv, *ue = (const bf16 *)&uv;
            bf16 *oe = (bf16 *)&o;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float gg = bf(ge[j]);
                oe[j] = __float2bfloat16(rbf(gg / (1.0f + expf(-gg))) * bf(ue[j]));
            }
            xs4[c] = o;
        }
    } else {
        for (int c = threadIdx.x; c < chunks; c += GEMV_THREADS) xs4[c] = ((const uint4 *)x)[c];
    }
}

/* One round of a lane: its U chunks c0, c0 + 32 KS, ... of the weight row wr (zeros past `chunks`). */
template <int KS, int U>
static __device__ __forceinline__ void gemv_load(uint4 (&wv)[U], const uint4 *wr, int c0, int chunks) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        int c = c0 + u * 32 * KS;
        wv[u] = c < chunks ? __ldcs(wr + c) : make_uint4(0, 0, 0, 0);
    }
}

/* acc += the round's products with the input row in shared memory, F32, in chunk order. */
template <int KS, int U>
static __device__ __forceinline__ void gemv_dot(float &acc, const uint4 (&wv)[U], const uint4 *xs4, int c0, int chunks) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        int c = c0 + u * 32 * KS;
        if (c < chunks) {
            uint4 xv = xs4[c];
            const __nv_bfloat162 *wp = (const __nv_bfloat162 *)&wv[u], *xp = (const __nv_bfloat162 *)&xv;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float2 wf = __bfloat1622float2(wp[e]), xf = __bfloat1622float2(xp[e]);
                acc += wf.x * xf.x + wf.y * xf.y;
            }
        }
    }
}

/* The row's sum over the warp, then over its KS warps (block-wide barriers: every thread of the
 * block calls this once per row group), and the epilogue. */
template <int KS>
static __device__ __forceinline__ void gemv_store(bf16 *y, float *red, float acc, int n, int N, int resid) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sub = warp % KS, rloc = warp / KS;
    for (int o = 16; o; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (KS > 1) {
        __syncthreads(); /* red is free again (prologue, previous rows) */
        if (lane == 0) red[warp] = acc;
        __syncthreads();
        if (sub == 0) {
            acc = 0.0f;
#pragma unroll
            for (int i = 0; i < KS; i++) acc += red[rloc * KS + i];
        }
    }
    if (sub == 0 && lane == 0 && n < N) {
        if (resid)
            y[n] = __float2bfloat16(bf(y[n]) + rbf(acc));
        else
            y[n] = __float2bfloat16(acc);
    }
}

/* After the kernel before has finished (programmatic launch on Hopper: only now may its output x be
 * read) and the next one may start launching: the input row, prepared by MODE, into shared memory. */
template <int MODE>
static __device__ __forceinline__ void gemv_enter(uint4 *xs4, float *red, const bf16 *x, const bf16 *nw, float eps,
                                                  int K) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;");
#endif
    gemv_prologue<MODE>(xs4, red, x, nw, eps, K);
    __syncthreads();
}

template <int KS, int MODE, int U>
static __global__ void __launch_bounds__(GEMV_THREADS) k_gemv(bf16 *__restrict__ y, const bf16 *__restrict__ x,
                                                              const bf16 *__restrict__ w, const bf16 *__restrict__ nw,
                                                              float eps, int K, int N, int resid) {
    extern __shared__ uint4 xs4[]; /* K bf16 */
    __shared__ float red[GEMV_THREADS / 32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, rpb = (GEMV_THREADS / 32) / KS;
    const int sub = warp % KS, rloc = warp / KS, chunks = K / 8;
    /* This warp's share of its first weight row towards L2, while the kernel before finishes
     * (programmatic launch) and while the prologue runs: only the first U loads of each lane, as in
     * the first round (isolated kernels were ~1 us faster than with the whole row). */
    {
        int n = blockIdx.x * rpb + rloc;
        int end = min(chunks, sub * 32 + 32 * KS * U);
        if (n < N)
            for (int c = sub * 32 + lane; c < end; c += 32 * KS)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(w + (size_t)n * K + (size_t)c * 8));
    }
    gemv_enter<MODE>(xs4, red, x, nw, eps, K);
    for (int n0 = blockIdx.x * rpb; n0 < N; n0 += gridDim.x * rpb) {
        const int n = n0 + rloc;
        float acc = 0.0f;
        if (n < N) {
            const uint4 *wr = (const uint4 *)(w + (size_t)n * K);
            for (int c0 = sub * 32 + lane; c0 < chunks; c0 += 32 * KS * U) {
                uint4 wv[U];
                gemv_load<KS, U>(wv, wr, c0, chunks);
                gemv_dot<KS, U>(acc, wv, xs4, c0, chunks);
            }
        }
        gemv_store<KS>(y, red, acc, n, N, resid);
    }
}

int qvl_gemv_ok(const bf16 *x, const bf16 *w, int K) {
    /* the row in dynamic shared memory plus the kernel's static red[] within the 48 KiB a launch gets
     * without opting in (K = 24576 failed to launch: tests/gpu/test_backend_ops.c) */
    return K % 8 == 0 && (size_t)K * sizeof(bf16) + GEMV_THREADS / 32 * sizeof(float) <= 48 * 1024 &&
           (((uintptr_t)x | (uintptr_t)w) & 15) == 0;
}

template <int KS, int U>
static void launch_ks(const qvl_gemm *g, cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *w, int K, int N,
                      int mode, const bf16 *nw, float eps, int resid, int pdl) {
    const int rpb = (GEMV_THREADS / 32) / KS;
    const size_t smem = (size_t)K * sizeof(bf16);
    unsigned blocks = (unsigned)((N + rpb - 1) / rpb), cap = (unsigned)g->sms * 8;
    if (blocks > cap) blocks = cap;
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = dim3(blocks), cfg.blockDim = dim3(GEMV_THREADS), cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr, cfg.numAttrs = pdl ? 1 : 0;
    if (mode == QVL_GEMV_RMSNORM)
        cudaLaunchKernelEx(&cfg, k_gemv<KS, QVL_GEMV_RMSNORM, U>, y, x, w, nw, eps, K, N, resid);
    else if (mode == QVL_GEMV_SWIGLU)
        cudaLaunchKernelEx(&cfg, k_gemv<KS, QVL_GEMV_SWIGLU, U>, y, x, w, nw, eps, K, N, resid);
    else
        cudaLaunchKernelEx(&cfg, k_gemv<KS, QVL_GEMV_PLAIN, U>, y, x, w, nw, eps, K, N, resid);
}

/* Variant cand (1.. M1_CANDIDATES-1) of the own kernel. */
static void launch_gemv(const qvl_gemm *g, int cand, cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *w, int K,
                        int N, int mode, const bf16 *nw, float eps, int resid, int pdl) {
    switch (cand) {
    case 2: launch_ks<2, 4>(g, st, y, x, w, K, N, mode, nw, eps, resid, pdl); break;
    case 3: launch_ks<4, 4>(g, st, y, x, w, K, N, mode, nw, eps, resid, pdl); break;
    case 4: launch_ks<1, 8>(g, st, y, x, w, K, N, mode, nw, eps, resid, pdl); break;
    case 5: launch_ks<2, 8>(g, st, y, x, w, K, N, mode, nw, eps, resid, pdl); break;
    default: launch_ks<1, 4>(g, st, y, x, w, K, N, mode, nw, eps, resid, pdl); break;
    }
}

int qvl_gemv_pdl(qvl_gemm *g, int on) {
    int was = g->pdl;
    if (!on) g->pdl = 0;
    return was;
}

int qvl_gemv(qvl_gemm *g, cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *w, int K, int N, int mode,
             const bf16 *norm_w, float eps, int resid) {
    if (!qvl_gemv_ok(x, w, K)) return -1;
    int cand = 1;
    for (int i = 0; i < g->n_m1; i++)
        if (g->m1[i].K == K && g->m1[i].N == N) cand = g->m1[i].best;
    launch_gemv(g, cand, st, y, x, w, K, N, mode, norm_w, eps, resid, g->pdl);
    return cudaPeekAtLastError() == cudaSuccess ? 0 : -1;
}

int qvl_gemm_tune_m1(qvl_gemm *g, cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *const *ws, int n_ws, int K, int N) {
    if (g->n_m1 >= M1_SHAPES || n_ws < 1) return 0;
    for (int i = 0; i < n_ws; i++)
        if (!qvl_gemv_ok(x, ws[i], K)) return 0; /* stays on cuBLASLt */
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
    int rc = 0;
    for (int cand = 0; cand < M1_CANDIDATES && !rc; cand++) {
        /* Once over all the weights to warm up, then twice timed: the weights of all layers
         * together exceed L2, so this measures the HBM streaming that decoding sees. */
        for (int rep = 0; rep < 3 && !rc; rep++) {
            if (rep == 1) cudaEventRecord(e0, st);
            for (int i = 0; i < n_ws && !rc; i++) {
                if (cand == 0) rc = gemm_lt(g, st, y, N, x, K, ws[i], NULL, 1, K, N, 0);
                else launch_gemv(g, cand, st, y, x, ws[i], K, N, QVL_GEMV_PLAIN, NULL, 0.0f, 0, 0);
            }
        }
        cudaEventRecord(e1, st);
        float ms = 0;
        if (!rc && (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)) rc = -1;
        c.us[cand] = ms * 1000.0f / (2.0f * n_ws);
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    if (rc || cudaGetLastError() != cudaSuccess) return -1;
    int best = 1;
    for (int cand = 2; cand < M1_CANDIDATES; cand++)
        if (c.us[cand] < c.us[best]) best = cand;
    /* A fixed variant (qvl_tuning.gemv_variant) for every shape instead of the fastest: variants sum
     * in different orders, so fixing the choice makes runs comparable bit for bit (bench_gpu's
     * ids_hash). */
    if (g->variant) best = g->variant;
    c.best = best;
    g->m1[g->n_m1++] = c;
    return 0;
}

int qvl_gemm_m1_report(const qvl_gemm *g, char *buf, size_t size) {
    size_t used = 0;
    if (size) buf[0] = 0;
    for (int i = 0; i < g->n_m1 && used < size; i++) {
        const m1_choice *c = &g->m1[i];
        int n = snprintf(buf + used, size - used,
                         "%s%dx%d: lt %.1f us, gemv ks1u4 %.1f, ks2u4 %.1f, ks4u4 %.1f, ks1u8 %.1f, ks2u8 %.1f -> ks%du%d%s",
                         i ? "; " : "", c->N, c->K, c->us[0], c->us[1], c->us[2], c->us[3], c->us[4], c->us[5],
                         ks_of[c->best], u_of[c->best],
                         g->variant ? " (fixed)" : "");
        if (n < 0) break;
        used += (size_t)n;
    }
    return 0;
}

int qvl_gemm_run(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                 const bf16 *b, int M, int K, int N) {
    if (M <= 0) return 0;
    return gemm_lt(g, st, y, ldy, x, ldx, w, b, M, K, N, 0);
}
