// kernels/cuda/rmsnorm.cu: the row norms. RMSNorm with HF LlamaRMSNorm
// numerics (float32 mean of squares, y = weight * (x * rsqrt(mean + eps))),
// or Gemma's (offset 1: the float32 sum 1 + weight in place of weight);
// LayerNorm with torch.nn.LayerNorm's (mean, then the biased variance as the
// mean of squared deviations, y = (x - mean) * rsqrt(var + eps) * weight +
// bias). Twins: gptq_cpu_rmsnorm, gptq_cpu_layernorm.
#include "kernels/cuda/cuda_common.cuh"

// ---- CUDA kernels -------------------------------------------------------------

// One block per row. y may alias x: every thread reads its elements before
// the block-wide sum and writes the same elements after it. offset is 0
// (Llama: 0 + weight is weight exactly, so the result is bit for bit the
// plain product) or 1 (Gemma: transformers' float32 1.0 + weight).
__global__ void rmsnorm_kernel(const float *x, const float *__restrict__ weight, float *y, int dim,
                               float eps, float offset)
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
        yr[j] = (offset + weight[j]) * (xr[j] * r);
}

// One block per row, as rmsnorm_kernel; y may alias x in the same way (the
// row is only written after the last block-wide sum). The variance is the
// mean of squared deviations from the mean, not E[x²] - mean²: the latter
// cancels catastrophically in float32 for rows whose mean is large next to
// their spread, which is where the CPU twin (summing in double) stays exact.
__global__ void layernorm_kernel(const float *x, const float *__restrict__ weight,
                                 const float *__restrict__ bias, float *y, int dim, float eps)
{
    __shared__ float scratch[32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        s += xr[j];
    const float mean = block_sum(s, scratch) / (float)dim;
    float d = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        const float t = xr[j] - mean;
        d = fmaf(t, t, d);
    }
    const float r = rsqrtf(block_sum(d, scratch) / (float)dim + eps);
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        yr[j] = (xr[j] - mean) * r * weight[j] + bias[j];
}

// ---- Kernel launchers ---------------------------------------------------------

void cuda_rmsnorm(const float *x, const float *weight, float *y, int n, int dim, float eps,
                  float offset)
{
    if (n < 1)
        return;
    const int threads = dim >= 1024 ? 1024 : (dim + 31) / 32 * 32;
    rmsnorm_kernel<<<n, threads, 0, g_cuda.stream>>>(x, weight, y, dim, eps, offset);
    CUDA_NOTE_LAUNCH("rmsnorm");
}

void cuda_layernorm(const float *x, const float *weight, const float *bias, float *y, int n,
                    int dim, float eps)
{
    if (n < 1)
        return;
    const int threads = dim >= 1024 ? 1024 : (dim + 31) / 32 * 32;
    layernorm_kernel<<<n, threads, 0, g_cuda.stream>>>(x, weight, bias, y, dim, eps);
    CUDA_NOTE_LAUNCH("layernorm");
}
