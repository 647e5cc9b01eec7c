/* gptq/quant.h: GPTQ (Frantar et al., ICLR 2023) as a library.
 *
 * One linear layer at a time: accumulate the Hessian H = 2/n Σ x xᵀ of the
 * layer's calibration inputs, quantize W [out, in] column by column with
 * error feedback through the upper Cholesky factor of H⁻¹ (lazy block
 * updates), or round to nearest (RTN, the baseline). The results pack into
 * the ecosystem's GPTQ checkpoint layout (checkpoint_format "gptq", v1).
 *
 * Matrices are row-major float32. W is [rows = out features, cols = in
 * features]; H is [cols, cols]. Errors: a gptq_status, message in
 * gptq_errmsg(). */
#ifndef GPTQ_QUANT_H
#define GPTQ_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Hessian accumulation ------------------------------------------------ */

/* Running mean of 2 X Xᵀ over calibration samples, as the reference does it:
 * H <- H n/(n+b) + (2/(n+b)) Xᵀ X, where b counts the *samples* (sequences)
 * in the batch, not its tokens. Each batch's Xᵀ X is one float32 SYRK; the
 * sum across batches is kept in float64 so that thousands of batches do not
 * drift (see quant/hessian.c). */
typedef struct gptq_hessian gptq_hessian;

/* Create an empty accumulator for `cols` input features. Caller destroys. */
gptq_status gptq_hessian_create(int cols, gptq_hessian **out);
void gptq_hessian_destroy(gptq_hessian *h);
/* Add a batch X [tokens, cols] that holds `n_samples` samples (b above). */
gptq_status gptq_hessian_add(gptq_hessian *h, const float *X, int64_t tokens, int n_samples);
/* Copy the current H as float32 [cols, cols] (full symmetric) into `H`. */
void gptq_hessian_get(const gptq_hessian *h, float *H);
int gptq_hessian_cols(const gptq_hessian *h);
int64_t gptq_hessian_samples(const gptq_hessian *h);

/* ---- Quantizer configuration --------------------------------------------- */

/* The bounds and defaults of bits, group_size, damp and block_size are in
 * one table, quant/config.c's, which gptqd and gptqctl check them with too
 * (as --bits, --group-size, --damp, --block-size). */
typedef struct gptq_quant_config {
    int bits;          /* bits per code */
    int group_size;    /* -1: one group per output row (per channel); else inputs per group */
    int sym;           /* symmetric: zero fixed at 2^(bits-1) */
    int act_order;     /* quantize columns by descending diag(H) ("desc_act") */
    int static_groups; /* group parameters from the un-updated W, up front */
    float damp;        /* lambda: H += lambda * mean(diag H) * I */
    int block_size;    /* lazy-batch block size B */
    int mse;           /* grid-search the clipping range (norm 2.4, grid 100) */
    int v1_zeros;      /* asymmetric zero >= 1, so that zero-1 fits in `bits`
                          bits as the v1 checkpoint stores it; default 1 */
    int fp16_scales;   /* round scales to fp16 when computed, so the error
                          feedback sees the values a checkpoint stores; default 1 */
    int grid;          /* a gptq_grid: GPTQ_GRID_NONE, or the GGUF block type
                          whose grid the codes must lie on (below) */
} gptq_quant_config;

/* GGUF block types GPTQ can quantize onto (llama.cpp's ggml-quants), so
 * that a GGUF file holds exactly the codes GPTQ chose. Two kinds:
 *   Q4_0, Q8_0: symmetric groups of 32 inputs, one fp16 scale d per group,
 *     w = d * (code - zero), which the GPTQ checkpoint layout and the packed
 *     kernels hold as they are:
 *     Q4_0: 4 bits, zero 8; d = m / -8 with m the group's value of largest
 *           magnitude (its sign kept: that value lands on code 0 exactly).
 *     Q8_0: 8 bits, zero 128 (GGUF stores code-128 as int8); d = max|w| / 127.
 *   Q4_1, Q5_0, Q5_1 (blocks of 32) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
 *     (super-blocks of 256 with 4- or 6-bit sub-scales): the "block grids"
 *     (quant/ggml_blocks.h), whose scales and minimums no GPTQ checkpoint
 *     can hold. Each block's scales are chosen when GPTQ reaches it
 *     (importance-weighted by diag(H), searched as llama.cpp's quantizers
 *     do), then GPTQ picks the codes with error feedback; the result carries
 *     the GGUF blocks themselves (gptq_quant_result.blocks).
 * Groups are fixed in the original column order (GGUF has no g_idx), so
 * act-order needs static groups.
 * Two recipes name a grid per tensor as llama.cpp's Q4_K_M and Q5_K_M do
 * (gptq_grid_of_recipe); a layer is always quantized on a grid, never on a
 * recipe. */
typedef enum gptq_grid {
    GPTQ_GRID_NONE = 0,
    GPTQ_GRID_Q4_0,
    GPTQ_GRID_Q8_0,
    GPTQ_GRID_Q4_1,
    GPTQ_GRID_Q5_0,
    GPTQ_GRID_Q5_1,
    GPTQ_GRID_Q2_K,
    GPTQ_GRID_Q3_K,
    GPTQ_GRID_Q4_K,
    GPTQ_GRID_Q5_K,
    GPTQ_GRID_Q6_K,
    GPTQ_GRID_Q4_K_M, /* recipe: Q4_K; Q6_K for attn_v and ffn_down of some layers */
    GPTQ_GRID_Q5_K_M, /* recipe: Q5_K; likewise Q6_K */
    GPTQ_GRID_COUNT
} gptq_grid;

/* "q4_0", "Q4_K_M", ... (any case) -> the grid; -1 for an unknown name. */
int gptq_grid_from_name(const char *name);
/* "q4_0", ..., "q5_k_m", or "none". */
const char *gptq_grid_name(int grid);
/* The ggml type number (quant/ggml_blocks.h) of a grid; -1 for none and
 * the recipes. */
int gptq_grid_ggml_type(int grid);
/* 1 for the recipes (Q4_K_M, Q5_K_M). */
int gptq_grid_is_recipe(int grid);
/* 1 for the block grids (results carry GGUF blocks, not packable). */
int gptq_grid_is_block(int grid);

/* What a recipe decides by: the tensor's role in llama.cpp's terms. */
typedef enum gptq_recipe_role {
    GPTQ_ROLE_OTHER = 0, /* attn_q/k/output, ffn_gate/up */
    GPTQ_ROLE_ATTN_V,    /* attn_v */
    GPTQ_ROLE_ATTN_QKV,  /* q, k and v written as one fused attn_qkv */
    GPTQ_ROLE_FFN_DOWN,  /* ffn_down */
} gptq_recipe_role;

/* The grid recipe `grid` gives a tensor of `cols` inputs with role `role`
 * in layer `layer` of `layers`, as llama.cpp's llama_tensor_get_type does
 * for Q4_K_M / Q5_K_M (non-MoE models): Q6_K for attn_v and ffn_down of the
 * first and last eighth of the layers and every third layer between, Q5_K
 * (Q4_K_M) or Q6_K (Q5_K_M) for a fused attn_qkv, else the base K type;
 * then llama.cpp's fallbacks where cols is not a multiple of 256 (Q4_K ->
 * Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). A grid that is not a recipe comes
 * back as it is. -1 when even the fallback does not fit (cols not a
 * multiple of 32). */
int gptq_grid_of_recipe(int grid, gptq_recipe_role role, int layer, int layers, int cols);

/* Put cfg on `grid`: its bits, groups (sub-groups) and symmetry, fp16
 * scales, and static groups when act_order is set (GGUF has no g_idx).
 * bits_given and group_given are the bits and group size a user asked for
 * (0: none); they must be the grid's. A recipe sets only cfg->grid (each
 * layer's grid is resolved by gptq_grid_of_recipe). Errors: GPTQ_ERR_ARG
 * naming the disagreement. */
gptq_status gptq_quant_config_use_grid(gptq_quant_config *cfg, int grid, int bits_given,
                                       int group_given);
/* The symmetry a user asked for (1 sym, 0 asym, -1 none) against the
 * grid's own. Errors: GPTQ_ERR_ARG naming the flag to drop. */
gptq_status gptq_grid_sym_check(int grid, int sym_given);
/* cfg on the grid `grid` itself (recipes resolved by the caller): a copy of
 * cfg with gptq_quant_config_use_grid applied and no bits/groups asked. */
gptq_quant_config gptq_quant_config_on_grid(const gptq_quant_config *cfg, int grid);

/* The table's defaults (the reference's: 4 bits, groups of 128, damp 0.01,
 * blocks of 128), asym, no act-order, v1 zeros, fp16 scales. */

/* The symmetry gptqd and gptqctl quantize with when none is asked for:
 * symmetric, the grid every GPTQ loader takes on its fast kernels (vLLM's
 * Marlin needs it; an asymmetric checkpoint falls back to slower ones). The
 * library's own default above stays the reference's. */
#define GPTQ_TOOL_DEFAULT_SYM 1
void gptq_quant_config_default(gptq_quant_config *cfg);
/* Check cfg for a layer of `cols` inputs; the message names the bad option
 * and its legal values ("group-size 0: use -1 (per channel) or 1 to 65536"). */
gptq_status gptq_quant_config_check(const gptq_quant_config *cfg, int cols);
/* Number of groups for `cols` inputs: 1 if per channel, else ceil(cols/gs). */
int gptq_quant_groups(const gptq_quant_config *cfg, int cols);

/* ---- Quantized layer ----------------------------------------------------- */

/* The output of quantizing one layer. All arrays owned; free with
 * gptq_quant_result_free. Dequantized weight of (r, c):
 *   Q[r, c] = scales[g, r] * (codes[r, c] - zeros[g, r]),  g = g_idx[c]. */
typedef struct gptq_quant_result {
    int rows, cols, groups, bits;
    uint8_t *codes;  /* [rows, cols] integer codes in [0, 2^bits) */
    float *scales;   /* [groups, rows] */
    int32_t *zeros;  /* [groups, rows] zero points in [0, 2^bits] */
    int32_t *g_idx;  /* [cols] group of each input column (original order) */
    float *Q;        /* [rows, cols] dequantized weights */
    int gguf_type;   /* block grids: the ggml type of `blocks`; else 0 */
    uint8_t *blocks; /* block grids: [rows, cols / block elems] GGUF blocks, each row's
                        blocks in order (row r at r * gptq_quant_block_row_bytes); Q is
                        their dequantization, codes their codes; scales hold each
                        sub-group's step, zeros 0. NULL for the other grids */
    double loss;     /* the reference's Losses.sum(): Σ (w-q)² / Hinv_cc² / 2 */
    int zeros_raised;/* groups whose zero v1_zeros moved from 0 to 1 */
    /* seconds spent: damping + Cholesky + inverse, the column walk, total */
    double seconds_cholesky, seconds_blocks, seconds_total;
} gptq_quant_result;

void gptq_quant_result_free(gptq_quant_result *r);
/* Bytes of one row of a block-grid result's blocks (0 for other results). */
size_t gptq_quant_block_row_bytes(const gptq_quant_result *r);

/* GPTQ on one layer. W [rows, cols] and H [cols, cols] are read, not
 * modified. Dead inputs (H_cc == 0) get weight 0. Fills *out (caller frees).
 * Fails with GPTQ_ERR_NUMERIC (message suggests a larger damp) when H + damp
 * is not positive definite; never returns NaN weights. */
gptq_status gptq_quantize_layer(const float *W, const float *H, int rows, int cols,
                                const gptq_quant_config *cfg, gptq_quant_result *out);

/* Round to nearest with the same quantizer (min-max per group, no error
 * feedback): the baseline. act_order, static_groups, damp, block_size are
 * ignored. loss is left 0. */
gptq_status gptq_rtn_layer(const float *W, int rows, int cols, const gptq_quant_config *cfg,
                           gptq_quant_result *out);

/* Layer error tr((W-Q) H (W-Q)ᵀ) = ||W X - Q X||² · 2/n, in float64. */
double gptq_layer_error(const float *W, const float *Q, const float *H, int rows, int cols);

/* ---- The GPTQ checkpoint layout (v1) --------------------------------------
 * qweight int32 [cols*bits/32, rows]: the codes of column c (input feature)
 *   packed along the input dimension, low bits first; for every bit width
 *   this is one little-endian bit stream per output row: code k of a row
 *   occupies bits [k*bits, (k+1)*bits) of the stream formed by the words
 *   qweight[0, r], qweight[1, r], ... (3-bit codes straddle word boundaries).
 * qzeros int32 [groups, rows*bits/32]: zero-1 of each (group, row), packed
 *   the same way along rows; a reader adds 1 back.
 * scales fp16 [groups, rows]; g_idx int32 [cols]. */
typedef struct gptq_packed {
    int bits, rows, cols, groups;
    int group_size;     /* as configured (-1 per channel); informational */
    int32_t *qweight;   /* [cols*bits/32, rows] */
    int32_t *qzeros;    /* [groups, rows*bits/32] */
    uint16_t *scales;   /* [groups, rows], IEEE fp16 bits */
    int32_t *g_idx;     /* [cols] */
    int owned;          /* 1: gptq_packed_free frees the arrays; 0: a view */
} gptq_packed;

/* Shape checks for packing: cols*bits and rows*bits multiples of 32. */
gptq_status gptq_pack_check(int rows, int cols, int bits);
/* Pack a result (codes, scales rounded to fp16, zeros-1, g_idx) into *out
 * (owned). Fails if an asymmetric zero is 0 (not storable as zero-1). */
gptq_status gptq_pack(const gptq_quant_result *r, gptq_packed *out);
/* Dequantize a packed layer into W [rows, cols] float32:
 * W[r, c] = scale[g][r] * (code - (stored_zero + 1)), g = g_idx[c]. Checks
 * that g_idx entries are in range. */
gptq_status gptq_packed_dequantize(const gptq_packed *p, float *W);
/* Unpack the codes [rows, cols] and zeros [groups, rows] (with the +1). */
gptq_status gptq_packed_unpack(const gptq_packed *p, uint8_t *codes, int32_t *zeros);
void gptq_packed_free(gptq_packed *p);

/* qzeros [groups, rows*bits/32] between v1 (zero-1, the layout above, what
 * gptqd runs) and gptq_v2 (the zero itself, what GPTQModel writes for
 * asymmetric models), in place. Every zero of a GPTQ grid lies in
 * [0, 2^bits-1]: v1 cannot hold a zero of 0 and v2 cannot hold 2^bits, so
 * those fail (GPTQ_ERR_UNSUPPORTED, naming group and row) and leave qzeros
 * unchanged. */
gptq_status gptq_qzeros_v2_to_v1(int32_t *qzeros, int groups, int rows, int bits);
gptq_status gptq_qzeros_v1_to_v2(int32_t *qzeros, int groups, int rows, int bits);

/* Bit-stream helpers behind the layout above (exposed for kernels and
 * tests): write/read value k (width `bits`) of a stream of 32-bit words
 * whose consecutive words are `stride` int32s apart. */
void gptq_bits_put(int32_t *words, size_t stride, int bits, size_t k, uint32_t value);
uint32_t gptq_bits_get(const int32_t *words, size_t stride, int bits, size_t k);

#ifdef __cplusplus
}
#endif
#endif
