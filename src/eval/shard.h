/* One evaluation spread over several processes (docs/cli.md, scale-out): `qvl eval --shard i/N`,
 * `mpirun -np N qvl eval` and `qvl merge`.
 *
 * Partition: the selected samples are split into N shares balanced by predicted cost (longest
 * first onto the least-loaded share), deterministic for the same costs and N on every machine;
 * each share runs in dataset order into its own results file, whose header carries the run's
 * settings plus a "shard" object ({"index", "count", "offset", "limit", "selected", "data_samples",
 * "cost", "fingerprint"}). A shard's summary JSON carries what its run knew beyond its records
 * (device, load time, memory plan and peak) under "shard_run".
 *
 * Merge: the shards' results (file contents, so MPI can gather them over the network) are checked
 * (same settings, every shard once, every selected sample exactly once, the same data) and
 * combined into the records and report input of one run. */
#ifndef QVL_EVAL_SHARD_H
#define QVL_EVAL_SHARD_H
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "eval/dataset.h"
#include "eval/report.h"
#include "eval/results.h"

/* Parses "i/N" (0 <= i < N). -1 + qvl_error naming `what` otherwise. */
int qvl_shard_parse(const char *text, const char *what, int *index, int *count);

/* Splits n samples of the given costs (>= 0) into `count` shares: owner[k] = the share of sample k.
 * Longest processing time first: samples by falling cost (ties: by position) each go to the share
 * with the least cost so far (ties: the lowest share). Returns a fingerprint of the result (FNV-1a
 * over costs and owners) so processes can check they agree. */
uint64_t qvl_shard_partition(const int64_t *cost, long n, int count, int *owner);

/* "<stem>.shard-<i>-of-<N>.jsonl" for out "<stem>.jsonl" (or "<out>.shard-..." without .jsonl);
 * malloc'd. */
char *qvl_shard_path(const char *out, int index, int count);
/* The summary path `qvl eval` uses for a results path: .jsonl -> .json, else + ".json"; malloc'd. */
char *qvl_shard_summary_path(const char *results);

/* The facts of one shard's run beyond its records, for its summary's "shard_run" object. */
cJSON *qvl_shard_run_facts(const qvl_report_input *in);

/* One shard's results as handed to the merge. */
typedef struct {
    const char *name;        /* its results file, for messages */
    const char *text;        /* the results JSONL's content */
    size_t len;
    const cJSON *summary;    /* its summary JSON, or NULL (then device and load times are unknown) */
} qvl_shard_input;

typedef struct {
    int count;                    /* shards */
    char *label;                  /* "rank" or "shard" */
    cJSON *settings;              /* the run's settings: the shards' without "shard" */
    cJSON *report_settings;       /* the summary's settings (shard 0's summary, or settings) + count */
    qvl_eval_record *records;     /* every selected sample in selection order (owned) */
    const qvl_eval_record **record_ptrs;
    long n;
    cJSON *shares;                /* per-shard facts array (index, samples, time, speed, peak, device, host) */
    char *device;                 /* one device name, or "N devices, see per-<label> lines" */
    int device_is_cpu;
    double total_time_s, load_s, warmup_s, peak_memory_mib, planned_memory_mib, memory_budget_mib;
    double cuda_used_peak_mib;
    long resumed;
    cJSON *memory_plan_mib;
    char *peak_measure, *plan_note;
} qvl_merged;

/* Checks and combines the shards (in any order) for the samples of ds (loaded with or without
 * images; the same data the shards ran). label names a shard in the report ("rank" for mpirun).
 * Errors (-1 + qvl_error): mismatched settings (naming the setting and both files), a shard
 * missing or given twice, a sample missing (naming them) or in two shards (naming both files), a
 * record not of this data. */
int qvl_shard_merge(const qvl_dataset *ds, const qvl_shard_input *in, int n_in, const char *label,
                    qvl_merged *m);
/* The report input of the merged run (borrowing from m). */
void qvl_merged_report_input(const qvl_merged *m, const char *data, const char *date, qvl_report_input *in);
/* The per-rank/shard section printed after the report (malloc'd). */
char *qvl_merged_shares_text(const qvl_merged *m);
/* Writes the merged results JSONL (the header of a single run, then the records) atomically. */
int qvl_merged_write_results(const qvl_merged *m, const char *path);
void qvl_merged_free(qvl_merged *m);

#endif
