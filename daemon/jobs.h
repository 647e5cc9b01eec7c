/* daemon/jobs.h: the job table. Anything that takes more than a few
 * milliseconds (load, quantize, generate, eval, save) runs as a job in its
 * own thread; clients poll its bounded event log (progress events, streamed
 * tokens) and its result, and may cancel it. Finished jobs stay in the table
 * for job-keep-seconds, then the main loop reaps them; the table never holds
 * more than max-jobs jobs. */
#ifndef GPTQD_JOBS_H
#define GPTQD_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/auth.h"
#include "gptq/error.h"

/* Same numbers as gptqd.proto's JobState and EventKind. */
typedef enum gptqd_job_state {
    GPTQD_JOB_QUEUED = 0,
    GPTQD_JOB_RUNNING = 1,
    GPTQD_JOB_DONE = 2,
    GPTQD_JOB_FAILED = 3,
    GPTQD_JOB_CANCELED = 4,
} gptqd_job_state;

typedef enum gptqd_event_kind {
    GPTQD_EVENT_LOG = 0,
    GPTQD_EVENT_PROGRESS = 1,
    GPTQD_EVENT_TOKEN = 2,
} gptqd_event_kind;

typedef struct gptqd_event {
    uint64_t seq;
    gptqd_event_kind kind;
    char *text; /* owned */
    int32_t token;
    double fraction, value, seconds;
} gptqd_event;

/* What a job produced; filled by the work function before it returns. */
typedef struct gptqd_job_result {
    char model[80];
    double perplexity;
    uint64_t tokens;
    uint32_t seqlen;
    double kl;
    int has_kl;
    char *text;      /* malloc'ed or NULL; the table frees it */
    uint32_t generated;
    double seconds;
    char *saved_dir; /* malloc'ed or NULL */
} gptqd_job_result;

typedef struct gptqd_job gptqd_job;
typedef struct gptqd_jobs gptqd_jobs;

/* The work of a job: runs in the job's thread, checks gptqd_job_canceled
 * between steps, reports with the event functions below, fills
 * gptqd_job_result. Returns GPTQ_OK (DONE), GPTQ_ERR_CANCELED (CANCELED) or
 * another status with the thread's gptq message set (FAILED). */
typedef gptq_status (*gptqd_job_fn)(gptqd_job *job, void *arg);
/* Releases `arg` once the job has ended (or failed to start). */
typedef void (*gptqd_job_free_fn)(void *arg);

/* max_events: the event log's capacity (a ring: pollers that fall further
 * behind see a gap in seq). max_waiters: polls that may wait at once (keep
 * it below the number of request workers so waiting polls cannot starve
 * other requests). */
gptq_status gptqd_jobs_create(int max_jobs, int keep_seconds, int max_events, int max_waiters,
                              gptqd_jobs **out);
/* Cancels every job, waits for their threads, frees the table. */
void gptqd_jobs_destroy(gptqd_jobs *jobs);

/* Start a job. kind: "load", "quantize", ...; heavy jobs (quantize) run one
 * at a time and wait QUEUED for their turn. On failure `free_arg(arg)` has
 * been called. Errors: GPTQ_ERR_LIMIT (table full). */
gptq_status gptqd_jobs_start(gptqd_jobs *jobs, const char *kind, const char *model,
                             const gptqd_caller *caller, int heavy, gptqd_job_fn fn, void *arg,
                             gptqd_job_free_fn free_arg, uint64_t *id);

/* For work functions. */
int gptqd_job_canceled(const gptqd_job *job);
uint64_t gptqd_job_id(const gptqd_job *job);
gptqd_job_result *gptqd_job_result_of(gptqd_job *job);
void gptqd_job_log(gptqd_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gptqd_job_progress(gptqd_job *job, double fraction, double value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void gptqd_job_token(gptqd_job *job, int32_t token, const char *bytes, size_t len);

/* A copy of a job's state for one Poll reply. */
typedef struct gptqd_poll {
    uint64_t job;
    gptqd_job_state state;
    gptqd_event *events;
    size_t n_events;
    uint64_t next;
    int32_t result_status;
    char *result_message;
    gptqd_job_result result; /* valid when state == DONE; strings are copies */
} gptqd_poll;

/* Events with seq >= since (at most max_reply of them). If there are none
 * and the job is not finished, waits up to min(wait_ms, 1000) ms for one.
 * Errors: GPTQ_ERR_NOTFOUND (unknown or reaped job). */
gptq_status gptqd_jobs_poll(gptqd_jobs *jobs, uint64_t id, uint64_t since, uint32_t wait_ms,
                            size_t max_reply, gptqd_poll *out);
void gptqd_poll_free(gptqd_poll *poll);

/* Errors: GPTQ_ERR_NOTFOUND, GPTQ_ERR_ARG (already finished),
 * GPTQ_ERR_PERMISSION (the job is another uid's: gptqd_auth_may_act_for). */
gptq_status gptqd_jobs_cancel(gptqd_jobs *jobs, uint64_t id, const gptqd_caller *caller);

typedef struct gptqd_job_info {
    uint64_t id;
    char kind[16];
    char model[80];
    char client[64];
    uid_t uid;
    gptqd_job_state state;
    double fraction, seconds;
    /* once it ended: */
    int32_t result_status;
    char result_message[512];
    gptqd_job_result result; /* DONE: the figures (text and saved_dir NULL) */
    char saved_dir[512];
} gptqd_job_info;

/* A malloc'ed snapshot of the table, oldest first; free() it. */
gptq_status gptqd_jobs_list(gptqd_jobs *jobs, gptqd_job_info **infos, size_t *n);
void gptqd_jobs_counts(gptqd_jobs *jobs, unsigned *running, unsigned *queued);

/* Joins and frees finished jobs older than keep_seconds; main loop. */
void gptqd_jobs_reap(gptqd_jobs *jobs);

/* Asks every job to stop (shutdown). */
void gptqd_jobs_cancel_all(gptqd_jobs *jobs);

/* Asks every queued or running job on `model` to stop; returns how many. */
int gptqd_jobs_cancel_model(gptqd_jobs *jobs, const char *model);

/* Waits up to `seconds` for no job to be queued or running; 1 if so. */
int gptqd_jobs_wait_idle(gptqd_jobs *jobs, double seconds);

const char *gptqd_job_state_name(gptqd_job_state state);

#endif
