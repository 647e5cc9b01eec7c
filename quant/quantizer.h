/* quant/quantizer.h: the min-max quantizer of the reference (quant.py's
 * Quantizer, perchannel over output rows), shared by GPTQ and RTN on the
 * host and by the device GPTQ (kernels/cuda/gptq.cu), which compiles the
 * inline rules below as device functions: one definition of how a scale,
 * a zero and a code are chosen. */
#ifndef GPTQ_QUANT_QUANTIZER_H
#define GPTQ_QUANT_QUANTIZER_H

#include <math.h>
#include <stdint.h>

#include "gptq/quant.h"

/* On the device: a host-and-device function; products rounded as written
 * (nvcc would fuse a * b + c into an FMA the x86-64 host does not do); fp16
 * rounding by the CUDA intrinsics. On the host: plain C. */
#if defined(__CUDACC__) || defined(GPTQ_CUDA_EMULATED)
#define GPTQ_QUANT_FN static __host__ __device__ __forceinline__
#if defined(__CUDA_ARCH__) || defined(GPTQ_CUDA_EMULATED)
#define GPTQ_QUANT_MUL(a, b) __fmul_rn((a), (b))
#else /* nvcc's host pass: never called there */
#define GPTQ_QUANT_MUL(a, b) ((a) * (b))
#endif
#define GPTQ_QUANT_ROUND_F16(x) __half2float(__float2half_rn(x))
#else
#include "common/dtype.h"
#define GPTQ_QUANT_FN static inline
#define GPTQ_QUANT_MUL(a, b) ((a) * (b))
#define GPTQ_QUANT_ROUND_F16(x) gptq_round_f16(x)
#endif

typedef struct gptq_quantizer {
    int bits, maxq, sym, mse, v1_zeros, fp16_scales, grid;
} gptq_quantizer;

void gptq_quantizer_init(gptq_quantizer *q, const gptq_quant_config *cfg);

/* fp16 can hold scales in [2^-24, 65504]; outside, clamp (a zero scale would
 * divide by zero, an infinite one would make every weight 0). */
GPTQ_QUANT_FN float gptq_quantizer_store_scale(const gptq_quantizer *q, float scale)
{
    if (!q->fp16_scales)
        return scale;
    float s = GPTQ_QUANT_ROUND_F16(fabsf(scale));
    if (s < 0x1p-24f)
        s = 0x1p-24f;
    if (s > 65504.0f)
        s = 65504.0f;
    return scale < 0.0f ? -s : s; /* a GGUF Q4_0 scale may be negative */
}

/* The reference's rules for a segment's range [xmin, xmax] (xmin <= 0 <=
 * xmax): symmetric makes it ±max(|xmin|, xmax); an all-zero segment gets
 * [-1, 1] (any scale would do; this one is the reference's). */
GPTQ_QUANT_FN void gptq_quantizer_range(const gptq_quantizer *q, float *xmin, float *xmax)
{
    if (q->grid) /* the grid's own rule (gptq_quantizer_params) needs the sign */
        return;
    if (q->sym) {
        *xmax = fabsf(*xmin) > *xmax ? fabsf(*xmin) : *xmax;
        if (*xmin < 0.0f)
            *xmin = -*xmax;
    }
    if (*xmin == 0.0f && *xmax == 0.0f) {
        *xmin = -1.0f;
        *xmax = 1.0f;
    }
}

/* Scale and zero for the range [xmin, xmax] (xmin <= 0 <= xmax). Returns 1
 * when the v1 rule raised the zero. */
GPTQ_QUANT_FN int gptq_quantizer_params(const gptq_quantizer *q, float xmin, float xmax,
                                        float *scale, int32_t *zero)
{
    if (q->grid == GPTQ_GRID_Q4_0) { /* ggml's Q4_0: the extreme value lands on code 0 */
        float m = -xmin > xmax ? xmin : xmax;
        *scale = gptq_quantizer_store_scale(q, m == 0.0f ? 1.0f : m / -8.0f);
        *zero = 8;
        return 0;
    }
    if (q->grid == GPTQ_GRID_Q8_0) { /* ggml's Q8_0: ±max|w| on codes ±127 */
        float m = -xmin > xmax ? -xmin : xmax;
        *scale = gptq_quantizer_store_scale(q, m == 0.0f ? 1.0f : m / 127.0f);
        *zero = 128;
        return 0;
    }
    float s = gptq_quantizer_store_scale(q, (xmax - xmin) / (float)q->maxq);
    if (q->sym) {
        *scale = s;
        *zero = (q->maxq + 1) / 2;
        return 0;
    }
    float z = rintf(-xmin / s);
    if (z < 1.0f && q->v1_zeros) {
        /* zero 0 cannot be written as zero-1. Use zero 1 and widen the scale
         * so the top of the grid, (maxq-1)*scale, still reaches xmax; the
         * bottom, -scale, still reaches xmin > -scale/2. */
        float wide = xmax / (float)(q->maxq - 1);
        *scale = gptq_quantizer_store_scale(q, wide > s ? wide : s);
        *zero = 1;
        return 1;
    }
    *scale = s;
    *zero = (int32_t)z;
    return 0;
}

/* Parameters of one row segment w[0..n): scale and zero such that
 * scale * (clamp(round(w/scale) + zero, 0, maxq) - zero) approximates w.
 * Returns 1 if v1_zeros had to raise an asymmetric zero from 0 to 1, else 0. */
int gptq_quantizer_find(const gptq_quantizer *q, const float *w, int n, float *scale,
                        int32_t *zero);

/* Quantize one value: the code in [0, maxq] and, through *deq, its
 * dequantized value. round() is half-to-even like torch.round. */
GPTQ_QUANT_FN int gptq_quantize_value(float x, float scale, int32_t zero, int maxq, float *deq)
{
    float q = rintf(x / scale) + (float)zero;
    q = q < 0.0f ? 0.0f : (q > (float)maxq ? (float)maxq : q);
    *deq = GPTQ_QUANT_MUL(scale, q - (float)zero);
    return (int)q;
}

#endif
