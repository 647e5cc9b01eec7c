/* client/internal.h: what the files of libgptqclient share: the handle and
 * the one request/reply round trip every call goes through. */
#ifndef GPTQ_CLIENT_INTERNAL_H
#define GPTQ_CLIENT_INTERNAL_H

#include "gptq/client.h"
#include "gptqd.pb-c.h"
#include "proto/auth.h"

/* Internal to the library: not exported (see libgptqclient.map). */
#define CLIENT_INTERNAL __attribute__((visibility("hidden")))

enum {
    CLIENT_ERRMSG_BYTES = 1024,
    /* sun_path holds 108 bytes including the NUL. */
    CLIENT_SOCKET_PATH_MAX = 107,
    /* Replies up to this size are accepted (nanomsg's default of 1 MiB
     * silently drops larger ones, which looks like a timeout). A Map reply
     * of a big model's tensor table is the largest we expect. */
    CLIENT_RCVMAXSIZE = 64 << 20,
    CLIENT_TIMEOUT_MS = 30000,
    /* Far above any reply time, so nanomsg's REQ never re-sends a slow
     * request as a duplicate (its default is 60 s). */
    CLIENT_RESEND_IVL_MS = 600000,
};

struct gptq_client {
    int sock;
    int timeout_ms;
    char path[CLIENT_SOCKET_PATH_MAX + 1];
    char *name;
    uint8_t session[GPTQD_TOKEN_BYTES]; /* from <socket>.auth (proto/auth.h) */
    int has_session;
    char errmsg[CLIENT_ERRMSG_BYTES];
};

/* Send req (version, client name and pid filled in here) and receive the
 * reply, waiting up to the handle's timeout plus extra_ms. A reply with a
 * nonzero status becomes that status with the daemon's message; a reply
 * whose body is not `expect` is GPTQ_ERR_PROTOCOL. On success *resp is the
 * unpacked reply, owned by the caller (gptqd__response__free_unpacked). */
CLIENT_INTERNAL gptq_status gptq_client_rpc_(gptq_client *c, Gptqd__Request *req, Gptqd__Response__BodyCase expect,
                             int extra_ms, Gptqd__Response **resp);

/* Record st's message (the thread's gptq_errmsg) on the handle and return
 * st; every public call ends with it. */
CLIENT_INTERNAL gptq_status gptq_client_finish_(gptq_client *c, gptq_status st);

/* strdup of a wire string (NULL or missing: ""); NULL only on no memory. */
CLIENT_INTERNAL char *gptq_client_strdup_(const char *s);

/* A wire JobState as ours (unknown values read as RUNNING). */
CLIENT_INTERNAL gptq_job_state gptq_client_state_from_wire_(int state);

/* Result of a finished job, converted from the wire; NULL on no memory. */
CLIENT_INTERNAL gptq_client_result *gptq_client_result_from_wire_(const Gptqd__JobResult *r);

#endif
