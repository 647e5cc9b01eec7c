/* quant/quantizer.c: scale/zero of the reference's min-max quantizer
 * (IST-DASLab/gptq quant.py, Quantizer.find_params with weight=True), with
 * two additions that keep what we store honest: scales rounded to fp16 when
 * they are chosen, and asymmetric zeros kept >= 1 so that the v1 checkpoint
 * format, which stores zero-1 in `bits` bits, can hold them. */
#include "quantizer.h"

#include <float.h>


void gptq_quantizer_init(gptq_quantizer *q, const gptq_quant_config *cfg)
{
    q->bits = cfg->bits;
    q->maxq = (1 << cfg->bits) - 1;
    q->sym = cfg->sym;
    q->mse = cfg->mse;
    q->v1_zeros = cfg->v1_zeros;
    q->fp16_scales = cfg->fp16_scales;
    q->grid = cfg->grid;
}

int gptq_quantizer_find(const gptq_quantizer *q, const float *w, int n, float *scale,
                        int32_t *zero)
{
    float xmin = 0.0f, xmax = 0.0f;
    for (int i = 0; i < n; i++) {
        xmin = w[i] < xmin ? w[i] : xmin;
        xmax = w[i] > xmax ? w[i] : xmax;
    }
    gptq_quantizer_range(q, &xmin, &xmax);
    int raised = gptq_quantizer_params(q, xmin, xmax, scale, zero);
    if (!q->mse)
        return raised;

    /* The reference's grid search: shrink the range by p = 1 - i/100 for
     * i < 80 and keep the one with the least sum |w - deq|^2.4. */
    double best = DBL_MAX;
    for (int i = 0; i < 80; i++) {
        float p = 1.0f - (float)i / 100.0f;
        float s1;
        int32_t z1;
        int r1 = gptq_quantizer_params(q, p * xmin, p * xmax, &s1, &z1);
        if (q->sym)
            z1 = *zero;
        double err = 0.0;
        for (int k = 0; k < n; k++) {
            float deq;
            gptq_quantize_value(w[k], s1, z1, q->maxq, &deq);
            err += pow(fabs((double)deq - (double)w[k]), 2.4);
        }
        if (err < best) {
            best = err;
            *scale = s1;
            *zero = z1;
            raised = r1;
        }
    }
    return raised;
}
