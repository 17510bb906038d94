/* Model folder configuration: config.json (+ text_config, vision_config), preprocessor_config.json
 * and generation_config.json of a Qwen3-VL checkpoint, validated for consistency. */
#ifndef QVL_MODEL_CONFIG_H
#define QVL_MODEL_CONFIG_H

#include "image/image.h"

enum { QVL_MAX_DEEPSTACK = 8, QVL_MAX_EOS = 8 };

typedef struct {
    int hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, head_dim;
    int vocab_size, max_position_embeddings;
    double rms_norm_eps, rope_theta;
    int mrope_section[3];
    int mrope_interleaved;
    int tie_word_embeddings;
} qvl_text_config;

typedef struct {
    int depth, hidden_size, intermediate_size, num_heads, out_hidden_size;
    int patch_size, temporal_patch_size, spatial_merge_size, in_channels, num_position_embeddings;
    int deepstack_indexes[QVL_MAX_DEEPSTACK];
    int n_deepstack;
    char hidden_act[32];
} qvl_vision_config;

typedef struct {
    long min_pixels, max_pixels;             /* size.shortest_edge / size.longest_edge */
    int patch_size, temporal_patch_size, merge_size;
    float image_mean[3], image_std[3];
    double rescale_factor;
} qvl_preproc_config;

typedef struct {
    int do_sample, top_k;
    double temperature, top_p, repetition_penalty, presence_penalty;
    int eos_ids[QVL_MAX_EOS];
    int n_eos;
} qvl_generation_config;

/* What quantization_config says (src/model/quant_config.c; 0 / "" / -1 when not given). */
enum { QVL_QUANT_NONE = 0, QVL_QUANT_CT = 1, QVL_QUANT_AWQ = 2, QVL_QUANT_FP8 = 3 };
enum { QVL_QUANT_SKIP_BYTES = 16384 };
typedef struct {
    int method;             /* QVL_QUANT_* */
    char format[32];        /* compressed-tensors "format" (pack-quantized), awq "version" (gemm), fp8 "fmt" (e4m3) */
    int bits;               /* weight bits: 4 (int4), 8 (fp8) */
    int group_size;         /* int4: weights per scale along the input (0: one group per row, "channel") */
    int symmetric;          /* 1 / 0; -1 not applicable (fp8) */
    int block[2];           /* fp8 weight_block_size [out, in] */
    int n_skip;             /* entries of ignore / modules_to_not_convert, NUL-separated in skip */
    char skip[QVL_QUANT_SKIP_BYTES];
} qvl_quant_config;

typedef struct {
    char model_type[32];                      /* "qwen3_vl" */
    char dtype[16];                           /* torch_dtype / dtype: "bfloat16", ... */
    char quant_method[32];                    /* "" if not quantized; else "awq", "fp8" or "compressed-tensors" */
    qvl_quant_config quant;                   /* details of quantization_config (spec 7) */
    qvl_text_config text;
    qvl_vision_config vision;
    qvl_preproc_config preproc;
    qvl_generation_config gen;
    int image_token_id, video_token_id, vision_start_token_id, vision_end_token_id;
    int bos_token_id, pad_token_id;
    int eos_token_id;                         /* config.json's (text_config or top level) */
    char model_dir[1024];                     /* the folder given to qvl_config_load */
} qvl_config;

/* Loads and validates DIR/config.json, DIR/preprocessor_config.json (defaults if absent) and
 * DIR/generation_config.json (defaults if absent). Returns 0, or -1 + qvl_error naming the file
 * and the field. */
int qvl_config_load(const char *model_dir, qvl_config *cfg);

/* The same three loaders one by one (path = the file itself). qvl_config_load_main fills everything
 * but preproc/gen; the other two need the vision/text fields of cfg already loaded and fill in the
 * spec defaults when path does not exist. */
int qvl_config_load_main(const char *path, qvl_config *cfg);
int qvl_preproc_load(const char *path, qvl_config *cfg);
int qvl_generation_load(const char *path, qvl_config *cfg);

/* The image pipeline's parameters from preprocessor_config.json (pixel bounds, patch/merge sizes,
 * mean/std; threads 1). Pixel options are applied on top with qvl_image_params_set_pixels. */
qvl_image_params qvl_config_image_params(const qvl_config *cfg);

#endif
