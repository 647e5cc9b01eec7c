/* tests/test_daemon_harness.c: start/stop gptqd, raw nanomsg calls. */
#include "test_daemon_harness.h"

#include "proto/auth.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

enum { MAX_DAEMONS = 8 };
static td_daemon *running[MAX_DAEMONS];

double td_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void kill_all(void)
{
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (running[i])
            td_stop(running[i]);
}

static void remember(td_daemon *d, int add)
{
    static int registered;
    if (!registered) {
        atexit(kill_all);
        registered = 1;
    }
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (add && !running[i]) {
            running[i] = d;
            return;
        }
        if (!add && running[i] == d)
            running[i] = NULL;
    }
}

/* This process's session with the daemon last connected to (proto/auth.h);
 * every request carries it. */
static uint8_t session[GPTQD_TOKEN_BYTES];
static int has_session;

void td_request_init(Gptqd__Request *req)
{
    gptqd__request__init(req);
    req->version = GPTQD__VERSION__PROTOCOL_VERSION;
    req->client = "test";
    req->client_pid = (uint32_t)getpid();
    if (has_session) {
        req->session.data = session;
        req->session.len = sizeof session;
    }
}

int td_authenticate(const td_daemon *d)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    const char *path = d->sock[0] ? d->sock
                       : strncmp(d->url, "ipc://", 6) == 0 ? d->url + 6 : d->url;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s%s", path, GPTQD_AUTH_SUFFIX);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t got = 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
        while (got < sizeof session) {
            ssize_t n = recv(fd, session + got, sizeof session - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
    if (fd >= 0)
        close(fd);
    has_session = got == sizeof session;
    return has_session ? 0 : -1;
}

void td_forget_session(void)
{
    has_session = 0;
}

int td_connect(const td_daemon *d, int timeout_ms)
{
    td_authenticate(d); /* this process, this daemon */
    int s = nn_socket(AF_SP, NN_REQ);
    if (s < 0)
        return -1;
    int max = -1;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof max);
    nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    int resend = 600000; /* never resend a slow request as a duplicate */
    nn_setsockopt(s, NN_REQ, NN_REQ_RESEND_IVL, &resend, sizeof resend);
    if (nn_connect(s, d->url) < 0) {
        nn_close(s);
        return -1;
    }
    return s;
}

Gptqd__Response *td_call_raw(int sock, const void *bytes, size_t len)
{
    if (nn_send(sock, bytes, len, 0) < 0)
        return NULL;
    void *buf = NULL;
    int n = nn_recv(sock, &buf, NN_MSG, 0);
    if (n < 0)
        return NULL;
    Gptqd__Response *resp = gptqd__response__unpack(NULL, (size_t)n, buf);
    nn_freemsg(buf);
    return resp;
}

Gptqd__Response *td_call(int sock, const Gptqd__Request *req)
{
    size_t n = gptqd__request__get_packed_size(req);
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    gptqd__request__pack(req, buf);
    Gptqd__Response *resp = td_call_raw(sock, buf, n);
    free(buf);
    return resp;
}

Gptqd__Response *td_wait_job(int sock, uint64_t job, double timeout_s)
{
    double end = td_now() + timeout_s;
    uint64_t since = 0;
    while (td_now() < end) {
        Gptqd__Request req;
        Gptqd__PollRequest poll = GPTQD__POLL_REQUEST__INIT;
        td_request_init(&req);
        poll.job = job;
        poll.since = since;
        poll.wait_ms = 500;
        req.body_case = GPTQD__REQUEST__BODY_POLL;
        req.poll = &poll;
        Gptqd__Response *resp = td_call(sock, &req);
        if (!resp || resp->status != 0 || resp->body_case != GPTQD__RESPONSE__BODY_POLL)
            return resp;
        since = resp->poll->next;
        Gptqd__JobState s = resp->poll->state;
        if (s != GPTQD__JOB_STATE__JOB_QUEUED && s != GPTQD__JOB_STATE__JOB_RUNNING)
            return resp;
        gptqd__response__free_unpacked(resp, NULL);
    }
    return NULL;
}

static int ping_ok(const td_daemon *d)
{
    int s = td_connect(d, 500);
    if (s < 0)
        return 0;
    Gptqd__Request req;
    Gptqd__Ping ping = GPTQD__PING__INIT;
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_PING;
    req.ping = &ping;
    Gptqd__Response *resp = td_call(s, &req);
    int ok = resp && resp->status == 0 && resp->body_case == GPTQD__RESPONSE__BODY_PONG;
    if (resp)
        gptqd__response__free_unpacked(resp, NULL);
    nn_close(s);
    return ok;
}

int td_start(td_daemon *d, const char *gptqd, const char *const *args)
{
    memset(d, 0, sizeof *d);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(d->dir, sizeof d->dir, "%s/gptqd-test-XXXXXX", tmp);
    if (!mkdtemp(d->dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", d->dir, strerror(errno));
        return -1;
    }
    snprintf(d->sock, sizeof d->sock, "%s/gptqd.sock", d->dir);
    snprintf(d->url, sizeof d->url, "ipc://%s", d->sock);
    const char *argv[64];
    int argc = 0;
    argv[argc++] = gptqd;
    argv[argc++] = "--socket";
    argv[argc++] = d->sock;
    int device = 0;
    for (int i = 0; args && args[i] && argc < 60; i++) {
        device |= strncmp(args[i], "--device", 8) == 0;
        argv[argc++] = args[i];
    }
    /* The daemon tests check the CPU path (shm arenas, host memory) unless
     * they name a device: on a machine with a GPU, auto would pick it. */
    if (!device) {
        argv[argc++] = "--device";
        argv[argc++] = "cpu";
    }
    argv[argc] = NULL;
    pid_t parent = getpid();
    d->pid = fork();
    if (d->pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        return -1;
    }
    if (d->pid == 0) {
        /* The daemon dies with the test, whatever happens to the test. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        execv(gptqd, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", gptqd, strerror(errno));
        _exit(127);
    }
    remember(d, 1);
    for (double end = td_now() + 20; td_now() < end;) {
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            fprintf(stderr, "gptqd exited during start (status 0x%x)\n", status);
            d->pid = 0;
            remember(d, 0);
            return -1;
        }
        if (access(d->sock, F_OK) == 0 && ping_ok(d))
            return 0;
        usleep(20000);
    }
    fprintf(stderr, "gptqd did not answer a Ping within 20 s\n");
    td_stop(d);
    return -1;
}

int td_stop(td_daemon *d)
{
    int result = -1;
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int status = 0;
        double end = td_now() + 10;
        pid_t w = 0;
        while ((w = waitpid(d->pid, &status, WNOHANG)) == 0 && td_now() < end)
            usleep(10000);
        if (w == 0) {
            fprintf(stderr, "gptqd %d did not stop within 10 s: SIGKILL\n", (int)d->pid);
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &status, 0);
        } else if (w == d->pid && WIFEXITED(status)) {
            result = WEXITSTATUS(status);
        } else if (w == d->pid && WIFSIGNALED(status)) {
            fprintf(stderr, "gptqd %d was killed by signal %d\n", (int)d->pid, WTERMSIG(status));
        }
        d->pid = 0;
    }
    remember(d, 0);
    if (d->dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", d->dir);
        d->dir[0] = '\0';
    }
    return result;
}

long td_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* The child side of td_vanish_poll: send a waiting Poll, leave before the
 * reply. Runs in a fresh exec, since nanomsg's state does not survive fork. */
static void vanish_child(const char *url, uint64_t job)
{
    td_daemon peer;
    memset(&peer, 0, sizeof peer);
    snprintf(peer.url, sizeof peer.url, "%s", url);
    int s = td_connect(&peer, 2000);
    Gptqd__Request req;
    Gptqd__PollRequest body = GPTQD__POLL_REQUEST__INIT;
    td_request_init(&req);
    body.job = job;
    body.since = 1u << 30; /* nothing there yet: the poll waits */
    body.wait_ms = 1000;
    req.body_case = GPTQD__REQUEST__BODY_POLL;
    req.poll = &body;
    unsigned char buf[128];
    size_t n = gptqd__request__pack(&req, buf);
    int sent = s >= 0 && nn_send(s, buf, n, 0) == (int)n;
    usleep(100000); /* the daemon has it and waits */
    _exit(sent ? 0 : 1);
}

int td_child_main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--vanish") == 0)
        vanish_child(argv[2], strtoull(argv[3], NULL, 10));
    return -1;
}

int td_vanish_poll(const char *self, const td_daemon *d, uint64_t job)
{
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)job);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execl("/proc/self/exe", self, "--vanish", d->url, id, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

Gptqd__Response *td_load(int sock, const char *name, const char *path)
{
    Gptqd__Request req;
    Gptqd__LoadRequest body = GPTQD__LOAD_REQUEST__INIT;
    td_request_init(&req);
    body.name = (char *)name;
    body.path = (char *)path;
    req.body_case = GPTQD__REQUEST__BODY_LOAD;
    req.load = &body;
    return td_call(sock, &req);
}

uint64_t td_load_wait(int sock, const char *name, const char *path, double timeout_s)
{
    Gptqd__Response *r = td_load(sock, name, path);
    uint64_t job = r && r->job ? r->job->job : 0;
    if (r && !job)
        fprintf(stderr, "load %s from %s refused: %s\n", name, path,
                r->message ? r->message : "");
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    if (job && (r = td_wait_job(sock, job, timeout_s)))
        gptqd__response__free_unpacked(r, NULL);
    return job;
}
