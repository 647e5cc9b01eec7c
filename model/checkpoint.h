/* model/checkpoint.h: writing a quantized model as a GPTQ checkpoint folder
 * (DESIGN.md §4; checkpoint_format "gptq", v1 zeros), loadable by vLLM,
 * transformers (optimum) and ExLlama. Reading such folders is part of
 * gptq_model_load (model/llama.h).
 *
 * The folder holds config.json (the source's, plus quantization_config),
 * quantize_config.json, model.safetensors (per quantized linear: qweight,
 * qzeros, scales, g_idx, and its bias if any; every other tensor in the
 * model's torch_dtype) and the source's tokenizer and generation files. It
 * is written into a temporary sibling folder and renamed into place, so a
 * crash never leaves a half checkpoint under the final name. */
#ifndef GPTQ_MODEL_CHECKPOINT_H
#define GPTQ_MODEL_CHECKPOINT_H

#include "gptq/quant.h"
#include "model/llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the model was quantized, for quantization_config. */
typedef struct gptq_checkpoint_meta {
    gptq_quant_config quant; /* bits, group_size, sym, act_order, static_groups, damp */
    int true_sequential;
} gptq_checkpoint_meta;

/* Write m to folder `dir` (which must not exist yet). `src_dir` is the HF
 * folder m was loaded from: its config.json is the base of ours and its
 * tokenizer files are copied. Every linear must be packed with meta->quant.bits.
 * Errors: GPTQ_ERR_EXISTS (dir exists), GPTQ_ERR_ARG (a float linear, or
 * bits that disagree), GPTQ_ERR_IO (naming the file), GPTQ_ERR_NOMEM. On
 * failure nothing is left at `dir` and the temporary folder is removed. */
gptq_status gptq_checkpoint_save(const gptq_model *m, const char *src_dir,
                                 const gptq_checkpoint_meta *meta, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
