// kernels/cuda/qgemm.cu: linears on packed GPTQ weights: the fused
// dequantize-dot kernel on the repacked layout (batch 1..64, memory-bound at
// batch 1), the dequantize + cuBLAS fp16 path for larger batches, and the
// table entry's kernel on the v1 checkpoint layout as uploaded.
#include "kernels/cuda/qgemm.cuh"

// ---- CUDA kernels -------------------------------------------------------------

#define PK_WARPS 8                  // warps per block; they split a slice's chunks
#define PK_THREADS (PK_WARPS * 32)
#define PK_ROWS (32 * 4)            // rows per block: 32 lanes x 4 rows (one 128-bit load)
#define PK_SLICE_MAX 32             // chunks per block slice, bounds shared memory
#define PK_BATCH_TILE 8             // batch rows per block at most

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<float>(float v)
{
    return v;
}
template <> __device__ __forceinline__ float to_float<__half>(__half v)
{
    return __half2float(v);
}

// Code k of a 32-code chunk held in BITS words w[] (bit stream, low bits
// first), as a float. With k and BITS compile-time constants the shifts are
// immediates; the int->float conversion is the 2^23 trick (or + fsub)
// rather than I2F, which issues at quarter rate.
template <int BITS>
__device__ __forceinline__ float chunk_code(const uint32_t (&w)[BITS], int k)
{
    const int bit = k * BITS, wi = bit >> 5, off = bit & 31;
    uint32_t v = w[wi] >> off;
    if (off + BITS > 32)
        v |= w[wi + 1] << (32 - off);
    v &= (1u << BITS) - 1;
    return __uint_as_float(0x4B000000u | v) - 8388608.0f;
}

// The BITS words of chunk `chunk` of output row r: the same in v1 and in the
// repacked layout ([chunks * BITS, rows], rows fastest).
template <int BITS>
__device__ __forceinline__ void chunk_words(const uint32_t *__restrict__ qweight, int rows,
                                            int chunk, int r, uint32_t (&w)[BITS])
{
#pragma unroll
    for (int i = 0; i < BITS; i++)
        w[i] = qweight[(size_t)(chunk * BITS + i) * rows + r];
}

// y [n, rows] (+)= x [n, cols] · dequant(L)ᵀ for one block: rows
// [blockIdx.x*128, +128), chunks of slice blockIdx.y, batch rows of tile
// blockIdx.z. Each thread owns four consecutive rows; warp w of the block
// takes chunks w, w+8, ... of the slice; the warps' partial sums meet in
// shared memory and leave by one store (single slice: y = sum + bias) or one
// atomicAdd (y pre-filled with bias or 0 by the launcher).
template <int BITS, int BT, typename XT>
__global__ void __launch_bounds__(PK_THREADS)
    qgemm_packed_kernel(const uint32_t *__restrict__ qweight, const __half2 *__restrict__ sz,
                        const int32_t *__restrict__ chunk_group, const int32_t *__restrict__ perm,
                        const XT *__restrict__ x, const float *__restrict__ bias,
                        float *__restrict__ y, int rows, int cols, int n, int slice_chunks)
{
    extern __shared__ float smem[];
    float *xs = smem;                                  // [BT][slice_chunks * 32]
    float *xsum = smem + BT * slice_chunks * QCHUNK;   // [BT][slice_chunks]
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int chunks = cols / QCHUNK;
    const int c0 = blockIdx.y * slice_chunks;
    const int nch = min(slice_chunks, chunks - c0);
    const int b0 = blockIdx.z * BT;
    const int quad = blockIdx.x * 32 + lane, r0 = quad * 4;
    const bool live = r0 < rows;

    // Stage this slice of x, gathered through perm (act-order for free).
    const int ncols = nch * QCHUNK;
    for (int i = threadIdx.x; i < BT * ncols; i += PK_THREADS) {
        const int b = i / ncols, j = i - b * ncols;
        xs[b * ncols + j] =
            b0 + b < n ? to_float(x[(size_t)(b0 + b) * cols + perm[c0 * QCHUNK + j]]) : 0.0f;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < BT * nch; i += PK_THREADS) {
        const float *p = xs + (i / nch) * ncols + (i % nch) * QCHUNK;
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < QCHUNK; k++)
            s += p[k];
        xsum[i] = s;
    }
    __syncthreads();

    float acc[4][BT];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int b = 0; b < BT; b++)
            acc[i][b] = 0.0f;

    if (live) {
        int group = -1;
        float scale[4], zero[4];
        for (int c = warp; c < nch; c += PK_WARPS) {
            const int chunk = c0 + c;
            uint32_t w[4][BITS];
#pragma unroll
            for (int i = 0; i < BITS; i++) {
                const uint4 v = __ldg(
                    reinterpret_cast<const uint4 *>(qweight + (size_t)(chunk * BITS + i) * rows + r0));
                w[0][i] = v.x;
                w[1][i] = v.y;
                w[2][i] = v.z;
                w[3][i] = v.w;
            }
            const int g = chunk_group[chunk];
            if (g != group) { // groups span many chunks: reload rarely
                group = g;
                const uint4 p = __ldg(reinterpret_cast<const uint4 *>(sz + (size_t)g * rows + r0));
                const __half2 *h = reinterpret_cast<const __half2 *>(&p);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    scale[i] = __low2float(h[i]);
                    zero[i] = __high2float(h[i]);
                }
            }
            float dot[4][BT];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int b = 0; b < BT; b++)
                    dot[i][b] = 0.0f;
            const float *xc = xs + c * QCHUNK;
#pragma unroll
            for (int k = 0; k < QCHUNK; k++) {
                float q[4];
#pragma unroll
                for (int i = 0; i < 4; i++)
                    q[i] = chunk_code<BITS>(w[i], k);
#pragma unroll
                for (int b = 0; b < BT; b++) {
                    const float xv = xc[b * ncols + k]; // same address across the warp: broadcast
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        dot[i][b] = fmaf(q[i], xv, dot[i][b]);
                }
            }
#pragma unroll
            for (int b = 0; b < BT; b++) {
                const float xsb = xsum[b * nch + c];
#pragma unroll
                for (int i = 0; i < 4; i++)
                    acc[i][b] = fmaf(scale[i], dot[i][b] - zero[i] * xsb, acc[i][b]);
            }
        }
    }

    // Cross-warp reduction; xs is no longer needed, reuse it.
    __syncthreads();
    float *red = smem; // [PK_WARPS][4 * BT][32]
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int b = 0; b < BT; b++)
            red[(warp * 4 * BT + i * BT + b) * 32 + lane] = acc[i][b];
    __syncthreads();
    for (int o = threadIdx.x; o < 4 * BT * 32; o += PK_THREADS) {
        const int e = o >> 5, l = o & 31, i = e / BT, b = e % BT;
        const int r = (blockIdx.x * 32 + l) * 4 + i;
        if (r >= rows || b0 + b >= n)
            continue;
        float s = 0.0f;
#pragma unroll
        for (int wi = 0; wi < PK_WARPS; wi++)
            s += red[(wi * 4 * BT + e) * 32 + l];
        float *dst = y + (size_t)(b0 + b) * rows + r;
        if (gridDim.y == 1)
            *dst = bias ? s + bias[r] : s;
        else
            atomicAdd(dst, s);
    }
}

// W [rows, cols] fp16 in sorted column order, from the repacked layout: one
// thread per (row, chunk), threads along rows so the word reads coalesce.
template <int BITS>
__global__ void dequant_kernel(const uint32_t *__restrict__ qweight, const __half2 *__restrict__ sz,
                               const int32_t *__restrict__ chunk_group, __half *__restrict__ W,
                               int rows, int chunks)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (r >= rows)
        return;
    uint32_t w[BITS];
    chunk_words<BITS>(qweight, rows, chunk, r, w);
    const __half2 p = sz[(size_t)chunk_group[chunk] * rows + r];
    const float scale = __low2float(p), zero = __high2float(p);
    __half2 *dst = reinterpret_cast<__half2 *>(W + (size_t)r * chunks * QCHUNK + chunk * QCHUNK);
#pragma unroll
    for (int k = 0; k < QCHUNK; k += 2)
        dst[k / 2] = __floats2half2_rn(scale * (chunk_code<BITS>(w, k) - zero),
                                       scale * (chunk_code<BITS>(w, k + 1) - zero));
}

// xg [n, cols] fp16 = x [n, perm[j]]: the activations in sorted column order.
template <typename XT>
__global__ void gather_kernel(const XT *__restrict__ x, const int32_t *__restrict__ perm,
                              __half *__restrict__ xg, int n, int cols)
{
    const size_t total = (size_t)n * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t b = i / cols, j = i - b * cols;
        xg[i] = __float2half_rn(to_float(x[b * cols + perm[j]]));
    }
}

// Zero point (with v1's +1) of group g, output row r, from v1 qzeros
// [groups, rows*BITS/32]: value r of row g's bit stream.
template <int BITS>
__device__ __forceinline__ float v1_zero(const int32_t *__restrict__ qzeros, int rows, int g, int r)
{
    const size_t words = (size_t)rows * BITS / 32, bit = (size_t)r * BITS, w = g * words + (bit >> 5);
    const unsigned off = bit & 31;
    uint64_t v = (uint32_t)qzeros[w];
    if (off + BITS > 32)
        v |= (uint64_t)(uint32_t)qzeros[w + 1] << 32;
    return (float)(((uint32_t)(v >> off) & ((1u << BITS) - 1)) + 1);
}

// Table entry on the v1 layout as uploaded (gptq/quant.h), small batches:
// one thread per output row (v1's words are row-contiguous, so a warp's
// loads coalesce), a block slice of V1_COLS input columns, group looked up
// per column through g_idx (cached while it does not change; act-order
// layers switch often, which is why the repacked path exists).
#define V1_COLS 256
#define V1_THREADS 128
#define V1_MAX_N 8

template <int BITS>
__global__ void __launch_bounds__(V1_THREADS)
    qgemm_v1_kernel(const int32_t *__restrict__ qweight, const int32_t *__restrict__ qzeros,
                    const __half *__restrict__ scales, const int32_t *__restrict__ g_idx,
                    const float *__restrict__ x, const float *__restrict__ bias,
                    float *__restrict__ y, int rows, int cols, int n)
{
    __shared__ float xs[V1_MAX_N][V1_COLS];
    __shared__ int gs[V1_COLS];
    const int r = blockIdx.x * V1_THREADS + threadIdx.x;
    const int j0 = blockIdx.y * V1_COLS, ncols = min(V1_COLS, cols - j0);
    for (int i = threadIdx.x; i < V1_MAX_N * V1_COLS; i += V1_THREADS) {
        const int b = i / V1_COLS, j = i % V1_COLS;
        xs[b][j] = b < n && j < ncols ? x[(size_t)b * cols + j0 + j] : 0.0f;
    }
    for (int j = threadIdx.x; j < ncols; j += V1_THREADS)
        gs[j] = g_idx[j0 + j];
    __syncthreads();
    if (r >= rows)
        return;
    float acc[V1_MAX_N] = {};
    int group = -1;
    float scale = 0.0f, zero = 0.0f;
    for (int c = 0; c < ncols; c += QCHUNK) { // ncols is a multiple of 32 (cols*bits % 32)
        uint32_t w[BITS];
        chunk_words<BITS>(reinterpret_cast<const uint32_t *>(qweight), rows, (j0 + c) / QCHUNK, r,
                          w);
#pragma unroll // k must be a constant for chunk_code's shifts
        for (int k = 0; k < QCHUNK; k++) {
            const int g = gs[c + k];
            if (g != group) {
                group = g;
                scale = __half2float(scales[(size_t)g * rows + r]);
                zero = v1_zero<BITS>(qzeros, rows, g, r);
            }
            const float wv = scale * (chunk_code<BITS>(w, k) - zero);
#pragma unroll
            for (int b = 0; b < V1_MAX_N; b++)
                acc[b] = fmaf(wv, xs[b][c + k], acc[b]);
        }
    }
    for (int b = 0; b < n; b++) {
        float *dst = y + (size_t)b * rows + r;
        if (gridDim.y == 1)
            *dst = bias ? acc[b] + bias[r] : acc[b];
        else
            atomicAdd(dst, acc[b]);
    }
}

// v1 -> float32 W [rows, cols] for the table entry's large batches.
template <int BITS>
__global__ void dequant_v1_kernel(const int32_t *__restrict__ qweight,
                                  const int32_t *__restrict__ qzeros,
                                  const __half *__restrict__ scales,
                                  const int32_t *__restrict__ g_idx, float *__restrict__ W,
                                  int rows, int cols)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (r >= rows)
        return;
    uint32_t w[BITS];
    chunk_words<BITS>(reinterpret_cast<const uint32_t *>(qweight), rows, chunk, r, w);
#pragma unroll
    for (int k = 0; k < QCHUNK; k++) {
        const int c = chunk * QCHUNK + k, g = g_idx[c];
        W[(size_t)r * cols + c] = __half2float(scales[(size_t)g * rows + r]) *
                                  (chunk_code<BITS>(w, k) - v1_zero<BITS>(qzeros, rows, g, r));
    }
}

// ---- Kernel launchers ---------------------------------------------------------


// y = bias or 0 before a kernel that accumulates with atomicAdd.
static gptq_status prefill_bias(const float *bias, float *y, int n, int rows)
{
    if (!bias) {
        CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)n * rows * sizeof *y, g_cuda.stream));
        return GPTQ_OK;
    }
    return cuda_bias_rows(bias, y, n, rows, 0);
}

template <int BITS, int BT, typename XT>
static gptq_status launch_packed_bt(const gptq_cuda_qlinear *L, const XT *x, const float *bias,
                                    float *y, int n)
{
    const unsigned row_blocks = ceil_div(L->rows, PK_ROWS), tiles = ceil_div(n, BT);
    // Enough blocks for ~4 per SM, but each warp keeps >= 2 chunks so the
    // staging of x and the reduction stay small next to the weight reads.
    const unsigned want = (unsigned)g_cuda.prop.multiProcessorCount * 4;
    unsigned slices = ceil_div(want, (size_t)row_blocks * tiles);
    const unsigned most = ceil_div(L->chunks, 2 * PK_WARPS), least = ceil_div(L->chunks, PK_SLICE_MAX);
    slices = slices > most ? most : slices;
    slices = slices < least ? least : slices;
    const int slice_chunks = (int)ceil_div(L->chunks, slices);
    slices = ceil_div(L->chunks, slice_chunks);
    if (slices > 1) {
        gptq_status st = prefill_bias(bias, y, n, L->rows);
        if (st != GPTQ_OK)
            return st;
    }
    const size_t stage = (size_t)BT * slice_chunks * (QCHUNK + 1) * sizeof(float);
    const size_t reduce = (size_t)PK_WARPS * 4 * BT * 32 * sizeof(float);
    const size_t shmem = stage > reduce ? stage : reduce;
    dim3 grid(row_blocks, slices, tiles);
    qgemm_packed_kernel<BITS, BT, XT><<<grid, PK_THREADS, shmem, g_cuda.stream>>>(
        L->qweight, L->sz, L->chunk_group, L->perm, x, bias, y, L->rows, L->cols, n, slice_chunks);
    CUDA_CHECK_LAUNCH();
    return GPTQ_OK;
}

// Batch tile: the smallest power of two >= n, at most 8, so that batch 1
// carries no idle accumulators.
template <int BITS, typename XT>
static gptq_status launch_packed(const gptq_cuda_qlinear *L, const XT *x, const float *bias,
                                 float *y, int n)
{
    if (n == 1)
        return launch_packed_bt<BITS, 1, XT>(L, x, bias, y, n);
    if (n == 2)
        return launch_packed_bt<BITS, 2, XT>(L, x, bias, y, n);
    if (n <= 4)
        return launch_packed_bt<BITS, 4, XT>(L, x, bias, y, n);
    return launch_packed_bt<BITS, PK_BATCH_TILE, XT>(L, x, bias, y, n);
}

template <typename XT>
static gptq_status packed_by_bits(const gptq_cuda_qlinear *L, const XT *x, const float *bias,
                                  float *y, int n)
{
    switch (L->bits) {
    case 2: return launch_packed<2, XT>(L, x, bias, y, n);
    case 3: return launch_packed<3, XT>(L, x, bias, y, n);
    case 4: return launch_packed<4, XT>(L, x, bias, y, n);
    default: return launch_packed<8, XT>(L, x, bias, y, n);
    }
}

static gptq_status launch_dequant(const gptq_cuda_qlinear *L, __half *W)
{
    dim3 grid(ceil_div(L->rows, 128), L->chunks);
    switch (L->bits) {
    case 2: dequant_kernel<2><<<grid, 128, 0, g_cuda.stream>>>(L->qweight, L->sz, L->chunk_group, W, L->rows, L->chunks); break;
    case 3: dequant_kernel<3><<<grid, 128, 0, g_cuda.stream>>>(L->qweight, L->sz, L->chunk_group, W, L->rows, L->chunks); break;
    case 4: dequant_kernel<4><<<grid, 128, 0, g_cuda.stream>>>(L->qweight, L->sz, L->chunk_group, W, L->rows, L->chunks); break;
    default: dequant_kernel<8><<<grid, 128, 0, g_cuda.stream>>>(L->qweight, L->sz, L->chunk_group, W, L->rows, L->chunks); break;
    }
    CUDA_CHECK_LAUNCH();
    return GPTQ_OK;
}

// Large batches: W and x to fp16 in sorted column order, then tensor cores.
// Scratch comes from the stream-ordered pool and is released in order.
static gptq_status qlinear_dequant_path(const gptq_cuda_qlinear *L, const uint16_t *x16,
                                        const float *x32, const float *bias, float *y, int n)
{
    __half *W = nullptr, *xg = nullptr;
    const size_t w_bytes = (size_t)L->rows * L->cols * sizeof(__half);
    const size_t x_bytes = (size_t)n * L->cols * sizeof(__half);
    gptq_status st = GPTQ_OK;
    CUDA_CHECK(cudaMallocAsync((void **)&W, w_bytes + x_bytes, g_cuda.stream));
    xg = W + (size_t)L->rows * L->cols;
    if ((st = launch_dequant(L, W)) != GPTQ_OK)
        goto out;
    if (x16)
        gather_kernel<__half><<<stride_blocks((size_t)n * L->cols), 256, 0, g_cuda.stream>>>(
            (const __half *)x16, L->perm, xg, n, L->cols);
    else
        gather_kernel<float><<<stride_blocks((size_t)n * L->cols), 256, 0, g_cuda.stream>>>(
            x32, L->perm, xg, n, L->cols);
    if (cudaGetLastError() != cudaSuccess) {
        st = cuda_fail(GPTQ_ERR_DEVICE, "qlinear: gather launch failed");
        goto out;
    }
    if ((st = cuda_gemm_f16_raw(xg, W, y, n, L->cols, L->rows)) != GPTQ_OK)
        goto out;
    if (bias)
        st = cuda_bias_rows(bias, y, n, L->rows, 1);
out:
    cudaFreeAsync(W, g_cuda.stream);
    return st;
}

gptq_status cuda_qlinear_gemm(const gptq_cuda_qlinear *L, const uint16_t *x16, const float *x32,
                              const float *bias, float *y, int n, gptq_cuda_qpath path)
{
    if (n < 1)
        return cuda_fail(GPTQ_ERR_ARG, "qlinear: batch %d must be at least 1", n);
    if (!x16 == !x32)
        return cuda_fail(GPTQ_ERR_ARG, "qlinear: give exactly one of the fp16 and float32 inputs");
    if (path == GPTQ_CUDA_QPATH_AUTO)
        path = n <= GPTQ_CUDA_PACKED_MAX_N ? GPTQ_CUDA_QPATH_PACKED : GPTQ_CUDA_QPATH_DEQUANT;
    if (path == GPTQ_CUDA_QPATH_DEQUANT)
        return qlinear_dequant_path(L, x16, x32, bias, y, n);
    return x16 ? packed_by_bits<__half>(L, (const __half *)x16, bias, y, n)
               : packed_by_bits<float>(L, x32, bias, y, n);
}

// ---- the table entry (v1 layout in device memory) ----------------------------

template <int BITS>
static void launch_v1(const gptq_packed *P, const float *x, const float *bias, float *y, int n,
                      float *W)
{
    if (W) {
        dim3 grid(ceil_div(P->rows, 128), P->cols / QCHUNK);
        dequant_v1_kernel<BITS><<<grid, 128, 0, g_cuda.stream>>>(
            P->qweight, P->qzeros, (const __half *)P->scales, P->g_idx, W, P->rows, P->cols);
        return;
    }
    dim3 grid(ceil_div(P->rows, V1_THREADS), ceil_div(P->cols, V1_COLS));
    qgemm_v1_kernel<BITS><<<grid, V1_THREADS, 0, g_cuda.stream>>>(
        P->qweight, P->qzeros, (const __half *)P->scales, P->g_idx, x, bias, y, P->rows, P->cols,
        n);
}

static void launch_v1_bits(const gptq_packed *P, const float *x, const float *bias, float *y,
                           int n, float *W)
{
    switch (P->bits) {
    case 2: launch_v1<2>(P, x, bias, y, n, W); break;
    case 3: launch_v1<3>(P, x, bias, y, n, W); break;
    case 4: launch_v1<4>(P, x, bias, y, n, W); break;
    default: launch_v1<8>(P, x, bias, y, n, W); break;
    }
}

// The arrays of P are device memory (uploaded v1 tensors). The kernels
// cannot see their lengths; like gptq_cpu_qgemm this checks the shape rules
// (g_idx is in device memory and is trusted: validate it before upload).
gptq_status cuda_qgemm_v1(const gptq_packed *P, const float *x, const float *bias, float *y, int n)
{
    if (P->bits != 2 && P->bits != 3 && P->bits != 4 && P->bits != 8)
        return cuda_fail(GPTQ_ERR_ARG, "qgemm: bits %d: use 2, 3, 4 or 8", P->bits);
    if (P->rows < 1 || P->cols < 1 || P->groups < 1 || n < 0)
        return cuda_fail(GPTQ_ERR_ARG, "qgemm: shape rows=%d cols=%d groups=%d n=%d", P->rows,
                         P->cols, P->groups, n);
    if (((int64_t)P->cols * P->bits) % 32 || ((int64_t)P->rows * P->bits) % 32 ||
        P->cols % QCHUNK)
        return cuda_fail(GPTQ_ERR_FORMAT,
                         "qgemm: rows %d / cols %d break the v1 word rules (cols a multiple of 32, "
                         "rows*bits of 32)",
                         P->rows, P->cols);
    if (n == 0)
        return GPTQ_OK;
    if (n > V1_MAX_N) {
        float *W = nullptr;
        CUDA_CHECK(cudaMallocAsync((void **)&W, (size_t)P->rows * P->cols * sizeof *W,
                                   g_cuda.stream));
        launch_v1_bits(P, x, bias, y, n, W);
        gptq_status st = GPTQ_OK;
        if (cudaGetLastError() != cudaSuccess)
            st = cuda_fail(GPTQ_ERR_DEVICE, "qgemm: dequantize launch failed");
        else
            cuda_gemm_f32(x, W, bias, y, n, P->cols, P->rows);
        cudaFreeAsync(W, g_cuda.stream);
        return st;
    }
    if (P->cols > V1_COLS) {
        gptq_status st = prefill_bias(bias, y, n, P->rows);
        if (st != GPTQ_OK)
            return st;
    }
    launch_v1_bits(P, x, bias, y, n, nullptr);
    CUDA_CHECK_LAUNCH();
    return GPTQ_OK;
}
