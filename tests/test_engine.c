/* The engine API (include/qvl.h) on the tiny fixture models: greedy tokens against the transformers
 * reference (tests/fixtures/tiny/ref, made by tools/gen_tiny_models.py), streaming, sampling
 * determinism, context overflow, downscaling, and errors that leave the engine usable. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/backend.h"
#include "io/npy.h"
#include "qvl.h"
#include "test.h"
#include "util/file.h"

#define TINY "tests/fixtures/tiny"

static qvl_engine *open_tiny(const char *model, long max_model_len) {
    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = model;
    o.device = QVL_DEVICE_CPU;
    o.threads = 2;
    o.max_model_len = max_model_len;
    qvl_engine *e = qvl_engine_open(&o);
    if (!e) test_fail(__FILE__, __LINE__, "qvl_engine_open(%s): %s", model, qvl_last_error());
    return e;
}

/* One reference case: its prompt text and (at most one) image path. */
typedef struct {
    char text[256];
    char image[256];
    int n_images;
} ref_case;

static int read_case(const char *name, ref_case *c) {
    char path[512];
    snprintf(path, sizeof path, TINY "/ref/%s/prompt.txt", name);
    char *s = qvl_read_file(path, NULL);
    if (!s) return -1;
    cJSON *j = cJSON_Parse(s);
    free(s);
    if (!j) return -1;
    snprintf(c->text, sizeof c->text, "%s", cJSON_GetObjectItem(j, "text")->valuestring);
    cJSON *im = cJSON_GetObjectItem(j, "images");
    c->n_images = cJSON_GetArraySize(im);
    c->image[0] = 0;
    if (c->n_images > 0)
        snprintf(c->image, sizeof c->image, TINY "/images/%s", cJSON_GetArrayItem(im, 0)->valuestring);
    cJSON_Delete(j);
    return 0;
}

static long npy_len(const char *path) {
    qvl_npy a;
    if (qvl_npy_read(path, &a)) return -1;
    long n = (long)a.shape[a.ndim - 1];
    qvl_npy_free(&a);
    return n;
}

/* The bf16 spacing at |x|: two F32 logits closer than this may round to the same bf16 value. */
static double bf16_ulp(double x) {
    int e;
    frexp(fabs(x), &e);
    return ldexp(1.0, e - 8);
}

/* Greedy tokens of every single-image and text-only case equal the reference up to the first
 * step whose reference top-1/top-2 margin is too small to decide after bf16 rounding (plus a
 * small allowance for F32 differences); afterwards the sequences may legitimately diverge. */
static void check_greedy_against_reference(const char *model, int min_checked) {
    static const char *cases[] = {"img_square", "img_wide", "img_resize", "text_only"};
    char mdir[256];
    snprintf(mdir, sizeof mdir, TINY "/%s", model);
    qvl_engine *e = open_tiny(mdir, 0);
    if (!e) return;
    int total_checked = 0;
    for (int ci = 0; ci < 4; ci++) {
        ref_case c;
        CHECK_INT(read_case(cases[ci], &c), 0);
        char p[512];
        qvl_npy tok, mar, top;
        snprintf(p, sizeof p, TINY "/ref/%s/%s/gen_tokens.npy", cases[ci], model);
        CHECK_INT(qvl_npy_read(p, &tok), 0);
        snprintf(p, sizeof p, TINY "/ref/%s/%s/gen_margins.npy", cases[ci], model);
        CHECK_INT(qvl_npy_read(p, &mar), 0);
        snprintf(p, sizeof p, TINY "/ref/%s/%s/gen_top1.npy", cases[ci], model);
        CHECK_INT(qvl_npy_read(p, &top), 0);
        snprintf(p, sizeof p, TINY "/ref/%s/input_ids.npy", cases[ci]);
        long prompt_len = npy_len(p);

        qvl_request req = {.image_path = c.n_images ? c.image : NULL, .prompt = c.text};
        qvl_gen_opts g = qvl_gen_opts_default();
        g.max_new_tokens = (int)tok.shape[0];
        qvl_result r;
        int rc = qvl_generate(e, &req, &g, &r);
        if (rc) test_fail(__FILE__, __LINE__, "%s/%s: %s", model, cases[ci], qvl_last_error());
        CHECK_INT(rc, 0);
        if (rc == 0) {
            CHECK_INT(r.prompt_tokens, prompt_len);
            const int64_t *ref = tok.data;
            const float *m = mar.data, *t1 = top.data;
            int n_ref = (int)tok.shape[0], checked = 0;
            for (int i = 0; i < n_ref && i < r.n_tokens; i++) {
                if (m[i] <= bf16_ulp(t1[i]) + 1e-3) break;
                if (r.token_ids[i] != ref[i])
                    test_fail(__FILE__, __LINE__, "%s/%s: step %d: token %d, reference %lld (margin %.4f)", model,
                              cases[ci], i, r.token_ids[i], (long long)ref[i], m[i]);
                checked++;
            }
            total_checked += checked;
            CHECK(r.n_tokens >= 1 && r.n_tokens <= n_ref);
            CHECK(r.finish_reason == QVL_FINISH_STOP || r.n_tokens == n_ref);
            CHECK(r.text != NULL);
        }
        qvl_result_free(&r);
        qvl_npy_free(&tok);
        qvl_npy_free(&mar);
        qvl_npy_free(&top);
    }
    if (getenv("QVL_TEST_VERBOSE")) printf("    %s: %d greedy steps compared\n", model, total_checked);
    CHECK(total_checked >= min_checked);
    qvl_engine_close(e);
}

TEST(engine_greedy_matches_reference_tied) { check_greedy_against_reference("tied", 100); }
TEST(engine_greedy_matches_reference_untied) { check_greedy_against_reference("untied", 10); }

typedef struct {
    char buf[4096];
    size_t len;
    int calls;
} collected;

static void collect(const char *piece, void *user) {
    collected *c = user;
    size_t n = strlen(piece);
    if (c->len + n < sizeof c->buf) {
        memcpy(c->buf + c->len, piece, n + 1);
        c->len += n;
    }
    c->calls++;
}

TEST(engine_stream_memory_image_sampling_and_errors) {
    qvl_engine *e = open_tiny(TINY "/tied", 0);
    if (!e) return;
    CHECK_CONTAINS(qvl_engine_device_name(e), "cpu");
    const char *img = TINY "/images/shapes96x128.png";
    qvl_request req = {.image_path = img, .prompt = "What is written here? Answer briefly."};
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = 12;

    /* streaming pieces add up to the text */
    collected col = {{0}, 0, 0};
    g.on_token = collect;
    g.user = &col;
    qvl_result a;
    CHECK_INT(qvl_generate(e, &req, &g, &a), 0);
    CHECK_INT(a.n_tokens, 12);
    CHECK(a.finish_reason == QVL_FINISH_LENGTH);
    CHECK_STR(col.buf, a.text);
    CHECK(col.calls >= 1);
    CHECK_INT(a.image_tokens, (96 / 32) * (128 / 32));
    CHECK(a.total_s >= a.prefill_s && a.ttft_s > 0 && a.ttft_s <= a.total_s);
    CHECK(qvl_engine_peak_memory_mib(e) > 1);
    g.on_token = NULL;

    /* the same image from memory gives the same tokens */
    size_t n = 0;
    char *bytes = qvl_read_file(img, &n);
    qvl_request mem = {.image_data = (const uint8_t *)bytes, .image_size = n, .image_name = "mem.png",
                       .prompt = req.prompt};
    qvl_result b;
    CHECK_INT(qvl_generate(e, &mem, &g, &b), 0);
    CHECK_INT(b.n_tokens, a.n_tokens);
    CHECK(b.n_tokens == a.n_tokens && !memcmp(a.token_ids, b.token_ids, (size_t)a.n_tokens * 4));
    qvl_result_free(&b);

    /* a corrupt image is an error naming it; the engine stays usable */
    qvl_request bad = {.image_data = (const uint8_t *)"not an image", .image_size = 12, .image_name = "junk.png",
                       .prompt = "x"};
    CHECK_INT(qvl_generate(e, &bad, &g, &b), -1);
    CHECK_CONTAINS(qvl_last_error(), "junk.png");
    qvl_request missing = {.image_path = "no/such.png", .prompt = "x"};
    CHECK_INT(qvl_generate(e, &missing, &g, &b), -1);
    CHECK_CONTAINS(qvl_last_error(), "no/such.png");

    /* sampling: the same seed gives the same tokens, another seed other tokens */
    g.sample = 1;
    g.seed = 11;
    g.max_new_tokens = 16;
    qvl_result s1, s2, s3;
    CHECK_INT(qvl_generate(e, &req, &g, &s1), 0);
    CHECK_INT(qvl_generate(e, &req, &g, &s2), 0);
    g.seed = 12;
    g.temperature = 5.0;   /* flat enough that 16 draws cannot all agree */
    g.top_k = 0;
    g.top_p = 1.0;
    CHECK_INT(qvl_generate(e, &req, &g, &s3), 0);
    CHECK(s1.n_tokens == s2.n_tokens && !memcmp(s1.token_ids, s2.token_ids, (size_t)s1.n_tokens * 4));
    int same = s1.n_tokens == s3.n_tokens;
    for (int i = 0; same && i < s1.n_tokens; i++) same = s1.token_ids[i] == s3.token_ids[i];
    CHECK(!same);
    qvl_result_free(&s1);
    qvl_result_free(&s2);
    qvl_result_free(&s3);
    /* the greedy request still gives the first answer */
    g = qvl_gen_opts_default();
    g.max_new_tokens = 12;
    CHECK_INT(qvl_generate(e, &req, &g, &b), 0);
    CHECK(b.n_tokens == a.n_tokens && !memcmp(a.token_ids, b.token_ids, (size_t)a.n_tokens * 4));
    qvl_result_free(&b);
    qvl_result_free(&a);
    free(bytes);
    qvl_engine_close(e);
}

TEST(engine_context_overflow_and_downscale) {
    /* img_wide: 12 image tokens + 18 text tokens = 30 */
    qvl_engine *e = open_tiny(TINY "/tied", 24);
    if (!e) return;
    qvl_request req = {.image_path = TINY "/images/shapes96x128.png", .prompt = "What is written here? Answer briefly."};
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = 4;
    qvl_result r;
    CHECK_INT(qvl_generate(e, &req, &g, &r), -1);
    CHECK_CONTAINS(qvl_last_error(), "shapes96x128.png: prompt of 30 tokens (12 image tokens) exceeds max-model-len 24");
    g.on_overflow_downscale = 1;
    CHECK_INT(qvl_generate(e, &req, &g, &r), 0);
    CHECK_INT(r.downscaled_from_tokens, 12);
    CHECK(r.image_tokens >= 1 && r.image_tokens <= 4);
    CHECK(r.prompt_tokens <= 23);
    CHECK(r.n_tokens >= 1 && r.prompt_tokens + r.n_tokens <= 24);
    qvl_result_free(&r);
    /* text alone too long: no downscale can help */
    char longp[400];
    memset(longp, 0, sizeof longp);
    for (int i = 0; i < 30; i++) strcat(longp, " hello");
    qvl_request t = {.prompt = longp};
    CHECK_INT(qvl_generate(e, &t, &g, &r), -1);
    CHECK_CONTAINS(qvl_last_error(), "exceeds max-model-len 24");
    /* generation stops at the end of the context */
    qvl_request shortp = {.prompt = "hi"};
    g.max_new_tokens = 100;
    CHECK_INT(qvl_generate(e, &shortp, &g, &r), 0);
    CHECK(r.prompt_tokens + r.n_tokens <= 24);
    CHECK(r.finish_reason == QVL_FINISH_STOP || r.prompt_tokens + r.n_tokens == 24);
    qvl_result_free(&r);
    qvl_engine_close(e);
}

TEST(engine_open_errors) {
    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = "no/such/model";
    CHECK(qvl_engine_open(&o) == NULL);
    CHECK_STR(qvl_last_error(), "no/such/model: no such model folder");
    o.model_dir = TINY "/tied";
    o.max_model_len = 1L << 30;
    CHECK(qvl_engine_open(&o) == NULL);
    CHECK_CONTAINS(qvl_last_error(), "exceeds the model's max_position_embeddings");
    o.max_model_len = 0;
    o.device = QVL_DEVICE_CUDA;
    const qvl_backend_ops *cuda = qvl_backend_find("cuda");   /* absent from a build without CUDA */
    if (!cuda || cuda->devices() == 0) {
        CHECK(qvl_engine_open(&o) == NULL);
        CHECK_STR(qvl_last_error(), "cuda: no usable CUDA device");
    }
}

/* A model folder that is tiny/tied with another generation_config.json: its eos ids end the answer. */
TEST(engine_stops_on_generation_config_eos) {
    char dir[600], src[PATH_MAX], path[700];
    snprintf(dir, sizeof dir, "%s/eos_model", test_tmpdir());
    CHECK_INT(mkdir(dir, 0755), 0);
    static const char *files[] = {"config.json", "preprocessor_config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, TINY "/tied/%s", files[i]);
        CHECK(realpath(path, src) != NULL);
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        CHECK_INT(symlink(src, path), 0);
    }
    /* 93808 ("jn") is the first greedy token of img_wide on the tied model */
    const char *gc = "{\"eos_token_id\": [151645, 93808], \"do_sample\": false}";
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    CHECK_INT(qvl_write_file_atomic(path, gc, strlen(gc)), 0);
    qvl_engine *e = open_tiny(dir, 0);
    if (!e) return;
    qvl_request req = {.image_path = TINY "/images/shapes96x128.png", .prompt = "What is written here? Answer briefly."};
    qvl_gen_opts g = qvl_gen_opts_default();
    qvl_result r;
    CHECK_INT(qvl_generate(e, &req, &g, &r), 0);
    CHECK_INT(r.n_tokens, 1);
    CHECK_INT(r.token_ids[0], 93808);
    CHECK(r.finish_reason == QVL_FINISH_STOP);
    CHECK_STR(r.text, "jn");
    qvl_result_free(&r);
    qvl_engine_close(e);
}
