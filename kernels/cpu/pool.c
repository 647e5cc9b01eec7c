/* kernels/cpu/pool.c: the CPU kernels' worker threads (see pool.h).
 *
 * A call publishes (fn, arg) and bumps a generation counter; workers that
 * are spinning see it at once, sleeping ones are woken through a condition
 * variable. The caller runs part 0, then waits for the others the same way
 * (spin, then sleep). Who sleeps is announced before re-checking the
 * counter it waits on, both sequentially consistent, so a wake-up is never
 * lost: either the sleeper sees the new value or the waker sees the
 * sleeper. Also each thread's scratch buffer (gptq_cpu_scratch). */
#include "kernels/cpu/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define POOL_PAUSE() _mm_pause()
#else
#define POOL_PAUSE() ((void)0)
#endif

/* How long a thread spins for the next event before it sleeps. */
#define POOL_SPIN_NS 200000L
#define POOL_MAX_THREADS 256

static struct {
    pthread_once_t once;
    int threads;           /* including the caller's */
    pthread_mutex_t busy;  /* held by the thread whose call the workers run */
    pthread_mutex_t lock;  /* guards the sleeps below */
    pthread_cond_t wake;   /* workers sleep here */
    pthread_cond_t done;   /* the caller sleeps here */
    unsigned gen;          /* bumped per call */
    int pending;           /* workers still running this call */
    int sleepers;          /* workers asleep or about to be */
    int caller_sleeping;
    gptq_pool_fn fn;
    void *arg;
} pool = {.once = PTHREAD_ONCE_INIT,
          .busy = PTHREAD_MUTEX_INITIALIZER,
          .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

/* Spin until *p != v or POOL_SPIN_NS pass; 1 when it changed. */
static int spin_while_eq(const unsigned *p, unsigned v)
{
    long start = now_ns();
    for (int i = 1;; i++) {
        if (LOAD(p) != v)
            return 1;
        POOL_PAUSE();
        if (i % 256 == 0 && now_ns() - start > POOL_SPIN_NS)
            return 0;
    }
}

static void *worker(void *p)
{
    const int part = (int)(long)p;
    unsigned seen = 0;
    for (;;) {
        if (!spin_while_eq(&pool.gen, seen)) {
            pthread_mutex_lock(&pool.lock);
            STORE(&pool.sleepers, LOAD(&pool.sleepers) + 1);
            while (LOAD(&pool.gen) == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            STORE(&pool.sleepers, LOAD(&pool.sleepers) - 1);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = LOAD(&pool.gen);
        pool.fn(pool.arg, part, pool.threads);
        if (__atomic_sub_fetch(&pool.pending, 1, __ATOMIC_SEQ_CST) == 0 &&
            LOAD(&pool.caller_sleeping)) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    return NULL;
}

static int env_threads(const char *name)
{
    const char *s = getenv(name);
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    return s && *s && !*end && v >= 1 && v <= POOL_MAX_THREADS ? (int)v : 0;
}

/* A child of fork() has none of the workers: it runs every call itself. */
static void pool_after_fork(void)
{
    pool.threads = 1;
}

static void pool_init(void)
{
    int n = env_threads("GPTQ_NUM_THREADS");
    if (!n)
        n = env_threads("OMP_NUM_THREADS");
    if (!n) {
        cpu_set_t set;
        n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    n = n < 1 ? 1 : n > POOL_MAX_THREADS ? POOL_MAX_THREADS : n;
    pool.threads = 1;
    pthread_atfork(NULL, NULL, pool_after_fork);
    for (int i = 1; i < n; i++) { /* fewer threads when the system refuses more */
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker, (void *)(long)i);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break;
        pool.threads++;
    }
}

int gptq_pool_threads(void)
{
    pthread_once(&pool.once, pool_init);
    return pool.threads;
}

void gptq_pool_split(long n, int part, int parts, long align, long *lo, long *hi)
{
    long units = (n + align - 1) / align;
    *lo = units * part / parts * align;
    *hi = part == parts - 1 ? n : units * (part + 1) / parts * align;
    *lo = *lo < n ? *lo : n;
    *hi = *hi < n ? *hi : n;
}

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_key_init(void)
{
    pthread_key_create(&scratch_key, free);
}

float *gptq_cpu_scratch(size_t floats)
{
    typedef struct scratch {
        size_t cap;
        float data[];
    } scratch;
    pthread_once(&scratch_once, scratch_key_init);
    scratch *s = pthread_getspecific(scratch_key);
    if (s && s->cap >= floats)
        return s->data;
    free(s);
    s = malloc(sizeof *s + floats * sizeof(float));
    if (s)
        s->cap = floats;
    pthread_setspecific(scratch_key, s);
    return s ? s->data : NULL;
}

void gptq_pool_run(gptq_pool_fn fn, void *arg, int parallel)
{
    const int parts = gptq_pool_threads();
    if (!parallel || parts == 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        for (int i = 0; i < parts; i++)
            fn(arg, i, parts);
        return;
    }
    pool.fn = fn;
    pool.arg = arg;
    STORE(&pool.pending, parts - 1);
    __atomic_add_fetch(&pool.gen, 1, __ATOMIC_SEQ_CST);
    if (LOAD(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    fn(arg, 0, parts);
    long start = now_ns();
    for (int i = 1; LOAD(&pool.pending) != 0; i++) {
        POOL_PAUSE();
        if (i % 256 == 0 && now_ns() - start > POOL_SPIN_NS) {
            pthread_mutex_lock(&pool.lock);
            STORE(&pool.caller_sleeping, 1);
            while (LOAD(&pool.pending) != 0)
                pthread_cond_wait(&pool.done, &pool.lock);
            STORE(&pool.caller_sleeping, 0);
            pthread_mutex_unlock(&pool.lock);
            break;
        }
    }
    pthread_mutex_unlock(&pool.busy);
}
