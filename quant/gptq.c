/* quant/gptq.c: GPTQ on one layer (Frantar et al. 2023, Algorithm 1), in
 * the shape of the reference's fasterquant (IST-DASLab/gptq, gptq.py):
 *
 *   dead inputs -> act-order permutation -> damping -> Hinv = upper
 *   Cholesky factor of H^-1 -> for each block of B columns: quantize a
 *   column, spread its scaled error over the block's later columns, then
 *   one GEMM spreads the block's errors over all later columns.
 *
 * Rows (output channels) never interact: each row's error feedback uses
 * only its own errors and the shared Hinv. So the walk inside a block runs
 * row-parallel; the lazy update is one sgemm. */
#include <lapacke.h>
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/interrupt.h"
#include "quant/ggml_blocks.h"
#include "quantizer.h"
#include "result.h"

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Act-order: columns by descending diag(H); ties keep index order. The key
 * travels with the index (no globals: quantizations run in parallel). */
typedef struct diag_key {
    float d;
    int i;
} diag_key;

/* Row r's GGUF block that holds input c (original order). */
static uint8_t *block_at(const gptq_quant_result *out, int r, int c)
{
    return out->blocks + (size_t)r * gptq_quant_block_row_bytes(out) +
           (size_t)(c / gptq_ggml_block_elems(out->gguf_type)) *
               (size_t)gptq_ggml_block_bytes(out->gguf_type);
}

/* A block grid: fit the header of row r's block that starts at input c0
 * (original order) on x[block] with importance imp[block], and store its
 * sub-groups' steps and offsets into A and Bm [groups, rows]. */
static void fit_block(int type, const float *x, const float *imp, gptq_quant_result *out, int r,
                      int c0, float *A, float *Bm)
{
    const int be = gptq_ggml_block_elems(type), sub = gptq_ggml_grid_sub(type);
    float a[16], b[16];
    gptq_ggml_block_fit(type, x, imp, block_at(out, r, c0), a, b);
    for (int k = 0; k < be / sub; k++) {
        A[(size_t)(c0 / sub + k) * out->rows + r] = a[k];
        Bm[(size_t)(c0 / sub + k) * out->rows + r] = b[k];
    }
}

/* A K type: refit the sub-group of row r's block that starts at input c
 * on its current weights x[sub] (gptq_ggml_block_refit). */
static void refit_sub(int type, const float *x, const float *imp, gptq_quant_result *out, int r,
                      int c, float *A, float *Bm)
{
    const int be = gptq_ggml_block_elems(type), sub = gptq_ggml_grid_sub(type);
    const size_t at = (size_t)(c / sub) * out->rows + r;
    gptq_ggml_block_refit(type, block_at(out, r, c), (c % be) / sub, x, imp, &A[at], &Bm[at]);
}

static int by_diag_desc(const void *a, const void *b)
{
    const diag_key *x = a, *y = b;
    if (x->d != y->d)
        return x->d > y->d ? -1 : 1;
    return x->i - y->i;
}

/* H [cols, cols] (damped, permuted) -> its upper Cholesky factor of H^-1 in
 * place: Cholesky, inverse from the factor, Cholesky again (upper). Only the
 * upper triangle of the result is meaningful. */
static gptq_status hinv_upper_cholesky(float *H, int cols, float damp)
{
    lapack_int info = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', cols, H, cols);
    if (info == 0)
        info = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'L', cols, H, cols);
    if (info == 0) {
        for (int i = 0; i < cols; i++) /* mirror the lower triangle up */
            for (int j = i + 1; j < cols; j++)
                H[(size_t)i * cols + j] = H[(size_t)j * cols + i];
        info = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'U', cols, H, cols);
    }
    if (info > 0)
        return gptq_fail(GPTQ_ERR_NUMERIC,
                         "Cholesky of the damped Hessian failed at column %d (not positive "
                         "definite): raise damp (now %g), e.g. to %g",
                         (int)info, (double)damp, (double)(damp > 0 ? damp * 10 : 0.01f));
    if (info < 0)
        return gptq_fail(GPTQ_ERR_INTERNAL, "LAPACK argument %d rejected", (int)-info);
    return GPTQ_OK;
}

gptq_status gptq_quantize_layer(const float *W_in, const float *H_in, int rows, int cols,
                                const gptq_quant_config *cfg, gptq_quant_result *out)
{
    double t_start = now_seconds();
    gptq_status st = gptq_quant_config_check(cfg, cols);
    if (st)
        return st;
    if (rows <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "layer has %d output rows", rows);
    if ((st = gptq_check_finite("W", W_in, rows, cols)) ||
        (st = gptq_check_finite("H", H_in, cols, cols)))
        return st;

    const int B = cfg->block_size;
    const int groups = gptq_quant_groups(cfg, cols);
    const int gs = cfg->group_size == -1 ? cols : cfg->group_size;
    /* A block grid (quant/ggml_blocks.h): each block's header is fitted when
     * the walk reaches it (every `fit` columns), its sub-groups' steps and
     * offsets go to scales / gmin, and the codes to the GGUF blocks. */
    const int btype = gptq_grid_is_block(cfg->grid) ? gptq_grid_ggml_type(cfg->grid) : -1;
    const int fit = btype >= 0 ? gptq_ggml_block_elems(btype) : gs;
    const int bzero = btype >= 0 ? gptq_ggml_grid_zero(btype) : 0;
    const size_t n_w = (size_t)rows * cols, n_h = (size_t)cols * cols;
    gptq_quantizer quantizer;
    gptq_quantizer_init(&quantizer, cfg);
    const int maxq = quantizer.maxq;
    memset(out, 0, sizeof *out); /* the fail path frees it */

    float *W = malloc(n_w * sizeof *W);            /* [rows, cols], permuted */
    float *H = malloc(n_h * sizeof *H);            /* [cols, cols] -> Hinv */
    float *Err = malloc((size_t)rows * B * sizeof *Err); /* [rows, B] */
    int *perm = malloc((size_t)cols * sizeof *perm);
    float *gscale = NULL;                          /* static groups [groups, rows] */
    int32_t *gzero = NULL;
    float *gmin = NULL;                            /* block grids: offsets [groups, rows] */
    float *imp = NULL;                             /* block grids: diag(H), original order */
    double *row_loss = calloc((size_t)rows, sizeof *row_loss);
    int *row_raised = calloc((size_t)rows, sizeof *row_raised);
    if (!W || !H || !Err || !perm || !row_loss || !row_raised) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "GPTQ on [%d, %d]: out of memory", rows, cols);
        goto fail;
    }
    if ((st = gptq_quant_result_alloc(out, rows, cols, groups, cfg->bits)))
        goto fail;
    if (btype >= 0) {
        gmin = calloc((size_t)groups * rows, sizeof *gmin);
        imp = malloc((size_t)cols * sizeof *imp);
        if (!gmin || !imp) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "GPTQ on [%d, %d]: out of memory", rows, cols);
            goto fail;
        }
        for (int c = 0; c < cols; c++)
            imp[c] = H_in[(size_t)c * cols + c];
        if ((st = gptq_quant_result_alloc_blocks(out, btype)))
            goto fail;
    }
    memcpy(W, W_in, n_w * sizeof *W);
    memcpy(H, H_in, n_h * sizeof *H);

    /* Per channel: one set of parameters, fitted (as the reference does)
     * on W before dead columns are zeroed. */
    if (cfg->group_size == -1)
        for (int r = 0; r < rows; r++)
            row_raised[r] += gptq_quantizer_find(&quantizer, W + (size_t)r * cols, cols,
                                                 &out->scales[r], &out->zeros[r]);

    /* Dead inputs: never seen non-zero; their weights cannot matter. */
    for (int c = 0; c < cols; c++) {
        if (H[(size_t)c * cols + c] == 0.0f) {
            H[(size_t)c * cols + c] = 1.0f;
            for (int r = 0; r < rows; r++)
                W[(size_t)r * cols + c] = 0.0f;
        }
    }

    if (cfg->static_groups) { /* parameters of the original, un-updated groups */
        gscale = malloc((size_t)groups * rows * sizeof *gscale);
        gzero = malloc((size_t)groups * rows * sizeof *gzero);
        if (!gscale || !gzero) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "GPTQ static groups: out of memory");
            goto fail;
        }
        if (btype >= 0)
            for (int r = 0; r < rows; r++)
                for (int c0 = 0; c0 < cols; c0 += fit)
                    fit_block(btype, W + (size_t)r * cols + c0, imp + c0, out, r, c0, gscale, gmin);
        for (int r = 0; btype < 0 && r < rows; r++)
            for (int g = 0; g < groups; g++) {
                int c0 = g * gs, n = c0 + gs < cols ? gs : cols - c0;
                row_raised[r] += gptq_quantizer_find(&quantizer, W + (size_t)r * cols + c0, n,
                                                     &gscale[(size_t)g * rows + r],
                                                     &gzero[(size_t)g * rows + r]);
            }
    }

    for (int c = 0; c < cols; c++)
        perm[c] = c;
    if (cfg->act_order) {
        diag_key *keys = malloc((size_t)cols * sizeof *keys);
        if (!keys) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "GPTQ act-order: out of memory");
            goto fail;
        }
        for (int c = 0; c < cols; c++)
            keys[c] = (diag_key){H[(size_t)c * cols + c], c};
        qsort(keys, (size_t)cols, sizeof *keys, by_diag_desc);
        for (int c = 0; c < cols; c++)
            perm[c] = keys[c].i;
        free(keys);
        float *tmp = malloc((n_w > n_h ? n_w : n_h) * sizeof *tmp);
        if (!tmp) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "GPTQ act-order: out of memory");
            goto fail;
        }
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                tmp[(size_t)r * cols + c] = W[(size_t)r * cols + perm[c]];
        memcpy(W, tmp, n_w * sizeof *W);
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++)
                tmp[(size_t)i * cols + j] = H[(size_t)perm[i] * cols + perm[j]];
        memcpy(H, tmp, n_h * sizeof *H);
        free(tmp);
    }

    double t_chol = now_seconds();
    double mean_diag = 0.0;
    for (int c = 0; c < cols; c++)
        mean_diag += H[(size_t)c * cols + c];
    mean_diag /= cols;
    float damp = (float)(cfg->damp * mean_diag);
    for (int c = 0; c < cols; c++)
        H[(size_t)c * cols + c] += damp;
    if ((st = gptq_interrupt_check("GPTQ")) || (st = hinv_upper_cholesky(H, cols, cfg->damp)))
        goto fail;
    const float *Hinv = H;
    out->seconds_cholesky = now_seconds() - t_chol;

    /* g_idx: the group of each original column. */
    for (int c = 0; c < cols; c++) {
        int g = cfg->static_groups ? perm[c] / gs : c / gs;
        out->g_idx[perm[c]] = g;
    }

    double t_blocks = now_seconds();
    for (int i1 = 0; i1 < cols; i1 += B) {
        const int i2 = i1 + B < cols ? i1 + B : cols, count = i2 - i1;
        if ((st = gptq_interrupt_check("GPTQ block")))
            goto fail;

#pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++) {
            float w1[count]; /* this row's block, updated within the block */
            float *wrow = W + (size_t)r * cols;
            float *err = Err + (size_t)r * B;
            memcpy(w1, wrow + i1, (size_t)count * sizeof *w1);
            float scale = 0.0f;
            int32_t zero = 0;
            double loss = 0.0;
            int g_cur = -1;
            for (int i = 0; i < count; i++) {
                const int col = i1 + i;
                /* Group parameters. Like the reference, a group that starts
                 * inside a block is fitted on W as of the last lazy update,
                 * not on the block's in-flight copy. */
                int g = out->g_idx[perm[col]];
                if (btype >= 0) {
                    /* a block's header when the walk enters it; a K type's later
                     * sub-groups refitted under its super-scales on their weights
                     * as the error feedback left them (the block's in-flight copy) */
                    if (!cfg->static_groups && col % fit == 0)
                        fit_block(btype, wrow + col, imp + col, out, r, col, out->scales, gmin);
                    else if (!cfg->static_groups && col % gs == 0 && i + gs <= count)
                        refit_sub(btype, w1 + i, imp + col, out, r, col, out->scales, gmin);
                    scale = (cfg->static_groups ? gscale : out->scales)[(size_t)g * rows + r];
                } else if (cfg->group_size != -1 && !cfg->static_groups && col % gs == 0) {
                    int n = col + gs < cols ? gs : cols - col;
                    row_raised[r] += gptq_quantizer_find(&quantizer, wrow + col, n, &scale, &zero);
                    out->scales[(size_t)g * rows + r] = scale;
                    out->zeros[(size_t)g * rows + r] = zero;
                    g_cur = g;
                } else if (g != g_cur) { /* block starts inside a fitted group */
                    const float *sc = cfg->static_groups ? gscale : out->scales;
                    const int32_t *zr = cfg->static_groups ? gzero : out->zeros;
                    scale = sc[(size_t)g * rows + r];
                    zero = zr[(size_t)g * rows + r];
                    g_cur = g;
                }
                const float w = w1[i], d = Hinv[(size_t)col * cols + col];
                float q;
                int code = btype >= 0 ? gptq_ggml_grid_code(w, scale, gmin[(size_t)g * rows + r],
                                                            maxq, bzero, &q)
                                      : gptq_quantize_value(w, scale, zero, maxq, &q);
                out->codes[(size_t)r * cols + perm[col]] = (uint8_t)code;
                out->Q[(size_t)r * cols + perm[col]] = q;
                const float e = (w - q) / d;
                loss += (double)((w - q) * (w - q) / (d * d)) / 2.0;
                err[i] = e;
                const float *hrow = Hinv + (size_t)col * cols + i1;
                for (int j = i + 1; j < count; j++)
                    w1[j] -= e * hrow[j];
            }
            row_loss[r] += loss;
        }
        /* Lazy batch: W[:, i2:] -= Err · Hinv[i1:i2, i2:] */
        if (i2 < cols)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols - i2, count, -1.0f,
                        Err, B, Hinv + (size_t)i1 * cols + i2, cols, 1.0f, W + i2, cols);
    }
    out->seconds_blocks = now_seconds() - t_blocks;

    if (cfg->static_groups) {
        memcpy(out->scales, gscale, (size_t)groups * rows * sizeof *gscale);
        memcpy(out->zeros, gzero, (size_t)groups * rows * sizeof *gzero);
    }
    if (btype >= 0) {
        memset(out->zeros, 0, (size_t)groups * rows * sizeof *out->zeros);
        if ((st = gptq_quant_result_finish_blocks(out)))
            goto fail;
    }
    out->loss = 0.0;
    out->zeros_raised = 0;
    for (int r = 0; r < rows; r++) {
        out->loss += row_loss[r];
        out->zeros_raised += row_raised[r];
    }
    if ((st = gptq_check_finite("quantized W", out->Q, rows, cols))) {
        st = gptq_fail_context(GPTQ_ERR_NUMERIC, "GPTQ produced non-finite weights; raise damp "
                                                 "(now %g)", (double)cfg->damp);
        goto fail;
    }
    out->seconds_total = now_seconds() - t_start;
    st = GPTQ_OK;
    goto done;
fail:
    gptq_quant_result_free(out);
done:
    free(W);
    free(H);
    free(Err);
    free(perm);
    free(gscale);
    free(gzero);
    free(gmin);
    free(imp);
    free(row_loss);
    free(row_raised);
    return st;
}

double gptq_layer_error(const float *W, const float *Q, const float *H, int rows, int cols)
{
    if (rows <= 0 || cols <= 0)
        return 0.0;
    size_t n = (size_t)rows * cols;
    float *D = malloc(n * sizeof *D), *DH = malloc(n * sizeof *DH);
    if (!D || !DH) {
        free(D);
        free(DH);
        return -1.0;
    }
    for (size_t i = 0; i < n; i++)
        D[i] = W[i] - Q[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, cols, 1.0f, D, cols, H,
                cols, 0.0f, DH, cols);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)D[i] * (double)DH[i];
    free(D);
    free(DH);
    return sum;
}
