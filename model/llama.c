/* model/llama.c: the Llama-family decoder: loading an HF folder into
 * float32 (or packed) linears, the forward pass with a KV cache, and the
 * per-layer entry points the calibration pipeline drives.
 *
 * The forward follows transformers' LlamaModel step for step: embed; per
 * layer RMSNorm -> q, k, v (+bias) -> RoPE (rotate_half) -> causal GQA
 * attention -> o -> residual add -> RMSNorm -> gate, up -> silu(gate)*up ->
 * down -> residual add; final RMSNorm; lm_head. All compute goes through the
 * backend table (kernels/backend.h). */
#include "model/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/interrupt.h"
#include "kernels/backend.h"
#include "model/source.h"

typedef struct linear {
    int rows, cols; /* out, in */
    float *W;       /* [rows, cols], NULL when packed */
    gptq_packed P;  /* valid when packed */
    int packed;
    float *bias; /* [rows] or NULL */
} linear;

typedef struct layer {
    float *attn_norm; /* input_layernorm [hidden] */
    float *mlp_norm;  /* post_attention_layernorm [hidden] */
    linear lin[GPTQ_LIN_COUNT];
} layer;

struct gptq_model {
    gptq_model_config cfg;
    const gptq_backend *be;   /* holds every weight buffer and runs the forward */
    int device;               /* be is not the CPU backend: weights are be memory,
                                 freed with be->free; packed arrays are never
                                 `owned` (gptq_packed_free would free() them) */
    float *rope_freq;         /* inv_freq in be memory (== inv_freq on the CPU) */
    float *embed;             /* [vocab, hidden] */
    float *norm;              /* [hidden] */
    float *lm_head;           /* [vocab, hidden]; == embed when tied */
    float *inv_freq;          /* [head_dim / 2] */
    layer *layers;            /* [num_hidden_layers] */
    int views;                /* weights are borrowed (copy_with, from_tensors): never freed
                                 or replaced here */
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
    float *k, *v; /* [layers][slots][cap][kv_dim] */
    int *len;     /* [slots] */
};

static gptq_status table_build(gptq_model *m);

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

void gptq_model_linear_shape(const gptq_model *m, gptq_linear_id which, int *rows, int *cols)
{
    const gptq_model_config *c = &m->cfg;
    int q_dim = c->num_attention_heads * c->head_dim, kv_dim = c->num_key_value_heads * c->head_dim;
    int r = 0, k = 0;
    switch (which) {
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

static int linear_has_bias(const gptq_model_config *c, gptq_linear_id which)
{
    if (which <= GPTQ_LIN_V)
        return gptq_config_qkv_bias(c);
    if (which == GPTQ_LIN_O)
        return gptq_config_o_bias(c);
    return gptq_config_mlp_bias(c);
}

/* Free a buffer of m's weights (owned models only). */
static void buf_free(const gptq_model *m, void *p)
{
    if (m->device)
        m->be->free(p);
    else
        free(p);
}

/* Free a linear's weights (owned models only; a view's P has owned = 0). */
static void linear_clear(const gptq_model *m, linear *L)
{
    buf_free(m, L->W);
    L->W = NULL;
    if (L->packed && m->device) {
        m->be->free(L->P.qweight), m->be->free(L->P.qzeros);
        m->be->free(L->P.scales), m->be->free(L->P.g_idx);
    } else if (L->packed) {
        gptq_packed_free(&L->P);
    }
    memset(&L->P, 0, sizeof L->P);
    L->packed = 0;
}

/* Free a layer's buffers (owned models only) and leave it empty. */
static void layer_clear(const gptq_model *m, layer *Ly)
{
    buf_free(m, Ly->attn_norm);
    buf_free(m, Ly->mlp_norm);
    Ly->attn_norm = Ly->mlp_norm = NULL;
    for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
        linear_clear(m, &Ly->lin[w]);
        buf_free(m, Ly->lin[w].bias);
        Ly->lin[w].bias = NULL;
    }
}

/* ---- loading ------------------------------------------------------------------ */

/* Where tensors come from: a model source (an HF folder's safetensors or a
 * GGUF file: copied and converted to float32), or a caller's table
 * (from_tensors: borrowed as they are, so they must already be float32 /
 * I32 / F16 and aligned). */
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
    if ((st = gptq_source_read_f32(ld->src, &t, data)) != GPTQ_OK) {
        free(data);
        return st;
    }
    *out = data;
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
    void *data = malloc(t.bytes ? t.bytes : 1);
    if (!data)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate %zu bytes for '%s'", ld->dir, t.bytes,
                         name);
    if ((st = gptq_source_read_raw(ld->src, &t, data)) != GPTQ_OK) {
        free(data);
        return st;
    }
    *out = data;
    return GPTQ_OK;
}

/* A GPTQ v1 linear (used where "<path>.weight" is absent and
 * "<path>.qweight" present): qweight [cols*bits/32, rows] I32, qzeros
 * [groups, rows*bits/32] I32, scales [groups, rows] F16, g_idx [cols] I32
 * (optional in files: c / group_size when absent, as old AutoGPTQ
 * checkpoints without act-order imply). */
static gptq_status load_packed(const loader *ld, const gptq_model_config *c, const char *prefix,
                               int rows, int cols, gptq_packed *P)
{
    gptq_status st;
    char name[256];
    src_tensor qw, sc;
    memset(P, 0, sizeof *P);
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
        const int32_t *g_idx = P->g_idx;
        int32_t *host = NULL;
        if (ld->dev) { /* the kernels index scales with g_idx: check it here */
            if (!(host = malloc((size_t)cols * sizeof *host))) {
                st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", ld->dir);
                goto fail;
            }
            if ((st = ld->dev->download(host, P->g_idx, (size_t)cols * sizeof *host)) != GPTQ_OK) {
                free(host);
                goto fail;
            }
            g_idx = host;
        }
        int bad = -1;
        for (int i = 0; i < cols && bad < 0; i++)
            if (g_idx[i] < 0 || g_idx[i] >= groups)
                bad = i;
        int32_t bad_value = bad >= 0 ? g_idx[bad] : 0;
        free(host);
        if (bad >= 0) {
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '%s'[%d] = %d is not a group in [0, %d)",
                           ld->dir, name, bad, bad_value, groups);
            goto fail;
        }
    } else {
        if (!(P->g_idx = malloc((size_t)cols * sizeof *P->g_idx))) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", ld->dir);
            goto fail;
        }
        for (int i = 0; i < cols; i++)
            P->g_idx[i] = gs > 0 ? i / gs : 0;
    }
    return GPTQ_OK;
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
    snprintf(prefix, sizeof prefix, "model.layers.%d.%s", l, lin_paths[which]);
    snprintf(why, sizeof why, "%s",
             which <= GPTQ_LIN_O ? "hidden_size, heads, head_dim"
                                 : "hidden_size, intermediate_size");
    snprintf(name, sizeof name, "%s.weight", prefix);
    int64_t shape[2] = {L->rows, L->cols};
    src_tensor t;
    char qname[256];
    snprintf(qname, sizeof qname, "%s.qweight", prefix);
    if (find_tensor(ld, name, &t) || !find_tensor(ld, qname, &t)) {
        if ((st = load_f32(ld, name, 2, shape, why, &L->W)) != GPTQ_OK)
            return st;
    } else {
        if ((st = load_packed(ld, c, prefix, L->rows, L->cols, &L->P)) != GPTQ_OK)
            return st;
        L->packed = 1;
    }
    /* GPTQ exporters write a (zero) bias for every quantized linear, so a
     * present bias is always used; a bias the config requires must exist. */
    snprintf(name, sizeof name, "%s.bias", prefix);
    int64_t bshape[1] = {L->rows};
    if (linear_has_bias(c, which) || find_tensor(ld, name, &t)) {
        const char *bwhy = which == GPTQ_LIN_O ? "attention_bias"
                           : which <= GPTQ_LIN_V
                               ? (c->arch == GPTQ_ARCH_QWEN2 ? "Qwen2" : "attention_bias")
                               : "mlp_bias";
        if ((st = load_f32(ld, name, 1, bshape, bwhy, &L->bias)) != GPTQ_OK)
            return st;
    }
    return GPTQ_OK;
}

static gptq_status load_weights(const loader *ld, gptq_model *m, int linears)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    char name[192];
    int64_t emb_shape[2] = {c->vocab_size, c->hidden_size}, vec_shape[1] = {c->hidden_size};
    if ((st = load_f32(ld, "model.embed_tokens.weight", 2, emb_shape, "vocab_size, hidden_size",
                       &m->embed)) != GPTQ_OK)
        return st;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        layer *Ly = &m->layers[l];
        if ((st = gptq_interrupt_check("load")) != GPTQ_OK)
            return st;
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if ((st = load_f32(ld, name, 1, vec_shape, "hidden_size", &Ly->attn_norm)) != GPTQ_OK)
            return st;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((st = load_f32(ld, name, 1, vec_shape, "hidden_size", &Ly->mlp_norm)) != GPTQ_OK)
            return st;
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            linear *L = &Ly->lin[w];
            gptq_model_linear_shape(m, (gptq_linear_id)w, &L->rows, &L->cols);
            if (linears && (st = load_linear(ld, m, l, (gptq_linear_id)w)) != GPTQ_OK)
                return st;
        }
    }
    if ((st = load_f32(ld, "model.norm.weight", 1, vec_shape, "hidden_size", &m->norm)) != GPTQ_OK)
        return st;
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
        return GPTQ_OK;
    }
    src_tensor t;
    if (!find_tensor(ld, "lm_head.weight", &t))
        return gptq_fail(GPTQ_ERR_NOTFOUND,
                         "%s: tensor 'lm_head.weight' is missing and config.json has "
                         "tie_word_embeddings false",
                         ld->dir);
    return load_f32(ld, "lm_head.weight", 2, emb_shape, "vocab_size, hidden_size", &m->lm_head);
}

static gptq_model *model_new(const gptq_model_config *cfg)
{
    gptq_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    m->be = gptq_backend_cpu();
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layers);
    m->inv_freq = malloc((size_t)(cfg->head_dim / 2) * sizeof *m->inv_freq);
    if (!m->layers || !m->inv_freq) {
        gptq_model_free(m);
        return NULL;
    }
    gptq_config_rope_inv_freq(cfg, m->inv_freq);
    m->rope_freq = m->inv_freq;
    return m;
}

/* Move a new, still empty model n onto backend be: its weights will be be
 * memory and its rotary frequencies are uploaded now. */
static gptq_status model_set_backend(gptq_model *n, const gptq_backend *be)
{
    if (be == gptq_backend_cpu())
        return GPTQ_OK;
    size_t bytes = (size_t)(n->cfg.head_dim / 2) * sizeof(float);
    n->be = be;
    n->device = 1;
    if (!(n->rope_freq = be->alloc(bytes))) {
        n->rope_freq = n->inv_freq;
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate %zu bytes", be->name, bytes);
    }
    return be->upload(n->rope_freq, n->inv_freq, bytes);
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
    gptq_model *m = model_new(gptq_source_config(src));
    if (!m)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", ld.dir);
    if ((st = load_weights(&ld, m, !streaming)) != GPTQ_OK)
        goto fail;
    if (streaming) {
        m->src = src;
        *srcp = NULL;
    } else if ((st = table_build(m)) != GPTQ_OK) {
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

gptq_status gptq_model_load(const char *path, gptq_model **out)
{
    gptq_model_source *src = NULL;
    *out = NULL;
    gptq_status st = gptq_source_open(path, &src);
    if (!st)
        st = model_open(&src, 0, out);
    gptq_source_free(src);
    return st;
}

gptq_status gptq_model_open_streaming(const char *path, gptq_model **out)
{
    gptq_model_source *src = NULL;
    *out = NULL;
    gptq_status st = gptq_source_open(path, &src);
    if (!st)
        st = model_open(&src, 1, out);
    gptq_source_free(src);
    return st;
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
    char name[256];
    for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
        linear *L = &m->layers[layer].lin[w];
        if (L->W || L->packed)
            continue;
        gptq_status st = load_linear(&ld, m, layer, (gptq_linear_id)w);
        if (st != GPTQ_OK)
            return st;
        /* Done with these file pages: drop them so that streaming a model
         * keeps only the current layer resident. */
        const char *suffix[] = {".weight", ".qweight", ".qzeros", ".scales", ".g_idx", ".bias"};
        for (int k = 0; k < 6; k++) {
            src_tensor t;
            snprintf(name, sizeof name, "model.layers.%d.%s%s", layer, lin_paths[w], suffix[k]);
            if (gptq_source_find(m->src, name, &t))
                gptq_source_release(m->src, &t);
        }
    }
    return GPTQ_OK;
}

static void table_free(gptq_model *m)
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
            layer_clear(m, &m->layers[l]);
    if (!m->views) {
        if (m->lm_head != m->embed)
            buf_free(m, m->lm_head);
        buf_free(m, m->embed);
        buf_free(m, m->norm);
    }
    if (m->rope_freq != m->inv_freq)
        m->be->free(m->rope_freq); /* always the model's own, views or not */
    table_free(m);
    gptq_source_free(m->src);
    free(m->inv_freq);
    free(m->layers);
    free(m);
}

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

static gptq_status table_visit(void *user, const char *name, const float *data, int ndim,
                               const int64_t *shape, const gptq_packed *P)
{
    table_builder *b = user;
    gptq_status st;
    if (!P)
        return table_add(b, name, "", GPTQ_DT_F32, ndim, shape[0], ndim > 1 ? shape[1] : 0, data);
    if ((st = table_add(b, name, ".qweight", GPTQ_DT_I32, 2, (int64_t)P->cols * P->bits / 32,
                        P->rows, P->qweight)) != GPTQ_OK ||
        (st = table_add(b, name, ".qzeros", GPTQ_DT_I32, 2, P->groups,
                        (int64_t)P->rows * P->bits / 32, P->qzeros)) != GPTQ_OK ||
        (st = table_add(b, name, ".scales", GPTQ_DT_F16, 2, P->groups, P->rows, P->scales)) !=
            GPTQ_OK)
        return st;
    return table_add(b, name, ".g_idx", GPTQ_DT_I32, 1, P->cols, 0, P->g_idx);
}

/* (Re)build m->table from the current weights; empty on failure. */
static gptq_status table_build(gptq_model *m)
{
    if (m->src) /* streaming: linears come and go; no shareable table */
        return GPTQ_OK;
    for (int l = 0; l < m->cfg.num_hidden_layers; l++)
        for (int w = 0; w < GPTQ_LIN_COUNT; w++)
            if (!m->layers[l].lin[w].W && !m->layers[l].lin[w].packed) {
                table_free(m); /* layers still to upload (to_backend NO_LAYERS) */
                return GPTQ_OK;
            }
    table_builder b = {0};
    gptq_status st = gptq_model_foreach_tensor(m, table_visit, &b);
    if (st != GPTQ_OK) {
        for (size_t i = 0; i < b.n; i++)
            free((char *)b.t[i].name);
        free(b.t);
        table_free(m); /* never leave entries pointing at replaced weights */
        return st;
    }
    table_free(m);
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

static void copy_packed(copier *c, const gptq_packed *src, gptq_packed *dst)
{
    *dst = *src;
    dst->owned = !c->alloc;
    size_t words = (size_t)src->cols * src->bits / 32 * src->rows;
    size_t zwords = (size_t)src->groups * src->rows * src->bits / 32;
    dst->qweight = copy_bytes(c, src->qweight, words * sizeof(int32_t));
    dst->qzeros = copy_bytes(c, src->qzeros, zwords * sizeof(int32_t));
    dst->scales = copy_bytes(c, src->scales, (size_t)src->groups * src->rows * sizeof(uint16_t));
    dst->g_idx = copy_bytes(c, src->g_idx, (size_t)src->cols * sizeof(int32_t));
}

static gptq_status model_copy(const gptq_model *m, copier *cp, gptq_model **out)
{
    const gptq_model_config *c = &m->cfg;
    size_t hidden = (size_t)c->hidden_size, emb = (size_t)c->vocab_size * hidden * sizeof(float);
    gptq_model *n = model_new(c);
    *out = NULL;
    if (!n)
        return gptq_fail(GPTQ_ERR_NOMEM, "cannot allocate a copy of the model");
    n->views = cp->alloc != NULL;
    n->embed = copy_bytes(cp, m->embed, emb);
    n->norm = copy_bytes(cp, m->norm, hidden * sizeof(float));
    n->lm_head = m->lm_head == m->embed ? n->embed : copy_bytes(cp, m->lm_head, emb);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const layer *src = &m->layers[l];
        layer *dst = &n->layers[l];
        dst->attn_norm = copy_bytes(cp, src->attn_norm, hidden * sizeof(float));
        dst->mlp_norm = copy_bytes(cp, src->mlp_norm, hidden * sizeof(float));
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            const linear *sl = &src->lin[w];
            linear *dl = &dst->lin[w];
            dl->rows = sl->rows, dl->cols = sl->cols, dl->packed = sl->packed;
            dl->bias = copy_bytes(cp, sl->bias, (size_t)sl->rows * sizeof(float));
            if (sl->packed)
                copy_packed(cp, &sl->P, &dl->P);
            else
                dl->W = copy_bytes(cp, sl->W, (size_t)sl->rows * sl->cols * sizeof(float));
        }
    }
    gptq_status st = cp->failed ? gptq_fail(GPTQ_ERR_NOMEM, "cannot allocate a copy of the model")
                                : table_build(n);
    if (st != GPTQ_OK) {
        gptq_model_free(n); /* a view model frees none of the allocator's buffers */
        return st;
    }
    *out = n;
    return GPTQ_OK;
}

static gptq_status refuse_device(const gptq_model *m, const char *what)
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
    gptq_status st = refuse_device(m, "clone");
    return st != GPTQ_OK ? st : model_copy(m, &cp, out);
}

gptq_status gptq_model_copy_with(const gptq_model *m, gptq_model_alloc alloc, void *ctx,
                                 gptq_model **out)
{
    *out = NULL;
    if (!alloc)
        return gptq_fail(GPTQ_ERR_ARG, "copy_with: alloc must not be NULL");
    gptq_status st = refuse_device(m, "copy_with");
    if (st != GPTQ_OK)
        return st;
    copier cp = {.alloc = alloc, .ctx = ctx};
    return model_copy(m, &cp, out);
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
    if (!(m = model_new(&cfg)))
        return gptq_fail(GPTQ_ERR_NOMEM, "from_tensors: out of memory");
    m->views = 1;
    loader ld = {.dir = "mapped model", .table = table, .n_table = n};
    if (be && be != gptq_backend_cpu())
        ld.dev = be;
    if (!be || (st = model_set_backend(m, be)) != GPTQ_OK || (st = load_weights(&ld, m, 1)) != GPTQ_OK ||
        (st = table_build(m)) != GPTQ_OK) {
        if (!be)
            st = gptq_fail(GPTQ_ERR_ARG, "from_tensors_on: backend is NULL");
        gptq_model_free(m);
        return st;
    }
    *out = m;
    return GPTQ_OK;
}

/* ---- backends ------------------------------------------------------------------------------ */

/* Where uploaded buffers come from: alloc(ctx) (borrowed) or be->alloc. The
 * first failure sticks and later calls return NULL. */
typedef struct uploader {
    const gptq_backend *be;
    gptq_model_alloc alloc;
    void *ctx;
    gptq_status st;
} uploader;

static void *up_bytes(uploader *u, const void *src, size_t bytes, const char *what)
{
    if (!src || u->st != GPTQ_OK)
        return NULL;
    size_t n = bytes ? bytes : 1;
    void *p = u->alloc ? u->alloc(u->ctx, n) : u->be->alloc(n);
    if (!p) {
        u->st = gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate %zu bytes of %s memory for %s",
                          u->be->name, bytes, u->be->name, what);
        return NULL;
    }
    if ((u->st = u->be->upload(p, src, bytes)) != GPTQ_OK) {
        gptq_fail_context(u->st, "%s", what);
        if (!u->alloc)
            u->be->free(p);
        return NULL;
    }
    return p;
}

/* Upload the host packed linear src into be memory as *dst (never `owned`:
 * the model frees the arrays with be->free). alloc NULL: be->alloc. */
static gptq_status packed_upload(const gptq_backend *be, gptq_model_alloc alloc, void *ctx,
                                 const gptq_packed *src, gptq_packed *dst)
{
    uploader u = {.be = be, .alloc = alloc, .ctx = ctx};
    size_t words = (size_t)src->cols * src->bits / 32 * src->rows;
    size_t zwords = (size_t)src->groups * src->rows * src->bits / 32;
    *dst = *src;
    /* the CPU backend's memory is malloc's: gptq_packed_free may free it */
    dst->owned = !alloc && be == gptq_backend_cpu();
    dst->qweight = up_bytes(&u, src->qweight, words * sizeof(int32_t), "qweight");
    dst->qzeros = up_bytes(&u, src->qzeros, zwords * sizeof(int32_t), "qzeros");
    dst->scales = up_bytes(&u, src->scales, (size_t)src->groups * src->rows * sizeof(uint16_t),
                           "scales");
    dst->g_idx = up_bytes(&u, src->g_idx, (size_t)src->cols * sizeof(int32_t), "g_idx");
    if (u.st != GPTQ_OK && !alloc) {
        be->free(dst->qweight), be->free(dst->qzeros), be->free(dst->scales), be->free(dst->g_idx);
        memset(dst, 0, sizeof *dst);
    }
    return u.st;
}

/* A host copy (owned) of the be-resident packed linear src. */
static gptq_status packed_download(const gptq_backend *be, const gptq_packed *src,
                                   gptq_packed *dst)
{
    gptq_status st = GPTQ_OK;
    size_t words = (size_t)src->cols * src->bits / 32 * src->rows;
    size_t zwords = (size_t)src->groups * src->rows * src->bits / 32;
    size_t sbytes = (size_t)src->groups * src->rows * sizeof(uint16_t);
    *dst = *src;
    dst->owned = 1;
    dst->qweight = malloc(words * sizeof(int32_t) + 1);
    dst->qzeros = malloc(zwords * sizeof(int32_t) + 1);
    dst->scales = malloc(sbytes + 1);
    dst->g_idx = malloc((size_t)src->cols * sizeof(int32_t) + 1);
    if (!dst->qweight || !dst->qzeros || !dst->scales || !dst->g_idx)
        st = gptq_fail(GPTQ_ERR_NOMEM, "cannot allocate a host copy of a packed linear");
    if (st == GPTQ_OK)
        st = be->download(dst->qweight, src->qweight, words * sizeof(int32_t));
    if (st == GPTQ_OK)
        st = be->download(dst->qzeros, src->qzeros, zwords * sizeof(int32_t));
    if (st == GPTQ_OK)
        st = be->download(dst->scales, src->scales, sbytes);
    if (st == GPTQ_OK)
        st = be->download(dst->g_idx, src->g_idx, (size_t)src->cols * sizeof(int32_t));
    if (st != GPTQ_OK)
        gptq_packed_free(dst);
    return st;
}

/* Upload the host layer src into dst (empty) through u. */
static void upload_layer(uploader *u, const gptq_model_config *c, const layer *src, layer *dst,
                         int l)
{
    size_t hidden = (size_t)c->hidden_size;
    char what[96];
    snprintf(what, sizeof what, "layer %d norms", l);
    dst->attn_norm = up_bytes(u, src->attn_norm, hidden * sizeof(float), what);
    dst->mlp_norm = up_bytes(u, src->mlp_norm, hidden * sizeof(float), what);
    for (int w = 0; w < GPTQ_LIN_COUNT && u->st == GPTQ_OK; w++) {
        const linear *sl = &src->lin[w];
        linear *dl = &dst->lin[w];
        snprintf(what, sizeof what, "layer %d %s", l, lin_names[w]);
        dl->rows = sl->rows, dl->cols = sl->cols;
        if (!sl->packed && !sl->W) {
            u->st = gptq_fail(GPTQ_ERR_ARG, "%s is not loaded (streaming model): call "
                              "gptq_model_layer_ensure first", what);
            break;
        }
        dl->bias = up_bytes(u, sl->bias, (size_t)sl->rows * sizeof(float), what);
        if (sl->packed) {
            if (u->st == GPTQ_OK &&
                (u->st = packed_upload(u->be, u->alloc, u->ctx, &sl->P, &dl->P)) == GPTQ_OK)
                dl->packed = 1;
            else if (u->st != GPTQ_OK)
                gptq_fail_context(u->st, "%s", what);
        } else {
            dl->W = up_bytes(u, sl->W, (size_t)sl->rows * sl->cols * sizeof(float), what);
        }
    }
}

const gptq_backend *gptq_model_backend(const gptq_model *m)
{
    return m->be;
}

gptq_status gptq_model_to_backend(const gptq_model *m, const gptq_backend *be,
                                  gptq_model_alloc alloc, void *ctx, int flags, gptq_model **out)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    *out = NULL;
    if (!be)
        return gptq_fail(GPTQ_ERR_ARG, "to_backend: backend is NULL");
    if ((st = refuse_device(m, "to_backend")) != GPTQ_OK)
        return st;
    gptq_model *n = model_new(c);
    if (!n)
        return gptq_fail(GPTQ_ERR_NOMEM, "to_backend: out of memory");
    if ((st = model_set_backend(n, be)) != GPTQ_OK) {
        gptq_model_free(n);
        return st;
    }
    n->views = alloc != NULL;
    size_t emb = (size_t)c->vocab_size * c->hidden_size * sizeof(float);
    uploader u = {.be = be, .alloc = alloc, .ctx = ctx};
    n->embed = up_bytes(&u, m->embed, emb, "embed_tokens");
    if (!(flags & GPTQ_TO_BACKEND_NO_HEAD)) {
        n->norm = up_bytes(&u, m->norm, (size_t)c->hidden_size * sizeof(float), "norm");
        n->lm_head = m->lm_head == m->embed ? n->embed : up_bytes(&u, m->lm_head, emb, "lm_head");
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
        st = table_build(n);
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
    gptq_status st = refuse_device(src, "layer_upload source");
    if (st != GPTQ_OK)
        return st;
    layer_clear(dev, &dev->layers[layer]);
    uploader u = {.be = dev->be};
    upload_layer(&u, c, &src->layers[layer], &dev->layers[layer], layer);
    if (u.st != GPTQ_OK) {
        layer_clear(dev, &dev->layers[layer]);
        table_free(dev);
        return u.st;
    }
    return table_build(dev);
}

void gptq_model_layer_drop(gptq_model *dev, int layer)
{
    if (dev->views || layer < 0 || layer >= dev->cfg.num_hidden_layers)
        return;
    layer_clear(dev, &dev->layers[layer]);
    table_free(dev); /* a model with an empty layer has no shareable table */
}

const float *gptq_model_linear_weight(const gptq_model *m, int layer, gptq_linear_id which)
{
    if (layer < 0 || layer >= m->cfg.num_hidden_layers || (unsigned)which >= GPTQ_LIN_COUNT)
        return NULL;
    const linear *L = &m->layers[layer].lin[which];
    return L->packed ? NULL : L->W;
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

static size_t packed_bytes(const gptq_packed *P)
{
    return (size_t)P->cols * P->bits / 32 * P->rows * 4 +
           (size_t)P->groups * P->rows * P->bits / 32 * 4 + (size_t)P->groups * P->rows * 2 +
           (size_t)P->cols * 4;
}

int64_t gptq_model_params(const gptq_model *m)
{
    const gptq_model_config *c = &m->cfg;
    int64_t emb = (int64_t)c->vocab_size * c->hidden_size;
    int64_t n = emb + c->hidden_size + (c->tie_word_embeddings ? 0 : emb);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        n += 2 * (int64_t)c->hidden_size;
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
    size_t emb = (size_t)c->vocab_size * c->hidden_size;
    size_t floats = emb + (size_t)c->hidden_size + (m->lm_head != m->embed ? emb : 0);
    size_t bytes = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        floats += 2 * (size_t)c->hidden_size;
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            const linear *L = &m->layers[l].lin[w];
            floats += L->bias ? (size_t)L->rows : 0;
            if (L->packed)
                bytes += packed_bytes(&L->P);
            else
                floats += (size_t)L->rows * L->cols;
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
    return GPTQ_OK;
}

const gptq_packed *gptq_model_linear_packed(const gptq_model *m, int layer, gptq_linear_id which)
{
    if (check_linear_arg(m, layer, which) != GPTQ_OK)
        return NULL;
    const linear *L = &m->layers[layer].lin[which];
    return L->packed ? &L->P : NULL;
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
        gptq_packed h;
        if ((st = packed_download(m->be, &L->P, &h)) != GPTQ_OK)
            return gptq_fail_context(st, "layer %d %s", layer, lin_names[which]);
        st = gptq_packed_dequantize(&h, W);
        gptq_packed_free(&h);
        if (st != GPTQ_OK)
            return gptq_fail_context(st, "layer %d %s", layer, lin_names[which]);
        return GPTQ_OK;
    }
    if (L->packed) {
        if ((st = gptq_packed_dequantize(&L->P, W)) != GPTQ_OK)
            return gptq_fail_context(st, "layer %d %s", layer, lin_names[which]);
        return GPTQ_OK;
    }
    if (!L->W)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d %s is not loaded (streaming model): call "
                         "gptq_model_layer_ensure first", layer, lin_names[which]);
    return m->be->download(W, L->W, (size_t)L->rows * L->cols * sizeof *W);
}

gptq_status gptq_model_set_linear_f32(gptq_model *m, int layer, gptq_linear_id which,
                                      const float *W)
{
    gptq_status st = check_linear_arg(m, layer, which);
    if (st != GPTQ_OK)
        return st;
    if (m->views)
        return gptq_fail(GPTQ_ERR_BUSY,
                         "layer %d %s: the model's weights are borrowed "
                         "(shared or mapped); clone it to change them",
                         layer, lin_names[which]);
    linear *L = &m->layers[layer].lin[which];
    size_t n = (size_t)L->rows * L->cols;
    float *copy = malloc(n * sizeof *copy);
    if (!copy)
        return gptq_fail(GPTQ_ERR_NOMEM, "layer %d %s: cannot allocate [%d, %d]", layer,
                         lin_names[which], L->rows, L->cols);
    memcpy(copy, W, n * sizeof *copy);
    if (m->device) {
        float *d = m->be->alloc(n * sizeof *d);
        if (!d || (st = m->be->upload(d, copy, n * sizeof *d)) != GPTQ_OK) {
            m->be->free(d);
            free(copy);
            return d ? st
                     : gptq_fail(GPTQ_ERR_NOMEM, "layer %d %s: cannot allocate [%d, %d] on %s",
                                 layer, lin_names[which], L->rows, L->cols, m->be->name);
        }
        free(copy);
        copy = d;
    }
    linear_clear(m, L);
    L->W = copy;
    return table_build(m);
}

gptq_status gptq_model_set_linear_packed(gptq_model *m, int layer, gptq_linear_id which,
                                         gptq_packed *P)
{
    gptq_status st = check_linear_arg(m, layer, which);
    if (st != GPTQ_OK)
        return st;
    if (m->views)
        return gptq_fail(GPTQ_ERR_BUSY,
                         "layer %d %s: the model's weights are borrowed "
                         "(shared or mapped); clone it to change them",
                         layer, lin_names[which]);
    linear *L = &m->layers[layer].lin[which];
    if (P->rows != L->rows || P->cols != L->cols)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d %s: packed shape [%d, %d], the linear is [%d, %d]",
                         layer, lin_names[which], P->rows, P->cols, L->rows, L->cols);
    if (!P->qweight || !P->qzeros || !P->scales || !P->g_idx || P->groups < 1)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d %s: packed linear has missing arrays", layer,
                         lin_names[which]);
    if ((st = gptq_pack_check(P->rows, P->cols, P->bits)) != GPTQ_OK)
        return gptq_fail_context(st, "layer %d %s", layer, lin_names[which]);
    if (m->device) { /* upload, then the model's copy replaces the caller's */
        gptq_packed d;
        if ((st = packed_upload(m->be, NULL, NULL, P, &d)) != GPTQ_OK)
            return gptq_fail_context(st, "layer %d %s", layer, lin_names[which]);
        gptq_packed_free(P);
        *P = d;
    }
    linear_clear(m, L);
    L->P = *P;
    L->packed = 1;
    memset(P, 0, sizeof *P);
    return table_build(m);
}

gptq_status gptq_model_foreach_tensor(const gptq_model *m, gptq_tensor_visit visit, void *user)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    char name[192];
    int64_t emb_shape[2] = {c->vocab_size, c->hidden_size}, vec_shape[1] = {c->hidden_size};
    if ((st = visit(user, "model.embed_tokens.weight", m->embed, 2, emb_shape, NULL)) != GPTQ_OK)
        return st;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const layer *Ly = &m->layers[l];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if ((st = visit(user, name, Ly->attn_norm, 1, vec_shape, NULL)) != GPTQ_OK)
            return st;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((st = visit(user, name, Ly->mlp_norm, 1, vec_shape, NULL)) != GPTQ_OK)
            return st;
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            const linear *L = &Ly->lin[w];
            int64_t shape[2] = {L->rows, L->cols}, bshape[1] = {L->rows};
            if (L->packed) {
                snprintf(name, sizeof name, "model.layers.%d.%s", l, lin_paths[w]);
                st = visit(user, name, NULL, 2, shape, &L->P);
            } else if (!L->W) {
                st = gptq_fail(GPTQ_ERR_ARG, "layer %d %s is not loaded (streaming model)", l,
                               lin_names[w]);
            } else {
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, lin_paths[w]);
                st = visit(user, name, L->W, 2, shape, NULL);
            }
            if (st != GPTQ_OK)
                return st;
            if (L->bias) {
                snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, lin_paths[w]);
                if ((st = visit(user, name, L->bias, 1, bshape, NULL)) != GPTQ_OK)
                    return st;
            }
        }
    }
    if ((st = visit(user, "model.norm.weight", m->norm, 1, vec_shape, NULL)) != GPTQ_OK)
        return st;
    if (m->lm_head != m->embed)
        return visit(user, "lm_head.weight", m->lm_head, 2, emb_shape, NULL);
    return GPTQ_OK;
}

/* ---- KV cache ---------------------------------------------------------------------------- */

gptq_status gptq_kv_create(const gptq_model *m, int n_seq, int max_tokens, gptq_kv **out)
{
    const gptq_model_config *c = &m->cfg;
    *out = NULL;
    if (n_seq < 1 || max_tokens < 1)
        return gptq_fail(GPTQ_ERR_ARG, "kv cache: n_seq %d and max_tokens %d must be >= 1", n_seq,
                         max_tokens);
    gptq_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return gptq_fail(GPTQ_ERR_NOMEM, "kv cache: out of memory");
    kv->be = m->be;
    kv->n_layers = c->num_hidden_layers;
    kv->slots = n_seq;
    kv->cap = max_tokens;
    kv->kv_dim = c->num_key_value_heads * c->head_dim;
    size_t n = (size_t)kv->n_layers * n_seq * max_tokens * kv->kv_dim;
    kv->k = m->be->alloc(n * sizeof *kv->k);
    kv->v = m->be->alloc(n * sizeof *kv->v);
    kv->len = calloc((size_t)n_seq, sizeof *kv->len);
    if (!kv->k || !kv->v || !kv->len) {
        gptq_kv_free(kv);
        return gptq_fail(GPTQ_ERR_NOMEM,
                         "kv cache: cannot allocate 2 x %zu MiB of %s memory for %d x %d tokens",
                         n * sizeof(float) >> 20, m->be->name, n_seq, max_tokens);
    }
    *out = kv;
    return GPTQ_OK;
}

void gptq_kv_free(gptq_kv *kv)
{
    if (!kv)
        return;
    kv->be->free(kv->k);
    kv->be->free(kv->v);
    free(kv->len);
    free(kv);
}

int gptq_kv_len(const gptq_kv *kv, int slot)
{
    return slot >= 0 && slot < kv->slots ? kv->len[slot] : 0;
}

void gptq_kv_truncate(gptq_kv *kv, int slot, int len)
{
    if (slot >= 0 && slot < kv->slots && len >= 0 && len < kv->len[slot])
        kv->len[slot] = len;
}

int gptq_kv_slots(const gptq_kv *kv)
{
    return kv->slots;
}

int gptq_kv_capacity(const gptq_kv *kv)
{
    return kv->cap;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* Activations of one layer for T = n_seq*len tokens, allocated once per call. */
typedef struct scratch {
    const gptq_backend *be; /* every buffer but pos_host is its memory */
    float *x;         /* [T, hidden] normed input / linear output */
    float *q;         /* [T, q_dim] */
    float *k, *v;     /* [T, kv_dim] */
    float *att;       /* [T, q_dim] */
    float *gate, *up; /* [T, intermediate] */
    int32_t *pos;     /* [T] */
    int32_t *pos_host;/* [T] host staging of pos */
} scratch;

static void scratch_free(scratch *s)
{
    if (s->be) {
        const gptq_backend *be = s->be;
        be->free(s->x), be->free(s->q), be->free(s->k), be->free(s->v), be->free(s->att);
        be->free(s->gate), be->free(s->up), be->free(s->pos);
    }
    free(s->pos_host);
    memset(s, 0, sizeof *s);
}

/* Which scratch buffers a call needs (a layer part needs few of them). */
enum {
    SCR_X = 1,    /* x */
    SCR_QKV = 2,  /* q, k, v, pos */
    SCR_ATT = 4,  /* att */
    SCR_GATE = 8, /* gate */
    SCR_UP = 16,  /* up */
    SCR_ALL = 31
};

static void *scratch_buf(const gptq_backend *be, unsigned want, unsigned bit, size_t bytes,
                         int *failed)
{
    if (!(want & bit))
        return NULL;
    void *p = be->alloc(bytes);
    *failed |= !p;
    return p;
}

static gptq_status scratch_alloc(const gptq_model *m, size_t T, unsigned want, scratch *s)
{
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    size_t q_dim = (size_t)c->num_attention_heads * c->head_dim;
    size_t kv_dim = (size_t)c->num_key_value_heads * c->head_dim;
    size_t inter = (size_t)c->intermediate_size;
    int failed = 0;
    memset(s, 0, sizeof *s);
    s->be = be;
    s->x = scratch_buf(be, want, SCR_X, T * c->hidden_size * sizeof(float), &failed);
    s->q = scratch_buf(be, want, SCR_QKV, T * q_dim * sizeof(float), &failed);
    s->k = scratch_buf(be, want, SCR_QKV, T * kv_dim * sizeof(float), &failed);
    s->v = scratch_buf(be, want, SCR_QKV, T * kv_dim * sizeof(float), &failed);
    s->pos = scratch_buf(be, want, SCR_QKV, T * sizeof(int32_t), &failed);
    s->att = scratch_buf(be, want, SCR_ATT, T * q_dim * sizeof(float), &failed);
    s->gate = scratch_buf(be, want, SCR_GATE, T * inter * sizeof(float), &failed);
    s->up = scratch_buf(be, want, SCR_UP, T * inter * sizeof(float), &failed);
    if (want & SCR_QKV)
        failed |= !(s->pos_host = malloc(T * sizeof(int32_t)));
    if (failed) {
        scratch_free(s);
        return gptq_fail(GPTQ_ERR_NOMEM, "forward: cannot allocate %s activations for %zu tokens",
                         be->name, T);
    }
    return GPTQ_OK;
}

static gptq_status linear_apply(const gptq_backend *be, const linear *L, const float *x, float *y,
                                int n)
{
    if (L->packed)
        return be->qgemm(&L->P, x, L->bias, y, n);
    if (!L->W)
        return gptq_fail(GPTQ_ERR_ARG, "a linear of this streaming model is not loaded: call "
                         "gptq_model_layer_ensure first");
    be->gemm_f32(x, L->W, L->bias, y, n, L->cols, L->rows);
    return GPTQ_OK;
}

static gptq_status call_hook(const gptq_layer_hooks *hooks, int l, gptq_linear_id which,
                             const float *X, int rows, int cols)
{
    if (!hooks || !hooks->before_linear)
        return GPTQ_OK;
    return hooks->before_linear(hooks->user, l, which, X, rows, cols);
}

/* Where a layer's keys and values go: sequence s writes rows start[s].. of
 * k_base + slot[s]*slot_stride (each row kv_dim floats). */
typedef struct kv_view {
    float *k, *v;         /* this layer's [slots][cap][kv_dim] */
    size_t slot_stride;   /* cap * kv_dim */
    const int *slot;      /* [n_seq] or NULL: identity */
    const int32_t *start; /* [n_seq] */
} kv_view;

/* Token positions of a call into s->pos, once per call (the same for every
 * layer; an upload to a GPU waits for the device). */
static gptq_status scratch_positions(scratch *s, const int32_t *start, int n_seq, int len)
{
    for (int i = 0; i < n_seq; i++)
        for (int t = 0; t < len; t++)
            s->pos_host[i * len + t] = start[i] + t;
    return s->be->upload(s->pos, s->pos_host, (size_t)n_seq * len * sizeof(int32_t));
}

/* q/k/v of x [T, hidden] (a layer's normed input), RoPE, the keys and
 * values into the cache view, causal attention into att [T, q_dim]. */
static gptq_status attention_block(const gptq_model *m, int l, const float *x, float *att,
                                   int n_seq, int len, const kv_view *kvv, scratch *s)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    const layer *Ly = &m->layers[l];
    const int T = n_seq * len, hd = c->head_dim;
    const int nh = c->num_attention_heads, nkv = c->num_key_value_heads;
    const size_t q_dim = (size_t)nh * hd, kv_dim = (size_t)nkv * hd;
    if ((st = linear_apply(be, &Ly->lin[GPTQ_LIN_Q], x, s->q, T)) != GPTQ_OK ||
        (st = linear_apply(be, &Ly->lin[GPTQ_LIN_K], x, s->k, T)) != GPTQ_OK ||
        (st = linear_apply(be, &Ly->lin[GPTQ_LIN_V], x, s->v, T)) != GPTQ_OK)
        return st;
    be->rope(s->q, T, nh, hd, s->pos, m->rope_freq);
    be->rope(s->k, T, nkv, hd, s->pos, m->rope_freq);
    for (int i = 0; i < n_seq; i++) {
        size_t base = (size_t)(kvv->slot ? kvv->slot[i] : i) * kvv->slot_stride;
        float *kc = kvv->k + base, *vc = kvv->v + base;
        size_t rows = (size_t)len * kv_dim * sizeof(float);
        if ((st = be->copy(kc + (size_t)kvv->start[i] * kv_dim, s->k + (size_t)i * len * kv_dim,
                           rows)) != GPTQ_OK ||
            (st = be->copy(vc + (size_t)kvv->start[i] * kv_dim, s->v + (size_t)i * len * kv_dim,
                           rows)) != GPTQ_OK)
            return st;
        gptq_attention_args a = {
            .q = s->q + (size_t)i * len * q_dim,
            .k = kc,
            .v = vc,
            .out = att + (size_t)i * len * q_dim,
            .len = len,
            .start = kvv->start[i],
            .n_heads = nh,
            .n_kv_heads = nkv,
            .head_dim = hd,
            .window = c->sliding_window,
            .scale = 1.0f / sqrtf((float)hd),
        };
        if ((st = be->attention(&a)) != GPTQ_OK)
            return st;
    }
    return GPTQ_OK;
}

/* act [T, intermediate] = silu(gate_proj(x)) * up_proj(x); s->up is scratch. */
static gptq_status mlp_act(const gptq_model *m, int l, const float *x, float *act, int T,
                           scratch *s)
{
    gptq_status st;
    const layer *Ly = &m->layers[l];
    if ((st = linear_apply(m->be, &Ly->lin[GPTQ_LIN_GATE], x, act, T)) != GPTQ_OK ||
        (st = linear_apply(m->be, &Ly->lin[GPTQ_LIN_UP], x, s->up, T)) != GPTQ_OK)
        return st;
    m->be->silu_mul(act, s->up, act, (size_t)T * m->cfg.intermediate_size);
    return GPTQ_OK;
}

/* h += the linear `which` of x, computed into tmp [T, hidden]. */
static gptq_status residual_add(const gptq_model *m, int l, gptq_linear_id which, const float *x,
                                float *h, float *tmp, int T)
{
    gptq_status st = linear_apply(m->be, &m->layers[l].lin[which], x, tmp, T);
    if (st == GPTQ_OK)
        m->be->add(h, tmp, (size_t)T * m->cfg.hidden_size);
    return st;
}

static gptq_status check_loaded(const gptq_model *m, int l)
{
    const layer *Ly = &m->layers[l];
    if (!Ly->attn_norm || !Ly->mlp_norm)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d is not loaded on %s (gptq_model_layer_upload)",
                         l, m->be->name);
    return GPTQ_OK;
}

/* One decoder layer in place on h [n_seq*len, hidden]; s->pos holds the
 * positions (scratch_positions). */
static gptq_status run_layer(const gptq_model *m, int l, float *h, int n_seq, int len,
                             const kv_view *kvv, const gptq_layer_hooks *hooks, scratch *s)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    const layer *Ly = &m->layers[l];
    const int T = n_seq * len, hidden = c->hidden_size;
    const int q_dim = c->num_attention_heads * c->head_dim;
    const float eps = (float)c->rms_norm_eps;

    if ((st = check_loaded(m, l)) != GPTQ_OK || (st = gptq_interrupt_check("forward")) != GPTQ_OK)
        return st;
    /* attention block */
    be->rmsnorm(h, Ly->attn_norm, s->x, T, hidden, eps);
    if ((st = call_hook(hooks, l, GPTQ_LIN_Q, s->x, T, hidden)) != GPTQ_OK ||
        (st = attention_block(m, l, s->x, s->att, n_seq, len, kvv, s)) != GPTQ_OK ||
        (st = call_hook(hooks, l, GPTQ_LIN_O, s->att, T, q_dim)) != GPTQ_OK ||
        (st = residual_add(m, l, GPTQ_LIN_O, s->att, h, s->x, T)) != GPTQ_OK)
        return st;

    /* MLP block */
    if ((st = gptq_interrupt_check("forward")) != GPTQ_OK)
        return st;
    be->rmsnorm(h, Ly->mlp_norm, s->x, T, hidden, eps);
    if ((st = call_hook(hooks, l, GPTQ_LIN_GATE, s->x, T, hidden)) != GPTQ_OK ||
        (st = mlp_act(m, l, s->x, s->gate, T, s)) != GPTQ_OK ||
        (st = call_hook(hooks, l, GPTQ_LIN_DOWN, s->gate, T, c->intermediate_size)) != GPTQ_OK)
        return st;
    return residual_add(m, l, GPTQ_LIN_DOWN, s->gate, h, s->x, T);
}

gptq_status gptq_model_layer_part(const gptq_model *m, int l, gptq_layer_part part, float *h,
                                  const float *in, float *out, int n_seq, int len)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    if (l < 0 || l >= c->num_hidden_layers)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d is out of range [0, %d)", l,
                         c->num_hidden_layers);
    if (n_seq < 1 || len < 1 || (int64_t)n_seq * len > MAX_CALL_TOKENS)
        return gptq_fail(GPTQ_ERR_ARG, "layer part: n_seq %d x len %d tokens: use 1 to %d",
                         n_seq, len, MAX_CALL_TOKENS);
    if ((st = check_loaded(m, l)) != GPTQ_OK || (st = gptq_interrupt_check("layer")) != GPTQ_OK)
        return st;
    const layer *Ly = &m->layers[l];
    const int T = n_seq * len, hidden = c->hidden_size;
    const float eps = (float)c->rms_norm_eps;
    switch (part) {
    case GPTQ_PART_ATTN_NORM:
        be->rmsnorm(h, Ly->attn_norm, out, T, hidden, eps);
        return GPTQ_OK;
    case GPTQ_PART_MLP_NORM:
        be->rmsnorm(h, Ly->mlp_norm, out, T, hidden, eps);
        return GPTQ_OK;
    case GPTQ_PART_ATTENTION:
    case GPTQ_PART_ATTN_OUT:
    case GPTQ_PART_MLP_ACT:
    case GPTQ_PART_MLP_OUT:
        break;
    default:
        return gptq_fail(GPTQ_ERR_ARG, "layer part %d is not a gptq_layer_part", (int)part);
    }
    /* the parts with linears: one call's scratch */
    size_t kv_dim = (size_t)c->num_key_value_heads * c->head_dim;
    scratch s;
    float *k = NULL, *v = NULL;
    int32_t *start = NULL;
    static const unsigned needs[] = {[GPTQ_PART_ATTENTION] = SCR_X | SCR_QKV,
                                     [GPTQ_PART_ATTN_OUT] = SCR_X,
                                     [GPTQ_PART_MLP_ACT] = SCR_UP,
                                     [GPTQ_PART_MLP_OUT] = SCR_X};
    if ((st = scratch_alloc(m, (size_t)T, needs[part], &s)) != GPTQ_OK)
        return st;
    switch (part) {
    case GPTQ_PART_ATTENTION:
        k = be->alloc((size_t)T * kv_dim * sizeof *k);
        v = be->alloc((size_t)T * kv_dim * sizeof *v);
        start = calloc((size_t)n_seq, sizeof *start);
        if (!k || !v || !start) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "layer part: cannot allocate keys for %d tokens", T);
            break;
        }
        kv_view kvv = {.k = k, .v = v, .slot_stride = (size_t)len * kv_dim, .start = start};
        be->rmsnorm(h, Ly->attn_norm, s.x, T, hidden, eps);
        if ((st = scratch_positions(&s, start, n_seq, len)) == GPTQ_OK)
            st = attention_block(m, l, s.x, out, n_seq, len, &kvv, &s);
        break;
    case GPTQ_PART_ATTN_OUT:
        if ((st = residual_add(m, l, GPTQ_LIN_O, in, h, s.x, T)) == GPTQ_OK && out)
            be->rmsnorm(h, Ly->mlp_norm, out, T, hidden, eps);
        break;
    case GPTQ_PART_MLP_ACT:
        st = mlp_act(m, l, in, out, T, &s);
        break;
    default: /* GPTQ_PART_MLP_OUT */
        st = residual_add(m, l, GPTQ_LIN_DOWN, in, h, s.x, T);
        break;
    }
    be->free(k), be->free(v), free(start);
    scratch_free(&s);
    return st;
}

static gptq_status check_ids(const gptq_model *m, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return gptq_fail(GPTQ_ERR_ARG,
                             "token id %d at index %zu is outside the vocabulary [0, %d)", ids[i],
                             i, m->cfg.vocab_size);
    return GPTQ_OK;
}

/* ids [n] (host) into backend memory: the caller's pointer on the CPU, else
 * a new buffer (*owned) the caller frees with be->free. */
static gptq_status ids_to_backend(const gptq_model *m, const int32_t *ids, size_t n,
                                  const int32_t **out, int32_t **owned)
{
    *owned = NULL;
    *out = ids;
    if (!m->device)
        return GPTQ_OK;
    int32_t *d = m->be->alloc(n * sizeof *d);
    if (!d)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate %zu token ids", m->be->name, n);
    gptq_status st = m->be->upload(d, ids, n * sizeof *d);
    if (st != GPTQ_OK) {
        m->be->free(d);
        return st;
    }
    *owned = d;
    *out = d;
    return GPTQ_OK;
}

gptq_status gptq_model_embed(const gptq_model *m, const int32_t *ids, int n, float *h)
{
    const int32_t *d_ids;
    int32_t *owned;
    gptq_status st = check_ids(m, ids, (size_t)n);
    if (st != GPTQ_OK || (st = ids_to_backend(m, ids, (size_t)n, &d_ids, &owned)) != GPTQ_OK)
        return st;
    m->be->embed(m->embed, d_ids, n, m->cfg.hidden_size, h);
    if (owned)
        m->be->free(owned); /* frees after the queued embedding (cudaFree synchronizes) */
    return GPTQ_OK;
}

gptq_status gptq_model_head(const gptq_model *m, const float *h, int n, float *logits)
{
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    gptq_status st = GPTQ_OK;
    size_t out_bytes = (size_t)n * c->vocab_size * sizeof(float);
    if (!m->lm_head || !m->norm)
        return gptq_fail(GPTQ_ERR_ARG, "head: this copy of the model was made without its head "
                         "(GPTQ_TO_BACKEND_NO_HEAD)");
    float *x = be->alloc((size_t)n * c->hidden_size * sizeof *x);
    float *y = m->device ? be->alloc(out_bytes) : logits;
    if (!x || !y) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "head: cannot allocate %d x %d logits of %s memory", n,
                       c->vocab_size, be->name);
        goto done;
    }
    be->rmsnorm(h, m->norm, x, n, c->hidden_size, (float)c->rms_norm_eps);
    be->gemm_f32(x, m->lm_head, NULL, y, n, c->hidden_size, c->vocab_size);
    if (m->device)
        st = be->download(logits, y, out_bytes);
done:
    be->free(x);
    if (m->device)
        be->free(y);
    return st;
}

gptq_status gptq_model_layer_forward(const gptq_model *m, int layer, float *h, int n_seq, int len,
                                     const gptq_layer_hooks *hooks)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    if (layer < 0 || layer >= c->num_hidden_layers)
        return gptq_fail(GPTQ_ERR_ARG, "layer %d is out of range [0, %d)", layer,
                         c->num_hidden_layers);
    if (n_seq < 1 || len < 1)
        return gptq_fail(GPTQ_ERR_ARG, "layer forward: n_seq %d and len %d must be >= 1", n_seq,
                         len);
    if ((int64_t)n_seq * len > MAX_CALL_TOKENS)
        return gptq_fail(GPTQ_ERR_LIMIT, "layer forward: %d x %d tokens in one call; at most %d",
                         n_seq, len, MAX_CALL_TOKENS);
    size_t T = (size_t)n_seq * len, kv_dim = (size_t)c->num_key_value_heads * c->head_dim;
    scratch s;
    if ((st = scratch_alloc(m, T, SCR_ALL, &s)) != GPTQ_OK)
        return st;
    float *k = be->alloc(T * kv_dim * sizeof *k), *v = be->alloc(T * kv_dim * sizeof *v);
    int32_t *start = calloc((size_t)n_seq, sizeof *start);
    if (!k || !v || !start) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "layer forward: cannot allocate keys for %zu tokens", T);
        goto done;
    }
    kv_view kvv = {
        .k = k, .v = v, .slot_stride = (size_t)len * kv_dim, .slot = NULL, .start = start};
    if ((st = scratch_positions(&s, start, n_seq, len)) == GPTQ_OK)
        st = run_layer(m, layer, h, n_seq, len, &kvv, hooks, &s);
done:
    be->free(k), be->free(v), free(start);
    scratch_free(&s);
    return st;
}

gptq_status gptq_model_forward(const gptq_model *m, gptq_kv *kv, const int32_t *ids, int n_seq,
                               int len, const int *slots, const int32_t *start, int flags,
                               float *logits)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    scratch s = {0};
    float *h = NULL, *last = NULL, *tmp_k = NULL, *tmp_v = NULL;
    int32_t *starts = NULL, *ids_owned = NULL;
    const int32_t *d_ids = NULL;
    if (n_seq < 1 || len < 1)
        return gptq_fail(GPTQ_ERR_ARG, "forward: n_seq %d and len %d must be >= 1", n_seq, len);
    if ((int64_t)n_seq * len > MAX_CALL_TOKENS)
        return gptq_fail(GPTQ_ERR_LIMIT, "forward: %d x %d tokens in one call; at most %d", n_seq,
                         len, MAX_CALL_TOKENS);
    size_t T = (size_t)n_seq * len, hidden = (size_t)c->hidden_size;
    size_t kv_dim = (size_t)c->num_key_value_heads * c->head_dim;
    if ((st = check_ids(m, ids, T)) != GPTQ_OK)
        return st;
    if (!kv && start)
        return gptq_fail(GPTQ_ERR_ARG, "forward: start positions need a kv cache");
    if (!(starts = calloc((size_t)n_seq, sizeof *starts)))
        return gptq_fail(GPTQ_ERR_NOMEM, "forward: out of memory");

    kv_view kvv = {.start = starts};
    size_t layer_stride;
    if (kv) {
        if (kv->n_layers != c->num_hidden_layers || kv->kv_dim != (int)kv_dim || kv->be != be) {
            st = gptq_fail(GPTQ_ERR_ARG, "forward: the kv cache was made for another model");
            goto done;
        }
        for (int i = 0; i < n_seq; i++) {
            int slot = slots ? slots[i] : i;
            if (slot < 0 || slot >= kv->slots) {
                st = gptq_fail(GPTQ_ERR_ARG,
                               "forward: sequence %d: slot %d is outside the cache's %d slots", i,
                               slot, kv->slots);
                goto done;
            }
            for (int j = 0; j < i; j++)
                if ((slots ? slots[j] : j) == slot) {
                    st = gptq_fail(GPTQ_ERR_ARG, "forward: sequences %d and %d share slot %d", j, i,
                                   slot);
                    goto done;
                }
            starts[i] = start ? start[i] : kv->len[slot];
            if (starts[i] < 0 || starts[i] > kv->len[slot]) {
                st = gptq_fail(
                    GPTQ_ERR_ARG,
                    "forward: sequence %d starts at position %d but slot %d holds %d tokens", i,
                    starts[i], slot, kv->len[slot]);
                goto done;
            }
            if ((int64_t)starts[i] + len > kv->cap) {
                st = gptq_fail(GPTQ_ERR_LIMIT,
                               "forward: sequence %d needs %lld positions, the kv cache holds %d "
                               "(raise max_tokens)",
                               i, (long long)starts[i] + len, kv->cap);
                goto done;
            }
        }
        kvv.slot = slots;
        kvv.slot_stride = (size_t)kv->cap * kv_dim;
        layer_stride = (size_t)kv->slots * kvv.slot_stride;
    } else {
        tmp_k = be->alloc(T * kv_dim * sizeof *tmp_k);
        tmp_v = be->alloc(T * kv_dim * sizeof *tmp_v);
        if (!tmp_k || !tmp_v) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "forward: cannot allocate keys for %zu tokens", T);
            goto done;
        }
        kvv.slot_stride = (size_t)len * kv_dim;
        layer_stride = 0; /* one layer at a time reuses the same buffer */
    }

    if (!(h = be->alloc(T * hidden * sizeof *h))) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "forward: cannot allocate hidden states for %zu tokens", T);
        goto done;
    }
    if ((st = scratch_alloc(m, T, SCR_ALL, &s)) != GPTQ_OK ||
        (st = ids_to_backend(m, ids, T, &d_ids, &ids_owned)) != GPTQ_OK)
        goto done;
    be->embed(m->embed, d_ids, (int)T, (int)hidden, h);
    if ((st = scratch_positions(&s, starts, n_seq, len)) != GPTQ_OK)
        goto done;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        kvv.k = kv ? kv->k + (size_t)l * layer_stride : tmp_k;
        kvv.v = kv ? kv->v + (size_t)l * layer_stride : tmp_v;
        if ((st = run_layer(m, l, h, n_seq, len, &kvv, NULL, &s)) != GPTQ_OK)
            goto done;
    }
    if (flags & GPTQ_FWD_LAST_ONLY) {
        if (!(last = be->alloc((size_t)n_seq * hidden * sizeof *last))) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "forward: out of memory");
            goto done;
        }
        for (int i = 0; i < n_seq && st == GPTQ_OK; i++)
            st = be->copy(last + i * hidden, h + ((size_t)i * len + len - 1) * hidden,
                          hidden * sizeof *h);
        if (st == GPTQ_OK)
            st = gptq_model_head(m, last, n_seq, logits);
    } else {
        st = gptq_model_head(m, h, (int)T, logits);
    }
    if (st == GPTQ_OK && kv)
        for (int i = 0; i < n_seq; i++)
            kv->len[slots ? slots[i] : i] = starts[i] + len;
done:
    scratch_free(&s);
    be->free(h), be->free(last), be->free(tmp_k), be->free(tmp_v), be->free(ids_owned);
    free(starts);
    return st;
}
