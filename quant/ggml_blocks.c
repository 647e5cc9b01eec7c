/* quant/ggml_blocks.c: ggml's tensor types (the ggml_type numbers GGUF
 * files use): names, block sizes, and the conversion of the common ones to
 * float32.
 *
 * The dequantizers follow ggml-quants.c's dequantize_row_* expression by
 * expression, so that float32 results are bit-identical to ggml's and to
 * gguf-py's numpy versions (tests/gguf_dequant.py checks). That is also why
 * this file is built with -ffp-contract=off (quant/meson.build): a fused
 * d*q + m rounds once where ggml's C rounds twice. */
#include "quant/ggml_blocks.h"

#include <stdio.h>
#include <string.h>

#include "common/dtype.h"

/* ---- types ------------------------------------------------------------------ */

/* Block sizes as ggml.c's type_traits has them (sizeof(block_*) in
 * ggml-common.h); a type absent here is unknown. */
static const struct {
    const char *name;
    int block_elems, block_bytes;
} ggml_types[GPTQ_GGML_TYPE_LIMIT] = {
    [GPTQ_GGML_F32] = {"F32", 1, 4},          [GPTQ_GGML_F16] = {"F16", 1, 2},
    [GPTQ_GGML_Q4_0] = {"Q4_0", 32, 18},      [GPTQ_GGML_Q4_1] = {"Q4_1", 32, 20},
    [GPTQ_GGML_Q5_0] = {"Q5_0", 32, 22},      [GPTQ_GGML_Q5_1] = {"Q5_1", 32, 24},
    [GPTQ_GGML_Q8_0] = {"Q8_0", 32, 34},      [GPTQ_GGML_Q8_1] = {"Q8_1", 32, 36},
    [GPTQ_GGML_Q2_K] = {"Q2_K", 256, 84},     [GPTQ_GGML_Q3_K] = {"Q3_K", 256, 110},
    [GPTQ_GGML_Q4_K] = {"Q4_K", 256, 144},    [GPTQ_GGML_Q5_K] = {"Q5_K", 256, 176},
    [GPTQ_GGML_Q6_K] = {"Q6_K", 256, 210},    [GPTQ_GGML_Q8_K] = {"Q8_K", 256, 292},
    [GPTQ_GGML_IQ2_XXS] = {"IQ2_XXS", 256, 66}, [GPTQ_GGML_IQ2_XS] = {"IQ2_XS", 256, 74},
    [GPTQ_GGML_IQ3_XXS] = {"IQ3_XXS", 256, 98}, [GPTQ_GGML_IQ1_S] = {"IQ1_S", 256, 50},
    [GPTQ_GGML_IQ4_NL] = {"IQ4_NL", 32, 18},  [GPTQ_GGML_IQ3_S] = {"IQ3_S", 256, 110},
    [GPTQ_GGML_IQ2_S] = {"IQ2_S", 256, 82},   [GPTQ_GGML_IQ4_XS] = {"IQ4_XS", 256, 136},
    [GPTQ_GGML_I8] = {"I8", 1, 1},            [GPTQ_GGML_I16] = {"I16", 1, 2},
    [GPTQ_GGML_I32] = {"I32", 1, 4},          [GPTQ_GGML_I64] = {"I64", 1, 8},
    [GPTQ_GGML_F64] = {"F64", 1, 8},          [GPTQ_GGML_IQ1_M] = {"IQ1_M", 256, 56},
    [GPTQ_GGML_BF16] = {"BF16", 1, 2},        [GPTQ_GGML_TQ1_0] = {"TQ1_0", 256, 54},
    [GPTQ_GGML_TQ2_0] = {"TQ2_0", 256, 66},   [GPTQ_GGML_MXFP4] = {"MXFP4", 32, 17},
};

static int type_known(int type) { return type >= 0 && type < GPTQ_GGML_TYPE_LIMIT && ggml_types[type].name; }

const char *gptq_ggml_type_name(int type)
{
    static _Thread_local char unknown[32];
    if (type_known(type))
        return ggml_types[type].name;
    snprintf(unknown, sizeof unknown, "type %d", type);
    return unknown;
}

int gptq_ggml_block_elems(int type) { return type_known(type) ? ggml_types[type].block_elems : 0; }
int gptq_ggml_block_bytes(int type) { return type_known(type) ? ggml_types[type].block_bytes : 0; }

size_t gptq_ggml_row_bytes(int type, int64_t cols)
{
    return type_known(type) ? (size_t)(cols / ggml_types[type].block_elems) *
                                  (size_t)ggml_types[type].block_bytes
                            : 0;
}

int gptq_ggml_can_dequantize(int type)
{
    switch (type) {
    case GPTQ_GGML_F32: case GPTQ_GGML_F16: case GPTQ_GGML_BF16:
    case GPTQ_GGML_Q8_0: case GPTQ_GGML_Q4_0: case GPTQ_GGML_Q4_1: case GPTQ_GGML_Q5_0: case GPTQ_GGML_Q5_1:
    case GPTQ_GGML_Q2_K: case GPTQ_GGML_Q3_K: case GPTQ_GGML_Q4_K: case GPTQ_GGML_Q5_K: case GPTQ_GGML_Q6_K:
        return 1;
    default:
        return 0;
    }
}

/* ---- dequantization: ggml-quants.c's dequantize_row_*, block by block ------------ */

static inline float f16_at(const uint8_t *p) { return gptq_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void dequant_f16(const uint8_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = f16_at(x + 2 * i);
}

static void dequant_bf16(const uint8_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = gptq_bf16_to_f32((uint16_t)(x[2 * i] | x[2 * i + 1] << 8));
}

/* block_q4_0: d (f16), qs[16]; element j is the low nibble of qs[j], element
 * j + 16 the high one; value (q - 8) * d. */
static void dequant_q4_0(const uint8_t *x, float *y, int64_t n_blocks)
{
    for (int64_t i = 0; i < n_blocks; i++, x += 18, y += 32) {
        const float d = f16_at(x);
        const uint8_t *qs = x + 2;
        for (int j = 0; j < 16; j++) {
            const int x0 = (qs[j] & 0x0F) - 8, x1 = (qs[j] >> 4) - 8;
            y[j] = x0 * d;
            y[j + 16] = x1 * d;
        }
    }
}

/* block_q4_1: d, m (f16), qs[16]; value q * d + m. */
static void dequant_q4_1(const uint8_t *x, float *y, int64_t n_blocks)
{
    for (int64_t i = 0; i < n_blocks; i++, x += 20, y += 32) {
        const float d = f16_at(x), m = f16_at(x + 2);
        const uint8_t *qs = x + 4;
        for (int j = 0; j < 16; j++) {
            const int x0 = qs[j] & 0x0F, x1 = qs[j] >> 4;
            y[j] = x0 * d + m;
            y[j + 16] = x1 * d + m;
        }
    }
}

static inline uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* block_q5_0: d (f16), qh (u32: bit j is element j's fifth bit), qs[16];
 * value (q - 16) * d. */
static void dequant_q5_0(const uint8_t *x, float *y, int64_t n_blocks)
{
    for (int64_t i = 0; i < n_blocks; i++, x += 22, y += 32) {
        const float d = f16_at(x);
        const uint32_t qh = u32_at(x + 2);
        const uint8_t *qs = x + 6;
        for (int j = 0; j < 16; j++) {
            const uint8_t xh_0 = ((qh >> j) << 4) & 0x10, xh_1 = (qh >> (j + 12)) & 0x10;
            const int32_t x0 = ((qs[j] & 0x0F) | xh_0) - 16, x1 = ((qs[j] >> 4) | xh_1) - 16;
            y[j] = x0 * d;
            y[j + 16] = x1 * d;
        }
    }
}

/* block_q5_1: d, m (f16), qh, qs[16]; value q * d + m. */
static void dequant_q5_1(const uint8_t *x, float *y, int64_t n_blocks)
{
    for (int64_t i = 0; i < n_blocks; i++, x += 24, y += 32) {
        const float d = f16_at(x), m = f16_at(x + 2);
        const uint32_t qh = u32_at(x + 4);
        const uint8_t *qs = x + 8;
        for (int j = 0; j < 16; j++) {
            const uint8_t xh_0 = ((qh >> j) << 4) & 0x10, xh_1 = (qh >> (j + 12)) & 0x10;
            const int x0 = (qs[j] & 0x0F) | xh_0, x1 = (qs[j] >> 4) | xh_1;
            y[j] = x0 * d + m;
            y[j + 16] = x1 * d + m;
        }
    }
}

/* block_q8_0: d (f16), qs[32] (int8); value q * d. */
static void dequant_q8_0(const uint8_t *x, float *y, int64_t n_blocks)
{
    for (int64_t i = 0; i < n_blocks; i++, x += 34, y += 32) {
        const float d = f16_at(x);
        for (int j = 0; j < 32; j++)
            y[j] = (int8_t)x[2 + j] * d;
    }
}

/* block_q2_K: scales[16] (low nibble scale, high nibble min), qs[64] (2-bit,
 * four 32-element planes per 128), d, dmin (f16); value
 * (d*sc) * q - (dmin*m). */
static void dequant_q2_k(const uint8_t *x, float *y, int64_t n_blocks)
{
    for (int64_t i = 0; i < n_blocks; i++, x += 84) {
        const uint8_t *scales = x, *q = x + 16;
        const float d = f16_at(x + 80), min = f16_at(x + 82);
        int is = 0;
        for (int n = 0; n < 256; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t sc = scales[is++];
                    const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * ((int8_t)((q[l + 16 * half] >> shift) & 3)) - ml;
                }
            }
        }
    }
}

/* block_q3_K: hmask[32] (third bit, clear means minus 4), qs[64] (low two
 * bits), scales[12] (sixteen 6-bit scales, offset 32), d (f16); value
 * (d * (sc - 32)) * q. */
static void dequant_q3_k(const uint8_t *x, float *y, int64_t n_blocks)
{
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    for (int64_t i = 0; i < n_blocks; i++, x += 110) {
        const uint8_t *hm = x, *q = x + 32;
        const float d_all = f16_at(x + 108);
        uint32_t aux[4];
        int8_t scales[16];
        aux[0] = u32_at(x + 96);
        aux[1] = u32_at(x + 100);
        aux[2] = u32_at(x + 104);
        const uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        for (int k = 0; k < 16; k++) /* ggml reads aux's bytes in memory (little-endian) order */
            scales[k] = (int8_t)(uint8_t)(aux[k / 4] >> (8 * (k % 4)));
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < 256; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d_all * (scales[is++] - 32);
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        *y++ = dl * ((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                }
            }
        }
    }
}

/* The j-th 6-bit scale and min of a Q4_K / Q5_K block's scales[12]
 * (ggml's get_scale_min_k4). */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

/* block_q4_K: d, dmin (f16), scales[12], qs[128] (per 64 elements: 32 low
 * nibbles, then 32 high ones); value (d*sc) * q - (dmin*m).
 * block_q5_K (`five`): the same with qh[32] (fifth bits, two planes per 64
 * elements) between scales and qs. */
static void dequant_q45_k(const uint8_t *x, float *y, int64_t n_blocks, int five)
{
    for (int64_t i = 0; i < n_blocks; i++, x += five ? 176 : 144) {
        const float d = f16_at(x), min = f16_at(x + 2);
        const uint8_t *scales = x + 4, *qh = five ? x + 16 : NULL, *ql = x + (five ? 48 : 16);
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < 256; j += 64, ql += 32, is += 2, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * ((ql[l] & 0xF) + (qh && (qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * ((ql[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

/* block_q6_K: ql[128] (low nibbles), qh[64] (high two bits), scales[16]
 * (int8), d (f16); value (d * sc) * (q - 32). */
static void dequant_q6_k(const uint8_t *x, float *y, int64_t n_blocks)
{
    for (int64_t i = 0; i < n_blocks; i++, x += 210) {
        const float d = f16_at(x + 208);
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

gptq_status gptq_gguf_dequantize(int type, const void *raw, float *out, int64_t n)
{
    if (!gptq_ggml_can_dequantize(type))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gptq_gguf_dequantize: %s does not convert to float32 "
                         "(F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K do)", gptq_ggml_type_name(type));
    int64_t be = gptq_ggml_block_elems(type);
    if (n < 0 || n % be != 0)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_gguf_dequantize: %lld elements of %s: must be a multiple of its block of %lld",
                         (long long)n, gptq_ggml_type_name(type), (long long)be);
    if (n > 0 && (!raw || !out))
        return gptq_fail(GPTQ_ERR_ARG, "gptq_gguf_dequantize: raw and out must not be NULL");
    const uint8_t *x = raw;
    int64_t n_blocks = n / be;
    switch (type) {
    case GPTQ_GGML_F32: memcpy(out, raw, (size_t)n * 4); break;
    case GPTQ_GGML_F16: dequant_f16(x, out, n); break;
    case GPTQ_GGML_BF16: dequant_bf16(x, out, n); break;
    case GPTQ_GGML_Q4_0: dequant_q4_0(x, out, n_blocks); break;
    case GPTQ_GGML_Q4_1: dequant_q4_1(x, out, n_blocks); break;
    case GPTQ_GGML_Q5_0: dequant_q5_0(x, out, n_blocks); break;
    case GPTQ_GGML_Q5_1: dequant_q5_1(x, out, n_blocks); break;
    case GPTQ_GGML_Q8_0: dequant_q8_0(x, out, n_blocks); break;
    case GPTQ_GGML_Q2_K: dequant_q2_k(x, out, n_blocks); break;
    case GPTQ_GGML_Q3_K: dequant_q3_k(x, out, n_blocks); break;
    case GPTQ_GGML_Q4_K: dequant_q45_k(x, out, n_blocks, 0); break;
    case GPTQ_GGML_Q5_K: dequant_q45_k(x, out, n_blocks, 1); break;
    case GPTQ_GGML_Q6_K: dequant_q6_k(x, out, n_blocks); break;
    }
    return GPTQ_OK;
}

/* ---- the block types as grids: scales chosen, codes written ---------------------- */

int gptq_ggml_is_block_grid(int type) { return gptq_ggml_grid_sub(type) > 0; }

int gptq_ggml_grid_sub(int type)
{
    switch (type) {
    case GPTQ_GGML_Q4_1: case GPTQ_GGML_Q5_0: case GPTQ_GGML_Q5_1:
    case GPTQ_GGML_Q4_K: case GPTQ_GGML_Q5_K:
        return 32;
    case GPTQ_GGML_Q2_K: case GPTQ_GGML_Q3_K: case GPTQ_GGML_Q6_K:
        return 16;
    default:
        return 0;
    }
}

int gptq_ggml_grid_maxq(int type)
{
    switch (type) {
    case GPTQ_GGML_Q2_K: return 3;
    case GPTQ_GGML_Q3_K: return 7;
    case GPTQ_GGML_Q4_1: case GPTQ_GGML_Q4_K: return 15;
    case GPTQ_GGML_Q5_0: case GPTQ_GGML_Q5_1: case GPTQ_GGML_Q5_K: return 31;
    case GPTQ_GGML_Q6_K: return 63;
    default: return 0;
    }
}

int gptq_ggml_grid_zero(int type)
{
    switch (type) {
    case GPTQ_GGML_Q3_K: return 4;
    case GPTQ_GGML_Q5_0: return 16;
    case GPTQ_GGML_Q6_K: return 32;
    default: return 0;
    }
}

static inline int nearest(float x) { return (int)lrintf(x); }

static inline void put_f16(uint8_t *p, float x)
{
    const uint16_t h = gptq_f32_to_f16(x);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* The weights of a sub-group's squared errors: the importance when given
 * (all-zero importance: every input alike), else llama.cpp's av|x| + |x_i|
 * (its quantize_row_q4_K_ref's), which leans towards the larger weights. */
static void error_weights(const float *x, const float *imp, int n, float *w)
{
    float sum = 0.0f;
    if (imp) {
        for (int i = 0; i < n; i++)
            sum += (w[i] = imp[i] > 0.0f ? imp[i] : 0.0f);
        if (sum > 0.0f)
            return;
        for (int i = 0; i < n; i++)
            w[i] = 1.0f;
        return;
    }
    for (int i = 0; i < n; i++)
        sum += x[i] * x[i];
    const float av = sqrtf(sum / (float)n);
    for (int i = 0; i < n; i++)
        w[i] = av + fabsf(x[i]);
}

/* x ~= scale * L + min, L in [0, nmax], min <= 0, minimising sum w (.)^2:
 * llama.cpp's make_qkx2_quants search (21 ranges around [min x, max x],
 * each refitted by weighted least squares). */
static void fit_affine(const float *x, const float *w, int n, int nmax, float *scale, float *min)
{
    float mn = x[0], mx = x[0], sum_w = 0.0f, sum_x = 0.0f;
    for (int i = 0; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0.0f)
        mn = 0.0f;
    if (mx == mn) {
        *scale = 0.0f;
        *min = mn;
        return;
    }
    float iscale = (float)nmax / (mx - mn), best_scale = 1.0f / iscale, best_min = mn;
    float best = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = nearest(iscale * (x[i] - mn));
        l = l < 0 ? 0 : (l > nmax ? nmax : l);
        const float d = best_scale * l + mn - x[i];
        best += w[i] * d * d;
    }
    for (int step = 0; step <= 20; step++) {
        iscale = (-1.0f + 0.1f * step + (float)nmax) / (mx - mn);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        int L[256];
        for (int i = 0; i < n; i++) {
            int l = nearest(iscale * (x[i] - mn));
            l = l < 0 ? 0 : (l > nmax ? nmax : l);
            L[i] = l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0.0f))
            continue;
        float s = (sum_w * sum_xl - sum_x * sum_l) / D, m = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (m > 0.0f) {
            m = 0.0f;
            s = sum_l2 > 0.0f ? sum_xl / sum_l2 : 0.0f;
        }
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            const float d = s * L[i] + m - x[i];
            err += w[i] * d * d;
        }
        if (err < best && s > 0.0f) {
            best = err;
            best_scale = s;
            best_min = m;
        }
    }
    *scale = best_scale;
    *min = best_min;
}

/* x ~= scale * L, L in [-nmax, nmax - 1] (scale signed, so the extreme
 * value can take the wider negative end), maximising the weighted
 * least-squares gain: llama.cpp's make_qx_quants search (19 scales). */
static float fit_sym(const float *x, const float *w, int n, int nmax)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-30f)
        return 0.0f;
    float scale = 0.0f, best = 0.0f;
    for (int step = -9; step <= 9; step++) {
        const float iscale = -((float)nmax + 0.1f * step) / max;
        float sum_lx = 0.0f, sum_l2 = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = nearest(iscale * x[i]);
            l = l < -nmax ? -nmax : (l > nmax - 1 ? nmax - 1 : l);
            sum_lx += w[i] * x[i] * l;
            sum_l2 += w[i] * l * l;
        }
        if (sum_l2 > 0.0f && sum_lx * sum_lx > best * sum_l2) {
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    return scale;
}

/* Sub-scales (and mins) of a K block quantized to `levels` steps of one
 * fp16 super-scale each, as llama.cpp stores them: ls[k] = round(sc[k] *
 * levels / max sc). Writes the fp16 values to *d, *dmin (their bits to
 * dh, mh when not NULL). */
static void k_scales(const float *sc, const float *mins, int nsub, int levels, int *ls, int *lm,
                     uint8_t *dh, uint8_t *mh, float *d, float *dmin)
{
    float max_scale = 0.0f, max_min = 0.0f;
    for (int k = 0; k < nsub; k++) {
        max_scale = sc[k] > max_scale ? sc[k] : max_scale;
        max_min = mins[k] > max_min ? mins[k] : max_min;
    }
    const float inv_scale = max_scale > 0.0f ? (float)levels / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? (float)levels / max_min : 0.0f;
    for (int k = 0; k < nsub; k++) {
        const int l = nearest(inv_scale * sc[k]), m = nearest(inv_min * mins[k]);
        ls[k] = l > levels ? levels : (l < 0 ? 0 : l);
        lm[k] = m > levels ? levels : (m < 0 ? 0 : m);
    }
    put_f16(dh, max_scale / (float)levels);
    put_f16(mh, max_min / (float)levels);
    *d = f16_at(dh);
    *dmin = f16_at(mh);
}

/* Symmetric sub-scales of a K block as signed integers of one fp16
 * super-scale: s[k] ~= d * l[k], l in [lo, hi], the largest |s| on `lo`. */
static float k_sym_scales(const float *s, int nsub, int lo, int hi, int *l, uint8_t *dh)
{
    float amax = 0.0f, max = 0.0f;
    for (int k = 0; k < nsub; k++)
        if (fabsf(s[k]) > amax) {
            amax = fabsf(s[k]);
            max = s[k];
        }
    const float iscale = amax > 0.0f ? (float)lo / max : 0.0f;
    for (int k = 0; k < nsub; k++) {
        const int v = nearest(iscale * s[k]);
        l[k] = v < lo ? lo : (v > hi ? hi : v);
    }
    put_f16(dh, iscale != 0.0f ? 1.0f / iscale : 0.0f);
    return f16_at(dh);
}

/* Sub-group j's 6-bit scale and min into a Q4_K / Q5_K scales[12],
 * replacing what was there (the inverse of scale_min_k4). */
static void set_scale_min_k4(int j, uint8_t *q, int ls, int lm)
{
    if (j < 4) {
        q[j] = (uint8_t)((q[j] & 0xC0) | ls);
        q[j + 4] = (uint8_t)((q[j + 4] & 0xC0) | lm);
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
        q[j - 4] = (uint8_t)((q[j - 4] & 0x3F) | (ls >> 4) << 6);
        q[j] = (uint8_t)((q[j] & 0x3F) | (lm >> 4) << 6);
    }
}

/* Sub-group j's 6-bit scale (stored with offset 32) into a Q3_K
 * scales[12], replacing what was there. */
static void set_scale_q3_k(int j, uint8_t *q, int l)
{
    if (j < 8)
        q[j] = (uint8_t)((q[j] & 0xF0) | (l & 0xF));
    else
        q[j - 8] = (uint8_t)((q[j - 8] & 0x0F) | (l & 0xF) << 4);
    const int sh = 2 * (j / 4);
    q[j % 4 + 8] = (uint8_t)((q[j % 4 + 8] & ~(3 << sh)) | ((l >> 4) & 3) << sh);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

void gptq_ggml_block_refit(int type, uint8_t *blk, int k, const float *x, const float *imp,
                           float *a, float *b)
{
    const int sub = gptq_ggml_grid_sub(type), maxq = gptq_ggml_grid_maxq(type);
    float w[32], s, m;
    if (sub >= gptq_ggml_block_elems(type))
        return; /* one scale per block: nothing to refit */
    error_weights(x, imp, sub, w);
    switch (type) {
    case GPTQ_GGML_Q4_K: case GPTQ_GGML_Q5_K: case GPTQ_GGML_Q2_K: {
        const int q2 = type == GPTQ_GGML_Q2_K, levels = q2 ? 15 : 63;
        const float d = f16_at(blk + (q2 ? 80 : 0)), dmin = f16_at(blk + (q2 ? 82 : 2));
        fit_affine(x, w, sub, maxq, &s, &m);
        const int ls = d > 0.0f ? clampi(nearest(s / d), 0, levels) : 0;
        const int lm = dmin > 0.0f ? clampi(nearest(-m / dmin), 0, levels) : 0;
        if (q2)
            blk[k] = (uint8_t)(ls | lm << 4);
        else
            set_scale_min_k4(k, blk + 4, ls, lm);
        *a = d * ls;
        *b = dmin * lm;
        return;
    }
    case GPTQ_GGML_Q3_K: {
        const float d = f16_at(blk + 108);
        const int l = d != 0.0f ? clampi(nearest(fit_sym(x, w, sub, 4) / d), -32, 31) : 0;
        set_scale_q3_k(k, blk + 96, l + 32);
        *a = d * l;
        *b = 4.0f * *a;
        return;
    }
    case GPTQ_GGML_Q6_K: {
        const float d = f16_at(blk + 208);
        const int l = d != 0.0f ? clampi(nearest(fit_sym(x, w, sub, 32) / d), -128, 127) : 0;
        blk[192 + k] = (uint8_t)(int8_t)l;
        *a = d * (int8_t)l;
        *b = 32.0f * *a;
        return;
    }
    }
}

void gptq_ggml_block_fit(int type, const float *x, const float *imp, uint8_t *blk, float *a,
                         float *b)
{
    const int sub = gptq_ggml_grid_sub(type), n = gptq_ggml_block_elems(type);
    const int nsub = n / sub, maxq = gptq_ggml_grid_maxq(type);
    float w[256], sc[16] = {0}, mins[16] = {0};
    int ls[16] = {0}, lm[16] = {0};
    memset(blk, 0, (size_t)gptq_ggml_block_bytes(type));
    error_weights(x, imp, n, w);
    switch (type) {
    case GPTQ_GGML_Q4_1: case GPTQ_GGML_Q5_1: { /* d, m; value d * q + m */
        float s, m;
        fit_affine(x, w, n, maxq, &s, &m);
        put_f16(blk, s);
        put_f16(blk + 2, m);
        a[0] = f16_at(blk);
        b[0] = -f16_at(blk + 2);
        return;
    }
    case GPTQ_GGML_Q5_0: /* d; value d * (q - 16) */
        put_f16(blk, fit_sym(x, w, n, 16));
        a[0] = f16_at(blk);
        b[0] = 16.0f * a[0];
        return;
    case GPTQ_GGML_Q4_K: case GPTQ_GGML_Q5_K: { /* 6-bit scales and mins under d, dmin */
        for (int k = 0; k < nsub; k++) {
            float m;
            fit_affine(x + k * sub, w + k * sub, sub, maxq, &sc[k], &m);
            mins[k] = -m;
        }
        float d, dmin;
        k_scales(sc, mins, nsub, 63, ls, lm, blk, blk + 2, &d, &dmin);
        for (int k = 0; k < nsub; k++) {
            set_scale_min_k4(k, blk + 4, ls[k], lm[k]);
            a[k] = d * ls[k];
            b[k] = dmin * lm[k];
        }
        return;
    }
    case GPTQ_GGML_Q2_K: { /* 4-bit scale | min << 4 under d, dmin (at the block's end) */
        for (int k = 0; k < nsub; k++) {
            float m;
            fit_affine(x + k * sub, w + k * sub, sub, maxq, &sc[k], &m);
            mins[k] = -m;
        }
        float d, dmin;
        k_scales(sc, mins, nsub, 15, ls, lm, blk + 80, blk + 82, &d, &dmin);
        for (int k = 0; k < nsub; k++) {
            blk[k] = (uint8_t)(ls[k] | lm[k] << 4);
            a[k] = d * (ls[k] & 0xF);
            b[k] = dmin * lm[k];
        }
        return;
    }
    case GPTQ_GGML_Q3_K: { /* 6-bit signed scales (offset 32) under d; value (q - 4) */
        for (int k = 0; k < nsub; k++)
            sc[k] = fit_sym(x + k * sub, w + k * sub, sub, 4);
        const float d = k_sym_scales(sc, nsub, -32, 31, ls, blk + 108);
        for (int k = 0; k < nsub; k++) {
            set_scale_q3_k(k, blk + 96, ls[k] + 32);
            a[k] = d * ls[k];
            b[k] = 4.0f * a[k];
        }
        return;
    }
    case GPTQ_GGML_Q6_K: { /* int8 scales under d; value (q - 32) */
        for (int k = 0; k < nsub; k++)
            sc[k] = fit_sym(x + k * sub, w + k * sub, sub, 32);
        const float d = k_sym_scales(sc, nsub, -128, 127, ls, blk + 208);
        for (int k = 0; k < nsub; k++) {
            blk[192 + k] = (uint8_t)(int8_t)ls[k];
            a[k] = d * (int8_t)ls[k];
            b[k] = 32.0f * a[k];
        }
        return;
    }
    }
}

void gptq_ggml_block_put(int type, uint8_t *blk, int e, int code)
{
    const unsigned c = (unsigned)code;
    switch (type) {
    case GPTQ_GGML_Q4_1: /* low nibbles: inputs 0..15, high: 16..31 */
        blk[4 + e % 16] |= (uint8_t)((c & 0xF) << (e < 16 ? 0 : 4));
        return;
    case GPTQ_GGML_Q5_0: case GPTQ_GGML_Q5_1: { /* qh bit e: the fifth bit */
        const int qh = type == GPTQ_GGML_Q5_0 ? 2 : 4;
        blk[qh + 4 + e % 16] |= (uint8_t)((c & 0xF) << (e < 16 ? 0 : 4));
        blk[qh + e / 8] |= (uint8_t)(((c >> 4) & 1) << (e % 8));
        return;
    }
    case GPTQ_GGML_Q4_K: case GPTQ_GGML_Q5_K: { /* per 64: 32 low nibbles, 32 high */
        const int qs = type == GPTQ_GGML_Q4_K ? 16 : 48;
        blk[qs + (e / 64) * 32 + e % 32] |= (uint8_t)((c & 0xF) << (e % 64 < 32 ? 0 : 4));
        if (type == GPTQ_GGML_Q5_K) /* qh[e % 32] bit e / 32 */
            blk[16 + e % 32] |= (uint8_t)(((c >> 4) & 1) << (e / 32));
        return;
    }
    case GPTQ_GGML_Q2_K: case GPTQ_GGML_Q3_K: { /* 2-bit planes: byte e % 32 of each 128 */
        const int qs = type == GPTQ_GGML_Q2_K ? 16 : 32;
        blk[qs + (e / 128) * 32 + e % 32] |= (uint8_t)((c & 3) << (2 * ((e % 128) / 32)));
        if (type == GPTQ_GGML_Q3_K) /* hmask[e % 32] bit e / 32: the third bit */
            blk[e % 32] |= (uint8_t)(((c >> 2) & 1) << (e / 32));
        return;
    }
    case GPTQ_GGML_Q6_K: { /* per 128: ql nibbles of 4 quarters, qh 2-bit pairs */
        const int n = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
        blk[n * 64 + l + (quarter & 1) * 32] |= (uint8_t)((c & 0xF) << (quarter < 2 ? 0 : 4));
        blk[128 + n * 32 + l] |= (uint8_t)(((c >> 4) & 3) << (2 * quarter));
        return;
    }
    }
}

void gptq_ggml_quantize_row(int type, const float *x, int64_t n, uint8_t *dst)
{
    const int be = gptq_ggml_block_elems(type), sub = gptq_ggml_grid_sub(type);
    const int maxq = gptq_ggml_grid_maxq(type), zero = gptq_ggml_grid_zero(type);
    for (int64_t c0 = 0; c0 < n; c0 += be, dst += gptq_ggml_block_bytes(type)) {
        float a[16], b[16], deq;
        gptq_ggml_block_fit(type, x + c0, NULL, dst, a, b);
        for (int e = 0; e < be; e++)
            gptq_ggml_block_put(type, dst, e,
                                gptq_ggml_grid_code(x[c0 + e], a[e / sub], b[e / sub], maxq, zero, &deq));
    }
}
