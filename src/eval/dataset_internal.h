/* Shared by the dataset loaders (dataset_json.c, dataset_tsv.c, dataset_parquet.c). */
#ifndef QVL_EVAL_DATASET_INTERNAL_H
#define QVL_EVAL_DATASET_INTERNAL_H
#include "eval/dataset.h"

int qvl_dataset_load_json(const char *path, const char *images_dir, int with_images, qvl_dataset *ds);
int qvl_dataset_load_tsv(const char *path, int with_images, qvl_dataset *ds);
int qvl_dataset_load_parquet(const char *path, int with_images, qvl_dataset *ds);

/* Appends a zeroed sample (strings "" , index -1); NULL + qvl_error when out of memory. */
qvl_sample *qvl_dataset_add(qvl_dataset *ds);
/* Sets a sample's error text (printf format); keeps the first error if one is already set. */
void qvl_sample_set_error(qvl_sample *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replaces *dst (a malloc'd string) with a copy of n bytes of src; -1 when out of memory. */
int qvl_set_string(char **dst, const char *src, size_t n);
/* Frees one sample's fields. */
void qvl_sample_clear(qvl_sample *s);

#endif
