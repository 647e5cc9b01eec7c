/* tests/test_safetensors_fuzz.c: the safetensors reader against hostile
 * files, built with AddressSanitizer + UBSan (see tests/meson.build).
 *
 * Every truncation of a valid file, hand-written hostile headers, seeded
 * bit flips and seeded token substitutions in the header. A file the reader
 * rejects must come with a status and a message; a file it accepts is
 * walked byte by byte and cross-checked against the header as jansson reads
 * it here, independently of the reader's own checks. A crash, a sanitizer
 * report or a silent rejection fails the test. */
#include "model/safetensors.h"
#include "testutil.h"

#include <errno.h>
#include <jansson.h>
#include <sys/mman.h>
#include <unistd.h>

static char tmpdir[4096], path[4200];
static int verbose;
static int case_fd = -1; /* a memfd the cases are written into: disks are slow */

static struct {
    int cases, rejected, accepted;
} tally;

static void put_file(const void *buf, size_t bytes)
{
    if (ftruncate(case_fd, 0) != 0 || (bytes && pwrite(case_fd, buf, bytes, 0) != (ssize_t)bytes)) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

/* A file of length prefix `length`, `header` (header_bytes), then
 * data_bytes bytes of 0x5a. */
static void put_parts(uint64_t length, const char *header, size_t header_bytes, size_t data_bytes)
{
    unsigned char *buf = malloc(8 + header_bytes + data_bytes);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(length >> (8 * i));
    memcpy(buf + 8, header, header_bytes);
    memset(buf + 8 + header_bytes, 0x5a, data_bytes);
    put_file(buf, 8 + header_bytes + data_bytes);
    free(buf);
}

static void put_header(const char *json, size_t data_bytes)
{
    put_parts(strlen(json), json, strlen(json), data_bytes);
}

/* What an accepted file must satisfy, checked against the file's own bytes
 * and jansson's reading of its header. */
static void verify_accepted(const gptq_safetensors *st, const char *what)
{
    size_t file_bytes = 0;
    FILE *f = fopen(path, "rb");
    unsigned char *file = NULL;
    if (f) {
        fseek(f, 0, SEEK_END);
        file_bytes = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        file = malloc(file_bytes + 1);
        if (fread(file, 1, file_bytes, f) != file_bytes)
            file_bytes = 0;
        fclose(f);
    }
    CHECK(file && file_bytes >= 8, "%s: accepted file unreadable here", what);
    if (!file || file_bytes < 8) {
        free(file);
        return;
    }
    uint64_t length = 0;
    for (int i = 0; i < 8; i++)
        length |= (uint64_t)file[i] << (8 * i);
    CHECK(length > 0 && length <= file_bytes - 8, "%s: accepted a header length of %llu in a %zu-byte file", what,
          (unsigned long long)length, file_bytes);
    if (!(length > 0 && length <= file_bytes - 8)) {
        free(file);
        return;
    }
    uint64_t data_bytes = file_bytes - 8 - length;
    json_t *root = json_loadb((const char *)file + 8, length, JSON_REJECT_DUPLICATES, NULL);
    CHECK(json_is_object(root), "%s: accepted a header that is not a JSON object", what);
    size_t n = gptq_safetensors_count(st);
    CHECK(root && n == json_object_size(root) - (json_object_get(root, "__metadata__") ? 1 : 0),
          "%s: %zu tensors, header has %zu entries", what, n, root ? json_object_size(root) : 0);

    /* the data section's address, from a tensor's pointer and its offset */
    const unsigned char *data_base = NULL;
    volatile unsigned sum = 0;
    for (size_t i = 0; root && i < n; i++) {
        const gptq_st_tensor *t = gptq_safetensors_at(st, i);
        json_t *entry = json_object_get(root, t->name);
        json_t *offsets = json_object_get(entry, "data_offsets");
        json_int_t begin = json_integer_value(json_array_get(offsets, 0));
        json_int_t end = json_integer_value(json_array_get(offsets, 1));
        CHECK(entry && begin >= 0 && begin <= end && (uint64_t)end <= data_bytes,
              "%s: tensor '%.80s' [%lld, %lld) accepted outside a %llu-byte data section", what, t->name,
              (long long)begin, (long long)end, (unsigned long long)data_bytes);
        CHECK((uint64_t)(end - begin) == t->bytes && t->bytes == (uint64_t)t->numel * gptq_dtype_size(t->dtype),
              "%s: tensor '%.80s' bytes %zu, numel %lld, span %lld", what, t->name, t->bytes, (long long)t->numel,
              (long long)(end - begin));
        CHECK(t->ndim >= 0 && t->ndim <= GPTQ_ST_MAX_NDIM && t->name[0], "%s: tensor %zu ndim %d", what, i, t->ndim);
        CHECK(gptq_safetensors_find(st, t->name) == t, "%s: find('%.80s') is not at(%zu)", what, t->name, i);
        if (!data_base)
            data_base = (const unsigned char *)t->data - begin;
        CHECK((const unsigned char *)t->data == data_base + begin, "%s: tensor '%.80s' points off its offset", what,
              t->name);
        CHECK(t->bytes == 0 || memcmp(t->data, file + 8 + length + begin, t->bytes) == 0,
              "%s: tensor '%.80s' bytes differ from the file", what, t->name);
        for (size_t k = 0; k < t->bytes; k++) /* faults if outside the mapping */
            sum += ((const unsigned char *)t->data)[k];
        if (i > 0) {
            const gptq_st_tensor *prev = gptq_safetensors_at(st, i - 1);
            CHECK((const unsigned char *)prev->data + prev->bytes <= (const unsigned char *)t->data,
                  "%s: '%.80s' and '%.80s' overlap", what, prev->name, t->name);
        }
        float small[64];
        if (t->numel <= 64 && gptq_st_tensor_to_f32(t, small, (size_t)t->numel) != GPTQ_OK)
            CHECK(gptq_errmsg()[0], "%s: to_f32 failed without a message", what);
    }
    (void)sum;
    json_decref(root);
    free(file);
}

enum expect { MUST_REJECT, EITHER, MUST_ACCEPT };

/* Open the current file and check the outcome against `expect`. */
static void try_open(const char *what, enum expect expect)
{
    gptq_clear_error();
    gptq_safetensors *st = (gptq_safetensors *)&tally; /* must be reset to NULL on failure */
    gptq_status status = gptq_safetensors_open(path, &st);
    tally.cases++;
    if (status == GPTQ_OK) {
        tally.accepted++;
        CHECK(expect != MUST_REJECT, "%s: accepted", what);
        verify_accepted(st, what);
        gptq_safetensors_close(st);
        return;
    }
    tally.rejected++;
    CHECK(expect != MUST_ACCEPT, "%s: rejected: %s", what, gptq_errmsg());
    CHECK(gptq_errmsg()[0] != '\0', "%s: status %s without a message", what, gptq_status_name(status));
    CHECK(st == NULL, "%s: *out not NULL after failure", what);
    CHECK(strstr(gptq_errmsg(), path) != NULL, "%s: message does not name the file: %s", what, gptq_errmsg());
    if (verbose)
        printf("  %-34s %s\n", what, gptq_errmsg() + strlen(path) + 2);
}

/* ---- the valid base file -------------------------------------------------- */

static unsigned char *base;
static size_t base_bytes;
static uint64_t base_header_bytes;

static void make_base(void)
{
    static float f32[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    static uint16_t f16[4] = {0x3c00, 0xc000, 0x7bff, 0x0001}, bf16[2] = {0x3f80, 0xff80};
    static int32_t i32[2] = {-1, 7};
    static int64_t i64[1] = {1};
    static uint8_t u8[3] = {1, 2, 3}, boolean[2] = {0, 1};
    static const int64_t s23[2] = {2, 3}, s4[1] = {4}, s12[2] = {1, 2}, s2[1] = {2}, s1[1] = {1}, s3[1] = {3};
    gptq_st_writer *w = NULL;
    char file[4300];
    snprintf(file, sizeof file, "%s/base.safetensors", tmpdir);
    int ok = gptq_st_writer_create(&w) == GPTQ_OK && gptq_st_writer_add(w, "a", GPTQ_DT_F32, 2, s23, f32) == GPTQ_OK &&
             gptq_st_writer_add(w, "b.weight", GPTQ_DT_F16, 1, s4, f16) == GPTQ_OK &&
             gptq_st_writer_add(w, "c", GPTQ_DT_BF16, 2, s12, bf16) == GPTQ_OK &&
             gptq_st_writer_add(w, "d", GPTQ_DT_I32, 1, s2, i32) == GPTQ_OK &&
             gptq_st_writer_add(w, "e", GPTQ_DT_I64, 1, s1, i64) == GPTQ_OK &&
             gptq_st_writer_add(w, "f", GPTQ_DT_U8, 1, s3, u8) == GPTQ_OK &&
             gptq_st_writer_add(w, "g", GPTQ_DT_BOOL, 1, s2, boolean) == GPTQ_OK &&
             gptq_st_writer_set_metadata(w, "format", "pt") == GPTQ_OK && gptq_st_writer_write(w, file) == GPTQ_OK;
    gptq_st_writer_destroy(w);
    if (!ok) {
        fprintf(stderr, "FAIL: cannot write the base file: %s\n", gptq_errmsg());
        exit(1);
    }
    FILE *f = fopen(file, "rb");
    fseek(f, 0, SEEK_END);
    base_bytes = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    base = malloc(base_bytes);
    if (fread(base, 1, base_bytes, f) != base_bytes)
        exit(1);
    fclose(f);
    unlink(file);
    for (int i = 0; i < 8; i++)
        base_header_bytes |= (uint64_t)base[i] << (8 * i);
}

static void test_base_and_truncations(void)
{
    put_file(base, base_bytes);
    try_open("the valid base file", MUST_ACCEPT);
    CHECK(tally.accepted == 1, "the base file was rejected: %s", gptq_errmsg());
    /* the last tensor ends at the end of the file: every cut loses bytes */
    int before = tally.cases;
    for (size_t len = 0; len < base_bytes; len++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu bytes", len);
        put_file(base, len);
        int saved = verbose;
        verbose = saved && (len < 10 || len == base_bytes - 1);
        try_open(what, MUST_REJECT);
        verbose = saved;
    }
    printf("truncations: %d, all rejected\n", tally.cases - before);
}

/* ---- hand-written hostile headers ------------------------------------------ */

#define T(dtype, shape, offsets) "{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"

static const struct {
    const char *what;
    const char *json;
    size_t data_bytes;
    const char *want; /* in the message: the check meant for this case fired */
} hostile[] = {
    {"empty JSON text", " ", 0, "not valid JSON"},
    {"JSON array", "[]", 0, "JSON array, expected an object"},
    {"JSON string", "\"x\"", 0, "not valid JSON"},
    {"JSON number", "42", 0, "not valid JSON"},
    {"JSON null", "null", 0, "not valid JSON"},
    {"unterminated object", "{", 0, "not valid JSON"},
    {"missing value", "{\"a\":}", 0, "not valid JSON"},
    {"trailing garbage", "{} x", 0, "not valid JSON"},
    {"two objects", "{}{}", 0, "not valid JSON"},
    {"invalid UTF-8 key", "{\"\xff\":" T("F32", "[1]", "[0,4]") "}", 4, "not valid JSON"},
    {"NUL in tensor name", "{\"a\\u0000b\":" T("F32", "[1]", "[0,4]") "}", 4, "NUL"},
    {"NUL in metadata key", "{\"__metadata__\":{\"a\\u0000\":\"b\"}}", 0, "NUL"},
    {"NUL in metadata value", "{\"__metadata__\":{\"a\":\"b\\u0000c\"}}", 0, "\\u0000"},
    {"duplicate tensor", "{\"a\":" T("F32", "[1]", "[0,4]") ",\"a\":" T("F32", "[1]", "[4,8]") "}", 8, "duplicate"},
    {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "duplicate"},
    {"duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate"},
    {"tensor is a number", "{\"a\":1}", 0, "'a' is a JSON integer"},
    {"tensor is an array", "{\"a\":[\"F32\",[1],[0,4]]}", 4, "'a' is a JSON array"},
    {"tensor is null", "{\"a\":null}", 0, "'a' is a JSON null"},
    {"empty tensor name", "{\"\":" T("F32", "[1]", "[0,4]") "}", 4, "empty name"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing field 'dtype'"},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing field 'shape'"},
    {"missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing field 'data_offsets'"},
    {"empty tensor object", "{\"a\":{}}", 4, "missing field"},
    {"extra field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"offsets\":[0,4]}}", 4, "unexpected field 'offsets'"},
    {"extra __metadata__ in tensor", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"__metadata__\":{}}}", 4, "unexpected field '__metadata__'"},
    {"field with NUL", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\\u0000\":[0,4]}}", 4, "NUL"},
    {"unknown dtype F8", "{\"a\":" T("F8", "[1]", "[0,1]") "}", 1, "unknown dtype 'F8'"},
    {"lower-case dtype", "{\"a\":" T("f32", "[1]", "[0,4]") "}", 4, "unknown dtype 'f32'"},
    {"empty dtype", "{\"a\":" T("", "[1]", "[0,4]") "}", 4, "unknown dtype ''"},
    {"dtype is a number", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is a JSON integer"},
    {"dtype with NUL", "{\"a\":{\"dtype\":\"F32\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\\u0000"},
    {"shape is a number", "{\"a\":" T("F32", "1", "[0,4]") "}", 4, "shape is a JSON integer"},
    {"shape is an object", "{\"a\":" T("F32", "{}", "[0,4]") "}", 4, "shape is a JSON object"},
    {"negative dimension", "{\"a\":" T("F32", "[-1]", "[0,4]") "}", 4, "shape[0] is -1"},
    {"negative dims, positive product", "{\"a\":" T("F32", "[-1,-1]", "[0,4]") "}", 4, "shape[0] is -1"},
    {"fractional dimension", "{\"a\":" T("F32", "[1.0]", "[0,4]") "}", 4, "shape[0] is a JSON number"},
    {"string dimension", "{\"a\":" T("F32", "[\"1\"]", "[0,4]") "}", 4, "shape[0] is a JSON string"},
    {"nested shape", "{\"a\":" T("F32", "[[1]]", "[0,4]") "}", 4, "shape[0] is a JSON array"},
    {"9 dimensions", "{\"a\":" T("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "9 dimensions"},
    {"dimension beyond int64", "{\"a\":" T("F32", "[9223372036854775808]", "[0,4]") "}", 4, "too big integer"},
    {"numel overflows int64", "{\"a\":" T("U8", "[4294967296,4294967296]", "[0,0]") "}", 0, "overflows int64"},
    {"numel wraps to 0", "{\"a\":" T("U8", "[4294967296,4294967296,0]", "[0,1]") "}", 1, "overflows int64"},
    {"numel wraps to small", "{\"a\":" T("U8", "[4294967297,4294967297]", "[0,1]") "}", 1, "overflows int64"},
    {"bytes overflow uint64", "{\"a\":" T("F64", "[2305843009213693952]", "[0,0]") "}", 0, "overflow a 64-bit byte count"},
    {"bytes wrap to 8", "{\"a\":" T("F64", "[2305843009213693953]", "[0,8]") "}", 8, "overflow a 64-bit byte count"},
    {"offsets not an array", "{\"a\":" T("F32", "[1]", "{}") "}", 4, "data_offsets must be"},
    {"one offset", "{\"a\":" T("F32", "[1]", "[4]") "}", 4, "data_offsets must be"},
    {"three offsets", "{\"a\":" T("F32", "[1]", "[0,4,8]") "}", 8, "data_offsets must be"},
    {"string offsets", "{\"a\":" T("F32", "[1]", "[\"0\",\"4\"]") "}", 4, "data_offsets[0] is a JSON string"},
    {"fractional offset", "{\"a\":" T("F32", "[1]", "[0,4.0]") "}", 4, "data_offsets[1] is a JSON number"},
    {"negative begin", "{\"a\":" T("F32", "[1]", "[-4,0]") "}", 4, "data_offsets[0] is -4"},
    {"negative end", "{\"a\":" T("F32", "[0]", "[0,-1]") "}", 4, "data_offsets[1] is -1"},
    {"begin after end", "{\"a\":" T("F32", "[1]", "[8,4]") "}", 8, "begin after end"},
    {"end past data", "{\"a\":" T("F32", "[1]", "[0,4]") "}", 3, "ends at byte 4, data section has 3 bytes"},
    {"begin past data, empty", "{\"a\":" T("F32", "[0]", "[9,9]") "}", 8, "ends at byte 9, data section has 8 bytes"},
    {"offset beyond int64", "{\"a\":" T("F32", "[1]", "[0,18446744073709551615]") "}", 4, "too big integer"},
    {"offsets near INT64_MAX", "{\"a\":" T("F32", "[1]", "[9223372036854775803,9223372036854775807]") "}", 4, "ends at byte 9223372036854775807"},
    {"size mismatch (short span)", "{\"a\":" T("F32", "[2]", "[0,4]") "}", 8, "need 8 bytes"},
    {"size mismatch (long span)", "{\"a\":" T("F32", "[1]", "[0,8]") "}", 8, "need 4 bytes"},
    {"overlapping spans", "{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[4,12]") "}", 12, "overlaps"},
    {"identical spans", "{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[0,8]") "}", 8, "overlaps"},
    {"span inside another", "{\"a\":" T("F32", "[4]", "[0,16]") ",\"b\":" T("F32", "[1]", "[4,8]") "}", 16, "overlaps"},
    {"empty inside another", "{\"a\":" T("F32", "[4]", "[0,16]") ",\"b\":" T("F32", "[0]", "[4,4]") "}", 16, "overlaps"},
    {"overlap after an empty one", "{\"a\":" T("F32", "[2]", "[0,8]") ",\"z\":" T("U8", "[0]", "[8,8]") ",\"b\":" T("F32", "[1]", "[4,8]") "}", 8, "overlaps"},
    {"metadata is a string", "{\"__metadata__\":\"pt\"}", 0, "__metadata__ is a JSON string"},
    {"metadata is an array", "{\"__metadata__\":[\"format\",\"pt\"]}", 0, "__metadata__ is a JSON array"},
    {"metadata value is a number", "{\"__metadata__\":{\"format\":1}}", 0, "value of 'format' is a JSON integer"},
    {"metadata value is an object", "{\"__metadata__\":{\"format\":{\"pt\":\"x\"}}}", 0, "value of 'format' is a JSON object"},
    {"nested junk in a tensor", "{\"a\":{\"dtype\":{\"dtype\":\"F32\"},\"shape\":[[[]]],\"data_offsets\":[[0],[4]]}}", 4, "dtype is a JSON object"},
};

static void test_hostile_headers(void)
{
    int before = tally.cases;
    size_t n = sizeof hostile / sizeof hostile[0];
    for (size_t i = 0; i < n; i++) {
        put_header(hostile[i].json, hostile[i].data_bytes);
        try_open(hostile[i].what, MUST_REJECT);
        CHECK(strstr(gptq_errmsg(), hostile[i].want), "%s: message lacks '%s': %s", hostile[i].what, hostile[i].want,
              gptq_errmsg());
    }

    /* a name of 1025 bytes; 1024 is fine */
    for (int len = 1024; len <= 1025; len++) {
        char *json = malloc((size_t)len + 128);
        json[0] = '{';
        json[1] = '"';
        memset(json + 2, 'n', (size_t)len);
        strcpy(json + 2 + len, "\":" T("U8", "[1]", "[0,1]") "}");
        put_header(json, 1);
        try_open(len == 1024 ? "1024-byte name" : "1025-byte name", len == 1024 ? MUST_ACCEPT : MUST_REJECT);
        free(json);
    }

    /* nesting deeper than jansson's parser allows, and merely deep */
    for (int depth = 100; depth <= 5000; depth *= 50) {
        size_t bytes = 32 + 8 * (size_t)depth;
        char *json = malloc(bytes), *p = json;
        p += sprintf(p, "{\"a\":");
        for (int d = 0; d < depth; d++)
            p += sprintf(p, "{\"a\":");
        p += sprintf(p, "1");
        for (int d = 0; d <= depth; d++)
            *p++ = '}';
        *p = '\0';
        put_header(json, 0);
        try_open(depth > 2048 ? "nesting 5000 deep" : "nesting 100 deep", MUST_REJECT);
        free(json);
    }

    /* length prefixes that lie */
    static const char small[] = "{\"a\":" T("U8", "[1]", "[0,1]") "}";
    const struct {
        const char *what;
        uint64_t length;
        const char *want;
    } lengths[] = {
        {"header length 0", 0, "header length is 0"},
        {"header length 2^64-1", UINT64_MAX, "exceeds the limit"},
        {"header length 2^63", (uint64_t)1 << 63, "exceeds the limit"},
        {"header length 100 MiB + 1", GPTQ_ST_MAX_HEADER_BYTES + 1, "exceeds the limit"},
        {"header length past EOF", strlen(small) + 2, "runs past the end of the file"},
        {"header length cuts the JSON", strlen(small) - 1, "not valid JSON"},
        {"header length 2^32 + real", ((uint64_t)1 << 32) + strlen(small), "exceeds the limit"},
    };
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        put_parts(lengths[i].length, small, strlen(small), 1);
        try_open(lengths[i].what, MUST_REJECT);
        CHECK(strstr(gptq_errmsg(), lengths[i].want), "%s: message lacks '%s': %s", lengths[i].what, lengths[i].want,
              gptq_errmsg());
    }
    /* trailing spaces (how writers pad) and an empty model are both valid */
    put_header("{\"a\":" T("U8", "[1]", "[0,1]") "}      ", 1);
    try_open("space-padded header", MUST_ACCEPT);
    put_header("{}", 0);
    try_open("no tensors", MUST_ACCEPT);
    put_header("{\"__metadata__\":{\"k\":\"v\"},\"s\":" T("F32", "[]", "[0,4]") ",\"z\":" T("F32", "[0,5]", "[4,4]") "}", 4);
    try_open("scalar and empty tensors", MUST_ACCEPT);

    /* not a regular file */
    char saved[sizeof path];
    memcpy(saved, path, sizeof path);
    snprintf(path, sizeof path, "%s", tmpdir);
    try_open("a directory", MUST_REJECT);
    memcpy(path, saved, sizeof path);
    printf("hostile headers: %d cases\n", tally.cases - before);
}

/* ---- seeded mutations --------------------------------------------------------- */

static void test_bit_flips(int n_cases)
{
    uint64_t seed = 20261124;
    unsigned char *buf = malloc(base_bytes);
    int before = tally.cases, accepted_before = tally.accepted;
    size_t header_end = 8 + (size_t)base_header_bytes;
    for (int c = 0; c < n_cases; c++) {
        memcpy(buf, base, base_bytes);
        int flips = 1 + (int)(test_rand_u64(&seed) % 3);
        /* nine in ten cases hit the length prefix or the header, where the
         * reader's decisions are; the rest anywhere */
        size_t span = c % 10 == 9 ? base_bytes : header_end;
        for (int k = 0; k < flips; k++) {
            size_t pos = (size_t)(test_rand_u64(&seed) % span);
            buf[pos] ^= (unsigned char)(1u << (test_rand_u64(&seed) % 8));
        }
        put_file(buf, base_bytes);
        char what[64];
        snprintf(what, sizeof what, "bit flip case %d", c);
        int saved = verbose;
        verbose = 0;
        try_open(what, EITHER);
        verbose = saved;
    }
    free(buf);
    printf("bit flips: %d cases, %d rejected, %d accepted and verified\n", tally.cases - before,
           (tally.cases - before) - (tally.accepted - accepted_before), tally.accepted - accepted_before);
}

/* Replace one token of the header (a number, a string or a bracket) by a
 * value picked to sit on a boundary. */
static void test_token_substitutions(int n_cases)
{
    static const char *const values[] = {
        "-1", "0", "1", "3", "4", "8", "2147483648", "4294967296", "9007199254740993", "9223372036854775807",
        "-9223372036854775808", "18446744073709551616", "1e3", "0.5", "\"F32\"", "\"BF16\"", "\"U8\"", "\"\"",
        "null", "true", "[]", "{}", "[0,0]", "[1,1,1,1,1,1,1,1]", "\"__metadata__\"", "{\"x\":1}",
    };
    const size_t n_values = sizeof values / sizeof values[0];
    const char *header = (const char *)base + 8;
    size_t header_bytes = (size_t)base_header_bytes, data_bytes = base_bytes - 8 - header_bytes;
    char *json = malloc(header_bytes + 64);
    uint64_t seed = 77;
    int before = tally.cases, accepted_before = tally.accepted;
    for (int c = 0; c < n_cases; c++) {
        /* find a token start at or after a random position */
        size_t pos = (size_t)(test_rand_u64(&seed) % header_bytes), end;
        while (pos < header_bytes && !strchr("-0123456789\"[{", header[pos]))
            pos++;
        if (pos >= header_bytes)
            continue;
        if (header[pos] == '"') {
            end = pos + 1;
            while (end < header_bytes && header[end] != '"')
                end++;
            end++;
        } else if (header[pos] == '[' || header[pos] == '{') {
            char close = header[pos] == '[' ? ']' : '}';
            end = pos + 1;
            while (end < header_bytes && header[end] != close)
                end++;
            end++;
        } else {
            end = pos + 1;
            while (end < header_bytes && strchr("0123456789", header[end]))
                end++;
        }
        if (end > header_bytes)
            end = header_bytes;
        const char *v = values[test_rand_u64(&seed) % n_values];
        size_t vlen = strlen(v), new_bytes = pos + vlen + (header_bytes - end);
        memcpy(json, header, pos);
        memcpy(json + pos, v, vlen);
        memcpy(json + pos + vlen, header + end, header_bytes - end);
        put_parts(new_bytes, json, new_bytes, data_bytes);
        char what[64];
        snprintf(what, sizeof what, "substitution case %d", c);
        int saved = verbose;
        verbose = 0;
        try_open(what, EITHER);
        verbose = saved;
    }
    free(json);
    printf("token substitutions: %d cases, %d rejected, %d accepted and verified\n", tally.cases - before,
           (tally.cases - before) - (tally.accepted - accepted_before), tally.accepted - accepted_before);
}

int main(int argc, char **argv)
{
    fixture_path("tiny-llama"); /* exits 77 (skip) without fixtures, as every test does */
    verbose = argc < 2 || strcmp(argv[1], "-q") != 0;
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_safetensors_fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    case_fd = memfd_create("safetensors_fuzz_case", MFD_CLOEXEC);
    if (case_fd < 0) {
        fprintf(stderr, "memfd_create: %s\n", strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", case_fd);
    make_base();
    test_base_and_truncations();
    test_hostile_headers();
    test_bit_flips(5000);
    test_token_substitutions(3000);
    printf("safetensors_fuzz: %d files, %d rejected with a message, %d accepted and verified\n", tally.cases,
           tally.rejected, tally.accepted);
    close(case_fd);
    rmdir(tmpdir);
    free(base);
    return test_result();
}
