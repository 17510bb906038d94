/* The Python-literal parser (src/eval/pylit.c) of the TSV answer column. */
#include <stdlib.h>

#include "eval/pylit.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = fuzz_cstr(data, size);
    char **list = NULL;
    int n = qvl_pylit_string_list(s, &list);
    if (n == 0) fuzz_fail("parser returned an empty list");
    if (n > 0) {
        for (int i = 0; i < n; i++)
            if (!list[i]) fuzz_fail("NULL string in the list");
        qvl_pylit_free(list, n);
    }
    free(s);
    return 0;
}
