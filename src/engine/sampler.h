/* Next-token selection from one row of logits: greedy argmax (the default) or seeded sampling with
 * repetition penalty, presence penalty, temperature, top-k and top-p.
 *
 * Logits are first rounded to bf16 (the reference's lm_head output dtype, docs/model.md 8.12),
 * then processed in float32 in the order HF / vLLM apply them:
 *   repetition penalty (HF: a seen token's logit is divided by p if > 0, else multiplied by p; "seen"
 *   = prompt + generated ids) -> presence penalty (vLLM: minus pp once for each distinct token already
 *   generated) -> [sampling only] temperature -> top-k (keeps ties with the k-th value) -> top-p
 *   (smallest head of the sorted distribution whose mass reaches top_p, as HF's warper) -> draw.
 * Greedy takes the argmax; equal logits resolve to the lowest id, as torch.argmax does.
 * All buffers are allocated once in qvl_sampler_new: picking a token never allocates. */
#ifndef QVL_ENGINE_SAMPLER_H
#define QVL_ENGINE_SAMPLER_H
#include <stdint.h>
#include <string.h>

#include "model/config.h"
#include "qvl.h"

typedef struct {
    int do_sample;            /* 0: greedy argmax */
    float temperature;        /* sampling with temperature <= 0 is greedy */
    int top_k;                /* <= 0: off */
    float top_p;              /* >= 1: off */
    float repetition_penalty; /* 1: off */
    float presence_penalty;   /* 0: off */
    uint64_t seed;
} qvl_sampler_params;

/* Greedy, no penalties. */
qvl_sampler_params qvl_sampler_params_greedy(void);

/* The effective parameters of a request: greedy unless g->sample; with sampling, the checkpoint's
 * generation_config values unless g overrides them (unset fields of qvl_gen_opts are NAN / top_k < 0).
 * Penalties given explicitly in g also apply to greedy decoding (as HF logits processors do). */
qvl_sampler_params qvl_sampler_params_resolve(const qvl_gen_opts *g, const qvl_generation_config *gc);

typedef struct qvl_sampler qvl_sampler;

qvl_sampler *qvl_sampler_new(int vocab_size, const qvl_sampler_params *p);
void qvl_sampler_free(qvl_sampler *s);
/* Forgets the seen tokens and reseeds: ready for a new request with new parameters. */
void qvl_sampler_reset(qvl_sampler *s, const qvl_sampler_params *p);
/* Prompt ids count as seen for the repetition penalty. */
void qvl_sampler_accept_prompt(qvl_sampler *s, const int32_t *ids, int n);
/* A generated id: seen for the repetition penalty, present for the presence penalty. */
void qvl_sampler_accept(qvl_sampler *s, int32_t id);
/* Draws the next n uniforms of s's random stream into out: the ones the next n sampled picks of
 * qvl_sampler_pick would draw, in order (greedy picks draw none). The CUDA backend picks on the
 * device with them (model_cuda.h qvl_cuda_set_picking). */
void qvl_sampler_uniforms(qvl_sampler *s, double *out, int n);
/* Picks the next id from logits[vocab_size]; logits are overwritten (processed in place). */
int32_t qvl_sampler_pick(qvl_sampler *s, float *logits);

/* 1 when picks draw a uniform (sampling with temperature > 0), 0 for greedy. */
int qvl_sampler_samples(const qvl_sampler *s);
/* qvl_sampler_pick with the uniform given (u in [0, 1), ignored when greedy) instead of drawn from
 * s's stream: a backend that holds the request's stream (qvl_sampler_uniforms) picks the same ids. */
int32_t qvl_sampler_pick_u(qvl_sampler *s, float *logits, double u);

/* The steps, exposed for tests. */
static inline float qvl_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;   /* inf / nan unchanged */
    u += 0x7fffu + ((u >> 16) & 1u);                   /* round to nearest even */
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}
/* Index of the largest value; ties go to the lowest index. */
int32_t qvl_argmax_lowest(const float *x, int n);
/* Fills ids with the candidates top-k/top-p keep after the penalties and temperature, sorted by
 * decreasing logit (ties: lower id first); returns their count. Uses s's parameters. */
int qvl_sampler_candidates(qvl_sampler *s, float *logits, int32_t *ids, int max_ids);

#endif
