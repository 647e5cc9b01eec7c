/* daemon/server.c: raw REP socket and its worker threads. */
#include "daemon/server.h"

#include <grp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "proto/wire_check.h"
#include "daemon/log.h"

/* Workers wake this often to see whether the daemon is stopping. */
enum { WORKER_TICK_MS = 250, MAX_WORKERS = 64 };

struct gptqd_server {
    gptqd_ctx *ctx;
    int sock;
    atomic_int stopping;
    pthread_t workers[MAX_WORKERS];
    int n_workers;
};

static void serve_one(gptqd_server *server)
{
    void *body = NULL, *ctrl = NULL;
    struct nn_iovec iov = {&body, NN_MSG};
    struct nn_msghdr hdr = {&iov, 1, &ctrl, NN_MSG};
    int n = nn_recvmsg(server->sock, &hdr, 0);
    if (n < 0) {
        int e = nn_errno();
        if (e != ETIMEDOUT && e != EINTR && e != EAGAIN && e != EBADF && e != ETERM) {
            gptqd_log(LOG_WARNING, "nn_recvmsg: %s", nn_strerror(e));
            struct timespec pause = {0, 10 * 1000000L}; /* do not spin on a persistent error */
            nanosleep(&pause, NULL);
        }
        return;
    }
    size_t reply_len = 0;
    void *reply = gptqd_dispatch(server->ctx, body, (size_t)n, &reply_len);
    nn_freemsg(body);
    if (!reply) {
        if (ctrl)
            nn_freemsg(ctrl);
        return;
    }
    /* The control header routes the reply back to its requester. */
    struct nn_iovec out_iov = {&reply, NN_MSG};
    struct nn_msghdr out_hdr = {&out_iov, 1, &ctrl, NN_MSG};
    if (nn_sendmsg(server->sock, &out_hdr, 0) < 0) {
        /* The client may have gone away (vanished mid-poll): drop the reply. */
        gptqd_log(LOG_DEBUG, "nn_sendmsg: %s (reply dropped)", nn_strerror(nn_errno()));
        nn_freemsg(reply);
        if (ctrl)
            nn_freemsg(ctrl);
    }
}

static void *worker(void *arg)
{
    gptqd_server *server = arg;
    while (!atomic_load(&server->stopping))
        serve_one(server);
    return NULL;
}

static gptq_status set_socket_group(const char *path, const char *group)
{
    struct group *gr = getgrnam(group);
    if (!gr)
        return gptq_fail(GPTQ_ERR_ARG, "socket-group '%s': no such group", group);
    if (chown(path, (uid_t)-1, gr->gr_gid) < 0)
        return gptq_fail(GPTQ_ERR_PERMISSION, "socket %s: chown to group %s: %s", path, group,
                         strerror(errno));
    return GPTQ_OK;
}

gptq_status gptqd_server_start(gptqd_ctx *ctx, gptqd_server **out)
{
    gptq_status st = GPTQ_OK;
    const gptqd_conf *conf = ctx->conf;
    gptqd_server *server = calloc(1, sizeof *server);
    MEM_TRY(server, "server");
    server->ctx = ctx;
    server->sock = -1;
    NN_TRY(server->sock = nn_socket(AF_SP_RAW, NN_REP), "nn_socket(AF_SP_RAW, NN_REP)");
    int max = (int)conf->max_message_bytes;
    NN_TRY(nn_setsockopt(server->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof max),
           "NN_RCVMAXSIZE %d", max);
    int tick = WORKER_TICK_MS;
    NN_TRY(nn_setsockopt(server->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &tick, sizeof tick),
           "NN_RCVTIMEO");

    char url[4200];
    snprintf(url, sizeof url, "ipc://%s", conf->socket);
    /* umask around the bind: the socket file is born 0660, never briefly wider. */
    mode_t old_mask = umask(0117);
    int endpoint = nn_bind(server->sock, url);
    int bind_errno = nn_errno();
    umask(old_mask);
    if (endpoint < 0) {
        st = gptq_fail(GPTQ_ERR_IO, "socket %s: %s%s", conf->socket, nn_strerror(bind_errno),
                       bind_errno == EADDRINUSE ? " (another gptqd serves it: stop it or use "
                                                  "--socket)" : "");
        goto fail;
    }
    if (conf->socket_group && (st = set_socket_group(conf->socket, conf->socket_group)))
        goto fail;

    *out = server;
    return GPTQ_OK;
fail:
    if (server && server->sock >= 0)
        nn_close(server->sock);
    free(server);
    return st;
}

gptq_status gptqd_server_serve(gptqd_server *server)
{
    gptq_status st = GPTQ_OK;
    const gptqd_conf *conf = server->ctx->conf;
    for (int i = 0; i < conf->workers && i < MAX_WORKERS; i++) {
        PT_TRY(pthread_create(&server->workers[i], NULL, worker, server), "worker thread");
        server->n_workers++;
    }
    gptqd_log(LOG_INFO, "listening on %s (%d workers, messages up to %llu bytes)", conf->socket,
              server->n_workers, (unsigned long long)conf->max_message_bytes);
    return GPTQ_OK;
fail:
    return st; /* the workers started so far stop with gptqd_server_stop */
}

void gptqd_server_stop(gptqd_server *server)
{
    if (!server)
        return;
    atomic_store(&server->stopping, 1);
    for (int i = 0; i < server->n_workers; i++)
        pthread_join(server->workers[i], NULL);
    nn_close(server->sock);
    free(server);
}
