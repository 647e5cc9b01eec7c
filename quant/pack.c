/* quant/pack.c: the ecosystem's GPTQ checkpoint layout (v1).
 *
 * Checked against AutoGPTQ's QuantLinear.pack (qlinear_cuda_old.py): for
 * 2/4/8 bits, 32/bits codes per int32 word, code j of a word at bits
 * bits*j; for 3 bits, 32 codes in 3 words with codes 10 and 21 split
 * across word boundaries. Both are one little-endian bit stream: code k at
 * bit bits*k of the concatenated words. Zeros are stored minus one, which is
 * why an asymmetric zero of 0 is not storable (see quantizer.c). */
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "gptq/quant.h"

void gptq_bits_put(int32_t *words, size_t stride, int bits, size_t k, uint32_t value)
{
    size_t bit = k * (size_t)bits;
    size_t w = bit / 32;
    unsigned off = (unsigned)(bit % 32);
    uint32_t mask = (bits == 32 ? 0xffffffffu : (1u << bits) - 1u);
    value &= mask;
    uint32_t *u = (uint32_t *)words;
    u[w * stride] = (u[w * stride] & ~(mask << off)) | (value << off);
    if (off + (unsigned)bits > 32) {
        unsigned spill = 32 - off;
        u[(w + 1) * stride] = (u[(w + 1) * stride] & ~(mask >> spill)) | (value >> spill);
    }
}

uint32_t gptq_bits_get(const int32_t *words, size_t stride, int bits, size_t k)
{
    size_t bit = k * (size_t)bits;
    size_t w = bit / 32;
    unsigned off = (unsigned)(bit % 32);
    uint32_t mask = (1u << bits) - 1u;
    const uint32_t *u = (const uint32_t *)words;
    uint32_t v = u[w * stride] >> off;
    if (off + (unsigned)bits > 32)
        v |= u[(w + 1) * stride] << (32 - off);
    return v & mask;
}

gptq_status gptq_pack_check(int rows, int cols, int bits)
{
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return gptq_fail(GPTQ_ERR_ARG, "pack: bits %d: use 2, 3, 4 or 8", bits);
    if (rows <= 0 || cols <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "pack: layer [%d, %d] is empty", rows, cols);
    if (((int64_t)cols * bits) % 32 != 0)
        return gptq_fail(GPTQ_ERR_ARG, "pack: %d input features × %d bits is not a whole number "
                         "of int32 words (need a multiple of %d features)", cols, bits,
                         bits == 3 ? 32 : 32 / bits);
    if (((int64_t)rows * bits) % 32 != 0)
        return gptq_fail(GPTQ_ERR_ARG, "pack: %d output features × %d bits is not a whole number "
                         "of int32 words for qzeros (need a multiple of %d)", rows, bits,
                         bits == 3 ? 32 : 32 / bits);
    return GPTQ_OK;
}

void gptq_packed_free(gptq_packed *p)
{
    if (!p)
        return;
    if (p->owned) {
        free(p->qweight);
        free(p->qzeros);
        free(p->scales);
        free(p->g_idx);
    }
    memset(p, 0, sizeof *p);
}

gptq_status gptq_pack(const gptq_quant_result *r, gptq_packed *out)
{
    memset(out, 0, sizeof *out);
    const int rows = r->rows, cols = r->cols, bits = r->bits, groups = r->groups;
    gptq_status st = gptq_pack_check(rows, cols, bits);
    if (st)
        return st;
    const uint32_t maxq = (1u << bits) - 1u;
    for (size_t i = 0; i < (size_t)groups * rows; i++) {
        if (r->zeros[i] < 1 || (uint32_t)r->zeros[i] > maxq + 1)
            return gptq_fail(GPTQ_ERR_ARG, "pack: zero point %d of group %zu, row %zu cannot be "
                             "stored as zero-1 in %d bits (quantize with v1_zeros on)",
                             r->zeros[i], i / rows, i % rows, bits);
    }
    for (int c = 0; c < cols; c++)
        if (r->g_idx[c] < 0 || r->g_idx[c] >= groups)
            return gptq_fail(GPTQ_ERR_ARG, "pack: g_idx[%d] = %d is outside [0, %d)", c,
                             r->g_idx[c], groups);
    const size_t qw_words = (size_t)cols * bits / 32, qz_words = (size_t)rows * bits / 32;
    out->bits = bits;
    out->rows = rows;
    out->cols = cols;
    out->groups = groups;
    out->group_size = groups == 1 ? -1 : (cols + groups - 1) / groups;
    out->owned = 1;
    out->qweight = calloc(qw_words * rows, sizeof *out->qweight);
    out->qzeros = calloc(qz_words * groups, sizeof *out->qzeros);
    out->scales = malloc((size_t)groups * rows * sizeof *out->scales);
    out->g_idx = malloc((size_t)cols * sizeof *out->g_idx);
    if (!out->qweight || !out->qzeros || !out->scales || !out->g_idx) {
        gptq_packed_free(out);
        return gptq_fail(GPTQ_ERR_NOMEM, "pack [%d, %d]: out of memory", rows, cols);
    }
    for (int row = 0; row < rows; row++) {
        const uint8_t *codes = r->codes + (size_t)row * cols;
        for (int c = 0; c < cols; c++)
            gptq_bits_put(out->qweight + row, (size_t)rows, bits, (size_t)c, codes[c]);
    }
    for (int g = 0; g < groups; g++)
        for (int row = 0; row < rows; row++) {
            size_t i = (size_t)g * rows + row;
            gptq_bits_put(out->qzeros + (size_t)g * qz_words, 1, bits, (size_t)row,
                          (uint32_t)(r->zeros[i] - 1));
            out->scales[i] = gptq_f32_to_f16(r->scales[i]);
        }
    memcpy(out->g_idx, r->g_idx, (size_t)cols * sizeof *out->g_idx);
    return GPTQ_OK;
}

static gptq_status check_g_idx(const gptq_packed *p)
{
    for (int c = 0; c < p->cols; c++)
        if (p->g_idx[c] < 0 || p->g_idx[c] >= p->groups)
            return gptq_fail(GPTQ_ERR_FORMAT, "g_idx[%d] = %d is outside [0, %d)", c,
                             p->g_idx[c], p->groups);
    return GPTQ_OK;
}

gptq_status gptq_packed_unpack(const gptq_packed *p, uint8_t *codes, int32_t *zeros)
{
    gptq_status st = gptq_pack_check(p->rows, p->cols, p->bits);
    if (st || (st = check_g_idx(p)))
        return st;
    const int rows = p->rows, cols = p->cols, bits = p->bits;
    const size_t qz_words = (size_t)rows * bits / 32;
    if (codes)
        for (int row = 0; row < rows; row++)
            for (int c = 0; c < cols; c++)
                codes[(size_t)row * cols + c] =
                    (uint8_t)gptq_bits_get(p->qweight + row, (size_t)rows, bits, (size_t)c);
    if (zeros)
        for (int g = 0; g < p->groups; g++)
            for (int row = 0; row < rows; row++)
                zeros[(size_t)g * rows + row] =
                    (int32_t)gptq_bits_get(p->qzeros + (size_t)g * qz_words, 1, bits,
                                           (size_t)row) + 1;
    return GPTQ_OK;
}

gptq_status gptq_packed_dequantize(const gptq_packed *p, float *W)
{
    const int rows = p->rows, cols = p->cols;
    uint8_t *codes = malloc((size_t)rows * cols);
    int32_t *zeros = malloc((size_t)p->groups * rows * sizeof *zeros);
    gptq_status st;
    if (!codes || !zeros) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "dequantize [%d, %d]: out of memory", rows, cols);
        goto done;
    }
    if ((st = gptq_packed_unpack(p, codes, zeros)))
        goto done;
    for (int row = 0; row < rows; row++)
        for (int c = 0; c < cols; c++) {
            size_t gi = (size_t)p->g_idx[c] * rows + row;
            float scale = gptq_f16_to_f32(p->scales[gi]);
            W[(size_t)row * cols + c] =
                scale * (float)((int32_t)codes[(size_t)row * cols + c] - zeros[gi]);
        }
done:
    free(codes);
    free(zeros);
    return st;
}

/* Add `delta` (+1 or -1) to every packed zero, after checking that none
 * leaves [0, 2^bits-1]. */
static gptq_status qzeros_shift(int32_t *qzeros, int groups, int rows, int bits, int delta,
                                const char *what)
{
    gptq_status st = gptq_pack_check(rows, 32, bits);
    if (st != GPTQ_OK)
        return st;
    const size_t words = (size_t)rows * bits / 32;
    const int32_t maxq = (1 << bits) - 1;
    for (int g = 0; g < groups; g++)
        for (int r = 0; r < rows; r++) {
            int32_t z = (int32_t)gptq_bits_get(qzeros + (size_t)g * words, 1, bits, (size_t)r);
            if (z + delta < 0 || z + delta > maxq)
                return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: group %d row %d stores %d, which "
                                 "the other layout cannot hold", what, g, r, z);
        }
    for (int g = 0; g < groups; g++)
        for (int r = 0; r < rows; r++) {
            int32_t *w = qzeros + (size_t)g * words;
            uint32_t z = gptq_bits_get(w, 1, bits, (size_t)r);
            gptq_bits_put(w, 1, bits, (size_t)r, (uint32_t)((int32_t)z + delta));
        }
    return GPTQ_OK;
}

gptq_status gptq_qzeros_v2_to_v1(int32_t *qzeros, int groups, int rows, int bits)
{
    return qzeros_shift(qzeros, groups, rows, bits, -1,
                        "gptq_v2 zeros to v1 (a zero of 0 has no v1 form)");
}

gptq_status gptq_qzeros_v1_to_v2(int32_t *qzeros, int groups, int rows, int bits)
{
    return qzeros_shift(qzeros, groups, rows, bits, +1,
                        "v1 zeros to gptq_v2 (a stored zero-1 of 2^bits-1 has no v2 form)");
}
