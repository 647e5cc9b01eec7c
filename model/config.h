/* model/config.h: a Hugging Face config.json of the families gptqd runs.
 *
 * Reads LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
 * Qwen3ForCausalLM, Phi3ForCausalLM, OPTForCausalLM, BloomForCausalLM,
 * Gemma2ForCausalLM and Gemma3ForCausalLM configs
 * into one flat struct with HF's defaults for absent optional fields, checks
 * the shapes for consistency, and computes the rotary inverse frequencies
 * exactly as transformers' rope init functions do (default, linear, llama3).
 * (The files of a model folder: model/source.h.) */
#ifndef GPTQ_MODEL_CONFIG_H
#define GPTQ_MODEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gptq_arch {
    GPTQ_ARCH_LLAMA,   /* LlamaForCausalLM (Llama 2, Llama 3.x) */
    GPTQ_ARCH_MISTRAL, /* MistralForCausalLM: Llama + sliding window */
    GPTQ_ARCH_QWEN2,   /* Qwen2ForCausalLM: Llama + q/k/v bias */
    GPTQ_ARCH_QWEN3,   /* Qwen3ForCausalLM: Llama + RMSNorm of each head's q and k */
    GPTQ_ARCH_PHI3,    /* Phi3ForCausalLM: Llama, q/k/v and gate/up fused in its files,
                          optional sliding window */
    GPTQ_ARCH_OPT,     /* OPTForCausalLM: LayerNorms with biases (pre-LN; opt-350m post-LN
                          with project_in/out), learned positions
                          (offset 2), ReLU MLP fc1/fc2, biases on every linear; its
                          files name the modules model.decoder.* (gptq_config_file_name) */
    GPTQ_ARCH_BLOOM,   /* BloomForCausalLM: LayerNorms with biases (one after the embedding),
                          ALiBi instead of positions, q/k/v fused per head in
                          query_key_value, GELU (tanh) MLP, biases on every linear;
                          files under transformer.* */
    GPTQ_ARCH_GEMMA2,  /* Gemma2ForCausalLM: Llama's linears; (1 + w) RMSNorms, also after
                          attention and after the MLP; embedding times sqrt(hidden);
                          GELU (tanh) gate; soft-capped scores and logits; sliding
                          window on every other layer */
    GPTQ_ARCH_GEMMA3,  /* Gemma3ForCausalLM (text): Gemma 2 without soft-capping by default,
                          with (1 + w) q/k norms, a window on 5 of every 6 layers and their
                          own RoPE base (rope_local_base_freq) */
} gptq_arch;

typedef enum gptq_rope_type {
    GPTQ_ROPE_DEFAULT,
    GPTQ_ROPE_LINEAR, /* positions divided by factor (inv_freq / factor) */
    GPTQ_ROPE_LLAMA3, /* Llama 3.1 frequency-dependent scaling */
    GPTQ_ROPE_LONGROPE, /* Phi-3 128k / Phi-3.5: per-frequency factors, short up to the
                           original context, long beyond; cos/sin scaled */
} gptq_rope_type;

#define GPTQ_MAX_EOS 8
#define GPTQ_MAX_HEAD_DIM 512
#define GPTQ_MAX_LAYERS 4096

typedef struct gptq_model_config {
    gptq_arch arch;
    char architecture[64];       /* as spelled in "architectures"[0] */
    int hidden_size;             /* d_model */
    int intermediate_size;       /* MLP width (OPT: ffn_dim) */
    int num_attention_heads;
    int num_key_value_heads;     /* default num_attention_heads */
    int head_dim;                /* default hidden_size / num_attention_heads */
    int num_hidden_layers;
    int vocab_size;
    int max_position_embeddings; /* 0 if absent */
    double rms_norm_eps;         /* the norms' eps: default 1e-6; OPT's LayerNorm 1e-5 */
    double rope_theta;           /* default 10000 (Gemma 3: 1e6, its full-attention layers') */
    double rope_local_theta;     /* Gemma 3: the sliding layers' RoPE base (default RoPE);
                                    0: every layer uses rope_theta */
    gptq_rope_type rope_type;
    double rope_factor;          /* linear, llama3 */
    double rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_original_max_position_embeddings;          /* llama3, longrope */
    /* longrope: inv_freq[j] divided by short_factor[j] while a forward's
     * positions stay below the original context, by long_factor[j] once
     * they pass it (transformers' choice, per call); cos and sin times
     * attention_factor */
    float rope_short_factor[GPTQ_MAX_HEAD_DIM / 2], rope_long_factor[GPTQ_MAX_HEAD_DIM / 2];
    double rope_attention_factor;
    int tie_word_embeddings;     /* lm_head shares embed_tokens.weight */
    int attention_bias;          /* Llama, Qwen3: q/k/v/o have biases; Qwen2: q/k/v always do */
    int mlp_bias;                /* Llama: gate/up/down have biases */
    int sliding_window;          /* Mistral, Phi-3, Gemma 2; 0 = none */
    /* Gemma 2's layer_types: bit l set when layer l attends within the
     * sliding window (gptq_config_layer_window); the other families set
     * every layer's bit when they have a window */
    unsigned char sliding_layers[GPTQ_MAX_LAYERS / 8];
    double query_pre_attn_scalar; /* Gemma 2: scores scaled by its -1/2; 0 = head_dim's */
    double attn_softcap, final_softcap; /* Gemma 2's soft-capping of scores and logits; 0 = none */
    /* OPT-350m's layout: token embeddings (and the tied output matrix) of
     * word_embed_proj_dim, taken to hidden_size by model.project_in and back
     * by model.project_out (0: the same width, no projections); norms after
     * each residual add instead of before (do_layer_norm_before false) and
     * no final norm */
    int word_embed_proj_dim;
    int post_ln, no_final_norm;
    int bos_token_id;            /* -1 if absent */
    int eos_token_ids[GPTQ_MAX_EOS];
    int n_eos;
    gptq_dtype torch_dtype;      /* F16, BF16 or F32; F32 if absent */

    /* "quantization_config" (GPTQ checkpoints); present = 0 when absent */
    struct {
        int present;
        int bits, group_size, desc_act, sym;
        char quant_method[16];      /* "gptq" */
        char checkpoint_format[16]; /* "gptq" (v1) when absent, or "gptq_v2" */
        int v2;                     /* gptq_v2: qzeros hold the zeros, not zero-1 */
    } quant;
} gptq_model_config;

/* Parse a config.json into *cfg. Errors: GPTQ_ERR_IO (unreadable),
 * GPTQ_ERR_FORMAT (bad JSON, a missing required field, a field of the wrong
 * type or an inconsistent value: the message names the field, e.g.
 * "config.json: hidden_size 250 is not num_attention_heads (8) x head_dim"),
 * GPTQ_ERR_UNSUPPORTED (an architecture, hidden_act or rope_scaling type we
 * do not run; the message names it). */
gptq_status gptq_config_load(const char *config_json_path, gptq_model_config *cfg);

/* The same from a JSON text of `len` bytes; `what` names it in messages. */
gptq_status gptq_config_parse(const char *json, size_t len, const char *what,
                              gptq_model_config *cfg);

/* Rotary inverse frequencies inv_freq [head_dim / 2] as transformers
 * computes them in float32 (_compute_default_rope_parameters, and the linear
 * / llama3 variants). */
void gptq_config_rope_inv_freq(const gptq_model_config *cfg, float *inv_freq);
/* The same for positions past the original context: longrope's long
 * factors; for every other RoPE, the table above. */
void gptq_config_rope_inv_freq_long(const gptq_model_config *cfg, float *inv_freq);
/* The table of layers with their own RoPE base (Gemma 3's sliding layers,
 * gptq_config_layer_local_rope): default RoPE of rope_local_theta; for
 * every other family, gptq_config_rope_inv_freq's. */
void gptq_config_rope_inv_freq_local(const gptq_model_config *cfg, float *inv_freq);
int gptq_config_layer_local_rope(const gptq_model_config *cfg, int l);

/* Which linears carry a bias vector: q/k/v (Llama attention_bias, always
 * for Qwen2), o (Llama attention_bias), gate/up/down (Llama mlp_bias). */
int gptq_config_qkv_bias(const gptq_model_config *cfg);
int gptq_config_o_bias(const gptq_model_config *cfg);
int gptq_config_mlp_bias(const gptq_model_config *cfg);
/* 1 when each attention head's q and k pass an RMSNorm of head_dim weights
 * (self_attn.q_norm / k_norm) before RoPE: Qwen3. */
int gptq_config_qk_norm(const gptq_model_config *cfg);

/* The family's files hold q/k/v as one self_attn.qkv_proj (rows [q; k; v];
 * BLOOM's query_key_value interleaves them per head, [h0: q k v, h1: ...])
 * and, Phi-3, gate/up as one mlp.gate_up_proj (rows [gate; up]), in float
 * weights and GPTQ checkpoints alike. gptqd runs them as the separate
 * linears (model/source.c reads a part as rows of the fused tensor) and
 * writes them fused again (gptq_model_foreach_file_tensor). */
int gptq_config_fused(const gptq_model_config *cfg);
/* Whether the family fuses group g of gptq_fused_groups. */
int gptq_config_fuses(const gptq_model_config *cfg, int g);

/* The groups such a family's files fuse: the fused module path and its
 * parts' paths, rows in that order. */
typedef struct gptq_fused_group {
    const char *fused;
    const char *parts[3];
    int n;
} gptq_fused_group;
#define GPTQ_FUSED_GROUPS 2
extern const gptq_fused_group gptq_fused_groups[GPTQ_FUSED_GROUPS];
/* Where part k of group g lies in the fused tensor's rows: runs of *block
 * rows, the first at *start, one every *period rows (a concatenated part is
 * one run: block = rows), *rows in all; *total is the fused tensor's.
 * Part row j is fused row start + j / block * period + j % block
 * (gptq_config_fused_row). With concat, the parts concatenated whatever the
 * family's files do: llama.cpp's attn_qkv (its converter reorders BLOOM's
 * heads so). */
void gptq_config_fused_rows(const gptq_model_config *cfg, int g, int k, int concat,
                            int64_t *start, int64_t *rows, int64_t *total, int64_t *block,
                            int64_t *period);
int64_t gptq_config_fused_row(const gptq_model_config *cfg, int g, int k, int concat, int64_t j);
/* Whether a checkpoint of this family can hold packed linears of `bits`:
 * a fused tensor's zero points are packed along its rows, so each run of a
 * part (BLOOM: a head) must fill whole 32-bit words. GPTQ_OK, or
 * GPTQ_ERR_UNSUPPORTED saying which bits would do. */
gptq_status gptq_config_bits_check(const gptq_model_config *cfg, int bits);

/* OPT's and BLOOM's decoders: each norm is a LayerNorm with weight and
 * bias (input_layernorm, post_attention_layernorm and model.norm carry
 * ".bias"), and the MLP is act(up) -> down with no gate (OPT: ReLU, BLOOM:
 * GELU with tanh). OPT's positions are a learned table
 * model.embed_positions [max_position_embeddings + offset, hidden] read at
 * position + offset; BLOOM's are ALiBi (gptq_config_alibi) and its
 * embedding passes a LayerNorm first (model.embed_norm, weight and bias).
 * RoPE is for the others only. */
int gptq_config_layernorm(const gptq_model_config *cfg);
int gptq_config_gated_mlp(const gptq_model_config *cfg);
int gptq_config_embed_norm(const gptq_model_config *cfg);
int gptq_config_rope(const gptq_model_config *cfg);
/* 1 for ALiBi (BLOOM); slopes [num_attention_heads] as transformers'
 * _get_alibi_slopes computes them in float32 (for build_alibi_tensor). */
int gptq_config_alibi(const gptq_model_config *cfg);
/* Gemma 2: RMSNorms scale by (1 + w) (the backend's rmsnorm offset, 1 here,
 * else 0); each layer has two more, after attention and after the MLP
 * (model.layers.N.attn_out_norm / mlp_out_norm; its files call them
 * post_attention_layernorm and post_feedforward_layernorm, and its
 * pre_feedforward_layernorm is Llama's post_attention_layernorm); the
 * embedding is multiplied by gptq_config_embed_scale (0: none). */
float gptq_config_norm_offset(const gptq_model_config *cfg);
int gptq_config_sandwich_norms(const gptq_model_config *cfg);
float gptq_config_embed_scale(const gptq_model_config *cfg);
/* The sliding window of layer l (0: it sees every earlier position). */
int gptq_config_layer_window(const gptq_model_config *cfg, int l);
void gptq_config_alibi_slopes(const gptq_model_config *cfg, float *slopes);
/* Rows of the learned position table (0: RoPE), and the offset added to a
 * position to find its row (OPT: 2). */
int gptq_config_pos_rows(const gptq_model_config *cfg);
int gptq_config_pos_offset(const gptq_model_config *cfg);
/* The token embedding's width: word_embed_proj_dim where it differs from
 * hidden_size (OPT-350m), else hidden_size. */
int gptq_config_embed_dim(const gptq_model_config *cfg);

/* The name a family's files give the tensor (or module) gptqd calls `name`
 * ("model.layers.3.self_attn.o_proj.bias": OPT's files hold it as
 * "model.decoder.layers.3.self_attn.out_proj.bias", BLOOM's as
 * "transformer.h.3.self_attention.dense.bias"); every reader and writer
 * goes through it, so the runtime sees Llama's names alone. Writes at most
 * n bytes to out; returns out, or name itself when the family's name is
 * the same. */
const char *gptq_config_file_name(const gptq_model_config *cfg, const char *name, char *out,
                                  size_t n);
/* The same for a module path inside a layer ("self_attn.o_proj" -> OPT's
 * "self_attn.out_proj", BLOOM's "self_attention.dense"), into out[n]. */
const char *gptq_config_layer_path(const gptq_model_config *cfg, const char *path, char *out,
                                   size_t n);
/* The prefix a family's base-model checkpoints leave off ("model." for OPT,
 * "transformer." for BLOOM: facebook/opt-* and bigscience/bloom-* store
 * "decoder.layers.0..." and "h.0..."), or NULL; readers try the name
 * without it when the full one is absent. */
const char *gptq_config_base_prefix(const gptq_model_config *cfg);

/* Merge generation_config.json's end-of-generation ids (eos_token_id: an
 * id or a list) into cfg's, which generation stops on; bos_token_id fills
 * cfg's when config.json has none. Errors: GPTQ_ERR_FORMAT (named). */
gptq_status gptq_config_merge_generation(gptq_model_config *cfg, const char *json, size_t len,
                                         const char *what);

#ifdef __cplusplus
}
#endif
#endif
