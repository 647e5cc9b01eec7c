/* bench/ipc.c: gptqd's request path: Ping round-trip latency (median, p99)
 * and Status throughput with 1 and 8 client threads, against a gptqd it
 * starts on a private socket. Baseline beside it: the same round trip
 * through a bare nanomsg REQ/REP echo on an ipc:// socket in this process,
 * i.e. what the transport alone costs.
 * Usage: ipc PATH/TO/gptqd [seconds per figure, default 2] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "../tests/test_daemon_harness.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static Gptqd__Request ping_req, status_req;
static Gptqd__Ping ping_body = GPTQD__PING__INIT;
static Gptqd__StatusRequest status_body = GPTQD__STATUS_REQUEST__INIT;
static unsigned char ping_bytes[64], status_bytes[64];
static size_t ping_len, status_len;

/* One raw round trip; 0 on success. */
static int round_trip(int s, const unsigned char *bytes, size_t len)
{
    if (nn_send(s, bytes, len, 0) < 0)
        return -1;
    void *buf = NULL;
    int n = nn_recv(s, &buf, NN_MSG, 0);
    if (n < 0)
        return -1;
    nn_freemsg(buf);
    return 0;
}

/* Latencies of `n` round trips in microseconds, sorted. */
static int latencies(const char *url, const unsigned char *bytes, size_t len, double *us, int n)
{
    int s = nn_socket(AF_SP, NN_REQ);
    int timeout = 5000;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout, sizeof timeout);
    if (s < 0 || nn_connect(s, url) < 0)
        return -1;
    for (int i = 0; i < 200; i++) /* warm-up */
        if (round_trip(s, bytes, len) < 0)
            return -1;
    for (int i = 0; i < n; i++) {
        double t0 = td_now();
        if (round_trip(s, bytes, len) < 0)
            return -1;
        us[i] = (td_now() - t0) * 1e6;
    }
    nn_close(s);
    qsort(us, (size_t)n, sizeof *us, cmp_double);
    return 0;
}

typedef struct load_thread {
    const char *url;
    const unsigned char *bytes;
    size_t len;
    double until;
    long done;
} load_thread;

static void *load_worker(void *arg)
{
    load_thread *t = arg;
    int s = nn_socket(AF_SP, NN_REQ);
    int timeout = 5000;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout, sizeof timeout);
    if (s < 0 || nn_connect(s, t->url) < 0)
        return NULL;
    while (td_now() < t->until && round_trip(s, t->bytes, t->len) == 0)
        t->done++;
    nn_close(s);
    return NULL;
}

static double throughput(const char *url, const unsigned char *bytes, size_t len, int threads,
                         double seconds)
{
    load_thread t[8];
    pthread_t tid[8];
    double start = td_now();
    for (int i = 0; i < threads; i++) {
        t[i] = (load_thread){url, bytes, len, start + seconds, 0};
        pthread_create(&tid[i], NULL, load_worker, &t[i]);
    }
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        total += t[i].done;
    }
    return (double)total / (td_now() - start);
}

/* The baseline: a bare raw-REP echo server with 4 worker threads. */
static int echo_sock = -1;
static volatile int echo_stop;

static void *echo_worker(void *arg)
{
    (void)arg;
    while (!echo_stop) {
        void *body = NULL, *ctrl = NULL;
        struct nn_iovec iov = {&body, NN_MSG};
        struct nn_msghdr h = {&iov, 1, &ctrl, NN_MSG};
        if (nn_recvmsg(echo_sock, &h, 0) < 0)
            continue;
        struct nn_iovec oi = {&body, NN_MSG};
        struct nn_msghdr oh = {&oi, 1, &ctrl, NN_MSG};
        if (nn_sendmsg(echo_sock, &oh, 0) < 0) {
            nn_freemsg(body);
            nn_freemsg(ctrl);
        }
    }
    return NULL;
}

static void report(const char *what, const char *url, const unsigned char *bytes, size_t len,
                   double seconds)
{
    enum { N = 20000 };
    static double us[N];
    if (latencies(url, bytes, len, us, N) < 0) {
        printf("%-22s failed\n", what);
        return;
    }
    double t1 = throughput(url, bytes, len, 1, seconds);
    double t8 = throughput(url, bytes, len, 8, seconds);
    printf("%-22s median %7.1f us   p99 %7.1f us   1 client %8.0f req/s   8 clients %8.0f "
           "req/s\n", what, us[N / 2], us[N * 99 / 100], t1, t8);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/gptqd [seconds]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    td_request_init(&ping_req);
    ping_req.body_case = GPTQD__REQUEST__BODY_PING;
    ping_req.ping = &ping_body;
    ping_len = gptqd__request__pack(&ping_req, ping_bytes);
    td_request_init(&status_req);
    status_req.body_case = GPTQD__REQUEST__BODY_STATUS_REQUEST;
    status_req.status_request = &status_body;
    status_len = gptqd__request__pack(&status_req, status_bytes);

    td_daemon d;
    const char *args[] = {"--workers", "4", "--log-level", "warning", NULL};
    if (td_start(&d, argv[1], args) < 0)
        return 1;

    char echo_url[400];
    snprintf(echo_url, sizeof echo_url, "ipc://%s/echo.sock", d.dir);
    echo_sock = nn_socket(AF_SP_RAW, NN_REP);
    int tick = 200;
    nn_setsockopt(echo_sock, NN_SOL_SOCKET, NN_RCVTIMEO, &tick, sizeof tick);
    nn_bind(echo_sock, echo_url);
    pthread_t echo[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&echo[i], NULL, echo_worker, NULL);

    printf("ipc: %ld CPUs; gptqd with 4 workers; %.0f s per throughput figure\n",
           sysconf(_SC_NPROCESSORS_ONLN), seconds);
    report("baseline: raw echo", echo_url, ping_bytes, ping_len, seconds);
    report("gptqd Ping", d.url, ping_bytes, ping_len, seconds);
    report("gptqd Status", d.url, status_bytes, status_len, seconds);

    echo_stop = 1;
    for (int i = 0; i < 4; i++)
        pthread_join(echo[i], NULL);
    nn_close(echo_sock);
    return td_stop(&d) == 0 ? 0 : 1;
}
