/* `qvl run` (docs/cli.md) on the tiny fixture model: streamed text, the --json object, and the
 * one-line errors with their exit codes. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_device.h"
#include "test.h"

#define TINY "tests/fixtures/tiny"
#define RUN_TIED "run --device cpu --threads 2 --model " TINY "/tied"
#define WIDE "--image " TINY "/images/shapes96x128.png --prompt 'What is written here? Answer briefly.'"

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

TEST(run_json_object_and_streamed_text_agree) {
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, RUN_TIED " " WIDE " --max-new-tokens 6 --json"), 0);
    cJSON *j = cJSON_Parse(out ? out : "");
    CHECK(j != NULL);
    if (j) {
        static const char *keys[] = {"text", "token_ids", "finish_reason", "prompt_tokens", "image_tokens", "timings",
                                     "peak_memory_mib"};
        for (int i = 0; i < 7; i++)
            if (!cJSON_GetObjectItem(j, keys[i])) test_fail(__FILE__, __LINE__, "JSON lacks \"%s\"", keys[i]);
        CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "token_ids")), 6);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "finish_reason")), "length");
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "prompt_tokens")), 30);
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "image_tokens")), 12);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "peak_memory_mib")) > 1);
        cJSON *t = cJSON_GetObjectItem(j, "timings");
        static const char *tk[] = {"load_s", "preprocess_s", "vision_s", "prefill_s", "decode_s", "total_s"};
        double sum = 0;
        for (int i = 0; i < 6; i++) {
            cJSON *v = cJSON_GetObjectItem(t, tk[i]);
            if (!cJSON_IsNumber(v) || v->valuedouble < 0)
                test_fail(__FILE__, __LINE__, "timings.%s missing or negative", tk[i]);
            else if (i < 5)
                sum += v->valuedouble;
        }
        CHECK(sum <= cJSON_GetNumberValue(cJSON_GetObjectItem(t, "total_s")) + 1e-3);
        CHECK_INT(cJSON_GetArraySize(j), 7);
        /* without --json the same text is streamed, then a newline */
        char *out2 = NULL;
        CHECK_INT(test_qvl(&out2, NULL, RUN_TIED " " WIDE " --max-new-tokens 6"), 0);
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(j, "text"));
        size_t n = text ? strlen(text) : 0;
        CHECK(out2 && text && strncmp(out2, text, n) == 0 && out2[n] == '\n');
        free(out2);
    }
    cJSON_Delete(j);
    CHECK_INT(count_lines(out), 1);
    free(out);
    free(err);
}

TEST(run_max_image_tokens_caps_the_image) {
    char *out = NULL;
    /* 96x128 is 12 tokens by default; at most 4 tokens (4096 pixels) it becomes 32x64 = 2 tokens */
    CHECK_INT(test_qvl(&out, NULL, RUN_TIED " " WIDE " --max-new-tokens 2 --json --max-image-tokens 4"), 0);
    CHECK_CONTAINS(out, "\"prompt_tokens\":20,\"image_tokens\":2,");
    free(out);
}

TEST(run_text_only_and_sampling) {
    char *out = NULL, *out2 = NULL;
    CHECK_INT(test_qvl(&out, NULL, RUN_TIED " --prompt 'Hello, who are you?' --max-new-tokens 5 --json"), 0);
    CHECK_CONTAINS(out, "\"prompt_tokens\":14,\"image_tokens\":0");
    free(out);
    const char *s = RUN_TIED " --prompt hi --max-new-tokens 8 --json --sample --temperature 1.5 --seed 4";
    CHECK_INT(test_qvl(&out, NULL, "%s", s), 0);
    CHECK_INT(test_qvl(&out2, NULL, "%s", s), 0);
    /* same seed: same tokens (the timings differ) */
    char *a = out ? strstr(out, "\"token_ids\"") : NULL, *b = out2 ? strstr(out2, "\"token_ids\"") : NULL;
    CHECK(a && b);
    if (a && b) {
        *strchr(a, ']') = 0;
        *strchr(b, ']') = 0;
        CHECK_STR(a, b);
    }
    free(out);
    free(out2);
}

/* The model's vocabulary (151936) is padded past the tokenizer's (151669): a sampled id there has
 * no text (as in HF tokenizers) and must not end the run. Seed 2 at temperature 50 draws 151750. */
TEST(run_sampled_id_past_the_tokenizer) {
    char *out = NULL;
    CHECK_INT(test_qvl(&out, NULL, RUN_TIED " --prompt hi --sample --temperature 50 --top-k 0 --top-p 1 --seed 2 "
                                        "--max-new-tokens 64 --json"),
              0);
    CHECK_CONTAINS(out, "151750");
    CHECK_CONTAINS(out, "\"finish_reason\":\"length\"");
    free(out);
}

TEST(run_bad_input_errors) {
    char *err = NULL;
    CHECK_INT(test_qvl(NULL, &err, RUN_TIED " --image no/such.png --prompt x"), 1);
    CHECK_STR(err, "qvl: no/such.png: No such file or directory\n");
    free(err);

    const char *junk = "/qvl-run-junk.png";
    char path[512];
    snprintf(path, sizeof path, "%s%s", test_tmpdir(), junk);
    FILE *f = fopen(path, "wb");
    fputs("definitely not a PNG", f);
    fclose(f);
    CHECK_INT(test_qvl(NULL, &err, RUN_TIED " --image %s --prompt x", path), 1);
    CHECK_CONTAINS(err, "qvl: ");
    CHECK_CONTAINS(err, junk);
    CHECK_INT(count_lines(err), 1);
    free(err);

    CHECK_INT(test_qvl(NULL, &err, "run --model no/such/dir --prompt x"), 1);
    CHECK_STR(err, "qvl: no/such/dir: no such model folder\n");
    free(err);

    CHECK_INT(test_qvl(NULL, &err, RUN_TIED " " WIDE " --max-model-len 20"), 1);
    CHECK_STR(err, "qvl: " TINY "/images/shapes96x128.png: prompt of 30 tokens (12 image tokens) exceeds max-model-len 20\n");
    free(err);

    CHECK_INT(test_qvl(NULL, &err, RUN_TIED " --prompt 'Hello, who are you?' --max-model-len 10"), 1);
    CHECK_STR(err, "qvl: prompt of 14 tokens exceeds max-model-len 10\n");
    free(err);

    if (qvl_cuda_device_count() == 0) {
        CHECK_INT(test_qvl(NULL, &err, "run --device cuda --model " TINY "/tied --prompt x"), 1);
        CHECK_STR(err, "qvl: cuda: no usable CUDA device\n");
        free(err);
    }
}

TEST(run_usage_errors) {
    static const char *bad[] = {
        "run --prompt x",
        "run --model " TINY "/tied",
        "run --model " TINY "/tied --prompt x --max-new-tokens 0",
        "run --model " TINY "/tied --prompt x --temperature 0.5",
        "run --model " TINY "/tied --prompt x --sample --top-p 1.5",
        "run --model " TINY "/tied --prompt x --device tpu",
        "run --model " TINY "/tied --prompt x --bogus",
        "run --model " TINY "/tied --prompt x extra",
        "run --model " TINY "/tied --prompt x --max-image-tokens 0",
        "run --model " TINY "/tied --prompt x --max-model-len 0",
    };
    for (int i = 0; i < 10; i++) {
        char *err = NULL;
        int rc = test_qvl(NULL, &err, "%s", bad[i]);
        if (rc != 2) test_fail(__FILE__, __LINE__, "'%s' exited %d, want 2", bad[i], rc);
        CHECK_CONTAINS(err, "qvl: run: ");
        CHECK_INT(count_lines(err), 1);
        free(err);
    }
}
