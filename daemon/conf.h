/* daemon/conf.h: gptqd's settings, from a key = value config file and from
 * flags (the same keys as --key VALUE; flags override the file).
 *
 * Keys: socket, socket-group, device, model-dir (repeatable), preload
 * NAME=PATH (repeatable), log-level, memory-limit BYTES[K|M|G],
 * max-message-size, max-jobs, workers, job-keep-seconds, kv-slots, kv-context. */
#ifndef GPTQD_CONF_H
#define GPTQD_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"

enum { GPTQD_MAX_LIST = 32 };

typedef struct gptqd_preload {
    char *name, *path;
} gptqd_preload;

typedef struct gptqd_conf {
    char *socket;              /* filesystem path of the ipc:// socket */
    char *socket_group;        /* NULL: the daemon's group */
    char *device;              /* "auto", "cpu", "cuda:N" */
    char *model_dirs[GPTQD_MAX_LIST];
    int n_model_dirs;
    gptqd_preload preloads[GPTQD_MAX_LIST];
    int n_preloads;
    int log_level;             /* syslog priority */
    uint64_t memory_limit;     /* bytes of resident weights in the serving
                                  memory (device on CUDA, else host); 0: none */
    uint64_t max_message_bytes;
    int max_jobs;              /* jobs in the table, running and finished */
    int workers;               /* request worker threads */
    int job_keep_seconds;      /* finished jobs are reaped after this */
    int kv_slots;              /* sequences one model's decode loop batches */
    int kv_context;            /* positions per sequence (capped by the model's) */
    int head;                  /* grid of the output matrix's serving copy for loads that
                                  do not choose (and preloads): GPTQ_GRID_NONE or _Q8_0 */
} gptqd_conf;

/* Defaults; the socket path from GPTQD_SOCKET, else $XDG_RUNTIME_DIR/gptqd.sock
 * for a user, /run/gptqd/gptqd.sock for root (docs/ARCHITECTURE.md "The command line"). */
gptq_status gptqd_conf_init(gptqd_conf *conf);

/* Set one key (file or flag spelling, without "--"). Repeatable keys append.
 * Errors: GPTQ_ERR_ARG naming the key and the accepted values. */
gptq_status gptqd_conf_set(gptqd_conf *conf, const char *key, const char *value);

/* Read a config file: "key = value" lines, '#' comments, blank lines.
 * Errors name the file and line. */
gptq_status gptqd_conf_load_file(gptqd_conf *conf, const char *path);

/* Parse argv: finds --config first and loads it, then applies every flag
 * on top; a repeatable key given as a flag replaces the file's list.
 * *action: 0 run, 1 --help printed, 2 --version printed. */
gptq_status gptqd_conf_from_args(gptqd_conf *conf, int argc, char **argv, int *action);

/* "4M", "1G", "123" (K/M/G binary). -1 on a bad value. */
int gptqd_parse_bytes(const char *text, uint64_t *out);

void gptqd_conf_free(gptqd_conf *conf);

#endif
