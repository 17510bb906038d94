/* Many requests in flight through qvl_submit / qvl_step / qvl_poll / qvl_cancel on the tiny models:
 * each request gives the tokens it gives alone (qvl_generate), conversations (messages, several
 * images anywhere), errors that fail one request alone with a code, cancelling, stats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qvl.h"
#include "test.h"
#include "util/file.h"

#define TINY "tests/fixtures/tiny"

static qvl_engine *open_engine(const char *model, long max_model_len, int max_batch) {
    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = model;
    o.device = QVL_DEVICE_CPU;
    o.threads = 2;
    o.max_model_len = max_model_len;
    o.max_batch = max_batch;
    qvl_engine *e = qvl_engine_open(&o);
    if (!e) test_fail(__FILE__, __LINE__, "qvl_engine_open(%s): %s", model, qvl_last_error());
    return e;
}

static int same_tokens(const qvl_result *a, const qvl_result *b) {
    return a->n_tokens == b->n_tokens && !memcmp(a->token_ids, b->token_ids, (size_t)a->n_tokens * sizeof(int32_t));
}

static const char *const IMAGES[] = {TINY "/images/grad64.png", TINY "/images/odd80x112.png",
                                     TINY "/images/shapes96x128.png", TINY "/images/tall128x64.png"};

TEST(engine_requests_match_one_at_a_time) {
    qvl_engine *e = open_engine(TINY "/tied", 512, 0);
    if (!e) return;
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = 8;
    enum { N = 6 };
    qvl_request reqs[N];
    for (int i = 0; i < N; i++) {
        memset(&reqs[i], 0, sizeof reqs[i]);
        reqs[i].image_path = i < 4 ? IMAGES[i] : NULL;
        reqs[i].prompt = i % 2 ? "What is written here?" : "Read the text.";
    }
    /* alone */
    qvl_result alone[N];
    for (int i = 0; i < N; i++) CHECK_INT(qvl_generate(e, &reqs[i], &g, &alone[i]), 0);
    /* all in flight; different lengths so that sequences finish at different steps */
    qvl_gen_opts gs[N];
    for (int i = 0; i < N; i++) {
        gs[i] = g;
        gs[i].max_new_tokens = 2 + i;
    }
    qvl_req_id base = -1;
    for (int i = 0; i < N; i++) {
        qvl_req_id id = qvl_submit(e, &reqs[i], &gs[i]);
        CHECK(id >= 0);
        if (i == 0) base = id;
        CHECK_INT(id, base + i);
    }
    qvl_engine_stats st;
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.waiting, N);
    qvl_event evs[N + 16];
    int seen[N + 16] = {0};
    memset(evs, 0, sizeof evs);
    /* ids continue after the qvl_generate calls: index events by id - base */
    for (int guard = 0; guard < 10000; guard++) {
        int left = qvl_step(e);
        qvl_event ev;
        while (qvl_poll(e, &ev)) {
            int k = (int)(ev.id - base);
            CHECK(k >= 0 && k < N);
            if (k >= 0 && k < N) evs[k] = ev, seen[k]++;
        }
        if (left <= 0) break;
    }
    for (int i = 0; i < N; i++) {
        CHECK_INT(seen[i], 1);
        CHECK_INT(evs[i].status, 0);
        if (evs[i].status) continue;
        qvl_result *r = &evs[i].result;
        int want = alone[i].n_tokens < 2 + i ? alone[i].n_tokens : 2 + i;
        CHECK_INT(r->n_tokens, want);
        CHECK(!memcmp(r->token_ids, alone[i].token_ids, (size_t)want * 4));
        CHECK_INT(r->prompt_tokens, alone[i].prompt_tokens);
        CHECK_INT(r->image_tokens, alone[i].image_tokens);
        qvl_result_free(r);
    }
    for (int i = 0; i < N; i++) qvl_result_free(&alone[i]);
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.waiting, 0);
    CHECK_INT(st.running, 0);
    CHECK_INT(st.requests_finished, 2 * N);
    CHECK(st.max_batch >= 1);
    CHECK(st.generated_tokens > 0 && st.prompt_tokens > 0);
    qvl_engine_close(e);
}

TEST(engine_requests_messages_and_images_anywhere) {
    qvl_engine *e = open_engine(TINY "/untied", 1024, 0);
    if (!e) return;
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = 5;
    /* one user turn of image + text as messages = the image + prompt form */
    qvl_content_part p1[] = {{.image_path = IMAGES[0]}, {.text = "Read the text."}};
    qvl_message m1[] = {{"user", p1, 2}};
    qvl_request as_msgs = {.messages = m1, .n_messages = 1};
    qvl_request plain = {.image_path = IMAGES[0], .prompt = "Read the text."};
    qvl_result a, b;
    CHECK_INT(qvl_generate(e, &as_msgs, &g, &a), 0);
    CHECK_INT(qvl_generate(e, &plain, &g, &b), 0);
    CHECK(same_tokens(&a, &b));
    CHECK_INT(a.prompt_tokens, b.prompt_tokens);
    qvl_result_free(&a);
    qvl_result_free(&b);

    /* a conversation: system, user with two images (text between), assistant, user with a third
     * image from memory after the text */
    size_t n = 0;
    char *bytes = qvl_read_file(IMAGES[3], &n);
    CHECK(bytes != NULL);
    qvl_content_part sys[] = {{.text = "You read text."}};
    qvl_content_part u1[] = {{.image_path = IMAGES[1]}, {.text = "and"}, {.image_path = IMAGES[2]}, {.text = "?"}};
    qvl_content_part a1[] = {{.text = "ok"}};
    qvl_content_part u2[] = {{.text = "now this:"},
                             {.image_data = (const uint8_t *)bytes, .image_size = n, .image_name = "mem.png"}};
    qvl_message conv[] = {{"system", sys, 1}, {"user", u1, 4}, {"assistant", a1, 1}, {"user", u2, 2}};
    qvl_request rc = {.messages = conv, .n_messages = 4};
    CHECK_INT(qvl_generate(e, &rc, &g, &a), 0);
    /* 80x112 -> 12 tokens? whatever the preprocessor says: three images' tokens add up */
    CHECK(a.image_tokens >= 3);
    CHECK(a.n_tokens >= 1);
    /* the same conversation through submit gives the same tokens */
    qvl_req_id id = qvl_submit(e, &rc, &g);
    CHECK(id >= 0);
    free(bytes);   /* submit copied the bytes */
    while (qvl_step(e) > 0) {}
    qvl_event ev;
    CHECK_INT(qvl_poll(e, &ev), 1);
    CHECK_INT(ev.id, id);
    CHECK_INT(ev.status, 0);
    CHECK(same_tokens(&a, &ev.result));
    CHECK_INT(ev.result.image_tokens, a.image_tokens);
    qvl_result_free(&ev.result);
    qvl_result_free(&a);
    CHECK_INT(qvl_poll(e, &ev), 0);

    /* malformed requests are refused at submit with QVL_ERR_INPUT */
    qvl_message badrole[] = {{"robot", sys, 1}};
    qvl_request br = {.messages = badrole, .n_messages = 1};
    CHECK(qvl_submit(e, &br, &g) < 0);
    CHECK_INT(qvl_last_error_code(), QVL_ERR_INPUT);
    CHECK_CONTAINS(qvl_last_error(), "robot");
    qvl_content_part empty[] = {{.text = NULL}};
    qvl_message em[] = {{"user", empty, 1}};
    qvl_request er = {.messages = em, .n_messages = 1};
    CHECK(qvl_submit(e, &er, &g) < 0);
    CHECK_INT(qvl_last_error_code(), QVL_ERR_INPUT);
    qvl_request noprompt = {0};
    CHECK(qvl_submit(e, &noprompt, &g) < 0);
    CHECK_INT(qvl_last_error_code(), QVL_ERR_INPUT);
    qvl_engine_close(e);
}

TEST(engine_requests_fail_alone_cancel_and_codes) {
    qvl_engine *e = open_engine(TINY "/tied", 40, 0);
    if (!e) return;
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = 4;
    char longp[400] = "";
    for (int i = 0; i < 40; i++) strcat(longp, " hello");
    qvl_request good = {.image_path = IMAGES[0], .prompt = "Read."};
    qvl_request corrupt = {.image_data = (const uint8_t *)"not an image", .image_size = 12, .image_name = "junk.png",
                           .prompt = "x"};
    qvl_request toolong = {.prompt = longp};
    qvl_request reqs[] = {good, corrupt, toolong, good, good};
    enum { N = 5 };
    qvl_result alone;
    CHECK_INT(qvl_generate(e, &good, &g, &alone), 0);
    qvl_req_id ids[N];
    for (int i = 0; i < N; i++) CHECK((ids[i] = qvl_submit(e, &reqs[i], &g)) >= 0);
    /* cancel the last one while it waits */
    CHECK_INT(qvl_cancel(e, ids[4]), 0);
    CHECK_INT(qvl_cancel(e, 99999), -1);
    CHECK_INT(qvl_last_error_code(), QVL_ERR_INPUT);
    qvl_event evs[N];
    int seen[N] = {0};
    for (int guard = 0; guard < 1000; guard++) {
        int left = qvl_step(e);
        qvl_event ev;
        while (qvl_poll(e, &ev)) {
            int k = (int)(ev.id - ids[0]);
            CHECK(k >= 0 && k < N);
            if (k >= 0 && k < N) evs[k] = ev, seen[k]++;
        }
        if (left <= 0) break;
    }
    for (int i = 0; i < N; i++) CHECK_INT(seen[i], 1);
    CHECK_INT(evs[0].status, 0);
    CHECK(same_tokens(&evs[0].result, &alone));
    CHECK_INT(evs[1].status, -1);
    CHECK_INT(evs[1].code, QVL_ERR_INPUT);
    CHECK_CONTAINS(evs[1].error, "junk.png");
    CHECK_INT(evs[2].status, -1);
    CHECK_INT(evs[2].code, QVL_ERR_TOO_LONG);
    CHECK_CONTAINS(evs[2].error, "exceeds max-model-len 40");
    CHECK_INT(evs[3].status, 0);
    CHECK(same_tokens(&evs[3].result, &alone));
    CHECK_INT(evs[4].status, -1);
    CHECK_INT(evs[4].code, QVL_ERR_CANCELLED);
    qvl_result_free(&evs[0].result);
    qvl_result_free(&evs[3].result);
    qvl_result_free(&alone);
    /* qvl_generate reports the code of its request's failure */
    qvl_result r;
    CHECK_INT(qvl_generate(e, &toolong, &g, &r), -1);
    CHECK_INT(qvl_last_error_code(), QVL_ERR_TOO_LONG);
    CHECK_INT(qvl_generate(e, &corrupt, &g, &r), -1);
    CHECK_INT(qvl_last_error_code(), QVL_ERR_INPUT);
    qvl_engine_stats st;
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.requests_failed, 5);
    qvl_engine_close(e);

    /* the waiting queue limit */
    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = TINY "/tied";
    o.device = QVL_DEVICE_CPU;
    o.threads = 1;
    o.max_queue = 2;
    e = qvl_engine_open(&o);
    CHECK(e != NULL);
    if (!e) return;
    CHECK(qvl_submit(e, &good, &g) >= 0);
    CHECK(qvl_submit(e, &good, &g) >= 0);
    CHECK(qvl_submit(e, &good, &g) < 0);
    CHECK_INT(qvl_last_error_code(), QVL_ERR_QUEUE_FULL);
    qvl_engine_close(e);   /* closing with requests waiting frees them */

    /* open errors carry codes */
    o = qvl_engine_opts_default();
    o.model_dir = "no/such/model";
    CHECK(qvl_engine_open(&o) == NULL);
    CHECK_INT(qvl_last_error_code(), QVL_ERR_INPUT);
    qvl_tuning t = qvl_tuning_default();
    CHECK_INT(t.no_cuda_graphs, 0); /* all zeros: the measured-best choices */
    CHECK_INT(t.attention, 0);
    CHECK(t.dump_dir == NULL);
    CHECK_INT(qvl_engine_opts_default().tuning.no_cuda_graphs, 0);
}

typedef struct {
    qvl_engine *e;
    qvl_req_id id;
    int pieces;
} cancel_ctx;

static void cancel_after_two(const char *piece, void *user) {
    (void)piece;
    cancel_ctx *c = user;
    if (++c->pieces == 2) CHECK_INT(qvl_cancel(c->e, c->id), 0);
}

TEST(engine_requests_cancel_while_running) {
    qvl_engine *e = open_engine(TINY "/tied", 256, 0);
    if (!e) return;
    qvl_request req = {.prompt = "Count: one two three"};
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = 30;
    cancel_ctx c = {e, -1, 0};
    g.on_token = cancel_after_two;
    g.user = &c;
    c.id = qvl_submit(e, &req, &g);
    CHECK(c.id >= 0);
    while (qvl_step(e) > 0) {}
    qvl_event ev;
    CHECK_INT(qvl_poll(e, &ev), 1);
    CHECK_INT(ev.status, -1);
    CHECK_INT(ev.code, QVL_ERR_CANCELLED);
    CHECK(ev.result.n_tokens >= 2 && ev.result.n_tokens < 30);
    CHECK(ev.result.prompt_tokens > 0);
    qvl_result_free(&ev.result);
    qvl_engine_stats st;
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.running + st.waiting, 0);
    qvl_engine_close(e);
}
