/* model/llama_kv.c: the KV cache (gptq/model.h): n_seq slots of
 * max_tokens positions per layer, in the model's backend memory. */
#include "model/llama_internal.h"

#include <stdlib.h>

/* ---- KV cache ---------------------------------------------------------------------------- */

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
    size_t n = (size_t)kv->n_layers * n_seq * max_tokens * kv->kv_dim;
    kv->k = m->be->alloc(m->be, n * sizeof *kv->k);
    kv->v = m->be->alloc(m->be, n * sizeof *kv->v);
    kv->len = calloc((size_t)n_seq, sizeof *kv->len);
    if (!kv->k || !kv->v || !kv->len) {
        gptq_kv_free(kv);
        return gptq_backend_alloc_fail(m->be, "kv cache: 2 x %zu MiB for %d x %d tokens",
                                       n * sizeof(float) >> 20, n_seq, max_tokens);
    }
    *out = kv;
    return GPTQ_OK;
}

void gptq_kv_free(gptq_kv *kv)
{
    if (!kv)
        return;
    kv->be->free(kv->be, kv->k);
    kv->be->free(kv->be, kv->v);
    free(kv->len);
    free(kv);
}

int gptq_kv_len(const gptq_kv *kv, int slot)
{
    return slot >= 0 && slot < kv->slots ? kv->len[slot] : 0;
}

void gptq_kv_truncate(gptq_kv *kv, int slot, int len)
{
    if (slot >= 0 && slot < kv->slots && len >= 0 && len < kv->len[slot])
        kv->len[slot] = len;
}

int gptq_kv_slots(const gptq_kv *kv)
{
    return kv->slots;
}

int gptq_kv_capacity(const gptq_kv *kv)
{
    return kv->cap;
}
