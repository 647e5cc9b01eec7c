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
    gptq_status st = be->sync ? be->sync(be) : GPTQ_OK;
    if (st != GPTQ_OK)
        return gptq_fail_context(st, "%s: cannot allocate %s memory", what, be->name);
    return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of %s memory", what, be->name);
}

void *gptq_upload_bytes(gptq_uploader *u, const void *src, size_t bytes, const char *what)
{
    if (!src || u->st != GPTQ_OK)
        return NULL;
    size_t n = bytes ? bytes : 1;
    void *p = u->alloc ? u->alloc(u->ctx, n) : u->be->alloc(u->be, n);
    if (!p) {
        u->st = u->alloc ? gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate %zu bytes for %s",
                                     u->be->name, bytes, what)
                         : gptq_backend_alloc_fail(u->be, "%zu bytes for %s", bytes, what);
        return NULL;
    }
    if ((u->st = u->be->upload(u->be, p, src, bytes)) != GPTQ_OK) {
        gptq_fail_context(u->st, "%s", what);
        if (!u->alloc)
            u->be->free(u->be, p);
        return NULL;
    }
    return p;
}
