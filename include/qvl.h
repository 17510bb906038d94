/* qvl: a Qwen3-VL inference engine. The public API in one page.
 *
 *   qvl_engine_opts o = qvl_engine_opts_default();
 *   o.model_dir = "tests/fixtures/tiny/tied";     // a Hugging Face checkpoint folder
 *   qvl_engine *e = qvl_engine_open(&o);              // NULL: see qvl_last_error()
 *   qvl_request r = {.image_path = "img.png", .prompt = "what is written in the image?"};
 *   qvl_gen_opts g = qvl_gen_opts_default();
 *   qvl_result res;
 *   if (qvl_generate(e, &r, &g, &res) == 0) puts(res.text);
 *   qvl_result_free(&res);
 *   qvl_engine_close(e);
 *
 * Every function that can fail returns -1 (or NULL) and records one line, "<file or item>:
 * <reason>", readable with qvl_last_error(). Lower-level modules (tokenizer, image, safetensors,
 * config, model) have their own headers under src/. */
#ifndef QVL_H
#define QVL_H
#include <stddef.h>
#include <stdint.h>

#define QVL_VERSION "0.1.0"

const char *qvl_last_error(void);

typedef enum { QVL_DEVICE_AUTO, QVL_DEVICE_CPU, QVL_DEVICE_CUDA } qvl_device;

typedef struct {
    const char *model_dir;
    qvl_device device;
    int threads;              /* CPU threads; 0 = all cores */
    long gpu_mem_mib;         /* hard cap on GPU memory; <= 0 = no cap */
    long max_model_len;       /* context length; <= 0 = min(max_position_embeddings, 32768); above
                                 max_position_embeddings is an error */
    long min_pixels, max_pixels;  /* <= 0 = preprocessor_config.json values */
    long max_image_tokens;    /* <= 0 = no cap; else max_pixels = min(max_pixels, N*1024) */
} qvl_engine_opts;

qvl_engine_opts qvl_engine_opts_default(void);

typedef struct qvl_engine qvl_engine;

qvl_engine *qvl_engine_open(const qvl_engine_opts *opts);
void qvl_engine_close(qvl_engine *e);
const char *qvl_engine_device_name(const qvl_engine *e);   /* "cpu (16 threads)", "NVIDIA H100 ..." */

/* One request: an image (a file, or encoded bytes in memory; or none) and a user prompt. */
typedef struct {
    const char *image_path;
    const uint8_t *image_data;
    size_t image_size;
    const char *image_name;   /* for error messages when image_data is used */
    const char *prompt;
} qvl_request;

typedef void (*qvl_token_cb)(const char *text_piece, void *user);

/* Greedy by default. With sample = 1 the checkpoint's generation_config.json values are used
 * except where a field below is set; qvl_gen_opts_default() leaves them unset (NAN, top_k -1).
 * A repetition or presence penalty that is set also applies to greedy decoding. */
typedef struct {
    int max_new_tokens;       /* default 128 */
    int sample;               /* 0 = greedy */
    double temperature, top_p, repetition_penalty, presence_penalty;   /* NAN = unset */
    int top_k;                /* -1 = unset, 0 = no top-k */
    uint64_t seed;
    int on_overflow_downscale;/* 1: shrink an image that would overflow the context; 0: fail */
    qvl_token_cb on_token;    /* streaming: called with each complete piece of text */
    void *user;
} qvl_gen_opts;

qvl_gen_opts qvl_gen_opts_default(void);

typedef enum { QVL_FINISH_STOP, QVL_FINISH_LENGTH } qvl_finish;

typedef struct {
    char *text;               /* generated text, special tokens skipped */
    int32_t *token_ids;       /* generated ids, including the eos id if one was generated */
    int n_tokens;
    qvl_finish finish_reason;
    int prompt_tokens, image_tokens;
    /* Seconds of this request: image read+decode, preprocess, vision tower, prefill (prompt
     * forward), decode (token loop), total; ttft = request start to the first token. */
    double load_s, preprocess_s, vision_s, prefill_s, decode_s, total_s, ttft_s;
    int downscaled_from_tokens;  /* > 0: on_overflow_downscale shrank the image from this many tokens */
} qvl_result;

/* Runs one request. Errors on user input (unreadable image, prompt longer than the context)
 * return -1 with the reason; the engine stays usable. */
int qvl_generate(qvl_engine *e, const qvl_request *req, const qvl_gen_opts *g, qvl_result *out);
void qvl_result_free(qvl_result *r);

/* Peak memory in MiB: GPU memory of this process on CUDA (qvl_memory_info.peak_measure says which
 * figure), peak resident set on CPU. */
double qvl_engine_peak_memory_mib(const qvl_engine *e);

/* The memory plan made at open beside what was measured, MiB (2^20 bytes). The GPU figure is
 * sampled after open and after every request (the arena is allocated up front, so the peak is
 * reached early): NVML's figure for this process when NVML is there, else cudaMemGetInfo. */
typedef struct {
    double peak_mib;              /* = qvl_engine_peak_memory_mib() */
    const char *peak_measure;     /* "nvml process", "nvml device used minus before start",
                                     "cudaMemGetInfo device used" (all processes), "peak resident set" */
    const char *note;             /* why NVML is not used, or how its device was found ("" on the CPU) */
    double cuda_used_peak_mib;    /* cudaMemGetInfo total - free, highest sampled; 0 on the CPU */
    int has_plan;                 /* 1 on the GPU path: the plan fields below are set */
    double plan_cuda_context, plan_weights, plan_kv_cache, plan_vision_activations, plan_workspace, plan_total;
    const char *plan_context_measure; /* what measured plan_cuda_context (a peak_measure name) */
    double arena_mib;             /* the device arena reserved at open (in the plan's weights..workspace) */
    long plan_max_model_len, plan_max_image_tokens, plan_max_image_pixels;
} qvl_memory_info;

/* Fills *out; returns 0 (-1 only for a NULL engine). Strings live as long as the engine. */
int qvl_engine_memory(const qvl_engine *e, qvl_memory_info *out);

#endif
