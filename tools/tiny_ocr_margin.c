/* Near-tie check for the CPU/transformers parity of models/qvl-tiny-ocr (issue 8).
 * For every held-out sample, teacher-forces transformers' greedy tokens (from
 * transformers_predictions.json, plus the final <|im_end|>) through qvl's CPU model and prints the
 * smallest margin over the answer: logit(transformers' token) - max logit(any other token).
 * Margins are F32 (qvl computes in F32); qvl's sampler rounds logits to bf16 before its argmax
 * (lowest id on ties, as torch), so a margin within one bf16 step of the logit is a tie there.
 * A negative margin is where qvl's greedy choice can depart from transformers'; its size says
 * whether that is a near-tie (bf16 GPU vs F32 CPU rounding) or a real disagreement.
 * Build and run from the repository root (after `make BUILD=build-x`):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc tools/tiny_ocr_margin.c build-x/libqvl.a \
 *      -lcjson -lpcre2-8 -lutf8proc -ljpeg -lpng -lwebp -lgif -lsnappy -lzstd -lm -pthread [CUDA libs] -o build-x/tiny_ocr_margin
 *   build-x/tiny_ocr_margin models/qvl-tiny-ocr tests/fixtures/tiny-ocr-heldout [INDEX] | sort -g -k2
 * Output: index  min_margin  step  logit_of_transformers_token  transformers_token  qvl_best_other_token  answer */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

#define IM_END 151645

static cJSON *read_json(const char *path) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: tiny_ocr_margin MODEL_DIR HELDOUT_DIR [INDEX]\n");
        return 2;
    }
    char path[4096];
    qvl_model *m = qvl_model_open(argv[1], 0);
    qvl_tokenizer *tok = m ? qvl_tokenizer_load(argv[1]) : NULL;
    snprintf(path, sizeof path, "%s/OCRBench.json", argv[2]);
    cJSON *set = read_json(path);
    snprintf(path, sizeof path, "%s/transformers_predictions.json", argv[2]);
    cJSON *ref = read_json(path);
    if (!m || !tok || !set || !ref) {
        fprintf(stderr, "tiny_ocr_margin: %s\n", m && tok ? "cannot read the held-out set or predictions" : qvl_error());
        return 1;
    }
    const qvl_config *cfg = qvl_model_config(m);
    int vocab = cfg->text.vocab_size;
    float *logits = malloc((size_t)vocab * sizeof *logits);
    qvl_image_params ip = qvl_config_image_params(cfg);
    const cJSON *pred;
    cJSON_ArrayForEach(pred, cJSON_GetObjectItem(ref, "predictions")) {
        int index = cJSON_GetObjectItem(pred, "index")->valueint;
        if (argc == 4 && index != atoi(argv[3])) continue;
        const cJSON *item = cJSON_GetArrayItem(set, index);
        const cJSON *toks = cJSON_GetObjectItem(pred, "token_ids");
        int n_ref = cJSON_GetArraySize(toks) + 1;
        int32_t *want = malloc((size_t)n_ref * sizeof *want);
        for (int i = 0; i < n_ref - 1; i++) want[i] = cJSON_GetArrayItem(toks, i)->valueint;
        want[n_ref - 1] = IM_END;
        snprintf(path, sizeof path, "%s/%s", argv[2], cJSON_GetStringValue(cJSON_GetObjectItem(item, "image_path")));
        qvl_image img = {0};
        qvl_pixel_values pv = {0};
        qvl_vision_out vo = {0};
        int32_t *ids = NULL;
        size_t n_ids = 0;
        qvl_seq *seq = NULL;
        if (qvl_image_load(path, &img) || qvl_image_preprocess(&img, &ip, &pv) || qvl_model_encode_image(m, &pv, &vo) ||
            qvl_chat_encode_single(tok, cJSON_GetStringValue(cJSON_GetObjectItem(item, "question")), pv.image_tokens,
                                   &ids, &n_ids) ||
            !(seq = qvl_seq_new(m, (int)n_ids + n_ref + 1)) ||
            qvl_seq_prefill(m, seq, ids, (int)n_ids, &vo, 1, logits)) {
            fprintf(stderr, "tiny_ocr_margin: sample %d: %s\n", index, qvl_error());
            return 1;
        }
        float min_margin = 1e30f;
        int min_step = -1, min_other = -1;
        float min_logit = 0;
        for (int t = 0; t < n_ref; t++) {
            int other = want[t] == 0 ? 1 : 0;
            for (int j = 0; j < vocab; j++)
                if (j != want[t] && logits[j] > logits[other]) other = j;
            float margin = logits[want[t]] - logits[other];
            if (margin < min_margin) min_margin = margin, min_step = t, min_other = other, min_logit = logits[want[t]];
            if (t + 1 < n_ref && qvl_seq_decode(m, seq, want[t], logits)) {
                fprintf(stderr, "tiny_ocr_margin: sample %d: %s\n", index, qvl_error());
                return 1;
            }
        }
        char *a = qvl_tokenizer_decode(tok, &want[min_step], 1, 0);
        char *b = qvl_tokenizer_decode(tok, (int32_t[]){min_other}, 1, 0);
        printf("%d\t%.4f\t%d\t%.3f\t%s\t%s\t%s\n", index, min_margin, min_step, min_logit, a, b,
               cJSON_GetStringValue(cJSON_GetObjectItem(item, "answers")));
        free(a);
        free(b);
        qvl_seq_free(seq);
        free(ids);
        qvl_vision_out_free(&vo);
        qvl_pixel_values_free(&pv);
        qvl_image_free(&img);
        free(want);
    }
    free(logits);
    cJSON_Delete(set);
    cJSON_Delete(ref);
    qvl_tokenizer_free(tok);
    qvl_model_close(m);
    return 0;
}
