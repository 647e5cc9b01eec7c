// tests/test_cuda_emu.cu: the emulator's semantics against CUDA's, for what
// the kernels of tomorrow may use even where today's do not: shuffles with
// sub-warp widths and offsets past 32 (PTX shfl.sync: b mod 32, segments of
// `width` lanes, bfly may read an earlier segment), votes over partly
// exited warps, __activemask, min/max with NaN (fminf/fmaxf), half NaN
// canonicalisation, cuBLAS CUBLAS_OP_C and NULL arguments (INVALID_VALUE,
// the context left usable), the dynamic shared memory attribute, and a
// barrier in divergent code (a fault). Expected values are written from
// the CUDA Programming Guide and the PTX ISA, not from the emulator.
//
// Built only with the emulator (kernels/cuda/emu), through the same
// translation as the module's sources; it runs no GPU code.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"


enum { LANES = 32 };

__global__ void shuffles(int *out)
{
    const int l = threadIdx.x;
    out[0 * LANES + l] = __shfl_xor_sync(0xffffffffu, l, 8, 8);
    out[1 * LANES + l] = __shfl_down_sync(0xffffffffu, l, 33);
    out[2 * LANES + l] = __shfl_up_sync(0xffffffffu, l, 3, 8);
    out[3 * LANES + l] = __shfl_sync(0xffffffffu, l, 17, 16);
    out[4 * LANES + l] = __shfl_xor_sync(0xffffffffu, l, 1);
}

__global__ void exited_vote(unsigned *out)
{
    const int l = threadIdx.x;
    if (l >= 16)
        return;
    const unsigned b = __ballot_sync(0xffffffffu, l & 1);
    const int all = __all_sync(0xffffffffu, 1);
    if (l == 0) {
        out[0] = b;
        out[1] = (unsigned)all;
    }
}

__global__ void active(unsigned *out)
{
    out[threadIdx.x] = __activemask();
}

__global__ void nan_minmax(float *out)
{
    const float nan = __int_as_float(0x7fc00000);
    out[0] = max(nan, 1.0f);
    out[1] = min(nan, 1.0f);
    out[2] = max(1.0f, nan);
    out[3] = __half2float(__float2half(2.5f));
    out[4] = __uint_as_float(__half_as_ushort(__float2half(-nan)));
}

__global__ void dyn_smem(float *out)
{
    extern __shared__ float buf[];
    buf[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = buf[(threadIdx.x + 1) % blockDim.x];
}

__global__ void divergent_barrier(int *out)
{
    if (threadIdx.x < 16) {
        __syncthreads();
        out[threadIdx.x] = 1;
    } else {
        __syncthreads();
        out[threadIdx.x] = 2;
    }
}

template <typename T> static void fetch(T *host, const T *dev, size_t n)
{
    CHECK(cudaMemcpy(host, dev, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess, "copy");
}

static void test_shuffles(void)
{
    int *d = nullptr, h[5 * LANES];
    CHECK(cudaMalloc(&d, sizeof h) == cudaSuccess, "malloc");
    shuffles<<<1, LANES>>>(d);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "shuffles: %s", cudaGetErrorString(cudaGetLastError()));
    fetch(h, d, 5 * LANES);
    for (int l = 0; l < LANES; l++) {
        const int lo8 = l & ~7, lo16 = l & ~15;
        // bfly within width 8: j = l ^ 8 is read when j <= the segment's
        // last lane, so odd segments read the one before them
        const int bfly = (l ^ 8) <= (lo8 | 7) ? (l ^ 8) : l;
        CHECK(h[l] == bfly, "xor 8 width 8, lane %d: %d, want %d", l, h[l], bfly);
        const int down = l + 1 <= 31 ? l + 1 : l; // 33 mod 32 = 1
        CHECK(h[LANES + l] == down, "down 33, lane %d: %d, want %d", l, h[LANES + l], down);
        const int up = l - 3 >= lo8 ? l - 3 : l;
        CHECK(h[2 * LANES + l] == up, "up 3 width 8, lane %d: %d, want %d", l, h[2 * LANES + l], up);
        const int idx = lo16 + 1; // 17 within a 16-lane segment
        CHECK(h[3 * LANES + l] == idx, "idx 17 width 16, lane %d: %d, want %d", l,
              h[3 * LANES + l], idx);
        CHECK(h[4 * LANES + l] == (l ^ 1), "xor 1, lane %d: %d", l, h[4 * LANES + l]);
    }
    cudaFree(d);
}

static void test_votes(void)
{
    unsigned *d = nullptr, h[64];
    CHECK(cudaMalloc(&d, sizeof h) == cudaSuccess, "malloc");
    exited_vote<<<1, LANES>>>(d);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "a vote over a warp with exited lanes: %s",
          cudaGetErrorString(cudaGetLastError()));
    fetch(h, d, 2);
    CHECK(h[0] == 0x0000aaaau, "ballot over 16 live lanes: %08x, want 0000aaaa", h[0]);
    CHECK(h[1] == 1, "all over the live lanes: %u", h[1]);
    active<<<1, 48>>>(d);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "activemask");
    fetch(h, d, 48);
    CHECK(h[0] == 0xffffffffu && h[40] == 0x0000ffffu,
          "activemask in a 48-thread block: warp 0 %08x, warp 1 %08x", h[0], h[40]);
    cudaFree(d);
}

static void test_numbers(void)
{
    float *d = nullptr, h[5];
    CHECK(cudaMalloc(&d, sizeof h) == cudaSuccess, "malloc");
    nan_minmax<<<1, 1>>>(d);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "nan_minmax");
    fetch(h, d, 5);
    CHECK(h[0] == 1.0f && h[1] == 1.0f && h[2] == 1.0f, "min/max with NaN: %g %g %g", h[0], h[1],
          h[2]);
    CHECK(h[3] == 2.5f, "half round trip of 2.5: %g", h[3]);
    unsigned bits;
    memcpy(&bits, &h[4], sizeof bits);
    CHECK(bits == 0x7fffu, "__float2half(-NaN) is %04x, CUDA's canonical NaN is 7fff", bits);
    const __half hn = __ushort_as_half((unsigned short)0xfe00);
    const float f = __half2float(hn);
    memcpy(&bits, &f, sizeof bits);
    CHECK(bits == 0x7fffffffu, "__half2float(fe00) is %08x, want 7fffffff", bits);
    cudaFree(d);
}

static void test_shared_attribute(void)
{
    float *d = nullptr;
    CHECK(cudaMalloc(&d, 64 * sizeof(float)) == cudaSuccess, "malloc");
    CHECK(cudaFuncSetAttribute(dyn_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 1024) ==
              cudaSuccess,
          "set attribute");
    dyn_smem<<<1, 64, 4096>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue,
          "4096 bytes of dynamic shared memory above the kernel's 1024 must fail the launch");
    dyn_smem<<<1, 64, 64 * sizeof(float)>>>(d);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "a launch within the attribute");
    cudaFree(d);
}

static void test_blas(void)
{
    cublasHandle_t h = nullptr;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    // A [2x3] column-major, C = op(A) * op(A)^T with OP_C == OP_T for reals
    const float A[6] = {1, 2, 3, 4, 5, 6}; // columns (1,2) (3,4) (5,6)
    float *dA = nullptr, *dC = nullptr, C[4];
    cudaMalloc(&dA, sizeof A);
    cudaMalloc(&dC, sizeof C);
    cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice);
    const float one = 1.0f, zero = 0.0f;
    // C [2x2] = A [2x3] * (A)^H [3x2]: op(B) = B^H with B = A, ldb = 2
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_C, 2, 2, 3, &one, dA, 2, dA, 2, &zero, dC, 2) ==
              CUBLAS_STATUS_SUCCESS,
          "CUBLAS_OP_C is the transpose for real types");
    fetch(C, dC, 4);
    CHECK(C[0] == 35 && C[1] == 44 && C[2] == 44 && C[3] == 56, "A A^T = %g %g %g %g", C[0], C[1],
          C[2], C[3]);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, 2, 2, 3, nullptr, dA, 2, dA, 2, &zero, dC, 2) ==
              CUBLAS_STATUS_INVALID_VALUE,
          "a NULL alpha is CUBLAS_STATUS_INVALID_VALUE");
    void *p = nullptr;
    CHECK(cudaMalloc(&p, 16) == cudaSuccess, "the context survives a rejected argument");
    cudaFree(p);

    // potrf on a NaN: a failed or NaN factorization, never LAPACKE's -4
    cusolverDnHandle_t s = nullptr;
    CHECK(cusolverDnCreate(&s) == CUSOLVER_STATUS_SUCCESS, "cusolverDnCreate");
    const float M[4] = {4, NAN, NAN, 9};
    float *dM = nullptr, *work = nullptr;
    int lwork = 0, *dinfo = nullptr, info = 0;
    cudaMalloc(&dM, sizeof M);
    cudaMalloc(&dinfo, sizeof(int));
    cudaMemcpy(dM, M, sizeof M, cudaMemcpyHostToDevice);
    CHECK(cusolverDnSpotrf_bufferSize(s, CUBLAS_FILL_MODE_LOWER, 2, dM, 2, &lwork) ==
              CUSOLVER_STATUS_SUCCESS,
          "bufferSize");
    cudaMalloc(&work, (size_t)lwork * sizeof(float));
    CHECK(cusolverDnSpotrf(s, CUBLAS_FILL_MODE_LOWER, 2, dM, 2, work, lwork, dinfo) ==
              CUSOLVER_STATUS_SUCCESS,
          "potrf");
    fetch(&info, dinfo, 1);
    CHECK(info >= 0, "potrf of a NaN matrix: info %d reads as an argument error", info);
    cusolverDnDestroy(s);
    cublasDestroy(h);
    cudaFree(dA), cudaFree(dC), cudaFree(dM), cudaFree(work), cudaFree(dinfo);
}

// Last: the fault leaves the context's sticky error, as on a device.
static void test_divergent_barrier(void)
{
    int *d = nullptr;
    CHECK(cudaMalloc(&d, LANES * sizeof(int)) == cudaSuccess, "malloc");
    divergent_barrier<<<1, LANES>>>(d);
    const cudaError_t e = cudaDeviceSynchronize();
    CHECK(e == cudaErrorLaunchFailure, "a __syncthreads in divergent code must fault, got %s",
          cudaGetErrorName(e));
}

int main(void)
{
    setenv("GPTQ_CUDA_EMU_QUIET", "1", 0);
    test_shuffles();
    test_votes();
    test_numbers();
    test_shared_attribute();
    test_blas();
    test_divergent_barrier();
    if (!test_failures)
        printf("emulator semantics: shuffles, votes, activemask, NaN, half, shared memory "
               "attribute, cuBLAS/cuSOLVER arguments, divergent barrier: as CUDA specifies\n");
    return test_result();
}
