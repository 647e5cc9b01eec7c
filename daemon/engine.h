/* daemon/engine.h: the only part of gptqd that calls into model/: load a
 * model folder or GPTQ checkpoint, generate, evaluate, quantize, save, and
 * export a resident model's weights for Map. Everything here runs inside a
 * job thread (except describe/estimate/export), reports through the job's
 * events and checks its cancel flag between steps. */
#ifndef GPTQD_ENGINE_H
#define GPTQD_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/jobs.h"
#include "daemon/paths.h"
#include "gptq/error.h"
#include "model/config.h"
#include "model/options.h"

typedef struct gptqd_engine_model gptqd_engine_model;

/* What `list` shows of a resident model (gptqd.proto ModelInfo). */
typedef struct gptqd_model_info {
    char name[80];
    char arch[64];
    uint64_t params;
    char format[32];
    uint64_t bytes;       /* resident weight bytes in `memory`: what memory-limit counts */
    char memory[8];       /* "host" (CPU backend, shm arena) or "device" (CUDA IPC arena) */
    uint64_t host_bytes, device_bytes; /* bytes held in each (one is 0 today) */
    uint64_t kv_bytes;    /* the decode loop's KV cache now, in `memory`: allocated
                             as sequences grow, freed as they end (0 when idle);
                             memory-limit counts it while held */
    char source[512];
    uint32_t bits;
    int32_t group_size;
    uint32_t layers, hidden, vocab;
    uint32_t context;     /* positions the model was trained for (0: unknown) */
    uid_t owner_uid;      /* who loaded or quantized it (registry: unload is theirs) */
} gptqd_model_info;

/* A job's options are the library's structs (model/options.h), filled
 * from the request and checked by the library (daemon/validate.h). */
typedef struct gptqd_generate_params {
    const char *prompt;
    gptq_generate_params options;
} gptqd_generate_params;

typedef struct gptqd_eval_params {
    const gptqd_place *text; /* the text (a checked place); NULL: the bundled text */
    gptq_eval_params options;
} gptqd_eval_params;

typedef struct gptqd_quantize_params {
    gptq_calib_options options; /* the engine picks the backend */
    int rtn;                  /* round to nearest (options.quant only), no calibration */
    const gptqd_place *calib; /* a checked place; NULL: the bundled text */
    char **skip_modules;
    size_t n_skip_modules;
} gptqd_quantize_params;

/* One tensor of a Map reply: where it lies in the shared arena. */
typedef struct gptqd_export_tensor {
    const char *name;
    const char *dtype; /* safetensors spelling */
    int ndim;
    int64_t shape[4];
    uint64_t offset, bytes;
} gptqd_export_tensor;

typedef struct gptqd_export {
    const char *kind;     /* "shm" or "cuda-ipc" */
    const char *shm_name; /* shm: the object to shm_open */
    unsigned char cuda_ipc_handle[64]; /* cuda-ipc: cudaIpcMemHandle_t of the arena */
    int cuda_device;                   /* cuda-ipc: the device it lives on */
    uint64_t arena_bytes;
    gptqd_export_tensor *tensors; /* malloc'ed; free with gptqd_engine_export_free */
    size_t n_tensors;
    const char *config_json;
    const char *tokenizer_path;
} gptqd_export;

/* Picks the compute backend for `device` ("auto", "cpu", "cuda:N") with
 * gptq_backend_select, logging why when it falls back to the CPU (an
 * unavailable cuda:N is a warning, not a failure). Errors: GPTQ_ERR_ARG
 * for a device that is none of those. */
gptq_status gptqd_engine_init(const char *device, const char *shm_group);
/* The decode loops' batch: slots sequences of up to context positions;
 * charge(user, delta) budgets their KV caches (gptqd_batcher_create). */
void gptqd_engine_set_kv(int slots, int context, gptq_kv_budget_fn charge, void *user);
/* Bytes of KV cache model m holds at most (every slot full). */
uint64_t gptqd_engine_kv_bytes(const gptq_model *m);
/* Bytes of KV cache em's decode loop holds now. */
uint64_t gptqd_engine_kv_held(gptqd_engine_model *em);
void gptqd_engine_shutdown(void);

/* Removes unfinished save folders ("NAME.tmp.PID" with gptqd's marker, of a
 * process that no longer runs, owned by this user) up to a few levels below
 * `dir`: what a kill during a save leaves. Returns how many. Start-up. */
int gptqd_engine_clean_stale_saves(const char *dir);

/* "device" when resident weights live in device memory (CUDA), else
 * "host": the memory that memory-limit and ModelInfo.bytes count. */
const char *gptqd_engine_memory_kind(void);

/* Backend facts for Status. */
void gptqd_engine_describe(char *backend, size_t backend_len, char *device, size_t device_len,
                           char *note, size_t note_len, uint64_t *bytes_total,
                           uint64_t *bytes_free);

/* Bytes a load of `src` will take (weights, with the output matrix's copy
 * on the `head` grid when not GPTQ_GRID_NONE; KV caches are charged as they
 * grow); fast (config and file sizes), for the memory limit check before
 * the load job starts. */
gptq_status gptqd_engine_estimate(const gptqd_place *src, int head, uint64_t *bytes);

/* Load the Hugging Face folder, GPTQ checkpoint or GGUF file at `src`
 * (every file opened beneath its model directory), with its output matrix
 * also held on the `head` grid (GPTQ_GRID_NONE: not; gptq_model_set_head_grid,
 * host memory only). On success *out is owned by the caller
 * (gptqd_engine_free) and *info describes it. */
gptq_status gptqd_engine_load(const gptqd_place *src, const char *name, int head, gptqd_job *job,
                              gptqd_engine_model **out, gptqd_model_info *info);
void gptqd_engine_free(gptqd_engine_model *model);

/* 1 when clients that mapped the model use the daemon's own allocation
 * (CUDA IPC): it must outlive their leases, even past a forced unload.
 * (A shm arena need not: a client's mapping keeps its pages.) */
int gptqd_engine_pinned_by_leases(const gptqd_engine_model *model);
/* Frees all of a model but its shared arena: what a forced unload of a
 * pinned model leaves until its last lease ends (then gptqd_engine_free).
 * Nothing may use the model afterwards. */
void gptqd_engine_retire(gptqd_engine_model *model);

/* Generation: tokens streamed as job events; result text and count. */
gptq_status gptqd_engine_generate(gptqd_engine_model *model, const gptqd_generate_params *p,
                                  gptqd_job *job);

/* Perplexity (and mean KL(base || model) with base != NULL) into the result. */
gptq_status gptqd_engine_eval(gptqd_engine_model *model, gptqd_engine_model *base,
                              const gptqd_eval_params *p, gptqd_job *job);

/* The resident bytes the quantized model of `model` will take with options
 * p: every decoder linear not skipped packed (codes, scales, zeros, g_idx,
 * the act-order permutation), every other tensor as resident now (the
 * embedding and head stay in their 16- or 32-bit form). For the memory-limit
 * reservation before the job starts. */
uint64_t gptqd_engine_quantized_bytes(gptqd_engine_model *model, const gptqd_quantize_params *p);

/* GPTQ calibration of a float model into a new model *out (caller owns). */
gptq_status gptqd_engine_quantize(gptqd_engine_model *model, const gptqd_quantize_params *p,
                                  const char *new_name, gptqd_job *job,
                                  gptqd_engine_model **out, gptqd_model_info *info);

/* What a save writes (SaveRequest's fields; "" = unset). */
typedef struct gptqd_save_spec {
    char dtype[8];     /* "f16", "bf16", "f32": the float tensors; "": the model's own */
    char format[8];    /* "v1", "v2", "gguf"; "": gguf for a name ending in .gguf, else v1 */
    char embedding[8]; /* GGUF only: "q8_0", "f16", "bf16", "f32" for the embedding and
                          output matrices; "": as dtype */
} gptqd_save_spec;

/* The model into the new folder `dir` (a place for writing) atomically
 * (temp dir + rename): a GPTQ checkpoint when it is quantized, else an HF
 * folder of float weights; or one GGUF file (spec->format). A v2 checkpoint
 * of a float model, or an embedding type outside GGUF: GPTQ_ERR_ARG. */
gptq_status gptqd_engine_save(gptqd_engine_model *model, const gptqd_place *dir,
                              const gptqd_save_spec *spec, gptqd_job *job);

/* The export of a resident model's arena for Map: kind "cuda-ipc" (device
 * arena) or "shm". Errors: GPTQ_ERR_UNSUPPORTED when the weights are not in
 * a shared arena. */
gptq_status gptqd_engine_export(gptqd_engine_model *model, gptqd_export *out);
void gptqd_engine_export_free(gptqd_export *out);

#endif
