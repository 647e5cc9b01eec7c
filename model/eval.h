/* model/eval.h: perplexity and KL divergence with a stated protocol.
 *
 * Protocol (the fixtures', and the GPTQ paper's): the text is tokenized
 * whole; the ids are cut into non-overlapping windows of `seqlen` tokens
 * (the tail that does not fill a window is dropped); each window is run
 * from position 0 with no context from the previous one; the loss of a
 * window is the mean cross-entropy of its seqlen-1 predicted tokens
 * (position t predicts token t+1); perplexity = exp(mean over windows).
 * KL(base || model) is the mean over the same predicted positions of
 * sum_v p_base(v) (log p_base(v) - log p_model(v)), in nats per token. */
#ifndef GPTQ_MODEL_EVAL_H
#define GPTQ_MODEL_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"
#include "model/llama.h"
#include "gptq/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gptq_eval_result {
    double perplexity;   /* exp(mean_nll) */
    double mean_nll;     /* nats per predicted token (mean over windows) */
    double mean_kl;      /* KL(base || model), nats per predicted token; 0 without base */
    int64_t tokens;      /* ids in the text (before dropping the tail) */
    int windows;         /* windows evaluated */
    int seqlen;
} gptq_eval_result;

/* Called after each batch of windows. Returning non-OK stops the
 * evaluation, which returns that status (GPTQ_ERR_CANCELED for a job
 * cancel; the callback sets the message). */
typedef gptq_status (*gptq_eval_progress)(void *user, int windows_done, int windows_total);

/* Evaluate model m on ids [n_ids] with windows of seqlen tokens. With base
 * != NULL also KL(base || m) (base must have m's vocabulary). progress may
 * be NULL. Several windows run per forward (about 2048 tokens a batch).
 * Errors: GPTQ_ERR_ARG (seqlen outside its bounds in model/options.c,
 * fewer than seqlen ids, an id outside the vocabulary, base's vocabulary
 * differs), GPTQ_ERR_NOMEM, the callback's status. */
gptq_status gptq_eval_ids(const gptq_model *m, const gptq_model *base, const int32_t *ids,
                          size_t n_ids, int seqlen, gptq_eval_progress progress, void *user,
                          gptq_eval_result *out);

/* The same on `len` bytes of UTF-8 text, tokenized whole with tok
 * (add_special as in HF's tokenizer(text): the post-processor's BOS, if
 * any, leads the text). */
gptq_status gptq_eval_text(const gptq_model *m, const gptq_model *base, const gptq_tokenizer *tok,
                           const char *text, size_t len, int seqlen, gptq_eval_progress progress,
                           void *user, gptq_eval_result *out);

#ifdef __cplusplus
}
#endif
#endif
