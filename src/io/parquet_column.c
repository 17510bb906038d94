/* Reading one leaf column: for each row group's column chunk, walk its pages (dictionary, data v1,
 * data v2), decompress, decode the RLE/bit-packed levels and the PLAIN or dictionary-coded values,
 * and append them to one qvl_parquet_column. */
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "io/parquet.h"
#include "io/parquet_internal.h"
#include "io/thrift.h"
#include "util/error.h"

enum { PAGE_DATA = 0, PAGE_INDEX = 1, PAGE_DICTIONARY = 2, PAGE_DATA_V2 = 3 };
enum { ENC_PLAIN = 0, ENC_PLAIN_DICTIONARY = 2, ENC_RLE = 3, ENC_RLE_DICTIONARY = 8 };
enum { CODEC_UNCOMPRESSED = 0, CODEC_SNAPPY = 1, CODEC_ZSTD = 6 };
#define MAX_PAGE_BYTES (1u << 28)   /* 256 MiB: far above what pyarrow writes, bounds hostile sizes */
#define MAX_PAGE_VALUES (1 << 26)

typedef struct {
    int type;
    int32_t uncompressed_size, compressed_size;
    int32_t num_values;   /* data pages: level slots; dictionary page: entries */
    int encoding;
    int def_encoding, rep_encoding;            /* v1 */
    int32_t def_bytes, rep_bytes;              /* v2 */
    int is_compressed;                         /* v2 */
} page_header;

/* Where an error happened, for messages: "<file>: column '<col>' (row group G): <reason>". */
typedef struct {
    const qvl_parquet *pq;
    const pq_leaf *leaf;
    int group;
} ctx;

static int col_error(const ctx *c, const char *why) {
    return qvl_errorf("%s: column '%s' (row group %d): %s", c->pq->path, c->leaf->path, c->group, why);
}

/* The type-specific header: DataPageHeader (id 5), DictionaryPageHeader (7) or DataPageHeaderV2 (8). */
static void read_page_sub(qvl_thrift *t, page_header *h, int which) {
    int16_t last = 0, id;
    int ft, v1 = which == 5, dict = which == 7, v2 = which == 8;
    if (!qvl_thrift_enter(t)) return;
    while (qvl_thrift_field(t, &last, &id, &ft)) {
        if (id == 1) h->num_values = (int32_t)qvl_thrift_int(t, ft);
        else if ((v1 || dict) && id == 2) h->encoding = (int)qvl_thrift_int(t, ft);
        else if (v1 && id == 3) h->def_encoding = (int)qvl_thrift_int(t, ft);
        else if (v1 && id == 4) h->rep_encoding = (int)qvl_thrift_int(t, ft);
        else if (v2 && id == 4) h->encoding = (int)qvl_thrift_int(t, ft);
        else if (v2 && id == 5) h->def_bytes = (int32_t)qvl_thrift_int(t, ft);
        else if (v2 && id == 6) h->rep_bytes = (int32_t)qvl_thrift_int(t, ft);
        else if (v2 && id == 7) h->is_compressed = qvl_thrift_bool(t, ft);
        else qvl_thrift_skip(t, ft);
    }
    qvl_thrift_leave(t);
}

static const char *read_page_header(qvl_thrift *t, page_header *h) {
    memset(h, 0, sizeof *h);
    h->type = -1;
    h->is_compressed = 1;
    int16_t last = 0, id;
    int ft;
    while (qvl_thrift_field(t, &last, &id, &ft)) {
        if (id == 1) h->type = (int)qvl_thrift_int(t, ft);
        else if (id == 2) h->uncompressed_size = (int32_t)qvl_thrift_int(t, ft);
        else if (id == 3) h->compressed_size = (int32_t)qvl_thrift_int(t, ft);
        else if ((id == 5 || id == 7 || id == 8) && ft == QVL_THRIFT_STRUCT) read_page_sub(t, h, id);
        else qvl_thrift_skip(t, ft);
    }
    if (t->error) return t->error;
    if (h->type < 0 || h->compressed_size < 0 || h->uncompressed_size < 0 || h->num_values < 0 ||
        h->def_bytes < 0 || h->rep_bytes < 0 || (uint32_t)h->uncompressed_size > MAX_PAGE_BYTES)
        return "corrupt page header";
    return NULL;
}

/* Decompresses src into a malloc'd buffer of exactly want bytes. */
static uint8_t *decompress(const ctx *c, int codec, const uint8_t *src, size_t n, size_t want) {
    uint8_t *dst = malloc(want ? want : 1);
    if (!dst) {
        col_error(c, "out of memory");
        return NULL;
    }
    if (codec == CODEC_UNCOMPRESSED) {
        if (n != want) goto bad;
        memcpy(dst, src, n);
    } else if (codec == CODEC_SNAPPY) {
        size_t len;
        if (snappy_uncompressed_length((const char *)src, n, &len) != SNAPPY_OK || len != want) goto bad;
        if (snappy_uncompress((const char *)src, n, (char *)dst, &len) != SNAPPY_OK || len != want) goto bad;
    } else if (codec == CODEC_ZSTD) {
        size_t r = ZSTD_decompress(dst, want, src, n);
        if (ZSTD_isError(r) || r != want) goto bad;
    } else {
        free(dst);
        char why[64];
        snprintf(why, sizeof why, "unsupported compression %s", qvl_parquet_codec_name(codec));
        col_error(c, why);
        return NULL;
    }
    return dst;
bad:
    free(dst);
    char why[96];
    snprintf(why, sizeof why, "corrupt %s page (does not decompress to %zu bytes)", qvl_parquet_codec_name(codec), want);
    col_error(c, why);
    return NULL;
}

static int bit_width(int max_value) {
    int w = 0;
    while (max_value >> w) w++;
    return w;
}

/* The RLE / bit-packed hybrid encoding (levels, dictionary indices): count values of width bits. */
const char *qvl_parquet_decode_hybrid(const uint8_t *p, size_t n, int width, int64_t count, int32_t *out) {
    size_t pos = 0;
    int64_t k = 0;
    size_t value_bytes = ((size_t)width + 7) / 8;
    uint32_t mask = width >= 32 ? 0xFFFFFFFFu : ((1u << width) - 1);
    while (k < count) {
        uint64_t h = 0;
        int shift = 0;
        for (;;) {
            if (pos >= n) return "truncated RLE/bit-packed data";
            if (shift > 56) return "corrupt RLE/bit-packed header";
            uint8_t b = p[pos++];
            h |= (uint64_t)(b & 0x7F) << shift;
            shift += 7;
            if (!(b & 0x80)) break;
        }
        if (h & 1) {  /* bit-packed: (h >> 1) groups of 8 values */
            uint64_t groups = h >> 1;
            if (groups > n) return "corrupt bit-packed run";
            size_t avail = n - pos, bytes = (size_t)groups * (size_t)width;
            if (bytes > avail) bytes = avail;  /* a final run may be cut short after the last value */
            for (uint64_t j = 0; j < groups * 8 && k < count; j++) {
                size_t bit = (size_t)j * (size_t)width;
                if (bit + (size_t)width > bytes * 8) return "truncated bit-packed run";
                uint64_t v = 0;
                size_t first = bit / 8, last = (bit + (size_t)width + 7) / 8;
                for (size_t b = first; b < last; b++) v |= (uint64_t)p[pos + b] << (8 * (b - first));
                out[k++] = (int32_t)((v >> (bit % 8)) & mask);
            }
            pos += bytes;
        } else {  /* run: (h >> 1) copies of one value */
            if (value_bytes > n - pos) return "truncated RLE run";
            uint32_t v = 0;
            for (size_t b = 0; b < value_bytes; b++) v |= (uint32_t)p[pos + b] << (8 * b);
            pos += value_bytes;
            if (v > mask) return "RLE value exceeds its bit width";
            for (uint64_t r = 0; r < (h >> 1) && k < count; r++) out[k++] = (int32_t)v;
        }
    }
    return NULL;
}

/* The growing output column plus the current chunk's dictionary. */
typedef struct {
    qvl_parquet_column *col;
    int64_t cap_levels, cap_values;
    size_t cap_data, len_data;
    int fixed_width;             /* > 0: fixed-size physical type */
    uint8_t *dict_buf;           /* decoded dictionary page (owned) */
    int64_t dict_n;
    int64_t *dict_start, *dict_len;
} builder;

static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, (size_t)nc * elem);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static int append_value(builder *b, const uint8_t *v, size_t len) {
    qvl_parquet_column *col = b->col;
    if (grow((void **)&col->offsets, &b->cap_values, col->n_values + 2, sizeof *col->offsets)) return -1;
    if (b->len_data + len > b->cap_data) {
        size_t nc = b->cap_data ? b->cap_data : 1024;
        while (nc < b->len_data + len) nc *= 2;
        uint8_t *nd = realloc(col->data, nc);
        if (!nd) return -1;
        col->data = nd;
        b->cap_data = nc;
    }
    if (len) memcpy(col->data + b->len_data, v, len);
    b->len_data += len;
    col->offsets[0] = 0;
    col->offsets[++col->n_values] = (int64_t)b->len_data;
    return 0;
}

/* n PLAIN values: appended to the column, or (start, len) recorded for the dictionary. */
static const char *decode_plain(builder *b, const uint8_t *p, size_t len, int64_t n, int to_dict) {
    size_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t vlen;
        if (b->fixed_width > 0) vlen = (size_t)b->fixed_width;
        else {
            if (len - pos < 4) return "truncated PLAIN values";
            vlen = (size_t)p[pos] | (size_t)p[pos + 1] << 8 | (size_t)p[pos + 2] << 16 | (size_t)p[pos + 3] << 24;
            pos += 4;
        }
        if (vlen > len - pos) return "truncated PLAIN values";
        if (to_dict) {
            b->dict_start[i] = (int64_t)pos;
            b->dict_len[i] = (int64_t)vlen;
        } else if (append_value(b, p + pos, vlen)) return "out of memory";
        pos += vlen;
    }
    return NULL;
}

static const char *read_dictionary(builder *b, uint8_t *page, size_t len, const page_header *h) {
    if (h->encoding != ENC_PLAIN && h->encoding != ENC_PLAIN_DICTIONARY) return "unsupported dictionary page encoding";
    /* each entry takes at least one byte (4 for BYTE_ARRAY): bounds a corrupt count */
    if ((size_t)h->num_values > len) return "corrupt dictionary page";
    b->dict_start = malloc(((size_t)h->num_values + 1) * sizeof *b->dict_start);
    b->dict_len = malloc(((size_t)h->num_values + 1) * sizeof *b->dict_len);
    if (!b->dict_start || !b->dict_len) return "out of memory";
    b->dict_n = h->num_values;
    return decode_plain(b, page, len, h->num_values, 1);
}

/* Values of one data page: n_present of them, PLAIN or dictionary indices. */
static const char *read_values(builder *b, const uint8_t *p, size_t len, int64_t n_present, int encoding) {
    if (encoding == ENC_PLAIN) return decode_plain(b, p, len, n_present, 0);
    if (!b->dict_buf) return "dictionary-encoded page without a dictionary page";
    if (n_present == 0) return NULL;
    if (len < 1 || p[0] > 32) return "corrupt dictionary indices";
    int32_t *idx = malloc((size_t)n_present * sizeof *idx);
    if (!idx) return "out of memory";
    const char *why = qvl_parquet_decode_hybrid(p + 1, len - 1, p[0], n_present, idx);
    for (int64_t i = 0; i < n_present && !why; i++) {
        if (idx[i] < 0 || idx[i] >= b->dict_n) why = "dictionary index out of range";
        else if (append_value(b, b->dict_buf + b->dict_start[idx[i]], (size_t)b->dict_len[idx[i]])) why = "out of memory";
    }
    free(idx);
    return why;
}

/* Levels of one page: count values into dst (int16), or all zero when max_level is 0. */
static const char *read_levels(const uint8_t *p, size_t len, int max_level, int64_t count, int16_t *dst) {
    int32_t *tmp = malloc((size_t)(count ? count : 1) * sizeof *tmp);
    if (!tmp) return "out of memory";
    const char *why = qvl_parquet_decode_hybrid(p, len, bit_width(max_level), count, tmp);
    for (int64_t i = 0; i < count && !why; i++) {
        if (tmp[i] > max_level) why = "level exceeds the column's maximum";
        dst[i] = (int16_t)tmp[i];
    }
    free(tmp);
    return why;
}

/* One data page (v1 or v2) whose header is h and whose stored bytes are raw[0..n). */
static const char *read_data_page(const ctx *c, builder *b, int codec, const page_header *h,
                                  const uint8_t *raw, size_t n, int64_t remaining, int *reported) {
    qvl_parquet_column *col = b->col;
    const pq_leaf *leaf = c->leaf;
    int64_t count = h->num_values;
    if (count > MAX_PAGE_VALUES) return "page holds too many values";
    if (count > remaining) return "pages hold more values than the column chunk says";
    if (h->encoding != ENC_PLAIN && h->encoding != ENC_RLE_DICTIONARY && h->encoding != ENC_PLAIN_DICTIONARY) {
        char why[96];
        snprintf(why, sizeof why, "unsupported encoding %s", qvl_parquet_encoding_name(h->encoding));
        col_error(c, why);
        *reported = 1;
        return "";
    }
    if (grow((void **)&col->def, &b->cap_levels, col->n_levels + count, sizeof *col->def)) return "out of memory";
    if (leaf->max_rep > 0) {  /* rep keeps the same capacity as def */
        int16_t *nr = realloc(col->rep, (size_t)b->cap_levels * sizeof *nr);
        if (!nr) return "out of memory";
        col->rep = nr;
    }
    int16_t *def = col->def ? col->def + col->n_levels : NULL;   /* NULL + 0 is undefined: no levels yet */
    int16_t *rep = col->rep ? col->rep + col->n_levels : NULL;
    uint8_t *page = NULL;
    const uint8_t *values;
    size_t values_len;
    const char *why = NULL;
    if (h->type == PAGE_DATA) {
        page = decompress(c, codec, raw, n, (size_t)h->uncompressed_size);
        if (!page) { *reported = 1; return ""; }
        size_t pos = 0, len = (size_t)h->uncompressed_size;
        for (int kind = 0; kind < 2 && !why; kind++) {  /* repetition levels first, then definition */
            int max = kind == 0 ? leaf->max_rep : leaf->max_def;
            if (max == 0) continue;
            int enc = kind == 0 ? h->rep_encoding : h->def_encoding;
            if (enc != ENC_RLE) {
                char msg[96];
                snprintf(msg, sizeof msg, "unsupported level encoding %s", qvl_parquet_encoding_name(enc));
                col_error(c, msg);
                free(page);
                *reported = 1;
                return "";
            }
            if (len - pos < 4) { why = "truncated levels"; break; }
            size_t llen = (size_t)page[pos] | (size_t)page[pos + 1] << 8 | (size_t)page[pos + 2] << 16 | (size_t)page[pos + 3] << 24;
            pos += 4;
            if (llen > len - pos) { why = "truncated levels"; break; }
            why = read_levels(page + pos, llen, max, count, kind == 0 ? rep : def);
            pos += llen;
        }
        values = page + pos;
        values_len = len - pos;
    } else {
        size_t lv = (size_t)h->rep_bytes + (size_t)h->def_bytes;
        if (lv > n || lv > (size_t)h->uncompressed_size) return "corrupt v2 page (level sizes exceed the page)";
        if (leaf->max_rep > 0) why = read_levels(raw, (size_t)h->rep_bytes, leaf->max_rep, count, rep);
        if (!why && leaf->max_def > 0) why = read_levels(raw + h->rep_bytes, (size_t)h->def_bytes, leaf->max_def, count, def);
        if (why) return why;
        size_t want = (size_t)h->uncompressed_size - lv;
        if (h->is_compressed && codec != CODEC_UNCOMPRESSED) {
            page = decompress(c, codec, raw + lv, n - lv, want);
            if (!page) { *reported = 1; return ""; }
            values = page;
        } else {
            if (n - lv != want) return "corrupt v2 page (size mismatch)";
            values = raw + lv;
        }
        values_len = want;
    }
    if (!why) {
        /* An empty page may come before any level storage exists (def NULL): nothing to clear. */
        if (leaf->max_def == 0 && count > 0) memset(def, 0, (size_t)count * sizeof *def);
        if (leaf->max_rep == 0 && rep && count > 0) memset(rep, 0, (size_t)count * sizeof *rep);
        int64_t present = 0;
        for (int64_t i = 0; i < count; i++) present += def[i] == leaf->max_def;
        why = read_values(b, values, values_len, present, h->encoding);
        if (!why) col->n_levels += count;
    }
    free(page);
    return why;
}

static int read_chunk(const ctx *c, builder *b, const pq_chunk *ch) {
    const qvl_parquet *pq = c->pq;
    if (ch->external) return col_error(c, "column data in another file (file_path) is not supported");
    if (ch->encrypted) return col_error(c, "encrypted columns are not supported");
    if (!ch->has_meta) return col_error(c, "column chunk without metadata");
    if (ch->codec != CODEC_UNCOMPRESSED && ch->codec != CODEC_SNAPPY && ch->codec != CODEC_ZSTD) {
        char why[64];
        snprintf(why, sizeof why, "unsupported compression %s", qvl_parquet_codec_name(ch->codec));
        return col_error(c, why);
    }
    int64_t start = ch->data_page_offset;
    if (ch->dictionary_page_offset > 0 && ch->dictionary_page_offset < start) start = ch->dictionary_page_offset;
    int64_t limit = (int64_t)pq->size - 8;
    if (start < 4 || start >= limit || ch->total_compressed_size < 0 || ch->total_compressed_size > limit - start)
        return col_error(c, "column chunk lies outside the file");
    const uint8_t *p = pq->buf + start, *end = p + ch->total_compressed_size;
    int64_t levels_before = b->col->n_levels, want = ch->num_values;
    while (b->col->n_levels - levels_before < want) {
        if (p >= end) return col_error(c, "column chunk ends before all its values were read");
        qvl_thrift t = {p, end, NULL, 0};
        page_header h;
        const char *why = read_page_header(&t, &h);
        if (why) {
            char msg[128];
            snprintf(msg, sizeof msg, "corrupt page header (%s)", why);
            return col_error(c, msg);
        }
        p = t.p;
        if ((int64_t)h.compressed_size > end - p) return col_error(c, "page runs past the column chunk");
        int reported = 0;
        if (h.type == PAGE_DICTIONARY) {
            uint8_t *page = decompress(c, ch->codec, p, (size_t)h.compressed_size, (size_t)h.uncompressed_size);
            if (!page) return -1;
            if (b->dict_buf) { free(page); return col_error(c, "two dictionary pages in one column chunk"); }
            b->dict_buf = page;  /* owned by the builder from here */
            why = read_dictionary(b, page, (size_t)h.uncompressed_size, &h);
        } else if (h.type == PAGE_DATA || h.type == PAGE_DATA_V2) {
            why = read_data_page(c, b, ch->codec, &h, p, (size_t)h.compressed_size,
                                 want - (b->col->n_levels - levels_before), &reported);
        } else if (h.type != PAGE_INDEX) {
            why = "unknown page type";
        }
        if (reported) return -1;
        if (why) return col_error(c, why);
        p += h.compressed_size;
    }
    if (b->col->n_levels - levels_before != want) return col_error(c, "pages hold more values than the column chunk says");
    return 0;
}

static void drop_dictionary(builder *b) {
    free(b->dict_buf);
    free(b->dict_start);
    free(b->dict_len);
    b->dict_buf = NULL;
    b->dict_start = b->dict_len = NULL;
    b->dict_n = 0;
}

int qvl_parquet_read_column(const qvl_parquet *pq, int col_index, qvl_parquet_column *out) {
    memset(out, 0, sizeof *out);
    if (col_index < 0 || col_index >= pq->n_leaves) return qvl_errorf("%s: no column %d", pq->path, col_index);
    const pq_leaf *leaf = &pq->leaves[col_index];
    ctx c = {pq, leaf, 0};
    builder b = {.col = out};
    out->physical_type = leaf->physical_type;
    out->max_def = leaf->max_def;
    out->max_rep = leaf->max_rep;
    switch (leaf->physical_type) {
    case QVL_PQ_BYTE_ARRAY: b.fixed_width = 0; break;
    case QVL_PQ_INT32: case QVL_PQ_FLOAT: b.fixed_width = 4; break;
    case QVL_PQ_INT64: case QVL_PQ_DOUBLE: b.fixed_width = 8; break;
    case QVL_PQ_INT96: b.fixed_width = 12; break;
    case QVL_PQ_FIXED_LEN_BYTE_ARRAY:
        if (leaf->type_length <= 0) return col_error(&c, "FIXED_LEN_BYTE_ARRAY without a length");
        b.fixed_width = leaf->type_length;
        break;
    default:
        return col_error(&c, leaf->physical_type == QVL_PQ_BOOLEAN ? "BOOLEAN columns are not supported"
                                                                    : "unknown physical type");
    }
    if (!(out->offsets = calloc(1, sizeof *out->offsets))) return col_error(&c, "out of memory");
    b.cap_values = 1;
    for (int g = 0; g < pq->n_groups; g++) {
        c.group = g;
        const pq_chunk *ch = &pq->groups[g].chunks[col_index];
        if (ch->has_meta && ch->physical_type != leaf->physical_type) {
            drop_dictionary(&b);
            qvl_parquet_column_free(out);
            return col_error(&c, "column chunk type differs from the schema");
        }
        int rc = read_chunk(&c, &b, ch);
        drop_dictionary(&b);
        if (rc) {
            qvl_parquet_column_free(out);
            return -1;
        }
    }
    if (leaf->max_def == 0) {
        free(out->def);
        out->def = NULL;
    }
    return 0;
}

void qvl_parquet_column_free(qvl_parquet_column *c) {
    free(c->def);
    free(c->rep);
    free(c->data);
    free(c->offsets);
    memset(c, 0, sizeof *c);
}
