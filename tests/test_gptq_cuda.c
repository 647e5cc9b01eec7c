/* tests/test_gptq_cuda.c: GPTQ on the device (kernels/cuda/gptq.cu) against
 * the host library (quant/hessian.c, quant/gptq.c, itself checked against
 * the reference's vectors) on the same inputs, and against the fixture's
 * single-layer vectors. Skips (77) when no CUDA device answers.
 *
 * Tolerances, with the reason:
 * - Hessian: max |H_dev - H_host| <= 1e-5 max |H|: both SYRK in float32 and
 *   keep the running mean in float64; only the SYRK's summation order
 *   differs (~sqrt(tokens)·2^-24 relative).
 * - Layers: the Cholesky chain (cuSOLVER vs LAPACK, both float32) and the
 *   lazy GEMM sum in other orders, so a weight that lies within rounding
 *   of a grid midpoint may take the other code, and its error feedback
 *   then moves the row's later weights by a fraction of a step: >= 99% of
 *   codes identical; a flip that cascades can rarely give a 2-step
 *   difference (about one per hundred flips in a host simulation with
 *   Hinv perturbed by 1e-6; 3e-5 of the codes of a 4096x4096 layer when
 *   the code first ran, under emulation), so at most 1 + 1e-4 of the codes
 *   may differ by more than 1. A flip at a near-tie barely
 *   changes (w-q)², so the loss agrees to 1e-4 relative and the layer
 *   error tr(ΔW H ΔWᵀ) to 1%. Group parameters are fitted on the same
 *   weights, bar the drift above: >= 99% of (scale, zero) pairs equal
 *   (float32 scales within 1e-5 relative: see compare_results).
 * - Things computed identically on both sides must be equal: g_idx, the
 *   device copy of Q and the result's Q, dead columns quantized to 0.
 * - Fixture vectors (reference fasterquant, float32): the host test's
 *   measure (same grid point: |dQ| <= 1e-3 scale) for >= 99% of weights
 *   (the host itself reaches 99.66% to 100%: the same float32 rounding
 *   differences) and a layer error at most 2% above the reference's. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gptq/quant.h"
#include "kernels/backend.h"
#include "kernels/backend_select.h"
#include "model/safetensors.h"
#include "testutil.h"
#include "cudatest.h"
#include "vectors.h"

/* ---- helpers ------------------------------------------------------------- */

/* Calibration-like inputs X [tokens, cols]: correlated (a common factor),
 * uneven scales per column (so act-order matters), non-zero mean. Columns
 * listed in `dead` are all zero. */
static float *make_inputs(int tokens, int cols, uint64_t *rng, const int *dead, int n_dead)
{
    float *X = xmalloc((size_t)tokens * cols * sizeof *X);
    for (int t = 0; t < tokens; t++) {
        double common = test_rand_normal(rng);
        for (int c = 0; c < cols; c++)
            X[(size_t)t * cols + c] =
                (float)((0.3 + (c % 7) * 0.4) * test_rand_normal(rng) + 0.5 * common + 0.1);
        for (int k = 0; k < n_dead; k++)
            X[(size_t)t * cols + dead[k]] = 0.0f;
    }
    return X;
}

/* W [rows, cols] ~ N(0, 0.05²) and H = 2/tokens XᵀX (full symmetric). */
static void make_problem(int rows, int cols, uint64_t seed, const int *dead, int n_dead, float *W,
                         float *H)
{
    uint64_t rng = seed;
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        W[i] = (float)(0.05 * test_rand_normal(&rng));
    const int tokens = 2 * cols;
    float *X = make_inputs(tokens, cols, &rng, dead, n_dead);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, tokens, 2.0f / tokens, X, cols, 0.0f,
                H, cols);
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < i; j++)
            H[(size_t)i * cols + j] = H[(size_t)j * cols + i];
    free(X);
}

/* ---- Hessian --------------------------------------------------------------- */

static void test_hessian(int cols, int n_batches)
{
    uint64_t rng = 1000 + (uint64_t)cols;
    gptq_hessian *h;
    gptq_backend_hessian *dh;
    CHECK_OK(gptq_hessian_create(cols, &h));
    CHECK_OK(be->hessian_create(be, cols, &dh));
    for (int b = 0; b < n_batches; b++) {
        const int tokens = 37 + 50 * b, samples = 1 + b % 3;
        float *X = make_inputs(tokens, cols, &rng, NULL, 0);
        float *d_X = to_device(X, (size_t)tokens * cols * sizeof *X);
        CHECK_OK(gptq_hessian_add(h, X, tokens, samples));
        CHECK_OK(be->hessian_add(be, dh, d_X, tokens, samples));
        CHECK_OK(be->sync(be));
        be->free(be, d_X);
        free(X);
    }
    const size_t n = (size_t)cols * cols;
    float *H = xmalloc(n * sizeof *H), *Hd = xmalloc(n * sizeof *Hd);
    float *d_H = be->alloc(be, n * sizeof *d_H);
    gptq_hessian_get(h, H);
    CHECK_OK(be->hessian_get(be, dh, d_H));
    from_device(Hd, d_H, n * sizeof *Hd);
    double maxerr = 0, maxref = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)Hd[i] - H[i]);
        if (e > maxerr)
            maxerr = e, at = i;
        maxref = fmax(maxref, fabs((double)H[i]));
    }
    printf("hessian %d cols, %d batches: max |H_dev - H_host| / max |H| = %.2e\n", cols, n_batches,
           maxerr / maxref);
    CHECK(maxerr <= 1e-5 * maxref, "Hessian differs at (%zu, %zu): device %.8g host %.8g (max %g)",
          at / cols, at % cols, (double)Hd[at], (double)H[at], maxref);
    CHECK(be->hessian_samples(be, dh) == gptq_hessian_samples(h), "samples: device %lld host %lld",
          (long long)be->hessian_samples(be, dh), (long long)gptq_hessian_samples(h));
    /* arguments the host refuses, the device refuses */
    CHECK(be->hessian_add(be, dh, d_H, 0, 1) == GPTQ_ERR_ARG, "0 tokens must be refused");
    be->free(be, d_H);
    be->hessian_free(be, dh);
    gptq_hessian_destroy(h);
    free(H), free(Hd);
}

/* ---- one layer against the host ------------------------------------------------ */

typedef struct layer_stats {
    double codes_same, groups_same, same_point; /* fractions */
    size_t codes_far;                           /* |code difference| > 1 */
    int gidx_diff;
} layer_stats;

static layer_stats compare_results(const gptq_quant_result *d, const gptq_quant_result *h)
{
    layer_stats s = {0};
    const size_t n = (size_t)h->rows * h->cols, ng = (size_t)h->groups * h->rows;
    size_t same = 0, gsame = 0, point = 0;
    for (size_t i = 0; i < n; i++) {
        int diff = abs((int)d->codes[i] - (int)h->codes[i]);
        same += diff == 0;
        s.codes_far += diff > 1;
        float scale = h->scales[(size_t)h->g_idx[i % h->cols] * h->rows + i / h->cols];
        point += fabsf(d->Q[i] - h->Q[i]) <= 1e-3f * scale;
    }
    /* Groups fitted after a lazy update see W through a GEMM whose
     * summation order differs from the host's: float32 scales (no fp16
     * rounding to hide it) then differ in their last bits. Equal means the
     * same zero and a scale within 1e-5 relative (a few float32 ulps of
     * the weights it was fitted on; an fp16 step is 1e-3). */
    for (size_t i = 0; i < ng; i++)
        gsame += fabsf(d->scales[i] - h->scales[i]) <= 1e-5f * fabsf(h->scales[i]) &&
                 d->zeros[i] == h->zeros[i];
    for (int c = 0; c < h->cols; c++)
        s.gidx_diff += d->g_idx[c] != h->g_idx[c];
    s.codes_same = (double)same / n;
    s.groups_same = (double)gsame / ng;
    s.same_point = (double)point / n;
    return s;
}

static void compare_layer(const char *what, int rows, int cols, const gptq_quant_config *cfg,
                          uint64_t seed, const int *dead, int n_dead)
{
    const size_t n_w = (size_t)rows * cols, n_h = (size_t)cols * cols;
    float *W = xmalloc(n_w * sizeof *W), *H = xmalloc(n_h * sizeof *H);
    make_problem(rows, cols, seed, dead, n_dead, W, H);
    float *d_W = to_device(W, n_w * sizeof *W), *d_H = to_device(H, n_h * sizeof *H);
    float *d_Q = be->alloc(be, n_w * sizeof *d_Q);
    gptq_quant_result h, d;
    gptq_status st_h = gptq_quantize_layer(W, H, rows, cols, cfg, &h);
    gptq_status st_d = be->quantize_layer(be, d_W, d_H, rows, cols, cfg, &d, d_Q);
    CHECK(st_h == GPTQ_OK && st_d == GPTQ_OK, "%s: host %s, device %s: %s", what,
          gptq_status_name(st_h), gptq_status_name(st_d), gptq_errmsg());
    if (st_h != GPTQ_OK || st_d != GPTQ_OK)
        goto out;

    layer_stats s = compare_results(&d, &h);
    const double loss_rel = fabs(d.loss - h.loss) / h.loss;
    const double e_h = gptq_layer_error(W, h.Q, H, rows, cols);
    const double e_d = gptq_layer_error(W, d.Q, H, rows, cols);
    printf("%-34s [%4d, %4d] codes equal %8.4f%% (>1 apart: %zu), groups equal %7.3f%%, loss "
           "%.6g vs %.6g (rel %.1e), layer error x%.5f, raised %d vs %d, device %.3f s "
           "(cholesky %.3f, blocks %.3f), host %.3f s\n",
           what, rows, cols, 100 * s.codes_same, s.codes_far, 100 * s.groups_same, d.loss, h.loss,
           loss_rel, e_d / e_h, d.zeros_raised, h.zeros_raised, d.seconds_total,
           d.seconds_cholesky, d.seconds_blocks, h.seconds_total);
    CHECK(s.codes_same >= 0.99, "%s: %.4f%% codes equal, want >= 99%%", what, 100 * s.codes_same);
    /* A code that differs feeds a different error forward to the rest of
     * its row, so rows that diverge once drift: on a 4096x4096 layer ~3e-5
     * of the codes end more than one step apart (measured under emulation,
     * where only the GEMM's and the Cholesky's summation order differ from
     * the host); the loss and layer error checks below hold the quality. */
    CHECK(s.codes_far <= 1 + n_w / 10000,
          "%s: %zu codes more than 1 apart", what, s.codes_far);
    CHECK(s.groups_same >= 0.99, "%s: %.3f%% of (scale, zero) equal, want >= 99%%", what,
          100 * s.groups_same);
    /* Each code that differs (a near-tie rounded the other way after
     * another summation order) moves the loss by about its share: 8-bit
     * g128 sym under emulation had 0.021% of codes differ and loss rel
     * 1.0e-4, where the loss is smallest. */
    CHECK(loss_rel <= 1e-4 + (1 - s.codes_same), "%s: loss %.8g vs host %.8g", what, d.loss,
          h.loss);
    CHECK(fabs(e_d / e_h - 1) <= 0.01, "%s: layer error %.6g vs host %.6g", what, e_d, e_h);
    CHECK(s.gidx_diff == 0, "%s: %d g_idx entries differ", what, s.gidx_diff);
    CHECK(d.rows == rows && d.cols == cols && d.groups == h.groups && d.bits == cfg->bits,
          "%s: result shape [%d, %d] %d groups %d bits", what, d.rows, d.cols, d.groups, d.bits);
    CHECK(abs(d.zeros_raised - h.zeros_raised) <= 1 + h.groups * rows / 100,
          "%s: zeros raised %d vs host %d", what, d.zeros_raised, h.zeros_raised);
    CHECK(d.seconds_total > 0 && d.seconds_cholesky >= 0 && d.seconds_blocks > 0 &&
              d.seconds_total >= d.seconds_blocks && d.seconds_total >= d.seconds_cholesky,
          "%s: timings total %g cholesky %g blocks %g", what, d.seconds_total,
          d.seconds_cholesky, d.seconds_blocks);

    /* d_Q is the result's Q; d_W was not modified; codes are in range and
     * Q is their dequantization */
    float *Qd = xmalloc(n_w * sizeof *Qd), *Wd = xmalloc(n_w * sizeof *Wd);
    from_device(Qd, d_Q, n_w * sizeof *Qd);
    from_device(Wd, d_W, n_w * sizeof *Wd);
    size_t q_diff = 0, w_diff = 0, bad_code = 0;
    for (size_t i = 0; i < n_w; i++) {
        q_diff += Qd[i] != d.Q[i];
        w_diff += Wd[i] != W[i];
        const size_t r = i / cols, c = i % cols, g = (size_t)d.g_idx[c] * rows + r;
        bad_code += d.codes[i] >> cfg->bits ||
                    d.Q[i] != d.scales[g] * ((float)d.codes[i] - (float)d.zeros[g]);
    }
    CHECK(q_diff == 0, "%s: %zu entries of d_Q differ from the result's Q", what, q_diff);
    CHECK(w_diff == 0, "%s: d_W modified in %zu places", what, w_diff);
    CHECK(bad_code == 0, "%s: %zu codes out of range or not matching Q", what, bad_code);
    for (int k = 0; k < n_dead; k++) {
        int zero = 1;
        for (int r = 0; r < rows; r++)
            zero &= d.Q[(size_t)r * cols + dead[k]] == 0.0f;
        CHECK(zero, "%s: dead column %d must quantize to 0", what, dead[k]);
    }
    free(Qd), free(Wd);
    gptq_quant_result_free(&h);
    gptq_quant_result_free(&d);
out:
    be->free(be, d_W), be->free(be, d_H), be->free(be, d_Q);
    free(W), free(H);
}

static void test_errors(void)
{
    const int rows = 8, cols = 32;
    float *W = calloc(rows * cols, sizeof *W), *H = calloc(cols * cols, sizeof *H);
    gptq_quant_config cfg;
    gptq_quant_config_default(&cfg);
    cfg.group_size = -1;
    gptq_quant_result r;
    /* indefinite H without damping: GPTQ_ERR_NUMERIC naming damp, as on the host */
    for (int i = 0; i < cols; i++)
        H[i * cols + i] = i == 3 ? -1.0f : 1.0f;
    cfg.damp = 0;
    float *d_W = to_device(W, rows * cols * sizeof *W), *d_H = to_device(H, cols * cols * sizeof *H);
    gptq_status st = be->quantize_layer(be, d_W, d_H, rows, cols, &cfg, &r, NULL);
    CHECK(st == GPTQ_ERR_NUMERIC && strstr(gptq_errmsg(), "damp"), "indefinite H: %s: %s",
          gptq_status_name(st), gptq_errmsg());
    /* positive diagonal but indefinite ([[1, 2], [2, 1]] block): the
     * default damp does not help; the second leading minor fails on both */
    memset(H, 0, cols * cols * sizeof *H);
    for (int i = 0; i < cols; i++)
        H[i * cols + i] = 1.0f;
    H[1] = H[cols] = 2.0f;
    cfg.damp = 0.01f;
    be->upload(be, d_H, H, cols * cols * sizeof *H);
    st = be->quantize_layer(be, d_W, d_H, rows, cols, &cfg, &r, NULL);
    CHECK(st == GPTQ_ERR_NUMERIC && strstr(gptq_errmsg(), "column 2") &&
              strstr(gptq_errmsg(), "raise damp (now 0.01)"),
          "indefinite H, damp 0.01: %s: %s", gptq_status_name(st), gptq_errmsg());
    if (st == GPTQ_OK)
        gptq_quant_result_free(&r);
    st = gptq_quantize_layer(W, H, rows, cols, &cfg, &r);
    CHECK(st == GPTQ_ERR_NUMERIC, "the host agrees: %s", gptq_errmsg());
    /* a NaN in W; a bad config */
    cfg.damp = 0.01f;
    W[5] = NAN;
    be->upload(be, d_W, W, rows * cols * sizeof *W);
    st = be->quantize_layer(be, d_W, d_H, rows, cols, &cfg, &r, NULL);
    CHECK(st == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "(0, 5)"), "NaN W: %s: %s",
          gptq_status_name(st), gptq_errmsg());
    W[5] = 0;
    be->upload(be, d_W, W, rows * cols * sizeof *W);
    cfg.bits = 5;
    st = be->quantize_layer(be, d_W, d_H, rows, cols, &cfg, &r, NULL);
    CHECK(st == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "bits"), "bits 5: %s", gptq_errmsg());
    cfg.bits = 4;
    cfg.static_groups = 1;
    st = be->quantize_layer(be, d_W, d_H, rows, cols, &cfg, &r, NULL);
    CHECK(st == GPTQ_ERR_ARG, "static groups per channel must be refused: %s", gptq_errmsg());
    CHECK_OK(be->sync(be)); /* a failed layer leaves nothing behind for the next sync */
    be->free(be, d_W), be->free(be, d_H);
    free(W), free(H);
}

/* ---- fixture vectors -------------------------------------------------------------- */

/* A fixture tensor as float32; a missing one is a failure. */
static float *load(gptq_safetensors *st, const char *name, int64_t numel)
{
    float *x = vectors_load(st, name, numel);
    test_failures += !x;
    return x;
}

static void vectors_hessian(gptq_safetensors *st)
{
    /* hessian.X [8 sequences, 64 tokens, 64 features], fed as 4 batches of 2 */
    float *X = load(st, "hessian.X", 8 * 64 * 64), *Href = load(st, "hessian.H", 64 * 64);
    if (!X || !Href)
        goto out;
    gptq_backend_hessian *dh;
    CHECK_OK(be->hessian_create(be, 64, &dh));
    float *d_X = to_device(X, 8 * 64 * 64 * sizeof *X), *d_H = be->alloc(be, 64 * 64 * sizeof *d_H);
    for (int b = 0; b < 4; b++)
        CHECK_OK(be->hessian_add(be, dh, d_X + (size_t)b * 2 * 64 * 64, 2 * 64, 2));
    CHECK_OK(be->hessian_get(be, dh, d_H));
    float H[64 * 64];
    from_device(H, d_H, sizeof H);
    double maxerr = 0, maxref = 0;
    for (int i = 0; i < 64 * 64; i++) {
        maxerr = fmax(maxerr, fabs((double)H[i] - Href[i]));
        maxref = fmax(maxref, fabs((double)Href[i]));
    }
    printf("vectors: hessian running mean: max |H - H_ref| / max |H_ref| = %.2e\n",
           maxerr / maxref);
    CHECK(maxerr / maxref < 1e-5, "vectors: device Hessian differs: %.3g", maxerr / maxref);
    CHECK(be->hessian_samples(be, dh) == 8, "8 samples, got %lld", (long long)be->hessian_samples(be, dh));
    be->hessian_free(be, dh);
    be->free(be, d_X), be->free(be, d_H);
out:
    free(X), free(Href);
}

static void vectors_layer(gptq_safetensors *st, const char *layer, int rows, int cols)
{
    char name[256];
    snprintf(name, sizeof name, "%s.W", layer);
    float *W = load(st, name, (int64_t)rows * cols);
    snprintf(name, sizeof name, "%s.H", layer);
    float *H = load(st, name, (int64_t)cols * cols);
    if (!W || !H)
        goto out;
    float *d_W = to_device(W, (size_t)rows * cols * sizeof *W);
    float *d_H = to_device(H, (size_t)cols * cols * sizeof *H);
    for (int k = 0; k < n_vector_configs; k++) {
        const vector_config *vc = &vector_configs[k];
        snprintf(name, sizeof name, "%s.Q.%s", layer, vc->tag);
        float *Qref = load(st, name, (int64_t)rows * cols);
        if (!Qref)
            continue;
        gptq_quant_result d, h;
        gptq_status st_d = be->quantize_layer(be, d_W, d_H, rows, cols, &vc->cfg, &d, NULL);
        gptq_status st_h = gptq_quantize_layer(W, H, rows, cols, &vc->cfg, &h);
        CHECK(st_d == GPTQ_OK && st_h == GPTQ_OK, "vectors %s %s: %s", layer, vc->tag,
              gptq_errmsg());
        if (st_d == GPTQ_OK && st_h == GPTQ_OK) {
            size_t n = (size_t)rows * cols, same = 0;
            for (size_t i = 0; i < n; i++) {
                float scale = d.scales[(size_t)d.g_idx[i % cols] * rows + i / cols];
                same += fabsf(d.Q[i] - Qref[i]) <= 1e-3f * scale;
            }
            const double frac = (double)same / n;
            const double e_ref = gptq_layer_error(W, Qref, H, rows, cols);
            const double e_dev = gptq_layer_error(W, d.Q, H, rows, cols);
            layer_stats s = compare_results(&d, &h);
            printf("vectors %-16s %-31s vs reference: equal %7.3f%%, layer error x%.4f | vs host: "
                   "codes equal %7.3f%%, loss rel %.1e\n",
                   layer, vc->tag, 100 * frac, e_dev / e_ref, 100 * s.codes_same,
                   fabs(d.loss - h.loss) / h.loss);
            CHECK(frac >= 0.99, "vectors %s %s: %.4f%% equal to the reference, want >= 99%%",
                  layer, vc->tag, 100 * frac);
            CHECK(e_dev <= 1.02 * e_ref, "vectors %s %s: layer error %.5g vs reference %.5g",
                  layer, vc->tag, e_dev, e_ref);
            CHECK(s.codes_same >= 0.99, "vectors %s %s: %.4f%% codes equal to the host's", layer,
                  vc->tag, 100 * s.codes_same);
        }
        if (st_d == GPTQ_OK)
            gptq_quant_result_free(&d);
        if (st_h == GPTQ_OK)
            gptq_quant_result_free(&h);
        free(Qref);
    }
    be->free(be, d_W), be->free(be, d_H);
out:
    free(W), free(H);
}

static void test_vectors(void)
{
    const char *root = getenv("GPTQ_FIXTURES");
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/gptq-vectors/vectors.safetensors", root ? root : "");
    if (!root || stat(path, &sb) != 0) {
        printf("vectors: %s not found, that part skipped\n", path);
        return;
    }
    gptq_safetensors *st;
    if (gptq_safetensors_open(path, &st) != GPTQ_OK) {
        fprintf(stderr, "FAIL: %s\n", gptq_errmsg());
        test_failures++;
        return;
    }
    vectors_hessian(st);
    vectors_layer(st, vector_layers[0], 256, 256);
    vectors_layer(st, vector_layers[1], 256, 768);
    gptq_safetensors_close(st);
}

int main(void)
{
    int rc = cudatest_open();
    if (rc != 0)
        return rc;

    test_hessian(300, 5);
    test_hessian(1024, 3);

    gptq_quant_config cfg, base;
    gptq_quant_config_default(&base);
    cfg = base; /* 4-bit, group 128, asymmetric, fp16 scales, v1 zeros */
    compare_layer("4-bit g128", 256, 512, &cfg, 1, NULL, 0);
    cfg = base;
    cfg.bits = 3;
    cfg.group_size = -1;
    compare_layer("3-bit per channel", 256, 512, &cfg, 2, NULL, 0);
    cfg = base;
    cfg.act_order = 1;
    compare_layer("4-bit g128 act-order", 256, 512, &cfg, 3, NULL, 0);
    cfg.static_groups = 1;
    compare_layer("4-bit g128 act-order static groups", 256, 512, &cfg, 4, NULL, 0);
    cfg = base;
    cfg.bits = 8;
    cfg.sym = 1;
    compare_layer("8-bit g128 sym", 256, 512, &cfg, 5, NULL, 0);
    cfg = base;
    cfg.bits = 2;
    cfg.group_size = 64;
    cfg.mse = 1;
    compare_layer("2-bit g64 mse", 256, 512, &cfg, 6, NULL, 0);
    const int dead[] = {0, 77, 511};
    cfg = base;
    compare_layer("4-bit g128 dead inputs", 256, 512, &cfg, 7, dead, 3);
    cfg.act_order = 1;
    compare_layer("4-bit g128 act-order dead inputs", 256, 512, &cfg, 8, dead, 3);
    cfg = base;
    compare_layer("4-bit g128, 320 columns", 192, 320, &cfg, 9, NULL, 0);
    cfg.group_size = 48; /* groups start inside blocks and span them */
    compare_layer("4-bit g48, 320 columns", 192, 320, &cfg, 10, NULL, 0);
    cfg = base;
    cfg.block_size = 32; /* groups span blocks */
    compare_layer("4-bit g128 block 32", 256, 512, &cfg, 11, NULL, 0);
    cfg = base;
    cfg.block_size = 1024; /* Hinv block too large for shared memory */
    compare_layer("4-bit g128 block 1024", 128, 1024, &cfg, 12, NULL, 0);
    cfg = base;
    cfg.bits = 3;
    cfg.group_size = 100;
    cfg.sym = 1;
    cfg.mse = 1;
    cfg.act_order = 1;
    cfg.v1_zeros = 0;
    cfg.fp16_scales = 0;
    compare_layer("3-bit g100 sym mse act-order fp32", 130, 300, &cfg, 13, NULL, 0);
    cfg = base;
    cfg.bits = 4;
    cfg.group_size = 32;
    cfg.mse = 1;
    cfg.act_order = 1;
    cfg.static_groups = 1;
    compare_layer("4-bit g32 mse act-order static", 100, 256, &cfg, 14, NULL, 0);
    cfg = base; /* GGUF grids: signed Q4_0 scales, Q8_0's zero 128 */
    CHECK_OK(gptq_quant_config_use_grid(&cfg, GPTQ_GRID_Q4_0, 0, 0));
    compare_layer("grid q4_0", 128, 256, &cfg, 16, NULL, 0);
    cfg = base;
    cfg.act_order = 1;
    CHECK_OK(gptq_quant_config_use_grid(&cfg, GPTQ_GRID_Q8_0, 8, 32));
    CHECK(cfg.static_groups, "grid q8_0 with act-order gets static groups");
    compare_layer("grid q8_0 act-order", 128, 256, &cfg, 17, NULL, 0);
    cfg = base;
    if (be->emulated) /* a 7B layer takes minutes on the CPU */
        compare_layer("4-bit g128 (16 blocks)", 384, 2048, &cfg, 15, NULL, 0);
    else
        compare_layer("4-bit g128 (7B shape)", 4096, 4096, &cfg, 15, NULL, 0);

    test_errors();
    test_vectors();
    CHECK_OK(be->sync(be));
    return test_result();
}
