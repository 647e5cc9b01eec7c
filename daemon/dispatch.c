/* daemon/dispatch.c: one Request in, one Response out. Unpack, validate,
 * act (quickly: long work becomes a job), pack into a nanomsg message.
 * Everything a reply points to comes from a per-request scratch list freed
 * after packing, so no handler has its own cleanup path for the reply. */
#include "daemon/daemon.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>

#include "daemon/engine.h"
#include "daemon/log.h"
#include "daemon/paths.h"
#include "daemon/tasks.h"
#include "daemon/validate.h"
#include "common/utf8.h"
#include "gptqd.pb-c.h"
#include "proto/auth.h"
#include "proto/wire_strings.h"

enum { MAX_POLL_EVENTS = 1024 };

/* ---- scratch: allocations that live until the reply is packed ------------- */

typedef struct scratch_block {
    struct scratch_block *next;
    max_align_t data[];
} scratch_block;

typedef struct scratch {
    scratch_block *blocks;
} scratch;

static void *scratch_alloc(scratch *s, size_t bytes)
{
    scratch_block *b = calloc(1, sizeof *b + bytes);
    if (!b)
        return NULL;
    b->next = s->blocks;
    s->blocks = b;
    return b->data;
}

static char *scratch_strdup(scratch *s, const char *text)
{
    size_t n = strlen(text);
    char *c = scratch_alloc(s, n + 1);
    if (c)
        memcpy(c, text, n + 1);
    return c;
}

/* A copy made valid UTF-8 (file names and messages may hold any bytes;
 * a proto3 string field must not). */
static char *scratch_text(scratch *s, const char *text)
{
    char *c = scratch_strdup(s, text ? text : "");
    if (c)
        gptq_utf8_sanitize(c, strlen(c));
    return c;
}

static void scratch_free(scratch *s)
{
    while (s->blocks) {
        scratch_block *next = s->blocks->next;
        free(s->blocks);
        s->blocks = next;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static gptq_status nomem(void) { return gptq_fail(GPTQ_ERR_NOMEM, "reply: out of memory"); }

/* ---- handlers: fill resp (body) or return a status with the message set ---- */

typedef struct request_ctx {
    gptqd_ctx *ctx;
    const Gptqd__Request *req;
    Gptqd__Response *resp;
    scratch *scratch;
    /* Reply bodies live here so that no allocation is needed for them. */
    Gptqd__Pong pong;
    Gptqd__StatusReply status;
    Gptqd__ListReply list;
    Gptqd__JobStarted job;
    Gptqd__PollReply poll;
    Gptqd__JobResult result;
    Gptqd__MapReply map;
    Gptqd__JobsReply jobs;
    Gptqd__Done done;
    gptqd_poll poll_data;      /* freed after packing */
    gptqd_export export_data;  /* freed after packing */
    int has_poll, has_export;
    gptqd_resident *held;      /* released after packing */
    gptqd_caller caller;       /* who sent it (daemon/auth.h) */
} request_ctx;

static gptq_status reply_job(request_ctx *r, uint64_t id)
{
    gptqd__job_started__init(&r->job);
    r->job.job = id;
    r->resp->body_case = GPTQD__RESPONSE__BODY_JOB;
    r->resp->job = &r->job;
    return GPTQ_OK;
}

static gptq_status reply_done(request_ctx *r)
{
    gptqd__done__init(&r->done);
    r->resp->body_case = GPTQD__RESPONSE__BODY_DONE;
    r->resp->done = &r->done;
    return GPTQ_OK;
}

static const char *client_of(const Gptqd__Request *req)
{
    return req->client && req->client[0] ? req->client : "client";
}

/* Requests that act on the daemon (start work, change what is resident or
 * mapped) need a verified identity: a session from <socket>.auth. */
static int needs_identity(Gptqd__Request__BodyCase body)
{
    switch (body) {
    case GPTQD__REQUEST__BODY_PING:
    case GPTQD__REQUEST__BODY_STATUS_REQUEST:
    case GPTQD__REQUEST__BODY_LIST:
    case GPTQD__REQUEST__BODY_POLL:
    case GPTQD__REQUEST__BODY_JOBS:
        return 0;
    default:
        return 1;
    }
}

static gptq_status handle_ping(request_ctx *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    gptqd__pong__init(&r->pong);
    r->pong.payload = r->req->ping->payload; /* the request outlives the packing */
    r->pong.server_time_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    r->resp->body_case = GPTQD__RESPONSE__BODY_PONG;
    r->resp->pong = &r->pong;
    return GPTQ_OK;
}

static gptq_status handle_status(request_ctx *r)
{
    Gptqd__StatusReply *s = &r->status;
    gptqd__status_reply__init(s);
    char backend[32], device[160], note[256];
    gptqd_engine_describe(backend, sizeof backend, device, sizeof device, note, sizeof note,
                          &s->device_bytes_total, &s->device_bytes_free);
    s->daemon_version = GPTQD_VERSION;
    s->backend = scratch_strdup(r->scratch, backend);
    s->device = scratch_strdup(r->scratch, device);
    s->backend_note = scratch_strdup(r->scratch, note);
    if (!s->backend || !s->device || !s->backend_note)
        return nomem();
    gptqd_registry_totals(r->ctx->registry, &s->models, &s->resident_bytes, &s->memory_limit,
                          &s->resident_host_bytes, &s->resident_device_bytes);
    gptqd_jobs_counts(r->ctx->jobs, &s->jobs_running, &s->jobs_queued);
    s->uptime_s = (uint64_t)(now_s() - r->ctx->t_start);
    s->pid = (uint32_t)getpid();
    s->socket = r->ctx->conf->socket;
    r->resp->body_case = GPTQD__RESPONSE__BODY_STATUS_REPLY;
    r->resp->status_reply = s;
    return GPTQ_OK;
}

static gptq_status handle_list(request_ctx *r)
{
    gptqd_model_info *infos = NULL;
    uint32_t *leases = NULL;
    size_t n = 0;
    gptq_status st = gptqd_registry_list(r->ctx->registry, &infos, &leases, &n);
    if (st)
        return st;
    gptqd__list_reply__init(&r->list);
    Gptqd__ModelInfo *models = scratch_alloc(r->scratch, (n + 1) * sizeof *models);
    Gptqd__ModelInfo **ptrs = scratch_alloc(r->scratch, (n + 1) * sizeof *ptrs);
    if (!models || !ptrs) {
        st = nomem();
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        Gptqd__ModelInfo *m = &models[i];
        gptqd__model_info__init(m);
        m->name = scratch_strdup(r->scratch, infos[i].name);
        m->arch = scratch_strdup(r->scratch, infos[i].arch);
        m->format = scratch_strdup(r->scratch, infos[i].format);
        m->source = scratch_text(r->scratch, infos[i].source);
        m->memory = scratch_strdup(r->scratch, infos[i].memory);
        if (!m->name || !m->arch || !m->format || !m->source || !m->memory) {
            st = nomem();
            goto done;
        }
        m->params = infos[i].params;
        m->bytes = infos[i].bytes;
        m->leases = leases[i];
        m->bits = infos[i].bits;
        m->group_size = infos[i].group_size;
        m->layers = infos[i].layers;
        m->hidden = infos[i].hidden;
        m->vocab = infos[i].vocab;
        m->host_bytes = infos[i].host_bytes;
        m->device_bytes = infos[i].device_bytes;
        m->kv_bytes = infos[i].kv_bytes;
        m->owner_uid = (uint32_t)infos[i].owner_uid;
        m->context = infos[i].context;
        ptrs[i] = m;
    }
    r->list.n_models = n;
    r->list.models = ptrs;
    r->resp->body_case = GPTQD__RESPONSE__BODY_LIST;
    r->resp->list = &r->list;
done:
    free(infos);
    free(leases);
    return st;
}

static gptq_status handle_load(request_ctx *r)
{
    const Gptqd__LoadRequest *l = r->req->load;
    gptqd_place src;
    gptq_status st = gptqd_place_for_reading(r->ctx->conf, "load.path", l->path, -1, &src);
    if (st)
        return st;
    uint64_t id;
    const int head = l->head && l->head[0] ? gptq_head_grid_from_name(l->head)
                                           : r->ctx->conf->head;
    st = gptqd_task_load(r->ctx, &r->caller, l->name, &src, head, &id); /* head validated */
    gptqd_place_close(&src);
    return st ? st : reply_job(r, id);
}

/* A forced unload also cancels the jobs that use the model and waits (a
 * little) for them to let it go: their loops stop within a layer. */
enum { FORCED_UNLOAD_WAIT_MS = 3000 };

static gptq_status handle_unload(request_ctx *r)
{
    const Gptqd__UnloadRequest *u = r->req->unload;
    gptq_status st = gptqd_registry_unload(r->ctx->registry, u->name, u->force, &r->caller);
    if (st == GPTQ_ERR_BUSY && u->force &&
        gptqd_jobs_cancel_model(r->ctx->jobs, u->name) > 0) {
        for (int waited = 0; st == GPTQ_ERR_BUSY && waited < FORCED_UNLOAD_WAIT_MS; waited += 20) {
            struct timespec pause = {0, 20 * 1000000L};
            nanosleep(&pause, NULL);
            st = gptqd_registry_unload(r->ctx->registry, u->name, u->force, &r->caller);
        }
    }
    return st ? st : reply_done(r);
}

static gptq_status handle_quantize(request_ctx *r)
{
    const Gptqd__QuantizeRequest *q = r->req->quantize;
    gptqd_place calib = {.root = -1}, save = {.root = -1};
    gptq_status st = GPTQ_OK;
    if (q->calib_path[0] && (st = gptqd_place_for_reading(r->ctx->conf, "quantize.calib_path",
                                                          q->calib_path, 0, &calib)))
        return st;
    if (q->save_dir[0] &&
        (st = gptqd_place_for_writing(r->ctx->conf, "quantize.save_dir", q->save_dir, &save))) {
        gptqd_place_close(&calib);
        return st;
    }
    gptqd_quantize_params p = {
        .skip_modules = q->skip_modules,
        .n_skip_modules = q->n_skip_modules,
    };
    uint64_t id;
    st = gptqd_quantize_options(q, &p.options, &p.rtn); /* as validation read them */
    if (!st)
        st = gptqd_task_quantize(r->ctx, &r->caller, q->name, q->new_name, &p,
                                 q->calib_path[0] ? &calib : NULL,
                                 q->save_dir[0] ? &save : NULL, &id);
    gptqd_place_close(&calib);
    gptqd_place_close(&save);
    return st ? st : reply_job(r, id);
}

static gptq_status handle_generate(request_ctx *r)
{
    const Gptqd__GenerateRequest *g = r->req->generate;
    gptqd_generate_params p = {.prompt = g->prompt};
    uint64_t id;
    gptq_status st = gptqd_generate_options(g, &p.options);
    if (!st)
        st = gptqd_task_generate(r->ctx, &r->caller, g->name, &p, &id);
    return st ? st : reply_job(r, id);
}

static gptq_status handle_eval(request_ctx *r)
{
    const Gptqd__EvalRequest *e = r->req->eval;
    gptqd_place text = {.root = -1};
    gptq_status st = GPTQ_OK;
    if (e->text_path[0] &&
        (st = gptqd_place_for_reading(r->ctx->conf, "eval.text_path", e->text_path, 0, &text)))
        return st;
    gptqd_eval_params p = {.text = e->text_path[0] ? &text : NULL};
    uint64_t id;
    st = gptqd_eval_options(e, &p.options);
    if (!st)
        st = gptqd_task_eval(r->ctx, &r->caller, e->name, e->kl_base, &p, &id);
    gptqd_place_close(&text);
    return st ? st : reply_job(r, id);
}

static gptq_status handle_save(request_ctx *r)
{
    gptqd_place dir;
    gptq_status st = gptqd_place_for_writing(r->ctx->conf, "save.dir", r->req->save->dir, &dir);
    if (st)
        return st;
    uint64_t id;
    gptqd_save_spec spec; /* lengths checked with the request */
    snprintf(spec.dtype, sizeof spec.dtype, "%s", r->req->save->dtype);
    snprintf(spec.format, sizeof spec.format, "%s", r->req->save->format);
    snprintf(spec.embedding, sizeof spec.embedding, "%s", r->req->save->embedding_type);
    st = gptqd_task_save(r->ctx, &r->caller, r->req->save->name, &dir, &spec, &id);
    gptqd_place_close(&dir);
    return st ? st : reply_job(r, id);
}

static gptq_status handle_poll(request_ctx *r)
{
    const Gptqd__PollRequest *p = r->req->poll;
    gptqd_poll *d = &r->poll_data;
    gptq_status st = gptqd_jobs_poll(r->ctx->jobs, p->job, p->since, p->wait_ms,
                                     MAX_POLL_EVENTS, d);
    if (st)
        return st;
    r->has_poll = 1;
    Gptqd__PollReply *reply = &r->poll;
    gptqd__poll_reply__init(reply);
    reply->job = d->job;
    reply->state = (Gptqd__JobState)d->state;
    reply->next = d->next;
    Gptqd__Event *events = scratch_alloc(r->scratch, (d->n_events + 1) * sizeof *events);
    Gptqd__Event **ptrs = scratch_alloc(r->scratch, (d->n_events + 1) * sizeof *ptrs);
    if (!events || !ptrs)
        return nomem();
    for (size_t i = 0; i < d->n_events; i++) {
        const gptqd_event *e = &d->events[i];
        gptqd__event__init(&events[i]);
        events[i].seq = e->seq;
        events[i].kind = (Gptqd__EventKind)e->kind;
        events[i].text = scratch_text(r->scratch, e->text);
        if (!events[i].text)
            return nomem();
        events[i].token = e->token;
        events[i].fraction = e->fraction;
        events[i].value = e->value;
        events[i].seconds = e->seconds;
        ptrs[i] = &events[i];
    }
    reply->n_events = d->n_events;
    reply->events = ptrs;
    if (d->state == GPTQD_JOB_FAILED || d->state == GPTQD_JOB_CANCELED) {
        reply->result_status = d->result_status;
        reply->result_message = scratch_text(r->scratch, d->result_message);
        if (!reply->result_message)
            return nomem();
    }
    if (d->state == GPTQD_JOB_DONE) {
        Gptqd__JobResult *res = &r->result;
        gptqd__job_result__init(res);
        res->model = d->result.model;
        res->perplexity = d->result.perplexity;
        res->tokens = d->result.tokens;
        res->seqlen = d->result.seqlen;
        res->kl = d->result.kl;
        res->has_kl = d->result.has_kl;
        res->generated = d->result.generated;
        res->seconds = d->result.seconds;
        res->saved_dir = scratch_text(r->scratch, d->result.saved_dir);
        res->text = scratch_text(r->scratch, d->result.text);
        if (!res->saved_dir || !res->text)
            return nomem();
        reply->result = res;
    }
    r->resp->body_case = GPTQD__RESPONSE__BODY_POLL;
    r->resp->poll = reply;
    return GPTQ_OK;
}

static gptq_status handle_cancel(request_ctx *r)
{
    gptq_status st = gptqd_jobs_cancel(r->ctx->jobs, r->req->cancel->job, &r->caller);
    return st ? st : reply_done(r);
}

static gptq_status handle_jobs(request_ctx *r)
{
    gptqd_job_info *infos = NULL;
    size_t n = 0;
    gptq_status st = gptqd_jobs_list(r->ctx->jobs, &infos, &n);
    if (st)
        return st;
    gptqd__jobs_reply__init(&r->jobs);
    Gptqd__JobInfo *jobs = scratch_alloc(r->scratch, (n + 1) * sizeof *jobs);
    Gptqd__JobInfo **ptrs = scratch_alloc(r->scratch, (n + 1) * sizeof *ptrs);
    if (!jobs || !ptrs) {
        st = nomem();
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        Gptqd__JobInfo *j = &jobs[i];
        gptqd__job_info__init(j);
        j->id = infos[i].id;
        j->kind = scratch_strdup(r->scratch, infos[i].kind);
        j->model = scratch_strdup(r->scratch, infos[i].model);
        j->client = scratch_strdup(r->scratch, infos[i].client);
        if (!j->kind || !j->model || !j->client) {
            st = nomem();
            goto done;
        }
        j->state = (Gptqd__JobState)infos[i].state;
        j->fraction = infos[i].fraction;
        j->seconds = infos[i].seconds;
        j->uid = (uint32_t)infos[i].uid;
        j->result_status = infos[i].result_status;
        j->result_message = scratch_text(r->scratch, infos[i].result_message);
        if (!j->result_message) {
            st = nomem();
            goto done;
        }
        if (infos[i].state == GPTQD_JOB_DONE) {
            Gptqd__JobResult *res = scratch_alloc(r->scratch, sizeof *res);
            const gptqd_job_result *g = &infos[i].result;
            if (!res) {
                st = nomem();
                goto done;
            }
            gptqd__job_result__init(res);
            res->model = scratch_text(r->scratch, g->model);
            res->saved_dir = scratch_text(r->scratch, infos[i].saved_dir);
            res->text = "";
            if (!res->model || !res->saved_dir) {
                st = nomem();
                goto done;
            }
            res->perplexity = g->perplexity;
            res->tokens = g->tokens;
            res->seqlen = g->seqlen;
            res->kl = g->kl;
            res->has_kl = g->has_kl;
            res->generated = g->generated;
            res->seconds = g->seconds;
            j->result = res;
        }
        ptrs[i] = j;
    }
    r->jobs.n_jobs = n;
    r->jobs.jobs = ptrs;
    r->resp->body_case = GPTQD__RESPONSE__BODY_JOBS;
    r->resp->jobs = &r->jobs;
done:
    free(infos);
    return st;
}

static gptq_status handle_map(request_ctx *r)
{
    uint64_t lease = 0;
    gptqd_export *e = &r->export_data;
    /* A reference keeps the model (whose tensor names the reply points to)
     * from being unloaded until the reply is packed. */
    gptq_status st = gptqd_registry_acquire(r->ctx->registry, r->req->map->name, &r->held);
    if (st)
        return st;
    st = gptqd_registry_lease(r->ctx->registry, r->req->map->name, &r->caller, &lease, e);
    if (st)
        return st;
    r->has_export = 1;
    Gptqd__MapReply *m = &r->map;
    gptqd__map_reply__init(m);
    m->lease = lease;
    m->kind = (char *)e->kind;
    m->shm_name = (char *)(e->shm_name ? e->shm_name : "");
    if (strcmp(e->kind, "cuda-ipc") == 0) {
        m->cuda_ipc_handle.data = e->cuda_ipc_handle;
        m->cuda_ipc_handle.len = sizeof e->cuda_ipc_handle;
        m->cuda_device = e->cuda_device;
    }
    m->arena_bytes = e->arena_bytes;
    m->config_json = (char *)(e->config_json ? e->config_json : "");
    m->tokenizer_path = scratch_text(r->scratch, e->tokenizer_path);
    if (!m->tokenizer_path) {
        gptqd_registry_unlease(r->ctx->registry, lease, &r->caller);
        return nomem();
    }
    Gptqd__TensorEntry *t = scratch_alloc(r->scratch, (e->n_tensors + 1) * sizeof *t);
    Gptqd__TensorEntry **ptrs = scratch_alloc(r->scratch, (e->n_tensors + 1) * sizeof *ptrs);
    if (!t || !ptrs) {
        gptqd_registry_unlease(r->ctx->registry, lease, &r->caller);
        return nomem();
    }
    for (size_t i = 0; i < e->n_tensors; i++) {
        gptqd__tensor_entry__init(&t[i]);
        t[i].name = (char *)e->tensors[i].name;
        t[i].dtype = (char *)e->tensors[i].dtype;
        t[i].n_shape = (size_t)e->tensors[i].ndim;
        t[i].shape = e->tensors[i].shape;
        t[i].offset = e->tensors[i].offset;
        t[i].bytes = e->tensors[i].bytes;
        ptrs[i] = &t[i];
    }
    m->n_tensors = e->n_tensors;
    m->tensors = ptrs;
    r->resp->body_case = GPTQD__RESPONSE__BODY_MAP;
    r->resp->map = m;
    return GPTQ_OK;
}

static gptq_status handle_unmap(request_ctx *r)
{
    gptq_status st = gptqd_registry_unlease(r->ctx->registry, r->req->unmap->lease, &r->caller);
    return st ? st : reply_done(r);
}

static gptq_status handle(request_ctx *r)
{
    switch (r->req->body_case) {
    case GPTQD__REQUEST__BODY_PING: return handle_ping(r);
    case GPTQD__REQUEST__BODY_STATUS_REQUEST: return handle_status(r);
    case GPTQD__REQUEST__BODY_LIST: return handle_list(r);
    case GPTQD__REQUEST__BODY_LOAD: return handle_load(r);
    case GPTQD__REQUEST__BODY_UNLOAD: return handle_unload(r);
    case GPTQD__REQUEST__BODY_QUANTIZE: return handle_quantize(r);
    case GPTQD__REQUEST__BODY_GENERATE: return handle_generate(r);
    case GPTQD__REQUEST__BODY_EVAL: return handle_eval(r);
    case GPTQD__REQUEST__BODY_SAVE: return handle_save(r);
    case GPTQD__REQUEST__BODY_POLL: return handle_poll(r);
    case GPTQD__REQUEST__BODY_CANCEL: return handle_cancel(r);
    case GPTQD__REQUEST__BODY_MAP: return handle_map(r);
    case GPTQD__REQUEST__BODY_UNMAP: return handle_unmap(r);
    case GPTQD__REQUEST__BODY_JOBS: return handle_jobs(r);
    default:
        return gptq_fail(GPTQ_ERR_INTERNAL, "body %d passed validation unhandled",
                         (int)r->req->body_case);
    }
}

/* Pack into a nanomsg message; NULL if memory ran out. */
static void *pack(const Gptqd__Response *resp, size_t *len)
{
    size_t n = gptqd__response__get_packed_size(resp);
    void *msg = nn_allocmsg(n ? n : 1, 0);
    if (!msg)
        return NULL;
    size_t written = gptqd__response__pack(resp, msg);
    if (written != n) {
        nn_freemsg(msg);
        gptqd_log(LOG_ERR, "reply packing wrote %zu of %zu bytes", written, n);
        return NULL;
    }
    *len = n;
    return msg;
}

void *gptqd_dispatch(gptqd_ctx *ctx, const void *msg, size_t len, size_t *reply_len)
{
    Gptqd__Response resp;
    gptqd__response__init(&resp);
    resp.version = GPTQD__VERSION__PROTOCOL_VERSION;
    scratch s = {0};
    request_ctx r;
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.resp = &resp;
    r.scratch = &s;

    gptq_clear_error();
    gptq_status st;
    Gptqd__Request *req = gptqd__request__unpack(NULL, len, msg);
    if (!req) {
        st = gptq_fail(GPTQ_ERR_PROTOCOL, "request: %zu bytes that are not a gptqd.Request "
                       "(malformed or truncated protobuf)", len);
    } else {
        r.req = req;
        st = gptq_wire_check_strings(&gptqd__request__descriptor, msg, len, "request");
        if (!st)
            st = gptqd_validate_request(req);
        if (!st) {
            gptqd_auth_caller(ctx->auth, req->session.data, req->session.len, req->client,
                              &r.caller);
            if (!r.caller.known && needs_identity(req->body_case))
                st = gptq_fail(GPTQ_ERR_PERMISSION,
                               "request without a valid session: a client proves who it is "
                               "through %s%s first (the gptqd client library does)",
                               ctx->conf->socket, GPTQD_AUTH_SUFFIX);
        }
        if (!st)
            st = handle(&r);
    }
    if (st) {
        /* A failed handler may have set a body part way: send only the error. */
        resp.body_case = GPTQD__RESPONSE__BODY__NOT_SET;
        resp.status = (int32_t)st;
        resp.message = (char *)gptq_errmsg();
        /* a message may quote a name from disk (a path, a tensor): never
         * let bytes that are not UTF-8 reach a strict decoder */
        gptq_utf8_sanitize(resp.message, strlen(resp.message));
        gptqd_log(LOG_DEBUG, "request from %s: %s: %s", req ? client_of(req) : "?",
                  gptq_status_name(st), gptq_errmsg());
    }
    void *out = pack(&resp, reply_len);
    if (!out && st == GPTQ_OK) {
        /* The reply was too big or memory ran out: try a small error instead. */
        Gptqd__Response err;
        gptqd__response__init(&err);
        err.version = GPTQD__VERSION__PROTOCOL_VERSION;
        err.status = GPTQ_ERR_NOMEM;
        err.message = "reply: out of memory";
        out = pack(&err, reply_len);
    }
    if (r.has_poll)
        gptqd_poll_free(&r.poll_data);
    if (r.has_export)
        gptqd_engine_export_free(&r.export_data);
    gptqd_registry_release(ctx->registry, r.held);
    scratch_free(&s);
    if (req)
        gptqd__request__free_unpacked(req, NULL);
    return out;
}
