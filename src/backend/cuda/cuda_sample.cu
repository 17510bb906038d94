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
 * This one-block kernel (k_pick) is the exact reference and the fallback of the fast path below
 * (k_pick_scan + k_pick_merge, many blocks; QVL_PICK_FAST=0 turns it off).
 *
 * Cost on an H100, V = 151936 (tests/gpu/test_gpu_sample.c, stream launches, one-block -> fast
 * path): t 0.7 top-k 20 top-p 0.8 148 -> 54 us a pick (scan 13, merge ~38: most of it the radix
 * passes and the sort in the merge's one block, not profiled further); top-k off top-p 0.8
 * 1185 -> 84 us; top-k off top-p 1 1246 -> 84 us (draws past the merged keys fall back, ~1.2 ms);
 * greedy with a penalty 32.5 -> 11 us. Flat distributions with top-k off fall back and walk many
 * chunks (tens of ms). One block's scan over V costs ~30 us; a histogram pass over V costs far
 * more, most likely the __match_any_sync per element (not measured separately). */
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
static_assert(PK_CHUNK <= 2 * PK_THREADS, "gather_sort: one pair of keys per thread in each bitonic step");

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

/* Where the radix select and the gather read keys: the processed logits (key made from value and
 * position), or the fast path's candidate keys (0: an empty slot, never eligible). */
struct work_src {
    const float *w;
    int n;
    __device__ __forceinline__ uint64_t key(int i) const { return make_key(w[i], i); }
};
struct cand_src {
    const uint64_t *c;
    int n;
    __device__ __forceinline__ uint64_t key(int i) const { return c[i]; }
};

struct pick_shared {
    uint64_t keys[PK_CHUNK];   /* the current chunk, sorted by decreasing key */
    double prob[PK_CHUNK];     /* its probabilities, exp(l - max) / sum */
    unsigned hist[256];
    unsigned hcopy[PK_HCOPIES][256];   /* per group of warps: few warps contend for one bin */
    float rv[PK_WARPS];
    int ri[PK_WARPS];
    double rd[PK_WARPS];
    uint64_t rk[PK_WARPS];
    uint64_t prefix, bound;    /* radix select: digits chosen so far; chunk: keys below bound */
    unsigned need, tie, slot;
    int pos, cnt, more, keep, id;
    double sum, mass;
};

/* Keys of work[] that are candidates (ov >= T) below bound. */
static __device__ __forceinline__ bool eligible(uint64_t k, uint32_t T, uint64_t bound) {
    return (uint32_t)(k >> 32) >= T && k < bound && k != 0;
}

/* Calls f(key, in_range) for every position of src, PK_UNROLL loads in flight per thread (one block
 * is latency bound). All threads of the block call f the same number of times, out-of-range
 * positions with in_range false, so that f may use warp-collective operations. */
template <class Src, class F>
static __device__ __forceinline__ void for_each_key(Src src, F f) {
    const int V = src.n;
    for (int base = 0; base < V; base += PK_UNROLL * PK_THREADS) {
        uint64_t v[PK_UNROLL];
#pragma unroll
        for (int u = 0; u < PK_UNROLL; u++) {
            int i = base + u * PK_THREADS + threadIdx.x;
            v[u] = i < V ? src.key(i) : 0;
        }
#pragma unroll
        for (int u = 0; u < PK_UNROLL; u++) f(v[u], base + u * PK_THREADS + (int)threadIdx.x < V);
    }
}

/* Histogram of digit (key >> shift) & 255 over eligible keys whose higher digits equal prefix's. */
template <class Src>
static __device__ void hist_pass(pick_shared &sh, Src src, uint32_t T, uint64_t bound, int shift) {
    for (int d = threadIdx.x; d < PK_HCOPIES * 256; d += PK_THREADS) (&sh.hcopy[0][0])[d] = 0;
    __syncthreads();
    unsigned *hist = sh.hcopy[(threadIdx.x >> 5) % PK_HCOPIES];
    const uint64_t prefix = sh.prefix;
    const unsigned lane = threadIdx.x & 31;
    for_each_key(src, [&](uint64_t k, bool in_range) {
        unsigned d = 256 + lane;   /* distinct non-digits for lanes that count nothing */
        if (in_range && eligible(k, T, bound) && (shift == 56 || (k >> (shift + 8)) == (prefix >> (shift + 8))))
            d = (unsigned)(k >> shift) & 255u;
        unsigned peers = __match_any_sync(0xffffffffu, d);
        if (d < 256 && lane == (unsigned)__ffs(peers) - 1) atomicAdd(&hist[d], (unsigned)__popc(peers));
    });
    __syncthreads();
    for (int d = threadIdx.x; d < 256; d += PK_THREADS) {
        unsigned c = 0;
        for (int k = 0; k < PK_HCOPIES; k++) c += sh.hcopy[k][d];
        sh.hist[d] = c;
    }
    __syncthreads();
}

/* Warp 0 (all lanes): the digit holding the need-th largest eligible key, i.e. the largest d with
 * hist[255] + .. + hist[d] >= need (0 when none); need becomes its rank within that digit. Lane l
 * owns digits 255 - 8l down to 248 - 8l; a scan over lanes finds the lane where the sum crosses. */
static __device__ void choose_digit(pick_shared &sh, int shift) {
    const unsigned lane = threadIdx.x & 31, need = sh.need;
    unsigned c[8], s = 0;
#pragma unroll
    for (int r = 0; r < 8; r++) c[r] = sh.hist[255 - 8 * lane - r], s += c[r];
    unsigned incl = s;
    for (int o = 1; o < 32; o <<= 1) {
        unsigned x = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= (unsigned)o) incl += x;
    }
    const unsigned hit = __ballot_sync(0xffffffffu, incl >= need);
    if (!hit) {   /* fewer than need in all: digit 0, as the sequential walk ends there */
        if (lane == 31) sh.need = need - (incl - c[7]), sh.tie = c[7];
        return;
    }
    if (lane == (unsigned)__ffs(hit) - 1) {
        unsigned cum = incl - s;
        int r = 0;
        while (r < 7 && cum + c[r] < need) cum += c[r++];
        sh.prefix |= (uint64_t)(255 - 8 * lane - r) << shift;
        sh.need = need - cum;
        sh.tie = c[r];
    }
}

/* Radix select over the eligible keys for the need-th largest one, 8 bits a pass from the top
 * down to stop_shift. Leaves sh.prefix (digits chosen, zeros below), sh.need (its rank within the
 * last bucket) and sh.tie (that bucket's size). early: stop once the bucket is needed whole; then
 * {eligible keys >= sh.prefix} is exactly the need largest. */
template <class Src>
static __device__ void radix_select(pick_shared &sh, Src src, uint32_t T, uint64_t bound, unsigned need, int stop_shift,
                                    bool early) {
    if (threadIdx.x == 0) sh.prefix = 0, sh.need = need;
    __syncthreads();
    for (int shift = 56; shift >= stop_shift; shift -= 8) {
        hist_pass(sh, src, T, bound, shift);
        if (threadIdx.x < 32) choose_digit(sh, shift);
        __syncthreads();
        if (early && sh.tie == sh.need) break;
    }
}

/* The next chunk of candidates (keys below sh.bound, positions sh.pos..) into sh.keys sorted
 * decreasing, sh.cnt of them, and their probabilities (sum: the normalizer, known when the
 * candidates span more than one chunk). */
template <class Src>
static __device__ void gather_sort(pick_shared &sh, Src src, uint32_t T, uint64_t bound, uint64_t low, int cnt);
static __device__ void chunk_probs(pick_shared &sh, int cnt, double mx, bool have_sum) {
    for (int j = threadIdx.x; j < cnt; j += PK_THREADS) {
        double e = exp(key_value(sh.keys[j]) - mx);
        sh.prob[j] = have_sum ? e / sh.sum : e;
    }
    if (threadIdx.x == 0) sh.cnt = cnt;
    __syncthreads();
}
/* All candidates in this chunk: their sum, in the CPU's sequential order, is the normalizer. */
static __device__ void normalize_chunk(pick_shared &sh) {
    if (threadIdx.x == 0) {
        double s = 0;
        for (int j = 0; j < sh.cnt; j++) s += sh.prob[j];
        sh.sum = s;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < sh.cnt; j += PK_THREADS) sh.prob[j] /= sh.sum;
    __syncthreads();
}
static __device__ void fetch_chunk(pick_shared &sh, const float *work, int V, uint32_t T, int n_cand, double mx,
                                   bool have_sum) {
    const uint64_t bound = sh.bound;
    const int remaining = n_cand - sh.pos;
    uint64_t low = 0;
    int cnt = remaining;
    if (remaining > PK_CHUNK) {
        radix_select(sh, work_src{work, V}, T, bound, PK_CHUNK, 0, true);
        low = sh.prefix;
        cnt = PK_CHUNK;
    }
    gather_sort(sh, work_src{work, V}, T, bound, low, cnt);
    chunk_probs(sh, cnt, mx, have_sum);
}

/* The cnt eligible keys >= low (below bound) into sh.keys, sorted decreasing. */
template <class Src>
static __device__ void gather_sort(pick_shared &sh, Src src, uint32_t T, uint64_t bound, uint64_t low, int cnt) {
    if (threadIdx.x == 0) sh.slot = 0;
    __syncthreads();
    const unsigned lane = threadIdx.x & 31;
    for_each_key(src, [&](uint64_t k, bool in_range) {
        const bool take = in_range && eligible(k, T, bound) && k >= low;
        const unsigned m = __ballot_sync(0xffffffffu, take);
        if (!m) return;
        unsigned first = 0;
        if (lane == (unsigned)__ffs(m) - 1) first = atomicAdd(&sh.slot, (unsigned)__popc(m));
        first = __shfl_sync(0xffffffffu, first, __ffs(m) - 1);
        if (take) {
            unsigned slot = first + __popc(m & ((1u << lane) - 1));
            if (slot < PK_CHUNK) sh.keys[slot] = k;
        }
    });
    __syncthreads();
    int P = 1;
    while (P < cnt) P <<= 1;
    for (int j = cnt + threadIdx.x; j < P; j += PK_THREADS) sh.keys[j] = 0;
    __syncthreads();
    /* bitonic sort, decreasing; thread t compares pair t (P <= 2 * PK_THREADS), so strides below
     * 64 stay inside one warp's 64 keys and need only the warp in step */
    for (int k = 2; k <= P; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int t = threadIdx.x; t < P / 2; t += PK_THREADS) {
                int a = 2 * j * (t / j) + (t % j), b = a + j;
                uint64_t x = sh.keys[a], y = sh.keys[b];
                bool desc = (a & k) == 0;
                if (desc ? x < y : x > y) sh.keys[a] = y, sh.keys[b] = x;
            }
            if (j >= 64 || (j == 1 && k >= 64))
                __syncthreads();
            else
                __syncwarp();
        }
    __syncthreads();
}

/* Top-k's threshold: T = the k-th largest value's orderable bits, n = the candidates (values >= it,
 * ties included). Radix passes over the values; as soon as the keys at or above the current bucket
 * fit one chunk they are gathered and sorted, and then they are chunk 0 already (returns true,
 * sh.keys holds them). */
template <class Src>
static __device__ bool top_k_select(pick_shared &sh, Src src, int k, int gather_early, uint32_t *T, int *n) {
    if (threadIdx.x == 0) sh.prefix = 0, sh.need = (unsigned)k;
    __syncthreads();
    for (int shift = 56; shift >= 32; shift -= 8) {
        hist_pass(sh, src, 0, ~0ull, shift);
        if (threadIdx.x < 32) choose_digit(sh, shift);
        __syncthreads();
        const unsigned at_or_above = (unsigned)k - sh.need + sh.tie;   /* keys >= sh.prefix */
        if (gather_early && at_or_above <= PK_CHUNK) {
            gather_sort(sh, src, 0, ~0ull, sh.prefix, (int)at_or_above);
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
           float *work, const double *uniforms, int mark_out, int gather_early, int *fast_done) {
    __shared__ pick_shared sh;
    if (fast_done && *fast_done) return;   /* the fast path picked (read before pass 0 overwrites work[]) */
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
        if (threadIdx.x == 0) {
            *out = sh.id;
            if (fast_done) *fast_done = 0;   /* pass 0 overwrote it; work[] is read no more */
        }
        return;
    }
    const double mx = (double)sh.rv[0];

    /* Candidates: all, or those >= the k-th largest value. */
    uint32_t T = 0;
    int n_cand = V;
    bool sorted0 = false;   /* chunk 0 already in sh.keys */
    if (P.top_k > 0 && P.top_k < V) sorted0 = top_k_select(sh, work_src{work, V}, P.top_k, gather_early, &T, &n_cand);
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
    if (!many) normalize_chunk(sh);

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
        if (fast_done) *fast_done = 0;
    }
}

/* ---- the fast path: many blocks scan, one block merges their best keys ----
 * k_pick_scan: block b takes logits [b * PF_EPB, (b + 1) * PF_EPB), processes them as pass 0 does,
 * and writes its largest key (greedy) or, sampling, its PF_M largest keys sorted, its exp-sum
 * relative to its own max and its cutoff (its PF_M-th key when it had more, else 0).
 * k_pick_merge: one block; the global max from the blocks' first keys; top-k and the leading
 * candidates (the largest PK_CHUNK keys of the union) by the radix select above over the union,
 * then the same sequential sums, top-p and draw as k_pick. The union holds every key >= the
 * largest cutoff, so the sorted union is exact down to there; ties of the top-k value cut at a
 * block's PF_M-th key, a walk past the exact part, top-k > PF_M or V <= PK_CHUNK without top-k
 * (there k_pick sums in the CPU's order) leave done = 0 and k_pick, launched after, picks
 * (it returns at once when done = 1). With top-k off the normalizer is sum_b bsum_b *
 * exp(bmax_b - max): a parallel sum like k_pick's, equal to the CPU's up to rounding.
 * The scratch lives in work[] (V floats, 256-byte aligned), which only k_pick's pass 0 writes. */
enum { PF_EPB = 2048, PF_M = 64, PF_THREADS = 1024 };
static_assert(PF_M == 64 && PF_EPB == 64 * (PF_THREADS / 32), "k_pick_scan: 64 keys per warp, the block keeps 64");

static __host__ __device__ inline int fast_blocks(int V) { return (V + PF_EPB - 1) / PF_EPB; }
/* done (int, 16 bytes), bsum[nb] (double), cut[nb], cand[nb * PF_M] (uint64) */
static __host__ __device__ inline size_t fast_bytes(int V) {
    return 16 + (size_t)fast_blocks(V) * (16 + PF_M * 8);
}
static bool fast_fits(int V) { return V > 0 && fast_bytes(V) <= (size_t)V * 4 && fast_blocks(V) <= PF_THREADS; }

struct fast_scratch {
    int *done;
    double *bsum;
    uint64_t *cut, *cand;
    __device__ fast_scratch(float *work, int nb) {
        char *w = (char *)work;
        done = (int *)w;
        bsum = (double *)(w + 16);
        cut = (uint64_t *)(bsum + nb);
        cand = cut + nb;
    }
};

/* Block-wide max of a key (every thread gets it). */
static __device__ uint64_t block_max_key(uint64_t k, uint64_t *red) {
    for (int o = 16; o; o >>= 1) {
        uint64_t x = __shfl_xor_sync(0xffffffffu, k, o);
        k = x > k ? x : k;
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = k;
    __syncthreads();
    k = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) k = red[w] > k ? red[w] : k;
    return k;
}
/* Block-wide sum in a fixed order (every thread gets it). */
static __device__ double block_sum(double s, double *red) {
    for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
    __syncthreads();
    s = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) s += red[w];
    return s;
}

static __global__ void __launch_bounds__(PF_THREADS)
    k_pick_scan(const int32_t *out, const bf16 *__restrict__ logits, int V, const qvl_pick_state *state,
                uint8_t *__restrict__ flags, float *work, int mark_out) {
    __shared__ uint64_t keys[PF_EPB];
    __shared__ uint64_t rk[PF_THREADS / 32];
    __shared__ double rs[PF_THREADS / 32];
    const int nb = gridDim.x, b = blockIdx.x, b0 = b * PF_EPB;
    fast_scratch S(work, nb);
    const qvl_cuda_pick_params P = state->p;
    const bool sampling = P.do_sample && P.temperature > 0;
    if (mark_out && threadIdx.x == 0) {
        int g = *out;
        if (g >= b0 && g < b0 + PF_EPB && g < V) flags[g] |= 3;
    }
    __syncthreads();
    const float rp = P.repetition_penalty, pp = P.presence_penalty, t = P.temperature;
    float lv[PF_EPB / PF_THREADS];
    uint64_t mk = 0;
#pragma unroll
    for (int u = 0; u < PF_EPB / PF_THREADS; u++) {
        const int j = u * PF_THREADS + threadIdx.x, i = b0 + j;
        uint64_t k = 0;
        lv[u] = 0;
        if (i < V) {
            float l = __bfloat162float(logits[i]);
            uint8_t f = flags[i];
            if (rp != 1.0f && (f & 1)) l = l > 0 ? __fdiv_rn(l, rp) : __fmul_rn(l, rp);
            if (pp != 0.0f && (f & 2)) l = __fsub_rn(l, pp);
            if (sampling && t != 1.0f) l = __fdiv_rn(l, t);
            lv[u] = l;
            k = make_key(l, i);
        }
        keys[j] = k;
        mk = k > mk ? k : mk;
    }
    mk = block_max_key(mk, rk);
    if (!sampling) {
        if (threadIdx.x == 0) S.cand[(size_t)b * PF_M] = mk;
        return;
    }
    const double bmax = key_value(mk);
    double s = 0;
#pragma unroll
    for (int u = 0; u < PF_EPB / PF_THREADS; u++)
        if (b0 + u * PF_THREADS + (int)threadIdx.x < V) s += exp((double)lv[u] - bmax);
    s = block_sum(s, rs);
    /* The block's 64 largest keys, sorted: each warp sorts 64 keys (bitonic, decreasing), then a
     * tree of warps: max(A[i], B[63 - i]) of two sorted lists holds their 64 largest as a bitonic
     * sequence, which a bitonic merge sorts. */
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    uint64_t *seg = keys + 64 * w;
    for (int k = 2; k <= 64; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            const int a = 2 * j * (lane / j) + (lane % j), c = a + j;
            uint64_t x = seg[a], y = seg[c];
            bool desc = k == 64 || (a & k) == 0;
            if (desc ? x < y : x > y) seg[a] = y, seg[c] = x;
            __syncwarp();
        }
    for (int l = 1; l < PF_THREADS / 32; l <<= 1) {
        __syncthreads();
        if ((w & (2 * l - 1)) == 0) {
            uint64_t *A = seg, *B = keys + 64 * (w + l);
            uint64_t a0 = A[lane], a1 = A[lane + 32], b0 = B[63 - lane], b1 = B[31 - lane];
            A[lane] = a0 > b0 ? a0 : b0;
            A[lane + 32] = a1 > b1 ? a1 : b1;
            __syncwarp();
            for (int j = 32; j > 0; j >>= 1) {
                const int a = 2 * j * (lane / j) + (lane % j), c = a + j;
                uint64_t x = A[a], y = A[c];
                if (x < y) A[a] = y, A[c] = x;
                __syncwarp();
            }
        }
    }
    __syncthreads();
    if (threadIdx.x < PF_M) S.cand[(size_t)b * PF_M + threadIdx.x] = keys[threadIdx.x];
    if (threadIdx.x == 0) {
        S.bsum[b] = s;
        S.cut[b] = V - b0 > PF_M ? keys[PF_M - 1] : 0;
    }
}

static __global__ void __launch_bounds__(PK_THREADS)
    k_pick_merge(int32_t *out, int V, qvl_pick_state *state, float *work, const double *uniforms, int force_fallback) {
    __shared__ pick_shared sh;
    const int nb = fast_blocks(V);
    fast_scratch S(work, nb);
    if (force_fallback) {
        if (threadIdx.x == 0) *S.done = 0;
        return;
    }
    const qvl_cuda_pick_params P = state->p;
    const bool sampling = P.do_sample && P.temperature > 0;
    uint64_t mk = 0;
    for (int b = threadIdx.x; b < nb; b += PK_THREADS) mk = S.cand[(size_t)b * PF_M] > mk ? S.cand[(size_t)b * PF_M] : mk;
    mk = block_max_key(mk, sh.rk);
    if (!sampling) {
        if (threadIdx.x == 0) *out = key_id(mk), *S.done = 1;
        return;
    }
    const double mx = key_value(mk);
    const cand_src src{S.cand, nb * PF_M};
    const int k = P.top_k;
    int n_cand = V, exact = 0;   /* exact: how many leading sorted keys are the true ones */
    bool ok = true;
    if (k > 0 && k < V) {
        uint32_t T = 0;
        ok = k <= PF_M && top_k_select(sh, src, k, 1, &T, &n_cand);
        if (ok) {
            /* a block whose PF_M-th key has the k-th value may hold more of its ties */
            bool cut_tie = false;
            for (int b = threadIdx.x; b < nb; b += PK_THREADS)
                cut_tie |= S.cut[b] != 0 && (uint32_t)(S.cut[b] >> 32) == T;
            ok = !__syncthreads_or(cut_tie);
        }
        if (ok) {
            chunk_probs(sh, n_cand, mx, false);
            normalize_chunk(sh);
            exact = n_cand;
        }
    } else if (V <= PK_CHUNK) {
        ok = false;
    } else {
        double s = 0;
        uint64_t lim = 0;
        int total = 0;
        for (int b = threadIdx.x; b < nb; b += PK_THREADS) {
            s += S.bsum[b] * exp(key_value(S.cand[(size_t)b * PF_M]) - mx);
            lim = S.cut[b] > lim ? S.cut[b] : lim;
            int e = V - b * PF_EPB;
            total += e < PF_M ? e : PF_M;
        }
        s = block_sum(s, sh.rd);
        lim = block_max_key(lim, sh.rk);
        total = (int)block_sum((double)total, sh.rd);
        if (threadIdx.x == 0) sh.sum = s, sh.pos = 0;
        const int R = total < PK_CHUNK ? total : PK_CHUNK;
        uint64_t low = 0;
        int cnt = R;
        if (R < total) {
            /* by value only (4 passes): the keys with at least the R-th key's value if they fit one
             * chunk, else those above it; either way a complete head of the union's order */
            radix_select(sh, src, 0, ~0ull, (unsigned)R, 32, true);
            const int ge = R - (int)sh.need + (int)sh.tie;
            low = sh.prefix, cnt = ge;
            if (ge > PK_CHUNK) low = sh.prefix + (1ull << 32), cnt = R - (int)sh.need;
        }
        gather_sort(sh, src, 0, ~0ull, low, cnt);
        chunk_probs(sh, cnt, mx, true);
        /* sorted keys >= lim are the true leading ones */
        if (threadIdx.x == 0) sh.keep = 0;
        __syncthreads();
        for (int j = threadIdx.x; j < cnt; j += PK_THREADS)
            if (sh.keys[j] >= lim && (j + 1 == cnt || sh.keys[j + 1] < lim)) sh.keep = j + 1;
        __syncthreads();
        exact = sh.keep;
    }
    if (!ok) {
        if (threadIdx.x == 0) *S.done = 0;
        return;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        /* Top-p: keep while nothing is kept or the mass above is below top_p; mass = what is kept. */
        int keep = n_cand;
        double mass = 1;   /* top-p off, top-k off: sum / sum */
        bool fine = true;
        if (P.top_p < 1.0f) {
            double above = 0;
            int j = 0;
            keep = 0;
            for (; j < exact; j++) {
                if (keep == 0 || above < (double)P.top_p) above += sh.prob[j], keep++;
                else break;
            }
            if (j == exact && exact < n_cand) fine = false;   /* the walk would go on past the exact keys */
            mass = above;
        } else if (exact == n_cand) {
            double m = 0;
            for (int j = 0; j < n_cand; j++) m += sh.prob[j];
            mass = m;
        }
        /* The draw: u * mass walked from the top; rounding past the end takes the last kept. */
        const int n_uni = state->n_uniforms, c = state->counter;
        const double u = (n_uni > 0 ? uniforms[c < n_uni ? c : n_uni - 1] : 0.5) * mass;
        double acc = 0;
        int id = -1, found = 0;
        for (int j = 0; fine && j < keep && j < exact; j++) {
            acc += sh.prob[j];
            id = key_id(sh.keys[j]);
            if (u < acc) {
                found = 1;
                break;
            }
        }
        if (!found && keep > exact) fine = false;
        if (fine && id >= 0) {
            *out = id;
            state->counter = c + 1;
        }
        *S.done = fine && id >= 0;
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

/* path (QVL_PICK_PATH_*): 1 the fast path, k_pick only where it cannot pick (always, in the model);
 * 0 k_pick alone; 2 the fast path's kernels, then always k_pick (tests the fallback); 3 (k_pick_scan
 * alone) and 4 (scan + merge, no fallback): for timing the parts only. */
static int path_for(int path, int V) { return path && fast_fits(V) ? path : 0; }

void qvl_k_pick(cudaStream_t st, int32_t *out, const bf16 *logits, int V, qvl_pick_state *state, uint8_t *flags,
                float *work, const double *uniforms, int mark_out, int path) {
    /* top-k's candidates are gathered as soon as they fit one chunk (the four radix passes remain
     * for the rest); k_pick keeps the parameter so the kernel can still be run both ways */
    const int early = 1;
    path = path_for(path, V);
    if (path) k_pick_scan<<<fast_blocks(V), PF_THREADS, 0, st>>>(out, logits, V, state, flags, work, mark_out);
    if (path && path != 3) k_pick_merge<<<1, PK_THREADS, 0, st>>>(out, V, state, work, uniforms, path == 2);
    if (path <= 2)
        k_pick<<<1, PK_THREADS, 0, st>>>(out, logits, V, state, flags, work, uniforms, mark_out, early,
                                         path ? (int *)work : nullptr);
}

/* ---- the test hook (cuda_sample.h) ---- */
struct qvl_cuda_picker {
    int vocab, max_uniforms, max_prompt, picked, path;
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
    p->vocab = vocab, p->max_uniforms = max_uniforms, p->max_prompt = vocab > 4096 ? vocab : 4096, p->path = 1;
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
    qvl_k_pick(p->st, p->out, p->logits, p->vocab, p->state, p->flags, p->work, p->uniforms, p->picked, p->path);
    int32_t id = -1;
    PCK(cudaMemcpyAsync(&id, p->out, 4, cudaMemcpyDeviceToHost, p->st));
    PCK(cudaStreamSynchronize(p->st));
    PCK(cudaGetLastError());
    p->picked = 1;
    return id;
}

extern "C" void qvl_cuda_picker_set_path(qvl_cuda_picker *p, int path) { p->path = path >= 0 && path <= 4 ? path : 1; }

extern "C" int qvl_cuda_picker_took_fast(qvl_cuda_picker *p) {
    if (!path_for(p->path, p->vocab)) return 0;
    int done = 0;
    if (cudaMemcpy(&done, p->work, sizeof done, cudaMemcpyDeviceToHost) != cudaSuccess) return -1;
    return done;
}

extern "C" double qvl_cuda_picker_time_us(qvl_cuda_picker *p, const float *logits, int picks) {
    if (picks <= 0 || upload(p, logits)) return -1;
    cudaEvent_t a, b;
    if (cudaEventCreate(&a) != cudaSuccess) return -1;
    if (cudaEventCreate(&b) != cudaSuccess) {
        cudaEventDestroy(a);
        return -1;
    }
    qvl_k_pick(p->st, p->out, p->logits, p->vocab, p->state, p->flags, p->work, p->uniforms, p->picked, p->path); /* warm-up */
    cudaEventRecord(a, p->st);
    for (int i = 0; i < picks; i++)
        qvl_k_pick(p->st, p->out, p->logits, p->vocab, p->state, p->flags, p->work, p->uniforms, 1, p->path);
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
