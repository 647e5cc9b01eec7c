/* kernels/backend.h: the one interface to compute (ggml-backend style).
 *
 * A backend is a table of function pointers; the CPU backend
 * (gptq_backend_cpu) always exists and is the reference every other backend
 * is tested against. Callers never #ifdef on a backend: they take a
 * `const gptq_backend *` and call through it.
 *
 * Conventions for every entry:
 * - Every entry takes the table it belongs to first (its state is be->ctx).
 *   An entry a backend cannot do is NULL; callers ask before using it, or
 *   a check entry (qgemm_check) answers.
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

#include "common/dtype.h"
#include "gptq/error.h"
#include "gptq/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An MLP's activation where it is not SiLU-gated (see activate). */
typedef enum gptq_act {
    GPTQ_ACT_RELU,      /* max(x, 0) (torch.nn.ReLU: -0 and NaN kept as they are) */
    GPTQ_ACT_GELU_TANH, /* BLOOM's bloom_gelu_forward, in float32:
                           x * 0.5 * (1 + tanh(0.79788456 * x * (1 + 0.044715 * x * x))) */
    GPTQ_ACT_GELU_PT,   /* torch's gelu(approximate='tanh') (Gemma's gelu_pytorch_tanh), in
                           float32: inner = sqrt(2/pi) * (x + 0.044715 * (x * x * x)),
                           0.5 * x * (1 + tanh(inner)) */
} gptq_act;

/* One sequence's attention problem over a KV cache, see `attention`. */
typedef struct gptq_attention_args {
    const float *q;   /* [len, n_heads * head_dim], RoPE applied */
    const float *k;   /* [start + len, n_kv_heads * head_dim] keys (rows 0..start+len-1) */
    const float *v;   /* [start + len, n_kv_heads * head_dim] values */
    const uint16_t *k_f16, *v_f16; /* instead of k and v (NULL then) when the cache holds
                                      binary16: only for a backend whose kv_dtypes lists F16 */
    float *out;       /* [len, n_heads * head_dim] */
    int len;          /* query tokens, at positions start .. start+len-1 */
    int start;        /* position of the first query token = cached tokens before it */
    int n_heads, n_kv_heads, head_dim;
    int window;       /* sliding window (Mistral): key j is seen by query p iff
                         p - window < j <= p; 0 = unlimited */
    float scale;      /* score scale, 1/sqrt(head_dim) for Llama */
    float softcap;    /* Gemma 2: a score s (scaled) becomes tanh(s / softcap) * softcap
                         before the mask and softmax; 0 = none */
    const float *alibi; /* [n_heads] ALiBi slopes (BLOOM), backend memory, or NULL: query
                           head h's score of key j gains alibi[h] * (float)j, j the key's
                           position (softmax's shift invariance makes it the paper's
                           slope * (j - p)), added after the scale as transformers does */
} gptq_attention_args;

/* A packed GPTQ linear in the kernels' layout: the one resident form of a
 * quantized linear on every backend (docs/ARCHITECTURE.md "The backend
 * table"). It is the checkpoint's v1 layout (gptq/quant.h) with the input
 * columns sorted by group, so that every group is one contiguous run of
 * columns, and the permutation kept: an act-order linear then runs as fast
 * as one without (the kernel gathers x through perm, nothing per weight).
 * gptq_linear_from_v1 / gptq_linear_to_v1 (kernels/linear.h) convert; on
 * disk it is always v1. */
typedef struct gptq_linear {
    gptq_packed P;  /* g_idx non-decreasing; P.owned as in gptq/quant.h */
    int32_t *perm;  /* [P.cols]: sorted column j is input feature perm[j];
                       NULL when the v1 columns were already in order */
    int chunked;    /* every group spans whole runs of 32 columns (true of
                       every GPTQ checkpoint with groups of 32..128 or per
                       channel): the device's fast kernels apply */
} gptq_linear;

/* A running Hessian in a backend's memory (see hessian_create). Opaque. */
typedef struct gptq_backend_hessian gptq_backend_hessian;

/* Bytes of an IPC memory handle on the wire (cudaIpcMemHandle_t). */
#define GPTQ_IPC_HANDLE_BYTES 64

typedef struct gptq_backend gptq_backend;

struct gptq_backend {
    const char *name;   /* "cpu", "cuda:0", ... */
    void *ctx;          /* the backend's own state; every entry receives the table */
    /* What runs it, for logs, status and benchmarks: device name ("cpu",
     * "NVIDIA H200", "gptq-emu"), SMs and compute capability (0 on the CPU),
     * memory size in bytes. emulated: the CUDA code running on the CPU
     * (kernels/cuda/emu/): results as the device's, speed nothing like it. */
    const char *device;
    int sm_count, cc_major, cc_minor;
    size_t total_memory;
    int emulated;

    /* ---- memory ------------------------------------------------------------ */
    /* `bytes` of backend memory, 64-byte aligned, or NULL (no message set:
     * report it with gptq_backend_alloc_fail). */
    void *(*alloc)(const gptq_backend *be, size_t bytes);
    void (*free)(const gptq_backend *be, void *ptr); /* NULL is fine */
    /* Copies between host and backend memory (either may be either for the
     * CPU backend). */
    gptq_status (*upload)(const gptq_backend *be, void *dst, const void *host_src, size_t bytes);
    gptq_status (*download)(const gptq_backend *be, void *host_dst, const void *src, size_t bytes);
    /* Copy within backend memory (regions may not overlap on CUDA); queued
     * after the work before it, like every compute entry. */
    gptq_status (*copy)(const gptq_backend *be, void *dst, const void *src, size_t bytes);
    /* Free and total bytes of the memory the backend allocates from. */
    gptq_status (*mem_info)(const gptq_backend *be, size_t *free_bytes, size_t *total_bytes);

    /* ---- dense linear algebra ----------------------------------------------- */
    /* y [n, out] = x [n, in] · float(W [out, in])ᵀ (+ bias [out] when not
     * NULL), W of dtype wdt: GPTQ_DT_F32, or another dtype that
     * weight_dtypes lists (F16/BF16: each weight converts exactly, the
     * products accumulate in float32). */
    void (*gemm)(const gptq_backend *be, const float *x, const void *W, gptq_dtype wdt,
                 const float *bias, float *y, int n, int in, int out);
    /* Bit (1u << dtype) for each weight dtype gemm and embed take (F32
     * always): dense weights are resident in their file's precision where
     * the backend takes it, float32 elsewhere (model/llama_weights.c). */
    unsigned weight_dtypes;
    /* The same with fp16 x and W (IEEE bits), float32 y, fp32 accumulation
     * (cuBLAS on tensor cores): the yardstick bench/kernels measures the
     * packed kernels against. NULL on the CPU. */
    gptq_status (*gemm_f16)(const gptq_backend *be, const uint16_t *x, const uint16_t *W, float *y,
                            int n, int in, int out);
    /* y [n] = fp16(x [n]), round to nearest even (writes binary16 KV rows;
     * bench/kernels' fp16 inputs). */
    void (*f32_to_f16)(const gptq_backend *be, const float *x, uint16_t *y, size_t n);

    /* ---- packed linears (gptq_linear, in this backend's memory) ------------- */
    /* Whether qgemm runs a linear of this shape: GPTQ_OK, else
     * GPTQ_ERR_UNSUPPORTED saying why (asked before quantizing for this
     * backend, so that a long job does not fail at its end). NULL: every
     * shape gptq_pack_check accepts. */
    gptq_status (*qgemm_check)(const gptq_backend *be, int rows, int cols, int bits);
    /* y [n, L->P.rows] = x [n, L->P.cols] · dequant(L)ᵀ (+ bias [rows]). Fails
     * on a malformed L. */
    gptq_status (*qgemm)(const gptq_backend *be, const gptq_linear *L, const float *x,
                         const float *bias, float *y, int n);
    /* The same product, allowed to round the activation for speed (the CPU:
     * to int8 per block of 32 inputs and integer dot products, relative
     * error about 1/254 of the block's largest input; kernels/cpu/
     * qgemm_int8.h). NULL: the backend has no faster form; use qgemm. */
    gptq_status (*qgemm_fast)(const gptq_backend *be, const gptq_linear *L, const float *x,
                              const float *bias, float *y, int n);

    /* ---- elementwise and row ops -------------------------------------------- */
    /* y [n, dim] = x / sqrt(mean(x²) + eps) * (offset + weight [dim]); y may
     * alias x. The mean of squares is taken in float32 as HF LlamaRMSNorm
     * does; offset is 0, or 1 for Gemma's RMSNorm, whose (1 + weight) is
     * summed in float32 as transformers does. */
    void (*rmsnorm)(const gptq_backend *be, const float *x, const float *weight, float *y, int n,
                    int dim, float eps, float offset);
    /* y [n, dim] = (x - mean(x)) / sqrt(var(x) + eps) * weight [dim] + bias [dim]
     * (torch.nn.LayerNorm: the biased variance, float32 result; mean and
     * variance may be summed in higher precision); y may alias x. OPT, BLOOM. */
    void (*layernorm)(const gptq_backend *be, const float *x, const float *weight,
                      const float *bias, float *y, int n, int dim, float eps);
    /* Rotary embedding in place on x [n, n_heads * head_dim], token i at
     * position pos[i]; inv_freq [head_dim / 2]. HF rotate_half convention:
     * element j of a head pairs with element j + head_dim/2 (not interleaved),
     * angle = float32(inv_freq[j] * pos), cos/sin rounded to float32. */
    void (*rope)(const gptq_backend *be, float *x, int n, int n_heads, int head_dim,
                 const int32_t *pos, const float *inv_freq);
    /* Causal grouped-query attention of one sequence (see gptq_attention_args):
     * query head h reads kv head h / (n_heads / n_kv_heads); softmax in
     * float32. Fails only for allocation of its scratch. */
    gptq_status (*attention)(const gptq_backend *be, const gptq_attention_args *a);
    /* Bit (1u << dtype) for each dtype a KV cache may hold for attention
     * (F32 always; 0 means F32 only): a model's caches hold binary16 where
     * listed, unless the model is set exact (model/llama_kv.c). */
    unsigned kv_dtypes;
    /* out [n] = silu(gate) * up; out may alias gate or up. */
    void (*silu_mul)(const gptq_backend *be, const float *gate, const float *up, float *out,
                     size_t n);
    /* x [n] = act(x) in place, for a non-gated MLP (OPT's fc1 -> ReLU). */
    void (*activate)(const gptq_backend *be, gptq_act act, float *x, size_t n);
    /* y [n] += x [n]. */
    void (*add)(const gptq_backend *be, float *y, const float *x, size_t n);
    /* y [n] *= x [n] (a gated MLP whose activation is not SiLU: act(gate) * up). */
    void (*mul)(const gptq_backend *be, float *y, const float *x, size_t n);
    /* x [n] *= s (Gemma's embedding times sqrt(hidden), a float32 product). */
    void (*scale)(const gptq_backend *be, float *x, float s, size_t n);
    /* out [n, dim] = float(table [vocab, dim] rows ids[i]), table of dtype
     * tdt (as gemm's W). The caller has checked 0 <= ids[i] < vocab. */
    void (*embed)(const gptq_backend *be, const void *table, gptq_dtype tdt, const int32_t *ids,
                  int n, int dim, float *out);
    /* Row-wise softmax / log-softmax in place on x [n, cols] (max-subtracted;
     * log-softmax sums exp in double). */
    void (*softmax)(const gptq_backend *be, float *x, int n, int cols);
    void (*log_softmax)(const gptq_backend *be, float *x, int n, int cols);

    /* ---- GPTQ (the CPU's are gptq/quant.h's functions; the device's follow
     * them step for step, kernels/cuda/gptq.cu) -------------------------------- */
    /* An empty running Hessian for `cols` inputs (float64 running mean).
     * Free with hessian_free. */
    gptq_status (*hessian_create)(const gptq_backend *be, int cols, gptq_backend_hessian **out);
    void (*hessian_free)(const gptq_backend *be, gptq_backend_hessian *h); /* NULL is fine */
    /* H <- H n/(n+b) + (2/(n+b)) XᵀX for X [tokens, cols] float32 (backend
     * memory) holding b = n_samples samples (gptq_hessian_add). */
    gptq_status (*hessian_add)(const gptq_backend *be, gptq_backend_hessian *h, const float *X,
                               int64_t tokens, int n_samples);
    /* The current H as float32 [cols, cols], full symmetric, into backend
     * memory. */
    gptq_status (*hessian_get)(const gptq_backend *be, const gptq_backend_hessian *h, float *H);
    int64_t (*hessian_samples)(const gptq_backend *be, const gptq_backend_hessian *h);
    /* GPTQ on one layer: W [rows, cols] and H [cols, cols] (backend memory,
     * float32) are read, not modified. Fills the host result *out as
     * gptq_quantize_layer does (caller frees with gptq_quant_result_free)
     * and, when Q is not NULL, the dequantized weights [rows, cols] into
     * backend memory. Synchronous. Errors: gptq_quantize_layer's. */
    gptq_status (*quantize_layer)(const gptq_backend *be, const float *W, const float *H, int rows,
                                  int cols, const gptq_quant_config *cfg, gptq_quant_result *out,
                                  float *Q);

    /* ---- sharing memory between processes ---------------------------------- *
     * NULL on the CPU, whose memory is shared as POSIX shm by its owner. */
    /* `bytes` of memory from an allocation of its own (so that it can be
     * exported) and its handle. Free with ipc_free. */
    gptq_status (*ipc_alloc)(const gptq_backend *be, size_t bytes, void **ptr,
                             unsigned char handle[GPTQ_IPC_HANDLE_BYTES]);
    void (*ipc_free)(const gptq_backend *be, void *ptr); /* NULL is fine */
    /* Open another process's handle; its base address here. Close with
     * ipc_close. Fails (GPTQ_ERR_DEVICE) for a handle of this very process,
     * a freed allocation or another device. */
    gptq_status (*ipc_open)(const gptq_backend *be, const unsigned char handle[GPTQ_IPC_HANDLE_BYTES],
                            void **ptr);
    gptq_status (*ipc_close)(const gptq_backend *be, void *ptr);

    /* ---- timing and errors --------------------------------------------------- */
    /* Time `runs` calls of fn(arg) with device events: ms[i] is the device
     * time of call i. For benchmarks; fn must only queue work on this
     * backend. NULL on the CPU (time it with a clock). */
    gptq_status (*time_calls)(const gptq_backend *be, void (*fn)(void *arg), void *arg, int runs,
                              float *ms);
    /* Wait for the work queued so far: GPTQ_OK, or the first failure of
     * asynchronous work since the last call, with its message (a device
     * fault is sticky: every later call fails too). NULL where every entry
     * reports its errors when called (the CPU). */
    gptq_status (*sync)(const gptq_backend *be);
};

/* The CPU backend: OpenBLAS sgemm (its threads are the only ones the dense
 * ops use; see kernels/cpu/ops.c), the hand-written packed kernels of
 * kernels/cpu/qgemm.c. A static table; never NULL. */
const gptq_backend *gptq_backend_cpu(void);

/* Host buffers copied into a backend's memory one after another: memory
 * from alloc(ctx, bytes) when alloc is set (a caller's arena, from which
 * nothing is freed), else be->alloc. The first failure sticks in `st` with
 * a message naming what failed, and later calls return NULL. */
typedef struct gptq_uploader {
    const gptq_backend *be;
    void *(*alloc)(void *ctx, size_t bytes);
    void *ctx;
    gptq_status st;
} gptq_uploader;

/* A copy of src [bytes] in u's memory, or NULL (src NULL, or a failure:
 * u->st). */
void *gptq_upload_bytes(gptq_uploader *u, const void *src, size_t bytes, const char *what);

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
