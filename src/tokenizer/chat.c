/* The Qwen3-VL Instruct chat template (docs/chat-template.md section 3). The prompt is rendered as
 * text and tokenized as a whole (text next to "user\n" can merge with it, as in the reference);
 * then the i-th <|image_pad|> is expanded to the i-th image's token count, as the processor does. */
#include "tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/utf8.h"
#include "util/error.h"

static const char *role_name(qvl_role r) {
    return r == QVL_ROLE_SYSTEM ? "system" : r == QVL_ROLE_USER ? "user" : "assistant";
}

static int put(utf8_buf *b, const char *s) {
    size_t n = strlen(s);
    if (utf8_buf_reserve(b, n)) return -1;
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
    return 0;
}

char *qvl_chat_render(const qvl_chat_msg *msgs, int n_msgs, int add_generation_prompt) {
    utf8_buf b = {0};
    int rc = put(&b, "");
    for (int i = 0; i < n_msgs && !rc; i++) {
        rc |= put(&b, "<|im_start|>");
        rc |= put(&b, role_name(msgs[i].role));
        rc |= put(&b, "\n");
        for (int p = 0; p < msgs[i].n_parts; p++) {
            const qvl_chat_part *part = &msgs[i].parts[p];
            rc |= put(&b, part->text ? part->text : "<|vision_start|><|image_pad|><|vision_end|>");
        }
        rc |= put(&b, "<|im_end|>\n");
    }
    if (add_generation_prompt) rc |= put(&b, "<|im_start|>assistant\n");
    if (rc) {
        free(b.data);
        qvl_errorf("chat: out of memory");
        return NULL;
    }
    return b.data;
}

int qvl_chat_encode(const qvl_tokenizer *tok, const qvl_chat_msg *msgs, int n_msgs, int add_generation_prompt,
                    int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    int n_images = 0;
    size_t extra = 0;
    for (int i = 0; i < n_msgs; i++)
        for (int p = 0; p < msgs[i].n_parts; p++)
            if (!msgs[i].parts[p].text) {
                if (msgs[i].parts[p].n_image_tokens < 1)
                    return qvl_errorf("chat: image %d has %d tokens", n_images + 1, msgs[i].parts[p].n_image_tokens);
                extra += (size_t)msgs[i].parts[p].n_image_tokens - 1;
                n_images++;
            }
    int32_t pad = qvl_tokenizer_token_id(tok, "<|image_pad|>");
    if (n_images && pad < 0) return qvl_errorf("chat: the tokenizer has no <|image_pad|> token");
    char *text = qvl_chat_render(msgs, n_msgs, add_generation_prompt);
    if (!text) return -1;
    int32_t *base;
    size_t nb;
    int rc = qvl_tokenizer_encode(tok, text, strlen(text), &base, &nb);
    free(text);
    if (rc) return -1;
    int32_t *out = malloc((nb + extra + 1) * sizeof *out);
    if (!out) {
        free(base);
        return qvl_errorf("chat: out of memory");
    }
    size_t o = 0;
    int img = 0;
    for (size_t k = 0; k < nb; k++) {
        if (base[k] != pad || !n_images) {
            out[o++] = base[k];
            continue;
        }
        if (img == n_images) break; /* more pads than images: reported below */
        /* Find the img-th image part's token count. */
        int seen = 0, count = 0;
        for (int i = 0; i < n_msgs && !count; i++)
            for (int p = 0; p < msgs[i].n_parts && !count; p++)
                if (!msgs[i].parts[p].text && seen++ == img) count = msgs[i].parts[p].n_image_tokens;
        for (int c = 0; c < count; c++) out[o++] = pad;
        img++;
    }
    free(base);
    if (img != n_images || o != nb + extra) {
        free(out);
        return qvl_errorf("chat: the message text contains \"<|image_pad|>\"; it is reserved for images");
    }
    *ids = out;
    *n = o;
    return 0;
}

int qvl_chat_encode_single(const qvl_tokenizer *tok, const char *text, int n_image_tokens, int32_t **ids,
                           size_t *n) {
    if (!text) text = "";
    qvl_chat_part parts[2];
    int np = 0;
    if (n_image_tokens > 0) parts[np++] = (qvl_chat_part){NULL, n_image_tokens};
    parts[np++] = (qvl_chat_part){text, 0};
    qvl_chat_msg msg = {QVL_ROLE_USER, parts, np};
    return qvl_chat_encode(tok, &msg, 1, 1, ids, n);
}
