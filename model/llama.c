/* model/llama.c: the Llama-family decoder (model/llama.h): what a model is
 * (its linears' names and shapes), freeing it, introspection, and reading
 * and replacing linears, which the calibration pipeline does. The other
 * rooms of the runtime are listed in model/llama_internal.h. */
#include "model/llama_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/ggml_blocks.h"

static const char *const lin_names[GPTQ_LIN_COUNT] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                      "gate_proj", "up_proj", "down_proj"};
static const char *const lin_paths[GPTQ_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

const char *gptq_linear_name(gptq_linear_id which)
{
    return (unsigned)which < GPTQ_LIN_COUNT ? lin_names[which] : "?";
}

const char *gptq_linear_path(gptq_linear_id which)
{
    return (unsigned)which < GPTQ_LIN_COUNT ? lin_paths[which] : "?";
}

int gptq_config_has_linear(const gptq_model_config *cfg, gptq_linear_id which)
{
    return (unsigned)which < GPTQ_LIN_COUNT &&
           (which != GPTQ_LIN_GATE || gptq_config_gated_mlp(cfg));
}

const char *gptq_linear_file_path(const gptq_model_config *cfg, gptq_linear_id which, char *out,
                                  size_t n)
{
    return gptq_config_layer_path(cfg, gptq_linear_path(which), out, n);
}

void gptq_model_linear_shape(const gptq_model *m, gptq_linear_id which, int *rows, int *cols)
{
    const gptq_model_config *c = &m->cfg;
    int q_dim = c->num_attention_heads * c->head_dim, kv_dim = c->num_key_value_heads * c->head_dim;
    int r = 0, k = 0;
    switch (gptq_config_has_linear(c, which) ? which : GPTQ_LIN_COUNT) {
    case GPTQ_LIN_Q: r = q_dim, k = c->hidden_size; break;
    case GPTQ_LIN_K:
    case GPTQ_LIN_V: r = kv_dim, k = c->hidden_size; break;
    case GPTQ_LIN_O: r = c->hidden_size, k = q_dim; break;
    case GPTQ_LIN_GATE:
    case GPTQ_LIN_UP: r = c->intermediate_size, k = c->hidden_size; break;
    case GPTQ_LIN_DOWN: r = c->hidden_size, k = c->intermediate_size; break;
    default: break;
    }
    if (rows)
        *rows = r;
    if (cols)
        *cols = k;
}

int llama_linear_has_bias(const gptq_model_config *c, gptq_linear_id which)
{
    if (which <= GPTQ_LIN_V)
        return gptq_config_qkv_bias(c);
    if (which == GPTQ_LIN_O)
        return gptq_config_o_bias(c);
    return gptq_config_mlp_bias(c);
}

/* Free a buffer of m's weights (owned models only). */
void llama_buf_free(const gptq_model *m, void *p)
{
    if (m->device)
        m->be->free(m->be, p);
    else
        free(p);
}

/* Free a linear's weights (owned models only; a view's P has owned = 0). */
void llama_linear_clear(const gptq_model *m, linear *L)
{
    llama_buf_free(m, L->W);
    L->W = NULL;
    if (L->packed && m->device) {
        gptq_linear_free_on(m->be, &L->Q);
    } else if (L->packed) {
        gptq_linear_free(&L->Q);
    }
    memset(&L->Q, 0, sizeof L->Q);
    L->packed = 0;
    free(L->blocks); /* always the model's own, views or not */
    L->blocks = NULL;
    L->block_type = 0;
}

const llama_norm llama_norms[LLAMA_NORMS] = {
    {"input_layernorm", "weight", NORM_ALWAYS},  {"post_attention_layernorm", "weight", NORM_ALWAYS},
    {"self_attn.q_norm", "weight", NORM_PER_HEAD}, {"self_attn.k_norm", "weight", NORM_PER_HEAD},
    {"input_layernorm", "bias", NORM_BIAS},      {"post_attention_layernorm", "bias", NORM_BIAS},
    {"attn_out_norm", "weight", NORM_SANDWICH},  {"mlp_out_norm", "weight", NORM_SANDWICH}};

float **llama_norm_slot(layer *Ly, int i)
{
    float **slots[LLAMA_NORMS] = {&Ly->attn_norm,   &Ly->mlp_norm,    &Ly->q_norm,
                                  &Ly->k_norm,      &Ly->attn_norm_b, &Ly->mlp_norm_b,
                                  &Ly->attn_out_norm, &Ly->mlp_out_norm};
    return slots[i];
}

size_t llama_norm_len(const gptq_model_config *c, int i)
{
    switch (llama_norms[i].when) {
    case NORM_PER_HEAD: return gptq_config_qk_norm(c) ? (size_t)c->head_dim : 0;
    case NORM_BIAS: return gptq_config_layernorm(c) ? (size_t)c->hidden_size : 0;
    case NORM_SANDWICH: return gptq_config_sandwich_norms(c) ? (size_t)c->hidden_size : 0;
    default: return (size_t)c->hidden_size;
    }
}

/* Free a layer's buffers (owned models only) and leave it empty. */
void llama_layer_clear(const gptq_model *m, layer *Ly)
{
    for (int i = 0; i < LLAMA_NORMS; i++) {
        llama_buf_free(m, *llama_norm_slot(Ly, i));
        *llama_norm_slot(Ly, i) = NULL;
    }
    for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
        llama_linear_clear(m, &Ly->lin[w]);
        llama_buf_free(m, Ly->lin[w].bias);
        Ly->lin[w].bias = NULL;
    }
}


/* ---- introspection --------------------------------------------------------------------- */

const gptq_model_config *gptq_model_get_config(const gptq_model *m)
{
    return &m->cfg;
}

int gptq_model_vocab_size(const gptq_model *m)
{
    return m->cfg.vocab_size;
}

int gptq_model_context_length(const gptq_model *m)
{
    return m->cfg.max_position_embeddings;
}

int gptq_model_is_eos(const gptq_model *m, int32_t id)
{
    for (int i = 0; i < m->cfg.n_eos; i++)
        if (m->cfg.eos_token_ids[i] == id)
            return 1;
    return 0;
}

int64_t gptq_model_params(const gptq_model *m)
{
    const gptq_model_config *c = &m->cfg;
    const int64_t ed = gptq_config_embed_dim(c), emb = (int64_t)c->vocab_size * ed;
    int64_t n = emb + (c->no_final_norm ? 0 : gptq_config_layernorm(c) ? 2 : 1) *
                          (int64_t)c->hidden_size +
                (ed != c->hidden_size ? 2 * ed * (int64_t)c->hidden_size : 0) +
                (gptq_config_embed_norm(c) ? 2 * (int64_t)c->hidden_size : 0) +
                (c->tie_word_embeddings ? 0 : emb) +
                (int64_t)gptq_config_pos_rows(c) * c->hidden_size;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        for (int i = 0; i < LLAMA_NORMS; i++)
            n += (int64_t)llama_norm_len(c, i);
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            const linear *L = &m->layers[l].lin[w];
            n += (int64_t)L->rows * L->cols + (L->bias ? L->rows : 0);
        }
    }
    return n;
}

size_t gptq_model_bytes(const gptq_model *m)
{
    const gptq_model_config *c = &m->cfg;
    const size_t ed = (size_t)gptq_config_embed_dim(c);
    size_t bytes = llama_dense_bytes((size_t)c->vocab_size, ed, m->embed_dt);
    if (m->lm_head != m->embed)
        bytes += llama_dense_bytes((size_t)c->vocab_size, ed, m->head_dt);
    if (m->project_in.W)
        bytes += llama_dense_bytes(m->project_in.rows, m->project_in.cols, m->project_in.wt) +
                 llama_dense_bytes(m->project_out.rows, m->project_out.cols, m->project_out.wt);
    if (m->head_q.packed)
        bytes += gptq_linear_bytes(&m->head_q.Q);
    if (m->pos_embed)
        bytes += llama_dense_bytes((size_t)gptq_config_pos_rows(c), (size_t)c->hidden_size,
                                   m->pos_dt);
    size_t floats = (size_t)c->hidden_size *
                    ((m->norm ? 1 : 0) + (m->norm_b ? 1 : 0) + (m->embed_norm ? 2 : 0));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        for (int i = 0; i < LLAMA_NORMS; i++)
            floats += llama_norm_len(c, i);
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            const linear *L = &m->layers[l].lin[w];
            floats += L->bias ? (size_t)L->rows : 0;
            if (L->packed)
                bytes += gptq_linear_bytes(&L->Q);
            else
                bytes += llama_dense_bytes((size_t)L->rows, (size_t)L->cols, L->wt);
            if (L->blocks) /* kept for the GGUF writer */
                bytes += (size_t)L->rows * gptq_ggml_row_bytes(L->block_type, L->cols);
        }
    }
    return bytes + floats * sizeof(float);
}

static gptq_status check_linear_arg(const gptq_model *m, int layer, gptq_linear_id which)
{
    if (layer < 0 || layer >= m->cfg.num_hidden_layers)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d is out of range [0, %d)", layer,
                         m->cfg.num_hidden_layers);
    if ((unsigned)which >= GPTQ_LIN_COUNT)
        return gptq_fail(GPTQ_ERR_ARG, "linear %d is not a gptq_linear_id", (int)which);
    if (!gptq_config_has_linear(&m->cfg, which))
        return gptq_fail(GPTQ_ERR_ARG, "%s has no %s (its MLP is not gated)",
                         m->cfg.architecture, gptq_linear_name(which));
    return GPTQ_OK;
}

const gptq_linear *gptq_model_linear_packed(const gptq_model *m, int layer, gptq_linear_id which)
{
    if (check_linear_arg(m, layer, which) != GPTQ_OK)
        return NULL;
    const linear *L = &m->layers[layer].lin[which];
    return L->packed ? &L->Q : NULL;
}

const float *gptq_model_linear_bias(const gptq_model *m, int layer, gptq_linear_id which)
{
    if (check_linear_arg(m, layer, which) != GPTQ_OK)
        return NULL;
    return m->layers[layer].lin[which].bias;
}

gptq_status gptq_model_get_linear_f32(const gptq_model *m, int layer, gptq_linear_id which,
                                      float *W)
{
    gptq_status st = check_linear_arg(m, layer, which);
    if (st != GPTQ_OK)
        return st;
    const linear *L = &m->layers[layer].lin[which];
    if (L->packed && m->device) {
        gptq_linear h;
        if ((st = gptq_linear_download(m->be, &L->Q, &h)) != GPTQ_OK)
            return gptq_fail_context(st, "layer %d %s", layer, gptq_linear_name(which));
        st = gptq_linear_dequantize(&h, W);
        gptq_linear_free(&h);
        if (st != GPTQ_OK)
            return gptq_fail_context(st, "layer %d %s", layer, gptq_linear_name(which));
        return GPTQ_OK;
    }
    if (L->packed) {
        if ((st = gptq_linear_dequantize(&L->Q, W)) != GPTQ_OK)
            return gptq_fail_context(st, "layer %d %s", layer, gptq_linear_name(which));
        return GPTQ_OK;
    }
    if (!L->W)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d %s is not loaded (streaming model): call "
                         "gptq_model_layer_ensure first", layer, gptq_linear_name(which));
    size_t n = (size_t)L->rows * L->cols;
    if (L->wt == GPTQ_DT_F32)
        return m->be->download(m->be, W, L->W, n * sizeof *W);
    uint16_t *h = malloc(n * sizeof *h); /* 16-bit weights, widened */
    if (!h)
        return gptq_fail(GPTQ_ERR_NOMEM, "layer %d %s: cannot allocate [%d, %d]", layer,
                         gptq_linear_name(which), L->rows, L->cols);
    if ((st = m->be->download(m->be, h, L->W, n * sizeof *h)) == GPTQ_OK)
        gptq_dtype_to_f32(L->wt, h, W, n);
    free(h);
    return st;
}

/* A linear of m that may be replaced: in range, and m's own weights. */
static gptq_status check_linear_replace(const gptq_model *m, int layer, gptq_linear_id which)
{
    gptq_status st = check_linear_arg(m, layer, which);
    if (st == GPTQ_OK && m->views)
        st = gptq_fail(GPTQ_ERR_BUSY, "layer %d %s: the model's weights are borrowed (shared "
                       "or mapped); clone it to change them", layer, gptq_linear_name(which));
    return st;
}

/* Replace a linear's weights by a copy of W [rows, cols] of dtype dt (one
 * the backend's gemm takes). */
static gptq_status set_linear_dense(gptq_model *m, int layer, gptq_linear_id which,
                                    const void *W, gptq_dtype dt)
{
    gptq_status st = check_linear_replace(m, layer, which);
    if (st != GPTQ_OK)
        return st;
    linear *L = &m->layers[layer].lin[which];
    const size_t bytes = llama_dense_bytes((size_t)L->rows, (size_t)L->cols, dt);
    void *copy = malloc(bytes);
    if (!copy)
        return gptq_fail(GPTQ_ERR_NOMEM, "layer %d %s: cannot allocate [%d, %d]", layer,
                         gptq_linear_name(which), L->rows, L->cols);
    memcpy(copy, W, bytes);
    if (m->device) {
        void *d = m->be->alloc(m->be, bytes);
        if (!d || (st = m->be->upload(m->be, d, copy, bytes)) != GPTQ_OK) {
            m->be->free(m->be, d);
            free(copy);
            return d ? st
                     : gptq_backend_alloc_fail(m->be, "layer %d %s: [%d, %d]", layer,
                                               gptq_linear_name(which), L->rows, L->cols);
        }
        free(copy);
        copy = d;
    }
    llama_linear_clear(m, L);
    L->W = copy;
    L->wt = dt;
    return llama_table_build(m);
}

gptq_status gptq_model_set_linear_f32(gptq_model *m, int layer, gptq_linear_id which,
                                      const float *W)
{
    return set_linear_dense(m, layer, which, W, GPTQ_DT_F32);
}

gptq_status gptq_model_set_linear_blocks(gptq_model *m, int layer, gptq_linear_id which, int type,
                                         const uint8_t *blocks)
{
    gptq_status st = check_linear_replace(m, layer, which);
    if (st != GPTQ_OK)
        return st;
    if (!gptq_ggml_is_block_grid(type))
        return gptq_fail(GPTQ_ERR_ARG, "layer %d %s: %s is not a block grid", layer,
                         gptq_linear_name(which), gptq_ggml_type_name(type));
    const linear *L = &m->layers[layer].lin[which];
    if (L->cols % gptq_ggml_block_elems(type) != 0)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d %s: %d inputs are not whole %s blocks", layer,
                         gptq_linear_name(which), L->cols, gptq_ggml_type_name(type));
    const size_t n = (size_t)L->rows * L->cols,
                 bytes = (size_t)L->rows * gptq_ggml_row_bytes(type, L->cols);
    /* float32: the blocks' values exactly, as gptqd's GGUF reader holds them */
    float *W = malloc(n * sizeof *W);
    uint8_t *copy = malloc(bytes);
    if (!W || !copy)
        st = gptq_fail(GPTQ_ERR_NOMEM, "layer %d %s: cannot allocate [%d, %d]", layer,
                       gptq_linear_name(which), L->rows, L->cols);
    else if (!(st = gptq_gguf_dequantize(type, blocks, W, (int64_t)n)))
        st = set_linear_dense(m, layer, which, W, GPTQ_DT_F32);
    if (!st) {
        memcpy(copy, blocks, bytes);
        m->layers[layer].lin[which].blocks = copy;
        m->layers[layer].lin[which].block_type = type;
        copy = NULL;
    }
    free(W);
    free(copy);
    return st;
}

const uint8_t *gptq_model_linear_blocks(const gptq_model *m, int layer, gptq_linear_id which,
                                        int *type)
{
    if (check_linear_arg(m, layer, which) != GPTQ_OK)
        return NULL;
    const linear *L = &m->layers[layer].lin[which];
    if (type)
        *type = L->blocks ? L->block_type : 0;
    return L->blocks;
}

int gptq_model_first_block_linear(const gptq_model *m, int *layer, gptq_linear_id *which)
{
    for (int l = 0; l < m->cfg.num_hidden_layers; l++)
        for (int w = 0; w < GPTQ_LIN_COUNT; w++)
            if (m->layers[l].lin[w].blocks) {
                if (layer)
                    *layer = l;
                if (which)
                    *which = (gptq_linear_id)w;
                return 0;
            }
    return -1;
}

gptq_status gptq_model_set_linear_packed(gptq_model *m, int layer, gptq_linear_id which,
                                         gptq_packed *P)
{
    gptq_status st = check_linear_replace(m, layer, which);
    if (st != GPTQ_OK)
        return st;
    linear *L = &m->layers[layer].lin[which];
    if (P->rows != L->rows || P->cols != L->cols)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d %s: packed shape [%d, %d], the linear is [%d, %d]",
                         layer, gptq_linear_name(which), P->rows, P->cols, L->rows, L->cols);
    if (!P->qweight || !P->qzeros || !P->scales || !P->g_idx || P->groups < 1)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d %s: packed linear has missing arrays", layer,
                         gptq_linear_name(which));
    if ((st = gptq_pack_check(P->rows, P->cols, P->bits)) != GPTQ_OK ||
        (m->be->qgemm_check && (st = m->be->qgemm_check(m->be, P->rows, P->cols, P->bits))))
        return gptq_fail_context(st, "layer %d %s", layer, gptq_linear_name(which));
    /* into the kernels' layout; on failure *P is left as it was */
    gptq_linear Q;
    if ((st = gptq_linear_from_v1(P, &Q)) != GPTQ_OK)
        return gptq_fail_context(st, "layer %d %s", layer, gptq_linear_name(which));
    if (m->device) { /* upload, then the model's copy replaces the host one */
        gptq_linear d;
        gptq_uploader u = {.be = m->be};
        if ((st = gptq_linear_upload(&u, &Q, &d)) != GPTQ_OK) {
            gptq_linear_free(&Q); /* *P was consumed: the caller sees it emptied */
            return gptq_fail_context(st, "layer %d %s", layer, gptq_linear_name(which));
        }
        gptq_linear_free(&Q);
        Q = d;
    }
    llama_linear_clear(m, L);
    L->Q = Q;
    L->packed = 1;
    return llama_table_build(m);
}

gptq_status gptq_model_foreach_tensor(const gptq_model *m, gptq_tensor_visit visit, void *user)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    char name[192];
    int64_t emb_shape[2] = {c->vocab_size, gptq_config_embed_dim(c)},
            vec_shape[1] = {c->hidden_size};
    if ((st = visit(user, "model.embed_tokens.weight", m->embed, m->embed_dt, 2, emb_shape,
                    NULL)) != GPTQ_OK)
        return st;
    static const char *const proj_names[2] = {"model.project_in.weight",
                                              "model.project_out.weight"};
    const linear *proj[2] = {&m->project_in, &m->project_out};
    for (int i = 0; i < 2; i++) {
        int64_t shape[2] = {proj[i]->rows, proj[i]->cols};
        if (proj[i]->W && (st = visit(user, proj_names[i], proj[i]->W, proj[i]->wt, 2, shape,
                                      NULL)) != GPTQ_OK)
            return st;
    }
    int64_t pos_shape[2] = {gptq_config_pos_rows(c), c->hidden_size};
    if (m->embed_norm &&
        ((st = visit(user, "model.embed_norm.weight", m->embed_norm, GPTQ_DT_F32, 1, vec_shape,
                     NULL)) ||
         (st = visit(user, "model.embed_norm.bias", m->embed_norm_b, GPTQ_DT_F32, 1, vec_shape,
                     NULL))))
        return st;
    if (m->pos_embed && (st = visit(user, "model.embed_positions.weight", m->pos_embed, m->pos_dt,
                                    2, pos_shape, NULL)) != GPTQ_OK)
        return st;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const layer *Ly = &m->layers[l];
        for (int i = 0; i < LLAMA_NORMS; i++) {
            int64_t len[1] = {(int64_t)llama_norm_len(c, i)};
            if (!len[0])
                continue;
            snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, llama_norms[i].path,
                     llama_norms[i].suffix);
            if ((st = visit(user, name, *llama_norm_slot((layer *)Ly, i), GPTQ_DT_F32, 1, len,
                            NULL)) != GPTQ_OK)
                return st;
        }
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            const linear *L = &Ly->lin[w];
            int64_t shape[2] = {L->rows, L->cols}, bshape[1] = {L->rows};
            if (!gptq_config_has_linear(c, w))
                continue;
            if (L->packed) {
                snprintf(name, sizeof name, "model.layers.%d.%s", l, gptq_linear_path(w));
                st = visit(user, name, NULL, GPTQ_DT_I32, 2, shape, &L->Q);
            } else if (!L->W) {
                st = gptq_fail(GPTQ_ERR_ARG, "layer %d %s is not loaded (streaming model)", l,
                               gptq_linear_name(w));
            } else {
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, gptq_linear_path(w));
                st = visit(user, name, L->W, L->wt, 2, shape, NULL);
            }
            if (st != GPTQ_OK)
                return st;
            if (L->bias) {
                snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, gptq_linear_path(w));
                if ((st = visit(user, name, L->bias, GPTQ_DT_F32, 1, bshape, NULL)) != GPTQ_OK)
                    return st;
            }
        }
    }
    if ((m->norm &&
         (st = visit(user, "model.norm.weight", m->norm, GPTQ_DT_F32, 1, vec_shape, NULL)) !=
             GPTQ_OK) ||
        (m->norm_b &&
         (st = visit(user, "model.norm.bias", m->norm_b, GPTQ_DT_F32, 1, vec_shape, NULL))))
        return st;
    if (m->lm_head != m->embed)
        return visit(user, "lm_head.weight", m->lm_head, m->head_dt, 2, emb_shape, NULL);
    return GPTQ_OK;
}
