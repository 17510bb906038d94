#include "eval/pylit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/utf8.h"
#include "util/error.h"

typedef struct {
    const char *s;  /* the whole literal, for offsets in messages */
    const char *p;
} cursor;

typedef struct {
    char *buf;
    size_t len, cap;
} strbuf;

static int sb_put(strbuf *b, const char *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        while (cap < b->len + n + 1) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) return -1;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    b->buf[b->len] = 0;
    return 0;
}

static int sb_put_codepoint(strbuf *b, uint32_t cp) {
    char u[4];
    return sb_put(b, u, (size_t)utf8_put(cp, u));
}

static int fail(const cursor *c, const char *why) {
    return qvl_errorf("%s at offset %ld", why, (long)(c->p - c->s));
}

static void skip_space(cursor *c) {
    while (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r' || *c->p == '\f' || *c->p == '\v') c->p++;
}

static int hex_digit(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* One escape after the backslash (c->p points past it). */
static int read_escape(cursor *c, strbuf *b) {
    char e = *c->p;
    const char *simple = strchr("\\'\"abfnrtv", e);
    static const char simple_out[] = "\\'\"\a\b\f\n\r\t\v";
    if (e && simple) {
        c->p++;
        return sb_put(b, &simple_out[simple - "\\'\"abfnrtv"], 1);
    }
    if (e == '\n') { c->p++; return 0; }  /* line continuation */
    if (e == '\r') { c->p += c->p[1] == '\n' ? 2 : 1; return 0; }
    if (e >= '0' && e <= '7') {
        uint32_t v = 0;
        for (int i = 0; i < 3 && *c->p >= '0' && *c->p <= '7'; i++) v = v * 8 + (uint32_t)(*c->p++ - '0');
        return sb_put_codepoint(b, v);
    }
    int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (digits) {
        c->p++;
        uint32_t v = 0;
        for (int i = 0; i < digits; i++) {
            int h = hex_digit(c->p[i]);
            if (h < 0) return fail(c, "truncated \\x/\\u/\\U escape");
            v = v * 16 + (uint32_t)h;
        }
        if (v > 0x10FFFF) return fail(c, "escape beyond U+10FFFF");
        if (v >= 0xD800 && v <= 0xDFFF) return fail(c, "surrogate code point escape");
        c->p += digits;
        return sb_put_codepoint(b, v);
    }
    if (e == 'N') return fail(c, "\\N{...} escapes are not supported");
    if (!e) return fail(c, "unterminated string");
    return sb_put(b, "\\", 1);  /* unknown escape: Python keeps the backslash */
}

/* A string literal with optional r/u prefix; appends its value to b. */
static int read_string(cursor *c, strbuf *b) {
    int raw = 0;
    while (*c->p == 'r' || *c->p == 'R' || *c->p == 'u' || *c->p == 'U') {
        if (*c->p == 'r' || *c->p == 'R') raw = 1;
        c->p++;
    }
    char q = *c->p;
    if (q != '\'' && q != '"') return fail(c, "expected a string literal");
    if (c->p[1] == q && c->p[2] == q) return fail(c, "triple-quoted strings are not supported");
    c->p++;
    while (*c->p != q) {
        if (!*c->p || *c->p == '\n') return fail(c, "unterminated string");
        if (*c->p == '\\') {
            c->p++;
            if (raw) {
                if (!*c->p) return fail(c, "unterminated string");
                if (sb_put(b, c->p - 1, 2)) return fail(c, "out of memory");
                c->p++;
                continue;
            }
            if (read_escape(c, b)) return -1;
            continue;
        }
        const char *run = c->p;
        while (*c->p && *c->p != q && *c->p != '\\' && *c->p != '\n') c->p++;
        if (sb_put(b, run, (size_t)(c->p - run))) return fail(c, "out of memory");
    }
    c->p++;
    return 0;
}

static int starts_string(const char *p) {
    while (*p == 'r' || *p == 'R' || *p == 'u' || *p == 'U') p++;
    return *p == '\'' || *p == '"';
}

/* One item: adjacent string literals concatenated. Returns a malloc'd string or NULL. */
static char *read_item(cursor *c) {
    strbuf b = {0};
    if (sb_put(&b, "", 0)) { fail(c, "out of memory"); return NULL; }
    do {
        if (!starts_string(c->p)) {
            fail(c, "expected a string literal");
            free(b.buf);
            return NULL;
        }
        if (read_string(c, &b)) { free(b.buf); return NULL; }
        skip_space(c);
    } while (starts_string(c->p));
    return b.buf;
}

void qvl_pylit_free(char **list, int n) {
    if (!list) return;
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}

int qvl_pylit_string_list(const char *s, char ***out) {
    cursor c = {s, s};
    *out = NULL;
    char **items = NULL;
    int n = 0, cap = 0;
    skip_space(&c);
    char close = *c.p == '[' ? ']' : *c.p == '(' ? ')' : 0;
    if (close) {
        c.p++;
        skip_space(&c);
    }
    for (;;) {
        if (close && *c.p == close) break;
        char *item = read_item(&c);
        if (!item) goto fail;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            char **ni = realloc(items, (size_t)cap * sizeof *ni);
            if (!ni) { free(item); fail(&c, "out of memory"); goto fail; }
            items = ni;
        }
        items[n++] = item;
        if (!close) break;
        if (*c.p == ',') {
            c.p++;
            skip_space(&c);
        } else if (*c.p != close) {
            fail(&c, *c.p ? "expected ',' or closing bracket" : "unterminated list");
            goto fail;
        }
    }
    if (close) c.p++;
    skip_space(&c);
    if (*c.p) { fail(&c, "unexpected text after the literal"); goto fail; }
    if (n == 0) { fail(&c, "empty answer list"); goto fail; }
    *out = items;
    return n;
fail:
    qvl_pylit_free(items, n);
    return -1;
}
