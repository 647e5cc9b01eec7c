/* kernels/cpu/packed_x86.h: a group's fp16 scales and zero points for 8
 * output rows of a packed v1 linear (include/gptq/quant.h), as AVX2 float
 * vectors; shared by the float and the int8 kernels of kernels/cpu/. */
#ifndef GPTQ_KERNELS_CPU_PACKED_X86_H
#define GPTQ_KERNELS_CPU_PACKED_X86_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <stdint.h>

#include "gptq/quant.h"

/* Scales and zeros (stored + 1) of group g for the 8 rows from r (r a
 * multiple of 8). */
__attribute__((target("avx2,fma,f16c"))) static inline void
gptq_packed_group8(const gptq_packed *P, int g, size_t r, __m256 *scale, __m256 *zero)
{
    const size_t rows = (size_t)P->rows, zwords = rows * P->bits / 32;
    const int bits = P->bits;
    *scale = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(P->scales + (size_t)g * rows + r)));
    if (bits == 4) { /* the 8 zeros are one word: shift each lane to its nibble */
        const __m256i word = _mm256_set1_epi32(((const int32_t *)P->qzeros)[(size_t)g * zwords + r / 8]);
        const __m256i z = _mm256_and_si256(
            _mm256_srlv_epi32(word, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
            _mm256_set1_epi32(15));
        *zero = _mm256_cvtepi32_ps(_mm256_add_epi32(z, _mm256_set1_epi32(1)));
        return;
    }
    const uint64_t mask = (1u << bits) - 1u;
    const size_t bit = r * bits, w = bit / 32;
    const int off = (int)(bit % 32);
    const uint32_t *zq = (const uint32_t *)P->qzeros + (size_t)g * zwords;
    /* the 8 zeros span 8·bits ≤ 64 bits from `off`; the second word is read
     * only when they reach it, so never past the row */
    uint64_t window = zq[w];
    if (off + 8 * bits > 32)
        window |= (uint64_t)zq[w + 1] << 32;
    window >>= off;
    int32_t z[8];
    for (int k = 0; k < 8; k++)
        z[k] = (int32_t)((window >> (k * bits)) & mask) + 1;
    *zero = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)z));
}
#endif

#endif
