/* The report text and summary JSON (see report.h; layout from docs/report-format.md). */
#include "eval/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/error.h"
#include "util/file.h"

/* A growing string for building the report; `oom` remembers a failed append so a truncated report
 * is never handed out as if complete. */
typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0 || b->oom) {
        b->oom = 1;
        return;
    }
    if (b->n + (size_t)need + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)need;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

/* The text, or NULL if any append failed. */
static char *sb_take(sbuf *b) {
    if (b->oom) {
        free(b->s);
        return NULL;
    }
    if (!b->s) return strdup("");
    return b->s;
}

static const int full_counts[QVL_OCRBENCH_TYPES] = {50, 50, 50, 50, 50, 50, 200, 200, 200, 100};

int qvl_ocrbench_is_full(const qvl_ocrbench_tally *t) {
    if (t->other_total) return 0;
    for (int k = 0; k < QVL_OCRBENCH_TYPES; k++)
        if (t->total[k] != full_counts[k]) return 0;
    return 1;
}

void qvl_report_tally(const qvl_report_input *in, qvl_ocrbench_tally *t) {
    memset(t, 0, sizeof *t);
    for (long i = 0; i < in->n_samples; i++) {
        const qvl_eval_record *r = in->records[i];
        qvl_ocrbench_tally_add(t, r->type, r->correct && !r->skipped);
    }
}

double qvl_percentile(double *v, long n, double p) {
    if (n <= 0) return 0;
    for (long i = 1; i < n; i++) {   /* insertion sort: n is at most a few thousand */
        double x = v[i];
        long j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    double pos = p / 100.0 * (double)(n - 1);
    long lo = (long)floor(pos);
    long hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (pos - (double)lo);
}

static double pct(int correct, int total) { return total ? 100.0 * correct / total : 0.0; }

static void score_row(sbuf *b, const char *name, int correct, int total) {
    if (total)
        sb_printf(b, "  %-50s %4d / %-4d %7.2f%%\n", name, correct, total, pct(correct, total));
    else
        sb_printf(b, "  %-50s %4d / %-4d %8s\n", name, correct, total, "-");
}

char *qvl_report_score_table(const qvl_ocrbench_tally *t) {
    sbuf b = {0};
    int cc[QVL_OCRBENCH_CATEGORIES], ct[QVL_OCRBENCH_CATEGORIES];
    qvl_ocrbench_category_sums(t, cc, ct);
    sb_printf(&b, "Per category (correct / total):\n");
    for (int c = 0; c < QVL_OCRBENCH_CATEGORIES; c++) score_row(&b, qvl_ocrbench_categories[c], cc[c], ct[c]);
    if (t->other_total) score_row(&b, "(other types)", t->other_correct, t->other_total);
    if (qvl_ocrbench_is_full(t))
        sb_printf(&b, "  OCRBench final score: %d / 1000\n", qvl_ocrbench_tally_correct(t));
    sb_printf(&b, "Per type (correct / total):\n");
    for (int k = 0; k < QVL_OCRBENCH_TYPES; k++) score_row(&b, qvl_ocrbench_types[k], t->correct[k], t->total[k]);
    return sb_take(&b);
}

static cJSON *count_obj(int correct, int total) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "correct", correct);
    cJSON_AddNumberToObject(o, "total", total);
    return o;
}

void qvl_report_add_scores(cJSON *obj, const qvl_ocrbench_tally *t) {
    int cc[QVL_OCRBENCH_CATEGORIES], ct[QVL_OCRBENCH_CATEGORIES];
    qvl_ocrbench_category_sums(t, cc, ct);
    cJSON *cats = cJSON_AddObjectToObject(obj, "categories");
    for (int c = 0; c < QVL_OCRBENCH_CATEGORIES; c++)
        cJSON_AddItemToObject(cats, qvl_ocrbench_categories[c], count_obj(cc[c], ct[c]));
    cJSON *types = cJSON_AddObjectToObject(obj, "types");
    for (int k = 0; k < QVL_OCRBENCH_TYPES; k++)
        cJSON_AddItemToObject(types, qvl_ocrbench_types[k], count_obj(t->correct[k], t->total[k]));
}

/* The numbers both report forms print: the score tally over all samples (a skipped one counts as
 * wrong), and statistics over the samples that ran (status "ok"). */
typedef struct {
    qvl_ocrbench_tally tally;
    int correct;
    double accuracy;       /* percent of all samples */
    long ran, skipped;
    double lat_mean, lat_p50, lat_p95, ttft_mean;
    double prompt_mean, image_mean, gen_mean;
    int prompt_max, image_max, gen_max;
} run_stats;

static void compute_stats(const qvl_report_input *in, run_stats *s) {
    memset(s, 0, sizeof *s);
    qvl_report_tally(in, &s->tally);
    s->correct = qvl_ocrbench_tally_correct(&s->tally);
    s->accuracy = in->n_samples ? 100.0 * s->correct / (double)in->n_samples : 0.0;
    double *lat = malloc(((size_t)in->n_samples + 1) * sizeof *lat);
    double sum_lat = 0, sum_ttft = 0, sum_p = 0, sum_i = 0, sum_g = 0;
    for (long i = 0; i < in->n_samples; i++) {
        const qvl_eval_record *r = in->records[i];
        if (r->skipped) {
            s->skipped++;
            continue;
        }
        lat[s->ran++] = r->latency_s;
        sum_lat += r->latency_s;
        sum_ttft += r->ttft_s;
        sum_p += r->prompt_tokens;
        sum_i += r->image_tokens;
        sum_g += r->generated_tokens;
        if (r->prompt_tokens > s->prompt_max) s->prompt_max = r->prompt_tokens;
        if (r->image_tokens > s->image_max) s->image_max = r->image_tokens;
        if (r->generated_tokens > s->gen_max) s->gen_max = r->generated_tokens;
    }
    if (s->ran) {
        double n = (double)s->ran;
        s->lat_mean = sum_lat / n;
        s->ttft_mean = sum_ttft / n;
        s->prompt_mean = sum_p / n;
        s->image_mean = sum_i / n;
        s->gen_mean = sum_g / n;
        s->lat_p50 = qvl_percentile(lat, s->ran, 50);
        s->lat_p95 = qvl_percentile(lat, s->ran, 95);
    }
    free(lat);
}

static void print_setting(sbuf *b, const cJSON *it) {
    if (cJSON_IsString(it)) {
        sb_printf(b, "  %s: %s\n", it->string, it->valuestring);
    } else {
        char *v = cJSON_PrintUnformatted(it);
        sb_printf(b, "  %s: %s\n", it->string, v ? v : "?");
        cJSON_free(v);
    }
}

char *qvl_report_text(const qvl_report_input *in) {
    sbuf b = {0};
    run_stats s;
    compute_stats(in, &s);
    long n = in->n_samples;
    double speed = in->total_time_s > 0 ? (double)n / in->total_time_s : 0.0;

    static const char *rule = "==============================";
    sb_printf(&b, "%s\nEVALUATION REPORT: %s\nDate: %s\n%s\n", rule, in->model, in->date, rule);
    sb_printf(&b, "Total Samples: %ld\n", n);
    sb_printf(&b, "Accuracy: %.2f%%\n", s.accuracy);
    sb_printf(&b, "Total Time: %.2f s\n", in->total_time_s);
    sb_printf(&b, "Average Speed: %.2f samples/s\n", speed);
    sb_printf(&b, "Average Latency: %.4f s/sample\n", s.lat_mean);
    sb_printf(&b, "Peak Memory (Used): %.2f MB\n", in->peak_memory_mib > 0 ? in->peak_memory_mib : 0.0);
    sb_printf(&b, "%s\n", rule);

    if (s.skipped) {
        sb_printf(&b, "Skipped: %ld of %ld samples (counted as wrong)\n", s.skipped, n);
        for (long i = 0; i < n; i++)
            if (in->records[i]->skipped)
                sb_printf(&b, "  index %ld: %s\n", in->records[i]->index,
                          in->records[i]->reason ? in->records[i]->reason : "(no reason recorded)");
    }
    sb_printf(&b, "Latency: p50 %.4f s, p95 %.4f s; time to first token: mean %.4f s\n", s.lat_p50,
              s.lat_p95, s.ttft_mean);
    if (in->load_s >= 0)
        sb_printf(&b, "Load: %.2f s, warm-up %.2f s (not in Total Time)\n", in->load_s,
                  in->warmup_s > 0 ? in->warmup_s : 0.0);
    if (in->resumed)
        sb_printf(&b, "Resumed: %ld samples came from an earlier run (Total Time adds their recorded wall time)\n",
                  in->resumed);

    char *table = qvl_report_score_table(&s.tally);
    if (table) sb_printf(&b, "\n%s", table);
    else b.oom = 1;
    free(table);

    sb_printf(&b, "\nMemory (MiB)%s:\n", in->device_is_cpu ? "; the plan is for the GPU path, this run used the CPU" : "");
    if (in->memory_plan_mib && cJSON_GetArraySize(in->memory_plan_mib) > 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, in->memory_plan_mib) {
            if (cJSON_IsNumber(it)) sb_printf(&b, "  plan %-20s %10.2f\n", it->string, it->valuedouble);
        }
    } else if (in->planned_memory_mib > 0) {
        sb_printf(&b, "  plan %-20s %10.2f\n", "total", in->planned_memory_mib);
    } else {
        sb_printf(&b, "  plan: not available\n");
    }
    const char *measure = in->peak_measure ? in->peak_measure
                          : in->device_is_cpu ? "peak resident set" : "device memory of this process";
    sb_printf(&b, "  %-25s %10.2f  (%s)\n", "measured peak", in->peak_memory_mib > 0 ? in->peak_memory_mib : 0.0,
              measure);
    if (!in->device_is_cpu && in->peak_memory_mib > 0 && in->planned_memory_mib > 0)
        sb_printf(&b, "  %-25s %10.2f  (%+.2f%% of the measured peak)\n", "plan - measured",
                  in->planned_memory_mib - in->peak_memory_mib,
                  100.0 * (in->planned_memory_mib - in->peak_memory_mib) / in->peak_memory_mib);
    if (in->cuda_used_peak_mib > 0)
        sb_printf(&b, "  %-25s %10.2f  (cudaMemGetInfo: all processes on the device)\n", "device used peak",
                  in->cuda_used_peak_mib);
    if (in->plan_note) sb_printf(&b, "  plan: %s\n", in->plan_note);
    if (in->memory_budget_mib > 0) sb_printf(&b, "  %-25s %10.2f\n", "budget (--gpu-mem)", in->memory_budget_mib);

    sb_printf(&b, "\nSettings:\n");
    sb_printf(&b, "  device: %s%s\n", in->device ? in->device : "?",
              in->device_is_cpu ? " (Peak Memory is the peak resident set size)" : "");
    sb_printf(&b, "  data: %s\n", in->data ? in->data : "?");
    if (in->settings) {
        const cJSON *it;
        cJSON_ArrayForEach(it, in->settings) {
            if (strcmp(it->string, "model") && strcmp(it->string, "data")) print_setting(&b, it);
        }
    }
    sb_printf(&b, "\nTokens (over %ld samples that ran): prompt mean %.1f max %d; image mean %.1f max %d; "
              "generated mean %.1f max %d\n",
              s.ran, s.prompt_mean, s.prompt_max, s.image_mean, s.image_max, s.gen_mean, s.gen_max);
    return sb_take(&b);
}

static double r6(double x) { return round(x * 1e6) / 1e6; }

static cJSON *stat_obj(double mean, int max) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "mean", r6(mean));
    cJSON_AddNumberToObject(o, "max", max);
    return o;
}

cJSON *qvl_report_summary(const qvl_report_input *in) {
    run_stats s;
    compute_stats(in, &s);
    long n = in->n_samples;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", in->model ? in->model : "");
    cJSON_AddStringToObject(j, "data", in->data ? in->data : "");
    cJSON_AddStringToObject(j, "date", in->date ? in->date : "");
    cJSON_AddStringToObject(j, "device", in->device ? in->device : "");
    cJSON_AddItemToObject(j, "settings", in->settings ? cJSON_Duplicate(in->settings, 1) : cJSON_CreateObject());
    cJSON_AddNumberToObject(j, "total_samples", (double)n);
    cJSON_AddNumberToObject(j, "scored", (double)s.ran);
    cJSON_AddNumberToObject(j, "skipped", (double)s.skipped);
    cJSON_AddNumberToObject(j, "correct", s.correct);
    cJSON_AddNumberToObject(j, "accuracy", r6(s.accuracy));
    if (qvl_ocrbench_is_full(&s.tally)) cJSON_AddNumberToObject(j, "ocrbench_score", s.correct);
    else cJSON_AddNullToObject(j, "ocrbench_score");
    qvl_report_add_scores(j, &s.tally);
    cJSON_AddNumberToObject(j, "total_time_s", r6(in->total_time_s));
    cJSON_AddNumberToObject(j, "samples_per_s", r6(in->total_time_s > 0 ? (double)n / in->total_time_s : 0.0));
    cJSON *lat = cJSON_AddObjectToObject(j, "latency_s");
    cJSON_AddNumberToObject(lat, "mean", r6(s.lat_mean));
    cJSON_AddNumberToObject(lat, "p50", r6(s.lat_p50));
    cJSON_AddNumberToObject(lat, "p95", r6(s.lat_p95));
    cJSON *ttft = cJSON_AddObjectToObject(j, "ttft_s");
    cJSON_AddNumberToObject(ttft, "mean", r6(s.ttft_mean));
    cJSON *mem = cJSON_AddObjectToObject(j, "peak_memory_mib");
    cJSON_AddNumberToObject(mem, "used", in->peak_memory_mib > 0 ? r6(in->peak_memory_mib) : 0.0);
    if (in->planned_memory_mib > 0) cJSON_AddNumberToObject(mem, "planned", r6(in->planned_memory_mib));
    else cJSON_AddNullToObject(mem, "planned");
    cJSON_AddStringToObject(j, "peak_memory_measure", in->peak_measure ? in->peak_measure
                                                      : in->device_is_cpu ? "peak resident set" : "device memory");
    cJSON_AddItemToObject(j, "memory_plan_mib",
                          in->memory_plan_mib ? cJSON_Duplicate(in->memory_plan_mib, 1) : cJSON_CreateObject());
    cJSON *tok = cJSON_AddObjectToObject(j, "tokens");
    cJSON_AddItemToObject(tok, "prompt", stat_obj(s.prompt_mean, s.prompt_max));
    cJSON_AddItemToObject(tok, "image", stat_obj(s.image_mean, s.image_max));
    cJSON_AddItemToObject(tok, "generated", stat_obj(s.gen_mean, s.gen_max));
    cJSON_AddNumberToObject(j, "load_s", r6(in->load_s > 0 ? in->load_s : 0.0));
    cJSON_AddNumberToObject(j, "warmup_s", r6(in->warmup_s > 0 ? in->warmup_s : 0.0));
    cJSON_AddNumberToObject(j, "resumed", (double)in->resumed);
    return j;
}

static double r2(double x) { return round(x * 100) / 100; }

cJSON *qvl_report_plan_object(const qvl_memory_info *m) {
    if (!m || !m->has_plan) return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "cuda_context", r2(m->plan_cuda_context));
    cJSON_AddNumberToObject(o, "weights", r2(m->plan_weights));
    cJSON_AddNumberToObject(o, "kv_cache", r2(m->plan_kv_cache));
    cJSON_AddNumberToObject(o, "vision_activations", r2(m->plan_vision_activations));
    cJSON_AddNumberToObject(o, "workspace", r2(m->plan_workspace));
    cJSON_AddNumberToObject(o, "total", r2(m->plan_total));
    return o;
}

/* 1 when the GPU figure is the cudaMemGetInfo fallback: m->note then says why NVML was not used. */
static int nvml_missing(const qvl_memory_info *m) {
    return m->has_plan && m->peak_measure && !strncmp(m->peak_measure, "cudaMemGetInfo", 14) && m->note && m->note[0];
}

void qvl_report_memory_line(char *buf, size_t len, const qvl_memory_info *m) {
    int n = snprintf(buf, len, "peak %.0f MiB (%s)", m->peak_mib, m->peak_measure ? m->peak_measure : "?");
    if (m->has_plan && n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, ", plan %.0f MiB (%+.1f%%)", m->plan_total,
                      m->peak_mib > 0 ? 100.0 * (m->plan_total - m->peak_mib) / m->peak_mib : 0.0);
    if (nvml_missing(m) && n > 0 && (size_t)n < len) snprintf(buf + n, len - (size_t)n, "; %s", m->note);
}

int qvl_report_write_json(const char *path, const cJSON *j) {
    char *text = cJSON_Print(j);
    if (!text) return qvl_errorf("%s: out of memory", path);
    size_t n = strlen(text);
    char *buf = malloc(n + 2);
    if (!buf) {
        cJSON_free(text);
        return qvl_errorf("%s: out of memory", path);
    }
    memcpy(buf, text, n);
    buf[n] = '\n';
    int rc = qvl_write_file_atomic(path, buf, n + 1);
    free(buf);
    cJSON_free(text);
    return rc;
}
