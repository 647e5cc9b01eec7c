/* kernels/cpu/gemm_half.c: y = x · float(W)ᵀ with W in binary16 or
 * bfloat16 (see gemm_half.h).
 *
 * Small batches: a block of 4 weight rows is walked 8 columns at a time;
 * each 8-column slice is converted once (vcvtph2ps, or a 16-bit shift for
 * bfloat16) and multiplied into up to 2 rows of x held in 8 accumulators
 * (13 of AVX2's 16 vector registers), so W streams from memory once per
 * call whatever n is (a 4-row block, at most 4 · in · 2 bytes, stays in L1
 * while the rows of x pass over it). Output rows are split between the
 * pool's threads (kernels/cpu/pool.h) in blocks of 4. While a block is
 * multiplied, the next block's rows are prefetched a cache line at a time:
 * with the hardware's prefetchers alone the GEMV ran at 0.5-0.73 of a plain
 * read's bandwidth on a Zen 4 VM (F16 matrices streamed from DRAM), with
 * this at 0.76-0.87 (an AVX-512 form of the block, 16 columns per vector,
 * was no faster once the rows were prefetched; it helped only matrices
 * already in cache).
 *
 * Large batches: tiles of rows (the whole matrix up to 16 MiB of float32)
 * are converted into the thread's scratch (kernels/cpu/pool.h), and multiplied
 * with cblas_sgemm; the conversion is in·out work next to the sgemm's
 * n·in·out, and one call per linear lets OpenBLAS pack x once. */
#include "kernels/cpu/gemm_half.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "kernels/cpu/features.h"
#include "kernels/cpu/pool.h"

#if defined(__x86_64__) || defined(__i386__)
#define GH_X86 1
#include <immintrin.h>
#endif

/* Below this many weights a call runs on one thread. */
#define GH_MIN_PARALLEL ((size_t)1 << 16)
/* Float32 bytes of one converted tile on the sgemm path. */
#define GH_TILE_BYTES ((size_t)16 << 20)

/* ---- path selection --------------------------------------------------------- */

static int gh_path_setting = -1;

static gptq_gemm_half_path gh_path_get(void)
{
    int p = __atomic_load_n(&gh_path_setting, __ATOMIC_RELAXED);
    if (p >= 0)
        return (gptq_gemm_half_path)p;
    static const char *const names[] = {"auto", "scalar", "avx2", "sgemm"}; /* enum order */
    p = gptq_cpu_path_from_env("GPTQ_GEMM_HALF_PATH", names, 4);
    __atomic_store_n(&gh_path_setting, p, __ATOMIC_RELAXED);
    return (gptq_gemm_half_path)p;
}

void gptq_cpu_gemm_half_set_path(gptq_gemm_half_path path)
{
    __atomic_store_n(&gh_path_setting, (int)path, __ATOMIC_RELAXED);
}

gptq_gemm_half_path gptq_cpu_gemm_half_path_used(int n)
{
    gptq_gemm_half_path p = gh_path_get();
    if (p == GPTQ_GEMM_HALF_AUTO)
        p = n >= GPTQ_GEMM_HALF_SGEMM_MIN_N ? GPTQ_GEMM_HALF_SGEMM
            : gptq_cpu_have_avx2()                ? GPTQ_GEMM_HALF_AVX2
                                            : GPTQ_GEMM_HALF_SCALAR;
    if (p == GPTQ_GEMM_HALF_AVX2 && !gptq_cpu_have_avx2())
        p = GPTQ_GEMM_HALF_SCALAR;
    return p;
}

/* ---- conversion ------------------------------------------------------------------ */

static inline float half_to_f32(uint16_t h, int bf16)
{
    return bf16 ? gptq_bf16_to_f32(h) : gptq_f16_to_f32(h);
}

static void convert_scalar(const uint16_t *src, float *dst, size_t n, int bf16)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = half_to_f32(src[i], bf16);
}

#ifdef GH_X86
#define GH_TARGET __attribute__((target("avx2,fma,f16c")))
#define GH_INLINE static inline __attribute__((always_inline))

GH_TARGET GH_INLINE __m256 load8(const uint16_t *p, int bf16)
{
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (bf16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

GH_TARGET static void convert_avx2(const uint16_t *src, float *dst, size_t n, int bf16)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, load8(src + i, bf16));
    convert_scalar(src + i, dst + i, n - i, bf16);
}

GH_TARGET GH_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* y[i][r0 + a] (a < NR, i < NI) for NR weight rows from r0 and NI rows of x
 * from x. Constant NR and NI unroll the register blocks. */
GH_TARGET GH_INLINE void block_avx2(const float *x, const uint16_t *W, int bf16, float *y, int in,
                                    int out, int r0, const int NR, const int NI)
{
    __m256 acc[4][2];
    for (int a = 0; a < NR; a++)
        for (int b = 0; b < NI; b++)
            acc[a][b] = _mm256_setzero_ps();
    const uint16_t *w0 = W + (size_t)r0 * in;
    int k = 0;
    for (; k + 8 <= in; k += 8) {
        __m256 w[4];
        if ((k & 31) == 0) /* a cache line of each row of the next block */
            for (int a = 0; a < NR; a++)
                _mm_prefetch((const char *)(w0 + (size_t)(a + NR) * in + k), _MM_HINT_T0);
        for (int a = 0; a < NR; a++)
            w[a] = load8(w0 + (size_t)a * in + k, bf16);
        for (int b = 0; b < NI; b++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)b * in + k);
            for (int a = 0; a < NR; a++)
                acc[a][b] = _mm256_fmadd_ps(w[a], xv, acc[a][b]);
        }
    }
    for (int a = 0; a < NR; a++)
        for (int b = 0; b < NI; b++) {
            float s = hsum8(acc[a][b]);
            for (int j = k; j < in; j++)
                s += half_to_f32(w0[(size_t)a * in + j], bf16) * x[(size_t)b * in + j];
            y[(size_t)b * out + r0 + a] = s;
        }
}

GH_TARGET static void rows_avx2(const float *x, const uint16_t *W, int bf16, float *y, int n,
                                int in, int out, int r0, int r1)
{
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        int i = 0;
        for (; i + 2 <= n; i += 2)
            block_avx2(x + (size_t)i * in, W, bf16, y + (size_t)i * out, in, out, r, 4, 2);
        if (i < n)
            block_avx2(x + (size_t)i * in, W, bf16, y + (size_t)i * out, in, out, r, 4, 1);
    }
    for (; r < r1; r++) {
        int i = 0;
        for (; i + 2 <= n; i += 2)
            block_avx2(x + (size_t)i * in, W, bf16, y + (size_t)i * out, in, out, r, 1, 2);
        if (i < n)
            block_avx2(x + (size_t)i * in, W, bf16, y + (size_t)i * out, in, out, r, 1, 1);
    }
}
#endif

static void convert(const uint16_t *src, float *dst, size_t n, int bf16)
{
#ifdef GH_X86
    if (gptq_cpu_have_avx2()) {
        convert_avx2(src, dst, n, bf16);
        return;
    }
#endif
    convert_scalar(src, dst, n, bf16);
}

/* ---- portable rows -------------------------------------------------------------- */

static void rows_scalar(const float *x, const uint16_t *W, int bf16, float *y, int n, int in,
                        int out, int r0, int r1)
{
    float wrow[512];
    for (int r = r0; r < r1; r++) {
        const uint16_t *w = W + (size_t)r * in;
        for (int i = 0; i < n; i++)
            y[(size_t)i * out + r] = 0.0f;
        for (int k0 = 0; k0 < in; k0 += 512) {
            int len = in - k0 < 512 ? in - k0 : 512;
            convert_scalar(w + k0, wrow, (size_t)len, bf16);
            for (int i = 0; i < n; i++) {
                const float *xi = x + (size_t)i * in + k0;
                float acc[8] = {0};
                int k = 0;
                for (; k + 8 <= len; k += 8)
                    for (int l = 0; l < 8; l++)
                        acc[l] += wrow[k + l] * xi[k + l];
                float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                          ((acc[4] + acc[5]) + (acc[6] + acc[7]));
                for (; k < len; k++)
                    s += wrow[k] * xi[k];
                y[(size_t)i * out + r] += s;
            }
        }
    }
}

/* ---- entries ---------------------------------------------------------------------- */

typedef struct rows_job {
    const float *x;
    const uint16_t *W;
    float *y;
    int bf16, n, in, out, avx2;
} rows_job;

static void rows_part(void *arg, int part, int parts)
{
    const rows_job *j = arg;
    long r0, r1;
    gptq_pool_split(j->out, part, parts, 4, &r0, &r1);
    if (r0 >= r1)
        return;
#ifdef GH_X86
    if (j->avx2) {
        rows_avx2(j->x, j->W, j->bf16, j->y, j->n, j->in, j->out, (int)r0, (int)r1);
        return;
    }
#endif
    rows_scalar(j->x, j->W, j->bf16, j->y, j->n, j->in, j->out, (int)r0, (int)r1);
}

static void gemm_rows(const float *x, const uint16_t *W, int bf16, float *y, int n, int in,
                      int out, int avx2)
{
    rows_job j = {x, W, y, bf16, n, in, out, avx2};
    gptq_pool_run(rows_part, &j, (size_t)out * in >= GH_MIN_PARALLEL);
}

/* The sgemm path: 0, or -1 (nothing written) when its tile buffer cannot
 * be had. The calling thread converts (waking the pool's workers between
 * OpenBLAS calls cost more than converting alone: 2.10 against 1.73 ms for
 * 1536x576 at n = 256), OpenBLAS's threads multiply; one tile holds the
 * whole matrix when it fits GH_TILE_BYTES, so OpenBLAS packs x once per
 * linear (1.73 ms against 2.00 with 1 MiB tiles). */
static int gemm_tiles(const float *x, const uint16_t *W, int bf16, const float *bias, float *y,
                      int n, int in, int out)
{
    size_t tr = GH_TILE_BYTES / ((size_t)in * sizeof(float));
    tr = tr < 16 ? 16 : tr;
    tr = tr > (size_t)out ? (size_t)out : tr;
    float *tile = gptq_cpu_scratch(tr * (size_t)in);
    if (!tile)
        return -1;
    float beta = 0.0f;
    if (bias) {
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * out, bias, (size_t)out * sizeof *y);
        beta = 1.0f;
    }
    for (size_t r0 = 0; r0 < (size_t)out; r0 += tr) {
        size_t rows = (size_t)out - r0 < tr ? (size_t)out - r0 : tr;
        convert(W + r0 * in, tile, rows * in, bf16);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)rows, in, 1.0f, x, in, tile,
                    in, beta, y + r0, out);
    }
    return 0;
}

void gptq_cpu_gemm_half(const float *x, const uint16_t *W, int bf16, const float *bias, float *y,
                        int n, int in, int out)
{
    if (n <= 0 || out <= 0)
        return;
    gptq_gemm_half_path p = gptq_cpu_gemm_half_path_used(n);
    if (p == GPTQ_GEMM_HALF_SGEMM && gemm_tiles(x, W, bf16, bias, y, n, in, out) == 0)
        return;
    /* rows need no memory: also the fallback of a failed tile allocation */
    gemm_rows(x, W, bf16, y, n, in, out, p != GPTQ_GEMM_HALF_SCALAR && gptq_cpu_have_avx2());
    if (bias)
        for (int i = 0; i < n; i++)
            for (int r = 0; r < out; r++)
                y[(size_t)i * out + r] += bias[r];
}

void gptq_cpu_embed_half(const uint16_t *table, int bf16, const int32_t *ids, int n, int dim,
                         float *out)
{
    for (int i = 0; i < n; i++)
        convert(table + (size_t)ids[i] * dim, out + (size_t)i * dim, (size_t)dim, bf16);
}
