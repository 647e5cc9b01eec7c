/* client/verbs.c: gptqctl's verbs (docs/ARCHITECTURE.md, "The command
 * line"): each parses its options
 * (usage errors before any connection, so they exit 2 without a daemon),
 * makes its request, follows the job if there is one, and prints either
 * lines for people or, with --json, exactly one JSON object on stdout. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "client/ctl.h"
#include "model/options.h"

/* ---- shared by the verbs ------------------------------------------------------------ */

/* Print one JSON object on stdout and take it over. */
static int emit_json(json_t *o)
{
    if (!o) {
        fprintf(stderr, "gptqctl: out of memory building the JSON reply\n");
        return CTL_EXIT_FAILED;
    }
    json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10));
    fputc('\n', stdout);
    json_decref(o);
    return CTL_EXIT_OK;
}

static const char *human_bytes(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

enum { OPT_HELP = 'h' };

/* The options every verb has. */
#define VERB_COMMON_OPTIONS {"help", no_argument, NULL, OPT_HELP}

/* Report getopt's verdict on an unknown option or a missing value. */
static int bad_option(const char *verb, int opt, char **argv)
{
    if (opt == ':')
        return ctl_usage_error(verb, "%s needs a value", argv[optind - 1]);
    return ctl_usage_error(verb, "unknown option '%s'", argv[optind - 1]);
}

static int extra_arg(const char *verb, int argc, char **argv, int used)
{
    if (argc - optind > used)
        return ctl_usage_error(verb, "unexpected argument '%s'", argv[optind + used]);
    return 0;
}

/* Follow the job a request just started (start: that request's status) with
 * a progress display labelled "VERB NAME"; *result is set on success. */
static int follow_job(const ctl_globals *g, gptq_client *c, const char *verb, const char *name,
                      gptq_status start, gptq_job_id job, int stream_tokens,
                      gptq_client_result **result)
{
    if (start != GPTQ_OK)
        return ctl_fail(g, verb, c, start);
    char label[256];
    snprintf(label, sizeof label, "%s %s", verb, name);
    ctl_progress *p = ctl_progress_new(label, stream_tokens);
    if (!p) {
        fprintf(stderr, "gptqctl %s: out of memory\n", verb);
        return CTL_EXIT_FAILED;
    }
    gptq_status st = gptq_client_wait(c, job, ctl_progress_event, p,
                                      (volatile int *)&ctl_interrupted, result);
    ctl_progress_free(p);
    if (st != GPTQ_OK)
        return ctl_fail(g, verb, c, st);
    return CTL_EXIT_OK;
}

/* ---- job options: the library's (docs/ARCHITECTURE.md "Options") ----------------------
 * --NAME of quantize, eval and infer is the library's option NAME: gptqctl
 * only reads the number and hands it to the library, which checks it against
 * its table and refuses it with the message gptqd would send; that refusal
 * is a usage error here (exit 2), found before connecting. */

/* The number in `text`, given as --NAME: 0, or a usage error when it is none. */
static int option_number(const char *verb, const char *name, const char *text, double *v)
{
    char *end = NULL;
    *v = strtod(text, &end);
    if (end == text || *end)
        return ctl_usage_error(verb, "--%s '%s': not a number", name, text);
    return 0;
}

/* The library's refusal of an option's value, as a usage error. */
static int option_refused(const char *verb)
{
    return ctl_usage_error(verb, "%s", gptq_errmsg());
}

/* A seed: every uint64_t is legal (model/options.c), so a number that does
 * not fit one (negative, fractional, too large) gets the library's message
 * for the text as given. */
static int option_seed(const char *verb, const gptq_option *opt, const char *text, uint64_t *v)
{
    char *end = NULL;
    double d;
    errno = 0;
    if (text[0] >= '0' && text[0] <= '9') {
        *v = strtoull(text, &end, 10);
        if (!*end && !errno)
            return 0;
    }
    int rc = option_number(verb, opt->name, text, &d);
    if (!rc) {
        gptq_option_refuse(opt, text);
        rc = option_refused(verb);
    }
    return rc;
}

/* Every verb's parse loop starts the same way: options of `longopts`, -h. */
#define PARSE_BEGIN(verb_, longopts_)                                                             \
    opterr = 0;                                                                                   \
    int opt;                                                                                      \
    while ((opt = getopt_long(argc, argv, ":h", (longopts_), NULL)) != -1) {                      \
        switch (opt) {                                                                            \
        case OPT_HELP:                                                                            \
            ctl_print_verb_help(ctl_find_verb(verb_));                                            \
            return CTL_EXIT_OK;

#define PARSE_END(verb_)                                                                          \
        default:                                                                                  \
            return bad_option((verb_), opt, argv);                                                \
        }                                                                                         \
    }

/* ---- status ------------------------------------------------------------------------ */

static int verb_status(const ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {VERB_COMMON_OPTIONS, {0, 0, 0, 0}};
    PARSE_BEGIN("status", longopts)
    PARSE_END("status")
    int rc = extra_arg("status", argc, argv, 0);
    if (rc)
        return rc;
    gptq_client *c = NULL;
    gptq_client_status_info *s = NULL;
    if ((rc = ctl_connect(g, &c)))
        return rc;
    gptq_status st = gptq_client_status(c, &s);
    if (st != GPTQ_OK) {
        rc = ctl_fail(g, "status", c, st);
        goto out;
    }
    if (g->json) {
        rc = emit_json(json_pack(
            "{s:s, s:I, s:s, s:I, s:{s:s, s:s, s:s, s:I, s:I}, s:{s:I, s:I, s:I, s:I}, "
            "s:{s:I, s:I, s:I}}",
            "version", s->daemon_version, "pid", (json_int_t)s->pid, "socket", s->socket,
            "uptime_s", (json_int_t)s->uptime_s, "backend", "name", s->backend, "device",
            s->device, "note", s->backend_note, "bytes_total", (json_int_t)s->device_bytes_total,
            "bytes_free", (json_int_t)s->device_bytes_free, "memory", "resident_bytes",
            (json_int_t)s->resident_bytes, "limit", (json_int_t)s->memory_limit,
            "host_bytes", (json_int_t)s->resident_host_bytes, "device_bytes",
            (json_int_t)s->resident_device_bytes, "counts",
            "models", (json_int_t)s->models, "jobs_running", (json_int_t)s->jobs_running,
            "jobs_queued", (json_int_t)s->jobs_queued));
        goto out;
    }
    char b1[32], b2[32], b3[32], b4[32];
    printf("gptqd %s, pid %u, up %" PRIu64 " s, socket %s\n", s->daemon_version, s->pid,
           s->uptime_s, s->socket[0] ? s->socket : gptq_client_socket(c));
    printf("backend  %s on %s%s%s%s\n", s->backend, s->device, s->backend_note[0] ? " (" : "",
           s->backend_note, s->backend_note[0] ? ")" : "");
    printf("memory   %s resident%s, %s free of %s on the device, limit %s\n",
           human_bytes(s->resident_bytes, b1, sizeof b1),
           s->resident_device_bytes ? " in device memory" : "",
           human_bytes(s->device_bytes_free, b2, sizeof b2),
           human_bytes(s->device_bytes_total, b3, sizeof b3),
           s->memory_limit ? human_bytes(s->memory_limit, b4, sizeof b4) : "none");
    printf("models   %u\njobs     %u running, %u queued\n", s->models, s->jobs_running,
           s->jobs_queued);
out:
    gptq_client_status_free(s);
    gptq_client_close(c);
    return rc;
}

/* ---- list ------------------------------------------------------------------------- */

static int verb_list(const ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {VERB_COMMON_OPTIONS, {0, 0, 0, 0}};
    PARSE_BEGIN("list", longopts)
    PARSE_END("list")
    int rc = extra_arg("list", argc, argv, 0);
    if (rc)
        return rc;
    gptq_client *c = NULL;
    gptq_client_models *list = NULL;
    if ((rc = ctl_connect(g, &c)))
        return rc;
    gptq_status st = gptq_client_list(c, &list);
    if (st != GPTQ_OK) {
        rc = ctl_fail(g, "list", c, st);
        goto out;
    }
    if (g->json) {
        json_t *models = json_array();
        for (size_t i = 0; models && i < list->n; i++) {
            const gptq_client_model *m = &list->models[i];
            json_array_append_new(
                models, json_pack("{s:s, s:s, s:I, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I, "
                                  "s:s, s:I, s:I, s:I, s:I}",
                                  "name", m->name, "arch", m->arch, "params",
                                  (json_int_t)m->params, "format", m->format, "bytes",
                                  (json_int_t)m->bytes, "leases", (json_int_t)m->leases,
                                  "source", m->source, "bits", (json_int_t)m->bits,
                                  "group_size", (json_int_t)m->group_size, "layers",
                                  (json_int_t)m->layers, "hidden", (json_int_t)m->hidden,
                                  "vocab", (json_int_t)m->vocab, "memory", m->memory,
                                  "host_bytes", (json_int_t)m->host_bytes, "device_bytes",
                                  (json_int_t)m->device_bytes, "kv_bytes",
                                  (json_int_t)m->kv_bytes, "context", (json_int_t)m->context));
        }
        rc = emit_json(models ? json_pack("{s:o}", "models", models) : NULL);
        goto out;
    }
    if (list->n == 0) {
        printf("no resident models (load one: gptqctl load NAME PATH)\n");
        goto out;
    }
    printf("%-20s %-18s %-22s %10s %10s %10s %6s  %s\n", "NAME", "ARCH", "FORMAT", "PARAMS",
           "BYTES", "KV CACHE", "LEASES", "SOURCE");
    for (size_t i = 0; i < list->n; i++) {
        const gptq_client_model *m = &list->models[i];
        char b[32], kv[32];
        printf("%-20s %-18s %-22s %9.2fM %10s %10s %6u  %s\n", m->name, m->arch, m->format,
               (double)m->params / 1e6, human_bytes(m->bytes, b, sizeof b),
               human_bytes(m->kv_bytes, kv, sizeof kv), m->leases, m->source);
    }
out:
    gptq_client_models_free(list);
    gptq_client_close(c);
    return rc;
}

/* ---- load / unload / save ------------------------------------------------------------- */

static int verb_load(const ctl_globals *g, int argc, char **argv)
{
    gptq_load_options o = {0};
    static const struct option longopts[] = {
        VERB_COMMON_OPTIONS, {"head", required_argument, NULL, 'H'}, {0, 0, 0, 0}};
    PARSE_BEGIN("load", longopts)
    case 'H':
        if (strcmp(optarg, "q8_0") && strcmp(optarg, "none"))
            return ctl_usage_error("load", "--head %s: use q8_0 or none", optarg);
        o.head = optarg;
        break;
    PARSE_END("load")
    if (argc - optind < 2)
        return ctl_usage_error("load", "needs NAME and PATH");
    int rc = extra_arg("load", argc, argv, 2);
    if (rc)
        return rc;
    const char *name = argv[optind];
    char *path = ctl_absolute_path("load", argv[optind + 1]);
    if (!path)
        return CTL_EXIT_FAILED;
    gptq_client *c = NULL;
    gptq_job_id job = 0;
    gptq_client_result *res = NULL;
    if ((rc = ctl_connect(g, &c))) {
        free(path);
        return rc;
    }
    gptq_status st = gptq_client_load_with(c, name, path, &o, &job);
    rc = follow_job(g, c, "load", name, st, job, 0, &res);
    gptq_client_close(c);
    if (res && g->json) /* res is NULL after a failure (reported) */
        rc = emit_json(json_pack("{s:s, s:s, s:f}", "model", name, "path", path, "seconds",
                                 res->seconds));
    else if (res)
        printf("%s: loaded from %s in %.1f s\n", name, path, res->seconds);
    gptq_client_result_free(res);
    free(path);
    return rc;
}

static int verb_unload(const ctl_globals *g, int argc, char **argv)
{
    int force = 0;
    static const struct option longopts[] = {
        VERB_COMMON_OPTIONS, {"force", no_argument, NULL, 'f'}, {0, 0, 0, 0}};
    PARSE_BEGIN("unload", longopts)
    case 'f':
        force = 1;
        break;
    PARSE_END("unload")
    if (argc - optind < 1)
        return ctl_usage_error("unload", "needs NAME");
    int rc = extra_arg("unload", argc, argv, 1);
    if (rc)
        return rc;
    const char *name = argv[optind];
    gptq_client *c = NULL;
    if ((rc = ctl_connect(g, &c)))
        return rc;
    gptq_status st = gptq_client_unload(c, name, force);
    if (st != GPTQ_OK)
        rc = ctl_fail(g, "unload", c, st);
    else if (g->json)
        rc = emit_json(json_pack("{s:s, s:b, s:b}", "model", name, "unloaded", 1, "forced",
                                 force));
    else
        printf("%s: unloaded\n", name);
    gptq_client_close(c);
    return rc;
}

static int verb_save(const ctl_globals *g, int argc, char **argv)
{
    gptq_save_options o = {0};
    static const struct option longopts[] = {
        VERB_COMMON_OPTIONS, {"dtype", required_argument, NULL, 'd'},
        {"format", required_argument, NULL, 'f'},
        {"embedding-type", required_argument, NULL, 'e'}, {0, 0, 0, 0}};
    PARSE_BEGIN("save", longopts)
    case 'd':
        if (strcmp(optarg, "f16") && strcmp(optarg, "bf16") && strcmp(optarg, "f32"))
            return ctl_usage_error("save", "--dtype %s: use f16, bf16 or f32", optarg);
        o.dtype = optarg;
        break;
    case 'f':
        if (strcmp(optarg, "v1") && strcmp(optarg, "v2") && strcmp(optarg, "gguf"))
            return ctl_usage_error("save", "--format %s: use v1, v2 or gguf", optarg);
        o.format = optarg;
        break;
    case 'e':
        if (strcmp(optarg, "q8_0") && strcmp(optarg, "f16") && strcmp(optarg, "bf16") &&
            strcmp(optarg, "f32") && !gptq_grid_is_block(gptq_grid_from_name(optarg)))
            return ctl_usage_error("save", "--embedding-type %s: use q8_0, q4_1, q5_0, q5_1, "
                                   "q2_k, q3_k, q4_k, q5_k, q6_k, f16, bf16 or f32", optarg);
        o.embedding_type = optarg;
        break;
    PARSE_END("save")
    if (argc - optind < 2)
        return ctl_usage_error("save", "needs NAME and DIR");
    int rc = extra_arg("save", argc, argv, 2);
    if (rc)
        return rc;
    const char *name = argv[optind];
    char *dir = ctl_absolute_path("save", argv[optind + 1]);
    if (!dir)
        return CTL_EXIT_FAILED;
    gptq_client *c = NULL;
    gptq_job_id job = 0;
    gptq_client_result *res = NULL;
    if ((rc = ctl_connect(g, &c))) {
        free(dir);
        return rc;
    }
    gptq_status st = gptq_client_save_with(c, name, dir, &o, &job);
    rc = follow_job(g, c, "save", name, st, job, 0, &res);
    gptq_client_close(c);
    const char *where = res && res->saved_dir[0] ? res->saved_dir : dir;
    if (res && g->json) /* res is NULL after a failure (reported) */
        rc = emit_json(json_pack("{s:s, s:s, s:f}", "model", name, "dir", where, "seconds",
                                 res->seconds));
    else if (res)
        printf("%s: saved to %s\n", name, where);
    gptq_client_result_free(res);
    free(dir);
    return rc;
}

/* ---- quantize -------------------------------------------------------------------------- */

enum {
    QO_AS = 256, QO_BITS, QO_GROUP, QO_ACT, QO_SYM, QO_ASYM, QO_STATIC, QO_DAMP, QO_CALIB,
    QO_NSAMPLES, QO_SEQLEN, QO_SEED, QO_SAVE, QO_BLOCK, QO_GRID, QO_MSE, QO_METHOD,
};

/* --NAME TEXT of quantize, checked into lib by the library. */
static int quantize_option(const char *name, const char *text, gptq_calib_options *lib)
{
    double v;
    int rc = option_number("quantize", name, text, &v);
    if (!rc && gptq_calib_options_set(lib, name, v))
        rc = option_refused("quantize");
    return rc;
}

static int verb_quantize(const ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        VERB_COMMON_OPTIONS,
        {"as", required_argument, NULL, QO_AS},
        {"bits", required_argument, NULL, QO_BITS},
        {"group-size", required_argument, NULL, QO_GROUP},
        {"act-order", no_argument, NULL, QO_ACT},
        {"sym", no_argument, NULL, QO_SYM},
        {"asym", no_argument, NULL, QO_ASYM},
        {"static-groups", no_argument, NULL, QO_STATIC},
        {"damp", required_argument, NULL, QO_DAMP},
        {"calib", required_argument, NULL, QO_CALIB},
        {"nsamples", required_argument, NULL, QO_NSAMPLES},
        {"seqlen", required_argument, NULL, QO_SEQLEN},
        {"seed", required_argument, NULL, QO_SEED},
        {"save", required_argument, NULL, QO_SAVE},
        {"block-size", required_argument, NULL, QO_BLOCK},
        {"grid", required_argument, NULL, QO_GRID},
        {"mse", no_argument, NULL, QO_MSE},
        {"method", required_argument, NULL, QO_METHOD},
        {0, 0, 0, 0},
    };
    const char *V = "quantize";
    gptq_quantize_options o; /* what is sent: only what was given */
    gptq_quantize_options_init(&o);
    gptq_calib_options lib;  /* what the daemon will use: the library's defaults and the flags */
    gptq_calib_options_default(&lib);
    lib.quant.sym = GPTQ_TOOL_DEFAULT_SYM; /* as gptqd runs it when none is asked */
    const char *new_name = NULL, *calib = NULL, *save = NULL;
    const char *calib_flag = NULL; /* the last flag given that only GPTQ's calibration reads */
    int rc, rtn = 0;
    PARSE_BEGIN(V, longopts)
    case QO_AS:
        new_name = optarg;
        break;
    case QO_BITS:
        if ((rc = quantize_option("bits", optarg, &lib)))
            return rc;
        o.bits = (unsigned)lib.quant.bits;
        break;
    case QO_GROUP:
        if ((rc = quantize_option("group-size", optarg, &lib)))
            return rc;
        o.group_size = lib.quant.group_size;
        break;
    case QO_ACT:
        calib_flag = "--act-order";
        o.act_order = lib.quant.act_order = 1;
        break;
    case QO_SYM:
        o.sym = lib.quant.sym = 1;
        break;
    case QO_ASYM:
        o.sym = lib.quant.sym = 0;
        break;
    case QO_STATIC:
        calib_flag = "--static-groups";
        o.static_groups = lib.quant.static_groups = 1;
        break;
    case QO_DAMP:
        calib_flag = "--damp";
        if ((rc = quantize_option("damp", optarg, &lib)))
            return rc;
        o.damp = lib.quant.damp;
        break;
    case QO_CALIB:
        calib_flag = "--calib";
        calib = optarg;
        break;
    case QO_NSAMPLES:
        calib_flag = "--nsamples";
        if ((rc = quantize_option("nsamples", optarg, &lib)))
            return rc;
        o.nsamples = (unsigned)lib.nsamples;
        break;
    case QO_SEQLEN:
        calib_flag = "--seqlen";
        if ((rc = quantize_option("seqlen", optarg, &lib)))
            return rc;
        o.seqlen = (unsigned)lib.seqlen;
        break;
    case QO_BLOCK:
        calib_flag = "--block-size";
        if ((rc = quantize_option("block-size", optarg, &lib)))
            return rc;
        o.block_size = (unsigned)lib.quant.block_size;
        break;
    case QO_SEED:
        calib_flag = "--seed";
        if ((rc = option_seed(V, gptq_calib_option("seed"), optarg, &lib.seed)))
            return rc;
        o.seed = lib.seed;
        o.has_seed = 1;
        break;
    case QO_SAVE:
        save = optarg;
        break;
    case QO_MSE:
        o.mse = lib.quant.mse = 1;
        break;
    case QO_METHOD:
        if (strcmp(optarg, "rtn") && strcmp(optarg, "gptq"))
            return ctl_usage_error(V, "--method %s: use gptq or rtn", optarg);
        rtn = !strcmp(optarg, "rtn");
        o.method = optarg;
        break;
    case QO_GRID:
        if (gptq_grid_from_name(optarg) < 0)
            return ctl_usage_error(V, "--grid %s: use q4_0, q8_0, q4_1, q5_0, q5_1, q2_k, q3_k, "
                                   "q4_k, q5_k, q6_k, or the recipes q4_k_m, q5_k_m", optarg);
        o.grid = optarg;
        break;
    PARSE_END(V)
    if (argc - optind < 1)
        return ctl_usage_error(V, "needs NAME (the resident float model)");
    if ((rc = extra_arg(V, argc, argv, 1)))
        return rc;
    if (!new_name || !new_name[0])
        return ctl_usage_error(V, "needs --as NEW (the quantized model's name)");
    if (rtn && calib_flag)
        return ctl_usage_error(V, "%s: --method rtn rounds each weight to nearest without "
                               "calibration; drop %s or use --method gptq", calib_flag,
                               calib_flag);
    if (o.grid && gptq_grid_sym_check(gptq_grid_from_name(o.grid), o.sym))
        return option_refused(V);
    const int dense = o.grid && (gptq_grid_is_block(gptq_grid_from_name(o.grid)) ||
                                 gptq_grid_is_recipe(gptq_grid_from_name(o.grid)));
    if (dense && save && (strlen(save) < 5 || strcasecmp(save + strlen(save) - 5, ".gguf")))
        return ctl_usage_error(V, "--save %s: grid %s keeps GGUF blocks, which only a GGUF file "
                               "holds: name a FILE.gguf", save, o.grid);
    if (o.grid && gptq_quant_config_use_grid(&lib.quant, gptq_grid_from_name(o.grid),
                                             (int)o.bits, o.group_size))
        return option_refused(V);
    if (o.grid)
        o.static_groups = lib.quant.static_groups; /* as the daemon runs it */
    if (gptq_calib_options_check(&lib)) /* what no one flag says: --static-groups, per channel */
        return option_refused(V);
    const char *name = argv[optind];
    char *calib_abs = NULL, *save_abs = NULL;
    gptq_client *c = NULL;
    gptq_client_result *res = NULL;
    gptq_job_id job = 0;
    if (calib && !(calib_abs = ctl_absolute_path(V, calib))) {
        rc = CTL_EXIT_FAILED;
        goto out;
    }
    if (save && !(save_abs = ctl_absolute_path(V, save))) {
        rc = CTL_EXIT_FAILED;
        goto out;
    }
    o.calib_path = calib_abs;
    o.save_dir = save_abs;
    if ((rc = ctl_connect(g, &c)))
        goto out;
    gptq_status st = gptq_client_quantize(c, name, new_name, &o, &job);
    if ((rc = follow_job(g, c, V, new_name, st, job, 0, &res)))
        goto out;
    const char *model = res->model[0] ? res->model : new_name;
    if (g->json) {
        json_t *out = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b, s:b, s:b, s:f, s:I, s:I, s:f}",
                                "model", model, "source", name, "method", rtn ? "rtn" : "gptq",
                                "bits",
                                (json_int_t)lib.quant.bits, "group_size",
                                (json_int_t)lib.quant.group_size, "act_order", o.act_order,
                                "sym", lib.quant.sym, "static_groups", o.static_groups, "damp",
                                (double)lib.quant.damp, "nsamples", (json_int_t)lib.nsamples,
                                "seqlen", (json_int_t)lib.seqlen, "seconds", res->seconds);
        if (out && o.grid)
            json_object_set_new(out, "grid", json_string(o.grid));
        if (out && res->saved_dir[0])
            json_object_set_new(out, "saved_dir", json_string(res->saved_dir));
        rc = emit_json(out);
    } else {
        printf("%s: quantized from %s to %d bits (group size %d%s) in %.1f s\n", model, name,
               lib.quant.bits, lib.quant.group_size, rtn ? ", round to nearest" : "",
               res->seconds);
        if (res->saved_dir[0])
            printf("%s: saved to %s\n", model, res->saved_dir);
    }
out:
    gptq_client_result_free(res);
    gptq_client_close(c);
    free(calib_abs);
    free(save_abs);
    return rc;
}

/* ---- eval --------------------------------------------------------------------------- */

enum { EO_TEXT = 256, EO_SEQLEN, EO_KL, EO_WINDOWS };

/* --NAME TEXT of eval, checked into lib by the library. */
static int eval_option(const char *name, const char *text, gptq_eval_params *lib)
{
    double v;
    int rc = option_number("eval", name, text, &v);
    if (!rc && gptq_eval_params_set(lib, name, v))
        rc = option_refused("eval");
    return rc;
}

static int verb_eval(const ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        VERB_COMMON_OPTIONS,
        {"text", required_argument, NULL, EO_TEXT},
        {"seqlen", required_argument, NULL, EO_SEQLEN},
        {"kl-base", required_argument, NULL, EO_KL},
        {"max-windows", required_argument, NULL, EO_WINDOWS},
        {0, 0, 0, 0},
    };
    const char *V = "eval";
    gptq_eval_options o = {0}; /* every option unset */
    gptq_eval_params lib;
    gptq_eval_params_default(&lib);
    const char *text = NULL;
    int rc;
    PARSE_BEGIN(V, longopts)
    case EO_TEXT:
        text = optarg;
        break;
    case EO_SEQLEN:
        if ((rc = eval_option("seqlen", optarg, &lib)))
            return rc;
        o.seqlen = (unsigned)lib.seqlen;
        break;
    case EO_WINDOWS:
        if ((rc = eval_option("max-windows", optarg, &lib)))
            return rc;
        o.max_windows = (unsigned)lib.max_windows;
        break;
    case EO_KL:
        o.kl_base = optarg;
        break;
    PARSE_END(V)
    if (argc - optind < 1)
        return ctl_usage_error(V, "needs NAME");
    if ((rc = extra_arg(V, argc, argv, 1)))
        return rc;
    const char *name = argv[optind];
    char *text_abs = NULL;
    gptq_client *c = NULL;
    gptq_client_result *res = NULL;
    gptq_job_id job = 0;
    if (text && !(text_abs = ctl_absolute_path(V, text))) {
        rc = CTL_EXIT_FAILED;
        goto out;
    }
    o.text_path = text_abs;
    if ((rc = ctl_connect(g, &c)))
        goto out;
    gptq_status st = gptq_client_eval(c, name, &o, &job);
    if ((rc = follow_job(g, c, V, name, st, job, 0, &res)))
        goto out;
    if (g->json) {
        json_t *out = json_pack("{s:s, s:f, s:I, s:I}", "model", name, "perplexity",
                                res->perplexity, "tokens", (json_int_t)res->tokens, "seqlen",
                                (json_int_t)res->seqlen);
        if (out && o.kl_base) {
            json_object_set_new(out, "kl_base", json_string(o.kl_base));
            json_object_set_new(out, "kl", res->has_kl ? json_real(res->kl) : json_null());
        }
        rc = emit_json(out);
    } else {
        printf("%s: perplexity %.4f (%" PRIu64 " tokens, windows of %u)\n", name,
               res->perplexity, res->tokens, res->seqlen);
        if (o.kl_base && res->has_kl)
            printf("%s: mean KL(%s || %s) %.6f nats/token\n", name, o.kl_base, name, res->kl);
    }
out:
    gptq_client_result_free(res);
    gptq_client_close(c);
    free(text_abs);
    return rc;
}

/* ---- infer ------------------------------------------------------------------------- */

enum { IO_MAX = 256, IO_TEMP, IO_TOPK, IO_TOPP, IO_SEED };

/* --NAME TEXT of infer, checked into lib by the library. */
static int infer_option(const char *name, const char *text, gptq_generate_params *lib)
{
    double v;
    int rc = option_number("infer", name, text, &v);
    if (!rc && gptq_generate_params_set(lib, name, v))
        rc = option_refused("infer");
    return rc;
}

static int verb_infer(const ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        VERB_COMMON_OPTIONS,
        {"max-tokens", required_argument, NULL, IO_MAX},
        {"temperature", required_argument, NULL, IO_TEMP},
        {"top-k", required_argument, NULL, IO_TOPK},
        {"top-p", required_argument, NULL, IO_TOPP},
        {"seed", required_argument, NULL, IO_SEED},
        {0, 0, 0, 0},
    };
    const char *V = "infer";
    gptq_generate_options o; /* what is sent: only what was given */
    gptq_generate_options_init(&o);
    gptq_generate_params lib;
    gptq_generate_params_default(&lib);
    int rc;
    PARSE_BEGIN(V, longopts)
    case IO_MAX:
        if ((rc = infer_option("max-tokens", optarg, &lib)))
            return rc;
        o.max_tokens = (unsigned)lib.max_tokens;
        break;
    case IO_TEMP:
        if ((rc = infer_option("temperature", optarg, &lib)))
            return rc;
        o.temperature = lib.sample.temperature;
        break;
    case IO_TOPK:
        if ((rc = infer_option("top-k", optarg, &lib)))
            return rc;
        o.top_k = (unsigned)lib.sample.top_k;
        o.has_top_k = 1;
        break;
    case IO_TOPP:
        if ((rc = infer_option("top-p", optarg, &lib)))
            return rc;
        o.top_p = lib.sample.top_p;
        break;
    case IO_SEED:
        if ((rc = option_seed(V, gptq_generate_option("seed"), optarg, &lib.sample.seed)))
            return rc;
        o.seed = lib.sample.seed;
        o.has_seed = 1;
        break;
    PARSE_END(V)
    if (argc - optind < 2)
        return ctl_usage_error(V, "needs NAME and PROMPT");
    if ((rc = extra_arg(V, argc, argv, 2)))
        return rc;
    const char *name = argv[optind], *prompt = argv[optind + 1];
    gptq_client *c = NULL;
    gptq_client_result *res = NULL;
    gptq_job_id job = 0;
    if ((rc = ctl_connect(g, &c)))
        return rc;
    /* Without --json the completion streams to stdout token by token. */
    gptq_status st = gptq_client_generate(c, name, prompt, &o, &job);
    if ((rc = follow_job(g, c, V, name, st, job, !g->json, &res)))
        goto out;
    if (g->json)
        rc = emit_json(json_pack("{s:s, s:s, s:s, s:I, s:f}", "model", name, "prompt", prompt,
                                 "text", res->text, "tokens", (json_int_t)res->generated,
                                 "seconds", res->seconds));
out:
    gptq_client_result_free(res);
    gptq_client_close(c);
    return rc;
}

/* ---- jobs / cancel ---------------------------------------------------------------------- */

/* What a finished job left, in a few words (the jobs table's last column). */
static void outcome_text(const gptq_client_job *j, char *buf, size_t n)
{
    buf[0] = '\0';
    if (j->state == GPTQ_JOB_FAILED || j->state == GPTQ_JOB_CANCELED)
        snprintf(buf, n, "%.70s", j->result_message);
    else if (j->state == GPTQ_JOB_DONE && j->result) {
        const gptq_client_result *r = j->result;
        if (!strcmp(j->kind, "eval") && r->has_kl)
            snprintf(buf, n, "perplexity %.4f, KL %.6f", r->perplexity, r->kl);
        else if (!strcmp(j->kind, "eval"))
            snprintf(buf, n, "perplexity %.4f", r->perplexity);
        else if (!strcmp(j->kind, "generate"))
            snprintf(buf, n, "%u tokens", r->generated);
        else if (r->saved_dir && r->saved_dir[0])
            snprintf(buf, n, "saved to %.60s", r->saved_dir);
    }
}

static json_t *job_json(const gptq_client_job *j)
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:f, s:f, s:s, s:i}", "id", (json_int_t)j->id,
                          "kind", j->kind, "model", j->model, "state",
                          gptq_job_state_name(j->state), "fraction", j->fraction, "seconds",
                          j->seconds, "client", j->client, "uid", (int)j->uid);
    if (o && (j->state == GPTQ_JOB_FAILED || j->state == GPTQ_JOB_CANCELED)) {
        json_object_set_new(o, "status", json_string(gptq_status_name(j->result_status)));
        json_object_set_new(o, "message", json_string(j->result_message));
    }
    if (o && j->result) {
        const gptq_client_result *r = j->result;
        json_t *res = json_object();
        if (!strcmp(j->kind, "eval")) {
            json_object_set_new(res, "perplexity", json_real(r->perplexity));
            json_object_set_new(res, "tokens", json_integer((json_int_t)r->tokens));
            json_object_set_new(res, "seqlen", json_integer(r->seqlen));
            if (r->has_kl)
                json_object_set_new(res, "kl", json_real(r->kl));
        }
        if (!strcmp(j->kind, "generate"))
            json_object_set_new(res, "tokens", json_integer(r->generated));
        if (r->saved_dir && r->saved_dir[0])
            json_object_set_new(res, "saved_dir", json_string(r->saved_dir));
        json_object_set_new(o, "result", res);
    }
    return o;
}

static int verb_jobs(const ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {VERB_COMMON_OPTIONS, {0, 0, 0, 0}};
    PARSE_BEGIN("jobs", longopts)
    PARSE_END("jobs")
    int rc = extra_arg("jobs", argc, argv, 0);
    if (rc)
        return rc;
    gptq_client *c = NULL;
    gptq_client_jobs *list = NULL;
    if ((rc = ctl_connect(g, &c)))
        return rc;
    gptq_status st = gptq_client_jobs_list(c, &list);
    if (st != GPTQ_OK) {
        rc = ctl_fail(g, "jobs", c, st);
        goto out;
    }
    if (g->json) {
        json_t *jobs = json_array();
        for (size_t i = 0; jobs && i < list->n; i++)
            json_array_append_new(jobs, job_json(&list->jobs[i]));
        rc = emit_json(jobs ? json_pack("{s:o}", "jobs", jobs) : NULL);
        goto out;
    }
    if (list->n == 0) {
        printf("no jobs\n");
        goto out;
    }
    printf("%6s  %-9s %-20s %-9s %5s %9s  %-12s %6s  %s\n", "ID", "KIND", "MODEL", "STATE",
           "DONE", "SECONDS", "CLIENT", "UID", "OUTCOME");
    for (size_t i = 0; i < list->n; i++) {
        const gptq_client_job *j = &list->jobs[i];
        char outcome[128];
        outcome_text(j, outcome, sizeof outcome);
        printf("%6" PRIu64 "  %-9s %-20s %-9s %4.0f%% %9.1f  %-12s %6u  %s\n", j->id, j->kind,
               j->model, gptq_job_state_name(j->state), j->fraction * 100.0, j->seconds,
               j->client, j->uid, outcome);
    }
out:
    gptq_client_jobs_free(list);
    gptq_client_close(c);
    return rc;
}

/* Reattach to a job started elsewhere (a closed terminal, a dropped ssh):
 * its progress from the start, its streamed text, its result, or the error
 * it ended with; done jobs stay findable for the daemon's job-keep-seconds. */
static int verb_wait(const ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {VERB_COMMON_OPTIONS, {0, 0, 0, 0}};
    PARSE_BEGIN("wait", longopts)
    PARSE_END("wait")
    if (argc - optind < 1)
        return ctl_usage_error("wait", "needs JOB");
    int rc = extra_arg("wait", argc, argv, 1);
    if (rc)
        return rc;
    long id = 0;
    if ((rc = ctl_parse_long("wait", "JOB", argv[optind], 1, LONG_MAX, &id)))
        return rc;
    gptq_client *c = NULL;
    gptq_client_jobs *list = NULL;
    gptq_client_result *res = NULL;
    if ((rc = ctl_connect(g, &c)))
        return rc;
    gptq_status st = gptq_client_jobs_list(c, &list);
    const gptq_client_job *j = NULL;
    for (size_t i = 0; !st && i < list->n; i++)
        if (list->jobs[i].id == (gptq_job_id)id)
            j = &list->jobs[i];
    if (st) {
        rc = ctl_fail(g, "wait", c, st);
        goto out;
    }
    if (!j) {
        fprintf(stderr, "gptqctl wait: job %ld: no such job (finished jobs are kept for "
                "gptqd's job-keep-seconds)\n", id);
        rc = CTL_EXIT_FAILED;
        goto out;
    }
    const int gen = !strcmp(j->kind, "generate");
    /* Ctrl-C leaves this wait, not the job (which the other verbs cancel):
     * the job was started elsewhere and goes on */
    signal(SIGINT, SIG_DFL);
    rc = follow_job(g, c, j->kind, j->model, GPTQ_OK, (gptq_job_id)id, gen && !g->json, &res);
    if (rc || !res)
        goto out;
    gptq_client_job done = *j;
    done.state = GPTQ_JOB_DONE;
    done.result = res;
    if (g->json) {
        json_t *o = job_json(&done);
        if (o && gen)
            json_object_set_new(json_object_get(o, "result"), "text", json_string(res->text));
        rc = emit_json(o);
    } else {
        char outcome[128];
        outcome_text(&done, outcome, sizeof outcome);
        if (gen)
            printf("\n");
        printf("job %ld (%s %s): done in %.1f s%s%s\n", id, j->kind, j->model, res->seconds,
               outcome[0] ? ": " : "", outcome);
    }
out:
    gptq_client_result_free(res);
    gptq_client_jobs_free(list);
    gptq_client_close(c);
    return rc;
}

static int verb_cancel(const ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {VERB_COMMON_OPTIONS, {0, 0, 0, 0}};
    PARSE_BEGIN("cancel", longopts)
    PARSE_END("cancel")
    if (argc - optind < 1)
        return ctl_usage_error("cancel", "needs JOB (an id from gptqctl jobs)");
    int rc = extra_arg("cancel", argc, argv, 1);
    if (rc)
        return rc;
    long id;
    if ((rc = ctl_parse_long("cancel", "JOB", argv[optind], 1, LONG_MAX, &id)))
        return rc;
    gptq_client *c = NULL;
    if ((rc = ctl_connect(g, &c)))
        return rc;
    gptq_status st = gptq_client_cancel(c, (gptq_job_id)id);
    if (st != GPTQ_OK)
        rc = ctl_fail(g, "cancel", c, st);
    else if (g->json)
        rc = emit_json(json_pack("{s:I, s:b}", "job", (json_int_t)id, "cancel_requested", 1));
    else
        printf("job %ld: cancel requested\n", id);
    gptq_client_close(c);
    return rc;
}

/* ---- the table ---------------------------------------------------------------------- */

const ctl_verb ctl_verbs[] = {
    {"status", "", "Show the daemon: version, backend and device, memory, models, jobs.\n",
     verb_status, NULL},
    {"list", "", "List resident models: name, arch, format, params, bytes, leases, source.\n",
     verb_list, NULL},
    {"load", "NAME PATH [--head q8_0]",
     "Load a Hugging Face folder (fp16/bf16/fp32), a GPTQ checkpoint or a GGUF file\n"
     "(llama, mistral, qwen2, qwen3, phi3; any of its quantized types is dequantized) at\n"
     "PATH as the resident model NAME. PATH is made absolute here; it must lie in one of\n"
     "the daemon's --model-dir directories.\n"
     "  --head q8_0  also hold the output matrix rounded to Q8_0 (groups of 32, fp16\n"
     "               scales) and compute logits from it: a decode step reads half of\n"
     "               an F16 matrix's bytes (llama.cpp's 4-bit files keep it in Q8_0\n"
     "               too); logits move by ~0.1-0.5% of their range. Saving still\n"
     "               writes the matrix as loaded. CPU memory only.\n"
     "  --head none  serve the matrix as the file holds it. Default: the daemon's\n"
     "               `head` setting (none unless set)\n",
     verb_load, NULL},
    {"unload", "NAME [--force]",
     "Drop the resident model NAME.\n"
     "  --force   also when processes map it (their leases are revoked)\n",
     verb_unload, NULL},
    {"quantize",
     "NAME --as NEW [--bits {bits}] [--group-size {group-size}] [--act-order] [--sym|--asym]\n"
     "[--static-groups] [--damp {damp}] [--calib FILE] [--nsamples {nsamples}]\n"
     "[--seqlen {seqlen}] [--seed {seed}] [--block-size {block-size}] [--grid T]\n"
     "[--mse] [--method gptq|rtn] [--save DIR]",
     "Quantize the resident float model NAME with GPTQ into the new resident model\n"
     "NEW, layer by layer on calibration data; progress is shown per linear.\n"
     "  --as NEW           name of the quantized model (required)\n"
     "  --bits B           bits per code ({bits})\n"
     "  --group-size G     columns per quantization group, -1 per channel ({group-size})\n"
     "  --act-order        quantize columns in order of decreasing Hessian diagonal\n"
     "  --sym | --asym     symmetric (default: what every loader's fast kernels take)\n"
     "                     or asymmetric grid\n"
     "  --static-groups    group parameters computed before the column walk\n"
     "  --damp L           dampening, fraction of the mean Hessian diagonal ({damp})\n"
     "  --calib FILE       calibration text (default: the bundled one)\n"
     "  --nsamples N       calibration windows ({nsamples})\n"
     "  --seqlen N         tokens per window ({seqlen})\n"
     "  --seed S           seed of the window draw ({seed})\n"
     "  --block-size B     columns per lazy block update ({block-size})\n"
     "  --mse              choose each group's range by the reference's error search\n"
     "                     (shrinking it while the 2.4-norm error falls), not min-max\n"
     "  --grid T           quantize onto GGUF type T's grid, so `save NEW FILE.gguf`\n"
     "                     writes GPTQ's codes exactly: q4_0, q8_0 (symmetric groups\n"
     "                     of 32, packed and served on the quantized kernels), q4_1,\n"
     "                     q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k (scales and minimums\n"
     "                     per block chosen before GPTQ walks it; served dense), or a\n"
     "                     recipe naming each tensor's grid as llama.cpp's does:\n"
     "                     q4_k_m, q5_k_m. Act-order gets static groups.\n"
     "  --method M         gptq (default), or rtn: round each weight to nearest on the\n"
     "                     same grid, no calibration (the paper's baseline; the\n"
     "                     calibration flags above are refused with it)\n"
     "  --save DIR         also write a GPTQ checkpoint to DIR, atomically (a name\n"
     "                     ending in .gguf: a GGUF file, as `save` writes one, which\n"
     "                     the block grids and recipes need)\n",
     verb_quantize, gptq_calib_option},
    {"eval", "NAME [--text FILE] [--seqlen {seqlen}] [--max-windows {max-windows}] [--kl-base BASE]",
     "Perplexity of NAME: non-overlapping windows of seqlen tokens, mean NLL, exp.\n"
     "  --text FILE       evaluation text (default: the bundled one)\n"
     "  --seqlen N        window length ({seqlen})\n"
     "  --max-windows N   only the first N windows, 0 = all ({max-windows})\n"
     "  --kl-base BASE    also mean per-token KL(BASE || NAME), in nats\n"
     "With --json: {\"model\", \"perplexity\", \"tokens\", \"seqlen\"} (+ \"kl\").\n",
     verb_eval, gptq_eval_option},
    {"infer",
     "NAME PROMPT [--max-tokens {max-tokens}] [--temperature {temperature}] [--top-k {top-k}]\n"
     "[--top-p {top-p}] [--seed {seed}]",
     "Generate a completion of PROMPT with NAME; tokens are printed as they stream.\n"
     "  --max-tokens N   at most N new tokens ({max-tokens})\n"
     "  --temperature T  0 is greedy and deterministic ({temperature})\n"
     "  --top-k K        sample from the K most likely tokens, 0 = off ({top-k})\n"
     "  --top-p P        nucleus sampling, 1 = off ({top-p})\n"
     "  --seed S         sampling seed ({seed})\n"
     "With --json: {\"model\", \"text\", \"tokens\"} once generation ends.\n",
     verb_infer, gptq_generate_option},
    {"save", "NAME DIR|FILE.gguf [--dtype f16|bf16|f32] [--format v1|v2|gguf]\n"
     "[--embedding-type T]",
     "Write NAME into the new folder DIR, atomically: a quantized model as a GPTQ\n"
     "checkpoint (the ecosystem's format), a float model as a Hugging Face folder\n"
     "(model.safetensors, config.json, tokenizer.json) that transformers loads.\n"
     "A name ending in .gguf (or --format gguf) writes one GGUF file that llama.cpp,\n"
     "Ollama and LM Studio run: float weights in --dtype, linears quantized with\n"
     "--grid T in T's blocks, holding GPTQ's codes bit for bit.\n"
     "  --dtype T   float tensors as f16, bf16 or f32 (default: the model's own)\n"
     "  --format F  v1 (default for a folder; every GPTQ loader reads it), v2 (GPTQModel's\n"
     "              gptq_v2: zero points stored as they are), or gguf\n"
     "  --embedding-type T  GGUF: the embedding and output matrices as q8_0 (rounded to\n"
     "              nearest, as llama-quantize does), a block grid (q4_1, q5_0, q5_1,\n"
     "              q2_k..q6_k, rounded to nearest; q6_k is llama.cpp's Q4_K_M output),\n"
     "              f16, bf16 or f32 (default: --dtype)\n",
     verb_save, NULL},
    {"jobs", "", "List the daemon's jobs: id, kind, model, state, progress, client, uid, and\n"
     "for finished ones their outcome (figures or error); they are kept for the\n"
     "daemon's job-keep-seconds, also when their client went away.\n",
     verb_jobs, NULL},
    {"wait", "JOB", "Reattach to job JOB (started by any gptqctl, perhaps in a closed terminal):\n"
     "its progress bar and streamed text from the start, then its result or error.\n",
     verb_wait, NULL},
    {"cancel", "JOB", "Ask the daemon to stop job JOB (an id from `gptqctl jobs`).\n",
     verb_cancel, NULL},
};
const size_t ctl_n_verbs = sizeof ctl_verbs / sizeof ctl_verbs[0];
