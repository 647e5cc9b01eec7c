/* tests/test_cuda_kernels.c: every CUDA kernel against a float64 reference
 * or its CPU twin, on random data (never zeros), at several shapes. Skips
 * (77) when no CUDA device answers: gptq_backend_select("cuda:0") fails.
 *
 * Tolerances, with the reason:
 * - packed linears, fp32 accumulation: |y − ref| ≤ 1e-4 · Σ_c |W_rc x_c|.
 *   Inputs are exact (the reference uses the same fp16-rounded x and the
 *   exact dequantized W = fp16 scale · integer), so only fp32 rounding of
 *   sums of ≤ 11008 terms remains: ~√K·2^-24 ≈ 1e-5 relative, with up to
 *   ×4 cancellation from folding the zero point per 32-column chunk.
 * - the dequantize + fp16 GEMM path (forced, or AUTO above
 *   GPTQ_CUDA_PACKED_MAX_N): W and x rounded to fp16 (2·2^-11 relative per
 *   product): |y − ref| ≤ 1.5e-3 · Σ|W x|.
 * - cuBLAS fp16 GEMM on fp16-exact inputs: 1e-4 · Σ|W x|; fp32 GEMM
 *   (CUBLAS_COMPUTE_32F): 2e-5 · Σ|W x|.
 * - rmsnorm, softmax: 2e-5 relative (float32 sums where the CPU sums in
 *   double), rmsnorm's offset 1 (Gemma) too: 1 + w is the same float32 sum
 *   on both sides; rope: 2e-6 · (|a|+|b|) (fma contraction only);
 *   attention: 5e-5 · max|v|, ALiBi included (at j = 700 and slope 0.5,
 *   float32 rounding of slope·j and of the sum moves a score near 350 by
 *   ~2e-5 each, its weight as much relatively: measured 0.05 of the bound),
 *   soft-capping too (Gemma 2, caps 50 and 5 on scores of spread ~9:
 *   tanh's slope ≤ 1 carries a score's rounding through unchanged, and
 *   s / cap, tanhf and · cap add a few float32 ulps of a capped score
 *   |s| < cap; measured ≤ 0.07 of the bound); elementwise: 1e-6 relative (expf ulps); embed, add, mul,
 *   scale, conversions: exact.
 * - layernorm: 2e-5 as rmsnorm, against its CPU twin, relative to the
 *   terms |x|·r·|w| + |b| (r = 1/std) rather than to y: both round the
 *   mean to float32 and the bias may cancel the rest; activate (ReLU):
 *   exact, bit for bit (-0 stays -0, NaN stays NaN).
 * - activate (GELU_TANH), against the same expression in float64: 1e-6
 *   relative to its terms 0.5·|x|·(1 + |tanh|) rather than to y (tanhf
 *   ulps; for x < 0 the float32 1 + tanh cancels, in transformers too),
 *   plus one subnormal ulp (x·0.5 rounds there); ±0 keep their sign and
 *   NaN stays NaN. GELU_PT (torch's gelu(approximate='tanh')) the same
 *   against its own expression; on the emulated module, whose tanhf is the
 *   host's, also bit for bit against the float32 expression in torch's
 *   order (x·x·x, x + 0.044715·cube, · kBeta, 0.5·x · (1 + tanh)), which
 *   no tolerance could tell from BLOOM's order of the same constants. */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "gptq/quant.h"
#include "kernels/backend.h"
#include "kernels/backend_select.h"
#include "kernels/cpu/ops.h"
#include "kernels/linear.h"
#include "testutil.h"
#include "cudatest.h"

static uint64_t rng = 20240611;

/* ---- helpers ------------------------------------------------------------- */

/* Normal values bounded away from zero (|v| >= 0.05). */
static float rand_nonzero(void)
{
    double v = test_rand_normal(&rng);
    return (float)(v >= 0 ? v + 0.05 : v - 0.05);
}

static float *rand_array(size_t n)
{
    float *a = xmalloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++)
        a[i] = rand_nonzero();
    return a;
}

/* Report the worst |got − ref| / bound[i] over n values; fail above 1. */
static void expect_close(const char *what, const float *got, const double *ref,
                         const double *bound, size_t n)
{
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]) / bound[i];
        if (!(e <= worst)) { /* NaN counts as worst */
            worst = e;
            at = i;
            if (isnan(e))
                break;
        }
    }
    CHECK(worst <= 1.0, "%s: element %zu: got %.9g, expected %.9g (bound %.3g, %.3g of it)", what,
          at, got[at], ref[at], bound[at], worst);
    printf("  %-48s worst error %.3f of bound\n", what, worst);
}

/* ---- packed linears ------------------------------------------------------- */

/* A random packed layer: codes in [0, 2^bits), zeros in [1, 2^bits], fp16
 * scales in [0.005, 0.015), act-order as a random permutation of columns. */
static void random_packed(int bits, int rows, int cols, int group_size, int act_order,
                          gptq_packed *P)
{
    const int groups = group_size < 0 ? 1 : (cols + group_size - 1) / group_size;
    const int gs = group_size < 0 ? cols : group_size;
    gptq_quant_result r = {.rows = rows, .cols = cols, .groups = groups, .bits = bits};
    r.codes = xmalloc((size_t)rows * cols);
    r.scales = xmalloc((size_t)groups * rows * sizeof *r.scales);
    r.zeros = xmalloc((size_t)groups * rows * sizeof *r.zeros);
    r.g_idx = xmalloc((size_t)cols * sizeof *r.g_idx);
    const uint32_t levels = 1u << bits;
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        r.codes[i] = (uint8_t)(test_rand_u64(&rng) % levels);
    for (size_t i = 0; i < (size_t)groups * rows; i++) {
        r.scales[i] = gptq_round_f16((float)(0.005 + 0.01 * test_rand_uniform(&rng)));
        r.zeros[i] = 1 + (int32_t)(test_rand_u64(&rng) % levels);
    }
    int *perm = xmalloc((size_t)cols * sizeof *perm);
    for (int c = 0; c < cols; c++)
        perm[c] = c;
    if (act_order)
        for (int c = cols - 1; c > 0; c--) {
            int j = (int)(test_rand_u64(&rng) % (uint64_t)(c + 1)), t = perm[c];
            perm[c] = perm[j];
            perm[j] = t;
        }
    for (int i = 0; i < cols; i++)
        r.g_idx[perm[i]] = i / gs;
    free(perm);
    gptq_status st = gptq_pack(&r, P);
    if (st != GPTQ_OK) {
        fprintf(stderr, "FAIL: gptq_pack: %s\n", gptq_errmsg());
        exit(1);
    }
    free(r.codes);
    free(r.scales);
    free(r.zeros);
    free(r.g_idx);
}

/* ref [n, rows] = x · Wᵀ + bias in float64, and the error scale Σ|W x|. */
static void reference_linear(const float *W, const float *x, const float *bias, int n, int rows,
                             int cols, double *ref, double *mag)
{
    for (int b = 0; b < n; b++)
        for (int r = 0; r < rows; r++) {
            const float *w = W + (size_t)r * cols, *xb = x + (size_t)b * cols;
            double s = bias ? bias[r] : 0.0, m = bias ? fabs(bias[r]) : 0.0;
            for (int c = 0; c < cols; c++) {
                double t = (double)w[c] * xb[c];
                s += t;
                m += fabs(t);
            }
            ref[(size_t)b * rows + r] = s;
            mag[(size_t)b * rows + r] = m;
        }
}

static void scale_bound(double *bound, const double *mag, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        bound[i] = tol * mag[i] + 1e-30;
}

/* One layer in the kernels' layout (columns sorted by group) through the
 * table's qgemm on the device, for each batch size: the packed kernel up
 * to 64 rows when groups are whole chunks, dequantize + SGEMM otherwise.
 * Reference: the float64 product with the v1 layer's dequantized weights. */
static void test_packed_layer(int bits, int rows, int cols, int group_size, int act_order,
                              const int *batches, int n_batches)
{
    gptq_packed P;
    random_packed(bits, rows, cols, group_size, act_order, &P);
    float *W = xmalloc((size_t)rows * cols * sizeof *W);
    CHECK_OK(gptq_packed_dequantize(&P, W));
    gptq_linear host, D;
    CHECK_OK(gptq_linear_from_v1(&P, &host));
    CHECK(!act_order || host.perm, "act-order layer kept no permutation");
    gptq_uploader u = {.be = be};
    CHECK_OK(gptq_linear_upload(&u, &host, &D));
    if (test_failures)
        exit(test_result());

    int max_n = 0;
    for (int i = 0; i < n_batches; i++)
        max_n = batches[i] > max_n ? batches[i] : max_n;
    float *x = rand_array((size_t)max_n * cols), *bias = rand_array((size_t)rows);
    float *d_x = to_device(x, (size_t)max_n * cols * sizeof *x);
    float *d_bias = to_device(bias, (size_t)rows * sizeof *bias);
    float *d_y = be->alloc(be, (size_t)max_n * rows * sizeof(float));
    float *y = xmalloc((size_t)max_n * rows * sizeof *y);
    double *ref = xmalloc((size_t)max_n * rows * sizeof *ref);
    double *mag = xmalloc((size_t)max_n * rows * sizeof *mag);
    double *bound = xmalloc((size_t)max_n * rows * sizeof *bound);
    char what[160];

    for (int i = 0; i < n_batches; i++) {
        const int n = batches[i];
        const size_t ny = (size_t)n * rows;
        const char *tag = act_order ? "act-order" : "in order";
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            reference_linear(W, x, with_bias ? bias : NULL, n, rows, cols, ref, mag);
            scale_bound(bound, mag, ny, 1e-4);
            CHECK_OK(be->qgemm(be, &D, d_x, with_bias ? d_bias : NULL, d_y, n));
            from_device(y, d_y, ny * sizeof *y);
            snprintf(what, sizeof what, "qgemm w%d %dx%d g%d %s%s n=%d (%s)", bits, rows, cols,
                     group_size, tag, with_bias ? " +bias" : "", n,
                     D.chunked && n <= 64 ? "packed kernel" : "dequantize + SGEMM");
            expect_close(what, y, ref, bound, ny);
        }
    }
    gptq_linear_free_on(be, &D);
    gptq_linear_free(&host);
    be->free(be, d_x);
    be->free(be, d_bias);
    be->free(be, d_y);
    free(W);
    free(x);
    free(bias);
    free(y);
    free(ref);
    free(mag);
    free(bound);
}

static void test_packed(void)
{
    static const int small[] = {1, 2, 3, 5, 8, 17, 64, 80};
    static const int large[] = {1, 16};
    static const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++) {
        test_packed_layer(bits[b], 256, 256, 128, 0, small, 8);
        test_packed_layer(bits[b], 256, 256, 32, 1, small, 8);
        test_packed_layer(bits[b], 256, 512, -1, 0, small, 4);
        /* rows not a multiple of the 128-row block (nor of 64) */
        test_packed_layer(bits[b], bits[b] == 3 ? 96 : 272, 384, 128, 1, small, 8);
        /* groups of 48 split chunks: the dequantize path at every batch */
        test_packed_layer(bits[b], bits[b] == 3 ? 96 : 64, 96, 48, 1, small, 3);
    }
    if (be->emulated) {
        /* Model-sized layers take minutes on the CPU: shapes that still
         * split the input into several slices (the atomicAdd path) and
         * leave a partial row block. */
        test_packed_layer(4, 256, 2048, 128, 1, large, 2);
        test_packed_layer(3, 160, 1536, 128, 0, large, 2);
        test_packed_layer(8, 200, 1024, -1, 0, large, 2);
        return;
    }
    test_packed_layer(4, 4096, 4096, 128, 1, large, 2);
    test_packed_layer(3, 4096, 4096, 128, 0, large, 2);
    test_packed_layer(4, 11008, 4096, 128, 0, large, 2);
    test_packed_layer(4, 4096, 11008, 128, 1, large, 2);
}

/* Shapes the device cannot run, and argument errors. */
static void test_packed_errors(void)
{
    /* 100 inputs at 8 bits keep v1's word rules but split a chunk */
    gptq_status st = be->qgemm_check(be, 64, 100, 8);
    CHECK(st == GPTQ_ERR_UNSUPPORTED, "100 inputs: got %s (%s)", gptq_status_name(st),
          gptq_errmsg());
    CHECK(strstr(gptq_errmsg(), "100") != NULL, "message names the inputs: %s", gptq_errmsg());
    CHECK_OK(be->qgemm_check(be, 64, 128, 4));
    gptq_packed P;
    random_packed(4, 64, 64, 32, 0, &P);
    gptq_linear host, D;
    CHECK_OK(gptq_linear_from_v1(&P, &host));
    gptq_uploader u = {.be = be};
    CHECK_OK(gptq_linear_upload(&u, &host, &D));
    float *d = be->alloc(be, 64 * sizeof(float));
    st = be->qgemm(be, &D, d, NULL, d, -1);
    CHECK(st == GPTQ_ERR_ARG, "n = -1: got %s", gptq_status_name(st));
    D.P.bits = 5;
    st = be->qgemm(be, &D, d, NULL, d, 1);
    CHECK(st == GPTQ_ERR_ARG, "bits 5: got %s", gptq_status_name(st));
    D.P.bits = 4;
    be->free(be, d);
    gptq_linear_free_on(be, &D);
    gptq_linear_free(&host);
}

/* ---- dense GEMMs ------------------------------------------------------------ */

static void test_gemm(int n, int in, int out)
{
    float *x = rand_array((size_t)n * in), *W = rand_array((size_t)out * in);
    float *bias = rand_array((size_t)out);
    uint16_t *x16 = xmalloc((size_t)n * in * 2), *W16 = xmalloc((size_t)out * in * 2);
    for (size_t i = 0; i < (size_t)n * in; i++) {
        x16[i] = gptq_f32_to_f16(x[i]);
        x[i] = gptq_f16_to_f32(x16[i]);
    }
    for (size_t i = 0; i < (size_t)out * in; i++) {
        W16[i] = gptq_f32_to_f16(W[i]);
        W[i] = gptq_f16_to_f32(W16[i]);
    }
    double *ref = xmalloc((size_t)n * out * sizeof *ref), *mag = xmalloc((size_t)n * out * 8);
    double *bound = xmalloc((size_t)n * out * 8);
    float *y = xmalloc((size_t)n * out * sizeof *y);
    float *d_x = to_device(x, (size_t)n * in * 4), *d_W = to_device(W, (size_t)out * in * 4);
    float *d_bias = to_device(bias, (size_t)out * 4), *d_y = be->alloc(be, (size_t)n * out * 4);
    uint16_t *d_x16 = to_device(x16, (size_t)n * in * 2), *d_W16 = to_device(W16, (size_t)out * in * 2);
    char what[128];

    reference_linear(W, x, NULL, n, out, in, ref, mag);
    scale_bound(bound, mag, (size_t)n * out, 1e-4);
    CHECK_OK(be->gemm_f16(be, d_x16, d_W16, d_y, n, in, out));
    from_device(y, d_y, (size_t)n * out * 4);
    snprintf(what, sizeof what, "gemm_f16 n=%d %dx%d", n, out, in);
    expect_close(what, y, ref, bound, (size_t)n * out);

    reference_linear(W, x, bias, n, out, in, ref, mag);
    scale_bound(bound, mag, (size_t)n * out, 2e-5);
    be->gemm(be, d_x, d_W, GPTQ_DT_F32, d_bias, d_y, n, in, out);
    from_device(y, d_y, (size_t)n * out * 4);
    snprintf(what, sizeof what, "gemm_f32+bias n=%d %dx%d", n, out, in);
    expect_close(what, y, ref, bound, (size_t)n * out);

    be->free(be, d_x);
    be->free(be, d_W);
    be->free(be, d_bias);
    be->free(be, d_y);
    be->free(be, d_x16);
    be->free(be, d_W16);
    free(x);
    free(W);
    free(bias);
    free(x16);
    free(W16);
    free(ref);
    free(mag);
    free(bound);
    free(y);
}

/* ---- row and elementwise ops ------------------------------------------------- */

/* offset 0 (Llama) or 1 (Gemma: y = x·r · (1 + w), 1 + w a float32 sum as
 * transformers'); with offset 1 the CPU twin against the same reference. */
static void test_rmsnorm(int n, int dim, float offset)
{
    float *x = rand_array((size_t)n * dim), *w = rand_array((size_t)dim);
    float *y = xmalloc((size_t)n * dim * 4);
    double *ref = xmalloc((size_t)n * dim * 8), *bound = xmalloc((size_t)n * dim * 8);
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < dim; j++)
            ss += (double)x[(size_t)i * dim + j] * x[(size_t)i * dim + j];
        double r = 1.0 / sqrt(ss / dim + 1e-5);
        for (int j = 0; j < dim; j++) {
            size_t k = (size_t)i * dim + j;
            ref[k] = (double)(offset + w[j]) * (x[k] * r);
            bound[k] = 2e-5 * fabs(ref[k]) + 1e-7;
        }
    }
    float *d_x = to_device(x, (size_t)n * dim * 4), *d_w = to_device(w, (size_t)dim * 4);
    be->rmsnorm(be, d_x, d_w, d_x, n, dim, 1e-5f, offset); /* in place, as the runtime calls it */
    from_device(y, d_x, (size_t)n * dim * 4);
    char what[80];
    snprintf(what, sizeof what, "rmsnorm n=%d dim=%d offset=%g (in place)", n, dim, offset);
    expect_close(what, y, ref, bound, (size_t)n * dim);
    if (offset != 0.0f) {
        gptq_cpu_rmsnorm(x, w, y, n, dim, 1e-5f, offset);
        snprintf(what, sizeof what, "rmsnorm n=%d dim=%d offset=%g, CPU twin", n, dim, offset);
        expect_close(what, y, ref, bound, (size_t)n * dim);
    }
    be->free(be, d_x);
    be->free(be, d_w);
    free(x);
    free(w);
    free(y);
    free(ref);
    free(bound);
}

/* LayerNorm against its CPU twin on the same inputs. x = 3 + N(0,1): a mean
 * well away from zero, so that a kernel forgetting to subtract it fails
 * (E[x²] - mean² for the variance loses too little at this mean to show
 * within the bound; the kernel takes two passes anyway). The 2e-5 is
 * relative to the terms of (x - mean)·r·w + b, not to the result: both
 * sides round the mean (≈ 3) to float32, and an ulp of it carried through
 * r·w is ~5e-7 absolute, far above 2e-5·|y| where the bias cancels the
 * rest to y ≈ 0. */
static void test_layernorm(int n, int dim)
{
    const size_t len = (size_t)n * dim;
    float *x = rand_array(len), *w = rand_array((size_t)dim), *b = rand_array((size_t)dim);
    for (size_t i = 0; i < len; i++)
        x[i] += 3.0f;
    float *y = xmalloc(len * 4), *cpu = xmalloc(len * 4);
    gptq_cpu_layernorm(x, w, b, cpu, n, dim, 1e-5f);
    double *ref = xmalloc(len * 8), *bound = xmalloc(len * 8);
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * dim;
        double s = 0, d = 0;
        for (int j = 0; j < dim; j++)
            s += xr[j];
        for (int j = 0; j < dim; j++)
            d += (xr[j] - s / dim) * (xr[j] - s / dim);
        const double r = 1.0 / sqrt(d / dim + 1e-5);
        for (int j = 0; j < dim; j++) {
            size_t k = (size_t)i * dim + j;
            ref[k] = (xr[j] - s / dim) * r * w[j] + b[j]; /* float64 */
            bound[k] = 2e-5 * (fabs(xr[j]) * r * fabs(w[j]) + fabs(b[j])) + 1e-7;
        }
    }
    /* the CPU twin against the same float64 reference and bound */
    expect_close("layernorm (CPU twin)", cpu, ref, bound, len);
    float *d_x = to_device(x, len * 4), *d_w = to_device(w, (size_t)dim * 4);
    float *d_b = to_device(b, (size_t)dim * 4);
    be->layernorm(be, d_x, d_w, d_b, d_x, n, dim, 1e-5f); /* in place, as the runtime calls it */
    from_device(y, d_x, len * 4);
    char what[64];
    snprintf(what, sizeof what, "layernorm n=%d dim=%d (in place)", n, dim);
    expect_close(what, y, ref, bound, len);
    be->free(be, d_x);
    be->free(be, d_w);
    be->free(be, d_b);
    free(x);
    free(w);
    free(b);
    free(y);
    free(cpu);
    free(ref);
    free(bound);
}

static void test_rope(int n, int n_heads, int head_dim)
{
    const size_t len = (size_t)n * n_heads * head_dim;
    float *x = rand_array(len), *y = xmalloc(len * 4), *inv_freq = xmalloc((size_t)head_dim / 2 * 4);
    int32_t *pos = xmalloc((size_t)n * 4);
    for (int j = 0; j < head_dim / 2; j++)
        inv_freq[j] = (float)pow(10000.0, -2.0 * j / head_dim);
    for (int i = 0; i < n; i++)
        pos[i] = (int32_t)(test_rand_u64(&rng) % 4096);
    float *d_x = to_device(x, len * 4), *d_f = to_device(inv_freq, (size_t)head_dim / 2 * 4);
    int32_t *d_pos = to_device(pos, (size_t)n * 4);
    float *cpu = xmalloc(len * 4);
    memcpy(cpu, x, len * 4);
    gptq_cpu_rope(cpu, n, n_heads, head_dim, pos, inv_freq);
    double *ref = xmalloc(len * 8), *bound = xmalloc(len * 8);
    const int half = head_dim / 2;
    for (size_t i = 0; i < len; i++) {
        size_t in_head = i % head_dim, pair = in_head < (size_t)half ? i + half : i - half;
        ref[i] = cpu[i];
        bound[i] = 2e-6 * (fabs(x[i]) + fabs(x[pair])) + 1e-9;
    }
    be->rope(be, d_x, n, n_heads, head_dim, d_pos, d_f);
    from_device(y, d_x, len * 4);
    char what[64];
    snprintf(what, sizeof what, "rope n=%d heads=%d head_dim=%d", n, n_heads, head_dim);
    expect_close(what, y, ref, bound, len);
    be->free(be, d_x);
    be->free(be, d_f);
    be->free(be, d_pos);
    free(x);
    free(y);
    free(inv_freq);
    free(pos);
    free(cpu);
    free(ref);
    free(bound);
}

/* Float64 causal GQA attention with the backend.h masking rules, and ALiBi
 * (a->alibi in host memory here): query head h's score of key j gains
 * slope[h]·j after the scale; then soft-capping (a->softcap > 0): the
 * score s becomes tanh(s / softcap)·softcap, before the mask. */
static void reference_attention(const gptq_attention_args *a, double *ref, double *bound)
{
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads, keys = a->start + a->len;
    const size_t qs = (size_t)a->n_heads * hd, kvs = (size_t)a->n_kv_heads * hd;
    double *p = xmalloc((size_t)keys * 8);
    for (int t = 0; t < a->len; t++)
        for (int h = 0; h < a->n_heads; h++) {
            const int qpos = a->start + t, kvh = h / group;
            const int first = a->window > 0 && qpos - a->window + 1 > 0 ? qpos - a->window + 1 : 0;
            double m = -INFINITY, sum = 0, vmax = 0;
            for (int j = first; j <= qpos; j++) {
                double s = 0;
                for (int d = 0; d < hd; d++)
                    s += (double)a->q[t * qs + h * hd + d] * a->k[j * kvs + kvh * hd + d];
                p[j] = s * a->scale + (a->alibi ? (double)a->alibi[h] * j : 0.0);
                if (a->softcap > 0)
                    p[j] = tanh(p[j] / a->softcap) * a->softcap;
                m = p[j] > m ? p[j] : m;
            }
            for (int j = first; j <= qpos; j++)
                sum += (p[j] = exp(p[j] - m));
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int j = first; j <= qpos; j++) {
                    double v = a->v[j * kvs + kvh * hd + d];
                    o += p[j] / sum * v;
                    vmax = fabs(v) > vmax ? fabs(v) : vmax;
                }
                ref[t * qs + h * hd + d] = o;
            }
            for (int d = 0; d < hd; d++)
                bound[t * qs + h * hd + d] = 5e-5 * vmax + 1e-9;
        }
    free(p);
}

/* BLOOM's ALiBi slopes for n heads (transformers' build_alibi_tensor): with
 * c the largest power of two ≤ n, base^1 .. base^c for base = 2^-(8/c),
 * then for the n - c heads beyond, the odd powers 1, 3, 5, ... of
 * 2^-(8/2c). Exact in float32 (powers of two for the n used here). */
static void bloom_slopes(int n, float *slopes)
{
    int c = 1;
    while (c * 2 <= n)
        c *= 2;
    const double base = pow(2.0, -pow(2.0, -(log2(c) - 3))),
                 extra = pow(2.0, -pow(2.0, -(log2(2 * c) - 3)));
    for (int i = 0; i < c; i++)
        slopes[i] = (float)pow(base, i + 1);
    for (int i = 0; i < n - c; i++)
        slopes[c + i] = (float)pow(extra, 2 * i + 1);
}

/* Against the float64 reference; with alibi (BLOOM's slopes for n_heads)
 * or softcap, the CPU twin against the same reference too, so that both
 * backends hold the same convention (absolute key position, query head's
 * slope; the cap after ALiBi and before the mask). q is multiplied by qmul
 * (a power of two): at 8 the scaled scores spread ~9 (N(0,1)-like q, k),
 * which a cap of 50 bends and one of 5 mostly saturates. */
static void test_attention_case(int len, int start, int n_heads, int n_kv_heads, int head_dim,
                                int window, int alibi, float softcap, float qmul)
{
    const int keys = start + len;
    const size_t qn = (size_t)len * n_heads * head_dim, kvn = (size_t)keys * n_kv_heads * head_dim;
    gptq_attention_args h = {.len = len, .start = start, .n_heads = n_heads,
                             .n_kv_heads = n_kv_heads, .head_dim = head_dim, .window = window,
                             .scale = 1.0f / sqrtf((float)head_dim), .softcap = softcap};
    float *q = rand_array(qn), *k = rand_array(kvn), *v = rand_array(kvn), *out = xmalloc(qn * 4);
    for (size_t i = 0; i < qn; i++)
        q[i] *= qmul;
    float *slopes = xmalloc((size_t)n_heads * 4);
    bloom_slopes(n_heads, slopes);
    h.q = q;
    h.k = k;
    h.v = v;
    h.alibi = alibi ? slopes : NULL;
    double *ref = xmalloc(qn * 8), *bound = xmalloc(qn * 8);
    reference_attention(&h, ref, bound);
    gptq_attention_args d = h;
    d.q = to_device(q, qn * 4);
    d.k = to_device(k, kvn * 4);
    d.v = to_device(v, kvn * 4);
    d.alibi = alibi ? to_device(slopes, (size_t)n_heads * 4) : NULL;
    d.out = be->alloc(be, qn * 4);
    CHECK_OK(be->attention(be, &d));
    from_device(out, d.out, qn * 4);
    char what[128], extra[48] = "";
    if (softcap > 0)
        snprintf(extra, sizeof extra, " softcap=%g q*%g", softcap, qmul);
    snprintf(what, sizeof what, "attention len=%d start=%d heads=%d/%d hd=%d window=%d%s%s", len,
             start, n_heads, n_kv_heads, head_dim, window, alibi ? " alibi" : "", extra);
    expect_close(what, out, ref, bound, qn);
    if (alibi || softcap > 0) {
        h.out = out;
        CHECK_OK(gptq_cpu_attention(&h));
        snprintf(what, sizeof what, "attention len=%d start=%d heads=%d/%d%s%s, CPU twin", len,
                 start, n_heads, n_kv_heads, alibi ? " alibi" : "", extra);
        expect_close(what, out, ref, bound, qn);
    }
    be->free(be, (void *)d.q);
    be->free(be, (void *)d.k);
    be->free(be, (void *)d.v);
    be->free(be, (void *)d.alibi);
    be->free(be, d.out);
    free(q);
    free(k);
    free(v);
    free(slopes);
    free(out);
    free(ref);
    free(bound);
}

static void test_attention_alibi(int len, int start, int n_heads, int n_kv_heads, int head_dim,
                                 int window, int alibi)
{
    test_attention_case(len, start, n_heads, n_kv_heads, head_dim, window, alibi, 0.0f, 1.0f);
}

static void test_attention(int len, int start, int n_heads, int n_kv_heads, int head_dim,
                           int window)
{
    test_attention_alibi(len, start, n_heads, n_kv_heads, head_dim, window, 0);
}

static void test_elementwise(size_t n)
{
    float *g = rand_array(n), *u = rand_array(n), *y = xmalloc(n * 4);
    double *ref = xmalloc(n * 8), *bound = xmalloc(n * 8);
    for (size_t i = 0; i < n; i++) {
        ref[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        bound[i] = 1e-6 * fabs(ref[i]) + 1e-12;
    }
    float *d_g = to_device(g, n * 4), *d_u = to_device(u, n * 4);
    be->silu_mul(be, d_g, d_u, d_g, n); /* out aliasing gate */
    from_device(y, d_g, n * 4);
    expect_close("silu_mul (out = gate)", y, ref, bound, n);
    float *d_a = to_device(g, n * 4);
    be->add(be, d_a, d_u, n);
    from_device(y, d_a, n * 4);
    for (size_t i = 0; i < n; i++) {
        ref[i] = g[i] + u[i]; /* float addition is exact-rounded on both sides */
        ref[i] = (float)ref[i];
        bound[i] = 1e-30;
    }
    expect_close("add", y, ref, bound, n);
    /* mul, scale: a float32 product, the exact double product rounded once */
    CHECK_OK(be->upload(be, d_a, g, n * 4));
    be->mul(be, d_a, d_u, n);
    from_device(y, d_a, n * 4);
    for (size_t i = 0; i < n; i++)
        ref[i] = (float)((double)g[i] * u[i]);
    expect_close("mul", y, ref, bound, n);
    const float sc = (float)sqrt(3584.0); /* Gemma 2 9B's embedding normalizer */
    CHECK_OK(be->upload(be, d_a, g, n * 4));
    be->scale(be, d_a, sc, n);
    from_device(y, d_a, n * 4);
    for (size_t i = 0; i < n; i++)
        ref[i] = (float)((double)g[i] * sc);
    expect_close("scale", y, ref, bound, n);
    be->free(be, d_g);
    be->free(be, d_u);
    be->free(be, d_a);
    free(g);
    free(u);
    free(y);
    free(ref);
    free(bound);
}

/* ReLU in place against its definition: negative -> +0, anything else
 * (+-0, NaN, +inf, the largest floats) unchanged to the bit. */
static void test_activate(size_t n)
{
    static const float special[] = {-0.0f, 0.0f, NAN, -NAN, INFINITY, -INFINITY, FLT_MAX,
                                    -FLT_MAX, 1e30f, -1e30f, FLT_MIN, -FLT_MIN, 1e-45f, -1e-45f};
    const size_t n_special = sizeof special / sizeof special[0];
    float *x = rand_array(n), *y = xmalloc(n * 4), *ref = xmalloc(n * 4);
    for (size_t i = 0; i < n_special && i < n; i++)
        x[i * (n / n_special)] = special[i]; /* spread over the grid-stride loop */
    for (size_t i = 0; i < n; i++)
        ref[i] = !isnan(x[i]) && signbit(x[i]) && x[i] != 0.0f ? 0.0f : x[i];
    float *d_x = to_device(x, n * 4);
    be->activate(be, GPTQ_ACT_RELU, d_x, n);
    from_device(y, d_x, n * 4);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        int same = isnan(ref[i]) ? isnan(y[i]) : memcmp(&y[i], &ref[i], 4) == 0;
        if (!same && !bad++)
            first = i;
    }
    CHECK(bad == 0, "activate relu n=%zu: %zu differ, first element %zu: %.9g of %.9g, want %.9g",
          n, bad, first, y[first], x[first], ref[first]);
    printf("  activate relu n=%zu (in place, -0, NaN, inf) %s\n", n, bad ? "differs" : "exact");
    be->free(be, d_x);
    free(x);
    free(y);
    free(ref);
}

/* a · b rounded once to float32 whatever the compiler contracts: the
 * double product of two floats is exact. */
static float mul_f32(float a, float b)
{
    return (float)((double)a * b);
}

/* torch's gelu(approximate='tanh') in float32, in its CPU kernel's order
 * (GPTQ_ACT_GELU_PT), each operation rounded. */
static float gelu_pt_f32(float v)
{
    const float cube = mul_f32(mul_f32(v, v), v);
    const float inner = mul_f32(0.7978845608028654f, v + mul_f32(0.044715f, cube));
    return mul_f32(mul_f32(0.5f, v), 1.0f + tanhf(inner));
}

/* BLOOM's GELU (GELU_TANH) or torch's tanh GELU (GELU_PT) in place against
 * the same expression in float64 (the float32 constants widened): x =
 * 3·N(0,1), reaching the region where 1 + tanh cancels, plus saturation,
 * ±0, NaN, ±inf and the largest and smallest floats. */
static void test_activate_gelu(size_t n, gptq_act act)
{
    static const float special[] = {-0.0f, 0.0f, NAN, -NAN, INFINITY, -INFINITY, FLT_MAX,
                                    -FLT_MAX, 1e30f, -1e30f, 20.0f, -20.0f, 9.0f, -9.0f,
                                    FLT_MIN, -FLT_MIN, 1e-45f, -1e-45f};
    const size_t n_special = sizeof special / sizeof special[0];
    const double c1 = 0.79788456f, c2 = 0.044715f, beta = 0.7978845608028654f;
    const char *name = act == GPTQ_ACT_GELU_PT ? "gelu_pt" : "gelu_tanh";
    float *x = rand_array(n), *y = xmalloc(n * 4);
    double *ref = xmalloc(n * 8), *bound = xmalloc(n * 8);
    for (size_t i = 0; i < n; i++)
        x[i] *= 3.0f;
    for (size_t i = 0; i < n_special && i < n; i++)
        x[i * (n / n_special)] = special[i]; /* spread over the grid-stride loop */
    for (size_t i = 0; i < n; i++) {
        const double v = x[i];
        const double t = act == GPTQ_ACT_GELU_PT ? tanh(beta * (v + c2 * (v * v * v)))
                                                 : tanh(c1 * v * (1.0 + c2 * v * v));
        ref[i] = act == GPTQ_ACT_GELU_PT ? 0.5 * v * (1.0 + t) : v * 0.5 * (1.0 + t);
        bound[i] = 1e-6 * (0.5 * fabs(v) * (1.0 + fabs(t))) + 1.5e-45;
    }
    float *d_x = to_device(x, n * 4);
    be->activate(be, act, d_x, n);
    from_device(y, d_x, n * 4);
    /* NaN, ±inf and the sign of zero first: expect_close sees none of them. */
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        const int ok = isnan(ref[i])   ? isnan(y[i])
                       : isinf(ref[i]) ? y[i] == ref[i]
                       : x[i] == 0.0f  ? y[i] == 0.0f && signbit(y[i]) == signbit(x[i])
                                       : isfinite(y[i]);
        if (!ok && !bad++)
            first = i;
    }
    CHECK(bad == 0,
          "activate %s n=%zu: %zu NaN, inf or zero sign wrong, first element %zu: %.9g of %.9g, "
          "want %.9g", name, n, bad, first, y[first], x[first], ref[first]);
    if (act == GPTQ_ACT_GELU_PT) {
        /* torch's order to the bit where tanhf is the host's (emulated);
         * a device's tanhf (2 ulps) is not the host's: only counted */
        size_t differ = 0;
        first = 0;
        for (size_t i = 0; i < n; i++) {
            const float want = gelu_pt_f32(x[i]);
            if (!(isnan(want) ? isnan(y[i]) : memcmp(&y[i], &want, 4) == 0) && !differ++)
                first = i;
        }
        if (be->emulated)
            CHECK(differ == 0,
                  "activate gelu_pt n=%zu: %zu differ from torch's float32 order, first element "
                  "%zu: %.9g of %.9g, want %.9g", n, differ, first, y[first], x[first],
                  gelu_pt_f32(x[first]));
        printf("  activate gelu_pt n=%zu: %zu differ from torch's float32 order%s\n", n, differ,
               be->emulated ? "" : " (device tanhf)");
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(ref[i])) { /* checked above */
            ref[i] = 0.0;
            y[i] = 0.0f;
            bound[i] = 1.0;
        }
    char what[64];
    snprintf(what, sizeof what, "activate %s n=%zu (in place, specials)", name, n);
    expect_close(what, y, ref, bound, n);
    be->free(be, d_x);
    free(x);
    free(y);
    free(ref);
    free(bound);
}

static void test_embed(int vocab, int dim, int n)
{
    float *table = rand_array((size_t)vocab * dim), *y = xmalloc((size_t)n * dim * 4);
    int32_t *ids = xmalloc((size_t)n * 4);
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(test_rand_u64(&rng) % (uint64_t)vocab);
    float *d_t = to_device(table, (size_t)vocab * dim * 4), *d_y = be->alloc(be, (size_t)n * dim * 4);
    int32_t *d_ids = to_device(ids, (size_t)n * 4);
    be->embed(be, d_t, GPTQ_DT_F32, d_ids, n, dim, d_y);
    from_device(y, d_y, (size_t)n * dim * 4);
    int bad = 0;
    for (int i = 0; i < n && !bad; i++)
        bad = memcmp(y + (size_t)i * dim, table + (size_t)ids[i] * dim, (size_t)dim * 4) != 0;
    CHECK(!bad, "embed vocab=%d dim=%d: rows differ from the table", vocab, dim);
    printf("  embed vocab=%d dim=%d n=%d %s\n", vocab, dim, n, bad ? "differs" : "exact");
    be->free(be, d_t);
    be->free(be, d_y);
    be->free(be, d_ids);
    free(table);
    free(y);
    free(ids);
}

static void test_softmax(int n, int cols)
{
    float *x = rand_array((size_t)n * cols), *y = xmalloc((size_t)n * cols * 4);
    for (size_t i = 0; i < (size_t)n * cols; i++)
        x[i] *= 4.0f; /* a peaked distribution, as logits are */
    double *ref = xmalloc((size_t)n * cols * 8), *lref = xmalloc((size_t)n * cols * 8);
    double *bound = xmalloc((size_t)n * cols * 8), *lbound = xmalloc((size_t)n * cols * 8);
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * cols;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < cols; j++)
            m = r[j] > m ? r[j] : m;
        for (int j = 0; j < cols; j++)
            s += exp(r[j] - m);
        for (int j = 0; j < cols; j++) {
            size_t k = (size_t)i * cols + j;
            ref[k] = exp(r[j] - m) / s;
            lref[k] = r[j] - m - log(s);
            bound[k] = 2e-5 * ref[k] + 1e-30;
            lbound[k] = 2e-5 * (fabs(lref[k]) + 1.0);
        }
    }
    float *d_x = to_device(x, (size_t)n * cols * 4);
    be->softmax(be, d_x, n, cols);
    from_device(y, d_x, (size_t)n * cols * 4);
    char what[64];
    snprintf(what, sizeof what, "softmax n=%d cols=%d", n, cols);
    expect_close(what, y, ref, bound, (size_t)n * cols);
    CHECK_OK(be->upload(be, d_x, x, (size_t)n * cols * 4));
    be->log_softmax(be, d_x, n, cols);
    from_device(y, d_x, (size_t)n * cols * 4);
    snprintf(what, sizeof what, "log_softmax n=%d cols=%d", n, cols);
    expect_close(what, y, lref, lbound, (size_t)n * cols);
    be->free(be, d_x);
    free(x);
    free(y);
    free(ref);
    free(lref);
    free(bound);
    free(lbound);
}

static void test_conversions(size_t n)
{
    float *x = rand_array(n);
    uint16_t *h = xmalloc(n * 2);
    float *d_x = to_device(x, n * 4);
    uint16_t *d_h = be->alloc(be, n * 2);
    be->f32_to_f16(be, d_x, d_h, n);
    from_device(h, d_h, n * 2);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += h[i] != gptq_f32_to_f16(x[i]);
    CHECK(bad == 0, "f32 -> f16: %zu of %zu differ from common/dtype.c", bad, n);
    printf("  f32 -> f16 n=%zu %s\n", n, bad ? "differs" : "exact");
    be->free(be, d_x);
    be->free(be, d_h);
    free(x);
    free(h);
}

/* A device fault (a kernel reading an unmapped address) leaves every later
 * allocation failing; the failure must then be reported as the device's
 * error, not as "out of memory" (the emulated GEMM-transpose mutant made
 * the daemon answer "forward: out of memory"). */
static void test_fault_reported(void)
{
    float *y = be->alloc(be, 64 * sizeof *y), *w = be->alloc(be, 64 * sizeof *w);
    CHECK(y && w, "alloc");
    if (!y || !w)
        return;
    be->rmsnorm(be, (const float *)(uintptr_t)0x10, w, y, 1, 64, 1e-5f, 0.0f);
    void *p = NULL;
    for (int i = 0; i < 8 && (p = be->alloc(be, (size_t)1 << 20)) != NULL; i++)
        be->free(be, p); /* a real device may report the fault a little later */
    gptq_status st = gptq_backend_alloc_fail(be, "after a fault");
    printf("after a device fault: alloc %s, reported as %s: %s\n", p ? "worked" : "failed",
           gptq_status_name(st), gptq_errmsg());
    CHECK(st == GPTQ_ERR_DEVICE, "a device fault reported as '%s' (%s), want a device error",
          gptq_status_name(st), gptq_errmsg());
}

int main(void)
{
    int rc = cudatest_open();
    if (rc != 0)
        return rc;
    test_conversions(100003);
    test_packed_errors();
    test_packed();
    /* On the emulated module (be->emulated) the same cases at sizes the
     * CPU runs in seconds; every tail and block-size limit is still hit. */
    const int emu = be->emulated;
    test_gemm(1, emu ? 1024 : 4096, emu ? 768 : 4096);
    test_gemm(16, emu ? 1024 : 4096, emu ? 1100 : 11008);
    test_gemm(7, 200, 72);
    test_rmsnorm(7, emu ? 2048 : 4096, 0.0f);
    test_rmsnorm(3, emu ? 2600 : 5120, 0.0f);
    test_rmsnorm(5, 100, 0.0f);
    test_rmsnorm(7, emu ? 2304 : 3584, 1.0f); /* Gemma 2's 2B and 9B hidden sizes */
    test_rmsnorm(5, 100, 1.0f);
    test_layernorm(7, emu ? 2048 : 4096);
    test_layernorm(3, emu ? 2600 : 5120);
    test_layernorm(5, 100);
    test_rope(9, 32, 128);
    test_rope(3, 8, 64);
    test_attention(1, 37, 32, 8, 128, 0);     /* decode, GQA 4:1 */
    test_attention(1, 1000, 32, 32, 128, 256); /* decode, sliding window */
    test_attention(70, 0, 8, 8, 64, 0);        /* prefill from empty */
    test_attention(20, 30, 12, 4, 80, 0);      /* prefill after a cache, odd head_dim */
    test_attention(33, 5, 4, 1, 256, 16);      /* MQA, widest head, window */
    /* ALiBi (BLOOM): decode and prefill after a cache; 6 heads take the
     * extra odd-power slopes (head 4's 0.5 the steepest), 8:2 GQA that the
     * query head picks the slope, a long decode slope·j up to 350. */
    test_attention_alibi(1, 37, 4, 4, 64, 0, 1);
    test_attention_alibi(20, 30, 6, 6, 80, 0, 1);
    test_attention_alibi(1, 700, 6, 6, 128, 0, 1);
    test_attention_alibi(9, 12, 8, 2, 64, 0, 1);
    test_attention_alibi(33, 5, 4, 4, 64, 16, 1); /* with a window */
    /* Soft-capping (Gemma 2: 50, and 5 that saturates): decode at Gemma 2's
     * head_dim 256 and 2:1 GQA, prefill after a cache (future keys in the
     * cache that a cap applied after the mask would let in at -cap), with a
     * window, and after ALiBi (no model has both: the documented order). */
    test_attention_case(1, 37, 8, 4, 256, 0, 0, 50.0f, 8.0f);
    test_attention_case(20, 30, 8, 4, 256, 0, 0, 50.0f, 8.0f);
    test_attention_case(20, 30, 12, 4, 80, 0, 0, 5.0f, 8.0f);
    test_attention_case(33, 5, 4, 2, 64, 16, 0, 5.0f, 8.0f);
    test_attention_case(9, 12, 6, 6, 64, 0, 1, 5.0f, 2.0f);
    test_elementwise(emu ? 100003 : 1000003);
    test_activate(emu ? 100003 : 1000003);
    test_activate_gelu(emu ? 100003 : 1000003, GPTQ_ACT_GELU_TANH);
    test_activate_gelu(emu ? 100003 : 1000003, GPTQ_ACT_GELU_PT);
    test_embed(emu ? 3000 : 32000, emu ? 1024 : 4096, 9);
    test_embed(100, 30, 4);
    test_softmax(3, 32000);
    test_softmax(5, 77);
    CHECK_OK(be->sync(be));
    test_fault_reported(); /* last: the fault is sticky */
    return test_result();
}
