/* kernels/linear.h: packed linears between the checkpoint's v1 layout and
 * the kernels' (gptq_linear, kernels/backend.h), on the host.
 *
 * Every packed linear a model holds is a gptq_linear: loading a checkpoint
 * or finishing a quantize job converts once (gptq_linear_from_v1), saving
 * converts back (gptq_linear_to_v1), so the files stay the ecosystem's. */
#ifndef GPTQ_KERNELS_LINEAR_H
#define GPTQ_KERNELS_LINEAR_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Take the host v1 linear *v1 (checked: shape, word rules, g_idx in range)
 * into the kernels' layout *out. Columns already in group order move over
 * as they are (no copy, perm NULL); otherwise the codes are re-packed in
 * group order into new arrays and v1's owned arrays are freed. On success
 * *v1 is emptied (its arrays belong to *out or are gone); on failure it is
 * left as it was. */
gptq_status gptq_linear_from_v1(gptq_packed *v1, gptq_linear *out);

/* A new host v1 linear (owned) in the checkpoint's column order from the
 * host linear L. */
gptq_status gptq_linear_to_v1(const gptq_linear *L, gptq_packed *out);

/* Check a linear in the kernels' layout whose arrays the caller holds on
 * the host (a mapped or shared one): g_idx non-decreasing and in range,
 * perm (when not NULL) a permutation of the columns. Sets L->chunked. */
gptq_status gptq_linear_check(gptq_linear *L);

/* W [rows, cols] float32 in the checkpoint's column order, from the host
 * linear L (gptq_packed_dequantize of the v1 form). */
gptq_status gptq_linear_dequantize(const gptq_linear *L, float *W);

/* Bytes of L's arrays (qweight, qzeros, scales, g_idx and perm). */
size_t gptq_linear_bytes(const gptq_linear *L);

/* A copy of the host linear src in u's memory as *dst (never `owned`
 * unless u takes the CPU backend's own memory, which is malloc's; free it
 * with gptq_linear_free_on). On failure nothing of it stays allocated
 * (arena memory excepted) and *dst is emptied; u->st says why. */
gptq_status gptq_linear_upload(gptq_uploader *u, const gptq_linear *src, gptq_linear *dst);

/* A host copy (owned) of the linear src in be's memory. */
gptq_status gptq_linear_download(const gptq_backend *be, const gptq_linear *src,
                                 gptq_linear *dst);

/* Free the arrays of L that came from be->alloc (gptq_linear_upload without
 * an arena) and empty it. */
void gptq_linear_free_on(const gptq_backend *be, gptq_linear *L);

/* Free L's host arrays that it owns (P.owned; perm is owned with P) and
 * empty it. */
void gptq_linear_free(gptq_linear *L);

#ifdef __cplusplus
}
#endif
#endif
