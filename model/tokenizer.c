/* model/tokenizer.c: Hugging Face tokenizer.json BPE tokenizers.
 *
 * The pipeline is the `tokenizers` library's, step for step, because ids must
 * match it exactly: split on added tokens (leftmost-longest), normalize each
 * remaining segment, pre-tokenize it into pieces, run BPE on every piece
 * (lowest merge rank first, leftmost on ties: HF's word.rs merge_all), then
 * the post-processor's template. Decoding runs the decoder chain over the
 * list of token strings as HF's decode_chain does.
 *
 * Thread safety: the handle is read-only after load. Everything an encode
 * call writes (piece buffers, BPE scratch, the per-word cache, the PCRE2
 * match data and JIT stack) lives in a per-call context. */
#include "model/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable byte buffer and id vector ------------------------------------ */

typedef struct {
    char *data;
    size_t len, cap;
} strbuf;

static int sb_reserve(strbuf *sb, size_t extra)
{
    if (sb->len + extra + 1 <= sb->cap) return 0;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + extra + 1) cap *= 2;
    char *data = realloc(sb->data, cap);
    if (!data) return -1;
    sb->data = data;
    sb->cap = cap;
    return 0;
}

static int sb_append(strbuf *sb, const void *bytes, size_t n)
{
    if (sb_reserve(sb, n)) return -1;
    if (n) memcpy(sb->data + sb->len, bytes, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return 0;
}

typedef struct {
    int32_t *data;
    size_t len, cap;
} idvec;

static int iv_push(idvec *v, int32_t id)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        int32_t *data = realloc(v->data, cap * sizeof *data);
        if (!data) return -1;
        v->data = data;
        v->cap = cap;
    }
    v->data[v->len++] = id;
    return 0;
}

/* A list of strings in one buffer: pieces of text while encoding, token
 * strings while decoding. origin[i] marks a piece that starts at offset 0 of
 * the original input (Metaspace prepend_scheme "first" needs it). */
typedef struct {
    strbuf text;
    size_t *off, *len;
    uint8_t *origin;
    size_t n, cap;
} strlist;

static void sl_clear(strlist *l)
{
    l->text.len = 0;
    l->n = 0;
}

static void sl_free(strlist *l)
{
    free(l->text.data);
    free(l->off);
    free(l->len);
    free(l->origin);
    memset(l, 0, sizeof *l);
}

/* Start a new item; its bytes are appended to l->text afterwards and
 * sl_end() closes it. */
static int sl_begin(strlist *l, int origin)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *off = realloc(l->off, cap * sizeof *off);
        if (!off) return -1;
        l->off = off;
        size_t *len = realloc(l->len, cap * sizeof *len);
        if (!len) return -1;
        l->len = len;
        uint8_t *org = realloc(l->origin, cap);
        if (!org) return -1;
        l->origin = org;
        l->cap = cap;
    }
    l->off[l->n] = l->text.len;
    l->len[l->n] = 0;
    l->origin[l->n] = (uint8_t)origin;
    l->n++;
    return 0;
}

static void sl_end(strlist *l)
{
    l->len[l->n - 1] = l->text.len - l->off[l->n - 1];
}

/* Append an item; empty items are dropped as HF drops empty splits. */
static int sl_push(strlist *l, const char *s, size_t n, int origin)
{
    if (n == 0) return 0;
    if (sl_begin(l, origin) || sb_append(&l->text, s, n)) return -1;
    sl_end(l);
    return 0;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. The
 * ranges are Unicode's table 3-7 (no overlongs, no surrogates, <= U+10FFFF). */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b == 0xE0) { need = 3; lo = 0xA0; }
    else if (b >= 0xE1 && b <= 0xEC) need = 3;
    else if (b == 0xED) { need = 3; hi = 0x9F; }
    else if (b >= 0xEE && b <= 0xEF) need = 3;
    else if (b == 0xF0) { need = 4; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 4;
    else if (b == 0xF4) { need = 4; hi = 0x8F; }
    else return 0;
    if (n < 2 || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if (n <= i || s[i] < 0x80 || s[i] > 0xBF) return 0;
    return need;
}

/* Bytes of the maximal invalid subpart at s (>= 1): what one U+FFFD replaces
 * in Rust's from_utf8_lossy and Python's errors="replace". */
static size_t utf8_invalid_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b == 0xE0) { need = 3; lo = 0xA0; }
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 3;
    else if (b == 0xED) { need = 3; hi = 0x9F; }
    else if (b == 0xF0) { need = 4; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 4;
    else if (b == 0xF4) { need = 4; hi = 0x8F; }
    else return 1;
    if (n < 2 || s[1] < lo || s[1] > hi) return 1;
    size_t i = 2;
    while (i < need && i < n && s[i] >= 0x80 && s[i] <= 0xBF) i++;
    return i;
}

/* Append s to out, each maximal invalid subpart replaced by U+FFFD. */
static int utf8_append_lossy(strbuf *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        size_t k;
        while (i < n && (k = utf8_valid_len(u + i, n - i)) != 0) i += k;
        if (sb_append(out, s + start, i - start)) return -1;
        if (i < n) {
            if (sb_append(out, "\xEF\xBF\xBD", 3)) return -1;
            i += utf8_invalid_len(u + i, n - i);
        }
    }
    return 0;
}

/* Byte offset of the first invalid sequence, or n if s is valid UTF-8. */
static size_t utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        size_t k = utf8_valid_len(u + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

/* Code point at s of valid UTF-8; *k gets its length. */
static uint32_t utf8_decode(const unsigned char *s, size_t *k)
{
    if (s[0] < 0x80) { *k = 1; return s[0]; }
    if (s[0] < 0xE0) { *k = 2; return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F); }
    if (s[0] < 0xF0) {
        *k = 3;
        return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *k = 4;
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Rust's char::is_whitespace (Unicode White_Space), for added-token strips. */
static int is_unicode_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* HF's single_word test is the Rust regex `\w` (UTS #18: Alphabetic, marks,
 * decimal digits, connector punctuation, Join_Control), here from PCRE2's
 * Unicode tables; compiled once, never freed. */
static pcre2_code *word_char_re;

static int is_word_char(uint32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    if (!word_char_re) return !is_unicode_space(c); /* PCRE2 without Boolean properties */
    char buf[4];
    size_t n = utf8_encode(c, buf);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return !is_unicode_space(c);
    int rc = pcre2_match(word_char_re, (PCRE2_SPTR)buf, n, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* Code point that ends at s[end] (exclusive), for looking left. */
static uint32_t utf8_prev(const char *s, size_t end, size_t *start)
{
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    size_t k;
    *start = i;
    return utf8_decode((const unsigned char *)s + i, &k);
}

/* ---- hash tables -------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

/* string -> id over a table of strings owned elsewhere (str[id], len[id]). */
typedef struct {
    int32_t *slot; /* id, -1 empty */
    size_t mask;
} strmap;

static int strmap_init(strmap *m, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2 + 16) cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot) return -1;
    for (size_t i = 0; i < cap; i++) m->slot[i] = -1;
    m->mask = cap - 1;
    return 0;
}

static int32_t strmap_get(const strmap *m, char *const *str, const uint32_t *len, const char *s,
                          size_t n)
{
    if (!m->slot) return -1;
    for (size_t i = hash_bytes(s, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t id = m->slot[i];
        if (id < 0) return -1;
        if (len[id] == n && memcmp(str[id], s, n) == 0) return id;
    }
}

/* Insert id (its string is str[id]); an existing equal string keeps its id. */
static void strmap_put(strmap *m, char *const *str, const uint32_t *len, int32_t id)
{
    for (size_t i = hash_bytes(str[id], len[id]) & m->mask;; i = (i + 1) & m->mask) {
        int32_t old = m->slot[i];
        if (old < 0) { m->slot[i] = id; return; }
        if (len[old] == len[id] && memcmp(str[old], str[id], len[id]) == 0) return;
    }
}

/* (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t key; /* UINT64_MAX empty */
    uint32_t rank;
    int32_t new_id;
} merge_slot;

static uint64_t merge_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static const merge_slot *merge_get(const merge_slot *tab, size_t mask, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t i = merge_hash(key) & mask;; i = (i + 1) & mask) {
        if (tab[i].key == key) return &tab[i];
        if (tab[i].key == UINT64_MAX) return NULL;
    }
}

/* ---- the tokenizer ------------------------------------------------------- */

enum norm_kind { NORM_NFC, NORM_PREPEND, NORM_REPLACE };
typedef struct {
    enum norm_kind kind;
    char *a, *b; /* Prepend: a; Replace: a -> b */
} norm_step;

enum split_behavior { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_PREV, SPLIT_NEXT, SPLIT_CONTIGUOUS };
enum pre_kind { PRE_BYTELEVEL, PRE_SPLIT, PRE_METASPACE };
enum prepend_scheme { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct {
    enum pre_kind kind;
    int add_prefix_space, use_regex;      /* ByteLevel */
    pcre2_code *re;                       /* ByteLevel (GPT-2 regex), Split */
    enum split_behavior behavior;         /* Split */
    int invert;                           /* Split */
    char *replacement;                    /* Metaspace */
    enum prepend_scheme scheme;           /* Metaspace */
    int split;                            /* Metaspace */
} pre_step;

enum dec_kind { DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP };
typedef struct {
    enum dec_kind kind;
    char *a, *b;                /* Replace a -> b; Metaspace replacement a */
    enum prepend_scheme scheme; /* Metaspace */
    uint32_t content;           /* Strip */
    int start, stop;            /* Strip */
} dec_step;

typedef struct {
    int32_t id;
    int special, normalized, lstrip, rstrip, single_word;
    char *match; /* what is searched for: the content, normalized when `normalized` */
    size_t match_len;
} added_token;

struct gptq_tokenizer {
    int32_t vocab_size;

    /* model vocabulary */
    char **model_str;    /* [vocab_size], NULL where the model has no token */
    uint32_t *model_len; /* [vocab_size] */
    strmap model_map;

    /* added tokens, indexed by id like the model strings */
    char **added_str; /* [vocab_size], NULL where the id is not an added token */
    uint32_t *added_len;
    const char **added_text; /* [vocab_size], what decode shows: the match string */
    uint32_t *added_text_len;
    strmap added_map;
    added_token *added; /* [n_added] */
    size_t n_added;
    uint8_t added_first[2][256]; /* [normalized][byte]: some added token starts with it */

    merge_slot *merges;
    size_t merge_mask;

    /* BPE options */
    int byte_fallback, fuse_unk, ignore_merges;
    char *unk_token; /* NULL: characters outside the vocabulary are dropped */
    int32_t unk_id;  /* -1 when unk_token is not in the vocabulary */
    int32_t byte_id[256]; /* <0xNN> ids for byte_fallback, -1 if absent */
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix */
    size_t prefix_len, suffix_len;

    norm_step *norm;
    size_t n_norm;
    pre_step *pre;
    size_t n_pre;
    dec_step *dec;
    size_t n_dec;
    int has_decoder;

    int32_t *template_ids; /* post-processor single template, -1 = the sequence */
    size_t n_template;

    /* streaming: bytes each token contributes (decoder applied raw) */
    char **tok_bytes;
    uint32_t *tok_bytes_len;
    int strips_first_space;
};

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to
 * U+0100 + n in byte order. byte_char[b] is the UTF-8 of b's character. */
static char byte_char[256][3];
static uint8_t byte_char_len[256];
static int16_t char_byte[0x144]; /* code point -> byte, -1 if not a byte char */
static pthread_once_t byte_table_once = PTHREAD_ONCE_INIT;

static void byte_table_init(void)
{
    int n = 0, err;
    PCRE2_SIZE at;
    word_char_re = pcre2_compile(
        (PCRE2_SPTR) "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]",
        PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
    for (int i = 0; i < 0x144; i++) char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        byte_char_len[b] = (uint8_t)utf8_encode(cp, byte_char[b]);
        char_byte[cp] = (int16_t)b;
    }
}

/* ---- loading: helpers ------------------------------------------------------ */

#define MAX_VOCAB (1 << 24) /* a sanity bound on ids read from the file */

static char *dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static const char *json_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int json_flag(json_t *obj, const char *key, int dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static gptq_status compile_regex(const char *path, const char *what, const char *pattern,
                                 size_t pattern_len, int literal, pcre2_code **out)
{
    int err;
    PCRE2_SIZE at;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, pattern_len, opts, &err, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: %s regex does not compile with PCRE2 at offset %zu: %s", path, what,
                         (size_t)at, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    *out = re;
    return GPTQ_OK;
}

/* HF's GPT-2 split, used by ByteLevel with use_regex. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static gptq_status parse_scheme(const char *path, json_t *obj, enum prepend_scheme *out)
{
    const char *scheme = json_str(obj, "prepend_scheme");
    if (!scheme) {
        /* tokenizers < 0.15 wrote add_prefix_space instead */
        *out = json_flag(obj, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        return GPTQ_OK;
    }
    if (!strcmp(scheme, "always")) *out = PREPEND_ALWAYS;
    else if (!strcmp(scheme, "first")) *out = PREPEND_FIRST;
    else if (!strcmp(scheme, "never")) *out = PREPEND_NEVER;
    else
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: Metaspace prepend_scheme \"%s\": expected always, first or never",
                         path, scheme);
    return GPTQ_OK;
}

/* {"String": s} of Replace and Split; a Regex pattern is only accepted
 * where allow_regex (Split). */
static gptq_status parse_pattern(const char *path, const char *what, json_t *obj,
                                 int allow_regex, const char **s, int *is_regex)
{
    json_t *pat = json_object_get(obj, "pattern");
    const char *str = json_str(pat, "String");
    const char *re = json_str(pat, "Regex");
    if (str) { *s = str; *is_regex = 0; return GPTQ_OK; }
    if (re && allow_regex) { *s = re; *is_regex = 1; return GPTQ_OK; }
    if (re)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: %s with a Regex pattern is not supported (String patterns are)",
                         path, what);
    return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s needs pattern {\"String\": ...} or {\"Regex\": ...}",
                     path, what);
}

/* ---- loading: components --------------------------------------------------- */

static gptq_status load_normalizer(gptq_tokenizer *tok, const char *path, json_t *n)
{
    if (json_is_null(n) || !n) return GPTQ_OK;
    const char *type = json_str(n, "type");
    if (!type) return gptq_fail(GPTQ_ERR_FORMAT, "%s: normalizer has no \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: Sequence normalizer needs a \"normalizers\" list", path);
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            gptq_status st = load_normalizer(tok, path, item);
            if (st) return st;
        }
        return GPTQ_OK;
    }
    norm_step step = {0};
    if (!strcmp(type, "NFC")) {
        step.kind = NORM_NFC;
    } else if (!strcmp(type, "Prepend")) {
        const char *p = json_str(n, "prepend");
        if (!p) return gptq_fail(GPTQ_ERR_FORMAT, "%s: Prepend normalizer needs \"prepend\"", path);
        step.kind = NORM_PREPEND;
        if (!(step.a = strdup(p))) return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    } else if (!strcmp(type, "Replace")) {
        const char *pattern, *content = json_str(n, "content");
        int is_regex;
        gptq_status st = parse_pattern(path, "Replace normalizer", n, 0, &pattern, &is_regex);
        if (st) return st;
        if (!content || !*pattern)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: Replace normalizer needs a non-empty pattern and \"content\"", path);
        step.kind = NORM_REPLACE;
        step.a = strdup(pattern);
        step.b = strdup(content);
        if (!step.a || !step.b) {
            free(step.a);
            free(step.b);
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
        }
    } else {
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: normalizer \"%s\" is not supported (NFC, Prepend, Replace and "
                         "Sequence are)", path, type);
    }
    norm_step *grown = realloc(tok->norm, (tok->n_norm + 1) * sizeof *grown);
    if (!grown) {
        free(step.a);
        free(step.b);
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    }
    tok->norm = grown;
    tok->norm[tok->n_norm++] = step;
    return GPTQ_OK;
}

static gptq_status load_pretokenizer(gptq_tokenizer *tok, const char *path, json_t *p)
{
    if (json_is_null(p) || !p) return GPTQ_OK;
    const char *type = json_str(p, "type");
    if (!type) return gptq_fail(GPTQ_ERR_FORMAT, "%s: pre_tokenizer has no \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: Sequence pre_tokenizer needs a \"pretokenizers\" list", path);
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            gptq_status st = load_pretokenizer(tok, path, item);
            if (st) return st;
        }
        return GPTQ_OK;
    }
    pre_step step = {0};
    gptq_status st = GPTQ_OK;
    if (!strcmp(type, "ByteLevel")) {
        step.kind = PRE_BYTELEVEL;
        step.add_prefix_space = json_flag(p, "add_prefix_space", 1);
        step.use_regex = json_flag(p, "use_regex", 1);
        if (step.use_regex)
            st = compile_regex(path, "ByteLevel", gpt2_pattern, sizeof gpt2_pattern - 1, 0, &step.re);
    } else if (!strcmp(type, "Split")) {
        const char *pattern, *behavior = json_str(p, "behavior");
        int is_regex;
        if ((st = parse_pattern(path, "Split pre_tokenizer", p, 1, &pattern, &is_regex))) return st;
        step.kind = PRE_SPLIT;
        step.invert = json_flag(p, "invert", 0);
        if (!behavior) behavior = "";
        if (!strcmp(behavior, "Removed")) step.behavior = SPLIT_REMOVED;
        else if (!strcmp(behavior, "Isolated")) step.behavior = SPLIT_ISOLATED;
        else if (!strcmp(behavior, "MergedWithPrevious")) step.behavior = SPLIT_PREV;
        else if (!strcmp(behavior, "MergedWithNext")) step.behavior = SPLIT_NEXT;
        else if (!strcmp(behavior, "Contiguous")) step.behavior = SPLIT_CONTIGUOUS;
        else
            return gptq_fail(GPTQ_ERR_FORMAT,
                             "%s: Split behavior \"%s\": expected Removed, Isolated, "
                             "MergedWithPrevious, MergedWithNext or Contiguous", path, behavior);
        st = compile_regex(path, "Split", pattern, strlen(pattern), !is_regex, &step.re);
    } else if (!strcmp(type, "Metaspace")) {
        const char *r = json_str(p, "replacement");
        step.kind = PRE_METASPACE;
        step.split = json_flag(p, "split", 1);
        if ((st = parse_scheme(path, p, &step.scheme))) return st;
        if (!(step.replacement = strdup(r ? r : "\xE2\x96\x81")))
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    } else {
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: pre_tokenizer \"%s\" is not supported (ByteLevel, Split, Metaspace "
                         "and Sequence are)", path, type);
    }
    if (st) return st;
    pre_step *grown = realloc(tok->pre, (tok->n_pre + 1) * sizeof *grown);
    if (!grown) {
        pcre2_code_free(step.re);
        free(step.replacement);
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    }
    tok->pre = grown;
    tok->pre[tok->n_pre++] = step;
    return GPTQ_OK;
}

static gptq_status load_decoder(gptq_tokenizer *tok, const char *path, json_t *d)
{
    if (json_is_null(d) || !d) return GPTQ_OK;
    tok->has_decoder = 1;
    const char *type = json_str(d, "type");
    if (!type) return gptq_fail(GPTQ_ERR_FORMAT, "%s: decoder has no \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(d, "decoders");
        if (!json_is_array(list))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: Sequence decoder needs a \"decoders\" list", path);
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            gptq_status st = load_decoder(tok, path, item);
            if (st) return st;
        }
        return GPTQ_OK;
    }
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
        if ((st = parse_pattern(path, "Replace decoder", d, 0, &pattern, &is_regex))) return st;
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

static gptq_status template_push(gptq_tokenizer *tok, const char *path, int32_t id)
{
    int32_t *grown = realloc(tok->template_ids, (tok->n_template + 1) * sizeof *grown);
    if (!grown) return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    tok->template_ids = grown;
    tok->template_ids[tok->n_template++] = id;
    return GPTQ_OK;
}

static gptq_status check_id(const gptq_tokenizer *tok, const char *path, const char *what,
                            json_int_t id)
{
    if (id < 0 || id >= tok->vocab_size)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s id %lld is outside the vocabulary [0, %d)", path,
                         what, (long long)id, (int)tok->vocab_size);
    return GPTQ_OK;
}

/* The post-processor's single-sequence template as ids, -1 marking where the
 * encoded text goes. ByteLevel post-processing only touches offsets. */
static gptq_status load_post(gptq_tokenizer *tok, const char *path, json_t *p, int *seen_seq)
{
    if (json_is_null(p) || !p) return GPTQ_OK;
    const char *type = json_str(p, "type");
    gptq_status st;
    if (!type) return gptq_fail(GPTQ_ERR_FORMAT, "%s: post_processor has no \"type\"", path);
    if (!strcmp(type, "ByteLevel")) return GPTQ_OK;
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "processors");
        size_t i;
        json_t *item;
        if (!json_is_array(list))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: Sequence post_processor needs \"processors\"", path);
        json_array_foreach(list, i, item) {
            if ((st = load_post(tok, path, item, seen_seq))) return st;
        }
        return GPTQ_OK;
    }
    if (*seen_seq)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: more than one template post_processor", path);
    *seen_seq = 1;
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(p, "single");
        json_t *specials = json_object_get(p, "special_tokens");
        size_t i;
        json_t *item;
        if (!json_is_array(single))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: TemplateProcessing needs a \"single\" list", path);
        json_array_foreach(single, i, item) {
            json_t *sp = json_object_get(item, "SpecialToken");
            if (json_object_get(item, "Sequence")) {
                if ((st = template_push(tok, path, -1))) return st;
                continue;
            }
            const char *name = json_str(sp, "id");
            json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
            if (!name || !json_is_array(ids))
                return gptq_fail(GPTQ_ERR_FORMAT,
                                 "%s: TemplateProcessing single[%zu] names a special token "
                                 "missing from \"special_tokens\"", path, i);
            size_t j;
            json_t *idv;
            json_array_foreach(ids, j, idv) {
                if (!json_is_integer(idv))
                    return gptq_fail(GPTQ_ERR_FORMAT, "%s: special_tokens \"%s\" ids must be integers", path, name);
                if ((st = check_id(tok, path, "TemplateProcessing", json_integer_value(idv)))) return st;
                if ((st = template_push(tok, path, (int32_t)json_integer_value(idv)))) return st;
            }
        }
        return GPTQ_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_object_get(p, "cls"), *sep = json_object_get(p, "sep");
        json_t *cls_id = json_array_get(cls, 1), *sep_id = json_array_get(sep, 1);
        if (!json_is_integer(cls_id) || !json_is_integer(sep_id))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s needs \"cls\" and \"sep\" as [token, id]", path, type);
        if ((st = check_id(tok, path, type, json_integer_value(cls_id))) ||
            (st = check_id(tok, path, type, json_integer_value(sep_id))))
            return st;
        if ((st = template_push(tok, path, (int32_t)json_integer_value(cls_id))) ||
            (st = template_push(tok, path, -1)) ||
            (st = template_push(tok, path, (int32_t)json_integer_value(sep_id))))
            return st;
        return GPTQ_OK;
    }
    return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                     "%s: post_processor \"%s\" is not supported (TemplateProcessing, ByteLevel, "
                     "RobertaProcessing, BertProcessing and Sequence are)", path, type);
}

/* Largest id in model.vocab and added_tokens, so the id tables can be sized. */
static gptq_status scan_max_id(const char *path, json_t *vocab, json_t *added, int32_t *max_id)
{
    const char *key;
    json_t *v;
    size_t i;
    *max_id = -1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_VOCAB)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: model.vocab \"%s\" has an id that is not an "
                             "integer in [0, %d)", path, key, MAX_VOCAB);
        if (json_integer_value(v) > *max_id) *max_id = (int32_t)json_integer_value(v);
    }
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_VOCAB ||
            !json_is_string(json_object_get(v, "content")))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: added_tokens[%zu] needs \"content\" and an "
                             "integer \"id\" in [0, %d)", path, i, MAX_VOCAB);
        if (json_integer_value(id) > *max_id) *max_id = (int32_t)json_integer_value(id);
    }
    return GPTQ_OK;
}

static gptq_status load_vocab(gptq_tokenizer *tok, const char *path, json_t *vocab)
{
    const char *key;
    json_t *v;
    if (strmap_init(&tok->model_map, json_object_size(vocab)))
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for the vocabulary", path);
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        /* jansson keys are NUL-terminated; a token holding U+0000 would be cut */
        if (tok->model_str[id])
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: model.vocab gives id %d to both \"%s\" and \"%s\"",
                             path, (int)id, tok->model_str[id], key);
        size_t n = strlen(key);
        if (!(tok->model_str[id] = dup_bytes(key, n)))
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for the vocabulary", path);
        tok->model_len[id] = (uint32_t)n;
        strmap_put(&tok->model_map, tok->model_str, tok->model_len, id);
    }
    return GPTQ_OK;
}

static int32_t model_id(const gptq_tokenizer *tok, const char *s, size_t n)
{
    return strmap_get(&tok->model_map, tok->model_str, tok->model_len, s, n);
}

/* merges: ["a b", ...] (tokenizers < 0.20) or [["a", "b"], ...]; rank = index.
 * The merged token is a + b without b's continuing_subword_prefix, as HF builds it. */
static gptq_status load_merges(gptq_tokenizer *tok, const char *path, json_t *merges)
{
    size_t n = json_array_size(merges), cap = 16, i;
    json_t *m;
    gptq_status st = GPTQ_OK;
    char *joined = NULL;
    while (cap < n * 2 + 16) cap *= 2;
    tok->merges = malloc(cap * sizeof *tok->merges);
    if (!tok->merges) return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for %zu merges", path, n);
    for (i = 0; i < cap; i++) tok->merges[i].key = UINT64_MAX;
    tok->merge_mask = cap - 1;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t a_len, b_len;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *space = strchr(a, ' ');
            if (!space) {
                st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model.merges[%zu] \"%s\" is not \"left right\"", path, i, a);
                goto fail;
            }
            a_len = (size_t)(space - a);
            b = space + 1;
            b_len = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            a_len = strlen(a);
            b_len = strlen(b);
        } else {
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            goto fail;
        }
        int32_t left = model_id(tok, a, a_len), right = model_id(tok, b, b_len);
        if (left < 0 || right < 0) {
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model.merges[%zu] uses \"%.*s\", which is not in model.vocab",
                           path, i, left < 0 ? (int)a_len : (int)b_len, left < 0 ? a : b);
            goto fail;
        }
        size_t skip = tok->prefix_len && b_len >= tok->prefix_len &&
                      !memcmp(b, tok->prefix, tok->prefix_len) ? tok->prefix_len : 0;
        char *grown = realloc(joined, a_len + b_len + 1);
        if (!grown) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        joined = grown;
        memcpy(joined, a, a_len);
        memcpy(joined + a_len, b + skip, b_len - skip);
        int32_t merged = model_id(tok, joined, a_len + b_len - skip);
        if (merged < 0) {
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model.merges[%zu] makes \"%.*s\", which is not in model.vocab",
                           path, i, (int)(a_len + b_len - skip), joined);
            goto fail;
        }
        uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
        size_t s = merge_hash(key) & tok->merge_mask;
        while (tok->merges[s].key != UINT64_MAX && tok->merges[s].key != key) s = (s + 1) & tok->merge_mask;
        /* a pair listed twice: HF collects into a HashMap, so the last rank wins */
        tok->merges[s].key = key;
        tok->merges[s].rank = (uint32_t)i;
        tok->merges[s].new_id = merged;
    }
fail:
    free(joined);
    return st;
}

static gptq_status load_added(gptq_tokenizer *tok, const char *path, json_t *added)
{
    size_t i;
    json_t *a;
    tok->added = calloc(json_array_size(added) + 1, sizeof *tok->added);
    if (!tok->added || strmap_init(&tok->added_map, json_array_size(added)))
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    json_array_foreach(added, i, a) {
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        const char *content = json_string_value(json_object_get(a, "content"));
        size_t n = json_string_length(json_object_get(a, "content"));
        if (n == 0)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: added_tokens[%zu] has empty content", path, i);
        if (tok->added_str[id]) continue; /* the same id twice: keep the first */
        if (!(tok->added_str[id] = dup_bytes(content, n)))
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
        tok->added_len[id] = (uint32_t)n;
        strmap_put(&tok->added_map, tok->added_str, tok->added_len, id);
        added_token *t = &tok->added[tok->n_added++];
        t->id = id;
        t->special = json_flag(a, "special", 0);
        t->normalized = json_flag(a, "normalized", !t->special);
        t->lstrip = json_flag(a, "lstrip", 0);
        t->rstrip = json_flag(a, "rstrip", 0);
        t->single_word = json_flag(a, "single_word", 0);
    }
    return GPTQ_OK;
}

static gptq_status load_model(gptq_tokenizer *tok, const char *path, json_t *model)
{
    const char *type = json_str(model, "type");
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    gptq_status st;
    if (type && strcmp(type, "BPE"))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (only BPE is)",
                         path, type);
    if (!json_is_object(vocab) || !json_is_array(merges))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: a BPE model needs \"vocab\" (object) and \"merges\" (list)", path);
    json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0.0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: BPE dropout %g is not supported (set it to null)",
                         path, json_number_value(dropout));
    tok->byte_fallback = json_flag(model, "byte_fallback", 0);
    tok->fuse_unk = json_flag(model, "fuse_unk", 0);
    tok->ignore_merges = json_flag(model, "ignore_merges", 0);
    const char *prefix = json_str(model, "continuing_subword_prefix");
    const char *suffix = json_str(model, "end_of_word_suffix");
    const char *unk = json_str(model, "unk_token");
    if (!(tok->prefix = strdup(prefix ? prefix : "")) || !(tok->suffix = strdup(suffix ? suffix : "")) ||
        (unk && !(tok->unk_token = strdup(unk))))
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    tok->prefix_len = strlen(tok->prefix);
    tok->suffix_len = strlen(tok->suffix);
    if ((st = load_vocab(tok, path, vocab))) return st;
    if ((st = load_merges(tok, path, merges))) return st;
    tok->unk_id = unk ? model_id(tok, unk, strlen(unk)) : -1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_id[b] = model_id(tok, name, 6);
    }
    return GPTQ_OK;
}

/* ---- encode: per-call context ---------------------------------------------- */

typedef struct {
    int32_t id;
    int32_t prev, next;
    uint32_t len; /* bytes of the word it covers; 0 once merged into its left */
} bpe_symbol;

typedef struct {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
} bpe_merge;

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len; /* in cache_keys */
    uint32_t ids_off, n_ids;   /* in cache_ids */
} cache_slot;

#define CACHE_MAX_WORD 256 /* longer pieces are rare; not worth keeping */

typedef struct {
    const gptq_tokenizer *tok;
    idvec out;
    strlist pieces[2];
    strbuf norm, scratch;
    bpe_symbol *sym;
    size_t sym_cap;
    bpe_merge *heap;
    size_t heap_len, heap_cap;
    /* per-call cache: piece -> ids */
    cache_slot *cache;
    size_t cache_mask, cache_used;
    strbuf cache_keys;
    idvec cache_ids;
    struct span { size_t start, end; int match; } *spans; /* split scratch */
    size_t spans_cap;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
} enc_ctx;

static void ctx_free(enc_ctx *c)
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

static gptq_status oom(void)
{
    return gptq_fail(GPTQ_ERR_NOMEM, "tokenizer: out of memory while encoding");
}

/* ---- encode: BPE on one piece ---------------------------------------------- */

static int heap_less(const bpe_merge *a, const bpe_merge *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(enc_ctx *c, uint32_t rank, uint32_t pos, int32_t new_id)
{
    if (c->heap_len == c->heap_cap) {
        size_t cap = c->heap_cap ? c->heap_cap * 2 : 256;
        bpe_merge *h = realloc(c->heap, cap * sizeof *h);
        if (!h) return -1;
        c->heap = h;
        c->heap_cap = cap;
    }
    size_t i = c->heap_len++;
    bpe_merge m = {rank, pos, new_id};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&m, &c->heap[parent])) break;
        c->heap[i] = c->heap[parent];
        i = parent;
    }
    c->heap[i] = m;
    return 0;
}

static bpe_merge heap_pop(enc_ctx *c)
{
    bpe_merge top = c->heap[0], last = c->heap[--c->heap_len];
    size_t i = 0, n = c->heap_len;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bpe_merge *best = &last;
        if (l < n && heap_less(&c->heap[l], best)) { m = l; best = &c->heap[l]; }
        if (r < n && heap_less(&c->heap[r], best)) { m = r; }
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static int sym_add(enc_ctx *c, size_t *n, int32_t id, uint32_t len)
{
    if (*n == c->sym_cap) {
        size_t cap = c->sym_cap ? c->sym_cap * 2 : 256;
        bpe_symbol *s = realloc(c->sym, cap * sizeof *s);
        if (!s) return -1;
        c->sym = s;
        c->sym_cap = cap;
    }
    c->sym[*n] = (bpe_symbol){id, (int32_t)*n - 1, (int32_t)*n + 1, len};
    (*n)++;
    return 0;
}

/* Initial symbols of a piece: one per character (with the subword prefix /
 * suffix), else its <0xNN> bytes under byte_fallback, else unk. */
static gptq_status bpe_symbols(enc_ctx *c, const char *s, size_t n, size_t *n_sym)
{
    const gptq_tokenizer *tok = c->tok;
    int32_t unk_pending = -1;
    uint32_t unk_len = 0;
    *n_sym = 0;
    for (size_t i = 0; i < n;) {
        size_t k;
        utf8_decode((const unsigned char *)s + i, &k);
        const char *ch = s + i;
        size_t ch_len = k;
        int is_first = i == 0, is_last = i + k == n;
        if ((!is_first && tok->prefix_len) || (is_last && tok->suffix_len)) {
            c->scratch.len = 0;
            if ((!is_first && sb_append(&c->scratch, tok->prefix, tok->prefix_len)) ||
                sb_append(&c->scratch, s + i, k) ||
                (is_last && sb_append(&c->scratch, tok->suffix, tok->suffix_len)))
                return oom();
            ch = c->scratch.data;
            ch_len = c->scratch.len;
        }
        int32_t id = model_id(tok, ch, ch_len);
        if (id >= 0) {
            if (unk_pending >= 0 && sym_add(c, n_sym, unk_pending, unk_len)) return oom();
            unk_pending = -1;
            if (sym_add(c, n_sym, id, (uint32_t)k)) return oom();
            i += k;
            continue;
        }
        if (tok->byte_fallback) {
            size_t b;
            for (b = 0; b < ch_len && tok->byte_id[(unsigned char)ch[b]] >= 0; b++) {}
            if (b == ch_len) {
                /* HF adds the pending unk only when a vocabulary char follows */
                for (b = 0; b < ch_len; b++)
                    if (sym_add(c, n_sym, tok->byte_id[(unsigned char)ch[b]], 1)) return oom();
                i += k;
                continue;
            }
        }
        if (tok->unk_token) {
            if (tok->unk_id < 0)
                return gptq_fail(GPTQ_ERR_FORMAT,
                                 "tokenizer: unk_token \"%s\" is needed for \"%.*s\" but is not in model.vocab",
                                 tok->unk_token, (int)k, s + i);
            if (unk_pending >= 0 && tok->fuse_unk) {
                unk_len += (uint32_t)k;
            } else {
                if (unk_pending >= 0 && sym_add(c, n_sym, unk_pending, unk_len)) return oom();
                unk_pending = tok->unk_id;
                unk_len = (uint32_t)k;
            }
        }
        i += k;
    }
    if (unk_pending >= 0 && sym_add(c, n_sym, unk_pending, unk_len)) return oom();
    if (*n_sym) c->sym[*n_sym - 1].next = -1;
    return GPTQ_OK;
}

/* HF word.rs merge_all: pop the lowest (rank, position) merge; skip stale
 * entries (the pair changed since it was queued); merge; queue the new pairs
 * with both neighbours. O(n log n), so a whole unsplit text is fine. */
static gptq_status bpe_merge_all(enc_ctx *c, size_t n_sym)
{
    const gptq_tokenizer *tok = c->tok;
    c->heap_len = 0;
    for (size_t i = 0; i + 1 < n_sym; i++) {
        const merge_slot *m = merge_get(tok->merges, tok->merge_mask, c->sym[i].id, c->sym[i + 1].id);
        if (m && heap_push(c, m->rank, (uint32_t)i, m->new_id)) return oom();
    }
    while (c->heap_len) {
        bpe_merge top = heap_pop(c);
        bpe_symbol *cur = &c->sym[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        bpe_symbol *right = &c->sym[cur->next];
        const merge_slot *m = merge_get(tok->merges, tok->merge_mask, cur->id, right->id);
        if (!m || m->new_id != top.new_id) continue;
        cur->id = top.new_id;
        cur->len += right->len;
        cur->next = right->next;
        right->len = 0;
        if (cur->next >= 0) c->sym[cur->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            m = merge_get(tok->merges, tok->merge_mask, c->sym[cur->prev].id, cur->id);
            if (m && heap_push(c, m->rank, (uint32_t)cur->prev, m->new_id)) return oom();
        }
        if (cur->next >= 0) {
            m = merge_get(tok->merges, tok->merge_mask, cur->id, c->sym[cur->next].id);
            if (m && heap_push(c, m->rank, top.pos, m->new_id)) return oom();
        }
    }
    return GPTQ_OK;
}

static cache_slot *cache_find(enc_ctx *c, const char *s, size_t n, uint64_t h)
{
    if (!c->cache) return NULL;
    for (size_t i = h & c->cache_mask;; i = (i + 1) & c->cache_mask) {
        cache_slot *slot = &c->cache[i];
        if (slot->key_len == 0) return slot;
        if (slot->hash == h && slot->key_len == n && !memcmp(c->cache_keys.data + slot->key_off, s, n))
            return slot;
    }
}

static int cache_grow(enc_ctx *c)
{
    size_t cap = c->cache ? (c->cache_mask + 1) * 2 : 4096;
    cache_slot *tab = calloc(cap, sizeof *tab);
    if (!tab) return -1;
    if (c->cache) {
        for (size_t i = 0; i <= c->cache_mask; i++) {
            cache_slot *old = &c->cache[i];
            if (!old->key_len) continue;
            size_t j = old->hash & (cap - 1);
            while (tab[j].key_len) j = (j + 1) & (cap - 1);
            tab[j] = *old;
        }
        free(c->cache);
    }
    c->cache = tab;
    c->cache_mask = cap - 1;
    return 0;
}

static gptq_status bpe_piece(enc_ctx *c, const char *s, size_t n)
{
    const gptq_tokenizer *tok = c->tok;
    gptq_status st;
    if (n == 0) return GPTQ_OK;
    if (tok->ignore_merges) {
        int32_t id = model_id(tok, s, n);
        if (id >= 0) return iv_push(&c->out, id) ? oom() : GPTQ_OK;
    }
    uint64_t h = 0;
    cache_slot *slot = NULL;
    if (n <= CACHE_MAX_WORD) {
        h = hash_bytes(s, n);
        slot = cache_find(c, s, n, h);
        if (slot && slot->key_len) {
            for (uint32_t i = 0; i < slot->n_ids; i++)
                if (iv_push(&c->out, c->cache_ids.data[slot->ids_off + i])) return oom();
            return GPTQ_OK;
        }
    }
    size_t n_sym;
    if ((st = bpe_symbols(c, s, n, &n_sym))) return st;
    if ((st = bpe_merge_all(c, n_sym))) return st;
    size_t first_out = c->out.len;
    for (size_t i = 0; i < n_sym; i++)
        if (c->sym[i].len && iv_push(&c->out, c->sym[i].id)) return oom();
    if (n > CACHE_MAX_WORD || c->cache_keys.len + n > UINT32_MAX ||
        c->cache_ids.len + n_sym > UINT32_MAX)
        return GPTQ_OK;
    if (!c->cache || (c->cache_used + 1) * 2 > c->cache_mask + 1) {
        if (cache_grow(c)) return oom();
    }
    slot = cache_find(c, s, n, h);
    size_t key_off = c->cache_keys.len, ids_off = c->cache_ids.len;
    if (sb_append(&c->cache_keys, s, n)) return oom();
    for (size_t i = first_out; i < c->out.len; i++)
        if (iv_push(&c->cache_ids, c->out.data[i])) return oom();
    *slot = (cache_slot){h, (uint32_t)key_off, (uint32_t)n, (uint32_t)ids_off,
                         (uint32_t)(c->out.len - first_out)};
    c->cache_used++;
    return GPTQ_OK;
}

/* ---- encode: splitting -------------------------------------------------------- */

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
static gptq_status find_matches(enc_ctx *c, const pcre2_code *re, const char *lit, const char *s,
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
static int append_replaced(strbuf *out, const char *s, size_t n, const char *from, const char *to)
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
static gptq_status encode_normalized(enc_ctx *c, const char *s, size_t n, int origin)
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

/* ---- encode: normalizers ---------------------------------------------------- */

static gptq_status nfc_check(const char *s, size_t n, size_t base);

/* Apply the normalizer steps to s into c->norm; *out points at the result
 * (s itself when there are no steps). base: s's offset in the input, for
 * messages. */
static gptq_status normalize(enc_ctx *c, const char *s, size_t n, size_t base, const char **out,
                             size_t *out_len)
{
    const gptq_tokenizer *tok = c->tok;
    gptq_status st;
    *out = s;
    *out_len = n;
    for (size_t k = 0; k < tok->n_norm; k++) {
        const norm_step *step = &tok->norm[k];
        const char *cur = *out;
        size_t cur_len = *out_len;
        if (step->kind == NORM_NFC) {
            if ((st = nfc_check(cur, cur_len, base))) return st;
            continue;
        }
        c->scratch.len = 0;
        if (step->kind == NORM_PREPEND) {
            if (cur_len && (sb_append(&c->scratch, step->a, strlen(step->a)) ||
                            sb_append(&c->scratch, cur, cur_len)))
                return oom();
        } else if (append_replaced(&c->scratch, cur, cur_len, step->a, step->b)) {
            return oom();
        }
        /* swap scratch into norm so the next step may read it */
        strbuf t = c->norm;
        c->norm = c->scratch;
        c->scratch = t;
        *out = c->norm.data ? c->norm.data : "";
        *out_len = c->norm.len;
    }
    return GPTQ_OK;
}

/* ---- encode: added tokens ----------------------------------------------------- */

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
    if ((st = normalize(c, s, n, base, &norm, &norm_len))) return st;
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
    size_t bad = utf8_check(text, len);
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
    if (raw || utf8_check(bytes->data, bytes->len) == bytes->len)
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

/* ---- load / free ------------------------------------------------------------ */

/* HF matches `normalized` added tokens in normalized text by their
 * normalized content (so under Llama 2's Prepend("▁") "foo" is sought as
 * "▁foo"), and id_to_token (hence decode) gives that form too; the others
 * are matched and decoded as their content. */
static gptq_status added_match_strings(gptq_tokenizer *tok, const char *path)
{
    enc_ctx c = {0};
    gptq_status st = GPTQ_OK;
    c.tok = tok;
    for (size_t k = 0; k < tok->n_added; k++) {
        added_token *t = &tok->added[k];
        const char *m = tok->added_str[t->id];
        size_t n = tok->added_len[t->id];
        if (t->normalized && normalize(&c, m, n, 0, &m, &n)) {
            gptq_clear_error(); /* content NFC would change: match it as written */
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
static gptq_status build_token_bytes(gptq_tokenizer *tok, const char *path)
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

void gptq_tokenizer_free(gptq_tokenizer *tok)
{
    if (!tok) return;
    for (int32_t i = 0; i < tok->vocab_size; i++) {
        if (tok->model_str) free(tok->model_str[i]);
        if (tok->added_str) free(tok->added_str[i]);
        if (tok->tok_bytes) free(tok->tok_bytes[i]);
    }
    free(tok->model_str);
    free(tok->model_len);
    free(tok->model_map.slot);
    free(tok->added_str);
    free(tok->added_len);
    free(tok->added_text);
    free(tok->added_text_len);
    free(tok->added_map.slot);
    for (size_t i = 0; i < tok->n_added; i++) free(tok->added[i].match);
    free(tok->added);
    free(tok->merges);
    free(tok->unk_token);
    free(tok->prefix);
    free(tok->suffix);
    for (size_t i = 0; i < tok->n_norm; i++) {
        free(tok->norm[i].a);
        free(tok->norm[i].b);
    }
    free(tok->norm);
    for (size_t i = 0; i < tok->n_pre; i++) {
        pcre2_code_free(tok->pre[i].re);
        free(tok->pre[i].replacement);
    }
    free(tok->pre);
    for (size_t i = 0; i < tok->n_dec; i++) {
        free(tok->dec[i].a);
        free(tok->dec[i].b);
    }
    free(tok->dec);
    free(tok->template_ids);
    free(tok->tok_bytes);
    free(tok->tok_bytes_len);
    free(tok);
}

gptq_status gptq_tokenizer_load(const char *path, gptq_tokenizer **out)
{
    gptq_tokenizer *tok = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    gptq_status st;
    int seen_seq = 0;
    if (!path || !out) return gptq_fail(GPTQ_ERR_ARG, "gptq_tokenizer_load: path and out must not be NULL");
    *out = NULL;
    pthread_once(&byte_table_once, byte_table_init);
    FILE *f = fopen(path, "rb");
    if (!f) return gptq_fail(GPTQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!root) {
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    json_t *model = json_object_get(root, "model");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(model)) {
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: no \"model\" object; is this a tokenizer.json?", path);
        goto fail;
    }
    if (added && !json_is_null(added) && !json_is_array(added)) {
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: \"added_tokens\" must be a list", path);
        goto fail;
    }
    if (!(tok = calloc(1, sizeof *tok))) goto nomem;
    int32_t max_id;
    json_t *vocab = json_object_get(model, "vocab");
    const char *type = json_str(model, "type");
    if (type && strcmp(type, "BPE")) {
        st = gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (only BPE is)",
                       path, type);
        goto fail;
    }
    if (!json_is_object(vocab)) {
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model has no \"vocab\" object (only BPE models are supported)", path);
        goto fail;
    }
    if ((st = scan_max_id(path, vocab, added, &max_id))) goto fail;
    if (max_id < 0) {
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: the vocabulary is empty", path);
        goto fail;
    }
    tok->vocab_size = max_id + 1;
    size_t vs = (size_t)tok->vocab_size;
    tok->model_str = calloc(vs, sizeof *tok->model_str);
    tok->model_len = calloc(vs, sizeof *tok->model_len);
    tok->added_str = calloc(vs, sizeof *tok->added_str);
    tok->added_len = calloc(vs, sizeof *tok->added_len);
    tok->added_text = calloc(vs, sizeof *tok->added_text);
    tok->added_text_len = calloc(vs, sizeof *tok->added_text_len);
    if (!tok->model_str || !tok->model_len || !tok->added_str || !tok->added_len ||
        !tok->added_text || !tok->added_text_len)
        goto nomem;
    if ((st = load_model(tok, path, model))) goto fail;
    if ((st = load_added(tok, path, added))) goto fail;
    if ((st = load_normalizer(tok, path, json_object_get(root, "normalizer")))) goto fail;
    if ((st = load_pretokenizer(tok, path, json_object_get(root, "pre_tokenizer")))) goto fail;
    if ((st = load_decoder(tok, path, json_object_get(root, "decoder")))) goto fail;
    if ((st = load_post(tok, path, json_object_get(root, "post_processor"), &seen_seq))) goto fail;
    if ((st = added_match_strings(tok, path))) goto fail;
    if ((st = build_token_bytes(tok, path))) goto fail;
    json_decref(root);
    *out = tok;
    return GPTQ_OK;
nomem:
    st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
fail:
    json_decref(root);
    gptq_tokenizer_free(tok);
    return st;
}

/* ---- NFC: check that text is already composed ---------------------------------- */

/* Generated from Python's unicodedata (Unicode 14.0.0): code points whose
 * canonical combining class (ccc) is not 0, whose NFC_Quick_Check is not
 * Yes (qc 1 = Maybe, 2 = No), or whose canonical decomposition ends in a
 * non-starter (trail = that character's ccc; a mark's own ccc otherwise). */
static const struct nfc_range {
    uint32_t first, last;
    uint8_t ccc, qc, trail;
} nfc_ranges[] = {
    {0xC0,0xC5,0,0,230}, {0xC7,0xC7,0,0,202}, {0xC8,0xCF,0,0,230}, {0xD1,0xD6,0,0,230},
    {0xD9,0xDD,0,0,230}, {0xE0,0xE5,0,0,230}, {0xE7,0xE7,0,0,202}, {0xE8,0xEF,0,0,230},
    {0xF1,0xF6,0,0,230}, {0xF9,0xFD,0,0,230}, {0xFF,0x103,0,0,230}, {0x104,0x105,0,0,202},
    {0x106,0x10F,0,0,230}, {0x112,0x117,0,0,230}, {0x118,0x119,0,0,202}, {0x11A,0x121,0,0,230},
    {0x122,0x123,0,0,202}, {0x124,0x125,0,0,230}, {0x128,0x12D,0,0,230}, {0x12E,0x12F,0,0,202},
    {0x130,0x130,0,0,230}, {0x134,0x135,0,0,230}, {0x136,0x137,0,0,202}, {0x139,0x13A,0,0,230},
    {0x13B,0x13C,0,0,202}, {0x13D,0x13E,0,0,230}, {0x143,0x144,0,0,230}, {0x145,0x146,0,0,202},
    {0x147,0x148,0,0,230}, {0x14C,0x151,0,0,230}, {0x154,0x155,0,0,230}, {0x156,0x157,0,0,202},
    {0x158,0x15D,0,0,230}, {0x15E,0x15F,0,0,202}, {0x160,0x161,0,0,230}, {0x162,0x163,0,0,202},
    {0x164,0x165,0,0,230}, {0x168,0x171,0,0,230}, {0x172,0x173,0,0,202}, {0x174,0x17E,0,0,230},
    {0x1A0,0x1A1,0,0,216}, {0x1AF,0x1B0,0,0,216}, {0x1CD,0x1DC,0,0,230}, {0x1DE,0x1E3,0,0,230},
    {0x1E6,0x1E9,0,0,230}, {0x1EA,0x1EB,0,0,202}, {0x1EC,0x1F0,0,0,230}, {0x1F4,0x1F5,0,0,230},
    {0x1F8,0x217,0,0,230}, {0x218,0x21B,0,0,220}, {0x21E,0x21F,0,0,230}, {0x226,0x227,0,0,230},
    {0x228,0x229,0,0,202}, {0x22A,0x233,0,0,230}, {0x300,0x304,230,1,230}, {0x305,0x305,230,0,230},
    {0x306,0x30C,230,1,230}, {0x30D,0x30E,230,0,230}, {0x30F,0x30F,230,1,230}, {0x310,0x310,230,0,230},
    {0x311,0x311,230,1,230}, {0x312,0x312,230,0,230}, {0x313,0x314,230,1,230}, {0x315,0x315,232,0,232},
    {0x316,0x319,220,0,220}, {0x31A,0x31A,232,0,232}, {0x31B,0x31B,216,1,216}, {0x31C,0x320,220,0,220},
    {0x321,0x322,202,0,202}, {0x323,0x326,220,1,220}, {0x327,0x328,202,1,202}, {0x329,0x32C,220,0,220},
    {0x32D,0x32E,220,1,220}, {0x32F,0x32F,220,0,220}, {0x330,0x331,220,1,220}, {0x332,0x333,220,0,220},
    {0x334,0x337,1,0,1}, {0x338,0x338,1,1,1}, {0x339,0x33C,220,0,220}, {0x33D,0x33F,230,0,230},
    {0x340,0x341,230,2,230}, {0x342,0x342,230,1,230}, {0x343,0x344,230,2,230}, {0x345,0x345,240,1,240},
    {0x346,0x346,230,0,230}, {0x347,0x349,220,0,220}, {0x34A,0x34C,230,0,230}, {0x34D,0x34E,220,0,220},
    {0x350,0x352,230,0,230}, {0x353,0x356,220,0,220}, {0x357,0x357,230,0,230}, {0x358,0x358,232,0,232},
    {0x359,0x35A,220,0,220}, {0x35B,0x35B,230,0,230}, {0x35C,0x35C,233,0,233}, {0x35D,0x35E,234,0,234},
    {0x35F,0x35F,233,0,233}, {0x360,0x361,234,0,234}, {0x362,0x362,233,0,233}, {0x363,0x36F,230,0,230},
    {0x374,0x374,0,2,0}, {0x37E,0x37E,0,2,0}, {0x385,0x386,0,0,230}, {0x387,0x387,0,2,0},
    {0x388,0x38A,0,0,230}, {0x38C,0x38C,0,0,230}, {0x38E,0x390,0,0,230}, {0x3AA,0x3B0,0,0,230},
    {0x3CA,0x3CE,0,0,230}, {0x3D3,0x3D4,0,0,230}, {0x400,0x401,0,0,230}, {0x403,0x403,0,0,230},
    {0x407,0x407,0,0,230}, {0x40C,0x40E,0,0,230}, {0x419,0x419,0,0,230}, {0x439,0x439,0,0,230},
    {0x450,0x451,0,0,230}, {0x453,0x453,0,0,230}, {0x457,0x457,0,0,230}, {0x45C,0x45E,0,0,230},
    {0x476,0x477,0,0,230}, {0x483,0x487,230,0,230}, {0x4C1,0x4C2,0,0,230}, {0x4D0,0x4D3,0,0,230},
    {0x4D6,0x4D7,0,0,230}, {0x4DA,0x4DF,0,0,230}, {0x4E2,0x4E7,0,0,230}, {0x4EA,0x4F5,0,0,230},
    {0x4F8,0x4F9,0,0,230}, {0x591,0x591,220,0,220}, {0x592,0x595,230,0,230}, {0x596,0x596,220,0,220},
    {0x597,0x599,230,0,230}, {0x59A,0x59A,222,0,222}, {0x59B,0x59B,220,0,220}, {0x59C,0x5A1,230,0,230},
    {0x5A2,0x5A7,220,0,220}, {0x5A8,0x5A9,230,0,230}, {0x5AA,0x5AA,220,0,220}, {0x5AB,0x5AC,230,0,230},
    {0x5AD,0x5AD,222,0,222}, {0x5AE,0x5AE,228,0,228}, {0x5AF,0x5AF,230,0,230}, {0x5B0,0x5B0,10,0,10},
    {0x5B1,0x5B1,11,0,11}, {0x5B2,0x5B2,12,0,12}, {0x5B3,0x5B3,13,0,13}, {0x5B4,0x5B4,14,0,14},
    {0x5B5,0x5B5,15,0,15}, {0x5B6,0x5B6,16,0,16}, {0x5B7,0x5B7,17,0,17}, {0x5B8,0x5B8,18,0,18},
    {0x5B9,0x5BA,19,0,19}, {0x5BB,0x5BB,20,0,20}, {0x5BC,0x5BC,21,0,21}, {0x5BD,0x5BD,22,0,22},
    {0x5BF,0x5BF,23,0,23}, {0x5C1,0x5C1,24,0,24}, {0x5C2,0x5C2,25,0,25}, {0x5C4,0x5C4,230,0,230},
    {0x5C5,0x5C5,220,0,220}, {0x5C7,0x5C7,18,0,18}, {0x610,0x617,230,0,230}, {0x618,0x618,30,0,30},
    {0x619,0x619,31,0,31}, {0x61A,0x61A,32,0,32}, {0x622,0x624,0,0,230}, {0x625,0x625,0,0,220},
    {0x626,0x626,0,0,230}, {0x64B,0x64B,27,0,27}, {0x64C,0x64C,28,0,28}, {0x64D,0x64D,29,0,29},
    {0x64E,0x64E,30,0,30}, {0x64F,0x64F,31,0,31}, {0x650,0x650,32,0,32}, {0x651,0x651,33,0,33},
    {0x652,0x652,34,0,34}, {0x653,0x654,230,1,230}, {0x655,0x655,220,1,220}, {0x656,0x656,220,0,220},
    {0x657,0x65B,230,0,230}, {0x65C,0x65C,220,0,220}, {0x65D,0x65E,230,0,230}, {0x65F,0x65F,220,0,220},
    {0x670,0x670,35,0,35}, {0x6C0,0x6C0,0,0,230}, {0x6C2,0x6C2,0,0,230}, {0x6D3,0x6D3,0,0,230},
    {0x6D6,0x6DC,230,0,230}, {0x6DF,0x6E2,230,0,230}, {0x6E3,0x6E3,220,0,220}, {0x6E4,0x6E4,230,0,230},
    {0x6E7,0x6E8,230,0,230}, {0x6EA,0x6EA,220,0,220}, {0x6EB,0x6EC,230,0,230}, {0x6ED,0x6ED,220,0,220},
    {0x711,0x711,36,0,36}, {0x730,0x730,230,0,230}, {0x731,0x731,220,0,220}, {0x732,0x733,230,0,230},
    {0x734,0x734,220,0,220}, {0x735,0x736,230,0,230}, {0x737,0x739,220,0,220}, {0x73A,0x73A,230,0,230},
    {0x73B,0x73C,220,0,220}, {0x73D,0x73D,230,0,230}, {0x73E,0x73E,220,0,220}, {0x73F,0x741,230,0,230},
    {0x742,0x742,220,0,220}, {0x743,0x743,230,0,230}, {0x744,0x744,220,0,220}, {0x745,0x745,230,0,230},
    {0x746,0x746,220,0,220}, {0x747,0x747,230,0,230}, {0x748,0x748,220,0,220}, {0x749,0x74A,230,0,230},
    {0x7EB,0x7F1,230,0,230}, {0x7F2,0x7F2,220,0,220}, {0x7F3,0x7F3,230,0,230}, {0x7FD,0x7FD,220,0,220},
    {0x816,0x819,230,0,230}, {0x81B,0x823,230,0,230}, {0x825,0x827,230,0,230}, {0x829,0x82D,230,0,230},
    {0x859,0x85B,220,0,220}, {0x898,0x898,230,0,230}, {0x899,0x89B,220,0,220}, {0x89C,0x89F,230,0,230},
    {0x8CA,0x8CE,230,0,230}, {0x8CF,0x8D3,220,0,220}, {0x8D4,0x8E1,230,0,230}, {0x8E3,0x8E3,220,0,220},
    {0x8E4,0x8E5,230,0,230}, {0x8E6,0x8E6,220,0,220}, {0x8E7,0x8E8,230,0,230}, {0x8E9,0x8E9,220,0,220},
    {0x8EA,0x8EC,230,0,230}, {0x8ED,0x8EF,220,0,220}, {0x8F0,0x8F0,27,0,27}, {0x8F1,0x8F1,28,0,28},
    {0x8F2,0x8F2,29,0,29}, {0x8F3,0x8F5,230,0,230}, {0x8F6,0x8F6,220,0,220}, {0x8F7,0x8F8,230,0,230},
    {0x8F9,0x8FA,220,0,220}, {0x8FB,0x8FF,230,0,230}, {0x929,0x929,0,0,7}, {0x931,0x931,0,0,7},
    {0x934,0x934,0,0,7}, {0x93C,0x93C,7,1,7}, {0x94D,0x94D,9,0,9}, {0x951,0x951,230,0,230},
    {0x952,0x952,220,0,220}, {0x953,0x954,230,0,230}, {0x958,0x95F,0,2,7}, {0x9BC,0x9BC,7,0,7},
    {0x9BE,0x9BE,0,1,0}, {0x9CD,0x9CD,9,0,9}, {0x9D7,0x9D7,0,1,0}, {0x9DC,0x9DD,0,2,7},
    {0x9DF,0x9DF,0,2,7}, {0x9FE,0x9FE,230,0,230}, {0xA33,0xA33,0,2,7}, {0xA36,0xA36,0,2,7},
    {0xA3C,0xA3C,7,0,7}, {0xA4D,0xA4D,9,0,9}, {0xA59,0xA5B,0,2,7}, {0xA5E,0xA5E,0,2,7},
    {0xABC,0xABC,7,0,7}, {0xACD,0xACD,9,0,9}, {0xB3C,0xB3C,7,0,7}, {0xB3E,0xB3E,0,1,0},
    {0xB4D,0xB4D,9,0,9}, {0xB56,0xB57,0,1,0}, {0xB5C,0xB5D,0,2,7}, {0xBBE,0xBBE,0,1,0},
    {0xBCD,0xBCD,9,0,9}, {0xBD7,0xBD7,0,1,0}, {0xC3C,0xC3C,7,0,7}, {0xC48,0xC48,0,0,91},
    {0xC4D,0xC4D,9,0,9}, {0xC55,0xC55,84,0,84}, {0xC56,0xC56,91,1,91}, {0xCBC,0xCBC,7,0,7},
    {0xCC2,0xCC2,0,1,0}, {0xCCD,0xCCD,9,0,9}, {0xCD5,0xCD6,0,1,0}, {0xD3B,0xD3C,9,0,9},
    {0xD3E,0xD3E,0,1,0}, {0xD4D,0xD4D,9,0,9}, {0xD57,0xD57,0,1,0}, {0xDCA,0xDCA,9,1,9},
    {0xDCF,0xDCF,0,1,0}, {0xDDA,0xDDA,0,0,9}, {0xDDD,0xDDD,0,0,9}, {0xDDF,0xDDF,0,1,0},
    {0xE38,0xE39,103,0,103}, {0xE3A,0xE3A,9,0,9}, {0xE48,0xE4B,107,0,107}, {0xEB8,0xEB9,118,0,118},
    {0xEBA,0xEBA,9,0,9}, {0xEC8,0xECB,122,0,122}, {0xF18,0xF19,220,0,220}, {0xF35,0xF35,220,0,220},
    {0xF37,0xF37,220,0,220}, {0xF39,0xF39,216,0,216}, {0xF43,0xF43,0,2,0}, {0xF4D,0xF4D,0,2,0},
    {0xF52,0xF52,0,2,0}, {0xF57,0xF57,0,2,0}, {0xF5C,0xF5C,0,2,0}, {0xF69,0xF69,0,2,0},
    {0xF71,0xF71,129,0,129}, {0xF72,0xF72,130,0,130}, {0xF73,0xF73,0,2,130}, {0xF74,0xF74,132,0,132},
    {0xF75,0xF75,0,2,132}, {0xF76,0xF76,0,2,130}, {0xF78,0xF78,0,2,130}, {0xF7A,0xF7D,130,0,130},
    {0xF80,0xF80,130,0,130}, {0xF81,0xF81,0,2,130}, {0xF82,0xF83,230,0,230}, {0xF84,0xF84,9,0,9},
    {0xF86,0xF87,230,0,230}, {0xF93,0xF93,0,2,0}, {0xF9D,0xF9D,0,2,0}, {0xFA2,0xFA2,0,2,0},
    {0xFA7,0xFA7,0,2,0}, {0xFAC,0xFAC,0,2,0}, {0xFB9,0xFB9,0,2,0}, {0xFC6,0xFC6,220,0,220},
    {0x102E,0x102E,0,1,0}, {0x1037,0x1037,7,0,7}, {0x1039,0x103A,9,0,9}, {0x108D,0x108D,220,0,220},
    {0x135D,0x135F,230,0,230}, {0x1714,0x1715,9,0,9}, {0x1734,0x1734,9,0,9}, {0x17D2,0x17D2,9,0,9},
    {0x17DD,0x17DD,230,0,230}, {0x18A9,0x18A9,228,0,228}, {0x1939,0x1939,222,0,222}, {0x193A,0x193A,230,0,230},
    {0x193B,0x193B,220,0,220}, {0x1A17,0x1A17,230,0,230}, {0x1A18,0x1A18,220,0,220}, {0x1A60,0x1A60,9,0,9},
    {0x1A75,0x1A7C,230,0,230}, {0x1A7F,0x1A7F,220,0,220}, {0x1AB0,0x1AB4,230,0,230}, {0x1AB5,0x1ABA,220,0,220},
    {0x1ABB,0x1ABC,230,0,230}, {0x1ABD,0x1ABD,220,0,220}, {0x1ABF,0x1AC0,220,0,220}, {0x1AC1,0x1AC2,230,0,230},
    {0x1AC3,0x1AC4,220,0,220}, {0x1AC5,0x1AC9,230,0,230}, {0x1ACA,0x1ACA,220,0,220}, {0x1ACB,0x1ACE,230,0,230},
    {0x1B34,0x1B34,7,0,7}, {0x1B35,0x1B35,0,1,0}, {0x1B44,0x1B44,9,0,9}, {0x1B6B,0x1B6B,230,0,230},
    {0x1B6C,0x1B6C,220,0,220}, {0x1B6D,0x1B73,230,0,230}, {0x1BAA,0x1BAB,9,0,9}, {0x1BE6,0x1BE6,7,0,7},
    {0x1BF2,0x1BF3,9,0,9}, {0x1C37,0x1C37,7,0,7}, {0x1CD0,0x1CD2,230,0,230}, {0x1CD4,0x1CD4,1,0,1},
    {0x1CD5,0x1CD9,220,0,220}, {0x1CDA,0x1CDB,230,0,230}, {0x1CDC,0x1CDF,220,0,220}, {0x1CE0,0x1CE0,230,0,230},
    {0x1CE2,0x1CE8,1,0,1}, {0x1CED,0x1CED,220,0,220}, {0x1CF4,0x1CF4,230,0,230}, {0x1CF8,0x1CF9,230,0,230},
    {0x1DC0,0x1DC1,230,0,230}, {0x1DC2,0x1DC2,220,0,220}, {0x1DC3,0x1DC9,230,0,230}, {0x1DCA,0x1DCA,220,0,220},
    {0x1DCB,0x1DCC,230,0,230}, {0x1DCD,0x1DCD,234,0,234}, {0x1DCE,0x1DCE,214,0,214}, {0x1DCF,0x1DCF,220,0,220},
    {0x1DD0,0x1DD0,202,0,202}, {0x1DD1,0x1DF5,230,0,230}, {0x1DF6,0x1DF6,232,0,232}, {0x1DF7,0x1DF8,228,0,228},
    {0x1DF9,0x1DF9,220,0,220}, {0x1DFA,0x1DFA,218,0,218}, {0x1DFB,0x1DFB,230,0,230}, {0x1DFC,0x1DFC,233,0,233},
    {0x1DFD,0x1DFD,220,0,220}, {0x1DFE,0x1DFE,230,0,230}, {0x1DFF,0x1DFF,220,0,220}, {0x1E00,0x1E01,0,0,220},
    {0x1E02,0x1E03,0,0,230}, {0x1E04,0x1E07,0,0,220}, {0x1E08,0x1E0B,0,0,230}, {0x1E0C,0x1E0F,0,0,220},
    {0x1E10,0x1E11,0,0,202}, {0x1E12,0x1E13,0,0,220}, {0x1E14,0x1E17,0,0,230}, {0x1E18,0x1E1B,0,0,220},
    {0x1E1C,0x1E23,0,0,230}, {0x1E24,0x1E25,0,0,220}, {0x1E26,0x1E27,0,0,230}, {0x1E28,0x1E29,0,0,202},
    {0x1E2A,0x1E2D,0,0,220}, {0x1E2E,0x1E31,0,0,230}, {0x1E32,0x1E37,0,0,220}, {0x1E38,0x1E39,0,0,230},
    {0x1E3A,0x1E3D,0,0,220}, {0x1E3E,0x1E41,0,0,230}, {0x1E42,0x1E43,0,0,220}, {0x1E44,0x1E45,0,0,230},
    {0x1E46,0x1E4B,0,0,220}, {0x1E4C,0x1E59,0,0,230}, {0x1E5A,0x1E5B,0,0,220}, {0x1E5C,0x1E5D,0,0,230},
    {0x1E5E,0x1E5F,0,0,220}, {0x1E60,0x1E61,0,0,230}, {0x1E62,0x1E63,0,0,220}, {0x1E64,0x1E6B,0,0,230},
    {0x1E6C,0x1E77,0,0,220}, {0x1E78,0x1E7D,0,0,230}, {0x1E7E,0x1E7F,0,0,220}, {0x1E80,0x1E87,0,0,230},
    {0x1E88,0x1E89,0,0,220}, {0x1E8A,0x1E91,0,0,230}, {0x1E92,0x1E96,0,0,220}, {0x1E97,0x1E99,0,0,230},
    {0x1E9B,0x1E9B,0,0,230}, {0x1EA0,0x1EA1,0,0,220}, {0x1EA2,0x1EB7,0,0,230}, {0x1EB8,0x1EB9,0,0,220},
    {0x1EBA,0x1EC9,0,0,230}, {0x1ECA,0x1ECD,0,0,220}, {0x1ECE,0x1EE1,0,0,230}, {0x1EE2,0x1EE5,0,0,220},
    {0x1EE6,0x1EEF,0,0,230}, {0x1EF0,0x1EF1,0,0,220}, {0x1EF2,0x1EF3,0,0,230}, {0x1EF4,0x1EF5,0,0,220},
    {0x1EF6,0x1EF9,0,0,230}, {0x1F00,0x1F15,0,0,230}, {0x1F18,0x1F1D,0,0,230}, {0x1F20,0x1F45,0,0,230},
    {0x1F48,0x1F4D,0,0,230}, {0x1F50,0x1F57,0,0,230}, {0x1F59,0x1F59,0,0,230}, {0x1F5B,0x1F5B,0,0,230},
    {0x1F5D,0x1F5D,0,0,230}, {0x1F5F,0x1F70,0,0,230}, {0x1F71,0x1F71,0,2,230}, {0x1F72,0x1F72,0,0,230},
    {0x1F73,0x1F73,0,2,230}, {0x1F74,0x1F74,0,0,230}, {0x1F75,0x1F75,0,2,230}, {0x1F76,0x1F76,0,0,230},
    {0x1F77,0x1F77,0,2,230}, {0x1F78,0x1F78,0,0,230}, {0x1F79,0x1F79,0,2,230}, {0x1F7A,0x1F7A,0,0,230},
    {0x1F7B,0x1F7B,0,2,230}, {0x1F7C,0x1F7C,0,0,230}, {0x1F7D,0x1F7D,0,2,230}, {0x1F80,0x1FAF,0,0,240},
    {0x1FB0,0x1FB1,0,0,230}, {0x1FB2,0x1FB4,0,0,240}, {0x1FB6,0x1FB6,0,0,230}, {0x1FB7,0x1FB7,0,0,240},
    {0x1FB8,0x1FBA,0,0,230}, {0x1FBB,0x1FBB,0,2,230}, {0x1FBC,0x1FBC,0,0,240}, {0x1FBE,0x1FBE,0,2,0},
    {0x1FC1,0x1FC1,0,0,230}, {0x1FC2,0x1FC4,0,0,240}, {0x1FC6,0x1FC6,0,0,230}, {0x1FC7,0x1FC7,0,0,240},
    {0x1FC8,0x1FC8,0,0,230}, {0x1FC9,0x1FC9,0,2,230}, {0x1FCA,0x1FCA,0,0,230}, {0x1FCB,0x1FCB,0,2,230},
    {0x1FCC,0x1FCC,0,0,240}, {0x1FCD,0x1FD2,0,0,230}, {0x1FD3,0x1FD3,0,2,230}, {0x1FD6,0x1FDA,0,0,230},
    {0x1FDB,0x1FDB,0,2,230}, {0x1FDD,0x1FE2,0,0,230}, {0x1FE3,0x1FE3,0,2,230}, {0x1FE4,0x1FEA,0,0,230},
    {0x1FEB,0x1FEB,0,2,230}, {0x1FEC,0x1FED,0,0,230}, {0x1FEE,0x1FEE,0,2,230}, {0x1FEF,0x1FEF,0,2,0},
    {0x1FF2,0x1FF4,0,0,240}, {0x1FF6,0x1FF6,0,0,230}, {0x1FF7,0x1FF7,0,0,240}, {0x1FF8,0x1FF8,0,0,230},
    {0x1FF9,0x1FF9,0,2,230}, {0x1FFA,0x1FFA,0,0,230}, {0x1FFB,0x1FFB,0,2,230}, {0x1FFC,0x1FFC,0,0,240},
    {0x1FFD,0x1FFD,0,2,0}, {0x2000,0x2001,0,2,0}, {0x20D0,0x20D1,230,0,230}, {0x20D2,0x20D3,1,0,1},
    {0x20D4,0x20D7,230,0,230}, {0x20D8,0x20DA,1,0,1}, {0x20DB,0x20DC,230,0,230}, {0x20E1,0x20E1,230,0,230},
    {0x20E5,0x20E6,1,0,1}, {0x20E7,0x20E7,230,0,230}, {0x20E8,0x20E8,220,0,220}, {0x20E9,0x20E9,230,0,230},
    {0x20EA,0x20EB,1,0,1}, {0x20EC,0x20EF,220,0,220}, {0x20F0,0x20F0,230,0,230}, {0x2126,0x2126,0,2,0},
    {0x212A,0x212A,0,2,0}, {0x212B,0x212B,0,2,230}, {0x219A,0x219B,0,0,1}, {0x21AE,0x21AE,0,0,1},
    {0x21CD,0x21CF,0,0,1}, {0x2204,0x2204,0,0,1}, {0x2209,0x2209,0,0,1}, {0x220C,0x220C,0,0,1},
    {0x2224,0x2224,0,0,1}, {0x2226,0x2226,0,0,1}, {0x2241,0x2241,0,0,1}, {0x2244,0x2244,0,0,1},
    {0x2247,0x2247,0,0,1}, {0x2249,0x2249,0,0,1}, {0x2260,0x2260,0,0,1}, {0x2262,0x2262,0,0,1},
    {0x226D,0x2271,0,0,1}, {0x2274,0x2275,0,0,1}, {0x2278,0x2279,0,0,1}, {0x2280,0x2281,0,0,1},
    {0x2284,0x2285,0,0,1}, {0x2288,0x2289,0,0,1}, {0x22AC,0x22AF,0,0,1}, {0x22E0,0x22E3,0,0,1},
    {0x22EA,0x22ED,0,0,1}, {0x2329,0x232A,0,2,0}, {0x2ADC,0x2ADC,0,2,1}, {0x2CEF,0x2CF1,230,0,230},
    {0x2D7F,0x2D7F,9,0,9}, {0x2DE0,0x2DFF,230,0,230}, {0x302A,0x302A,218,0,218}, {0x302B,0x302B,228,0,228},
    {0x302C,0x302C,232,0,232}, {0x302D,0x302D,222,0,222}, {0x302E,0x302F,224,0,224}, {0x304C,0x304C,0,0,8},
    {0x304E,0x304E,0,0,8}, {0x3050,0x3050,0,0,8}, {0x3052,0x3052,0,0,8}, {0x3054,0x3054,0,0,8},
    {0x3056,0x3056,0,0,8}, {0x3058,0x3058,0,0,8}, {0x305A,0x305A,0,0,8}, {0x305C,0x305C,0,0,8},
    {0x305E,0x305E,0,0,8}, {0x3060,0x3060,0,0,8}, {0x3062,0x3062,0,0,8}, {0x3065,0x3065,0,0,8},
    {0x3067,0x3067,0,0,8}, {0x3069,0x3069,0,0,8}, {0x3070,0x3071,0,0,8}, {0x3073,0x3074,0,0,8},
    {0x3076,0x3077,0,0,8}, {0x3079,0x307A,0,0,8}, {0x307C,0x307D,0,0,8}, {0x3094,0x3094,0,0,8},
    {0x3099,0x309A,8,1,8}, {0x309E,0x309E,0,0,8}, {0x30AC,0x30AC,0,0,8}, {0x30AE,0x30AE,0,0,8},
    {0x30B0,0x30B0,0,0,8}, {0x30B2,0x30B2,0,0,8}, {0x30B4,0x30B4,0,0,8}, {0x30B6,0x30B6,0,0,8},
    {0x30B8,0x30B8,0,0,8}, {0x30BA,0x30BA,0,0,8}, {0x30BC,0x30BC,0,0,8}, {0x30BE,0x30BE,0,0,8},
    {0x30C0,0x30C0,0,0,8}, {0x30C2,0x30C2,0,0,8}, {0x30C5,0x30C5,0,0,8}, {0x30C7,0x30C7,0,0,8},
    {0x30C9,0x30C9,0,0,8}, {0x30D0,0x30D1,0,0,8}, {0x30D3,0x30D4,0,0,8}, {0x30D6,0x30D7,0,0,8},
    {0x30D9,0x30DA,0,0,8}, {0x30DC,0x30DD,0,0,8}, {0x30F4,0x30F4,0,0,8}, {0x30F7,0x30FA,0,0,8},
    {0x30FE,0x30FE,0,0,8}, {0xA66F,0xA66F,230,0,230}, {0xA674,0xA67D,230,0,230}, {0xA69E,0xA69F,230,0,230},
    {0xA6F0,0xA6F1,230,0,230}, {0xA806,0xA806,9,0,9}, {0xA82C,0xA82C,9,0,9}, {0xA8C4,0xA8C4,9,0,9},
    {0xA8E0,0xA8F1,230,0,230}, {0xA92B,0xA92D,220,0,220}, {0xA953,0xA953,9,0,9}, {0xA9B3,0xA9B3,7,0,7},
    {0xA9C0,0xA9C0,9,0,9}, {0xAAB0,0xAAB0,230,0,230}, {0xAAB2,0xAAB3,230,0,230}, {0xAAB4,0xAAB4,220,0,220},
    {0xAAB7,0xAAB8,230,0,230}, {0xAABE,0xAABF,230,0,230}, {0xAAC1,0xAAC1,230,0,230}, {0xAAF6,0xAAF6,9,0,9},
    {0xABED,0xABED,9,0,9}, {0xF900,0xFA0D,0,2,0}, {0xFA10,0xFA10,0,2,0}, {0xFA12,0xFA12,0,2,0},
    {0xFA15,0xFA1E,0,2,0}, {0xFA20,0xFA20,0,2,0}, {0xFA22,0xFA22,0,2,0}, {0xFA25,0xFA26,0,2,0},
    {0xFA2A,0xFA6D,0,2,0}, {0xFA70,0xFAD9,0,2,0}, {0xFB1D,0xFB1D,0,2,14}, {0xFB1E,0xFB1E,26,0,26},
    {0xFB1F,0xFB1F,0,2,17}, {0xFB2A,0xFB2A,0,2,24}, {0xFB2B,0xFB2B,0,2,25}, {0xFB2C,0xFB2C,0,2,24},
    {0xFB2D,0xFB2D,0,2,25}, {0xFB2E,0xFB2E,0,2,17}, {0xFB2F,0xFB2F,0,2,18}, {0xFB30,0xFB36,0,2,21},
    {0xFB38,0xFB3C,0,2,21}, {0xFB3E,0xFB3E,0,2,21}, {0xFB40,0xFB41,0,2,21}, {0xFB43,0xFB44,0,2,21},
    {0xFB46,0xFB4A,0,2,21}, {0xFB4B,0xFB4B,0,2,19}, {0xFB4C,0xFB4E,0,2,23}, {0xFE20,0xFE26,230,0,230},
    {0xFE27,0xFE2D,220,0,220}, {0xFE2E,0xFE2F,230,0,230}, {0x101FD,0x101FD,220,0,220}, {0x102E0,0x102E0,220,0,220},
    {0x10376,0x1037A,230,0,230}, {0x10A0D,0x10A0D,220,0,220}, {0x10A0F,0x10A0F,230,0,230}, {0x10A38,0x10A38,230,0,230},
    {0x10A39,0x10A39,1,0,1}, {0x10A3A,0x10A3A,220,0,220}, {0x10A3F,0x10A3F,9,0,9}, {0x10AE5,0x10AE5,230,0,230},
    {0x10AE6,0x10AE6,220,0,220}, {0x10D24,0x10D27,230,0,230}, {0x10EAB,0x10EAC,230,0,230}, {0x10F46,0x10F47,220,0,220},
    {0x10F48,0x10F4A,230,0,230}, {0x10F4B,0x10F4B,220,0,220}, {0x10F4C,0x10F4C,230,0,230}, {0x10F4D,0x10F50,220,0,220},
    {0x10F82,0x10F82,230,0,230}, {0x10F83,0x10F83,220,0,220}, {0x10F84,0x10F84,230,0,230}, {0x10F85,0x10F85,220,0,220},
    {0x11046,0x11046,9,0,9}, {0x11070,0x11070,9,0,9}, {0x1107F,0x1107F,9,0,9}, {0x1109A,0x1109A,0,0,7},
    {0x1109C,0x1109C,0,0,7}, {0x110AB,0x110AB,0,0,7}, {0x110B9,0x110B9,9,0,9}, {0x110BA,0x110BA,7,1,7},
    {0x11100,0x11102,230,0,230}, {0x11127,0x11127,0,1,0}, {0x11133,0x11134,9,0,9}, {0x11173,0x11173,7,0,7},
    {0x111C0,0x111C0,9,0,9}, {0x111CA,0x111CA,7,0,7}, {0x11235,0x11235,9,0,9}, {0x11236,0x11236,7,0,7},
    {0x112E9,0x112E9,7,0,7}, {0x112EA,0x112EA,9,0,9}, {0x1133B,0x1133C,7,0,7}, {0x1133E,0x1133E,0,1,0},
    {0x1134D,0x1134D,9,0,9}, {0x11357,0x11357,0,1,0}, {0x11366,0x1136C,230,0,230}, {0x11370,0x11374,230,0,230},
    {0x11442,0x11442,9,0,9}, {0x11446,0x11446,7,0,7}, {0x1145E,0x1145E,230,0,230}, {0x114B0,0x114B0,0,1,0},
    {0x114BA,0x114BA,0,1,0}, {0x114BD,0x114BD,0,1,0}, {0x114C2,0x114C2,9,0,9}, {0x114C3,0x114C3,7,0,7},
    {0x115AF,0x115AF,0,1,0}, {0x115BF,0x115BF,9,0,9}, {0x115C0,0x115C0,7,0,7}, {0x1163F,0x1163F,9,0,9},
    {0x116B6,0x116B6,9,0,9}, {0x116B7,0x116B7,7,0,7}, {0x1172B,0x1172B,9,0,9}, {0x11839,0x11839,9,0,9},
    {0x1183A,0x1183A,7,0,7}, {0x11930,0x11930,0,1,0}, {0x1193D,0x1193E,9,0,9}, {0x11943,0x11943,7,0,7},
    {0x119E0,0x119E0,9,0,9}, {0x11A34,0x11A34,9,0,9}, {0x11A47,0x11A47,9,0,9}, {0x11A99,0x11A99,9,0,9},
    {0x11C3F,0x11C3F,9,0,9}, {0x11D42,0x11D42,7,0,7}, {0x11D44,0x11D45,9,0,9}, {0x11D97,0x11D97,9,0,9},
    {0x16AF0,0x16AF4,1,0,1}, {0x16B30,0x16B36,230,0,230}, {0x16FF0,0x16FF1,6,0,6}, {0x1BC9E,0x1BC9E,1,0,1},
    {0x1D15E,0x1D164,0,2,216}, {0x1D165,0x1D166,216,0,216}, {0x1D167,0x1D169,1,0,1}, {0x1D16D,0x1D16D,226,0,226},
    {0x1D16E,0x1D172,216,0,216}, {0x1D17B,0x1D182,220,0,220}, {0x1D185,0x1D189,230,0,230}, {0x1D18A,0x1D18B,220,0,220},
    {0x1D1AA,0x1D1AD,230,0,230}, {0x1D1BB,0x1D1C0,0,2,216}, {0x1D242,0x1D244,230,0,230}, {0x1E000,0x1E006,230,0,230},
    {0x1E008,0x1E018,230,0,230}, {0x1E01B,0x1E021,230,0,230}, {0x1E023,0x1E024,230,0,230}, {0x1E026,0x1E02A,230,0,230},
    {0x1E130,0x1E136,230,0,230}, {0x1E2AE,0x1E2AE,230,0,230}, {0x1E2EC,0x1E2EF,230,0,230}, {0x1E8D0,0x1E8D6,220,0,220},
    {0x1E944,0x1E949,230,0,230}, {0x1E94A,0x1E94A,7,0,7}, {0x2F800,0x2FA1D,0,2,0},
};

/* Canonical pairs (starter << 21 | second) that compose to a primary
 * composite, sorted; Hangul is algorithmic and not listed. */
static const uint64_t nfc_pairs[] = {
    0x7800338, 0x7A00338, 0x7C00338, 0x8200300, 0x8200301, 0x8200302, 0x8200303, 0x8200304,
    0x8200306, 0x8200307, 0x8200308, 0x8200309, 0x820030A, 0x820030C, 0x820030F, 0x8200311,
    0x8200323, 0x8200325, 0x8200328, 0x8400307, 0x8400323, 0x8400331, 0x8600301, 0x8600302,
    0x8600307, 0x860030C, 0x8600327, 0x8800307, 0x880030C, 0x8800323, 0x8800327, 0x880032D,
    0x8800331, 0x8A00300, 0x8A00301, 0x8A00302, 0x8A00303, 0x8A00304, 0x8A00306, 0x8A00307,
    0x8A00308, 0x8A00309, 0x8A0030C, 0x8A0030F, 0x8A00311, 0x8A00323, 0x8A00327, 0x8A00328,
    0x8A0032D, 0x8A00330, 0x8C00307, 0x8E00301, 0x8E00302, 0x8E00304, 0x8E00306, 0x8E00307,
    0x8E0030C, 0x8E00327, 0x9000302, 0x9000307, 0x9000308, 0x900030C, 0x9000323, 0x9000327,
    0x900032E, 0x9200300, 0x9200301, 0x9200302, 0x9200303, 0x9200304, 0x9200306, 0x9200307,
    0x9200308, 0x9200309, 0x920030C, 0x920030F, 0x9200311, 0x9200323, 0x9200328, 0x9200330,
    0x9400302, 0x9600301, 0x960030C, 0x9600323, 0x9600327, 0x9600331, 0x9800301, 0x980030C,
    0x9800323, 0x9800327, 0x980032D, 0x9800331, 0x9A00301, 0x9A00307, 0x9A00323, 0x9C00300,
    0x9C00301, 0x9C00303, 0x9C00307, 0x9C0030C, 0x9C00323, 0x9C00327, 0x9C0032D, 0x9C00331,
    0x9E00300, 0x9E00301, 0x9E00302, 0x9E00303, 0x9E00304, 0x9E00306, 0x9E00307, 0x9E00308,
    0x9E00309, 0x9E0030B, 0x9E0030C, 0x9E0030F, 0x9E00311, 0x9E0031B, 0x9E00323, 0x9E00328,
    0xA000301, 0xA000307, 0xA400301, 0xA400307, 0xA40030C, 0xA40030F, 0xA400311, 0xA400323,
    0xA400327, 0xA400331, 0xA600301, 0xA600302, 0xA600307, 0xA60030C, 0xA600323, 0xA600326,
    0xA600327, 0xA800307, 0xA80030C, 0xA800323, 0xA800326, 0xA800327, 0xA80032D, 0xA800331,
    0xAA00300, 0xAA00301, 0xAA00302, 0xAA00303, 0xAA00304, 0xAA00306, 0xAA00308, 0xAA00309,
    0xAA0030A, 0xAA0030B, 0xAA0030C, 0xAA0030F, 0xAA00311, 0xAA0031B, 0xAA00323, 0xAA00324,
    0xAA00328, 0xAA0032D, 0xAA00330, 0xAC00303, 0xAC00323, 0xAE00300, 0xAE00301, 0xAE00302,
    0xAE00307, 0xAE00308, 0xAE00323, 0xB000307, 0xB000308, 0xB200300, 0xB200301, 0xB200302,
    0xB200303, 0xB200304, 0xB200307, 0xB200308, 0xB200309, 0xB200323, 0xB400301, 0xB400302,
    0xB400307, 0xB40030C, 0xB400323, 0xB400331, 0xC200300, 0xC200301, 0xC200302, 0xC200303,
    0xC200304, 0xC200306, 0xC200307, 0xC200308, 0xC200309, 0xC20030A, 0xC20030C, 0xC20030F,
    0xC200311, 0xC200323, 0xC200325, 0xC200328, 0xC400307, 0xC400323, 0xC400331, 0xC600301,
    0xC600302, 0xC600307, 0xC60030C, 0xC600327, 0xC800307, 0xC80030C, 0xC800323, 0xC800327,
    0xC80032D, 0xC800331, 0xCA00300, 0xCA00301, 0xCA00302, 0xCA00303, 0xCA00304, 0xCA00306,
    0xCA00307, 0xCA00308, 0xCA00309, 0xCA0030C, 0xCA0030F, 0xCA00311, 0xCA00323, 0xCA00327,
    0xCA00328, 0xCA0032D, 0xCA00330, 0xCC00307, 0xCE00301, 0xCE00302, 0xCE00304, 0xCE00306,
    0xCE00307, 0xCE0030C, 0xCE00327, 0xD000302, 0xD000307, 0xD000308, 0xD00030C, 0xD000323,
    0xD000327, 0xD00032E, 0xD000331, 0xD200300, 0xD200301, 0xD200302, 0xD200303, 0xD200304,
    0xD200306, 0xD200308, 0xD200309, 0xD20030C, 0xD20030F, 0xD200311, 0xD200323, 0xD200328,
    0xD200330, 0xD400302, 0xD40030C, 0xD600301, 0xD60030C, 0xD600323, 0xD600327, 0xD600331,
    0xD800301, 0xD80030C, 0xD800323, 0xD800327, 0xD80032D, 0xD800331, 0xDA00301, 0xDA00307,
    0xDA00323, 0xDC00300, 0xDC00301, 0xDC00303, 0xDC00307, 0xDC0030C, 0xDC00323, 0xDC00327,
    0xDC0032D, 0xDC00331, 0xDE00300, 0xDE00301, 0xDE00302, 0xDE00303, 0xDE00304, 0xDE00306,
    0xDE00307, 0xDE00308, 0xDE00309, 0xDE0030B, 0xDE0030C, 0xDE0030F, 0xDE00311, 0xDE0031B,
    0xDE00323, 0xDE00328, 0xE000301, 0xE000307, 0xE400301, 0xE400307, 0xE40030C, 0xE40030F,
    0xE400311, 0xE400323, 0xE400327, 0xE400331, 0xE600301, 0xE600302, 0xE600307, 0xE60030C,
    0xE600323, 0xE600326, 0xE600327, 0xE800307, 0xE800308, 0xE80030C, 0xE800323, 0xE800326,
    0xE800327, 0xE80032D, 0xE800331, 0xEA00300, 0xEA00301, 0xEA00302, 0xEA00303, 0xEA00304,
    0xEA00306, 0xEA00308, 0xEA00309, 0xEA0030A, 0xEA0030B, 0xEA0030C, 0xEA0030F, 0xEA00311,
    0xEA0031B, 0xEA00323, 0xEA00324, 0xEA00328, 0xEA0032D, 0xEA00330, 0xEC00303, 0xEC00323,
    0xEE00300, 0xEE00301, 0xEE00302, 0xEE00307, 0xEE00308, 0xEE0030A, 0xEE00323, 0xF000307,
    0xF000308, 0xF200300, 0xF200301, 0xF200302, 0xF200303, 0xF200304, 0xF200307, 0xF200308,
    0xF200309, 0xF20030A, 0xF200323, 0xF400301, 0xF400302, 0xF400307, 0xF40030C, 0xF400323,
    0xF400331, 0x15000300, 0x15000301, 0x15000342, 0x18400300, 0x18400301, 0x18400303, 0x18400309,
    0x18800304, 0x18A00301, 0x18C00301, 0x18C00304, 0x18E00301, 0x19400300, 0x19400301, 0x19400303,
    0x19400309, 0x19E00301, 0x1A800300, 0x1A800301, 0x1A800303, 0x1A800309, 0x1AA00301, 0x1AA00304,
    0x1AA00308, 0x1AC00304, 0x1B000301, 0x1B800300, 0x1B800301, 0x1B800304, 0x1B80030C, 0x1C400300,
    0x1C400301, 0x1C400303, 0x1C400309, 0x1C800304, 0x1CA00301, 0x1CC00301, 0x1CC00304, 0x1CE00301,
    0x1D400300, 0x1D400301, 0x1D400303, 0x1D400309, 0x1DE00301, 0x1E800300, 0x1E800301, 0x1E800303,
    0x1E800309, 0x1EA00301, 0x1EA00304, 0x1EA00308, 0x1EC00304, 0x1F000301, 0x1F800300, 0x1F800301,
    0x1F800304, 0x1F80030C, 0x20400300, 0x20400301, 0x20400303, 0x20400309, 0x20600300, 0x20600301,
    0x20600303, 0x20600309, 0x22400300, 0x22400301, 0x22600300, 0x22600301, 0x29800300, 0x29800301,
    0x29A00300, 0x29A00301, 0x2B400307, 0x2B600307, 0x2C000307, 0x2C200307, 0x2D000301, 0x2D200301,
    0x2D400308, 0x2D600308, 0x2FE00307, 0x34000300, 0x34000301, 0x34000303, 0x34000309, 0x34000323,
    0x34200300, 0x34200301, 0x34200303, 0x34200309, 0x34200323, 0x35E00300, 0x35E00301, 0x35E00303,
    0x35E00309, 0x35E00323, 0x36000300, 0x36000301, 0x36000303, 0x36000309, 0x36000323, 0x36E0030C,
    0x3D400304, 0x3D600304, 0x44C00304, 0x44E00304, 0x45000306, 0x45200306, 0x45C00304, 0x45E00304,
    0x5240030C, 0x72200300, 0x72200301, 0x72200304, 0x72200306, 0x72200313, 0x72200314, 0x72200345,
    0x72A00300, 0x72A00301, 0x72A00313, 0x72A00314, 0x72E00300, 0x72E00301, 0x72E00313, 0x72E00314,
    0x72E00345, 0x73200300, 0x73200301, 0x73200304, 0x73200306, 0x73200308, 0x73200313, 0x73200314,
    0x73E00300, 0x73E00301, 0x73E00313, 0x73E00314, 0x74200314, 0x74A00300, 0x74A00301, 0x74A00304,
    0x74A00306, 0x74A00308, 0x74A00314, 0x75200300, 0x75200301, 0x75200313, 0x75200314, 0x75200345,
    0x75800345, 0x75C00345, 0x76200300, 0x76200301, 0x76200304, 0x76200306, 0x76200313, 0x76200314,
    0x76200342, 0x76200345, 0x76A00300, 0x76A00301, 0x76A00313, 0x76A00314, 0x76E00300, 0x76E00301,
    0x76E00313, 0x76E00314, 0x76E00342, 0x76E00345, 0x77200300, 0x77200301, 0x77200304, 0x77200306,
    0x77200308, 0x77200313, 0x77200314, 0x77200342, 0x77E00300, 0x77E00301, 0x77E00313, 0x77E00314,
    0x78200313, 0x78200314, 0x78A00300, 0x78A00301, 0x78A00304, 0x78A00306, 0x78A00308, 0x78A00313,
    0x78A00314, 0x78A00342, 0x79200300, 0x79200301, 0x79200313, 0x79200314, 0x79200342, 0x79200345,
    0x79400300, 0x79400301, 0x79400342, 0x79600300, 0x79600301, 0x79600342, 0x79C00345, 0x7A400301,
    0x7A400308, 0x80C00308, 0x82000306, 0x82000308, 0x82600301, 0x82A00300, 0x82A00306, 0x82A00308,
    0x82C00306, 0x82C00308, 0x82E00308, 0x83000300, 0x83000304, 0x83000306, 0x83000308, 0x83400301,
    0x83C00308, 0x84600304, 0x84600306, 0x84600308, 0x8460030B, 0x84E00308, 0x85600308, 0x85A00308,
    0x86000306, 0x86000308, 0x86600301, 0x86A00300, 0x86A00306, 0x86A00308, 0x86C00306, 0x86C00308,
    0x86E00308, 0x87000300, 0x87000304, 0x87000306, 0x87000308, 0x87400301, 0x87C00308, 0x88600304,
    0x88600306, 0x88600308, 0x8860030B, 0x88E00308, 0x89600308, 0x89A00308, 0x8AC00308, 0x8E80030F,
    0x8EA0030F, 0x9B000308, 0x9B200308, 0x9D000308, 0x9D200308, 0xC4E00653, 0xC4E00654, 0xC4E00655,
    0xC9000654, 0xC9400654, 0xD8200654, 0xDA400654, 0xDAA00654, 0x12500093C, 0x12600093C, 0x12660093C,
    0x138E009BE, 0x138E009D7, 0x168E00B3E, 0x168E00B56, 0x168E00B57, 0x172400BD7, 0x178C00BBE, 0x178C00BD7,
    0x178E00BBE, 0x188C00C56, 0x197E00CD5, 0x198C00CC2, 0x198C00CD5, 0x198C00CD6, 0x199400CD5, 0x1A8C00D3E,
    0x1A8C00D57, 0x1A8E00D3E, 0x1BB200DCA, 0x1BB200DCF, 0x1BB200DDF, 0x1BB800DCA, 0x204A0102E, 0x360A01B35,
    0x360E01B35, 0x361201B35, 0x361601B35, 0x361A01B35, 0x362201B35, 0x367401B35, 0x367801B35, 0x367C01B35,
    0x367E01B35, 0x368401B35, 0x3C6C00304, 0x3C6E00304, 0x3CB400304, 0x3CB600304, 0x3CC400307, 0x3CC600307,
    0x3D4000302, 0x3D4000306, 0x3D4200302, 0x3D4200306, 0x3D7000302, 0x3D7200302, 0x3D9800302, 0x3D9A00302,
    0x3E0000300, 0x3E0000301, 0x3E0000342, 0x3E0000345, 0x3E0200300, 0x3E0200301, 0x3E0200342, 0x3E0200345,
    0x3E0400345, 0x3E0600345, 0x3E0800345, 0x3E0A00345, 0x3E0C00345, 0x3E0E00345, 0x3E1000300, 0x3E1000301,
    0x3E1000342, 0x3E1000345, 0x3E1200300, 0x3E1200301, 0x3E1200342, 0x3E1200345, 0x3E1400345, 0x3E1600345,
    0x3E1800345, 0x3E1A00345, 0x3E1C00345, 0x3E1E00345, 0x3E2000300, 0x3E2000301, 0x3E2200300, 0x3E2200301,
    0x3E3000300, 0x3E3000301, 0x3E3200300, 0x3E3200301, 0x3E4000300, 0x3E4000301, 0x3E4000342, 0x3E4000345,
    0x3E4200300, 0x3E4200301, 0x3E4200342, 0x3E4200345, 0x3E4400345, 0x3E4600345, 0x3E4800345, 0x3E4A00345,
    0x3E4C00345, 0x3E4E00345, 0x3E5000300, 0x3E5000301, 0x3E5000342, 0x3E5000345, 0x3E5200300, 0x3E5200301,
    0x3E5200342, 0x3E5200345, 0x3E5400345, 0x3E5600345, 0x3E5800345, 0x3E5A00345, 0x3E5C00345, 0x3E5E00345,
    0x3E6000300, 0x3E6000301, 0x3E6000342, 0x3E6200300, 0x3E6200301, 0x3E6200342, 0x3E7000300, 0x3E7000301,
    0x3E7000342, 0x3E7200300, 0x3E7200301, 0x3E7200342, 0x3E8000300, 0x3E8000301, 0x3E8200300, 0x3E8200301,
    0x3E9000300, 0x3E9000301, 0x3E9200300, 0x3E9200301, 0x3EA000300, 0x3EA000301, 0x3EA000342, 0x3EA200300,
    0x3EA200301, 0x3EA200342, 0x3EB200300, 0x3EB200301, 0x3EB200342, 0x3EC000300, 0x3EC000301, 0x3EC000342,
    0x3EC000345, 0x3EC200300, 0x3EC200301, 0x3EC200342, 0x3EC200345, 0x3EC400345, 0x3EC600345, 0x3EC800345,
    0x3ECA00345, 0x3ECC00345, 0x3ECE00345, 0x3ED000300, 0x3ED000301, 0x3ED000342, 0x3ED000345, 0x3ED200300,
    0x3ED200301, 0x3ED200342, 0x3ED200345, 0x3ED400345, 0x3ED600345, 0x3ED800345, 0x3EDA00345, 0x3EDC00345,
    0x3EDE00345, 0x3EE000345, 0x3EE800345, 0x3EF800345, 0x3F6C00345, 0x3F7E00300, 0x3F7E00301, 0x3F7E00342,
    0x3F8C00345, 0x3FEC00345, 0x3FFC00300, 0x3FFC00301, 0x3FFC00342, 0x432000338, 0x432400338, 0x432800338,
    0x43A000338, 0x43A400338, 0x43A800338, 0x440600338, 0x441000338, 0x441600338, 0x444600338, 0x444A00338,
    0x447800338, 0x448600338, 0x448A00338, 0x449000338, 0x449A00338, 0x44C200338, 0x44C800338, 0x44CA00338,
    0x44E400338, 0x44E600338, 0x44EC00338, 0x44EE00338, 0x44F400338, 0x44F600338, 0x44F800338, 0x44FA00338,
    0x450400338, 0x450600338, 0x450C00338, 0x450E00338, 0x452200338, 0x452400338, 0x454400338, 0x455000338,
    0x455200338, 0x455600338, 0x456400338, 0x456600338, 0x456800338, 0x456A00338, 0x608C03099, 0x609603099,
    0x609A03099, 0x609E03099, 0x60A203099, 0x60A603099, 0x60AA03099, 0x60AE03099, 0x60B203099, 0x60B603099,
    0x60BA03099, 0x60BE03099, 0x60C203099, 0x60C803099, 0x60CC03099, 0x60D003099, 0x60DE03099, 0x60DE0309A,
    0x60E403099, 0x60E40309A, 0x60EA03099, 0x60EA0309A, 0x60F003099, 0x60F00309A, 0x60F603099, 0x60F60309A,
    0x613A03099, 0x614C03099, 0x615603099, 0x615A03099, 0x615E03099, 0x616203099, 0x616603099, 0x616A03099,
    0x616E03099, 0x617203099, 0x617603099, 0x617A03099, 0x617E03099, 0x618203099, 0x618803099, 0x618C03099,
    0x619003099, 0x619E03099, 0x619E0309A, 0x61A403099, 0x61A40309A, 0x61AA03099, 0x61AA0309A, 0x61B003099,
    0x61B00309A, 0x61B603099, 0x61B60309A, 0x61DE03099, 0x61E003099, 0x61E203099, 0x61E403099, 0x61FA03099,
    0x22132110BA, 0x22136110BA, 0x2214A110BA, 0x2226211127, 0x2226411127, 0x2268E1133E, 0x2268E11357, 0x22972114B0,
    0x22972114BA, 0x22972114BD, 0x22B70115AF, 0x22B72115AF, 0x2326A11930,
};

static const struct nfc_range *nfc_lookup(uint32_t cp)
{
    size_t lo = 0, hi = sizeof nfc_ranges / sizeof nfc_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < nfc_ranges[mid].first) hi = mid;
        else if (cp > nfc_ranges[mid].last) lo = mid + 1;
        else return &nfc_ranges[mid];
    }
    return NULL;
}

static int nfc_composes(uint32_t first, uint32_t second)
{
    uint64_t key = ((uint64_t)first << 21) | second;
    size_t lo = 0, hi = sizeof nfc_pairs / sizeof nfc_pairs[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (key < nfc_pairs[mid]) hi = mid;
        else if (key > nfc_pairs[mid]) lo = mid + 1;
        else return 1;
    }
    /* Hangul: L + V -> LV, LV + T -> LVT (Unicode 3.12) */
    if (first >= 0x1100 && first <= 0x1112 && second >= 0x1161 && second <= 0x1175) return 1;
    if (first >= 0xAC00 && first <= 0xD7A3 && (first - 0xAC00) % 28 == 0 && second >= 0x11A8 &&
        second <= 0x11C2)
        return 1;
    return 0;
}

/* We carry no decomposition tables, so the NFC normalizer passes text that
 * is already NFC (nearly all text: what keyboards and most files produce)
 * and refuses text NFC would change: a character that never survives NFC, a
 * combining mark out of canonical order, or a mark that composes with the
 * starter it can reach (Unicode's quick check, with Maybe resolved by the
 * composition pairs). */
static gptq_status nfc_check(const char *s, size_t n, size_t base)
{
    const unsigned char *u = (const unsigned char *)s;
    uint32_t starter = 0;
    int have_starter = 0;
    uint8_t last_ccc = 0;   /* ccc of the previous character as written */
    uint8_t last_trail = 0; /* ccc that ends the previous character's decomposition */
    uint8_t starter_trail = 0; /* the same for the last starter */
    for (size_t i = 0, k; i < n; i += k) {
        if (u[i] < 0x80) {
            k = 1;
            starter = u[i];
            have_starter = 1;
            last_ccc = last_trail = starter_trail = 0;
            continue;
        }
        uint32_t cp = utf8_decode(u + i, &k);
        const struct nfc_range *r = nfc_lookup(cp);
        uint8_t ccc = r ? r->ccc : 0, qc = r ? r->qc : 0, trail = r ? r->trail : 0;
        /* a character NFC never keeps; marks out of canonical order; or a
         * composing mark that canonical ordering would move into the last
         * starter's decomposition (conservative: it may recompose to the
         * same text, but we cannot tell without decomposition tables) */
        int bad = qc == 2 || (ccc && last_ccc && last_trail > ccc) ||
                  (ccc && qc == 1 && starter_trail > ccc);
        /* a mark composes with the last starter unless blocked: by any
         * character in between if it is itself a starter, else by one of
         * equal or higher class (in canonical order the last is the highest) */
        int reachable = have_starter && (last_ccc == 0 || (ccc != 0 && last_ccc < ccc));
        if (!bad && reachable &&
            (qc == 1 || (cp >= 0x1161 && cp <= 0x1175) || (cp >= 0x11A8 && cp <= 0x11C2)))
            bad = nfc_composes(starter, cp);
        if (bad)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                             "tokenizer: the NFC normalizer would change U+%04X at byte %zu; only "
                             "text already in NFC is supported: normalize the input to NFC first "
                             "(e.g. python's unicodedata.normalize('NFC', text) or `uconv -x nfc`)",
                             (unsigned)cp, base + i);
        if (ccc == 0) {
            starter = cp;
            have_starter = 1;
            starter_trail = trail;
        }
        last_ccc = ccc;
        last_trail = trail;
    }
    return GPTQ_OK;
}
