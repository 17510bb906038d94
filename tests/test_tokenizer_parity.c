/* Parity with the reference tokenizer (Hugging Face `tokenizers`, via tools/gen_tokenizer_fixture.py):
 * every corpus string must encode to the identical ids and decode to the reference's text, and
 * random id sequences must decode (and stream-decode) to the reference's text. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tokenizer/json_str.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

#define FIXTURES "tests/fixtures/tokenizer/"

const qvl_tokenizer *test_qwen_tokenizer(void);

/* Splits a file into its lines (in place); returns the count. */
static size_t split_lines(char *text, size_t n, char ***lines) {
    size_t count = 0, cap = 1024;
    *lines = malloc(cap * sizeof **lines);
    for (size_t pos = 0; pos < n;) {
        char *nl = memchr(text + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - text) : n;
        text[end] = 0;
        if (end > pos) {
            if (count == cap) *lines = realloc(*lines, (cap *= 2) * sizeof **lines);
            (*lines)[count++] = text + pos;
        }
        pos = end + 1;
    }
    return count;
}

/* A fixture record {"ids":[...],"dec":"...","dec_skip":"..."}; dec fields may be absent. */
typedef struct {
    int32_t *ids;
    size_t n;
    utf8_buf dec, dec_skip;
    int has_dec, has_dec_skip;
} record;

static int parse_record(const char *line, record *r) {
    memset(r, 0, sizeof *r);
    /* The ids array holds no quotes, so the first "dec" key after it is the field. */
    const char *dec = strstr(line, ",\"dec\":"), *skip = strstr(line, ",\"dec_skip\":");
    const char *ids_end = dec ? dec : skip ? skip : line + strlen(line) - 1;
    char *head = strndup(line, (size_t)(ids_end - line));
    char *obj = malloc(strlen(head) + 2);
    sprintf(obj, "%s}", head);
    free(head);
    cJSON *root = cJSON_Parse(obj);
    free(obj);
    cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "ids");
    if (!cJSON_IsArray(ids)) {
        cJSON_Delete(root);
        return -1;
    }
    r->ids = malloc(((size_t)cJSON_GetArraySize(ids) + 1) * sizeof *r->ids);
    const cJSON *it;
    cJSON_ArrayForEach(it, ids) r->ids[r->n++] = (int32_t)it->valuedouble;
    cJSON_Delete(root);
    if (dec && json_str_parse(dec + 7, strlen(dec + 7), &r->dec, NULL, "dec")) return -1;
    if (skip && json_str_parse(skip + 12, strlen(skip + 12), &r->dec_skip, NULL, "dec_skip")) return -1;
    r->has_dec = dec != NULL;
    r->has_dec_skip = skip != NULL;
    return 0;
}

static void free_record(record *r) {
    free(r->ids);
    free(r->dec.data);
    free(r->dec_skip.data);
}

static int same_bytes(const char *a, size_t na, const char *b, size_t nb) { return na == nb && !memcmp(a, b, na); }

TEST(tokenizer_parity_corpus) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    CHECK(tok != NULL);
    if (!tok) return;
    size_t nc, np;
    char *corpus = qvl_read_file(FIXTURES "corpus.jsonl", &nc), *parity = qvl_read_file(FIXTURES "parity.jsonl", &np);
    CHECK(corpus && parity);
    if (!corpus || !parity) return;
    char **cl, **pl;
    size_t n = split_lines(corpus, nc, &cl), m = split_lines(parity, np, &pl);
    CHECK_INT(n, m);
    CHECK(n >= 2000);
    size_t same_ids = 0, same_dec = 0, reported = 0;
    for (size_t i = 0; i < n && i < m; i++) {
        utf8_buf text = {0};
        record r;
        CHECK_INT(json_str_parse(cl[i], strlen(cl[i]), &text, NULL, "corpus"), 0);
        CHECK_INT(parse_record(pl[i], &r), 0);
        if (!text.data) utf8_buf_reserve(&text, 0);
        int32_t *ids = NULL;
        size_t k = 0;
        int ok = qvl_tokenizer_encode(tok, text.data, text.len, &ids, &k) == 0 && k == r.n &&
                 !memcmp(ids, r.ids, k * sizeof *ids);
        same_ids += ok;
        if (!ok && reported++ < 5) {
            test_fail(__FILE__, __LINE__, "corpus line %zu (%s): %zu ids, reference %zu", i + 1, cl[i], k, r.n);
            for (size_t j = 0; j < k || j < r.n; j++)
                if (j >= k || j >= r.n || ids[j] != r.ids[j]) {
                    fprintf(stderr, "    first difference at id %zu: %d vs reference %d\n", j, j < k ? ids[j] : -1,
                            j < r.n ? r.ids[j] : -1);
                    break;
                }
        }
        /* Decode the reference ids: the reference's text (the input itself when "dec" is absent). */
        size_t ld, lds;
        char *dec = qvl_tokenizer_decode_len(tok, r.ids, r.n, 0, &ld);
        char *dec_skip = qvl_tokenizer_decode_len(tok, r.ids, r.n, 1, &lds);
        const utf8_buf *want = r.has_dec ? &r.dec : &text, *want_skip = r.has_dec_skip ? &r.dec_skip : want;
        int dec_ok = dec && dec_skip && same_bytes(dec, ld, want->data, want->len) &&
                     same_bytes(dec_skip, lds, want_skip->data, want_skip->len);
        same_dec += dec_ok;
        if (!dec_ok && reported++ < 5) test_fail(__FILE__, __LINE__, "corpus line %zu: decode differs", i + 1);
        free(dec);
        free(dec_skip);
        free(ids);
        free(text.data);
        free_record(&r);
    }
    fprintf(stderr, "    tokenizer parity: %zu/%zu identical ids, %zu/%zu identical decodes\n", same_ids, n, same_dec, n);
    CHECK_INT(same_ids, n);
    CHECK_INT(same_dec, n);
    free(cl);
    free(pl);
    free(corpus);
    free(parity);
}

TEST(tokenizer_parity_decode_and_stream) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    size_t nd;
    char *text = qvl_read_file(FIXTURES "decode.jsonl", &nd);
    CHECK(text != NULL);
    if (!text) return;
    char **lines;
    size_t n = split_lines(text, nd, &lines), same = 0;
    CHECK(n >= 500);
    for (size_t i = 0; i < n; i++) {
        record r;
        CHECK_INT(parse_record(lines[i], &r), 0);
        int ok = r.has_dec && r.has_dec_skip;
        for (int skip = 0; skip < 2 && ok; skip++) {
            const utf8_buf *want = skip ? &r.dec_skip : &r.dec;
            size_t ld;
            char *dec = qvl_tokenizer_decode_len(tok, r.ids, r.n, skip, &ld);
            ok &= dec && same_bytes(dec, ld, want->data, want->len);
            free(dec);
            /* Streaming gives the same text, in pieces that are whole characters. */
            qvl_detok_stream *st = qvl_detok_stream_new(tok, skip);
            utf8_buf all = {0};
            utf8_buf_reserve(&all, 0);
            for (size_t k = 0; k <= r.n && ok; k++) {
                const char *piece = k < r.n ? qvl_detok_stream_push(st, r.ids[k]) : qvl_detok_stream_flush(st);
                size_t pl = piece ? qvl_detok_stream_last_len(st) : 0;
                ok &= piece != NULL && utf8_first_invalid((const unsigned char *)piece, pl) == pl;
                if (piece) {
                    utf8_buf_reserve(&all, pl);
                    memcpy(all.data + all.len, piece, pl);
                    all.len += pl;
                }
            }
            ok &= all.len == want->len && !memcmp(all.data, want->data, want->len);
            free(all.data);
            qvl_detok_stream_free(st);
        }
        if (!ok) test_fail(__FILE__, __LINE__, "decode.jsonl line %zu differs", i + 1);
        same += ok;
        free_record(&r);
    }
    fprintf(stderr, "    decode parity: %zu/%zu identical (plain, skip-special, streamed)\n", same, n);
    CHECK_INT(same, n);
    free(lines);
    free(text);
}
