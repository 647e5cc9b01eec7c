// kernels/cuda/emu/simt.cc: kernel launches in the emulated module. Each
// CUDA thread of a block is a fiber with its own stack; the block's fibers
// run one at a time on the launching host thread and give way only at
// __syncthreads and at warp collectives. Blocks run one after another.
//
// Order. Between two synchronization points every runnable thread runs
// once, in an order that changes from block to block: forward, reverse or
// a seeded random permutation (GPTQ_CUDA_EMU_ORDER=forward|reverse|random
// pins one; GPTQ_CUDA_EMU_SEED changes the permutations). A kernel that
// reads what another thread writes without a barrier between them sees the
// write in some orders and not in others, so its results change.
//
// Faults (the launch fails with a sticky error whose text says where and
// why): a barrier that some threads reach after others exited; a warp
// collective whose mask leaves out the calling lane, names a lane that
// exited, waits at a barrier or at another collective, or that reads a
// lane outside the mask; pointer arguments that are not device memory.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <unordered_map>
#include <vector>

#include "kernels/cuda/emu/emu.h"
#include "kernels/cuda/emu/internal.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

extern "C" {
// The static __shared__ arrays of every kernel (emu.h puts them here).
extern char __start_gptq_emu_shared[] __attribute__((weak, visibility("hidden")));
extern char __stop_gptq_emu_shared[] __attribute__((weak, visibility("hidden")));
}

namespace gptq_emu {

bool stream_ok(cudaStream_t s); // runtime.cc

thread_ctx *g_thread;
uint3 g_block_idx;
dim3 g_block_dim, g_grid_dim;

namespace {

enum tstate { T_READY, T_BARRIER, T_WARP, T_DONE };

struct fiber_thread {
    thread_ctx ctx;
    int lin, lane, warp;
    tstate state;
    // the collective it waits in
    collective kind;
    unsigned mask;
    uint64_t value, result;
    int param, width;
    // the __syncthreads it waits at
    const char *bar_file;
    int bar_line;
    // the fiber
    void *sp;
    char *stack;
    size_t stack_size;
    void *asan_fake;
    bool started;
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
};

// ---- context switches -----------------------------------------------------------------

#if defined(__x86_64__)
extern "C" void gptq_emu_switch(void **save_sp, void *load_sp);
asm(R"(
    .text
    .p2align 4
    .globl gptq_emu_switch
    .hidden gptq_emu_switch
    .type gptq_emu_switch, @function
gptq_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size gptq_emu_switch, .-gptq_emu_switch
)");
#endif

// The launch being run (one at a time: device_lock).
struct launch_state {
    const launch_config *cfg;
    void (*body)(void *);
    void *arg;
    std::vector<fiber_thread> threads;
    std::vector<fiber_thread *> order;
    std::vector<int> in_collective; // per warp: lanes waiting in a collective
    std::vector<unsigned> live;     // per warp: lanes that exist and have not exited
    fiber_thread *cur;
    char *dyn_smem;
    size_t dyn_bytes;
    bool faulted;
    char fault_text[1024];
#if defined(__x86_64__)
    void *sched_sp;
#else
    ucontext_t sched_uc;
#endif
    const void *sched_bottom;
    size_t sched_size;
};
launch_state L;

std::vector<char *> g_stacks; // reused across launches
const size_t STACK_BYTES = GPTQ_EMU_ASAN ? (512u << 10) : (128u << 10);
uint64_t g_launches;

char *stack_for(size_t i)
{
    while (g_stacks.size() <= i) {
        const size_t ps = 4096;
        char *m = (char *)mmap(nullptr, STACK_BYTES + ps, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (m == MAP_FAILED)
            return nullptr;
        mprotect(m, ps, PROT_NONE); // overflow faults instead of running into the next stack
        g_stacks.push_back(m + ps);
    }
    return g_stacks[i];
}

void to_scheduler(fiber_thread *t, bool final)
{
#if GPTQ_EMU_ASAN
    __sanitizer_start_switch_fiber(final ? nullptr : &t->asan_fake, L.sched_bottom, L.sched_size);
#else
    (void)final;
#endif
#if defined(__x86_64__)
    gptq_emu_switch(&t->sp, L.sched_sp);
#else
    swapcontext(&t->uc, &L.sched_uc);
#endif
#if GPTQ_EMU_ASAN
    __sanitizer_finish_switch_fiber(t->asan_fake, &L.sched_bottom, &L.sched_size);
#endif
}

void fiber_entry()
{
#if GPTQ_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &L.sched_bottom, &L.sched_size);
#endif
    L.body(L.arg);
    fiber_thread *t = L.cur;
    t->state = T_DONE;
    to_scheduler(t, true);
    __builtin_unreachable();
}

void fiber_start(fiber_thread *t)
{
#if defined(__x86_64__)
    uintptr_t top = ((uintptr_t)t->stack + t->stack_size) & ~(uintptr_t)15;
    void **sp = (void **)(top - 64);
    for (int i = 0; i < 6; i++)
        sp[i] = nullptr; // r15 r14 r13 r12 rbx rbp: rbp 0 ends backtraces
    sp[6] = (void *)&fiber_entry;
    t->sp = sp;
#else
    getcontext(&t->uc);
    t->uc.uc_stack.ss_sp = t->stack;
    t->uc.uc_stack.ss_size = t->stack_size;
    t->uc.uc_link = nullptr;
    makecontext(&t->uc, (void (*)())fiber_entry, 0);
#endif
    t->started = true;
}

void resume(fiber_thread *t)
{
    L.cur = t;
    g_thread = &t->ctx;
#if GPTQ_EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, t->stack, t->stack_size);
#endif
#if defined(__x86_64__)
    gptq_emu_switch(&L.sched_sp, t->sp);
#else
    swapcontext(&L.sched_uc, &t->uc);
#endif
#if GPTQ_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

// ---- faults -----------------------------------------------------------------------------

void vfault_at(const fiber_thread *t, const char *fmt, va_list ap)
{
    if (L.faulted)
        return;
    char what[640];
    vsnprintf(what, sizeof what, fmt, ap);
    const launch_config *c = L.cfg;
    if (t)
        snprintf(L.fault_text, sizeof L.fault_text,
                 "kernel %s (%s:%d) block (%u,%u,%u) thread (%u,%u,%u): %s", c->name, c->file,
                 c->line, g_block_idx.x, g_block_idx.y, g_block_idx.z, t->ctx.idx.x, t->ctx.idx.y,
                 t->ctx.idx.z, what);
    else
        snprintf(L.fault_text, sizeof L.fault_text, "kernel %s (%s:%d) block (%u,%u,%u): %s",
                 c->name, c->file, c->line, g_block_idx.x, g_block_idx.y, g_block_idx.z, what);
    L.faulted = true;
}

void sched_fault(const fiber_thread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sched_fault(const fiber_thread *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfault_at(t, fmt, ap);
    va_end(ap);
}

const char *coll_name(collective k)
{
    static const char *const names[] = {"__shfl_sync", "__shfl_xor_sync", "__shfl_up_sync",
                                        "__shfl_down_sync", "__ballot_sync", "__any_sync",
                                        "__all_sync", "__syncwarp"};
    return names[k];
}

const char *state_name(tstate s)
{
    static const char *const names[] = {"still running", "waiting at __syncthreads",
                                        "waiting in a warp collective", "exited"};
    return names[s];
}

// ---- warp collectives --------------------------------------------------------------------

// Lane t just arrived at a collective (or, with `force`, a collective is
// stuck): if every lane of its mask has arrived, give them their results;
// fault on anything CUDA leaves undefined. Cheap until the last lane of
// the mask arrives: the warp counts its lanes in collectives.
void try_complete(fiber_thread *t, bool force = false)
{
    const int base = t->warp * 32;
    const unsigned M = t->mask, live = L.live[t->warp], A = M & live;
    // Lanes of the mask that exited (or that a partial warp lacks) take no
    // part, as on the device ("all non-exited threads named in mask").
    if (!force && L.in_collective[t->warp] < __builtin_popcount(A))
        return;
    if (!(M >> t->lane & 1u)) {
        sched_fault(t, "%s with mask 0x%08x, which leaves out the calling lane %d",
                    coll_name(t->kind), M, t->lane);
        return;
    }
    if (t->width < 1 || t->width > 32 || (t->width & (t->width - 1))) {
        sched_fault(t, "%s with width %d: use a power of two up to 32", coll_name(t->kind),
                    t->width);
        return;
    }
    for (int l = 0; l < 32; l++) {
        if (!(A >> l & 1u))
            continue;
        fiber_thread *u = &L.threads[base + l];
        if (u->state == T_READY)
            return; // not there yet
        if (u->state != T_WARP) {
            sched_fault(t, "%s with mask 0x%08x waits for lane %d, which is %s", coll_name(t->kind),
                        M, l, state_name(u->state));
            return;
        }
        if (u->kind != t->kind || u->mask != M || u->width != t->width) {
            sched_fault(t, "lanes %d and %d of warp %d meet at different collectives: %s mask "
                           "0x%08x width %d and %s mask 0x%08x width %d",
                        t->lane, l, t->warp, coll_name(t->kind), M, t->width, coll_name(u->kind),
                        u->mask, u->width);
            return;
        }
    }
    uint64_t vote = 0;
    for (int l = 0; l < 32; l++)
        if ((A >> l & 1u) && L.threads[base + l].value)
            vote |= 1ull << l;
    for (int l = 0; l < 32; l++) {
        if (!(A >> l & 1u))
            continue;
        fiber_thread *u = &L.threads[base + l];
        // PTX shfl.sync: b is taken mod 32; a segment of `width` lanes is
        // [lo, hi]; up reads within the segment, down and bfly up to its
        // end (bfly may reach an earlier segment), idx within it; a source
        // out of range reads the lane's own value.
        const int w = u->width, b = u->param & 31;
        const int lo = l & (32 - w), hi = lo | (w - 1);
        int src = l;
        switch (u->kind) {
        case COLL_SHFL_IDX: src = lo | (b & (w - 1)); break;
        case COLL_SHFL_XOR: src = (l ^ b) <= hi ? l ^ b : l; break;
        case COLL_SHFL_UP: src = l - b >= lo ? l - b : l; break;
        case COLL_SHFL_DOWN: src = l + b <= hi ? l + b : l; break;
        default: break;
        }
        switch (u->kind) {
        case COLL_SHFL_IDX:
        case COLL_SHFL_XOR:
        case COLL_SHFL_UP:
        case COLL_SHFL_DOWN:
            if (!(M >> src & 1u)) {
                sched_fault(u, "%s reads lane %d, outside mask 0x%08x (undefined on the device)",
                            coll_name(u->kind), src, M);
                return;
            }
            if (!(live >> src & 1u)) {
                sched_fault(u, "%s reads lane %d, which %s (undefined on the device)",
                            coll_name(u->kind), src,
                            base + src < (int)L.threads.size() ? "exited" : "this block lacks");
                return;
            }
            u->result = L.threads[base + src].value;
            break;
        case COLL_BALLOT:
            u->result = vote;
            break;
        case COLL_ANY:
            u->result = vote != 0;
            break;
        case COLL_ALL:
            u->result = vote == (uint64_t)A;
            break;
        case COLL_SYNCWARP:
            u->result = 0;
            break;
        }
    }
    for (int l = 0; l < 32; l++)
        if (A >> l & 1u)
            L.threads[base + l].state = T_READY;
    L.in_collective[t->warp] -= __builtin_popcount(A);
}

// ---- blocks ---------------------------------------------------------------------------------

enum order_kind { ORDER_FORWARD, ORDER_REVERSE, ORDER_RANDOM, ORDER_MIXED };

order_kind env_order(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("GPTQ_CUDA_EMU_ORDER");
        v = !e || !*e || !strcmp(e, "mixed") ? ORDER_MIXED
            : !strcmp(e, "forward")          ? ORDER_FORWARD
            : !strcmp(e, "reverse")          ? ORDER_REVERSE
                                             : ORDER_RANDOM;
    }
    return (order_kind)v;
}

uint64_t env_seed(void)
{
    static uint64_t s = 0;
    if (!s) {
        const char *e = getenv("GPTQ_CUDA_EMU_SEED");
        s = e && *e ? strtoull(e, nullptr, 10) * 2 + 1 : 0x9E3779B97F4A7C15ull;
    }
    return s;
}

uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void make_order(uint64_t block_linear)
{
    const size_t n = L.threads.size();
    order_kind k = env_order();
    if (k == ORDER_MIXED)
        k = (order_kind)((block_linear + g_launches) % 3);
    for (size_t i = 0; i < n; i++)
        L.order[i] = &L.threads[k == ORDER_REVERSE ? n - 1 - i : i];
    if (k == ORDER_RANDOM) {
        uint64_t x = env_seed() ^ (g_launches * 0x2545F4914F6CDD1Dull) ^ block_linear;
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)(splitmix(&x) % (i + 1));
            std::swap(L.order[i], L.order[j]);
        }
    }
}

// Ranges of the static shared section that hold arrays (AddressSanitizer
// puts redzones between them, which must stay poisoned).
std::vector<std::pair<char *, size_t>> &shared_ranges(void)
{
    static std::vector<std::pair<char *, size_t>> r;
    static bool done;
    if (!done) {
        done = true;
        char *a = __start_gptq_emu_shared, *b = __stop_gptq_emu_shared;
        if (a && b && b > a) {
#if GPTQ_EMU_ASAN
            char *run = nullptr;
            for (char *p = a; p < b; p++) {
                const bool ok = !__asan_address_is_poisoned(p);
                if (ok && !run)
                    run = p;
                if (!ok && run) {
                    r.push_back({run, (size_t)(p - run)});
                    run = nullptr;
                }
            }
            if (run)
                r.push_back({run, (size_t)(b - run)});
#else
            r.push_back({a, (size_t)(b - a)});
#endif
        }
    }
    return r;
}

void poison_shared(void)
{
    for (auto &r : shared_ranges())
        memset(r.first, 0xff, r.second);
    if (L.dyn_bytes)
        memset(L.dyn_smem, 0xff, L.dyn_bytes);
}

bool run_block(uint3 bidx, uint64_t block_linear)
{
    g_block_idx = bidx;
    const dim3 bd = L.cfg->block;
    const int n = (int)L.threads.size();
    for (int i = 0; i < n; i++) {
        fiber_thread *t = &L.threads[i];
        t->ctx.idx = {(unsigned)i % bd.x, (unsigned)i / bd.x % bd.y, (unsigned)i / (bd.x * bd.y)};
        t->lin = i;
        t->lane = i & 31;
        t->warp = i >> 5;
        t->state = T_READY;
        t->asan_fake = nullptr;
        if (t->started)
            EMU_UNPOISON(t->stack, t->stack_size); // a fiber abandoned by a fault
        t->started = false;
    }
    L.in_collective.assign((size_t)(n + 31) / 32, 0);
    L.live.assign((size_t)(n + 31) / 32, 0xffffffffu);
    if (n & 31)
        L.live.back() = (1u << (n & 31)) - 1;
    poison_shared();
    make_order(block_linear);
    for (;;) {
        int ready = 0;
        for (int k = 0; k < n; k++) {
            fiber_thread *t = L.order[k];
            if (t->state != T_READY)
                continue;
            if (!t->started)
                fiber_start(t);
            resume(t);
            if (L.faulted)
                return false;
            if (t->state == T_DONE) {
                t->started = false; // returned cleanly: its stack is clean
                L.live[t->warp] &= ~(1u << t->lane);
                // lanes waiting for it in a collective may now be complete
                for (int l = 0; l < 32 && L.in_collective[t->warp] && !L.faulted; l++) {
                    fiber_thread *u = &L.threads[(size_t)t->warp * 32 + (size_t)l];
                    if (L.live[t->warp] >> l & 1u && u->state == T_WARP) {
                        try_complete(u);
                        break;
                    }
                }
            } else if (t->state == T_WARP) {
                try_complete(t);
            }
            if (L.faulted)
                return false;
        }
        int done = 0, barrier = 0;
        fiber_thread *waiting = nullptr, *at_barrier = nullptr, *exited = nullptr;
        for (int i = 0; i < n; i++) {
            fiber_thread *t = &L.threads[i];
            switch (t->state) {
            case T_READY: ready++; break;
            case T_DONE: done++; exited = exited ? exited : t; break;
            case T_BARRIER: barrier++; at_barrier = at_barrier ? at_barrier : t; break;
            case T_WARP: waiting = waiting ? waiting : t; break;
            }
        }
        if (done == n)
            return true;
        if (ready)
            continue;
        if (waiting) { // its group cannot complete: say why
            try_complete(waiting, true);
            if (!L.faulted)
                sched_fault(waiting, "%s never completes", coll_name(waiting->kind));
            return false;
        }
        if (done) {
            sched_fault(at_barrier, "__syncthreads reached by %d threads, but %d threads of the "
                        "block exited without it (thread (%u,%u,%u) first): a barrier every "
                        "thread must reach", barrier, done, exited->ctx.idx.x, exited->ctx.idx.y,
                        exited->ctx.idx.z);
            return false;
        }
        // Every thread waits at the same __syncthreads: one in divergent
        // code (if ... __syncthreads(); else ... __syncthreads();) is
        // undefined on the device even when all threads reach one.
        for (int i = 1; i < n; i++) {
            const fiber_thread *a = &L.threads[0], *b = &L.threads[i];
            if (a->bar_line != b->bar_line ||
                (a->bar_file != b->bar_file && strcmp(a->bar_file, b->bar_file) != 0)) {
                sched_fault(b, "__syncthreads at %s:%d while thread (%u,%u,%u) waits at %s:%d: "
                            "a barrier in divergent code", b->bar_file, b->bar_line,
                            a->ctx.idx.x, a->ctx.idx.y, a->ctx.idx.z, a->bar_file, a->bar_line);
                return false;
            }
        }
        for (int i = 0; i < n; i++)
            L.threads[i].state = T_READY; // the barrier opens
    }
}

std::unordered_map<const void *, int> g_func_smem; // cudaFuncSetAttribute

} // namespace

// ---- what kernels call -------------------------------------------------------------------

void syncthreads(const char *file, int line)
{
    fiber_thread *t = L.cur;
    t->bar_file = file;
    t->bar_line = line;
    t->state = T_BARRIER;
    to_scheduler(t, false);
}

uint64_t warp_collective(collective kind, unsigned mask, uint64_t value, int param, int width)
{
    fiber_thread *t = L.cur;
    t->kind = kind;
    t->mask = mask;
    t->value = value;
    t->param = param;
    t->width = width;
    t->state = T_WARP;
    L.in_collective[t->warp]++;
    to_scheduler(t, false);
    return t->result;
}

void fault(const char *fmt, ...)
{
    fiber_thread *t = L.cur;
    va_list ap;
    va_start(ap, fmt);
    vfault_at(t, fmt, ap);
    va_end(ap);
    t->state = T_DONE;
    to_scheduler(t, true);
    __builtin_unreachable();
}

unsigned active_mask(void)
{
    // The warp's lanes that the block has. Fibers run one after another, so
    // which lanes have exited by now says nothing about convergence on a
    // device, where lanes of one warp run together.
    const int n = (int)L.threads.size(), first = L.cur->warp * 32;
    return n - first >= 32 ? 0xffffffffu : (1u << (n - first)) - 1;
}

void *dynamic_shared_base(void)
{
    return L.dyn_smem;
}

cudaError_t func_set_attribute(const void *fn, cudaFuncAttribute attr, int value)
{
    if (cudaError_t s = sticky_error())
        return set_error(s);
    if (!fn)
        return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::recursive_mutex> g(device_lock());
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > device_prop().sharedMemPerBlockOptin) {
            note("cudaFuncSetAttribute: %d bytes of dynamic shared memory; the device allows %zu",
                 value, device_prop().sharedMemPerBlockOptin);
            return set_error(cudaErrorInvalidValue);
        }
        g_func_smem[fn] = value;
        return cudaSuccess;
    }
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout)
        return cudaSuccess;
    return set_error(cudaErrorInvalidValue);
}

void run_kernel(const launch_config &cfg, void (*body)(void *), void *arg,
                const void *const *ptrs, int n_ptrs)
{
    if (cudaError_t s = sticky_error()) {
        set_error(s);
        return;
    }
    const cudaDeviceProp &prop = device_prop();
    const dim3 g = cfg.grid, b = cfg.block;
    const uint64_t threads = (uint64_t)b.x * b.y * b.z;
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z || threads > (uint64_t)prop.maxThreadsPerBlock ||
        b.x > (unsigned)prop.maxThreadsDim[0] || b.y > (unsigned)prop.maxThreadsDim[1] ||
        b.z > (unsigned)prop.maxThreadsDim[2] || g.x > (unsigned)prop.maxGridSize[0] ||
        g.y > (unsigned)prop.maxGridSize[1] || g.z > (unsigned)prop.maxGridSize[2]) {
        note("launch of %s (%s:%d): grid (%u,%u,%u) block (%u,%u,%u) is not a valid "
             "configuration", cfg.name, cfg.file, cfg.line, g.x, g.y, g.z, b.x, b.y, b.z);
        set_error(cudaErrorInvalidConfiguration);
        return;
    }
    if (!stream_ok(cfg.stream)) {
        set_error(cudaErrorInvalidResourceHandle);
        return;
    }
    std::lock_guard<std::recursive_mutex> lock(device_lock());
    // the kernel's cudaFuncAttributeMaxDynamicSharedMemorySize when set (it
    // may also lower the limit), else the default 48 KiB; static __shared__
    // arrays are not counted (one section holds every kernel's)
    size_t smem_limit = prop.sharedMemPerBlock;
    auto it = g_func_smem.find(cfg.fn);
    if (it != g_func_smem.end())
        smem_limit = (size_t)it->second;
    if (cfg.smem > smem_limit) {
        note("launch of %s (%s:%d): %zu bytes of dynamic shared memory, above the %zu allowed "
             "(cudaFuncSetAttribute raises it to at most %zu)", cfg.name, cfg.file, cfg.line,
             cfg.smem, smem_limit, prop.sharedMemPerBlockOptin);
        set_error(cudaErrorInvalidValue);
        return;
    }
    for (int i = 0; i < n_ptrs; i++) {
        alloc_info a;
        if (ptrs[i] && !find_alloc(ptrs[i], &a)) {
            char d[512];
            snprintf(d, sizeof d, "kernel %s (%s:%d): pointer argument %d (%p) is not device "
                     "memory", cfg.name, cfg.file, cfg.line, i + 1, ptrs[i]);
            note("%s", d);
            set_sticky(cudaErrorIllegalAddress, d);
            return;
        }
    }
    L.cfg = &cfg;
    L.body = body;
    L.arg = arg;
    L.faulted = false;
    L.threads.assign((size_t)threads, fiber_thread{});
    L.order.assign((size_t)threads, nullptr);
    for (size_t i = 0; i < (size_t)threads; i++) {
        L.threads[i].stack = stack_for(i);
        L.threads[i].stack_size = STACK_BYTES;
        if (!L.threads[i].stack) {
            set_error(cudaErrorLaunchOutOfResources);
            return;
        }
    }
    L.dyn_bytes = cfg.smem;
    L.dyn_smem = nullptr;
    if (posix_memalign((void **)&L.dyn_smem, 128, cfg.smem ? cfg.smem : 1) != 0) {
        set_error(cudaErrorLaunchOutOfResources);
        return;
    }
    g_grid_dim = g;
    g_block_dim = b;
    g_launches++;
    bool ok = true;
    uint64_t linear = 0;
    for (unsigned z = 0; z < g.z && ok; z++)
        for (unsigned y = 0; y < g.y && ok; y++)
            for (unsigned x = 0; x < g.x && ok; x++)
                ok = run_block({x, y, z}, linear++);
    free(L.dyn_smem);
    L.dyn_smem = nullptr;
    g_thread = nullptr;
    if (!ok) {
        note("%s", L.fault_text);
        set_sticky(cudaErrorLaunchFailure, L.fault_text);
    }
}

} // namespace gptq_emu
