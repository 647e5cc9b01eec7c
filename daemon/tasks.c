/* daemon/tasks.c: the work of each job kind and what it holds while it runs. */
#include "daemon/tasks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"

/* Everything a job may hold; freed by task_free when the job ends. */
typedef struct task {
    gptqd_ctx *ctx;
    char name[80], new_name[80];
    gptqd_place *place;             /* load source, save folder, eval text (owned) */
    gptqd_place *calib, *save_dir;  /* quantize's calibration text, --save folder (owned) */
    gptqd_save_spec save;           /* save's dtype, format, embedding */
    char *prompt;
    gptqd_resident *model, *base;   /* references held */
    int reserved;                   /* new_name (or name for load) reserved */
    int head;                       /* load's head grid (GPTQ_GRID_NONE: none) */
    gptqd_generate_params gen;
    gptqd_eval_params eval;
    gptqd_quantize_params quant;
} task;

static void task_free(void *arg)
{
    task *t = arg;
    if (t->reserved)
        gptqd_registry_abandon(t->ctx->registry, t->new_name); /* no-op once published */
    gptqd_registry_release(t->ctx->registry, t->model);
    gptqd_registry_release(t->ctx->registry, t->base);
    gptqd_place *places[3] = {t->place, t->calib, t->save_dir};
    for (int i = 0; i < 3; i++) {
        gptqd_place_close(places[i]);
        free(places[i]);
    }
    free(t->prompt);
    for (size_t i = 0; i < t->quant.n_skip_modules; i++)
        free(t->quant.skip_modules[i]);
    free(t->quant.skip_modules);
    free(t);
}

static task *task_new(gptqd_ctx *ctx)
{
    task *t = calloc(1, sizeof *t);
    if (t)
        t->ctx = ctx;
    else
        gptq_fail(GPTQ_ERR_NOMEM, "job: out of memory");
    return t;
}

/* A heap copy of *p that owns its root (p gives it up), or NULL for NULL;
 * sets *failed when memory runs out (then p keeps its root). */
static gptqd_place *take_place(gptqd_place *p, int *failed)
{
    if (!p)
        return NULL;
    gptqd_place *c = malloc(sizeof *c);
    if (!c) {
        *failed = 1;
        return NULL;
    }
    *c = *p;
    p->root = -1;
    return c;
}

/* ---- load ---------------------------------------------------------------- */

static gptq_status run_load(gptqd_job *job, void *arg)
{
    task *t = arg;
    gptqd_engine_model *model = NULL;
    gptqd_model_info info;
    memset(&info, 0, sizeof info);
    gptqd_job_progress(job, 0.0, 0, "loading %s", t->place->path);
    gptq_status st = gptqd_engine_load(t->place, t->new_name, t->head, job, &model, &info);
    if (st)
        return st;
    if (gptqd_job_canceled(job)) {
        gptqd_engine_free(model);
        return gptq_fail(GPTQ_ERR_CANCELED, "load of %s canceled", t->new_name);
    }
    st = gptqd_registry_publish(t->ctx->registry, t->new_name, model, &info);
    if (st)
        return st;
    gptqd_job_result *r = gptqd_job_result_of(job);
    snprintf(r->model, sizeof r->model, "%s", t->new_name);
    gptqd_job_progress(job, 1.0, 0, "%s resident", t->new_name);
    return GPTQ_OK;
}

gptq_status gptqd_task_load(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                            gptqd_place *src, int head, uint64_t *job)
{
    uint64_t bytes = 0;
    gptq_status st = gptqd_engine_estimate(src, head, &bytes);
    if (st)
        return st;
    task *t = task_new(ctx);
    if (!t)
        return GPTQ_ERR_NOMEM;
    snprintf(t->new_name, sizeof t->new_name, "%s", name);
    t->head = head;
    int failed = 0;
    t->place = take_place(src, &failed);
    if (failed) {
        task_free(t);
        return gptq_fail(GPTQ_ERR_NOMEM, "job: out of memory");
    }
    st = gptqd_registry_reserve(ctx->registry, name, bytes,
                                caller->known ? caller->uid : geteuid());
    if (st) {
        task_free(t);
        return st;
    }
    t->reserved = 1;
    return gptqd_jobs_start(ctx->jobs, "load", name, caller, 0, run_load, t, task_free, job);
}

/* ---- quantize -------------------------------------------------------------- */

static gptq_status run_quantize(gptqd_job *job, void *arg)
{
    task *t = arg;
    gptqd_engine_model *out = NULL;
    gptqd_model_info info;
    memset(&info, 0, sizeof info);
    gptq_status st = gptqd_engine_quantize(gptqd_resident_model(t->model), &t->quant, t->new_name,
                                           job, &out, &info);
    if (st)
        return st;
    gptqd_job_result *r = gptqd_job_result_of(job);
    if (t->save_dir) {
        static const gptqd_save_spec checkpoint = {"", "", ""};
        st = gptqd_engine_save(out, t->save_dir, &checkpoint, job);
        if (st) {
            gptqd_engine_free(out);
            return st;
        }
        r->saved_dir = strdup(t->save_dir->path);
    }
    snprintf(info.source, sizeof info.source, "quantized from %s", t->name);
    st = gptqd_registry_publish(t->ctx->registry, t->new_name, out, &info);
    if (st)
        return st;
    snprintf(r->model, sizeof r->model, "%s", t->new_name);
    return GPTQ_OK;
}

gptq_status gptqd_task_quantize(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                                const char *new_name, const gptqd_quantize_params *p,
                                gptqd_place *calib, gptqd_place *save_dir, uint64_t *job)
{
    task *t = task_new(ctx);
    if (!t)
        return GPTQ_ERR_NOMEM;
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->new_name, sizeof t->new_name, "%s", new_name);
    t->quant = *p;
    t->quant.skip_modules = NULL;
    t->quant.n_skip_modules = 0;
    int failed = 0;
    t->calib = take_place(calib, &failed);
    t->save_dir = take_place(save_dir, &failed);
    t->quant.calib = t->calib;
    if (p->n_skip_modules) {
        t->quant.skip_modules = calloc(p->n_skip_modules, sizeof *t->quant.skip_modules);
        failed |= !t->quant.skip_modules;
        for (size_t i = 0; !failed && i < p->n_skip_modules; i++) {
            t->quant.skip_modules[i] = strdup(p->skip_modules[i]);
            t->quant.n_skip_modules++;
            failed |= !t->quant.skip_modules[i];
        }
    }
    if (failed) {
        task_free(t);
        return gptq_fail(GPTQ_ERR_NOMEM, "job: out of memory");
    }
    gptq_status st = gptqd_registry_acquire(ctx->registry, name, &t->model);
    if (!st) {
        const gptqd_model_info *src = gptqd_resident_info(t->model);
        if (src->bits != 0)
            st = gptq_fail(GPTQ_ERR_ARG, "quantize.name: '%s' is already quantized (%s): "
                           "quantize a float model", name, src->format);
    }
    if (!st) {
        /* the packed linears plus the tensors that stay float */
        uint64_t estimate = gptqd_engine_quantized_bytes(gptqd_resident_model(t->model), p);
        gptqd_log(LOG_INFO, "quantize %s -> %s: reserving %.1f MiB for the new model", name,
                  new_name, (double)estimate / 1048576.0);
        st = gptqd_registry_reserve(ctx->registry, new_name, estimate,
                                    caller->known ? caller->uid : geteuid());
    }
    if (st) {
        task_free(t);
        return st;
    }
    t->reserved = 1;
    return gptqd_jobs_start(ctx->jobs, "quantize", name, caller, 1, run_quantize, t, task_free,
                            job);
}

/* ---- generate -------------------------------------------------------------- */

static gptq_status run_generate(gptqd_job *job, void *arg)
{
    task *t = arg;
    return gptqd_engine_generate(gptqd_resident_model(t->model), &t->gen, job);
}

gptq_status gptqd_task_generate(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                                const gptqd_generate_params *p, uint64_t *job)
{
    task *t = task_new(ctx);
    if (!t)
        return GPTQ_ERR_NOMEM;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->gen = *p;
    t->prompt = strdup(p->prompt ? p->prompt : "");
    t->gen.prompt = t->prompt;
    gptq_status st = t->prompt ? GPTQ_OK : gptq_fail(GPTQ_ERR_NOMEM, "job: out of memory");
    if (!st)
        st = gptqd_registry_acquire(ctx->registry, name, &t->model);
    if (st) {
        task_free(t);
        return st;
    }
    return gptqd_jobs_start(ctx->jobs, "generate", name, caller, 0, run_generate, t, task_free,
                            job);
}

/* ---- eval ------------------------------------------------------------------ */

static gptq_status run_eval(gptqd_job *job, void *arg)
{
    task *t = arg;
    gptq_status st = gptqd_engine_eval(gptqd_resident_model(t->model),
                                       t->base ? gptqd_resident_model(t->base) : NULL, &t->eval,
                                       job);
    if (!st)
        snprintf(gptqd_job_result_of(job)->model, sizeof gptqd_job_result_of(job)->model, "%s",
                 t->name);
    return st;
}

gptq_status gptqd_task_eval(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                            const char *kl_base, const gptqd_eval_params *p, uint64_t *job)
{
    task *t = task_new(ctx);
    if (!t)
        return GPTQ_ERR_NOMEM;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->eval = *p;
    int failed = 0;
    t->place = take_place((gptqd_place *)p->text, &failed);
    t->eval.text = t->place;
    gptq_status st = failed ? gptq_fail(GPTQ_ERR_NOMEM, "job: out of memory") : GPTQ_OK;
    if (!st)
        st = gptqd_registry_acquire(ctx->registry, name, &t->model);
    if (!st && kl_base && kl_base[0])
        st = gptqd_registry_acquire(ctx->registry, kl_base, &t->base);
    /* windows longer than the model's positions are no evaluation (and cost
     * quadratic time): refused before any work */
    const gptqd_model_info *info = st ? NULL : gptqd_resident_info(t->model);
    if (info && info->context && (uint32_t)p->options.seqlen > info->context)
        st = gptq_fail(GPTQ_ERR_ARG, "seqlen %d exceeds the %u positions of model '%s': use "
                       "--seqlen %u or less", p->options.seqlen, info->context, name,
                       info->context);
    if (st) {
        task_free(t);
        return st;
    }
    return gptqd_jobs_start(ctx->jobs, "eval", name, caller, 0, run_eval, t, task_free, job);
}

/* ---- save ------------------------------------------------------------------ */

static gptq_status run_save(gptqd_job *job, void *arg)
{
    task *t = arg;
    gptq_status st =
        gptqd_engine_save(gptqd_resident_model(t->model), t->place, &t->save, job);
    if (!st) {
        gptqd_job_result *r = gptqd_job_result_of(job);
        snprintf(r->model, sizeof r->model, "%s", t->name);
        r->saved_dir = strdup(t->place->path);
    }
    return st;
}

gptq_status gptqd_task_save(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                            gptqd_place *dir, const gptqd_save_spec *spec, uint64_t *job)
{
    task *t = task_new(ctx);
    if (!t)
        return GPTQ_ERR_NOMEM;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->save = *spec;
    int failed = 0;
    t->place = take_place(dir, &failed);
    gptq_status st = failed ? gptq_fail(GPTQ_ERR_NOMEM, "job: out of memory") : GPTQ_OK;
    if (!st)
        st = gptqd_registry_acquire(ctx->registry, name, &t->model);
    if (st) {
        task_free(t);
        return st;
    }
    return gptqd_jobs_start(ctx->jobs, "save", name, caller, 0, run_save, t, task_free, job);
}
