/* qvl score --data PATH --pred PRED.jsonl [--json] [--rule official|lmms-eval] (docs/cli.md):
 * scores predictions made elsewhere against the annotations (no images are read). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "eval/dataset.h"
#include "eval/report.h"
#include "eval/score.h"
#include "util/error.h"
#include "util/file.h"

/* A prediction's index key: a JSON integer, or a string of digits (pandas sometimes writes one). */
static int parse_index(const cJSON *v, long *out) {
    /* range first: converting an out-of-range double to long is undefined */
    if (cJSON_IsNumber(v) && fabs(v->valuedouble) < 9e15 && v->valuedouble == floor(v->valuedouble)) {
        *out = (long)v->valuedouble;
        return 0;
    }
    if (cJSON_IsString(v) && v->valuestring[0]) {
        char *end;
        long x = strtol(v->valuestring, &end, 10);
        if (!*end) {
            *out = x;
            return 0;
        }
    }
    return -1;
}

/* Reads PRED.jsonl into preds[i] (the prediction of ds->samples[i], or NULL). */
static int read_predictions(const char *path, const qvl_dataset *ds, char **preds) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    if (!text) return -1;
    int rc = 0;
    long line_no = 0;
    for (char *p = text; p && *p && rc == 0;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line_no++;
        char *line = p;
        p = nl ? nl + 1 : NULL;
        if (strspn(line, " \t\r") == strlen(line)) continue;
        cJSON *j = cJSON_Parse(line);
        if (!cJSON_IsObject(j)) {
            rc = qvl_errorf("%s:%ld: not a JSON object", path, line_no);
        } else if (cJSON_GetObjectItemCaseSensitive(j, "qvl_run")) {
            /* the settings header of a `qvl eval` results file */
        } else {
            long index;
            const cJSON *pred = cJSON_GetObjectItemCaseSensitive(j, "prediction");
            if (parse_index(cJSON_GetObjectItemCaseSensitive(j, "index"), &index)) {
                rc = qvl_errorf("%s:%ld: no integer \"index\"", path, line_no);
            } else if (!cJSON_IsString(pred) && !cJSON_IsNull(pred)) {
                rc = qvl_errorf("%s:%ld: \"prediction\" must be a string", path, line_no);
            } else {
                const qvl_sample *s = qvl_dataset_find(ds, index);
                if (!s) {
                    rc = qvl_errorf("%s:%ld: index %ld is not in %s", path, line_no, index, ds->source);
                } else {
                    long i = s - ds->samples;
                    if (preds[i]) rc = qvl_errorf("%s:%ld: duplicate index %ld", path, line_no, index);
                    /* null (pandas NaN) is what VLMEvalKit scores as the string "nan" */
                    else if (!(preds[i] = strdup(cJSON_IsString(pred) ? pred->valuestring : "nan")))
                        rc = qvl_errorf("%s:%ld: out of memory", path, line_no);
                }
            }
        }
        cJSON_Delete(j);
    }
    free(text);
    return rc;
}

int cmd_score(int argc, char **argv) {
    const char *data = NULL, *pred_path = NULL, *rule_name = "official";
    int json = 0;
    cli_opt opts[] = {
        {"data", OPT_STR, &data, "PATH", "OCRBench annotations: OCRBench.json, VLMEvalKit .tsv, or parquet"},
        {"pred", OPT_STR, &pred_path, "PRED.jsonl", "one {\"index\", \"prediction\"} object per line"},
        {"json", OPT_FLAG, &json, NULL, "print the scores as one JSON object"},
        {"rule", OPT_STR, &rule_name, "official|lmms-eval",
         "scoring rule: official (= VLMEvalKit; default) or lmms-eval (lower-cases HME predictions)"},
    };
    int rc = opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                        "qvl score --data PATH --pred PRED.jsonl [--json] [--rule official|lmms-eval]",
                        "Scores predictions made elsewhere with the official OCRBench rule. A sample without a "
                        "prediction counts as wrong and is listed; a duplicate index or an index not in the data "
                        "is an error.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!data) return usage_error("score", "--data is required");
    if (!pred_path) return usage_error("score", "--pred is required");
    qvl_score_rule rule;
    if (!strcmp(rule_name, "official")) rule = QVL_SCORE_OFFICIAL;
    else if (!strcmp(rule_name, "lmms-eval")) rule = QVL_SCORE_LMMS_EVAL;
    else return usage_error("score", "--rule: '%s' is not official or lmms-eval", rule_name);

    qvl_dataset ds;
    if (qvl_dataset_load(data, NULL, 0, &ds)) return runtime_error();
    char **preds = calloc((size_t)ds.n_samples + 1, sizeof *preds);
    if (!preds) {
        qvl_errorf("%s: out of memory for %ld samples", data, ds.n_samples);
        qvl_dataset_free(&ds);
        return runtime_error();
    }
    if (read_predictions(pred_path, &ds, preds)) {
        for (long i = 0; i < ds.n_samples; i++) free(preds[i]);
        free(preds);
        qvl_dataset_free(&ds);
        return runtime_error();
    }
    qvl_ocrbench_tally t = {0};
    cJSON *missing = cJSON_CreateArray(), *unreadable = cJSON_CreateArray();
    for (long i = 0; i < ds.n_samples; i++) {
        const qvl_sample *s = &ds.samples[i];
        int ok = 0;
        if (s->n_answers <= 0) cJSON_AddItemToArray(unreadable, cJSON_CreateNumber((double)s->index));
        else if (!preds[i]) cJSON_AddItemToArray(missing, cJSON_CreateNumber((double)s->index));
        else ok = qvl_ocrbench_match_rule(preds[i], (const char *const *)s->answers, s->n_answers, s->type, rule);
        qvl_ocrbench_tally_add(&t, s->type, ok);
    }
    int correct = qvl_ocrbench_tally_correct(&t), total = qvl_ocrbench_tally_total(&t);
    double acc = total ? 100.0 * correct / total : 0.0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "total_samples", total);
        cJSON_AddNumberToObject(o, "correct", correct);
        cJSON_AddNumberToObject(o, "accuracy", (double)(long)(acc * 1e6 + 0.5) / 1e6);
        if (qvl_ocrbench_is_full(&t)) cJSON_AddNumberToObject(o, "ocrbench_score", correct);
        else cJSON_AddNullToObject(o, "ocrbench_score");
        qvl_report_add_scores(o, &t);
        cJSON_AddItemToObject(o, "missing", missing);
        cJSON_AddItemToObject(o, "unreadable", unreadable);
        cJSON_AddStringToObject(o, "rule", rule_name);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("Samples: %d   Correct: %d   Accuracy: %.2f%%   (rule: %s)\n", total, correct, acc, rule_name);
        const char *what[2] = {"Missing predictions (counted wrong)", "Unreadable samples (counted wrong)"};
        cJSON *lists[2] = {missing, unreadable};
        for (int k = 0; k < 2; k++) {
            int n = cJSON_GetArraySize(lists[k]);
            if (!n) continue;
            printf("%s: %d:", what[k], n);
            const cJSON *it;
            cJSON_ArrayForEach(it, lists[k]) printf(" %ld", (long)it->valuedouble);
            printf("\n");
        }
        char *table = qvl_report_score_table(&t);
        if (table) printf("%s", table);
        else rc = (fprintf(stderr, "qvl: score: out of memory building the table\n"), 1);
        free(table);
        cJSON_Delete(missing);
        cJSON_Delete(unreadable);
    }
    for (long i = 0; i < ds.n_samples; i++) free(preds[i]);
    free(preds);
    qvl_dataset_free(&ds);
    return rc;
}
