/* tests/test_llama.c: the Llama forward against the fixture's float32
 * logits (computed by transformers, independent of this code): whole
 * sequence, incremental decoding through the KV cache (token by token, in
 * chunks, a batch of sequences at different positions), the per-layer
 * entry points with hooks, replacing linears (dense and packed), and the
 * BF16 copy of the model. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "common/dtype.h"
#include "gptq/error.h"
#include "gptq/quant.h"
#include "kernels/backend.h"
#include "kernels/cpu/qgemm_int8.h"
#include "kernels/linear.h"
#include "model/llama.h"
#include "model/safetensors.h"
#include "testutil.h"

#define N_TOK 128
#define VOCAB 4096

/* float32 compute in a different order than torch's (sgemm blocking, double
 * sums in norms and softmax): logits agree to a few float32 ulps of their
 * largest magnitude over 4 layers (measured 7.7e-7). */
#define TOL_F32 1e-5
/* BF16 weights differ from the F16 ones by up to 2^-9 relative each; the
 * logits move by a fraction of a percent of their range (measured 0.21%). */
#define TOL_BF16 1e-2

static int32_t ids[N_TOK];
static float *ref; /* [N_TOK, VOCAB] */

/* max |a - b| / max |b| over rows [row0, row0+rows) of the reference. */
static double rel_err(const float *got, int row0, int rows)
{
    double maxd = 0, maxr = 0;
    for (size_t i = 0; i < (size_t)rows * VOCAB; i++) {
        double r = ref[(size_t)row0 * VOCAB + i], d = fabs(got[i] - r);
        if (d > maxd)
            maxd = d;
        if (fabs(r) > maxr)
            maxr = fabs(r);
    }
    return maxd / maxr;
}

static void report(const char *what, double err, double tol)
{
    printf("%-44s max rel error %.3g (tolerance %.0e)\n", what, err, tol);
    CHECK(err <= tol, "%s: max rel error %.3g > %.0e", what, err, tol);
}

static int load_reference(void)
{
    json_error_t jerr;
    json_t *root = json_load_file(fixture_path("tiny-llama/reference_logits.json"), 0, &jerr);
    if (!root) {
        fprintf(stderr, "reference_logits.json: %s\n", jerr.text);
        return -1;
    }
    json_t *arr = json_object_get(root, "token_ids");
    if (json_array_size(arr) != N_TOK) {
        fprintf(stderr, "reference_logits.json: token_ids has %zu ids\n", json_array_size(arr));
        json_decref(root);
        return -1;
    }
    for (int i = 0; i < N_TOK; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    json_decref(root);
    ref = malloc((size_t)N_TOK * VOCAB * sizeof *ref);
    FILE *f = fopen(fixture_path("tiny-llama/reference_logits.f32"), "rb");
    size_t got = f && ref ? fread(ref, sizeof *ref, (size_t)N_TOK * VOCAB, f) : 0;
    if (f)
        fclose(f);
    if (got != (size_t)N_TOK * VOCAB) {
        fprintf(stderr, "reference_logits.f32: read %zu floats\n", got);
        return -1;
    }
    return 0;
}

static void test_full(const gptq_model *m, float *logits)
{
    CHECK_OK(gptq_model_forward(m, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
    report("full sequence (no cache)", rel_err(logits, 0, N_TOK), TOL_F32);
    float last[VOCAB];
    CHECK_OK(gptq_model_forward(m, NULL, ids, 1, N_TOK, NULL, NULL, GPTQ_FWD_LAST_ONLY, last));
    report("last position only", rel_err(last, N_TOK - 1, 1), TOL_F32);
}

/* A budget that records what the cache asks and refuses past `limit`. */
typedef struct budget {
    int64_t held, limit;
} budget;

static gptq_status budget_fn(void *user, int64_t delta)
{
    budget *b = user;
    if (delta > 0 && b->held + delta > b->limit)
        return gptq_fail(GPTQ_ERR_NOMEM, "test budget: %lld + %lld bytes", (long long)b->held,
                         (long long)delta);
    b->held += delta;
    return GPTQ_OK;
}

/* The default (not exact) cache holds binary16 keys and values: half the
 * bytes, each key and value rounded once (relative 2^-11), measured 1.2e-4
 * of the largest logit after 128 positions; the bound is 1e-3. */
static void test_fast_cache(gptq_model *m, float *logits)
{
    const int was = gptq_model_set_exact(m, 0);
    const gptq_model_config *c = gptq_model_get_config(m);
    const size_t per_pos = 2 * (size_t)c->num_hidden_layers * c->num_key_value_heads * c->head_dim *
                           sizeof(uint16_t);
    gptq_kv *kv = NULL;
    CHECK_OK(gptq_kv_create(m, 1, N_TOK, &kv));
    for (int t = 0; kv && t < N_TOK; t++)
        CHECK_OK(
            gptq_model_forward(m, kv, ids + t, 1, 1, NULL, NULL, 0, logits + (size_t)t * VOCAB));
    const double err = rel_err(logits, 0, N_TOK);
    report("kv cache in binary16, token by token", err, 1e-3);
    CHECK(err > 0, "a binary16 cache gave the float32 cache's logits exactly: not binary16?");
    CHECK(kv && gptq_kv_bytes(kv) == N_TOK * per_pos, "binary16 cache: %zu bytes, want %zu",
          kv ? gptq_kv_bytes(kv) : 0, N_TOK * per_pos);
    gptq_kv_free(kv);
    gptq_model_set_exact(m, was);
}

static void test_incremental(const gptq_model *m, float *logits)
{
    gptq_kv *kv = NULL;
    const gptq_model_config *c = gptq_model_get_config(m);
    /* bytes of n positions of one slot: keys and values of every layer */
    const size_t per_pos = 2 * (size_t)c->num_hidden_layers * c->num_key_value_heads * c->head_dim *
                           sizeof(float);
    CHECK_OK(gptq_kv_create(m, 1, N_TOK, &kv));
    if (!kv)
        return;
    budget b = {0, INT64_MAX};
    gptq_kv_set_budget(kv, budget_fn, &b);
    CHECK(gptq_kv_bytes(kv) == 0, "a new cache holds %zu bytes", gptq_kv_bytes(kv));
    /* token by token: the slot grows past 16, 32 and 64 positions on the way */
    for (int t = 0; t < N_TOK; t++)
        CHECK_OK(
            gptq_model_forward(m, kv, ids + t, 1, 1, NULL, NULL, 0, logits + (size_t)t * VOCAB));
    CHECK(gptq_kv_len(kv, 0) == N_TOK, "kv length %d", gptq_kv_len(kv, 0));
    report("kv cache, token by token", rel_err(logits, 0, N_TOK), TOL_F32);
    CHECK(gptq_kv_bytes(kv) == N_TOK * per_pos && b.held == (int64_t)gptq_kv_bytes(kv),
          "after %d positions: %zu bytes held, budget %lld, want %zu", N_TOK, gptq_kv_bytes(kv),
          (long long)b.held, N_TOK * per_pos);
    gptq_kv_truncate(kv, 0, 0);
    CHECK(gptq_kv_bytes(kv) == 0 && b.held == 0, "an emptied slot holds %zu bytes (budget %lld)",
          gptq_kv_bytes(kv), (long long)b.held);
    /* a budget that refuses: the forward fails with its status, nothing stored */
    b.limit = (int64_t)(16 * per_pos);
    gptq_status bst = gptq_model_forward(m, kv, ids, 1, 17, NULL, NULL, 0, logits);
    CHECK(bst == GPTQ_ERR_NOMEM && strstr(gptq_errmsg(), "test budget") && gptq_kv_len(kv, 0) == 0 &&
              gptq_kv_bytes(kv) == 0,
          "over budget: %s '%s', len %d, %zu bytes", gptq_status_name(bst), gptq_errmsg(),
          gptq_kv_len(kv, 0), gptq_kv_bytes(kv));
    b.limit = INT64_MAX;

    /* uneven chunks, then rewind to 40 and redo the rest in one chunk */
    gptq_kv_truncate(kv, 0, 0);
    static const int chunks[] = {1, 50, 7, 42, 28};
    int at = 0;
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        CHECK_OK(gptq_model_forward(m, kv, ids + at, 1, chunks[i], NULL, NULL, 0,
                                    logits + (size_t)at * VOCAB));
        at += chunks[i];
    }
    report("kv cache, chunks 1+50+7+42+28", rel_err(logits, 0, N_TOK), TOL_F32);
    gptq_kv_truncate(kv, 0, 40);
    CHECK_OK(
        gptq_model_forward(m, kv, ids + 40, 1, N_TOK - 40, NULL, NULL, 0, logits + 40 * VOCAB));
    report("kv cache, rewound to 40", rel_err(logits + 40 * VOCAB, 40, N_TOK - 40), TOL_F32);

    /* errors: past the capacity, an id outside the vocabulary, a gap */
    int32_t bad = VOCAB;
    gptq_status st = gptq_model_forward(m, kv, ids, 1, 1, NULL, NULL, 0, logits);
    CHECK(st == GPTQ_ERR_LIMIT, "forward past capacity: %s", gptq_status_name(st));
    gptq_kv_truncate(kv, 0, 10);
    st = gptq_model_forward(m, kv, &bad, 1, 1, NULL, NULL, 0, logits);
    CHECK(st == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "4096"), "bad id: %s %s",
          gptq_status_name(st), gptq_errmsg());
    int32_t start = 20;
    st = gptq_model_forward(m, kv, ids, 1, 1, NULL, &start, 0, logits);
    CHECK(st == GPTQ_ERR_ARG, "start past the cached length: %s", gptq_status_name(st));
    gptq_kv_free(kv);
}

/* Two sequences in one batch: both the full text (no cache), then two cache
 * slots at different positions advanced together. */
static void test_batch(const gptq_model *m, float *logits)
{
    int32_t two[2 * N_TOK];
    memcpy(two, ids, sizeof ids);
    memcpy(two + N_TOK, ids, sizeof ids);
    float *both = malloc((size_t)2 * N_TOK * VOCAB * sizeof *both);
    if (!both)
        return;
    CHECK_OK(gptq_model_forward(m, NULL, two, 2, N_TOK, NULL, NULL, 0, both));
    report("batch of 2, sequence 0", rel_err(both, 0, N_TOK), TOL_F32);
    report("batch of 2, sequence 1", rel_err(both + (size_t)N_TOK * VOCAB, 0, N_TOK), TOL_F32);

    gptq_kv *kv = NULL;
    CHECK_OK(gptq_kv_create(m, 3, N_TOK, &kv));
    if (!kv) {
        free(both);
        return;
    }
    /* slot 2 holds 64 tokens, slot 0 holds 32; then 16 more for each at once,
     * listed in the order (slot 2, slot 0) */
    CHECK_OK(gptq_model_forward(m, kv, ids, 1, 64, (int[]){2}, NULL, 0, logits));
    CHECK_OK(gptq_model_forward(m, kv, ids, 1, 32, (int[]){0}, NULL, 0, logits));
    int32_t next[32];
    memcpy(next, ids + 64, 16 * sizeof *next);
    memcpy(next + 16, ids + 32, 16 * sizeof *next);
    CHECK_OK(gptq_model_forward(m, kv, next, 2, 16, (int[]){2, 0}, NULL, 0, both));
    report("batch of 2 slots at positions 64 and 32 (a)", rel_err(both, 64, 16), TOL_F32);
    report("batch of 2 slots at positions 64 and 32 (b)", rel_err(both + 16 * VOCAB, 32, 16),
           TOL_F32);
    CHECK(gptq_kv_len(kv, 2) == 80 && gptq_kv_len(kv, 0) == 48 && gptq_kv_len(kv, 1) == 0,
          "slot lengths %d %d %d", gptq_kv_len(kv, 2), gptq_kv_len(kv, 0), gptq_kv_len(kv, 1));
    /* then one decode step each, last logits only */
    int32_t step[2] = {ids[80], ids[48]};
    CHECK_OK(gptq_model_forward(m, kv, step, 2, 1, (int[]){2, 0}, NULL, GPTQ_FWD_LAST_ONLY, both));
    report("batch decode step (a)", rel_err(both, 80, 1), TOL_F32);
    report("batch decode step (b)", rel_err(both + VOCAB, 48, 1), TOL_F32);
    gptq_status st = gptq_model_forward(m, kv, step, 2, 1, (int[]){0, 0}, NULL, 0, both);
    CHECK(st == GPTQ_ERR_ARG, "two sequences in one slot: %s", gptq_status_name(st));

    /* last logits only for 16 new tokens in each of two slots (slot 1 at
     * position 0, slot 0 at 48): the last layer runs only their last rows
     * past attention, yet caches every position, as the next steps show */
    gptq_kv_truncate(kv, 0, 48);
    gptq_kv_truncate(kv, 1, 0);
    memcpy(next, ids, 16 * sizeof *next);
    memcpy(next + 16, ids + 48, 16 * sizeof *next);
    CHECK_OK(gptq_model_forward(m, kv, next, 2, 16, (int[]){1, 0}, NULL, GPTQ_FWD_LAST_ONLY, both));
    report("batch of 2 slots, last only (a)", rel_err(both, 15, 1), TOL_F32);
    report("batch of 2 slots, last only (b)", rel_err(both + VOCAB, 63, 1), TOL_F32);
    for (int t = 0; t < 4; t++) {
        int32_t two_steps[2] = {ids[16 + t], ids[64 + t]};
        CHECK_OK(gptq_model_forward(m, kv, two_steps, 2, 1, (int[]){1, 0}, NULL,
                                    GPTQ_FWD_LAST_ONLY, both));
        report("after last only, decode step (a)", rel_err(both, 16 + t, 1), TOL_F32);
        report("after last only, decode step (b)", rel_err(both + VOCAB, 64 + t, 1), TOL_F32);
    }
    gptq_kv_free(kv);
    free(both);
}

/* ---- several threads, one model, a KV cache each ----------------------------------- */

typedef struct thread_job {
    const gptq_model *m;
    int chunk; /* tokens per forward */
    double err;
    int failed;
} thread_job;

static void *thread_main(void *arg)
{
    thread_job *job = arg;
    gptq_kv *kv = NULL;
    float *logits = malloc((size_t)N_TOK * VOCAB * sizeof *logits);
    job->failed = !logits || gptq_kv_create(job->m, 1, N_TOK, &kv) != GPTQ_OK;
    for (int t = 0; !job->failed && t < N_TOK; t += job->chunk)
        job->failed = gptq_model_forward(job->m, kv, ids + t, 1, job->chunk, NULL, NULL, 0,
                                         logits + (size_t)t * VOCAB) != GPTQ_OK;
    job->err = job->failed ? INFINITY : rel_err(logits, 0, N_TOK);
    gptq_kv_free(kv);
    free(logits);
    return NULL;
}

static void test_threads(const gptq_model *m)
{
    thread_job jobs[4];
    pthread_t tid[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){.m = m, .chunk = i % 2 ? 1 : 32};
        CHECK(pthread_create(&tid[i], NULL, thread_main, &jobs[i]) == 0, "pthread_create");
    }
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        CHECK(!jobs[i].failed, "thread %d: forward failed", i);
        worst = fmax(worst, jobs[i].err);
    }
    report("4 threads, one model, own kv caches", worst, TOL_F32);
}

/* ---- per-layer entry points and hooks ---------------------------------------------- */

typedef struct hook_log {
    int calls[4][GPTQ_LIN_COUNT];
    int bad_shape;
} hook_log;

static gptq_status log_hook(void *user, int layer, gptq_linear_id which, const float *X, int rows,
                            int cols)
{
    hook_log *log = user;
    int want_cols = which == GPTQ_LIN_DOWN ? 768 : 256;
    if (rows != 2 * N_TOK || cols != want_cols || !isfinite(X[(size_t)rows * cols - 1]))
        log->bad_shape++;
    if (layer >= 0 && layer < 4)
        log->calls[layer][which]++;
    return GPTQ_OK;
}

static gptq_status cancel_hook(void *user, int layer, gptq_linear_id which, const float *X,
                               int rows, int cols)
{
    return which == GPTQ_LIN_O ? GPTQ_ERR_CANCELED : GPTQ_OK;
}

static void test_layers(gptq_model *m, float *logits)
{
    const gptq_model_config *c = gptq_model_get_config(m);
    float *h = malloc((size_t)2 * N_TOK * c->hidden_size * sizeof *h);
    int32_t two[2 * N_TOK];
    memcpy(two, ids, sizeof ids);
    memcpy(two + N_TOK, ids, sizeof ids);
    hook_log log = {0};
    gptq_layer_hooks hooks = {log_hook, &log};
    CHECK_OK(gptq_model_embed(m, two, 2, N_TOK, h));
    for (int l = 0; l < c->num_hidden_layers; l++)
        CHECK_OK(gptq_model_layer_forward(m, l, h, 2, N_TOK, &hooks));
    CHECK_OK(gptq_model_head(m, h + (size_t)N_TOK * c->hidden_size, N_TOK, logits));
    report("embed + layer_forward x4 + head", rel_err(logits, 0, N_TOK), TOL_F32);
    for (int l = 0; l < 4; l++)
        CHECK(log.calls[l][GPTQ_LIN_Q] == 1 && log.calls[l][GPTQ_LIN_K] == 0 &&
                  log.calls[l][GPTQ_LIN_O] == 1 && log.calls[l][GPTQ_LIN_GATE] == 1 &&
                  log.calls[l][GPTQ_LIN_UP] == 0 && log.calls[l][GPTQ_LIN_DOWN] == 1,
              "layer %d hook calls q%d k%d o%d gate%d up%d down%d", l, log.calls[l][0],
              log.calls[l][1], log.calls[l][3], log.calls[l][4], log.calls[l][5], log.calls[l][6]);
    CHECK(log.bad_shape == 0, "%d hook calls with a wrong shape", log.bad_shape);
    hooks.before_linear = cancel_hook;
    gptq_status st = gptq_model_layer_forward(m, 0, h, 2, N_TOK, &hooks);
    CHECK(st == GPTQ_ERR_CANCELED, "hook cancel: %s", gptq_status_name(st));
    free(h);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

/* The layer in parts (the calibration pipeline's way) composes to exactly
 * layer_forward, and each part's output is what the hook of that linear
 * group sees. */
typedef struct capture_all {
    float *X[GPTQ_LIN_COUNT];
    size_t n[GPTQ_LIN_COUNT];
} capture_all;

static gptq_status copy_hook(void *user, int layer, gptq_linear_id which, const float *X,
                             int rows, int cols)
{
    capture_all *c = user;
    (void)layer;
    c->n[which] = (size_t)rows * cols;
    c->X[which] = malloc(c->n[which] * sizeof(float));
    if (c->X[which])
        memcpy(c->X[which], X, c->n[which] * sizeof(float));
    return GPTQ_OK;
}

static void test_layer_parts(const gptq_model *m)
{
    const gptq_model_config *c = gptq_model_get_config(m);
    const size_t T = 2 * N_TOK, hidden = (size_t)c->hidden_size;
    const size_t q_dim = (size_t)c->num_attention_heads * c->head_dim;
    float *h = malloc(T * hidden * sizeof *h), *ref_h = malloc(T * hidden * sizeof *h);
    float *x = malloc(T * hidden * sizeof *x), *att = malloc(T * q_dim * sizeof *att);
    float *act = malloc(T * (size_t)c->intermediate_size * sizeof *act);
    int32_t two[2 * N_TOK];
    capture_all cap = {0};
    gptq_layer_hooks hooks = {copy_hook, &cap};
    if (!h || !ref_h || !x || !att || !act)
        goto done;
    memcpy(two, ids, sizeof ids);
    memcpy(two + N_TOK, ids, sizeof ids);
    CHECK_OK(gptq_model_embed(m, two, 2, N_TOK, h));
    memcpy(ref_h, h, T * hidden * sizeof *h);
    CHECK_OK(gptq_model_layer_forward(m, 1, ref_h, 2, N_TOK, &hooks));
    CHECK_OK(gptq_model_layer_part(m, 1, GPTQ_PART_ATTN_NORM, h, NULL, x, 2, N_TOK));
    CHECK(cap.X[GPTQ_LIN_Q] && max_abs_diff(x, cap.X[GPTQ_LIN_Q], T * hidden) == 0,
          "ATTN_NORM differs from q_proj's input");
    CHECK_OK(gptq_model_layer_part(m, 1, GPTQ_PART_ATTENTION, h, NULL, att, 2, N_TOK));
    CHECK(cap.X[GPTQ_LIN_O] && max_abs_diff(att, cap.X[GPTQ_LIN_O], T * q_dim) == 0,
          "ATTENTION differs from o_proj's input");
    CHECK_OK(gptq_model_layer_part(m, 1, GPTQ_PART_ATTN_OUT, h, att, x, 2, N_TOK));
    CHECK(cap.X[GPTQ_LIN_GATE] && max_abs_diff(x, cap.X[GPTQ_LIN_GATE], T * hidden) == 0,
          "ATTN_OUT's norm differs from gate_proj's input");
    CHECK_OK(gptq_model_layer_part(m, 1, GPTQ_PART_MLP_NORM, h, NULL, x, 2, N_TOK));
    CHECK(cap.X[GPTQ_LIN_GATE] && max_abs_diff(x, cap.X[GPTQ_LIN_GATE], T * hidden) == 0,
          "MLP_NORM differs from gate_proj's input");
    CHECK_OK(gptq_model_layer_part(m, 1, GPTQ_PART_MLP_ACT, NULL, x, act, 2, N_TOK));
    CHECK(cap.X[GPTQ_LIN_DOWN] &&
              max_abs_diff(act, cap.X[GPTQ_LIN_DOWN], T * c->intermediate_size) == 0,
          "MLP_ACT differs from down_proj's input");
    CHECK_OK(gptq_model_layer_part(m, 1, GPTQ_PART_MLP_OUT, h, act, NULL, 2, N_TOK));
    CHECK(max_abs_diff(h, ref_h, T * hidden) == 0, "the parts do not compose to layer_forward");
    gptq_status st = gptq_model_layer_part(m, 9, GPTQ_PART_MLP_NORM, h, NULL, x, 2, N_TOK);
    CHECK(st == GPTQ_ERR_ARG, "layer 9 of 4: %s", gptq_status_name(st));
    st = gptq_model_layer_part(m, 1, (gptq_layer_part)42, h, NULL, x, 2, N_TOK);
    CHECK(st == GPTQ_ERR_ARG, "part 42: %s", gptq_status_name(st));
    printf("%-44s exact\n", "layer parts compose to layer_forward");
done:
    for (int w = 0; w < GPTQ_LIN_COUNT; w++)
        free(cap.X[w]);
    free(h), free(ref_h), free(x), free(att), free(act);
}

/* ---- attention against a float64 brute-force twin ---------------------------------- */

static void attention_twin(const gptq_attention_args *a, double *out)
{
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    const int qs = a->n_heads * hd, ks = a->n_kv_heads * hd;
    for (int t = 0; t < a->len; t++)
        for (int h = 0; h < a->n_heads; h++) {
            int pos = a->start + t, kvh = h / group;
            double s[512], mx = -INFINITY, sum = 0;
            for (int j = 0; j <= pos; j++) {
                int visible = a->window <= 0 || j > pos - a->window;
                double d = 0;
                for (int e = 0; e < hd; e++)
                    d += (double)a->q[t * qs + h * hd + e] * a->k[j * ks + kvh * hd + e];
                s[j] = visible ? d * a->scale + (a->alibi ? (double)a->alibi[h] * j : 0)
                               : -INFINITY;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= pos; j++)
                sum += s[j] = exp(s[j] - mx);
            for (int e = 0; e < hd; e++) {
                double o = 0;
                for (int j = 0; j <= pos; j++)
                    o += s[j] / sum * a->v[j * ks + kvh * hd + e];
                out[t * qs + h * hd + e] = o;
            }
        }
}

/* The CPU's attention (kernels/cpu/attention.c on AVX2: items of 32 query
 * rows, 4-row score tiles, values 32 dimensions at a time; head_dim 12 takes
 * the portable loops, per row below 16 rows and blocked sgemm above), with
 * and without a sliding window, GQA, queries after cached tokens, on float32
 * and on binary16 keys and values (against the twin on their widening), and
 * with BLOOM's ALiBi slopes for 4 heads (scores grow to slope x position,
 * ~70 here, whose float32 rounding the bound allows for). */
static void test_attention(void)
{
    const gptq_backend *be = gptq_backend_cpu();
    enum { NH = 4, NKV = 2, MAXHD = 72, MAXK = 300 };
    static float q[MAXK * NH * MAXHD], k[MAXK * NKV * MAXHD], v[MAXK * NKV * MAXHD],
        out[MAXK * NH * MAXHD];
    static double want[MAXK * NH * MAXHD];
    uint64_t seed = 7;
    for (int i = 0; i < MAXK * NH * MAXHD; i++)
        q[i] = (float)test_rand_normal(&seed);
    for (int i = 0; i < MAXK * NKV * MAXHD; i++)
        k[i] = (float)test_rand_normal(&seed), v[i] = (float)test_rand_normal(&seed);
    /* a binary16 cache of the same keys and values, and their exact widening
     * for the twin */
    static uint16_t k16[MAXK * NKV * MAXHD], v16[MAXK * NKV * MAXHD];
    static float kw[MAXK * NKV * MAXHD], vw[MAXK * NKV * MAXHD];
    for (int i = 0; i < MAXK * NKV * MAXHD; i++) {
        k16[i] = gptq_f32_to_f16(k[i]), v16[i] = gptq_f32_to_f16(v[i]);
        kw[i] = gptq_f16_to_f32(k16[i]), vw[i] = gptq_f16_to_f32(v16[i]);
    }
    static const struct {
        int start, len, window;
    } cases[] = {{0, 1, 0},  {37, 3, 0},   {0, 40, 0}, {5, 200, 0},
                 {60, 9, 7}, {3, 290, 50}, {0, 17, 1}, {250, 33, 0},
                 {120, 1, 0}, {200, 1, 37}}; /* one row: decoding's direct scores */
    static const int head_dims[] = {16, 72, 12}; /* 72: two chunks of 32 and one of 8 */
    static const float slopes[NH] = {0.25f, 0.0625f, 0.015625f, 0.00390625f};
    for (int f16 = 0; f16 < 4; f16++)
        for (size_t hi = 0; hi < sizeof head_dims / sizeof head_dims[0]; hi++)
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
                const int hd = head_dims[hi], alibi = f16 >= 2;
                const int half = f16 & 1;
                gptq_attention_args a = {.q = q, .k = half ? NULL : k, .v = half ? NULL : v,
                                         .k_f16 = half ? k16 : NULL, .v_f16 = half ? v16 : NULL,
                                         .out = out, .len = cases[c].len,
                                         .start = cases[c].start, .n_heads = NH,
                                         .n_kv_heads = NKV, .head_dim = hd,
                                         .window = cases[c].window,
                                         .scale = 1.0f / sqrtf((float)hd),
                                         .alibi = alibi ? slopes : NULL};
                CHECK_OK(be->attention(be, &a));
                gptq_attention_args t = a;
                t.k = half ? kw : k, t.v = half ? vw : v;
                attention_twin(&t, want);
                double maxd = 0;
                for (int i = 0; i < a.len * NH * hd; i++)
                    maxd = fmax(maxd, fabs(out[i] - want[i]));
                /* outputs are O(1) averages of N(0,1) values: float32 rounding,
                 * of scores up to slope x position with ALiBi */
                const double most = 1e-5 * (alibi ? 1 + slopes[0] * (a.start + a.len) / 8 : 1);
                CHECK(maxd < most,
                      "attention%s%s head_dim %d start %d len %d window %d: max |diff| %.3g vs "
                      "float64", f16 & 1 ? " (binary16 cache)" : "", alibi ? " ALiBi" : "", hd,
                      a.start, a.len, a.window, maxd);
            }
}

/* SwiGLU's silu(g)·u (the vector exp of kernels/cpu/vexp.h on AVX2) against
 * float64: within 8·2^-24 relative over the float range (its exp within 2
 * ulps, the division and product 1 each) plus 8e-36 absolute (the exp
 * clamps its argument at 88.38, so silu(-100) comes out -4e-37 instead of
 * -4e-42), NaN kept NaN. */
static void test_silu(void)
{
    enum { N = 4099 }; /* a tail past the last 8 */
    static float g[N], u[N], out[N];
    uint64_t seed = 11;
    for (int i = 0; i < N; i++) {
        g[i] = (float)(i < N - 3 ? 40.0 * test_rand_normal(&seed) : 0.0);
        u[i] = (float)test_rand_normal(&seed);
    }
    g[0] = 88.5f, g[1] = -88.5f, g[2] = 100.0f, g[3] = -100.0f, g[4] = 1e-30f, g[5] = -0.0f;
    g[6] = NAN, g[N - 1] = NAN;
    const gptq_backend *be = gptq_backend_cpu();
    be->silu_mul(be, g, u, out, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        if (isnan(g[i])) {
            CHECK(isnan(out[i]), "silu(NaN) = %g, not NaN (element %d)", out[i], i);
            continue;
        }
        const double err = fabs(out[i] - want) / (fabs(want) * 0x1p-24 + 1e-36);
        worst = fmax(worst, err);
    }
    CHECK(worst <= 8.0, "silu·u: %.2f × 2^-24 relative from float64 (allowed 8)", worst);
    printf("%-44s %.2f x 2^-24 relative from float64 (allowed 8)\n", "SwiGLU silu(g)*u", worst);
}

/* ---- a GPTQ checkpoint folder written from foreach_tensor loads back ------------- */

typedef struct writer_ctx {
    gptq_st_writer *w;
    void *keep[256]; /* converted buffers alive until the file is written */
    int n_keep;
} writer_ctx;

static gptq_status write_tensor(void *user, const char *name, const void *data, gptq_dtype dt,
                                int ndim, const int64_t *shape, const gptq_linear *L)
{
    writer_ctx *ctx = user;
    char key[256];
    gptq_status st;
    if (!L)
        return gptq_st_writer_add(ctx->w, name, dt, ndim, shape, data);
    /* a checkpoint holds v1: act-order columns back in their order */
    const gptq_packed *P = &L->P;
    gptq_packed v1;
    if (L->perm) {
        if ((st = gptq_linear_to_v1(L, &v1)) != GPTQ_OK)
            return st;
        void *arrays[4] = {v1.qweight, v1.qzeros, v1.scales, v1.g_idx};
        for (int i = 0; i < 4; i++) {
            if (ctx->n_keep == sizeof ctx->keep / sizeof *ctx->keep)
                return gptq_fail(GPTQ_ERR_NOMEM, "write_tensor: keep[] is full");
            ctx->keep[ctx->n_keep++] = arrays[i];
        }
        P = &v1;
    }
    int64_t qw[2] = {(int64_t)P->cols * P->bits / 32, P->rows};
    int64_t qz[2] = {P->groups, (int64_t)P->rows * P->bits / 32};
    int64_t sc[2] = {P->groups, P->rows}, gi[1] = {P->cols};
    snprintf(key, sizeof key, "%s.qweight", name);
    if ((st = gptq_st_writer_add(ctx->w, key, GPTQ_DT_I32, 2, qw, P->qweight)) != GPTQ_OK)
        return st;
    snprintf(key, sizeof key, "%s.qzeros", name);
    if ((st = gptq_st_writer_add(ctx->w, key, GPTQ_DT_I32, 2, qz, P->qzeros)) != GPTQ_OK)
        return st;
    snprintf(key, sizeof key, "%s.scales", name);
    if ((st = gptq_st_writer_add(ctx->w, key, GPTQ_DT_F16, 2, sc, P->scales)) != GPTQ_OK)
        return st;
    snprintf(key, sizeof key, "%s.g_idx", name);
    return gptq_st_writer_add(ctx->w, key, GPTQ_DT_I32, 1, gi, P->g_idx);
}

/* Attention biases that cancel: q, k zero, v = b, o = -W_o b. Attention
 * rows are convex combinations of values, so b passes through it whole and
 * o_proj's bias removes it again; the logits must not move. */
static void add_cancelling_biases(const gptq_model *m, writer_ctx *ctx, int with_o)
{
    const gptq_model_config *c = gptq_model_get_config(m);
    int q_rows, kv_rows, o_rows, o_cols;
    gptq_model_linear_shape(m, GPTQ_LIN_Q, &q_rows, NULL);
    gptq_model_linear_shape(m, GPTQ_LIN_K, &kv_rows, NULL);
    gptq_model_linear_shape(m, GPTQ_LIN_O, &o_rows, &o_cols);
    uint64_t seed = 11;
    float *Wo = malloc((size_t)o_rows * o_cols * sizeof *Wo);
    for (int l = 0; l < c->num_hidden_layers && ctx->n_keep + 4 <= 256; l++) {
        float *bq = calloc((size_t)q_rows, sizeof *bq), *bk = calloc((size_t)kv_rows, sizeof *bk);
        float *bv = malloc((size_t)kv_rows * sizeof *bv), *bo = calloc((size_t)o_rows, sizeof *bo);
        for (int i = 0; i < kv_rows; i++)
            bv[i] = (float)test_rand_normal(&seed);
        CHECK_OK(gptq_model_get_linear_f32(m, l, GPTQ_LIN_O, Wo));
        /* GQA: attention head h reads kv head h / group, so its output
         * column block gets bv's block of that kv head */
        int hd = c->head_dim, group = c->num_attention_heads / c->num_key_value_heads;
        for (int r = 0; r < o_rows; r++) {
            double sum = 0;
            for (int col = 0; col < o_cols; col++)
                sum +=
                    (double)Wo[(size_t)r * o_cols + col] * bv[(col / hd / group) * hd + col % hd];
            bo[r] = (float)-sum;
        }
        float *bufs[4] = {bq, bk, bv, bo};
        int64_t shapes[4] = {q_rows, kv_rows, kv_rows, o_rows};
        const char *names[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        for (int i = 0; i < 4; i++) {
            char key[128];
            if (i == 3 && !with_o) {
                free(bufs[i]);
                continue;
            }
            snprintf(key, sizeof key, "model.layers.%d.self_attn.%s.bias", l, names[i]);
            CHECK_OK(gptq_st_writer_add(ctx->w, key, GPTQ_DT_F32, 1, &shapes[i], bufs[i]));
            ctx->keep[ctx->n_keep++] = bufs[i];
        }
    }
    free(Wo);
}

/* Write model m as an HF folder (F32 tensors, packed linears as GPTQ v1
 * tensors) with the fixture's config plus `config_extra` JSON members
 * (later keys override). biases: 0 none, 1 cancelling q/k/v/o biases,
 * 2 the same without o's. dir is a mkdtemp template, filled in. Returns 0
 * on success. */
static int write_model_dir(const gptq_model *m, char *dir, const char *config_extra, int biases)
{
    char path[512], cfg[8192];
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return -1;
    }
    writer_ctx ctx = {0};
    CHECK_OK(gptq_st_writer_create(&ctx.w));
    if (!ctx.w)
        return -1;
    CHECK_OK(gptq_model_foreach_tensor(m, write_tensor, &ctx));
    if (biases)
        add_cancelling_biases(m, &ctx, biases == 1);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(gptq_st_writer_write(ctx.w, path));
    gptq_st_writer_destroy(ctx.w);
    for (int i = 0; i < ctx.n_keep; i++)
        free(ctx.keep[i]);

    FILE *f = fopen(fixture_path("tiny-llama/config.json"), "r");
    size_t n = f ? fread(cfg, 1, sizeof cfg - 512, f) : 0;
    if (f)
        fclose(f);
    char *end = NULL;
    for (char *p = cfg + n; p > cfg && !end; p--)
        if (p[-1] == '}')
            end = p - 1;
    if (!end)
        return -1;
    snprintf(end, sizeof cfg - (size_t)(end - cfg), ", %s}\n", config_extra);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(cfg, f);
    fclose(f);
    return 0;
}

static void remove_model_dir(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

/* max |logits - want| / max |want| of the folder's model on the fixture ids. */
static double folder_error(const char *dir, const float *want, gptq_model **out)
{
    gptq_model *m = NULL;
    double maxd = INFINITY, maxr = 0;
    CHECK_OK(gptq_model_load(dir, &m));
    float *logits = malloc((size_t)N_TOK * VOCAB * sizeof *logits);
    if (m && logits) {
        CHECK_OK(gptq_model_forward(m, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
        maxd = 0;
        for (size_t i = 0; i < (size_t)N_TOK * VOCAB; i++) {
            maxd = fmax(maxd, fabs(logits[i] - want[i]));
            maxr = fmax(maxr, fabs(want[i]));
        }
    }
    free(logits);
    *out = m;
    return maxr > 0 ? maxd / maxr : maxd;
}

/* A GPTQ checkpoint written from foreach_tensor loads back with the same
 * linears packed and the same logits. */
static void test_checkpoint(const gptq_model *q, const float *want)
{
    char dir[] = "/tmp/test_llama.XXXXXX";
    if (write_model_dir(q, dir,
                        "\"quantization_config\": {\"bits\": 4, \"group_size\": 128, \"desc_act\": "
                        "false, \"sym\": false, \"quant_method\": \"gptq\", "
                        "\"checkpoint_format\": \"gptq\"}",
                        0) != 0)
        return;
    gptq_model *m = NULL;
    double err = folder_error(dir, want, &m);
    CHECK(err == 0, "checkpoint reload changed logits by %g", err);
    CHECK(m && gptq_model_linear_packed(m, 1, GPTQ_LIN_DOWN) != NULL &&
              gptq_model_linear_packed(m, 0, GPTQ_LIN_DOWN) == NULL,
          "checkpoint: layer 1 should load packed, layer 0 dense");
    gptq_model_free(m);
    remove_model_dir(dir);
}

/* Biases are loaded and applied: Llama attention_bias with cancelling
 * q/k/v/o biases keeps the reference logits; as Qwen2 (q/k/v biases, none
 * on o) the same v bias is not cancelled and must move them. */
static void test_biases(const gptq_model *base)
{
    char dir[] = "/tmp/test_llama.XXXXXX", dir2[] = "/tmp/test_llama.XXXXXX";
    gptq_model *m = NULL;
    if (write_model_dir(base, dir, "\"attention_bias\": true", 1) == 0) {
        double err = folder_error(dir, ref, &m);
        report("attention_bias (v bias cancelled by o bias)", err, TOL_F32);
        CHECK(m && gptq_model_linear_bias(m, 2, GPTQ_LIN_V) &&
                  gptq_model_linear_bias(m, 2, GPTQ_LIN_O) &&
                  !gptq_model_linear_bias(m, 2, GPTQ_LIN_DOWN),
              "Llama attention_bias: bias pointers");
        gptq_model_free(m);
        remove_model_dir(dir);
    }
    if (write_model_dir(base, dir2, "\"architectures\": [\"Qwen2ForCausalLM\"]", 2) == 0) {
        double err = folder_error(dir2, ref, &m);
        printf("%-44s max rel error %.3g (must be > 1e-2)\n", "Qwen2 q/k/v biases, v not cancelled",
               err);
        CHECK(err > 1e-2, "Qwen2 v bias did not move the logits (%.3g)", err);
        CHECK(m && gptq_model_get_config(m)->arch == GPTQ_ARCH_QWEN2 &&
                  gptq_model_linear_bias(m, 0, GPTQ_LIN_Q) &&
                  !gptq_model_linear_bias(m, 0, GPTQ_LIN_O),
              "Qwen2: bias pointers");
        gptq_model_free(m);
        remove_model_dir(dir2);
    }
}

/* ---- sharing: tensor table, copy into caller memory, a model on borrowed
 * tensors (the daemon's map path) ------------------------------------------------- */

typedef struct bump_arena {
    unsigned char *base;
    size_t used, cap;
} bump_arena;

static void *bump_alloc(void *ctx, size_t bytes)
{
    bump_arena *a = ctx;
    size_t at = (a->used + 63) & ~(size_t)63;
    if (at + bytes > a->cap)
        return NULL;
    a->used = at + bytes;
    return a->base + at;
}

static char *read_fixture_text(const char *rel)
{
    FILE *f = fopen(fixture_path(rel), "rb");
    char *buf = calloc(1, 1 << 16);
    if (f && buf)
        buf[fread(buf, 1, (1 << 16) - 1, f)] = 0;
    if (f)
        fclose(f);
    return buf;
}

/* q has layer 1 packed; want = its logits on the fixture ids. */
static void test_sharing(const gptq_model *q, const float *want)
{
    size_t n = gptq_model_tensor_count(q), need = 0;
    /* 39 dense tensors (embed, 4 x (2 norms + 7 linears), norm, lm_head);
     * 7 of the linears packed as 4 tensors each, and the 4 act-order ones
     * (test_set_linear) with their permutation */
    CHECK(n == 39 + 7 * 3 + 4, "tensor table of the packed model: %zu entries", n);
    for (size_t i = 0; i < n; i++)
        need += gptq_model_tensor_at(q, i)->bytes + 64;
    CHECK(gptq_model_tensor_at(q, n) == NULL, "tensor_at past the end");
    bump_arena arena = {malloc(need), 0, need};
    gptq_model *c = NULL, *v = NULL;
    float *logits = malloc((size_t)N_TOK * VOCAB * sizeof *logits);
    char *config = read_fixture_text("tiny-llama/config.json");
    if (!arena.base || !logits || !config)
        goto done;
    CHECK_OK(gptq_model_copy_with(q, bump_alloc, &arena, &c));
    if (!c)
        goto done;
    for (size_t i = 0; i < gptq_model_tensor_count(c); i++) {
        const unsigned char *d = gptq_model_tensor_at(c, i)->data;
        CHECK(d >= arena.base && d + gptq_model_tensor_at(c, i)->bytes <= arena.base + arena.used,
              "copy_with: tensor %s outside the arena", gptq_model_tensor_at(c, i)->name);
    }
    CHECK_OK(gptq_model_forward(c, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
    CHECK(max_abs_diff(logits, want, (size_t)N_TOK * VOCAB) == 0, "copy_with changed the logits");
    gptq_status st = gptq_model_set_linear_f32(c, 0, GPTQ_LIN_Q, logits);
    CHECK(st == GPTQ_ERR_BUSY, "set_linear on borrowed weights: %s", gptq_status_name(st));

    /* a model on c's tensors, with the plain HF config (bits and groups come
     * from the packed shapes) */
    const gptq_model_tensor *table = gptq_model_tensor_at(c, 0);
    CHECK_OK(gptq_model_from_tensors(config, table, gptq_model_tensor_count(c), &v));
    if (v) {
        CHECK(gptq_model_linear_packed(v, 1, GPTQ_LIN_UP) &&
                  gptq_model_linear_packed(v, 1, GPTQ_LIN_UP)->P.bits == 4 &&
                  gptq_model_linear_packed(v, 1, GPTQ_LIN_UP)->P.qweight ==
                      gptq_model_linear_packed(c, 1, GPTQ_LIN_UP)->P.qweight,
              "from_tensors: layer 1 up_proj should be a 4-bit view of c's");
        CHECK_OK(gptq_model_forward(v, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
        CHECK(max_abs_diff(logits, want, (size_t)N_TOK * VOCAB) == 0,
              "from_tensors changed the logits");
        gptq_model_free(v);
        v = NULL;
    }
    /* a missing tensor and a misaligned one are named */
    size_t m = gptq_model_tensor_count(c);
    gptq_model_tensor *partial = malloc(m * sizeof *partial);
    if (partial) {
        memcpy(partial, table, m * sizeof *partial);
        partial[5] = partial[m - 1];
        st = gptq_model_from_tensors(config, partial, m - 1, &v);
        CHECK(st == GPTQ_ERR_NOTFOUND && strstr(gptq_errmsg(), table[5].name),
              "from_tensors without %s: %s %s", table[5].name, gptq_status_name(st), gptq_errmsg());
        memcpy(partial, table, m * sizeof *partial);
        partial[2].data = (const char *)partial[2].data + 1;
        st = gptq_model_from_tensors(config, partial, m, &v);
        CHECK(st == GPTQ_ERR_FORMAT && strstr(gptq_errmsg(), "aligned"),
              "from_tensors with a misaligned tensor: %s %s", gptq_status_name(st), gptq_errmsg());
        free(partial);
    }
done:
    gptq_model_free(v);
    gptq_model_free(c); /* before the arena it borrows */
    free(arena.base);
    free(logits);
    free(config);
}

/* The backend copies on the CPU backend (the code path a GPU takes, with
 * host memory): to_backend whole and into an arena, layer by layer with
 * upload/drop; every variant must give q's logits exactly. */
static void test_backend_copies(const gptq_model *q, const float *want)
{
    const gptq_backend *cpu = gptq_backend_cpu();
    float *logits = malloc((size_t)N_TOK * VOCAB * sizeof *logits);
    gptq_model *a = NULL, *b = NULL, *c = NULL;
    size_t need = gptq_model_bytes(q) + 64 * 128;
    bump_arena arena = {malloc(need), 0, need};
    if (!logits || !arena.base)
        goto done;
    CHECK(gptq_model_backend(q) == cpu, "a loaded model is on the CPU backend");
    CHECK_OK(gptq_model_to_backend(q, cpu, NULL, NULL, 0, &a));
    if (a) {
        CHECK_OK(gptq_model_forward(a, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
        CHECK(max_abs_diff(logits, want, (size_t)N_TOK * VOCAB) == 0,
              "to_backend changed the logits");
        CHECK(gptq_model_tensor_count(a) == gptq_model_tensor_count(q),
              "to_backend: tensor table of %zu entries", gptq_model_tensor_count(a));
        /* layer 0 stays in the fixture file's F16: no float32 pointer */
        const gptq_model_tensor *t0 = NULL;
        for (size_t i = 0; i < gptq_model_tensor_count(a); i++)
            if (!strcmp(gptq_model_tensor_at(a, i)->name, "model.layers.0.self_attn.q_proj.weight"))
                t0 = gptq_model_tensor_at(a, i);
        CHECK(t0 && t0->dtype == GPTQ_DT_F16, "to_backend: layer 0 q_proj is not resident in F16");
        CHECK(gptq_model_linear_weight(a, 1, GPTQ_LIN_Q) == NULL &&
                  gptq_model_linear_weight(a, 0, GPTQ_LIN_Q) == NULL,
              "linear_weight: NULL for the packed layer 1 and the F16 layer 0");
    }
    CHECK_OK(gptq_model_to_backend(q, cpu, bump_alloc, &arena, 0, &b));
    if (b) {
        for (size_t i = 0; i < gptq_model_tensor_count(b); i++) {
            const unsigned char *d = gptq_model_tensor_at(b, i)->data;
            CHECK(d >= arena.base && d + gptq_model_tensor_at(b, i)->bytes <= arena.base + arena.used,
                  "to_backend into an arena: tensor %s outside it", gptq_model_tensor_at(b, i)->name);
        }
        CHECK_OK(gptq_model_forward(b, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
        CHECK(max_abs_diff(logits, want, (size_t)N_TOK * VOCAB) == 0,
              "to_backend into an arena changed the logits");
        CHECK(gptq_model_layer_upload(b, q, 0) == GPTQ_ERR_BUSY,
              "layer_upload into borrowed weights must be refused");
    }
    CHECK_OK(gptq_model_to_backend(q, cpu, NULL, NULL, GPTQ_TO_BACKEND_NO_LAYERS, &c));
    if (c) {
        gptq_status st = gptq_model_forward(c, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits);
        CHECK(st == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "not loaded"),
              "forward without layers: %s %s", gptq_status_name(st), gptq_errmsg());
        CHECK(gptq_model_tensor_count(c) == 0, "no table while layers are missing");
        int layers = gptq_model_get_config(c)->num_hidden_layers;
        for (int l = 0; l < layers; l++)
            CHECK_OK(gptq_model_layer_upload(c, q, l));
        CHECK_OK(gptq_model_forward(c, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
        CHECK(max_abs_diff(logits, want, (size_t)N_TOK * VOCAB) == 0,
              "layer-by-layer upload changed the logits");
        gptq_model_layer_drop(c, 2);
        st = gptq_model_forward(c, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits);
        CHECK(st == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "layer 2"),
              "forward after dropping layer 2: %s %s", gptq_status_name(st), gptq_errmsg());
        CHECK_OK(gptq_model_layer_upload(c, q, 2));
        CHECK_OK(gptq_model_forward(c, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
        CHECK(max_abs_diff(logits, want, (size_t)N_TOK * VOCAB) == 0,
              "re-uploading layer 2 changed the logits");
        gptq_model_free(c);
        c = NULL;
    }
    /* the calibration pipeline's copy: no head, so no logits */
    CHECK_OK(gptq_model_to_backend(q, cpu, NULL, NULL,
                                   GPTQ_TO_BACKEND_NO_LAYERS | GPTQ_TO_BACKEND_NO_HEAD, &c));
    if (c) {
        float h[256] = {0};
        gptq_status st = gptq_model_head(c, h, 1, logits);
        CHECK(st == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "without its head"),
              "head of a NO_HEAD copy: %s %s", gptq_status_name(st), gptq_errmsg());
    }
done:
    gptq_model_free(a);
    gptq_model_free(b);
    gptq_model_free(c);
    free(arena.base);
    free(logits);
}

/* Largest |logit − ref| decoding ids[0..n) one token at a time with a cache. */
static double decode_diff(gptq_model *m, const int32_t *ids, const float *ref, int n)
{
    gptq_kv *kv = NULL;
    CHECK_OK(gptq_kv_create(m, 1, n, &kv));
    double maxd = 0;
    for (int t = 0; kv && t < n; t++) {
        float row[VOCAB];
        CHECK_OK(gptq_model_forward(m, kv, ids + t, 1, 1, NULL, NULL, 0, row));
        maxd = fmax(maxd, max_abs_diff(row, ref + (size_t)t * VOCAB, VOCAB));
    }
    gptq_kv_free(kv);
    return maxd;
}

/* Replacing linears: dense round trip, then RTN 4-bit packed q/k/v/o/gate/
 * up/down of layer 1 (q, v, gate and down with their columns' groups
 * scattered as act-order leaves them) against the same weights dequantized
 * as float32. */
static void test_set_linear(gptq_model *m, float *logits)
{
    gptq_model *q = NULL, *d = NULL;
    CHECK_OK(gptq_model_clone(m, &q));
    CHECK_OK(gptq_model_clone(m, &d));
    if (!q || !d)
        goto done;
    float *W = malloc((size_t)768 * 256 * sizeof *W), *Q = malloc((size_t)768 * 256 * sizeof *Q);
    gptq_quant_config qc;
    gptq_quant_config_default(&qc);
    for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
        int rows, cols;
        gptq_model_linear_shape(m, (gptq_linear_id)w, &rows, &cols);
        CHECK_OK(gptq_model_get_linear_f32(m, 1, (gptq_linear_id)w, W));
        CHECK_OK(gptq_model_set_linear_f32(d, 1, (gptq_linear_id)w, W)); /* round trip */
        gptq_quant_result r;
        gptq_packed P;
        CHECK_OK(gptq_rtn_layer(W, rows, cols, &qc, &r));
        CHECK_OK(gptq_pack(&r, &P));
        if (w % 2 == 0) /* act-order style: each group's columns scattered */
            for (unsigned c = (unsigned)cols - 1, seed = 12345u + (unsigned)w; c > 0; c--) {
                seed = seed * 1103515245u + 12345u;
                int j = (int)(seed % (c + 1)), t = P.g_idx[c];
                P.g_idx[c] = P.g_idx[j], P.g_idx[j] = t;
            }
        CHECK_OK(gptq_packed_dequantize(&P, Q));
        CHECK_OK(gptq_model_set_linear_packed(q, 1, (gptq_linear_id)w, &P));
        CHECK(P.qweight == NULL, "set_linear_packed did not take ownership");
        CHECK(gptq_model_linear_packed(q, 1, (gptq_linear_id)w) != NULL, "linear %d not packed", w);
        CHECK_OK(gptq_model_get_linear_f32(q, 1, (gptq_linear_id)w, W));
        double maxd = 0;
        for (size_t i = 0; i < (size_t)rows * cols; i++)
            maxd = fmax(maxd, fabs(W[i] - Q[i]));
        CHECK(maxd == 0, "get_linear_f32 of packed %s differs from dequantize by %g",
              gptq_linear_name((gptq_linear_id)w), maxd);
        gptq_quant_result_free(&r);
    }
    CHECK(gptq_model_bytes(q) < gptq_model_bytes(m), "packed model bytes %zu >= %zu",
          gptq_model_bytes(q), gptq_model_bytes(m));
    CHECK_OK(gptq_model_forward(d, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
    report("clone + set_linear_f32 round trip", rel_err(logits, 0, N_TOK), TOL_F32);

    /* the dense twin of the packed model: dequantized weights as float32 */
    for (int w = 0; w < GPTQ_LIN_COUNT; w++) {
        CHECK_OK(gptq_model_get_linear_f32(q, 1, (gptq_linear_id)w, W));
        CHECK_OK(gptq_model_set_linear_f32(d, 1, (gptq_linear_id)w, W));
    }
    float *dense = malloc((size_t)N_TOK * VOCAB * sizeof *dense);
    CHECK_OK(gptq_model_forward(d, NULL, ids, 1, N_TOK, NULL, NULL, 0, dense));
    double maxr = 0;
    for (size_t i = 0; i < (size_t)N_TOK * VOCAB; i++)
        maxr = fmax(maxr, fabs(dense[i]));
    /* exact products: same weights, different kernels (qgemm vs sgemm), so
     * float32 rounding only */
    gptq_model_set_exact(q, 1);
    CHECK_OK(gptq_model_forward(q, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
    double maxd = max_abs_diff(logits, dense, (size_t)N_TOK * VOCAB);
    printf("%-44s max rel error %.3g (tolerance 1e-05)\n", "packed layer 1 vs its dense twin",
           maxd / maxr);
    CHECK(maxd / maxr <= 1e-5, "packed vs dense twin: %.3g", maxd / maxr);
    /* and RTN 4-bit moved the logits, but not far */
    double err = rel_err(logits, 0, N_TOK);
    printf("%-44s max rel error %.3g (expected 1e-3 .. 0.2)\n", "RTN 4-bit layer 1 vs reference",
           err);
    CHECK(err > 1e-3 && err < 0.2, "RTN layer 1 changed logits by %.3g", err);
    /* decoding one token at a time takes qgemm's GEMV path */
    maxd = decode_diff(q, ids, dense, 32);
    printf("%-44s max rel error %.3g (tolerance 1e-05)\n", "packed decode (GEMV) vs dense twin",
           maxd / maxr);
    CHECK(maxd / maxr <= 1e-5, "packed decode vs dense twin: %.3g", maxd / maxr);

    /* the default, fast products: on a CPU with the int8 kernel the
     * activation is rounded to int8 per 32 inputs (at most 1/254 of the
     * block's largest value per element); through two layers and the head
     * that measured 2.1e-3 of the largest logit prefilling, 1.0e-3 decoding */
    gptq_model_set_exact(q, 0);
    CHECK_OK(gptq_model_forward(q, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
    const int int8 = strcmp(gptq_cpu_qgemm_int8_isa(), "none") != 0;
    maxd = max_abs_diff(logits, dense, (size_t)N_TOK * VOCAB);
    printf("%-44s max rel error %.3g (tolerance 1e-02; int8 kernel on %s)\n",
           "packed, fast products, vs dense twin", maxd / maxr, gptq_cpu_qgemm_int8_isa());
    CHECK(maxd / maxr <= 1e-2 && (!int8 || maxd > 0), "fast packed vs dense twin: %.3g",
          maxd / maxr);
    maxd = decode_diff(q, ids, dense, 32);
    printf("%-44s max rel error %.3g (tolerance 1e-02)\n", "packed decode, fast, vs dense twin",
           maxd / maxr);
    CHECK(maxd / maxr <= 1e-2 && (!int8 || maxd > 0), "fast packed decode vs dense twin: %.3g",
          maxd / maxr);
    test_checkpoint(q, logits);
    test_sharing(q, logits);
    test_backend_copies(q, logits);
    free(dense);
    free(W);
    free(Q);
done:
    gptq_model_free(q);
    gptq_model_free(d);
}

/* The output matrix rounded to Q8_0 for serving (gptq_model_set_head_grid)
 * against a float64 head over the same hidden states, with the matrix
 * rounded onto the Q8_0 grid here: per 32 inputs d = fp16(max|w| / 127),
 * codes the nearest, round(w / d) (llama.cpp's quantize_row_q8_0 divides by
 * d before its fp16 rounding: 0.18% of the largest logit apart). Exact products
 * differ from it by float32 rounding (bound 1e-5 of the largest logit); the
 * fast ones also round the activation to int8 per 32 inputs (bound 1e-2). */
static void test_head_grid(gptq_model *m)
{
    const gptq_model_config *c = gptq_model_get_config(m);
    const int H = c->hidden_size, V = c->vocab_size, n = 8;
    const gptq_model_tensor *head = NULL, *norm = NULL;
    for (size_t i = 0; i < gptq_model_tensor_count(m); i++) {
        const gptq_model_tensor *t = gptq_model_tensor_at(m, i);
        if (!strcmp(t->name, "lm_head.weight") ||
            (!head && !strcmp(t->name, "model.embed_tokens.weight")))
            head = t;
        if (!strcmp(t->name, "model.norm.weight"))
            norm = t;
    }
    float *h = malloc((size_t)n * H * sizeof *h), *W = malloc((size_t)V * H * sizeof *W);
    float *lf = malloc((size_t)n * V * sizeof *lf), *lq = malloc((size_t)n * V * sizeof *lq);
    float *nw = malloc((size_t)H * sizeof *nw);
    double *ref64 = malloc((size_t)n * V * sizeof *ref64), *x = malloc((size_t)H * sizeof *x);
    CHECK(head && norm && h && W && lf && lq && nw && ref64 && x, "head grid: set-up");
    if (!head || !norm || !h || !W || !lf || !lq || !nw || !ref64 || !x)
        goto done;
    /* hidden states after the last layer, exact arithmetic */
    const int was = gptq_model_set_exact(m, 1);
    CHECK_OK(gptq_model_embed(m, ids, 1, n, h));
    for (int l = 0; l < c->num_hidden_layers; l++)
        CHECK_OK(gptq_model_layer_forward(m, l, h, 1, n, NULL));
    CHECK_OK(gptq_model_head(m, h, n, lf));
    CHECK(gptq_dtype_to_f32(head->dtype, head->data, W, (size_t)V * H) == 0 &&
              gptq_dtype_to_f32(norm->dtype, norm->data, nw, (size_t)H) == 0,
          "head grid: tensors not float");
    for (size_t r = 0; r < (size_t)V; r++)
        for (int g = 0; g < H; g += 32) {
            float *w = W + r * H + g, amax = 0;
            for (int k = 0; k < 32; k++)
                amax = fmaxf(amax, fabsf(w[k]));
            const float d16 = gptq_round_f16(amax ? amax / 127 : 1);
            for (int k = 0; k < 32; k++)
                w[k] = d16 * rintf(w[k] / d16);
        }
    for (int t = 0; t < n; t++) {
        double ss = 0;
        for (int k = 0; k < H; k++)
            ss += (double)h[(size_t)t * H + k] * h[(size_t)t * H + k];
        const double inv = 1 / sqrt(ss / H + c->rms_norm_eps);
        for (int k = 0; k < H; k++)
            x[k] = h[(size_t)t * H + k] * inv * nw[k];
        for (size_t v = 0; v < (size_t)V; v++) {
            double s = 0;
            for (int k = 0; k < H; k++)
                s += x[k] * W[v * H + k];
            ref64[(size_t)t * V + v] = s;
        }
    }
    double maxr = 0, moved = 0;
    for (size_t i = 0; i < (size_t)n * V; i++)
        maxr = fmax(maxr, fabs(ref64[i])), moved = fmax(moved, fabs(lf[i] - ref64[i]));
    const size_t before = gptq_model_bytes(m);
    CHECK(gptq_model_head_grid(m, NULL) == GPTQ_GRID_NONE, "head grid set on a new model");
    CHECK_OK(gptq_model_set_head_grid(m, GPTQ_GRID_Q8_0));
    const size_t grew = gptq_model_bytes(m) - before;
    CHECK(gptq_model_head_grid(m, NULL) == GPTQ_GRID_Q8_0 && grew >= (size_t)V * H &&
              grew <= (size_t)V * H * 5 / 4,
          "head grid q8_0: %zu bytes more for a %d x %d matrix", grew, V, H);
    for (int exact = 1; exact >= 0; exact--) {
        gptq_model_set_exact(m, exact);
        CHECK_OK(gptq_model_head(m, h, n, lq));
        double maxd = 0;
        for (size_t i = 0; i < (size_t)n * V; i++)
            maxd = fmax(maxd, fabs(lq[i] - ref64[i]));
        const double tol = exact ? 1e-5 : 1e-2;
        printf("%-44s max rel error %.3g (tolerance %.0e; the float head: %.3g)\n",
               exact ? "head q8_0, exact, vs float64 Q8_0 head" : "head q8_0, fast, vs float64",
               maxd / maxr, tol, moved / maxr);
        CHECK(maxd / maxr <= tol, "head q8_0 (exact %d): %.3g", exact, maxd / maxr);
    }
    CHECK(moved / maxr > 1e-5, "the float head gave Q8_0's logits (%.3g): not rounded?",
          moved / maxr);
    gptq_status st = gptq_model_set_head_grid(m, GPTQ_GRID_Q4_0);
    CHECK(st == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "q8_0") &&
              gptq_model_head_grid(m, NULL) == GPTQ_GRID_Q8_0,
          "head grid q4_0: %s '%s'", gptq_status_name(st), gptq_errmsg());
    CHECK_OK(gptq_model_set_head_grid(m, GPTQ_GRID_NONE));
    gptq_model_set_exact(m, 1);
    CHECK_OK(gptq_model_head(m, h, n, lq));
    CHECK(gptq_model_bytes(m) == before && !memcmp(lq, lf, (size_t)n * V * sizeof *lq),
          "head grid none: %zu bytes (want %zu), logits %s", gptq_model_bytes(m), before,
          memcmp(lq, lf, (size_t)n * V * sizeof *lq) ? "differ" : "equal");
    gptq_model_set_exact(m, was);
done:
    free(h), free(W), free(lf), free(lq), free(nw), free(ref64), free(x);
}

/* Weight matrices stay in the file's 16 bits: the resident bytes are the
 * config's matrices at 2 bytes and its norms at 4 (no biases in Llama). */
static void check_resident_16bit(const gptq_model *m, const char *what)
{
    const gptq_model_config *c = gptq_model_get_config(m);
    size_t h = (size_t)c->hidden_size, q = (size_t)c->num_attention_heads * c->head_dim;
    size_t kv = (size_t)c->num_key_value_heads * c->head_dim, f = (size_t)c->intermediate_size;
    size_t per_layer = h * q + 2 * h * kv + q * h + 3 * h * f;
    size_t matrices = (size_t)c->vocab_size * h * (c->tie_word_embeddings ? 1 : 2) +
                      (size_t)c->num_hidden_layers * per_layer;
    size_t norms = h * (2 * (size_t)c->num_hidden_layers + 1);
    CHECK(gptq_model_bytes(m) == matrices * 2 + norms * 4,
          "%s: %zu resident bytes, 16-bit matrices and float32 norms make %zu", what,
          gptq_model_bytes(m), matrices * 2 + norms * 4);
}

static void test_bf16(float *logits)
{
    gptq_model *m = NULL;
    CHECK_OK(gptq_model_load(fixture_path("tiny-llama-bf16"), &m));
    if (!m)
        return;
    check_resident_16bit(m, "BF16 model");
    CHECK_OK(gptq_model_forward(m, NULL, ids, 1, N_TOK, NULL, NULL, 0, logits));
    report("BF16 weights vs F16 reference", rel_err(logits, 0, N_TOK), TOL_BF16);
    gptq_model_free(m);
}

int main(void)
{
    if (load_reference() != 0)
        return 1;
    float *logits = malloc((size_t)N_TOK * VOCAB * sizeof *logits);
    gptq_model *m = NULL;
    CHECK_OK(gptq_model_load(fixture_path("tiny-llama"), &m));
    if (!m || !logits)
        return test_result() ? 1 : 1;
    test_attention();
    test_silu();
    /* the checks against the reference logits hold the exact arithmetic to
     * float32 rounding; test_fast_cache checks the default's binary16 cache */
    gptq_model_set_exact(m, 1);
    check_resident_16bit(m, "F16 model");
    CHECK(gptq_model_tensor_count(m) == 39, "tensor table: %zu entries",
          gptq_model_tensor_count(m));
    test_full(m, logits);
    test_incremental(m, logits);
    test_fast_cache(m, logits);
    test_batch(m, logits);
    test_threads(m);
    test_layers(m, logits);
    test_layer_parts(m);
    test_set_linear(m, logits);
    test_biases(m);
    test_head_grid(m);
    test_bf16(logits);
    gptq_model_free(m);
    free(logits);
    free(ref);
    return test_result();
}
