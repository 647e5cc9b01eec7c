/* model/llama_weights.c: where a model's weights live: the table of every
 * stored tensor, copies (clone, copy_with a caller's allocator), and
 * models on another backend (to_backend, layer upload and drop). */
#include "model/llama_internal.h"

#include "quant/ggml_blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"

/* ---- the tensor table --------------------------------------------------------------- */

typedef struct table_builder {
    gptq_model_tensor *t;
    size_t n, cap;
} table_builder;

static gptq_status table_add(table_builder *b, const char *name, const char *suffix,
                             gptq_dtype dtype, int ndim, int64_t d0, int64_t d1, const void *data)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        gptq_model_tensor *t = realloc(b->t, cap * sizeof *t);
        if (!t)
            return gptq_fail(GPTQ_ERR_NOMEM, "tensor table: out of memory");
        b->t = t, b->cap = cap;
    }
    size_t len = strlen(name) + strlen(suffix) + 1;
    char *copy = malloc(len);
    if (!copy)
        return gptq_fail(GPTQ_ERR_NOMEM, "tensor table: out of memory");
    snprintf(copy, len, "%s%s", name, suffix);
    gptq_model_tensor *e = &b->t[b->n++];
    memset(e, 0, sizeof *e);
    e->name = copy, e->dtype = dtype, e->ndim = ndim, e->shape[0] = d0, e->shape[1] = d1;
    e->data = data;
    e->bytes = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1) * gptq_dtype_size(dtype);
    return GPTQ_OK;
}

static gptq_status table_visit(void *user, const char *name, const void *data, gptq_dtype dt,
                               int ndim, const int64_t *shape, const gptq_linear *L)
{
    table_builder *b = user;
    gptq_status st;
    if (!L)
        return table_add(b, name, "", dt, ndim, shape[0], ndim > 1 ? shape[1] : 0, data);
    const gptq_packed *P = &L->P;
    if ((st = table_add(b, name, ".qweight", GPTQ_DT_I32, 2, (int64_t)P->cols * P->bits / 32,
                        P->rows, P->qweight)) != GPTQ_OK ||
        (st = table_add(b, name, ".qzeros", GPTQ_DT_I32, 2, P->groups,
                        (int64_t)P->rows * P->bits / 32, P->qzeros)) != GPTQ_OK ||
        (st = table_add(b, name, ".scales", GPTQ_DT_F16, 2, P->groups, P->rows, P->scales)) !=
            GPTQ_OK)
        return st;
    if ((st = table_add(b, name, ".g_idx", GPTQ_DT_I32, 1, P->cols, 0, P->g_idx)) != GPTQ_OK)
        return st;
    /* the kernels' layout: g_idx sorted; ".perm" present for act-order */
    return L->perm ? table_add(b, name, ".perm", GPTQ_DT_I32, 1, P->cols, 0, L->perm) : GPTQ_OK;
}

/* (Re)build m->table from the current weights; empty on failure. */
gptq_status llama_table_build(gptq_model *m)
{
    if (m->src) /* streaming: linears come and go; no shareable table */
        return GPTQ_OK;
    for (int l = 0; l < m->cfg.num_hidden_layers; l++)
        for (int w = 0; w < GPTQ_LIN_COUNT; w++)
            if (!m->layers[l].lin[w].W && !m->layers[l].lin[w].packed &&
                gptq_config_has_linear(&m->cfg, w)) {
                llama_table_free(m); /* layers still to upload (to_backend NO_LAYERS) */
                return GPTQ_OK;
            }
    table_builder b = {0};
    gptq_status st = gptq_model_foreach_tensor(m, table_visit, &b);
    if (st != GPTQ_OK) {
        for (size_t i = 0; i < b.n; i++)
            free((char *)b.t[i].name);
        free(b.t);
        llama_table_free(m); /* never leave entries pointing at replaced weights */
        return st;
    }
    llama_table_free(m);
    m->table = b.t;
    m->n_table = b.n;
    return GPTQ_OK;
}

size_t gptq_model_tensor_count(const gptq_model *m)
{
    return m->n_table;
}

const gptq_model_tensor *gptq_model_tensor_at(const gptq_model *m, size_t i)
{
    return i < m->n_table ? &m->table[i] : NULL;
}

/* ---- copies -------------------------------------------------------------------------- */

typedef struct copier {
    gptq_model_alloc alloc; /* NULL: malloc */
    void *ctx;
    int failed;
} copier;

static void *copy_bytes(copier *c, const void *src, size_t bytes)
{
    if (!src || c->failed)
        return NULL;
    void *p = c->alloc ? c->alloc(c->ctx, bytes ? bytes : 1) : malloc(bytes ? bytes : 1);
    if (!p) {
        c->failed = 1;
        return NULL;
    }
    memcpy(p, src, bytes);
    return p;
}

static void copy_packed(copier *c, const gptq_linear *lsrc, gptq_linear *ldst)
{
    const gptq_packed *src = &lsrc->P;
    gptq_packed *dst = &ldst->P;
    *ldst = *lsrc;
    dst->owned = !c->alloc;
    ldst->perm = copy_bytes(c, lsrc->perm, (size_t)src->cols * sizeof(int32_t));
    size_t words = (size_t)src->cols * src->bits / 32 * src->rows;
    size_t zwords = (size_t)src->groups * src->rows * src->bits / 32;
    dst->qweight = copy_bytes(c, src->qweight, words * sizeof(int32_t));
    dst->qzeros = copy_bytes(c, src->qzeros, zwords * sizeof(int32_t));
    dst->scales = copy_bytes(c, src->scales, (size_t)src->groups * src->rows * sizeof(uint16_t));
    dst->g_idx = copy_bytes(c, src->g_idx, (size_t)src->cols * sizeof(int32_t));
}

/* A block-grid linear's GGUF blocks go with every copy, in host memory the
 * copy owns (views or not, on any backend: they are for the GGUF writer).
 * Returns 0 when out of memory. */
static int copy_blocks(const linear *src, linear *dst)
{
    dst->blocks = NULL;
    dst->block_type = 0;
    if (!src->blocks)
        return 1;
    const size_t bytes = (size_t)src->rows * gptq_ggml_row_bytes(src->block_type, src->cols);
    if (!(dst->blocks = malloc(bytes)))
        return 0;
    memcpy(dst->blocks, src->blocks, bytes);
    dst->block_type = src->block_type;
    return 1;
}

static gptq_status model_copy(const gptq_model *m, copier *cp, gptq_model **out)
{
    const gptq_model_config *c = &m->cfg;
    size_t hidden = (size_t)c->hidden_size;
    gptq_model *n = llama_model_new(c);
    *out = NULL;
    if (!n)
        return gptq_fail(GPTQ_ERR_NOMEM, "cannot allocate a copy of the model");
    n->views = cp->alloc != NULL;
    const size_t ed = (size_t)gptq_config_embed_dim(c);
    n->embed = copy_bytes(cp, m->embed, llama_dense_bytes((size_t)c->vocab_size, ed, m->embed_dt));
    n->project_in = m->project_in, n->project_out = m->project_out;
    n->project_in.W = copy_bytes(cp, m->project_in.W,
                                 llama_dense_bytes(m->project_in.rows, m->project_in.cols,
                                                   m->project_in.wt));
    n->project_out.W = copy_bytes(cp, m->project_out.W,
                                  llama_dense_bytes(m->project_out.rows, m->project_out.cols,
                                                    m->project_out.wt));
    n->norm = copy_bytes(cp, m->norm, hidden * sizeof(float));
    n->norm_b = copy_bytes(cp, m->norm_b, hidden * sizeof(float));
    n->embed_norm = copy_bytes(cp, m->embed_norm, hidden * sizeof(float));
    n->embed_norm_b = copy_bytes(cp, m->embed_norm_b, hidden * sizeof(float));
    n->pos_embed = copy_bytes(
        cp, m->pos_embed, llama_dense_bytes((size_t)gptq_config_pos_rows(c), hidden, m->pos_dt));
    n->pos_dt = m->pos_dt;
    n->lm_head = m->lm_head == m->embed
                     ? n->embed
                     : copy_bytes(cp, m->lm_head,
                                  llama_dense_bytes((size_t)c->vocab_size, ed, m->head_dt));
    n->embed_dt = m->embed_dt, n->head_dt = m->head_dt;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const layer *src = &m->layers[l];
        layer *dst = &n->layers[l];
        for (int i = 0; i < LLAMA_NORMS; i++)
            *llama_norm_slot(dst, i) = copy_bytes(cp, *llama_norm_slot((layer *)src, i),
                                                  llama_norm_len(c, i) * sizeof(float));
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            const linear *sl = &src->lin[w];
            linear *dl = &dst->lin[w];
            dl->rows = sl->rows, dl->cols = sl->cols, dl->packed = sl->packed, dl->wt = sl->wt;
            dl->bias = copy_bytes(cp, sl->bias, (size_t)sl->rows * sizeof(float));
            if (sl->packed)
                copy_packed(cp, &sl->Q, &dl->Q);
            else
                dl->W = copy_bytes(cp, sl->W, llama_dense_bytes((size_t)sl->rows, (size_t)sl->cols,
                                                                sl->wt));
            if (!copy_blocks(sl, dl))
                cp->failed = 1;
        }
    }
    gptq_status st = cp->failed ? gptq_fail(GPTQ_ERR_NOMEM, "cannot allocate a copy of the model")
                                : llama_table_build(n);
    if (st != GPTQ_OK) {
        gptq_model_free(n); /* a view model frees none of the allocator's buffers */
        return st;
    }
    *out = n;
    return GPTQ_OK;
}

gptq_status llama_refuse_device(const gptq_model *m, const char *what)
{
    if (!m->device)
        return GPTQ_OK;
    return gptq_fail(GPTQ_ERR_ARG, "%s: the model's weights are in %s memory; copy its host "
                     "model instead", what, m->be->name);
}

gptq_status gptq_model_clone(const gptq_model *m, gptq_model **out)
{
    copier cp = {0};
    *out = NULL;
    gptq_status st = llama_refuse_device(m, "clone");
    return st != GPTQ_OK ? st : model_copy(m, &cp, out);
}

gptq_status gptq_model_copy_with(const gptq_model *m, gptq_model_alloc alloc, void *ctx,
                                 gptq_model **out)
{
    *out = NULL;
    if (!alloc)
        return gptq_fail(GPTQ_ERR_ARG, "copy_with: alloc must not be NULL");
    gptq_status st = llama_refuse_device(m, "copy_with");
    if (st != GPTQ_OK)
        return st;
    copier cp = {.alloc = alloc, .ctx = ctx};
    return model_copy(m, &cp, out);
}

/* ---- backends ------------------------------------------------------------------------------ */

/* A dense matrix [rows, cols] of dtype dt into u's memory: as it is when
 * u's backend takes dt, else widened to float32 (*out_dt says which). */
static void *upload_dense(gptq_uploader *u, const void *src, gptq_dtype dt, size_t rows,
                          size_t cols, gptq_dtype *out_dt, const char *what)
{
    *out_dt = dt;
    if (!src || dt == GPTQ_DT_F32 || (u->be->weight_dtypes & 1u << dt))
        return gptq_upload_bytes(u, src, llama_dense_bytes(rows, cols, dt), what);
    if (u->st != GPTQ_OK)
        return NULL;
    float *wide = malloc(rows * cols * sizeof *wide);
    if (!wide) {
        u->st = gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot widen [%zu, %zu] to float32", what, rows,
                          cols);
        return NULL;
    }
    gptq_dtype_to_f32(dt, src, wide, rows * cols);
    void *p = gptq_upload_bytes(u, wide, rows * cols * sizeof *wide, what);
    free(wide);
    *out_dt = GPTQ_DT_F32;
    return p;
}

/* Upload the host layer src into dst (empty) through u. */
static void upload_layer(gptq_uploader *u, const gptq_model_config *c, const layer *src, layer *dst,
                         int l)
{
    char what[96];
    snprintf(what, sizeof what, "layer %d norms", l);
    for (int i = 0; i < LLAMA_NORMS; i++)
        *llama_norm_slot(dst, i) = gptq_upload_bytes(u, *llama_norm_slot((layer *)src, i),
                                                     llama_norm_len(c, i) * sizeof(float), what);
    for (int w = 0; w < GPTQ_LIN_COUNT && u->st == GPTQ_OK; w++) {
        const linear *sl = &src->lin[w];
        linear *dl = &dst->lin[w];
        snprintf(what, sizeof what, "layer %d %s", l, gptq_linear_name(w));
        dl->rows = sl->rows, dl->cols = sl->cols;
        if (!gptq_config_has_linear(c, w))
            continue;
        if (!sl->packed && !sl->W) {
            u->st = gptq_fail(GPTQ_ERR_ARG, "%s is not loaded (streaming model): call "
                              "gptq_model_layer_ensure first", what);
            break;
        }
        if (sl->packed && u->be->qgemm_check &&
            (u->st = u->be->qgemm_check(u->be, sl->rows, sl->cols, sl->Q.P.bits)) != GPTQ_OK) {
            gptq_fail_context(u->st, "%s", what);
            break;
        }
        dl->bias = gptq_upload_bytes(u, sl->bias, (size_t)sl->rows * sizeof(float), what);
        if (sl->packed) {
            if (u->st == GPTQ_OK &&
                (u->st = gptq_linear_upload(u, &sl->Q, &dl->Q)) == GPTQ_OK)
                dl->packed = 1;
            else if (u->st != GPTQ_OK)
                gptq_fail_context(u->st, "%s", what);
        } else {
            dl->W = upload_dense(u, sl->W, sl->wt, (size_t)sl->rows, (size_t)sl->cols, &dl->wt, what);
        }
        if (u->st == GPTQ_OK && !copy_blocks(sl, dl))
            u->st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for its GGUF blocks", what);
    }
}

const gptq_backend *gptq_model_backend(const gptq_model *m)
{
    return m->be;
}

gptq_dtype gptq_model_kv_dtype(const gptq_model *m)
{
    return !m->exact && (m->be->kv_dtypes & (1u << GPTQ_DT_F16)) ? GPTQ_DT_F16 : GPTQ_DT_F32;
}

gptq_dtype gptq_model_dense_dtype(const gptq_model *m)
{
    for (int l = 0; l < m->cfg.num_hidden_layers; l++)
        for (int i = 0; i < GPTQ_LIN_COUNT; i++)
            if (m->layers[l].lin[i].W)
                return m->layers[l].lin[i].wt;
    return GPTQ_DT_F32;
}

int gptq_model_set_exact(gptq_model *m, int exact)
{
    const int was = m->exact;
    m->exact = exact != 0;
    return was;
}

gptq_status gptq_model_to_backend(const gptq_model *m, const gptq_backend *be,
                                  gptq_model_alloc alloc, void *ctx, int flags, gptq_model **out)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    *out = NULL;
    if (!be)
        return gptq_fail(GPTQ_ERR_ARG, "to_backend: backend is NULL");
    if ((st = llama_refuse_device(m, "to_backend")) != GPTQ_OK)
        return st;
    gptq_model *n = llama_model_new(c);
    if (!n)
        return gptq_fail(GPTQ_ERR_NOMEM, "to_backend: out of memory");
    if ((st = llama_model_set_backend(n, be)) != GPTQ_OK) {
        gptq_model_free(n);
        return st;
    }
    n->views = alloc != NULL;
    const size_t vocab = (size_t)c->vocab_size, hidden = (size_t)c->hidden_size,
                 ed = (size_t)gptq_config_embed_dim(c);
    gptq_uploader u = {.be = be, .alloc = alloc, .ctx = ctx};
    n->embed = upload_dense(&u, m->embed, m->embed_dt, vocab, ed, &n->embed_dt, "embed_tokens");
    n->project_in = m->project_in, n->project_out = m->project_out;
    if (m->project_in.W) {
        n->project_in.W = upload_dense(&u, m->project_in.W, m->project_in.wt, hidden, ed,
                                       &n->project_in.wt, "project_in");
        n->project_out.W = upload_dense(&u, m->project_out.W, m->project_out.wt, ed, hidden,
                                        &n->project_out.wt, "project_out");
    }
    if (m->embed_norm) {
        n->embed_norm = gptq_upload_bytes(&u, m->embed_norm, hidden * sizeof(float), "embed_norm");
        n->embed_norm_b =
            gptq_upload_bytes(&u, m->embed_norm_b, hidden * sizeof(float), "embed_norm bias");
    }
    if (m->pos_embed)
        n->pos_embed = upload_dense(&u, m->pos_embed, m->pos_dt, (size_t)gptq_config_pos_rows(c),
                                    hidden, &n->pos_dt, "embed_positions");
    if (!(flags & GPTQ_TO_BACKEND_NO_HEAD)) {
        n->norm = gptq_upload_bytes(&u, m->norm, hidden * sizeof(float), "norm");
        if (m->norm_b)
            n->norm_b = gptq_upload_bytes(&u, m->norm_b, hidden * sizeof(float), "norm bias");
        if (m->lm_head == m->embed)
            n->lm_head = n->embed, n->head_dt = n->embed_dt;
        else
            n->lm_head = upload_dense(&u, m->lm_head, m->head_dt, vocab, ed, &n->head_dt,
                                      "lm_head");
    }
    for (int l = 0; l < c->num_hidden_layers && u.st == GPTQ_OK; l++) {
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            n->layers[l].lin[w].rows = m->layers[l].lin[w].rows;
            n->layers[l].lin[w].cols = m->layers[l].lin[w].cols;
        }
        if (!(flags & GPTQ_TO_BACKEND_NO_LAYERS))
            upload_layer(&u, c, &m->layers[l], &n->layers[l], l);
    }
    st = u.st;
    if (st == GPTQ_OK && !(flags & (GPTQ_TO_BACKEND_NO_LAYERS | GPTQ_TO_BACKEND_NO_HEAD)))
        st = llama_table_build(n);
    if (st == GPTQ_OK && be->copy == NULL)
        st = gptq_fail(GPTQ_ERR_ARG, "to_backend: backend %s has no copy entry", be->name);
    if (st != GPTQ_OK) {
        gptq_model_free(n);
        return st;
    }
    *out = n;
    return GPTQ_OK;
}

gptq_status gptq_model_layer_upload(gptq_model *dev, const gptq_model *src, int layer)
{
    const gptq_model_config *c = &dev->cfg;
    if (layer < 0 || layer >= c->num_hidden_layers || layer >= src->cfg.num_hidden_layers)
        return gptq_fail(GPTQ_ERR_ARG, "layer_upload: layer %d is out of range [0, %d)", layer,
                         c->num_hidden_layers);
    if (src->cfg.hidden_size != c->hidden_size ||
        src->cfg.intermediate_size != c->intermediate_size)
        return gptq_fail(GPTQ_ERR_ARG, "layer_upload: the models have different shapes");
    if (dev->views)
        return gptq_fail(GPTQ_ERR_BUSY, "layer_upload: the model's weights are borrowed");
    gptq_status st = llama_refuse_device(src, "layer_upload source");
    if (st != GPTQ_OK)
        return st;
    llama_layer_clear(dev, &dev->layers[layer]);
    gptq_uploader u = {.be = dev->be};
    upload_layer(&u, c, &src->layers[layer], &dev->layers[layer], layer);
    if (u.st != GPTQ_OK) {
        llama_layer_clear(dev, &dev->layers[layer]);
        llama_table_free(dev);
        return u.st;
    }
    return llama_table_build(dev);
}

void gptq_model_layer_drop(gptq_model *dev, int layer)
{
    if (dev->views || layer < 0 || layer >= dev->cfg.num_hidden_layers)
        return;
    llama_layer_clear(dev, &dev->layers[layer]);
    llama_table_free(dev); /* a model with an empty layer has no shareable table */
}

const float *gptq_model_linear_weight(const gptq_model *m, int layer, gptq_linear_id which)
{
    if (layer < 0 || layer >= m->cfg.num_hidden_layers || (unsigned)which >= GPTQ_LIN_COUNT)
        return NULL;
    const linear *L = &m->layers[layer].lin[which];
    return L->packed || L->wt != GPTQ_DT_F32 ? NULL : L->W;
}

/* ---- the output matrix on a GGUF grid ------------------------------------------------ */

/* Rows of lm_head rounded per pass: a float32 copy of a few MiB, never the
 * whole matrix (113 MB for SmolLM2's 49152 x 576). */
#define HEAD_GRID_ROWS 1024

int gptq_head_grid_from_name(const char *name)
{
    if (name && !strcmp(name, "none"))
        return GPTQ_GRID_NONE;
    return name && gptq_grid_from_name(name) == GPTQ_GRID_Q8_0 ? GPTQ_GRID_Q8_0 : -1;
}

size_t gptq_head_grid_bytes(const gptq_model_config *c, int grid)
{
    if (grid != GPTQ_GRID_Q8_0)
        return 0;
    /* packed 8-bit symmetric, groups of 32: a byte per weight, per group an
     * fp16 scale and a zero byte, and g_idx */
    const size_t rows = (size_t)c->vocab_size, cols = (size_t)gptq_config_embed_dim(c);
    return rows * cols + rows * ((cols + 31) / 32) * (2 + 1) + cols * sizeof(int32_t);
}

int gptq_model_head_grid(const gptq_model *m, size_t *bytes)
{
    if (bytes)
        *bytes = m->head_q.packed ? gptq_linear_bytes(&m->head_q.Q) : 0;
    return m->head_grid;
}

void llama_head_grid_clear(gptq_model *m)
{
    gptq_linear_free(&m->head_q.Q);
    memset(&m->head_q, 0, sizeof m->head_q);
    m->head_grid = GPTQ_GRID_NONE;
}

/* Rows [r0, r0 + n) of the output matrix rounded onto cfg's grid, packed
 * into their place in *P (v1 layout: qweight [cols*bits/32, rows], qzeros
 * [groups, rows*bits/32], scales [groups, rows]). */
static gptq_status head_grid_rows(const gptq_model *m, const gptq_quant_config *cfg, int r0, int n,
                                  float *W, gptq_packed *P)
{
    const int rows = P->rows, cols = P->cols, bits = P->bits;
    const size_t row_bytes = (size_t)cols * gptq_dtype_size(m->head_dt);
    if (gptq_dtype_to_f32(m->head_dt, (const char *)m->lm_head + (size_t)r0 * row_bytes, W,
                          (size_t)n * cols))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "head grid: lm_head is %s",
                         gptq_dtype_name(m->head_dt));
    gptq_quant_result res = {0};
    gptq_packed part = {0};
    gptq_status st = gptq_rtn_layer(W, n, cols, cfg, &res);
    if (!st)
        st = gptq_pack(&res, &part);
    if (!st) {
        const int words = cols * bits / 32, zwords = n * bits / 32, zrow = rows * bits / 32;
        for (int w = 0; w < words; w++)
            memcpy(P->qweight + (size_t)w * rows + r0, part.qweight + (size_t)w * n,
                   (size_t)n * sizeof *P->qweight);
        for (int g = 0; g < P->groups; g++) {
            memcpy(P->qzeros + (size_t)g * zrow + (size_t)r0 * bits / 32,
                   part.qzeros + (size_t)g * zwords, (size_t)zwords * sizeof *P->qzeros);
            memcpy(P->scales + (size_t)g * rows + r0, part.scales + (size_t)g * n,
                   (size_t)n * sizeof *P->scales);
        }
        if (r0 == 0)
            memcpy(P->g_idx, part.g_idx, (size_t)cols * sizeof *P->g_idx);
    }
    gptq_packed_free(&part);
    gptq_quant_result_free(&res);
    return st;
}

gptq_status gptq_model_set_head_grid(gptq_model *m, int grid)
{
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    gptq_status st;
    if (grid == GPTQ_GRID_NONE) {
        llama_head_grid_clear(m);
        return GPTQ_OK;
    }
    if (grid != GPTQ_GRID_Q8_0)
        return gptq_fail(GPTQ_ERR_ARG, "head grid %s: the output matrix takes q8_0 (or none)",
                         gptq_grid_name(grid));
    if (!m->lm_head)
        return gptq_fail(GPTQ_ERR_ARG, "head grid: this copy of the model was made without its "
                         "head");
    if ((st = llama_refuse_device(m, "head grid")))
        return st;
    if (!be->qgemm)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "head grid: the %s backend has no packed "
                         "products", be->name);
    gptq_quant_config cfg;
    gptq_quant_config_default(&cfg);
    if ((st = gptq_quant_config_use_grid(&cfg, grid, 0, 0)))
        return st;
    const int rows = c->vocab_size, cols = gptq_config_embed_dim(c), bits = cfg.bits;
    if ((st = gptq_pack_check(rows, cols, bits)) ||
        (be->qgemm_check && (st = be->qgemm_check(be, rows, cols, bits))))
        return gptq_fail_context(st, "head grid %s for the %d x %d output matrix",
                                 gptq_grid_name(grid), rows, cols);
    gptq_packed P = {.bits = bits, .rows = rows, .cols = cols, .group_size = cfg.group_size,
                     .groups = gptq_quant_groups(&cfg, cols), .owned = 1};
    P.qweight = malloc((size_t)cols * bits / 32 * (size_t)rows * sizeof *P.qweight);
    P.qzeros = malloc((size_t)P.groups * ((size_t)rows * bits / 32) * sizeof *P.qzeros);
    P.scales = malloc((size_t)P.groups * rows * sizeof *P.scales);
    P.g_idx = malloc((size_t)cols * sizeof *P.g_idx);
    const int chunk = rows < HEAD_GRID_ROWS ? rows : HEAD_GRID_ROWS; /* a multiple of 4 */
    float *W = malloc((size_t)chunk * cols * sizeof *W);
    if (!P.qweight || !P.qzeros || !P.scales || !P.g_idx || !W)
        st = gptq_fail(GPTQ_ERR_NOMEM, "head grid: out of memory for the %d x %d output "
                       "matrix", rows, cols);
    for (int r0 = 0; !st && r0 < rows; r0 += chunk)
        st = head_grid_rows(m, &cfg, r0, rows - r0 < chunk ? rows - r0 : chunk, W, &P);
    free(W);
    linear L = {.rows = rows, .cols = cols, .wt = GPTQ_DT_F32, .packed = 1};
    if (!st)
        st = gptq_linear_from_v1(&P, &L.Q);
    if (st) {
        gptq_packed_free(&P);
        return st;
    }
    llama_head_grid_clear(m);
    m->head_q = L;
    m->head_grid = grid;
    return GPTQ_OK;
}
