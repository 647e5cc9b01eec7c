/* model/checkpoint.h: writing a model as a folder: a quantized model as a
 * GPTQ checkpoint (checkpoint_format "gptq", v1 zeros), loadable by vLLM,
 * transformers (optimum) and ExLlama; a float model as a plain Hugging
 * Face folder. Reading such folders is part of gptq_model_load
 * (model/llama.h).
 *
 * The folder holds config.json (the model's, plus quantization_config for a
 * checkpoint), quantize_config.json (checkpoints), model.safetensors (per
 * quantized linear: qweight, qzeros, scales, g_idx, and its bias if any;
 * every other tensor in the float dtype) and the model's tokenizer and
 * generation files. It is written into a temporary sibling folder and
 * renamed into place, so a crash never leaves a half folder under the
 * final name. */
#ifndef GPTQ_MODEL_CHECKPOINT_H
#define GPTQ_MODEL_CHECKPOINT_H

#include <jansson.h>

#include "common/dtype.h"
#include "gptq/quant.h"
#include "model/hf_files.h"
#include "model/llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the model was quantized, for quantization_config. */
typedef struct gptq_checkpoint_meta {
    gptq_quant_config quant; /* bits, group_size, sym, act_order, static_groups, damp */
    int true_sequential;
    int v2;                  /* write checkpoint_format gptq_v2 (zeros as they are), not v1 */
} gptq_checkpoint_meta;

/* quantization_config as a checkpoint carries it (and its
 * quantize_config.json): the settings loaders read, and `meta` as current
 * tools write it (who quantized, with what); numbers in their shortest
 * round-trip form. A new reference, or NULL when memory runs out. */
json_t *gptq_checkpoint_quant_config(const gptq_checkpoint_meta *meta);

/* Write m to folder `dir` (which must not exist yet), from the model's
 * small files `files` (config.json, the base of ours, is required; the
 * tokenizer and generation files are copied as they are).
 * meta != NULL: a GPTQ checkpoint; every linear must be packed with
 * meta->quant.bits. meta == NULL: a float model folder (what transformers
 * and llama.cpp's converter read); every linear must be dense.
 * float_dtype: F16, BF16 or F32 for the float tensors, or GPTQ_DT_COUNT for
 * the config's torch_dtype (a checkpoint of an F32 model: F16).
 * Errors: GPTQ_ERR_EXISTS (dir exists), GPTQ_ERR_ARG (a float linear in a
 * checkpoint, a packed one in a float folder, bits that disagree, a bad
 * dtype), GPTQ_ERR_FORMAT (config.json missing or not an object),
 * GPTQ_ERR_IO (naming the file), GPTQ_ERR_NOMEM. On failure nothing is left
 * at `dir` and the temporary folder is removed. */
gptq_status gptq_checkpoint_save(const gptq_model *m, const gptq_hf_files *files,
                                 const gptq_checkpoint_meta *meta, gptq_dtype float_dtype,
                                 const char *dir);

/* The same for the new folder `name` in the folder open at parentfd (every
 * file made with *at calls beneath it, nothing resolved by path again);
 * `dir` names it in messages. While writing, the folder is
 * "<name>.tmp.<pid>" holding a marker file that gptq_checkpoint_clean_stale
 * recognizes. */
gptq_status gptq_checkpoint_save_at(const gptq_model *m, const gptq_hf_files *files,
                                    const gptq_checkpoint_meta *meta, gptq_dtype float_dtype,
                                    int parentfd, const char *name, const char *dir);

/* Removes the unfinished save folders a killed process left: folders
 * "<name>.tmp.<pid>" with the marker, owned by this user, whose process no
 * longer runs, in `root` and up to `depth` levels below it (symbolic links
 * not followed). Returns how many. */
int gptq_checkpoint_clean_stale(const char *root, int depth);

#ifdef __cplusplus
}
#endif
#endif
