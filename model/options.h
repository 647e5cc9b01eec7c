/* model/options.h: the options of quantize, eval and generate jobs, each
 * defined once (docs/ARCHITECTURE.md "Options"): its name as users see it
 * (gptqctl's --NAME), its default, its bounds and so the one message a bad
 * value gets. The tables are in model/options.c (calibration, evaluation,
 * generation) and quant/config.c (the quantizer's). gptqd and gptqctl set
 * options by name through these functions, so that the library, the daemon
 * and the command line accept and refuse alike, with the same words.
 *
 * The setters take the value as a double (every int and float option's
 * values are exact in one) and store it only when it is legal; a seed takes
 * every uint64_t and is assigned directly. */
#ifndef GPTQ_MODEL_OPTIONS_H
#define GPTQ_MODEL_OPTIONS_H

#include "common/options.h"
#include "model/calib.h"
#include "model/sample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- calibration (a quantize job): gptq_calib_options, model/calib.h ---- */

/* The option `name` of a quantize job: nsamples, seqlen, seed, batch, or
 * one of its quantizer's (bits, group-size, damp, block-size); NULL if none. */
const gptq_option *gptq_calib_option(const char *name);
/* Set option `name` of o (checked; o unchanged on failure). Defaults and
 * the check of the whole struct: gptq_calib_options_default and
 * gptq_calib_options_check (model/calib.h). */
gptq_status gptq_calib_options_set(gptq_calib_options *o, const char *name, double value);

/* ---- evaluation (an eval job) ---- */

typedef struct gptq_eval_params {
    int seqlen;      /* window length in tokens */
    int max_windows; /* at most this many windows; 0: all */
} gptq_eval_params;

void gptq_eval_params_default(gptq_eval_params *p);
const gptq_option *gptq_eval_option(const char *name);
gptq_status gptq_eval_params_set(gptq_eval_params *p, const char *name, double value);
gptq_status gptq_eval_params_check(const gptq_eval_params *p);

/* ---- generation (a generate job) ---- */

typedef struct gptq_generate_params {
    int max_tokens;            /* new tokens at most */
    gptq_sample_params sample; /* temperature, top-k, top-p, seed */
} gptq_generate_params;

void gptq_generate_params_default(gptq_generate_params *p);
const gptq_option *gptq_generate_option(const char *name);
gptq_status gptq_generate_params_set(gptq_generate_params *p, const char *name, double value);
gptq_status gptq_generate_params_check(const gptq_generate_params *p);

#ifdef __cplusplus
}
#endif
#endif
