/* common/dtype.c: dtype table and fp16/bf16 <-> fp32 conversion. */
#include "dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[GPTQ_DT_COUNT] = {
    [GPTQ_DT_F32] = {"F32", 4}, [GPTQ_DT_F16] = {"F16", 2}, [GPTQ_DT_BF16] = {"BF16", 2},
    [GPTQ_DT_I32] = {"I32", 4}, [GPTQ_DT_I64] = {"I64", 8}, [GPTQ_DT_I16] = {"I16", 2},
    [GPTQ_DT_I8] = {"I8", 1},   [GPTQ_DT_U8] = {"U8", 1},   [GPTQ_DT_BOOL] = {"BOOL", 1},
    [GPTQ_DT_F64] = {"F64", 8},
};

size_t gptq_dtype_size(gptq_dtype dt) { return (unsigned)dt < GPTQ_DT_COUNT ? dtypes[dt].size : 0; }

const char *gptq_dtype_name(gptq_dtype dt)
{
    return (unsigned)dt < GPTQ_DT_COUNT ? dtypes[dt].name : "?";
}

int gptq_dtype_parse(const char *name, gptq_dtype *dt)
{
    for (int i = 0; i < GPTQ_DT_COUNT; i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            *dt = (gptq_dtype)i;
            return 0;
        }
    }
    return -1;
}

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float gptq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        /* subnormal: value = mant * 2^-24 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t gptq_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) /* inf or nan (keep nan quiet) */
        return (uint16_t)(sign | 0x7c00 | (absu > 0x7f800000u ? 0x200 : 0));
    if (absu >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absu < 0x38800000u) { /* below 2^-14: subnormal or zero in fp16 */
        /* adding 0.5 makes the hardware round the mantissa to a multiple of
         * 2^-24 with round-to-nearest-even */
        float a = bits_f32(absu) + 0.5f;
        return (uint16_t)(sign | (f32_bits(a) - 0x3f000000u));
    }
    uint32_t mant_odd = (absu >> 13) & 1;
    absu += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round half to even */
    return (uint16_t)(sign | (absu >> 13));
}

float gptq_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t gptq_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

int gptq_dtype_to_f32(gptq_dtype dt, const void *src, float *dst, size_t n)
{
    switch (dt) {
    case GPTQ_DT_F32:
        memcpy(dst, src, n * 4);
        return 0;
    case GPTQ_DT_F16: {
        const unsigned char *p = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = gptq_f16_to_f32(h);
        }
        return 0;
    }
    case GPTQ_DT_BF16: {
        const unsigned char *p = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = gptq_bf16_to_f32(h);
        }
        return 0;
    }
    case GPTQ_DT_I32: {
        const unsigned char *p = src;
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = (float)v;
        }
        return 0;
    }
    default:
        return -1;
    }
}
