// kernels/cuda/ipc.cu: device memory shared between processes (CUDA IPC):
// an exporter's own cudaMalloc allocation and its handle, an importer's
// mapping of a handle, and the device's free memory (to show that weights
// mapped by many processes occupy the device once).
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

static_assert(sizeof(cudaIpcMemHandle_t) == GPTQ_IPC_HANDLE_BYTES,
              "kernels/backend.h's GPTQ_IPC_HANDLE_BYTES must be the size of cudaIpcMemHandle_t");

// ---- Kernel launchers (no kernels here: allocations and mappings) ----------

gptq_status cuda_ipc_alloc(size_t bytes, void **d_ptr, unsigned char *handle)
{
    *d_ptr = nullptr;
    void *p = nullptr;
    // Its own cudaMalloc, never a sub-range of a pool or of a bigger
    // allocation: a handle names a whole allocation, and the importer's base
    // address is that allocation's start.
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err == cudaErrorMemoryAllocation) {
        // The stream-ordered pool keeps what the table's allocations freed
        // (cuda_alloc); give that back to the driver and try once more.
        cudaGetLastError();
        cudaMemPool_t pool;
        if (cudaStreamSynchronize(g_cuda.stream) == cudaSuccess &&
            cudaDeviceGetDefaultMemPool(&pool, g_cuda.device) == cudaSuccess)
            cudaMemPoolTrimTo(pool, 0);
        cudaGetLastError();
        err = cudaMalloc(&p, bytes ? bytes : 1);
    }
    if (err != cudaSuccess) {
        cudaGetLastError(); // an allocation failure is not sticky; clear it
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        cudaGetLastError();
        return cuda_fail(GPTQ_ERR_NOMEM,
                         "ipc_alloc: cannot allocate %zu bytes on cuda:%d (%zu of %zu free): %s",
                         bytes, g_cuda.device, free_b, total_b, cudaGetErrorString(err));
    }
    cudaIpcMemHandle_t h;
    err = cudaIpcGetMemHandle(&h, p);
    if (err != cudaSuccess) {
        cudaGetLastError();
        cudaFree(p);
        cudaGetLastError();
        return cuda_fail(GPTQ_ERR_DEVICE, "ipc_alloc: cudaIpcGetMemHandle of %zu bytes on cuda:%d: %s (%s)",
                         bytes, g_cuda.device, cudaGetErrorString(err), cudaGetErrorName(err));
    }
    memcpy(handle, &h, sizeof h);
    *d_ptr = p;
    return GPTQ_OK;
}

void cuda_ipc_free(void *d_ptr)
{
    // cudaFree synchronizes the device, so no queued kernel still reads it.
    // Importers must have closed their mappings first (the daemon's leases
    // see to it): freeing memory another process still has open is
    // undefined behaviour in CUDA.
    cuda_free_sync(d_ptr); // its own cudaMalloc, not the stream-ordered pool
}

gptq_status cuda_ipc_open(const unsigned char *handle, void **d_ptr)
{
    *d_ptr = nullptr;
    cudaIpcMemHandle_t h;
    memcpy(&h, handle, sizeof h);
    void *p = nullptr;
    CUDA_CHECK(cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess));
    *d_ptr = p;
    return GPTQ_OK;
}

gptq_status cuda_ipc_close(void *d_ptr)
{
    if (!d_ptr)
        return GPTQ_OK;
    // Work queued on our stream may still read the mapping: wait for it
    // (the close itself does not order against our stream).
    gptq_status st = cuda_sync();
    CUDA_CHECK(cudaIpcCloseMemHandle(d_ptr));
    return st;
}

gptq_status cuda_mem_info(size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = *total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
    return GPTQ_OK;
}
