/* client/client.c: the connection to gptqd: default socket path, connect
 * (with a fast check that someone listens), and the one request/reply round
 * trip every call goes through. */
#include "client/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "proto/wire_check.h"

gptq_status gptq_client_default_socket(char *buf, size_t cap)
{
    const char *env = getenv("GPTQD_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (env && env[0])
        n = snprintf(buf, cap, "%s", env);
    else if (geteuid() != 0 && xdg && xdg[0])
        n = snprintf(buf, cap, "%s/gptqd.sock", xdg);
    else
        n = snprintf(buf, cap, "/run/gptqd/gptqd.sock");
    if (n < 0 || (size_t)n >= cap || n > CLIENT_SOCKET_PATH_MAX)
        return gptq_fail(GPTQ_ERR_LIMIT, "socket path '%s...' is longer than %d bytes: "
                         "set GPTQD_SOCKET to a shorter path", env && env[0] ? env : xdg,
                         CLIENT_SOCKET_PATH_MAX);
    return GPTQ_OK;
}

/* nanomsg's ipc connect never fails for a missing socket: it retries in the
 * background and the first request would only time out. A plain connect()
 * tells "no file", "stale file of a dead daemon" and "no permission" apart
 * at once, with a message that says what to do. */
static gptq_status probe_socket(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return gptq_fail(GPTQ_ERR_IO, "socket(AF_UNIX): %s", strerror(errno));
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    int err = errno;
    close(fd);
    if (rc == 0)
        return GPTQ_OK;
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        return gptq_fail(GPTQ_ERR_UNREACHABLE,
                         "no gptqd socket at %s: start gptqd, or point --socket / "
                         "GPTQD_SOCKET at a running one", path);
    case ECONNREFUSED:
        return gptq_fail(GPTQ_ERR_UNREACHABLE,
                         "nobody listens on %s (the socket of a gptqd that stopped?): "
                         "start gptqd", path);
    case EACCES:
    case EPERM:
        return gptq_fail(GPTQ_ERR_UNREACHABLE,
                         "cannot open %s: %s (the system daemon's socket is for group "
                         "gptq: add yourself to it)", path, strerror(err));
    default:
        return gptq_fail(GPTQ_ERR_UNREACHABLE, "cannot connect to %s: %s", path,
                         strerror(err));
    }
}

/* The session token from <socket>.auth: the daemon reads this connection's
 * kernel credentials (SO_PEERCRED) and answers with a token bound to them.
 * Without one (a daemon that does not offer it) the client goes on
 * anonymous: requests that need an identity then say so. */
static void authenticate(gptq_client *c)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if ((size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s%s", c->path,
                         GPTQD_AUTH_SUFFIX) >= sizeof addr.sun_path)
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t got = 0;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
        while (got < sizeof c->session) {
            ssize_t n = recv(fd, c->session + got, sizeof c->session - got, 0);
            if (n <= 0 && !(n < 0 && errno == EINTR))
                break;
            if (n > 0)
                got += (size_t)n;
        }
    close(fd);
    c->has_session = got == sizeof c->session;
}

gptq_status gptq_client_connect(const char *socket_path, gptq_client **out)
{
    gptq_status st = GPTQ_OK;
    gptq_client *c = NULL;
    char url[CLIENT_SOCKET_PATH_MAX + 16];
    *out = NULL;
    MEM_TRY(c = calloc(1, sizeof *c), "client handle");
    c->sock = -1;
    c->timeout_ms = CLIENT_TIMEOUT_MS;
    if (socket_path) {
        if (!socket_path[0] || strlen(socket_path) > CLIENT_SOCKET_PATH_MAX) {
            st = gptq_fail(socket_path[0] ? GPTQ_ERR_LIMIT : GPTQ_ERR_ARG,
                           "socket path '%s': must be 1 to %d bytes", socket_path,
                           CLIENT_SOCKET_PATH_MAX);
            goto fail;
        }
        snprintf(c->path, sizeof c->path, "%s", socket_path);
    } else {
        TRY(gptq_client_default_socket(c->path, sizeof c->path));
    }
    MEM_TRY(c->name = strdup(program_invocation_short_name), "client name");
    TRY(probe_socket(c->path));
    authenticate(c);

    int resend = CLIENT_RESEND_IVL_MS, maxsize = CLIENT_RCVMAXSIZE, linger = 0;
    NN_TRY(c->sock = nn_socket(AF_SP, NN_REQ), "nn_socket(NN_REQ)");
    NN_TRY(nn_setsockopt(c->sock, NN_REQ, NN_REQ_RESEND_IVL, &resend, sizeof resend),
           "NN_REQ_RESEND_IVL");
    NN_TRY(nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsize, sizeof maxsize),
           "NN_RCVMAXSIZE");
    NN_TRY(nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof linger),
           "NN_LINGER");
    snprintf(url, sizeof url, "ipc://%s", c->path);
    NN_TRY(nn_connect(c->sock, url), "nn_connect(%s)", url);
    *out = c;
    return GPTQ_OK;
fail:
    gptq_client_close(c);
    return st;
}

void gptq_client_close(gptq_client *c)
{
    if (!c)
        return;
    if (c->sock >= 0)
        nn_close(c->sock);
    free(c->name);
    free(c);
}

const char *gptq_client_errmsg(const gptq_client *c) { return c ? c->errmsg : gptq_errmsg(); }

const char *gptq_client_socket(const gptq_client *c) { return c->path; }

void gptq_client_set_timeout(gptq_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : CLIENT_TIMEOUT_MS;
}

gptq_status gptq_client_set_name(gptq_client *c, const char *name)
{
    char *copy = strdup(name ? name : "");
    if (!copy)
        return gptq_client_finish_(c, gptq_fail(GPTQ_ERR_NOMEM, "client name"));
    free(c->name);
    c->name = copy;
    return gptq_client_finish_(c, GPTQ_OK);
}

gptq_status gptq_client_finish_(gptq_client *c, gptq_status st)
{
    if (st == GPTQ_OK)
        c->errmsg[0] = '\0';
    else
        snprintf(c->errmsg, sizeof c->errmsg, "%s", gptq_errmsg());
    return st;
}

char *gptq_client_strdup_(const char *s) { return strdup(s ? s : ""); }

static const char *body_name(Gptqd__Response__BodyCase body)
{
    switch (body) {
    case GPTQD__RESPONSE__BODY_PONG: return "Pong";
    case GPTQD__RESPONSE__BODY_STATUS_REPLY: return "StatusReply";
    case GPTQD__RESPONSE__BODY_LIST: return "ListReply";
    case GPTQD__RESPONSE__BODY_JOB: return "JobStarted";
    case GPTQD__RESPONSE__BODY_POLL: return "PollReply";
    case GPTQD__RESPONSE__BODY_MAP: return "MapReply";
    case GPTQD__RESPONSE__BODY_JOBS: return "JobsReply";
    case GPTQD__RESPONSE__BODY_DONE: return "Done";
    default: return "no body";
    }
}

/* Receive one reply. EINTR (a signal, e.g. the CLI's Ctrl-C handler) is not
 * a failure: the reply is still on its way, so wait again. */
static gptq_status recv_reply(gptq_client *c, int timeout_ms, void **buf, int *bytes)
{
    gptq_status st = GPTQ_OK;
    NN_TRY(nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout_ms, sizeof timeout_ms),
           "NN_RCVTIMEO");
    for (;;) {
        int n = nn_recv(c->sock, buf, NN_MSG, 0);
        if (n >= 0) {
            *bytes = n;
            return GPTQ_OK;
        }
        int err = nn_errno();
        if (err == EINTR)
            continue;
        if (err == ETIMEDOUT || err == EAGAIN)
            return gptq_fail(GPTQ_ERR_UNREACHABLE,
                             "no reply from gptqd at %s within %d ms: is it running and "
                             "not stuck? (see its log)", c->path, timeout_ms);
        if (err == ETERM || err == EBADF)
            return gptq_fail(GPTQ_ERR_UNREACHABLE, "connection to %s closed", c->path);
        GPTQ_FAIL_WITH_(GPTQ_ERR_IO, nn_strerror(err), "nn_recv from %s", c->path);
        return st;
    }
fail:
    return st;
}

gptq_status gptq_client_rpc_(gptq_client *c, Gptqd__Request *req, Gptqd__Response__BodyCase expect,
                             int extra_ms, Gptqd__Response **resp)
{
    gptq_status st = GPTQ_OK;
    void *msg = NULL, *reply = NULL;
    Gptqd__Response *r = NULL;
    int reply_bytes = 0;
    *resp = NULL;

    req->version = GPTQD__VERSION__PROTOCOL_VERSION;
    req->client = c->name;
    req->client_pid = (uint32_t)getpid();
    if (c->has_session) {
        req->session.data = c->session;
        req->session.len = sizeof c->session;
    }
    size_t bytes = gptqd__request__get_packed_size(req);
    if (bytes > (size_t)CLIENT_RCVMAXSIZE) {
        st = gptq_fail(GPTQ_ERR_LIMIT, "request of %zu bytes: larger than %d bytes", bytes,
                       CLIENT_RCVMAXSIZE);
        goto fail;
    }
    MEM_TRY(msg = nn_allocmsg(bytes ? bytes : 1, 0), "nn_allocmsg(%zu)", bytes);
    gptqd__request__pack(req, msg);

    int send_timeout = c->timeout_ms;
    NN_TRY(nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_SNDTIMEO, &send_timeout, sizeof send_timeout),
           "NN_SNDTIMEO");
    for (;;) {
        if (nn_send(c->sock, &msg, NN_MSG, 0) >= 0) {
            msg = NULL; /* nanomsg owns it now */
            break;
        }
        int err = nn_errno();
        if (err == EINTR)
            continue;
        if (err == ETIMEDOUT || err == EAGAIN) {
            st = gptq_fail(GPTQ_ERR_UNREACHABLE, "cannot send to gptqd at %s within %d ms",
                           c->path, send_timeout);
            goto fail;
        }
        GPTQ_FAIL_WITH_(GPTQ_ERR_IO, nn_strerror(err), "nn_send to %s", c->path);
        goto fail;
    }

    TRY(recv_reply(c, c->timeout_ms + extra_ms, &reply, &reply_bytes));
    PB_TRY(r = gptqd__response__unpack(NULL, (size_t)reply_bytes, reply),
           "reply of %d bytes from %s", reply_bytes, c->path);
    if (r->version != GPTQD__VERSION__PROTOCOL_VERSION) {
        st = gptq_fail(GPTQ_ERR_PROTOCOL,
                       "gptqd at %s speaks protocol version %u, this client %d: use a "
                       "gptqctl and libgptqclient of the daemon's release",
                       c->path, r->version, GPTQD__VERSION__PROTOCOL_VERSION);
        goto fail;
    }
    if (r->status != GPTQ_OK) {
        st = r->status > 0 && r->status < GPTQ_STATUS_COUNT ? (gptq_status)r->status
                                                             : GPTQ_ERR_INTERNAL;
        gptq_fail(st, "%s", r->message && r->message[0] ? r->message : gptq_status_name(st));
        goto fail;
    }
    if (r->body_case != expect) {
        st = gptq_fail(GPTQ_ERR_PROTOCOL, "gptqd answered with %s where %s was due",
                       body_name(r->body_case), body_name(expect));
        goto fail;
    }
    nn_freemsg(reply);
    *resp = r;
    return GPTQ_OK;
fail:
    if (msg)
        nn_freemsg(msg);
    if (reply)
        nn_freemsg(reply);
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return st;
}
