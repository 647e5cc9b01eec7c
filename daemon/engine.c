/* daemon/engine.c: gptqd's thin layer over model/: load, generate, eval,
 * quantize, save, export (the decode loop is batch.c; the arenas share.c
 * and share_cuda.c).
 *
 * Where a resident model's weights live (one place, counted once):
 * - CPU backend: a host model whose weights are in a POSIX shm arena
 *   (share.c); Map exports that arena.
 * - CUDA backend: a device model whose weights are in one CUDA IPC
 *   allocation (share_cuda.c); Map exports its handle. The host copy the
 *   model was loaded (or quantized) into is freed as soon as the device
 *   copy exists: serving never reads it, and keeping it would double the
 *   memory of every model for the rare jobs that need weights on the host.
 *   Those jobs (quantize's calibration source, save's checkpoint) download
 *   the device copy into a temporary host model for their duration (one
 *   extra float32 copy in host memory while they run, not counted against
 *   memory-limit, which counts resident weights).
 * gptqd_model_info says which memory holds a model ("host"/"device") and
 * its bytes there; memory-limit applies to those bytes. */
#include "daemon/engine.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>
#include <unistd.h>

#include "daemon/batch.h"
#include "daemon/log.h"
#include "daemon/share.h"
#include "daemon/share_cuda.h"
#include "common/file.h"
#include "kernels/backend_select.h"
#include "model/calib.h"
#include "model/checkpoint.h"
#include "model/gguf_write.h"
#include "model/config.h"
#include "model/eval.h"
#include "model/hf_files.h"
#include "model/llama.h"
#include "model/source.h"
#include "gptq/tokenizer.h"


/* A quantize whose linears end in GGUF blocks (block grids, recipes):
 * resident dense float32, not packed. */
static int dense_grid(int grid) { return gptq_grid_is_block(grid) || gptq_grid_is_recipe(grid); }

/* The texts used when a request names none (docs/ARCHITECTURE.md "The main path"): $GPTQD_DATA_DIR,
 * else the installed copy, else the source tree's (an uninstalled build). */
#ifndef GPTQD_DATA_DIR
#define GPTQD_DATA_DIR "/usr/share/gptqd"
#endif
#ifndef GPTQD_SOURCE_DATA_DIR
#define GPTQD_SOURCE_DATA_DIR GPTQD_DATA_DIR
#endif

enum { TEXT_FILE_MAX = 256 << 20 };

struct gptqd_engine_model {
    gptq_model *model;
    gptq_tokenizer *tok;
    char dir[PATH_MAX];            /* where it came from: a folder or a GGUF file */
    char tokenizer_path[PATH_MAX]; /* what a mapping client loads its tokenizer from:
                                      the folder's tokenizer.json, or the GGUF file */
    gptq_hf_files files;           /* config.json (quantization_config added for a
                                      quantized model), tokenizer and generation files */
    gptqd_arena *arena;            /* CPU: shared weights (shm), or NULL */
    gptqd_device_arena *device_arena; /* CUDA: model's weights (IPC), or NULL */
    char name[80];
    int quantized;                 /* every linear packed; meta says how */
    gptq_checkpoint_meta meta;
    pthread_mutex_t lock;          /* guards batcher creation */
    gptqd_batcher *batcher;        /* decode loop, started on first use */
};

static struct {
    const gptq_backend *be;  /* runs every resident model */
    char backend[16];        /* "cpu" or "cuda" (StatusReply.backend) */
    char note[512];
    const char *shm_group;
    /* Generation: sequences decoded together per model, and the most
     * positions one sequence's KV cache holds (its memory is slots x context
     * x layers x 2 x kv_heads x head_dim floats). */
    int kv_slots, kv_context;
    gptq_kv_budget_fn kv_charge; /* the registry's (memory-limit) */
    void *kv_charge_user;
} engine = {.kv_slots = 8, .kv_context = 4096};

void gptqd_engine_set_kv(int slots, int context, gptq_kv_budget_fn charge, void *user)
{
    engine.kv_slots = slots;
    engine.kv_context = context;
    engine.kv_charge = charge;
    engine.kv_charge_user = user;
}

uint64_t gptqd_engine_kv_held(gptqd_engine_model *em)
{
    pthread_mutex_lock(&em->lock);
    uint64_t held = em->batcher ? gptqd_batcher_kv_bytes(em->batcher) : 0;
    pthread_mutex_unlock(&em->lock);
    return held;
}

/* Positions per sequence of a model's decode loop. */
static int kv_context_of(const gptq_model_config *cfg)
{
    int context = cfg->max_position_embeddings > 0 ? cfg->max_position_embeddings
                                                   : engine.kv_context;
    return context < engine.kv_context ? context : engine.kv_context;
}

uint64_t gptqd_engine_kv_bytes(const gptq_model *m)
{
    const gptq_model_config *cfg = gptq_model_get_config(m);
    return (uint64_t)engine.kv_slots * (uint64_t)kv_context_of(cfg) *
           (uint64_t)cfg->num_hidden_layers * 2 * (uint64_t)cfg->num_key_value_heads *
           (uint64_t)cfg->head_dim * gptq_dtype_size(gptq_model_kv_dtype(m));
}

gptq_status gptqd_engine_init(const char *device, const char *shm_group)
{
    char why[400] = "";
    engine.shm_group = shm_group;
    gptq_status st = gptq_backend_select(device, &engine.be, why, sizeof why);
    if (st == GPTQ_ERR_ARG)
        return gptq_fail_context(st, "--device");
    const gptq_backend *be = engine.be;
    const int on_device = be != gptq_backend_cpu();
    snprintf(engine.backend, sizeof engine.backend, "%s", on_device ? "cuda" : "cpu");
    if (on_device) {
        snprintf(engine.note, sizeof engine.note, "--device %s: %s", device, why);
        gptqd_log(LOG_INFO, "device %s: %s (%d SMs, compute %d.%d, %.1f GiB)", device, why,
                  be->sm_count, be->cc_major, be->cc_minor,
                  (double)be->total_memory / (1024.0 * 1024.0 * 1024.0));
    } else if (strcmp(device, "cpu") == 0) {
        snprintf(engine.note, sizeof engine.note, "--device cpu");
    } else {
        /* cuda:N that does not answer: serve on the CPU rather than not at
         * all (docs/ARCHITECTURE.md "Backend selection"), and say so where an operator looks. */
        snprintf(engine.note, sizeof engine.note, "--device %s: %s; using the CPU", device, why);
        gptqd_log(st ? LOG_WARNING : LOG_INFO, "%s", engine.note);
    }
    return GPTQ_OK;
}

void gptqd_engine_shutdown(void) {}

void gptqd_engine_describe(char *backend, size_t backend_len, char *device, size_t device_len,
                           char *note, size_t note_len, uint64_t *bytes_total,
                           uint64_t *bytes_free)
{
    snprintf(backend, backend_len, "%s", engine.backend);
    snprintf(note, note_len, "%s", engine.note);
    *bytes_total = *bytes_free = 0;
    const gptq_backend *be = engine.be;
    if (be != gptq_backend_cpu())
        snprintf(device, device_len, "%s (%s)", be->device, be->name);
    else
        snprintf(device, device_len, "cpu (%ld threads)", sysconf(_SC_NPROCESSORS_ONLN));
    size_t free_b = 0, total_b = 0;
    if (be->mem_info(be, &free_b, &total_b) == GPTQ_OK) {
        *bytes_total = total_b;
        *bytes_free = free_b;
    } else {
        *bytes_total = be->total_memory;
    }
}

const char *gptqd_engine_memory_kind(void) { return engine.be != gptq_backend_cpu() ? "device" : "host"; }

gptq_status gptqd_engine_estimate(const gptqd_place *src, int head, uint64_t *bytes)
{
    gptq_model_config cfg;
    gptq_status st = gptq_source_estimate_in(src->root, src->rel, src->path, &cfg, bytes);
    if (st)
        return gptq_fail_context(st, "load.path '%s'", src->path);
    /* the weights as the runtime holds them, and the head's serving copy
     * (KV caches are charged as they grow) */
    *bytes += gptq_head_grid_bytes(&cfg, head);
    return GPTQ_OK;
}

/* The bundled text `file` ("calib-default.txt") into path[PATH_MAX]. */
static void bundled_text(const char *file, char *path)
{
    const char *env = getenv("GPTQD_DATA_DIR");
    const char *dirs[] = {env && env[0] ? env : NULL, GPTQD_DATA_DIR, GPTQD_SOURCE_DATA_DIR};
    for (int i = 0; i < 3; i++) {
        if (!dirs[i])
            continue;
        snprintf(path, PATH_MAX, "%s/%s", dirs[i], file);
        if (access(path, R_OK) == 0)
            return;
    }
    snprintf(path, PATH_MAX, "%s/%s", GPTQD_DATA_DIR, file); /* the error names this one */
}

static void fill_info(const gptqd_engine_model *em, const char *name, gptqd_model_info *info)
{
    const gptq_model_config *cfg = gptq_model_get_config(em->model);
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", name);
    snprintf(info->arch, sizeof info->arch, "%s", cfg->architecture);
    info->params = (uint64_t)gptq_model_params(em->model);
    info->kv_bytes = 0; /* a new model's decode loop holds none */
    if (em->device_arena) {
        /* The whole allocation: that is what the device gives up for it. */
        info->device_bytes = gptqd_device_arena_bytes(em->device_arena);
        info->bytes = info->device_bytes;
        snprintf(info->memory, sizeof info->memory, "device");
    } else {
        size_t head_bytes = 0; /* held outside the arena (gptq_model_set_head_grid) */
        gptq_model_head_grid(em->model, &head_bytes);
        info->host_bytes = em->arena ? gptqd_arena_used(em->arena) + head_bytes
                                     : gptq_model_bytes(em->model);
        info->bytes = info->host_bytes;
        snprintf(info->memory, sizeof info->memory, "host");
    }
    snprintf(info->source, sizeof info->source, "%.*s", (int)sizeof info->source - 1, em->dir);
    info->layers = (uint32_t)cfg->num_hidden_layers;
    info->hidden = (uint32_t)cfg->hidden_size;
    info->vocab = (uint32_t)cfg->vocab_size;
    info->context = (uint32_t)cfg->max_position_embeddings;
    if (cfg->quant.present) {
        info->bits = (uint32_t)cfg->quant.bits;
        info->group_size = cfg->quant.group_size;
        snprintf(info->format, sizeof info->format, "gptq-w%dg%d%s", cfg->quant.bits,
                 cfg->quant.group_size, cfg->quant.desc_act ? "-act" : "");
    } else {
        /* what is resident, not the file's torch_dtype: a quantized GGUF
         * says float16 there and is held in float32 */
        const gptq_dtype wt = gptq_model_dense_dtype(em->model);
        const char *dt = wt == GPTQ_DT_F16 ? "f16" : wt == GPTQ_DT_BF16 ? "bf16" : "f32";
        snprintf(info->format, sizeof info->format, "%s", dt);
    }
    const int head = gptq_model_head_grid(em->model, NULL);
    if (head != GPTQ_GRID_NONE) {
        size_t len = strlen(info->format);
        snprintf(info->format + len, sizeof info->format - len, "+head-%s", gptq_grid_name(head));
    }
}

/* Makes the host model *host (taken: *host is NULL after) the serving copy
 * em->model, in shareable memory.
 * CUDA: a device copy in its own IPC arena; the host model is freed (see
 * the top of this file). Failure (device memory) fails the caller: a
 * model that does not fit the device is not silently served by the CPU.
 * CPU: the weights move into a shm arena so that clients can Map them; if
 * that fails (e.g. /dev/shm is too small) the model still serves from
 * private memory and Map is refused, which the log says. */
static gptq_status place_weights(gptqd_engine_model *em, gptq_model **host)
{
    if (engine.be != gptq_backend_cpu()) {
        gptq_status st = gptqd_device_share_model(*host, engine.be, em->name, &em->model,
                                                  &em->device_arena);
        if (st)
            return st;
        gptq_model_free(*host);
        *host = NULL;
        return GPTQ_OK;
    }
    em->model = *host;
    *host = NULL;
    if (gptqd_share_model(&em->model, em->name, engine.shm_group, &em->arena) != GPTQ_OK)
        gptqd_log(LOG_WARNING, "model %s: weights stay private, Map will be refused: %s",
                  em->name, gptq_errmsg());
    return GPTQ_OK;
}

/* The weights of em on the host for the duration of a job: em->model
 * itself on the CPU (*buffer NULL), a download of the device copy on CUDA.
 * Release with host_release. */
static gptq_status host_acquire(gptqd_engine_model *em, gptq_model **host, void **buffer)
{
    *buffer = NULL;
    if (!em->device_arena) {
        *host = em->model;
        return GPTQ_OK;
    }
    gptq_status st = gptqd_device_model_to_host(em->device_arena, em->model,
                                                gptq_hf_files_get(&em->files, "config.json", NULL),
                                                host, buffer);
    return st ? gptq_fail_context(st, "model %s: host copy of its device weights", em->name)
              : GPTQ_OK;
}

static void host_release(gptqd_engine_model *em, gptq_model *host, void *buffer)
{
    if (host && host != em->model)
        gptq_model_free(host);
    free(buffer);
}

void gptqd_engine_retire(gptqd_engine_model *em)
{
    if (!em)
        return;
    gptqd_batcher_destroy(em->batcher); /* its KV caches are device memory too */
    em->batcher = NULL;
    gptq_model_free(em->model);
    em->model = NULL;
    gptq_tokenizer_free(em->tok);
    em->tok = NULL;
}

int gptqd_engine_pinned_by_leases(const gptqd_engine_model *em)
{
    return em && em->device_arena != NULL;
}

void gptqd_engine_free(gptqd_engine_model *em)
{
    if (!em)
        return;
    gptqd_engine_retire(em); /* the models first: they borrow the arenas */
    pthread_mutex_destroy(&em->lock);
    gptqd_arena_destroy(em->arena);
    gptqd_device_arena_destroy(em->device_arena);
    gptq_hf_files_free(&em->files);
    free(em);
}

/* The model's tokenizer from its tokenizer.json text. */
static gptq_status load_tokenizer(const gptqd_engine_model *em, gptq_tokenizer **out)
{
    size_t len;
    const char *text = gptq_hf_files_get(&em->files, "tokenizer.json", &len);
    if (!text)
        return gptq_fail(GPTQ_ERR_NOTFOUND, "%s: no tokenizer.json (gptqd needs the model's "
                         "Hugging Face tokenizer to encode prompts and texts)", em->dir);
    char label[PATH_MAX + 32];
    snprintf(label, sizeof label, "%s%s", em->dir,
             strcmp(em->tokenizer_path, em->dir) ? "/tokenizer.json" : " (tokenizer)");
    return gptq_tokenizer_load_json(text, len, label, out);
}

gptq_status gptqd_engine_load(const gptqd_place *place, const char *name, int head, gptqd_job *job,
                              gptqd_engine_model **out, gptqd_model_info *info)
{
    const char *path = place->path;
    gptq_status st = GPTQ_OK;
    gptq_model *host = NULL;
    gptq_model_source *src = NULL;
    gptqd_engine_model *em = calloc(1, sizeof *em);
    if (!em)
        return gptq_fail(GPTQ_ERR_NOMEM, "load %s: out of memory", name);
    pthread_mutex_init(&em->lock, NULL);
    snprintf(em->name, sizeof em->name, "%s", name);
    snprintf(em->dir, sizeof em->dir, "%s", path);
    if ((st = gptq_source_open_in(place->root, place->rel, path, &src)))
        goto fail;
    if (gptq_source_is_gguf(src))
        snprintf(em->tokenizer_path, sizeof em->tokenizer_path, "%s", path);
    else
        snprintf(em->tokenizer_path, sizeof em->tokenizer_path, "%s/tokenizer.json", path);
    if ((st = gptq_hf_files_copy(gptq_source_files(src), &em->files)) ||
        (st = load_tokenizer(em, &em->tok)))
        goto fail;
    gptqd_job_progress(job, 0.1, 0, "tokenizer loaded");
    if (gptqd_job_canceled(job)) {
        st = gptq_fail(GPTQ_ERR_CANCELED, "load %s canceled", name);
        goto fail;
    }
    if ((st = gptq_model_load_source(src, &host)))
        goto fail;
    gptq_source_free(src);
    src = NULL;
    gptqd_job_progress(job, 0.8, 0, "weights loaded");
    const gptq_model_config *cfg = gptq_model_get_config(host);
    if (cfg->quant.present) {
        em->quantized = 1;
        gptq_quant_config_default(&em->meta.quant);
        em->meta.quant.bits = cfg->quant.bits;
        em->meta.quant.group_size = cfg->quant.group_size;
        em->meta.quant.sym = cfg->quant.sym;
        em->meta.quant.act_order = cfg->quant.desc_act;
        em->meta.true_sequential = 1;
    }
    if ((st = place_weights(em, &host)))
        goto fail;
    gptqd_job_progress(job, 0.9, 0, "weights in %s memory", gptqd_engine_memory_kind());
    if (head != GPTQ_GRID_NONE) {
        if ((st = gptq_model_set_head_grid(em->model, head)))
            goto fail;
        gptqd_job_progress(job, 0.95, 0, "output matrix rounded to %s", gptq_grid_name(head));
    }
    fill_info(em, name, info);
    *out = em;
    return GPTQ_OK;
fail:
    gptq_source_free(src);
    gptq_model_free(host);
    gptqd_engine_free(em);
    return gptq_fail_context(st, "load %s from %s", name, path);
}

/* ---- generation ---------------------------------------------------------- */

/* The model's decode loop, started on its first generation. */
static gptq_status batcher_of(gptqd_engine_model *em, gptqd_batcher **out)
{
    gptq_status st = GPTQ_OK;
    pthread_mutex_lock(&em->lock);
    if (!em->batcher) {
        const gptq_model_config *cfg = gptq_model_get_config(em->model);
        int context = kv_context_of(cfg);
        if (cfg->max_position_embeddings > context)
            gptqd_log(LOG_INFO, "model %s: sequences limited to %d of its %d positions "
                      "(kv-context)", em->name, context, cfg->max_position_embeddings);
        double kv_mib = (double)gptqd_engine_kv_bytes(em->model) / 1048576.0;
        st = gptqd_batcher_create(em->model, em->tok, engine.kv_slots, context, engine.kv_charge,
                                  engine.kv_charge_user, &em->batcher);
        if (!st)
            gptqd_log(LOG_INFO, "model %s: decode loop with %d slots of up to %d tokens (KV cache "
                      "allocated as sequences grow, at most %.1f MiB of %s memory)", em->name,
                      engine.kv_slots, context, kv_mib, engine.backend);
        else
            gptq_fail_context(st, "model %s: decode loop of %d x %d tokens: ", em->name,
                              engine.kv_slots, context);
    }
    *out = em->batcher;
    pthread_mutex_unlock(&em->lock);
    return st;
}

gptq_status gptqd_engine_generate(gptqd_engine_model *em, const gptqd_generate_params *p,
                                  gptqd_job *job)
{
    int32_t *ids = NULL;
    size_t n_ids = 0;
    gptqd_batcher *batcher = NULL;
    gptq_status st = gptq_tokenizer_encode(em->tok, p->prompt, strlen(p->prompt), 1, &ids,
                                           &n_ids);
    if (st)
        return gptq_fail_context(st, "generate.prompt");
    if (n_ids == 0)
        st = gptq_fail(GPTQ_ERR_ARG, "generate.prompt: empty, and the tokenizer adds no BOS");
    else if (n_ids > INT32_MAX / 2)
        st = gptq_fail(GPTQ_ERR_LIMIT, "generate.prompt: %zu tokens", n_ids);
    if (!st)
        st = batcher_of(em, &batcher);
    if (!st)
        st = gptqd_batcher_generate(batcher, ids, (int)n_ids, p, job);
    free(ids);
    return st;
}

/* ---- evaluation ------------------------------------------------------------- */

static gptq_status eval_progress(void *user, int done, int total)
{
    gptqd_job *job = user;
    if (gptqd_job_canceled(job))
        return gptq_fail(GPTQ_ERR_CANCELED, "eval canceled after %d of %d windows", done, total);
    gptqd_job_progress(job, total ? (double)done / total : 1.0, 0, "window %d/%d", done, total);
    return GPTQ_OK;
}

gptq_status gptqd_engine_eval(gptqd_engine_model *em, gptqd_engine_model *base,
                              const gptqd_eval_params *p, gptqd_job *job)
{
    char path[PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    gptq_status st;
    if (p->text) {
        snprintf(path, sizeof path, "%s", p->text->path);
        st = gptqd_place_read(p->text, TEXT_FILE_MAX, &text, &len);
    } else {
        bundled_text("eval-default.txt", path);
        st = gptq_file_read(path, TEXT_FILE_MAX, &text, &len);
    }
    if (st)
        return st;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    st = gptq_tokenizer_encode(em->tok, text, len, 1, &ids, &n_ids);
    free(text);
    if (st)
        return gptq_fail_context(st, "eval text %s", path);
    const gptq_eval_params *o = &p->options;
    if (o->max_windows && n_ids > (size_t)o->max_windows * (size_t)o->seqlen)
        n_ids = (size_t)o->max_windows * (size_t)o->seqlen;
    gptq_eval_result res;
    st = gptq_eval_ids(em->model, base ? base->model : NULL, ids, n_ids, o->seqlen,
                       eval_progress, job, &res);
    free(ids);
    if (st)
        return st;
    gptqd_job_result *r = gptqd_job_result_of(job);
    r->perplexity = res.perplexity;
    r->tokens = (uint64_t)res.tokens;
    r->seqlen = (uint32_t)res.seqlen;
    r->kl = res.mean_kl;
    r->has_kl = base != NULL;
    return GPTQ_OK;
}

/* ---- quantize, save ---------------------------------------------------------- */

static gptq_status calib_progress(void *user, const gptq_calib_progress *p)
{
    gptqd_job *job = user;
    if (gptqd_job_canceled(job))
        return gptq_fail(GPTQ_ERR_CANCELED, "quantize canceled at layer %d %s", p->layer,
                         gptq_linear_name(p->which));
    gptqd_job_progress(job, p->total ? (double)p->done / p->total : 1.0, p->loss,
                       "layer %d/%d %s (%.2f s)", p->layer + 1, p->layers,
                       gptq_linear_name(p->which), p->seconds);
    return GPTQ_OK;
}

/* config.json of a quantized model: the source's with the quantization_config
 * a checkpoint of it carries. */
static char *quantized_config(const char *source_json, const gptq_checkpoint_meta *meta)
{
    json_error_t err;
    json_t *root = json_loads(source_json, 0, &err);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    json_t *q = gptq_checkpoint_quant_config(meta);
    char *text = NULL;
    if (q && json_object_set_new(root, "quantization_config", q) == 0)
        text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    return text;
}

gptq_status gptqd_engine_quantize(gptqd_engine_model *em, const gptqd_quantize_params *p,
                                  const char *new_name, gptqd_job *job,
                                  gptqd_engine_model **out, gptqd_model_info *info)
{
    gptq_status st = GPTQ_OK;
    char *text = NULL;
    size_t len = 0, n_ids = 0;
    int32_t *ids = NULL;
    gptq_model *source = NULL, *host = NULL;
    void *source_buffer = NULL;
    const gptq_model_config *cfg = gptq_model_get_config(em->model);
    gptqd_engine_model *qm = calloc(1, sizeof *qm);
    if (!qm)
        return gptq_fail(GPTQ_ERR_NOMEM, "quantize: out of memory");
    pthread_mutex_init(&qm->lock, NULL);
    snprintf(qm->name, sizeof qm->name, "%s", new_name);
    snprintf(qm->dir, sizeof qm->dir, "%s", em->dir);
    snprintf(qm->tokenizer_path, sizeof qm->tokenizer_path, "%s", em->tokenizer_path);
    if ((st = gptq_hf_files_copy(&em->files, &qm->files)))
        goto fail;

    gptq_calib_options o = p->options; /* checked by the library (daemon/validate.c) */
    /* On CUDA each layer is uploaded, calibrated and quantized on the GPU;
     * the model handed over stays on the host and gets the packed linears. */
    o.backend = engine.be != gptq_backend_cpu() ? engine.be : NULL; /* on the CPU: in place, no layer copy */
    if (!p->rtn && cfg->max_position_embeddings > 0 && o.seqlen > cfg->max_position_embeddings) {
        gptqd_job_log(job, "seqlen %d lowered to the model's %d positions", o.seqlen,
                      cfg->max_position_embeddings);
        o.seqlen = cfg->max_position_embeddings;
    }
    for (size_t i = 0; i < p->n_skip_modules; i++) {
        /* gptqd's names (q_proj, self_attn.q_proj) or the family's files'
         * (OPT: out_proj, self_attn.out_proj, fc1) */
        int found = 0;
        char known[256] = "", file[96];
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            if (!gptq_config_has_linear(cfg, (gptq_linear_id)w))
                continue;
            const char *fp = gptq_linear_file_path(cfg, (gptq_linear_id)w, file, sizeof file);
            const char *last = strrchr(fp, '.') ? strrchr(fp, '.') + 1 : fp;
            if (strcmp(p->skip_modules[i], gptq_linear_name((gptq_linear_id)w)) == 0 ||
                strcmp(p->skip_modules[i], gptq_linear_path((gptq_linear_id)w)) == 0 ||
                strcmp(p->skip_modules[i], fp) == 0 || strcmp(p->skip_modules[i], last) == 0)
                o.skip_mask |= 1u << w, found = 1;
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                     *known ? ", " : "", last);
        }
        /* a fused module of the family's files (Phi-3's qkv_proj, BLOOM's
         * query_key_value): all of its parts */
        for (int g = 0; g < GPTQ_FUSED_GROUPS; g++) {
            if (!gptq_config_fuses(cfg, g))
                continue;
            char theirs[192];
            const char *fp =
                gptq_config_layer_path(cfg, gptq_fused_groups[g].fused, theirs, sizeof theirs);
            const char *last = strrchr(fp, '.') ? strrchr(fp, '.') + 1 : fp;
            if (strcmp(p->skip_modules[i], fp) == 0 || strcmp(p->skip_modules[i], last) == 0) {
                for (int k = 0; k < gptq_fused_groups[g].n; k++)
                    for (int w = 0; w < GPTQ_LIN_COUNT; w++)
                        if (!strcmp(gptq_linear_path((gptq_linear_id)w),
                                    gptq_fused_groups[g].parts[k]))
                            o.skip_mask |= 1u << w, found = 1;
            }
            snprintf(known + strlen(known), sizeof known - strlen(known), ", %s", last);
        }
        if (!found) {
            st = gptq_fail(GPTQ_ERR_ARG, "quantize.skip_modules: '%s' is not a linear of %s "
                           "(use %s)", p->skip_modules[i], cfg->architecture, known);
            goto fail;
        }
    }

    /* before any work: the library checks it again when the pipeline starts */
    if ((st = gptq_calib_skip_check(cfg, o.skip_mask)) ||
        (!dense_grid(o.quant.grid) && (st = gptq_config_bits_check(cfg, o.quant.bits)))) {
        st = gptq_fail_context(st, "quantize");
        goto fail;
    }
    char path[PATH_MAX];
    if (p->rtn) {
        /* round to nearest: no calibration text, nothing to tokenize */
    } else if (p->calib) {
        snprintf(path, sizeof path, "%s", p->calib->path);
        st = gptqd_place_read(p->calib, TEXT_FILE_MAX, &text, &len);
    } else {
        bundled_text("calib-default.txt", path);
        st = gptq_file_read(path, TEXT_FILE_MAX, &text, &len);
    }
    if (st)
        goto fail;
    /* Calibration text tokenized whole, without special tokens (the library
     * path, tests/test_calib.c, does the same). */
    if (!p->rtn && (st = gptq_tokenizer_encode(em->tok, text, len, 0, &ids, &n_ids))) {
        st = gptq_fail_context(st, "calibration text %s", path);
        goto fail;
    }
    if (p->rtn && o.quant.grid != GPTQ_GRID_NONE)
        gptqd_job_log(job, "round to nearest on grid %s, no calibration",
                      gptq_grid_name(o.quant.grid));
    else if (p->rtn && o.quant.group_size < 0)
        gptqd_job_log(job, "round to nearest: %d bits per channel, no calibration",
                      o.quant.bits);
    else if (p->rtn)
        gptqd_job_log(job, "round to nearest: %d bits, groups of %d, no calibration",
                      o.quant.bits, o.quant.group_size);
    else
        gptqd_job_log(job, "calibration: %zu tokens of %s, %d windows of %d", n_ids, path,
                      o.nsamples, o.seqlen);
    if ((st = load_tokenizer(qm, &qm->tok)))
        goto fail;
    /* The calibration source: the host fp16-as-float32 weights. On CUDA they
     * are downloaded, cloned into a model the pipeline may modify, and the
     * download is dropped before the long part starts. */
    if ((st = host_acquire(em, &source, &source_buffer)))
        goto fail;
    st = gptq_model_clone(source, &host);
    host_release(em, source, source_buffer);
    if (st)
        goto fail;
    st = p->rtn ? gptq_calib_rtn(host, &o.quant, o.skip_mask, calib_progress, job)
                : gptq_calib_quantize(host, ids, n_ids, &o, calib_progress, job);
    if (st)
        goto fail;
    qm->quantized = 1;
    qm->meta.quant = o.quant;
    qm->meta.true_sequential = o.true_sequential;
    char *config = quantized_config(gptq_hf_files_get(&em->files, "config.json", NULL), &qm->meta);
    if (!config) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "quantize: writing config.json");
        goto fail;
    }
    st = gptq_hf_files_set(&qm->files, "config.json", config, strlen(config));
    free(config);
    if (st)
        goto fail;
    if ((st = place_weights(qm, &host)))
        goto fail;
    fill_info(qm, new_name, info);
    info->bits = (uint32_t)o.quant.bits;
    info->group_size = o.quant.group_size;
    if (dense_grid(o.quant.grid)) /* linears in GGUF blocks, served dense */
        snprintf(info->format, sizeof info->format, "gptq-%s%s%s", gptq_grid_name(o.quant.grid),
                 o.quant.act_order ? "-act" : "", p->rtn ? "-rtn" : "");
    else
        snprintf(info->format, sizeof info->format, "gptq-w%dg%d%s%s", o.quant.bits,
                 o.quant.group_size, o.quant.act_order ? "-act" : "", p->rtn ? "-rtn" : "");
    *out = qm;
    free(text);
    free(ids);
    return GPTQ_OK;
fail:
    free(text);
    free(ids);
    gptq_model_free(host);
    gptqd_engine_free(qm);
    return st;
}

typedef struct packed_estimate {
    const gptq_quant_config *q;
    const gptqd_quantize_params *p;
    uint64_t bytes;
} packed_estimate;

static gptq_status estimate_visit(void *user, const char *name, const void *data, gptq_dtype dt,
                                  int ndim, const int64_t *shape, const gptq_linear *L)
{
    (void)data;
    packed_estimate *e = user;
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (uint64_t)shape[i];
    int packs = !L && ndim == 2 && strncmp(name, "model.layers.", 13) == 0 &&
                strstr(name, "_proj.weight") != NULL;
    for (size_t i = 0; packs && i < e->p->n_skip_modules; i++)
        packs = strstr(name, e->p->skip_modules[i]) == NULL;
    if (!packs) {
        e->bytes += n * gptq_dtype_size(dt);
        return GPTQ_OK;
    }
    const uint64_t rows = (uint64_t)shape[0], cols = (uint64_t)shape[1];
    if (dense_grid(e->q->grid)) { /* float32 and the GGUF blocks (at most 9 bits a weight) */
        e->bytes += rows * cols * 4 + rows * cols * 9 / 8;
        return GPTQ_OK;
    }
    const uint64_t groups = (uint64_t)gptq_quant_groups(e->q, (int)cols);
    e->bytes += rows * cols * (uint64_t)e->q->bits / 8          /* codes */
                + groups * rows * (2 + (uint64_t)e->q->bits / 8 + 1) /* scales, zeros */
                + cols * 4 * (e->q->act_order ? 2 : 1);           /* g_idx, perm */
    return GPTQ_OK;
}

uint64_t gptqd_engine_quantized_bytes(gptqd_engine_model *em, const gptqd_quantize_params *p)
{
    packed_estimate e = {.q = &p->options.quant, .p = p};
    if (gptq_model_foreach_tensor(em->model, estimate_visit, &e) != GPTQ_OK) {
        gptq_clear_error();
        return gptq_model_bytes(em->model); /* no better bound than the source */
    }
    return e.bytes;
}

gptq_status gptqd_engine_save(gptqd_engine_model *em, const gptqd_place *place,
                              const gptqd_save_spec *spec, gptqd_job *job)
{
    const char *dtype = spec->dtype, *format = spec->format;
    const int v2 = format && !strcmp(format, "v2");
    const size_t name_len = strlen(place->name);
    /* GGUF when asked, or by the file name's extension when no format is */
    const int gguf = (format && !strcmp(format, "gguf")) ||
                     ((!format || !format[0]) && name_len > 5 &&
                      !strcasecmp(place->name + name_len - 5, ".gguf"));
    if (format && format[0] && !v2 && !gguf && strcmp(format, "v1"))
        return gptq_fail(GPTQ_ERR_ARG, "save.format '%.32s': use v1, v2 or gguf", format);
    if (v2 && !em->quantized)
        return gptq_fail(GPTQ_ERR_ARG, "save.format v2: %s is a float model; the format is that "
                         "of a GPTQ checkpoint", em->name);
    gptq_checkpoint_meta meta = em->meta;
    meta.v2 = v2;
    const char *dir = place->path;
    gptq_dtype dt = GPTQ_DT_COUNT; /* the model's own */
    if (dtype && dtype[0]) {
        if (!strcmp(dtype, "f16") || !strcmp(dtype, "float16")) dt = GPTQ_DT_F16;
        else if (!strcmp(dtype, "bf16") || !strcmp(dtype, "bfloat16")) dt = GPTQ_DT_BF16;
        else if (!strcmp(dtype, "f32") || !strcmp(dtype, "float32")) dt = GPTQ_DT_F32;
        else
            return gptq_fail(GPTQ_ERR_ARG, "save.dtype '%.32s': use f16, bf16 or f32", dtype);
    }
    gptq_gguf_save_options gopt = {.float_dtype = dt, .embedding_type = -1};
    if (spec->embedding[0]) {
        if (!gguf)
            return gptq_fail(GPTQ_ERR_ARG, "save.embedding_type: only for a GGUF file (a name "
                             "ending in .gguf, or format gguf)");
        if ((gopt.embedding_type = gptq_gguf_embedding_type(spec->embedding)) < 0)
            return gptq_fail(GPTQ_ERR_ARG, "save.embedding_type '%.8s': use q8_0, a block grid "
                             "(q4_1, q5_0, q5_1, q2_k..q6_k), f16, bf16 or f32", spec->embedding);
    }
    gptqd_job_progress(job, 0.0, 0, "writing %s", dir);
    gptq_model *host = NULL;
    void *buffer = NULL;
    int parent = -1;
    gptq_status st = gptqd_place_open(place, 1, &parent);
    if (!st)
        st = host_acquire(em, &host, &buffer);
    if (!st && gguf)
        st = gptq_gguf_save_at(host, &em->files, &gopt, parent, place->name, dir);
    else if (!st)
        st = gptq_checkpoint_save_at(host, &em->files, em->quantized ? &meta : NULL, dt, parent,
                                     place->name, dir);
    host_release(em, host, buffer);
    if (parent >= 0)
        close(parent);
    if (st)
        return gptq_fail_context(st, "save %s", em->name);
    gptqd_job_progress(job, 1.0, 0, "saved %s", dir);
    gptqd_log(LOG_INFO, "model %s saved to %s (%s)", em->name, dir,
              gguf           ? "GGUF file"
              : !em->quantized ? "float model folder"
              : v2           ? "GPTQ checkpoint, gptq_v2"
                             : "GPTQ checkpoint");
    return GPTQ_OK;
}

int gptqd_engine_clean_stale_saves(const char *dir)
{
    return gptq_checkpoint_clean_stale(dir, 4);
}

/* ---- export (Map) -------------------------------------------------------------- */

gptq_status gptqd_engine_export(gptqd_engine_model *em, gptqd_export *out)
{
    memset(out, 0, sizeof *out);
    gptq_status st;
    if (em->device_arena)
        st = gptqd_device_arena_export(em->device_arena, em->model, out);
    else if (em->arena)
        st = gptqd_arena_export(em->arena, em->model, out);
    else
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "map: model '%s' has its weights in private "
                         "memory (its shared arena could not be made; see gptqd's log)",
                         em->name);
    if (st)
        return st;
    out->config_json = gptq_hf_files_get(&em->files, "config.json", NULL);
    out->tokenizer_path = em->tokenizer_path;
    return GPTQ_OK;
}

void gptqd_engine_export_free(gptqd_export *out)
{
    free(out->tensors);
    memset(out, 0, sizeof *out);
}
