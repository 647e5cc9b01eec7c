/* daemon/server.h: the nanomsg side: a raw REP socket (AF_SP_RAW, NN_REP) on
 * ipc://PATH, created 0660, with NN_RCVMAXSIZE at the configured maximum,
 * served by a few worker threads so that a slow request never holds up the
 * others (docs/ARCHITECTURE.md "Protocol and jobs"). */
#ifndef GPTQD_SERVER_H
#define GPTQD_SERVER_H

#include "daemon/daemon.h"
#include "gptq/error.h"

typedef struct gptqd_server gptqd_server;

/* Bind the socket (0660, group set). Requests wait in it until
 * gptqd_server_serve. Errors: GPTQ_ERR_IO naming the socket path
 * (EADDRINUSE: another gptqd serves it). */
gptq_status gptqd_server_start(gptqd_ctx *ctx, gptqd_server **out);

/* Start the worker threads. */
gptq_status gptqd_server_serve(gptqd_server *server);

/* Stop the workers (they finish the request at hand), close the socket
 * (nanomsg unlinks the file). */
void gptqd_server_stop(gptqd_server *server);

#endif
