/* tests/test_gguf.c: the GGUF reader (model/gguf.c) on files built byte by
 * byte here (tests/ggufwriter.h): every metadata type, nested arrays, a
 * custom alignment, tensors of several types read raw and as float32;
 * hostile headers, each refused with GPTQ_ERR_FORMAT and a message naming
 * the field; a FIFO; a file truncated while open. The float32 values of
 * every quantized type are checked bit for bit against gguf-py by
 * tests/gguf_dequant.py; here they are checked on blocks simple enough to
 * work out by hand. */
#include "model/gguf.h"
#include "common/dtype.h"
#include "ggufwriter.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[4096];

static const char *tmp_path(const char *name)
{
    static char buf[4][4300];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void write_or_die(const gguf_buf *b, const char *path)
{
    if (gbuf_write(b, path) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

/* ---- the valid file ---------------------------------------------------------- */

static const struct {
    const char *key;
    gptq_gguf_type type;
    uint64_t bits; /* the value's bytes, little-endian, as the file holds them */
} scalars[] = {
    {"t.u8", GPTQ_GGUF_UINT8, 200},
    {"t.i8", GPTQ_GGUF_INT8, (uint8_t)-100},
    {"t.u16", GPTQ_GGUF_UINT16, 60000},
    {"t.i16", GPTQ_GGUF_INT16, (uint16_t)-30000},
    {"t.u32", GPTQ_GGUF_UINT32, 4000000000u},
    {"t.i32", GPTQ_GGUF_INT32, (uint32_t)-2000000000},
    {"t.u64", GPTQ_GGUF_UINT64, UINT64_MAX},
    {"t.i64", GPTQ_GGUF_INT64, (uint64_t)INT64_MIN},
    {"t.f32", GPTQ_GGUF_FLOAT32, 0x3dcccccd}, /* 0.1f */
    {"t.f64", GPTQ_GGUF_FLOAT64, 0x3fb999999999999aull}, /* 0.1 */
    {"t.true", GPTQ_GGUF_BOOL, 1},
    {"t.false", GPTQ_GGUF_BOOL, 0},
};

static int value_bytes(gptq_gguf_type t)
{
    switch (t) {
    case GPTQ_GGUF_UINT8: case GPTQ_GGUF_INT8: case GPTQ_GGUF_BOOL: return 1;
    case GPTQ_GGUF_UINT16: case GPTQ_GGUF_INT16: return 2;
    case GPTQ_GGUF_UINT32: case GPTQ_GGUF_INT32: case GPTQ_GGUF_FLOAT32: return 4;
    default: return 8;
    }
}

/* Arrays of each scalar type: three elements with these bit patterns. */
static const struct {
    const char *key;
    gptq_gguf_type elem;
    uint64_t bits[3];
} arrays[] = {
    {"a.u8", GPTQ_GGUF_UINT8, {0, 255, 7}},
    {"a.i8", GPTQ_GGUF_INT8, {0x80, 0x7f, 0xff}},
    {"a.u16", GPTQ_GGUF_UINT16, {65535, 1, 0}},
    {"a.i16", GPTQ_GGUF_INT16, {0x8000, 0x7fff, 0xffff}},
    {"a.u32", GPTQ_GGUF_UINT32, {1, 2, 0xffffffffu}},
    {"a.i32", GPTQ_GGUF_INT32, {0x80000000u, 5, 0xffffffffu}},
    {"a.f32", GPTQ_GGUF_FLOAT32, {0x3fc00000, 0xc0100000, 0x00000001}}, /* 1.5, -2.25, the smallest subnormal */
    {"a.bool", GPTQ_GGUF_BOOL, {1, 0, 1}},
    {"a.u64", GPTQ_GGUF_UINT64, {UINT64_MAX, 0, 1}},
    {"a.i64", GPTQ_GGUF_INT64, {(uint64_t)INT64_MIN, 1, UINT64_MAX}},
    {"a.f64", GPTQ_GGUF_FLOAT64, {0x7e37e43c8800759cull, 0, 0x8000000000000000ull}}, /* 1e300, 0, -0 */
};

static const char str_value[] = "h\xc3\xa9llo\x01world"; /* UTF-8 and a control byte */

/* Expected value of a scalar of `type` with these bits, as the reader widens it. */
static void check_scalar(const gptq_gguf_value *v, gptq_gguf_type type, uint64_t bits, const char *what)
{
    CHECK(v->type == type, "%s: type %d, want %d", what, v->type, type);
    switch (type) {
    case GPTQ_GGUF_UINT8: case GPTQ_GGUF_UINT16: case GPTQ_GGUF_UINT32: case GPTQ_GGUF_UINT64:
        CHECK(v->v.u == bits, "%s: %llu, want %llu", what, (unsigned long long)v->v.u, (unsigned long long)bits);
        break;
    case GPTQ_GGUF_INT8:
        CHECK(v->v.i == (int8_t)bits, "%s: %lld", what, (long long)v->v.i);
        break;
    case GPTQ_GGUF_INT16:
        CHECK(v->v.i == (int16_t)bits, "%s: %lld", what, (long long)v->v.i);
        break;
    case GPTQ_GGUF_INT32:
        CHECK(v->v.i == (int32_t)bits, "%s: %lld", what, (long long)v->v.i);
        break;
    case GPTQ_GGUF_INT64:
        CHECK(v->v.i == (int64_t)bits, "%s: %lld", what, (long long)v->v.i);
        break;
    case GPTQ_GGUF_FLOAT32: {
        float f;
        uint32_t b32 = (uint32_t)bits;
        memcpy(&f, &b32, 4);
        CHECK(v->v.f == (double)f, "%s: %.9g, want %.9g", what, v->v.f, (double)f);
        break;
    }
    case GPTQ_GGUF_FLOAT64: {
        double f;
        memcpy(&f, &bits, 8);
        CHECK(memcmp(&v->v.f, &f, 8) == 0, "%s: %.17g, want %.17g", what, v->v.f, f);
        break;
    }
    case GPTQ_GGUF_BOOL:
        CHECK(v->v.b == (int)bits, "%s: %d", what, v->v.b);
        break;
    default:
        CHECK(0, "%s: not a scalar type %d", what, type);
    }
}

/* Tensors of the valid file: alignment 64, listed out of data order. */
typedef struct tensor_spec {
    const char *name;
    uint32_t n_dims;
    int64_t ne[4];
    int type;
    uint64_t offset;
    uint64_t bytes;
} tensor_spec;

static const tensor_spec tensors[] = {
    {"tok.f32", 2, {4, 3, 1, 1}, GPTQ_GGML_F32, 0, 48},
    {"norm.f16", 1, {8, 1, 1, 1}, GPTQ_GGML_F16, 64, 16},
    {"q8", 2, {64, 2, 1, 1}, GPTQ_GGML_Q8_0, 384, 136},
    {"q4k", 1, {256, 1, 1, 1}, GPTQ_GGML_Q4_K, 128, 144},
    {"iq2", 1, {256, 1, 1, 1}, GPTQ_GGML_IQ2_XXS, 576, 66},
    {"bf16.4d", 4, {2, 1, 3, 2}, GPTQ_GGML_BF16, 704, 24},
};
enum { N_TENSORS = sizeof tensors / sizeof tensors[0], DATA_BYTES = 728 };

static const float f32_values[12] = {0, 1, -1, 0.5f, 3.25f, -1e-30f, 1e30f, 7, 8, 9, 10, 11};
static const uint16_t f16_values[8] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x3555};
static const uint16_t bf16_values[12] = {0x3f80, 0xc040, 0, 0x8000, 0x7f7f, 0x0001, 1, 2, 3, 4, 5, 6};

/* The data section of the valid file. */
static void fill_data(unsigned char *data)
{
    memset(data, 0xee, DATA_BYTES); /* padding: must never be read */
    memcpy(data + 0, f32_values, sizeof f32_values);
    memcpy(data + 64, f16_values, sizeof f16_values);
    /* Q8_0: 4 blocks, d = 0.5 (0x3800), qs = i*7 - 100 + block */
    for (int blk = 0; blk < 4; blk++) {
        unsigned char *x = data + 384 + 34 * blk;
        x[0] = 0x00;
        x[1] = 0x38;
        for (int i = 0; i < 32; i++)
            x[2 + i] = (unsigned char)(int8_t)(i * 7 - 100 + blk);
    }
    /* Q4_K: d = 1, dmin = 0.5; scales 1..8, mins 0..7 (see expected_q4k) */
    unsigned char *k = data + 128;
    k[0] = 0x00, k[1] = 0x3c, k[2] = 0x00, k[3] = 0x38;
    static const uint8_t scales[12] = {1, 2, 3, 4, 0, 1, 2, 3, 0x45, 0x56, 0x67, 0x78};
    memcpy(k + 4, scales, 12);
    for (int i = 0; i < 128; i++)
        k[16 + i] = (unsigned char)(i * 37 + 11);
    for (int i = 0; i < 66; i++)
        data[576 + i] = (unsigned char)i;
    memcpy(data + 704, bf16_values, sizeof bf16_values);
}

/* Q4_K by hand: sub-block s (32 elements) has scale s+1 and min s; its
 * quants are the low nibbles of qs[32*(s/2) ..] for even s, the high ones
 * for odd s; value (1 * sc) * q - (0.5 * min). */
static float expected_q4k(const unsigned char *data, int i)
{
    int s = i / 32, l = i % 32;
    uint8_t q = data[128 + 16 + 32 * (s / 2) + l];
    q = s % 2 ? q >> 4 : q & 0xf;
    return (float)(s + 1) * q - 0.5f * (float)s;
}

static void build_valid(gguf_buf *b, unsigned char *data)
{
    size_t n_kv = 1 + sizeof scalars / sizeof scalars[0] + 2 + 1 + sizeof arrays / sizeof arrays[0] + 4;
    gbuf_header(b, 3, N_TENSORS, n_kv);
    gbuf_key(b, "general.architecture", GPTQ_GGUF_STRING);
    gbuf_str(b, "llama");
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        gbuf_key(b, scalars[i].key, scalars[i].type);
        gbuf_put(b, &scalars[i].bits, (size_t)value_bytes(scalars[i].type));
    }
    gbuf_key(b, "t.str", GPTQ_GGUF_STRING);
    gbuf_str(b, str_value);
    gbuf_key(b, "t.empty", GPTQ_GGUF_STRING);
    gbuf_str(b, "");
    gbuf_key(b, "general.alignment", GPTQ_GGUF_UINT32);
    gbuf_u32(b, 64);
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        gbuf_key(b, arrays[i].key, GPTQ_GGUF_ARRAY);
        gbuf_array(b, arrays[i].elem, 3);
        for (int j = 0; j < 3; j++)
            gbuf_put(b, &arrays[i].bits[j], (size_t)value_bytes(arrays[i].elem));
    }
    gbuf_key(b, "a.str", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_STRING, 3);
    gbuf_str(b, "a");
    gbuf_str(b, "");
    gbuf_str(b, "ccc");
    gbuf_key(b, "a.empty", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_INT32, 0);
    gbuf_key(b, "a.nested", GPTQ_GGUF_ARRAY); /* [[1, 2], [3]] */
    gbuf_array(b, GPTQ_GGUF_ARRAY, 2);
    gbuf_array(b, GPTQ_GGUF_INT32, 2);
    gbuf_u32(b, 1);
    gbuf_u32(b, 2);
    gbuf_array(b, GPTQ_GGUF_INT32, 1);
    gbuf_u32(b, 3);
    gbuf_key(b, "a.deep", GPTQ_GGUF_ARRAY); /* [[[[[[[[42]]]]]]]]: eight levels, the most allowed */
    for (int d = 1; d < GPTQ_GGUF_MAX_DEPTH; d++)
        gbuf_array(b, GPTQ_GGUF_ARRAY, 1);
    gbuf_array(b, GPTQ_GGUF_UINT8, 1);
    gbuf_u8(b, 42);
    for (int i = 0; i < N_TENSORS; i++)
        gbuf_tensor(b, tensors[i].name, tensors[i].n_dims, tensors[i].ne, (uint32_t)tensors[i].type,
                    tensors[i].offset);
    gbuf_align(b, 64);
    fill_data(data);
    gbuf_put(b, data, DATA_BYTES);
}

static void check_valid_metadata(const gptq_gguf *g)
{
    CHECK(gptq_gguf_version(g) == 3, "version %u", gptq_gguf_version(g));
    CHECK(gptq_gguf_alignment(g) == 64, "alignment %u", gptq_gguf_alignment(g));
    size_t n_scalars = sizeof scalars / sizeof scalars[0], n_arrays = sizeof arrays / sizeof arrays[0];
    CHECK(gptq_gguf_kv_count(g) == 1 + n_scalars + 3 + n_arrays + 4, "kv count %zu", gptq_gguf_kv_count(g));
    CHECK(gptq_gguf_kv_at(g, gptq_gguf_kv_count(g)) == NULL, "kv_at past the end");
    for (size_t i = 0; i < gptq_gguf_kv_count(g); i++) {
        const gptq_gguf_kv *kv = gptq_gguf_kv_at(g, i);
        CHECK(gptq_gguf_find_kv(g, kv->key) == kv, "find_kv('%s') is not kv_at(%zu)", kv->key, i);
    }
    CHECK(!strcmp(gptq_gguf_kv_at(g, 0)->key, "general.architecture"), "first key %s", gptq_gguf_kv_at(g, 0)->key);
    CHECK(gptq_gguf_find_kv(g, "absent") == NULL && gptq_gguf_find_kv(g, "t.u") == NULL, "find_kv of an absent key");

    for (size_t i = 0; i < n_scalars; i++) {
        const gptq_gguf_kv *kv = gptq_gguf_find_kv(g, scalars[i].key);
        CHECK(kv && kv == gptq_gguf_kv_at(g, 1 + i), "%s: not found in place", scalars[i].key);
        if (kv)
            check_scalar(&kv->value, scalars[i].type, scalars[i].bits, scalars[i].key);
    }
    /* typed lookups */
    int64_t iv = 0;
    double fv = 0;
    int bv = -1;
    CHECK(gptq_gguf_get_int(g, "t.u8", &iv) && iv == 200, "get_int u8 %lld", (long long)iv);
    CHECK(gptq_gguf_get_int(g, "t.i16", &iv) && iv == -30000, "get_int i16 %lld", (long long)iv);
    CHECK(gptq_gguf_get_int(g, "t.u32", &iv) && iv == 4000000000ll, "get_int u32 %lld", (long long)iv);
    CHECK(gptq_gguf_get_int(g, "t.i64", &iv) && iv == INT64_MIN, "get_int i64 %lld", (long long)iv);
    CHECK(!gptq_gguf_get_int(g, "t.u64", &iv), "get_int of UINT64_MAX (out of int64's range) succeeded");
    CHECK(!gptq_gguf_get_int(g, "t.f32", &iv) && !gptq_gguf_get_int(g, "t.true", &iv) &&
              !gptq_gguf_get_int(g, "t.str", &iv) && !gptq_gguf_get_int(g, "absent", &iv),
          "get_int of a non-integer succeeded");
    CHECK(gptq_gguf_get_float(g, "t.f32", &fv) && fv == (double)0.1f, "get_float f32 %.17g", fv);
    CHECK(gptq_gguf_get_float(g, "t.f64", &fv) && fv == 0.1, "get_float f64 %.17g", fv);
    CHECK(!gptq_gguf_get_float(g, "t.u8", &fv), "get_float of an integer succeeded");
    CHECK(gptq_gguf_get_bool(g, "t.true", &bv) && bv == 1, "get_bool true %d", bv);
    CHECK(gptq_gguf_get_bool(g, "t.false", &bv) && bv == 0, "get_bool false %d", bv);
    CHECK(!gptq_gguf_get_bool(g, "t.u8", &bv), "get_bool of an integer succeeded");
    const char *s = NULL;
    size_t len = 0;
    CHECK(gptq_gguf_get_string(g, "t.str", &s, &len) && len == strlen(str_value) && !memcmp(s, str_value, len),
          "get_string t.str: %zu bytes", len);
    CHECK(gptq_gguf_get_string(g, "t.empty", &s, &len) && len == 0, "get_string t.empty: %zu bytes", len);
    CHECK(gptq_gguf_get_string(g, "general.architecture", &s, &len) && len == 5 && !memcmp(s, "llama", 5),
          "general.architecture");
    CHECK(!gptq_gguf_get_string(g, "t.u8", &s, &len), "get_string of an integer succeeded");
    CHECK(gptq_gguf_get_int(g, "general.alignment", &iv) && iv == 64, "general.alignment %lld", (long long)iv);

    /* arrays of each scalar type */
    for (size_t i = 0; i < n_arrays; i++) {
        const gptq_gguf_value *a = gptq_gguf_get_array(g, arrays[i].key, arrays[i].elem);
        CHECK(a && a->type == GPTQ_GGUF_ARRAY && a->v.arr.elem == arrays[i].elem && a->v.arr.n == 3,
              "%s: not an array of 3 %d", arrays[i].key, arrays[i].elem);
        CHECK(!gptq_gguf_get_array(g, arrays[i].key, arrays[i].elem == GPTQ_GGUF_STRING ? GPTQ_GGUF_INT32 : GPTQ_GGUF_STRING),
              "%s: get_array with the wrong element type succeeded", arrays[i].key);
        for (int j = 0; a && j < 3; j++) {
            char what[64];
            snprintf(what, sizeof what, "%s[%d]", arrays[i].key, j);
            check_scalar(&a->v.arr.items[j], arrays[i].elem, arrays[i].bits[j], what);
        }
    }
    const gptq_gguf_value *a = gptq_gguf_get_array(g, "a.str", GPTQ_GGUF_STRING);
    CHECK(a && a->v.arr.n == 3, "a.str");
    if (a && a->v.arr.n == 3) {
        const char *want[3] = {"a", "", "ccc"};
        for (int j = 0; j < 3; j++) {
            const gptq_gguf_value *v = &a->v.arr.items[j];
            CHECK(v->type == GPTQ_GGUF_STRING && v->v.str.len == strlen(want[j]) &&
                      !memcmp(v->v.str.ptr, want[j], v->v.str.len),
                  "a.str[%d]", j);
        }
    }
    a = gptq_gguf_get_array(g, "a.empty", GPTQ_GGUF_INT32);
    CHECK(a && a->v.arr.n == 0, "a.empty");
    a = gptq_gguf_get_array(g, "a.nested", GPTQ_GGUF_ARRAY);
    CHECK(a && a->v.arr.n == 2, "a.nested");
    if (a && a->v.arr.n == 2) {
        const gptq_gguf_value *x = &a->v.arr.items[0], *y = &a->v.arr.items[1];
        CHECK(x->type == GPTQ_GGUF_ARRAY && x->v.arr.elem == GPTQ_GGUF_INT32 && x->v.arr.n == 2 &&
                  x->v.arr.items[0].v.i == 1 && x->v.arr.items[1].v.i == 2,
              "a.nested[0] is not [1, 2]");
        CHECK(y->type == GPTQ_GGUF_ARRAY && y->v.arr.elem == GPTQ_GGUF_INT32 && y->v.arr.n == 1 &&
                  y->v.arr.items[0].type == GPTQ_GGUF_INT32 && y->v.arr.items[0].v.i == 3,
              "a.nested[1] is not [3]");
    }
    const gptq_gguf_kv *deep = gptq_gguf_find_kv(g, "a.deep");
    const gptq_gguf_value *v = deep ? &deep->value : NULL;
    for (int d = 1; v && d < GPTQ_GGUF_MAX_DEPTH; d++) {
        CHECK(v->type == GPTQ_GGUF_ARRAY && v->v.arr.elem == GPTQ_GGUF_ARRAY && v->v.arr.n == 1, "a.deep level %d", d);
        v = v->type == GPTQ_GGUF_ARRAY && v->v.arr.n == 1 ? &v->v.arr.items[0] : NULL;
    }
    CHECK(v && v->type == GPTQ_GGUF_ARRAY && v->v.arr.elem == GPTQ_GGUF_UINT8 && v->v.arr.n == 1 &&
              v->v.arr.items[0].v.u == 42,
          "a.deep's innermost array is not [42]");
}

static void check_valid_tensors(const gptq_gguf *g, const unsigned char *data)
{
    CHECK(gptq_gguf_tensor_count(g) == N_TENSORS, "tensor count %zu", gptq_gguf_tensor_count(g));
    CHECK(gptq_gguf_tensor_at(g, N_TENSORS) == NULL, "tensor_at past the end");
    CHECK(gptq_gguf_find_tensor(g, "absent") == NULL, "find_tensor of an absent name");
    for (int i = 0; i < N_TENSORS && i < (int)gptq_gguf_tensor_count(g); i++) {
        const tensor_spec *want = &tensors[i];
        const gptq_gguf_tensor *t = gptq_gguf_tensor_at(g, (size_t)i);
        CHECK(!strcmp(t->name, want->name), "tensor %d is '%s', want '%s'", i, t->name, want->name);
        CHECK(gptq_gguf_find_tensor(g, want->name) == t, "find_tensor('%s')", want->name);
        CHECK(t->type == want->type && t->n_dims == (int)want->n_dims, "%s: type %d n_dims %d", t->name, t->type,
              t->n_dims);
        int64_t numel = 1;
        for (int d = 0; d < 4; d++) {
            CHECK(t->ne[d] == want->ne[d], "%s: ne[%d] = %lld, want %lld", t->name, d, (long long)t->ne[d],
                  (long long)want->ne[d]);
            numel *= want->ne[d];
        }
        CHECK(t->numel == numel && t->offset == want->offset && t->bytes == want->bytes,
              "%s: numel %lld offset %llu bytes %llu, want %lld %llu %llu", t->name, (long long)t->numel,
              (unsigned long long)t->offset, (unsigned long long)t->bytes, (long long)numel,
              (unsigned long long)want->offset, (unsigned long long)want->bytes);
        unsigned char *raw = malloc(t->bytes);
        CHECK_OK(gptq_gguf_read(g, t, raw));
        CHECK(!memcmp(raw, data + want->offset, t->bytes), "%s: raw bytes differ from the file's", t->name);
        free(raw);
    }

    float out[256];
    const gptq_gguf_tensor *t = gptq_gguf_find_tensor(g, "tok.f32");
    CHECK_OK(gptq_gguf_read_f32(g, t, out));
    CHECK(!memcmp(out, f32_values, sizeof f32_values), "tok.f32 as float32 differs");
    t = gptq_gguf_find_tensor(g, "norm.f16");
    CHECK_OK(gptq_gguf_read_f32(g, t, out));
    for (int i = 0; i < 8; i++)
        CHECK(memcmp(&out[i], &(float){gptq_f16_to_f32(f16_values[i])}, 4) == 0, "norm.f16[%d] = %g", i, out[i]);
    CHECK(out[0] == 1 && out[1] == -2 && out[3] == 65504 && out[4] == 0x1p-24f && isinf(out[6]),
          "norm.f16: %g %g %g %g %g", out[0], out[1], out[3], out[4], out[6]);
    t = gptq_gguf_find_tensor(g, "q8");
    CHECK_OK(gptq_gguf_read_f32(g, t, out));
    for (int i = 0; i < 128; i++) {
        float want = (float)((i % 32) * 7 - 100 + i / 32) * 0.5f;
        CHECK(out[i] == want, "q8[%d] = %g, want %g", i, out[i], want);
    }
    t = gptq_gguf_find_tensor(g, "q4k");
    CHECK_OK(gptq_gguf_read_f32(g, t, out));
    for (int i = 0; i < 256; i++)
        CHECK(out[i] == expected_q4k(data, i), "q4k[%d] = %g, want %g", i, out[i], expected_q4k(data, i));
    t = gptq_gguf_find_tensor(g, "bf16.4d");
    CHECK_OK(gptq_gguf_read_f32(g, t, out));
    for (int i = 0; i < 12; i++) {
        uint32_t bits = (uint32_t)bf16_values[i] << 16, got;
        memcpy(&got, &out[i], 4);
        CHECK(got == bits, "bf16.4d[%d] = 0x%08x, want 0x%08x", i, got, bits);
    }
    /* a known type without a converter opens and reads raw, not as float32 */
    t = gptq_gguf_find_tensor(g, "iq2");
    CHECK(gptq_gguf_read_f32(g, t, out) == GPTQ_ERR_UNSUPPORTED && strstr(gptq_errmsg(), "'iq2'") &&
              strstr(gptq_errmsg(), "IQ2_XXS"),
          "iq2 read_f32: %s", gptq_errmsg());
}

static void test_valid(void)
{
    gguf_buf b = {0};
    unsigned char data[DATA_BYTES];
    build_valid(&b, data);
    const char *path = tmp_path("valid.gguf");
    write_or_die(&b, path);
    gptq_gguf *g = NULL;
    CHECK_OK(gptq_gguf_open(path, &g));
    if (g) {
        CHECK(!strcmp(gptq_gguf_name(g), path), "name %s", gptq_gguf_name(g));
        check_valid_metadata(g);
        check_valid_tensors(g, data);
        /* a tensor of another handle is refused, not read */
        gptq_gguf_tensor other = *gptq_gguf_tensor_at(g, 0);
        float out[12];
        CHECK(gptq_gguf_read(g, &other, out) == GPTQ_ERR_ARG, "read of a foreign tensor: %s", gptq_errmsg());
    }
    gptq_gguf_close(g);

    /* the same through a descriptor the caller keeps */
    int fd = open(path, O_RDONLY);
    g = NULL;
    CHECK_OK(gptq_gguf_open_fd(fd, "labelled", &g));
    if (g) {
        CHECK(!strcmp(gptq_gguf_name(g), "labelled"), "name %s", gptq_gguf_name(g));
        check_valid_tensors(g, data);
    }
    gptq_gguf_close(g);
    CHECK(fcntl(fd, F_GETFD) >= 0, "open_fd closed the caller's descriptor");
    close(fd);
    gptq_gguf_close(NULL);
    gbuf_free(&b);
    printf("valid v3 file: every metadata type, nested arrays, %d tensors checked\n", N_TENSORS);
}

/* Version 2, default alignment, a Q4_0 tensor. */
static void test_v2(void)
{
    gguf_buf b = {0};
    gbuf_header(&b, 2, 1, 1);
    gbuf_key(&b, "general.name", GPTQ_GGUF_STRING);
    gbuf_str(&b, "v2");
    gbuf_tensor(&b, "w", 2, (int64_t[]){32, 2}, GPTQ_GGML_Q4_0, 0);
    size_t data_at = gbuf_align(&b, 32);
    for (int blk = 0; blk < 2; blk++) {
        gbuf_u16(&b, blk ? 0xc000 : 0x4000); /* d = 2, -2 */
        for (int i = 0; i < 16; i++)
            gbuf_u8(&b, 0x9f);
    }
    const char *path = tmp_path("v2.gguf");
    write_or_die(&b, path);
    gptq_gguf *g = NULL;
    CHECK_OK(gptq_gguf_open(path, &g));
    if (g) {
        CHECK(gptq_gguf_version(g) == 2 && gptq_gguf_alignment(g) == 32, "version %u alignment %u",
              gptq_gguf_version(g), gptq_gguf_alignment(g));
        CHECK(data_at % 32 == 0, "data at %zu", data_at);
        float out[64];
        CHECK_OK(gptq_gguf_read_f32(g, gptq_gguf_tensor_at(g, 0), out));
        /* 0x9f: low nibble 15 - 8 = 7 (elements 0..15), high 9 - 8 = 1 (16..31) */
        for (int i = 0; i < 64; i++) {
            float want = (i % 32 < 16 ? 7.0f : 1.0f) * (i < 32 ? 2.0f : -2.0f);
            CHECK(out[i] == want, "w[%d] = %g, want %g", i, out[i], want);
        }
    }
    gptq_gguf_close(g);
    gbuf_free(&b);
}

/* A Q8_0 tensor bigger than read_f32's 4 MiB chunk: the chunks add up to
 * converting the whole raw tensor at once. */
static void test_big_tensor(void)
{
    enum { COLS = 32 * 1000, ROWS = 140 }; /* 140000 blocks, 4.76 MB */
    gguf_buf b = {0};
    gbuf_header(&b, 3, 1, 0);
    gbuf_tensor(&b, "big", 2, (int64_t[]){COLS, ROWS}, GPTQ_GGML_Q8_0, 0);
    gbuf_align(&b, 32);
    uint64_t seed = 5;
    size_t n_blocks = (size_t)COLS / 32 * ROWS;
    for (size_t i = 0; i < n_blocks; i++) {
        unsigned char blk[34];
        for (int j = 0; j < 34; j++)
            blk[j] = (unsigned char)test_rand_u64(&seed);
        blk[1] &= 0x3b; /* a finite scale */
        gbuf_put(&b, blk, 34);
    }
    const char *path = tmp_path("big.gguf");
    write_or_die(&b, path);
    gptq_gguf *g = NULL;
    CHECK_OK(gptq_gguf_open(path, &g));
    if (g) {
        const gptq_gguf_tensor *t = gptq_gguf_tensor_at(g, 0);
        unsigned char *raw = malloc(t->bytes);
        float *once = malloc((size_t)t->numel * 4), *chunked = malloc((size_t)t->numel * 4);
        CHECK_OK(gptq_gguf_read(g, t, raw));
        CHECK_OK(gptq_gguf_dequantize(t->type, raw, once, t->numel));
        CHECK_OK(gptq_gguf_read_f32(g, t, chunked));
        CHECK(!memcmp(once, chunked, (size_t)t->numel * 4), "chunked read_f32 differs from one dequantize");
        /* the last block, by hand */
        const unsigned char *last = raw + t->bytes - 34;
        float d = gptq_f16_to_f32((uint16_t)(last[0] | last[1] << 8));
        for (int j = 0; j < 32; j++)
            CHECK(chunked[t->numel - 32 + j] == (int8_t)last[2 + j] * d, "big: last block [%d]", j);
        free(raw);
        free(once);
        free(chunked);
    }
    gptq_gguf_close(g);
    gbuf_free(&b);
}

static void test_types(void)
{
    CHECK(gptq_ggml_block_elems(GPTQ_GGML_F32) == 1 && gptq_ggml_block_bytes(GPTQ_GGML_F32) == 4, "F32 block");
    CHECK(gptq_ggml_block_elems(GPTQ_GGML_Q4_0) == 32 && gptq_ggml_block_bytes(GPTQ_GGML_Q4_0) == 18, "Q4_0 block");
    CHECK(gptq_ggml_block_elems(GPTQ_GGML_Q4_K) == 256 && gptq_ggml_block_bytes(GPTQ_GGML_Q4_K) == 144, "Q4_K block");
    CHECK(gptq_ggml_block_elems(4) == 0 && gptq_ggml_block_bytes(99) == 0 && gptq_ggml_block_elems(-1) == 0,
          "unknown types have blocks");
    CHECK(!strcmp(gptq_ggml_type_name(GPTQ_GGML_Q6_K), "Q6_K") && !strcmp(gptq_ggml_type_name(GPTQ_GGML_BF16), "BF16"),
          "type names");
    CHECK(!strcmp(gptq_ggml_type_name(99), "type 99") && !strcmp(gptq_ggml_type_name(-3), "type -3"),
          "unknown type names: %s", gptq_ggml_type_name(99));
    int convertible = 0;
    for (int t = -1; t <= GPTQ_GGML_TYPE_LIMIT; t++)
        convertible += gptq_ggml_can_dequantize(t);
    CHECK(convertible == 13, "%d types convert to float32, want 13", convertible);
    CHECK(!gptq_ggml_can_dequantize(GPTQ_GGML_Q8_1) && !gptq_ggml_can_dequantize(GPTQ_GGML_IQ4_NL),
          "Q8_1 / IQ4_NL claim a converter");
    float out[32];
    unsigned char raw[34] = {0};
    CHECK(gptq_gguf_dequantize(GPTQ_GGML_Q8_0, raw, out, 31) == GPTQ_ERR_ARG, "31 Q8_0 elements accepted");
    CHECK(gptq_gguf_dequantize(GPTQ_GGML_Q8_0, raw, out, -32) == GPTQ_ERR_ARG, "-32 elements accepted");
    CHECK(gptq_gguf_dequantize(GPTQ_GGML_IQ2_XXS, raw, out, 256) == GPTQ_ERR_UNSUPPORTED, "IQ2_XXS converted");
    CHECK(gptq_gguf_dequantize(99, raw, out, 32) == GPTQ_ERR_UNSUPPORTED && strstr(gptq_errmsg(), "type 99"),
          "type 99: %s", gptq_errmsg());
    CHECK_OK(gptq_gguf_dequantize(GPTQ_GGML_Q8_0, raw, out, 0));
}

/* ---- hostile files ------------------------------------------------------------- */

static int n_hostile;

/* The file must be refused with GPTQ_ERR_FORMAT, the path and `want` in
 * the message. */
static void expect_format(const gguf_buf *b, const char *what, const char *want)
{
    const char *path = tmp_path("hostile.gguf");
    write_or_die(b, path);
    gptq_gguf *g = (gptq_gguf *)&n_hostile; /* must come back NULL */
    gptq_clear_error();
    gptq_status st = gptq_gguf_open(path, &g);
    n_hostile++;
    CHECK(st == GPTQ_ERR_FORMAT, "%s: status %s, want bad format (%s)", what, gptq_status_name(st), gptq_errmsg());
    CHECK(g == NULL, "%s: *out not NULL after failure", what);
    CHECK(strstr(gptq_errmsg(), path) && strstr(gptq_errmsg(), want), "%s: message lacks the path or '%s': %s", what,
          want, gptq_errmsg());
    if (st == GPTQ_OK)
        gptq_gguf_close(g);
}

/* A file of one F32 tensor `name` of ne {n}, at offset, with data_bytes of
 * data after the header; kvs written by the caller before (n_kv of them). */
static void one_tensor(gguf_buf *b, const char *name, int64_t n, uint64_t offset, size_t data_bytes)
{
    gbuf_tensor(b, name, 1, (int64_t[]){n}, GPTQ_GGML_F32, offset);
    size_t at = gbuf_align(b, 32);
    gbuf_zero_to(b, at + data_bytes);
}

/* Patch the u32/u64 at byte `at`. */
static void patch32(gguf_buf *b, size_t at, uint32_t v) { memcpy(b->bytes + at, &v, 4); }
static void patch64(gguf_buf *b, size_t at, uint64_t v) { memcpy(b->bytes + at, &v, 8); }

static void test_hostile(void)
{
    gguf_buf b = {0};

    /* the preamble */
    gbuf_header(&b, 3, 1, 0);
    one_tensor(&b, "w", 8, 0, 32);
    gguf_buf good = b; /* this one stays valid: the template of the next few */
    b = (gguf_buf){0};
    gbuf_put(&b, good.bytes, good.len);
    memcpy(b.bytes, "GGUX", 4);
    expect_format(&b, "bad magic", "magic");
    b.len = 0;
    expect_format(&b, "empty file", "magic");
    gbuf_put(&b, "GGU", 3);
    expect_format(&b, "3-byte file", "magic");
    b.len = 0;
    gbuf_put(&b, good.bytes, good.len);
    patch32(&b, 4, 1);
    expect_format(&b, "version 1", "version 1");
    patch32(&b, 4, 4);
    expect_format(&b, "version 4", "version 4");
    patch32(&b, 4, 0x03000000);
    expect_format(&b, "byte-swapped version", "big-endian");
    patch32(&b, 4, 3);
    patch64(&b, 8, UINT64_MAX);
    expect_format(&b, "tensor count 2^64-1", "tensor count");
    patch64(&b, 8, 1000);
    expect_format(&b, "tensor count past EOF", "tensor count 1000");
    patch64(&b, 8, 1);
    patch64(&b, 16, (uint64_t)1 << 62);
    expect_format(&b, "metadata count 2^62", "metadata count");
    patch64(&b, 16, 7);
    expect_format(&b, "metadata count past EOF", "metadata count 7");
    patch64(&b, 16, 0);
    b.len = good.len - 1;
    expect_format(&b, "tensor data cut short", "runs past the data section");
    gbuf_free(&b);
    gbuf_free(&good);
    /* cut inside the second entry's value type (the counts still fit) */
    gbuf_header(&b, 3, 0, 2);
    gbuf_key(&b, "general.name", GPTQ_GGUF_STRING);
    gbuf_str(&b, "a name long enough for two entries' minimum");
    gbuf_str(&b, "k");
    gbuf_u16(&b, 0);
    expect_format(&b, "header cut short", "metadata key 'k': value type (4 bytes at byte");
    gbuf_free(&b);

    /* metadata */
    struct {
        const char *what, *want;
        int kind;
    } meta[] = {
        {"string length past EOF", "string length 1000", 0},
        {"string length 2^64-1", "string length", 1},
        {"key length past EOF", "key length", 2},
        {"array count past EOF", "array count 1000", 3},
        {"array count 2^62 of uint64", "array count", 4},
        {"array count 2^61 of strings", "array count", 5},
        {"arrays nested 9 deep", "nested 9 deep", 6},
        {"bool value 2", "bool value", 7},
        {"value type 13", "value type 13", 8},
        {"array element type 13", "array element type 13", 9},
        {"key with a NUL", "NUL", 10},
        {"empty key", "empty", 11},
        {"key of 4097 bytes", "exceeds the limit", 12},
        {"duplicate key", "'dup' appears twice", 13},
        {"alignment 0", "general.alignment", 14},
        {"alignment 3", "general.alignment' is 3", 15},
        {"alignment 48", "general.alignment' is 48", 16},
        {"alignment as uint64", "general.alignment' is a uint64", 17},
        {"alignment as string", "general.alignment' is a string", 18},
        {"array count beyond the values limit", "values in all", 19},
    };
    for (size_t c = 0; c < sizeof meta / sizeof meta[0]; c++) {
        b = (gguf_buf){0};
        int n_kv = meta[c].kind == 13 ? 2 : 1;
        gbuf_header(&b, 3, 0, (uint64_t)n_kv);
        switch (meta[c].kind) {
        case 0:
            gbuf_key(&b, "s", GPTQ_GGUF_STRING);
            gbuf_u64(&b, 1000);
            gbuf_put(&b, "abc", 3);
            break;
        case 1:
            gbuf_key(&b, "s", GPTQ_GGUF_STRING);
            gbuf_u64(&b, UINT64_MAX);
            break;
        case 2:
            gbuf_u64(&b, 1u << 20);
            gbuf_put(&b, "key", 3);
            gbuf_zero_to(&b, b.len + 16);
            break;
        case 3:
            gbuf_key(&b, "a", GPTQ_GGUF_ARRAY);
            gbuf_array(&b, GPTQ_GGUF_UINT32, 1000);
            gbuf_u32(&b, 1);
            gbuf_u32(&b, 2);
            break;
        case 4:
            gbuf_key(&b, "a", GPTQ_GGUF_ARRAY);
            gbuf_array(&b, GPTQ_GGUF_UINT64, (uint64_t)1 << 62);
            break;
        case 5: /* each string takes at least its 8-byte length: 16 bytes hold 2 */
            gbuf_key(&b, "a", GPTQ_GGUF_ARRAY);
            gbuf_array(&b, GPTQ_GGUF_STRING, (uint64_t)1 << 61);
            gbuf_zero_to(&b, b.len + 16);
            break;
        case 6:
            gbuf_key(&b, "deep", GPTQ_GGUF_ARRAY);
            for (int d = 0; d < GPTQ_GGUF_MAX_DEPTH; d++)
                gbuf_array(&b, GPTQ_GGUF_ARRAY, 1);
            gbuf_array(&b, GPTQ_GGUF_UINT8, 1);
            gbuf_u8(&b, 1);
            break;
        case 7:
            gbuf_key(&b, "b", GPTQ_GGUF_BOOL);
            gbuf_u8(&b, 2);
            break;
        case 8:
            gbuf_key(&b, "x", 13);
            gbuf_u64(&b, 0);
            break;
        case 9:
            gbuf_key(&b, "a", GPTQ_GGUF_ARRAY);
            gbuf_array(&b, 13, 1);
            gbuf_u64(&b, 0);
            break;
        case 10:
            gbuf_strn(&b, "a\0b", 3);
            gbuf_u32(&b, GPTQ_GGUF_UINT8);
            gbuf_u8(&b, 0);
            break;
        case 11:
            gbuf_key(&b, "", GPTQ_GGUF_UINT8);
            gbuf_u8(&b, 0);
            gbuf_zero_to(&b, b.len + 8);
            break;
        case 12: {
            char *key = malloc(4098);
            memset(key, 'k', 4097);
            key[4097] = '\0';
            gbuf_key(&b, key, GPTQ_GGUF_UINT8);
            gbuf_u8(&b, 0);
            free(key);
            break;
        }
        case 13:
            gbuf_key(&b, "dup", GPTQ_GGUF_UINT8);
            gbuf_u8(&b, 0);
            gbuf_key(&b, "dup", GPTQ_GGUF_STRING);
            gbuf_str(&b, "x");
            break;
        case 14: case 15: case 16:
            gbuf_key(&b, "general.alignment", GPTQ_GGUF_UINT32);
            gbuf_u32(&b, meta[c].kind == 14 ? 0 : meta[c].kind == 15 ? 3 : 48);
            break;
        case 17:
            gbuf_key(&b, "general.alignment", GPTQ_GGUF_UINT64);
            gbuf_u64(&b, 64);
            break;
        case 18:
            gbuf_key(&b, "general.alignment", GPTQ_GGUF_STRING);
            gbuf_str(&b, "64");
            break;
        case 19: /* 2^24 + 1 bools: the file holds them, the limit does not */
            gbuf_key(&b, "a", GPTQ_GGUF_ARRAY);
            gbuf_array(&b, GPTQ_GGUF_BOOL, GPTQ_GGUF_MAX_VALUES + 1ull);
            gbuf_zero_to(&b, b.len + GPTQ_GGUF_MAX_VALUES + 1);
            break;
        }
        expect_format(&b, meta[c].what, meta[c].want);
        gbuf_free(&b);
    }

    /* tensor infos */
    struct {
        const char *what, *want;
        const char *name;
        uint32_t n_dims;
        int64_t ne[5];
        uint32_t type;
        uint64_t offset;
        size_t data_bytes;
    } infos[] = {
        {"unknown type 99", "ggml type 99", "w", 1, {32}, 99, 0, 4096},
        {"removed type 4 (Q4_2)", "ggml type 4", "w", 1, {32}, 4, 0, 4096},
        {"type 2^32-1", "ggml type 4294967295", "w", 1, {32}, UINT32_MAX, 0, 4096},
        {"ne[0] not a block multiple", "ne[0] = 48 is not a multiple of Q4_0's block of 32", "w", 1, {48}, GPTQ_GGML_Q4_0, 0, 4096},
        {"ne[0] not a K block multiple", "Q6_K's block of 256", "w", 2, {128, 2}, GPTQ_GGML_Q6_K, 0, 4096},
        {"numel overflow", "overflows int64", "w", 2, {(int64_t)1 << 32, (int64_t)1 << 32}, GPTQ_GGML_F32, 0, 64},
        {"numel overflow in 4 dims", "overflows int64 at ne[3]", "w", 4, {1 << 20, 1 << 20, 1 << 20, 1 << 20}, GPTQ_GGML_I8, 0, 64},
        {"byte count overflow", "byte count", "w", 1, {INT64_MAX - 31}, GPTQ_GGML_Q8_0, 0, 64},
        {"byte count overflow of F64", "byte count", "w", 1, {(int64_t)1 << 61}, GPTQ_GGML_F64, 0, 64},
        {"ne 0", "ne[1] is 0", "w", 2, {8, 0}, GPTQ_GGML_F32, 0, 64},
        {"ne 2^63", "ne[0] is 9223372036854775808", "w", 1, {INT64_MIN}, GPTQ_GGML_I8, 0, 64},
        {"n_dims 0", "n_dims is 0", "w", 0, {0}, GPTQ_GGML_F32, 0, 64},
        {"n_dims 5", "n_dims is 5", "w", 5, {1, 1, 1, 1, 1}, GPTQ_GGML_F32, 0, 64},
        {"offset unaligned", "offset 4 is not a multiple of the alignment 32", "w", 1, {8}, GPTQ_GGML_F32, 4, 64},
        {"offset past the end", "runs past the data section", "w", 1, {8}, GPTQ_GGML_F32, 64, 32},
        {"end past the end", "runs past the data section", "w", 1, {8}, GPTQ_GGML_F32, 0, 31},
        {"offset near 2^64", "runs past the data section", "w", 1, {8}, GPTQ_GGML_F32, UINT64_MAX - 31, 64},
        {"empty tensor name", "tensor name at byte", "", 1, {8}, GPTQ_GGML_F32, 0, 64},
        {"tensor name with a NUL", "NUL", "w\0x", 1, {8}, GPTQ_GGML_F32, 0, 64},
    };
    for (size_t c = 0; c < sizeof infos / sizeof infos[0]; c++) {
        b = (gguf_buf){0};
        gbuf_header(&b, 3, 1, 0);
        if (c == sizeof infos / sizeof infos[0] - 1) { /* "w\0x": the length covers the NUL */
            gbuf_strn(&b, "w\0x", 3);
            gbuf_field32(&b, 1);
            gbuf_field64(&b, 8);
            gbuf_field32(&b, GPTQ_GGML_F32);
            gbuf_field64(&b, 0);
        } else {
            gbuf_tensor(&b, infos[c].name, infos[c].n_dims, infos[c].ne, infos[c].type, infos[c].offset);
        }
        size_t at = gbuf_align(&b, 32);
        gbuf_zero_to(&b, at + infos[c].data_bytes);
        expect_format(&b, infos[c].what, infos[c].want);
        gbuf_free(&b);
    }
    /* a name of 4097 bytes */
    b = (gguf_buf){0};
    gbuf_header(&b, 3, 1, 0);
    char *name = malloc(4098);
    memset(name, 'n', 4097);
    name[4097] = '\0';
    one_tensor(&b, name, 8, 0, 32);
    expect_format(&b, "tensor name of 4097 bytes", "exceeds the limit of 4096");
    /* 4096 bytes is fine, and the message cuts names to 96 bytes */
    gbuf_free(&b);
    gbuf_header(&b, 3, 2, 0);
    name[4096] = '\0';
    gbuf_tensor(&b, name, 1, (int64_t[]){8}, GPTQ_GGML_F32, 0);
    gbuf_tensor(&b, name, 1, (int64_t[]){8}, GPTQ_GGML_F32, 32);
    gbuf_zero_to(&b, gbuf_align(&b, 32) + 64);
    expect_format(&b, "duplicate 4096-byte names", "appears twice");
    CHECK(!strstr(gptq_errmsg(), name + 4096 - 97), "a name was quoted past 96 bytes: %zu-byte message",
          strlen(gptq_errmsg()));
    free(name);
    gbuf_free(&b);

    /* two tensors */
    struct {
        const char *what, *want;
        const char *a, *b;
        int64_t na, nb;
        uint64_t oa, ob;
    } pairs[] = {
        {"overlapping tensors", "overlaps", "a", "b", 16, 16, 0, 32},
        {"identical spans", "overlaps", "a", "b", 8, 8, 64, 64},
        {"one inside the other", "overlaps", "a", "b", 64, 8, 0, 96},
        {"overlap listed backwards", "overlaps", "a", "b", 16, 16, 96, 64},
        {"duplicate tensor names", "tensor 'a' appears twice", "a", "a", 8, 8, 0, 32},
    };
    for (size_t c = 0; c < sizeof pairs / sizeof pairs[0]; c++) {
        b = (gguf_buf){0};
        gbuf_header(&b, 3, 2, 0);
        gbuf_tensor(&b, pairs[c].a, 1, &pairs[c].na, GPTQ_GGML_F32, pairs[c].oa);
        gbuf_tensor(&b, pairs[c].b, 1, &pairs[c].nb, GPTQ_GGML_F32, pairs[c].ob);
        gbuf_zero_to(&b, gbuf_align(&b, 32) + 512);
        expect_format(&b, pairs[c].what, pairs[c].want);
        gbuf_free(&b);
    }
    /* adjacent tensors and a custom alignment's offsets are fine */
    gbuf_header(&b, 3, 2, 1);
    gbuf_key(&b, "general.alignment", GPTQ_GGUF_UINT32);
    gbuf_u32(&b, 128);
    gbuf_tensor(&b, "a", 1, (int64_t[]){32}, GPTQ_GGML_F32, 0);
    gbuf_tensor(&b, "b", 1, (int64_t[]){8}, GPTQ_GGML_F32, 128);
    gbuf_zero_to(&b, gbuf_align(&b, 128) + 160);
    const char *path = tmp_path("adjacent.gguf");
    write_or_die(&b, path);
    gptq_gguf *g = NULL;
    CHECK_OK(gptq_gguf_open(path, &g));
    gptq_gguf_close(g);
    gbuf_free(&b);
    printf("hostile files: %d, each refused with a message naming the field\n", n_hostile);
}

/* ---- not regular files, files that change ----------------------------------------- */

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: opening a FIFO hung\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(1);
}

static void test_special_files(void)
{
    gptq_gguf *g = NULL;
    const char *fifo = tmp_path("fifo.gguf");
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s: %s", fifo, strerror(errno));
    signal(SIGALRM, on_alarm);
    alarm(20);
    gptq_status st = gptq_gguf_open(fifo, &g);
    alarm(0);
    CHECK(st == GPTQ_ERR_IO && g == NULL && strstr(gptq_errmsg(), "not a regular file"), "FIFO: %s: %s",
          gptq_status_name(st), gptq_errmsg());
    unlink(fifo);
    st = gptq_gguf_open(tmpdir, &g);
    CHECK(st == GPTQ_ERR_IO && strstr(gptq_errmsg(), "not a regular file"), "directory: %s: %s",
          gptq_status_name(st), gptq_errmsg());
    st = gptq_gguf_open(tmp_path("absent.gguf"), &g);
    CHECK(st == GPTQ_ERR_NOTFOUND && strstr(gptq_errmsg(), "absent.gguf"), "absent file: %s: %s",
          gptq_status_name(st), gptq_errmsg());
    CHECK(gptq_gguf_open(NULL, &g) == GPTQ_ERR_ARG && gptq_gguf_open_fd(-1, "x", &g) == GPTQ_ERR_ARG,
          "NULL path / bad descriptor accepted");

    /* truncated after open: reads of what is gone fail with GPTQ_ERR_IO */
    gguf_buf b = {0};
    unsigned char data[DATA_BYTES];
    build_valid(&b, data);
    const char *path = tmp_path("shrinks.gguf");
    write_or_die(&b, path);
    CHECK_OK(gptq_gguf_open(path, &g));
    if (g) {
        CHECK(truncate(path, (off_t)(b.len - 10)) == 0, "truncate: %s", strerror(errno));
        const gptq_gguf_tensor *last = gptq_gguf_find_tensor(g, "bf16.4d"), *first = gptq_gguf_find_tensor(g, "tok.f32");
        unsigned char buf[64];
        float out[12];
        st = gptq_gguf_read(g, last, buf);
        CHECK(st == GPTQ_ERR_IO && strstr(gptq_errmsg(), "'bf16.4d'") && strstr(gptq_errmsg(), "truncated"),
              "read after truncation: %s: %s", gptq_status_name(st), gptq_errmsg());
        st = gptq_gguf_read_f32(g, last, out);
        CHECK(st == GPTQ_ERR_IO, "read_f32 after truncation: %s: %s", gptq_status_name(st), gptq_errmsg());
        CHECK_OK(gptq_gguf_read(g, first, buf)); /* still there */
        CHECK(truncate(path, 0) == 0, "truncate: %s", strerror(errno));
        st = gptq_gguf_read_f32(g, first, out);
        CHECK(st == GPTQ_ERR_IO, "read_f32 of an emptied file: %s: %s", gptq_status_name(st), gptq_errmsg());
    }
    gptq_gguf_close(g);
    unlink(path);
    gbuf_free(&b);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_gguf.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    test_types();
    test_valid();
    test_v2();
    test_big_tensor();
    test_hostile();
    test_special_files();
    const char *names[] = {"valid.gguf", "v2.gguf", "big.gguf", "hostile.gguf", "adjacent.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(tmp_path(names[i]));
    rmdir(tmpdir);
    return test_result();
}
