/* tests/cudatest.h: what the CUDA test programs share: the device they test
 * (cuda:0, or skip with 77 when none answers) and copies to and from it
 * that end the program on failure (nothing can be checked after one).
 * Header-only, like testutil.h; include it after testutil.h. */
#ifndef GPTQ_TESTS_CUDATEST_H
#define GPTQ_TESTS_CUDATEST_H

#include <stdio.h>
#include <stdlib.h>

#include "kernels/backend.h"
#include "kernels/backend_select.h"

static const gptq_backend *be;

/* Select cuda:0 into be and print the device. Returns 0, 77 (no CUDA
 * device: the caller returns it, a skip) or 1 (the table lacks the device
 * entries: a failure). */
static int cudatest_open(void)
{
    char why[1024];
    if (gptq_backend_select("cuda:0", &be, why, sizeof why) != GPTQ_OK) {
        printf("SKIP: no CUDA device: %s\n", why);
        return 77;
    }
    if (!be->sync || !be->hessian_create || !be->ipc_alloc || !be->gemm_f16) {
        fprintf(stderr, "FAIL: %s lacks device entries of its table\n", be->name);
        return 1;
    }
    printf("%s: %s, sm_%d%d, %d SMs\n", be->name, be->device, be->cc_major, be->cc_minor,
           be->sm_count);
    return 0;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* Device copy of host data. */
static void *to_device(const void *host, size_t bytes)
{
    void *d = be->alloc(be, bytes);
    if (!d || be->upload(be, d, host, bytes) != GPTQ_OK) {
        fprintf(stderr, "FAIL: device copy of %zu bytes: %s\n", bytes, gptq_errmsg());
        exit(1);
    }
    return d;
}

static void from_device(void *host, const void *d, size_t bytes)
{
    if (be->download(be, host, d, bytes) != GPTQ_OK) {
        fprintf(stderr, "FAIL: download: %s\n", gptq_errmsg());
        exit(1);
    }
}

#endif
