/* Streaming decode: token bytes accumulate until they form whole UTF-8 characters, so a caller
 * printing as it generates never shows half a character. The concatenated output equals
 * qvl_tokenizer_decode of all ids (same U+FFFD replacement of invalid bytes). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

struct qvl_detok_stream {
    const qvl_tokenizer *tok;
    int skip_special;
    unsigned char pending[8]; /* an incomplete UTF-8 sequence (at most 3 bytes) */
    size_t n_pending;
    utf8_buf raw, out;
};

qvl_detok_stream *qvl_detok_stream_new(const qvl_tokenizer *tok, int skip_special) {
    qvl_detok_stream *s = calloc(1, sizeof *s);
    if (!s) {
        qvl_errorf("decode: out of memory");
        return NULL;
    }
    s->tok = tok;
    s->skip_special = skip_special;
    return s;
}

static const char *emit(qvl_detok_stream *s, const char *bytes, size_t n, int final) {
    s->raw.len = 0;
    if (utf8_buf_reserve(&s->raw, s->n_pending + n)) goto oom;
    memcpy(s->raw.data, s->pending, s->n_pending);
    memcpy(s->raw.data + s->n_pending, bytes, n);
    s->raw.len = s->n_pending + n;
    s->out.len = 0;
    size_t used = utf8_lossy_append(&s->out, (const unsigned char *)s->raw.data, s->raw.len, final);
    if (used == (size_t)-1) goto oom;
    s->n_pending = s->raw.len - used; /* < 4: only an incomplete sequence is held back */
    memcpy(s->pending, s->raw.data + used, s->n_pending);
    if (!s->out.data && utf8_buf_reserve(&s->out, 0)) goto oom;
    s->out.data[s->out.len] = 0;
    return s->out.data;
oom:
    qvl_errorf("decode: out of memory");
    return NULL;
}

const char *qvl_detok_stream_push(qvl_detok_stream *s, int32_t id) {
    const qvl_tokenizer *tok = s->tok;
    if (id < 0) {
        qvl_errorf("decode: token id %d is negative", id);
        return NULL;
    }
    /* An id the tokenizer has no token for (the model's vocabulary is padded past the tokenizer's,
     * and sampling can pick there) has no text, as in HF tokenizers' decode. */
    if (!qvl_tokenizer_has_token(tok, id) || (s->skip_special && (tok->tok_flags[id] & TOK_SPECIAL)))
        return emit(s, "", 0, 0);
    return emit(s, tok->arena + tok->tok_off[id], tok->tok_len[id], 0);
}

const char *qvl_detok_stream_flush(qvl_detok_stream *s) { return emit(s, "", 0, 1); }

void qvl_detok_stream_free(qvl_detok_stream *s) {
    if (!s) return;
    free(s->raw.data);
    free(s->out.data);
    free(s);
}

size_t qvl_detok_stream_last_len(const qvl_detok_stream *s) { return s->out.len; }
