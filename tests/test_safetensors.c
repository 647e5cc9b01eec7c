/* tests/test_safetensors.c: the safetensors reader on the fixture models
 * (names, shapes and dtypes against config.json's facts; the F16 and BF16
 * copies of the model agree within BF16 rounding), conversion against a
 * hand-made file whose bytes and values are written out below, and the
 * writer: round trip of every dtype, the reference layout (gapless, aligned)
 * and atomic replacement when a write fails. */
#include "model/safetensors.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[4096];

static void tmp_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static unsigned char *read_file(const char *path, size_t *bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *bytes = (size_t)n;
    return buf;
}

static void write_bytes(const char *path, const void *buf, size_t bytes)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, bytes, f) != bytes) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        test_failures++;
    }
    if (f)
        fclose(f);
}

/* ---- the fixture models --------------------------------------------------- */

/* config.json: hidden 256, intermediate 768, 8 heads of 32, 2 kv heads,
 * 4 layers, vocab 4096, untied lm_head. */
static void check_llama_tensors(const gptq_safetensors *st, gptq_dtype dtype)
{
    const int64_t hidden = 256, inter = 768, kv = 2 * 32, vocab = 4096;
    struct {
        const char *name;
        int ndim;
        int64_t rows, cols;
    } expect[] = {
        {"model.embed_tokens.weight", 2, vocab, hidden},
        {"lm_head.weight", 2, vocab, hidden},
        {"model.norm.weight", 1, hidden, 0},
    };
    CHECK(gptq_safetensors_count(st) == 3 + 4 * 9, "count %zu, expected 39 (3 + 4 layers x 9)",
          gptq_safetensors_count(st));
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        const gptq_st_tensor *t = gptq_safetensors_find(st, expect[i].name);
        CHECK(t != NULL, "%s missing", expect[i].name);
        if (!t)
            continue;
        CHECK(t->dtype == dtype && t->ndim == expect[i].ndim && t->shape[0] == expect[i].rows &&
                  (expect[i].ndim == 1 || t->shape[1] == expect[i].cols),
              "%s: got %s ndim %d [%lld, %lld]", expect[i].name, gptq_dtype_name(t->dtype), t->ndim,
              (long long)t->shape[0], (long long)t->shape[1]);
    }
    const struct {
        const char *suffix;
        int64_t rows, cols;
    } layer[] = {
        {"self_attn.q_proj.weight", hidden, hidden}, {"self_attn.k_proj.weight", kv, hidden},
        {"self_attn.v_proj.weight", kv, hidden},     {"self_attn.o_proj.weight", hidden, hidden},
        {"mlp.gate_proj.weight", inter, hidden},     {"mlp.up_proj.weight", inter, hidden},
        {"mlp.down_proj.weight", hidden, inter},     {"input_layernorm.weight", hidden, 0},
        {"post_attention_layernorm.weight", hidden, 0},
    };
    for (int l = 0; l < 4; l++) {
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, layer[i].suffix);
            const gptq_st_tensor *t = gptq_safetensors_find(st, name);
            CHECK(t != NULL, "%s missing", name);
            if (!t)
                continue;
            int ndim = layer[i].cols ? 2 : 1;
            CHECK(t->dtype == dtype && t->ndim == ndim && t->shape[0] == layer[i].rows &&
                      (ndim == 1 || t->shape[1] == layer[i].cols) &&
                      t->numel == layer[i].rows * (ndim == 2 ? layer[i].cols : 1) &&
                      t->bytes == (size_t)t->numel * 2,
                  "%s: got %s ndim %d [%lld, %lld] numel %lld bytes %zu", name, gptq_dtype_name(t->dtype),
                  t->ndim, (long long)t->shape[0], (long long)t->shape[1], (long long)t->numel, t->bytes);
        }
    }
    CHECK(gptq_safetensors_find(st, "model.layers.4.mlp.up_proj.weight") == NULL, "a 5th layer?");
    CHECK(gptq_safetensors_find(st, "model.embed_tokens") == NULL, "prefix matched a name");
    CHECK(gptq_safetensors_at(st, gptq_safetensors_count(st)) == NULL, "at(count) not NULL");

    /* file order: ascending data pointers, tensors back to back (HF layout) */
    for (size_t i = 1; i < gptq_safetensors_count(st); i++) {
        const gptq_st_tensor *a = gptq_safetensors_at(st, i - 1), *b = gptq_safetensors_at(st, i);
        CHECK((const char *)a->data + a->bytes == (const char *)b->data, "%s does not end where %s begins",
              a->name, b->name);
        CHECK(gptq_safetensors_find(st, b->name) == b, "find(%s) is not at(%zu)", b->name, i);
    }
    const char *format = gptq_safetensors_metadata(st, "format");
    CHECK(format && !strcmp(format, "pt"), "metadata format = %s, expected pt", format ? format : "NULL");
    CHECK(gptq_safetensors_metadata(st, "absent") == NULL, "absent metadata key found");
}

/* The fixtures' data pointers must be the file's bytes at 8 + N + begin:
 * compared against an fread of the same file, the one independent view. */
static void check_data_matches_file(const gptq_safetensors *st)
{
    size_t bytes;
    unsigned char *file = read_file(gptq_safetensors_path(st), &bytes);
    CHECK(file != NULL, "cannot read %s", gptq_safetensors_path(st));
    if (!file)
        return;
    uint64_t header = 0;
    for (int i = 0; i < 8; i++)
        header |= (uint64_t)file[i] << (8 * i);
    const gptq_st_tensor *first = gptq_safetensors_at(st, 0);
    const gptq_st_tensor *last = gptq_safetensors_at(st, gptq_safetensors_count(st) - 1);
    CHECK(memcmp(first->data, file + 8 + header, first->bytes) == 0, "first tensor bytes differ from the file");
    CHECK(8 + header + ((const char *)last->data - (const char *)first->data) + last->bytes == bytes,
          "last tensor does not end at the end of the file");
    CHECK(memcmp(last->data, file + bytes - last->bytes, last->bytes) == 0, "last tensor bytes differ");
    free(file);
}

static void test_fixture_models(void)
{
    const char *f16_path = fixture_path("tiny-llama/model.safetensors");
    const char *bf16_path = fixture_path("tiny-llama-bf16/model.safetensors");
    gptq_safetensors *f16 = NULL, *bf16 = NULL;
    CHECK_OK(gptq_safetensors_open(f16_path, &f16));
    CHECK_OK(gptq_safetensors_open(bf16_path, &bf16));
    if (!f16 || !bf16)
        goto out;
    CHECK(!strcmp(gptq_safetensors_path(f16), f16_path), "path %s", gptq_safetensors_path(f16));
    check_llama_tensors(f16, GPTQ_DT_F16);
    check_llama_tensors(bf16, GPTQ_DT_BF16);
    check_data_matches_file(f16);
    check_data_matches_file(bf16);

    /* The two files hold the same weights: after conversion they differ by
     * at most BF16's rounding (half an ulp of an 8-bit significand: up to
     * 2^-8 relative) plus F16's (2^-11 relative, or 2^-25 absolute in F16's
     * subnormal range). */
    for (size_t i = 0; i < gptq_safetensors_count(f16); i++) {
        const gptq_st_tensor *a = gptq_safetensors_at(f16, i);
        const gptq_st_tensor *b = gptq_safetensors_find(bf16, a->name);
        CHECK(b && b->numel == a->numel, "%s: missing or differently sized in the BF16 file", a->name);
        if (!b || b->numel != a->numel)
            continue;
        float *x = malloc((size_t)a->numel * sizeof *x), *y = malloc((size_t)a->numel * sizeof *y);
        CHECK_OK(gptq_st_tensor_to_f32(a, x, (size_t)a->numel));
        CHECK_OK(gptq_st_tensor_to_f32(b, y, (size_t)b->numel));
        int64_t bad = 0, worst = -1;
        double worst_excess = 0;
        for (int64_t k = 0; k < a->numel; k++) {
            double tol = (0x1p-8 + 0x1p-11) * fabs((double)x[k]) + 0x1p-25;
            double excess = fabs((double)x[k] - (double)y[k]) - tol;
            if (excess > 0) {
                bad++;
                if (excess > worst_excess)
                    worst_excess = excess, worst = k;
            }
        }
        CHECK(bad == 0, "%s: %lld elements differ beyond bf16 rounding, worst [%lld] f16 %g bf16 %g", a->name,
              (long long)bad, (long long)worst, worst >= 0 ? x[worst] : 0.0, worst >= 0 ? y[worst] : 0.0);
        free(x);
        free(y);
    }

    /* to_f32 refuses a wrong element count */
    const gptq_st_tensor *norm = gptq_safetensors_find(f16, "model.norm.weight");
    float buf[256];
    CHECK(norm && gptq_st_tensor_to_f32(norm, buf, 255) == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "256"),
          "to_f32 with n=255: %s", gptq_errmsg());
out:
    gptq_safetensors_close(f16);
    gptq_safetensors_close(bf16);
}

/* ---- a hand-made file with known bytes ------------------------------------ */

static void test_known_bytes(void)
{
    /* header: 8-byte aligned by construction is not required by the format;
     * this one is deliberately not, so F32 data sits at an odd address. */
    static const char header[] =
        "{\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[8,14]},"
        "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[14,22]},"
        "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[22,26]},"
        "\"u\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[26,28]},"
        "\"__metadata__\":{\"k\":\"v\"}}";
    static const unsigned char data[28] = {
        0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, /* F16 1, -2, 65504, 2^-24 */
        0x80, 0x3f, 0x49, 0x40, 0x80, 0xff,             /* BF16 1, 3.140625, -inf */
        0x00, 0x00, 0x20, 0x3e, 0x00, 0x00, 0x80, 0xc2, /* F32 0.15625, -64 */
        0xf9, 0xff, 0xff, 0xff,                         /* I32 -7 */
        0x01, 0x02,                                     /* U8 */
    };
    const float expect[] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 1.0f, 3.140625f, -INFINITY, 0.15625f, -64.0f, -7.0f};
    size_t hlen = sizeof header - 1;
    unsigned char file[8 + sizeof header + sizeof data];
    for (int i = 0; i < 8; i++)
        file[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(file + 8, header, hlen);
    memcpy(file + 8 + hlen, data, sizeof data);
    char path[4200];
    tmp_path(path, sizeof path, "known.safetensors");
    write_bytes(path, file, 8 + hlen + sizeof data);

    gptq_safetensors *st = NULL;
    CHECK_OK(gptq_safetensors_open(path, &st));
    if (!st)
        return;
    CHECK(gptq_safetensors_count(st) == 5, "count %zu", gptq_safetensors_count(st));
    const char *order[] = {"h", "b", "f", "i", "u"};
    for (int i = 0; i < 5; i++)
        CHECK(gptq_safetensors_at(st, i) && !strcmp(gptq_safetensors_at(st, i)->name, order[i]),
              "at(%d) is %s, expected %s", i, gptq_safetensors_at(st, i) ? gptq_safetensors_at(st, i)->name : "NULL",
              order[i]);
    float got[10];
    const char *names[] = {"h", "b", "f", "i"};
    int counts[] = {4, 3, 2, 1}, k = 0;
    for (int i = 0; i < 4; i++) {
        const gptq_st_tensor *t = gptq_safetensors_find(st, names[i]);
        CHECK(t != NULL, "%s missing", names[i]);
        if (t)
            CHECK_OK(gptq_st_tensor_to_f32(t, got + k, (size_t)counts[i]));
        k += counts[i];
    }
    for (int i = 0; i < 10; i++)
        CHECK(got[i] == expect[i], "value %d: expected %g, got %g", i, expect[i], got[i]);
    const gptq_st_tensor *u = gptq_safetensors_find(st, "u");
    CHECK(u && u->bytes == 2 && ((const unsigned char *)u->data)[1] == 2, "U8 tensor bytes");
    float f2[2];
    CHECK(u && gptq_st_tensor_to_f32(u, f2, 2) == GPTQ_ERR_UNSUPPORTED && strstr(gptq_errmsg(), "U8"),
          "U8 to f32 should be unsupported: %s", gptq_errmsg());
    const char *v = gptq_safetensors_metadata(st, "k");
    CHECK(v && !strcmp(v, "v"), "metadata k = %s", v ? v : "NULL");
    gptq_safetensors_close(st);

    /* the same file cut short by one byte: the message names file, tensor, sizes */
    write_bytes(path, file, 8 + hlen + sizeof data - 1);
    CHECK(gptq_safetensors_open(path, &st) == GPTQ_ERR_FORMAT && st == NULL, "truncated file opened");
    char want[4400];
    snprintf(want, sizeof want, "%s: tensor 'u' ends at byte 28, data section has 27 bytes", path);
    CHECK(!strcmp(gptq_errmsg(), want), "message\n  got:      %s\n  expected: %s", gptq_errmsg(), want);

    tmp_path(path, sizeof path, "does-not-exist.safetensors");
    CHECK(gptq_safetensors_open(path, &st) == GPTQ_ERR_NOTFOUND && strstr(gptq_errmsg(), path),
          "missing file: %s", gptq_errmsg());
}

/* ---- writer --------------------------------------------------------------- */

typedef struct {
    const char *name;
    gptq_dtype dtype;
    int ndim;
    int64_t shape[3];
} spec;

static const spec round_trip[] = {
    {"w.f32", GPTQ_DT_F32, 2, {3, 5}},  {"w.f16", GPTQ_DT_F16, 1, {7}},  {"w.bf16", GPTQ_DT_BF16, 2, {2, 3}},
    {"q.i32", GPTQ_DT_I32, 1, {5}},     {"q.i64", GPTQ_DT_I64, 2, {2, 2}}, {"q.i16", GPTQ_DT_I16, 1, {3}},
    {"q.i8", GPTQ_DT_I8, 3, {1, 3, 1}}, {"empty.u8", GPTQ_DT_U8, 1, {0}},  {"scalar.bool", GPTQ_DT_BOOL, 0, {0}},
    {"d.f64", GPTQ_DT_F64, 2, {1, 3}},  {"a.u8", GPTQ_DT_U8, 1, {5}},
};
enum { N_ROUND_TRIP = sizeof round_trip / sizeof round_trip[0] };

static int64_t spec_numel(const spec *s)
{
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++)
        n *= s->shape[d];
    return n;
}

static gptq_status write_specs(const char *path, unsigned char *bufs[N_ROUND_TRIP], uint64_t seed)
{
    gptq_st_writer *w = NULL;
    gptq_status status = gptq_st_writer_create(&w);
    for (int i = 0; status == GPTQ_OK && i < N_ROUND_TRIP; i++) {
        size_t bytes = (size_t)spec_numel(&round_trip[i]) * gptq_dtype_size(round_trip[i].dtype);
        bufs[i] = malloc(bytes ? bytes : 1);
        for (size_t k = 0; k < bytes; k++)
            bufs[i][k] = (unsigned char)test_rand_u64(&seed);
        status = gptq_st_writer_add(w, round_trip[i].name, round_trip[i].dtype, round_trip[i].ndim,
                                    round_trip[i].shape, bufs[i]);
    }
    if (status == GPTQ_OK)
        status = gptq_st_writer_set_metadata(w, "format", "old");
    if (status == GPTQ_OK)
        status = gptq_st_writer_set_metadata(w, "format", "pt"); /* replaces */
    if (status == GPTQ_OK)
        status = gptq_st_writer_set_metadata(w, "note", "ünïcode \"quoted\"");
    if (status == GPTQ_OK)
        status = gptq_st_writer_write(w, path);
    gptq_st_writer_destroy(w);
    return status;
}

static void check_specs(const char *path, unsigned char *bufs[N_ROUND_TRIP])
{
    gptq_safetensors *st = NULL;
    CHECK_OK(gptq_safetensors_open(path, &st));
    if (!st)
        return;
    CHECK(gptq_safetensors_count(st) == N_ROUND_TRIP, "count %zu", gptq_safetensors_count(st));
    for (int i = 0; i < N_ROUND_TRIP; i++) {
        const spec *s = &round_trip[i];
        const gptq_st_tensor *t = gptq_safetensors_find(st, s->name);
        CHECK(t != NULL, "%s missing after round trip", s->name);
        if (!t)
            continue;
        int same_shape = t->ndim == s->ndim;
        for (int d = 0; same_shape && d < s->ndim; d++)
            same_shape = t->shape[d] == s->shape[d];
        size_t bytes = (size_t)spec_numel(s) * gptq_dtype_size(s->dtype);
        CHECK(t->dtype == s->dtype && same_shape && t->numel == spec_numel(s) && t->bytes == bytes,
              "%s: dtype %s ndim %d numel %lld bytes %zu", s->name, gptq_dtype_name(t->dtype), t->ndim,
              (long long)t->numel, t->bytes);
        CHECK(bytes == 0 || memcmp(t->data, bufs[i], bytes) == 0, "%s: bytes differ", s->name);
        CHECK((uintptr_t)t->data % gptq_dtype_size(s->dtype) == 0, "%s: data not aligned to %zu", s->name,
              gptq_dtype_size(s->dtype));
    }
    const char *format = gptq_safetensors_metadata(st, "format"), *note = gptq_safetensors_metadata(st, "note");
    CHECK(format && !strcmp(format, "pt"), "format = %s", format ? format : "NULL");
    CHECK(note && !strcmp(note, "ünïcode \"quoted\""), "note = %s", note ? note : "NULL");
    /* the reference layout: data section 8-aligned, tensors back to back
     * from offset 0 to the end of the file, largest element size first */
    size_t file_bytes;
    unsigned char *file = read_file(path, &file_bytes);
    if (file) {
        uint64_t header = 0;
        for (int i = 0; i < 8; i++)
            header |= (uint64_t)file[i] << (8 * i);
        CHECK((8 + header) % 8 == 0, "data section starts at %llu, not 8-aligned", (unsigned long long)(8 + header));
        CHECK(file[8] == '{', "header does not start with '{'");
        const char *next = (const char *)file + 8 + header;
        size_t prev_size = 8;
        for (size_t i = 0; i < gptq_safetensors_count(st); i++) {
            const gptq_st_tensor *t = gptq_safetensors_at(st, i);
            CHECK(memcmp(t->data, next, t->bytes) == 0 && gptq_dtype_size(t->dtype) <= prev_size,
                  "tensor %zu (%s) is not next in the file or out of size order", i, t->name);
            next += t->bytes;
            prev_size = gptq_dtype_size(t->dtype);
        }
        CHECK(next == (const char *)file + file_bytes, "data does not end at the end of the file");
        free(file);
    }
    gptq_safetensors_close(st);
}

static void free_bufs(unsigned char *bufs[N_ROUND_TRIP])
{
    for (int i = 0; i < N_ROUND_TRIP; i++) {
        free(bufs[i]);
        bufs[i] = NULL;
    }
}

static int dir_has_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    int found = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        found |= strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return found;
}

static void test_writer(void)
{
    char path[4200], dirpath[4200];
    unsigned char *bufs[N_ROUND_TRIP] = {0};
    tmp_path(path, sizeof path, "round.safetensors");
    CHECK_OK(write_specs(path, bufs, 1));
    check_specs(path, bufs);
    free_bufs(bufs);

    /* argument errors */
    gptq_st_writer *w = NULL;
    CHECK_OK(gptq_st_writer_create(&w));
    int64_t shape[2] = {2, 2}, negative[1] = {-1}, huge[2] = {INT64_MAX, 4};
    float x[4] = {0};
    CHECK_OK(gptq_st_writer_add(w, "a", GPTQ_DT_F32, 2, shape, x));
    CHECK(gptq_st_writer_add(w, "a", GPTQ_DT_F32, 2, shape, x) == GPTQ_ERR_EXISTS && strstr(gptq_errmsg(), "'a'"),
          "duplicate name: %s", gptq_errmsg());
    CHECK(gptq_st_writer_add(w, "", GPTQ_DT_F32, 2, shape, x) == GPTQ_ERR_ARG, "empty name accepted");
    CHECK(gptq_st_writer_add(w, "__metadata__", GPTQ_DT_F32, 2, shape, x) == GPTQ_ERR_ARG, "reserved name accepted");
    CHECK(gptq_st_writer_add(w, "n", GPTQ_DT_F32, 1, negative, x) == GPTQ_ERR_ARG, "negative dim accepted");
    CHECK(gptq_st_writer_add(w, "o", GPTQ_DT_F32, 2, huge, x) == GPTQ_ERR_ARG, "overflowing shape accepted");
    CHECK(gptq_st_writer_add(w, "p", GPTQ_DT_COUNT, 2, shape, x) == GPTQ_ERR_ARG, "bad dtype accepted");
    CHECK(gptq_st_writer_add(w, "q", GPTQ_DT_F32, 9, shape, x) == GPTQ_ERR_ARG, "ndim 9 accepted");
    CHECK(gptq_st_writer_add(w, "r", GPTQ_DT_F32, 2, shape, NULL) == GPTQ_ERR_ARG, "NULL data accepted");
    CHECK(gptq_st_writer_add(w, "\xff\xfe", GPTQ_DT_F32, 2, shape, x) == GPTQ_ERR_ARG, "non-UTF-8 name accepted");

    /* failure at rename: the destination is a directory; it stays one and no
     * temporary file is left behind */
    tmp_path(dirpath, sizeof dirpath, "a-directory");
    mkdir(dirpath, 0755);
    char inner[4300];
    snprintf(inner, sizeof inner, "%s/keep", dirpath);
    write_bytes(inner, "x", 1);
    gptq_status status = gptq_st_writer_write(w, dirpath);
    CHECK(status != GPTQ_OK && strstr(gptq_errmsg(), dirpath), "write over a directory: %s %s",
          gptq_status_name(status), gptq_errmsg());
    CHECK(file_exists(inner) && !dir_has_temp_files(tmpdir), "directory changed or temp file left");

    /* failure at open: the directory does not exist */
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.safetensors", tmpdir);
    status = gptq_st_writer_write(w, missing);
    CHECK(status == GPTQ_ERR_NOTFOUND && strstr(gptq_errmsg(), "no/such/dir"), "missing dir: %s %s",
          gptq_status_name(status), gptq_errmsg());
    gptq_st_writer_destroy(w);

    /* failure in the middle of writing the data: a child process with a
     * 64 KiB file size limit writes 1 MiB over `path`; the old file must
     * still read back intact and no temporary file may remain. */
    size_t old_bytes;
    unsigned char *old = read_file(path, &old_bytes);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG instead */
        struct rlimit lim = {65536, 65536};
        setrlimit(RLIMIT_FSIZE, &lim);
        gptq_st_writer *big = NULL;
        int64_t n = 1 << 18;
        float *data = calloc((size_t)n, sizeof *data);
        if (gptq_st_writer_create(&big) != GPTQ_OK || gptq_st_writer_add(big, "big", GPTQ_DT_F32, 1, &n, data))
            _exit(2);
        gptq_status s = gptq_st_writer_write(big, path);
        int ok = s == GPTQ_ERR_IO && strstr(gptq_errmsg(), "writing") != NULL;
        if (!ok)
            fprintf(stderr, "child: expected an i/o error while writing, got %s: %s\n", gptq_status_name(s),
                    gptq_errmsg());
        _exit(ok ? 0 : 1);
    }
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0, "child exit status %d", wstatus);
    size_t now_bytes;
    unsigned char *now = read_file(path, &now_bytes);
    CHECK(old && now && old_bytes == now_bytes && memcmp(old, now, old_bytes) == 0,
          "destination changed by a failed write");
    CHECK(!dir_has_temp_files(tmpdir), "temporary file left after a failed write");
    free(old);
    free(now);

    /* an unwritable directory (meaningless as root, who can write anyway) */
    if (geteuid() != 0) {
        char ro[4200], ro_file[4300];
        tmp_path(ro, sizeof ro, "read-only");
        mkdir(ro, 0755);
        snprintf(ro_file, sizeof ro_file, "%s/m.safetensors", ro);
        CHECK_OK(write_specs(ro_file, bufs, 2));
        free_bufs(bufs);
        chmod(ro, 0555);
        CHECK(write_specs(ro_file, bufs, 3) == GPTQ_ERR_PERMISSION, "write into a read-only dir: %s", gptq_errmsg());
        free_bufs(bufs);
        unsigned char *keep[N_ROUND_TRIP] = {0};
        uint64_t seed = 2; /* regenerate what seed 2 wrote to compare */
        for (int i = 0; i < N_ROUND_TRIP; i++) {
            size_t bytes = (size_t)spec_numel(&round_trip[i]) * gptq_dtype_size(round_trip[i].dtype);
            keep[i] = malloc(bytes ? bytes : 1);
            for (size_t k = 0; k < bytes; k++)
                keep[i][k] = (unsigned char)test_rand_u64(&seed);
        }
        check_specs(ro_file, keep);
        free_bufs(keep);
        chmod(ro, 0755);
        unlink(ro_file);
        rmdir(ro);
    } else {
        printf("note: running as root, read-only directory case not testable\n");
    }

    /* writing again over an existing file replaces it */
    CHECK_OK(write_specs(path, bufs, 4));
    check_specs(path, bufs);
    free_bufs(bufs);
    unlink(inner);
    rmdir(dirpath);
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[4400];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(tmpdir);
}

int main(void)
{
    fixture_path("tiny-llama/model.safetensors"); /* exits 77 (skip) without fixtures */
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_safetensors.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    test_known_bytes();
    test_writer();
    test_fixture_models();
    remove_tmpdir();
    return test_result();
}
