/* model/calib.c: the calibration pipeline (see calib.h). The shape follows
 * the reference's llama_sequential: inputs of layer l are the outputs of
 * the already-quantized layer l-1; within a layer, groups of linears in
 * true-sequential order. */
#include "model/calib.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dtype.h"
#include "model/pyrandom.h"

/* The groups of linears that read one input, in the order a layer applies them. */
static const gptq_linear_id group_first[] = {GPTQ_LIN_Q, GPTQ_LIN_O, GPTQ_LIN_GATE, GPTQ_LIN_DOWN};
static const int group_size_of[] = {3, 1, 2, 1};
enum { N_GROUPS = 4 };

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void gptq_calib_options_default(gptq_calib_options *o)
{
    memset(o, 0, sizeof *o);
    gptq_quant_config_default(&o->quant);
    o->nsamples = 128;
    o->seqlen = 2048;
    o->seed = 0;
    o->true_sequential = 1;
    o->batch = 8;
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

/* Capture state of one pass: which input group is being collected. */
typedef struct capture {
    gptq_linear_id want;     /* first linear of the group */
    gptq_hessian *hessian;
    int n_seq;               /* sequences in the current batch */
} capture;

static gptq_status capture_hook(void *user, int layer, gptq_linear_id which, const float *X,
                                int rows, int cols)
{
    capture *c = user;
    if (which != c->want)
        return GPTQ_OK;
    gptq_status st = gptq_hessian_add(c->hessian, X, rows, c->n_seq);
    if (st)
        return st;
    /* The rest of the layer is not needed for this pass. */
    return gptq_fail(GPTQ_ERR_CANCELED, "capture done");
}

static gptq_status check_options(const gptq_model *m, const gptq_calib_options *o)
{
    const gptq_model_config *cfg = gptq_model_get_config(m);
    if (o->nsamples <= 0 || o->nsamples > 1 << 16)
        return gptq_fail(GPTQ_ERR_ARG, "nsamples %d: use 1 to 65536", o->nsamples);
    if (o->seqlen < 2 || o->seqlen > 1 << 17)
        return gptq_fail(GPTQ_ERR_ARG, "seqlen %d: use 2 to 131072", o->seqlen);
    if (cfg->max_position_embeddings > 0 && o->seqlen > cfg->max_position_embeddings)
        return gptq_fail(GPTQ_ERR_ARG, "seqlen %d exceeds the model's max_position_embeddings %d",
                         o->seqlen, cfg->max_position_embeddings);
    if (o->batch <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "batch %d: use a positive number of windows", o->batch);
    for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
        int rows, cols;
        gptq_model_linear_shape(m, (gptq_linear_id)w, &rows, &cols);
        gptq_status st = gptq_quant_config_check(&o->quant, cols);
        if (!st && !(o->skip_mask & (1u << w)))
            st = gptq_pack_check(rows, cols, o->quant.bits);
        if (st)
            return gptq_fail_context(st, "%s", gptq_linear_name((gptq_linear_id)w));
    }
    return GPTQ_OK;
}

/* Quantize linear `which` of `layer` with Hessian H [cols, cols] and pack it
 * into the model. */
static gptq_status quantize_linear(gptq_model *m, int layer, gptq_linear_id which, const float *H,
                                   const gptq_quant_config *qc, int reference_storage,
                                   gptq_quant_result *res)
{
    int rows, cols;
    gptq_model_linear_shape(m, which, &rows, &cols);
    float *W = malloc((size_t)rows * cols * sizeof *W);
    gptq_packed P = {0};
    gptq_status st;
    if (!W) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "weights [%d, %d]: out of memory", rows, cols);
        goto done;
    }
    if ((st = gptq_model_get_linear_f32(m, layer, which, W)) ||
        (st = gptq_quantize_layer(W, H, rows, cols, qc, res)))
        goto done;
    if (reference_storage) {
        for (size_t i = 0; i < (size_t)rows * cols; i++)
            W[i] = gptq_round_f16(res->Q[i]);
        st = gptq_model_set_linear_f32(m, layer, which, W);
    } else if (!(st = gptq_pack(res, &P))) {
        st = gptq_model_set_linear_packed(m, layer, which, &P);
    }
done:
    gptq_packed_free(&P);
    free(W);
    if (st)
        gptq_fail_context(st, "layer %d %s", layer, gptq_linear_name(which));
    return st;
}

/* Quantize the linears of input group g of `layer` (all share Hessian H). */
static gptq_status quantize_group(gptq_model *m, int layer, int g, const float *H,
                                  const gptq_calib_options *o, double t0, int *done_count,
                                  int total, gptq_calib_progress_fn progress, void *user)
{
    const int layers = gptq_model_get_config(m)->num_hidden_layers;
    for (int k = 0; k < group_size_of[g]; k++) {
        gptq_linear_id which = (gptq_linear_id)(group_first[g] + k);
        if (o->skip_mask & (1u << which))
            continue;
        gptq_quant_result res;
        gptq_status st = quantize_linear(m, layer, which, H, &o->quant, o->reference_storage, &res);
        if (st)
            return st;
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

gptq_status gptq_calib_quantize(gptq_model *m, const int32_t *tokens, size_t n_tokens,
                                const gptq_calib_options *o, gptq_calib_progress_fn progress,
                                void *user)
{
    const double t0 = now_seconds();
    gptq_status st = check_options(m, o);
    if (st)
        return st;
    const gptq_model_config *cfg = gptq_model_get_config(m);
    const int hidden = cfg->hidden_size, layers = cfg->num_hidden_layers;
    const int ns = o->nsamples, len = o->seqlen, batch = o->batch < ns ? o->batch : ns;
    const size_t window_floats = (size_t)len * hidden;

    int64_t *offsets = malloc((size_t)ns * sizeof *offsets);
    float *inps = malloc((size_t)ns * window_floats * sizeof *inps);     /* layer inputs */
    float *scratch = malloc((size_t)batch * window_floats * sizeof *scratch);
    gptq_hessian *hess = NULL;
    if (!offsets || !inps || !scratch) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "calibration activations (%d x %d x %d floats): out of "
                       "memory; lower --nsamples or --seqlen", ns, len, hidden);
        goto done;
    }
    if (o->offsets) {
        for (int i = 0; i < ns; i++)
            if (o->offsets[i] < 0 || (size_t)o->offsets[i] + (size_t)len > n_tokens) {
                st = gptq_fail(GPTQ_ERR_ARG, "calibration window %d at token %lld runs past the "
                               "text's %zu tokens", i, (long long)o->offsets[i], n_tokens);
                goto done;
            }
        memcpy(offsets, o->offsets, (size_t)ns * sizeof *offsets);
    } else if ((st = gptq_calib_windows(n_tokens, ns, len, o->seed, offsets))) {
        goto done;
    }
    for (int i = 0; i < ns; i++)
        if ((st = gptq_model_embed(m, tokens + offsets[i], len, inps + (size_t)i * window_floats)))
            goto done;

    int total = 0, done_count = 0;
    for (int w = 0; w < GPTQ_LIN_COUNT; w++)
        total += !(o->skip_mask & (1u << w));
    total *= layers;

    for (int layer = 0; layer < layers; layer++) {
        if ((st = gptq_model_layer_ensure(m, layer)))
            goto done;
        /* Without true-sequential, every group's Hessian is taken from the
         * float layer first, then all are quantized. */
        float *Hs[N_GROUPS] = {0};
        for (int g = 0; g < N_GROUPS; g++) {
            int n_active = 0;
            for (int k = 0; k < group_size_of[g]; k++)
                n_active += !(o->skip_mask & (1u << (group_first[g] + k)));
            if (!n_active)
                continue;
            int rows, cols;
            gptq_model_linear_shape(m, group_first[g], &rows, &cols);
            if ((st = gptq_hessian_create(cols, &hess)))
                goto layer_fail;
            capture cap = {.want = group_first[g], .hessian = hess};
            gptq_layer_hooks hooks = {.before_linear = capture_hook, .user = &cap};
            for (int b0 = 0; b0 < ns; b0 += batch) {
                int nb = b0 + batch < ns ? batch : ns - b0;
                memcpy(scratch, inps + (size_t)b0 * window_floats, nb * window_floats * sizeof *scratch);
                cap.n_seq = nb;
                st = gptq_model_layer_forward(m, layer, scratch, nb, len, &hooks);
                if (st != GPTQ_ERR_CANCELED) {
                    if (!st)
                        st = gptq_fail(GPTQ_ERR_INTERNAL, "layer %d: %s input never captured",
                                       layer, gptq_linear_name(group_first[g]));
                    goto layer_fail;
                }
            }
            Hs[g] = malloc((size_t)cols * cols * sizeof *Hs[g]);
            if (!Hs[g]) {
                st = gptq_fail(GPTQ_ERR_NOMEM, "Hessian [%d, %d]: out of memory", cols, cols);
                goto layer_fail;
            }
            gptq_hessian_get(hess, Hs[g]);
            gptq_hessian_destroy(hess);
            hess = NULL;
            if (o->true_sequential && (st = quantize_group(m, layer, g, Hs[g], o, t0, &done_count,
                                                           total, progress, user)))
                goto layer_fail;
        }
        /* Without true-sequential, every Hessian came from the float layer. */
        for (int g = 0; g < N_GROUPS && !o->true_sequential; g++)
            if (Hs[g] && (st = quantize_group(m, layer, g, Hs[g], o, t0, &done_count, total,
                                              progress, user)))
                goto layer_fail;
        for (int g = 0; g < N_GROUPS; g++)
            free(Hs[g]);
        /* The quantized layer's outputs are the next layer's inputs. */
        for (int b0 = 0; b0 < ns; b0 += batch) {
            int nb = b0 + batch < ns ? batch : ns - b0;
            if ((st = gptq_model_layer_forward(m, layer, inps + (size_t)b0 * window_floats, nb, len,
                                               NULL)))
                goto done;
        }
        continue;
    layer_fail:
        for (int g = 0; g < N_GROUPS; g++)
            free(Hs[g]);
        goto done;
    }
    st = GPTQ_OK;
done:
    gptq_hessian_destroy(hess);
    free(offsets);
    free(inps);
    free(scratch);
    return st;
}

gptq_status gptq_calib_rtn(gptq_model *m, const gptq_quant_config *cfg, unsigned skip_mask)
{
    const int layers = gptq_model_get_config(m)->num_hidden_layers;
    gptq_status st = GPTQ_OK;
    for (int layer = 0; layer < layers && !st; layer++)
        for (int w = 0; w < GPTQ_LIN_COUNT && !st; w++) {
            if (skip_mask & (1u << w))
                continue;
            int rows, cols;
            gptq_model_linear_shape(m, (gptq_linear_id)w, &rows, &cols);
            float *W = malloc((size_t)rows * cols * sizeof *W);
            gptq_quant_result res = {0};
            gptq_packed P = {0};
            if (!W)
                st = gptq_fail(GPTQ_ERR_NOMEM, "weights [%d, %d]: out of memory", rows, cols);
            if (!st)
                st = gptq_model_get_linear_f32(m, layer, (gptq_linear_id)w, W);
            if (!st)
                st = gptq_rtn_layer(W, rows, cols, cfg, &res);
            if (!st)
                st = gptq_pack(&res, &P);
            if (!st)
                st = gptq_model_set_linear_packed(m, layer, (gptq_linear_id)w, &P);
            if (st)
                gptq_fail_context(st, "RTN layer %d %s", layer, gptq_linear_name((gptq_linear_id)w));
            gptq_packed_free(&P);
            gptq_quant_result_free(&res);
            free(W);
        }
    return st;
}
