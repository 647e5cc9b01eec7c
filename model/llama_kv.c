/* model/llama_kv.c: the KV cache (gptq/model.h): n_seq slots of up to
 * max_tokens positions per layer, in the model's backend memory, allocated
 * as positions are stored. A slot holds one [alloc][kv_dim] buffer of keys
 * and one of values per layer; it starts at KV_MIN_POSITIONS and doubles
 * (capped at max_tokens), so a sequence of n positions costs O(log n)
 * reallocations and at most twice its rows, and a growth holds old and new
 * copies of one layer at a time, not of the whole slot; emptying a slot
 * frees it. */
#include "model/llama_internal.h"

#include <stdlib.h>

#define KV_MIN_POSITIONS 16

gptq_status gptq_kv_create(const gptq_model *m, int n_seq, int max_tokens, gptq_kv **out)
{
    const gptq_model_config *c = &m->cfg;
    *out = NULL;
    if (n_seq < 1 || max_tokens < 1)
        return gptq_fail(GPTQ_ERR_ARG, "kv cache: n_seq %d and max_tokens %d must be >= 1", n_seq,
                         max_tokens);
    gptq_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return gptq_fail(GPTQ_ERR_NOMEM, "kv cache: out of memory");
    kv->be = m->be;
    kv->n_layers = c->num_hidden_layers;
    kv->slots = n_seq;
    kv->cap = max_tokens;
    kv->kv_dim = c->num_key_value_heads * c->head_dim;
    kv->dt = gptq_model_kv_dtype(m);
    kv->k = calloc((size_t)n_seq * kv->n_layers, sizeof *kv->k);
    kv->v = calloc((size_t)n_seq * kv->n_layers, sizeof *kv->v);
    kv->alloc = calloc((size_t)n_seq, sizeof *kv->alloc);
    kv->len = calloc((size_t)n_seq, sizeof *kv->len);
    if (!kv->k || !kv->v || !kv->alloc || !kv->len) {
        gptq_kv_free(kv);
        return gptq_fail(GPTQ_ERR_NOMEM, "kv cache: out of memory for %d slots", n_seq);
    }
    *out = kv;
    return GPTQ_OK;
}

/* Bytes of `positions` positions of one slot (keys and values, every layer). */
static size_t slot_bytes(const gptq_kv *kv, int positions)
{
    return 2 * (size_t)kv->n_layers * (size_t)positions * (size_t)kv->kv_dim *
           gptq_dtype_size(kv->dt);
}

static void slot_release(gptq_kv *kv, int slot)
{
    if (!kv->alloc[slot])
        return;
    size_t bytes = slot_bytes(kv, kv->alloc[slot]);
    for (int l = 0; l < kv->n_layers; l++) {
        size_t at = (size_t)slot * kv->n_layers + l;
        kv->be->free(kv->be, kv->k[at]);
        kv->be->free(kv->be, kv->v[at]);
        kv->k[at] = kv->v[at] = NULL;
    }
    kv->alloc[slot] = 0;
    kv->bytes -= bytes;
    if (kv->budget)
        kv->budget(kv->budget_user, -(int64_t)bytes);
}

/* One layer's buffer `*p` of `old` positions grown to `alloc`, keeping the
 * first `rows` rows. */
static gptq_status grow_buffer(const gptq_kv *kv, void **p, int alloc, int rows, int slot)
{
    const gptq_backend *be = kv->be;
    const size_t row = (size_t)kv->kv_dim * gptq_dtype_size(kv->dt);
    void *n = be->alloc(be, (size_t)alloc * row);
    if (!n)
        return gptq_backend_alloc_fail(be, "kv cache: %d positions of slot %d", alloc, slot);
    gptq_status st = rows ? be->copy(be, n, *p, (size_t)rows * row) : GPTQ_OK;
    if (st != GPTQ_OK) {
        be->free(be, n);
        return st;
    }
    be->free(be, *p);
    *p = n;
    return GPTQ_OK;
}

gptq_status llama_kv_reserve(gptq_kv *kv, int slot, int positions)
{
    if (positions <= kv->alloc[slot])
        return GPTQ_OK;
    int64_t want = kv->alloc[slot] ? 2 * (int64_t)kv->alloc[slot] : KV_MIN_POSITIONS;
    while (want < positions)
        want *= 2;
    int alloc = want > kv->cap ? kv->cap : (int)want;
    size_t old = slot_bytes(kv, kv->alloc[slot]), bytes = slot_bytes(kv, alloc);
    gptq_status st;
    if (kv->budget && (st = kv->budget(kv->budget_user, (int64_t)(bytes - old))) != GPTQ_OK)
        return st;
    /* layer by layer; a failure empties the slot (its rows are lost either
     * way: the forward that wanted them fails) */
    st = GPTQ_OK;
    for (int l = 0; st == GPTQ_OK && l < kv->n_layers; l++) {
        size_t at = (size_t)slot * kv->n_layers + l;
        if ((st = grow_buffer(kv, &kv->k[at], alloc, kv->len[slot], slot)) == GPTQ_OK)
            st = grow_buffer(kv, &kv->v[at], alloc, kv->len[slot], slot);
    }
    kv->alloc[slot] = alloc; /* what the budget was charged for */
    kv->bytes += bytes - old;
    if (st != GPTQ_OK) {
        kv->len[slot] = 0;
        slot_release(kv, slot);
    }
    return st;
}

void gptq_kv_free(gptq_kv *kv)
{
    if (!kv)
        return;
    for (size_t i = 0; kv->k && kv->v && i < (size_t)kv->slots * kv->n_layers; i++) {
        kv->be->free(kv->be, kv->k[i]);
        kv->be->free(kv->be, kv->v[i]);
    }
    free(kv->k);
    free(kv->v);
    free(kv->alloc);
    free(kv->len);
    free(kv);
}

size_t gptq_kv_bytes(const gptq_kv *kv)
{
    return kv->bytes;
}

void gptq_kv_set_budget(gptq_kv *kv, gptq_kv_budget_fn fn, void *user)
{
    kv->budget = fn;
    kv->budget_user = user;
}

int gptq_kv_len(const gptq_kv *kv, int slot)
{
    return slot >= 0 && slot < kv->slots ? kv->len[slot] : 0;
}

void gptq_kv_truncate(gptq_kv *kv, int slot, int len)
{
    if (slot < 0 || slot >= kv->slots || len < 0)
        return;
    if (len < kv->len[slot])
        kv->len[slot] = len;
    if (len == 0)
        slot_release(kv, slot);
}

int gptq_kv_slots(const gptq_kv *kv)
{
    return kv->slots;
}

int gptq_kv_capacity(const gptq_kv *kv)
{
    return kv->cap;
}
