/* safetensors: the header (JSON), its validation and the tensor index, then every tensor read. */
#include "fuzz.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qvl_safetensors *st = qvl_st_open(fuzz_write("model.safetensors", data, size));
    if (!st) return 0;
    for (int i = 0; i < qvl_st_count(st); i++) {
        const qvl_tensor *t = qvl_st_get(st, i);
        if (qvl_st_find(st, t->name) == NULL) fuzz_fail("a listed tensor is not found by name");
        int64_t n = qvl_tensor_numel(t);
        if ((size_t)n * qvl_dtype_size(t->dtype) != t->nbytes) fuzz_fail("nbytes != numel * dtype size");
        float sum = 0;
        for (int64_t k = 0; k < n && k < 64; k++) sum += qvl_tensor_get_f32(t, k);
        fuzz_sink = (unsigned)(sum != sum);
    }
    qvl_st_close(st);
    return 0;
}
