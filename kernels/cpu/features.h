/* kernels/cpu/features.h: what the CPU kernels ask of the processor and the
 * environment when they pick an implementation: whether the AVX2 (and
 * AVX-512) kernels may run, and a forced path named in an environment variable. */
#ifndef GPTQ_KERNELS_CPU_FEATURES_H
#define GPTQ_KERNELS_CPU_FEATURES_H

#include <stdlib.h>
#include <string.h>

/* 1 when the CPU runs AVX2 + FMA + F16C (the x86 kernels' target), checked
 * once per process. */
static inline int gptq_cpu_have_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    }
    return have;
#else
    return 0;
#endif
}

/* 1 when the CPU runs AVX-512F besides the AVX2 set (the 16-bit linears'
 * panel kernel), checked once per process. */
static inline int gptq_cpu_have_avx512f(void)
{
#if defined(__x86_64__) || defined(__i386__)
    static int have = -1;
    if (have < 0)
        have = gptq_cpu_have_avx2() && __builtin_cpu_supports("avx512f");
    return have;
#else
    return 0;
#endif
}

/* The index in names[n] of environment variable `var`'s value, or 0 (the
 * first name is "auto") when unset or unknown. */
static inline int gptq_cpu_path_from_env(const char *var, const char *const *names, int n)
{
    const char *env = getenv(var);
    for (int i = 1; env && i < n; i++)
        if (!strcmp(env, names[i]))
            return i;
    return 0;
}

#endif
