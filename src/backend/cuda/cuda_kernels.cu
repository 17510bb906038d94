/* Elementwise and per-row kernels of the forward pass. Arithmetic that the reference does in F32
 * uses the explicitly rounded intrinsics (__fmul_rn, __fadd_rn) where nvcc would otherwise fuse a
 * multiply-add and shift the last bit; BF16 rounding is round-to-nearest-even (__float2bfloat16). */
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cuda_kv_fp8.cuh"
#include "backend/cuda/cuda_ops.h"

static __device__ __forceinline__ float f(bf16 x) { return __bfloat162float(x); }
static __device__ __forceinline__ bf16 b(float x) { return __float2bfloat16(x); }
static __device__ __forceinline__ float rb(float x) { return __bfloat162float(__float2bfloat16(x)); }

static unsigned blocks_for(size_t n, unsigned t) {
    size_t g = (n + t - 1) / t;
    return (unsigned)(g > 65535u * 32u ? 65535u * 32u : g);
}

/* The vectorised kernels (16-byte accesses, row in registers, shared rotary tables) each keep the
 * arithmetic of the scalar kernel beside them; they won on the H100 (2B: 19.5 -> 20.2 samples/s,
 * parity unchanged: bench/results/2026-11-26-cuda-backend-h100), so the scalar kernels serve only unaligned or
 * odd sizes. */

static __global__ void k_f32_to_bf16(bf16 *y, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = b(x[i]);
}
void qvl_k_f32_to_bf16(cudaStream_t st, bf16 *y, const float *x, size_t n) {
    if (n) k_f32_to_bf16<<<blocks_for(n, 256), 256, 0, st>>>(y, x, n);
}
static __global__ void k_bf16_to_f32(float *y, const bf16 *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = f(x[i]);
}
void qvl_k_bf16_to_f32(cudaStream_t st, float *y, const bf16 *x, size_t n) {
    if (n) k_bf16_to_f32<<<blocks_for(n, 256), 256, 0, st>>>(y, x, n);
}

/* Block-wide sum of one float per thread (blockDim.x a multiple of 32, <= 1024). */
static __device__ float block_sum(float v, float *red) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[w] = v;
    __syncthreads();
    float s = 0;
    for (int i = 0; i < nw; i++) s += red[i];
    return s;
}

static __global__ void k_layernorm(bf16 *y, const bf16 *x, const bf16 *w, const bf16 *bias, int dim, float eps) {
    __shared__ float red[32];
    const bf16 *xr = x + (size_t)blockIdx.x * dim;
    bf16 *yr = y + (size_t)blockIdx.x * dim;
    float s = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += f(xr[i]);
    float mean = block_sum(s, red) / dim;
    float v = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float d = f(xr[i]) - mean;
        v += d * d;
    }
    float rstd = rsqrtf(block_sum(v, red) / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = b((f(xr[i]) - mean) * rstd * f(w[i]) + f(bias[i]));
}

/* The row-in-registers kernels' load: this thread's 16-byte chunks c = threadIdx.x + i * blockDim.x
 * (i < V, c < chunks) of row blockIdx.x of x as F32 in v, after x = bf16(x + r) (written back) when
 * r is not NULL. v[i] of a chunk past the row stays unset: row_sum and the callers' loops skip it. */
template <int V>
static __device__ __forceinline__ void load_row_add(float (&v)[V][8], bf16 *x, const bf16 *r, int dim) {
    const int chunks = dim / 8;
    uint4 *xr = (uint4 *)(x + (size_t)blockIdx.x * dim);
    const uint4 *rr = r ? (const uint4 *)(r + (size_t)blockIdx.x * dim) : NULL;
#pragma unroll
    for (int i = 0; i < V; i++) {
        int c = threadIdx.x + i * blockDim.x;
        if (c >= chunks) continue;
        uint4 xv = xr[c];
        bf16 *xe = (bf16 *)&xv;
        if (rr) {
            uint4 rv = rr[c];
            const bf16 *re = (const bf16 *)&rv;
#pragma unroll
            for (int j = 0; j < 8; j++) xe[j] = b(f(xe[j]) + f(re[j]));
            xr[c] = xv;
        }
#pragma unroll
        for (int j = 0; j < 8; j++) v[i][j] = f(xe[j]);
    }
}
/* This thread's sum of term(value) over its loaded chunks, in load order. */
template <int V, class F>
static __device__ __forceinline__ float row_sum(const float (&v)[V][8], int chunks, F term) {
    float s = 0;
#pragma unroll
    for (int i = 0; i < V; i++)
        if (threadIdx.x + i * blockDim.x < chunks)
#pragma unroll
            for (int j = 0; j < 8; j++) s += term(v[i][j]);
    return s;
}

/* Row in registers (V 16-byte chunks a thread): one read of x (and r), residual add, LayerNorm.
 * y may alias r: every read of the row precedes the block reductions, every write follows them. */
template <int V>
static __global__ void k_add_layernorm(bf16 *y, bf16 *x, const bf16 *r, const bf16 *w, const bf16 *bias, int dim,
                                       float eps) {
    __shared__ float red[32];
    const int chunks = dim / 8;
    uint4 *yr = (uint4 *)(y + (size_t)blockIdx.x * dim);
    float v[V][8];
    load_row_add<V>(v, x, r, dim);
    const float mean = block_sum(row_sum<V>(v, chunks, [](float a) { return a; }), red) / dim;
    const float q = row_sum<V>(v, chunks, [mean](float a) { return (a - mean) * (a - mean); });
    const float rstd = rsqrtf(block_sum(q, red) / dim + eps);
#pragma unroll
    for (int i = 0; i < V; i++) {
        int c = threadIdx.x + i * blockDim.x;
        if (c >= chunks) continue;
        uint4 wv = ((const uint4 *)w)[c], bv = ((const uint4 *)bias)[c], o;
        const bf16 *we = (const bf16 *)&wv, *be = (const bf16 *)&bv;
        bf16 *oe = (bf16 *)&o;
#pragma unroll
        for (int j = 0; j < 8; j++) oe[j] = b((v[i][j] - mean) * rstd * f(we[j]) + f(be[j]));
        yr[c] = o;
    }
}

/* The register kernel where the row fits (dim a multiple of 8, at most 4096 chunks, aligned). */
static int add_layernorm_vec(cudaStream_t st, bf16 *y, bf16 *x, const bf16 *r, const bf16 *w, const bf16 *bias,
                             int rows, int dim, float eps) {
    int chunks = dim / 8;
    if (dim % 8 || chunks > 4096 || (((uintptr_t)x | (uintptr_t)y | (uintptr_t)r | (uintptr_t)w | (uintptr_t)bias) & 15))
        return 0;
    int threads = chunks < 1024 ? (chunks + 31) / 32 * 32 : 1024;
    if (chunks <= 1024)
        k_add_layernorm<1><<<rows, threads, 0, st>>>(y, x, r, w, bias, dim, eps);
    else if (chunks <= 2048)
        k_add_layernorm<2><<<rows, threads, 0, st>>>(y, x, r, w, bias, dim, eps);
    else
        k_add_layernorm<4><<<rows, threads, 0, st>>>(y, x, r, w, bias, dim, eps);
    return 1;
}

void qvl_k_layernorm(cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *w, const bf16 *bias, int rows, int dim,
                     float eps) {
    if (!rows || add_layernorm_vec(st, y, (bf16 *)x, NULL, w, bias, rows, dim, eps)) return;
    k_layernorm<<<rows, 256, 0, st>>>(y, x, w, bias, dim, eps);
}

void qvl_k_add_layernorm(cudaStream_t st, bf16 *y, bf16 *x, const bf16 *r, const bf16 *w, const bf16 *bias, int rows,
                         int dim, float eps) {
    if (!rows || add_layernorm_vec(st, y, x, r, w, bias, rows, dim, eps)) return;
    qvl_k_add(st, x, r, (size_t)rows * dim);
    k_layernorm<<<rows, 256, 0, st>>>(y, x, w, bias, dim, eps);
}

/* add: x = bf16(x + r) first when r != NULL. */
static __global__ void k_rmsnorm(bf16 *y, bf16 *x, const bf16 *r, const bf16 *w, int dim, float eps) {
    __shared__ float red[32];
    bf16 *xr = x + (size_t)blockIdx.x * dim;
    bf16 *yr = y + (size_t)blockIdx.x * dim;
    const bf16 *rr = r ? r + (size_t)blockIdx.x * dim : NULL;
    float s = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = f(xr[i]);
        if (rr) {
            v = rb(v + f(rr[i]));
            xr[i] = b(v);
        }
        s += v * v;
    }
    float inv = rsqrtf(block_sum(s, red) / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = b(f(w[i]) * rb(f(xr[i]) * inv));
}
/* Vectorised: the row in registers (V 16-byte chunks a thread), one read of x (and r). y may alias r:
 * every read precedes the block reduction, every write follows it. */
template <int V>
static __global__ void k_rmsnorm_vec(bf16 *y, bf16 *x, const bf16 *r, const bf16 *w, int dim, float eps) {
    __shared__ float red[32];
    const int chunks = dim / 8;
    uint4 *yr = (uint4 *)(y + (size_t)blockIdx.x * dim);
    float v[V][8];
    load_row_add<V>(v, x, r, dim);
    const float inv = rsqrtf(block_sum(row_sum<V>(v, chunks, [](float a) { return a * a; }), red) / dim + eps);
#pragma unroll
    for (int i = 0; i < V; i++) {
        int c = threadIdx.x + i * blockDim.x;
        if (c >= chunks) continue;
        uint4 wv = ((const uint4 *)w)[c], o;
        const bf16 *we = (const bf16 *)&wv;
        bf16 *oe = (bf16 *)&o;
#pragma unroll
        for (int j = 0; j < 8; j++) oe[j] = b(f(we[j]) * rb(v[i][j] * inv));
        yr[c] = o;
    }
}
static int rmsnorm_vec(cudaStream_t st, bf16 *y, bf16 *x, const bf16 *r, const bf16 *w, int rows, int dim, float eps) {
    int chunks = dim / 8;
    if (dim % 8 || chunks > 4096 ||
        (((uintptr_t)x | (uintptr_t)y | (uintptr_t)r | (uintptr_t)w) & 15))
        return 0;
    int threads = chunks < 1024 ? (chunks + 31) / 32 * 32 : 1024;
    if (chunks <= 1024)
        k_rmsnorm_vec<1><<<rows, threads, 0, st>>>(y, x, r, w, dim, eps);
    else if (chunks <= 2048)
        k_rmsnorm_vec<2><<<rows, threads, 0, st>>>(y, x, r, w, dim, eps);
    else
        k_rmsnorm_vec<4><<<rows, threads, 0, st>>>(y, x, r, w, dim, eps);
    return 1;
}
void qvl_k_rmsnorm(cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *w, int rows, int dim, float eps) {
    if (!rows || rmsnorm_vec(st, y, (bf16 *)x, NULL, w, rows, dim, eps)) return;
    k_rmsnorm<<<rows, dim >= 1024 ? 512 : 128, 0, st>>>(y, (bf16 *)x, NULL, w, dim, eps);
}
void qvl_k_add_rmsnorm(cudaStream_t st, bf16 *y, bf16 *x, const bf16 *r, const bf16 *w, int rows, int dim,
                       float eps) {
    if (!rows || rmsnorm_vec(st, y, x, r, w, rows, dim, eps)) return;
    k_rmsnorm<<<rows, dim >= 1024 ? 512 : 128, 0, st>>>(y, x, r, w, dim, eps);
}

static __global__ void k_add(bf16 *x, const bf16 *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = b(f(x[i]) + f(y[i]));
}
void qvl_k_add(cudaStream_t st, bf16 *x, const bf16 *y, size_t n) {
    if (n) k_add<<<blocks_for(n, 256), 256, 0, st>>>(x, y, n);
}

static __global__ void k_gelu_tanh(bf16 *x, size_t n) {
    const float kBeta = 0.7978845608028654f, kKappa = 0.044715f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = f(x[i]);
        x[i] = b(0.5f * v * (1.0f + tanhf(kBeta * (v + kKappa * v * v * v))));
    }
}
void qvl_k_gelu_tanh(cudaStream_t st, bf16 *x, size_t n) {
    if (n) k_gelu_tanh<<<blocks_for(n, 256), 256, 0, st>>>(x, n);
}
static __global__ void k_gelu_erf(bf16 *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = f(x[i]);
        x[i] = b(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
    }
}
void qvl_k_gelu_erf(cudaStream_t st, bf16 *x, size_t n) {
    if (n) k_gelu_erf<<<blocks_for(n, 256), 256, 0, st>>>(x, n);
}

static __global__ void k_silu_mul(bf16 *out, const bf16 *gu, int rows, int I) {
    size_t n = (size_t)rows * I;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / I, j = i % I;
        float g = f(gu[r * 2 * I + j]), u = f(gu[r * 2 * I + I + j]);
        out[i] = b(rb(g / (1.0f + expf(-g))) * u);
    }
}
/* Vectorised: 8 outputs a thread with 16-byte loads and stores. */
static __global__ void k_silu_mul_vec(bf16 *out, const bf16 *gu, int rows, int I) {
    const int c8 = I / 8;
    const size_t n = (size_t)rows * c8;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / c8, c = i % c8;
        uint4 gv = ((const uint4 *)(gu + r * 2 * I))[c], uv = ((const uint4 *)(gu + r * 2 * I + I))[c], o;
        const bf16 *ge = (const bf16 *)&gv, *ue = (const bf16 *)&uv;
        bf16 *oe = (bf16 *)&o;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float g = f(ge[j]);
            oe[j] = b(rb(g / (1.0f + expf(-g))) * f(ue[j]));
        }
        ((uint4 *)(out + r * I))[c] = o;
    }
}
void qvl_k_silu_mul(cudaStream_t st, bf16 *out, const bf16 *gu, int rows, int I) {
    if (!rows) return;
    if (I % 8 == 0 && (((uintptr_t)out | (uintptr_t)gu) & 15) == 0)
        k_silu_mul_vec<<<blocks_for((size_t)rows * I / 8, 256), 256, 0, st>>>(out, gu, rows, I);
    else
        k_silu_mul<<<blocks_for((size_t)rows * I, 256), 256, 0, st>>>(out, gu, rows, I);
}

/* Patch p of a frame in merge-block order -> (row, col) in patches. */
static __device__ void patch_rc(int p, int grid_h, int grid_w, int M, int *row, int *col) {
    int pf = p % (grid_h * grid_w), u = M * M;
    int blk = pf / u, in = pf % u, bw = grid_w / M;
    *row = (blk / bw) * M + in / M;
    *col = (blk % bw) * M + in % M;
}

/* torch.linspace(0, end, n) in float32 as computed on the CPU (spec 8.5). */
static __device__ float linspace_at(int i, int n, float end) {
    if (n == 1) return 0.0f;
    float step = __fdiv_rn(end, (float)(n - 1));
    return i < n / 2 ? __fmul_rn(step, (float)i) : __fsub_rn(end, __fmul_rn(step, (float)(n - 1 - i)));
}

static __global__ void k_vision_pos_embed(bf16 *x, const bf16 *table, int G, int Dv, int n, int grid_h, int grid_w,
                                          int M) {
    size_t total = (size_t)n * Dv;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int p = (int)(i / Dv), d = (int)(i % Dv), r, c;
        patch_rc(p, grid_h, grid_w, M, &r, &c);
        float hs = linspace_at(r, grid_h, (float)(G - 1)), ws = linspace_at(c, grid_w, (float)(G - 1));
        int h0 = (int)hs, w0 = (int)ws;
        int h1 = min(h0 + 1, G - 1), w1 = min(w0 + 1, G - 1);
        float dh = __fsub_rn(hs, (float)h0), dw = __fsub_rn(ws, (float)w0);
        float a = __fsub_rn(1.0f, dh), bb = __fsub_rn(1.0f, dw);
        float w00 = rb(__fmul_rn(a, bb)), w01 = rb(__fmul_rn(a, dw)), w10 = rb(__fmul_rn(dh, bb)),
              w11 = rb(__fmul_rn(dh, dw));
        float p00 = rb(f(table[(size_t)(h0 * G + w0) * Dv + d]) * w00);
        float p01 = rb(f(table[(size_t)(h0 * G + w1) * Dv + d]) * w01);
        float p10 = rb(f(table[(size_t)(h1 * G + w0) * Dv + d]) * w10);
        float p11 = rb(f(table[(size_t)(h1 * G + w1) * Dv + d]) * w11);
        float pos = rb(rb(rb(p00 + p01) + p10) + p11);
        x[i] = b(f(x[i]) + pos);
    }
}
void qvl_k_vision_pos_embed(cudaStream_t st, bf16 *x, const bf16 *table, int G, int Dv, int grid_t, int grid_h,
                            int grid_w, int M) {
    size_t n = (size_t)grid_t * grid_h * grid_w;
    k_vision_pos_embed<<<blocks_for(n * Dv, 256), 256, 0, st>>>(x, table, G, Dv, (int)n, grid_h, grid_w, M);
}

/* One thread per (patch, head, d < hd/2): rotates the pairs (d, d + hd/2) of q and k. */
static __global__ void k_vision_rope(bf16 *qkv, const float *inv_freq, int n, int Dv, int H, int hd, int grid_h,
                                     int grid_w, int M) {
    int half = hd / 2, nf = half / 2;
    size_t total = (size_t)n * H * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % half), h = (int)((i / half) % H), p = (int)(i / ((size_t)half * H)), r, c;
        patch_rc(p, grid_h, grid_w, M, &r, &c);
        float ang = d < nf ? __fmul_rn((float)r, inv_freq[d]) : __fmul_rn((float)c, inv_freq[d - nf]);
        float cs = cosf(ang), sn = sinf(ang);
        for (int part = 0; part < 2; part++) {
            bf16 *row = qkv + (size_t)p * 3 * Dv + (size_t)part * Dv + (size_t)h * hd;
            float a = f(row[d]), bb = f(row[d + half]);
            row[d] = b(__fadd_rn(__fmul_rn(a, cs), __fmul_rn(-bb, sn)));
            row[d + half] = b(__fadd_rn(__fmul_rn(bb, cs), __fmul_rn(a, sn)));
        }
    }
}
/* Vectorised: one thread per (patch, head, 8 consecutive d < hd/2): 16-byte loads and stores of the
 * pairs (d..d+7, d+hd/2..d+hd/2+7) of q and k. */
static __global__ void k_vision_rope_vec(bf16 *qkv, const float *inv_freq, int n, int Dv, int H, int hd, int grid_h,
                                         int grid_w, int M) {
    const int half = hd / 2, nf = half / 2, c8 = half / 8;
    const size_t total = (size_t)n * H * c8;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int d0 = (int)(i % c8) * 8, h = (int)((i / c8) % H), p = (int)(i / ((size_t)c8 * H)), r, c;
        patch_rc(p, grid_h, grid_w, M, &r, &c);
        float cs[8], sn[8];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int d = d0 + j;
            float ang = d < nf ? __fmul_rn((float)r, inv_freq[d]) : __fmul_rn((float)c, inv_freq[d - nf]);
            cs[j] = cosf(ang), sn[j] = sinf(ang);
        }
        for (int part = 0; part < 2; part++) {
            bf16 *row = qkv + (size_t)p * 3 * Dv + (size_t)part * Dv + (size_t)h * hd;
            uint4 av = *(const uint4 *)(row + d0), bv = *(const uint4 *)(row + d0 + half), ao, bo;
            const bf16 *ae = (const bf16 *)&av, *be = (const bf16 *)&bv;
            bf16 *aoe = (bf16 *)&ao, *boe = (bf16 *)&bo;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float a = f(ae[j]), bb = f(be[j]);
                aoe[j] = b(__fadd_rn(__fmul_rn(a, cs[j]), __fmul_rn(-bb, sn[j])));
                boe[j] = b(__fadd_rn(__fmul_rn(bb, cs[j]), __fmul_rn(a, sn[j])));
            }
            *(uint4 *)(row + d0) = ao;
            *(uint4 *)(row + d0 + half) = bo;
        }
    }
}
void qvl_k_vision_rope(cudaStream_t st, bf16 *qkv, const float *inv_freq, int n, int Dv, int H, int hd, int grid_h,
                       int grid_w, int M) {
    size_t total = (size_t)n * H * (hd / 2);
    if (!total) return;
    if ((hd / 2) % 8 == 0 && Dv % 8 == 0 && ((uintptr_t)qkv & 15) == 0)
        k_vision_rope_vec<<<blocks_for(total / 8, 256), 256, 0, st>>>(qkv, inv_freq, n, Dv, H, hd, grid_h, grid_w, M);
    else
        k_vision_rope<<<blocks_for(total, 256), 256, 0, st>>>(qkv, inv_freq, n, Dv, H, hd, grid_h, grid_w, M);
}

/* One block per token, one warp per head (q heads, then k heads, then v heads copied). TABLE
 * (next): the token's rounded cos/sin per frequency computed once into shared memory instead of
 * by every head. */
/* M-RoPE frequency fq of a token at positions (pt, ph, pw): its axis (interleaved: T H W T H W ...
 * over the first 3 sec[1] / 3 sec[2] frequencies, else contiguous sections), and the angle's cos
 * and sin rounded to bf16 as the reference's cos/sin tables are. */
static __device__ __forceinline__ void mrope_cos_sin(const qvl_rope_desc &d, int fq, int pt, int ph, int pw,
                                                     const float *inv_freq, float *cs, float *sn) {
    int axis = 0;
    if (d.interleaved) {
        if (fq % 3 == 1 && fq < 3 * d.sec[1]) axis = 1;
        else if (fq % 3 == 2 && fq < 3 * d.sec[2]) axis = 2;
    } else
        axis = fq < d.sec[0] ? 0 : fq < d.sec[0] + d.sec[1] ? 1 : 2;
    const int p = axis == 0 ? pt : axis == 1 ? ph : pw;
    const float ang = __fmul_rn((float)p, inv_freq[fq]);
    *cs = rb(cosf(ang)), *sn = rb(sinf(ang));
}

/* KT: the cache element, bf16 or uint8_t (e4m3, cuda_kv_fp8.cuh: the BF16 value rounded once more as it is stored). */
template <typename KT>
static __global__ void k_qk_norm_rope(qvl_rope_desc d, bf16 *q_out, int q_stride, KT *k_cache, KT *v_cache, const bf16 *qkv,
                                      const bf16 *q_norm, const bf16 *k_norm, const float *inv_freq, int p0,
                                      const int32_t *pos, int pos_stride, int pos_scalar, const int32_t *step,
                                      const int32_t *slots) {
    extern __shared__ float sh[]; /* [warps][hd] */
    if (step) { /* decoding from a CUDA graph: the cache row and position live on the device */
        p0 = step[0];
        pos_scalar = step[0] + step[1];
    }
    const int i = blockIdx.x, hd = d.hd, half = hd / 2, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int nw = blockDim.x >> 5, qdim = d.Hq * hd, kv = d.Hkv * hd;
    const int slot = slots ? slots[i] : p0 + i; /* < 0: a row with no cache row (padding) */
    const bf16 *row = qkv + (size_t)i * (qdim + 2 * kv);
    float *buf = sh + (size_t)w * hd;
    int pt, ph, pw;
    if (pos) {
        pt = pos[i];
        ph = pos[pos_stride + i];
        pw = pos[2 * pos_stride + i];
    } else
        pt = ph = pw = pos_scalar + i;
    __shared__ float tcs[64], tsn[64]; /* half <= 64 (hd <= 128, check_dims) */
    for (int fq = threadIdx.x; fq < half; fq += blockDim.x) mrope_cos_sin(d, fq, pt, ph, pw, inv_freq, &tcs[fq], &tsn[fq]);
    __syncthreads();
    for (int h = w; h < d.Hq + d.Hkv; h += nw) {
        int is_q = h < d.Hq;
        if (!is_q && slot < 0) break; /* the block's rows agree: no warp-level divergence */
        const bf16 *src = is_q ? row + (size_t)h * hd : row + qdim + (size_t)(h - d.Hq) * hd;
        const bf16 *nw_ = is_q ? q_norm : k_norm;
        bf16 *qdst = q_out + (size_t)i * q_stride + (size_t)h * hd;
        KT *kdst = is_q ? k_cache : k_cache + (size_t)slot * kv + (size_t)(h - d.Hq) * hd;
        float s = 0;
        for (int e = lane; e < hd; e += 32) {
            float v = f(src[e]);
            s += v * v;
        }
        for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        float inv = rsqrtf(s / hd + d.eps);
        for (int e = lane; e < hd; e += 32) buf[e] = rb(f(nw_[e]) * rb(f(src[e]) * inv));
        __syncwarp();
        for (int e = lane; e < hd; e += 32) {
            int fq = e % half;
            const float cs = tcs[fq], sn = tsn[fq];
            float rot = e < half ? -buf[e + half] : buf[e - half];
            const bf16 r = b(rb(buf[e] * cs) + rb(rot * sn));
            if constexpr (sizeof(KT) == sizeof(bf16)) (is_q ? qdst : (bf16 *)kdst)[e] = r; /* as before: one store */
            else if (is_q) qdst[e] = r;
            else qvl_kv_store(kdst + e, r);
        }
        __syncwarp();
    }
    if (slot < 0) return;
    const bf16 *vsrc = row + qdim + kv;
    KT *vdst = v_cache + (size_t)slot * kv;
    for (int e = threadIdx.x; e < kv; e += blockDim.x) qvl_kv_store(vdst + e, vsrc[e]);
}
/* A warp per head (up to 32): in decoding this block is alone on the GPU, so per-warp head loops
 * would be pure latency. */
template <typename KT>
static void launch_qk_norm_rope(cudaStream_t st, const qvl_rope_desc *d, bf16 *q_out, int q_stride, KT *k_cache,
                                KT *v_cache, const bf16 *qkv, const bf16 *q_norm, const bf16 *k_norm,
                                const float *inv_freq, int n, int p0, const int32_t *pos, int pos_stride,
                                int pos_scalar, const int32_t *step, const int32_t *slots) {
    if (!n) return;
    int warps = d->Hq + d->Hkv < 32 ? d->Hq + d->Hkv : 32;
    const size_t smem = (size_t)warps * d->hd * sizeof(float);
    k_qk_norm_rope<<<n, warps * 32, smem, st>>>(*d, q_out, q_stride, k_cache, v_cache, qkv, q_norm, k_norm, inv_freq,
                                                p0, pos, pos_stride, pos_scalar, step, slots);
}
void qvl_k_qk_norm_rope(cudaStream_t st, const qvl_rope_desc *d, bf16 *q_out, int q_stride, bf16 *k_cache, bf16 *v_cache,
                        const bf16 *qkv, const bf16 *q_norm, const bf16 *k_norm, const float *inv_freq, int n, int p0,
                        const int32_t *pos, int pos_stride, int pos_scalar, const int32_t *step) {
    launch_qk_norm_rope(st, d, q_out, q_stride, k_cache, v_cache, qkv, q_norm, k_norm, inv_freq, n, p0, pos, pos_stride,
                        pos_scalar, step, (const int32_t *)NULL);
}
void qvl_k_qk_norm_rope_slots(cudaStream_t st, const qvl_rope_desc *d, bf16 *q_out, int q_stride, bf16 *k_cache,
                              bf16 *v_cache, const bf16 *qkv, const bf16 *q_norm, const bf16 *k_norm,
                              const float *inv_freq, int n, const int32_t *pos, int pos_stride, const int32_t *slots) {
    launch_qk_norm_rope(st, d, q_out, q_stride, k_cache, v_cache, qkv, q_norm, k_norm, inv_freq, n, 0, pos, pos_stride, 0,
                        (const int32_t *)NULL, slots);
}
void qvl_k_qk_norm_rope_slots_fp8(cudaStream_t st, const qvl_rope_desc *d, bf16 *q_out, int q_stride, uint8_t *k_cache,
                                  uint8_t *v_cache, const bf16 *qkv, const bf16 *q_norm, const bf16 *k_norm,
                                  const float *inv_freq, int n, const int32_t *pos, int pos_stride, const int32_t *slots) {
    launch_qk_norm_rope(st, d, q_out, q_stride, k_cache, v_cache, qkv, q_norm, k_norm, inv_freq, n, 0, pos, pos_stride, 0,
                        (const int32_t *)NULL, slots);
}

static __global__ void k_embed(bf16 *x, const bf16 *embed, const int32_t *ids, const int32_t *vis_row,
                               const bf16 *img, int D) {
    int i = blockIdx.x;
    int r = vis_row ? vis_row[i] : -1;
    const bf16 *src = r >= 0 ? img + (size_t)r * D : embed + (size_t)ids[i] * D;
    for (int e = threadIdx.x; e < D; e += blockDim.x) x[(size_t)i * D + e] = src[e];
}
void qvl_k_embed(cudaStream_t st, bf16 *x, const bf16 *embed, const int32_t *ids, const int32_t *vis_row,
                 const bf16 *img, int n, int D) {
    if (n) k_embed<<<n, 256, 0, st>>>(x, embed, ids, vis_row, img, D);
}

static __global__ void k_deepstack_add(bf16 *x, const int32_t *vis_row, const bf16 *ds, int D) {
    int i = blockIdx.x, r = vis_row[i];
    if (r < 0) return;
    for (int e = threadIdx.x; e < D; e += blockDim.x)
        x[(size_t)i * D + e] = b(f(x[(size_t)i * D + e]) + f(ds[(size_t)r * D + e]));
}
void qvl_k_deepstack_add(cudaStream_t st, bf16 *x, const int32_t *vis_row, const bf16 *ds, int n, int D) {
    if (n) k_deepstack_add<<<n, 256, 0, st>>>(x, vis_row, ds, D);
}

/* Better = larger value, or equal value and lower id. NaN never wins. */
static __device__ __forceinline__ void better(float v, int id, float *bv, int *bi) {
    if (v > *bv || (v == *bv && id < *bi)) {
        *bv = v;
        *bi = id;
    }
}
static __global__ void k_argmax(int32_t *out, const bf16 *logits, int V) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const bf16 *row = logits + (size_t)blockIdx.x * V;
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < V; i += blockDim.x) better(f(row[i]), i, &bv, &bi);
    for (int o = 16; o; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        better(ov, oi, &bv, &bi);
    }
    int w = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) {
        sv[w] = bv;
        si[w] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++) better(sv[k], si[k], &bv, &bi);
        out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
    }
}
/* One row over many blocks (decoding: one block over 151936 logits took 38 us): each block writes
 * its best (value, id) of a grid-strided share, the last block to finish (atomic counter, reset by
 * that block, so a graph replays it) reduces them in block order with the same rule. The winner is
 * the unique maximum of (value, then lowest id), so the split changes nothing. */
enum { AM_BLOCKS = QVL_SYNC_AM_BLOCKS, AM_THREADS = 256 };
static __device__ __forceinline__ void warp_best(float *bv, int *bi) {
    for (int o = 16; o; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, *bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, *bi, o);
        better(ov, oi, bv, bi);
    }
}
static __global__ void __launch_bounds__(AM_THREADS) k_argmax_multi(int32_t *out, const bf16 *logits, int V, qvl_sync *sync) {
    float *am_val = sync->am_val;
    int *am_id = sync->am_id;
    unsigned *am_count = &sync->am_count;
    __shared__ float sv[AM_THREADS / 32];
    __shared__ int si[AM_THREADS / 32];
    __shared__ bool last;
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = blockIdx.x * AM_THREADS + threadIdx.x; i < V; i += AM_BLOCKS * AM_THREADS) better(f(logits[i]), i, &bv, &bi);
    warp_best(&bv, &bi);
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) sv[w] = bv, si[w] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < AM_THREADS / 32; k++) better(sv[k], si[k], &bv, &bi);
        am_val[blockIdx.x] = bv, am_id[blockIdx.x] = bi;
        __threadfence();
        last = atomicAdd(am_count, 1u) == AM_BLOCKS - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    bv = -INFINITY, bi = 0x7fffffff;
    for (int k = threadIdx.x; k < AM_BLOCKS; k += AM_THREADS) better(__ldcg(&am_val[k]), __ldcg(&am_id[k]), &bv, &bi);
    warp_best(&bv, &bi);
    __syncthreads();
    if (lane == 0) sv[w] = bv, si[w] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < AM_THREADS / 32; k++) better(sv[k], si[k], &bv, &bi);
        out[0] = bi == 0x7fffffff ? 0 : bi;
        *am_count = 0;
    }
}
void qvl_k_argmax(cudaStream_t st, int32_t *out, const bf16 *logits, int rows, int V, qvl_sync *sync) {
    if (rows == 1 && sync) /* the many-block kernel: bench/results/2026-11-26-cuda-backend-h100 (decode 13.41 -> 13.21 ms) */
        k_argmax_multi<<<AM_BLOCKS, AM_THREADS, 0, st>>>(out, logits, V, sync);
    else if (rows)
        k_argmax<<<rows, 1024, 0, st>>>(out, logits, V);
}

static __global__ void k_step_advance(int32_t *step) { step[0] += 1; }
void qvl_k_step_advance(cudaStream_t st, int32_t *step) { k_step_advance<<<1, 1, 0, st>>>(step); }
