// kernels/cuda/emu/emu.h: the CUDA language for host C++, so that the
// project's own .cu files compile with g++ and their kernels run on the CPU
// (the emulated module, libgptq_cuda_emu.so). translate.py rewrites the two
// pieces of CUDA syntax C++ cannot parse (kernel<<<...>>>(...) launches and
// `extern __shared__` arrays) and force-includes this header; everything
// else is provided here: keywords, built-in variables, vector and half
// types, intrinsics, warp collectives, atomics and the launch.
//
// How kernels run (simt.cc): every CUDA thread of a block is a fiber; a
// block's fibers run one at a time on the launching host thread and switch
// only at __syncthreads and at warp collectives (shuffles, votes,
// __syncwarp), in an order that changes from block to block (forward,
// reverse, seeded random), so a missing barrier or a race between threads
// changes the result. Barriers that not every thread reaches (or that
// threads reach at different __syncthreads), lanes of one collective that
// wait at different collectives, and shuffles from lanes outside the mask
// or that exited are reported as kernel faults. Shared memory is
// filled with 0xff bytes (NaN, -1) before use; global memory comes from
// guard-paged allocations (runtime.cc). Under AddressSanitizer every access
// to global, static shared and dynamic shared memory is checked against its
// allocation's bounds.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define GPTQ_CUDA_EMULATED 1

// ---- keywords ---------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __constant__ static
// Static shared arrays: one copy per kernel (blocks run one at a time), in
// a section of their own so the runtime can poison them and AddressSanitizer
// can guard them (-fsanitize-sections=gptq_emu_shared).
#define __shared__ static __attribute__((section("gptq_emu_shared")))

// ---- vector types ---------------------------------------------------------------
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

#include "kernels/cuda/emu/half.h"
#include "kernels/cuda/emu/api.h"

namespace gptq_emu {

// ---- the running thread -----------------------------------------------------------
struct thread_ctx {
    uint3 idx;
};
extern thread_ctx *g_thread; // the fiber running now
extern uint3 g_block_idx;
extern dim3 g_block_dim, g_grid_dim;

enum collective {
    COLL_SHFL_IDX,
    COLL_SHFL_XOR,
    COLL_SHFL_UP,
    COLL_SHFL_DOWN,
    COLL_BALLOT,
    COLL_ANY,
    COLL_ALL,
    COLL_SYNCWARP,
};
void syncthreads(const char *file, int line);
// The lanes of the calling thread's warp that the block has.
unsigned active_mask(void);
// The lane's result of a warp collective: the shuffled value's bits, or the
// vote. The calling fiber waits until every lane of `mask` has arrived.
uint64_t warp_collective(collective kind, unsigned mask, uint64_t value, int param, int width);
// A kernel fault: the launch fails, the message names kernel, block, thread.
[[noreturn]] void fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *dynamic_shared_base(void);

template <typename T> T *dynamic_shared() { return static_cast<T *>(dynamic_shared_base()); }

template <typename T> T shuffle(collective kind, unsigned mask, T v, int param, int width)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = warp_collective(kind, mask, bits, param, width);
    T r;
    memcpy(&r, &bits, sizeof r);
    return r;
}

// ---- launches -----------------------------------------------------------------------
struct launch_config {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const char *name, *file;
    int line;
    const void *fn;
};
// Run body(arg) as every thread of cfg's grid; ptrs are the kernel's pointer
// arguments (each must be null or device memory). Sets the last error.
void run_kernel(const launch_config &cfg, void (*body)(void *), void *arg,
                const void *const *ptrs, int n_ptrs);

template <typename T> inline void note_pointer(const T &, const void **, int &) {}
template <typename T> inline void note_pointer(T *const &p, const void **ptrs, int &n)
{
    ptrs[n++] = (const void *)p;
}

template <typename... P> struct launcher {
    void (*fn)(P...);
    launch_config cfg;
    template <typename... A> void operator()(A &&...a) const
    {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
        std::tuple<typename std::decay<P>::type...> args(std::forward<A>(a)...);
        const void *ptrs[sizeof...(P) + 1];
        int n = 0;
        std::apply([&](const auto &...x) { (note_pointer(x, ptrs, n), ...); }, args);
        struct closure {
            void (*fn)(P...);
            std::tuple<typename std::decay<P>::type...> *args;
        } c{fn, &args};
        run_kernel(cfg, [](void *p) {
            closure *c = static_cast<closure *>(p);
            std::apply(c->fn, *c->args);
        }, &c, ptrs, n);
    }
};

template <typename... P>
launcher<P...> launch(void (*fn)(P...), const char *name, const char *file, int line, dim3 grid,
                      dim3 block, size_t smem = 0, cudaStream_t stream = nullptr)
{
    return launcher<P...>{fn, {grid, block, smem, stream, name, file, line, (const void *)fn}};
}

} // namespace gptq_emu

// ---- built-in variables ---------------------------------------------------------------
#define threadIdx (static_cast<const uint3 &>(::gptq_emu::g_thread->idx))
#define blockIdx (static_cast<const uint3 &>(::gptq_emu::g_block_idx))
#define blockDim (static_cast<const dim3 &>(::gptq_emu::g_block_dim))
#define gridDim (static_cast<const dim3 &>(::gptq_emu::g_grid_dim))
#define warpSize 32

// ---- synchronization and warp collectives ------------------------------------------------
// A macro, so that the barrier knows its site: threads waiting at different
// __syncthreads are a fault.
#define __syncthreads() ::gptq_emu::syncthreads(__FILE__, __LINE__)
static inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    ::gptq_emu::warp_collective(::gptq_emu::COLL_SYNCWARP, mask, 0, 0, 32);
}
template <typename T> T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    return ::gptq_emu::shuffle(::gptq_emu::COLL_SHFL_IDX, mask, v, src, width);
}
template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    return ::gptq_emu::shuffle(::gptq_emu::COLL_SHFL_XOR, mask, v, lane_mask, width);
}
template <typename T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    return ::gptq_emu::shuffle(::gptq_emu::COLL_SHFL_UP, mask, v, (int)delta, width);
}
template <typename T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    return ::gptq_emu::shuffle(::gptq_emu::COLL_SHFL_DOWN, mask, v, (int)delta, width);
}
static inline unsigned __ballot_sync(unsigned mask, int pred)
{
    return (unsigned)::gptq_emu::warp_collective(::gptq_emu::COLL_BALLOT, mask, pred != 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int pred)
{
    return (int)::gptq_emu::warp_collective(::gptq_emu::COLL_ANY, mask, pred != 0, 0, 32);
}
static inline int __all_sync(unsigned mask, int pred)
{
    return (int)::gptq_emu::warp_collective(::gptq_emu::COLL_ALL, mask, pred != 0, 0, 32);
}
static inline unsigned __activemask(void) { return ::gptq_emu::active_mask(); }

// ---- atomics (blocks and threads run one at a time: plain read-modify-write) -----------
template <typename T> T atomicAdd(T *p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T> T atomicSub(T *p, T v)
{
    T old = *p;
    *p = old - v;
    return old;
}
template <typename T> T atomicMin(T *p, T v)
{
    T old = *p;
    *p = v < old ? v : old;
    return old;
}
template <typename T> T atomicMax(T *p, T v)
{
    T old = *p;
    *p = v > old ? v : old;
    return old;
}
template <typename T> T atomicExch(T *p, T v)
{
    T old = *p;
    *p = v;
    return old;
}
template <typename T> T atomicCAS(T *p, T compare, T v)
{
    T old = *p;
    if (old == compare)
        *p = v;
    return old;
}
template <typename T> T atomicOr(T *p, T v)
{
    T old = *p;
    *p = old | v;
    return old;
}
template <typename T> T atomicAnd(T *p, T v)
{
    T old = *p;
    *p = old & v;
    return old;
}
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

// ---- loads and bit casts --------------------------------------------------------------
template <typename T> static inline T __ldg(const T *p) { return *p; }
static inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline int __float_as_int(float f)
{
    int u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float __int_as_float(int u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline int __clz(int v) { return v ? __builtin_clz((unsigned)v) : 32; }
static inline int __ffs(int v) { return __builtin_ffs(v); }

// ---- arithmetic with explicit rounding (the module builds with -ffp-contract=off) -------
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }

// CUDA's min/max for every integer width and for floating point.
#define GPTQ_EMU_MINMAX(T)                                                                       \
    static inline T min(T a, T b) { return b < a ? b : a; }                                      \
    static inline T max(T a, T b) { return a < b ? b : a; }
GPTQ_EMU_MINMAX(int)
GPTQ_EMU_MINMAX(unsigned)
GPTQ_EMU_MINMAX(long)
GPTQ_EMU_MINMAX(unsigned long)
GPTQ_EMU_MINMAX(long long)
GPTQ_EMU_MINMAX(unsigned long long)
#undef GPTQ_EMU_MINMAX
// Floating point: fminf/fmaxf, as CUDA's min/max (a NaN operand loses).
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
