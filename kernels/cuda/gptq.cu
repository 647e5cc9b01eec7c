// kernels/cuda/gptq.cu: GPTQ on the device, following quant/hessian.c,
// quant/quantizer.c and quant/gptq.c (same steps, same arithmetic, same
// results up to summation order; tests/test_gptq_cuda.c holds it to them).
//
//   Hessian: one float32 cuBLAS SYRK per batch, running mean in float64.
//   Layer:   dead inputs -> act-order permutation (sorted on the host: one
//            download of diag H) -> damping -> cuSOLVER potrf / potri /
//            potrf, float32 like the host's LAPACK -> per block of B
//            columns: fit the groups that start in the block, walk the
//            block's columns in one kernel (rows in parallel, the block's
//            Hinv in shared memory), one SGEMM for the lazy update.
//
// Arithmetic that the host does as separate float operations is written
// with __fmul_rn here so that nvcc cannot fuse it into an FMA the host
// (x86-64 baseline, no FMA) does not do: quantization and error feedback
// then round exactly as on the host, and codes differ only where the
// float32 Cholesky or the GEMM's summation order moves a weight across a
// rounding boundary.
#include <cusolverDn.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "quant/quantizer.h"

// Rows per CUDA block of the column walk: one warp, so that a 4096-row
// layer spreads over 128 blocks and most of the SMs.
#define WALK_ROWS 32

// cuSOLVER's potrf / potri take int sizes; above this cols² leaves int.
#define SOLVER_MAX_COLS 46340


// ---- CUDA kernels -------------------------------------------------------------

// The smallest index i of x[0..n) that is not finite, into *first (which
// starts at ~0).
__global__ void first_nonfinite_kernel(const float *__restrict__ x, size_t n,
                                       unsigned long long *first)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        if (!isfinite(x[i]))
            atomicMin(first, (unsigned long long)i);
}

// H <- H·keep + add·batch on the upper triangle (row-major) of the float64
// running mean. The products are rounded separately as on the host.
__global__ void hessian_update_kernel(double *__restrict__ H, const float *__restrict__ batch,
                                      int cols, double keep, double add)
{
    const size_t n = (size_t)cols * cols;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x) {
        const size_t i = k / cols, j = k % cols;
        if (j >= i)
            H[k] = __dadd_rn(__dmul_rn(H[k], keep), __dmul_rn(add, (double)batch[k]));
    }
}

// H_out [cols, cols] float32, full symmetric, from the upper triangle.
__global__ void hessian_get_kernel(const double *__restrict__ H, float *__restrict__ out, int cols)
{
    const size_t n = (size_t)cols * cols;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x) {
        const size_t i = k / cols, j = k % cols;
        out[k] = (float)(j >= i ? H[k] : H[j * cols + i]);
    }
}

// Dead inputs (H_cc == 0): H_cc = 1, dead[c] = 1. diag[c] = H_cc afterwards.
__global__ void dead_inputs_kernel(float *__restrict__ H, int cols, int *__restrict__ dead,
                                   float *__restrict__ diag)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x) {
        const size_t k = (size_t)c * cols + c;
        const int is_dead = H[k] == 0.0f;
        if (is_dead)
            H[k] = 1.0f;
        dead[c] = is_dead;
        diag[c] = H[k];
    }
}

// W_out [rows, cols] = W with the dead columns zeroed.
__global__ void zero_dead_kernel(const float *__restrict__ W, float *__restrict__ out, int rows,
                                 int cols, const int *__restrict__ dead)
{
    const size_t n = (size_t)rows * cols;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x)
        out[k] = dead[k % cols] ? 0.0f : W[k];
}

// out[r, c] = in[r, perm[c]] for [rows, cols]; with `square`, rows are
// permuted too (out[i, j] = in[perm[i], perm[j]], H).
__global__ void permute_kernel(const float *__restrict__ in, float *__restrict__ out, int rows,
                               int cols, const int *__restrict__ perm, int square)
{
    const size_t n = (size_t)rows * cols;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x) {
        const size_t r = k / cols, c = k % cols;
        const size_t src_row = square ? (size_t)perm[r] : r;
        out[k] = in[src_row * cols + perm[c]];
    }
}

// Row-major H: the lower triangle copied onto the upper one.
__global__ void mirror_lower_kernel(float *__restrict__ H, int cols)
{
    const size_t n = (size_t)cols * cols;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x) {
        const size_t i = k / cols, j = k % cols;
        if (j > i)
            H[k] = H[j * cols + i];
    }
}

__global__ void add_diag_kernel(float *__restrict__ H, int cols, float damp)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
        H[(size_t)c * cols + c] += damp;
}

// ---- the quantizer: quant/quantizer.h's rules, compiled for the device ------

// Sum |w - deq|^2.4 over w[0..n) in index order, as the host sums it.
__device__ double mse_error(const float *__restrict__ w, int n, float scale, int32_t zero, int maxq)
{
    double err = 0.0;
    for (int k = 0; k < n; k++) {
        float deq;
        gptq_quantize_value(w[k], scale, zero, maxq, &deq);
        err += pow(fabs((double)deq - (double)w[k]), 2.4);
    }
    return err;
}

// Parameters of row segments: one warp per (row, group), groups g_lo ..
// g_lo + n_groups - 1 of `gs` columns of W [rows, cols] (the last one may
// be short). scales/zeros are [groups, rows]; *raised counts v1 raises.
// Min/max are order-free; the MSE grid gives each lane whole candidates, so
// every candidate's error is summed in the host's order, and the first
// candidate with the least error wins as on the host.
__global__ void fit_groups_kernel(const float *__restrict__ W, int rows, int cols, int gs,
                                  int g_lo, int n_groups, gptq_quantizer q,
                                  float *__restrict__ scales, int32_t *__restrict__ zeros,
                                  int *__restrict__ raised)
{
    const int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (warp >= (int64_t)n_groups * rows)
        return; // whole warps: blockDim.x is a multiple of 32
    const int g = g_lo + (int)(warp / rows), r = (int)(warp % rows);
    const int64_t c0 = (int64_t)g * gs;
    const int n = (int)((int64_t)gs < cols - c0 ? (int64_t)gs : cols - c0);
    const float *w = W + (size_t)r * cols + c0;

    float xmin = 0.0f, xmax = 0.0f;
    for (int k = lane; k < n; k += 32) {
        const float v = w[k];
        xmin = v < xmin ? v : xmin;
        xmax = v > xmax ? v : xmax;
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float a = __shfl_xor_sync(0xffffffffu, xmin, o);
        const float b = __shfl_xor_sync(0xffffffffu, xmax, o);
        xmin = a < xmin ? a : xmin;
        xmax = b > xmax ? b : xmax;
    }
    gptq_quantizer_range(&q, &xmin, &xmax);
    float scale;
    int32_t zero;
    int was_raised = gptq_quantizer_params(&q, xmin, xmax, &scale, &zero);

    if (q.mse) {
        // The reference's grid: p = 1 - i/100, i < 80; least Σ|w - deq|^2.4.
        double best = DBL_MAX;
        int best_i = INT_MAX;
        for (int i = lane; i < 80; i += 32) {
            const float p = 1.0f - (float)i / 100.0f;
            float s1;
            int32_t z1;
            gptq_quantizer_params(&q, __fmul_rn(p, xmin), __fmul_rn(p, xmax), &s1, &z1);
            if (q.sym)
                z1 = zero;
            const double err = mse_error(w, n, s1, z1, q.maxq);
            if (err < best) {
                best = err;
                best_i = i;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            const double b = __shfl_xor_sync(0xffffffffu, best, o);
            const int bi = __shfl_xor_sync(0xffffffffu, best_i, o);
            if (b < best || (b == best && bi < best_i)) {
                best = b;
                best_i = bi;
            }
        }
        if (best_i != INT_MAX) {
            const float p = 1.0f - (float)best_i / 100.0f;
            float s1;
            int32_t z1;
            const int r1 = gptq_quantizer_params(&q, __fmul_rn(p, xmin), __fmul_rn(p, xmax), &s1, &z1);
            scale = s1;
            zero = q.sym ? zero : z1;
            was_raised = r1;
        }
    }
    if (lane == 0) {
        scales[(size_t)g * rows + r] = scale;
        zeros[(size_t)g * rows + r] = zero;
        if (was_raised)
            atomicAdd(raised, 1);
    }
}

// The column walk of one block [i1, i1 + count) (gptq.c's row loop): thread
// t owns row r0 + t. Each column: quantize with the row's group parameters,
// error e = (w - q) / Hinv_cc into Err [count, rows], loss, and
// w_j -= e · Hinv[c, j] for the block's later columns. W [rows, cols] is
// the permuted weight as of the last lazy update and is not written (a
// group that starts inside the block was fitted on it, the reference's
// quirk); the in-flight copy of the block lives in `ws`. Q and codes go to
// [rows, cols] in the original column order, through the staging tiles.
// SMEM: the block's Hinv [count, count], the weights [count, WALK_ROWS+1]
// (padded: conflict-free both ways) and the codes in shared memory; else
// Hinv is read from global memory (uniform loads, L1) and the tiles live in
// gw / gc [count, rows] (block sizes whose Hinv does not fit).
template <bool SMEM>
__global__ void __launch_bounds__(WALK_ROWS)
    gptq_walk_kernel(const float *__restrict__ W, const float *__restrict__ Hinv, int rows,
                     int cols, int i1, int count, const int *__restrict__ gidx_perm,
                     const int *__restrict__ perm, const float *__restrict__ scales,
                     const int32_t *__restrict__ zeros, int maxq, float *__restrict__ Err,
                     float *__restrict__ Q, uint8_t *__restrict__ codes,
                     double *__restrict__ row_loss, float *__restrict__ gw, uint8_t *__restrict__ gc)
{
    extern __shared__ float4 smem_raw[];
    const int t = threadIdx.x, r0 = blockIdx.x * WALK_ROWS, r = r0 + t;
    const bool active = r < rows;
    const float *hs;   // hs[i * ldh + j] = Hinv[i1 + i, i1 + j]
    float *wrow;       // wrow[j * ldw] = this row's in-flight w_{i1 + j}
    uint8_t *crow;     // crow[j * ldc] = this row's code of column i1 + j
    size_t ldh, ldw, ldc;
    if constexpr (SMEM) {
        float *hsm = (float *)smem_raw;
        float *wsm = hsm + (size_t)count * count;
        uint8_t *csm = (uint8_t *)(wsm + (size_t)count * (WALK_ROWS + 1));
        ldh = count;
        ldw = WALK_ROWS + 1;
        ldc = WALK_ROWS + 4;
        for (int k = t; k < count * count; k += WALK_ROWS) {
            const int i = k / count, j = k % count;
            hsm[k] = Hinv[(size_t)(i1 + i) * cols + i1 + j];
        }
        // consecutive threads read consecutive columns of one row: coalesced
        for (int k = t; k < count * WALK_ROWS; k += WALK_ROWS) {
            const int tt = k / count, j = k % count;
            wsm[j * ldw + tt] = r0 + tt < rows ? W[(size_t)(r0 + tt) * cols + i1 + j] : 0.0f;
        }
        __syncthreads();
        hs = hsm;
        wrow = wsm + t;
        crow = csm + t;
    } else {
        hs = Hinv + (size_t)i1 * cols + i1;
        ldh = cols;
        ldw = rows;
        ldc = rows;
        wrow = gw + (active ? r : 0);
        crow = gc + (active ? r : 0);
        if (active)
            for (int j = 0; j < count; j++)
                wrow[j * ldw] = W[(size_t)r * cols + i1 + j];
    }

    if (active) {
        float scale = 0.0f;
        int32_t zero = 0;
        int g_cur = -1;
        double loss = 0.0;
        for (int i = 0; i < count; i++) {
            const int g = gidx_perm[i1 + i];
            if (g != g_cur) {
                scale = scales[(size_t)g * rows + r];
                zero = zeros[(size_t)g * rows + r];
                g_cur = g;
            }
            const float w = wrow[i * ldw], d = hs[i * ldh + i];
            float q;
            const int code = gptq_quantize_value(w, scale, zero, maxq, &q);
            wrow[i * ldw] = q; // w_i is spent; the tile now stages Q
            crow[i * ldc] = (uint8_t)code;
            const float diff = w - q, e = diff / d;
            loss += (double)(diff * diff / (d * d)) / 2.0;
            Err[(size_t)i * rows + r] = e;
            const float *hrow = hs + i * ldh;
            for (int j = i + 1; j < count; j++)
                wrow[j * ldw] = wrow[j * ldw] - __fmul_rn(e, hrow[j]);
        }
        row_loss[r] += loss;
    }

    if constexpr (SMEM) {
        const float *wsm = (const float *)smem_raw + (size_t)count * count;
        const uint8_t *csm = (const uint8_t *)(wsm + (size_t)count * (WALK_ROWS + 1));
        __syncthreads();
        for (int k = t; k < count * WALK_ROWS; k += WALK_ROWS) {
            const int tt = k / count, j = k % count;
            if (r0 + tt < rows) {
                const size_t at = (size_t)(r0 + tt) * cols + perm[i1 + j];
                Q[at] = wsm[j * ldw + tt];
                codes[at] = csm[j * ldc + tt];
            }
        }
    } else if (active) {
        for (int j = 0; j < count; j++) {
            const size_t at = (size_t)r * cols + perm[i1 + j];
            Q[at] = wrow[j * ldw];
            codes[at] = crow[j * ldc];
        }
    }
}

// ---- Kernel launchers ---------------------------------------------------------

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static gptq_status check_solver(cusolverStatus_t s, const char *what, int line)
{
    if (s == CUSOLVER_STATUS_SUCCESS)
        return GPTQ_OK;
    return cuda_fail(GPTQ_ERR_DEVICE, "%s:%d: %s: cuSOLVER status %d", __FILE__, line, what, (int)s);
}

// Inside functions with one cleanup path: `st` and a `fail` label.
#define TRY(call)                                                                                 \
    do {                                                                                          \
        if ((st = (call)) != GPTQ_OK)                                                             \
            goto fail;                                                                            \
    } while (0)
#define TRY_CUDA(call) TRY(cuda_check((call), #call, __FILE__, __LINE__))
#define TRY_LAUNCH(what) TRY(cuda_check(cudaGetLastError(), what, __FILE__, __LINE__))

// The module's cuSOLVER handle, created on first use on g_cuda.stream.
static pthread_mutex_t g_solver_lock = PTHREAD_MUTEX_INITIALIZER;
static cusolverDnHandle_t g_solver;

static gptq_status solver_locked(void)
{
    if (g_solver)
        return GPTQ_OK;
    cusolverDnHandle_t h = nullptr;
    gptq_status st = check_solver(cusolverDnCreate(&h), "cusolverDnCreate", __LINE__);
    if (st == GPTQ_OK &&
        (st = check_solver(cusolverDnSetStream(h, g_cuda.stream), "cusolverDnSetStream",
                           __LINE__)) != GPTQ_OK)
        cusolverDnDestroy(h);
    if (st == GPTQ_OK)
        g_solver = h;
    return st;
}

// GPTQ_ERR_ARG naming the first non-finite entry of d_x [rows, cols], as
// gptq_check_finite does.
static gptq_status check_finite(const char *what, const float *d_x, int rows, int cols)
{
    gptq_status st = GPTQ_OK;
    const size_t n = (size_t)rows * cols;
    unsigned long long first = 0;
    float value = 0.0f;
    unsigned long long *d_first = (unsigned long long *)cuda_alloc(sizeof *d_first);
    if (!d_first)
        return cuda_fail(GPTQ_ERR_NOMEM, "GPTQ finiteness check: no device memory");
    TRY_CUDA(cudaMemsetAsync(d_first, 0xff, sizeof *d_first, g_cuda.stream));
    first_nonfinite_kernel<<<stride_blocks(n), 256, 0, g_cuda.stream>>>(d_x, n, d_first);
    TRY_LAUNCH("first_nonfinite_kernel");
    TRY(cuda_download(&first, d_first, sizeof first));
    if (first != ~0ull) {
        TRY(cuda_download(&value, d_x + first, sizeof value));
        st = cuda_fail(GPTQ_ERR_ARG, "%s holds %g at (%zu, %zu): inputs must be finite", what,
                       (double)value, (size_t)(first / cols), (size_t)(first % cols));
    }
fail:
    cuda_free(d_first);
    return st;
}

// ---- Hessian ------------------------------------------------------------------

struct gptq_backend_hessian {
    int cols;
    int64_t n_samples;
    double *H;    // [cols, cols], upper triangle (row-major) maintained
    float *batch; // [cols, cols] one SYRK's XᵀX
};

gptq_status cuda_hessian_create(int cols, gptq_backend_hessian **out)
{
    *out = nullptr;
    if (cols <= 0 || cols > 1 << 17)
        return cuda_fail(GPTQ_ERR_ARG, "Hessian of %d columns: use 1 to 131072", cols);
    gptq_backend_hessian *h = (gptq_backend_hessian *)calloc(1, sizeof *h);
    const size_t n = (size_t)cols * cols;
    gptq_status st = GPTQ_OK;
    if (!h)
        return cuda_fail(GPTQ_ERR_NOMEM, "Hessian [%d, %d]: out of host memory", cols, cols);
    h->cols = cols;
    h->H = (double *)cuda_alloc(n * sizeof *h->H);
    h->batch = (float *)cuda_alloc(n * sizeof *h->batch);
    if (!h->H || !h->batch) {
        st = cuda_fail(GPTQ_ERR_NOMEM, "Hessian [%d, %d]: %zu bytes of device memory not available",
                       cols, cols, n * (sizeof *h->H + sizeof *h->batch));
        goto fail;
    }
    TRY_CUDA(cudaMemsetAsync(h->H, 0, n * sizeof *h->H, g_cuda.stream));
    *out = h;
    return GPTQ_OK;
fail:
    cuda_hessian_free(h);
    return st;
}

void cuda_hessian_free(gptq_backend_hessian *h)
{
    if (!h)
        return;
    cuda_free(h->H);
    cuda_free(h->batch);
    free(h);
}

gptq_status cuda_hessian_add(gptq_backend_hessian *h, const float *d_X, int64_t tokens,
                             int n_samples)
{
    if (tokens <= 0 || n_samples <= 0 || tokens > INT32_MAX)
        return cuda_fail(GPTQ_ERR_ARG, "Hessian batch of %lld tokens, %d samples: both must be "
                         "positive", (long long)tokens, n_samples);
    const int cols = h->cols;
    // Row-major X [tokens, cols] is column-major A [cols, tokens]; A·Aᵀ = XᵀX.
    // The column-major lower triangle is the row-major upper one the
    // running mean keeps.
    const float one = 1.0f, zero = 0.0f;
    pthread_mutex_lock(&g_cuda.cublas_lock);
    cublasStatus_t cst = cublasSsyrk(g_cuda.cublas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, cols,
                                     (int)tokens, &one, d_X, cols, &zero, h->batch, cols);
    pthread_mutex_unlock(&g_cuda.cublas_lock);
    CUBLAS_CHECK(cst);
    const double n = (double)h->n_samples, b = (double)n_samples;
    const double keep = n / (n + b), add = 2.0 / (n + b);
    hessian_update_kernel<<<stride_blocks((size_t)cols * cols), 256, 0, g_cuda.stream>>>(
        h->H, h->batch, cols, keep, add);
    CUDA_CHECK_LAUNCH();
    h->n_samples += n_samples;
    return GPTQ_OK;
}

gptq_status cuda_hessian_get(const gptq_backend_hessian *h, float *d_H)
{
    hessian_get_kernel<<<stride_blocks((size_t)h->cols * h->cols), 256, 0, g_cuda.stream>>>(
        h->H, d_H, h->cols);
    CUDA_CHECK_LAUNCH();
    return GPTQ_OK;
}

int64_t cuda_hessian_samples(const gptq_backend_hessian *h)
{
    return h->n_samples;
}

// ---- one layer ------------------------------------------------------------------

// What one quantize_layer call holds; freed in one place (layer_free).
struct layer_job {
    int rows, cols, groups, gs, B;
    const gptq_quant_config *cfg;
    gptq_quantizer quantizer;
    float damp;                  // cfg->damp · mean(diag H), added to diag H
    int *perm, *gidx_perm;       // host [cols]: permuted position -> column, group
    // device
    float *W;                    // [rows, cols] working weight (dead zeroed, permuted)
    float *H;                    // [cols, cols] -> Hinv (upper factor of H^-1)
    int *d_dead, *d_perm, *d_gidx_perm;
    float *d_diag;
    float *scales;               // [groups, rows]
    int32_t *zeros;              // [groups, rows]
    int *raised;                 // one counter
    double *row_loss;            // [rows]
    float *Err;                  // [B, rows]
    float *Q;                    // [rows, cols] (the caller's d_Q or own)
    int own_Q;
    uint8_t *codes;              // [rows, cols]
    float *gw;                   // [B, rows] walk tiles without shared memory
    uint8_t *gc;
    float *solver_work;
    int *solver_info;            // [3]: potrf, potri, potrf
};

static void layer_free(layer_job *job)
{
    free(job->perm);
    free(job->gidx_perm);
    void *dev[] = {job->W, job->H, job->d_dead, job->d_perm, job->d_gidx_perm,
                   job->d_diag, job->scales, job->zeros, job->raised, job->row_loss, job->Err,
                   job->own_Q ? job->Q : nullptr, job->codes, job->gw, job->gc,
                   job->solver_work, job->solver_info};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        cuda_free(dev[i]);
}

// Device buffers every configuration needs.
static gptq_status layer_alloc(layer_job *job, float *d_Q)
{
    const size_t rows = job->rows, cols = job->cols, n_w = rows * cols, n_h = cols * cols;
    const size_t n_g = (size_t)job->groups * rows;
    job->perm = (int *)malloc(cols * sizeof(int));
    job->gidx_perm = (int *)malloc(cols * sizeof(int));
    if (!job->perm || !job->gidx_perm)
        return cuda_fail(GPTQ_ERR_NOMEM, "GPTQ on [%zu, %zu]: out of host memory", rows, cols);
    job->W = (float *)cuda_alloc(n_w * sizeof(float));
    job->H = (float *)cuda_alloc(n_h * sizeof(float));
    job->d_dead = (int *)cuda_alloc(cols * sizeof(int));
    job->d_perm = (int *)cuda_alloc(cols * sizeof(int));
    job->d_gidx_perm = (int *)cuda_alloc(cols * sizeof(int));
    job->d_diag = (float *)cuda_alloc(cols * sizeof(float));
    job->scales = (float *)cuda_alloc(n_g * sizeof(float));
    job->zeros = (int32_t *)cuda_alloc(n_g * sizeof(int32_t));
    job->raised = (int *)cuda_alloc(sizeof(int));
    job->row_loss = (double *)cuda_alloc(rows * sizeof(double));
    job->Err = (float *)cuda_alloc((size_t)job->B * rows * sizeof(float));
    job->own_Q = d_Q == nullptr;
    job->Q = d_Q ? d_Q : (float *)cuda_alloc(n_w * sizeof(float));
    job->codes = (uint8_t *)cuda_alloc(n_w);
    job->solver_info = (int *)cuda_alloc(3 * sizeof(int));
    if (!job->W || !job->H || !job->d_dead ||
        !job->d_perm || !job->d_gidx_perm || !job->d_diag || !job->scales || !job->zeros ||
        !job->raised || !job->row_loss || !job->Err || !job->Q || !job->codes ||
        !job->solver_info) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return cuda_fail(GPTQ_ERR_NOMEM,
                         "GPTQ on [%zu, %zu]: out of device memory (%zu of %zu bytes free)", rows,
                         cols, free_b, total_b);
    }
    gptq_status st;
    TRY_CUDA(cudaMemsetAsync(job->raised, 0, sizeof(int), g_cuda.stream));
    TRY_CUDA(cudaMemsetAsync(job->row_loss, 0, rows * sizeof(double), g_cuda.stream));
    return GPTQ_OK;
fail:
    return st;
}

static gptq_status fit_groups(layer_job *job, const float *W, int gs, int g_lo, int n_groups)
{
    const size_t warps = (size_t)n_groups * job->rows;
    fit_groups_kernel<<<ceil_div(warps, 8), 256, 0, g_cuda.stream>>>(
        W, job->rows, job->cols, gs, g_lo, n_groups, job->quantizer, job->scales, job->zeros,
        job->raised);
    return cuda_check(cudaGetLastError(), "fit_groups_kernel", __FILE__, __LINE__);
}

// *buf [rows, cols] <- its columns (and, with `square`, rows) in the order
// perm, through a new buffer.
static gptq_status permute_into_new(float **buf, int rows, int cols, const int *d_perm, int square)
{
    const size_t n = (size_t)rows * cols;
    float *permuted = (float *)cuda_alloc(n * sizeof(float));
    if (!permuted)
        return cuda_fail(GPTQ_ERR_NOMEM, "GPTQ act-order: no device memory for [%d, %d]", rows,
                         cols);
    permute_kernel<<<stride_blocks(n), 256, 0, g_cuda.stream>>>(*buf, permuted, rows, cols,
                                                                d_perm, square);
    gptq_status st = cuda_check(cudaGetLastError(), "permute_kernel", __FILE__, __LINE__);
    if (st != GPTQ_OK) {
        cuda_free(permuted);
        return st;
    }
    cuda_free(*buf); // cudaFree waits for the kernel
    *buf = permuted;
    return GPTQ_OK;
}

// Per-channel parameters (from the input W), dead inputs, static groups,
// the act-order permutation, g_idx, the damping term: everything before
// the Cholesky. Host side: one download of diag H to sort it.
static gptq_status layer_prepare(layer_job *job, const float *d_W, const float *d_H,
                                 gptq_quant_result *out)
{
    gptq_status st;
    const int rows = job->rows, cols = job->cols, gs = job->gs;
    const size_t n_w = (size_t)rows * cols, n_h = (size_t)cols * cols;
    const gptq_quant_config *cfg = job->cfg;
    double mean_diag = 0.0;
    float *diag = (float *)malloc((size_t)cols * sizeof *diag);
    if (!diag)
        return cuda_fail(GPTQ_ERR_NOMEM, "GPTQ on [%d, %d]: out of host memory", rows, cols);

    // Per channel: fitted, as the reference does, before dead columns are zeroed.
    if (cfg->group_size == -1)
        TRY(fit_groups(job, d_W, cols, 0, 1));

    TRY_CUDA(cudaMemcpyAsync(job->H, d_H, n_h * sizeof(float), cudaMemcpyDeviceToDevice,
                             g_cuda.stream));
    dead_inputs_kernel<<<ceil_div(cols, 256), 256, 0, g_cuda.stream>>>(job->H, cols, job->d_dead,
                                                                       job->d_diag);
    TRY_LAUNCH("dead_inputs_kernel");
    zero_dead_kernel<<<stride_blocks(n_w), 256, 0, g_cuda.stream>>>(d_W, job->W, rows, cols,
                                                                     job->d_dead);
    TRY_LAUNCH("zero_dead_kernel");
    if (cfg->static_groups) // parameters of the original, un-updated groups
        TRY(fit_groups(job, job->W, gs, 0, job->groups));

    TRY(cuda_download(diag, job->d_diag, (size_t)cols * sizeof *diag));
    for (int c = 0; c < cols; c++)
        job->perm[c] = c;
    if (cfg->act_order) // descending diag(H), ties in index order (gptq.c)
        std::sort(job->perm, job->perm + cols, [diag](int i, int j) {
            return diag[i] != diag[j] ? diag[i] > diag[j] : i < j;
        });
    for (int c = 0; c < cols; c++) // summed in the permuted order, as the host does
        mean_diag += diag[job->perm[c]];
    mean_diag /= cols;
    job->damp = (float)(cfg->damp * mean_diag);
    for (int c = 0; c < cols; c++) {
        const int g = cfg->static_groups ? job->perm[c] / gs : c / gs;
        out->g_idx[job->perm[c]] = g;
        job->gidx_perm[c] = g;
    }
    TRY(cuda_upload(job->d_perm, job->perm, (size_t)cols * sizeof(int)));
    TRY(cuda_upload(job->d_gidx_perm, job->gidx_perm, (size_t)cols * sizeof(int)));

    if (cfg->act_order) {
        TRY(permute_into_new(&job->W, rows, cols, job->d_perm, 0));
        TRY(permute_into_new(&job->H, cols, cols, job->d_perm, 1));
    }
    st = cuda_sync(); // the Cholesky's timing starts here, as on the host
fail:
    free(diag);
    return st;
}

// H (damped below) -> its upper Cholesky factor of H^-1 in place, float32
// as the host's LAPACK, reading the same triangles as gptq.c. Row-major
// lower is column-major upper: potrf and potri 'U' there (the host's
// row-major 'L'), mirror the inverse onto the row-major upper triangle,
// potrf 'L' column-major, which read row-major is the upper factor U with
// H^-1 = Uᵀ U that the host gets from LAPACKE row-major 'U'.
static gptq_status layer_cholesky(layer_job *job)
{
    gptq_status st;
    const int cols = job->cols;
    const cublasFillMode_t upper = CUBLAS_FILL_MODE_UPPER, lower = CUBLAS_FILL_MODE_LOWER;
    int lwork_upper = 0, lwork_lower = 0, lwork_potri = 0, info[3] = {0, 0, 0};
    add_diag_kernel<<<ceil_div(cols, 256), 256, 0, g_cuda.stream>>>(job->H, cols, job->damp);
    if ((st = cuda_check(cudaGetLastError(), "add_diag_kernel", __FILE__, __LINE__)) != GPTQ_OK)
        return st;
    pthread_mutex_lock(&g_solver_lock);
    TRY(solver_locked());
    TRY(check_solver(cusolverDnSpotrf_bufferSize(g_solver, upper, cols, job->H, cols,
                                                 &lwork_upper),
                     "cusolverDnSpotrf_bufferSize", __LINE__));
    TRY(check_solver(cusolverDnSpotrf_bufferSize(g_solver, lower, cols, job->H, cols,
                                                 &lwork_lower),
                     "cusolverDnSpotrf_bufferSize", __LINE__));
    TRY(check_solver(cusolverDnSpotri_bufferSize(g_solver, upper, cols, job->H, cols,
                                                 &lwork_potri),
                     "cusolverDnSpotri_bufferSize", __LINE__));
    {
        const int lwork = std::max(std::max(lwork_upper, lwork_lower), std::max(lwork_potri, 1));
        job->solver_work = (float *)cuda_alloc((size_t)lwork * sizeof(float));
        if (!job->solver_work) {
            st = cuda_fail(GPTQ_ERR_NOMEM, "GPTQ Cholesky of [%d, %d]: %zu bytes of device "
                           "workspace not available", cols, cols, (size_t)lwork * sizeof(float));
            goto fail;
        }
        TRY(check_solver(cusolverDnSpotrf(g_solver, upper, cols, job->H, cols, job->solver_work,
                                          lwork, job->solver_info),
                         "cusolverDnSpotrf", __LINE__));
        TRY(check_solver(cusolverDnSpotri(g_solver, upper, cols, job->H, cols, job->solver_work,
                                          lwork, job->solver_info + 1),
                         "cusolverDnSpotri", __LINE__));
        mirror_lower_kernel<<<stride_blocks((size_t)cols * cols), 256, 0, g_cuda.stream>>>(job->H,
                                                                                       cols);
        TRY_LAUNCH("mirror_lower_kernel");
        TRY(check_solver(cusolverDnSpotrf(g_solver, lower, cols, job->H, cols, job->solver_work,
                                          lwork, job->solver_info + 2),
                         "cusolverDnSpotrf", __LINE__));
    }
    pthread_mutex_unlock(&g_solver_lock);
    if ((st = cuda_download(info, job->solver_info, sizeof info)) != GPTQ_OK)
        return st;
    for (int k = 0; k < 3; k++) {
        // a step after a failed one works on garbage; the first failure counts
        if (info[k] > 0)
            return cuda_fail(GPTQ_ERR_NUMERIC,
                             "Cholesky of the damped Hessian failed at column %d (not positive "
                             "definite): raise damp (now %g), e.g. to %g",
                             info[k], (double)job->cfg->damp,
                             (double)(job->cfg->damp > 0 ? job->cfg->damp * 10 : 0.01f));
        if (info[k] < 0)
            return cuda_fail(GPTQ_ERR_INTERNAL, "cuSOLVER argument %d rejected", -info[k]);
    }
    return GPTQ_OK;
fail:
    pthread_mutex_unlock(&g_solver_lock);
    return st;
}

static size_t walk_smem_bytes(int count)
{
    return (size_t)count * count * sizeof(float) + (size_t)count * (WALK_ROWS + 1) * sizeof(float) +
           (size_t)count * (WALK_ROWS + 4);
}

// The blocks of B columns: fit the groups that start in the block (on W as
// of the last lazy update: the host fits them when the walk reaches them,
// from the same, not yet updated, W), walk, lazy update. No host round
// trips: everything is queued.
static gptq_status layer_blocks(layer_job *job)
{
    gptq_status st;
    const int rows = job->rows, cols = job->cols, B = job->B, gs = job->gs;
    const int grouped = job->cfg->group_size != -1 && !job->cfg->static_groups;
    const size_t smem = walk_smem_bytes(B);
    const bool in_smem = smem <= g_cuda.prop.sharedMemPerBlockOptin;
    const unsigned grid = ceil_div((size_t)rows, WALK_ROWS);
    const float minus_one = -1.0f, one = 1.0f;
    if (in_smem) {
        TRY_CUDA(cudaFuncSetAttribute(gptq_walk_kernel<true>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    } else {
        job->gw = (float *)cuda_alloc((size_t)B * rows * sizeof(float));
        job->gc = (uint8_t *)cuda_alloc((size_t)B * rows);
        if (!job->gw || !job->gc) {
            st = cuda_fail(GPTQ_ERR_NOMEM, "GPTQ block tiles [%d, %d]: out of device memory", B,
                           rows);
            goto fail;
        }
    }
    for (int i1 = 0; i1 < cols; i1 += B) {
        const int i2 = i1 + B < cols ? i1 + B : cols, count = i2 - i1;
        if (grouped) {
            const int g_lo = (i1 + gs - 1) / gs, g_hi = (int)(((int64_t)i2 + gs - 1) / gs);
            if (g_hi > g_lo)
                TRY(fit_groups(job, job->W, gs, g_lo, g_hi - g_lo));
        }
        if (in_smem)
            gptq_walk_kernel<true><<<grid, WALK_ROWS, walk_smem_bytes(count), g_cuda.stream>>>(
                job->W, job->H, rows, cols, i1, count, job->d_gidx_perm, job->d_perm, job->scales,
                job->zeros, job->quantizer.maxq, job->Err, job->Q, job->codes, job->row_loss,
                nullptr, nullptr);
        else
            gptq_walk_kernel<false><<<grid, WALK_ROWS, 0, g_cuda.stream>>>(
                job->W, job->H, rows, cols, i1, count, job->d_gidx_perm, job->d_perm, job->scales,
                job->zeros, job->quantizer.maxq, job->Err, job->Q, job->codes, job->row_loss,
                job->gw, job->gc);
        TRY_LAUNCH("gptq_walk_kernel");
        if (i2 < cols) {
            // Row-major W[:, i2:] -= Err [rows, count] · Hinv[i1:i2, i2:] is,
            // column-major, Wᵀ[i2:, :] -= Hinv[i1:i2, i2:]ᵀ · Err_cmᵀ with
            // Hinv[i1:i2, i2:]ᵀ at Hinv + i1·cols + i2 (ld cols), Err stored
            // [count, rows] = column-major [rows, count] (ld rows), transposed.
            pthread_mutex_lock(&g_cuda.cublas_lock);
            cublasStatus_t cst = cublasGemmEx(
                g_cuda.cublas, CUBLAS_OP_N, CUBLAS_OP_T, cols - i2, rows, count, &minus_one,
                job->H + (size_t)i1 * cols + i2, CUDA_R_32F, cols, job->Err, CUDA_R_32F, rows, &one,
                job->W + i2, CUDA_R_32F, cols, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            pthread_mutex_unlock(&g_cuda.cublas_lock);
            if (cst != CUBLAS_STATUS_SUCCESS) {
                st = cuda_fail(GPTQ_ERR_DEVICE, "%s:%d: lazy update cublasGemmEx: %s", __FILE__,
                               __LINE__, cublasGetStatusString(cst));
                goto fail;
            }
        }
    }
    return cuda_sync();
fail:
    return st;
}

// Copy the device results into *out (host arrays allocated as
// quant/result.c does) and finish the sums in the host's row order.
static gptq_status layer_collect(layer_job *job, gptq_quant_result *out)
{
    gptq_status st;
    const size_t rows = job->rows, cols = job->cols, n_w = rows * cols;
    const size_t n_g = (size_t)job->groups * rows;
    double *row_loss = (double *)malloc(rows * sizeof *row_loss);
    int raised = 0;
    if (!row_loss)
        return cuda_fail(GPTQ_ERR_NOMEM, "GPTQ on [%zu, %zu]: out of host memory", rows, cols);
    TRY(cuda_download(out->codes, job->codes, n_w));
    TRY(cuda_download(out->Q, job->Q, n_w * sizeof(float)));
    TRY(cuda_download(out->scales, job->scales, n_g * sizeof(float)));
    TRY(cuda_download(out->zeros, job->zeros, n_g * sizeof(int32_t)));
    TRY(cuda_download(row_loss, job->row_loss, rows * sizeof *row_loss));
    TRY(cuda_download(&raised, job->raised, sizeof raised));
    out->loss = 0.0;
    for (size_t r = 0; r < rows; r++)
        out->loss += row_loss[r];
    out->zeros_raised = raised;
    for (size_t i = 0; i < n_w; i++)
        if (!isfinite(out->Q[i])) {
            st = cuda_fail(GPTQ_ERR_NUMERIC, "GPTQ produced non-finite weights; raise damp (now "
                           "%g): quantized W holds %g at (%zu, %zu)", (double)job->cfg->damp,
                           (double)out->Q[i], i / cols, i % cols);
            goto fail;
        }
    st = GPTQ_OK;
fail:
    free(row_loss);
    return st;
}

gptq_status cuda_gptq_quantize_layer(const float *d_W, const float *d_H, int rows, int cols,
                                     const gptq_quant_config *cfg, gptq_quant_result *out,
                                     float *d_Q)
{
    const double t_start = now_seconds();
    gptq_status st = g_host->quant_config_check(cfg, cols);
    if (st)
        return st;
    if (rows <= 0)
        return cuda_fail(GPTQ_ERR_ARG, "layer has %d output rows", rows);
    if (cols > SOLVER_MAX_COLS)
        return cuda_fail(GPTQ_ERR_UNSUPPORTED, "GPTQ on the device: %d input columns, cuSOLVER's "
                         "32-bit potrf/potri take at most %d; quantize this layer on the CPU",
                         cols, SOLVER_MAX_COLS);

    layer_job job;
    memset(&job, 0, sizeof job);
    job.rows = rows;
    job.cols = cols;
    job.cfg = cfg;
    job.B = cfg->block_size;
    job.groups = cfg->group_size == -1 ? 1 : (cols + cfg->group_size - 1) / cfg->group_size;
    job.gs = cfg->group_size == -1 ? cols : cfg->group_size;
    job.quantizer = {cfg->bits, (1 << cfg->bits) - 1, cfg->sym, cfg->mse, cfg->v1_zeros,
                    cfg->fp16_scales, cfg->grid};
    double t_chol, t_blocks;
    if ((st = check_finite("W", d_W, rows, cols)) || (st = check_finite("H", d_H, cols, cols)))
        return st; // like the host: *out untouched on bad input

    TRY(g_host->quant_result_alloc(out, rows, cols, job.groups, cfg->bits));
    TRY(layer_alloc(&job, d_Q));
    TRY(layer_prepare(&job, d_W, d_H, out));
    t_chol = now_seconds();
    TRY(layer_cholesky(&job));
    out->seconds_cholesky = now_seconds() - t_chol;
    t_blocks = now_seconds();
    TRY(layer_blocks(&job));
    out->seconds_blocks = now_seconds() - t_blocks;
    TRY(layer_collect(&job, out));
    layer_free(&job);
    out->seconds_total = now_seconds() - t_start;
    return GPTQ_OK;
fail:
    // nothing queued may still write into what is freed; the error of the
    // failed step stays the message (cuda_sync would replace it)
    cudaStreamSynchronize(g_cuda.stream);
    layer_free(&job);
    g_host->quant_result_free(out);
    return st;
}
