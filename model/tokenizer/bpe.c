/* model/tokenizer/bpe.c: BPE on one pre-tokenized piece, as HF's word.rs:
 * initial symbols per character (continuing-subword prefix / end-of-word
 * suffix, byte fallback, unk), then merges by rank, and a per-call cache of
 * pieces already encoded. */
#include "model/tokenizer/internal.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_WORD 256 /* longer pieces are rare; not worth keeping */

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

gptq_status bpe_piece(enc_ctx *c, const char *s, size_t n)
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

