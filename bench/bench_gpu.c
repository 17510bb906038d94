/* GPU benchmark, qvl side: OCRBench-shaped requests (bench/ocrbench_shapes.tsv rows, every Nth),
 * one at a time, each timed from the image in memory to the last generated token: preprocess
 * (resize + patchify) + prompt tokenization + vision tower + prefill + exactly N new tokens (greedy;
 * random-weight models rarely say eos, so both engines are held to the same count: the answer's
 * token count + 1, as bench/README.md asks). Images are
 * synthetic, the same formula as bench/bench_gpu_ref.py. Prints one line per sample and a JSON
 * summary line.
 *   bench_gpu MODEL_DIR TSV [every=10] [new_tokens=0: answer tokens + 1] [threads=0: online CPUs, at most 16]
 * every: N (rows 0, N, 2N, ...) or N+K (rows K, N+K, ...: e.g. 20+10 is the half of every 10th row
 * that 20 leaves out, so a split run covers every 10th row).
 * (preprocessing threads; was 8: on the 16-core GPU host 16 took big images from 13.6 to 8.6 ms)
 * The arena is planned for the workload: its largest image and longest prompt + answer.
 * QVL_BENCH_PROFILE=1: CUDA profiler collection only over the timed rows (ncu/nsys with
 * --profile-from-start off), so that open and the warm-up request stay out of a profile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/cuda/cuda_nvml.h"
#include "cli/tuning_env.h"
#include "image/image.h"
#include "model/model_cuda.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The synthetic image of sample idx: a deterministic texture (bench_gpu_ref.py computes the same). */
static void synth(qvl_image *img, int w, int h, int idx) {
    img->width = w, img->height = h;
    img->rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) img->rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)((x * 7 + y * 13 + c * 50 + idx) & 255);
}

/* The JSON string of a TSV field ("..." with \" and \\ escapes) as plain text, in place. */
static char *unquote(char *s) {
    if (*s != '"') return s;
    char *o = s, *i = s + 1;
    for (; *i && *i != '"'; i++) {
        if (*i == '\\' && i[1]) i++;
        *o++ = *i;
    }
    *o = 0;
    return s;
}

typedef struct {
    int idx, w, h, new_tokens;
    char *question;
} sample;

/* Selected rows of the TSV: every `every`th from row `first`; new tokens = the answer's token
 * count + 1 (README). */
static int read_rows(const char *path, int every, int first, int fixed_new, const qvl_tokenizer *tok, sample **out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    static char line[1 << 16];
    int row = -1, n = 0, cap = 0;
    *out = NULL;
    while (fgets(line, sizeof line, f)) {
        if (row++ < 0 || row - 1 < first || (row - 1 - first) % every) continue;
        char *fld[8] = {0};
        int k = 0;
        for (char *s = strtok(line, "\t\n"); s && k < 8; s = strtok(NULL, "\t\n")) fld[k++] = s;
        if (k < 7) continue;
        if (n == cap) *out = realloc(*out, (cap = cap ? 2 * cap : 64) * sizeof **out);
        sample *x = &(*out)[n++];
        x->idx = atoi(fld[0]), x->w = atoi(fld[3]), x->h = atoi(fld[4]);
        x->question = strdup(unquote(fld[5]));
        int32_t *ids = NULL;
        size_t nids = 0;
        const char *ans = unquote(fld[6]);
        x->new_tokens = fixed_new > 0 ? fixed_new : (qvl_tokenizer_encode(tok, ans, strlen(ans), &ids, &nids) ? 1 : (int)nids + 1);
        free(ids);
    }
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_gpu MODEL_DIR TSV [every=10, or N+K: every Nth from row K] [new_tokens=0: answer tokens + 1] [threads=0: CPUs, <= 16]\n");
        return 2;
    }
    const char *dir = argv[1];
    int every = 10, first = 0, fixed_new = argc > 4 ? atoi(argv[4]) : 0;
    if (argc > 3) {
        char *end;
        every = (int)strtol(argv[3], &end, 10);
        if (*end == '+') first = (int)strtol(end + 1, &end, 10);
        if (*end || every < 1 || first < 0)
            return fprintf(stderr, "bench_gpu: every: '%s' is not N or N+K (N >= 1, K >= 0)\n", argv[3]), 2;
    }
    int threads = argc > 5 ? atoi(argv[5]) : 0;
    if (threads <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus < 1 ? 8 : cpus > 16 ? 16 : (int)cpus;
    }
    char tokpath[1200];
    snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", dir);
    qvl_tokenizer *tok = qvl_tokenizer_load(tokpath);
    if (!tok) return fprintf(stderr, "bench_gpu: %s\n", qvl_error()), 1;
    qvl_config cfg;
    if (qvl_config_load(dir, &cfg)) return fprintf(stderr, "bench_gpu: %s\n", qvl_error()), 1;
    qvl_image_params ip = qvl_image_params_default();
    ip.min_pixels = cfg.preproc.min_pixels, ip.max_pixels = cfg.preproc.max_pixels, ip.threads = threads;
    sample *rows = NULL;
    int n_rows = read_rows(argv[2], every, first, fixed_new, tok, &rows);
    if (n_rows <= 0) return fprintf(stderr, "bench_gpu: %s: no rows\n", argv[2]), 1;
    /* Plan the arena for this workload: the largest image and the longest prompt + answer. */
    long max_px = 0, max_len = 0;
    for (int i = 0; i < n_rows; i++) {
        int rh, rw;
        if (qvl_smart_resize(rows[i].h, rows[i].w, 32, ip.min_pixels, ip.max_pixels, &rh, &rw)) continue;
        long px = (long)rh * rw, toks = px / 1024 + 64 + rows[i].new_tokens;
        if (px > max_px) max_px = px;
        if (toks > max_len) max_len = toks;
    }
    max_len += QVL_PLAN_TEXT_RESERVE;
    double t0 = now_s();
    qvl_cuda_opts o = {.max_model_len = max_len, .max_pixels = max_px};
    qvl_tuning_from_env(&o.tuning); /* QVL_ATT_IMPL, QVL_GEMV_PICK, QVL_NO_GRAPH, QVL_DUMP */
    qvl_gpu_meter gm; /* NVML: this process's GPU memory, sampled after the timed rows */
    qvl_gpu_meter_start(&gm);
    qvl_cuda_model *m = qvl_cuda_model_open(dir, &o);
    if (!m) return fprintf(stderr, "bench_gpu: %s\n", qvl_error()), 1;
    const qvl_mem_plan *p = qvl_cuda_model_plan(m);
    fprintf(stderr, "open %.2f s on %s; max_model_len %ld, max_pixels %ld; plan %.0f MiB (context %.0f, weights %.0f, "
            "kv %.0f, vision %.0f, workspace %.0f), arena %.0f MiB\n",
            now_s() - t0, qvl_cuda_model_device_name(m), max_len, max_px, p->total, p->cuda_context, p->weights,
            p->kv_cache, p->vision_activations, p->workspace, qvl_cuda_model_arena_mib(m));
    fprintf(stderr, "decode GEMV timing at open: %s\n", qvl_cuda_model_gemv_report(m));
    fprintf(stderr, "preprocessing threads: %d\n", threads);
    int setups0 = 0;
    double setup_ms0 = 0, prepare_ms = 0;
    qvl_cuda_model_gemm_setups(m, &setups0, &setup_ms0, &prepare_ms);
    fprintf(stderr, "cuBLASLt shapes prepared at open: %d heuristic queries, %.1f ms of them, %.1f ms in all\n", setups0,
            setup_ms0, prepare_ms);
    int n = 0, total_new = 0;
    double sum_lat = 0, sum_vis = 0, sum_pre = 0, sum_prefill = 0, sum_dec = 0;
    long sum_img_tok = 0;
    uint64_t ids_hash = 1469598103934665603ull; /* FNV-1a over every timed generated id: A/B runs of
                                                 * kernels meant to be bit-identical must agree */
    const int profile = getenv("QVL_BENCH_PROFILE") != NULL; /* profiler on for the timed rows only */
    for (int i = -1; i < n_rows; i++) { /* i = -1: one untimed warm-up request (row 0) */
        if (i == 0 && profile) qvl_cuda_profiler(1);
        const sample *x = &rows[i < 0 ? 0 : i];
        qvl_image img;
        synth(&img, x->w, x->h, x->idx);
        double a = now_s();
        qvl_pixel_values pv = {0};
        int32_t *ids = NULL;
        size_t nids = 0;
        ip.bf16_buf = qvl_cuda_pixel_staging(m, &ip.bf16_buf_bytes); /* NULL: F32 pixels (no pinned memory) */
        ip.out_bf16 = ip.bf16_buf != NULL;
        if (qvl_image_preprocess(&img, &ip, &pv) || qvl_chat_encode_single(tok, x->question, pv.image_tokens, &ids, &nids))
            return fprintf(stderr, "bench_gpu: sample %d: %s\n", x->idx, qvl_error()), 1;
        double b = now_s();
        qvl_cuda_clear_images(m);
        if (ip.out_bf16 ? qvl_cuda_encode_image_bf16(m, &pv, ip.bf16_buf) : qvl_cuda_encode_image(m, &pv)) return fprintf(stderr, "bench_gpu: sample %d: %s\n", x->idx, qvl_error()), 1;
        double c = now_s();
        int id = qvl_cuda_prefill(m, ids, (int)nids);
        double d = now_s();
        uint64_t h = ids_hash;
        for (int t = 1; t < x->new_tokens && id >= 0; t++) {
            h = (h ^ (uint64_t)(uint32_t)id) * 1099511628211ull;
            id = qvl_cuda_decode(m, id);
        }
        double e = now_s();
        if (i >= 0) ids_hash = (h ^ (uint64_t)(uint32_t)id) * 1099511628211ull;
        if (id < 0) return fprintf(stderr, "bench_gpu: sample %d: %s\n", x->idx, qvl_error()), 1;
        if (i >= 0) {
            n++;
            total_new += x->new_tokens;
            sum_lat += e - a, sum_pre += b - a, sum_vis += c - b, sum_prefill += d - c, sum_dec += e - d;
            sum_img_tok += pv.image_tokens;
            int setups = 0;
            double setup_ms = 0, unused = 0;
            qvl_cuda_model_gemm_setups(m, &setups, &setup_ms, &unused);
            printf("sample %d %dx%d tokens %d+%zu new %d latency_ms %.2f pre %.2f vision %.2f prefill %.2f decode %.2f "
                   "gemm_setups %d %.2f ms\n",
                   x->idx, x->w, x->h, pv.image_tokens, nids - pv.image_tokens, x->new_tokens, 1e3 * (e - a),
                   1e3 * (b - a), 1e3 * (c - b), 1e3 * (d - c), 1e3 * (e - d), setups - setups0, setup_ms - setup_ms0);
            setups0 = setups, setup_ms0 = setup_ms;
            fflush(stdout);
        }
        qvl_pixel_values_free(&pv);
        free(ids);
        qvl_image_free(&img);
    }
    qvl_gpu_meter_sample(&gm);
    printf("{\"engine\": \"qvl\", \"device\": \"%s\", \"samples\": %d, \"new_tokens\": %d, \"samples_per_s\": %.4f, "
           "\"mean_latency_ms\": %.2f, \"mean_preprocess_ms\": %.2f, \"mean_vision_ms\": %.2f, \"mean_prefill_ms\": %.2f, "
           "\"mean_decode_ms\": %.2f, \"mean_image_tokens\": %.1f, \"plan_mib\": %.0f, "
           "\"arena_mib\": %.0f, \"context_mib\": %.0f, \"peak_device_used_mib\": %.0f, \"peak_nvml_mib\": %.0f, \"nvml_measure\": \"%s\", "
           "\"ids_hash\": \"%016llx\"}\n",
           qvl_cuda_model_device_name(m), n, total_new, n / sum_lat, 1e3 * sum_lat / n, 1e3 * sum_pre / n,
           1e3 * sum_vis / n, 1e3 * sum_prefill / n, 1e3 * sum_dec / n, (double)sum_img_tok / n, p->total,
           qvl_cuda_model_arena_mib(m), p->cuda_context, qvl_cuda_model_peak_mib(m), gm.peak_mib,
           qvl_gpu_measure_name(gm.measure), (unsigned long long)ids_hash);
    if (profile) qvl_cuda_profiler(0);
    qvl_cuda_model_close(m);
    for (int i = 0; i < n_rows; i++) free(rows[i].question);
    free(rows);
    qvl_tokenizer_free(tok);
    return 0;
}
