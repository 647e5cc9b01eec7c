/* kernels/cpu/ops.c: the CPU reference for the dense parts of a decoder
 * layer: sgemm-backed linears, RMSNorm, rotary embedding, the portable
 * causal GQA attention (kernels/cpu/attention.c runs it on the pool where
 * the CPU has AVX2), SwiGLU, embedding lookup and (log-)softmax.
 *
 * Numerics follow Hugging Face's float32 eager path (LlamaRMSNorm,
 * apply_rotary_pos_emb, eager_attention_forward) so that logits agree with
 * torch to float32 rounding; where a reduction is long (RMSNorm's mean of
 * squares, softmax denominators) it is summed in double, which only moves
 * results closer to the exact value.
 *
 * Threads: only inside OpenBLAS. These loops are serial on purpose (SwiGLU
 * uses AVX2 and kernels/cpu/vexp.h where present): they are
 * O(tokens x width) next to the sgemms' O(tokens x width^2), and OpenMP
 * regions between OpenBLAS calls cost far more than they save: libgomp's
 * workers spin after each region (OMP_WAIT_POLICY unset) on the cores
 * OpenBLAS's threads need next, which made a 512-token prefill 10x slower
 * on 2 cores (170 vs 2500 tokens/s) and worse on a loaded machine. */
#include "kernels/cpu/ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/interrupt.h"
#include "gptq/error.h"
#include "kernels/cpu/features.h"
#include "kernels/cpu/vexp.h"

/* Largest head_dim the rotary kernel handles with its stack tables; model
 * configs are checked against it (model/config.c). */
#define ROPE_MAX_HALF 256

void gptq_cpu_gemm_f32(const float *x, const float *W, const float *bias, float *y, int n, int in,
                       int out)
{
    float beta = 0.0f;
    if (bias) {
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * out, bias, (size_t)out * sizeof *y);
        beta = 1.0f;
    }
    if (n == 1) /* decoding: OpenBLAS's sgemm packs panels even for one row */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, W, in, x, 1, beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in, beta,
                    y, out);
}

void gptq_cpu_rmsnorm(const float *x, const float *weight, float *y, int n, int dim, float eps,
                      float offset)
{
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * dim;
        float *yr = y + (size_t)i * dim;
        double sum = 0.0;
        for (int j = 0; j < dim; j++)
            sum += (double)xr[j] * xr[j];
        /* HF: x * torch.rsqrt(variance + eps) with variance a float32 */
        float variance = (float)(sum / dim);
        float r = 1.0f / sqrtf(variance + eps);
        for (int j = 0; j < dim; j++)
            yr[j] = (offset + weight[j]) * (xr[j] * r);
    }
}

void gptq_cpu_softcap(float *s, int n, float cap)
{
    for (int j = 0; j < n; j++) /* transformers: s / cap, tanh, * cap, in float32 */
        s[j] = tanhf(s[j] / cap) * cap;
}

void gptq_cpu_mul(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] *= x[i];
}

void gptq_cpu_scale(float *x, float s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

void gptq_cpu_layernorm(const float *x, const float *weight, const float *bias, float *y, int n,
                        int dim, float eps)
{
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * dim;
        float *yr = y + (size_t)i * dim;
        double sum = 0.0, dev = 0.0;
        for (int j = 0; j < dim; j++)
            sum += xr[j];
        const double mean = sum / dim;
        for (int j = 0; j < dim; j++)
            dev += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        /* torch: (x - mean) * rsqrt(var + eps) * weight + bias, in float32 */
        const float r = 1.0f / sqrtf((float)(dev / dim) + eps), mu = (float)mean;
        for (int j = 0; j < dim; j++)
            yr[j] = (xr[j] - mu) * r * weight[j] + bias[j];
    }
}

void gptq_cpu_rope(float *x, int n, int n_heads, int head_dim, const int32_t *pos,
                   const float *inv_freq)
{
    int half = head_dim / 2;
    if (half > ROPE_MAX_HALF)
        return; /* rejected by the config check; never reached */
    for (int i = 0; i < n; i++) {
        float cosv[ROPE_MAX_HALF], sinv[ROPE_MAX_HALF];
        for (int j = 0; j < half; j++) {
            /* HF: freqs = inv_freq @ position in float32, then .cos()/.sin() */
            float angle = inv_freq[j] * (float)pos[i];
            cosv[j] = (float)cos((double)angle);
            sinv[j] = (float)sin((double)angle);
        }
        float *row = x + (size_t)i * n_heads * head_dim;
        for (int h = 0; h < n_heads; h++) {
            /* rotate_half: first half pairs with second half, not interleaved */
            float *x1 = row + (size_t)h * head_dim, *x2 = x1 + half;
            for (int j = 0; j < half; j++) {
                float a = x1[j], b = x2[j];
                x1[j] = a * cosv[j] - b * sinv[j];
                x2[j] = b * cosv[j] + a * sinv[j];
            }
        }
    }
}

/* Dot product with eight independent partial sums so the compiler can keep
 * them in one vector register without reassociating a single chain. */
static inline float dot_f32(const float *a, const float *b, int n)
{
    float acc[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += a[j + l] * b[j + l];
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < n; j++)
        sum += a[j] * b[j];
    return sum;
}

/* Key range [first, last] query position qpos sees: causal, and inside the
 * sliding window when there is one. */
static inline int first_key(const gptq_attention_args *a, int qpos)
{
    return a->window > 0 && qpos - a->window + 1 > 0 ? qpos - a->window + 1 : 0;
}

/* Few query rows (decoding): one pass per (row, head) over its keys. */
static gptq_status attention_rows(const gptq_attention_args *a)
{
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    const size_t q_stride = (size_t)a->n_heads * hd, kv_stride = (size_t)a->n_kv_heads * hd;
    const int keys = a->start + a->len;
    float *p = malloc((size_t)keys * sizeof *p); /* scores of one query row */
    if (!p)
        return gptq_fail(GPTQ_ERR_NOMEM, "attention: cannot allocate %d scores", keys);
    for (int t = 0; t < a->len; t++)
        for (int h = 0; h < a->n_heads; h++) {
            const int kvh = h / group, qpos = a->start + t, first = first_key(a, qpos);
            const float *q = a->q + (size_t)t * q_stride + (size_t)h * hd;
            float maxv = -INFINITY;
            for (int j = first; j <= qpos; j++)
                p[j] = dot_f32(q, a->k + (size_t)j * kv_stride + (size_t)kvh * hd, hd) * a->scale;
            gptq_cpu_score_bias(a, h, p + first, qpos + 1 - first, first);
            for (int j = first; j <= qpos; j++)
                maxv = p[j] > maxv ? p[j] : maxv;
            double sum = 0.0;
            for (int j = first; j <= qpos; j++) {
                p[j] = expf(p[j] - maxv);
                sum += p[j];
            }
            float inv = (float)(1.0 / sum);
            float *o = a->out + (size_t)t * q_stride + (size_t)h * hd;
            memset(o, 0, (size_t)hd * sizeof *o);
            for (int j = first; j <= qpos; j++) {
                const float w = p[j] * inv;
                const float *v = a->v + (size_t)j * kv_stride + (size_t)kvh * hd;
                for (int d = 0; d < hd; d++)
                    o[d] += w * v[d];
            }
        }
    free(p);
    return GPTQ_OK;
}

/* Query rows per block of the sgemm path: bounds the score matrix to
 * ATTN_BLOCK x keys floats. */
#define ATTN_BLOCK 128

/* Many query rows (prefill, calibration, perplexity): per head and block of
 * rows, S = scale * Q Kᵀ and O = softmax(S) V as two sgemms. The causal
 * mask costs the upper triangle of each block's S in flops, not time spent
 * in scalar loops. */
static gptq_status attention_gemm(const gptq_attention_args *a)
{
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    const int q_stride = a->n_heads * hd, kv_stride = a->n_kv_heads * hd;
    float *S = malloc((size_t)ATTN_BLOCK * (a->start + a->len) * sizeof *S);
    if (!S)
        return gptq_fail(GPTQ_ERR_NOMEM, "attention: cannot allocate %d x %d scores", ATTN_BLOCK,
                         a->start + a->len);
    for (int h = 0; h < a->n_heads; h++) {
        const int kvh = h / group;
        /* a head of a long prompt is seconds of work: stop when asked */
        gptq_status st = gptq_interrupt_check("attention");
        if (st) {
            free(S);
            return st;
        }
        for (int r0 = 0; r0 < a->len; r0 += ATTN_BLOCK) {
            const int rows = a->len - r0 < ATTN_BLOCK ? a->len - r0 : ATTN_BLOCK;
            const int k0 = first_key(a, a->start + r0); /* first key any row sees */
            const int nk = a->start + r0 + rows - k0;   /* keys k0 .. last row's position */
            const float *k = a->k + (size_t)k0 * kv_stride + (size_t)kvh * hd;
            const float *v = a->v + (size_t)k0 * kv_stride + (size_t)kvh * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, nk, hd, a->scale,
                        a->q + (size_t)r0 * q_stride + (size_t)h * hd, q_stride, k, kv_stride, 0.0f,
                        S, nk);
            for (int i = 0; i < rows; i++) {
                float *srow = S + (size_t)i * nk;
                const int qpos = a->start + r0 + i;
                const int lo = first_key(a, qpos) - k0, hi = qpos - k0; /* inclusive */
                gptq_cpu_score_bias(a, h, srow, nk, k0);
                float maxv = -INFINITY;
                for (int j = lo; j <= hi; j++)
                    maxv = srow[j] > maxv ? srow[j] : maxv;
                double sum = 0.0;
                for (int j = lo; j <= hi; j++) {
                    srow[j] = expf(srow[j] - maxv);
                    sum += srow[j];
                }
                const float inv = (float)(1.0 / sum);
                for (int j = 0; j < lo; j++)
                    srow[j] = 0.0f;
                for (int j = lo; j <= hi; j++)
                    srow[j] *= inv;
                for (int j = hi + 1; j < nk; j++)
                    srow[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, nk, 1.0f, S, nk, v,
                        kv_stride, 0.0f, a->out + (size_t)r0 * q_stride + (size_t)h * hd, q_stride);
        }
    }
    free(S);
    return GPTQ_OK;
}

/* Below this many query rows the per-row loop beats two sgemms per head. */
#define ATTN_GEMM_MIN_LEN 16

gptq_status gptq_cpu_attention_portable(const gptq_attention_args *a)
{
    return a->len >= ATTN_GEMM_MIN_LEN ? attention_gemm(a) : attention_rows(a);
}

#if defined(__x86_64__) || defined(__i386__)
/* silu(g)·u on 8 floats at a time with the vector exp (within 2 ulp of
 * expf); the tail as below. */
__attribute__((target("avx2,fma"))) static size_t silu_mul_avx2(const float *gate, const float *up,
                                                                float *out, size_t n)
{
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = gptq_exp256(_mm256_xor_ps(g, sign));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)),
                                                _mm256_loadu_ps(up + i)));
    }
    return i;
}
#endif

void gptq_cpu_activate(gptq_act act, float *x, size_t n)
{
    switch (act) {
    case GPTQ_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] < 0.0f ? 0.0f : x[i];
        break;
    case GPTQ_ACT_GELU_TANH: /* transformers' float32 expression, term by term */
        for (size_t i = 0; i < n; i++) {
            const float v = x[i];
            x[i] = v * 0.5f * (1.0f + tanhf(0.79788456f * v * (1.0f + 0.044715f * v * v)));
        }
        break;
    case GPTQ_ACT_GELU_PT: /* torch's gelu(approximate='tanh') kernel, term by term */
        for (size_t i = 0; i < n; i++) {
            const float v = x[i], inner = 0.7978845608028654f * (v + 0.044715f * (v * v * v));
            x[i] = 0.5f * v * (1.0f + tanhf(inner));
        }
        break;
    }
}

void gptq_cpu_silu_mul(const float *gate, const float *up, float *out, size_t n)
{
    size_t i = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (gptq_cpu_have_avx2())
        i = silu_mul_avx2(gate, up, out, n);
#endif
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,f16c"))) static size_t f32_to_f16_f16c(const float *x, uint16_t *y,
                                                                   size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    return i;
}
#endif

void gptq_cpu_f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (gptq_cpu_have_avx2())
        i = f32_to_f16_f16c(x, y, n);
#endif
    for (; i < n; i++)
        y[i] = gptq_f32_to_f16(x[i]);
}

void gptq_cpu_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

void gptq_cpu_embed(const float *table, const int32_t *ids, int n, int dim, float *out)
{
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * dim, table + (size_t)ids[i] * dim, (size_t)dim * sizeof *out);
}

static float row_max(const float *x, int cols)
{
    float m = -INFINITY;
    for (int j = 0; j < cols; j++)
        if (x[j] > m)
            m = x[j];
    return m;
}

void gptq_cpu_softmax(float *x, int n, int cols)
{
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * cols;
        float m = row_max(r, cols);
        double sum = 0.0;
        for (int j = 0; j < cols; j++) {
            r[j] = expf(r[j] - m);
            sum += r[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < cols; j++)
            r[j] *= inv;
    }
}

void gptq_cpu_log_softmax(float *x, int n, int cols)
{
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * cols;
        float m = row_max(r, cols);
        double sum = 0.0;
        for (int j = 0; j < cols; j++)
            sum += exp((double)r[j] - m);
        float lse = (float)(m + log(sum));
        for (int j = 0; j < cols; j++)
            r[j] -= lse;
    }
}
