/* model/tokenizer/internal.h: what the tokenizer's files share: the loaded
 * tokenizer's layout, the per-call encode context, and the small containers,
 * UTF-8 and hashing helpers every step uses.
 *
 * The files follow the `tokenizers` pipeline, one step each:
 *   load.c        tokenizer.json -> the model (vocab, merges, added tokens),
 *                 post-processor; drives the component loaders below
 *   normalize.c   normalizers (NFC/NFD/NFKC/NFKD, Lowercase, Strip, Replace,
 *                 Prepend, Sequence): load and apply
 *   pretokenize.c pre-tokenizers (ByteLevel, Split, Metaspace, Digits,
 *                 Punctuation, Whitespace, WhitespaceSplit, Sequence)
 *   bpe.c         BPE on one piece (merge ranks, byte fallback, unk)
 *   encode.c      added-token split, the encode pipeline, templates
 *   decode.c      decoders, decode, streaming token bytes
 *   text.c        buffers, UTF-8, hash tables, the GPT-2 byte table
 * Nothing here is exported from the library (hidden visibility). */
#ifndef GPTQ_MODEL_TOKENIZER_INTERNAL_H
#define GPTQ_MODEL_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "gptq/tokenizer.h"

#pragma GCC visibility push(hidden)

/* ---- containers (text.c) --------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} strbuf;

/* 0 on success, -1 out of memory; data stays NUL-terminated after append. */
int sb_reserve(strbuf *sb, size_t extra);
int sb_append(strbuf *sb, const void *bytes, size_t n);

typedef struct {
    int32_t *data;
    size_t len, cap;
} idvec;

int iv_push(idvec *v, int32_t id);

/* A list of strings in one buffer: pieces of text while encoding, token
 * strings while decoding. origin[i] marks a piece that starts at offset 0 of
 * the original input (Metaspace prepend_scheme "first" needs it). */
typedef struct {
    strbuf text;
    size_t *off, *len;
    uint8_t *origin;
    size_t n, cap;
} strlist;

void sl_clear(strlist *l);
void sl_free(strlist *l);
/* Start a new item; its bytes are appended to l->text afterwards and sl_end()
 * closes it. */
int sl_begin(strlist *l, int origin);
void sl_end(strlist *l);
/* Append an item; empty items are dropped as HF drops empty splits. */
int sl_push(strlist *l, const char *s, size_t n, int origin);

char *dup_bytes(const char *s, size_t n);

/* ---- UTF-8 (text.c) ----------------------------------------------------------- */

/* Append s to out, each maximal invalid subpart replaced by U+FFFD
 * (validity: common/utf8.h). */
int utf8_append_lossy(strbuf *out, const char *s, size_t n);
/* Code point at s of valid UTF-8; *k gets its length. */
uint32_t utf8_decode(const unsigned char *s, size_t *k);
size_t utf8_encode(uint32_t cp, char *out);
/* Code point that ends at s[end] (exclusive); *start gets where it begins. */
uint32_t utf8_prev(const char *s, size_t end, size_t *start);
/* Rust's char::is_whitespace (Unicode White_Space). */
int is_unicode_space(uint32_t c);
/* Rust regex `\w` (UTS #18): Alphabetic, marks, Nd, Pc, Join_Control. */
int is_word_char(uint32_t c);

/* The same classes as PCRE2 pattern fragments (for Split-style regexes that
 * must mean what Rust's regex means): White_Space and `\w`. */
#define TOK_RE_SPACE "\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}"
#define TOK_RE_WORD "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}"

/* ---- hash tables (text.c) ------------------------------------------------------- */

uint64_t hash_bytes(const char *s, size_t n);

/* string -> id over a table of strings owned elsewhere (str[id], len[id]). */
typedef struct {
    int32_t *slot; /* id, -1 empty */
    size_t mask;
} strmap;

int strmap_init(strmap *m, size_t n);
int32_t strmap_get(const strmap *m, char *const *str, const uint32_t *len, const char *s, size_t n);
/* Insert id (its string is str[id]); an existing equal string keeps its id. */
void strmap_put(strmap *m, char *const *str, const uint32_t *len, int32_t id);

/* (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t key; /* UINT64_MAX empty */
    uint32_t rank;
    int32_t new_id;
} merge_slot;

/* Slot hash of a merge key ((uint64_t)left << 32 | right). */
uint64_t merge_hash(uint64_t k);
const merge_slot *merge_get(const merge_slot *tab, size_t mask, int32_t a, int32_t b);

/* ---- the GPT-2 byte table (text.c) ----------------------------------------------- */

/* bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 + n
 * in byte order. byte_char[b] is the UTF-8 of b's character; char_byte the
 * inverse (code point -> byte, -1 if not a byte character). Valid after
 * tok_tables_init(), which every load calls first. */
extern char byte_char[256][3];
extern uint8_t byte_char_len[256];
extern int16_t char_byte[0x144];
void tok_tables_init(void);

/* ---- the loaded tokenizer ------------------------------------------------------------ */

enum norm_kind {
    NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWERCASE, NORM_STRIP, NORM_PREPEND,
    NORM_REPLACE
};
typedef struct {
    enum norm_kind kind;
    char *a, *b;        /* Prepend: a; Replace: a -> b (a literal when re is NULL) */
    pcre2_code *re;     /* Replace with a Regex pattern */
    int left, right;    /* Strip */
} norm_step;

enum split_behavior { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_PREV, SPLIT_NEXT, SPLIT_CONTIGUOUS };
enum pre_kind { PRE_BYTELEVEL, PRE_SPLIT, PRE_METASPACE };
enum prepend_scheme { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct {
    enum pre_kind kind;
    int add_prefix_space, use_regex;      /* ByteLevel */
    pcre2_code *re;                       /* ByteLevel (GPT-2 regex), Split (and the
                                             Digits, Punctuation, Whitespace and
                                             WhitespaceSplit splits) */
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

int32_t model_id(const gptq_tokenizer *tok, const char *s, size_t n);

/* ---- the per-call encode context (encode.c) --------------------------------------- */

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

struct span {
    size_t start, end;
    int match;
};

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
    struct span *spans; /* split scratch */
    size_t spans_cap;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
} enc_ctx;

void ctx_free(enc_ctx *c);
/* GPTQ_ERR_NOMEM with the encoder's message. */
gptq_status oom(void);

/* ---- the steps -------------------------------------------------------------------- */

/* JSON helpers of the loaders (load.c). */
const char *json_str(json_t *obj, const char *key);
int json_flag(json_t *obj, const char *key, int dflt);
/* Compile `pattern` (a literal when `literal`) with PCRE2 in UTF/UCP mode,
 * JIT when available. Errors: GPTQ_ERR_UNSUPPORTED naming `what`. */
gptq_status compile_regex(const char *path, const char *what, const char *pattern,
                          size_t pattern_len, int literal, pcre2_code **out);
/* {"String": s} or {"Regex": r} of Replace and Split. */
gptq_status parse_pattern(const char *path, const char *what, json_t *obj, const char **s,
                          int *is_regex);
gptq_status parse_scheme(const char *path, json_t *obj, enum prepend_scheme *out);

/* load.c: the entries of a "Sequence" step's list `key` (normalizers,
 * pretokenizers, decoders), each through `load`; `what` names the step in
 * messages. */
typedef gptq_status (*tok_step_loader)(gptq_tokenizer *tok, const char *path, json_t *step);
gptq_status load_sequence(gptq_tokenizer *tok, const char *path, json_t *step, const char *key,
                          const char *what, tok_step_loader load);

/* normalize.c */
gptq_status load_normalizer(gptq_tokenizer *tok, const char *path, json_t *n);
void norm_step_free(norm_step *step);
/* Apply the normalizer steps to s into c->norm; *out points at the result
 * (s itself when there are no steps). */
gptq_status normalize(enc_ctx *c, const char *s, size_t n, const char **out, size_t *out_len);

/* pretokenize.c */
gptq_status load_pretokenizer(gptq_tokenizer *tok, const char *path, json_t *p);
void pre_step_free(pre_step *step);
/* Spans covering s: the matches of re (or of the literal lit) and the gaps. */
gptq_status find_matches(enc_ctx *c, const pcre2_code *re, const char *lit, const char *s,
                         size_t n, size_t *n_spans);
/* Pre-tokenize one normalized segment and BPE every piece. */
gptq_status encode_normalized(enc_ctx *c, const char *s, size_t n, int origin);
/* Append s with every occurrence of from replaced by to. */
int append_replaced(strbuf *out, const char *s, size_t n, const char *from, const char *to);

/* encode.c: the match strings of added tokens (normalized ones through the
 * normalizers), once at load. */
gptq_status added_match_strings(gptq_tokenizer *tok, const char *path);

/* bpe.c */
gptq_status bpe_piece(enc_ctx *c, const char *s, size_t n);

/* decode.c */
gptq_status load_decoder(gptq_tokenizer *tok, const char *path, json_t *d);
gptq_status build_token_bytes(gptq_tokenizer *tok, const char *path);

#pragma GCC visibility pop

#endif
