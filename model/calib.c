/* model/calib.c: the calibration pipeline (see calib.h). The shape follows
 * the reference's llama_sequential: inputs of layer l are the outputs of
 * the already-quantized layer l-1; within a layer, groups of linears in
 * true-sequential order. */
#include "model/calib.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dtype.h"
#include "kernels/backend.h"
#include "kernels/turns.h"
#include "model/pyrandom.h"

/* The groups of linears that read one input, in the order a layer applies them. */
static const gptq_linear_id group_first[] = {GPTQ_LIN_Q, GPTQ_LIN_O, GPTQ_LIN_GATE, GPTQ_LIN_DOWN};
static const int group_size_of[] = {3, 1, 2, 1};
enum { N_GROUPS = 4 };

/* The linears the family does not have (OPT's gate): skipped like
 * skip_modules, but never counted or named. */
static unsigned absent_mask(const gptq_model_config *cfg)
{
    unsigned mask = 0;
    for (int w = 0; w < GPTQ_LIN_COUNT; w++)
        mask |= gptq_config_has_linear(cfg, (gptq_linear_id)w) ? 0 : 1u << w;
    return mask;
}

/* Group g's first linear the family has: the one whose input the hook
 * captures (up_proj where there is no gate_proj). */
static gptq_linear_id group_lead(const gptq_model *m, int g)
{
    int k = 0;
    while (k + 1 < group_size_of[g] &&
           !gptq_config_has_linear(gptq_model_get_config(m), (gptq_linear_id)(group_first[g] + k)))
        k++;
    return (gptq_linear_id)(group_first[g] + k);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

gptq_status gptq_calib_windows(size_t n_tokens, int nsamples, int seqlen, uint64_t seed,
                               int64_t *offsets)
{
    if (nsamples <= 0 || seqlen <= 1)
        return gptq_fail(GPTQ_ERR_ARG, "calibration: nsamples %d, seqlen %d: both must be > %s",
                         nsamples, seqlen, "0 and 1");
    if (n_tokens < (size_t)seqlen + 1)
        return gptq_fail(GPTQ_ERR_ARG, "calibration text has %zu tokens, fewer than seqlen + 1 "
                         "= %d: give a longer text or a smaller --seqlen", n_tokens, seqlen + 1);
    /* The reference's sampler, draw for draw: random.seed(seed), then
     * random.randint(0, n - seqlen - 1) per window. */
    gptq_pyrandom r;
    gptq_pyrandom_seed(&r, seed);
    for (int i = 0; i < nsamples; i++)
        offsets[i] = gptq_pyrandom_randint(&r, 0, (int64_t)n_tokens - seqlen - 1);
    return GPTQ_OK;
}

/* Where the pipeline runs: a backend (the CPU's, or a device whose memory
 * holds H, W and the activations). Everything goes through its table. */
typedef struct engine {
    const gptq_backend *be;
    int device; /* be's memory is not host memory */
} engine;

/* Capture state of one pass: which input group is being collected. */
typedef struct capture {
    const engine *eng;
    gptq_linear_id want;     /* first linear of the group */
    gptq_backend_hessian *hessian;
    int n_seq;               /* sequences in the current batch */
} capture;

static gptq_status capture_hook(void *user, int layer, gptq_linear_id which, const float *X,
                                int rows, int cols)
{
    capture *c = user;
    (void)layer, (void)cols;
    if (which != c->want)
        return GPTQ_OK;
    const gptq_backend *be = c->eng->be;
    gptq_status st = be->hessian_add(be, c->hessian, X, rows, c->n_seq);
    if (st)
        return st;
    /* The rest of the layer is not needed for this pass. */
    return gptq_fail(GPTQ_ERR_CANCELED, "capture done");
}

gptq_status gptq_calib_skip_check(const gptq_model_config *cfg, unsigned skip_mask)
{
    const unsigned qkv = 1u << GPTQ_LIN_Q | 1u << GPTQ_LIN_K | 1u << GPTQ_LIN_V,
                   gate_up = 1u << GPTQ_LIN_GATE | 1u << GPTQ_LIN_UP;
    if ((gptq_config_fuses(cfg, 0) && (skip_mask & qkv) && (skip_mask & qkv) != qkv) ||
        (gptq_config_fuses(cfg, 1) && (skip_mask & gate_up) && (skip_mask & gate_up) != gate_up))
        return gptq_fail(GPTQ_ERR_ARG, "skip_modules: %s stores q/k/v as one linear%s; skip "
                         "all of a group or none", cfg->architecture,
                         gptq_config_fuses(cfg, 1) ? " and gate/up as one" : "");
    return GPTQ_OK;
}

/* The quantizer of one linear: q itself, or with a recipe (Q4_K_M, ...) q
 * on the grid the recipe gives this tensor (gptq_grid_of_recipe), by its
 * role in llama.cpp's file: q/k/v of a family whose GGUF fuses them are one
 * attn_qkv. */
static gptq_status linear_quant(const gptq_model_config *cfg, const gptq_quant_config *q,
                                int layer, gptq_linear_id which, int cols, gptq_quant_config *out)
{
    *out = *q;
    if (!gptq_grid_is_recipe(q->grid))
        return GPTQ_OK;
    const int qkv = which == GPTQ_LIN_Q || which == GPTQ_LIN_K || which == GPTQ_LIN_V;
    const gptq_recipe_role role = qkv && gptq_config_fuses(cfg, 0) ? GPTQ_ROLE_ATTN_QKV
                                  : which == GPTQ_LIN_V           ? GPTQ_ROLE_ATTN_V
                                  : which == GPTQ_LIN_DOWN        ? GPTQ_ROLE_FFN_DOWN
                                                                  : GPTQ_ROLE_OTHER;
    const int grid = gptq_grid_of_recipe(q->grid, role, layer, cfg->num_hidden_layers, cols);
    if (grid < 0)
        return gptq_fail(GPTQ_ERR_ARG, "recipe %s: %s has %d inputs, not a multiple of 32 "
                         "(no GGUF grid takes it)", gptq_grid_name(q->grid),
                         gptq_linear_name(which), cols);
    *out = gptq_quant_config_on_grid(q, grid);
    return GPTQ_OK;
}

/* Whether a linear quantized with q ends packed (else: dense, with its
 * GGUF blocks). */
static int packs(const gptq_quant_config *q) { return !gptq_grid_is_block(q->grid); }

static gptq_status check_options(const gptq_model *m, const gptq_calib_options *o)
{
    const gptq_model_config *cfg = gptq_model_get_config(m);
    gptq_status st = gptq_calib_options_check(o); /* the bounds of model/options.c */
    if (!st)
        st = gptq_calib_skip_check(cfg, o->skip_mask);
    if (st)
        return st;
    if (cfg->max_position_embeddings > 0 && o->seqlen > cfg->max_position_embeddings)
        return gptq_fail(GPTQ_ERR_ARG, "seqlen %d exceeds the model's max_position_embeddings %d",
                         o->seqlen, cfg->max_position_embeddings);
    /* every layer when a recipe decides per layer; else the first stands for all */
    const int layers = gptq_grid_is_recipe(o->quant.grid) ? cfg->num_hidden_layers : 1;
    for (int layer = 0; layer < layers; layer++)
        for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
            int rows, cols;
            gptq_quant_config q;
            if (!gptq_config_has_linear(cfg, (gptq_linear_id)w))
                continue;
            gptq_model_linear_shape(m, (gptq_linear_id)w, &rows, &cols);
            st = linear_quant(cfg, &o->quant, layer, (gptq_linear_id)w, cols, &q);
            if (!st)
                st = gptq_quant_config_check(&q, cols);
            if (!st && !(o->skip_mask & (1u << w)) && packs(&q) &&
                !(st = gptq_config_bits_check(cfg, q.bits)) &&
                !(st = gptq_pack_check(rows, cols, q.bits)) && o->backend &&
                o->backend->qgemm_check) /* the packed linears run there next: ask before
                                            hours of work whether they can */
                st = o->backend->qgemm_check(o->backend, rows, cols, q.bits);
            if (st)
                return gptq_fail_context(st, "%s", gptq_linear_name((gptq_linear_id)w));
        }
    return GPTQ_OK;
}

/* The models of a run: m (host, gets the results) and run, the one whose
 * layers execute: m itself on the host, else a copy on the device holding
 * the current layer only. */
typedef struct models {
    gptq_model *m, *run;
} models;

/* Put a quantized linear into both models. */
static gptq_status store_linear(const models *ms, int layer, gptq_linear_id which,
                                const gptq_quant_result *res, int reference_storage)
{
    gptq_status st = GPTQ_OK;
    const int copies = ms->run != ms->m ? 2 : 1;
    gptq_model *dst[2] = {ms->m, ms->run};
    if (reference_storage) {
        size_t n = (size_t)res->rows * res->cols;
        float *W = malloc(n * sizeof *W);
        if (!W)
            return gptq_fail(GPTQ_ERR_NOMEM, "weights [%d, %d]: out of memory", res->rows,
                             res->cols);
        for (size_t i = 0; i < n; i++)
            W[i] = gptq_round_f16(res->Q[i]);
        for (int k = 0; k < copies && !st; k++)
            st = gptq_model_set_linear_f32(dst[k], layer, which, W);
        free(W);
        return st;
    }
    for (int k = 0; k < copies && !st && res->blocks; k++)
        st = gptq_model_set_linear_blocks(dst[k], layer, which, res->gguf_type, res->blocks);
    for (int k = 0; k < copies && !st && !res->blocks; k++) {
        gptq_packed P = {0};
        if (!(st = gptq_pack(res, &P)))
            st = gptq_model_set_linear_packed(dst[k], layer, which, &P);
        gptq_packed_free(&P);
    }
    return st;
}

/* GPTQ of W and H (engine memory) on the host: the block grids, which the
 * device GPTQ does not implement. */
static gptq_status host_quantize_layer(const engine *e, const float *W, const float *H, int rows,
                                       int cols, const gptq_quant_config *qc,
                                       gptq_quant_result *res)
{
    const size_t wb = (size_t)rows * cols * sizeof(float), hb = (size_t)cols * cols * sizeof(float);
    float *Wh = malloc(wb), *Hh = malloc(hb);
    gptq_status st = !Wh || !Hh ? gptq_fail(GPTQ_ERR_NOMEM, "weights [%d, %d]: out of memory",
                                            rows, cols)
                                : GPTQ_OK;
    if (!st && !(st = e->be->download(e->be, Wh, W, wb)) && !(st = e->be->download(e->be, Hh, H, hb)))
        st = gptq_quantize_layer(Wh, Hh, rows, cols, qc, res);
    free(Wh);
    free(Hh);
    return st;
}

/* Quantize linear `which` of `layer` with Hessian H [cols, cols] (engine
 * memory) and store it into the models. */
static gptq_status quantize_linear(const engine *e, const models *ms, int layer,
                                   gptq_linear_id which, const float *H,
                                   const gptq_quant_config *qc, int reference_storage,
                                   gptq_quant_result *res)
{
    int rows, cols;
    gptq_model_linear_shape(ms->run, which, &rows, &cols);
    size_t bytes = (size_t)rows * cols * sizeof(float);
    const float *W = gptq_model_linear_weight(ms->run, layer, which);
    float *host = NULL, *tmp = NULL;
    gptq_status st = GPTQ_OK;
    memset(res, 0, sizeof *res);
    if (!W) { /* a packed linear (re-quantizing a quantized model): its dequantized weights */
        host = malloc(bytes);
        tmp = e->device ? e->be->alloc(e->be, bytes) : host;
        if (!host || !tmp) {
            st = host ? gptq_backend_alloc_fail(e->be, "weights [%d, %d]", rows, cols)
                      : gptq_fail(GPTQ_ERR_NOMEM, "weights [%d, %d]: out of memory", rows, cols);
            goto done;
        }
        if ((st = gptq_model_get_linear_f32(ms->m, layer, which, host)) ||
            (e->device && (st = e->be->upload(e->be, tmp, host, bytes))))
            goto done;
        W = tmp;
    }
    gptq_turn_begin(); /* one linear's GPTQ is one slice (kernels/turns.h) */
    if (e->device && gptq_grid_is_block(qc->grid))
        st = host_quantize_layer(e, W, H, rows, cols, qc, res);
    else
        st = e->be->quantize_layer(e->be, W, H, rows, cols, qc, res, NULL);
    gptq_turn_end();
    if (st)
        goto done;
    st = store_linear(ms, layer, which, res, reference_storage);
done:
    if (e->device)
        e->be->free(e->be, tmp);
    free(host);
    if (st)
        gptq_fail_context(st, "layer %d %s", layer, gptq_linear_name(which));
    return st;
}

/* Quantize the linears of input group g of `layer` (all share Hessian H). */
static gptq_status quantize_group(const engine *e, const models *ms, int layer, int g,
                                  const float *H, const gptq_calib_options *o, double t0,
                                  int *done_count, int total, gptq_calib_progress_fn progress,
                                  void *user)
{
    const int layers = gptq_model_get_config(ms->m)->num_hidden_layers;
    for (int k = 0; k < group_size_of[g]; k++) {
        gptq_linear_id which = (gptq_linear_id)(group_first[g] + k);
        if (o->skip_mask & (1u << which))
            continue;
        gptq_quant_result res = {0};
        gptq_quant_config q;
        int rows, cols;
        gptq_model_linear_shape(ms->m, which, &rows, &cols);
        gptq_status st = linear_quant(gptq_model_get_config(ms->m), &o->quant, layer, which, cols,
                                      &q);
        if (!st)
            st = quantize_linear(e, ms, layer, which, H, &q, o->reference_storage, &res);
        if (st) {
            gptq_quant_result_free(&res);
            return st;
        }
        gptq_calib_progress p = {.layer = layer, .layers = layers, .which = which,
                                 .done = ++*done_count, .total = total,
                                 .seconds = res.seconds_total, .loss = res.loss,
                                 .elapsed = now_seconds() - t0};
        gptq_quant_result_free(&res);
        if (progress && (st = progress(user, &p)))
            return st;
    }
    return GPTQ_OK;
}

/* Set up the engine and the model that runs for options o. */
static gptq_status engine_open(gptq_model *m, const gptq_calib_options *o, engine *e, models *ms)
{
    memset(e, 0, sizeof *e);
    e->be = o->backend ? o->backend : gptq_backend_cpu();
    ms->m = ms->run = m;
    if (gptq_model_backend(m) != gptq_backend_cpu())
        return gptq_fail(GPTQ_ERR_ARG, "calibration: the model to quantize must be the host "
                         "model (it is on %s)", gptq_model_backend(m)->name);
    if (!o->backend)
        return GPTQ_OK; /* in place */
    /* A backend, the CPU's included: a copy on it holds the current layer
     * (on the CPU that is the GPU's code path in host memory, for tests). */
    e->device = e->be != gptq_backend_cpu();
    if (!e->be->hessian_create || !e->be->quantize_layer)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "calibration on backend %s: it has no GPTQ "
                         "entries; quantize on the CPU", e->be->name);
    /* (check_options asked whether the packed linears run on it) */
    return gptq_model_to_backend(m, e->be, NULL, NULL,
                                 GPTQ_TO_BACKEND_NO_LAYERS | GPTQ_TO_BACKEND_NO_HEAD, &ms->run);
}

/* One run of the pipeline: the models, the options, and the activations of
 * the current layer, all in the engine's memory. */
typedef struct pipeline {
    engine eng;
    models ms;
    const gptq_calib_options *o;
    int ns, len, batch;   /* windows, tokens per window, windows per call */
    size_t hidden, q_dim, inter;
    float *inps;          /* [ns, len, hidden] this layer's inputs, then outputs */
    float *att;           /* [ns, len, q_dim] attention outputs (true-sequential) */
    float *x;             /* [batch, len, hidden] a group's input, per call */
    float *act;           /* [batch, len, inter] down_proj's input (true-sequential) */
    gptq_backend_hessian *hess; /* the Hessian being accumulated */
    float *Hs[N_GROUPS];  /* each group's Hessian */
    double t0;
    int done_count, total;
    gptq_calib_progress_fn progress;
    void *user;
} pipeline;

static int group_active(const gptq_calib_options *o, int g)
{
    for (int k = 0; k < group_size_of[g]; k++)
        if (!(o->skip_mask & (1u << (group_first[g] + k))))
            return 1;
    return 0;
}

/* Start group g's Hessian (when the group is quantized at all). */
static gptq_status hess_begin(pipeline *p, int g)
{
    int rows, cols;
    if (!group_active(p->o, g))
        return GPTQ_OK;
    gptq_model_linear_shape(p->ms.m, group_lead(p->ms.m, g), &rows, &cols);
    return p->eng.be->hessian_create(p->eng.be, cols, &p->hess);
}

static gptq_status hess_add(pipeline *p, const float *X, int nb)
{
    if (!p->hess)
        return GPTQ_OK;
    return p->eng.be->hessian_add(p->eng.be, p->hess, X, (int64_t)nb * p->len, nb);
}

/* Finish group g's Hessian into p->Hs[g] (engine memory). */
static gptq_status hess_end(pipeline *p, int g)
{
    gptq_status st;
    int rows, cols;
    if (!p->hess)
        return GPTQ_OK;
    gptq_model_linear_shape(p->ms.m, group_lead(p->ms.m, g), &rows, &cols);
    p->Hs[g] = p->eng.be->alloc(p->eng.be, (size_t)cols * cols * sizeof(float));
    if (!p->Hs[g])
        return gptq_backend_alloc_fail(p->eng.be, "Hessian [%d, %d]", cols, cols);
    st = p->eng.be->hessian_get(p->eng.be, p->hess, p->Hs[g]);
    p->eng.be->hessian_free(p->eng.be, p->hess);
    p->hess = NULL;
    return st;
}

static gptq_status quantize_hessian_group(pipeline *p, int layer, int g)
{
    if (!p->Hs[g])
        return GPTQ_OK;
    return quantize_group(&p->eng, &p->ms, layer, g, p->Hs[g], p->o, p->t0, &p->done_count,
                          p->total, p->progress, p->user);
}

static void hess_free_all(pipeline *p)
{
    if (p->hess)
        p->eng.be->hessian_free(p->eng.be, p->hess);
    p->hess = NULL;
    for (int g = 0; g < N_GROUPS; g++) {
        p->eng.be->free(p->eng.be, p->Hs[g]);
        p->Hs[g] = NULL;
    }
}

/* Windows b0 .. b0+nb-1 of a [ns, len, dim] buffer. */
static float *win(const pipeline *p, float *base, size_t dim, int b0)
{
    return base + (size_t)b0 * p->len * dim;
}

/* True-sequential, each part of the layer computed once (as the reference
 * computes it by running the whole layer per group): q/k/v's input, the
 * attention with q/k/v quantized (kept for o_proj and the output), the
 * residual with o quantized (in place: inps become the mid-layer state),
 * the MLP's input and activation with gate/up quantized, then the output
 * with down quantized. Each group's Hessian sees the earlier groups
 * quantized, exactly as when the layer re-runs from its start. */
static gptq_status layer_sequential(pipeline *p, int layer)
{
    gptq_status st;
    const gptq_model *run = p->ms.run;
    const int ns = p->ns, len = p->len;
#define FOR_BATCHES for (int b0 = 0, nb; b0 < ns && (nb = b0 + p->batch < ns ? p->batch : ns - b0); b0 += p->batch)
    /* q/k/v: their input is the normed layer input */
    if ((st = hess_begin(p, 0)))
        return st;
    if (p->hess)
        FOR_BATCHES {
            if ((st = gptq_model_layer_part(run, layer, GPTQ_PART_ATTN_NORM,
                                            win(p, p->inps, p->hidden, b0), NULL, p->x, nb,
                                            len)) ||
                (st = hess_add(p, p->x, nb)))
                return st;
        }
    if ((st = hess_end(p, 0)) || (st = quantize_hessian_group(p, layer, 0)))
        return st;
    /* o: the attention output of the quantized q/k/v */
    if ((st = hess_begin(p, 1)))
        return st;
    FOR_BATCHES {
        float *att = win(p, p->att, p->q_dim, b0);
        if ((st = gptq_model_layer_part(run, layer, GPTQ_PART_ATTENTION,
                                        win(p, p->inps, p->hidden, b0), NULL, att, nb, len)) ||
            (st = hess_add(p, att, nb)))
            return st;
    }
    if ((st = hess_end(p, 1)) || (st = quantize_hessian_group(p, layer, 1)))
        return st;
    /* gate/up: the normed residual after the quantized o */
    if ((st = hess_begin(p, 2)))
        return st;
    FOR_BATCHES {
        if ((st = gptq_model_layer_part(run, layer, GPTQ_PART_ATTN_OUT,
                                        win(p, p->inps, p->hidden, b0),
                                        win(p, p->att, p->q_dim, b0), p->x, nb, len)) ||
            (st = hess_add(p, p->x, nb)))
            return st;
    }
    if ((st = hess_end(p, 2)) || (st = quantize_hessian_group(p, layer, 2)))
        return st;
    /* down: the activation of the quantized gate/up */
    if ((st = hess_begin(p, 3)))
        return st;
    if (p->hess)
        FOR_BATCHES {
            if ((st = gptq_model_layer_part(run, layer, GPTQ_PART_MLP_NORM,
                                            win(p, p->inps, p->hidden, b0), NULL, p->x, nb,
                                            len)) ||
                (st = gptq_model_layer_part(run, layer, GPTQ_PART_MLP_ACT, NULL, p->x, p->act,
                                            nb, len)) ||
                (st = hess_add(p, p->act, nb)))
                return st;
        }
    if ((st = hess_end(p, 3)) || (st = quantize_hessian_group(p, layer, 3)))
        return st;
    /* the layer's output: the next layer's input */
    FOR_BATCHES {
        float *h = win(p, p->inps, p->hidden, b0);
        if ((st = gptq_model_layer_part(run, layer, GPTQ_PART_MLP_NORM, h, NULL, p->x, nb, len)) ||
            (st = gptq_model_layer_part(run, layer, GPTQ_PART_MLP_ACT, NULL, p->x, p->act, nb,
                                        len)) ||
            (st = gptq_model_layer_part(run, layer, GPTQ_PART_MLP_OUT, h, p->act, NULL, nb, len)))
            return st;
    }
#undef FOR_BATCHES
    hess_free_all(p);
    return GPTQ_OK;
}

/* Without true-sequential: every group's Hessian from the float layer (one
 * capture pass per group, stopped at its hook), then all quantized, then
 * the output with every linear quantized. */
static gptq_status layer_at_once(pipeline *p, int layer)
{
    gptq_status st;
    const size_t window_floats = (size_t)p->len * p->hidden;
    for (int g = 0; g < N_GROUPS; g++) {
        if ((st = hess_begin(p, g)))
            return st;
        if (!p->hess)
            continue;
        capture cap = {.eng = &p->eng, .want = group_lead(p->ms.m, g), .hessian = p->hess};
        gptq_layer_hooks hooks = {.before_linear = capture_hook, .user = &cap};
        for (int b0 = 0; b0 < p->ns; b0 += p->batch) {
            int nb = b0 + p->batch < p->ns ? p->batch : p->ns - b0;
            if ((st = p->eng.be->copy(p->eng.be, p->x, p->inps + (size_t)b0 * window_floats,
                                      nb * window_floats * sizeof(float))))
                return st;
            cap.n_seq = nb;
            st = gptq_model_layer_forward(p->ms.run, layer, p->x, nb, p->len, &hooks);
            if (st != GPTQ_ERR_CANCELED)
                return st ? st
                          : gptq_fail(GPTQ_ERR_INTERNAL, "layer %d: %s input never captured",
                                      layer, gptq_linear_name(cap.want));
        }
        if ((st = hess_end(p, g)))
            return st;
    }
    for (int g = 0; g < N_GROUPS; g++)
        if ((st = quantize_hessian_group(p, layer, g)))
            return st;
    hess_free_all(p);
    for (int b0 = 0; b0 < p->ns; b0 += p->batch) {
        int nb = b0 + p->batch < p->ns ? p->batch : p->ns - b0;
        if ((st = gptq_model_layer_forward(p->ms.run, layer, p->inps + (size_t)b0 * window_floats,
                                           nb, p->len, NULL)))
            return st;
    }
    return GPTQ_OK;
}

gptq_status gptq_calib_quantize(gptq_model *m, const int32_t *tokens, size_t n_tokens,
                                const gptq_calib_options *o, gptq_calib_progress_fn progress,
                                void *user)
{
    gptq_calib_options own = *o;
    own.skip_mask |= absent_mask(gptq_model_get_config(m));
    o = &own;
    pipeline p = {.o = o, .ms = {m, m}, .t0 = now_seconds(), .progress = progress, .user = user};
    gptq_status st = check_options(m, o);
    if (st || (st = engine_open(m, o, &p.eng, &p.ms))) {
        if (p.ms.run != m)
            gptq_model_free(p.ms.run);
        return st;
    }
    const gptq_backend *be = p.eng.be;
    /* the quantized linears feed the next inputs in float, as in the reference */
    const int exact_was = gptq_model_set_exact(p.ms.run, 1);
    const gptq_model_config *cfg = gptq_model_get_config(m);
    const int layers = cfg->num_hidden_layers;
    p.ns = o->nsamples, p.len = o->seqlen, p.batch = o->batch < p.ns ? o->batch : p.ns;
    p.hidden = (size_t)cfg->hidden_size;
    p.q_dim = (size_t)cfg->num_attention_heads * cfg->head_dim;
    p.inter = (size_t)cfg->intermediate_size;
    const size_t window_floats = (size_t)p.len * p.hidden, tokens_all = (size_t)p.ns * p.len;
    int cur_layer = -1; /* the layer uploaded to p.ms.run, when it is a device copy */

    int64_t *offsets = malloc((size_t)p.ns * sizeof *offsets);
    p.inps = be->alloc(be, tokens_all * p.hidden * sizeof(float));
    p.x = be->alloc(be, (size_t)p.batch * window_floats * sizeof(float));
    if (o->true_sequential) {
        p.att = be->alloc(be, tokens_all * p.q_dim * sizeof(float));
        p.act = be->alloc(be, (size_t)p.batch * p.len * p.inter * sizeof(float));
    }
    if (!offsets || !p.inps || !p.x || (o->true_sequential && (!p.att || !p.act))) {
        st = offsets ? gptq_backend_alloc_fail(be, "calibration activations (%d x %d x (%zu + "
                                               "%zu) floats; lower --nsamples or --seqlen)",
                                               p.ns, p.len, p.hidden,
                                               o->true_sequential ? p.q_dim : 0)
                     : gptq_fail(GPTQ_ERR_NOMEM, "calibration: out of memory");
        goto done;
    }
    if (o->offsets) {
        for (int i = 0; i < p.ns; i++)
            if (o->offsets[i] < 0 || (size_t)o->offsets[i] + (size_t)p.len > n_tokens) {
                st = gptq_fail(GPTQ_ERR_ARG, "calibration window %d at token %lld runs past the "
                               "text's %zu tokens", i, (long long)o->offsets[i], n_tokens);
                goto done;
            }
        memcpy(offsets, o->offsets, (size_t)p.ns * sizeof *offsets);
    } else if ((st = gptq_calib_windows(n_tokens, p.ns, p.len, o->seed, offsets))) {
        goto done;
    }
    for (int i = 0; i < p.ns; i++)
        if ((st = gptq_model_embed(p.ms.run, tokens + offsets[i], 1, p.len,
                                   p.inps + (size_t)i * window_floats)))
            goto done;

    for (int w = 0; w < GPTQ_LIN_COUNT; w++)
        p.total += !(o->skip_mask & (1u << w));
    p.total *= layers;

    for (int layer = 0; layer < layers; layer++) {
        if ((st = gptq_model_layer_ensure(m, layer)))
            goto done;
        if (p.ms.run != m) {
            if ((st = gptq_model_layer_upload(p.ms.run, m, layer)))
                goto done;
            cur_layer = layer;
        }
        st = o->true_sequential ? layer_sequential(&p, layer) : layer_at_once(&p, layer);
        if (st)
            goto done;
        if (p.ms.run != m) {
            gptq_model_layer_drop(p.ms.run, layer);
            cur_layer = -1;
        }
    }
    st = GPTQ_OK;
done:
    hess_free_all(&p);
    if (cur_layer >= 0)
        gptq_model_layer_drop(p.ms.run, cur_layer);
    if (p.ms.run != m)
        gptq_model_free(p.ms.run);
    else
        gptq_model_set_exact(m, exact_was);
    free(offsets);
    be->free(be, p.inps);
    be->free(be, p.x);
    be->free(be, p.att);
    be->free(be, p.act);
    return st;
}

gptq_status gptq_calib_rtn(gptq_model *m, const gptq_quant_config *cfg, unsigned skip_mask,
                           gptq_calib_progress_fn progress, void *user)
{
    const int layers = gptq_model_get_config(m)->num_hidden_layers;
    int total = 0, done = 0;
    skip_mask |= absent_mask(gptq_model_get_config(m));
    for (int w = 0; w < GPTQ_LIN_COUNT; w++)
        total += !(skip_mask & (1u << w));
    total *= layers;
    const double t0 = now_seconds();
    gptq_status st = gptq_calib_skip_check(gptq_model_get_config(m), skip_mask);
    for (int layer = 0; layer < layers && !st; layer++)
        for (int w = 0; w < GPTQ_LIN_COUNT && !st; w++) {
            if (skip_mask & (1u << w))
                continue;
            const double t = now_seconds();
            int rows, cols;
            gptq_model_linear_shape(m, (gptq_linear_id)w, &rows, &cols);
            float *W = malloc((size_t)rows * cols * sizeof *W);
            gptq_quant_result res = {0};
            gptq_packed P = {0};
            gptq_quant_config q;
            st = linear_quant(gptq_model_get_config(m), cfg, layer, (gptq_linear_id)w, cols, &q);
            if (!st && packs(&q))
                st = gptq_config_bits_check(gptq_model_get_config(m), q.bits);
            if (!st && !W)
                st = gptq_fail(GPTQ_ERR_NOMEM, "weights [%d, %d]: out of memory", rows, cols);
            if (!st)
                st = gptq_model_get_linear_f32(m, layer, (gptq_linear_id)w, W);
            if (!st)
                st = gptq_rtn_layer(W, rows, cols, &q, &res);
            if (!st && res.blocks)
                st = gptq_model_set_linear_blocks(m, layer, (gptq_linear_id)w, res.gguf_type,
                                                  res.blocks);
            if (!st && !res.blocks && !(st = gptq_pack(&res, &P)))
                st = gptq_model_set_linear_packed(m, layer, (gptq_linear_id)w, &P);
            if (st)
                gptq_fail_context(st, "RTN layer %d %s", layer, gptq_linear_name((gptq_linear_id)w));
            gptq_packed_free(&P);
            gptq_quant_result_free(&res);
            free(W);
            if (!st && progress) {
                const double end = now_seconds();
                gptq_calib_progress pr = {.layer = layer, .layers = layers,
                                          .which = (gptq_linear_id)w, .done = ++done,
                                          .total = total, .seconds = end - t,
                                          .elapsed = end - t0};
                st = progress(user, &pr);
            }
        }
    return st;
}
