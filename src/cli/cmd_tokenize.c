/* qvl tokenize (docs/cli.md): encode stdin text to ids, or decode ids to text. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "tokenizer/json_str.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

static char *read_stdin(size_t *len) {
    utf8_buf b = {0};
    for (;;) {
        if (utf8_buf_reserve(&b, 1 << 16)) {
            free(b.data);
            qvl_errorf("stdin: out of memory");
            return NULL;
        }
        size_t k = fread(b.data + b.len, 1, 1 << 16, stdin);
        b.len += k;
        if (k == 0) break;
    }
    if (ferror(stdin)) {
        free(b.data);
        qvl_errorf("stdin: read error");
        return NULL;
    }
    b.data[b.len] = 0;
    *len = b.len;
    return b.data;
}

static int print_ids(const int32_t *ids, size_t n) {
    putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    putchar(']');
    putchar('\n');
    return 0;
}

static int encode_text(const qvl_tokenizer *tok, const char *text, size_t len, const char *what) {
    int32_t *ids;
    size_t n;
    if (qvl_tokenizer_encode(tok, text, len, &ids, &n)) {
        /* The library names the input "input"; name the line instead. */
        const char *e = qvl_error();
        char msg[512];
        snprintf(msg, sizeof msg, "%s", !strncmp(e, "input: ", 7) ? e + 7 : e);
        return qvl_errorf("%s: %s", what, msg);
    }
    print_ids(ids, n);
    free(ids);
    return 0;
}

/* Parses one JSON array of ids and prints the decoded text as a JSON string. */
static int decode_array(const qvl_tokenizer *tok, const char *s, size_t len, int skip_special, const char *what) {
    cJSON *arr = cJSON_ParseWithLength(s, len);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return qvl_errorf("%s: expected a JSON array of token ids", what);
    }
    int n = cJSON_GetArraySize(arr), k = 0;
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids) {
        cJSON_Delete(arr);
        return qvl_errorf("%s: out of memory", what);
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        /* range first: converting an out-of-range double to int32_t is undefined */
        if (!cJSON_IsNumber(it) || fabs(it->valuedouble) > 2147483647.0 || it->valuedouble != floor(it->valuedouble)) {
            free(ids);
            cJSON_Delete(arr);
            return qvl_errorf("%s: element %d is not an integer token id", what, k);
        }
        ids[k++] = (int32_t)it->valuedouble;
    }
    cJSON_Delete(arr);
    size_t text_len;
    char *text = qvl_tokenizer_decode_len(tok, ids, (size_t)n, skip_special, &text_len);
    free(ids);
    if (!text) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qvl_error());
        return qvl_errorf("%s: %s", what, msg);
    }
    utf8_buf out = {0};
    int rc = json_str_write(&out, text, text_len);
    free(text);
    if (rc) return qvl_errorf("%s: out of memory", what);
    fwrite(out.data, 1, out.len, stdout);
    putchar('\n');
    free(out.data);
    return 0;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

static int run_jsonl(const qvl_tokenizer *tok, const char *in, size_t len, int decode, int skip_special) {
    size_t line_no = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(in + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - in) : len;
        const char *line = in + pos;
        size_t n = end - pos;
        pos = end + 1;
        line_no++;
        if (is_blank(line, n)) continue;
        char what[64];
        snprintf(what, sizeof what, "stdin line %zu", line_no);
        if (decode) {
            if (decode_array(tok, line, n, skip_special, what)) return -1;
            continue;
        }
        utf8_buf text = {0};
        size_t stop;
        if (json_str_parse(line, n, &text, &stop, what) || !is_blank(line + stop, n - stop)) {
            if (!qvl_error()[0] || text.data) qvl_errorf("%s: expected one JSON string per line", what);
            free(text.data);
            return -1;
        }
        int rc = encode_text(tok, text.data, text.len, what);
        free(text.data);
        if (rc) return -1;
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    int jsonl = 0, decode = 0, skip_special = 0;
    cli_opt opts[] = {
        {"tokenizer", OPT_STR, &path, "PATH", "tokenizer.json, or a model folder holding one (required)"},
        {"jsonl", OPT_FLAG, &jsonl, NULL, "one JSON value per stdin line, one result per output line"},
        {"decode", OPT_FLAG, &decode, NULL, "input JSON arrays of ids, output JSON strings"},
        {"skip-special", OPT_FLAG, &skip_special, NULL, "with --decode: drop special tokens"},
    };
    int rc = opts_parse(argc, argv, opts, 4, "qvl tokenize --tokenizer PATH [--jsonl] [--decode] [--skip-special]",
                        "Encodes all of stdin as one text and prints a JSON array of ids. Special-token text\n"
                        "such as <|im_start|> becomes that token. --jsonl: each stdin line is a JSON string.\n"
                        "--decode: the reverse (JSON arrays of ids in, JSON strings out).",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!path) return usage_error("tokenize", "--tokenizer PATH is required");
    if (skip_special && !decode) return usage_error("tokenize", "--skip-special needs --decode");
    qvl_tokenizer *tok = qvl_tokenizer_load_cached(path, cli_tokenizer_cache_dir());
    if (!tok) return runtime_error();
    size_t len;
    char *in = read_stdin(&len);
    if (!in) {
        qvl_tokenizer_free(tok);
        return runtime_error();
    }
    if (jsonl) rc = run_jsonl(tok, in, len, decode, skip_special);
    else if (decode) rc = decode_array(tok, in, len, skip_special, "stdin");
    else rc = encode_text(tok, in, len, "stdin");
    free(in);
    qvl_tokenizer_free(tok);
    if (fflush(stdout)) return qvl_errorf("stdout: write error"), runtime_error();
    return rc ? runtime_error() : 0;
}
