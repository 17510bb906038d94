/* The Split pre-tokenizer: the tokenizer.json regex, compiled with PCRE2 in UTF + UCP mode.
 * The reference runs it with Oniguruma, whose \s is exactly the Unicode White_Space property;
 * PCRE2's UCP \s differs (it adds U+180E), so \s and \S are rewritten to the explicit set.
 * Oniguruma's Unicode tables are also newer than this PCRE2's (14.0): \p{L} and \p{N} get the
 * code points the exhaustive sweep against the reference found missing
 * (tests/test_tokenizer_codepoints.c, tools/gen_tokenizer_codepoints.py). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/pretok.h"
#include "tokenizer/tokenizer_internal.h"
#include "util/error.h"

/* Letters and numbers of Unicode 15 and 16 that Oniguruma classifies and this PCRE2 does not,
 * as derived by tools/derive_unicode_classes.c from the reference's split of every code point
 * (all 9392 differing code points are explained by one of the two classes). */
#define EXTRA_L \
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}" \
    "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}" \
    "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}" \
    "\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}" \
    "\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}" \
    "\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}" \
    "\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}" \
    "\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"
#define EXTRA_N \
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}" \
    "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}" \
    "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"

#define WHITE_SPACE_SET "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Rewrites \s / \S, \p{L} and \p{N} (inside and outside character classes); NULL if \S
 * occurs inside a class. */
static char *rewrite_classes(const char *p) {
    size_t n = strlen(p), cap = (n + 1) * (16 + sizeof EXTRA_L + sizeof EXTRA_N + sizeof WHITE_SPACE_SET), o = 0;
    char buf[sizeof EXTRA_L + sizeof EXTRA_N + 32];
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
            } else if (c == 'p' && (!strncmp(p + i + 1, "{L}", 3) || !strncmp(p + i + 1, "{N}", 3))) {
                int is_l = p[i + 2] == 'L';
                snprintf(buf, sizeof buf, in_class ? "\\p{%c}%s" : "[\\p{%c}%s]", is_l ? 'L' : 'N',
                         is_l ? EXTRA_L : EXTRA_N);
                add = buf;
                i += 3;
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
    char *pat = rewrite_classes(pattern);
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
