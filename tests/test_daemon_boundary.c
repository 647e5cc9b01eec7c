/* tests/test_daemon_boundary.c: gptqd at its boundary with the file system,
 * with long work and with other users.
 *
 *   test_daemon_boundary PATH/TO/gptqd
 *
 * Each numbered check prints what it measured:
 *  1. FIFOs named config.json, tokenizer.json, model.safetensors: refused at
 *     once (not a regular file), status answers within 100 ms throughout.
 *  2. A folder swapped for a symlink to an outside model, 1000 times,
 *     against 1000 loads of it: no load ever reads the outside folder.
 *  3. Symlinks: to outside files refused ("leads outside"); a link to a
 *     secret file never has its contents quoted; links that stay inside the
 *     model directory work; a device node and a /dev/zero link refused.
 *  4. model.safetensors truncated under a running load: the daemon lives.
 *  5. A long eval cancelled (latency); SIGTERM during one (the daemon gone
 *     in <= 5 s, its /dev/shm arenas and socket removed).
 *  6. kill -9 during a save, then a restart: no NAME.tmp.PID left.
 *  7. As root: a job and a model of root's are neither cancelled nor
 *     unloaded by another uid; that uid's own job is its to cancel; a lease
 *     is its own process's whatever client_pid it claims.
 * Skips (77) without the fixtures. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nanomsg/nn.h>

#include "gptq/error.h"
#include "test_daemon_harness.h"
#include "testutil.h"

static char models[PATH_MAX], outside[PATH_MAX];
static const char *fixtures;

static void path_of(char *out, const char *dir, const char *name)
{
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char buf[1 << 16];
    ssize_t n;
    int ok = in >= 0 && out >= 0;
    while (ok && (n = read(in, buf, sizeof buf)) > 0)
        ok = write(out, buf, (size_t)n) == n;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return ok ? 0 : -1;
}

/* A copy of the fixture model in dir/name. */
static void copy_model(const char *dir, const char *name)
{
    char to[PATH_MAX], from[PATH_MAX], folder[PATH_MAX];
    const char *files[] = {"config.json", "tokenizer.json", "model.safetensors",
                           "generation_config.json"};
    path_of(folder, dir, name);
    mkdir(folder, 0755);
    for (int i = 0; i < 4; i++) {
        snprintf(from, sizeof from, "%s/tiny-llama/%s", fixtures, files[i]);
        snprintf(to, sizeof to, "%s/%s", folder, files[i]);
        CHECK(copy_file(from, to) == 0, "copy %s", from);
    }
}

/* Starts a job request; returns its id (0 on failure, message printed). */
static uint64_t start(int s, Gptqd__Request *req, const char *what)
{
    Gptqd__Response *r = td_call(s, req);
    uint64_t id = r && r->status == 0 && r->body_case == GPTQD__RESPONSE__BODY_JOB ? r->job->job : 0;
    if (!id)
        fprintf(stderr, "%s: %s\n", what, r ? r->message : "no reply");
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return id;
}

static int simple_status(int s, Gptqd__Request *req, char *msg, size_t n)
{
    Gptqd__Response *r = td_call(s, req);
    int st = r ? r->status : -1;
    if (msg)
        snprintf(msg, n, "%s", r && r->message ? r->message : "");
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return st;
}

/* A load that must finish (request or job) with `want` and a message
 * containing needle (and not `forbidden`). */
static void expect_load(int s, const char *what, const char *path, int want, const char *needle,
                        const char *forbidden)
{
    char msg[1024] = "";
    int st;
    Gptqd__Response *r = td_load(s, "probe", path);
    if (r && r->status == 0 && r->body_case == GPTQD__RESPONSE__BODY_JOB) {
        uint64_t job = r->job->job;
        gptqd__response__free_unpacked(r, NULL);
        r = td_wait_job(s, job, 60);
        st = r && r->poll ? r->poll->result_status : -1;
        snprintf(msg, sizeof msg, "%s", r && r->poll ? r->poll->result_message : "");
        if (r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE) {
            Gptqd__Request req;
            Gptqd__UnloadRequest u = GPTQD__UNLOAD_REQUEST__INIT;
            td_request_init(&req);
            u.name = "probe";
            req.body_case = GPTQD__REQUEST__BODY_UNLOAD;
            req.unload = &u;
            simple_status(s, &req, NULL, 0);
        }
    } else {
        st = r ? r->status : -1;
        snprintf(msg, sizeof msg, "%s", r && r->message ? r->message : "");
    }
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    CHECK(st == want && (!needle || strstr(msg, needle)) && (!forbidden || !strstr(msg, forbidden)),
          "%s: status %d (want %d), message '%s' (want '%s'%s%s)", what, st, want, msg,
          needle ? needle : "", forbidden ? ", never " : "", forbidden ? forbidden : "");
}

/* Status round trip in ms. */
static double status_ms(int s)
{
    Gptqd__Request req;
    Gptqd__StatusRequest body = GPTQD__STATUS_REQUEST__INIT;
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_STATUS_REQUEST;
    req.status_request = &body;
    double t0 = td_now();
    Gptqd__Response *r = td_call(s, &req);
    double ms = (td_now() - t0) * 1e3;
    int ok = r && r->status == 0;
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return ok ? ms : 1e9;
}

/* ---- 1. FIFOs ------------------------------------------------------------------ */

static void test_fifos(int s)
{
    const char *names[] = {"config.json", "tokenizer.json", "model.safetensors"};
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        char folder[PATH_MAX], fifo[PATH_MAX], label[64];
        snprintf(label, sizeof label, "fifo-%d", i);
        copy_model(models, label);
        path_of(folder, models, label);
        path_of(fifo, folder, names[i]);
        unlink(fifo);
        CHECK(mkfifo(fifo, 0644) == 0, "mkfifo %s", fifo);
        double t0 = td_now();
        for (int k = 0; k < 4; k++) /* a few at once used to tie up the workers */
            expect_load(s, names[i], folder, GPTQ_ERR_IO, "FIFO", NULL);
        double t = td_now() - t0, ms = status_ms(s);
        worst = ms > worst ? ms : worst;
        CHECK(t < 5.0, "4 loads with a FIFO %s took %.2f s", names[i], t);
        CHECK(ms < 100, "status took %.1f ms after FIFO loads", ms);
    }
    printf("1. FIFO as config.json / tokenizer.json / model.safetensors: refused, status "
           "answered in <= %.1f ms\n", worst);
}

/* ---- 2. the rename race ------------------------------------------------------------- */

static atomic_int race_stop;

/* "race" is, by turns, a real folder (race-dir) and a symlink to the
 * outside model (race-link): each step an atomic rename(2). */
static void *swapper(void *arg)
{
    (void)arg;
    char x[PATH_MAX], dir_form[PATH_MAX], link_form[PATH_MAX];
    path_of(x, models, "race");
    path_of(dir_form, models, "race-dir");
    path_of(link_form, models, "race-link");
    long swaps = 0;
    while (!atomic_load(&race_stop)) {
        swaps += rename(dir_form, x) == 0 && rename(x, dir_form) == 0;
        swaps += rename(link_form, x) == 0 && rename(x, link_form) == 0;
    }
    return (void *)swaps;
}

static void test_race(int s)
{
    char marker[PATH_MAX];
    /* the outside "model": its config names a marker that any error
     * reading it would quote */
    mkdir(outside, 0755);
    path_of(marker, outside, "config.json");
    write_file(marker, "{\"architectures\": [\"OUTSIDE_MARKER_ForCausalLM\"]}");
    char x[PATH_MAX], p[PATH_MAX];
    path_of(x, models, "race");
    path_of(p, models, "race-dir");
    mkdir(p, 0755);
    path_of(p, models, "race-dir/config.json");
    write_file(p, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
                  "\"intermediate_size\": 128, \"num_attention_heads\": 4, "
                  "\"num_hidden_layers\": 2, \"vocab_size\": 256}");
    path_of(p, models, "race-link");
    CHECK(symlink(outside, p) == 0, "symlink %s", p);
    pthread_t t;
    pthread_create(&t, NULL, swapper, NULL);
    int escaped = 0, answered = 0, n = 1000;
    for (int i = 0; i < n; i++) {
        Gptqd__Response *r = td_load(s, "race", x);
        if (!r)
            continue;
        answered++;
        if ((r->message && strstr(r->message, "OUTSIDE_MARKER")) || r->status == 0)
            escaped++;
        gptqd__response__free_unpacked(r, NULL);
    }
    atomic_store(&race_stop, 1);
    void *swaps;
    pthread_join(t, &swaps);
    printf("2. rename race: %d loads against %ld swaps of the folder for an outside link: "
           "%d escaped\n", answered, (long)swaps, escaped);
    CHECK(answered == n && escaped == 0, "%d of %d answered, %d read outside", answered, n,
          escaped);
    CHECK((long)swaps > 100, "only %ld swaps: the race did not run", (long)swaps);
}

/* ---- 3. symlinks, devices ----------------------------------------------------------- */

static void test_links(int s)
{
    char folder[PATH_MAX], p[PATH_MAX], target[PATH_MAX], secret[PATH_MAX];
    /* a secret outside: its first word must never reach a client */
    path_of(secret, outside, "secret.txt");
    write_file(secret, "TOPSECRET password=hunter2\n");
    copy_model(models, "links-out");
    path_of(folder, models, "links-out");
    path_of(p, folder, "tokenizer.json");
    unlink(p);
    CHECK(symlink(secret, p) == 0, "symlink");
    expect_load(s, "tokenizer.json -> outside secret", folder, GPTQ_ERR_PERMISSION, "outside",
                "TOPSECRET");
    /* a model folder that is all links to an outside model */
    char farm[PATH_MAX];
    path_of(farm, models, "farm");
    mkdir(farm, 0755);
    const char *files[] = {"config.json", "tokenizer.json", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(target, sizeof target, "%s/tiny-llama/%s", fixtures, files[i]);
        path_of(p, farm, files[i]);
        symlink(target, p);
    }
    expect_load(s, "symlink farm to an outside model", farm, GPTQ_ERR_PERMISSION, "outside",
                NULL);
    /* links that stay beneath the model directory (the HF cache layout) */
    char blobs[PATH_MAX], snap[PATH_MAX];
    path_of(blobs, models, "blobs");
    mkdir(blobs, 0755);
    path_of(snap, models, "snapshot");
    mkdir(snap, 0755);
    for (int i = 0; i < 3; i++) {
        snprintf(target, sizeof target, "%s/tiny-llama/%s", fixtures, files[i]);
        path_of(p, blobs, files[i]);
        copy_file(target, p);
        char rel[PATH_MAX];
        snprintf(rel, sizeof rel, "../blobs/%s", files[i]);
        path_of(p, snap, files[i]);
        symlink(rel, p);
    }
    expect_load(s, "relative links inside the model directory", snap, 0, NULL, NULL);
    /* /dev/zero as a file of the model: outside, and not a regular file */
    copy_model(models, "zero");
    path_of(folder, models, "zero");
    path_of(p, folder, "config.json");
    unlink(p);
    symlink("/dev/zero", p);
    expect_load(s, "config.json -> /dev/zero", folder, GPTQ_ERR_PERMISSION, "outside", NULL);
    /* a device node inside the model directory (root only) */
    unlink(p);
    if (mknod(p, S_IFCHR | 0644, makedev(1, 5)) == 0)
        expect_load(s, "config.json a device node", folder, GPTQ_ERR_IO, "device", NULL);
    printf("3. symlinks: outside targets refused (no quote of their text), links inside "
           "the model directory followed, devices refused\n");
}

/* ---- 4. truncation under a load ------------------------------------------------------- */

static void test_truncate(int s, const td_daemon *d)
{
    char folder[PATH_MAX], weights[PATH_MAX];
    int survived = 0, rounds = 20;
    for (int i = 0; i < rounds; i++) {
        copy_model(models, "trunc");
        path_of(folder, models, "trunc");
        path_of(weights, folder, "model.safetensors");
        Gptqd__Response *r = td_load(s, "trunc", folder);
        uint64_t job = r && r->status == 0 && r->job ? r->job->job : 0;
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        usleep((useconds_t)(i * 2500)); /* hit different phases of the load */
        CHECK(truncate(weights, 4096) == 0, "truncate");
        if (job && (r = td_wait_job(s, job, 60))) {
            if (r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE) {
                Gptqd__Request req;
                Gptqd__UnloadRequest u = GPTQD__UNLOAD_REQUEST__INIT;
                td_request_init(&req);
                u.name = "trunc";
                req.body_case = GPTQD__REQUEST__BODY_UNLOAD;
                req.unload = &u;
                simple_status(s, &req, NULL, 0);
            }
            gptqd__response__free_unpacked(r, NULL);
        }
        survived += kill(d->pid, 0) == 0 && status_ms(s) < 1000;
    }
    printf("4. model.safetensors truncated under %d loads: the daemon answered after %d\n",
           rounds, survived);
    CHECK(survived == rounds, "the daemon died or hung after a truncation");
}

/* ---- 5. cancel and stop -------------------------------------------------------------- */

static uint64_t long_eval(int s, const char *model, const char *text)
{
    Gptqd__Request req;
    Gptqd__EvalRequest e = GPTQD__EVAL_REQUEST__INIT;
    td_request_init(&req);
    e.name = (char *)model;
    e.text_path = (char *)text;
    e.seqlen = 128;
    req.body_case = GPTQD__REQUEST__BODY_EVAL;
    req.eval = &e;
    return start(s, &req, "eval");
}

static int job_state(int s, uint64_t job)
{
    Gptqd__Request req;
    Gptqd__PollRequest p = GPTQD__POLL_REQUEST__INIT;
    td_request_init(&req);
    p.job = job;
    req.body_case = GPTQD__REQUEST__BODY_POLL;
    req.poll = &p;
    Gptqd__Response *r = td_call(s, &req);
    int state = r && r->poll ? (int)r->poll->state : -1;
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return state;
}

static int cancel(int s, uint64_t job, char *msg, size_t n)
{
    Gptqd__Request req;
    Gptqd__CancelRequest c = GPTQD__CANCEL_REQUEST__INIT;
    td_request_init(&req);
    c.job = job;
    req.body_case = GPTQD__REQUEST__BODY_CANCEL;
    req.cancel = &c;
    return simple_status(s, &req, msg, n);
}

static int shm_of(pid_t pid)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "gptqd-%d-", (int)pid);
    DIR *d = opendir("/dev/shm");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

static void test_cancel_and_stop(const char *gptqd, const char *text)
{
    td_daemon d;
    const char *args[] = {"--model-dir", models, NULL};
    if (td_start(&d, gptqd, args) < 0) {
        CHECK(0, "gptqd did not start");
        return;
    }
    int s = td_connect(&d, 20000);
    char folder[PATH_MAX];
    path_of(folder, models, "tiny");
    td_load_wait(s, "tiny", folder, 60);
    uint64_t job = long_eval(s, "tiny", text);
    while (job && job_state(s, job) != GPTQD__JOB_STATE__JOB_RUNNING)
        usleep(1000);
    usleep(300000); /* well inside its windows */
    double t0 = td_now();
    CHECK(cancel(s, job, NULL, 0) == 0, "cancel");
    int state;
    while ((state = job_state(s, job)) == GPTQD__JOB_STATE__JOB_RUNNING && td_now() - t0 < 10)
        usleep(1000);
    double latency = td_now() - t0;
    printf("5. long eval cancelled: ended %.0f ms after the cancel\n", latency * 1e3);
    CHECK(state == GPTQD__JOB_STATE__JOB_CANCELED && latency < 1.0, "cancel: state %d after "
          "%.2f s", state, latency);

    /* SIGTERM in the middle of one */
    job = long_eval(s, "tiny", text);
    while (job && job_state(s, job) != GPTQD__JOB_STATE__JOB_RUNNING)
        usleep(1000);
    usleep(300000);
    pid_t pid = d.pid;
    CHECK(shm_of(pid) > 0, "no shm arena of gptqd %d while a model is resident", (int)pid);
    t0 = td_now();
    kill(pid, SIGTERM);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0 && td_now() - t0 < 10)
        usleep(1000);
    double stop = td_now() - t0;
    struct stat sb;
    int sock_left = stat(d.sock, &sb) == 0, shm_left = shm_of(pid);
    printf("   SIGTERM during an eval: gone in %.2f s (exit %d), %d arenas and %s socket left\n",
           stop, WIFEXITED(status) ? WEXITSTATUS(status) : -1, shm_left, sock_left ? "the" : "no");
    CHECK(stop <= 5.0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "stop took %.2f s", stop);
    CHECK(!shm_left && !sock_left, "left behind: %d arenas, socket %d", shm_left, sock_left);
    d.pid = 0;
    nn_close(s);
    td_stop(&d);
}

/* ---- 6. kill -9 during a save ---------------------------------------------------------- */

static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void test_kill_during_save(const char *gptqd)
{
    char saves[PATH_MAX], folder[PATH_MAX];
    path_of(saves, models, "saves");
    mkdir(saves, 0755);
    path_of(folder, models, "tiny");
    int left_after_kill = 0;
    for (int round = 0; round < 3; round++) {
        td_daemon d;
        const char *args[] = {"--model-dir", models, NULL};
        if (td_start(&d, gptqd, args) < 0) {
            CHECK(0, "gptqd did not start");
            return;
        }
        int s = td_connect(&d, 20000);
        td_load_wait(s, "tiny", folder, 60);
        char out[PATH_MAX + 32];
        snprintf(out, sizeof out, "%s/float-%d", saves, round);
        Gptqd__Request req;
        Gptqd__SaveRequest sv = GPTQD__SAVE_REQUEST__INIT;
        td_request_init(&req);
        sv.name = "tiny";
        sv.dir = out;
        sv.dtype = "f32";
        req.body_case = GPTQD__REQUEST__BODY_SAVE;
        req.save = &sv;
        int tmp_before = count_tmp(saves);
        start(s, &req, "save");
        /* kill it while it writes: as soon as its temporary folder exists */
        for (double end = td_now() + 5; td_now() < end && !count_tmp(saves);)
            usleep(200);
        usleep((useconds_t)(round * 20000));
        kill(d.pid, SIGKILL);
        waitpid(d.pid, NULL, 0);
        d.pid = 0;
        left_after_kill += count_tmp(saves) > tmp_before;
        nn_close(s);
        td_stop(&d);
    }
    /* what a crash leaves, made by hand too, so the restart has work whatever
     * the timing above hit */
    char fake[PATH_MAX + 64];
    snprintf(fake, sizeof fake, "%s/by-hand.tmp.999999", saves);
    mkdir(fake, 0755);
    snprintf(fake, sizeof fake, "%s/by-hand.tmp.999999/.gptqd-save", saves);
    write_file(fake, "");
    int before = count_tmp(saves);
    td_daemon d;
    const char *args[] = {"--model-dir", models, NULL};
    CHECK(td_start(&d, gptqd, args) == 0, "restart");
    int after = count_tmp(saves);
    printf("6. kill -9 during 3 saves: %d of them left a temporary folder; with one more made "
           "by hand, %d before a restart, %d after\n", left_after_kill, before, after);
    CHECK(before >= 1 && after == 0, "%d *.tmp.* folders left after the restart", after);
    td_stop(&d);
}

/* ---- 7. other users ------------------------------------------------------------------- */

static void test_other_uid(const char *gptqd, const char *text)
{
    if (geteuid() != 0) {
        printf("7. SKIP: other users need root to test\n");
        return;
    }
    struct group *gr = getgrgid(65534);
    td_daemon d;
    const char *args[] = {"--model-dir", models, "--socket-group", gr ? gr->gr_name : "nogroup",
                          NULL};
    if (td_start(&d, gptqd, args) < 0) {
        CHECK(0, "gptqd did not start");
        return;
    }
    chmod(d.dir, 0711); /* the other user reaches the socket */
    int s = td_connect(&d, 20000);
    char folder[PATH_MAX];
    path_of(folder, models, "tiny");
    td_load_wait(s, "tiny", folder, 60);
    uint64_t roots = long_eval(s, "tiny", text);
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return;
    pid_t kid = fork();
    if (kid == 0) {
        /* nanomsg does not survive fork(): a fresh process as uid 65534 */
        char fd[16], job_arg[32];
        snprintf(fd, sizeof fd, "%d", pipefd[1]);
        snprintf(job_arg, sizeof job_arg, "%llu", (unsigned long long)roots);
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(2);
        execl("/proc/self/exe", "test_daemon_boundary", "--as-other-uid", d.url, job_arg, text,
              fd, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char verdict[4] = "";
    ssize_t got = read(pipefd[0], verdict, 3);
    close(pipefd[0]);
    waitpid(kid, NULL, 0);
    printf("7. uid 65534: cancel of root's job refused %c, forced unload of root's model refused "
           "%c, its own job cancelled %c\n", verdict[0], verdict[1], verdict[2]);
    CHECK(got == 3 && !memcmp(verdict, "yyy", 3), "verdict '%.3s'", verdict);
    CHECK(cancel(s, roots, NULL, 0) == 0, "root cancels its own job");
    nn_close(s);
    td_stop(&d);
}

/* The other user's side of test 7 (a fresh exec as uid 65534): may not
 * touch root's job or model; its own job is its to cancel. Writes 3 bytes
 * y/n to the report fd. */
static int as_other_uid(char **argv)
{
    td_daemon d;
    memset(&d, 0, sizeof d);
    snprintf(d.url, sizeof d.url, "%s", argv[2]);
    uint64_t roots = strtoull(argv[3], NULL, 10);
    const char *text = argv[4];
    int report = atoi(argv[5]);
    char verdict[4] = "nnn", msg[512] = "";
    int c = td_connect(&d, 20000);
    verdict[0] = cancel(c, roots, msg, sizeof msg) == GPTQ_ERR_PERMISSION ? 'y' : 'n';
    Gptqd__Request req;
    Gptqd__UnloadRequest u = GPTQD__UNLOAD_REQUEST__INIT;
    td_request_init(&req);
    u.name = "tiny";
    u.force = 1;
    req.body_case = GPTQD__REQUEST__BODY_UNLOAD;
    req.unload = &u;
    verdict[1] = simple_status(c, &req, msg, sizeof msg) == GPTQ_ERR_PERMISSION ? 'y' : 'n';
    uint64_t mine = long_eval(c, "tiny", text);
    verdict[2] = mine && cancel(c, mine, msg, sizeof msg) == 0 ? 'y' : 'n';
    if (memcmp(verdict, "yyy", 3))
        fprintf(stderr, "uid %u: '%.3s', last message '%s'\n", (unsigned)getuid(), verdict, msg);
    return write(report, verdict, 3) == 3 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--as-other-uid") == 0)
        return as_other_uid(argv);
    td_child_main(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/gptqd\n", argv[0]);
        return 2;
    }
    static char fixdir[PATH_MAX];
    fixtures = getenv("GPTQ_FIXTURES");
    if (!fixtures || !realpath(fixtures, fixdir)) {
        printf("SKIP: fixtures not found (GPTQ_FIXTURES)\n");
        return 77;
    }
    fixtures = fixdir;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(models, sizeof models, "%s/gptqd-boundary-XXXXXX", tmp);
    snprintf(outside, sizeof outside, "%s/gptqd-outside-XXXXXX", tmp);
    if (!mkdtemp(models) || !mkdtemp(outside)) {
        perror("mkdtemp");
        return 1;
    }
    chmod(models, 0755);
    copy_model(models, "tiny");
    /* a long text for evals that take seconds */
    char text[PATH_MAX], src[PATH_MAX];
    path_of(text, models, "long.txt");
    snprintf(src, sizeof src, "%s/tiny-llama/calib.txt", fixtures);
    copy_file(src, text);

    td_daemon d;
    const char *args[] = {"--model-dir", models, "--workers", "4", NULL};
    if (td_start(&d, argv[1], args) < 0)
        return 1;
    int s = td_connect(&d, 20000);
    test_fifos(s);
    test_race(s);
    test_links(s);
    test_truncate(s, &d);
    nn_close(s);
    td_stop(&d);
    test_cancel_and_stop(argv[1], text);
    test_kill_during_save(argv[1]);
    test_other_uid(argv[1], text);

    char cmd[2 * PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", models, outside);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", models);
    return test_result();
}
