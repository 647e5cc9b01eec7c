/* model/sample.c: greedy, temperature, top-k and top-p sampling.
 *
 * HF's warpers in HF's order: logits / T (TemperatureLogitsWarper), keep
 * logits ≥ the k-th largest (TopKLogitsWarper, ties kept), then drop tokens
 * whose ascending cumulative probability is ≤ 1 − p (TopPLogitsWarper),
 * which keeps exactly the smallest descending prefix whose mass reaches p.
 * Probabilities are float64 throughout. */
#include "model/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- generator: xoshiro256** (Blackman & Vigna), seeded by splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    const uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double gptq_sampler_uniform(gptq_sampler *s)
{
    return (double)(xoshiro_next(s->rng) >> 11) * 0x1p-53;
}

/* ---- parameters: defaults and bounds in model/options.c ---------------------- */

gptq_status gptq_sampler_init(gptq_sampler *s, const gptq_sample_params *p)
{
    memset(s, 0, sizeof *s);
    gptq_status st = gptq_sample_params_check(p);
    if (st)
        return st;
    s->params = *p;
    uint64_t x = p->seed;
    for (int k = 0; k < 4; k++)
        s->rng[k] = splitmix64(&x);
    return GPTQ_OK;
}

void gptq_sampler_free(gptq_sampler *s)
{
    if (!s)
        return;
    free(s->prob);
    free(s->index);
    s->prob = NULL;
    s->index = NULL;
    s->capacity = 0;
}

int gptq_sampler_is_stop(const int32_t *eos_ids, int n_eos, int32_t token)
{
    for (int k = 0; k < n_eos; k++)
        if (eos_ids[k] == token)
            return 1;
    return 0;
}

/* ---- sampling -------------------------------------------------------------- */

static gptq_status reserve(gptq_sampler *s, int vocab)
{
    if (vocab <= s->capacity)
        return GPTQ_OK;
    double *prob = realloc(s->prob, (size_t)vocab * sizeof *prob);
    if (prob)
        s->prob = prob;
    int32_t *index = realloc(s->index, (size_t)vocab * sizeof *index);
    if (index)
        s->index = index;
    if (!prob || !index)
        return gptq_fail(GPTQ_ERR_NOMEM, "sampler: out of memory for a vocabulary of %d", vocab);
    s->capacity = vocab;
    return GPTQ_OK;
}

/* Descending by logit, then ascending by index: a total order, so that the
 * result does not depend on the sort's implementation. qsort_r: the daemon
 * samples on several threads at once. */
static int by_logit_desc(const void *a, const void *b, void *arg)
{
    const float *logits = arg;
    const int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (logits[i] != logits[j])
        return logits[i] > logits[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* The k-th largest of logits[index[0..len)] (k in [1, len]), reordering index
 * (quickselect, expected O(len)). */
static float kth_largest(const float *logits, int32_t *index, int len, int k)
{
    int lo = 0, hi = len - 1;
    const int want = k - 1;
    while (lo < hi) {
        const float pivot = logits[index[lo + (hi - lo) / 2]];
        int i = lo, j = hi;
        while (i <= j) {
            while (logits[index[i]] > pivot)
                i++;
            while (logits[index[j]] < pivot)
                j--;
            if (i <= j) {
                int32_t t = index[i];
                index[i++] = index[j];
                index[j--] = t;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
    return logits[index[want]];
}

gptq_status gptq_sampler_next(gptq_sampler *s, const float *logits, int vocab, int32_t *token)
{
    if (vocab <= 0 || !logits || !token)
        return gptq_fail(GPTQ_ERR_ARG, "sampler: need logits of a vocabulary of ≥ 1 (got %d)",
                         vocab);
    int best = -1;
    for (int i = 0; i < vocab; i++) {
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return gptq_fail(GPTQ_ERR_NUMERIC, "sampler: logit %d is %g; the model produced a "
                             "non-finite value", i, (double)logits[i]);
        if (logits[i] != -INFINITY && (best < 0 || logits[i] > logits[best]))
            best = i;
    }
    if (best < 0)
        return gptq_fail(GPTQ_ERR_NUMERIC, "sampler: all %d logits are -inf", vocab);
    const gptq_sample_params *p = &s->params;
    if (p->temperature == 0.0f || p->top_k == 1) {
        *token = best;
        return GPTQ_OK;
    }
    gptq_status st = reserve(s, vocab);
    if (st)
        return st;

    /* candidates: the finite logits, then top-k's (ties with the k-th kept) */
    int32_t *index = s->index;
    int len = 0;
    for (int i = 0; i < vocab; i++)
        if (logits[i] != -INFINITY)
            index[len++] = i;
    float floor_logit = -INFINITY; /* candidates are the logits > -inf and ≥ this */
    if (p->top_k > 0 && p->top_k < len) {
        floor_logit = kth_largest(logits, index, len, p->top_k);
        int kept = 0;
        for (int i = 0; i < vocab; i++)
            if (logits[i] >= floor_logit)
                index[kept++] = i;
        len = kept;
    }

    /* softmax of logits / T over the candidates */
    double *prob = s->prob, total = 0.0;
    const double top = logits[best], inv_t = 1.0 / (double)p->temperature;
    for (int k = 0; k < len; k++) {
        prob[k] = exp(((double)logits[index[k]] - top) * inv_t);
        total += prob[k];
    }

    if (p->top_p < 1.0f) {
        /* Only tokens with probability ≥ (1-p)/(len-1) of the mass can be in
         * the nucleus (llama2.c's cut): sort just those, and fall back to all
         * if they do not reach p (rounding). */
        const double need = (double)p->top_p * total;
        const double cut = len > 1 ? (1.0 - (double)p->top_p) / (len - 1) * total : 0.0;
        int m = 0;
        double mass = 0.0;
        for (int k = 0; k < len; k++)
            if (prob[k] >= cut) {
                mass += prob[k];
                index[m++] = index[k];
            }
        if (mass < need) { /* rebuild the whole candidate list */
            m = 0;
            for (int i = 0; i < vocab; i++)
                if (logits[i] != -INFINITY && logits[i] >= floor_logit)
                    index[m++] = i;
        }
        /* probabilities are monotone in the logits */
        qsort_r(index, (size_t)m, sizeof *index, by_logit_desc, (void *)logits);
        double cum = 0.0;
        int kept = 0;
        while (kept < m) {
            prob[kept] = exp(((double)logits[index[kept]] - top) * inv_t);
            cum += prob[kept++];
            if (cum >= need)
                break;
        }
        len = kept;
        total = cum;
    }

    /* one draw over the kept mass */
    const double u = gptq_sampler_uniform(s) * total;
    double cum = 0.0;
    for (int k = 0; k < len; k++) {
        cum += prob[k];
        if (u < cum) {
            *token = index[k];
            return GPTQ_OK;
        }
    }
    *token = index[len - 1]; /* u rounded to the very top of the mass */
    return GPTQ_OK;
}
