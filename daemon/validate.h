/* daemon/validate.h: every field of a Request checked against its limits
 * before the daemon allocates or starts anything for it (docs/ARCHITECTURE.md
 * "Conventions"; after redis's networking.c). A failure names the field and the allowed range. */
#ifndef GPTQD_VALIDATE_H
#define GPTQD_VALIDATE_H

#include "gptq/error.h"
#include "gptqd.pb-c.h"

/* Limits on request fields. */
enum {
    GPTQD_NAME_MAX = 64,
    GPTQD_PATH_MAX = 4095,
    GPTQD_PROMPT_MAX = 256 * 1024,
    GPTQD_CLIENT_MAX = 63,
    GPTQD_MAX_TOKENS = 8192,
    GPTQD_DEFAULT_MAX_TOKENS = 128,
    GPTQD_MAX_TOP_K = 1 << 20,
    GPTQD_MAX_NSAMPLES = 8192,
    GPTQD_MAX_SEQLEN = 32768,
    GPTQD_MAX_CALIB_TOKENS = 4 << 20, /* nsamples * seqlen */
    GPTQD_MAX_BLOCK = 4096,
    GPTQD_MAX_SKIP = 256,
    GPTQD_MAX_WAIT_MS = 600000,
    GPTQD_MAX_PING = 64 * 1024,
};

/* A model name: [A-Za-z0-9._-]{1,64}, not "." or "..". */
gptq_status gptqd_validate_name(const char *field, const char *name);

/* Version, body, and the body's fields. */
gptq_status gptqd_validate_request(const Gptqd__Request *req);

#endif
