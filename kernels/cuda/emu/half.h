// kernels/cuda/emu/half.h: cuda_fp16.h's types and conversions for the
// emulated module: IEEE binary16 bits, conversions rounded to nearest even
// (subnormals, infinities and NaN as on the device).
#pragma once

#include <stdint.h>
#include <string.h>

namespace gptq_emu {

static inline uint16_t f32_to_f16_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u, mant = x & 0x7fffffu;
    const int exp = (int)((x >> 23) & 0xff);
    if (exp == 255) // inf keeps its sign; every NaN becomes CUDA's canonical 0x7fff
        return mant ? (uint16_t)0x7fffu : (uint16_t)(sign | 0x7c00u);
    const int e = exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { // subnormal half (or zero)
        if (e < -10)
            return (uint16_t)sign;
        const uint32_t m = mant | 0x800000u;
        const int shift = 14 - e;
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++; // a carry into the exponent rounds up to the next binade or to inf
    return (uint16_t)(sign | h);
}

static inline float f16_bits_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
    uint32_t x;
    if (exp == 0) {
        if (!mant) {
            x = sign;
        } else { // subnormal: normalise
            int e = -1;
            uint32_t m = mant;
            do {
                e++;
                m <<= 1;
            } while (!(m & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (exp == 31) { // inf keeps its sign; NaN is CUDA's canonical 0x7fffffff
        x = mant ? 0x7fffffffu : sign | 0x7f800000u;
    } else {
        x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

} // namespace gptq_emu

struct __half_raw {
    unsigned short x;
};

struct alignas(2) __half {
    unsigned short __x;
    __half() = default;
    constexpr __half(const __half_raw &r) : __x(r.x) {}
    __half(float f) : __x(::gptq_emu::f32_to_f16_bits(f)) {}
    operator float() const { return ::gptq_emu::f16_bits_to_f32(__x); }
    operator __half_raw() const { return __half_raw{__x}; }
};

struct alignas(4) __half2 {
    __half x, y;
};

typedef __half half;
typedef __half2 half2;

static inline __half __float2half_rn(float f)
{
    return __half_raw{::gptq_emu::f32_to_f16_bits(f)};
}
static inline __half __float2half(float f) { return __float2half_rn(f); }
static inline float __half2float(__half h) { return ::gptq_emu::f16_bits_to_f32(h.__x); }
static inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
static inline __half2 __floats2half2_rn(float a, float b)
{
    return __half2{__float2half_rn(a), __float2half_rn(b)};
}
static inline __half2 __float2half2_rn(float a) { return __floats2half2_rn(a, a); }
static inline float __low2float(__half2 h) { return __half2float(h.x); }
static inline float __high2float(__half2 h) { return __half2float(h.y); }
static inline __half __low2half(__half2 h) { return h.x; }
static inline __half __high2half(__half2 h) { return h.y; }
static inline __half __ushort_as_half(unsigned short u) { return __half_raw{u}; }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
