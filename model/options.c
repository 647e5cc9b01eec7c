/* model/options.c: the options of quantize, eval and generate jobs, each
 * defined once (see options.h): name, default, bounds, and why. */
#include "model/options.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "quant/options.h"

#define N_OPTIONS(table) (sizeof(table) / sizeof(table)[0])

/* ---- calibration ---------------------------------------------------------- */

static const gptq_option calib_options[] = {
    /* Calibration windows (the reference takes 128). One layer's
     * activations, nsamples x seqlen x (hidden + q_dim) floats, are alive at
     * once (calib.h): memory bounds the product, which gptqd caps in tokens
     * before it starts a job; 65536 bounds the count. */
    {.name = "nsamples", .type = GPTQ_OPTION_INT, .offset = offsetof(gptq_calib_options, nsamples),
     .def = 128, .min = 1, .max = 65536},
    /* Tokens per window: at least 2 (a window predicts its next token), at
     * most 131072, the longest context of the model families loaded here
     * (Llama 3.1); the model's own positions bound it further (checked with
     * the model, gptqd lowers it to them). */
    {.name = "seqlen", .type = GPTQ_OPTION_INT, .offset = offsetof(gptq_calib_options, seqlen),
     .def = 2048, .min = 2, .max = 131072},
    /* Seed of the reference's window sampler (random.seed(0) there). */
    {.name = "seed", .type = GPTQ_OPTION_U64, .offset = offsetof(gptq_calib_options, seed),
     .def = 0},
    /* Windows per layer-forward call (library callers only): more than
     * nsamples acts as nsamples. */
    {.name = "batch", .type = GPTQ_OPTION_INT, .offset = offsetof(gptq_calib_options, batch),
     .def = 8, .min = 1, .max = 65536},
};

const gptq_option *gptq_calib_option(const char *name)
{
    const gptq_option *opt = gptq_option_find(calib_options, N_OPTIONS(calib_options), name);
    return opt ? opt : gptq_option_find(gptq_quant_options, gptq_quant_n_options, name);
}

static gptq_status no_option(const char *job, const char *name)
{
    return gptq_fail(GPTQ_ERR_ARG, "%s has no option '%s'", job, name);
}

void gptq_calib_options_default(gptq_calib_options *o)
{
    memset(o, 0, sizeof *o); /* nothing skipped, no given windows, on the host */
    gptq_quant_config_default(&o->quant);
    gptq_options_default(calib_options, N_OPTIONS(calib_options), o);
    o->true_sequential = 1;
}

gptq_status gptq_calib_options_set(gptq_calib_options *o, const char *name, double value)
{
    const gptq_option *opt = gptq_option_find(calib_options, N_OPTIONS(calib_options), name);
    if (opt)
        return gptq_option_set(opt, o, value);
    if ((opt = gptq_option_find(gptq_quant_options, gptq_quant_n_options, name)))
        return gptq_option_set(opt, &o->quant, value);
    return no_option("quantize", name);
}

gptq_status gptq_calib_options_check(const gptq_calib_options *o)
{
    gptq_status st = gptq_quant_options_check(&o->quant);
    return st ? st : gptq_options_check(calib_options, N_OPTIONS(calib_options), o);
}

/* ---- evaluation ----------------------------------------------------------- */

static const gptq_option eval_options[] = {
    /* Window length: the fixtures' perplexity protocol uses 256; bounds as
     * calibration's seqlen (gptqd also refuses more than the model's
     * positions). */
    {.name = "seqlen", .type = GPTQ_OPTION_INT, .offset = offsetof(gptq_eval_params, seqlen),
     .def = 256, .min = 2, .max = 131072},
    /* At most this many windows from the text's start; 0 = all of them. */
    {.name = "max-windows", .type = GPTQ_OPTION_INT,
     .offset = offsetof(gptq_eval_params, max_windows), .def = 0, .min = 0, .max = INT_MAX},
};

const gptq_option *gptq_eval_option(const char *name)
{
    return gptq_option_find(eval_options, N_OPTIONS(eval_options), name);
}

void gptq_eval_params_default(gptq_eval_params *p)
{
    gptq_options_default(eval_options, N_OPTIONS(eval_options), p);
}

gptq_status gptq_eval_params_set(gptq_eval_params *p, const char *name, double value)
{
    const gptq_option *opt = gptq_eval_option(name);
    return opt ? gptq_option_set(opt, p, value) : no_option("eval", name);
}

gptq_status gptq_eval_params_check(const gptq_eval_params *p)
{
    return gptq_options_check(eval_options, N_OPTIONS(eval_options), p);
}

/* ---- generation ----------------------------------------------------------- */

static const gptq_option generate_options[] = {
    /* New tokens at most. A sequence never holds more positions than
     * gptqd's largest kv-context (1048576), where the decode loop stops
     * anyway (it lowers max-tokens to what the sequence has left). */
    {.name = "max-tokens", .type = GPTQ_OPTION_INT,
     .offset = offsetof(gptq_generate_params, max_tokens), .def = 128, .min = 1,
     .max = 1 << 20},
};

/* The sampler's (model/sample.h), also used alone by gptq_sampler_init. */
static const gptq_option sample_options[] = {
    /* Softmax temperature; 0 is greedy and deterministic, the default (as
     * Hugging Face's generate without do_sample, and as gptqd always read a
     * request that carries none). The distribution is near uniform long
     * before 100, which bounds it. */
    {.name = "temperature", .type = GPTQ_OPTION_FLOAT,
     .offset = offsetof(gptq_sample_params, temperature), .def = 0, .min = 0, .max = 100},
    /* Keep the k most likely tokens; 0 = off. 1048576 is above every
     * vocabulary in use (~256k at most); a k that large keeps them all. */
    {.name = "top-k", .type = GPTQ_OPTION_INT, .offset = offsetof(gptq_sample_params, top_k),
     .def = 0, .min = 0, .max = 1 << 20},
    /* Nucleus: the smallest set of most likely tokens holding p of the
     * probability; 1 = off, and 0 would keep nothing. */
    {.name = "top-p", .type = GPTQ_OPTION_FLOAT, .offset = offsetof(gptq_sample_params, top_p),
     .def = 1, .min = 0, .max = 1, .min_open = 1},
    /* Seed of the sampler's generator. */
    {.name = "seed", .type = GPTQ_OPTION_U64, .offset = offsetof(gptq_sample_params, seed),
     .def = 0},
};

void gptq_sample_params_default(gptq_sample_params *p)
{
    gptq_options_default(sample_options, N_OPTIONS(sample_options), p);
}

gptq_status gptq_sample_params_check(const gptq_sample_params *p)
{
    if (!p)
        return gptq_fail(GPTQ_ERR_ARG, "sampler: no parameters given");
    return gptq_options_check(sample_options, N_OPTIONS(sample_options), p);
}

const gptq_option *gptq_generate_option(const char *name)
{
    const gptq_option *opt = gptq_option_find(generate_options, N_OPTIONS(generate_options), name);
    return opt ? opt : gptq_option_find(sample_options, N_OPTIONS(sample_options), name);
}

void gptq_generate_params_default(gptq_generate_params *p)
{
    gptq_options_default(generate_options, N_OPTIONS(generate_options), p);
    gptq_sample_params_default(&p->sample);
}

gptq_status gptq_generate_params_set(gptq_generate_params *p, const char *name, double value)
{
    const gptq_option *opt = gptq_option_find(generate_options, N_OPTIONS(generate_options), name);
    if (opt)
        return gptq_option_set(opt, p, value);
    if ((opt = gptq_option_find(sample_options, N_OPTIONS(sample_options), name)))
        return gptq_option_set(opt, &p->sample, value);
    return no_option("generate", name);
}

gptq_status gptq_generate_params_check(const gptq_generate_params *p)
{
    gptq_status st = gptq_options_check(generate_options, N_OPTIONS(generate_options), p);
    return st ? st : gptq_sample_params_check(&p->sample);
}
