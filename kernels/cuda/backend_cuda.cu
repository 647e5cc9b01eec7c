// kernels/cuda/backend_cuda.cu: the module's entry points: device bring-up,
// the gptq_backend table and the gptq_cuda_ops extension, error plumbing.
//
// The program dlopen()s this module (kernels/backend_select.c), hands over
// its gptq_fail with gptq_cuda_set_fail, then calls gptq_cuda_backend_init.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

cuda_state g_cuda = {-1, nullptr, nullptr, PTHREAD_MUTEX_INITIALIZER, {}};

typedef gptq_status (*fail_fn)(gptq_status, const char *, ...);
static fail_fn g_fail;                 // the program's gptq_fail, or NULL
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_note_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_noted[1280];             // first asynchronous failure since sync
static char g_name[64];                // "cuda:N"
static __thread char t_last[1024];     // this thread's last cuda_fail message

// ---- error plumbing -------------------------------------------------------

gptq_status cuda_fail(gptq_status status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(t_last, msg, sizeof t_last);
    if (g_fail)
        return g_fail(status, "%s", msg);
    fprintf(stderr, "gptq_cuda: %s\n", msg); // no program hook: do not lose it
    return status;
}

void cuda_note_error(const char *what, cudaError_t err)
{
    if (err == cudaSuccess)
        return;
    pthread_mutex_lock(&g_note_lock);
    if (!g_noted[0])
        snprintf(g_noted, sizeof g_noted, "%s: %s (%s)", what, cudaGetErrorString(err),
                 cudaGetErrorName(err));
    pthread_mutex_unlock(&g_note_lock);
}

void cuda_note_failure(const char *what)
{
    pthread_mutex_lock(&g_note_lock);
    if (!g_noted[0])
        snprintf(g_noted, sizeof g_noted, "%s: %s", what, t_last);
    pthread_mutex_unlock(&g_note_lock);
}

gptq_status cuda_sync(void)
{
    cudaError_t err = cudaStreamSynchronize(g_cuda.stream);
    char noted[sizeof g_noted];
    pthread_mutex_lock(&g_note_lock);
    memcpy(noted, g_noted, sizeof noted);
    g_noted[0] = 0;
    pthread_mutex_unlock(&g_note_lock);
    if (noted[0])
        return cuda_fail(GPTQ_ERR_DEVICE, "%s: an earlier asynchronous operation failed: %s",
                         g_name, noted);
    if (err != cudaSuccess)
        return cuda_fail(GPTQ_ERR_DEVICE, "%s: queued work failed: %s (%s)", g_name,
                         cudaGetErrorString(err), cudaGetErrorName(err));
    return GPTQ_OK;
}

// ---- the tables -------------------------------------------------------------

// The CUDA runtime's current device belongs to each host thread, and only
// the thread that ran gptq_cuda_backend_init has it set: every entry of the
// tables first makes the module's device current in the calling thread
// (once per thread), so daemon workers and client threads on cuda:N, N > 0,
// allocate, launch and open IPC handles on the right device.
static __thread int t_bound = -1;

static inline void bind_thread()
{
    const int d = g_cuda.device;
    if (t_bound != d && d >= 0 && cudaSetDevice(d) == cudaSuccess)
        t_bound = d;
}

template <auto F> struct bound;
template <typename R, typename... A, R (*F)(A...)> struct bound<F> {
    static R call(A... a)
    {
        bind_thread();
        return F(a...);
    }
};
#define B(fn) bound<fn>::call

static gptq_status table_qgemm(const gptq_packed *P, const float *x, const float *bias, float *y,
                               int n)
{
    return cuda_qgemm_v1(P, x, bias, y, n);
}

static const gptq_backend cuda_backend = {
    .name = g_name,
    .alloc = B(cuda_alloc),
    .free = B(cuda_free),
    .upload = B(cuda_upload),
    .download = B(cuda_download),
    .copy = B(cuda_copy),
    .gemm_f32 = B(cuda_gemm_f32),
    .qgemm = B(table_qgemm),
    .rmsnorm = B(cuda_rmsnorm),
    .rope = B(cuda_rope),
    .attention = B(cuda_attention),
    .silu_mul = B(cuda_silu_mul),
    .add = B(cuda_add),
    .embed = B(cuda_embed),
    .softmax = B(cuda_softmax),
    .log_softmax = B(cuda_log_softmax),
    .sync = B(cuda_sync),
};

static gptq_cuda_ops cuda_ops = {
    .device_name = nullptr,
    .sm_count = 0,
    .cc_major = 0,
    .cc_minor = 0,
    .total_memory = 0,
#ifdef GPTQ_CUDA_EMULATED
    .emulated = 1,
#else
    .emulated = 0,
#endif
    .sync = B(cuda_sync),
    .copy = B(cuda_copy),
    .time_calls = B(cuda_time_calls),
    .arena_create = B(cuda_arena_create),
    .arena_alloc = B(cuda_arena_alloc),
    .arena_reset = B(cuda_arena_reset),
    .arena_used = B(cuda_arena_used),
    .arena_destroy = B(cuda_arena_destroy),
    .f32_to_f16 = B(cuda_f32_to_f16),
    .f16_to_f32 = B(cuda_f16_to_f32),
    .gemm_f16 = B(cuda_gemm_f16),
    .qlinear_create = B(cuda_qlinear_create),
    .qlinear_destroy = B(cuda_qlinear_destroy),
    .qlinear_bytes = B(cuda_qlinear_bytes),
    .qlinear_gemm = B(cuda_qlinear_gemm),
    .sample = B(cuda_sample),
    .hessian_create = B(cuda_hessian_create),
    .hessian_destroy = B(cuda_hessian_destroy),
    .hessian_add = B(cuda_hessian_add),
    .hessian_get = B(cuda_hessian_get),
    .hessian_samples = B(cuda_hessian_samples),
    .quantize_layer = B(cuda_gptq_quantize_layer),
    .ipc_alloc = B(cuda_ipc_alloc),
    .ipc_free = B(cuda_ipc_free),
    .ipc_open = B(cuda_ipc_open),
    .ipc_close = B(cuda_ipc_close),
    .mem_info = B(cuda_mem_info),
};

// ---- exported entry points -------------------------------------------------

static __global__ void probe_kernel() {}

// Route the module's failure messages into the program's gptq_errmsg().
GPTQ_CUDA_EXPORT void gptq_cuda_set_fail(fail_fn fail)
{
    g_fail = fail;
}

static int init_fail(char *why, size_t why_len, const char *what, cudaError_t err)
{
    snprintf(why, why_len, "%s: %s (%s)", what, cudaGetErrorString(err), cudaGetErrorName(err));
    return 1;
}

// Bring up `device` and give the backend table. 0 on success; else nonzero
// with the reason in why ("no CUDA device", "driver too old", ...). Idempotent
// for the same device; a second device is refused (one per process).
GPTQ_CUDA_EXPORT int gptq_cuda_backend_init(char *why, size_t why_len, int device,
                                            const gptq_backend **out)
{
    int rc = 1, count = 0;
    cudaError_t err;
    cublasStatus_t cst;
    pthread_mutex_lock(&g_init_lock);
    if (g_cuda.device >= 0) {
        if (g_cuda.device == device) {
            *out = &cuda_backend;
            rc = 0;
        } else {
            snprintf(why, why_len, "the CUDA module already drives cuda:%d; one device per process",
                     g_cuda.device);
        }
        goto done;
    }
    if ((err = cudaGetDeviceCount(&count)) != cudaSuccess) {
        init_fail(why, why_len, "cudaGetDeviceCount", err);
        goto done;
    }
    if (count == 0 || device < 0 || device >= count) {
        snprintf(why, why_len, "no CUDA device %d (this machine has %d)", device, count);
        goto done;
    }
    if ((err = cudaSetDevice(device)) != cudaSuccess ||
        (err = cudaGetDeviceProperties(&g_cuda.prop, device)) != cudaSuccess) {
        init_fail(why, why_len, "cudaSetDevice/cudaGetDeviceProperties", err);
        goto done;
    }
    if (g_cuda.prop.major < 8) {
        snprintf(why, why_len, "cuda:%d is %s (sm_%d%d); the module is built for sm_80 and newer",
                 device, g_cuda.prop.name, g_cuda.prop.major, g_cuda.prop.minor);
        goto done;
    }
    if ((err = cudaStreamCreateWithFlags(&g_cuda.stream, cudaStreamNonBlocking)) != cudaSuccess) {
        init_fail(why, why_len, "cudaStreamCreate", err);
        goto done;
    }
    // A first launch finds out whether the module has code for this GPU
    // (built for other gpu_archs: cudaErrorNoKernelImageForDevice).
    probe_kernel<<<1, 32, 0, g_cuda.stream>>>();
    if ((err = cudaGetLastError()) != cudaSuccess ||
        (err = cudaStreamSynchronize(g_cuda.stream)) != cudaSuccess) {
        init_fail(why, why_len, "probe kernel (rebuild with -Dgpu_archs= this GPU's sm)", err);
        cudaStreamDestroy(g_cuda.stream);
        g_cuda.stream = nullptr;
        goto done;
    }
    if ((cst = cublasCreate(&g_cuda.cublas)) != CUBLAS_STATUS_SUCCESS ||
        (cst = cublasSetStream(g_cuda.cublas, g_cuda.stream)) != CUBLAS_STATUS_SUCCESS) {
        snprintf(why, why_len, "cublasCreate: %s", cublasGetStatusString(cst));
        if (g_cuda.cublas)
            cublasDestroy(g_cuda.cublas);
        g_cuda.cublas = nullptr;
        cudaStreamDestroy(g_cuda.stream);
        g_cuda.stream = nullptr;
        goto done;
    }
    {
        // Keep freed pool memory for reuse instead of returning it to the
        // driver at every synchronization (see cuda_alloc).
        cudaMemPool_t pool;
        uint64_t keep = UINT64_MAX;
        if ((err = cudaDeviceGetDefaultMemPool(&pool, device)) != cudaSuccess ||
            (err = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep)) !=
                cudaSuccess) {
            init_fail(why, why_len, "cudaDeviceGetDefaultMemPool/cudaMemPoolSetAttribute", err);
            cublasDestroy(g_cuda.cublas);
            g_cuda.cublas = nullptr;
            cudaStreamDestroy(g_cuda.stream);
            g_cuda.stream = nullptr;
            goto done;
        }
    }
    g_cuda.device = device;
    t_bound = device;
    snprintf(g_name, sizeof g_name, "cuda:%d", device);
    cuda_ops.device_name = g_cuda.prop.name;
    cuda_ops.sm_count = g_cuda.prop.multiProcessorCount;
    cuda_ops.cc_major = g_cuda.prop.major;
    cuda_ops.cc_minor = g_cuda.prop.minor;
    cuda_ops.total_memory = g_cuda.prop.totalGlobalMem;
    *out = &cuda_backend;
    rc = 0;
done:
    pthread_mutex_unlock(&g_init_lock);
    return rc;
}

// The extension table of an initialised module, or NULL before init.
GPTQ_CUDA_EXPORT const gptq_cuda_ops *gptq_cuda_backend_ops(void)
{
    return g_cuda.device >= 0 ? &cuda_ops : nullptr;
}
