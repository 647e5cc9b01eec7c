/* daemon/tasks.h: the jobs gptqd runs: load, quantize, generate, eval, save.
 * Each start function takes what the job needs (model references, name
 * reservations, resolved paths) before the job exists, so that unknown
 * models or taken names fail at once in the reply; the job releases them
 * when it ends. Paths come as places already checked (daemon/paths.h); a
 * task takes over their roots (the caller's place is left closed), also
 * when it fails to start. */
#ifndef GPTQD_TASKS_H
#define GPTQD_TASKS_H

#include <stdint.h>

#include "daemon/daemon.h"
#include "daemon/engine.h"
#include "gptq/error.h"

/* head: GPTQ_GRID_NONE, or the grid the output matrix is also held on
 * (gptqd_engine_load). */
gptq_status gptqd_task_load(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                            gptqd_place *src, int head, uint64_t *job);

/* p's strings are copied; calib and save_dir may be NULL (p->calib is
 * ignored: calib is the text). */
gptq_status gptqd_task_quantize(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                                const char *new_name, const gptqd_quantize_params *p,
                                gptqd_place *calib, gptqd_place *save_dir, uint64_t *job);

gptq_status gptqd_task_generate(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                                const gptqd_generate_params *p, uint64_t *job);

gptq_status gptqd_task_eval(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                            const char *kl_base, const gptqd_eval_params *p, uint64_t *job);

/* spec: validated with the request; copied. */
gptq_status gptqd_task_save(gptqd_ctx *ctx, const gptqd_caller *caller, const char *name,
                            gptqd_place *dir, const gptqd_save_spec *spec, uint64_t *job);

#endif
