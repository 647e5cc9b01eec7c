/* model/tokenizer/decode.c: decoders, loaded from tokenizer.json and run
 * over the token strings of a decode as HF's decode_chain does (ByteLevel,
 * ByteFallback, Fuse, Strip, Replace, Metaspace, Sequence), and the
 * per-token bytes used to stream generated text. */
#include "model/tokenizer/internal.h"

#include "common/utf8.h"

#include <stdlib.h>
#include <string.h>

gptq_status load_decoder(gptq_tokenizer *tok, const char *path, json_t *d)
{
    if (json_is_null(d) || !d) return GPTQ_OK;
    tok->has_decoder = 1;
    const char *type = json_str(d, "type");
    if (!type) return gptq_fail(GPTQ_ERR_FORMAT, "%s: decoder has no \"type\"", path);
    if (!strcmp(type, "Sequence"))
        return load_sequence(tok, path, d, "decoders", "decoder", load_decoder);
    dec_step step = {0};
    gptq_status st;
    if (!strcmp(type, "ByteLevel")) {
        step.kind = DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        step.kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        step.kind = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        const char *content = json_str(d, "content");
        json_t *start = json_object_get(d, "start"), *stop = json_object_get(d, "stop");
        size_t k;
        if (!content || !*content || !json_is_integer(start) || !json_is_integer(stop) ||
            json_integer_value(start) < 0 || json_integer_value(stop) < 0)
            return gptq_fail(GPTQ_ERR_FORMAT,
                             "%s: Strip decoder needs \"content\" (one character) and "
                             "non-negative \"start\" and \"stop\"", path);
        step.kind = DEC_STRIP;
        step.content = utf8_decode((const unsigned char *)content, &k);
        step.start = (int)json_integer_value(start);
        step.stop = (int)json_integer_value(stop);
    } else if (!strcmp(type, "Replace")) {
        const char *pattern, *content = json_str(d, "content");
        int is_regex;
        if ((st = parse_pattern(path, "Replace decoder", d, &pattern, &is_regex))) return st;
        if (is_regex)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: Replace decoder with a Regex pattern is "
                             "not supported (String patterns are)", path);
        if (!content || !*pattern)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: Replace decoder needs a non-empty pattern and \"content\"", path);
        step.kind = DEC_REPLACE;
        step.a = strdup(pattern);
        step.b = strdup(content);
    } else if (!strcmp(type, "Metaspace")) {
        const char *r = json_str(d, "replacement");
        step.kind = DEC_METASPACE;
        if ((st = parse_scheme(path, d, &step.scheme))) return st;
        step.a = strdup(r ? r : "\xE2\x96\x81");
        step.b = strdup(" ");
    } else {
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: decoder \"%s\" is not supported (ByteLevel, Metaspace, Replace, "
                         "ByteFallback, Fuse, Strip and Sequence are)", path, type);
    }
    dec_step *grown = realloc(tok->dec, (tok->n_dec + 1) * sizeof *grown);
    if (!grown || ((step.kind == DEC_REPLACE || step.kind == DEC_METASPACE) && (!step.a || !step.b))) {
        free(step.a);
        free(step.b);
        if (grown) tok->dec = grown;
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    }
    tok->dec = grown;
    tok->dec[tok->n_dec++] = step;
    return GPTQ_OK;
}


/* ---- decode ------------------------------------------------------------------ */

/* Text of id as HF's id_to_token gives it: added tokens first. NULL for an
 * id no token uses. */
static const char *token_text(const gptq_tokenizer *tok, int32_t id, size_t *len)
{
    if (tok->added_text[id]) { *len = tok->added_text_len[id]; return tok->added_text[id]; }
    *len = tok->model_len[id];
    return tok->model_str[id];
}

/* "<0xNN>" -> NN, or -1 (HF ByteFallback accepts either case of hex digit). */
static int fallback_byte(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Flush the pending fallback bytes as HF does: the whole run as text if it
 * is valid UTF-8, else one U+FFFD per byte (raw keeps the bytes). */
static int flush_bytes(strlist *out, const strbuf *bytes, int raw)
{
    if (!bytes->len) return 0;
    if (raw || gptq_utf8_check(bytes->data, bytes->len) == bytes->len)
        return sl_push(out, bytes->data, bytes->len, 0);
    for (size_t i = 0; i < bytes->len; i++)
        if (sl_push(out, "\xEF\xBF\xBD", 3, 0)) return -1;
    return 0;
}

/* One decoder step (HF decode_chain) from `in` to `out`. raw: streaming
 * bytes (no U+FFFD, no strips unless first). first: `in` starts the text. */
static int dec_step_apply(const dec_step *d, const strlist *in, strlist *out, strbuf *tmp, int raw,
                          int first)
{
    switch (d->kind) {
    case DEC_BYTELEVEL:
        tmp->len = 0;
        for (size_t i = 0; i < in->n; i++) {
            const unsigned char *s = (const unsigned char *)in->text.data + in->off[i];
            size_t n = in->len[i], k, mark = tmp->len;
            int all = 1;
            for (size_t j = 0; j < n && all; j += k) {
                uint32_t cp = utf8_decode(s + j, &k);
                if (cp >= 0x144 || char_byte[cp] < 0) { all = 0; break; }
                char b = (char)char_byte[cp];
                if (sb_append(tmp, &b, 1)) return -1;
            }
            if (!all) { /* HF: a token with a non-byte character passes through as is */
                tmp->len = mark;
                if (sb_append(tmp, s, n)) return -1;
            }
        }
        if (raw) return sl_push(out, tmp->data, tmp->len, 0);
        if (sl_begin(out, 0) || utf8_append_lossy(&out->text, tmp->data, tmp->len)) return -1;
        sl_end(out);
        return 0;
    case DEC_REPLACE:
    case DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->text.data + in->off[i];
            if (sl_begin(out, 0)) return -1;
            if (d->kind == DEC_METASPACE && i == 0 && first && d->scheme != PREPEND_NEVER) {
                /* HF drops every replacement char of the first token */
                if (append_replaced(&out->text, s, in->len[i], d->a, "")) return -1;
            } else if (append_replaced(&out->text, s, in->len[i], d->a, d->b)) {
                return -1;
            }
            sl_end(out);
        }
        return 0;
    case DEC_BYTEFALLBACK:
        tmp->len = 0;
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->text.data + in->off[i];
            int b = fallback_byte(s, in->len[i]);
            if (b >= 0) {
                char ch = (char)b;
                if (sb_append(tmp, &ch, 1)) return -1;
                continue;
            }
            if (flush_bytes(out, tmp, raw)) return -1;
            tmp->len = 0;
            if (sl_begin(out, 0) || sb_append(&out->text, s, in->len[i])) return -1;
            sl_end(out);
        }
        return flush_bytes(out, tmp, raw);
    case DEC_FUSE:
        if (sl_begin(out, 0)) return -1;
        for (size_t i = 0; i < in->n; i++)
            if (sb_append(&out->text, in->text.data + in->off[i], in->len[i])) return -1;
        sl_end(out);
        return 0;
    case DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const unsigned char *s = (const unsigned char *)in->text.data + in->off[i];
            size_t n = in->len[i], b = 0, e = n, k;
            if (!raw || first)
                for (int j = 0; j < d->start && b < n && utf8_decode(s + b, &k) == d->content; j++) b += k;
            if (!raw)
                for (int j = 0; j < d->stop && e > b; j++) {
                    size_t cs;
                    if (utf8_prev((const char *)s, e, &cs) != d->content) break;
                    e = cs;
                }
            if (sl_begin(out, 0) || sb_append(&out->text, s + b, e - b)) return -1;
            sl_end(out);
        }
        return 0;
    }
    return 0;
}

/* Run the decoder chain over the token strings in `list` and write the joined
 * result into `text`. */
static int decode_list(const gptq_tokenizer *tok, strlist *list, strlist *spare, strbuf *tmp,
                       strbuf *text, int raw, int first)
{
    if (!tok->has_decoder) { /* HF joins tokens with spaces */
        for (size_t i = 0; i < list->n; i++)
            if ((i && sb_append(text, " ", 1)) ||
                sb_append(text, list->text.data + list->off[i], list->len[i]))
                return -1;
        return 0;
    }
    strlist *in = list, *out = spare;
    for (size_t k = 0; k < tok->n_dec; k++) {
        sl_clear(out);
        if (dec_step_apply(&tok->dec[k], in, out, tmp, raw, first)) return -1;
        strlist *t = in;
        in = out;
        out = t;
    }
    for (size_t i = 0; i < in->n; i++) {
        if (raw ? sb_append(text, in->text.data + in->off[i], in->len[i])
                : utf8_append_lossy(text, in->text.data + in->off[i], in->len[i]))
            return -1;
    }
    return 0;
}

gptq_status gptq_tokenizer_decode(const gptq_tokenizer *tok, const int32_t *ids, size_t n,
                                  char **text, size_t *len)
{
    strlist list = {0}, spare = {0};
    strbuf tmp = {0}, out = {0};
    gptq_status st = GPTQ_OK;
    if (!tok || !text || !len || (!ids && n))
        return gptq_fail(GPTQ_ERR_ARG, "gptq_tokenizer_decode: tok, text and len must not be NULL");
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) {
            st = gptq_fail(GPTQ_ERR_ARG, "tokenizer: id %d at position %zu is outside the "
                           "vocabulary [0, %d)", (int)ids[i], i, (int)tok->vocab_size);
            goto fail;
        }
        size_t tl;
        const char *t = token_text(tok, ids[i], &tl);
        if (t && (sl_begin(&list, 0) || sb_append(&list.text, t, tl))) goto nomem;
        if (t) sl_end(&list);
    }
    if (decode_list(tok, &list, &spare, &tmp, &out, 0, 1) || sb_append(&out, "", 0)) goto nomem;
    *text = out.data;
    *len = out.len;
    out.data = NULL;
    goto fail;
nomem:
    st = gptq_fail(GPTQ_ERR_NOMEM, "tokenizer: out of memory while decoding %zu ids", n);
fail:
    sl_free(&list);
    sl_free(&spare);
    free(tmp.data);
    free(out.data);
    return st;
}

gptq_status gptq_tokenizer_token_bytes(const gptq_tokenizer *tok, int32_t id, int first,
                                       const char **bytes, size_t *len)
{
    if (!tok || !bytes || !len)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_tokenizer_token_bytes: tok, bytes and len must not be NULL");
    if (id < 0 || id >= tok->vocab_size)
        return gptq_fail(GPTQ_ERR_ARG, "tokenizer: id %d is outside the vocabulary [0, %d)", (int)id,
                         (int)tok->vocab_size);
    const char *b = tok->tok_bytes[id] ? tok->tok_bytes[id] : "";
    size_t n = tok->tok_bytes_len[id];
    if (first && tok->strips_first_space && n && b[0] == ' ') { b++; n--; }
    *bytes = b;
    *len = n;
    return GPTQ_OK;
}

int gptq_tokenizer_vocab_size(const gptq_tokenizer *tok)
{
    return tok ? (int)tok->vocab_size : 0;
}

int32_t gptq_tokenizer_token_id(const gptq_tokenizer *tok, const char *token)
{
    if (!tok || !token) return -1;
    size_t n = strlen(token);
    int32_t id = strmap_get(&tok->added_map, tok->added_str, tok->added_len, token, n);
    return id >= 0 ? id : model_id(tok, token, n);
}


gptq_status build_token_bytes(gptq_tokenizer *tok, const char *path)
{
    strlist list = {0}, spare = {0};
    strbuf tmp = {0}, out = {0};
    gptq_status st = GPTQ_OK;
    tok->tok_bytes = calloc((size_t)tok->vocab_size, sizeof *tok->tok_bytes);
    tok->tok_bytes_len = calloc((size_t)tok->vocab_size, sizeof *tok->tok_bytes_len);
    if (!tok->tok_bytes || !tok->tok_bytes_len) goto nomem;
    for (int32_t id = 0; id < tok->vocab_size; id++) {
        size_t tl;
        const char *t = token_text(tok, id, &tl);
        if (!t) continue;
        sl_clear(&list);
        out.len = 0;
        if (sl_push(&list, t, tl, 0) || decode_list(tok, &list, &spare, &tmp, &out, 1, 0)) goto nomem;
        if (!(tok->tok_bytes[id] = dup_bytes(out.data ? out.data : "", out.len))) goto nomem;
        tok->tok_bytes_len[id] = (uint32_t)out.len;
    }
    for (size_t k = 0; k < tok->n_dec; k++) {
        const dec_step *d = &tok->dec[k];
        if ((d->kind == DEC_STRIP && d->content == ' ' && d->start > 0) ||
            (d->kind == DEC_METASPACE && d->scheme != PREPEND_NEVER))
            tok->strips_first_space = 1;
    }
    goto done;
nomem:
    st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for token bytes", path);
done:
    sl_free(&list);
    sl_free(&spare);
    free(tmp.data);
    free(out.data);
    return st;
}

