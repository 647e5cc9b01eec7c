/* tests/test_gguf_fuzz.c: the GGUF reader against hostile files, built with
 * AddressSanitizer + UBSan (see tests/meson.build).
 *
 * Two valid files (v3 with alignment 64 and every metadata type, nested
 * arrays included; v2 with the K-quants) and seeded mutations of them: every
 * truncation, every structural field (count, length, type, shape, offset)
 * set to boundary values, bit flips, inserted, deleted and overwritten bytes.
 * A file the reader rejects must come with GPTQ_ERR_FORMAT, a message naming
 * the file and *out NULL; a file it accepts is walked value by value and
 * tensor by tensor, every tensor read raw and as float32 into buffers of
 * exactly its size, and the invariants checked here independently of the
 * reader's own checks. A crash, a sanitizer report or a leak fails the test. */
#include "model/gguf.h"
#include "ggufwriter.h"
#include "testutil.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

static char path[64];
static int case_fd = -1; /* a memfd the cases are written into: disks are slow */
static int verbose;

static struct {
    int cases, rejected, accepted;
} tally;

static void put_file(const void *buf, size_t bytes)
{
    if (ftruncate(case_fd, 0) != 0 || (bytes && pwrite(case_fd, buf, bytes, 0) != (ssize_t)bytes)) {
        fprintf(stderr, "cannot write the case file: %s\n", strerror(errno));
        exit(1);
    }
}

/* ---- the valid base files ---------------------------------------------------- */

typedef struct base_file {
    const char *what;
    gguf_buf buf;
    size_t data_offset; /* where the data section starts */
} base_file;

static base_file bases[2];

typedef struct tensor_desc {
    const char *name;
    uint32_t n_dims;
    int64_t ne[4];
    int type;
} tensor_desc;

/* Tensors packed in list order at `alignment`, the last ending at the end
 * of the file, filled with seeded bytes. */
static void add_tensors(base_file *f, const tensor_desc *t, int n, size_t alignment, uint64_t seed)
{
    uint64_t offsets[16], offset = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            numel *= t[i].ne[d];
        offsets[i] = offset;
        uint64_t bytes = (uint64_t)numel / gptq_ggml_block_elems(t[i].type) * gptq_ggml_block_bytes(t[i].type);
        offset = (offset + bytes + alignment - 1) / alignment * alignment;
        if (i == n - 1)
            offset = offsets[i] + bytes;
    }
    for (int i = 0; i < n; i++)
        gbuf_tensor(&f->buf, t[i].name, t[i].n_dims, t[i].ne, (uint32_t)t[i].type, offsets[i]);
    f->data_offset = gbuf_align(&f->buf, alignment);
    for (uint64_t i = 0; i < offset; i++)
        gbuf_u8(&f->buf, (uint8_t)test_rand_u64(&seed));
}

static void make_bases(void)
{
    base_file *a = &bases[0];
    a->what = "v3";
    gguf_buf *b = &a->buf;
    gbuf_header(b, 3, 7, 20);
    gbuf_key(b, "general.architecture", GPTQ_GGUF_STRING);
    gbuf_str(b, "llama");
    gbuf_key(b, "u8", GPTQ_GGUF_UINT8);
    gbuf_u8(b, 1);
    gbuf_key(b, "i8", GPTQ_GGUF_INT8);
    gbuf_u8(b, 0xff);
    gbuf_key(b, "u16", GPTQ_GGUF_UINT16);
    gbuf_u16(b, 2);
    gbuf_key(b, "i16", GPTQ_GGUF_INT16);
    gbuf_u16(b, 0x8000);
    gbuf_key(b, "u32", GPTQ_GGUF_UINT32);
    gbuf_u32(b, 3);
    gbuf_key(b, "i32", GPTQ_GGUF_INT32);
    gbuf_u32(b, 0xfffffffe);
    gbuf_key(b, "f32", GPTQ_GGUF_FLOAT32);
    gbuf_f32(b, 1.5f);
    gbuf_key(b, "u64", GPTQ_GGUF_UINT64);
    gbuf_u64(b, UINT64_MAX);
    gbuf_key(b, "i64", GPTQ_GGUF_INT64);
    gbuf_u64(b, 1);
    gbuf_key(b, "f64", GPTQ_GGUF_FLOAT64);
    gbuf_f64(b, -0.25);
    gbuf_key(b, "bool", GPTQ_GGUF_BOOL);
    gbuf_u8(b, 1);
    gbuf_key(b, "general.alignment", GPTQ_GGUF_UINT32);
    gbuf_u32(b, 64);
    gbuf_key(b, "str", GPTQ_GGUF_STRING);
    gbuf_str(b, "{% for m in messages %}{{ m }}{% endfor %}");
    gbuf_key(b, "a.u32", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_UINT32, 5);
    for (uint32_t i = 0; i < 5; i++)
        gbuf_u32(b, i * 1000);
    gbuf_key(b, "a.str", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_STRING, 3);
    gbuf_str(b, "<s>");
    gbuf_str(b, "");
    gbuf_str(b, "\xe2\x96\x81the");
    gbuf_key(b, "a.f32", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_FLOAT32, 4);
    for (int i = 0; i < 4; i++)
        gbuf_f32(b, (float)i - 1.5f);
    gbuf_key(b, "a.nested", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_ARRAY, 2);
    gbuf_array(b, GPTQ_GGUF_INT16, 2);
    gbuf_u16(b, 1);
    gbuf_u16(b, 2);
    gbuf_array(b, GPTQ_GGUF_INT16, 1);
    gbuf_u16(b, 3);
    gbuf_key(b, "a.deep", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_ARRAY, 1);
    gbuf_array(b, GPTQ_GGUF_ARRAY, 2);
    gbuf_array(b, GPTQ_GGUF_STRING, 1);
    gbuf_str(b, "x");
    gbuf_array(b, GPTQ_GGUF_STRING, 0);
    gbuf_key(b, "a.empty", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_BOOL, 0);
    static const tensor_desc ta[] = {
        {"token_embd.weight", 2, {8, 2}, GPTQ_GGML_F32},  {"norm", 1, {16}, GPTQ_GGML_F16},
        {"q8", 2, {32, 2}, GPTQ_GGML_Q8_0},               {"q4_1", 1, {64}, GPTQ_GGML_Q4_1},
        {"q6k", 1, {256}, GPTQ_GGML_Q6_K},                {"iq4nl", 1, {32}, GPTQ_GGML_IQ4_NL},
        {"bf16", 4, {4, 1, 1, 2}, GPTQ_GGML_BF16},
    };
    add_tensors(a, ta, 7, 64, 1);

    base_file *c = &bases[1];
    c->what = "v2";
    b = &c->buf;
    gbuf_header(b, 2, 8, 3);
    gbuf_key(b, "general.name", GPTQ_GGUF_STRING);
    gbuf_str(b, "k-quants");
    gbuf_key(b, "tokenizer.ggml.tokens", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_STRING, 6);
    for (int i = 0; i < 6; i++)
        gbuf_str(b, (const char *[]){"a", "b", "ab", "<unk>", "\n", " "}[i]);
    gbuf_key(b, "tokenizer.ggml.scores", GPTQ_GGUF_ARRAY);
    gbuf_array(b, GPTQ_GGUF_FLOAT32, 6);
    for (int i = 0; i < 6; i++)
        gbuf_f32(b, (float)-i);
    static const tensor_desc tc[] = {
        {"q2k", 1, {256}, GPTQ_GGML_Q2_K}, {"q3k", 1, {256}, GPTQ_GGML_Q3_K}, {"q4k", 1, {256}, GPTQ_GGML_Q4_K},
        {"q5k", 1, {256}, GPTQ_GGML_Q5_K}, {"q5_0", 1, {32}, GPTQ_GGML_Q5_0}, {"q5_1", 1, {32}, GPTQ_GGML_Q5_1},
        {"q4_0", 2, {32, 2}, GPTQ_GGML_Q4_0}, {"i32", 1, {3}, GPTQ_GGML_I32},
    };
    add_tensors(c, tc, 8, 32, 2);
}

/* ---- what an accepted file must satisfy ----------------------------------------- */

static unsigned walk_value(const gptq_gguf_value *v, int depth, const char *what)
{
    unsigned sum = 0;
    CHECK((unsigned)v->type < GPTQ_GGUF_TYPE_COUNT, "%s: value type %d", what, v->type);
    if (v->type == GPTQ_GGUF_STRING) {
        for (uint64_t i = 0; i < v->v.str.len; i++) /* faults if the string is not all there */
            sum += (unsigned char)v->v.str.ptr[i];
        CHECK(v->v.str.ptr[v->v.str.len] == '\0', "%s: string not followed by a NUL", what);
    } else if (v->type == GPTQ_GGUF_ARRAY) {
        CHECK(depth < GPTQ_GGUF_MAX_DEPTH, "%s: arrays nested %d deep accepted", what, depth + 1);
        CHECK((unsigned)v->v.arr.elem < GPTQ_GGUF_TYPE_COUNT, "%s: element type %d", what, v->v.arr.elem);
        CHECK((v->v.arr.items == NULL) == (v->v.arr.n == 0), "%s: %llu items at %p", what,
              (unsigned long long)v->v.arr.n, (const void *)v->v.arr.items);
        for (uint64_t i = 0; i < v->v.arr.n; i++) {
            CHECK(v->v.arr.items[i].type == v->v.arr.elem, "%s: item %llu is type %d in an array of %d", what,
                  (unsigned long long)i, v->v.arr.items[i].type, v->v.arr.elem);
            sum += walk_value(&v->v.arr.items[i], depth + 1, what);
        }
    } else if (v->type == GPTQ_GGUF_BOOL) {
        CHECK(v->v.b == 0 || v->v.b == 1, "%s: bool %d", what, v->v.b);
    }
    return sum;
}

static int offset_cmp(const void *a, const void *b)
{
    const gptq_gguf_tensor *x = *(const gptq_gguf_tensor *const *)a, *y = *(const gptq_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* `data_at`: where the data section starts when the header is the base's
 * (0 when it may not be), to compare tensor bytes with the file's. */
static void verify_accepted(const gptq_gguf *g, const unsigned char *file, size_t file_bytes, size_t data_at,
                            const char *what)
{
    volatile unsigned sum = 0;
    uint32_t align = gptq_gguf_alignment(g);
    CHECK(gptq_gguf_version(g) == 2 || gptq_gguf_version(g) == 3, "%s: version %u", what, gptq_gguf_version(g));
    CHECK(align && (align & (align - 1)) == 0, "%s: alignment %u", what, align);
    for (size_t i = 0; i < gptq_gguf_kv_count(g); i++) {
        const gptq_gguf_kv *kv = gptq_gguf_kv_at(g, i);
        size_t len = strlen(kv->key);
        CHECK(len >= 1 && len <= GPTQ_GGUF_MAX_NAME, "%s: key of %zu bytes", what, len);
        CHECK(gptq_gguf_find_kv(g, kv->key) == kv, "%s: find_kv('%.80s') is not kv_at(%zu)", what, kv->key, i);
        sum += walk_value(&kv->value, 0, what);
        int64_t iv;
        double fv;
        int bv;
        const char *s;
        size_t n;
        sum += (unsigned)gptq_gguf_get_int(g, kv->key, &iv) + (unsigned)gptq_gguf_get_float(g, kv->key, &fv) +
               (unsigned)gptq_gguf_get_bool(g, kv->key, &bv) + (unsigned)gptq_gguf_get_string(g, kv->key, &s, &n) +
               (gptq_gguf_get_array(g, kv->key, GPTQ_GGUF_STRING) != NULL);
    }
    size_t n_tensors = gptq_gguf_tensor_count(g);
    const gptq_gguf_tensor **order = malloc((n_tensors ? n_tensors : 1) * sizeof *order);
    for (size_t i = 0; i < n_tensors; i++) {
        const gptq_gguf_tensor *t = gptq_gguf_tensor_at(g, i);
        order[i] = t;
        size_t len = strlen(t->name);
        CHECK(len >= 1 && len <= GPTQ_GGUF_MAX_NAME, "%s: tensor name of %zu bytes", what, len);
        CHECK(gptq_gguf_find_tensor(g, t->name) == t, "%s: find_tensor('%.80s') is not tensor_at(%zu)", what,
              t->name, i);
        CHECK(t->n_dims >= 1 && t->n_dims <= 4, "%s: '%.80s' n_dims %d", what, t->name, t->n_dims);
        int64_t numel = 1;
        for (int d = 0; d < 4; d++) {
            CHECK(t->ne[d] >= 1 && (d < t->n_dims || t->ne[d] == 1), "%s: '%.80s' ne[%d] = %lld", what, t->name, d,
                  (long long)t->ne[d]);
            numel *= t->ne[d];
        }
        int be = gptq_ggml_block_elems(t->type), bb = gptq_ggml_block_bytes(t->type);
        CHECK(be > 0 && numel == t->numel && t->ne[0] % be == 0 && t->bytes == (uint64_t)(numel / be) * bb,
              "%s: '%.80s' type %d numel %lld bytes %llu", what, t->name, t->type, (long long)t->numel,
              (unsigned long long)t->bytes);
        CHECK(t->offset % align == 0 && t->offset < file_bytes && t->bytes <= file_bytes - t->offset,
              "%s: '%.80s' [%llu, +%llu) accepted in a %zu-byte file", what, t->name, (unsigned long long)t->offset,
              (unsigned long long)t->bytes, file_bytes);
        if (t->bytes > file_bytes)
            continue;
        unsigned char *raw = malloc(t->bytes); /* exactly: ASan catches a longer write */
        gptq_status st = gptq_gguf_read(g, t, raw);
        CHECK(st == GPTQ_OK, "%s: read '%.80s': %s", what, t->name, gptq_errmsg());
        if (st == GPTQ_OK && data_at)
            CHECK(!memcmp(raw, file + data_at + t->offset, t->bytes), "%s: '%.80s' bytes differ from the file", what,
                  t->name);
        free(raw);
        float *out = malloc((size_t)t->numel * sizeof *out);
        st = gptq_gguf_read_f32(g, t, out);
        CHECK(st == (gptq_ggml_can_dequantize(t->type) ? GPTQ_OK : GPTQ_ERR_UNSUPPORTED), "%s: read_f32 '%.80s' (%s): %s",
              what, t->name, gptq_ggml_type_name(t->type), gptq_errmsg());
        free(out);
    }
    if (n_tensors > 1)
        qsort(order, n_tensors, sizeof *order, offset_cmp);
    for (size_t i = 1; i < n_tensors; i++)
        CHECK(order[i - 1]->offset + order[i - 1]->bytes <= order[i]->offset, "%s: '%.80s' and '%.80s' overlap", what,
              order[i - 1]->name, order[i]->name);
    free(order);
    (void)sum;
}

enum expect { MUST_REJECT, EITHER, MUST_ACCEPT };

/* Open the case (`file`, also written to the memfd) and check the outcome. */
static void try_case(const unsigned char *file, size_t bytes, size_t data_at, enum expect expect, const char *what)
{
    put_file(file, bytes);
    gptq_clear_error();
    gptq_gguf *g = (gptq_gguf *)&tally; /* must be reset to NULL on failure */
    gptq_status st = gptq_gguf_open(path, &g);
    tally.cases++;
    if (st == GPTQ_OK) {
        tally.accepted++;
        CHECK(expect != MUST_REJECT, "%s: accepted", what);
        verify_accepted(g, file, bytes, data_at, what);
        gptq_gguf_close(g);
        return;
    }
    tally.rejected++;
    CHECK(expect != MUST_ACCEPT, "%s: rejected: %s", what, gptq_errmsg());
    CHECK(st == GPTQ_ERR_FORMAT, "%s: status %s, want bad format: %s", what, gptq_status_name(st), gptq_errmsg());
    CHECK(g == NULL, "%s: *out not NULL after failure", what);
    CHECK(strstr(gptq_errmsg(), path) != NULL, "%s: message does not name the file: %s", what, gptq_errmsg());
    if (verbose)
        printf("  %-40s %s\n", what, gptq_errmsg() + strlen(path) + 2);
}

/* ---- mutations --------------------------------------------------------------------- */

static void test_bases_and_truncations(void)
{
    for (int f = 0; f < 2; f++) {
        const base_file *b = &bases[f];
        char what[96];
        snprintf(what, sizeof what, "%s base file", b->what);
        try_case(b->buf.bytes, b->buf.len, b->data_offset, MUST_ACCEPT, what);
        /* the last tensor ends at the end of the file: every cut loses bytes */
        int saved = verbose;
        for (size_t len = 0; len < b->buf.len; len++) {
            snprintf(what, sizeof what, "%s cut to %zu bytes", b->what, len);
            verbose = saved && (len < 30 || len % 97 == 0);
            try_case(b->buf.bytes, len, 0, MUST_REJECT, what);
        }
        verbose = saved;
    }
    printf("bases accepted, every truncation rejected: %d cases\n", tally.cases);
}

/* Every structural field of both files set to boundary values. */
static void test_field_extremes(void)
{
    int before = tally.cases, accepted_before = tally.accepted, saved = verbose;
    verbose = 0;
    for (int f = 0; f < 2; f++) {
        const base_file *b = &bases[f];
        unsigned char *buf = malloc(b->buf.len);
        for (int k = 0; k < b->buf.n_fields; k++) {
            size_t at = b->buf.field_at[k];
            int width = b->buf.field_width[k];
            uint64_t orig = 0;
            memcpy(&orig, b->buf.bytes + at, (size_t)width);
            const uint64_t values[] = {
                0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 14, 31, 32, 33, 63, 64, 65, 255, 256, 4095, 4096, 4097,
                0x7fffffff, 0x80000000, 0xffffffff, 1ull << 32, (1ull << 32) + 1, 1ull << 53, 1ull << 62,
                INT64_MAX, 1ull << 63, UINT64_MAX, UINT64_MAX - 31, b->buf.len, b->buf.len - 1, b->buf.len + 1,
                orig + 1, orig - 1, orig * 2, orig + 32, orig + 64, orig | 0x100000000ull,
            };
            for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
                memcpy(buf, b->buf.bytes, b->buf.len);
                memcpy(buf + at, &values[v], (size_t)width); /* little-endian: a u32 field keeps the low half */
                char what[96];
                snprintf(what, sizeof what, "%s field %d (byte %zu) = %llu", b->what, k, at,
                         (unsigned long long)values[v]);
                try_case(buf, b->buf.len, 0, EITHER, what);
            }
        }
        free(buf);
    }
    verbose = saved;
    printf("field extremes: %d cases, %d accepted and verified\n", tally.cases - before,
           tally.accepted - accepted_before);
}

/* Seeded byte-level damage: flips, boundary bytes, insertions, deletions. */
static void test_random_damage(int n_cases)
{
    uint64_t seed = 20261201;
    int before = tally.cases, accepted_before = tally.accepted, saved = verbose;
    verbose = 0;
    size_t cap = bases[0].buf.len > bases[1].buf.len ? bases[0].buf.len : bases[1].buf.len;
    unsigned char *buf = malloc(cap + 64);
    static const unsigned char boundary[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x20, 0x40};
    for (int c = 0; c < n_cases; c++) {
        const base_file *b = &bases[c % 2];
        size_t len = b->buf.len;
        memcpy(buf, b->buf.bytes, len);
        /* nine in ten cases hit the header, where the reader's decisions are */
        size_t span = c % 10 == 9 ? len : b->data_offset;
        int kind = (int)(test_rand_u64(&seed) % 4), n = 1 + (int)(test_rand_u64(&seed) % 4);
        for (int k = 0; k < n; k++) {
            size_t pos = (size_t)(test_rand_u64(&seed) % (span < len ? span : len));
            if (kind == 0) {
                buf[pos] ^= (unsigned char)(1u << (test_rand_u64(&seed) % 8));
            } else if (kind == 1) {
                buf[pos] = boundary[test_rand_u64(&seed) % sizeof boundary];
            } else if (kind == 2 && len < cap + 64) { /* insert a byte */
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = (unsigned char)test_rand_u64(&seed);
                len++;
            } else if (kind == 3 && len > 1) { /* delete a byte */
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
            }
        }
        char what[96];
        snprintf(what, sizeof what, "%s damage case %d (kind %d)", b->what, c, kind);
        try_case(buf, len, 0, EITHER, what);
    }
    free(buf);
    verbose = saved;
    printf("random damage: %d cases, %d accepted and verified\n", tally.cases - before,
           tally.accepted - accepted_before);
}

/* Damage to tensor bytes only: always accepted, the bytes read back as the
 * file has them, every value converts (NaN and Inf included). */
static void test_data_damage(int n_cases)
{
    uint64_t seed = 99;
    int before = tally.cases;
    for (int c = 0; c < n_cases; c++) {
        const base_file *b = &bases[c % 2];
        unsigned char *buf = malloc(b->buf.len);
        memcpy(buf, b->buf.bytes, b->buf.len);
        for (int k = 0; k < 16; k++) {
            size_t pos = b->data_offset + (size_t)(test_rand_u64(&seed) % (b->buf.len - b->data_offset));
            buf[pos] = (unsigned char)test_rand_u64(&seed);
        }
        char what[96];
        snprintf(what, sizeof what, "%s data damage case %d", b->what, c);
        try_case(buf, b->buf.len, b->data_offset, MUST_ACCEPT, what);
        free(buf);
    }
    printf("data damage: %d cases, all accepted and read back\n", tally.cases - before);
}

int main(int argc, char **argv)
{
    verbose = argc > 1 && !strcmp(argv[1], "-v");
    case_fd = memfd_create("gguf_fuzz_case", MFD_CLOEXEC);
    if (case_fd < 0) {
        fprintf(stderr, "memfd_create: %s\n", strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", case_fd);
    make_bases();
    test_bases_and_truncations();
    test_field_extremes();
    test_random_damage(40000);
    test_data_damage(400);
    printf("gguf_fuzz: %d files, %d rejected with a message, %d accepted and verified\n", tally.cases,
           tally.rejected, tally.accepted);
    close(case_fd);
    for (int f = 0; f < 2; f++)
        gbuf_free(&bases[f].buf);
    return test_result();
}
