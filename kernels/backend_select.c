/* kernels/backend_select.c: run-time choice between the CPU backend and the
 * dlopen()ed CUDA module (docs/ARCHITECTURE.md "Backend selection"). */
#include "kernels/backend_select.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend_module.h"
#include "quant/result.h"

#ifndef GPTQ_CUDA_MODULE_BUILD_PATH
#define GPTQ_CUDA_MODULE_BUILD_PATH ""
#endif
#ifndef GPTQ_CUDA_MODULE_INSTALL_PATH
#define GPTQ_CUDA_MODULE_INSTALL_PATH ""
#endif
#ifndef GPTQ_CUDA_EMU_MODULE_BUILD_PATH
#define GPTQ_CUDA_EMU_MODULE_BUILD_PATH ""
#endif

/* What the program lends a module (kernels/backend_module.h). */
static const gptq_backend_host host = {
    .abi = GPTQ_BACKEND_MODULE_ABI,
    .fail = gptq_fail,
    .quant_config_check = gptq_quant_config_check,
    .quant_result_alloc = gptq_quant_result_alloc,
    .quant_result_free = gptq_quant_result_free,
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *real_module, *emu_module;   /* loaded modules, kept for the process */
static void *module;                     /* the one whose device answered */
static const gptq_backend *cuda_backend; /* set once a device answered */

/* dlopen the first module path that loads (the emulated module's when
 * `emulated`); why lists what was tried. */
static void *open_module(int emulated, char *why, size_t why_len)
{
    const char *env = getenv(emulated ? "GPTQ_CUDA_EMU_MODULE" : "GPTQ_CUDA_MODULE");
    const char *paths[3] = {env && *env ? env : NULL,
                            emulated ? GPTQ_CUDA_EMU_MODULE_BUILD_PATH : GPTQ_CUDA_MODULE_BUILD_PATH,
                            emulated ? "" : GPTQ_CUDA_MODULE_INSTALL_PATH};
    size_t used = 0;
    used += (size_t)snprintf(why, why_len, "%s not loaded:",
                             emulated ? "emulated CUDA module" : "CUDA module");
    for (int i = 0; i < 3; i++) {
        if (!paths[i] || !*paths[i])
            continue;
        void *h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
        const char *err = dlerror();
        if (used < why_len)
            used += (size_t)snprintf(why + used, why_len - used, " %s (%s);", paths[i],
                                     err ? err : "dlopen failed");
    }
    if (used < why_len)
        snprintf(why + used, why_len - used,
                 emulated ? " build with -Dgpu_emulation=enabled or set GPTQ_CUDA_EMU_MODULE"
                          : " build with -Dcuda=enabled or set GPTQ_CUDA_MODULE to libgptq_cuda.so");
    return NULL;
}

/* GPTQ_CUDA_EMULATE: unset or "0" never emulate; "1" the emulated module
 * only; "fallback" a real device when one answers, else the emulated one. */
enum { EMU_NEVER, EMU_ONLY, EMU_FALLBACK };
static int emulate_mode(void)
{
    const char *e = getenv("GPTQ_CUDA_EMULATE");
    if (!e || !*e || strcmp(e, "0") == 0)
        return EMU_NEVER;
    return strcmp(e, "fallback") == 0 ? EMU_FALLBACK : EMU_ONLY;
}

static int open_table(void *mod, int device, const gptq_backend **out, char *why, size_t why_len);

/* Try CUDA device `device`; 0 with *out set, or -1 with why filled. Called
 * with the lock held. */
static int try_cuda(int device, const gptq_backend **out, char *why, size_t why_len)
{
    if (cuda_backend) {
        gptq_backend_module_init_fn init =
            (gptq_backend_module_init_fn)dlsym(module, GPTQ_BACKEND_MODULE_INIT);
        return init && init(&host, device, out, why, why_len) == 0 ? 0 : -1;
    }
    const int mode = emulate_mode();
    if (mode != EMU_ONLY) {
        if (!real_module) {
            /* Cheap check first: without the driver there is no point
             * loading cuBLAS (0.4 s and 260 MB of it). */
            void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
            if (!driver) {
                const char *err = dlerror();
                snprintf(why, why_len, "no CUDA driver (%s)", err ? err : "libcuda.so.1 not found");
            } else {
                dlclose(driver);
                real_module = open_module(0, why, why_len);
            }
        }
        if (real_module && open_table(real_module, device, out, why, why_len) == 0)
            return 0;
        if (mode == EMU_NEVER)
            return -1;
    }
    /* the emulated module, beside a real one that found no device */
    if (!emu_module && !(emu_module = open_module(1, why, why_len)))
        return -1;
    return open_table(emu_module, device, out, why, why_len);
}

/* Initialise `device` through a loaded module's entry points. */
static int open_table(void *mod, int device, const gptq_backend **out, char *why, size_t why_len)
{
    gptq_backend_module_init_fn init =
        (gptq_backend_module_init_fn)dlsym(mod, GPTQ_BACKEND_MODULE_INIT);
    if (!init) {
        snprintf(why, why_len, "CUDA module lacks %s (built for another version: rebuild it)",
                 GPTQ_BACKEND_MODULE_INIT);
        return -1;
    }
    if (init(&host, device, out, why, why_len) != 0)
        return -1; /* the module stays loaded: a later call may name another device */
    module = mod;
    cuda_backend = *out;
    return 0;
}

/* "cuda:N" -> N, or -1. */
static int parse_cuda(const char *device)
{
    if (strncmp(device, "cuda:", 5) != 0)
        return -1;
    char *end;
    long n = strtol(device + 5, &end, 10);
    return device[5] >= '0' && device[5] <= '9' && *end == 0 && n <= 1024 ? (int)n : -1;
}

gptq_status gptq_backend_select(const char *device, const gptq_backend **out, char *why,
                                size_t why_len)
{
    char reason[1024] = "";
    *out = gptq_backend_cpu();
    if (why && why_len)
        why[0] = 0;
    if (!device || strcmp(device, "cpu") == 0) {
        if (why && why_len)
            snprintf(why, why_len, "cpu requested");
        return GPTQ_OK;
    }
    int n = strcmp(device, "auto") == 0 ? 0 : parse_cuda(device);
    if (n < 0)
        return gptq_fail(GPTQ_ERR_ARG, "device '%s': use auto, cpu or cuda:N", device);
    pthread_mutex_lock(&lock);
    const gptq_backend *be = NULL;
    int rc = try_cuda(n, &be, reason, sizeof reason);
    pthread_mutex_unlock(&lock);
    if (rc == 0) {
        *out = be;
        if (why && why_len)
            snprintf(why, why_len, "%s: %s", be->name, be->device);
        return GPTQ_OK;
    }
    if (why && why_len)
        snprintf(why, why_len, "%s", reason);
    if (strcmp(device, "auto") == 0)
        return GPTQ_OK;
    return gptq_fail(GPTQ_ERR_DEVICE, "device %s unavailable: %s", device, reason);
}
