/* daemon/share.h: shared weights on the CPU (docs/ARCHITECTURE.md "The main path", map). Each
 * resident model's weights live in one POSIX shared-memory arena
 * ("/gptqd-<pid>-<model>-<n>", mode 0640, group of the socket when one is
 * configured) filled by a 64-byte-aligned bump allocator; Map hands clients
 * the arena's name and the tensor table (offsets into it), and they map it
 * read-only and run the model on those bytes. */
#ifndef GPTQD_SHARE_H
#define GPTQD_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/engine.h"
#include "gptq/error.h"
#include "model/llama.h"

typedef struct gptqd_arena gptqd_arena;

/* A new arena of `bytes` (rounded up to pages) for model `name`. *out owned
 * (gptqd_arena_destroy: unmaps and unlinks; clients keep their mappings). */
gptq_status gptqd_arena_create(const char *name, size_t bytes, const char *group,
                               gptqd_arena **out);
void gptqd_arena_destroy(gptqd_arena *arena);

/* 64-byte-aligned block of `bytes` from the arena; NULL when it is full. */
void *gptqd_arena_alloc(gptqd_arena *arena, size_t bytes);
size_t gptqd_arena_used(const gptqd_arena *arena);
const char *gptqd_arena_name(const gptqd_arena *arena);

/* Move *model's weights into a new arena: *model is replaced by a model whose
 * weight buffers all lie in the arena (the old one is freed). On failure
 * (shm_open, ftruncate, memory) the model is left as it was. */
gptq_status gptqd_share_model(gptq_model **model, const char *name, const char *group,
                              gptqd_arena **out);

/* Unlinks arenas of earlier gptqd processes of this user that no longer
 * run (left by a crash: shm objects outlive their creator). Start-up. */
void gptqd_share_reap_stale(void);

/* Unlinks this process's arenas (their memory stays mapped): a stop that
 * cannot wait for its jobs leaves nothing in /dev/shm. */
void gptqd_share_unlink_own(void);

/* The tensor table of `model` (which must live in `arena`) for a Map reply;
 * out->tensors is malloc'ed (gptqd_engine_export_free). */
gptq_status gptqd_arena_export(const gptqd_arena *arena, const gptq_model *model,
                               gptqd_export *out);

/* The tensor table of `model` as offsets from `base`, every tensor checked
 * to lie in [base, base + used) (addresses only compared: base may be
 * device memory); arena_label names the arena in the error. Fills
 * out->tensors (malloc'ed) and out->n_tensors only. Errors: GPTQ_ERR_NOMEM,
 * GPTQ_ERR_INTERNAL (a tensor outside the arena). */
gptq_status gptqd_export_table(const gptq_model *model, const void *base, size_t used,
                               const char *arena_label, gptqd_export *out);

#endif
