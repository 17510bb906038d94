/* POST /v1/chat/completions: the OpenAI request body parsed into a qvl request, generation options,
 * stop strings and the stream flags. Every refusal is "<item>: <reason>" with its HTTP status. */
#ifndef QVL_SERVE_CHAT_REQUEST_H
#define QVL_SERVE_CHAT_REQUEST_H
#include <stddef.h>
#include <stdint.h>

#include "qvl.h"
#include "serve/media.h"
#include "serve/stop.h"

typedef struct {
    int max_images;            /* image parts per request */
    int max_messages;
    int default_max_tokens;    /* when the request gives neither max_tokens nor max_completion_tokens */
    uint64_t default_seed;     /* when the request gives no seed (the --seed option) */
    serve_media_policy media;
} serve_chat_limits;

typedef struct {
    qvl_request req;           /* req.messages/n_messages: the conversation */
    qvl_gen_opts gen;          /* on_token/user left for the caller */
    serve_stops stops;
    int stream, include_usage; /* stream_options.include_usage: a last chunk carries usage */
    int n_images;
    /* Storage the fields above point into. */
    struct cJSON *json;
    qvl_message *msgs;
    qvl_content_part *parts;
    uint8_t **images;          /* decoded image bytes, one slot per part */
    int n_slots;
} serve_chat;

/* Parses body[0..n). Returns 0, or -1 with *status (400, 413, 500) and "<item>: <reason>" in err;
 * *out is always safe to pass to serve_chat_free. */
int serve_chat_parse(const char *body, size_t n, const serve_chat_limits *lim, serve_chat *out, int *status,
                     char *err, size_t errlen);
void serve_chat_free(serve_chat *c);

#endif
