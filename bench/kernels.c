/* bench/kernels.c: packed int4 / int3 linears on the GPU against cuBLAS fp16
 * on the same shapes, from the same run.
 *
 * Shapes (rows = out features × cols = in features) of Llama-2-7B
 * (4096×4096 q/k/v/o, 11008×4096 gate/up, 4096×11008 down) and 70B
 * (8192×28672 down), batch 1, 4, 16, 64. Each figure is the median of RUNS
 * calls timed with CUDA events after WARMUP untimed ones. GB/s counts the
 * bytes a call must read: fp16 W; our packed weights + group params +
 * permutation (gptq_linear_bytes); activations are negligible and left out.
 * The yardstick is a measured device-to-device copy, counted as read +
 * write bytes. The layers use act-order (g_idx a random permutation, group
 * 128), in the kernels' layout that every resident model holds (columns
 * sorted by group): act-order is then free, and the table shows it. The
 * packed kernel takes batches up to 64; 65 shows the dequantize + SGEMM
 * path it hands over to. Exit 77 (skip) without a CUDA device. Usage:
 * kernels [runs]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "kernels/backend_select.h"
#include "kernels/linear.h"

static int RUNS = 50;
#define WARMUP 10

static const gptq_backend *be;
static uint64_t rng = 42;

static uint64_t rand_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rand_float(void) /* uniform in [-1, 1), never 0 */
{
    float v = (float)(rand_u64() >> 40) * (2.0f / 16777216.0f) - 1.0f;
    return v == 0.0f ? 0.5f : v;
}

static void die(const char *what)
{
    fprintf(stderr, "kernels: %s: %s\n", what, gptq_errmsg());
    exit(1);
}

/* n random values in [-1, 1) on the device, float32 or (f16) fp16. */
static void *device_random(size_t n, int f16)
{
    const size_t size = f16 ? sizeof(uint16_t) : sizeof(float);
    unsigned char *h = malloc(n * size);
    void *d = be->alloc(be, n * size);
    if (!h || !d)
        die("allocating random data");
    for (size_t i = 0; i < n; i++) {
        const float v = rand_float();
        if (f16)
            ((uint16_t *)h)[i] = gptq_f32_to_f16(v);
        else
            ((float *)h)[i] = v;
    }
    if (be->upload(be, d, h, n * size) != GPTQ_OK)
        die("upload");
    free(h);
    return d;
}

/* A random act-order layer, group 128, in the kernels' layout on the device. */
static gptq_linear random_qlinear(int bits, int rows, int cols)
{
    const int gs = 128, groups = cols / gs;
    gptq_quant_result r = {.rows = rows, .cols = cols, .groups = groups, .bits = bits};
    r.codes = malloc((size_t)rows * cols);
    r.scales = malloc((size_t)groups * rows * sizeof *r.scales);
    r.zeros = malloc((size_t)groups * rows * sizeof *r.zeros);
    r.g_idx = malloc((size_t)cols * sizeof *r.g_idx);
    int *perm = malloc((size_t)cols * sizeof *perm);
    if (!r.codes || !r.scales || !r.zeros || !r.g_idx || !perm)
        die("allocating a layer");
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        r.codes[i] = (uint8_t)(rand_u64() & ((1u << bits) - 1));
    for (size_t i = 0; i < (size_t)groups * rows; i++) {
        r.scales[i] = 0.01f;
        r.zeros[i] = 1 + (int32_t)(rand_u64() % (1u << bits));
    }
    for (int c = 0; c < cols; c++)
        perm[c] = c;
    for (int c = cols - 1; c > 0; c--) {
        int j = (int)(rand_u64() % (uint64_t)(c + 1)), t = perm[c];
        perm[c] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < cols; i++)
        r.g_idx[perm[i]] = i / gs;
    gptq_packed P;
    gptq_linear host, L;
    gptq_uploader u = {.be = be};
    if (gptq_pack(&r, &P) != GPTQ_OK || gptq_linear_from_v1(&P, &host) != GPTQ_OK)
        die("gptq_pack");
    if (gptq_linear_upload(&u, &host, &L) != GPTQ_OK)
        die("uploading a layer");
    gptq_linear_free(&host);
    free(r.codes);
    free(r.scales);
    free(r.zeros);
    free(r.g_idx);
    free(perm);
    return L;
}

/* ---- what is timed ---------------------------------------------------------- */

typedef struct call {
    const gptq_linear *L;
    const float *x;
    const uint16_t *x16, *W16;
    float *y;
    void *dst;
    const void *src;
    size_t bytes;
    int n, rows, cols;
    gptq_status st;
} call;

static void run_fp16(void *arg)
{
    call *c = arg;
    if (c->st == GPTQ_OK)
        c->st = be->gemm_f16(be, c->x16, c->W16, c->y, c->n, c->cols, c->rows);
}

static void run_packed(void *arg)
{
    call *c = arg;
    if (c->st == GPTQ_OK)
        c->st = be->qgemm(be, c->L, c->x, NULL, c->y, c->n);
}

static void run_copy(void *arg)
{
    call *c = arg;
    if (c->st == GPTQ_OK)
        c->st = be->copy(be, c->dst, c->src, c->bytes);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median device time of one call, in microseconds. */
static double median_us(void (*fn)(void *), call *c)
{
    float *ms = malloc((size_t)(RUNS + WARMUP) * sizeof *ms);
    if (!ms)
        die("allocating timings");
    c->st = GPTQ_OK;
    if (be->time_calls(be, fn, c, RUNS + WARMUP, ms) != GPTQ_OK || c->st != GPTQ_OK)
        die("timed call");
    qsort(ms + WARMUP, (size_t)RUNS, sizeof *ms, cmp_float);
    double us = 1000.0 * ms[WARMUP + RUNS / 2];
    free(ms);
    return us;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        RUNS = atoi(argv[1]) > 0 ? atoi(argv[1]) : RUNS;
    char why[1024];
    if (gptq_backend_select("cuda:0", &be, why, sizeof why) != GPTQ_OK || !be->time_calls ||
        !be->gemm_f16) {
        printf("SKIP: no CUDA device: %s\n", why);
        return 77;
    }
    printf("device: %s (sm_%d%d, %d SMs, %.1f GiB)\n", be->device, be->cc_major, be->cc_minor,
           be->sm_count, (double)be->total_memory / (1 << 30));

    /* the yardstick: device-to-device copy of 1 GiB */
    call cp = {.bytes = (size_t)1 << 30};
    cp.src = be->alloc(be, cp.bytes);
    cp.dst = be->alloc(be, cp.bytes);
    if (!cp.src || !cp.dst)
        die("allocating the copy buffers");
    const double copy_us = median_us(run_copy, &cp);
    const double copy_gbs = 2.0 * (double)cp.bytes / (copy_us * 1e3);
    printf("device-to-device copy: %.1f GB/s (read + write of %zu MiB in %.1f us)\n\n", copy_gbs,
           cp.bytes >> 20, copy_us);
    be->free(be, (void *)cp.src);
    be->free(be, cp.dst);

    static const int shapes[][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {8192, 28672}};
    static const int batches[] = {1, 4, 16, 64};
    printf("%-12s %3s | %9s | %9s %6s %7s %5s | %9s %6s %7s %5s\n", "rows x cols", "n", "fp16 us",
           "int4 us", "x fp16", "GB/s", "%copy", "int3 us", "x fp16", "GB/s", "%copy");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int rows = shapes[s][0], cols = shapes[s][1];
        call c = {.rows = rows, .cols = cols};
        c.W16 = device_random((size_t)rows * cols, 1);
        c.x16 = device_random((size_t)65 * cols, 1);
        c.x = device_random((size_t)65 * cols, 0);
        c.y = be->alloc(be, (size_t)65 * rows * sizeof(float));
        gptq_linear L4 = random_qlinear(4, rows, cols), L3 = random_qlinear(3, rows, cols);
        if (!c.y)
            die("allocating y");
        for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
            c.n = batches[b];
            const double fp16_us = median_us(run_fp16, &c);
            c.L = &L4;
            const double q4_us = median_us(run_packed, &c);
            c.L = &L3;
            const double q3_us = median_us(run_packed, &c);
            const double q4_gbs = (double)gptq_linear_bytes(&L4) / (q4_us * 1e3);
            const double q3_gbs = (double)gptq_linear_bytes(&L3) / (q3_us * 1e3);
            printf("%5dx%-6d %3d | %9.1f | %9.1f %6.2f %7.1f %5.1f | %9.1f %6.2f %7.1f %5.1f\n",
                   rows, cols, c.n, fp16_us, q4_us, fp16_us / q4_us, q4_gbs,
                   100.0 * q4_gbs / copy_gbs, q3_us, fp16_us / q3_us, q3_gbs,
                   100.0 * q3_gbs / copy_gbs);
        }
        /* where the packed kernel hands over to dequantize + cuBLAS */
        c.L = &L4;
        c.n = 64;
        const double pk_us = median_us(run_packed, &c);
        c.n = 65;
        const double dq_us = median_us(run_packed, &c);
        printf("%5dx%-6d    | int4 packed kernel at n=64 %.1f us, dequantize + SGEMM at n=65 "
               "%.1f us\n", rows, cols, pk_us, dq_us);
        gptq_linear_free_on(be, &L4);
        gptq_linear_free_on(be, &L3);
        be->free(be, (void *)c.W16);
        be->free(be, (void *)c.x16);
        be->free(be, (void *)c.x);
        be->free(be, c.y);
    }
    return be->sync(be) == GPTQ_OK ? 0 : 1;
}
