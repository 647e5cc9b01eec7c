/* client/ctl.h: what the files of gptqctl share: exit codes, the global
 * options, the verb table and the progress display. */
#ifndef GPTQ_CLIENT_CTL_H
#define GPTQ_CLIENT_CTL_H

#include <signal.h>
#include <stddef.h>

#include "common/options.h"
#include "gptq/client.h"

/* Exit status (docs/ARCHITECTURE.md "The command line"). */
enum {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAILED = 1,      /* the request failed: the daemon's message on stderr */
    CTL_EXIT_USAGE = 2,
    CTL_EXIT_UNREACHABLE = 3, /* cannot reach the daemon */
    CTL_EXIT_INTERRUPTED = 130,
};

typedef struct ctl_globals {
    const char *socket; /* NULL: the library's default */
    int json;
} ctl_globals;

/* Set by SIGINT/SIGTERM; a running job is cancelled when it becomes 1. */
extern volatile sig_atomic_t ctl_interrupted;

/* A verb: argv[0] is the verb's name; returns the exit status. */
typedef struct ctl_verb {
    const char *name;
    const char *synopsis; /* the options, as in docs/ARCHITECTURE.md "The command line" */
    const char *help;     /* what it does and each option, for `VERB --help` */
    int (*run)(const ctl_globals *g, int argc, char **argv);
    /* The library's option NAME of this verb's job (NULL: none): "{NAME}" in
     * synopsis and help prints its default, from the library's table. */
    const gptq_option *(*option)(const char *name);
} ctl_verb;

extern const ctl_verb ctl_verbs[];
extern const size_t ctl_n_verbs;

/* ---- helpers shared by the verbs (gptqctl.c) ---- */

/* Print "gptqctl VERB: message (see ...)" on stderr; returns CTL_EXIT_USAGE. */
int ctl_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The verb called `name`, or NULL. */
const ctl_verb *ctl_find_verb(const char *name);

/* Print a verb's help on stdout. */
void ctl_print_verb_help(const ctl_verb *v);

/* Connect as the globals say; on failure prints the message and returns
 * the exit status to use (*out NULL), else 0. */
int ctl_connect(const ctl_globals *g, gptq_client **out);

/* Report a failed call (stderr; with --json also {"error": ...} on stdout)
 * and return its exit status: 3 unreachable, 130 interrupted, else 1. */
int ctl_fail(const ctl_globals *g, const char *verb, gptq_client *c, gptq_status st);

/* Strict integer parsing (job ids): 0 on success, else a usage error was
 * printed and the return is CTL_EXIT_USAGE. */
int ctl_parse_long(const char *verb, const char *opt, const char *text, long lo, long hi,
                   long *out);

/* ---- paths.c ---- */

/* An absolute form of `path` for the daemon, whose working directory is not
 * ours: realpath when it exists, else cwd-joined. Returns a malloc'ed string
 * or NULL (message printed). */
char *ctl_absolute_path(const char *verb, const char *path);

/* ---- progress.c ---- */

typedef struct ctl_progress ctl_progress;

/* A display of one job's events on stderr: a redrawn bar when stderr is a
 * terminal, plain lines otherwise; with stream_tokens, TOKEN events go to
 * stdout as they come. `label` names the job ("quantize tiny"). */
ctl_progress *ctl_progress_new(const char *label, int stream_tokens);
/* Clear the bar (if drawn) and free. Ends a token stream with a newline. */
void ctl_progress_free(ctl_progress *p);
/* The gptq_client_event_fn to pass to gptq_client_wait with p as user. */
int ctl_progress_event(void *user, const gptq_client_event *event);

#endif
