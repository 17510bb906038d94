/* `qvl eval` end to end on the tiny fixture model (tests/fixtures/tiny/tied, random weights, so
 * answers are noise but deterministic under greedy decoding) and the 16-sample OCRBench sets in
 * every form: report and summary, identical predictions across forms, resume after --limit and
 * after kill -9 (with a half-written line) giving the same final numbers, settings mismatch,
 * unreadable samples counted as skipped, and usage errors. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "test.h"
#include "util/file.h"

#define MODEL "tests/fixtures/tiny/tied"
#define SET "tests/fixtures/ocrbench"
#define FAST "--device cpu --threads 2 --max-new-tokens 6"

static const char *tmp_path(const char *name) {
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 512, "%s/e2e-%s", test_tmpdir(), name);
    return b;
}

static double num(const cJSON *o, const char *key) { return cJSON_GetNumberValue(cJSON_GetObjectItem(o, key)); }

/* index -> prediction of a results log, as one string "i=pred\n..." sorted by index (the
 * log order may differ after a resume). */
static char *predictions_by_index(const char *path) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    if (!text) return strdup("(no file)");
    char *preds[64] = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *idx = cJSON_GetObjectItem(j, "index");
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
    out[0] = 0;
    for (int i = 0; i < 64; i++) {
        if (!preds[i]) continue;
        o += (size_t)snprintf(out + o, cap - o, "%d=%s\n", i, preds[i]);
        free(preds[i]);
        if (o >= cap) break;
    }
    return out;
}

/* The numbers a rerun must reproduce: samples, correct, accuracy, categories, types, tokens. */
static char *summary_numbers(const char *path) {
    cJSON *j = test_read_json(path);
    if (!j) return strdup("(no summary)");
    cJSON *keep = cJSON_CreateObject();
    const char *keys[] = {"total_samples", "scored", "skipped", "correct", "accuracy", "ocrbench_score",
                          "categories", "types", "tokens"};
    for (int i = 0; i < 9; i++) {
        const cJSON *v = cJSON_GetObjectItem(j, keys[i]);
        if (v) cJSON_AddItemToObject(keep, keys[i], cJSON_Duplicate(v, 1));
    }
    char *s = cJSON_PrintUnformatted(keep);
    cJSON_Delete(keep);
    cJSON_Delete(j);
    return s;
}

/* Two runs agree: the same summary numbers and the same prediction for every index. */
static void check_same_results(const char *log_a, const char *sum_a, const char *log_b, const char *sum_b) {
    char *a = summary_numbers(sum_a), *b = summary_numbers(sum_b);
    CHECK_STR(b, a);
    free(a);
    free(b);
    a = predictions_by_index(log_a);
    b = predictions_by_index(log_b);
    CHECK_STR(b, a);
    free(a);
    free(b);
}

static int count_lines(const char *path) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    int n = 0;
    for (size_t i = 0; text && i < len; i++) n += text[i] == '\n';
    free(text);
    return n;
}

TEST(eval_e2e_every_format_same_predictions) {
    const char *data[] = {SET "/json/OCRBench.json", SET "/OCRBench.tsv", SET "/parquet/default_snappy.parquet",
                          SET "/parquet/split"};
    const char *names[] = {"json", "tsv", "parquet", "split"};
    char *first = NULL, *first_numbers = NULL;
    for (int f = 0; f < 4; f++) {
        char out_name[64], sum_name[64];
        snprintf(out_name, sizeof out_name, "fmt-%s.jsonl", names[f]);
        snprintf(sum_name, sizeof sum_name, "fmt-%s.json", names[f]);
        const char *out_path = tmp_path(out_name), *sum_path = tmp_path(sum_name);
        char *out = NULL, *err = NULL;
        int rc = test_qvl(&out, &err, "eval --model " MODEL " --data %s --out %s --summary %s " FAST, data[f],
                          out_path, sum_path);
        CHECK_INT(rc, 0);
        if (rc) printf("    %s: %s\n", names[f], err ? err : "");
        CHECK(out && !strncmp(out, "==============================\nEVALUATION REPORT: " MODEL "\nDate: ", 68));
        CHECK_CONTAINS(out, "==============================\nTotal Samples: 16\nAccuracy: ");
        CHECK_CONTAINS(out, "\nPeak Memory (Used): ");
        CHECK_CONTAINS(out, "Per type (correct / total):\n");
        CHECK_CONTAINS(out, "  Key Information Extraction                            ");
        CHECK_CONTAINS(err, "qvl eval: 16/16 100.0% | ");
        CHECK_INT(count_lines(out_path), 17);
        cJSON *sum = test_read_json(sum_path);
        CHECK_INT(num(sum, "total_samples"), 16);
        CHECK_INT(num(sum, "skipped"), 0);
        CHECK(num(cJSON_GetObjectItem(sum, "peak_memory_mib"), "used") > 0);
        CHECK(num(sum, "total_time_s") > 0);
        CHECK_INT(num(cJSON_GetObjectItem(cJSON_GetObjectItem(sum, "types"), "Key Information Extraction"), "total"), 3);
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(sum, "ocrbench_score")));
        cJSON_Delete(sum);
        /* The same images (the TSV holds the files' bytes in base64, the parquet their bytes) give
         * the same predictions and the same numbers in every form. */
        char *preds = predictions_by_index(out_path), *numbers = summary_numbers(sum_path);
        if (!first) {
            first = preds;
            first_numbers = numbers;
        } else {
            CHECK_STR(preds, first);
            CHECK_STR(numbers, first_numbers);
            free(preds);
            free(numbers);
        }
        /* `qvl score` on the eval's own log agrees with the eval. */
        char *sout = NULL;
        CHECK_INT(test_qvl(&sout, NULL, "score --data %s --pred %s --json", data[f], out_path), 0);
        cJSON *sj = cJSON_Parse(sout ? sout : "");
        cJSON *ej = test_read_json(sum_path);
        CHECK_INT(num(sj, "correct"), num(ej, "correct"));
        cJSON_Delete(sj);
        cJSON_Delete(ej);
        free(sout);
        free(out);
        free(err);
    }
    free(first);
    free(first_numbers);
}

TEST(eval_e2e_resume_after_limit_matches_full_run) {
    const char *full = tmp_path("full.jsonl"), *full_sum = tmp_path("full.json");
    const char *part = tmp_path("part.jsonl"), *part_sum = tmp_path("part.json");
    CHECK_INT(test_qvl(NULL, NULL, "eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s " FAST,
                       full, full_sum), 0);
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, NULL, "eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s " FAST
                       " --limit 5", part, part_sum), 0);
    CHECK_CONTAINS(out, "Total Samples: 5\n");
    free(out);
    CHECK_INT(count_lines(part), 6);
    CHECK_INT(test_qvl(&out, &err, "eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s " FAST,
                       part, part_sum), 0);
    CHECK_CONTAINS(err, "resuming: 5 of 16 samples already done");
    CHECK_CONTAINS(out, "Resumed: 5 samples came from an earlier run");
    CHECK_CONTAINS(out, "Total Samples: 16\n");
    CHECK_INT(count_lines(part), 17);
    check_same_results(full, full_sum, part, part_sum);
    /* A third run has nothing left: it does not load the model and reports the same numbers. */
    free(out);
    free(err);
    CHECK_INT(test_qvl(&out, &err, "eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s " FAST,
                       part, part_sum), 0);
    CHECK_CONTAINS(out, "Resumed: 16 samples");
    CHECK(!strstr(out, "Load: "));
    check_same_results(full, full_sum, part, part_sum);
    free(out);
    free(err);
}

TEST(eval_e2e_kill_and_resume) {
    const char *full = tmp_path("k-full.jsonl"), *full_sum = tmp_path("k-full.json");
    const char *killed = tmp_path("k.jsonl"), *killed_sum = tmp_path("k.json");
    const char *bin = getenv("QVL_BIN") ? getenv("QVL_BIN") : "build/qvl";
    CHECK_INT(test_qvl(NULL, NULL, "eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s --summary %s "
                       "--device cpu --threads 2 --max-new-tokens 24", full, full_sum), 0);
    /* Start a run, wait for a few result lines, kill -9 it, then leave a half-written line as a
     * crash in the middle of a write would. */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s --summary %s --device cpu --threads 2 "
             "--max-new-tokens 24 --batch 1 >/dev/null 2>&1 & pid=$!; "
             "for i in $(seq 1 3000); do n=$(cat %s 2>/dev/null | wc -l); [ \"$n\" -ge 5 ] && break; sleep 0.01; done; "
             "kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; "
             "printf '{\"index\":9,\"type\":\"Doc-or' >> %s",
             bin, killed, killed_sum, killed, killed);
    int st = system(cmd);
    CHECK(WIFEXITED(st));
    int lines = count_lines(killed);
    CHECK(lines >= 5);
    CHECK(lines < 17);   /* killed before the end */
    CHECK(qvl_read_file(killed_sum, NULL) == NULL);   /* no summary from the killed run */
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s --summary %s "
                       "--device cpu --threads 2 --max-new-tokens 24", killed, killed_sum), 0);
    CHECK_CONTAINS(err, "resuming: ");
    CHECK_INT(count_lines(killed), 17);
    check_same_results(full, full_sum, killed, killed_sum);
    free(out);
    free(err);
}

TEST(eval_e2e_settings_mismatch_and_overwrite) {
    const char *p = tmp_path("mm.jsonl"), *s = tmp_path("mm.json");
    CHECK_INT(test_qvl(NULL, NULL, "eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s "
                       FAST " --limit 2", p, s), 0);
    char *err = NULL;
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s "
                       "--device cpu --threads 2 --max-new-tokens 7 --limit 2", p, s), 1);
    CHECK_CONTAINS(err, "setting 'max_new_tokens' differs: file has 6, this run has 7 (use --overwrite to start afresh)");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/json/OCRBench.json --out %s --summary %s "
                       "--device cpu --threads 2 --max-new-tokens 7 --limit 2 --overwrite", p, s), 0);
    CHECK(!strstr(err ? err : "", "resuming"));
    free(err);
    CHECK_INT(count_lines(p), 3);
    cJSON *sum = test_read_json(s);
    CHECK_INT(num(cJSON_GetObjectItem(sum, "settings"), "max_new_tokens"), 7);
    cJSON_Delete(sum);
}

TEST(eval_e2e_unreadable_samples_are_skipped_and_counted) {
    const char *p = tmp_path("nulls.jsonl"), *s = tmp_path("nulls.json");
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "eval --model " MODEL " --data " SET "/bad/nulls.parquet --out %s --summary %s " FAST,
                       p, s), 0);
    CHECK_CONTAINS(out, "Total Samples: 4\n");
    CHECK_CONTAINS(out, "Skipped: 3 of 4 samples (counted as wrong)\n  index 1: ");
    CHECK_CONTAINS(out, "  index 2: ");
    CHECK_CONTAINS(out, "  index 3: ");
    cJSON *sum = test_read_json(s);
    CHECK_INT(num(sum, "skipped"), 3);
    CHECK_INT(num(sum, "scored"), 1);
    cJSON_Delete(sum);
    free(out);
    free(err);
    /* A JSON-form image that does not exist is a counted skip as well. */
    const char *dir = tmp_path("missing-img");
    char mk[1024];
    snprintf(mk, sizeof mk, "mkdir -p %s && cp " SET "/json/OCRBench.json %s/", dir, dir);
    CHECK_INT(system(mk), 0);
    CHECK_INT(test_qvl(&out, &err, "eval --model " MODEL " --data %s/OCRBench.json --out %s/r.jsonl " FAST " --limit 2",
                       dir, dir), 0);
    CHECK_CONTAINS(out, "Accuracy: 0.00%\n");
    CHECK_CONTAINS(out, "Skipped: 2 of 2 samples (counted as wrong)\n  index 0: ");
    free(out);
    free(err);
}

TEST(eval_e2e_usage_and_input_errors) {
    char *err = NULL;
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --batch -1"), 2);
    CHECK_CONTAINS(err, "qvl: eval: --batch -1: must be at least 1");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --on-overflow crop"), 2);
    CHECK_CONTAINS(err, "--on-overflow: 'crop' is not skip or downscale");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "eval --data " SET "/OCRBench.tsv"), 2);
    CHECK_CONTAINS(err, "--model is required");
    free(err);
    /* the common options are range-checked as `qvl run` checks them */
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --threads -3"), 2);
    CHECK_CONTAINS(err, "qvl: eval: --threads must be >= 0");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --max-image-tokens 0"), 2);
    CHECK_CONTAINS(err, "--max-image-tokens must be at least 1");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/bad/not_ocrbench.parquet --out %s",
                       tmp_path("x.jsonl")), 1);
    CHECK_CONTAINS(err, "qvl: ");
    CHECK(strchr(err, '\n') == err + strlen(err) - 1);   /* one line */
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --offset 16 --out %s",
                       tmp_path("y.jsonl")), 1);
    CHECK_CONTAINS(err, "--offset 16 is past its 16 samples");
    free(err);
    /* A file that is not a results log is never overwritten without --overwrite. */
    const char *foreign = tmp_path("foreign.jsonl");
    qvl_write_file_atomic(foreign, "precious\n", 9);
    CHECK_INT(test_qvl(NULL, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s " FAST, foreign), 1);
    CHECK_CONTAINS(err, "not a qvl eval results file");
    free(err);
    char *text = qvl_read_file(foreign, NULL);
    CHECK_STR(text, "precious\n");
    free(text);
}

TEST(eval_e2e_offset_selects_samples) {
    const char *p = tmp_path("off.jsonl"), *s = tmp_path("off.json");
    char *out = NULL;
    CHECK_INT(test_qvl(&out, NULL, "eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s --summary %s " FAST
                       " --offset 14 --limit 5", p, s), 0);
    CHECK_CONTAINS(out, "Total Samples: 2\n");
    char *preds = predictions_by_index(p);
    CHECK(!strncmp(preds, "14=", 3));
    CHECK_CONTAINS(preds, "\n15=");
    free(preds);
    free(out);
}

/* A prompt over --max-model-len: skipped with its reason under the default --on-overflow skip,
 * run with a smaller image under downscale. */
TEST(eval_e2e_overflow_skip_or_downscale) {
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s " FAST
                       " --limit 3 --max-model-len 24", tmp_path("ovf-skip.jsonl")), 0);
    CHECK_CONTAINS(out, "Skipped: ");
    CHECK_CONTAINS(out, "max-model-len 24");
    free(out);
    free(err);
    CHECK_INT(test_qvl(&out, &err, "eval --model " MODEL " --data " SET "/OCRBench.tsv --out %s " FAST
                       " --limit 3 --max-model-len 24 --on-overflow downscale", tmp_path("ovf-down.jsonl")), 0);
    CHECK(!strstr(out, "Skipped: "));
    free(out);
    free(err);
}
