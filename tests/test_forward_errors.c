/* The CPU model on bad input: broken model folders, prompts that do not fit, pads that do not
 * match the images, bad pixel values; and chunked prefill giving the same logits as one chunk. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "test.h"
#include "util/error.h"
#include "util/file.h"

#define FIX "tests/fixtures/tiny"

/* A scratch copy of a fixture model folder: config files copied (config.json through `edit`),
 * the weights left to the caller. */
static void make_model_dir(const char *dst, const char *src, const char *from, const char *to) {
    mkdir(dst, 0755);
    const char *files[] = {"config.json", "preprocessor_config.json", "generation_config.json"};
    for (int i = 0; i < 3; i++) {
        char p[512], q[512];
        snprintf(p, sizeof p, "%s/%s", src, files[i]);
        snprintf(q, sizeof q, "%s/%s", dst, files[i]);
        size_t len;
        char *text = qvl_read_file(p, &len);
        CHECK(text != NULL);
        if (!text) return;
        char *hit = i == 0 && from ? strstr(text, from) : NULL;
        FILE *f = fopen(q, "wb");
        if (hit) {
            fwrite(text, 1, (size_t)(hit - text), f);
            fputs(to, f);
            fputs(hit + strlen(from), f);
        } else
            fwrite(text, 1, len, f);
        fclose(f);
        free(text);
    }
}

static void link_weights(const char *dst_dir, const char *name, const char *src_model) {
    char src[4096], real[4096], dst[512];
    snprintf(src, sizeof src, "%s/model.safetensors", src_model);
    CHECK(realpath(src, real) != NULL);
    snprintf(dst, sizeof dst, "%s/%s", dst_dir, name);
    CHECK_INT(symlink(real, dst), 0);
}

/* Opening the model folder fails with a one-line error that names `what`. */
static void check_open_fails(const char *dir, const char *what) {
    qvl_model *m = qvl_model_open(dir, 1);
    CHECK(m == NULL);
    CHECK_CONTAINS(qvl_error(), what);
    CHECK(strchr(qvl_error(), '\n') == NULL);
    qvl_model_close(m);
}

TEST(forward_error_missing_shard) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/missing_shard", test_tmpdir());
    make_model_dir(dir, FIX "/untied", NULL, NULL);
    link_weights(dir, "model-00001-of-00002.safetensors", FIX "/untied");
    /* Index: every tensor in shard 1 except lm_head.weight, said to be in the absent shard 2. */
    qvl_safetensors *st = qvl_st_open(FIX "/untied/model.safetensors");
    CHECK(st != NULL);
    if (!st) return;
    size_t cap = 1 << 16, len = 0;
    char *json = malloc(cap);
    len += snprintf(json + len, cap - len, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < qvl_st_count(st); i++) {
        const char *nm = qvl_st_get(st, i)->name;
        len += snprintf(json + len, cap - len, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", nm,
                        strcmp(nm, "lm_head.weight") == 0 ? 2 : 1);
    }
    len += snprintf(json + len, cap - len, "}}");
    qvl_st_close(st);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    CHECK_INT(qvl_write_file_atomic(path, json, len), 0);
    free(json);
    check_open_fails(dir, "model-00002-of-00002.safetensors");
}

TEST(forward_error_shape_mismatch) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bad_shape", test_tmpdir());
    /* The untied text MLP is 48 wide; claim 40. */
    make_model_dir(dir, FIX "/untied", "\"intermediate_size\": 48", "\"intermediate_size\": 40");
    link_weights(dir, "model.safetensors", FIX "/untied");
    check_open_fails(dir, "mlp.gate_proj.weight");
}

TEST(forward_error_deepstack_beyond_depth) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bad_taps", test_tmpdir());
    make_model_dir(dir, FIX "/untied", "\"deepstack_visual_indexes\": [\n      0,\n      2\n    ]",
                   "\"deepstack_visual_indexes\": [0, 3]");
    link_weights(dir, "model.safetensors", FIX "/untied");
    check_open_fails(dir, "deepstack");
}

TEST(forward_error_no_weights) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/no_weights", test_tmpdir());
    make_model_dir(dir, FIX "/tied", NULL, NULL);
    qvl_model *m = qvl_model_open(dir, 1);
    CHECK(m == NULL);
    CHECK(strlen(qvl_error()) > 0);
    qvl_model_close(m);
}

static int32_t *read_ids(const char *cname, int *n) {
    char path[256];
    snprintf(path, sizeof path, FIX "/ref/%s/input_ids.npy", cname);
    qvl_npy a;
    if (qvl_npy_read(path, &a) != 0) return NULL;
    *n = (int)a.shape[0];
    int32_t *ids = malloc(*n * sizeof *ids);
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)((int64_t *)a.data)[i];
    qvl_npy_free(&a);
    return ids;
}

TEST(forward_error_prompt_too_long_and_bad_prompts) {
    qvl_model *m = qvl_model_open(FIX "/tied", 2);
    CHECK(m != NULL);
    if (!m) return;
    int n = 0;
    int32_t *ids = read_ids("text_only", &n);
    CHECK(ids != NULL && n > 8);
    float *logits = malloc(151936 * sizeof(float));
    qvl_seq *s = qvl_seq_new(m, 8);
    CHECK_INT(qvl_seq_prefill(m, s, ids, n, NULL, 0, logits), -1);
    CHECK_CONTAINS(qvl_error(), "exceed the context of 8 tokens");
    CHECK_INT(qvl_seq_len(s), 0);
    /* Fits exactly, then the cache is full. */
    CHECK_INT(qvl_seq_prefill(m, s, ids, 8, NULL, 0, logits), 0);
    CHECK_INT(qvl_seq_decode(m, s, 42, logits), -1);
    CHECK_CONTAINS(qvl_error(), "context of 8 tokens is full");
    qvl_seq_free(s);

    s = qvl_seq_new(m, 64);
    int32_t bad[2] = {1, 151936};
    CHECK_INT(qvl_seq_prefill(m, s, bad, 2, NULL, 0, logits), -1);
    CHECK_CONTAINS(qvl_error(), "outside the vocabulary");
    CHECK_INT(qvl_seq_prefill(m, s, ids, 0, NULL, 0, logits), -1);
    free(ids);
    /* An image prompt without its image. */
    ids = read_ids("img_square", &n);
    CHECK_INT(qvl_seq_prefill(m, s, ids, n, NULL, 0, logits), -1);
    CHECK_CONTAINS(qvl_error(), "<|image_pad|>");
    CHECK_INT(qvl_seq_len(s), 0);
    qvl_seq_free(s);
    free(ids);

    /* Pixel rows of the wrong length / a grid that is not a multiple of the merge. */
    float px[16 * 1536] = {0};
    qvl_pixel_values pv = {px, 16, 1000, 1, 4, 4, 64, 64, 4};
    qvl_vision_out out;
    CHECK_INT(qvl_model_encode_image(m, &pv, &out), -1);
    CHECK_CONTAINS(qvl_error(), "1536");
    pv = (qvl_pixel_values){px, 15, 1536, 1, 3, 5, 48, 80, 3};
    CHECK_INT(qvl_model_encode_image(m, &pv, &out), -1);
    CHECK_CONTAINS(qvl_error(), "merge");
    free(logits);
    qvl_model_close(m);
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double md = 0;
    for (int i = 0; i < n; i++) md = fmax(md, fabs(a[i] - b[i]));
    return md;
}

/* A model with fixture case `cname`'s prompt ids and its one image encoded (pixel geometry from
 * pv; its data is the case's pixel_values.npy), and two logits buffers to compare. */
typedef struct {
    qvl_model *m;
    int32_t *ids;
    int n;
    qvl_npy px;
    qvl_vision_out img;
    float *a, *b;
} image_case;

static int image_case_open(image_case *c, const char *model, const char *cname, qvl_pixel_values pv) {
    *c = (image_case){0};
    c->m = qvl_model_open(model, 2);
    CHECK(c->m != NULL);
    if (!c->m) return -1;
    c->ids = read_ids(cname, &c->n);
    char path[256];
    snprintf(path, sizeof path, FIX "/ref/%s/pixel_values.npy", cname);
    CHECK_INT(qvl_npy_read(path, &c->px), 0);
    pv.data = c->px.data;
    CHECK_INT(qvl_model_encode_image(c->m, &pv, &c->img), 0);
    c->a = malloc(151936 * sizeof(float));
    c->b = malloc(151936 * sizeof(float));
    return 0;
}

static void image_case_close(image_case *c) {
    free(c->a);
    free(c->b);
    qvl_vision_out_free(&c->img);
    qvl_npy_free(&c->px);
    free(c->ids);
    qvl_model_close(c->m);
}

/* Prefill in chunks of 5 tokens (image rows and deepstack spanning chunk borders) gives the
 * logits of a single chunk. */
TEST(forward_chunked_prefill_matches_single_chunk) {
    image_case c;
    if (image_case_open(&c, FIX "/untied", "img_wide", (qvl_pixel_values){NULL, 48, 1536, 1, 6, 8, 96, 128, 12}))
        return;
    qvl_seq *s1 = qvl_seq_new(c.m, 64), *s2 = qvl_seq_new_chunked(c.m, 64, 5);
    CHECK_INT(qvl_seq_prefill(c.m, s1, c.ids, c.n, &c.img, 1, c.a), 0);
    CHECK_INT(qvl_seq_prefill(c.m, s2, c.ids, c.n, &c.img, 1, c.b), 0);
    CHECK(max_abs_diff(c.a, c.b, 151936) < 1e-4);
    /* And a decode step after each agrees too. */
    CHECK_INT(qvl_seq_decode(c.m, s1, 100, c.a), 0);
    CHECK_INT(qvl_seq_decode(c.m, s2, 100, c.b), 0);
    CHECK(max_abs_diff(c.a, c.b, 151936) < 1e-4);
    CHECK_INT(qvl_seq_rope_delta(s1), qvl_seq_rope_delta(s2));
    CHECK(qvl_seq_rope_delta(s1) < 0);
    qvl_seq_free(s1);
    qvl_seq_free(s2);
    image_case_close(&c);
}

/* Threads split work without changing any sum: 1 and 3 threads give bit-identical logits. */
TEST(forward_thread_count_does_not_change_results) {
    float *a = malloc(151936 * sizeof(float)), *b = malloc(151936 * sizeof(float));
    int n = 0;
    int32_t *ids = read_ids("two_images", &n);
    qvl_npy px;
    CHECK_INT(qvl_npy_read(FIX "/ref/two_images/pixel_values.npy", &px), 0);
    float *out[2] = {a, b};
    int threads[2] = {1, 3};
    for (int r = 0; r < 2; r++) {
        qvl_model *m = qvl_model_open(FIX "/tied", threads[r]);
        CHECK(m != NULL);
        if (!m) break;
        CHECK_INT(qvl_model_threads(m), threads[r]);
        qvl_pixel_values pv1 = {px.data, 16, 1536, 1, 4, 4, 64, 64, 4};
        qvl_pixel_values pv2 = {(float *)px.data + 16 * 1536, 32, 1536, 1, 8, 4, 128, 64, 8};
        qvl_vision_out img[2];
        CHECK_INT(qvl_model_encode_image(m, &pv1, &img[0]), 0);
        CHECK_INT(qvl_model_encode_image(m, &pv2, &img[1]), 0);
        qvl_seq *s = qvl_seq_new(m, 64);
        CHECK_INT(qvl_seq_prefill(m, s, ids, n, img, 2, out[r]), 0);
        CHECK_INT(qvl_seq_decode(m, s, 7, out[r]), 0);
        qvl_seq_free(s);
        qvl_vision_out_free(&img[0]);
        qvl_vision_out_free(&img[1]);
        qvl_model_close(m);
    }
    CHECK(memcmp(a, b, 151936 * sizeof(float)) == 0);
    qvl_npy_free(&px);
    free(ids);
    free(a);
    free(b);
}

/* A prompt prefilled in two calls (image in the first, text in the second) equals one call, and
 * a reset sequence behaves like a new one. */
TEST(forward_prefill_continuation_and_reset) {
    image_case c;
    if (image_case_open(&c, FIX "/tied", "img_square", (qvl_pixel_values){NULL, 16, 1536, 1, 4, 4, 64, 64, 4}))
        return;
    qvl_seq *s1 = qvl_seq_new(c.m, 32), *s2 = qvl_seq_new(c.m, 32);
    CHECK_INT(qvl_seq_prefill(c.m, s1, c.ids, c.n, &c.img, 1, c.a), 0);
    CHECK_INT(qvl_seq_prefill(c.m, s2, c.ids, 10, &c.img, 1, NULL), 0);
    CHECK_INT(qvl_seq_prefill(c.m, s2, c.ids + 10, c.n - 10, NULL, 0, c.b), 0);
    CHECK_INT(qvl_seq_len(s2), c.n);
    CHECK_INT(qvl_seq_rope_delta(s1), qvl_seq_rope_delta(s2));
    CHECK(max_abs_diff(c.a, c.b, 151936) < 1e-4);
    qvl_seq_reset(s2);
    CHECK_INT(qvl_seq_len(s2), 0);
    CHECK_INT(qvl_seq_prefill(c.m, s2, c.ids, c.n, &c.img, 1, c.b), 0);
    CHECK(max_abs_diff(c.a, c.b, 151936) == 0);
    qvl_seq_free(s1);
    qvl_seq_free(s2);
    image_case_close(&c);
}
