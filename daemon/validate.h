/* daemon/validate.h: every field of a Request checked against its limits
 * before the daemon allocates or starts anything for it (docs/ARCHITECTURE.md
 * "Conventions"; after redis's networking.c). A failure names the field and the allowed range.
 * The options of quantize, generate and eval jobs are the library's
 * (docs/ARCHITECTURE.md "Options"): gptqd reads them into the library's
 * structs and checks them with the library's functions, so a bad value gets
 * the library's message; here are only the limits that are gptqd's own
 * (message sizes, string lengths, the calibration tokens it holds). */
#ifndef GPTQD_VALIDATE_H
#define GPTQD_VALIDATE_H

#include "gptq/error.h"
#include "gptqd.pb-c.h"
#include "model/options.h"

/* Limits on request fields. */
enum {
    GPTQD_NAME_MAX = 64,
    GPTQD_PATH_MAX = 4095,
    GPTQD_PROMPT_MAX = 256 * 1024,
    GPTQD_CLIENT_MAX = 63,
    GPTQD_MAX_CALIB_TOKENS = 4 << 20, /* nsamples * seqlen: one layer's activations */
    GPTQD_MAX_SKIP = 256,
    GPTQD_MAX_WAIT_MS = 600000,
    GPTQD_MAX_PING = 64 * 1024,
};

/* A model name: [A-Za-z0-9._-]{1,64}, not "." or "..". */
gptq_status gptqd_validate_name(const char *field, const char *name);

/* Version, body, and the body's fields. */
gptq_status gptqd_validate_request(const Gptqd__Request *req);

/* A request's job options as the library's struct: its defaults, then each
 * field the request sets (0 or absent: unset), checked by the library.
 * *rtn: 1 for method "rtn" (round to nearest), which refuses the options
 * that only GPTQ's calibration reads. */
gptq_status gptqd_quantize_options(const Gptqd__QuantizeRequest *q, gptq_calib_options *o,
                                   int *rtn);
gptq_status gptqd_generate_options(const Gptqd__GenerateRequest *g, gptq_generate_params *p);
gptq_status gptqd_eval_options(const Gptqd__EvalRequest *e, gptq_eval_params *p);

#endif
