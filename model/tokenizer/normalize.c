/* model/tokenizer/normalize.c: normalizers, loaded from tokenizer.json and
 * applied to each segment of text between raw added tokens, as the
 * `tokenizers` library does: NFC, NFD, NFKC, NFKD (utf8proc's Unicode
 * tables), Lowercase (Unicode full lowercase mapping, per character),
 * Strip, Replace (string or regex), Prepend, and Sequence of them. */
#include "model/tokenizer/internal.h"

#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

void norm_step_free(norm_step *step)
{
    free(step->a);
    free(step->b);
    pcre2_code_free(step->re);
    memset(step, 0, sizeof *step);
}

static gptq_status push_step(gptq_tokenizer *tok, const char *path, norm_step *step)
{
    norm_step *grown = realloc(tok->norm, (tok->n_norm + 1) * sizeof *grown);
    if (!grown) {
        norm_step_free(step);
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    }
    tok->norm = grown;
    tok->norm[tok->n_norm++] = *step;
    return GPTQ_OK;
}

gptq_status load_normalizer(gptq_tokenizer *tok, const char *path, json_t *n)
{
    if (json_is_null(n) || !n) return GPTQ_OK;
    const char *type = json_str(n, "type");
    gptq_status st;
    if (!type) return gptq_fail(GPTQ_ERR_FORMAT, "%s: normalizer has no \"type\"", path);
    if (!strcmp(type, "Sequence"))
        return load_sequence(tok, path, n, "normalizers", "normalizer", load_normalizer);
    norm_step step = {0};
    if (!strcmp(type, "NFC")) {
        step.kind = NORM_NFC;
    } else if (!strcmp(type, "NFD")) {
        step.kind = NORM_NFD;
    } else if (!strcmp(type, "NFKC")) {
        step.kind = NORM_NFKC;
    } else if (!strcmp(type, "NFKD")) {
        step.kind = NORM_NFKD;
    } else if (!strcmp(type, "Lowercase")) {
        step.kind = NORM_LOWERCASE;
    } else if (!strcmp(type, "Strip")) {
        step.kind = NORM_STRIP;
        step.left = json_flag(n, "strip_left", 1);
        step.right = json_flag(n, "strip_right", 1);
    } else if (!strcmp(type, "Prepend")) {
        const char *p = json_str(n, "prepend");
        if (!p) return gptq_fail(GPTQ_ERR_FORMAT, "%s: Prepend normalizer needs \"prepend\"", path);
        step.kind = NORM_PREPEND;
        if (!(step.a = strdup(p))) return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    } else if (!strcmp(type, "Replace")) {
        const char *pattern, *content = json_str(n, "content");
        int is_regex;
        if ((st = parse_pattern(path, "Replace normalizer", n, &pattern, &is_regex))) return st;
        if (!content || !*pattern)
            return gptq_fail(GPTQ_ERR_FORMAT,
                             "%s: Replace normalizer needs a non-empty pattern and \"content\"", path);
        step.kind = NORM_REPLACE;
        step.a = strdup(pattern);
        step.b = strdup(content);
        if (!step.a || !step.b) {
            norm_step_free(&step);
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
        }
        if (is_regex &&
            (st = compile_regex(path, "Replace normalizer", pattern, strlen(pattern), 0, &step.re))) {
            norm_step_free(&step);
            return st;
        }
    } else {
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: normalizer \"%s\" is not supported (NFC, NFD, NFKC, NFKD, Lowercase, "
                         "Strip, Replace, Prepend and Sequence are)", path, type);
    }
    return push_step(tok, path, &step);
}

/* Unicode normalization form of s into out (utf8proc: NFC = compose, NFD =
 * decompose, K = compatibility mappings too; STABLE keeps unassigned code
 * points as they are). */
static gptq_status unicode_form(enum norm_kind kind, const char *s, size_t n, strbuf *out)
{
    utf8proc_option_t opts = UTF8PROC_STABLE;
    if (kind == NORM_NFC || kind == NORM_NFKC) opts |= UTF8PROC_COMPOSE;
    else opts |= UTF8PROC_DECOMPOSE;
    if (kind == NORM_NFKC || kind == NORM_NFKD) opts |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *mapped = NULL;
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n,
                                        &mapped, opts);
    if (len < 0) {
        free(mapped);
        return len == UTF8PROC_ERROR_NOMEM
                   ? oom()
                   : gptq_fail(GPTQ_ERR_ARG, "tokenizer: Unicode normalization failed: %s",
                               utf8proc_errmsg(len));
    }
    int rc = sb_append(out, mapped, (size_t)len);
    free(mapped);
    return rc ? oom() : GPTQ_OK;
}

/* Rust's char::to_lowercase per character (as HF's Lowercase): the simple
 * mapping, except U+0130, the one character whose unconditional full
 * lowercase is two characters. */
static int lowercase(const char *s, size_t n, strbuf *out)
{
    if (sb_reserve(out, n)) return -1;
    for (size_t i = 0, k; i < n; i += k) {
        uint32_t cp = utf8_decode((const unsigned char *)s + i, &k);
        char buf[8];
        if (cp == 0x130) {
            if (sb_append(out, "i\xCC\x87", 3)) return -1;
            continue;
        }
        uint32_t lower = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
        if (sb_append(out, buf, utf8_encode(lower, buf))) return -1;
    }
    return 0;
}

/* Whitespace (Rust's is_whitespace) trimmed off either end. */
static void strip_bounds(const char *s, size_t n, int left, int right, size_t *b, size_t *e)
{
    size_t k, cs;
    *b = 0;
    *e = n;
    while (left && *b < n && is_unicode_space(utf8_decode((const unsigned char *)s + *b, &k))) *b += k;
    while (right && *e > *b && is_unicode_space(utf8_prev(s, *e, &cs))) *e = cs;
}

/* Every regex match replaced by `to`. */
static gptq_status replace_regex(enc_ctx *c, const pcre2_code *re, const char *s, size_t n,
                                 const char *to, strbuf *out)
{
    size_t n_spans;
    gptq_status st = find_matches(c, re, NULL, s, n, &n_spans);
    if (st) return st;
    size_t to_len = strlen(to);
    for (size_t i = 0; i < n_spans; i++) {
        const struct span *sp = &c->spans[i];
        if (sp->match ? sb_append(out, to, to_len) : sb_append(out, s + sp->start, sp->end - sp->start))
            return oom();
    }
    return GPTQ_OK;
}

gptq_status normalize(enc_ctx *c, const char *s, size_t n, const char **out, size_t *out_len)
{
    const gptq_tokenizer *tok = c->tok;
    gptq_status st;
    *out = s;
    *out_len = n;
    for (size_t k = 0; k < tok->n_norm; k++) {
        const norm_step *step = &tok->norm[k];
        const char *cur = *out;
        size_t cur_len = *out_len;
        c->scratch.len = 0;
        switch (step->kind) {
        case NORM_NFC:
        case NORM_NFD:
        case NORM_NFKC:
        case NORM_NFKD:
            if ((st = unicode_form(step->kind, cur, cur_len, &c->scratch))) return st;
            break;
        case NORM_LOWERCASE:
            if (lowercase(cur, cur_len, &c->scratch)) return oom();
            break;
        case NORM_STRIP: {
            size_t b, e;
            strip_bounds(cur, cur_len, step->left, step->right, &b, &e);
            if (sb_append(&c->scratch, cur + b, e - b)) return oom();
            break;
        }
        case NORM_PREPEND:
            if (cur_len && (sb_append(&c->scratch, step->a, strlen(step->a)) ||
                            sb_append(&c->scratch, cur, cur_len)))
                return oom();
            break;
        case NORM_REPLACE:
            if (step->re) {
                if ((st = replace_regex(c, step->re, cur, cur_len, step->b, &c->scratch))) return st;
            } else if (append_replaced(&c->scratch, cur, cur_len, step->a, step->b)) {
                return oom();
            }
            break;
        }
        /* swap scratch into norm so the next step may read it */
        strbuf t = c->norm;
        c->norm = c->scratch;
        c->scratch = t;
        if (sb_append(&c->norm, "", 0)) return oom();
        *out = c->norm.data;
        *out_len = c->norm.len;
    }
    return GPTQ_OK;
}
