/* The official OCRBench scoring rule (spec/ocrbench.md section 5) and its aggregation. */
#ifndef QVL_EVAL_SCORE_H
#define QVL_EVAL_SCORE_H

enum { QVL_OCRBENCH_TYPES = 10, QVL_OCRBENCH_CATEGORIES = 5 };

extern const char *const qvl_ocrbench_types[QVL_OCRBENCH_TYPES];
extern const char *const qvl_ocrbench_categories[QVL_OCRBENCH_CATEGORIES];
/* Index into qvl_ocrbench_types, or -1 for an unknown type string. */
int qvl_ocrbench_type_index(const char *type);
/* Category index of a type index. */
int qvl_ocrbench_category_of(int type_index);

/* 1 if any answer, normalized, is a substring of the normalized prediction; HME rule when
 * type is "Handwritten Mathematical Expression Recognition". */
int qvl_ocrbench_match(const char *prediction, const char *const *answers, int n_answers, const char *type);

#endif
