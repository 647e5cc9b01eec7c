/* model/calib.h: the calibration pipeline: a whole model quantized with
 * GPTQ layer by layer (docs/ARCHITECTURE.md "The main path", quantize), and RTN for the baseline.
 *
 * Calibration windows of seqlen tokens are embedded and walked through the
 * decoder layers in order. For each layer, and each group of linears that
 * share an input (q/k/v, o, gate/up, down), that input's Hessian is
 * accumulated over every window, the group is quantized and packed into the
 * model; with true-sequential on (the default), the next group's inputs are
 * computed with the earlier groups already quantized. The layer is computed
 * in parts (gptq_model_layer_part), each part once (gate/up twice) instead
 * of re-running the layer from its start for every group, with the same
 * results (bench/RESULTS.md: 1.7x less forward time). Only one layer's
 * activations are alive at a time: its inputs and (true-sequential) its
 * attention outputs, nsamples x seqlen x (hidden + q_dim) floats, plus one
 * batch of scratch. */
#ifndef GPTQ_MODEL_CALIB_H
#define GPTQ_MODEL_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/quant.h"
#include "model/llama.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gptq_calib_options {
    gptq_quant_config quant; /* bits, group size, act-order, sym, damp, ... */
    int nsamples;            /* calibration windows */
    int seqlen;              /* tokens per window */
    uint64_t seed;           /* window sampler seed */
    int true_sequential;     /* default 1 */
    unsigned skip_mask;      /* bit (1 << gptq_linear_id) set: leave that linear float */
    const int64_t *offsets;  /* optional: the nsamples window starts to use
                                instead of drawing them (e.g. a reference's) */
    int batch;               /* windows per layer-forward call */
    int reference_storage;   /* 0 (default): pack every linear (what ships).
                                1: keep the dequantized weights, rounded to
                                fp16, as dense linears, as the reference
                                implementation stores its result; for
                                comparing with it number for number */
    const struct gptq_backend *backend; /* NULL: on the host, in m itself.
                                A CUDA backend (kernels/backend_select.h):
                                every layer is uploaded, run, captured
                                (Hessians on the device) and quantized on
                                the GPU, one layer resident at a time, so a
                                model larger than device memory (opened
                                streaming) works; m itself stays on the
                                host and gets the packed linears. The CPU
                                backend: that same path with the copy in
                                host memory (same results as NULL; tests) */
} gptq_calib_options;

/* The defaults of every option (their table is model/options.c's, with
 * gptq_quant_config_default's), true-sequential, nothing skipped. */
void gptq_calib_options_default(gptq_calib_options *o);
/* Every option of o against its bounds, without a model (the message names
 * the option as gptqctl does: "nsamples 0: use 1 to 65536").
 * gptq_calib_quantize adds the model's checks. */
gptq_status gptq_calib_options_check(const gptq_calib_options *o);

/* Progress, once per quantized linear. */
typedef struct gptq_calib_progress {
    int layer, layers;        /* 0-based layer, number of layers */
    gptq_linear_id which;     /* the linear just quantized */
    int done, total;          /* linears quantized so far, in all */
    double seconds;           /* GPTQ time of this linear */
    double loss;              /* its GPTQ loss (gptq_quant_result.loss) */
    double elapsed;           /* since the pipeline started */
} gptq_calib_progress;

/* Return non-OK to stop the pipeline (GPTQ_ERR_CANCELED to cancel). */
typedef gptq_status (*gptq_calib_progress_fn)(void *user, const gptq_calib_progress *p);

/* Draw nsamples window starts in [0, n_tokens - seqlen - 1] exactly as the
 * reference GPTQ code does (Python: random.seed(seed); random.randint per
 * window), so a seed gives the reference's windows on every machine. Errors: GPTQ_ERR_ARG when the text
 * has fewer than seqlen + 1 tokens (the message gives both counts). */
gptq_status gptq_calib_windows(size_t n_tokens, int nsamples, int seqlen, uint64_t seed,
                               int64_t *offsets);

/* Quantize every linear of m in place with GPTQ on calibration windows
 * from tokens [n_tokens] (a tokenized text). On success each linear not in
 * skip_mask is packed (GPTQ v1); on failure m is left partly quantized and
 * must be discarded. Errors: option errors (GPTQ_ERR_ARG naming the field),
 * GPTQ_ERR_NUMERIC ("layer 3 q_proj: Cholesky ... raise damp"), packing
 * errors (a shape the format cannot store), GPTQ_ERR_NOMEM, the progress
 * callback's status. */
gptq_status gptq_calib_quantize(gptq_model *m, const int32_t *tokens, size_t n_tokens,
                                const gptq_calib_options *o, gptq_calib_progress_fn progress,
                                void *user);

/* A skip_mask a model can be saved with: for a family whose files fuse
 * linears (gptq_config_fused: q/k/v, gate/up), all of a group or none.
 * Errors: GPTQ_ERR_ARG naming the groups. gptq_calib_quantize and
 * gptq_calib_rtn check it; gptqd asks before any work. */
gptq_status gptq_calib_skip_check(const gptq_model_config *cfg, unsigned skip_mask);

/* Round every linear of m to nearest with cfg's quantizer (the baseline),
 * in place, packed; no calibration. skip_mask and progress (NULL: none; its
 * loss is 0) as above. */
gptq_status gptq_calib_rtn(gptq_model *m, const gptq_quant_config *cfg, unsigned skip_mask,
                           gptq_calib_progress_fn progress, void *user);

#ifdef __cplusplus
}
#endif
#endif
