/* daemon/share_cuda.h: shared weights on a GPU (docs/ARCHITECTURE.md,
 * "The main path", load and map).
 * With the CUDA backend each resident model's serving copy lives in ONE
 * device allocation of its own (be->ipc_alloc), filled by a 256-byte-
 * aligned bump allocator through gptq_model_to_backend. One allocation per
 * model because a CUDA IPC handle names a whole allocation: Map hands
 * clients that handle plus the tensor table as offsets into it, and they
 * open it (cudaIpcOpenMemHandle) and run the model on the very same device
 * memory, so the weights occupy the device once however many processes use
 * them. Freeing the allocation while a client has it open is undefined in
 * CUDA, hence the registry keeps a leased arena past a forced unload. */
#ifndef GPTQD_SHARE_CUDA_H
#define GPTQD_SHARE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/engine.h"
#include "gptq/error.h"
#include "model/llama.h"

typedef struct gptqd_device_arena gptqd_device_arena;

/* Copy the host model `host` onto backend `be` (a CUDA backend) into a new
 * device arena sized for it: *dev is the device model (it borrows the
 * arena), *out the arena; both owned by the caller, who frees *dev before
 * destroying the arena. `host` is not modified. Errors: GPTQ_ERR_UNSUPPORTED
 * (be is not CUDA), GPTQ_ERR_NOMEM (device memory: the message gives the
 * bytes wanted and free), gptq_model_to_backend's errors. */
gptq_status gptqd_device_share_model(const gptq_model *host, const gptq_backend *be,
                                     const char *name, gptq_model **dev,
                                     gptqd_device_arena **out);

/* Frees the device allocation (NULL is fine). No model borrowing it, and no
 * client mapping of it, may remain. */
void gptqd_device_arena_destroy(gptqd_device_arena *arena);

/* Bytes of the allocation (what the device holds for the model), and of it
 * the bytes the weights fill. */
size_t gptqd_device_arena_bytes(const gptqd_device_arena *arena);
size_t gptqd_device_arena_used(const gptqd_device_arena *arena);

/* The Map export of `dev` (which must live in `arena`): kind "cuda-ipc",
 * the handle, the device and offsets; out->tensors is malloc'ed
 * (gptqd_engine_export_free). Errors: GPTQ_ERR_NOMEM, GPTQ_ERR_INTERNAL. */
gptq_status gptqd_device_arena_export(const gptqd_device_arena *arena, const gptq_model *dev,
                                      gptqd_export *out);

/* A host model with the contents of `dev` (which lives in `arena`), for
 * what needs the weights on the host: a checkpoint to write, the source of
 * a calibration. The whole arena is downloaded into one host buffer and
 * the model is built on it (gptq_model_from_tensors with config_json, the
 * text dev was made from); *host borrows *buffer: free the model, then
 * free(*buffer). Errors: GPTQ_ERR_NOMEM (host memory), the download's, the
 * model library's. */
gptq_status gptqd_device_model_to_host(const gptqd_device_arena *arena, const gptq_model *dev,
                                       const char *config_json, gptq_model **host,
                                       void **buffer);

#endif
