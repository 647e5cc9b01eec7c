// kernels/cuda/qgemm.cuh: the repacked device layout of a GPTQ linear, shared
// by the repacker (qgemm_repack.cu) and the kernels (qgemm.cu).
//
// Why repack. A v1 checkpoint with act-order (desc_act) scatters each
// group's columns over the input dimension, so a kernel walking the input
// would switch scale and zero at every column. At load we sort the input
// columns by g_idx (stable) so that every group is one contiguous run, keep
// the permutation, and gather x through it while staging x in shared memory
// (as ExLlama does): act-order then costs one indexed load per activation,
// nothing per weight.
//
// The layout, for `bits` in {2, 3, 4, 8}, K = cols / 32 chunks of 32 sorted
// input columns:
//   qweight  uint32 [K * bits, rows]: chunk c of output row r is the `bits`
//            words qweight[(c*bits + i)*rows + r], i < bits: the 32 codes of
//            sorted columns 32c .. 32c+31 as one little-endian bit stream
//            (code k at bits [k*bits, (k+1)*bits)), exactly the v1 stream of
//            the sorted columns. Rows are the fast dimension, so a thread
//            that owns four consecutive rows reads each word row with one
//            128-bit load and a warp reads 512 contiguous bytes: coalesced,
//            every weight byte read once per batch tile.
//   sz       half2  [groups, rows]: (scale, zero) of each group and output
//            row, zero with v1's +1 added back (an integer <= 256, exact in
//            fp16). Four rows are one 128-bit load.
//   chunk_group int32 [K]: the group of each chunk. Groups span whole chunks
//            (the repacker checks), so scale and zero are fixed per chunk
//            and the kernel folds them out of the inner loop:
//              Σ_k s·(q_k − z)·x_k = s·(Σ_k q_k·x_k − z·Σ_k x_k).
//   perm     int32 [cols]: sorted column j is input feature perm[j].
// rows is a multiple of 4 (the v1 word rules already imply it).
#pragma once

#include "kernels/cuda/cuda_common.cuh"

struct gptq_cuda_qlinear {
    int bits, rows, cols, groups;
    int chunks;           // cols / 32
    uint32_t *qweight;    // [chunks * bits, rows]
    __half2 *sz;          // [groups, rows]
    int32_t *chunk_group; // [chunks]
    int32_t *perm;        // [cols]
    size_t bytes;         // device bytes of the four arrays
};

#define QCHUNK 32 // input columns per chunk
