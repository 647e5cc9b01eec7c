/* bench/benchutil.h: the clock and memory readings the benchmarks share.
 * Header-only. */
#ifndef GPTQ_BENCH_BENCHUTIL_H
#define GPTQ_BENCH_BENCHUTIL_H

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A "KEY: N kB" line of /proc/self/status (key "VmHWM": peak resident
 * memory, "VmRSS": resident now), in kB, or -1. */
static inline long proc_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    const size_t len = strlen(key);
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, len) == 0 && line[len] == ':' &&
            sscanf(line + len + 1, "%ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* This process's peak resident memory (VmHWM) in kB, or -1. */
static inline long peak_rss_kb(void)
{
    return proc_status_kb("VmHWM");
}

#endif
