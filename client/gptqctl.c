/* client/gptqctl.c: the command line of gptqd (docs/ARCHITECTURE.md "The command line"): global
 * options, help, dispatch to a verb, and the exit status that tells usage
 * errors, failed requests and an unreachable daemon apart. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "client/ctl.h"

volatile sig_atomic_t ctl_interrupted;

/* First Ctrl-C: cancel the running job and exit 130 once the daemon says it
 * stopped. A second one: leave at once. */
static void on_signal(int sig)
{
    (void)sig;
    if (ctl_interrupted)
        _exit(CTL_EXIT_INTERRUPTED);
    ctl_interrupted = 1;
}

/* A verb's text, its continuation lines indented by `indent` spaces, and
 * each "{NAME}" replaced by the default of the verb's option NAME as the
 * library defines it (so help never states a default of its own). */
static void print_text(FILE *f, const ctl_verb *v, const char *text, int indent)
{
    for (const char *s = text; *s; s++) {
        const char *close = *s == '{' ? strchr(s, '}') : NULL;
        if (close && v->option) {
            char name[32], def[48];
            snprintf(name, sizeof name, "%.*s", (int)(close - s - 1), s + 1);
            const gptq_option *opt = v->option(name);
            if (opt) {
                gptq_option_default_text(opt, def, sizeof def);
                fputs(def, f);
                s = close;
                continue;
            }
        }
        fputc(*s, f);
        if (*s == '\n' && s[1])
            fprintf(f, "%*s", indent, "");
    }
}

static void print_main_help(FILE *f)
{
    fprintf(f,
            "usage: gptqctl [--socket PATH] [--json] VERB ...\n"
            "\n"
            "Talk to gptqd, the GPTQ model-serving daemon.\n"
            "\n"
            "verbs:\n");
    for (size_t i = 0; i < ctl_n_verbs; i++) {
        fprintf(f, "  %-9s ", ctl_verbs[i].name);
        print_text(f, &ctl_verbs[i], ctl_verbs[i].synopsis, 16);
        fputc('\n', f);
    }
    fprintf(f,
            "\n"
            "options:\n"
            "  --socket PATH  the daemon's socket (default: $GPTQD_SOCKET, else\n"
            "                 $XDG_RUNTIME_DIR/gptqd.sock, /run/gptqd/gptqd.sock for root)\n"
            "  --json         print one JSON object per verb on stdout, nothing else\n"
            "  -h, --help     this help; `gptqctl help VERB` or `gptqctl VERB --help` for a verb\n"
            "\n"
            "exit status: 0 ok, 1 the request failed, 2 usage error, 3 cannot reach the\n"
            "daemon, 130 interrupted (the running job is cancelled).\n");
}

void ctl_print_verb_help(const ctl_verb *v)
{
    printf("usage: gptqctl [--socket PATH] [--json] %s ", v->name);
    print_text(stdout, v, v->synopsis, 8);
    printf("\n\n");
    print_text(stdout, v, v->help, 0);
}

const ctl_verb *ctl_find_verb(const char *name)
{
    for (size_t i = 0; i < ctl_n_verbs; i++)
        if (strcmp(ctl_verbs[i].name, name) == 0)
            return &ctl_verbs[i];
    return NULL;
}

int ctl_usage_error(const char *verb, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "gptqctl%s%s: ", verb ? " " : "", verb ? verb : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see gptqctl %s%s)\n", verb ? verb : "--help", verb ? " --help" : "");
    return CTL_EXIT_USAGE;
}

int ctl_connect(const ctl_globals *g, gptq_client **out)
{
    gptq_status st = gptq_client_connect(g->socket, out);
    if (st == GPTQ_OK) {
        gptq_client_set_name(*out, "gptqctl");
        return 0;
    }
    return ctl_fail(g, NULL, NULL, st);
}

int ctl_fail(const ctl_globals *g, const char *verb, gptq_client *c, gptq_status st)
{
    const char *msg = gptq_client_errmsg(c);
    if (!msg || !msg[0])
        msg = gptq_status_name(st);
    int code = st == GPTQ_ERR_UNREACHABLE                           ? CTL_EXIT_UNREACHABLE
               : st == GPTQ_ERR_CANCELED && ctl_interrupted          ? CTL_EXIT_INTERRUPTED
                                                                     : CTL_EXIT_FAILED;
    fprintf(stderr, "gptqctl%s%s: %s\n", verb ? " " : "", verb ? verb : "", msg);
    if (g->json) {
        json_t *o = json_pack("{s:{s:s, s:i, s:s}}", "error", "status", gptq_status_name(st),
                              "code", (int)st, "message", msg);
        if (o) {
            json_dumpf(o, stdout, JSON_COMPACT);
            fputc('\n', stdout);
            json_decref(o);
        }
    }
    return code;
}

int ctl_parse_long(const char *verb, const char *opt, const char *text, long lo, long hi,
                   long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return ctl_usage_error(verb, "%s '%s': expected an integer from %ld to %ld", opt, text,
                               lo, hi);
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    ctl_globals g = {0};
    static const struct option options[] = {
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int opt;
    /* '+': stop at the verb; its options are the verb's. */
    while ((opt = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (!optarg[0])
                return ctl_usage_error(NULL, "--socket needs a path");
            g.socket = optarg;
            break;
        case 'j':
            g.json = 1;
            break;
        case 'h':
            print_main_help(stdout);
            return CTL_EXIT_OK;
        case ':':
            return ctl_usage_error(NULL, "%s needs a value", argv[optind - 1]);
        default:
            return ctl_usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) {
        print_main_help(stderr);
        return CTL_EXIT_USAGE;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        if (optind + 1 >= argc) {
            print_main_help(stdout);
            return CTL_EXIT_OK;
        }
        const ctl_verb *v = ctl_find_verb(argv[optind + 1]);
        if (!v)
            return ctl_usage_error(NULL, "no verb '%s'", argv[optind + 1]);
        ctl_print_verb_help(v);
        return CTL_EXIT_OK;
    }
    const ctl_verb *v = ctl_find_verb(name);
    if (!v)
        return ctl_usage_error(NULL, "no verb '%s'", name);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask); /* no SA_RESTART: a blocked receive returns to look */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int verb_at = optind;
    optind = 0; /* GNU getopt: full reinitialisation for the verb's own parse */
    int code = v->run(&g, argc - verb_at, argv + verb_at);
    if (ctl_interrupted && code == CTL_EXIT_OK)
        code = CTL_EXIT_INTERRUPTED;
    fflush(stdout);
    return code;
}
