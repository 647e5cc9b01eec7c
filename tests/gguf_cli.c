/* tests/gguf_cli.c: the GGUF reader for tests/gguf_dequant.py, which checks
 * it against gguf-py.
 *
 *   gguf_cli types              one line per known ggml type: number, name,
 *                               block elements, block bytes, 1 if it converts
 *   gguf_cli info FILE          the header as JSON: version, alignment,
 *                               metadata (arrays as {"elem", "items"}, uint64
 *                               above 2^63-1 as a decimal string), tensors
 *   gguf_cli f32 FILE OUT NAME...  the named tensors as float32
 *                               (gptq_gguf_read_f32), one after the other, to OUT
 *
 * Exit status 0, or 1 with the reader's message on stderr. */
#include "model/gguf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const value_types[GPTQ_GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};

static json_t *value_json(const gptq_gguf_value *v)
{
    switch (v->type) {
    case GPTQ_GGUF_UINT8: case GPTQ_GGUF_UINT16: case GPTQ_GGUF_UINT32: case GPTQ_GGUF_UINT64:
        if (v->v.u > INT64_MAX) {
            char text[32];
            snprintf(text, sizeof text, "%llu", (unsigned long long)v->v.u);
            return json_string(text);
        }
        return json_integer((json_int_t)v->v.u);
    case GPTQ_GGUF_INT8: case GPTQ_GGUF_INT16: case GPTQ_GGUF_INT32: case GPTQ_GGUF_INT64:
        return json_integer((json_int_t)v->v.i);
    case GPTQ_GGUF_FLOAT32: case GPTQ_GGUF_FLOAT64:
        return json_real(v->v.f); /* NULL (written as null) for NaN and Inf */
    case GPTQ_GGUF_BOOL:
        return json_boolean(v->v.b);
    case GPTQ_GGUF_STRING:
        return json_stringn(v->v.str.ptr, (size_t)v->v.str.len); /* NULL if not UTF-8 */
    case GPTQ_GGUF_ARRAY: {
        json_t *items = json_array();
        for (uint64_t i = 0; i < v->v.arr.n; i++) {
            json_t *item = value_json(&v->v.arr.items[i]);
            json_array_append_new(items, item ? item : json_null());
        }
        return json_pack("{s:s, s:o}", "elem", value_types[v->v.arr.elem], "items", items);
    }
    default:
        return NULL;
    }
}

static int info(const char *file)
{
    gptq_gguf *g;
    if (gptq_gguf_open(file, &g) != GPTQ_OK) {
        fprintf(stderr, "%s\n", gptq_errmsg());
        return 1;
    }
    json_t *kvs = json_array(), *tensors = json_array();
    for (size_t i = 0; i < gptq_gguf_kv_count(g); i++) {
        const gptq_gguf_kv *kv = gptq_gguf_kv_at(g, i);
        json_t *value = value_json(&kv->value);
        json_array_append_new(kvs, json_pack("{s:s, s:s, s:o}", "key", kv->key, "type",
                                             value_types[kv->value.type], "value", value ? value : json_null()));
    }
    for (size_t i = 0; i < gptq_gguf_tensor_count(g); i++) {
        const gptq_gguf_tensor *t = gptq_gguf_tensor_at(g, i);
        json_t *ne = json_array();
        for (int d = 0; d < t->n_dims; d++)
            json_array_append_new(ne, json_integer(t->ne[d]));
        json_array_append_new(tensors, json_pack("{s:s, s:i, s:s, s:o, s:I, s:I, s:I}", "name", t->name, "type",
                                                 t->type, "type_name", gptq_ggml_type_name(t->type), "ne", ne,
                                                 "numel", (json_int_t)t->numel, "offset", (json_int_t)t->offset,
                                                 "bytes", (json_int_t)t->bytes));
    }
    json_t *root = json_pack("{s:i, s:i, s:o, s:o}", "version", (int)gptq_gguf_version(g), "alignment",
                             (int)gptq_gguf_alignment(g), "kv", kvs, "tensors", tensors);
    json_dumpf(root, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(root);
    gptq_gguf_close(g);
    return 0;
}

static int to_f32(const char *file, const char *out_path, char **names, int n_names)
{
    gptq_gguf *g;
    if (gptq_gguf_open(file, &g) != GPTQ_OK) {
        fprintf(stderr, "%s\n", gptq_errmsg());
        return 1;
    }
    FILE *out = fopen(out_path, "wb");
    int rc = out ? 0 : 1;
    if (!out)
        perror(out_path);
    for (int i = 0; i < n_names && rc == 0; i++) {
        const gptq_gguf_tensor *t = gptq_gguf_find_tensor(g, names[i]);
        float *values = t ? malloc((size_t)t->numel * sizeof *values) : NULL;
        if (!t) {
            fprintf(stderr, "%s: no tensor '%s'\n", file, names[i]);
            rc = 1;
        } else if (!values) {
            fprintf(stderr, "no memory for '%s'\n", names[i]);
            rc = 1;
        } else if (gptq_gguf_read_f32(g, t, values) != GPTQ_OK) {
            fprintf(stderr, "%s\n", gptq_errmsg());
            rc = 1;
        } else if (fwrite(values, sizeof *values, (size_t)t->numel, out) != (size_t)t->numel) {
            perror(out_path);
            rc = 1;
        }
        free(values);
    }
    if (out && fclose(out) != 0)
        rc = 1;
    gptq_gguf_close(g);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "types")) {
        for (int t = 0; t < GPTQ_GGML_TYPE_LIMIT; t++)
            if (gptq_ggml_block_elems(t))
                printf("%d %s %d %d %d\n", t, gptq_ggml_type_name(t), gptq_ggml_block_elems(t),
                       gptq_ggml_block_bytes(t), gptq_ggml_can_dequantize(t));
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "info"))
        return info(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "f32"))
        return to_f32(argv[2], argv[3], argv + 4, argc - 4);
    fprintf(stderr, "usage: gguf_cli types | info FILE | f32 FILE OUT NAME...\n");
    return 2;
}
