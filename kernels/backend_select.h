/* kernels/backend_select.h: choose the compute backend at run time.
 *
 * The CUDA backend is a module (libgptq_cuda.so) that this library
 * dlopen()s, so one binary runs with or without CUDA (docs/ARCHITECTURE.md
 * "Backend selection"). Only the module links CUDA. */
#ifndef GPTQ_KERNELS_BACKEND_SELECT_H
#define GPTQ_KERNELS_BACKEND_SELECT_H

#include <stddef.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pick a backend for `device`:
 *   "cpu"     the CPU backend, always GPTQ_OK (why set to "cpu requested");
 *   "auto"    CUDA device 0 when it answers, else the CPU backend; always
 *             GPTQ_OK, and why says why the CPU was taken ("no CUDA driver
 *             (libcuda.so.1: ...)", "CUDA module not found (tried ...)",
 *             "no CUDA device 0 (this machine has 0)", ...) or, on success,
 *             names the device;
 *   "cuda:N"  CUDA device N or GPTQ_ERR_DEVICE with the reason in why and in
 *             gptq_errmsg() (*out is then the CPU backend, so a caller may
 *             still fall back, saying so).
 * Anything else: GPTQ_ERR_ARG. *out is never NULL on return. The module is
 * found at $GPTQ_CUDA_MODULE, else beside the build tree (baked in at
 * build), else the install libdir (<libdir>/gptqd/libgptq_cuda.so). It stays
 * loaded for the life of the process; one CUDA device per process.
 * GPTQ_CUDA_EMULATE selects the emulated module (libgptq_cuda_emu.so, the
 * same CUDA sources run on the CPU; $GPTQ_CUDA_EMU_MODULE, else the build
 * tree's; never installed): "1" it only, "fallback" when no real device
 * answers, unset or "0" never. Its device calls itself "gptq-emu".
 * Thread-safe. */
gptq_status gptq_backend_select(const char *device, const gptq_backend **out, char *why,
                                size_t why_len);

#ifdef __cplusplus
}
#endif
#endif
