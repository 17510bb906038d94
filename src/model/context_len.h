/* The context length (--max-model-len) rule that every command and the engine share, so that
 * `qvl mem`, `qvl run`, `qvl eval` and `qvl serve` accept, refuse and default the same values. */
#ifndef QVL_MODEL_CONTEXT_LEN_H
#define QVL_MODEL_CONTEXT_LEN_H
#include "model/config.h"

/* The context used when none is asked for: the model's own limit (262144 for the released
 * checkpoints) would reserve a KV cache far larger than OCR prompts need, so it is capped here. */
enum { QVL_DEFAULT_MAX_MODEL_LEN = 32768, QVL_MIN_MAX_MODEL_LEN = 2 };

/* The context for a requested --max-model-len (<= 0: not given): the default capped at the model's
 * max_position_embeddings; a request is used as is when 2 <= it <= max_position_embeddings. Sets
 * *out and returns 0, or returns -1 with the error "max-model-len: <n> <reason>". */
int qvl_context_len(const qvl_config *cfg, long requested, long *out);

#endif
