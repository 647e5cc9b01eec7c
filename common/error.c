/* common/error.c: gptq_status names and the per-thread error message. */
#include "gptq/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { ERRMSG_BYTES = 1024 };
static _Thread_local char errmsg[ERRMSG_BYTES];

static const char *const status_names[GPTQ_STATUS_COUNT] = {
    [GPTQ_OK] = "ok",
    [GPTQ_ERR_ARG] = "bad argument",
    [GPTQ_ERR_IO] = "i/o error",
    [GPTQ_ERR_FORMAT] = "bad format",
    [GPTQ_ERR_NOMEM] = "out of memory",
    [GPTQ_ERR_NUMERIC] = "numerical failure",
    [GPTQ_ERR_NOTFOUND] = "not found",
    [GPTQ_ERR_EXISTS] = "already exists",
    [GPTQ_ERR_BUSY] = "busy",
    [GPTQ_ERR_UNSUPPORTED] = "unsupported",
    [GPTQ_ERR_CANCELED] = "canceled",
    [GPTQ_ERR_PROTOCOL] = "protocol error",
    [GPTQ_ERR_PERMISSION] = "permission denied",
    [GPTQ_ERR_LIMIT] = "limit exceeded",
    [GPTQ_ERR_DEVICE] = "device error",
    [GPTQ_ERR_UNREACHABLE] = "daemon unreachable",
    [GPTQ_ERR_INTERNAL] = "internal error",
};

const char *gptq_status_name(gptq_status status)
{
    if ((unsigned)status >= GPTQ_STATUS_COUNT)
        return "unknown status";
    return status_names[status];
}

const char *gptq_errmsg(void) { return errmsg; }

void gptq_clear_error(void) { errmsg[0] = '\0'; }

gptq_status gptq_fail(gptq_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return status;
}

gptq_status gptq_fail_context(gptq_status status, const char *fmt, ...)
{
    char old[ERRMSG_BYTES];
    memcpy(old, errmsg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof errmsg)
        snprintf(errmsg + n, sizeof errmsg - (size_t)n, ": %s", old);
    return status;
}
