/* kernels/cpu/pool.h: the CPU kernels' worker threads.
 *
 * One pool per process, sized once (GPTQ_NUM_THREADS, else OMP_NUM_THREADS,
 * else the CPUs this process may run on), created on first use. A parallel
 * call hands each of the pool's threads one part of the work; the caller's
 * thread runs part 0. Workers spin briefly after a call (decoding issues a
 * call every few tens of microseconds, and waking a sleeping thread costs
 * about as much), then sleep: an idle process uses no CPU.
 *
 * One caller at a time: a call made while another thread's call runs does
 * all parts itself, in order (same results, no waiting, no
 * oversubscription). The daemon runs one job's compute at a time anyway
 * (kernels/turns.h). A child of fork() runs every call on its own thread. */
#ifndef GPTQ_KERNELS_CPU_POOL_H
#define GPTQ_KERNELS_CPU_POOL_H

#include <stddef.h>

/* fn(arg, part, parts) for every part in [0, parts), parts =
 * gptq_pool_threads(); returns when all have returned. With `parallel` 0
 * (work too small to share) the caller runs every part itself. */
typedef void (*gptq_pool_fn)(void *arg, int part, int parts);
void gptq_pool_run(gptq_pool_fn fn, void *arg, int parallel);

/* Threads a call shares its work between (>= 1). */
int gptq_pool_threads(void);

/* [*lo, *hi) of n items for `part` of `parts`, in whole multiples of
 * `align` items (the last part takes the remainder). */
void gptq_pool_split(long n, int part, int parts, long align, long *lo, long *hi);

/* The calling thread's scratch of at least `floats` floats, kept between
 * calls (a fresh buffer of megabytes would be mapped and faulted in on
 * every call) and freed when the thread exits; NULL when memory runs out.
 * Valid until the thread's next call. */
float *gptq_cpu_scratch(size_t floats);

#endif
