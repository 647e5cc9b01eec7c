// kernels/cuda/emu/internal.h: what the emulator's parts (runtime.cc,
// simt.cc, blas.cc) share and the emulated code never sees.
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <mutex>

#include "kernels/cuda/emu/api.h"

#if defined(__SANITIZE_ADDRESS__)
#define GPTQ_EMU_ASAN 1
extern "C" {
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
int __asan_address_is_poisoned(void const volatile *addr);
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
}
#define EMU_POISON(p, n) __asan_poison_memory_region((p), (n))
#define EMU_UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define GPTQ_EMU_ASAN 0
#define EMU_POISON(p, n) ((void)(p), (void)(n))
#define EMU_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace gptq_emu {

// One device: its properties (runtime.cc fills them at first use).
const cudaDeviceProp &device_prop(void);

// Every device operation (kernel, copy, memset, library call) holds this
// lock: work of one stream runs in issue order, one operation at a time.
std::recursive_mutex &device_lock(void);

// Errors. `set_error` records the calling thread's last error (what
// cudaGetLastError returns) and passes err through; a sticky error (a kernel
// fault) poisons every later call, as a real context does.
cudaError_t set_error(cudaError_t err);
cudaError_t sticky_error(void);
void set_sticky(cudaError_t err, const char *detail);

// A diagnostic line on stderr ("gptq-emu: ..."), unless GPTQ_CUDA_EMU_QUIET.
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Device allocations.
struct alloc_info {
    char *base;
    size_t bytes;
    const char *kind; // "cudaMalloc", "cudaMallocAsync", "IPC mapping"
    uint64_t id;
};
bool find_alloc(const void *p, alloc_info *out); // the allocation holding p
// cudaSuccess when [p, p + bytes) lies in one live allocation; else
// cudaErrorInvalidValue with a note naming `call` and `what`.
cudaError_t check_device_range(const void *p, size_t bytes, const char *call, const char *what);

} // namespace gptq_emu
