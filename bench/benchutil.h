/* bench/benchutil.h: the clock and memory readings the benchmarks share.
 * Header-only. */
#ifndef GPTQ_BENCH_BENCHUTIL_H
#define GPTQ_BENCH_BENCHUTIL_H

#include <stdio.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This process's peak resident memory (VmHWM) in kB, or -1. */
static inline long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

#endif
