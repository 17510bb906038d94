/* Test helpers for the data plan (plan_fixture.h). */
#include "plan_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

const char *const plan_images[PLAN_N_IMAGES] = {"jpeg_ocr_131x58.jpg",     "png_rgb_text_1280x720.png",
                                                "png_doc_1700x2200.png",   "jpeg_large_4000x3000.jpg",
                                                "png_huge_8000x6000.png",  "webp_lossy_300x200.webp",
                                                "bad_text.jpg"};

const char *plan_model_2b(void) {
    static char dir[512];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/m2b", test_tmpdir());
    char cwd[400], cmd[2400];
    if (!getcwd(cwd, sizeof cwd)) return dir;
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && cp tests/fixtures/configs/2b/*.json %s/ && ln -sf %s/models/tokenizer/tokenizer.json %s/",
             dir, dir, cwd, dir);
    CHECK_INT(system(cmd), 0);
    return dir;
}

char *plan_dataset_json(const char *name) {
    char json[8192];
    size_t n = 0;
    n += (size_t)snprintf(json + n, sizeof json - n, "[");
    for (int i = 0; i < PLAN_N_IMAGES; i++)
        n += (size_t)snprintf(json + n, sizeof json - n,
                              "%s{\"dataset_name\": \"x\", \"id\": %d, \"image_path\": \"%s\", \"question\": \"What is "
                              "written in image %d?\", \"answers\": \"a\", \"type\": \"Regular Text Recognition\"}",
                              i ? "," : "", i, plan_images[i], i);
    snprintf(json + n, sizeof json - n, "]");
    return test_tmp_file(name, json, strlen(json));
}

int plan_fixture_setup(plan_fixture *f, const char *name) {
    memset(f, 0, sizeof *f);
    char *path = plan_dataset_json(name);
    int rc = qvl_config_load(plan_model_2b(), &f->cfg) || qvl_dataset_load(path, PLAN_IMAGES, 1, &f->ds);
    free(path);
    CHECK_INT(rc, 0);
    return rc ? -1 : 0;
}

int plan_fixture_fit(plan_fixture *f, const qvl_fit_request *rq, qvl_fit *out) {
    qvl_data_plan_free(&f->dp);
    return qvl_fit_dataset(&f->cfg, plan_model_2b(), &f->ds, 0, f->ds.n_samples, rq, &f->dp, out);
}

void plan_fixture_teardown(plan_fixture *f) {
    qvl_data_plan_free(&f->dp);
    qvl_dataset_free(&f->ds);
}
