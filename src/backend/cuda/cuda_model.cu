/* The CUDA model of model_cuda.h: arena planning, weight upload, vision tower, text prefill and
 * decode. Reads like src/backend/cpu/{vision,text}.c, with BF16 rounding at the points of
 * docs/model.md section 8. One stream; the host only waits for the picked id (argmax, or
 * cuda_sample.cu's pick kernel for sampling and penalties). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <type_traits>

#include <cuda_profiler_api.h>

#include "backend/cuda/cuda_model_impl.h"
extern "C" {
#include "backend/cuda/cuda_device.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/model_cuda.h"
#include "model/tensor_check.h"
#include "model/tensor_names.h"
#include "util/error.h"
}


static void alloc_pixel_staging(qvl_cuda_model *m);
static double MiB(size_t b) { return (double)b / 1048576.0; }
static double wall_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}
static int capture_decode(qvl_cuda_model *m);
static int tune_decode_gemv(qvl_cuda_model *m);
static int prepare_gemms(qvl_cuda_model *m);
static int lm_head(qvl_cuda_model *m, const bf16 *x);

static void sample_peak(qvl_cuda_model *m) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && MiB(tot - fr) > m->peak_mib) m->peak_mib = MiB(tot - fr);
}

/* ---- arena: the same walk sizes it (base NULL) and then hands out the pointers ---- */
typedef struct {
    char *base;
    size_t used;
} bump;
static void *take(bump *b, size_t bytes) {
    size_t off = (b->used + 255) & ~(size_t)255;
    b->used = off + bytes;
    return b->base ? b->base + off : NULL;
}
#define TAKE(b, ptr, count) ((ptr) = (std::remove_reference<decltype(ptr)>::type)take((b), (size_t)(count) * sizeof(*(ptr))))

/* The weight of the Linear of parts role .. role + n_parts - 1 (fused along N, numel values in BF16):
 * packed where cuda_quant takes it (registered once placed), else BF16. */
static void take_linear(qvl_cuda_model *m, bump *b, bf16 **ptr, int role, int n_parts, int index, size_t numel) {
    qvl_tensor_spec parts[3];
    qvl_cuda_qlin d;
    for (int i = 0; i < n_parts; i++) qvl_tensor_role_spec(&m->cfg, (qvl_tensor_role)(role + i), index, &parts[i]);
    if (!m->ckpt || !qvl_cuda_qlin_plan(&m->cfg, m->ckpt, parts, n_parts, &d)) {
        TAKE(b, *ptr, numel);
        return;
    }
    *ptr = (bf16 *)take(b, qvl_cuda_qlin_bytes(&d));
    if (qvl_cuda_qlin_scratch(&d) > m->qscratch_elems) m->qscratch_elems = qvl_cuda_qlin_scratch(&d);
    if (!b->base) return;
    if (m->n_qlin == m->cap_qlin) {
        int cap = m->cap_qlin ? 2 * m->cap_qlin : 64;
        void *grown = realloc(m->qlin, (size_t)cap * sizeof *m->qlin);
        if (!grown) { /* out of host memory: the upload fails on the missing entry's tensor */
            m->ckpt = NULL;
            return;
        }
        m->qlin = (qvl_cuda_model::qlin_entry *)grown, m->cap_qlin = cap;
    }
    qvl_cuda_qlin_place(&d, *ptr);
    m->qlin[m->n_qlin].w = *ptr, m->qlin[m->n_qlin].d = d, m->n_qlin++;
}
#define LIN(b, ptr, role, n_parts, index, numel) take_linear(m, (b), &(ptr), (role), (n_parts), (index), (numel))

static void layout_weights(qvl_cuda_model *m, bump *b) {
    m->n_qlin = 0, m->qscratch_elems = 0;
    const qvl_vision_config *v = &m->cfg.vision;
    const qvl_text_config *t = &m->cfg.text;
    const size_t Dv = v->hidden_size, Iv = v->intermediate_size, D = t->hidden_size, I = t->intermediate_size;
    const size_t row = (size_t)v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size;
    const size_t Dv4 = Dv * v->spatial_merge_size * v->spatial_merge_size, hd = t->head_dim;
    const size_t qdim = t->num_heads * hd, kv = t->num_kv_heads * hd;
    TAKE(b, m->patch_w, Dv * row);
    TAKE(b, m->patch_b, Dv);
    TAKE(b, m->pos_embed, (size_t)v->num_position_embeddings * Dv);
    for (int i = 0; i < v->depth; i++) {
        vblock *k = &m->vb[i];
        TAKE(b, k->norm1_w, Dv), TAKE(b, k->norm1_b, Dv), LIN(b, k->qkv_w, QVL_TN_VB_QKV_W, 1, i, 3 * Dv * Dv);
        TAKE(b, k->qkv_b, 3 * Dv), LIN(b, k->proj_w, QVL_TN_VB_PROJ_W, 1, i, Dv * Dv), TAKE(b, k->proj_b, Dv);
        TAKE(b, k->norm2_w, Dv), TAKE(b, k->norm2_b, Dv), LIN(b, k->fc1_w, QVL_TN_VB_FC1_W, 1, i, Iv * Dv);
        TAKE(b, k->fc1_b, Iv), LIN(b, k->fc2_w, QVL_TN_VB_FC2_W, 1, i, Dv * Iv), TAKE(b, k->fc2_b, Dv);
    }
    for (int j = -1; j < v->n_deepstack; j++) {
        merger *g = j < 0 ? &m->mg : &m->ds[j];
        size_t nd = j < 0 ? Dv : Dv4;
        TAKE(b, g->norm_w, nd), TAKE(b, g->norm_b, nd), LIN(b, g->fc1_w, QVL_TN_MG_FC1_W, 1, j, Dv4 * Dv4);
        TAKE(b, g->fc1_b, Dv4), LIN(b, g->fc2_w, QVL_TN_MG_FC2_W, 1, j, D * Dv4), TAKE(b, g->fc2_b, D);
    }
    if (m->embed_on_host)
        m->embed = m->embed_host;
    else
        TAKE(b, m->embed, (size_t)t->vocab_size * D);
    for (int l = 0; l < t->num_layers; l++) {
        tlayer *L = &m->tl[l];
        TAKE(b, L->in_norm, D), LIN(b, L->qkv_w, QVL_TN_TL_Q, 3, l, (qdim + 2 * kv) * D), TAKE(b, L->q_norm, hd);
        TAKE(b, L->k_norm, hd), LIN(b, L->o_w, QVL_TN_TL_O, 1, l, D * qdim), TAKE(b, L->post_norm, D);
        LIN(b, L->gu_w, QVL_TN_TL_GATE, 2, l, 2 * I * D), LIN(b, L->down_w, QVL_TN_TL_DOWN, 1, l, D * I);
    }
    TAKE(b, m->norm, D);
    if (t->tie_word_embeddings)
        m->lm_head = m->embed;
    else
        LIN(b, m->lm_head, QVL_TN_LM_HEAD, 1, 0, (size_t)t->vocab_size * D);
    m->qscratch = NULL;
    if (m->qscratch_elems) TAKE(b, m->qscratch, m->qscratch_elems); /* counted with the weights by the plan */
}

/* The buffers after the weights: mem_plan.c's list (qvl_mem_plan_buffers), the one the plan adds
 * up, walked here in its order. */
static void *buffer_slot(qvl_cuda_model *m, int id, void ***slot) {
    switch (id) {
    case QVL_BUF_VIS_INV_FREQ: *slot = (void **)&m->vis_inv_freq; break;
    case QVL_BUF_TXT_INV_FREQ: *slot = (void **)&m->txt_inv_freq; break;
    case QVL_BUF_VX: *slot = (void **)&m->vx; break;
    case QVL_BUF_VY: *slot = (void **)&m->vy; break;
    case QVL_BUF_VQKV: *slot = (void **)&m->vqkv; break;
    case QVL_BUF_VHID: *slot = (void **)&m->vhid; break;
    case QVL_BUF_K_CACHE: *slot = (void **)&m->k_cache; break;
    case QVL_BUF_V_CACHE: *slot = (void **)&m->v_cache; break;
    case QVL_BUF_X: *slot = (void **)&m->x; break;
    case QVL_BUF_Y: *slot = (void **)&m->y; break;
    case QVL_BUF_QKV: *slot = (void **)&m->qkv; break;
    case QVL_BUF_ATT: *slot = (void **)&m->att; break;
    case QVL_BUF_GU: *slot = (void **)&m->gu; break;
    case QVL_BUF_H: *slot = (void **)&m->h; break;
    case QVL_BUF_LOGITS: *slot = (void **)&m->logits; break;
    case QVL_BUF_IDS: *slot = (void **)&m->d_ids; break;
    case QVL_BUF_POS: *slot = (void **)&m->d_pos; break;
    case QVL_BUF_VIS: *slot = (void **)&m->d_vis; break;
    case QVL_BUF_NEXT: *slot = (void **)&m->d_next; break;
    case QVL_BUF_STEP: *slot = (void **)&m->d_step; break;
    case QVL_BUF_ATT_PARTIAL: *slot = (void **)&m->att_partial; break;
    case QVL_BUF_GEMM_WS: *slot = (void **)&m->gemm_ws; break;
    case QVL_BUF_SYNC: *slot = (void **)&m->sync; break;
    case QVL_BUF_PICK_STATE: *slot = (void **)&m->pick_state; break;
    case QVL_BUF_PICK_FLAGS: *slot = (void **)&m->pick_flags; break;
    case QVL_BUF_PICK_WORK: *slot = (void **)&m->pick_work; break;
    case QVL_BUF_PICK_UNIFORMS: *slot = (void **)&m->pick_uniforms; break;
    case QVL_BUF_GATHER_K: *slot = (void **)&m->gather_k; break;
    case QVL_BUF_GATHER_V: *slot = (void **)&m->gather_v; break;
    case QVL_BUF_BATCH_IN: *slot = (void **)&m->batch_in; break;
    default:
        if (id >= QVL_BUF_IMG && id <= QVL_BUF_IMG + QVL_MAX_DEEPSTACK) *slot = (void **)&m->img[id - QVL_BUF_IMG];
        else *slot = NULL;
    }
    return *slot;
}

static int layout_buffers(qvl_cuda_model *m, bump *b) {
    qvl_plan_buf bufs[QVL_BUF_COUNT];
    int n = qvl_mem_plan_buffers(&m->cfg, &m->pin, bufs);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        void **slot;
        void *p = take(b, (size_t)bufs[i].bytes);
        if (!buffer_slot(m, bufs[i].id, &slot)) return qvl_errorf("cuda: plan buffer %d has no place", bufs[i].id);
        *slot = p;
    }
    return 0;
}

/* ---- weight upload ---- */
static int upload(const qvl_safetensors *st, bf16 *dst, const char *name, size_t expect) {
    const qvl_tensor *t = qvl_st_find(st, name);
    if (!t) return qvl_errorf("%s: missing tensor %s", qvl_st_path(st), name);
    size_t n = (size_t)qvl_tensor_numel(t);
    if (n != expect) return qvl_errorf("%s: tensor %s has %zu values, expected %zu", qvl_st_path(st), name, n, expect);
    if (t->dtype == QVL_BF16) {
        CK(cudaMemcpy(dst, t->data, n * 2, cudaMemcpyHostToDevice));
        return 0;
    }
    float *tmp = (float *)malloc(n * sizeof(float));
    uint16_t *h = (uint16_t *)malloc(n * 2);
    if (!tmp || !h || qvl_tensor_to_f32(t, tmp) != 0) {
        free(tmp), free(h);
        return qvl_errorf("%s: cannot convert %s", qvl_st_path(st), name);
    }
    for (size_t i = 0; i < n; i++) {
        bf16 x = __float2bfloat16(tmp[i]);
        memcpy(&h[i], &x, 2);
    }
    cudaError_t e = cudaMemcpy(dst, h, n * 2, cudaMemcpyHostToDevice);
    free(tmp), free(h);
    CK(e);
    return 0;
}

/* Uploads role's tensor (of block, merger or layer index) to dst; its size comes from the role's shape. */
static int upload_role(const qvl_safetensors *st, const qvl_config *c, bf16 *dst, qvl_tensor_role role, int index) {
    qvl_tensor_spec s;
    qvl_tensor_role_spec(c, role, index, &s);
    return upload(st, dst, s.name, (size_t)qvl_tensor_spec_numel(&s));
}

/* The Linear of parts role .. role + n_parts - 1 at dst: packed as placed, or BF16 rows one part
 * after the other (a packed part the kernels do not take is dequantized on the host). */
static int upload_linear(qvl_cuda_model *m, const qvl_safetensors *st, bf16 *dst, int role, int n_parts, int index) {
    qvl_tensor_spec parts[3];
    for (int i = 0; i < n_parts; i++) qvl_tensor_role_spec(&m->cfg, (qvl_tensor_role)(role + i), index, &parts[i]);
    for (int i = 0; i < m->n_qlin; i++)
        if (m->qlin[i].w == dst) return qvl_cuda_qlin_upload(&m->qlin[i].d, &m->cfg, st, parts, n_parts);
    size_t off = 0;
    for (int i = 0; i < n_parts; i++) {
        int rc = qvl_quant_linear_stored(&m->cfg, st, &parts[i])
                     ? qvl_cuda_qlin_upload_bf16(&m->cfg, st, &parts[i], dst + off)
                     : upload(st, dst + off, parts[i].name, (size_t)qvl_tensor_spec_numel(&parts[i]));
        if (rc) return rc;
        off += (size_t)qvl_tensor_spec_numel(&parts[i]);
    }
    return 0;
}

static int upload_all(qvl_cuda_model *m, const qvl_safetensors *st) {
    const qvl_vision_config *v = &m->cfg.vision;
    const qvl_text_config *t = &m->cfg.text;
    const size_t hd = t->head_dim;
    int rc = 0;
#define UP(ptr, role, index) (rc = rc ? rc : upload_role(st, &m->cfg, (ptr), (role), (index)))
#define UPL(ptr, role, n_parts, index) (rc = rc ? rc : upload_linear(m, st, (ptr), (role), (n_parts), (index)))
    UP(m->patch_w, QVL_TN_PATCH_W, 0), UP(m->patch_b, QVL_TN_PATCH_B, 0), UP(m->pos_embed, QVL_TN_POS_EMBED, 0);
    for (int i = 0; i < v->depth && !rc; i++) {
        vblock *k = &m->vb[i];
        UP(k->norm1_w, QVL_TN_VB_NORM1_W, i), UP(k->norm1_b, QVL_TN_VB_NORM1_B, i);
        UPL(k->qkv_w, QVL_TN_VB_QKV_W, 1, i), UP(k->qkv_b, QVL_TN_VB_QKV_B, i);
        UPL(k->proj_w, QVL_TN_VB_PROJ_W, 1, i), UP(k->proj_b, QVL_TN_VB_PROJ_B, i);
        UP(k->norm2_w, QVL_TN_VB_NORM2_W, i), UP(k->norm2_b, QVL_TN_VB_NORM2_B, i);
        UPL(k->fc1_w, QVL_TN_VB_FC1_W, 1, i), UP(k->fc1_b, QVL_TN_VB_FC1_B, i);
        UPL(k->fc2_w, QVL_TN_VB_FC2_W, 1, i), UP(k->fc2_b, QVL_TN_VB_FC2_B, i);
    }
    for (int j = -1; j < v->n_deepstack && !rc; j++) { /* -1: the main merger */
        merger *g = j < 0 ? &m->mg : &m->ds[j];
        UP(g->norm_w, QVL_TN_MG_NORM_W, j), UP(g->norm_b, QVL_TN_MG_NORM_B, j);
        UPL(g->fc1_w, QVL_TN_MG_FC1_W, 1, j), UP(g->fc1_b, QVL_TN_MG_FC1_B, j);
        UPL(g->fc2_w, QVL_TN_MG_FC2_W, 1, j), UP(g->fc2_b, QVL_TN_MG_FC2_B, j);
    }
    UP(m->embed, QVL_TN_EMBED, 0);
    for (int l = 0; l < t->num_layers && !rc; l++) {
        tlayer *L = &m->tl[l];
        UP(L->in_norm, QVL_TN_TL_IN_NORM, l);
        /* fused: qkv_w holds the q | k | v rows, gu_w the gate | up rows */
        UPL(L->qkv_w, QVL_TN_TL_Q, 3, l);
        UP(L->q_norm, QVL_TN_TL_Q_NORM, l);
        UP(L->k_norm, QVL_TN_TL_K_NORM, l);
        UPL(L->o_w, QVL_TN_TL_O, 1, l);
        UP(L->post_norm, QVL_TN_TL_POST_NORM, l);
        UPL(L->gu_w, QVL_TN_TL_GATE, 2, l);
        UPL(L->down_w, QVL_TN_TL_DOWN, 1, l);
    }
    UP(m->norm, QVL_TN_NORM, 0);
    if (!t->tie_word_embeddings) UPL(m->lm_head, QVL_TN_LM_HEAD, 1, 0);
#undef UP
#undef UPL
    if (rc) return rc;
    /* Rotary inverse frequencies in float32 as the reference computes them. */
    float vf[512] = {0}, tf[1024] = {0};
    int vhd = v->hidden_size / v->num_heads, rdim = vhd / 2;
    for (int j = 0; j < rdim / 2; j++) vf[j] = 1.0f / powf(10000.0f, (float)(2 * j) / (float)rdim);
    for (int i = 0; i < (int)hd / 2; i++) tf[i] = 1.0f / powf((float)t->rope_theta, (float)(2 * i) / (float)hd);
    CK(cudaMemcpy(m->vis_inv_freq, vf, sizeof vf, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(m->txt_inv_freq, tf, hd / 2 * sizeof(float), cudaMemcpyHostToDevice));
    return 0;
}

/* ---- open / close ---- */
static int check_dims(const qvl_config *c) {
    int vhd = c->vision.hidden_size / c->vision.num_heads;
    if (c->text.head_dim > 128 || vhd > 128 || c->text.head_dim % 2 || vhd % 4 || c->text.head_dim > 1024)
        return qvl_errorf("%s/config.json: head sizes %d (text) / %d (vision) above the CUDA kernels' 128",
                          c->model_dir, c->text.head_dim, vhd);
    if (c->text.num_heads % c->text.num_kv_heads || c->text.num_heads / c->text.num_kv_heads > QVL_ATT_BQ)
        return qvl_errorf("%s/config.json: unsupported GQA layout %d / %d heads", c->model_dir, c->text.num_heads,
                          c->text.num_kv_heads);
    if (c->vision.out_hidden_size != c->text.hidden_size)
        return qvl_errorf("%s/config.json: vision out_hidden_size differs from text hidden_size", c->model_dir);
    return 0;
}

qvl_cuda_model *qvl_cuda_model_open(const char *dir, const qvl_cuda_opts *o) {
    qvl_cuda_model *m = (qvl_cuda_model *)calloc(1, sizeof *m);
    qvl_safetensors *st = NULL;
    if (!m) {
        qvl_errorf("%s: out of memory", dir);
        return NULL;
    }
    if (qvl_cuda_device_count() <= 0) {
        qvl_errorf("cuda: no usable CUDA device");
        goto fail;
    }
    m->tuning = o->tuning;
    if (qvl_config_load(dir, &m->cfg) || check_dims(&m->cfg)) goto fail;
    if (!(st = qvl_st_open(dir)) || qvl_checkpoint_check(&m->cfg, st)) goto fail;
    m->ckpt = st;
    {
        const qvl_config *c = &m->cfg;
        m->max_len = o && o->max_model_len > 0 ? o->max_model_len : DEFAULT_MAX_LEN;
        long max_px = o && o->max_pixels > 0 ? o->max_pixels : c->preproc.max_pixels;
        m->chunk = o && o->prefill_chunk > 0 ? o->prefill_chunk : QVL_PLAN_PREFILL_CHUNK;
        if (m->chunk > m->max_len) m->chunk = (int)m->max_len;
        qvl_cuda_device_info(m->device, sizeof m->device, NULL);
        double ctx = qvl_cuda_context_mib();
        m->vb = (vblock *)calloc(c->vision.depth, sizeof *m->vb);
        m->tl = (tlayer *)calloc(c->text.num_layers, sizeof *m->tl);
        m->h_pos = (int32_t *)malloc(3 * m->max_len * sizeof(int32_t));
        m->h_vis = (int32_t *)malloc(m->max_len * sizeof(int32_t));
        if (!m->vb || !m->tl || !m->h_pos || !m->h_vis) {
            qvl_errorf("%s: out of memory", dir);
            goto fail;
        }
        m->embed_on_host = qvl_cuda_embed_on_host(c);
        bump wb = {NULL, 0};
        layout_weights(m, &wb);
        qvl_plan_inputs pin;
        memset(&pin, 0, sizeof pin);
        pin.max_model_len = m->max_len, pin.max_pixels = max_px;
        pin.max_image_tokens = o ? o->max_image_tokens : 0, pin.kv_dtype = o ? o->kv_dtype : 0;
        pin.vision_mlp_chunk = o ? o->vision_mlp_chunk : 0;
        pin.prefill_chunk = m->chunk;
        m->batched = o && o->batched;
        /* FP8 KV: the paged kernels of the batched path (the backend's) read and write e4m3; the
         * one-sequence path's contiguous cache and its decode graph stay BF16. */
        if (pin.kv_dtype != QVL_PLAN_KV_BF16 && (pin.kv_dtype != QVL_PLAN_KV_FP8 || !m->batched)) {
            if (pin.kv_dtype == QVL_PLAN_KV_FP8)
                qvl_errorf("kv-dtype: fp8 runs on the batched CUDA path (the cuda backend); the one-sequence path reads bf16");
            else
                qvl_errorf("kv-dtype: %d is not bf16 (%d) or fp8 (%d)", pin.kv_dtype, QVL_PLAN_KV_BF16, QVL_PLAN_KV_FP8);
            goto fail;
        }
        m->kv_fp8 = pin.kv_dtype == QVL_PLAN_KV_FP8;
        if (m->batched) {
            /* many sequences: the KV pool and the sequences from the cap (qvl_mem_plan_batched) */
            pin.sequences = o->max_seqs, pin.kv_blocks = o->kv_blocks, pin.kv_block_tokens = o->kv_block_tokens;
            pin.token_budget = o->token_budget, pin.vision_tokens = o->vision_tokens;
            pin.image_cache_tokens = o->image_cache_tokens;
            if (qvl_mem_plan_batched(c, (double)wb.used, &pin, ctx, (double)o->gpu_mem_mib, &m->plan)) goto fail;
            m->chunk = m->plan.token_budget;
            m->max_tokens = m->plan.max_image_tokens;
            m->max_patches = m->plan.vision_tokens * c->vision.spatial_merge_size * c->vision.spatial_merge_size;
        } else {
            if (qvl_mem_plan_compute_inputs(c, (double)wb.used, &pin, ctx, &m->plan)) goto fail;
            m->max_tokens = m->plan.max_image_tokens;
            m->max_patches = m->max_tokens * c->vision.spatial_merge_size * c->vision.spatial_merge_size;
        }
        m->pin = pin;
        m->hid_rows = m->plan.vision_mlp_chunk;
        bump all = {NULL, 0};
        layout_weights(m, &all);
        if (layout_buffers(m, &all)) goto fail;
        m->arena_bytes = all.used;
        double need = m->plan.total; /* context + arena + the runtime term, as `qvl mem` shows it */
        const qvl_mem_plan *p = &m->plan;
        if (o && o->gpu_mem_mib > 0 && need > (double)o->gpu_mem_mib) {
            qvl_errorf("gpu-mem: %ld MiB is below the plan's %.0f MiB (context %.0f + weights %.0f + KV cache %.0f for "
                       "%ld tokens + vision %.0f for %ld image tokens + workspace %.0f); lower --max-model-len or "
                       "--max-pixels%s",
                       o->gpu_mem_mib, need, p->cuda_context, p->weights, p->kv_cache, p->max_model_len,
                       p->vision_activations, p->max_image_tokens, p->workspace,
                       (double)o->gpu_mem_mib < p->cuda_context + p->weights ? " (the weights alone do not fit)" : "");
            goto fail;
        }
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess || MiB(fr) < MiB(m->arena_bytes)) {
            qvl_errorf("cuda: the plan needs %.0f MiB on the device but %.0f MiB are free; lower --max-model-len or "
                       "--max-pixels",
                       MiB(m->arena_bytes), MiB(fr));
            goto fail;
        }
        if (cudaMalloc((void **)&m->arena, m->arena_bytes) != cudaSuccess) {
            qvl_errorf("cuda: cannot allocate the %.0f MiB arena", MiB(m->arena_bytes));
            goto fail;
        }
        if (m->embed_on_host) {
            if (cudaHostAlloc(&m->embed_pinned, (size_t)c->text.vocab_size * c->text.hidden_size * sizeof(bf16),
                              cudaHostAllocMapped) != cudaSuccess ||
                cudaHostGetDevicePointer((void **)&m->embed_host, m->embed_pinned, 0) != cudaSuccess) {
                qvl_errorf("cuda: cannot allocate the input embedding table in pinned host memory");
                goto fail;
            }
        }
        bump real = {m->arena, 0};
        layout_weights(m, &real);
        if (layout_buffers(m, &real)) goto fail;
        static_assert(sizeof(qvl_sync) <= QVL_PLAN_SYNC_BYTES, "the plan's QVL_BUF_SYNC holds qvl_sync");
        /* (the legacy stream: done before the model's own non-blocking stream ever runs) */
        if (cudaMemset(m->sync, 0, sizeof(qvl_sync)) != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
            qvl_errorf("cuda: cannot clear the kernel counters");
            goto fail;
        }
        if (cudaStreamCreateWithFlags(&m->st, cudaStreamNonBlocking) != cudaSuccess ||
            !(m->gemm = qvl_gemm_new(m->gemm_ws, GEMM_WS, m->tuning.gemv_variant))) {
            qvl_errorf("cuda: cannot create the stream or the cuBLASLt handle");
            goto fail;
        }
        if (upload_all(m, st)) goto fail;
        qvl_st_close(st);
        st = NULL;
        m->ckpt = NULL;
        m->gelu_epilogue = 1;
        if (m->batched ? prepare_gemms(m) : tune_decode_gemv(m) || prepare_gemms(m) || capture_decode(m)) goto fail;
        alloc_pixel_staging(m);
        sample_peak(m);
    }
    return m;
fail:
    qvl_st_close(st);
    qvl_cuda_model_close(m);
    return NULL;
}

void qvl_cuda_model_close(qvl_cuda_model *m) {
    if (!m) return;
    if (m->decode_graph) cudaGraphExecDestroy(m->decode_graph);
    if (m->pick_graph) cudaGraphExecDestroy(m->pick_graph);
    if (m->gemm) qvl_gemm_free(m->gemm);
    if (m->st) cudaStreamDestroy(m->st);
    if (m->arena) cudaFree(m->arena);
    if (m->embed_pinned) cudaFreeHost(m->embed_pinned);
    if (m->pix_stage) cudaFreeHost(m->pix_stage);
    if (m->pix_done) cudaEventDestroy(m->pix_done);
    free(m->vb), free(m->tl), free(m->h_pos), free(m->h_vis), free(m->qlin);
    free(m);
}

const qvl_config *qvl_cuda_model_config(const qvl_cuda_model *m) { return &m->cfg; }
const qvl_mem_plan *qvl_cuda_model_plan(const qvl_cuda_model *m) { return &m->plan; }
double qvl_cuda_model_arena_mib(const qvl_cuda_model *m) { return MiB(m->arena_bytes); }
double qvl_cuda_model_peak_mib(const qvl_cuda_model *m) { return m->peak_mib; }
long qvl_cuda_model_max_image_tokens(const qvl_cuda_model *m) { return m->max_tokens; }
const char *qvl_cuda_model_device_name(const qvl_cuda_model *m) { return m->device; }
const char *qvl_cuda_model_gemv_report(const qvl_cuda_model *m) { return m->gemv_report; }
void qvl_cuda_profiler(int on) {
    if (on)
        cudaProfilerStart();
    else
        cudaProfilerStop();
}
void qvl_cuda_model_gemm_setups(const qvl_cuda_model *m, int *count, double *ms, double *prepare_ms) {
    qvl_gemm_setup_stats(m->gemm, count, ms);
    *prepare_ms = m->prepare_ms;
}
int qvl_cuda_seq_len(const qvl_cuda_model *m) { return m->len; }

/* Pinned staging for BF16 pixels, max_patches rows. Optional: without it (pinned memory refused)
 * callers pass F32 pixels as before. */
static void alloc_pixel_staging(qvl_cuda_model *m) {
    const qvl_vision_config *v = &m->cfg.vision;
    const size_t row = (size_t)v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size;
    const size_t bytes = (size_t)m->max_patches * row * sizeof(uint16_t);
    if (cudaEventCreateWithFlags(&m->pix_done, cudaEventDisableTiming) != cudaSuccess) {
        m->pix_done = NULL;
        return;
    }
    if (cudaHostAlloc((void **)&m->pix_stage, bytes, cudaHostAllocDefault) != cudaSuccess) {
        m->pix_stage = NULL;
        cudaGetLastError(); /* not sticky; clear it */
        return;
    }
    m->pix_stage_bytes = bytes;
}

void *qvl_cuda_pixel_staging(qvl_cuda_model *m, size_t *bytes) {
    *bytes = 0;
    if (!m || !m->pix_stage) return NULL;
    if (m->pix_pending && cudaEventSynchronize(m->pix_done) != cudaSuccess) return NULL;
    m->pix_pending = 0;
    *bytes = m->pix_stage_bytes;
    return m->pix_stage;
}

/* ---- dumps (tuning.dump_dir): device bf16 -> host float32 .npy ---- */
static void dump(qvl_cuda_model *m, const char *name, const bf16 *x, int rows, int cols) {
    if (!m->tuning.dump_dir) return;
    size_t n = (size_t)rows * cols;
    uint16_t *h = (uint16_t *)malloc(n * 2);
    float *f = (float *)malloc(n * sizeof(float));
    if (h && f && cudaStreamSynchronize(m->st) == cudaSuccess &&
        cudaMemcpy(h, x, n * 2, cudaMemcpyDeviceToHost) == cudaSuccess) {
        for (size_t i = 0; i < n; i++) f[i] = qvl_bf16_to_f32(h[i]);
        int64_t shape[2] = {rows, cols};
        qvl_dump_f32(m->tuning.dump_dir, name, f, shape, 2);
    }
    free(h), free(f);
}

/* ---- vision ---- */

static int merge(qvl_cuda_model *m, const merger *w, int post, int n, bf16 *out) {
    const qvl_vision_config *v = &m->cfg.vision;
    const int Dv = v->hidden_size, unit = v->spatial_merge_size * v->spatial_merge_size, Dv4 = Dv * unit;
    const int D = m->cfg.text.hidden_size, nm = n / unit;
    if (post)
        qvl_k_layernorm(m->st, m->vy, m->vx, w->norm_w, w->norm_b, nm, Dv4, 1e-6f);
    else
        qvl_k_layernorm(m->st, m->vy, m->vx, w->norm_w, w->norm_b, n, Dv, 1e-6f);
    G(qvl_cuda_lin(m, m->st, m->vqkv, Dv4, m->vy, Dv4, w->fc1_w, w->fc1_b, nm, Dv4, Dv4));
    qvl_k_gelu_erf(m->st, m->vqkv, (size_t)nm * Dv4);
    G(qvl_cuda_lin(m, m->st, out, D, m->vqkv, Dv4, w->fc2_w, w->fc2_b, nm, Dv4, D));
    return 0;
}

void qvl_cuda_clear_images(qvl_cuda_model *m) { m->n_images = m->img_tokens = 0; }

static int encode(qvl_cuda_model *m, const qvl_pixel_values *pv, const float *px32, const uint16_t *px16);
int qvl_cuda_encode_image(qvl_cuda_model *m, const qvl_pixel_values *pv) { return encode(m, pv, pv ? pv->data : NULL, NULL); }
int qvl_cuda_encode_image_bf16(qvl_cuda_model *m, const qvl_pixel_values *pv, const uint16_t *pixels) {
    return encode(m, pv, NULL, pixels);
}

/* px32: F32 pixel rows (converted here), or px16: the same rounded to BF16 by the caller. */
static int encode(qvl_cuda_model *m, const qvl_pixel_values *pv, const float *px32, const uint16_t *px16) {
    const qvl_vision_config *v = &m->cfg.vision;
    const int M = v->spatial_merge_size, D = m->cfg.text.hidden_size;
    if (!pv || (!px32 && !px16)) return qvl_errorf("image: no pixel values");
    if (m->n_images >= MAX_IMAGES) return qvl_errorf("image: more than %d images", MAX_IMAGES);
    const int tokens = pv->num_patches / (M * M);
    if (pv->num_patches > m->max_patches || m->img_tokens + tokens > m->max_tokens)
        return qvl_errorf("image: %d image tokens exceed the %ld the memory plan admits (--max-pixels, --max-model-len)",
                          m->img_tokens + tokens, m->max_tokens);
    bf16 *out[1 + QVL_MAX_DEEPSTACK];
    for (int j = 0; j <= v->n_deepstack; j++) out[j] = m->img[j] + (size_t)m->img_tokens * D;
    if (qvl_cuda_vision_pass(m, &pv, &px32, &px16, 1, out)) return -1;
    CK(cudaStreamSynchronize(m->st));
    CK(cudaGetLastError());
    m->grids[m->n_images][0] = pv->grid_t, m->grids[m->n_images][1] = pv->grid_h, m->grids[m->n_images][2] = pv->grid_w;
    m->n_images++;
    m->img_tokens += tokens;
    sample_peak(m);
    return 0;
}

void qvl_cuda_sample_peak(qvl_cuda_model *m) { sample_peak(m); }

/* Dumps name a single image's stages only (a batched pass has several images' rows). */
static void dump1(qvl_cuda_model *m, int n_img, const char *name, const bf16 *x, int rows, int cols) {
    if (n_img == 1) dump(m, name, x, rows, cols);
}

int qvl_cuda_vision_pass(qvl_cuda_model *m, const qvl_pixel_values *const *pvs, const float *const *px32s,
                         const uint16_t *const *px16s, int n_img, bf16 *const *outs) {
    const qvl_vision_config *v = &m->cfg.vision;
    const int Dv = v->hidden_size, H = v->num_heads, hd = Dv / H, Iv = v->intermediate_size, M = v->spatial_merge_size;
    const int D = m->cfg.text.hidden_size, row = v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size;
    const int G_ = (int)lround(sqrt((double)v->num_position_embeddings)), unit = M * M;
    int n = 0;
    for (int i = 0; i < n_img; i++) {
        const qvl_pixel_values *pv = pvs[i];
        if (!pv || (!px32s[i] && !(px16s && px16s[i]))) return qvl_errorf("image: no pixel values");
        if (pv->row_len != row) return qvl_errorf("image: pixel rows of %d values, the model expects %d", pv->row_len, row);
        if (pv->grid_t < 1 || pv->grid_h < M || pv->grid_w < M || pv->grid_h % M || pv->grid_w % M ||
            pv->num_patches != pv->grid_t * pv->grid_h * pv->grid_w)
            return qvl_errorf("image: patch grid %dx%dx%d is not a multiple of the %dx%d merge", pv->grid_t, pv->grid_h,
                              pv->grid_w, M, M);
        n += pv->num_patches;
    }
    if (n > m->max_patches)
        return qvl_errorf("image: %d image tokens exceed the %ld the memory plan admits in one vision pass "
                          "(--max-pixels, --max-model-len)", n / unit, m->max_patches / unit);
    const int tokens = n / unit;
    cudaStream_t s = m->st;
    /* F32 pixels land in the qkv buffer, BF16 in the hidden buffer (both free until block 0), in
     * slices of patches that fit both: one slice at the real model shapes, several where the
     * hidden size is small next to the pixel row (the tiny test models), whose F32 pixels would
     * otherwise run past the qkv buffer into the BF16 copy being written (a race). */
    /* BF16 pixels (the caller rounded them: same values as the conversion below) go straight
     * into the hidden buffer, asynchronously when they sit in the pinned staging buffer. */
    float *pf = (float *)m->vqkv;
    const size_t qkv_bytes = (size_t)m->max_patches * 3 * Dv * sizeof(bf16), hid_elems = (size_t)m->hid_rows * Iv;
    size_t fit_f32 = qkv_bytes / ((size_t)row * sizeof(float));
    if (hid_elems / row < fit_f32) fit_f32 = hid_elems / row;
    const size_t fit_16 = hid_elems / row;
    for (int i = 0, r0 = 0; i < n_img; r0 += pvs[i]->num_patches, i++) {
        const uint16_t *px16 = px16s ? px16s[i] : NULL;
        const float *px32 = px32s[i];
        const int np = pvs[i]->num_patches;
        size_t fit = px16 ? fit_16 : fit_f32;
        if (fit < 1) return qvl_errorf("image: pixel rows of %d values do not fit the vision buffers", row);
        const int slice = fit < (size_t)np ? (int)fit : np;
        for (int p0 = 0; p0 < np; p0 += slice) {
            const int cnt = np - p0 < slice ? np - p0 : slice;
            if (px16) {
                CK(cudaMemcpyAsync(m->vhid, px16 + (size_t)p0 * row, (size_t)cnt * row * sizeof(bf16),
                                   cudaMemcpyHostToDevice, s));
            } else {
                CK(cudaMemcpyAsync(pf, px32 + (size_t)p0 * row, (size_t)cnt * row * sizeof(float), cudaMemcpyHostToDevice, s));
                qvl_k_f32_to_bf16(s, m->vhid, pf, (size_t)cnt * row);
            }
            G(qvl_gemm_run(m->gemm, s, m->vx + (size_t)(r0 + p0) * Dv, Dv, m->vhid, row, m->patch_w, m->patch_b, cnt,
                           row, Dv));
        }
        if (px16 && m->pix_stage && px16 >= m->pix_stage &&
            (const char *)px16 < (const char *)m->pix_stage + m->pix_stage_bytes) {
            CK(cudaEventRecord(m->pix_done, s));
            m->pix_pending = 1;
        }
    }
    dump1(m, n_img, "vision.patch_embed", m->vx, n, Dv);
    for (int i = 0, r0 = 0; i < n_img; r0 += pvs[i]->num_patches, i++) {
        const qvl_pixel_values *pv = pvs[i];
        qvl_k_vision_pos_embed(s, m->vx + (size_t)r0 * Dv, m->pos_embed, G_, Dv, pv->grid_t, pv->grid_h, pv->grid_w, M);
    }
    dump1(m, n_img, "vision.embed", m->vx, n, Dv);
    int tap = 0, normed = 0; /* normed: vy already holds this block's norm1 (fused into the last add) */
    for (int i = 0; i < v->depth; i++) {
        const vblock *b = &m->vb[i];
        if (!normed) qvl_k_layernorm(s, m->vy, m->vx, b->norm1_w, b->norm1_b, n, Dv, 1e-6f);
        G(qvl_cuda_lin(m, s, m->vqkv, 3 * Dv, m->vy, Dv, b->qkv_w, b->qkv_b, n, Dv, 3 * Dv));
        for (int k = 0, r0 = 0; k < n_img; r0 += pvs[k]->num_patches, k++) {
            const qvl_pixel_values *pv = pvs[k];
            const int frame = pv->grid_h * pv->grid_w;
            qvl_k_vision_rope(s, m->vqkv + (size_t)r0 * 3 * Dv, m->vis_inv_freq, pv->num_patches, Dv, H, hd, pv->grid_h,
                              pv->grid_w, M);
            for (int fr = 0; fr < pv->grid_t; fr++) {
                const bf16 *base = m->vqkv + (size_t)(r0 + fr * frame) * 3 * Dv;
                qvl_attention(s, m->vy + (size_t)(r0 + fr * frame) * Dv, Dv, base, 3 * Dv, base + Dv, base + 2 * Dv,
                              3 * Dv, frame, frame, H, H, hd, -1, NULL, m->tuning.attention - 1);
            }
        }
        /* the projection goes to the qkv buffer, free once attention has read it */
        G(qvl_cuda_lin(m, s, m->vqkv, Dv, m->vy, Dv, b->proj_w, b->proj_b, n, Dv, Dv));
        qvl_k_add_layernorm(s, m->vy, m->vx, m->vqkv, b->norm2_w, b->norm2_b, n, Dv, 1e-6f);
        /* The MLP, row by row independent, in chunks of at most hid_rows patches (equal sizes): the
         * hidden activations stay bounded (mem_plan.h QVL_PLAN_VISION_MLP_CHUNK); fc2 writes each
         * chunk's rows of vy after fc1 has read them. */
        const int n_chunks = (int)((n + m->hid_rows - 1) / m->hid_rows), rows = (n + n_chunks - 1) / n_chunks;
        for (int p0 = 0; p0 < n; p0 += rows) {
            const int cnt = n - p0 < rows ? n - p0 : rows;
            bf16 *yc = m->vy + (size_t)p0 * Dv;
            int fused = m->gelu_epilogue && !qvl_cuda_packed(m, b->fc1_w);
            if (fused && qvl_gemm_run_gelu(m->gemm, s, m->vhid, Iv, yc, Dv, b->fc1_w, b->fc1_b, cnt, Dv, Iv))
                fused = m->gelu_epilogue = 0; /* no cuBLASLt algorithm with the epilogue for this shape: nothing was enqueued */
            if (!fused) {
                G(qvl_cuda_lin(m, s, m->vhid, Iv, yc, Dv, b->fc1_w, b->fc1_b, cnt, Dv, Iv));
                qvl_k_gelu_tanh(s, m->vhid, (size_t)cnt * Iv);
            }
            G(qvl_cuda_lin(m, s, yc, Dv, m->vhid, Iv, b->fc2_w, b->fc2_b, cnt, Iv, Dv));
        }
        /* Residual add and the next block's norm1 in one kernel, unless a deepstack merger reads
         * the stream in between. */
        int taps_here = 0;
        for (int j = 0; j < v->n_deepstack; j++) taps_here += v->deepstack_indexes[j] == i;
        normed = i + 1 < v->depth && !taps_here;
        if (normed)
            qvl_k_add_layernorm(s, m->vy, m->vx, m->vy, m->vb[i + 1].norm1_w, m->vb[i + 1].norm1_b, n, Dv, 1e-6f);
        else
            qvl_k_add(s, m->vx, m->vy, (size_t)n * Dv);
        char name[48];
        snprintf(name, sizeof name, "vision.block%d", i);
        dump1(m, n_img, name, m->vx, n, Dv);
        for (int j = 0; j < v->n_deepstack; j++)
            if (v->deepstack_indexes[j] == i) {
                if (merge(m, &m->ds[j], 1, n, outs[1 + j])) return -1;
                snprintf(name, sizeof name, "vision.deepstack%d", j);
                dump1(m, n_img, name, outs[1 + j], tokens, D);
                tap++;
            }
    }
    if (tap != v->n_deepstack) return qvl_errorf("vision: deepstack index beyond depth %d", v->depth);
    if (merge(m, &m->mg, 0, n, outs[0])) return -1;
    dump1(m, n_img, "vision.merger", outs[0], tokens, D);
    return 0;
}

/* ---- text ---- */
/* n tokens at cache rows p0..; pos: device T/H/W rows at pos_stride or NULL (decode: p0 + delta);
 * vis: device image rows or NULL; step: decode one token at the device-held length (graph).
 * Leaves the greedy id of the last row in d_next. */
static int text_forward(qvl_cuda_model *m, const int32_t *ids, int n, int p0, const int32_t *pos, int pos_stride,
                        const int32_t *vis, const char *sfx, const int32_t *step) {
    const qvl_text_config *t = &m->cfg.text;
    const int D = t->hidden_size, hd = t->head_dim, Hq = t->num_heads, Hkv = t->num_kv_heads, I = t->intermediate_size;
    const int qdim = Hq * hd, kv = Hkv * hd, qkvd = qdim + 2 * kv;
    const float eps = (float)t->rms_norm_eps;
    const int n_ds = vis ? m->cfg.vision.n_deepstack : 0;
    cudaStream_t s = m->st;
    qvl_rope_desc rd = {Hq, Hkv, hd, {t->mrope_section[0], t->mrope_section[1], t->mrope_section[2]}, t->mrope_interleaved, eps};
    char name[64];
    qvl_k_embed(s, m->x, m->embed, ids, vis, m->img[0], n, D);
    if (sfx) snprintf(name, sizeof name, "text.embed%s", sfx), dump(m, name, m->x, n, D);
    int normed = 0; /* m->y already holds this layer's input norm (fused into the last residual add) */
    for (int l = 0; l < t->num_layers; l++) {
        const tlayer *L = &m->tl[l];
        bf16 *kc = m->k_cache + (size_t)l * m->max_len * kv, *vc = m->v_cache + (size_t)l * m->max_len * kv;
        if (sfx) snprintf(name, sizeof name, "text.layer%d.in%s", l, sfx), dump(m, name, m->x, n, D);
        if (!normed) qvl_k_rmsnorm(s, m->y, m->x, L->in_norm, n, D, eps);
        G(qvl_cuda_lin(m, s, m->qkv, qkvd, m->y, D, L->qkv_w, NULL, n, D, qkvd));
        qvl_k_qk_norm_rope(s, &rd, m->qkv, qkvd, kc, vc, m->qkv, L->q_norm, L->k_norm, m->txt_inv_freq, n, p0, pos,
                           pos_stride, p0 + m->rope_delta, step);
        if (step)
            qvl_attention_decode(s, m->att, qdim, m->qkv, qkvd, kc, vc, kv, Hq, Hkv, hd, step, m->att_partial, m->sync);
        else
            qvl_attention(s, m->att, qdim, m->qkv, qkvd, kc, vc, kv, n, p0 + n, Hq, Hkv, hd, p0, m->att_partial,
                          m->tuning.attention - 1);
        G(qvl_cuda_lin(m, s, m->y, D, m->att, qdim, L->o_w, NULL, n, qdim, D));
        qvl_k_add_rmsnorm(s, m->y, m->x, m->y, L->post_norm, n, D, eps);
        G(qvl_cuda_lin(m, s, m->gu, 2 * I, m->y, D, L->gu_w, NULL, n, D, 2 * I));
        qvl_k_silu_mul(s, m->h, m->gu, n, I);
        G(qvl_cuda_lin(m, s, m->y, D, m->h, I, L->down_w, NULL, n, I, D));
        /* Residual add and the next layer's input norm in one kernel, unless a deepstack feature
         * is added in between. */
        normed = l + 1 < t->num_layers && l >= n_ds;
        if (normed)
            qvl_k_add_rmsnorm(s, m->y, m->x, m->y, m->tl[l + 1].in_norm, n, D, eps);
        else
            qvl_k_add(s, m->x, m->y, (size_t)n * D);
        if (sfx) snprintf(name, sizeof name, "text.layer%d.out%s", l, sfx), dump(m, name, m->x, n, D);
        if (l < n_ds) qvl_k_deepstack_add(s, m->x, vis, m->img[1 + l], n, D);
    }
    if (sfx && m->tuning.dump_dir) {
        qvl_k_rmsnorm(s, m->y, m->x, m->norm, n, D, eps);
        snprintf(name, sizeof name, "text.norm%s", sfx), dump(m, name, m->y, n, D);
    }
    return lm_head(m, m->x + (size_t)(n - 1) * D);
}

/* Final norm of the row x, logits, the picked id into d_next (m->pick_mode says how). */
static int lm_head(qvl_cuda_model *m, const bf16 *x) {
    const qvl_text_config *t = &m->cfg.text;
    const int D = t->hidden_size;
    const float eps = (float)t->rms_norm_eps;
    if (!qvl_cuda_packed(m, m->lm_head) && qvl_gemv_ok(x, m->lm_head, D)) {
        G(qvl_gemv(m->gemm, m->st, m->logits, x, m->lm_head, D, t->vocab_size, QVL_GEMV_RMSNORM, m->norm, eps, 0));
    } else {
        qvl_k_rmsnorm(m->st, m->y, x, m->norm, 1, D, eps);
        G(qvl_cuda_lin(m, m->st, m->logits, t->vocab_size, m->y, D, m->lm_head, NULL, 1, D, t->vocab_size));
    }
    if (m->pick_mode)
        qvl_k_pick(m->st, m->d_next, m->logits, t->vocab_size, m->pick_state, m->pick_flags, m->pick_work,
                   m->pick_uniforms, m->pick_mode == 2, 1);
    else
        qvl_k_argmax(m->st, m->d_next, m->logits, 1, t->vocab_size, m->sync);
    return 0;
}

/* One decoding row (step: device {cache length, rope delta}) with the fused one-row kernels: the
 * RMSNorms in the prologue of the products that read them, SwiGLU in the down product's
 * prologue, the residual adds in the o and down epilogues. 7 kernels a layer instead of 10. */
static int decode_forward(qvl_cuda_model *m, const int32_t *ids, const int32_t *step) {
    const qvl_text_config *t = &m->cfg.text;
    const int D = t->hidden_size, hd = t->head_dim, Hq = t->num_heads, Hkv = t->num_kv_heads, I = t->intermediate_size;
    const int qdim = Hq * hd, kv = Hkv * hd, qkvd = qdim + 2 * kv;
    const float eps = (float)t->rms_norm_eps;
    cudaStream_t s = m->st;
    qvl_rope_desc rd = {Hq, Hkv, hd, {t->mrope_section[0], t->mrope_section[1], t->mrope_section[2]}, t->mrope_interleaved, eps};
    qvl_k_embed(s, m->x, m->embed, ids, NULL, m->img[0], 1, D);
    for (int l = 0; l < t->num_layers; l++) {
        const tlayer *L = &m->tl[l];
        bf16 *kc = m->k_cache + (size_t)l * m->max_len * kv, *vc = m->v_cache + (size_t)l * m->max_len * kv;
        G(qvl_gemv(m->gemm, s, m->qkv, m->x, L->qkv_w, D, qkvd, QVL_GEMV_RMSNORM, L->in_norm, eps, 0));
        qvl_k_qk_norm_rope(s, &rd, m->qkv, qkvd, kc, vc, m->qkv, L->q_norm, L->k_norm, m->txt_inv_freq, 1, 0, NULL, 0,
                           0, step);
        qvl_attention_decode(s, m->att, qdim, m->qkv, qkvd, kc, vc, kv, Hq, Hkv, hd, step, m->att_partial, m->sync);
        G(qvl_gemv(m->gemm, s, m->x, m->att, L->o_w, qdim, D, QVL_GEMV_PLAIN, NULL, eps, 1));
        G(qvl_gemv(m->gemm, s, m->gu, m->x, L->gu_w, D, 2 * I, QVL_GEMV_RMSNORM, L->post_norm, eps, 0));
        G(qvl_gemv(m->gemm, s, m->x, m->gu, L->down_w, I, D, QVL_GEMV_SWIGLU, NULL, eps, 1));
    }
    return lm_head(m, m->x);
}

/* Whether every product of a decoding row can take the fused one-row kernels. */
static int decode_fusable(const qvl_cuda_model *m) {
    const qvl_text_config *t = &m->cfg.text;
    const int D = t->hidden_size, I = t->intermediate_size, qdim = t->num_heads * t->head_dim;
    if (qvl_cuda_packed(m, m->lm_head) || !qvl_gemv_ok(m->x, m->lm_head, D)) return 0;
    for (int l = 0; l < t->num_layers; l++) {
        const tlayer *L = &m->tl[l];
        if (qvl_cuda_packed(m, L->qkv_w) || qvl_cuda_packed(m, L->o_w) || qvl_cuda_packed(m, L->gu_w) ||
            qvl_cuda_packed(m, L->down_w))
            return 0;
        if (!qvl_gemv_ok(m->x, L->qkv_w, D) || !qvl_gemv_ok(m->att, L->o_w, qdim) || !qvl_gemv_ok(m->x, L->gu_w, D) ||
            !qvl_gemv_ok(m->gu, L->down_w, I) || ((uintptr_t)L->in_norm | (uintptr_t)L->post_norm) & 15)
            return 0;
    }
    return 1;
}

static int fetch_next(qvl_cuda_model *m) {
    int32_t id = -1;
    CK(cudaMemcpyAsync(&id, m->d_next, sizeof id, cudaMemcpyDeviceToHost, m->st));
    CK(cudaStreamSynchronize(m->st));
    CK(cudaGetLastError());
    m->next_id = id;
    return id;
}

/* One decode step: the token in d_next at cache row d_step[0]; advances d_step[0]. */
static int decode_step(qvl_cuda_model *m) {
    if (decode_fusable(m) ? decode_forward(m, m->d_next, m->d_step)
                          : text_forward(m, m->d_next, 1, 0, NULL, 0, NULL, NULL, m->d_step))
        return -1;
    qvl_k_step_advance(m->st, m->d_step);
    return 0;
}

/* Times cuBLASLt against the own GEMV kernels for each one-row product of a decode step, on all
 * layers' weights (scratch activations), before the decode graph captures the choice. */
static int tune_decode_gemv(qvl_cuda_model *m) {
    const qvl_text_config *t = &m->cfg.text;
    const int D = t->hidden_size, I = t->intermediate_size, qdim = t->num_heads * t->head_dim;
    const int qkvd = qdim + 2 * t->num_kv_heads * t->head_dim, nl = t->num_layers;
    const bf16 **ws = (const bf16 **)malloc((size_t)nl * sizeof *ws);
    if (!ws) return qvl_errorf("cuda: out of memory");
    int rc = 0;
#define TUNE(field, y, x, K, N)                                                         \
    do {                                                                                \
        int n_ = 0; /* packed weights take their own GEMV */                            \
        for (int l = 0; l < nl; l++)                                                    \
            if (!qvl_cuda_packed(m, m->tl[l].field)) ws[n_++] = m->tl[l].field;        \
        if (!rc && n_) rc = qvl_gemm_tune_m1(m->gemm, m->st, (y), (x), ws, n_, (K), (N)); \
    } while (0)
    TUNE(qkv_w, m->qkv, m->y, D, qkvd);
    TUNE(o_w, m->y, m->att, qdim, D);
    TUNE(gu_w, m->gu, m->y, D, 2 * I);
    TUNE(down_w, m->y, m->h, I, D);
#undef TUNE
    ws[0] = m->lm_head;
    if (!rc && !qvl_cuda_packed(m, m->lm_head))
        rc = qvl_gemm_tune_m1(m->gemm, m->st, m->logits, m->y, ws, 1, D, t->vocab_size);
    free(ws);
    if (rc) return qvl_errorf("cuda: timing the decode GEMV kernels failed");
    qvl_gemm_m1_report(m->gemm, m->gemv_report, sizeof m->gemv_report);
    return 0;
}

/* Captures decode_step as a CUDA graph (one launch per token instead of ~300): with the plain
 * argmax into decode_graph, and with the pick kernel (marking the input id first) into pick_graph. */
static int capture_one(qvl_cuda_model *m, cudaGraphExec_t *out);
static int capture_decode(qvl_cuda_model *m) {
    if (m->tuning.no_cuda_graphs) return 0;
    m->pick_mode = 0;
    int rc = capture_one(m, &m->decode_graph);
    m->pick_mode = 2;
    if (!rc) rc = capture_one(m, &m->pick_graph);
    m->pick_mode = 0;
    return rc;
}
static int capture_one(qvl_cuda_model *m, cudaGraphExec_t *out) {
    cudaGraph_t g = NULL;
    for (;;) {
        CK(cudaStreamBeginCapture(m->st, cudaStreamCaptureModeThreadLocal));
        int rc = decode_step(m);
        cudaError_t e = cudaStreamEndCapture(m->st, &g);
        if (!rc && e == cudaSuccess) {
            e = cudaGraphInstantiate(out, g, 0);
            cudaGraphDestroy(g);
            g = NULL;
            if (e == cudaSuccess) return 0;
            *out = NULL;
        }
        if (g) cudaGraphDestroy(g);
        g = NULL;
        /* Programmatic launches refused in the graph: capture once more without them. */
        if (!qvl_gemv_pdl(m->gemm, 0)) {
            if (rc) return rc;
            return qvl_errorf("cuda: capturing the decode graph: %s", cudaGetErrorString(e));
        }
        (void)cudaGetLastError();
    }
}

/* Every cuBLASLt shape of the vision tower and the prefill at every row-count bucket up to the
 * plan's maximum, on scratch buffers, so that serving never waits for a heuristic query or a
 * first kernel load (bench/results/2026-11-26-cuda-backend-h100: 0 queries while serving instead of 800). */
static int prepare_gemms(qvl_cuda_model *m) {
    const double t0 = wall_ms();
    const qvl_vision_config *v = &m->cfg.vision;
    const qvl_text_config *t = &m->cfg.text;
    const int Dv = v->hidden_size, Iv = v->intermediate_size, unit = v->spatial_merge_size * v->spatial_merge_size;
    const int Dv4 = Dv * unit, D = t->hidden_size, I = t->intermediate_size, np = (int)m->max_patches;
    const int row = v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size;
    const int qdim = t->num_heads * t->head_dim, qkvd = qdim + 2 * t->num_kv_heads * t->head_dim, C = m->chunk;
    const vblock *b = &m->vb[0];
    /* Scratch: vhid holds hid_rows x Iv values, vqkv max_patches x 3 Dv, vy max_patches x Dv.
     * The pixel slice of encode_image is at most hid_rows x Iv / row rows of `row` values in vhid;
     * the MLP runs on at most hid_rows rows at a time. */
    const int nh = (int)(m->hid_rows < np ? m->hid_rows : np);
    const int slice = (size_t)nh * Iv / row < (size_t)np ? (int)((size_t)nh * Iv / row) : np;
    int rc = 0;
    rc = rc ? rc : qvl_gemm_prepare(m->gemm, m->st, m->vx, Dv, m->vhid, row, m->patch_w, m->patch_b, slice, row, Dv, 0);
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->vqkv, 3 * Dv, m->vy, Dv, b->qkv_w, b->qkv_b, np, Dv, 3 * Dv);
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->vqkv, Dv, m->vy, Dv, b->proj_w, b->proj_b, np, Dv, Dv);
    if (m->gelu_epilogue && !qvl_cuda_packed(m, b->fc1_w) &&
        qvl_gemm_prepare(m->gemm, m->st, m->vhid, Iv, m->vy, Dv, b->fc1_w, b->fc1_b, nh, Dv, Iv, 1))
        m->gelu_epilogue = 0;
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->vhid, Iv, m->vy, Dv, b->fc1_w, b->fc1_b, nh, Dv, Iv);
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->vy, Dv, m->vhid, Iv, b->fc2_w, b->fc2_b, nh, Iv, Dv);
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->vqkv, Dv4, m->vy, Dv4, m->mg.fc1_w, m->mg.fc1_b, np / unit, Dv4, Dv4);
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->img[0], D, m->vqkv, Dv4, m->mg.fc2_w, m->mg.fc2_b, np / unit, Dv4, D);
    const tlayer *L = &m->tl[0];
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->qkv, qkvd, m->y, D, L->qkv_w, NULL, C, D, qkvd);
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->y, D, m->att, qdim, L->o_w, NULL, C, qdim, D);
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->gu, 2 * I, m->y, D, L->gu_w, NULL, C, D, 2 * I);
    rc = rc ? rc : qvl_cuda_lin_prepare(m, m->y, D, m->h, I, L->down_w, NULL, C, I, D);
    if (m->batched) /* lm_head over the picked rows: at most one per sequence */
        rc = rc ? rc : qvl_cuda_lin_prepare(m, m->logits, t->vocab_size, m->y, D, m->lm_head, NULL, m->plan.sequences, D,
                                            t->vocab_size);
    if (rc) return qvl_errorf("cuda: preparing the cuBLASLt shapes failed");
    CK(cudaStreamSynchronize(m->st));
    m->prepare_ms = wall_ms() - t0;
    return 0;
}

int qvl_cuda_prefill(qvl_cuda_model *m, const int32_t *ids, int n) {
    const qvl_config *c = &m->cfg;
    if (m->batched) return qvl_errorf("cuda: a batched model runs through its backend table");
    if (n < 1) return qvl_errorf("prompt: empty");
    if (n > m->max_len) return qvl_errorf("prompt: %d tokens exceed the context of %ld tokens", n, m->max_len);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->text.vocab_size)
            return qvl_errorf("prompt: token id %d at position %d is outside the vocabulary of %d", ids[i], i,
                              c->text.vocab_size);
    int delta = 0;
    if (qvl_mrope_positions(ids, n, c->image_token_id, (const int(*)[3])m->grids, m->n_images,
                            c->vision.spatial_merge_size, m->h_pos, &delta))
        return -1;
    int pads = 0;
    for (int i = 0; i < n; i++) m->h_vis[i] = ids[i] == c->image_token_id && m->n_images > 0 ? pads++ : -1;
    CK(cudaMemcpyAsync(m->d_ids, ids, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, m->st));
    CK(cudaMemcpyAsync(m->d_pos, m->h_pos, (size_t)3 * n * sizeof(int32_t), cudaMemcpyHostToDevice, m->st));
    CK(cudaMemcpyAsync(m->d_vis, m->h_vis, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, m->st));
    if (m->picking) qvl_k_pick_prompt(m->st, m->pick_flags, c->text.vocab_size, m->d_ids, n);
    m->len = 0;
    m->rope_delta = delta;
    for (int c0 = 0; c0 < n; c0 += m->chunk) {
        int cnt = n - c0 < m->chunk ? n - c0 : m->chunk;
        char sfx[32] = "";
        if (n > m->chunk) snprintf(sfx, sizeof sfx, "@%d", c0);
        m->pick_mode = m->picking && c0 + cnt == n;   /* only the last chunk's row is picked from */
        int rc = text_forward(m, m->d_ids + c0, cnt, c0, m->d_pos + c0, n, m->n_images ? m->d_vis + c0 : NULL, sfx, NULL);
        m->pick_mode = 0;
        if (rc) return -1;
    }
    m->len = n;
    m->h_step[0] = n, m->h_step[1] = delta;
    CK(cudaMemcpyAsync(m->d_step, m->h_step, sizeof m->h_step, cudaMemcpyHostToDevice, m->st));
    int id = fetch_next(m);
    sample_peak(m);
    return id;
}

int qvl_cuda_decode(qvl_cuda_model *m, int32_t id) {
    if (m->batched) return qvl_errorf("cuda: a batched model runs through its backend table");
    if (m->len >= m->max_len) return qvl_errorf("generation: the context of %ld tokens is full", m->max_len);
    if (id < 0 || id >= m->cfg.text.vocab_size) return qvl_errorf("generation: token id %d is outside the vocabulary", id);
    /* The id usually is the one just sampled, already on the device; else copy it over. */
    if (id != m->next_id) {
        m->next_id = id;
        CK(cudaMemcpyAsync(m->d_next, &m->next_id, sizeof id, cudaMemcpyHostToDevice, m->st));
    }
    cudaGraphExec_t graph = m->picking ? m->pick_graph : m->decode_graph;
    if (graph) {
        CK(cudaGraphLaunch(graph, m->st));
    } else {
        m->pick_mode = m->picking ? 2 : 0;
        int rc = decode_step(m);
        m->pick_mode = 0;
        if (rc) return -1;
    }
    m->len++;
    return fetch_next(m);
}

int qvl_cuda_set_picking(qvl_cuda_model *m, const qvl_cuda_pick_params *p, const double *uniforms, int n_uniforms) {
    if (n_uniforms < 0 || n_uniforms > m->max_len)
        return qvl_errorf("sampling: %d uniforms exceed the context of %ld tokens", n_uniforms, m->max_len);
    if (!(p->temperature == p->temperature) || !(p->repetition_penalty > 0))
        return qvl_errorf("sampling: bad temperature or repetition penalty");
    int sampling = p->do_sample && p->temperature > 0;
    m->picking = sampling || p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f;
    if (!m->picking) return 0;
    m->h_pick.p = *p;
    m->h_pick.n_uniforms = n_uniforms;
    m->h_pick.counter = 0;
    /* pageable sources: the copies have taken them when cudaMemcpyAsync returns */
    CK(cudaMemcpyAsync(m->pick_state, &m->h_pick, sizeof m->h_pick, cudaMemcpyHostToDevice, m->st));
    if (n_uniforms > 0)
        CK(cudaMemcpyAsync(m->pick_uniforms, uniforms, (size_t)n_uniforms * sizeof *uniforms, cudaMemcpyHostToDevice, m->st));
    return 0;
}

int qvl_cuda_logits(qvl_cuda_model *m, float *out) {
    int V = m->cfg.text.vocab_size;
    uint16_t *h = (uint16_t *)malloc((size_t)V * 2);
    if (!h) return qvl_errorf("logits: out of memory");
    cudaError_t e = cudaStreamSynchronize(m->st);
    if (e == cudaSuccess) e = cudaMemcpy(h, m->logits, (size_t)V * 2, cudaMemcpyDeviceToHost);
    for (int i = 0; e == cudaSuccess && i < V; i++) out[i] = qvl_bf16_to_f32(h[i]);
    free(h);
    CK(e);
    return 0;
}
