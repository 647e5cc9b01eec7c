/* model/llama_internal.h: what the files of the Llama runtime share and
 * nothing else includes: the model's and the KV cache's layout, and the few
 * helpers one file defines for another. The runtime's rooms:
 *   llama.c          what a model is: linear names and shapes, freeing,
 *                    introspection, reading and replacing linears
 *   llama_load.c     building a model from a source or a caller's tensors
 *   llama_weights.c  where the weights live: the tensor table, copies,
 *                    other backends
 *   llama_kv.c       the KV cache
 *   llama_forward.c  the forward pass and the per-layer entry points */
#ifndef GPTQ_MODEL_LLAMA_INTERNAL_H
#define GPTQ_MODEL_LLAMA_INTERNAL_H

#include "kernels/backend.h"
#include "kernels/linear.h"
#include "model/llama.h"
#include "model/source.h"

/* Dense weight matrices (linears, embeddings, lm_head) stay in their
 * file's precision: float32, or F16/BF16 where the backend's gemm takes it
 * (be->weight_dtypes; the kernels convert per tile); norms and biases are
 * float32. */
typedef struct linear {
    int rows, cols; /* out, in */
    void *W;        /* [rows, cols] of dtype wt, NULL when packed */
    gptq_dtype wt;
    gptq_linear Q;  /* valid when packed: the kernels' layout (kernels/linear.h) */
    int packed;
    float *bias; /* [rows] or NULL */
    uint8_t *blocks; /* GGUF blocks W was dequantized from: a block-grid quantization
                        (gptq_model_set_linear_blocks); host memory the model owns, views
                        or not (copies and uploads take their own); NULL otherwise */
    int block_type;  /* their ggml type */
} linear;

typedef struct layer {
    float *attn_norm; /* input_layernorm [hidden] */
    float *mlp_norm;  /* post_attention_layernorm [hidden] */
    float *q_norm;    /* self_attn.q_norm [head_dim] (gptq_config_qk_norm), else NULL */
    float *k_norm;    /* self_attn.k_norm [head_dim] */
    float *attn_norm_b, *mlp_norm_b; /* their biases [hidden] (gptq_config_layernorm), else NULL */
    float *attn_out_norm, *mlp_out_norm; /* [hidden]: norms of the attention's and the MLP's
                         outputs before the residual add (gptq_config_sandwich_norms), else NULL */
    linear lin[GPTQ_LIN_COUNT];
} layer;

/* A layer's norm vectors, for the code that walks them all (load, tensor
 * table, copies): the HF module path and the vector of layer Ly. */
typedef struct llama_norm {
    const char *path;   /* "input_layernorm", ... */
    const char *suffix; /* "weight" or "bias" */
    enum {
        NORM_ALWAYS,   /* hidden long, every family */
        NORM_PER_HEAD, /* head_dim long, only when gptq_config_qk_norm */
        NORM_BIAS,     /* a LayerNorm's bias, only when gptq_config_layernorm */
        NORM_SANDWICH, /* only when gptq_config_sandwich_norms */
    } when;
} llama_norm;
#define LLAMA_NORMS 8
extern const llama_norm llama_norms[LLAMA_NORMS];
/* &Ly's vector of llama_norms[i]. */
float **llama_norm_slot(layer *Ly, int i);
/* Its length for config c, or 0 when c has no such vector. */
size_t llama_norm_len(const gptq_model_config *c, int i);

struct gptq_model {
    gptq_model_config cfg;
    const gptq_backend *be;   /* holds every weight buffer and runs the forward */
    int device;               /* be is not the CPU backend: weights are be memory,
                                 freed with be->free; packed arrays are never
                                 `owned` (gptq_packed_free would free() them) */
    float *rope_freq;         /* inv_freq in be memory (== inv_freq on the CPU) */
    void *embed;              /* [vocab, gptq_config_embed_dim] of embed_dt */
    linear project_in;        /* [hidden, embed_dim] dense, without bias: OPT-350m's, when
                                 the embedding is narrower than the model; else W NULL */
    linear project_out;       /* [embed_dim, hidden], likewise */
    float *norm;              /* [hidden], NULL without a final norm (OPT-350m) */
    float *norm_b;            /* [hidden]: its bias (gptq_config_layernorm), else NULL */
    float *embed_norm, *embed_norm_b; /* [hidden] each: the LayerNorm after the embedding
                                 (gptq_config_embed_norm: BLOOM), else NULL */
    float *alibi_host;        /* [n_heads] ALiBi slopes (gptq_config_alibi), else NULL */
    float *alibi;             /* the same in be memory (== alibi_host on the CPU) */
    void *pos_embed;          /* [gptq_config_pos_rows, hidden] of pos_dt: learned positions
                                 (OPT), else NULL */
    gptq_dtype pos_dt;
    void *lm_head;            /* [vocab, embed_dim] of head_dt; == embed when tied */
    gptq_dtype embed_dt, head_dt;
    /* lm_head rounded to a GGUF grid for serving (gptq_model_set_head_grid):
     * packed, host memory the model owns even when it is a view; lm_head
     * stays, for saving. head_grid is GPTQ_GRID_NONE without. */
    linear head_q;
    int head_grid;
    float *inv_freq;          /* [3 * head_dim / 2]: the table up to the original context,
                                 the one past it (longrope's long factors; else a copy),
                                 and the one of layers with their own base (Gemma 3's
                                 sliding layers; else a copy) */
    layer *layers;            /* [num_hidden_layers] */
    int views;                /* weights are borrowed (copy_with, from_tensors): never freed
                                 or replaced here */
    int exact;                /* packed linears through be->qgemm, never qgemm_fast, and
                                 caches in float32 (gptq_model_set_exact) */
    gptq_model_tensor *table; /* every stored tensor (gptq_model_tensor_at) */
    size_t n_table;
    /* streaming (gptq_model_open_streaming): the open source that linears
     * not yet loaded come from (owned); NULL otherwise */
    gptq_model_source *src;
};

/* Tokens one forward call may carry (n_seq * len): keeps every int index
 * of the layer code far from overflow. */
#define MAX_CALL_TOKENS (1 << 24)

struct gptq_kv {
    const gptq_backend *be; /* the model's: k and v are its memory */
    int n_layers, slots, cap, kv_dim;
    gptq_dtype dt;  /* of k and v: GPTQ_DT_F16 where the backend's attention takes it and
                       the model is not exact, else GPTQ_DT_F32 */
    void **k, **v;  /* [slots * layers]: slot s, layer l at [s * n_layers + l], each
                       [alloc[s]][kv_dim] of dt; NULL while the slot is empty */
    int *alloc;     /* [slots]: positions allocated */
    int *len;       /* [slots] */
    size_t bytes;   /* allocated now */
    gptq_kv_budget_fn budget;
    void *budget_user;
};

/* llama_kv.c: room for `positions` positions in `slot` (grows, keeping the
 * cached rows). Errors: the budget's, the backend's allocation failure. */
gptq_status llama_kv_reserve(gptq_kv *kv, int slot, int positions);

/* llama.c */
int llama_linear_has_bias(const gptq_model_config *c, gptq_linear_id which);
/* Free a buffer of m's weights (owned models only). */
void llama_buf_free(const gptq_model *m, void *p);
/* Free a linear's weights (owned models only; a view's P has owned = 0). */
void llama_linear_clear(const gptq_model *m, linear *L);
/* Free a layer's buffers (owned models only) and leave it empty. */
void llama_layer_clear(const gptq_model *m, layer *Ly);

/* llama_load.c */
gptq_model *llama_model_new(const gptq_model_config *cfg);
gptq_status llama_model_set_backend(gptq_model *n, const gptq_backend *be);
void llama_table_free(gptq_model *m);

/* Bytes of a dense [rows, cols] matrix of dtype dt. */
static inline size_t llama_dense_bytes(size_t rows, size_t cols, gptq_dtype dt)
{
    return rows * cols * gptq_dtype_size(dt);
}

/* llama_weights.c */
gptq_status llama_table_build(gptq_model *m);
gptq_status llama_refuse_device(const gptq_model *m, const char *what);
/* Free m's rounded output matrix, if any (gptq_model_set_head_grid). */
void llama_head_grid_clear(gptq_model *m);

#endif
