/* model/source.h: where a model comes from: a Hugging Face folder
 * (config.json, the tokenizer's files, model.safetensors or its shards) or
 * one GGUF file (seen through model/gguf_hf.h as the same files and
 * tensors). The loader (model/llama.h) reads weights by HF tensor name
 * through this one interface, whatever the source. */
#ifndef GPTQ_MODEL_SOURCE_H
#define GPTQ_MODEL_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "gptq/error.h"
#include "model/config.h"
#include "model/hf_files.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gptq_model_source gptq_model_source;

typedef struct gptq_source_tensor {
    const char *name;   /* HF name */
    gptq_dtype dtype;   /* as stored (safetensors); a GGUF tensor: F16/BF16 as stored,
                           any other type F32 (read_f32 dequantizes) */
    int ndim;           /* 1..4 */
    int64_t shape[4];   /* HF order ([rows, cols] for a matrix) */
    int64_t numel;
    const void *data;   /* safetensors: the stored bytes, in a mapping of the file: read
                           them only with read_f32/read_raw (SIGBUS guard); GGUF: NULL */
    size_t bytes;       /* numel * element size of dtype */
    const void *impl_;  /* the source's own handle */
    int permute_heads_; /* GGUF: rows to un-permute */
    /* A part of a fused tensor (gptq_config_fused): data is NULL and the
     * reads slice "model.layers.<part_layer_>.<part_of_>.<part_suffix_>"
     * along its first axis (weight, bias) or its last (qweight, scales,
     * qzeros), from part_start_ */
    const char *part_of_, *part_suffix_;
    int part_layer_;
    int part_last_axis_;
    int64_t part_start_, part_block_, part_period_; /* runs of part_block_ rows (or columns,
                                                       or zero-point words) every
                                                       part_period_, the first at start */
} gptq_source_tensor;

/* Open `path`: a folder (an HF model) or a regular file starting with the
 * GGUF magic. Reads the folder's small files (config.json required) or
 * synthesizes them from the GGUF metadata, parses the config (with
 * generation_config.json's end-of-generation ids merged in), and opens the
 * weights. *out is owned (gptq_source_free).
 * Errors: GPTQ_ERR_NOTFOUND (no such path, no config.json, no weights),
 * GPTQ_ERR_FORMAT / GPTQ_ERR_UNSUPPORTED (from the readers, naming the file
 * and field), GPTQ_ERR_IO, GPTQ_ERR_NOMEM. */
gptq_status gptq_source_open(const char *path, gptq_model_source **out);

/* The same for `rel` confined beneath the directory rootfd (every file it
 * opens is opened with gptq_open_beneath, common/file.h: symbolic links
 * only while they stay beneath); rootfd AT_FDCWD: unconfined. `label`
 * names it in messages. */
gptq_status gptq_source_open_in(int rootfd, const char *rel, const char *label,
                                gptq_model_source **out);
void gptq_source_free(gptq_model_source *s);

/* What a load of `path` will cost, cheaply (config.json and file sizes, or
 * the GGUF header; no weights or tokenizer read): *cfg parsed, *bytes the
 * resident weights. For a memory check before a load starts.
 * Errors: gptq_source_open's for the files it reads. */
gptq_status gptq_source_estimate(const char *path, gptq_model_config *cfg, uint64_t *bytes);
gptq_status gptq_source_estimate_in(int rootfd, const char *rel, const char *label,
                                    gptq_model_config *cfg, uint64_t *bytes);

/* 1 for a GGUF file. */
int gptq_source_is_gguf(const gptq_model_source *s);
/* The path it was opened with. */
const char *gptq_source_label(const gptq_model_source *s);
/* config.json and the other small files (owned by s). */
const gptq_hf_files *gptq_source_files(const gptq_model_source *s);
const gptq_model_config *gptq_source_config(const gptq_model_source *s);
/* Bytes the loaded model will hold: F16/BF16 matrices and packed GPTQ
 * linears as stored, other float tensors as float32. */
uint64_t gptq_source_resident_bytes(const gptq_model_source *s);

/* 1 and *t filled when the HF tensor `name` exists, else 0. For a family
 * whose files fuse linears (gptq_config_fused), a part's name
 * ("model.layers.0.self_attn.k_proj.weight", ".qweight", ".scales",
 * ".qzeros", ".g_idx", ".bias") is found as its rows of the fused tensor
 * ("...self_attn.qkv_proj.*"), sized by the config; g_idx is shared. */
int gptq_source_find(const gptq_model_source *s, const char *name, gptq_source_tensor *t);

/* t's values as float32 out[t->numel] (F16/BF16/F32 converted, GGUF
 * dequantized and un-permuted). Errors: GPTQ_ERR_FORMAT (a dtype that is
 * not a float), the GGUF reader's. */
gptq_status gptq_source_read_f32(const gptq_model_source *s, const gptq_source_tensor *t,
                                 float *out);

/* t's stored bytes copied to out[t->bytes] (integer tensors of a packed
 * linear, fp16 scales, F16/BF16 weights; a GGUF's F16/BF16 tensors in the
 * HF layout). Errors: GPTQ_ERR_FORMAT (a GGUF tensor of another type: it
 * has no stored form here), GPTQ_ERR_IO (the file shrank while read). */
gptq_status gptq_source_read_raw(const gptq_model_source *s, const gptq_source_tensor *t,
                                 void *out);

/* The pages of t are not needed now (a streamed layer is done with them). */
void gptq_source_release(const gptq_model_source *s, const gptq_source_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
