/* model/config.c: config.json of the Llama family, and the files of a model
 * folder.
 *
 * Defaults for absent optional fields are transformers' (LlamaConfig,
 * MistralConfig, Qwen2Config). Required fields are the ones every real
 * checkpoint writes; their absence means the file is not what it claims. */
#include "model/config.h"

#include "model/json_error.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Bounds that keep every product of sizes inside int64 and reject garbage
 * early; far above any released Llama-family model. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS GPTQ_MAX_LAYERS
#define MAX_VOCAB (1 << 24)

static int is_gemma(const gptq_model_config *cfg)
{
    return cfg->arch == GPTQ_ARCH_GEMMA2 || cfg->arch == GPTQ_ARCH_GEMMA3;
}

/* ---- typed field readers ----------------------------------------------------
 * Each returns 0 if the field is absent or null (leaving *out), 1 if read, or
 * a negative value after setting the message (wrong type or range). */

static int get_int(json_t *obj, const char *what, const char *key, int lo, int hi, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
        d = json_real_value(v); /* 4096.0 written by some exporters */
    else {
        gptq_fail(GPTQ_ERR_FORMAT, "%s: %s must be an integer", what, key);
        return -1;
    }
    if (d < lo || d > hi) {
        gptq_fail(GPTQ_ERR_FORMAT, "%s: %s = %.0f is out of range [%d, %d]", what, key, d, lo, hi);
        return -1;
    }
    *out = (int)d;
    return 1;
}

static int get_double(json_t *obj, const char *what, const char *key, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v)) {
        gptq_fail(GPTQ_ERR_FORMAT, "%s: %s must be a number", what, key);
        return -1;
    }
    *out = json_number_value(v);
    return 1;
}

static int get_bool(json_t *obj, const char *what, const char *key, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        gptq_fail(GPTQ_ERR_FORMAT, "%s: %s must be true or false", what, key);
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

static int get_string(json_t *obj, const char *what, const char *key, const char **out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        gptq_fail(GPTQ_ERR_FORMAT, "%s: %s must be a string", what, key);
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

static int require_int(json_t *obj, const char *what, const char *key, int lo, int hi, int *out)
{
    int r = get_int(obj, what, key, lo, hi, out);
    if (r == 0) {
        gptq_fail(GPTQ_ERR_FORMAT, "%s: required field %s is missing", what, key);
        return -1;
    }
    return r;
}

/* ---- sections -------------------------------------------------------------- */

static gptq_status parse_arch(json_t *root, const char *what, gptq_model_config *cfg)
{
    static const struct {
        const char *architecture, *model_type;
        gptq_arch arch;
    } known[] = {
        {"LlamaForCausalLM", "llama", GPTQ_ARCH_LLAMA},
        {"MistralForCausalLM", "mistral", GPTQ_ARCH_MISTRAL},
        {"Qwen2ForCausalLM", "qwen2", GPTQ_ARCH_QWEN2},
        {"Qwen3ForCausalLM", "qwen3", GPTQ_ARCH_QWEN3},
        {"Phi3ForCausalLM", "phi3", GPTQ_ARCH_PHI3},
        {"OPTForCausalLM", "opt", GPTQ_ARCH_OPT},
        {"BloomForCausalLM", "bloom", GPTQ_ARCH_BLOOM},
        {"Gemma2ForCausalLM", "gemma2", GPTQ_ARCH_GEMMA2},
        {"Gemma3ForCausalLM", "gemma3_text", GPTQ_ARCH_GEMMA3},
    };
    const char *name = NULL, *model_type = NULL;
    json_t *archs = json_object_get(root, "architectures");
    if (archs && !json_is_null(archs)) {
        if (!json_is_array(archs) || json_array_size(archs) == 0 ||
            !json_is_string(json_array_get(archs, 0)))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: architectures must be a list of strings", what);
        name = json_string_value(json_array_get(archs, 0));
    }
    if (get_string(root, what, "model_type", &model_type) < 0)
        return GPTQ_ERR_FORMAT;
    if (!name && !model_type)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: neither architectures nor model_type is set; expected e.g. "
                         "\"architectures\": [\"LlamaForCausalLM\"]",
                         what);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (name ? strcmp(name, known[i].architecture) == 0
                 : strcmp(model_type, known[i].model_type) == 0) {
            cfg->arch = known[i].arch;
            snprintf(cfg->architecture, sizeof cfg->architecture, "%s", known[i].architecture);
            return GPTQ_OK;
        }
    }
    return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                     "%s: architecture %s '%s' is not supported; supported: LlamaForCausalLM, "
                     "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, "
                     "OPTForCausalLM, BloomForCausalLM, Gemma2ForCausalLM, "
                     "Gemma3ForCausalLM",
                     what, name ? "(architectures)" : "(model_type)", name ? name : model_type);
}

/* One of longrope's factor lists: head_dim / 2 positive numbers. */
static gptq_status longrope_factors(json_t *rs, const char *what, const char *key,
                                    const char *name, int n, float *out)
{
    json_t *a = json_object_get(rs, name);
    if (!json_is_array(a) || json_array_size(a) != (size_t)n)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s.%s must be a list of head_dim / 2 = %d numbers",
                         what, key, name, n);
    for (int j = 0; j < n; j++) {
        json_t *v = json_array_get(a, (size_t)j);
        double d = json_is_number(v) ? json_number_value(v) : -1;
        if (!(d > 0) || !isfinite(d))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s.%s[%d] must be a positive number", what,
                             key, name, j);
        out[j] = (float)d; /* torch.tensor(..., dtype=float32) */
    }
    return GPTQ_OK;
}

/* longrope (Phi-3 128k, Phi-3.5): short_factor and long_factor,
 * original_max_position_embeddings (in the object, or config.json's own,
 * already in cfg), factor (default max_position_embeddings / original) and
 * attention_factor (default sqrt(1 + ln factor / ln original) when factor
 * > 1), as transformers' _compute_longrope_parameters reads them. */
static gptq_status parse_longrope(json_t *rs, const char *what, const char *key,
                                  gptq_model_config *cfg)
{
    gptq_status st;
    const int half = cfg->head_dim / 2;
    if ((st = longrope_factors(rs, what, key, "short_factor", half, cfg->rope_short_factor)) ||
        (st = longrope_factors(rs, what, key, "long_factor", half, cfg->rope_long_factor)))
        return st;
    if (get_int(rs, what, "original_max_position_embeddings", 1, 1 << 30,
                &cfg->rope_original_max_position_embeddings) < 0)
        return GPTQ_ERR_FORMAT;
    const int orig = cfg->rope_original_max_position_embeddings;
    if (orig <= 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s (longrope) needs "
                         "original_max_position_embeddings", what, key);
    double factor = 0;
    int has_factor = get_double(rs, what, "factor", &factor);
    if (has_factor < 0)
        return GPTQ_ERR_FORMAT;
    if (!has_factor || json_is_null(json_object_get(rs, "factor")))
        factor = cfg->max_position_embeddings > 0
                     ? (double)cfg->max_position_embeddings / orig : 1.0;
    double af = factor <= 1.0 ? 1.0 : sqrt(1 + log(factor) / log((double)orig));
    int has_af = get_double(rs, what, "attention_factor", &af);
    if (has_af < 0)
        return GPTQ_ERR_FORMAT;
    if (!(af > 0) || !isfinite(af))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s.attention_factor %g must be positive", what,
                         key, af);
    cfg->rope_factor = factor;
    cfg->rope_attention_factor = af;
    cfg->rope_type = GPTQ_ROPE_LONGROPE;
    return GPTQ_OK;
}

/* The scaling a RoPE object `rs` (config.json's rope_scaling, or
 * transformers 5's rope_parameters) asks for, into cfg's rope_type and
 * factors; `key` names the object in messages. A missing rope_type means
 * "default" in rope_parameters and is an error in rope_scaling. */
static gptq_status parse_rope_object(json_t *rs, const char *what, const char *key,
                                     int type_optional, gptq_model_config *cfg)
{
    cfg->rope_type = GPTQ_ROPE_DEFAULT;
    const char *type = NULL;
    if (get_string(rs, what, "rope_type", &type) < 0)
        return GPTQ_ERR_FORMAT;
    if (!type && get_string(rs, what, "type", &type) < 0)
        return GPTQ_ERR_FORMAT;
    if (!type && !type_optional)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s has no rope_type (or type)", what, key);
    double partial = 1.0;
    if (get_double(rs, what, "partial_rotary_factor", &partial) < 0)
        return GPTQ_ERR_FORMAT;
    if (partial != 1.0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: %s.partial_rotary_factor %g is not supported "
                         "(rotary embedding over the whole head only)", what, key, partial);
    if (!type || strcmp(type, "default") == 0)
        return GPTQ_OK;
    if (!strcmp(type, "longrope") || !strcmp(type, "su"))
        return parse_longrope(rs, what, key, cfg);
    if (strcmp(type, "linear") != 0 && strcmp(type, "llama3") != 0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: %s.rope_type '%s' is not supported; supported: default, linear, "
                         "llama3, longrope",
                         what, key, type);
    if (get_double(rs, key, "factor", &cfg->rope_factor) <= 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s.factor is missing or not a number", what, key);
    if (!(cfg->rope_factor >= 1.0))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s.factor %g must be >= 1", what, key,
                         cfg->rope_factor);
    if (strcmp(type, "linear") == 0) {
        cfg->rope_type = GPTQ_ROPE_LINEAR;
        return GPTQ_OK;
    }
    cfg->rope_type = GPTQ_ROPE_LLAMA3;
    if (get_double(rs, key, "low_freq_factor", &cfg->rope_low_freq_factor) <= 0 ||
        get_double(rs, key, "high_freq_factor", &cfg->rope_high_freq_factor) <= 0 ||
        get_int(rs, key, "original_max_position_embeddings", 1, 1 << 30,
                &cfg->rope_original_max_position_embeddings) <= 0)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: %s (llama3) needs numbers low_freq_factor, high_freq_factor and "
                         "original_max_position_embeddings",
                         what, key);
    if (!(cfg->rope_low_freq_factor > 0) ||
        !(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: %s needs 0 < low_freq_factor (%g) < high_freq_factor (%g)", what,
                         key, cfg->rope_low_freq_factor, cfg->rope_high_freq_factor);
    return GPTQ_OK;
}

/* RoPE: top-level rope_theta (default 10000) and rope_scaling (transformers
 * 4), or rope_parameters (transformers 5: rope_theta, rope_type and the
 * scaling fields in one object). Where both spellings are present they must
 * agree; a setting that changes the frequencies is never passed over. */
static gptq_status parse_rope(json_t *root, const char *what, gptq_model_config *cfg)
{
    cfg->rope_theta = 10000.0;
    int top_theta = get_double(root, what, "rope_theta", &cfg->rope_theta);
    if (top_theta < 0)
        return GPTQ_ERR_FORMAT;
    double partial = 1.0;
    if (get_double(root, what, "partial_rotary_factor", &partial) < 0)
        return GPTQ_ERR_FORMAT;
    if (partial != 1.0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: partial_rotary_factor %g is not supported "
                         "(rotary embedding over the whole head only)", what, partial);
    /* config.json's own (Phi-3): longrope's default for its object's */
    if (get_int(root, what, "original_max_position_embeddings", 1, 1 << 30,
                &cfg->rope_original_max_position_embeddings) < 0)
        return GPTQ_ERR_FORMAT;
    json_t *rs = json_object_get(root, "rope_scaling");
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rs && !json_is_null(rs) && !json_is_object(rs))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: rope_scaling must be an object or null", what);
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: rope_parameters must be an object or null", what);
    gptq_status st;
    gptq_model_config scaling = *cfg; /* what rope_scaling alone says */
    scaling.rope_type = GPTQ_ROPE_DEFAULT;
    if (rs && json_is_object(rs) &&
        (st = parse_rope_object(rs, what, "rope_scaling", 0, &scaling)) != GPTQ_OK)
        return st;
    if (!rp || json_is_null(rp)) {
        *cfg = scaling;
        return GPTQ_OK;
    }
    /* rope_parameters keyed by layer type (models mixing attention kinds) */
    const char *k;
    json_t *v;
    json_object_foreach(rp, k, v) {
        if (json_is_object(v))
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: rope_parameters.%s: RoPE settings per "
                             "layer type are not supported (one set for every layer)", what, k);
    }
    double theta = cfg->rope_theta;
    int rp_theta = get_double(rp, what, "rope_theta", &theta);
    if (rp_theta < 0)
        return GPTQ_ERR_FORMAT;
    if (rp_theta && top_theta && theta != cfg->rope_theta)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: rope_theta %g and rope_parameters.rope_theta %g "
                         "disagree", what, cfg->rope_theta, theta);
    cfg->rope_theta = theta;
    if ((st = parse_rope_object(rp, what, "rope_parameters", 1, cfg)) != GPTQ_OK)
        return st;
    if (rs && json_is_object(rs) &&
        (scaling.rope_type != cfg->rope_type ||
         (cfg->rope_type != GPTQ_ROPE_DEFAULT && scaling.rope_factor != cfg->rope_factor) ||
         (cfg->rope_type == GPTQ_ROPE_LLAMA3 &&
          (scaling.rope_low_freq_factor != cfg->rope_low_freq_factor ||
           scaling.rope_high_freq_factor != cfg->rope_high_freq_factor ||
           scaling.rope_original_max_position_embeddings !=
               cfg->rope_original_max_position_embeddings)) ||
         (cfg->rope_type == GPTQ_ROPE_LONGROPE &&
          (scaling.rope_attention_factor != cfg->rope_attention_factor ||
           scaling.rope_original_max_position_embeddings !=
               cfg->rope_original_max_position_embeddings ||
           memcmp(scaling.rope_short_factor, cfg->rope_short_factor,
                  sizeof cfg->rope_short_factor) ||
           memcmp(scaling.rope_long_factor, cfg->rope_long_factor,
                  sizeof cfg->rope_long_factor)))))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: rope_scaling and rope_parameters describe "
                         "different RoPE scaling", what);
    return GPTQ_OK;
}

/* Mark layer l of the sliding kind, or not (cfg->sliding_layers). */
static void set_sliding(gptq_model_config *cfg, int l, int on)
{
    if (on)
        cfg->sliding_layers[l / 8] |= (unsigned char)(1u << (l % 8));
    else
        cfg->sliding_layers[l / 8] &= (unsigned char)~(1u << (l % 8));
}

/* Which layers attend within the window. Gemma 2 and 3 mix them (default:
 * Gemma2Config's and Gemma3TextConfig's patterns); every other family
 * slides on all layers or none, and a list that mixes is refused. */
static gptq_status parse_layer_types(json_t *root, const char *what,
                                     gptq_model_config *cfg)
{
    const int gemma = is_gemma(cfg);
    /* Gemma 2 alternates; Gemma 3's configs give sliding_window_pattern
     * (default 6): layer l slides unless (l + 1) is a multiple of it */
    int pattern = cfg->arch == GPTQ_ARCH_GEMMA3 ? 6 : 2;
    if (cfg->arch == GPTQ_ARCH_GEMMA3 &&
        get_int(root, what, "sliding_window_pattern", 1, 1 << 20, &pattern) < 0)
        return GPTQ_ERR_FORMAT;
    /* Gemma's layer kinds hold without a window too (they pick Gemma 3's
     * RoPE); the others' follow the window */
    for (int l = 0; l < cfg->num_hidden_layers; l++)
        set_sliding(cfg, l, gemma ? (l + 1) % pattern != 0 : cfg->sliding_window > 0);
    json_t *lt = json_object_get(root, "layer_types");
    if (!lt || json_is_null(lt))
        return GPTQ_OK;
    if (gemma) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)cfg->num_hidden_layers)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: layer_types must be a list of %d strings "
                             "(one per layer)", what, cfg->num_hidden_layers);
        for (size_t i = 0; i < json_array_size(lt); i++) {
            const char *t = json_string_value(json_array_get(lt, i));
            int sliding = t && !strcmp(t, "sliding_attention");
            if (!sliding && (!t || strcmp(t, "full_attention")))
                return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: layer_types[%zu] '%s' is not "
                                 "sliding_attention or full_attention", what, i, t ? t : "?");
            set_sliding(cfg, (int)i, sliding);
        }
        return GPTQ_OK;
    }
    if (!json_is_array(lt) || json_array_size(lt) != (size_t)cfg->num_hidden_layers)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: layer_types must be a list of %d strings (one "
                         "per layer)", what, cfg->num_hidden_layers);
    const char *want = cfg->sliding_window > 0 ? "sliding_attention" : "full_attention";
    for (size_t i = 0; i < json_array_size(lt); i++) {
        const char *t = json_string_value(json_array_get(lt, i));
        if (!t)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: layer_types[%zu] must be a string", what, i);
        if (strcmp(t, want) != 0)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: layer_types[%zu] is '%s' where the "
                             "config makes every layer '%s': per-layer attention kinds are not "
                             "supported", what, i, t, want);
    }
    return GPTQ_OK;
}

static gptq_status parse_token_ids(json_t *root, const char *what, gptq_model_config *cfg)
{
    cfg->bos_token_id = -1;
    if (get_int(root, what, "bos_token_id", 0, cfg->vocab_size - 1, &cfg->bos_token_id) < 0)
        return GPTQ_ERR_FORMAT;
    cfg->n_eos = 0;
    json_t *eos = json_object_get(root, "eos_token_id");
    if (!eos || json_is_null(eos))
        return GPTQ_OK;
    if (json_is_array(eos)) {
        size_t i;
        json_t *v;
        json_array_foreach(eos, i, v)
        {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) >= cfg->vocab_size)
                return gptq_fail(GPTQ_ERR_FORMAT,
                                 "%s: eos_token_id[%zu] must be an id in [0, vocab_size %d)", what,
                                 i, cfg->vocab_size);
            if (cfg->n_eos == GPTQ_MAX_EOS)
                return gptq_fail(GPTQ_ERR_FORMAT, "%s: eos_token_id lists more than %d ids", what,
                                 GPTQ_MAX_EOS);
            cfg->eos_token_ids[cfg->n_eos++] = (int)json_integer_value(v);
        }
        return GPTQ_OK;
    }
    int id;
    if (get_int(root, what, "eos_token_id", 0, cfg->vocab_size - 1, &id) < 0)
        return GPTQ_ERR_FORMAT;
    cfg->eos_token_ids[cfg->n_eos++] = id;
    return GPTQ_OK;
}

static gptq_status parse_dtype(json_t *root, const char *what, gptq_model_config *cfg)
{
    static const struct {
        const char *name;
        gptq_dtype dt;
    } names[] = {{"float16", GPTQ_DT_F16}, {"bfloat16", GPTQ_DT_BF16}, {"float32", GPTQ_DT_F32}};
    const char *s = NULL, *key = "torch_dtype";
    cfg->torch_dtype = GPTQ_DT_F32;
    if (get_string(root, what, key, &s) < 0)
        return GPTQ_ERR_FORMAT;
    if (!s) { /* transformers >= 4.56 writes "dtype" */
        key = "dtype";
        if (get_string(root, what, key, &s) < 0)
            return GPTQ_ERR_FORMAT;
    }
    if (!s)
        return GPTQ_OK;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            cfg->torch_dtype = names[i].dt;
            return GPTQ_OK;
        }
    return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s '%s' is not float16, bfloat16 or float32", what, key,
                     s);
}

static gptq_status parse_quant(json_t *root, const char *what, gptq_model_config *cfg)
{
    json_t *q = json_object_get(root, "quantization_config");
    if (!q || json_is_null(q))
        return GPTQ_OK;
    if (!json_is_object(q))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: quantization_config must be an object", what);
    const char *qwhat = "config.json quantization_config";
    const char *method = "gptq", *format = "gptq", *format2 = NULL;
    cfg->quant.present = 1;
    cfg->quant.group_size = -1;
    /* GPTQModel spells the format "checkpoint_format" in configs and
     * "format" in its own; where both are given they must agree */
    if (get_string(q, qwhat, "quant_method", &method) < 0 ||
        get_string(q, qwhat, "checkpoint_format", &format) < 0 ||
        get_string(q, qwhat, "format", &format2) < 0)
        return GPTQ_ERR_FORMAT;
    if (format2 && json_object_get(q, "checkpoint_format") && strcmp(format, format2) != 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: quantization_config.checkpoint_format '%s' and "
                         "format '%s' disagree", what, format, format2);
    if (format2)
        format = format2;
    if (strcmp(method, "gptq") != 0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: quantization_config.quant_method '%s' is not supported; only gptq",
                         what, method);
    if (strcmp(format, "gptq") != 0 && strcmp(format, "gptq_v2") != 0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: quantization_config.checkpoint_format '%s' is not supported; gptq "
                         "(v1) and gptq_v2 are",
                         what, format);
    cfg->quant.v2 = strcmp(format, "gptq_v2") == 0;
    snprintf(cfg->quant.quant_method, sizeof cfg->quant.quant_method, "%s", method);
    snprintf(cfg->quant.checkpoint_format, sizeof cfg->quant.checkpoint_format, "%s", format);
    if (require_int(q, qwhat, "bits", 2, 8, &cfg->quant.bits) < 0 ||
        get_int(q, qwhat, "group_size", -1, MAX_DIM, &cfg->quant.group_size) < 0 ||
        get_bool(q, qwhat, "desc_act", &cfg->quant.desc_act) < 0 ||
        get_bool(q, qwhat, "sym", &cfg->quant.sym) < 0)
        return GPTQ_ERR_FORMAT;
    if (cfg->quant.bits != 2 && cfg->quant.bits != 3 && cfg->quant.bits != 4 &&
        cfg->quant.bits != 8)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: quantization_config.bits %d is not supported; use 2, 3, 4 or 8", what,
                         cfg->quant.bits);
    if (cfg->quant.group_size == 0)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: quantization_config.group_size 0; use -1 (per channel) or > 0", what);
    return GPTQ_OK;
}

/* Gemma 3's two RoPEs: the full-attention layers' (rope_theta, default 1e6,
 * and rope_scaling: transformers 4's spelling) and the sliding layers'
 * (rope_local_base_freq, default 10000, always default RoPE); transformers
 * 5 writes them as rope_parameters.full_attention / .sliding_attention.
 * Where both spellings are present they must agree. */
static gptq_status parse_gemma3_rope(json_t *root, const char *what, gptq_model_config *cfg)
{
    gptq_status st = GPTQ_OK;
    cfg->rope_theta = 1e6, cfg->rope_local_theta = 1e4;
    int top = get_double(root, what, "rope_theta", &cfg->rope_theta);
    int top_local = get_double(root, what, "rope_local_base_freq", &cfg->rope_local_theta);
    if (top < 0 || top_local < 0)
        return GPTQ_ERR_FORMAT;
    json_t *rs = json_object_get(root, "rope_scaling");
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rs && !json_is_null(rs) &&
        (!json_is_object(rs) ||
         (st = parse_rope_object(rs, what, "rope_scaling", 0, cfg)) != GPTQ_OK))
        return json_is_object(rs) ? st
                                  : gptq_fail(GPTQ_ERR_FORMAT, "%s: rope_scaling must be an "
                                              "object or null", what);
    if (!rp || json_is_null(rp))
        return GPTQ_OK;
    json_t *full = json_object_get(rp, "full_attention"),
           *sliding = json_object_get(rp, "sliding_attention");
    if (!json_is_object(rp) || !json_is_object(full) || !json_is_object(sliding))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: rope_parameters must hold full_attention and "
                         "sliding_attention objects", what);
    gptq_model_config g = *cfg, l = *cfg;
    int ft = get_double(full, what, "rope_theta", &g.rope_theta);
    int lt = get_double(sliding, what, "rope_theta", &l.rope_theta);
    if (ft < 0 || lt < 0 ||
        (st = parse_rope_object(full, what, "rope_parameters.full_attention", 1, &g)) ||
        (st = parse_rope_object(sliding, what, "rope_parameters.sliding_attention", 1, &l)))
        return ft < 0 || lt < 0 ? GPTQ_ERR_FORMAT : st;
    if (l.rope_type != GPTQ_ROPE_DEFAULT)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: rope_parameters.sliding_attention: only the "
                         "default RoPE is supported there", what);
    if ((ft && top && g.rope_theta != cfg->rope_theta) ||
        (lt && top_local && l.rope_theta != cfg->rope_local_theta) ||
        (rs && json_is_object(rs) &&
         (g.rope_type != cfg->rope_type || g.rope_factor != cfg->rope_factor)))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: rope_parameters disagree with rope_theta, "
                         "rope_local_base_freq or rope_scaling", what);
    g.rope_local_theta = lt ? l.rope_theta : cfg->rope_local_theta;
    *cfg = g;
    return GPTQ_OK;
}

/* ---- OPT ------------------------------------------------------------------------- */

/* OPTConfig's fields (its own names; transformers' defaults where absent),
 * opt-350m's post-LN layout with its projections included; configs
 * without biases or with non-affine norms (no released checkpoint) and
 * activations other than ReLU are refused by name. */
static gptq_status parse_opt(json_t *root, const char *what, gptq_model_config *cfg)
{
    if (require_int(root, what, "hidden_size", 1, MAX_DIM, &cfg->hidden_size) < 0 ||
        require_int(root, what, "ffn_dim", 1, MAX_DIM, &cfg->intermediate_size) < 0 ||
        require_int(root, what, "num_attention_heads", 1, 4096, &cfg->num_attention_heads) < 0 ||
        require_int(root, what, "num_hidden_layers", 1, MAX_LAYERS, &cfg->num_hidden_layers) < 0 ||
        require_int(root, what, "vocab_size", 1, MAX_VOCAB, &cfg->vocab_size) < 0 ||
        require_int(root, what, "max_position_embeddings", 1, 1 << 24,
                    &cfg->max_position_embeddings) < 0)
        return GPTQ_ERR_FORMAT;
    if (cfg->hidden_size % cfg->num_attention_heads != 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: hidden_size %d is not a multiple of "
                         "num_attention_heads %d", what, cfg->hidden_size,
                         cfg->num_attention_heads);
    cfg->num_key_value_heads = cfg->num_attention_heads;
    cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
    if (cfg->head_dim % 2 != 0 || cfg->head_dim > GPTQ_MAX_HEAD_DIM)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: head_dim %d must be even and at most %d", what,
                         cfg->head_dim, GPTQ_MAX_HEAD_DIM);
    int before = 1, proj = cfg->hidden_size, remove_final = 0, bias = 1, affine = 1;
    const char *act = NULL;
    cfg->tie_word_embeddings = 1; /* PretrainedConfig's default, which OPTConfig keeps */
    if (get_bool(root, what, "do_layer_norm_before", &before) < 0 ||
        get_int(root, what, "word_embed_proj_dim", 1, MAX_DIM, &proj) < 0 ||
        get_bool(root, what, "_remove_final_layer_norm", &remove_final) < 0 ||
        get_bool(root, what, "enable_bias", &bias) < 0 ||
        get_bool(root, what, "layer_norm_elementwise_affine", &affine) < 0 ||
        get_bool(root, what, "tie_word_embeddings", &cfg->tie_word_embeddings) < 0 ||
        get_string(root, what, "activation_function", &act) < 0)
        return GPTQ_ERR_FORMAT;
    /* transformers keeps a final norm only before-LN and not removed */
    cfg->post_ln = !before;
    cfg->no_final_norm = !before || remove_final;
    cfg->word_embed_proj_dim = proj != cfg->hidden_size ? proj : 0;
    if (!bias || !affine)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: %s is not supported", what,
                         !bias ? "enable_bias false" : "layer_norm_elementwise_affine false");
    if (act && strcmp(act, "relu") != 0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: activation_function '%s' is not supported "
                         "for OPT; only relu", what, act);
    cfg->attention_bias = cfg->mlp_bias = 1;
    cfg->rms_norm_eps = 1e-5; /* nn.LayerNorm's default, which OPT keeps */
    cfg->rope_theta = 10000;  /* unused: no RoPE */
    return GPTQ_OK;
}

/* ---- BLOOM ----------------------------------------------------------------------- */

/* BloomConfig's fields: its own names or the aliases transformers maps
 * (n_embed for hidden_size, which wins where both are given as in
 * BloomConfig; n_layer / n_head for the Llama names; both spellings occur
 * in published configs). The MLP is 4 x hidden wide. */
static gptq_status parse_bloom(json_t *root, const char *what, gptq_model_config *cfg)
{
    static const char *const alias[][2] = {{"n_embed", "hidden_size"},
                                           {"num_hidden_layers", "n_layer"},
                                           {"num_attention_heads", "n_head"}};
    int *field[] = {&cfg->hidden_size, &cfg->num_hidden_layers, &cfg->num_attention_heads};
    const int hi[] = {MAX_DIM, MAX_LAYERS, 4096};
    for (int i = 0; i < 3; i++) {
        int a = get_int(root, what, alias[i][0], 1, hi[i], field[i]);
        int b = a ? 0 : get_int(root, what, alias[i][1], 1, hi[i], field[i]);
        if (a < 0 || b < 0)
            return GPTQ_ERR_FORMAT;
        if (!a && !b)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s (or %s) is missing", what, alias[i][0],
                             alias[i][1]);
    }
    if (require_int(root, what, "vocab_size", 1, MAX_VOCAB, &cfg->vocab_size) < 0)
        return GPTQ_ERR_FORMAT;
    if (cfg->hidden_size % cfg->num_attention_heads != 0 || cfg->hidden_size > MAX_DIM / 4)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: hidden_size %d is not a multiple of "
                         "num_attention_heads %d, or too large", what, cfg->hidden_size,
                         cfg->num_attention_heads);
    cfg->num_key_value_heads = cfg->num_attention_heads;
    cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
    cfg->intermediate_size = 4 * cfg->hidden_size;
    if (cfg->head_dim % 2 != 0 || cfg->head_dim > GPTQ_MAX_HEAD_DIM)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: head_dim %d must be even and at most %d", what,
                         cfg->head_dim, GPTQ_MAX_HEAD_DIM);
    int post = 0, tp = 1, exact = 0;
    cfg->tie_word_embeddings = 1;
    cfg->rms_norm_eps = 1e-5;
    if (get_bool(root, what, "apply_residual_connection_post_layernorm", &post) < 0 ||
        get_int(root, what, "pretraining_tp", 1, 1024, &tp) < 0 ||
        get_bool(root, what, "slow_but_exact", &exact) < 0 ||
        get_bool(root, what, "tie_word_embeddings", &cfg->tie_word_embeddings) < 0 ||
        get_double(root, what, "layer_norm_epsilon", &cfg->rms_norm_eps) < 0)
        return GPTQ_ERR_FORMAT;
    if (post)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: apply_residual_connection_post_layernorm "
                         "true is not supported", what);
    if (tp > 1 && exact)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: slow_but_exact with pretraining_tp %d (the "
                         "output projection summed in slices) is not supported", what, tp);
    if (!(cfg->rms_norm_eps > 0 && cfg->rms_norm_eps < 1))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: layer_norm_epsilon %g must be in (0, 1)", what,
                         cfg->rms_norm_eps);
    cfg->attention_bias = cfg->mlp_bias = 1;
    cfg->rope_theta = 10000; /* unused: ALiBi */
    return GPTQ_OK;
}

/* ---- the whole config ---------------------------------------------------------- */

static gptq_status parse_root(json_t *root, const char *what, gptq_model_config *cfg)
{
    gptq_status st;
    memset(cfg, 0, sizeof *cfg);
    if (!json_is_object(root))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: not a JSON object", what);
    if ((st = parse_arch(root, what, cfg)) != GPTQ_OK)
        return st;
    if (cfg->arch == GPTQ_ARCH_OPT || cfg->arch == GPTQ_ARCH_BLOOM)
        return (st = cfg->arch == GPTQ_ARCH_OPT ? parse_opt(root, what, cfg)
                                                : parse_bloom(root, what, cfg)) ||
                       (st = parse_token_ids(root, what, cfg)) ||
                       (st = parse_dtype(root, what, cfg)) || (st = parse_quant(root, what, cfg))
                   ? st
                   : GPTQ_OK;

    if (require_int(root, what, "hidden_size", 1, MAX_DIM, &cfg->hidden_size) < 0 ||
        require_int(root, what, "intermediate_size", 1, MAX_DIM, &cfg->intermediate_size) < 0 ||
        require_int(root, what, "num_attention_heads", 1, 4096, &cfg->num_attention_heads) < 0 ||
        require_int(root, what, "num_hidden_layers", 1, MAX_LAYERS, &cfg->num_hidden_layers) < 0 ||
        require_int(root, what, "vocab_size", 1, MAX_VOCAB, &cfg->vocab_size) < 0)
        return GPTQ_ERR_FORMAT;
    cfg->num_key_value_heads = cfg->num_attention_heads;
    if (get_int(root, what, "num_key_value_heads", 1, 4096, &cfg->num_key_value_heads) < 0)
        return GPTQ_ERR_FORMAT;
    int has_head_dim = get_int(root, what, "head_dim", 1, GPTQ_MAX_HEAD_DIM, &cfg->head_dim);
    if (has_head_dim < 0)
        return GPTQ_ERR_FORMAT;
    if (!has_head_dim) {
        if (cfg->hidden_size % cfg->num_attention_heads != 0)
            return gptq_fail(GPTQ_ERR_FORMAT,
                             "%s: hidden_size %d is not a multiple of num_attention_heads %d "
                             "(and head_dim is not given)",
                             what, cfg->hidden_size, cfg->num_attention_heads);
        cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
    }
    if (cfg->head_dim % 2 != 0 || cfg->head_dim > GPTQ_MAX_HEAD_DIM)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: head_dim %d must be even and at most %d", what,
                         cfg->head_dim, GPTQ_MAX_HEAD_DIM);
    if (cfg->num_attention_heads % cfg->num_key_value_heads != 0)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                         what, cfg->num_attention_heads, cfg->num_key_value_heads);
    if ((int64_t)cfg->num_attention_heads * cfg->head_dim > MAX_DIM)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: num_attention_heads x head_dim is too large", what);

    if (get_int(root, what, "max_position_embeddings", 1, 1 << 30, &cfg->max_position_embeddings) <
        0)
        return GPTQ_ERR_FORMAT;
    cfg->rms_norm_eps = 1e-6;
    if (get_double(root, what, "rms_norm_eps", &cfg->rms_norm_eps) < 0)
        return GPTQ_ERR_FORMAT;
    if ((st = cfg->arch == GPTQ_ARCH_GEMMA3 ? parse_gemma3_rope(root, what, cfg)
                                             : parse_rope(root, what, cfg)) != GPTQ_OK)
        return st;
    if (!(cfg->rms_norm_eps > 0 && cfg->rms_norm_eps < 1))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: rms_norm_eps %g must be in (0, 1)", what,
                         cfg->rms_norm_eps);
    if (!(cfg->rope_theta > 1))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: rope_theta %g must be > 1", what, cfg->rope_theta);

    const char *act = NULL;
    const int gemma = is_gemma(cfg);
    /* Gemma 2 reads hidden_activation (its configs also carry hidden_act) */
    if (get_string(root, what, gemma ? "hidden_activation" : "hidden_act", &act) < 0)
        return GPTQ_ERR_FORMAT;
    const char *want = gemma ? "gelu_pytorch_tanh" : "silu";
    if (act && strcmp(act, want) != 0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: %s '%s' is not supported; only %s", what,
                         gemma ? "hidden_activation" : "hidden_act", act, want);
    if (gemma) {
        cfg->tie_word_embeddings = 1; /* Gemma2Config's default */
        cfg->sliding_window = 4096;
        if (json_is_null(json_object_get(root, "sliding_window")))
            cfg->sliding_window = 0;
        cfg->query_pre_attn_scalar = 256;
        /* Gemma 2 caps by default (50, 30); Gemma 3 does not */
        cfg->attn_softcap = cfg->arch == GPTQ_ARCH_GEMMA2 ? 50 : 0;
        cfg->final_softcap = cfg->arch == GPTQ_ARCH_GEMMA2 ? 30 : 0;
        static const char *const caps[] = {"attn_logit_softcapping", "final_logit_softcapping"};
        double *capv[] = {&cfg->attn_softcap, &cfg->final_softcap};
        for (int i = 0; i < 2; i++) {
            if (json_is_null(json_object_get(root, caps[i])))
                *capv[i] = 0; /* null: no capping */
            else if (get_double(root, what, caps[i], capv[i]) < 0)
                return GPTQ_ERR_FORMAT;
            else if (!(*capv[i] >= 0))
                return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s must be >= 0", what, caps[i]);
        }
        if (get_double(root, what, "query_pre_attn_scalar", &cfg->query_pre_attn_scalar) < 0 ||
            get_int(root, what, "sliding_window", 1, 1 << 30, &cfg->sliding_window) < 0)
            return GPTQ_ERR_FORMAT;
        if (!(cfg->query_pre_attn_scalar > 0))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: query_pre_attn_scalar must be > 0", what);
        int bidirectional = 0;
        if (get_bool(root, what, "use_bidirectional_attention", &bidirectional) < 0)
            return GPTQ_ERR_FORMAT;
        if (bidirectional)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: use_bidirectional_attention true (an "
                             "encoder) is not supported", what);
    }

    if (get_bool(root, what, "tie_word_embeddings", &cfg->tie_word_embeddings) < 0 ||
        get_bool(root, what, "attention_bias", &cfg->attention_bias) < 0 ||
        get_bool(root, what, "mlp_bias", &cfg->mlp_bias) < 0)
        return GPTQ_ERR_FORMAT;
    if ((cfg->arch != GPTQ_ARCH_LLAMA && cfg->arch != GPTQ_ARCH_QWEN3 &&
         !is_gemma(cfg) && cfg->attention_bias) ||
        (cfg->arch != GPTQ_ARCH_LLAMA && cfg->mlp_bias))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: attention_bias (Llama, Qwen3) / mlp_bias (Llama): %s does not take "
                         "%s", what, cfg->architecture,
                         cfg->mlp_bias ? "mlp_bias" : "attention_bias");

    if (cfg->arch == GPTQ_ARCH_MISTRAL || cfg->arch == GPTQ_ARCH_PHI3) {
        /* MistralConfig's default window is 4096, Phi3Config's none; null is none */
        cfg->sliding_window = cfg->arch == GPTQ_ARCH_MISTRAL ? 4096 : 0;
        if (json_is_null(json_object_get(root, "sliding_window")))
            cfg->sliding_window = 0;
        if (get_int(root, what, "sliding_window", 1, 1 << 30, &cfg->sliding_window) < 0)
            return GPTQ_ERR_FORMAT;
    } else if (cfg->arch == GPTQ_ARCH_QWEN2 || cfg->arch == GPTQ_ARCH_QWEN3) {
        int use_sw = 0;
        if (get_bool(root, what, "use_sliding_window", &use_sw) < 0)
            return GPTQ_ERR_FORMAT;
        if (use_sw)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                             "%s: use_sliding_window true (per-layer windows) is not supported",
                             what);
    }

    if ((st = parse_layer_types(root, what, cfg)) != GPTQ_OK ||
        (st = parse_token_ids(root, what, cfg)) != GPTQ_OK ||
        (st = parse_dtype(root, what, cfg)) != GPTQ_OK ||
        (st = parse_quant(root, what, cfg)) != GPTQ_OK)
        return st;
    return GPTQ_OK;
}

gptq_status gptq_config_parse(const char *json, size_t len, const char *what,
                              gptq_model_config *cfg)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    char why[160];
    if (!root)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: line %d column %d: %s", what, jerr.line, jerr.column,
                         gptq_json_error_text(&jerr, why, sizeof why));
    gptq_status st = parse_root(root, what, cfg);
    json_decref(root);
    return st;
}

gptq_status gptq_config_load(const char *path, gptq_model_config *cfg)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        struct stat sb;
        if (stat(path, &sb) != 0)
            return gptq_fail(GPTQ_ERR_IO, "%s: cannot read (no such file)", path);
        char why[160];
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: line %d column %d: %s", path, jerr.line, jerr.column,
                         gptq_json_error_text(&jerr, why, sizeof why));
    }
    gptq_status st = parse_root(root, path, cfg);
    json_decref(root);
    return st;
}

/* ---- derived values -------------------------------------------------------------- */

/* longrope's table with the factors ext: 1.0 / (ext * base ** (arange(0,
 * dim, 2).float() / dim)) in float32. */
static void longrope_inv_freq(const gptq_model_config *cfg, const float *ext, float *inv_freq)
{
    const int dim = cfg->head_dim;
    for (int j = 0; j < dim / 2; j++)
        inv_freq[j] = 1.0f / (ext[j] * powf((float)cfg->rope_theta, (float)(2 * j) / (float)dim));
}

void gptq_config_rope_inv_freq_long(const gptq_model_config *cfg, float *inv_freq)
{
    if (cfg->rope_type == GPTQ_ROPE_LONGROPE)
        longrope_inv_freq(cfg, cfg->rope_long_factor, inv_freq);
    else
        gptq_config_rope_inv_freq(cfg, inv_freq);
}

void gptq_config_rope_inv_freq(const gptq_model_config *cfg, float *inv_freq)
{
    const int dim = cfg->head_dim, half = dim / 2;
    if (cfg->rope_type == GPTQ_ROPE_LONGROPE) {
        longrope_inv_freq(cfg, cfg->rope_short_factor, inv_freq);
        return;
    }
    /* _compute_default_rope_parameters, in float32 as torch evaluates it:
     * 1.0 / (base ** (arange(0, dim, 2).float() / dim)) */
    for (int j = 0; j < half; j++) {
        float exponent = (float)(2 * j) / (float)dim;
        inv_freq[j] = 1.0f / powf((float)cfg->rope_theta, exponent);
    }
    if (cfg->rope_type == GPTQ_ROPE_LINEAR) {
        for (int j = 0; j < half; j++)
            inv_freq[j] /= (float)cfg->rope_factor;
    } else if (cfg->rope_type == GPTQ_ROPE_LLAMA3) {
        /* _compute_llama3_parameters */
        const float factor = (float)cfg->rope_factor;
        const float low = (float)cfg->rope_low_freq_factor,
                    high = (float)cfg->rope_high_freq_factor;
        const double old_len = cfg->rope_original_max_position_embeddings;
        const double low_freq_wavelen = old_len / cfg->rope_low_freq_factor;
        const double high_freq_wavelen = old_len / cfg->rope_high_freq_factor;
        for (int j = 0; j < half; j++) {
            float inv = inv_freq[j];
            float wavelen = (float)(2.0 * M_PI) / inv;
            float llama = wavelen > (float)low_freq_wavelen ? inv / factor : inv;
            float smooth = ((float)old_len / wavelen - low) / (high - low);
            float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
            int medium =
                !(wavelen < (float)high_freq_wavelen) && !(wavelen > (float)low_freq_wavelen);
            inv_freq[j] = medium ? smoothed : llama;
        }
    }
}

int gptq_config_qkv_bias(const gptq_model_config *cfg)
{
    return cfg->arch == GPTQ_ARCH_QWEN2 || cfg->attention_bias;
}

int gptq_config_qk_norm(const gptq_model_config *cfg)
{
    return cfg->arch == GPTQ_ARCH_QWEN3 || cfg->arch == GPTQ_ARCH_GEMMA3;
}

int gptq_config_fused(const gptq_model_config *cfg)
{
    return gptq_config_fuses(cfg, 0) || gptq_config_fuses(cfg, 1);
}

int gptq_config_fuses(const gptq_model_config *cfg, int g)
{
    return cfg->arch == GPTQ_ARCH_PHI3 || (cfg->arch == GPTQ_ARCH_BLOOM && g == 0);
}

const gptq_fused_group gptq_fused_groups[GPTQ_FUSED_GROUPS] = {
    {"self_attn.qkv_proj", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, 3},
    {"mlp.gate_up_proj", {"mlp.gate_proj", "mlp.up_proj"}, 2},
};

void gptq_config_fused_rows(const gptq_model_config *cfg, int g, int k, int concat,
                            int64_t *start, int64_t *rows, int64_t *total, int64_t *block,
                            int64_t *period)
{
    const int64_t q = (int64_t)cfg->num_attention_heads * cfg->head_dim,
                  kv = (int64_t)cfg->num_key_value_heads * cfg->head_dim,
                  inter = cfg->intermediate_size, hd = cfg->head_dim;
    if (g == 0 && cfg->arch == GPTQ_ARCH_BLOOM && !concat) { /* per head [q k v] (no GQA) */
        *start = k * hd, *rows = q, *total = 3 * q, *block = hd, *period = 3 * hd;
        return;
    }
    if (g == 0) { /* [q; k; v] */
        *start = k == 0 ? 0 : q + (k - 1) * kv, *rows = k == 0 ? q : kv, *total = q + 2 * kv;
    } else {      /* [gate; up] */
        *start = k * inter, *rows = inter, *total = 2 * inter;
    }
    *block = *period = *rows;
}

gptq_status gptq_config_bits_check(const gptq_model_config *cfg, int bits)
{
    for (int g = 0; g < GPTQ_FUSED_GROUPS; g++)
        for (int k = 0; gptq_config_fuses(cfg, g) && k < gptq_fused_groups[g].n; k++) {
            int64_t start, rows, total, block, period;
            gptq_config_fused_rows(cfg, g, k, 0, &start, &rows, &total, &block, &period);
            if (block * bits % 32)
                return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s stores %s as one tensor in runs of "
                                 "%lld rows, whose %d-bit zero points would not fill whole "
                                 "32-bit words; its checkpoints cannot hold %d bits (2, 4 and 8 "
                                 "fit)", cfg->architecture, gptq_fused_groups[g].fused,
                                 (long long)block, bits, bits);
        }
    return GPTQ_OK;
}

int64_t gptq_config_fused_row(const gptq_model_config *cfg, int g, int k, int concat, int64_t j)
{
    int64_t start, rows, total, block, period;
    gptq_config_fused_rows(cfg, g, k, concat, &start, &rows, &total, &block, &period);
    return start + j / block * period + j % block;
}

int gptq_config_layernorm(const gptq_model_config *cfg)
{
    return cfg->arch == GPTQ_ARCH_OPT || cfg->arch == GPTQ_ARCH_BLOOM;
}

int gptq_config_gated_mlp(const gptq_model_config *cfg)
{
    return cfg->arch != GPTQ_ARCH_OPT && cfg->arch != GPTQ_ARCH_BLOOM;
}

int gptq_config_embed_norm(const gptq_model_config *cfg)
{
    return cfg->arch == GPTQ_ARCH_BLOOM;
}

int gptq_config_alibi(const gptq_model_config *cfg)
{
    return cfg->arch == GPTQ_ARCH_BLOOM;
}

float gptq_config_norm_offset(const gptq_model_config *cfg)
{
    return is_gemma(cfg) ? 1.0f : 0.0f;
}

int gptq_config_sandwich_norms(const gptq_model_config *cfg)
{
    return is_gemma(cfg);
}

float gptq_config_embed_scale(const gptq_model_config *cfg)
{
    if (!is_gemma(cfg))
        return 0;
    /* sqrt(hidden) in float32, as transformers computes it running the
     * model in float32 and llama.cpp always does (transformers in bfloat16
     * casts it first: 55.4256 becomes 55.5 for hidden 3072); independent of
     * the dtype a checkpoint is saved in, so saving never changes it */
    return (float)sqrt((double)cfg->hidden_size);
}

/* Layer l is of the sliding kind (Gemma's layer_types; every layer of a
 * family with a window). */
static int layer_sliding(const gptq_model_config *cfg, int l)
{
    return l >= 0 && l < cfg->num_hidden_layers && (cfg->sliding_layers[l / 8] & (1u << (l % 8)));
}

int gptq_config_layer_local_rope(const gptq_model_config *cfg, int l)
{
    return cfg->rope_local_theta > 0 && layer_sliding(cfg, l);
}

void gptq_config_rope_inv_freq_local(const gptq_model_config *cfg, float *inv_freq)
{
    if (!(cfg->rope_local_theta > 0)) {
        gptq_config_rope_inv_freq(cfg, inv_freq);
        return;
    }
    gptq_model_config local = *cfg;
    local.rope_type = GPTQ_ROPE_DEFAULT;
    local.rope_theta = cfg->rope_local_theta;
    gptq_config_rope_inv_freq(&local, inv_freq);
}

int gptq_config_layer_window(const gptq_model_config *cfg, int l)
{
    return layer_sliding(cfg, l) ? cfg->sliding_window : 0;
}

int gptq_config_rope(const gptq_model_config *cfg)
{
    return !gptq_config_pos_rows(cfg) && !gptq_config_alibi(cfg);
}

void gptq_config_alibi_slopes(const gptq_model_config *cfg, float *slopes)
{
    /* transformers: base = 2^(-(2^-(log2(p) - 3))) for p the largest power
     * of 2 <= heads, slopes base^1..base^p, then the odd powers of the base
     * for 2p for the heads left; float32 base, torch.pow per element */
    const int n = cfg->num_attention_heads;
    int p = 1;
    while (2 * p <= n)
        p *= 2;
    const float base = (float)pow(2.0, -pow(2.0, -(log2((double)p) - 3)));
    const float extra = (float)pow(2.0, -pow(2.0, -(log2(2.0 * p) - 3)));
    for (int i = 0; i < p; i++)
        slopes[i] = (float)pow((double)base, i + 1);
    for (int i = p; i < n; i++)
        slopes[i] = (float)pow((double)extra, 2 * (i - p) + 1);
}

int gptq_config_pos_offset(const gptq_model_config *cfg)
{
    return cfg->arch == GPTQ_ARCH_OPT ? 2 : 0; /* OPTLearnedPositionalEmbedding's offset */
}

int gptq_config_embed_dim(const gptq_model_config *cfg)
{
    return cfg->word_embed_proj_dim > 0 ? cfg->word_embed_proj_dim : cfg->hidden_size;
}

int gptq_config_pos_rows(const gptq_model_config *cfg)
{
    return cfg->arch == GPTQ_ARCH_OPT ? cfg->max_position_embeddings + gptq_config_pos_offset(cfg)
                                      : 0;
}

/* A family's names for gptqd's: prefixes of the whole name, then of the
 * module path inside a layer (matched up to a '.' or the end). */
typedef struct name_pair {
    const char *ours, *theirs;
} name_pair;

/* The first pair of `top` is the layers' prefix; `layer` maps module
 * paths inside a layer. */
typedef struct family_names {
    gptq_arch arch, also; /* the families it names (also == arch for one) */
    const char *base; /* gptq_config_base_prefix */
    name_pair top[5], layer[6];
} family_names;

static const family_names families[] = {
    {GPTQ_ARCH_OPT, GPTQ_ARCH_OPT, "model.",
     {{"model.layers.", "model.decoder.layers."},
      {"model.embed_tokens.", "model.decoder.embed_tokens."},
      {"model.embed_positions.", "model.decoder.embed_positions."},
      {"model.norm.", "model.decoder.final_layer_norm."},
      {"model.project_", "model.decoder.project_"}},
     {{"input_layernorm", "self_attn_layer_norm"},
      {"post_attention_layernorm", "final_layer_norm"},
      {"self_attn.o_proj", "self_attn.out_proj"},
      {"mlp.up_proj", "fc1"},
      {"mlp.down_proj", "fc2"}}},
    {GPTQ_ARCH_BLOOM, GPTQ_ARCH_BLOOM, "transformer.",
     {{"model.layers.", "transformer.h."},
      {"model.embed_tokens.", "transformer.word_embeddings."},
      {"model.embed_norm.", "transformer.word_embeddings_layernorm."},
      {"model.norm.", "transformer.ln_f."}},
     {{"self_attn.qkv_proj", "self_attention.query_key_value"},
      {"self_attn.o_proj", "self_attention.dense"},
      {"mlp.up_proj", "mlp.dense_h_to_4h"},
      {"mlp.down_proj", "mlp.dense_4h_to_h"}}},
    /* Gemma's norms around the MLP: its pre_feedforward_layernorm is the
     * norm Llama calls post_attention_layernorm */
    {GPTQ_ARCH_GEMMA2, GPTQ_ARCH_GEMMA3, NULL,
     {{"model.layers.", "model.layers."}},
     {{"post_attention_layernorm", "pre_feedforward_layernorm"},
      {"attn_out_norm", "post_attention_layernorm"},
      {"mlp_out_norm", "post_feedforward_layernorm"}}},
};

static const family_names *family_of(const gptq_model_config *cfg)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (families[i].arch == cfg->arch || families[i].also == cfg->arch)
            return &families[i];
    return NULL;
}

const char *gptq_config_layer_path(const gptq_model_config *cfg, const char *path, char *out,
                                   size_t n)
{
    const family_names *f = family_of(cfg);
    for (size_t j = 0; f && j < sizeof f->layer / sizeof f->layer[0] && f->layer[j].ours; j++) {
        size_t m = strlen(f->layer[j].ours);
        if (!strncmp(path, f->layer[j].ours, m) && (path[m] == '.' || !path[m])) {
            snprintf(out, n, "%s%s", f->layer[j].theirs, path + m);
            return out;
        }
    }
    snprintf(out, n, "%s", path);
    return out;
}

const char *gptq_config_base_prefix(const gptq_model_config *cfg)
{
    const family_names *f = family_of(cfg);
    return f ? f->base : NULL;
}

const char *gptq_config_file_name(const gptq_model_config *cfg, const char *name, char *out,
                                  size_t n)
{
    const family_names *f = family_of(cfg);
    for (size_t i = 0; f && i < sizeof f->top / sizeof f->top[0] && f->top[i].ours; i++) {
        size_t k = strlen(f->top[i].ours);
        if (strncmp(name, f->top[i].ours, k))
            continue;
        const char *rest = name + k, *mod = "", *tail = rest;
        int layer, at = 0;
        char head[32] = "";
        char mapped[192] = "";
        if (i == 0 && sscanf(rest, "%d.%n", &layer, &at) == 1 && at) {
            snprintf(head, sizeof head, "%d.", layer);
            mod = gptq_config_layer_path(cfg, rest + at, mapped, sizeof mapped), tail = "";
        }
        snprintf(out, n, "%s%s%s%s", f->top[i].theirs, head, mod, tail);
        return out;
    }
    return name;
}

int gptq_config_o_bias(const gptq_model_config *cfg)
{
    return cfg->attention_bias;
}

int gptq_config_mlp_bias(const gptq_model_config *cfg)
{
    return cfg->mlp_bias;
}

/* ---- generation_config.json ------------------------------------------------------- */

gptq_status gptq_config_merge_generation(gptq_model_config *cfg, const char *json, size_t len,
                                         const char *what)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: not a JSON object", what);
    }
    gptq_model_config gen = *cfg;
    gptq_status st = parse_token_ids(root, what, &gen);
    json_decref(root);
    if (st)
        return st;
    for (int i = 0; i < gen.n_eos; i++) {
        int seen = 0;
        for (int k = 0; k < cfg->n_eos; k++)
            seen |= cfg->eos_token_ids[k] == gen.eos_token_ids[i];
        if (seen)
            continue;
        if (cfg->n_eos == GPTQ_MAX_EOS)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: more than %d end-of-generation ids with "
                             "config.json's", what, GPTQ_MAX_EOS);
        cfg->eos_token_ids[cfg->n_eos++] = gen.eos_token_ids[i];
    }
    if (cfg->bos_token_id < 0)
        cfg->bos_token_id = gen.bos_token_id;
    return GPTQ_OK;
}
