/* kernels/cpu/gemm_half.h: linears whose weights stay in 16 bits (IEEE
 * binary16 or bfloat16, the file's precision), on the CPU.
 *
 * y [n, out] = x [n, in] · float(W [out, in])ᵀ, float32 x, y and
 * accumulation. Each weight converts to float32 exactly (both 16-bit
 * formats are subsets of float32), so the result differs from float32
 * weights only by the order of the additions.
 *
 * Paths: small batches (decoding, a few sequences batched) read W once,
 * converting 8 weights at a time in registers (AVX2+FMA+F16C when the CPU
 * has them, runtime check; else portable C), each converted vector used by
 * every row of x; the pool's threads (kernels/cpu/pool.h) own blocks of
 * output rows. Large batches run on the pool as packed float32 panels
 * (AVX-512F), else convert tiles of rows to float32 and call cblas_sgemm
 * (its threads). */
#ifndef GPTQ_KERNELS_CPU_GEMM_HALF_H
#define GPTQ_KERNELS_CPU_GEMM_HALF_H

#include <stdint.h>

/* bf16: W is bfloat16, else binary16. bias [out] or NULL. x and y must not
 * overlap; y is overwritten. */
void gptq_cpu_gemm_half(const float *x, const uint16_t *W, int bf16, const float *bias, float *y,
                        int n, int in, int out);

/* Which implementation runs, for tests and benchmarks. AUTO picks by batch
 * size and CPU features; the initial value comes from GPTQ_GEMM_HALF_PATH
 * (auto, scalar, avx2, sgemm, panels, avx512), read once. Forcing avx2 on a
 * CPU without AVX2+FMA+F16C gives scalar, panels on a CPU without AVX-512F
 * sgemm, avx512 without AVX-512F (or for n > 1) avx2.
 * Process-wide; set it before running kernels. */
typedef enum gptq_gemm_half_path {
    GPTQ_GEMM_HALF_AUTO = 0,
    GPTQ_GEMM_HALF_SCALAR, /* portable C, W read once */
    GPTQ_GEMM_HALF_AVX2,   /* AVX2+FMA+F16C, W read once */
    GPTQ_GEMM_HALF_SGEMM,  /* row tiles to float32, then cblas_sgemm */
    GPTQ_GEMM_HALF_PANELS, /* AVX-512 panels in the pool; sgemm without AVX-512F */
    GPTQ_GEMM_HALF_AVX512, /* one row of x (n = 1): a weight row at a time; else avx2 */
} gptq_gemm_half_path;

void gptq_cpu_gemm_half_set_path(gptq_gemm_half_path path);
/* The path a call with batch n would take now (AUTO resolved). */
gptq_gemm_half_path gptq_cpu_gemm_half_path_used(int n);

/* Batches of at least this many rows take the panels (or sgemm) path under AUTO
 * (bench/kernels' half table measures the crossover). */
#define GPTQ_GEMM_HALF_SGEMM_MIN_N 16

/* out [n, dim] = float(table [vocab, dim] rows ids[i]) (16-bit table). */
void gptq_cpu_embed_half(const uint16_t *table, int bf16, const int32_t *ids, int n, int dim,
                         float *out);

#endif
