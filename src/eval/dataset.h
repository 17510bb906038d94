/* OCRBench samples from any of its common forms, detected automatically:
 *   - the original OCRBench.json (+ image folder: its own folder, or images_dir),
 *   - a VLMEvalKit .tsv (base64 images; answer as a Python list literal),
 *   - Hugging Face parquet export (a .parquet file or a folder of them).
 * A sample that cannot be read is kept with its error text, never dropped. */
#ifndef QVL_EVAL_DATASET_H
#define QVL_EVAL_DATASET_H
#include <stddef.h>
#include <stdint.h>

typedef enum { QVL_DATA_JSON, QVL_DATA_TSV, QVL_DATA_PARQUET } qvl_data_format;

/* When error is set, the fields that could still be read are filled and the others are "" (strings)
 * or 0 (n_answers); strings are never NULL except image_path / image_data. */
typedef struct {
    long index;            /* the sample's key: JSON array position, TSV `index` column, parquet row
                              (-1 for a TSV line whose index cannot be read) */
    char *dataset;         /* dataset_name / dataset ("" if the form has none) */
    char *type;            /* one of the 10 question-type strings */
    char *question;
    char **answers;        /* at least one */
    int n_answers;
    /* The image: a path (JSON form) or encoded bytes (TSV, parquet); both NULL if unreadable. */
    char *image_path;
    uint8_t *image_data;
    size_t image_size;
    char *error;           /* non-NULL: why this sample cannot be used (bad base64, missing image, ...) */
} qvl_sample;

typedef struct {
    qvl_data_format format;
    char *source;          /* the path as given */
    qvl_sample *samples;
    long n_samples;
} qvl_dataset;

/* Loads PATH. with_images = 0 reads only annotations (for scoring: no image bytes are kept and a
 * missing image is not an error). images_dir overrides the JSON form's image folder (may be NULL).
 * Structural problems (not OCRBench, unreadable file) are errors: -1 + qvl_error. */
int qvl_dataset_load(const char *path, const char *images_dir, int with_images, qvl_dataset *ds);
void qvl_dataset_free(qvl_dataset *ds);
/* The sample with this key, or NULL. */
const qvl_sample *qvl_dataset_find(const qvl_dataset *ds, long index);

/* Which form PATH is, by content: a folder or "PAR1" magic = parquet, a JSON array = OCRBench.json,
 * a tab-separated first line = TSV. -1 + qvl_error if none fits. */
int qvl_dataset_detect(const char *path, qvl_data_format *format);
const char *qvl_data_format_name(qvl_data_format format);  /* "json", "tsv", "parquet" */
/* Samples that carry an error. */
long qvl_dataset_count_errors(const qvl_dataset *ds);

#endif
