/* model/llama_load.c: building a model from a source (an HF folder's
 * safetensors or a GGUF file, copied: weight matrices in their F16/BF16 or
 * float32, or packed linears) or
 * from a caller's tensor table (borrowed: the mapped-model path), and
 * loading a streaming model's layers on demand. */
#include "model/llama_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/interrupt.h"

/* ---- loading ------------------------------------------------------------------ */

/* Where tensors come from: a model source (an HF folder's safetensors or a
 * GGUF file: copied, weight matrices in their stored F16/BF16 or else
 * converted to float32), or a caller's table (from_tensors: borrowed as
 * they are, so they must already be in the resident dtypes and aligned). */
typedef struct loader {
    const char *dir; /* names the source in messages */
    const gptq_model_source *src;
    const gptq_model_tensor *table;
    size_t n_table;
    const gptq_backend *dev; /* the table is in this (non-CPU) backend's memory, or NULL */
} loader;

typedef gptq_source_tensor src_tensor;

/* 1 and *t filled if tensor `name` exists, else 0. */
static int find_tensor(const loader *ld, const char *name, src_tensor *t)
{
    if (ld->src)
        return gptq_source_find(ld->src, name, t);
    for (size_t i = 0; i < ld->n_table; i++) {
        const gptq_model_tensor *mt = &ld->table[i];
        if (!mt->name || strcmp(mt->name, name) != 0 || mt->ndim < 0 || mt->ndim > 4)
            continue;
        int64_t numel = 1;
        for (int d = 0; d < mt->ndim; d++)
            numel *= mt->shape[d];
        *t = (src_tensor){.name = mt->name, .dtype = mt->dtype, .ndim = mt->ndim, .numel = numel,
                          .data = mt->data, .bytes = mt->bytes};
        memcpy(t->shape, mt->shape, sizeof t->shape);
        return 1;
    }
    return 0;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used +=
            (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
}

/* Find `name` and check its shape (and that its bytes match it). */
static gptq_status find_checked(const loader *ld, const char *name, int ndim, const int64_t *shape,
                                const char *why, src_tensor *t)
{
    if (!find_tensor(ld, name, t))
        return gptq_fail(GPTQ_ERR_NOTFOUND, "%s: tensor '%s' is missing", ld->dir, name);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[128], want[128];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(want, sizeof want, ndim, shape);
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '%s' has shape %s, config.json (%s) implies %s", ld->dir, name,
                         got, why, want);
    }
    if (t->bytes != (size_t)t->numel * gptq_dtype_size(t->dtype) ||
        (t->bytes && !t->data && !ld->src))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '%s' holds %zu bytes, its shape needs %zu",
                         ld->dir, name, t->bytes, (size_t)t->numel * gptq_dtype_size(t->dtype));
    return GPTQ_OK;
}

/* A borrowed tensor must be of `dtype` and aligned for it. */
static gptq_status check_view(const loader *ld, const src_tensor *t, gptq_dtype dtype)
{
    if (t->dtype != dtype)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '%s' has dtype %s; borrowed weights must be %s", ld->dir,
                         t->name, gptq_dtype_name(t->dtype), gptq_dtype_name(dtype));
    if ((uintptr_t)t->data % gptq_dtype_size(dtype) != 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '%s' is not aligned to %zu bytes", ld->dir,
                         t->name, gptq_dtype_size(dtype));
    return GPTQ_OK;
}

/* Float tensor `name` of the given shape as float32: a new array (files) or
 * the caller's (table). */
static gptq_status load_f32(const loader *ld, const char *name, int ndim, const int64_t *shape,
                            const char *why, float **out)
{
    gptq_status st;
    src_tensor t;
    *out = NULL;
    if ((st = find_checked(ld, name, ndim, shape, why, &t)) != GPTQ_OK)
        return st;
    if (ld->table) {
        if ((st = check_view(ld, &t, GPTQ_DT_F32)) != GPTQ_OK)
            return st;
        *out = (float *)t.data; /* never written: a view model refuses set_linear */
        return GPTQ_OK;
    }
    if (t.dtype != GPTQ_DT_F32 && t.dtype != GPTQ_DT_F16 && t.dtype != GPTQ_DT_BF16)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '%s' has dtype %s; weights must be F16, BF16 or F32", ld->dir,
                         name, gptq_dtype_name(t.dtype));
    float *data = malloc((size_t)t.numel * sizeof *data + 1);
    if (!data)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate %lld floats for '%s'", ld->dir,
                         (long long)t.numel, name);
    st = gptq_source_read_f32(ld->src, &t, data);
    gptq_source_release(ld->src, &t); /* copied: the file's pages leave this process's RSS */
    if (st != GPTQ_OK) {
        free(data);
        return st;
    }
    *out = data;
    return GPTQ_OK;
}

/* A copy of t's stored bytes in a new array (*out); the file's pages are
 * dropped once copied, so a loaded model does not also hold its file. */
static gptq_status copy_stored(const loader *ld, const src_tensor *t, void **out)
{
    void *data = malloc(t->bytes ? t->bytes : 1);
    if (!data)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate %zu bytes for '%s'", ld->dir,
                         t->bytes, t->name);
    gptq_status st = gptq_source_read_raw(ld->src, t, data);
    gptq_source_release(ld->src, t);
    if (st != GPTQ_OK) {
        free(data);
        return st;
    }
    *out = data;
    return GPTQ_OK;
}

/* A weight matrix `name` of the given shape in its stored precision: F16
 * and BF16 kept (copied from files, borrowed from a table), anything else
 * as float32 (load_f32). *dt says which. */
static gptq_status load_dense(const loader *ld, const char *name, const int64_t *shape,
                              const char *why, void **out, gptq_dtype *dt)
{
    gptq_status st;
    src_tensor t;
    *out = NULL;
    *dt = GPTQ_DT_F32;
    if ((st = find_checked(ld, name, 2, shape, why, &t)) != GPTQ_OK)
        return st;
    if (t.dtype != GPTQ_DT_F16 && t.dtype != GPTQ_DT_BF16)
        return load_f32(ld, name, 2, shape, why, (float **)out);
    if (ld->table) {
        if ((st = check_view(ld, &t, t.dtype)) != GPTQ_OK)
            return st;
        if (ld->dev && !(ld->dev->weight_dtypes & 1u << t.dtype))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '%s' is %s; backend %s takes float32 "
                             "weights only", ld->dir, name, gptq_dtype_name(t.dtype),
                             ld->dev->name);
        *out = (void *)t.data; /* never written: a view model refuses set_linear */
        *dt = t.dtype;
        return GPTQ_OK;
    }
    if ((st = copy_stored(ld, &t, out)) != GPTQ_OK)
        return st;
    *dt = t.dtype;
    return GPTQ_OK;
}

/* A raw integer/fp16 tensor of the expected dtype and shape: copied (files;
 * the mmap may not be aligned for int32) or borrowed (table). */
static gptq_status load_raw(const loader *ld, const char *name, gptq_dtype dtype, int ndim,
                            const int64_t *shape, const char *why, void **out)
{
    gptq_status st;
    src_tensor t;
    *out = NULL;
    if ((st = find_checked(ld, name, ndim, shape, why, &t)) != GPTQ_OK)
        return st;
    if (t.dtype != dtype)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected %s", ld->dir,
                         name, gptq_dtype_name(t.dtype), gptq_dtype_name(dtype));
    if (ld->table) {
        if ((st = check_view(ld, &t, dtype)) != GPTQ_OK)
            return st;
        *out = (void *)t.data;
        return GPTQ_OK;
    }
    return copy_stored(ld, &t, out);
}

/* A GPTQ v1 linear (used where "<path>.weight" is absent and
 * "<path>.qweight" present): qweight [cols*bits/32, rows] I32, qzeros
 * [groups, rows*bits/32] I32, scales [groups, rows] F16, g_idx [cols] I32
 * (optional in files: c / group_size when absent, as old AutoGPTQ
 * checkpoints without act-order imply), into the kernels' layout. */
static gptq_status load_packed(const loader *ld, const gptq_model_config *c, const char *prefix,
                               int rows, int cols, gptq_linear *Q)
{
    gptq_status st;
    char name[256];
    src_tensor qw, sc;
    gptq_packed v1 = {0}, *P = &v1;
    memset(Q, 0, sizeof *Q);
    /* bits and group size: quantization_config's, else what the shapes say
     * (a model quantized in this process and shared keeps its HF config) */
    snprintf(name, sizeof name, "%s.qweight", prefix);
    if (!find_tensor(ld, name, &qw) || qw.ndim != 2 || qw.shape[0] < 1 ||
        (qw.shape[0] * 32) % cols != 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '%s' is missing or not [%d*bits/32, %d]",
                         ld->dir, name, cols, rows);
    const int bits = c->quant.present ? c->quant.bits : (int)(qw.shape[0] * 32 / cols);
    if ((st = gptq_pack_check(rows, cols, bits)) != GPTQ_OK)
        return gptq_fail_context(st, "%s: %s", ld->dir, prefix);
    snprintf(name, sizeof name, "%s.scales", prefix);
    if (!find_tensor(ld, name, &sc) || sc.ndim != 2 || sc.shape[0] < 1 || sc.shape[0] > cols)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '%s' is missing or not [groups, %d]", ld->dir,
                         name, rows);
    const int groups = (int)sc.shape[0];
    const int gs = c->quant.present ? c->quant.group_size
                   : groups == 1    ? -1
                                    : (cols + groups - 1) / groups;
    int want_groups = gs > 0 ? (cols + gs - 1) / gs : 1;
    if (groups != want_groups)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '%s' has %d groups, quantization_config.group_size %d with "
                         "%d inputs implies %d",
                         ld->dir, name, groups, gs, cols, want_groups);
    P->bits = bits, P->rows = rows, P->cols = cols, P->groups = groups, P->group_size = gs;
    P->owned = !ld->table;
    const char *why = "quantization_config.bits";
    int64_t qw_shape[2] = {(int64_t)cols * bits / 32, rows};
    int64_t qz_shape[2] = {groups, (int64_t)rows * bits / 32};
    int64_t sc_shape[2] = {groups, rows};
    int64_t gi_shape[1] = {cols};
    snprintf(name, sizeof name, "%s.qweight", prefix);
    if ((st = load_raw(ld, name, GPTQ_DT_I32, 2, qw_shape, why, (void **)&P->qweight)) != GPTQ_OK)
        goto fail;
    snprintf(name, sizeof name, "%s.qzeros", prefix);
    if ((st = load_raw(ld, name, GPTQ_DT_I32, 2, qz_shape, why, (void **)&P->qzeros)) != GPTQ_OK)
        goto fail;
    snprintf(name, sizeof name, "%s.scales", prefix);
    if ((st = load_raw(ld, name, GPTQ_DT_F16, 2, sc_shape, why, (void **)&P->scales)) != GPTQ_OK)
        goto fail;
    snprintf(name, sizeof name, "%s.g_idx", prefix);
    src_tensor gi;
    if (find_tensor(ld, name, &gi) || ld->table) {
        if ((st = load_raw(ld, name, GPTQ_DT_I32, 1, gi_shape, why, (void **)&P->g_idx)) != GPTQ_OK)
            goto fail;
    } else {
        if (!(P->g_idx = malloc((size_t)cols * sizeof *P->g_idx))) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", ld->dir);
            goto fail;
        }
        for (int i = 0; i < cols; i++)
            P->g_idx[i] = gs > 0 ? i / gs : 0;
    }
    if (!ld->table && c->quant.v2 &&
        (st = gptq_qzeros_v2_to_v1(P->qzeros, groups, rows, bits)) != GPTQ_OK) {
        gptq_fail_context(st, "%s: %s.qzeros", ld->dir, prefix);
        goto fail;
    }
    if (!ld->table) { /* a checkpoint: v1 into the kernels' layout (checks g_idx) */
        if ((st = gptq_linear_from_v1(P, Q)) != GPTQ_OK) {
            gptq_fail_context(st, "%s: %s", ld->dir, prefix);
            goto fail;
        }
        return GPTQ_OK;
    }
    /* A table (a shared or mapped model) holds the kernels' layout already:
     * g_idx sorted and, for act-order, "<prefix>.perm". The kernels index
     * scales with g_idx and x with perm, so both are checked here, on a host
     * copy when they are device memory. */
    snprintf(name, sizeof name, "%s.perm", prefix);
    int32_t *perm = NULL, *host = NULL;
    if (find_tensor(ld, name, &gi) &&
        (st = load_raw(ld, name, GPTQ_DT_I32, 1, gi_shape, why, (void **)&perm)) != GPTQ_OK)
        goto fail;
    Q->P = *P;
    Q->perm = perm;
    if (ld->dev) {
        if (!(host = malloc((size_t)cols * sizeof *host * 2))) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", ld->dir);
            goto fail;
        }
        gptq_linear h = *Q;
        h.P.g_idx = host;
        h.perm = perm ? host + cols : NULL;
        if ((st = ld->dev->download(ld->dev, host, P->g_idx, (size_t)cols * sizeof *host)) ||
            (perm && (st = ld->dev->download(ld->dev, host + cols, perm,
                                             (size_t)cols * sizeof *host))) ||
            (st = gptq_linear_check(&h)) != GPTQ_OK) {
            free(host);
            goto fail_table;
        }
        Q->chunked = h.chunked;
        free(host);
    } else if ((st = gptq_linear_check(Q)) != GPTQ_OK) {
        goto fail_table;
    }
    memset(P, 0, sizeof *P);
    return GPTQ_OK;
fail_table:
    memset(Q, 0, sizeof *Q);
    gptq_fail_context(st, "%s: %s", ld->dir, prefix);
fail:
    gptq_packed_free(P);
    memset(P, 0, sizeof *P);
    return st;
}

static gptq_status load_linear(const loader *ld, gptq_model *m, int l, gptq_linear_id which)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    linear *L = &m->layers[l].lin[which];
    char prefix[192], name[256], why[96];
    gptq_model_linear_shape(m, which, &L->rows, &L->cols);
    snprintf(prefix, sizeof prefix, "model.layers.%d.%s", l, gptq_linear_path(which));
    snprintf(why, sizeof why, "%s",
             which <= GPTQ_LIN_O ? "hidden_size, heads, head_dim"
                                 : "hidden_size, intermediate_size");
    snprintf(name, sizeof name, "%s.weight", prefix);
    int64_t shape[2] = {L->rows, L->cols};
    src_tensor t;
    char qname[256];
    snprintf(qname, sizeof qname, "%s.qweight", prefix);
    if (find_tensor(ld, name, &t) || !find_tensor(ld, qname, &t)) {
        if ((st = load_dense(ld, name, shape, why, &L->W, &L->wt)) != GPTQ_OK)
            return st;
    } else {
        if ((st = load_packed(ld, c, prefix, L->rows, L->cols, &L->Q)) != GPTQ_OK)
            return st;
        L->packed = 1;
    }
    /* GPTQ exporters write a (zero) bias for every quantized linear, so a
     * present bias is always used; a bias the config requires must exist. */
    snprintf(name, sizeof name, "%s.bias", prefix);
    int64_t bshape[1] = {L->rows};
    if (llama_linear_has_bias(c, which) || find_tensor(ld, name, &t)) {
        const char *bwhy = which == GPTQ_LIN_O ? "attention_bias"
                           : which <= GPTQ_LIN_V
                               ? (c->arch == GPTQ_ARCH_QWEN2 ? "Qwen2" : "attention_bias")
                               : "mlp_bias";
        if ((st = load_f32(ld, name, 1, bshape, bwhy, &L->bias)) != GPTQ_OK)
            return st;
    }
    return GPTQ_OK;
}

gptq_status llama_load_weights(const loader *ld, gptq_model *m, int linears)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    char name[192];
    const int ed = gptq_config_embed_dim(c);
    int64_t emb_shape[2] = {c->vocab_size, ed}, vec_shape[1] = {c->hidden_size};
    const char *emb_why = ed != c->hidden_size ? "vocab_size, word_embed_proj_dim"
                                               : "vocab_size, hidden_size";
    if ((st = load_dense(ld, "model.embed_tokens.weight", emb_shape, emb_why, &m->embed,
                         &m->embed_dt)) != GPTQ_OK)
        return st;
    if (ed != c->hidden_size) { /* OPT-350m: projections to and from the model's width */
        int64_t in_shape[2] = {c->hidden_size, ed}, out_shape[2] = {ed, c->hidden_size};
        m->project_in.rows = c->hidden_size, m->project_in.cols = ed;
        m->project_out.rows = ed, m->project_out.cols = c->hidden_size;
        if ((st = load_dense(ld, "model.project_in.weight", in_shape,
                             "hidden_size, word_embed_proj_dim", &m->project_in.W,
                             &m->project_in.wt)) ||
            (st = load_dense(ld, "model.project_out.weight", out_shape,
                             "word_embed_proj_dim, hidden_size", &m->project_out.W,
                             &m->project_out.wt)))
            return st;
    }
    if (gptq_config_embed_norm(c) &&
        ((st = load_f32(ld, "model.embed_norm.weight", 1, vec_shape, "hidden_size",
                        &m->embed_norm)) ||
         (st = load_f32(ld, "model.embed_norm.bias", 1, vec_shape, "hidden_size",
                        &m->embed_norm_b))))
        return st;
    int64_t pos_shape[2] = {gptq_config_pos_rows(c), c->hidden_size};
    if (pos_shape[0] &&
        (st = load_dense(ld, "model.embed_positions.weight", pos_shape,
                         "max_position_embeddings + 2, hidden_size", &m->pos_embed,
                         &m->pos_dt)) != GPTQ_OK)
        return st;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        layer *Ly = &m->layers[l];
        if ((st = gptq_interrupt_check("load")) != GPTQ_OK)
            return st;
        for (int i = 0; i < LLAMA_NORMS; i++) {
            int64_t len[1] = {(int64_t)llama_norm_len(c, i)};
            if (!len[0])
                continue;
            snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, llama_norms[i].path,
                     llama_norms[i].suffix);
            const char *why = llama_norms[i].when == NORM_PER_HEAD ? "head_dim" : "hidden_size";
            if ((st = load_f32(ld, name, 1, len, why, llama_norm_slot(Ly, i))) != GPTQ_OK)
                return st;
        }
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            linear *L = &Ly->lin[w];
            gptq_model_linear_shape(m, (gptq_linear_id)w, &L->rows, &L->cols);
            if (linears && gptq_config_has_linear(c, w) && (st = load_linear(ld, m, l, (gptq_linear_id)w)) != GPTQ_OK)
                return st;
        }
    }
    if ((!c->no_final_norm &&
         (st = load_f32(ld, "model.norm.weight", 1, vec_shape, "hidden_size", &m->norm))) ||
        (gptq_config_layernorm(c) && !c->no_final_norm &&
         (st = load_f32(ld, "model.norm.bias", 1, vec_shape, "hidden_size", &m->norm_b))))
        return st;
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
        m->head_dt = m->embed_dt;
        return GPTQ_OK;
    }
    src_tensor t;
    if (!find_tensor(ld, "lm_head.weight", &t))
        return gptq_fail(GPTQ_ERR_NOTFOUND,
                         "%s: tensor 'lm_head.weight' is missing and config.json has "
                         "tie_word_embeddings false",
                         ld->dir);
    return load_dense(ld, "lm_head.weight", emb_shape, emb_why, &m->lm_head,
                      &m->head_dt);
}

gptq_model *llama_model_new(const gptq_model_config *cfg)
{
    gptq_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    m->be = gptq_backend_cpu();
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layers);
    /* [short | long]: the second half for calls past the original context */
    m->inv_freq = malloc((size_t)cfg->head_dim / 2 * 3 * sizeof *m->inv_freq);
    if (!m->layers || !m->inv_freq) {
        gptq_model_free(m);
        return NULL;
    }
    gptq_config_rope_inv_freq(cfg, m->inv_freq);
    gptq_config_rope_inv_freq_long(cfg, m->inv_freq + cfg->head_dim / 2);
    gptq_config_rope_inv_freq_local(cfg, m->inv_freq + cfg->head_dim);
    m->rope_freq = m->inv_freq;
    if (gptq_config_alibi(cfg)) {
        if (!(m->alibi_host = malloc((size_t)cfg->num_attention_heads * sizeof(float)))) {
            gptq_model_free(m);
            return NULL;
        }
        gptq_config_alibi_slopes(cfg, m->alibi_host);
        m->alibi = m->alibi_host;
    }
    return m;
}

/* Move a new, still empty model n onto backend be: its weights will be be
 * memory and its rotary frequencies are uploaded now. */
gptq_status llama_model_set_backend(gptq_model *n, const gptq_backend *be)
{
    if (be == gptq_backend_cpu())
        return GPTQ_OK;
    size_t bytes = (size_t)n->cfg.head_dim / 2 * 3 * sizeof(float);
    n->be = be;
    n->device = 1;
    if (!(n->rope_freq = be->alloc(be, bytes))) {
        n->rope_freq = n->inv_freq;
        return gptq_backend_alloc_fail(be, "rope frequencies (%zu bytes)", bytes);
    }
    gptq_status st = be->upload(be, n->rope_freq, n->inv_freq, bytes);
    if (st || !n->alibi_host)
        return st;
    bytes = (size_t)n->cfg.num_attention_heads * sizeof(float);
    if (!(n->alibi = be->alloc(be, bytes))) {
        n->alibi = n->alibi_host;
        return gptq_backend_alloc_fail(be, "ALiBi slopes (%zu bytes)", bytes);
    }
    return be->upload(be, n->alibi, n->alibi_host, bytes);
}

/* Load config and weights of folder `dir`; with `streaming`, the decoder
 * linears stay in the files (kept open in the model) until
 * gptq_model_layer_ensure loads them. */
/* Load the config and weights of source `src`; with `streaming`, the
 * decoder linears stay in the source (which the model then owns: *srcp is
 * NULLed) until gptq_model_layer_ensure loads them. */
static gptq_status model_open(gptq_model_source **srcp, int streaming, gptq_model **out)
{
    gptq_status st;
    gptq_model_source *src = *srcp;
    loader ld = {.dir = gptq_source_label(src), .src = src};
    *out = NULL;
    gptq_model *m = llama_model_new(gptq_source_config(src));
    if (!m)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", ld.dir);
    if ((st = llama_load_weights(&ld, m, !streaming)) != GPTQ_OK)
        goto fail;
    if (streaming) {
        m->src = src;
        *srcp = NULL;
    } else if ((st = llama_table_build(m)) != GPTQ_OK) {
        goto fail;
    }
    *out = m;
    return GPTQ_OK;
fail:
    gptq_model_free(m);
    return st;
}

gptq_status gptq_model_load_source(const gptq_model_source *src, gptq_model **out)
{
    gptq_model_source *s = (gptq_model_source *)src; /* not streaming: only read */
    return model_open(&s, 0, out);
}

static gptq_status open_path(const char *path, int streaming, gptq_model **out)
{
    gptq_model_source *src = NULL;
    *out = NULL;
    gptq_status st = gptq_source_open(path, &src);
    if (!st)
        st = model_open(&src, streaming, out);
    gptq_source_free(src);
    return st;
}

gptq_status gptq_model_load(const char *path, gptq_model **out)
{
    return open_path(path, 0, out);
}

gptq_status gptq_model_open_streaming(const char *path, gptq_model **out)
{
    return open_path(path, 1, out);
}

int gptq_model_is_streaming(const gptq_model *m)
{
    return m->src != NULL;
}

gptq_status gptq_model_layer_ensure(gptq_model *m, int layer)
{
    if (!m->src)
        return GPTQ_OK;
    if (layer < 0 || layer >= m->cfg.num_hidden_layers)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d: the model has %d layers", layer,
                         m->cfg.num_hidden_layers);
    loader ld = {.dir = gptq_source_label(m->src), .src = m->src};
    for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
        linear *L = &m->layers[layer].lin[w];
        if (L->W || L->packed || !gptq_config_has_linear(&m->cfg, w))
            continue;
        /* every tensor copied drops its file pages (copy_stored, load_f32),
         * so a streamed model keeps only the current layer resident */
        gptq_status st = load_linear(&ld, m, layer, (gptq_linear_id)w);
        if (st != GPTQ_OK)
            return st;
    }
    return GPTQ_OK;
}

void llama_table_free(gptq_model *m)
{
    for (size_t i = 0; i < m->n_table; i++)
        free((char *)m->table[i].name);
    free(m->table);
    m->table = NULL;
    m->n_table = 0;
}

void gptq_model_free(gptq_model *m)
{
    if (!m)
        return;
    if (m->layers && !m->views)
        for (int l = 0; l < m->cfg.num_hidden_layers; l++)
            llama_layer_clear(m, &m->layers[l]);
    for (int l = 0; m->layers && l < m->cfg.num_hidden_layers; l++)
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) /* always the model's own, views or not */
            free(m->layers[l].lin[w].blocks);
    if (!m->views) {
        if (m->lm_head != m->embed)
            llama_buf_free(m, m->lm_head);
        llama_buf_free(m, m->embed);
        llama_buf_free(m, m->norm);
        llama_buf_free(m, m->norm_b);
        llama_buf_free(m, m->pos_embed);
        llama_buf_free(m, m->embed_norm);
        llama_buf_free(m, m->embed_norm_b);
        llama_buf_free(m, m->project_in.W);
        llama_buf_free(m, m->project_out.W);
    }
    if (m->alibi != m->alibi_host)
        m->be->free(m->be, m->alibi); /* always the model's own, as rope_freq */
    free(m->alibi_host);
    llama_head_grid_clear(m); /* always the model's own, views or not */
    if (m->rope_freq != m->inv_freq)
        m->be->free(m->be, m->rope_freq); /* always the model's own, views or not */
    llama_table_free(m);
    gptq_source_free(m->src);
    free(m->inv_freq);
    free(m->layers);
    free(m);
}


gptq_status gptq_model_from_tensors(const char *config_json, const gptq_model_tensor *table,
                                    size_t n, gptq_model **out)
{
    return gptq_model_from_tensors_on(gptq_backend_cpu(), config_json, table, n, out);
}

gptq_status gptq_model_from_tensors_on(const gptq_backend *be, const char *config_json,
                                       const gptq_model_tensor *table, size_t n,
                                       gptq_model **out)
{
    gptq_status st;
    gptq_model_config cfg;
    gptq_model *m = NULL;
    *out = NULL;
    if (!config_json)
        return gptq_fail(GPTQ_ERR_ARG, "from_tensors: config_json is NULL");
    if ((st = gptq_config_parse(config_json, strlen(config_json), "mapped config.json", &cfg)) !=
        GPTQ_OK)
        return st;
    if (!(m = llama_model_new(&cfg)))
        return gptq_fail(GPTQ_ERR_NOMEM, "from_tensors: out of memory");
    m->views = 1;
    loader ld = {.dir = "mapped model", .table = table, .n_table = n};
    if (be && be != gptq_backend_cpu())
        ld.dev = be;
    if (!be || (st = llama_model_set_backend(m, be)) != GPTQ_OK || (st = llama_load_weights(&ld, m, 1)) != GPTQ_OK ||
        (st = llama_table_build(m)) != GPTQ_OK) {
        if (!be)
            st = gptq_fail(GPTQ_ERR_ARG, "from_tensors_on: backend is NULL");
        gptq_model_free(m);
        return st;
    }
    *out = m;
    return GPTQ_OK;
}
