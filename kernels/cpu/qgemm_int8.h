/* kernels/cpu/qgemm_int8.h: packed 4- and 8-bit linears multiplied with
 * integer dot products, the activation rounded to int8 per block of 32
 * input columns (as llama.cpp's Q8_0 rounds it).
 *
 * y[i][r] = Σ_g s[g][r] · (Σ_{b in g} d[i][b] · Σ_{c in b} q[r][c]·a[i][c]
 *                          − z[g][r] · Σ_{b in g} d[i][b] · Σ_{c in b} a[i][c])
 * with d[i][b] = max|x[i][c in b]| / 127 and a = round(x / d): the exact
 * product of the dequantized weights with the rounded activation, summed in
 * int32 per block and in float32 across blocks. Against x itself the error
 * is the activation's rounding, at most d/2 per element (relative 1/254 of
 * the block's largest value). Used by kernels/cpu/qgemm.c. */
#ifndef GPTQ_KERNELS_CPU_QGEMM_INT8_H
#define GPTQ_KERNELS_CPU_QGEMM_INT8_H

#include "gptq/quant.h"

/* 1 when gptq_cpu_qgemm_int8 takes P on this CPU: 4 bits (or 8 bits where
 * the CPU has VNNI: u8 codes up to 255 overflow AVX2's 16-bit pair sums),
 * rows a multiple of 8, every block of 32 columns inside one group (g_idx
 * of the kernels' sorted layout, groups of a multiple of 32 columns or one
 * group), and AVX2 + FMA + F16C present. */
int gptq_cpu_qgemm_int8_fits(const gptq_packed *P);

/* y [n, rows] = round8(x [n, cols]) · dequant(P)ᵀ for a P that fits (the
 * caller has asked gptq_cpu_qgemm_int8_fits; only its O(1) conditions are
 * checked again, GPTQ_ERR_ARG); GPTQ_ERR_NOMEM when the rounded
 * activation's buffers cannot be had. */
gptq_status gptq_cpu_qgemm_int8(const gptq_packed *P, const float *x, float *y, int n);

/* The dot-product instruction the kernel runs: "avx512-vnni", "avx-vnni",
 * "avx2" (maddubs), or "none". */
const char *gptq_cpu_qgemm_int8_isa(void);

#endif
