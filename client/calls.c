/* client/calls.c: one function per request of the protocol (except Poll and
 * Map, in job.c and map.c): build the request, round-trip it, and copy the
 * reply into the caller-owned structs of gptq/client.h. */
#include "client/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/wire_check.h"

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Borrowed strings go into requests as char * (protobuf-c's field type);
 * the request never outlives the call and pack does not write them. */
static char *wire_str(const char *s) { return (char *)(s ? s : ""); }

gptq_status gptq_client_ping(gptq_client *c, uint64_t *rtt_us)
{
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__Ping ping = GPTQD__PING__INIT;
    Gptqd__Response *r = NULL;
    req.body_case = GPTQD__REQUEST__BODY_PING;
    req.ping = &ping;
    uint64_t t0 = now_us();
    gptq_status st = gptq_client_rpc_(c, &req, GPTQD__RESPONSE__BODY_PONG, 0, &r);
    if (st == GPTQ_OK && rtt_us)
        *rtt_us = now_us() - t0;
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return gptq_client_finish_(c, st);
}

void gptq_client_status_free(gptq_client_status_info *s)
{
    if (!s)
        return;
    free(s->daemon_version);
    free(s->backend);
    free(s->device);
    free(s->backend_note);
    free(s->socket);
    free(s);
}

gptq_status gptq_client_status(gptq_client *c, gptq_client_status_info **out)
{
    gptq_status st = GPTQ_OK;
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__StatusRequest body = GPTQD__STATUS_REQUEST__INIT;
    Gptqd__Response *r = NULL;
    gptq_client_status_info *s = NULL;
    *out = NULL;
    req.body_case = GPTQD__REQUEST__BODY_STATUS_REQUEST;
    req.status_request = &body;
    TRY(gptq_client_rpc_(c, &req, GPTQD__RESPONSE__BODY_STATUS_REPLY, 0, &r));
    const Gptqd__StatusReply *w = r->status_reply;
    MEM_TRY(s = calloc(1, sizeof *s), "status reply");
    MEM_TRY(s->daemon_version = gptq_client_strdup_(w->daemon_version), "status reply");
    MEM_TRY(s->backend = gptq_client_strdup_(w->backend), "status reply");
    MEM_TRY(s->device = gptq_client_strdup_(w->device), "status reply");
    MEM_TRY(s->backend_note = gptq_client_strdup_(w->backend_note), "status reply");
    MEM_TRY(s->socket = gptq_client_strdup_(w->socket), "status reply");
    s->device_bytes_total = w->device_bytes_total;
    s->device_bytes_free = w->device_bytes_free;
    s->resident_bytes = w->resident_bytes;
    s->resident_host_bytes = w->resident_host_bytes;
    s->resident_device_bytes = w->resident_device_bytes;
    s->memory_limit = w->memory_limit;
    s->models = w->models;
    s->jobs_running = w->jobs_running;
    s->jobs_queued = w->jobs_queued;
    s->uptime_s = w->uptime_s;
    s->pid = w->pid;
    *out = s;
    s = NULL;
fail:
    gptq_client_status_free(s);
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return gptq_client_finish_(c, st);
}

void gptq_client_models_free(gptq_client_models *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++) {
        gptq_client_model *m = &list->models[i];
        free(m->name);
        free(m->arch);
        free(m->format);
        free(m->source);
        free(m->memory);
    }
    free(list->models);
    free(list);
}

gptq_status gptq_client_list(gptq_client *c, gptq_client_models **out)
{
    gptq_status st = GPTQ_OK;
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__ListRequest body = GPTQD__LIST_REQUEST__INIT;
    Gptqd__Response *r = NULL;
    gptq_client_models *list = NULL;
    *out = NULL;
    req.body_case = GPTQD__REQUEST__BODY_LIST;
    req.list = &body;
    TRY(gptq_client_rpc_(c, &req, GPTQD__RESPONSE__BODY_LIST, 0, &r));
    const Gptqd__ListReply *w = r->list;
    MEM_TRY(list = calloc(1, sizeof *list), "model list");
    if (w->n_models)
        MEM_TRY(list->models = calloc(w->n_models, sizeof *list->models), "model list");
    for (size_t i = 0; i < w->n_models; i++) {
        const Gptqd__ModelInfo *wm = w->models[i];
        gptq_client_model *m = &list->models[i];
        list->n = i + 1; /* so that a failure frees what was copied */
        MEM_TRY(m->name = gptq_client_strdup_(wm->name), "model list");
        MEM_TRY(m->arch = gptq_client_strdup_(wm->arch), "model list");
        MEM_TRY(m->format = gptq_client_strdup_(wm->format), "model list");
        MEM_TRY(m->source = gptq_client_strdup_(wm->source), "model list");
        MEM_TRY(m->memory = gptq_client_strdup_(wm->memory), "model list");
        m->host_bytes = wm->host_bytes;
        m->device_bytes = wm->device_bytes;
        m->kv_bytes = wm->kv_bytes;
        m->context = wm->context;
        m->params = wm->params;
        m->bytes = wm->bytes;
        m->leases = wm->leases;
        m->bits = wm->bits;
        m->group_size = wm->group_size;
        m->layers = wm->layers;
        m->hidden = wm->hidden;
        m->vocab = wm->vocab;
    }
    *out = list;
    list = NULL;
fail:
    gptq_client_models_free(list);
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return gptq_client_finish_(c, st);
}

/* Requests answered by Done. */
static gptq_status call_done(gptq_client *c, Gptqd__Request *req)
{
    Gptqd__Response *r = NULL;
    gptq_status st = gptq_client_rpc_(c, req, GPTQD__RESPONSE__BODY_DONE, 0, &r);
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return gptq_client_finish_(c, st);
}

/* Requests answered by JobStarted. */
static gptq_status call_job(gptq_client *c, Gptqd__Request *req, gptq_job_id *job)
{
    Gptqd__Response *r = NULL;
    gptq_status st = gptq_client_rpc_(c, req, GPTQD__RESPONSE__BODY_JOB, 0, &r);
    if (st == GPTQ_OK)
        *job = r->job->job;
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return gptq_client_finish_(c, st);
}

gptq_status gptq_client_unload(gptq_client *c, const char *name, int force)
{
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__UnloadRequest body = GPTQD__UNLOAD_REQUEST__INIT;
    body.name = wire_str(name);
    body.force = force != 0;
    req.body_case = GPTQD__REQUEST__BODY_UNLOAD;
    req.unload = &body;
    return call_done(c, &req);
}

gptq_status gptq_client_cancel(gptq_client *c, gptq_job_id job)
{
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__CancelRequest body = GPTQD__CANCEL_REQUEST__INIT;
    body.job = job;
    req.body_case = GPTQD__REQUEST__BODY_CANCEL;
    req.cancel = &body;
    return call_done(c, &req);
}

gptq_status gptq_client_load(gptq_client *c, const char *name, const char *path,
                             gptq_job_id *job)
{
    return gptq_client_load_with(c, name, path, NULL, job);
}

gptq_status gptq_client_load_with(gptq_client *c, const char *name, const char *path,
                                  const gptq_load_options *o, gptq_job_id *job)
{
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__LoadRequest body = GPTQD__LOAD_REQUEST__INIT;
    body.name = wire_str(name);
    body.path = wire_str(path);
    body.head = wire_str(o ? o->head : NULL);
    req.body_case = GPTQD__REQUEST__BODY_LOAD;
    req.load = &body;
    return call_job(c, &req, job);
}

void gptq_quantize_options_init(gptq_quantize_options *o)
{
    memset(o, 0, sizeof *o); /* counts and sizes unset, flags off, no seed */
    o->damp = NAN;
    o->sym = -1;
}

gptq_status gptq_client_quantize(gptq_client *c, const char *name, const char *new_name,
                                 const gptq_quantize_options *o, gptq_job_id *job)
{
    gptq_quantize_options defaults;
    if (!o) {
        gptq_quantize_options_init(&defaults);
        o = &defaults;
    }
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__QuantizeRequest body = GPTQD__QUANTIZE_REQUEST__INIT;
    body.name = wire_str(name);
    body.new_name = wire_str(new_name);
    body.bits = o->bits; /* 0: unset, here as on the wire */
    body.group_size = o->group_size;
    body.act_order = o->act_order != 0;
    if (o->sym >= 0) {
        body.has_sym_case = GPTQD__QUANTIZE_REQUEST__HAS_SYM_SYM;
        body.sym = o->sym != 0;
    }
    body.static_groups = o->static_groups != 0;
    if (!isnan(o->damp)) {
        body.has_damp_case = GPTQD__QUANTIZE_REQUEST__HAS_DAMP_DAMP;
        body.damp = o->damp;
    }
    body.calib_path = wire_str(o->calib_path);
    body.nsamples = o->nsamples;
    body.seqlen = o->seqlen;
    if (o->has_seed) {
        body.has_seed_case = GPTQD__QUANTIZE_REQUEST__HAS_SEED_SEED;
        body.seed = o->seed;
    }
    body.save_dir = wire_str(o->save_dir);
    body.grid = wire_str(o->grid);
    body.method = wire_str(o->method);
    body.no_true_sequential = o->no_true_sequential != 0;
    body.block_size = o->block_size;
    body.mse = o->mse != 0;
    body.n_skip_modules = o->skip_modules ? o->n_skip_modules : 0;
    body.skip_modules = (char **)o->skip_modules;
    req.body_case = GPTQD__REQUEST__BODY_QUANTIZE;
    req.quantize = &body;
    return call_job(c, &req, job);
}

void gptq_generate_options_init(gptq_generate_options *o)
{
    memset(o, 0, sizeof *o);
    o->temperature = NAN;
    o->top_p = NAN;
}

gptq_status gptq_client_generate(gptq_client *c, const char *name, const char *prompt,
                                 const gptq_generate_options *o, gptq_job_id *job)
{
    gptq_generate_options defaults;
    if (!o) {
        gptq_generate_options_init(&defaults);
        o = &defaults;
    }
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__GenerateRequest body = GPTQD__GENERATE_REQUEST__INIT;
    body.name = wire_str(name);
    body.prompt = wire_str(prompt);
    body.max_tokens = o->max_tokens;
    if (!isnan(o->temperature)) {
        body.has_temperature_case = GPTQD__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
        body.temperature = o->temperature;
    }
    if (o->has_top_k) {
        body.has_top_k_case = GPTQD__GENERATE_REQUEST__HAS_TOP_K_TOP_K;
        body.top_k = o->top_k;
    }
    if (!isnan(o->top_p)) {
        body.has_top_p_case = GPTQD__GENERATE_REQUEST__HAS_TOP_P_TOP_P;
        body.top_p = o->top_p;
    }
    if (o->has_seed) {
        body.has_seed_case = GPTQD__GENERATE_REQUEST__HAS_SEED_SEED;
        body.seed = o->seed;
    }
    req.body_case = GPTQD__REQUEST__BODY_GENERATE;
    req.generate = &body;
    return call_job(c, &req, job);
}

gptq_status gptq_client_eval(gptq_client *c, const char *name, const gptq_eval_options *o,
                             gptq_job_id *job)
{
    gptq_eval_options defaults = {0};
    if (!o)
        o = &defaults;
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__EvalRequest body = GPTQD__EVAL_REQUEST__INIT;
    body.name = wire_str(name);
    body.text_path = wire_str(o->text_path);
    body.seqlen = o->seqlen;
    body.kl_base = wire_str(o->kl_base);
    body.max_windows = o->max_windows;
    req.body_case = GPTQD__REQUEST__BODY_EVAL;
    req.eval = &body;
    return call_job(c, &req, job);
}

gptq_status gptq_client_save(gptq_client *c, const char *name, const char *dir,
                             gptq_job_id *job)
{
    return gptq_client_save_with(c, name, dir, NULL, job);
}

gptq_status gptq_client_save_with(gptq_client *c, const char *name, const char *dir,
                                  const gptq_save_options *o, gptq_job_id *job)
{
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__SaveRequest body = GPTQD__SAVE_REQUEST__INIT;
    body.name = wire_str(name);
    body.dir = wire_str(dir);
    body.dtype = wire_str(o ? o->dtype : NULL);
    body.embedding_type = wire_str(o ? o->embedding_type : NULL);
    body.format = wire_str(o ? o->format : NULL);
    req.body_case = GPTQD__REQUEST__BODY_SAVE;
    req.save = &body;
    return call_job(c, &req, job);
}

void gptq_client_jobs_free(gptq_client_jobs *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++) {
        free(list->jobs[i].kind);
        free(list->jobs[i].model);
        free(list->jobs[i].client);
        free(list->jobs[i].result_message);
        gptq_client_result_free(list->jobs[i].result);
    }
    free(list->jobs);
    free(list);
}

/* Wire job states outside the enum (a newer daemon) read as FAILED would
 * mislead; they are clamped to RUNNING, which only makes a waiter poll on. */
gptq_job_state gptq_client_state_from_wire_(int state)
{
    return state >= GPTQ_JOB_QUEUED && state <= GPTQ_JOB_CANCELED ? (gptq_job_state)state
                                                                   : GPTQ_JOB_RUNNING;
}

gptq_status gptq_client_jobs_list(gptq_client *c, gptq_client_jobs **out)
{
    gptq_status st = GPTQ_OK;
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__JobsRequest body = GPTQD__JOBS_REQUEST__INIT;
    Gptqd__Response *r = NULL;
    gptq_client_jobs *list = NULL;
    *out = NULL;
    req.body_case = GPTQD__REQUEST__BODY_JOBS;
    req.jobs = &body;
    TRY(gptq_client_rpc_(c, &req, GPTQD__RESPONSE__BODY_JOBS, 0, &r));
    const Gptqd__JobsReply *w = r->jobs;
    MEM_TRY(list = calloc(1, sizeof *list), "job list");
    if (w->n_jobs)
        MEM_TRY(list->jobs = calloc(w->n_jobs, sizeof *list->jobs), "job list");
    for (size_t i = 0; i < w->n_jobs; i++) {
        const Gptqd__JobInfo *wj = w->jobs[i];
        gptq_client_job *j = &list->jobs[i];
        list->n = i + 1;
        MEM_TRY(j->kind = gptq_client_strdup_(wj->kind), "job list");
        MEM_TRY(j->model = gptq_client_strdup_(wj->model), "job list");
        MEM_TRY(j->client = gptq_client_strdup_(wj->client), "job list");
        MEM_TRY(j->result_message = gptq_client_strdup_(wj->result_message), "job list");
        j->id = wj->id;
        j->state = gptq_client_state_from_wire_(wj->state);
        j->fraction = wj->fraction;
        j->seconds = wj->seconds;
        j->uid = wj->uid;
        j->result_status = (gptq_status)wj->result_status;
        if (wj->result)
            MEM_TRY(j->result = gptq_client_result_from_wire_(wj->result), "job list");
    }
    *out = list;
    list = NULL;
fail:
    gptq_client_jobs_free(list);
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return gptq_client_finish_(c, st);
}

const char *gptq_job_state_name(gptq_job_state state)
{
    switch (state) {
    case GPTQ_JOB_QUEUED: return "queued";
    case GPTQ_JOB_RUNNING: return "running";
    case GPTQ_JOB_DONE: return "done";
    case GPTQ_JOB_FAILED: return "failed";
    case GPTQ_JOB_CANCELED: return "canceled";
    }
    return "unknown";
}
