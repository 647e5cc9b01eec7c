/* tests/test_gemm_half.c: linears with F16/BF16 weights (kernels/cpu/gemm_half.c)
 * against a float64 reference on the same 16-bit weights, on every path
 * (portable, AVX2, tiles + sgemm, AVX-512 panels and rows), batch sizes across the path switch,
 * shapes whose widths are not multiples of the vector width, with and
 * without bias; and the 16-bit embedding lookup.
 *
 * Bound: the kernels accumulate in float32, so |y - ref| is at most about
 * in · 2^-24 · Σ|x·w| (a sum of `in` products); checked with that bound
 * times 4 and never looser than the exact products would need. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/dtype.h"
#include "kernels/backend.h"
#include "kernels/cpu/gemm_half.h"
#include "testutil.h"

static uint16_t to_half(float f, int bf16)
{
    return bf16 ? gptq_f32_to_bf16(f) : gptq_f32_to_f16(f);
}

static double from_half(uint16_t h, int bf16)
{
    return bf16 ? gptq_bf16_to_f32(h) : gptq_f16_to_f32(h);
}

static void check_case(gptq_gemm_half_path path, int bf16, int n, int in, int out, int bias,
                       uint64_t *rng)
{
    float *x = malloc((size_t)n * in * sizeof *x), *y = malloc((size_t)n * out * sizeof *y);
    float *b = malloc((size_t)out * sizeof *b);
    uint16_t *W = malloc((size_t)out * in * sizeof *W);
    if (!x || !y || !b || !W) {
        CHECK(0, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < (size_t)n * in; i++)
        x[i] = (float)test_rand_normal(rng);
    for (size_t i = 0; i < (size_t)out * in; i++)
        W[i] = to_half((float)(0.05 * test_rand_normal(rng)), bf16);
    for (int r = 0; r < out; r++)
        b[r] = (float)test_rand_normal(rng);
    for (size_t i = 0; i < (size_t)n * out; i++)
        y[i] = NAN; /* every output must be written */
    gptq_cpu_gemm_half_set_path(path);
    gptq_cpu_gemm_half(x, W, bf16, bias ? b : NULL, y, n, in, out);
    double worst = 0.0;
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < out; r++) {
            double ref = bias ? b[r] : 0.0, mag = bias ? fabs(b[r]) : 0.0;
            for (int k = 0; k < in; k++) {
                double p = (double)x[(size_t)i * in + k] * from_half(W[(size_t)r * in + k], bf16);
                ref += p;
                mag += fabs(p);
            }
            double err = fabs((double)y[(size_t)i * out + r] - ref);
            double bound = 4.0 * (in + 1) * ldexp(1.0, -24) * mag + 1e-30;
            if (!(err <= bound))
                bad++;
            if (err / bound > worst || isnan(err))
                worst = isnan(err) ? INFINITY : err / bound;
        }
    CHECK(bad == 0, "path %d %s n=%d [%d, %d]%s: %d outputs off (worst %.2f x the bound)",
          (int)path, bf16 ? "bf16" : "f16", n, out, in, bias ? " +bias" : "", bad, worst);
done:
    free(x), free(y), free(b), free(W);
}

static void test_embed(uint64_t *rng)
{
    const int vocab = 37, dim = 29, n = 5;
    int32_t ids[5] = {0, 36, 7, 7, 20};
    for (int bf16 = 0; bf16 < 2; bf16++) {
        uint16_t table[37 * 29];
        float out[5 * 29];
        for (int i = 0; i < vocab * dim; i++)
            table[i] = to_half((float)test_rand_normal(rng), bf16);
        gptq_cpu_embed_half(table, bf16, ids, n, dim, out);
        int bad = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < dim; j++)
                bad += out[i * dim + j] != (float)from_half(table[ids[i] * dim + j], bf16);
        CHECK(bad == 0, "embed %s: %d values are not the table's", bf16 ? "bf16" : "f16", bad);
    }
}

/* The backend table routes F16/BF16 weights here and says it takes them. */
static void test_backend(uint64_t *rng)
{
    const gptq_backend *be = gptq_backend_cpu();
    unsigned want = 1u << GPTQ_DT_F32 | 1u << GPTQ_DT_F16 | 1u << GPTQ_DT_BF16;
    CHECK((be->weight_dtypes & want) == want, "cpu weight_dtypes %#x", be->weight_dtypes);
    enum { N = 3, IN = 40, OUT = 9 };
    float x[N * IN], y[N * OUT], wf[OUT * IN], yf[N * OUT];
    uint16_t w[OUT * IN];
    for (int i = 0; i < N * IN; i++)
        x[i] = (float)test_rand_normal(rng);
    for (int i = 0; i < OUT * IN; i++) {
        w[i] = gptq_f32_to_f16((float)test_rand_normal(rng));
        wf[i] = gptq_f16_to_f32(w[i]);
    }
    gptq_cpu_gemm_half_set_path(GPTQ_GEMM_HALF_AUTO);
    be->gemm(be, x, w, GPTQ_DT_F16, NULL, y, N, IN, OUT);
    be->gemm(be, x, wf, GPTQ_DT_F32, NULL, yf, N, IN, OUT);
    double worst = 0.0;
    for (int i = 0; i < N * OUT; i++)
        worst = fmax(worst, fabs((double)y[i] - yf[i]));
    CHECK(worst < 1e-4, "backend gemm F16 vs the same weights in F32: %g", worst);
}

/* A child of fork() (the pool's workers stay in the parent) still runs the
 * kernels, on its own thread, instead of waiting for workers it lacks. */
static void test_fork(uint64_t *rng)
{
    check_case(GPTQ_GEMM_HALF_AVX2, 0, 1, 576, 192, 0, rng); /* starts the pool */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20); /* a hang ends as a failure */
        check_case(GPTQ_GEMM_HALF_AVX2, 0, 2, 576, 192, 1, rng);
        _exit(test_failures ? 1 : 0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0,
          "the kernels in a forked child: status %#x", status);
}

int main(void)
{
    uint64_t rng = 12345;
    const gptq_gemm_half_path paths[] = {GPTQ_GEMM_HALF_SCALAR, GPTQ_GEMM_HALF_AVX2,
                                         GPTQ_GEMM_HALF_SGEMM, GPTQ_GEMM_HALF_PANELS,
                                         GPTQ_GEMM_HALF_AVX512, GPTQ_GEMM_HALF_AUTO};
    const int shapes[][2] = {{64, 48}, {37, 13}, {576, 192}, {1000, 7}, {8, 1}};
    const int batches[] = {1, 2, 3, 4, 5, 8, GPTQ_GEMM_HALF_SGEMM_MIN_N - 1,
                           GPTQ_GEMM_HALF_SGEMM_MIN_N, 33};
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++)
        for (int bf16 = 0; bf16 < 2; bf16++)
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
                for (size_t b = 0; b < sizeof batches / sizeof *batches; b++)
                    check_case(paths[p], bf16, batches[b], shapes[s][0], shapes[s][1],
                               (int)(b + s) % 2, &rng);
    /* a tile boundary of the sgemm path: more rows than one tile holds */
    check_case(GPTQ_GEMM_HALF_SGEMM, 0, 20, 2048, 300, 1, &rng);
    /* the panel path's blocks: inputs past one panel (256) with a tail, rows
     * of x past one packed block (256), outputs past a panel with a tail */
    for (int bf16 = 0; bf16 < 2; bf16++)
        check_case(GPTQ_GEMM_HALF_PANELS, bf16, 300, 600, 75, bf16, &rng);
    printf("gemm_half: the panel path %s on this CPU\n",
           gptq_cpu_gemm_half_path_used(GPTQ_GEMM_HALF_SGEMM_MIN_N) == GPTQ_GEMM_HALF_PANELS
               ? "runs"
               : "falls back to sgemm (no AVX-512F)");
    test_embed(&rng);
    test_backend(&rng);
    test_fork(&rng);
    printf("gemm_half: %s\n", test_failures ? "FAILED" : "ok");
    return test_result();
}
