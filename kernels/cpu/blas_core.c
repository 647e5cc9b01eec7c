/* kernels/cpu/blas_core.c: which OpenBLAS kernels the process runs (see
 * blas_core.h). */
#include "kernels/cpu/blas_core.h"

#include <cblas.h>

const char *gptq_cpu_blas_core(void)
{
    return openblas_get_corename();
}
