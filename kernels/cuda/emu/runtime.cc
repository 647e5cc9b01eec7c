// kernels/cuda/emu/runtime.cc: the CUDA runtime calls of the emulated
// module: one device, memory, copies, streams and events, IPC handles,
// errors. Every call checks its arguments as the runtime does and is done
// when it returns (streams order nothing: they are all one queue here).
//
// Device memory: each allocation is its own mapping, page aligned (more
// than cudaMalloc's 256 bytes), between two inaccessible guard pages; the
// slack after the last byte is poisoned for AddressSanitizer; fresh memory
// holds 0xff bytes (NaN, -1), not zeros; freed memory stays inaccessible
// for a while (a quarantine), so a late access faults. cudaMalloc memory is
// a memfd, which another process maps through an IPC handle
// (/proc/PID/fd/N, checked against the exporter's pid start time and the
// allocation's id). Free device memory is shared by every process of the
// user on this machine (a table in /dev/shm), so a client that maps the
// daemon's weights sees them counted once.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <deque>
#include <map>

#include "kernels/cuda/emu/internal.h"

namespace gptq_emu {

// ---- errors and notes ----------------------------------------------------------

static thread_local cudaError_t t_last = cudaSuccess;
static cudaError_t g_sticky = cudaSuccess;
static char g_sticky_text[1536];

cudaError_t set_error(cudaError_t err)
{
    if (err != cudaSuccess)
        t_last = err;
    return err;
}

cudaError_t sticky_error(void)
{
    return __atomic_load_n(&g_sticky, __ATOMIC_ACQUIRE);
}

void set_sticky(cudaError_t err, const char *detail)
{
    if (sticky_error() == cudaSuccess) {
        snprintf(g_sticky_text, sizeof g_sticky_text, "%s [emulated: %s]",
                 err == cudaErrorIllegalAddress ? "an illegal memory access was encountered"
                                                : "unspecified launch failure",
                 detail);
        __atomic_store_n(&g_sticky, err, __ATOMIC_RELEASE);
    }
    t_last = err;
    if (getenv("GPTQ_CUDA_EMU_ABORT"))
        abort();
}

void note(const char *fmt, ...)
{
    if (getenv("GPTQ_CUDA_EMU_QUIET"))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "gptq-emu: %s\n", line);
}

// Every call starts here: a sticky error answers for it.
#define STICKY_GUARD()                                                                             \
    do {                                                                                           \
        if (cudaError_t s_ = sticky_error())                                                       \
            return set_error(s_);                                                                  \
    } while (0)

std::recursive_mutex &device_lock(void)
{
    static std::recursive_mutex m;
    return m;
}

// ---- the device -----------------------------------------------------------------------

static size_t env_size(const char *name, size_t fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end == 'G' || *end == 'g')
        n <<= 30;
    else if (*end == 'M' || *end == 'm')
        n <<= 20;
    return n ? (size_t)n : fallback;
}

const cudaDeviceProp &device_prop(void)
{
    static cudaDeviceProp p;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] {
        memset(&p, 0, sizeof p);
        // The limits of an sm_80 part, the oldest the module is built for;
        // few SMs so that grid-stride kernels run few blocks.
        snprintf(p.name, sizeof p.name, "gptq-emu (CUDA emulated on the CPU, sm_80 limits)");
        p.totalGlobalMem = env_size("GPTQ_CUDA_EMU_MEMORY", (size_t)8 << 30);
        p.sharedMemPerBlock = 48 * 1024;
        p.sharedMemPerBlockOptin = 163 * 1024;
        p.sharedMemPerMultiprocessor = 164 * 1024;
        p.regsPerBlock = 65536;
        p.warpSize = 32;
        p.maxThreadsPerBlock = 1024;
        p.maxThreadsDim[0] = 1024;
        p.maxThreadsDim[1] = 1024;
        p.maxThreadsDim[2] = 64;
        p.maxGridSize[0] = 0x7fffffff;
        p.maxGridSize[1] = 65535;
        p.maxGridSize[2] = 65535;
        p.major = 8;
        p.minor = 0;
        p.multiProcessorCount = (int)env_size("GPTQ_CUDA_EMU_SMS", 4);
        p.maxThreadsPerMultiProcessor = 2048;
        p.l2CacheSize = 40 << 20;
    });
    return p;
}

// ---- shared accounting of device memory -------------------------------------------------

struct usage_slot {
    int pid;
    int pad;
    uint64_t start_time;
    uint64_t used;
};
struct usage_table {
    uint64_t magic;
    usage_slot slot[256];
};
static const uint64_t USAGE_MAGIC = 0x47505451454d5531ull; // "GPTQEMU1"

// Start time of a process (clock ticks since boot), or 0 when it is gone.
static uint64_t pid_start_time(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); // comm may hold spaces
    if (!p)
        return 0;
    unsigned long long v = 0;
    // fields after comm: state(3) ... starttime is field 22
    int field = 2;
    for (p++; *p && field < 22; p++)
        if (*p == ' ')
            field++;
    if (sscanf(p, "%llu", &v) != 1)
        return 0;
    return v;
}

static usage_table *g_usage;
static usage_slot *g_my_slot;
static size_t g_local_used; // when the shared table cannot be opened

static void usage_open(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] {
        char name[64];
        snprintf(name, sizeof name, "/gptq-emu-device-%u", (unsigned)getuid());
        int fd = shm_open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            return;
        struct stat st;
        if (fstat(fd, &st) != 0 || (st.st_size < (off_t)sizeof(usage_table) &&
                                    ftruncate(fd, sizeof(usage_table)) != 0)) {
            close(fd);
            return;
        }
        void *m = mmap(nullptr, sizeof(usage_table), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (m == MAP_FAILED)
            return;
        usage_table *t = (usage_table *)m;
        uint64_t zero = 0;
        __atomic_compare_exchange_n(&t->magic, &zero, USAGE_MAGIC, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&t->magic, __ATOMIC_ACQUIRE) != USAGE_MAGIC)
            return;
        const int me = getpid();
        const uint64_t start = pid_start_time(me);
        for (auto &s : t->slot) { // a free slot, or one of a process that is gone
            int pid = __atomic_load_n(&s.pid, __ATOMIC_ACQUIRE);
            if (pid != 0 && pid_start_time(pid) == __atomic_load_n(&s.start_time, __ATOMIC_ACQUIRE))
                continue;
            if (__atomic_compare_exchange_n(&s.pid, &pid, me, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                __atomic_store_n(&s.start_time, start, __ATOMIC_RELEASE);
                __atomic_store_n(&s.used, 0, __ATOMIC_RELEASE);
                g_my_slot = &s;
                break;
            }
        }
        g_usage = t;
    });
}

static size_t device_used(void)
{
    usage_open();
    if (!g_usage || !g_my_slot)
        return g_local_used;
    uint64_t sum = 0;
    for (auto &s : g_usage->slot) {
        int pid = __atomic_load_n(&s.pid, __ATOMIC_ACQUIRE);
        if (pid == 0)
            continue;
        if (&s != g_my_slot &&
            pid_start_time(pid) != __atomic_load_n(&s.start_time, __ATOMIC_ACQUIRE))
            continue; // a process that died without freeing
        sum += __atomic_load_n(&s.used, __ATOMIC_ACQUIRE);
    }
    return (size_t)sum;
}

static void account(ptrdiff_t delta)
{
    usage_open();
    if (g_my_slot)
        __atomic_add_fetch(&g_my_slot->used, (uint64_t)delta, __ATOMIC_ACQ_REL);
    else
        g_local_used += (size_t)delta;
}

// ---- allocations ------------------------------------------------------------------------

enum alloc_kind { K_MALLOC, K_ASYNC, K_IMPORT };
static const char *const KIND_NAME[] = {"cudaMalloc", "cudaMallocAsync", "IPC mapping"};

struct allocation {
    char *map;        // guard page, data pages, guard page
    size_t map_bytes;
    char *base;
    size_t bytes;
    alloc_kind kind;
    int fd;           // memfd of a cudaMalloc allocation, else -1
    uint64_t id;
};

static std::mutex g_alloc_lock;
static std::map<uintptr_t, allocation> g_allocs; // by base
static std::deque<allocation> g_quarantine;
static uint64_t g_next_id = 1;
static const size_t QUARANTINE_ENTRIES = 256;

static size_t page_size(void)
{
    static size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

static size_t data_bytes(size_t bytes)
{
    const size_t ps = page_size();
    return (bytes + ps - 1) / ps * ps + (bytes ? 0 : ps);
}

bool find_alloc(const void *p, alloc_info *out)
{
    std::lock_guard<std::mutex> g(g_alloc_lock);
    auto it = g_allocs.upper_bound((uintptr_t)p);
    if (it == g_allocs.begin())
        return false;
    --it;
    const allocation &a = it->second;
    const uintptr_t u = (uintptr_t)p, b = (uintptr_t)a.base;
    if (u < b || u > b + a.bytes) // one past the end still names the allocation
        return false;
    if (out)
        *out = {a.base, a.bytes, KIND_NAME[a.kind], a.id};
    return true;
}

cudaError_t check_device_range(const void *p, size_t bytes, const char *call, const char *what)
{
    alloc_info a;
    if (!p) {
        note("%s: %s is NULL", call, what);
        return cudaErrorInvalidValue;
    }
    if (!find_alloc(p, &a)) {
        note("%s: %s %p is not device memory", call, what, p);
        return cudaErrorInvalidValue;
    }
    const size_t off = (size_t)((const char *)p - a.base);
    if (bytes > a.bytes - off) {
        note("%s: %s %p + %zu bytes runs %zu bytes past its %s allocation #%llu of %zu bytes", call,
             what, p, bytes, bytes - (a.bytes - off), a.kind, (unsigned long long)a.id, a.bytes);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

// Map [guard][data][guard]; the data from fd (shared) or anonymous.
static char *map_with_guards(size_t bytes, int fd, size_t *map_bytes)
{
    const size_t ps = page_size(), data = data_bytes(bytes);
    *map_bytes = data + 2 * ps;
    char *m = (char *)mmap(nullptr, *map_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                           -1, 0);
    if (m == MAP_FAILED)
        return nullptr;
    void *d = fd >= 0 ? mmap(m + ps, data, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0)
                      : mmap(m + ps, data, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (d == MAP_FAILED) {
        munmap(m, *map_bytes);
        return nullptr;
    }
    return m;
}

static void release_mapping(const allocation &a)
{
    EMU_UNPOISON(a.map + page_size(), a.map_bytes - 2 * page_size());
    munmap(a.map, a.map_bytes);
}

static cudaError_t device_alloc(void **ptr, size_t bytes, alloc_kind kind, const char *call)
{
    if (!ptr)
        return cudaErrorInvalidValue;
    *ptr = nullptr;
    const cudaDeviceProp &prop = device_prop();
    if (bytes > prop.totalGlobalMem || device_used() + data_bytes(bytes) > prop.totalGlobalMem) {
        note("%s of %zu bytes: out of emulated device memory (%zu of %zu bytes in use; "
             "GPTQ_CUDA_EMU_MEMORY sets the size)", call, bytes, device_used(), prop.totalGlobalMem);
        return cudaErrorMemoryAllocation;
    }
    allocation a = {};
    a.kind = kind;
    a.bytes = bytes;
    a.fd = -1;
    {
        std::lock_guard<std::mutex> g(g_alloc_lock);
        a.id = g_next_id++;
    }
    if (kind == K_MALLOC) {
        char name[64];
        snprintf(name, sizeof name, "gptq-emu-%llu", (unsigned long long)a.id);
        a.fd = memfd_create(name, MFD_CLOEXEC);
        if (a.fd < 0 || ftruncate(a.fd, (off_t)data_bytes(bytes)) != 0) {
            if (a.fd >= 0)
                close(a.fd);
            return cudaErrorMemoryAllocation;
        }
    }
    a.map = map_with_guards(bytes, a.fd, &a.map_bytes);
    if (!a.map) {
        if (a.fd >= 0)
            close(a.fd);
        return cudaErrorMemoryAllocation;
    }
    a.base = a.map + page_size();
    memset(a.base, 0xff, data_bytes(bytes));
    EMU_POISON(a.base + bytes, data_bytes(bytes) - bytes);
    account((ptrdiff_t)data_bytes(bytes));
    {
        std::lock_guard<std::mutex> g(g_alloc_lock);
        g_allocs[(uintptr_t)a.base] = a;
    }
    *ptr = a.base;
    return cudaSuccess;
}

static cudaError_t device_free(void *ptr, const char *call)
{
    if (!ptr)
        return cudaSuccess;
    allocation a;
    {
        std::lock_guard<std::mutex> g(g_alloc_lock);
        auto it = g_allocs.find((uintptr_t)ptr);
        if (it == g_allocs.end() || it->second.kind == K_IMPORT) {
            alloc_info in;
            bool inside = false;
            for (auto &kv : g_allocs) {
                const allocation &b = kv.second;
                if ((char *)ptr > b.base && (char *)ptr < b.base + b.bytes) {
                    in = {b.base, b.bytes, KIND_NAME[b.kind], b.id};
                    inside = true;
                }
            }
            if (it != g_allocs.end())
                note("%s(%p): an IPC mapping; close it with cudaIpcCloseMemHandle", call, ptr);
            else if (inside)
                note("%s(%p): points %zu bytes into %s allocation #%llu, not at its start", call,
                     ptr, (size_t)((char *)ptr - in.base), in.kind, (unsigned long long)in.id);
            else
                note("%s(%p): not a live device allocation (freed twice, or host memory)", call,
                     ptr);
            return cudaErrorInvalidValue;
        }
        a = it->second;
        g_allocs.erase(it);
    }
    if (a.fd >= 0)
        close(a.fd); // importers can no longer open it
    account(-(ptrdiff_t)data_bytes(a.bytes));
    // Quarantine: inaccessible (and poisoned) until it is old.
    EMU_POISON(a.base, data_bytes(a.bytes));
    mprotect(a.base, data_bytes(a.bytes), PROT_NONE);
    std::lock_guard<std::mutex> g(g_alloc_lock);
    g_quarantine.push_back(a);
    if (g_quarantine.size() > QUARANTINE_ENTRIES) {
        release_mapping(g_quarantine.front());
        g_quarantine.pop_front();
    }
    return cudaSuccess;
}

static bool is_device(const void *p)
{
    return find_alloc(p, nullptr);
}

// ---- IPC ---------------------------------------------------------------------------------

struct ipc_handle {
    uint64_t magic;
    int32_t pid;
    int32_t fd;
    uint64_t start_time;
    uint64_t bytes;
    uint64_t id;
    char pad[24];
};
static_assert(sizeof(ipc_handle) == sizeof(cudaIpcMemHandle_t), "handle layout");
static const uint64_t IPC_MAGIC = 0x31435049554d4547ull; // "GEMUIPC1"

} // namespace gptq_emu

using namespace gptq_emu;

// ---- the API ------------------------------------------------------------------------------

static const struct {
    cudaError_t err;
    const char *name, *text;
} ERRORS[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidContext, "cudaErrorInvalidContext", "invalid device context"},
    {cudaErrorNoKernelImageForDevice, "cudaErrorNoKernelImageForDevice", "no kernel image is available for execution on the device"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress", "an illegal memory access was encountered"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources", "too many resources requested for launch"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
};

const char *cudaGetErrorString(cudaError_t err)
{
    if (err != cudaSuccess && err == sticky_error())
        return g_sticky_text;
    for (auto &e : ERRORS)
        if (e.err == err)
            return e.text;
    return "unrecognized error code";
}

const char *cudaGetErrorName(cudaError_t err)
{
    for (auto &e : ERRORS)
        if (e.err == err)
            return e.name;
    return "cudaErrorUnknown";
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = t_last;
    if (cudaError_t s = sticky_error())
        return s;
    t_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void)
{
    cudaError_t s = sticky_error();
    return s ? s : t_last;
}

cudaError_t cudaGetDeviceCount(int *count)
{
    if (!count)
        return set_error(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    STICKY_GUARD();
    return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int *device)
{
    if (!device)
        return set_error(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    if (!prop)
        return set_error(cudaErrorInvalidValue);
    if (device != 0)
        return set_error(cudaErrorInvalidDevice);
    *prop = device_prop();
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    STICKY_GUARD();
    return cudaSuccess;
}

// ---- streams and events ----------------------------------------------------------------

struct gptq_emu_stream {
    uint32_t magic;
};
struct gptq_emu_event {
    uint32_t magic;
    int recorded;
    double when;
};
struct gptq_emu_mempool {
    int device;
};
static const uint32_t STREAM_MAGIC = 0x5354524d, EVENT_MAGIC = 0x45564e54;

namespace gptq_emu {
// A stream argument: NULL (the legacy default stream) or a live stream.
bool stream_ok(cudaStream_t s)
{
    return !s || s->magic == STREAM_MAGIC;
}
} // namespace gptq_emu

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags)
{
    STICKY_GUARD();
    if (!stream || flags > 1)
        return set_error(cudaErrorInvalidValue);
    *stream = new gptq_emu_stream{STREAM_MAGIC};
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream)
{
    return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (!stream || stream->magic != STREAM_MAGIC)
        return set_error(cudaErrorInvalidResourceHandle);
    stream->magic = 0;
    delete stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    STICKY_GUARD();
    return stream_ok(stream) ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    STICKY_GUARD();
    if (!event)
        return set_error(cudaErrorInvalidValue);
    *event = new gptq_emu_event{EVENT_MAGIC, 0, 0.0};
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    if (!event || event->magic != EVENT_MAGIC)
        return set_error(cudaErrorInvalidResourceHandle);
    event->magic = 0;
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    STICKY_GUARD();
    if (!event || event->magic != EVENT_MAGIC || !stream_ok(stream))
        return set_error(cudaErrorInvalidResourceHandle);
    event->recorded = 1;
    event->when = now_ms();
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    STICKY_GUARD();
    if (!event || event->magic != EVENT_MAGIC)
        return set_error(cudaErrorInvalidResourceHandle);
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    STICKY_GUARD();
    if (!ms || !start || !end || start->magic != EVENT_MAGIC || end->magic != EVENT_MAGIC)
        return set_error(cudaErrorInvalidResourceHandle);
    if (!start->recorded || !end->recorded)
        return set_error(cudaErrorInvalidResourceHandle);
    *ms = (float)(end->when - start->when);
    return cudaSuccess;
}

// ---- memory --------------------------------------------------------------------------------

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    STICKY_GUARD();
    return set_error(device_alloc(ptr, bytes, K_MALLOC, "cudaMalloc"));
}

cudaError_t cudaFree(void *ptr)
{
    STICKY_GUARD();
    return set_error(device_free(ptr, "cudaFree"));
}

cudaError_t cudaMallocAsync(void **ptr, size_t bytes, cudaStream_t stream)
{
    STICKY_GUARD();
    if (!stream_ok(stream))
        return set_error(cudaErrorInvalidResourceHandle);
    return set_error(device_alloc(ptr, bytes, K_ASYNC, "cudaMallocAsync"));
}

cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream)
{
    STICKY_GUARD();
    if (!stream_ok(stream))
        return set_error(cudaErrorInvalidResourceHandle);
    if (!ptr)
        return set_error(cudaErrorInvalidValue); // unlike cudaFree, NULL is an error
    return set_error(device_free(ptr, "cudaFreeAsync"));
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    STICKY_GUARD();
    if (!free_bytes || !total_bytes)
        return set_error(cudaErrorInvalidValue);
    const size_t total = device_prop().totalGlobalMem, used = device_used();
    *total_bytes = total;
    *free_bytes = used < total ? total - used : 0;
    return cudaSuccess;
}

static cudaError_t copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                        const char *call)
{
    if (!bytes)
        return cudaSuccess;
    if (kind > cudaMemcpyDefault)
        return cudaErrorInvalidMemcpyDirection;
    const bool d_dev = is_device(dst), s_dev = is_device(src);
    if (kind == cudaMemcpyDefault)
        kind = d_dev ? (s_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                     : (s_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    const bool want_d = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool want_s = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (want_d != d_dev || want_s != s_dev) {
        note("%s: kind %d, but the destination %p is %s memory and the source %p is %s memory",
             call, (int)kind, dst, d_dev ? "device" : "host", src, s_dev ? "device" : "host");
        return cudaErrorInvalidValue;
    }
    cudaError_t err;
    if (d_dev && (err = check_device_range(dst, bytes, call, "destination")))
        return err;
    if (s_dev && (err = check_device_range(src, bytes, call, "source")))
        return err;
    std::lock_guard<std::recursive_mutex> g(device_lock());
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    STICKY_GUARD();
    return set_error(copy(dst, src, bytes, kind, "cudaMemcpy"));
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    STICKY_GUARD();
    if (!stream_ok(stream))
        return set_error(cudaErrorInvalidResourceHandle);
    return set_error(copy(dst, src, bytes, kind, "cudaMemcpyAsync"));
}

static cudaError_t fill(void *dst, int value, size_t bytes, const char *call)
{
    if (!bytes)
        return cudaSuccess;
    if (cudaError_t err = check_device_range(dst, bytes, call, "destination"))
        return err;
    std::lock_guard<std::recursive_mutex> g(device_lock());
    memset(dst, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *dst, int value, size_t bytes)
{
    STICKY_GUARD();
    return set_error(fill(dst, value, bytes, "cudaMemset"));
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream)
{
    STICKY_GUARD();
    if (!stream_ok(stream))
        return set_error(cudaErrorInvalidResourceHandle);
    return set_error(fill(dst, value, bytes, "cudaMemsetAsync"));
}

static gptq_emu_mempool g_pool = {0};

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int device)
{
    STICKY_GUARD();
    if (!pool)
        return set_error(cudaErrorInvalidValue);
    if (device != 0)
        return set_error(cudaErrorInvalidDevice);
    *pool = &g_pool;
    return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value)
{
    STICKY_GUARD();
    if (pool != &g_pool || !value ||
        (attr != cudaMemPoolAttrReleaseThreshold && attr != cudaMemPoolReuseFollowEventDependencies))
        return set_error(cudaErrorInvalidValue);
    return cudaSuccess;
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t)
{
    STICKY_GUARD();
    return pool == &g_pool ? cudaSuccess : set_error(cudaErrorInvalidValue);
}

// ---- IPC ----------------------------------------------------------------------------------

cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t *handle, void *ptr)
{
    STICKY_GUARD();
    if (!handle || !ptr)
        return set_error(cudaErrorInvalidValue);
    ipc_handle h = {};
    {
        std::lock_guard<std::mutex> g(g_alloc_lock);
        auto it = g_allocs.find((uintptr_t)ptr);
        if (it == g_allocs.end() || it->second.kind != K_MALLOC) {
            note("cudaIpcGetMemHandle(%p): not the start of a cudaMalloc allocation", ptr);
            return set_error(cudaErrorInvalidValue);
        }
        h.fd = it->second.fd;
        h.bytes = it->second.bytes;
        h.id = it->second.id;
    }
    h.magic = IPC_MAGIC;
    h.pid = getpid();
    h.start_time = pid_start_time(h.pid);
    memcpy(handle, &h, sizeof h);
    return cudaSuccess;
}

cudaError_t cudaIpcOpenMemHandle(void **ptr, cudaIpcMemHandle_t handle, unsigned flags)
{
    STICKY_GUARD();
    if (!ptr || flags != cudaIpcMemLazyEnablePeerAccess)
        return set_error(cudaErrorInvalidValue);
    *ptr = nullptr;
    ipc_handle h;
    memcpy(&h, &handle, sizeof h);
    if (h.magic != IPC_MAGIC || h.pid <= 0 || h.fd < 0) {
        note("cudaIpcOpenMemHandle: not a handle of this emulator");
        return set_error(cudaErrorInvalidValue);
    }
    if (h.pid == getpid()) {
        note("cudaIpcOpenMemHandle: a handle of this very process");
        return set_error(cudaErrorInvalidContext);
    }
    if (pid_start_time(h.pid) != h.start_time) {
        note("cudaIpcOpenMemHandle: the exporting process %d is gone", h.pid);
        return set_error(cudaErrorInvalidValue);
    }
    char path[64], link[256], want[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", h.pid, h.fd);
    snprintf(want, sizeof want, "/memfd:gptq-emu-%llu ", (unsigned long long)h.id);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n <= 0 || (link[n] = 0, strncmp(link, want, strlen(want)) != 0)) {
        note("cudaIpcOpenMemHandle: allocation #%llu of process %d was freed",
             (unsigned long long)h.id, h.pid);
        return set_error(cudaErrorInvalidValue);
    }
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || (uint64_t)st.st_size < h.bytes) {
        note("cudaIpcOpenMemHandle: cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return set_error(cudaErrorInvalidValue);
    }
    allocation a = {};
    a.kind = K_IMPORT;
    a.bytes = (size_t)h.bytes;
    a.fd = -1;
    a.id = h.id;
    a.map = map_with_guards(a.bytes, fd, &a.map_bytes);
    close(fd);
    if (!a.map)
        return set_error(cudaErrorMemoryAllocation);
    a.base = a.map + page_size();
    EMU_POISON(a.base + a.bytes, data_bytes(a.bytes) - a.bytes);
    {
        std::lock_guard<std::mutex> g(g_alloc_lock);
        g_allocs[(uintptr_t)a.base] = a;
    }
    *ptr = a.base;
    return cudaSuccess;
}

cudaError_t cudaIpcCloseMemHandle(void *ptr)
{
    STICKY_GUARD();
    allocation a;
    {
        std::lock_guard<std::mutex> g(g_alloc_lock);
        auto it = g_allocs.find((uintptr_t)ptr);
        if (it == g_allocs.end() || it->second.kind != K_IMPORT) {
            note("cudaIpcCloseMemHandle(%p): not an opened IPC mapping", ptr);
            return set_error(cudaErrorInvalidValue);
        }
        a = it->second;
        g_allocs.erase(it);
    }
    release_mapping(a);
    return cudaSuccess;
}
