/* client/map.c: shared weights. Map a resident model's arena into this
 * process and build a model that runs here on those very bytes: a POSIX
 * shm arena (CPU daemon) mapped read-only, or a CUDA IPC allocation (GPU
 * daemon) opened on the same device. The reply is untrusted input: it is
 * checked whole (check_reply) before anything is mapped or opened. */
#include "client/internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/wire_check.h"
#include "common/dtype.h"

#ifdef GPTQ_CLIENT_HAVE_MODEL
#include "kernels/backend_select.h"
#include "model/llama.h"
#endif

/* The wire's kinds of arena. */
#define KIND_SHM "shm"
#define KIND_CUDA_IPC "cuda-ipc"
enum { IPC_HANDLE_BYTES = 64, CUDA_DEVICE_MAX = 1024 };

struct gptq_mapping {
    uint64_t lease;
    char kind[16];   /* KIND_SHM or KIND_CUDA_IPC */
    int cuda_device; /* -1 for shm */
    void *base;      /* shm: PROT_READ, MAP_SHARED; cuda-ipc: device base from ipc_open */
    size_t bytes;
#ifdef GPTQ_CLIENT_HAVE_MODEL
    const gptq_backend *backend;      /* cuda-ipc: this process's backend on cuda_device */
#endif
    size_t n_tensors;
    gptq_mapped_tensor *tensors;
    char *config_json;
    char *tokenizer_path;
    struct gptq_model *model; /* built on demand, NULL until then */
};

static void mapping_free(gptq_mapping *m)
{
    if (!m)
        return;
#ifdef GPTQ_CLIENT_HAVE_MODEL
    gptq_model_free(m->model); /* before the weights it runs on go */
    if (m->backend && m->backend->ipc_close && m->base) {
        /* A failed close leaves nothing to do here: the mapping ends with
         * this process at the latest. */
        (void)m->backend->ipc_close(m->backend, m->base);
        m->base = NULL;
    }
#endif
    if (m->base && m->base != MAP_FAILED)
        munmap(m->base, m->bytes);
    for (size_t i = 0; i < m->n_tensors; i++) {
        free((char *)m->tensors[i].name);
        free((char *)m->tensors[i].dtype);
    }
    free(m->tensors);
    free(m->config_json);
    free(m->tokenizer_path);
    free(m);
}

/* Every entry must lie inside the arena and agree with its dtype and
 * shape: a bad table would otherwise become reads past the mapping. */
static gptq_status check_tensor(const Gptqd__TensorEntry *t, uint64_t arena_bytes)
{
    gptq_dtype dt;
    if (gptq_dtype_parse(t->dtype, &dt) != 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "mapped tensor '%s': unknown dtype '%s'", t->name,
                         t->dtype);
    if (t->n_shape < 1 || t->n_shape > 4)
        return gptq_fail(GPTQ_ERR_FORMAT, "mapped tensor '%s': %zu dims, expected 1 to 4",
                         t->name, t->n_shape);
    uint64_t elems = 1;
    for (size_t d = 0; d < t->n_shape; d++) {
        if (t->shape[d] < 0 || (t->shape[d] > 0 && elems > UINT64_MAX / (uint64_t)t->shape[d]))
            return gptq_fail(GPTQ_ERR_FORMAT, "mapped tensor '%s': bad dim %zu = %lld",
                             t->name, d, (long long)t->shape[d]);
        elems *= (uint64_t)t->shape[d];
    }
    if (elems > UINT64_MAX / gptq_dtype_size(dt) || elems * gptq_dtype_size(dt) != t->bytes)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "mapped tensor '%s': %llu bytes, its %s shape needs %llu", t->name,
                         (unsigned long long)t->bytes, t->dtype,
                         (unsigned long long)(elems * gptq_dtype_size(dt)));
    if (t->offset > arena_bytes || t->bytes > arena_bytes - t->offset)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "mapped tensor '%s': %llu bytes at offset %llu lie outside the "
                         "%llu-byte arena", t->name, (unsigned long long)t->bytes,
                         (unsigned long long)t->offset, (unsigned long long)arena_bytes);
    /* Both arenas start page- or 256-byte aligned, so an aligned offset is
     * an aligned address (the model requires element alignment). */
    if (t->offset % gptq_dtype_size(dt) != 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "mapped tensor '%s': offset %llu is not a multiple "
                         "of its %zu-byte elements", t->name, (unsigned long long)t->offset,
                         gptq_dtype_size(dt));
    return GPTQ_OK;
}

/* The whole Map reply for model `name`, before anything is mapped or any
 * device call is made: a known kind with what that kind needs (a shm name;
 * a 64-byte handle and a device number), an arena size that fits this
 * process, and every tensor inside it. Pure: touches nothing but the
 * thread's error message. */
static gptq_status check_reply(const Gptqd__MapReply *w, const char *name)
{
    const char *kind = w->kind ? w->kind : "";
    int shm = strcmp(kind, KIND_SHM) == 0, ipc = strcmp(kind, KIND_CUDA_IPC) == 0;
    if (!shm && !ipc)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "model '%s' is shared as '%s': this client maps "
                         "'" KIND_SHM "' and '" KIND_CUDA_IPC "' arenas (a newer libgptqclient?)",
                         name, kind);
    if (w->arena_bytes == 0 || w->arena_bytes > SIZE_MAX)
        return gptq_fail(GPTQ_ERR_FORMAT, "model '%s': arena of %llu bytes", name,
                         (unsigned long long)w->arena_bytes);
    if (shm && (!w->shm_name || !w->shm_name[0]))
        return gptq_fail(GPTQ_ERR_FORMAT, "model '%s': a shm arena without a name", name);
    if (ipc && w->cuda_ipc_handle.len != IPC_HANDLE_BYTES)
        return gptq_fail(GPTQ_ERR_FORMAT, "model '%s': CUDA IPC handle of %zu bytes, expected %d",
                         name, w->cuda_ipc_handle.len, IPC_HANDLE_BYTES);
    if (ipc && (w->cuda_device < 0 || w->cuda_device > CUDA_DEVICE_MAX))
        return gptq_fail(GPTQ_ERR_FORMAT, "model '%s': CUDA device %d", name,
                         (int)w->cuda_device);
    for (size_t i = 0; i < w->n_tensors; i++) {
        gptq_status st = check_tensor(w->tensors[i], w->arena_bytes);
        if (st)
            return gptq_fail_context(st, "model '%s'", name);
    }
    return GPTQ_OK;
}

/* Map a "shm" arena read-only; fills m->base (m->bytes is set). */
static gptq_status open_shm_arena(gptq_mapping *m, const Gptqd__MapReply *w, const char *name)
{
    gptq_status st = GPTQ_OK;
    struct stat sb;
    int fd = -1;
    SYS_TRY(fd = shm_open(w->shm_name, O_RDONLY | O_CLOEXEC, 0), GPTQ_ERR_IO,
            "shm_open('%s') for model '%s'", w->shm_name, name);
    SYS_TRY(fstat(fd, &sb), GPTQ_ERR_IO, "fstat of shm '%s'", w->shm_name);
    if ((uint64_t)sb.st_size < w->arena_bytes) {
        st = gptq_fail(GPTQ_ERR_FORMAT, "shm '%s' holds %lld bytes, the reply says %llu",
                       w->shm_name, (long long)sb.st_size, (unsigned long long)w->arena_bytes);
        goto fail;
    }
    m->base = mmap(NULL, m->bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (m->base == MAP_FAILED) {
        m->base = NULL;
        SYS_TRY(-1, GPTQ_ERR_IO, "mmap of shm '%s' (%zu bytes)", w->shm_name, m->bytes);
    }
fail:
    if (fd >= 0)
        close(fd);
    return st;
}

/* Open a "cuda-ipc" arena: this process's CUDA backend on the daemon's
 * device, then the handle. Fills m->backend, m->base. */
static gptq_status open_cuda_arena(gptq_mapping *m, const Gptqd__MapReply *w, const char *name)
{
#ifdef GPTQ_CLIENT_HAVE_MODEL
    char device[32], why[512];
    snprintf(device, sizeof device, "cuda:%d", (int)w->cuda_device);
    const gptq_backend *be = NULL;
    if (gptq_backend_select(device, &be, why, sizeof why) != GPTQ_OK)
        return gptq_fail(GPTQ_ERR_DEVICE, "model '%s' is shared in GPU memory of %s (CUDA IPC), "
                         "and this process cannot use that device: %s", name, device, why);
    if (!be->ipc_open || !be->ipc_close)
        return gptq_fail(GPTQ_ERR_DEVICE, "model '%s': backend %s cannot open IPC memory", name,
                         be->name);
    void *base = NULL;
    gptq_status st = be->ipc_open(be, w->cuda_ipc_handle.data, &base);
    if (st)
        return gptq_fail_context(st, "model '%s': opening its CUDA IPC arena on %s (the daemon "
                                 "must run on this machine and device, as another process)",
                                 name, device);
    m->backend = be;
    m->base = base;
    return GPTQ_OK;
#else
    (void)m;
    (void)w;
    return gptq_fail(GPTQ_ERR_UNSUPPORTED, "model '%s' is shared in GPU memory (CUDA IPC): this "
                     "libgptqclient was built without the model runtime that opens it", name);
#endif
}

static gptq_status send_unmap(gptq_client *c, uint64_t lease)
{
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__UnmapRequest body = GPTQD__UNMAP_REQUEST__INIT;
    Gptqd__Response *r = NULL;
    body.lease = lease;
    req.body_case = GPTQD__REQUEST__BODY_UNMAP;
    req.unmap = &body;
    gptq_status st = gptq_client_rpc_(c, &req, GPTQD__RESPONSE__BODY_DONE, 0, &r);
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return st;
}

gptq_status gptq_map(gptq_client *c, const char *name, gptq_mapping **out)
{
    gptq_status st = GPTQ_OK;
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__MapRequest body = GPTQD__MAP_REQUEST__INIT;
    Gptqd__Response *r = NULL;
    gptq_mapping *m = NULL;
    int leased = 0;
    uint64_t lease = 0;
    *out = NULL;
    body.name = (char *)(name ? name : "");
    req.body_case = GPTQD__REQUEST__BODY_MAP;
    req.map = &body;
    TRY(gptq_client_rpc_(c, &req, GPTQD__RESPONSE__BODY_MAP, 0, &r));
    const Gptqd__MapReply *w = r->map;
    lease = w->lease;
    leased = 1;
    TRY(check_reply(w, name));

    MEM_TRY(m = calloc(1, sizeof *m), "mapping");
    m->lease = lease;
    m->cuda_device = -1;
    snprintf(m->kind, sizeof m->kind, "%s", w->kind);
    MEM_TRY(m->config_json = gptq_client_strdup_(w->config_json), "mapping");
    MEM_TRY(m->tokenizer_path = gptq_client_strdup_(w->tokenizer_path), "mapping");

    m->bytes = (size_t)w->arena_bytes;
    if (strcmp(w->kind, KIND_CUDA_IPC) == 0) {
        m->cuda_device = (int)w->cuda_device;
        TRY(open_cuda_arena(m, w, name));
    } else {
        TRY(open_shm_arena(m, w, name));
    }

    if (w->n_tensors)
        MEM_TRY(m->tensors = calloc(w->n_tensors, sizeof *m->tensors), "tensor table");
    for (size_t i = 0; i < w->n_tensors; i++) {
        const Gptqd__TensorEntry *t = w->tensors[i];
        gptq_mapped_tensor *mt = &m->tensors[i];
        m->n_tensors = i + 1;
        MEM_TRY(mt->name = gptq_client_strdup_(t->name), "tensor table");
        MEM_TRY(mt->dtype = gptq_client_strdup_(t->dtype), "tensor table");
        mt->ndim = (int)t->n_shape;
        for (size_t d = 0; d < t->n_shape; d++)
            mt->shape[d] = t->shape[d];
        mt->data = (const char *)m->base + t->offset;
        mt->bytes = (size_t)t->bytes;
    }
    gptqd__response__free_unpacked(r, NULL);
    *out = m;
    return gptq_client_finish_(c, GPTQ_OK);
fail:
    mapping_free(m);
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    if (leased) {
        /* Give the lease back; the original failure is what we report. */
        char keep[CLIENT_ERRMSG_BYTES];
        snprintf(keep, sizeof keep, "%s", gptq_errmsg());
        send_unmap(c, lease);
        gptq_fail(st, "%s", keep);
    }
    return gptq_client_finish_(c, st);
}

gptq_status gptq_unmap(gptq_client *c, gptq_mapping *m)
{
    if (!m)
        return GPTQ_OK;
    uint64_t lease = m->lease;
    /* Unmap first: once the daemon drops the lease it may free the arena. */
    mapping_free(m);
    return gptq_client_finish_(c, send_unmap(c, lease));
}

const gptq_mapped_tensor *gptq_mapping_tensors(const gptq_mapping *m, size_t *n)
{
    *n = m->n_tensors;
    return m->tensors;
}

const char *gptq_mapping_config_json(const gptq_mapping *m) { return m->config_json; }
const char *gptq_mapping_tokenizer_path(const gptq_mapping *m) { return m->tokenizer_path; }
uint64_t gptq_mapping_lease(const gptq_mapping *m) { return m->lease; }
size_t gptq_mapping_bytes(const gptq_mapping *m) { return m->bytes; }
const char *gptq_mapping_kind(const gptq_mapping *m) { return m->kind; }
int gptq_mapping_cuda_device(const gptq_mapping *m) { return m->cuda_device; }

gptq_status gptq_mapping_model(gptq_mapping *m, struct gptq_model **out)
{
    *out = NULL;
    if (m->model) {
        *out = m->model;
        return GPTQ_OK;
    }
#ifdef GPTQ_CLIENT_HAVE_MODEL
    gptq_status st = GPTQ_OK;
    gptq_model_tensor *table = NULL;
    if (m->n_tensors)
        MEM_TRY(table = calloc(m->n_tensors, sizeof *table), "tensor table");
    for (size_t i = 0; i < m->n_tensors; i++) {
        const gptq_mapped_tensor *mt = &m->tensors[i];
        gptq_dtype dt;
        gptq_dtype_parse(mt->dtype, &dt); /* checked when mapped */
        table[i].name = mt->name;
        table[i].dtype = dt;
        table[i].ndim = mt->ndim;
        memcpy(table[i].shape, mt->shape, sizeof table[i].shape);
        table[i].data = mt->data; /* the model only reads: the pages are PROT_READ */
        table[i].bytes = mt->bytes;
    }
    if (m->backend) /* device pointers into the opened IPC arena */
        TRY(gptq_model_from_tensors_on(m->backend, m->config_json, table, m->n_tensors,
                                       &m->model));
    else
        TRY(gptq_model_from_tensors(m->config_json, table, m->n_tensors, &m->model));
    *out = m->model;
fail:
    free(table);
    return st;
#else
    /* LEAD: model/llama.h has no gptq_model_from_tensors yet; once it does,
     * client/meson.build finds it and this branch is compiled out. */
    return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                     "this libgptqclient was built without a model runtime "
                     "(gptq_model_from_tensors): cannot run mapped weights in-process");
#endif
}
