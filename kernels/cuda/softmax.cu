// kernels/cuda/softmax.cu: row-wise softmax and log-softmax in place,
// max-subtracted. Twins: gptq_cpu_softmax, gptq_cpu_log_softmax (which sum
// in double; float32 block sums here agree to ~1e-6 relative).
#include "kernels/cuda/cuda_common.cuh"

// ---- CUDA kernels -------------------------------------------------------------

// One block per row.
template <bool LOG>
__global__ void softmax_kernel(float *x, int cols)
{
    __shared__ float scratch[32];
    float *r = x + (size_t)blockIdx.x * cols;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
        m = fmaxf(m, r[j]);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
        s += expf(r[j] - m);
    s = block_sum(s, scratch);
    if (LOG) {
        const float lse = m + logf(s);
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            r[j] -= lse;
    } else {
        const float inv = 1.0f / s;
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            r[j] = expf(r[j] - m) * inv;
    }
}

// ---- Kernel launchers ---------------------------------------------------------

static int row_threads(int cols)
{
    return cols >= 1024 ? 1024 : (cols + 31) / 32 * 32;
}

void cuda_softmax(float *x, int n, int cols)
{
    if (n < 1 || cols < 1)
        return;
    softmax_kernel<false><<<n, row_threads(cols), 0, g_cuda.stream>>>(x, cols);
    CUDA_NOTE_LAUNCH("softmax");
}

void cuda_log_softmax(float *x, int n, int cols)
{
    if (n < 1 || cols < 1)
        return;
    softmax_kernel<true><<<n, row_threads(cols), 0, g_cuda.stream>>>(x, cols);
    CUDA_NOTE_LAUNCH("log_softmax");
}
