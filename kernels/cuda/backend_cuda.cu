// kernels/cuda/backend_cuda.cu: the module's one entry point (device
// bring-up, kernels/backend_module.h), its gptq_backend table, error
// plumbing.
//
// The program dlopen()s this module (kernels/backend_select.c) and calls
// GPTQ_BACKEND_MODULE_INIT with what it lends (g_host).
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

cuda_state g_cuda = {-1, "", nullptr, nullptr, PTHREAD_MUTEX_INITIALIZER, {}};
const gptq_backend_host *g_host;
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_note_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_noted[1280];             // first asynchronous failure since sync
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
    if (g_host)
        return g_host->fail(status, "%s", msg);
    fprintf(stderr, "gptq_cuda: %s\n", msg); // no program hook: do not lose it
    return status;
}

gptq_status cuda_check(cudaError_t err, const char *what, const char *file, int line)
{
    if (err == cudaSuccess)
        return GPTQ_OK;
    cudaGetLastError();
    return cuda_fail(GPTQ_ERR_DEVICE, "%s:%d: %s: %s (%s)", file, line, what,
                     cudaGetErrorString(err), cudaGetErrorName(err));
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
                         g_cuda.name, noted);
    if (err != cudaSuccess)
        return cuda_fail(GPTQ_ERR_DEVICE, "%s: queued work failed: %s (%s)", g_cuda.name,
                         cudaGetErrorString(err), cudaGetErrorName(err));
    return GPTQ_OK;
}

// ---- the tables -------------------------------------------------------------

// The CUDA runtime's current device belongs to each host thread, and only
// the thread that ran the init entry has it set: every entry of the
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

// Each table entry takes the table first; the module has one device, so
// the entry drops it and calls the function of the same name.
template <auto F> struct bound;
template <typename R, typename... A, R (*F)(A...)> struct bound<F> {
    static R call(const gptq_backend *, A... a)
    {
        bind_thread();
        return F(a...);
    }
};
#define B(fn) bound<fn>::call

static gptq_backend cuda_backend = {
    .name = g_cuda.name,
    .ctx = &g_cuda,
    .device = nullptr, // filled at init, with the properties below
    .sm_count = 0,
    .cc_major = 0,
    .cc_minor = 0,
    .total_memory = 0,
#ifdef GPTQ_CUDA_EMULATED
    .emulated = 1,
#else
    .emulated = 0,
#endif
    .alloc = B(cuda_alloc),
    .free = B(cuda_free),
    .upload = B(cuda_upload),
    .download = B(cuda_download),
    .copy = B(cuda_copy),
    .mem_info = B(cuda_mem_info),
    .gemm = B(cuda_gemm),
    .weight_dtypes = 1u << GPTQ_DT_F32,
    .gemm_f16 = B(cuda_gemm_f16),
    .f32_to_f16 = B(cuda_f32_to_f16),
    .qgemm_check = B(cuda_qgemm_check),
    .qgemm = B(cuda_qgemm),
    .qgemm_fast = nullptr, /* qgemm is the only product here */
    .rmsnorm = B(cuda_rmsnorm),
    .layernorm = B(cuda_layernorm),
    .rope = B(cuda_rope),
    .attention = B(cuda_attention),
    .kv_dtypes = 1u << GPTQ_DT_F32,
    .silu_mul = B(cuda_silu_mul),
    .activate = B(cuda_activate),
    .add = B(cuda_add),
    .mul = B(cuda_mul),
    .scale = B(cuda_scale),
    .embed = B(cuda_embed),
    .softmax = B(cuda_softmax),
    .log_softmax = B(cuda_log_softmax),
    .hessian_create = B(cuda_hessian_create),
    .hessian_free = B(cuda_hessian_free),
    .hessian_add = B(cuda_hessian_add),
    .hessian_get = B(cuda_hessian_get),
    .hessian_samples = B(cuda_hessian_samples),
    .quantize_layer = B(cuda_gptq_quantize_layer),
    .ipc_alloc = B(cuda_ipc_alloc),
    .ipc_free = B(cuda_ipc_free),
    .ipc_open = B(cuda_ipc_open),
    .ipc_close = B(cuda_ipc_close),
    .time_calls = B(cuda_time_calls),
    .sync = B(cuda_sync),
};

// ---- exported entry points -------------------------------------------------

static __global__ void probe_kernel() {}

static int init_fail(char *why, size_t why_len, const char *what, cudaError_t err)
{
    snprintf(why, why_len, "%s: %s (%s)", what, cudaGetErrorString(err), cudaGetErrorName(err));
    return 1;
}

// The module's one exported symbol (kernels/backend_module.h): bring up
// `device` and give the backend table. A second device is refused (one per
// process).
GPTQ_CUDA_EXPORT int
gptq_backend_module_init_v3(const gptq_backend_host *host, int device, const gptq_backend **out,
                            char *why, size_t why_len)
{
    static_assert(GPTQ_BACKEND_MODULE_ABI == 3, "rename the entry point with the ABI version");
    int rc = 1, count = 0;
    cudaError_t err;
    cublasStatus_t cst;
    if (!host || host->abi != GPTQ_BACKEND_MODULE_ABI) {
        snprintf(why, why_len, "the program speaks backend module ABI %d, this module %d",
                 host ? host->abi : -1, GPTQ_BACKEND_MODULE_ABI);
        return 1;
    }
    pthread_mutex_lock(&g_init_lock);
    g_host = host;
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
    snprintf(g_cuda.name, sizeof g_cuda.name, "cuda:%d", device);
    cuda_backend.device = g_cuda.prop.name;
    cuda_backend.sm_count = g_cuda.prop.multiProcessorCount;
    cuda_backend.cc_major = g_cuda.prop.major;
    cuda_backend.cc_minor = g_cuda.prop.minor;
    cuda_backend.total_memory = g_cuda.prop.totalGlobalMem;
    *out = &cuda_backend;
    rc = 0;
done:
    pthread_mutex_unlock(&g_init_lock);
    return rc;
}
