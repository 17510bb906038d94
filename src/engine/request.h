/* A request inside the engine: its own copy of what qvl_submit was given (conversation, image
 * bytes or paths, generation options), then what preparing it produced on a CPU worker: the
 * decoded + preprocessed images and the prompt ids (chat template, images expanded to their
 * tokens, the context limit applied). Preparing touches no model and no backend, so it runs on
 * worker threads while the forward passes run. */
#ifndef QVL_ENGINE_REQUEST_H
#define QVL_ENGINE_REQUEST_H
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "qvl.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    char *path;              /* a file, or NULL */
    uint8_t *data;           /* encoded bytes (copied), or NULL */
    size_t size;
    char *name;              /* how errors name it */
} qvl_req_image;

typedef enum {
    QVL_REQ_WAITING = 0,     /* submitted, not yet given to a worker */
    QVL_REQ_PREPARING,       /* a worker reads and preprocesses it */
    QVL_REQ_READY,           /* prepared (or failed: status -1), waiting for a slot and KV blocks */
    QVL_REQ_RUNNING          /* holds a slot: prefill chunks, then decode steps */
} qvl_req_state;

typedef struct qvl_req {
    qvl_req_id id;
    struct qvl_req *next;    /* the engine's queue links */
    int cancelled;           /* set by qvl_cancel (atomic) */
    qvl_gen_opts g;
    qvl_chat_msg *msgs;      /* copied; image parts get n_image_tokens when prepared */
    int n_msgs;
    qvl_req_image *images;   /* in order of appearance */
    int n_images;
    double t_submit;         /* CLOCK_MONOTONIC seconds at qvl_submit */
    /* Prepared. */
    int32_t *ids;
    int n_ids;
    qvl_pixel_values *pv;    /* [n_images] */
    int image_tokens;
    int downscaled_from_tokens;
    double load_s, preprocess_s;
    /* Scheduling (engine/scheduler.c). */
    int state;               /* qvl_req_state */
    int slot;                /* backend sequence slot while running, else -1 */
    int32_t *pos;            /* [3][n_ids] M-RoPE positions of the prompt */
    int rope_delta;
    int n_run;               /* prompt tokens run so far */
    int next_image_row;      /* image feature row of the next image pad */
    int max_new;             /* answer tokens at most (the context limit applied) */
    int images_dropped;      /* the backend's image features are gone (the prompt ran) */
    qvl_result res;          /* generated so far */
    qvl_detok_stream *ds;
    double vision_s, t_vision_end, t_first;
    double t_prep_start, t_prep_end, t_admit;
    /* Failure (status -1): the request's own error. */
    int status;
    qvl_error_code code;
    char error[512];
} qvl_req;

/* What preparing needs from the engine (read-only, shared by the workers). */
typedef struct {
    const qvl_tokenizer *tok;
    qvl_image_params img;    /* pixel limits; threads = resize threads per image */
    long max_model_len;
} qvl_prep_ctx;

/* Copies the request (qvl.h rules: messages, or image + prompt). Returns 0, or -1 + error + code
 * (QVL_ERR_INPUT for a malformed request). */
int qvl_req_init(qvl_req *r, const qvl_request *in, const qvl_gen_opts *g);
void qvl_req_free(qvl_req *r);
/* Loads and preprocesses the images and tokenizes the conversation. Returns 0, or -1 with
 * r->status/code/error set (the request fails alone). */
int qvl_req_prepare(qvl_req *r, const qvl_prep_ctx *c);
/* Records the current error (qvl_error + its code, default `code`) as the request's failure. */
void qvl_req_fail(qvl_req *r, qvl_error_code code);

/* CLOCK_MONOTONIC in seconds. */
double qvl_now_mono(void);

#endif
