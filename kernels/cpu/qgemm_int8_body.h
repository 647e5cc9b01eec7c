/* kernels/cpu/qgemm_int8_body.h: the int8 kernel's body, compiled once per
 * instruction set: kernels/cpu/qgemm_int8.c defines I8_SUFFIX (a name),
 * I8_TARGET (the function attribute) and I8_DOT(acc, u8, s8) (acc + the
 * sums of four u8·s8 products per int32 lane), then includes this file.
 * Deliberately without an include guard. */

#define I8_CAT2(a, b) a##_##b
#define I8_CAT(a, b) I8_CAT2(a, b)
#define I8_FN(name) I8_CAT(name, I8_SUFFIX)

/* y[i0 + 0..NB)[r0 + 0..8·NV) over every column (see the header comment of
 * kernels/cpu/qgemm_int8.c). */
I8_TARGET static inline __attribute__((always_inline)) void
I8_FN(i8_block)(const i8_job *J, size_t r0, size_t i0, const int bits, const int NV, const int NB)
{
    const size_t rows = J->rows, cols = J->cols;
    const int upb = bits == 4 ? 4 : 8; /* words of a row per block of 32 columns */
    const int ucols = bits == 4 ? 8 : 4;
    const int blocks = J->blocks, groups = J->groups;
    const int8_t *xq = J->xq + i0 * cols;
    const float *xd = J->xd + i0 * blocks;
    const float *xg = J->xg + i0 * groups;
    const uint32_t *qweight = (const uint32_t *)J->P->qweight;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int i = 0; i < NB; i++)
        for (int v = 0; v < NV; v++)
            _mm256_storeu_ps(J->y + (i0 + i) * rows + r0 + 8 * v, _mm256_setzero_ps());
    int b = 0;
    while (b < blocks) {
        const int g = J->bgroup[b];
        __m256 gacc[4][2];
        for (int i = 0; i < NB; i++)
            for (int v = 0; v < NV; v++)
                gacc[i][v] = _mm256_setzero_ps();
        for (; b < blocks && J->bgroup[b] == g; b++) {
            __m256i iacc[4][2];
            for (int i = 0; i < NB; i++)
                for (int v = 0; v < NV; v++)
                    iacc[i][v] = _mm256_setzero_si256();
            const uint32_t *wp = qweight + (size_t)b * upb * rows + r0;
#pragma GCC unroll 8
            for (int j = 0; j < upb; j++) {
                const size_t c = ((size_t)b * upb + j) * ucols;
                __m256i w[2];
                for (int v = 0; v < NV; v++)
                    w[v] = _mm256_loadu_si256((const __m256i *)(wp + (size_t)j * rows + 8 * v));
                if (bits == 4) {
                    __m256i lo[2], hi[2];
                    for (int v = 0; v < NV; v++) {
                        lo[v] = _mm256_and_si256(w[v], low4);
                        hi[v] = _mm256_and_si256(_mm256_srli_epi16(w[v], 4), low4);
                    }
                    for (int i = 0; i < NB; i++) {
                        int32_t ev, od;
                        memcpy(&ev, xq + i * cols + c, 4);
                        memcpy(&od, xq + i * cols + c + 4, 4);
                        const __m256i e = _mm256_set1_epi32(ev), o = _mm256_set1_epi32(od);
                        for (int v = 0; v < NV; v++)
                            iacc[i][v] = I8_DOT(I8_DOT(iacc[i][v], lo[v], e), hi[v], o);
                    }
                } else {
                    for (int i = 0; i < NB; i++) {
                        int32_t a4;
                        memcpy(&a4, xq + i * cols + c, 4);
                        const __m256i a = _mm256_set1_epi32(a4);
                        for (int v = 0; v < NV; v++)
                            iacc[i][v] = I8_DOT(iacc[i][v], w[v], a);
                    }
                }
            }
            for (int i = 0; i < NB; i++) {
                const __m256 d = _mm256_broadcast_ss(xd + (size_t)i * blocks + b);
                for (int v = 0; v < NV; v++)
                    gacc[i][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i][v]), d, gacc[i][v]);
            }
        }
        __m256 s[2], z[2];
        for (int v = 0; v < NV; v++)
            gptq_packed_group8(J->P, g, r0 + 8 * v, &s[v], &z[v]);
        for (int i = 0; i < NB; i++) {
            const __m256 sum = _mm256_broadcast_ss(xg + (size_t)i * groups + g);
            for (int v = 0; v < NV; v++) {
                float *yp = J->y + (i0 + i) * rows + r0 + 8 * v;
                const __m256 t = _mm256_fnmadd_ps(z[v], sum, gacc[i][v]);
                _mm256_storeu_ps(yp, _mm256_fmadd_ps(s[v], t, _mm256_loadu_ps(yp)));
            }
        }
    }
}

/* One token (i) for rows [r0, r1) (multiples of 8), walking the input in
 * blocks of 32 columns and, inside each block, every row of the range: a
 * block's few word rows are read contiguously across the range, so the
 * weights stream in order (decoding is bound by reading them once).
 * gacc [r1 − r0] is the thread's float sums of the current group. */
I8_TARGET static inline __attribute__((always_inline)) void
I8_FN(i8_gemv_body)(const i8_job *J, size_t r0, size_t r1, size_t i, float *gacc, const int bits)
{
    const size_t rows = J->rows, cols = J->cols;
    const int upb = bits == 4 ? 4 : 8;
    const int ucols = bits == 4 ? 8 : 4;
    const int blocks = J->blocks, groups = J->groups;
    const int8_t *xq = J->xq + i * cols;
    const float *xd = J->xd + (size_t)i * blocks;
    const float *xg = J->xg + (size_t)i * groups;
    float *y = J->y + i * rows;
    const uint32_t *qweight = (const uint32_t *)J->P->qweight;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    /* the next block's word rows, while this block's are multiplied: when
     * they are short (see I8_PREFETCH_ROWS) */
    const int prefetch = r1 - r0 <= I8_PREFETCH_ROWS;
    for (size_t r = r0; r < r1; r += 8)
        _mm256_storeu_ps(y + r, _mm256_setzero_ps());
    for (int b = 0; b < blocks; b++) {
        const int g = J->bgroup[b];
        const int first = b == 0 || J->bgroup[b - 1] != g;
        const int last = b == blocks - 1 || J->bgroup[b + 1] != g;
        /* the block's activation, broadcast once for every row */
        __m256i a[8];
        for (int k = 0; k < 8; k++) {
            int32_t v4;
            memcpy(&v4, xq + (size_t)b * 32 + 4 * k, 4);
            a[k] = _mm256_set1_epi32(v4);
        }
        const __m256 d = _mm256_broadcast_ss(xd + b);
        const uint32_t *wp = qweight + (size_t)b * upb * rows;
        const uint32_t *wn = b + 1 < blocks ? wp + (size_t)upb * rows : wp;
        for (size_t r = r0; r < r1; r += 8) {
            __m256i iacc = _mm256_setzero_si256();
            if (prefetch && ((r - r0) & 15) == 0) /* a cache line of each word row */
                for (int j = 0; j < upb; j++)
                    _mm_prefetch((const char *)(wn + (size_t)j * rows + r), _MM_HINT_T0);
#pragma GCC unroll 8
            for (int j = 0; j < upb; j++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(wp + (size_t)j * rows + r));
                if (bits == 4) {
                    iacc = I8_DOT(iacc, _mm256_and_si256(w, low4), a[2 * j]);
                    iacc = I8_DOT(iacc, _mm256_and_si256(_mm256_srli_epi16(w, 4), low4),
                                  a[2 * j + 1]);
                } else {
                    iacc = I8_DOT(iacc, w, a[j]);
                }
            }
            float *ga = gacc + (r - r0);
            const __m256 part = _mm256_mul_ps(_mm256_cvtepi32_ps(iacc), d);
            _mm256_storeu_ps(ga, first ? part : _mm256_add_ps(part, _mm256_loadu_ps(ga)));
        }
        if (!last)
            continue;
        const __m256 sum = _mm256_broadcast_ss(xg + g);
        for (size_t r = r0; r < r1; r += 8) {
            __m256 s, z;
            gptq_packed_group8(J->P, g, r, &s, &z);
            const __m256 t = _mm256_fnmadd_ps(z, sum, _mm256_loadu_ps(gacc + (r - r0)));
            _mm256_storeu_ps(y + r, _mm256_fmadd_ps(s, t, _mm256_loadu_ps(y + r)));
        }
    }
    (void)ucols;
}

I8_TARGET static void I8_FN(i8_gemv_4)(const i8_job *J, size_t r0, size_t r1, size_t i, float *gacc)
{
    I8_FN(i8_gemv_body)(J, r0, r1, i, gacc, 4);
}

I8_TARGET static void I8_FN(i8_gemv_8)(const i8_job *J, size_t r0, size_t r1, size_t i, float *gacc)
{
    I8_FN(i8_gemv_body)(J, r0, r1, i, gacc, 8);
}

static const i8_gemv I8_FN(i8_gemvs)[2] = {I8_FN(i8_gemv_4), I8_FN(i8_gemv_8)};

#define I8_DEF(B, V, NB)                                                                          \
    I8_TARGET static void I8_CAT(I8_FN(i8_k), B##_##V##_##NB)(const i8_job *J, size_t r0,        \
                                                               size_t i0)                       \
    {                                                                                             \
        I8_FN(i8_block)(J, r0, i0, B, V, NB);                                                     \
    }
I8_DEF(4, 1, 1)
I8_DEF(4, 1, 2)
I8_DEF(4, 1, 4)
I8_DEF(4, 2, 1)
I8_DEF(4, 2, 2)
I8_DEF(4, 2, 4)
I8_DEF(8, 1, 1)
I8_DEF(8, 1, 2)
I8_DEF(8, 1, 4)
I8_DEF(8, 2, 1)
I8_DEF(8, 2, 2)
I8_DEF(8, 2, 4)

/* [bits 4, 8][NV − 1][NB 1, 2, 4] */
static const i8_kernel I8_FN(i8_kernels)[2][2][3] = {
    {{I8_CAT(I8_FN(i8_k), 4_1_1), I8_CAT(I8_FN(i8_k), 4_1_2), I8_CAT(I8_FN(i8_k), 4_1_4)},
     {I8_CAT(I8_FN(i8_k), 4_2_1), I8_CAT(I8_FN(i8_k), 4_2_2), I8_CAT(I8_FN(i8_k), 4_2_4)}},
    {{I8_CAT(I8_FN(i8_k), 8_1_1), I8_CAT(I8_FN(i8_k), 8_1_2), I8_CAT(I8_FN(i8_k), 8_1_4)},
     {I8_CAT(I8_FN(i8_k), 8_2_1), I8_CAT(I8_FN(i8_k), 8_2_2), I8_CAT(I8_FN(i8_k), 8_2_4)}},
};

#undef I8_DEF
#undef I8_FN
#undef I8_CAT
#undef I8_CAT2
