/* tests/test_daemon_cuda.c: gptqd on a GPU, end to end (docs/ARCHITECTURE.md).
 * gptqd --device cuda:0 with the fixture model preloaded: Status names the
 * GPU and its memory; List says the weights are in device memory; a greedy
 * infer gives the CPU backend's greedy text; two client processes Map the model (kind "cuda-ipc"),
 * build it on the daemon's device memory and generate the same greedy text
 * in their own processes; the device holds the weights once; unmap and exit
 * give the leases back.
 *
 * "Once" is measured with cudaMemGetInfo (be->mem_info): each client
 * first warms up with a private device copy of the model (CUDA context,
 * cuBLAS workspace, lazily loaded kernels, one generation), frees that
 * copy and reports; the free memory F0 is read; then both clients map,
 * build and generate, and F1 is read. F0 - F1 is then what mapping costs:
 * two KV caches of the prompt + max tokens (4 layers x 2 x 2 kv heads x 32
 * x 4 B per token, 64 KiB for 64 tokens) and forward scratch, each in the
 * driver's 2 MiB allocation granules: a few MiB. A copy of the weights per
 * client would cost 2 x arena_bytes (~20 MB each for tiny-llama in
 * float32). The bound F0 - F1 < arena_bytes (half of what two copies cost,
 * several times what KV and scratch take) separates the two.
 *
 * Skips (77) without the fixtures or a CUDA device.
 * Usage: test_daemon_cuda PATH/TO/gptqd */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gptq/client.h"
#include "kernels/backend_select.h"
#include "model/llama.h"
#include "gptq/tokenizer.h"
#include "test_daemon_harness.h"
#include "testutil.h"
#include "testgen.h"

enum { MAX_TOKENS = 24, N_CLIENTS = 2 };
static const char *PROMPT = "In Python, a function";

/* Greedy decoding as gptqd does it (testgen.h). *text malloc'ed. */
static gptq_status greedy(const gptq_model *model, const char *tokenizer_path, char **text)
{
    return test_greedy_text(model, tokenizer_path, PROMPT, MAX_TOKENS, text);
}

/* text with its newlines as \x1f, so that it travels as one report line. */
static char *one_line(char *text)
{
    for (char *p = text; *p; p++)
        if (*p == '\n')
            *p = '\x1f';
    return text;
}

/* Write a line to fd (the parent reads lines). */
static void say(int fd, const char *fmt, const char *arg)
{
    char line[4096];
    int n = snprintf(line, sizeof line, fmt, arg);
    if (n > 0 && write(fd, line, (size_t)n) != n)
        _exit(1);
}

/* A client process (fresh exec: neither nanomsg nor CUDA survive fork):
 * warm up, say "warm", wait for a byte on stdin, map + build + generate,
 * say "text <completion>", wait for stdin EOF, unmap, exit 0. */
static int client_main(const char *sock, const char *model_dir, int report)
{
    const gptq_backend *be = NULL;
    char why[512];
    gptq_model *host = NULL, *priv = NULL, *model = NULL;
    gptq_client *c = NULL;
    gptq_mapping *m = NULL;
    char *text = NULL, tokenizer[PATH_MAX + 32], byte;
    snprintf(tokenizer, sizeof tokenizer, "%s/tokenizer.json", model_dir);
    if (gptq_backend_select("cuda:0", &be, why, sizeof why) ||
        gptq_model_load(model_dir, &host) ||
        gptq_model_to_backend(host, be, NULL, NULL, 0, &priv) || greedy(priv, tokenizer, &text))
        goto fail;
    gptq_model_free(priv);
    gptq_model_free(host);
    free(text);
    priv = host = NULL;
    text = NULL;
    say(report, "warm\n", "");
    if (read(0, &byte, 1) != 1)
        goto fail;
    if (gptq_client_connect(sock, &c) || gptq_map(c, "tiny", &m))
        goto fail;
    if (strcmp(gptq_mapping_kind(m), "cuda-ipc") != 0 || gptq_mapping_cuda_device(m) != 0) {
        gptq_fail(GPTQ_ERR_FORMAT, "mapping of kind %s on device %d, expected cuda-ipc on 0",
                  gptq_mapping_kind(m), gptq_mapping_cuda_device(m));
        goto fail;
    }
    if (gptq_mapping_model(m, &model) || greedy(model, gptq_mapping_tokenizer_path(m), &text))
        goto fail;
    say(report, "text %s\n", one_line(text));
    free(text);
    while (read(0, &byte, 1) == 1)
        ;
    if (gptq_unmap(c, m))
        goto fail;
    gptq_client_close(c);
    return 0;
fail:
    fprintf(stderr, "client %d: %s\n", (int)getpid(), gptq_errmsg());
    say(report, "error %s\n", gptq_errmsg());
    return 1;
}

typedef struct child {
    pid_t pid;
    int to;     /* its stdin */
    FILE *from; /* its reports */
} child;

static int spawn(child *ch, const char *self, const char *sock, const char *model_dir)
{
    /* The parent's ends close on exec: a later client holding an earlier
     * one's stdin would keep it from ever seeing EOF. */
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe(out) < 0 || fcntl(out[0], F_SETFD, FD_CLOEXEC) < 0)
        return -1;
    ch->pid = fork();
    if (ch->pid < 0)
        return -1;
    if (ch->pid == 0) {
        dup2(in[0], 0);
        close(in[1]);
        close(out[0]);
        char fd[16];
        snprintf(fd, sizeof fd, "%d", out[1]);
        execl(self, self, "--client", sock, model_dir, fd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    ch->to = in[1];
    ch->from = fdopen(out[0], "r");
    return ch->from ? 0 : -1;
}

/* The next report line of ch into line (newline stripped); 0 or -1. */
static int report_of(child *ch, char *line, size_t len)
{
    if (!fgets(line, (int)len, ch->from))
        return -1;
    line[strcspn(line, "\n")] = 0;
    return 0;
}

static int leases_of(gptq_client *c, const char *name)
{
    gptq_client_models *list = NULL;
    int n = -1;
    if (gptq_client_list(c, &list) == GPTQ_OK)
        for (size_t i = 0; i < list->n; i++)
            if (strcmp(list->models[i].name, name) == 0)
                n = (int)list->models[i].leases;
    gptq_client_models_free(list);
    return n;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--client") == 0)
        return client_main(argv[2], argv[3], atoi(argv[4]));
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/gptqd\n", argv[0]);
        return 2;
    }
    const char *fixtures = getenv("GPTQ_FIXTURES");
    char fixdir[PATH_MAX], model[PATH_MAX + 32], preload[PATH_MAX + 64], why[512];
    if (!fixtures || !realpath(fixtures, fixdir)) {
        printf("GPTQ_FIXTURES not set or absent: skipped\n");
        return 77;
    }
    const gptq_backend *be = NULL;
    if (gptq_backend_select("cuda:0", &be, why, sizeof why) != GPTQ_OK) {
        printf("no CUDA device (%s): skipped\n", why);
        return 77;
    }
    snprintf(model, sizeof model, "%s/tiny-llama", fixdir);
    snprintf(preload, sizeof preload, "tiny=%s", model);
    const char *args[] = {"--device", "cuda:0", "--model-dir", fixdir, "--preload", preload,
                          NULL};
    td_daemon d;
    if (td_start(&d, argv[1], args) < 0)
        return 1;
    gptq_client *c = NULL;
    child kids[N_CLIENTS];
    int n_kids = 0;
    char daemon_text[4096] = "", line[4096];
    uint64_t arena_bytes = 0;
    if (gptq_client_connect(d.sock, &c) != GPTQ_OK) {
        fprintf(stderr, "FAIL: connect: %s\n", gptq_errmsg());
        td_stop(&d);
        return 1;
    }
    gptq_client_set_timeout(c, 60000);

    /* Status: the GPU. */
    gptq_client_status_info *s = NULL;
    CHECK_OK(gptq_client_status(c, &s));
    if (s) {
        printf("status: backend %s, device %s, %llu of %llu bytes free, note '%s'\n",
               s->backend, s->device, (unsigned long long)s->device_bytes_free,
               (unsigned long long)s->device_bytes_total, s->backend_note);
        CHECK(strcmp(s->backend, "cuda") == 0, "backend '%s', expected cuda", s->backend);
        CHECK(strstr(s->device, be->device) != NULL, "device '%s' lacks '%s'", s->device,
              be->device);
        CHECK(s->device_bytes_total == be->total_memory && s->device_bytes_free > 0 &&
                  s->device_bytes_free <= s->device_bytes_total,
              "device memory %llu free of %llu, the device has %zu",
              (unsigned long long)s->device_bytes_free,
              (unsigned long long)s->device_bytes_total, be->total_memory);
        CHECK(s->resident_device_bytes > 0 && s->resident_host_bytes == 0,
              "resident bytes: device %llu, host %llu",
              (unsigned long long)s->resident_device_bytes,
              (unsigned long long)s->resident_host_bytes);
    }
    gptq_client_status_free(s);
    gptq_client_models *list = NULL;
    CHECK_OK(gptq_client_list(c, &list));
    for (size_t i = 0; list && i < list->n; i++)
        if (strcmp(list->models[i].name, "tiny") == 0) {
            arena_bytes = list->models[i].device_bytes;
            CHECK(strcmp(list->models[i].memory, "device") == 0 &&
                      list->models[i].bytes == arena_bytes && arena_bytes > 0,
                  "tiny: memory '%s', bytes %llu, device bytes %llu", list->models[i].memory,
                  (unsigned long long)list->models[i].bytes, (unsigned long long)arena_bytes);
        }
    gptq_client_models_free(list);
    CHECK(arena_bytes > 0, "tiny is not listed with device bytes");

    /* Infer, greedy, on the daemon's GPU. */
    gptq_generate_options o;
    gptq_generate_options_init(&o);
    o.max_tokens = MAX_TOKENS;
    o.temperature = 0;
    gptq_job_id job = 0;
    gptq_client_result *res = NULL;
    CHECK_OK(gptq_client_generate(c, "tiny", PROMPT, &o, &job));
    CHECK_OK(gptq_client_wait(c, job, NULL, NULL, NULL, &res));
    if (res)
        snprintf(daemon_text, sizeof daemon_text, "%s", res->text ? res->text : "");
    gptq_client_result_free(res);
    printf("daemon: '%s'\n", daemon_text);
    CHECK(daemon_text[0] != 0, "the daemon generated no text");
    one_line(daemon_text);
    /* The reference: the same greedy decoding on the CPU backend. */
    gptq_model *host = NULL;
    char *host_text = NULL, tokenizer[PATH_MAX + 32];
    snprintf(tokenizer, sizeof tokenizer, "%s/tokenizer.json", model);
    CHECK_OK(gptq_model_load(model, &host));
    if (host)
        CHECK_OK(greedy(host, tokenizer, &host_text));
    printf("cpu:    '%s'\n", host_text ? host_text : "(none)");
    CHECK(host_text && strcmp(one_line(host_text), daemon_text) == 0,
          "the daemon's device generated '%s', the CPU '%s'", daemon_text,
          host_text ? host_text : "(none)");
    free(host_text);
    gptq_model_free(host);

    /* Two clients: warm up, then map together. */
    for (; n_kids < N_CLIENTS; n_kids++)
        if (spawn(&kids[n_kids], argv[0], d.sock, model) < 0) {
            CHECK(0, "spawn client %d", n_kids);
            goto out;
        }
    for (int i = 0; i < n_kids; i++)
        CHECK(report_of(&kids[i], line, sizeof line) == 0 && strcmp(line, "warm") == 0,
              "client %d warm-up: '%s'", i, line);
    size_t free0 = 0, free1 = 0, total = 0;
    CHECK_OK(be->mem_info(be, &free0, &total));
    for (int i = 0; i < n_kids; i++)
        CHECK(write(kids[i].to, "m", 1) == 1, "go to client %d", i);
    for (int i = 0; i < n_kids; i++) {
        int got = report_of(&kids[i], line, sizeof line);
        CHECK(got == 0 && strncmp(line, "text ", 5) == 0 && strcmp(line + 5, daemon_text) == 0,
              "client %d: '%s', the daemon said '%s'", i, got ? "(no report)" : line,
              daemon_text);
    }
    CHECK_OK(be->mem_info(be, &free1, &total));
    long long drop = (long long)free0 - (long long)free1;
    printf("device free before mapping %zu, after %zu: %lld bytes for %d clients; arena %llu\n",
           free0, free1, drop, n_kids, (unsigned long long)arena_bytes);
    CHECK(drop < (long long)arena_bytes,
          "two mapping clients took %lld bytes of device memory, not less than one copy of the "
          "weights (%llu): are they copied?", drop, (unsigned long long)arena_bytes);
    CHECK(leases_of(c, "tiny") == n_kids, "%d leases while %d clients map",
          leases_of(c, "tiny"), n_kids);
out:
    for (int i = 0; i < n_kids; i++) {
        close(kids[i].to); /* EOF: unmap and exit */
        int status = 0;
        waitpid(kids[i].pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client %d exit status %d", i,
              status);
        fclose(kids[i].from);
    }
    CHECK(leases_of(c, "tiny") == 0, "%d leases after the clients unmapped and exited",
          leases_of(c, "tiny"));
    gptq_client_close(c);
    CHECK(td_stop(&d) == 0, "gptqd did not stop cleanly");
    return test_result();
}
