// kernels/cuda/attention.cu: causal grouped-query attention over a KV cache,
// for decode (one query row) and prefill (many) alike. Twin:
// gptq_cpu_attention (same masking, float32 softmax).
//
// One block per (query row, head); its warps split the visible keys and keep
// an online softmax each (running max m, sum l, output o), merged at the end
// as in flash-decoding. Memory is O(head_dim) per block whatever the context
// length. Prefill blocks of one head re-read the same K/V rows, which then
// come from L2; a tensor-core tiled prefill is the next step if profiles
// show it matters (prefill is a small share of serving time). ALiBi (BLOOM,
// a->alibi) adds the query head's slope·j to the scaled score of key j;
// soft-capping (Gemma 2, a->softcap > 0) then turns that score s into
// tanh(s / softcap)·softcap, before the mask (a warp only ever scores keys
// the mask keeps, so no masked key comes back at -softcap) and the float32
// softmax. The two never come together in a model; when both are set ALiBi
// comes first, as gptq_cpu_score_bias does.
#include "kernels/cuda/cuda_common.cuh"

#define ATT_WARPS 8
#define ATT_MAX_HEAD_DIM 256 // 8 elements per lane
#define ATT_PER_LANE (ATT_MAX_HEAD_DIM / 32)

// ---- CUDA kernels -------------------------------------------------------------

__global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_kernel(const float *__restrict__ q, const float *__restrict__ k,
                     const float *__restrict__ v, float *__restrict__ out, int start,
                     int n_heads, int n_kv_heads, int head_dim, int window, float scale,
                     float softcap, const float *__restrict__ alibi)
{
    __shared__ float m_s[ATT_WARPS], l_s[ATT_WARPS];
    __shared__ float o_s[ATT_WARPS][ATT_MAX_HEAD_DIM];
    const int t = blockIdx.y, h = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int kvh = h / (n_heads / n_kv_heads), qpos = start + t;
    const int first = window > 0 && qpos - window + 1 > 0 ? qpos - window + 1 : 0;
    const size_t q_stride = (size_t)n_heads * head_dim, kv_stride = (size_t)n_kv_heads * head_dim;

    float qv[ATT_PER_LANE], o[ATT_PER_LANE];
    const float *qr = q + (size_t)t * q_stride + (size_t)h * head_dim;
#pragma unroll
    for (int i = 0; i < ATT_PER_LANE; i++) {
        const int d = lane + 32 * i;
        qv[i] = d < head_dim ? qr[d] : 0.0f;
        o[i] = 0.0f;
    }
    // ALiBi: query head h's slope (NULL: none, a uniform branch per key).
    const float slope = alibi ? alibi[h] : 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = first + warp; j <= qpos; j += ATT_WARPS) {
        const float *kr = k + (size_t)j * kv_stride + (size_t)kvh * head_dim;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < ATT_PER_LANE; i++) {
            const int d = lane + 32 * i;
            if (d < head_dim)
                s = fmaf(qv[i], kr[d], s);
        }
        s = warp_sum(s);
        // transformers' baddbmm: the scaled dot product plus the float32
        // product slope·j, each rounded (no FMA: the CPU twin rounds the same)
        s = alibi ? __fadd_rn(__fmul_rn(s, scale), __fmul_rn(slope, (float)j)) : s * scale;
        // transformers' s / softcap, tanh, * softcap in float32; the product
        // rounded on its own, not fused with the softmax's s - m below
        if (softcap > 0.0f)
            s = __fmul_rn(tanhf(__fdiv_rn(s, softcap)), softcap);
        const float m_new = fmaxf(m, s);
        const float corr = expf(m - m_new), p = expf(s - m_new);
        l = l * corr + p;
        const float *vr = v + (size_t)j * kv_stride + (size_t)kvh * head_dim;
#pragma unroll
        for (int i = 0; i < ATT_PER_LANE; i++) {
            const int d = lane + 32 * i;
            o[i] = o[i] * corr + (d < head_dim ? p * vr[d] : 0.0f);
        }
        m = m_new;
    }
    if (lane == 0) {
        m_s[warp] = m;
        l_s[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < ATT_PER_LANE; i++)
        o_s[warp][lane + 32 * i] = o[i];
    __syncthreads();
    // Merge: a warp that saw no key has m = -inf and weight 0.
    float mm = -INFINITY;
    for (int w = 0; w < ATT_WARPS; w++)
        mm = fmaxf(mm, m_s[w]);
    float ll = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++)
        ll += m_s[w] == -INFINITY ? 0.0f : l_s[w] * expf(m_s[w] - mm);
    float *orow = out + (size_t)t * q_stride + (size_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (m_s[w] != -INFINITY)
                acc += o_s[w][d] * expf(m_s[w] - mm);
        orow[d] = acc / ll;
    }
}

// ---- Kernel launchers ---------------------------------------------------------

gptq_status cuda_attention(const gptq_attention_args *a)
{
    if (a->len < 1)
        return GPTQ_OK;
    if (a->head_dim < 1 || a->head_dim > ATT_MAX_HEAD_DIM)
        return cuda_fail(GPTQ_ERR_UNSUPPORTED, "attention: head_dim %d: the CUDA kernel takes 1..%d",
                         a->head_dim, ATT_MAX_HEAD_DIM);
    if (a->n_kv_heads < 1 || a->n_heads % a->n_kv_heads)
        return cuda_fail(GPTQ_ERR_ARG, "attention: %d heads is not a multiple of %d kv heads",
                         a->n_heads, a->n_kv_heads);
    if (a->len > 65535)
        return cuda_fail(GPTQ_ERR_LIMIT, "attention: %d query rows in one call; at most 65535",
                         a->len);
    dim3 grid(a->n_heads, a->len);
    attention_kernel<<<grid, ATT_WARPS * 32, 0, g_cuda.stream>>>(
        a->q, a->k, a->v, a->out, a->start, a->n_heads, a->n_kv_heads, a->head_dim, a->window,
        a->scale, a->softcap, a->alibi);
    CUDA_CHECK_LAUNCH();
    return GPTQ_OK;
}
