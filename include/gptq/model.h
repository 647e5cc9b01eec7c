/* gptq/model.h: running a model, as a program that maps a resident model
 * (gptq_mapping_model, gptq/client.h) may: its vocabulary and end tokens,
 * a KV cache, and the forward pass. The tokenizer is gptq/tokenizer.h.
 * Installed with libgptqclient; the rest of the runtime (loading,
 * quantization, per-layer entry points) is internal to the project.
 *
 * Thread safety: a model is read-only here; any number of threads may run
 * forward passes on one model at once, each with its own gptq_kv.
 * Errors: a gptq_status with the message in gptq_errmsg(). */
#ifndef GPTQ_MODEL_H
#define GPTQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gptq_model gptq_model;
typedef struct gptq_kv gptq_kv;

/* Rows of the logits gptq_model_forward writes: the vocabulary size of the
 * model's output layer (config.json's vocab_size). */
int gptq_model_vocab_size(const gptq_model *m);
/* Positions the model was trained for (max_position_embeddings), 0 when
 * its config does not say. */
int gptq_model_context_length(const gptq_model *m);
/* 1 when id ends generation: one of the end-of-generation ids the model
 * declares (config.json's eos_token_id, generation_config.json's list, a
 * GGUF's eos/eot ids); else 0. */
int gptq_model_is_eos(const gptq_model *m, int32_t id);

/* ---- whole-model forward with a KV cache ------------------------------------------- */

/* A KV cache of `n_seq` slots of up to `max_tokens` positions each, for
 * model m (it must only be used with m or its clones). It allocates as
 * forwards store positions: a slot's memory grows (16 positions, then
 * doubling, up to max_tokens) and emptying the slot (gptq_kv_truncate to
 * 0) frees it, so an idle cache holds nothing. *out is owned
 * (gptq_kv_free). Errors: GPTQ_ERR_ARG, GPTQ_ERR_NOMEM. */
gptq_status gptq_kv_create(const gptq_model *m, int n_seq, int max_tokens, gptq_kv **out);
/* Frees everything without asking the budget (see gptq_kv_set_budget). */
void gptq_kv_free(gptq_kv *kv);
/* Bytes of the model's memory the cache holds now. */
size_t gptq_kv_bytes(const gptq_kv *kv);
/* A budget for the cache's memory: before it allocates `delta` more bytes
 * fn(user, delta) must return GPTQ_OK (else the forward fails with fn's
 * status and message, nothing stored); after it frees, fn(user, -delta).
 * Called from the thread running the forward or the truncate. */
typedef gptq_status (*gptq_kv_budget_fn)(void *user, int64_t delta_bytes);
void gptq_kv_set_budget(gptq_kv *kv, gptq_kv_budget_fn fn, void *user);
/* Tokens cached in a slot; forget a slot's tokens beyond `len` (0 empties it
 * and frees its memory; len above the current length is clamped). */
int gptq_kv_len(const gptq_kv *kv, int slot);
void gptq_kv_truncate(gptq_kv *kv, int slot, int len);
int gptq_kv_slots(const gptq_kv *kv);
int gptq_kv_capacity(const gptq_kv *kv);

/* Only the last position of each sequence gets logits. */
#define GPTQ_FWD_LAST_ONLY 1

/* Forward n_seq sequences of `len` new tokens each: ids [n_seq, len].
 * Sequence s uses cache slot slots[s] (NULL: slot s) and its tokens sit at
 * positions start[s] .. start[s]+len-1 (start NULL: the slot's current
 * length), attending to the slot's cached positions 0..start[s]-1 and
 * causally to each other. The cache's entries from start[s] on are
 * overwritten and the slot's length becomes start[s]+len.
 * kv NULL: no cache, every sequence starts at position 0 (start must be
 * NULL).
 * logits: [n_seq*len, vocab] (row s*len+t), or [n_seq, vocab] with
 * GPTQ_FWD_LAST_ONLY; caller memory.
 * Errors: GPTQ_ERR_ARG (an id outside the vocabulary, a bad slot, a start
 * past the slot's length; the message names which), GPTQ_ERR_LIMIT (more
 * than 2^24 tokens in one call, or start +
 * len exceeds the cache's max_tokens), GPTQ_ERR_NOMEM. On error the cache
 * slots used are left with undefined contents beyond their old lengths. */
gptq_status gptq_model_forward(const gptq_model *m, gptq_kv *kv, const int32_t *ids, int n_seq,
                               int len, const int *slots, const int32_t *start, int flags,
                               float *logits);

#ifdef __cplusplus
}
#endif
#endif
