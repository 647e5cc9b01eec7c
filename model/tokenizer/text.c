/* model/tokenizer/text.c: the tokenizer's small tools: growable buffers and
 * string lists, UTF-8 checks and conversion, the hash tables for vocabulary
 * and merges, and the GPT-2 byte table. */
#include "model/tokenizer/internal.h"

#include "common/utf8.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable byte buffer and id vector ------------------------------------ */

int sb_reserve(strbuf *sb, size_t extra)
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

int sb_append(strbuf *sb, const void *bytes, size_t n)
{
    if (sb_reserve(sb, n)) return -1;
    if (n) memcpy(sb->data + sb->len, bytes, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return 0;
}

int iv_push(idvec *v, int32_t id)
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

void sl_clear(strlist *l)
{
    l->text.len = 0;
    l->n = 0;
}

void sl_free(strlist *l)
{
    free(l->text.data);
    free(l->off);
    free(l->len);
    free(l->origin);
    memset(l, 0, sizeof *l);
}

/* Start a new item; its bytes are appended to l->text afterwards and
 * sl_end() closes it. */
int sl_begin(strlist *l, int origin)
{
    /* the text buffer exists from the first item on, so that an empty
     * item's bytes (text.data + off) are never arithmetic on NULL */
    if (sb_reserve(&l->text, 0)) return -1;
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

void sl_end(strlist *l)
{
    l->len[l->n - 1] = l->text.len - l->off[l->n - 1];
}

/* Append an item; empty items are dropped as HF drops empty splits. */
int sl_push(strlist *l, const char *s, size_t n, int origin)
{
    if (n == 0) return 0;
    if (sl_begin(l, origin) || sb_append(&l->text, s, n)) return -1;
    sl_end(l);
    return 0;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Append s to out, each maximal invalid subpart replaced by U+FFFD. */
int utf8_append_lossy(strbuf *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        size_t k;
        while (i < n && (k = gptq_utf8_valid_len(u + i, n - i)) != 0) i += k;
        if (sb_append(out, s + start, i - start)) return -1;
        if (i < n) {
            if (sb_append(out, "\xEF\xBF\xBD", 3)) return -1;
            i += gptq_utf8_invalid_len(u + i, n - i);
        }
    }
    return 0;
}

/* Code point at s of valid UTF-8; *k gets its length. */
uint32_t utf8_decode(const unsigned char *s, size_t *k)
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

size_t utf8_encode(uint32_t cp, char *out)
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
int is_unicode_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* HF's single_word test is the Rust regex `\w` (UTS #18: Alphabetic, marks,
 * decimal digits, connector punctuation, Join_Control), here from PCRE2's
 * Unicode tables; compiled once, never freed. */
static pcre2_code *word_char_re;

int is_word_char(uint32_t c)
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
uint32_t utf8_prev(const char *s, size_t end, size_t *start)
{
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    size_t k;
    *start = i;
    return utf8_decode((const unsigned char *)s + i, &k);
}

/* ---- hash tables -------------------------------------------------------- */

uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

int strmap_init(strmap *m, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2 + 16) cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot) return -1;
    for (size_t i = 0; i < cap; i++) m->slot[i] = -1;
    m->mask = cap - 1;
    return 0;
}

int32_t strmap_get(const strmap *m, char *const *str, const uint32_t *len, const char *s,
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
void strmap_put(strmap *m, char *const *str, const uint32_t *len, int32_t id)
{
    for (size_t i = hash_bytes(str[id], len[id]) & m->mask;; i = (i + 1) & m->mask) {
        int32_t old = m->slot[i];
        if (old < 0) { m->slot[i] = id; return; }
        if (len[old] == len[id] && memcmp(str[old], str[id], len[id]) == 0) return;
    }
}

uint64_t merge_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

const merge_slot *merge_get(const merge_slot *tab, size_t mask, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t i = merge_hash(key) & mask;; i = (i + 1) & mask) {
        if (tab[i].key == key) return &tab[i];
        if (tab[i].key == UINT64_MAX) return NULL;
    }
}


char *dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ---- the GPT-2 byte table ------------------------------------------------------ */

char byte_char[256][3];
uint8_t byte_char_len[256];
int16_t char_byte[0x144];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_build(void)
{
    int n = 0, err;
    PCRE2_SIZE at;
    word_char_re = pcre2_compile((PCRE2_SPTR) "[" TOK_RE_WORD "]", PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
    for (int i = 0; i < 0x144; i++) char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        byte_char_len[b] = (uint8_t)utf8_encode(cp, byte_char[b]);
        char_byte[cp] = (int16_t)b;
    }
}

void tok_tables_init(void)
{
    pthread_once(&tables_once, tables_build);
}
