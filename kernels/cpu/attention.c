/* kernels/cpu/attention.c: causal GQA attention on the CPU kernels' pool.
 *
 * Work items are (head, block of up to 32 query rows); the pool's threads
 * take contiguous runs of them. An item copies its keys (the ones its rows
 * may see) into panels of 8 keys transposed, [panel][head_dim][8], so that
 * the scores of 4 query rows against 16 keys are 8 vector accumulators fed
 * by one broadcast per row and one load per panel and dimension; the
 * causal triangle is skipped panel by panel. Softmax runs on vectors with
 * a polynomial exp (kernels/cpu/vexp.h), its denominator summed in double
 * per row as HF's float32 path would round it no closer; the output is the
 * probabilities times the values, 2 rows × 32 dimensions at a time. One
 * query row (decoding) scores its keys in place, without panels. Keys and
 * values may be float32 or a binary16 cache (k_f16/v_f16), widened exactly
 * as they are loaded.
 *
 * A long prompt is seconds of attention: the calling thread checks for an
 * interrupt before each head (gptq_interrupt_check). CPUs without AVX2+FMA,
 * and head_dim not a multiple of 8, take the portable loops of
 * kernels/cpu/ops.c (gptq_cpu_attention_portable), a binary16 cache widened
 * into a float32 copy first. */
#include "kernels/cpu/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/interrupt.h"
#include "gptq/error.h"
#include "kernels/cpu/features.h"
#include "kernels/cpu/pool.h"

/* The portable loops on float32 keys and values: a binary16 cache is
 * widened first (its rows 0..start+len-1). */
static gptq_status attention_widened(const gptq_attention_args *a)
{
    if (!a->k_f16)
        return gptq_cpu_attention_portable(a);
    const size_t n = (size_t)(a->start + a->len) * a->n_kv_heads * a->head_dim;
    float *kv = malloc(2 * n * sizeof *kv);
    if (!kv)
        return gptq_fail(GPTQ_ERR_NOMEM, "attention: cannot widen %d cached positions",
                         a->start + a->len);
    for (size_t i = 0; i < n; i++) {
        kv[i] = gptq_f16_to_f32(a->k_f16[i]);
        kv[n + i] = gptq_f16_to_f32(a->v_f16[i]);
    }
    gptq_attention_args w = *a;
    w.k = kv, w.v = kv + n, w.k_f16 = w.v_f16 = NULL;
    gptq_status st = gptq_cpu_attention_portable(&w);
    free(kv);
    return st;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "kernels/cpu/vexp.h"

#define AT_TARGET __attribute__((target("avx2,fma,f16c")))
#define AT_ROWS 32 /* query rows per work item */

typedef struct at_job {
    const gptq_attention_args *a;
    int h0, h1;      /* heads of this pool call */
    int row_blocks;  /* per head */
    int failed;      /* a part could not get its scratch */
} at_job;

static inline int first_key(const gptq_attention_args *a, int qpos)
{
    return a->window > 0 && qpos - a->window + 1 > 0 ? qpos - a->window + 1 : 0;
}

/* 8 floats of a key or value row at element offset `at`: float32, or
 * binary16 (the cache's, a->k_f16 / v_f16) widened exactly. */
AT_TARGET static inline __attribute__((always_inline)) __m256 load_kv(const float *f32,
                                                                     const uint16_t *f16,
                                                                     size_t at)
{
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(f16 + at)));
    return _mm256_loadu_ps(f32 + at);
}

/* Keys [k0, k0 + nk) of kv head kvh into panels Kt [ceil(nk/8)][hd][8],
 * zero past nk. row [hd] is scratch. */
AT_TARGET static void pack_keys(const gptq_attention_args *a, int kvh, int k0, int nk, float *Kt,
                                float *row)
{
    const int hd = a->head_dim;
    const size_t kv_stride = (size_t)a->n_kv_heads * hd;
    const int panels = (nk + 7) / 8;
    for (int p = 0; p < panels; p++) {
        float *dst = Kt + (size_t)p * hd * 8;
        for (int j = 0; j < 8; j++) {
            if (p * 8 + j >= nk) {
                for (int d = 0; d < hd; d++)
                    dst[d * 8 + j] = 0.0f;
                continue;
            }
            const size_t at = (size_t)(k0 + p * 8 + j) * kv_stride + (size_t)kvh * hd;
            for (int d = 0; d < hd; d += 8)
                _mm256_storeu_ps(row + d, load_kv(a->k, a->k_f16, at + d));
            for (int d = 0; d < hd; d++)
                dst[d * 8 + j] = row[d];
        }
    }
}

/* S [MR][ld] = scale · q rows · Kt for panels [0, panels); q rows at qp with
 * stride qs. */
AT_TARGET static inline __attribute__((always_inline)) void
scores(const float *qp, size_t qs, const float *Kt, int hd, int panels, float scale, float *S,
       int ld, const int MR)
{
    const __m256 sc = _mm256_set1_ps(scale);
    int p = 0;
    for (; p + 2 <= panels; p += 2) {
        __m256 acc[4][2];
        for (int i = 0; i < MR; i++)
            acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        const float *k0 = Kt + (size_t)p * hd * 8, *k1 = k0 + (size_t)hd * 8;
        for (int d = 0; d < hd; d++) {
            const __m256 a0 = _mm256_loadu_ps(k0 + d * 8), a1 = _mm256_loadu_ps(k1 + d * 8);
            for (int i = 0; i < MR; i++) {
                const __m256 q = _mm256_broadcast_ss(qp + i * qs + d);
                acc[i][0] = _mm256_fmadd_ps(q, a0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(q, a1, acc[i][1]);
            }
        }
        for (int i = 0; i < MR; i++) {
            _mm256_storeu_ps(S + (size_t)i * ld + p * 8, _mm256_mul_ps(acc[i][0], sc));
            _mm256_storeu_ps(S + (size_t)i * ld + p * 8 + 8, _mm256_mul_ps(acc[i][1], sc));
        }
    }
    if (p < panels) {
        __m256 acc[4];
        for (int i = 0; i < MR; i++)
            acc[i] = _mm256_setzero_ps();
        const float *k0 = Kt + (size_t)p * hd * 8;
        for (int d = 0; d < hd; d++) {
            const __m256 a0 = _mm256_loadu_ps(k0 + d * 8);
            for (int i = 0; i < MR; i++)
                acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(qp + i * qs + d), a0, acc[i]);
        }
        for (int i = 0; i < MR; i++)
            _mm256_storeu_ps(S + (size_t)i * ld + p * 8, _mm256_mul_ps(acc[i], sc));
    }
}

/* S [ld] = scale · q · k_j for keys j in [0, nk) (rows of k, or of k16
 * when not NULL, with stride ks):
 * one query row (decoding) reads each key once where it lies, instead of
 * transposing the keys into panels first. */
AT_TARGET static void scores_row(const float *q, const float *k, const uint16_t *k16, size_t ks,
                                 int hd, int nk, float scale, float *S)
{
    for (int j = 0; j < nk; j++) {
        const size_t at = (size_t)j * ks;
        __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(q), load_kv(k, k16, at));
        for (int d = 8; d < hd; d += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load_kv(k, k16, at + d), acc);
        __m128 t = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        t = _mm_add_ps(t, _mm_movehl_ps(t, t));
        t = _mm_add_ss(t, _mm_movehdup_ps(t));
        S[j] = _mm_cvtss_f32(t) * scale;
    }
}

/* Row s [0, n) becomes softmax over [lo, hi] (inclusive), zero elsewhere. */
AT_TARGET static void softmax_row(float *s, int n, int lo, int hi)
{
    float maxv = -INFINITY;
    for (int j = lo; j <= hi; j++)
        maxv = s[j] > maxv ? s[j] : maxv;
    const __m256 mv = _mm256_set1_ps(maxv);
    double sum = 0.0;
    int j = lo;
    for (; j + 8 <= hi + 1; j += 8) {
        const __m256 e = gptq_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
        _mm256_storeu_ps(s + j, e);
        float t[8];
        _mm256_storeu_ps(t, e);
        sum += ((double)t[0] + t[1] + t[2] + t[3]) + ((double)t[4] + t[5] + t[6] + t[7]);
    }
    for (; j <= hi; j++) {
        s[j] = expf(s[j] - maxv);
        sum += s[j];
    }
    const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (j = 0; j < lo; j++)
        s[j] = 0.0f;
    for (j = lo; j + 8 <= hi + 1; j += 8)
        _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
    for (; j <= hi; j++)
        s[j] *= (float)(1.0 / sum);
    for (j = hi + 1; j < n; j++)
        s[j] = 0.0f;
}

/* out rows [MR] (stride os) = P [MR][ld] (keys [0, nk)) · V rows from vp
 * (or vp16 when not NULL; stride vs), 32 dimensions at a time. */
AT_TARGET static inline __attribute__((always_inline)) void
weighted_values(const float *P, int ld, int nk, const float *vp, const uint16_t *vp16, size_t vs,
                int hd, float *op, size_t os, const int MR)
{
    for (int c = 0; c < hd; c += 32) {
        const int nv = hd - c >= 32 ? 4 : (hd - c) / 8;
        __m256 acc[2][4];
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < 4; v++)
                acc[i][v] = _mm256_setzero_ps();
        for (int j = 0; j < nk; j++) {
            const size_t at = (size_t)j * vs + c;
            __m256 w[2];
            for (int i = 0; i < MR; i++)
                w[i] = _mm256_broadcast_ss(P + (size_t)i * ld + j);
            for (int v = 0; v < nv; v++) {
                const __m256 x = load_kv(vp, vp16, at + 8 * (size_t)v);
                for (int i = 0; i < MR; i++)
                    acc[i][v] = _mm256_fmadd_ps(w[i], x, acc[i][v]);
            }
        }
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < nv; v++)
                _mm256_storeu_ps(op + (size_t)i * os + c + 8 * v, acc[i][v]);
    }
}

/* Head h, query rows [r0, r1): scratch holds the key panels, then the
 * scores of the block's rows. */
AT_TARGET static void item(const gptq_attention_args *a, int h, int r0, int r1, float *scratch)
{
    const int hd = a->head_dim, kvh = h / (a->n_heads / a->n_kv_heads);
    const size_t q_stride = (size_t)a->n_heads * hd, kv_stride = (size_t)a->n_kv_heads * hd;
    const int k0 = first_key(a, a->start + r0), k_end = a->start + r1; /* keys [k0, k_end) */
    const int nk = k_end - k0, panels = (nk + 7) / 8, ld = panels * 8;
    float *Kt = scratch, *S = scratch + (size_t)ld * hd, *row = S + (size_t)4 * ld;
    const size_t base = (size_t)k0 * kv_stride + (size_t)kvh * hd; /* key k0 of head kvh */
    const float *vp = a->v ? a->v + base : NULL;
    const uint16_t *vp16 = a->v_f16 ? a->v_f16 + base : NULL;
    if (r1 - r0 == 1) { /* decoding */
        const int qpos = a->start + r0;
        scores_row(a->q + (size_t)r0 * q_stride + (size_t)h * hd, a->k ? a->k + base : NULL,
                   a->k_f16 ? a->k_f16 + base : NULL, kv_stride, hd, nk, a->scale, S);
        gptq_cpu_score_bias(a, h, S, nk, k0);
        softmax_row(S, nk, first_key(a, qpos) - k0, qpos - k0);
        weighted_values(S, ld, nk, vp, vp16, kv_stride, hd,
                        a->out + (size_t)r0 * q_stride + (size_t)h * hd, q_stride, 1);
        return;
    }
    pack_keys(a, kvh, k0, nk, Kt, row);
    for (int i0 = r0; i0 < r1; i0 += 4) {
        const int mr = r1 - i0 < 4 ? r1 - i0 : 4;
        /* panels the last of these rows sees (causal: none past it) */
        const int last = a->start + i0 + mr - 1 - k0;
        const int np = last / 8 + 1;
        const float *qp = a->q + (size_t)(i0) * q_stride + (size_t)h * hd;
        switch (mr) {
        case 4: scores(qp, q_stride, Kt, hd, np, a->scale, S, ld, 4); break;
        case 3: scores(qp, q_stride, Kt, hd, np, a->scale, S, ld, 3); break;
        case 2: scores(qp, q_stride, Kt, hd, np, a->scale, S, ld, 2); break;
        default: scores(qp, q_stride, Kt, hd, np, a->scale, S, ld, 1); break;
        }
        for (int i = 0; i < mr; i++) {
            const int qpos = a->start + i0 + i;
            gptq_cpu_score_bias(a, h, S + (size_t)i * ld, np * 8, k0);
            softmax_row(S + (size_t)i * ld, np * 8, first_key(a, qpos) - k0, qpos - k0);
        }
        float *op = a->out + (size_t)i0 * q_stride + (size_t)h * hd;
        int i = 0;
        for (; i + 2 <= mr; i += 2)
            weighted_values(S + (size_t)i * ld, ld, last + 1, vp, vp16, kv_stride, hd,
                            op + (size_t)i * q_stride, q_stride, 2);
        if (i < mr)
            weighted_values(S + (size_t)i * ld, ld, last + 1, vp, vp16, kv_stride, hd,
                            op + (size_t)i * q_stride, q_stride, 1);
    }
}

static void at_part(void *arg, int part, int parts)
{
    at_job *J = arg;
    const gptq_attention_args *a = J->a;
    const long items = (long)(J->h1 - J->h0) * J->row_blocks;
    long i0, i1;
    gptq_pool_split(items, part, parts, 1, &i0, &i1);
    if (i1 <= i0)
        return;
    const int keys = a->start + a->len;
    const size_t ld = (size_t)(keys + 7) / 8 * 8;
    float *scratch = gptq_cpu_scratch(ld * (size_t)a->head_dim + (size_t)4 * ld + a->head_dim);
    if (!scratch) {
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    for (long it = i0; it < i1; it++) {
        const int h = J->h0 + (int)(it / J->row_blocks), b = (int)(it % J->row_blocks);
        const int r0 = b * AT_ROWS, r1 = r0 + AT_ROWS < a->len ? r0 + AT_ROWS : a->len;
        item(a, h, r0, r1, scratch);
    }
}

gptq_status gptq_cpu_attention(const gptq_attention_args *a)
{
    if (!gptq_cpu_have_avx2() || a->head_dim % 8)
        return attention_widened(a);
    const int row_blocks = (a->len + AT_ROWS - 1) / AT_ROWS;
    /* decoding and short prompts: every head in one call; a long prompt one
     * head per call, checking for an interrupt in between */
    const int per_call = row_blocks >= 2 * gptq_pool_threads() ? 1 : a->n_heads;
    for (int h0 = 0; h0 < a->n_heads; h0 += per_call) {
        gptq_status st = gptq_interrupt_check("attention");
        if (st)
            return st;
        at_job J = {a, h0, h0 + per_call < a->n_heads ? h0 + per_call : a->n_heads, row_blocks, 0};
        const double work = (double)(J.h1 - J.h0) * a->len * (a->start + a->len) * a->head_dim;
        gptq_pool_run(at_part, &J, work >= 65536.0);
        if (J.failed)
            return gptq_fail(GPTQ_ERR_NOMEM, "attention: cannot allocate the scores of %d keys",
                             a->start + a->len);
    }
    return GPTQ_OK;
}

#else /* not x86 */

gptq_status gptq_cpu_attention(const gptq_attention_args *a)
{
    return attention_widened(a);
}
#endif
