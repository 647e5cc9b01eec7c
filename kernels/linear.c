/* kernels/linear.c: the kernels' layout of a packed linear (kernels/linear.h). */
#include "kernels/linear.h"

#include <stdlib.h>
#include <string.h>

static size_t qweight_words(const gptq_packed *P)
{
    return (size_t)P->cols * P->bits / 32 * P->rows;
}

static size_t qzeros_words(const gptq_packed *P)
{
    return (size_t)P->groups * P->rows * P->bits / 32;
}

size_t gptq_linear_bytes(const gptq_linear *L)
{
    const gptq_packed *P = &L->P;
    return (qweight_words(P) + qzeros_words(P)) * sizeof(int32_t) +
           (size_t)P->groups * P->rows * sizeof(uint16_t) +
           (size_t)P->cols * sizeof(int32_t) * (L->perm ? 2 : 1);
}

void gptq_linear_free(gptq_linear *L)
{
    if (L->P.owned)
        free(L->perm);
    gptq_packed_free(&L->P);
    memset(L, 0, sizeof *L);
}

static gptq_status check_shape(const gptq_packed *P)
{
    gptq_status st = gptq_pack_check(P->rows, P->cols, P->bits);
    if (st != GPTQ_OK)
        return st;
    if (P->groups < 1 || P->groups > P->cols)
        return gptq_fail(GPTQ_ERR_FORMAT, "packed linear: %d groups for %d inputs", P->groups,
                         P->cols);
    if (!P->qweight || !P->qzeros || !P->scales || !P->g_idx)
        return gptq_fail(GPTQ_ERR_ARG, "packed linear: an array is missing");
    for (int c = 0; c < P->cols; c++)
        if (P->g_idx[c] < 0 || P->g_idx[c] >= P->groups)
            return gptq_fail(GPTQ_ERR_FORMAT, "packed linear: g_idx[%d] = %d is not a group in "
                             "[0, %d)", c, P->g_idx[c], P->groups);
    return GPTQ_OK;
}

/* Whether every group of the sorted g_idx spans whole runs of 32 columns. */
static int chunked(const gptq_packed *P)
{
    for (int c = 0; c < P->cols; c += 32) {
        const int g = P->g_idx[c];
        for (int k = 1; k < 32 && c + k < P->cols; k++)
            if (P->g_idx[c + k] != g)
                return 0;
    }
    return P->cols % 32 == 0;
}

/* dst's qweight and g_idx: column j of dst is column from[j] of src (same
 * shape; dst's arrays allocated by the caller). A column's codes sit at the
 * same bit offset of one word row (or two, where 3-bit codes straddle
 * words), rows contiguous: one pass over the rows per column. */
static void permute_columns(const gptq_packed *src, const int32_t *from, gptq_packed *dst)
{
    const size_t rows = (size_t)src->rows;
    const int bits = src->bits, cols = src->cols;
    const uint32_t mask = (1u << bits) - 1u;
    const uint32_t *sw = (const uint32_t *)src->qweight;
    uint32_t *dw = (uint32_t *)dst->qweight;
    memset(dw, 0, qweight_words(src) * sizeof(int32_t));
    for (int j = 0; j < cols; j++) {
        const size_t sbit = (size_t)from[j] * bits, dbit = (size_t)j * bits;
        const unsigned so = (unsigned)(sbit % 32), dof = (unsigned)(dbit % 32);
        const uint32_t *s0 = sw + sbit / 32 * rows, *s1 = so + bits > 32 ? s0 + rows : NULL;
        uint32_t *d0 = dw + dbit / 32 * rows, *d1 = dof + bits > 32 ? d0 + rows : NULL;
        dst->g_idx[j] = src->g_idx[from[j]];
        for (size_t r = 0; r < rows; r++) {
            uint32_t v = s0[r] >> so;
            if (s1)
                v |= s1[r] << (32 - so);
            v &= mask;
            d0[r] |= v << dof;
            if (d1)
                d1[r] |= v >> (32 - dof);
        }
    }
}

/* A copy of src's shape with new owned qweight and g_idx (qzeros and
 * scales copied too when `all`). */
static gptq_status new_like(const gptq_packed *src, int all, gptq_packed *dst)
{
    *dst = *src;
    dst->owned = 1;
    dst->qweight = malloc(qweight_words(src) * sizeof(int32_t) + 1);
    dst->g_idx = malloc((size_t)src->cols * sizeof(int32_t));
    dst->qzeros = all ? malloc(qzeros_words(src) * sizeof(int32_t) + 1) : NULL;
    dst->scales = all ? malloc((size_t)src->groups * src->rows * sizeof(uint16_t)) : NULL;
    if (!dst->qweight || !dst->g_idx || (all && (!dst->qzeros || !dst->scales))) {
        gptq_packed_free(dst);
        return gptq_fail(GPTQ_ERR_NOMEM, "packed linear [%d, %d]: out of memory", src->rows,
                         src->cols);
    }
    if (all) {
        memcpy(dst->qzeros, src->qzeros, qzeros_words(src) * sizeof(int32_t));
        memcpy(dst->scales, src->scales, (size_t)src->groups * src->rows * sizeof(uint16_t));
    }
    return GPTQ_OK;
}

gptq_status gptq_linear_from_v1(gptq_packed *v1, gptq_linear *out)
{
    gptq_status st = check_shape(v1);
    if (st != GPTQ_OK)
        return st;
    memset(out, 0, sizeof *out);
    int sorted = 1;
    for (int c = 1; c < v1->cols && sorted; c++)
        sorted = v1->g_idx[c] >= v1->g_idx[c - 1];
    if (sorted) {
        out->P = *v1;
        out->chunked = chunked(&out->P);
        memset(v1, 0, sizeof *v1);
        return GPTQ_OK;
    }
    /* A stable counting sort of the columns by group. */
    const int cols = v1->cols, groups = v1->groups;
    int32_t *perm = malloc((size_t)cols * sizeof *perm);
    int *start = calloc((size_t)groups + 1, sizeof *start);
    gptq_packed P = {0};
    if (!perm || !start) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "packed linear [%d, %d]: out of memory", v1->rows, cols);
        goto fail;
    }
    for (int c = 0; c < cols; c++)
        start[v1->g_idx[c] + 1]++;
    for (int g = 0; g < groups; g++)
        start[g + 1] += start[g];
    for (int c = 0; c < cols; c++)
        perm[start[v1->g_idx[c]]++] = c;
    /* qzeros and scales are per group: they move over unless v1 is a view */
    if ((st = new_like(v1, !v1->owned, &P)) != GPTQ_OK)
        goto fail;
    permute_columns(v1, perm, &P);
    if (v1->owned) {
        P.qzeros = v1->qzeros, P.scales = v1->scales;
        v1->qzeros = NULL, v1->scales = NULL;
        gptq_packed_free(v1);
    }
    memset(v1, 0, sizeof *v1);
    free(start);
    out->P = P;
    out->perm = perm;
    out->chunked = chunked(&P);
    return GPTQ_OK;
fail:
    free(perm);
    free(start);
    return st;
}

gptq_status gptq_linear_to_v1(const gptq_linear *L, gptq_packed *out)
{
    gptq_status st = check_shape(&L->P);
    if (st != GPTQ_OK)
        return st;
    if ((st = new_like(&L->P, 1, out)) != GPTQ_OK)
        return st;
    const int cols = L->P.cols;
    if (!L->perm) {
        memcpy(out->qweight, L->P.qweight, qweight_words(&L->P) * sizeof(int32_t));
        memcpy(out->g_idx, L->P.g_idx, (size_t)cols * sizeof(int32_t));
        return GPTQ_OK;
    }
    int32_t *from = malloc((size_t)cols * sizeof *from);
    if (!from) {
        gptq_packed_free(out);
        return gptq_fail(GPTQ_ERR_NOMEM, "packed linear [%d, %d]: out of memory", L->P.rows, cols);
    }
    for (int j = 0; j < cols; j++)
        from[L->perm[j]] = j; /* v1 column perm[j] is sorted column j */
    permute_columns(&L->P, from, out);
    free(from);
    return GPTQ_OK;
}

gptq_status gptq_linear_check(gptq_linear *L)
{
    gptq_status st = check_shape(&L->P);
    if (st != GPTQ_OK)
        return st;
    const int cols = L->P.cols;
    for (int c = 1; c < cols; c++)
        if (L->P.g_idx[c] < L->P.g_idx[c - 1])
            return gptq_fail(GPTQ_ERR_FORMAT, "packed linear: g_idx[%d] = %d after %d: the "
                             "kernels' layout keeps groups in order", c, L->P.g_idx[c],
                             L->P.g_idx[c - 1]);
    if (L->perm) {
        unsigned char *seen = calloc((size_t)cols, 1);
        if (!seen)
            return gptq_fail(GPTQ_ERR_NOMEM, "packed linear: out of memory");
        int bad = -1;
        for (int j = 0; j < cols && bad < 0; j++) {
            if (L->perm[j] < 0 || L->perm[j] >= cols || seen[L->perm[j]])
                bad = j;
            else
                seen[L->perm[j]] = 1;
        }
        free(seen);
        if (bad >= 0)
            return gptq_fail(GPTQ_ERR_FORMAT, "packed linear: perm[%d] = %d is out of range or "
                             "repeated: not a permutation of %d columns", bad, L->perm[bad], cols);
    }
    L->chunked = chunked(&L->P);
    return GPTQ_OK;
}

gptq_status gptq_linear_dequantize(const gptq_linear *L, float *W)
{
    const int rows = L->P.rows, cols = L->P.cols;
    if (!L->perm)
        return gptq_packed_dequantize(&L->P, W);
    float *tmp = malloc((size_t)rows * cols * sizeof *tmp);
    if (!tmp)
        return gptq_fail(GPTQ_ERR_NOMEM, "dequantize [%d, %d]: out of memory", rows, cols);
    gptq_status st = gptq_packed_dequantize(&L->P, tmp);
    if (st == GPTQ_OK)
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++)
                W[(size_t)r * cols + L->perm[j]] = tmp[(size_t)r * cols + j];
    free(tmp);
    return st;
}

gptq_status gptq_linear_upload(gptq_uploader *u, const gptq_linear *src, gptq_linear *dst)
{
    const gptq_packed *P = &src->P;
    const size_t cols_bytes = (size_t)P->cols * sizeof(int32_t);
    *dst = *src;
    dst->P.owned = !u->alloc && u->be == gptq_backend_cpu();
    dst->P.qweight = gptq_upload_bytes(u, P->qweight, qweight_words(P) * sizeof(int32_t), "qweight");
    dst->P.qzeros = gptq_upload_bytes(u, P->qzeros, qzeros_words(P) * sizeof(int32_t), "qzeros");
    dst->P.scales = gptq_upload_bytes(u, P->scales, (size_t)P->groups * P->rows * sizeof(uint16_t),
                                      "scales");
    dst->P.g_idx = gptq_upload_bytes(u, P->g_idx, cols_bytes, "g_idx");
    dst->perm = gptq_upload_bytes(u, src->perm, cols_bytes, "perm");
    if (u->st != GPTQ_OK) {
        if (!u->alloc)
            gptq_linear_free_on(u->be, dst);
        memset(dst, 0, sizeof *dst);
    }
    return u->st;
}

gptq_status gptq_linear_download(const gptq_backend *be, const gptq_linear *src, gptq_linear *dst)
{
    const gptq_packed *P = &src->P;
    const size_t qw = qweight_words(P) * sizeof(int32_t), qz = qzeros_words(P) * sizeof(int32_t);
    const size_t sc = (size_t)P->groups * P->rows * sizeof(uint16_t);
    const size_t cols_bytes = (size_t)P->cols * sizeof(int32_t);
    gptq_status st = GPTQ_OK;
    *dst = *src;
    dst->P.owned = 1;
    dst->P.qweight = malloc(qw + 1);
    dst->P.qzeros = malloc(qz + 1);
    dst->P.scales = malloc(sc + 1);
    dst->P.g_idx = malloc(cols_bytes + 1);
    dst->perm = src->perm ? malloc(cols_bytes + 1) : NULL;
    if (!dst->P.qweight || !dst->P.qzeros || !dst->P.scales || !dst->P.g_idx ||
        (src->perm && !dst->perm))
        st = gptq_fail(GPTQ_ERR_NOMEM, "cannot allocate a host copy of a packed linear");
    if (st == GPTQ_OK)
        st = be->download(be, dst->P.qweight, P->qweight, qw);
    if (st == GPTQ_OK)
        st = be->download(be, dst->P.qzeros, P->qzeros, qz);
    if (st == GPTQ_OK)
        st = be->download(be, dst->P.scales, P->scales, sc);
    if (st == GPTQ_OK)
        st = be->download(be, dst->P.g_idx, P->g_idx, cols_bytes);
    if (st == GPTQ_OK && src->perm)
        st = be->download(be, dst->perm, src->perm, cols_bytes);
    if (st != GPTQ_OK)
        gptq_linear_free(dst);
    return st;
}

void gptq_linear_free_on(const gptq_backend *be, gptq_linear *L)
{
    be->free(be, L->P.qweight);
    be->free(be, L->P.qzeros);
    be->free(be, L->P.scales);
    be->free(be, L->P.g_idx);
    be->free(be, L->perm);
    memset(L, 0, sizeof *L);
}
