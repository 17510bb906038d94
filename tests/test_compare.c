/* `qvl compare`: the Markdown table from summary files and a well-formed SVG chart. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "test.h"
#include "util/file.h"

static const char *write_summary(const char *name, const char *model, double acc, long total, double lat,
                                 double sps, double peak, const char *quant, const char *device) {
    static char paths[4][512];
    static int k;
    char *path = paths[k++ % 4];
    snprintf(path, 512, "%s/%s.json", test_tmpdir(), name);
    char text[2048];
    snprintf(text, sizeof text,
             "{\"model\":\"%s\",\"data\":\"d\",\"device\":\"%s\",\"settings\":{\"dtype\":\"bfloat16\"%s%s%s},"
             "\"total_samples\":%ld,\"correct\":1,\"accuracy\":%.17g,\"samples_per_s\":%.17g,"
             "\"latency_s\":{\"mean\":%.17g,\"p50\":0,\"p95\":0},\"peak_memory_mib\":{\"used\":%.17g,\"planned\":null}}",
             model, device, quant ? ",\"quantization\":\"" : "", quant ? quant : "", quant ? "\"" : "", total, acc,
             sps, lat, peak);
    qvl_write_file_atomic(path, text, strlen(text));
    return path;
}

/* A small XML well-formedness check: every tag closes in order, attributes are quoted, every
 * '&' starts a known entity, and there is exactly one root element. Returns the element count or -1. */
static int xml_well_formed(const char *s, const char **why) {
    const char *stack[256];
    size_t stack_len[256];
    int depth = 0, elements = 0, roots = 0;
    *why = "ok";
    if (!strncmp(s, "<?xml", 5)) {
        s = strstr(s, "?>");
        if (!s) return *why = "unterminated declaration", -1;
        s += 2;
    }
    while (*s) {
        if (*s == '&') {
            static const char *ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
            int ok = 0;
            for (int i = 0; i < 5; i++) ok |= !strncmp(s, ents[i], strlen(ents[i]));
            if (!ok) return *why = "bad entity", -1;
            s++;
            continue;
        }
        if (*s != '<') {
            if (depth == 0 && !isspace((unsigned char)*s)) return *why = "text outside the root", -1;
            s++;
            continue;
        }
        s++;
        int closing = *s == '/';
        if (closing) s++;
        const char *name = s;
        while (isalnum((unsigned char)*s) || *s == '-' || *s == ':' || *s == '_') s++;
        size_t nlen = (size_t)(s - name);
        if (!nlen) return *why = "tag without a name", -1;
        if (closing) {
            while (isspace((unsigned char)*s)) s++;
            if (*s != '>') return *why = "bad closing tag", -1;
            if (!depth || stack_len[depth - 1] != nlen || strncmp(stack[depth - 1], name, nlen))
                return *why = "mismatched closing tag", -1;
            depth--;
            s++;
            continue;
        }
        for (;;) {   /* attributes */
            while (isspace((unsigned char)*s)) s++;
            if (*s == '>' || (*s == '/' && s[1] == '>')) break;
            const char *a = s;
            while (isalnum((unsigned char)*s) || *s == '-' || *s == ':' || *s == '_') s++;
            if (s == a || *s != '=' || (s[1] != '"' && s[1] != '\'')) return *why = "bad attribute", -1;
            char q = s[1];
            s += 2;
            while (*s && *s != q) {
                if (*s == '<') return *why = "'<' in an attribute", -1;
                s++;
            }
            if (!*s) return *why = "unterminated attribute", -1;
            s++;
        }
        elements++;
        if (depth == 0) roots++;
        if (*s == '/') {
            s += 2;
            continue;
        }
        if (depth == 256) return *why = "too deep", -1;
        stack[depth] = name;
        stack_len[depth++] = nlen;
        s++;
    }
    if (depth) return *why = "unclosed element", -1;
    if (roots != 1) return *why = "not exactly one root element", -1;
    return elements;
}

TEST(compare_xml_checker_rejects_bad_xml) {
    const char *why;
    CHECK(xml_well_formed("<a><b x=\"1\"/>t &amp; u</a>", &why) == 2);
    CHECK(xml_well_formed("<a><b></a></b>", &why) < 0);
    CHECK(xml_well_formed("<a>x & y</a>", &why) < 0);
    CHECK(xml_well_formed("<a x=1></a>", &why) < 0);
    CHECK(xml_well_formed("<a></a><b></b>", &why) < 0);
}

TEST(compare_markdown_table_and_svg) {
    const char *a = write_summary("runA", "./models/8b", 91.333333, 300, 0.0981, 9.9967, 11483.38, "awq",
                                  "NVIDIA H100");
    const char *b = write_summary("run|B", "./models/<4b>&co", 88.1, 1000, 0.25, 4, 9000.5, NULL, "cpu (16 threads)");
    char svg[512];
    snprintf(svg, sizeof svg, "%s/chart.svg", test_tmpdir());
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "compare %s '%s' --svg %s", a, b, svg), 0);
    const char *want =
        "| run | runA | run\\|B |\n"
        "|---|---:|---:|\n"
        "| model | ./models/8b | ./models/<4b>&co |\n"
        "| quantization | awq | bfloat16 |\n"
        "| accuracy | 91.33% | 88.10% |\n"
        "| total samples | 300 | 1000 |\n"
        "| average latency (s/sample) | 0.0981 | 0.2500 |\n"
        "| throughput (samples/s) | 10.00 | 4.00 |\n"
        "| peak memory (MB) | 11483.38 | 9000.50 |\n"
        "| device | NVIDIA H100 | cpu (16 threads) |\n";
    CHECK_STR(out, want);
    size_t len;
    char *text = qvl_read_file(svg, &len);
    CHECK(text != NULL);
    if (text) {
        const char *why;
        int elements = xml_well_formed(text, &why);
        CHECK_STR(why, "ok");
        /* svg + background + title + 3 panels x (g, title text, axis, 2 x (rect, title, value)) + 2 x legend (rect, text) */
        CHECK_INT(elements, 1 + 1 + 1 + 3 * (3 + 2 * 3) + 2 * 2);
        CHECK_CONTAINS(text, "<svg xmlns=\"http://www.w3.org/2000/svg\"");
        CHECK_CONTAINS(text, ">Accuracy (%)</text>");
        CHECK_CONTAINS(text, ">Throughput (samples/s)</text>");
        CHECK_CONTAINS(text, ">Peak memory (MB)</text>");
        CHECK_CONTAINS(text, "./models/&lt;4b&gt;&amp;co");
        CHECK_CONTAINS(text, ">91.33</text>");
        CHECK_CONTAINS(text, ">11483.38</text>");
    }
    free(text);
    free(out);
    free(err);
}

TEST(compare_errors) {
    char *err = NULL;
    CHECK_INT(test_qvl(NULL, &err, "compare"), 2);
    CHECK_CONTAINS(err, "qvl: compare: give at least one summary JSON");
    free(err);
    char bad[512];
    snprintf(bad, sizeof bad, "%s/notsummary.json", test_tmpdir());
    qvl_write_file_atomic(bad, "{\"x\":1}", 7);
    CHECK_INT(test_qvl(NULL, &err, "compare %s", bad), 1);
    CHECK_CONTAINS(err, "notsummary.json: not a qvl eval summary");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "compare /nonexistent/run.json"), 1);
    CHECK_CONTAINS(err, "qvl: /nonexistent/run.json");
    free(err);
}

/* Runs made with other settings say so: one row per setting that differs, none for equal ones. */
TEST(compare_shows_the_settings_that_differ) {
    const char *a = "{\"model\":\"m\",\"device\":\"cpu\",\"total_samples\":10,\"accuracy\":50,"
                    "\"settings\":{\"model\":\"m\",\"dtype\":\"bfloat16\",\"max_model_len\":32768,"
                    "\"max_pixels\":16777216,\"max_new_tokens\":128,\"sampling\":\"greedy\",\"batch\":1}}";
    const char *b = "{\"model\":\"m\",\"device\":\"cpu\",\"total_samples\":10,\"accuracy\":50,"
                    "\"settings\":{\"model\":\"m2\",\"dtype\":\"bfloat16\",\"max_model_len\":32768,"
                    "\"max_pixels\":1048576,\"max_new_tokens\":16,\"sampling\":\"greedy\","
                    "\"ranks\":2}}";
    char *pa = test_tmp_file("a.json", a, strlen(a)), *pb = test_tmp_file("b.json", b, strlen(b));
    char *out = NULL;
    CHECK_INT(test_qvl(&out, NULL, "compare %s %s", pa, pb), 0);
    CHECK_CONTAINS(out, "| device | cpu | cpu |\n"
                        "| setting: max_pixels | 16777216 | 1048576 |\n"
                        "| setting: max_new_tokens | 128 | 16 |\n"
                        "| setting: batch | 1 | - |\n"
                        "| setting: ranks | - | 2 |\n");
    CHECK(out && !strstr(out, "setting: max_model_len"));
    CHECK(out && !strstr(out, "setting: sampling"));
    CHECK(out && !strstr(out, "setting: dtype"));
    free(out);
    free(pa);
    free(pb);
}
