/* model/gguf_hf.h: a GGUF file seen as a Hugging Face model folder.
 *
 * llama.cpp's converter (convert_hf_to_gguf.py) turns an HF folder into
 * GGUF metadata and renamed, possibly quantized tensors; this is the way
 * back, so that one loader, one tokenizer and one checkpoint writer serve
 * both: config.json, generation_config.json, tokenizer.json and
 * tokenizer_config.json synthesized from the metadata, and every tensor
 * under its HF name in the HF layout (dequantized to float32; the Q and K
 * projection rows that the converter permutes for llama.cpp's interleaved
 * RoPE put back in rotate_half order).
 *
 * Architectures: llama (Llama 2/3, Mistral, SmolLM), mistral, qwen2, qwen3,
 * phi3 (attn_qkv and ffn_up = [gate; up] fused, read as parts by
 * model/source.c), gemma2 and gemma3 (norm weights stored as 1 + w, read
 * back as w; the attention scale, caps, window period and Gemma 3's local
 * RoPE base from the metadata with llama.cpp's defaults), bloom (LayerNorm
 * eps, token_embd_norm, attn_qkv as [q; k; v] read as parts). Tensors are
 * named by gptqd's own names (model/source.c does not map a GGUF's
 * through the family table).
 * Tokenizers: tokenizer.ggml.model "gpt2" (byte-level BPE, with
 * tokenizer.ggml.pre mapped to the pre-tokenizer regexes llama.cpp uses for
 * that name) and "llama" (SentencePiece BPE: merges rebuilt from the
 * scores, byte fallback). Anything else is refused by name. */
#ifndef GPTQ_MODEL_GGUF_HF_H
#define GPTQ_MODEL_GGUF_HF_H

#include <stddef.h>

#include "gptq/error.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/hf_files.h"

#ifdef __cplusplus
extern "C" {
#endif

/* config.json, generation_config.json (the end-of-generation ids: eos, eot,
 * eom and the end-of-turn tokens llama.cpp recognizes), tokenizer.json and
 * tokenizer_config.json (special tokens, add_bos, the chat template) of g
 * into *files (zeroed first; free with gptq_hf_files_free). Every tensor of
 * the file must be one this mapping knows.
 * Errors: GPTQ_ERR_UNSUPPORTED (architecture, tokenizer model, pre-tokenizer
 * name, rope scaling or a tensor we do not map: named), GPTQ_ERR_FORMAT (a
 * required key missing or of the wrong type, a shape that disagrees with
 * the metadata: named), GPTQ_ERR_NOMEM. */
gptq_status gptq_gguf_hf_files(const gptq_gguf *g, gptq_hf_files *files);

/* Only config.json's text (a malloc'ed, NUL-terminated string of *len
 * bytes): cheap, no tokenizer is built. Errors: those of gptq_gguf_hf_files
 * for the config keys and tensors. */
gptq_status gptq_gguf_hf_config(const gptq_gguf *g, char **json, size_t *len);

/* Only tokenizer.json's text (a malloc'ed, NUL-terminated string of *len
 * bytes). Errors: those of gptq_gguf_hf_files for the tokenizer keys. */
gptq_status gptq_gguf_tokenizer_json(const gptq_gguf *g, char **json, size_t *len);

/* llama.cpp's name of HF tensor `hf` ("model.layers.3.self_attn.q_proj.weight"
 * -> "blk.3.attn_q.weight") into buf; *layer is its layer (-1 outside the
 * layers) and *which the module: 0 input_layernorm, 1 post_attention_
 * layernorm, 2 q, 3 k, 4 v, 5 o, 6 gate, 7 up, 8 down (-1 outside). Returns 0
 * when the tensor has no llama.cpp name. */
int gptq_gguf_name_of(const char *hf, char *buf, size_t n, int *layer, int *which);

/* The GGUF tensor holding HF tensor `hf_name` ("model.layers.3.self_attn.
 * q_proj.weight") of a model with config cfg, or NULL. *permute_heads is
 * the number of heads whose rows the converter permuted (0: none). */
const gptq_gguf_tensor *gptq_gguf_hf_tensor(const gptq_gguf *g, const gptq_model_config *cfg,
                                            const char *hf_name, int *permute_heads);

/* Read t as float32 in the HF layout into out[t->numel] (rows un-permuted
 * when permute_heads > 0). Errors: gptq_gguf_read_f32's, GPTQ_ERR_FORMAT
 * (rows not a multiple of 2 * permute_heads). */
gptq_status gptq_gguf_hf_read(const gptq_gguf *g, const gptq_gguf_tensor *t, int permute_heads,
                              float *out);
/* The same with t's stored bytes (F16/BF16 weights kept as they are) into
 * out[t->bytes]. Errors: gptq_gguf_read's, GPTQ_ERR_FORMAT. */
gptq_status gptq_gguf_hf_read_raw(const gptq_gguf *g, const gptq_gguf_tensor *t,
                                  int permute_heads, void *out);

/* The tokenizer.ggml.pre name whose split rules are those of tokenizer.json's
 * pre_tokenizer `pre` (a byte-level BPE one: Split regexes, Digits, and
 * ByteLevel with or without its GPT-2 regex) with model.ignore_merges
 * `ignore_merges`; NULL when llama.cpp knows no such name. The inverse of
 * what gptq_gguf_hf_files builds for a name. `pre` is a jansson json_t. */
const char *gptq_gguf_pre_name(const void *pre, int ignore_merges);

#ifdef __cplusplus
}
#endif
#endif
