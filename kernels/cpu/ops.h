/* kernels/cpu/ops.h: the CPU backend's dense and elementwise operations.
 *
 * Each function is the CPU entry of the same name in kernels/backend.h and
 * has the semantics documented there; they are also callable directly (the
 * reference twins that CUDA kernels are tested against). */
#ifndef GPTQ_KERNELS_CPU_OPS_H
#define GPTQ_KERNELS_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

void gptq_cpu_gemm_f32(const float *x, const float *W, const float *bias, float *y, int n, int in,
                       int out);
void gptq_cpu_rmsnorm(const float *x, const float *weight, float *y, int n, int dim, float eps,
                      float offset);
void gptq_cpu_layernorm(const float *x, const float *weight, const float *bias, float *y, int n,
                        int dim, float eps);
void gptq_cpu_rope(float *x, int n, int n_heads, int head_dim, const int32_t *pos,
                   const float *inv_freq);
/* Causal GQA attention: on the kernels' pool with AVX2 (kernels/cpu/
 * attention.c), else the portable loops below (one query row at a time for
 * short inputs, two sgemms per head and block of rows for long ones). */
gptq_status gptq_cpu_attention(const gptq_attention_args *a);
gptq_status gptq_cpu_attention_portable(const gptq_attention_args *a);
void gptq_cpu_silu_mul(const float *gate, const float *up, float *out, size_t n);
void gptq_cpu_activate(gptq_act act, float *x, size_t n);
/* ALiBi (BLOOM): s [n] += slope * (float)(k0 + j), the scores of keys k0..k0+n-1
 * (gptq_attention_args.alibi). */
static inline void gptq_cpu_alibi(float *s, int n, int k0, float slope)
{
    for (int j = 0; j < n; j++)
        s[j] += slope * (float)(k0 + j);
}
/* Gemma 2's soft-capping of scores s [n] (gptq_attention_args.softcap). */
void gptq_cpu_softcap(float *s, int n, float cap);
/* What attention does to a row of scaled scores of keys k0.. before the
 * mask: ALiBi, then soft-capping, each when the arguments ask for it. */
static inline void gptq_cpu_score_bias(const gptq_attention_args *a, int h, float *s, int n,
                                       int k0)
{
    if (a->alibi)
        gptq_cpu_alibi(s, n, k0, a->alibi[h]);
    if (a->softcap > 0)
        gptq_cpu_softcap(s, n, a->softcap);
}
void gptq_cpu_add(float *y, const float *x, size_t n);
void gptq_cpu_mul(float *y, const float *x, size_t n);
void gptq_cpu_scale(float *x, float s, size_t n);
/* y [n] = binary16(x [n]), nearest even (F16C where present): KV rows. */
void gptq_cpu_f32_to_f16(const float *x, uint16_t *y, size_t n);
void gptq_cpu_embed(const float *table, const int32_t *ids, int n, int dim, float *out);
void gptq_cpu_softmax(float *x, int n, int cols);
void gptq_cpu_log_softmax(float *x, int n, int cols);

#endif
