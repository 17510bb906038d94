/* Encode and decode. Encode follows the reference pipeline: split the input on added-token text
 * (leftmost-longest), NFC-normalize each remaining piece, split it with the pre-tokenizer regex,
 * then BPE each pre-token's bytes (memoized per call, since words repeat). */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/normalize.h"
#include "tokenizer/pretok.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

/* Memo of BPE results for short words within one encode call. */
typedef struct {
    uint64_t *hash;   /* 0 = empty */
    uint32_t *key_off, *key_len, *ids_off, *ids_n;
    uint32_t mask, used;
    utf8_buf keys;
    tok_ids ids;
} word_memo;

enum { MEMO_MAX_WORD = 64, MEMO_SLOTS = 1 << 16 };

static int memo_init(word_memo *m) {
    memset(m, 0, sizeof *m);
    m->mask = MEMO_SLOTS - 1;
    m->hash = calloc(MEMO_SLOTS, sizeof *m->hash);
    m->key_off = malloc(MEMO_SLOTS * sizeof *m->key_off);
    m->key_len = malloc(MEMO_SLOTS * sizeof *m->key_len);
    m->ids_off = malloc(MEMO_SLOTS * sizeof *m->ids_off);
    m->ids_n = malloc(MEMO_SLOTS * sizeof *m->ids_n);
    return m->hash && m->key_off && m->key_len && m->ids_off && m->ids_n ? 0 : -1;
}

static void memo_free(word_memo *m) {
    free(m->hash), free(m->key_off), free(m->key_len), free(m->ids_off), free(m->ids_n);
    free(m->keys.data), free(m->ids.ids);
}

typedef struct {
    const qvl_tokenizer *tok;
    tok_splitter *split;
    word_memo *memo; /* NULL for short inputs */
    tok_ids out;
} encoder;

static int encode_word(encoder *e, const unsigned char *w, size_t n) {
    word_memo *m = e->memo;
    if (!m || n > MEMO_MAX_WORD || n < 2) return tok_bpe_word(e->tok, w, n, &e->out);
    uint64_t h = tok_hash_bytes(w, n) | 1;
    uint32_t i = (uint32_t)h & m->mask;
    while (m->hash[i]) {
        if (m->hash[i] == h && m->key_len[i] == n && !memcmp(m->keys.data + m->key_off[i], w, n)) {
            for (uint32_t k = 0; k < m->ids_n[i]; k++)
                if (tok_ids_push(&e->out, m->ids.ids[m->ids_off[i] + k])) return -1;
            return 0;
        }
        i = (i + 1) & m->mask;
    }
    size_t start = e->out.n;
    if (tok_bpe_word(e->tok, w, n, &e->out)) return -1;
    if (m->used * 2 >= MEMO_SLOTS) return 0; /* full: stop memoizing */
    if (utf8_buf_reserve(&m->keys, n)) return 0;
    m->hash[i] = h;
    m->key_off[i] = (uint32_t)m->keys.len;
    m->key_len[i] = (uint32_t)n;
    memcpy(m->keys.data + m->keys.len, w, n);
    m->keys.len += n;
    m->ids_off[i] = (uint32_t)m->ids.n;
    m->ids_n[i] = (uint32_t)(e->out.n - start);
    for (size_t k = start; k < e->out.n; k++)
        if (tok_ids_push(&m->ids, e->out.ids[k])) return -1;
    m->used++;
    return 0;
}

/* Pre-tokenizes normalized text; both matches and the gaps between them are pre-tokens. */
static int encode_normalized(encoder *e, const char *s, size_t n) {
    size_t pos = 0, ms, me;
    int rc;
    while (pos < n && (rc = tok_split_next(e->tok, e->split, s, n, pos, &ms, &me)) == 1) {
        if (ms > pos && encode_word(e, (const unsigned char *)s + pos, ms - pos)) return -1;
        if (encode_word(e, (const unsigned char *)s + ms, me - ms)) return -1;
        if (me == ms) { /* cannot happen with the Qwen regex; avoid looping forever */
            if (encode_word(e, (const unsigned char *)s + me, 1)) return -1;
            me++;
        }
        pos = me;
    }
    if (pos < n && rc < 0) return -1;
    if (pos < n && encode_word(e, (const unsigned char *)s + pos, n - pos)) return -1;
    return 0;
}

static int encode_piece(encoder *e, const char *s, size_t n) {
    if (n == 0) return 0;
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    if (i == n) return encode_normalized(e, s, n); /* ASCII is already NFC */
    size_t k;
    char *nfc = tok_nfc(s, n, &k);
    if (!nfc) return -1;
    int rc = encode_normalized(e, nfc, k);
    free(nfc);
    return rc;
}

/* Length of the longest added token whose text starts at s, and its id. */
static size_t match_added(const qvl_tokenizer *tok, const char *s, size_t n, int32_t *id) {
    for (int i = 0; i < tok->n_added; i++) { /* longest first */
        int32_t a = tok->added[i].id;
        size_t len = tok->tok_len[a];
        if (len && len <= n && !memcmp(s, tok->arena + tok->tok_off[a], len)) {
            *id = a;
            return len;
        }
    }
    return 0;
}

int qvl_tokenizer_encode(const qvl_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    size_t bad = utf8_first_invalid((const unsigned char *)text, len);
    if (bad < len) return qvl_errorf("input: invalid UTF-8 at byte %zu", bad);
    encoder e = {.tok = tok};
    word_memo memo;
    int rc = -1;
    if (!(e.split = tok_splitter_new(tok))) return qvl_errorf("input: out of memory");
    if (len >= 4096 && memo_init(&memo) == 0) e.memo = &memo;
    size_t seg = 0, pos = 0;
    while (pos < len) {
        int32_t id;
        size_t k = tok->added_first[(unsigned char)text[pos]] ? match_added(tok, text + pos, len - pos, &id) : 0;
        if (!k) {
            pos++;
            continue;
        }
        if (encode_piece(&e, text + seg, pos - seg) || tok_ids_push(&e.out, id)) goto done;
        pos += k;
        seg = pos;
    }
    if (encode_piece(&e, text + seg, len - seg)) goto done;
    rc = 0;
done:
    if (e.memo) memo_free(e.memo);
    tok_splitter_free(e.split);
    if (rc) {
        if (!qvl_error()[0]) qvl_errorf("input: out of memory");
        free(e.out.ids);
        return -1;
    }
    *ids = e.out.ids ? e.out.ids : malloc(sizeof(int32_t));
    *n = e.out.n;
    return *ids ? 0 : qvl_errorf("input: out of memory");
}

char *qvl_tokenizer_decode(const qvl_tokenizer *tok, const int32_t *ids, size_t n, int skip_special) {
    size_t len;
    return qvl_tokenizer_decode_len(tok, ids, n, skip_special, &len);
}

char *qvl_tokenizer_decode_len(const qvl_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                               size_t *len) {
    utf8_buf raw = {0}, out = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0) {
            free(raw.data);
            qvl_errorf("decode: token id %d is negative", id);
            return NULL;
        }
        if (!qvl_tokenizer_has_token(tok, id)) continue; /* no text, as HF tokenizers' decode */
        if (skip_special && (tok->tok_flags[id] & TOK_SPECIAL)) continue;
        if (utf8_buf_reserve(&raw, tok->tok_len[id])) goto oom;
        memcpy(raw.data + raw.len, tok->arena + tok->tok_off[id], tok->tok_len[id]);
        raw.len += tok->tok_len[id];
    }
    if (utf8_lossy_append(&out, (const unsigned char *)raw.data, raw.len, 1) == (size_t)-1) goto oom;
    free(raw.data);
    *len = out.len;
    return out.data;
oom:
    free(raw.data);
    free(out.data);
    qvl_errorf("decode: out of memory");
    return NULL;
}

int32_t qvl_tokenizer_token_id(const qvl_tokenizer *tok, const char *text) {
    return tok_str_map_get(&tok->vocab, tok, text, strlen(text));
}

int qvl_tokenizer_has_token(const qvl_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_tokens && (tok->tok_flags[id] & TOK_PRESENT);
}

int qvl_tokenizer_is_special(const qvl_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_tokens && (tok->tok_flags[id] & TOK_SPECIAL);
}

int qvl_tokenizer_vocab_size(const qvl_tokenizer *tok) { return tok->n_tokens; }
