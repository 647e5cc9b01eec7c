/* model/tokenizer/load.c: tokenizer.json into a gptq_tokenizer: the BPE
 * model (vocab, merges, options), added tokens and the post-processor here;
 * normalizers, pre-tokenizers and decoders through their own files'
 * loaders. Every id, string and list is checked before use; messages name
 * the field and never quote the file's text beyond a token. */
#include "model/tokenizer/internal.h"

#include "common/file.h"
#include "model/json_error.h"
#include "model/gguf.h"
#include "model/gguf_hf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_VOCAB (1 << 24) /* a sanity bound on ids read from the file */

#define MAX_VOCAB (1 << 24) /* a sanity bound on ids read from the file */

const char *json_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int json_flag(json_t *obj, const char *key, int dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

gptq_status compile_regex(const char *path, const char *what, const char *pattern,
                          size_t pattern_len, int literal, pcre2_code **out)
{
    int err;
    PCRE2_SIZE at;
    /* PCRE2_UCP only changes what classes mean; a literal has none (and
     * PCRE2 refuses the two together). */
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, pattern_len, opts, &err, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                         "%s: %s regex does not compile with PCRE2 at offset %zu: %s", path, what,
                         (size_t)at, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    *out = re;
    return GPTQ_OK;
}

gptq_status parse_scheme(const char *path, json_t *obj, enum prepend_scheme *out)
{
    const char *scheme = json_str(obj, "prepend_scheme");
    if (!scheme) {
        /* tokenizers < 0.15 wrote add_prefix_space instead */
        *out = json_flag(obj, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        return GPTQ_OK;
    }
    if (!strcmp(scheme, "always")) *out = PREPEND_ALWAYS;
    else if (!strcmp(scheme, "first")) *out = PREPEND_FIRST;
    else if (!strcmp(scheme, "never")) *out = PREPEND_NEVER;
    else
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: Metaspace prepend_scheme \"%s\": expected always, first or never",
                         path, scheme);
    return GPTQ_OK;
}

/* {"String": s} or {"Regex": r} of Replace and Split. */
gptq_status parse_pattern(const char *path, const char *what, json_t *obj, const char **s,
                          int *is_regex)
{
    json_t *pat = json_object_get(obj, "pattern");
    const char *str = json_str(pat, "String");
    const char *re = json_str(pat, "Regex");
    if (str) { *s = str; *is_regex = 0; return GPTQ_OK; }
    if (re) { *s = re; *is_regex = 1; return GPTQ_OK; }
    return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s needs pattern {\"String\": ...} or {\"Regex\": ...}",
                     path, what);
}

static gptq_status template_push(gptq_tokenizer *tok, const char *path, int32_t id)
{
    int32_t *grown = realloc(tok->template_ids, (tok->n_template + 1) * sizeof *grown);
    if (!grown) return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    tok->template_ids = grown;
    tok->template_ids[tok->n_template++] = id;
    return GPTQ_OK;
}

static gptq_status check_id(const gptq_tokenizer *tok, const char *path, const char *what,
                            json_int_t id)
{
    if (id < 0 || id >= tok->vocab_size)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s id %lld is outside the vocabulary [0, %d)", path,
                         what, (long long)id, (int)tok->vocab_size);
    return GPTQ_OK;
}

gptq_status load_sequence(gptq_tokenizer *tok, const char *path, json_t *step, const char *key,
                          const char *what, tok_step_loader load)
{
    json_t *list = json_object_get(step, key);
    if (!json_is_array(list))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: Sequence %s needs a \"%s\" list", path, what, key);
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        gptq_status st = load(tok, path, item);
        if (st) return st;
    }
    return GPTQ_OK;
}

/* The post-processor's single-sequence template as ids, -1 marking where the
 * encoded text goes. ByteLevel post-processing only touches offsets. */
static gptq_status load_post(gptq_tokenizer *tok, const char *path, json_t *p, int *seen_seq)
{
    if (json_is_null(p) || !p) return GPTQ_OK;
    const char *type = json_str(p, "type");
    gptq_status st;
    if (!type) return gptq_fail(GPTQ_ERR_FORMAT, "%s: post_processor has no \"type\"", path);
    if (!strcmp(type, "ByteLevel")) return GPTQ_OK;
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "processors");
        size_t i;
        json_t *item;
        if (!json_is_array(list))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: Sequence post_processor needs \"processors\"", path);
        json_array_foreach(list, i, item) {
            if ((st = load_post(tok, path, item, seen_seq))) return st;
        }
        return GPTQ_OK;
    }
    if (*seen_seq)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: more than one template post_processor", path);
    *seen_seq = 1;
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(p, "single");
        json_t *specials = json_object_get(p, "special_tokens");
        size_t i;
        json_t *item;
        if (!json_is_array(single))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: TemplateProcessing needs a \"single\" list", path);
        json_array_foreach(single, i, item) {
            json_t *sp = json_object_get(item, "SpecialToken");
            if (json_object_get(item, "Sequence")) {
                if ((st = template_push(tok, path, -1))) return st;
                continue;
            }
            const char *name = json_str(sp, "id");
            json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
            if (!name || !json_is_array(ids))
                return gptq_fail(GPTQ_ERR_FORMAT,
                                 "%s: TemplateProcessing single[%zu] names a special token "
                                 "missing from \"special_tokens\"", path, i);
            size_t j;
            json_t *idv;
            json_array_foreach(ids, j, idv) {
                if (!json_is_integer(idv))
                    return gptq_fail(GPTQ_ERR_FORMAT, "%s: special_tokens \"%s\" ids must be integers", path, name);
                if ((st = check_id(tok, path, "TemplateProcessing", json_integer_value(idv)))) return st;
                if ((st = template_push(tok, path, (int32_t)json_integer_value(idv)))) return st;
            }
        }
        return GPTQ_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_object_get(p, "cls"), *sep = json_object_get(p, "sep");
        json_t *cls_id = json_array_get(cls, 1), *sep_id = json_array_get(sep, 1);
        if (!json_is_integer(cls_id) || !json_is_integer(sep_id))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s needs \"cls\" and \"sep\" as [token, id]", path, type);
        if ((st = check_id(tok, path, type, json_integer_value(cls_id))) ||
            (st = check_id(tok, path, type, json_integer_value(sep_id))))
            return st;
        if ((st = template_push(tok, path, (int32_t)json_integer_value(cls_id))) ||
            (st = template_push(tok, path, -1)) ||
            (st = template_push(tok, path, (int32_t)json_integer_value(sep_id))))
            return st;
        return GPTQ_OK;
    }
    return gptq_fail(GPTQ_ERR_UNSUPPORTED,
                     "%s: post_processor \"%s\" is not supported (TemplateProcessing, ByteLevel, "
                     "RobertaProcessing, BertProcessing and Sequence are)", path, type);
}

/* Largest id in model.vocab and added_tokens, so the id tables can be sized. */
static gptq_status scan_max_id(const char *path, json_t *vocab, json_t *added, int32_t *max_id)
{
    const char *key;
    json_t *v;
    size_t i;
    *max_id = -1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_VOCAB)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: model.vocab \"%s\" has an id that is not an "
                             "integer in [0, %d)", path, key, MAX_VOCAB);
        if (json_integer_value(v) > *max_id) *max_id = (int32_t)json_integer_value(v);
    }
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_VOCAB ||
            !json_is_string(json_object_get(v, "content")))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: added_tokens[%zu] needs \"content\" and an "
                             "integer \"id\" in [0, %d)", path, i, MAX_VOCAB);
        if (json_integer_value(id) > *max_id) *max_id = (int32_t)json_integer_value(id);
    }
    return GPTQ_OK;
}

static gptq_status load_vocab(gptq_tokenizer *tok, const char *path, json_t *vocab)
{
    const char *key;
    json_t *v;
    if (strmap_init(&tok->model_map, json_object_size(vocab)))
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for the vocabulary", path);
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        /* jansson keys are NUL-terminated; a token holding U+0000 would be cut */
        if (tok->model_str[id])
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: model.vocab gives id %d to both \"%s\" and \"%s\"",
                             path, (int)id, tok->model_str[id], key);
        size_t n = strlen(key);
        if (!(tok->model_str[id] = dup_bytes(key, n)))
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for the vocabulary", path);
        tok->model_len[id] = (uint32_t)n;
        strmap_put(&tok->model_map, tok->model_str, tok->model_len, id);
    }
    return GPTQ_OK;
}

int32_t model_id(const gptq_tokenizer *tok, const char *s, size_t n)
{
    return strmap_get(&tok->model_map, tok->model_str, tok->model_len, s, n);
}

/* merges: ["a b", ...] (tokenizers < 0.20) or [["a", "b"], ...]; rank = index.
 * The merged token is a + b without b's continuing_subword_prefix, as HF builds it. */
static gptq_status load_merges(gptq_tokenizer *tok, const char *path, json_t *merges)
{
    size_t n = json_array_size(merges), cap = 16, i;
    json_t *m;
    gptq_status st = GPTQ_OK;
    char *joined = NULL;
    while (cap < n * 2 + 16) cap *= 2;
    tok->merges = malloc(cap * sizeof *tok->merges);
    if (!tok->merges) return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory for %zu merges", path, n);
    for (i = 0; i < cap; i++) tok->merges[i].key = UINT64_MAX;
    tok->merge_mask = cap - 1;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t a_len, b_len;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *space = strchr(a, ' ');
            if (!space) {
                st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model.merges[%zu] \"%s\" is not \"left right\"", path, i, a);
                goto fail;
            }
            a_len = (size_t)(space - a);
            b = space + 1;
            b_len = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            a_len = strlen(a);
            b_len = strlen(b);
        } else {
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            goto fail;
        }
        int32_t left = model_id(tok, a, a_len), right = model_id(tok, b, b_len);
        if (left < 0 || right < 0) {
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model.merges[%zu] uses \"%.*s\", which is not in model.vocab",
                           path, i, left < 0 ? (int)a_len : (int)b_len, left < 0 ? a : b);
            goto fail;
        }
        size_t skip = tok->prefix_len && b_len >= tok->prefix_len &&
                      !memcmp(b, tok->prefix, tok->prefix_len) ? tok->prefix_len : 0;
        char *grown = realloc(joined, a_len + b_len + 1);
        if (!grown) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        joined = grown;
        memcpy(joined, a, a_len);
        memcpy(joined + a_len, b + skip, b_len - skip);
        int32_t merged = model_id(tok, joined, a_len + b_len - skip);
        if (merged < 0) {
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model.merges[%zu] makes \"%.*s\", which is not in model.vocab",
                           path, i, (int)(a_len + b_len - skip), joined);
            goto fail;
        }
        uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
        size_t s = merge_hash(key) & tok->merge_mask;
        while (tok->merges[s].key != UINT64_MAX && tok->merges[s].key != key) s = (s + 1) & tok->merge_mask;
        /* a pair listed twice: HF collects into a HashMap, so the last rank wins */
        tok->merges[s].key = key;
        tok->merges[s].rank = (uint32_t)i;
        tok->merges[s].new_id = merged;
    }
fail:
    free(joined);
    return st;
}

static gptq_status load_added(gptq_tokenizer *tok, const char *path, json_t *added)
{
    size_t i;
    json_t *a;
    tok->added = calloc(json_array_size(added) + 1, sizeof *tok->added);
    if (!tok->added || strmap_init(&tok->added_map, json_array_size(added)))
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    json_array_foreach(added, i, a) {
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        const char *content = json_string_value(json_object_get(a, "content"));
        size_t n = json_string_length(json_object_get(a, "content"));
        if (n == 0)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: added_tokens[%zu] has empty content", path, i);
        if (tok->added_str[id]) continue; /* the same id twice: keep the first */
        if (!(tok->added_str[id] = dup_bytes(content, n)))
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
        tok->added_len[id] = (uint32_t)n;
        strmap_put(&tok->added_map, tok->added_str, tok->added_len, id);
        added_token *t = &tok->added[tok->n_added++];
        t->id = id;
        t->special = json_flag(a, "special", 0);
        t->normalized = json_flag(a, "normalized", !t->special);
        t->lstrip = json_flag(a, "lstrip", 0);
        t->rstrip = json_flag(a, "rstrip", 0);
        t->single_word = json_flag(a, "single_word", 0);
    }
    return GPTQ_OK;
}

static gptq_status load_model(gptq_tokenizer *tok, const char *path, json_t *model)
{
    const char *type = json_str(model, "type");
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    gptq_status st;
    if (type && strcmp(type, "BPE"))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (only BPE is)",
                         path, type);
    if (!json_is_object(vocab) || !json_is_array(merges))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: a BPE model needs \"vocab\" (object) and \"merges\" (list)", path);
    json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0.0)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: BPE dropout %g is not supported (set it to null)",
                         path, json_number_value(dropout));
    tok->byte_fallback = json_flag(model, "byte_fallback", 0);
    tok->fuse_unk = json_flag(model, "fuse_unk", 0);
    tok->ignore_merges = json_flag(model, "ignore_merges", 0);
    const char *prefix = json_str(model, "continuing_subword_prefix");
    const char *suffix = json_str(model, "end_of_word_suffix");
    const char *unk = json_str(model, "unk_token");
    if (!(tok->prefix = strdup(prefix ? prefix : "")) || !(tok->suffix = strdup(suffix ? suffix : "")) ||
        (unk && !(tok->unk_token = strdup(unk))))
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
    tok->prefix_len = strlen(tok->prefix);
    tok->suffix_len = strlen(tok->suffix);
    if ((st = load_vocab(tok, path, vocab))) return st;
    if ((st = load_merges(tok, path, merges))) return st;
    tok->unk_id = unk ? model_id(tok, unk, strlen(unk)) : -1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_id[b] = model_id(tok, name, 6);
    }
    return GPTQ_OK;
}


void gptq_tokenizer_free(gptq_tokenizer *tok)
{
    if (!tok) return;
    for (int32_t i = 0; i < tok->vocab_size; i++) {
        if (tok->model_str) free(tok->model_str[i]);
        if (tok->added_str) free(tok->added_str[i]);
        if (tok->tok_bytes) free(tok->tok_bytes[i]);
    }
    free(tok->model_str);
    free(tok->model_len);
    free(tok->model_map.slot);
    free(tok->added_str);
    free(tok->added_len);
    free(tok->added_text);
    free(tok->added_text_len);
    free(tok->added_map.slot);
    for (size_t i = 0; i < tok->n_added; i++) free(tok->added[i].match);
    free(tok->added);
    free(tok->merges);
    free(tok->unk_token);
    free(tok->prefix);
    free(tok->suffix);
    for (size_t i = 0; i < tok->n_norm; i++) norm_step_free(&tok->norm[i]);
    free(tok->norm);
    for (size_t i = 0; i < tok->n_pre; i++) pre_step_free(&tok->pre[i]);
    free(tok->pre);
    for (size_t i = 0; i < tok->n_dec; i++) {
        free(tok->dec[i].a);
        free(tok->dec[i].b);
    }
    free(tok->dec);
    free(tok->template_ids);
    free(tok->tok_bytes);
    free(tok->tok_bytes_len);
    free(tok);
}

static gptq_status load_root(json_t *root, const char *path, gptq_tokenizer **out)
{
    gptq_tokenizer *tok = NULL;
    gptq_status st;
    int seen_seq = 0;
    json_t *model = json_object_get(root, "model");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(model))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: no \"model\" object; is this a tokenizer.json?", path);
    if (added && !json_is_null(added) && !json_is_array(added))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: \"added_tokens\" must be a list", path);
    if (!(tok = calloc(1, sizeof *tok))) goto nomem;
    int32_t max_id;
    json_t *vocab = json_object_get(model, "vocab");
    const char *type = json_str(model, "type");
    if (type && strcmp(type, "BPE")) {
        st = gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (only BPE is)",
                       path, type);
        goto fail;
    }
    if (!json_is_object(vocab)) {
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: model has no \"vocab\" object (only BPE models are supported)", path);
        goto fail;
    }
    if ((st = scan_max_id(path, vocab, added, &max_id))) goto fail;
    if (max_id < 0) {
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: the vocabulary is empty", path);
        goto fail;
    }
    tok->vocab_size = max_id + 1;
    size_t vs = (size_t)tok->vocab_size;
    tok->model_str = calloc(vs, sizeof *tok->model_str);
    tok->model_len = calloc(vs, sizeof *tok->model_len);
    tok->added_str = calloc(vs, sizeof *tok->added_str);
    tok->added_len = calloc(vs, sizeof *tok->added_len);
    tok->added_text = calloc(vs, sizeof *tok->added_text);
    tok->added_text_len = calloc(vs, sizeof *tok->added_text_len);
    if (!tok->model_str || !tok->model_len || !tok->added_str || !tok->added_len ||
        !tok->added_text || !tok->added_text_len)
        goto nomem;
    if ((st = load_model(tok, path, model))) goto fail;
    if ((st = load_added(tok, path, added))) goto fail;
    if ((st = load_normalizer(tok, path, json_object_get(root, "normalizer")))) goto fail;
    if ((st = load_pretokenizer(tok, path, json_object_get(root, "pre_tokenizer")))) goto fail;
    if ((st = load_decoder(tok, path, json_object_get(root, "decoder")))) goto fail;
    if ((st = load_post(tok, path, json_object_get(root, "post_processor"), &seen_seq))) goto fail;
    if ((st = added_match_strings(tok, path))) goto fail;
    if ((st = build_token_bytes(tok, path))) goto fail;
    *out = tok;
    return GPTQ_OK;
nomem:
    st = gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", path);
fail:
    gptq_tokenizer_free(tok);
    return st;
}

gptq_status gptq_tokenizer_load_json(const char *json, size_t len, const char *name,
                                     gptq_tokenizer **out)
{
    json_error_t jerr;
    char why[160];
    if (!json || !name || !out)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_tokenizer_load_json: json, name and out must not be NULL");
    *out = NULL;
    tok_tables_init();
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: not valid JSON: line %d column %d: %s", name,
                         jerr.line, jerr.column, gptq_json_error_text(&jerr, why, sizeof why));
    gptq_status st = load_root(root, name, out);
    json_decref(root);
    return st;
}

/* A GGUF file's tokenizer: its metadata as tokenizer.json (model/gguf_hf.h). */
static gptq_status load_gguf(int fd, const char *path, gptq_tokenizer **out)
{
    gptq_gguf *g = NULL;
    char *json = NULL;
    size_t len = 0;
    gptq_status st = gptq_gguf_open_fd(fd, path, &g);
    if (!st)
        st = gptq_gguf_tokenizer_json(g, &json, &len);
    if (!st)
        st = gptq_tokenizer_load_json(json, len, path, out);
    free(json);
    gptq_gguf_close(g);
    return st;
}

gptq_status gptq_tokenizer_load(const char *path, gptq_tokenizer **out)
{
    if (!path || !out) return gptq_fail(GPTQ_ERR_ARG, "gptq_tokenizer_load: path and out must not be NULL");
    *out = NULL;
    char *text = NULL, magic[4];
    size_t len = 0;
    int fd;
    gptq_status st = gptq_file_open(path, &fd);
    if (st) return st;
    if (pread(fd, magic, 4, 0) == 4 && !memcmp(magic, "GGUF", 4))
        st = load_gguf(fd, path, out);
    else if (!(st = gptq_file_read_fd(fd, path, GPTQ_TOKENIZER_MAX_BYTES, &text, &len)))
        st = gptq_tokenizer_load_json(text, len, path, out);
    free(text);
    close(fd);
    return st;
}
