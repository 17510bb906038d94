/* The Qwen3 tokenizer on known ids, special tokens, decode, streaming and bad input. Ids were
 * checked against the reference (tests/fixtures/tokenizer holds the full parity corpus). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

#define TOKENIZER_JSON "models/tokenizer/tokenizer.json"

const qvl_tokenizer *test_qwen_tokenizer(void);
const qvl_tokenizer *test_qwen_tokenizer(void) {
    static qvl_tokenizer *tok;
    static int tried;
    if (!tried) {
        tried = 1;
        tok = qvl_tokenizer_load(TOKENIZER_JSON);
        if (!tok) fprintf(stderr, "tokenizer load failed: %s\n", qvl_error());
    }
    return tok;
}

__attribute__((destructor)) static void free_shared_tokenizer(void) {
    qvl_tokenizer_free((qvl_tokenizer *)test_qwen_tokenizer());
}

/* Encodes s and compares with the expected ids (terminated by -1). */
static void check_encode(const char *s, const int32_t *want) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    CHECK(tok != NULL);
    if (!tok) return;
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_INT(qvl_tokenizer_encode(tok, s, strlen(s), &ids, &n), 0);
    size_t nw = 0;
    while (want[nw] >= 0) nw++;
    CHECK_INT(n, nw);
    for (size_t i = 0; i < n && i < nw; i++) CHECK_INT(ids[i], want[i]);
    free(ids);
}

TEST(tokenizer_known_ids) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_INT(qvl_tokenizer_vocab_size(tok), 151669);
    CHECK_INT(qvl_tokenizer_token_id(tok, "\n"), 198);
    CHECK_INT(qvl_tokenizer_token_id(tok, "user"), 872);
    CHECK_INT(qvl_tokenizer_token_id(tok, "assistant"), 77091);
    CHECK_INT(qvl_tokenizer_token_id(tok, "<|im_start|>"), 151644);
    CHECK_INT(qvl_tokenizer_token_id(tok, "<|image_pad|>"), 151655);
    CHECK_INT(qvl_tokenizer_token_id(tok, "no such token here"), -1);
    CHECK(qvl_tokenizer_is_special(tok, 151645));
    CHECK(!qvl_tokenizer_is_special(tok, 151667)); /* <think> is added but not special */
    CHECK(!qvl_tokenizer_is_special(tok, 198));
    check_encode("Hello world", (const int32_t[]){9707, 1879, -1});
    check_encode("<|im_start|>user\nhi<|im_end|>", (const int32_t[]){151644, 872, 198, 6023, 151645, -1});
    check_encode("\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c", (const int32_t[]){108386, 3837, 99489, -1});
}

TEST(tokenizer_empty_input) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    int32_t *ids = NULL;
    size_t n = 99;
    CHECK_INT(qvl_tokenizer_encode(tok, "", 0, &ids, &n), 0);
    CHECK_INT(n, 0);
    CHECK(ids != NULL);
    free(ids);
    char *s = qvl_tokenizer_decode(tok, NULL, 0, 0);
    CHECK_STR(s, "");
    free(s);
}

TEST(tokenizer_invalid_utf8_is_an_error) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    const char *bad[] = {"ok\xff", "\xc0\xaf", "\xed\xa0\x80" /* surrogate */, "ab\xe4\xbd" /* truncated */,
                         "\xf4\x90\x80\x80" /* > U+10FFFF */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_INT(qvl_tokenizer_encode(tok, bad[i], strlen(bad[i]), &ids, &n), -1);
        CHECK_CONTAINS(qvl_error(), "invalid UTF-8 at byte");
        CHECK(ids == NULL);
    }
}

TEST(tokenizer_decode_and_skip_special) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    int32_t ids[] = {151644, 872, 198, 6023, 151645, 151667};
    char *s = qvl_tokenizer_decode(tok, ids, 6, 0);
    CHECK_STR(s, "<|im_start|>user\nhi<|im_end|><think>");
    free(s);
    s = qvl_tokenizer_decode(tok, ids, 6, 1);
    CHECK_STR(s, "user\nhi<think>");
    free(s);
    /* Ids the tokenizer has no token for (the model's vocabulary runs to 151936; sampling can pick
     * there) decode to nothing, as HF tokenizers' decode does; a negative id is an error. */
    int32_t pad[] = {9707, 151669, 151935, 6023};
    s = qvl_tokenizer_decode(tok, pad, 4, 0);
    CHECK_STR(s, "Hellohi");
    free(s);
    CHECK(!qvl_tokenizer_has_token(tok, 151669) && qvl_tokenizer_has_token(tok, 151668));
    int32_t neg[] = {9707, -1};
    CHECK(qvl_tokenizer_decode(tok, neg, 2, 0) == NULL);
    CHECK_CONTAINS(qvl_error(), "token id -1 is negative");
}

TEST(tokenizer_decode_replaces_invalid_bytes) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    /* Byte tokens: 0xE4 alone is an incomplete character -> one U+FFFD, then "a". */
    char e4[] = "\xe4";
    int32_t ids[2] = {qvl_tokenizer_token_id(tok, e4), qvl_tokenizer_token_id(tok, "a")};
    CHECK(ids[0] >= 0);
    char *s = qvl_tokenizer_decode(tok, ids, 2, 0);
    CHECK_STR(s, "\xef\xbf\xbd" "a");
    free(s);
}

TEST(tokenizer_stream_never_splits_a_character) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    /* Feed a CJK + emoji text as single-byte tokens: output appears only at character ends. */
    const char *text = "\xe4\xbd\xa0\xf0\x9f\x91\x8dx";
    qvl_detok_stream *st = qvl_detok_stream_new(tok, 1);
    CHECK(st != NULL);
    char all[64] = "";
    for (const char *p = text; *p; p++) {
        char b[2] = {*p, 0};
        const char *out = qvl_detok_stream_push(st, qvl_tokenizer_token_id(tok, b));
        CHECK(out != NULL);
        if (!out) break;
        size_t k = strlen(out);
        CHECK(k == 0 || k == 3 || k == 4 || k == 1);
        strcat(all, out);
    }
    const char *rest = qvl_detok_stream_flush(st);
    CHECK_STR(rest, "");
    CHECK_STR(all, text);
    /* An incomplete character at the end comes out as U+FFFD on flush; specials are skipped. */
    char e4[] = "\xe4";
    CHECK_STR(qvl_detok_stream_push(st, qvl_tokenizer_token_id(tok, e4)), "");
    CHECK_STR(qvl_detok_stream_push(st, 151645), "");
    CHECK_STR(qvl_detok_stream_flush(st), "\xef\xbf\xbd");
    CHECK_STR(qvl_detok_stream_push(st, 151700), "");   /* no token: no text */
    CHECK(qvl_detok_stream_push(st, -5) == NULL);
    qvl_detok_stream_free(st);
}

TEST(tokenizer_long_single_line) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    /* 10 MB on one line: mixed words, then one huge word, then a huge run of spaces. */
    size_t len = 10u << 20;
    char *s = malloc(len + 1);
    const char *unit = "The quick brown fox 12345 jumps; \xe4\xbd\xa0\xe5\xa5\xbd ";
    size_t u = strlen(unit), i = 0;
    for (; i + u <= len / 2; i += u) memcpy(s + i, unit, u);
    memset(s + i, 'a', len - i);
    for (size_t k = len - len / 4; k < len; k++) s[k] = ' ';
    s[len] = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_INT(qvl_tokenizer_encode(tok, s, len, &ids, &n), 0);
    CHECK(n > 1000000);
    char *back = qvl_tokenizer_decode(tok, ids, n, 0);
    CHECK(back && strlen(back) == len && memcmp(back, s, len) == 0);
    free(back);
    free(ids);
    free(s);
}

TEST(tokenizer_refuses_other_models) {
    const char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/wordpiece.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}, \"added_tokens\": []}", f);
    fclose(f);
    CHECK(qvl_tokenizer_load(path) == NULL);
    CHECK_CONTAINS(qvl_error(), "unsupported tokenizer model type 'WordPiece'");
    snprintf(path, sizeof path, "%s/notjson.json", dir);
    f = fopen(path, "w");
    fputs("{\"model\": ", f);
    fclose(f);
    CHECK(qvl_tokenizer_load(path) == NULL);
    CHECK_CONTAINS(qvl_error(), "not valid JSON");
    snprintf(path, sizeof path, "%s/missing.json", dir);
    CHECK(qvl_tokenizer_load(path) == NULL);
    CHECK_CONTAINS(qvl_error(), "missing.json");
    snprintf(path, sizeof path, "%s/empty_model_dir", dir);
    mkdir(path, 0755);
    CHECK(qvl_tokenizer_load(path) == NULL); /* a folder without tokenizer.json */
    CHECK_CONTAINS(qvl_error(), "tokenizer.json");
}

/* Writes content to a file in the test's temporary folder; returns its path (static buffer). */
static const char *tmp_input(const char *name, const char *content) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
    return path;
}

TEST(tokenizer_cli) {
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, NULL, "tokenize --tokenizer models/tokenizer < /dev/null"), 0);
    CHECK_STR(out, "[]\n");
    free(out);
    CHECK_INT(test_qvl(&out, NULL, "tokenize --tokenizer models/tokenizer < %s", tmp_input("a.txt", "Hello world\n")), 0);
    CHECK_STR(out, "[9707,1879,198]\n");
    free(out);
    CHECK_INT(test_qvl(&out, NULL, "tokenize --tokenizer=%s --jsonl < %s", TOKENIZER_JSON,
                       tmp_input("b.jsonl", "\"Hello world\"\n\"<|im_end|>\"\n")), 0);
    CHECK_STR(out, "[9707,1879]\n[151645]\n");
    free(out);
    CHECK_INT(test_qvl(&out, NULL, "tokenize --tokenizer models/tokenizer --decode --jsonl < %s",
                       tmp_input("c.jsonl", "[9707,1879,151645]\n[198,1]\n")), 0);
    CHECK_STR(out, "\"Hello world<|im_end|>\"\n\"\\n\\\"\"\n");
    free(out);
    CHECK_INT(test_qvl(&out, NULL, "tokenize --tokenizer models/tokenizer --decode --skip-special < %s",
                       tmp_input("d.json", "[9707,1879,151645]\n")), 0);
    CHECK_STR(out, "\"Hello world\"\n");
    free(out);
    CHECK_INT(test_qvl(NULL, &err, "tokenize --tokenizer models/tokenizer --decode < %s", tmp_input("e.json", "[1,\"x\"]")), 1);
    CHECK_CONTAINS(err, "qvl: stdin: element 1 is not an integer token id");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "tokenize --tokenizer models/tokenizer --jsonl < %s", tmp_input("f.jsonl", "\"ok\"\nnot json\n")), 1);
    CHECK_CONTAINS(err, "qvl: stdin line 2:");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "tokenize --tokenizer models/tokenizer --bogus"), 2);
    CHECK_CONTAINS(err, "--bogus");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "tokenize"), 2);
    CHECK_CONTAINS(err, "--tokenizer");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "tokenize --tokenizer /nonexistent/tok.json"), 1);
    CHECK_CONTAINS(err, "qvl: /nonexistent/tok.json:");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "tokenize --tokenizer %s", tmp_input("wp.json", "{\"model\": {\"type\": \"WordPiece\"}}")), 1);
    CHECK_CONTAINS(err, "wp.json: unsupported tokenizer model type 'WordPiece' (only byte-level BPE)");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "tokenize --tokenizer models/tokenizer < %s", tmp_input("g.txt", "ab\xff")), 1);
    CHECK_CONTAINS(err, "qvl: stdin: invalid UTF-8 at byte 2");
    free(err);
}

/* Copies the real tokenizer.json, optionally replacing the first occurrence of `from` by `to`. */
static int copy_tokenizer(const char *dst, const char *from, const char *to) {
    size_t n;
    FILE *in = fopen(TOKENIZER_JSON, "rb");
    if (!in) return -1;
    fseek(in, 0, SEEK_END);
    n = (size_t)ftell(in);
    fseek(in, 0, SEEK_SET);
    char *buf = malloc(n + 1);
    size_t got = fread(buf, 1, n, in);
    fclose(in);
    buf[got] = 0;
    char *at = from ? strstr(buf, from) : NULL;
    if (at) memcpy(at, to, strlen(to)); /* same length: same file size */
    FILE *out = fopen(dst, "wb");
    fwrite(buf, 1, got, out);
    fclose(out);
    free(buf);
    return from && !at ? -1 : 0;
}

TEST(tokenizer_cache_is_used_and_invalidated) {
    char cache[512], json[512];
    snprintf(cache, sizeof cache, "%s/cache", test_tmpdir());
    snprintf(json, sizeof json, "%s/tokenizer.json", test_tmpdir());
    CHECK_INT(copy_tokenizer(json, NULL, NULL), 0);
    qvl_tokenizer *a = qvl_tokenizer_load_cached(json, cache); /* builds from JSON, writes the cache */
    CHECK(a && !qvl_tokenizer_from_cache(a));
    qvl_tokenizer *b = qvl_tokenizer_load_cached(test_tmpdir(), cache); /* same file via its folder: cache hit */
    CHECK(b && qvl_tokenizer_from_cache(b));
    if (b) {
        int32_t *ids;
        size_t n;
        const char *s = "Hello world <think>\xe4\xbd\xa0\xe5\xa5\xbd";
        CHECK_INT(qvl_tokenizer_encode(b, s, strlen(s), &ids, &n), 0);
        CHECK_INT(n, 5);
        CHECK_INT(ids[2], 220);
        CHECK_INT(ids[3], 151667);
        free(ids);
        CHECK(qvl_tokenizer_is_special(b, 151644));
    }
    qvl_tokenizer_free(a);
    qvl_tokenizer_free(b);
    /* An edit of the JSON that keeps its size must miss the cache and take effect. */
    CHECK_INT(copy_tokenizer(json, "\"<think>\"", "\"<thonk>\""), 0);
    a = qvl_tokenizer_load_cached(json, cache);
    CHECK(a && !qvl_tokenizer_from_cache(a));
    CHECK_INT(a ? qvl_tokenizer_token_id(a, "<thonk>") : 0, 151667);
    CHECK_INT(a ? qvl_tokenizer_token_id(a, "<think>") : 0, -1);
    qvl_tokenizer_free(a);
    /* A corrupt cache file is ignored (and rewritten). */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "for f in %s/*.bin; do printf 'garbage' | dd of=$f bs=1 seek=5000 conv=notrunc 2>/dev/null; done", cache);
    CHECK_INT(system(cmd), 0);
    a = qvl_tokenizer_load_cached(json, cache);
    CHECK(a && !qvl_tokenizer_from_cache(a));
    CHECK_INT(a ? qvl_tokenizer_token_id(a, "<thonk>") : 0, 151667);
    qvl_tokenizer_free(a);
    snprintf(cmd, sizeof cmd, "for f in %s/*.bin; do truncate -s 1000 $f; done", cache);
    CHECK_INT(system(cmd), 0);
    a = qvl_tokenizer_load_cached(json, cache);
    CHECK(a && !qvl_tokenizer_from_cache(a));
    qvl_tokenizer_free(a);
    a = qvl_tokenizer_load_cached(json, cache); /* rewritten by the previous load */
    CHECK(a && qvl_tokenizer_from_cache(a));
    qvl_tokenizer_free(a);
    /* No folder, no cache (qvl_tokenizer_load; the CLI passes NULL for QVL_TOKENIZER_CACHE=0). */
    a = qvl_tokenizer_load(json);
    CHECK(a && !qvl_tokenizer_from_cache(a));
    qvl_tokenizer_free(a);
    a = qvl_tokenizer_load_cached(json, NULL);
    CHECK(a && !qvl_tokenizer_from_cache(a));
    qvl_tokenizer_free(a);
}

/* Writes a minimal Qwen-style tokenizer.json: the 256 byte tokens, "ab" = 256 and "abc" = 257
 * by two merges (`merges` is the JSON of the merges array), added token "<|x|>" = 258. */
static const char *write_tiny_tokenizer(const char *name, const char *merges) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    fputs("{\"added_tokens\": [{\"id\": 258, \"content\": \"<|x|>\", \"special\": true}],\n"
          "\"normalizer\": {\"type\": \"NFC\"},\n"
          "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
          "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"
          "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
          "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]},\n"
          "\"decoder\": {\"type\": \"ByteLevel\"},\n"
          "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"vocab\": {", f);
    int k = 0;
    for (int b = 0; b < 256; b++) { /* the GPT-2 byte -> character table */
        int self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        int cp = self ? b : 256 + k++;
        fprintf(f, "\"\\u%04x\": %d, ", cp, b);
    }
    fprintf(f, "\"ab\": 256, \"abc\": 257}, \"merges\": %s}}\n", merges);
    fclose(f);
    return path;
}

TEST(tokenizer_tiny_bpe_and_merge_errors) {
    /* Byte ids: "a" is byte 97 -> id 97. No cache files for these throwaway tokenizers
     * (qvl_tokenizer_load never caches). */
    qvl_tokenizer *tok = qvl_tokenizer_load(write_tiny_tokenizer("tiny.json", "[[\"a\", \"b\"], \"ab c\"]"));
    CHECK(tok != NULL);
    if (tok) {
        int32_t *ids;
        size_t n;
        CHECK_INT(qvl_tokenizer_encode(tok, "abcab<|x|>ba", 12, &ids, &n), 0);
        int32_t want[] = {257, 256, 258, 98, 97};
        CHECK_INT(n, 5);
        for (size_t i = 0; i < n && i < 5; i++) CHECK_INT(ids[i], want[i]);
        free(ids);
        CHECK_INT(qvl_tokenizer_vocab_size(tok), 259);
        CHECK(qvl_tokenizer_is_special(tok, 258));
        qvl_tokenizer_free(tok);
    }
    CHECK(qvl_tokenizer_load(write_tiny_tokenizer("bad1.json", "[[\"a\", \"zz\"]]")) == NULL);
    CHECK_CONTAINS(qvl_error(), "merge 0 ('a' 'zz') uses a token not in the vocabulary");
    CHECK(qvl_tokenizer_load(write_tiny_tokenizer("bad2.json", "[[\"a\", \"b\"], 5]")) == NULL);
    CHECK_CONTAINS(qvl_error(), "merge 1 is not a pair of strings");
    CHECK(qvl_tokenizer_load(write_tiny_tokenizer("bad3.json", "[[\"a\", \"b\", \"c\"]]")) == NULL);
    CHECK_CONTAINS(qvl_error(), "merge 0 is not a pair of strings");
}

/* Leaves freed blocks of the sizes the tiny tokenizer's tables take, filled with `fill`, for the
 * allocator to hand out again: uninitialized table bytes would then show in the cache file. */
static void dirty_heap(int fill) {
    enum { N = 64 };
    void *blocks[N];
    for (int i = 0; i < N; i++) {
        size_t sz = (size_t)(16 << (i % 6));
        blocks[i] = malloc(sz);
        if (blocks[i]) memset(blocks[i], fill, sz);
    }
    for (int i = N - 1; i >= 0; i--) free(blocks[i]);
}

/* The only .bin file in dir, read whole (malloc'd), or NULL. */
static char *read_cache_file(const char *dir, size_t *n) {
    char cmd[1200], path[1024] = "";
    snprintf(cmd, sizeof cmd, "ls %s/*.bin 2>/dev/null", dir);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    if (!fgets(path, sizeof path, p)) path[0] = 0;
    pclose(p);
    path[strcspn(path, "\n")] = 0;
    return path[0] ? qvl_read_file(path, n) : NULL;
}

/* The cache file depends on tokenizer.json alone: two saves of the same tokenizer are byte-identical
 * whatever the heap held before (the merge table's empty slots used to be uninitialized heap bytes). */
TEST(tokenizer_cache_bytes_are_deterministic) {
    const char *json = write_tiny_tokenizer("det.json", "[[\"a\", \"b\"], \"ab c\"]");
    char dir[2][512];
    char *bytes[2];
    size_t n[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        snprintf(dir[k], sizeof dir[k], "%s/det-cache-%d", test_tmpdir(), k);
        dirty_heap(k ? 0x5a : 0xa5);
        qvl_tokenizer *tok = qvl_tokenizer_load_cached(json, dir[k]);
        CHECK(tok && !qvl_tokenizer_from_cache(tok));
        qvl_tokenizer_free(tok);
        bytes[k] = read_cache_file(dir[k], &n[k]);
        CHECK(bytes[k] != NULL);
    }
    CHECK(n[0] > 0);
    CHECK_INT(n[0], n[1]);
    CHECK(bytes[0] && bytes[1] && n[0] == n[1] && memcmp(bytes[0], bytes[1], n[0]) == 0);
    free(bytes[0]);
    free(bytes[1]);
    /* And the saved cache is used. */
    qvl_tokenizer *tok = qvl_tokenizer_load_cached(json, dir[0]);
    CHECK(tok && qvl_tokenizer_from_cache(tok));
    qvl_tokenizer_free(tok);
}
