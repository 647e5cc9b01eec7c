/* kernels/cpu/qgemm.c: y = x · dequant(P)ᵀ on packed GPTQ v1 weights.
 *
 * qweight is [cols*bits/32, rows]: one word row holds the same input columns
 * for every output row, so 8 adjacent output rows are one AVX2 load. The
 * GEMV kernel walks "units" (the fewest words that hold whole codes: 1 word
 * of 16/8/4 codes at 2/4/8 bits, 3 words of 32 codes at 3 bits) down the
 * input dimension for a block of 16 output rows and splits the product as
 *   y[r] = Σ_c x[c]·s[g(c)][r]·q[r,c]  −  Σ_g s[g][r]·z[g][r]·X_g,
 *   X_g  = Σ_{c : g_idx[c] = g} x[c],
 * so zeros cost O(groups) per row instead of O(cols), for any g_idx.
 * Two tricks keep the inner loop at ~3 instructions per code and 8 rows:
 *  - a code at bit offset o is masked in place, not shifted: cvt(v & m<<o)
 *    is q·2^o exactly, and x[c] is pre-multiplied by 2^-o (exact, a power
 *    of two) once per call; the top code of a word is shifted (sign bit).
 *  - when every unit lies in one group (no act-order, group size a multiple
 *    of the unit, the usual case) the scale multiplies a partial sum every
 *    8 codes; with act-order it multiplies each dequantized column.
 * Threads (the pool's, kernels/cpu/pool.h) own contiguous row blocks; the
 * input dimension is walked in chunks
 * of QG_CHUNK_WORDS word rows so that a thread streams a few word rows of its
 * range sequentially instead of jumping rows*4 bytes between loads.
 *
 * Large batches dequantize tiles of rows to float32 (AVX2, transposed, in
 * the packed orientation; or row by row with the portable row_dequant that
 * the scalar GEMV uses) into the thread's scratch (kernels/cpu/pool.h: a
 * fresh 4 MiB buffer per call was mapped and faulted in every time) and
 * call cblas_sgemm. */
#include "kernels/cpu/qgemm.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "kernels/cpu/features.h"
#include "kernels/cpu/packed_x86.h"
#include "kernels/cpu/pool.h"
#include "kernels/cpu/qgemm_int8.h"
#include "gptq/error.h"

#if defined(__x86_64__) || defined(__i386__)
#define QG_X86 1
#include <immintrin.h>
#endif

/* Word rows of qweight per chunk of the input dimension (see the header
 * comment), i.e. concurrent sequential streams per thread. Measured with one
 * thread of an AMD EPYC (Zen), batch 1: on 11008×4096, 6..12 words are within
 * 10% of each other at every bit width, 18 words 10..60% slower, 32 words
 * 30%; on 4096×4096 4-bit, 64 words 2× and no chunking (512 words) 3×. */
#define QG_CHUNK_WORDS 9
/* Rows of W dequantized per cblas_sgemm call on the large-batch path. */
#define QG_TILE_BYTES (4u << 20)
/* Below this many weights the call runs on one thread. */
#define QG_MIN_PARALLEL ((size_t)1 << 16)

static int unit_codes(int bits)
{
    return bits == 3 ? 32 : 32 / bits;
}

/* ---- checks and path selection ------------------------------------------- */

static gptq_status qg_check(const gptq_packed *P, const float *x, const float *y, int n)
{
    if (!P)
        return gptq_fail(GPTQ_ERR_ARG, "qgemm: no packed layer given");
    const int bits = P->bits, rows = P->rows, cols = P->cols;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return gptq_fail(GPTQ_ERR_ARG, "qgemm: bits %d: use 2, 3, 4 or 8", bits);
    if (rows <= 0 || cols <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "qgemm: layer [%d, %d] is empty", rows, cols);
    if (((int64_t)cols * bits) % 32 || ((int64_t)rows * bits) % 32)
        return gptq_fail(GPTQ_ERR_ARG,
                         "qgemm: layer [%d out, %d in] at %d bits is not a whole number of "
                         "int32 words per row of qweight/qzeros (need multiples of %d)",
                         rows, cols, bits, unit_codes(bits));
    if (P->groups <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "qgemm: %d groups: need at least 1", P->groups);
    if (n < 0)
        return gptq_fail(GPTQ_ERR_ARG, "qgemm: batch %d is negative", n);
    if (!P->qweight || !P->qzeros || !P->scales || !P->g_idx)
        return gptq_fail(GPTQ_ERR_ARG, "qgemm: packed layer has a NULL array");
    if (n > 0 && (!x || !y))
        return gptq_fail(GPTQ_ERR_ARG, "qgemm: NULL x or y");
    for (int c = 0; c < cols; c++)
        if (P->g_idx[c] < 0 || P->g_idx[c] >= P->groups)
            return gptq_fail(GPTQ_ERR_FORMAT, "qgemm: g_idx[%d] = %d is outside [0, %d groups)",
                             c, P->g_idx[c], P->groups);
    return GPTQ_OK;
}

static int qg_path_setting = -1; /* gptq_qgemm_path; -1 until read from the env */

static gptq_qgemm_path qg_path_get(void)
{
    int p = __atomic_load_n(&qg_path_setting, __ATOMIC_RELAXED);
    if (p >= 0)
        return (gptq_qgemm_path)p;
    static const char *const names[] = {"auto", "scalar", "avx2", "sgemm",
                                        "sgemm-scalar", "int8", "float"}; /* enum order */
    p = gptq_cpu_path_from_env("GPTQ_QGEMM_PATH", names, 7);
    __atomic_store_n(&qg_path_setting, p, __ATOMIC_RELAXED);
    return (gptq_qgemm_path)p;
}

void gptq_cpu_qgemm_set_path(gptq_qgemm_path path)
{
    __atomic_store_n(&qg_path_setting, (int)path, __ATOMIC_RELAXED);
}

gptq_qgemm_path gptq_cpu_qgemm_path_used(const gptq_packed *P, int n, int fast)
{
    gptq_qgemm_path p = qg_path_get();
    if ((p == GPTQ_QGEMM_AUTO && fast) || p == GPTQ_QGEMM_INT8)
        p = gptq_cpu_qgemm_int8_fits(P) ? GPTQ_QGEMM_INT8 : GPTQ_QGEMM_AUTO;
    if (p == GPTQ_QGEMM_AUTO || p == GPTQ_QGEMM_FLOAT)
        p = n >= GPTQ_QGEMM_SGEMM_MIN_N ? GPTQ_QGEMM_SGEMM
            : gptq_cpu_have_avx2()            ? GPTQ_QGEMM_AVX2
                                        : GPTQ_QGEMM_SCALAR;
    if (p == GPTQ_QGEMM_AVX2 && !gptq_cpu_have_avx2())
        p = GPTQ_QGEMM_SCALAR;
    if (p == GPTQ_QGEMM_SGEMM && !gptq_cpu_have_avx2())
        p = GPTQ_QGEMM_SGEMM_SCALAR;
    return p;
}

const char *gptq_cpu_qgemm_path_name(gptq_qgemm_path path)
{
    switch (path) {
    case GPTQ_QGEMM_AUTO: return "auto";
    case GPTQ_QGEMM_SCALAR: return "scalar";
    case GPTQ_QGEMM_AVX2: return "avx2";
    case GPTQ_QGEMM_SGEMM: return "sgemm";
    case GPTQ_QGEMM_SGEMM_SCALAR: return "sgemm-scalar";
    case GPTQ_QGEMM_INT8: return "int8";
    case GPTQ_QGEMM_FLOAT: return "float";
    }
    return "?";
}

/* ---- portable: one row at a time ----------------------------------------- */

/* Row r of W into out [cols]. scale_g, zero_g: [groups] scratch. Reads row r's
 * bit stream qweight[0, r], qweight[1, r], ... through a 64-bit window. */
static void row_dequant(const gptq_packed *P, int r, float *scale_g, float *zero_g, float *out)
{
    const size_t rows = (size_t)P->rows, zwords = rows * P->bits / 32;
    const int bits = P->bits, cols = P->cols;
    const uint32_t mask = (1u << bits) - 1u;
    for (int g = 0; g < P->groups; g++) {
        scale_g[g] = gptq_f16_to_f32(P->scales[(size_t)g * rows + r]);
        zero_g[g] = (float)(gptq_bits_get(P->qzeros + (size_t)g * zwords, 1, bits, (size_t)r) + 1);
    }
    const uint32_t *word = (const uint32_t *)P->qweight + r;
    uint64_t window = 0;
    int have = 0;
    for (int c = 0; c < cols; c++) {
        if (have < bits) {
            window |= (uint64_t)*word << have;
            word += rows;
            have += 32;
        }
        const float q = (float)((uint32_t)window & mask);
        window >>= bits;
        have -= bits;
        const int g = P->g_idx[c];
        out[c] = scale_g[g] * (q - zero_g[g]);
    }
}

static float dot(const float *a, const float *b, int len)
{
    float part[8] = {0};
    int i = 0;
    for (; i + 8 <= len; i += 8)
        for (int k = 0; k < 8; k++)
            part[k] += a[i + k] * b[i + k];
    for (; i < len; i++)
        part[0] += a[i] * b[i];
    return ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
}

/* Rows [r_begin, r_end) of y, one dequantized row at a time. Parallel over
 * rows in runs of 16 (a cache line of qweight). */
static gptq_status qgemm_rows_scalar(const gptq_packed *P, const float *x, float *y, int n,
                                     int r_begin, int r_end)
{
    const int cols = P->cols, groups = P->groups, rows = P->rows;
    int failed = 0;
    const int parallel = (size_t)(r_end - r_begin) * cols >= QG_MIN_PARALLEL;
#pragma omp parallel if (parallel)
    {
        float *row = malloc(((size_t)cols + 2 * (size_t)groups) * sizeof *row);
        if (!row) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static, 16)
        for (int r = r_begin; r < r_end; r++) {
            if (!row)
                continue;
            row_dequant(P, r, row + cols, row + cols + groups, row);
            for (int i = 0; i < n; i++)
                y[(size_t)i * rows + r] = dot(row, x + (size_t)i * cols, cols);
        }
        free(row);
    }
    if (failed)
        return gptq_fail(GPTQ_ERR_NOMEM, "qgemm [%d, %d]: out of memory for a row", rows, cols);
    return GPTQ_OK;
}

/* ---- large batches: dequantized tiles + sgemm ----------------------------- */

static gptq_status qgemm_sgemm(const gptq_packed *P, const float *x, float *y, int n)
{
    const int rows = P->rows, cols = P->cols, groups = P->groups;
    int tile = (int)(QG_TILE_BYTES / ((size_t)cols * sizeof(float)));
    tile = tile < 16 ? 16 : (tile / 16) * 16;
    if (tile > rows)
        tile = rows;
    const int threads = omp_get_max_threads();
    float *W = gptq_cpu_scratch((size_t)tile * cols + (size_t)threads * 2 * groups);
    if (!W)
        return gptq_fail(GPTQ_ERR_NOMEM, "qgemm [%d, %d]: out of memory for a %d-row tile", rows,
                         cols, tile);
    float *scratch = W + (size_t)tile * cols;
    for (int r0 = 0; r0 < rows; r0 += tile) {
        const int rt = rows - r0 < tile ? rows - r0 : tile;
#pragma omp parallel for schedule(static, 16)
        for (int r = 0; r < rt; r++) {
            float *mine = scratch + (size_t)omp_get_thread_num() * 2 * groups;
            row_dequant(P, r0 + r, mine, mine + groups, W + (size_t)r * cols);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rt, cols, 1.0f, x, cols, W, cols,
                    0.0f, y + r0, rows);
    }
    return GPTQ_OK;
}

/* ---- AVX2 + FMA + F16C on the packed words -------------------------------- */

#ifdef QG_X86
#define QG_TARGET __attribute__((target("avx2,fma,f16c")))
#define QG_INLINE static inline __attribute__((always_inline))

static int unit_words(int bits)
{
    return bits == 3 ? 3 : 1;
}

/* The factor folded into x[c] for the code at position j of a unit: 2^-o
 * when the kernel reads it in place at bit offset o (qg_code), else 1. */
static float code_weight(int bits, int j)
{
    const int bit = j * bits, off = bit % 32;
    if (off + bits >= 32) /* top of a word (shifted down) or straddling two */
        return 1.0f;
    return ldexpf(1.0f, -off);
}

typedef struct qg_job {
    const uint32_t *qweight; /* [cols*bits/32, rows] */
    const uint16_t *scales;  /* [groups, rows] */
    const int32_t *g_idx;    /* [cols] */
    const float *xs;         /* [n, cols]: x[c] · code_weight(bits, c % unit) */
    float *y;                /* [n, rows] */
    size_t rows, cols;
} qg_job;

/* Code j of a unit whose words (8 rows each) are v[0..], as float: q·2^o
 * for a code read in place at bit offset o (see code_weight), or q itself
 * when `plain`. With the loop over j unrolled, every branch folds away at
 * compile time. */
QG_TARGET QG_INLINE __m256 qg_code(const __m256i *v, const int bits, const int j, const int plain)
{
    const int bit = j * bits, w = bit / 32, off = bit % 32;
    const int mask = (1 << bits) - 1;
    if (off + bits > 32) { /* 3 bits across a word boundary */
        __m256i lo = _mm256_srli_epi32(v[w], off);
        __m256i hi = _mm256_slli_epi32(v[w + 1], 32 - off);
        return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_or_si256(lo, hi), _mm256_set1_epi32(mask)));
    }
    if (off + bits == 32)
        return _mm256_cvtepi32_ps(_mm256_srli_epi32(v[w], off));
    if (plain && off)
        return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v[w], off), _mm256_set1_epi32(mask)));
    return _mm256_cvtepi32_ps(_mm256_and_si256(v[w], _mm256_set1_epi32(mask << off)));
}

QG_TARGET QG_INLINE __m256 qg_scale(const qg_job *J, size_t c, size_t r)
{
    const uint16_t *s = J->scales + (size_t)J->g_idx[c] * J->rows + r;
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)s));
}

/* Adds Σ_c x[i][c]·s[g(c)][r]·q[r, c] over units [u0, u1) to y[i][r] for the
 * 8·NV rows from r0 and the NB inputs from i0. percol: g_idx may change
 * inside a unit (act-order), so each column's scale is looked up; else the
 * unit's scale multiplies partial sums of 8 codes (NB ≤ 2) or, where those
 * would not fit in registers (NB 4), each dequantized column. */
QG_TARGET QG_INLINE void qg_block(const qg_job *J, size_t r0, int u0, int u1, size_t i0,
                                  const int bits, const int NV, const int NB, const int percol)
{
    const int uw = unit_words(bits), uc = unit_codes(bits);
    const size_t rows = J->rows, cols = J->cols;
    /* two accumulator sets, alternating between codes (percol, one input)
     * or between partial sums of 8 codes, so that one FMA chain's latency
     * does not bound the loop */
    enum { SETS = 2 };
    __m256 acc[SETS][4][2];
    for (int k = 0; k < SETS; k++)
        for (int i = 0; i < NB; i++)
            for (int v = 0; v < NV; v++)
                acc[k][i][v] = _mm256_setzero_ps();
    const float *xs = J->xs + i0 * cols;
    for (int u = u0; u < u1; u++) {
        const size_t c0 = (size_t)u * uc;
        const uint32_t *wp = J->qweight + (size_t)u * uw * rows + r0;
        __m256i words[2][3];
        for (int v = 0; v < NV; v++)
            for (int k = 0; k < uw; k++)
                words[v][k] = _mm256_loadu_si256((const __m256i *)(wp + k * rows + 8 * v));
        __m256 s[2]; /* the unit's scales when it lies in one group */
        for (int v = 0; v < NV && !percol; v++)
            s[v] = qg_scale(J, c0, r0 + 8 * v);
        if (!percol && NB <= 2) {
            __m256 part[2][2];
#pragma GCC unroll 32
            for (int j = 0; j < uc; j++) {
                __m256 q[2];
                for (int v = 0; v < NV; v++)
                    q[v] = qg_code(words[v], bits, j, 0);
                for (int i = 0; i < NB; i++) {
                    const __m256 xb = _mm256_broadcast_ss(xs + i * cols + c0 + j);
                    for (int v = 0; v < NV; v++)
                        part[i][v] = (j % 8) ? _mm256_fmadd_ps(q[v], xb, part[i][v])
                                             : _mm256_mul_ps(q[v], xb);
                }
                if (j % 8 == 7 || j == uc - 1) {
                    const int k = (j / 8) % SETS;
                    for (int i = 0; i < NB; i++)
                        for (int v = 0; v < NV; v++)
                            acc[k][i][v] = _mm256_fmadd_ps(s[v], part[i][v], acc[k][i][v]);
                }
            }
        } else {
#pragma GCC unroll 32
            for (int j = 0; j < uc; j++) {
                const int k = NB == 1 ? j % SETS : 0;
                __m256 w[2];
                for (int v = 0; v < NV; v++)
                    w[v] = _mm256_mul_ps(qg_code(words[v], bits, j, 0),
                                         percol ? qg_scale(J, c0 + j, r0 + 8 * v) : s[v]);
                for (int i = 0; i < NB; i++) {
                    const __m256 xb = _mm256_broadcast_ss(xs + i * cols + c0 + j);
                    for (int v = 0; v < NV; v++)
                        acc[k][i][v] = _mm256_fmadd_ps(w[v], xb, acc[k][i][v]);
                }
            }
        }
    }
    for (int i = 0; i < NB; i++)
        for (int v = 0; v < NV; v++) {
            float *yp = J->y + (i0 + i) * rows + r0 + 8 * v;
            _mm256_storeu_ps(yp, _mm256_add_ps(_mm256_loadu_ps(yp),
                                               _mm256_add_ps(acc[0][i][v], acc[1][i][v])));
        }
}

typedef void (*qg_kernel)(const qg_job *J, size_t r0, int u0, int u1, size_t i0);

#define QG_DEF(B, V, NB, PC)                                                                      \
    QG_TARGET static void qg_k_##B##_##V##_##NB##_##PC(const qg_job *J, size_t r0, int u0,       \
                                                       int u1, size_t i0)                       \
    {                                                                                             \
        qg_block(J, r0, u0, u1, i0, B, V, NB, PC);                                                \
    }
#define QG_DEF_V(B, V) QG_DEF(B, V, 1, 0) QG_DEF(B, V, 1, 1) QG_DEF(B, V, 2, 0) QG_DEF(B, V, 2, 1) \
    QG_DEF(B, V, 4, 0) QG_DEF(B, V, 4, 1)
#define QG_DEF_B(B) QG_DEF_V(B, 1) QG_DEF_V(B, 2)
QG_DEF_B(2)
QG_DEF_B(3)
QG_DEF_B(4)
QG_DEF_B(8)

/* [bits 2,3,4,8][NV-1][NB 1,2,4][percol] */
#define QG_ROW_V(B, V)                                                                            \
    {{qg_k_##B##_##V##_1_0, qg_k_##B##_##V##_1_1}, {qg_k_##B##_##V##_2_0, qg_k_##B##_##V##_2_1},  \
     {qg_k_##B##_##V##_4_0, qg_k_##B##_##V##_4_1}}
static const qg_kernel qg_kernels[4][2][3][2] = {
    {QG_ROW_V(2, 1), QG_ROW_V(2, 2)},
    {QG_ROW_V(3, 1), QG_ROW_V(3, 2)},
    {QG_ROW_V(4, 1), QG_ROW_V(4, 2)},
    {QG_ROW_V(8, 1), QG_ROW_V(8, 2)},
};

/* y[i][r0 + 0..8·NV) = −Σ_g s[g][r]·z[g][r]·X_g[i], the zero term. */
QG_TARGET static void qg_zero_term(const gptq_packed *P, size_t r0, int NV, const float *xg,
                                   float *y, int n)
{
    const size_t rows = (size_t)P->rows;
    for (int v = 0; v < NV; v++) {
        const size_t r = r0 + 8 * (size_t)v;
        for (int i = 0; i < n; i++)
            _mm256_storeu_ps(y + (size_t)i * rows + r, _mm256_setzero_ps());
        for (int g = 0; g < P->groups; g++) {
            __m256 s, z;
            gptq_packed_group8(P, g, r, &s, &z);
            const __m256 sz = _mm256_mul_ps(s, z);
            for (int i = 0; i < n; i++) {
                float *yp = y + (size_t)i * rows + r;
                _mm256_storeu_ps(yp, _mm256_fnmadd_ps(sz, _mm256_broadcast_ss(xg + (size_t)i * P->groups + g),
                                                      _mm256_loadu_ps(yp)));
            }
        }
    }
}

/* Rows [r0, r0 + rt) of W, transposed, for units [u0, u1) into Wt [cols, rt]
 * (rt a multiple of 8): the packed layout's own orientation, so that loads
 * and stores are both contiguous. scale, zero: [groups, rt] for these rows.
 * W = s·(q − z) rounds once, exactly as gptq_packed_dequantize does. */
QG_TARGET QG_INLINE void qg_dequant_units(const gptq_packed *P, size_t r0, int rt, int u0, int u1,
                                          const float *scale, const float *zero, float *Wt,
                                          const int bits)
{
    const int uw = unit_words(bits), uc = unit_codes(bits);
    const size_t rows = (size_t)P->rows;
    for (int u = u0; u < u1; u++) {
        const size_t c0 = (size_t)u * uc;
        const uint32_t *wp = (const uint32_t *)P->qweight + (size_t)u * uw * rows + r0;
        for (int v = 0; v < rt; v += 8) {
            __m256i words[3];
            for (int k = 0; k < uw; k++)
                words[k] = _mm256_loadu_si256((const __m256i *)(wp + k * rows + v));
#pragma GCC unroll 32
            for (int j = 0; j < uc; j++) {
                const size_t g = (size_t)P->g_idx[c0 + j] * rt + v;
                const __m256 q = qg_code(words, bits, j, 1);
                _mm256_storeu_ps(Wt + (c0 + j) * rt + v,
                                 _mm256_mul_ps(_mm256_loadu_ps(scale + g),
                                               _mm256_sub_ps(q, _mm256_loadu_ps(zero + g))));
            }
        }
    }
}

QG_TARGET static void qg_dequant_tile(const gptq_packed *P, size_t r0, int rt, int u0, int u1,
                                      const float *scale, const float *zero, float *Wt)
{
    switch (P->bits) {
    case 2: qg_dequant_units(P, r0, rt, u0, u1, scale, zero, Wt, 2); break;
    case 3: qg_dequant_units(P, r0, rt, u0, u1, scale, zero, Wt, 3); break;
    case 4: qg_dequant_units(P, r0, rt, u0, u1, scale, zero, Wt, 4); break;
    default: qg_dequant_units(P, r0, rt, u0, u1, scale, zero, Wt, 8); break;
    }
}

/* Large batches: tiles of rows dequantized (transposed) by AVX2, then
 * cblas_sgemm. Rows past the last multiple of 8 go the portable way. */
QG_TARGET static gptq_status qgemm_sgemm_avx2(const gptq_packed *P, const float *x, float *y, int n)
{
    const int rows = P->rows, cols = P->cols, groups = P->groups;
    const int rows8 = rows - rows % 8, units = cols / unit_codes(P->bits);
    int tile = (int)(QG_TILE_BYTES / ((size_t)cols * sizeof(float)));
    tile = tile < 16 ? 16 : (tile / 16) * 16;
    if (tile > rows8)
        tile = rows8;
    float *Wt = gptq_cpu_scratch((size_t)tile * cols + (size_t)2 * groups * tile);
    if (!Wt)
        return gptq_fail(GPTQ_ERR_NOMEM, "qgemm [%d, %d]: out of memory for a %d-row tile", rows,
                         cols, tile);
    float *scale = Wt + (size_t)tile * cols, *zero = scale + (size_t)groups * tile;
    for (int r0 = 0; r0 < rows8; r0 += tile) {
        const int rt = rows8 - r0 < tile ? rows8 - r0 : tile;
#pragma omp parallel
        {
#pragma omp for schedule(static)
            for (int g = 0; g < groups; g++)
                for (int v = 0; v < rt; v += 8) {
                    __m256 s, z;
                    gptq_packed_group8(P, g, (size_t)r0 + v, &s, &z);
                    _mm256_storeu_ps(scale + (size_t)g * rt + v, s);
                    _mm256_storeu_ps(zero + (size_t)g * rt + v, z);
                }
#pragma omp for schedule(static)
            for (int u = 0; u < units; u++)
                qg_dequant_tile(P, (size_t)r0, rt, u, u + 1, scale, zero, Wt);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, rt, cols, 1.0f, x, cols, Wt, rt,
                    0.0f, y + r0, rows);
    }
    if (rows8 < rows)
        return qgemm_rows_scalar(P, x, y, n, rows8, rows);
    return GPTQ_OK;
}

/* One pool part of the GEMV: a contiguous range of 16-row blocks. */
typedef struct gemv_job {
    const gptq_packed *P;
    const qg_job *J;
    const float *xg;
    float *y;
    int n, bi, blocks16, blocks, units, chunk, percol;
} gemv_job;

QG_TARGET static void gemv_part(void *arg, int part, int parts)
{
    const gemv_job *G = arg;
    long b0, b1;
    gptq_pool_split(G->blocks, part, parts, 1, &b0, &b1);
    for (long b = b0; b < b1; b++)
        qg_zero_term(G->P, (size_t)b * 16, b < G->blocks16 ? 2 : 1, G->xg, G->y, G->n);
    for (int u0 = 0; u0 < G->units; u0 += G->chunk) {
        const int u1 = G->units - u0 < G->chunk ? G->units : u0 + G->chunk;
        for (long b = b0; b < b1; b++) {
            const int nv = b < G->blocks16 ? 2 : 1;
            int i = 0;
            for (; G->n - i >= 4; i += 4)
                qg_kernels[G->bi][nv - 1][2][G->percol](G->J, (size_t)b * 16, u0, u1, (size_t)i);
            if (G->n - i >= 2) {
                qg_kernels[G->bi][nv - 1][1][G->percol](G->J, (size_t)b * 16, u0, u1, (size_t)i);
                i += 2;
            }
            if (G->n - i >= 1)
                qg_kernels[G->bi][nv - 1][0][G->percol](G->J, (size_t)b * 16, u0, u1, (size_t)i);
        }
    }
}

static gptq_status qgemm_avx2(const gptq_packed *P, const float *x, float *y, int n)
{
    const int rows = P->rows, cols = P->cols, groups = P->groups, bits = P->bits;
    const int uc = unit_codes(bits), units = cols / uc;
    float *xs = malloc(((size_t)n * cols + (size_t)n * groups) * sizeof *xs);
    double *sums = malloc((size_t)groups * sizeof *sums);
    if (!xs || !sums) {
        free(xs);
        free(sums);
        return gptq_fail(GPTQ_ERR_NOMEM, "qgemm [%d, %d]: out of memory for batch %d", rows, cols, n);
    }
    float *xg = xs + (size_t)n * cols; /* [n, groups]: X_g */
    float weight[32];
    for (int j = 0; j < uc; j++)
        weight[j] = code_weight(bits, j);
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * cols;
        for (int g = 0; g < groups; g++)
            sums[g] = 0.0;
        for (int c = 0; c < cols; c++) {
            xs[(size_t)i * cols + c] = xi[c] * weight[c % uc];
            sums[P->g_idx[c]] += xi[c];
        }
        for (int g = 0; g < groups; g++)
            xg[(size_t)i * groups + g] = (float)sums[g];
    }
    free(sums);
    int percol = 0;
    for (int c = 0; c < cols && !percol; c++)
        percol = P->g_idx[c] != P->g_idx[c - c % uc];

    const qg_job J = {(const uint32_t *)P->qweight, P->scales, P->g_idx, xs, y, (size_t)rows,
                      (size_t)cols};
    const int bi = bits == 2 ? 0 : bits == 3 ? 1 : bits == 4 ? 2 : 3;
    const int blocks16 = rows / 16, blocks = blocks16 + (rows % 16 >= 8);
    gemv_job G = {P, &J, xg, y, n, bi, blocks16, blocks, units, QG_CHUNK_WORDS / unit_words(bits),
                  percol};
    gptq_pool_run(gemv_part, &G, (size_t)rows * cols >= QG_MIN_PARALLEL);
    free(xs);
    /* rows % 8 == 4 happens only at 8 bits; those last rows go the portable way */
    if (rows % 8)
        return qgemm_rows_scalar(P, x, y, n, rows - rows % 8, rows);
    return GPTQ_OK;
}
#else
static gptq_status qgemm_avx2(const gptq_packed *P, const float *x, float *y, int n)
{
    return qgemm_rows_scalar(P, x, y, n, 0, P->rows);
}

static gptq_status qgemm_sgemm_avx2(const gptq_packed *P, const float *x, float *y, int n)
{
    return qgemm_sgemm(P, x, y, n);
}
#endif

/* ---- entry ------------------------------------------------------------------ */

static gptq_status qgemm_run(const gptq_packed *P, const float *x, float *y, int n, int fast)
{
    gptq_status st = qg_check(P, x, y, n);
    if (st || n == 0)
        return st;
    switch (gptq_cpu_qgemm_path_used(P, n, fast)) {
    case GPTQ_QGEMM_INT8: return gptq_cpu_qgemm_int8(P, x, y, n);
    case GPTQ_QGEMM_SGEMM: return qgemm_sgemm_avx2(P, x, y, n);
    case GPTQ_QGEMM_SGEMM_SCALAR: return qgemm_sgemm(P, x, y, n);
    case GPTQ_QGEMM_AVX2: return qgemm_avx2(P, x, y, n);
    default: return qgemm_rows_scalar(P, x, y, n, 0, P->rows);
    }
}

gptq_status gptq_cpu_qgemm(const gptq_packed *P, const float *x, float *y, int n)
{
    return qgemm_run(P, x, y, n, 0);
}

gptq_status gptq_cpu_qgemm_fast(const gptq_packed *P, const float *x, float *y, int n)
{
    return qgemm_run(P, x, y, n, 1);
}
