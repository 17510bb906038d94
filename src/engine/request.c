/* Copying a request at submit, and preparing it (images decoded and preprocessed, the conversation
 * tokenized with each image expanded, the context limit applied) on a CPU worker. */
#include "engine/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/error.h"

double qvl_now_mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int input_error(void) {
    qvl_error_set_kind(QVL_ERR_INPUT);
    return -1;
}

static int oom(void) {
    qvl_errorf("request: out of memory");
    qvl_error_set_kind(QVL_ERR_NO_MEMORY);
    return -1;
}

/* Adds an image source; returns its index or -1. */
static int add_image(qvl_req *r, const char *path, const uint8_t *data, size_t size, const char *name) {
    if (!path && !data) {
        qvl_errorf("request: an image part has neither image_path nor image_data");
        return input_error();
    }
    qvl_req_image *im = &r->images[r->n_images];
    memset(im, 0, sizeof *im);
    char fallback[32];
    snprintf(fallback, sizeof fallback, "image %d", r->n_images + 1);
    if (path) {
        if (!(im->path = strdup(path))) return oom();
    } else {
        if (!(im->data = malloc(size ? size : 1))) return oom();
        memcpy(im->data, data, size);
        im->size = size;
    }
    if (!(im->name = strdup(path ? path : name ? name : fallback))) return oom();
    return r->n_images++;
}

static int parse_role(const char *role, qvl_role *out) {
    if (role && !strcmp(role, "system")) *out = QVL_ROLE_SYSTEM;
    else if (role && !strcmp(role, "user")) *out = QVL_ROLE_USER;
    else if (role && !strcmp(role, "assistant")) *out = QVL_ROLE_ASSISTANT;
    else {
        qvl_errorf("request: role '%s' is not system, user or assistant", role ? role : "(none)");
        return input_error();
    }
    return 0;
}

int qvl_req_init(qvl_req *r, const qvl_request *in, const qvl_gen_opts *g) {
    memset(r, 0, sizeof *r);
    r->g = g ? *g : qvl_gen_opts_default();
    r->g.user = g ? g->user : NULL;
    if (!in) {
        qvl_errorf("prompt: no prompt given");
        return input_error();
    }
    if (r->g.max_new_tokens < 1) {
        qvl_errorf("max-new-tokens: %d is not a positive count", r->g.max_new_tokens);
        return input_error();
    }
    if (in->n_messages > 0) {
        if (!in->messages) {
            qvl_errorf("request: n_messages is %d but messages is NULL", in->n_messages);
            return input_error();
        }
        int n_img = 0;
        for (int i = 0; i < in->n_messages; i++)
            for (int p = 0; p < in->messages[i].n_parts; p++) n_img += !in->messages[i].parts[p].text;
        r->msgs = calloc((size_t)in->n_messages, sizeof *r->msgs);
        r->images = calloc((size_t)n_img + 1, sizeof *r->images);
        if (!r->msgs || !r->images) return oom();
        r->n_msgs = in->n_messages;
        for (int i = 0; i < in->n_messages; i++) {
            const qvl_message *m = &in->messages[i];
            qvl_chat_msg *d = &r->msgs[i];
            if (parse_role(m->role, &d->role)) return -1;
            if (m->n_parts < 0 || (m->n_parts > 0 && !m->parts)) {
                qvl_errorf("request: message %d has a bad part list", i + 1);
                return input_error();
            }
            qvl_chat_part *parts = calloc((size_t)m->n_parts + 1, sizeof *parts);
            if (!parts) return oom();
            d->parts = parts;
            d->n_parts = m->n_parts;
            for (int p = 0; p < m->n_parts; p++) {
                const qvl_content_part *cp = &m->parts[p];
                if (cp->text) {
                    if (!(parts[p].text = strdup(cp->text))) return oom();
                } else if (add_image(r, cp->image_path, cp->image_data, cp->image_size, cp->image_name) < 0) {
                    return -1;
                }
            }
        }
        return 0;
    }
    if (!in->prompt) {
        qvl_errorf("prompt: no prompt given");
        return input_error();
    }
    int has_image = in->image_path || in->image_data;
    r->msgs = calloc(1, sizeof *r->msgs);
    r->images = calloc(1, sizeof *r->images);
    qvl_chat_part *parts = r->msgs ? calloc(2, sizeof *parts) : NULL;
    if (!r->msgs || !r->images || !parts) return oom();
    r->msgs[0].parts = parts;
    r->n_msgs = 1;
    r->msgs[0].role = QVL_ROLE_USER;
    int p = 0;
    if (has_image) {
        if (add_image(r, in->image_path, in->image_data, in->image_size, in->image_name ? in->image_name : "image") < 0)
            return -1;
        p++;
    }
    if (!(parts[p].text = strdup(in->prompt))) return oom();
    r->msgs[0].n_parts = p + 1;
    return 0;
}

void qvl_req_free(qvl_req *r) {
    if (!r) return;
    for (int i = 0; i < r->n_msgs; i++) {
        for (int p = 0; p < r->msgs[i].n_parts; p++) free((char *)r->msgs[i].parts[p].text);
        free((qvl_chat_part *)r->msgs[i].parts);
    }
    free(r->msgs);
    for (int i = 0; i < r->n_images; i++) {
        free(r->images[i].path);
        free(r->images[i].data);
        free(r->images[i].name);
        if (r->pv) qvl_pixel_values_free(&r->pv[i]);
    }
    free(r->images);
    free(r->pv);
    free(r->ids);
    free(r->pos);
    if (r->ds) qvl_detok_stream_free(r->ds);
    qvl_result_free(&r->res);
    memset(r, 0, sizeof *r);
}

void qvl_req_fail(qvl_req *r, qvl_error_code code) {
    r->status = -1;
    int c = qvl_error_kind();
    r->code = c ? (qvl_error_code)c : code;
    snprintf(r->error, sizeof r->error, "%s", qvl_error());
}

/* Image tokens the preprocessor will produce for the image under p. */
static int plan_image_tokens(const qvl_image *img, const qvl_image_params *p) {
    int factor = p->patch_size * p->merge_size, rh, rw;
    if (qvl_smart_resize(img->height, img->width, factor, p->min_pixels, p->max_pixels, &rh, &rw)) return -1;
    return (rh / factor) * (rw / factor);
}

/* Lowers p->max_pixels until the image takes at most budget tokens. Returns its tokens or -1. */
static int shrink_to_budget(const qvl_image *img, qvl_image_params *p, int budget, const char *name, long max_len) {
    long token_px = (long)p->patch_size * p->merge_size * p->patch_size * p->merge_size;
    if (budget >= 1) {
        p->max_pixels = budget * token_px;
        for (int tries = 0; tries < 200 && p->max_pixels >= token_px; tries++) {
            if (p->min_pixels > p->max_pixels) p->min_pixels = p->max_pixels;
            int n = plan_image_tokens(img, p);
            if (n < 0) return -1;
            if (n <= budget) return n;
            p->max_pixels -= token_px;
        }
    }
    return qvl_errorf("%s: image does not fit max-model-len %ld even when downscaled", name, max_len);
}

/* Prefixes the recorded error with the image's name unless it names it already. */
static void name_error(const char *name) {
    const char *msg = qvl_error();
    if (strstr(msg, name)) return;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", msg);
    qvl_errorf("%s: %s", name, buf);
}

static void overflow_error(const char *image, long n, int n_img, long max_len) {
    const char *why = n > max_len ? "exceeds" : "leaves no room to generate within";
    if (image)
        qvl_errorf("%s: prompt of %ld tokens (%d image tokens) %s max-model-len %ld", image, n, n_img, why, max_len);
    else
        qvl_errorf("prompt of %ld tokens %s max-model-len %ld", n, why, max_len);
    qvl_error_set_kind(QVL_ERR_TOO_LONG);
}

/* The image parts in order, with their token counts set from toks. */
static void set_image_tokens(qvl_req *r, const int *toks) {
    int k = 0;
    for (int i = 0; i < r->n_msgs; i++)
        for (int p = 0; p < r->msgs[i].n_parts; p++)
            if (!r->msgs[i].parts[p].text) ((qvl_chat_part *)r->msgs[i].parts)[p].n_image_tokens = toks[k++];
}

static int encode(qvl_req *r, const qvl_prep_ctx *c, const int *toks) {
    set_image_tokens(r, toks);
    free(r->ids);
    r->ids = NULL;
    size_t n = 0;
    if (qvl_chat_encode(c->tok, r->msgs, r->n_msgs, 1, &r->ids, &n)) return -1;
    r->n_ids = (int)n;
    return 0;
}

int qvl_req_prepare(qvl_req *r, const qvl_prep_ctx *c) {
    double t0 = qvl_now_mono();
    int n = r->n_images, rc = -1;
    qvl_image *img = calloc((size_t)n + 1, sizeof *img);
    qvl_image_params *ip = calloc((size_t)n + 1, sizeof *ip);
    int *toks = calloc((size_t)n + 1, sizeof *toks);
    r->pv = calloc((size_t)n + 1, sizeof *r->pv);
    if (!img || !ip || !toks || !r->pv) {
        oom();
        goto done;
    }
    int total = 0;
    for (int i = 0; i < n; i++) {
        const qvl_req_image *s = &r->images[i];
        ip[i] = c->img;
        int lrc = s->path ? qvl_image_load(s->path, &img[i]) : qvl_image_decode(s->data, s->size, s->name, &img[i]);
        if (lrc || (toks[i] = plan_image_tokens(&img[i], &ip[i])) < 0) {
            name_error(s->name);
            input_error();
            goto done;
        }
        total += toks[i];
    }
    if (encode(r, c, toks)) goto done;
    long M = c->max_model_len;
    if ((long)r->n_ids >= M) {   /* at least one generated token must fit */
        int text_len = r->n_ids - total;
        const char *name = n == 1 ? r->images[0].name : n > 1 ? "images" : NULL;
        if (!n || !r->g.on_overflow_downscale || text_len >= M - 1) {
            overflow_error(name, (long)r->n_ids, total, M);
            goto done;
        }
        /* Downscale: the images share what the text leaves, equally. */
        int share = (int)((M - 1 - text_len) / n);
        for (int i = 0; i < n; i++)
            if ((toks[i] = shrink_to_budget(&img[i], &ip[i], share, r->images[i].name, M)) < 0) {
                name_error(r->images[i].name);
                qvl_error_set_kind(QVL_ERR_TOO_LONG);
                goto done;
            }
        r->downscaled_from_tokens = total;
        if (encode(r, c, toks)) goto done;
    }
    double t1 = qvl_now_mono();
    r->load_s = t1 - t0;
    r->image_tokens = 0;
    for (int i = 0; i < n; i++) {
        if (qvl_image_preprocess(&img[i], &ip[i], &r->pv[i])) {
            name_error(r->images[i].name);
            input_error();
            goto done;
        }
        if (r->pv[i].image_tokens != toks[i]) {
            qvl_errorf("%s: preprocessing gave %d image tokens, planned %d", r->images[i].name, r->pv[i].image_tokens,
                       toks[i]);
            goto done;
        }
        r->image_tokens += toks[i];
        qvl_image_free(&img[i]);
    }
    r->preprocess_s = qvl_now_mono() - t1;
    rc = 0;
done:
    if (rc) qvl_req_fail(r, QVL_ERR_INTERNAL);
    for (int i = 0; img && i < n; i++) qvl_image_free(&img[i]);
    free(img);
    free(ip);
    free(toks);
    return rc;
}
