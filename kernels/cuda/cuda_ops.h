/* kernels/cuda/cuda_ops.h: what the CUDA module offers beyond kernels/backend.h.
 *
 * The backend table (gptq_backend) is float32 throughout and takes packed
 * layers in the checkpoint's v1 layout; that keeps callers backend-agnostic
 * but leaves speed on the table. The fast path lives here: fp16 activations,
 * cuBLAS fp16 GEMM, and packed linears repacked once at load
 * (gptq_cuda_qlinear, layout in kernels/cuda/qgemm.cuh) so that act-order
 * costs nothing at run time. Plain C: tests and benchmarks include it without
 * CUDA headers. Reach it with gptq_backend_cuda_ops() (kernels/backend_select.h).
 *
 * Conventions: every pointer named d_* is device memory; "half" data is
 * IEEE fp16 bits in uint16_t. Work is queued on the backend's one stream and
 * is asynchronous unless said otherwise; `sync` waits for it and reports the
 * first failure of an asynchronous entry since the last sync (launch errors
 * of void entries are kept, not lost). One device per process: the table and
 * these entries have no context argument. Reentrant like the table. */
#ifndef GPTQ_KERNELS_CUDA_OPS_H
#define GPTQ_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"
#include "gptq/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A packed linear resident on the device in the repacked layout. Opaque. */
typedef struct gptq_cuda_qlinear gptq_cuda_qlinear;

/* A bump allocator over one device allocation: per-forward scratch without
 * cudaMalloc in the hot loop. Not thread-safe; one per thread or per job. */
typedef struct gptq_cuda_arena gptq_cuda_arena;

/* A running Hessian on the device (see gptq_cuda_ops.hessian_*). Opaque. */
typedef struct gptq_cuda_hessian gptq_cuda_hessian;

/* Bytes of a CUDA IPC memory handle (cudaIpcMemHandle_t) on the wire. */
#define GPTQ_CUDA_IPC_HANDLE_BYTES 64

/* Which kernel a qlinear call takes; for tests and benchmarks. */
typedef enum gptq_cuda_qpath {
    GPTQ_CUDA_QPATH_AUTO = 0, /* packed kernel for n <= GPTQ_CUDA_PACKED_MAX_N, else dequant */
    GPTQ_CUDA_QPATH_PACKED,   /* fused dequant-dot on the packed words (any n) */
    GPTQ_CUDA_QPATH_DEQUANT,  /* dequantize to an fp16 scratch, then cuBLAS fp16 GEMM */
} gptq_cuda_qpath;

/* Largest batch the packed kernel takes under AUTO. Above it every row of
 * the batch re-reads the weights from L2 once per 8 batch rows and the CUDA
 * cores become the limit; cuBLAS on tensor cores wins. Tune with
 * bench/kernels. */
#define GPTQ_CUDA_PACKED_MAX_N 64

typedef struct gptq_cuda_ops {
    /* Device name and properties, for logs and benchmarks. */
    const char *device_name;
    int sm_count;
    int cc_major, cc_minor;
    size_t total_memory;
    /* 1 when this is the emulated module (the CUDA code running on the CPU,
     * kernels/cuda/emu/): results as the device's, speed nothing like it.
     * Tests use smaller shapes there. */
    int emulated;

    /* Wait for all queued work; GPTQ_ERR_DEVICE naming the first failed
     * entry (asynchronous launch or execution error) since the last sync. */
    gptq_status (*sync)(void);
    /* Device-to-device copy of `bytes`, queued (the copy-bandwidth yardstick
     * of bench/kernels). */
    gptq_status (*copy)(void *d_dst, const void *d_src, size_t bytes);
    /* Time `runs` calls of fn(arg) with CUDA events on the backend's stream:
     * ms[i] is the device time of call i (launch gaps between calls are not
     * counted; each call is synchronized before the next). For benchmarks;
     * fn must only queue work on this backend. */
    gptq_status (*time_calls)(void (*fn)(void *arg), void *arg, int runs, float *ms);

    /* ---- arenas ------------------------------------------------------------ */
    gptq_status (*arena_create)(size_t bytes, gptq_cuda_arena **out);
    /* `bytes` from the arena, 256-byte aligned, or NULL when it is full. */
    void *(*arena_alloc)(gptq_cuda_arena *a, size_t bytes);
    void (*arena_reset)(gptq_cuda_arena *a); /* every allocation at once */
    size_t (*arena_used)(const gptq_cuda_arena *a);
    void (*arena_destroy)(gptq_cuda_arena *a); /* NULL is fine; syncs first */

    /* ---- dtype conversion (round to nearest even) ------------------------ */
    void (*f32_to_f16)(const float *d_x, uint16_t *d_y, size_t n);
    void (*f16_to_f32)(const uint16_t *d_x, float *d_y, size_t n);

    /* ---- dense fp16 -------------------------------------------------------- */
    /* d_y [n, out] (float32) = d_x [n, in] · d_W [out, in]ᵀ, fp16 inputs,
     * fp32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F), tensor cores. */
    gptq_status (*gemm_f16)(const uint16_t *d_x, const uint16_t *d_W, float *d_y, int n, int in,
                            int out);

    /* ---- packed linears ---------------------------------------------------- */
    /* Repack the host-resident v1 layer P (gptq/quant.h) and upload it.
     * Checks P the way gptq_cpu_qgemm does (bits, word multiples, g_idx in
     * range) and that every group, with columns sorted by g_idx, spans a
     * multiple of 32 columns (true of every GPTQ checkpoint: group sizes are
     * 32..128 or per-channel, act-order or not); else GPTQ_ERR_UNSUPPORTED.
     * Caller destroys. */
    gptq_status (*qlinear_create)(const gptq_packed *P, gptq_cuda_qlinear **out);
    void (*qlinear_destroy)(gptq_cuda_qlinear *L); /* NULL is fine */
    /* Bytes of device memory L holds (weights, group params, permutation). */
    size_t (*qlinear_bytes)(const gptq_cuda_qlinear *L);
    /* d_y [n, rows] (float32) = x [n, cols] · dequant(L)ᵀ (+ d_bias [rows]
     * when not NULL), x fp16 (d_x16) or float32 (d_x32): exactly one is
     * non-NULL. fp32 accumulation. n >= 1. The DEQUANT path takes scratch of
     * 2·rows·cols + 2·n·cols bytes from the stream-ordered pool. */
    gptq_status (*qlinear_gemm)(const gptq_cuda_qlinear *L, const uint16_t *d_x16,
                                const float *d_x32, const float *d_bias, float *d_y, int n,
                                gptq_cuda_qpath path);

    /* ---- sampling ---------------------------------------------------------- */
    /* One token per row of d_logits [n, vocab] into d_ids [n]: the argmax
     * (lowest index on ties) when temperature <= 0, else a draw from
     * softmax(logits / temperature) by inverse CDF with the uniform
     * gptq_cuda_uniform(seed, row). */
    gptq_status (*sample)(const float *d_logits, int n, int vocab, float temperature,
                          uint64_t seed, int32_t *d_ids);

    /* ---- GPTQ on the device (kernels/cuda/gptq.cu) --------------------------
     * The same algorithm and results as gptq/quant.h's host functions
     * (gptq_hessian_*, gptq_quantize_layer): integer codes mostly identical,
     * losses within 1e-4 relative. */
    /* An empty running Hessian for `cols` inputs (device memory, float64
     * running mean like quant/hessian.c). Caller destroys. */
    gptq_status (*hessian_create)(int cols, gptq_cuda_hessian **out);
    void (*hessian_destroy)(gptq_cuda_hessian *h); /* NULL is fine */
    /* H <- H n/(n+b) + (2/(n+b)) XᵀX for d_X [tokens, cols] float32 (device)
     * holding b = n_samples samples; one cuBLAS SYRK per call. Queued. */
    gptq_status (*hessian_add)(gptq_cuda_hessian *h, const float *d_X, int64_t tokens,
                               int n_samples);
    /* The current H as float32 [cols, cols], full symmetric, into device
     * memory d_H. Queued. */
    gptq_status (*hessian_get)(const gptq_cuda_hessian *h, float *d_H);
    int64_t (*hessian_samples)(const gptq_cuda_hessian *h);
    /* GPTQ on one layer: d_W [rows, cols] and d_H [cols, cols] (device,
     * float32) are read, not modified. Fills the host result *out exactly as
     * gptq_quantize_layer does (codes, scales, zeros, g_idx, Q, loss,
     * zeros_raised, timings; caller frees with gptq_quant_result_free) and,
     * when d_Q is not NULL, the dequantized weights [rows, cols] into device
     * memory. Synchronous. Errors: those of gptq_quantize_layer
     * (GPTQ_ERR_NUMERIC when H + damp is not positive definite, config
     * errors), GPTQ_ERR_NOMEM, GPTQ_ERR_DEVICE. */
    gptq_status (*quantize_layer)(const float *d_W, const float *d_H, int rows, int cols,
                                  const gptq_quant_config *cfg, gptq_quant_result *out,
                                  float *d_Q);

    /* ---- sharing device memory between processes (kernels/cuda/ipc.cu) ---- */
    /* `bytes` of device memory from its own cudaMalloc (so that it can be
     * exported) and its IPC handle. Free with ipc_free. */
    gptq_status (*ipc_alloc)(size_t bytes, void **d_ptr,
                             unsigned char handle[GPTQ_CUDA_IPC_HANDLE_BYTES]);
    void (*ipc_free)(void *d_ptr); /* NULL is fine */
    /* Open another process's handle (cudaIpcOpenMemHandle, lazy peer
     * access) and give its base address here; close with ipc_close. Fails
     * (GPTQ_ERR_DEVICE) for a handle of this very process, a freed
     * allocation or another device. */
    gptq_status (*ipc_open)(const unsigned char handle[GPTQ_CUDA_IPC_HANDLE_BYTES],
                            void **d_ptr);
    gptq_status (*ipc_close)(void *d_ptr);
    /* cudaMemGetInfo of the device. */
    gptq_status (*mem_info)(size_t *free_bytes, size_t *total_bytes);
} gptq_cuda_ops;

/* The uniform in [0, 1) that `sample` uses for row `row`: splitmix64 of
 * seed + row, top 24 bits. Here so a host twin reproduces a draw. */
#ifdef __CUDACC__
#define GPTQ_CUDA_HOST_DEVICE __host__ __device__
#else
#define GPTQ_CUDA_HOST_DEVICE
#endif
static inline GPTQ_CUDA_HOST_DEVICE float gptq_cuda_uniform(uint64_t seed, int row)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(row + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

#ifdef __cplusplus
}
#endif
#endif
