/* tests/test_gptq.c: the Cholesky + lazy-batch algorithm against a naive
 * OBQ-style twin written here in float64: explicit inverse Hessian, each
 * quantized column's error spread over all remaining columns and the
 * inverse downdated (Frantar & Alistarh 2022, eq. 3-4) after every column.
 * The two are the same mathematics; they differ only in float rounding. */
#include "gptq/quant.h"
#include "quant/quantizer.h"
#include "quant/ggml_blocks.h"
#include "common/dtype.h"
#include "testutil.h"

#include <lapacke.h>

static void make_problem(int rows, int cols, int tokens, uint64_t seed, float *W, float *H)
{
    uint64_t rng = seed;
    for (int i = 0; i < rows * cols; i++)
        W[i] = (float)(0.05 * test_rand_normal(&rng));
    /* correlated inputs with uneven scales, so act-order matters */
    double *X = malloc((size_t)tokens * cols * sizeof *X);
    for (int t = 0; t < tokens; t++) {
        double common = test_rand_normal(&rng);
        for (int c = 0; c < cols; c++)
            X[(size_t)t * cols + c] = (0.3 + (c % 7) * 0.4) * test_rand_normal(&rng) + 0.5 * common;
    }
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) {
            double s = 0;
            for (int t = 0; t < tokens; t++)
                s += X[(size_t)t * cols + i] * X[(size_t)t * cols + j];
            H[(size_t)i * cols + j] = (float)(2.0 * s / tokens);
        }
    free(X);
}

/* Naive OBQ in double. Group parameters are fitted on the current
 * (error-updated) weights when the walk enters a group. */
static void obq(const float *W, const float *H, int rows, int cols, const gptq_quant_config *cfg,
                float *Q)
{
    gptq_quantizer qz;
    gptq_quantizer_init(&qz, cfg);
    int *order = malloc(cols * sizeof *order);
    for (int c = 0; c < cols; c++)
        order[c] = c;
    if (cfg->act_order) /* descending diag, ties by index (insertion sort) */
        for (int i = 1; i < cols; i++)
            for (int j = i; j > 0; j--) {
                float a = H[(size_t)order[j] * cols + order[j]], b = H[(size_t)order[j - 1] * cols + order[j - 1]];
                if (a > b) {
                    int t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                } else
                    break;
            }
    double mean = 0;
    for (int c = 0; c < cols; c++)
        mean += H[(size_t)c * cols + c];
    mean /= cols;
    double *Hinv0 = malloc((size_t)cols * cols * sizeof *Hinv0);
    for (int i = 0; i < cols * cols; i++)
        Hinv0[i] = H[i];
    for (int c = 0; c < cols; c++)
        Hinv0[(size_t)c * cols + c] += (double)cfg->damp * mean;
    LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', cols, Hinv0, cols);
    LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', cols, Hinv0, cols);
    for (int i = 0; i < cols; i++)
        for (int j = i + 1; j < cols; j++)
            Hinv0[(size_t)i * cols + j] = Hinv0[(size_t)j * cols + i];

    double *Hinv = malloc((size_t)cols * cols * sizeof *Hinv);
    double *w = malloc(cols * sizeof *w);
    float *seg = malloc(cols * sizeof *seg);
    int gs = cfg->group_size == -1 ? cols : cfg->group_size;
    for (int r = 0; r < rows; r++) {
        memcpy(Hinv, Hinv0, (size_t)cols * cols * sizeof *Hinv);
        for (int c = 0; c < cols; c++)
            w[c] = W[(size_t)r * cols + c];
        float scale = 0;
        int32_t zero = 0;
        if (cfg->group_size == -1) {
            for (int c = 0; c < cols; c++)
                seg[c] = (float)w[c];
            gptq_quantizer_find(&qz, seg, cols, &scale, &zero);
        }
        for (int k = 0; k < cols; k++) {
            int q = order[k];
            if (cfg->group_size != -1 && k % gs == 0) {
                int n = k + gs < cols ? gs : cols - k;
                for (int j = 0; j < n; j++)
                    seg[j] = (float)w[order[k + j]];
                gptq_quantizer_find(&qz, seg, n, &scale, &zero);
            }
            float deq;
            gptq_quantize_value((float)w[q], scale, zero, qz.maxq, &deq);
            Q[(size_t)r * cols + q] = deq;
            double d = Hinv[(size_t)q * cols + q];
            double e = (w[q] - deq) / d;
            for (int c = 0; c < cols; c++) /* spread the error over the rest */
                w[c] -= e * Hinv[(size_t)c * cols + q];
            w[q] = deq;
            for (int i = 0; i < cols; i++) /* downdate: remove column q */
                for (int j = 0; j < cols; j++)
                    if (i != q && j != q)
                        Hinv[(size_t)i * cols + j] -= Hinv[(size_t)i * cols + q] * Hinv[(size_t)q * cols + j] / d;
            for (int i = 0; i < cols; i++)
                Hinv[(size_t)i * cols + q] = Hinv[(size_t)q * cols + i] = 0;
            Hinv[(size_t)q * cols + q] = 1; /* never read again */
        }
    }
    free(order), free(Hinv0), free(Hinv), free(w), free(seg);
}

static void compare(const char *what, int rows, int cols, const gptq_quant_config *cfg, uint64_t seed)
{
    float *W = malloc((size_t)rows * cols * 4), *H = malloc((size_t)cols * cols * 4);
    float *Qn = malloc((size_t)rows * cols * 4);
    make_problem(rows, cols, 4 * cols, seed, W, H);
    gptq_quant_result r;
    CHECK_OK(gptq_quantize_layer(W, H, rows, cols, cfg, &r));
    obq(W, H, rows, cols, cfg, Qn);
    size_t n = (size_t)rows * cols, same = 0;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        size_t row = i / cols;
        float scale = r.scales[(size_t)r.g_idx[i % cols] * rows + row];
        same += fabsf(r.Q[i] - Qn[i]) <= 1e-3f * scale;
        num += (double)(r.Q[i] - Qn[i]) * (r.Q[i] - Qn[i]);
        den += (double)Qn[i] * Qn[i];
    }
    double frac = (double)same / n, rel = sqrt(num / den);
    printf("%-28s B=%-3d: %.4f%% of weights equal, rel. Frobenius diff %.2e\n", what,
           cfg->block_size, 100 * frac, rel);
    /* float32 vs float64 may flip a rounding now and then; a flip then
     * steers the rest of its row differently, hence 99% not 100%. */
    CHECK(frac >= 0.99, "%s B=%d: only %.4f equal", what, cfg->block_size, frac);
    CHECK(rel < 0.02, "%s B=%d: rel diff %.3g", what, cfg->block_size, rel);
    gptq_quant_result_free(&r);
    free(W), free(H), free(Qn);
}

static void test_errors(void)
{
    int rows = 8, cols = 32;
    float *W = calloc(rows * cols, 4), *H = calloc(cols * cols, 4);
    gptq_quant_config cfg;
    gptq_quant_config_default(&cfg);
    cfg.group_size = -1;
    gptq_quant_result r;
    /* indefinite H with no damping: a clear error, never NaN weights */
    for (int i = 0; i < cols; i++)
        H[i * cols + i] = i == 3 ? -1.0f : 1.0f;
    cfg.damp = 0;
    CHECK(gptq_quantize_layer(W, H, rows, cols, &cfg, &r) == GPTQ_ERR_NUMERIC &&
              strstr(gptq_errmsg(), "damp"), "indefinite H: %s", gptq_errmsg());
    cfg.damp = 0.01f;
    W[5] = NAN;
    CHECK(gptq_quantize_layer(W, H, rows, cols, &cfg, &r) == GPTQ_ERR_ARG, "NaN W must be refused");
    W[5] = 0;
    cfg.bits = 5;
    CHECK(gptq_quantize_layer(W, H, rows, cols, &cfg, &r) == GPTQ_ERR_ARG &&
              strstr(gptq_errmsg(), "bits"), "bits 5: %s", gptq_errmsg());
    cfg.bits = 4;
    /* dead inputs: diag 0 -> weight 0 */
    for (int i = 0; i < cols * cols; i++)
        H[i] = 0;
    for (int i = 0; i < cols; i++)
        H[i * cols + i] = i == 7 ? 0.0f : 1.0f + i;
    for (int i = 0; i < rows * cols; i++)
        W[i] = 0.01f * (float)((i * 37) % 11 - 5);
    CHECK_OK(gptq_quantize_layer(W, H, rows, cols, &cfg, &r));
    int dead_ok = 1;
    for (int x = 0; x < rows; x++)
        dead_ok &= r.Q[x * cols + 7] == 0.0f;
    CHECK(dead_ok, "dead column must quantize to 0");
    gptq_quant_result_free(&r);
    free(W), free(H);
}

/* GGUF grids (quant.h): the scale rule of ggml's Q4_0 and Q8_0 blocks, fp16
 * scales, the zero, the codes' range; GPTQ keeps its groups in column order
 * under act-order; options that contradict a grid are refused. */
static void test_grids(void)
{
    const int rows = 6, cols = 96;
    float *W = malloc(sizeof(float) * rows * cols), *H = calloc((size_t)cols * cols, 4);
    uint64_t s = 7;
    for (int i = 0; i < rows * cols; i++)
        W[i] = (float)((double)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 11) /
                       9007199254740992.0 - 0.5);
    W[3] = -0.9f;      /* row 0, group 0: a negative extreme -> a positive scale */
    W[cols + 40] = 0.95f; /* row 1, group 1: a positive extreme -> a negative scale */
    for (int i = 0; i < cols; i++)
        H[i * cols + i] = 1.0f + (float)((i * 13) % 7);
    for (int grid = GPTQ_GRID_Q4_0; grid <= GPTQ_GRID_Q8_0; grid++) {
        gptq_quant_config cfg;
        gptq_quant_config_default(&cfg);
        CHECK_OK(gptq_quant_config_use_grid(&cfg, grid, 0, 0));
        CHECK(cfg.bits == (grid == GPTQ_GRID_Q4_0 ? 4 : 8) && cfg.group_size == 32 && cfg.sym,
              "grid %s: %d bits, groups of %d", gptq_grid_name(grid), cfg.bits, cfg.group_size);
        gptq_quant_result r;
        CHECK_OK(gptq_rtn_layer(W, rows, cols, &cfg, &r));
        int bad = 0;
        for (int row = 0; row < rows; row++)
            for (int g = 0; g < cols / 32; g++) {
                const float *w = W + row * cols + g * 32;
                double m = 0;
                for (int k = 0; k < 32; k++)
                    if (fabs(w[k]) > fabs(m))
                        m = w[k];
                double want = grid == GPTQ_GRID_Q4_0 ? m / -8.0 : fabs(m) / 127.0;
                float d = r.scales[g * rows + row];
                bad += d != gptq_round_f16((float)want) ||
                       r.zeros[g * rows + row] != (grid == GPTQ_GRID_Q4_0 ? 8 : 128);
                for (int k = 0; k < 32; k++) {
                    int code = r.codes[row * cols + g * 32 + k];
                    double deq = (double)d * (code - r.zeros[g * rows + row]);
                    /* within half a step; Q4_0's far end (-7/8 of the extreme) clamps
                     * what lies beyond it, at most one step away */
                    const double at = w[k] / (double)d + r.zeros[g * rows + row];
                    bad += code < 0 || code > (1 << cfg.bits) - 1 ||
                           fabs(deq - w[k]) > fabs(d) * (at > 15.5 && grid == GPTQ_GRID_Q4_0
                                                              ? 1.0001
                                                              : 0.5001);
                    if (grid == GPTQ_GRID_Q4_0 && w[k] == m)
                        bad += code != 0;
                }
            }
        CHECK(bad == 0, "grid %s: %d scales, zeros or codes off ggml's rule",
              gptq_grid_name(grid), bad);
        if (grid == GPTQ_GRID_Q4_0)
            CHECK(r.scales[0] > 0 && r.scales[1 * rows + 1] < 0,
                  "q4_0: the extreme's sign sets the scale's (%g, %g)", r.scales[0],
                  r.scales[rows + 1]);
        gptq_quant_result_free(&r);
        /* GPTQ under act-order: static groups, in column order */
        cfg.act_order = 1;
        CHECK(gptq_quant_config_check(&cfg, cols) == GPTQ_ERR_ARG &&
                  strstr(gptq_errmsg(), "static-groups"),
              "grid + act-order without static groups: %s", gptq_errmsg());
        CHECK_OK(gptq_quant_config_use_grid(&cfg, grid, 0, 0));
        CHECK_OK(gptq_quantize_layer(W, H, rows, cols, &cfg, &r));
        int moved = 0, zeros = 0;
        for (int c = 0; c < cols; c++)
            moved += r.g_idx[c] != c / 32;
        for (int i = 0; i < r.groups * rows; i++)
            zeros += r.zeros[i] != (grid == GPTQ_GRID_Q4_0 ? 8 : 128);
        CHECK(moved == 0 && zeros == 0, "gptq on grid %s, act-order: %d columns out of their "
              "group, %d zeros off the grid", gptq_grid_name(grid), moved, zeros);
        gptq_quant_result_free(&r);
    }
    gptq_quant_config cfg;
    gptq_quant_config_default(&cfg);
    CHECK(gptq_quant_config_use_grid(&cfg, GPTQ_GRID_Q4_0, 3, 0) == GPTQ_ERR_ARG &&
              strstr(gptq_errmsg(), "q4_0"), "grid q4_0 with bits 3: %s", gptq_errmsg());
    CHECK(gptq_quant_config_use_grid(&cfg, GPTQ_GRID_Q8_0, 0, 128) == GPTQ_ERR_ARG,
          "grid q8_0 with group 128");
    CHECK_OK(gptq_quant_config_use_grid(&cfg, GPTQ_GRID_Q4_0, 4, 32));
    cfg.sym = 0;
    CHECK(gptq_quant_config_check(&cfg, 64) == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "asym"),
          "an asymmetric q4_0 grid: %s", gptq_errmsg());
    CHECK(gptq_grid_from_name("Q4_0") == GPTQ_GRID_Q4_0 && gptq_grid_from_name("q7_k") == -1 &&
              gptq_grid_from_name("Q4_K_M") == GPTQ_GRID_Q4_K_M,
          "grid names");
    free(W);
    free(H);
}

/* The block grids (Q4_1..Q6_K): every code written where ggml's
 * dequantizer reads it (Q, the blocks' dequantization, equals each
 * sub-group's a * code - b), RTN the nearest grid value, errors of the
 * size the bits allow, GPTQ's layer error below RTN's on the same grid,
 * with and without act-order. */
static void test_block_grids(void)
{
    const int rows = 8, cols = 512, tokens = 1024;
    float *W = malloc(sizeof(float) * rows * cols), *H = malloc(sizeof(float) * cols * cols);
    make_problem(rows, cols, tokens, 11, W, H);
    for (int c = 0; c < 32; c++) /* row 0: a block of zeros, row 1: a constant one */
        W[c] = 0.0f, W[cols + 32 + c] = 0.02f;
    W[2 * cols + 7] = 0.9f; /* an outlier */
    static const struct {
        int grid;
        double rel_rms; /* RTN's RMS error / RMS weight must stay below */
    } cases[] = {{GPTQ_GRID_Q4_1, 0.12}, {GPTQ_GRID_Q5_0, 0.07}, {GPTQ_GRID_Q5_1, 0.06},
                 {GPTQ_GRID_Q2_K, 0.45}, {GPTQ_GRID_Q3_K, 0.25}, {GPTQ_GRID_Q4_K, 0.12},
                 {GPTQ_GRID_Q5_K, 0.06}, {GPTQ_GRID_Q6_K, 0.03}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int grid = cases[t].grid, type = gptq_grid_ggml_type(grid);
        const char *name = gptq_grid_name(grid);
        const int sub = gptq_ggml_grid_sub(type), maxq = gptq_ggml_grid_maxq(type);
        const int zero = gptq_ggml_grid_zero(type);
        gptq_quant_config cfg;
        gptq_quant_config_default(&cfg);
        CHECK_OK(gptq_quant_config_use_grid(&cfg, grid, 0, 0));
        CHECK(gptq_grid_is_block(grid) && cfg.group_size == sub && (1 << cfg.bits) - 1 == maxq,
              "grid %s: %d bits in groups of %d", name, cfg.bits, cfg.group_size);
        gptq_quant_result r, g, ga;
        CHECK_OK(gptq_rtn_layer(W, rows, cols, &cfg, &r));
        CHECK(r.blocks && r.gguf_type == type, "%s: RTN carries its blocks", name);
        /* the layout: each value read back is the one the code was chosen for; the
         * offsets come from the block's own header, re-fitted here */
        int bad_layout = 0, bad_round = 0;
        double err2 = 0, w2 = 0;
        for (int row = 0; row < rows; row++)
            for (int c0 = 0; c0 < cols; c0 += gptq_ggml_block_elems(type)) {
                float a[16], b[16];
                uint8_t blk[256];
                gptq_ggml_block_fit(type, W + row * cols + c0, NULL, blk, a, b);
                const size_t at = (size_t)row * gptq_quant_block_row_bytes(&r) +
                                  (size_t)(c0 / gptq_ggml_block_elems(type)) * gptq_ggml_block_bytes(type);
                for (int e = 0; e < gptq_ggml_block_elems(type); e++) {
                    const int c = c0 + e, k = e / sub, code = r.codes[row * cols + c];
                    const float q = r.Q[row * cols + c], w = W[row * cols + c];
                    const double want = (double)a[k] * code - b[k];
                    if (code < 0 || code > maxq ||
                                  fabs(q - want) > 1e-6 * (fabs(a[k]) * maxq + fabs(b[k])) + 1e-12) {
                        if (bad_layout++ < 3)
                            printf("# %s row %d input %d: code %d, a %g b %g, want %g got %g\n",
                                   name, row, c, code, a[k], b[k], want, q);
                    }
                    /* nearest: within half a step unless clamped at an end */
                    const double pos = a[k] != 0 ? (w + b[k]) / a[k] : zero;
                    bad_round += !(pos < -0.5 || pos > maxq + 0.5) &&
                                 fabs(q - w) > fabs(a[k]) * 0.5001 + 1e-12;
                    err2 += (double)(q - w) * (q - w);
                    w2 += (double)w * w;
                }
                /* the header RTN wrote is the fit's (its bytes: scales and mins) */
                const int h0 = type == GPTQ_GGML_Q3_K ? 96 : type == GPTQ_GGML_Q6_K ? 192 : 0;
                const int h1 = type == GPTQ_GGML_Q5_0                                 ? 2
                               : type == GPTQ_GGML_Q4_1 || type == GPTQ_GGML_Q5_1 ? 4
                               : type == GPTQ_GGML_Q2_K || type == GPTQ_GGML_Q4_K ||
                                         type == GPTQ_GGML_Q5_K
                                   ? 16
                                   : gptq_ggml_block_bytes(type);
                bad_layout += memcmp(blk + h0, r.blocks + at + h0, (size_t)(h1 - h0)) != 0;
                if (type == GPTQ_GGML_Q2_K)
                    bad_layout += memcmp(blk + 80, r.blocks + at + 80, 4) != 0;
            }
        CHECK(bad_layout == 0, "%s: %d values read back other than written", name, bad_layout);
        CHECK(bad_round == 0, "%s: %d weights not on their nearest grid value", name, bad_round);
        CHECK(sqrt(err2 / w2) < cases[t].rel_rms, "%s: RTN relative RMS error %.4f (bound %.3f)",
              name, sqrt(err2 / w2), cases[t].rel_rms);
        CHECK(r.Q[0] == 0.0f && r.Q[15] == 0.0f, "%s: a sub-group of zeros stays 0 (%g)", name,
              r.Q[0]);
        /* a K type's sub-groups refitted (GPTQ's walk does so as it reaches
         * them): the header written is the one the decoder reads */
        if (sub < gptq_ggml_block_elems(type)) {
            const int be = gptq_ggml_block_elems(type);
            uint8_t blk[256];
            float a[16], b[16], y[256], want[256];
            int bad_refit = 0;
            gptq_ggml_block_fit(type, W + 3 * cols, NULL, blk, a, b);
            for (int k = 0; k < be / sub; k++) {
                float x2[32];
                for (int e = 0; e < sub; e++) /* moved by half a step, scaled */
                    x2[e] = 0.8f * W[3 * cols + k * sub + e] + 0.5f * a[k];
                gptq_ggml_block_refit(type, blk, k, x2, NULL, &a[k], &b[k]);
            }
            for (int e = 0; e < be; e++) {
                const float x = 0.8f * W[3 * cols + e];
                gptq_ggml_block_put(type, blk, e, gptq_ggml_grid_code(x, a[e / sub], b[e / sub],
                                                                      maxq, zero, &want[e]));
            }
            CHECK_OK(gptq_gguf_dequantize(type, blk, y, be));
            for (int e = 0; e < be; e++)
                bad_refit += fabs(y[e] - want[e]) > 1e-6 * (fabs(a[e / sub]) * maxq +
                                                            fabs(b[e / sub])) + 1e-12;
            CHECK(bad_refit == 0, "%s: %d values read back other than the refitted sub-groups' "
                  "(header written where it is read)", name, bad_refit);
        }
        CHECK_OK(gptq_quantize_layer(W, H, rows, cols, &cfg, &g));
        int bad = 0;
        for (int row = 0; row < rows; row++) { /* Q is the blocks' dequantization */
            float y[512];
            CHECK_OK(gptq_gguf_dequantize(type, g.blocks + row * gptq_quant_block_row_bytes(&g), y,
                                          cols));
            bad += memcmp(y, g.Q + row * cols, sizeof y) != 0;
        }
        CHECK(bad == 0, "%s: GPTQ's Q is not its blocks' dequantization (%d rows)", name, bad);
        const double e_rtn = gptq_layer_error(W, r.Q, H, rows, cols);
        const double e_gptq = gptq_layer_error(W, g.Q, H, rows, cols);
        CHECK(e_gptq < 0.9 * e_rtn, "%s: GPTQ's layer error %.4g not below RTN's %.4g", name,
              e_gptq, e_rtn);
        cfg.act_order = 1;
        CHECK_OK(gptq_quant_config_use_grid(&cfg, grid, 0, 0));
        CHECK_OK(gptq_quantize_layer(W, H, rows, cols, &cfg, &ga));
        const double e_act = gptq_layer_error(W, ga.Q, H, rows, cols);
        CHECK(e_act < 0.9 * e_rtn, "%s: GPTQ act-order's layer error %.4g not below RTN's %.4g",
              name, e_act, e_rtn);
        printf("# %s: layer error RTN %.4g, GPTQ %.4g (%.2fx), act-order %.4g (%.2fx)\n", name,
               e_rtn, e_gptq, e_gptq / e_rtn, e_act, e_act / e_rtn);
        gptq_quant_result_free(&r);
        gptq_quant_result_free(&g);
        gptq_quant_result_free(&ga);
    }
    /* configuration: sizes, names, recipes */
    gptq_quant_config cfg;
    gptq_quant_config_default(&cfg);
    CHECK_OK(gptq_quant_config_use_grid(&cfg, GPTQ_GRID_Q4_K, 0, 0));
    CHECK(gptq_quant_config_check(&cfg, 576) == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "256"),
          "q4_k on 576 inputs: %s", gptq_errmsg());
    CHECK(gptq_quant_config_use_grid(&cfg, GPTQ_GRID_Q6_K, 4, 0) == GPTQ_ERR_ARG,
          "q6_k with 4 bits");
    cfg.mse = 1;
    CHECK_OK(gptq_quant_config_use_grid(&cfg, GPTQ_GRID_Q4_K, 0, 0));
    CHECK(gptq_quant_config_check(&cfg, 256) == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "mse"),
          "q4_k with --mse: %s", gptq_errmsg());
    cfg.mse = 0;
    CHECK_OK(gptq_quant_config_use_grid(&cfg, GPTQ_GRID_Q4_K_M, 0, 0));
    CHECK(gptq_quant_config_check(&cfg, 256) == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "recipe"),
          "a layer on a recipe: %s", gptq_errmsg());
    /* llama.cpp's Q4_K_M on 30 layers: use_more_bits is layers 0-2, 26-29 and
     * 5, 8, ..., 23 */
    static const struct {
        int recipe, role, layer, cols, want;
    } rc[] = {
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_ATTN_V, 0, 4096, GPTQ_GRID_Q6_K},
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_ATTN_V, 4, 4096, GPTQ_GRID_Q4_K},
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_FFN_DOWN, 5, 11008, GPTQ_GRID_Q6_K},
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_FFN_DOWN, 6, 4096, GPTQ_GRID_Q4_K},
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_FFN_DOWN, 27, 4096, GPTQ_GRID_Q6_K},
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_OTHER, 0, 4096, GPTQ_GRID_Q4_K},
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_ATTN_QKV, 4, 4096, GPTQ_GRID_Q5_K},
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_OTHER, 4, 576, GPTQ_GRID_Q5_0},
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_ATTN_V, 0, 576, GPTQ_GRID_Q8_0},
        {GPTQ_GRID_Q5_K_M, GPTQ_ROLE_OTHER, 4, 576, GPTQ_GRID_Q5_1},
        {GPTQ_GRID_Q5_K_M, GPTQ_ROLE_ATTN_QKV, 4, 4096, GPTQ_GRID_Q6_K},
        {GPTQ_GRID_Q4_K_M, GPTQ_ROLE_OTHER, 4, 100, -1},
        {GPTQ_GRID_Q4_1, GPTQ_ROLE_ATTN_V, 0, 4096, GPTQ_GRID_Q4_1},
    };
    for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++) {
        int got = gptq_grid_of_recipe(rc[i].recipe, rc[i].role, rc[i].layer, 30, rc[i].cols);
        CHECK(got == rc[i].want, "recipe %s, role %d, layer %d, %d inputs: %s, want %s",
              gptq_grid_name(rc[i].recipe), rc[i].role, rc[i].layer, rc[i].cols,
              gptq_grid_name(got), gptq_grid_name(rc[i].want));
    }
    free(W);
    free(H);
}

int main(void)
{
    test_grids();
    test_block_grids();
    gptq_quant_config cfg;
    gptq_quant_config_default(&cfg);
    cfg.fp16_scales = 0;
    cfg.v1_zeros = 0;
    const int blocks[] = {1, 5, 16, 64, 128};
    for (int b = 0; b < 5; b++) {
        cfg.block_size = blocks[b];
        cfg.group_size = -1;
        cfg.bits = 3;
        cfg.act_order = 0;
        compare("3-bit per channel", 24, 96, &cfg, 11);
        cfg.act_order = 1;
        compare("3-bit per channel act-order", 24, 96, &cfg, 12);
    }
    const int gblocks[] = {8, 16, 32};
    for (int b = 0; b < 3; b++) { /* groups start at block starts: gs % B == 0 */
        cfg.block_size = gblocks[b];
        cfg.group_size = 32;
        cfg.bits = 4;
        cfg.act_order = 0;
        compare("4-bit g32", 16, 128, &cfg, 21);
        cfg.act_order = 1;
        compare("4-bit g32 act-order", 16, 128, &cfg, 22);
        cfg.act_order = 0;
        cfg.sym = 1;
        cfg.bits = 2;
        compare("2-bit g32 sym", 16, 128, &cfg, 23);
        cfg.sym = 0;
    }
    test_errors();
    return test_result();
}
