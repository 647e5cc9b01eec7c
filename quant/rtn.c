/* quant/rtn.c: round to nearest, per group, with the GPTQ quantizer: the
 * baseline every quality figure is compared against. */
#include <string.h>

#include "quant/ggml_blocks.h"
#include "quantizer.h"
#include "result.h"

/* A block grid: each block's header fitted on its weights (no importance:
 * llama.cpp's weighting without an imatrix), every weight rounded on its
 * sub-group's grid. */
static gptq_status rtn_blocks(const float *W, const gptq_quant_config *cfg, gptq_quant_result *out)
{
    const int type = gptq_grid_ggml_type(cfg->grid), rows = out->rows, cols = out->cols;
    const int be = gptq_ggml_block_elems(type), sub = gptq_ggml_grid_sub(type);
    const int maxq = gptq_ggml_grid_maxq(type), zero = gptq_ggml_grid_zero(type);
    gptq_status st = gptq_quant_result_alloc_blocks(out, type);
    if (st)
        return st;
    const size_t rb = gptq_quant_block_row_bytes(out), bb = (size_t)gptq_ggml_block_bytes(type);
    memset(out->zeros, 0, (size_t)out->groups * rows * sizeof *out->zeros);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *w = W + (size_t)r * cols;
        for (int c0 = 0; c0 < cols; c0 += be) {
            float a[16], b[16];
            gptq_ggml_block_fit(type, w + c0, NULL, out->blocks + (size_t)r * rb + (size_t)(c0 / be) * bb,
                                a, b);
            for (int c = c0; c < c0 + be; c++) {
                const int k = (c - c0) / sub;
                size_t i = (size_t)r * cols + c;
                out->scales[(size_t)(c / sub) * rows + r] = a[k];
                out->codes[i] = (uint8_t)gptq_ggml_grid_code(w[c], a[k], b[k], maxq, zero, &out->Q[i]);
            }
        }
    }
    if ((st = gptq_quant_result_finish_blocks(out)))
        gptq_quant_result_free(out);
    return st;
}

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
    if (gptq_grid_is_block(cfg->grid))
        return rtn_blocks(W, cfg, out);

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
