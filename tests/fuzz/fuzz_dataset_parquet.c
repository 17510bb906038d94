/* Parquet: the file reader (src/io/parquet*.c: thrift footer, pages, encodings, codecs; every column
 * read) and the OCRBench dataset built from it (src/eval/dataset_parquet.c). */
#include "eval/dataset_internal.h"
#include "fuzz.h"
#include "io/parquet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("test.parquet", data, size);
    qvl_parquet *pq = qvl_parquet_open(path);
    if (!pq) return 0;
    (void)qvl_parquet_num_rows(pq);
    (void)qvl_parquet_num_row_groups(pq);
    for (int c = 0; c < qvl_parquet_num_columns(pq); c++) {
        qvl_parquet_column col;
        if (qvl_parquet_find_column(pq, qvl_parquet_column_path(pq, c)) < 0) fuzz_fail("a column is not found by its path");
        if (qvl_parquet_read_column(pq, c, &col) == 0) {
            if (col.offsets && col.n_values > 0 && col.offsets[0] != 0) fuzz_fail("first value offset is not 0");
            qvl_parquet_column_free(&col);
        }
    }
    qvl_parquet_close(pq);
    qvl_dataset ds = {0};
    if (qvl_dataset_load_parquet(path, 1, &ds) == 0)
        for (long i = 0; i < ds.n_samples; i++)
            if (!ds.samples[i].error && ds.samples[i].n_answers < 1) fuzz_fail("sample without error has no answer");
    qvl_dataset_free(&ds);
    return 0;
}
