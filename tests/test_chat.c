/* The Qwen3-VL chat template (docs/chat-template.md section 3): text and ids. */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tokenizer/chat.h"
#include "util/error.h"

const qvl_tokenizer *test_qwen_tokenizer(void);

TEST(chat_render_cases) {
    qvl_chat_part img_text[] = {{NULL, 4}, {"What is written?", 0}};
    qvl_chat_msg single = {QVL_ROLE_USER, img_text, 2};
    char *s = qvl_chat_render(&single, 1, 1);
    CHECK_STR(s, "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is written?<|im_end|>\n"
                 "<|im_start|>assistant\n");
    free(s);
    qvl_chat_part sys[] = {{"Be brief.", 0}}, u1[] = {{"Hi", 0}}, a1[] = {{"Hello!", 0}},
                  u2[] = {{"Read this: ", 0}, {NULL, 2}, {" and this", 0}};
    qvl_chat_msg multi[] = {{QVL_ROLE_SYSTEM, sys, 1}, {QVL_ROLE_USER, u1, 1}, {QVL_ROLE_ASSISTANT, a1, 1},
                            {QVL_ROLE_USER, u2, 3}};
    s = qvl_chat_render(multi, 4, 1);
    CHECK_STR(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                 "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nRead this: "
                 "<|vision_start|><|image_pad|><|vision_end|> and this<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    s = qvl_chat_render(multi + 1, 1, 0); /* text only, no generation prompt */
    CHECK_STR(s, "<|im_start|>user\nHi<|im_end|>\n");
    free(s);
}

TEST(chat_encode_single_with_image) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    CHECK(tok != NULL);
    if (!tok) return;
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_INT(qvl_chat_encode_single(tok, "Hello world", 3, &ids, &n), 0);
    int32_t want[] = {151644, 872, 198, 151652, 151655, 151655, 151655, 151653, 9707, 1879, 151645, 198,
                      151644, 77091, 198};
    CHECK_INT(n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < n && i < sizeof want / sizeof want[0]; i++) CHECK_INT(ids[i], want[i]);
    free(ids);
    /* Text only: "user\n" and the text are one piece of the prompt, as in the reference. */
    CHECK_INT(qvl_chat_encode_single(tok, "Hello world", 0, &ids, &n), 0);
    int32_t want_text[] = {151644, 872, 198, 9707, 1879, 151645, 198, 151644, 77091, 198};
    CHECK_INT(n, sizeof want_text / sizeof want_text[0]);
    for (size_t i = 0; i < n && i < sizeof want_text / sizeof want_text[0]; i++) CHECK_INT(ids[i], want_text[i]);
    free(ids);
}

TEST(chat_encode_multi_image_counts) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    qvl_chat_part parts[] = {{NULL, 5}, {"a", 0}, {NULL, 2}};
    qvl_chat_msg msg = {QVL_ROLE_USER, parts, 3};
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_INT(qvl_chat_encode(tok, &msg, 1, 1, &ids, &n), 0);
    /* <|im_start|> user \n vs pad*5 ve "a" vs pad*2 ve <|im_end|> \n <|im_start|> assistant \n */
    CHECK_INT(n, 3 + 1 + 5 + 1 + 1 + 1 + 2 + 1 + 2 + 3);
    int first_run = 0, second_run = 0;
    for (size_t i = 4; i < 9; i++) first_run += ids[i] == 151655;
    for (size_t i = 12; i < 14; i++) second_run += ids[i] == 151655;
    CHECK_INT(first_run, 5);
    CHECK_INT(second_run, 2);
    CHECK_INT(ids[9], 151653);
    free(ids);
    /* Literal <|image_pad|> text would break the image-token count: refused. */
    qvl_chat_part bad[] = {{NULL, 2}, {"<|image_pad|>", 0}};
    qvl_chat_msg bmsg = {QVL_ROLE_USER, bad, 2};
    CHECK_INT(qvl_chat_encode(tok, &bmsg, 1, 1, &ids, &n), -1);
    CHECK_CONTAINS(qvl_error(), "<|image_pad|>");
}
