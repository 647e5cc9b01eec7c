/* model/gguf_write.h: a model written as one GGUF file (v3) that llama.cpp,
 * Ollama and LM Studio run: the inverse of model/gguf_hf.h.
 *
 * Metadata as llama.cpp's converter writes it for the architecture (llama
 * for Llama and Mistral folders, qwen2 for Qwen2, qwen3 for Qwen3, phi3 for
 * Phi-3 with its linears fused as its files hold them):
 * hyperparameters, RoPE
 * (linear scaling as keys, Llama 3's as the rope_freqs tensor), the
 * tokenizer (tokens, token types, merges, tokenizer.ggml.pre, special ids,
 * add_bos/add_eos, chat template) rebuilt from tokenizer.json and
 * tokenizer_config.json. Tensors under llama.cpp's names, Q/K rows in its
 * interleaved-RoPE order for llama, aligned to 32 bytes.
 *
 * Precision: norms and biases F32; float weight matrices in `float_dtype`;
 * a packed linear is written in the GGUF block type whose grid it lies on,
 * bit for bit: 4-bit symmetric groups of 32 in column order (zero 8) as
 * Q4_0, 8-bit ones (zero 128) as Q8_0 (what `quantize --grid q4_0|q8_0`
 * makes); a linear quantized onto a block grid (q4_1 ... q6_k, the q4_k_m
 * recipe) as the GGUF blocks it keeps (gptq_model_linear_blocks). Any
 * other packing has no GGUF form: refused by name, with the grid to
 * quantize with.
 *
 * The file is written as "<name>.tmp.<pid>" beside its final name and
 * renamed into place, so a crash never leaves a half file under the name. */
#ifndef GPTQ_MODEL_GGUF_WRITE_H
#define GPTQ_MODEL_GGUF_WRITE_H

#include "common/dtype.h"
#include "gptq/error.h"
#include "model/hf_files.h"
#include "model/llama.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gptq_gguf_save_options {
    /* F16, BF16 or F32 for the float weight matrices, or GPTQ_DT_COUNT for
     * the model's own (F16 for an F32 model that has packed linears) */
    gptq_dtype float_dtype;
    /* the ggml type of token_embd and output (GPTQ leaves them float):
     * GPTQ_GGML_Q8_0 (rounded to nearest as llama.cpp's Q8_0 does), a block
     * grid's type (rounded to nearest, gptq_ggml_quantize_row), F16, BF16 or
     * F32; -1: as the float matrices */
    int embedding_type;
} gptq_gguf_save_options;

/* "q8_0", a block grid's name ("q6_k", ...), "f16", "bf16", "f32" -> the
 * ggml type; -1 for another name. */
int gptq_gguf_embedding_type(const char *name);

/* Write m as the GGUF file `name` (which must not exist) in the folder open
 * at parentfd; `path` names it in messages. files: the model's small files
 * (config.json, tokenizer.json and tokenizer_config.json are required;
 * generation_config.json is read when present). o: NULL for the defaults.
 * Errors: GPTQ_ERR_EXISTS, GPTQ_ERR_ARG (a packing with no GGUF type, a bad
 * dtype), GPTQ_ERR_UNSUPPORTED (an architecture, RoPE scaling or tokenizer
 * llama.cpp has no form for: named), GPTQ_ERR_FORMAT (a small file missing
 * or malformed), GPTQ_ERR_IO, GPTQ_ERR_NOMEM. On failure nothing is left. */
gptq_status gptq_gguf_save_at(const gptq_model *m, const gptq_hf_files *files,
                              const gptq_gguf_save_options *o, int parentfd, const char *name,
                              const char *path);

#ifdef __cplusplus
}
#endif
#endif
