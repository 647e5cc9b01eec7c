/* kernels/backend.h: the one interface to compute (ggml-backend style).
 *
 * A backend is a table of function pointers; the CPU backend
 * (gptq_backend_cpu) always exists and is the reference every other backend
 * is tested against. Callers never #ifdef on a backend: they take a
 * `const gptq_backend *` and call through it.
 *
 * Conventions for every entry:
 * - Pointers are in the backend's memory (host memory for the CPU backend),
 *   obtained from `alloc` or, for the CPU backend, any host allocation.
 * - Matrices are row-major float32 unless named otherwise; a shape comment
 *   follows each pointer. `n` is a number of rows (tokens).
 * - Entries are reentrant: any number of threads may call them at once on
 *   distinct output buffers (inputs may be shared).
 * - Entries that can fail return gptq_status with the message set; the
 *   others have no failure mode for arguments within their documented
 *   ranges (sizes > 0, pointers valid): checking those is the caller's job. */
#ifndef GPTQ_KERNELS_BACKEND_H
#define GPTQ_KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"
#include "gptq/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One sequence's attention problem over a KV cache, see `attention`. */
typedef struct gptq_attention_args {
    const float *q;   /* [len, n_heads * head_dim], RoPE applied */
    const float *k;   /* [start + len, n_kv_heads * head_dim] keys (rows 0..start+len-1) */
    const float *v;   /* [start + len, n_kv_heads * head_dim] values */
    float *out;       /* [len, n_heads * head_dim] */
    int len;          /* query tokens, at positions start .. start+len-1 */
    int start;        /* position of the first query token = cached tokens before it */
    int n_heads, n_kv_heads, head_dim;
    int window;       /* sliding window (Mistral): key j is seen by query p iff
                         p - window < j <= p; 0 = unlimited */
    float scale;      /* score scale, 1/sqrt(head_dim) for Llama */
} gptq_attention_args;

typedef struct gptq_backend {
    const char *name; /* "cpu", "cuda:0", ... */

    /* ---- memory ------------------------------------------------------------ */
    /* `bytes` of backend memory, 64-byte aligned, or NULL (no message set:
     * report it with gptq_backend_alloc_fail). */
    void *(*alloc)(size_t bytes);
    void (*free)(void *ptr); /* NULL is fine */
    /* Copies between host and backend memory (either may be either for the
     * CPU backend). */
    gptq_status (*upload)(void *dst, const void *host_src, size_t bytes);
    gptq_status (*download)(void *host_dst, const void *src, size_t bytes);
    /* Copy within backend memory (regions may not overlap on CUDA); queued
     * after the work before it, like every compute entry. */
    gptq_status (*copy)(void *dst, const void *src, size_t bytes);

    /* ---- dense linear algebra ----------------------------------------------- */
    /* y [n, out] = x [n, in] · W [out, in]ᵀ (+ bias [out] when not NULL). */
    void (*gemm_f32)(const float *x, const float *W, const float *bias, float *y, int n, int in,
                     int out);
    /* y [n, P->rows] = x [n, P->cols] · dequant(P)ᵀ (+ bias [P->rows]). P is a
     * GPTQ v1 packed linear (gptq/quant.h). Fails on a malformed P. */
    gptq_status (*qgemm)(const gptq_packed *P, const float *x, const float *bias, float *y, int n);

    /* ---- elementwise and row ops -------------------------------------------- */
    /* y [n, dim] = x / sqrt(mean(x²) + eps) * weight [dim]; y may alias x.
     * The mean of squares is taken in float32 as HF LlamaRMSNorm does. */
    void (*rmsnorm)(const float *x, const float *weight, float *y, int n, int dim, float eps);
    /* Rotary embedding in place on x [n, n_heads * head_dim], token i at
     * position pos[i]; inv_freq [head_dim / 2]. HF rotate_half convention:
     * element j of a head pairs with element j + head_dim/2 (not interleaved),
     * angle = float32(inv_freq[j] * pos), cos/sin rounded to float32. */
    void (*rope)(float *x, int n, int n_heads, int head_dim, const int32_t *pos,
                 const float *inv_freq);
    /* Causal grouped-query attention of one sequence (see gptq_attention_args):
     * query head h reads kv head h / (n_heads / n_kv_heads); softmax in
     * float32. Fails only for allocation of its scratch. */
    gptq_status (*attention)(const gptq_attention_args *a);
    /* out [n] = silu(gate) * up; out may alias gate or up. */
    void (*silu_mul)(const float *gate, const float *up, float *out, size_t n);
    /* y [n] += x [n]. */
    void (*add)(float *y, const float *x, size_t n);
    /* out [n, dim] = table [vocab, dim] rows ids[i]. The caller has checked
     * 0 <= ids[i] < vocab. */
    void (*embed)(const float *table, const int32_t *ids, int n, int dim, float *out);
    /* Row-wise softmax / log-softmax in place on x [n, cols] (max-subtracted;
     * log-softmax sums exp in double). */
    void (*softmax)(float *x, int n, int cols);
    void (*log_softmax)(float *x, int n, int cols);

    /* ---- errors -------------------------------------------------------------- */
    /* Wait for the work queued so far: GPTQ_OK, or the first failure of
     * asynchronous work since the last call, with its message (a device
     * fault is sticky: every later call fails too). NULL where every entry
     * reports its errors when called (the CPU). */
    gptq_status (*sync)(void);
} gptq_backend;

/* The CPU backend: OpenBLAS sgemm (its threads are the only ones the dense
 * ops use; see kernels/cpu/ops.c), the hand-written packed kernels of
 * kernels/cpu/qgemm.c. A static table; never NULL. */
const gptq_backend *gptq_backend_cpu(void);

/* The failure of be->alloc, for `what` (printf-style, e.g. "forward: hidden
 * states for 12 tokens"): the backend's own error when it has one (a device
 * fault leaves allocations failing, and "out of memory" would hide the
 * cause), else GPTQ_ERR_NOMEM naming the backend's memory. */
gptq_status gptq_backend_alloc_fail(const gptq_backend *be, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
