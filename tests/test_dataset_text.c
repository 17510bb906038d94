/* The text layers under the TSV loader: Python list literals (VLMEvalKit's answer column),
 * base64, and the TSV quoting and error cases, on hand-written files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/dataset.h"
#include "eval/pylit.h"
#include "test.h"
#include "util/base64.h"
#include "util/error.h"
#include "util/file.h"

/* Parses lit; checks it gives exactly the n expected strings. */
static void check_list(const char *lit, int n, const char *const *want, int line) {
    char **got;
    int k = qvl_pylit_string_list(lit, &got);
    if (k != n) {
        test_fail(__FILE__, line, "%s: %d items, want %d (%s)", lit, k, n, k < 0 ? qvl_error() : "");
        if (k > 0) qvl_pylit_free(got, k);
        return;
    }
    for (int i = 0; i < n; i++)
        if (strcmp(got[i], want[i])) test_fail(__FILE__, line, "%s: item %d is \"%s\", want \"%s\"", lit, i, got[i], want[i]);
    qvl_pylit_free(got, k);
}
#define LIST(lit, ...)                                                                   \
    do {                                                                                 \
        const char *const w_[] = {__VA_ARGS__};                                          \
        check_list(lit, (int)(sizeof w_ / sizeof *w_), w_, __LINE__);                    \
    } while (0)

static void check_bad(const char *lit, const char *why, int line) {
    char **got;
    int k = qvl_pylit_string_list(lit, &got);
    if (k >= 0) {
        test_fail(__FILE__, line, "%s: parsed (%d items), want an error", lit, k);
        qvl_pylit_free(got, k);
    } else if (!strstr(qvl_error(), why)) {
        test_fail(__FILE__, line, "%s: error \"%s\", want \"%s\"", lit, qvl_error(), why);
    }
}
#define BAD(lit, why) check_bad(lit, why, __LINE__)

TEST(dataset_pylit_lists) {
    LIST("['CENTRE']", "CENTRE");
    LIST("['Chatswood Epping', 'Chatswood, Epping']", "Chatswood Epping", "Chatswood, Epping");
    LIST("[\"it's\"]", "it's");                                     /* repr picks double quotes */
    LIST("['O\\'Neil \"Jr\"']", "O'Neil \"Jr\"");                  /* both quotes: escaped single */
    LIST("['y _ { 2 } = - 1\\n', 'y_2 = - 1\\n']", "y _ { 2 } = - 1\n", "y_2 = - 1\n");
    LIST("['B a = C H = \\\\frac { 9 - 1 } { 2 } = 4\\n']", "B a = C H = \\frac { 9 - 1 } { 2 } = 4\n");
    LIST("['a\\tb\\rc\\\\d\\\"e']", "a\tb\rc\\d\"e");
    LIST("['\\x41\\u00e9\\U0001F600\\101\\0']", "A\xC3\xA9\xF0\x9F\x98\x80" "A");  /* \0 ends the C string */
    LIST("['\\a\\b\\f\\v']", "\a\b\f\v");
    LIST("['\\d\\s']", "\\d\\s");                                   /* unknown escapes keep the backslash */
    LIST("['caf\xC3\xA9', '\xE4\xB8\xAD\xE6\x96\x87']", "caf\xC3\xA9", "\xE4\xB8\xAD\xE6\x96\x87");
    LIST("  [ 'a' ,\n 'b' , ]  ", "a", "b");                        /* spaces, newline, trailing comma */
    LIST("('a', 'b')", "a", "b");                                   /* a tuple */
    LIST("'bare'", "bare");                                         /* a bare string: one answer */
    LIST("['ab' 'cd']", "abcd");                                    /* adjacent literals concatenate */
    LIST("[r'\\frac', u'x']", "\\frac", "x");
    LIST("['a\\\nb']", "ab");                                       /* backslash-newline continuation */
    LIST("['[1, 2]', ']']", "[1, 2]", "]");
    LIST("['']", "");
}

TEST(dataset_pylit_errors) {
    BAD("[]", "empty answer list");
    BAD("['a'", "unterminated list");
    BAD("['a' 'b", "unterminated string");
    BAD("['a', 3]", "expected a string literal at offset 6");
    BAD("[['a']]", "expected a string literal");
    BAD("['a'] x", "unexpected text after the literal");
    BAD("['a' ; 'b']", "expected ',' or closing bracket");
    BAD("['\\x4']", "truncated \\x/\\u/\\U escape");
    BAD("['\\ud800']", "surrogate");
    BAD("['\\N{DASH}']", "\\N{...} escapes are not supported");
    BAD("['''a''']", "triple-quoted");
    BAD("", "expected a string literal");
    BAD("None", "expected a string literal");
}

TEST(dataset_base64) {
    size_t n;
    uint8_t *d = qvl_base64_decode("TWFu", 4, &n);
    CHECK(d && n == 3 && !memcmp(d, "Man", 3));
    free(d);
    d = qvl_base64_decode("TWE=", 4, &n);
    CHECK(d && n == 2 && !memcmp(d, "Ma", 2));
    free(d);
    d = qvl_base64_decode("TQ==", 4, &n);
    CHECK(d && n == 1 && d[0] == 'M');
    free(d);
    d = qvl_base64_decode("TQ", 2, &n);  /* padding optional */
    CHECK(d && n == 1 && d[0] == 'M');
    free(d);
    d = qvl_base64_decode("TW\nFu\r\n+/+/", 11, &n);  /* line breaks skipped; + and / */
    CHECK(d && n == 6 && !memcmp(d, "Man\xfb\xff\xbf", 6));
    free(d);
    d = qvl_base64_decode("", 0, &n);
    CHECK(d && n == 0);
    free(d);
    CHECK(qvl_base64_decode("TW*u", 4, &n) == NULL);
    CHECK_CONTAINS(qvl_error(), "invalid base64: character 0x2a at offset 2");
    CHECK(qvl_base64_decode("TWFuT", 5, &n) == NULL);
    CHECK_CONTAINS(qvl_error(), "invalid base64: truncated data");
    CHECK(qvl_base64_decode("TQ==TQ==", 8, &n) == NULL);
    CHECK_CONTAINS(qvl_error(), "data after '=' padding");
    CHECK(qvl_base64_decode("TWF=u", 5, &n) == NULL);
}

static char *tmp_file(const char *name, const char *text) { return test_tmp_file(name, text, strlen(text)); }

TEST(dataset_tsv_quoting_and_columns) {
    /* CRLF line ends, quoted fields with "" and a real newline and tab, extra columns, a dataset
     * column, an image shared by reference to a later row, a blank line at the end */
    const char *tsv =
        "index\tsplit\timage\tquestion\tanswer\tcategory\tdataset_name\r\n"
        "7\ttest\t3\t\"Say \"\"hi\"\"\tthen\nstop\"\t\"['a\\\\nb', \"\"it's\"\"]\"\tDoc-oriented VQA\tdocVQA\r\n"
        "3\ttest\tTWFu\tq3\t['y = \\\\frac { 1 } { 2 }\\n']\tHandwritten Mathematical Expression Recognition\tHME100k\r\n"
        "\r\n";
    char *p = tmp_file("q.tsv", tsv);
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(p, NULL, 1, &ds), 0);
    CHECK_INT(ds.n_samples, 2);
    CHECK_INT(qvl_dataset_count_errors(&ds), 0);
    if (ds.n_samples == 2) {
        const qvl_sample *s = qvl_dataset_find(&ds, 7);
        CHECK(s == &ds.samples[0]);
        CHECK_STR(s->question, "Say \"hi\"\tthen\nstop");
        CHECK_INT(s->n_answers, 2);
        if (s->n_answers == 2) {
            CHECK_STR(s->answers[0], "a\\nb");  /* \\n in the literal: backslash + n */
            CHECK_STR(s->answers[1], "it's");
        }
        CHECK_STR(s->type, "Doc-oriented VQA");
        CHECK_STR(s->dataset, "docVQA");
        CHECK(s->image_size == 3 && !memcmp(s->image_data, "Man", 3));  /* row 3's image */
        s = qvl_dataset_find(&ds, 3);
        CHECK(s == &ds.samples[1]);
        CHECK_STR(s->answers[0], "y = \\frac { 1 } { 2 }\n");
        CHECK(qvl_dataset_find(&ds, 0) == NULL);
    }
    qvl_dataset_free(&ds);
    free(p);
}

TEST(dataset_tsv_bad_lines) {
    const char *tsv =
        "index\timage\tquestion\tanswer\tcategory\n"
        "0\tTWFu\tok\t['A']\tRegular Text Recognition\n"
        "1\tTW*u\tbad base64\t['A']\tRegular Text Recognition\n"
        "2\tTWFu\tshort line\t['A']\n"
        "3\tTWFu\tbad literal\t['A'\tRegular Text Recognition\n"
        "x4\tTWFu\tbad index\t['A']\tRegular Text Recognition\n"
        "5\t99\tdangling image reference\t['A']\tRegular Text Recognition\n"
        "6\tTWFu\ttoo many\t['A']\tRegular Text Recognition\textra\n";
    char *p = tmp_file("bad.tsv", tsv);
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(p, NULL, 1, &ds), 0);
    CHECK_INT(ds.n_samples, 7);
    CHECK_INT(qvl_dataset_count_errors(&ds), 6);
    if (ds.n_samples == 7) {
        CHECK(ds.samples[0].error == NULL);
        CHECK_INT(ds.samples[1].index, 1);
        CHECK_CONTAINS(ds.samples[1].error, "image: invalid base64: character 0x2a at offset 2");
        CHECK_INT(ds.samples[1].n_answers, 1);  /* still scorable (as wrong) */
        CHECK_INT(ds.samples[2].index, 2);
        CHECK_CONTAINS(ds.samples[2].error, "line 4: 4 fields, the header has 5");
        CHECK_INT(ds.samples[3].index, 3);
        CHECK_CONTAINS(ds.samples[3].error, "line 5: answer: unterminated list");
        CHECK_INT(ds.samples[4].index, -1);
        CHECK_CONTAINS(ds.samples[4].error, "line 6: index 'x4' is not an integer");
        CHECK_CONTAINS(ds.samples[5].error, "image field '99' is neither base64 nor the index of a row with an image");
        CHECK_CONTAINS(ds.samples[6].error, "line 8: 6 fields, the header has 5");
    }
    qvl_dataset_free(&ds);
    /* annotations only: base64 and image references are not looked at */
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), 0);
    CHECK_INT(qvl_dataset_count_errors(&ds), 4);
    qvl_dataset_free(&ds);
    free(p);
}

TEST(dataset_tsv_structural_errors) {
    qvl_dataset ds;
    char *p = tmp_file("hdr.tsv", "index\timage\tquestion\tanswer\n0\tTWFu\tq\t['A']\n");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "hdr.tsv: not a VLMEvalKit OCRBench TSV: no 'category' column in the header");
    free(p);
    p = tmp_file("noimg.tsv", "index\tquestion\tanswer\tcategory\n0\tq\t['A']\tDoc-oriented VQA\n");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), 0);  /* scoring needs no image column */
    qvl_dataset_free(&ds);
    CHECK_INT(qvl_dataset_load(p, NULL, 1, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "no 'image' column");
    free(p);
    p = tmp_file("dup.tsv", "index\tquestion\tanswer\tcategory\n4\tq\t['A']\tc\n4\tq\t['B']\tc\n");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "dup.tsv: duplicate index 4");
    free(p);
    p = tmp_file("quote.tsv", "index\tquestion\tanswer\tcategory\n0\tq\t['A']\tc\n1\t\"never closed\t['A']\tc\n2\tq\t['A']\tc\n");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "quote.tsv: line 3: unterminated quoted field");
    free(p);
    p = tmp_file("headeronly.tsv", "index\tquestion\tanswer\tcategory\n");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "headeronly.tsv: no samples after the header");
    free(p);
}
