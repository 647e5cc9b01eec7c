/* tests/test_qgemm.c: gptq_cpu_qgemm (kernels/cpu/qgemm.c) against a float64
 * reference, on every path: the portable and AVX2 GEMV kernels, dequantize
 * + sgemm with AVX2 and with portable dequantization (AVX2 paths only where
 * the CPU has AVX2+FMA+F16C); and the kernels' layout (kernels/linear.c):
 * the CPU backend's qgemm on the sorted layer against the same reference,
 * the way back to v1 bit for bit, and its checks.
 *
 * The packed layers are made here with a bit-by-bit packer written from the
 * layout description in gptq/quant.h (independent of quant/pack.c), then
 * read back by a bit-by-bit unpacker into a float64 W; y_ref = x·Wᵀ in
 * float64. quant/pack.c's gptq_packed_dequantize is checked against the same
 * W on the way. */
#include "kernels/cpu/qgemm.h"
#include "kernels/cpu/qgemm_int8.h"
#include "kernels/linear.h"

#include "common/dtype.h"
#include "testutil.h"

/* Tolerance: |y − y_ref| ≤ TOL · Σ_c |x_c|·|s_g|·(q + z) per output. The kernel
 * sums x·s·q and the zero term s·z·X_g separately in float32, so its rounding
 * error scales with those magnitudes, not with |y|. Measured: ≤ 1.6e-7 on
 * every path (float32 sums of ≤ 1152 terms in short blocks, errors growing
 * like √n · 2^-24). 1e-6 is 6× that, and still below what one wrong code
 * costs in the hardest case (8 bits, 1152 columns: 1/(1152·~256) ≈ 3e-6). */
#define TOL 1e-6

static void put_code(uint32_t *words, size_t stride, int bits, size_t k, uint32_t value)
{
    for (int b = 0; b < bits; b++) {
        size_t bit = k * bits + b;
        uint32_t *w = &words[(bit / 32) * stride];
        if ((value >> b) & 1u)
            *w |= 1u << (bit % 32);
        else
            *w &= ~(1u << (bit % 32));
    }
}

static uint32_t get_code(const uint32_t *words, size_t stride, int bits, size_t k)
{
    uint32_t value = 0;
    for (int b = 0; b < bits; b++) {
        size_t bit = k * bits + b;
        value |= ((words[(bit / 32) * stride] >> (bit % 32)) & 1u) << b;
    }
    return value;
}

typedef struct test_layer {
    gptq_packed P;
    double *W; /* [rows, cols], dequantized in float64 from the packed arrays */
    double *A; /* [rows, cols]: |s|·(q + z), for the tolerance */
} test_layer;

static void layer_free(test_layer *L)
{
    gptq_packed_free(&L->P);
    free(L->W);
    free(L->A);
}

static void make_layer(test_layer *L, int rows, int cols, int bits, int group_size, int act_order,
                       uint64_t *rng)
{
    const int groups = group_size < 0 ? 1 : (cols + group_size - 1) / group_size;
    const uint32_t levels = 1u << bits;
    gptq_packed *P = &L->P;
    memset(L, 0, sizeof *L);
    P->bits = bits;
    P->rows = rows;
    P->cols = cols;
    P->groups = groups;
    P->group_size = group_size;
    P->owned = 1;
    P->qweight = calloc((size_t)cols * bits / 32 * rows, sizeof *P->qweight);
    P->qzeros = calloc((size_t)groups * rows * bits / 32, sizeof *P->qzeros);
    P->scales = malloc((size_t)groups * rows * sizeof *P->scales);
    P->g_idx = malloc((size_t)cols * sizeof *P->g_idx);
    L->W = malloc((size_t)rows * cols * sizeof *L->W);
    L->A = malloc((size_t)rows * cols * sizeof *L->A);
    /* g_idx: c / gs, or act-order's g_idx[perm[i]] = i / gs for a random perm */
    int *perm = malloc((size_t)cols * sizeof *perm);
    for (int c = 0; c < cols; c++)
        perm[c] = c;
    if (act_order)
        for (int c = cols - 1; c > 0; c--) {
            int k = (int)(test_rand_u64(rng) % (uint64_t)(c + 1)), t = perm[c];
            perm[c] = perm[k];
            perm[k] = t;
        }
    for (int i = 0; i < cols; i++)
        P->g_idx[perm[i]] = group_size < 0 ? 0 : i / group_size;
    free(perm);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            put_code((uint32_t *)P->qweight + r, rows, bits, c,
                     (uint32_t)(test_rand_u64(rng) % levels));
    const size_t zwords = (size_t)rows * bits / 32;
    for (int g = 0; g < groups; g++)
        for (int r = 0; r < rows; r++) {
            /* zero in [1, 2^bits]; stored minus one */
            put_code((uint32_t *)P->qzeros + g * zwords, 1, bits, r,
                     (uint32_t)(test_rand_u64(rng) % levels));
            float s = (float)((0.002 + 0.02 * test_rand_uniform(rng)) *
                              (test_rand_u64(rng) & 1 ? 1 : -1));
            P->scales[(size_t)g * rows + r] = gptq_f32_to_f16(s);
        }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int g = P->g_idx[c];
            double q = get_code((uint32_t *)P->qweight + r, rows, bits, c);
            double z = get_code((uint32_t *)P->qzeros + g * zwords, 1, bits, r) + 1.0;
            double s = gptq_f16_to_f32(P->scales[(size_t)g * rows + r]);
            L->W[(size_t)r * cols + c] = s * (q - z);
            L->A[(size_t)r * cols + c] = fabs(s) * (q + z);
        }
}

/* y_ref [n, rows] = x·Wᵀ in float64 and mag [n, rows] = Σ_c |x_c|·A[r, c]. */
static void reference(const test_layer *L, const float *x, int n, double *y_ref, double *mag)
{
    const int rows = L->P.rows, cols = L->P.cols;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++) {
            double ref = 0, sum = 0;
            for (int c = 0; c < cols; c++) {
                double xc = x[(size_t)i * cols + c];
                ref += xc * L->W[(size_t)r * cols + c];
                sum += fabs(xc) * L->A[(size_t)r * cols + c];
            }
            y_ref[(size_t)i * rows + r] = ref;
            mag[(size_t)i * rows + r] = sum;
        }
}

/* The worst |y − y_ref| / (TOL·mag) over the first n rows, and the relative
 * L2 error. */
static double compare(const double *y_ref, const double *mag, const float *y, size_t len,
                      double *rel_l2)
{
    double worst = 0, num = 0, den = 0;
    for (size_t k = 0; k < len; k++) {
        double err = fabs(y[k] - y_ref[k]);
        worst = isnan(err) ? INFINITY : fmax(worst, err / (TOL * mag[k])); /* NaN fails */
        num += err * err;
        den += y_ref[k] * y_ref[k];
    }
    *rel_l2 = sqrt(num / den);
    return worst;
}

/* The int8 path (kernels/cpu/qgemm_int8.h), its arithmetic written out
 * here: x rounded per block of 32 columns of the kernel's (sorted) order,
 * perm[j] the original column at sorted position j (NULL: the same), to
 * a = rint(x·127/max|x|) and x̂ = a·max|x|/127. The product must be W·x̂ (the
 * float paths' tolerance), and W·x within the rounding's own bound,
 * Σ_c |W[r, c]|·d_c/2. Returns the worse of the two ratios to the allowed. */
static double compare_int8(const test_layer *L, const int32_t *perm, const float *x, int n,
                           const float *y, const double *y_ref, const double *mag)
{
    const int rows = L->P.rows, cols = L->P.cols;
    float *xhat = malloc((size_t)n * cols * sizeof *xhat), *dhalf = malloc((size_t)cols * 4);
    double *ref8 = malloc((size_t)n * rows * sizeof *ref8), *mag8 = malloc((size_t)n * rows * 8);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * cols;
        float *hi = xhat + (size_t)i * cols;
        for (int j0 = 0; j0 < cols; j0 += 32) {
            float amax = 0;
            for (int j = j0; j < j0 + 32; j++)
                amax = fmaxf(amax, fabsf(xi[perm ? perm[j] : j]));
            const float inv = amax > 0 ? 127.0f / amax : 0.0f, d = amax / 127.0f;
            for (int j = j0; j < j0 + 32; j++) {
                const int c = perm ? perm[j] : j;
                hi[c] = rintf(xi[c] * inv) * d;
                dhalf[c] = 0.5f * d;
            }
        }
        reference(L, hi, 1, ref8 + (size_t)i * rows, mag8 + (size_t)i * rows);
        for (int r = 0; r < rows; r++) {
            double bound = 0;
            for (int c = 0; c < cols; c++)
                bound += fabs(L->W[(size_t)r * cols + c]) * dhalf[c] * 1.0001;
            const size_t k = (size_t)i * rows + r;
            const double tight = fabs(y[k] - ref8[k]) / (TOL * mag8[k]);
            const double loose = fabs(y[k] - y_ref[k]) / (TOL * mag[k] + bound);
            worst = isnan(y[k]) ? INFINITY : fmax(worst, fmax(tight, loose));
        }
    }
    free(xhat), free(dhalf), free(ref8), free(mag8);
    return worst;
}

static void test_dequantize_matches(const test_layer *L)
{
    const int rows = L->P.rows, cols = L->P.cols;
    float *W = malloc((size_t)rows * cols * sizeof *W);
    CHECK_OK(gptq_packed_dequantize(&L->P, W));
    size_t bad = 0;
    for (size_t k = 0; k < (size_t)rows * cols; k++)
        bad += W[k] != (float)L->W[k];
    CHECK(bad == 0, "gptq_packed_dequantize differs from the bit-by-bit unpacker at %zu of %zu "
                    "weights (bits %d, [%d, %d])", bad, (size_t)rows * cols, L->P.bits, rows, cols);
    free(W);
}

static void test_products(void)
{
    static const int shapes[4][2][2] = {
        /* [bits 2,3,4,8][small, large] = {rows, cols}; rows not multiples of 16
         * (8-row block) or of 8 (scalar tail rows) where the layout allows;
         * 1152 columns cross several 512-column chunks, the last partial */
        {{48, 320}, {272, 1152}},
        {{32, 320}, {288, 1152}},
        {{40, 320}, {264, 1152}},
        {{36, 320}, {260, 1152}},
    };
    static const int bits_list[4] = {2, 3, 4, 8};
    static const int group_sizes[] = {-1, 32, 128, 20};
    static const int batches[] = {1, 3, 8, 70}; /* 70: the int8 kernel's 64-token chunks and a tail */
    const gptq_qgemm_path paths[] = {GPTQ_QGEMM_SCALAR, GPTQ_QGEMM_AVX2, GPTQ_QGEMM_SGEMM,
                                     GPTQ_QGEMM_SGEMM_SCALAR, GPTQ_QGEMM_INT8};
    uint64_t rng = 42;
    int cases = 0, avx2_cases = 0, ran[8] = {0};
    double worst_all = 0, rel_all = 0;
    for (int b = 0; b < 4; b++)
        for (int shape = 0; shape < 2; shape++)
            for (int gi = 0; gi < 4; gi++)
                for (int act = 0; act < 2; act++) {
                    const int bits = bits_list[b], rows = shapes[b][shape][0],
                              cols = shapes[b][shape][1], gs = group_sizes[gi];
                    test_layer L;
                    make_layer(&L, rows, cols, bits, gs, act, &rng);
                    if (shape == 0)
                        test_dequantize_matches(&L);
                    float *x = malloc((size_t)70 * cols * sizeof *x);
                    float *y = malloc((size_t)70 * rows * sizeof *y);
                    double *y_ref = malloc((size_t)70 * rows * sizeof *y_ref);
                    double *mag = malloc((size_t)70 * rows * sizeof *mag);
                    for (size_t k = 0; k < (size_t)70 * cols; k++)
                        x[k] = (float)test_rand_normal(&rng);
                    reference(&L, x, 70, y_ref, mag);
                    for (int p = 0; p < 5; p++)
                        for (int ni = 0; ni < 4; ni++) {
                            const int n = batches[ni];
                            gptq_cpu_qgemm_set_path(paths[p]);
                            gptq_qgemm_path used = gptq_cpu_qgemm_path_used(&L.P, n, 0);
                            avx2_cases += used == GPTQ_QGEMM_AVX2 || used == GPTQ_QGEMM_SGEMM;
                            ran[used]++;
                            for (size_t k = 0; k < (size_t)n * rows; k++)
                                y[k] = NAN;
                            CHECK_OK(gptq_cpu_qgemm(&L.P, x, y, n));
                            double rel;
                            double worst = compare(y_ref, mag, y, (size_t)n * rows, &rel);
                            if (used == GPTQ_QGEMM_INT8)
                                worst = compare_int8(&L, NULL, x, n, y, y_ref, mag);
                            CHECK(worst <= 1.0,
                                  "path %s bits %d [%d out, %d in] group %d act-order %d n %d: "
                                  "error %.3g × the allowed (relative L2 error %.3g)",
                                  gptq_cpu_qgemm_path_name(used), bits, rows, cols, gs, act, n,
                                  worst, rel);
                            worst_all = fmax(worst_all, worst);
                            rel_all = fmax(rel_all, rel);
                            cases++;
                        }
                    free(x);
                    free(y);
                    free(y_ref);
                    free(mag);
                    layer_free(&L);
                }
    gptq_cpu_qgemm_set_path(GPTQ_QGEMM_AUTO);
    printf("%d products (scalar %d, avx2 %d, sgemm %d, sgemm-scalar %d, int8 %d on %s): worst "
           "error %.3f of the allowed, worst relative L2 error vs float64 %.3g\n", cases,
           ran[GPTQ_QGEMM_SCALAR], ran[GPTQ_QGEMM_AVX2], ran[GPTQ_QGEMM_SGEMM],
           ran[GPTQ_QGEMM_SGEMM_SCALAR], ran[GPTQ_QGEMM_INT8], gptq_cpu_qgemm_int8_isa(),
           worst_all, rel_all);
    if (!avx2_cases)
        printf("note: this CPU has no AVX2+FMA+F16C; the AVX2 path ran as scalar\n");
}

static gptq_packed packed_copy(const gptq_packed *P)
{
    gptq_packed c = *P;
    const size_t qw = (size_t)P->cols * P->bits / 32 * P->rows * 4;
    const size_t qz = (size_t)P->groups * P->rows * P->bits / 32 * 4;
    c.owned = 1;
    c.qweight = malloc(qw), c.qzeros = malloc(qz);
    c.scales = malloc((size_t)P->groups * P->rows * 2), c.g_idx = malloc((size_t)P->cols * 4);
    if (!c.qweight || !c.qzeros || !c.scales || !c.g_idx)
        abort();
    memcpy(c.qweight, P->qweight, qw), memcpy(c.qzeros, P->qzeros, qz);
    memcpy(c.scales, P->scales, (size_t)P->groups * P->rows * 2);
    memcpy(c.g_idx, P->g_idx, (size_t)P->cols * 4);
    return c;
}

/* The kernels' layout of every kind of layer: the CPU backend's qgemm on it
 * against the float64 reference of the v1 layer, and back to v1 bit for bit. */
static void test_linear_layout(void)
{
    static const int bits_list[] = {2, 3, 4, 8}, group_sizes[] = {32, 128, -1, 48};
    const gptq_backend *be = gptq_backend_cpu();
    uint64_t rng = 77;
    int cases = 0, sorted = 0, int8 = 0;
    double worst_all = 0;
    for (int b = 0; b < 4; b++)
        for (int gi = 0; gi < 4; gi++)
            for (int act = 0; act < 2; act++) {
                const int bits = bits_list[b], rows = 64, cols = 192, gs = group_sizes[gi];
                test_layer L;
                make_layer(&L, rows, cols, bits, gs, act, &rng);
                gptq_packed v1 = packed_copy(&L.P), back;
                gptq_linear Q;
                CHECK_OK(gptq_linear_from_v1(&v1, &Q));
                CHECK(!v1.qweight && !v1.g_idx, "from_v1 left the v1 arrays with the caller");
                sorted += Q.perm != NULL;
                for (int c = 1; c < cols; c++)
                    if (Q.P.g_idx[c] < Q.P.g_idx[c - 1]) {
                        CHECK(0, "bits %d group %d act %d: g_idx not sorted at %d", bits, gs, act,
                              c);
                        break;
                    }
                CHECK(Q.chunked == (gs == 32 || gs == 128 || gs == -1),
                      "group %d: chunked %d", gs, Q.chunked);
                CHECK_OK(gptq_linear_to_v1(&Q, &back));
                CHECK(memcmp(back.qweight, L.P.qweight, (size_t)cols * bits / 32 * rows * 4) == 0 &&
                          memcmp(back.g_idx, L.P.g_idx, (size_t)cols * 4) == 0 &&
                          memcmp(back.qzeros, L.P.qzeros,
                                 (size_t)L.P.groups * rows * bits / 32 * 4) == 0 &&
                          memcmp(back.scales, L.P.scales, (size_t)L.P.groups * rows * 2) == 0,
                      "bits %d group %d act %d: back to v1 is not the layer", bits, gs, act);
                gptq_packed_free(&back);
                float *Wd = malloc((size_t)rows * cols * sizeof *Wd);
                CHECK_OK(gptq_linear_dequantize(&Q, Wd));
                double wd = 0;
                for (size_t k = 0; k < (size_t)rows * cols; k++)
                    wd = fmax(wd, fabs(Wd[k] - L.W[k]));
                CHECK(wd < 1e-5, "dequantized sorted layer differs by %g", wd);
                free(Wd);
                const int n = 3;
                float *x = malloc((size_t)n * cols * sizeof *x);
                float *y = malloc((size_t)n * rows * sizeof *y);
                double *y_ref = malloc((size_t)n * rows * sizeof *y_ref);
                double *mag = malloc((size_t)n * rows * sizeof *mag);
                for (size_t k = 0; k < (size_t)n * cols; k++)
                    x[k] = (float)test_rand_normal(&rng);
                reference(&L, x, n, y_ref, mag);
                CHECK_OK(be->qgemm(be, &Q, x, NULL, y, n));
                double rel, worst = compare(y_ref, mag, y, (size_t)n * rows, &rel);
                CHECK(worst <= 1.0, "kernels' layout bits %d group %d act %d: error %.3g × the "
                      "allowed", bits, gs, act, worst);
                worst_all = fmax(worst_all, worst);
                /* the backend's fast product: the int8 kernel where it fits */
                CHECK_OK(be->qgemm_fast(be, &Q, x, NULL, y, n));
                worst = compare(y_ref, mag, y, (size_t)n * rows, &rel);
                if (gptq_cpu_qgemm_path_used(&Q.P, n, 1) == GPTQ_QGEMM_INT8)
                    worst = compare_int8(&L, Q.perm, x, n, y, y_ref, mag), int8++;
                CHECK(worst <= 1.0, "kernels' layout bits %d group %d act %d: error %.3g × the "
                      "allowed", bits, gs, act, worst);
                worst_all = fmax(worst_all, worst);
                cases++;
                free(x), free(y), free(y_ref), free(mag);
                gptq_linear_free(&Q);
                layer_free(&L);
            }
    printf("kernels' layout: %d layers (%d re-sorted, %d on the int8 kernel), worst error %.3f "
           "of the allowed, every one back to v1 bit for bit\n", cases, sorted, int8, worst_all);

    /* what a mapped table must satisfy */
    test_layer L;
    make_layer(&L, 64, 64, 4, 32, 0, &rng);
    gptq_linear Q = {.P = L.P};
    int32_t perm[64];
    for (int c = 0; c < 64; c++)
        perm[c] = c;
    Q.perm = perm;
    CHECK_OK(gptq_linear_check(&Q));
    perm[5] = 7;
    CHECK(gptq_linear_check(&Q) == GPTQ_ERR_FORMAT && strstr(gptq_errmsg(), "perm[7]"),
          "a repeated perm entry: %s", gptq_errmsg());
    perm[5] = 64;
    CHECK(gptq_linear_check(&Q) == GPTQ_ERR_FORMAT, "perm out of range accepted");
    perm[5] = 5;
    Q.P.g_idx[0] = 1;
    CHECK(gptq_linear_check(&Q) == GPTQ_ERR_FORMAT && strstr(gptq_errmsg(), "g_idx[1]"),
          "unsorted g_idx: %s", gptq_errmsg());
    Q.P.g_idx[0] = 0;
    layer_free(&L);
}

static void test_errors(void)
{
    uint64_t rng = 7;
    test_layer L;
    make_layer(&L, 32, 64, 4, 32, 1, &rng);
    float x[64] = {0}, y[32];
    gptq_packed bad = L.P;
    bad.bits = 5;
    CHECK(gptq_cpu_qgemm(&bad, x, y, 1) == GPTQ_ERR_ARG, "bits 5 accepted");
    bad = L.P;
    bad.cols = 60; /* 60·4 bits is not whole words */
    CHECK(gptq_cpu_qgemm(&bad, x, y, 1) == GPTQ_ERR_ARG, "cols 60 at 4 bits accepted");
    bad = L.P;
    bad.rows = 28;
    CHECK(gptq_cpu_qgemm(&bad, x, y, 1) == GPTQ_ERR_ARG, "rows 28 at 4 bits accepted");
    CHECK(gptq_cpu_qgemm(&L.P, x, y, -1) == GPTQ_ERR_ARG, "batch -1 accepted");
    CHECK(gptq_cpu_qgemm(&L.P, NULL, NULL, 0) == GPTQ_OK, "batch 0 refused: %s", gptq_errmsg());
    L.P.g_idx[17] = 2; /* groups = 2 */
    CHECK(gptq_cpu_qgemm(&L.P, x, y, 1) == GPTQ_ERR_FORMAT, "g_idx out of range accepted");
    CHECK(strstr(gptq_errmsg(), "g_idx[17]") != NULL, "message does not name g_idx[17]: %s",
          gptq_errmsg());
    layer_free(&L);
}

int main(void)
{
    test_products();
    test_linear_layout();
    test_errors();
    return test_result();
}
