/* Next-token picking on the device with engine/sampler.c's semantics (read that first): the
 * penalties, temperature, top-k (ties with the k-th value kept), the order (logit desc, id asc),
 * double probabilities exp(l - max) / sum, top-p and the draw u * mass walked in that order.
 *
 * One block of PK_THREADS threads. Pass 0 writes the processed logits to work[] and finds the
 * argmax (greedy ends there). Sampling orders candidates by a unique 64-bit key (orderable float
 * bits << 32 | ~id), so "larger key" is exactly the CPU's sort order. The candidates are visited
 * in chunks of PK_CHUNK keys: a radix select finds the chunk's lowest key below the previous
 * chunk, a gather and a bitonic sort in shared memory order it, and thread 0 runs the CPU's
 * sequential double sums over it. With top-k small (Qwen3-VL: 20) there is one chunk and every sum
 * is done in the CPU's order. Beyond one chunk of candidates the normalizer (and, without top-p,
 * the mass) is a parallel reduction: equal to the CPU's sequential sum up to rounding (~1e-16
 * relative), as exp() itself may differ from glibc's in the last bit.
 *
 * Cost on an H100, V = 151936 (tests/gpu/test_gpu_sample.c): 146 us a pick at top-k 20 / top-p 0.8,
 * 32 us for greedy with a penalty (pass 0 alone), ~1.2 ms with top-k off (normalizer pass, the
 * radix select of chunk 0); flat distributions with top-k off walk many chunks (tens of ms). One
 * block's scan over V costs ~30 us; a histogram pass costs far more, most likely the
 * __match_any_sync per element (not measured separately). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_sample.h"
extern "C" {
#include "model/mem_plan.h"
#include "util/error.h"
}

static_assert(sizeof(qvl_pick_state) <= QVL_PLAN_PICK_STATE, "the memory plan reserves QVL_PLAN_PICK_STATE bytes");

/* PK_UNROLL loads in flight per thread in the scans over work[] (one block is latency bound). */
enum { PK_THREADS = 1024, PK_CHUNK = 2048, PK_WARPS = PK_THREADS / 32, PK_HCOPIES = 8, PK_UNROLL = 4 };

/* Float bits made unsigned-orderable; +0 and -0 compare equal on the CPU, so both map to +0. */
static __device__ __forceinline__ uint32_t ord_bits(float l) {
    if (l == 0.0f) l = 0.0f;
    uint32_t u = __float_as_uint(l);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
static __device__ __forceinline__ float ord_value(uint32_t o) {
    return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}
static __device__ __forceinline__ uint64_t make_key(float l, int i) {
    return ((uint64_t)ord_bits(l) << 32) | (0xffffffffu - (uint32_t)i);
}
static __device__ __forceinline__ int key_id(uint64_t k) { return (int)(0xffffffffu - (uint32_t)k); }
static __device__ __forceinline__ double key_value(uint64_t k) { return (double)ord_value((uint32_t)(k >> 32)); }

struct pick_shared {
    uint64_t keys[PK_CHUNK];   /* the current chunk, sorted by decreasing key */
    double prob[PK_CHUNK];     /* its probabilities, exp(l - max) / sum */
    unsigned hist[256];
    unsigned hcopy[PK_HCOPIES][256];   /* per group of warps: few warps contend for one bin */
    float rv[PK_WARPS];
    int ri[PK_WARPS];
    double rd[PK_WARPS];
    uint64_t prefix, bound;    /* radix select: digits chosen so far; chunk: keys below bound */
    unsigned need, tie, slot;
    int pos, cnt, more, keep, id;
    double sum, mass;
};

/* Keys of work[] that are candidates (ov >= T) below bound. */
static __device__ __forceinline__ bool eligible(uint64_t k, uint32_t T, uint64_t bound) {
    return (uint32_t)(k >> 32) >= T && k < bound;
}

/* Histogram of digit (key >> shift) & 255 over eligible keys whose higher digits equal prefix's. */
static __device__ void hist_pass(pick_shared &sh, const float *work, int V, uint32_t T, uint64_t bound, int shift) {
    for (int d = threadIdx.x; d < PK_HCOPIES * 256; d += PK_THREADS) (&sh.hcopy[0][0])[d] = 0;
    __syncthreads();
    unsigned *hist = sh.hcopy[(threadIdx.x >> 5) % PK_HCOPIES];
    const uint64_t prefix = sh.prefix;
    const unsigned lane = threadIdx.x & 31;
    for (int base = 0; base < V; base += PK_UNROLL * PK_THREADS) {
        float v[PK_UNROLL];
#pragma unroll
        for (int u = 0; u < PK_UNROLL; u++) {
            int i = base + u * PK_THREADS + threadIdx.x;
            v[u] = i < V ? work[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < PK_UNROLL; u++) {
            int i = base + u * PK_THREADS + threadIdx.x;
            unsigned d = 256 + lane;   /* distinct non-digits for lanes that count nothing */
            if (i < V) {
                uint64_t k = make_key(v[u], i);
                if (eligible(k, T, bound) && (shift == 56 || (k >> (shift + 8)) == (prefix >> (shift + 8))))
                    d = (unsigned)(k >> shift) & 255u;
            }
            unsigned peers = __match_any_sync(0xffffffffu, d);
            if (d < 256 && lane == (unsigned)__ffs(peers) - 1) atomicAdd(&hist[d], (unsigned)__popc(peers));
        }
    }
    __syncthreads();
    for (int d = threadIdx.x; d < 256; d += PK_THREADS) {
        unsigned c = 0;
        for (int k = 0; k < PK_HCOPIES; k++) c += sh.hcopy[k][d];
        sh.hist[d] = c;
    }
    __syncthreads();
}

/* Thread 0: the digit holding the need-th largest eligible key. */
static __device__ void choose_digit(pick_shared &sh, int shift) {
    unsigned need = sh.need;
    int d = 255;
    while (d > 0 && sh.hist[d] < need) need -= sh.hist[d--];
    sh.prefix |= (uint64_t)d << shift;
    sh.need = need;
    sh.tie = sh.hist[d];
}

/* Radix select over the eligible keys for the need-th largest one, 8 bits a pass from the top
 * down to stop_shift. Leaves sh.prefix (digits chosen, zeros below), sh.need (its rank within the
 * last bucket) and sh.tie (that bucket's size). early: stop once the bucket is needed whole; then
 * {eligible keys >= sh.prefix} is exactly the need largest. */
static __device__ void radix_select(pick_shared &sh, const float *work, int V, uint32_t T, uint64_t bound, unsigned need,
                                    int stop_shift, bool early) {
    if (threadIdx.x == 0) sh.prefix = 0, sh.need = need;
    __syncthreads();
    for (int shift = 56; shift >= stop_shift; shift -= 8) {
        hist_pass(sh, work, V, T, bound, shift);
        if (threadIdx.x == 0) choose_digit(sh, shift);
        __syncthreads();
        if (early && sh.tie == sh.need) break;
    }
}

/* The next chunk of candidates (keys below sh.bound, positions sh.pos..) into sh.keys sorted
 * decreasing, sh.cnt of them, and their probabilities (sum: the normalizer, known when the
 * candidates span more than one chunk). */
static __device__ void gather_sort(pick_shared &sh, const float *work, int V, uint32_t T, uint64_t bound, uint64_t low,
                                   int cnt);
static __device__ void chunk_probs(pick_shared &sh, int cnt, double mx, bool have_sum) {
    for (int j = threadIdx.x; j < cnt; j += PK_THREADS) {
        double e = exp(key_value(sh.keys[j]) - mx);
        sh.prob[j] = have_sum ? e / sh.sum : e;
    }
    if (threadIdx.x == 0) sh.cnt = cnt;
    __syncthreads();
}
static __device__ void fetch_chunk(pick_shared &sh, const float *work, int V, uint32_t T, int n_cand, double mx,
                                   bool have_sum) {
    const uint64_t bound = sh.bound;
    const int remaining = n_cand - sh.pos;
    uint64_t low = 0;
    int cnt = remaining;
    if (remaining > PK_CHUNK) {
        radix_select(sh, work, V, T, bound, PK_CHUNK, 0, true);
        low = sh.prefix;
        cnt = PK_CHUNK;
    }
    gather_sort(sh, work, V, T, bound, low, cnt);
    chunk_probs(sh, cnt, mx, have_sum);
}

/* The cnt eligible keys >= low (below bound) into sh.keys, sorted decreasing. */
static __device__ void gather_sort(pick_shared &sh, const float *work, int V, uint32_t T, uint64_t bound, uint64_t low,
                                   int cnt) {
    if (threadIdx.x == 0) sh.slot = 0;
    __syncthreads();
    const unsigned lane = threadIdx.x & 31;
    for (int base = 0; base < V; base += PK_UNROLL * PK_THREADS) {
        float v[PK_UNROLL];
#pragma unroll
        for (int u = 0; u < PK_UNROLL; u++) {
            int i = base + u * PK_THREADS + threadIdx.x;
            v[u] = i < V ? work[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < PK_UNROLL; u++) {
            int i = base + u * PK_THREADS + threadIdx.x;
            bool take = false;
            uint64_t k = 0;
            if (i < V) {
                k = make_key(v[u], i);
                take = eligible(k, T, bound) && k >= low;
            }
            unsigned m = __ballot_sync(0xffffffffu, take);
            if (!m) continue;
            unsigned first = 0;
            if (lane == (unsigned)__ffs(m) - 1) first = atomicAdd(&sh.slot, (unsigned)__popc(m));
            first = __shfl_sync(0xffffffffu, first, __ffs(m) - 1);
            if (take) {
                unsigned slot = first + __popc(m & ((1u << lane) - 1));
                if (slot < PK_CHUNK) sh.keys[slot] = k;
            }
        }
    }
    __syncthreads();
    int P = 1;
    while (P < cnt) P <<= 1;
    for (int j = cnt + threadIdx.x; j < P; j += PK_THREADS) sh.keys[j] = 0;
    __syncthreads();
    /* bitonic sort, decreasing */
    for (int k = 2; k <= P; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int t = threadIdx.x; t < P / 2; t += PK_THREADS) {
                int a = 2 * j * (t / j) + (t % j), b = a + j;
                uint64_t x = sh.keys[a], y = sh.keys[b];
                bool desc = (a & k) == 0;
                if (desc ? x < y : x > y) sh.keys[a] = y, sh.keys[b] = x;
            }
            __syncthreads();
        }
}

/* Top-k's threshold: T = the k-th largest value's orderable bits, n = the candidates (values >= it,
 * ties included). Radix passes over the values; as soon as the keys at or above the current bucket
 * fit one chunk they are gathered and sorted, and then they are chunk 0 already (returns true,
 * sh.keys holds them). */
static __device__ bool top_k_select(pick_shared &sh, const float *work, int V, int k, int gather_early, uint32_t *T,
                                    int *n) {
    if (threadIdx.x == 0) sh.prefix = 0, sh.need = (unsigned)k;
    __syncthreads();
    for (int shift = 56; shift >= 32; shift -= 8) {
        hist_pass(sh, work, V, 0, ~0ull, shift);
        if (threadIdx.x == 0) choose_digit(sh, shift);
        __syncthreads();
        const unsigned at_or_above = (unsigned)k - sh.need + sh.tie;   /* keys >= sh.prefix */
        if (gather_early && at_or_above <= PK_CHUNK) {
            gather_sort(sh, work, V, 0, ~0ull, sh.prefix, (int)at_or_above);
            if (threadIdx.x == 0) {
                uint32_t t = (uint32_t)(sh.keys[k - 1] >> 32);
                int c = k;
                while (c < (int)at_or_above && (uint32_t)(sh.keys[c] >> 32) == t) c++;
                sh.need = t, sh.tie = (unsigned)c;
            }
            __syncthreads();
            *T = sh.need, *n = (int)sh.tie;
            __syncthreads();
            return true;
        }
    }
    *T = (uint32_t)(sh.prefix >> 32);
    *n = k - (int)sh.need + (int)sh.tie;
    return false;
}

/* Sum over candidates of exp(l - mx) (div: divided by sh.sum each), in a fixed parallel order. */
static __device__ double reduce_exp(pick_shared &sh, const float *work, int V, uint32_t T, double mx, bool div) {
    double s = 0;
    for (int i = threadIdx.x; i < V; i += PK_THREADS) {
        float l = work[i];
        if (ord_bits(l) >= T) {
            double e = exp((double)l - mx);
            s += div ? e / sh.sum : e;
        }
    }
    for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh.rd[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < PK_WARPS; w++) t += sh.rd[w];
        sh.rd[0] = t;
    }
    __syncthreads();
    double r = sh.rd[0];
    __syncthreads();
    return r;
}

static __device__ __forceinline__ void better(float v, int id, float *bv, int *bi) {
    if (v > *bv || (v == *bv && id < *bi)) *bv = v, *bi = id;
}

static __global__ void __launch_bounds__(PK_THREADS)
    k_pick(int32_t *out, const bf16 *__restrict__ logits, int V, qvl_pick_state *state, uint8_t *__restrict__ flags,
           float *__restrict__ work, const double *uniforms, int mark_out, int gather_early) {
    __shared__ pick_shared sh;
    const qvl_cuda_pick_params P = state->p;
    const bool sampling = P.do_sample && P.temperature > 0;
    if (mark_out && threadIdx.x == 0) {
        int g = *out;
        if (g >= 0 && g < V) flags[g] |= 3;
    }
    __syncthreads();

    /* Pass 0: bf16 logits -> penalties -> temperature, in float as the CPU (no contraction). */
    const float rp = P.repetition_penalty, pp = P.presence_penalty, t = P.temperature;
    float bv = -INFINITY;
    int bi = 0x7fffffff;
#pragma unroll 4
    for (int i = threadIdx.x; i < V; i += PK_THREADS) {
        float l = __bfloat162float(logits[i]);
        uint8_t f = flags[i];
        if (rp != 1.0f && (f & 1)) l = l > 0 ? __fdiv_rn(l, rp) : __fmul_rn(l, rp);
        if (pp != 0.0f && (f & 2)) l = __fsub_rn(l, pp);
        if (sampling && t != 1.0f) l = __fdiv_rn(l, t);
        work[i] = l;
        better(l, i, &bv, &bi);
    }
    for (int o = 16; o; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        better(ov, oi, &bv, &bi);
    }
    if ((threadIdx.x & 31) == 0) sh.rv[threadIdx.x >> 5] = bv, sh.ri[threadIdx.x >> 5] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < PK_WARPS; w++) better(sh.rv[w], sh.ri[w], &bv, &bi);
        sh.id = bi == 0x7fffffff ? 0 : bi;
        sh.rv[0] = bv;
    }
    __syncthreads();
    if (!sampling) {
        if (threadIdx.x == 0) *out = sh.id;
        return;
    }
    const double mx = (double)sh.rv[0];

    /* Candidates: all, or those >= the k-th largest value. */
    uint32_t T = 0;
    int n_cand = V;
    bool sorted0 = false;   /* chunk 0 already in sh.keys */
    if (P.top_k > 0 && P.top_k < V) sorted0 = top_k_select(sh, work, V, P.top_k, gather_early, &T, &n_cand);
    const bool many = n_cand > PK_CHUNK;
    if (many) {
        double s = reduce_exp(sh, work, V, T, mx, false);
        if (threadIdx.x == 0) sh.sum = s;
        __syncthreads();
    }

    /* Chunk 0; with one chunk the normalizer is the CPU's sequential sum. */
    if (threadIdx.x == 0) sh.bound = ~0ull, sh.pos = 0;
    __syncthreads();
    if (sorted0)
        chunk_probs(sh, n_cand, mx, many);
    else
        fetch_chunk(sh, work, V, T, n_cand, mx, many);
    if (!many) {
        if (threadIdx.x == 0) {
            double s = 0;
            for (int j = 0; j < sh.cnt; j++) s += sh.prob[j];
            sh.sum = s;
        }
        __syncthreads();
        for (int j = threadIdx.x; j < sh.cnt; j += PK_THREADS) sh.prob[j] /= sh.sum;
        __syncthreads();
    }

    /* Top-p: keep while nothing is kept or the mass above is below top_p; mass = what is kept. */
    bool refetch = false;
    if (P.top_p < 1.0f) {
        double above = 0;
        int keep = 0;
        for (;;) {
            if (threadIdx.x == 0) {
                int j = 0, done = 0;
                for (; j < sh.cnt; j++) {
                    if (keep == 0 || above < (double)P.top_p) above += sh.prob[j], keep++;
                    else { done = 1; break; }
                }
                sh.more = !done && sh.pos + sh.cnt < n_cand;
                if (sh.more) sh.bound = sh.keys[sh.cnt - 1], sh.pos += sh.cnt;
                sh.keep = keep, sh.mass = above;
            }
            __syncthreads();
            if (!sh.more) break;
            refetch = true;
            fetch_chunk(sh, work, V, T, n_cand, mx, true);
        }
    } else {
        if (threadIdx.x == 0) sh.keep = n_cand;
        if (many) {
            double s = reduce_exp(sh, work, V, T, mx, true);
            if (threadIdx.x == 0) sh.mass = s;
        } else if (threadIdx.x == 0) {
            double s = 0;
            for (int j = 0; j < sh.cnt; j++) s += sh.prob[j];
            sh.mass = s;
        }
        __syncthreads();
    }

    /* The draw: u * mass walked from the top; rounding past the end takes the last kept. */
    __syncthreads();   /* every thread has read sh.more above before thread 0 rewrites it */
    if (refetch) {
        if (threadIdx.x == 0) sh.bound = ~0ull, sh.pos = 0;
        __syncthreads();
        fetch_chunk(sh, work, V, T, n_cand, mx, true);
    }
    const int n_uni = state->n_uniforms, c = state->counter;
    const double u = (n_uni > 0 ? uniforms[c < n_uni ? c : n_uni - 1] : 0.5) * sh.mass;
    double acc = 0;
    for (;;) {
        if (threadIdx.x == 0) {
            int found = 0;
            for (int j = 0; j < sh.cnt && sh.pos + j < sh.keep; j++) {
                acc += sh.prob[j];
                sh.id = key_id(sh.keys[j]);
                if (u < acc) { found = 1; break; }
            }
            sh.more = !found && sh.pos + sh.cnt < sh.keep;
            if (sh.more) sh.bound = sh.keys[sh.cnt - 1], sh.pos += sh.cnt;
        }
        __syncthreads();
        if (!sh.more) break;
        fetch_chunk(sh, work, V, T, n_cand, mx, true);
    }
    if (threadIdx.x == 0) {
        *out = sh.id;
        state->counter = c + 1;
    }
}

static __global__ void k_mark_prompt(uint8_t *flags, int V, const int32_t *ids, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        int id = ids[i];
        if (id >= 0 && id < V) flags[id] = 1;   /* benign race: every writer stores the same byte */
    }
}

void qvl_k_pick_prompt(cudaStream_t st, uint8_t *flags, int V, const int32_t *ids, int n) {
    cudaMemsetAsync(flags, 0, (size_t)V, st);
    if (n > 0) k_mark_prompt<<<(n + 255) / 256 < 64 ? (n + 255) / 256 : 64, 256, 0, st>>>(flags, V, ids, n);
}

void qvl_k_pick(cudaStream_t st, int32_t *out, const bf16 *logits, int V, qvl_pick_state *state, uint8_t *flags,
                float *work, const double *uniforms, int mark_out) {
    /* QVL_PICK_GATHER_EARLY=0: top-k's threshold by all four radix passes (for comparisons) */
    static int early = -1;
    if (early < 0) {
        const char *e = getenv("QVL_PICK_GATHER_EARLY");
        early = !(e && e[0] == '0');
    }
    k_pick<<<1, PK_THREADS, 0, st>>>(out, logits, V, state, flags, work, uniforms, mark_out, early);
}

/* ---- the test hook (cuda_sample.h) ---- */
struct qvl_cuda_picker {
    int vocab, max_uniforms, max_prompt, picked;
    cudaStream_t st;
    bf16 *logits;
    uint16_t *h_logits;
    qvl_pick_state *state;
    uint8_t *flags;
    float *work;
    double *uniforms;
    int32_t *ids, *out;
};

#define PCK(call)                                                                                       \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess) return qvl_errorf("cuda: %s (%s:%d)", cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

static uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

extern "C" qvl_cuda_picker *qvl_cuda_picker_new(int vocab, int max_uniforms) {
    if (vocab <= 0 || max_uniforms <= 0) {
        qvl_errorf("picker: bad sizes");
        return NULL;
    }
    qvl_cuda_picker *p = (qvl_cuda_picker *)calloc(1, sizeof *p);
    if (!p) return NULL;
    p->vocab = vocab, p->max_uniforms = max_uniforms, p->max_prompt = vocab > 4096 ? vocab : 4096;
    p->h_logits = (uint16_t *)malloc((size_t)vocab * 2);
    bool ok = p->h_logits && cudaStreamCreate(&p->st) == cudaSuccess &&
              cudaMalloc((void **)&p->logits, (size_t)vocab * 2) == cudaSuccess &&
              cudaMalloc((void **)&p->state, sizeof *p->state) == cudaSuccess &&
              cudaMalloc((void **)&p->flags, (size_t)vocab) == cudaSuccess &&
              cudaMalloc((void **)&p->work, (size_t)vocab * 4) == cudaSuccess &&
              cudaMalloc((void **)&p->uniforms, (size_t)max_uniforms * 8) == cudaSuccess &&
              cudaMalloc((void **)&p->ids, (size_t)p->max_prompt * 4) == cudaSuccess &&
              cudaMalloc((void **)&p->out, 4) == cudaSuccess;
    if (!ok) {
        qvl_errorf("picker: cannot allocate device buffers");
        qvl_cuda_picker_free(p);
        return NULL;
    }
    return p;
}

extern "C" void qvl_cuda_picker_free(qvl_cuda_picker *p) {
    if (!p) return;
    cudaFree(p->logits), cudaFree(p->state), cudaFree(p->flags), cudaFree(p->work), cudaFree(p->uniforms);
    cudaFree(p->ids), cudaFree(p->out);
    if (p->st) cudaStreamDestroy(p->st);
    free(p->h_logits);
    free(p);
}

extern "C" int qvl_cuda_picker_reset(qvl_cuda_picker *p, const qvl_cuda_pick_params *pp, const int32_t *prompt,
                                     int n_prompt, const double *uniforms, int n_uniforms) {
    if (n_uniforms > p->max_uniforms || n_prompt > p->max_prompt) return qvl_errorf("picker: too many uniforms or prompt ids");
    qvl_pick_state s = {*pp, n_uniforms, 0};
    PCK(cudaMemcpy(p->state, &s, sizeof s, cudaMemcpyHostToDevice));
    if (n_uniforms > 0) PCK(cudaMemcpy(p->uniforms, uniforms, (size_t)n_uniforms * 8, cudaMemcpyHostToDevice));
    if (n_prompt > 0) PCK(cudaMemcpy(p->ids, prompt, (size_t)n_prompt * 4, cudaMemcpyHostToDevice));
    qvl_k_pick_prompt(p->st, p->flags, p->vocab, p->ids, n_prompt);
    PCK(cudaStreamSynchronize(p->st));
    p->picked = 0;
    return 0;
}

static int upload(qvl_cuda_picker *p, const float *logits) {
    for (int i = 0; i < p->vocab; i++) p->h_logits[i] = to_bf16(logits[i]);
    PCK(cudaMemcpyAsync(p->logits, p->h_logits, (size_t)p->vocab * 2, cudaMemcpyHostToDevice, p->st));
    return 0;
}

extern "C" int qvl_cuda_picker_pick(qvl_cuda_picker *p, const float *logits) {
    if (upload(p, logits)) return -1;
    qvl_k_pick(p->st, p->out, p->logits, p->vocab, p->state, p->flags, p->work, p->uniforms, p->picked);
    int32_t id = -1;
    PCK(cudaMemcpyAsync(&id, p->out, 4, cudaMemcpyDeviceToHost, p->st));
    PCK(cudaStreamSynchronize(p->st));
    PCK(cudaGetLastError());
    p->picked = 1;
    return id;
}

extern "C" double qvl_cuda_picker_time_us(qvl_cuda_picker *p, const float *logits, int picks) {
    if (picks <= 0 || upload(p, logits)) return -1;
    cudaEvent_t a, b;
    if (cudaEventCreate(&a) != cudaSuccess) return -1;
    if (cudaEventCreate(&b) != cudaSuccess) {
        cudaEventDestroy(a);
        return -1;
    }
    qvl_k_pick(p->st, p->out, p->logits, p->vocab, p->state, p->flags, p->work, p->uniforms, p->picked); /* warm-up */
    cudaEventRecord(a, p->st);
    for (int i = 0; i < picks; i++)
        qvl_k_pick(p->st, p->out, p->logits, p->vocab, p->state, p->flags, p->work, p->uniforms, 1);
    cudaEventRecord(b, p->st);
    float ms = -1;
    cudaError_t e = cudaEventSynchronize(b);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, a, b);
    if (e == cudaSuccess) e = cudaGetLastError();
    cudaEventDestroy(a), cudaEventDestroy(b);
    p->picked = 1;
    if (e != cudaSuccess) {
        qvl_errorf("cuda: %s", cudaGetErrorString(e));
        return -1;
    }
    return 1000.0 * ms / picks;
}
