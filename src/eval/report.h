/* The end-of-run report of `qvl eval` (docs/report-format.md): the EVALUATION REPORT block in its exact
 * layout, then skipped samples, latency percentiles, per-category and per-type scores, memory,
 * settings and token counts; and the same facts as the summary JSON (docs/cli.md). */
#ifndef QVL_EVAL_REPORT_H
#define QVL_EVAL_REPORT_H
#include <cjson/cJSON.h>

#include "eval/results.h"
#include "eval/score.h"
#include "qvl.h"

typedef struct {
    const char *model;              /* the model path as the user gave it */
    const char *data;               /* the data path as given */
    const char *date;               /* local time at the end of the run, "YYYY-MM-DD HH:MM:SS" */
    const char *device;             /* device name, e.g. "cpu (16 threads)" or "NVIDIA H100 80GB HBM3" */
    int device_is_cpu;              /* the peak memory figure is then the peak resident set */
    const cJSON *settings;          /* printed and copied into the summary (may be NULL) */
    /* One record per sample the run was asked to evaluate (skipped ones included). */
    const qvl_eval_record *const *records;
    long n_samples;
    double total_time_s;            /* first sample's start to last sample's end */
    double load_s, warmup_s;        /* < 0: not known */
    long resumed;                   /* samples whose results came from an earlier run */
    double peak_memory_mib;         /* < 0: not known */
    double planned_memory_mib;      /* < 0: not known */
    const cJSON *memory_plan_mib;   /* object of plan items in MiB (may be NULL) */
    double memory_budget_mib;       /* <= 0: none given */
    const char *peak_measure;       /* what peak_memory_mib is ("nvml process", ...); NULL: by device_is_cpu */
    double cuda_used_peak_mib;      /* cudaMemGetInfo device used (all processes), for comparison; <= 0: none */
    const char *plan_note;          /* where the plan comes from (e.g. "the engine's plan, context measured by
                                       nvml process"); NULL: not said */
} qvl_report_input;

/* The whole human report (malloc'd, ends with a newline); NULL when out of memory. */
char *qvl_report_text(const qvl_report_input *in);
/* The summary JSON object (caller deletes). */
cJSON *qvl_report_summary(const qvl_report_input *in);
/* Writes j (a summary) to path, pretty-printed with a final newline, atomically (all or nothing).
 * Returns 0, or -1 + a one-line error naming path. */
int qvl_report_write_json(const char *path, const cJSON *j);

/* Per-type tally of the records. */
void qvl_report_tally(const qvl_report_input *in, qvl_ocrbench_tally *t);
/* 1 when the tally is the whole benchmark: 1000 samples with the item counts of spec section 2. */
int qvl_ocrbench_is_full(const qvl_ocrbench_tally *t);

/* The per-category and per-type table (shared with `qvl score`), malloc'd; NULL when out of memory. */
char *qvl_report_score_table(const qvl_ocrbench_tally *t);
/* Adds "categories" and "types" objects ({name: {"correct", "total"}}) to obj. */
void qvl_report_add_scores(cJSON *obj, const qvl_ocrbench_tally *t);

/* The memory plan as the summary's "memory_plan_mib" object: cuda_context, weights, kv_cache,
 * vision_activations, workspace, total (MiB, two decimals); NULL if m has no plan. */
cJSON *qvl_report_plan_object(const qvl_memory_info *m);

/* One line for `qvl run`: "peak 7163 MiB (nvml process), plan 7154 MiB (-0.1%)" on the GPU (the
 * percentage: plan minus peak, of the peak), then "; <why NVML was not used>" when the figure is the
 * cudaMemGetInfo fallback; "peak 812 MiB (peak resident set)" on the CPU. */
void qvl_report_memory_line(char *buf, size_t len, const qvl_memory_info *m);

/* Percentile with linear interpolation between closest ranks (numpy's default); sorts v. */
double qvl_percentile(double *v, long n, double p);

#endif
