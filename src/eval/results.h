/* The results JSONL of `qvl eval` (docs/cli.md): the resume log.
 *   line 1:   {"qvl_run": {...settings}}
 *   then:     one record per finished sample, each written with one write() as it finishes.
 * Opening an existing file resumes it: its records are kept, a truncated last line (a crash
 * mid-write) is cut off, and differing settings are refused naming the setting. */
#ifndef QVL_EVAL_RESULTS_H
#define QVL_EVAL_RESULTS_H
#include <cjson/cJSON.h>

typedef struct {
    long index;
    char *type, *dataset, *question;
    char **answers;
    int n_answers;
    char *prediction;      /* "" when skipped */
    int correct;           /* 0/1 */
    int skipped;           /* status "skipped" (counts wrong) */
    char *reason;          /* why skipped, else NULL */
    int prompt_tokens, image_tokens, generated_tokens;
    double latency_s, ttft_s;
    /* Beyond cli.md's fields, so a resumed run reports the same time and memory as an unbroken one:
     * wall_s is the wall time since the previous sample of this invocation ended (or since its
     * first sample started), so the sum over a run is its Total Time; peak_memory_mib is
     * the process peak when the sample finished. */
    double wall_s, peak_memory_mib;
} qvl_eval_record;

typedef struct {
    char *path;
    int fd;                /* open for appending, -1 after close */
    qvl_eval_record *records;
    long n_records, cap;
    long n_resumed;        /* records found in the file when it was opened */
    int dropped_partial;   /* 1 if a truncated last line was cut off */
    int sorted;
} qvl_results;

/* Opens (or creates) path for a run with `settings` (an object; copied into the header).
 * overwrite = 1 starts afresh. Errors (-1 + qvl_error): unreadable file, a corrupt line other
 * than a truncated last one, a file that is not a qvl results log, or differing settings:
 * "<path>: setting 'NAME' differs: file has X, this run has Y (use --overwrite to start afresh)". */
int qvl_results_open(qvl_results *r, const char *path, const cJSON *settings, int overwrite);
/* Appends one record as a single line (one write() call) and keeps it in memory. */
int qvl_results_append(qvl_results *r, const qvl_eval_record *rec);
/* The record with this index, or NULL. */
const qvl_eval_record *qvl_results_find(qvl_results *r, long index);
void qvl_results_close(qvl_results *r);

/* Record <-> JSON (the line layout of cli.md). from_json returns -1 + qvl_error naming `where`
 * for a malformed record; the record owns malloc'd copies. */
cJSON *qvl_eval_record_to_json(const qvl_eval_record *rec);
int qvl_eval_record_from_json(const cJSON *j, const char *where, qvl_eval_record *rec);
void qvl_eval_record_free(qvl_eval_record *rec);

#endif
