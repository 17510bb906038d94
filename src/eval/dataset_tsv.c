/* VLMEvalKit's OCRBench.tsv: pandas to_csv(sep='\t') output (a field holding a tab, newline or '"'
 * is double-quoted with "" for '"'), header row, columns index, image (base64, or for a repeated
 * image the index of the row holding it), question, answer (str() of a Python list), category. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/dataset_internal.h"
#include "eval/pylit.h"
#include "util/base64.h"
#include "util/error.h"
#include "util/file.h"

typedef struct {
    char *p;     /* into the file buffer (unquoted in place) */
    size_t len;
} field;

typedef struct {
    field *f;
    int n, cap;
} record;

/* Reads the record starting at *pos: fields split at tabs, up to an unquoted newline. Quoted
 * fields are unescaped in place. Returns 0, 1 at end of input, or -1 for an unterminated quote.
 * *line counts newlines passed. */
static int next_record(char *buf, size_t len, size_t *pos, record *r, long *line) {
    size_t i = *pos;
    r->n = 0;
    if (i >= len) return 1;
    for (;;) {
        if (r->n == r->cap) {
            int cap = r->cap ? r->cap * 2 : 16;
            field *nf = realloc(r->f, (size_t)cap * sizeof *nf);
            if (!nf) return -2;
            r->f = nf;
            r->cap = cap;
        }
        field *f = &r->f[r->n++];
        f->p = buf + i;
        if (i < len && buf[i] == '"') {
            size_t w = ++i;
            f->p = buf + w;
            for (;;) {
                if (i >= len) return -1;
                if (buf[i] == '"') {
                    if (i + 1 < len && buf[i + 1] == '"') {
                        buf[w++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (buf[i] == '\n') (*line)++;
                buf[w++] = buf[i++];
            }
            /* text after the closing quote belongs to the field (as Python's csv reads it) */
            while (i < len && buf[i] != '\t' && buf[i] != '\n' && !(buf[i] == '\r' && (i + 1 == len || buf[i + 1] == '\n')))
                buf[w++] = buf[i++];
            f->len = w - (size_t)(f->p - buf);
        } else {
            while (i < len && buf[i] != '\t' && buf[i] != '\n' && !(buf[i] == '\r' && (i + 1 == len || buf[i + 1] == '\n'))) i++;
            f->len = (size_t)(buf + i - f->p);
        }
        if (i < len && buf[i] == '\t') {
            i++;
            continue;
        }
        if (i < len && buf[i] == '\r') i++;
        if (i < len && buf[i] == '\n') {
            i++;
            (*line)++;
        }
        *pos = i;
        return 0;
    }
}

static int find_col(const record *h, const char *name) {
    for (int i = 0; i < h->n; i++)
        if (h->f[i].len == strlen(name) && !memcmp(h->f[i].p, name, h->f[i].len)) return i;
    return -1;
}

static int parse_index(const field *f, long *out) {
    char tmp[32];
    if (f->len == 0 || f->len >= sizeof tmp) return -1;
    memcpy(tmp, f->p, f->len);
    tmp[f->len] = 0;
    char *end;
    long v = strtol(tmp, &end, 10);
    if (*end) return -1;
    *out = v;
    return 0;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* VLMEvalKit stores a repeated image once: the other rows' image field is that row's index
 * (it treats any field of at most 64 characters so; we also require an integer). */
static int is_reference(const field *f, long *ref) { return f->len <= 64 && parse_index(f, ref) == 0; }

/* Image of every sample: decode base64, following "index" references to the row holding the bytes. */
static void decode_images(qvl_dataset *ds, field *images) {
    for (long i = 0; i < ds->n_samples; i++) {
        qvl_sample *s = &ds->samples[i];
        field *f = &images[i];
        if (!f->p) continue;  /* a line with the wrong number of fields */
        long ref;
        if (is_reference(f, &ref)) {
            const qvl_sample *t = qvl_dataset_find(ds, ref);
            field *tf = t ? &images[t - ds->samples] : NULL;
            if (!tf || !tf->p || is_reference(tf, &ref)) {
                qvl_sample_set_error(s, "image field '%.*s' is neither base64 nor the index of a row with an image",
                                     (int)f->len, f->p);
                continue;
            }
            f = tf;
        }
        size_t n;
        s->image_data = qvl_base64_decode(f->p, f->len, &n);
        if (s->image_data) s->image_size = n;
        else qvl_sample_set_error(s, "image: %s", qvl_error());
    }
}

int qvl_dataset_load_tsv(const char *path, int with_images, qvl_dataset *ds) {
    size_t len;
    char *buf = qvl_read_file(path, &len);
    if (!buf) return -1;
    record hdr = {0}, row = {0};
    field *images = NULL;
    long *keys = NULL;
    int rc = -1;
    size_t pos = 0;
    long line = 1;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) pos = 3;
    int st = next_record(buf, len, &pos, &hdr, &line);
    if (st) {
        qvl_errorf(st == -2 ? "%s: out of memory" : "%s: empty or malformed TSV header", path);
        goto done;
    }
    int c_index = find_col(&hdr, "index"), c_image = find_col(&hdr, "image"), c_q = find_col(&hdr, "question");
    int c_ans = find_col(&hdr, "answer"), c_cat = find_col(&hdr, "category");
    int c_ds = find_col(&hdr, "dataset_name") >= 0 ? find_col(&hdr, "dataset_name") : find_col(&hdr, "dataset");
    const char *missing = c_index < 0 ? "index" : c_q < 0 ? "question" : c_ans < 0 ? "answer"
                          : c_cat < 0 ? "category" : (with_images && c_image < 0) ? "image" : NULL;
    if (missing) {
        qvl_errorf("%s: not a VLMEvalKit OCRBench TSV: no '%s' column in the header", path, missing);
        goto done;
    }
    size_t images_cap = 0;
    for (;;) {
        long start_line = line;
        st = next_record(buf, len, &pos, &row, &line);
        if (st == 1) break;
        if (st == -2) { qvl_errorf("%s: out of memory", path); goto done; }
        if (st == -1) {
            qvl_errorf("%s: line %ld: unterminated quoted field (runs to the end of the file)", path, start_line);
            goto done;
        }
        if (row.n == 1 && row.f[0].len == 0) continue;  /* blank line (pandas skips them too) */
        qvl_sample *s = qvl_dataset_add(ds);
        if (!s) goto done;
        if ((size_t)ds->n_samples > images_cap) {
            size_t cap = images_cap ? images_cap * 2 : 64;
            field *ni = realloc(images, cap * sizeof *ni);
            if (!ni) { qvl_errorf("%s: out of memory", path); goto done; }
            images = ni;
            images_cap = cap;
        }
        field *img = &images[ds->n_samples - 1];
        img->p = NULL;
        img->len = 0;
        if (c_index < row.n && parse_index(&row.f[c_index], &s->index))
            qvl_sample_set_error(s, "line %ld: index '%.*s' is not an integer", start_line,
                                 (int)(row.f[c_index].len > 40 ? 40 : row.f[c_index].len), row.f[c_index].p);
        if (row.n != hdr.n) {
            qvl_sample_set_error(s, "line %ld: %d fields, the header has %d", start_line, row.n, hdr.n);
            continue;
        }
        if (qvl_set_string(&s->question, row.f[c_q].p, row.f[c_q].len) ||
            qvl_set_string(&s->type, row.f[c_cat].p, row.f[c_cat].len) ||
            (c_ds >= 0 && qvl_set_string(&s->dataset, row.f[c_ds].p, row.f[c_ds].len))) {
            qvl_errorf("%s: out of memory", path);
            goto done;
        }
        field *a = &row.f[c_ans];
        char saved = a->p[a->len];  /* NUL-terminate in place for the literal parser */
        a->p[a->len] = 0;
        char **answers;
        int n = qvl_pylit_string_list(a->p, &answers);
        a->p[a->len] = saved;
        if (n < 0) qvl_sample_set_error(s, "line %ld: answer: %s", start_line, qvl_error());
        else {
            s->answers = answers;
            s->n_answers = n;
        }
        if (with_images) *img = row.f[c_image];
    }
    if (ds->n_samples == 0) {
        qvl_errorf("%s: no samples after the header", path);
        goto done;
    }
    /* keys must be unique: resume and scoring look samples up by them */
    keys = malloc((size_t)ds->n_samples * sizeof *keys);
    if (!keys) { qvl_errorf("%s: out of memory", path); goto done; }
    long nk = 0;
    for (long i = 0; i < ds->n_samples; i++)
        if (ds->samples[i].index >= 0 || !ds->samples[i].error) keys[nk++] = ds->samples[i].index;
    qsort(keys, (size_t)nk, sizeof *keys, cmp_long);
    for (long i = 1; i < nk; i++)
        if (keys[i] == keys[i - 1]) {
            qvl_errorf("%s: duplicate index %ld", path, keys[i]);
            goto done;
        }
    if (with_images) decode_images(ds, images);
    rc = 0;
done:
    free(keys);
    free(images);
    free(hdr.f);
    free(row.f);
    free(buf);
    return rc;
}
