/* tests/test_daemon_harness.h: what the gptqd integration tests share: start
 * a real gptqd on a private socket in a temporary folder (always killed at
 * exit, and by the kernel if the test dies), raw nanomsg REQ calls, RSS. */
#ifndef GPTQ_TEST_DAEMON_HARNESS_H
#define GPTQ_TEST_DAEMON_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include "gptqd.pb-c.h"

typedef struct td_daemon {
    pid_t pid;
    char dir[256];  /* temporary folder, removed by td_stop */
    char sock[320]; /* dir/gptqd.sock */
    char url[340];  /* ipc://sock */
} td_daemon;

/* Start `gptqd` (path) with --socket in a new temp folder plus extra args
 * (NULL-terminated, may be NULL; --device cpu unless they name a device)
 * and wait until it answers a Ping.
 * Returns 0, or -1 with a message on stderr. */
int td_start(td_daemon *d, const char *gptqd, const char *const *args);
/* SIGTERM, wait (SIGKILL after 10 s); returns the exit status or -1. */
int td_stop(td_daemon *d);

/* A REQ socket connected to d, with send/receive timeouts in ms; -1 on error. */
int td_connect(const td_daemon *d, int timeout_ms);

/* Get this process a session token from d's <socket>.auth (td_connect does
 * it each time); 0 or -1. td_forget_session drops it (requests go
 * anonymous). */
int td_authenticate(const td_daemon *d);
void td_forget_session(void);

/* A Request with version, client and session set, body to be filled by the
 * caller. */
void td_request_init(Gptqd__Request *req);
/* Send `req`, return the unpacked Response (free with
 * gptqd__response__free_unpacked(r, NULL)) or NULL on a transport error. */
Gptqd__Response *td_call(int sock, const Gptqd__Request *req);
/* The same with raw bytes. */
Gptqd__Response *td_call_raw(int sock, const void *bytes, size_t len);

/* Poll a job until it finishes (or timeout_s passes); returns the last
 * Response (the caller frees it) or NULL. */
Gptqd__Response *td_wait_job(int sock, uint64_t job, double timeout_s);

/* Send Load of `path` as `name`; the Response (the caller frees it) or NULL. */
Gptqd__Response *td_load(int sock, const char *name, const char *path);
/* Load and wait up to timeout_s for the load job; the job's id, 0 if none
 * started (a refused load, whose message is then printed). */
uint64_t td_load_wait(int sock, const char *name, const char *path, double timeout_s);

/* A client in another process (a fresh exec of this test program) sends a
 * Poll that waits on `job` and exits before the reply. Returns 0 if it got
 * its request out. The test's main must begin with td_child_main. */
int td_vanish_poll(const char *self, const td_daemon *d, uint64_t job);
/* Runs the child side when argv asks for it (never returns then); else -1. */
int td_child_main(int argc, char **argv);

/* VmRSS of pid in KiB, -1 if unreadable. */
long td_rss_kb(pid_t pid);

double td_now(void);

#endif
