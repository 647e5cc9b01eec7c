/* daemon/daemon.h: what the request handlers share: the settings, the job
 * table and the registry (each with its own lock), and a few facts. */
#ifndef GPTQD_DAEMON_H
#define GPTQD_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/auth.h"
#include "daemon/conf.h"
#include "daemon/jobs.h"
#include "daemon/registry.h"

typedef struct gptqd_ctx {
    const gptqd_conf *conf;
    gptqd_jobs *jobs;
    gptqd_registry *registry;
    gptqd_auth *auth;  /* verified identities behind request sessions */
    double t_start; /* monotonic seconds */
} gptqd_ctx;

/* Handle one received message of `len` bytes; returns the packed Response in
 * a nanomsg message (nn_allocmsg) and its size in *reply_len, or NULL when
 * even an error reply cannot be built (out of memory: nothing is sent and
 * the client's REQ retries). Never fails on bad input. */
void *gptqd_dispatch(gptqd_ctx *ctx, const void *msg, size_t len, size_t *reply_len);

#endif
