/* daemon/registry.h: the resident models, by name, with memory accounting,
 * a reference count per running job that uses a model, and leases (Map) per
 * client pid. A name is reserved while its model loads or quantizes, so two
 * loads cannot race for it. All functions are thread-safe. */
#ifndef GPTQD_REGISTRY_H
#define GPTQD_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/auth.h"
#include "daemon/engine.h"
#include "gptq/error.h"

typedef struct gptqd_registry gptqd_registry;
typedef struct gptqd_resident gptqd_resident; /* a held reference */

enum { GPTQD_MAX_LEASES = 256 }; /* per model */

/* memory_limit: bytes of resident weights in the memory that serves them
 * (device memory on the CUDA backend, host memory on the CPU), 0 for none. */
gptq_status gptqd_registry_create(uint64_t memory_limit, gptqd_registry **out);
/* Frees every model (no job may run any more). */
void gptqd_registry_destroy(gptqd_registry *reg);

/* Reserve `name` for a model of about `bytes` (counted against the limit
 * until publish or abandon). Errors: GPTQ_ERR_EXISTS, GPTQ_ERR_NOMEM (the
 * limit; the message gives the figures), GPTQ_ERR_LIMIT (too many models). */
gptq_status gptqd_registry_reserve(gptqd_registry *reg, const char *name, uint64_t bytes,
                                   uid_t owner);
/* A gptq_kv_budget_fn (user: the registry) for every decode loop: KV cache
 * memory counts against memory-limit as it is allocated (GPTQ_ERR_NOMEM
 * past it, with the figures) and stops counting when freed. Lock-free. */
gptq_status gptqd_registry_kv_charge(void *user, int64_t delta);

/* Fill a reservation with a loaded model; the registry owns `model` from
 * here on, even on failure (GPTQ_ERR_NOMEM when the real size is over). */
gptq_status gptqd_registry_publish(gptqd_registry *reg, const char *name,
                                   gptqd_engine_model *model, const gptqd_model_info *info);
void gptqd_registry_abandon(gptqd_registry *reg, const char *name);

/* A reference for a job: the model cannot be unloaded until released.
 * Errors: GPTQ_ERR_NOTFOUND, GPTQ_ERR_BUSY (still loading). */
gptq_status gptqd_registry_acquire(gptqd_registry *reg, const char *name, gptqd_resident **out);
void gptqd_registry_release(gptqd_registry *reg, gptqd_resident *res);
gptqd_engine_model *gptqd_resident_model(const gptqd_resident *res);
const gptqd_model_info *gptqd_resident_info(const gptqd_resident *res);

/* Errors: GPTQ_ERR_NOTFOUND, GPTQ_ERR_PERMISSION (the model's owner, the
 * uid that loaded it, is not the caller: gptqd_auth_may_act_for),
 * GPTQ_ERR_BUSY (used by running jobs; leased and not forced — the message
 * names the pids). */
gptq_status gptqd_registry_unload(gptqd_registry *reg, const char *name, int force,
                                  const gptqd_caller *caller);

/* A malloc'ed snapshot (free()) of every resident model, leases counted. */
gptq_status gptqd_registry_list(gptqd_registry *reg, gptqd_model_info **infos, uint32_t **leases,
                                size_t *n);
/* models: listed (resident) models; bytes: what memory-limit counts
 * (resident weights in the backend's memory, loads in flight at their
 * estimate, arenas kept for leases after a forced unload); host_bytes /
 * device_bytes (may be NULL): published weights by the memory holding them. */
void gptqd_registry_totals(gptqd_registry *reg, uint32_t *models, uint64_t *bytes,
                           uint64_t *limit, uint64_t *host_bytes, uint64_t *device_bytes);

/* Map: a lease of `name` for the calling process (its verified pid), and
 * the export to send. Errors: GPTQ_ERR_NOTFOUND, GPTQ_ERR_LIMIT, what
 * gptqd_engine_export says. */
gptq_status gptqd_registry_lease(gptqd_registry *reg, const char *name,
                                 const gptqd_caller *caller, uint64_t *lease,
                                 gptqd_export *export);
/* Unmap (the last lease of a force-unloaded CUDA model frees its arena):
 * the lease's own process, or a caller that may act for its uid.
 * Errors: GPTQ_ERR_NOTFOUND, GPTQ_ERR_PERMISSION. */
gptq_status gptqd_registry_unlease(gptqd_registry *reg, uint64_t lease,
                                   const gptqd_caller *caller);
/* Drops the leases of processes that no longer exist (kill(pid, 0));
 * returns how many. Main loop, about once a second. */
int gptqd_registry_reap_leases(gptqd_registry *reg);

#endif
