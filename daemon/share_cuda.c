/* daemon/share_cuda.c: CUDA IPC arenas holding resident weights on the GPU.
 * Only the backend table is called (kernels/backend.h): no CUDA header
 * here, and the file builds without CUDA. */
#include "daemon/share_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/share.h"
#include "kernels/backend.h"

/* What the arena's bump allocator hands out; cudaMalloc's own alignment,
 * enough for 128-bit loads and for every dtype of the table. */
enum { DEVICE_ALIGN = 256 };
/* Room beyond the tensor table for buffers gptq_model_to_backend may take
 * that the table does not list (e.g. RoPE tables): a little per tensor and
 * a fixed MiB. Overflow is retried once with more (see share_model). */
enum { SLACK_FIXED = 1 << 20, SLACK_PER_TENSOR = 4096 };

struct gptqd_device_arena {
    const gptq_backend *be;    /* whose ipc_alloc made it */
    int device;                /* N of "cuda:N" */
    unsigned char handle[GPTQ_IPC_HANDLE_BYTES];
    unsigned char *base;       /* device pointer: compared and offset, never read here */
    size_t bytes, used;
    size_t refused;            /* bytes of the first allocation that did not fit */
    char label[128];           /* "cuda:0 arena of model tiny", for messages */
};

static size_t align_up(size_t n) { return (n + DEVICE_ALIGN - 1) / DEVICE_ALIGN * DEVICE_ALIGN; }

/* "cuda:N" -> N (the backend's name); 0 when it does not say. */
static int device_of(const gptq_backend *be)
{
    int n = 0;
    return be->name && sscanf(be->name, "cuda:%d", &n) == 1 && n >= 0 ? n : 0;
}

static gptq_status arena_create(const gptq_backend *be, int device, size_t bytes,
                                const char *name, gptqd_device_arena **out)
{
    gptqd_device_arena *a = calloc(1, sizeof *a);
    if (!a)
        return gptq_fail(GPTQ_ERR_NOMEM, "device arena for %s: out of host memory", name);
    a->be = be;
    a->device = device;
    snprintf(a->label, sizeof a->label, "cuda:%d arena of model %s", device, name);
    void *base = NULL;
    gptq_status st = be->ipc_alloc(be, bytes, &base, a->handle);
    if (st) {
        free(a);
        return gptq_fail_context(st, "model %s: %zu bytes of device memory for its weights "
                                 "(unload a model, or run gptqd with --device cpu)", name, bytes);
    }
    a->base = base;
    a->bytes = bytes;
    *out = a;
    return GPTQ_OK;
}

void gptqd_device_arena_destroy(gptqd_device_arena *a)
{
    if (!a)
        return;
    a->be->ipc_free(a->be, a->base);
    free(a);
}

size_t gptqd_device_arena_bytes(const gptqd_device_arena *a) { return a->bytes; }
size_t gptqd_device_arena_used(const gptqd_device_arena *a) { return a->used; }

/* gptq_model_alloc over the arena: never cudaMalloc per tensor, so that the
 * one handle covers every weight. */
static void *arena_alloc_cb(void *ctx, size_t bytes)
{
    gptqd_device_arena *a = ctx;
    size_t start = align_up(a->used);
    if (start > a->bytes || bytes > a->bytes - start) {
        if (!a->refused)
            a->refused = bytes ? bytes : 1;
        return NULL;
    }
    a->used = start + bytes;
    return a->base + start;
}

/* Bytes the arena needs for `m` on `be`: every tensor of its table padded
 * to the alignment (a 16-bit weight matrix `be` does not take is widened to
 * float32 on upload: twice its bytes), plus the slack. A model without a
 * table (streaming) falls back on gptq_model_bytes, twice over and padded
 * per linear. */
static size_t arena_size_for(const gptq_model *m, const gptq_backend *be)
{
    size_t need = 0, n = gptq_model_tensor_count(m);
    for (size_t i = 0; i < n; i++) {
        const gptq_model_tensor *t = gptq_model_tensor_at(m, i);
        size_t len = strlen(t->name);
        int widened = (t->dtype == GPTQ_DT_F16 || t->dtype == GPTQ_DT_BF16) && len > 7 &&
                      !strcmp(t->name + len - 7, ".weight") && !(be->weight_dtypes & 1u << t->dtype);
        need += align_up(t->bytes * (widened ? 2 : 1));
    }
    if (n == 0) {
        const gptq_model_config *cfg = gptq_model_get_config(m);
        /* per layer: each linear's five arrays and bias, up to eight norm
         * vectors; the model's own (embeddings, positions, projections,
         * norms and biases, head) stay under sixteen */
        n = (size_t)cfg->num_hidden_layers * (GPTQ_LIN_COUNT * 6 + 8) + 16;
        need = 2 * gptq_model_bytes(m) + n * DEVICE_ALIGN;
    }
    return need + SLACK_FIXED + n * SLACK_PER_TENSOR;
}

gptq_status gptqd_device_share_model(const gptq_model *host, const gptq_backend *be,
                                     const char *name, gptq_model **dev,
                                     gptqd_device_arena **out)
{
    *dev = NULL;
    *out = NULL;
    if (!be->ipc_alloc || !be->ipc_free)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "model %s: backend %s has no IPC memory", name,
                         be->name);
    size_t bytes = arena_size_for(host, be);
    gptq_status st = GPTQ_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        gptqd_device_arena *a = NULL;
        if ((st = arena_create(be, device_of(be), bytes, name, &a)))
            return st;
        st = gptq_model_to_backend(host, be, arena_alloc_cb, a, 0, dev);
        if (!st) {
            *out = a;
            gptqd_log(LOG_INFO, "model %s: %zu tensors, %.1f MiB in %s (%.1f MiB allocated)",
                      name, gptq_model_tensor_count(*dev), (double)a->used / (1024.0 * 1024.0),
                      a->label, (double)a->bytes / (1024.0 * 1024.0));
            return GPTQ_OK;
        }
        size_t refused = a->refused, used = a->used;
        gptqd_device_arena_destroy(a);
        *dev = NULL;
        if (!refused || attempt == 1)
            break;
        /* The table did not list everything the device copy takes: say so
         * (the slack should be raised) and retry with room for it. */
        gptqd_log(LOG_WARNING, "model %s: device arena of %zu bytes overflowed (%zu used, "
                  "%zu more asked); retrying larger", name, bytes, used, refused);
        bytes = bytes + bytes / 4 + align_up(refused);
    }
    return gptq_fail_context(st, "model %s: weights onto %s", name, be->name);
}

gptq_status gptqd_device_arena_export(const gptqd_device_arena *a, const gptq_model *dev,
                                      gptqd_export *out)
{
    memset(out, 0, sizeof *out);
    gptq_status st = gptqd_export_table(dev, a->base, a->used, a->label, out);
    if (st)
        return st;
    out->kind = "cuda-ipc";
    memcpy(out->cuda_ipc_handle, a->handle, sizeof a->handle);
    out->cuda_device = a->device;
    /* The whole allocation: an importer's mapping spans all of it. */
    out->arena_bytes = a->bytes;
    return GPTQ_OK;
}

gptq_status gptqd_device_model_to_host(const gptqd_device_arena *a, const gptq_model *dev,
                                       const char *config_json, gptq_model **host,
                                       void **buffer)
{
    gptq_status st = GPTQ_OK;
    size_t n = gptq_model_tensor_count(dev);
    gptq_model_tensor *table = calloc(n ? n : 1, sizeof *table);
    unsigned char *buf = aligned_alloc(DEVICE_ALIGN, align_up(a->used ? a->used : 1));
    *host = NULL;
    *buffer = NULL;
    if (!table || !buf) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "%s: %zu bytes of host memory for a host copy", a->label,
                       a->used);
        goto fail;
    }
    /* One download of the arena keeps each tensor's offset, hence its
     * alignment. */
    const gptq_backend *be = gptq_model_backend(dev);
    if ((st = be->download(be, buf, a->base, a->used))) {
        st = gptq_fail_context(st, "%s: download of %zu bytes", a->label, a->used);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const gptq_model_tensor *t = gptq_model_tensor_at(dev, i);
        uintptr_t data = (uintptr_t)t->data, lo = (uintptr_t)a->base;
        if (data < lo || data - lo > a->used || t->bytes > a->used - (data - lo)) {
            st = gptq_fail(GPTQ_ERR_INTERNAL, "tensor '%s' does not lie in the %s", t->name,
                           a->label);
            goto fail;
        }
        table[i] = *t;
        table[i].data = buf + (data - lo);
    }
    if ((st = gptq_model_from_tensors(config_json, table, n, host)))
        goto fail;
    free(table);
    *buffer = buf;
    return GPTQ_OK;
fail:
    free(table);
    free(buf);
    return st;
}
