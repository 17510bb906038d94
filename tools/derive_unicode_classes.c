/* Derives the code points whose regex class (\p{L} / \p{N}) the reference tokenizer's Oniguruma
 * knows but this PCRE2 does not (its Unicode tables are older), from the reference's per-code-point
 * split hashes (tools/gen_tokenizer_codepoints.py, split_hashes.bin). For each code point whose
 * split differs from ours, it tries "c is a letter" and "c is a number" and keeps the hypothesis
 * that reproduces the reference. Prints the EXTRA_L / EXTRA_N range strings for src/tokenizer/pretok.c.
 * Build: cc -O2 -std=c11 -D_GNU_SOURCE -Isrc tools/derive_unicode_classes.c src/tokenizer/utf8.c -lpcre2-8 -o derive
 * Run:   ./derive split_hashes.bin */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/utf8.h"

#define WS "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* The Qwen2/3 Split regex with \s spelled out and extra letters / numbers added. */
static pcre2_code *compile(const char *xl, const char *xn) {
    char p[4096];
    snprintf(p, sizeof p,
             "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}%s\\p{N}%s]?[\\p{L}%s]+|[\\p{N}%s]| ?[^" WS
             "\\p{L}%s\\p{N}%s]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+",
             xl, xn, xl, xn, xl, xn);
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!re) fprintf(stderr, "compile failed at %zu: %s\n", (size_t)off, p), exit(1);
    return re;
}

static size_t probe(unsigned cp, char *s) {
    char c[4];
    int k = utf8_put(cp, c);
    const char *l[] = {"a", 0, 0, "'s", 0, "1", 0, "\n", 0, "x ", 0, "  ", 0};
    size_t n = 0;
    for (int i = 0; i < 13; i++) {
        size_t m = l[i] ? strlen(l[i]) : (size_t)k;
        memcpy(s + n, l[i] ? l[i] : c, m);
        n += m;
    }
    return n;
}

static unsigned long long split_hash(pcre2_code *re, const char *s, size_t n) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    size_t lens[64], np = 0, pos = 0;
    while (pos < n && pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, md, NULL) > 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[0] > pos) lens[np++] = ov[0] - pos;
        lens[np++] = ov[1] - ov[0];
        pos = ov[1];
    }
    if (pos < n) lens[np++] = n - pos;
    pcre2_match_data_free(md);
    unsigned long long h = np;
    for (size_t i = 0; i < np; i++) h = h * 1000003ull + lens[i];
    return h;
}

/* Appends cp to a range list string, merging with the previous range when adjacent. */
static void add_range(char *list, unsigned *lo, unsigned *hi, unsigned cp) {
    if (*hi + 1 == cp && *lo) {
        *hi = cp;
        return;
    }
    if (*lo) sprintf(list + strlen(list), *lo == *hi ? "\\\\x{%X}" : "\\\\x{%X}-\\\\x{%X}", *lo, *hi);
    *lo = *hi = cp;
}

int main(int argc, char **argv) {
    static unsigned long long ref[0x110000];
    FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (!f || fread(ref, 8, 0x110000, f) != 0x110000) return fprintf(stderr, "usage: derive split_hashes.bin\n"), 1;
    fclose(f);
    pcre2_code *base = compile("", "");
    static char list_l[200000], list_n[20000];
    unsigned ll = 0, lh = 0, nl = 0, nh = 0, unexplained = 0, differ = 0;
    for (unsigned cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        char s[80], one[32];
        size_t n = probe(cp, s);
        if (split_hash(base, s, n) == ref[cp]) continue;
        differ++;
        snprintf(one, sizeof one, "\\x{%X}", cp);
        pcre2_code *as_l = compile(one, ""), *as_n = compile("", one);
        if (split_hash(as_l, s, n) == ref[cp]) add_range(list_l, &ll, &lh, cp);
        else if (split_hash(as_n, s, n) == ref[cp]) add_range(list_n, &nl, &nh, cp);
        else fprintf(stderr, "U+%04X: neither letter nor number explains the reference split\n", cp), unexplained++;
        pcre2_code_free(as_l);
        pcre2_code_free(as_n);
    }
    add_range(list_l, &ll, &lh, 0xFFFFFFFE);
    add_range(list_n, &nl, &nh, 0xFFFFFFFE);
    printf("/* %u code points differ; %u unexplained */\n#define EXTRA_L \"%s\"\n#define EXTRA_N \"%s\"\n", differ,
           unexplained, list_l, list_n);
    return unexplained ? 1 : 0;
}
