/* Prefill/vision attention microbenchmark and correctness check: each qvl_attention kernel
 * (the mma.sync FA2 kernel and the sm_90a wgmma configurations) on random Q/K/V at the shapes of
 * the vision tower (head 64: 2B/4B, head 72: 8B; bidirectional) and of causal text prefill (head
 * 128, GQA 16/8), against a plain F32 reference kernel on a sample of query rows; timed with CUDA
 * events (median), TFLOP/s printed. Build (after `make BUILD=build-att`):
 *   nvcc -O2 -std=c++17 -Isrc -Iinclude -DQVL_SM90A=1 -gencode arch=compute_80,code=sm_80 \
 *     -gencode arch=compute_90a,code=sm_90a bench/bench_attention.cu \
 *     build-att/src/backend/cuda/cuda_attention.o build-att/src/backend/cuda/cuda_attention_sm90.o -o bench_attention
 * Usage: bench_attention [max_seq] (cases with more rows are skipped). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backend/cuda/cuda_attention_sm90.h"
#include "backend/cuda/cuda_ops.h"

#define CK(x)                                                                                    \
    do {                                                                                         \
        cudaError_t e_ = (x);                                                                    \
        if (e_ != cudaSuccess) {                                                                 \
            fprintf(stderr, "bench_attention: %s: %s (line %d)\n", #x, cudaGetErrorString(e_), __LINE__); \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

static __global__ void k_fill(bf16 *x, size_t n, uint32_t seed, float amp) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        x[i] = __float2bfloat16(amp * ((float)(h & 0xFFFFFF) / 8388608.0f - 1.0f));
    }
}

static __global__ void k_poison(bf16 *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = __ushort_as_bfloat16(0xFFFF); /* NaN */
}

/* One block per (sampled token, query head): scores in F32, two passes, exact softmax. */
static __global__ void k_ref(float *ref, const int *tok, const bf16 *q, int q_stride, const bf16 *k, const bf16 *v,
                             int kv_stride, int n_kv, int Hq, int Hkv, int hd, int causal_pos0) {
    __shared__ float qs[128], red[128], p[128];
    const int i = tok[blockIdx.x], h = blockIdx.y, g = h / (Hq / Hkv), t = threadIdx.x;
    const int lim = causal_pos0 < 0 ? n_kv : min(n_kv, causal_pos0 + i + 1);
    const float scale = 1.0f / sqrtf((float)hd);
    if (t < hd) qs[t] = __bfloat162float(q[(size_t)i * q_stride + (size_t)h * hd + t]);
    __syncthreads();
    float mx = -INFINITY;
    for (int j = t; j < lim; j += 128) {
        float d = 0;
        for (int e = 0; e < hd; e++) d += qs[e] * __bfloat162float(k[(size_t)j * kv_stride + (size_t)g * hd + e]);
        mx = fmaxf(mx, d * scale);
    }
    red[t] = mx;
    __syncthreads();
    for (int s = 64; s; s >>= 1) {
        if (t < s) red[t] = fmaxf(red[t], red[t + s]);
        __syncthreads();
    }
    mx = red[0];
    __syncthreads();
    float acc = 0, den = 0;
    for (int j0 = 0; j0 < lim; j0 += 128) {
        int j = j0 + t;
        float pj = 0;
        if (j < lim) {
            float d = 0;
            for (int e = 0; e < hd; e++) d += qs[e] * __bfloat162float(k[(size_t)j * kv_stride + (size_t)g * hd + e]);
            pj = expf(d * scale - mx);
        }
        p[t] = pj;
        __syncthreads();
        int n = min(128, lim - j0);
        for (int jj = 0; jj < n; jj++) {
            den += p[jj];
            if (t < hd) acc += p[jj] * __bfloat162float(v[(size_t)(j0 + jj) * kv_stride + (size_t)g * hd + t]);
        }
        __syncthreads();
    }
    if (t < hd) ref[((size_t)blockIdx.x * Hq + h) * hd + t] = acc / den;
}

static const char *impl_name(int impl) {
    static const char *names[] = {"FA2", "WG0", "WG1", "WG2", "WG3", "WG4", "WG5", "WG6", "WG7", "WG8"};
    return impl == QVL_ATT_AUTO ? "AUTO" : impl >= 0 && impl < 10 ? names[impl] : "?";
}

struct Case {
    const char *name;
    int n, Hq, Hkv, hd, causal;
};

int main(int argc, char **argv) {
    long max_seq = argc > 1 ? atol(argv[1]) : 1L << 30;
    const Case cases[] = {
        {"vision-2B", 312, 16, 16, 64, 0},     {"vision-2B", 2880, 16, 16, 64, 0},
        {"vision-2B", 12000, 16, 16, 64, 0},   {"vision-2B", 48764, 16, 16, 64, 0},
        {"vision-8B", 2880, 16, 16, 72, 0},    {"vision-8B", 12000, 16, 16, 72, 0},
        {"prefill-2B", 400, 16, 8, 128, 1},    {"prefill-2B", 3000, 16, 8, 128, 1},
        {"prefill-2B", 12191, 16, 8, 128, 1},
    };
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device %s (cc %d.%d, %d SMs); wgmma kernel available: %d\n", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount, qvl_attention_sm90_available());
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    char line[4096];
    std::vector<std::string> lines;
    int fails = 0;
    uint32_t seed = 12345;
    for (const Case &c : cases) {
        if (c.n > max_seq) continue;
        const int qdim = c.Hq * c.hd, kvdim = c.Hkv * c.hd, stride = qdim + 2 * kvdim;
        const size_t n_el = (size_t)c.n * stride;
        bf16 *qkv, *out;
        CK(cudaMalloc(&qkv, n_el * sizeof(bf16)));
        CK(cudaMalloc(&out, (size_t)c.n * qdim * sizeof(bf16)));
        k_fill<<<1024, 256, 0, st>>>(qkv, n_el, seed += 7919, 1.5f);
        CK(cudaGetLastError());
        const bf16 *q = qkv, *k = qkv + qdim, *v = qkv + qdim + kvdim;
        const int causal_pos0 = c.causal ? 0 : -1;
        /* Sampled tokens: spread over the sequence, always the first and last. */
        const int n_s = std::min(c.n, 256);
        std::vector<int> tok(n_s);
        for (int i = 0; i < n_s; i++) tok[i] = (int)((long)i * (c.n - 1) / std::max(1, n_s - 1));
        int *d_tok;
        float *d_ref;
        CK(cudaMalloc(&d_tok, n_s * sizeof(int)));
        CK(cudaMalloc(&d_ref, (size_t)n_s * qdim * sizeof(float)));
        CK(cudaMemcpy(d_tok, tok.data(), n_s * sizeof(int), cudaMemcpyHostToDevice));
        k_ref<<<dim3(n_s, c.Hq), 128, 0, st>>>(d_ref, d_tok, q, stride, k, v, stride, c.n, c.Hq, c.Hkv, c.hd, causal_pos0);
        CK(cudaGetLastError());
        std::vector<float> ref((size_t)n_s * qdim);
        CK(cudaMemcpyAsync(ref.data(), d_ref, ref.size() * sizeof(float), cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        const double keys = c.causal ? (double)c.n * (c.n + 1) / 2 : (double)c.n * c.n;
        const double flops = 4.0 * keys * c.hd * c.Hq;
        std::vector<bf16> h_out((size_t)c.n * qdim), h_first;
        const int impls[] = {QVL_ATT_FA2,    QVL_ATT_AUTO,   QVL_ATT_WG + 0, QVL_ATT_WG + 1,
                             QVL_ATT_WG + 2, QVL_ATT_WG + 3, QVL_ATT_WG + 4, QVL_ATT_WG + 5,
                             QVL_ATT_WG + 6, QVL_ATT_WG + 7, QVL_ATT_WG + 8};
        double t_fa2 = 0;
        for (int impl : impls) {
            if (impl >= QVL_ATT_WG) {
                /* Skip configurations this head size does not have (the launcher returns -1). */
                if (qvl_attention_sm90(st, out, qdim, q, stride, k, v, stride, c.n, c.n, c.Hq / c.Hkv, c.Hkv, c.hd,
                                       causal_pos0, 1.4426950408889634f / sqrtf((float)c.hd), impl - QVL_ATT_WG) != 0)
                    continue;
            }
            k_poison<<<1024, 256, 0, st>>>(out, (size_t)c.n * qdim);
            qvl_attention(st, out, qdim, q, stride, k, v, stride, c.n, c.n, c.Hq, c.Hkv, c.hd, causal_pos0, NULL, impl);
            CK(cudaGetLastError());
            CK(cudaMemcpyAsync(h_out.data(), out, h_out.size() * sizeof(bf16), cudaMemcpyDeviceToHost, st));
            CK(cudaStreamSynchronize(st));
            size_t nan = 0;
            for (size_t i = 0; i < h_out.size(); i++) nan += isnan(__bfloat162float(h_out[i]));
            double num = 0, den = 0, maxd = 0;
            for (int s = 0; s < n_s; s++)
                for (int e = 0; e < qdim; e++) {
                    double a = __bfloat162float(h_out[(size_t)tok[s] * qdim + e]), b = ref[(size_t)s * qdim + e];
                    num += (a - b) * (a - b), den += b * b, maxd = std::max(maxd, fabs(a - b));
                }
            double rel = sqrt(num / den);
            double vs_first = 0; /* whole-output rel. L2 against the FA2 kernel's output */
            if (impl == QVL_ATT_FA2) h_first = h_out;
            else {
                double nn = 0, dd = 0;
                for (size_t i = 0; i < h_out.size(); i++) {
                    double a = __bfloat162float(h_out[i]), b = __bfloat162float(h_first[i]);
                    nn += (a - b) * (a - b), dd += b * b;
                }
                vs_first = sqrt(nn / dd);
            }
            /* Timing: warm-up, then enough repetitions for ~150 ms, median. */
            for (int w = 0; w < 2; w++)
                qvl_attention(st, out, qdim, q, stride, k, v, stride, c.n, c.n, c.Hq, c.Hkv, c.hd, causal_pos0, NULL, impl);
            CK(cudaEventRecord(e0, st));
            qvl_attention(st, out, qdim, q, stride, k, v, stride, c.n, c.n, c.Hq, c.Hkv, c.hd, causal_pos0, NULL, impl);
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms1;
            CK(cudaEventElapsedTime(&ms1, e0, e1));
            int reps = std::max(5, std::min(200, (int)(150.0 / std::max(ms1, 0.001f))));
            std::vector<float> ts(reps);
            for (int r = 0; r < reps; r++) {
                CK(cudaEventRecord(e0, st));
                qvl_attention(st, out, qdim, q, stride, k, v, stride, c.n, c.n, c.Hq, c.Hkv, c.hd, causal_pos0, NULL, impl);
                CK(cudaEventRecord(e1, st));
                CK(cudaEventSynchronize(e1));
                CK(cudaEventElapsedTime(&ts[r], e0, e1));
            }
            CK(cudaGetLastError());
            std::sort(ts.begin(), ts.end());
            double ms = ts[reps / 2];
            if (impl == QVL_ATT_FA2) t_fa2 = ms;
            int ok = nan == 0 && rel < 1e-2;
            fails += !ok;
            snprintf(line, sizeof line,
                     "%-10s n=%6d hd=%3d %-7s impl=%-4s  %9.3f ms  %6.1f TFLOP/s  x%.2f vs FA2 | relL2 vs F32 ref %.2e "
                     "max %.1e vs FA2 %.1e unwritten %zu %s",
                     c.name, c.n, c.hd, c.causal ? "causal" : "full", impl_name(impl),
                     ms, flops / ms / 1e9, t_fa2 / ms, rel, maxd, vs_first, nan, ok ? "OK" : "FAIL");
            printf("%s\n", line);
            fflush(stdout);
            lines.push_back(line);
        }
        CK(cudaFree(qkv));
        CK(cudaFree(out));
        CK(cudaFree(d_tok));
        CK(cudaFree(d_ref));
    }
    printf("\n== summary (%d failures) ==\n", fails);
    for (auto &l : lines) printf("%s\n", l.c_str());
    return fails ? 1 : 0;
}
