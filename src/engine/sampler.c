#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float logit;
    int32_t id;
} candidate;

struct qvl_sampler {
    int vocab;
    qvl_sampler_params p;
    uint64_t rng[4];            /* xoshiro256** state */
    uint8_t *seen;              /* [vocab] bit 0: in prompt or output; bit 1: in output */
    int32_t *seen_ids;          /* distinct seen ids, in order of first appearance */
    int n_seen;
    int32_t *out_ids;           /* distinct generated ids */
    int n_out;
    candidate *cand;            /* [vocab] */
    double *prob;               /* [vocab] */
    float *heap;                /* [vocab] scratch for top-k */
};

/* ---- random numbers: splitmix64 seeding, xoshiro256** ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t *s) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(uint64_t *s) { return (double)(xoshiro_next(s) >> 11) * (1.0 / 9007199254740992.0); }

/* ---- parameters ---- */

qvl_sampler_params qvl_sampler_params_greedy(void) {
    qvl_sampler_params p = {0, 1.0f, 0, 1.0f, 1.0f, 0.0f, 0};
    return p;
}

qvl_sampler_params qvl_sampler_params_resolve(const qvl_gen_opts *g, const qvl_generation_config *gc) {
    qvl_sampler_params p = qvl_sampler_params_greedy();
    p.seed = g->seed;
    if (g->sample) {
        p.do_sample = 1;
        p.temperature = (float)gc->temperature;
        p.top_k = gc->top_k;
        p.top_p = (float)gc->top_p;
        p.repetition_penalty = (float)gc->repetition_penalty;
        p.presence_penalty = (float)gc->presence_penalty;
        if (!isnan(g->temperature)) p.temperature = (float)g->temperature;
        if (!isnan(g->top_p)) p.top_p = (float)g->top_p;
        if (g->top_k >= 0) p.top_k = g->top_k;
    }
    if (!isnan(g->repetition_penalty)) p.repetition_penalty = (float)g->repetition_penalty;
    if (!isnan(g->presence_penalty)) p.presence_penalty = (float)g->presence_penalty;
    /* A generation_config without the field is parsed as 0; neither penalty can then mean "off". */
    if (!(p.repetition_penalty > 0)) p.repetition_penalty = 1.0f;
    return p;
}

/* ---- lifetime ---- */

qvl_sampler *qvl_sampler_new(int vocab_size, const qvl_sampler_params *p) {
    if (vocab_size <= 0) return NULL;
    qvl_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->vocab = vocab_size;
    s->seen = calloc((size_t)vocab_size, 1);
    s->seen_ids = malloc((size_t)vocab_size * sizeof *s->seen_ids);
    s->out_ids = malloc((size_t)vocab_size * sizeof *s->out_ids);
    s->cand = malloc((size_t)vocab_size * sizeof *s->cand);
    s->prob = malloc((size_t)vocab_size * sizeof *s->prob);
    s->heap = malloc((size_t)vocab_size * sizeof *s->heap);
    if (!s->seen || !s->seen_ids || !s->out_ids || !s->cand || !s->prob || !s->heap) {
        qvl_sampler_free(s);
        return NULL;
    }
    qvl_sampler_reset(s, p);
    return s;
}

void qvl_sampler_free(qvl_sampler *s) {
    if (!s) return;
    free(s->heap);
    free(s->prob);
    free(s->cand);
    free(s->out_ids);
    free(s->seen_ids);
    free(s->seen);
    free(s);
}

void qvl_sampler_reset(qvl_sampler *s, const qvl_sampler_params *p) {
    for (int i = 0; i < s->n_seen; i++) s->seen[s->seen_ids[i]] = 0;
    s->n_seen = s->n_out = 0;
    s->p = *p;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

static void mark_seen(qvl_sampler *s, int32_t id) {
    if (id < 0 || id >= s->vocab) return;
    if (!(s->seen[id] & 1)) {
        s->seen[id] |= 1;
        s->seen_ids[s->n_seen++] = id;
    }
}

void qvl_sampler_accept_prompt(qvl_sampler *s, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) mark_seen(s, ids[i]);
}

void qvl_sampler_accept(qvl_sampler *s, int32_t id) {
    mark_seen(s, id);
    if (id >= 0 && id < s->vocab && !(s->seen[id] & 2)) {
        s->seen[id] |= 2;
        s->out_ids[s->n_out++] = id;
    }
}

void qvl_sampler_uniforms(qvl_sampler *s, double *out, int n) {
    for (int i = 0; i < n; i++) out[i] = uniform01(s->rng);
}

/* ---- logits processing ---- */

int32_t qvl_argmax_lowest(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;   /* strictly greater: the first maximum wins */
    return best;
}

static void round_and_penalize(qvl_sampler *s, float *logits) {
    for (int i = 0; i < s->vocab; i++) logits[i] = qvl_bf16_round(logits[i]);
    float rp = s->p.repetition_penalty;
    if (rp != 1.0f)
        for (int i = 0; i < s->n_seen; i++) {
            float *l = &logits[s->seen_ids[i]];
            *l = *l > 0 ? *l / rp : *l * rp;
        }
    float pp = s->p.presence_penalty;
    if (pp != 0.0f)
        for (int i = 0; i < s->n_out; i++) logits[s->out_ids[i]] -= pp;
}

static int sampling(const qvl_sampler *s) { return s->p.do_sample && s->p.temperature > 0; }

/* Decreasing logit, then increasing id: a total order, so results never depend on qsort. */
static int cand_cmp(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Sift-down for a min-heap of the k largest logits seen so far. */
static void heap_down(float *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, m = i;
        if (l < n && h[l] < h[m]) m = l;
        if (l + 1 < n && h[l + 1] < h[m]) m = l + 1;
        if (m == i) return;
        float t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* The k-th largest value. */
static float kth_largest(qvl_sampler *s, const float *logits, int k) {
    float *h = s->heap;
    for (int i = 0; i < k; i++) h[i] = logits[i];
    for (int i = k / 2 - 1; i >= 0; i--) heap_down(h, k, i);
    for (int i = k; i < s->vocab; i++)
        if (logits[i] > h[0]) {
            h[0] = logits[i];
            heap_down(h, k, 0);
        }
    return h[0];
}

/* Applies temperature and top-k, sorts, computes probabilities and applies top-p. The survivors
 * are s->cand[0..n) with probabilities s->prob[0..n) (not renormalized); returns n. */
static int filter(qvl_sampler *s, float *logits) {
    int V = s->vocab, n = 0;
    float t = s->p.temperature;
    if (t != 1.0f)
        for (int i = 0; i < V; i++) logits[i] /= t;
    int k = s->p.top_k;
    if (k > 0 && k < V) {
        float kth = kth_largest(s, logits, k);
        for (int i = 0; i < V; i++)
            if (logits[i] >= kth) s->cand[n++] = (candidate){logits[i], i};
    } else {
        for (int i = 0; i < V; i++) s->cand[n++] = (candidate){logits[i], i};
    }
    qsort(s->cand, (size_t)n, sizeof *s->cand, cand_cmp);
    double mx = s->cand[0].logit, sum = 0;
    for (int i = 0; i < n; i++) sum += (s->prob[i] = exp((double)s->cand[i].logit - mx));
    for (int i = 0; i < n; i++) s->prob[i] /= sum;
    if (s->p.top_p < 1.0f) {
        /* HF removes a token when the mass of it and everything below it is <= 1 - top_p, i.e.
         * when the mass strictly above it is >= top_p. The first token always stays. */
        double above = 0;
        int keep = 0;
        while (keep < n && (keep == 0 || above < (double)s->p.top_p)) above += s->prob[keep++];
        n = keep;
    }
    return n;
}

int qvl_sampler_candidates(qvl_sampler *s, float *logits, int32_t *ids, int max_ids) {
    round_and_penalize(s, logits);
    int n;
    if (!sampling(s)) {
        s->cand[0].id = qvl_argmax_lowest(logits, s->vocab);
        n = 1;
    } else {
        n = filter(s, logits);
    }
    for (int i = 0; i < n && i < max_ids; i++) ids[i] = s->cand[i].id;
    return n;
}

/* The pick itself; draw() gives the uniform of a sampled pick. */
static int32_t pick(qvl_sampler *s, float *logits, double u) {
    int n = filter(s, logits);
    double mass = 0;
    for (int i = 0; i < n; i++) mass += s->prob[i];
    u *= mass;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->prob[i];
        if (u < acc) return s->cand[i].id;
    }
    return s->cand[n - 1].id;   /* rounding left u at the very top */
}

int32_t qvl_sampler_pick(qvl_sampler *s, float *logits) {
    round_and_penalize(s, logits);
    if (!sampling(s)) return qvl_argmax_lowest(logits, s->vocab);
    return pick(s, logits, uniform01(s->rng));
}

int qvl_sampler_samples(const qvl_sampler *s) { return sampling(s); }

int32_t qvl_sampler_pick_u(qvl_sampler *s, float *logits, double u) {
    round_and_penalize(s, logits);
    if (!sampling(s)) return qvl_argmax_lowest(logits, s->vocab);
    return pick(s, logits, u);
}
