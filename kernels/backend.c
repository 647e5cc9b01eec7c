/* kernels/backend.c: what kernels/backend.h provides beside the tables. */
#include "kernels/backend.h"

#include <stdarg.h>
#include <stdio.h>

gptq_status gptq_backend_alloc_fail(const gptq_backend *be, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    gptq_status st = be->sync ? be->sync() : GPTQ_OK;
    if (st != GPTQ_OK)
        return gptq_fail_context(st, "%s: cannot allocate %s memory", what, be->name);
    return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of %s memory", what, be->name);
}
