/* tests/testgen.h: greedy generation the way gptqd does it, for the test
 * programs that run a (mapped) model themselves and compare its text with
 * the daemon's: the prompt encoded with special tokens, argmax (first index
 * on ties), stop at EOS or after max_tokens. Only the installed API
 * (gptq/model.h, gptq/tokenizer.h), as a program outside the tree would
 * write it. Header-only. */
#ifndef GPTQ_TESTS_TESTGEN_H
#define GPTQ_TESTS_TESTGEN_H

#include <stdlib.h>
#include <string.h>

#include "gptq/error.h"
#include "gptq/model.h"
#include "gptq/tokenizer.h"

/* The completion of `prompt` by `model` as text (*text malloc'ed). */
static inline gptq_status test_greedy_text(const gptq_model *model, const char *tokenizer_path,
                                           const char *prompt, int max_tokens, char **text)
{
    gptq_status st = GPTQ_OK;
    gptq_tokenizer *tok = NULL;
    gptq_kv *kv = NULL;
    int32_t *ids = NULL, *out = NULL;
    float *logits = NULL;
    size_t n_ids = 0, len = 0;
    int generated = 0;
    const int vocab = gptq_model_vocab_size(model);
    *text = NULL;
    if ((st = gptq_tokenizer_load(tokenizer_path, &tok)) ||
        (st = gptq_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n_ids)))
        goto done;
    out = malloc(((size_t)max_tokens + 1) * sizeof *out);
    logits = malloc((size_t)vocab * sizeof *logits);
    if (!out || !logits) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "greedy generation: out of memory");
        goto done;
    }
    if ((st = gptq_kv_create(model, 1, (int)n_ids + max_tokens, &kv)))
        goto done;
    st = gptq_model_forward(model, kv, ids, 1, (int)n_ids, NULL, NULL, GPTQ_FWD_LAST_ONLY,
                            logits);
    while (!st && generated < max_tokens) {
        int32_t best = 0;
        for (int i = 1; i < vocab; i++)
            if (logits[i] > logits[best])
                best = i;
        if (gptq_model_is_eos(model, best))
            break;
        out[generated++] = best;
        if (generated < max_tokens)
            st = gptq_model_forward(model, kv, &best, 1, 1, NULL, NULL, GPTQ_FWD_LAST_ONLY,
                                    logits);
    }
    if (!st)
        st = generated ? gptq_tokenizer_decode(tok, out, (size_t)generated, text, &len)
                       : ((*text = strdup("")) ? GPTQ_OK
                                               : gptq_fail(GPTQ_ERR_NOMEM, "out of memory"));
done:
    gptq_kv_free(kv);
    gptq_tokenizer_free(tok);
    free(ids);
    free(out);
    free(logits);
    return st;
}

#endif
