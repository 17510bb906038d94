/* The OCRBench scorer: every example of docs/ocrbench.md section 7, per-type cases, the
 * lmms-eval variant, and Python-exact Unicode lower()/strip(). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <utf8proc.h>

#include "eval/score.h"
#include "eval/unicode_case.h"
#include "test.h"
#include "util/file.h"

#define HME "Handwritten Mathematical Expression Recognition"

static int match1(const char *pred, const char *ans, const char *type) {
    const char *a[] = {ans};
    return qvl_ocrbench_match(pred, a, 1, type);
}
static int match2(const char *pred, const char *a0, const char *a1, const char *type) {
    const char *a[] = {a0, a1};
    return qvl_ocrbench_match(pred, a, 2, type);
}

TEST(score_spec_examples) {
    CHECK_INT(match1("CENTRE", "CENTRE", "Regular Text Recognition"), 1);
    CHECK_INT(match1("The text reads \"centre\".", "CENTRE", "Regular Text Recognition"), 1);
    CHECK_INT(match1("CENTER", "CENTRE", "Regular Text Recognition"), 0);
    CHECK_INT(match1("57430", "5743", "Digit String Recognition"), 1);
    CHECK_INT(match1("5 7 4 3", "5743", "Digit String Recognition"), 0);
    CHECK_INT(match2("Chatswood, Epping", "Chatswood Epping", "Chatswood, Epping", "Scene Text-centric VQA"), 1);
    CHECK_INT(match2("Chatswood and Epping", "Chatswood Epping", "Chatswood, Epping", "Scene Text-centric VQA"), 0);
    CHECK_INT(match1("$506 million", "$506 million", "Doc-oriented VQA"), 1);
    CHECK_INT(match1("506 million", "$506 million", "Doc-oriented VQA"), 0);
    CHECK_INT(match1("Secret Recipe Restaurant Sdn Bhd", "SECRET RECIPE RESTAURANT", "Key Information Extraction"), 1);
    CHECK_INT(match2("70.6 g", "70.6g", "70.6 g", "Key Information Extraction"), 1);
    CHECK_INT(match2("y_{2}=-1", "y _ { 2 } = - 1\n", "y_2 = - 1\n", HME), 1);
    CHECK_INT(match2("$$y_2=-1$$", "y _ { 2 } = - 1\n", "y_2 = - 1\n", HME), 1);
    CHECK_INT(match1("b a = c h", "B a = C H = \\frac { 9 - 1 } { 2 } = 4\n", HME), 0);
    CHECK_INT(match1("Ba=CH=\\frac{9-1}{2}=4", "B a = C H = \\frac { 9 - 1 } { 2 } = 4\n", HME), 1);
    CHECK_INT(match1("", "CENTRE", "Regular Text Recognition"), 0);
    CHECK_INT(match1("communities\n", "communities", "Handwriting Recognition"), 1);
    CHECK_INT(match1("donut\nworld", "donut world", "Scene Text-centric VQA"), 1);
}

TEST(score_lmms_eval_rule_lowercases_hme_prediction) {
    const char *a[] = {"B a = C H = \\frac { 9 - 1 } { 2 } = 4\n"};
    CHECK_INT(qvl_ocrbench_match_rule("Ba=CH=\\frac{9-1}{2}=4", a, 1, HME, QVL_SCORE_LMMS_EVAL), 0);
    CHECK_INT(qvl_ocrbench_match_rule("Ba=CH=\\frac{9-1}{2}=4", a, 1, HME, QVL_SCORE_OFFICIAL), 1);
    const char *b[] = {"x^2\n"};
    CHECK_INT(qvl_ocrbench_match_rule("X^2", b, 1, HME, QVL_SCORE_LMMS_EVAL), 1);
    CHECK_INT(qvl_ocrbench_match_rule("X^2", b, 1, HME, QVL_SCORE_OFFICIAL), 0);
    /* Non-HME items are identical under both rules. */
    const char *c[] = {"CENTRE"};
    CHECK_INT(qvl_ocrbench_match_rule("centre", c, 1, "Regular Text Recognition", QVL_SCORE_LMMS_EVAL), 1);
}

TEST(score_per_type_cases) {
    /* Every non-HME type is case-insensitive and keeps internal whitespace. */
    for (int k = 0; k < 9; k++) {
        const char *t = qvl_ocrbench_types[k];
        CHECK_INT(match1("  Answer: HeLLo World \n", "hello world", t), 1);
        CHECK_INT(match1("hello  world", "hello world", t), 0);        /* double space kept */
        CHECK_INT(match1("hello\tworld", "hello world", t), 0);        /* tab is not a space */
        CHECK_INT(match1("hello\r\nworld", "hello world", t), 0);      /* CR kept, LF -> space */
        CHECK_INT(match1("hello\nworld", "hello world", t), 1);
        CHECK_INT(match2("nothing", "no match", "thing", t), 1);
    }
    /* HME: case-sensitive; spaces (U+0020) and LF deleted, tabs and CR kept. */
    CHECK_INT(match1("a b\nc", "abc", HME), 1);
    CHECK_INT(match1("ABC", "abc", HME), 0);
    CHECK_INT(match1("a\tbc", "abc", HME), 0);
    CHECK_INT(match1("a\rbc", "abc", HME), 0);
    CHECK_INT(match1("\\sqrt{2}", "\\sqrt { 2 }\n", HME), 1);
    /* Unknown type: general rule. */
    CHECK_INT(match1("ABC", "abc", "Something Else"), 1);
    CHECK_INT(match1("abc", "", "Regular Text Recognition"), 1);   /* empty reference: Python `"" in s` */
}

TEST(score_type_tables) {
    CHECK_INT(qvl_ocrbench_type_index(HME), 9);
    CHECK_INT(qvl_ocrbench_type_index("Doc-Oriented VQA"), -1);      /* exact, case-sensitive */
    CHECK_INT(qvl_ocrbench_type_index(NULL), -1);
    int want[10] = {0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    for (int k = 0; k < 10; k++) CHECK_INT(qvl_ocrbench_category_of(k), want[k]);
    CHECK_INT(qvl_ocrbench_category_of(10), -1);
    qvl_ocrbench_tally t = {0};
    qvl_ocrbench_tally_add(&t, "Regular Text Recognition", 1);
    qvl_ocrbench_tally_add(&t, "Digit String Recognition", 0);
    qvl_ocrbench_tally_add(&t, HME, 1);
    qvl_ocrbench_tally_add(&t, "bogus", 1);
    int c[5], n[5];
    qvl_ocrbench_category_sums(&t, c, n);
    CHECK_INT(c[0], 1);
    CHECK_INT(n[0], 2);
    CHECK_INT(c[4], 1);
    CHECK_INT(n[4], 1);
    CHECK_INT(qvl_ocrbench_tally_correct(&t), 3);
    CHECK_INT(qvl_ocrbench_tally_total(&t), 4);
}

TEST(score_unicode_edge_cases) {
    /* U+212A KELVIN SIGN lowers to ASCII k; U+212B ANGSTROM SIGN to U+00E5. */
    CHECK_INT(match1("300 \xe2\x84\xaa", "300 k", "Doc-oriented VQA"), 1);
    CHECK_INT(match1("5 \xe2\x84\xab", "5 \xc3\xa5", "Doc-oriented VQA"), 1);
    CHECK_INT(match1("5 \xc3\xa5", "5 \xe2\x84\xab", "Doc-oriented VQA"), 1);
    /* U+0130 lowers to "i" + U+0307: it matches "i̇" but not a bare "istanbul" followed by 's'. */
    CHECK_INT(match1("\xc4\xb0stanbul", "i\xcc\x87stanbul", "Scene Text-centric VQA"), 1);
    CHECK_INT(match1("\xc4\xb0stanbul", "istanbul", "Scene Text-centric VQA"), 0);
    CHECK_INT(match1("\xc4\xb0", "i", "Scene Text-centric VQA"), 1);
    /* Final sigma: "ΟΔΟΣ" lowers to "οδος" with a final ς, so reference "οδοσ" does not match. */
    CHECK_INT(match1("\xce\x9f\xce\x94\xce\x9f\xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x82", "Scene Text-centric VQA"), 1);
    CHECK_INT(match1("\xce\x9f\xce\x94\xce\x9f\xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x83", "Scene Text-centric VQA"), 0);
    /* Unicode whitespace is stripped at the ends (U+3000, U+00A0, U+2028, U+0085). */
    CHECK_INT(match1("\xe3\x80\x80" "x", "x", "Regular Text Recognition"), 1);
    CHECK_INT(match1("ab", "\xc2\xa0" "ab\xe2\x80\xa8", "Regular Text Recognition"), 1);
    CHECK_INT(match1("ab", "\xc2\x85" "ab", HME), 1);
    /* U+200B ZERO WIDTH SPACE is not whitespace for Python: it stays, so no match. */
    CHECK_INT(match1("ab", "\xe2\x80\x8b" "ab", "Regular Text Recognition"), 0);
    /* Invalid UTF-8 passes through unchanged. */
    CHECK_INT(match1("A\xff" "B", "a\xff" "b", "Regular Text Recognition"), 1);
}

TEST(score_unicode_single_code_points) {
    uint32_t o[2];
    CHECK_INT(qvl_py_lower_cp(0x130, o), 2);
    CHECK_INT(o[0], 0x69);
    CHECK_INT(o[1], 0x307);
    CHECK_INT(qvl_py_lower_cp(0x212A, o), 1);
    CHECK_INT(o[0], 0x6B);
    CHECK_INT(qvl_py_lower_cp(0x212B, o), 1);
    CHECK_INT(o[0], 0xE5);
    CHECK_INT(qvl_py_lower_cp(0x1E9E, o), 1);   /* capital sharp s -> ß */
    CHECK_INT(o[0], 0xDF);
    CHECK_INT(qvl_py_lower_cp(0x1F88, o), 1);   /* lower() keeps the iota subscript form */
    CHECK_INT(o[0], 0x1F80);
    CHECK_INT(qvl_py_lower_cp(0x10400, o), 1);  /* Deseret */
    CHECK_INT(o[0], 0x10428);
    CHECK_INT(qvl_py_lower_cp(0xDF, o), 1);
    CHECK_INT(o[0], 0xDF);
    int n_space = 0;
    for (uint32_t c = 0; c < 0x110000; c++) n_space += qvl_py_isspace(c);
    CHECK_INT(n_space, 29);   /* Python: sum(chr(c).isspace() for c in range(0x110000)) */
}

/* Strings with Python's own lower() and strip() results (tools/gen_unicode_case.py). */
TEST(score_unicode_matches_python) {
    size_t len;
    char *text = qvl_read_file("tests/fixtures/scoring/python_case.jsonl", &len);
    CHECK(text != NULL);
    if (!text) return;
    int lines = 0, bad_lower = 0, bad_strip = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(j, "s"));
        const char *low = cJSON_GetStringValue(cJSON_GetObjectItem(j, "lower"));
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(j, "strip"));
        CHECK(s && low && st);
        if (s && low && st) {
            lines++;
            char *got = qvl_py_lower(s, strlen(s), NULL);
            if (!got || strcmp(got, low)) {
                if (bad_lower++ < 3) CHECK_STR(got, low);
            }
            free(got);
            size_t a, n = qvl_py_strip(s, strlen(s), &a);
            if (n != strlen(st) || memcmp(s + a, st, n)) {
                if (bad_strip++ < 3) CHECK_STR(s + a, st);
            }
        }
        cJSON_Delete(j);
    }
    CHECK_INT(lines, 429);
    CHECK_INT(bad_lower, 0);
    CHECK_INT(bad_strip, 0);
    free(text);
}

/* Cross-check of the Python-made table against an independent source: utf8proc's simple
 * lower-case mapping agrees on every code point except U+0130, whose full mapping (Python's) is
 * "i" U+0307 where the simple one is plain "i" (this is why qvl does not use utf8proc_tolower). */
TEST(score_unicode_table_vs_utf8proc) {
    int differ = 0;
    uint32_t first = 0;
    for (uint32_t c = 0; c < 0x110000; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        uint32_t o[2];
        int k = qvl_py_lower_cp(c, o);
        if (k != 1 || (int32_t)o[0] != utf8proc_tolower((utf8proc_int32_t)c)) {
            if (!differ) first = c;
            differ++;
        }
    }
    CHECK_INT(differ, 1);
    CHECK_INT(first, 0x130);
}
