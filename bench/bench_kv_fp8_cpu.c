/* CPU speed of the FP8 KV cache against the float32 one: the CPU backend driven directly (no
 * tokenizer, no images) with a text prompt of N tokens (prefill in chunks of the token budget), then D
 * greedy decode steps, each reading the whole cache. Alternates the two cache types REPEAT times and
 * prints every run and the fastest of each.
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_kv_fp8_cpu.c build/libqvl.a \
 *      -lcjson -lpcre2-8 -lutf8proc -ljpeg -lpng -lwebp -lgif -lsnappy -lzstd -lm -pthread -o build/bench_kv_fp8_cpu
 *   build/bench_kv_fp8_cpu [MODEL_DIR] [PROMPT_TOKENS] [DECODE_STEPS] [THREADS] [REPEAT] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/backend.h"
#include "engine/batch.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One run: returns 0 and the prefill and per-step decode seconds. */
static int run(const char *model, int kv_dtype, int n_prompt, int n_decode, int threads, double *prefill_s,
               double *decode_step_s) {
    const qvl_backend_ops *ops = qvl_backend_find("cpu");
    long len = n_prompt + n_decode + 1;
    qvl_backend_opts bo = {.model_dir = model, .threads = threads, .max_model_len = len, .max_seqs = 1,
                           .kv_dtype = kv_dtype};
    qvl_backend *be = ops->open(&bo);
    if (!be) return fprintf(stderr, "open: %s\n", qvl_last_error()), -1;
    qvl_backend_limits lim;
    ops->limits(be, &lim);
    int n_blocks = (int)((len + lim.kv_block_tokens - 1) / lim.kv_block_tokens);
    int32_t *blocks = malloc((size_t)n_blocks * sizeof *blocks), *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    for (int i = 0; i < n_blocks; i++) blocks[i] = i;
    for (int i = 0; i < n_prompt; i++) prompt[i] = 1000 + (i * 7919) % 20000;   /* ordinary text ids */
    qvl_pick_params greedy = {0, 1.0f, 0, 1.0f, 1.0f, 0.0f};
    qvl_batch b;
    int rc = qvl_batch_init(&b, lim.token_budget) || ops->seq_begin(be, 0, &greedy, NULL, 0, prompt, n_prompt) ||
             ops->seq_blocks(be, 0, blocks, n_blocks);
    int32_t picked = 0;
    double t0 = now();
    for (int p0 = 0; !rc && p0 < n_prompt; p0 += lim.token_budget) {
        qvl_batch_clear(&b);
        for (int i = p0; i < n_prompt && i < p0 + lim.token_budget; i++) {
            int32_t pos[3] = {i, i, i};
            qvl_batch_add(&b, prompt[i], pos, 0, i, -1, i == n_prompt - 1);
        }
        rc = ops->run_batch(be, &b, &picked, NULL);
    }
    double t1 = now();
    for (int s = 0; !rc && s < n_decode; s++) {
        qvl_batch_clear(&b);
        int k = n_prompt + s;
        int32_t pos[3] = {k, k, k};
        qvl_batch_add(&b, picked, pos, 0, k, -1, 1);
        rc = ops->run_batch(be, &b, &picked, NULL);
    }
    double t2 = now();
    *prefill_s = t1 - t0;
    *decode_step_s = n_decode > 0 ? (t2 - t1) / n_decode : 0;
    if (rc) fprintf(stderr, "run: %s\n", qvl_last_error());
    qvl_batch_free(&b);
    free(blocks);
    free(prompt);
    ops->close(be);
    return rc;
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : "models/qvl-tiny-ocr";
    int n_prompt = argc > 2 ? atoi(argv[2]) : 4096, n_decode = argc > 3 ? atoi(argv[3]) : 128;
    int threads = argc > 4 ? atoi(argv[4]) : 2, repeat = argc > 5 ? atoi(argv[5]) : 3;
    double best_p[2] = {1e30, 1e30}, best_d[2] = {1e30, 1e30};
    const char *name[2] = {"float32", "fp8"};
    for (int r = 0; r < repeat; r++)
        for (int k = 0; k < 2; k++) {
            double p, d;
            if (run(model, k ? QVL_KV_FP8 : QVL_KV_BF16, n_prompt, n_decode, threads, &p, &d)) return 1;
            printf("run %d %-7s KV: prefill %d tokens %.3f s, decode %.3f ms/token over a %d..%d-token cache\n", r,
                   name[k], n_prompt, p, 1e3 * d, n_prompt, n_prompt + n_decode);
            if (p < best_p[k]) best_p[k] = p;
            if (d < best_d[k]) best_d[k] = d;
        }
    for (int k = 0; k < 2; k++)
        printf("fastest %-7s KV: prefill %.3f s, decode %.3f ms/token\n", name[k], best_p[k], 1e3 * best_d[k]);
    printf("fp8 / float32: prefill %.3fx, decode %.3fx the time\n", best_p[1] / best_p[0], best_d[1] / best_d[0]);
    return 0;
}
