/* config.json / preprocessor_config.json / generation_config.json. The first byte picks the file
 * ('m' config.json, 'p' preprocessor_config.json, 'g' generation_config.json; others by value mod 3);
 * the last two are read on top of the bundled model's config.json, as qvl_config_load does. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "model/config.h"

static qvl_config base;
static int have_base;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!have_base) {
        if (qvl_config_load_main(fuzz_repo_path("models/qvl-tiny-ocr/config.json"), &base)) abort();
        have_base = 1;
    }
    if (size < 1) return 0;
    int which = data[0] == 'm' ? 0 : data[0] == 'p' ? 1 : data[0] == 'g' ? 2 : data[0] % 3;
    static qvl_config cfg;
    memcpy(&cfg, &base, sizeof cfg);
    const char *names[3] = {"config.json", "preprocessor_config.json", "generation_config.json"};
    const char *path = fuzz_write(names[which], data + 1, size - 1);
    if (which == 0) {
        memset(&cfg, 0, sizeof cfg);
        if (qvl_config_load_main(path, &cfg) == 0) {
            if (qvl_preproc_load(fuzz_repo_path("models/qvl-tiny-ocr/preprocessor_config.json"), &cfg) == 0)
                (void)qvl_config_image_params(&cfg);
            (void)qvl_generation_load(fuzz_repo_path("models/qvl-tiny-ocr/generation_config.json"), &cfg);
        }
    } else if (which == 1) {
        if (qvl_preproc_load(path, &cfg) == 0) (void)qvl_config_image_params(&cfg);
    } else {
        if (qvl_generation_load(path, &cfg) == 0 && (cfg.gen.n_eos < 0 || cfg.gen.n_eos > QVL_MAX_EOS))
            fuzz_fail("eos count out of range");
    }
    return 0;
}
