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
 * Many requests in flight (the batched engine): qvl_submit() queues a request and returns its id;
 * each qvl_step() runs one scheduler step (the vision tower on newly admitted images, then one
 * forward pass over every running decode and prefill chunks under the token budget); qvl_poll()
 * hands back finished requests; qvl_cancel() ends one early and frees its memory at once.
 * qvl_generate() is submit + step until done + poll for one request.
 *
 * Threads: qvl_submit(), qvl_cancel() and qvl_engine_stats_get() may be called from any
 * thread at any time; qvl_step() and qvl_poll() from one thread at a time (the thread that drives
 * the engine); token callbacks run on the thread inside qvl_step(), with no engine lock held (they
 * may call qvl_submit/qvl_cancel). qvl_generate() drives the engine itself: do not call it while
 * another thread steps the same engine. Error messages and codes are per thread.
 *
 * Every function that can fail returns -1 (or NULL) and records one line, "<file or item>:
 * <reason>", readable with qvl_last_error(), and a code (qvl_last_error_code()) so that callers
 * can tell an out-of-memory or a bad input apart without matching text. Lower-level modules
 * (tokenizer, image, safetensors, config, model) have their own headers under src/. */
#ifndef QVL_H
#define QVL_H
#include <stddef.h>
#include <stdint.h>

#define QVL_VERSION "0.1.0"

const char *qvl_last_error(void);

/* What kind of failure the last error on this thread was. */
typedef enum {
    QVL_ERR_NONE = 0,
    QVL_ERR_INPUT,       /* bad user input: unreadable/corrupt image, bad option, bad id */
    QVL_ERR_TOO_LONG,    /* the prompt does not fit the context (max-model-len) */
    QVL_ERR_NO_MEMORY,   /* a memory plan that does not fit the budget or the device; host out of memory */
    QVL_ERR_QUEUE_FULL,  /* qvl_submit: the waiting queue is at its limit */
    QVL_ERR_CANCELLED,   /* the request was cancelled */
    QVL_ERR_UNSUPPORTED, /* a checkpoint or option this build cannot run */
    QVL_ERR_DEVICE,      /* a CUDA failure */
    QVL_ERR_INTERNAL
} qvl_error_code;
qvl_error_code qvl_last_error_code(void);

typedef enum { QVL_DEVICE_AUTO, QVL_DEVICE_CPU, QVL_DEVICE_CUDA } qvl_device;
enum { QVL_KV_BF16 = 0, QVL_KV_FP8 = 1 };

/* Choices of the CUDA backend that remain switchable: a fallback kernel to exercise on a GPU that
 * would not pick it, a fixed choice for bit-for-bit comparable runs, debugging aids. Settled A/B
 * switches are gone (their evidence: bench/results). The library never reads the environment: the
 * CLI and bench fill this from QVL_* variables (src/cli/tuning_env.h). All zeros is the default,
 * the measured-best choice (qvl_tuning_default()). Per engine: nothing here is process-wide. */
typedef struct {
    int attention;        /* prefill/vision attention: 0 auto (wgmma kernel on sm_90a, else the mma.sync
                             FA2 kernel); 1 the mma.sync kernel everywhere (the pre-Hopper path);
                             2 + c wgmma configuration c (benchmarks). QVL_ATT_IMPL=n sets n + 1. */
    int gemv_variant;     /* decode one-row products: 0 the variant timed fastest at open; 1..5 that
                             variant for every shape (variants sum in different orders). QVL_GEMV_PICK */
    int no_cuda_graphs;   /* 1: decode steps launched kernel by kernel instead of replayed from a
                             captured graph (profilers' per-kernel view; also turns decode_graphs off).
                             QVL_NO_GRAPH */
    int decode_graphs;    /* batched backend: decode-only steps replayed from CUDA graphs captured per
                             batch-size bucket (1, 2, 4, ... up to the slots). 0 the backend's default
                             (off until measured on a GPU), 1 on, -1 off; bit-identical results either
                             way. QVL_DECODE_GRAPHS=1 / 0 */
    const char *dump_dir; /* parity: every stage's activations written as DIR/<name>.npy (float32,
                             tests/fixtures/tiny/ref names); NULL: none. QVL_DUMP */
} qvl_tuning;
qvl_tuning qvl_tuning_default(void);

typedef struct {
    const char *model_dir;
    qvl_device device;
    int threads;              /* CPU threads; 0 = all cores */
    long gpu_mem_mib;         /* hard cap on GPU memory; <= 0 = no cap */
    long max_model_len;       /* context length; <= 0 = min(max_position_embeddings, 32768); above
                                 max_position_embeddings is an error */
    long min_pixels, max_pixels;  /* <= 0 = preprocessor_config.json values */
    long max_image_tokens;    /* <= 0 = no cap; else max_pixels = min(max_pixels, N*1024) */
    long plan_image_tokens;   /* > 0: the GPU plan sizes the vision activations for images of at most N
                                 tokens (the data's largest, eval/plan_data.h) without changing the pixel
                                 limits; <= 0 = from max_pixels / max_image_tokens */
    /* Batched engine. */
    int max_batch;            /* sequences in flight at most; <= 0 = chosen from the memory plan */
    int max_queue;            /* waiting requests at most (qvl_submit fails with QVL_ERR_QUEUE_FULL
                                 beyond it); <= 0 = no limit */
    int kv_dtype;             /* QVL_KV_BF16 (default: BF16 on CUDA, the reference's float32 on the CPU) or
                                 QVL_KV_FP8 (e4m3, per-tensor scale 1.0 as vLLM's kv_cache_dtype="fp8"; both
                                 backends) */
    qvl_tuning tuning;        /* CUDA kernel choices; qvl_tuning_default() */
    int kv_blocks;            /* > 0: at most this many KV blocks (of 64 tokens) in the pool, e.g. to run
                                 with a pool that fits one sequence; <= 0 = from the memory plan */
    int token_budget;         /* > 0: rows of one forward pass (prefill chunks + decodes); <= 0 = the backend's */
    long vision_tokens;       /* > 0: image tokens of one vision pass (at least the largest image); <= 0 = the
                                 backend's (qvl eval passes both from its data plan: eval/plan_fit.h) */
    long image_cache_tokens;  /* > 0: image feature rows kept at once over all sequences, from their vision
                                 pass until their prompt has run (at least vision_tokens); <= 0 = the
                                 backend's (CUDA: 2 x vision_tokens; qvl eval's lean passes: 1 x) */
    const char *tokenizer_cache_dir; /* folder of the tokenizer's binary cache (parsed tables: skips
                                 ~0.2 s of JSON parsing at open); NULL = no cache. The CLI passes
                                 $QVL_CACHE_DIR, else $XDG_CACHE_HOME/qvl, else ~/.cache/qvl
                                 (QVL_TOKENIZER_CACHE=0: NULL) */
} qvl_engine_opts;

qvl_engine_opts qvl_engine_opts_default(void);

typedef struct qvl_engine qvl_engine;

qvl_engine *qvl_engine_open(const qvl_engine_opts *opts);
void qvl_engine_close(qvl_engine *e);
const char *qvl_engine_device_name(const qvl_engine *e);   /* "cpu (16 threads)", "NVIDIA H100 ..." */

/* One request: an image (a file, or encoded bytes in memory; or none) and a user prompt. */
/* One part of a chat message: text (text != NULL) or an image (a file, or encoded bytes). */
typedef struct {
    const char *text;
    const char *image_path;
    const uint8_t *image_data;
    size_t image_size;
    const char *image_name;   /* for error messages when image_data is used */
} qvl_content_part;

/* One chat turn; role is "system", "user" or "assistant". */
typedef struct {
    const char *role;
    const qvl_content_part *parts;
    int n_parts;
} qvl_message;

/* A request: either one user turn of [image] + prompt (image_* and prompt), or, when n_messages > 0,
 * a whole conversation (images anywhere; the chat template renders it with the generation prompt).
 * qvl_submit copies everything it needs: the caller may free the request right after. */
typedef struct {
    const char *image_path;
    const uint8_t *image_data;
    size_t image_size;
    const char *image_name;   /* for error messages when image_data is used */
    const char *prompt;
    const qvl_message *messages;
    int n_messages;
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
    /* Of total_s, the seconds the request waited in the queue: for a preparation worker, then
     * (prepared) for a sequence slot and KV blocks. total_s - queue_s is its own service time. */
    double queue_s;
    int downscaled_from_tokens;  /* > 0: on_overflow_downscale shrank the image from this many tokens */
} qvl_result;

/* Runs one request. Errors on user input (unreadable image, prompt longer than the context)
 * return -1 with the reason; the engine stays usable. */
int qvl_generate(qvl_engine *e, const qvl_request *req, const qvl_gen_opts *g, qvl_result *out);
void qvl_result_free(qvl_result *r);

/* ---- many requests in flight ---- */

typedef int64_t qvl_req_id;

/* Queues a request (nothing runs until qvl_step). Returns its id (>= 0), or -1 + error when the
 * request is refused up front (no prompt, queue full, bad options). Errors found later (unreadable
 * image, prompt longer than the context) come back through qvl_poll for that request alone. The
 * token callback in g, if any, is called from qvl_step with that request's text pieces. */
qvl_req_id qvl_submit(qvl_engine *e, const qvl_request *req, const qvl_gen_opts *g);

/* Runs one scheduler step. Returns the number of requests still waiting or running (0: idle), or
 * -1 + error on a failure of the engine itself (a device error), after which every running request
 * is finished with that error (waiting ones stay queued). When nothing can run because every
 * request in flight is still being read and preprocessed by the worker threads, it waits for the
 * first of them instead of returning at once (no busy loop for the caller). */
int qvl_step(qvl_engine *e);

/* A finished request. status 0: result is filled; else the request failed alone with code/error
 * (QVL_ERR_CANCELLED after qvl_cancel: result then holds what was generated before the cancel, with
 * prompt_tokens and n_tokens). Always qvl_result_free(&ev.result) (a zeroed result is fine). */
typedef struct {
    qvl_req_id id;
    int status;               /* 0 or -1 */
    qvl_error_code code;
    char error[512];
    qvl_result result;
} qvl_event;

/* Takes one finished request, if any: returns 1 and fills *ev, else 0. Never blocks. */
int qvl_poll(qvl_engine *e, qvl_event *ev);

/* Ends a waiting or running request. A waiting one is finished at once (one that a worker thread is
 * reading and preprocessing: as soon as that returns); a running one stops before its next token,
 * and its KV blocks are free when the step in progress (if any) returns. Its event
 * (QVL_ERR_CANCELLED) still comes through qvl_poll. Returns 0, or -1 (QVL_ERR_INPUT) for an id that
 * is not in flight. */
int qvl_cancel(qvl_engine *e, qvl_req_id id);

/* Counters for progress and /metrics. */
typedef struct {
    int waiting, running;     /* requests */
    int max_batch;            /* the cap in force (resolved from the plan when opts.max_batch <= 0) */
    int kv_blocks_total, kv_blocks_used, kv_block_tokens;
    int kv_blocks_peak;       /* the most KV blocks in use at once since open */
    long long requests_finished, requests_failed, prompt_tokens, generated_tokens;
    /* Where qvl_step's time went since open (host wall time; each phase ends when the device has
     * finished it), seconds: */
    double wait_s;            /* nothing to run: waiting for the worker threads to read images */
    double vision_s;          /* vision passes (encode_images) */
    double prefill_steps_s;   /* forward passes with prompt rows (and the decode rows beside them) */
    double decode_steps_s;    /* forward passes of decode rows only */
    long long vision_passes, prefill_steps, decode_steps;
    long long step_rows;      /* rows of every forward pass together */
} qvl_engine_stats;
void qvl_engine_stats_get(qvl_engine *e, qvl_engine_stats *out);

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
