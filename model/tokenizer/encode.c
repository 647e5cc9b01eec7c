/* model/tokenizer/encode.c: the encode pipeline, step for step as the
 * `tokenizers` library runs it: split the text on added tokens
 * (leftmost-longest, single_word, lstrip/rstrip), normalize each remaining
 * segment, split it again on normalized added tokens, pre-tokenize and BPE
 * every piece, then the post-processor's template. */
#include "model/tokenizer/internal.h"

#include "common/utf8.h"

#include <stdlib.h>
#include <string.h>

void ctx_free(enc_ctx *c)
{
    free(c->out.data);
    sl_free(&c->pieces[0]);
    sl_free(&c->pieces[1]);
    free(c->norm.data);
    free(c->scratch.data);
    free(c->sym);
    free(c->heap);
    free(c->cache);
    free(c->cache_keys.data);
    free(c->cache_ids.data);
    free(c->spans);
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mctx);
    pcre2_jit_stack_free(c->jit_stack);
}

gptq_status oom(void)
{
    return gptq_fail(GPTQ_ERR_NOMEM, "tokenizer: out of memory while encoding");
}


/* ---- added tokens ----------------------------------------------------------- */

/* Next added token (of the given `normalized` kind) in s from pos, HF's
 * find_matches: leftmost-longest, single_word filter, lstrip/rstrip widen the
 * span over whitespace. Returns 1 with [*start, *stop) and *id, 0 if none.
 * *resume is where the search continues (the raw match's end). */
static int next_added(const gptq_tokenizer *tok, const char *s, size_t n, size_t pos,
                      size_t floor, int normalized, size_t *start, size_t *stop, int32_t *id,
                      size_t *resume)
{
    const uint8_t *first = tok->added_first[normalized ? 1 : 0];
    for (size_t i = pos; i < n; i++) {
        if (!first[(unsigned char)s[i]]) continue;
        const added_token *best = NULL;
        size_t best_len = 0;
        for (size_t k = 0; k < tok->n_added; k++) {
            const added_token *t = &tok->added[k];
            size_t len = t->match_len;
            if (t->normalized != normalized || len <= best_len || len > n - i) continue;
            if (memcmp(s + i, t->match, len)) continue;
            best = t;
            best_len = len;
        }
        if (!best) continue;
        size_t b = i, e = i + best_len, k;
        if (best->single_word) {
            size_t cs;
            int word_before = b > 0 && is_word_char(utf8_prev(s, b, &cs));
            int word_after = e < n && is_word_char(utf8_decode((const unsigned char *)s + e, &k));
            if (word_before || word_after) {
                i = e - 1; /* the matcher has consumed it; go on after it */
                continue;
            }
        }
        *resume = e;
        if (best->lstrip) {
            size_t cs;
            while (b > floor && is_unicode_space(utf8_prev(s, b, &cs))) b = cs;
        }
        if (best->rstrip)
            while (e < n && is_unicode_space(utf8_decode((const unsigned char *)s + e, &k))) e += k;
        *start = b;
        *stop = e;
        *id = best->id;
        return 1;
    }
    return 0;
}

/* Normalize a segment free of raw added tokens, split it on the normalized
 * added tokens, and encode the rest. */
static gptq_status encode_segment(enc_ctx *c, const char *s, size_t n, size_t base)
{
    const gptq_tokenizer *tok = c->tok;
    const char *norm;
    size_t norm_len, pos = 0, from = 0;
    gptq_status st;
    if ((st = normalize(c, s, n, &norm, &norm_len))) return st;
    size_t start, stop, resume;
    int32_t id;
    int any_normalized = 0;
    for (size_t k = 0; k < tok->n_added; k++) any_normalized |= tok->added[k].normalized;
    while (any_normalized && next_added(tok, norm, norm_len, pos, from, 1, &start, &stop, &id, &resume)) {
        if ((st = encode_normalized(c, norm + from, start - from, base == 0 && from == 0))) return st;
        if (iv_push(&c->out, id)) return oom();
        from = stop;
        pos = resume > stop ? resume : stop;
    }
    return encode_normalized(c, norm + from, norm_len - from, base == 0 && from == 0);
}

gptq_status gptq_tokenizer_encode(const gptq_tokenizer *tok, const char *text, size_t len,
                                  int add_special, int32_t **ids, size_t *n_ids)
{
    enc_ctx c = {0};
    gptq_status st = GPTQ_OK;
    if (!tok || !ids || !n_ids || (!text && len))
        return gptq_fail(GPTQ_ERR_ARG, "gptq_tokenizer_encode: tok, ids and n_ids must not be NULL");
    *ids = NULL;
    *n_ids = 0;
    c.tok = tok;
    size_t bad = gptq_utf8_check(text, len);
    if (bad < len)
        return gptq_fail(GPTQ_ERR_ARG, "tokenizer: text is not valid UTF-8 at byte %zu (0x%02x); "
                         "convert it to UTF-8 first", bad, (unsigned char)text[bad]);
    size_t pos = 0, from = 0, start, stop, resume;
    int32_t id;
    while (next_added(tok, text, len, pos, from, 0, &start, &stop, &id, &resume)) {
        if (start > from && (st = encode_segment(&c, text + from, start - from, from))) goto fail;
        if (iv_push(&c.out, id)) { st = oom(); goto fail; }
        from = stop;
        pos = resume > stop ? resume : stop;
    }
    if (len > from && (st = encode_segment(&c, text + from, len - from, from))) goto fail;

    if (add_special && tok->n_template) {
        int32_t *with = malloc((c.out.len + tok->n_template) * sizeof *with);
        size_t n = 0;
        if (!with) { st = oom(); goto fail; }
        for (size_t k = 0; k < tok->n_template; k++) {
            if (tok->template_ids[k] >= 0) {
                with[n++] = tok->template_ids[k];
            } else {
                if (c.out.len) memcpy(with + n, c.out.data, c.out.len * sizeof *with);
                n += c.out.len;
            }
        }
        free(c.out.data);
        c.out.data = with;
        c.out.len = n;
        c.out.cap = c.out.len + tok->n_template;
    }
    if (c.out.len) {
        *ids = c.out.data;
        *n_ids = c.out.len;
        c.out.data = NULL;
    }
fail:
    ctx_free(&c);
    return st;
}


/* HF matches `normalized` added tokens in normalized text by their
 * normalized content (so under Llama 2's Prepend("▁") "foo" is sought as
 * "▁foo"), and id_to_token (hence decode) gives that form too; the others
 * are matched and decoded as their content. */
gptq_status added_match_strings(gptq_tokenizer *tok, const char *path)
{
    enc_ctx c = {0};
    gptq_status st = GPTQ_OK;
    c.tok = tok;
    for (size_t k = 0; k < tok->n_added; k++) {
        added_token *t = &tok->added[k];
        const char *m = tok->added_str[t->id];
        size_t n = tok->added_len[t->id];
        if (t->normalized && normalize(&c, m, n, &m, &n)) {
            gptq_clear_error(); /* normalization failed: match it as written */
            m = tok->added_str[t->id];
            n = tok->added_len[t->id];
        }
        if (n == 0 || !(t->match = dup_bytes(m, n))) {
            st = n ? gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path)
                   : gptq_fail(GPTQ_ERR_FORMAT, "%s: added token %d normalizes to nothing", path, (int)t->id);
            break;
        }
        t->match_len = n;
        tok->added_first[t->normalized ? 1 : 0][(unsigned char)t->match[0]] = 1;
        tok->added_text[t->id] = t->match;
        tok->added_text_len[t->id] = (uint32_t)n;
    }
    ctx_free(&c);
    return st;
}

/* Streaming bytes of every token (decoder chain in raw mode, not first). */
