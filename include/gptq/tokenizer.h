/* gptq/tokenizer.h: Hugging Face tokenizer.json (BPE model) in C.
 *
 * Covers the two BPE families in use: byte-level BPE (GPT-2, Llama 3, Qwen2,
 * SmolLM: ByteLevel / Split / Digits + ByteLevel pre-tokenizers,
 * ignore_merges) and SentencePiece-style BPE (Llama 2, Mistral:
 * Prepend/Replace normalizers or a Metaspace pre-tokenizer, byte_fallback,
 * <unk>). Encode and decode follow the `tokenizers` library step for step
 * (added-token split, normalizer, pre-tokenizer, BPE by merge rank,
 * post-processor; decoder chain), so ids and text match it exactly for the
 * supported components, which model/tokenizer/internal.h lists; any other
 * component is refused by name when loading.
 *
 * A loaded tokenizer is immutable: any number of threads may call encode,
 * decode and the lookups on one handle at once. */
#ifndef GPTQ_TOKENIZER_H
#define GPTQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gptq_tokenizer gptq_tokenizer;

/* Read a tokenizer.json (or the tokenizer of a GGUF file, recognized by its
 * magic: model/gguf_hf.h) and build the tokenizer. On success *out owns a new
 * handle, released with gptq_tokenizer_free. Errors: GPTQ_ERR_IO (cannot
 * read), GPTQ_ERR_FORMAT (bad JSON or a field of the wrong shape; the message
 * names the field), GPTQ_ERR_UNSUPPORTED (a model, normalizer, pre-tokenizer,
 * decoder or post-processor type we do not implement; the message names it). */
gptq_status gptq_tokenizer_load(const char *tokenizer_json_path, gptq_tokenizer **out);

/* Largest tokenizer.json gptq_tokenizer_load reads. */
#define GPTQ_TOKENIZER_MAX_BYTES ((size_t)256 << 20)

/* The same from the JSON text json[len] (need not be NUL-terminated);
 * `name` labels messages. */
gptq_status gptq_tokenizer_load_json(const char *json, size_t len, const char *name,
                                     gptq_tokenizer **out);

/* Release a tokenizer (NULL is fine). */
void gptq_tokenizer_free(gptq_tokenizer *tok);

/* Token ids of `len` bytes of UTF-8 `text` (need not be NUL-terminated).
 * add_special != 0 applies the post-processor (e.g. Llama's leading <s> /
 * <|begin_of_text|>), as HF encode(add_special_tokens=True) does.
 * On success *ids is a malloc'ed array of *n_ids ids that the caller frees
 * with free() (NULL when *n_ids is 0). Errors: GPTQ_ERR_ARG (text is not
 * valid UTF-8; the message gives the byte offset), GPTQ_ERR_LIMIT (a
 * pre-tokenizer regex ran out of its match limits), GPTQ_ERR_NOMEM. */
gptq_status gptq_tokenizer_encode(const gptq_tokenizer *tok, const char *text, size_t len,
                                  int add_special, int32_t **ids, size_t *n_ids);

/* Text of `n` ids, through the tokenizer's decoder as HF decode(ids,
 * skip_special_tokens=False) does. Always valid UTF-8: byte sequences split
 * across tokens that do not form characters become U+FFFD, as HF does.
 * On success *text is a malloc'ed, NUL-terminated string of *len bytes that
 * the caller frees with free(). Errors: GPTQ_ERR_ARG for an id outside
 * [0, vocab_size) (the message names it), GPTQ_ERR_NOMEM. */
gptq_status gptq_tokenizer_decode(const gptq_tokenizer *tok, const int32_t *ids, size_t n,
                                  char **text, size_t *len);

/* Raw bytes one token contributes to decoded text, for streaming output:
 * byte-level tokens unmapped to their bytes, <0xNN> byte-fallback tokens as
 * the one byte, "▁" as a space. The bytes may be part of a UTF-8 character;
 * the caller joins them and prints whole characters. first != 0 applies the
 * decoder's strip of the sequence's leading space (Llama 2's Strip, the
 * Metaspace decoder) as for the first token of a sequence. *bytes points into
 * the tokenizer (valid until gptq_tokenizer_free); it is not NUL-terminated.
 * Errors: GPTQ_ERR_ARG for an id outside [0, vocab_size). */
gptq_status gptq_tokenizer_token_bytes(const gptq_tokenizer *tok, int32_t id, int first,
                                       const char **bytes, size_t *len);

/* Number of ids: one more than the largest id of the model vocabulary and
 * the added tokens. Ids that no token uses decode to nothing. */
int gptq_tokenizer_vocab_size(const gptq_tokenizer *tok);

/* Id of the token whose text is the NUL-terminated `token` (added tokens
 * first, then the model vocabulary, in its stored form, e.g. "Ġthe"), or -1. */
int32_t gptq_tokenizer_token_id(const gptq_tokenizer *tok, const char *token);

#ifdef __cplusplus
}
#endif
#endif
