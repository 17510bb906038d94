/* The results log reader (src/eval/results.c, the resume log of qvl eval): header, records, a
 * truncated last line. The run's settings given are the file's own header (when it parses), so
 * the fuzzer gets past the settings comparison to the records; a record read back is written out
 * again and must read back the same. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "eval/results.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size);
    char *first = fuzz_cstr(data, nl ? (size_t)(nl - data) : size);
    cJSON *h = cJSON_Parse(first);
    free(first);
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(h, "qvl_run");
    cJSON *empty = cJSON_CreateObject();
    qvl_results r;
    if (qvl_results_open(&r, fuzz_write("run.jsonl", data, size), cJSON_IsObject(settings) ? settings : empty, 0) == 0) {
        for (long i = 0; i < r.n_records; i++) {
            cJSON *j = qvl_eval_record_to_json(&r.records[i]);
            qvl_eval_record back;
            if (!j || qvl_eval_record_from_json(j, "again", &back)) fuzz_fail("a record read does not read back");
            if (back.index != r.records[i].index || back.n_answers != r.records[i].n_answers ||
                strcmp(back.prediction, r.records[i].prediction))
                fuzz_fail("a record read back differs");
            qvl_eval_record_free(&back);
            cJSON_Delete(j);
            if (qvl_results_find(&r, r.records[i].index) == NULL) fuzz_fail("a record is not found by index");
        }
    }
    qvl_results_close(&r);
    cJSON_Delete(empty);
    cJSON_Delete(h);
    return 0;
}
