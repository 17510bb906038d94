/* `qvl score`: the oracle self-check of docs/ocrbench.md section 9 on the real annotation file
 * (1000 official, 966 lmms-eval), missing predictions, and the error cases. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"
#include "util/file.h"

#define REAL_DATA "tests/fixtures/ocrbench/official/OCRBench.json"
#define SMALL_DATA "tests/fixtures/ocrbench/json/OCRBench.json"

/* Writes a predictions file answering each item of a JSON-form file with its first answer,
 * skipping index `skip` (-1: none); returns the path. */
static const char *oracle_preds(const char *data, const char *name, long skip) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    size_t len;
    char *text = qvl_read_file(data, &len);
    cJSON *a = cJSON_Parse(text);
    free(text);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < cJSON_GetArraySize(a); i++) {
        if (i == skip) continue;
        const cJSON *ans = cJSON_GetObjectItem(cJSON_GetArrayItem(a, i), "answers");
        const cJSON *first = cJSON_IsArray(ans) ? cJSON_GetArrayItem(ans, 0) : ans;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", i);
        cJSON_AddStringToObject(o, "prediction", cJSON_GetStringValue(first));
        cJSON_AddStringToObject(o, "extra", "ignored");
        char *s = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    }
    fclose(f);
    cJSON_Delete(a);
    return path;
}

TEST(score_cli_real_file_oracle_is_1000) {
    CHECK(access(REAL_DATA, R_OK) == 0);
    const char *pred = oracle_preds(REAL_DATA, "oracle.jsonl", -1);
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "score --data " REAL_DATA " --pred %s --json", pred), 0);
    cJSON *j = cJSON_Parse(out);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "ocrbench_score")), 1000);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "total_samples")), 1000);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "accuracy")), 100);
    const cJSON *cats = cJSON_GetObjectItem(j, "categories");
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cats, "Text Recognition"), "total")), 300);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cats, "Handwritten Mathematical Expression Recognition"), "correct")), 100);
    cJSON_Delete(j);
    free(out);
    free(err);
    /* The human table prints the final score. */
    CHECK_INT(test_qvl(&out, NULL, "score --data " REAL_DATA " --pred %s", pred), 0);
    CHECK_CONTAINS(out, "Samples: 1000   Correct: 1000   Accuracy: 100.00%");
    CHECK_CONTAINS(out, "OCRBench final score: 1000 / 1000");
    CHECK_CONTAINS(out, "  Text Recognition                                    300 / 300   100.00%\n");
    free(out);
}

TEST(score_cli_real_file_lmms_eval_rule_is_966) {
    const char *pred = oracle_preds(REAL_DATA, "oracle_lmms.jsonl", -1);
    char *out = NULL;
    CHECK_INT(test_qvl(&out, NULL, "score --data " REAL_DATA " --pred %s --json --rule lmms-eval", pred), 0);
    cJSON *j = cJSON_Parse(out);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "ocrbench_score")), 966);
    const cJSON *hme = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "categories"),
                                           "Handwritten Mathematical Expression Recognition");
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(hme, "correct")), 66);
    cJSON_Delete(j);
    free(out);
}

TEST(score_cli_missing_prediction_counts_wrong) {
    const char *pred = oracle_preds(SMALL_DATA, "missing.jsonl", 3);
    char *out = NULL;
    CHECK_INT(test_qvl(&out, NULL, "score --data " SMALL_DATA " --pred %s", pred), 0);
    CHECK_CONTAINS(out, "Samples: 16   Correct: 15   Accuracy: 93.75%");
    CHECK_CONTAINS(out, "Missing predictions (counted wrong): 1: 3\n");
    CHECK(!strstr(out, "final score"));
    free(out);
    CHECK_INT(test_qvl(&out, NULL, "score --data " SMALL_DATA " --pred %s --json", pred), 0);
    CHECK_CONTAINS(out, "\"missing\":[3]");
    CHECK_CONTAINS(out, "\"ocrbench_score\":null");
    free(out);
}

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    qvl_write_file_atomic(path, text, strlen(text));
    return path;
}

TEST(score_cli_errors) {
    char *err = NULL;
    const char *dup = write_tmp("dup.jsonl", "{\"index\":0,\"prediction\":\"a\"}\n{\"index\":0,\"prediction\":\"b\"}\n");
    CHECK_INT(test_qvl(NULL, &err, "score --data " SMALL_DATA " --pred %s", dup), 1);
    CHECK_CONTAINS(err, "dup.jsonl:2: duplicate index 0");
    free(err);
    const char *unk = write_tmp("unk.jsonl", "{\"index\":0,\"prediction\":\"a\"}\n{\"index\":99,\"prediction\":\"b\"}\n");
    CHECK_INT(test_qvl(NULL, &err, "score --data " SMALL_DATA " --pred %s", unk), 1);
    CHECK_CONTAINS(err, "unk.jsonl:2: index 99 is not in");
    free(err);
    const char *bad = write_tmp("bad.jsonl", "{\"index\":0,\"prediction\":\"a\"}\nnot json\n");
    CHECK_INT(test_qvl(NULL, &err, "score --data " SMALL_DATA " --pred %s", bad), 1);
    CHECK_CONTAINS(err, "bad.jsonl:2: not a JSON object");
    free(err);
    const char *noidx = write_tmp("noidx.jsonl", "{\"prediction\":\"a\"}\n");
    CHECK_INT(test_qvl(NULL, &err, "score --data " SMALL_DATA " --pred %s", noidx), 1);
    CHECK_CONTAINS(err, "noidx.jsonl:1: no integer \"index\"");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "score --data " SMALL_DATA), 2);
    CHECK_CONTAINS(err, "--pred is required");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "score --data " SMALL_DATA " --pred %s --rule vibes", dup), 2);
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "score --data " SMALL_DATA " --pred /nonexistent/p.jsonl"), 1);
    CHECK_CONTAINS(err, "qvl: /nonexistent/p.jsonl");
    free(err);
}

/* A `qvl eval` results file (header line, extra keys, skipped samples) scores directly. */
TEST(score_cli_reads_results_jsonl) {
    const char *res = write_tmp("res.jsonl",
                                "{\"qvl_run\":{\"model\":\"m\"}}\n"
                                "{\"index\":0,\"prediction\":\"CENTRE\",\"status\":\"ok\",\"correct\":1}\n"
                                "{\"index\":1,\"prediction\":\"\",\"status\":\"skipped\",\"reason\":\"x\"}\n"
                                "{\"index\":\"2\",\"prediction\":null}\n");
    char *out = NULL;
    CHECK_INT(test_qvl(&out, NULL, "score --data " SMALL_DATA " --pred %s --json", res), 0);
    CHECK_CONTAINS(out, "\"total_samples\":16");
    CHECK_CONTAINS(out, "\"missing\":[3,4,5,6,7,8,9,10,11,12,13,14,15]");
    free(out);
}
