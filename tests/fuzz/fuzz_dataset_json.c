/* The OCRBench.json reader (src/eval/dataset_json.c), annotations only (image files are not read). */
#include "eval/dataset_internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qvl_dataset ds = {0};
    if (qvl_dataset_load_json(fuzz_write("OCRBench.json", data, size), NULL, 0, &ds) == 0) {
        for (long i = 0; i < ds.n_samples; i++) {
            const qvl_sample *s = &ds.samples[i];
            if (!s->error && (s->n_answers < 1 || !s->question || !s->type)) fuzz_fail("sample without error lacks fields");
            (void)qvl_dataset_find(&ds, s->index);
        }
    }
    qvl_dataset_free(&ds);
    return 0;
}
