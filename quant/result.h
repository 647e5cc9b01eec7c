/* quant/result.h: helpers shared by gptq.c and rtn.c. */
#ifndef GPTQ_QUANT_RESULT_H
#define GPTQ_QUANT_RESULT_H

#include <math.h>

#include "gptq/quant.h"

/* Allocate every array of *r for a [rows, cols] layer; on failure nothing
 * stays allocated. */
gptq_status gptq_quant_result_alloc(gptq_quant_result *r, int rows, int cols, int groups, int bits);

/* Block grids: allocate r->blocks (zeroed) for ggml type `type` after
 * gptq_quant_result_alloc; on failure r is freed. */
gptq_status gptq_quant_result_alloc_blocks(gptq_quant_result *r, int type);
/* Block grids, once every header is fitted and every code chosen: write
 * the codes into the blocks and set Q to the blocks' dequantization (what
 * a GGUF reader gets). */
gptq_status gptq_quant_result_finish_blocks(gptq_quant_result *r);

/* GPTQ_ERR_ARG naming the first non-finite entry of x [rows, cols]. */
gptq_status gptq_check_finite(const char *what, const float *x, int rows, int cols);

#endif
