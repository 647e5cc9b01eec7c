/* kernels/cpu/qgemm.h: linear layers on packed GPTQ v1 weights, on the CPU.
 *
 * y = x · dequant(P)ᵀ computed straight from the checkpoint layout
 * (include/gptq/quant.h: qweight [cols*bits/32, rows], qzeros, fp16 scales,
 * g_idx), without repacking and without materialising W for small batches. */
#ifndef GPTQ_KERNELS_CPU_QGEMM_H
#define GPTQ_KERNELS_CPU_QGEMM_H

#include "gptq/quant.h"

/* y [n, rows] = x [n, cols] · Wᵀ with W[r, c] = scale[g][r]·(code[r, c] − zero[g][r]),
 * g = g_idx[c]; bits 2, 3, 4 or 8, any number of groups, any g_idx (act-order
 * included). Row-major float32; x and y must not overlap; y is overwritten.
 *
 * The caller has validated the packed tensors' shapes against P (qweight
 * holds cols*bits/32 × rows words, qzeros groups × rows*bits/32, scales
 * groups × rows, g_idx cols): this function cannot see array lengths. It
 * checks what it can cheaply on every call: bits, the word-multiple rules
 * of the layout (cols*bits and rows*bits multiples of 32), n ≥ 0, and that
 * every g_idx entry lies in [0, groups) (O(cols)). Errors: GPTQ_ERR_ARG /
 * GPTQ_ERR_FORMAT / GPTQ_ERR_NOMEM with a message.
 *
 * Paths: small batches run the AVX2+FMA+F16C GEMV kernel on the packed words
 * when the CPU has them (runtime check), else a portable scalar kernel; large
 * batches dequantize tiles of rows to float32 and call cblas_sgemm. Threads:
 * the AVX2 GEMV on the kernels' pool (kernels/cpu/pool.h), the portable
 * kernel and the tile dequantization with OpenMP, over output rows. */
gptq_status gptq_cpu_qgemm(const gptq_packed *P, const float *x, float *y, int n);

/* The same, faster and approximate where the int8 kernel takes P
 * (kernels/cpu/qgemm_int8.h: 4 bits, or 8 with VNNI, groups in whole blocks
 * of 32 columns): the activation rounded to int8 per block of 32 columns,
 * integer dot products, at every batch size. Other layers, and every layer
 * when GPTQ_QGEMM_PATH forces a float path, as gptq_cpu_qgemm. */
gptq_status gptq_cpu_qgemm_fast(const gptq_packed *P, const float *x, float *y, int n);

/* Which implementation gptq_cpu_qgemm and _fast use, for tests, benchmarks
 * and users who want every product exact. AUTO picks by layer, batch size
 * and CPU features (int8 only in _fast). The initial value comes from the
 * environment variable GPTQ_QGEMM_PATH (auto, scalar, avx2, sgemm,
 * sgemm-scalar, int8, float: AUTO's float choice in both), read once.
 * Forcing an AVX2 path on a CPU without AVX2+FMA+F16C gives its portable
 * twin, forcing int8 (both functions) on a layer it does not take gives
 * AUTO's float choice (gptq_cpu_qgemm_path_used says which). Process-wide;
 * set it before running kernels, not while they run. */
typedef enum gptq_qgemm_path {
    GPTQ_QGEMM_AUTO = 0,
    GPTQ_QGEMM_SCALAR,  /* portable C on the packed words */
    GPTQ_QGEMM_AVX2,    /* AVX2+FMA on the packed words */
    GPTQ_QGEMM_SGEMM,   /* dequantize row tiles (AVX2), then cblas_sgemm */
    GPTQ_QGEMM_SGEMM_SCALAR, /* the same with portable dequantization */
    GPTQ_QGEMM_INT8,    /* int8 activation, integer dot products (qgemm_int8.h) */
    GPTQ_QGEMM_FLOAT,   /* AUTO among the float paths only */
} gptq_qgemm_path;

void gptq_cpu_qgemm_set_path(gptq_qgemm_path path);
/* The path a call on P with batch n would take now (AUTO resolved), in
 * gptq_cpu_qgemm_fast when `fast`, else in gptq_cpu_qgemm. */
gptq_qgemm_path gptq_cpu_qgemm_path_used(const gptq_packed *P, int n, int fast);
const char *gptq_cpu_qgemm_path_name(gptq_qgemm_path path);

/* Batches of at least this many rows take the dequantize + sgemm path under
 * AUTO. bench/qgemv's crossover table, 11008×4096 4-bit, one Zen 3 thread:
 * packed kernel / dequantize+sgemm = 48/55 ms at 24 rows, 65/65 ms at 32,
 * 138/109 ms at 64. */
#define GPTQ_QGEMM_SGEMM_MIN_N 32

#endif
