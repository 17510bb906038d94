/* Expected Qwen3-VL tensors (spec 1.3): every role of tensor_names.h in checkpoint order, checked
 * against a checkpoint and summed into parameter counts. */
#include "model/tensor_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/quant.h"
#include "util/error.h"

static const char *group_names[QVL_GROUP_COUNT] = {"vision", "merger", "deepstack", "text", "lm_head"};

const char *qvl_param_group_name(qvl_param_group g) { return (unsigned)g < QVL_GROUP_COUNT ? group_names[g] : "?"; }

typedef struct {
    const qvl_config *cfg;
    qvl_tensor_spec *v;
    int n, cap;
    int oom;
} spec_list;

/* Appends roles first..last of block, merger or layer index. */
static void add(spec_list *l, qvl_tensor_role first, qvl_tensor_role last, int index) {
    for (int r = first; r <= (int)last && !l->oom; r++) {
        if (l->n == l->cap) {
            int cap = l->cap ? 2 * l->cap : 512;
            qvl_tensor_spec *p = realloc(l->v, (size_t)cap * sizeof *p);
            if (!p) {
                l->oom = 1;
                return;
            }
            l->v = p;
            l->cap = cap;
        }
        qvl_tensor_role_spec(l->cfg, (qvl_tensor_role)r, index, &l->v[l->n++]);
    }
}

qvl_tensor_spec *qvl_expected_tensors(const qvl_config *cfg, int *n) {
    spec_list l = {cfg, NULL, 0, 0, 0};
    add(&l, QVL_TN_PATCH_W, QVL_TN_POS_EMBED, 0);
    for (int i = 0; i < cfg->vision.depth; i++) add(&l, QVL_TN_VB_FIRST, QVL_TN_VB_LAST, i);
    for (int k = -1; k < cfg->vision.n_deepstack; k++) add(&l, QVL_TN_MG_FIRST, QVL_TN_MG_LAST, k); /* -1: main */
    add(&l, QVL_TN_EMBED, QVL_TN_EMBED, 0);
    for (int i = 0; i < cfg->text.num_layers; i++) add(&l, QVL_TN_TL_FIRST, QVL_TN_TL_LAST, i);
    add(&l, QVL_TN_NORM, QVL_TN_NORM, 0);
    if (!cfg->text.tie_word_embeddings) add(&l, QVL_TN_LM_HEAD, QVL_TN_LM_HEAD, 0);

    if (l.oom) {
        free(l.v);
        qvl_errorf("%s: out of memory listing tensors", cfg->model_dir[0] ? cfg->model_dir : "config");
        return NULL;
    }
    *n = l.n;
    return l.v;
}

int qvl_param_count(const qvl_config *cfg, qvl_param_counts *out) {
    memset(out, 0, sizeof *out);
    int n;
    qvl_tensor_spec *s = qvl_expected_tensors(cfg, &n);
    if (!s) return -1;
    for (int i = 0; i < n; i++) {
        int64_t e = qvl_tensor_spec_numel(&s[i]);
        out->group[s[i].group] += e;
        out->total += e;
    }
    free(s);
    return 0;
}

void qvl_shape_str(const int64_t *shape, int ndim, char *buf, int cap) {
    int k = snprintf(buf, (size_t)cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += snprintf(buf + k, (size_t)(cap - k), "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, (size_t)(cap - k), "]");
}

int qvl_checkpoint_check(const qvl_config *cfg, const qvl_safetensors *st) {
    int n;
    qvl_tensor_spec *s = qvl_expected_tensors(cfg, &n);
    if (!s) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (qvl_quant_linear_stored(cfg, st, &s[i])) { /* packed int4 / fp8: quant.c knows its tensors */
            rc = qvl_quant_check_linear(cfg, st, &s[i]);
            continue;
        }
        const qvl_tensor *t = qvl_st_find(st, s[i].name);
        char want[128], got[128];
        qvl_shape_str(s[i].shape, s[i].ndim, want, sizeof want);
        if (!t) {
            rc = qvl_errorf("%s: missing tensor %s (expected shape %s)", qvl_st_path(st), s[i].name, want);
            break;
        }
        int same = t->ndim == s[i].ndim;
        for (int k = 0; same && k < t->ndim; k++) same = t->shape[k] == s[i].shape[k];
        if (!same) {
            qvl_shape_str(t->shape, t->ndim, got, sizeof got);
            rc = qvl_errorf("%s: tensor %s has shape %s, expected %s", t->file, t->name, got, want);
        } else if (t->dtype != QVL_BF16 && t->dtype != QVL_F16 && t->dtype != QVL_F32)
            rc = qvl_errorf("%s: tensor %s has dtype %s, expected BF16, F16 or F32", t->file, t->name,
                            qvl_dtype_name(t->dtype));
    }
    free(s);
    return rc;
}
