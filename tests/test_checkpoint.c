/* tests/test_checkpoint.c: GPTQ checkpoints we write.
 * - The folder has config.json with quantization_config, quantize_config.json,
 *   the tokenizer files, and model.safetensors whose tensor names, dtypes and
 *   shapes are those of the format (docs/ARCHITECTURE.md "Formats"), checked here from the
 *   description, not from our writer.
 * - It reloads through gptq_model_load and gives the same perplexity as the
 *   in-memory quantized model.
 * - An independent numpy reader (gptq_checkpoint_numpy.py, written from the
 *   format description) dequantizes it to exactly our runtime's weights.
 * - Saving over an existing folder is refused; nothing half-written remains. */
#include <sys/stat.h>
#include <unistd.h>

#include "model/calib.h"
#include "model/checkpoint.h"
#include "model/hf_files.h"
#include "model/eval.h"
#include "model/safetensors.h"
#include "gptq/tokenizer.h"
#include "testutil.h"
#include "testtok.h"

static void check_shapes(const char *dir, const gptq_model_config *c, int bits, int group_size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    gptq_safetensors *st;
    CHECK_OK(gptq_safetensors_open(path, &st));
    if (!st)
        return;
    const char *mods[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    int kvd = c->num_key_value_heads * c->head_dim, qd = c->num_attention_heads * c->head_dim;
    int outs[7] = {qd, kvd, kvd, c->hidden_size, c->intermediate_size, c->intermediate_size, c->hidden_size};
    int ins[7] = {c->hidden_size, c->hidden_size, c->hidden_size, qd, c->hidden_size, c->hidden_size, c->intermediate_size};
    int bad = 0;
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int m = 0; m < 7; m++) {
            int groups = group_size < 0 ? 1 : (ins[m] + group_size - 1) / group_size;
            struct { const char *suffix; gptq_dtype dt; int64_t d0, d1; int ndim; } want[4] = {
                {"qweight", GPTQ_DT_I32, ins[m] * bits / 32, outs[m], 2},
                {"qzeros", GPTQ_DT_I32, groups, outs[m] * bits / 32, 2},
                {"scales", GPTQ_DT_F16, groups, outs[m], 2},
                {"g_idx", GPTQ_DT_I32, ins[m], 0, 1}};
            for (int k = 0; k < 4; k++) {
                char name[256];
                snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, mods[m], want[k].suffix);
                const gptq_st_tensor *t = gptq_safetensors_find(st, name);
                int ok = t && t->dtype == want[k].dt && t->ndim == want[k].ndim &&
                         t->shape[0] == want[k].d0 && (want[k].ndim == 1 || t->shape[1] == want[k].d1);
                if (!ok && bad++ < 5)
                    fprintf(stderr, "tensor %s: missing or wrong dtype/shape\n", name);
            }
            char name[256];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, mods[m]);
            if (gptq_safetensors_find(st, name) && bad++ < 5)
                fprintf(stderr, "%s must not be stored as float\n", name);
        }
    const char *floats[] = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                            "model.layers.0.input_layernorm.weight",
                            "model.layers.0.post_attention_layernorm.weight"};
    for (int i = 0; i < 5; i++) {
        const gptq_st_tensor *t = gptq_safetensors_find(st, floats[i]);
        if (!(t && t->dtype == GPTQ_DT_F16) && bad++ < 5)
            fprintf(stderr, "%s: missing or not F16\n", floats[i]);
    }
    CHECK(bad == 0, "%d tensors of the checkpoint do not follow the format", bad);
    gptq_safetensors_close(st);
}

/* Write each linear's dequantized weights, as our runtime sees them. */
static void dump_expected(const gptq_model *m, const char *path)
{
    const gptq_model_config *c = gptq_model_get_config(m);
    gptq_st_writer *w;
    CHECK_OK(gptq_st_writer_create(&w));
    const char *mods[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    float *bufs[64];
    char names[64][128];
    int nb = 0;
    for (int l = 0; l < c->num_hidden_layers && nb < 64; l++)
        for (int k = 0; k < 7 && nb < 64; k++) {
            int rows, cols;
            gptq_model_linear_shape(m, (gptq_linear_id)k, &rows, &cols);
            bufs[nb] = malloc((size_t)rows * cols * sizeof(float));
            CHECK_OK(gptq_model_get_linear_f32(m, l, (gptq_linear_id)k, bufs[nb]));
            snprintf(names[nb], sizeof names[0], "model.layers.%d.%s.weight", l, mods[k]);
            int64_t shape[2] = {rows, cols};
            CHECK_OK(gptq_st_writer_add(w, names[nb], GPTQ_DT_F32, 2, shape, bufs[nb]));
            nb++;
        }
    CHECK_OK(gptq_st_writer_write(w, path));
    gptq_st_writer_destroy(w);
    for (int i = 0; i < nb; i++)
        free(bufs[i]);
}

/* The perplexity of the checkpoint in `dir`, loaded afresh (NaN when it
 * does not load). */
static double reload_perplexity(const char *dir, const int32_t *eval, size_t n_eval)
{
    gptq_model *m = NULL;
    gptq_eval_result r = {0};
    r.perplexity = NAN;
    CHECK_OK(gptq_model_load(dir, &m));
    if (m)
        CHECK_OK(gptq_eval_ids(m, NULL, eval, n_eval < 4096 ? n_eval : 4096, 256, NULL, NULL, &r));
    gptq_model_free(m);
    return r.perplexity;
}

static void round_trip(const char *model_dir, const char *tmpdir, const char *tag, int bits,
                       int group_size, int act_order, int use_gptq, const int32_t *calib,
                       size_t n_calib, const int32_t *eval, size_t n_eval)
{
    gptq_model *m;
    CHECK_OK(gptq_model_load(model_dir, &m));
    gptq_checkpoint_meta meta = {.true_sequential = 1};
    gptq_quant_config_default(&meta.quant);
    meta.quant.bits = bits;
    meta.quant.group_size = group_size;
    meta.quant.act_order = act_order;
    if (use_gptq) {
        gptq_calib_options o;
        gptq_calib_options_default(&o);
        o.quant = meta.quant;
        o.nsamples = 8;
        o.seqlen = 128;
        CHECK_OK(gptq_calib_quantize(m, calib, n_calib, &o, NULL, NULL));
    } else {
        CHECK_OK(gptq_calib_rtn(m, &meta.quant, 0, NULL, NULL));
    }
    char dir[4096], expected[4096], cmd[12288];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, tag);
    gptq_hf_files hf = {0};
    CHECK_OK(gptq_hf_files_read(model_dir, &hf));
    CHECK_OK(gptq_checkpoint_save(m, &hf, &meta, GPTQ_DT_COUNT, dir));
    CHECK(gptq_checkpoint_save(m, &hf, &meta, GPTQ_DT_COUNT, dir) == GPTQ_ERR_EXISTS,
          "saving over an existing folder must be refused");
    gptq_hf_files_free(&hf);
    const char *files[] = {"config.json", "quantize_config.json", "tokenizer.json", "model.safetensors"};
    for (int i = 0; i < 4; i++) {
        char p[4200];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        CHECK(stat(p, &sb) == 0, "%s missing", p);
    }
    check_shapes(dir, gptq_model_get_config(m), bits, group_size);
    /* numbers as a person (and Python's json) writes them: 0.01, not the
     * float's widened 0.0099999997764825821 */
    for (int i = 0; i < 2; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        size_t len = 0;
        char *text = test_read_file(p, &len);
        char want[64];
        snprintf(want, sizeof want, "\"damp_percent\": %g", (double)meta.quant.damp);
        CHECK(text && strstr(text, want), "%s does not say %s", files[i], want);
        CHECK(text && strstr(text, "\"quantizer\": [") && strstr(text, "\"gptqd:"),
              "%s has no meta.quantizer naming gptqd", files[i]);
        free(text);
    }

    gptq_model *re;
    CHECK_OK(gptq_model_load(dir, &re));
    gptq_eval_result a = {0}, b = {0};
    CHECK_OK(gptq_eval_ids(m, NULL, eval, n_eval < 4096 ? n_eval : 4096, 256, NULL, NULL, &a));
    if (re)
        CHECK_OK(gptq_eval_ids(re, NULL, eval, n_eval < 4096 ? n_eval : 4096, 256, NULL, NULL, &b));
    printf("%-22s in memory %.6f, reloaded %.6f\n", tag, a.perplexity, b.perplexity);
    CHECK(a.perplexity == b.perplexity, "%s: reloaded perplexity %.9g != in-memory %.9g", tag,
          b.perplexity, a.perplexity);

    snprintf(expected, sizeof expected, "%s/%s-expected.safetensors", tmpdir, tag);
    dump_expected(m, expected);
    const char *src = getenv("GPTQ_SOURCE_ROOT");
    snprintf(cmd, sizeof cmd, "python3 %s/tests/gptq_checkpoint_numpy.py '%s' '%s'",
             src ? src : "..", dir, expected);
    int rc = system(cmd);
    int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (code == 77)
        printf("numpy reader skipped (numpy missing)\n");
    else
        CHECK(code == 0, "%s: the numpy reader disagrees (exit %d)", tag, code);

    /* the same checkpoint as GPTQModel's gptq_v2 (zeros stored as they are),
     * written by the numpy tool, loads to the same model */
    if (code != 77) {
        char v2[4200];
        snprintf(v2, sizeof v2, "%s-v2", dir);
        snprintf(cmd, sizeof cmd, "python3 %s/tests/gptq_checkpoint_numpy.py --to-v2 '%s' '%s'",
                 src ? src : "..", dir, v2);
        rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "%s: numpy could not write the v2 twin", tag);
        double p2 = reload_perplexity(v2, eval, n_eval);
        CHECK(p2 == a.perplexity, "%s: the gptq_v2 twin's perplexity %.9g != %.9g", tag, p2,
              a.perplexity);

        /* and gptqd writes v2 itself: the numpy reader and gptqd read it back */
        char v2w[4200];
        snprintf(v2w, sizeof v2w, "%s-v2w", dir);
        gptq_checkpoint_meta meta2 = meta;
        meta2.v2 = 1;
        gptq_hf_files hf2 = {0};
        CHECK_OK(gptq_hf_files_read(model_dir, &hf2));
        CHECK_OK(gptq_checkpoint_save(m, &hf2, &meta2, GPTQ_DT_COUNT, v2w));
        gptq_hf_files_free(&hf2);
        snprintf(cmd, sizeof cmd, "python3 %s/tests/gptq_checkpoint_numpy.py '%s' '%s'",
                 src ? src : "..", v2w, expected);
        rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "%s: the numpy reader disagrees with the "
              "gptq_v2 checkpoint gptqd wrote", tag);
        size_t cl = 0;
        char cpath[4300];
        snprintf(cpath, sizeof cpath, "%s/config.json", v2w);
        char *ctext = test_read_file(cpath, &cl);
        CHECK(ctext && strstr(ctext, "\"checkpoint_format\": \"gptq_v2\""),
              "%s: the v2 config does not say gptq_v2", tag);
        free(ctext);
        double p3 = reload_perplexity(v2w, eval, n_eval);
        CHECK(p3 == a.perplexity, "%s: gptqd's own gptq_v2 reloads with perplexity %.9g != %.9g",
              tag, p3, a.perplexity);
    }
    gptq_model_free(re);
    gptq_model_free(m);
}

int main(void)
{
    const char *model_dir = fixture_path("tiny-llama");
    gptq_tokenizer *tok;
    CHECK_OK(gptq_tokenizer_load(fixture_path("tiny-llama/tokenizer.json"), &tok));
    size_t n_calib, n_eval;
    int32_t *calib = test_tokenize_file(tok, fixture_path("tiny-llama/calib.txt"), &n_calib);
    int32_t *eval = test_tokenize_file(tok, fixture_path("tiny-llama/eval.txt"), &n_eval);
    char tmpl[] = "/tmp/gptq-ckpt-XXXXXX";
    char *tmpdir = mkdtemp(tmpl);
    CHECK(tmpdir != NULL, "mkdtemp");
    round_trip(model_dir, tmpdir, "rtn-w4g128", 4, 128, 0, 0, calib, n_calib, eval, n_eval);
    round_trip(model_dir, tmpdir, "gptq-w3g128-act", 3, 128, 1, 1, calib, n_calib, eval, n_eval);
    round_trip(model_dir, tmpdir, "gptq-w2g64", 2, 64, 0, 1, calib, n_calib, eval, n_eval);
    round_trip(model_dir, tmpdir, "rtn-w8-channel", 8, -1, 0, 0, calib, n_calib, eval, n_eval);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    free(calib), free(eval);
    gptq_tokenizer_free(tok);
    return test_result();
}
