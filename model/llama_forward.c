/* model/llama_forward.c: the forward pass, following transformers'
 * LlamaModel step for step: embed; per layer RMSNorm -> q, k, v (+bias) ->
 * RoPE (rotate_half) -> causal GQA attention -> o -> residual add ->
 * RMSNorm -> gate, up -> silu(gate)*up -> down -> residual add; final
 * RMSNorm; lm_head. The other families are the same walk with pieces
 * swapped in by the config (model/config.h): OPT's learned positions,
 * LayerNorms with biases, relu(fc1) -> fc2 and opt-350m's post-LN and
 * projections; BLOOM's ALiBi, embedding LayerNorm and GELU MLP; Gemma's
 * (1 + w) norms around both blocks, scaled embedding, GELU gate,
 * soft-capping, per-layer windows and RoPE bases. All compute goes through
 * the backend table (kernels/backend.h). Also the per-layer entry points the calibration
 * pipeline drives (embed, layer forward with hooks, layer parts, head). */
#include "model/llama_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/interrupt.h"
#include "kernels/turns.h"

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
    unsigned char *past_original; /* [n_seq] host: the sequence's positions in this call
                         reach past the original context (longrope: the long
                         factors for all of them, as transformers picks per
                         forward of a sequence) */
    int mixed;        /* sequences of this call differ in that */
    struct host_block *block; /* on the CPU: every buffer but the host ones lies in it */
} scratch;

/* On the CPU the buffers are carved from one block of host memory, and a
 * thread keeps its last block (up to KEEP_BYTES) for its next forward:
 * freed, tens of megabytes of activations went back to the OS and were
 * faulted in again by every prompt (5-10% of the 7B-shaped stack's
 * prefill). The block is freed when the thread exits. */
#define KEEP_BYTES ((size_t)64 << 20)

typedef struct host_block {
    size_t cap;               /* bytes after the header */
    char pad[64 - sizeof(size_t)];
    _Alignas(64) char data[]; /* the buffers */
} host_block;

static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;

static void kept_key_init(void)
{
    pthread_key_create(&kept_key, free);
}

/* A block of at least `bytes` (the thread's kept one when it is big
 * enough), or NULL. */
static host_block *host_block_get(size_t bytes)
{
    pthread_once(&kept_once, kept_key_init);
    host_block *b = pthread_getspecific(kept_key);
    if (b && b->cap >= bytes) {
        pthread_setspecific(kept_key, NULL);
        return b;
    }
    if (b) {
        pthread_setspecific(kept_key, NULL);
        free(b);
    }
    if (!(b = aligned_alloc(64, sizeof *b + (bytes + 63) / 64 * 64)))
        return NULL;
    b->cap = bytes;
    return b;
}

static void host_block_put(host_block *b)
{
    if (b && b->cap <= KEEP_BYTES && !pthread_getspecific(kept_key))
        pthread_setspecific(kept_key, b);
    else
        free(b);
}

static void scratch_free(scratch *s)
{
    if (s->block) {
        host_block_put(s->block);
    } else if (s->be) {
        const gptq_backend *be = s->be;
        be->free(be, s->x), be->free(be, s->q), be->free(be, s->k), be->free(be, s->v), be->free(be, s->att);
        be->free(be, s->gate), be->free(be, s->up), be->free(be, s->pos);
    }
    free(s->pos_host);
    free(s->past_original);
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

/* The buffer `bit` of `bytes` if wanted: carved at *at from s->block (NULL:
 * only counting), else the backend's memory. */
static void *scratch_buf(scratch *s, unsigned want, unsigned bit, size_t bytes, size_t *at,
                         int *failed)
{
    if (!(want & bit))
        return NULL;
    if (at) {
        void *p = s->block ? s->block->data + *at : NULL;
        *at += (bytes + 63) / 64 * 64;
        return p;
    }
    void *p = s->be->alloc(s->be, bytes);
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
    /* on the CPU: a first pass sizes the block, a second carves it */
    const int host = be == gptq_backend_cpu();
    for (int pass = host ? 0 : 1; pass < 2 && !failed; pass++) {
        size_t used = 0, *at = host ? &used : NULL;
        s->x = scratch_buf(s, want, SCR_X, T * c->hidden_size * sizeof(float), at, &failed);
        s->q = scratch_buf(s, want, SCR_QKV, T * q_dim * sizeof(float), at, &failed);
        s->k = scratch_buf(s, want, SCR_QKV, T * kv_dim * sizeof(float), at, &failed);
        s->v = scratch_buf(s, want, SCR_QKV, T * kv_dim * sizeof(float), at, &failed);
        s->pos = scratch_buf(s, want, SCR_QKV, T * sizeof(int32_t), at, &failed);
        s->att = scratch_buf(s, want, SCR_ATT, T * q_dim * sizeof(float), at, &failed);
        s->gate = scratch_buf(s, want, SCR_GATE, T * inter * sizeof(float), at, &failed);
        s->up = scratch_buf(s, want, SCR_UP, T * inter * sizeof(float), at, &failed);
        if (pass == 0)
            failed |= !(s->block = host_block_get(used));
    }
    if (want & SCR_QKV) {
        failed |= !(s->pos_host = malloc(T * sizeof(int32_t)));
        failed |= !(s->past_original = calloc(T, 1)); /* n_seq <= T */
    }
    if (failed) {
        scratch_free(s);
        return gptq_backend_alloc_fail(be, "forward: activations for %zu tokens", T);
    }
    return GPTQ_OK;
}

/* A layer's norm, or the final one: LayerNorm where the family has the
 * bias, else RMSNorm. */
static void norm_apply(const gptq_model *m, const float *x, const float *w, const float *b,
                       float *y, int n)
{
    const gptq_backend *be = m->be;
    const float eps = (float)m->cfg.rms_norm_eps;
    if (b)
        be->layernorm(be, x, w, b, y, n, m->cfg.hidden_size, eps);
    else
        be->rmsnorm(be, x, w, y, n, m->cfg.hidden_size, eps, gptq_config_norm_offset(&m->cfg));
}

/* A block's input: its norm of h (pre-LN), or h itself where the family
 * norms after the residual add instead (OPT-350m's post-LN: block_output). */
static gptq_status block_input(const gptq_model *m, const float *w, const float *b,
                               const float *h, float *out, int T)
{
    if (!m->cfg.post_ln) {
        norm_apply(m, h, w, b, out, T);
        return GPTQ_OK;
    }
    return m->be->copy(m->be, out, h, (size_t)T * m->cfg.hidden_size * sizeof(float));
}

/* After a block's residual add: the post-LN norm of h, in place. */
static void block_output(const gptq_model *m, const float *w, const float *b, float *h, int T)
{
    if (m->cfg.post_ln)
        norm_apply(m, h, w, b, h, T);
}

/* The MLP's activation where it is not SiLU: OPT's ReLU, BLOOM's tanh GELU
 * (both without a gate), Gemma 2's torch tanh GELU of the gate. */
static gptq_act mlp_activation(const gptq_model_config *c)
{
    switch (c->arch) {
    case GPTQ_ARCH_BLOOM: return GPTQ_ACT_GELU_TANH;
    case GPTQ_ARCH_GEMMA2:
    case GPTQ_ARCH_GEMMA3: return GPTQ_ACT_GELU_PT;
    default: return GPTQ_ACT_RELU;
    }
}

/* The first linear of the MLP, whose input the calibration hook sees. */
static gptq_linear_id mlp_first(const gptq_model_config *c)
{
    return gptq_config_gated_mlp(c) ? GPTQ_LIN_GATE : GPTQ_LIN_UP;
}

static gptq_status linear_apply(const gptq_model *m, const linear *L, const float *x, float *y,
                                int n)
{
    const gptq_backend *be = m->be;
    if (L->packed)
        return (m->exact || !be->qgemm_fast ? be->qgemm : be->qgemm_fast)(
            be, &L->Q, x, L->bias, y, n);
    if (!L->W)
        return gptq_fail(GPTQ_ERR_ARG, "a linear of this streaming model is not loaded: call "
                         "gptq_model_layer_ensure first");
    be->gemm(be, x, L->W, L->wt, L->bias, y, n, L->cols, L->rows);
    return GPTQ_OK;
}

static gptq_status call_hook(const gptq_layer_hooks *hooks, int l, gptq_linear_id which,
                             const float *X, int rows, int cols)
{
    if (!hooks || !hooks->before_linear)
        return GPTQ_OK;
    return hooks->before_linear(hooks->user, l, which, X, rows, cols);
}

/* Where a layer's keys and values go: sequence i writes rows start[i].. of
 * k[i] and v[i] (each row kv_dim values of dt), this layer's rows of its
 * slot. */
typedef struct kv_view {
    void **k, **v;        /* [n_seq] */
    const int32_t *start; /* [n_seq] */
    gptq_dtype dt;        /* GPTQ_DT_F32, or GPTQ_DT_F16 (a cache's, gptq_kv.dt) */
} kv_view;

/* Keys and values of a call without a cache: every sequence's rows in one
 * temporary buffer that each layer reuses; every sequence starts at 0. */
typedef struct tmp_kv {
    float *k, *v;
    void **bases;
    int32_t *start;
    kv_view view;
} tmp_kv;

static void tmp_kv_free(const gptq_backend *be, tmp_kv *t)
{
    be->free(be, t->k), be->free(be, t->v);
    free(t->bases), free(t->start);
    memset(t, 0, sizeof *t);
}

static gptq_status tmp_kv_alloc(const gptq_backend *be, int n_seq, int len, size_t kv_dim,
                                tmp_kv *t)
{
    size_t T = (size_t)n_seq * len;
    memset(t, 0, sizeof *t);
    t->k = be->alloc(be, T * kv_dim * sizeof *t->k);
    t->v = be->alloc(be, T * kv_dim * sizeof *t->v);
    t->bases = malloc(2 * (size_t)n_seq * sizeof *t->bases);
    t->start = calloc((size_t)n_seq, sizeof *t->start);
    if (!t->k || !t->v || !t->bases || !t->start) {
        tmp_kv_free(be, t);
        return gptq_backend_alloc_fail(be, "keys and values for %zu tokens", T);
    }
    for (int i = 0; i < n_seq; i++) {
        t->bases[i] = t->k + (size_t)i * len * kv_dim;
        t->bases[n_seq + i] = t->v + (size_t)i * len * kv_dim;
    }
    t->view = (kv_view){.k = t->bases, .v = t->bases + n_seq, .start = t->start,
                        .dt = GPTQ_DT_F32};
    return GPTQ_OK;
}

/* Token positions of a call into s->pos, once per call (the same for every
 * layer; an upload to a GPU waits for the device). */
static gptq_status scratch_positions(scratch *s, const gptq_model_config *c,
                                     const int32_t *start, int n_seq, int len)
{
    s->mixed = 0;
    for (int i = 0; i < n_seq; i++) {
        for (int t = 0; t < len; t++)
            s->pos_host[i * len + t] = start[i] + t;
        s->past_original[i] = c->rope_type == GPTQ_ROPE_LONGROPE &&
                              start[i] + len > c->rope_original_max_position_embeddings;
        s->mixed |= s->past_original[i] != s->past_original[0];
    }
    return s->be->upload(s->be, s->pos, s->pos_host, (size_t)n_seq * len * sizeof(int32_t));
}

/* q/k/v of x [T, hidden] (a layer's normed input), RoPE, the keys and
 * values into the cache view, causal attention into att [T, q_dim]; with
 * last_only, only each sequence's last query attends, into att [n_seq,
 * q_dim] (every key and value is still written). */
static gptq_status attention_block(const gptq_model *m, int l, const float *x, float *att,
                                   int n_seq, int len, const kv_view *kvv, scratch *s,
                                   int last_only)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    const layer *Ly = &m->layers[l];
    const int T = n_seq * len, hd = c->head_dim;
    const int nh = c->num_attention_heads, nkv = c->num_key_value_heads;
    const size_t q_dim = (size_t)nh * hd, kv_dim = (size_t)nkv * hd;
    if ((st = linear_apply(m, &Ly->lin[GPTQ_LIN_Q], x, s->q, T)) != GPTQ_OK ||
        (st = linear_apply(m, &Ly->lin[GPTQ_LIN_K], x, s->k, T)) != GPTQ_OK ||
        (st = linear_apply(m, &Ly->lin[GPTQ_LIN_V], x, s->v, T)) != GPTQ_OK)
        return st;
    if (Ly->q_norm) { /* Qwen3: each head's q and k, before RoPE */
        const float off = gptq_config_norm_offset(c);
        be->rmsnorm(be, s->q, Ly->q_norm, s->q, T * nh, hd, (float)c->rms_norm_eps, off);
        be->rmsnorm(be, s->k, Ly->k_norm, s->k, T * nkv, hd, (float)c->rms_norm_eps, off);
    }
    /* each sequence its own table (longrope); one call when they agree;
     * none for learned positions (added to the embedding) */
    for (int i = 0, n = !gptq_config_rope(c) ? 0 : s->mixed ? n_seq : 1; i < n; i++) {
        const int rows = s->mixed ? len : T;
        const float *freq = m->rope_freq + (gptq_config_layer_local_rope(c, l) ? hd
                                             : s->past_original[i]              ? hd / 2
                                                                                : 0);
        be->rope(be, s->q + (size_t)i * rows * q_dim, rows, nh, hd, s->pos + (size_t)i * rows,
                 freq);
        be->rope(be, s->k + (size_t)i * rows * kv_dim, rows, nkv, hd, s->pos + (size_t)i * rows,
                 freq);
    }
    for (int i = 0; i < n_seq; i++) {
        const size_t at = (size_t)kvv->start[i] * kv_dim, n = (size_t)len * kv_dim;
        const float *ks = s->k + (size_t)i * len * kv_dim, *vs = s->v + (size_t)i * len * kv_dim;
        const int f16 = kvv->dt == GPTQ_DT_F16;
        if (f16) { /* the cache holds binary16: rounded once, as written */
            be->f32_to_f16(be, ks, (uint16_t *)kvv->k[i] + at, n);
            be->f32_to_f16(be, vs, (uint16_t *)kvv->v[i] + at, n);
        } else if ((st = be->copy(be, (float *)kvv->k[i] + at, ks, n * sizeof(float))) != GPTQ_OK ||
                   (st = be->copy(be, (float *)kvv->v[i] + at, vs, n * sizeof(float))) != GPTQ_OK) {
            return st;
        }
        const int skip = last_only ? len - 1 : 0; /* queries that need no output */
        gptq_attention_args a = {
            .q = s->q + ((size_t)i * len + skip) * q_dim,
            .k = f16 ? NULL : kvv->k[i],
            .v = f16 ? NULL : kvv->v[i],
            .k_f16 = f16 ? kvv->k[i] : NULL,
            .v_f16 = f16 ? kvv->v[i] : NULL,
            .out = att + (size_t)i * (len - skip) * q_dim,
            .len = len - skip,
            .start = kvv->start[i] + skip,
            .n_heads = nh,
            .n_kv_heads = nkv,
            .head_dim = hd,
            .window = gptq_config_layer_window(c, l),
            /* longrope scales cos and sin by attention_factor: q.k by its square */
            .scale = c->rope_type == GPTQ_ROPE_LONGROPE
                         ? (float)(c->rope_attention_factor * c->rope_attention_factor) /
                               sqrtf((float)hd)
                     : c->query_pre_attn_scalar > 0 ? (float)pow(c->query_pre_attn_scalar, -0.5)
                                                    : 1.0f / sqrtf((float)hd),
            .softcap = (float)c->attn_softcap,
            .alibi = m->alibi,
        };
        if ((st = be->attention(be, &a)) != GPTQ_OK)
            return st;
    }
    return GPTQ_OK;
}

/* act [T, intermediate] = silu(gate_proj(x)) * up_proj(x) (Gemma 2: its
 * GELU of the gate), or act(up_proj(x)) without a gate (OPT, BLOOM); s->up
 * is scratch. */
static gptq_status mlp_act(const gptq_model *m, int l, const float *x, float *act, int T,
                           scratch *s)
{
    gptq_status st;
    const layer *Ly = &m->layers[l];
    if (!gptq_config_gated_mlp(&m->cfg)) {
        if ((st = linear_apply(m, &Ly->lin[GPTQ_LIN_UP], x, act, T)) == GPTQ_OK)
            m->be->activate(m->be, mlp_activation(&m->cfg), act,
                            (size_t)T * m->cfg.intermediate_size);
        return st;
    }
    if ((st = linear_apply(m, &Ly->lin[GPTQ_LIN_GATE], x, act, T)) != GPTQ_OK ||
        (st = linear_apply(m, &Ly->lin[GPTQ_LIN_UP], x, s->up, T)) != GPTQ_OK)
        return st;
    const size_t n = (size_t)T * m->cfg.intermediate_size;
    if (mlp_activation(&m->cfg) == GPTQ_ACT_GELU_PT) { /* Gemma: gelu(gate) * up */
        m->be->activate(m->be, GPTQ_ACT_GELU_PT, act, n);
        m->be->mul(m->be, act, s->up, n);
    } else {
        m->be->silu_mul(m->be, act, s->up, act, n);
    }
    return GPTQ_OK;
}

/* h += the linear `which` of x, computed into tmp [T, hidden] (and normed
 * first where the family norms the attention's or the MLP's output:
 * Gemma 2). */
static gptq_status residual_add(const gptq_model *m, int l, gptq_linear_id which, const float *x,
                                float *h, float *tmp, int T)
{
    const layer *Ly = &m->layers[l];
    const float *out_norm = which == GPTQ_LIN_O ? Ly->attn_out_norm : Ly->mlp_out_norm;
    gptq_status st = linear_apply(m, &Ly->lin[which], x, tmp, T);
    if (st == GPTQ_OK && out_norm)
        norm_apply(m, tmp, out_norm, NULL, tmp, T);
    if (st == GPTQ_OK)
        m->be->add(m->be, h, tmp, (size_t)T * m->cfg.hidden_size);
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
 * positions (scratch_positions). With last_only (the last layer of a
 * forward that wants only each sequence's last logits, as llama.cpp's
 * graph does) the keys and values of every position are cached, but only
 * the last rows go on past attention: h ends as [n_seq, hidden]. */
static gptq_status layer_body(const gptq_model *m, int l, float *h, int n_seq, int len,
                             const kv_view *kvv, const gptq_layer_hooks *hooks, scratch *s,
                             int last_only)
{
    gptq_status st;
    const gptq_model_config *c = &m->cfg;
    const layer *Ly = &m->layers[l];
    const int T = n_seq * len, hidden = c->hidden_size;
    const int q_dim = c->num_attention_heads * c->head_dim;
    const int Tq = last_only ? n_seq : T; /* rows past attention */

    if ((st = check_loaded(m, l)) != GPTQ_OK || (st = gptq_interrupt_check("forward")) != GPTQ_OK)
        return st;
    /* attention block */
    if ((st = block_input(m, Ly->attn_norm, Ly->attn_norm_b, h, s->x, T)) != GPTQ_OK ||
        (st = call_hook(hooks, l, GPTQ_LIN_Q, s->x, T, hidden)) != GPTQ_OK ||
        (st = attention_block(m, l, s->x, s->att, n_seq, len, kvv, s, last_only)) != GPTQ_OK)
        return st;
    for (int i = 0; last_only && len > 1 && i < n_seq; i++) /* h's last rows, in order */
        if ((st = m->be->copy(m->be, h + (size_t)i * hidden,
                              h + ((size_t)i * len + len - 1) * hidden,
                              (size_t)hidden * sizeof *h)) != GPTQ_OK)
            return st;
    if ((st = call_hook(hooks, l, GPTQ_LIN_O, s->att, Tq, q_dim)) != GPTQ_OK ||
        (st = residual_add(m, l, GPTQ_LIN_O, s->att, h, s->x, Tq)) != GPTQ_OK)
        return st;
    block_output(m, Ly->attn_norm, Ly->attn_norm_b, h, Tq);

    /* MLP block */
    if ((st = gptq_interrupt_check("forward")) != GPTQ_OK ||
        (st = block_input(m, Ly->mlp_norm, Ly->mlp_norm_b, h, s->x, Tq)) != GPTQ_OK ||
        (st = call_hook(hooks, l, mlp_first(c), s->x, Tq, hidden)) != GPTQ_OK ||
        (st = mlp_act(m, l, s->x, s->gate, Tq, s)) != GPTQ_OK ||
        (st = call_hook(hooks, l, GPTQ_LIN_DOWN, s->gate, Tq, c->intermediate_size)) != GPTQ_OK ||
        (st = residual_add(m, l, GPTQ_LIN_DOWN, s->gate, h, s->x, Tq)) != GPTQ_OK)
        return st;
    block_output(m, Ly->mlp_norm, Ly->mlp_norm_b, h, Tq);
    return GPTQ_OK;
}

/* A layer is one slice of compute: jobs take turns at it (kernels/turns.h). */
static gptq_status run_layer(const gptq_model *m, int l, float *h, int n_seq, int len,
                             const kv_view *kvv, const gptq_layer_hooks *hooks, scratch *s,
                             int last_only)
{
    gptq_turn_begin();
    gptq_status st = layer_body(m, l, h, n_seq, len, kvv, hooks, s, last_only);
    gptq_turn_end();
    return st;
}

static gptq_status layer_part(const gptq_model *m, int l, gptq_layer_part part, float *h,
                              const float *in, float *out, int n_seq, int len);

gptq_status gptq_model_layer_part(const gptq_model *m, int l, gptq_layer_part part, float *h,
                                  const float *in, float *out, int n_seq, int len)
{
    gptq_turn_begin();
    gptq_status st = layer_part(m, l, part, h, in, out, n_seq, len);
    gptq_turn_end();
    return st;
}

static gptq_status layer_part(const gptq_model *m, int l, gptq_layer_part part, float *h,
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
    const int T = n_seq * len;
    switch (part) {
    case GPTQ_PART_ATTN_NORM:
        return block_input(m, Ly->attn_norm, Ly->attn_norm_b, h, out, T);
    case GPTQ_PART_MLP_NORM:
        return block_input(m, Ly->mlp_norm, Ly->mlp_norm_b, h, out, T);
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
    tmp_kv tk = {0};
    static const unsigned needs[] = {[GPTQ_PART_ATTENTION] = SCR_X | SCR_QKV,
                                     [GPTQ_PART_ATTN_OUT] = SCR_X,
                                     [GPTQ_PART_MLP_ACT] = SCR_UP,
                                     [GPTQ_PART_MLP_OUT] = SCR_X};
    if ((st = scratch_alloc(m, (size_t)T, needs[part], &s)) != GPTQ_OK)
        return st;
    switch (part) {
    case GPTQ_PART_ATTENTION:
        if ((st = tmp_kv_alloc(be, n_seq, len, kv_dim, &tk)) != GPTQ_OK) {
            gptq_fail_context(st, "layer part");
            break;
        }
        if ((st = block_input(m, Ly->attn_norm, Ly->attn_norm_b, h, s.x, T)) == GPTQ_OK &&
            (st = scratch_positions(&s, &m->cfg, tk.start, n_seq, len)) == GPTQ_OK)
            st = attention_block(m, l, s.x, out, n_seq, len, &tk.view, &s, 0);
        break;
    case GPTQ_PART_ATTN_OUT:
        if ((st = residual_add(m, l, GPTQ_LIN_O, in, h, s.x, T)) != GPTQ_OK)
            break;
        block_output(m, Ly->attn_norm, Ly->attn_norm_b, h, T);
        if (out)
            st = block_input(m, Ly->mlp_norm, Ly->mlp_norm_b, h, out, T);
        break;
    case GPTQ_PART_MLP_ACT:
        st = mlp_act(m, l, in, out, T, &s);
        break;
    default: /* GPTQ_PART_MLP_OUT */
        if ((st = residual_add(m, l, GPTQ_LIN_DOWN, in, h, s.x, T)) == GPTQ_OK)
            block_output(m, Ly->mlp_norm, Ly->mlp_norm_b, h, T);
        break;
    }
    tmp_kv_free(be, &tk);
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
    int32_t *d = m->be->alloc(m->be, n * sizeof *d);
    if (!d)
        return gptq_backend_alloc_fail(m->be, "%zu token ids", n);
    gptq_status st = m->be->upload(m->be, d, ids, n * sizeof *d);
    if (st != GPTQ_OK) {
        m->be->free(m->be, d);
        return st;
    }
    *owned = d;
    *out = d;
    return GPTQ_OK;
}

/* The token rows of ids [T] (backend memory) into h [T, hidden]: the
 * table's rows, through project_in where the table is narrower than the
 * model (OPT-350m). */
static gptq_status embed_rows(const gptq_model *m, const int32_t *d_ids, size_t T, float *h)
{
    const gptq_backend *be = m->be;
    const int ed = gptq_config_embed_dim(&m->cfg);
    if (!m->project_in.W) {
        be->embed(be, m->embed, m->embed_dt, d_ids, (int)T, ed, h);
        return GPTQ_OK;
    }
    float *tmp = be->alloc(be, T * (size_t)ed * sizeof *tmp);
    if (!tmp)
        return gptq_backend_alloc_fail(be, "embed: %zu rows of %d", T, ed);
    be->embed(be, m->embed, m->embed_dt, d_ids, (int)T, ed, tmp);
    gptq_status st = linear_apply(m, &m->project_in, tmp, h, (int)T);
    be->free(be, tmp);
    return st;
}

/* What a family does to the embedding rows h [n, hidden] besides the
 * positions: Gemma's scale by sqrt(hidden), BLOOM's LayerNorm. */
static void embed_finish(const gptq_model *m, float *h, int n)
{
    const float scale = gptq_config_embed_scale(&m->cfg);
    if (scale != 0)
        m->be->scale(m->be, h, scale, (size_t)n * m->cfg.hidden_size);
    if (m->embed_norm)
        norm_apply(m, h, m->embed_norm, m->embed_norm_b, h, n);
}

/* Learned positions (OPT): h [n_seq * len, hidden] += the table's rows
 * start[i] + t + offset, through tmp [n_seq * len, hidden] (backend
 * memory). A position past the table is refused, as transformers cannot
 * index it either. Nothing for RoPE models. */
static gptq_status add_positions(const gptq_model *m, const int32_t *start, int n_seq, int len,
                                 float *h, float *tmp)
{
    const gptq_model_config *c = &m->cfg;
    const int rows = gptq_config_pos_rows(c), off = gptq_config_pos_offset(c);
    const size_t T = (size_t)n_seq * len;
    if (!rows)
        return GPTQ_OK;
    for (int i = 0; i < n_seq; i++)
        if ((int64_t)start[i] + len + off > rows)
            return gptq_fail(GPTQ_ERR_LIMIT, "sequence %d reaches position %lld; %s learned "
                             "%d positions (max_position_embeddings)", i,
                             (long long)start[i] + len, c->architecture, rows - off);
    int32_t *ids = malloc(T * sizeof *ids), *owned = NULL;
    const int32_t *d_ids;
    if (!ids)
        return gptq_fail(GPTQ_ERR_NOMEM, "positions of %zu tokens", T);
    for (size_t i = 0; i < T; i++)
        ids[i] = start[i / len] + (int32_t)(i % len) + off;
    gptq_status st = ids_to_backend(m, ids, T, &d_ids, &owned);
    if (st == GPTQ_OK) {
        m->be->embed(m->be, m->pos_embed, m->pos_dt, d_ids, (int)T, c->hidden_size, tmp);
        m->be->add(m->be, h, tmp, T * c->hidden_size);
    }
    if (owned)
        m->be->free(m->be, owned);
    free(ids);
    return st;
}

gptq_status gptq_model_embed(const gptq_model *m, const int32_t *ids, int n_seq, int len, float *h)
{
    const int32_t *d_ids;
    int32_t *owned;
    if (n_seq < 1 || len < 1 || (int64_t)n_seq * len > MAX_CALL_TOKENS)
        return gptq_fail(GPTQ_ERR_ARG, "embed: n_seq %d x len %d tokens: use 1 to %d", n_seq,
                         len, MAX_CALL_TOKENS);
    const size_t T = (size_t)n_seq * len;
    gptq_status st = check_ids(m, ids, T);
    if (st != GPTQ_OK || (st = ids_to_backend(m, ids, T, &d_ids, &owned)) != GPTQ_OK)
        return st;
    st = embed_rows(m, d_ids, T, h);
    if (owned)
        m->be->free(m->be, owned); /* frees after the queued embedding (cudaFree synchronizes) */
    if (st)
        return st;
    if (m->pos_embed) {
        int32_t *zeros = calloc((size_t)n_seq, sizeof *zeros);
        float *tmp = m->be->alloc(m->be, T * m->cfg.hidden_size * sizeof *tmp);
        st = !zeros || !tmp ? gptq_backend_alloc_fail(m->be, "embed: positions of %zu tokens", T)
                            : add_positions(m, zeros, n_seq, len, h, tmp);
        m->be->free(m->be, tmp);
        free(zeros);
    }
    if (st == GPTQ_OK)
        embed_finish(m, h, (int)T);
    return st;
}

gptq_status gptq_model_head(const gptq_model *m, const float *h, int n, float *logits)
{
    const gptq_model_config *c = &m->cfg;
    const gptq_backend *be = m->be;
    gptq_status st = GPTQ_OK;
    size_t out_bytes = (size_t)n * c->vocab_size * sizeof(float);
    const int ed = gptq_config_embed_dim(c);
    if (!m->lm_head || (!m->norm && !c->no_final_norm))
        return gptq_fail(GPTQ_ERR_ARG, "head: this copy of the model was made without its head "
                         "(GPTQ_TO_BACKEND_NO_HEAD)");
    float *x = be->alloc(be, (size_t)n * c->hidden_size * sizeof *x);
    float *px = m->project_out.W ? be->alloc(be, (size_t)n * ed * sizeof *px) : NULL;
    float *y = m->device ? be->alloc(be, out_bytes) : logits;
    if (!x || !y || (m->project_out.W && !px)) {
        st = gptq_backend_alloc_fail(be, "head: %d x %d logits", n, c->vocab_size);
        goto done;
    }
    gptq_turn_begin(); /* the head is a slice of its own */
    if (m->norm)
        norm_apply(m, h, m->norm, m->norm_b, x, n);
    else /* OPT-350m: no final norm */
        st = be->copy(be, x, h, (size_t)n * c->hidden_size * sizeof *x);
    const float *hx = x;
    if (st == GPTQ_OK && px) { /* OPT-350m: back to the embedding's width */
        st = linear_apply(m, &m->project_out, x, px, n);
        hx = px;
    }
    if (st == GPTQ_OK && m->head_q.packed) /* gptq_model_set_head_grid; as for linears */
        st = linear_apply(m, &m->head_q, hx, y, n);
    else if (st == GPTQ_OK)
        be->gemm(be, hx, m->lm_head, m->head_dt, NULL, y, n, ed, c->vocab_size);
    gptq_turn_end();
    if (m->device && st == GPTQ_OK)
        st = be->download(be, logits, y, out_bytes);
    if (st == GPTQ_OK && c->final_softcap > 0) { /* Gemma 2: logits / cap, tanh, * cap */
        const float cap = (float)c->final_softcap;
        for (size_t i = 0; i < (size_t)n * c->vocab_size; i++)
            logits[i] = tanhf(logits[i] / cap) * cap;
    }
done:
    be->free(be, x);
    be->free(be, px);
    if (m->device)
        be->free(be, y);
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
    tmp_kv tk;
    if ((st = tmp_kv_alloc(be, n_seq, len, kv_dim, &tk)) != GPTQ_OK) {
        scratch_free(&s);
        return gptq_fail_context(st, "layer forward");
    }
    if ((st = scratch_positions(&s, &m->cfg, tk.start, n_seq, len)) == GPTQ_OK)
        st = run_layer(m, layer, h, n_seq, len, &tk.view, hooks, &s, 0);
    tmp_kv_free(be, &tk);
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
    float *h = NULL;
    void **bases = NULL;
    tmp_kv tk = {0};
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
        /* each sequence's rows of the cache, pointed to per layer below */
        if (!(bases = malloc(2 * (size_t)n_seq * sizeof *bases))) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "forward: out of memory");
            goto done;
        }
        kvv.k = bases, kvv.v = bases + n_seq, kvv.dt = kv->dt;
        /* room for the new positions, before anything is computed */
        for (int i = 0; i < n_seq; i++)
            if ((st = llama_kv_reserve(kv, slots ? slots[i] : i, starts[i] + len)) != GPTQ_OK)
                goto done;
    } else {
        if ((st = tmp_kv_alloc(be, n_seq, len, kv_dim, &tk)) != GPTQ_OK) {
            gptq_fail_context(st, "forward");
            goto done;
        }
        kvv = tk.view; /* starts stay the zeros above */
        kvv.start = starts;
    }

    if (!(h = be->alloc(be, T * hidden * sizeof *h))) {
        st = gptq_backend_alloc_fail(be, "forward: hidden states for %zu tokens", T);
        goto done;
    }
    if ((st = scratch_alloc(m, T, SCR_ALL, &s)) != GPTQ_OK ||
        (st = ids_to_backend(m, ids, T, &d_ids, &ids_owned)) != GPTQ_OK)
        goto done;
    if ((st = embed_rows(m, d_ids, T, h)) != GPTQ_OK ||
        (st = add_positions(m, starts, n_seq, len, h, s.x)) != GPTQ_OK ||
        (st = scratch_positions(&s, &m->cfg, starts, n_seq, len)) != GPTQ_OK)
        goto done;
    embed_finish(m, h, (int)T);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        for (int i = 0; kv && i < n_seq; i++) {
            size_t at = (size_t)(slots ? slots[i] : i) * kv->n_layers + l;
            kvv.k[i] = kv->k[at];
            kvv.v[i] = kv->v[at];
        }
        const int last_only = (flags & GPTQ_FWD_LAST_ONLY) && l == c->num_hidden_layers - 1;
        if ((st = run_layer(m, l, h, n_seq, len, &kvv, NULL, &s, last_only)) != GPTQ_OK)
            goto done;
    }
    /* under LAST_ONLY the last layer left each sequence's last row only */
    st = gptq_model_head(m, h, flags & GPTQ_FWD_LAST_ONLY ? n_seq : (int)T, logits);
    if (st == GPTQ_OK && kv)
        for (int i = 0; i < n_seq; i++)
            kv->len[slots ? slots[i] : i] = starts[i] + len;
done:
    scratch_free(&s);
    be->free(be, h), be->free(be, ids_owned);
    tmp_kv_free(be, &tk);
    free(starts), free(bases);
    return st;
}
