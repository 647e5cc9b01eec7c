/* daemon/conf.c: gptqd settings from the config file and the command line. */
#include "daemon/conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"
#include "model/llama.h"

static const char usage[] =
    "usage: gptqd [--config FILE] [--socket PATH] [--device auto|cpu|cuda:N]\n"
    "             [--model-dir DIR]... [--preload NAME=PATH]... [--log-level L]\n"
    "             [--memory-limit BYTES[K|M|G]] [--max-message-size BYTES]\n"
    "             [--max-jobs N] [--workers N] [--job-keep-seconds S]\n"
    "             [--socket-group GROUP] [--kv-slots N] [--kv-context N]\n"
    "             [--head none|q8_0]\n"
    "             [--help] [--version]\n"
    "\n"
    "The model-serving daemon of gptqd. Every flag is also a config-file key\n"
    "(key = value); flags override the file. Socket: --socket, else\n"
    "$GPTQD_SOCKET, else $XDG_RUNTIME_DIR/gptqd.sock (user) or\n"
    "/run/gptqd/gptqd.sock (root). Clients may load models only from the\n"
    "--model-dir directories. --memory-limit counts resident weights and\n"
    "their KV caches in the memory that serves them: device memory with a\n"
    "CUDA --device, host memory on the CPU. Each model's decode loop batches\n"
    "--kv-slots sequences (default 8) of up to --kv-context positions\n"
    "(default 4096, at most the model's); a sequence's KV cache (context x\n"
    "layers x 2 x kv_dim floats at most) is allocated as it grows, freed\n"
    "when it ends, and counted while held: an idle model holds none.\n"
    "--head q8_0 serves every model loaded without a --head of its own\n"
    "(preloads too) from its output matrix rounded to Q8_0 (gptqctl load\n"
    "--help); the default, none, serves the matrix as the file holds it.\n";

static gptq_status set_string(char **slot, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return gptq_fail(GPTQ_ERR_NOMEM, "config: out of memory");
    free(*slot);
    *slot = copy;
    return GPTQ_OK;
}

gptq_status gptqd_conf_init(gptqd_conf *conf)
{
    memset(conf, 0, sizeof *conf);
    conf->log_level = LOG_INFO;
    conf->max_message_bytes = 4u << 20;
    conf->max_jobs = 64;
    conf->workers = 16;
    conf->job_keep_seconds = 600;
    conf->kv_slots = 8;
    conf->kv_context = 4096;
    conf->head = GPTQ_GRID_NONE;
    gptq_status st = set_string(&conf->device, "auto");
    if (st)
        return st;
    const char *env = getenv("GPTQD_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (env && env[0])
        return set_string(&conf->socket, env);
    if (geteuid() != 0 && xdg && xdg[0]) {
        char path[4096];
        snprintf(path, sizeof path, "%s/gptqd.sock", xdg);
        return set_string(&conf->socket, path);
    }
    return set_string(&conf->socket, "/run/gptqd/gptqd.sock");
}

int gptqd_parse_bytes(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)text[0]))
        return -1;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10, end++;
    else if (*end == 'M' || *end == 'm')
        shift = 20, end++;
    else if (*end == 'G' || *end == 'g')
        shift = 30, end++;
    if (*end == 'i' || *end == 'B') /* accept "4MiB", "4MB" as binary units */
        end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
    if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_int(const char *text, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

gptq_status gptqd_conf_set(gptqd_conf *conf, const char *key, const char *value)
{
    if (strcmp(key, "kv-slots") == 0) {
        if (parse_int(value, 1, 256, &conf->kv_slots) < 0)
            return gptq_fail(GPTQ_ERR_ARG, "kv-slots '%s': use 1 to 256", value);
        return GPTQ_OK;
    }
    if (strcmp(key, "kv-context") == 0) {
        if (parse_int(value, 16, 1 << 20, &conf->kv_context) < 0)
            return gptq_fail(GPTQ_ERR_ARG, "kv-context '%s': use 16 to 1048576 positions", value);
        return GPTQ_OK;
    }
    if (strcmp(key, "head") == 0) {
        int grid = gptq_head_grid_from_name(value);
        if (grid < 0)
            return gptq_fail(GPTQ_ERR_ARG, "head '%s': use none or q8_0", value);
        conf->head = grid;
        return GPTQ_OK;
    }
    if (strcmp(key, "socket") == 0) {
        if (!value[0] || strlen(value) > 107)
            return gptq_fail(GPTQ_ERR_ARG, "socket '%s': need a path of 1 to 107 bytes", value);
        return set_string(&conf->socket, value);
    }
    if (strcmp(key, "socket-group") == 0)
        return set_string(&conf->socket_group, value);
    if (strcmp(key, "device") == 0) {
        int n;
        if (strcmp(value, "auto") && strcmp(value, "cpu") &&
            !(strncmp(value, "cuda:", 5) == 0 && parse_int(value + 5, 0, 255, &n) == 0))
            return gptq_fail(GPTQ_ERR_ARG, "device '%s': use auto, cpu or cuda:N", value);
        return set_string(&conf->device, value);
    }
    if (strcmp(key, "model-dir") == 0) {
        if (conf->n_model_dirs == GPTQD_MAX_LIST)
            return gptq_fail(GPTQ_ERR_LIMIT, "model-dir: at most %d", GPTQD_MAX_LIST);
        if (value[0] != '/')
            return gptq_fail(GPTQ_ERR_ARG, "model-dir '%s': give an absolute path", value);
        char *copy = strdup(value);
        if (!copy)
            return gptq_fail(GPTQ_ERR_NOMEM, "config: out of memory");
        conf->model_dirs[conf->n_model_dirs++] = copy;
        return GPTQ_OK;
    }
    if (strcmp(key, "preload") == 0) {
        const char *eq = strchr(value, '=');
        if (!eq || eq == value || !eq[1])
            return gptq_fail(GPTQ_ERR_ARG, "preload '%s': use NAME=PATH", value);
        if (conf->n_preloads == GPTQD_MAX_LIST)
            return gptq_fail(GPTQ_ERR_LIMIT, "preload: at most %d", GPTQD_MAX_LIST);
        gptqd_preload *p = &conf->preloads[conf->n_preloads];
        p->name = strndup(value, (size_t)(eq - value));
        p->path = strdup(eq + 1);
        if (!p->name || !p->path) {
            free(p->name), free(p->path);
            return gptq_fail(GPTQ_ERR_NOMEM, "config: out of memory");
        }
        conf->n_preloads++;
        return GPTQ_OK;
    }
    if (strcmp(key, "log-level") == 0) {
        int level = gptqd_log_parse_level(value);
        if (level < 0)
            return gptq_fail(GPTQ_ERR_ARG,
                             "log-level '%s': use err, warning, notice, info or debug", value);
        conf->log_level = level;
        return GPTQ_OK;
    }
    if (strcmp(key, "memory-limit") == 0) {
        if (gptqd_parse_bytes(value, &conf->memory_limit) < 0)
            return gptq_fail(GPTQ_ERR_ARG, "memory-limit '%s': use BYTES[K|M|G], 0 for none",
                             value);
        return GPTQ_OK;
    }
    if (strcmp(key, "max-message-size") == 0) {
        uint64_t v;
        if (gptqd_parse_bytes(value, &v) < 0 || v < 4096 || v > (1u << 30))
            return gptq_fail(GPTQ_ERR_ARG, "max-message-size '%s': use 4K to 1G", value);
        conf->max_message_bytes = v;
        return GPTQ_OK;
    }
    if (strcmp(key, "max-jobs") == 0) {
        if (parse_int(value, 1, 4096, &conf->max_jobs) < 0)
            return gptq_fail(GPTQ_ERR_ARG, "max-jobs '%s': use 1 to 4096", value);
        return GPTQ_OK;
    }
    if (strcmp(key, "workers") == 0) {
        if (parse_int(value, 2, 64, &conf->workers) < 0)
            return gptq_fail(GPTQ_ERR_ARG, "workers '%s': use 2 to 64", value);
        return GPTQ_OK;
    }
    if (strcmp(key, "job-keep-seconds") == 0) {
        if (parse_int(value, 0, 86400 * 7, &conf->job_keep_seconds) < 0)
            return gptq_fail(GPTQ_ERR_ARG, "job-keep-seconds '%s': use 0 to 604800", value);
        return GPTQ_OK;
    }
    return gptq_fail(GPTQ_ERR_ARG, "unknown key '%s' (see gptqd --help)", key);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

gptq_status gptqd_conf_load_file(gptqd_conf *conf, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return gptq_fail(GPTQ_ERR_IO, "config %s: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0;
    gptq_status st = GPTQ_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            st = gptq_fail(GPTQ_ERR_ARG, "%s:%d: line longer than %zu bytes", path, lineno,
                           sizeof line - 1);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *text = trim(line);
        if (!text[0])
            continue;
        char *eq = strchr(text, '=');
        if (!eq) {
            st = gptq_fail(GPTQ_ERR_ARG, "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(text), *value = trim(eq + 1);
        st = gptqd_conf_set(conf, key, value);
        if (st) {
            st = gptq_fail_context(st, "%s:%d", path, lineno);
            break;
        }
    }
    fclose(f);
    return st;
}

static int is_repeatable(const char *key)
{
    return strcmp(key, "model-dir") == 0 || strcmp(key, "preload") == 0;
}

gptq_status gptqd_conf_from_args(gptqd_conf *conf, int argc, char **argv, int *action)
{
    *action = 0;
    /* First pass: --help, --version, --config (the file goes under the flags). */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            *action = 1;
            return GPTQ_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("gptqd %s\n", GPTQD_VERSION);
            *action = 2;
            return GPTQ_OK;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *value = NULL;
        if (strncmp(argv[i], "--config=", 9) == 0)
            value = argv[i] + 9;
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            value = argv[++i];
        if (value) {
            gptq_status st = gptqd_conf_load_file(conf, value);
            if (st)
                return st;
        }
    }
    int seen_dirs = 0, seen_preloads = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0)
            return gptq_fail(GPTQ_ERR_ARG, "unexpected argument '%s' (see gptqd --help)", arg);
        char key[64];
        const char *value;
        const char *eq = strchr(arg, '=');
        if (eq) {
            size_t n = (size_t)(eq - arg - 2);
            if (n >= sizeof key)
                return gptq_fail(GPTQ_ERR_ARG, "unknown flag '%s'", arg);
            memcpy(key, arg + 2, n);
            key[n] = '\0';
            value = eq + 1;
        } else {
            if (strlen(arg + 2) >= sizeof key)
                return gptq_fail(GPTQ_ERR_ARG, "unknown flag '%s'", arg);
            strcpy(key, arg + 2);
            if (i + 1 >= argc)
                return gptq_fail(GPTQ_ERR_ARG, "%s needs a value (see gptqd --help)", arg);
            value = argv[++i];
        }
        if (strcmp(key, "config") == 0)
            continue;
        if (is_repeatable(key)) {
            /* A list given on the command line replaces the file's list. */
            int *seen = key[0] == 'm' ? &seen_dirs : &seen_preloads;
            if (!*seen) {
                *seen = 1;
                if (key[0] == 'm') {
                    for (int d = 0; d < conf->n_model_dirs; d++)
                        free(conf->model_dirs[d]);
                    conf->n_model_dirs = 0;
                } else {
                    for (int p = 0; p < conf->n_preloads; p++)
                        free(conf->preloads[p].name), free(conf->preloads[p].path);
                    conf->n_preloads = 0;
                }
            }
        }
        gptq_status st = gptqd_conf_set(conf, key, value);
        if (st)
            return st;
    }
    return GPTQ_OK;
}

void gptqd_conf_free(gptqd_conf *conf)
{
    free(conf->socket);
    free(conf->socket_group);
    free(conf->device);
    for (int i = 0; i < conf->n_model_dirs; i++)
        free(conf->model_dirs[i]);
    for (int i = 0; i < conf->n_preloads; i++)
        free(conf->preloads[i].name), free(conf->preloads[i].path);
    memset(conf, 0, sizeof *conf);
}
