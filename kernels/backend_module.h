/* kernels/backend_module.h: the contract between the program and a backend
 * module it dlopen()s (the CUDA module, real or emulated).
 *
 * A module exports exactly one symbol, GPTQ_BACKEND_MODULE_INIT, whose
 * name carries the version of this contract; kernels/backend_select.c looks
 * it up and checks `abi` of the table it is given. A module built against
 * another version has another symbol name and is refused as stale.
 *
 * The module does not link the project's libraries: a second copy of
 * common/ would keep its own thread-local error message that the program
 * never reads. The program lends it what the two must share instead: its
 * error reporting and the parts of quant/ that define a result (the config
 * check with its messages, the result arrays), so the device GPTQ cannot
 * drift from the host's. */
#ifndef GPTQ_KERNELS_BACKEND_MODULE_H
#define GPTQ_KERNELS_BACKEND_MODULE_H

#include <stddef.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPTQ_BACKEND_MODULE_ABI 3
#define GPTQ_BACKEND_MODULE_INIT "gptq_backend_module_init_v3"

typedef struct gptq_backend_host {
    int abi; /* GPTQ_BACKEND_MODULE_ABI of the program */
    gptq_status (*fail)(gptq_status status, const char *fmt, ...);
    gptq_status (*quant_config_check)(const gptq_quant_config *cfg, int cols);
    gptq_status (*quant_result_alloc)(gptq_quant_result *r, int rows, int cols, int groups,
                                      int bits);
    void (*quant_result_free)(gptq_quant_result *r);
} gptq_backend_host;

/* Bring up `device` and give its table: 0, or nonzero with the reason in
 * why ("no CUDA device", "driver too old", ...). Idempotent for the same
 * device; host is kept for the life of the process. */
typedef int (*gptq_backend_module_init_fn)(const gptq_backend_host *host, int device,
                                           const gptq_backend **out, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
#endif
