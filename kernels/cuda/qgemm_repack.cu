// kernels/cuda/qgemm_repack.cu: v1 checkpoint layout -> the device layout of
// kernels/cuda/qgemm.cuh, once per layer at load (host side, then upload).
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/qgemm.cuh"

// Value k (width bits) of a v1 bit stream whose words are `stride` apart
// (gptq/quant.h's gptq_bits_get; the module does not link libgptqquant).
static uint32_t stream_get(const int32_t *words, size_t stride, int bits, size_t k)
{
    size_t bit = k * (size_t)bits, w = bit >> 5;
    unsigned off = (unsigned)(bit & 31);
    uint64_t v = (uint32_t)words[w * stride];
    if (off + (unsigned)bits > 32)
        v |= (uint64_t)(uint32_t)words[(w + 1) * stride] << 32;
    return (uint32_t)(v >> off) & ((1u << bits) - 1);
}

static void stream_put(uint32_t *words, size_t stride, int bits, size_t k, uint32_t value)
{
    size_t bit = k * (size_t)bits, w = bit >> 5;
    unsigned off = (unsigned)(bit & 31);
    words[w * stride] |= value << off;
    if (off + (unsigned)bits > 32)
        words[(w + 1) * stride] |= value >> (32 - off);
}

// The checks gptq_cpu_qgemm makes, plus what the layout needs.
static gptq_status check_packed(const gptq_packed *P)
{
    if (P->bits != 2 && P->bits != 3 && P->bits != 4 && P->bits != 8)
        return cuda_fail(GPTQ_ERR_ARG, "qlinear: bits %d: use 2, 3, 4 or 8", P->bits);
    if (P->rows < 1 || P->cols < 1 || P->groups < 1)
        return cuda_fail(GPTQ_ERR_ARG, "qlinear: shape rows=%d cols=%d groups=%d must be positive",
                         P->rows, P->cols, P->groups);
    if (P->cols % QCHUNK)
        return cuda_fail(GPTQ_ERR_UNSUPPORTED,
                         "qlinear: cols %d is not a multiple of %d (the kernel's chunk)", P->cols,
                         QCHUNK);
    if (((int64_t)P->rows * P->bits) % 32 || P->rows % 4)
        return cuda_fail(GPTQ_ERR_FORMAT,
                         "qlinear: rows %d: rows*bits must be a multiple of 32 and rows of 4",
                         P->rows);
    if (!P->qweight || !P->qzeros || !P->scales || !P->g_idx)
        return cuda_fail(GPTQ_ERR_ARG, "qlinear: packed layer has a NULL array");
    for (int c = 0; c < P->cols; c++)
        if (P->g_idx[c] < 0 || P->g_idx[c] >= P->groups)
            return cuda_fail(GPTQ_ERR_FORMAT, "qlinear: g_idx[%d] = %d outside [0, %d)", c,
                             P->g_idx[c], P->groups);
    return GPTQ_OK;
}

struct host_layout {
    uint32_t *qweight;
    __half2 *sz;
    int32_t *chunk_group, *perm;
};

static void host_layout_free(host_layout *h)
{
    free(h->qweight);
    free(h->sz);
    free(h->chunk_group);
    free(h->perm);
}

// Sort columns by group (counting sort: stable, O(cols + groups)), then
// build the arrays of qgemm.cuh on the host.
static gptq_status build_layout(const gptq_packed *P, host_layout *h)
{
    const int rows = P->rows, cols = P->cols, groups = P->groups, bits = P->bits;
    const int chunks = cols / QCHUNK;
    int *start = (int *)calloc((size_t)groups + 1, sizeof *start);
    h->qweight = (uint32_t *)calloc((size_t)chunks * bits * rows, sizeof *h->qweight);
    h->sz = (__half2 *)malloc((size_t)groups * rows * sizeof *h->sz);
    h->chunk_group = (int32_t *)malloc((size_t)chunks * sizeof *h->chunk_group);
    h->perm = (int32_t *)malloc((size_t)cols * sizeof *h->perm);
    gptq_status st = GPTQ_OK;
    if (!start || !h->qweight || !h->sz || !h->chunk_group || !h->perm) {
        st = cuda_fail(GPTQ_ERR_NOMEM, "qlinear: cannot allocate the repacked %dx%d layer", rows,
                       cols);
        goto out;
    }
    for (int c = 0; c < cols; c++)
        start[P->g_idx[c] + 1]++;
    for (int g = 0; g < groups; g++) {
        if (start[g + 1] % QCHUNK) {
            st = cuda_fail(GPTQ_ERR_UNSUPPORTED,
                           "qlinear: group %d has %d columns, not a multiple of %d; the CUDA "
                           "kernels need whole chunks per group (use the CPU backend)",
                           g, start[g + 1], QCHUNK);
            goto out;
        }
        start[g + 1] += start[g];
    }
    for (int c = 0; c < cols; c++)
        h->perm[start[P->g_idx[c]]++] = c; // start[g] ends as the end of group g
    for (int k = 0; k < chunks; k++)
        h->chunk_group[k] = P->g_idx[h->perm[k * QCHUNK]];
    // Codes: row r's stream in v1 is qweight[k, r] (stride rows); so is ours.
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            stream_put(h->qweight + r, (size_t)rows, bits, (size_t)j,
                       stream_get(P->qweight + r, (size_t)rows, bits, (size_t)h->perm[j]));
    {
        const size_t zwords = (size_t)rows * bits / 32;
        for (int g = 0; g < groups; g++)
            for (int r = 0; r < rows; r++) {
                uint32_t zero = stream_get(P->qzeros + g * zwords, 1, bits, (size_t)r) + 1;
                __half_raw raw;
                raw.x = P->scales[(size_t)g * rows + r];
                const __half scale = raw, zh = __float2half_rn((float)zero);
                h->sz[(size_t)g * rows + r] = __halves2half2(scale, zh);
            }
    }
out:
    free(start);
    if (st != GPTQ_OK)
        host_layout_free(h);
    return st;
}

static gptq_status upload_array(void **dst, const void *src, size_t bytes, size_t *total)
{
    CUDA_CHECK(cudaMalloc(dst, bytes));
    *total += bytes;
    CUDA_CHECK(cudaMemcpyAsync(*dst, src, bytes, cudaMemcpyHostToDevice, g_cuda.stream));
    return GPTQ_OK;
}

void cuda_qlinear_destroy(gptq_cuda_qlinear *L)
{
    if (!L)
        return;
    cuda_free_sync(L->qweight);
    cuda_free_sync(L->sz);
    cuda_free_sync(L->chunk_group);
    cuda_free_sync(L->perm);
    free(L);
}

gptq_status cuda_qlinear_create(const gptq_packed *P, gptq_cuda_qlinear **out)
{
    gptq_status st = check_packed(P);
    if (st != GPTQ_OK)
        return st;
    host_layout h = {};
    if ((st = build_layout(P, &h)) != GPTQ_OK)
        return st;
    gptq_cuda_qlinear *L = (gptq_cuda_qlinear *)calloc(1, sizeof *L);
    if (!L) {
        host_layout_free(&h);
        return cuda_fail(GPTQ_ERR_NOMEM, "qlinear: cannot allocate its descriptor");
    }
    L->bits = P->bits;
    L->rows = P->rows;
    L->cols = P->cols;
    L->groups = P->groups;
    L->chunks = P->cols / QCHUNK;
    const size_t qw_bytes = (size_t)L->chunks * L->bits * L->rows * sizeof(uint32_t);
    if ((st = upload_array((void **)&L->qweight, h.qweight, qw_bytes, &L->bytes)) != GPTQ_OK ||
        (st = upload_array((void **)&L->sz, h.sz, (size_t)L->groups * L->rows * sizeof(__half2),
                           &L->bytes)) != GPTQ_OK ||
        (st = upload_array((void **)&L->chunk_group, h.chunk_group,
                           (size_t)L->chunks * sizeof(int32_t), &L->bytes)) != GPTQ_OK ||
        (st = upload_array((void **)&L->perm, h.perm, (size_t)L->cols * sizeof(int32_t),
                           &L->bytes)) != GPTQ_OK ||
        (st = cuda_sync()) != GPTQ_OK) { // the host arrays are freed next
        cudaStreamSynchronize(g_cuda.stream);
        cuda_qlinear_destroy(L);
        host_layout_free(&h);
        return st;
    }
    host_layout_free(&h);
    *out = L;
    return GPTQ_OK;
}

size_t cuda_qlinear_bytes(const gptq_cuda_qlinear *L)
{
    return L->bytes;
}

