// kernels/cuda/memory.cu: device memory: the table's alloc/free/upload/
// download on the backend's stream, device-to-device copies, event timing.
#include <stdlib.h>

#include "kernels/cuda/cuda_common.cuh"

// ---- Kernel launchers (no kernels here: copies and allocations) ------------

// The table's memory comes from the device's stream-ordered pool on the
// backend's one stream: the forward allocates its activations per call, and
// cudaMalloc/cudaFree (which synchronizes the device) per call would cost
// more than a decode step. The pool keeps freed memory for reuse (release
// threshold raised at init, backend_cuda.cu); stream order makes a free
// safe while queued kernels still read the buffer. Memory that other
// processes map comes from ipc_alloc (plain cudaMalloc) instead.
void *cuda_alloc(size_t bytes)
{
    void *p = nullptr;
    // pool allocations are 256-byte aligned, more than the table's 64
    if (cudaMallocAsync(&p, bytes ? bytes : 1, g_cuda.stream) != cudaSuccess) {
        cudaGetLastError(); // an allocation failure is not sticky; clear it
        return nullptr;
    }
    return p;
}

void cuda_free(void *ptr)
{
    if (!ptr)
        return;
    cudaError_t err = cudaFreeAsync(ptr, g_cuda.stream);
    if (err != cudaSuccess) {
        cudaGetLastError(); // keep it for the next sync, not for an unrelated launch check
        cuda_note_error("cudaFreeAsync", err);
    }
}

void cuda_free_sync(void *ptr)
{
    if (!ptr)
        return;
    // cudaFree synchronizes the device, so no kernel still reads ptr
    cuda_note_error("cudaFree", cudaFree(ptr));
}

// Copies are ordered after the work already queued on the stream and
// complete before returning, so a download sees every earlier entry's
// result and the host buffer of an upload is free to reuse at once.
gptq_status cuda_upload(void *dst, const void *host_src, size_t bytes)
{
    if (!bytes)
        return GPTQ_OK;
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyDefault, g_cuda.stream));
    return cuda_sync();
}

gptq_status cuda_download(void *host_dst, const void *src, size_t bytes)
{
    if (!bytes)
        return cuda_sync();
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDefault, g_cuda.stream));
    return cuda_sync();
}

gptq_status cuda_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_cuda.stream));
    return GPTQ_OK;
}

gptq_status cuda_time_calls(void (*fn)(void *arg), void *arg, int runs, float *ms)
{
    cudaEvent_t start = nullptr, stop = nullptr;
    gptq_status st = GPTQ_OK;
    cudaError_t err;
    if ((err = cudaEventCreate(&start)) != cudaSuccess || (err = cudaEventCreate(&stop)) != cudaSuccess) {
        st = cuda_fail(GPTQ_ERR_DEVICE, "time_calls: cudaEventCreate: %s", cudaGetErrorString(err));
        goto out;
    }
    for (int i = 0; i < runs && st == GPTQ_OK; i++) {
        if ((err = cudaEventRecord(start, g_cuda.stream)) != cudaSuccess) {
            st = cuda_fail(GPTQ_ERR_DEVICE, "time_calls: cudaEventRecord: %s", cudaGetErrorString(err));
            break;
        }
        fn(arg);
        if ((err = cudaEventRecord(stop, g_cuda.stream)) != cudaSuccess ||
            (err = cudaEventSynchronize(stop)) != cudaSuccess ||
            (err = cudaEventElapsedTime(&ms[i], start, stop)) != cudaSuccess) {
            st = cuda_fail(GPTQ_ERR_DEVICE, "time_calls: run %d: %s", i, cudaGetErrorString(err));
            break;
        }
        st = cuda_sync(); // a failure inside fn surfaces here
    }
out:
    if (start)
        cudaEventDestroy(start);
    if (stop)
        cudaEventDestroy(stop);
    return st;
}
