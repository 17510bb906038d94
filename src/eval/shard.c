/* Partition of an evaluation into shares and the merge of their results (see shard.h). */
#include "eval/shard.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"
#include "util/file.h"

int qvl_shard_parse(const char *text, const char *what, int *index, int *count) {
    char *end;
    errno = 0;
    long i = strtol(text, &end, 10);
    if (end == text || *end != '/' || errno)
        return qvl_errorf("%s: '%s' is not i/N (the i-th of N shares, 0-based)", what, text);
    const char *p = end + 1;
    long n = strtol(p, &end, 10);
    if (end == p || *end || errno || n < 1 || n > 1000000)
        return qvl_errorf("%s: '%s' is not i/N (N a count of shares from 1)", what, text);
    if (i < 0 || i >= n) return qvl_errorf("%s: '%s': i must be in 0..%ld (0-based)", what, text, n - 1);
    *index = (int)i;
    *count = (int)n;
    return 0;
}

typedef struct {
    int64_t cost;
    long pos;
} cost_pos;

static int by_falling_cost(const void *a, const void *b) {
    const cost_pos *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static uint64_t fnv(uint64_t h, uint64_t v) {
    for (int k = 0; k < 8; k++) {
        h ^= (v >> (8 * k)) & 0xff;
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t qvl_shard_partition(const int64_t *cost, long n, int count, int *owner) {
    cost_pos *order = malloc(((size_t)n + 1) * sizeof *order);
    int64_t *load = calloc((size_t)count, sizeof *load);
    if (!order || !load) {   /* no memory: fall back to round robin, still deterministic */
        for (long k = 0; k < n; k++) owner[k] = (int)(k % count);
    } else {
        for (long k = 0; k < n; k++) order[k] = (cost_pos){cost[k] > 0 ? cost[k] : 0, k};
        qsort(order, (size_t)n, sizeof *order, by_falling_cost);
        for (long k = 0; k < n; k++) {
            int best = 0;
            for (int s = 1; s < count; s++)
                if (load[s] < load[best]) best = s;
            owner[order[k].pos] = best;
            load[best] += order[k].cost;
        }
    }
    free(order);
    free(load);
    uint64_t h = fnv(14695981039346656037ull, (uint64_t)count);
    for (long k = 0; k < n; k++) h = fnv(fnv(h, (uint64_t)cost[k]), (uint64_t)owner[k]);
    return h;
}

char *qvl_shard_path(const char *out, int index, int count) {
    size_t len = strlen(out);
    size_t stem = len > 6 && !strcmp(out + len - 6, ".jsonl") ? len - 6 : len;
    size_t cap = stem + 64;
    char *p = malloc(cap);
    if (p) snprintf(p, cap, "%.*s.shard-%d-of-%d.jsonl", (int)stem, out, index, count);
    return p;
}

char *qvl_shard_summary_path(const char *results) {
    size_t len = strlen(results);
    char *s = malloc(len + 8);
    if (!s) return NULL;
    memcpy(s, results, len + 1);
    if (len > 6 && !strcmp(s + len - 6, ".jsonl")) s[len - 1] = 0;
    else strcat(s, ".json");
    return s;
}

static double r6(double x) { return round(x * 1e6) / 1e6; }

cJSON *qvl_shard_run_facts(const qvl_report_input *in) {
    cJSON *f = cJSON_CreateObject();
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
    cJSON_AddStringToObject(f, "host", host);
    cJSON_AddStringToObject(f, "device", in->device ? in->device : "");
    cJSON_AddBoolToObject(f, "device_is_cpu", in->device_is_cpu);
    cJSON_AddNumberToObject(f, "samples", (double)in->n_samples);
    cJSON_AddNumberToObject(f, "total_time_s", r6(in->total_time_s));
    cJSON_AddNumberToObject(f, "load_s", r6(in->load_s));
    cJSON_AddNumberToObject(f, "warmup_s", r6(in->warmup_s));
    cJSON_AddNumberToObject(f, "resumed", (double)in->resumed);
    cJSON_AddNumberToObject(f, "peak_memory_mib", r6(in->peak_memory_mib));
    cJSON_AddNumberToObject(f, "planned_memory_mib", r6(in->planned_memory_mib));
    if (in->memory_plan_mib) cJSON_AddItemToObject(f, "memory_plan_mib", cJSON_Duplicate(in->memory_plan_mib, 1));
    cJSON_AddNumberToObject(f, "memory_budget_mib", in->memory_budget_mib);
    if (in->peak_measure) cJSON_AddStringToObject(f, "peak_measure", in->peak_measure);
    cJSON_AddNumberToObject(f, "cuda_used_peak_mib", r6(in->cuda_used_peak_mib));
    if (in->plan_note) cJSON_AddStringToObject(f, "plan_note", in->plan_note);
    return f;
}

/* ---- merge ---- */

/* One shard's parsed results. */
typedef struct {
    const qvl_shard_input *in;
    cJSON *header;                /* the qvl_run object (owned by doc) */
    cJSON *doc;
    const cJSON *shard;           /* header's "shard" object */
    int index;
    qvl_eval_record *recs;
    long n_recs, cap;
    const cJSON *facts;           /* summary's "shard_run", when it belongs to these results */
    double time_s, peak;
} shard_file;

static int get_int(const cJSON *o, const char *key, long *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble)) return -1;
    *v = (long)x->valuedouble;
    return 0;
}

static int has_index(const shard_file *f, long index) {
    for (long k = 0; k < f->n_recs; k++)
        if (f->recs[k].index == index) return 1;
    return 0;
}

/* Parses one shard's results: header, then records (a truncated last line is ignored, as a resume
 * would cut it off; a repeated index keeps its first record, as a resume does). */
static int parse_shard(const qvl_shard_input *in, shard_file *f) {
    memset(f, 0, sizeof *f);
    f->in = in;
    const char *text = in->text;
    size_t len = in->len;
    const char *nl = memchr(text, '\n', len);
    if (!nl) return qvl_errorf("%s: empty or not a qvl eval results file", in->name);
    char *first = strndup(text, (size_t)(nl - text));
    f->doc = first ? cJSON_Parse(first) : NULL;
    free(first);
    f->header = cJSON_GetObjectItemCaseSensitive(f->doc, "qvl_run");
    if (!cJSON_IsObject(f->header))
        return qvl_errorf("%s: not a qvl eval results file: line 1 has no qvl_run header", in->name);
    f->shard = cJSON_GetObjectItemCaseSensitive(f->header, "shard");
    long idx = -1, cnt = 0;
    if (!cJSON_IsObject(f->shard) || get_int(f->shard, "index", &idx) || get_int(f->shard, "count", &cnt) ||
        idx < 0 || idx >= cnt)
        return qvl_errorf("%s: not a shard's results (no 'shard' setting: it was made without --shard or mpirun)",
                          in->name);
    f->index = (int)idx;
    size_t pos = (size_t)(nl - text) + 1;
    long line_no = 1;
    while (pos < len) {
        line_no++;
        const char *end = memchr(text + pos, '\n', len - pos);
        if (!end) break;   /* a write cut short */
        size_t n = (size_t)(end - (text + pos));
        char *line = strndup(text + pos, n);
        if (!line) return qvl_errorf("%s: out of memory", in->name);
        pos += n + 1;
        if (strspn(line, " \t\r") == n) {
            free(line);
            continue;
        }
        char where[512];
        snprintf(where, sizeof where, "%s:%ld", in->name, line_no);
        cJSON *j = cJSON_Parse(line);
        free(line);
        if (!j) return qvl_errorf("%s: not valid JSON (only a truncated last line is tolerated)", where);
        qvl_eval_record rec;
        int rc = qvl_eval_record_from_json(j, where, &rec);
        cJSON_Delete(j);
        if (rc) return -1;
        if (has_index(f, rec.index)) {
            qvl_eval_record_free(&rec);
            continue;
        }
        if (f->n_recs == f->cap) {
            long cap = f->cap ? f->cap * 2 : 64;
            qvl_eval_record *p = realloc(f->recs, (size_t)cap * sizeof *p);
            if (!p) {
                qvl_eval_record_free(&rec);
                return qvl_errorf("%s: out of memory", in->name);
            }
            f->recs = p;
            f->cap = cap;
        }
        f->recs[f->n_recs++] = rec;
    }
    /* The summary's facts count only when the summary was written for these results. */
    const cJSON *facts = in->summary ? cJSON_GetObjectItemCaseSensitive(in->summary, "shard_run") : NULL;
    const cJSON *ss = in->summary ? cJSON_GetObjectItemCaseSensitive(in->summary, "settings") : NULL;
    long total = -1;
    if (cJSON_IsObject(facts) && cJSON_Compare(cJSON_GetObjectItemCaseSensitive(ss, "shard"), f->shard, 1) &&
        !get_int(in->summary, "total_samples", &total) && total == f->n_recs)
        f->facts = facts;
    for (long k = 0; k < f->n_recs; k++) {
        f->time_s += f->recs[k].wall_s;
        if (f->recs[k].peak_memory_mib > f->peak) f->peak = f->recs[k].peak_memory_mib;
    }
    return 0;
}

static void shard_file_free(shard_file *f) {
    for (long k = 0; k < f->n_recs; k++) qvl_eval_record_free(&f->recs[k]);
    free(f->recs);
    cJSON_Delete(f->doc);
}

/* Names the first setting (or shard.<key>, other than the shard's own index) that differs. */
static int compare_headers(const shard_file *a, const shard_file *b) {
    for (int part = 0; part < 2; part++) {
        const cJSON *x = part ? a->shard : a->header, *y = part ? b->shard : b->header;
        for (int pass = 0; pass < 2; pass++) {
            const cJSON *it;
            cJSON_ArrayForEach(it, x) {
                if ((!part && !strcmp(it->string, "shard")) || (part && !strcmp(it->string, "index"))) continue;
                const cJSON *other = cJSON_GetObjectItemCaseSensitive(y, it->string);
                if (other && cJSON_Compare(it, other, 1)) continue;
                const cJSON *av = pass ? other : it, *bv = pass ? it : other;
                char *as = av ? cJSON_PrintUnformatted(av) : NULL, *bs = bv ? cJSON_PrintUnformatted(bv) : NULL;
                qvl_errorf("%s: setting '%s%s' differs: %s has %s, %s has %s", b->in->name, part ? "shard." : "",
                           it->string, a->in->name, as ? as : "(none)", b->in->name, bs ? bs : "(none)");
                cJSON_free(as);
                cJSON_free(bs);
                return -1;
            }
            const cJSON *t = x;
            x = y;
            y = t;
        }
    }
    return 0;
}

typedef struct {
    long index, pos;
} index_pos;

static int by_index(const void *a, const void *b) {
    long x = ((const index_pos *)a)->index, y = ((const index_pos *)b)->index;
    return (x > y) - (x < y);
}

static double num_or(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *str_or(const cJSON *o, const char *key, const char *dflt) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : dflt;
}

static int same_text(const char *a, const char *b) { return !strcmp(a ? a : "", b ? b : ""); }

/* Moves every shard's records into m->records by selection position, checking each is ours. */
static int place_records(const qvl_dataset *ds, long offset, shard_file *files, int n_files, qvl_merged *m,
                         const char *data_name) {
    const qvl_sample *sel = ds->samples + offset;
    index_pos *map = malloc(((size_t)m->n + 1) * sizeof *map);
    int *from = malloc(((size_t)m->n + 1) * sizeof *from);   /* which file filled a position, -1 none */
    if (!map || !from) {
        free(map);
        free(from);
        return qvl_errorf("merge: out of memory");
    }
    long n_map = 0;
    for (long k = 0; k < m->n; k++) {
        from[k] = -1;
        if (sel[k].index >= 0) map[n_map++] = (index_pos){sel[k].index, k};
    }
    qsort(map, (size_t)n_map, sizeof *map, by_index);
    int rc = 0;
    for (int fi = 0; fi < n_files && !rc; fi++) {
        shard_file *f = &files[fi];
        for (long r = 0; r < f->n_recs && !rc; r++) {
            qvl_eval_record *rec = &f->recs[r];
            index_pos key = {rec->index, 0};
            const index_pos *hit = bsearch(&key, map, (size_t)n_map, sizeof *map, by_index);
            if (!hit) {
                rc = qvl_errorf("%s: sample %ld is not among the selected samples of %s", f->in->name, rec->index,
                                data_name);
            } else if (from[hit->pos] >= 0) {
                rc = qvl_errorf("merge: sample %ld is in both %s and %s", rec->index, files[from[hit->pos]].in->name,
                                f->in->name);
            } else if (!same_text(rec->question, sel[hit->pos].question) || !same_text(rec->type, sel[hit->pos].type)) {
                rc = qvl_errorf("%s: sample %ld: its question or type differs from %s's (other data?)", f->in->name,
                                rec->index, data_name);
            } else {
                from[hit->pos] = fi;
                m->records[hit->pos] = *rec;
                memset(rec, 0, sizeof *rec);   /* now m's; the file keeps its count and time */
            }
        }
    }
    if (!rc) {
        /* Samples without a readable key are never logged: they count as skipped, as in one run. */
        long missing = 0;
        char list[400] = "";
        size_t used = 0;
        for (long k = 0; k < m->n; k++) {
            if (from[k] >= 0) continue;
            if (sel[k].index < 0) {
                qvl_eval_record *r = &m->records[k];
                r->index = -1;
                r->type = strdup(sel[k].type ? sel[k].type : "");
                r->dataset = strdup(sel[k].dataset ? sel[k].dataset : "");
                r->question = strdup(sel[k].question ? sel[k].question : "");
                r->answers = calloc(1, sizeof *r->answers);
                r->prediction = strdup("");
                r->skipped = 1;
                r->reason = strdup(sel[k].error ? sel[k].error : "unreadable sample");
                continue;
            }
            if (missing++ < 12 && used < sizeof list - 40)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%ld", used ? ", " : "", sel[k].index);
        }
        if (missing)
            rc = qvl_errorf("merge: %ld of %ld samples are in no shard's results: index %s%s (rerun the shards "
                            "that did not finish)", missing, m->n, list, missing > 12 ? ", ..." : "");
    }
    free(map);
    free(from);
    return rc;
}

static void aggregate_facts(shard_file *files, int n_files, qvl_merged *m) {
    const char *device = NULL;
    int devices_differ = 0, any_facts = 0, all_cpu = 1;
    m->load_s = m->warmup_s = -1;
    m->planned_memory_mib = -1;
    m->shares = cJSON_CreateArray();
    for (int k = 0; k < n_files; k++) {   /* files are in shard order */
        shard_file *f = &files[k];
        const cJSON *x = f->facts;
        double peak = x ? fmax(num_or(x, "peak_memory_mib", 0), f->peak) : f->peak;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, m->label, f->index);
        cJSON_AddStringToObject(o, "results", f->in->name);
        cJSON_AddNumberToObject(o, "samples", (double)f->n_recs);
        cJSON_AddNumberToObject(o, "total_time_s", r6(f->time_s));
        cJSON_AddNumberToObject(o, "samples_per_s", r6(f->time_s > 0 ? (double)f->n_recs / f->time_s : 0));
        cJSON_AddNumberToObject(o, "peak_memory_mib", r6(peak));
        cJSON_AddStringToObject(o, "device", x ? str_or(x, "device", "?") : "unknown (no summary for these results)");
        cJSON_AddStringToObject(o, "host", x ? str_or(x, "host", "") : "");
        if (x) cJSON_AddNumberToObject(o, "load_s", r6(num_or(x, "load_s", -1)));
        if (x && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "device_is_cpu")))   /* the GPU plan */
            cJSON_AddNumberToObject(o, "planned_memory_mib", r6(num_or(x, "planned_memory_mib", -1)));
        cJSON_AddItemToArray(m->shares, o);
        if (f->time_s > m->total_time_s) m->total_time_s = f->time_s;
        if (peak > m->peak_memory_mib) m->peak_memory_mib = peak;
        if (!x) continue;
        any_facts = 1;
        const char *d = str_or(x, "device", "?");
        if (d[0] != '(' && device && strcmp(device, d)) devices_differ = 1;   /* "(not opened...)": no work */
        if (d[0] != '(' && !device) device = d;
        all_cpu &= cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "device_is_cpu"));
        m->load_s = fmax(m->load_s, num_or(x, "load_s", -1));
        m->warmup_s = fmax(m->warmup_s, num_or(x, "warmup_s", -1));
        m->resumed += (long)num_or(x, "resumed", 0);
        double planned = num_or(x, "planned_memory_mib", -1);
        if (planned > m->planned_memory_mib) {
            m->planned_memory_mib = planned;
            cJSON_Delete(m->memory_plan_mib);
            const cJSON *plan = cJSON_GetObjectItemCaseSensitive(x, "memory_plan_mib");
            m->memory_plan_mib = plan ? cJSON_Duplicate(plan, 1) : NULL;
            free(m->plan_note);
            const char *note = str_or(x, "plan_note", NULL);
            m->plan_note = note ? strdup(note) : NULL;
        }
        m->memory_budget_mib = fmax(m->memory_budget_mib, num_or(x, "memory_budget_mib", 0));
        m->cuda_used_peak_mib = fmax(m->cuda_used_peak_mib, num_or(x, "cuda_used_peak_mib", 0));
        if (!m->peak_measure && str_or(x, "peak_measure", NULL)) m->peak_measure = strdup(str_or(x, "peak_measure", ""));
    }
    char buf[160];
    if (!any_facts) snprintf(buf, sizeof buf, "unknown (no summaries for these results)");
    else if (!device) snprintf(buf, sizeof buf, "%s", str_or(files[0].facts, "device", "?"));
    else if (devices_differ) snprintf(buf, sizeof buf, "several devices (see the per-%s lines)", m->label);
    else snprintf(buf, sizeof buf, "%s", device);
    m->device = strdup(buf);
    m->device_is_cpu = any_facts && all_cpu;
}

static int by_shard_index(const void *a, const void *b) {
    int x = ((const shard_file *)a)->index, y = ((const shard_file *)b)->index;
    return (x > y) - (x < y);
}

int qvl_shard_merge(const qvl_dataset *ds, const qvl_shard_input *in, int n_in, const char *label,
                    qvl_merged *m) {
    memset(m, 0, sizeof *m);
    m->label = strdup(label);
    if (n_in < 1) return qvl_errorf("merge: no results files given");
    shard_file *files = calloc((size_t)n_in, sizeof *files);
    if (!files || !m->label) {
        free(files);
        return qvl_errorf("merge: out of memory");
    }
    int rc = 0, parsed = 0;
    for (; parsed < n_in && !rc; parsed++) rc = parse_shard(&in[parsed], &files[parsed]);
    for (int k = 1; k < n_in && !rc; k++) rc = compare_headers(&files[0], &files[k]);
    long count = 0, offset = 0, selected = 0, data_samples = 0;
    if (!rc) {
        get_int(files[0].shard, "count", &count);
        if (get_int(files[0].shard, "offset", &offset) || get_int(files[0].shard, "selected", &selected) ||
            get_int(files[0].shard, "data_samples", &data_samples))
            rc = qvl_errorf("%s: its 'shard' setting lacks offset, selected or data_samples", files[0].in->name);
    }
    if (!rc) {
        qsort(files, (size_t)n_in, sizeof *files, by_shard_index);
        for (int k = 0; k < n_in && !rc; k++) {
            if (k + 1 < n_in && files[k].index == files[k + 1].index)
                rc = qvl_errorf("merge: %s and %s are both shard %d of %ld", files[k].in->name, files[k + 1].in->name,
                                files[k].index, count);
        }
        for (long s = 0, k = 0; s < count && !rc; s++) {
            if (k < n_in && files[k].index == s) k++;
            else rc = qvl_errorf("merge: shard %ld of %ld is missing (give every shard's results file)", s, count);
        }
    }
    if (!rc && data_samples != ds->n_samples)
        rc = qvl_errorf("%s: has %ld samples, the shards ran on data with %ld (other data?)", ds->source,
                        ds->n_samples, data_samples);
    if (!rc && (offset < 0 || selected < 0 || offset + selected > ds->n_samples))
        rc = qvl_errorf("%s: its shard selection (offset %ld, %ld samples) is outside the data", files[0].in->name,
                        offset, selected);
    if (!rc) {
        m->count = (int)count;
        m->n = selected;
        m->records = calloc((size_t)selected + 1, sizeof *m->records);
        m->record_ptrs = calloc((size_t)selected + 1, sizeof *m->record_ptrs);
        if (!m->records || !m->record_ptrs) rc = qvl_errorf("merge: out of memory");
    }
    if (!rc) {
        rc = place_records(ds, offset, files, n_in, m, ds->source);
    }
    if (!rc) {
        for (long k = 0; k < m->n; k++) m->record_ptrs[k] = &m->records[k];
        m->settings = cJSON_Duplicate(files[0].header, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(m->settings, "shard");
        const cJSON *ss = files[0].facts ? cJSON_GetObjectItemCaseSensitive(in[0].summary, "settings") : NULL;
        for (int k = 0; k < n_in && !ss; k++)
            if (files[k].facts) ss = cJSON_GetObjectItemCaseSensitive(files[k].in->summary, "settings");
        m->report_settings = cJSON_Duplicate(ss ? ss : files[0].header, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(m->report_settings, "shard");
        char key[32];
        snprintf(key, sizeof key, "%ss", label);
        cJSON_AddNumberToObject(m->report_settings, key, (double)count);
        aggregate_facts(files, n_in, m);
    }
    for (int k = 0; k < parsed; k++) shard_file_free(&files[k]);
    free(files);
    if (rc) qvl_merged_free(m);
    return rc;
}

void qvl_merged_report_input(const qvl_merged *m, const char *data, const char *date, qvl_report_input *in) {
    memset(in, 0, sizeof *in);
    in->model = str_or(m->settings, "model", "?");
    in->data = data;
    in->date = date;
    in->device = m->device;
    in->device_is_cpu = m->device_is_cpu;
    in->settings = m->report_settings;
    in->records = m->record_ptrs;
    in->n_samples = m->n;
    in->total_time_s = m->total_time_s;
    in->load_s = m->load_s;
    in->warmup_s = m->warmup_s;
    in->resumed = m->resumed;
    in->peak_memory_mib = m->peak_memory_mib;
    in->planned_memory_mib = m->planned_memory_mib;
    in->memory_plan_mib = m->memory_plan_mib;
    in->memory_budget_mib = m->memory_budget_mib;
    in->peak_measure = m->peak_measure;
    in->cuda_used_peak_mib = m->cuda_used_peak_mib;
    in->plan_note = m->plan_note;
}

char *qvl_merged_shares_text(const qvl_merged *m) {
    size_t cap = 768 + (size_t)m->count * 256, used = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    used += (size_t)snprintf(s + used, cap - used,
                             "\nPer %s (%d %ss; Total Time is the longest share's, the %ss running at the same time; "
                             "Peak Memory the highest of one process):\n  %-6s %8s %9s %10s %11s %11s  %s\n",
                             m->label, m->count, m->label, m->label, m->label, "samples", "time s", "samples/s",
                             "peak MiB", "plan MiB", "device");
    double sum_peak = 0, sum_time = 0, max_time = 0;
    int n_timed = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, m->shares) {
        const char *host = str_or(o, "host", "");
        double peak = num_or(o, "peak_memory_mib", 0), plan = num_or(o, "planned_memory_mib", -1);
        double t = num_or(o, "total_time_s", 0);
        sum_peak += peak;
        if (num_or(o, "samples", 0) > 0) sum_time += t, max_time = fmax(max_time, t), n_timed++;
        char plan_text[32] = "-";
        if (plan >= 0) snprintf(plan_text, sizeof plan_text, "%.2f", plan);
        if (used < cap)
            used += (size_t)snprintf(s + used, cap - used, "  %-6.0f %8.0f %9.2f %10.2f %11.2f %11s  %s%s%s\n",
                                     num_or(o, m->label, 0), num_or(o, "samples", 0), t,
                                     num_or(o, "samples_per_s", 0), peak, plan_text, str_or(o, "device", "?"),
                                     host[0] ? " on " : "", host);
    }
    if (used < cap)
        used += (size_t)snprintf(s + used, cap - used,
                                 "  %-6s %8ld %9.2f %10.2f %11.2f %11s  (samples/s: all samples over the longest "
                                 "share's time; peak: the sum over %ss)\n",
                                 "total", m->n, m->total_time_s,
                                 m->total_time_s > 0 ? (double)m->n / m->total_time_s : 0.0, sum_peak, "", m->label);
    /* Load balance: how much longer the slowest share ran than the average one (1.00: perfectly even). */
    if (used < cap && n_timed > 1 && sum_time > 0)
        snprintf(s + used, cap - used, "  balance: the slowest %s ran %.2f s, the mean %.2f s (slowest / mean %.3f)\n",
                 m->label, max_time, sum_time / n_timed, max_time / (sum_time / n_timed));
    return s;
}

/* Appends text and a newline to *buf; 0, or -1 when out of memory. */
static int append_line(char **buf, size_t *used, size_t *cap, const char *text) {
    size_t n = strlen(text);
    if (*used + n + 2 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (*used + n + 2 > c) c *= 2;
        char *p = realloc(*buf, c);
        if (!p) return -1;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *used, text, n);
    *used += n;
    (*buf)[(*used)++] = '\n';
    return 0;
}

int qvl_merged_write_results(const qvl_merged *m, const char *path) {
    char *buf = NULL;
    size_t used = 0, cap = 0;
    cJSON *h = cJSON_CreateObject();
    cJSON_AddItemToObject(h, "qvl_run", cJSON_Duplicate(m->settings, 1));
    char *line = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    int oom = !line || append_line(&buf, &used, &cap, line);
    cJSON_free(line);
    for (long k = 0; k < m->n && !oom; k++) {
        if (m->records[k].index < 0) continue;   /* never logged, as in one run */
        cJSON *j = qvl_eval_record_to_json(&m->records[k]);
        line = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        oom = !line || append_line(&buf, &used, &cap, line);
        cJSON_free(line);
    }
    int rc = oom ? qvl_errorf("%s: out of memory", path) : qvl_write_file_atomic(path, buf, used);
    free(buf);
    return rc;
}

void qvl_merged_free(qvl_merged *m) {
    for (long k = 0; m->records && k < m->n; k++) qvl_eval_record_free(&m->records[k]);
    free(m->records);
    free(m->record_ptrs);
    cJSON_Delete(m->settings);
    cJSON_Delete(m->report_settings);
    cJSON_Delete(m->shares);
    cJSON_Delete(m->memory_plan_mib);
    free(m->label);
    free(m->device);
    free(m->peak_measure);
    free(m->plan_note);
    memset(m, 0, sizeof *m);
}
