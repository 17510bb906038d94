/* Results JSONL: writing, resuming, and the record layout (see results.h). */
#include "eval/results.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"
#include "util/file.h"

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

static double round_us(double x) { return round(x * 1e6) / 1e6; }

cJSON *qvl_eval_record_to_json(const qvl_eval_record *rec) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "index", (double)rec->index);
    cJSON_AddStringToObject(j, "type", rec->type ? rec->type : "");
    cJSON_AddStringToObject(j, "dataset", rec->dataset ? rec->dataset : "");
    cJSON_AddStringToObject(j, "question", rec->question ? rec->question : "");
    cJSON *a = cJSON_AddArrayToObject(j, "answers");
    for (int i = 0; i < rec->n_answers; i++) cJSON_AddItemToArray(a, cJSON_CreateString(rec->answers[i]));
    cJSON_AddStringToObject(j, "prediction", rec->prediction ? rec->prediction : "");
    cJSON_AddNumberToObject(j, "correct", rec->correct ? 1 : 0);
    cJSON_AddStringToObject(j, "status", rec->skipped ? "skipped" : "ok");
    if (rec->skipped) cJSON_AddStringToObject(j, "reason", rec->reason ? rec->reason : "");
    cJSON_AddNumberToObject(j, "prompt_tokens", rec->prompt_tokens);
    cJSON_AddNumberToObject(j, "image_tokens", rec->image_tokens);
    cJSON_AddNumberToObject(j, "generated_tokens", rec->generated_tokens);
    cJSON_AddNumberToObject(j, "latency_s", round_us(rec->latency_s));
    cJSON_AddNumberToObject(j, "ttft_s", round_us(rec->ttft_s));
    cJSON_AddNumberToObject(j, "wall_s", round_us(rec->wall_s));
    cJSON_AddNumberToObject(j, "peak_memory_mib", round(rec->peak_memory_mib * 100) / 100);
    return j;
}

void qvl_eval_record_free(qvl_eval_record *rec) {
    free(rec->type);
    free(rec->dataset);
    free(rec->question);
    for (int i = 0; i < rec->n_answers; i++) free(rec->answers[i]);
    free(rec->answers);
    free(rec->prediction);
    free(rec->reason);
    memset(rec, 0, sizeof *rec);
}

static int get_num(const cJSON *j, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v)) return -1;
    *out = v->valuedouble;
    return 0;
}

int qvl_eval_record_from_json(const cJSON *j, const char *where, qvl_eval_record *rec) {
    memset(rec, 0, sizeof *rec);
    double index, correct, pt = 0, it = 0, gt = 0, lat = 0, ttft = 0, wall = -1, peak = 0;
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "status"));
    const char *pred = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "prediction"));
    const cJSON *answers = cJSON_GetObjectItemCaseSensitive(j, "answers");
    /* Range checks before any conversion: a double outside long/int is undefined behaviour to cast. */
    if (!cJSON_IsObject(j) || get_num(j, "index", &index) || index != floor(index) || !(fabs(index) < 9.0e18) ||
        !pred || !status ||
        get_num(j, "correct", &correct) || !cJSON_IsArray(answers) ||
        (strcmp(status, "ok") && strcmp(status, "skipped")))
        return qvl_errorf("%s: not a result record (needs index, answers, prediction, correct, status)", where);
    get_num(j, "prompt_tokens", &pt);
    get_num(j, "image_tokens", &it);
    get_num(j, "generated_tokens", &gt);
    get_num(j, "latency_s", &lat);
    get_num(j, "ttft_s", &ttft);
    get_num(j, "wall_s", &wall);
    get_num(j, "peak_memory_mib", &peak);
    if (!(pt >= 0 && pt <= INT_MAX) || !(it >= 0 && it <= INT_MAX) || !(gt >= 0 && gt <= INT_MAX))
        return qvl_errorf("%s: token counts must be in [0, %d]", where, INT_MAX);
    rec->index = (long)index;
    rec->type = dupstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "type")));
    rec->dataset = dupstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "dataset")));
    rec->question = dupstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "question")));
    int n = cJSON_GetArraySize(answers);
    rec->answers = calloc((size_t)n + 1, sizeof *rec->answers);
    for (int i = 0; i < n; i++) {
        const char *s = cJSON_GetStringValue(cJSON_GetArrayItem(answers, i));
        rec->answers[rec->n_answers++] = strdup(s ? s : "");
    }
    rec->prediction = strdup(pred);
    rec->correct = correct != 0;
    rec->skipped = !strcmp(status, "skipped");
    rec->reason = dupstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "reason")));
    rec->prompt_tokens = (int)pt;
    rec->image_tokens = (int)it;
    rec->generated_tokens = (int)gt;
    rec->latency_s = lat;
    rec->ttft_s = ttft;
    rec->wall_s = wall >= 0 ? wall : lat;   /* a log without wall_s: the latency is the best estimate */
    rec->peak_memory_mib = peak;
    return 0;
}

static int write_all(int fd, const char *buf, size_t n, const char *path) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return qvl_errorf("%s: write failed: %s", path, strerror(errno));
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes the JSON plus a newline with one write() call, so a line is never interleaved. */
static int write_line(int fd, const cJSON *j, const char *path) {
    char *s = cJSON_PrintUnformatted(j);
    if (!s) return qvl_errorf("%s: out of memory", path);
    size_t n = strlen(s);
    char *line = malloc(n + 2);
    if (!line) {
        cJSON_free(s);
        return qvl_errorf("%s: out of memory", path);
    }
    memcpy(line, s, n);
    line[n] = '\n';
    int rc = write_all(fd, line, n + 1, path);
    free(line);
    cJSON_free(s);
    return rc;
}

static int keep_record(qvl_results *r, qvl_eval_record *rec) {
    if (r->n_records == r->cap) {
        long cap = r->cap ? r->cap * 2 : 64;
        qvl_eval_record *p = realloc(r->records, (size_t)cap * sizeof *p);
        if (!p) return qvl_errorf("%s: out of memory", r->path);
        r->records = p;
        r->cap = cap;
    }
    r->records[r->n_records++] = *rec;
    r->sorted = 0;
    return 0;
}

/* Names the first setting that differs between the file's header and this run. */
static int compare_settings(const char *path, const cJSON *file, const cJSON *now) {
    const cJSON *a = file, *b = now;
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *it;
        cJSON_ArrayForEach(it, a) {
            const cJSON *other = cJSON_GetObjectItemCaseSensitive(b, it->string);
            if (other && cJSON_Compare(it, other, 1)) continue;
            const cJSON *fv = pass == 0 ? it : other, *nv = pass == 0 ? other : it;
            char *fs = fv ? cJSON_PrintUnformatted(fv) : NULL, *ns = nv ? cJSON_PrintUnformatted(nv) : NULL;
            qvl_errorf("%s: setting '%s' differs: file has %s, this run has %s (use --overwrite to start afresh)",
                       path, it->string, fs ? fs : "(none)", ns ? ns : "(none)");
            cJSON_free(fs);
            cJSON_free(ns);
            return -1;
        }
        a = now;
        b = file;
    }
    return 0;
}

static int start_fresh(qvl_results *r, const cJSON *settings) {
    r->fd = open(r->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (r->fd < 0) return qvl_errorf("%s: cannot create: %s", r->path, strerror(errno));
    cJSON *h = cJSON_CreateObject();
    cJSON_AddItemToObject(h, "qvl_run", cJSON_Duplicate(settings, 1));
    int rc = write_line(r->fd, h, r->path);
    cJSON_Delete(h);
    return rc;
}

/* Reads an existing log: checks the header, keeps the records, and returns the byte length of
 * the complete lines (a truncated tail is cut off there). Returns -2 for "nothing usable yet". */
static long load_existing(qvl_results *r, const char *text, size_t len, const cJSON *settings) {
    const char *nl = memchr(text, '\n', len);
    static const char tag[] = "{\"qvl_run\"";
    if (!nl) {   /* empty, or the header itself was cut short by a crash */
        size_t k = len < sizeof tag - 1 ? len : sizeof tag - 1;
        if (memcmp(text, tag, k)) return qvl_errorf("%s: not a qvl eval results file (use --overwrite to replace it)", r->path);
        return -2;
    }
    char *first = strndup(text, (size_t)(nl - text));
    if (!first) return qvl_errorf("%s: out of memory", r->path);
    cJSON *h = cJSON_Parse(first);
    free(first);
    const cJSON *file_settings = cJSON_GetObjectItemCaseSensitive(h, "qvl_run");
    if (!cJSON_IsObject(file_settings)) {
        cJSON_Delete(h);
        return qvl_errorf("%s: not a qvl eval results file: line 1 has no qvl_run header (use --overwrite to replace it)", r->path);
    }
    int rc = compare_settings(r->path, file_settings, settings);
    cJSON_Delete(h);
    if (rc) return -1;
    size_t pos = (size_t)(nl - text) + 1;
    long line_no = 1;
    while (pos < len) {
        line_no++;
        const char *end = memchr(text + pos, '\n', len - pos);
        if (!end) {                /* a last line without its newline: a write cut short */
            r->dropped_partial = 1;
            break;
        }
        size_t n = (size_t)(end - (text + pos));
        char *line = strndup(text + pos, n);
        if (!line) return qvl_errorf("%s: out of memory", r->path);
        pos += n + 1;
        if (strspn(line, " \t\r") == n) {
            free(line);
            continue;
        }
        char where[512];
        snprintf(where, sizeof where, "%s:%ld", r->path, line_no);
        cJSON *j = cJSON_Parse(line);
        free(line);
        if (!j) return qvl_errorf("%s: not valid JSON (only a truncated last line is tolerated)", where);
        qvl_eval_record rec;
        rc = qvl_eval_record_from_json(j, where, &rec);
        cJSON_Delete(j);
        if (rc) return -1;
        if (qvl_results_find(r, rec.index)) {   /* keep the first record of an index */
            qvl_eval_record_free(&rec);
            continue;
        }
        if (keep_record(r, &rec)) {
            qvl_eval_record_free(&rec);
            return -1;
        }
    }
    return (long)pos;   /* with a truncated tail, pos is where that tail starts */
}

int qvl_results_open(qvl_results *r, const char *path, const cJSON *settings, int overwrite) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->path = strdup(path);
    if (!r->path) return qvl_errorf("%s: out of memory", path);
    if (overwrite || access(path, F_OK) != 0) return start_fresh(r, settings);
    size_t len;
    char *text = qvl_read_file(path, &len);
    if (!text) return -1;
    long good = load_existing(r, text, len, settings);
    free(text);
    if (good == -2) return start_fresh(r, settings);
    if (good < 0) return -1;
    r->n_resumed = r->n_records;
    r->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (r->fd < 0) return qvl_errorf("%s: cannot open for appending: %s", path, strerror(errno));
    if (r->dropped_partial && ftruncate(r->fd, (off_t)good) != 0)
        return qvl_errorf("%s: cannot cut off the truncated last line: %s", path, strerror(errno));
    return 0;
}

int qvl_results_append(qvl_results *r, const qvl_eval_record *rec) {
    cJSON *j = qvl_eval_record_to_json(rec);
    int rc = write_line(r->fd, j, r->path);
    if (rc == 0) {
        qvl_eval_record copy;
        rc = qvl_eval_record_from_json(j, r->path, &copy);
        if (rc == 0 && keep_record(r, &copy)) {
            qvl_eval_record_free(&copy);
            rc = -1;
        }
    }
    cJSON_Delete(j);
    return rc;
}

static int cmp_index(const void *a, const void *b) {
    long x = ((const qvl_eval_record *)a)->index, y = ((const qvl_eval_record *)b)->index;
    return (x > y) - (x < y);
}

const qvl_eval_record *qvl_results_find(qvl_results *r, long index) {
    if (r->n_records == 0) return NULL;
    if (!r->sorted) {
        /* Stable order matters for duplicates only, which load_existing never keeps. */
        qsort(r->records, (size_t)r->n_records, sizeof *r->records, cmp_index);
        r->sorted = 1;
    }
    qvl_eval_record key = {.index = index};
    return bsearch(&key, r->records, (size_t)r->n_records, sizeof *r->records, cmp_index);
}

void qvl_results_close(qvl_results *r) {
    if (r->fd >= 0) close(r->fd);
    for (long i = 0; i < r->n_records; i++) qvl_eval_record_free(&r->records[i]);
    free(r->records);
    free(r->path);
    memset(r, 0, sizeof *r);
    r->fd = -1;
}
