/* kernels/cpu/backend_cpu.c: the CPU backend's table (kernels/backend.h).
 *
 * Host memory is the device memory here, so alloc is aligned malloc and the
 * copies are memcpy. The compute entries live in ops.c (dense, elementwise)
 * and qgemm.c (packed GPTQ linears). */
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/qgemm.h"

static void *cpu_alloc(size_t bytes)
{
    /* aligned_alloc wants a multiple of the alignment */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void cpu_free(void *ptr)
{
    free(ptr);
}

static gptq_status cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes)
        memmove(dst, src, bytes);
    return GPTQ_OK;
}

static gptq_status cpu_qgemm(const gptq_packed *P, const float *x, const float *bias, float *y,
                             int n)
{
    gptq_status st = gptq_cpu_qgemm(P, x, y, n);
    if (st != GPTQ_OK || !bias)
        return st;
    for (int i = 0; i < n; i++)
        gptq_cpu_add(y + (size_t)i * P->rows, bias, (size_t)P->rows);
    return GPTQ_OK;
}

static const gptq_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .gemm_f32 = gptq_cpu_gemm_f32,
    .qgemm = cpu_qgemm,
    .rmsnorm = gptq_cpu_rmsnorm,
    .rope = gptq_cpu_rope,
    .attention = gptq_cpu_attention,
    .silu_mul = gptq_cpu_silu_mul,
    .add = gptq_cpu_add,
    .embed = gptq_cpu_embed,
    .softmax = gptq_cpu_softmax,
    .log_softmax = gptq_cpu_log_softmax,
};

const gptq_backend *gptq_backend_cpu(void)
{
    return &cpu_backend;
}
