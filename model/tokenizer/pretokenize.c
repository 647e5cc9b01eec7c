/* model/tokenizer/pretokenize.c: pre-tokenizers, loaded from tokenizer.json
 * and applied to each normalized segment: the segment is split into pieces
 * that BPE then encodes one by one. ByteLevel (GPT-2's split and byte
 * characters), Split (string or regex, every behaviour, invert), Metaspace,
 * and the splits that `tokenizers` defines by a character class: Digits,
 * Punctuation, Whitespace, WhitespaceSplit; Sequence chains them. */
#include "model/tokenizer/internal.h"

#include <stdlib.h>
#include <string.h>

/* HF's GPT-2 split, used by ByteLevel with use_regex. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* The character-class pre-tokenizers as Split steps, with the classes Rust
 * gives them: Digits char::is_numeric (Nd, Nl, No); Punctuation
 * is_ascii_punctuation or a Unicode P* category; WhitespaceSplit
 * char::is_whitespace; Whitespace the onig regex \w+|[^\w\s]+ kept
 * (Removed, inverted), with onig's Unicode \w (L, M, Nd, Pc). */
static const char digits_pattern[] = "\\p{N}";
static const char punct_pattern[] = "[\\p{P}\\x{21}-\\x{2F}\\x{3A}-\\x{40}\\x{5B}-\\x{60}\\x{7B}-\\x{7E}]";
static const char space_pattern[] = "[" TOK_RE_SPACE "]";
static const char whitespace_pattern[] =
    "[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]+|[^\\p{L}\\p{M}\\p{Nd}\\p{Pc}" TOK_RE_SPACE "]+";

void pre_step_free(pre_step *step)
{
    pcre2_code_free(step->re);
    free(step->replacement);
    memset(step, 0, sizeof *step);
}

static gptq_status parse_behavior(const char *path, const char *what, json_t *p,
                                  enum split_behavior dflt, enum split_behavior *out)
{
    const char *behavior = json_str(p, "behavior");
    if (!behavior) {
        *out = dflt;
        return GPTQ_OK;
    }
    if (!strcmp(behavior, "Removed")) *out = SPLIT_REMOVED;
    else if (!strcmp(behavior, "Isolated")) *out = SPLIT_ISOLATED;
    else if (!strcmp(behavior, "MergedWithPrevious")) *out = SPLIT_PREV;
    else if (!strcmp(behavior, "MergedWithNext")) *out = SPLIT_NEXT;
    else if (!strcmp(behavior, "Contiguous")) *out = SPLIT_CONTIGUOUS;
    else
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: %s behavior \"%s\": expected Removed, Isolated, "
                         "MergedWithPrevious, MergedWithNext or Contiguous", path, what, behavior);
    return GPTQ_OK;
}

/* A Split step over a built-in character class. */
static gptq_status class_split(const char *path, const char *what, const char *pattern,
                               enum split_behavior behavior, int invert, pre_step *step)
{
    step->kind = PRE_SPLIT;
    step->behavior = behavior;
    step->invert = invert;
    return compile_regex(path, what, pattern, strlen(pattern), 0, &step->re);
}

gptq_status load_pretokenizer(gptq_tokenizer *tok, const char *path, json_t *p)
{
    if (json_is_null(p) || !p) return GPTQ_OK;
    const char *type = json_str(p, "type");
    if (!type) return gptq_fail(GPTQ_ERR_FORMAT, "%s: pre_tokenizer has no \"type\"", path);
    if (!strcmp(type, "Sequence"))
        return load_sequence(tok, path, p, "pretokenizers", "pre_tokenizer", load_pretokenizer);
    pre_step step = {0};
    gptq_status st = GPTQ_OK;
    enum split_behavior behavior;
    if (!strcmp(type, "ByteLevel")) {
        step.kind = PRE_BYTELEVEL;
        step.add_prefix_space = json_flag(p, "add_prefix_space", 1);
        step.use_regex = json_flag(p, "use_regex", 1);
        if (step.use_regex)
            st = compile_regex(path, "ByteLevel", gpt2_pattern, sizeof gpt2_pattern - 1, 0, &step.re);
    } else if (!strcmp(type, "Split")) {
        const char *pattern;
        int is_regex;
        if ((st = parse_pattern(path, "Split pre_tokenizer", p, &pattern, &is_regex))) return st;
        if (!json_str(p, "behavior"))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: Split pre_tokenizer needs a \"behavior\"", path);
        if ((st = parse_behavior(path, "Split", p, SPLIT_REMOVED, &step.behavior))) return st;
        step.kind = PRE_SPLIT;
        step.invert = json_flag(p, "invert", 0);
        st = compile_regex(path, "Split", pattern, strlen(pattern), !is_regex, &step.re);
    } else if (!strcmp(type, "Metaspace")) {
        const char *r = json_str(p, "replacement");
        step.kind = PRE_METASPACE;
        step.split = json_flag(p, "split", 1);
        if ((st = parse_scheme(path, p, &step.scheme))) return st;
        if (!(step.replacement = strdup(r ? r : "\xE2\x96\x81")))
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    } else if (!strcmp(type, "Digits")) {
        st = class_split(path, "Digits", digits_pattern,
                         json_flag(p, "individual_digits", 0) ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, 0,
                         &step);
    } else if (!strcmp(type, "Punctuation")) {
        if ((st = parse_behavior(path, "Punctuation", p, SPLIT_ISOLATED, &behavior))) return st;
        st = class_split(path, "Punctuation", punct_pattern, behavior, 0, &step);
    } else if (!strcmp(type, "Whitespace")) {
        st = class_split(path, "Whitespace", whitespace_pattern, SPLIT_REMOVED, 1, &step);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        st = class_split(path, "WhitespaceSplit", space_pattern, SPLIT_REMOVED, 0, &step);
    } else {
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: pre_tokenizer \"%s\" is not supported (ByteLevel, Split, Metaspace, "
                         "Digits, Punctuation, Whitespace, WhitespaceSplit and Sequence are)",
                         path, type);
    }
    if (st) {
        pre_step_free(&step);
        return st;
    }
    pre_step *grown = realloc(tok->pre, (tok->n_pre + 1) * sizeof *grown);
    if (!grown) {
        pre_step_free(&step);
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    }
    tok->pre = grown;
    tok->pre[tok->n_pre++] = step;
    return GPTQ_OK;
}

/* ---- splitting ------------------------------------------------------------------ */

static int span_push(enc_ctx *c, size_t *n, size_t start, size_t end, int match)
{
    if (*n == c->spans_cap) {
        size_t cap = c->spans_cap ? c->spans_cap * 2 : 256;
        struct span *sp = realloc(c->spans, cap * sizeof *sp);
        if (!sp) return -1;
        c->spans = sp;
        c->spans_cap = cap;
    }
    c->spans[(*n)++] = (struct span){start, end, match};
    return 0;
}

/* HF find_matches: spans covering s, matches and the gaps between them. A
 * literal delimiter (Metaspace's split) is passed as lit instead of re. */
gptq_status find_matches(enc_ctx *c, const pcre2_code *re, const char *lit, const char *s,
                         size_t n, size_t *n_spans)
{
    size_t prev = 0, pos = 0;
    *n_spans = 0;
    if (n == 0) return span_push(c, n_spans, 0, 0, 0) ? oom() : GPTQ_OK;
    if (lit) {
        size_t lit_len = strlen(lit);
        const char *hit;
        while (pos < n && (hit = memmem(s + pos, n - pos, lit, lit_len))) {
            size_t start = (size_t)(hit - s);
            if (prev != start && span_push(c, n_spans, prev, start, 0)) return oom();
            if (span_push(c, n_spans, start, start + lit_len, 1)) return oom();
            prev = pos = start + lit_len;
        }
    } else {
        if (!c->md && !(c->md = pcre2_match_data_create(16, NULL))) return oom();
        if (!c->mctx) {
            if (!(c->mctx = pcre2_match_context_create(NULL))) return oom();
            c->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
            if (c->jit_stack) pcre2_jit_stack_assign(c->mctx, NULL, c->jit_stack);
        }
        while (pos <= n) {
            int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(rc, msg, sizeof msg);
                return gptq_fail(GPTQ_ERR_LIMIT, "tokenizer: pre-tokenizer regex failed on a %zu-byte piece: %s",
                                 n, (const char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
            size_t start = ov[0], end = ov[1];
            if (prev != start && span_push(c, n_spans, prev, start, 0)) return oom();
            if (span_push(c, n_spans, start, end, 1)) return oom();
            prev = end;
            if (end == start) { /* empty match: step one character, as onig's find_iter does */
                if (end >= n) break;
                size_t k;
                utf8_decode((const unsigned char *)s + end, &k);
                pos = end + k;
            } else {
                pos = end;
            }
        }
    }
    if (prev != n && span_push(c, n_spans, prev, n, 0)) return oom();
    return GPTQ_OK;
}

/* HF SplitDelimiterBehavior applied to the spans in place; spans with
 * match == 0 after this are kept, the others (Removed delimiters) dropped. */
static void apply_behavior(enc_ctx *c, size_t *n_spans, enum split_behavior behavior, int invert)
{
    struct span *sp = c->spans;
    size_t n = *n_spans, out = 0;
    if (invert)
        for (size_t i = 0; i < n; i++) sp[i].match = !sp[i].match;
    switch (behavior) {
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++) sp[i].match = 0;
        return;
    case SPLIT_REMOVED:
        return;
    case SPLIT_PREV: {
        int prev_match = 0;
        for (size_t i = 0; i < n; i++) {
            int m = sp[i].match;
            if (m && !prev_match && out) sp[out - 1].end = sp[i].end;
            else sp[out++] = (struct span){sp[i].start, sp[i].end, 0};
            prev_match = m;
        }
        break;
    }
    case SPLIT_NEXT: {
        /* HF folds from the right: a delimiter joins the piece after it */
        int prev_match = 0;
        size_t w = n; /* write from the back */
        for (size_t i = n; i-- > 0;) {
            int m = sp[i].match;
            if (m && !prev_match && w < n) sp[w].start = sp[i].start;
            else sp[--w] = (struct span){sp[i].start, sp[i].end, 0};
            prev_match = m;
        }
        memmove(sp, sp + w, (n - w) * sizeof *sp);
        out = n - w;
        break;
    }
    case SPLIT_CONTIGUOUS: {
        int prev_match = 0;
        for (size_t i = 0; i < n; i++) {
            int m = sp[i].match;
            if (m == prev_match && out) sp[out - 1].end = sp[i].end;
            else sp[out++] = (struct span){sp[i].start, sp[i].end, 0};
            prev_match = m;
        }
        break;
    }
    }
    *n_spans = out;
}

/* Append s with every byte replaced by its GPT-2 byte character. */
static int append_byte_chars(strbuf *out, const char *s, size_t n)
{
    if (sb_reserve(out, 2 * n)) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        memcpy(out->data + out->len, byte_char[b], byte_char_len[b]);
        out->len += byte_char_len[b];
    }
    out->data[out->len] = '\0';
    return 0;
}

/* Append s with every occurrence of from replaced by to. */
int append_replaced(strbuf *out, const char *s, size_t n, const char *from, const char *to)
{
    size_t from_len = strlen(from), to_len = strlen(to), pos = 0;
    const char *hit;
    while (pos < n && (hit = memmem(s + pos, n - pos, from, from_len))) {
        if (sb_append(out, s + pos, (size_t)(hit - s) - pos) || sb_append(out, to, to_len)) return -1;
        pos = (size_t)(hit - s) + from_len;
    }
    return sb_append(out, s + pos, n - pos);
}

/* One pre-tokenizer step on one piece, appending the resulting pieces. */
static gptq_status pre_step_piece(enc_ctx *c, const pre_step *p, const char *s, size_t n, int origin,
                                  strlist *out)
{
    gptq_status st;
    size_t n_spans;
    c->scratch.len = 0;
    if (p->kind == PRE_BYTELEVEL) {
        if (p->add_prefix_space && s[0] != ' ') {
            if (sb_append(&c->scratch, " ", 1) || sb_append(&c->scratch, s, n)) return oom();
            s = c->scratch.data;
            n = c->scratch.len;
        }
        if (!p->use_regex) {
            if (sl_begin(out, origin) || append_byte_chars(&out->text, s, n)) return oom();
            sl_end(out);
            return GPTQ_OK;
        }
        if ((st = find_matches(c, p->re, NULL, s, n, &n_spans))) return st;
        for (size_t i = 0; i < n_spans; i++) {
            struct span sp = c->spans[i];
            if (sp.end == sp.start) continue;
            if (sl_begin(out, origin && sp.start == 0) ||
                append_byte_chars(&out->text, s + sp.start, sp.end - sp.start))
                return oom();
            sl_end(out);
        }
        return GPTQ_OK;
    }
    if (p->kind == PRE_METASPACE) {
        size_t rep_len = strlen(p->replacement);
        int starts = n >= rep_len && !memcmp(s, p->replacement, rep_len);
        /* a piece starting with ' ' will start with the replacement */
        if (n && s[0] == ' ') starts = 1;
        if (!starts && (p->scheme == PREPEND_ALWAYS || (p->scheme == PREPEND_FIRST && origin)))
            if (sb_append(&c->scratch, p->replacement, rep_len)) return oom();
        if (append_replaced(&c->scratch, s, n, " ", p->replacement)) return oom();
        s = c->scratch.data;
        n = c->scratch.len;
        if (!p->split) return sl_push(out, s, n, origin) ? oom() : GPTQ_OK;
        if ((st = find_matches(c, NULL, p->replacement, s, n, &n_spans))) return st;
        apply_behavior(c, &n_spans, SPLIT_NEXT, 0);
    } else { /* PRE_SPLIT */
        if ((st = find_matches(c, p->re, NULL, s, n, &n_spans))) return st;
        apply_behavior(c, &n_spans, p->behavior, p->invert);
    }
    for (size_t i = 0; i < n_spans; i++) {
        struct span sp = c->spans[i];
        if (sp.match) continue;
        if (sl_push(out, s + sp.start, sp.end - sp.start, origin && sp.start == 0)) return oom();
    }
    return GPTQ_OK;
}

/* Pre-tokenize one normalized segment and BPE every piece. */
gptq_status encode_normalized(enc_ctx *c, const char *s, size_t n, int origin)
{
    const gptq_tokenizer *tok = c->tok;
    gptq_status st;
    if (n == 0) return GPTQ_OK;
    if (tok->n_pre == 0) return bpe_piece(c, s, n);
    strlist *in = &c->pieces[0], *out = &c->pieces[1];
    sl_clear(in);
    if (sl_push(in, s, n, origin)) return oom();
    for (size_t k = 0; k < tok->n_pre; k++) {
        sl_clear(out);
        for (size_t i = 0; i < in->n; i++)
            if ((st = pre_step_piece(c, &tok->pre[k], in->text.data + in->off[i], in->len[i],
                                     in->origin[i], out)))
                return st;
        strlist *t = in;
        in = out;
        out = t;
    }
    for (size_t i = 0; i < in->n; i++)
        if ((st = bpe_piece(c, in->text.data + in->off[i], in->len[i]))) return st;
    return GPTQ_OK;
}

