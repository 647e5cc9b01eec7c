/* common/check.h: the goto-fail macros (docs/ARCHITECTURE.md, "Conventions")
 * for libc, pthreads and allocations: each turns a failed call into a
 * gptq_status with a message naming what failed ("what: reason") and jumps
 * to the function's single cleanup label. Each expects `gptq_status st`
 * and a `fail:` label in scope.
 * The wire libraries (nanomsg, protobuf-c) have theirs in proto/wire_check.h. */
#ifndef GPTQ_COMMON_CHECK_H
#define GPTQ_COMMON_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gptq/error.h"

/* "what: reason" into the thread's message; st = status. */
#define GPTQ_FAIL_WITH_(status, reason, ...)                                                      \
    do {                                                                                          \
        char what_[512];                                                                          \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                               \
        st = gptq_fail((status), "%s: %s", what_, (reason));                                      \
    } while (0)

/* libc / POSIX calls that return -1 (or a negative value) and set errno. */
#define SYS_TRY(expr, status, ...)                                                                \
    do {                                                                                          \
        if ((expr) < 0) {                                                                         \
            int errno_ = errno;                                                                   \
            GPTQ_FAIL_WITH_((status), strerror(errno_), __VA_ARGS__);                             \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

/* pthread calls, which return the error number instead of setting errno. */
#define PT_TRY(expr, ...)                                                                         \
    do {                                                                                          \
        int rc_ = (expr);                                                                         \
        if (rc_ != 0) {                                                                           \
            GPTQ_FAIL_WITH_(GPTQ_ERR_INTERNAL, strerror(rc_), __VA_ARGS__);                       \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

/* allocations (malloc, calloc, strdup, protobuf-c's pack buffers): NULL. */
#define MEM_TRY(expr, ...)                                                                        \
    do {                                                                                          \
        if ((expr) == NULL) {                                                                     \
            st = gptq_fail(GPTQ_ERR_NOMEM, __VA_ARGS__);                                          \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

/* gptq_ calls of our own. */
#define TRY(expr)                                                                                 \
    do {                                                                                          \
        st = (expr);                                                                              \
        if (st != GPTQ_OK)                                                                        \
            goto fail;                                                                            \
    } while (0)

#endif
