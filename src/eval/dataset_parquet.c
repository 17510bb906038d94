/* The Hugging Face export of OCRBench (echo840/OCRBench): parquet with columns dataset, question,
 * question_type, answer (list<string>), image (struct{bytes, path}). A folder's .parquet files are
 * read in sorted path order and a sample's key is its row number across them. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eval/dataset_internal.h"
#include "io/parquet.h"
#include "util/error.h"
#include "util/file.h"

typedef struct {
    char **paths;
    int n, cap;
} file_list;

static int list_add(file_list *l, char *p) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        char **np = realloc(l->paths, (size_t)cap * sizeof *np);
        if (!np) return -1;
        l->paths = np;
        l->cap = cap;
    }
    l->paths[l->n++] = p;
    return 0;
}

/* All *.parquet files under dir (subfolders too, as in a downloaded dataset repository). */
static int collect(const char *dir, file_list *l, int depth) {
    DIR *d = opendir(dir);
    if (!d) return qvl_errorf("%s: cannot open folder", dir);
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = qvl_path_join(dir, e->d_name);
        if (!p) { rc = qvl_errorf("%s: out of memory", dir); break; }
        size_t n = strlen(e->d_name);
        if (qvl_is_dir(p)) {
            if (depth < 4) rc = collect(p, l, depth + 1);
            free(p);
        } else if (n > 8 && !strcasecmp(e->d_name + n - 8, ".parquet")) {
            if (list_add(l, p)) { free(p); rc = qvl_errorf("%s: out of memory", dir); }
        } else free(p);
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The leaf of a top-level field (one of the names given), or -1. */
static int top_level_leaf(const qvl_parquet *pq, const char *const *names, int *count) {
    int found = -1;
    *count = 0;
    for (int n = 0; names[n] && found < 0; n++) {
        size_t len = strlen(names[n]);
        for (int c = 0; c < qvl_parquet_num_columns(pq); c++) {
            const char *p = qvl_parquet_column_path(pq, c);
            if (!strncmp(p, names[n], len) && (p[len] == 0 || p[len] == '.')) {
                if (found < 0) found = c;
                (*count)++;
            }
        }
    }
    return found;
}

static int missing_column(const qvl_parquet *pq, const char *path, const char *name) {
    char cols[512];
    size_t k = 0;
    cols[0] = 0;
    for (int c = 0; c < qvl_parquet_num_columns(pq) && k < sizeof cols - 64; c++)
        k += (size_t)snprintf(cols + k, sizeof cols - k, "%s%s", c ? ", " : "", qvl_parquet_column_path(pq, c));
    return qvl_errorf("%s: not an OCRBench parquet: missing column '%s' (it has: %s)", path, name, cols);
}

/* Row r of a non-repeated column: the index of its value, or -1 for null. *next_value counts the
 * values used so far (nulls take a level slot but no value). */
static long scalar_value(const qvl_parquet_column *c, int64_t row, int64_t *next_value) {
    int present = !c->def || c->def[row] == c->max_def;
    return present ? (long)(*next_value)++ : -1;
}

static int load_file(const char *path, int with_images, long *row_base, qvl_dataset *ds) {
    qvl_parquet *pq = qvl_parquet_open(path);
    if (!pq) return -1;
    static const char *const n_dataset[] = {"dataset", "dataset_name", NULL};
    static const char *const n_question[] = {"question", NULL};
    static const char *const n_type[] = {"question_type", "type", "category", NULL};
    static const char *const n_answer[] = {"answer", "answers", NULL};
    int cnt, rc = -1;
    int c_ds = top_level_leaf(pq, n_dataset, &cnt);
    int c_q = top_level_leaf(pq, n_question, &cnt);
    int c_type = top_level_leaf(pq, n_type, &cnt);
    int c_ans = top_level_leaf(pq, n_answer, &cnt);
    int n_ans_leaves = cnt;
    int c_img = qvl_parquet_find_column(pq, "image.bytes"), c_img_path = qvl_parquet_find_column(pq, "image.path");
    if (c_img < 0) c_img = qvl_parquet_find_column(pq, "image");
    qvl_parquet_column col[5] = {{0}};  /* dataset, question, type, answer, image bytes */
    int64_t rows = qvl_parquet_num_rows(pq);
    if (c_q < 0) { missing_column(pq, path, "question"); goto done; }
    if (c_type < 0) { missing_column(pq, path, "question_type"); goto done; }
    if (c_ans < 0) { missing_column(pq, path, "answer"); goto done; }
    if (with_images && c_img < 0) { missing_column(pq, path, "image"); goto done; }
    if (n_ans_leaves != 1) {
        qvl_errorf("%s: column 'answer' is not a string or a list of strings", path);
        goto done;
    }
    int want[5] = {c_ds, c_q, c_type, c_ans, with_images ? c_img : -1};
    const char *names[5] = {"dataset", "question", "question_type", "answer", "image"};
    for (int k = 0; k < 5; k++) {
        if (want[k] < 0) continue;
        if (qvl_parquet_read_column(pq, want[k], &col[k])) goto done;
        const qvl_parquet_column *c = &col[k];
        if (c->physical_type != QVL_PQ_BYTE_ARRAY || c->max_rep > (k == 3 ? 1 : 0)) {
            qvl_errorf("%s: column '%s' has an unexpected type (want %s)", path, qvl_parquet_column_path(pq, want[k]),
                       k == 3 ? "a list of strings" : k == 4 ? "binary" : "a string");
            goto done;
        }
        if (c->max_rep == 0 && c->n_levels != rows) {
            qvl_errorf("%s: column '%s' has %lld values for %lld rows", path, qvl_parquet_column_path(pq, want[k]),
                       (long long)c->n_levels, (long long)rows);
            goto done;
        }
    }
    /* answer rows: a row starts at each repetition level 0 */
    const qvl_parquet_column *ans = &col[3];
    int64_t ans_rows = 0;
    for (int64_t i = 0; i < ans->n_levels; i++) ans_rows += !ans->rep || ans->rep[i] == 0;
    if (ans_rows != rows || (ans->rep && ans->n_levels > 0 && ans->rep[0] != 0)) {
        qvl_errorf("%s: column 'answer' has %lld rows, the file %lld", path, (long long)ans_rows, (long long)rows);
        goto done;
    }
    int64_t next[5] = {0}, slot = 0;
    for (int64_t r = 0; r < rows; r++) {
        qvl_sample *s = qvl_dataset_add(ds);
        if (!s) goto done;
        s->index = *row_base + (long)r;
        char **dst[3] = {&s->dataset, &s->question, &s->type};
        for (int k = 0; k < 3; k++) {
            if (want[k] < 0) continue;
            long v = scalar_value(&col[k], r, &next[k]);
            if (v < 0) {
                if (k > 0) qvl_sample_set_error(s, "%s is null", names[k]);
                continue;
            }
            if (qvl_set_string(dst[k], (const char *)col[k].data + col[k].offsets[v],
                               (size_t)(col[k].offsets[v + 1] - col[k].offsets[v]))) {
                qvl_errorf("%s: out of memory", path);
                goto done;
            }
        }
        /* this row's answer slots: from slot up to the next repetition level 0 */
        int64_t end = slot + 1;
        while (ans->rep && end < ans->n_levels && ans->rep[end] != 0) end++;
        int n = 0;
        for (int64_t i = slot; i < end; i++) n += !ans->def || ans->def[i] == ans->max_def;
        if (n > 0 && !(s->answers = calloc((size_t)n, sizeof *s->answers))) {
            qvl_errorf("%s: out of memory", path);
            goto done;
        }
        for (int64_t i = slot; i < end; i++) {
            if (ans->def && ans->def[i] != ans->max_def) continue;
            int64_t v = next[3]++;
            char *a = NULL;
            if (qvl_set_string(&a, (const char *)ans->data + ans->offsets[v], (size_t)(ans->offsets[v + 1] - ans->offsets[v]))) {
                qvl_errorf("%s: out of memory", path);
                goto done;
            }
            s->answers[s->n_answers++] = a;
        }
        slot = end;
        if (n == 0) qvl_sample_set_error(s, "no answers (answer is null or empty)");
        if (want[4] >= 0) {
            long v = scalar_value(&col[4], r, &next[4]);
            if (v < 0) {
                qvl_sample_set_error(s, "image has no bytes%s", c_img_path >= 0 ? " (only a path)" : "");
            } else {
                size_t n_bytes = (size_t)(col[4].offsets[v + 1] - col[4].offsets[v]);
                if (!(s->image_data = malloc(n_bytes ? n_bytes : 1))) {
                    qvl_errorf("%s: out of memory", path);
                    goto done;
                }
                memcpy(s->image_data, col[4].data + col[4].offsets[v], n_bytes);
                s->image_size = n_bytes;
                if (n_bytes == 0) qvl_sample_set_error(s, "image is empty");
            }
        }
    }
    *row_base += (long)rows;
    rc = 0;
done:
    for (int k = 0; k < 5; k++) qvl_parquet_column_free(&col[k]);
    qvl_parquet_close(pq);
    return rc;
}

int qvl_dataset_load_parquet(const char *path, int with_images, qvl_dataset *ds) {
    file_list files = {0};
    int rc = 0;
    if (qvl_is_dir(path)) {
        rc = collect(path, &files, 0);
        if (!rc && files.n == 0) rc = qvl_errorf("%s: no .parquet files in this folder", path);
        if (!rc) qsort(files.paths, (size_t)files.n, sizeof *files.paths, cmp_str);
    } else {
        char *p = strdup(path);
        if (!p || list_add(&files, p)) {
            free(p);
            rc = qvl_errorf("%s: out of memory", path);
        }
    }
    long row_base = 0;
    for (int i = 0; i < files.n && !rc; i++) rc = load_file(files.paths[i], with_images, &row_base, ds);
    if (!rc && ds->n_samples == 0) rc = qvl_errorf("%s: no rows", path);
    for (int i = 0; i < files.n; i++) free(files.paths[i]);
    free(files.paths);
    return rc;
}
