/* quant/result.c: allocation of gptq_quant_result, shared by GPTQ and RTN. */
#include "result.h"

#include "quant/ggml_blocks.h"

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
    free(r->blocks);
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

size_t gptq_quant_block_row_bytes(const gptq_quant_result *r)
{
    if (!r->blocks)
        return 0;
    return gptq_ggml_row_bytes(r->gguf_type, r->cols);
}

gptq_status gptq_quant_result_alloc_blocks(gptq_quant_result *r, int type)
{
    r->gguf_type = type;
    r->blocks = calloc((size_t)r->rows, gptq_ggml_row_bytes(type, r->cols));
    if (!r->blocks) {
        gptq_quant_result_free(r);
        return gptq_fail(GPTQ_ERR_NOMEM, "quantized layer [%d, %d]: out of memory", r->rows,
                         r->cols);
    }
    return GPTQ_OK;
}

gptq_status gptq_quant_result_finish_blocks(gptq_quant_result *r)
{
    const int be = gptq_ggml_block_elems(r->gguf_type);
    const size_t rb = gptq_quant_block_row_bytes(r), bb = (size_t)gptq_ggml_block_bytes(r->gguf_type);
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static)
    for (int row = 0; row < r->rows; row++) {
        uint8_t *blk = r->blocks + (size_t)row * rb;
        const uint8_t *codes = r->codes + (size_t)row * r->cols;
        for (int c = 0; c < r->cols; c++)
            gptq_ggml_block_put(r->gguf_type, blk + (size_t)(c / be) * bb, c % be, codes[c]);
        if (gptq_gguf_dequantize(r->gguf_type, blk, r->Q + (size_t)row * r->cols, r->cols))
            bad = 1; /* cannot happen: cols is a multiple of the block */
    }
    return bad ? gptq_fail(GPTQ_ERR_ARG, "%s blocks of [%d, %d] did not convert",
                          gptq_ggml_type_name(r->gguf_type), r->rows, r->cols)
              : GPTQ_OK;
}
