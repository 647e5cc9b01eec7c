/* model/gguf_write.c: a model as one GGUF file (gguf_write.h).
 *
 * Key names, tensor names, token types and the Q/K permutation are
 * llama.cpp's (gguf-py's constants, convert_hf_to_gguf.py); each is the
 * inverse of what model/gguf_hf.c reads, so a file written here reads back
 * into the same model. Two passes over the model's tensors: the first
 * decides each tensor's GGUF type and size (the header is written from
 * it), the second converts and writes one tensor at a time, so at most one
 * tensor's converted bytes are held. */
#include "model/gguf_write.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gptq/quant.h"
#include "kernels/linear.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/gguf_hf.h"

#define ALIGN 32

/* llama_ftype values for general.file_type */
enum { FTYPE_F32 = 0, FTYPE_F16 = 1, FTYPE_Q4_0 = 2, FTYPE_Q8_0 = 7, FTYPE_BF16 = 32 };
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER = 4, TOKEN_UNUSED = 5, TOKEN_BYTE = 6 };

/* ---- output -------------------------------------------------------------------- */

typedef struct out {
    FILE *f;
    const char *path;
    uint64_t pos;
    int failed;
} out;

static void put(out *o, const void *p, size_t n)
{
    if (!o->failed && n && fwrite(p, 1, n, o->f) != n)
        o->failed = errno ? errno : EIO;
    o->pos += n;
}
static void put_u32(out *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(out *o, uint64_t v) { put(o, &v, 8); }
static void put_str(out *o, const char *s, size_t n)
{
    put_u64(o, n);
    put(o, s, n);
}
static void pad(out *o)
{
    static const char zeros[ALIGN];
    put(o, zeros, (size_t)((ALIGN - o->pos % ALIGN) % ALIGN));
}

/* ---- metadata ------------------------------------------------------------------ */

/* Metadata is gathered as a list of (key, writer) first: its count leads
 * the file. Values are kept as jansson values with an explicit GGUF type. */
typedef struct kv {
    char key[96];
    int type;       /* gptq_gguf_type; ARRAY: elem below */
    int elem;
    json_t *value;  /* integer, real, string, boolean, or an array of them */
} kv;

typedef struct meta {
    kv *items;
    size_t n, cap;
    int failed;
} meta;

static void add(meta *m, const char *key, int type, int elem, json_t *value)
{
    if (!value || m->failed) {
        json_decref(value);
        m->failed = 1;
        return;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        kv *grown = realloc(m->items, cap * sizeof *grown);
        if (!grown) {
            json_decref(value);
            m->failed = 1;
            return;
        }
        m->items = grown;
        m->cap = cap;
    }
    kv *k = &m->items[m->n++];
    snprintf(k->key, sizeof k->key, "%s", key);
    k->type = type;
    k->elem = elem;
    k->value = value;
}

static void add_u32(meta *m, const char *key, int64_t v)
{
    add(m, key, GPTQ_GGUF_UINT32, 0, json_integer(v));
}
static void add_f32(meta *m, const char *key, double v)
{
    add(m, key, GPTQ_GGUF_FLOAT32, 0, json_real(v));
}
static void add_str(meta *m, const char *key, const char *v)
{
    add(m, key, GPTQ_GGUF_STRING, 0, json_string(v));
}
static void add_bool(meta *m, const char *key, int v)
{
    add(m, key, GPTQ_GGUF_BOOL, 0, json_boolean(v));
}

static void put_scalar(out *o, int type, json_t *v)
{
    switch (type) {
    case GPTQ_GGUF_UINT32:
    case GPTQ_GGUF_INT32: {
        int32_t x = (int32_t)json_integer_value(v);
        put(o, &x, 4);
        break;
    }
    case GPTQ_GGUF_FLOAT32: {
        float x = (float)json_number_value(v);
        put(o, &x, 4);
        break;
    }
    case GPTQ_GGUF_BOOL: {
        uint8_t x = json_is_true(v);
        put(o, &x, 1);
        break;
    }
    case GPTQ_GGUF_STRING: {
        put_str(o, json_string_value(v), json_string_length(v));
        break;
    }
    }
}

static void put_meta(out *o, const meta *m)
{
    for (size_t i = 0; i < m->n; i++) {
        const kv *k = &m->items[i];
        put_str(o, k->key, strlen(k->key));
        put_u32(o, (uint32_t)k->type);
        if (k->type != GPTQ_GGUF_ARRAY) {
            put_scalar(o, k->type, k->value);
            continue;
        }
        put_u32(o, (uint32_t)k->elem);
        put_u64(o, json_array_size(k->value));
        size_t j;
        json_t *v;
        json_array_foreach(k->value, j, v)
            put_scalar(o, k->elem, v);
    }
}

static void meta_free(meta *m)
{
    for (size_t i = 0; i < m->n; i++)
        json_decref(m->items[i].value);
    free(m->items);
}

/* ---- the small files ------------------------------------------------------------ */

static json_t *load_json(const gptq_hf_files *files, const char *file, int required,
                         gptq_status *st)
{
    size_t len;
    const char *text = gptq_hf_files_get(files, file, &len);
    json_error_t err;
    json_t *j = text ? json_loadb(text, len, 0, &err) : NULL;
    if ((!j && (text || required)) || (j && !json_is_object(j))) {
        json_decref(j);
        *st = gptq_fail(GPTQ_ERR_FORMAT, "gguf: the model's %s is %s", file,
                        text ? "not a JSON object" : "missing (llama.cpp needs the tokenizer)");
        return NULL;
    }
    return j;
}

/* The content of a special-token entry of tokenizer_config.json (a string
 * or an AddedToken object), or NULL. */
static const char *token_content(json_t *tc, const char *key)
{
    json_t *v = json_object_get(tc, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_string_value(v);
}

/* The tokenizer metadata: byte-level BPE ("gpt2") or SentencePiece-style
 * BPE with byte fallback ("llama"). */
static gptq_status tokenizer_meta(meta *m, json_t *tok, json_t *tc, const gptq_model_config *cfg)
{
    json_t *model = json_object_get(tok, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type || strcmp(type, "BPE") != 0 || !json_is_object(vocab) || !json_is_array(merges))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: tokenizer.json's model is %s; GGUF export "
                         "handles BPE tokenizers (byte-level or SentencePiece-style)",
                         type ? type : "missing");
    const int spm = json_is_true(json_object_get(model, "byte_fallback"));
    const char *pre = NULL;
    if (!spm) {
        pre = gptq_gguf_pre_name(json_object_get(tok, "pre_tokenizer"),
                                 json_is_true(json_object_get(model, "ignore_merges")));
        if (!pre)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: tokenizer.json's pre_tokenizer has "
                             "no tokenizer.ggml.pre name llama.cpp knows (its split rules would "
                             "be guessed): not exported");
    }
    /* id -> text and type; gaps filled as llama.cpp's converter does */
    const int64_t n = cfg->vocab_size;
    json_t *texts = json_array(), *types = json_array(), *scores = spm ? json_array() : NULL;
    char **by_id = calloc((size_t)n, sizeof *by_id);
    int *type_of = calloc((size_t)n, sizeof *type_of);
    gptq_status st = GPTQ_OK;
    if (!texts || !types || !by_id || !type_of || (spm && !scores)) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "gguf: out of memory");
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= n) {
            st = gptq_fail(GPTQ_ERR_FORMAT, "gguf: tokenizer.json's token id %lld is outside "
                           "the vocabulary of %lld", (long long)id, (long long)n);
            goto done;
        }
        by_id[id] = (char *)key;
        type_of[id] = spm && strlen(key) == 6 && !strncmp(key, "<0x", 3) && key[5] == '>'
                          ? TOKEN_BYTE
                          : TOKEN_NORMAL;
    }
    size_t i;
    json_array_foreach(json_object_get(tok, "added_tokens"), i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        const char *content = json_string_value(json_object_get(v, "content"));
        if (!content || id < 0 || id >= n) {
            st = gptq_fail(GPTQ_ERR_FORMAT, "gguf: tokenizer.json's added token %zu has no "
                           "content or an id outside the vocabulary", i);
            goto done;
        }
        by_id[id] = (char *)content;
        type_of[id] = json_is_true(json_object_get(v, "special")) ? TOKEN_CONTROL : TOKEN_USER;
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    for (int64_t id = 0; unk && id < n; id++)
        if (by_id[id] && !strcmp(by_id[id], unk))
            type_of[id] = TOKEN_UNKNOWN;
    for (int64_t id = 0; id < n; id++) {
        char pad_name[32];
        snprintf(pad_name, sizeof pad_name, "[PAD%lld]", (long long)id);
        json_array_append_new(texts, json_string(by_id[id] ? by_id[id] : pad_name));
        json_array_append_new(types, json_integer(by_id[id] ? type_of[id] : TOKEN_UNUSED));
        if (spm) /* SentencePiece BPE ranks pieces by score; its vocabularies are
                    ordered by it, which is what tokenizer.json keeps */
            json_array_append_new(scores, json_real(type_of[id] == TOKEN_NORMAL ? -(double)id
                                                                                : 0.0));
    }
    add_str(m, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (pre)
        add_str(m, "tokenizer.ggml.pre", pre);
    add(m, "tokenizer.ggml.tokens", GPTQ_GGUF_ARRAY, GPTQ_GGUF_STRING, texts);
    texts = NULL;
    if (spm) {
        add(m, "tokenizer.ggml.scores", GPTQ_GGUF_ARRAY, GPTQ_GGUF_FLOAT32, scores);
        scores = NULL;
    }
    add(m, "tokenizer.ggml.token_type", GPTQ_GGUF_ARRAY, GPTQ_GGUF_INT32, types);
    types = NULL;
    if (!spm) {
        json_t *list = json_array();
        json_array_foreach(merges, i, v) {
            if (json_is_string(v)) {
                json_array_append(list, v);
            } else if (json_is_array(v) && json_array_size(v) == 2 &&
                       json_is_string(json_array_get(v, 0)) &&
                       json_is_string(json_array_get(v, 1))) {
                json_array_append_new(list, json_sprintf("%s %s",
                                                         json_string_value(json_array_get(v, 0)),
                                                         json_string_value(json_array_get(v, 1))));
            } else {
                json_decref(list);
                st = gptq_fail(GPTQ_ERR_FORMAT, "gguf: tokenizer.json's merge %zu is not a pair",
                               i);
                goto done;
            }
        }
        add(m, "tokenizer.ggml.merges", GPTQ_GGUF_ARRAY, GPTQ_GGUF_STRING, list);
    }
    /* special ids: tokenizer_config's tokens, else config.json's ids */
    struct {
        const char *hf, *gguf;
        int fallback;
    } specials[] = {{"bos_token", "tokenizer.ggml.bos_token_id", cfg->bos_token_id},
                    {"eos_token", "tokenizer.ggml.eos_token_id",
                     cfg->n_eos ? cfg->eos_token_ids[0] : -1},
                    {"unk_token", "tokenizer.ggml.unknown_token_id", -1},
                    {"pad_token", "tokenizer.ggml.padding_token_id", -1}};
    int bos = -1, eos = -1;
    for (size_t s = 0; s < sizeof specials / sizeof *specials; s++) {
        const char *content = token_content(tc, specials[s].hf);
        int id = specials[s].fallback;
        if (content) {
            json_t *found = json_object_get(vocab, content);
            for (size_t k = 0; !found && k < json_array_size(json_object_get(tok, "added_tokens"));
                 k++) {
                json_t *a = json_array_get(json_object_get(tok, "added_tokens"), k);
                if (!strcmp(json_string_value(json_object_get(a, "content")) ?: "", content))
                    found = json_object_get(a, "id");
            }
            if (found)
                id = (int)json_integer_value(found);
        }
        if (id >= 0 && id < n)
            add_u32(m, specials[s].gguf, id);
        if (s == 0)
            bos = id;
        if (s == 1)
            eos = id;
    }
    /* add_bos / add_eos: what the post-processor does (HF's behaviour) */
    int add_bos = 0, add_eos = 0;
    json_t *post = json_object_get(tok, "post_processor");
    json_t *single = json_object_get(post, "single");
    if (json_is_array(single)) {
        json_t *first = json_object_get(json_array_get(single, 0), "SpecialToken");
        json_t *last = json_object_get(json_array_get(single, json_array_size(single) - 1),
                                       "SpecialToken");
        const char *fid = json_string_value(json_object_get(first, "id"));
        const char *lid = json_string_value(json_object_get(last, "id"));
        add_bos = fid && bos >= 0 && by_id[bos] && !strcmp(fid, by_id[bos]);
        add_eos = lid && eos >= 0 && by_id[eos] && !strcmp(lid, by_id[eos]);
    }
    add_bool(m, "tokenizer.ggml.add_bos_token", add_bos);
    add_bool(m, "tokenizer.ggml.add_eos_token", add_eos);
    if (spm) {
        int prepend = 0;
        json_t *norm = json_object_get(tok, "normalizer");
        json_t *list = json_object_get(norm, "normalizers");
        json_array_foreach(list, i, v) prepend |=
            !strcmp(json_string_value(json_object_get(v, "type")) ?: "", "Prepend");
        add_bool(m, "tokenizer.ggml.add_space_prefix", prepend);
    }
    json_t *tmpl = json_object_get(tc, "chat_template");
    if (json_is_array(tmpl)) { /* [{name, template}]: the default one */
        json_t *chosen = NULL;
        json_array_foreach(tmpl, i, v) if (!strcmp(
            json_string_value(json_object_get(v, "name")) ?: "", "default")) chosen =
            json_object_get(v, "template");
        tmpl = chosen;
    }
    if (json_is_string(tmpl))
        add_str(m, "tokenizer.chat_template", json_string_value(tmpl));
done:
    json_decref(texts);
    json_decref(types);
    json_decref(scores);
    free(by_id);
    free(type_of);
    return st;
}

/* ---- tensors ------------------------------------------------------------------- */

typedef struct tensor {
    char name[96];
    int type;         /* gptq_ggml_type */
    int64_t rows, cols;
    int n_dims;
    int permute;      /* heads whose rows llama.cpp interleaves (0: none) */
    int embedding;    /* token_embd / output in the embedding type */
    int n_parts;      /* linears kept in GGUF blocks (gptq_model_linear_blocks): their
                         blocks, rows concatenated (a fused attn_qkv: q, k, v); else 0 */
    const uint8_t *part[3];
    int64_t part_rows[3];
    uint64_t bytes, offset;
} tensor;

typedef struct plan {
    const gptq_model *m;
    const gptq_model_config *cfg;
    const char *arch;
    int permuted_qk;
    gptq_dtype float_dtype;
    int embedding_type; /* -1: as the float matrices */
    tensor *t;
    size_t n, cap, at; /* at: the tensor the second pass is on */
    int q_types;       /* bit set of the block types of quantized linears */
    int block_linears; /* linears written from their GGUF blocks */
    int norm_shift;    /* norm weights written as 1 + w (Gemma, as its converter does) */
    out *o;
} plan;

/* llama.cpp's name of HF tensor (or packed module) `hf`; *which: 2 for q,
 * 3 for k (gptq_gguf_name_of). */
static gptq_status gguf_name(const char *hf, int packed, char *buf, size_t n, int *which)
{
    char full[200];
    int layer;
    snprintf(full, sizeof full, "%.180s%s", hf, packed ? ".weight" : "");
    if (!gptq_gguf_name_of(full, buf, n, &layer, which))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: tensor '%.96s' has no llama.cpp name", hf);
    return GPTQ_OK;
}

/* The block type a packed linear's grid is, or -1 (with the reason). */
static int packed_type(const gptq_packed *P, const int32_t *zeros, char *why, size_t n)
{
    int type = P->bits == 4 ? GPTQ_GGML_Q4_0 : P->bits == 8 ? GPTQ_GGML_Q8_0 : -1;
    int zero = P->bits == 4 ? 8 : 128;
    if (type < 0 || P->cols % 32 != 0) {
        snprintf(why, n, "%d-bit codes over %d inputs", P->bits, P->cols);
        return -1;
    }
    for (int c = 0; c < P->cols; c++)
        if (P->g_idx[c] != c / 32) {
            snprintf(why, n, "groups that are not 32 consecutive inputs (input %d is in group %d)",
                     c, P->g_idx[c]);
            return -1;
        }
    for (int64_t i = 0; i < (int64_t)P->groups * P->rows; i++)
        if (zeros[i] != zero) {
            snprintf(why, n, "asymmetric zero points (%d, where the grid's is %d)", zeros[i], zero);
            return -1;
        }
    return type;
}

static int64_t row_bytes(int type, int64_t cols)
{
    return (int64_t)gptq_ggml_row_bytes(type, cols);
}

/* The GGUF blocks behind dense tensor `name` (gptqd's name, or a fused
 * group's, as gptq_model_foreach_file_tensor gives them): into t's parts,
 * with the blocks' type in t->type. Parts of one tensor on different block
 * types, or some without blocks, have no one GGUF type: refused. */
static gptq_status find_blocks(plan *p, const char *name, tensor *t)
{
    int layer, end = 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &end) != 1 || !end || layer < 0 ||
        layer >= p->cfg->num_hidden_layers)
        return GPTQ_OK;
    const char *path = name + end;
    gptq_linear_id ids[3];
    int n = 0;
    for (int w = 0; w < GPTQ_LIN_COUNT && !n; w++) {
        size_t len = strlen(gptq_linear_path((gptq_linear_id)w));
        if (!strncmp(path, gptq_linear_path((gptq_linear_id)w), len) && !strcmp(path + len, ".weight"))
            ids[n++] = (gptq_linear_id)w;
    }
    for (int g = 0; g < GPTQ_FUSED_GROUPS && !n; g++) {
        size_t len = strlen(gptq_fused_groups[g].fused);
        if (strncmp(path, gptq_fused_groups[g].fused, len) || strcmp(path + len, ".weight"))
            continue;
        for (int k = 0; k < gptq_fused_groups[g].n; k++)
            for (int w = 0; w < GPTQ_LIN_COUNT; w++)
                if (!strcmp(gptq_linear_path((gptq_linear_id)w), gptq_fused_groups[g].parts[k]))
                    ids[n++] = (gptq_linear_id)w;
    }
    int with = 0, type = 0;
    for (int k = 0; k < n; k++) {
        int tk;
        const uint8_t *b = gptq_model_linear_blocks(p->m, layer, ids[k], &tk);
        int rows, cols;
        gptq_model_linear_shape(p->m, ids[k], &rows, &cols);
        if (b && with && tk != type)
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: '%s' joins linears on %s and %s, "
                             "which one GGUF tensor cannot hold", name, gptq_ggml_type_name(type),
                             gptq_ggml_type_name(tk));
        with += b != NULL;
        type = b ? tk : type;
        t->part[k] = b;
        t->part_rows[k] = rows;
    }
    if (with && with != n)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: '%s' joins linears in %s blocks with "
                         "others that are not", name, gptq_ggml_type_name(type));
    if (with) {
        t->n_parts = n;
        t->type = type;
        p->q_types |= 1 << type;
        p->block_linears += n;
    }
    return GPTQ_OK;
}

/* Pass 1: the type and size of each tensor. */
static gptq_status plan_visit(void *user, const char *name, const void *data, gptq_dtype dt,
                              int ndim, const int64_t *shape, const gptq_linear *L)
{
    (void)data;
    (void)dt;
    plan *p = user;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 128;
        tensor *grown = realloc(p->t, cap * sizeof *grown);
        if (!grown)
            return gptq_fail(GPTQ_ERR_NOMEM, "gguf: out of memory");
        p->t = grown;
        p->cap = cap;
    }
    tensor *t = &p->t[p->n];
    memset(t, 0, sizeof *t);
    int which;
    gptq_status st = gguf_name(name, L != NULL, t->name, sizeof t->name, &which);
    if (st)
        return st;
    if (p->permuted_qk && (which == 2 || which == 3))
        t->permute = which == 2 ? p->cfg->num_attention_heads : p->cfg->num_key_value_heads;
    if (L) {
        gptq_packed v1 = L->P;
        if (L->perm && (st = gptq_linear_to_v1(L, &v1)))
            return gptq_fail_context(st, "gguf: '%s'", name);
        int32_t *zeros = malloc((size_t)v1.groups * v1.rows * sizeof *zeros);
        char why[160] = "";
        int type = -1;
        if (zeros && !(st = gptq_packed_unpack(&v1, NULL, zeros)))
            type = packed_type(&v1, zeros, why, sizeof why);
        else if (!zeros)
            st = gptq_fail(GPTQ_ERR_NOMEM, "gguf: out of memory");
        free(zeros);
        t->rows = v1.rows;
        t->cols = v1.cols;
        if (L->perm)
            gptq_packed_free(&v1);
        if (st)
            return st;
        if (type < 0)
            return gptq_fail(GPTQ_ERR_ARG, "gguf: '%s' is packed with %s: GGUF's Q4_0 and Q8_0 "
                             "hold symmetric groups of 32 inputs; quantize with --grid q4_0 (or "
                             "q8_0) to export it", name, why);
        t->type = type;
        t->n_dims = 2;
        p->q_types |= 1 << type;
    } else {
        t->n_dims = ndim;
        t->rows = ndim == 2 ? shape[0] : 1;
        t->cols = ndim == 2 ? shape[1] : shape[0];
        if (ndim != 1 && ndim != 2)
            return gptq_fail(GPTQ_ERR_ARG, "gguf: '%s' has %d dimensions", name, ndim);
        t->type = ndim == 1 ? GPTQ_GGML_F32
                  : p->float_dtype == GPTQ_DT_F16  ? GPTQ_GGML_F16
                  : p->float_dtype == GPTQ_DT_BF16 ? GPTQ_GGML_BF16
                                                   : GPTQ_GGML_F32;
        if (ndim == 2 && (st = find_blocks(p, name, t)))
            return st;
        if (ndim == 2 && p->embedding_type >= 0 &&
            (!strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight"))) {
            t->type = p->embedding_type;
            t->embedding = 1;
            if (t->cols % gptq_ggml_block_elems(t->type) != 0)
                return gptq_fail(GPTQ_ERR_ARG, "gguf: '%s' has rows of %lld, not a multiple of "
                                 "%s's %d", name, (long long)t->cols,
                                 gptq_ggml_type_name(t->type), gptq_ggml_block_elems(t->type));
        }
    }
    const int64_t permuted = t->n_dims == 1 ? t->cols : t->rows; /* a bias: its elements */
    if (t->permute && permuted % (2 * t->permute) != 0)
        return gptq_fail(GPTQ_ERR_ARG, "gguf: '%s' has %lld rows, not a multiple of 2 x %d heads",
                         name, (long long)permuted, t->permute);
    t->bytes = (uint64_t)(t->rows * row_bytes(t->type, t->cols));
    p->n++;
    return GPTQ_OK;
}

/* The source row of file row `r` (llama.cpp's interleaved order: file row
 * (h, 2i + j) holds HF row (h, j * half + i)). */
static int64_t source_row(const tensor *t, int64_t r)
{
    if (!t->permute)
        return r;
    const int64_t head = t->rows / t->permute, half = head / 2;
    const int64_t h = r / head, k = r % head;
    return h * head + (k % 2) * half + k / 2;
}

/* llama.cpp's Q8_0 of a float row (quantize_row_q8_0_ref): per block of
 * 32, d = max|x| / 127 stored in fp16, codes round(x / d) with the
 * unrounded d, halves away from zero. */
static void q8_0_row(const float *x, int64_t n, uint8_t *dst)
{
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t h = gptq_f32_to_f16(d);
        memcpy(dst + b * 34, &h, 2);
        for (int j = 0; j < 32; j++)
            dst[b * 34 + 2 + j] = (uint8_t)(int8_t)roundf(x[b * 32 + j] * id);
    }
}

static void encode_row(int type, const float *x, const uint8_t *codes, const uint16_t *scales,
                       int64_t scale_stride, int64_t cols, uint8_t *dst)
{
    for (int64_t b = 0; b < cols / 32; b++) {
        if (type == GPTQ_GGML_Q4_0) {
            uint8_t *blk = dst + b * 18;
            memcpy(blk, &scales[b * scale_stride], 2);
            for (int j = 0; j < 16; j++)
                blk[2 + j] = (uint8_t)(codes[b * 32 + j] | codes[b * 32 + j + 16] << 4);
        } else if (type == GPTQ_GGML_Q8_0) {
            uint8_t *blk = dst + b * 34;
            memcpy(blk, &scales[b * scale_stride], 2);
            for (int j = 0; j < 32; j++)
                blk[2 + j] = (uint8_t)(int8_t)(codes[b * 32 + j] - 128);
        }
    }
    (void)x;
}

/* Pass 2: each tensor's bytes, in the planned order. */
static gptq_status write_visit(void *user, const char *name, const void *data, gptq_dtype dt,
                               int ndim, const int64_t *shape, const gptq_linear *L)
{
    (void)ndim;
    (void)shape;
    plan *p = user;
    const tensor *t = &p->t[p->at++];
    out *o = p->o;
    const int64_t rb = row_bytes(t->type, t->cols);
    uint8_t *buf = malloc((size_t)(t->rows * rb) + 1);
    gptq_status st = GPTQ_OK;
    if (!buf)
        return gptq_fail(GPTQ_ERR_NOMEM, "gguf: out of memory for '%s'", name);
    if (L) {
        gptq_packed v1 = L->P;
        uint8_t *codes = NULL;
        if (L->perm && (st = gptq_linear_to_v1(L, &v1))) {
            free(buf);
            return gptq_fail_context(st, "gguf: '%s'", name);
        }
        codes = malloc((size_t)v1.rows * v1.cols);
        if (!codes)
            st = gptq_fail(GPTQ_ERR_NOMEM, "gguf: out of memory for '%s'", name);
        else if (!(st = gptq_packed_unpack(&v1, codes, NULL)))
            for (int64_t r = 0; r < t->rows; r++) {
                int64_t s = source_row(t, r);
                /* scales [groups, rows]: group b of row s at b * rows + s */
                encode_row(t->type, NULL, codes + s * t->cols, v1.scales + s, v1.rows, t->cols,
                           buf + r * rb);
            }
        free(codes);
        if (L->perm)
            gptq_packed_free(&v1);
    } else if (t->n_parts) { /* a block grid's rows, as GPTQ wrote them */
        for (int64_t r = 0; r < t->rows; r++) {
            int64_t s = source_row(t, r);
            int k = 0;
            while (s >= t->part_rows[k])
                s -= t->part_rows[k++];
            memcpy(buf + r * rb, t->part[k] + s * rb, (size_t)rb);
        }
    } else {
        const size_t n = (size_t)t->cols;
        const size_t esz = gptq_dtype_size(dt);
        float *f = malloc(n * sizeof *f);
        if (!f)
            st = gptq_fail(GPTQ_ERR_NOMEM, "gguf: out of memory for '%s'", name);
        for (int64_t r = 0; !st && r < t->rows; r++) {
            const int64_t s = t->n_dims == 1 ? r : source_row(t, r);
            const char *src = (const char *)data + (size_t)s * n * esz;
            uint8_t *dst = buf + r * rb;
            if (t->type == GPTQ_GGML_F16 && dt == GPTQ_DT_F16) {
                memcpy(dst, src, n * 2); /* resident in the file's precision */
                continue;
            }
            if (t->type == GPTQ_GGML_BF16 && dt == GPTQ_DT_BF16) {
                memcpy(dst, src, n * 2);
                continue;
            }
            if (gptq_dtype_to_f32(dt, src, f, n) != 0) {
                st = gptq_fail(GPTQ_ERR_ARG, "gguf: '%s' has dtype %s", name, gptq_dtype_name(dt));
                break;
            }
            if (p->norm_shift && t->n_dims == 1 && strlen(t->name) > 11 &&
                !strcmp(t->name + strlen(t->name) - 11, "norm.weight"))
                for (size_t i = 0; i < n; i++) /* Gemma's 1 + w, in float32 as its converter */
                    f[i] += 1.0f;
            if (t->type == GPTQ_GGML_F32) {
                memcpy(dst, f, n * 4);
            } else if (t->type == GPTQ_GGML_Q8_0) {
                q8_0_row(f, (int64_t)n, dst);
            } else if (gptq_ggml_is_block_grid(t->type)) {
                gptq_ggml_quantize_row(t->type, f, (int64_t)n, dst);
            } else {
                uint16_t *h = (uint16_t *)dst;
                for (size_t i = 0; i < n; i++)
                    h[i] = t->type == GPTQ_GGML_BF16 ? gptq_f32_to_bf16(f[i]) : gptq_f32_to_f16(f[i]);
            }
        }
        free(f);
        if (!st && t->n_dims == 1 && t->permute) { /* a q/k bias: its elements permuted */
            tensor view = *t;
            view.rows = t->cols;
            float *tmp = malloc((size_t)t->cols * sizeof *tmp);
            if (!tmp)
                st = gptq_fail(GPTQ_ERR_NOMEM, "gguf: out of memory for '%s'", name);
            else {
                memcpy(tmp, buf, (size_t)t->cols * sizeof *tmp);
                for (int64_t e = 0; e < t->cols; e++)
                    ((float *)buf)[e] = tmp[source_row(&view, e)];
            }
            free(tmp);
        }
    }
    if (!st) {
        put(o, buf, t->bytes);
        pad(o);
        if (o->failed)
            st = gptq_fail(GPTQ_ERR_IO, "%s: %s", o->path, strerror(o->failed));
    }
    free(buf);
    return st;
}

/* ---- the file ------------------------------------------------------------------ */

/* The period of the sliding layers: the first full layer + 1 (gemma_check
 * makes sure every layer follows it). */
static int swa_period(const gptq_model_config *c)
{
    int n = 0;
    while (n < c->num_hidden_layers && gptq_config_layer_window(c, n) > 0)
        n++;
    return n + 1;
}

/* What of Gemma llama.cpp cannot be told: its attention scale is fixed by
 * the model's shape, its sliding layers follow one period, Gemma 3 has no
 * attention soft-capping. Refused by name rather than written wrong. */
static gptq_status gemma_check(const gptq_model_config *c)
{
    const int g3 = c->arch == GPTQ_ARCH_GEMMA3;
    const int big = c->num_hidden_layers == (g3 ? 62 : 46);
    const double scale = big ? (double)c->hidden_size / c->num_attention_heads : c->head_dim;
    if (c->query_pre_attn_scalar != scale)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: query_pre_attn_scalar %g: llama.cpp scales "
                         "this model's scores by 1/sqrt(%g)", c->query_pre_attn_scalar, scale);
    if (g3 && c->attn_softcap > 0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: attn_logit_softcapping on Gemma 3: "
                         "llama.cpp does not apply it there");
    const int n = swa_period(c);
    for (int l = 0; l < c->num_hidden_layers; l++)
        if ((gptq_config_layer_window(c, l) > 0) != (c->sliding_window > 0 && l % n < n - 1))
            return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: the sliding layers do not repeat "
                             "with one period (layer %d), which llama.cpp needs", l);
    return GPTQ_OK;
}

static gptq_status build_meta(meta *m, const plan *p, json_t *tok, json_t *tc, const char *name)
{
    const gptq_model_config *c = p->cfg;
    char k[128];
#define AK(suffix) (snprintf(k, sizeof k, "%s." suffix, p->arch), k)
    add_str(m, "general.architecture", p->arch);
    size_t len = strlen(name);
    if (len > 5 && !strcasecmp(name + len - 5, ".gguf"))
        len -= 5;
    add(m, "general.name", GPTQ_GGUF_STRING, 0, json_stringn(name, len));
    add_u32(m, "general.quantization_version", 2);
    /* llama.cpp's llama_ftype of the main block type (informational) */
    static const struct {
        int type, ftype;
    } ftypes[] = {{GPTQ_GGML_Q4_K, 15 /* Q4_K_M */}, {GPTQ_GGML_Q5_K, 17 /* Q5_K_M */},
                  {GPTQ_GGML_Q3_K, 12 /* Q3_K_M */}, {GPTQ_GGML_Q2_K, 10},
                  {GPTQ_GGML_Q6_K, 18},             {GPTQ_GGML_Q4_1, 3},
                  {GPTQ_GGML_Q5_0, 8},              {GPTQ_GGML_Q5_1, 9},
                  {GPTQ_GGML_Q4_0, FTYPE_Q4_0},     {GPTQ_GGML_Q8_0, FTYPE_Q8_0}};
    int ftype = p->float_dtype == GPTQ_DT_F16    ? FTYPE_F16
                : p->float_dtype == GPTQ_DT_BF16 ? FTYPE_BF16
                                                 : FTYPE_F32;
    for (int i = (int)(sizeof ftypes / sizeof ftypes[0]) - 1; i >= 0; i--)
        if (p->q_types & (1 << ftypes[i].type))
            ftype = ftypes[i].ftype;
    add_u32(m, "general.file_type", ftype);
    int ctx = c->max_position_embeddings > 0 ? c->max_position_embeddings : 4096;
    /* llama.cpp runs the llama architecture, and phi3, without a sliding
     * window: the file is exact up to the window, so that is the context it
     * declares */
    if (c->sliding_window > 0 && c->sliding_window < ctx && !p->norm_shift)
        ctx = c->sliding_window; /* (Gemma's windows llama.cpp applies itself) */
    add_u32(m, AK("context_length"), ctx);
    add_u32(m, AK("embedding_length"), c->hidden_size);
    add_u32(m, AK("block_count"), c->num_hidden_layers);
    add_u32(m, AK("feed_forward_length"), c->intermediate_size);
    add_u32(m, AK("attention.head_count"), c->num_attention_heads);
    add_u32(m, AK("attention.head_count_kv"), c->num_key_value_heads);
    if (gptq_config_layernorm(c)) { /* bloom: LayerNorm, ALiBi (llama.cpp's own) */
        add_f32(m, AK("attention.layer_norm_epsilon"), c->rms_norm_eps);
    } else {
        add_f32(m, AK("rope.freq_base"), c->rope_theta);
        add_f32(m, AK("attention.layer_norm_rms_epsilon"), c->rms_norm_eps);
        add_u32(m, AK("rope.dimension_count"), c->head_dim);
    }
    if (c->head_dim * c->num_attention_heads != c->hidden_size) {
        add_u32(m, AK("attention.key_length"), c->head_dim);
        add_u32(m, AK("attention.value_length"), c->head_dim);
    }
    add_u32(m, AK("vocab_size"), c->vocab_size);
    if (c->rope_type == GPTQ_ROPE_LINEAR) {
        add_str(m, AK("rope.scaling.type"), "linear");
        add_f32(m, AK("rope.scaling.factor"), c->rope_factor);
    }
    if (p->norm_shift) { /* Gemma: what llama.cpp reads beside the common keys */
        if (c->arch == GPTQ_ARCH_GEMMA2 || c->attn_softcap > 0)
            add_f32(m, AK("attn_logit_softcapping"), c->attn_softcap);
        if (c->arch == GPTQ_ARCH_GEMMA2 || c->final_softcap > 0)
            add_f32(m, AK("final_logit_softcapping"), c->final_softcap);
        if (c->sliding_window > 0) {
            add_u32(m, AK("attention.sliding_window"), c->sliding_window);
            add_u32(m, AK("attention.sliding_window_pattern"), swa_period(c));
        }
        if (c->rope_local_theta > 0)
            add_f32(m, AK("rope.freq_base_swa"), c->rope_local_theta);
    }
    if (c->arch == GPTQ_ARCH_PHI3) { /* as llama.cpp's converter writes them (0: no window) */
        int longrope = c->rope_type == GPTQ_ROPE_LONGROPE;
        add_u32(m, AK("rope.scaling.original_context_length"),
                longrope ? c->rope_original_max_position_embeddings : ctx);
        add_u32(m, AK("attention.sliding_window"), c->sliding_window);
        if (longrope) /* the factors are the rope_factors_long/short tensors */
            add_f32(m, AK("rope.scaling.attn_factor"), c->rope_attention_factor);
    }
#undef AK
    gptq_status st = tokenizer_meta(m, tok, tc, c);
    if (!st && m->failed)
        st = gptq_fail(GPTQ_ERR_NOMEM, "gguf: out of memory");
    return st;
}

int gptq_gguf_embedding_type(const char *name)
{
    const int grid = gptq_grid_from_name(name), type = gptq_grid_ggml_type(grid);
    return grid == GPTQ_GRID_Q8_0 || gptq_ggml_is_block_grid(type) ? type
           : !strcmp(name, "f16")                                  ? GPTQ_GGML_F16
           : !strcmp(name, "bf16")                                 ? GPTQ_GGML_BF16
           : !strcmp(name, "f32")                                  ? GPTQ_GGML_F32
                                                                   : -1;
}

gptq_status gptq_gguf_save_at(const gptq_model *m, const gptq_hf_files *files,
                              const gptq_gguf_save_options *opt, int parentfd, const char *name,
                              const char *path)
{
    const gptq_model_config *cfg = gptq_model_get_config(m);
    gptq_dtype float_dtype = opt ? opt->float_dtype : GPTQ_DT_COUNT;
    plan p = {.m = m, .cfg = cfg, .embedding_type = opt ? opt->embedding_type : -1};
    meta md = {0};
    json_t *tok = NULL, *tc = NULL;
    gptq_status st = GPTQ_OK;
    char tmp[4200];
    struct stat sb;
    out o = {.path = path};
    float *freqs = NULL;

    if (strlen(name) > 4000 || !name[0] || strchr(name, '/') || !strcmp(name, ".") ||
        !strcmp(name, ".."))
        return gptq_fail(GPTQ_ERR_ARG, "%s: not a file name to create", path);
    if (fstatat(parentfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
        return gptq_fail(GPTQ_ERR_EXISTS, "%s already exists: choose a new name or remove it",
                         path);
    switch (cfg->arch) {
    case GPTQ_ARCH_LLAMA:
    case GPTQ_ARCH_MISTRAL:
        p.arch = "llama";
        p.permuted_qk = 1;
        break;
    case GPTQ_ARCH_QWEN2:
        p.arch = "qwen2";
        break;
    case GPTQ_ARCH_QWEN3:
        p.arch = "qwen3";
        break;
    case GPTQ_ARCH_PHI3: /* attn_qkv and ffn_up ([gate; up]) fused, as the files hold them */
        p.arch = "phi3";
        break;
    case GPTQ_ARCH_BLOOM: /* attn_qkv as [q; k; v], llama.cpp's converter's order */
        p.arch = "bloom";
        break;
    case GPTQ_ARCH_GEMMA2:
    case GPTQ_ARCH_GEMMA3:
        p.arch = cfg->arch == GPTQ_ARCH_GEMMA2 ? "gemma2" : "gemma3";
        p.norm_shift = 1;
        if ((st = gemma_check(cfg)))
            return st;
        break;
    default:
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: architecture %s has no llama.cpp form here",
                         cfg->architecture);
    }
    if (cfg->rope_type != GPTQ_ROPE_DEFAULT && cfg->rope_type != GPTQ_ROPE_LINEAR &&
        cfg->rope_type != GPTQ_ROPE_LLAMA3 &&
        !(cfg->rope_type == GPTQ_ROPE_LONGROPE && cfg->arch == GPTQ_ARCH_PHI3))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: this RoPE scaling has no llama.cpp form");
    if (float_dtype == GPTQ_DT_COUNT)
        float_dtype = cfg->torch_dtype;
    if (float_dtype != GPTQ_DT_F16 && float_dtype != GPTQ_DT_BF16 && float_dtype != GPTQ_DT_F32)
        return gptq_fail(GPTQ_ERR_ARG, "save: dtype %s; use F16, BF16 or F32",
                         gptq_dtype_name(float_dtype));
    p.float_dtype = float_dtype;
    if (!(tok = load_json(files, "tokenizer.json", 1, &st)))
        goto done;
    tc = load_json(files, "tokenizer_config.json", 0, &st);
    if (st)
        goto done;
    if (!tc)
        tc = json_object();
    if ((st = gptq_model_foreach_file_tensor(m, plan_visit, &p, NULL, 0)))
        goto done;
    int n_block_linears = 0;
    for (int l = 0; l < cfg->num_hidden_layers; l++)
        for (int w = 0; w < GPTQ_LIN_COUNT; w++)
            n_block_linears += gptq_model_linear_blocks(m, l, (gptq_linear_id)w, NULL) != NULL;
    if (n_block_linears != p.block_linears) { /* never write a block grid's linear as float */
        st = gptq_fail(GPTQ_ERR_UNSUPPORTED, "gguf: %d of the model's %d linears in GGUF blocks "
                       "have no tensor of their own in the file", n_block_linears - p.block_linears,
                       n_block_linears);
        goto done;
    }
    if (p.q_types && float_dtype == GPTQ_DT_F32 && cfg->torch_dtype == GPTQ_DT_F32) {
        /* a quantized model's float tensors in 16 bits, as in a checkpoint */
        p.float_dtype = GPTQ_DT_F16;
        for (size_t i = 0; i < p.n; i++)
            if (p.t[i].type == GPTQ_GGML_F32 && p.t[i].n_dims == 2 && !p.t[i].embedding) {
                p.t[i].type = GPTQ_GGML_F16;
                p.t[i].bytes /= 2;
            }
    }
    /* RoPE factors llama.cpp divides each frequency by, as F32 [half]
     * tensors after the model's: Llama 3's scaling as rope_freqs, Phi-3's
     * longrope as its long and short factors */
    const int half = cfg->head_dim / 2;
    const char *extra[2] = {NULL, NULL};
    const float *extra_data[2] = {NULL, NULL};
    int n_extra = 0;
    if (cfg->rope_type == GPTQ_ROPE_LLAMA3) {
        freqs = malloc((size_t)half * 2 * sizeof *freqs);
        if (!freqs) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "gguf: out of memory");
            goto done;
        }
        gptq_model_config plain = *cfg;
        plain.rope_type = GPTQ_ROPE_DEFAULT;
        gptq_config_rope_inv_freq(&plain, freqs + half);
        gptq_config_rope_inv_freq(cfg, freqs);
        for (int i = 0; i < half; i++)
            freqs[i] = freqs[half + i] / freqs[i];
        extra[n_extra] = "rope_freqs.weight", extra_data[n_extra++] = freqs;
    } else if (cfg->rope_type == GPTQ_ROPE_LONGROPE) {
        extra[n_extra] = "rope_factors_long.weight", extra_data[n_extra++] = cfg->rope_long_factor;
        extra[n_extra] = "rope_factors_short.weight",
        extra_data[n_extra++] = cfg->rope_short_factor;
    }
    if ((st = build_meta(&md, &p, tok, tc, name)))
        goto done;

    snprintf(tmp, sizeof tmp, "%s.tmp.%d", name, (int)getpid());
    int fd = openat(parentfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 || !(o.f = fdopen(fd, "wb"))) {
        if (fd >= 0)
            close(fd);
        st = gptq_fail(GPTQ_ERR_IO, "%s.tmp.%d: cannot create: %s", path, (int)getpid(),
                       strerror(errno));
        goto done;
    }
    /* header, metadata, tensor infos (offsets from the data section) */
    put(&o, "GGUF", 4);
    put_u32(&o, 3);
    put_u64(&o, p.n + (size_t)n_extra);
    put_u64(&o, md.n);
    put_meta(&o, &md);
    uint64_t offset = 0;
    for (size_t i = 0; i < p.n + (size_t)n_extra; i++) {
        tensor freq_t = {.type = GPTQ_GGML_F32, .rows = 1, .cols = half, .n_dims = 1,
                         .bytes = (uint64_t)half * 4};
        if (i >= p.n)
            snprintf(freq_t.name, sizeof freq_t.name, "%s", extra[i - p.n]);
        tensor *t = i < p.n ? &p.t[i] : &freq_t;
        put_str(&o, t->name, strlen(t->name));
        put_u32(&o, (uint32_t)t->n_dims);
        put_u64(&o, (uint64_t)t->cols);
        if (t->n_dims == 2)
            put_u64(&o, (uint64_t)t->rows);
        put_u32(&o, (uint32_t)t->type);
        put_u64(&o, offset);
        offset += (t->bytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    pad(&o);
    o.pos = 0; /* alignment now counts from the data section */
    p.o = &o;
    if ((st = gptq_model_foreach_file_tensor(m, write_visit, &p, NULL, 0)))
        goto close;
    for (int i = 0; i < n_extra; i++) {
        put(&o, extra_data[i], (size_t)half * 4);
        pad(&o);
    }
    if (!o.failed && (fflush(o.f) != 0 || fsync(fileno(o.f)) != 0))
        o.failed = errno ? errno : EIO;
    if (o.failed) {
        st = gptq_fail(GPTQ_ERR_IO, "%s: %s", path, strerror(o.failed));
        goto close;
    }
close:
    if (fclose(o.f) != 0 && !st)
        st = gptq_fail(GPTQ_ERR_IO, "%s: %s", path, strerror(errno));
    if (!st && renameat(parentfd, tmp, parentfd, name) != 0)
        st = gptq_fail(GPTQ_ERR_IO, "rename %s.tmp.%d -> %s: %s", path, (int)getpid(), path,
                       strerror(errno));
    if (st)
        unlinkat(parentfd, tmp, 0);
    else
        fsync(parentfd);
done:
    free(freqs);
    free(p.t);
    meta_free(&md);
    json_decref(tok);
    json_decref(tc);
    return st;
}
