/* daemon/registry.c: resident models, references, leases, memory accounting.
 *
 * A forced unload of a model whose arena clients use in place (CUDA IPC:
 * gptqd_engine_pinned_by_leases) cannot free the arena while they hold
 * it, so the slot is kept "retired": its name is free for a new model, it
 * is not listed, its bytes still count (the device still holds them), and
 * it goes when its last lease is unmapped or reclaimed. */
#include "daemon/registry.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"

enum { MAX_MODELS = 256 };

typedef struct lease {
    uint64_t id;
    pid_t pid; /* the verified pid of the process that mapped (gptqd_caller) */
    uid_t uid;
} lease;

struct gptqd_resident {
    int used;
    int loading;              /* reserved; model not there yet */
    int retired;              /* unloaded by force; only its leased arena remains */
    gptqd_model_info info;    /* info.bytes: actual, or the estimate while loading */
    gptqd_engine_model *model;
    int refs;                 /* running jobs using it */
    lease leases[GPTQD_MAX_LEASES];
    int n_leases;
};

struct gptqd_registry {
    pthread_mutex_t lock;
    gptqd_resident slots[MAX_MODELS];
    uint64_t memory_limit, bytes; /* bytes: weights (written under the lock, read atomically) */
    uint64_t kv_bytes;            /* KV caches (atomic) */
    uint64_t next_lease;
};

gptq_status gptqd_registry_create(uint64_t memory_limit, gptqd_registry **out)
{
    gptqd_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return gptq_fail(GPTQ_ERR_NOMEM, "registry: out of memory");
    int rc = pthread_mutex_init(&reg->lock, NULL);
    if (rc) {
        free(reg);
        return gptq_fail(GPTQ_ERR_INTERNAL, "registry mutex: %s", strerror(rc));
    }
    reg->memory_limit = memory_limit;
    reg->next_lease = 1;
    *out = reg;
    return GPTQ_OK;
}

void gptqd_registry_destroy(gptqd_registry *reg)
{
    if (!reg)
        return;
    for (int i = 0; i < MAX_MODELS; i++)
        if (reg->slots[i].used && reg->slots[i].model)
            gptqd_engine_free(reg->slots[i].model);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static gptqd_resident *find_locked(gptqd_registry *reg, const char *name)
{
    for (int i = 0; i < MAX_MODELS; i++)
        if (reg->slots[i].used && !reg->slots[i].retired &&
            strcmp(reg->slots[i].info.name, name) == 0)
            return &reg->slots[i];
    return NULL;
}

/* The resident model `name` once it has finished loading. */
static gptq_status find_ready_locked(gptqd_registry *reg, const char *name, gptqd_resident **out)
{
    gptqd_resident *res = find_locked(reg, name);
    if (!res)
        return gptq_fail(GPTQ_ERR_NOTFOUND, "model '%s' is not resident: load it first", name);
    if (res->loading)
        return gptq_fail(GPTQ_ERR_BUSY, "model '%s' is still loading: poll its job", name);
    *out = res;
    return GPTQ_OK;
}

/* A retired slot whose last lease just went: empties it and returns its
 * model for the caller to free once the lock is released (freeing device
 * memory synchronizes the device: not under the lock). */
/* What memory-limit counts of a model at load: its weights (KV caches are
 * charged as they grow, gptqd_registry_kv_charge). */
static uint64_t counted(const gptqd_model_info *info)
{
    return info->bytes;
}

/* KV cache bytes held by every decode loop (atomic: charged without the
 * lock, from loops a forced unload may be stopping under it). */
static uint64_t kv_in_use(const gptqd_registry *reg)
{
    return __atomic_load_n(&reg->kv_bytes, __ATOMIC_RELAXED);
}

gptq_status gptqd_registry_kv_charge(void *user, int64_t delta)
{
    gptqd_registry *reg = user;
    if (delta <= 0) {
        __atomic_sub_fetch(&reg->kv_bytes, (uint64_t)-delta, __ATOMIC_RELAXED);
        return GPTQ_OK;
    }
    uint64_t weights = __atomic_load_n(&reg->bytes, __ATOMIC_RELAXED);
    uint64_t kv = __atomic_add_fetch(&reg->kv_bytes, (uint64_t)delta, __ATOMIC_RELAXED);
    if (reg->memory_limit && weights + kv > reg->memory_limit) {
        __atomic_sub_fetch(&reg->kv_bytes, (uint64_t)delta, __ATOMIC_RELAXED);
        return gptq_fail(GPTQ_ERR_NOMEM, "KV cache: %.1f MiB more would exceed the memory-limit "
                         "%.1f MiB (weights %.1f MiB, KV caches %.1f MiB in use): wait for other "
                         "generations to end, shorten this one, or raise memory-limit",
                         (double)delta / 1048576.0, (double)reg->memory_limit / 1048576.0,
                         (double)weights / 1048576.0, (double)(kv - (uint64_t)delta) / 1048576.0);
    }
    return GPTQ_OK;
}

static gptqd_engine_model *collect_retired_locked(gptqd_registry *reg, gptqd_resident *res)
{
    if (!res->retired || res->n_leases > 0)
        return NULL;
    gptqd_engine_model *model = res->model;
    gptqd_log(LOG_INFO, "model %s: last lease ended; its arena (%.1f MiB) is freed",
              res->info.name, (double)res->info.bytes / (1024.0 * 1024.0));
    __atomic_sub_fetch(&reg->bytes, counted(&res->info), __ATOMIC_RELAXED);
    memset(res, 0, sizeof *res);
    return model;
}

static double mib(uint64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

gptq_status gptqd_registry_reserve(gptqd_registry *reg, const char *name, uint64_t bytes,
                                   uid_t owner)
{
    gptq_status st = GPTQ_OK;
    pthread_mutex_lock(&reg->lock);
    gptqd_resident *free_slot = NULL;
    for (int i = 0; i < MAX_MODELS && !free_slot; i++)
        if (!reg->slots[i].used)
            free_slot = &reg->slots[i];
    gptqd_resident *old = find_locked(reg, name);
    if (old)
        st = gptq_fail(GPTQ_ERR_EXISTS, "model '%s' %s: unload it or pick another name", name,
                       old->loading ? "is being loaded" : "is already resident");
    else if (!free_slot)
        st = gptq_fail(GPTQ_ERR_LIMIT, "%d models resident: unload one first", MAX_MODELS);
    else if (reg->memory_limit && reg->bytes + kv_in_use(reg) + bytes > reg->memory_limit)
        st = gptq_fail(GPTQ_ERR_NOMEM,
                       "model '%s' needs %.1f MiB of weights, %.1f MiB of the memory-limit "
                       "%.1f MiB are in use (%.1f MiB of it KV caches): unload a model or raise "
                       "memory-limit",
                       name, mib(bytes), mib(reg->bytes + kv_in_use(reg)), mib(reg->memory_limit),
                       mib(kv_in_use(reg)));
    else {
        memset(free_slot, 0, sizeof *free_slot);
        free_slot->used = 1;
        free_slot->loading = 1;
        snprintf(free_slot->info.name, sizeof free_slot->info.name, "%s", name);
        free_slot->info.bytes = bytes;
        free_slot->info.owner_uid = owner;
        __atomic_add_fetch(&reg->bytes, bytes, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&reg->lock);
    return st;
}

gptq_status gptqd_registry_publish(gptqd_registry *reg, const char *name,
                                   gptqd_engine_model *model, const gptqd_model_info *info)
{
    gptq_status st = GPTQ_OK;
    pthread_mutex_lock(&reg->lock);
    gptqd_resident *res = find_locked(reg, name);
    if (!res || !res->loading) {
        st = gptq_fail(GPTQ_ERR_INTERNAL, "model '%s': published without a reservation", name);
    } else {
        uint64_t others = reg->bytes - counted(&res->info);
        if (reg->memory_limit && others + kv_in_use(reg) + counted(info) > reg->memory_limit) {
            st = gptq_fail(GPTQ_ERR_NOMEM,
                           "model '%s' takes %.1f MiB of weights, over the memory-limit %.1f MiB "
                           "with %.1f MiB in use: unload a model or raise memory-limit",
                           name, mib(counted(info)), mib(reg->memory_limit),
                           mib(others + kv_in_use(reg)));
            __atomic_store_n(&reg->bytes, others, __ATOMIC_RELAXED);
            memset(res, 0, sizeof *res);
        } else {
            uid_t owner = res->info.owner_uid;
            res->info = *info;
            res->info.owner_uid = owner;
            snprintf(res->info.name, sizeof res->info.name, "%s", name);
            res->model = model;
            res->loading = 0;
            __atomic_store_n(&reg->bytes, others + counted(info), __ATOMIC_RELAXED);
            model = NULL;
        }
    }
    pthread_mutex_unlock(&reg->lock);
    if (model)
        gptqd_engine_free(model);
    if (!st)
        gptqd_log(LOG_INFO, "model %s resident: %s, %.1f MiB", name, info->format,
                  mib(info->bytes));
    return st;
}

void gptqd_registry_abandon(gptqd_registry *reg, const char *name)
{
    pthread_mutex_lock(&reg->lock);
    gptqd_resident *res = find_locked(reg, name);
    if (res && res->loading) {
        __atomic_sub_fetch(&reg->bytes, counted(&res->info), __ATOMIC_RELAXED);
        memset(res, 0, sizeof *res);
    }
    pthread_mutex_unlock(&reg->lock);
}

gptq_status gptqd_registry_acquire(gptqd_registry *reg, const char *name, gptqd_resident **out)
{
    gptq_status st = GPTQ_OK;
    pthread_mutex_lock(&reg->lock);
    gptqd_resident *res = NULL;
    if ((st = find_ready_locked(reg, name, &res)) == GPTQ_OK) {
        res->refs++;
        *out = res;
    }
    pthread_mutex_unlock(&reg->lock);
    return st;
}

void gptqd_registry_release(gptqd_registry *reg, gptqd_resident *res)
{
    if (!res)
        return;
    pthread_mutex_lock(&reg->lock);
    res->refs--;
    pthread_mutex_unlock(&reg->lock);
}

gptqd_engine_model *gptqd_resident_model(const gptqd_resident *res) { return res->model; }
const gptqd_model_info *gptqd_resident_info(const gptqd_resident *res) { return &res->info; }

gptq_status gptqd_registry_unload(gptqd_registry *reg, const char *name, int force,
                                  const gptqd_caller *caller)
{
    gptq_status st = GPTQ_OK;
    gptqd_engine_model *model = NULL;
    int dropped = 0, retired = 0;
    pthread_mutex_lock(&reg->lock);
    gptqd_resident *res = find_locked(reg, name);
    if (!res)
        st = gptq_fail(GPTQ_ERR_NOTFOUND, "model '%s' is not resident", name);
    else if (!gptqd_auth_may_act_for(caller, res->info.owner_uid))
        st = gptq_fail(GPTQ_ERR_PERMISSION, "model '%s' was loaded by uid %u: only it, root or "
                       "gptqd's own user may unload it", name, (unsigned)res->info.owner_uid);
    else if (res->loading)
        st = gptq_fail(GPTQ_ERR_BUSY, "model '%s' is still loading: cancel its job first", name);
    else if (res->refs > 0)
        st = gptq_fail(GPTQ_ERR_BUSY, "model '%s' is used by %d running job%s: cancel %s, wait, "
                       "or unload --force (which cancels %s)", name, res->refs,
                       res->refs == 1 ? "" : "s", res->refs == 1 ? "it" : "them",
                       res->refs == 1 ? "it" : "them");
    else if (res->n_leases > 0 && !force) {
        char pids[160] = "";
        size_t len = 0;
        for (int i = 0; i < res->n_leases && len < sizeof pids - 16; i++)
            len += (size_t)snprintf(pids + len, sizeof pids - len, "%s%d", i ? ", " : "",
                                    (int)res->leases[i].pid);
        st = gptq_fail(GPTQ_ERR_BUSY, "model '%s' is mapped by %d lease%s (pid %s): unmap "
                       "first or unload with force", name, res->n_leases,
                       res->n_leases == 1 ? "" : "s", pids);
    } else if (res->n_leases > 0 && gptqd_engine_pinned_by_leases(res->model)) {
        /* Forced, and clients run on our very allocation (CUDA IPC): the
         * name goes now, the arena when the last lease does. No job holds
         * a reference (refs == 0), so the rest may go at once. */
        res->retired = 1;
        retired = res->n_leases;
        /* Under the lock, so that an unlease cannot free the model while
         * this takes it apart (it stops the decode loop and frees KV
         * caches: brief, and that thread never takes this lock). */
        gptqd_engine_retire(res->model); /* its decode loop un-charges its KV cache */
    } else {
        /* Forced: clients that mapped the arena keep their own mapping of it
         * (shm stays alive while mapped); only the name and our copy go. */
        dropped = res->n_leases;
        model = res->model;
        __atomic_sub_fetch(&reg->bytes, counted(&res->info), __ATOMIC_RELAXED);
        memset(res, 0, sizeof *res);
    }
    pthread_mutex_unlock(&reg->lock);
    if (retired) {
        gptqd_log(LOG_INFO, "model %s unloaded (forced); its device arena stays until %d "
                  "lease%s end", name, retired, retired == 1 ? "" : "s");
    } else if (model) {
        gptqd_engine_free(model);
        gptqd_log(LOG_INFO, "model %s unloaded%s", name,
                  dropped ? " (forced: leases dropped)" : "");
    }
    return st;
}

gptq_status gptqd_registry_list(gptqd_registry *reg, gptqd_model_info **infos, uint32_t **leases,
                                size_t *n)
{
    *infos = NULL;
    *leases = NULL;
    *n = 0;
    gptqd_model_info *list = malloc(MAX_MODELS * sizeof *list);
    uint32_t *counts = malloc(MAX_MODELS * sizeof *counts);
    if (!list || !counts) {
        free(list), free(counts);
        return gptq_fail(GPTQ_ERR_NOMEM, "list: out of memory");
    }
    size_t count = 0;
    pthread_mutex_lock(&reg->lock);
    for (int i = 0; i < MAX_MODELS; i++) {
        const gptqd_resident *res = &reg->slots[i];
        if (!res->used || res->loading || res->retired)
            continue;
        list[count] = res->info;
        list[count].kv_bytes = gptqd_engine_kv_held(res->model);
        counts[count++] = (uint32_t)res->n_leases;
    }
    pthread_mutex_unlock(&reg->lock);
    *infos = list;
    *leases = counts;
    *n = count;
    return GPTQ_OK;
}

void gptqd_registry_totals(gptqd_registry *reg, uint32_t *models, uint64_t *bytes,
                           uint64_t *limit, uint64_t *host_bytes, uint64_t *device_bytes)
{
    pthread_mutex_lock(&reg->lock);
    uint32_t count = 0;
    uint64_t host = 0, device = 0;
    for (int i = 0; i < MAX_MODELS; i++) {
        const gptqd_resident *res = &reg->slots[i];
        count += res->used && !res->loading && !res->retired;
        if (res->used && !res->loading) { /* retired arenas still hold their memory */
            host += res->info.host_bytes;
            device += res->info.device_bytes;
        }
    }
    *models = count;
    *bytes = reg->bytes + kv_in_use(reg);
    *limit = reg->memory_limit;
    if (host_bytes)
        *host_bytes = host;
    if (device_bytes)
        *device_bytes = device;
    pthread_mutex_unlock(&reg->lock);
}

gptq_status gptqd_registry_lease(gptqd_registry *reg, const char *name,
                                 const gptqd_caller *caller, uint64_t *lease_id,
                                 gptqd_export *export)
{
    const pid_t pid = caller->pid;
    gptq_status st = GPTQ_OK;
    pthread_mutex_lock(&reg->lock);
    gptqd_resident *res = NULL;
    st = find_ready_locked(reg, name, &res);
    if (!st && res->n_leases == GPTQD_MAX_LEASES)
        st = gptq_fail(GPTQ_ERR_LIMIT, "model '%s' has %d leases: unmap some first", name,
                       GPTQD_MAX_LEASES);
    if (!st)
        st = gptqd_engine_export(res->model, export);
    if (!st) {
        uint64_t id = reg->next_lease++;
        res->leases[res->n_leases++] = (lease){.id = id, .pid = pid, .uid = caller->uid};
        *lease_id = id;
    }
    pthread_mutex_unlock(&reg->lock);
    if (!st)
        gptqd_log(LOG_INFO, "model %s: lease %llu for pid %d", name,
                  (unsigned long long)*lease_id, (int)pid);
    return st;
}

/* Removes lease i of res (order does not matter). */
static void drop_lease(gptqd_resident *res, int i)
{
    res->leases[i] = res->leases[--res->n_leases];
}

gptq_status gptqd_registry_unlease(gptqd_registry *reg, uint64_t lease_id,
                                   const gptqd_caller *caller)
{
    pthread_mutex_lock(&reg->lock);
    for (int m = 0; m < MAX_MODELS; m++) {
        gptqd_resident *res = &reg->slots[m];
        if (!res->used)
            continue;
        for (int i = 0; i < res->n_leases; i++)
            if (res->leases[i].id == lease_id) {
                if (caller->pid != res->leases[i].pid &&
                    !gptqd_auth_may_act_for(caller, res->leases[i].uid)) {
                    pthread_mutex_unlock(&reg->lock);
                    return gptq_fail(GPTQ_ERR_PERMISSION, "lease %llu belongs to pid %d of "
                                     "another user", (unsigned long long)lease_id,
                                     (int)res->leases[i].pid);
                }
                drop_lease(res, i);
                gptqd_engine_model *gone = collect_retired_locked(reg, res);
                pthread_mutex_unlock(&reg->lock);
                gptqd_engine_free(gone);
                return GPTQ_OK;
            }
    }
    pthread_mutex_unlock(&reg->lock);
    return gptq_fail(GPTQ_ERR_NOTFOUND, "lease %llu: no such lease (unmapped, or its model "
                     "was unloaded)", (unsigned long long)lease_id);
}

int gptqd_registry_reap_leases(gptqd_registry *reg)
{
    int reaped = 0, n_gone = 0;
    gptqd_engine_model *gone[MAX_MODELS];
    pthread_mutex_lock(&reg->lock);
    for (int m = 0; m < MAX_MODELS; m++) {
        gptqd_resident *res = &reg->slots[m];
        for (int i = 0; res->used && i < res->n_leases;) {
            pid_t pid = res->leases[i].pid;
            /* EPERM means the process exists under another user: keep it. */
            if (kill(pid, 0) < 0 && errno == ESRCH) {
                gptqd_log(LOG_INFO, "model %s: lease %llu reclaimed (pid %d is gone)",
                          res->info.name, (unsigned long long)res->leases[i].id, (int)pid);
                drop_lease(res, i);
                reaped++;
            } else {
                i++;
            }
        }
        gptqd_engine_model *model = res->used ? collect_retired_locked(reg, res) : NULL;
        if (model)
            gone[n_gone++] = model;
    }
    pthread_mutex_unlock(&reg->lock);
    for (int i = 0; i < n_gone; i++)
        gptqd_engine_free(gone[i]);
    return reaped;
}
