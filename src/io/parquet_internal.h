/* Shared between parquet.c (footer, schema) and parquet_column.c (pages, levels, values). */
#ifndef QVL_IO_PARQUET_INTERNAL_H
#define QVL_IO_PARQUET_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "io/parquet.h"

typedef struct {
    char *path;        /* dotted path of the leaf */
    int physical_type;
    int type_length;   /* FIXED_LEN_BYTE_ARRAY width */
    int max_def, max_rep;
} pq_leaf;

typedef struct {
    int has_meta;      /* ColumnChunk.meta_data present */
    int external;      /* ColumnChunk.file_path set: data lives in another file */
    int encrypted;
    int physical_type;
    int codec;
    int64_t num_values;
    int64_t data_page_offset;
    int64_t dictionary_page_offset;  /* -1 if absent */
    int64_t total_compressed_size;
} pq_chunk;

typedef struct {
    int64_t num_rows;
    int n_chunks;
    pq_chunk *chunks;
} pq_row_group;

struct qvl_parquet {
    char *path;
    uint8_t *buf;
    size_t size;
    int64_t num_rows;
    int n_leaves;
    pq_leaf *leaves;
    int n_groups;
    pq_row_group *groups;
};

const char *qvl_parquet_codec_name(int codec);
const char *qvl_parquet_encoding_name(int encoding);
/* The RLE / bit-packed hybrid encoding (levels, dictionary indices): decodes count values of width
 * bits from p[0..n) into out. NULL, or why the data is bad. */
const char *qvl_parquet_decode_hybrid(const uint8_t *p, size_t n, int width, int64_t count, int32_t *out);

#endif
