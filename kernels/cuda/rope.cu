// kernels/cuda/rope.cu: rotary position embedding in place. Twin:
// gptq_cpu_rope; the same float32 angle and cos/sin of it in double rounded
// to float32, so both backends rotate by bit-identical factors.
#include "kernels/cuda/cuda_common.cuh"

// ---- CUDA kernels -------------------------------------------------------------

// One thread per (token, pair j): the angle is computed once and applied to
// every head. HF rotate_half: element j pairs with j + head_dim/2, not
// interleaved.
__global__ void rope_kernel(float *__restrict__ x, int n, int n_heads, int head_dim,
                            const int32_t *__restrict__ pos, const float *__restrict__ inv_freq)
{
    const int half = head_dim / 2;
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)n * half)
        return;
    const int t = (int)(i / half), j = (int)(i % half);
    const float angle = inv_freq[j] * (float)pos[t];
    const float c = (float)cos((double)angle), s = (float)sin((double)angle);
    float *row = x + (size_t)t * n_heads * head_dim;
    for (int h = 0; h < n_heads; h++) {
        float *x1 = row + (size_t)h * head_dim + j, *x2 = x1 + half;
        const float a = *x1, b = *x2;
        *x1 = a * c - b * s;
        *x2 = b * c + a * s;
    }
}

// ---- Kernel launchers ---------------------------------------------------------

void cuda_rope(float *x, int n, int n_heads, int head_dim, const int32_t *pos,
               const float *inv_freq)
{
    const size_t work = (size_t)n * (head_dim / 2);
    if (!work)
        return;
    rope_kernel<<<ceil_div(work, 256), 256, 0, g_cuda.stream>>>(x, n, n_heads, head_dim, pos,
                                                                 inv_freq);
    CUDA_NOTE_LAUNCH("rope");
}
