/* kernels/cpu/qgemm_int8.c: packed 4- and 8-bit linears on integer dot
 * products (see the header for the arithmetic).
 *
 * qweight is [cols*bits/32, rows]: at 4 bits one word holds 8 columns'
 * codes of one row, nibble k = column k of the unit. Masking the word with
 * 0x0F in every byte leaves the even columns (0, 2, 4, 6), one per byte;
 * shifting by 4 first leaves the odd ones. So the rounded activation of a
 * unit is stored as [a0 a2 a4 a6 a1 a3 a5 a7], and two dot instructions
 * multiply 8 rows' codes by 4 activations broadcast from one int32 each: no
 * unpacking of the weights beyond one AND and one shift. At 8 bits a word is
 * 4 columns' codes, bytes in column order, used as they are.
 *
 * The kernel (kernels/cpu/qgemm_int8_body.h) computes blocks of 8 or 16 rows
 * for 1, 2 or 4 tokens over every column: int32 sums per block of 32
 * columns, scaled by the block's activation scale into float sums per
 * group, which the group's weight scale and zero close. Threads (the pool's)
 * own contiguous row blocks; tokens go in chunks whose int8 rows stay in
 * cache while a thread's weights are re-read for each few tokens. */
#include "kernels/cpu/qgemm_int8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gptq/error.h"
#include "kernels/cpu/features.h"
#include "kernels/cpu/pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "kernels/cpu/packed_x86.h"

#define I8_BLOCK 32
/* Tokens per chunk: 64 rows of int8 activations (64 × cols bytes) stay in
 * L2 while a thread's row blocks walk them. */
#define I8_TOKENS 64
/* Below this many weights the call runs on one thread. */
#define I8_MIN_PARALLEL ((size_t)1 << 16)
/* Decoding prefetches the next block's word rows when a thread's share of
 * them is at most this many rows (48 KiB per word row). A word row of a
 * few KiB ends before the hardware's prefetchers ramp up: with the prefetch
 * SmolLM2's GEMVs (576-1536 rows) ran at 0.64-0.66 of a plain read's
 * bandwidth instead of 0.39-0.48 on a Zen 4 VM, 7B's (4096-11008 rows)
 * 0.79 instead of 0.72; from 16000 rows per thread on it cost 5-12%. */
#define I8_PREFETCH_ROWS 12288

typedef enum i8_isa { I8_NONE = 0, I8_AVX2, I8_AVXVNNI, I8_VNNI512 } i8_isa;

/* The best dot instruction the CPU has, capped by GPTQ_QGEMM_INT8_ISA (avx2,
 * avx-vnni: for tests of the lesser kernels on a bigger CPU), read once. */
static i8_isa isa_get(void)
{
    static int isa = -1;
    if (isa < 0) {
        __builtin_cpu_init();
        int best = I8_AVX2;
        if (!gptq_cpu_have_avx2())
            best = I8_NONE;
        else if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512bw"))
            best = I8_VNNI512;
        else if (__builtin_cpu_supports("avxvnni"))
            best = I8_AVXVNNI;
        static const char *const names[] = {"auto", "avx2", "avx-vnni"}; /* enum order */
        const int cap = gptq_cpu_path_from_env("GPTQ_QGEMM_INT8_ISA", names, 3);
        if (cap == I8_AVXVNNI && best == I8_VNNI512 && !__builtin_cpu_supports("avxvnni"))
            best = I8_AVX2; /* an AVX-512 CPU without the VEX form */
        else if (cap && cap < best)
            best = cap;
        isa = best;
    }
    return (i8_isa)isa;
}

typedef struct i8_job {
    const gptq_packed *P;
    const int8_t *xq;      /* [n, cols]: the rounded activation, units in kernel order */
    const float *xd;       /* [n, blocks]: each block's scale d */
    const float *xg;       /* [n, groups]: Σ_{b in g} d·Σa, for the zero term */
    const int32_t *bgroup; /* [blocks]: each block's group */
    float *gacc;           /* [rows]: one token's sums of the current group (i8_gemv) */
    float *y;              /* [n, rows] */
    size_t rows, cols;
    int n, blocks, groups;
    int row_blocks16, row_blocks; /* 16-row blocks, plus one of 8 when rows % 16 */
    int bi, nbmax;
    i8_isa isa;
} i8_job;

typedef void (*i8_kernel)(const i8_job *J, size_t r0, size_t i0);
typedef void (*i8_gemv)(const i8_job *J, size_t r0, size_t r1, size_t i, float *gacc);

#define I8_SUFFIX avx2
#define I8_TARGET __attribute__((target("avx2,fma,f16c")))
/* u8·s8 pairs into int16 (no saturation: 2·15·127 at 4 bits), pairs of
 * those into int32 */
#define I8_DOT(acc, u, s)                                                                         \
    _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)),                   \
                                              _mm256_set1_epi16(1)))
#include "kernels/cpu/qgemm_int8_body.h"
#undef I8_SUFFIX
#undef I8_TARGET
#undef I8_DOT

#define I8_SUFFIX avxvnni
#define I8_TARGET __attribute__((target("avx2,fma,f16c,avxvnni")))
#define I8_DOT(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#include "kernels/cpu/qgemm_int8_body.h"
#undef I8_SUFFIX
#undef I8_TARGET
#undef I8_DOT

#define I8_SUFFIX vnni512
#define I8_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
#define I8_DOT(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#include "kernels/cpu/qgemm_int8_body.h"
#undef I8_SUFFIX
#undef I8_TARGET
#undef I8_DOT

/* The AVX-512 form of the batch kernel (the body's, with 16 rows per
 * vector): half the instructions per product, which is what bounds the
 * 8-row kernel on prefill. y[i0 + 0..NB)[r0 + 0..16·NV). */
#define Z_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))

/* [lo, hi] as one vector of 16 (AVX-512F only: insertf32x8 is DQ) */
Z_TARGET static inline __m512 join8(__m256 lo, __m256 hi)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)),
                                               _mm256_castps_pd(hi), 1));
}

Z_TARGET static inline __attribute__((always_inline)) void
z_block(const i8_job *J, size_t r0, size_t i0, const int bits, const int NV, const int NB)
{
    const size_t rows = J->rows, cols = J->cols;
    const int upb = bits == 4 ? 4 : 8, ucols = bits == 4 ? 8 : 4;
    const int blocks = J->blocks, groups = J->groups;
    const int8_t *xq = J->xq + i0 * cols;
    const float *xd = J->xd + i0 * blocks;
    const float *xg = J->xg + i0 * groups;
    const uint32_t *qweight = (const uint32_t *)J->P->qweight;
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    for (int i = 0; i < NB; i++)
        for (int v = 0; v < NV; v++)
            _mm512_storeu_ps(J->y + (i0 + i) * rows + r0 + 16 * v, _mm512_setzero_ps());
    int b = 0;
    while (b < blocks) {
        const int g = J->bgroup[b];
        __m512 gacc[4][2];
        for (int i = 0; i < NB; i++)
            for (int v = 0; v < NV; v++)
                gacc[i][v] = _mm512_setzero_ps();
        for (; b < blocks && J->bgroup[b] == g; b++) {
            __m512i iacc[4][2];
            for (int i = 0; i < NB; i++)
                for (int v = 0; v < NV; v++)
                    iacc[i][v] = _mm512_setzero_si512();
            const uint32_t *wp = qweight + (size_t)b * upb * rows + r0;
#pragma GCC unroll 8
            for (int j = 0; j < upb; j++) {
                const size_t c = ((size_t)b * upb + j) * ucols;
                __m512i w[2];
                for (int v = 0; v < NV; v++)
                    w[v] = _mm512_loadu_si512((const void *)(wp + (size_t)j * rows + 16 * v));
                if (bits == 4) {
                    __m512i lo[2], hi[2];
                    for (int v = 0; v < NV; v++) {
                        lo[v] = _mm512_and_si512(w[v], low4);
                        hi[v] = _mm512_and_si512(_mm512_srli_epi16(w[v], 4), low4);
                    }
                    for (int i = 0; i < NB; i++) {
                        int32_t ev, od;
                        memcpy(&ev, xq + i * cols + c, 4);
                        memcpy(&od, xq + i * cols + c + 4, 4);
                        const __m512i e = _mm512_set1_epi32(ev), o = _mm512_set1_epi32(od);
                        for (int v = 0; v < NV; v++)
                            iacc[i][v] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(iacc[i][v], lo[v], e),
                                                             hi[v], o);
                    }
                } else {
                    for (int i = 0; i < NB; i++) {
                        int32_t a4;
                        memcpy(&a4, xq + i * cols + c, 4);
                        const __m512i a = _mm512_set1_epi32(a4);
                        for (int v = 0; v < NV; v++)
                            iacc[i][v] = _mm512_dpbusd_epi32(iacc[i][v], w[v], a);
                    }
                }
            }
            for (int i = 0; i < NB; i++) {
                const __m512 d = _mm512_set1_ps(xd[(size_t)i * blocks + b]);
                for (int v = 0; v < NV; v++)
                    gacc[i][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[i][v]), d, gacc[i][v]);
            }
        }
        __m512 s[2], z[2];
        for (int v = 0; v < NV; v++) {
            __m256 s0, z0, s1, z1;
            gptq_packed_group8(J->P, g, r0 + 16 * v, &s0, &z0);
            gptq_packed_group8(J->P, g, r0 + 16 * v + 8, &s1, &z1);
            s[v] = join8(s0, s1);
            z[v] = join8(z0, z1);
        }
        for (int i = 0; i < NB; i++) {
            const __m512 sum = _mm512_set1_ps(xg[(size_t)i * groups + g]);
            for (int v = 0; v < NV; v++) {
                float *yp = J->y + (i0 + i) * rows + r0 + 16 * v;
                const __m512 t = _mm512_fnmadd_ps(z[v], sum, gacc[i][v]);
                _mm512_storeu_ps(yp, _mm512_fmadd_ps(s[v], t, _mm512_loadu_ps(yp)));
            }
        }
    }
}

#define Z_DEF(B, V, NB)                                                                           \
    Z_TARGET static void z_k_##B##_##V##_##NB(const i8_job *J, size_t r0, size_t i0)             \
    {                                                                                             \
        z_block(J, r0, i0, B, V, NB);                                                             \
    }
Z_DEF(4, 1, 1)
Z_DEF(4, 1, 2)
Z_DEF(4, 1, 4)
Z_DEF(4, 2, 1)
Z_DEF(4, 2, 2)
Z_DEF(4, 2, 4)
Z_DEF(8, 1, 1)
Z_DEF(8, 1, 2)
Z_DEF(8, 1, 4)
Z_DEF(8, 2, 1)
Z_DEF(8, 2, 2)
Z_DEF(8, 2, 4)
/* [bits 4, 8][NV − 1][NB 1, 2, 4] */
static const i8_kernel z_kernels[2][2][3] = {
    {{z_k_4_1_1, z_k_4_1_2, z_k_4_1_4}, {z_k_4_2_1, z_k_4_2_2, z_k_4_2_4}},
    {{z_k_8_1_1, z_k_8_1_2, z_k_8_1_4}, {z_k_8_2_1, z_k_8_2_2, z_k_8_2_4}},
};

/* Round x [cols] to int8 per block of 32: xq in kernel order, d per block,
 * and the zero term's Σ_{b in g} d·Σa per group into xg [groups] (zeroed
 * here). A block holding a NaN or an infinity gets d = NaN, so the outputs
 * it feeds are NaN as in float arithmetic. */
__attribute__((target("avx2,fma,f16c"))) static void
round_row(const float *x, int cols, int bits, const int32_t *bgroup, int groups, int8_t *xq,
          float *xd, float *xg)
{
    /* bytes of a packed 8-column unit, in kernel order: even columns, then odd */
    const __m256i unit_order = _mm256_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15,
                                                0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13,
                                                15);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int g = 0; g < groups; g++)
        xg[g] = 0.0f;
    for (int b = 0; b < cols / I8_BLOCK; b++) {
        const float *xb = x + (size_t)b * I8_BLOCK;
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v[k], v[k], _CMP_UNORD_Q)); /* max drops NaN */
        }
        float m[8], big = 0.0f;
        _mm256_storeu_ps(m, amax);
        for (int k = 0; k < 8; k++)
            big = m[k] > big ? m[k] : big;
        if (!isfinite(big) || _mm256_movemask_ps(nan)) {
            memset(xq + (size_t)b * I8_BLOCK, 0, I8_BLOCK);
            xd[b] = NAN;
            xg[bgroup[b]] = NAN;
            continue;
        }
        const float d = big / 127.0f;
        const __m256 inv = _mm256_set1_ps(d > 0.0f ? 127.0f / big : 0.0f);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], inv)); /* nearest, ties to even */
        const __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]),
                                           _mm256_add_epi32(q[2], q[3]));
        int32_t part[8], sum = 0;
        _mm256_storeu_si256((__m256i *)part, s);
        for (int k = 0; k < 8; k++)
            sum += part[k];
        /* packs interleave the 128-bit lanes; the permute restores column order */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        if (bits == 4)
            p = _mm256_shuffle_epi8(p, unit_order);
        _mm256_storeu_si256((__m256i *)(xq + (size_t)b * I8_BLOCK), p);
        xd[b] = d;
        xg[bgroup[b]] += d * (float)sum;
    }
}

/* One token: each part a contiguous range of rows (multiples of 8). */
static void i8_gemv_part(void *arg, int part, int parts)
{
    const i8_job *J = arg;
    const i8_gemv fn = J->isa == I8_VNNI512  ? i8_gemvs_vnni512[J->bi]
                       : J->isa == I8_AVXVNNI ? i8_gemvs_avxvnni[J->bi]
                                              : i8_gemvs_avx2[J->bi];
    long v0, v1;
    gptq_pool_split((long)J->rows / 8, part, parts, 1, &v0, &v1);
    if (v1 <= v0)
        return;
    for (int i = 0; i < J->n; i++)
        fn(J, (size_t)v0 * 8, (size_t)v1 * 8, (size_t)i, J->gacc + (size_t)v0 * 8);
}

static void i8_part(void *arg, int part, int parts)
{
    const i8_job *J = arg;
    const i8_kernel(*k)[3] = J->isa == I8_VNNI512  ? i8_kernels_vnni512[J->bi]
                             : J->isa == I8_AVXVNNI ? i8_kernels_avxvnni[J->bi]
                                                    : i8_kernels_avx2[J->bi];
    const int zmm = J->isa == I8_VNNI512;
    long b0, b1;
    gptq_pool_split(J->row_blocks, part, parts, zmm ? 2 : 1, &b0, &b1);
    for (int t0 = 0; t0 < J->n; t0 += I8_TOKENS) {
        const int t1 = J->n - t0 < I8_TOKENS ? J->n : t0 + I8_TOKENS;
        for (long b = b0; b < b1; b++) {
            if (zmm && b < J->row_blocks16) { /* 32 rows, or the last 16 */
                const int nv = b + 1 < b1 && b + 1 < J->row_blocks16 ? 2 : 1;
                int i = t0;
                for (; t1 - i >= 4; i += 4)
                    z_kernels[J->bi][nv - 1][2](J, (size_t)b * 16, (size_t)i);
                for (; t1 - i >= 2; i += 2)
                    z_kernels[J->bi][nv - 1][1](J, (size_t)b * 16, (size_t)i);
                if (t1 - i >= 1)
                    z_kernels[J->bi][nv - 1][0](J, (size_t)b * 16, (size_t)i);
                b += nv - 1;
                continue;
            }
            const int nv = b < J->row_blocks16 ? 2 : 1;
            int i = t0;
            for (; J->nbmax >= 4 && t1 - i >= 4; i += 4)
                k[nv - 1][2](J, (size_t)b * 16, (size_t)i);
            for (; t1 - i >= 2; i += 2)
                k[nv - 1][1](J, (size_t)b * 16, (size_t)i);
            if (t1 - i >= 1)
                k[nv - 1][0](J, (size_t)b * 16, (size_t)i);
        }
    }
}

/* The conditions of gptq_cpu_qgemm_int8_fits that cost nothing to ask. */
static int shape_fits(const gptq_packed *P)
{
    const i8_isa isa = isa_get();
    return P && isa != I8_NONE && P->g_idx && P->rows > 0 && P->rows % 8 == 0 &&
           P->cols % I8_BLOCK == 0 && (P->bits == 4 || (P->bits == 8 && isa != I8_AVX2));
}

int gptq_cpu_qgemm_int8_fits(const gptq_packed *P)
{
    if (!shape_fits(P))
        return 0;
    for (int c = 0; c < P->cols; c++)
        if (P->g_idx[c] != P->g_idx[c - c % I8_BLOCK])
            return 0;
    return 1;
}

gptq_status gptq_cpu_qgemm_int8(const gptq_packed *P, const float *x, float *y, int n)
{
    /* the caller asked gptq_cpu_qgemm_int8_fits (its walk over g_idx is
     * not repeated on every call) */
    if (!shape_fits(P))
        return gptq_fail(GPTQ_ERR_ARG, "qgemm int8: layer [%d, %d] at %d bits does not fit the "
                                       "int8 kernel on this CPU",
                         P ? P->rows : 0, P ? P->cols : 0, P ? P->bits : 0);
    if (n <= 0)
        return GPTQ_OK;
    const int rows = P->rows, cols = P->cols, groups = P->groups, blocks = cols / I8_BLOCK;
    const size_t bytes = (size_t)n * cols + ((size_t)n * blocks + (size_t)n * groups) * 4 +
                         (size_t)blocks * 4 + (size_t)rows * 4;
    /* the calling thread's scratch, kept between calls: a prefill's few MB
     * freshly mapped per linear cost a tenth of its time in page faults */
    char *mem = (char *)gptq_cpu_scratch((bytes + 3) / 4);
    if (!mem)
        return gptq_fail(GPTQ_ERR_NOMEM, "qgemm int8 [%d, %d]: out of memory for batch %d", rows,
                         cols, n);
    float *xd = (float *)mem, *xg = xd + (size_t)n * blocks, *gacc = xg + (size_t)n * groups;
    int32_t *bgroup = (int32_t *)(gacc + rows);
    int8_t *xq = (int8_t *)(bgroup + blocks);
    for (int b = 0; b < blocks; b++)
        bgroup[b] = P->g_idx[b * I8_BLOCK];
    for (int i = 0; i < n; i++)
        round_row(x + (size_t)i * cols, cols, P->bits, bgroup, groups, xq + (size_t)i * cols,
                  xd + (size_t)i * blocks, xg + (size_t)i * groups);
    const i8_isa isa = isa_get();
    i8_job J = {P, xq, xd, xg, bgroup, gacc, y, (size_t)rows, (size_t)cols, n, blocks, groups,
                rows / 16, rows / 16 + (rows % 16 != 0), P->bits == 4 ? 0 : 1,
                isa == I8_VNNI512 ? 4 : 2, isa};
    gptq_pool_run(n == 1 ? i8_gemv_part : i8_part, &J, (size_t)rows * cols >= I8_MIN_PARALLEL);
    return GPTQ_OK;
}

const char *gptq_cpu_qgemm_int8_isa(void)
{
    static const char *const names[] = {"none", "avx2", "avx-vnni", "avx512-vnni"};
    return names[isa_get()];
}

#else /* not x86: no int8 kernel */

int gptq_cpu_qgemm_int8_fits(const gptq_packed *P)
{
    (void)P;
    return 0;
}

gptq_status gptq_cpu_qgemm_int8(const gptq_packed *P, const float *x, float *y, int n)
{
    (void)P, (void)x, (void)y, (void)n;
    return gptq_fail(GPTQ_ERR_ARG, "qgemm int8: no int8 kernel on this CPU");
}

const char *gptq_cpu_qgemm_int8_isa(void)
{
    return "none";
}
#endif
