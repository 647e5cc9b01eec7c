/* tests/test_client.c: libgptqclient and gptqctl against a scripted fake
 * gptqd (tests/fake_daemon.c: a REP socket in a thread of this process that
 * speaks proto/gptqd.proto), plus the behaviour without any daemon: exit 3 and a
 * clear message, exit 2 for bad flags, --help for every verb.
 *
 * The fake answers with fixed replies, so what is checked is the client
 * side: requests carry what the caller gave (absolute paths, options),
 * replies and job events reach the caller intact and in order, failures
 * keep the daemon's status and message, Ctrl-C turns into Cancel. The real
 * daemon is driven end to end by tests/test_gptqctl.py. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "gptq/client.h"
#include "fake_daemon.h"
#include "gptqd.pb-c.h"
#include "testutil.h"

static char tmpdir[64];
static char sock_path[128];
static const char *gptqctl;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}


/* ---- running gptqctl ------------------------------------------------------------------- */

typedef struct run_out {
    int status; /* exit status, or 128+signal */
    char out[8192];
    char err[8192];
    double seconds;
} run_out;

static void slurp(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Run gptqctl with argv (NULL-terminated, without the program), stdout and
 * stderr captured. With sigint != 0, send SIGINT once it follows an endless
 * job of the fake (so that the signal handler is surely installed). */
static void run_ctl_signal(run_out *r, int sigint, const char *const *args)
{
    char out_path[PATH_MAX + 8], err_path[PATH_MAX + 8];
    snprintf(out_path, sizeof out_path, "%s/out", tmpdir);
    snprintf(err_path, sizeof err_path, "%s/err", tmpdir);
    const char *argv[32] = {gptqctl};
    int n = 1;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(o, 1);
        dup2(e, 2);
        execv(gptqctl, (char *const *)argv);
        _exit(127);
    }
    if (sigint) {
        pthread_mutex_lock(&fake.lock);
        int polls = fake.endless_polls, now = polls;
        pthread_mutex_unlock(&fake.lock);
        for (int i = 0; i < 1000 && now == polls; i++) {
            usleep(10000);
            pthread_mutex_lock(&fake.lock);
            now = fake.endless_polls;
            pthread_mutex_unlock(&fake.lock);
        }
        kill(pid, SIGINT);
    }
    int ws = 0;
    waitpid(pid, &ws, 0);
    r->seconds = now_s() - t0;
    r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    slurp(out_path, r->out, sizeof r->out);
    slurp(err_path, r->err, sizeof r->err);
}

#define RUN(r, ...) run_ctl_signal((r), 0, (const char *const[]){__VA_ARGS__, NULL})

/* stdout must be exactly one JSON object (and a newline). */
static json_t *only_json(const run_out *r)
{
    json_error_t err;
    json_t *o = json_loads(r->out, 0, &err);
    CHECK(o && json_is_object(o), "stdout is not one JSON object (%s): '%s'", err.text, r->out);
    return o;
}

/* ---- tests without a daemon --------------------------------------------------------- */

static void test_unreachable(void)
{
    gptq_client *c = NULL;
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.sock", tmpdir);
    double t0 = now_s();
    gptq_status st = gptq_client_connect(missing, &c);
    CHECK(st == GPTQ_ERR_UNREACHABLE, "missing socket: got %s", gptq_status_name(st));
    CHECK(c == NULL, "no handle on failure");
    CHECK(strstr(gptq_errmsg(), missing) != NULL, "message names the path: '%s'", gptq_errmsg());
    CHECK(now_s() - t0 < 1.0, "took %.2f s", now_s() - t0);

    /* A socket file nobody listens on (a daemon killed with -9). */
    char stale[100];
    snprintf(stale, sizeof stale, "%s/stale.sock", tmpdir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", stale);
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0, "bind %s", stale);
    close(fd);
    st = gptq_client_connect(stale, &c);
    CHECK(st == GPTQ_ERR_UNREACHABLE, "stale socket: got %s", gptq_status_name(st));
    CHECK(strstr(gptq_errmsg(), "nobody listens") != NULL, "message: '%s'", gptq_errmsg());

    /* The default path follows GPTQD_SOCKET. */
    char buf[256];
    setenv("GPTQD_SOCKET", "/tmp/x/gptqd.sock", 1);
    CHECK_OK(gptq_client_default_socket(buf, sizeof buf));
    CHECK(strcmp(buf, "/tmp/x/gptqd.sock") == 0, "default socket: %s", buf);
    unsetenv("GPTQD_SOCKET");
    CHECK_OK(gptq_client_default_socket(buf, sizeof buf));
    if (geteuid() == 0)
        CHECK(strcmp(buf, "/run/gptqd/gptqd.sock") == 0, "root's default socket: %s", buf);

    /* gptqctl: exit 3 with the path in the message, fast. */
    run_out r;
    RUN(&r, "--socket", missing, "status");
    CHECK(r.status == 3, "gptqctl status without daemon: exit %d, stderr '%s'", r.status, r.err);
    CHECK(strstr(r.err, missing) && strstr(r.err, "start gptqd"), "stderr: '%s'", r.err);
    CHECK(r.out[0] == '\0', "nothing on stdout: '%s'", r.out);
    CHECK(r.seconds < 2.0, "took %.2f s", r.seconds);
    RUN(&r, "--socket", missing, "--json", "list");
    CHECK(r.status == 3, "exit %d", r.status);
    json_t *o = only_json(&r);
    CHECK(o && json_is_object(json_object_get(o, "error")), "error object: '%s'", r.out);
    json_decref(o);
    setenv("GPTQD_SOCKET", missing, 1); /* the env var is honoured by gptqctl too */
    RUN(&r, "jobs");
    CHECK(r.status == 3 && strstr(r.err, missing), "GPTQD_SOCKET: exit %d '%s'", r.status, r.err);
    unsetenv("GPTQD_SOCKET");
}

static void test_usage(void)
{
    static const char *const verbs[] = {"status", "list", "load", "unload", "quantize",
                                        "eval", "infer", "save", "jobs", "cancel"};
    run_out r;
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.sock", tmpdir);
    RUN(&r, "--help");
    CHECK(r.status == 0 && strstr(r.out, "quantize") && strstr(r.out, "exit status"),
          "--help: %d '%s'", r.status, r.out);
    RUN(&r, "help");
    CHECK(r.status == 0 && strstr(r.out, "usage:"), "help: %d", r.status);
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        RUN(&r, "--socket", missing, verbs[i], "--help");
        CHECK(r.status == 0 && strstr(r.out, verbs[i]) && strstr(r.out, "usage:"),
              "%s --help: exit %d, out '%s'", verbs[i], r.status, r.out);
        RUN(&r, "help", verbs[i]);
        CHECK(r.status == 0 && strstr(r.out, verbs[i]), "help %s: exit %d", verbs[i], r.status);
        RUN(&r, "--socket", missing, verbs[i], "--no-such-flag");
        CHECK(r.status == 2 && strstr(r.err, "--no-such-flag"), "%s --no-such-flag: %d '%s'",
              verbs[i], r.status, r.err);
    }
    /* Bad values and arguments are usage errors, found before connecting. */
    static const char *const bad[][8] = {
        {"quantize", "tiny", NULL},                      /* no --as */
        {"quantize", "tiny", "--as", "q", "--bits", "5", NULL},
        {"quantize", "tiny", "--as", "q", "--bits", "four", NULL},
        {"quantize", "tiny", "--as", "q", "--group-size", "0", NULL},
        {"quantize", "tiny", "--as", "q", "--damp", "-1", NULL},
        {"quantize", "tiny", "--as", "q", "--nsamples", NULL},
        {"infer", "tiny", NULL},                         /* no prompt */
        {"infer", "tiny", "hi", "--temperature", "-1", NULL},
        {"infer", "tiny", "hi", "--top-p", "1.5", NULL},
        {"infer", "tiny", "hi", "--max-tokens", "0", NULL},
        {"eval", NULL},
        {"eval", "tiny", "--seqlen", "x", NULL},
        {"load", "tiny", NULL},
        {"save", "tiny", NULL},
        {"cancel", "abc", NULL},
        {"list", "extra", NULL},
        {"unload", "a", "b", NULL},
        {"frobnicate", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[12] = {"--socket", missing};
        size_t n = 2;
        for (size_t k = 0; bad[i][k]; k++)
            args[n++] = bad[i][k];
        args[n] = NULL;
        run_ctl_signal(&r, 0, args);
        CHECK(r.status == 2, "%s %s %s...: exit %d (want 2), stderr '%s'", bad[i][0],
              bad[i][1] ? bad[i][1] : "", bad[i][1] && bad[i][2] ? bad[i][2] : "", r.status,
              r.err);
        CHECK(r.out[0] == '\0', "usage error prints nothing on stdout: '%s'", r.out);
    }
    RUN(&r, "--socket");
    CHECK(r.status == 2, "--socket without a value: %d", r.status);
    RUN(&r, "--bogus", "list");
    CHECK(r.status == 2, "unknown global option: %d", r.status);
    RUN(&r, "--socket", missing);
    CHECK(r.status == 2, "no verb: %d", r.status);
}

/* ---- the library against the fake ---------------------------------------------------- */

typedef struct collected {
    char tokens[256];
    int n_progress, n_log, n_token;
    uint64_t last_seq;
    int order_ok;
    int cancel_after; /* return nonzero from the callback after this many events */
    int n_events;
} collected;

static int collect(void *user, const gptq_client_event *e)
{
    collected *c = user;
    if (c->n_events > 0 && e->seq <= c->last_seq)
        c->order_ok = 0;
    c->last_seq = e->seq;
    c->n_events++;
    if (e->kind == GPTQ_EVENT_TOKEN) {
        c->n_token++;
        strncat(c->tokens, e->text, sizeof c->tokens - strlen(c->tokens) - 1);
    } else if (e->kind == GPTQ_EVENT_PROGRESS) {
        c->n_progress++;
    } else {
        c->n_log++;
    }
    return c->cancel_after && c->n_events >= c->cancel_after;
}

static void test_library(void)
{
    gptq_client *c = NULL;
    CHECK_OK(gptq_client_connect(sock_path, &c));
    if (!c)
        return;
    uint64_t rtt = 0;
    CHECK_OK(gptq_client_ping(c, &rtt));
    CHECK(rtt > 0 && rtt < 1000000, "ping rtt %llu us", (unsigned long long)rtt);
    CHECK(fake.last_pid == (uint32_t)getpid(), "client_pid %u", fake.last_pid);
    CHECK(strcmp(fake.last_client, "test_client") == 0, "client name '%s'", fake.last_client);

    gptq_client_status_info *s = NULL;
    CHECK_OK(gptq_client_status(c, &s));
    CHECK(s && strcmp(s->backend, "cpu") == 0 && s->pid == 4242 && s->models == 2,
          "status fields");
    gptq_client_status_free(s);

    gptq_client_models *list = NULL;
    CHECK_OK(gptq_client_list(c, &list));
    CHECK(list && list->n == 2, "2 models");
    if (list && list->n == 2) {
        CHECK(strcmp(list->models[0].name, "tiny") == 0 && list->models[0].leases == 3,
              "model 0: %s leases %u", list->models[0].name, list->models[0].leases);
        CHECK(list->models[1].bits == 4 && list->models[1].group_size == 128 &&
                  strcmp(list->models[1].source, "") == 0,
              "model 1: bits %u", list->models[1].bits);
    }
    gptq_client_models_free(list);

    /* Generate: three tokens over three polls, the last with DONE. */
    gptq_generate_options go;
    gptq_generate_options_init(&go);
    go.temperature = 0;
    go.max_tokens = 3;
    gptq_job_id job = 0;
    CHECK_OK(gptq_client_generate(c, "tiny", "Once", &go, &job));
    CHECK(fake.last_generate.has_temperature_case && fake.last_generate.temperature == 0 &&
              fake.last_generate.max_tokens == 3 && !fake.last_generate.has_top_p_case &&
              !fake.last_generate.has_top_k_case && !fake.last_generate.has_seed_case,
          "generate options on the wire: what was set, nothing else");
    collected col = {.order_ok = 1};
    gptq_client_result *res = NULL;
    CHECK_OK(gptq_client_wait(c, job, collect, &col, NULL, &res));
    CHECK(strcmp(col.tokens, " upon a time") == 0, "streamed '%s'", col.tokens);
    CHECK(col.n_token == 3 && col.order_ok, "3 tokens in order: %d", col.n_token);
    CHECK(res && strcmp(res->text, " upon a time") == 0 && res->generated == 3, "result text");
    gptq_client_result_free(res);

    /* Eval result; a failing job keeps the daemon's status and message. */
    gptq_eval_options eo = {.kl_base = "tiny"};
    CHECK_OK(gptq_client_eval(c, "tiny-w4", &eo, &job));
    CHECK_OK(gptq_client_wait(c, job, NULL, NULL, NULL, &res));
    CHECK(res && res->perplexity == 114.486 && res->tokens == 4096 && res->has_kl,
          "eval result");
    gptq_client_result_free(res);
    CHECK_OK(gptq_client_eval(c, "failing", NULL, &job));
    gptq_status st = gptq_client_wait(c, job, NULL, NULL, NULL, &res);
    CHECK(st == GPTQ_ERR_NOTFOUND, "failed job: %s", gptq_status_name(st));
    CHECK(res == NULL, "no result on failure");
    CHECK(strstr(gptq_client_errmsg(c), "eval.txt") != NULL, "errmsg '%s'",
          gptq_client_errmsg(c));
    st = gptq_client_eval(c, "nope", NULL, &job);
    CHECK(st == GPTQ_ERR_NOTFOUND && strstr(gptq_client_errmsg(c), "'nope'"),
          "request refused: %s '%s'", gptq_status_name(st), gptq_client_errmsg(c));
    CHECK_OK(gptq_client_ping(c, NULL));
    CHECK(gptq_client_errmsg(c)[0] == '\0', "a success clears the message");

    /* Cancel by flag and by callback on an endless job. */
    volatile int cancel = 0;
    CHECK_OK(gptq_client_generate(c, "tiny", "forever", &go, &job));
    col = (collected){.order_ok = 1, .cancel_after = 2};
    int cancels = fake.cancels;
    st = gptq_client_wait(c, job, collect, &col, &cancel, &res);
    CHECK(st == GPTQ_ERR_CANCELED, "cancelled by callback: %s", gptq_status_name(st));
    CHECK(fake.cancels == cancels + 1, "one Cancel sent: %d", fake.cancels - cancels);
    CHECK_OK(gptq_client_generate(c, "tiny", "forever", &go, &job));
    cancel = 1;
    st = gptq_client_wait(c, job, NULL, NULL, &cancel, &res);
    CHECK(st == GPTQ_ERR_CANCELED, "cancelled by flag: %s", gptq_status_name(st));
    st = gptq_client_cancel(c, 999);
    CHECK(st == GPTQ_ERR_NOTFOUND, "cancel of an unknown job: %s", gptq_status_name(st));

    st = gptq_client_unload(c, "leased", 0);
    CHECK(st == GPTQ_ERR_BUSY && strstr(gptq_client_errmsg(c), "--force"), "busy: %s '%s'",
          gptq_status_name(st), gptq_client_errmsg(c));
    CHECK_OK(gptq_client_unload(c, "leased", 1));

    gptq_client_jobs *jobs = NULL;
    CHECK_OK(gptq_client_jobs_list(c, &jobs));
    CHECK(jobs && jobs->n == 1 && jobs->jobs[0].id == 3 &&
              jobs->jobs[0].state == GPTQ_JOB_RUNNING,
          "jobs list");
    gptq_client_jobs_free(jobs);

    /* Replies that are not what the protocol says are protocol errors
     * with a message, and the handle goes on working. */
    static const char *const bad_replies[] = {"version", "wrongbody", "garbage"};
    for (size_t i = 0; i < 3; i++) {
        st = gptq_client_unload(c, bad_replies[i], 0);
        CHECK(st == GPTQ_ERR_PROTOCOL && gptq_client_errmsg(c)[0], "%s reply: %s '%s'",
              bad_replies[i], gptq_status_name(st), gptq_client_errmsg(c));
    }
    CHECK(strstr(gptq_client_errmsg(c), "malformed"), "garbage: '%s'", gptq_client_errmsg(c));
    st = gptq_client_unload(c, "badstatus", 0);
    CHECK(st == GPTQ_ERR_INTERNAL && gptq_client_errmsg(c)[0], "status out of range: %s '%s'",
          gptq_status_name(st), gptq_client_errmsg(c));
    CHECK_OK(gptq_client_ping(c, NULL));

    /* A reply later than the timeout is UNREACHABLE, and the handle still
     * works afterwards (the late reply is discarded). */
    gptq_client_set_timeout(c, 300);
    double t0 = now_s();
    st = gptq_client_unload(c, "slow", 0);
    CHECK(st == GPTQ_ERR_UNREACHABLE, "slow reply: %s", gptq_status_name(st));
    CHECK(now_s() - t0 < 1.2, "timed out after %.2f s", now_s() - t0);
    gptq_client_set_timeout(c, 5000);
    CHECK_OK(gptq_client_ping(c, NULL));

    /* Map: the tensor table points into a read-only shared mapping. */
    gptq_mapping *m = NULL;
    CHECK_OK(gptq_map(c, "tiny", &m));
    if (m) {
        size_t n = 0;
        const gptq_mapped_tensor *t = gptq_mapping_tensors(m, &n);
        CHECK(n == 2 && gptq_mapping_lease(m) == 77, "table of %zu", n);
        CHECK(n == 2 && t[0].ndim == 2 && t[0].shape[1] == 2 && t[1].bytes == 8, "shapes");
        if (n == 2) {
            const float *w = t[0].data, *b = t[1].data;
            CHECK(w[0] == 1.5f && w[3] == 0.0f && b[0] == 42.0f && b[1] == -0.5f,
                  "mapped data %g %g %g %g", w[0], w[3], b[0], b[1]);
        }
        CHECK(strstr(gptq_mapping_config_json(m), "llama") != NULL, "config json");
        /* Two stray tensors are no model: a clear error, never a crash
         * (GPTQ_ERR_UNSUPPORTED in a build without the model runtime). */
        struct gptq_model *model = NULL;
        st = gptq_mapping_model(m, &model);
        CHECK(st != GPTQ_OK && model == NULL && gptq_errmsg()[0], "model of 2 tensors: %s '%s'",
              gptq_status_name(st), gptq_errmsg());
        int unmaps = fake.unmaps;
        CHECK_OK(gptq_unmap(c, m));
        CHECK(fake.unmaps == unmaps + 1, "Unmap sent");
    }
    int unmaps = fake.unmaps;
    st = gptq_map(c, "bad", &m);
    CHECK(st == GPTQ_ERR_FORMAT && m == NULL, "tensor past the arena: %s '%s'",
          gptq_status_name(st), gptq_client_errmsg(c));
    CHECK(fake.unmaps == unmaps + 1, "the lease of a refused mapping is given back");
    gptq_client_close(c);
}

/* ---- gptqctl against the fake -------------------------------------------------------------- */

static void test_ctl(void)
{
    run_out r;
    const char *S = sock_path;
    RUN(&r, "--socket", S, "status");
    CHECK(r.status == 0 && strstr(r.out, "0.1.0-fake") && strstr(r.out, "cpu"),
          "status: %d '%s' '%s'", r.status, r.out, r.err);
    RUN(&r, "--socket", S, "--json", "status");
    json_t *o = only_json(&r);
    CHECK(o && json_integer_value(json_object_get(o, "pid")) == 4242, "status json: %s", r.out);
    json_decref(o);

    RUN(&r, "--socket", S, "list");
    CHECK(r.status == 0 && strstr(r.out, "tiny-w4") && strstr(r.out, "gptq-w4g128"),
          "list: '%s'", r.out);
    RUN(&r, "--socket", S, "--json", "list");
    o = only_json(&r);
    json_t *models = o ? json_object_get(o, "models") : NULL;
    CHECK(json_array_size(models) == 2 &&
              json_integer_value(json_object_get(json_array_get(models, 0), "leases")) == 3,
          "list json: %s", r.out);
    json_decref(o);

    /* Relative paths reach the daemon absolute. */
    char cwd[PATH_MAX], want[PATH_MAX + 64];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    CHECK(chdir(tmpdir) == 0, "chdir");
    mkdir("model-dir", 0700);
    RUN(&r, "--socket", S, "load", "tiny", "model-dir");
    CHECK(r.status == 0, "load: %d '%s'", r.status, r.err);
    snprintf(want, sizeof want, "%s/model-dir", tmpdir);
    char *real_want = realpath(want, NULL);
    CHECK(real_want && strcmp(fake.last_path, real_want) == 0, "load path '%s' want '%s'",
          fake.last_path, real_want ? real_want : want);
    free(real_want);
    RUN(&r, "--socket", S, "--json", "save", "tiny", "not-yet/out");
    snprintf(want, sizeof want, "%s/not-yet/out", tmpdir);
    CHECK(r.status == 0 && strncmp(fake.last_save_dir, "/", 1) == 0 &&
              strstr(fake.last_save_dir, "not-yet/out"),
          "save dir '%s'", fake.last_save_dir);
    o = only_json(&r);
    const char *dir = o ? json_string_value(json_object_get(o, "dir")) : NULL;
    CHECK(dir && strstr(dir, "not-yet/out"), "save json: %s", r.out);
    json_decref(o);

    /* quantize: every option reaches the request; progress goes to stderr
     * as plain lines (not a terminal), stdout has only the JSON. */
    RUN(&r, "--socket", S, "--json", "quantize", "tiny", "--as", "tiny-w3", "--bits", "3",
        "--group-size", "64", "--act-order", "--sym", "--static-groups", "--damp", "0.05",
        "--calib", "model-dir", "--nsamples", "16", "--seqlen", "256", "--seed", "9", "--save",
        "w3");
    CHECK(r.status == 0, "quantize: %d '%s'", r.status, r.err);
    Gptqd__QuantizeRequest *q = &fake.last_quantize;
    CHECK(q->bits == 3 && q->group_size == 64 && q->act_order && q->sym && q->static_groups &&
              q->has_damp_case && q->damp == 0.05f && q->nsamples == 16 && q->seqlen == 256 &&
              q->has_seed_case && q->seed == 9,
          "quantize options: bits %u group %d act %d sym %d static %d damp %g n %u len %u",
          q->bits, q->group_size, q->act_order, q->sym, q->static_groups, q->damp, q->nsamples,
          q->seqlen);
    CHECK(fake.last_path[0] == '/' && fake.last_save_dir[0] == '/', "calib/save absolute");
    o = only_json(&r);
    CHECK(o && strcmp(json_string_value(json_object_get(o, "model")), "tiny-w3") == 0,
          "quantize json %s", r.out);
    json_decref(o);
    CHECK(strstr(r.err, "layer 0 q_proj") && strstr(r.err, "layer 1 down_proj") &&
              strstr(r.err, "100%") && strstr(r.err, "calibration: 16 windows"),
          "plain progress lines: '%s'", r.err);
    /* defaults are the daemon's library's: gptqctl sends every option unset */
    RUN(&r, "--socket", S, "quantize", "tiny", "--as", "tiny-w4");
    CHECK(r.status == 0 && fake.last_quantize.bits == 0 && fake.last_quantize.group_size == 0 &&
              !fake.last_quantize.sym && fake.last_quantize.nsamples == 0 &&
              fake.last_quantize.seqlen == 0 && !fake.last_quantize.has_damp_case &&
              !fake.last_quantize.has_seed_case && fake.last_quantize.block_size == 0 &&
              fake.last_path[0] == '\0',
          "quantize defaults: all unset");
    CHECK(strstr(r.out, "tiny-w4: quantized from tiny"), "quantize text '%s'", r.out);
    CHECK(chdir(cwd) == 0, "chdir back");

    /* eval --json: exactly the object of docs/ARCHITECTURE.md "The command line". */
    RUN(&r, "--socket", S, "--json", "eval", "tiny-w4", "--kl-base", "tiny");
    o = only_json(&r);
    CHECK(o && r.status == 0, "eval: %d", r.status);
    if (o) {
        CHECK(strcmp(json_string_value(json_object_get(o, "model")), "tiny-w4") == 0, "model");
        CHECK(json_real_value(json_object_get(o, "perplexity")) == 114.486, "perplexity");
        CHECK(json_integer_value(json_object_get(o, "tokens")) == 4096, "tokens");
        CHECK(json_integer_value(json_object_get(o, "seqlen")) == 256, "seqlen");
        CHECK(json_real_value(json_object_get(o, "kl")) == 0.00055, "kl");
    }
    json_decref(o);
    RUN(&r, "--socket", S, "eval", "failing");
    CHECK(r.status == 1 && strstr(r.err, "eval.txt: no such file"), "failed job: %d '%s'",
          r.status, r.err);
    RUN(&r, "--socket", S, "--json", "eval", "nope");
    CHECK(r.status == 1 && strstr(r.err, "'nope'"), "refused: %d '%s'", r.status, r.err);
    o = only_json(&r);
    json_decref(o);

    /* infer streams the completion on stdout; --json gives one object. */
    RUN(&r, "--socket", S, "infer", "tiny", "Once", "--temperature", "0");
    CHECK(r.status == 0 && strcmp(r.out, " upon a time\n") == 0, "infer: %d '%s'", r.status,
          r.out);
    CHECK(fake.last_generate.has_temperature_case && fake.last_generate.temperature == 0,
          "greedy on the wire");
    RUN(&r, "--socket", S, "--json", "infer", "tiny", "Once", "--max-tokens", "3", "--top-k",
        "5", "--top-p", "0.9", "--seed", "4");
    o = only_json(&r);
    CHECK(o && strcmp(json_string_value(json_object_get(o, "text")), " upon a time") == 0 &&
              json_integer_value(json_object_get(o, "tokens")) == 3,
          "infer json: %s", r.out);
    json_decref(o);
    CHECK(fake.last_generate.has_top_k_case && fake.last_generate.top_k == 5 &&
              fake.last_generate.has_seed_case && fake.last_generate.seed == 4 &&
              fake.last_generate.max_tokens == 3,
          "sampling options on the wire");

    RUN(&r, "--socket", S, "unload", "leased");
    CHECK(r.status == 1 && strstr(r.err, "--force"), "unload busy: %d '%s'", r.status, r.err);
    RUN(&r, "--socket", S, "unload", "leased", "--force");
    CHECK(r.status == 0, "unload --force: %d", r.status);
    RUN(&r, "--socket", S, "--json", "jobs");
    o = only_json(&r);
    CHECK(o && json_array_size(json_object_get(o, "jobs")) == 1, "jobs json %s", r.out);
    json_decref(o);
    RUN(&r, "--socket", S, "cancel", "999");
    CHECK(r.status == 1 && strstr(r.err, "999"), "cancel unknown: %d '%s'", r.status, r.err);

    /* Ctrl-C during a job: Cancel is sent and gptqctl exits 130. */
    int cancels = fake.cancels;
    run_ctl_signal(&r, 1,
                   (const char *const[]){"--socket", S, "infer", "tiny", "forever", NULL});
    CHECK(r.status == 130, "Ctrl-C: exit %d, stderr '%s'", r.status, r.err);
    CHECK(fake.cancels == cancels + 1, "Cancel sent on Ctrl-C");
    CHECK(r.seconds < 3.0, "stopped after %.2f s", r.seconds);
}

int main(void)
{
    gptqctl = getenv("GPTQCTL");
    if (!gptqctl || access(gptqctl, X_OK) != 0) {
        printf("SKIP: GPTQCTL (the gptqctl binary) not set\n");
        return 77;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gptq-test-client-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(sock_path, sizeof sock_path, "%s/fake.sock", tmpdir);
    unsetenv("GPTQD_SOCKET");

    test_unreachable();
    test_usage();
    fake_start(sock_path);
    test_library();
    test_ctl();
    fake_stop();

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_result();
}
