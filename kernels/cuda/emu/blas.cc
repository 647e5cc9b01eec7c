// kernels/cuda/emu/blas.cc: the cuBLAS and cuSOLVER calls of the emulated
// module, computed by the CPU's BLAS and LAPACK. Each checks what the real
// library checks (handle, sizes, leading dimensions, operations, types,
// workspace size) and what a device would fault on: every matrix must be
// device memory that holds all of the elements the call touches, scalars
// (host pointer mode) must be host memory, device arrays aligned for their
// type. Column-major as cuBLAS; fp16 inputs are widened to float32 and the
// product accumulates in float32 (CUBLAS_COMPUTE_32F).
#include <cblas.h>
#include <lapacke.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kernels/cuda/emu/half.h"
#include "kernels/cuda/emu/internal.h"

using namespace gptq_emu;

struct gptq_emu_cublas {
    uint32_t magic;
    cudaStream_t stream;
};
struct gptq_emu_cusolver {
    uint32_t magic;
    cudaStream_t stream;
};
static const uint32_t CUBLAS_MAGIC = 0x43424c53, CUSOLVER_MAGIC = 0x43534c56;

namespace gptq_emu {
bool stream_ok(cudaStream_t s); // runtime.cc
}

// A column-major matrix argument of rows x cols with leading dimension ld:
// device memory holding every element, aligned for its type.
static bool matrix_ok(const char *call, const char *name, const void *p, int rows, int cols,
                      int ld, size_t elem)
{
    if (rows == 0 || cols == 0)
        return true;
    if ((uintptr_t)p % elem) {
        note("%s: %s %p is not aligned to its %zu-byte elements", call, name, p, elem);
        return false;
    }
    const size_t need = ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * elem;
    return check_device_range(p, need, call, name) == cudaSuccess;
}

// An argument a device would fault on (reported above by a note): the
// context's sticky error, as the illegal access would leave it.
static cublasStatus_t device_fault(const char *call)
{
    char d[256];
    snprintf(d, sizeof d, "%s: an argument that is not device memory covering what the call "
             "touches (see the note before)", call);
    set_sticky(cudaErrorIllegalAddress, d);
    return CUBLAS_STATUS_EXECUTION_FAILED;
}

static bool host_scalar_ok(const char *call, const char *name, const void *p)
{
    if (!p) {
        note("%s: %s is NULL", call, name);
        return false;
    }
    if (find_alloc(p, nullptr)) {
        note("%s: %s %p is device memory; the handle's pointer mode is host", call, name, p);
        return false;
    }
    return true;
}

static size_t type_bytes(cudaDataType t)
{
    switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16F: return 2;
    default: return 0;
    }
}

// A as float32 column-major [rows, cols] with leading dimension rows.
static std::vector<float> widen(const void *A, cudaDataType t, int rows, int cols, int ld)
{
    std::vector<float> out((size_t)rows * cols);
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < rows; r++) {
            const size_t at = (size_t)c * ld + r;
            out[(size_t)c * rows + r] =
                t == CUDA_R_32F ? ((const float *)A)[at]
                                : f16_bits_to_f32(((const uint16_t *)A)[at]);
        }
    return out;
}

static bool handle_ok(cublasHandle_t h)
{
    return h && h->magic == CUBLAS_MAGIC;
}

cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    if (!handle)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (sticky_error())
        return CUBLAS_STATUS_NOT_INITIALIZED;
    *handle = new gptq_emu_cublas{CUBLAS_MAGIC, nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    if (!handle_ok(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->magic = 0;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream)
{
    if (!handle_ok(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_ok(stream))
        return CUBLAS_STATUS_INVALID_VALUE;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void *alpha,
                            const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo)
{
    static const char *call = "cublasGemmEx";
    if (!handle_ok(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (sticky_error())
        return CUBLAS_STATUS_EXECUTION_FAILED;
    const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    // CUBLAS_OP_C is the transpose for real types
    if ((transa != CUBLAS_OP_N && transa != CUBLAS_OP_T && transa != CUBLAS_OP_C) ||
        (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T && transb != CUBLAS_OP_C) || m < 0 ||
        n < 0 || k < 0 ||
        lda < (ta ? (k > 1 ? k : 1) : (m > 1 ? m : 1)) ||
        ldb < (tb ? (n > 1 ? n : 1) : (k > 1 ? k : 1)) || ldc < (m > 1 ? m : 1)) {
        note("%s: invalid value: op(A) %c op(B) %c, m=%d n=%d k=%d, lda=%d ldb=%d ldc=%d", call,
             ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!type_bytes(Atype) || Atype != Btype || Ctype != CUDA_R_32F ||
        (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_16F &&
         compute != CUBLAS_COMPUTE_32F_FAST_TF32) ||
        (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP)) {
        note("%s: A type %d, B type %d, C type %d, compute %d, algo %d: not a combination the "
             "emulator (or this project) uses", call, (int)Atype, (int)Btype, (int)Ctype,
             (int)compute, (int)algo);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (m == 0 || n == 0)
        return CUBLAS_STATUS_SUCCESS;
    if (!alpha || !beta || (k > 0 && (!A || !B)) || !C) {
        note("%s: invalid value: a NULL scalar or matrix", call);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const size_t eb = type_bytes(Atype);
    if (!host_scalar_ok(call, "alpha", alpha) || !host_scalar_ok(call, "beta", beta) ||
        !matrix_ok(call, "A", A, ta ? k : m, ta ? m : k, lda, eb) ||
        !matrix_ok(call, "B", B, tb ? n : k, tb ? k : n, ldb, eb) ||
        !matrix_ok(call, "C", C, m, n, ldc, 4))
        return device_fault(call);
    std::lock_guard<std::recursive_mutex> g(device_lock());
    const float a = *(const float *)alpha, b = *(const float *)beta;
    if (k == 0) { // C = beta C, A and B unread
        for (int c = 0; c < n; c++)
            for (int r = 0; r < m; r++) {
                float *y = (float *)C + (size_t)c * ldc + r;
                *y = b == 0.0f ? 0.0f : b * *y;
            }
        return CUBLAS_STATUS_SUCCESS;
    }
    if (Atype == CUDA_R_32F) {
        cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    m, n, k, a, (const float *)A, lda, (const float *)B, ldb, b, (float *)C, ldc);
    } else {
        std::vector<float> wa = widen(A, Atype, ta ? k : m, ta ? m : k, lda);
        std::vector<float> wb = widen(B, Btype, tb ? n : k, tb ? k : n, ldb);
        cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    m, n, k, a, wa.data(), ta ? k : m, wb.data(), tb ? n : k, b, (float *)C, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    return cublasGemmEx(handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F,
                        ldb, beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t cublasSsyrk(cublasHandle_t handle, cublasFillMode_t uplo, cublasOperation_t trans,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *beta, float *C, int ldc)
{
    static const char *call = "cublasSsyrk";
    if (!handle_ok(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (sticky_error())
        return CUBLAS_STATUS_EXECUTION_FAILED;
    const bool t = trans != CUBLAS_OP_N;
    if ((uplo != CUBLAS_FILL_MODE_LOWER && uplo != CUBLAS_FILL_MODE_UPPER) ||
        (trans != CUBLAS_OP_N && trans != CUBLAS_OP_T && trans != CUBLAS_OP_C) || n < 0 || k < 0 ||
        lda < (t ? (k > 1 ? k : 1) : (n > 1 ? n : 1)) || ldc < (n > 1 ? n : 1)) {
        note("%s: invalid value: uplo %d trans %c n=%d k=%d lda=%d ldc=%d", call, (int)uplo,
             t ? 'T' : 'N', n, k, lda, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (n == 0)
        return CUBLAS_STATUS_SUCCESS;
    if (!alpha || !beta || (k > 0 && !A) || !C) {
        note("%s: invalid value: a NULL scalar or matrix", call);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!host_scalar_ok(call, "alpha", alpha) || !host_scalar_ok(call, "beta", beta) ||
        (k > 0 && !matrix_ok(call, "A", A, t ? k : n, t ? n : k, lda, 4)) ||
        !matrix_ok(call, "C", C, n, n, ldc, 4))
        return device_fault(call);
    std::lock_guard<std::recursive_mutex> g(device_lock());
    cblas_ssyrk(CblasColMajor, uplo == CUBLAS_FILL_MODE_LOWER ? CblasLower : CblasUpper,
                t ? CblasTrans : CblasNoTrans, n, k, *alpha, A, lda, *beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

// ---- cuSOLVER -----------------------------------------------------------------------------

static bool solver_ok(cusolverDnHandle_t h)
{
    return h && h->magic == CUSOLVER_MAGIC;
}

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *handle)
{
    if (!handle)
        return CUSOLVER_STATUS_INVALID_VALUE;
    if (sticky_error())
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    *handle = new gptq_emu_cusolver{CUSOLVER_MAGIC, nullptr};
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle)
{
    if (!solver_ok(handle))
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    handle->magic = 0;
    delete handle;
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t stream)
{
    if (!solver_ok(handle))
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (!stream_ok(stream))
        return CUSOLVER_STATUS_INVALID_VALUE;
    handle->stream = stream;
    return CUSOLVER_STATUS_SUCCESS;
}

// The workspace the emulator asks for: one panel of 64 columns, like the
// blocked factorization the library runs (the size is the emulator's own;
// what is checked is that callers pass at least what was asked).
static int work_floats(int n)
{
    return n > 0 ? 64 * n : 1;
}

static cusolverStatus_t buffer_size(const char *call, cusolverDnHandle_t handle,
                                    cublasFillMode_t uplo, int n, int lda, int *lwork)
{
    if (!solver_ok(handle))
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    if ((uplo != CUBLAS_FILL_MODE_LOWER && uplo != CUBLAS_FILL_MODE_UPPER) || n < 0 ||
        lda < (n > 1 ? n : 1) || !lwork) {
        note("%s: invalid value: uplo %d n=%d lda=%d", call, (int)uplo, n, lda);
        return CUSOLVER_STATUS_INVALID_VALUE;
    }
    *lwork = work_floats(n);
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSpotrf_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, float *, int lda, int *lwork)
{
    return buffer_size("cusolverDnSpotrf_bufferSize", handle, uplo, n, lda, lwork);
}

cusolverStatus_t cusolverDnSpotri_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, float *, int lda, int *lwork)
{
    return buffer_size("cusolverDnSpotri_bufferSize", handle, uplo, n, lda, lwork);
}

// potrf / potri: checks, then LAPACK on the matrix in place; info (0, or
// the order of the first minor that is not positive definite) into the
// device int dev_info.
static cusolverStatus_t factor(const char *call, bool inverse, cusolverDnHandle_t handle,
                               cublasFillMode_t uplo, int n, float *A, int lda, float *work,
                               int lwork, int *dev_info)
{
    if (!solver_ok(handle))
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (sticky_error())
        return CUSOLVER_STATUS_EXECUTION_FAILED;
    if ((uplo != CUBLAS_FILL_MODE_LOWER && uplo != CUBLAS_FILL_MODE_UPPER) || n < 0 ||
        lda < (n > 1 ? n : 1)) {
        note("%s: invalid value: uplo %d n=%d lda=%d", call, (int)uplo, n, lda);
        return CUSOLVER_STATUS_INVALID_VALUE;
    }
    if (lwork < work_floats(n)) {
        note("%s: workspace of %d floats; the bufferSize call asked for %d", call, lwork,
             work_floats(n));
        return CUSOLVER_STATUS_INVALID_VALUE;
    }
    if ((n > 0 && (!A || !work)) || !dev_info) {
        note("%s: invalid value: a NULL matrix, workspace or devInfo", call);
        return CUSOLVER_STATUS_INVALID_VALUE;
    }
    if (!matrix_ok(call, "A", A, n, n, lda, 4) || !matrix_ok(call, "work", work, lwork, 1, lwork, 4) ||
        check_device_range(dev_info, sizeof(int), call, "devInfo") != cudaSuccess) {
        device_fault(call);
        return CUSOLVER_STATUS_EXECUTION_FAILED;
    }
    std::lock_guard<std::recursive_mutex> g(device_lock());
    memset(work, 0xff, (size_t)lwork * sizeof(float)); // what it held is gone
    const char u = uplo == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U';
    lapack_int info = n == 0 ? 0
                      // the _work forms skip LAPACKE's NaN scan, whose -4 would read as
                      // "lda rejected": a NaN must fail the factorization (info > 0)
                      : inverse ? LAPACKE_spotri_work(LAPACK_COL_MAJOR, u, n, A, lda)
                                : LAPACKE_spotrf_work(LAPACK_COL_MAJOR, u, n, A, lda);
    *dev_info = (int)info;
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSpotrf(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n,
                                  float *A, int lda, float *work, int lwork, int *dev_info)
{
    return factor("cusolverDnSpotrf", false, handle, uplo, n, A, lda, work, lwork, dev_info);
}

cusolverStatus_t cusolverDnSpotri(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n,
                                  float *A, int lda, float *work, int lwork, int *dev_info)
{
    return factor("cusolverDnSpotri", true, handle, uplo, n, A, lda, work, lwork, dev_info);
}
