/* kernels/cpu/blas_core.h: which OpenBLAS kernels the process runs.
 *
 * OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels once, when
 * it is loaded, from the CPU, or from OPENBLAS_CORETYPE when that is set: an
 * environment that pins "Haswell" on an AVX-512 machine halves float
 * prefill (sgemm n=256 x 4096 x 4096 on a Zen 4 VM: 234 GFLOPS on the
 * Haswell kernels, 423 on the Cooperlake ones OpenBLAS picks itself). gptqd
 * logs the name at start and bench/serve_one prints it. */
#ifndef GPTQ_KERNELS_CPU_BLAS_CORE_H
#define GPTQ_KERNELS_CPU_BLAS_CORE_H

/* OpenBLAS's name for the kernels it runs ("Haswell", "Cooperlake", ...). */
const char *gptq_cpu_blas_core(void);

#endif
