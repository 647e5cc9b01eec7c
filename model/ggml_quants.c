/* model/ggml_quants.c: ggml's tensor types (the ggml_type numbers GGUF
 * files use): names, block sizes, and the conversion of the common ones to
 * float32.
 *
 * The dequantizers follow ggml-quants.c's dequantize_row_* expression by
 * expression, so that float32 results are bit-identical to ggml's and to
 * gguf-py's numpy versions (tests/gguf_dequant.py checks). That is also why
 * this file is built with -ffp-contract=off (model/meson.build): a fused
 * d*q + m rounds once where ggml's C rounds twice. */
#include "model/gguf.h"

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
 * nibbles, then 32 high ones); value (d*sc) * q - (dmin*m). */
static void dequant_q4_k(const uint8_t *x, float *y, int64_t n_blocks)
{
    for (int64_t i = 0; i < n_blocks; i++, x += 144) {
        const float d = f16_at(x), min = f16_at(x + 2);
        const uint8_t *scales = x + 4, *q = x + 16;
        for (int j = 0, is = 0; j < 256; j += 64, q += 32, is += 2) {
            uint8_t sc, m;
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* block_q5_K: d, dmin (f16), scales[12], qh[32] (fifth bits, two planes per
 * 64 elements), qs[128]; value (d*sc) * q - (dmin*m). */
static void dequant_q5_k(const uint8_t *x, float *y, int64_t n_blocks)
{
    for (int64_t i = 0; i < n_blocks; i++, x += 176) {
        const float d = f16_at(x), min = f16_at(x + 2);
        const uint8_t *scales = x + 4, *qh = x + 16, *ql = x + 48;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < 256; j += 64, ql += 32, is += 2, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
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
    case GPTQ_GGML_Q4_K: dequant_q4_k(x, out, n_blocks); break;
    case GPTQ_GGML_Q5_K: dequant_q5_k(x, out, n_blocks); break;
    case GPTQ_GGML_Q6_K: dequant_q6_k(x, out, n_blocks); break;
    }
    return GPTQ_OK;
}
