// kernels/cuda/rmsnorm.cu: RMSNorm, HF LlamaRMSNorm numerics (float32 mean of
// squares, y = weight * (x * rsqrt(mean + eps))). Twin: gptq_cpu_rmsnorm.
#include "kernels/cuda/cuda_common.cuh"

// ---- CUDA kernels -------------------------------------------------------------

// One block per row. y may alias x: every thread reads its elements before
// the block-wide sum and writes the same elements after it.
__global__ void rmsnorm_kernel(const float *x, const float *__restrict__ weight, float *y, int dim,
                               float eps)
{
    __shared__ float scratch[32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        s = fmaf(xr[j], xr[j], s);
    s = block_sum(s, scratch);
    const float r = rsqrtf(s / (float)dim + eps);
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        yr[j] = weight[j] * (xr[j] * r);
}

// ---- Kernel launchers ---------------------------------------------------------

void cuda_rmsnorm(const float *x, const float *weight, float *y, int n, int dim, float eps)
{
    if (n < 1)
        return;
    const int threads = dim >= 1024 ? 1024 : (dim + 31) / 32 * 32;
    rmsnorm_kernel<<<n, threads, 0, g_cuda.stream>>>(x, weight, y, dim, eps);
    CUDA_NOTE_LAUNCH("rmsnorm");
}
