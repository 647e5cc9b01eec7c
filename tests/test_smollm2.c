/* tests/test_smollm2.c: the first real pretrained model, end to end in the
 * library: SmolLM2-135M-Instruct (Llama architecture, 30 layers, GQA 9/3,
 * tied embeddings, 49,152 tokens) from its GGUF file (Q4_1 linears, Q8_0
 * embedding), against tests/data/smollm2-reference.json, which
 * tests/make_smollm2_reference.py made with llama.cpp's tokenizer and a
 * float64 numpy forward on the GGUF's own tensors (nothing of ours).
 *
 * Checks: config from the metadata; tokenizer ids equal llama.cpp's on
 * varied texts and on the start of eval.txt; greedy continuation of a
 * prompt equal to the reference's; perplexity of the reference windows
 * within 0.1%; and GPTQ 4-bit g128 with act-order, calibrated on a small
 * set, closer to the float model (mean KL) than RTN at the same setting.
 * Skips (77) without the model (scripts/fetch-models) or the fixtures. */
#include <jansson.h>
#include <time.h>

#include "model/calib.h"
#include "model/eval.h"
#include "model/llama.h"
#include "gptq/tokenizer.h"
#include "testutil.h"

static json_t *ref;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ids of a JSON array into a new array of *n. */
static int32_t *json_ids(json_t *arr, size_t *n)
{
    *n = json_array_size(arr);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    for (size_t i = 0; i < *n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return ids;
}

static void check_config(const gptq_model_config *c)
{
    CHECK(c->arch == GPTQ_ARCH_LLAMA && c->num_hidden_layers == 30 && c->hidden_size == 576 &&
              c->intermediate_size == 1536 && c->num_attention_heads == 9 &&
              c->num_key_value_heads == 3 && c->head_dim == 64 && c->vocab_size == 49152 &&
              c->tie_word_embeddings && c->rope_theta == 100000.0 &&
              c->max_position_embeddings == 8192,
          "config: layers %d hidden %d inter %d heads %d/%d head_dim %d vocab %d tied %d theta %g "
          "context %d", c->num_hidden_layers, c->hidden_size, c->intermediate_size,
          c->num_attention_heads, c->num_key_value_heads, c->head_dim, c->vocab_size,
          c->tie_word_embeddings, c->rope_theta, c->max_position_embeddings);
    int has_im_end = 0, has_eot = 0;
    for (int i = 0; i < c->n_eos; i++) {
        has_im_end |= c->eos_token_ids[i] == 2;
        has_eot |= c->eos_token_ids[i] == 0;
    }
    CHECK(has_im_end && has_eot, "generation must stop on <|im_end|> (2) and <|endoftext|> (0)");
}

static void check_tokenizer(const char *model)
{
    gptq_tokenizer *tok = NULL;
    CHECK_OK(gptq_tokenizer_load(model, &tok));
    if (!tok)
        return;
    json_t *item;
    size_t i, n_ok = 0, n_items = json_array_size(json_object_get(ref, "tokenizer"));
    json_array_foreach(json_object_get(ref, "tokenizer"), i, item) {
        json_t *text = json_object_get(item, "text");
        size_t n_want, n_got = 0;
        int32_t *want = json_ids(json_object_get(item, "ids"), &n_want), *got = NULL;
        CHECK_OK(gptq_tokenizer_encode(tok, json_string_value(text), json_string_length(text), 0,
                                       &got, &n_got));
        int ok = n_got == n_want && (!n_got || !memcmp(got, want, n_got * sizeof *got));
        CHECK(ok, "text %zu %.40s...: %zu ids, llama.cpp %zu", i, json_string_value(text), n_got,
              n_want);
        n_ok += ok;
        free(want);
        free(got);
    }
    size_t len, n_want, n_got = 0;
    char *eval = test_read_file(fixture_path("tiny-llama/eval.txt"), &len);
    int32_t *want = json_ids(json_object_get(ref, "eval_ids_first"), &n_want), *got = NULL;
    CHECK_OK(gptq_tokenizer_encode(tok, eval, len, 0, &got, &n_got));
    int ok = n_got >= n_want && !memcmp(got, want, n_want * sizeof *got);
    CHECK(ok, "eval.txt: our first %zu ids differ from llama.cpp's", n_want);
    printf("tokenizer: %zu of %zu texts and the first %zu ids of eval.txt as llama.cpp\n", n_ok,
           n_items, n_want);
    free(eval);
    free(want);
    free(got);
    gptq_tokenizer_free(tok);
}

static void check_greedy(const gptq_model *m)
{
    json_t *g = json_object_get(ref, "greedy");
    size_t n_prompt, n_new;
    int32_t *prompt = json_ids(json_object_get(g, "prompt_ids"), &n_prompt);
    int32_t *want = json_ids(json_object_get(g, "new_ids"), &n_new);
    const int vocab = gptq_model_get_config(m)->vocab_size;
    float *logits = malloc((size_t)vocab * sizeof *logits);
    gptq_kv *kv = NULL;
    CHECK_OK(gptq_kv_create(m, 1, (int)(n_prompt + n_new + 1), &kv));
    gptq_status st = gptq_model_forward(m, kv, prompt, 1, (int)n_prompt, NULL, NULL,
                                        GPTQ_FWD_LAST_ONLY, logits);
    size_t same = 0;
    for (size_t t = 0; !st && t < n_new; t++) {
        int32_t best = 0;
        for (int v = 1; v < vocab; v++)
            if (logits[v] > logits[best])
                best = v;
        if (best != want[t])
            break;
        same++;
        st = gptq_model_forward(m, kv, &best, 1, 1, NULL, NULL, GPTQ_FWD_LAST_ONLY, logits);
    }
    CHECK(st == GPTQ_OK, "forward: %s", gptq_errmsg());
    printf("greedy: %zu of %zu tokens as the reference (its smallest top-2 margin %.3f)\n", same,
           n_new, json_real_value(json_object_get(g, "min_top2_margin")));
    CHECK(same == n_new, "greedy continuation departs from the reference at token %zu", same);
    gptq_kv_free(kv);
    free(logits);
    free(prompt);
    free(want);
}

/* The reference windows, back to back. */
static int32_t *window_ids(size_t *n, int *seqlen)
{
    json_t *p = json_object_get(ref, "perplexity"), *w;
    size_t i, k = 0;
    *seqlen = (int)json_integer_value(json_object_get(p, "seqlen"));
    *n = json_array_size(json_object_get(p, "windows")) * (size_t)*seqlen;
    int32_t *ids = malloc(*n * sizeof *ids);
    json_array_foreach(json_object_get(p, "windows"), i, w) {
        for (size_t j = 0; j < json_array_size(w); j++)
            ids[k++] = (int32_t)json_integer_value(json_array_get(w, j));
    }
    CHECK(k == *n, "reference windows: %zu ids, want %zu", k, *n);
    return ids;
}

static void check_perplexity(const gptq_model *m)
{
    size_t n;
    int seqlen;
    int32_t *ids = window_ids(&n, &seqlen);
    gptq_eval_result r;
    CHECK_OK(gptq_eval_ids(m, NULL, ids, n, seqlen, NULL, NULL, &r));
    double want = json_real_value(json_object_get(json_object_get(ref, "perplexity"),
                                                  "perplexity"));
    double rel = fabs(r.perplexity - want) / want;
    printf("perplexity of %d windows of %d: %.4f, reference %.4f (rel. diff %.2e, bound 1e-3)\n",
           r.windows, seqlen, r.perplexity, want, rel);
    CHECK(rel < 1e-3, "perplexity %.4f vs reference %.4f", r.perplexity, want);
    free(ids);
}

/* GPTQ 4-bit g128 act-order vs RTN at the same setting: mean KL to the
 * float model on the reference windows. SMOLLM2_TABLE=1 also runs GPTQ
 * without act-order (the closing note's table). */
static void check_gptq(const char *path, const gptq_model *base)
{
    size_t len, n_calib = 0, n_eval;
    int seqlen;
    gptq_tokenizer *tok = NULL;
    CHECK_OK(gptq_tokenizer_load(path, &tok));
    char *text = test_read_file(fixture_path("tiny-llama/calib.txt"), &len);
    int32_t *calib = NULL, *eval = window_ids(&n_eval, &seqlen);
    CHECK_OK(gptq_tokenizer_encode(tok, text, len, 0, &calib, &n_calib));
    const struct {
        const char *name;
        int gptq, act_order;
    } runs[] = {{"RTN 4-bit g128", 0, 0},
                {"GPTQ 4-bit g128 (32x256)", 1, 0},
                {"GPTQ 4-bit g128 act-order (32x256)", 1, 1}};
    double kl[3] = {0, 0, 0};
    int table = getenv("SMOLLM2_TABLE") != NULL;
    for (int k = 0; k < 3; k++) {
        if (k == 1 && !table)
            continue;
        gptq_model *q = NULL;
        CHECK_OK(gptq_model_clone(base, &q));
        if (!q)
            break;
        double t0 = now();
        gptq_calib_options o;
        gptq_calib_options_default(&o);
        o.quant.bits = 4;
        o.quant.group_size = 128;
        o.quant.act_order = runs[k].act_order;
        o.nsamples = 32;
        o.seqlen = 256;
        if (!runs[k].gptq)
            CHECK_OK(gptq_calib_rtn(q, &o.quant, 0, NULL, NULL));
        else
            CHECK_OK(gptq_calib_quantize(q, calib, n_calib, &o, NULL, NULL));
        double t1 = now();
        gptq_eval_result r;
        CHECK_OK(gptq_eval_ids(q, base, eval, n_eval, seqlen, NULL, NULL, &r));
        kl[k] = r.mean_kl;
        printf("%-36s perplexity %.4f  mean KL %.5f  (%.1f s)\n", runs[k].name, r.perplexity,
               r.mean_kl, t1 - t0);
        gptq_model_free(q);
    }
    CHECK(kl[2] > 0 && kl[2] < kl[0], "GPTQ's KL %.5f must beat RTN's %.5f", kl[2], kl[0]);
    free(text);
    free(calib);
    free(eval);
    gptq_tokenizer_free(tok);
}

int main(void)
{
    const char *path = real_model_path();
    const char *root = getenv("GPTQ_SOURCE_ROOT");
    char ref_path[4096];
    snprintf(ref_path, sizeof ref_path, "%s/tests/data/smollm2-reference.json", root ? root : ".");
    json_error_t jerr;
    if (!(ref = json_load_file(ref_path, 0, &jerr))) {
        fprintf(stderr, "FAIL: %s: %s\n", ref_path, jerr.text);
        return 1;
    }
    fixture_path("tiny-llama/eval.txt");
    double t0 = now();
    gptq_model *m = NULL;
    CHECK_OK(gptq_model_load(path, &m));
    if (!m)
        return test_result();
    printf("loaded %s in %.1f s\n", path, now() - t0);
    check_config(gptq_model_get_config(m));
    check_tokenizer(path);
    check_greedy(m);
    check_perplexity(m);
    if (!getenv("SMOLLM2_SKIP_GPTQ"))
        check_gptq(path, m);
    gptq_model_free(m);
    json_decref(ref);
    return test_result();
}
