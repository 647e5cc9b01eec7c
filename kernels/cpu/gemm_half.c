/* kernels/cpu/gemm_half.c: y = x · float(W)ᵀ with W in binary16 or
 * bfloat16 (see gemm_half.h).
 *
 * One row of x on AVX-512F: a weight row at a time (row_avx512, below).
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
 * Large batches with AVX-512F: packed panels (below). Without it: tiles
 * of rows (the whole matrix up to 16 MiB of float32)
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
/* The panel path (AVX-512): */
#define GP_NR 32  /* weight rows per panel: two vectors of 16 outputs */
#define GP_KC 256 /* inputs per panel: the panel (32 KiB of float32) stays in L1 */
#define GP_MC 256 /* rows of x per packed block */
#define GP_NC 256 /* output rows a thread finishes before the next: its y block stays in L2 */

/* ---- path selection --------------------------------------------------------- */

static int gh_path_setting = -1;

static gptq_gemm_half_path gh_path_get(void)
{
    int p = __atomic_load_n(&gh_path_setting, __ATOMIC_RELAXED);
    if (p >= 0)
        return (gptq_gemm_half_path)p;
    static const char *const names[] = {"auto",   "scalar", "avx2",
                                        "sgemm",  "panels", "avx512"}; /* enum order */
    p = gptq_cpu_path_from_env("GPTQ_GEMM_HALF_PATH", names, 6);
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
        p = n >= GPTQ_GEMM_HALF_SGEMM_MIN_N ? GPTQ_GEMM_HALF_PANELS
            : n == 1                              ? GPTQ_GEMM_HALF_AVX512
            : gptq_cpu_have_avx2()                ? GPTQ_GEMM_HALF_AVX2
                                            : GPTQ_GEMM_HALF_SCALAR;
    if (p == GPTQ_GEMM_HALF_PANELS && !gptq_cpu_have_avx512f())
        p = GPTQ_GEMM_HALF_SGEMM;
    if (p == GPTQ_GEMM_HALF_AVX512 && (n != 1 || !gptq_cpu_have_avx512f()))
        p = GPTQ_GEMM_HALF_AVX2;
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

/* ---- one row of x on AVX-512 ------------------------------------------------------ */

#define GP_TARGET __attribute__((target("avx2,fma,f16c,avx512f")))

GP_TARGET GH_INLINE __m512 load16(const uint16_t *p, int bf16)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (bf16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* How far ahead of the loads a row's weights are prefetched: about 3 KiB. */
#define GR_PREFETCH 1536

/* y[r] = x · float(W[r]) for r in [r0, r1), one weight row at a time: a
 * thread streams its rows as one sequential run, with 64 weights per step in
 * 4 accumulators and the lines 3 KiB ahead prefetched. On a Zen 5 VM this
 * read F16 at 42-45 GB/s (medians, 2 threads, matrices streamed from DRAM)
 * where the 4-row blocks above (in AVX-512 form) read at 37-38. */
GP_TARGET static void row_avx512(const float *x, const uint16_t *W, int bf16, float *y, int in,
                                 int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        const uint16_t *w = W + (size_t)r * in;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int k = 0;
        for (; k + 64 <= in; k += 64) {
            _mm_prefetch((const char *)(w + k + GR_PREFETCH), _MM_HINT_T0);
            _mm_prefetch((const char *)(w + k + GR_PREFETCH + 32), _MM_HINT_T0);
            a0 = _mm512_fmadd_ps(load16(w + k, bf16), _mm512_loadu_ps(x + k), a0);
            a1 = _mm512_fmadd_ps(load16(w + k + 16, bf16), _mm512_loadu_ps(x + k + 16), a1);
            a2 = _mm512_fmadd_ps(load16(w + k + 32, bf16), _mm512_loadu_ps(x + k + 32), a2);
            a3 = _mm512_fmadd_ps(load16(w + k + 48, bf16), _mm512_loadu_ps(x + k + 48), a3);
        }
        for (; k + 16 <= in; k += 16)
            a0 = _mm512_fmadd_ps(load16(w + k, bf16), _mm512_loadu_ps(x + k), a0);
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        for (; k < in; k++)
            s += half_to_f32(w[k], bf16) * x[k];
        y[r] = s;
    }
}

/* ---- large batches on AVX-512: packed panels -------------------------------------- */

/* Transposes 16 rows of 16 floats in registers: r[c] becomes column c. */
GP_TARGET GH_INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4i + j], 128-bit lane L: column 4L + j of rows 4i .. 4i + 3 */
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        __m512 b = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        __m512 c = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        __m512 d = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
        t[j] = _mm512_shuffle_f32x4(a, c, 0x88);
        t[8 + j] = _mm512_shuffle_f32x4(a, c, 0xDD);
        t[4 + j] = _mm512_shuffle_f32x4(b, d, 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* panel[k][a] = float(W[a][k0 + k]) for a < 32 (rows past `rows` zero),
 * k < kc: converted and transposed, so that the kernel loads the 32
 * outputs' weights of one input as two vectors. */
GP_TARGET static void pack_panel(const uint16_t *W, int in, int rows, int k0, int kc, int bf16,
                                 float *panel)
{
    int k = 0;
    if (rows == GP_NR)
        for (; k + 16 <= kc; k += 16)
            for (int h = 0; h < 2; h++) {
                __m512 v[16];
                for (int a = 0; a < 16; a++)
                    v[a] = load16(W + (size_t)(16 * h + a) * in + k0 + k, bf16);
                transpose16(v);
                for (int c = 0; c < 16; c++)
                    _mm512_store_ps(panel + (size_t)(k + c) * GP_NR + 16 * h, v[c]);
            }
    for (; k < kc; k++)
        for (int a = 0; a < GP_NR; a++)
            panel[(size_t)k * GP_NR + a] =
                a < rows ? half_to_f32(W[(size_t)a * in + k0 + k], bf16) : 0.0f;
}

/* The row blocks the kernels take, largest first. */
static inline int gp_block(int m)
{
    return m >= 12 ? 12 : m >= 8 ? 8 : m >= 4 ? 4 : m >= 2 ? 2 : 1;
}

/* One block of s rows of x (s = gp_block(...)), all `in` inputs, packed as
 * xp[k * s + i] = x[i][k]: the kernel broadcasts consecutive floats. A
 * block of 12 rows is transposed 16 inputs at a time in registers. */
GP_TARGET static void pack_x_block(const float *x, int in, int s, float *xp)
{
    int k = 0;
    if (s == 12)
        for (; k + 16 <= in; k += 16) {
            __m512 v[16];
            for (int i = 0; i < 16; i++)
                v[i] = i < 12 ? _mm512_loadu_ps(x + (size_t)i * in + k) : _mm512_setzero_ps();
            transpose16(v);
            for (int c = 0; c < 16; c++)
                _mm512_mask_storeu_ps(xp + (size_t)(k + c) * 12, 0x0FFF, v[c]);
        }
    for (; k < in; k++)
        for (int i = 0; i < s; i++)
            xp[(size_t)k * s + i] = x[(size_t)i * in + k];
}

/* y[i][0..32) (+)= Σ_k xp[k][i] · panel[k][..] for MR rows: 2·MR
 * accumulators; the masks cut the last panel's columns. */
#define GP_KERNEL(MR)                                                                              \
    GP_TARGET static void panel_kernel##MR(const float *xp, const float *panel, int kc, float *y,  \
                                           int ldy, int accumulate, __mmask16 m0, __mmask16 m1)    \
    {                                                                                              \
        __m512 c0[MR], c1[MR];                                                                     \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                      \
        {                                                                                          \
            c0[i] = _mm512_setzero_ps();                                                           \
            c1[i] = _mm512_setzero_ps();                                                           \
        }                                                                                          \
        for (int k = 0; k < kc; k++) {                                                             \
            __m512 b0 = _mm512_load_ps(panel + (size_t)k * GP_NR);                                 \
            __m512 b1 = _mm512_load_ps(panel + (size_t)k * GP_NR + 16);                            \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                  \
            {                                                                                      \
                __m512 a = _mm512_set1_ps(xp[(size_t)k * MR + i]);                                 \
                c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);                                             \
                c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);                                             \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                      \
        {                                                                                          \
            float *yi = y + (size_t)i * ldy;                                                       \
            if (accumulate) {                                                                      \
                c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, yi));                       \
                c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, yi + 16));                  \
            }                                                                                      \
            _mm512_mask_storeu_ps(yi, m0, c0[i]);                                                  \
            _mm512_mask_storeu_ps(yi + 16, m1, c1[i]);                                             \
        }                                                                                          \
    }
GP_KERNEL(12)
GP_KERNEL(8)
GP_KERNEL(4)
GP_KERNEL(2)
GP_KERNEL(1)

/* One panel (inputs [k0, k0 + kc)) times the m packed rows of x, into y's
 * `cols` columns from `y`. Between the row blocks, the lines of the next
 * panel's weights (`next`, or NULL) are prefetched a share at a time, for
 * the packing that follows (worth a few percent on the 7B-shaped stack's
 * matrices streamed from DRAM, within this VM's run-to-run noise). */
GP_TARGET static void panel_rows(const float *xp, int in, int k0, int m, const float *panel,
                                 int kc, float *y, int ldy, int accumulate, int cols,
                                 const uint16_t *next)
{
    __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = cols >= 32 ? 0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
    const int row_lines = (kc * 2 + 63) / 64, lines = GP_NR * row_lines, calls = (m + 11) / 12;
    for (int c = 0; m > 0; c++) {
        int s = gp_block(m);
        if (next)
            for (int l = c * lines / calls; l < (c + 1) * lines / calls && l < lines; l++)
                _mm_prefetch((const char *)(next + (size_t)(l / row_lines) * in +
                                            (size_t)(l % row_lines) * 32),
                             _MM_HINT_T0);
        const float *b = xp + (size_t)k0 * s;
        switch (s) {
        case 12: panel_kernel12(b, panel, kc, y, ldy, accumulate, m0, m1); break;
        case 8: panel_kernel8(b, panel, kc, y, ldy, accumulate, m0, m1); break;
        case 4: panel_kernel4(b, panel, kc, y, ldy, accumulate, m0, m1); break;
        case 2: panel_kernel2(b, panel, kc, y, ldy, accumulate, m0, m1); break;
        default: panel_kernel1(b, panel, kc, y, ldy, accumulate, m0, m1); break;
        }
        xp += (size_t)s * in;
        y += (size_t)s * ldy;
        m -= s;
    }
}

/* A block of at most GP_MC rows of x, packed once into xp by the pool's
 * threads (pack_x_part), then multiplied by every panel: each thread owns
 * output rows in whole panels and a panel buffer of its own. */
typedef struct panels_job {
    const float *x;
    const uint16_t *W;
    float *y, *xp, *panels;
    int bf16, m, in, out;
} panels_job;

static void pack_x_part(void *arg, int part, int parts)
{
    const panels_job *j = arg;
    long b0, b1;
    gptq_pool_split(j->m / 12, part, parts, 1, &b0, &b1);
    for (long b = b0; b < b1; b++)
        pack_x_block(j->x + (size_t)b * 12 * j->in, j->in, 12, j->xp + (size_t)b * 12 * j->in);
    if (part == parts - 1) /* the rows past the last block of 12 */
        for (int i = j->m / 12 * 12; i < j->m; i += gp_block(j->m - i))
            pack_x_block(j->x + (size_t)i * j->in, j->in, gp_block(j->m - i),
                         j->xp + (size_t)i * j->in);
}

GP_TARGET static void panels_part(void *arg, int part, int parts)
{
    const panels_job *j = arg;
    long r0, r1;
    gptq_pool_split(j->out, part, parts, GP_NR, &r0, &r1);
    float *panel = j->panels + (size_t)part * GP_KC * GP_NR;
    for (long rb = r0; rb < r1; rb += GP_NC) {
        long re = r1 - rb < GP_NC ? r1 : rb + GP_NC;
        for (int k0 = 0; k0 < j->in; k0 += GP_KC) {
            int kc = j->in - k0 < GP_KC ? j->in - k0 : GP_KC;
            for (long r = rb; r < re; r += GP_NR) {
                int rows = re - r < GP_NR ? (int)(re - r) : GP_NR;
                pack_panel(j->W + (size_t)r * j->in, j->in, rows, k0, kc, j->bf16, panel);
                const uint16_t *next =
                    r + GP_NR < re ? j->W + (size_t)(r + GP_NR) * j->in + k0 : NULL;
                panel_rows(j->xp, j->in, k0, j->m, panel, kc, j->y + r, j->out, k0 > 0, rows,
                           next);
            }
        }
    }
}

/* The panel path: 0, or -1 (nothing written) when its buffers (the calling
 * thread's scratch: a block of packed x and a panel per thread) cannot be
 * had. */
static int gemm_panels(const float *x, const uint16_t *W, int bf16, float *y, int n, int in,
                       int out)
{
    const int parts = gptq_pool_threads(), mc = n < GP_MC ? n : GP_MC;
    const size_t panel = (size_t)GP_KC * GP_NR;
    float *mem = gptq_cpu_scratch((size_t)mc * in + (size_t)parts * panel + 16);
    if (!mem)
        return -1;
    float *panels = (float *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
    const int parallel = (size_t)out * in >= GH_MIN_PARALLEL;
    for (int i0 = 0; i0 < n; i0 += GP_MC) {
        panels_job j = {x + (size_t)i0 * in, W, y + (size_t)i0 * out, panels + parts * panel,
                        panels, bf16, n - i0 < GP_MC ? n - i0 : GP_MC, in, out};
        gptq_pool_run(pack_x_part, &j, parallel);
        gptq_pool_run(panels_part, &j, parallel);
    }
    return 0;
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
    int bf16, n, in, out;
    gptq_gemm_half_path path; /* scalar, avx2 or avx512 (n = 1) */
} rows_job;

static void rows_part(void *arg, int part, int parts)
{
    const rows_job *j = arg;
    long r0, r1;
    gptq_pool_split(j->out, part, parts, 4, &r0, &r1);
    if (r0 >= r1)
        return;
#ifdef GH_X86
    if (j->path == GPTQ_GEMM_HALF_AVX512) {
        row_avx512(j->x, j->W, j->bf16, j->y, j->in, (int)r0, (int)r1);
        return;
    }
    if (j->path != GPTQ_GEMM_HALF_SCALAR) {
        rows_avx2(j->x, j->W, j->bf16, j->y, j->n, j->in, j->out, (int)r0, (int)r1);
        return;
    }
#endif
    rows_scalar(j->x, j->W, j->bf16, j->y, j->n, j->in, j->out, (int)r0, (int)r1);
}

static void gemm_rows(const float *x, const uint16_t *W, int bf16, float *y, int n, int in,
                      int out, gptq_gemm_half_path path)
{
    rows_job j = {x, W, y, bf16, n, in, out, path};
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
    int done = 0;
#ifdef GH_X86
    done = p == GPTQ_GEMM_HALF_PANELS && gemm_panels(x, W, bf16, y, n, in, out) == 0;
#endif
    /* rows need no memory: also the fallback of a failed buffer allocation */
    if (!done)
        gemm_rows(x, W, bf16, y, n, in, out,
                  p == GPTQ_GEMM_HALF_AVX512                           ? p
                  : p != GPTQ_GEMM_HALF_SCALAR && gptq_cpu_have_avx2() ? GPTQ_GEMM_HALF_AVX2
                                                                       : GPTQ_GEMM_HALF_SCALAR);
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
