/* The sampler's uniform stream (qvl_sampler_uniforms): the values the CUDA backend picks with on the
 * device must be the ones qvl_sampler_pick draws, one per sampled pick, in order. */
#include <math.h>
#include <stdlib.h>

#include "engine/sampler.h"
#include "test.h"

enum { V = 1000, PICKS = 300 };

/* The CPU sampler's draw over V equal logits (top-k and top-p off): probabilities 1/V in id order,
 * u * mass walked through their running sum. */
static int32_t flat_pick(double u01) {
    double mass = 0, acc = 0;
    for (int i = 0; i < V; i++) mass += exp(0.0) / V;   /* exp(l - max) / sum, sum = V */
    double u = u01 * mass;
    for (int i = 0; i < V; i++) {
        acc += exp(0.0) / V;
        if (u < acc) return i;
    }
    return V - 1;
}

TEST(sampler_stream_matches_the_picks) {
    qvl_sampler_params p = qvl_sampler_params_greedy();
    p.do_sample = 1, p.temperature = 0.7f, p.seed = 7;
    qvl_sampler *picker = qvl_sampler_new(V, &p), *stream = qvl_sampler_new(V, &p);
    double *u = malloc(PICKS * sizeof *u);
    float *logits = malloc(V * sizeof *logits);
    CHECK(picker && stream && u && logits);
    if (!picker || !stream || !u || !logits) goto done;
    qvl_sampler_uniforms(stream, u, PICKS);
    int same = 0, distinct = 0;
    int32_t prev = -1;
    for (int k = 0; k < PICKS; k++) {
        for (int i = 0; i < V; i++) logits[i] = 0.5f;
        int32_t id = qvl_sampler_pick(picker, logits);
        qvl_sampler_accept(picker, id);   /* no penalties: acceptance changes nothing */
        same += id == flat_pick(u[k]);
        distinct += id != prev;
        prev = id;
        CHECK(u[k] >= 0 && u[k] < 1);
    }
    CHECK_INT(same, PICKS);
    CHECK(distinct > PICKS / 2);   /* the draws really vary */
done:
    qvl_sampler_free(picker), qvl_sampler_free(stream);
    free(u), free(logits);
}

TEST(sampler_stream_continues_and_reset_restarts) {
    qvl_sampler_params p = qvl_sampler_params_greedy();
    p.do_sample = 1, p.seed = 12345;
    qvl_sampler *s = qvl_sampler_new(8, &p);
    double a[10], b[10];
    qvl_sampler_uniforms(s, a, 10);
    qvl_sampler_reset(s, &p);
    qvl_sampler_uniforms(s, b, 4);
    qvl_sampler_uniforms(s, b + 4, 6);
    for (int i = 0; i < 10; i++) CHECK(a[i] == b[i]);
    CHECK(a[0] != a[1]);
    p.seed = 12346;
    qvl_sampler_reset(s, &p);
    qvl_sampler_uniforms(s, b, 1);
    CHECK(b[0] != a[0]);
    qvl_sampler_free(s);
}
