/* The official OCRBench scoring rule (docs/ocrbench.md section 5) and its aggregation. */
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

/* ---- additions (backward compatible) ---- */

/* The rule variants of spec section 6: OFFICIAL (= VLMEvalKit) or LMMS_EVAL, which lower-cases
 * the prediction also for HME items (so an oracle scores 966, not 1000). */
typedef enum { QVL_SCORE_OFFICIAL, QVL_SCORE_LMMS_EVAL } qvl_score_rule;
int qvl_ocrbench_match_rule(const char *prediction, const char *const *answers, int n_answers,
                            const char *type, qvl_score_rule rule);

/* The two normalizations of section 5 (malloc'd; NULL only when out of memory). */
char *qvl_ocrbench_norm_general(const char *s);
char *qvl_ocrbench_norm_hme(const char *s);

/* Per-type tallies and their roll-up into categories (integer arithmetic only). */
typedef struct {
    int correct[QVL_OCRBENCH_TYPES], total[QVL_OCRBENCH_TYPES];
    int other_correct, other_total;   /* samples whose type is none of the 10 */
} qvl_ocrbench_tally;

void qvl_ocrbench_tally_add(qvl_ocrbench_tally *t, const char *type, int correct);
void qvl_ocrbench_category_sums(const qvl_ocrbench_tally *t, int correct[QVL_OCRBENCH_CATEGORIES],
                                int total[QVL_OCRBENCH_CATEGORIES]);
int qvl_ocrbench_tally_correct(const qvl_ocrbench_tally *t);
int qvl_ocrbench_tally_total(const qvl_ocrbench_tally *t);

#endif
