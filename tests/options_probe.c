/* tests/options_probe.c: one job's options through the library, or through
 * gptqd, for tests/test_options.py (which compares both with gptqctl).
 *
 *   options_probe lib JOB [NAME VALUE]...
 *       the library's struct for JOB (quantize, eval, infer) at its
 *       defaults, each NAME set to VALUE with the library's setter, then the
 *       whole struct checked: what gptqd and gptqctl call.
 *   options_probe daemon SOCKET MODEL JOB [NAME VALUE]...
 *       the options in libgptqclient's struct (the rest unset), JOB started
 *       on MODEL through the client library: gptqd validates the request
 *       before it looks MODEL up, so a model that is not resident tells a
 *       value it accepted (NOTFOUND) from one it refused (ARG).
 *
 * NAME static-groups takes 1 or 0 (a flag of gptqctl's); NAME method (daemon
 * route only) a method's name, sent as it is.
 * Prints "OK" or "STATUS<TAB>message" on one line; exit 0. A VALUE the
 * route cannot carry (a negative count in an unsigned field, a 0 that the
 * wire reads as unset, a NaN that libgptqclient reads as unset) exits 3
 * without asking anything. Numbers are read as
 * gptqctl reads them: strtod, a seed with strtoull. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gptq/client.h"
#include "model/options.h"

enum { CANNOT_CARRY = 3 };

static int cannot_carry(const char *name, const char *text)
{
    fprintf(stderr, "options_probe: %s %s: this route cannot carry it\n", name, text);
    return CANNOT_CARRY;
}

static int number(const char *text, double *v)
{
    char *end = NULL;
    *v = strtod(text, &end);
    return end != text && !*end;
}

static int seed_of(const char *text, uint64_t *v)
{
    char *end = NULL;
    errno = 0;
    *v = strtoull(text, &end, 10);
    return text[0] >= '0' && text[0] <= '9' && !*end && !errno;
}

/* A value for an unsigned wire field (0 reads as unset there). */
static int u32_of(const char *text, unsigned *v)
{
    double d;
    if (!number(text, &d) || d != floor(d) || d < 1 || d > UINT32_MAX)
        return 0;
    *v = (unsigned)d;
    return 1;
}

static void print_result(gptq_status st, const char *message)
{
    if (st)
        printf("%s\t%s\n", gptq_status_name(st), message);
    else
        printf("OK\n");
}

static int run_lib(const char *job, int n, char **nv)
{
    gptq_calib_options q;
    gptq_eval_params e;
    gptq_generate_params g;
    gptq_calib_options_default(&q);
    gptq_eval_params_default(&e);
    gptq_generate_params_default(&g);
    gptq_status st = GPTQ_OK;
    for (int i = 0; i + 1 < n && !st; i += 2) {
        const char *name = nv[i], *text = nv[i + 1];
        double v;
        if (!strcmp(name, "seed")) {
            uint64_t seed;
            if (!seed_of(text, &seed))
                return cannot_carry(name, text);
            q.seed = g.sample.seed = seed;
            continue;
        }
        if (!strcmp(name, "static-groups")) { /* a flag: gptqctl's --static-groups */
            q.quant.static_groups = atoi(text) != 0;
            continue;
        }
        if (!number(text, &v))
            return cannot_carry(name, text);
        if (!strcmp(job, "quantize"))
            st = gptq_calib_options_set(&q, name, v);
        else if (!strcmp(job, "eval"))
            st = gptq_eval_params_set(&e, name, v);
        else
            st = gptq_generate_params_set(&g, name, v);
    }
    if (!st)
        st = !strcmp(job, "quantize") ? gptq_calib_options_check(&q)
             : !strcmp(job, "eval")   ? gptq_eval_params_check(&e)
                                      : gptq_generate_params_check(&g);
    print_result(st, gptq_errmsg());
    return 0;
}

static int run_daemon(const char *socket, const char *model, const char *job, int n, char **nv)
{
    gptq_quantize_options q;
    gptq_eval_options e = {0};
    gptq_generate_options g;
    gptq_quantize_options_init(&q);
    gptq_generate_options_init(&g);
    for (int i = 0; i + 1 < n; i += 2) {
        const char *name = nv[i], *text = nv[i + 1];
        double v;
        int ok = 1;
        if (!strcmp(name, "seed")) {
            ok = seed_of(text, &q.seed);
            g.seed = q.seed;
            q.has_seed = g.has_seed = 1;
        } else if (!strcmp(name, "static-groups")) {
            q.static_groups = atoi(text) != 0;
        } else if (!strcmp(name, "method")) {
            q.method = text;
        } else if (!number(text, &v)) {
            ok = 0;
        } else if (!strcmp(name, "bits")) {
            ok = u32_of(text, &q.bits);
        } else if (!strcmp(name, "group-size")) {
            ok = v == floor(v) && v >= INT32_MIN && v <= INT32_MAX && v != 0;
            q.group_size = ok ? (int)v : 0;
        } else if (!strcmp(name, "damp")) {
            ok = !isnan(v); /* NaN is libgptqclient's unset */
            q.damp = (float)v;
        } else if (!strcmp(name, "nsamples")) {
            ok = u32_of(text, &q.nsamples);
        } else if (!strcmp(name, "seqlen")) {
            ok = u32_of(text, !strcmp(job, "eval") ? &e.seqlen : &q.seqlen);
        } else if (!strcmp(name, "block-size")) {
            ok = u32_of(text, &q.block_size);
        } else if (!strcmp(name, "max-windows")) { /* 0 = all is also what the wire's 0 says */
            ok = v == floor(v) && v >= 0 && v <= UINT32_MAX;
            e.max_windows = ok ? (unsigned)v : 0;
        } else if (!strcmp(name, "max-tokens")) {
            ok = u32_of(text, &g.max_tokens);
        } else if (!strcmp(name, "temperature")) {
            ok = !isnan(v);
            g.temperature = (float)v;
        } else if (!strcmp(name, "top-k")) {
            ok = v == floor(v) && v >= 0 && v <= UINT32_MAX; /* 0 is carried: has_top_k */
            g.top_k = ok ? (unsigned)v : 0;
            g.has_top_k = 1;
        } else if (!strcmp(name, "top-p")) {
            ok = !isnan(v);
            g.top_p = (float)v;
        } else {
            fprintf(stderr, "options_probe: no option %s\n", name);
            return 2;
        }
        if (!ok)
            return cannot_carry(name, text);
    }
    gptq_client *c = NULL;
    gptq_status st = gptq_client_connect(socket, &c);
    if (st) {
        print_result(st, gptq_errmsg());
        return 0;
    }
    char new_name[96];
    snprintf(new_name, sizeof new_name, "%s-q", model);
    gptq_job_id id = 0;
    if (!strcmp(job, "quantize"))
        st = gptq_client_quantize(c, model, new_name, &q, &id);
    else if (!strcmp(job, "eval"))
        st = gptq_client_eval(c, model, &e, &id);
    else
        st = gptq_client_generate(c, model, "hello", &g, &id);
    if (!st) /* a model that is resident: the options started a job; stop it */
        gptq_client_cancel(c, id);
    print_result(st, gptq_client_errmsg(c));
    gptq_client_close(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "lib") && argc % 2 == 1)
        return run_lib(argv[2], argc - 3, argv + 3);
    if (argc >= 5 && !strcmp(argv[1], "daemon") && argc % 2 == 1)
        return run_daemon(argv[2], argv[3], argv[4], argc - 5, argv + 5);
    fprintf(stderr, "usage: options_probe lib JOB [NAME VALUE]...\n"
                    "       options_probe daemon SOCKET MODEL JOB [NAME VALUE]...\n");
    return 2;
}
