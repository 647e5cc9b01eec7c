/* daemon/auth.h: verified client identities (proto/auth.h): the "<socket>.auth"
 * listener and the table of session tokens it hands out, each bound to the
 * pid and uid the kernel reported for its connection. A session ends with
 * its process (the pid's start time is kept, so a recycled pid is not taken
 * for it). */
#ifndef GPTQD_AUTH_H
#define GPTQD_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/conf.h"
#include "gptq/error.h"

typedef struct gptqd_auth gptqd_auth;

/* Who sent a request. known == 0: no valid session (anonymous). */
typedef struct gptqd_caller {
    int known;
    uid_t uid;
    pid_t pid;
    char name[64]; /* the client's own label, for logs and `jobs` */
} gptqd_caller;

/* Bind "<socket>.auth" (mode 0660, the socket's group) and serve it from a
 * thread. Errors: GPTQ_ERR_IO (bind: named), GPTQ_ERR_LIMIT (path too long). */
gptq_status gptqd_auth_start(const gptqd_conf *conf, gptqd_auth **out);
/* Stop serving, unlink the socket file, free the table. NULL is fine. */
void gptqd_auth_stop(gptqd_auth *a);

/* The caller behind `token` (len bytes; any length is accepted and simply
 * not found when wrong); name is copied into the result. */
void gptqd_auth_caller(gptqd_auth *a, const uint8_t *token, size_t len, const char *name,
                       gptqd_caller *out);

/* May `caller` act on what `owner` started (cancel its job, unload its
 * model)? The same uid, root, or the daemon's own user. */
int gptqd_auth_may_act_for(const gptqd_caller *caller, uid_t owner);

#endif
