// kernels/cuda/sample.cu: one token per row of logits on the device: argmax
// (greedy) or a temperature draw by inverse CDF, so decoding moves 4 bytes
// per sequence to the host instead of the vocabulary's logits.
#include "kernels/cuda/cuda_common.cuh"

#define SAMPLE_THREADS 1024

// ---- CUDA kernels -------------------------------------------------------------

// (value, index) of the warp's largest value, lowest index on ties, in
// every lane.
__device__ __forceinline__ void warp_argmax(float &bv, int &bi)
{
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) {
            bv = ov;
            bi = oi;
        }
    }
}

// Greedy: the argmax, lowest index on ties (what a left-to-right scan
// keeping strict improvements gives).
__global__ void argmax_kernel(const float *__restrict__ logits, int vocab, int32_t *__restrict__ ids)
{
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    const float *r = logits + (size_t)blockIdx.x * vocab;
    float bv = -INFINITY;
    int bi = vocab; // no candidate yet
    for (int j = threadIdx.x; j < vocab; j += blockDim.x)
        if (r[j] > bv || bi == vocab) { // a thread's indices rise: ties keep the lowest
            bv = r[j];
            bi = j;
        }
    warp_argmax(bv, bi);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        best_v[warp] = bv;
        best_i[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x >> 5;
        bv = lane < warps ? best_v[lane] : -INFINITY;
        bi = lane < warps ? best_i[lane] : vocab;
        warp_argmax(bv, bi);
        if (lane == 0)
            ids[blockIdx.x] = bi < vocab ? bi : 0;
    }
}

// Temperature draw: p_j ∝ exp((l_j − max)/T). Thread t owns the contiguous
// segment [t·seg, (t+1)·seg) of the vocabulary; an exclusive scan of the
// segment sums finds the segment holding u·Σp, whose owner walks it.
__global__ void draw_kernel(const float *__restrict__ logits, int vocab, float inv_temp,
                            uint64_t seed, int32_t *__restrict__ ids)
{
    __shared__ float scratch[32];
    __shared__ float seg_sum[SAMPLE_THREADS];
    const float *r = logits + (size_t)blockIdx.x * vocab;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x)
        m = fmaxf(m, r[j]);
    m = block_max(m, scratch);
    const int seg = (vocab + blockDim.x - 1) / blockDim.x;
    const int lo = min(vocab, (int)threadIdx.x * seg), hi = min(vocab, lo + seg);
    float s = 0.0f;
    for (int j = lo; j < hi; j++)
        s += expf((r[j] - m) * inv_temp);
    seg_sum[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) { // exclusive scan; 1024 adds, once per row
        float run = 0.0f;
        for (int i = 0; i < (int)blockDim.x; i++) {
            const float v = seg_sum[i];
            seg_sum[i] = run;
            run += v;
        }
        scratch[0] = run;
    }
    __syncthreads();
    const float total = scratch[0];
    // u < 1, but u·total may round up to total: keep the target inside.
    const float target = fminf(gptq_cuda_uniform(seed, blockIdx.x) * total,
                               nextafterf(total, 0.0f));
    const float before = seg_sum[threadIdx.x];
    const float after = threadIdx.x + 1 < blockDim.x ? seg_sum[threadIdx.x + 1] : total;
    // Exactly one segment holds the target: empty ones have before == after.
    if (target >= before && target < after) {
        float run = before;
        int pick = -1, last_mass = lo;
        for (int j = lo; j < hi && pick < 0; j++) {
            const float p = expf((r[j] - m) * inv_temp);
            run += p;
            if (p > 0.0f)
                last_mass = j;
            if (target < run)
                pick = j;
        }
        // the walk's rounding can differ from the scan's: stay in the segment
        ids[blockIdx.x] = pick >= 0 ? pick : last_mass;
    }
}

// ---- Kernel launchers ---------------------------------------------------------

gptq_status cuda_sample(const float *logits, int n, int vocab, float temperature, uint64_t seed,
                        int32_t *ids)
{
    if (n < 1 || vocab < 1)
        return cuda_fail(GPTQ_ERR_ARG, "sample: n=%d vocab=%d must be positive", n, vocab);
    if (temperature <= 0.0f)
        argmax_kernel<<<n, SAMPLE_THREADS, 0, g_cuda.stream>>>(logits, vocab, ids);
    else
        draw_kernel<<<n, SAMPLE_THREADS, 0, g_cuda.stream>>>(logits, vocab, 1.0f / temperature,
                                                              seed, ids);
    CUDA_CHECK_LAUNCH();
    return GPTQ_OK;
}
