/* daemon/auth.c: session tokens bound to SO_PEERCRED (auth.h). */
#include "daemon/auth.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/log.h"
#include "proto/auth.h"

enum { MAX_SESSIONS = 4096, ACCEPT_TICK_MS = 250 };

typedef struct session {
    uint8_t token[GPTQD_TOKEN_BYTES];
    pid_t pid;
    uid_t uid;
    unsigned long long start; /* the process's start time (/proc/PID/stat field 22) */
    int used;
} session;

struct gptqd_auth {
    int fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pthread_t thread;
    atomic_int stopping;
    pthread_mutex_t lock;
    session sessions[MAX_SESSIONS];
    unsigned next; /* round-robin eviction when every slot holds a live process */
};

/* Start time of pid in clock ticks since boot, 0 if it does not run. */
static unsigned long long start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long t = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                            "%*d %*d %*d %llu", &t) != 1)
        return 0;
    return t;
}

static int alive(const session *s)
{
    return s->used && start_time(s->pid) == s->start;
}

static void serve_one(gptqd_auth *a, int conn)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0)
        return;
    session s = {.pid = cred.pid, .uid = cred.uid, .start = start_time(cred.pid), .used = 1};
    if (!s.start || getrandom(s.token, sizeof s.token, 0) != (ssize_t)sizeof s.token)
        return;
    pthread_mutex_lock(&a->lock);
    int slot = -1;
    for (int i = 0; i < MAX_SESSIONS && slot < 0; i++)
        if (!a->sessions[i].used || !alive(&a->sessions[i]))
            slot = i;
    if (slot < 0) { /* every slot a live process: the oldest-issued goes */
        slot = (int)(a->next++ % MAX_SESSIONS);
        gptqd_log(LOG_NOTICE, "auth: %d live sessions: pid %d's session ends for pid %d's",
                  MAX_SESSIONS, (int)a->sessions[slot].pid, (int)cred.pid);
    }
    a->sessions[slot] = s;
    pthread_mutex_unlock(&a->lock);
    /* 16 bytes into an empty socket buffer: never blocks */
    if (send(conn, s.token, sizeof s.token, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof s.token)
        gptqd_log(LOG_DEBUG, "auth: pid %d went away before its token", (int)cred.pid);
}

static void *accept_loop(void *arg)
{
    gptqd_auth *a = arg;
    while (!atomic_load(&a->stopping)) {
        struct pollfd p = {.fd = a->fd, .events = POLLIN};
        if (poll(&p, 1, ACCEPT_TICK_MS) <= 0)
            continue;
        int conn = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0)
            continue;
        serve_one(a, conn);
        close(conn);
    }
    return NULL;
}

gptq_status gptqd_auth_start(const gptqd_conf *conf, gptqd_auth **out)
{
    *out = NULL;
    gptqd_auth *a = calloc(1, sizeof *a);
    if (!a)
        return gptq_fail(GPTQ_ERR_NOMEM, "auth: out of memory");
    a->fd = -1;
    pthread_mutex_init(&a->lock, NULL);
    gptq_status st = GPTQ_OK;
    if ((size_t)snprintf(a->path, sizeof a->path, "%s%s", conf->socket, GPTQD_AUTH_SUFFIX) >=
        sizeof a->path) {
        st = gptq_fail(GPTQ_ERR_LIMIT, "socket %s: with '%s' it is longer than %zu bytes: use a "
                       "shorter --socket path", conf->socket, GPTQD_AUTH_SUFFIX,
                       sizeof a->path - 1);
        goto fail;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, a->path, sizeof a->path);
    a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (a->fd < 0) {
        st = gptq_fail(GPTQ_ERR_IO, "auth socket: %s", strerror(errno));
        goto fail;
    }
    /* a stale file of a dead daemon (the main socket's bind already proved
     * no live gptqd serves this path) */
    unlink(a->path);
    mode_t old = umask(0117);
    int rc = bind(a->fd, (struct sockaddr *)&addr, sizeof addr);
    int err = errno;
    umask(old);
    if (rc != 0 || listen(a->fd, 64) != 0) {
        st = gptq_fail(GPTQ_ERR_IO, "auth socket %s: %s", a->path, strerror(rc ? err : errno));
        goto fail;
    }
    if (conf->socket_group) {
        struct group *gr = getgrnam(conf->socket_group);
        if (!gr || chown(a->path, (uid_t)-1, gr->gr_gid) != 0) {
            st = gptq_fail(GPTQ_ERR_PERMISSION, "auth socket %s: group %s: %s", a->path,
                           conf->socket_group, gr ? strerror(errno) : "no such group");
            goto fail;
        }
    }
    if ((rc = pthread_create(&a->thread, NULL, accept_loop, a)) != 0) {
        st = gptq_fail(GPTQ_ERR_INTERNAL, "auth thread: %s", strerror(rc));
        goto fail;
    }
    *out = a;
    return GPTQ_OK;
fail:
    if (a->fd >= 0) {
        close(a->fd);
        unlink(a->path);
    }
    pthread_mutex_destroy(&a->lock);
    free(a);
    return st;
}

void gptqd_auth_stop(gptqd_auth *a)
{
    if (!a)
        return;
    atomic_store(&a->stopping, 1);
    pthread_join(a->thread, NULL);
    close(a->fd);
    unlink(a->path);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

void gptqd_auth_caller(gptqd_auth *a, const uint8_t *token, size_t len, const char *name,
                       gptqd_caller *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name && name[0] ? name : "client");
    if (!a || len != GPTQD_TOKEN_BYTES)
        return;
    pthread_mutex_lock(&a->lock);
    for (int i = 0; i < MAX_SESSIONS; i++) {
        session *s = &a->sessions[i];
        if (!s->used || memcmp(s->token, token, GPTQD_TOKEN_BYTES) != 0)
            continue;
        if (alive(s)) {
            out->known = 1;
            out->uid = s->uid;
            out->pid = s->pid;
        } else {
            s->used = 0; /* its process is gone: the token is void */
        }
        break;
    }
    pthread_mutex_unlock(&a->lock);
}

int gptqd_auth_may_act_for(const gptqd_caller *caller, uid_t owner)
{
    return caller->known && (caller->uid == owner || caller->uid == 0 || caller->uid == geteuid());
}
