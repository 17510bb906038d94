/* Model weights bound from a checkpoint and converted to float32 (the roles of tensor_names.h).
 * One allocation holds every tensor; the structs below point into it. */
#ifndef QVL_MODEL_WEIGHTS_H
#define QVL_MODEL_WEIGHTS_H
#include <stddef.h>

#include "io/safetensors.h"
#include "model/config.h"

typedef struct {
    const float *norm1_w, *norm1_b;     /* [Dv] LayerNorm */
    const float *qkv_w, *qkv_b;         /* [3Dv, Dv], [3Dv]: rows Q | K | V */
    const float *proj_w, *proj_b;       /* [Dv, Dv], [Dv] */
    const float *norm2_w, *norm2_b;     /* [Dv] */
    const float *fc1_w, *fc1_b;         /* [Iv, Dv], [Iv] */
    const float *fc2_w, *fc2_b;         /* [Dv, Iv], [Dv] */
} qvl_vision_block_w;

typedef struct {
    const float *norm_w, *norm_b;       /* [Dv] (main merger, before the 2x2 shuffle) or [4Dv] (deepstack, after) */
    const float *fc1_w, *fc1_b;         /* [4Dv, 4Dv], [4Dv] */
    const float *fc2_w, *fc2_b;         /* [D, 4Dv], [D] */
} qvl_merger_w;

typedef struct {
    const float *patch_w, *patch_b;     /* [Dv, C*Tp*P*P] (Conv3d flattened), [Dv] */
    const float *pos_embed;             /* [num_position_embeddings, Dv] */
    qvl_vision_block_w *blocks;         /* depth */
    qvl_merger_w merger;
    qvl_merger_w deepstack[QVL_MAX_DEEPSTACK];
} qvl_vision_w;

typedef struct {
    const float *in_norm;               /* [D] */
    const float *q_w, *k_w, *v_w, *o_w; /* [Hq*hd, D], [Hkv*hd, D], [Hkv*hd, D], [D, Hq*hd] */
    const float *q_norm, *k_norm;       /* [hd] */
    const float *post_norm;             /* [D] */
    const float *gate_w, *up_w, *down_w; /* [I, D], [I, D], [D, I] */
} qvl_text_layer_w;

typedef struct {
    const float *embed;                 /* [V, D] */
    qvl_text_layer_w *layers;           /* num_layers */
    const float *norm;                  /* [D] */
    const float *lm_head;               /* [V, D]; == embed when tied */
} qvl_text_w;

struct qvl_qweight;

typedef struct {
    qvl_vision_w vision;
    qvl_text_w text;
    float *data;                        /* the one allocation */
    size_t n_floats;
    /* Quantized Linears (model/quant.h) stay packed: their weight pointers above point at these
     * (the CPU matmul recognises them, qvl_qweight_of). */
    struct qvl_qweight **qw;
    int n_qw;
} qvl_weights;

/* Converts every tensor the config needs from st (already checked by qvl_checkpoint_check) to
 * float32. Returns 0, or -1 + qvl_error. */
int qvl_weights_load(qvl_weights *w, const qvl_config *cfg, const qvl_safetensors *st);
void qvl_weights_free(qvl_weights *w);

#endif
