/* OpenAI response bodies (see chat_response.h), built with cJSON so that any text is escaped right. */
#include "serve/chat_response.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cJSON strings are NUL-terminated: copy the piece. Text never holds a NUL byte (the tokenizer
 * decodes to UTF-8 without them), so the copy is the whole piece. */
static cJSON *string_n(const char *s, size_t n) {
    char *t = malloc(n + 1);
    if (!t) return NULL;
    if (n) memcpy(t, s, n);
    t[n] = 0;
    cJSON *v = cJSON_CreateString(t);
    free(t);
    return v;
}

static void add_usage(cJSON *o, int prompt_tokens, int completion_tokens) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    if (!u) return;
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt_tokens + completion_tokens);
}

static cJSON *head(const serve_chat_meta *m, const char *object) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "model", m->model);
    return o;
}

static char *print_and_free(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *serve_completion_json(const serve_chat_meta *m, const char *text, size_t len, int finish_stop,
                            int prompt_tokens, int completion_tokens) {
    cJSON *o = head(m, "chat.completion");
    if (!o) return NULL;
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddItemToObject(msg, "content", string_n(text, len));
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish_stop ? "stop" : "length");
    add_usage(o, prompt_tokens, completion_tokens);
    return print_and_free(o);
}

char *serve_chunk_event(const serve_chat_meta *m, int role, const char *text, size_t len, int finish,
                        int usage_only, int prompt_tokens, int completion_tokens) {
    cJSON *o = head(m, "chat.completion.chunk");
    if (!o) return NULL;
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    if (usage_only) {
        add_usage(o, prompt_tokens, completion_tokens);
    } else {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, c);
        cJSON_AddNumberToObject(c, "index", 0);
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (text || role) cJSON_AddItemToObject(d, "content", string_n(text ? text : "", text ? len : 0));
        cJSON_AddNullToObject(c, "logprobs");
        if (finish < 0) cJSON_AddNullToObject(c, "finish_reason");
        else cJSON_AddStringToObject(c, "finish_reason", finish ? "stop" : "length");
    }
    char *json = print_and_free(o);
    if (!json) return NULL;
    size_t n = strlen(json);
    char *ev = malloc(n + 9);
    if (ev) memcpy(ev, "data: ", 6), memcpy(ev + 6, json, n), memcpy(ev + 6 + n, "\n\n", 3);
    free(json);
    return ev;
}

char *serve_error_json(int status, const char *message) {
    const char *type = status == 404 ? "not_found_error"
                       : status == 429 || status == 503 ? "server_overloaded"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    cJSON *o = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    cJSON_AddNumberToObject(e, "code", status);
    return print_and_free(o);
}

char *serve_models_json(const char *model, long long created) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    cJSON *mdl = cJSON_CreateObject();
    cJSON_AddItemToArray(data, mdl);
    cJSON_AddStringToObject(mdl, "id", model);
    cJSON_AddStringToObject(mdl, "object", "model");
    cJSON_AddNumberToObject(mdl, "created", (double)created);
    cJSON_AddStringToObject(mdl, "owned_by", "qvl");
    return print_and_free(o);
}
