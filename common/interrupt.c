/* common/interrupt.c: see interrupt.h. */
#include "common/interrupt.h"

#include <stddef.h>

static _Thread_local int (*check_fn)(void *ctx);
static _Thread_local void *check_ctx;

void gptq_interrupt_set(int (*fn)(void *ctx), void *ctx)
{
    check_fn = fn;
    check_ctx = ctx;
}

gptq_status gptq_interrupt_check(const char *where)
{
    if (check_fn && check_fn(check_ctx))
        return gptq_fail(GPTQ_ERR_CANCELED, "canceled (%s)", where);
    return GPTQ_OK;
}
