/* kernels/cpu/backend_cpu.c: the CPU backend's table (kernels/backend.h).
 *
 * Host memory is the device memory here, so alloc is aligned malloc and the
 * copies are memcpy. The compute entries live in ops.c (dense, elementwise)
 * and qgemm.c (packed GPTQ linears); GPTQ itself is quant/'s. Each entry
 * here only drops the table argument, which the CPU has no use for. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/cpu/gemm_half.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/qgemm.h"

static void *cpu_alloc(const gptq_backend *be, size_t bytes)
{
    (void)be;
    /* aligned_alloc wants a multiple of the alignment */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void cpu_free(const gptq_backend *be, void *ptr)
{
    (void)be;
    free(ptr);
}

static gptq_status cpu_copy(const gptq_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes)
        memmove(dst, src, bytes);
    return GPTQ_OK;
}

/* MemAvailable of /proc/meminfo (what can be had without swapping), else
 * sysinfo's free + buffers. Reading the file costs ~7 us; gptqd answers
 * Status with it, so a reading is reused for 100 ms. */
static gptq_status cpu_mem_info(const gptq_backend *be, size_t *free_bytes, size_t *total_bytes)
{
    (void)be;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static struct timespec taken;
    static size_t last_free, last_total;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&lock);
    const double age = (double)(now.tv_sec - taken.tv_sec) + 1e-9 * (now.tv_nsec - taken.tv_nsec);
    if (last_total == 0 || age > 0.1) {
        struct sysinfo si;
        if (sysinfo(&si) != 0) {
            pthread_mutex_unlock(&lock);
            return gptq_fail(GPTQ_ERR_IO, "sysinfo failed");
        }
        last_total = (size_t)si.totalram * si.mem_unit;
        last_free = (size_t)(si.freeram + si.bufferram) * si.mem_unit;
        FILE *f = fopen("/proc/meminfo", "re");
        char line[128];
        unsigned long long kb;
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                last_free = (size_t)kb * 1024;
                break;
            }
        if (f)
            fclose(f);
        taken = now;
    }
    *free_bytes = last_free;
    *total_bytes = last_total;
    pthread_mutex_unlock(&lock);
    return GPTQ_OK;
}

static void cpu_gemm(const gptq_backend *be, const float *x, const void *W, gptq_dtype wdt,
                     const float *bias, float *y, int n, int in, int out)
{
    (void)be;
    if (wdt == GPTQ_DT_F32)
        gptq_cpu_gemm_f32(x, W, bias, y, n, in, out);
    else
        gptq_cpu_gemm_half(x, W, wdt == GPTQ_DT_BF16, bias, y, n, in, out);
}

/* The kernels run on the sorted columns: x is gathered through perm first
 * (n·cols floats, small next to the weights it saves re-reading per group).
 * fast: the int8 kernel where the layer fits it. */
static gptq_status qgemm_with(const gptq_linear *L, const float *x, const float *bias, float *y,
                              int n, int fast)
{
    const gptq_packed *P = &L->P;
    float *xs = NULL;
    if (L->perm && n > 0) {
        if (!(xs = malloc((size_t)n * P->cols * sizeof *xs)))
            return gptq_fail(GPTQ_ERR_NOMEM, "qgemm: cannot allocate %d x %d inputs", n, P->cols);
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * P->cols;
            float *si = xs + (size_t)i * P->cols;
            for (int j = 0; j < P->cols; j++)
                si[j] = xi[L->perm[j]];
        }
        x = xs;
    }
    gptq_status st = fast ? gptq_cpu_qgemm_fast(P, x, y, n) : gptq_cpu_qgemm(P, x, y, n);
    free(xs);
    if (st != GPTQ_OK || !bias)
        return st;
    for (int i = 0; i < n; i++)
        gptq_cpu_add(y + (size_t)i * P->rows, bias, (size_t)P->rows);
    return GPTQ_OK;
}

static gptq_status cpu_qgemm(const gptq_backend *be, const gptq_linear *L, const float *x,
                             const float *bias, float *y, int n)
{
    (void)be;
    return qgemm_with(L, x, bias, y, n, 0);
}

static gptq_status cpu_qgemm_fast(const gptq_backend *be, const gptq_linear *L, const float *x,
                                  const float *bias, float *y, int n)
{
    (void)be;
    return qgemm_with(L, x, bias, y, n, 1);
}

static void cpu_f32_to_f16(const gptq_backend *be, const float *x, uint16_t *y, size_t n)
{
    (void)be;
    gptq_cpu_f32_to_f16(x, y, n);
}

static void cpu_rmsnorm(const gptq_backend *be, const float *x, const float *weight, float *y,
                        int n, int dim, float eps, float offset)
{
    (void)be;
    gptq_cpu_rmsnorm(x, weight, y, n, dim, eps, offset);
}

static void cpu_layernorm(const gptq_backend *be, const float *x, const float *weight,
                          const float *bias, float *y, int n, int dim, float eps)
{
    (void)be;
    gptq_cpu_layernorm(x, weight, bias, y, n, dim, eps);
}

static void cpu_rope(const gptq_backend *be, float *x, int n, int n_heads, int head_dim,
                     const int32_t *pos, const float *inv_freq)
{
    (void)be;
    gptq_cpu_rope(x, n, n_heads, head_dim, pos, inv_freq);
}

static gptq_status cpu_attention(const gptq_backend *be, const gptq_attention_args *a)
{
    (void)be;
    return gptq_cpu_attention(a);
}

static void cpu_silu_mul(const gptq_backend *be, const float *gate, const float *up, float *out,
                         size_t n)
{
    (void)be;
    gptq_cpu_silu_mul(gate, up, out, n);
}

static void cpu_activate(const gptq_backend *be, gptq_act act, float *x, size_t n)
{
    (void)be;
    gptq_cpu_activate(act, x, n);
}

static void cpu_mul(const gptq_backend *be, float *y, const float *x, size_t n)
{
    (void)be;
    gptq_cpu_mul(y, x, n);
}

static void cpu_scale(const gptq_backend *be, float *x, float s, size_t n)
{
    (void)be;
    gptq_cpu_scale(x, s, n);
}

static void cpu_add(const gptq_backend *be, float *y, const float *x, size_t n)
{
    (void)be;
    gptq_cpu_add(y, x, n);
}

static void cpu_embed(const gptq_backend *be, const void *table, gptq_dtype tdt,
                      const int32_t *ids, int n, int dim, float *out)
{
    (void)be;
    if (tdt == GPTQ_DT_F32)
        gptq_cpu_embed(table, ids, n, dim, out);
    else
        gptq_cpu_embed_half(table, tdt == GPTQ_DT_BF16, ids, n, dim, out);
}

static void cpu_softmax(const gptq_backend *be, float *x, int n, int cols)
{
    (void)be;
    gptq_cpu_softmax(x, n, cols);
}

static void cpu_log_softmax(const gptq_backend *be, float *x, int n, int cols)
{
    (void)be;
    gptq_cpu_log_softmax(x, n, cols);
}

/* ---- GPTQ: quant/'s functions; the handle is a gptq_hessian ---------------- */

static gptq_status cpu_hessian_create(const gptq_backend *be, int cols, gptq_backend_hessian **out)
{
    (void)be;
    return gptq_hessian_create(cols, (gptq_hessian **)out);
}

static void cpu_hessian_free(const gptq_backend *be, gptq_backend_hessian *h)
{
    (void)be;
    gptq_hessian_destroy((gptq_hessian *)h);
}

static gptq_status cpu_hessian_add(const gptq_backend *be, gptq_backend_hessian *h, const float *X,
                                   int64_t tokens, int n_samples)
{
    (void)be;
    return gptq_hessian_add((gptq_hessian *)h, X, tokens, n_samples);
}

static gptq_status cpu_hessian_get(const gptq_backend *be, const gptq_backend_hessian *h, float *H)
{
    (void)be;
    gptq_hessian_get((const gptq_hessian *)h, H);
    return GPTQ_OK;
}

static int64_t cpu_hessian_samples(const gptq_backend *be, const gptq_backend_hessian *h)
{
    (void)be;
    return gptq_hessian_samples((const gptq_hessian *)h);
}

static gptq_status cpu_quantize_layer(const gptq_backend *be, const float *W, const float *H,
                                      int rows, int cols, const gptq_quant_config *cfg,
                                      gptq_quant_result *out, float *Q)
{
    (void)be;
    gptq_status st = gptq_quantize_layer(W, H, rows, cols, cfg, out);
    if (st == GPTQ_OK && Q)
        memcpy(Q, out->Q, (size_t)rows * cols * sizeof *Q);
    return st;
}

static const gptq_backend cpu_backend = {
    .name = "cpu",
    .device = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .mem_info = cpu_mem_info,
    .gemm = cpu_gemm,
    .weight_dtypes = 1u << GPTQ_DT_F32 | 1u << GPTQ_DT_F16 | 1u << GPTQ_DT_BF16,
    .f32_to_f16 = cpu_f32_to_f16,
    .qgemm = cpu_qgemm,
    .qgemm_fast = cpu_qgemm_fast,
    .rmsnorm = cpu_rmsnorm,
    .layernorm = cpu_layernorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .kv_dtypes = 1u << GPTQ_DT_F32 | 1u << GPTQ_DT_F16,
    .silu_mul = cpu_silu_mul,
    .activate = cpu_activate,
    .mul = cpu_mul,
    .scale = cpu_scale,
    .add = cpu_add,
    .embed = cpu_embed,
    .softmax = cpu_softmax,
    .log_softmax = cpu_log_softmax,
    .hessian_create = cpu_hessian_create,
    .hessian_free = cpu_hessian_free,
    .hessian_add = cpu_hessian_add,
    .hessian_get = cpu_hessian_get,
    .hessian_samples = cpu_hessian_samples,
    .quantize_layer = cpu_quantize_layer,
};

const gptq_backend *gptq_backend_cpu(void)
{
    return &cpu_backend;
}
