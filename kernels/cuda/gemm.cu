// kernels/cuda/gemm.cu: dense linears through cuBLAS (float32 table entry,
// fp16 tensor-core GEMM, the benchmarks' yardstick) and float32 -> fp16.
#include "kernels/cuda/cuda_common.cuh"

// ---- CUDA kernels -------------------------------------------------------------

__global__ void f32_to_f16_kernel(const float *__restrict__ x, __half *__restrict__ y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}

// y [n, out] = bias (add = 0) or y += bias (add = 1), row by row; bias NULL
// gives zeros.
__global__ void bias_rows_kernel(const float *__restrict__ bias, float *__restrict__ y, int n,
                                 int out, int add)
{
    const size_t total = (size_t)n * out;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const float b = bias ? bias[i % out] : 0.0f;
        y[i] = add ? y[i] + b : b;
    }
}

// ---- Kernel launchers ---------------------------------------------------------


void cuda_f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    f32_to_f16_kernel<<<stride_blocks(n), 256, 0, g_cuda.stream>>>(x, (__half *)y, n);
    CUDA_NOTE_LAUNCH("f32_to_f16");
}

gptq_status cuda_bias_rows(const float *bias, float *y, int n, int out, int add)
{
    bias_rows_kernel<<<stride_blocks((size_t)n * out), 256, 0, g_cuda.stream>>>(bias, y, n, out,
                                                                                add);
    CUDA_CHECK_LAUNCH();
    return GPTQ_OK;
}

// Row-major y [n, out] = x [n, in] · W [out, in]ᵀ is, column-major,
// yᵀ [out, n] = W [out, in] · xᵀ [in, n]: cuBLAS gets (T, N) with W first.
// x and W of `type`, y float32, fp32 accumulation (CUBLAS_COMPUTE_32F: no
// TF32 for float32 inputs, tensor cores for fp16).
static gptq_status cublas_gemm(const void *x, const void *W, cudaDataType type, float *y,
                               float beta, int n, int in, int out)
{
    const float alpha = 1.0f;
    pthread_mutex_lock(&g_cuda.cublas_lock);
    cublasStatus_t st = cublasGemmEx(g_cuda.cublas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, W,
                                     type, in, x, type, in, &beta, y, CUDA_R_32F, out,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    pthread_mutex_unlock(&g_cuda.cublas_lock);
    CUBLAS_CHECK(st);
    return GPTQ_OK;
}

static gptq_status gemm_f32(const float *x, const float *W, const float *bias, float *y, int n,
                            int in, int out)
{
    if (bias) {
        gptq_status st = cuda_bias_rows(bias, y, n, out, 0);
        if (st != GPTQ_OK)
            return st;
    }
    return cublas_gemm(x, W, CUDA_R_32F, y, bias ? 1.0f : 0.0f, n, in, out);
}

void cuda_gemm_f32(const float *x, const float *W, const float *bias, float *y, int n, int in,
                   int out)
{
    if (gemm_f32(x, W, bias, y, n, in, out) != GPTQ_OK)
        cuda_note_failure("gemm_f32");
}

void cuda_gemm(const float *x, const void *W, gptq_dtype wdt, const float *bias, float *y, int n,
               int in, int out)
{
    if (wdt != GPTQ_DT_F32) {
        gptq_fail(GPTQ_ERR_UNSUPPORTED, "weights of dtype %d: this backend takes float32 (widen "
                  "them when uploading)", (int)wdt);
        cuda_note_failure("gemm");
        return;
    }
    cuda_gemm_f32(x, (const float *)W, bias, y, n, in, out);
}

gptq_status cuda_gemm_f16(const uint16_t *x, const uint16_t *W, float *y, int n, int in, int out)
{
    if (n < 1 || in < 1 || out < 1)
        return cuda_fail(GPTQ_ERR_ARG, "gemm_f16: shape n=%d in=%d out=%d must be positive", n, in,
                         out);
    return cublas_gemm(x, W, CUDA_R_16F, y, 0.0f, n, in, out);
}
