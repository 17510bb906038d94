/* Format detection, dispatch to the loaders, and the sample container. */
#include "eval/dataset.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/dataset_internal.h"
#include "util/error.h"
#include "util/file.h"

const char *qvl_data_format_name(qvl_data_format format) {
    return format == QVL_DATA_JSON ? "json" : format == QVL_DATA_TSV ? "tsv" : "parquet";
}

int qvl_dataset_detect(const char *path, qvl_data_format *format) {
    if (qvl_is_dir(path)) {
        *format = QVL_DATA_PARQUET;
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        qvl_errorf("%s: cannot open", path);
        return -1;
    }
    char head[4096];
    size_t n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[n] = 0;
    if (n >= 4 && !memcmp(head, "PAR1", 4)) {
        *format = QVL_DATA_PARQUET;
        return 0;
    }
    size_t i = 0;
    if (n >= 3 && !memcmp(head, "\xEF\xBB\xBF", 3)) i = 3;  /* UTF-8 byte order mark */
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
    if (i < n && head[i] == '[') {
        *format = QVL_DATA_JSON;
        return 0;
    }
    const char *nl = memchr(head, '\n', n);
    const char *tab = memchr(head, '\t', nl ? (size_t)(nl - head) : n);
    if (tab) {
        *format = QVL_DATA_TSV;
        return 0;
    }
    return qvl_errorf("%s: unrecognized data format (expected an OCRBench.json array, a VLMEvalKit .tsv, "
                      "or a .parquet file or folder)", path);
}

int qvl_dataset_load(const char *path, const char *images_dir, int with_images, qvl_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    qvl_data_format format;
    if (qvl_dataset_detect(path, &format)) return -1;
    ds->format = format;
    if (!(ds->source = strdup(path))) return qvl_errorf("%s: out of memory", path);
    int rc = format == QVL_DATA_JSON  ? qvl_dataset_load_json(path, images_dir, with_images, ds)
             : format == QVL_DATA_TSV ? qvl_dataset_load_tsv(path, with_images, ds)
                                      : qvl_dataset_load_parquet(path, with_images, ds);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", qvl_error());
        qvl_dataset_free(ds);
        return qvl_errorf("%s", msg);
    }
    return 0;
}

void qvl_sample_clear(qvl_sample *s) {
    free(s->dataset);
    free(s->type);
    free(s->question);
    for (int i = 0; i < s->n_answers; i++) free(s->answers[i]);
    free(s->answers);
    free(s->image_path);
    free(s->image_data);
    free(s->error);
    memset(s, 0, sizeof *s);
}

void qvl_dataset_free(qvl_dataset *ds) {
    if (!ds) return;
    for (long i = 0; i < ds->n_samples; i++) qvl_sample_clear(&ds->samples[i]);
    free(ds->samples);
    free(ds->source);
    memset(ds, 0, sizeof *ds);
}

const qvl_sample *qvl_dataset_find(const qvl_dataset *ds, long index) {
    /* JSON and parquet keys are positions; TSV keys usually are too */
    if (index >= 0 && index < ds->n_samples && ds->samples[index].index == index) return &ds->samples[index];
    for (long i = 0; i < ds->n_samples; i++)
        if (ds->samples[i].index == index) return &ds->samples[i];
    return NULL;
}

long qvl_dataset_count_errors(const qvl_dataset *ds) {
    long n = 0;
    for (long i = 0; i < ds->n_samples; i++) n += ds->samples[i].error != NULL;
    return n;
}

qvl_sample *qvl_dataset_add(qvl_dataset *ds) {
    long n = ds->n_samples;
    if (n == 0 || (n >= 16 && (n & (n - 1)) == 0)) {  /* capacity: 16, then doubling */
        long cap = n == 0 ? 16 : n * 2;
        qvl_sample *ns = realloc(ds->samples, (size_t)cap * sizeof *ns);
        if (!ns) {
            qvl_errorf("%s: out of memory", ds->source);
            return NULL;
        }
        ds->samples = ns;
    }
    qvl_sample *s = &ds->samples[n];
    memset(s, 0, sizeof *s);
    s->index = -1;
    s->dataset = strdup("");
    s->type = strdup("");
    s->question = strdup("");
    ds->n_samples++;
    if (!s->dataset || !s->type || !s->question) {
        qvl_errorf("%s: out of memory", ds->source);
        return NULL;
    }
    return s;
}

void qvl_sample_set_error(qvl_sample *s, const char *fmt, ...) {
    if (s->error) return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s->error, fmt, ap) < 0) s->error = NULL;
    va_end(ap);
    if (!s->error) s->error = strdup("out of memory");
}

int qvl_set_string(char **dst, const char *src, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return -1;
    memcpy(d, src, n);
    d[n] = 0;
    free(*dst);
    *dst = d;
    return 0;
}
