/* CPU reference forward throughput on real Qwen3-VL shapes with random weights (no checkpoint
 * needed): the vision tower on one image of P patches, then text prefill of S tokens and D decode
 * steps through L decoder layers (the per-layer time scales to the real depth). Prints one JSON line.
 *
 * usage: bench_cpu_forward [--size 2b|4b|8b] [--threads N] [--patches P] [--prefill S] [--decode D]
 *                          [--text-layers L] [--vision-blocks B]
 * build: cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_cpu_forward.c build/libqvl.a \
 *        $(LDLIBS of the Makefile) -o build/bench_cpu_forward */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/forward.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/pool.h"
#include "model/config.h"
#include "model/weights.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static unsigned rng = 12345;
static float *rand_buf(size_t n, float scale) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        rng = rng * 1664525u + 1013904223u;
        p[i] = ((float)(rng >> 8) / 16777216.0f - 0.5f) * scale;
    }
    return p;
}

int main(int argc, char **argv) {
    const char *size = "2b";
    int threads = 0, patches = 1024, prefill = 256, decode = 16, text_layers = 2, vision_blocks = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size")) size = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--patches")) patches = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prefill")) prefill = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode")) decode = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--text-layers")) text_layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--vision-blocks")) vision_blocks = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    /* docs/model.md table 1.2 */
    qvl_config c;
    memset(&c, 0, sizeof c);
    int is8 = !strcmp(size, "8b"), is4 = !strcmp(size, "4b");
    int real_layers = is8 || is4 ? 36 : 28, real_blocks = is8 ? 27 : 24;
    c.text = (qvl_text_config){.hidden_size = is8 ? 4096 : is4 ? 2560 : 2048,
                               .intermediate_size = is8 ? 12288 : is4 ? 9728 : 6144,
                               .num_layers = text_layers, .num_heads = is8 || is4 ? 32 : 16, .num_kv_heads = 8,
                               .head_dim = 128, .vocab_size = 151936, .rms_norm_eps = 1e-6, .rope_theta = 5e6,
                               .mrope_section = {24, 20, 20}, .mrope_interleaved = 1};
    c.vision = (qvl_vision_config){.depth = vision_blocks, .hidden_size = is8 ? 1152 : 1024,
                                   .intermediate_size = is8 ? 4304 : 4096, .num_heads = 16,
                                   .out_hidden_size = c.text.hidden_size, .patch_size = 16, .temporal_patch_size = 2,
                                   .spatial_merge_size = 2, .in_channels = 3, .num_position_embeddings = 2304,
                                   .n_deepstack = 0};
    const int D = c.text.hidden_size, I = c.text.intermediate_size, q = c.text.num_heads * 128, kv = 8 * 128;
    const int Dv = c.vision.hidden_size, Iv = c.vision.intermediate_size;

    qvl_vision_w vw = {0};
    vw.patch_w = rand_buf((size_t)Dv * 1536, 0.05f);
    vw.patch_b = rand_buf(Dv, 0.1f);
    vw.pos_embed = rand_buf((size_t)2304 * Dv, 1.0f);
    vw.blocks = calloc(vision_blocks, sizeof *vw.blocks);
    for (int b = 0; b < vision_blocks; b++) {
        qvl_vision_block_w *k = &vw.blocks[b];
        k->norm1_w = k->norm2_w = rand_buf(Dv, 2.0f);
        k->norm1_b = k->norm2_b = rand_buf(Dv, 0.1f);
        k->qkv_w = rand_buf((size_t)3 * Dv * Dv, 0.06f);
        k->qkv_b = rand_buf(3 * Dv, 0.1f);
        k->proj_w = rand_buf((size_t)Dv * Dv, 0.06f);
        k->proj_b = rand_buf(Dv, 0.1f);
        k->fc1_w = rand_buf((size_t)Iv * Dv, 0.06f);
        k->fc1_b = rand_buf(Iv, 0.1f);
        k->fc2_w = rand_buf((size_t)Dv * Iv, 0.03f);
        k->fc2_b = rand_buf(Dv, 0.1f);
    }
    vw.merger.norm_w = rand_buf(Dv, 2.0f);
    vw.merger.norm_b = rand_buf(Dv, 0.1f);
    vw.merger.fc1_w = rand_buf((size_t)16 * Dv * Dv, 0.03f);
    vw.merger.fc1_b = rand_buf(4 * Dv, 0.1f);
    vw.merger.fc2_w = rand_buf((size_t)4 * Dv * D, 0.03f);
    vw.merger.fc2_b = rand_buf(D, 0.1f);

    qvl_text_w tw = {0};
    tw.embed = tw.lm_head = rand_buf((size_t)151936 * D, 0.2f);
    tw.norm = rand_buf(D, 2.0f);
    tw.layers = calloc(text_layers, sizeof *tw.layers);
    for (int l = 0; l < text_layers; l++) {
        qvl_text_layer_w *L = &tw.layers[l];
        L->in_norm = L->post_norm = rand_buf(D, 2.0f);
        L->q_norm = L->k_norm = rand_buf(128, 2.0f);
        L->q_w = rand_buf((size_t)q * D, 0.04f);
        L->k_w = rand_buf((size_t)kv * D, 0.04f);
        L->v_w = rand_buf((size_t)kv * D, 0.04f);
        L->o_w = rand_buf((size_t)D * q, 0.04f);
        L->gate_w = rand_buf((size_t)I * D, 0.04f);
        L->up_w = rand_buf((size_t)I * D, 0.04f);
        L->down_w = rand_buf((size_t)D * I, 0.02f);
    }

    qvl_pool *pool = qvl_pool_new(threads);
    threads = qvl_pool_threads(pool);
    /* A square-ish grid of about `patches` patches (even sides). */
    int gh = 2 * (int)lround(sqrt(patches) / 2), gw = 2 * ((patches / gh + 1) / 2);
    int n_patch = gh * gw;
    float *pixels = rand_buf((size_t)n_patch * 1536, 2.0f);
    float *embeds = malloc((size_t)n_patch / 4 * D * sizeof(float));
    double t0 = now();
    qvl_cpu_vision_forward(pool, &c, &vw, pixels, 1, gh, gw, embeds, NULL);
    double vision_s = now() - t0;

    qvl_cpu_text_state st;
    if (qvl_cpu_text_state_init(&st, &c, prefill + decode, 256, threads) != 0) return 1;
    int32_t *ids = malloc(sizeof(int32_t) * prefill), *pos = malloc(sizeof(int32_t) * 3 * prefill);
    for (int i = 0; i < prefill; i++) ids[i] = (i * 7919) % 151000, pos[i] = pos[prefill + i] = pos[2 * prefill + i] = i;
    float *logits = malloc(151936 * sizeof(float));
    t0 = now();
    for (int c0 = 0; c0 < prefill; c0 += 256) {
        int n = prefill - c0 < 256 ? prefill - c0 : 256;
        int32_t p3[3 * 256];
        for (int k = 0; k < 3; k++) memcpy(p3 + k * n, pos + k * prefill + c0, n * sizeof(int32_t));
        qvl_cpu_text_forward(pool, &c, &tw, &st, ids + c0, n, c0, p3, n, NULL, NULL, 0,
                             c0 + n == prefill ? logits : NULL, NULL);
    }
    double prefill_s = now() - t0;
    t0 = now();
    for (int t = 0; t < decode; t++) {
        int32_t id = t + 100, p = prefill + t, p3[3] = {p, p, p};
        qvl_cpu_text_forward(pool, &c, &tw, &st, &id, 1, prefill + t, p3, 1, NULL, NULL, 0, logits, NULL);
    }
    double decode_s = (now() - t0) / decode;
    /* lm_head alone, to separate it from the per-layer cost when scaling to the real depth */
    t0 = now();
    qvl_cpu_matmul(pool, logits, st.y, tw.lm_head, NULL, 1, D, 151936);
    double head_s = now() - t0;
    double per_block = vision_s / vision_blocks, per_layer_decode = (decode_s - head_s) / text_layers;
    printf("{\"size\": \"%s\", \"threads\": %d, \"patches\": %d, \"vision_blocks_run\": %d, \"vision_s\": %.3f, "
           "\"vision_s_full_depth\": %.2f, \"prefill_tokens\": %d, \"text_layers_run\": %d, \"prefill_s\": %.3f, "
           "\"prefill_s_full_depth\": %.2f, \"decode_ms_per_token\": %.1f, \"decode_ms_per_token_full_depth\": %.1f}\n",
           size, threads, n_patch, vision_blocks, vision_s, per_block * real_blocks, prefill, text_layers, prefill_s,
           prefill_s / text_layers * real_layers, decode_s * 1e3, (per_layer_decode * real_layers + head_s) * 1e3);
    return 0;
}
