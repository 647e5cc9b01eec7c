/* daemon/batch.h: generation batching. One decode loop per resident model
 * steps every active sequence of every client together: each sequence has
 * its own KV-cache slot, is prefilled alone when it joins, and then takes
 * part in one batched forward per step (n_seq sequences of one token each),
 * so several clients cost about one client's weight traffic per token. */
#ifndef GPTQD_BATCH_H
#define GPTQD_BATCH_H

#include <stdint.h>

#include "daemon/engine.h"
#include "daemon/jobs.h"
#include "gptq/error.h"
#include "model/llama.h"
#include "gptq/tokenizer.h"

typedef struct gptqd_batcher gptqd_batcher;

/* A decode loop for model m (and its tokenizer) with `slots` sequences of
 * up to `context` tokens each. Both stay owned by the caller and must
 * outlive the batcher. A sequence's KV cache is allocated as it grows and
 * freed when it ends; charge(user, delta) is asked before each allocation
 * (its failure fails that sequence) and told of each release (NULL: no
 * budget). It runs on the loop's thread and must not block on anything the
 * batcher's owner holds while destroying it. */
gptq_status gptqd_batcher_create(const gptq_model *m, const gptq_tokenizer *tok, int slots,
                                 int context, gptq_kv_budget_fn charge, void *user,
                                 gptqd_batcher **out);
/* Stops the loop and frees its KV cache, telling the charge. No generate
 * call may be in progress. */
void gptqd_batcher_destroy(gptqd_batcher *b);
/* Bytes of KV cache the loop holds now (any thread). */
uint64_t gptqd_batcher_kv_bytes(const gptqd_batcher *b);

/* Generate from prompt ids [n_ids] for `job`, streaming token events and
 * filling the job's result; blocks the calling (job) thread until the
 * sequence ends (eos, max_tokens, cancel, error). Waits for a free slot
 * when all are busy. Errors: GPTQ_ERR_LIMIT (prompt longer than a slot),
 * GPTQ_ERR_CANCELED, the model's errors. */
gptq_status gptqd_batcher_generate(gptqd_batcher *b, const int32_t *ids, int n_ids,
                                   const gptqd_generate_params *p, gptqd_job *job);

#endif
