/* `qvl eval` with many samples in flight: --batch N gives the same predictions and numbers as
 * --batch 1 (the CPU backend is bit-identical batched or alone), the batch in force is written in
 * the summary's settings, latency is per request (submission to last token), and a run killed
 * with kill -9 at one batch size resumes exactly at another. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "test.h"
#include "util/file.h"

#define MODEL "tests/fixtures/tiny/untied"
#define SET "tests/fixtures/ocrbench"
#define FAST "--device cpu --threads 2 --max-new-tokens 12"

static const char *tmp_path(const char *name) {
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 512, "%s/eb-%s", test_tmpdir(), name);
    return b;
}

/* "index=status|prediction" lines sorted by index. */
static char *predictions_by_index(const char *path) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    if (!text) return strdup("(no file)");
    char *preds[64] = {0};
    int n_lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *idx = cJSON_GetObjectItem(j, "index");
        n_lines++;
        if (cJSON_IsNumber(idx) && idx->valueint >= 0 && idx->valueint < 64 && !preds[idx->valueint]) {
            const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(j, "prediction"));
            const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(j, "status"));
            size_t n = strlen(p ? p : "") + 64;
            preds[idx->valueint] = malloc(n);
            snprintf(preds[idx->valueint], n, "%s|%s", st ? st : "?", p ? p : "");
        }
        cJSON_Delete(j);
    }
    free(text);
    size_t cap = 1 << 16, o = 0;
    char *out = malloc(cap);
    o += (size_t)snprintf(out, cap, "lines=%d\n", n_lines);
    for (int i = 0; i < 64; i++) {
        if (!preds[i]) continue;
        if (o < cap) o += (size_t)snprintf(out + o, cap - o, "%d=%s\n", i, preds[i]);
        free(preds[i]);
    }
    return out;
}

static char *summary_numbers(const char *path) {
    cJSON *j = test_read_json(path);
    if (!j) return strdup("(no summary)");
    cJSON *keep = cJSON_CreateObject();
    const char *keys[] = {"total_samples", "scored", "skipped", "correct", "accuracy", "categories", "types", "tokens"};
    for (int i = 0; i < 8; i++) {
        const cJSON *v = cJSON_GetObjectItem(j, keys[i]);
        if (v) cJSON_AddItemToObject(keep, keys[i], cJSON_Duplicate(v, 1));
    }
    char *s = cJSON_PrintUnformatted(keep);
    cJSON_Delete(keep);
    cJSON_Delete(j);
    return s;
}

static void check_same_results(const char *log_a, const char *sum_a, const char *log_b, const char *sum_b) {
    char *a = summary_numbers(sum_a), *b = summary_numbers(sum_b);
    CHECK_STR(b, a);
    free(a);
    free(b);
    a = predictions_by_index(log_a);
    b = predictions_by_index(log_b);
    CHECK_STR(b, a);
    CHECK_CONTAINS(a, "lines=17\n");
    free(a);
    free(b);
}

static double settings_batch(const char *summary) {
    cJSON *j = test_read_json(summary);
    double b = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "settings"), "batch"));
    cJSON_Delete(j);
    return b;
}

TEST(eval_batch_same_results_as_one_at_a_time) {
    const char *one = tmp_path("one.jsonl"), *one_sum = tmp_path("one.json");
    const char *four = tmp_path("four.jsonl"), *four_sum = tmp_path("four.json");
    const char *dflt = tmp_path("default.jsonl"), *dflt_sum = tmp_path("default.json");
    char *out = NULL;
    CHECK_INT(test_qvl(NULL, NULL, "eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s --summary %s " FAST
                       " --batch 1", one, one_sum), 0);
    CHECK_INT(test_qvl(&out, NULL, "eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s --summary %s " FAST
                       " --batch 4", four, four_sum), 0);
    CHECK_CONTAINS(out, "Total Samples: 16\n");
    free(out);
    CHECK_INT(test_qvl(NULL, NULL, "eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s --summary %s " FAST,
                       dflt, dflt_sum), 0);
    check_same_results(one, one_sum, four, four_sum);
    check_same_results(one, one_sum, dflt, dflt_sum);
    CHECK_INT(settings_batch(one_sum), 1);
    CHECK_INT(settings_batch(four_sum), 4);
    CHECK_INT(settings_batch(dflt_sum), 16);   /* the CPU backend's default */
    /* Latency is each request's own time, submission to last token: with 4 in flight it is at
     * least as long as one request alone and the throughput is Total Samples / Total Time. */
    cJSON *j = test_read_json(four_sum);
    const cJSON *lat = cJSON_GetObjectItem(j, "latency_s");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(lat, "mean")) > 0);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(lat, "p95")) >= cJSON_GetNumberValue(cJSON_GetObjectItem(lat, "p50")));
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "total_time_s")) > 0);
    cJSON_Delete(j);
    char *err = NULL;
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --batch -2"), 2);
    CHECK_CONTAINS(err, "--batch -2: must be at least 1");
    free(err);
}

TEST(eval_batch_kill_and_resume_at_another_batch) {
    const char *full = tmp_path("kb-full.jsonl"), *full_sum = tmp_path("kb-full.json");
    const char *killed = tmp_path("kb.jsonl"), *killed_sum = tmp_path("kb.json");
    const char *bin = getenv("QVL_BIN") ? getenv("QVL_BIN") : "build/qvl";
    CHECK_INT(test_qvl(NULL, NULL, "eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s "
                       "--device cpu --threads 2 --max-new-tokens 40 --batch 1", full, full_sum), 0);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s --device cpu "
             "--threads 2 --max-new-tokens 40 --batch 6 >/dev/null 2>&1 & pid=$!; "
             "for i in $(seq 1 3000); do n=$(cat %s 2>/dev/null | wc -l); [ \"$n\" -ge 4 ] && break; sleep 0.01; done; "
             "kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; "
             "printf '{\"index\":3,\"type\":\"Doc-or' >> %s",
             bin, killed, killed_sum, killed, killed);
    int st = system(cmd);
    CHECK(WIFEXITED(st));
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s "
                       "--device cpu --threads 2 --max-new-tokens 40 --batch 3", killed, killed_sum), 0);
    CHECK_CONTAINS(err, "resuming: ");
    check_same_results(full, full_sum, killed, killed_sum);
    free(out);
    free(err);
}
