/* tests/test_config.c: config.json parsing (fixture and hand-made configs),
 * rotary frequencies against values computed independently with numpy in
 * float32 from transformers' formulas, the files of a model folder, and the
 * loader's errors for configs that disagree with the weights. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gptq/error.h"
#include "model/config.h"
#include "model/source.h"
#include "model/llama.h"
#include "testutil.h"

static char tmpdir[256];

/* A small valid Llama config with `extra` spliced in (later keys win in
 * jansson, so extra overrides). */
static gptq_status parse_with(const char *extra, gptq_model_config *cfg)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 256, "
             "\"intermediate_size\": 768, \"num_attention_heads\": 8, \"num_key_value_heads\": 2, "
             "\"num_hidden_layers\": 4, \"vocab_size\": 4096, \"rms_norm_eps\": 1e-5%s%s}",
             extra && *extra ? ", " : "", extra ? extra : "");
    return gptq_config_parse(json, strlen(json), "test config", cfg);
}

/* Expect status `want` and a message containing `needle`. */
static void expect_error(const char *extra, gptq_status want, const char *needle)
{
    gptq_model_config cfg;
    gptq_status st = parse_with(extra, &cfg);
    CHECK(st == want, "config {%s}: status %s, want %s (%s)", extra, gptq_status_name(st),
          gptq_status_name(want), gptq_errmsg());
    CHECK(strstr(gptq_errmsg(), needle) != NULL, "config {%s}: message '%s' does not name '%s'",
          extra, gptq_errmsg(), needle);
}

/* A raw JSON text instead of the template. */
static void expect_error_raw(const char *json, gptq_status want, const char *needle)
{
    gptq_model_config cfg;
    gptq_status st = gptq_config_parse(json, strlen(json), "raw", &cfg);
    CHECK(st == want, "%s: status %s, want %s (%s)", json, gptq_status_name(st),
          gptq_status_name(want), gptq_errmsg());
    CHECK(strstr(gptq_errmsg(), needle) != NULL, "%s: message '%s' does not name '%s'", json,
          gptq_errmsg(), needle);
}

static void test_fixture(void)
{
    gptq_model_config cfg;
    CHECK_OK(gptq_config_load(fixture_path("tiny-llama/config.json"), &cfg));
    CHECK(cfg.arch == GPTQ_ARCH_LLAMA, "arch %d", cfg.arch);
    CHECK(cfg.hidden_size == 256 && cfg.intermediate_size == 768, "sizes %d %d", cfg.hidden_size,
          cfg.intermediate_size);
    CHECK(cfg.num_attention_heads == 8 && cfg.num_key_value_heads == 2 && cfg.head_dim == 32,
          "heads %d/%d/%d", cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
    CHECK(cfg.num_hidden_layers == 4 && cfg.vocab_size == 4096, "layers %d vocab %d",
          cfg.num_hidden_layers, cfg.vocab_size);
    CHECK(cfg.rms_norm_eps == 1e-5 && cfg.rope_theta == 10000.0, "eps %g theta %g",
          cfg.rms_norm_eps, cfg.rope_theta);
    CHECK(cfg.bos_token_id == 4095 && cfg.n_eos == 1 && cfg.eos_token_ids[0] == 4095,
          "bos %d eos %d x%d", cfg.bos_token_id, cfg.eos_token_ids[0], cfg.n_eos);
    CHECK(cfg.torch_dtype == GPTQ_DT_F16 && !cfg.tie_word_embeddings && !cfg.quant.present,
          "dtype %d tie %d quant %d", cfg.torch_dtype, cfg.tie_word_embeddings, cfg.quant.present);
    CHECK(cfg.max_position_embeddings == 512, "max pos %d", cfg.max_position_embeddings);

    CHECK_OK(gptq_config_load(fixture_path("tiny-llama-bf16/config.json"), &cfg));
    CHECK(cfg.torch_dtype == GPTQ_DT_BF16, "bf16 dtype %d", cfg.torch_dtype);

    /* default rope: 1 / 10000^(2j/32); float32 powf is within 2 ulp */
    float inv[16];
    gptq_config_rope_inv_freq(&cfg, inv);
    for (int j = 0; j < 16; j++) {
        double want = 1.0 / pow(10000.0, 2.0 * j / 32.0);
        CHECK(fabs(inv[j] - want) <= 4e-7 * want, "inv_freq[%d] = %.9g, want %.9g", j, inv[j],
              want);
    }
}

/* Llama 3.1 8B's rope: values from transformers' _compute_llama3_parameters
 * evaluated with numpy in float32 (independent of this code) */
static void check_llama31_rope(const gptq_model_config *cfg, const char *how)
{
    float inv[64];
    gptq_config_rope_inv_freq(cfg, inv);
    static const struct {
        int j;
        double v;
    } ref[] = {{0, 1.0},
               {20, 0.016560440883040428},
               {29, 0.0021665706299245358},
               {30, 0.0013718936825171113},
               {34, 0.0001785077911335975},
               {40, 3.428102354519069e-05},
               {63, 3.068925877869333e-07}};
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++)
        CHECK(fabs(inv[ref[i].j] - ref[i].v) <= 2e-7 * ref[i].v,
              "llama3 (%s) inv_freq[%d] = %.9g, want %.9g", how, ref[i].j, inv[ref[i].j],
              ref[i].v);
}

static void test_variants(void)
{
    gptq_model_config cfg;
    /* Llama 3.1 8B's rope: values from transformers' _compute_llama3_parameters
     * evaluated with numpy in float32 (independent of this code) */
    CHECK_OK(parse_with("\"hidden_size\": 4096, \"num_attention_heads\": 32, "
                        "\"num_key_value_heads\": 8, \"rope_theta\": 500000.0, \"rope_scaling\": "
                        "{\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                        "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, "
                        "\"eos_token_id\": [128001, 128008, 128009], \"vocab_size\": 128256",
                        &cfg));
    CHECK(cfg.rope_type == GPTQ_ROPE_LLAMA3 && cfg.head_dim == 128, "rope %d hd %d", cfg.rope_type,
          cfg.head_dim);
    CHECK(cfg.n_eos == 3 && cfg.eos_token_ids[2] == 128009, "eos list %d", cfg.n_eos);
    check_llama31_rope(&cfg, "rope_scaling");
    /* the same as transformers 5 writes it: one rope_parameters object */
    CHECK_OK(parse_with("\"hidden_size\": 4096, \"num_attention_heads\": 32, "
                        "\"num_key_value_heads\": 8, \"rope_parameters\": {\"rope_theta\": "
                        "500000.0, \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                        "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, "
                        "\"rope_type\": \"llama3\"}, \"vocab_size\": 128256",
                        &cfg));
    CHECK(cfg.rope_type == GPTQ_ROPE_LLAMA3 && cfg.rope_theta == 500000.0,
          "rope_parameters llama3: type %d theta %g", cfg.rope_type, cfg.rope_theta);
    check_llama31_rope(&cfg, "rope_parameters");
    CHECK_OK(parse_with("\"rope_parameters\": {\"rope_theta\": 50000.0}", &cfg));
    CHECK(cfg.rope_type == GPTQ_ROPE_DEFAULT && cfg.rope_theta == 50000.0,
          "rope_parameters without rope_type: type %d theta %g", cfg.rope_type, cfg.rope_theta);
    CHECK_OK(parse_with("\"rope_theta\": 50000.0, \"rope_parameters\": {\"rope_type\": "
                        "\"linear\", \"factor\": 2.0, \"rope_theta\": 50000.0}, "
                        "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}",
                        &cfg));
    CHECK(cfg.rope_type == GPTQ_ROPE_LINEAR && cfg.rope_factor == 2.0 && cfg.rope_theta == 50000.0,
          "both spellings agreeing: type %d factor %g theta %g", cfg.rope_type, cfg.rope_factor,
          cfg.rope_theta);

    const char *qwen = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 896, "
                       "\"intermediate_size\": 4864, \"num_attention_heads\": 14, "
                       "\"num_key_value_heads\": 2, \"num_hidden_layers\": 24, \"vocab_size\": "
                       "151936, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true, "
                       "\"bos_token_id\": 151643, \"eos_token_id\": 151645, \"sliding_window\": "
                       "32768, \"use_sliding_window\": false, \"torch_dtype\": \"bfloat16\"}";
    CHECK_OK(gptq_config_parse(qwen, strlen(qwen), "qwen", &cfg));
    CHECK(cfg.arch == GPTQ_ARCH_QWEN2 && gptq_config_qkv_bias(&cfg) && !gptq_config_o_bias(&cfg),
          "qwen2 biases");
    CHECK(cfg.tie_word_embeddings && cfg.head_dim == 64 && cfg.sliding_window == 0 &&
              cfg.rms_norm_eps == 1e-6,
          "qwen2 tie %d hd %d sw %d eps %g", cfg.tie_word_embeddings, cfg.head_dim,
          cfg.sliding_window, cfg.rms_norm_eps);

    const char *mistral = "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 4096, "
                          "\"intermediate_size\": 14336, \"num_attention_heads\": 32, "
                          "\"num_key_value_heads\": 8, \"num_hidden_layers\": 32, \"vocab_size\": "
                          "32000, \"sliding_window\": null}";
    CHECK_OK(gptq_config_parse(mistral, strlen(mistral), "mistral", &cfg));
    CHECK(cfg.arch == GPTQ_ARCH_MISTRAL && cfg.sliding_window == 0, "mistral null window %d",
          cfg.sliding_window);
    const char *mistral_sw = "{\"model_type\": \"mistral\", \"hidden_size\": 64, "
                             "\"intermediate_size\": 128, \"num_attention_heads\": 4, "
                             "\"num_hidden_layers\": 1, \"vocab_size\": 100}";
    CHECK_OK(gptq_config_parse(mistral_sw, strlen(mistral_sw), "mistral", &cfg));
    CHECK(cfg.sliding_window == 4096 && cfg.num_key_value_heads == 4,
          "mistral default window %d kv heads %d", cfg.sliding_window, cfg.num_key_value_heads);

    CHECK_OK(parse_with("\"quantization_config\": {\"bits\": 4, \"group_size\": 128, \"desc_act\": "
                        "true, \"sym\": true, \"quant_method\": \"gptq\", \"checkpoint_format\": "
                        "\"gptq\"}",
                        &cfg));
    CHECK(cfg.quant.present && cfg.quant.bits == 4 && cfg.quant.group_size == 128 &&
              cfg.quant.desc_act && cfg.quant.sym,
          "quantization_config %d %d %d", cfg.quant.bits, cfg.quant.group_size, cfg.quant.desc_act);
    CHECK_OK(parse_with("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", &cfg));
    CHECK(cfg.rope_type == GPTQ_ROPE_LINEAR && cfg.rope_factor == 2.0, "linear rope");
}

static void test_errors(void)
{
    expect_error_raw("{\"architectures\": [\"LlamaForCausalLM\"], \"intermediate_size\": 768, "
                     "\"num_attention_heads\": 8, \"num_hidden_layers\": 4, \"vocab_size\": 4096}",
                     GPTQ_ERR_FORMAT, "hidden_size");
    expect_error_raw("{\"architectures\": [\"GPT2LMHeadModel\"], \"hidden_size\": 64}",
                     GPTQ_ERR_UNSUPPORTED, "GPT2LMHeadModel");
    expect_error_raw("{\"hidden_size\": 64}", GPTQ_ERR_FORMAT, "architectures");
    expect_error_raw("{\"hidden_size\": 64,", GPTQ_ERR_FORMAT, "line 1");
    expect_error("\"num_key_value_heads\": 3", GPTQ_ERR_FORMAT, "num_key_value_heads");
    expect_error("\"hidden_size\": 250", GPTQ_ERR_FORMAT, "hidden_size");
    expect_error("\"hidden_size\": \"256\"", GPTQ_ERR_FORMAT, "hidden_size");
    expect_error("\"vocab_size\": -1", GPTQ_ERR_FORMAT, "vocab_size");
    expect_error("\"head_dim\": 31", GPTQ_ERR_FORMAT, "head_dim");
    expect_error("\"hidden_act\": \"gelu\"", GPTQ_ERR_UNSUPPORTED, "hidden_act");
    expect_error("\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
                 GPTQ_ERR_UNSUPPORTED, "rope_scaling.rope_type");
    expect_error("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", GPTQ_ERR_FORMAT,
                 "low_freq_factor");
    /* transformers 5's rope_parameters: understood or refused, never passed over */
    expect_error("\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
                 GPTQ_ERR_UNSUPPORTED, "rope_parameters.rope_type 'yarn'");
    expect_error("\"rope_parameters\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}",
                 GPTQ_ERR_UNSUPPORTED, "'dynamic'");
    expect_error("\"rope_parameters\": {\"rope_type\": \"longrope\"}", GPTQ_ERR_FORMAT,
                 "rope_parameters.short_factor must be a list");
    expect_error("\"rope_theta\": 10000.0, \"rope_parameters\": {\"rope_theta\": 50000.0}",
                 GPTQ_ERR_FORMAT, "disagree");
    expect_error("\"rope_parameters\": {\"full_attention\": {\"rope_theta\": 1e6}}",
                 GPTQ_ERR_UNSUPPORTED, "per layer type");
    expect_error("\"rope_parameters\": {\"rope_theta\": 1e4, \"partial_rotary_factor\": 0.5}",
                 GPTQ_ERR_UNSUPPORTED, "partial_rotary_factor");
    expect_error("\"partial_rotary_factor\": 0.4", GPTQ_ERR_UNSUPPORTED, "partial_rotary_factor");
    /* transformers 5's layer_types: all full attention is what the template says */
    gptq_model_config lt_cfg;
    CHECK_OK(parse_with("\"layer_types\": [\"full_attention\", \"full_attention\", "
                        "\"full_attention\", \"full_attention\"]",
                        &lt_cfg));
    expect_error("\"layer_types\": [\"full_attention\", \"sliding_attention\", "
                 "\"full_attention\", \"full_attention\"]",
                 GPTQ_ERR_UNSUPPORTED, "layer_types[1]");
    expect_error("\"layer_types\": [\"full_attention\"]", GPTQ_ERR_FORMAT, "layer_types");
    expect_error("\"rope_parameters\": 10000", GPTQ_ERR_FORMAT, "rope_parameters must be");
    expect_error("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}, \"rope_parameters\": "
                 "{\"rope_type\": \"linear\", \"factor\": 4.0}",
                 GPTQ_ERR_FORMAT, "different RoPE scaling");
    expect_error("\"eos_token_id\": 5000", GPTQ_ERR_FORMAT, "eos_token_id");
    expect_error("\"eos_token_id\": [1, \"x\"]", GPTQ_ERR_FORMAT, "eos_token_id[1]");
    expect_error("\"torch_dtype\": \"int8\"", GPTQ_ERR_FORMAT, "torch_dtype");
    expect_error("\"rms_norm_eps\": 0", GPTQ_ERR_FORMAT, "rms_norm_eps");
    expect_error("\"quantization_config\": {\"bits\": 5}", GPTQ_ERR_UNSUPPORTED, "bits");
    expect_error("\"quantization_config\": {\"bits\": 4, \"quant_method\": \"awq\"}",
                 GPTQ_ERR_UNSUPPORTED, "quant_method");
    expect_error("\"quantization_config\": {\"group_size\": 128}", GPTQ_ERR_FORMAT, "bits");

    gptq_model_config cfg;
    gptq_status st = gptq_config_load("/nonexistent/config.json", &cfg);
    CHECK(st == GPTQ_ERR_IO, "missing file: %s", gptq_status_name(st));
}

/* ---- model folders in a temp dir ------------------------------------------------- */

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        CHECK(0, "cannot write %s: %s", path, strerror(errno));
        return;
    }
    fputs(text, f);
    fclose(f);
}

/* The fixture's config.json with `from` replaced by `to` (once). */
static void write_config_edit(const char *from, const char *to)
{
    FILE *f = fopen(fixture_path("tiny-llama/config.json"), "r");
    char buf[8192], out[8192];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    char *at = strstr(buf, from);
    CHECK(at != NULL, "'%s' not in the fixture config", from);
    if (!at)
        return;
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
    write_file("config.json", out);
}

static void expect_load_error(gptq_status want, const char *needle)
{
    gptq_model *m = NULL;
    gptq_status st = gptq_model_load(tmpdir, &m);
    CHECK(st == want, "load: status %s, want %s (%s)", gptq_status_name(st), gptq_status_name(want),
          gptq_errmsg());
    CHECK(strstr(gptq_errmsg(), needle) != NULL, "load: message '%s' does not name '%s'",
          gptq_errmsg(), needle);
    CHECK(m == NULL, "load failed but returned a model");
    gptq_model_free(m);
}

static void test_folders(void)
{
    char link[512], path[512];
    snprintf(link, sizeof link, "%s/model.safetensors", tmpdir);
    CHECK(symlink(fixture_path("tiny-llama/model.safetensors"), link) == 0, "symlink: %s",
          strerror(errno));


    /* wrong shapes: the config says the MLP is narrower than the weights */
    write_config_edit("\"intermediate_size\": 768", "\"intermediate_size\": 512");
    expect_load_error(GPTQ_ERR_FORMAT, "model.layers.0.mlp.gate_proj.weight");
    write_config_edit("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4");
    expect_load_error(GPTQ_ERR_FORMAT, "model.layers.0.self_attn.k_proj.weight");
    write_config_edit("\"num_hidden_layers\": 4", "\"num_hidden_layers\": 5");
    expect_load_error(GPTQ_ERR_NOTFOUND, "model.layers.4.input_layernorm.weight");
    write_config_edit("\"vocab_size\": 4096", "\"vocab_size\": 8192");
    expect_load_error(GPTQ_ERR_FORMAT, "vocab_size");
    write_config_edit("\"attention_bias\": false", "\"attention_bias\": true");
    expect_load_error(GPTQ_ERR_NOTFOUND, "q_proj.bias");
    write_config_edit("\"hidden_act\": \"silu\"", "\"hidden_act\": \"relu\"");
    expect_load_error(GPTQ_ERR_UNSUPPORTED, "hidden_act");

    /* transformers 5's rope_parameters evaluates like its top-level twin,
     * and unlike the default theta it replaces */
    float *logits[3] = {NULL, NULL, NULL};
    const char *edits[3] = {"\"rope_theta\": 10000.0", "\"rope_theta\": 50000.0",
                            "\"rope_parameters\": {\"rope_theta\": 50000.0, \"rope_type\": "
                            "\"default\"}"};
    int32_t twin_ids[6] = {1, 450, 4013, 17, 9, 300};
    for (int i = 0; i < 3; i++) {
        write_config_edit("\"rope_theta\": 10000.0", edits[i]);
        gptq_model *tm = NULL;
        CHECK_OK(gptq_model_load(tmpdir, &tm));
        if (tm && (logits[i] = malloc(6 * 4096 * sizeof(float))))
            CHECK_OK(gptq_model_forward(tm, NULL, twin_ids, 1, 6, NULL, NULL, 0, logits[i]));
        gptq_model_free(tm);
    }
    if (logits[0] && logits[1] && logits[2]) {
        CHECK(memcmp(logits[1], logits[2], 6 * 4096 * sizeof(float)) == 0,
              "rope_parameters.rope_theta 50000 gives other logits than rope_theta 50000");
        CHECK(memcmp(logits[0], logits[1], 6 * 4096 * sizeof(float)) != 0,
              "rope_theta 50000 gives the logits of 10000");
    }
    for (int i = 0; i < 3; i++)
        free(logits[i]);

    /* the unchanged config loads */
    write_config_edit("\"hidden_act\"", "\"hidden_act\"");
    gptq_model *m = NULL;
    CHECK_OK(gptq_model_load(tmpdir, &m));
    CHECK(m && gptq_model_params(m) > 4000000, "params %lld",
          m ? (long long)gptq_model_params(m) : 0);
    /* the fixture is F16: its matrices stay 16-bit, its norms become float32 */
    uint64_t want = 0;
    if (m) {
        const gptq_model_config *c = gptq_model_get_config(m);
        uint64_t norms = (uint64_t)c->hidden_size * (2 * (uint64_t)c->num_hidden_layers + 1);
        want = ((uint64_t)gptq_model_params(m) - norms) * 2 + norms * 4;
    }
    gptq_model_free(m);
    gptq_model_source *src = NULL;
    CHECK_OK(gptq_source_open(tmpdir, &src));
    uint64_t one_file = src ? gptq_source_resident_bytes(src) : 0;
    gptq_source_free(src);
    CHECK(one_file == want, "single file: %llu resident bytes, F16 matrices and float32 norms "
          "make %llu", (unsigned long long)one_file, (unsigned long long)want);

    /* sharded: an index naming the one file twice opens it once; names with
     * a path are refused */
    write_file("model.safetensors.index.json",
               "{\"metadata\": {}, \"weight_map\": {\"model.norm.weight\": \"model.safetensors\", "
               "\"lm_head.weight\": \"model.safetensors\"}}");
    CHECK_OK(gptq_source_open(tmpdir, &src));
    CHECK(src && gptq_source_resident_bytes(src) == one_file,
          "index with one shard named twice: opened once (%llu bytes, want %llu)",
          src ? (unsigned long long)gptq_source_resident_bytes(src) : 0ull,
          (unsigned long long)one_file);
    gptq_source_free(src);
    CHECK_OK(gptq_model_load(tmpdir, &m));
    gptq_model_free(m);
    write_file("model.safetensors.index.json",
               "{\"weight_map\": {\"model.norm.weight\": \"../etc/passwd\"}}");
    gptq_status st = gptq_source_open(tmpdir, &src);
    CHECK(st == GPTQ_ERR_FORMAT && strstr(gptq_errmsg(), "model.norm.weight") && !src,
          "index escaping the folder: %s %s", gptq_status_name(st), gptq_errmsg());
    write_file("model.safetensors.index.json", "{\"weight_map\": 3}");
    st = gptq_source_open(tmpdir, &src);
    CHECK(st == GPTQ_ERR_FORMAT && strstr(gptq_errmsg(), "weight_map"), "bad index: %s",
          gptq_errmsg());

    const char *names[] = {"model.safetensors.index.json", "config.json", "model.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    st = gptq_source_open(tmpdir, &src);
    CHECK(st == GPTQ_ERR_NOTFOUND && strstr(gptq_errmsg(), "config.json"), "empty folder: %s %s",
          gptq_status_name(st), gptq_errmsg());
}

/* generation_config.json's end-of-generation ids join config.json's. */
static void test_generation_config(void)
{
    gptq_model_config cfg;
    CHECK_OK(gptq_config_load(fixture_path("tiny-llama/config.json"), &cfg));
    int eos = cfg.eos_token_ids[0];
    char json[128];
    snprintf(json, sizeof json, "{\"eos_token_id\": [%d, 7, 9], \"bos_token_id\": 3}", eos);
    CHECK_OK(gptq_config_merge_generation(&cfg, json, strlen(json), "generation_config.json"));
    CHECK(cfg.n_eos == 3 && cfg.eos_token_ids[0] == eos && cfg.eos_token_ids[1] == 7 &&
              cfg.eos_token_ids[2] == 9, "merged eos: %d ids", cfg.n_eos);
    const char *bad = "{\"eos_token_id\": [99999]}";
    gptq_status st = gptq_config_merge_generation(&cfg, bad, strlen(bad), "generation_config.json");
    CHECK(st == GPTQ_ERR_FORMAT && strstr(gptq_errmsg(), "generation_config.json"),
          "an id outside the vocabulary: %s", gptq_errmsg());
}

/* transformers' own inverse frequencies (tests/data/interop/rope.json, made
 * by scripts/interop-check with transformers' ROPE_INIT_FUNCTIONS): the
 * rope_types we compute match them; the others are refused by name. */
static void test_transformers_rope(void)
{
    const char *root = getenv("GPTQ_SOURCE_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/interop/rope.json", root ? root : ".");
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    CHECK(doc != NULL, "%s: %s", path, err.text);
    const char *name;
    json_t *c;
    int computed = 0, refused = 0;
    json_object_foreach(json_object_get(doc, "cases"), name, c) {
        json_t *rp = json_object_get(c, "rope_parameters");
        const char *type = json_string_value(json_object_get(rp, "rope_type"));
        char *rp_text = json_dumps(rp, JSON_COMPACT);
        char extra[2048];
        snprintf(extra, sizeof extra, "\"head_dim\": 32, \"max_position_embeddings\": 16384, "
                 "\"rope_parameters\": %s", rp_text);
        free(rp_text);
        gptq_model_config cfg;
        gptq_status st = parse_with(extra, &cfg);
        if (!strcmp(type, "default") || !strcmp(type, "linear") || !strcmp(type, "llama3") ||
            !strcmp(type, "longrope")) { /* longrope: its short factors, up to the original */
            CHECK(st == GPTQ_OK, "rope %s: %s", name, gptq_errmsg());
            if (st)
                continue;
            float inv[16];
            gptq_config_rope_inv_freq(&cfg, inv);
            json_t *want = json_object_get(c, "inv_freq");
            double worst = 0;
            for (size_t i = 0; i < 16; i++) {
                double w = json_number_value(json_array_get(want, i));
                worst = fmax(worst, fabs(inv[i] - w) / w);
            }
            CHECK(json_array_size(want) == 16 && worst <= 1e-6,
                  "rope %s: inverse frequencies off transformers' by %.2e (relative)", name, worst);
            /* longrope's scaling of cos and sin (transformers' attention_scaling) */
            json_t *as = json_object_get(c, "attention_scaling");
            if (cfg.rope_type == GPTQ_ROPE_LONGROPE)
                CHECK(json_is_number(as) &&
                      fabs(cfg.rope_attention_factor - json_number_value(as)) < 1e-12,
                      "rope %s: attention factor %.12g, transformers' %.12g", name,
                      cfg.rope_attention_factor, json_number_value(as));
            computed++;
        } else {
            CHECK(st == GPTQ_ERR_UNSUPPORTED && strstr(gptq_errmsg(), type),
                  "rope %s (%s) must be refused by name: %s", name, type, gptq_errmsg());
            refused++;
        }
    }
    printf("transformers' RoPE: %d rope types computed alike, %d refused by name\n", computed,
           refused);
    CHECK(computed >= 5 && refused >= 2, "rope.json: %d computed, %d refused", computed, refused);
    json_decref(doc);
}

/* Phi-3.5 / Phi-3 128k's longrope as transformers 4 writes it (top-level
 * original_max_position_embeddings, rope_scaling type longrope): the
 * attention factor is sqrt(1 + ln 32 / ln 4096) = sqrt(17/12) exactly in
 * real numbers, the tables the default divided by each factor. */
static void test_longrope(void)
{
    char factors[2][512], extra[2048];
    for (int f = 0; f < 2; f++) {
        size_t used = 0;
        for (int j = 0; j < 16; j++)
            used += (size_t)snprintf(factors[f] + used, sizeof factors[f] - used, "%s%g",
                                     j ? ", " : "", f ? 1.0 + 0.5 * j : 1.0);
    }
    snprintf(extra, sizeof extra,
             "\"architectures\": [\"Phi3ForCausalLM\"], \"max_position_embeddings\": 131072, "
             "\"original_max_position_embeddings\": 4096, \"rope_scaling\": {\"type\": "
             "\"longrope\", \"short_factor\": [%s], \"long_factor\": [%s]}",
             factors[0], factors[1]);
    gptq_model_config cfg, plain;
    CHECK_OK(parse_with(extra, &cfg));
    CHECK(cfg.rope_type == GPTQ_ROPE_LONGROPE && cfg.rope_original_max_position_embeddings == 4096,
          "longrope: type %d original %d", cfg.rope_type,
          cfg.rope_original_max_position_embeddings);
    CHECK(fabs(cfg.rope_attention_factor - sqrt(17.0 / 12.0)) < 1e-12,
          "longrope attention factor %.12g, want sqrt(17/12)", cfg.rope_attention_factor);
    CHECK_OK(parse_with("", &plain));
    float base[16], s[16], l[16];
    gptq_config_rope_inv_freq(&plain, base);
    gptq_config_rope_inv_freq(&cfg, s);
    gptq_config_rope_inv_freq_long(&cfg, l);
    for (int j = 0; j < 16; j++)
        CHECK(s[j] == base[j] && fabs(l[j] - base[j] / (1.0f + 0.5f * j)) <= 1e-7 * base[j],
              "longrope inv_freq[%d]: short %.9g long %.9g, default %.9g", j, s[j], l[j],
              base[j]);
    /* refused: factors that are not head_dim / 2 numbers, no original context */
    snprintf(extra, sizeof extra,
             "\"architectures\": [\"Phi3ForCausalLM\"], \"original_max_position_embeddings\": "
             "4096, \"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1, 1], "
             "\"long_factor\": [%s]}", factors[1]);
    expect_error(extra, GPTQ_ERR_FORMAT, "short_factor must be a list of head_dim / 2 = 16");
    snprintf(extra, sizeof extra,
             "\"architectures\": [\"Phi3ForCausalLM\"], \"rope_scaling\": {\"type\": "
             "\"longrope\", \"short_factor\": [%s], \"long_factor\": [%s]}",
             factors[0], factors[1]);
    expect_error(extra, GPTQ_ERR_FORMAT, "needs original_max_position_embeddings");
}

/* A refusal by name: a config variant (the keys added to a template's
 * last object; a later duplicate key wins in jansson) and what the message
 * must name. */
typedef struct refusal {
    const char *extra, *needle;
} refusal;

/* Each variant of template `tmpl` (one %s where the keys go) refused as
 * unsupported (or, any_error, with any error) naming its needle. */
static void expect_refusals(const char *family, const char *tmpl, const refusal *r, size_t n,
                            int any_error)
{
    char json[4096];
    gptq_model_config c;
    for (size_t i = 0; i < n; i++) {
        snprintf(json, sizeof json, tmpl, r[i].extra);
        gptq_status st = gptq_config_parse(json, strlen(json), family, &c);
        CHECK((any_error ? st != GPTQ_OK : st == GPTQ_ERR_UNSUPPORTED) &&
                  strstr(gptq_errmsg(), r[i].needle),
              "%s {%s}: refused by name (%s: %s)", family, r[i].extra, gptq_status_name(st),
              gptq_errmsg());
    }
}

/* The family's file name of each of gptqd's names. */
static void expect_file_names(const char *family, const gptq_model_config *c,
                              const char *const (*names)[2], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        const char *got = gptq_config_file_name(c, names[i][0], buf, sizeof buf);
        CHECK(!strcmp(got, names[i][1]), "%s's file name of %s: %s, want %s", family,
              names[i][0], got, names[i][1]);
    }
}

/* OPT: facebook/opt-125m's config.json as published, and opt-350m's
 * differences (post-LN, a 512-wide embedding projected to 1024, no final
 * norm); the variants gptqd does not compute (other activations, no
 * biases) refused by name; the file names of its tensors. */
#define OPT_125M                                                                             \
    "{\"_remove_final_layer_norm\": false, \"activation_dropout\": 0.0, "                     \
    "\"activation_function\": \"relu\", \"architectures\": [\"OPTForCausalLM\"], "          \
    "\"attention_dropout\": 0.0, \"bos_token_id\": 2, \"do_layer_norm_before\": true, "      \
    "\"dropout\": 0.1, \"eos_token_id\": 2, \"ffn_dim\": 3072, \"hidden_size\": 768, "       \
    "\"init_std\": 0.02, \"layerdrop\": 0.0, \"max_position_embeddings\": 2048, "            \
    "\"model_type\": \"opt\", \"num_attention_heads\": 12, \"num_hidden_layers\": 12, "     \
    "\"pad_token_id\": 1, \"prefix\": \"</s>\", \"torch_dtype\": \"float16\", "            \
    "\"transformers_version\": \"4.21.0.dev0\", \"use_cache\": true, \"vocab_size\": 50272, " \
    "\"word_embed_proj_dim\": 768%s}"

static void test_opt(void)
{
    char json[2048];
    gptq_model_config c;
    snprintf(json, sizeof json, OPT_125M, "");
    CHECK_OK(gptq_config_parse(json, strlen(json), "opt-125m", &c));
    CHECK(c.arch == GPTQ_ARCH_OPT && c.hidden_size == 768 && c.intermediate_size == 3072 &&
              c.num_attention_heads == 12 && c.num_key_value_heads == 12 && c.head_dim == 64 &&
              c.num_hidden_layers == 12 && c.vocab_size == 50272 &&
              c.max_position_embeddings == 2048 && c.tie_word_embeddings &&
              c.rms_norm_eps == 1e-5 && c.bos_token_id == 2 && c.torch_dtype == GPTQ_DT_F16,
          "opt-125m: parsed as OPT with its sizes");
    CHECK(gptq_config_layernorm(&c) && !gptq_config_gated_mlp(&c) &&
              gptq_config_pos_rows(&c) == 2050 && gptq_config_pos_offset(&c) == 2 &&
              gptq_config_qkv_bias(&c) && gptq_config_o_bias(&c) && gptq_config_mlp_bias(&c),
          "opt-125m: LayerNorm, no gate, 2048 + 2 learned positions, biases everywhere");
    CHECK(!c.post_ln && !c.no_final_norm && gptq_config_embed_dim(&c) == 768,
          "opt-125m: pre-LN, a final norm, embedding as wide as the model");
    snprintf(json, sizeof json, OPT_125M,
             ", \"hidden_size\": 1024, \"ffn_dim\": 4096, \"num_attention_heads\": 16, "
             "\"num_hidden_layers\": 24, \"do_layer_norm_before\": false, "
             "\"word_embed_proj_dim\": 512");
    CHECK_OK(gptq_config_parse(json, strlen(json), "opt-350m", &c));
    CHECK(c.post_ln && c.no_final_norm && gptq_config_embed_dim(&c) == 512 &&
              c.word_embed_proj_dim == 512 && c.hidden_size == 1024,
          "opt-350m: post-LN, no final norm, 512-wide embedding projected to 1024");
    static const refusal refused[] = {
        {", \"activation_function\": \"gelu\"", "activation_function 'gelu'"},
        {", \"enable_bias\": false", "enable_bias"},
        {", \"layer_norm_elementwise_affine\": false", "layer_norm_elementwise_affine"},
    };
    expect_refusals("opt", OPT_125M, refused,
                    sizeof refused / sizeof refused[0], 0);
    snprintf(json, sizeof json, OPT_125M, "");
    CHECK_OK(gptq_config_parse(json, strlen(json), "opt-125m", &c));
    static const char *const names[][2] = {
        {"model.embed_tokens.weight", "model.decoder.embed_tokens.weight"},
        {"model.embed_positions.weight", "model.decoder.embed_positions.weight"},
        {"model.norm.bias", "model.decoder.final_layer_norm.bias"},
        {"model.layers.11.input_layernorm.weight", "model.decoder.layers.11.self_attn_layer_norm.weight"},
        {"model.layers.0.post_attention_layernorm.bias", "model.decoder.layers.0.final_layer_norm.bias"},
        {"model.layers.3.self_attn.q_proj.qweight", "model.decoder.layers.3.self_attn.q_proj.qweight"},
        {"model.layers.3.self_attn.o_proj", "model.decoder.layers.3.self_attn.out_proj"},
        {"model.layers.3.mlp.up_proj.scales", "model.decoder.layers.3.fc1.scales"},
        {"model.layers.3.mlp.down_proj.bias", "model.decoder.layers.3.fc2.bias"},
        {"lm_head.weight", "lm_head.weight"},
        {"model.project_in.weight", "model.decoder.project_in.weight"},
    };
    expect_file_names("OPT", &c, names, sizeof names / sizeof names[0]);
}

/* BLOOM: bigscience/bloom-560m's config.json as published (n_embed,
 * n_layer, num_attention_heads: both spellings), the ALiBi slopes
 * transformers computes for 16 heads and for 6 (not a power of two), and
 * its file names. */
#define BLOOM_560M                                                                           \
    "{\"apply_residual_connection_post_layernorm\": false, \"attention_dropout\": 0.0, "      \
    "\"architectures\": [\"BloomForCausalLM\"], \"attention_softmax_in_fp32\": true, "      \
    "\"bias_dropout_fusion\": true, \"bos_token_id\": 1, \"eos_token_id\": 2, "              \
    "\"hidden_dropout\": 0.0, \"hidden_size\": 1024, \"initializer_range\": 0.02, "          \
    "\"layer_norm_epsilon\": 1e-05, \"masked_softmax_fusion\": true, "                        \
    "\"model_type\": \"bloom\", \"n_head\": 16, \"n_inner\": null, \"n_layer\": 24, "       \
    "\"offset_alibi\": 100, \"pad_token_id\": 3, \"pretraining_tp\": 1, "                     \
    "\"skip_bias_add\": true, \"skip_bias_add_qkv\": false, \"slow_but_exact\": false, "     \
    "\"unk_token_id\": 0, \"use_cache\": true, \"vocab_size\": 250880%s}"

static void test_bloom(void)
{
    char json[2048];
    gptq_model_config c;
    snprintf(json, sizeof json, BLOOM_560M, "");
    CHECK_OK(gptq_config_parse(json, strlen(json), "bloom-560m", &c));
    CHECK(c.arch == GPTQ_ARCH_BLOOM && c.hidden_size == 1024 && c.intermediate_size == 4096 &&
              c.num_attention_heads == 16 && c.head_dim == 64 && c.num_hidden_layers == 24 &&
              c.vocab_size == 250880 && c.tie_word_embeddings && c.max_position_embeddings == 0 &&
              c.rms_norm_eps == 1e-5 && c.bos_token_id == 1,
          "bloom-560m: parsed as BLOOM with its sizes");
    CHECK(gptq_config_layernorm(&c) && !gptq_config_gated_mlp(&c) && gptq_config_alibi(&c) &&
              !gptq_config_rope(&c) && gptq_config_embed_norm(&c) && gptq_config_fuses(&c, 0) &&
              !gptq_config_fuses(&c, 1) && gptq_config_qkv_bias(&c) && gptq_config_mlp_bias(&c),
          "bloom-560m: LayerNorms, ALiBi, fused q/k/v, biases");
    /* transformers' _get_alibi_slopes: 16 heads are 2^-0.5 .. 2^-8 (powers
     * of the float32 base, so within an ulp or two of those); 6 heads are
     * 2^-2 .. 2^-8 (step 2) then 2^-1, 2^-3 */
    float sl[16];
    gptq_config_alibi_slopes(&c, sl);
    double worst = 0;
    for (int h = 0; h < 16; h++)
        worst = fmax(worst, fabs(sl[h] / pow(2, -0.5 * (h + 1)) - 1));
    CHECK(worst < 4e-7, "16 heads: slopes %g %g .. %g, %.3g from 2^(-h/2)", sl[0], sl[1], sl[15],
          worst);
    c.num_attention_heads = 6;
    gptq_config_alibi_slopes(&c, sl);
    CHECK(sl[0] == 0.25f && sl[3] == 1.0f / 256 && sl[4] == (float)pow(2, -1) &&
              sl[5] == (float)pow(2, -3),
          "6 heads: slopes %g %g %g %g %g %g", sl[0], sl[1], sl[2], sl[3], sl[4], sl[5]);
    c.num_attention_heads = 16;
    /* q, k and v per head: part k's row j of head j / 64 */
    CHECK(gptq_config_fused_row(&c, 0, 0, 0, 0) == 0 &&
              gptq_config_fused_row(&c, 0, 1, 0, 0) == 64 &&
              gptq_config_fused_row(&c, 0, 2, 0, 65) == 3 * 64 + 128 + 1 &&
              gptq_config_fused_row(&c, 0, 2, 1, 65) == 2 * 1024 + 65,
          "BLOOM's query_key_value rows interleave per head (llama.cpp's: concatenated)");
    static const refusal refused[] = {
        {", \"apply_residual_connection_post_layernorm\": true",
         "apply_residual_connection_post_layernorm"},
        {", \"pretraining_tp\": 4, \"slow_but_exact\": true", "slow_but_exact"},
    };
    expect_refusals("bloom", BLOOM_560M, refused,
                    sizeof refused / sizeof refused[0], 0);
    snprintf(json, sizeof json, BLOOM_560M, "");
    CHECK_OK(gptq_config_parse(json, strlen(json), "bloom-560m", &c));
    static const char *const names[][2] = {
        {"model.embed_tokens.weight", "transformer.word_embeddings.weight"},
        {"model.embed_norm.bias", "transformer.word_embeddings_layernorm.bias"},
        {"model.norm.weight", "transformer.ln_f.weight"},
        {"model.layers.7.input_layernorm.weight", "transformer.h.7.input_layernorm.weight"},
        {"model.layers.7.self_attn.qkv_proj.qweight",
         "transformer.h.7.self_attention.query_key_value.qweight"},
        {"model.layers.7.self_attn.o_proj.bias", "transformer.h.7.self_attention.dense.bias"},
        {"model.layers.7.mlp.up_proj.weight", "transformer.h.7.mlp.dense_h_to_4h.weight"},
        {"model.layers.7.mlp.down_proj", "transformer.h.7.mlp.dense_4h_to_h"},
    };
    expect_file_names("BLOOM", &c, names, sizeof names / sizeof names[0]);
    CHECK(!strcmp(gptq_config_base_prefix(&c), "transformer."), "BLOOM's base prefix");
    char path[128];
    CHECK(!strcmp(gptq_config_layer_path(&c, "self_attn.o_proj", path, sizeof path),
                  "self_attention.dense") &&
              !strcmp(gptq_config_layer_path(&c, "mlp.down_proj", path, sizeof path),
                      "mlp.dense_4h_to_h") &&
              !strcmp(gptq_config_layer_path(&c, "self_attn.qkv_proj", path, sizeof path),
                      "self_attention.query_key_value"),
          "BLOOM's module paths inside a layer");
    /* a head of 80 rows (bloom-3b's 2560 / 32) splits 3-bit zero points mid-word */
    CHECK(gptq_config_bits_check(&c, 3) == GPTQ_OK, "bloom-560m (head_dim 64): 3 bits fit");
    c.hidden_size = 2560, c.num_attention_heads = c.num_key_value_heads = 32, c.head_dim = 80;
    CHECK(gptq_config_bits_check(&c, 4) == GPTQ_OK &&
              gptq_config_bits_check(&c, 3) == GPTQ_ERR_UNSUPPORTED &&
              strstr(gptq_errmsg(), "2, 4 and 8 fit"),
          "bloom-3b (head_dim 80): 3 bits refused by name (%s)", gptq_errmsg());
}

/* Gemma 2: google/gemma-2-2b's config.json (no layer_types: every other
 * layer slides, from layer 0), the variants refused by name, the embedding
 * scale in the weights' dtype, and its norms' file names. */
#define GEMMA2_2B                                                                            \
    "{\"architectures\": [\"Gemma2ForCausalLM\"], \"attention_bias\": false, "             \
    "\"attention_dropout\": 0.0, \"attn_logit_softcapping\": 50.0, \"bos_token_id\": 2, "    \
    "\"cache_implementation\": \"hybrid\", \"eos_token_id\": 1, "                           \
    "\"final_logit_softcapping\": 30.0, \"head_dim\": 256, "                                 \
    "\"hidden_act\": \"gelu_pytorch_tanh\", \"hidden_activation\": \"gelu_pytorch_tanh\", " \
    "\"hidden_size\": 2304, \"initializer_range\": 0.02, \"intermediate_size\": 9216, "      \
    "\"max_position_embeddings\": 8192, \"model_type\": \"gemma2\", "                       \
    "\"num_attention_heads\": 8, \"num_hidden_layers\": 26, \"num_key_value_heads\": 4, "     \
    "\"pad_token_id\": 0, \"query_pre_attn_scalar\": 256, \"rms_norm_eps\": 1e-06, "          \
    "\"rope_theta\": 10000.0, \"sliding_window\": 4096, \"torch_dtype\": \"float32\", "     \
    "\"transformers_version\": \"4.42.4\", \"use_cache\": true, \"vocab_size\": 256000%s}"

static void test_gemma2(void)
{
    char json[2560];
    gptq_model_config c;
    snprintf(json, sizeof json, GEMMA2_2B, "");
    CHECK_OK(gptq_config_parse(json, strlen(json), "gemma-2-2b", &c));
    CHECK(c.arch == GPTQ_ARCH_GEMMA2 && c.hidden_size == 2304 && c.head_dim == 256 &&
              c.num_key_value_heads == 4 && c.tie_word_embeddings && c.query_pre_attn_scalar == 256 &&
              c.attn_softcap == 50 && c.final_softcap == 30 && c.sliding_window == 4096,
          "gemma-2-2b: parsed as Gemma 2 with its sizes and caps");
    CHECK(gptq_config_layer_window(&c, 0) == 4096 && gptq_config_layer_window(&c, 1) == 0 &&
              gptq_config_layer_window(&c, 24) == 4096 && gptq_config_layer_window(&c, 25) == 0,
          "gemma-2-2b: layers 0, 2, ... slide, 1, 3, ... see everything");
    CHECK(gptq_config_norm_offset(&c) == 1.0f && gptq_config_sandwich_norms(&c) &&
              gptq_config_gated_mlp(&c) && gptq_config_rope(&c) &&
              gptq_config_embed_scale(&c) == 48.0f,
          "gemma-2-2b: (1 + w) norms, sandwich norms, embedding x 48");
    /* sqrt(3072) in float32 whatever the weights' dtype (not bfloat16's 55.5) */
    snprintf(json, sizeof json, GEMMA2_2B,
             ", \"hidden_size\": 3072, \"torch_dtype\": \"bfloat16\"");
    CHECK_OK(gptq_config_parse(json, strlen(json), "gemma", &c));
    CHECK(gptq_config_embed_scale(&c) == sqrtf(3072.0f), "embedding scale %.7g",
          gptq_config_embed_scale(&c));
    static const refusal refused[] = {
        {", \"hidden_activation\": \"gelu\"", "hidden_activation 'gelu'"},
        {", \"use_bidirectional_attention\": true", "use_bidirectional_attention"},
        {", \"num_hidden_layers\": 2, \"layer_types\": [\"full_attention\", "
         "\"chunked_attention\"]",
         "layer_types[1]"},
    };
    expect_refusals("gemma2", GEMMA2_2B, refused,
                    sizeof refused / sizeof refused[0], 0);
    snprintf(json, sizeof json, GEMMA2_2B,
             ", \"num_hidden_layers\": 2, \"layer_types\": [\"full_attention\", "
             "\"sliding_attention\"], \"attn_logit_softcapping\": null");
    CHECK_OK(gptq_config_parse(json, strlen(json), "gemma2", &c));
    CHECK(gptq_config_layer_window(&c, 0) == 0 && gptq_config_layer_window(&c, 1) == 4096 &&
              c.attn_softcap == 0,
          "gemma2: an explicit layer_types list and a null cap are followed");
    static const char *const names[][2] = {
        {"model.layers.3.post_attention_layernorm.weight",
         "model.layers.3.pre_feedforward_layernorm.weight"},
        {"model.layers.3.attn_out_norm.weight", "model.layers.3.post_attention_layernorm.weight"},
        {"model.layers.3.mlp_out_norm.weight", "model.layers.3.post_feedforward_layernorm.weight"},
        {"model.layers.3.mlp.gate_proj.qweight", "model.layers.3.mlp.gate_proj.qweight"},
    };
    expect_file_names("Gemma 2", &c, names, sizeof names / sizeof names[0]);
}

/* Gemma 3: google/gemma-3-1b-it's config.json (transformers 4's spelling:
 * rope_theta, rope_local_base_freq, sliding_window_pattern), the same
 * RoPEs in transformers 5's rope_parameters per layer type, and a
 * disagreement between the two refused. */
#define GEMMA3_1B                                                                            \
    "{\"architectures\": [\"Gemma3ForCausalLM\"], \"attention_bias\": false, "             \
    "\"attention_dropout\": 0.0, \"attn_logit_softcapping\": null, \"bos_token_id\": 2, "    \
    "\"cache_implementation\": \"hybrid\", \"eos_token_id\": [1, 106], "                     \
    "\"final_logit_softcapping\": null, \"head_dim\": 256, "                                 \
    "\"hidden_activation\": \"gelu_pytorch_tanh\", \"hidden_size\": 1152, "                  \
    "\"initializer_range\": 0.02, \"intermediate_size\": 6912, "                             \
    "\"max_position_embeddings\": 32768, \"model_type\": \"gemma3_text\", "                  \
    "\"num_attention_heads\": 4, \"num_hidden_layers\": 26, \"num_key_value_heads\": 1, "     \
    "\"pad_token_id\": 0, \"query_pre_attn_scalar\": 256, \"rms_norm_eps\": 1e-06, "          \
    "\"rope_local_base_freq\": 10000, \"rope_scaling\": null, \"rope_theta\": 1000000, "     \
    "\"sliding_window\": 512, \"sliding_window_pattern\": 6, \"torch_dtype\": \"bfloat16\", " \
    "\"transformers_version\": \"4.50.0.dev0\", \"use_cache\": true, "                       \
    "\"vocab_size\": 262144%s}"

static void test_gemma3(void)
{
    char json[3072];
    gptq_model_config c;
    snprintf(json, sizeof json, GEMMA3_1B, "");
    CHECK_OK(gptq_config_parse(json, strlen(json), "gemma-3-1b-it", &c));
    CHECK(c.arch == GPTQ_ARCH_GEMMA3 && c.rope_theta == 1e6 && c.rope_local_theta == 1e4 &&
              c.rope_type == GPTQ_ROPE_DEFAULT && c.attn_softcap == 0 && c.final_softcap == 0 &&
              c.n_eos == 2 && gptq_config_qk_norm(&c) && gptq_config_norm_offset(&c) == 1.0f,
          "gemma-3-1b: two RoPE bases, no caps, q/k norms with (1 + w)");
    int sliding = 0;
    for (int l = 0; l < c.num_hidden_layers; l++)
        sliding += gptq_config_layer_window(&c, l) == 512 && gptq_config_layer_local_rope(&c, l);
    CHECK(sliding == 22 && gptq_config_layer_window(&c, 5) == 0 &&
              !gptq_config_layer_local_rope(&c, 5) && gptq_config_layer_window(&c, 6) == 512,
          "gemma-3-1b: 22 of 26 layers slide with the local base (every 6th is full)");
    float g[128], loc[128];
    gptq_config_rope_inv_freq(&c, g);
    gptq_config_rope_inv_freq_local(&c, loc);
    CHECK(fabs(g[1] / pow(1e6, -2.0 / 256) - 1) < 1e-6 && fabs(loc[1] / pow(1e4, -2.0 / 256) - 1) < 1e-6,
          "gemma-3-1b: inv_freq from 1e6 (global) and 1e4 (local)");
    /* no window: every layer sees everything, yet the sliding kind keeps its
     * own RoPE base (transformers picks the RoPE by layer_types alone) */
    snprintf(json, sizeof json, GEMMA3_1B, ", \"sliding_window\": null");
    CHECK_OK(gptq_config_parse(json, strlen(json), "gemma3", &c));
    CHECK(gptq_config_layer_window(&c, 0) == 0 && gptq_config_layer_local_rope(&c, 0) &&
              !gptq_config_layer_local_rope(&c, 5),
          "gemma3 without a window: layer 0 local RoPE, layer 5 global");
    /* transformers 5's form of gemma-3-4b: linear factor 8 on the global layers */
    snprintf(json, sizeof json, GEMMA3_1B,
             ", \"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\", "
             "\"factor\": 8.0, \"rope_theta\": 1000000.0}, \"sliding_attention\": "
             "{\"rope_type\": \"default\", \"rope_theta\": 10000.0}}, "
             "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0}");
    CHECK_OK(gptq_config_parse(json, strlen(json), "gemma-3-4b", &c));
    CHECK(c.rope_type == GPTQ_ROPE_LINEAR && c.rope_factor == 8 && c.rope_local_theta == 1e4,
          "gemma-3 rope_parameters per layer type: linear x8 global, default local");
    static const refusal refused[] = {
        {", \"rope_parameters\": {\"full_attention\": {\"rope_theta\": 500000.0}, "
         "\"sliding_attention\": {\"rope_theta\": 10000.0}}",
         "disagree"},
        {", \"rope_parameters\": {\"full_attention\": {}, \"sliding_attention\": "
         "{\"rope_type\": \"linear\", \"factor\": 2.0}}",
         "sliding_attention"},
        {", \"use_bidirectional_attention\": true", "use_bidirectional_attention"},
    };
    expect_refusals("gemma3", GEMMA3_1B, refused,
                    sizeof refused / sizeof refused[0], 1);
}

int main(void)
{
    test_opt();
    test_bloom();
    test_gemma2();
    test_gemma3();
    test_transformers_rope();
    test_longrope();
    struct stat sb;
    const char *fx = getenv("GPTQ_FIXTURES");
    if (!fx || stat(fx, &sb) != 0) { /* what needs no fixture has run */
        printf("fixtures not found: the fixture checks are skipped\n");
        return test_result();
    }
    fixture_path("tiny-llama/config.json");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_config.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    test_fixture();
    test_variants();
    test_errors();
    test_folders();
    test_generation_config();
    rmdir(tmpdir);
    return test_result();
}
