/* model/gguf_hf.c: GGUF metadata and tensors as an HF folder (gguf_hf.h).
 *
 * The key names, tensor names and tokenizer conventions are llama.cpp's
 * (gguf-py's constants and convert_hf_to_gguf.py); each mapping below is
 * the inverse of what that converter writes. */
#include "model/gguf_hf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_FMT "%.96s"

/* ---- architectures ------------------------------------------------------------ */

typedef struct arch_info {
    const char *gguf;       /* general.architecture */
    const char *hf;         /* config.json architectures[0] */
    const char *model_type; /* config.json model_type */
    int permuted_qk;        /* the converter permuted q/k rows for interleaved RoPE */
    int norm_shift;         /* norm weights stored as 1 + w (Gemma's converter; llama.cpp
                               multiplies by them as they are) */
} arch_info;

static const arch_info archs[] = {
    {"llama", "LlamaForCausalLM", "llama", 1, 0},
    {"mistral", "MistralForCausalLM", "mistral", 1, 0},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", 0, 0},
    {"qwen3", "Qwen3ForCausalLM", "qwen3", 0, 0},
    {"phi3", "Phi3ForCausalLM", "phi3", 0, 0},
    {"gemma2", "Gemma2ForCausalLM", "gemma2", 0, 1},
    {"gemma3", "Gemma3ForCausalLM", "gemma3_text", 0, 1},
    {"bloom", "BloomForCausalLM", "bloom", 0, 0},
};

static gptq_status find_arch(const gptq_gguf *g, const arch_info **out)
{
    const char *s;
    size_t n;
    if (!gptq_gguf_get_string(g, "general.architecture", &s, &n))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: general.architecture is missing",
                         gptq_gguf_name(g));
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strlen(archs[i].gguf) == n && memcmp(archs[i].gguf, s, n) == 0) {
            *out = &archs[i];
            return GPTQ_OK;
        }
    return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                     "%s: GGUF architecture '%.*s' is not supported (llama, mistral, qwen2, "
                     "qwen3, phi3, gemma2, gemma3 and bloom are)",
                     gptq_gguf_name(g), (int)(n > 64 ? 64 : n), s);
}

/* "<arch>.<suffix>" */
static const char *akey(const arch_info *a, const char *suffix, char *buf, size_t n)
{
    snprintf(buf, n, "%s.%s", a->gguf, suffix);
    return buf;
}

/* ---- numbers ------------------------------------------------------------------- */

/* A float32 metadata value as the decimal it was written from: the shortest
 * that rounds to the same float32 (9.99999975e-06 -> 1e-05), so config.json
 * says what the HF config said. FLOAT64 values are kept as they are. */
static double meta_number(const gptq_gguf_value *v)
{
    if (v->type != GPTQ_GGUF_FLOAT32)
        return v->type == GPTQ_GGUF_FLOAT64 ? v->v.f
               : v->type == GPTQ_GGUF_INT8 || v->type == GPTQ_GGUF_INT16 ||
                       v->type == GPTQ_GGUF_INT32 || v->type == GPTQ_GGUF_INT64
                   ? (double)v->v.i
                   : (double)v->v.u;
    float f = (float)v->v.f;
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f)
            return strtod(buf, NULL);
    }
    return (double)f;
}

static int get_number(const gptq_gguf *g, const char *key, double *out)
{
    const gptq_gguf_kv *kv = gptq_gguf_find_kv(g, key);
    if (!kv || kv->value.type == GPTQ_GGUF_STRING || kv->value.type == GPTQ_GGUF_ARRAY ||
        kv->value.type == GPTQ_GGUF_BOOL)
        return 0;
    *out = meta_number(&kv->value);
    return 1;
}

static gptq_status need_int(const gptq_gguf *g, const char *key, int64_t lo, int64_t hi,
                            int64_t *out)
{
    if (!gptq_gguf_get_int(g, key, out))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s is missing or not an integer", gptq_gguf_name(g),
                         key);
    if (*out < lo || *out > hi)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s = %lld is out of range [%lld, %lld]",
                         gptq_gguf_name(g), key, (long long)*out, (long long)lo, (long long)hi);
    return GPTQ_OK;
}

/* ---- tensors -------------------------------------------------------------------- */

/* HF module path -> GGUF block tensor base name. */
static const struct {
    const char *hf, *gguf;
} layer_names[] = {
    {"input_layernorm", "attn_norm"},     {"post_attention_layernorm", "ffn_norm"},
    {"self_attn.q_proj", "attn_q"},       {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},       {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},        {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},        {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
    /* Gemma's norms of the attention's and the MLP's outputs */
    {"attn_out_norm", "post_attention_norm"}, {"mlp_out_norm", "post_ffw_norm"},
    /* gptq_config_fused families (phi3): ffn_up holds [gate; up] */
    {"self_attn.qkv_proj", "attn_qkv"},   {"mlp.gate_up_proj", "ffn_up"},
};
enum { NAME_GATE = 6, NAME_UP = 7 }; /* layer_names[] indices */

int gptq_gguf_name_of(const char *hf, char *buf, size_t n, int *layer, int *which)
{
    *layer = -1;
    *which = -1;
    if (!strcmp(hf, "model.embed_tokens.weight"))
        return snprintf(buf, n, "token_embd.weight"), 1;
    if (!strcmp(hf, "model.norm.weight"))
        return snprintf(buf, n, "output_norm.weight"), 1;
    if (!strcmp(hf, "model.norm.bias")) /* LayerNorm families (bloom) */
        return snprintf(buf, n, "output_norm.bias"), 1;
    if (!strcmp(hf, "model.embed_norm.weight") || !strcmp(hf, "model.embed_norm.bias"))
        return snprintf(buf, n, "token_embd_norm.%s", hf + strlen("model.embed_norm.")), 1;
    if (!strcmp(hf, "lm_head.weight"))
        return snprintf(buf, n, "output.weight"), 1;
    int l, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &l, &used) != 1 || used == 0 || l < 0)
        return 0;
    const char *rest = hf + used;
    for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++) {
        size_t k = strlen(layer_names[i].hf);
        if (strncmp(rest, layer_names[i].hf, k) != 0 || rest[k] != '.')
            continue;
        const char *suffix = rest + k + 1;
        if (strcmp(suffix, "weight") != 0 && strcmp(suffix, "bias") != 0)
            return 0;
        *layer = l;
        *which = (int)i;
        snprintf(buf, n, "blk.%d.%s.%s", l, layer_names[i].gguf, suffix);
        return 1;
    }
    return 0;
}

const gptq_gguf_tensor *gptq_gguf_hf_tensor(const gptq_gguf *g, const gptq_model_config *cfg,
                                            const char *hf_name, int *permute_heads)
{
    char name[256];
    int layer, which;
    *permute_heads = 0;
    if (!gptq_gguf_name_of(hf_name, name, sizeof name, &layer, &which))
        return NULL;
    /* a fused family's gate and up are rows of its ffn_up (model/source.c) */
    if (gptq_config_fuses(cfg, 1) && (which == NAME_GATE || which == NAME_UP))
        return NULL;
    const gptq_gguf_tensor *t = gptq_gguf_find_tensor(g, name);
    if (!t)
        return NULL;
    const arch_info *a;
    if (find_arch(g, &a) != GPTQ_OK) {
        gptq_clear_error();
        return t;
    }
    if (a->permuted_qk && which == 2)
        *permute_heads = cfg->num_attention_heads;
    else if (a->permuted_qk && which == 3)
        *permute_heads = cfg->num_key_value_heads;
    return t;
}

/* Read t (float32 when f32, else its stored bytes) into out with the
 * converter's head permutation undone. */
static gptq_status hf_read(const gptq_gguf *g, const gptq_gguf_tensor *t, int permute_heads,
                           int f32, void *out)
{
    const int64_t cols = t->ne[0], rows = t->numel / (t->ne[0] ? t->ne[0] : 1);
    if (permute_heads <= 0)
        return f32 ? gptq_gguf_read_f32(g, t, out) : gptq_gguf_read(g, t, out);
    if (rows % (2 * (int64_t)permute_heads) != 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "' has %lld rows, not a "
                         "multiple of 2 x %d heads", gptq_gguf_name(g), t->name, (long long)rows,
                         permute_heads);
    const size_t row_bytes = f32 ? (size_t)cols * sizeof(float) : (size_t)(t->bytes / rows);
    char *tmp = malloc((size_t)rows * row_bytes);
    if (!tmp)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for '" NAME_FMT "'",
                         gptq_gguf_name(g), t->name);
    gptq_status st = f32 ? gptq_gguf_read_f32(g, t, (float *)tmp) : gptq_gguf_read(g, t, tmp);
    if (!st) {
        /* The converter's permute: rows (h, j, i) of HF's rotate_half layout
         * (j: which half of the head, i < half) were stored as (h, i, j). */
        const int64_t head = rows / permute_heads, half = head / 2;
        for (int64_t h = 0; h < permute_heads; h++)
            for (int64_t j = 0; j < 2; j++)
                for (int64_t i = 0; i < half; i++)
                    memcpy((char *)out + (size_t)(h * head + j * half + i) * row_bytes,
                           tmp + (size_t)(h * head + 2 * i + j) * row_bytes, row_bytes);
    }
    free(tmp);
    return st;
}

/* A norm weight of a family whose converter stores it as 1 + w. */
static int shifted_norm(const gptq_gguf *g, const gptq_gguf_tensor *t)
{
    const arch_info *a;
    size_t n = strlen(t->name);
    if (n < 11 || strcmp(t->name + n - 11, "norm.weight") != 0)
        return 0;
    if (find_arch(g, &a) != GPTQ_OK) {
        gptq_clear_error();
        return 0;
    }
    return a->norm_shift;
}

gptq_status gptq_gguf_hf_read(const gptq_gguf *g, const gptq_gguf_tensor *t, int permute_heads,
                              float *out)
{
    gptq_status st = hf_read(g, t, permute_heads, 1, out);
    if (st == GPTQ_OK && shifted_norm(g, t)) /* (1 + w) - 1: exact for the stored float32 */
        for (int64_t i = 0; i < t->numel; i++)
            out[i] -= 1.0f;
    return st;
}

gptq_status gptq_gguf_hf_read_raw(const gptq_gguf *g, const gptq_gguf_tensor *t,
                                  int permute_heads, void *out)
{
    return hf_read(g, t, permute_heads, 0, out);
}

/* Every tensor of the file is one we map (a tensor we would ignore could
 * change the model: refuse it instead). */
static gptq_status check_tensors(const gptq_gguf *g, int n_layers)
{
    for (size_t i = 0; i < gptq_gguf_tensor_count(g); i++) {
        const char *name = gptq_gguf_tensor_at(g, i)->name;
        int known = !strcmp(name, "token_embd.weight") || !strcmp(name, "output_norm.weight") ||
                    !strcmp(name, "output.weight") || !strcmp(name, "rope_freqs.weight") ||
                    !strcmp(name, "rope_factors_long.weight") ||
                    !strcmp(name, "rope_factors_short.weight") ||
                    !strcmp(name, "output_norm.bias") || !strcmp(name, "token_embd_norm.weight") ||
                    !strcmp(name, "token_embd_norm.bias");
        int l, used = 0;
        if (!known && sscanf(name, "blk.%d.%n", &l, &used) == 1 && used && l >= 0 && l < n_layers)
            for (size_t k = 0; k < sizeof layer_names / sizeof layer_names[0] && !known; k++) {
                size_t len = strlen(layer_names[k].gguf);
                const char *rest = name + used;
                known = strncmp(rest, layer_names[k].gguf, len) == 0 &&
                        (!strcmp(rest + len, ".weight") || !strcmp(rest + len, ".bias"));
            }
        if (!known)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: tensor '" NAME_FMT "' is not part of a "
                             "model we run", gptq_gguf_name(g), name);
    }
    return GPTQ_OK;
}

/* ---- config.json ------------------------------------------------------------------ */

/* Llama 3's rope_freqs tensor (the converter's per-frequency divisors) as
 * HF rope_scaling: the llama3 parameters Llama 3.x ship with, checked to
 * reproduce every factor. */
static gptq_status llama3_rope(const gptq_gguf *g, const gptq_gguf_tensor *t, int head_dim,
                               double theta, json_t *config)
{
    const int half = head_dim / 2;
    if (t->numel != half || t->type != 0 /* F32 */)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: rope_freqs.weight must be F32 [%d]",
                         gptq_gguf_name(g), half);
    float factors[GPTQ_MAX_HEAD_DIM / 2];
    gptq_status st = gptq_gguf_read_f32(g, t, factors);
    if (st)
        return st;
    double factor = factors[half - 1], low = 1.0, high = 4.0, old = 8192.0;
    for (int i = 0; i < half; i++) {
        double freq = 1.0 / pow(theta, (double)(2 * i) / head_dim);
        double wavelen = 2 * M_PI / freq, want;
        if (wavelen < old / high)
            want = 1.0;
        else if (wavelen > old / low)
            want = factor;
        else {
            double smooth = (old / wavelen - low) / (high - low);
            want = 1.0 / ((1 - smooth) / factor + smooth);
        }
        if (fabs(want - factors[i]) > 1e-4 * want)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                             "%s: rope_freqs.weight[%d] = %g is not Llama 3's scaling (factor %g, "
                             "low 1, high 4, original context 8192 give %g)",
                             gptq_gguf_name(g), i, (double)factors[i], factor, want);
    }
    json_object_set_new(config, "rope_scaling",
                        json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor",
                                  factor, "low_freq_factor", low, "high_freq_factor", high,
                                  "original_max_position_embeddings", (int)old));
    return GPTQ_OK;
}

/* Phi-3's longrope (rope_factors_long/short, F32 [head_dim / 2] each, the
 * original context and attn_factor as llama.cpp's converter writes them) as
 * HF rope_scaling. */
static gptq_status phi3_longrope(const gptq_gguf *g, const arch_info *a, int head_dim,
                                 json_t *config)
{
    const int half = head_dim / 2;
    const char *names[2] = {"rope_factors_long.weight", "rope_factors_short.weight"};
    const char *keys[2] = {"long_factor", "short_factor"};
    json_t *scaling = json_pack("{s:s}", "rope_type", "longrope");
    gptq_status st = GPTQ_OK;
    for (int i = 0; i < 2 && !st; i++) {
        const gptq_gguf_tensor *t = gptq_gguf_find_tensor(g, names[i]);
        float f[GPTQ_MAX_HEAD_DIM / 2];
        if (!t || t->numel != half || t->type != 0 /* F32 */)
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: %s must be F32 [%d] beside the other factors",
                           gptq_gguf_name(g), names[i], half);
        else if (!(st = gptq_gguf_read_f32(g, t, f))) {
            json_t *list = json_array();
            for (int j = 0; j < half; j++)
                json_array_append_new(list, json_real(f[j]));
            json_object_set_new(scaling, keys[i], list);
        }
    }
    char k[160];
    int64_t orig = 0;
    double af = 0;
    if (!st && !gptq_gguf_get_int(g, akey(a, "rope.scaling.original_context_length", k, sizeof k),
                                  &orig))
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: longrope factors without %s", gptq_gguf_name(g), k);
    if (!st) {
        json_object_set_new(scaling, "original_max_position_embeddings", json_integer(orig));
        json_object_set_new(config, "original_max_position_embeddings", json_integer(orig));
        if (get_number(g, akey(a, "rope.scaling.attn_factor", k, sizeof k), &af))
            json_object_set_new(scaling, "attention_factor", json_real(af));
        json_object_set_new(config, "rope_scaling", json_incref(scaling));
    }
    json_decref(scaling);
    return st;
}

static json_t *token_id_json(const gptq_gguf *g, const char *key, int64_t vocab)
{
    int64_t id;
    if (gptq_gguf_get_int(g, key, &id) && id >= 0 && id < vocab)
        return json_integer(id);
    return NULL;
}

/* Control tokens llama.cpp ends generation on when the model names them
 * (llama-vocab.cpp's end-of-generation list, the common ones). */
static const char *const end_of_turn_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "<|end_of_text|>",
};

static const gptq_gguf_value *tokens_of(const gptq_gguf *g)
{
    return gptq_gguf_get_array(g, "tokenizer.ggml.tokens", GPTQ_GGUF_STRING);
}

static int token_is(const gptq_gguf_value *tok, const char *text)
{
    size_t n = strlen(text);
    return tok->v.str.len == n && memcmp(tok->v.str.ptr, text, n) == 0;
}

/* generation_config.json: bos and every end-of-generation id. */
static json_t *generation_config(const gptq_gguf *g, int64_t vocab)
{
    json_t *gen = json_object(), *eos = json_array();
    json_t *bos = token_id_json(g, "tokenizer.ggml.bos_token_id", vocab);
    if (bos)
        json_object_set_new(gen, "bos_token_id", bos);
    const char *keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"};
    int64_t ids[32];
    size_t n = 0;
    for (size_t k = 0; k < 3; k++)
        if (gptq_gguf_get_int(g, keys[k], &ids[n]) && ids[n] >= 0 && ids[n] < vocab)
            n++;
    const gptq_gguf_value *toks = tokens_of(g);
    const gptq_gguf_value *types =
        gptq_gguf_get_array(g, "tokenizer.ggml.token_type", GPTQ_GGUF_INT32);
    for (uint64_t i = 0; toks && i < toks->v.arr.n && (int64_t)i < vocab && n < 8; i++) {
        if (types && (i >= types->v.arr.n || types->v.arr.items[i].v.i != 3 /* CONTROL */))
            continue;
        for (size_t k = 0; k < sizeof end_of_turn_texts / sizeof *end_of_turn_texts; k++)
            if (token_is(&toks->v.arr.items[i], end_of_turn_texts[k]))
                ids[n++] = (int64_t)i;
    }
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            seen |= ids[j] == ids[i];
        if (!seen)
            json_array_append_new(eos, json_integer(ids[i]));
    }
    json_object_set_new(gen, "eos_token_id", eos);
    return gen;
}

/* Gemma's keys, with llama.cpp's defaults where the converter leaves them
 * out: the GELU gate, the attention scale llama.cpp uses (1/sqrt(head_dim),
 * or 1/sqrt(hidden/heads) for the 27B shapes) as query_pre_attn_scalar,
 * soft-capping (Gemma 2: 50 and 30 unless given; Gemma 3: none unless
 * given), the window and which layers slide (attention.sliding_window_pattern:
 * layer l slides unless l % n == n - 1; default 2 and 6), and Gemma 3's RoPE
 * base of the sliding layers (rope.freq_base_swa, default 10000). */
static gptq_status gemma_config(const gptq_gguf *g, const arch_info *a, int64_t layers,
                                int64_t hidden, int64_t heads, int64_t head_dim, json_t *c)
{
    char k[160];
    const int g3 = !strcmp(a->gguf, "gemma3");
    const int big = layers == (g3 ? 62 : 46); /* llama.cpp's LLM_TYPE_27B */
    json_object_set_new(c, "hidden_activation", json_string("gelu_pytorch_tanh"));
    json_object_del(c, "hidden_act");
    json_object_set_new(c, "query_pre_attn_scalar",
                        json_integer(big ? hidden / heads : head_dim));
    double attn_cap = g3 ? 0 : 50, final_cap = g3 ? 0 : 30;
    if (!g3)
        get_number(g, akey(a, "attn_logit_softcapping", k, sizeof k), &attn_cap);
    get_number(g, akey(a, "final_logit_softcapping", k, sizeof k), &final_cap);
    json_object_set_new(c, "attn_logit_softcapping", attn_cap > 0 ? json_real(attn_cap)
                                                                  : json_null());
    json_object_set_new(c, "final_logit_softcapping", final_cap > 0 ? json_real(final_cap)
                                                                    : json_null());
    int64_t window = g3 ? 0 : 4096, pattern = g3 ? 6 : 2;
    gptq_gguf_get_int(g, akey(a, "attention.sliding_window", k, sizeof k), &window);
    if (gptq_gguf_find_kv(g, akey(a, "attention.sliding_window_pattern", k, sizeof k)) &&
        !gptq_gguf_get_int(g, k, &pattern))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: %s is not one number (a per-layer list is "
                         "not read)", gptq_gguf_name(g), k);
    if (pattern < 1)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s = %lld", gptq_gguf_name(g), k,
                         (long long)pattern);
    json_object_set_new(c, "sliding_window", window > 0 ? json_integer(window) : json_null());
    json_t *types = json_array();
    for (int64_t l = 0; l < layers; l++)
        json_array_append_new(types, json_string(window > 0 && l % pattern < pattern - 1
                                                     ? "sliding_attention"
                                                     : "full_attention"));
    json_object_set_new(c, "layer_types", types);
    if (g3) {
        double local = 10000;
        get_number(g, akey(a, "rope.freq_base_swa", k, sizeof k), &local);
        json_object_set_new(c, "rope_local_base_freq", json_real(local));
    }
    return GPTQ_OK;
}

static gptq_status build_config(const gptq_gguf *g, const arch_info *a, json_t **out)
{
    char k[160];
    int64_t layers, hidden, inter, heads, kv_heads, ctx = 0, head_dim, vocab;
    gptq_status st;
    const char *name = gptq_gguf_name(g);
    if ((st = need_int(g, akey(a, "block_count", k, sizeof k), 1, 4096, &layers)) ||
        (st = need_int(g, akey(a, "embedding_length", k, sizeof k), 1, 1 << 20, &hidden)) ||
        (st = need_int(g, akey(a, "feed_forward_length", k, sizeof k), 1, 1 << 20, &inter)) ||
        (st = need_int(g, akey(a, "attention.head_count", k, sizeof k), 1, 4096, &heads)))
        return st;
    kv_heads = heads;
    if (gptq_gguf_find_kv(g, akey(a, "attention.head_count_kv", k, sizeof k)) &&
        (st = need_int(g, k, 1, heads, &kv_heads)))
        return st;
    if (gptq_gguf_find_kv(g, akey(a, "context_length", k, sizeof k)) &&
        (st = need_int(g, k, 1, 1 << 30, &ctx)))
        return st;
    head_dim = hidden / heads;
    if (gptq_gguf_find_kv(g, akey(a, "attention.key_length", k, sizeof k))) {
        int64_t vlen = 0;
        if ((st = need_int(g, k, 2, GPTQ_MAX_HEAD_DIM, &head_dim)))
            return st;
        if (gptq_gguf_get_int(g, akey(a, "attention.value_length", k, sizeof k), &vlen) &&
            vlen != head_dim)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: attention.value_length %lld differs from "
                             "key_length %lld", name, (long long)vlen, (long long)head_dim);
    }
    int64_t rope_dim = head_dim;
    if (gptq_gguf_get_int(g, akey(a, "rope.dimension_count", k, sizeof k), &rope_dim) &&
        rope_dim != head_dim)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: rope.dimension_count %lld is not head_dim "
                         "%lld (partial rotary embeddings are not supported)", name,
                         (long long)rope_dim, (long long)head_dim);
    const gptq_gguf_value *toks = tokens_of(g);
    vocab = toks ? (int64_t)toks->v.arr.n : 0;
    int64_t v2;
    if (gptq_gguf_get_int(g, akey(a, "vocab_size", k, sizeof k), &v2))
        vocab = v2;
    const gptq_gguf_tensor *emb = gptq_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || emb->ne[0] != hidden)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: token_embd.weight is missing or not [vocab, %lld]",
                         name, (long long)hidden);
    if (vocab <= 0)
        vocab = emb->ne[1];
    if (emb->ne[1] != vocab)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: token_embd.weight has %lld rows, the vocabulary "
                         "%lld", name, (long long)emb->ne[1], (long long)vocab);
    if ((st = check_tensors(g, (int)layers)))
        return st;

    double theta = 10000.0, eps = 1e-5;
    const int bloom = !strcmp(a->gguf, "bloom"); /* LayerNorm, ALiBi: no RMS eps, no RoPE */
    get_number(g, akey(a, "rope.freq_base", k, sizeof k), &theta);
    if (!get_number(g, akey(a, bloom ? "attention.layer_norm_epsilon"
                                     : "attention.layer_norm_rms_epsilon", k, sizeof k),
                    &eps))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s is missing", name, k);
    json_t *c = json_object();
    json_object_set_new(c, "architectures", json_pack("[s]", a->hf));
    json_object_set_new(c, "model_type", json_string(a->model_type));
    json_object_set_new(c, "hidden_size", json_integer(hidden));
    json_object_set_new(c, "intermediate_size", json_integer(inter));
    json_object_set_new(c, "num_attention_heads", json_integer(heads));
    json_object_set_new(c, "num_key_value_heads", json_integer(kv_heads));
    json_object_set_new(c, "head_dim", json_integer(head_dim));
    json_object_set_new(c, "num_hidden_layers", json_integer(layers));
    json_object_set_new(c, "vocab_size", json_integer(vocab));
    if (ctx)
        json_object_set_new(c, "max_position_embeddings", json_integer(ctx));
    json_object_set_new(c, bloom ? "layer_norm_epsilon" : "rms_norm_eps", json_real(eps));
    json_object_set_new(c, "rope_theta", json_real(theta));
    json_object_set_new(c, "hidden_act", json_string("silu"));
    json_object_set_new(c, "tie_word_embeddings",
                        json_boolean(gptq_gguf_find_tensor(g, "output.weight") == NULL));
    if (strcmp(a->gguf, "qwen2") != 0) {
        json_object_set_new(c, "attention_bias",
                            json_boolean(gptq_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL));
        json_object_set_new(c, "mlp_bias",
                            json_boolean(gptq_gguf_find_tensor(g, "blk.0.ffn_up.bias") != NULL));
    }
    const int gemma = a->norm_shift;
    if (gemma && (st = gemma_config(g, a, layers, hidden, heads, head_dim, c))) {
        json_decref(c);
        return st;
    }
    int64_t window;
    if (!gemma &&
        gptq_gguf_get_int(g, akey(a, "attention.sliding_window", k, sizeof k), &window) &&
        window > 0) {
        if (strcmp(a->gguf, "mistral") != 0 && strcmp(a->gguf, "phi3") != 0) {
            json_decref(c);
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: attention.sliding_window on a %s model "
                             "is not supported", name, a->gguf);
        }
        json_object_set_new(c, "sliding_window", json_integer(window));
    } else if (!strcmp(a->gguf, "mistral") || !strcmp(a->gguf, "phi3")) {
        json_object_set_new(c, "sliding_window", json_null());
    }
    /* RoPE scaling: linear, or Llama 3's factors tensor; others refused */
    const char *type = NULL;
    size_t type_len = 0;
    if (gptq_gguf_get_string(g, akey(a, "rope.scaling.type", k, sizeof k), &type, &type_len) &&
        !(type_len == 4 && !memcmp(type, "none", 4))) {
        double factor = 0;
        if (type_len == 6 && !memcmp(type, "linear", 6) &&
            get_number(g, akey(a, "rope.scaling.factor", k, sizeof k), &factor) && factor >= 1) {
            json_object_set_new(c, "rope_scaling", json_pack("{s:s, s:f}", "rope_type", "linear",
                                                             "factor", factor));
        } else {
            json_decref(c);
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: rope scaling '%.*s' is not supported "
                             "(linear is)", name, (int)(type_len > 32 ? 32 : type_len), type);
        }
    }
    const gptq_gguf_tensor *freqs = gptq_gguf_find_tensor(g, "rope_freqs.weight");
    if (freqs && (st = llama3_rope(g, freqs, (int)head_dim, theta, c))) {
        json_decref(c);
        return st;
    }
    if (!strcmp(a->gguf, "phi3") && gptq_gguf_find_tensor(g, "rope_factors_long.weight") &&
        (st = phi3_longrope(g, a, (int)head_dim, c))) {
        json_decref(c);
        return st;
    }
    json_t *bos = token_id_json(g, "tokenizer.ggml.bos_token_id", vocab);
    json_t *eos = token_id_json(g, "tokenizer.ggml.eos_token_id", vocab);
    if (bos)
        json_object_set_new(c, "bos_token_id", bos);
    if (eos)
        json_object_set_new(c, "eos_token_id", eos);
    int64_t file_type = -1;
    gptq_gguf_get_int(g, "general.file_type", &file_type);
    /* float files keep their precision; a quantized file's float form is
     * written in float16 (each 4-8 bit weight dequantized is close to
     * exact there) */
    json_object_set_new(c, "torch_dtype", json_string(file_type == 0    ? "float32"
                                                      : file_type == 32 ? "bfloat16"
                                                                        : "float16"));
    *out = c;
    return GPTQ_OK;
}

/* ---- tokenizer.json --------------------------------------------------------------- */

/* tokenizer.ggml.pre -> the regexes llama.cpp splits with for that name
 * (llama-vocab.cpp), each applied as an isolating Split before the
 * byte-level mapping. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3 RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BLOOM " ?[^(\\s|.,!?…。，、।۔،)]+"

static const struct pre_type {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    const char *re[4];
    int ignore_merges;
} pre_types[] = {
    {"default|", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, 0},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|", {RE_LLAMA3}, 1},
    {"dbrx|smaug-bpe|", {RE_LLAMA3}, 0},
    {"qwen2|deepseek-r1-qwen|stablelm2|hunyuan|", {RE_QWEN2}, 0},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|", {"\\p{N}", RE_GPT2}, 0},
    {"gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|mpt|olmo|jais|", {RE_GPT2}, 0},
    {"falcon|", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, 0},
    {"chatglm-bpe|", {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, 0},
    {"poro-chat|bloom|gpt3-finnish|", {RE_BLOOM}, 0},
    {"viking|", {RE_BLOOM, "\\p{N}"}, 0},
    {"deepseek-coder|", {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+"}, 0},
};

static const struct pre_type *find_pre(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof pre_types / sizeof pre_types[0]; i++) {
        const char *p = pre_types[i].names;
        while (*p) {
            const char *bar = strchr(p, '|');
            if ((size_t)(bar - p) == n && memcmp(p, s, n) == 0)
                return &pre_types[i];
            p = bar + 1;
        }
    }
    return NULL;
}

/* The split regexes of an HF pre_tokenizer, in order, into re[0..*n). */
static int pre_regexes(json_t *pre, const char **re, int *n, int cap)
{
    const char *type = json_string_value(json_object_get(pre, "type"));
    if (!type)
        return 0;
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(pre, "pretokenizers");
        size_t i;
        json_t *item;
        if (!json_is_array(list))
            return 0;
        json_array_foreach(list, i, item)
            if (!pre_regexes(item, re, n, cap))
                return 0;
        return 1;
    }
    if (*n >= cap)
        return 0;
    if (!strcmp(type, "ByteLevel")) {
        if (json_is_true(json_object_get(pre, "add_prefix_space")))
            return 0;
        if (json_is_true(json_object_get(pre, "use_regex")))
            re[(*n)++] = RE_GPT2;
        return 1;
    }
    if (!strcmp(type, "Digits")) {
        if (!json_is_true(json_object_get(pre, "individual_digits")))
            return 0;
        re[(*n)++] = "\\p{N}";
        return 1;
    }
    if (!strcmp(type, "Split")) {
        const char *r = json_string_value(json_object_get(json_object_get(pre, "pattern"), "Regex"));
        const char *behavior = json_string_value(json_object_get(pre, "behavior"));
        if (!r || !behavior || strcmp(behavior, "Isolated") != 0 ||
            json_is_true(json_object_get(pre, "invert")))
            return 0;
        re[(*n)++] = r;
        return 1;
    }
    return 0;
}

const char *gptq_gguf_pre_name(const void *pre, int ignore_merges)
{
    const char *re[8];
    int n = 0;
    if (!pre_regexes((json_t *)pre, re, &n, 8))
        return NULL;
    static _Thread_local char name[64];
    for (size_t i = 0; i < sizeof pre_types / sizeof pre_types[0]; i++) {
        const struct pre_type *p = &pre_types[i];
        int k = 0;
        while (k < 4 && p->re[k])
            k++;
        if (k != n || p->ignore_merges != ignore_merges || !strncmp(p->names, "default|", 8))
            continue;
        int same = 1;
        for (int j = 0; j < n && same; j++)
            same = !strcmp(p->re[j], re[j]);
        if (same) {
            size_t len = (size_t)(strchr(p->names, '|') - p->names);
            snprintf(name, sizeof name, "%.*s", (int)len, p->names);
            return name;
        }
    }
    return NULL;
}

enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER = 4, TOKEN_UNUSED = 5,
       TOKEN_BYTE = 6 };

/* One added_tokens entry. */
static json_t *added_token(int64_t id, const char *text, size_t len, int special)
{
    return json_pack("{s:I, s:s%, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id, "content", text,
                     len, "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special",
                     special);
}

static json_t *sequence_item(const char *id, int type_id)
{
    return json_pack("{s:{s:s, s:i}}", "Sequence", "id", id, "type_id", type_id);
}

static json_t *special_item(json_t *content, int type_id)
{
    return json_pack("{s:{s:O, s:i}}", "SpecialToken", "id", content, "type_id", type_id);
}

/* TemplateProcessing with the BOS and/or EOS (added-token entries, or NULL)
 * the model's metadata asks for: single "[BOS] $A [EOS]", pair the same
 * twice. */
static json_t *template_post(json_t *bos, json_t *eos)
{
    json_t *single = json_array(), *pair = json_array(), *specials = json_object();
    for (int type_id = 0; type_id < 2; type_id++) {
        if (bos) {
            json_array_append_new(pair, special_item(json_object_get(bos, "content"), type_id));
            if (!type_id)
                json_array_append_new(single, special_item(json_object_get(bos, "content"), 0));
        }
        json_array_append_new(pair, sequence_item(type_id ? "B" : "A", type_id));
        if (!type_id)
            json_array_append_new(single, sequence_item("A", 0));
        if (eos) {
            json_array_append_new(pair, special_item(json_object_get(eos, "content"), type_id));
            if (!type_id)
                json_array_append_new(single, special_item(json_object_get(eos, "content"), 0));
        }
    }
    json_t *items[2] = {bos, eos};
    for (int k = 0; k < 2; k++) {
        if (!items[k])
            continue;
        json_t *content = json_object_get(items[k], "content");
        json_object_set_new(specials, json_string_value(content),
                            json_pack("{s:O, s:[O], s:[O]}", "id", content, "ids",
                                      json_object_get(items[k], "id"), "tokens", content));
    }
    return json_pack("{s:s, s:o, s:o, s:o}", "type", "TemplateProcessing", "single", single,
                     "pair", pair, "special_tokens", specials);
}

typedef struct vocab_ctx {
    const gptq_gguf *g;
    const gptq_gguf_value *toks, *types, *scores;
    uint64_t n;
    json_t *vocab, *added;
    json_t *bos, *eos, *unk; /* added-token entries of the special ids (borrowed), or NULL */
} vocab_ctx;

static int token_type(const vocab_ctx *v, uint64_t i)
{
    return v->types && i < v->types->v.arr.n ? (int)v->types->v.arr.items[i].v.i : TOKEN_NORMAL;
}

/* vocab and added_tokens; each control / user-defined token is also an
 * added token, as HF's converters make them. A string repeated in the list
 * keeps its first id in the vocabulary. */
static gptq_status build_vocab(vocab_ctx *v)
{
    const char *name = gptq_gguf_name(v->g);
    int64_t bos_id = -1, eos_id = -1, unk_id = -1;
    gptq_gguf_get_int(v->g, "tokenizer.ggml.bos_token_id", &bos_id);
    gptq_gguf_get_int(v->g, "tokenizer.ggml.eos_token_id", &eos_id);
    gptq_gguf_get_int(v->g, "tokenizer.ggml.unknown_token_id", &unk_id);
    v->vocab = json_object();
    v->added = json_array();
    for (uint64_t i = 0; i < v->n; i++) {
        const gptq_gguf_value *t = &v->toks->v.arr.items[i];
        if (memchr(t->v.str.ptr, '\0', t->v.str.len) || t->v.str.len == 0)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: token %llu is empty or holds a NUL byte",
                             name, (unsigned long long)i);
        json_t *key = json_stringn(t->v.str.ptr, t->v.str.len);
        if (!key)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: token %llu is not valid UTF-8", name,
                             (unsigned long long)i);
        const char *s = json_string_value(key);
        if (!json_object_get(v->vocab, s))
            json_object_set_new(v->vocab, s, json_integer((json_int_t)i));
        int type = token_type(v, i);
        int is_special = (int64_t)i == bos_id || (int64_t)i == eos_id || (int64_t)i == unk_id;
        if (type == TOKEN_CONTROL || type == TOKEN_USER || is_special) {
            json_t *a = added_token((int64_t)i, t->v.str.ptr, t->v.str.len, type != TOKEN_USER);
            json_array_append_new(v->added, a);
            if ((int64_t)i == bos_id) v->bos = a;
            if ((int64_t)i == eos_id) v->eos = a;
            if ((int64_t)i == unk_id) v->unk = a;
        }
        json_decref(key);
    }
    return GPTQ_OK;
}

/* SentencePiece vocabularies carry scores, not merges: rebuild the merges
 * as tokenizers' SentencePieceExtractor does (every split of a token into
 * two vocabulary pieces, ranked by the token's score, best first). */
typedef struct merge_cand {
    double score;
    uint64_t token, order;
    int64_t left, right;
} merge_cand;

static int cand_cmp(const void *pa, const void *pb)
{
    const merge_cand *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static gptq_status spm_merges(vocab_ctx *v, json_t *merges)
{
    size_t cap = 1024, n = 0;
    merge_cand *c = malloc(cap * sizeof *c);
    if (!c)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", gptq_gguf_name(v->g));
    for (uint64_t i = 0; i < v->n; i++) {
        const char *s = v->toks->v.arr.items[i].v.str.ptr;
        size_t len = (size_t)v->toks->v.arr.items[i].v.str.len;
        size_t first = n;
        for (size_t cut = 1; cut < len; cut++) {
            if (((unsigned char)s[cut] & 0xC0) == 0x80)
                continue; /* split at characters, not bytes */
            char *l = strndup(s, cut), *r = strndup(s + cut, len - cut);
            json_t *li = l ? json_object_get(v->vocab, l) : NULL;
            json_t *ri = r ? json_object_get(v->vocab, r) : NULL;
            free(l);
            free(r);
            if (!li || !ri)
                continue;
            if (n == cap) {
                merge_cand *grown = realloc(c, (cap *= 2) * sizeof *c);
                if (!grown) {
                    free(c);
                    return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", gptq_gguf_name(v->g));
                }
                c = grown;
            }
            double score = v->scores && i < v->scores->v.arr.n ? v->scores->v.arr.items[i].v.f
                                                               : -(double)i;
            c[n++] = (merge_cand){score, i, 0, json_integer_value(li), json_integer_value(ri)};
        }
        /* within one token: by (left id, right id), as the extractor sorts */
        for (size_t a = first + 1; a < n; a++)
            for (size_t b = a; b > first && (c[b - 1].left > c[b].left ||
                                             (c[b - 1].left == c[b].left && c[b - 1].right > c[b].right));
                 b--) {
                merge_cand t = c[b];
                c[b] = c[b - 1];
                c[b - 1] = t;
            }
    }
    for (size_t i = 0; i < n; i++)
        c[i].order = i;
    qsort(c, n, sizeof *c, cand_cmp);
    for (size_t i = 0; i < n; i++) {
        const gptq_gguf_value *l = &v->toks->v.arr.items[c[i].left];
        const gptq_gguf_value *r = &v->toks->v.arr.items[c[i].right];
        json_array_append_new(merges, json_pack("[s%, s%]", l->v.str.ptr, (size_t)l->v.str.len,
                                                r->v.str.ptr, (size_t)r->v.str.len));
    }
    free(c);
    return GPTQ_OK;
}

static gptq_status build_tokenizer(const gptq_gguf *g, json_t **out, json_t **config_out)
{
    const char *name = gptq_gguf_name(g), *model = NULL, *pre = NULL;
    size_t model_len = 0, pre_len = 0;
    gptq_status st;
    vocab_ctx v = {.g = g};
    if (!gptq_gguf_get_string(g, "tokenizer.ggml.model", &model, &model_len))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tokenizer.ggml.model is missing: the file carries "
                         "no tokenizer", name);
    int spm = model_len == 5 && !memcmp(model, "llama", 5);
    int bpe = model_len == 4 && !memcmp(model, "gpt2", 4);
    if (!spm && !bpe)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: tokenizer model '%.*s' is not supported "
                         "(gpt2 and llama are)", name, (int)(model_len > 32 ? 32 : model_len),
                         model);
    if (!(v.toks = tokens_of(g)) || v.toks->v.arr.n == 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing or empty", name);
    v.n = v.toks->v.arr.n;
    v.types = gptq_gguf_get_array(g, "tokenizer.ggml.token_type", GPTQ_GGUF_INT32);
    v.scores = gptq_gguf_get_array(g, "tokenizer.ggml.scores", GPTQ_GGUF_FLOAT32);
    if ((v.types && v.types->v.arr.n != v.n) || (v.scores && v.scores->v.arr.n != v.n))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tokenizer.ggml.token_type / scores do not have one "
                         "entry per token (%llu)", name, (unsigned long long)v.n);
    json_t *tok = NULL, *merges = json_array(), *model_json = NULL;
    if ((st = build_vocab(&v)))
        goto fail;
    int add_bos = spm, add_eos = 0, add_space = 1;
    gptq_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    gptq_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos);
    gptq_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &add_space);
    tok = json_pack("{s:s, s:n, s:n, s:O}", "version", "1.0", "truncation", "padding",
                    "added_tokens", v.added);
    if (bpe) {
        const gptq_gguf_value *m = gptq_gguf_get_array(g, "tokenizer.ggml.merges", GPTQ_GGUF_STRING);
        if (!m) {
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: a gpt2 tokenizer needs tokenizer.ggml.merges", name);
            goto fail;
        }
        for (uint64_t i = 0; i < m->v.arr.n; i++) {
            json_t *s = json_stringn(m->v.arr.items[i].v.str.ptr, m->v.arr.items[i].v.str.len);
            if (!s) {
                st = gptq_fail(GPTQ_ERR_FORMAT, "%s: merge %llu is not valid UTF-8", name,
                               (unsigned long long)i);
                goto fail;
            }
            json_array_append_new(merges, s);
        }
        const struct pre_type *p = NULL;
        if (!gptq_gguf_get_string(g, "tokenizer.ggml.pre", &pre, &pre_len))
            pre = "default", pre_len = 7; /* llama.cpp's choice too, with a warning */
        if (!(p = find_pre(pre, pre_len))) {
            st = gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre '%.*s' is not a "
                           "pre-tokenizer we know; its split rules are unknown", name,
                           (int)(pre_len > 48 ? 48 : pre_len), pre);
            goto fail;
        }
        json_t *seq = json_array();
        for (int i = 0; i < 4 && p->re[i]; i++)
            json_array_append_new(seq, json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split",
                                                 "pattern", "Regex", p->re[i], "behavior",
                                                 "Isolated", "invert", 0));
        json_array_append_new(seq, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                             "add_prefix_space", 0, "trim_offsets", 1,
                                             "use_regex", 0));
        json_object_set_new(tok, "normalizer", json_null());
        json_object_set_new(tok, "pre_tokenizer", json_pack("{s:s, s:o}", "type", "Sequence",
                                                            "pretokenizers", seq));
        json_object_set_new(tok, "decoder", json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                                      "add_prefix_space", 1, "trim_offsets", 1,
                                                      "use_regex", 1));
        model_json = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b}", "type", "BPE",
                               "dropout", "unk_token", "continuing_subword_prefix",
                               "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                               "ignore_merges", p->ignore_merges);
    } else {
        if ((st = spm_merges(&v, merges)))
            goto fail;
        json_t *norm = json_array();
        if (add_space)
            json_array_append_new(norm, json_pack("{s:s, s:s}", "type", "Prepend", "prepend",
                                                  "\xE2\x96\x81"));
        json_array_append_new(norm, json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern",
                                              "String", " ", "content", "\xE2\x96\x81"));
        json_object_set_new(tok, "normalizer", json_pack("{s:s, s:o}", "type", "Sequence",
                                                         "normalizers", norm));
        json_object_set_new(tok, "pre_tokenizer", json_null());
        json_t *dec = json_pack("[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}]", "type", "Replace",
                                "pattern", "String", "\xE2\x96\x81", "content", " ", "type",
                                "ByteFallback", "type", "Fuse");
        if (add_space)
            json_array_append_new(dec, json_pack("{s:s, s:s, s:i, s:i}", "type", "Strip",
                                                 "content", " ", "start", 1, "stop", 0));
        json_object_set_new(tok, "decoder", json_pack("{s:s, s:o}", "type", "Sequence",
                                                      "decoders", dec));
        model_json = json_pack("{s:s, s:n, s:n, s:n, s:b, s:b, s:b}", "type", "BPE", "dropout",
                               "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 1,
                               "byte_fallback", 1, "ignore_merges", 0);
        json_object_set(model_json, "unk_token",
                        v.unk ? json_object_get(v.unk, "content") : json_null());
    }
    json_object_set_new(tok, "post_processor",
                        (add_bos && v.bos) || (add_eos && v.eos)
                            ? template_post(add_bos ? v.bos : NULL, add_eos ? v.eos : NULL)
                            : json_null());
    json_object_set(model_json, "vocab", v.vocab);
    json_object_set(model_json, "merges", merges);
    json_object_set_new(tok, "model", model_json);
    if (config_out) { /* tokenizer_config.json */
        json_t *tc = json_pack("{s:b, s:b, s:b, s:s}", "add_bos_token", add_bos, "add_eos_token",
                               add_eos, "clean_up_tokenization_spaces", 0, "tokenizer_class",
                               "PreTrainedTokenizerFast");
        json_t *pairs[3][2] = {{json_string("bos_token"), v.bos},
                               {json_string("eos_token"), v.eos},
                               {json_string("unk_token"), v.unk}};
        for (int i = 0; i < 3; i++) {
            if (pairs[i][1])
                json_object_set(tc, json_string_value(pairs[i][0]),
                                json_object_get(pairs[i][1], "content"));
            json_decref(pairs[i][0]);
        }
        int64_t pad;
        if (gptq_gguf_get_int(g, "tokenizer.ggml.padding_token_id", &pad) && pad >= 0 &&
            (uint64_t)pad < v.n)
            json_object_set_new(tc, "pad_token",
                                json_stringn(v.toks->v.arr.items[pad].v.str.ptr,
                                             v.toks->v.arr.items[pad].v.str.len));
        const char *tmpl;
        size_t tmpl_len;
        if (gptq_gguf_get_string(g, "tokenizer.chat_template", &tmpl, &tmpl_len)) {
            json_t *t = json_stringn(tmpl, tmpl_len);
            if (t)
                json_object_set_new(tc, "chat_template", t);
        }
        *config_out = tc;
    }
    *out = tok;
    tok = NULL;
fail:
    json_decref(tok);
    json_decref(merges);
    json_decref(v.vocab);
    json_decref(v.added);
    return st;
}

/* ---- the files -------------------------------------------------------------------- */

static gptq_status put_json(gptq_hf_files *files, const char *file, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (!text)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot write", file);
    gptq_status st = gptq_hf_files_set(files, file, text, strlen(text));
    free(text);
    return st;
}

gptq_status gptq_gguf_hf_config(const gptq_gguf *g, char **json, size_t *len)
{
    const arch_info *a;
    json_t *config = NULL;
    gptq_status st = find_arch(g, &a);
    if (!st)
        st = build_config(g, a, &config);
    if (st)
        return st;
    *json = json_dumps(config, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(config);
    if (!*json)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for config.json", gptq_gguf_name(g));
    *len = strlen(*json);
    return GPTQ_OK;
}

gptq_status gptq_gguf_tokenizer_json(const gptq_gguf *g, char **json, size_t *len)
{
    json_t *tok = NULL;
    gptq_status st = build_tokenizer(g, &tok, NULL);
    if (st)
        return st;
    *json = json_dumps(tok, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(tok);
    if (!*json)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for tokenizer.json",
                         gptq_gguf_name(g));
    *len = strlen(*json);
    return GPTQ_OK;
}

gptq_status gptq_gguf_hf_files(const gptq_gguf *g, gptq_hf_files *files)
{
    const arch_info *a;
    json_t *config = NULL, *tok = NULL, *tok_config = NULL, *gen = NULL;
    memset(files, 0, sizeof *files);
    gptq_status st = find_arch(g, &a);
    if (!st)
        st = build_config(g, a, &config);
    if (!st)
        st = build_tokenizer(g, &tok, &tok_config);
    if (!st) {
        gen = generation_config(g, json_integer_value(json_object_get(config, "vocab_size")));
        if ((st = put_json(files, "config.json", config)) ||
            (st = put_json(files, "generation_config.json", gen)) ||
            (st = put_json(files, "tokenizer.json", tok)) ||
            (st = put_json(files, "tokenizer_config.json", tok_config)))
            gptq_hf_files_free(files);
    }
    json_decref(config);
    json_decref(tok);
    json_decref(tok_config);
    json_decref(gen);
    return st;
}
