/* qvl half of the tokenizer benchmark (bench/bench_tokenizer_ref.py is the reference half):
 * load time of tokenizer.json without and with the binary cache, and single-call encode
 * throughput on the parity corpus joined by "\n" and repeated to >= 4 MiB. Prints the id count
 * and hash, which must equal the reference's. Build and run: see bench/README.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cache_env.h"
#include "tokenizer/json_str.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

#define BENCH_BYTES (4u << 20)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Loads n times through the cache in cache_dir (NULL: no cache); sorts times (ms) into t. */
static int time_loads(const char *path, const char *cache_dir, double *t, int n) {
    for (int i = 0; i < n; i++) {
        double t0 = now_s();
        qvl_tokenizer *tok = qvl_tokenizer_load_cached(path, cache_dir);
        t[i] = (now_s() - t0) * 1e3;
        if (!tok) return -1;
        qvl_tokenizer_free(tok);
    }
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return 0;
}

int main(int argc, char **argv) {
    const char *tok_path = argc > 1 ? argv[1] : "models/tokenizer/tokenizer.json";
    const char *corpus = argc > 2 ? argv[2] : "tests/fixtures/tokenizer/corpus.jsonl";
    size_t n;
    char *lines = qvl_read_file(corpus, &n);
    if (!lines) return fprintf(stderr, "bench: %s\n", qvl_error()), 1;
    utf8_buf unit = {0};
    for (size_t pos = 0; pos < n;) {
        char *nl = memchr(lines + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - lines) : n;
        if (end > pos) {
            if (json_str_parse(lines + pos, end - pos, &unit, NULL, corpus)) return fprintf(stderr, "bench: %s\n", qvl_error()), 1;
            utf8_buf_reserve(&unit, 1);
            unit.data[unit.len++] = '\n';
        }
        pos = end + 1;
    }
    free(lines);
    size_t reps = (BENCH_BYTES + unit.len - 1) / unit.len, len = reps * unit.len;
    char *text = malloc(len + 1);
    for (size_t r = 0; r < reps; r++) memcpy(text + r * unit.len, unit.data, unit.len);
    text[len] = 0;
    free(unit.data);

    double cold[3], warm[5];
    char *cache_dir = qvl_tokenizer_cache_dir_from_env(); /* as the CLI names it */
    if (time_loads(tok_path, NULL, cold, 3)) return fprintf(stderr, "bench: %s\n", qvl_error()), 1;
    qvl_tokenizer_free(qvl_tokenizer_load_cached(tok_path, cache_dir)); /* make sure the cache exists */
    if (time_loads(tok_path, cache_dir, warm, 5)) return fprintf(stderr, "bench: %s\n", qvl_error()), 1;
    free(cache_dir);

    qvl_tokenizer *tok = qvl_tokenizer_load(tok_path);
    double best = 1e30;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    for (int i = 0; i < 3; i++) {
        free(ids);
        double t0 = now_s();
        if (qvl_tokenizer_encode(tok, text, len, &ids, &n_ids)) return fprintf(stderr, "bench: %s\n", qvl_error()), 1;
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    unsigned long long h = 0;
    for (size_t i = 0; i < n_ids; i++) h = h * 1000003ull + (unsigned long long)ids[i];
    printf("{\"load_json_ms_min\": %.1f, \"load_json_ms_median\": %.1f, \"load_cached_ms_min\": %.1f, "
           "\"load_cached_ms_median\": %.1f, \"text_bytes\": %zu, \"ids\": %zu, \"ids_hash\": %llu, "
           "\"encode_s_best\": %.4f, \"encode_MBps\": %.2f}\n",
           cold[0], cold[1], warm[0], warm[2], len, n_ids, h, best, len / best / 1e6);
    free(ids);
    free(text);
    qvl_tokenizer_free(tok);
    return 0;
}
