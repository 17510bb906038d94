/* The VLMEvalKit TSV reader (src/eval/dataset_tsv.c: columns, base64 images, Python-literal answers). */
#include "eval/dataset_internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qvl_dataset ds = {0};
    if (qvl_dataset_load_tsv(fuzz_write("OCRBench.tsv", data, size), 1, &ds) == 0) {
        for (long i = 0; i < ds.n_samples; i++) {
            const qvl_sample *s = &ds.samples[i];
            if (!s->error && (s->n_answers < 1 || !s->question || !s->type)) fuzz_fail("sample without error lacks fields");
            (void)qvl_dataset_find(&ds, s->index);
        }
        (void)qvl_dataset_count_errors(&ds);
    }
    qvl_dataset_free(&ds);
    return 0;
}
