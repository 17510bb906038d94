/* Rules the commands share, checked across commands: one context-length rule for `qvl run`,
 * `qvl mem` and `qvl eval`, the --threads cap, --limit's range, the settings the report records,
 * and which options `qvl mem --help` lists. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/config.h"
#include "model/context_len.h"
#include "test.h"
#include "util/error.h"

#define TINY "tests/fixtures/tiny/tied"
#define RUN "run --device cpu --threads 2 --model " TINY " --prompt 'Hi' --max-new-tokens 1"

TEST(cli_context_len_rule) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load("models/qvl-tiny-ocr", &cfg), 0);   /* max_position_embeddings 8192 */
    long n = 0;
    CHECK_INT(qvl_context_len(&cfg, -1, &n), 0);
    CHECK_INT(n, 8192);            /* the default 32768, capped at the model's limit */
    CHECK_INT(qvl_context_len(&cfg, 50, &n), 0);
    CHECK_INT(n, 50);
    CHECK_INT(qvl_context_len(&cfg, 8192, &n), 0);
    CHECK_INT(n, 8192);
    CHECK_INT(qvl_context_len(&cfg, 8193, &n), -1);
    CHECK_STR(qvl_error(), "max-model-len: 8193 exceeds the model's max_position_embeddings 8192");
    CHECK_INT(qvl_context_len(&cfg, 1, &n), -1);
}

TEST(cli_mem_and_run_share_the_context_rule) {
    char *err = NULL, *out = NULL;
    /* over the model's limit: both refuse with the same line */
    CHECK_INT(test_qvl(NULL, &err, RUN " --max-model-len 1000000"), 1);
    CHECK_STR(err, "qvl: max-model-len: 1000000 exceeds the model's max_position_embeddings 262144\n");
    free(err);
    CHECK_INT(test_qvl(&out, &err, "mem --model " TINY " --max-model-len 1000000"), 1);
    CHECK_STR(err, "qvl: max-model-len: 1000000 exceeds the model's max_position_embeddings 262144\n");
    CHECK_STR(out, "");
    free(out);
    free(err);
    /* a short context: both accept it, the plan is made for it */
    CHECK_INT(test_qvl(NULL, &err, RUN " --max-model-len 50"), 0);
    free(err);
    CHECK_INT(test_qvl(&out, &err, "mem --model " TINY " --max-model-len 50"), 0);
    CHECK_CONTAINS(out, "(50 tokens)");
    free(out);
    free(err);
    /* under the minimum: the same usage error */
    CHECK_INT(test_qvl(NULL, &err, RUN " --max-model-len 1"), 2);
    CHECK_CONTAINS(err, "--max-model-len must be at least 2");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "mem --model " TINY " --max-model-len 1"), 2);
    CHECK_CONTAINS(err, "--max-model-len must be at least 2");
    free(err);
}

TEST(cli_threads_are_capped_with_a_warning) {
    char *err = NULL;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char want[128];
    snprintf(want, sizeof want, "qvl: --threads 100000: capped at %ld (4x the %ld cores)\n", 4 * cores, cores);
    CHECK_INT(test_qvl(NULL, &err, "run --device cpu --threads 100000 --model " TINY " --prompt Hi --max-new-tokens 1"), 0);
    CHECK_CONTAINS(err, want);
    free(err);
    CHECK_INT(test_qvl(NULL, &err, RUN), 0);   /* 2 threads: no warning */
    CHECK(err && !strstr(err, "capped"));
    free(err);
}

TEST(cli_eval_limit_must_be_positive) {
    char *err = NULL;
    CHECK_INT(test_qvl(NULL, &err, "eval --model " TINY " --data tests/fixtures/ocrbench/json/OCRBench.json --limit -1"), 2);
    CHECK_STR(err, "qvl: eval: --limit -1: must be positive (see 'qvl eval --help')\n");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "eval --model " TINY " --data tests/fixtures/ocrbench/json/OCRBench.json --limit 0"), 2);
    CHECK_CONTAINS(err, "--limit 0: must be positive");
    free(err);
}

/* The summary's settings and the report's Settings block give the context used, not "default". */
TEST(cli_eval_records_the_context_used) {
    char out_path[600], sum_path[600];
    snprintf(out_path, sizeof out_path, "%s/run.jsonl", test_tmpdir());
    snprintf(sum_path, sizeof sum_path, "%s/run.json", test_tmpdir());
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "eval --device cpu --threads 2 --max-new-tokens 2 --model " TINY
                       " --data tests/fixtures/ocrbench/json/OCRBench.json --limit 1 --out %s --summary %s",
                       out_path, sum_path), 0);
    CHECK(out && !strstr(out, "max_model_len: default"));
    CHECK_CONTAINS(out, "max_model_len: 32768");
    free(out);
    free(err);
    cJSON *j = test_read_json(sum_path);
    const cJSON *len = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "settings"), "max_model_len");
    CHECK(cJSON_IsNumber(len));
    CHECK_INT(cJSON_GetNumberValue(len), 32768);
    cJSON_Delete(j);
}

TEST(cli_mem_help_lists_only_what_applies) {
    char *out = NULL;
    CHECK_INT(test_qvl(&out, NULL, "mem --help"), 0);
    CHECK_CONTAINS(out, "--max-model-len N");
    CHECK_CONTAINS(out, "--max-pixels N");
    CHECK_CONTAINS(out, "--gpu-mem MiB");
    CHECK(out && !strstr(out, "--device"));
    CHECK(out && !strstr(out, "--threads"));
    CHECK(out && !strstr(out, "--seed"));
    free(out);
    CHECK_INT(test_qvl(NULL, NULL, "mem --model " TINY " --device cpu"), 2);   /* no longer accepted */
}
