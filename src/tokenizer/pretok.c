/* The Split pre-tokenizer: the tokenizer.json regex, compiled with PCRE2 in UTF + UCP mode.
 * The reference runs it with Oniguruma, whose \s is exactly the Unicode White_Space property;
 * PCRE2's UCP \s differs (it adds U+180E), so \s and \S are rewritten to the explicit set. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/pretok.h"
#include "tokenizer/tokenizer_internal.h"
#include "util/error.h"

#define WHITE_SPACE_SET "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Rewrites \s / \S (inside and outside character classes); NULL if \S occurs inside a class. */
static char *rewrite_space_classes(const char *p) {
    size_t n = strlen(p), cap = n * 8 + 256, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        const char *add = NULL;
        char tmp[3] = {p[i], 0, 0};
        if (p[i] == '\\' && i + 1 < n) {
            char c = p[i + 1];
            i++;
            if (c == 's') add = in_class ? WHITE_SPACE_SET : "[" WHITE_SPACE_SET "]";
            else if (c == 'S') {
                if (in_class) {
                    free(out);
                    return NULL;
                }
                add = "[^" WHITE_SPACE_SET "]";
            } else {
                tmp[0] = '\\', tmp[1] = c;
                add = tmp;
            }
        } else {
            if (p[i] == '[' && !in_class) in_class = 1;
            else if (p[i] == ']' && in_class) in_class = 0;
            add = tmp;
        }
        size_t k = strlen(add);
        if (o + k + 1 > cap) {
            free(out);
            return NULL;
        }
        memcpy(out + o, add, k);
        o += k;
    }
    out[o] = 0;
    return out;
}

int tok_compile_split(qvl_tokenizer *tok, const char *pattern) {
    char *pat = rewrite_space_classes(pattern);
    if (!pat) return qvl_errorf("pre_tokenizer regex: unsupported \\S inside a character class");
    int err;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                                   &erroff, NULL);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return qvl_errorf("pre_tokenizer regex: %s (at offset %zu)", (char *)msg, (size_t)erroff);
    }
    tok->split_jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    tok->split_re = re;
    return 0;
}

void tok_free_split(qvl_tokenizer *tok) {
    pcre2_code_free(tok->split_re);
    tok->split_re = NULL;
}

struct tok_splitter {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
};

tok_splitter *tok_splitter_new(const qvl_tokenizer *tok) {
    tok_splitter *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->md = pcre2_match_data_create_from_pattern(tok->split_re, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->md || !s->mctx) {
        tok_splitter_free(s);
        return NULL;
    }
    /* Long inputs (a 10 MB line) must not hit PCRE2's default backtracking limits. */
    pcre2_set_match_limit(s->mctx, UINT32_MAX);
    pcre2_set_depth_limit(s->mctx, UINT32_MAX);
    pcre2_set_heap_limit(s->mctx, UINT32_MAX);
    return s;
}

void tok_splitter_free(tok_splitter *s) {
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    if (s->jit_stack) pcre2_jit_stack_free(s->jit_stack);
    free(s);
}

int tok_split_next(const qvl_tokenizer *tok, tok_splitter *s, const char *text, size_t n, size_t start,
                   size_t *ms, size_t *me) {
    for (;;) {
        int rc = pcre2_match(tok->split_re, (PCRE2_SPTR)text, n, start, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !s->jit_stack) {
            s->jit_stack = pcre2_jit_stack_create(64 * 1024, 256 * 1024 * 1024, NULL);
            if (!s->jit_stack) return qvl_errorf("pre-tokenizer: out of memory");
            pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return qvl_errorf("pre-tokenizer: regex match failed: %s", (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        *ms = ov[0];
        *me = ov[1];
        return 1;
    }
}
