/* common/sigbus.h: reading memory mapped from a file that may shrink.
 * A file truncated while it is mapped raises SIGBUS on the next read of the
 * lost pages, which would kill the whole daemon. Reads from a mapping of a
 * file someone else can write go through gptq_sigbus_guard, which turns
 * that fault into an error for the one load that made it. */
#ifndef GPTQ_COMMON_SIGBUS_H
#define GPTQ_COMMON_SIGBUS_H

#include <stddef.h>

#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* memcpy(dst, src, n) where src is mapped from a file; a SIGBUS on the way
 * gives GPTQ_ERR_IO ("<what>: the file shrank while being read (truncated
 * under the daemon?)") instead of killing the process. The handler is
 * installed on first use; a SIGBUS outside a guarded copy keeps its default
 * action. Do nothing between the copy's start and end that cannot be
 * abandoned: it is left with siglongjmp. */
gptq_status gptq_guarded_copy(void *dst, const void *src, size_t n, const char *what);

/* The same for a conversion: fn(ctx) runs guarded; it must only read the
 * mapping and write memory allocated before the call. */
gptq_status gptq_guarded_call(void (*fn)(void *ctx), void *ctx, const char *what);

#ifdef __cplusplus
}
#endif
#endif
