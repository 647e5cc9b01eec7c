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
 * that a GGUF file holds exactly the codes GPTQ chose. Each is a symmetric
 * grid of groups of 32 inputs with one fp16 scale d per group and
 * w = d * (code - zero):
 *   Q4_0: 4 bits, zero 8; d = m / -8 with m the group's value of largest
 *         magnitude (its sign kept: that value lands on code 0 exactly).
 *   Q8_0: 8 bits, zero 128 (GGUF stores code-128 as int8); d = max|w| / 127.
 * Groups are fixed in the original column order (GGUF has no g_idx), so
 * act-order needs static groups. The types with a float minimum (Q4_1,
 * Q5_1) or 5-bit codes have no GPTQ checkpoint form and are not offered. */
typedef enum gptq_grid { GPTQ_GRID_NONE = 0, GPTQ_GRID_Q4_0, GPTQ_GRID_Q8_0 } gptq_grid;

/* "q4_0" / "q8_0" (any case) -> the grid; -1 for an unknown name. */
int gptq_grid_from_name(const char *name);
/* "q4_0", "q8_0", or "none". */
const char *gptq_grid_name(int grid);
/* Put cfg on `grid`: its bits, groups of 32, symmetric, fp16 scales, and
 * static groups when act_order is set (GGUF has no g_idx). bits_given and
 * group_given are the bits and group size a user asked for (0: none); they
 * must be the grid's. Errors: GPTQ_ERR_ARG naming the disagreement. */
gptq_status gptq_quant_config_use_grid(gptq_quant_config *cfg, int grid, int bits_given,
                                       int group_given);

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
    double loss;     /* the reference's Losses.sum(): Σ (w-q)² / Hinv_cc² / 2 */
    int zeros_raised;/* groups whose zero v1_zeros moved from 0 to 1 */
    /* seconds spent: damping + Cholesky + inverse, the column walk, total */
    double seconds_cholesky, seconds_blocks, seconds_total;
} gptq_quant_result;

void gptq_quant_result_free(gptq_quant_result *r);

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
