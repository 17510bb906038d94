/* The checkpoint's tensors by role (spec section 1.3): each Hugging Face tensor name and its shape
 * is written once, in tensor_names.c. The checker (tensor_check.c), the CPU binder (weights.c) and
 * the CUDA upload (cuda_model.cu) look names and shapes up here instead of spelling them. */
#ifndef QVL_MODEL_TENSOR_NAMES_H
#define QVL_MODEL_TENSOR_NAMES_H
#include <stdint.h>

#include "model/config.h"

typedef enum {
    QVL_GROUP_VISION,    /* patch embed, position table, vision blocks */
    QVL_GROUP_MERGER,    /* model.visual.merger.* */
    QVL_GROUP_DEEPSTACK, /* model.visual.deepstack_merger_list.* */
    QVL_GROUP_TEXT,      /* embed_tokens, decoder layers, final norm */
    QVL_GROUP_LM_HEAD,   /* lm_head.weight (absent, 0 parameters, when tied to embed_tokens) */
    QVL_GROUP_COUNT
} qvl_param_group;

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[5];
    qvl_param_group group;
} qvl_tensor_spec;

/* Every tensor role. Within each run the order is the checkpoint's (the order qvl_expected_tensors
 * lists them in). The index argument of qvl_tensor_role_spec says which block, merger or layer. */
typedef enum {
    /* vision stem (index unused) */
    QVL_TN_PATCH_W, /* [Dv, C, Tp, P, P] Conv3d */
    QVL_TN_PATCH_B,
    QVL_TN_POS_EMBED, /* [num_position_embeddings, Dv] */
    /* vision block `index` */
    QVL_TN_VB_NORM1_W,
    QVL_TN_VB_NORM1_B,
    QVL_TN_VB_NORM2_W,
    QVL_TN_VB_NORM2_B,
    QVL_TN_VB_QKV_W, /* [3Dv, Dv]: rows Q | K | V */
    QVL_TN_VB_QKV_B,
    QVL_TN_VB_PROJ_W,
    QVL_TN_VB_PROJ_B,
    QVL_TN_VB_FC1_W,
    QVL_TN_VB_FC1_B,
    QVL_TN_VB_FC2_W,
    QVL_TN_VB_FC2_B,
    /* patch merger: index -1 the main merger (norm [Dv], before the 2x2 shuffle), k >= 0 deepstack
     * merger k (norm [4Dv], after it) */
    QVL_TN_MG_NORM_W,
    QVL_TN_MG_NORM_B,
    QVL_TN_MG_FC1_W,
    QVL_TN_MG_FC1_B,
    QVL_TN_MG_FC2_W,
    QVL_TN_MG_FC2_B,
    /* text (index unused) */
    QVL_TN_EMBED, /* [V, D] */
    /* text decoder layer `index` */
    QVL_TN_TL_IN_NORM,
    QVL_TN_TL_POST_NORM,
    QVL_TN_TL_Q,
    QVL_TN_TL_K,
    QVL_TN_TL_V,
    QVL_TN_TL_O,
    QVL_TN_TL_Q_NORM,
    QVL_TN_TL_K_NORM,
    QVL_TN_TL_GATE,
    QVL_TN_TL_UP,
    QVL_TN_TL_DOWN,
    /* text (index unused); lm_head.weight exists only when untied */
    QVL_TN_NORM,
    QVL_TN_LM_HEAD,
    QVL_TN_COUNT,
    /* the runs, for walking them */
    QVL_TN_VB_FIRST = QVL_TN_VB_NORM1_W,
    QVL_TN_VB_LAST = QVL_TN_VB_FC2_B,
    QVL_TN_MG_FIRST = QVL_TN_MG_NORM_W,
    QVL_TN_MG_LAST = QVL_TN_MG_FC2_B,
    QVL_TN_TL_FIRST = QVL_TN_TL_IN_NORM,
    QVL_TN_TL_LAST = QVL_TN_TL_DOWN
} qvl_tensor_role;

/* Fills *s with the name, shape and group of role (of vision block, merger or text layer index)
 * under cfg. Linear weights are [out, in]. */
void qvl_tensor_role_spec(const qvl_config *cfg, qvl_tensor_role role, int index, qvl_tensor_spec *s);

/* The product of s's shape. */
int64_t qvl_tensor_spec_numel(const qvl_tensor_spec *s);

#endif
