/* bench/quant_layer.c: GPTQ on Llama-7B-sized layers with 2048 calibration
 * tokens: seconds for the Hessian, the Cholesky step and the block loop,
 * with RTN's time on the same layer beside it as the baseline.
 * Usage: quant_layer [ROWSxCOLS ...]   (default 4096x4096 11008x4096) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gptq/quant.h"
#include "benchutil.h"

static uint64_t rng_state = 42;
static float randn(void) /* sum of 4 uniforms: cheap, roughly normal */
{
    float s = 0;
    for (int i = 0; i < 4; i++) {
        rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
        s += (float)(rng_state >> 40) * 0x1p-24f - 0.5f;
    }
    return s * 1.732f;
}

static int run(int rows, int cols, int tokens)
{
    float *W = malloc((size_t)rows * cols * 4), *X = malloc((size_t)tokens * cols * 4);
    float *H = malloc((size_t)cols * cols * 4);
    if (!W || !X || !H) {
        fprintf(stderr, "out of memory for %dx%d\n", rows, cols);
        return 1;
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        W[i] = 0.02f * randn();
    for (size_t i = 0; i < (size_t)tokens * cols; i++) /* uneven feature scales, as activations have */
        X[i] = randn() * (1.0f + (float)(i % (size_t)cols % 13));

    double t0 = now();
    gptq_hessian *h;
    gptq_hessian_create(cols, &h);
    for (int b = 0; b < tokens / 256; b++) /* 8 samples of 256 tokens per batch */
        gptq_hessian_add(h, X + (size_t)b * 256 * cols, 256, 1);
    gptq_hessian_get(h, H);
    gptq_hessian_destroy(h);
    double t_hess = now() - t0;

    gptq_quant_config cfg;
    gptq_quant_config_default(&cfg);
    gptq_quant_result r;
    if (gptq_quantize_layer(W, H, rows, cols, &cfg, &r) != GPTQ_OK) {
        fprintf(stderr, "GPTQ failed: %s\n", gptq_errmsg());
        return 1;
    }
    double t1 = now();
    gptq_quant_result rr;
    gptq_rtn_layer(W, rows, cols, &cfg, &rr);
    double t_rtn = now() - t1;
    double e_g = gptq_layer_error(W, r.Q, H, rows, cols), e_r = gptq_layer_error(W, rr.Q, H, rows, cols);
    double total = t_hess + r.seconds_total;
    double other = r.seconds_total - r.seconds_cholesky - r.seconds_blocks;
    printf("W [%5d, %5d], %d tokens, 4-bit g128: GPTQ %.2f s = Hessian %.2f (%.0f%%) + "
           "Cholesky %.2f (%.0f%%) + blocks %.2f (%.0f%%) + other %.2f | RTN %.3f s (GPTQ/RTN "
           "time x%.0f) | layer error GPTQ/RTN %.3f\n",
           rows, cols, tokens, total, t_hess, 100 * t_hess / total, r.seconds_cholesky,
           100 * r.seconds_cholesky / total, r.seconds_blocks, 100 * r.seconds_blocks / total, other,
           t_rtn, total / t_rtn, e_g / e_r);
    gptq_quant_result_free(&r);
    gptq_quant_result_free(&rr);
    free(W), free(X), free(H);
    return 0;
}

int main(int argc, char **argv)
{
    const char *defaults[] = {"4096x4096", "11008x4096"};
    int n = argc > 1 ? argc - 1 : 2;
    for (int i = 0; i < n; i++) {
        const char *spec = argc > 1 ? argv[i + 1] : defaults[i];
        int rows, cols;
        if (sscanf(spec, "%dx%d", &rows, &cols) != 2 || rows <= 0 || cols <= 0) {
            fprintf(stderr, "usage: quant_layer [ROWSxCOLS ...]\n");
            return 2;
        }
        if (run(rows, cols, 2048))
            return 1;
    }
    return 0;
}
