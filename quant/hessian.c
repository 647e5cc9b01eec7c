/* quant/hessian.c: H = 2/n Σ x xᵀ as a running mean over calibration batches.
 *
 * Precision: each batch's Xᵀ X is one float32 SYRK (that is where all the
 * flops are, and float32 is what the reference and the GPU use); the running
 * mean across batches is kept in float64, so the rescaling H·n/(n+b) applied
 * once per batch cannot accumulate float32 rounding over thousands of
 * batches. The cost is one [cols, cols] double array and a pass over it per
 * batch, negligible beside the SYRK. */
#include <cblas.h>
#include <stdlib.h>

#include "gptq/quant.h"

struct gptq_hessian {
    int cols;
    int64_t n_samples;
    double *H;     /* [cols, cols], upper triangle maintained */
    float *batch;  /* [cols, cols] scratch for one SYRK */
};

gptq_status gptq_hessian_create(int cols, gptq_hessian **out)
{
    *out = NULL;
    if (cols <= 0 || cols > 1 << 17)
        return gptq_fail(GPTQ_ERR_ARG, "Hessian of %d columns: use 1 to 131072", cols);
    gptq_hessian *h = calloc(1, sizeof *h);
    size_t n = (size_t)cols * cols;
    if (h) {
        h->H = calloc(n, sizeof *h->H);
        h->batch = malloc(n * sizeof *h->batch);
    }
    if (!h || !h->H || !h->batch) {
        gptq_hessian_destroy(h);
        return gptq_fail(GPTQ_ERR_NOMEM, "Hessian [%d, %d]: out of memory", cols, cols);
    }
    h->cols = cols;
    *out = h;
    return GPTQ_OK;
}

void gptq_hessian_destroy(gptq_hessian *h)
{
    if (!h)
        return;
    free(h->H);
    free(h->batch);
    free(h);
}

gptq_status gptq_hessian_add(gptq_hessian *h, const float *X, int64_t tokens, int n_samples)
{
    if (tokens <= 0 || n_samples <= 0 || tokens > INT32_MAX)
        return gptq_fail(GPTQ_ERR_ARG, "Hessian batch of %lld tokens, %d samples: both must be "
                         "positive", (long long)tokens, n_samples);
    const int cols = h->cols;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, (int)tokens, 1.0f, X, cols, 0.0f,
                h->batch, cols);
    const double n = (double)h->n_samples, b = (double)n_samples;
    const double keep = n / (n + b), add = 2.0 / (n + b);
    for (int i = 0; i < cols; i++) {
        double *row = h->H + (size_t)i * cols;
        const float *brow = h->batch + (size_t)i * cols;
        for (int j = i; j < cols; j++)
            row[j] = row[j] * keep + add * (double)brow[j];
    }
    h->n_samples += n_samples;
    return GPTQ_OK;
}

void gptq_hessian_get(const gptq_hessian *h, float *H)
{
    const int cols = h->cols;
    for (int i = 0; i < cols; i++)
        for (int j = i; j < cols; j++) {
            float v = (float)h->H[(size_t)i * cols + j];
            H[(size_t)i * cols + j] = v;
            H[(size_t)j * cols + i] = v;
        }
}

int gptq_hessian_cols(const gptq_hessian *h) { return h->cols; }

int64_t gptq_hessian_samples(const gptq_hessian *h) { return h->n_samples; }
