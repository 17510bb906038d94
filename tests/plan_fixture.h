/* Test helpers for the data plan (eval/plan_fit.h) on the host: a 2B model folder without weights (the
 * fixture config and the real tokenizer) and a dataset of seven samples whose images run from 131x58 to
 * 8000x6000, the last one with an unreadable header. */
#ifndef QVL_TESTS_PLAN_FIXTURE_H
#define QVL_TESTS_PLAN_FIXTURE_H
#include "eval/dataset.h"
#include "eval/plan_fit.h"
#include "model/config.h"

#define PLAN_IMAGES "tests/fixtures/image/images"
enum { PLAN_N_IMAGES = 7, PLAN_N_OK = 6 };
extern const char *const plan_images[PLAN_N_IMAGES];

/* The seven samples as an OCRBench.json at test_tmpdir()/name (malloc'd path; images in PLAN_IMAGES). */
char *plan_dataset_json(const char *name);
/* The 2B folder under test_tmpdir() (made once). */
const char *plan_model_2b(void);

typedef struct {
    qvl_config cfg;
    qvl_dataset ds;
    qvl_data_plan dp;
} plan_fixture;

/* Loads the 2B config and the seven samples (written as test_tmpdir()/name); 0, or -1 with a failed check. */
int plan_fixture_setup(plan_fixture *f, const char *name);
/* qvl_fit_dataset over every sample (the previous data plan freed first). */
int plan_fixture_fit(plan_fixture *f, const qvl_fit_request *rq, qvl_fit *out);
void plan_fixture_teardown(plan_fixture *f);

#endif
