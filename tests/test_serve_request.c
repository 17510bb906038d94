/* qvl serve without a server: the OpenAI request parser (messages, parts, images, sampling fields,
 * refusals with their HTTP status), stop-string matching, and the response JSON. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/chat_request.h"
#include "serve/chat_response.h"
#include "serve/stop.h"
#include "test.h"
#include "util/file.h"

#define IMG "tests/fixtures/tiny-ocr-heldout/images/00000.png"

static serve_chat_limits limits(void) {
    serve_chat_limits l = {.max_images = 2, .max_messages = 16, .default_max_tokens = 77, .default_seed = 5,
                           .media = {NULL, 1 << 20, 1 << 20}};
    return l;
}

/* Parses body; returns the status (200 when accepted) and keeps the message in err. */
static int parse(const char *body, const serve_chat_limits *l, serve_chat *c, char *err) {
    int status = 0;
    err[0] = 0;
    int rc = serve_chat_parse(body, strlen(body), l, c, &status, err, 600);
    return rc ? status : 200;
}

static int parse_status(const char *body, char *err) {
    serve_chat_limits l = limits();
    serve_chat c;
    int s = parse(body, &l, &c, err);
    serve_chat_free(&c);
    return s;
}

static char *b64(const uint8_t *d, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(n / 3 * 4 + 8), *p = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        *p++ = A[v >> 18 & 63];
        *p++ = A[v >> 12 & 63];
        *p++ = i + 1 < n ? A[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? A[v & 63] : '=';
    }
    *p = 0;
    return o;
}

TEST(serve_request_text_defaults) {
    serve_chat_limits l = limits();
    serve_chat c;
    char err[600];
    CHECK_INT(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                    "{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":null},"
                    "{\"role\":\"developer\",\"content\":\"x\"}]}", &l, &c, err), 400);
    CHECK_CONTAINS(err, "messages[3]: a system message may only come first");
    serve_chat_free(&c);
    CHECK_INT(parse("{\"model\":\"m\",\"user\":\"u\",\"messages\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
                    "{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":null},"
                    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]}",
                    &l, &c, err), 200);
    CHECK_INT(c.req.n_messages, 4);
    CHECK_STR(c.req.messages[0].role, "system");
    CHECK_STR(c.req.messages[0].parts[0].text, "Be brief.");
    CHECK_STR(c.req.messages[1].role, "user");
    CHECK_INT(c.req.messages[2].n_parts, 0);
    CHECK_INT(c.req.messages[3].n_parts, 2);
    CHECK_STR(c.req.messages[3].parts[1].text, "b");
    /* No sampling fields: sample with generation_config.json's values (all unset here). */
    CHECK_INT(c.gen.sample, 1);
    CHECK(isnan(c.gen.temperature) && isnan(c.gen.top_p) && isnan(c.gen.presence_penalty));
    CHECK_INT(c.gen.top_k, -1);
    CHECK_INT(c.gen.max_new_tokens, 77);
    CHECK_INT(c.gen.seed, 5);
    CHECK_INT(c.stream, 0);
    CHECK_INT(c.stops.n, 0);
    serve_chat_free(&c);
}

TEST(serve_request_sampling_fields) {
    serve_chat_limits l = limits();
    serve_chat c;
    char err[600];
    CHECK_INT(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"temperature\":0,\"top_p\":0.5,"
                    "\"max_tokens\":9,\"max_completion_tokens\":12,\"seed\":-3,\"repetition_penalty\":1.1,"
                    "\"presence_penalty\":0.5,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                    "\"stop\":[\"\\n\",\"END\"],\"n\":1,\"logprobs\":false,\"frequency_penalty\":0}", &l, &c, err), 200);
    CHECK_INT(c.gen.sample, 0);   /* temperature 0: greedy, top_p dropped */
    CHECK(isnan(c.gen.top_p));
    CHECK_INT(c.gen.max_new_tokens, 12);
    CHECK(c.gen.seed == (uint64_t)(int64_t)-3);
    CHECK_NEAR(c.gen.repetition_penalty, 1.1, 0);
    CHECK_NEAR(c.gen.presence_penalty, 0.5, 0);
    CHECK_INT(c.stream, 1);
    CHECK_INT(c.include_usage, 1);
    CHECK_INT(c.stops.n, 2);
    CHECK_STR(c.stops.s[1], "END");
    CHECK_INT(c.stops.len[0], 1);
    serve_chat_free(&c);
    CHECK_INT(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"temperature\":0.7,\"top_k\":-1,"
                    "\"stop\":\"x\"}", &l, &c, err), 200);
    CHECK_INT(c.gen.sample, 1);
    CHECK_NEAR(c.gen.temperature, 0.7, 0);
    CHECK_INT(c.gen.top_k, 0);
    CHECK_INT(c.stops.n, 1);
    serve_chat_free(&c);
}

TEST(serve_request_refusals) {
    char err[600];
    struct {
        const char *body, *msg;
        int status;
    } cases[] = {
        {"", "not valid JSON", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}", "not valid JSON", 400},
        {"[1,2]", "must be a JSON object", 400},
        {"{}", "messages: must be a non-empty array", 400},
        {"{\"messages\":[]}", "messages: must be a non-empty array", 400},
        {"{\"messages\":[1]}", "messages[0]: must be an object", 400},
        {"{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "'tool' is not supported", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content: must be a string or an array", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"audio\"}]}]}", "'audio' is not supported", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "content[0].text: must be a string", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", "n: only n = 1", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true}", "logprobs", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", "tools", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}", "max_tokens: must be an integer", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":0}", "top_p", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":-1}", "temperature", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", "temperature: must be a number", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":\"1\"}", "seed", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":1}", "stream: must be true or false", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "at most 4", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"\"]}", "stop[0]: must not be empty", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":7}", "stop: must be a string", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"frequency_penalty\":0.5}", "frequency_penalty", 400},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:,\"}}]}]}",
         "images are only accepted in user messages", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://example.com/a.png\"}}]}]}",
         "messages[0].content[0]: remote URLs are not fetched", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"ftp://x/a.png\"}}]}]}",
         "unsupported URL scheme 'ftp'", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"" IMG "\"}}]}]}",
         "local image files are not served", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,@@@@\"}}]}]}",
         "messages[0].content[0]: invalid base64", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png,abc\"}}]}]}",
         "must be base64", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,aGVsbG8=\"}}]}]}",
         "messages[0].content[0]", 400},   /* "hello" is no image */
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":7}]}]}", "image_url: must be", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int s = parse_status(cases[i].body, err);
        if (s != cases[i].status || !strstr(err, cases[i].msg))
            test_fail(__FILE__, __LINE__, "case %zu: status %d \"%s\", want %d with \"%s\"", i, s, err, cases[i].status,
                      cases[i].msg);
    }
}

static char *image_request(const char *url1, const char *url2) {
    size_t n = strlen(url1) + (url2 ? strlen(url2) : 0) + 400;
    char *b = malloc(n);
    snprintf(b, n,
             "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}},"
             "{\"type\":\"text\",\"text\":\"what?\"}%s%s%s]}]}",
             url1, url2 ? ",{\"type\":\"image_url\",\"image_url\":{\"url\":\"" : "", url2 ? url2 : "", url2 ? "\"}}" : "");
    return b;
}

TEST(serve_request_images) {
    size_t n;
    char *png = qvl_read_file(IMG, &n);
    CHECK(png != NULL);
    if (!png) return;
    char *enc = b64((const uint8_t *)png, n);
    char *url = malloc(strlen(enc) + 40);
    sprintf(url, "data:image/png;base64,%s", enc);
    serve_chat_limits l = limits();
    serve_chat c;
    char err[600];
    char *body = image_request(url, NULL);
    CHECK_INT(parse(body, &l, &c, err), 200);
    CHECK_INT(c.n_images, 1);
    CHECK_INT(c.req.messages[0].n_parts, 2);
    CHECK_INT(c.req.messages[0].parts[0].image_size, n);
    CHECK(c.req.messages[0].parts[0].image_data && !memcmp(c.req.messages[0].parts[0].image_data, png, n));
    CHECK(c.req.messages[0].parts[0].text == NULL);
    serve_chat_free(&c);
    free(body);
    /* Over the pixel limit: 413. */
    l.media.max_pixels = 100;
    body = image_request(url, NULL);
    CHECK_INT(parse(body, &l, &c, err), 413);
    CHECK_CONTAINS(err, "pixels, limit 100");
    serve_chat_free(&c);
    free(body);
    /* Too many images. */
    l = limits();
    l.max_images = 1;
    body = image_request(url, url);
    CHECK_INT(parse(body, &l, &c, err), 400);
    CHECK_CONTAINS(err, "more than 1 images");
    serve_chat_free(&c);
    free(body);
    /* Local files: only under the allowed folder, links resolved first. */
    char dir[1024], real_dir[4096], cwd[1024], outside[2048], link[2048], cmd[6000];
    snprintf(dir, sizeof dir, "%s/media", test_tmpdir());
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp " IMG " '%s/a.png' && ln -sf '%s/" IMG "' '%s/escape.png'", dir, dir,
             cwd, dir);
    CHECK_INT(system(cmd), 0);
    char *inside = NULL;
    CHECK(realpath(dir, real_dir) != NULL);
    l = limits();
    l.media.allowed_dir = real_dir;
    inside = malloc(strlen(dir) + 20);
    sprintf(inside, "%s/a.png", dir);
    body = image_request(inside, NULL);
    CHECK_INT(parse(body, &l, &c, err), 200);
    CHECK_INT(c.req.messages[0].parts[0].image_size, n);
    serve_chat_free(&c);
    free(body);
    snprintf(outside, sizeof outside, "file://%s/a.png", dir);
    body = image_request(outside, NULL);
    CHECK_INT(parse(body, &l, &c, err), 200);
    serve_chat_free(&c);
    free(body);
    snprintf(outside, sizeof outside, "%s/../media/../../%s", dir, "x.png");
    body = image_request(outside, NULL);
    CHECK_INT(parse(body, &l, &c, err), 400);
    CHECK_CONTAINS(err, "no such image in the allowed media folder");
    serve_chat_free(&c);
    free(body);
    snprintf(link, sizeof link, "%s/escape.png", dir);   /* a link to a file outside the folder */
    body = image_request(link, NULL);
    CHECK_INT(parse(body, &l, &c, err), 400);
    CHECK_CONTAINS(err, "no such image in the allowed media folder");
    serve_chat_free(&c);
    free(body);
    body = image_request("/etc/passwd", NULL);
    CHECK_INT(parse(body, &l, &c, err), 400);
    CHECK_CONTAINS(err, "no such image in the allowed media folder");
    serve_chat_free(&c);
    free(body);
    free(inside);
    free(url);
    free(enc);
    free(png);
}

/* Every prefix of a valid body, and bodies with bytes flipped, are refused or accepted without a
 * crash or a leak (run under AddressSanitizer in CI). */
static uint32_t crc32_png(const uint8_t *d, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= d[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A PNG whose header declares w x h (8-bit gray) and whose pixel data is cut short: only a decoder
 * would notice; the header alone is valid. */
static size_t declared_png(uint32_t w, uint32_t h, uint8_t *out) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    uint8_t *c = out + 8;
    put_be32(c, 13);
    memcpy(c + 4, "IHDR", 4);
    put_be32(c + 8, w);
    put_be32(c + 12, h);
    c[16] = 8, c[17] = 0, c[18] = 0, c[19] = 0, c[20] = 0;   /* depth 8, gray, deflate, filter 0, no interlace */
    put_be32(c + 21, crc32_png(c + 4, 17));
    uint8_t *d = c + 25;
    put_be32(d, 4096);                                      /* an IDAT of 4096 bytes, of which 6 follow */
    memcpy(d + 4, "IDAT", 4);
    memcpy(d + 8, "\x78\x9c\x00\x00\x00\x00", 6);
    return (size_t)(d + 14 - out);
}

/* The caps on images from others are checked from the header before decoding (a small file may
 * declare a huge image: it is refused with 413 naming the limit, never decoded), and on the bytes
 * after base64 decoding. */
TEST(serve_request_image_caps_before_decoding) {
    uint8_t png[128];
    size_t n = declared_png(8192, 4096, png);
    char *enc = b64(png, n);
    char *url = malloc(strlen(enc) + 40);
    sprintf(url, "data:image/png;base64,%s", enc);
    serve_chat_limits l = limits();
    l.media.max_pixels = 16L << 20;
    serve_chat c;
    char err[600];
    char *body = image_request(url, NULL);
    /* 33.5 M pixels declared: 413 from the header (a decode would have failed with 400 on the cut IDAT). */
    CHECK_INT(parse(body, &l, &c, err), 413);
    CHECK_CONTAINS(err, "messages[0].content[0]");
    CHECK_CONTAINS(err, "image of 33554432 pixels, limit 16777216 (its header declares 8192x4096)");
    serve_chat_free(&c);
    /* Within the pixel cap, the same cut file is decoded and refused as corrupt. */
    l.media.max_pixels = 64L << 20;
    CHECK_INT(parse(body, &l, &c, err), 400);
    serve_chat_free(&c);
    free(body);
    /* The byte cap counts decoded bytes exactly (the base64 estimate lets padding through). */
    l = limits();
    l.media.max_bytes = (long)n - 1;
    body = image_request(url, NULL);
    CHECK_INT(parse(body, &l, &c, err), 413);
    CHECK_CONTAINS(err, "bytes, limit");
    serve_chat_free(&c);
    free(body);
    free(url);
    free(enc);
}

TEST(serve_request_mangled_bodies) {
    const char *good = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\","
                       "\"content\":[{\"type\":\"text\",\"text\":\"Hi \\u00e9\"},{\"type\":\"image_url\",\"image_url\":"
                       "{\"url\":\"data:image/png;base64,iVBORw0KGgo=\"}}]}],\"stop\":[\"a\"],\"temperature\":0.5,"
                       "\"max_tokens\":4,\"stream\":true}";
    size_t n = strlen(good);
    serve_chat_limits l = limits();
    char err[600];
    int accepted = 0;
    for (size_t k = 0; k < n; k++) {
        serve_chat c;
        int status = 0;
        if (serve_chat_parse(good, k, &l, &c, &status, err, sizeof err) == 0) accepted++;
        else CHECK(status == 400 || status == 413);
        serve_chat_free(&c);
    }
    CHECK_INT(accepted, 0);
    char *buf = malloc(n + 1);
    unsigned seed = 12345;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, good, n + 1);
        for (int f = 0; f < 1 + it % 4; f++) {
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % n] = (char)(seed >> 20);
        }
        serve_chat c;
        int status = 0;
        if (serve_chat_parse(buf, n, &l, &c, &status, err, sizeof err)) CHECK(status == 400 || status == 413);
        serve_chat_free(&c);
    }
    free(buf);
}

TEST(serve_stop_strings) {
    serve_stops st = {{"END", "\n\n"}, {3, 2}, 2};
    const char *t = "abc\nxEND\n\nz";
    CHECK_INT(serve_stop_find(&st, t, strlen(t), 0), 5);
    CHECK_INT(serve_stop_find(&st, t, 7, 0), -1);        /* "EN" is not a match yet */
    CHECK_INT(serve_stop_find(&st, t, 8, 7), 5);          /* found once the match ends at or after `from` */
    CHECK_INT(serve_stop_find(&st, t, 11, 9), 8);         /* "\n\n" ends after 9; "END" ended before */
    CHECK_INT(serve_stop_safe_len(&st, "abc", 3), 3);
    CHECK_INT(serve_stop_safe_len(&st, "abcE", 4), 3);    /* "E" may become "END" */
    CHECK_INT(serve_stop_safe_len(&st, "abcEN", 5), 3);
    CHECK_INT(serve_stop_safe_len(&st, "abc\n", 4), 3);
    CHECK_INT(serve_stop_safe_len(&st, "abcENx", 6), 6);
    CHECK_INT(serve_stop_safe_len(&st, "", 0), 0);
    serve_stops none = {{0}, {0}, 0};
    CHECK_INT(serve_stop_safe_len(&none, "abcE", 4), 4);
    CHECK_INT(serve_stop_find(&none, "abc", 3, 0), -1);
}

TEST(serve_response_json) {
    serve_chat_meta m = {"chatcmpl-1", 1700000000, "tiny"};
    char *s = serve_completion_json(&m, "he said \"hi\"\nxx", 13, 1, 10, 4);
    cJSON *o = cJSON_Parse(s);
    CHECK(o != NULL);
    if (o) {
        CHECK_STR(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion");
        cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
        CHECK_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "message"), "content")->valuestring, "he said \"hi\"\n");
        CHECK_STR(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "stop");
        cJSON *u = cJSON_GetObjectItem(o, "usage");
        CHECK_INT(cJSON_GetObjectItem(u, "prompt_tokens")->valueint, 10);
        CHECK_INT(cJSON_GetObjectItem(u, "completion_tokens")->valueint, 4);
        CHECK_INT(cJSON_GetObjectItem(u, "total_tokens")->valueint, 14);
    }
    cJSON_Delete(o);
    free(s);
    s = serve_chunk_event(&m, 0, "ab", 1, -1, 0, 0, 0);
    CHECK_STR(s, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
                 "\"tiny\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    free(s);
    s = serve_chunk_event(&m, 0, NULL, 0, 0, 0, 0, 0);
    CHECK_CONTAINS(s, "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}");
    free(s);
    s = serve_chunk_event(&m, 0, NULL, 0, -1, 1, 3, 2);
    CHECK_CONTAINS(s, "\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}");
    free(s);
    s = serve_error_json(503, "queue full");
    CHECK_STR(s, "{\"error\":{\"message\":\"queue full\",\"type\":\"server_overloaded\",\"param\":null,\"code\":503}}");
    free(s);
    s = serve_error_json(400, "x");
    CHECK_CONTAINS(s, "invalid_request_error");
    free(s);
    s = serve_models_json("tiny", 5);
    CHECK_STR(s, "{\"object\":\"list\",\"data\":[{\"id\":\"tiny\",\"object\":\"model\",\"created\":5,\"owned_by\":\"qvl\"}]}");
    free(s);
}
