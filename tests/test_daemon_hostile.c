/* tests/test_daemon_hostile.c: gptqd against hostile and broken requests.
 * Each must get a clear status whose message names the problem, the daemon
 * must keep serving, and 10,000 of them must not grow its memory.
 * Usage: test_daemon_hostile PATH/TO/gptqd */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "gptq/error.h"
#include "test_daemon_harness.h"
#include "testutil.h"

static int requests; /* answered hostile requests */

/* Checks a reply: `status`, and a message containing `needle`. */
static void expect(const char *what, Gptqd__Response *resp, int status, const char *needle)
{
    CHECK(resp != NULL, "%s: no reply", what);
    if (!resp)
        return;
    requests++;
    CHECK(resp->status == status, "%s: status %d (%s), expected %d (%s); message '%s'", what,
          resp->status, gptq_status_name(resp->status), status, gptq_status_name(status),
          resp->message);
    CHECK(resp->version == GPTQD__VERSION__PROTOCOL_VERSION, "%s: reply version %u", what,
          resp->version);
    if (status != 0) {
        CHECK(resp->message && resp->message[0], "%s: empty message", what);
        CHECK(resp->body_case == GPTQD__RESPONSE__BODY__NOT_SET, "%s: error with a body", what);
        if (needle)
            CHECK(resp->message && strstr(resp->message, needle), "%s: message '%s' lacks '%s'",
                  what, resp->message, needle);
    }
    gptqd__response__free_unpacked(resp, NULL);
}

static Gptqd__Response *call(int s, Gptqd__Request *req) { return td_call(s, req); }

static Gptqd__Response *generate(int s, const char *name, uint32_t max_tokens, float temp,
                                 float top_p)
{
    Gptqd__Request req;
    Gptqd__GenerateRequest body = GPTQD__GENERATE_REQUEST__INIT;
    td_request_init(&req);
    body.name = (char *)name;
    body.prompt = "hello";
    body.max_tokens = max_tokens;
    body.has_temperature_case = GPTQD__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    body.temperature = temp;
    if (top_p != 0) { /* 0: left unset */
        body.has_top_p_case = GPTQD__GENERATE_REQUEST__HAS_TOP_P_TOP_P;
        body.top_p = top_p;
    }
    req.body_case = GPTQD__REQUEST__BODY_GENERATE;
    req.generate = &body;
    return call(s, &req);
}

static Gptqd__Response *quantize(int s, uint32_t bits, int32_t group_size)
{
    Gptqd__Request req;
    Gptqd__QuantizeRequest body = GPTQD__QUANTIZE_REQUEST__INIT;
    td_request_init(&req);
    body.name = "base";
    body.new_name = "base-w";
    body.bits = bits;
    body.group_size = group_size;
    req.body_case = GPTQD__REQUEST__BODY_QUANTIZE;
    req.quantize = &body;
    return call(s, &req);
}

static Gptqd__Response *poll_job(int s, uint64_t job, uint32_t wait_ms)
{
    Gptqd__Request req;
    Gptqd__PollRequest body = GPTQD__POLL_REQUEST__INIT;
    td_request_init(&req);
    body.job = job;
    body.wait_ms = wait_ms;
    req.body_case = GPTQD__REQUEST__BODY_POLL;
    req.poll = &body;
    return call(s, &req);
}

static Gptqd__Response *cancel_job(int s, uint64_t job)
{
    Gptqd__Request req;
    Gptqd__CancelRequest body = GPTQD__CANCEL_REQUEST__INIT;
    td_request_init(&req);
    body.job = job;
    req.body_case = GPTQD__REQUEST__BODY_CANCEL;
    req.cancel = &body;
    return call(s, &req);
}

static Gptqd__Response *ping(int s)
{
    Gptqd__Request req;
    Gptqd__Ping body = GPTQD__PING__INIT;
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_PING;
    req.ping = &body;
    return call(s, &req);
}

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

static const char tiny_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
    "\"intermediate_size\": 128, \"num_attention_heads\": 4, \"num_key_value_heads\": 4, "
    "\"num_hidden_layers\": 2, \"vocab_size\": 256, \"rms_norm_eps\": 1e-5, "
    "\"hidden_act\": \"silu\", \"torch_dtype\": \"float32\", \"max_position_embeddings\": 128}";

/* One round of every hostile request (37 of them). */
static void hostile_round(int s, const char *models, uint64_t finished_job)
{
    char path[600];
    /* Transport-level garbage. */
    static const unsigned char garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x80};
    expect("garbage", td_call_raw(s, garbage, sizeof garbage), GPTQ_ERR_PROTOCOL, "protobuf");
    {
        Gptqd__Request req;
        Gptqd__LoadRequest body = GPTQD__LOAD_REQUEST__INIT;
        td_request_init(&req);
        body.name = "some-model";
        body.path = "/a/path/long/enough/to/cut/through/the/middle";
        req.body_case = GPTQD__REQUEST__BODY_LOAD;
        req.load = &body;
        unsigned char buf[512];
        size_t n = gptqd__request__pack(&req, buf);
        expect("truncated", td_call_raw(s, buf, n - 10), GPTQ_ERR_PROTOCOL, "truncated");
    }
    expect("empty message", td_call_raw(s, "", 0), GPTQ_ERR_PROTOCOL, "version");
    {
        Gptqd__Request req;
        Gptqd__Ping body = GPTQD__PING__INIT;
        td_request_init(&req);
        req.version = GPTQD__VERSION__PROTOCOL_VERSION + 1;
        req.body_case = GPTQD__REQUEST__BODY_PING;
        req.ping = &body;
        expect("wrong version", call(s, &req), GPTQ_ERR_PROTOCOL, "version");
        td_request_init(&req);
        expect("missing body", call(s, &req), GPTQ_ERR_PROTOCOL, "body");
    }
    /* Strings that are not UTF-8, or hold a NUL (which protobuf-c would cut
     * the string at): refused naming the field, never echoed. */
    {
        Gptqd__Request req;
        Gptqd__LoadRequest body = GPTQD__LOAD_REQUEST__INIT;
        td_request_init(&req);
        req.client = "bad\xff\xfe client";
        body.name = "m";
        body.path = "/x";
        req.body_case = GPTQD__REQUEST__BODY_LOAD;
        req.load = &body;
        expect("client not UTF-8", call(s, &req), GPTQ_ERR_ARG, "request.client: not valid UTF-8");
        td_request_init(&req);
        req.body_case = GPTQD__REQUEST__BODY_LOAD;
        req.load = &body;
        body.name = "m\xc3";
        expect("name not UTF-8", call(s, &req), GPTQ_ERR_ARG, "request.load.name");
        body.name = "aXb"; /* X becomes a NUL byte on the wire */
        unsigned char buf[512];
        size_t n = gptqd__request__pack(&req, buf);
        unsigned char *x = memmem(buf, n, "aXb", 3); /* not some 'X' of the session token */
        if (x)
            x[1] = 0;
        expect("name with NUL", td_call_raw(s, buf, n), GPTQ_ERR_ARG,
               "request.load.name: holds a NUL byte at byte 1");
    }
    /* Unknown things. */
    {
        Gptqd__Request req;
        Gptqd__UnloadRequest body = GPTQD__UNLOAD_REQUEST__INIT;
        td_request_init(&req);
        body.name = "no-such-model";
        req.body_case = GPTQD__REQUEST__BODY_UNLOAD;
        req.unload = &body;
        expect("unload unknown", call(s, &req), GPTQ_ERR_NOTFOUND, "no-such-model");
    }
    expect("generate unknown", generate(s, "no-such-model", 4, 0, 0), GPTQ_ERR_NOTFOUND,
           "no-such-model");
    expect("poll unknown job", poll_job(s, 987654321, 10), GPTQ_ERR_NOTFOUND, "987654321");
    expect("poll job 0", poll_job(s, 0, 10), GPTQ_ERR_ARG, "poll.job");
    expect("cancel unknown job", cancel_job(s, 987654321), GPTQ_ERR_NOTFOUND, "987654321");
    if (finished_job)
        expect("cancel finished job", cancel_job(s, finished_job), GPTQ_ERR_ARG,
               "already finished");
    {
        Gptqd__Request req;
        Gptqd__MapRequest body = GPTQD__MAP_REQUEST__INIT;
        td_request_init(&req);
        body.name = "no-such-model";
        req.body_case = GPTQD__REQUEST__BODY_MAP;
        req.map = &body;
        expect("map unknown", call(s, &req), GPTQ_ERR_NOTFOUND, "no-such-model");
        req.session.data = (uint8_t *)"not a token at all";
        req.session.len = 16;
        expect("map with a forged session", call(s, &req), GPTQ_ERR_PERMISSION, "session");
        req.session.len = 0;
        expect("map without a session", call(s, &req), GPTQ_ERR_PERMISSION, ".auth");
        Gptqd__UnmapRequest un = GPTQD__UNMAP_REQUEST__INIT;
        td_request_init(&req);
        un.lease = 424242;
        req.body_case = GPTQD__REQUEST__BODY_UNMAP;
        req.unmap = &un;
        expect("unmap unknown", call(s, &req), GPTQ_ERR_NOTFOUND, "424242");
    }
    /* Invalid names and values. */
    expect("name with slash", td_load(s, "../etc", "/x"), GPTQ_ERR_ARG, "load.name");
    expect("name with space", td_load(s, "a b", "/x"), GPTQ_ERR_ARG, "load.name");
    expect("empty name", td_load(s, "", "/x"), GPTQ_ERR_ARG, "load.name");
    expect("long name",
           td_load(s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "/x"),
           GPTQ_ERR_ARG, "at most 64");
    expect("dot-dot name", td_load(s, "..", "/x"), GPTQ_ERR_ARG, "load.name");
    expect("empty path", td_load(s, "m", ""), GPTQ_ERR_ARG, "load.path");
    expect("bits 5", quantize(s, 5, 128), GPTQ_ERR_ARG, "bits");
    /* the library's bounds and messages (model/options.c, quant/config.c) */
    expect("group_size 70000", quantize(s, 4, 70000), GPTQ_ERR_ARG, "group-size 70000: use");
    expect("group_size -7", quantize(s, 4, -7), GPTQ_ERR_ARG, "group-size -7: use");
    expect("temperature NaN", generate(s, "m", 4, NAN, 0), GPTQ_ERR_ARG, "temperature nan: use");
    expect("top_p 2", generate(s, "m", 4, 0.5f, 2.0f), GPTQ_ERR_ARG, "top-p 2: use");
    expect("max_tokens huge", generate(s, "m", 2000000, 0, 0), GPTQ_ERR_ARG, "max-tokens 2000000");
    expect("poll wait huge", poll_job(s, 1, 4000000000u), GPTQ_ERR_ARG, "wait_ms");
    /* Paths. */
    expect("outside model dir", td_load(s, "m", "/etc"), GPTQ_ERR_PERMISSION, "outside");
    expect("relative path", td_load(s, "m", "etc"), GPTQ_ERR_ARG, "absolute");
    snprintf(path, sizeof path, "%s/../../etc", models);
    expect("dot-dot path", td_load(s, "m", path), GPTQ_ERR_PERMISSION, "outside");
    snprintf(path, sizeof path, "%s/escape", models);
    expect("symlink out", td_load(s, "m", path), GPTQ_ERR_PERMISSION, "outside");
    snprintf(path, sizeof path, "%s/missing", models);
    expect("missing folder", td_load(s, "m", path), GPTQ_ERR_NOTFOUND, "missing");
    snprintf(path, sizeof path, "%s/bad-json", models);
    expect("corrupt config", td_load(s, "m", path), GPTQ_ERR_FORMAT, "config.json");
    snprintf(path, sizeof path, "%s/no-weights", models);
    expect("no weights", td_load(s, "m", path), GPTQ_ERR_NOTFOUND, "safetensors");
}

int main(int argc, char **argv)
{
    td_child_main(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/gptqd\n", argv[0]);
        return 2;
    }
    /* The model directory with a few broken folders in it. */
    char models[300], path[600];
    snprintf(models, sizeof models, "%s/gptqd-hostile-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(models)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/escape", models);
    if (symlink("/etc", path) < 0)
        perror("symlink");
    snprintf(path, sizeof path, "%s/bad-json", models);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/bad-json/config.json", models);
    write_file(path, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": ");
    snprintf(path, sizeof path, "%s/no-weights", models);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/no-weights/config.json", models);
    write_file(path, tiny_config);
    snprintf(path, sizeof path, "%s/bad-weights", models);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/bad-weights/config.json", models);
    write_file(path, tiny_config);
    snprintf(path, sizeof path, "%s/bad-weights/model.safetensors", models);
    write_file(path, "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": garbage}");
    snprintf(path, sizeof path, "%s/bad-weights/tokenizer.json", models);
    write_file(path, "{}");

    td_daemon d;
    const char *args[] = {"--model-dir", models, "--max-message-size", "1M", "--workers", "4",
                          NULL};
    if (td_start(&d, argv[1], args) < 0)
        return 1;
    int s = td_connect(&d, 5000);
    CHECK(s >= 0, "connect");

    /* The socket is born 0660; a second daemon on it is refused and the
     * first keeps serving. */
    struct stat sb;
    CHECK(stat(d.sock, &sb) == 0 && S_ISSOCK(sb.st_mode) && (sb.st_mode & 0777) == 0660,
          "socket mode %o, expected 0660", (unsigned)(sb.st_mode & 0777));
    pid_t second = fork();
    if (second == 0) {
        execl(argv[1], argv[1], "--socket", d.sock, "--log-level", "err", (char *)NULL);
        _exit(127);
    }
    int second_status = 0;
    waitpid(second, &second_status, 0);
    CHECK(WIFEXITED(second_status) && WEXITSTATUS(second_status) == 1,
          "a second gptqd on the same socket: status 0x%x, expected exit 1", second_status);

    /* A load that gets as far as a job and fails there: a FAILED job with
     * the reader's message, which is also our finished job to cancel. */
    snprintf(path, sizeof path, "%s/bad-weights", models);
    Gptqd__Response *resp = td_load(s, "broken", path);
    uint64_t finished_job = 0;
    CHECK(resp && resp->status == 0 && resp->body_case == GPTQD__RESPONSE__BODY_JOB,
          "load of a corrupt folder should start a job: status %d '%s'", resp ? resp->status : -1,
          resp ? resp->message : "no reply");
    if (resp && resp->body_case == GPTQD__RESPONSE__BODY_JOB)
        finished_job = resp->job->job;
    if (resp)
        gptqd__response__free_unpacked(resp, NULL);
    if (finished_job) {
        resp = td_wait_job(s, finished_job, 10);
        CHECK(resp && resp->body_case == GPTQD__RESPONSE__BODY_POLL &&
                  resp->poll->state == GPTQD__JOB_STATE__JOB_FAILED &&
                  resp->poll->result_status != 0 && resp->poll->result_message[0],
              "corrupt load job should fail with a message");
        if (resp) {
            if (resp->body_case == GPTQD__RESPONSE__BODY_POLL)
                printf("corrupt folder: %s: %s\n", gptq_status_name(resp->poll->result_status),
                       resp->poll->result_message);
            gptqd__response__free_unpacked(resp, NULL);
        }
        /* The reserved name was released: nothing is listed as resident. */
        Gptqd__Request req;
        Gptqd__ListRequest body = GPTQD__LIST_REQUEST__INIT;
        td_request_init(&req);
        req.body_case = GPTQD__REQUEST__BODY_LIST;
        req.list = &body;
        resp = call(s, &req);
        CHECK(resp && resp->body_case == GPTQD__RESPONSE__BODY_LIST && resp->list->n_models == 0,
              "a failed load left a model listed");
        if (resp)
            gptqd__response__free_unpacked(resp, NULL);
    }

    hostile_round(s, models, finished_job);

    /* Oversized: the connection drops (the REQ side times out); the daemon
     * survives and the next client is served. */
    {
        int big = td_connect(&d, 1000);
        size_t n = 2u << 20;
        unsigned char *buf = calloc(1, n);
        Gptqd__Request req;
        Gptqd__Ping body = GPTQD__PING__INIT;
        td_request_init(&req);
        body.payload.data = buf;
        body.payload.len = n - 64;
        req.body_case = GPTQD__REQUEST__BODY_PING;
        req.ping = &body;
        Gptqd__Response *r = td_call(big, &req);
        CHECK(r == NULL, "an oversized request got a reply (status %d)", r ? r->status : 0);
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        free(buf);
        nn_close(big);
        expect("ping after oversized", ping(s), 0, NULL);
    }

    /* Clients that vanish: mid-poll, and without reading the reply. */
    for (int i = 0; i < 5; i++)
        CHECK(td_vanish_poll(argv[0], &d, finished_job ? finished_job : 1) == 0,
              "vanishing client %d could not send its poll", i);
    {
        int gone = td_connect(&d, 1000);
        Gptqd__Request req;
        Gptqd__StatusRequest body = GPTQD__STATUS_REQUEST__INIT;
        td_request_init(&req);
        req.body_case = GPTQD__REQUEST__BODY_STATUS_REQUEST;
        req.status_request = &body;
        unsigned char buf[64];
        size_t n = gptqd__request__pack(&req, buf);
        nn_send(gone, buf, n, 0);
        nn_close(gone);
    }
    expect("ping after vanished clients", ping(s), 0, NULL);

    /* Memory: 10,000 hostile requests after a warm-up. */
    for (int i = 0; i < 20; i++)
        hostile_round(s, models, finished_job);
    long rss_before = td_rss_kb(d.pid);
    int before_failures = test_failures;
    int start_requests = requests, sent = 0;
    while (sent < 10000) {
        hostile_round(s, models, finished_job);
        sent = requests - start_requests;
        if (test_failures > before_failures + 20)
            break; /* do not print thousands of lines */
    }
    long rss_after = td_rss_kb(d.pid);
    printf("%d hostile requests: daemon VmRSS %ld kB -> %ld kB (%+ld kB)\n", sent, rss_before,
           rss_after, rss_after - rss_before);
#ifndef __SANITIZE_ADDRESS__
    /* Under ASan the quarantine holds freed memory, so RSS says nothing;
     * LeakSanitizer checks the daemon at its exit instead. */
    CHECK(rss_before > 0 && rss_after - rss_before < 4096,
          "RSS grew by %ld kB over %d requests (limit 4096 kB)", rss_after - rss_before, sent);
#endif

    expect("ping at the end", ping(s), 0, NULL);
    CHECK(kill(d.pid, 0) == 0, "the daemon died");
    nn_close(s);
    int code = td_stop(&d);
    CHECK(code == 0, "gptqd exit status %d after SIGTERM", code);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", models);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", models);
    return test_result();
}
