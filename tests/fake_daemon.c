/* tests/fake_daemon.c: the scripted gptqd of tests/fake_daemon.h. */
#include "fake_daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "gptq/error.h"

fake_daemon fake = {.lock = PTHREAD_MUTEX_INITIALIZER, .sock = -1};

static const float arena_pattern[] = {1.5f, -2.0f, 3.25f, 0.0f, 42.0f, -0.5f};

static fake_job *fake_new_job(const char *kind, const char *model)
{
    fake_job *j = &fake.jobs[fake.n_jobs];
    memset(j, 0, sizeof *j);
    j->id = (uint64_t)++fake.n_jobs;
    j->kind = kind;
    snprintf(j->model, sizeof j->model, "%s", model);
    return j;
}

static void add_event(fake_job *j, Gptqd__EventKind kind, const char *text, double fraction)
{
    j->events[j->n_events++] = (fake_event){kind, text, fraction};
}

static fake_job *fake_find(uint64_t id)
{
    return id >= 1 && id <= (uint64_t)fake.n_jobs ? &fake.jobs[id - 1] : NULL;
}

/* Fill r's poll body for job j from `since`; event texts are static. */
static void fake_poll(Gptqd__Response *r, Gptqd__PollReply *pr, Gptqd__Event *ev,
                      Gptqd__Event **evp, Gptqd__JobResult *res, fake_job *j, uint64_t since,
                      uint32_t wait_ms)
{
    r->body_case = GPTQD__RESPONSE__BODY_POLL;
    r->poll = pr;
    pr->job = j->id;
    pr->next = since;
    pr->state = GPTQD__JOB_STATE__JOB_RUNNING;
    if (since < (uint64_t)j->n_events) {
        /* One event per poll, so that streaming over several polls is tested. */
        const fake_event *e = &j->events[since];
        ev->seq = since;
        ev->kind = e->kind;
        ev->text = (char *)e->text;
        ev->fraction = e->fraction;
        ev->token = 7;
        evp[0] = ev;
        pr->n_events = 1;
        pr->events = evp;
        pr->next = since + 1;
        if (j->endless || !(j->together && since + 1 == (uint64_t)j->n_events))
            return;
    } else if (j->endless && !j->canceled) {
        fake.endless_polls++;
        pthread_mutex_unlock(&fake.lock);
        usleep((wait_ms < 50 ? wait_ms : 50) * 1000u);
        pthread_mutex_lock(&fake.lock);
        return;
    }
    if (j->canceled) {
        pr->state = GPTQD__JOB_STATE__JOB_CANCELED;
        return;
    }
    if (j->fails) {
        pr->state = GPTQD__JOB_STATE__JOB_FAILED;
        pr->result_status = GPTQ_ERR_NOTFOUND;
        pr->result_message = "eval.txt: no such file in the model directories";
        return;
    }
    pr->state = GPTQD__JOB_STATE__JOB_DONE;
    pr->result = res;
    res->model = j->model;
    res->seconds = 1.25;
    if (strcmp(j->kind, "eval") == 0) {
        res->perplexity = 114.486;
        res->tokens = 4096;
        res->seqlen = 256;
        res->has_kl = 1;
        res->kl = 0.00055;
    } else if (strcmp(j->kind, "generate") == 0) {
        res->text = (char *)j->text;
        res->generated = 3;
    } else if (strcmp(j->kind, "save") == 0 || strcmp(j->kind, "quantize") == 0) {
        res->saved_dir = fake.last_save_dir;
    }
}

static void *fake_main(void *arg)
{
    (void)arg;
    for (;;) {
        void *buf = NULL;
        int n = nn_recv(fake.sock, &buf, NN_MSG, 0);
        if (n < 0)
            return NULL; /* nn_close from the main thread ends us */
        Gptqd__Request *q = gptqd__request__unpack(NULL, (size_t)n, buf);
        nn_freemsg(buf);
        Gptqd__Response r = GPTQD__RESPONSE__INIT;
        Gptqd__Done done = GPTQD__DONE__INIT;
        Gptqd__Pong pong = GPTQD__PONG__INIT;
        Gptqd__StatusReply sr = GPTQD__STATUS_REPLY__INIT;
        Gptqd__ListReply lr = GPTQD__LIST_REPLY__INIT;
        Gptqd__ModelInfo mi[2] = {GPTQD__MODEL_INFO__INIT, GPTQD__MODEL_INFO__INIT};
        Gptqd__ModelInfo *mip[2] = {&mi[0], &mi[1]};
        Gptqd__JobStarted js = GPTQD__JOB_STARTED__INIT;
        Gptqd__PollReply pr = GPTQD__POLL_REPLY__INIT;
        Gptqd__Event ev = GPTQD__EVENT__INIT;
        Gptqd__Event *evp[1];
        Gptqd__JobResult res = GPTQD__JOB_RESULT__INIT;
        Gptqd__JobsReply jr = GPTQD__JOBS_REPLY__INIT;
        Gptqd__JobInfo ji = GPTQD__JOB_INFO__INIT;
        Gptqd__JobInfo *jip[1] = {&ji};
        Gptqd__MapReply mr = GPTQD__MAP_REPLY__INIT;
        Gptqd__TensorEntry te[2] = {GPTQD__TENSOR_ENTRY__INIT, GPTQD__TENSOR_ENTRY__INIT};
        Gptqd__TensorEntry *tep[2] = {&te[0], &te[1]};
        int64_t shape0[2] = {2, 2}, shape1[1] = {2};
        r.version = GPTQD__VERSION__PROTOCOL_VERSION;
        int garbage = 0;
        pthread_mutex_lock(&fake.lock);
        if (!q) {
            r.status = GPTQ_ERR_PROTOCOL;
            r.message = "malformed request";
            goto reply;
        }
        snprintf(fake.last_client, sizeof fake.last_client, "%s", q->client);
        fake.last_pid = q->client_pid;
        switch (q->body_case) {
        case GPTQD__REQUEST__BODY_PING:
            r.body_case = GPTQD__RESPONSE__BODY_PONG;
            r.pong = &pong;
            break;
        case GPTQD__REQUEST__BODY_STATUS_REQUEST:
            r.body_case = GPTQD__RESPONSE__BODY_STATUS_REPLY;
            r.status_reply = &sr;
            sr.daemon_version = "0.1.0-fake";
            sr.backend = "cpu";
            sr.device = "cpu (2 threads)";
            sr.resident_bytes = 9876543;
            sr.models = 2;
            sr.jobs_running = 1;
            sr.pid = 4242;
            sr.socket = fake.sock_path;
            break;
        case GPTQD__REQUEST__BODY_LIST:
            r.body_case = GPTQD__RESPONSE__BODY_LIST;
            r.list = &lr;
            lr.n_models = 2;
            lr.models = mip;
            mi[0].name = "tiny";
            mi[0].arch = "LlamaForCausalLM";
            mi[0].format = "f16";
            mi[0].params = 4900000;
            mi[0].bytes = 9800000;
            mi[0].leases = 3;
            mi[1].name = "tiny-w4";
            mi[1].arch = "LlamaForCausalLM";
            mi[1].format = "gptq-w4g128";
            mi[1].bits = 4;
            mi[1].group_size = 128;
            break;
        case GPTQD__REQUEST__BODY_UNLOAD:
            if (strcmp(q->unload->name, "leased") == 0 && !q->unload->force) {
                r.status = GPTQ_ERR_BUSY;
                r.message = "model 'leased' is mapped by 1 process: unload --force";
            } else if (strcmp(q->unload->name, "version") == 0) {
                r.version = GPTQD__VERSION__PROTOCOL_VERSION + 1; /* a newer daemon */
                r.body_case = GPTQD__RESPONSE__BODY_DONE;
                r.done = &done;
            } else if (strcmp(q->unload->name, "wrongbody") == 0) {
                r.body_case = GPTQD__RESPONSE__BODY_PONG;
                r.pong = &pong;
            } else if (strcmp(q->unload->name, "badstatus") == 0) {
                r.status = 12345;
                r.message = "";
            } else if (strcmp(q->unload->name, "garbage") == 0) {
                garbage = 1;
            } else if (strcmp(q->unload->name, "slow") == 0) {
                pthread_mutex_unlock(&fake.lock);
                usleep(1500 * 1000);
                pthread_mutex_lock(&fake.lock);
                r.body_case = GPTQD__RESPONSE__BODY_DONE;
                r.done = &done;
            } else {
                r.body_case = GPTQD__RESPONSE__BODY_DONE;
                r.done = &done;
            }
            break;
        case GPTQD__REQUEST__BODY_LOAD: {
            snprintf(fake.last_path, sizeof fake.last_path, "%s", q->load->path);
            fake_job *j = fake_new_job("load", q->load->name);
            add_event(j, GPTQD__EVENT_KIND__EVENT_PROGRESS, "reading weights", 0.5);
            r.body_case = GPTQD__RESPONSE__BODY_JOB;
            r.job = &js;
            js.job = j->id;
            break;
        }
        case GPTQD__REQUEST__BODY_QUANTIZE: {
            fake.last_quantize = *q->quantize; /* numbers only: its strings die with q */
            snprintf(fake.last_path, sizeof fake.last_path, "%s", q->quantize->calib_path);
            snprintf(fake.last_save_dir, sizeof fake.last_save_dir, "%s", q->quantize->save_dir);
            fake_job *j = fake_new_job("quantize", q->quantize->new_name);
            add_event(j, GPTQD__EVENT_KIND__EVENT_PROGRESS, "layer 0 q_proj", 0.25);
            add_event(j, GPTQD__EVENT_KIND__EVENT_LOG, "calibration: 16 windows", 0);
            add_event(j, GPTQD__EVENT_KIND__EVENT_PROGRESS, "layer 1 down_proj", 1.0);
            r.body_case = GPTQD__RESPONSE__BODY_JOB;
            r.job = &js;
            js.job = j->id;
            break;
        }
        case GPTQD__REQUEST__BODY_GENERATE: {
            fake.last_generate = *q->generate;
            fake_job *j = fake_new_job("generate", q->generate->name);
            if (strcmp(q->generate->prompt, "forever") == 0)
                j->endless = 1;
            add_event(j, GPTQD__EVENT_KIND__EVENT_TOKEN, " upon", 0);
            add_event(j, GPTQD__EVENT_KIND__EVENT_TOKEN, " a", 0);
            add_event(j, GPTQD__EVENT_KIND__EVENT_TOKEN, " time", 0);
            j->together = 1;
            j->text = " upon a time";
            r.body_case = GPTQD__RESPONSE__BODY_JOB;
            r.job = &js;
            js.job = j->id;
            break;
        }
        case GPTQD__REQUEST__BODY_EVAL: {
            if (strcmp(q->eval->name, "nope") == 0) {
                r.status = GPTQ_ERR_NOTFOUND;
                r.message = "no resident model 'nope': gptqctl list shows the models";
                break;
            }
            snprintf(fake.last_path, sizeof fake.last_path, "%s", q->eval->text_path);
            fake_job *j = fake_new_job("eval", q->eval->name);
            j->fails = strcmp(q->eval->name, "failing") == 0;
            add_event(j, GPTQD__EVENT_KIND__EVENT_PROGRESS, "window 1/16", 0.0625);
            r.body_case = GPTQD__RESPONSE__BODY_JOB;
            r.job = &js;
            js.job = j->id;
            break;
        }
        case GPTQD__REQUEST__BODY_SAVE: {
            snprintf(fake.last_save_dir, sizeof fake.last_save_dir, "%s", q->save->dir);
            fake_job *j = fake_new_job("save", q->save->name);
            r.body_case = GPTQD__RESPONSE__BODY_JOB;
            r.job = &js;
            js.job = j->id;
            break;
        }
        case GPTQD__REQUEST__BODY_POLL: {
            fake_job *j = fake_find(q->poll->job);
            if (!j) {
                r.status = GPTQ_ERR_NOTFOUND;
                r.message = "no job with that id";
                break;
            }
            fake_poll(&r, &pr, &ev, evp, &res, j, q->poll->since, q->poll->wait_ms);
            break;
        }
        case GPTQD__REQUEST__BODY_CANCEL: {
            fake_job *j = fake_find(q->cancel->job);
            if (!j) {
                r.status = GPTQ_ERR_NOTFOUND;
                r.message = "no job 999: gptqctl jobs lists them";
                break;
            }
            j->canceled = 1;
            fake.cancels++;
            r.body_case = GPTQD__RESPONSE__BODY_DONE;
            r.done = &done;
            break;
        }
        case GPTQD__REQUEST__BODY_JOBS:
            r.body_case = GPTQD__RESPONSE__BODY_JOBS;
            r.jobs = &jr;
            jr.n_jobs = 1;
            jr.jobs = jip;
            ji.id = 3;
            ji.kind = "quantize";
            ji.model = "tiny-w4";
            ji.state = GPTQD__JOB_STATE__JOB_RUNNING;
            ji.fraction = 0.5;
            ji.client = "gptqctl";
            break;
        case GPTQD__REQUEST__BODY_MAP:
            r.body_case = GPTQD__RESPONSE__BODY_MAP;
            r.map = &mr;
            mr.lease = 77;
            mr.kind = "shm";
            mr.shm_name = fake.shm_name;
            mr.arena_bytes = sizeof arena_pattern;
            mr.n_tensors = 2;
            mr.tensors = tep;
            te[0].name = "w";
            te[0].dtype = "F32";
            te[0].n_shape = 2;
            te[0].shape = shape0;
            te[0].offset = 0;
            te[0].bytes = 16;
            te[1].name = "b";
            te[1].dtype = "F32";
            te[1].n_shape = 1;
            te[1].shape = shape1;
            te[1].offset = 16;
            te[1].bytes = strcmp(q->map->name, "bad") == 0 ? 800 : 8;
            mr.config_json = "{\"model_type\": \"llama\"}";
            break;
        case GPTQD__REQUEST__BODY_UNMAP:
            fake.unmaps++;
            r.body_case = GPTQD__RESPONSE__BODY_DONE;
            r.done = &done;
            break;
        default:
            r.status = GPTQ_ERR_PROTOCOL;
            r.message = "request without a body";
            break;
        }
    reply:;
        size_t bytes = gptqd__response__get_packed_size(&r);
        void *out = nn_allocmsg(bytes ? bytes : 1, 0);
        gptqd__response__pack(&r, out);
        if (garbage) /* a field tag of wire type 7, which does not exist */
            memset(out, 0xff, bytes ? bytes : 1);
        pthread_mutex_unlock(&fake.lock);
        if (q)
            gptqd__request__free_unpacked(q, NULL);
        if (nn_send(fake.sock, &out, NN_MSG, 0) < 0)
            nn_freemsg(out);
    }
}

void fake_start(const char *sock_path)
{
    char url[PATH_MAX + 8];
    snprintf(fake.sock_path, sizeof fake.sock_path, "%s", sock_path);
    snprintf(url, sizeof url, "ipc://%s", sock_path);
    fake.sock = nn_socket(AF_SP, NN_REP);
    if (fake.sock < 0 || nn_bind(fake.sock, url) < 0) {
        fprintf(stderr, "fake daemon: cannot bind %s: %s\n", url, nn_strerror(nn_errno()));
        exit(1);
    }
    /* The arena the fake Map hands out. */
    snprintf(fake.shm_name, sizeof fake.shm_name, "/gptq-test-client-%d", (int)getpid());
    int fd = shm_open(fake.shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, arena_pattern, sizeof arena_pattern) != sizeof arena_pattern) {
        fprintf(stderr, "fake daemon: shm %s: %s\n", fake.shm_name, strerror(errno));
        exit(1);
    }
    close(fd);
    pthread_create(&fake.thread, NULL, fake_main, NULL);
}

void fake_stop(void)
{
    nn_close(fake.sock);
    pthread_join(fake.thread, NULL);
    shm_unlink(fake.shm_name);
}
