/* OCRBench scoring, exactly as the official scorer (docs/ocrbench.md sections 2 and 5). */
#include "eval/score.h"

#include <stdlib.h>
#include <string.h>

#include "eval/unicode_case.h"

const char *const qvl_ocrbench_types[QVL_OCRBENCH_TYPES] = {
    "Regular Text Recognition",
    "Irregular Text Recognition",
    "Artistic Text Recognition",
    "Handwriting Recognition",
    "Digit String Recognition",
    "Non-Semantic Text Recognition",
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
    "Handwritten Mathematical Expression Recognition",
};

const char *const qvl_ocrbench_categories[QVL_OCRBENCH_CATEGORIES] = {
    "Text Recognition",
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
    "Handwritten Mathematical Expression Recognition",
};

enum { TYPE_HME = 9 };

int qvl_ocrbench_type_index(const char *type) {
    if (!type) return -1;
    for (int i = 0; i < QVL_OCRBENCH_TYPES; i++)
        if (!strcmp(type, qvl_ocrbench_types[i])) return i;
    return -1;
}

int qvl_ocrbench_category_of(int type_index) {
    if (type_index < 0 || type_index >= QVL_OCRBENCH_TYPES) return -1;
    return type_index < 6 ? 0 : type_index - 5;   /* types 1-6 roll up into Text Recognition */
}

/* Python s.strip().replace("\n", " "), optionally also .replace(" ", ""), on s[0..len). */
static char *strip_and_flatten(const char *s, size_t len, int drop_spaces) {
    size_t start, n = qvl_py_strip(s, len, &start);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[start + i];
        if (c == '\n') c = ' ';
        if (c == ' ' && drop_spaces) continue;
        out[o++] = c;
    }
    out[o] = 0;
    return out;
}

char *qvl_ocrbench_norm_general(const char *s) {
    size_t n;
    char *low = qvl_py_lower(s, strlen(s), &n);
    if (!low) return NULL;
    char *out = strip_and_flatten(low, n, 0);
    free(low);
    return out;
}

char *qvl_ocrbench_norm_hme(const char *s) { return strip_and_flatten(s, strlen(s), 1); }

int qvl_ocrbench_match_rule(const char *prediction, const char *const *answers, int n_answers,
                            const char *type, qvl_score_rule rule) {
    int hme = qvl_ocrbench_type_index(type) == TYPE_HME;
    char *pred;
    if (!hme) {
        pred = qvl_ocrbench_norm_general(prediction ? prediction : "");
    } else if (rule == QVL_SCORE_LMMS_EVAL) {
        char *low = qvl_py_lower(prediction ? prediction : "", prediction ? strlen(prediction) : 0, NULL);
        pred = low ? qvl_ocrbench_norm_hme(low) : NULL;
        free(low);
    } else {
        pred = qvl_ocrbench_norm_hme(prediction ? prediction : "");
    }
    if (!pred) return 0;
    int hit = 0;
    for (int i = 0; i < n_answers && !hit; i++) {
        char *ans = hme ? qvl_ocrbench_norm_hme(answers[i]) : qvl_ocrbench_norm_general(answers[i]);
        if (ans && strstr(pred, ans)) hit = 1;
        free(ans);
    }
    free(pred);
    return hit;
}

int qvl_ocrbench_match(const char *prediction, const char *const *answers, int n_answers, const char *type) {
    return qvl_ocrbench_match_rule(prediction, answers, n_answers, type, QVL_SCORE_OFFICIAL);
}

void qvl_ocrbench_tally_add(qvl_ocrbench_tally *t, const char *type, int correct) {
    int k = qvl_ocrbench_type_index(type);
    if (k < 0) {
        t->other_total++;
        t->other_correct += correct != 0;
        return;
    }
    t->total[k]++;
    t->correct[k] += correct != 0;
}

void qvl_ocrbench_category_sums(const qvl_ocrbench_tally *t, int correct[QVL_OCRBENCH_CATEGORIES],
                                int total[QVL_OCRBENCH_CATEGORIES]) {
    for (int c = 0; c < QVL_OCRBENCH_CATEGORIES; c++) correct[c] = total[c] = 0;
    for (int k = 0; k < QVL_OCRBENCH_TYPES; k++) {
        int c = qvl_ocrbench_category_of(k);
        correct[c] += t->correct[k];
        total[c] += t->total[k];
    }
}

int qvl_ocrbench_tally_correct(const qvl_ocrbench_tally *t) {
    int n = t->other_correct;
    for (int k = 0; k < QVL_OCRBENCH_TYPES; k++) n += t->correct[k];
    return n;
}

int qvl_ocrbench_tally_total(const qvl_ocrbench_tally *t) {
    int n = t->other_total;
    for (int k = 0; k < QVL_OCRBENCH_TYPES; k++) n += t->total[k];
    return n;
}
