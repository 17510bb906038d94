/* A small parquet reader for the files pyarrow (and the Hugging Face datasets library through it)
 * writes: the thrift footer, row groups, dictionary pages, data pages v1 and v2, PLAIN and
 * dictionary (RLE_DICTIONARY / PLAIN_DICTIONARY) encodings, RLE/bit-packed definition and repetition
 * levels (nested lists and structs), and UNCOMPRESSED / SNAPPY / ZSTD pages. Anything else is
 * refused with a clear error naming the file and column. Columns are read whole, in Dremel form
 * (levels + non-null values); assembling rows from them is up to the caller. */
#ifndef QVL_IO_PARQUET_H
#define QVL_IO_PARQUET_H
#include <stdint.h>

typedef struct qvl_parquet qvl_parquet;

/* Physical types, as in parquet.thrift. */
enum { QVL_PQ_BOOLEAN, QVL_PQ_INT32, QVL_PQ_INT64, QVL_PQ_INT96, QVL_PQ_FLOAT, QVL_PQ_DOUBLE,
       QVL_PQ_BYTE_ARRAY, QVL_PQ_FIXED_LEN_BYTE_ARRAY };

/* Reads the file into memory and decodes its footer. NULL + qvl_error "<path>: <reason>". */
qvl_parquet *qvl_parquet_open(const char *path);
void qvl_parquet_close(qvl_parquet *pq);

int64_t qvl_parquet_num_rows(const qvl_parquet *pq);
int qvl_parquet_num_row_groups(const qvl_parquet *pq);
/* Leaf columns, in schema order; paths are dotted ("answer.list.element", "image.bytes"). */
int qvl_parquet_num_columns(const qvl_parquet *pq);
const char *qvl_parquet_column_path(const qvl_parquet *pq, int col);
/* The leaf with this dotted path, or -1. */
int qvl_parquet_find_column(const qvl_parquet *pq, const char *path);

typedef struct {
    int physical_type;    /* QVL_PQ_* */
    int max_def, max_rep; /* maximum definition / repetition level of the leaf */
    int64_t n_levels;     /* one entry per leaf slot: a value, a null, or an empty list */
    int16_t *def;         /* n_levels definition levels (NULL when max_def == 0: all present) */
    int16_t *rep;         /* n_levels repetition levels (NULL when max_rep == 0: one slot per row) */
    int64_t n_values;     /* present values, i.e. slots with def == max_def */
    uint8_t *data;        /* the values' bytes, concatenated (fixed-size types: little-endian) */
    int64_t *offsets;     /* n_values + 1: value i is data[offsets[i] .. offsets[i+1]) */
} qvl_parquet_column;

/* Reads one leaf column over all row groups. Types other than BOOLEAN are supported.
 * -1 + qvl_error "<path>: column '<col>': <reason>" on failure. */
int qvl_parquet_read_column(const qvl_parquet *pq, int col, qvl_parquet_column *out);
void qvl_parquet_column_free(qvl_parquet_column *c);

#endif
