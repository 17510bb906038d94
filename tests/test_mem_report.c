/* Measured peak beside the plan: the `qvl run` summary line, the eval report's memory lines and
 * summary keys on the GPU path (hand-written figures), and the engine's memory info on the CPU. */
#include <stdio.h>
#include <stdlib.h>

#include "eval/report.h"
#include "qvl.h"
#include "test.h"

static qvl_memory_info gpu_info(void) {
    qvl_memory_info m = {.peak_mib = 7163.0, .peak_measure = "nvml process", .note = "", .cuda_used_peak_mib = 7170,
                         .has_plan = 1, .plan_cuda_context = 520.25, .plan_weights = 4057.95, .plan_kv_cache = 1369.05,
                         .plan_vision_activations = 1047.66, .plan_workspace = 152.66, .plan_total = 7147.57,
                         .plan_context_measure = "nvml process", .arena_mib = 6627.32};
    return m;
}

TEST(mem_report_run_line) {
    char buf[200];
    qvl_memory_info m = gpu_info();
    qvl_report_memory_line(buf, sizeof buf, &m);
    /* (7147.57 - 7163) / 7163 = -0.215% */
    CHECK_STR(buf, "peak 7163 MiB (nvml process), plan 7148 MiB (-0.2%)");
    qvl_memory_info cpu = {.peak_mib = 812.4, .peak_measure = "peak resident set"};
    qvl_report_memory_line(buf, sizeof buf, &cpu);
    CHECK_STR(buf, "peak 812 MiB (peak resident set)");
    /* NVML missing: the cudaMemGetInfo fallback says why */
    qvl_memory_info fb = m;
    fb.peak_measure = "cudaMemGetInfo device used";
    fb.note = "NVML not available (libnvidia-ml.so.1: cannot open shared object file)";
    qvl_report_memory_line(buf, sizeof buf, &fb);
    CHECK_STR(buf, "peak 7163 MiB (cudaMemGetInfo device used), plan 7148 MiB (-0.2%); NVML not available "
                   "(libnvidia-ml.so.1: cannot open shared object file)");
    char small[12];
    qvl_report_memory_line(small, sizeof small, &m);   /* truncated, still a string */
    CHECK_STR(small, "peak 7163 M");
}

TEST(mem_report_plan_object) {
    qvl_memory_info m = gpu_info();
    cJSON *o = qvl_report_plan_object(&m);
    char *js = cJSON_PrintUnformatted(o);
    CHECK_STR(js, "{\"cuda_context\":520.25,\"weights\":4057.95,\"kv_cache\":1369.05,\"vision_activations\":1047.66,"
                  "\"workspace\":152.66,\"total\":7147.57}");
    cJSON_free(js);
    cJSON_Delete(o);
    qvl_memory_info cpu = {.peak_mib = 1};
    CHECK(qvl_report_plan_object(&cpu) == NULL);
}

TEST(mem_report_eval_gpu_lines_and_summary) {
    static char *ans[] = {"x"};
    qvl_eval_record r = {.index = 0, .type = "Regular Text Recognition", .answers = ans, .n_answers = 1,
                         .prediction = "x", .correct = 1, .latency_s = 0.1, .ttft_s = 0.05};
    const qvl_eval_record *ptr[1] = {&r};
    qvl_memory_info m = gpu_info();
    cJSON *plan = qvl_report_plan_object(&m);
    qvl_report_input in = {.model = "m", .data = "d", .date = "2026-01-02 03:04:05", .device = "NVIDIA H100 80GB HBM3",
                           .records = ptr, .n_samples = 1, .total_time_s = 0.1, .load_s = -1, .warmup_s = -1,
                           .peak_memory_mib = 7163.0, .planned_memory_mib = 7147.57, .memory_plan_mib = plan,
                           .peak_measure = "nvml process", .cuda_used_peak_mib = 7170,
                           .plan_note = "the engine's plan at open"};
    char *text = qvl_report_text(&in);
    CHECK_CONTAINS(text, "Peak Memory (Used): 7163.00 MB\n");
    CHECK_CONTAINS(text, "  plan total                   7147.57\n");
    CHECK_CONTAINS(text, "  measured peak                7163.00  (nvml process)\n");
    CHECK_CONTAINS(text, "  plan - measured               -15.43  (-0.22% of the measured peak)\n");
    CHECK_CONTAINS(text, "  device used peak             7170.00  (cudaMemGetInfo: all processes on the device)\n");
    CHECK_CONTAINS(text, "  plan: the engine's plan at open\n");
    free(text);
    cJSON *sum = qvl_report_summary(&in);
    char *js = cJSON_PrintUnformatted(sum);
    CHECK_CONTAINS(js, "\"peak_memory_mib\":{\"used\":7163,\"planned\":7147.57},\"peak_memory_measure\":\"nvml process\"");
    cJSON_free(js);
    cJSON_Delete(sum);
    cJSON_Delete(plan);
}

TEST(mem_report_engine_info_on_the_cpu) {
    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = "tests/fixtures/tiny/tied";
    o.device = QVL_DEVICE_CPU;
    o.threads = 1;
    qvl_engine *e = qvl_engine_open(&o);
    CHECK(e != NULL);
    if (!e) return;
    qvl_memory_info m;
    CHECK_INT(qvl_engine_memory(e, &m), 0);
    CHECK_STR(m.peak_measure, "peak resident set");
    CHECK_INT(m.has_plan, 0);
    CHECK(m.peak_mib > 1);
    CHECK_NEAR(m.peak_mib, qvl_engine_peak_memory_mib(e), 1.0);
    CHECK_NEAR(m.cuda_used_peak_mib, 0, 0);
    qvl_engine_close(e);
    CHECK_INT(qvl_engine_memory(NULL, &m), -1);
}

/* qvl run on the CPU: the JSON keeps cli.md's seven keys; the summary on stderr names the measure. */
TEST(mem_report_run_cli_names_the_measure) {
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "run --model tests/fixtures/tiny/tied --prompt hi --max-new-tokens 2 --device cpu --json"),
              0);
    CHECK_CONTAINS(err, " MiB (peak resident set)]\n");
    cJSON *j = cJSON_Parse(out ? out : "");
    CHECK(j && cJSON_GetArraySize(j) == 7);
    cJSON_Delete(j);
    free(out), free(err);
}
