/* `qvl serve` end to end (docs/cli.md "qvl serve"): the server runs as a child process on a free
 * port and the tests talk raw HTTP over sockets (tests/serve_proc.h). Answers must equal `qvl run`
 * (and the library's qvl_generate for conversations) for the same prompt, image and settings;
 * every error has OpenAI's shape and its status; malformed, truncated and slow requests never bring
 * the server down; a client that goes away cancels its request; SIGTERM/SIGINT exit 0 (under
 * `make test-asan` that also means nothing leaked). The official OpenAI client for node runs in
 * serve_openai_node_client (tests/serve/client.mjs). */
#include <cjson/cJSON.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qvl.h"
#include "serve_proc.h"
#include "test.h"
#include "util/file.h"

#define OCR "models/qvl-tiny-ocr"
#define TIED "tests/fixtures/tiny/tied"   /* random weights: answers run to max_tokens (long requests) */
#define HELDOUT_IMAGES "tests/fixtures/tiny-ocr-heldout/images"
#define IMG0 HELDOUT_IMAGES "/00000.png"
#define IMG1 HELDOUT_IMAGES "/00001.png"
#define PROMPT "What is written in the image?"
#define CPU "--device cpu --threads 2 "

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- request bodies ---- */

/* {"role": "user", "content": [{image}, {text}]} (image may be NULL: text only). */
static cJSON *user_msg(const char *image_path, const char *text) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON *c = cJSON_AddArrayToObject(m, "content");
    if (image_path) {
        char *url = data_url_of_file(image_path, "image/png");
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "image_url");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(p, "image_url"), "url", url ? url : "");
        cJSON_AddItemToArray(c, p);
        free(url);
    }
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "type", "text");
    cJSON_AddStringToObject(t, "text", text);
    cJSON_AddItemToArray(c, t);
    return m;
}

/* A one-turn chat body; temperature < 0: not sent (the checkpoint's sampling); seed < 0: not sent. */
static char *chat_body(const char *image_path, const char *text, int max_tokens, double temperature, long seed,
                       int stream) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", "qvl");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "messages"), user_msg(image_path, text));
    cJSON_AddNumberToObject(o, "max_tokens", max_tokens);
    if (temperature >= 0) cJSON_AddNumberToObject(o, "temperature", temperature);
    if (seed >= 0) cJSON_AddNumberToObject(o, "seed", (double)seed);
    if (stream) {
        cJSON_AddTrueToObject(o, "stream");
        cJSON_AddTrueToObject(cJSON_AddObjectToObject(o, "stream_options"), "include_usage");
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* choices[0].message.content of a chat.completion (malloc'd), its finish_reason and usage. */
static char *completion_text(const char *body, char *finish, size_t fl, int *prompt_tokens, int *completion_tokens) {
    cJSON *j = cJSON_Parse(body);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "message"), "content");
    const cJSON *f = cJSON_GetObjectItem(ch, "finish_reason");
    const cJSON *u = cJSON_GetObjectItem(j, "usage");
    snprintf(finish, fl, "%s", cJSON_IsString(f) ? f->valuestring : "");
    *prompt_tokens = cJSON_GetObjectItem(u, "prompt_tokens") ? cJSON_GetObjectItem(u, "prompt_tokens")->valueint : -1;
    *completion_tokens =
        cJSON_GetObjectItem(u, "completion_tokens") ? cJSON_GetObjectItem(u, "completion_tokens")->valueint : -1;
    char *s = cJSON_IsString(c) ? strdup(c->valuestring) : NULL;
    cJSON_Delete(j);
    return s;
}

/* `qvl run --json ARGS`: the answer's text, finish reason, prompt tokens and generated ids. */
typedef struct {
    char *text;
    char finish[16];
    int prompt_tokens, n_tokens;
} run_ref;

static int run_reference(run_ref *r, const char *args) {
    memset(r, 0, sizeof *r);
    char *out = NULL;
    int rc = test_qvl(&out, NULL, "run " CPU "--json %s", args);
    cJSON *j = rc == 0 ? cJSON_Parse(out) : NULL;
    free(out);
    if (!j) return -1;
    r->text = strdup(cJSON_GetObjectItem(j, "text")->valuestring);
    snprintf(r->finish, sizeof r->finish, "%s", cJSON_GetObjectItem(j, "finish_reason")->valuestring);
    r->prompt_tokens = cJSON_GetObjectItem(j, "prompt_tokens")->valueint;
    r->n_tokens = cJSON_GetArraySize(cJSON_GetObjectItem(j, "token_ids"));
    cJSON_Delete(j);
    return 0;
}

/* POST /v1/chat/completions with body; the reply's status (0: no reply). */
static int post_chat(int port, const char *body, http_reply *r) {
    if (http_request(port, "POST", "/v1/chat/completions", body, r, 60000)) return 0;
    return r->status;
}

/* The error object of an error reply: checks its shape, returns its message (malloc'd). */
static char *error_message(const http_reply *r, int status) {
    cJSON *j = cJSON_Parse(r->body ? r->body : "");
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    const cJSON *m = cJSON_GetObjectItem(e, "message"), *t = cJSON_GetObjectItem(e, "type"),
                *c = cJSON_GetObjectItem(e, "code");
    CHECK(cJSON_IsString(m) && cJSON_IsString(t) && cJSON_IsNumber(c));
    if (c) CHECK_INT(c->valueint, status);
    char *s = cJSON_IsString(m) ? strdup(m->valuestring) : strdup("");
    cJSON_Delete(j);
    return s;
}

/* Expects status and an error message containing `contains` for body. */
static void expect_error(int port, const char *body, int status, const char *contains) {
    http_reply r;
    int got = post_chat(port, body, &r);
    if (got != status) test_fail(__FILE__, __LINE__, "status %d for %.80s, want %d", got, body, status);
    char *m = error_message(&r, status);
    CHECK_CONTAINS(m, contains);
    free(m);
    http_reply_free(&r);
}

static char *get_metrics(int port) {
    http_reply r;
    if (http_request(port, "GET", "/metrics", NULL, &r, 10000)) return strdup("");
    free(r.head);
    return r.body;
}

/* Waits up to timeout_s for metric `name` to reach at least `want`; its last value. */
static double wait_metric(int port, const char *name, double want, double timeout_s) {
    double end = now_s() + timeout_s, v = -1;
    for (;;) {
        char *m = get_metrics(port);
        v = metric_value(m, name);
        free(m);
        if (v >= want || now_s() > end) return v;
        usleep(50000);
    }
}

/* ---- tests ---- */

TEST(serve_usage_errors) {
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, NULL, "serve --help"), 0);
    CHECK_CONTAINS(out, "usage: qvl serve --model DIR");
    free(out);
    CHECK_INT(test_qvl(NULL, &err, "serve"), 2);
    CHECK_CONTAINS(err, "qvl: serve: --model DIR is required");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "serve --model " TIED " --port 70000"), 2);
    CHECK_CONTAINS(err, "--port must be in [0, 65535]");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "serve --model " TIED " --allowed-media-dir /no/such/dir"), 1);
    CHECK_STR(err, "qvl: /no/such/dir: No such file or directory\n");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "serve --model " TIED " --host no.such.host.invalid"), 1);
    CHECK_CONTAINS(err, "no.such.host.invalid: cannot resolve the address to listen on");
    free(err);
    /* a missing model: one line, exit 1, the port is given back */
    CHECK_INT(test_qvl(NULL, &err, "serve " CPU "--port 0 --model /no/such/model"), 1);
    CHECK_CONTAINS(err, "/no/such/model");
    CHECK(err && !strchr(err, '\n')[1]);
    free(err);
}

TEST(serve_answers_equal_qvl_run) {
    run_ref greedy, sampled;
    CHECK_INT(run_reference(&greedy, "--model " OCR " --image " IMG0 " --prompt '" PROMPT "' --max-new-tokens 20"), 0);
    CHECK_INT(run_reference(&sampled, "--model " TIED " --prompt 'Hi' --max-new-tokens 12 --sample --seed 7"), 0);
    CHECK_STR(greedy.finish, "stop");
    CHECK(greedy.text && strlen(greedy.text) > 0);

    serve_proc ocr, tied;
    CHECK_INT(serve_proc_start(&ocr, CPU "--model " OCR, 60), 0);
    CHECK_INT(serve_proc_start(&tied, CPU "--model " TIED, 60), 0);
    http_reply r;
    char finish[16];
    int pt, ct;

    /* temperature 0: greedy, as `qvl run` without --sample */
    char *body = chat_body(IMG0, PROMPT, 20, 0, -1, 0);
    CHECK_INT(post_chat(ocr.port, body, &r), 200);
    CHECK_CONTAINS(r.head, "Content-Type: application/json");
    char *text = completion_text(r.body, finish, sizeof finish, &pt, &ct);
    CHECK_STR(text, greedy.text);
    CHECK_STR(finish, greedy.finish);
    CHECK_INT(pt, greedy.prompt_tokens);
    CHECK_INT(ct, greedy.n_tokens);
    CHECK_CONTAINS(r.body, "\"object\":\"chat.completion\"");
    CHECK_CONTAINS(r.body, "\"model\":\"qvl-tiny-ocr\"");
    free(text);
    free(body);
    http_reply_free(&r);

    /* streamed: the deltas concatenate to the same text; finish reason, usage chunk, [DONE] */
    body = chat_body(IMG0, PROMPT, 20, 0, -1, 1);
    CHECK_INT(post_chat(ocr.port, body, &r), 200);
    CHECK_CONTAINS(r.head, "Content-Type: text/event-stream");
    int done = 0;
    text = sse_content(r.body, finish, sizeof finish, &done);
    CHECK_STR(text, greedy.text);
    CHECK_STR(finish, "stop");
    CHECK(done);
    char usage[128];
    snprintf(usage, sizeof usage, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d", greedy.prompt_tokens,
             greedy.n_tokens);
    CHECK_CONTAINS(r.body, usage);
    CHECK_CONTAINS(r.body, "\"delta\":{\"role\":\"assistant\"");
    free(text);
    free(body);
    http_reply_free(&r);

    /* no sampling fields: generation_config.json's sampling, as `qvl run --sample` (same seed) */
    body = chat_body(NULL, "Hi", 12, -1, 7, 0);
    CHECK_INT(post_chat(tied.port, body, &r), 200);
    text = completion_text(r.body, finish, sizeof finish, &pt, &ct);
    CHECK_STR(text, sampled.text);
    CHECK_STR(finish, sampled.finish);
    CHECK_STR(finish, "length");
    CHECK_INT(ct, 12);
    free(text);
    free(body);
    http_reply_free(&r);
    /* ... and the same seed streamed gives the same text again */
    body = chat_body(NULL, "Hi", 12, -1, 7, 1);
    CHECK_INT(post_chat(tied.port, body, &r), 200);
    text = sse_content(r.body, finish, sizeof finish, &done);
    CHECK_STR(text, sampled.text);
    CHECK_STR(finish, "length");
    free(text);
    free(body);
    http_reply_free(&r);

    /* stop strings: the answer ends before the first one, finish_reason "stop" */
    if (greedy.text && strlen(greedy.text) >= 3) {
        char stop[8] = {greedy.text[2], greedy.text[3], 0};
        const char *cut = strstr(greedy.text, stop);
        cJSON *o = cJSON_Parse(body = chat_body(IMG0, PROMPT, 20, 0, -1, 0));
        free(body);
        cJSON_AddStringToObject(o, "stop", stop);
        body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        CHECK_INT(post_chat(ocr.port, body, &r), 200);
        text = completion_text(r.body, finish, sizeof finish, &pt, &ct);
        CHECK(text && cut && strlen(text) == (size_t)(cut - greedy.text) && !strncmp(text, greedy.text, strlen(text)));
        CHECK_STR(finish, "stop");
        free(text);
        free(body);
        http_reply_free(&r);
    }

    /* the other endpoints */
    CHECK_INT(http_request(ocr.port, "GET", "/v1/models", NULL, &r, 10000), 0);
    CHECK_INT(r.status, 200);
    CHECK_CONTAINS(r.body, "\"id\":\"qvl-tiny-ocr\"");
    CHECK_CONTAINS(r.body, "\"object\":\"list\"");
    http_reply_free(&r);
    CHECK_INT(http_request(ocr.port, "GET", "/health", NULL, &r, 10000), 0);
    CHECK_INT(r.status, 200);
    http_reply_free(&r);
    char *m = get_metrics(ocr.port);
    CHECK_INT(metric_value(m, "qvl_chat_requests_total{outcome=\"ok\"}"), 3);
    CHECK_INT(metric_value(m, "qvl_completion_tokens_total"), 2 * greedy.n_tokens + ct);
    CHECK_INT(metric_value(m, "qvl_engine_requests_waiting"), 0);
    CHECK(metric_value(m, "qvl_kv_blocks_used") >= 0);
    CHECK(metric_value(m, "qvl_memory_peak_mib{measure=\"peak resident set\"}") > 0);
    free(m);

    CHECK_INT(serve_proc_stop(&ocr, SIGTERM, 30), 0);
    CHECK_INT(serve_proc_stop(&tied, SIGINT, 30), 0);
    free(greedy.text);
    free(sampled.text);
}

/* A conversation with images in earlier turns: the same text as the library's qvl_generate on
 * the same messages. */
TEST(serve_multi_turn_with_images_in_history) {
    qvl_content_part p1[] = {{.image_path = IMG0}, {.text = PROMPT}};
    qvl_content_part p2[] = {{.text = "606620"}};
    qvl_content_part p3[] = {{.image_path = IMG1}, {.text = "And in this one?"}};
    qvl_content_part p0[] = {{.text = "You read text in images."}};
    qvl_message msgs[] = {{"system", p0, 1}, {"user", p1, 2}, {"assistant", p2, 1}, {"user", p3, 2}};
    qvl_engine_opts eo = qvl_engine_opts_default();
    eo.model_dir = OCR;
    eo.device = QVL_DEVICE_CPU;
    eo.threads = 2;
    qvl_engine *e = qvl_engine_open(&eo);
    CHECK(e != NULL);
    if (!e) return;
    qvl_request req = {.messages = msgs, .n_messages = 4};
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = 20;
    qvl_result ref;
    CHECK_INT(qvl_generate(e, &req, &g, &ref), 0);
    qvl_engine_close(e);

    cJSON *o = cJSON_CreateObject();
    cJSON *ms = cJSON_AddArrayToObject(o, "messages");
    cJSON *sys = cJSON_CreateObject();
    cJSON_AddStringToObject(sys, "role", "system");
    cJSON_AddStringToObject(sys, "content", "You read text in images.");
    cJSON_AddItemToArray(ms, sys);
    cJSON_AddItemToArray(ms, user_msg(IMG0, PROMPT));
    cJSON *as = cJSON_CreateObject();
    cJSON_AddStringToObject(as, "role", "assistant");
    cJSON_AddStringToObject(as, "content", "606620");
    cJSON_AddItemToArray(ms, as);
    cJSON_AddItemToArray(ms, user_msg(IMG1, "And in this one?"));
    cJSON_AddNumberToObject(o, "max_completion_tokens", 20);
    cJSON_AddNumberToObject(o, "temperature", 0);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);

    serve_proc s;
    CHECK_INT(serve_proc_start(&s, CPU "--model " OCR, 60), 0);
    http_reply r;
    char finish[16];
    int pt, ct;
    CHECK_INT(post_chat(s.port, body, &r), 200);
    char *text = completion_text(r.body, finish, sizeof finish, &pt, &ct);
    CHECK_STR(text, ref.text);
    CHECK_INT(pt, ref.prompt_tokens);
    CHECK_INT(ct, ref.n_tokens);
    CHECK(ref.image_tokens > 0);
    free(text);
    http_reply_free(&r);
    free(body);
    qvl_result_free(&ref);
    CHECK_INT(serve_proc_stop(&s, SIGTERM, 30), 0);
}

/* Every refusal: OpenAI's error JSON with its status. */
TEST(serve_errors_have_their_status) {
    serve_proc s;
    CHECK_INT(serve_proc_start(&s, CPU "--model " TIED " --max-body 60000 --max-images 1 --max-image-pixels 5000 --max-image-bytes 20000"
                                   " --max-model-len 64 --max-queue 1 --batch 1 --allowed-media-dir tests/fixtures/tiny/images",
                               60),
              0);
    int port = s.port;
    expect_error(port, "{\"messages\": [", 400, "request body: not valid JSON");
    expect_error(port, "", 400, "request body: not valid JSON");
    expect_error(port, "[1, 2]", 400, "request body: must be a JSON object");
    expect_error(port, "{\"model\": \"x\"}", 400, "messages: must be a non-empty array");
    expect_error(port, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 2}", 400, "n: only n = 1");
    expect_error(port, "{\"messages\": [{\"role\": \"tool\", \"content\": \"hi\"}]}", 400, "is not supported");
    expect_error(port, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": -1}", 400,
                 "temperature");
    expect_error(port, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 0}", 400,
                 "max_tokens");
    const char *img_part = "{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"%s\"}}, "
                           "{\"type\": \"text\", \"text\": \"hi\"}]}";
    char body[4096], msg[2048];
    snprintf(msg, sizeof msg, img_part, "data:image/png;base64,@@@not base64@@@");
    snprintf(body, sizeof body, "{\"messages\": [%s]}", msg);
    expect_error(port, body, 400, "messages[0].content[0]");
    snprintf(msg, sizeof msg, img_part, "data:image/png;base64,aGVsbG8gd29ybGQ=");   /* "hello world" */
    snprintf(body, sizeof body, "{\"messages\": [%s]}", msg);
    expect_error(port, body, 400, "messages[0].content[0]");
    snprintf(msg, sizeof msg, img_part, "https://example.com/cat.png");
    snprintf(body, sizeof body, "{\"messages\": [%s]}", msg);
    expect_error(port, body, 400, "remote URLs are not fetched");
    snprintf(msg, sizeof msg, img_part, "/etc/passwd");
    snprintf(body, sizeof body, "{\"messages\": [%s]}", msg);
    expect_error(port, body, 400, "no such image in the allowed media folder");
    snprintf(msg, sizeof msg, img_part, "tests/fixtures/tiny/images/../../tiny-ocr-heldout/images/00000.png");
    snprintf(body, sizeof body, "{\"messages\": [%s]}", msg);
    expect_error(port, body, 400, "no such image in the allowed media folder");
    /* a file under --allowed-media-dir, by path and as a file:// URL */
    http_reply ok;
    snprintf(msg, sizeof msg, img_part, "tests/fixtures/tiny/images/grad64.png");
    snprintf(body, sizeof body, "{\"messages\": [%s], \"max_tokens\": 2}", msg);
    CHECK_INT(post_chat(port, body, &ok), 200);
    http_reply_free(&ok);
    char cwd[1024], url[1400];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(url, sizeof url, "file://%s/tests/fixtures/tiny/images/grad64.png", cwd);
    snprintf(msg, sizeof msg, img_part, url);
    snprintf(body, sizeof body, "{\"messages\": [%s], \"max_tokens\": 2}", msg);
    CHECK_INT(post_chat(port, body, &ok), 200);
    CHECK_CONTAINS(ok.body, "\"prompt_tokens\":");
    http_reply_free(&ok);
    /* two images, limit 1 */
    char *b = chat_body("tests/fixtures/tiny/images/grad64.png", "hi", 2, 0, -1, 0);
    cJSON *o = cJSON_Parse(b);
    free(b);
    cJSON *c = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "messages"), 0), "content");
    cJSON_InsertItemInArray(c, 0, cJSON_Duplicate(cJSON_GetArrayItem(c, 0), 1));
    b = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    expect_error(port, b, 400, "more than 1 images in one request");
    free(b);
    /* 112 x 80 = 8960 pixels, limit 5000: 413 */
    b = chat_body("tests/fixtures/tiny/images/odd80x112.png", "hi", 2, 0, -1, 0);
    expect_error(port, b, 413, "image of 8960 pixels, limit 5000");
    free(b);
    /* 26341 bytes, limit 20000 (--max-image-bytes): 413, by path and as a data: URL */
    b = chat_body("tests/fixtures/tiny/images/shapes96x128.png", "hi", 2, 0, -1, 0);
    expect_error(port, b, 413, "bytes, limit 20000");
    free(b);
    snprintf(msg, sizeof msg, img_part, "tests/fixtures/tiny/images/shapes96x128.png");
    snprintf(body, sizeof body, "{\"messages\": [%s]}", msg);
    expect_error(port, body, 413, "image file of 26341 bytes, limit 20000");
    /* a body over --max-body: 413 (announced by Content-Length, refused before it is read) */
    char *big = malloc(70001);
    memset(big, ' ', 70000);
    big[0] = '{', big[69999] = '}', big[70000] = 0;
    expect_error(port, big, 413, "request body: larger than 60000 bytes");
    free(big);
    /* a prompt longer than --max-model-len: found by the engine, still 400 */
    char longp[2048] = "";
    for (int i = 0; i < 100; i++) strcat(longp, "word ");
    b = chat_body(NULL, longp, 2, 0, -1, 0);
    expect_error(port, b, 400, "max-model-len");
    free(b);
    /* a short request works between the refusals */
    http_reply r;
    b = chat_body(NULL, "hi", 3, 0, -1, 0);
    CHECK_INT(post_chat(port, b, &r), 200);
    http_reply_free(&r);
    free(b);
    /* 404, 405 */
    CHECK_INT(http_request(port, "GET", "/v1/completions", NULL, &r, 10000), 0);
    CHECK_INT(r.status, 404);
    free(error_message(&r, 404));
    http_reply_free(&r);
    CHECK_INT(http_request(port, "GET", "/v1/chat/completions", NULL, &r, 10000), 0);
    CHECK_INT(r.status, 405);
    free(error_message(&r, 405));
    http_reply_free(&r);
    CHECK_INT(http_request(port, "POST", "/health", "{}", &r, 10000), 0);
    CHECK_INT(r.status, 405);
    http_reply_free(&r);

    /* 503 + Retry-After when the queue is full: one request runs (--batch 1), one waits
     * (--max-queue 1), the third is refused at once. */
    char *longreq = chat_body(NULL, "hi", 40, 0, -1, 1);
    char *longreq2 = chat_body(NULL, "hi", 40, 0, -1, 0);
    char head[256];
    int fa = http_connect(port), fb = http_connect(port);
    snprintf(head, sizeof head, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
             strlen(longreq));
    CHECK_INT(http_send_all(fa, head, strlen(head)), 0);
    CHECK_INT(http_send_all(fa, longreq, strlen(longreq)), 0);
    CHECK(wait_metric(port, "qvl_engine_requests_running", 1, 20) >= 1);
    snprintf(head, sizeof head, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
             strlen(longreq2));
    CHECK_INT(http_send_all(fb, head, strlen(head)), 0);
    CHECK_INT(http_send_all(fb, longreq2, strlen(longreq2)), 0);
    CHECK(wait_metric(port, "qvl_engine_requests_waiting", 1, 20) >= 1);
    CHECK_INT(post_chat(port, longreq2, &r), 503);
    CHECK_CONTAINS(r.head, "Retry-After: 1");
    char *em = error_message(&r, 503);
    CHECK_CONTAINS(em, "queue");
    free(em);
    http_reply_free(&r);
    close(fa);
    close(fb);
    free(longreq);
    free(longreq2);
    char *m = get_metrics(port);
    CHECK(metric_value(m, "qvl_http_requests_total{code=\"400\"}") >= 13);
    CHECK_INT(metric_value(m, "qvl_http_requests_total{code=\"413\"}"), 4);   /* pixels, bytes x2, body */
    CHECK_INT(metric_value(m, "qvl_http_requests_total{code=\"503\"}"), 1);
    free(m);
    CHECK_INT(serve_proc_stop(&s, SIGTERM, 30), 0);
}

/* A seeded byte-level fuzz of valid bodies, truncated bodies, garbage, silent and slow clients:
 * every reply is a status line with a JSON error, and the server still answers afterwards. */
TEST(serve_survives_malformed_and_slow_clients) {
    serve_proc s;
    CHECK_INT(serve_proc_start(&s, CPU "--model " OCR " --timeout 1 --max-connections 32", 60), 0);
    int port = s.port;
    char *valid = chat_body(IMG0, PROMPT, 2, 0, -1, 0);
    size_t vl = strlen(valid);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int bad_status = 0, replies = 0;
    for (int i = 0; i < 60; i++) {
        char *b = strdup(valid);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        if (i % 3 == 0) b[(rng >> 33) % vl * (i + 1) / 61] = 0;   /* truncated JSON */
        else
            for (int k = 0; k < 1 + i % 5; k++) {               /* flipped bytes */
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                b[(rng >> 33) % vl] = (char)(1 + (rng >> 20) % 255);
            }
        http_reply r;
        int st = post_chat(port, b, &r);
        if (st) replies++;
        if (st != 200 && st != 400 && st != 413) {
            bad_status++;
            fprintf(stdout, "    fuzz %d: status %d\n", i, st);
        }
        http_reply_free(&r);
        free(b);
    }
    CHECK_INT(bad_status, 0);
    CHECK_INT(replies, 60);
    /* garbage instead of HTTP, a body shorter than its Content-Length, then gone */
    const char *junk[] = {"\x01\x02\x03\xff\xfe garbage\r\n\r\n", "GET\r\n\r\n",
                          "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{\"messages\": [",
                          "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n{}",
                          "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        int fd = http_connect(port);
        CHECK(fd >= 0);
        http_send_all(fd, junk[i], strlen(junk[i]));
        if (i == 2) {   /* close half-way; the server must drop the request */
            close(fd);
            continue;
        }
        http_reply r;
        http_read_reply(fd, 3000, &r);
        http_reply_free(&r);
        close(fd);
    }
    /* slow clients: ten that send nothing are closed after --timeout; ten that drip a header byte
     * every 200 ms do not keep a normal request from being answered */
    int silent[10], drip[10];
    for (int i = 0; i < 10; i++) {
        silent[i] = http_connect(port);
        drip[i] = http_connect(port);
        http_send_all(drip[i], "POST /v1/chat/completions HTTP/1.1\r\nX-Slow: ", 45);
    }
    http_reply r;
    CHECK_INT(post_chat(port, valid, &r), 200);
    http_reply_free(&r);
    for (int t = 0; t < 5; t++) {
        for (int i = 0; i < 10; i++) http_send_all(drip[i], "a", 1);
        usleep(200000);
    }
    double t0 = now_s();
    int closed = 0;
    for (int i = 0; i < 10; i++) {
        struct pollfd pf = {.fd = silent[i], .events = POLLIN};
        char c;
        if (poll(&pf, 1, 3000) == 1 && recv(silent[i], &c, 1, 0) <= 0) closed++;
        close(silent[i]);
        close(drip[i]);
    }
    CHECK_INT(closed, 10);
    CHECK(now_s() - t0 < 4);
    CHECK_INT(http_request(port, "GET", "/health", NULL, &r, 10000), 0);
    CHECK_INT(r.status, 200);
    http_reply_free(&r);
    CHECK_INT(post_chat(port, valid, &r), 200);
    http_reply_free(&r);
    free(valid);
    CHECK_INT(serve_proc_stop(&s, SIGTERM, 30), 0);
}

/* A client that disconnects cancels its request: the engine stops generating for it. */
TEST(serve_client_disconnect_cancels) {
    serve_proc s;
    CHECK_INT(serve_proc_start(&s, CPU "--model " TIED, 60), 0);
    int port = s.port;
    for (int stream = 1; stream >= 0; stream--) {
        char *b = chat_body(NULL, "hi", 3000, 0, -1, stream);
        char head[256];
        snprintf(head, sizeof head, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                 strlen(b));
        int fd = http_connect(port);
        CHECK_INT(http_send_all(fd, head, strlen(head)), 0);
        CHECK_INT(http_send_all(fd, b, strlen(b)), 0);
        free(b);
        if (stream) {   /* read until some text has come */
            char buf[4096];
            size_t got = 0;
            double end = now_s() + 20;
            while (got < 1500 && now_s() < end) {
                struct pollfd pf = {.fd = fd, .events = POLLIN};
                if (poll(&pf, 1, 1000) != 1) continue;
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n <= 0) break;
                got += (size_t)n;
            }
            CHECK(got >= 1500);
        } else {
            CHECK(wait_metric(port, "qvl_engine_requests_running", 1, 20) >= 1);
        }
        close(fd);
        CHECK_INT(wait_metric(port, "qvl_chat_requests_total{outcome=\"cancelled\"}", 2 - stream, 20), 2 - stream);
    }
    char *m = get_metrics(port);
    CHECK_INT(metric_value(m, "qvl_engine_requests_running"), 0);
    CHECK_INT(metric_value(m, "qvl_engine_requests_waiting"), 0);
    CHECK_INT(metric_value(m, "qvl_kv_blocks_used"), 0);
    CHECK(metric_value(m, "qvl_engine_generated_tokens_total") < 3000);   /* neither ran to its end */
    CHECK_INT(metric_value(m, "qvl_chat_requests_total{outcome=\"ok\"}"), 0);
    free(m);
    CHECK_INT(serve_proc_stop(&s, SIGTERM, 30), 0);
}

/* SIGTERM with a request in flight: it is cancelled after --grace, its stream ends with an error
 * event and [DONE], and the server exits 0 (under ASan: with no leak). */
TEST(serve_sigterm_stops_cleanly) {
    serve_proc s;
    CHECK_INT(serve_proc_start(&s, CPU "--model " TIED " --grace 0.2", 60), 0);
    char *b = chat_body(NULL, "hi", 3000, 0, -1, 1);
    char head[256];
    snprintf(head, sizeof head, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
             strlen(b));
    int fd = http_connect(s.port);
    CHECK_INT(http_send_all(fd, head, strlen(head)), 0);
    CHECK_INT(http_send_all(fd, b, strlen(b)), 0);
    free(b);
    CHECK(wait_metric(s.port, "qvl_engine_requests_running", 1, 20) >= 1);
    double t0 = now_s();
    kill(s.pid, SIGTERM);
    http_reply r;
    CHECK_INT(http_read_reply(fd, 20000, &r), 0);
    close(fd);
    CHECK_INT(r.status, 200);
    CHECK_CONTAINS(r.body, "\"error\"");
    CHECK_CONTAINS(r.body, "data: [DONE]");
    http_reply_free(&r);
    CHECK_INT(serve_proc_stop(&s, SIGTERM, 30), 0);
    CHECK(now_s() - t0 < 20);
    char *log = serve_proc_log(&s);
    CHECK_CONTAINS(log, "SIGTERM: stopping");
    CHECK_CONTAINS(log, "qvl serve: stopped\n");
    free(log);
    /* an idle server stops at once on SIGINT */
    CHECK_INT(serve_proc_start(&s, CPU "--model " TIED, 60), 0);
    CHECK_INT(serve_proc_stop(&s, SIGINT, 30), 0);
}

/* Sixteen clients at once each get the answer to their own image. */
typedef struct {
    int port, index;
    char *text;
    int status;
} client_arg;

static void *client(void *p) {
    client_arg *a = p;
    char img[256];
    snprintf(img, sizeof img, HELDOUT_IMAGES "/%05d.png", a->index);
    char *body = chat_body(img, PROMPT, 24, 0, -1, a->index % 2);
    http_reply r;
    a->status = post_chat(a->port, body, &r);
    char finish[16];
    int pt, ct, done;
    a->text = a->index % 2 ? sse_content(r.body, finish, sizeof finish, &done)
                           : completion_text(r.body ? r.body : "", finish, sizeof finish, &pt, &ct);
    http_reply_free(&r);
    free(body);
    return NULL;
}

TEST(serve_concurrent_clients_get_their_own_answers) {
    enum { N = 16 };
    qvl_engine_opts eo = qvl_engine_opts_default();
    eo.model_dir = OCR;
    eo.device = QVL_DEVICE_CPU;
    eo.threads = 2;
    qvl_engine *e = qvl_engine_open(&eo);
    CHECK(e != NULL);
    if (!e) return;
    char *ref[N];
    for (int i = 0; i < N; i++) {
        char img[256];
        snprintf(img, sizeof img, HELDOUT_IMAGES "/%05d.png", i);
        qvl_request req = {.image_path = img, .prompt = PROMPT};
        qvl_gen_opts g = qvl_gen_opts_default();
        g.max_new_tokens = 24;
        qvl_result res;
        CHECK_INT(qvl_generate(e, &req, &g, &res), 0);
        ref[i] = strdup(res.text ? res.text : "");
        qvl_result_free(&res);
    }
    qvl_engine_close(e);
    serve_proc s;
    CHECK_INT(serve_proc_start(&s, CPU "--model " OCR, 60), 0);
    pthread_t th[N];
    client_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (client_arg){.port = s.port, .index = i};
        pthread_create(&th[i], NULL, client, &args[i]);
    }
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(args[i].status, 200);
        CHECK_STR(args[i].text, ref[i]);
        if (i && ref[i] && strcmp(ref[i], ref[0])) distinct = 1;
        free(args[i].text);
    }
    for (int i = 0; i < N; i++) free(ref[i]);
    CHECK(distinct);   /* the images differ, so do the answers: a mix-up would show */
    CHECK_INT(serve_proc_stop(&s, SIGTERM, 30), 0);
}

/* The official OpenAI client (npm package `openai`, tests/serve/) against the server: a plain and
 * a streamed chat completion with an image as a data URL, both equal to `qvl run`. */
TEST(serve_openai_node_client) {
    struct stat st;
    if (stat("tests/serve/node_modules/openai/package.json", &st)) {
        test_fail(__FILE__, __LINE__, "tests/serve/node_modules/openai is missing: `make test` installs it (npm ci)");
        return;
    }
    run_ref greedy;
    CHECK_INT(run_reference(&greedy, "--model " OCR " --image " IMG1 " --prompt '" PROMPT "' --max-new-tokens 20"), 0);
    serve_proc s;
    CHECK_INT(serve_proc_start(&s, CPU "--model " OCR, 60), 0);
    char *out = NULL;
    char cmd[1400], path[600];
    snprintf(path, sizeof path, "%s/node.out", test_tmpdir());
    snprintf(cmd, sizeof cmd, "node tests/serve/client.mjs %d " IMG1 " '" PROMPT "' 20 >%s 2>&1", s.port, path);
    int rc = system(cmd);
    size_t n;
    out = qvl_read_file(path, &n);
    if (!out) out = strdup("");
    CHECK_INT(rc, 0);
    cJSON *j = cJSON_Parse(out);
    if (!j) test_fail(__FILE__, __LINE__, "client.mjs printed: %s", out);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "plain")), greedy.text);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "streamed")), greedy.text);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "finish_reason")), greedy.finish);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "stream_finish_reason")), greedy.finish);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "prompt_tokens")), greedy.prompt_tokens);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "completion_tokens")), greedy.n_tokens);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model")), "qvl-tiny-ocr");
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "error_status")), 400);
    cJSON_Delete(j);
    free(out);
    free(greedy.text);
    CHECK_INT(serve_proc_stop(&s, SIGTERM, 30), 0);
}
