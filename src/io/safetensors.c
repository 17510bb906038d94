/* safetensors reader. A file is: u64 little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data region;
 * offsets are relative to the data region. Every header is validated before any tensor is handed
 * out, so a corrupt file is one error line, never an out-of-bounds read later. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/file.h"

/* Real headers are well under 1 MiB (about 100 bytes per tensor); the reference library refuses
 * headers over 100 MB. Checked before anything is allocated. */
#define MAX_HEADER_BYTES (100u << 20)

typedef struct {
    char *path;
    void *map;
    size_t size;
} st_file;

struct qvl_safetensors {
    char *path;                 /* the index.json or the single file (resolved from a folder) */
    st_file *files;
    int n_files;
    qvl_tensor *tensors;        /* in file order, then header order */
    int n;
    int cap;
    qvl_tensor **by_name;       /* sorted by name, for qvl_st_find */
};

static const struct {
    const char *name;
    size_t size;
} dtypes[QVL_DTYPE_COUNT] = {
    [QVL_F32] = {"F32", 4}, [QVL_F16] = {"F16", 2}, [QVL_BF16] = {"BF16", 2}, [QVL_I32] = {"I32", 4},
    [QVL_I64] = {"I64", 8}, [QVL_U8] = {"U8", 1},   [QVL_I8] = {"I8", 1},     [QVL_F8_E4M3] = {"F8_E4M3", 1},
};

const char *qvl_dtype_name(qvl_dtype t) { return (unsigned)t < QVL_DTYPE_COUNT ? dtypes[t].name : "?"; }
size_t qvl_dtype_size(qvl_dtype t) { return (unsigned)t < QVL_DTYPE_COUNT ? dtypes[t].size : 0; }

int qvl_dtype_parse(const char *s, qvl_dtype *out) {
    for (int i = 0; i < QVL_DTYPE_COUNT; i++)
        if (!strcmp(s, dtypes[i].name)) {
            *out = (qvl_dtype)i;
            return 0;
        }
    return -1;
}

int64_t qvl_tensor_numel(const qvl_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ---- opening one file ------------------------------------------------------------------------ */

static int map_file(st_file *f) {
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return qvl_errorf("%s: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qvl_errorf("%s: not a regular file", f->path);
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        return qvl_errorf("%s: truncated: %zu bytes, a safetensors file has at least 8", f->path, f->size);
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return qvl_errorf("%s: mmap failed: %s", f->path, strerror(errno));
    }
    return 0;
}

static int push_tensor(qvl_safetensors *st, const qvl_tensor *t) {
    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 1024;
        qvl_tensor *p = realloc(st->tensors, (size_t)cap * sizeof *p);
        if (!p) return qvl_errorf("%s: out of memory", t->file);
        st->tensors = p;
        st->cap = cap;
    }
    st->tensors[st->n++] = *t;
    return 0;
}

/* Reads a JSON number that must be a non-negative integer below 2^53 (exact in a double). */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
}

typedef struct {
    uint64_t begin, end;
    const char *name;
} span;

static int by_begin(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Parses one tensor entry of f's header; data_len is the size of the data region. */
static int parse_entry(const st_file *f, const cJSON *e, uint64_t data_len, const uint8_t *data,
                       qvl_tensor *t, span *sp) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return qvl_errorf("%s: tensor %s: header entry is not an object", f->path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return qvl_errorf("%s: tensor %s: missing dtype", f->path, name);
    if (qvl_dtype_parse(dt->valuestring, &t->dtype) != 0)
        return qvl_errorf("%s: tensor %s: unsupported dtype %s", f->path, name, dt->valuestring);
    if (!cJSON_IsArray(shape)) return qvl_errorf("%s: tensor %s: missing shape", f->path, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > QVL_MAX_DIMS) return qvl_errorf("%s: tensor %s: %d dimensions (at most %d)", f->path, name, nd, QVL_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (json_uint(cJSON_GetArrayItem(shape, i), &d) != 0)
            return qvl_errorf("%s: tensor %s: shape[%d] is not a non-negative integer", f->path, name, i);
        t->shape[i] = (int64_t)d;
        if (d && numel > (uint64_t)INT64_MAX / d) overflow = 1;   /* qvl_tensor_numel multiplies in int64 */
        numel *= d;
    }
    size_t esize = qvl_dtype_size(t->dtype);
    if (overflow || numel > UINT64_MAX / esize)
        return qvl_errorf("%s: tensor %s: shape is too large", f->path, name);
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_uint(cJSON_GetArrayItem(off, 0), &b) != 0 ||
        json_uint(cJSON_GetArrayItem(off, 1), &en) != 0)
        return qvl_errorf("%s: tensor %s: data_offsets must be two non-negative integers", f->path, name);
    if (b > en) return qvl_errorf("%s: tensor %s: data_offsets [%llu, %llu] are reversed", f->path, name,
                                  (unsigned long long)b, (unsigned long long)en);
    if (en > data_len)
        return qvl_errorf("%s: tensor %s: data_offsets [%llu, %llu] run past the end of the data (%llu bytes; "
                          "file truncated?)", f->path, name, (unsigned long long)b, (unsigned long long)en,
                          (unsigned long long)data_len);
    if (numel * esize != en - b)
        return qvl_errorf("%s: tensor %s: shape and dtype %s need %llu bytes but data_offsets hold %llu",
                          f->path, name, dt->valuestring, (unsigned long long)(numel * esize),
                          (unsigned long long)(en - b));
    t->data = data + b;
    t->nbytes = (size_t)(en - b);
    t->file = f->path;
    sp->begin = b;
    sp->end = en;
    sp->name = name;
    return 0;
}

/* Validates f's header and appends its tensors. */
static int load_file(qvl_safetensors *st, st_file *f) {
    if (map_file(f) != 0) return -1;
    const uint8_t *m = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | m[i];
    if (hlen > f->size - 8)
        return qvl_errorf("%s: header length %llu exceeds the file size (%zu bytes; truncated or not a "
                          "safetensors file)", f->path, (unsigned long long)hlen, f->size);
    if (hlen > MAX_HEADER_BYTES)
        return qvl_errorf("%s: header length %llu is over the %u byte limit", f->path, (unsigned long long)hlen,
                          MAX_HEADER_BYTES);
    if (hlen < 2) return qvl_errorf("%s: header length %llu is too small", f->path, (unsigned long long)hlen);
    const char *hdr = (const char *)m + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) return qvl_errorf("%s: header is not valid JSON", f->path);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qvl_errorf("%s: header is not a JSON object", f->path);
    }
    for (; end < hdr + hlen; end++) /* the writer pads the header with spaces */
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end != 0) {
            cJSON_Delete(root);
            return qvl_errorf("%s: header has trailing bytes after its JSON object", f->path);
        }
    uint64_t data_len = f->size - 8 - hlen;
    const uint8_t *data = m + 8 + hlen;
    int n = cJSON_GetArraySize(root);
    span *spans = malloc((size_t)(n ? n : 1) * sizeof *spans);
    if (!spans) {
        cJSON_Delete(root);
        return qvl_errorf("%s: out of memory", f->path);
    }
    int ns = 0, rc = 0;
    for (const cJSON *e = root->child; e && rc == 0; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) rc = qvl_errorf("%s: __metadata__ is not an object", f->path);
            continue;
        }
        qvl_tensor t = {0};
        for (const unsigned char *c = (const unsigned char *)e->string; *c && rc == 0; c++)
            if (*c < 0x20) rc = qvl_errorf("%s: a tensor name contains control characters", f->path);
        if (rc) break;
        rc = parse_entry(f, e, data_len, data, &t, &spans[ns]);
        if (rc == 0) {
            t.name = strdup(e->string);
            if (!t.name) rc = qvl_errorf("%s: out of memory", f->path);
        }
        if (rc == 0) rc = push_tensor(st, &t);
        if (rc == 0) ns++;
    }
    if (rc == 0) {
        /* Overlap check: sorted by start, each non-empty tensor must begin at or after the end of
         * the previous non-empty one. */
        qsort(spans, (size_t)ns, sizeof *spans, by_begin);
        const span *prev = NULL;
        for (int i = 0; i < ns && rc == 0; i++) {
            if (spans[i].begin == spans[i].end) continue;
            if (prev && spans[i].begin < prev->end)
                rc = qvl_errorf("%s: tensor %s overlaps tensor %s (data_offsets [%llu, %llu] and [%llu, %llu])",
                                f->path, spans[i].name, prev->name, (unsigned long long)spans[i].begin,
                                (unsigned long long)spans[i].end, (unsigned long long)prev->begin,
                                (unsigned long long)prev->end);
            prev = &spans[i];
        }
    }
    free(spans);
    cJSON_Delete(root);
    return rc;
}

/* ---- the set --------------------------------------------------------------------------------- */

static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(qvl_tensor *const *)a)->name, (*(qvl_tensor *const *)b)->name);
}

static int build_index(qvl_safetensors *st) {
    st->by_name = malloc((size_t)(st->n ? st->n : 1) * sizeof *st->by_name);
    if (!st->by_name) return qvl_errorf("%s: out of memory", st->path);
    for (int i = 0; i < st->n; i++) st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_by_name);
    for (int i = 1; i < st->n; i++)
        if (!strcmp(st->by_name[i]->name, st->by_name[i - 1]->name)) {
            const qvl_tensor *a = st->by_name[i - 1], *b = st->by_name[i];
            if (a->file == b->file) return qvl_errorf("%s: tensor %s appears twice in the header", a->file, a->name);
            return qvl_errorf("%s: tensor %s is also in %s", b->file, b->name, a->file);
        }
    return 0;
}

static st_file *add_file(qvl_safetensors *st, char *path) {
    st_file *p = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *p);
    if (!p) {
        free(path);
        qvl_errorf("%s: out of memory", st->path);
        return NULL;
    }
    st->files = p;
    st_file *f = &st->files[st->n_files++];
    memset(f, 0, sizeof *f);
    f->path = path;
    return f;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static const st_file *find_file(const qvl_safetensors *st, const char *path) {
    for (int i = 0; i < st->n_files; i++)
        if (!strcmp(st->files[i].path, path)) return &st->files[i];
    return NULL;
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: shard file}}. Opens
 * every shard named, then checks each listed tensor is in the shard the map names. */
static int load_index(qvl_safetensors *st, const char *index_path) {
    char *text = qvl_read_file(index_path, NULL);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return qvl_errorf("%s: not valid JSON", index_path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int rc = 0;
    char *dir = dir_of(index_path);
    if (!dir) rc = qvl_errorf("%s: out of memory", index_path);
    else if (!cJSON_IsObject(wm)) rc = qvl_errorf("%s: missing weight_map object", index_path);
    else if (!wm->child) rc = qvl_errorf("%s: weight_map is empty", index_path);
    for (const cJSON *e = wm ? wm->child : NULL; e && rc == 0; e = e->next) {
        if (!cJSON_IsString(e)) {
            rc = qvl_errorf("%s: weight_map entry %s is not a file name", index_path, e->string);
            break;
        }
        const char *shard = e->valuestring;
        if (!shard[0] || shard[0] == '/' || strstr(shard, "..")) {
            rc = qvl_errorf("%s: weight_map entry %s: shard name '%s' must be a plain file name in the folder",
                            index_path, e->string, shard);
            break;
        }
        char *p = qvl_path_join(dir, shard);
        if (!p) {
            rc = qvl_errorf("%s: out of memory", index_path);
            break;
        }
        if (find_file(st, p)) {
            free(p);
            continue;
        }
        if (access(p, F_OK) != 0) {
            rc = qvl_errorf("%s: shard %s (holding tensor %s) is missing", index_path, p, e->string);
            free(p);
            break;
        }
        st_file *f = add_file(st, p);
        rc = f ? load_file(st, f) : -1;
    }
    if (rc == 0) rc = build_index(st);
    for (const cJSON *e = wm ? wm->child : NULL; e && rc == 0; e = e->next) {
        const qvl_tensor *t = qvl_st_find(st, e->string);
        char *p = qvl_path_join(dir, e->valuestring);
        if (!p) rc = qvl_errorf("%s: out of memory", index_path);
        else if (!t || strcmp(t->file, p) != 0)
            rc = qvl_errorf("%s: tensor %s listed in %s is missing from this shard", p, e->string, index_path);
        free(p);
    }
    free(dir);
    cJSON_Delete(root);
    return rc;
}

qvl_safetensors *qvl_st_open(const char *path) {
    qvl_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        qvl_errorf("%s: out of memory", path);
        return NULL;
    }
    int rc;
    if (qvl_is_dir(path)) {
        char *index = qvl_path_join(path, "model.safetensors.index.json");
        char *single = qvl_path_join(path, "model.safetensors");
        if (!index || !single) rc = qvl_errorf("%s: out of memory", path);
        else if (access(index, F_OK) == 0) {
            free(st->path);
            st->path = index;
            index = NULL;
            rc = load_index(st, st->path);
        } else if (access(single, F_OK) == 0) {
            free(st->path);
            st->path = single;
            single = NULL;
            char *p = strdup(st->path);
            st_file *f = p ? add_file(st, p) : NULL;
            rc = f ? load_file(st, f) : qvl_errorf("%s: out of memory", path);
            if (rc == 0) rc = build_index(st);
        } else
            rc = qvl_errorf("%s: no model.safetensors or model.safetensors.index.json in this folder", path);
        free(index);
        free(single);
    } else if (ends_with(path, ".json")) {
        rc = load_index(st, path);
    } else {
        char *p = strdup(path);
        st_file *f = p ? add_file(st, p) : NULL;
        rc = f ? load_file(st, f) : qvl_errorf("%s: out of memory", path);
        if (rc == 0) rc = build_index(st);
    }
    if (rc != 0) {
        qvl_st_close(st);
        return NULL;
    }
    return st;
}

void qvl_st_close(qvl_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].map) munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    free(st->files);
    free(st->tensors);
    free(st->by_name);
    free(st->path);
    free(st);
}

int qvl_st_count(const qvl_safetensors *st) { return st->n; }
const qvl_tensor *qvl_st_get(const qvl_safetensors *st, int i) { return i >= 0 && i < st->n ? &st->tensors[i] : NULL; }
const char *qvl_st_path(const qvl_safetensors *st) { return st->path; }
int qvl_st_file_count(const qvl_safetensors *st) { return st->n_files; }

size_t qvl_st_data_bytes(const qvl_safetensors *st) {
    size_t n = 0;
    for (int i = 0; i < st->n; i++) n += st->tensors[i].nbytes;
    return n;
}

const qvl_tensor *qvl_st_find(const qvl_safetensors *st, const char *name) {
    if (!st->by_name) return NULL;
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->by_name[mid]->name);
        if (c == 0) return st->by_name[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

/* ---- element conversion ---------------------------------------------------------------------- */

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float qvl_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | man << 13);   /* inf / nan */
    if (exp == 0) {                                                      /* zero / subnormal */
        float v = (float)man * (1.0f / 16777216.0f);                     /* man * 2^-24 */
        return sign ? -v : v;
    }
    return bits_to_f32(sign | (exp + 112) << 23 | man << 13);
}

float qvl_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/* float8 e4m3fn: bias 7, no infinities, S.1111.111 is NaN, max 448. */
float qvl_f8e4m3_to_f32(uint8_t v) {
    int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
    float r;
    if (exp == 0xf && man == 7) return bits_to_f32(0x7fc00000u);
    if (exp == 0) r = (float)man * (1.0f / 512.0f);                      /* man/8 * 2^-6 */
    else r = ldexpf(1.0f + (float)man / 8.0f, exp - 7);
    return sign ? -r : r;
}

float qvl_tensor_get_f32(const qvl_tensor *t, int64_t i) {
    const uint8_t *p = (const uint8_t *)t->data + (size_t)i * qvl_dtype_size(t->dtype);
    switch (t->dtype) {
    case QVL_F32: { float v; memcpy(&v, p, 4); return v; }
    case QVL_F16: { uint16_t v; memcpy(&v, p, 2); return qvl_f16_to_f32(v); }
    case QVL_BF16: { uint16_t v; memcpy(&v, p, 2); return qvl_bf16_to_f32(v); }
    case QVL_I32: { int32_t v; memcpy(&v, p, 4); return (float)v; }
    case QVL_I64: { int64_t v; memcpy(&v, p, 8); return (float)v; }
    case QVL_U8: return (float)p[0];
    case QVL_I8: return (float)(int8_t)p[0];
    case QVL_F8_E4M3: return qvl_f8e4m3_to_f32(p[0]);
    default: return 0.0f;
    }
}

int qvl_tensor_to_f32(const qvl_tensor *t, float *dst) {
    int64_t n = qvl_tensor_numel(t);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case QVL_F32: memcpy(dst, p, (size_t)n * 4); return 0;
    case QVL_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = qvl_bf16_to_f32(v);
        }
        return 0;
    case QVL_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = qvl_f16_to_f32(v);
        }
        return 0;
    default:
        if ((unsigned)t->dtype >= QVL_DTYPE_COUNT) return qvl_errorf("%s: tensor %s: bad dtype", t->file, t->name);
        for (int64_t i = 0; i < n; i++) dst[i] = qvl_tensor_get_f32(t, i);
        return 0;
    }
}
