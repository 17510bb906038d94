/* Tensor roles (src/model/tensor_names.h) against the released 8B's names and shapes (spec 1.3). */
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/tensor_check.h"
#include "model/tensor_names.h"
#include "test.h"

TEST(tensor_names_roles_8b) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load("tests/fixtures/configs/8b", &cfg), 0);
    qvl_tensor_spec s;
    qvl_tensor_role_spec(&cfg, QVL_TN_PATCH_W, 0, &s);
    CHECK_STR(s.name, "model.visual.patch_embed.proj.weight");
    CHECK_INT(s.ndim, 5);
    CHECK_INT(qvl_tensor_spec_numel(&s), 1152 * 3 * 2 * 16 * 16);
    CHECK_INT(s.group, QVL_GROUP_VISION);
    qvl_tensor_role_spec(&cfg, QVL_TN_VB_QKV_W, 26, &s);
    CHECK_STR(s.name, "model.visual.blocks.26.attn.qkv.weight");
    CHECK_INT(s.ndim, 2);
    CHECK_INT(s.shape[0], 3 * 1152);
    CHECK_INT(s.shape[1], 1152);
    qvl_tensor_role_spec(&cfg, QVL_TN_MG_NORM_W, -1, &s);
    CHECK_STR(s.name, "model.visual.merger.norm.weight");
    CHECK_INT(s.shape[0], 1152);
    CHECK_INT(s.group, QVL_GROUP_MERGER);
    qvl_tensor_role_spec(&cfg, QVL_TN_MG_NORM_B, 2, &s);
    CHECK_STR(s.name, "model.visual.deepstack_merger_list.2.norm.bias");
    CHECK_INT(s.shape[0], 4 * 1152);
    CHECK_INT(s.group, QVL_GROUP_DEEPSTACK);
    qvl_tensor_role_spec(&cfg, QVL_TN_TL_K, 35, &s);
    CHECK_STR(s.name, "model.language_model.layers.35.self_attn.k_proj.weight");
    CHECK_INT(s.shape[0], 8 * 128);
    CHECK_INT(s.shape[1], 4096);
    CHECK_INT(s.group, QVL_GROUP_TEXT);
    qvl_tensor_role_spec(&cfg, QVL_TN_TL_DOWN, 0, &s);
    CHECK_STR(s.name, "model.language_model.layers.0.mlp.down_proj.weight");
    CHECK_INT(s.shape[0], 4096);
    CHECK_INT(s.shape[1], 12288);
    qvl_tensor_role_spec(&cfg, QVL_TN_NORM, 0, &s);
    CHECK_STR(s.name, "model.language_model.norm.weight");
    qvl_tensor_role_spec(&cfg, QVL_TN_LM_HEAD, 0, &s);
    CHECK_STR(s.name, "lm_head.weight");
    CHECK_INT(s.shape[0], 151936);
    CHECK_INT(s.group, QVL_GROUP_LM_HEAD);

    /* Every role (of block 0, the main merger, layer 0) is in the expected list once, same shape. */
    int n = 0;
    qvl_tensor_spec *list = qvl_expected_tensors(&cfg, &n);
    CHECK(list != NULL);
    for (int r = 0; r < QVL_TN_COUNT; r++) {
        qvl_tensor_role_spec(&cfg, (qvl_tensor_role)r, r >= QVL_TN_MG_FIRST && r <= QVL_TN_MG_LAST ? -1 : 0, &s);
        int hits = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(list[i].name, s.name)) {
                hits++;
                CHECK_INT(list[i].ndim, s.ndim);
                CHECK_INT(qvl_tensor_spec_numel(&list[i]), qvl_tensor_spec_numel(&s));
            }
        CHECK_INT(hits, 1);
    }
    free(list);
}
