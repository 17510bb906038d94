/* The Qwen3-VL Instruct chat template (docs/chat-template.md section 3), rendered to text and to ids
 * with each image expanded to its N <|image_pad|> tokens. */
#ifndef QVL_TOKENIZER_CHAT_H
#define QVL_TOKENIZER_CHAT_H
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef enum { QVL_ROLE_SYSTEM, QVL_ROLE_USER, QVL_ROLE_ASSISTANT } qvl_role;

/* One part of a message: text, or an image (text == NULL) of n_image_tokens merged tokens. */
typedef struct {
    const char *text;
    int n_image_tokens;
} qvl_chat_part;

typedef struct {
    qvl_role role;
    const qvl_chat_part *parts;
    int n_parts;
} qvl_chat_msg;

/* Renders the messages as template text, each image as one
 * "<|vision_start|><|image_pad|><|vision_end|>"; malloc'd. */
char *qvl_chat_render(const qvl_chat_msg *msgs, int n_msgs, int add_generation_prompt);
/* Renders and tokenizes, expanding every image's single <|image_pad|> to its n_image_tokens. */
int qvl_chat_encode(const qvl_tokenizer *tok, const qvl_chat_msg *msgs, int n_msgs,
                    int add_generation_prompt, int32_t **ids, size_t *n);
/* The common case: one user turn of [image (if n_image_tokens > 0)] + text, generation prompt. */
int qvl_chat_encode_single(const qvl_tokenizer *tok, const char *text, int n_image_tokens,
                           int32_t **ids, size_t *n);

#endif
