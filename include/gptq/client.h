/* gptq/client.h: libgptqclient, the client side of gptqd
 * (docs/ARCHITECTURE.md, "Protocol and jobs").
 *
 * A gptq_client is one connection to a gptqd over nanomsg REQ on ipc://.
 * Every call is one request and one reply; anything slow (load, quantize,
 * generate, eval, save) starts a job and returns its id at once, and the
 * caller follows the job with gptq_client_poll or the blocking
 * gptq_client_wait, which delivers progress events and streamed tokens to a
 * callback as they arrive.
 *
 * Errors: every call returns a gptq_status (GPTQ_OK == 0). On failure
 * gptq_client_errmsg(c) holds the daemon's message (what went wrong and the
 * fix) or the local failure ("no gptqd socket at ...: start gptqd or pass
 * --socket"); the same text is also in the thread's gptq_errmsg().
 * GPTQ_ERR_UNREACHABLE means the daemon could not be reached (no socket, no
 * listener, no reply within the timeout).
 *
 * Ownership: whoever allocates frees. Results returned through `**out` are
 * allocated by the library and released with the matching *_free function
 * named at each call (NULL is fine for every *_free). Strings inside them
 * belong to the result. Pointers passed to callbacks are only valid during
 * the callback.
 *
 * Threads: a handle is not thread-safe (REQ is strictly request-reply);
 * use one handle per thread. Handles are cheap. */
#ifndef GPTQ_CLIENT_H
#define GPTQ_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gptq_client gptq_client;
typedef uint64_t gptq_job_id;

/* ---- connection ------------------------------------------------------------------- */

/* The socket path used when none is given, into buf (cap bytes):
 * $GPTQD_SOCKET, else $XDG_RUNTIME_DIR/gptqd.sock for a non-root user, else
 * /run/gptqd/gptqd.sock (root, or no XDG_RUNTIME_DIR).
 * Errors: GPTQ_ERR_LIMIT (path longer than cap or than an ipc path may be). */
gptq_status gptq_client_default_socket(char *buf, size_t cap);

/* Connect to the gptqd listening on socket_path (a filesystem path, without
 * "ipc://"; NULL: gptq_client_default_socket). Fails fast with
 * GPTQ_ERR_UNREACHABLE when the socket file is missing or nobody listens on
 * it; does not send a request. On success *out is a new handle owned by the
 * caller (gptq_client_close). Errors: GPTQ_ERR_UNREACHABLE, GPTQ_ERR_LIMIT
 * (path too long), GPTQ_ERR_IO, GPTQ_ERR_NOMEM; on failure *out is NULL and
 * the message is in gptq_errmsg(). */
gptq_status gptq_client_connect(const char *socket_path, gptq_client **out);

/* Close the connection and free the handle (NULL is fine). Mappings made
 * through it must be unmapped first. */
void gptq_client_close(gptq_client *c);

/* Message of the last failed call on this handle ("" if none). Owned by the
 * handle; valid until the next call on it. */
const char *gptq_client_errmsg(const gptq_client *c);

/* The socket path this handle talks to (owned by the handle). */
const char *gptq_client_socket(const gptq_client *c);

/* How long one reply may take before a call fails with GPTQ_ERR_UNREACHABLE,
 * in milliseconds (default 30000; a poll waits wait_ms more). */
void gptq_client_set_timeout(gptq_client *c, int timeout_ms);

/* Name sent with every request for the daemon's logs and `jobs` (copied;
 * default: the program's name). */
gptq_status gptq_client_set_name(gptq_client *c, const char *name);

/* ---- daemon and models ---------------------------------------------------------- */

/* Round trip of a Ping; *rtt_us (may be NULL) gets the measured microseconds. */
gptq_status gptq_client_ping(gptq_client *c, uint64_t *rtt_us);

typedef struct gptq_client_status_info {
    char *daemon_version;
    char *backend;      /* "cpu" or "cuda" */
    char *device;       /* "cpu (16 threads)", "NVIDIA H100 80GB HBM3" */
    char *backend_note; /* why this backend */
    uint64_t device_bytes_total, device_bytes_free;
    uint64_t resident_bytes; /* weights of all resident models */
    uint64_t memory_limit;   /* 0: none */
    uint32_t models, jobs_running, jobs_queued;
    uint64_t uptime_s;
    uint32_t pid;
    char *socket;
    /* resident_bytes by the memory holding the weights: a daemon on a GPU
     * keeps them in device memory, a CPU daemon in host shared memory
     * (0 and 0 from a daemon too old to say). */
    uint64_t resident_host_bytes, resident_device_bytes;
} gptq_client_status_info;

/* Daemon status. *out is owned by the caller: gptq_client_status_free. */
gptq_status gptq_client_status(gptq_client *c, gptq_client_status_info **out);
void gptq_client_status_free(gptq_client_status_info *s);

typedef struct gptq_client_model {
    char *name;
    char *arch;   /* "LlamaForCausalLM" */
    uint64_t params;
    char *format; /* "f16", "gptq-w4g128", ... */
    uint64_t bytes; /* resident weight bytes, in `memory` */
    uint32_t leases;
    char *source; /* folder, or "quantized from NAME" */
    uint32_t bits; /* 0: float */
    int32_t group_size;
    uint32_t layers, hidden, vocab;
    char *memory; /* where the weights live: "host" or "device" ("" from an old daemon) */
    uint64_t host_bytes, device_bytes;
    uint64_t kv_bytes; /* its decode loop's KV cache, in `memory` (0 from an old daemon) */
    uint32_t context;  /* positions the model was trained for (0: unknown, or an old daemon) */
} gptq_client_model;

typedef struct gptq_client_models {
    size_t n;
    gptq_client_model *models; /* [n] */
} gptq_client_models;

/* Resident models. *out is owned by the caller: gptq_client_models_free. */
gptq_status gptq_client_list(gptq_client *c, gptq_client_models **out);
void gptq_client_models_free(gptq_client_models *list);

/* Unload a resident model; force also drops it while mappings hold leases.
 * Errors: GPTQ_ERR_NOTFOUND, GPTQ_ERR_BUSY (leased or used by a job). */
gptq_status gptq_client_unload(gptq_client *c, const char *name, int force);

/* ---- jobs ------------------------------------------------------------------------ */

/* Each starts a job on the daemon and sets *job to its id; follow it with
 * gptq_client_wait or gptq_client_poll. Paths are sent as given: the daemon
 * runs in another directory, so pass absolute paths. */

/* Load the HF folder, GPTQ checkpoint or GGUF file at `path` as resident
 * model `name`. */
gptq_status gptq_client_load(gptq_client *c, const char *name, const char *path,
                             gptq_job_id *job);

/* Options of a load. Strings are borrowed for the call only. */
typedef struct gptq_load_options {
    const char *head; /* "q8_0": the output matrix is also held rounded to Q8_0 and logits
                         read that copy (a decode step reads half an F16 matrix's bytes;
                         llama.cpp's 4-bit files keep it in Q8_0 too); "none": as the file
                         holds it; NULL or "": the daemon's `head` setting (none unless
                         set). Host memory only. */
} gptq_load_options;

/* gptq_client_load with options (o may be NULL). */
gptq_status gptq_client_load_with(gptq_client *c, const char *name, const char *path,
                                  const gptq_load_options *o, gptq_job_id *job);

/* Options of quantize, generate and eval jobs. Each numeric option's
 * meaning, default and bounds are defined once, by the library that runs the
 * job (docs/ARCHITECTURE.md "Options"; `gptqctl VERB --help` shows the
 * defaults), and the daemon checks them there: a bad value fails the call
 * with GPTQ_ERR_ARG and a message that names it ("nsamples 70000: use 1 to
 * 65536"). An option left unset takes that default; nothing here bakes one
 * in. Unset is 0 for counts and sizes (0 is never legal for them), NaN for
 * real numbers, and has_X == 0 for the options every value of which means
 * something (seed, top_k). The *_init functions, or a zeroed struct for
 * eval, leave every option unset. */

/* Options of a quantize job, mirroring QuantizeRequest. Start from
 * gptq_quantize_options_init. Strings are borrowed for the call only. */
typedef struct gptq_quantize_options {
    unsigned bits;           /* bits per code; 0: unset */
    int group_size;          /* inputs per group, -1 = per output channel; 0: unset */
    int act_order;           /* 0 */
    int sym;                 /* -1: unset (gptqd's default, symmetric: the grid every GPTQ
                                loader's fast kernels take); 0 asymmetric; 1 symmetric */
    int static_groups;       /* 0 */
    float damp;              /* λ of H += λ·mean(diag H)·I; NaN: unset */
    const char *calib_path;  /* NULL: the bundled calibration text */
    unsigned nsamples;       /* calibration windows; 0: unset */
    unsigned seqlen;         /* tokens per window; 0: unset */
    uint64_t seed;           /* of the window draw, when has_seed */
    int has_seed;
    const char *save_dir;    /* NULL: do not save */
    int no_true_sequential;  /* 0 */
    unsigned block_size;     /* lazy-batch block; 0: unset */
    int mse;                 /* 0: min-max range; 1: MSE grid search */
    const char *grid;        /* NULL; "q4_0" / "q8_0": quantize onto that GGUF block
                                type's grid (4 / 8 bits, symmetric groups of 32) */
    const char *const *skip_modules; /* NULL or n_skip_modules names */
    size_t n_skip_modules;
    const char *method;      /* NULL or "gptq"; "rtn": round to nearest on the same grid, no
                                calibration (the calibration options must stay unset) */
} gptq_quantize_options;

/* Every option unset, every flag off. */
void gptq_quantize_options_init(gptq_quantize_options *o);

/* Quantize resident float model `name` into a new resident model `new_name`
 * (o NULL: the defaults). */
gptq_status gptq_client_quantize(gptq_client *c, const char *name, const char *new_name,
                                 const gptq_quantize_options *o, gptq_job_id *job);

typedef struct gptq_generate_options {
    unsigned max_tokens; /* new tokens at most; 0: unset */
    float temperature;   /* 0 = greedy, deterministic; NaN: unset */
    unsigned top_k;      /* 0 = off; when has_top_k */
    int has_top_k;
    float top_p;         /* 1 = off; NaN: unset */
    uint64_t seed;       /* when has_seed */
    int has_seed;
} gptq_generate_options;

/* Every option unset. */
void gptq_generate_options_init(gptq_generate_options *o);

/* Generate a completion of `prompt`; tokens stream as GPTQ_EVENT_TOKEN. */
gptq_status gptq_client_generate(gptq_client *c, const char *name, const char *prompt,
                                 const gptq_generate_options *o, gptq_job_id *job);

typedef struct gptq_eval_options {
    const char *text_path; /* NULL: the bundled evaluation text */
    unsigned seqlen;       /* window length; 0: unset */
    const char *kl_base;   /* NULL, or a model: also mean KL(base || name) */
    unsigned max_windows;  /* at most this many windows; 0: all (the default) */
} gptq_eval_options;

/* Perplexity of `name` (o NULL: defaults). */
gptq_status gptq_client_eval(gptq_client *c, const char *name, const gptq_eval_options *o,
                             gptq_job_id *job);

/* Write `name` into `dir` (atomically, on the daemon): a GPTQ checkpoint
 * when it is quantized, a Hugging Face folder of float weights otherwise. */
gptq_status gptq_client_save(gptq_client *c, const char *name, const char *dir,
                             gptq_job_id *job);

/* Options of a save. Strings are borrowed for the call only. */
typedef struct gptq_save_options {
    const char *dtype;  /* float tensors: "f16", "bf16", "f32"; NULL: the model's own */
    const char *format; /* "v1" (a GPTQ checkpoint, what every loader reads), "v2"
                           (GPTQModel's gptq_v2: zeros stored as they are), "gguf" (one
                           GGUF file for llama.cpp); NULL: gguf when the path ends in
                           .gguf, else v1 */
    const char *embedding_type; /* GGUF only: "q8_0", "f16", "bf16" or "f32" for the
                                   embedding and output matrices; NULL: as dtype */
} gptq_save_options;

/* gptq_client_save with options (o may be NULL). */
gptq_status gptq_client_save_with(gptq_client *c, const char *name, const char *dir,
                                  const gptq_save_options *o, gptq_job_id *job);

/* Ask the daemon to stop a job; it ends as GPTQ_JOB_CANCELED soon after.
 * Errors: GPTQ_ERR_NOTFOUND (unknown job), the daemon's refusal for a job
 * that already ended (GPTQ_ERR_ARG, "already finished"). */
gptq_status gptq_client_cancel(gptq_client *c, gptq_job_id job);

typedef enum gptq_job_state {
    GPTQ_JOB_QUEUED,
    GPTQ_JOB_RUNNING,
    GPTQ_JOB_DONE,
    GPTQ_JOB_FAILED,
    GPTQ_JOB_CANCELED
} gptq_job_state;

/* "queued", "running", "done", "failed", "canceled". */
const char *gptq_job_state_name(gptq_job_state state);

typedef struct gptq_client_result gptq_client_result;

typedef struct gptq_client_job {
    gptq_job_id id;
    char *kind;  /* load, quantize, generate, eval, save */
    char *model;
    gptq_job_state state;
    double fraction; /* 0..1 */
    double seconds;
    char *client;
    unsigned uid;    /* who started it (only that user, root or gptqd's may cancel it) */
    /* once it ended (kept by the daemon for a while, also when its client went away): */
    gptq_status result_status; /* FAILED / CANCELED: why */
    char *result_message;      /* "" when none */
    gptq_client_result *result; /* DONE: its figures (no generated text), else NULL */
} gptq_client_job;

typedef struct gptq_client_jobs {
    size_t n;
    gptq_client_job *jobs; /* [n] */
} gptq_client_jobs;

/* The daemon's job table. *out is owned by the caller: gptq_client_jobs_free. */
gptq_status gptq_client_jobs_list(gptq_client *c, gptq_client_jobs **out);
void gptq_client_jobs_free(gptq_client_jobs *list);

typedef enum gptq_event_kind {
    GPTQ_EVENT_LOG,      /* text: a line for people */
    GPTQ_EVENT_PROGRESS, /* fraction 0..1, text ("layer 3 q_proj"), value (e.g. loss) */
    GPTQ_EVENT_TOKEN     /* token id, text: its decoded bytes */
} gptq_event_kind;

typedef struct gptq_client_event {
    gptq_job_id job;
    uint64_t seq;
    gptq_event_kind kind;
    const char *text; /* never NULL */
    int32_t token;
    double fraction;
    double value;
    double seconds; /* since the job started */
} gptq_client_event;

/* What a finished job produced; fields that do not apply are 0 / NULL. */
struct gptq_client_result {
    char *model;
    double perplexity;  /* eval */
    uint64_t tokens;    /* eval: tokens scored */
    uint32_t seqlen;    /* eval */
    double kl;          /* eval with kl_base, when has_kl */
    int has_kl;
    char *text;         /* generate: the completion */
    uint32_t generated; /* generate: tokens produced */
    double seconds;
    char *saved_dir;    /* save, quantize --save */
};

void gptq_client_result_free(gptq_client_result *r);

/* One poll: events with seq >= since, waiting up to wait_ms on the daemon
 * for news. */
typedef struct gptq_client_poll_reply {
    gptq_job_id job;
    gptq_job_state state;
    size_t n_events;
    gptq_client_event *events; /* [n_events]; texts owned by the reply */
    uint64_t next;             /* pass as `since` next time */
    gptq_status result_status; /* when FAILED */
    char *result_message;      /* when FAILED */
    gptq_client_result *result; /* when DONE, else NULL */
} gptq_client_poll_reply;

/* *out is owned by the caller: gptq_client_poll_free. */
gptq_status gptq_client_poll(gptq_client *c, gptq_job_id job, uint64_t since, uint32_t wait_ms,
                             gptq_client_poll_reply **out);
void gptq_client_poll_free(gptq_client_poll_reply *p);

/* Called for every event of a job, in order. Returning nonzero asks for the
 * job to be cancelled (as *cancel does). */
typedef int (*gptq_client_event_fn)(void *user, const gptq_client_event *event);

/* Follow a job to its end, polling with wait_ms = 500, and deliver each
 * event to on_event (may be NULL). When *cancel (may be NULL) becomes
 * nonzero — e.g. from a SIGINT handler — a Cancel is sent once and the wait
 * goes on until the daemon reports the job ended.
 * Returns GPTQ_OK with *result (may be NULL to discard) set to a new result
 * owned by the caller (gptq_client_result_free) when the job is DONE; the
 * job's own status and message when it FAILED; GPTQ_ERR_CANCELED when it was
 * cancelled; transport errors as any call. *result is NULL unless GPTQ_OK. */
gptq_status gptq_client_wait(gptq_client *c, gptq_job_id job, gptq_client_event_fn on_event,
                             void *user, volatile int *cancel, gptq_client_result **result);

/* ---- shared weights ------------------------------------------------------------------ */

/* A resident model's weights mapped into this process, read-only and shared
 * with the daemon and every other client (no copy). A CPU daemon shares
 * host memory (kind "shm"); a daemon on a GPU shares its device memory
 * (kind "cuda-ipc"): the mapping then opens the daemon's allocation with
 * CUDA IPC on the same device, the tensor table's data pointers are device
 * pointers, and gptq_mapping_model's model runs on this process's CUDA
 * backend (gptq_model_forward still takes host ids and gives host logits). */
typedef struct gptq_mapping gptq_mapping;

/* The table lists dense tensors under their HF names and each packed
 * linear in the kernels' layout, not the checkpoint's: "<path>.qweight",
 * ".qzeros", ".scales" as in a GPTQ v1 checkpoint but with the input
 * columns sorted by group (".g_idx" non-decreasing), and for an act-order
 * linear "<path>.perm" (I32 [in]): sorted column j is input feature
 * perm[j]. gptq_mapping_model runs it as it is. */
typedef struct gptq_mapped_tensor {
    const char *name;   /* HF tensor name (with the suffixes above) */
    const char *dtype;  /* safetensors dtype name: "F32", "F16", "I32" */
    int ndim;           /* 1..4 */
    int64_t shape[4];
    const void *data;   /* points into the mapping */
    size_t bytes;
} gptq_mapped_tensor;

/* Map resident model `name`: takes a lease on the daemon (it will not free
 * the weights while leased; a dead process's leases are reclaimed) and
 * maps the arena. The reply is checked whole (every tensor inside the
 * arena, sizes agreeing with shapes, a 64-byte handle) before anything is
 * mapped or any device call is made. *out is owned by the caller and must
 * be released with gptq_unmap before gptq_client_close. Errors:
 * GPTQ_ERR_NOTFOUND, GPTQ_ERR_UNSUPPORTED (an arena kind this build cannot
 * map), GPTQ_ERR_FORMAT (a reply that does not hold together), GPTQ_ERR_IO
 * (shm_open/mmap), GPTQ_ERR_DEVICE ("cuda-ipc" and no usable CUDA device
 * here, or the handle does not open: the message says which). */
gptq_status gptq_map(gptq_client *c, const char *name, gptq_mapping **out);

/* Send Unmap for the lease, unmap the weights and free m and everything
 * obtained from it (the tensor table, the model of gptq_mapping_model).
 * m is freed even when the daemon cannot be told (the lease then ends when
 * this process does); the status says whether it was. NULL is fine. */
gptq_status gptq_unmap(gptq_client *c, gptq_mapping *m);

/* The tensor table (owned by m) and its length. data is host memory for a
 * "shm" mapping, device memory of gptq_mapping_cuda_device for "cuda-ipc". */
const gptq_mapped_tensor *gptq_mapping_tensors(const gptq_mapping *m, size_t *n);
/* The model's config.json text, the daemon's tokenizer.json path, the lease
 * id and the arena's bytes; all owned by m. */
const char *gptq_mapping_config_json(const gptq_mapping *m);
const char *gptq_mapping_tokenizer_path(const gptq_mapping *m);
uint64_t gptq_mapping_lease(const gptq_mapping *m);
size_t gptq_mapping_bytes(const gptq_mapping *m);
/* "shm" or "cuda-ipc" (owned by m), and the CUDA device of a "cuda-ipc"
 * mapping (-1 for "shm"). */
const char *gptq_mapping_kind(const gptq_mapping *m);
int gptq_mapping_cuda_device(const gptq_mapping *m);

/* A model (gptq/model.h: forward, KV cache) that runs in this process
 * directly on the mapped weights, built on first call. Owned by m: valid until gptq_unmap.
 * Not thread-safe on one mapping (it builds lazily): call it once before
 * sharing the model between threads, which the model itself allows.
 * Errors: the model library's (e.g. a tensor missing from the table), or
 * GPTQ_ERR_UNSUPPORTED when this build has no model runtime. */
struct gptq_model;
gptq_status gptq_mapping_model(gptq_mapping *m, struct gptq_model **out);

#ifdef __cplusplus
}
#endif
#endif
