/* model/llama.h: the Llama-family decoder (Llama 2/3, Mistral, Qwen2, Qwen3, Phi-3) on any
 * backend (kernels/backend.h), with Hugging Face semantics, in float32.
 * What a mapping client may call is declared in gptq/model.h.
 *
 * A gptq_model holds float32 copies of the weights of an HF folder; each of
 * a layer's seven linears is either float32 [out, in] or a GPTQ v1 packed
 * linear (gptq/quant.h) that runs through the packed kernels. The
 * quantization pipeline reads and replaces linears one at a time
 * (gptq_model_get_linear_f32 / gptq_model_set_linear_*), and drives the
 * layers one by one with capture hooks (gptq_model_embed,
 * gptq_model_layer_forward, gptq_model_head).
 *
 * Thread safety: a loaded model is read-only to every function here except
 * gptq_model_set_linear_*; any number of threads may run forward passes on
 * one model at once, each with its own gptq_kv. Replacing a linear while
 * another thread runs the model is not allowed.
 *
 * Errors: a gptq_status with the message in gptq_errmsg(). */
#ifndef GPTQ_MODEL_LLAMA_H
#define GPTQ_MODEL_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "gptq/error.h"
#include "gptq/model.h"
#include "gptq/quant.h"
#include "kernels/backend.h"
#include "model/config.h"

#ifdef __cplusplus
extern "C" {
#endif


/* The linears of a decoder layer, in the order the layer applies them. */
typedef enum gptq_linear_id {
    GPTQ_LIN_Q,    /* self_attn.q_proj [n_heads*head_dim, hidden] */
    GPTQ_LIN_K,    /* self_attn.k_proj [n_kv_heads*head_dim, hidden] */
    GPTQ_LIN_V,    /* self_attn.v_proj [n_kv_heads*head_dim, hidden] */
    GPTQ_LIN_O,    /* self_attn.o_proj [hidden, n_heads*head_dim] */
    GPTQ_LIN_GATE, /* mlp.gate_proj [intermediate, hidden] */
    GPTQ_LIN_UP,   /* mlp.up_proj [intermediate, hidden] */
    GPTQ_LIN_DOWN, /* mlp.down_proj [hidden, intermediate] */
    GPTQ_LIN_COUNT
} gptq_linear_id;

/* "q_proj", "k_proj", ... ; and the HF module path "self_attn.q_proj",
 * "mlp.gate_proj", ... (tensor "model.layers.<i>.<path>.weight"). */
const char *gptq_linear_name(gptq_linear_id which);
const char *gptq_linear_path(gptq_linear_id which);
/* Whether the family's layers have the linear: all but gate_proj in a
 * non-gated MLP (OPT: fc1 is up_proj, fc2 down_proj). An absent linear has
 * shape 0 x 0, holds nothing and is skipped by every walk over a layer. */
int gptq_config_has_linear(const gptq_model_config *cfg, gptq_linear_id which);
/* The module path the family's files give the linear inside a layer
 * ("self_attn.o_proj"; OPT: "self_attn.out_proj", "fc1"), into out[n]. */
const char *gptq_linear_file_path(const gptq_model_config *cfg, gptq_linear_id which, char *out,
                                  size_t n);

/* ---- loading ------------------------------------------------------------------ */

/* Load an HF model folder: config.json plus model.safetensors or the shards
 * of model.safetensors.index.json (F16, BF16 or F32 weights, converted to
 * float32), or a GGUF file (model/source.h: its tensors dequantized). A folder whose config has a GPTQ quantization_config may store
 * linears as `<path>.qweight/.qzeros/.scales/.g_idx` (v1); those load as
 * packed linears. On success *out owns a new model (gptq_model_free).
 * Errors: GPTQ_ERR_NOTFOUND (a file or a tensor is missing: the message
 * names it), GPTQ_ERR_FORMAT (a tensor's shape or dtype disagrees with the
 * config: names the tensor, both shapes), config.h's errors, and the
 * safetensors reader's. */
gptq_status gptq_model_load(const char *path, gptq_model **out);

/* The same from an open source (which the caller keeps and frees). */
typedef struct gptq_model_source gptq_model_source; /* model/source.h */
gptq_status gptq_model_load_source(const gptq_model_source *src, gptq_model **out);

/* Open an HF folder for streaming, the paper's way of quantizing models
 * larger than memory: embeddings, norms and lm_head load as usual, but the
 * decoder linears stay in the (mmapped) files until
 * gptq_model_layer_ensure(m, layer) loads that layer's; a linear replaced by
 * a packed one frees its float32 copy, so quantizing layer after layer keeps
 * one layer's float weights resident. Running a layer whose linears are not
 * loaded is an error. The model keeps its files open until freed; it has no
 * tensor table (gptq_model_tensor_count is 0). */
gptq_status gptq_model_open_streaming(const char *path, gptq_model **out);
/* 1 for a model from gptq_model_open_streaming. */
int gptq_model_is_streaming(const gptq_model *m);
/* Load the linears of `layer` that are not loaded yet (no-op for a model
 * loaded whole). Errors: those of gptq_model_load for the tensors read. */
gptq_status gptq_model_layer_ensure(gptq_model *m, int layer);

/* Deep copy (every linear and bias duplicated): the starting point of a
 * quantized model that leaves the source resident. *out is owned. */
gptq_status gptq_model_clone(const gptq_model *m, gptq_model **out);

/* Free a model (NULL is fine). A model made by gptq_model_copy_with or
 * gptq_model_from_tensors frees none of the weight memory it borrows. */
void gptq_model_free(gptq_model *m);

/* ---- the tensor table (sharing weights between processes) -------------------- */

/* One stored tensor: HF name, little-endian data. Dense tensors are F32;
 * a packed linear appears in the kernels' layout (kernels/linear.h):
 * "<path>.qweight" (I32), ".qzeros" (I32), ".scales" (F16), ".g_idx" (I32,
 * non-decreasing) and, for act-order, ".perm" (I32 [in]). */
typedef struct gptq_model_tensor {
    const char *name;
    gptq_dtype dtype;
    int ndim;         /* 1 or 2 here; up to 4 accepted */
    int64_t shape[4]; /* entries past ndim are 0 */
    const void *data;
    size_t bytes;
} gptq_model_tensor;

/* Every tensor of the model, in checkpoint order (gptq_model_foreach_tensor's,
 * packed linears expanded). Owned by the model; valid until a linear is
 * replaced or the model is freed. tensor_at returns NULL past the end. */
size_t gptq_model_tensor_count(const gptq_model *m);
const gptq_model_tensor *gptq_model_tensor_at(const gptq_model *m, size_t i);

/* Allocator for gptq_model_copy_with: `bytes` of memory aligned to at least
 * 16 bytes, or NULL. */
typedef void *(*gptq_model_alloc)(void *ctx, size_t bytes);

/* Copy m into a new model whose every weight buffer comes from alloc(ctx,
 * ...) (e.g. a shared-memory arena); the struct and tensor table are
 * malloc'ed. The copy borrows that memory: gptq_model_free does not free it
 * and set_linear_* refuse (GPTQ_ERR_BUSY); the caller keeps the memory alive
 * until the copy is freed. *out is owned. Errors: GPTQ_ERR_ARG (alloc NULL),
 * GPTQ_ERR_NOMEM (alloc returned NULL; what it handed out stays with it). */
gptq_status gptq_model_copy_with(const gptq_model *m, gptq_model_alloc alloc, void *ctx,
                                 gptq_model **out);

/* A model that runs on the caller's tensors without copying them (a
 * process that mapped another's weights): config_json is the text of
 * config.json; table[n] holds the tensors gptq_model_tensor_at lists (dense
 * F32, packed linears in the kernels' layout as listed above: a v1 act-order
 * table without ".perm" is refused, its g_idx unsorted), each aligned to its
 * element size. The tensors must outlive the model, which only reads them
 * (read-only pages are fine) and refuses set_linear_*. *out is owned.
 * Errors: config.h's, GPTQ_ERR_NOTFOUND (a tensor is missing: named),
 * GPTQ_ERR_FORMAT (wrong shape, dtype, size or alignment: named),
 * GPTQ_ERR_NOMEM. */
gptq_status gptq_model_from_tensors(const char *config_json, const gptq_model_tensor *table,
                                    size_t n, gptq_model **out);

/* ---- backends: the model on a GPU ------------------------------------------------- */

typedef struct gptq_backend gptq_backend; /* kernels/backend.h */

/* The backend whose memory holds m's weights and that runs its forward:
 * the CPU backend for every model made by load/open_streaming/clone/
 * copy_with/from_tensors. */
const gptq_backend *gptq_model_backend(const gptq_model *m);

/* Exact arithmetic (1) or the backend's faster forms (0, the default for
 * every new model and copy). Fast: packed linears through qgemm_fast (on
 * the CPU the activation is rounded to int8 per 32 inputs, kernels/backend.h)
 * and KV caches created for the model hold binary16 keys and values where
 * the backend's attention takes them (kv_dtypes; the CPU's does). Exact:
 * float32 products and caches. The calibration pipeline runs its model
 * exact, as the reference GPTQ's float forward. Returns the previous
 * setting; caches created before keep their dtype. */
int gptq_model_set_exact(gptq_model *m, int exact);

/* Serve m's logits from its output matrix (lm_head, or the embedding it is
 * tied to) rounded to a GGUF block grid: GPTQ_GRID_Q8_0 (gptq/quant.h:
 * groups of 32 inputs, fp16 scale max|w|/127, each code the nearest on that
 * grid -- llama.cpp's Q8_0, which its 4-bit files keep the output matrix in,
 * rounds with the scale before its fp16 rounding: 0.8% of the bundled
 * tiny-llama's head codes differ by one) or
 * GPTQ_GRID_NONE (the default: the matrix as loaded; frees a rounded copy).
 * The rounded copy is held beside the matrix (saving and the tensor table
 * keep the matrix as loaded) and is read by gptq_model_head through the
 * backend's packed-linear products, exact or fast as for packed linears
 * (gptq_model_set_exact): a decode step reads a quarter of float32's bytes,
 * half of F16's. Counted by gptq_model_bytes.
 * Host models on a backend with packed products only; copies of m do not
 * inherit it. Errors: GPTQ_ERR_ARG (a grid other than these, a model without
 * its head or not in host memory), GPTQ_ERR_UNSUPPORTED (the backend cannot
 * run the shape), GPTQ_ERR_NOMEM; m is left as it was. */
gptq_status gptq_model_set_head_grid(gptq_model *m, int grid);
/* The grid set by gptq_model_set_head_grid (GPTQ_GRID_NONE by default);
 * *bytes (when not NULL): the rounded copy's bytes (0 without). */
int gptq_model_head_grid(const gptq_model *m, size_t *bytes);
/* The head grids by name, as gptqctl, gptqd and its config spell them:
 * "q8_0" -> GPTQ_GRID_Q8_0, "none" -> GPTQ_GRID_NONE; -1 for any other. */
int gptq_head_grid_from_name(const char *name);
/* Bytes gptq_model_set_head_grid adds to a model of config c on `grid`
 * (0 for GPTQ_GRID_NONE): for a load's memory estimate. */
size_t gptq_head_grid_bytes(const gptq_model_config *c, int grid);

/* The dtype of the keys and values a cache created for m now holds
 * (GPTQ_DT_F16 or GPTQ_DT_F32, see gptq_model_set_exact). */
gptq_dtype gptq_model_kv_dtype(const gptq_model *m);

/* The dtype m's dense linears are resident in (they share it: the file's
 * F16/BF16, else float32, as for a quantized GGUF's dequantized tensors or
 * a backend without 16-bit gemm); GPTQ_DT_F32 when every linear is packed
 * or no layer is loaded. */
gptq_dtype gptq_model_dense_dtype(const gptq_model *m);

/* Decoder layers stay empty (like a streaming model's): fill them with
 * gptq_model_layer_upload. */
#define GPTQ_TO_BACKEND_NO_LAYERS 1
/* No final norm and lm_head (unless tied to the embeddings): a copy for the
 * calibration pipeline, which never computes logits; gptq_model_head fails
 * on it and it has no tensor table. */
#define GPTQ_TO_BACKEND_NO_HEAD 2

/* Copy m onto backend `be` (m is on the CPU backend): every weight is
 * uploaded into memory from alloc(ctx, bytes), which must return `be`
 * memory (an IPC arena, say; the copy borrows it as copy_with's does), or
 * from be->alloc when alloc is NULL (the copy owns it). Packed linears stay
 * v1 (the backend's qgemm runs them). flags: GPTQ_TO_BACKEND_NO_LAYERS.
 * Without it a streaming m must have every layer loaded.
 * On a model of another backend than the CPU's: embed, layer_forward and
 * head take and give activations (h, and the X handed to hooks) in backend
 * memory; gptq_model_forward and gptq_model_head's logits stay host memory;
 * the tensor table's data pointers are backend memory; get_linear_f32
 * downloads; set_linear_* upload. *out is owned. Errors: GPTQ_ERR_ARG,
 * GPTQ_ERR_NOMEM (naming the tensor and bytes), the backend's copy errors. */
gptq_status gptq_model_to_backend(const gptq_model *m, const gptq_backend *be,
                                  gptq_model_alloc alloc, void *ctx, int flags, gptq_model **out);

/* Put src's layer `layer` (norms, linears dense or packed, biases) into the
 * backend model dev made from src (or a model of the same config) by
 * gptq_model_to_backend, replacing what dev had there; src must have the
 * layer loaded. dev must own its memory (not borrowed: GPTQ_ERR_BUSY).
 * gptq_model_layer_drop frees it again. Errors: GPTQ_ERR_ARG,
 * GPTQ_ERR_NOMEM, backend errors. */
gptq_status gptq_model_layer_upload(gptq_model *dev, const gptq_model *src, int layer);
void gptq_model_layer_drop(gptq_model *dev, int layer);

/* gptq_model_from_tensors on backend `be`: the table's data pointers are
 * `be` memory (another process's weights, opened through CUDA IPC). Shapes,
 * dtypes and alignment are checked as there; contents are not read. */
gptq_status gptq_model_from_tensors_on(const gptq_backend *be, const char *config_json,
                                       const gptq_model_tensor *table, size_t n,
                                       gptq_model **out);

/* The float32 weight [rows, cols] of a dense linear in the model's backend
 * memory, or NULL when it is packed, kept in 16 bits, not loaded, or the
 * arguments are out of range (gptq_model_get_linear_f32 copies any of them
 * as float32). Valid until the linear is replaced. */
const float *gptq_model_linear_weight(const gptq_model *m, int layer, gptq_linear_id which);

/* The parsed config (owned by the model). */
const gptq_model_config *gptq_model_get_config(const gptq_model *m);
/* Parameters (packed linears count rows*cols) and bytes of weight storage. */
int64_t gptq_model_params(const gptq_model *m);
size_t gptq_model_bytes(const gptq_model *m);

/* ---- linears --------------------------------------------------------------------- */

/* Shape of a layer's linear `which`: rows = out features, cols = in. */
/* (On a model of a non-CPU backend, gptq_model_linear_packed and
 * gptq_model_linear_bias below give pointers into that backend's memory.) */
void gptq_model_linear_shape(const gptq_model *m, gptq_linear_id which, int *rows, int *cols);

/* The packed form of a linear in the kernels' layout (kernels/linear.h:
 * columns sorted by group, the permutation kept), or NULL if it is float32.
 * Owned by the model; valid until the linear is replaced or the model
 * freed. */
const gptq_linear *gptq_model_linear_packed(const gptq_model *m, int layer, gptq_linear_id which);

/* Bias [rows] of a linear, or NULL if it has none. Owned by the model. */
const float *gptq_model_linear_bias(const gptq_model *m, int layer, gptq_linear_id which);

/* Copy a linear's weights as float32 W [rows, cols] (dequantized if packed)
 * into caller memory. Errors: GPTQ_ERR_ARG (layer out of range), a packed
 * linear's dequantization errors. */
gptq_status gptq_model_get_linear_f32(const gptq_model *m, int layer, gptq_linear_id which,
                                      float *W);

/* Replace a linear's weights by a copy of W [rows, cols] (float32; the
 * linear becomes dense if it was packed). The bias is kept. The tensor
 * table is rebuilt (earlier gptq_model_tensor_at pointers go stale).
 * Errors: GPTQ_ERR_ARG, GPTQ_ERR_BUSY (a model of borrowed weights),
 * GPTQ_ERR_NOMEM. */
gptq_status gptq_model_set_linear_f32(gptq_model *m, int layer, gptq_linear_id which,
                                      const float *W);

/* Replace a linear by the GGUF blocks of a block-grid quantization
 * (gptq_quant_result.blocks: `type` a block grid's ggml type, rows of
 * cols / block elements blocks): the linear becomes dense float32 holding
 * their dequantization (what any GGUF reader gets; the packed kernels have
 * no form for these grids) and keeps a copy of the blocks, which the GGUF
 * writer writes as they are (gptq_model_linear_blocks). Errors as
 * gptq_model_set_linear_f32's, GPTQ_ERR_ARG for a type that is not a block
 * grid. */
gptq_status gptq_model_set_linear_blocks(gptq_model *m, int layer, gptq_linear_id which, int type,
                                         const uint8_t *blocks);
/* The blocks a linear holds (its ggml type through *type), or NULL for a
 * linear not set by gptq_model_set_linear_blocks. */
const uint8_t *gptq_model_linear_blocks(const gptq_model *m, int layer, gptq_linear_id which,
                                        int *type);
/* The first linear on a block grid (its layer and id through the
 * pointers), or -1 with none: what a GPTQ checkpoint cannot hold. */
int gptq_model_first_block_linear(const gptq_model *m, int *layer, gptq_linear_id *which);

/* Replace a linear by the packed v1 layer *P, which must have the linear's
 * shape (P->rows = out, P->cols = in) and a shape the model's backend runs
 * (qgemm_check). Ownership moves: the model converts *P into the kernels'
 * layout (gptq_linear_from_v1, reusing its arrays where it can; they are
 * freed with the model when P->owned) and *P is zeroed. On failure before
 * the move (GPTQ_ERR_ARG, GPTQ_ERR_BUSY, GPTQ_ERR_UNSUPPORTED) *P is left
 * untouched; a failed upload to a device leaves it zeroed. The bias is
 * kept; the tensor table is rebuilt (GPTQ_ERR_NOMEM after the move leaves
 * the table empty). */
gptq_status gptq_model_set_linear_packed(gptq_model *m, int layer, gptq_linear_id which,
                                         gptq_packed *P);

/* Every stored tensor under its HF name, in checkpoint order (embeddings,
 * then each layer's norms, linears and biases, final norm, lm_head unless
 * tied). For a dense tensor `data` is of dtype `dt` (float32; F16/BF16 for
 * the weight matrices a model keeps in 16 bits) with `ndim` dims `shape`,
 * and `packed` is NULL; for a packed linear `data` is NULL, `packed` is set (the
 * kernels' layout, in the model's backend memory) and `name` is the module
 * path ("model.layers.0.self_attn.q_proj"). A nonzero
 * status from `visit` stops the walk and is returned. */
typedef gptq_status (*gptq_tensor_visit)(void *user, const char *name, const void *data,
                                         gptq_dtype dt, int ndim, const int64_t *shape,
                                         const gptq_linear *packed);
gptq_status gptq_model_foreach_tensor(const gptq_model *m, gptq_tensor_visit visit, void *user);

/* Memory a walk hands out that must outlive it (freed by gptq_kept_free). */
typedef struct gptq_kept {
    void **p;
    size_t n, cap;
} gptq_kept;
void gptq_kept_free(gptq_kept *k);

/* gptq_model_foreach_tensor as the family's files hold the tensors, for
 * writers (checkpoints, GGUF): for a gptq_config_fused family (Phi-3) each
 * group of parts arrives as one tensor under the fused name
 * ("model.layers.0.self_attn.qkv_proj.weight", rows [q; k; v]; its bias
 * likewise), or, packed, as one linear in the v1 layout and the
 * checkpoint's column order (perm NULL: for writers, not kernels) whose
 * parts shared one g_idx. With keep, the joined copies and their names
 * stay in *keep (start it zeroed) until gptq_kept_free, so a writer may hold
 * the pointers until it writes; keep NULL frees each group's right after
 * its visit (a writer that copies or writes at once). Host models only. With
 * family_names, every name as the family's files spell it (gptq_config_file_name: OPT's
 * "model.decoder.layers.0.fc1"; the checkpoint writer), else gptqd's own (the GGUF
 * writer, whose table maps those); for unfused families with family_names 0, exactly
 * gptq_model_foreach_tensor. */
gptq_status gptq_model_foreach_file_tensor(const gptq_model *m, gptq_tensor_visit visit,
                                           void *user, gptq_kept *keep, int family_names);

/* The KV cache and gptq_model_forward: gptq/model.h. */


/* ---- per-layer entry points (the calibration pipeline) --------------------------- */

/* h [n_seq * len, hidden] = the embedding of ids [n_seq * len]: n_seq
 * sequences of len tokens, each from position 0 (the rows of the token
 * table, plus the learned positions' where the family has them). Errors:
 * GPTQ_ERR_ARG for an id outside the vocabulary, GPTQ_ERR_LIMIT for a len
 * past the learned positions. */
gptq_status gptq_model_embed(const gptq_model *m, const int32_t *ids, int n_seq, int len,
                             float *h);

/* Called before each group of linears that shares one input, with that
 * input X [rows, cols] (rows = n_seq*len tokens, row s*len+t): once with
 * which = GPTQ_LIN_Q for q/k/v (X = the attention block's input: its norm
 * of h, or h where the family norms after the residual add), once with
 * GPTQ_LIN_O (X = attention output), once with GPTQ_LIN_GATE for gate/up
 * (GPTQ_LIN_UP where the MLP has no gate; X = the MLP block's input), once
 * with GPTQ_LIN_DOWN (X = the activation: silu(gate)*up, or the family's). X is only valid during the call. A hook may replace
 * linears of later groups of the same layer (the layer reads each linear
 * when it applies it), which is how sequential quantization within a layer
 * works. Returning non-OK stops the layer: gptq_model_layer_forward returns
 * that status and h is left undefined (GPTQ_ERR_CANCELED is the way to stop
 * early on purpose; the hook sets the message for others). */
typedef gptq_status (*gptq_linear_hook)(void *user, int layer, gptq_linear_id which,
                                        const float *X, int rows, int cols);
typedef struct gptq_layer_hooks {
    gptq_linear_hook before_linear; /* NULL: none */
    void *user;
} gptq_layer_hooks;

/* Run decoder layer `layer` in place on h [n_seq*len, hidden]: n_seq
 * independent sequences of len tokens at positions 0..len-1 (causal
 * attention within each sequence, no cache). hooks may be NULL.
 * Errors: GPTQ_ERR_ARG, GPTQ_ERR_NOMEM, a hook's status. */
gptq_status gptq_model_layer_forward(const gptq_model *m, int layer, float *h, int n_seq, int len,
                                     const gptq_layer_hooks *hooks);

/* A decoder layer in parts, so that the calibration pipeline computes each
 * part once instead of re-running the layer from its start for every group
 * of linears: the same operations in the same order as
 * gptq_model_layer_forward, so composing them gives its result exactly.
 * n_seq windows of len tokens at positions 0..len-1 (no cache), T =
 * n_seq*len rows; every buffer is in the model's backend memory; `in`/`out`
 * are NULL where a part does not take them.
 * ("norm" is the family's: RMSNorm or LayerNorm; a post-LN family's block
 * input is h itself and its norm follows the residual add.)
 *   ATTN_NORM  out [T, hidden] = the attention block's input (q/k/v's)
 *   ATTENTION  out [T, q_dim] = causal attention of q/k/v(that input),
 *              positions applied (o_proj's input)
 *   ATTN_OUT   h += o_proj(in [T, q_dim]) (normed first where the family
 *              norms the attention's output); then, when out is not NULL,
 *              out [T, hidden] = the MLP block's input from the new h
 *   MLP_NORM   out [T, hidden] = the MLP block's input (gate/up's)
 *   MLP_ACT    out [T, intermediate] = silu(gate_proj(in)) * up_proj(in),
 *              or the family's activation, in [T, hidden] (down_proj's input)
 *   MLP_OUT    h += down_proj(in [T, intermediate]) (normed likewise)
 * Errors: GPTQ_ERR_ARG (bad layer, part, sizes; a layer not loaded),
 * GPTQ_ERR_NOMEM, the packed kernels'. */
typedef enum gptq_layer_part {
    GPTQ_PART_ATTN_NORM,
    GPTQ_PART_ATTENTION,
    GPTQ_PART_ATTN_OUT,
    GPTQ_PART_MLP_NORM,
    GPTQ_PART_MLP_ACT,
    GPTQ_PART_MLP_OUT
} gptq_layer_part;
gptq_status gptq_model_layer_part(const gptq_model *m, int layer, gptq_layer_part part, float *h,
                                  const float *in, float *out, int n_seq, int len);

/* logits [n, vocab] = lm_head(final norm(h [n, hidden])) (through
 * project_out, and soft-capped, where the family does); h is not modified.
 * Errors: GPTQ_ERR_NOMEM. */
gptq_status gptq_model_head(const gptq_model *m, const float *h, int n, float *logits);

#ifdef __cplusplus
}
#endif
#endif
