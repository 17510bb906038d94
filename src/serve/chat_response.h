/* The JSON the OpenAI API answers with: chat completions, stream chunks (server-sent events),
 * the model list and errors. Every function returns a malloc'd string, NULL when out of memory. */
#ifndef QVL_SERVE_CHAT_RESPONSE_H
#define QVL_SERVE_CHAT_RESPONSE_H
#include <stddef.h>

typedef struct {
    const char *id;            /* "chatcmpl-..." */
    long long created;         /* Unix seconds */
    const char *model;
} serve_chat_meta;

/* {"id", "object": "chat.completion", "created", "model", "choices": [{"index": 0, "message":
 * {"role": "assistant", "content"}, "logprobs": null, "finish_reason"}], "usage"}. */
char *serve_completion_json(const serve_chat_meta *m, const char *text, size_t len, int finish_stop,
                            int prompt_tokens, int completion_tokens);

/* One server-sent event "data: {chat.completion.chunk}\n\n". role: the first chunk's
 * {"role": "assistant"}; text (len bytes, may be NULL) the content delta; finish < 0: no finish
 * reason yet, else 1 "stop" / 0 "length"; usage_only: the include_usage chunk (empty choices). */
char *serve_chunk_event(const serve_chat_meta *m, int role, const char *text, size_t len, int finish,
                        int usage_only, int prompt_tokens, int completion_tokens);

/* {"error": {"message", "type", "param": null, "code"}} with the type OpenAI uses for status. */
char *serve_error_json(int status, const char *message);

/* {"object": "list", "data": [{"id", "object": "model", "created", "owned_by": "qvl"}]}. */
char *serve_models_json(const char *model, long long created);

#endif
