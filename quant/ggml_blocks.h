/* quant/ggml_blocks.h: ggml's tensor types (the ggml_type numbers GGUF
 * files use) and their blocks: names, sizes, conversion to float32 exactly
 * as ggml does it, and -- for the block types GPTQ quantizes onto (the
 * grids of gptq/quant.h) -- a block's scales chosen from its weights and
 * its codes written in ggml's bit layout. One room for the layouts, so
 * that what gptqd writes is read back by the same definitions. */
#ifndef GPTQ_QUANT_GGML_BLOCKS_H
#define GPTQ_QUANT_GGML_BLOCKS_H

#include <stddef.h>
#include <math.h>
#include <stdint.h>

#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tensor element types (ggml_type), numbered as in the file. Only the
 * ones named here are known; gptq_ggml_type_name() names the rest
 * "type N". */
typedef enum gptq_ggml_type {
    GPTQ_GGML_F32 = 0,
    GPTQ_GGML_F16 = 1,
    GPTQ_GGML_Q4_0 = 2,
    GPTQ_GGML_Q4_1 = 3,
    GPTQ_GGML_Q5_0 = 6,
    GPTQ_GGML_Q5_1 = 7,
    GPTQ_GGML_Q8_0 = 8,
    GPTQ_GGML_Q8_1 = 9,
    GPTQ_GGML_Q2_K = 10,
    GPTQ_GGML_Q3_K = 11,
    GPTQ_GGML_Q4_K = 12,
    GPTQ_GGML_Q5_K = 13,
    GPTQ_GGML_Q6_K = 14,
    GPTQ_GGML_Q8_K = 15,
    GPTQ_GGML_IQ2_XXS = 16,
    GPTQ_GGML_IQ2_XS = 17,
    GPTQ_GGML_IQ3_XXS = 18,
    GPTQ_GGML_IQ1_S = 19,
    GPTQ_GGML_IQ4_NL = 20,
    GPTQ_GGML_IQ3_S = 21,
    GPTQ_GGML_IQ2_S = 22,
    GPTQ_GGML_IQ4_XS = 23,
    GPTQ_GGML_I8 = 24,
    GPTQ_GGML_I16 = 25,
    GPTQ_GGML_I32 = 26,
    GPTQ_GGML_I64 = 27,
    GPTQ_GGML_F64 = 28,
    GPTQ_GGML_IQ1_M = 29,
    GPTQ_GGML_BF16 = 30,
    GPTQ_GGML_TQ1_0 = 34,
    GPTQ_GGML_TQ2_0 = 35,
    GPTQ_GGML_MXFP4 = 39,
    GPTQ_GGML_TYPE_LIMIT = 64 /* type numbers at or above this are refused when opening */
} gptq_ggml_type;

/* "F32", "Q4_K", ... as llama.cpp spells them; "type N" for unknown N. The
 * pointer is to static storage (unknown types: thread-local, valid until the
 * next call on the thread). */
const char *gptq_ggml_type_name(int type);

/* Elements per block and bytes per block of a type, both 0 when the type
 * is unknown. F32: 1 and 4; Q4_0: 32 and 18; Q4_K: 256 and 144. */
int gptq_ggml_block_elems(int type);
int gptq_ggml_block_bytes(int type);
/* Bytes of a row of `cols` elements of a type (cols a multiple of its
 * block elements); 0 for an unknown type. */
size_t gptq_ggml_row_bytes(int type, int64_t cols);

/* 1 when gptq_gguf_dequantize converts this type: F32, F16, BF16, Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. */
int gptq_ggml_can_dequantize(int type);

/* Convert n elements of `type` at raw (n a multiple of the type's block
 * elements) to float32 out[n], exactly as ggml's dequantize_row_* does
 * (fp16 scales widened exactly, the same operation order, so results are
 * bit-identical to ggml's and to gguf-py's numpy dequantizers).
 * Errors: GPTQ_ERR_UNSUPPORTED (type), GPTQ_ERR_ARG (n not a multiple). */
gptq_status gptq_gguf_dequantize(int type, const void *raw, float *out, int64_t n);

/* ---- the block types as grids GPTQ quantizes onto ------------------------------
 * Q4_1, Q5_0, Q5_1 (blocks of 32) and Q2_K..Q6_K (super-blocks of 256):
 * each block splits into sub-groups of `sub` inputs (Q4_1/Q5_x: the block
 * itself; Q4_K/Q5_K: 32; Q2_K/Q3_K/Q6_K: 16), and a sub-group's weights are
 * w = a * code - b with integer codes in [0, maxq] and the sub-group's own
 * step a and offset b, which the block's header stores (fp16 scales, and
 * for the K types 4- or 6-bit sub-scales relative to them). Choosing a
 * block's header is gptq_ggml_block_fit; GPTQ then picks every code with
 * gptq_ggml_grid_code (error feedback between the choices) and writes it
 * with gptq_ggml_block_put; the weights the file holds are
 * gptq_gguf_dequantize of the finished blocks. */

/* 1 for the types above (not Q4_0/Q8_0, which the packed GPTQ layout
 * holds; not the IQ types). */
int gptq_ggml_is_block_grid(int type);
/* Inputs per sub-group, and the largest code (2^bits - 1); 0 for a type
 * that is not a block grid. */
int gptq_ggml_grid_sub(int type);
int gptq_ggml_grid_maxq(int type);

/* Choose block `blk`'s header (its bytes beyond the codes, which are left
 * zero) for the weights x[block_elems] and write each sub-group's step and
 * offset to a[k], b[k] (k < block_elems / sub). imp: per-input importance
 * (GPTQ's diag(H)) or NULL (weights' own magnitudes, as llama.cpp's
 * quantizers without an importance matrix): the scales minimise the
 * importance-weighted squared rounding error over a grid search of ranges,
 * as llama.cpp's make_qx_quants / make_qkx2_quants do. */
void gptq_ggml_block_fit(int type, const float *x, const float *imp, uint8_t *blk, float *a,
                         float *b);
/* The K types (sub-groups smaller than the block): choose sub-group k's
 * sub-scale (and min) again, under the block's fitted fp16 super-scales,
 * for its weights x[sub] as they are now (GPTQ's error feedback has moved
 * them since the block was fitted), with importance imp[sub] or NULL;
 * writes them into blk's header and the step and offset to *a, *b. Other
 * types: nothing. */
void gptq_ggml_block_refit(int type, uint8_t *blk, int k, const float *x, const float *imp,
                           float *a, float *b);
/* Write code `code` (in [0, maxq]) of input e (< block_elems) into blk. */
void gptq_ggml_block_put(int type, uint8_t *blk, int e, int code);

/* Round a row x[n] (n a multiple of the block) to nearest on a block
 * grid's blocks at dst: each block fitted without importance, each weight
 * on its sub-group's nearest value (the embedding and output matrices,
 * which GPTQ does not quantize). */
void gptq_ggml_quantize_row(int type, const float *x, int64_t n, uint8_t *dst);

/* The code of w on a sub-group's grid (nearest, halves to even, clamped to
 * [0, maxq]); *deq is its value a * code - b. A sub-group whose step is 0
 * (its sub-scale rounded to 0) holds only -b: code `zero`
 * (gptq_ggml_grid_zero). */
static inline int gptq_ggml_grid_code(float w, float a, float b, int maxq, int zero, float *deq)
{
    float q = a != 0.0f ? rintf((w + b) / a) : (float)zero;
    q = q < 0.0f ? 0.0f : (q > (float)maxq ? (float)maxq : q);
    *deq = a * q - b;
    return (int)q;
}
/* The code of the value 0 (the zero point) of a symmetric type; 0 for the
 * types with a minimum. */
int gptq_ggml_grid_zero(int type);

#ifdef __cplusplus
}
#endif
#endif
