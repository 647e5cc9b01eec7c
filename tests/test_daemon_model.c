/* tests/test_daemon_model.c: the model verbs through raw requests to a real
 * gptqd on the fixture model: load, list, status, generate (streamed tokens,
 * several clients at once, cancel), eval against the fixture's reference
 * perplexity, unload rules. Skips (77) without $GPTQ_FIXTURES.
 * Usage: test_daemon_model PATH/TO/gptqd */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nanomsg/nn.h>

#include "common/utf8.h"
#include "gptq/error.h"
#include "model/calib.h"
#include "model/eval.h"
#include "model/llama.h"
#include "gptq/tokenizer.h"
#include "test_daemon_harness.h"
#include "testutil.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

static const char *status_of(const Gptqd__Response *r)
{
    return r ? (r->message && r->message[0] ? r->message : gptq_status_name(r->status))
             : "no reply";
}

/* Starts a job; returns its id or 0 (with a check failure). */
static uint64_t start_job(int s, Gptqd__Request *req, const char *what)
{
    Gptqd__Response *r = td_call(s, req);
    uint64_t id = 0;
    CHECK(r && r->status == 0 && r->body_case == GPTQD__RESPONSE__BODY_JOB, "%s: %s", what,
          status_of(r));
    if (r && r->body_case == GPTQD__RESPONSE__BODY_JOB)
        id = r->job->job;
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return id;
}

static Gptqd__Response *simple(int s, Gptqd__Request *req)
{
    return td_call(s, req);
}

static uint64_t generate_job_t(int s, const char *name, const char *prompt, uint32_t max_tokens,
                               float temperature, uint64_t seed)
{
    Gptqd__Request req;
    Gptqd__GenerateRequest g = GPTQD__GENERATE_REQUEST__INIT;
    td_request_init(&req);
    g.name = (char *)name;
    g.prompt = (char *)prompt;
    g.max_tokens = max_tokens;
    g.has_temperature_case = GPTQD__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    g.temperature = temperature;
    g.has_seed_case = GPTQD__GENERATE_REQUEST__HAS_SEED_SEED;
    g.seed = seed;
    req.body_case = GPTQD__REQUEST__BODY_GENERATE;
    req.generate = &g;
    return start_job(s, &req, "generate");
}

static uint64_t generate_job(int s, const char *name, const char *prompt, uint32_t max_tokens)
{
    return generate_job_t(s, name, prompt, max_tokens, 0, 0);
}

/* Polls a generate job to its end, concatenating streamed token bytes.
 * Returns the final response (caller frees) and the streamed text. Every
 * event's text must be valid UTF-8 on its own (a proto3 string). */
static Gptqd__Response *collect(int s, uint64_t job, char *streamed, size_t cap, int *n_tokens)
{
    uint64_t since = 0;
    size_t len = 0;
    *n_tokens = 0;
    streamed[0] = '\0';
    for (double end = td_now() + 120; td_now() < end;) {
        Gptqd__Request req;
        Gptqd__PollRequest p = GPTQD__POLL_REQUEST__INIT;
        td_request_init(&req);
        p.job = job;
        p.since = since;
        p.wait_ms = 1000;
        req.body_case = GPTQD__REQUEST__BODY_POLL;
        req.poll = &p;
        Gptqd__Response *r = td_call(s, &req);
        if (!r || r->body_case != GPTQD__RESPONSE__BODY_POLL)
            return r;
        for (size_t i = 0; i < r->poll->n_events; i++) {
            const Gptqd__Event *e = r->poll->events[i];
            if (e->kind != GPTQD__EVENT_KIND__EVENT_TOKEN)
                continue;
            *n_tokens += e->token >= 0; /* -1: the final flush of an unfinished character */
            size_t n = strlen(e->text);
            CHECK(gptq_utf8_check(e->text, n) == n, "token %d event text is not UTF-8",
                  e->token);
            if (len + n < cap) {
                memcpy(streamed + len, e->text, n + 1);
                len += n;
            }
        }
        since = r->poll->next;
        if (r->poll->state != GPTQD__JOB_STATE__JOB_QUEUED &&
            r->poll->state != GPTQD__JOB_STATE__JOB_RUNNING)
            return r;
        gptqd__response__free_unpacked(r, NULL);
    }
    return NULL;
}

/* The KV cache bytes List gives for the only resident model, or -1. */
static long long listed_kv_bytes(int s)
{
    Gptqd__Request req;
    Gptqd__ListRequest list = GPTQD__LIST_REQUEST__INIT;
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_LIST;
    req.list = &list;
    Gptqd__Response *r = td_call(s, &req);
    long long kv = r && r->list && r->list->n_models == 1
                       ? (long long)r->list->models[0]->kv_bytes
                       : -1;
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return kv;
}

typedef struct gen_thread {
    const td_daemon *d;
    char text[8192];
    int ok;
} gen_thread;

static void *concurrent_generate(void *arg)
{
    gen_thread *g = arg;
    int s = td_connect(g->d, 30000);
    uint64_t job = generate_job(s, "tiny", "Once upon a time", 32);
    char streamed[8192];
    int n = 0;
    Gptqd__Response *r = job ? collect(s, job, streamed, sizeof streamed, &n) : NULL;
    g->ok = r && r->poll->state == GPTQD__JOB_STATE__JOB_DONE;
    if (g->ok)
        snprintf(g->text, sizeof g->text, "%s", r->poll->result->text);
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    nn_close(s);
    return NULL;
}

static double status_latency_ms(int s)
{
    Gptqd__Request req;
    Gptqd__StatusRequest body = GPTQD__STATUS_REQUEST__INIT;
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_STATUS_REQUEST;
    req.status_request = &body;
    double t0 = td_now();
    Gptqd__Response *r = simple(s, &req);
    double ms = (td_now() - t0) * 1e3;
    CHECK(r && r->status == 0, "status: %s", status_of(r));
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return ms;
}

/* The library path of what the daemon's quantize did (same defaults: the
 * bundled calibration text, 32 windows of 256 tokens, seed 0, 4-bit g128),
 * then the perplexity on the first 40 windows of eval_text. -1 on error. */
static double library_quantized_perplexity(const char *model_dir, const char *eval_text)
{
    const char *root = getenv("GPTQ_SOURCE_ROOT");
    char calib_path[PATH_MAX], tok_path[PATH_MAX + 64];
    snprintf(calib_path, sizeof calib_path, "%s/data/calib-default.txt", root ? root : ".");
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", model_dir);
    gptq_model *m = NULL;
    gptq_tokenizer *tok = NULL;
    int32_t *calib = NULL, *ids = NULL;
    size_t n_calib = 0, n_ids = 0, len = 0;
    char *text = NULL;
    double ppl = -1;
    gptq_calib_options o;
    gptq_calib_options_default(&o);
    o.quant.bits = 4;
    o.quant.group_size = 128;
    o.quant.sym = GPTQ_TOOL_DEFAULT_SYM; /* as gptqd quantizes when none is asked */
    o.nsamples = 32;
    o.seqlen = 256;
    gptq_eval_result res;
    if (gptq_model_load(model_dir, &m) || gptq_tokenizer_load(tok_path, &tok))
        goto done;
    if (!(text = slurp(calib_path, &len)) ||
        gptq_tokenizer_encode(tok, text, len, 0, &calib, &n_calib) ||
        gptq_calib_quantize(m, calib, n_calib, &o, NULL, NULL))
        goto done;
    free(text);
    if (!(text = slurp(eval_text, &len)) || gptq_tokenizer_encode(tok, text, len, 1, &ids, &n_ids))
        goto done;
    if (n_ids > 40 * 256)
        n_ids = 40 * 256;
    if (gptq_eval_ids(m, NULL, ids, n_ids, 256, NULL, NULL, &res) == GPTQ_OK)
        ppl = res.perplexity;
done:
    if (ppl < 0)
        fprintf(stderr, "library path: %s\n", gptq_errmsg());
    free(text);
    free(calib);
    free(ids);
    gptq_tokenizer_free(tok);
    gptq_model_free(m);
    return ppl;
}

int main(int argc, char **argv)
{
    td_child_main(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/gptqd\n", argv[0]);
        return 2;
    }
    const char *fixtures = getenv("GPTQ_FIXTURES");
    char fixdir[PATH_MAX], model[PATH_MAX + 32], eval_text[PATH_MAX + 32];
    if (!fixtures || !realpath(fixtures, fixdir)) {
        printf("GPTQ_FIXTURES not set or absent: skipped\n");
        return 77;
    }
    snprintf(model, sizeof model, "%s/tiny-llama", fixdir);
    snprintf(eval_text, sizeof eval_text, "%s/tiny-llama/eval.txt", fixdir);
    if (access(model, R_OK) != 0) {
        printf("%s absent: skipped\n", model);
        return 77;
    }

    char outdir[] = "/tmp/gptqd-model-out-XXXXXX";
    if (!mkdtemp(outdir)) {
        perror("mkdtemp");
        return 1;
    }
    td_daemon d;
    const char *args[] = {"--model-dir", fixdir, "--model-dir", outdir, NULL};
    if (td_start(&d, argv[1], args) < 0)
        return 1;
    int s = td_connect(&d, 30000);
    Gptqd__Response *r;
    Gptqd__Request req;

    /* load */
    Gptqd__LoadRequest load = GPTQD__LOAD_REQUEST__INIT;
    td_request_init(&req);
    load.name = "tiny";
    load.path = model;
    req.body_case = GPTQD__REQUEST__BODY_LOAD;
    req.load = &load;
    uint64_t job = start_job(s, &req, "load");
    r = job ? td_wait_job(s, job, 60) : NULL;
    CHECK(r && r->body_case == GPTQD__RESPONSE__BODY_POLL &&
              r->poll->state == GPTQD__JOB_STATE__JOB_DONE,
          "load job: %s", r && r->body_case == GPTQD__RESPONSE__BODY_POLL
                              ? r->poll->result_message : status_of(r));
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    r = simple(s, &req);
    CHECK(r && r->status == GPTQ_ERR_EXISTS, "second load of tiny: %s", status_of(r));
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    /* list, status */
    Gptqd__ListRequest list = GPTQD__LIST_REQUEST__INIT;
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_LIST;
    req.list = &list;
    r = simple(s, &req);
    CHECK(r && r->body_case == GPTQD__RESPONSE__BODY_LIST && r->list->n_models == 1,
          "list: %s", status_of(r));
    if (r && r->body_case == GPTQD__RESPONSE__BODY_LIST && r->list->n_models == 1) {
        const Gptqd__ModelInfo *m = r->list->models[0];
        printf("list: %s %s %s params %llu bytes %llu layers %u hidden %u vocab %u\n", m->name,
               m->arch, m->format, (unsigned long long)m->params, (unsigned long long)m->bytes,
               m->layers, m->hidden, m->vocab);
        CHECK(strcmp(m->name, "tiny") == 0 && strcmp(m->arch, "LlamaForCausalLM") == 0 &&
                  strcmp(m->format, "f16") == 0 && m->layers == 4 && m->hidden == 256 &&
                  m->vocab == 4096 && m->bits == 0,
              "model info differs from the fixture's config.json");
        /* ~4.9M parameters per the fixture's README */
        CHECK(m->params > 4500000 && m->params < 5500000, "params %llu",
              (unsigned long long)m->params);
        /* the F16 fixture stays 16-bit: 2 bytes a parameter (norms 4) */
        CHECK(m->bytes >= 2 * 4500000ull && m->bytes < 3 * 4500000ull,
              "bytes %llu: not the F16 weights' 2 bytes a parameter", (unsigned long long)m->bytes);
    }
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    /* generate: greedy, streamed tokens add up to the result text */
    char streamed[8192], serial[8192] = "";
    int n_tokens = 0;
    job = generate_job(s, "tiny", "Once upon a time", 32);
    r = job ? collect(s, job, streamed, sizeof streamed, &n_tokens) : NULL;
    CHECK(r && r->poll->state == GPTQD__JOB_STATE__JOB_DONE, "generate: %s",
          r ? r->poll->result_message : "no reply");
    if (r && r->poll->state == GPTQD__JOB_STATE__JOB_DONE) {
        const Gptqd__JobResult *res = r->poll->result;
        printf("generate: %u tokens: '%s'\n", res->generated, res->text);
        CHECK(res->generated > 0 && (int)res->generated == n_tokens,
              "generated %u, streamed %d token events", res->generated, n_tokens);
        CHECK(strcmp(res->text, streamed) == 0, "result '%s' != streamed '%s'", res->text,
              streamed);
        snprintf(serial, sizeof serial, "%s", res->text);
    }
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    /* sampled near uniformly (temperature 50): byte tokens that split characters are
     * streamed whole characters at a time, and add up to the result */
    for (uint64_t seed = 1; seed <= 3; seed++) {
        job = generate_job_t(s, "tiny", "Unicode: é ü 日本", 96, 50.0f, seed);
        r = job ? collect(s, job, streamed, sizeof streamed, &n_tokens) : NULL;
        CHECK(r && r->poll->state == GPTQD__JOB_STATE__JOB_DONE, "hot generate: %s",
              r ? r->poll->result_message : "no reply");
        if (r && r->poll->state == GPTQD__JOB_STATE__JOB_DONE)
            CHECK(strcmp(r->poll->result->text, streamed) == 0 &&
                      (int)r->poll->result->generated == n_tokens,
                  "hot generate (seed %llu): streamed '%s' vs result '%s'",
                  (unsigned long long)seed, streamed, r->poll->result->text);
        if (r)
            gptqd__response__free_unpacked(r, NULL);
    }

    /* 8 clients at once (one batched decode loop): greedy outputs equal the serial one */
    gen_thread threads[8];
    pthread_t tids[8];
    for (int i = 0; i < 8; i++) {
        threads[i].d = &d;
        threads[i].ok = 0;
        pthread_create(&tids[i], NULL, concurrent_generate, &threads[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(tids[i], NULL);
        CHECK(threads[i].ok && strcmp(threads[i].text, serial) == 0,
              "client %d: '%s' != serial '%s'", i, threads[i].text, serial);
    }

    /* A long generation holds the model: unload is refused while it runs,
     * cancel sent right away ends it as CANCELED, a second cancel is a
     * clear error. The tiny model samples eos after a few to a few hundred
     * tokens, depending on the seed and on float rounding (which differs
     * between builds): when a sequence ended by itself before the unload or
     * the cancel landed, the model is loaded again if it went, and the next
     * seed is tried. */
    Gptqd__GenerateRequest long_gen = GPTQD__GENERATE_REQUEST__INIT;
    long_gen.name = "tiny";
    long_gen.prompt = "Once upon a time";
    long_gen.max_tokens = 450;
    long_gen.has_temperature_case = GPTQD__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    long_gen.temperature = 3.0f;
    long_gen.has_seed_case = GPTQD__GENERATE_REQUEST__HAS_SEED_SEED;
    Gptqd__UnloadRequest unload = GPTQD__UNLOAD_REQUEST__INIT;
    unload.name = "tiny";
    Gptqd__CancelRequest cancel = GPTQD__CANCEL_REQUEST__INIT;
    uint64_t long_job = 0;
    int canceled = 0, busy_seen = 0, state = -1;
    for (int attempt = 0; attempt < 12 && !canceled; attempt++) {
        long_gen.seed = 7 + (uint64_t)attempt;
        td_request_init(&req);
        req.body_case = GPTQD__REQUEST__BODY_GENERATE;
        req.generate = &long_gen;
        long_job = start_job(s, &req, "long generate");
        td_request_init(&req);
        req.body_case = GPTQD__REQUEST__BODY_UNLOAD;
        req.unload = &unload;
        r = simple(s, &req);
        int busy = r && r->status == GPTQ_ERR_BUSY && strstr(r->message, "running job");
        int unloaded = r && r->status == 0;
        CHECK(busy || unloaded, "unload during a job: %s", status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        busy_seen |= busy;
        if (unloaded) { /* the sequence had ended: the model went with the unload */
            td_request_init(&req);
            req.body_case = GPTQD__REQUEST__BODY_LOAD;
            req.load = &load;
            uint64_t lj = start_job(s, &req, "load again");
            r = lj ? td_wait_job(s, lj, 60) : NULL;
            CHECK(r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE,
                  "load after unload: %s", status_of(r));
            if (r)
                gptqd__response__free_unpacked(r, NULL);
            continue;
        }
        td_request_init(&req);
        cancel.job = long_job;
        req.body_case = GPTQD__REQUEST__BODY_CANCEL;
        req.cancel = &cancel;
        r = simple(s, &req);
        CHECK(r && (r->status == 0 || strstr(r->message, "already finished")), "cancel: %s",
              status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        Gptqd__Response *done = td_wait_job(s, long_job, 30);
        state = done && done->poll ? (int)done->poll->state : -1;
        canceled = done && done->body_case == GPTQD__RESPONSE__BODY_POLL &&
                   done->poll->state == GPTQD__JOB_STATE__JOB_CANCELED &&
                   done->poll->result_status == GPTQ_ERR_CANCELED;
        CHECK(canceled || state == GPTQD__JOB_STATE__JOB_DONE, "canceled job state %d", state);
        if (done)
            gptqd__response__free_unpacked(done, NULL);
    }
    CHECK(busy_seen, "unload was never refused while a generation ran");
    CHECK(canceled, "12 long generations all ended before their cancel (last state %d)", state);
    r = simple(s, &req);
    CHECK(r && r->status == GPTQ_ERR_ARG && strstr(r->message, "already finished"),
          "second cancel: %s", status_of(r));
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    /* While another generation runs: status answers fast, and a client
     * vanishing mid-poll does no harm. */
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_GENERATE;
    req.generate = &long_gen;
    long_job = start_job(s, &req, "long generate");
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        double ms = status_latency_ms(s);
        worst = ms > worst ? ms : worst;
    }
    printf("status during generation: worst of 20 round trips %.2f ms\n", worst);
    CHECK(worst < 50, "status took %.1f ms while generating (limit 50)", worst);
    CHECK(td_vanish_poll(argv[0], &d, long_job) == 0, "vanishing client: no poll sent");
    Gptqd__Response *done = td_wait_job(s, long_job, 60);
    CHECK(done && done->poll && done->poll->state == GPTQD__JOB_STATE__JOB_DONE,
          "second long generation: %s", done && done->poll ? done->poll->result_message : "");
    if (done)
        gptqd__response__free_unpacked(done, NULL);

    /* eval: the fixture's reference perplexity (float32, independent code) */
    Gptqd__EvalRequest eval = GPTQD__EVAL_REQUEST__INIT;
    td_request_init(&req);
    eval.name = "tiny";
    eval.text_path = eval_text;
    eval.seqlen = 256;
    req.body_case = GPTQD__REQUEST__BODY_EVAL;
    req.eval = &eval;
    job = start_job(s, &req, "eval");
    r = job ? td_wait_job(s, job, 300) : NULL;
    CHECK(r && r->body_case == GPTQD__RESPONSE__BODY_POLL &&
              r->poll->state == GPTQD__JOB_STATE__JOB_DONE,
          "eval: %s", r && r->poll ? r->poll->result_message : status_of(r));
    if (r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE) {
        const Gptqd__JobResult *res = r->poll->result;
        printf("eval: perplexity %.4f over %llu tokens (reference 114.4856, 41578 tokens)\n",
               res->perplexity, (unsigned long long)res->tokens);
        /* float32 with a different summation order: 1e-4 relative */
        CHECK(fabs(res->perplexity - 114.4855970707711) < 114.4856 * 1e-4,
              "perplexity %.6f, reference 114.485597", res->perplexity);
        CHECK(res->tokens == 41578 && res->seqlen == 256, "tokens %llu seqlen %u",
              (unsigned long long)res->tokens, res->seqlen);
    }
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    /* eval with kl_base = itself: KL 0 */
    eval.kl_base = "tiny";
    eval.max_windows = 4;
    job = start_job(s, &req, "eval kl");
    r = job ? td_wait_job(s, job, 120) : NULL;
    CHECK(r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE && r->poll->result &&
              r->poll->result->has_kl && fabs(r->poll->result->kl) < 1e-6,
          "eval kl: %s", r && r->poll ? r->poll->result_message : status_of(r));
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    /* quantize tiny -> tiny-w4 while generating on tiny: status stays fast,
     * tokens keep coming; then the quantized model's perplexity and KL */
    Gptqd__QuantizeRequest quant = GPTQD__QUANTIZE_REQUEST__INIT;
    td_request_init(&req);
    quant.name = "tiny";
    quant.new_name = "tiny-w4";
    quant.bits = 4;
    quant.group_size = 128;
    quant.nsamples = 32;
    quant.seqlen = 256;
    quant.has_damp_case = GPTQD__QUANTIZE_REQUEST__HAS_DAMP_DAMP;
    quant.damp = 0.01f;
    req.body_case = GPTQD__REQUEST__BODY_QUANTIZE;
    req.quantize = &quant;
    uint64_t qjob = start_job(s, &req, "quantize");
    if (qjob) {
        usleep(200000);
        int gs = td_connect(&d, 60000);
        uint64_t gjob = generate_job(gs, "tiny", "Once upon a time", 32);
        double worst_q = 0;
        for (int i = 0; i < 20; i++) {
            double ms = status_latency_ms(s);
            worst_q = ms > worst_q ? ms : worst_q;
            usleep(20000);
        }
        Gptqd__Response *g = gjob ? collect(gs, gjob, streamed, sizeof streamed, &n_tokens) : NULL;
        CHECK(g && g->poll->state == GPTQD__JOB_STATE__JOB_DONE && strcmp(streamed, serial) == 0,
              "generation during quantize: '%s'", streamed);
        if (g)
            gptqd__response__free_unpacked(g, NULL);
        nn_close(gs);
        printf("status during quantize: worst of 20 round trips %.2f ms\n", worst_q);
        CHECK(worst_q < 50, "status took %.1f ms while quantizing (limit 50)", worst_q);
        r = td_wait_job(s, qjob, 400);
        CHECK(r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE, "quantize: %s",
              r && r->poll ? r->poll->result_message : status_of(r));
        if (r && r->poll)
            printf("quantize: %s after %.1f s\n", gptq_status_name(r->poll->result_status),
                   r->poll->result ? r->poll->result->seconds : 0);
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        /* the same windows for both models: the increase, not raw numbers */
        double ppl[2] = {0, 0}, kl = -1;
        const char *names[2] = {"tiny", "tiny-w4"};
        for (int i = 0; i < 2; i++) {
            Gptqd__EvalRequest ev = GPTQD__EVAL_REQUEST__INIT;
            td_request_init(&req);
            ev.name = (char *)names[i];
            ev.text_path = eval_text;
            ev.seqlen = 256;
            ev.max_windows = 40;
            if (i == 1)
                ev.kl_base = "tiny";
            req.body_case = GPTQD__REQUEST__BODY_EVAL;
            req.eval = &ev;
            job = start_job(s, &req, "eval");
            r = job ? td_wait_job(s, job, 300) : NULL;
            if (r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE) {
                ppl[i] = r->poll->result->perplexity;
                if (i == 1)
                    kl = r->poll->result->kl;
            }
            if (r)
                gptqd__response__free_unpacked(r, NULL);
        }
        printf("eval on 40 windows: tiny %.4f, tiny-w4 %.4f (%+.3f%%), KL %.5f\n", ppl[0],
               ppl[1], 100 * (ppl[1] / ppl[0] - 1), kl);
        /* reference GPTQ 4-bit g128 with 128 windows: +0.04%, KL 0.00055 */
        CHECK(ppl[0] > 0 && ppl[1] > 0 && fabs(ppl[1] / ppl[0] - 1) < 0.01,
              "tiny-w4 perplexity %.4f vs tiny %.4f", ppl[1], ppl[0]);
        CHECK(kl >= 0 && kl < 0.005, "KL(tiny || tiny-w4) %.5f", kl);
        double lib = library_quantized_perplexity(model, eval_text);
        printf("library path: tiny-w4 perplexity %.6f, daemon %.6f\n", lib, ppl[1]);
        /* Same code, same windows, same seed: equal up to summation order. */
        CHECK(fabs(lib - ppl[1]) <= 1e-6 * lib, "library %.8f, daemon %.8f", lib, ppl[1]);
        Gptqd__ListRequest l2 = GPTQD__LIST_REQUEST__INIT;
        td_request_init(&req);
        req.body_case = GPTQD__REQUEST__BODY_LIST;
        req.list = &l2;
        r = simple(s, &req);
        int found = 0;
        for (size_t i = 0; r && r->list && i < r->list->n_models; i++)
            if (strcmp(r->list->models[i]->name, "tiny-w4") == 0) {
                found = 1;
                CHECK(r->list->models[i]->bits == 4 && r->list->models[i]->group_size == 128,
                      "tiny-w4 listed as %s", r->list->models[i]->format);
                CHECK(r->list->models[i]->bytes < 20456448 / 2,
                      "tiny-w4 takes %llu bytes", (unsigned long long)r->list->models[i]->bytes);
                printf("list: tiny-w4 %s %llu bytes\n", r->list->models[i]->format,
                       (unsigned long long)r->list->models[i]->bytes);
            }
        CHECK(found, "tiny-w4 not listed");
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        /* save: a checkpoint that loads back with the same perplexity; float
         * models, existing folders and folders outside are refused */
        char saved[PATH_MAX];
        snprintf(saved, sizeof saved, "%s/saved-w4", outdir);
        Gptqd__SaveRequest save = GPTQD__SAVE_REQUEST__INIT;
        td_request_init(&req);
        save.name = "tiny-w4";
        save.dir = saved;
        req.body_case = GPTQD__REQUEST__BODY_SAVE;
        req.save = &save;
        job = start_job(s, &req, "save");
        r = job ? td_wait_job(s, job, 120) : NULL;
        CHECK(r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE &&
                  strcmp(r->poll->result->saved_dir, saved) == 0,
              "save: %s", r && r->poll ? r->poll->result_message : status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        const char *expect_files[] = {"config.json", "quantize_config.json", "model.safetensors",
                                      "tokenizer.json"};
        for (int i = 0; i < 4; i++) {
            char f[PATH_MAX + 64];
            snprintf(f, sizeof f, "%s/%s", saved, expect_files[i]);
            CHECK(access(f, R_OK) == 0, "saved checkpoint lacks %s", expect_files[i]);
        }
        job = start_job(s, &req, "save again");
        r = job ? td_wait_job(s, job, 60) : NULL;
        CHECK(r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_FAILED &&
                  r->poll->result_status == GPTQ_ERR_EXISTS,
              "save over an existing folder: %s",
              r && r->poll ? r->poll->result_message : status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        save.name = "tiny";
        snprintf(saved, sizeof saved, "%s/saved-float", outdir);
        save.dtype = "f16";
        job = start_job(s, &req, "save float");
        r = job ? td_wait_job(s, job, 60) : NULL;
        CHECK(r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE,
              "save of a float model as an HF folder: %s",
              r && r->poll ? r->poll->result_message : "");
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        const char *float_files[] = {"config.json", "model.safetensors", "tokenizer.json",
                                     "generation_config.json"};
        for (int i = 0; i < 4; i++) {
            char f[PATH_MAX + 64];
            snprintf(f, sizeof f, "%s/%s", saved, float_files[i]);
            CHECK(access(f, R_OK) == 0, "saved float folder lacks %s", float_files[i]);
        }
        char qc[PATH_MAX + 64];
        snprintf(qc, sizeof qc, "%s/quantize_config.json", saved);
        CHECK(access(qc, F_OK) != 0, "a float folder must not have quantize_config.json");
        save.dtype = "f64";
        r = simple(s, &req);
        CHECK(r && r->status == GPTQ_ERR_ARG && strstr(r->message, "save.dtype"),
              "save --dtype f64 must be refused naming the field: %s", status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        save.dtype = "";
        save.dir = "/tmp/not-a-model-dir/x";
        r = simple(s, &req);
        CHECK(r && r->status == GPTQ_ERR_PERMISSION, "save outside: %s", status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        snprintf(saved, sizeof saved, "%s/saved-w4", outdir);
        td_request_init(&req);
        load.name = "tiny-w4-saved";
        load.path = saved;
        req.body_case = GPTQD__REQUEST__BODY_LOAD;
        req.load = &load;
        job = start_job(s, &req, "load saved");
        r = job ? td_wait_job(s, job, 60) : NULL;
        CHECK(r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE, "load saved: %s",
              r && r->poll ? r->poll->result_message : status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        Gptqd__EvalRequest ev = GPTQD__EVAL_REQUEST__INIT;
        td_request_init(&req);
        ev.name = "tiny-w4-saved";
        ev.text_path = eval_text;
        ev.seqlen = 256;
        ev.max_windows = 40;
        req.body_case = GPTQD__REQUEST__BODY_EVAL;
        req.eval = &ev;
        job = start_job(s, &req, "eval saved");
        r = job ? td_wait_job(s, job, 300) : NULL;
        double ppl_saved = r && r->poll && r->poll->result ? r->poll->result->perplexity : -1;
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        printf("saved and reloaded tiny-w4: perplexity %.6f (resident %.6f)\n", ppl_saved,
               ppl[1]);
        CHECK(fabs(ppl_saved - ppl[1]) <= 1e-6 * ppl[1], "reloaded %.8f vs %.8f", ppl_saved,
              ppl[1]);
        unload.name = "tiny-w4-saved";
        td_request_init(&req);
        req.body_case = GPTQD__REQUEST__BODY_UNLOAD;
        req.unload = &unload;
        r = simple(s, &req);
        CHECK(r && r->status == 0, "unload tiny-w4-saved: %s", status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);

        /* quantizing a quantized model is refused */
        quant.name = "tiny-w4";
        quant.new_name = "tiny-w4-again";
        td_request_init(&req);
        req.body_case = GPTQD__REQUEST__BODY_QUANTIZE;
        req.quantize = &quant;
        r = simple(s, &req);
        CHECK(r && r->status == GPTQ_ERR_ARG && strstr(r->message, "already quantized"),
              "quantize of tiny-w4: %s", status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
    }

    /* jobs lists what ran */
    Gptqd__JobsRequest jobs = GPTQD__JOBS_REQUEST__INIT;
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_JOBS;
    req.jobs = &jobs;
    r = simple(s, &req);
    CHECK(r && r->body_case == GPTQD__RESPONSE__BODY_JOBS && r->jobs->n_jobs >= 8,
          "jobs: %s (%zu)", status_of(r), r && r->jobs ? r->jobs->n_jobs : 0);
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    /* unload: then they are gone */
    const char *resident[] = {"tiny", "tiny-w4"};
    for (int i = 0; i < 2; i++) {
        td_request_init(&req);
        unload.name = (char *)resident[i];
        req.body_case = GPTQD__REQUEST__BODY_UNLOAD;
        req.unload = &unload;
        r = simple(s, &req);
        CHECK(r && r->status == 0 && r->body_case == GPTQD__RESPONSE__BODY_DONE,
              "unload %s: %s", resident[i], status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
    }
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_LIST;
    req.list = &list;
    r = simple(s, &req);
    CHECK(r && r->body_case == GPTQD__RESPONSE__BODY_LIST && r->list->n_models == 0,
          "list after unload: %s", status_of(r));
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    nn_close(s);
    int code = td_stop(&d);
    CHECK(code == 0, "gptqd exit status %d after SIGTERM", code);

    /* A second daemon: a preload is resident at READY, and the memory limit
     * (room for one copy of the 9.8 MiB F16 weights: no KV cache is
     * reserved) refuses a second copy with the figures in the message. */
    char preload[PATH_MAX + 64];
    snprintf(preload, sizeof preload, "tiny=%s", model);
    const char *args2[] = {"--model-dir", fixdir, "--preload", preload, "--memory-limit", "15M",
                           NULL};
    if (td_start(&d, argv[1], args2) == 0) {
        s = td_connect(&d, 30000);
        td_request_init(&req);
        req.body_case = GPTQD__REQUEST__BODY_LIST;
        req.list = &list;
        r = simple(s, &req);
        CHECK(r && r->list && r->list->n_models == 1 &&
                  strcmp(r->list->models[0]->name, "tiny") == 0,
              "preloaded tiny not listed: %s", status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        long long kv = listed_kv_bytes(s);
        CHECK(kv == 0, "an idle model holds %lld bytes of KV cache", kv);
        /* a generation allocates its KV cache and frees it when it ends */
        char text[4096];
        int n_tok = 0;
        r = collect(s, generate_job(s, "tiny", "Once upon a time", 40), text, sizeof text, &n_tok);
        CHECK(r && r->poll && r->poll->state == GPTQD__JOB_STATE__JOB_DONE && n_tok > 0,
              "generate under the memory limit: %s", status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        kv = listed_kv_bytes(s);
        CHECK(kv == 0, "after its generation ended the model holds %lld bytes of KV cache", kv);
        td_request_init(&req);
        load.name = "tiny2";
        load.path = model;
        req.body_case = GPTQD__REQUEST__BODY_LOAD;
        req.load = &load;
        r = simple(s, &req);
        CHECK(r && r->status == GPTQ_ERR_NOMEM && strstr(r->message, "memory-limit"),
              "load over the memory limit: %s", status_of(r));
        if (r)
            gptqd__response__free_unpacked(r, NULL);
        nn_close(s);
        code = td_stop(&d);
        CHECK(code == 0, "second gptqd exit status %d", code);
    } else {
        CHECK(0, "gptqd with --preload did not start");
    }
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", outdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", outdir);
    return test_result();
}
