/* model/sample.h: choosing the next token from logits.
 *
 * Greedy (temperature 0), temperature, top-k and top-p (nucleus), applied in
 * Hugging Face's order (temperature, then top-k, then top-p), with a seeded
 * generator (xoshiro256**, seeded through splitmix64) whose state lives in
 * the sampler: the same seed and logits give the same tokens on every run
 * and machine (the arithmetic is float64 with libm's exp; only a draw that
 * lands within ~1e-16 of a cumulative-probability boundary could differ
 * between libms). */
#ifndef GPTQ_MODEL_SAMPLE_H
#define GPTQ_MODEL_SAMPLE_H

#include <stdint.h>

#include "gptq/error.h"

/* Bounds and defaults: model/options.c (gptqctl's --temperature, --top-k,
 * --top-p, --seed). */
typedef struct gptq_sample_params {
    float temperature; /* 0 is greedy (argmax, lowest index on ties) */
    int top_k;         /* 0 is off; 1 is greedy. Ties with the k-th logit are kept, as HF does */
    float top_p;       /* 1 is off. Keeps the smallest set of most probable tokens whose
                          probability sums to ≥ top_p (always ≥ 1 token) */
    uint64_t seed;
} gptq_sample_params;

/* The defaults of model/options.c: greedy (temperature 0), top-k and
 * top-p off, seed 0. */
void gptq_sample_params_default(gptq_sample_params *p);
/* Check ranges; the message names the option and its allowed values. */
gptq_status gptq_sample_params_check(const gptq_sample_params *p);

typedef struct gptq_sampler {
    gptq_sample_params params;
    uint64_t rng[4];   /* xoshiro256** state */
    double *prob;      /* scratch [capacity], owned */
    int32_t *index;    /* scratch [capacity], owned */
    int capacity;
} gptq_sampler;

/* Check *p and seed the generator with p->seed. Owns scratch memory
 * (allocated on first use); release with gptq_sampler_free. */
gptq_status gptq_sampler_init(gptq_sampler *s, const gptq_sample_params *p);
void gptq_sampler_free(gptq_sampler *s);

/* Choose a token from logits [vocab] (read only) into *token. Logits may be
 * -inf (masked); a NaN logit, +inf, or all of them -inf is GPTQ_ERR_NUMERIC
 * naming the index. Draws one uniform number per call unless greedy. */
gptq_status gptq_sampler_next(gptq_sampler *s, const float *logits, int vocab, int32_t *token);

/* The generator's next uniform double in [0, 1) (53 random bits). */
double gptq_sampler_uniform(gptq_sampler *s);

/* 1 if token is one of eos_ids [n_eos], else 0. */
int gptq_sampler_is_stop(const int32_t *eos_ids, int n_eos, int32_t token);

#endif
