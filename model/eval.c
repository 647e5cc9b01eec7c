/* model/eval.c: perplexity and KL(base || model) over non-overlapping
 * windows (protocol in eval.h).
 *
 * Windows run a batch at a time through the per-layer entry points of
 * llama.h, so the hidden states of ~2048 tokens are alive at once and the
 * logits only for a chunk of rows: a 128k vocabulary at seqlen 2048 would
 * otherwise need a gigabyte of logits per window. */
#include "model/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "model/options.h"

#define EVAL_BATCH_TOKENS 2048 /* tokens per forward (sgemm efficiency) */
#define EVAL_HEAD_ROWS 256     /* rows of logits computed at once */

/* h [n_win*seqlen, hidden] = the last hidden states of n_win windows. */
static gptq_status run_windows(const gptq_model *m, const int32_t *ids, int n_win, int seqlen,
                               float *h)
{
    gptq_status st = gptq_model_embed(m, ids, n_win, seqlen, h);
    int layers = gptq_model_get_config(m)->num_hidden_layers;
    for (int l = 0; l < layers && st == GPTQ_OK; l++)
        st = gptq_model_layer_forward(m, l, h, n_win, seqlen, NULL);
    return st;
}

/* lse[i] = log sum_v exp(x[i, v]) for rows of logits, in double: KL of
 * close models is ~1e-6 nats, below float32 log-probabilities' rounding. */
static void logsumexp_rows(const float *x, int n, int cols, double *lse)
{
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * cols;
        float mx = -INFINITY;
        for (int j = 0; j < cols; j++)
            mx = r[j] > mx ? r[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < cols; j++)
            sum += exp((double)r[j] - mx);
        lse[i] = mx + log(sum);
    }
}

gptq_status gptq_eval_ids(const gptq_model *m, const gptq_model *base, const int32_t *ids,
                          size_t n_ids, int seqlen, gptq_eval_progress progress, void *user,
                          gptq_eval_result *out)
{
    gptq_status st = GPTQ_OK;
    const gptq_model_config *c = gptq_model_get_config(m);
    const int vocab = c->vocab_size;
    float *h = NULL, *hb = NULL, *lp = NULL, *lpb = NULL; /* lp, lpb: logits */
    double *lse = NULL, *lseb = NULL;
    memset(out, 0, sizeof *out);
    out->tokens = (int64_t)n_ids;
    out->seqlen = seqlen;
    if ((st = gptq_option_check(gptq_eval_option("seqlen"), seqlen))) /* model/options.c */
        return st;
    if (n_ids / (size_t)seqlen < 1)
        return gptq_fail(GPTQ_ERR_ARG, "eval: the text has %zu tokens, fewer than one window of %d",
                         n_ids, seqlen);
    if (n_ids / (size_t)seqlen > INT32_MAX)
        return gptq_fail(GPTQ_ERR_LIMIT, "eval: too many windows");
    const gptq_model_config *cb = base ? gptq_model_get_config(base) : NULL;
    if (cb && cb->vocab_size != vocab)
        return gptq_fail(GPTQ_ERR_ARG, "eval: base vocabulary %d differs from the model's %d",
                         cb->vocab_size, vocab);
    const int windows = (int)(n_ids / (size_t)seqlen);
    const int per_batch = seqlen >= EVAL_BATCH_TOKENS ? 1 : EVAL_BATCH_TOKENS / seqlen;
    const size_t T = (size_t)per_batch * seqlen;

    /* hidden states live with each model's weights (GPU memory for a model
     * on the CUDA backend); logits come back to the host */
    const gptq_backend *be = gptq_model_backend(m), *beb = base ? gptq_model_backend(base) : NULL;
    h = be->alloc(be, T * c->hidden_size * sizeof *h);
    lp = malloc((size_t)EVAL_HEAD_ROWS * vocab * sizeof *lp);
    lse = malloc(EVAL_HEAD_ROWS * sizeof *lse);
    if (cb) {
        hb = beb->alloc(beb, T * cb->hidden_size * sizeof *hb);
        lpb = malloc((size_t)EVAL_HEAD_ROWS * vocab * sizeof *lpb);
        lseb = malloc(EVAL_HEAD_ROWS * sizeof *lseb);
    }
    if (!h || !lp || !lse || (cb && (!hb || !lpb || !lseb))) {
        st = !h ? gptq_backend_alloc_fail(be, "eval: activations for %zu tokens", T)
           : cb && !hb ? gptq_backend_alloc_fail(beb, "eval: base activations for %zu tokens", T)
                       : gptq_fail(GPTQ_ERR_NOMEM, "eval: cannot allocate log-probabilities");
        goto done;
    }

    double nll_sum = 0.0, kl_sum = 0.0;
    for (int w0 = 0; w0 < windows; w0 += per_batch) {
        int nb = windows - w0 < per_batch ? windows - w0 : per_batch;
        const int32_t *wids = ids + (size_t)w0 * seqlen;
        if ((st = run_windows(m, wids, nb, seqlen, h)) != GPTQ_OK)
            goto done;
        if (cb && (st = run_windows(base, wids, nb, seqlen, hb)) != GPTQ_OK)
            goto done;
        for (int i = 0; i < nb; i++) {
            double nll = 0.0, kl = 0.0;
            /* positions 0 .. seqlen-2 predict tokens 1 .. seqlen-1 */
            for (int p0 = 0; p0 < seqlen - 1; p0 += EVAL_HEAD_ROWS) {
                int rows = seqlen - 1 - p0 < EVAL_HEAD_ROWS ? seqlen - 1 - p0 : EVAL_HEAD_ROWS;
                size_t row0 = (size_t)i * seqlen + p0;
                if ((st = gptq_model_head(m, h + row0 * c->hidden_size, rows, lp)) != GPTQ_OK)
                    goto done;
                logsumexp_rows(lp, rows, vocab, lse);
                for (int r = 0; r < rows; r++)
                    nll += lse[r] - lp[(size_t)r * vocab + wids[row0 + r + 1]];
                if (!cb)
                    continue;
                if ((st = gptq_model_head(base, hb + row0 * cb->hidden_size, rows, lpb)) != GPTQ_OK)
                    goto done;
                logsumexp_rows(lpb, rows, vocab, lseb);
                for (int r = 0; r < rows; r++) {
                    const float *a = lpb + (size_t)r * vocab, *b = lp + (size_t)r * vocab;
                    double row_kl = 0.0;
                    for (int v = 0; v < vocab; v++) {
                        double la = a[v] - lseb[r], lb = b[v] - lse[r];
                        row_kl += exp(la) * (la - lb);
                    }
                    kl += row_kl;
                }
            }
            nll_sum += nll / (seqlen - 1);
            kl_sum += kl / (seqlen - 1);
        }
        out->windows = w0 + nb;
        if (progress && (st = progress(user, out->windows, windows)) != GPTQ_OK)
            goto done;
    }
    out->mean_nll = nll_sum / windows;
    out->mean_kl = cb ? kl_sum / windows : 0.0;
    out->perplexity = exp(out->mean_nll);
done:
    if (h)
        be->free(be, h);
    if (hb)
        beb->free(beb, hb);
    free(lp), free(lpb), free(lse), free(lseb);
    return st;
}

gptq_status gptq_eval_text(const gptq_model *m, const gptq_model *base, const gptq_tokenizer *tok,
                           const char *text, size_t len, int seqlen, gptq_eval_progress progress,
                           void *user, gptq_eval_result *out)
{
    int32_t *ids = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    gptq_status st = gptq_tokenizer_encode(tok, text, len, 1, &ids, &n);
    if (st != GPTQ_OK)
        return gptq_fail_context(st, "eval: tokenizing the text");
    st = gptq_eval_ids(m, base, ids, n, seqlen, progress, user, out);
    free(ids);
    return st;
}
