// kernels/cuda/cuda_common.cuh: what every kernels/cuda/*.cu shares: the
// module's device state, the check macros that turn CUDA / cuBLAS return
// codes into gptq_status, and warp / block reductions.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"
#include "kernels/backend.h"
#include "kernels/backend_module.h"

// Symbols the dlopen()ing program looks up; everything else stays hidden.
#define GPTQ_CUDA_EXPORT extern "C" __attribute__((visibility("default")))

// The one device this module drives (one per process: the table and the
// functions below have no context of their own).
struct cuda_state {
    int device;
    char name[16];            // "cuda:N"
    cudaStream_t stream;
    cublasHandle_t cublas;
    pthread_mutex_t cublas_lock; // a cuBLAS handle is not for concurrent calls
    cudaDeviceProp prop;
};
extern cuda_state g_cuda;
// What the program lent at init (kernels/backend_module.h).
extern const gptq_backend_host *g_host;

// Failure reporting through the program's gptq_fail (g_host->fail), and
// kept for the next sync when an asynchronous entry fails.
gptq_status cuda_fail(gptq_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Record the first failure of a void (asynchronous) entry for the next sync:
// a CUDA error code, or (note_failure) the message of the calling thread's
// last cuda_fail.
void cuda_note_error(const char *what, cudaError_t err);
void cuda_note_failure(const char *what);

// GPTQ_OK, or GPTQ_ERR_DEVICE naming the call, where it is and the CUDA
// error (cleared first: a non-sticky error must not reappear at the next
// launch).
gptq_status cuda_check(cudaError_t err, const char *what, const char *file, int line);

#define CUDA_CHECK(call)                                                                          \
    do {                                                                                          \
        gptq_status st_ = cuda_check((call), #call, __FILE__, __LINE__);                          \
        if (st_ != GPTQ_OK)                                                                       \
            return st_;                                                                           \
    } while (0)

#define CUBLAS_CHECK(call)                                                                        \
    do {                                                                                          \
        cublasStatus_t st_ = (call);                                                              \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                         \
            return cuda_fail(GPTQ_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,          \
                             cublasGetStatusString(st_));                                         \
    } while (0)

// After a launch from a void entry: keep the error for the next sync.
#define CUDA_NOTE_LAUNCH(what) cuda_note_error((what), cudaGetLastError())
// After a launch from an entry that returns gptq_status.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

static inline unsigned ceil_div(size_t a, size_t b)
{
    return (unsigned)((a + b - 1) / b);
}

// ---- reductions ----------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

struct op_sum {
    static __device__ __forceinline__ float identity() { return 0.0f; }
    static __device__ __forceinline__ float warp(float v) { return warp_sum(v); }
};
struct op_max {
    static __device__ __forceinline__ float identity() { return -INFINITY; }
    static __device__ __forceinline__ float warp(float v) { return warp_max(v); }
};

// Sum / max over a block of blockDim.x threads (a multiple of 32, at most
// 1024); every thread gets the result. `scratch` holds 32 floats; the
// function syncs before reusing it so back-to-back calls are safe.
template <typename Op> __device__ __forceinline__ float block_reduce(float v, float *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = Op::warp(v);
    __syncthreads();
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : Op::identity();
    return Op::warp(v);
}

__device__ __forceinline__ float block_sum(float v, float *scratch)
{
    return block_reduce<op_sum>(v, scratch);
}

__device__ __forceinline__ float block_max(float v, float *scratch)
{
    return block_reduce<op_max>(v, scratch);
}

// Blocks of 256 for a grid-stride loop over n elements: enough to fill the
// device, not one per element.
static inline unsigned stride_blocks(size_t n)
{
    unsigned want = ceil_div(n, 256), cap = (unsigned)g_cuda.prop.multiProcessorCount * 8;
    return want < cap ? (want ? want : 1) : cap;
}

// ---- launchers other files call --------------------------------------------
// (the backend table is filled in backend_cuda.cu)

// memory.cu
void *cuda_alloc(size_t bytes);
void cuda_free(void *ptr);      // cuda_alloc's memory (the stream-ordered pool)
void cuda_free_sync(void *ptr); // a plain cudaMalloc allocation (cudaFree)
gptq_status cuda_upload(void *dst, const void *host_src, size_t bytes);
gptq_status cuda_download(void *host_dst, const void *src, size_t bytes);
gptq_status cuda_sync(void);
gptq_status cuda_copy(void *dst, const void *src, size_t bytes);
gptq_status cuda_time_calls(void (*fn)(void *arg), void *arg, int runs, float *ms);
// gemm.cu
void cuda_gemm_f32(const float *x, const float *W, const float *bias, float *y, int n, int in,
                   int out);
// The table's gemm: float32 weights only (weight_dtypes); another dtype is a
// failure for sync.
void cuda_gemm(const float *x, const void *W, gptq_dtype wdt, const float *bias, float *y, int n,
               int in, int out);
gptq_status cuda_gemm_f16(const uint16_t *x, const uint16_t *W, float *y, int n, int in, int out);
// y [n, out] = bias row by row (add = 0) or y += bias (add = 1); bias NULL
// fills zeros. Queued; returns the launch status.
gptq_status cuda_bias_rows(const float *bias, float *y, int n, int out, int add);
void cuda_f32_to_f16(const float *x, uint16_t *y, size_t n);
// qgemm.cu
gptq_status cuda_qgemm_check(int rows, int cols, int bits);
gptq_status cuda_qgemm(const gptq_linear *L, const float *x, const float *bias, float *y, int n);
// rmsnorm.cu, rope.cu, attention.cu, elementwise.cu, softmax.cu
void cuda_rmsnorm(const float *x, const float *weight, float *y, int n, int dim, float eps,
                  float offset);
void cuda_layernorm(const float *x, const float *weight, const float *bias, float *y, int n,
                    int dim, float eps);
void cuda_rope(float *x, int n, int n_heads, int head_dim, const int32_t *pos,
               const float *inv_freq);
gptq_status cuda_attention(const gptq_attention_args *a);
void cuda_silu_mul(const float *gate, const float *up, float *out, size_t n);
void cuda_activate(gptq_act act, float *x, size_t n);
void cuda_add(float *y, const float *x, size_t n);
void cuda_mul(float *y, const float *x, size_t n);
void cuda_scale(float *x, float s, size_t n);
// Float32 tables only (weight_dtypes): another dtype is a failure for sync.
void cuda_embed(const void *table, gptq_dtype tdt, const int32_t *ids, int n, int dim, float *out);
void cuda_softmax(float *x, int n, int cols);
void cuda_log_softmax(float *x, int n, int cols);
// gptq.cu (owns the module's cuSOLVER handle, created on first use)
gptq_status cuda_hessian_create(int cols, gptq_backend_hessian **out);
void cuda_hessian_free(gptq_backend_hessian *h);
gptq_status cuda_hessian_add(gptq_backend_hessian *h, const float *d_X, int64_t tokens,
                             int n_samples);
gptq_status cuda_hessian_get(const gptq_backend_hessian *h, float *d_H);
int64_t cuda_hessian_samples(const gptq_backend_hessian *h);
gptq_status cuda_gptq_quantize_layer(const float *d_W, const float *d_H, int rows, int cols,
                                     const gptq_quant_config *cfg, gptq_quant_result *out,
                                     float *d_Q);
// ipc.cu
gptq_status cuda_ipc_alloc(size_t bytes, void **d_ptr, unsigned char *handle);
void cuda_ipc_free(void *d_ptr);
gptq_status cuda_ipc_open(const unsigned char *handle, void **d_ptr);
gptq_status cuda_ipc_close(void *d_ptr);
gptq_status cuda_mem_info(size_t *free_bytes, size_t *total_bytes);
