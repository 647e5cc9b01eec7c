// kernels/cuda/qgemm.cu: the table's qgemm on a packed linear in the
// kernels' layout (gptq_linear, kernels/backend.h): v1 words with the input
// columns sorted by group and the permutation kept.
//
//   batch 1..64, every group whole 32-column chunks (every GPTQ checkpoint):
//     the fused dequantize-dot kernel on the packed words (memory-bound at
//     batch 1); x is gathered through perm while it is staged in shared
//     memory (as ExLlama does), so act-order costs one indexed load per
//     activation and nothing per weight;
//   otherwise: dequantize to float32 in the checkpoint's column order, then
//     cuBLAS SGEMM.
//
// The words: qweight [cols*bits/32, rows], chunk c (32 sorted columns) of
// output row r is the `bits` words qweight[(c*bits + i)*rows + r]: one
// little-endian bit stream of 32 codes. Rows are the fast dimension, so a
// thread that owns four consecutive rows reads each word row with one
// 128-bit load and a warp reads 512 contiguous bytes. rows is a multiple of
// 4 (the v1 word rules imply it). Scale and zero are fixed per chunk and
// fold out of the inner loop: Σ_k s·(q_k − z)·x_k = s·(Σ_k q_k·x_k − z·Σ_k x_k).
#include "kernels/cuda/cuda_common.cuh"

#define QCHUNK 32 // input columns per chunk

// Largest batch the packed kernel takes. Above it every row of the batch
// re-reads the weights from L2 once per 8 batch rows and the CUDA cores
// become the limit; dequantize + SGEMM wins. Tune with bench/kernels.
#define GPTQ_CUDA_PACKED_MAX_N 64

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

// The BITS words of chunk `chunk` of output row r ([chunks * BITS, rows],
// rows fastest).
template <int BITS>
__device__ __forceinline__ void chunk_words(const uint32_t *__restrict__ qweight, int rows,
                                            int chunk, int r, uint32_t (&w)[BITS])
{
#pragma unroll
    for (int i = 0; i < BITS; i++)
        w[i] = qweight[(size_t)(chunk * BITS + i) * rows + r];
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

// y [n, rows] (+)= x [n, cols] · dequant(L)ᵀ for one block: rows
// [blockIdx.x*128, +128), chunks of slice blockIdx.y, batch rows of tile
// blockIdx.z. Each thread owns four consecutive rows; warp w of the block
// takes chunks w, w+8, ... of the slice; the warps' partial sums meet in
// shared memory and leave by one store (single slice: y = sum + bias) or one
// atomicAdd (y pre-filled with bias or 0 by the launcher).
template <int BITS, int BT, typename XT>
__global__ void __launch_bounds__(PK_THREADS)
    qgemm_packed_kernel(const uint32_t *__restrict__ qweight, const __half *__restrict__ scales,
                        const int32_t *__restrict__ qzeros, const int32_t *__restrict__ g_idx,
                        const int32_t *__restrict__ perm,
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
        const int col = c0 * QCHUNK + j;
        xs[b * ncols + j] =
            b0 + b < n ? to_float(x[(size_t)(b0 + b) * cols + (perm ? perm[col] : col)]) : 0.0f;
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
            const int g = __ldg(g_idx + chunk * QCHUNK); // groups are whole chunks
            if (g != group) { // groups span many chunks: reload rarely
                group = g;
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    scale[i] = __half2float(scales[(size_t)g * rows + r0 + i]);
                    zero[i] = v1_zero<BITS>(qzeros, rows, g, r0 + i);
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

// W [rows, cols] float32 in the checkpoint's column order: sorted column j
// lands in column perm[j]. One thread per (row, chunk), threads along rows
// so the word reads coalesce; the group is looked up per column (any g_idx).
template <int BITS>
__global__ void dequant_kernel(const int32_t *__restrict__ qweight,
                               const int32_t *__restrict__ qzeros,
                               const __half *__restrict__ scales,
                               const int32_t *__restrict__ g_idx,
                               const int32_t *__restrict__ perm, float *__restrict__ W,
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
        W[(size_t)r * cols + (perm ? perm[c] : c)] =
            __half2float(scales[(size_t)g * rows + r]) *
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

template <int BITS, int BT>
static gptq_status launch_packed_bt(const gptq_linear *L, const float *x, const float *bias,
                                    float *y, int n)
{
    const gptq_packed *P = &L->P;
    const int chunks = P->cols / QCHUNK;
    const unsigned row_blocks = ceil_div(P->rows, PK_ROWS), tiles = ceil_div(n, BT);
    // Enough blocks for ~4 per SM, but each warp keeps >= 2 chunks so the
    // staging of x and the reduction stay small next to the weight reads.
    const unsigned want = (unsigned)g_cuda.prop.multiProcessorCount * 4;
    unsigned slices = ceil_div(want, (size_t)row_blocks * tiles);
    const unsigned most = ceil_div(chunks, 2 * PK_WARPS), least = ceil_div(chunks, PK_SLICE_MAX);
    slices = slices > most ? most : slices;
    slices = slices < least ? least : slices;
    const int slice_chunks = (int)ceil_div(chunks, slices);
    slices = ceil_div(chunks, slice_chunks);
    if (slices > 1) {
        gptq_status st = prefill_bias(bias, y, n, P->rows);
        if (st != GPTQ_OK)
            return st;
    }
    const size_t stage = (size_t)BT * slice_chunks * (QCHUNK + 1) * sizeof(float);
    const size_t reduce = (size_t)PK_WARPS * 4 * BT * 32 * sizeof(float);
    const size_t shmem = stage > reduce ? stage : reduce;
    dim3 grid(row_blocks, slices, tiles);
    qgemm_packed_kernel<BITS, BT, float><<<grid, PK_THREADS, shmem, g_cuda.stream>>>(
        reinterpret_cast<const uint32_t *>(P->qweight), reinterpret_cast<const __half *>(P->scales),
        P->qzeros, P->g_idx, L->perm, x, bias, y, P->rows, P->cols, n, slice_chunks);
    CUDA_CHECK_LAUNCH();
    return GPTQ_OK;
}

// Batch tile: the smallest power of two >= n, at most 8, so that batch 1
// carries no idle accumulators.
template <int BITS>
static gptq_status launch_packed(const gptq_linear *L, const float *x, const float *bias,
                                 float *y, int n)
{
    if (n == 1)
        return launch_packed_bt<BITS, 1>(L, x, bias, y, n);
    if (n == 2)
        return launch_packed_bt<BITS, 2>(L, x, bias, y, n);
    if (n <= 4)
        return launch_packed_bt<BITS, 4>(L, x, bias, y, n);
    return launch_packed_bt<BITS, PK_BATCH_TILE>(L, x, bias, y, n);
}

static gptq_status packed_by_bits(const gptq_linear *L, const float *x, const float *bias,
                                  float *y, int n)
{
    switch (L->P.bits) {
    case 2: return launch_packed<2>(L, x, bias, y, n);
    case 3: return launch_packed<3>(L, x, bias, y, n);
    case 4: return launch_packed<4>(L, x, bias, y, n);
    default: return launch_packed<8>(L, x, bias, y, n);
    }
}

template <int BITS> static void launch_dequant_bits(const gptq_linear *L, float *W)
{
    const gptq_packed *P = &L->P;
    dim3 grid(ceil_div(P->rows, 128), P->cols / QCHUNK);
    dequant_kernel<BITS><<<grid, 128, 0, g_cuda.stream>>>(
        P->qweight, P->qzeros, reinterpret_cast<const __half *>(P->scales), P->g_idx, L->perm, W,
        P->rows, P->cols);
}

// Large batches (or groups that split chunks): W to float32 in the
// checkpoint's column order, then SGEMM. The scratch comes from the
// stream-ordered pool and is released in order.
static gptq_status dequant_path(const gptq_linear *L, const float *x, const float *bias, float *y,
                                int n)
{
    const gptq_packed *P = &L->P;
    float *W = nullptr;
    CUDA_CHECK(cudaMallocAsync((void **)&W, (size_t)P->rows * P->cols * sizeof *W, g_cuda.stream));
    switch (P->bits) {
    case 2: launch_dequant_bits<2>(L, W); break;
    case 3: launch_dequant_bits<3>(L, W); break;
    case 4: launch_dequant_bits<4>(L, W); break;
    default: launch_dequant_bits<8>(L, W); break;
    }
    gptq_status st = GPTQ_OK;
    if (cudaGetLastError() != cudaSuccess)
        st = cuda_fail(GPTQ_ERR_DEVICE, "qgemm: dequantize launch failed");
    else
        cuda_gemm_f32(x, W, bias, y, n, P->cols, P->rows);
    cudaFreeAsync(W, g_cuda.stream);
    return st;
}

gptq_status cuda_qgemm_check(int rows, int cols, int bits)
{
    (void)rows, (void)bits;
    if (cols % QCHUNK)
        return cuda_fail(GPTQ_ERR_UNSUPPORTED, "%s: a packed linear with %d inputs: the CUDA "
                         "kernels read whole chunks of %d inputs; run this model on the CPU",
                         g_cuda.name, cols, QCHUNK);
    return GPTQ_OK;
}

// The arrays of L are device memory. The kernels cannot see their lengths;
// like gptq_cpu_qgemm this checks the shape rules (g_idx and perm are in
// device memory and trusted: the model checks them before upload).
gptq_status cuda_qgemm(const gptq_linear *L, const float *x, const float *bias, float *y, int n)
{
    const gptq_packed *P = &L->P;
    if (P->bits != 2 && P->bits != 3 && P->bits != 4 && P->bits != 8)
        return cuda_fail(GPTQ_ERR_ARG, "qgemm: bits %d: use 2, 3, 4 or 8", P->bits);
    if (P->rows < 1 || P->cols < 1 || P->groups < 1 || n < 0)
        return cuda_fail(GPTQ_ERR_ARG, "qgemm: shape rows=%d cols=%d groups=%d n=%d", P->rows,
                         P->cols, P->groups, n);
    if (((int64_t)P->cols * P->bits) % 32 || ((int64_t)P->rows * P->bits) % 32)
        return cuda_fail(GPTQ_ERR_FORMAT,
                         "qgemm: rows %d / cols %d break the v1 word rules (rows*bits and "
                         "cols*bits multiples of 32)", P->rows, P->cols);
    gptq_status st = cuda_qgemm_check(P->rows, P->cols, P->bits);
    if (st != GPTQ_OK || n == 0)
        return st;
    // The packed kernel reads four rows of words with one 128-bit load:
    // everything this project allocates is 256-byte aligned, a caller's
    // borrowed table need only be 4-byte aligned.
    if (L->chunked && n <= GPTQ_CUDA_PACKED_MAX_N && (uintptr_t)P->qweight % 16 == 0)
        return packed_by_bits(L, x, bias, y, n);
    return dequant_path(L, x, bias, y, n);
}
