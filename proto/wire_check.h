/* proto/wire_check.h: the goto-fail macros (common/check.h) for the two
 * wire libraries, shared by the daemon and the client. */
#ifndef GPTQ_PROTO_WIRE_CHECK_H
#define GPTQ_PROTO_WIRE_CHECK_H

#include <nanomsg/nn.h>

#include "common/check.h"

/* nanomsg calls: -1 and nn_errno(). */
#define NN_TRY(expr, ...)                                                                         \
    do {                                                                                          \
        if ((expr) < 0) {                                                                         \
            int errno_ = nn_errno();                                                              \
            GPTQ_FAIL_WITH_(GPTQ_ERR_IO, nn_strerror(errno_), __VA_ARGS__);                       \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

/* protobuf-c unpack: NULL when the bytes are not a valid message. */
#define PB_TRY(expr, ...)                                                                         \
    do {                                                                                          \
        if ((expr) == NULL) {                                                                     \
            GPTQ_FAIL_WITH_(GPTQ_ERR_PROTOCOL, "malformed protobuf", __VA_ARGS__);                \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

#endif
