#include "model/context_len.h"

#include "util/error.h"

int qvl_context_len(const qvl_config *cfg, long requested, long *out) {
    long max_pos = cfg->text.max_position_embeddings;
    if (requested <= 0) {
        *out = max_pos < QVL_DEFAULT_MAX_MODEL_LEN ? max_pos : QVL_DEFAULT_MAX_MODEL_LEN;
        return 0;
    }
    if (requested < QVL_MIN_MAX_MODEL_LEN)
        return qvl_errorf("max-model-len: %ld is too small (at least %d tokens)", requested, QVL_MIN_MAX_MODEL_LEN);
    if (requested > max_pos)
        return qvl_errorf("max-model-len: %ld exceeds the model's max_position_embeddings %ld", requested, max_pos);
    *out = requested;
    return 0;
}
