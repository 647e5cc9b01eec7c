/* quant/result.c: allocation of gptq_quant_result, shared by GPTQ and RTN. */
#include "result.h"

#include <stdlib.h>
#include <string.h>

gptq_status gptq_quant_result_alloc(gptq_quant_result *r, int rows, int cols, int groups, int bits)
{
    memset(r, 0, sizeof *r);
    r->rows = rows;
    r->cols = cols;
    r->groups = groups;
    r->bits = bits;
    size_t n = (size_t)rows * (size_t)cols;
    size_t ng = (size_t)groups * (size_t)rows;
    r->codes = malloc(n);
    r->Q = malloc(n * sizeof *r->Q);
    r->scales = malloc(ng * sizeof *r->scales);
    r->zeros = malloc(ng * sizeof *r->zeros);
    r->g_idx = malloc((size_t)cols * sizeof *r->g_idx);
    if (!r->codes || !r->Q || !r->scales || !r->zeros || !r->g_idx) {
        gptq_quant_result_free(r);
        return gptq_fail(GPTQ_ERR_NOMEM, "quantized layer [%d, %d]: out of memory", rows, cols);
    }
    return GPTQ_OK;
}

void gptq_quant_result_free(gptq_quant_result *r)
{
    if (!r)
        return;
    free(r->codes);
    free(r->Q);
    free(r->scales);
    free(r->zeros);
    free(r->g_idx);
    memset(r, 0, sizeof *r);
}

gptq_status gptq_check_finite(const char *what, const float *x, int rows, int cols)
{
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) {
        if (!isfinite(x[i]))
            return gptq_fail(GPTQ_ERR_ARG, "%s holds %g at (%zu, %zu): inputs must be finite",
                             what, (double)x[i], i / (size_t)cols, i % (size_t)cols);
    }
    return GPTQ_OK;
}
