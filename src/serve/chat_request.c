/* OpenAI chat-completion request -> qvl request (see chat_request.h). Unknown keys are ignored (as
 * clients send extras such as user or metadata); keys whose non-default value qvl cannot honour
 * (logprobs, tools, n > 1, ...) are refused rather than silently dropped. */
#include "serve/chat_request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int *status;
    char *err;
    size_t errlen;
} failure;

static int fail(const failure *f, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(const failure *f, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->err, f->errlen, fmt, ap);
    va_end(ap);
    *f->status = status;
    return -1;
}

/* A present, non-null member (JSON null counts as absent, as in OpenAI's API). */
static const cJSON *member(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_number(const failure *f, const cJSON *o, const char *key, double lo, double hi, int lo_open,
                      double *out) {
    const cJSON *v = member(o, key);
    if (!v) return 0;
    double x = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(x)) return fail(f, 400, "%s: must be a number", key);
    if (x < lo || (lo_open && x == lo) || x > hi)
        return fail(f, 400, "%s: %g is out of range (%s%g, %g]", key, x, lo_open ? "(" : "[", lo, hi) ;
    *out = x;
    return 0;
}

static int get_int(const failure *f, const cJSON *o, const char *key, double lo, double hi, int *present,
                   double *out) {
    const cJSON *v = member(o, key);
    *present = 0;
    if (!v) return 0;
    double x = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(x) || x != floor(x)) return fail(f, 400, "%s: must be an integer", key);
    if (x < lo || x > hi) return fail(f, 400, "%s: %.0f is out of range [%.0f, %.0f]", key, x, lo, hi);
    *present = 1;
    *out = x;
    return 0;
}

/* Keys whose default is all qvl does: refused when set to anything else. */
static int check_unsupported(const failure *f, const cJSON *o) {
    const cJSON *v;
    if ((v = member(o, "n")) && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        return fail(f, 400, "n: only n = 1 is supported");
    if ((v = member(o, "logprobs")) && !cJSON_IsFalse(v)) return fail(f, 400, "logprobs: not supported");
    if (member(o, "top_logprobs")) return fail(f, 400, "top_logprobs: not supported");
    if ((v = member(o, "frequency_penalty")) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
        return fail(f, 400, "frequency_penalty: not supported (use presence_penalty or repetition_penalty)");
    if ((v = member(o, "logit_bias")) && !(cJSON_IsObject(v) && !v->child)) return fail(f, 400, "logit_bias: not supported");
    if ((v = member(o, "tools")) && !(cJSON_IsArray(v) && !v->child)) return fail(f, 400, "tools: not supported");
    if ((v = member(o, "functions")) && !(cJSON_IsArray(v) && !v->child)) return fail(f, 400, "functions: not supported");
    if ((v = member(o, "tool_choice")) && !(cJSON_IsString(v) && !strcmp(v->valuestring, "none")))
        return fail(f, 400, "tool_choice: not supported");
    if ((v = member(o, "response_format"))) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text"))
            return fail(f, 400, "response_format: only {\"type\": \"text\"} is supported");
    }
    if ((v = member(o, "model")) && !cJSON_IsString(v)) return fail(f, 400, "model: must be a string");
    return 0;
}

static int parse_stop(const failure *f, const cJSON *o, serve_stops *st) {
    const cJSON *v = member(o, "stop");
    st->n = 0;
    if (!v) return 0;
    const cJSON *one[1] = {v};
    int n = 0;
    if (cJSON_IsString(v)) n = 1;
    else if (cJSON_IsArray(v)) n = cJSON_GetArraySize(v);
    else return fail(f, 400, "stop: must be a string or an array of strings");
    if (n > SERVE_MAX_STOP) return fail(f, 400, "stop: at most %d stop strings", SERVE_MAX_STOP);
    const cJSON *s = cJSON_IsString(v) ? one[0] : v->child;
    for (int i = 0; i < n; i++, s = s->next) {
        if (!cJSON_IsString(s)) return fail(f, 400, "stop[%d]: must be a string", i);
        size_t len = strlen(s->valuestring);
        if (len == 0) return fail(f, 400, "stop[%d]: must not be empty", i);
        if (len > SERVE_MAX_STOP_LEN) return fail(f, 400, "stop[%d]: longer than %d bytes", i, SERVE_MAX_STOP_LEN);
        st->s[st->n] = s->valuestring;
        st->len[st->n++] = len;
    }
    return 0;
}

static int parse_sampling(const failure *f, const cJSON *o, const serve_chat_limits *lim, serve_chat *c) {
    qvl_gen_opts *g = &c->gen;
    int has;
    double x;
    /* max_completion_tokens is the current name; max_tokens the older one. */
    g->max_new_tokens = lim->default_max_tokens;
    if (get_int(f, o, "max_tokens", 1, 1e9, &has, &x)) return -1;
    if (has) g->max_new_tokens = (int)x;
    if (get_int(f, o, "max_completion_tokens", 1, 1e9, &has, &x)) return -1;
    if (has) g->max_new_tokens = (int)x;
    if (get_number(f, o, "temperature", 0, 100, 0, &g->temperature)) return -1;
    if (get_number(f, o, "top_p", 0, 1, 1, &g->top_p)) return -1;
    if (get_int(f, o, "top_k", -1, 1e9, &has, &x)) return -1;
    if (has) g->top_k = x < 0 ? 0 : (int)x;   /* -1 (vLLM's "off") and 0 both mean every token */
    if (get_number(f, o, "presence_penalty", -2, 2, 0, &g->presence_penalty)) return -1;
    if (get_number(f, o, "repetition_penalty", 0, 100, 1, &g->repetition_penalty)) return -1;
    g->seed = lim->default_seed;
    if (get_int(f, o, "seed", -9007199254740991.0, 9007199254740991.0, &has, &x)) return -1;
    if (has) g->seed = (uint64_t)(int64_t)x;
    /* temperature 0 is greedy; otherwise sample, with generation_config.json's values for the
     * fields the request leaves out (as `qvl run --sample`). */
    g->sample = !(!isnan(g->temperature) && g->temperature == 0);
    if (!g->sample) g->temperature = g->top_p = NAN, g->top_k = -1;
    const cJSON *v = member(o, "stream");
    if (v && !cJSON_IsBool(v)) return fail(f, 400, "stream: must be true or false");
    c->stream = v && cJSON_IsTrue(v);
    if ((v = member(o, "stream_options"))) {
        const cJSON *u = member(v, "include_usage");
        if (!cJSON_IsObject(v) || (u && !cJSON_IsBool(u)))
            return fail(f, 400, "stream_options: must be an object {\"include_usage\": bool}");
        c->include_usage = u && cJSON_IsTrue(u);
    }
    return 0;
}

/* The text of a text part: "text" must be a string. */
static int part_text(const failure *f, const cJSON *p, const char *item, const char **out) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
    if (!cJSON_IsString(t)) return fail(f, 400, "%s.text: must be a string", item);
    *out = t->valuestring;
    return 0;
}

static int parse_messages(const failure *f, const cJSON *o, const serve_chat_limits *lim, serve_chat *c) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    if (!cJSON_IsArray(msgs) || !msgs->child) return fail(f, 400, "messages: must be a non-empty array");
    int nm = cJSON_GetArraySize(msgs), np = 0;
    if (nm > lim->max_messages) return fail(f, 400, "messages: %d messages, limit %d", nm, lim->max_messages);
    /* Count parts first so that the arrays are allocated once. */
    for (const cJSON *m = msgs->child; m; m = m->next) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        np += cJSON_IsArray(content) ? cJSON_GetArraySize(content) : 1;
    }
    c->msgs = calloc((size_t)nm, sizeof *c->msgs);
    c->parts = calloc((size_t)np + 1, sizeof *c->parts);
    c->images = calloc((size_t)np + 1, sizeof *c->images);
    if (!c->msgs || !c->parts || !c->images) return fail(f, 500, "messages: out of memory");
    c->n_slots = np + 1;
    int mi = 0, pi = 0;
    char item[96];
    for (const cJSON *m = msgs->child; m; m = m->next, mi++) {
        if (!cJSON_IsObject(m)) return fail(f, 400, "messages[%d]: must be an object", mi);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) return fail(f, 400, "messages[%d].role: must be a string", mi);
        const char *r = role->valuestring;
        /* "developer" is the newer name of OpenAI's system role. */
        if (!strcmp(r, "developer")) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return fail(f, 400, "messages[%d].role: '%s' is not supported (system, user or assistant)", mi, r);
        if (!strcmp(r, "system") && mi > 0)
            return fail(f, 400, "messages[%d]: a system message may only come first", mi);
        int user = !strcmp(r, "user");
        qvl_message *qm = &c->msgs[mi];
        qm->role = r;
        qm->parts = &c->parts[pi];
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(content)) {
            c->parts[pi++].text = content->valuestring;
            qm->n_parts = 1;
            continue;
        }
        if ((!content || cJSON_IsNull(content)) && !strcmp(r, "assistant")) continue;   /* no text */
        if (!cJSON_IsArray(content))
            return fail(f, 400, "messages[%d].content: must be a string or an array of parts", mi);
        int k = 0;
        for (const cJSON *p = content->child; p; p = p->next, k++) {
            snprintf(item, sizeof item, "messages[%d].content[%d]", mi, k);
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
            if (!cJSON_IsObject(p) || !cJSON_IsString(type))
                return fail(f, 400, "%s: must be an object with a \"type\"", item);
            qvl_content_part *qp = &c->parts[pi];
            if (!strcmp(type->valuestring, "text")) {
                if (part_text(f, p, item, &qp->text)) return -1;
            } else if (!strcmp(type->valuestring, "image_url")) {
                if (!user) return fail(f, 400, "%s: images are only accepted in user messages", item);
                if (++c->n_images > lim->max_images)
                    return fail(f, 400, "%s: more than %d images in one request", item, lim->max_images);
                const cJSON *iu = cJSON_GetObjectItemCaseSensitive(p, "image_url");
                const cJSON *url = cJSON_IsObject(iu) ? cJSON_GetObjectItemCaseSensitive(iu, "url") : iu;
                if (!cJSON_IsString(url)) return fail(f, 400, "%s.image_url: must be {\"url\": string}", item);
                size_t len;
                c->images[pi] = serve_media_load(url->valuestring, item, &lim->media, &len, f->status, f->err,
                                                 f->errlen);
                if (!c->images[pi]) return -1;
                qp->image_data = c->images[pi];
                qp->image_size = len;
                qp->image_name = "image_url";
            } else {
                return fail(f, 400, "%s.type: '%s' is not supported (text or image_url)", item, type->valuestring);
            }
            pi++;
        }
        qm->n_parts = k;
    }
    c->req.messages = c->msgs;
    c->req.n_messages = nm;
    return 0;
}

int serve_chat_parse(const char *body, size_t n, const serve_chat_limits *lim, serve_chat *c, int *status,
                     char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->gen = qvl_gen_opts_default();
    failure f = {status, err, errlen};
    const char *end = NULL;
    c->json = cJSON_ParseWithLengthOpts(body, n, &end, 0);
    if (!c->json) {
        size_t at = end && end >= body && end <= body + n ? (size_t)(end - body) : 0;
        return fail(&f, 400, "request body: not valid JSON (near byte %zu)", at);
    }
    if (!cJSON_IsObject(c->json)) return fail(&f, 400, "request body: must be a JSON object");
    if (check_unsupported(&f, c->json) || parse_sampling(&f, c->json, lim, c) || parse_stop(&f, c->json, &c->stops) ||
        parse_messages(&f, c->json, lim, c))
        return -1;
    return 0;
}

void serve_chat_free(serve_chat *c) {
    for (int i = 0; c->images && i < c->n_slots; i++) free(c->images[i]);
    free(c->msgs);
    free(c->parts);
    free(c->images);
    cJSON_Delete(c->json);
    memset(c, 0, sizeof *c);
}
