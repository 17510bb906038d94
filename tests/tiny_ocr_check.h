/* The bundled trained model (models/qvl-tiny-ocr, issue 8) against transformers, shared by the CPU
 * test (tests/test_tiny_ocr.c) and the GPU test (tests/gpu/test_gpu_tiny_ocr.c): `qvl eval` greedy
 * predictions on the held-out set (240 samples) must be identical to transformers'
 * (tests/fixtures/tiny-ocr-heldout/transformers_predictions.json, bf16 on the GPU machine) for at
 * least 99% of them, and the exact-match accuracy within 1 point: at most 2 differing predictions
 * and at most 2 samples of difference in the exact-match count. The same bars hold on the CPU
 * (F32) and on the GPU path (BF16 like transformers, but its own kernels and summation orders).
 * A differing prediction is printed with "(near-tie)" where the reference is one, i.e. transformers'
 * token leads by less than two BF16 steps of its logit in tests/fixtures/tiny-ocr-heldout/margins.tsv
 * (tools/tiny_ocr_margin.c: transformers' tokens teacher-forced through qvl's F32 CPU model; columns
 * index, margin, step, logit, ...). */
#ifndef QVL_TESTS_TINY_OCR_CHECK_H
#define QVL_TESTS_TINY_OCR_CHECK_H
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "util/file.h"

#define MODEL "models/qvl-tiny-ocr"
#define HELDOUT "tests/fixtures/tiny-ocr-heldout"
#define HELDOUT_N 240
#define MAX_DIFFERENT 2   /* 1% of HELDOUT_N, rounded down: >= 99% identical */
#define MAX_CORRECT_GAP 2 /* 1 point of HELDOUT_N, rounded down */
#define MARGINS HELDOUT "/margins.tsv"

/* 1 when held-out sample `index` is a near-tie in MARGINS: |margin| < 2 BF16 steps of the logit. */
static int near_tie(int index) {
    FILE *f = fopen(MARGINS, "r");
    if (!f) return 0;
    int i, found = 0;
    double margin, logit;
    char line[512];
    while (!found && fgets(line, sizeof line, f))
        if (sscanf(line, "%d %lf %*d %lf", &i, &margin, &logit) == 3 && i == index) {
            double step = ldexp(1.0, (int)floor(log2(fabs(logit))) - 7); /* BF16: 8 significant bits */
            found = fabs(margin) < 2 * step ? 1 : -1;
        }
    fclose(f);
    return found == 1;
}

/* The transformers prediction of held-out sample `index`, or NULL. */
static const char *reference_prediction(const cJSON *ref, int index) {
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(ref, "predictions")) {
        const cJSON *i = cJSON_GetObjectItem(p, "index");
        if (cJSON_IsNumber(i) && i->valueint == index)
            return cJSON_GetStringValue(cJSON_GetObjectItem(p, "prediction"));
    }
    return NULL;
}

/* Exact match as the fixture counts it: the prediction without surrounding spaces equals the answer. */
static int exact_match(const char *pred, const char *answer) {
    while (*pred == ' ' || *pred == '\n') pred++;
    size_t n = strlen(pred);
    while (n > 0 && (pred[n - 1] == ' ' || pred[n - 1] == '\n')) n--;
    return strlen(answer) == n && strncmp(pred, answer, n) == 0;
}

/* Runs `qvl eval` on the first n held-out samples with DEVICE_ARGS (e.g. "--device cpu --threads 2")
 * and checks its predictions against transformers' (the bars above). */
static void tiny_ocr_check(const char *device_args, int n_samples) {
    cJSON *ref = test_read_json(HELDOUT "/transformers_predictions.json");
    CHECK(ref != NULL);
    if (!ref) return;
    char out[600];
    snprintf(out, sizeof out, "%s/tiny-ocr.jsonl", test_tmpdir());
    int rc = test_qvl(NULL, NULL, "eval --model " MODEL " --data " HELDOUT "/OCRBench.json %s "
                      "--max-new-tokens 32 --limit %d --overwrite --out %s --summary %s.json",
                      device_args, n_samples, out, out);
    CHECK_INT(rc, 0);
    size_t len;
    char *text = qvl_read_file(out, &len);
    CHECK(text != NULL);
    int n = 0, same = 0, ours_ok = 0, ref_ok = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *idx = cJSON_GetObjectItem(j, "index");
        const char *pred = cJSON_GetStringValue(cJSON_GetObjectItem(j, "prediction"));
        const char *answer = cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "answers"), 0));
        if (cJSON_IsNumber(idx) && pred && answer) {
            const char *want = reference_prediction(ref, idx->valueint);
            CHECK(want != NULL);
            n++;
            if (want && strcmp(pred, want) == 0) same++;
            else {
                int tie = near_tie(idx->valueint);
                fprintf(stderr, "tiny-ocr sample %d: qvl \"%s\", transformers \"%s\"%s\n", idx->valueint, pred,
                        want ? want : "?", tie ? " (near-tie)" : "");
            }
            ours_ok += exact_match(pred, answer);
            ref_ok += want && exact_match(want, answer);
        }
        cJSON_Delete(j);
    }
    free(text);
    CHECK_INT(n, n_samples);
    fprintf(stderr, "tiny-ocr %s: %d of %d predictions identical to transformers' (%.2f%%; bar 99%%), exact match "
            "%d vs %d\n", device_args, same, n, n ? 100.0 * same / n : 0.0, ours_ok, ref_ok);
    CHECK(n - same <= MAX_DIFFERENT);
    CHECK(abs(ours_ok - ref_ok) <= MAX_CORRECT_GAP);
    /* the model reads: on the full set, transformers' exact match is the fixture's own count and
     * meets issue 8's target (>= 90%) */
    if (n == HELDOUT_N) {
        CHECK_INT(ref_ok, (int)cJSON_GetNumberValue(cJSON_GetObjectItem(ref, "exact_match")));
        CHECK(ref_ok >= HELDOUT_N * 9 / 10);
    }
    cJSON_Delete(ref);
}

#endif
