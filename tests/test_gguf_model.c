/* tests/test_gguf_model.c: a GGUF file (written by tests/gguf_model.py from
 * the fixture, the way llama.cpp's converter writes one) loads as the model
 * it came from.
 *
 *   test_gguf_model MODEL.gguf FIXTURE_DIR TOLERANCE
 *
 * Checks: the synthesized config equals the fixture's config.json in every
 * field the runtime uses; the logits of the reference ids equal the
 * fixture's reference_logits.f32 (computed independently from the
 * safetensors weights) within TOLERANCE (max abs difference / max |logit|),
 * which only holds if the Q/K rows were un-permuted right; the tokenizer
 * made from the metadata gives the fixture tokenizer.json's ids on eval.txt
 * and on the fixture's tokenizer vectors. */
#include <jansson.h>

#include "model/config.h"
#include "model/llama.h"
#include "model/source.h"
#include "gptq/tokenizer.h"
#include "testutil.h"

static void check_config(const gptq_model_config *a, const gptq_model_config *b)
{
#define SAME(f) CHECK(a->f == b->f, #f ": GGUF %g, config.json %g", (double)a->f, (double)b->f)
    SAME(arch);
    SAME(hidden_size);
    SAME(intermediate_size);
    SAME(num_attention_heads);
    SAME(num_key_value_heads);
    SAME(head_dim);
    SAME(num_hidden_layers);
    SAME(vocab_size);
    SAME(max_position_embeddings);
    SAME(rms_norm_eps);
    SAME(rope_theta);
    SAME(rope_type);
    SAME(tie_word_embeddings);
    SAME(bos_token_id);
#undef SAME
    CHECK(a->n_eos >= 1 && a->eos_token_ids[0] == b->eos_token_ids[0], "eos %d vs %d",
          a->n_eos ? a->eos_token_ids[0] : -1, b->eos_token_ids[0]);
}

static void check_logits(const gptq_model *m, const char *fdir, double tol)
{
    char path[4200];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/reference_logits.json", fdir);
    json_t *root = json_load_file(path, 0, &jerr);
    json_t *arr = json_object_get(root, "token_ids");
    const int n = (int)json_array_size(arr), vocab = gptq_model_get_config(m)->vocab_size;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    float *ref = malloc((size_t)n * vocab * sizeof *ref), *got = malloc((size_t)n * vocab * sizeof *got);
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    json_decref(root);
    snprintf(path, sizeof path, "%s/reference_logits.f32", fdir);
    FILE *f = fopen(path, "rb");
    size_t read = f ? fread(ref, sizeof *ref, (size_t)n * vocab, f) : 0;
    if (f)
        fclose(f);
    CHECK(n > 0 && read == (size_t)n * vocab, "reference logits: %zu floats", read);
    CHECK_OK(gptq_model_forward(m, NULL, ids, 1, n, NULL, NULL, 0, got));
    double maxd = 0, maxr = 0;
    for (size_t i = 0; i < (size_t)n * vocab; i++) {
        maxd = fmax(maxd, fabs((double)got[i] - ref[i]));
        maxr = fmax(maxr, fabs((double)ref[i]));
    }
    printf("logits of %d reference tokens: max rel error %.3g (tolerance %.0e)\n", n, maxd / maxr,
           tol);
    CHECK(maxd / maxr <= tol, "logits: max rel error %.3g > %.0e", maxd / maxr, tol);
    free(ids);
    free(ref);
    free(got);
}

static int same_ids(const gptq_tokenizer *a, const gptq_tokenizer *b, const char *text, size_t n)
{
    int32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int same = !gptq_tokenizer_encode(a, text, n, 1, &x, &nx) &&
               !gptq_tokenizer_encode(b, text, n, 1, &y, &ny) && nx == ny &&
               (!nx || !memcmp(x, y, nx * sizeof *x));
    free(x);
    free(y);
    return same;
}

static void check_tokenizer(const char *gguf, const char *fdir)
{
    char path[4200];
    gptq_tokenizer *ours = NULL, *ref = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", fdir);
    CHECK_OK(gptq_tokenizer_load(gguf, &ours));
    CHECK_OK(gptq_tokenizer_load(path, &ref));
    if (!ours || !ref)
        goto done;
    size_t len;
    snprintf(path, sizeof path, "%s/eval.txt", fdir);
    char *text = test_read_file(path, &len);
    CHECK(text && same_ids(ours, ref, text, len), "eval.txt: ids differ from tokenizer.json's");
    free(text);
    snprintf(path, sizeof path, "%s/tokenizer_vectors.json", fdir);
    json_error_t jerr;
    json_t *vec = json_load_file(path, 0, &jerr), *item;
    json_t *list = json_is_array(vec) ? vec : json_object_get(vec, "vectors");
    size_t i, n_ok = 0;
    json_array_foreach(list, i, item) {
        json_t *t = json_object_get(item, "text");
        int ok = same_ids(ours, ref, json_string_value(t), json_string_length(t));
        CHECK(ok, "tokenizer vector %zu: ids differ from tokenizer.json's", i);
        n_ok += ok;
    }
    printf("tokenizer from GGUF metadata: eval.txt and %zu of %zu vectors as tokenizer.json\n",
           n_ok, json_array_size(list));
    CHECK(json_array_size(list) > 10, "too few tokenizer vectors");
    json_decref(vec);
done:
    gptq_tokenizer_free(ours);
    gptq_tokenizer_free(ref);
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s MODEL.gguf FIXTURE_DIR TOLERANCE [RESIDENT_DTYPE]\n", argv[0]);
        return 2;
    }
    char path[4200];
    gptq_model_config want;
    snprintf(path, sizeof path, "%s/config.json", argv[2]);
    CHECK_OK(gptq_config_load(path, &want));
    gptq_model_source *src = NULL;
    CHECK_OK(gptq_source_open(argv[1], &src));
    if (!src)
        return test_result();
    CHECK(gptq_source_is_gguf(src), "not seen as GGUF");
    check_config(gptq_source_config(src), &want);
    gptq_model *m = NULL;
    CHECK_OK(gptq_model_load_source(src, &m));
    gptq_source_free(src);
    if (m)
        check_logits(m, argv[2], atof(argv[3]));
    if (m && argc == 5) /* what the linears are held in, as the caller knows the file */
        CHECK(!strcmp(gptq_dtype_name(gptq_model_dense_dtype(m)), argv[4]),
              "linears resident as %s, expected %s", gptq_dtype_name(gptq_model_dense_dtype(m)),
              argv[4]);
    gptq_model_free(m);
    check_tokenizer(argv[1], argv[2]);
    return test_result();
}
