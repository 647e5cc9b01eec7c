/* daemon/main.c: gptqd: settings, start-up (bind, preloads, READY=1), the
 * main loop (watchdog, lease and job reaping, STATUS=) and a clean stop on
 * SIGTERM/SIGINT. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "daemon/daemon.h"
#include "daemon/engine.h"
#include "daemon/jobs.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/registry.h"
#include "daemon/server.h"
#include "daemon/share.h"
#include "daemon/tasks.h"
#include "kernels/cpu/blas_core.h"
#include "kernels/turns.h"

enum { TICK_MS = 1000, MAX_EVENTS_PER_JOB = 16384 };
/* A stop waits this long for canceled jobs (systemd's TimeoutStopSec is
 * longer: the unit asks for 10 s). */
#define STOP_WAIT_S 4.0

/* Set by the signal handler: which thread takes a signal is the kernel's
 * choice (OpenBLAS starts its threads before main, with nothing blocked),
 * so the main loop does not rely on sigtimedwait alone. */
static volatile sig_atomic_t stop_signal, hup_signal;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        hup_signal = 1;
    else
        stop_signal = sig;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void status_line(gptqd_ctx *ctx, char *line, size_t len)
{
    uint32_t models;
    uint64_t bytes, limit;
    unsigned running, queued;
    gptqd_registry_totals(ctx->registry, &models, &bytes, &limit, NULL, NULL);
    gptqd_jobs_counts(ctx->jobs, &running, &queued);
    snprintf(line, len, "%u model%s (%.1f MiB of %s memory), %u job%s running, %u queued",
             models, models == 1 ? "" : "s", (double)bytes / (1024.0 * 1024.0),
             gptqd_engine_memory_kind(), running, running == 1 ? "" : "s", queued);
}

/* Loads the configured preloads one after the other, keeping the watchdog
 * fed. A failed preload is logged and skipped: the daemon still serves. */
static void preload(gptqd_ctx *ctx, uint64_t watchdog_us)
{
    /* the daemon's own: its user owns what it preloads */
    const gptqd_caller preload_caller = {.known = 1, .uid = geteuid(), .pid = getpid(),
                                         .name = "preload"};
    const gptqd_conf *conf = ctx->conf;
    for (int i = 0; i < conf->n_preloads; i++) {
        const gptqd_preload *p = &conf->preloads[i];
        gptqd_place place;
        uint64_t id = 0;
        gptq_status st = gptqd_place_trusted(p->path, &place);
        if (!st)
            st = gptqd_task_load(ctx, &preload_caller, p->name, &place, ctx->conf->head, &id);
        gptqd_poll poll = {0};
        for (uint64_t since = 0; !st && !stop_signal;) {
            st = gptqd_jobs_poll(ctx->jobs, id, since, TICK_MS, 64, &poll);
            if (st)
                break;
            since = poll.next;
            int finished = poll.state != GPTQD_JOB_QUEUED && poll.state != GPTQD_JOB_RUNNING;
            if (finished && poll.state != GPTQD_JOB_DONE)
                st = gptq_fail((gptq_status)poll.result_status, "%s",
                               poll.result_message ? poll.result_message : "failed");
            gptqd_poll_free(&poll);
            if (watchdog_us)
                gptqd_notify_watchdog();
            if (finished)
                break;
        }
        if (st)
            gptqd_log(LOG_ERR, "preload %s=%s failed: %s (continuing without it)", p->name,
                      p->path, gptq_errmsg());
    }
}

int main(int argc, char **argv)
{
    gptqd_conf conf;
    gptqd_ctx ctx = {.conf = &conf, .t_start = now_s()};
    gptqd_server *server = NULL;
    int exit_code = 1, action = 0;

    if (gptqd_conf_init(&conf) != GPTQ_OK) {
        gptqd_log(LOG_ERR, "%s", gptq_errmsg());
        return 1;
    }
    if (gptqd_conf_from_args(&conf, argc, argv, &action) != GPTQ_OK) {
        gptqd_log(LOG_ERR, "%s", gptq_errmsg());
        gptqd_conf_free(&conf);
        return 2;
    }
    if (action) {
        gptqd_conf_free(&conf);
        return 0;
    }
    gptqd_log_set_level(conf.log_level);

    /* Signals are taken synchronously by the main loop; every thread started
     * from here on inherits the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    struct sigaction handler;
    memset(&handler, 0, sizeof handler);
    handler.sa_handler = on_signal;
    sigemptyset(&handler.sa_mask);
    sigaction(SIGTERM, &handler, NULL);
    sigaction(SIGINT, &handler, NULL);
    sigaction(SIGHUP, &handler, NULL);
    signal(SIGPIPE, SIG_IGN);

    uint64_t watchdog_us = gptqd_notify_init();
    gptqd_share_reap_stale();
    for (int i = 0; i < conf.n_model_dirs; i++) {
        int removed = gptqd_engine_clean_stale_saves(conf.model_dirs[i]);
        if (removed > 0)
            gptqd_log(LOG_NOTICE, "removed %d unfinished save folder%s (*.tmp.PID) left in %s by "
                      "a gptqd that no longer runs", removed, removed == 1 ? "" : "s",
                      conf.model_dirs[i]);
    }
    gptq_turns_enable(); /* jobs take turns at the compute, a layer at a time */
    if (gptqd_engine_init(conf.device, conf.socket_group) != GPTQ_OK ||
        gptqd_jobs_create(conf.max_jobs, conf.job_keep_seconds, MAX_EVENTS_PER_JOB,
                          conf.workers > 2 ? conf.workers - 2 : 1, &ctx.jobs) != GPTQ_OK ||
        gptqd_registry_create(conf.memory_limit, &ctx.registry) != GPTQ_OK) {
        gptqd_log(LOG_ERR, "%s", gptq_errmsg());
        goto done;
    }
    /* decode loops charge their KV caches to memory-limit as they grow */
    gptqd_engine_set_kv(conf.kv_slots, conf.kv_context, gptqd_registry_kv_charge, ctx.registry);
    if (gptqd_server_start(&ctx, &server) != GPTQ_OK ||
        gptqd_auth_start(&conf, &ctx.auth) != GPTQ_OK) {
        gptqd_log(LOG_ERR, "%s", gptq_errmsg());
        goto done;
    }
    if (conf.n_model_dirs == 0)
        gptqd_log(LOG_NOTICE, "no model-dir configured: clients cannot load models (only "
                              "preloads are resident)");
    /* The socket is bound, so clients may connect; their requests wait
     * until the preloads are resident and the workers start. */
    preload(&ctx, watchdog_us);
    if (gptqd_server_serve(server) != GPTQ_OK) {
        gptqd_log(LOG_ERR, "%s", gptq_errmsg());
        goto done;
    }

    char line[256];
    status_line(&ctx, line, sizeof line);
    gptqd_notify_ready(line);
    gptqd_log(LOG_NOTICE, "gptqd %s ready on %s: %s (OpenBLAS kernels: %s)", GPTQD_VERSION,
              conf.socket, line, gptq_cpu_blas_core());

    long tick_ms = TICK_MS;
    if (watchdog_us && watchdog_us / 1000 < (uint64_t)tick_ms)
        tick_ms = (long)(watchdog_us / 1000) > 1 ? (long)(watchdog_us / 1000) : 1;
    for (;;) {
        struct timespec timeout = {tick_ms / 1000, (tick_ms % 1000) * 1000000L};
        int sig = stop_signal ? stop_signal : sigtimedwait(&stop_signals, NULL, &timeout);
        if (sig < 0 && stop_signal)
            sig = stop_signal;
        if (sig == SIGTERM || sig == SIGINT) {
            gptqd_log(LOG_NOTICE, "signal %d: stopping", sig);
            break;
        }
        if (sig == SIGHUP || hup_signal) {
            hup_signal = 0;
            gptqd_log(LOG_NOTICE, "SIGHUP: configuration reload is not supported; restart "
                                  "gptqd to apply changes");
        }
        if (watchdog_us)
            gptqd_notify_watchdog();
        gptqd_registry_reap_leases(ctx.registry);
        gptqd_jobs_reap(ctx.jobs);
        status_line(&ctx, line, sizeof line);
        gptqd_notify_status(line);
    }
    gptqd_notify_stopping();
    exit_code = 0;
done:
    /* A stop must end within the unit's TimeoutStopSec (5 s is the goal):
     * the jobs are canceled first (their long loops look every layer or
     * GPTQ block), then the requests, then whatever is left. */
    double t_stop = now_s();
    if (ctx.jobs)
        gptqd_jobs_cancel_all(ctx.jobs);
    gptqd_server_stop(server); /* no new requests; waiting polls end within a tick; the
                                  socket file goes with it */
    gptqd_auth_stop(ctx.auth);
    if (ctx.jobs && !gptqd_jobs_wait_idle(ctx.jobs, STOP_WAIT_S - (now_s() - t_stop))) {
        /* A job that does not stop in time: leave no shared memory or
         * socket behind and go, without waiting for it. */
        gptqd_share_unlink_own();
        gptqd_log(LOG_WARNING, "jobs still running %.1f s after the stop: exiting without "
                  "them", now_s() - t_stop);
        gptqd_conf_free(&conf);
        _exit(exit_code);
    }
    gptqd_jobs_destroy(ctx.jobs); /* joins every job */
    gptqd_registry_destroy(ctx.registry);
    gptqd_engine_shutdown();
    gptqd_log(LOG_INFO, "stopped in %.2f s", now_s() - t_stop);
    gptqd_conf_free(&conf);
    return exit_code;
}
