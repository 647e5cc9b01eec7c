/* bench/qgemv.c: packed GPTQ linears on the CPU backend (its qgemm entry on
 * the kernels' layout, as a resident model runs them) against fp32 BLAS on
 * the same weights dequantized, from the same run.
 *
 * Shapes of a 7B Llama's linears (rows = out, cols = in): 4096×4096 (q/k/v/o),
 * 11008×4096 (gate/up), 4096×11008 (down). Batch 1 compares with
 * cblas_sgemv, batch 8 with cblas_sgemm. Each figure is the median of RUNS
 * timed calls after warm-up; GB/s counts the weight bytes each side reads
 * (fp32 W; qweight + qzeros + scales + g_idx + perm). Per shape, a line
 * times the act-order layer against the same shape without act-order,
 * call for call (the kernels' layout is meant to make act-order free: the
 * ratio should be ~1). A last table times the packed GEMV kernel against
 * dequantize+sgemm over batch sizes, which is where GPTQ_QGEMM_SGEMM_MIN_N
 * comes from. Usage: qgemv [runs [cpu]]. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dtype.h"
#include "kernels/cpu/qgemm.h"
#include "kernels/cpu/qgemm_int8.h"
#include "kernels/linear.h"

static int RUNS = 21;
/* CLOCK_MONOTONIC, or with `qgemv RUNS cpu` the process's CPU time: on a
 * shared, loaded machine run one thread (OMP_NUM_THREADS=1
 * OPENBLAS_NUM_THREADS=1) with cpu time, which leaves out the time the
 * process spends preempted. */
static clockid_t CLOCK = CLOCK_MONOTONIC;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_case {
    const gptq_linear *L;
    const float *W, *x;
    float *y;
    int n;
} bench_case;

enum { RUN_BLAS, RUN_QGEMM };

static void run_once(const bench_case *b, int which)
{
    const int rows = b->L->P.rows, cols = b->L->P.cols;
    const gptq_backend *be = gptq_backend_cpu();
    if (which == RUN_QGEMM) {
        if (be->qgemm(be, b->L, b->x, NULL, b->y, b->n) != GPTQ_OK) {
            fprintf(stderr, "qgemv: qgemm: %s\n", gptq_errmsg());
            exit(1);
        }
    } else if (b->n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, b->W, cols, b->x, 1, 0.0f,
                    b->y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b->n, rows, cols, 1.0f, b->x, cols,
                    b->W, cols, 0.0f, b->y, rows);
    }
}

/* Median milliseconds of RUNS calls of each of a and b after 3 warm-up
 * calls, alternating a and b so that a change in machine load hits both. */
static void time_pair_ms(const bench_case *a, int which_a, const bench_case *b, int which_b,
                         double *ms_a, double *ms_b)
{
    double ta[101], tb[101];
    for (int k = 0; k < 3; k++) {
        run_once(a, which_a);
        run_once(b, which_b);
    }
    for (int k = 0; k < RUNS; k++) {
        double t0 = now_s();
        run_once(a, which_a);
        double t1 = now_s();
        run_once(b, which_b);
        ta[k] = (t1 - t0) * 1e3;
        tb[k] = (now_s() - t1) * 1e3;
    }
    qsort(ta, RUNS, sizeof ta[0], cmp_double);
    qsort(tb, RUNS, sizeof tb[0], cmp_double);
    *ms_a = ta[RUNS / 2];
    *ms_b = tb[RUNS / 2];
}

/* Random packed layer: random words are uniformly random codes and zeros. */
static void make_packed(gptq_packed *P, int rows, int cols, int bits, int group_size,
                        int act_order, uint64_t *rng)
{
    const int groups = (cols + group_size - 1) / group_size;
    memset(P, 0, sizeof *P);
    P->bits = bits;
    P->rows = rows;
    P->cols = cols;
    P->groups = groups;
    P->group_size = group_size;
    P->owned = 1;
    const size_t qw = (size_t)cols * bits / 32 * rows, qz = (size_t)groups * rows * bits / 32;
    P->qweight = malloc(qw * sizeof *P->qweight);
    P->qzeros = malloc(qz * sizeof *P->qzeros);
    P->scales = malloc((size_t)groups * rows * sizeof *P->scales);
    P->g_idx = malloc((size_t)cols * sizeof *P->g_idx);
    if (!P->qweight || !P->qzeros || !P->scales || !P->g_idx) {
        fprintf(stderr, "qgemv: out of memory\n");
        exit(1);
    }
    for (size_t k = 0; k < qw; k++)
        P->qweight[k] = (int32_t)rng_next(rng);
    for (size_t k = 0; k < qz; k++)
        P->qzeros[k] = (int32_t)rng_next(rng);
    for (size_t k = 0; k < (size_t)groups * rows; k++)
        P->scales[k] = gptq_f32_to_f16(0.001f + 0.01f * (float)(rng_next(rng) >> 40) * 0x1p-24f);
    int *perm = malloc((size_t)cols * sizeof *perm);
    for (int c = 0; c < cols; c++)
        perm[c] = c;
    if (act_order)
        for (int c = cols - 1; c > 0; c--) {
            int k = (int)(rng_next(rng) % (uint64_t)(c + 1)), t = perm[c];
            perm[c] = perm[k];
            perm[k] = t;
        }
    for (int i = 0; i < cols; i++)
        P->g_idx[perm[i]] = i / group_size;
    free(perm);
}

static double max_rel_diff(const float *a, const float *b, size_t len)
{
    double num = 0, den = 0;
    for (size_t k = 0; k < len; k++) {
        num = fmax(num, fabs((double)a[k] - b[k]));
        den = fmax(den, fabs((double)b[k]));
    }
    return num / den;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        RUNS = atoi(argv[1]) < 1 ? 1 : atoi(argv[1]) > 101 ? 101 : atoi(argv[1]);
    if (argc > 2 && !strcmp(argv[2], "cpu"))
        CLOCK = CLOCK_PROCESS_CPUTIME_ID;
    static const int shapes[3][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    static const int batch[2] = {1, 8};
    static const struct {
        int bits, act_order;
    } kinds[3] = {{4, 0}, {3, 0}, {4, 1}};
    uint64_t rng = 1;
    printf("qgemv: %d OpenMP threads, %d OpenBLAS threads, kernel path: %s (int8 kernel on %s), "
           "median of %d runs, %s time\n", omp_get_max_threads(), openblas_get_num_threads(),
           gptq_cpu_qgemm_path_name(gptq_cpu_qgemm_path_used(NULL, 1, 0)), gptq_cpu_qgemm_int8_isa(),
           RUNS,
           CLOCK == CLOCK_MONOTONIC ? "wall" : "process CPU");
    printf("%-13s %-5s %-10s %9s %8s %9s %8s %7s %9s\n", "out x in", "batch", "weights",
           "blas ms", "GB/s", "ours ms", "GB/s", "speedup", "max diff");
    for (int s = 0; s < 3; s++) {
        const int rows = shapes[s][0], cols = shapes[s][1];
        float *W = malloc((size_t)rows * cols * sizeof *W);
        float *x = malloc((size_t)64 * cols * sizeof *x);
        float *y_blas = malloc((size_t)64 * rows * sizeof *y_blas);
        float *y_ours = malloc((size_t)64 * rows * sizeof *y_ours);
        if (!W || !x || !y_blas || !y_ours) {
            fprintf(stderr, "qgemv: out of memory\n");
            return 1;
        }
        for (size_t k = 0; k < (size_t)64 * cols; k++)
            x[k] = (float)((double)(rng_next(&rng) >> 11) * 0x1p-53 * 2 - 1);
        gptq_linear L[3];
        for (int kind = 0; kind < 3; kind++) {
            gptq_packed P;
            make_packed(&P, rows, cols, kinds[kind].bits, 128, kinds[kind].act_order, &rng);
            if (gptq_packed_dequantize(&P, W) != GPTQ_OK ||
                gptq_linear_from_v1(&P, &L[kind]) != GPTQ_OK) {
                fprintf(stderr, "qgemv: dequantize: %s\n", gptq_errmsg());
                return 1;
            }
            char label[32];
            snprintf(label, sizeof label, "%db g128%s", kinds[kind].bits, kinds[kind].act_order ? " act" : "");
            for (int bi = 0; bi < 2; bi++) {
                const int n = batch[bi];
                bench_case blas = {&L[kind], W, x, y_blas, n}, ours = {&L[kind], W, x, y_ours, n};
                double t_blas, t_ours;
                time_pair_ms(&blas, RUN_BLAS, &ours, RUN_QGEMM, &t_blas, &t_ours);
                double fp32_bytes = (double)rows * cols * 4;
                printf("%5d x %-5d %5d %-10s %9.3f %8.1f %9.3f %8.1f %6.2fx %9.1e\n", rows, cols, n,
                       label, t_blas, fp32_bytes / t_blas * 1e-6, t_ours,
                       (double)gptq_linear_bytes(&L[kind]) / t_ours * 1e-6, t_blas / t_ours,
                       max_rel_diff(y_ours, y_blas, (size_t)n * rows));
            }
            if (s == 1 && kind == 0) { /* where the sgemm path starts to win */
                printf("  batch crossover on %d x %d 4-bit g128: ms of the packed float kernel / "
                       "dequantize+sgemm / int8 kernel\n", rows, cols);
                static const int ns[] = {1, 4, 8, 16, 24, 32, 64};
                for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
                    bench_case c = {&L[kind], W, x, y_ours, ns[k]};
                    /* the path is process-wide; time each on its own */
                    double t_avx2, t_sgemm, t_int8, unused;
                    gptq_cpu_qgemm_set_path(GPTQ_QGEMM_AVX2);
                    time_pair_ms(&c, RUN_QGEMM, &c, RUN_QGEMM, &t_avx2, &unused);
                    gptq_cpu_qgemm_set_path(GPTQ_QGEMM_SGEMM);
                    time_pair_ms(&c, RUN_QGEMM, &c, RUN_QGEMM, &t_sgemm, &unused);
                    gptq_cpu_qgemm_set_path(GPTQ_QGEMM_INT8);
                    time_pair_ms(&c, RUN_QGEMM, &c, RUN_QGEMM, &t_int8, &unused);
                    gptq_cpu_qgemm_set_path(GPTQ_QGEMM_AUTO);
                    printf("    n %2d: %8.3f / %8.3f / %8.3f\n", ns[k], t_avx2, t_sgemm, t_int8);
                }
            }
        }
        /* act-order against the same shape in order, call for call */
        for (int bi = 0; bi < 2; bi++) {
            bench_case in_order = {&L[0], W, x, y_blas, batch[bi]};
            bench_case act = {&L[2], W, x, y_ours, batch[bi]};
            double t_order, t_act;
            time_pair_ms(&in_order, RUN_QGEMM, &act, RUN_QGEMM, &t_order, &t_act);
            printf("%5d x %-5d %5d 4b g128: act-order runs at %.2fx the speed of in order "
                   "(%.3f / %.3f ms)\n", rows, cols, batch[bi], t_order / t_act, t_act, t_order);
        }
        for (int kind = 0; kind < 3; kind++)
            gptq_linear_free(&L[kind]);
        free(W);
        free(x);
        free(y_blas);
        free(y_ours);
    }
    return 0;
}
