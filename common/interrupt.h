/* common/interrupt.h: stopping long work from outside. A thread that runs
 * work someone may want stopped (a daemon job: cancel, SIGTERM) registers a
 * check; the long loops of the libraries (each layer of a forward pass, each
 * GPTQ block, each calibration step, each tensor of a load) call
 * gptq_interrupt_check, which returns GPTQ_ERR_CANCELED once the check says
 * so. Threads that registered nothing are never interrupted. */
#ifndef GPTQ_COMMON_INTERRUPT_H
#define GPTQ_COMMON_INTERRUPT_H

#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* fn(ctx) != 0 means: stop. For the calling thread; fn NULL clears it. */
void gptq_interrupt_set(int (*fn)(void *ctx), void *ctx);

/* GPTQ_OK, or GPTQ_ERR_CANCELED with the message "canceled (<where>)" when
 * the calling thread's check asks to stop. Cheap: a call through one
 * pointer; call it at least every ~100 ms of work. */
gptq_status gptq_interrupt_check(const char *where);

#ifdef __cplusplus
}
#endif
#endif
