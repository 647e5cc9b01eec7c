/* tests/fake_daemon.h: a scripted gptqd for client tests: a REP socket in
 * a thread of the test process that speaks proto/gptqd.proto with fixed
 * replies and records what it was asked (last paths, options, client name,
 * cancels, unmaps), so a test checks the client side alone. Its Map hands
 * out a small shm arena of known floats (1.5, -2, 3.25, 0, 42, -0.5). */
#ifndef GPTQ_TESTS_FAKE_DAEMON_H
#define GPTQ_TESTS_FAKE_DAEMON_H

#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#include "gptqd.pb-c.h"

enum { FAKE_MAX_JOBS = 64, FAKE_MAX_EVENTS = 8 };

typedef struct fake_event {
    Gptqd__EventKind kind;
    const char *text;
    double fraction;
} fake_event;

typedef struct fake_job {
    uint64_t id;
    const char *kind;
    char model[64];
    int n_events;
    fake_event events[FAKE_MAX_EVENTS];
    int endless;  /* runs until cancelled */
    int canceled;
    int fails;    /* ends FAILED with NOTFOUND */
    int together; /* the last event comes in the reply that says DONE */
    const char *text;
} fake_job;

typedef struct fake_daemon {
    pthread_mutex_t lock;
    int sock;
    pthread_t thread;
    fake_job jobs[FAKE_MAX_JOBS];
    int n_jobs;
    char last_path[PATH_MAX];     /* of the last Load / Save / Eval text / Quantize calib */
    char last_save_dir[PATH_MAX]; /* of the last Quantize */
    Gptqd__QuantizeRequest last_quantize;
    Gptqd__GenerateRequest last_generate;
    int cancels;
    int unmaps;
    int endless_polls; /* polls of endless jobs: gptqctl is following one */
    char last_client[64];
    uint32_t last_pid;
    char shm_name[64];
    char sock_path[PATH_MAX]; /* what Status reports */
} fake_daemon;

/* The fake's state; hold fake.lock to read what it recorded. */
extern fake_daemon fake;

/* Bind sock_path (exits on failure), create the arena, start the thread. */
void fake_start(const char *sock_path);
/* Close the socket, join the thread, remove the arena. */
void fake_stop(void);

#endif
