/* The report block against hand-computed text (docs/report-format.md), the score table, the summary
 * JSON, and percentiles. */
#include <stdio.h>
#include <stdlib.h>

#include "eval/report.h"
#include "test.h"

static char *ans[] = {"x"};

static qvl_eval_record rec(long index, const char *type, int correct, int skipped, double lat) {
    qvl_eval_record r = {0};
    r.index = index;
    r.type = (char *)type;
    r.answers = ans;
    r.n_answers = 1;
    r.prediction = "x";
    r.correct = correct;
    r.skipped = skipped;
    r.reason = skipped ? "image: cannot decode JPEG" : NULL;
    r.latency_s = lat;
    r.ttft_s = lat / 2;
    r.prompt_tokens = 100 + (int)index;
    r.image_tokens = 64;
    r.generated_tokens = skipped ? 0 : 4;
    return r;
}

/* The spec's own example: 300 samples, 274 correct, 30.01 s, 0.0981 s each, 11483.38 MB. */
TEST(eval_report_block_matches_spec_example) {
    static qvl_eval_record rs[300];
    static const qvl_eval_record *ptr[300];
    for (int i = 0; i < 300; i++) {
        rs[i] = rec(i, "Scene Text-centric VQA", i < 274, 0, 0.0981);
        ptr[i] = &rs[i];
    }
    qvl_report_input in = {.model = "./Qwen3-VL-8B-Instruct-AWQ", .data = "OCRBench.json",
                           .date = "2025-12-30 10:39:56", .device = "NVIDIA H100", .records = ptr,
                           .n_samples = 300, .total_time_s = 30.01, .load_s = -1, .warmup_s = -1,
                           .peak_memory_mib = 11483.38, .planned_memory_mib = -1};
    char *text = qvl_report_text(&in);
    const char *want =
        "==============================\n"
        "EVALUATION REPORT: ./Qwen3-VL-8B-Instruct-AWQ\n"
        "Date: 2025-12-30 10:39:56\n"
        "==============================\n"
        "Total Samples: 300\n"
        "Accuracy: 91.33%\n"
        "Total Time: 30.01 s\n"
        "Average Speed: 10.00 samples/s\n"
        "Average Latency: 0.0981 s/sample\n"
        "Peak Memory (Used): 11483.38 MB\n"
        "==============================\n";
    CHECK(text && !strncmp(text, want, strlen(want)));
    if (text && strncmp(text, want, strlen(want))) printf("%s", text);
    free(text);
}

TEST(eval_report_hand_computed_with_skips) {
    qvl_eval_record rs[4] = {
        rec(0, "Regular Text Recognition", 1, 0, 0.1),
        rec(1, "Regular Text Recognition", 0, 0, 0.3),
        rec(905, "Handwritten Mathematical Expression Recognition", 1, 0, 0.2),
        rec(500, "Doc-oriented VQA", 0, 1, 0.0),
    };
    const qvl_eval_record *ptr[4] = {&rs[0], &rs[1], &rs[2], &rs[3]};
    cJSON *settings = cJSON_CreateObject();
    cJSON_AddNumberToObject(settings, "max_new_tokens", 128);
    cJSON_AddStringToObject(settings, "on_overflow", "skip");
    cJSON *plan = cJSON_CreateObject();
    cJSON_AddNumberToObject(plan, "weights", 100.5);
    cJSON_AddNumberToObject(plan, "total", 300.25);
    qvl_report_input in = {.model = "./models/tiny", .data = "tests/fixtures/ocrbench/OCRBench.tsv",
                           .date = "2026-01-02 03:04:05", .device = "cpu (2 threads)", .device_is_cpu = 1,
                           .settings = settings, .records = ptr, .n_samples = 4, .total_time_s = 1.5,
                           .load_s = 2.25, .warmup_s = 0.5, .resumed = 1, .peak_memory_mib = 1234.567,
                           .planned_memory_mib = 300.25, .memory_plan_mib = plan};
    char *text = qvl_report_text(&in);
    const char *want =
        "==============================\n"
        "EVALUATION REPORT: ./models/tiny\n"
        "Date: 2026-01-02 03:04:05\n"
        "==============================\n"
        "Total Samples: 4\n"
        "Accuracy: 50.00%\n"
        "Total Time: 1.50 s\n"
        "Average Speed: 2.67 samples/s\n"
        "Average Latency: 0.2000 s/sample\n"
        "Peak Memory (Used): 1234.57 MB\n"
        "==============================\n"
        "Skipped: 1 of 4 samples (counted as wrong)\n"
        "  index 500: image: cannot decode JPEG\n"
        "Latency: p50 0.2000 s, p95 0.2900 s; time to first token: mean 0.1000 s\n"
        "Load: 2.25 s, warm-up 0.50 s (not in Total Time)\n"
        "Resumed: 1 samples came from an earlier run (Total Time adds their recorded wall time)\n"
        "\n"
        "Per category (correct / total):\n"
        "  Text Recognition                                      1 / 2      50.00%\n"
        "  Scene Text-centric VQA                                0 / 0           -\n"
        "  Doc-oriented VQA                                      0 / 1       0.00%\n";
    CHECK(text && !strncmp(text, want, strlen(want)));
    if (text && strncmp(text, want, strlen(want))) printf("%s", text);
    CHECK_CONTAINS(text, "  Handwritten Mathematical Expression Recognition       1 / 1     100.00%\n");
    CHECK_CONTAINS(text, "Per type (correct / total):\n  Regular Text Recognition                              1 / 2      50.00%\n");
    CHECK_CONTAINS(text, "  plan weights                  100.50\n");
    CHECK_CONTAINS(text, "  measured peak                1234.57  (peak resident set)\n");
    CHECK_CONTAINS(text, "  device: cpu (2 threads) (Peak Memory is the peak resident set size)\n");
    CHECK_CONTAINS(text, "  max_new_tokens: 128\n  on_overflow: skip\n");
    CHECK_CONTAINS(text, "Tokens (over 3 samples that ran): prompt mean 402.0 max 1005; image mean 64.0 max 64; "
                         "generated mean 4.0 max 4\n");
    CHECK(!strstr(text, "OCRBench final score"));
    free(text);

    cJSON *sum = qvl_report_summary(&in);
    char *js = cJSON_PrintUnformatted(sum);
    CHECK_CONTAINS(js, "\"total_samples\":4,\"scored\":3,\"skipped\":1,\"correct\":2,\"accuracy\":50,"
                       "\"ocrbench_score\":null,\"categories\":{\"Text Recognition\":{\"correct\":1,\"total\":2}");
    CHECK_CONTAINS(js, "\"total_time_s\":1.5,\"samples_per_s\":2.666667,\"latency_s\":{\"mean\":0.2,\"p50\":0.2,"
                       "\"p95\":0.29},\"ttft_s\":{\"mean\":0.1},\"peak_memory_mib\":{\"used\":1234.567,\"planned\":300.25}");
    CHECK_CONTAINS(js, "\"memory_plan_mib\":{\"weights\":100.5,\"total\":300.25}");
    CHECK_CONTAINS(js, "\"tokens\":{\"prompt\":{\"mean\":402,\"max\":1005}");
    CHECK_CONTAINS(js, "\"settings\":{\"max_new_tokens\":128,\"on_overflow\":\"skip\"}");
    cJSON_free(js);
    cJSON_Delete(sum);
    cJSON_Delete(settings);
    cJSON_Delete(plan);
}

TEST(eval_report_full_benchmark_final_score) {
    static const int counts[10] = {50, 50, 50, 50, 50, 50, 200, 200, 200, 100};
    qvl_ocrbench_tally t = {0};
    for (int k = 0; k < 10; k++)
        for (int i = 0; i < counts[k]; i++) qvl_ocrbench_tally_add(&t, qvl_ocrbench_types[k], i % 10 != 0);
    CHECK(qvl_ocrbench_is_full(&t));
    char *table = qvl_report_score_table(&t);
    CHECK_CONTAINS(table, "  Text Recognition                                    270 / 300    90.00%\n");
    CHECK_CONTAINS(table, "  OCRBench final score: 900 / 1000\n");
    free(table);
    qvl_ocrbench_tally_add(&t, qvl_ocrbench_types[0], 1);
    CHECK(!qvl_ocrbench_is_full(&t));
}

TEST(eval_report_percentile) {
    double v[5] = {5, 1, 4, 2, 3};
    CHECK_NEAR(qvl_percentile(v, 5, 50), 3, 1e-12);
    CHECK_NEAR(qvl_percentile(v, 5, 95), 4.8, 1e-12);   /* numpy.percentile([1..5], 95) */
    CHECK_NEAR(qvl_percentile(v, 5, 0), 1, 1e-12);
    double one = 7;
    CHECK_NEAR(qvl_percentile(&one, 1, 95), 7, 1e-12);
    CHECK_NEAR(qvl_percentile(NULL, 0, 50), 0, 1e-12);
}
