/* tests/test_eval.c: perplexity of eval.txt against the fixture's float32
 * reference (transformers, same protocol), the BF16 model's stated
 * perplexity, and KL(base || model) against a brute-force twin computed
 * from whole-sequence forward logits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gptq/error.h"
#include "model/eval.h"
#include "model/llama.h"
#include "gptq/tokenizer.h"
#include "testutil.h"

#define REF_PPL 114.4855970707711 /* reference_logits.json eval_perplexity_fp32 */
#define REF_PPL_BF16 114.456      /* fixtures/README.md, to 3 decimals */
#define REF_TOKENS 41578
#define REF_WINDOWS 162

typedef struct progress_log {
    int calls, last_done, last_total, cancel_at;
} progress_log;

static gptq_status on_progress(void *user, int done, int total)
{
    progress_log *p = user;
    CHECK(done > p->last_done && done <= total, "progress %d/%d after %d", done, total,
          p->last_done);
    p->calls++;
    p->last_done = done;
    p->last_total = total;
    if (p->cancel_at && done >= p->cancel_at)
        return gptq_fail(GPTQ_ERR_CANCELED, "canceled by the test");
    return GPTQ_OK;
}

/* KL(base || m) of the first window by brute force from gptq_model_forward. */
static double kl_twin(const gptq_model *m, const gptq_model *base, const int32_t *ids, int seqlen)
{
    const int vocab = gptq_model_get_config(m)->vocab_size;
    float *a = malloc((size_t)seqlen * vocab * sizeof *a),
          *b = malloc((size_t)seqlen * vocab * sizeof *b);
    CHECK_OK(gptq_model_forward(base, NULL, ids, 1, seqlen, NULL, NULL, 0, a));
    CHECK_OK(gptq_model_forward(m, NULL, ids, 1, seqlen, NULL, NULL, 0, b));
    double total = 0;
    for (int t = 0; t < seqlen - 1; t++) {
        const float *pa = a + (size_t)t * vocab, *pb = b + (size_t)t * vocab;
        double ma = -INFINITY, mb = -INFINITY, sa = 0, sb = 0;
        for (int v = 0; v < vocab; v++)
            ma = fmax(ma, pa[v]), mb = fmax(mb, pb[v]);
        for (int v = 0; v < vocab; v++)
            sa += exp(pa[v] - ma), sb += exp(pb[v] - mb);
        double la = ma + log(sa), lb = mb + log(sb), kl = 0;
        for (int v = 0; v < vocab; v++) {
            double lpa = pa[v] - la, lpb = pb[v] - lb;
            kl += exp(lpa) * (lpa - lpb);
        }
        total += kl;
    }
    free(a);
    free(b);
    return total / (seqlen - 1);
}

int main(void)
{
    gptq_tokenizer *tok = NULL;
    gptq_model *m = NULL, *mb = NULL;
    size_t len = 0;
    char *text = test_read_file(fixture_path("tiny-llama/eval.txt"), &len);
    CHECK(text != NULL, "cannot read eval.txt");
    CHECK_OK(gptq_tokenizer_load(fixture_path("tiny-llama/tokenizer.json"), &tok));
    CHECK_OK(gptq_model_load(fixture_path("tiny-llama"), &m));
    if (!text || !tok || !m)
        return 1;

    gptq_eval_result r;
    progress_log plog = {0};
    CHECK_OK(gptq_eval_text(m, NULL, tok, text, len, 256, on_progress, &plog, &r));
    double rel = fabs(r.perplexity - REF_PPL) / REF_PPL;
    printf("perplexity %.6f (reference %.6f, rel diff %.2e), %lld tokens, %d windows, %d progress "
           "calls\n",
           r.perplexity, REF_PPL, rel, (long long)r.tokens, r.windows, plog.calls);
    /* float32 logits agree to ~1e-5 relative; the mean NLL to ~1e-6 nats */
    CHECK(rel <= 1e-4, "perplexity %.6f vs reference %.6f: rel diff %.2e", r.perplexity, REF_PPL,
          rel);
    CHECK(r.tokens == REF_TOKENS && r.windows == REF_WINDOWS, "tokens %lld windows %d (want %d %d)",
          (long long)r.tokens, r.windows, REF_TOKENS, REF_WINDOWS);
    CHECK(plog.last_done == REF_WINDOWS && plog.last_total == REF_WINDOWS,
          "progress ended at %d/%d", plog.last_done, plog.last_total);

    CHECK_OK(gptq_model_load(fixture_path("tiny-llama-bf16"), &mb));
    int32_t *ids = NULL;
    size_t n_ids = 0;
    CHECK_OK(gptq_tokenizer_encode(tok, text, len, 1, &ids, &n_ids));
    if (mb && ids) {
        CHECK_OK(gptq_eval_ids(mb, NULL, ids, n_ids, 256, NULL, NULL, &r));
        printf("BF16 perplexity %.4f (stated %.3f)\n", r.perplexity, REF_PPL_BF16);
        CHECK(fabs(r.perplexity - REF_PPL_BF16) <= 0.0015, "BF16 perplexity %.4f vs %.3f",
              r.perplexity, REF_PPL_BF16);

        /* KL(f16 || bf16) over the first 8 windows, and its brute-force twin on
         * the first window */
        CHECK_OK(gptq_eval_ids(mb, m, ids, 8 * 256 + 17, 256, NULL, NULL, &r));
        printf("KL(f16 || bf16) over 8 windows: %.3e nats/token\n", r.mean_kl);
        CHECK(r.windows == 8 && r.mean_kl > 0 && r.mean_kl < 0.01, "KL %.3e over %d windows",
              r.mean_kl, r.windows);
        gptq_eval_result one;
        CHECK_OK(gptq_eval_ids(mb, m, ids, 256, 256, NULL, NULL, &one));
        double twin = kl_twin(mb, m, ids, 256);
        printf("KL first window %.6e, brute-force twin %.6e\n", one.mean_kl, twin);
        CHECK(fabs(one.mean_kl - twin) <= 1e-3 * twin + 1e-9, "KL %.6e vs twin %.6e", one.mean_kl,
              twin);
        CHECK_OK(gptq_eval_ids(m, m, ids, 512, 256, NULL, NULL, &one));
        CHECK(fabs(one.mean_kl) < 1e-9, "KL(m || m) = %.3e", one.mean_kl);

        plog = (progress_log){.cancel_at = 16};
        gptq_status st = gptq_eval_ids(m, NULL, ids, n_ids, 256, on_progress, &plog, &r);
        CHECK(st == GPTQ_ERR_CANCELED && plog.calls == 2, "cancel: %s after %d calls",
              gptq_status_name(st), plog.calls);
        st = gptq_eval_ids(m, NULL, ids, 100, 256, NULL, NULL, &r);
        CHECK(st == GPTQ_ERR_ARG, "too short a text: %s", gptq_status_name(st));
        st = gptq_eval_ids(m, NULL, ids, n_ids, 1, NULL, NULL, &r);
        CHECK(st == GPTQ_ERR_ARG, "seqlen 1: %s", gptq_status_name(st));
    }
    free(ids);
    gptq_model_free(mb);
    gptq_model_free(m);
    gptq_tokenizer_free(tok);
    free(text);
    return test_result();
}
