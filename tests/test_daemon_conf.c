/* tests/test_daemon_conf.c: gptqd's settings: the config file's keys, flags
 * over the file, repeatable keys, the socket default (docs/ARCHITECTURE.md,
 * "The command line"), and
 * errors that name the file, line and key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "gptq/quant.h"
#include "testutil.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

int main(void)
{
    gptqd_conf c;
    char dir[] = "/tmp/gptqd-conf-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[128], bad[128];
    snprintf(path, sizeof path, "%s/gptqd.conf", dir);
    snprintf(bad, sizeof bad, "%s/bad.conf", dir);
    write_file(path, "# comment\n"
                     "socket = /run/x.sock   # trailing comment\n"
                     "device = cpu\n"
                     "model-dir = /srv/a\n"
                     "model-dir = /srv/b\n"
                     "preload = tiny=/srv/a/tiny\n"
                     "\n"
                     "memory-limit = 2G\n"
                     "max-message-size = 8M\n"
                     "log-level = debug\n"
                     "workers = 6\n"
                     "kv-slots = 4\n"
                     "kv-context = 1024\n"
                     "head = q8_0\n");
    write_file(bad, "device = cpu\nmax-jobs = lots\n");

    /* Socket default: GPTQD_SOCKET, else XDG_RUNTIME_DIR for a user. */
    setenv("GPTQD_SOCKET", "/tmp/env.sock", 1);
    CHECK_OK(gptqd_conf_init(&c));
    CHECK(strcmp(c.socket, "/tmp/env.sock") == 0, "socket %s", c.socket);
    gptqd_conf_free(&c);
    unsetenv("GPTQD_SOCKET");
    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    CHECK_OK(gptqd_conf_init(&c));
    if (geteuid() != 0)
        CHECK(strcmp(c.socket, "/run/user/1000/gptqd.sock") == 0, "socket %s", c.socket);
    else
        CHECK(strcmp(c.socket, "/run/gptqd/gptqd.sock") == 0, "root socket %s", c.socket);
    gptqd_conf_free(&c);

    /* The file, then flags over it; a repeatable flag replaces the list. */
    char *argv[] = {"gptqd", "--config", path, "--device=auto", "--model-dir", "/srv/c",
                    "--workers", "3", NULL};
    int action = -1;
    CHECK_OK(gptqd_conf_init(&c));
    CHECK_OK(gptqd_conf_from_args(&c, 8, argv, &action));
    CHECK(action == 0, "action %d", action);
    CHECK(strcmp(c.socket, "/run/x.sock") == 0, "socket %s", c.socket);
    CHECK(strcmp(c.device, "auto") == 0, "device %s (flag should win)", c.device);
    CHECK(c.n_model_dirs == 1 && strcmp(c.model_dirs[0], "/srv/c") == 0,
          "model dirs %d, first %s", c.n_model_dirs, c.n_model_dirs ? c.model_dirs[0] : "-");
    CHECK(c.n_preloads == 1 && strcmp(c.preloads[0].name, "tiny") == 0 &&
              strcmp(c.preloads[0].path, "/srv/a/tiny") == 0, "preloads %d", c.n_preloads);
    CHECK(c.memory_limit == 2ull << 30, "memory-limit %llu", (unsigned long long)c.memory_limit);
    CHECK(c.max_message_bytes == 8u << 20, "max-message-size %llu",
          (unsigned long long)c.max_message_bytes);
    CHECK(c.log_level == 7 && c.workers == 3, "log level %d workers %d", c.log_level, c.workers);
    CHECK(c.kv_slots == 4 && c.kv_context == 1024, "kv-slots %d kv-context %d", c.kv_slots,
          c.kv_context);
    CHECK(c.head == GPTQ_GRID_Q8_0, "head %d", c.head);
    gptqd_conf_free(&c);
    CHECK_OK(gptqd_conf_init(&c));
    CHECK(c.kv_slots == 8 && c.kv_context == 4096 && c.head == GPTQ_GRID_NONE,
          "default kv-slots %d kv-context %d head %d", c.kv_slots, c.kv_context, c.head);
    gptqd_conf_free(&c);

    /* Errors name the file and line, or the flag, and the fix. */
    char *argv_bad[] = {"gptqd", "--config", bad, NULL};
    CHECK_OK(gptqd_conf_init(&c));
    gptq_status st = gptqd_conf_from_args(&c, 3, argv_bad, &action);
    CHECK(st == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "bad.conf:2") &&
              strstr(gptq_errmsg(), "max-jobs"), "bad file: %s", gptq_errmsg());
    gptqd_conf_free(&c);
    const char *bad_flags[][2] = {{"--device", "tpu"}, {"--bits", "4"},
                                  {"--memory-limit", "12X"}, {"--model-dir", "relative"},
                                  {"--preload", "noequals"}, {"--workers", "1"},
                                  {"--kv-slots", "0"}, {"--kv-context", "8"},
                                  {"--head", "q4_0"}};
    for (int i = 0; i < 9; i++) {
        char *av[] = {"gptqd", (char *)bad_flags[i][0], (char *)bad_flags[i][1], NULL};
        CHECK_OK(gptqd_conf_init(&c));
        st = gptqd_conf_from_args(&c, 3, av, &action);
        CHECK(st == GPTQ_ERR_ARG && strstr(gptq_errmsg(), bad_flags[i][0] + 2),
              "%s %s: status %d '%s'", bad_flags[i][0], bad_flags[i][1], st, gptq_errmsg());
        gptqd_conf_free(&c);
    }
    char *av_missing[] = {"gptqd", "--socket", NULL};
    CHECK_OK(gptqd_conf_init(&c));
    CHECK(gptqd_conf_from_args(&c, 2, av_missing, &action) == GPTQ_ERR_ARG,
          "a flag without its value");
    gptqd_conf_free(&c);

    uint64_t v;
    CHECK(gptqd_parse_bytes("4096", &v) == 0 && v == 4096, "4096");
    CHECK(gptqd_parse_bytes("4K", &v) == 0 && v == 4096, "4K");
    CHECK(gptqd_parse_bytes("1GiB", &v) == 0 && v == 1ull << 30, "1GiB");
    CHECK(gptqd_parse_bytes("-1", &v) < 0 && gptqd_parse_bytes("99999999999G", &v) < 0,
          "negative and overflowing sizes are refused");

    unlink(path);
    unlink(bad);
    rmdir(dir);
    return test_failures ? 1 : 0;
}
