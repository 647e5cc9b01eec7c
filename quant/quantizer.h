/* quant/quantizer.h: the min-max quantizer of the reference (quant.py's
 * Quantizer, perchannel over output rows), shared by GPTQ and RTN. */
#ifndef GPTQ_QUANT_QUANTIZER_H
#define GPTQ_QUANT_QUANTIZER_H

#include <math.h>
#include <stdint.h>

#include "gptq/quant.h"

typedef struct gptq_quantizer {
    int bits, maxq, sym, mse, v1_zeros, fp16_scales;
} gptq_quantizer;

void gptq_quantizer_init(gptq_quantizer *q, const gptq_quant_config *cfg);

/* Parameters of one row segment w[0..n): scale and zero such that
 * scale * (clamp(round(w/scale) + zero, 0, maxq) - zero) approximates w.
 * Returns 1 if v1_zeros had to raise an asymmetric zero from 0 to 1, else 0. */
int gptq_quantizer_find(const gptq_quantizer *q, const float *w, int n, float *scale,
                        int32_t *zero);

/* Quantize one value: the code in [0, maxq] and, through *deq, its
 * dequantized value. round() is half-to-even like torch.round. */
static inline int gptq_quantize_value(float x, float scale, int32_t zero, int maxq, float *deq)
{
    float q = rintf(x / scale) + (float)zero;
    q = q < 0.0f ? 0.0f : (q > (float)maxq ? (float)maxq : q);
    *deq = scale * (q - (float)zero);
    return (int)q;
}

#endif
