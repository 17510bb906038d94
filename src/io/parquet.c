/* Parquet file structure: "PAR1" magic at both ends, the thrift-encoded FileMetaData footer
 * (schema, row groups, column chunk locations) just before the trailing length and magic. */
#include "io/parquet.h"

#include <stdlib.h>
#include <string.h>

#include "io/parquet_internal.h"
#include "io/thrift.h"
#include "util/error.h"
#include "util/file.h"

enum { REP_REQUIRED, REP_OPTIONAL, REP_REPEATED };

typedef struct {
    char *name;
    int type;          /* -1 for groups */
    int type_length;
    int repetition;
    int num_children;
} schema_element;

const char *qvl_parquet_codec_name(int codec) {
    static const char *names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"};
    return codec >= 0 && codec < 8 ? names[codec] : "UNKNOWN";
}

const char *qvl_parquet_encoding_name(int encoding) {
    static const char *names[] = {"PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED",
                                  "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
                                  "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
    return encoding >= 0 && encoding < 10 ? names[encoding] : "UNKNOWN";
}

static char *dup_bytes(const uint8_t *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static void read_schema_element(qvl_thrift *t, schema_element *e) {
    e->type = -1;
    e->repetition = REP_REQUIRED;
    int16_t last = 0, id;
    int ft;
    if (!qvl_thrift_enter(t)) return;
    while (qvl_thrift_field(t, &last, &id, &ft)) {
        if (id == 1) e->type = (int)qvl_thrift_int(t, ft);
        else if (id == 2) e->type_length = (int)qvl_thrift_int(t, ft);
        else if (id == 3) e->repetition = (int)qvl_thrift_int(t, ft);
        else if (id == 4 && ft == QVL_THRIFT_BINARY) {
            size_t n;
            const uint8_t *s = qvl_thrift_binary(t, &n);
            if (s && !e->name && !(e->name = dup_bytes(s, n))) t->error = "out of memory";
        } else if (id == 5) e->num_children = (int)qvl_thrift_int(t, ft);
        else qvl_thrift_skip(t, ft);
    }
    qvl_thrift_leave(t);
}

static void read_column_meta(qvl_thrift *t, pq_chunk *c) {
    int16_t last = 0, id;
    int ft;
    if (!qvl_thrift_enter(t)) return;
    c->has_meta = 1;
    while (qvl_thrift_field(t, &last, &id, &ft)) {
        if (id == 1) c->physical_type = (int)qvl_thrift_int(t, ft);
        else if (id == 4) c->codec = (int)qvl_thrift_int(t, ft);
        else if (id == 5) c->num_values = qvl_thrift_int(t, ft);
        else if (id == 7) c->total_compressed_size = qvl_thrift_int(t, ft);
        else if (id == 9) c->data_page_offset = qvl_thrift_int(t, ft);
        else if (id == 11) c->dictionary_page_offset = qvl_thrift_int(t, ft);
        else qvl_thrift_skip(t, ft);
    }
    qvl_thrift_leave(t);
}

static void read_column_chunk(qvl_thrift *t, pq_chunk *c) {
    int16_t last = 0, id;
    int ft;
    c->dictionary_page_offset = -1;
    if (!qvl_thrift_enter(t)) return;
    while (qvl_thrift_field(t, &last, &id, &ft)) {
        if (id == 1) {
            c->external = 1;
            qvl_thrift_skip(t, ft);
        } else if (id == 3 && ft == QVL_THRIFT_STRUCT) read_column_meta(t, c);
        else if (id == 8 || id == 9) {
            c->encrypted = 1;
            qvl_thrift_skip(t, ft);
        } else qvl_thrift_skip(t, ft);
    }
    qvl_thrift_leave(t);
}

static void read_row_group(qvl_thrift *t, pq_row_group *g) {
    int16_t last = 0, id;
    int ft;
    if (!qvl_thrift_enter(t)) return;
    while (qvl_thrift_field(t, &last, &id, &ft)) {
        if (id == 1 && ft == QVL_THRIFT_LIST && !g->chunks) {
            int et;
            int64_t n;
            if (!qvl_thrift_list(t, &et, &n)) break;
            if (et != QVL_THRIFT_STRUCT) { t->error = "corrupt row group"; break; }
            g->chunks = calloc((size_t)n + 1, sizeof *g->chunks);
            if (!g->chunks) { t->error = "out of memory"; break; }
            g->n_chunks = (int)n;
            for (int64_t i = 0; i < n && !t->error; i++) read_column_chunk(t, &g->chunks[i]);
        } else if (id == 3) g->num_rows = qvl_thrift_int(t, ft);
        else qvl_thrift_skip(t, ft);
    }
    qvl_thrift_leave(t);
}

/* Depth-first walk of the flattened schema, computing each leaf's path and maximum levels. */
static int walk_schema(qvl_parquet *pq, schema_element *el, int n_el, int *i, const char *prefix,
                       int def, int rep, int depth) {
    if (*i >= n_el || depth > 32) return qvl_errorf("%s: corrupt schema", pq->path);
    schema_element *e = &el[(*i)++];
    if (!e->name) return qvl_errorf("%s: corrupt schema (element without a name)", pq->path);
    if (e->repetition == REP_OPTIONAL) def++;
    else if (e->repetition == REP_REPEATED) def++, rep++;
    size_t plen = strlen(prefix), nlen = strlen(e->name);
    char *path = malloc(plen + nlen + 2);
    if (!path) return qvl_errorf("%s: out of memory", pq->path);
    if (plen) {
        memcpy(path, prefix, plen);
        path[plen] = '.';
        memcpy(path + plen + 1, e->name, nlen + 1);
    } else memcpy(path, e->name, nlen + 1);
    if (e->num_children > 0) {
        for (int c = 0; c < e->num_children; c++)
            if (walk_schema(pq, el, n_el, i, path, def, rep, depth + 1)) { free(path); return -1; }
        free(path);
        return 0;
    }
    if (e->type < 0) { free(path); return qvl_errorf("%s: corrupt schema (leaf without a type)", pq->path); }
    pq_leaf *leaf = &pq->leaves[pq->n_leaves++];
    leaf->path = path;
    leaf->physical_type = e->type;
    leaf->type_length = e->type_length;
    leaf->max_def = def;
    leaf->max_rep = rep;
    return 0;
}

static int read_footer(qvl_parquet *pq, const uint8_t *p, size_t n) {
    qvl_thrift t = {p, p + n, NULL, 0};
    schema_element *el = NULL;
    int64_t n_el = 0;
    int encrypted = 0, rc = -1;
    int16_t last = 0, id;
    int ft;
    while (qvl_thrift_field(&t, &last, &id, &ft)) {
        if (id == 2 && ft == QVL_THRIFT_LIST && !el) {
            int et;
            if (!qvl_thrift_list(&t, &et, &n_el)) break;
            if (et != QVL_THRIFT_STRUCT || n_el < 2) { t.error = "corrupt schema"; break; }
            el = calloc((size_t)n_el, sizeof *el);
            if (!el) { t.error = "out of memory"; break; }
            for (int64_t i = 0; i < n_el && !t.error; i++) read_schema_element(&t, &el[i]);
        } else if (id == 3) pq->num_rows = qvl_thrift_int(&t, ft);
        else if (id == 4 && ft == QVL_THRIFT_LIST && !pq->groups) {
            int et;
            int64_t ng;
            if (!qvl_thrift_list(&t, &et, &ng)) break;
            if (et != QVL_THRIFT_STRUCT) { t.error = "corrupt row group list"; break; }
            pq->groups = calloc((size_t)ng + 1, sizeof *pq->groups);
            if (!pq->groups) { t.error = "out of memory"; break; }
            pq->n_groups = (int)ng;
            for (int64_t i = 0; i < ng && !t.error; i++) read_row_group(&t, &pq->groups[i]);
        } else if (id == 8) {
            encrypted = 1;
            qvl_thrift_skip(&t, ft);
        } else qvl_thrift_skip(&t, ft);
    }
    if (t.error) {
        qvl_errorf("%s: corrupt parquet footer (%s)", pq->path, t.error);
        goto done;
    }
    if (encrypted) {
        qvl_errorf("%s: encrypted parquet files are not supported", pq->path);
        goto done;
    }
    if (!el) {
        qvl_errorf("%s: corrupt parquet footer (no schema)", pq->path);
        goto done;
    }
    pq->leaves = calloc((size_t)n_el, sizeof *pq->leaves);
    if (!pq->leaves) {
        qvl_errorf("%s: out of memory", pq->path);
        goto done;
    }
    /* element 0 is the root: its children are the top-level columns */
    int i = 1;
    for (int c = 0; c < el[0].num_children; c++)
        if (walk_schema(pq, el, (int)n_el, &i, "", 0, 0, 0)) goto done;
    if (i != n_el) {
        qvl_errorf("%s: corrupt schema (%d of %lld elements used)", pq->path, i, (long long)n_el);
        goto done;
    }
    for (int g = 0; g < pq->n_groups; g++)
        if (pq->groups[g].n_chunks != pq->n_leaves) {
            qvl_errorf("%s: row group %d has %d column chunks, the schema %d columns", pq->path, g,
                       pq->groups[g].n_chunks, pq->n_leaves);
            goto done;
        }
    rc = 0;
done:
    for (int64_t k = 0; el && k < n_el; k++) free(el[k].name);
    free(el);
    return rc;
}

qvl_parquet *qvl_parquet_open(const char *path) {
    qvl_parquet *pq = calloc(1, sizeof *pq);
    if (!pq || !(pq->path = strdup(path))) {
        free(pq);
        qvl_errorf("%s: out of memory", path);
        return NULL;
    }
    pq->buf = (uint8_t *)qvl_read_file(path, &pq->size);
    if (!pq->buf) goto fail;
    if (pq->size < 12 || memcmp(pq->buf, "PAR1", 4) != 0) {
        qvl_errorf("%s: not a parquet file (no PAR1 magic)", path);
        goto fail;
    }
    const uint8_t *tail = pq->buf + pq->size - 8;
    if (memcmp(tail + 4, "PARE", 4) == 0) {
        qvl_errorf("%s: encrypted parquet files are not supported", path);
        goto fail;
    }
    if (memcmp(tail + 4, "PAR1", 4) != 0) {
        qvl_errorf("%s: truncated parquet file (no PAR1 magic at the end)", path);
        goto fail;
    }
    uint32_t flen = (uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 | (uint32_t)tail[3] << 24;
    if (flen > pq->size - 12) {
        qvl_errorf("%s: corrupt parquet footer (length %u exceeds the file)", path, flen);
        goto fail;
    }
    if (read_footer(pq, tail - flen, flen)) goto fail;
    return pq;
fail:
    qvl_parquet_close(pq);
    return NULL;
}

void qvl_parquet_close(qvl_parquet *pq) {
    if (!pq) return;
    for (int i = 0; i < pq->n_leaves; i++) free(pq->leaves[i].path);
    free(pq->leaves);
    for (int g = 0; g < pq->n_groups; g++) free(pq->groups[g].chunks);
    free(pq->groups);
    free(pq->buf);
    free(pq->path);
    free(pq);
}

int64_t qvl_parquet_num_rows(const qvl_parquet *pq) { return pq->num_rows; }
int qvl_parquet_num_row_groups(const qvl_parquet *pq) { return pq->n_groups; }
int qvl_parquet_num_columns(const qvl_parquet *pq) { return pq->n_leaves; }
const char *qvl_parquet_column_path(const qvl_parquet *pq, int col) {
    return col >= 0 && col < pq->n_leaves ? pq->leaves[col].path : NULL;
}

int qvl_parquet_find_column(const qvl_parquet *pq, const char *path) {
    for (int i = 0; i < pq->n_leaves; i++)
        if (!strcmp(pq->leaves[i].path, path)) return i;
    return -1;
}
