/* quant/rtn.c: round to nearest, per group, with the GPTQ quantizer: the
 * baseline every quality figure is compared against. */
#include <string.h>

#include "quantizer.h"
#include "result.h"

gptq_status gptq_rtn_layer(const float *W, int rows, int cols, const gptq_quant_config *cfg,
                           gptq_quant_result *out)
{
    gptq_status st = gptq_quant_config_check(cfg, cols);
    if (st)
        return st;
    if (rows <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "layer has %d output rows", rows);
    if ((st = gptq_check_finite("W", W, rows, cols)))
        return st;
    int groups = gptq_quant_groups(cfg, cols);
    int gs = cfg->group_size == -1 ? cols : cfg->group_size;
    if ((st = gptq_quant_result_alloc(out, rows, cols, groups, cfg->bits)))
        return st;
    gptq_quantizer q;
    gptq_quantizer_init(&q, cfg);
    for (int c = 0; c < cols; c++)
        out->g_idx[c] = c / gs;

    int raised = 0;
#pragma omp parallel for reduction(+ : raised) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *w = W + (size_t)r * cols;
        for (int g = 0; g < groups; g++) {
            int c0 = g * gs, c1 = c0 + gs < cols ? c0 + gs : cols;
            float scale;
            int32_t zero;
            raised += gptq_quantizer_find(&q, w + c0, c1 - c0, &scale, &zero);
            out->scales[(size_t)g * rows + r] = scale;
            out->zeros[(size_t)g * rows + r] = zero;
            for (int c = c0; c < c1; c++) {
                size_t i = (size_t)r * cols + c;
                out->codes[i] = (uint8_t)gptq_quantize_value(w[c], scale, zero, q.maxq, &out->Q[i]);
            }
        }
    }
    out->zeros_raised = raised;
    return GPTQ_OK;
}
