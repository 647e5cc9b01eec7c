// kernels/cuda/elementwise.cu: SwiGLU's silu(gate)·up, a non-gated MLP's
// activation, the residual add, the elementwise product and scaling and the
// embedding gather. Twins: gptq_cpu_silu_mul, gptq_cpu_activate,
// gptq_cpu_add, gptq_cpu_mul, gptq_cpu_scale, gptq_cpu_embed.
#include "kernels/cuda/cuda_common.cuh"

// ---- CUDA kernels -------------------------------------------------------------

// out may alias gate or up: each element is read before it is written.
__global__ void silu_mul_kernel(const float *gate, const float *up, float *out, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// In place. ReLU as `x < 0 ? 0 : x`, not fmaxf(x, 0): that keeps -0 and NaN
// as they are (torch.nn.ReLU, the CPU twin), where fmaxf would turn NaN into 0.
// GELU_TANH is BLOOM's bloom_gelu_forward as transformers evaluates it, one
// float32 rounding per operation left to right: __fmul_rn keeps nvcc from
// fusing 0.044715·x·x into an FMA with the 1 + (the host build has
// -ffp-contract=off). The 1 + tanh cancels for x < 0 as it does in torch.
// GELU_PT is torch's gelu(approximate='tanh') CPU kernel in its order:
// x_cube = x·x·x, inner = kBeta·(x + kKappa·x_cube), 0.5·x·(1 + tanh(inner)),
// kBeta = sqrt(2/pi) (the same float32 as BLOOM's 0.79788456f); __fmul_rn
// keeps kKappa·x_cube out of an FMA with the x +.
__global__ void activate_kernel(gptq_act act, float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        switch (act) {
        case GPTQ_ACT_RELU:
            x[i] = x[i] < 0.0f ? 0.0f : x[i];
            break;
        case GPTQ_ACT_GELU_TANH: {
            const float v = x[i];
            x[i] = v * 0.5f *
                   (1.0f + tanhf(0.79788456f * v * (1.0f + __fmul_rn(0.044715f * v, v))));
            break;
        }
        case GPTQ_ACT_GELU_PT: {
            const float v = x[i], cube = v * v * v;
            const float inner = 0.7978845608028654f * (v + __fmul_rn(0.044715f, cube));
            x[i] = 0.5f * v * (1.0f + tanhf(inner));
            break;
        }
        }
    }
}

__global__ void add_kernel(float *y, const float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

__global__ void mul_kernel(float *y, const float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] *= x[i];
}

__global__ void scale_kernel(float *x, float s, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

// One block per token; rows are copied with 128-bit loads when dim allows.
__global__ void embed_kernel(const float *__restrict__ table, const int32_t *__restrict__ ids,
                             int dim, float *__restrict__ out)
{
    const float *src = table + (size_t)ids[blockIdx.x] * dim;
    float *dst = out + (size_t)blockIdx.x * dim;
    if (dim % 4 == 0) {
        const float4 *s4 = reinterpret_cast<const float4 *>(src);
        float4 *d4 = reinterpret_cast<float4 *>(dst);
        for (int j = threadIdx.x; j < dim / 4; j += blockDim.x)
            d4[j] = s4[j];
    } else {
        for (int j = threadIdx.x; j < dim; j += blockDim.x)
            dst[j] = src[j];
    }
}

// ---- Kernel launchers ---------------------------------------------------------


void cuda_silu_mul(const float *gate, const float *up, float *out, size_t n)
{
    if (!n)
        return;
    silu_mul_kernel<<<stride_blocks(n), 256, 0, g_cuda.stream>>>(gate, up, out, n);
    CUDA_NOTE_LAUNCH("silu_mul");
}

void cuda_activate(gptq_act act, float *x, size_t n)
{
    if (!n)
        return;
    activate_kernel<<<stride_blocks(n), 256, 0, g_cuda.stream>>>(act, x, n);
    CUDA_NOTE_LAUNCH("activate");
}

void cuda_add(float *y, const float *x, size_t n)
{
    if (!n)
        return;
    add_kernel<<<stride_blocks(n), 256, 0, g_cuda.stream>>>(y, x, n);
    CUDA_NOTE_LAUNCH("add");
}

void cuda_mul(float *y, const float *x, size_t n)
{
    if (!n)
        return;
    mul_kernel<<<stride_blocks(n), 256, 0, g_cuda.stream>>>(y, x, n);
    CUDA_NOTE_LAUNCH("mul");
}

void cuda_scale(float *x, float s, size_t n)
{
    if (!n)
        return;
    scale_kernel<<<stride_blocks(n), 256, 0, g_cuda.stream>>>(x, s, n);
    CUDA_NOTE_LAUNCH("scale");
}

// ids are device memory, like every pointer of the table (backend.h).
void cuda_embed(const void *table, gptq_dtype tdt, const int32_t *ids, int n, int dim, float *out)
{
    if (n < 1)
        return;
    if (tdt != GPTQ_DT_F32) {
        gptq_fail(GPTQ_ERR_UNSUPPORTED, "embedding table of dtype %d: this backend takes float32",
                  (int)tdt);
        cuda_note_failure("embed");
        return;
    }
    embed_kernel<<<n, 256, 0, g_cuda.stream>>>((const float *)table, ids, dim, out);
    CUDA_NOTE_LAUNCH("embed");
}
