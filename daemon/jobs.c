/* daemon/jobs.c: the job table: one thread per job, a bounded event ring,
 * polls that wait on a condition variable for at most a second. */
#include "daemon/jobs.h"

#include "common/interrupt.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/wire_check.h"
#include "daemon/log.h"

enum { EVENT_TEXT_MAX = 1024, POLL_WAIT_CAP_MS = 1000, POLL_REPLY_BYTES = 256 * 1024 };

struct gptqd_job {
    gptqd_jobs *table;
    uint64_t id;
    char kind[16];
    char model[80];
    char client[64];
    uid_t uid;         /* who started it (gptqd_caller); cancel is theirs */
    int heavy;
    gptqd_job_fn fn;
    void *arg;
    gptqd_job_free_fn free_arg;

    /* Under table->lock: */
    gptqd_job_state state;
    double t_start, t_end; /* monotonic seconds; t_start when RUNNING */
    double fraction;
    gptqd_event *ring;     /* [table->max_events] */
    uint64_t n_total;      /* events ever appended: the next seq */
    int waiters;           /* polls waiting on `changed` or copying */
    pthread_cond_t changed;
    pthread_t thread;
    int thread_started;
    int32_t result_status;
    char *result_message;

    atomic_int cancel;
    gptqd_job_result result; /* written by the work function only */
};

struct gptqd_jobs {
    pthread_mutex_t lock;
    pthread_cond_t heavy_free;
    gptqd_job **slots; /* [max_jobs], NULL = empty */
    int max_jobs, keep_seconds, max_events, max_waiters;
    int waiting_polls;
    int heavy_running;
    uint64_t next_id;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int is_final(gptqd_job_state s)
{
    return s == GPTQD_JOB_DONE || s == GPTQD_JOB_FAILED || s == GPTQD_JOB_CANCELED;
}

const char *gptqd_job_state_name(gptqd_job_state state)
{
    static const char *const names[] = {"queued", "running", "done", "failed", "canceled"};
    return (unsigned)state < 5 ? names[state] : "?";
}

static int cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (!rc)
        rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

gptq_status gptqd_jobs_create(int max_jobs, int keep_seconds, int max_events, int max_waiters,
                              gptqd_jobs **out)
{
    gptq_status st = GPTQ_OK;
    gptqd_jobs *jobs = calloc(1, sizeof *jobs);
    MEM_TRY(jobs, "job table");
    jobs->slots = calloc((size_t)max_jobs, sizeof *jobs->slots);
    MEM_TRY(jobs->slots, "job table of %d", max_jobs);
    jobs->max_jobs = max_jobs;
    jobs->keep_seconds = keep_seconds;
    jobs->max_events = max_events;
    jobs->max_waiters = max_waiters;
    jobs->next_id = 1;
    PT_TRY(pthread_mutex_init(&jobs->lock, NULL), "job table mutex");
    PT_TRY(cond_init_monotonic(&jobs->heavy_free), "job table condition");
    *out = jobs;
    return GPTQ_OK;
fail:
    if (jobs)
        free(jobs->slots);
    free(jobs);
    return st;
}

static void free_result(gptqd_job_result *r)
{
    free(r->text);
    free(r->saved_dir);
    memset(r, 0, sizeof *r);
}

/* Frees a job whose thread has been joined. */
static void job_free(gptqd_job *job)
{
    if (job->ring) {
        for (int i = 0; i < job->table->max_events; i++)
            free(job->ring[i].text);
        free(job->ring);
    }
    if (job->free_arg && job->arg)
        job->free_arg(job->arg);
    free(job->result_message);
    free_result(&job->result);
    pthread_cond_destroy(&job->changed);
    free(job);
}

/* Appends an event under the table lock; the ring drops the oldest. */
static void append_event(gptqd_job *job, gptqd_event_kind kind, const char *text, size_t len,
                         int32_t token, double fraction, double value)
{
    gptqd_jobs *jobs = job->table;
    char *copy = NULL;
    if (len > EVENT_TEXT_MAX)
        len = EVENT_TEXT_MAX;
    copy = malloc(len + 1);
    if (!copy) {
        gptqd_log(LOG_WARNING, "job %llu: event dropped: out of memory",
                  (unsigned long long)job->id);
        return;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    double t = now_s();
    pthread_mutex_lock(&jobs->lock);
    gptqd_event *e = &job->ring[job->n_total % (uint64_t)jobs->max_events];
    free(e->text);
    *e = (gptqd_event){.seq = job->n_total, .kind = kind, .text = copy, .token = token,
                       .fraction = fraction, .value = value,
                       .seconds = job->t_start > 0 ? t - job->t_start : 0};
    job->n_total++;
    if (kind == GPTQD_EVENT_PROGRESS)
        job->fraction = fraction;
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&jobs->lock);
}

int gptqd_job_canceled(const gptqd_job *job) { return atomic_load(&job->cancel); }
uint64_t gptqd_job_id(const gptqd_job *job) { return job->id; }
gptqd_job_result *gptqd_job_result_of(gptqd_job *job) { return &job->result; }

void gptqd_job_log(gptqd_job *job, const char *fmt, ...)
{
    char text[EVENT_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    append_event(job, GPTQD_EVENT_LOG, text, strlen(text), 0, 0, 0);
}

void gptqd_job_progress(gptqd_job *job, double fraction, double value, const char *fmt, ...)
{
    char text[EVENT_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    append_event(job, GPTQD_EVENT_PROGRESS, text, strlen(text), 0, fraction, value);
}

void gptqd_job_token(gptqd_job *job, int32_t token, const char *bytes, size_t len)
{
    append_event(job, GPTQD_EVENT_TOKEN, bytes, len, token, 0, 0);
}

/* The libraries' long loops ask this (common/interrupt.h) on the job's
 * thread: a cancel or a daemon stop ends them within one layer or block. */
static int job_interrupted(void *p)
{
    return atomic_load(&((gptqd_job *)p)->cancel);
}

static void *job_thread(void *p)
{
    gptqd_job *job = p;
    gptqd_jobs *jobs = job->table;

    pthread_mutex_lock(&jobs->lock);
    if (job->heavy) {
        /* Heavy jobs (quantize) take the machine: one at a time. */
        while (jobs->heavy_running > 0 && !atomic_load(&job->cancel))
            pthread_cond_wait(&jobs->heavy_free, &jobs->lock);
        if (!atomic_load(&job->cancel))
            jobs->heavy_running++;
    }
    int canceled_early = atomic_load(&job->cancel);
    if (!canceled_early) {
        job->state = GPTQD_JOB_RUNNING;
        job->t_start = now_s();
        pthread_cond_broadcast(&job->changed);
    }
    pthread_mutex_unlock(&jobs->lock);

    gptq_clear_error();
    gptq_interrupt_set(job_interrupted, job);
    gptq_status st = canceled_early ? GPTQ_ERR_CANCELED : job->fn(job, job->arg);
    gptq_interrupt_set(NULL, NULL);
    char *message = NULL;
    if (st != GPTQ_OK) {
        const char *msg = gptq_errmsg();
        if (st == GPTQ_ERR_CANCELED && !msg[0])
            msg = "canceled";
        message = strdup(msg[0] ? msg : gptq_status_name(st));
    }
    /* The model and other references are released before the job is seen
     * as finished, so that a client may unload right after DONE. */
    if (job->free_arg && job->arg)
        job->free_arg(job->arg);
    job->arg = NULL;

    pthread_mutex_lock(&jobs->lock);
    if (job->heavy && !canceled_early) {
        jobs->heavy_running--;
        pthread_cond_broadcast(&jobs->heavy_free);
    }
    job->result_status = (int32_t)st;
    job->result_message = message;
    job->state = st == GPTQ_OK ? GPTQD_JOB_DONE
               : st == GPTQ_ERR_CANCELED ? GPTQD_JOB_CANCELED : GPTQD_JOB_FAILED;
    job->t_end = now_s();
    if (job->t_start == 0)
        job->t_start = job->t_end;
    job->result.seconds = job->t_end - job->t_start;
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&jobs->lock);

    if (st == GPTQ_OK)
        gptqd_log(LOG_INFO, "job %llu (%s %s): done in %.2f s", (unsigned long long)job->id,
                  job->kind, job->model, job->result.seconds);
    else
        gptqd_log(LOG_NOTICE, "job %llu (%s %s): %s: %s", (unsigned long long)job->id,
                  job->kind, job->model, gptqd_job_state_name(job->state),
                  message ? message : "");
    return NULL;
}

/* Removes finished, unwatched jobs; all of them with `force`, else only
 * those older than keep_seconds. Returns the jobs to join and free in *out
 * (called with the lock held; joining happens outside it). */
static size_t take_reapable(gptqd_jobs *jobs, int oldest_only, gptqd_job **out)
{
    double t = now_s();
    size_t n = 0;
    int oldest = -1;
    for (int i = 0; i < jobs->max_jobs; i++) {
        gptqd_job *job = jobs->slots[i];
        if (!job || !is_final(job->state) || job->waiters > 0)
            continue;
        if (oldest_only) {
            if (oldest < 0 || job->t_end < jobs->slots[oldest]->t_end)
                oldest = i;
        } else if (t - job->t_end >= jobs->keep_seconds) {
            out[n++] = job;
            jobs->slots[i] = NULL;
        }
    }
    if (oldest_only && oldest >= 0) {
        out[n++] = jobs->slots[oldest];
        jobs->slots[oldest] = NULL;
    }
    return n;
}

static void join_and_free(gptqd_job **dead, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (dead[i]->thread_started)
            pthread_join(dead[i]->thread, NULL);
        job_free(dead[i]);
    }
}

gptq_status gptqd_jobs_start(gptqd_jobs *jobs, const char *kind, const char *model,
                             const gptqd_caller *caller, int heavy, gptqd_job_fn fn, void *arg,
                             gptqd_job_free_fn free_arg, uint64_t *id)
{
    gptq_status st = GPTQ_OK;
    gptqd_job *job = calloc(1, sizeof *job);
    if (!job) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "job: out of memory");
        if (free_arg && arg)
            free_arg(arg);
        return st;
    }
    job->table = jobs;
    job->fn = fn;
    job->arg = arg;
    job->free_arg = free_arg;
    job->heavy = heavy;
    job->state = GPTQD_JOB_QUEUED;
    snprintf(job->kind, sizeof job->kind, "%s", kind);
    snprintf(job->model, sizeof job->model, "%s", model ? model : "");
    snprintf(job->client, sizeof job->client, "%s", caller->name);
    job->uid = caller->known ? caller->uid : geteuid(); /* the daemon's own work */
    job->ring = calloc((size_t)jobs->max_events, sizeof *job->ring);
    if (!job->ring || cond_init_monotonic(&job->changed) != 0) {
        free(job->ring);
        job->ring = NULL;
        if (free_arg && arg)
            free_arg(arg);
        free(job);
        return gptq_fail(GPTQ_ERR_NOMEM, "job: out of memory");
    }

    gptqd_job *dead[1];
    size_t n_dead = 0;
    pthread_mutex_lock(&jobs->lock);
    int slot = -1;
    for (int i = 0; i < jobs->max_jobs && slot < 0; i++)
        if (!jobs->slots[i])
            slot = i;
    if (slot < 0) {
        /* Full: make room by reaping the oldest finished job early. */
        n_dead = take_reapable(jobs, 1, dead);
        for (int i = 0; i < jobs->max_jobs && slot < 0; i++)
            if (!jobs->slots[i])
                slot = i;
    }
    if (slot < 0) {
        pthread_mutex_unlock(&jobs->lock);
        st = gptq_fail(GPTQ_ERR_LIMIT,
                       "job table full (max-jobs %d running or watched): retry when jobs finish",
                       jobs->max_jobs);
        job->arg = arg;
        job_free(job);
        return st;
    }
    job->id = jobs->next_id++;
    jobs->slots[slot] = job;
    int rc = pthread_create(&job->thread, NULL, job_thread, job);
    if (rc != 0) {
        jobs->slots[slot] = NULL;
        pthread_mutex_unlock(&jobs->lock);
        join_and_free(dead, n_dead);
        job_free(job);
        return gptq_fail(GPTQ_ERR_NOMEM, "job thread: %s", strerror(rc));
    }
    job->thread_started = 1;
    *id = job->id;
    pthread_mutex_unlock(&jobs->lock);
    join_and_free(dead, n_dead);
    gptqd_log(LOG_INFO, "job %llu: %s %s for %s", (unsigned long long)*id, kind,
              model ? model : "", caller->name);
    return GPTQ_OK;
}

static gptqd_job *find_locked(gptqd_jobs *jobs, uint64_t id)
{
    for (int i = 0; i < jobs->max_jobs; i++)
        if (jobs->slots[i] && jobs->slots[i]->id == id)
            return jobs->slots[i];
    return NULL;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

gptq_status gptqd_jobs_poll(gptqd_jobs *jobs, uint64_t id, uint64_t since, uint32_t wait_ms,
                            size_t max_reply, gptqd_poll *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&jobs->lock);
    gptqd_job *job = find_locked(jobs, id);
    if (!job) {
        pthread_mutex_unlock(&jobs->lock);
        return gptq_fail(GPTQ_ERR_NOTFOUND, "job %llu: no such job (finished jobs are kept "
                         "%d s)", (unsigned long long)id, jobs->keep_seconds);
    }
    job->waiters++;
    if (wait_ms > 0 && since >= job->n_total && !is_final(job->state) &&
        jobs->waiting_polls < jobs->max_waiters) {
        uint32_t ms = wait_ms < POLL_WAIT_CAP_MS ? wait_ms : POLL_WAIT_CAP_MS;
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += ms / 1000;
        deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L)
            deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
        jobs->waiting_polls++;
        while (since >= job->n_total && !is_final(job->state)) {
            if (pthread_cond_timedwait(&job->changed, &jobs->lock, &deadline) != 0)
                break;
        }
        jobs->waiting_polls--;
    }
    uint64_t first = job->n_total > (uint64_t)jobs->max_events
                         ? job->n_total - (uint64_t)jobs->max_events : 0;
    if (since < first)
        since = first;
    uint64_t end = job->n_total;
    if (since > end)
        since = end;
    if (end - since > max_reply)
        end = since + max_reply;
    /* Keep a reply well under a client's default 1 MiB receive limit. */
    size_t text_bytes = 0;
    for (uint64_t s = since; s < end; s++) {
        const gptqd_event *e = &job->ring[s % (uint64_t)jobs->max_events];
        text_bytes += (e->text ? strlen(e->text) : 0) + 64;
        if (text_bytes > POLL_REPLY_BYTES && s > since) {
            end = s;
            break;
        }
    }
    out->job = id;
    out->state = job->state;
    out->next = end;
    out->events = end > since ? calloc((size_t)(end - since), sizeof *out->events) : NULL;
    gptq_status st = GPTQ_OK;
    if (end > since && !out->events) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "poll: out of memory");
    } else {
        for (uint64_t s = since; s < end; s++) {
            const gptqd_event *e = &job->ring[s % (uint64_t)jobs->max_events];
            gptqd_event *c = &out->events[out->n_events++];
            *c = *e;
            c->text = dup_or_null(e->text);
        }
        /* A job that has finished reports its end only once every event was read. */
        if (end < job->n_total && is_final(out->state))
            out->state = GPTQD_JOB_RUNNING;
        if (is_final(out->state)) {
            out->result_status = job->result_status;
            out->result_message = dup_or_null(job->result_message);
            out->result = job->result;
            out->result.text = dup_or_null(job->result.text);
            out->result.saved_dir = dup_or_null(job->result.saved_dir);
        }
    }
    job->waiters--;
    pthread_mutex_unlock(&jobs->lock);
    if (st)
        gptqd_poll_free(out);
    return st;
}

void gptqd_poll_free(gptqd_poll *poll)
{
    for (size_t i = 0; i < poll->n_events; i++)
        free(poll->events[i].text);
    free(poll->events);
    free(poll->result_message);
    free_result(&poll->result);
    memset(poll, 0, sizeof *poll);
}

gptq_status gptqd_jobs_cancel(gptqd_jobs *jobs, uint64_t id, const gptqd_caller *caller)
{
    gptq_status st = GPTQ_OK;
    pthread_mutex_lock(&jobs->lock);
    gptqd_job *job = find_locked(jobs, id);
    if (!job)
        st = gptq_fail(GPTQ_ERR_NOTFOUND, "job %llu: no such job", (unsigned long long)id);
    else if (!gptqd_auth_may_act_for(caller, job->uid))
        st = gptq_fail(GPTQ_ERR_PERMISSION, "job %llu belongs to uid %u: only it, root or "
                       "gptqd's own user may cancel it", (unsigned long long)id,
                       (unsigned)job->uid);
    else if (is_final(job->state))
        st = gptq_fail(GPTQ_ERR_ARG, "job %llu already finished (%s): nothing to cancel",
                       (unsigned long long)id, gptqd_job_state_name(job->state));
    else {
        atomic_store(&job->cancel, 1);
        pthread_cond_broadcast(&jobs->heavy_free);
    }
    pthread_mutex_unlock(&jobs->lock);
    if (!st)
        gptqd_log(LOG_INFO, "job %llu: cancel requested", (unsigned long long)id);
    return st;
}

gptq_status gptqd_jobs_list(gptqd_jobs *jobs, gptqd_job_info **infos, size_t *n)
{
    *infos = NULL;
    *n = 0;
    pthread_mutex_lock(&jobs->lock);
    gptqd_job_info *list = calloc((size_t)jobs->max_jobs, sizeof *list);
    if (!list) {
        pthread_mutex_unlock(&jobs->lock);
        return gptq_fail(GPTQ_ERR_NOMEM, "jobs: out of memory");
    }
    double t = now_s();
    size_t count = 0;
    for (int i = 0; i < jobs->max_jobs; i++) {
        const gptqd_job *job = jobs->slots[i];
        if (!job)
            continue;
        gptqd_job_info *info = &list[count++];
        info->id = job->id;
        memcpy(info->kind, job->kind, sizeof info->kind);
        memcpy(info->model, job->model, sizeof info->model);
        memcpy(info->client, job->client, sizeof info->client);
        info->uid = job->uid;
        info->state = job->state;
        if (is_final(job->state)) {
            info->result_status = job->result_status;
            snprintf(info->result_message, sizeof info->result_message, "%s",
                     job->result_message ? job->result_message : "");
            if (job->state == GPTQD_JOB_DONE) {
                info->result = job->result;
                info->result.text = NULL; /* the list shows figures, not whole texts */
                info->result.saved_dir = NULL;
                snprintf(info->saved_dir, sizeof info->saved_dir, "%s",
                         job->result.saved_dir ? job->result.saved_dir : "");
            }
        }
        info->fraction = job->state == GPTQD_JOB_DONE ? 1.0 : job->fraction;
        info->seconds = job->t_start == 0 ? 0 : (is_final(job->state) ? job->t_end : t) -
                                                    job->t_start;
    }
    pthread_mutex_unlock(&jobs->lock);
    /* Oldest first: ids grow with time. */
    for (size_t i = 1; i < count; i++)
        for (size_t j = i; j > 0 && list[j - 1].id > list[j].id; j--) {
            gptqd_job_info tmp = list[j];
            list[j] = list[j - 1];
            list[j - 1] = tmp;
        }
    *infos = list;
    *n = count;
    return GPTQ_OK;
}

void gptqd_jobs_counts(gptqd_jobs *jobs, unsigned *running, unsigned *queued)
{
    *running = *queued = 0;
    pthread_mutex_lock(&jobs->lock);
    for (int i = 0; i < jobs->max_jobs; i++) {
        const gptqd_job *job = jobs->slots[i];
        if (job && job->state == GPTQD_JOB_RUNNING)
            (*running)++;
        else if (job && job->state == GPTQD_JOB_QUEUED)
            (*queued)++;
    }
    pthread_mutex_unlock(&jobs->lock);
}

void gptqd_jobs_reap(gptqd_jobs *jobs)
{
    gptqd_job **dead = calloc((size_t)jobs->max_jobs, sizeof *dead);
    if (!dead)
        return; /* next tick */
    pthread_mutex_lock(&jobs->lock);
    size_t n = take_reapable(jobs, 0, dead);
    pthread_mutex_unlock(&jobs->lock);
    join_and_free(dead, n);
    free(dead);
}

void gptqd_jobs_cancel_all(gptqd_jobs *jobs)
{
    pthread_mutex_lock(&jobs->lock);
    for (int i = 0; i < jobs->max_jobs; i++)
        if (jobs->slots[i])
            atomic_store(&jobs->slots[i]->cancel, 1);
    pthread_cond_broadcast(&jobs->heavy_free);
    pthread_mutex_unlock(&jobs->lock);
}

int gptqd_jobs_cancel_model(gptqd_jobs *jobs, const char *model)
{
    int n = 0;
    pthread_mutex_lock(&jobs->lock);
    for (int i = 0; i < jobs->max_jobs; i++) {
        gptqd_job *job = jobs->slots[i];
        if (job && (job->state == GPTQD_JOB_QUEUED || job->state == GPTQD_JOB_RUNNING) &&
            strcmp(job->model, model) == 0) {
            atomic_store(&job->cancel, 1);
            n++;
        }
    }
    pthread_cond_broadcast(&jobs->heavy_free);
    pthread_mutex_unlock(&jobs->lock);
    return n;
}

int gptqd_jobs_wait_idle(gptqd_jobs *jobs, double seconds)
{
    double end = now_s() + seconds;
    for (;;) {
        unsigned running, queued;
        gptqd_jobs_counts(jobs, &running, &queued);
        if (running + queued == 0)
            return 1;
        if (now_s() >= end)
            return 0;
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

void gptqd_jobs_destroy(gptqd_jobs *jobs)
{
    if (!jobs)
        return;
    gptqd_jobs_cancel_all(jobs);
    /* Workers have stopped before this is called: nobody polls any more. */
    for (int i = 0; i < jobs->max_jobs; i++) {
        gptqd_job *job = jobs->slots[i];
        if (!job)
            continue;
        if (job->thread_started)
            pthread_join(job->thread, NULL);
        job_free(job);
    }
    pthread_mutex_destroy(&jobs->lock);
    pthread_cond_destroy(&jobs->heavy_free);
    free(jobs->slots);
    free(jobs);
}
