/* tests/test_tokenizer.c: model/tokenizer.c against the fixture's references.
 *
 * - tokenizer_vectors.json (ids and decoded text written by HF `tokenizers`):
 *   every vector must match exactly;
 * - reference_logits.json: the first 128 ids of eval.txt and the whole
 *   file's token count (41578);
 * - decode is total: random id sequences decode to valid UTF-8 (checked by
 *   an independent validator here), out-of-range ids are GPTQ_ERR_ARG;
 * - streaming bytes of each token joined equal decode for the vectors;
 * - concurrent encodes on one handle equal the serial result;
 * - an inline SentencePiece-style tokenizer (byte_fallback, Prepend/Replace
 *   normalizer, Llama 2 decoder) with ids worked out by hand;
 * - load errors name the field or type at fault.
 * Exits 77 (skip) when the fixtures are absent. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gptq/tokenizer.h"

static int failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)n + 1);
    if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data) {
        data[n] = '\0';
        *len = (size_t)n;
    }
    return data;
}

/* Independent UTF-8 validator (RFC 3629), not the tokenizer's own. */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { k = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { k = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { k = 4; cp = c & 0x07; }
        else return 0;
        if (i + k > n) return 0;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k;
    }
    return 1;
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "  %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static void test_vectors(const gptq_tokenizer *tok, const char *dir)
{
    char path[4096];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/tokenizer_vectors.json", dir);
    json_t *root = json_load_file(path, 0, &jerr);
    CHECK(json_is_array(root), "%s: %s", path, jerr.text);
    size_t i;
    json_t *v;
    json_array_foreach(root, i, v) {
        json_t *text_j = json_object_get(v, "text"), *ids_j = json_object_get(v, "ids");
        const char *text = json_string_value(text_j);
        size_t text_len = json_string_length(text_j);
        const char *decoded = json_string_value(json_object_get(v, "decoded"));
        size_t n_expect = json_array_size(ids_j);
        int32_t *expect = malloc((n_expect + 1) * sizeof *expect);
        for (size_t k = 0; k < n_expect; k++) expect[k] = (int32_t)json_integer_value(json_array_get(ids_j, k));

        int32_t *ids = NULL;
        size_t n = 0;
        gptq_status st = gptq_tokenizer_encode(tok, text, text_len, 0, &ids, &n);
        CHECK(st == GPTQ_OK, "vector %zu: encode failed: %s", i, gptq_errmsg());
        int same = st == GPTQ_OK && n == n_expect && (n == 0 || !memcmp(ids, expect, n * sizeof *ids));
        CHECK(same, "vector %zu (\"%s\"): ids differ", i, text);
        if (!same) {
            print_ids("expected", expect, n_expect);
            print_ids("got", ids, n);
        }

        char *out = NULL;
        size_t out_len = 0;
        st = gptq_tokenizer_decode(tok, expect, n_expect, &out, &out_len);
        CHECK(st == GPTQ_OK, "vector %zu: decode failed: %s", i, gptq_errmsg());
        CHECK(st == GPTQ_OK && out_len == strlen(decoded) && !memcmp(out, decoded, out_len),
              "vector %zu: decoded \"%s\", expected \"%s\"", i, out ? out : "", decoded);

        /* streaming: the tokens' bytes joined are the decoded text (these
         * vectors decode without U+FFFD) */
        char *joined = malloc(out_len * 4 + 64);
        size_t jn = 0;
        for (size_t k = 0; k < n_expect; k++) {
            const char *b;
            size_t bl;
            CHECK(gptq_tokenizer_token_bytes(tok, expect[k], k == 0, &b, &bl) == GPTQ_OK, "token_bytes");
            if (jn + bl < out_len * 4 + 64) { memcpy(joined + jn, b, bl); jn += bl; }
        }
        CHECK(jn == out_len && !memcmp(joined, out, jn), "vector %zu: streamed bytes differ from decode", i);
        free(joined);
        free(out);
        free(ids);
        free(expect);
    }
    printf("tokenizer_vectors.json: %zu vectors checked\n", json_array_size(root));
    json_decref(root);
}

static void test_eval(const gptq_tokenizer *tok, const char *dir, const char *text, size_t len)
{
    char path[4096];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/reference_logits.json", dir);
    json_t *root = json_load_file(path, 0, &jerr);
    CHECK(root != NULL, "%s: %s", path, jerr.text);
    json_t *ref = json_object_get(root, "token_ids");
    json_int_t n_ref = json_integer_value(json_object_get(root, "eval_tokens"));
    int32_t *ids;
    size_t n;
    CHECK(gptq_tokenizer_encode(tok, text, len, 0, &ids, &n) == GPTQ_OK, "encode eval.txt: %s", gptq_errmsg());
    CHECK((json_int_t)n == n_ref && n_ref == 41578, "eval.txt: %zu tokens, reference says %lld",
          n, (long long)n_ref);
    size_t n_prefix = json_array_size(ref);
    CHECK(n_prefix == 128, "reference token_ids has %zu ids, expected 128", n_prefix);
    for (size_t i = 0; i < n_prefix && i < n; i++) {
        int32_t want = (int32_t)json_integer_value(json_array_get(ref, i));
        if (ids[i] != want) {
            CHECK(0, "eval.txt id %zu: got %d, reference %d", i, (int)ids[i], (int)want);
            break;
        }
    }
    /* decode(encode(x)) == x for this clean text */
    char *out;
    size_t out_len;
    CHECK(gptq_tokenizer_decode(tok, ids, n, &out, &out_len) == GPTQ_OK, "decode eval.txt");
    CHECK(out_len == len && !memcmp(out, text, len), "decode(encode(eval.txt)) is not eval.txt");
    free(out);
    free(ids);
    json_decref(root);
}

static void test_decode_random(const gptq_tokenizer *tok)
{
    uint64_t state = 0x9E3779B97F4A7C15ull;
    int vocab = gptq_tokenizer_vocab_size(tok);
    int32_t ids[64];
    for (int round = 0; round < 2000; round++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = (size_t)(state >> 58); /* 0..63 */
        for (size_t i = 0; i < n; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            /* favour single-byte tokens so split multi-byte characters are common */
            int32_t id = (int32_t)((state >> 33) % (uint64_t)vocab);
            ids[i] = (state >> 20) & 1 ? id % 256 : id;
        }
        char *out;
        size_t out_len;
        gptq_status st = gptq_tokenizer_decode(tok, ids, n, &out, &out_len);
        CHECK(st == GPTQ_OK, "random decode %d failed: %s", round, gptq_errmsg());
        if (st) continue;
        CHECK(valid_utf8((const unsigned char *)out, out_len) && strlen(out) <= out_len,
              "random decode %d: invalid UTF-8", round);
        free(out);
    }
    int32_t bad[2] = {5, vocab};
    char *out = NULL;
    size_t out_len;
    CHECK(gptq_tokenizer_decode(tok, bad, 2, &out, &out_len) == GPTQ_ERR_ARG && !out,
          "out-of-range id must be GPTQ_ERR_ARG");
    CHECK(strstr(gptq_errmsg(), "4096") != NULL, "message should name the id: %s", gptq_errmsg());
    bad[1] = -1;
    CHECK(gptq_tokenizer_decode(tok, bad, 2, &out, &out_len) == GPTQ_ERR_ARG, "negative id");
    /* a lone lead byte then ASCII: one U+FFFD, as HF's from_utf8_lossy */
    int32_t split[2] = {195, 97}; /* "Ã" byte char = 0xC3, then "a" */
    CHECK(gptq_tokenizer_decode(tok, split, 2, &out, &out_len) == GPTQ_OK &&
          out_len == 4 && !memcmp(out, "\xEF\xBF\xBD" "a", 4), "0xC3 'a' must decode to U+FFFD a");
    free(out);
}

static void test_api(const gptq_tokenizer *tok)
{
    CHECK(gptq_tokenizer_vocab_size(tok) == 4096, "vocab_size %d, expected 4096", gptq_tokenizer_vocab_size(tok));
    CHECK(gptq_tokenizer_token_id(tok, "<|endoftext|>") == 4095, "id of <|endoftext|>");
    CHECK(gptq_tokenizer_token_id(tok, "no such token") == -1, "absent token must be -1");
    CHECK(gptq_tokenizer_token_id(tok, "a") == 97, "id of a");
    int32_t *ids;
    size_t n;
    CHECK(gptq_tokenizer_encode(tok, "ab\xC3(", 4, 0, &ids, &n) == GPTQ_ERR_ARG,
          "invalid UTF-8 must be GPTQ_ERR_ARG");
    CHECK(strstr(gptq_errmsg(), "byte 2") != NULL, "message should give the offset: %s", gptq_errmsg());
    CHECK(gptq_tokenizer_encode(tok, "", 0, 1, &ids, &n) == GPTQ_OK && n == 0 && !ids,
          "empty text, no template: no ids");
    gptq_tokenizer *none = NULL;
    CHECK(gptq_tokenizer_load("/nonexistent/tokenizer.json", &none) == GPTQ_ERR_NOTFOUND && !none,
          "missing file must be GPTQ_ERR_NOTFOUND");
}

struct thread_arg {
    const gptq_tokenizer *tok;
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    gptq_status st;
};

static void *encode_thread(void *p)
{
    struct thread_arg *a = p;
    a->st = gptq_tokenizer_encode(a->tok, a->text, a->len, 0, &a->ids, &a->n);
    return NULL;
}

static void test_threads(const gptq_tokenizer *tok, const char *text, size_t len)
{
    int32_t *serial;
    size_t n_serial;
    CHECK(gptq_tokenizer_encode(tok, text, len, 0, &serial, &n_serial) == GPTQ_OK, "serial encode");
    enum { N_THREADS = 4 };
    pthread_t th[N_THREADS];
    struct thread_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i] = (struct thread_arg){tok, text, len, NULL, 0, GPTQ_OK};
        pthread_create(&th[i], NULL, encode_thread, &args[i]);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].st == GPTQ_OK && args[i].n == n_serial &&
              !memcmp(args[i].ids, serial, n_serial * sizeof *serial),
              "thread %d: concurrent encode differs from serial", i);
        free(args[i].ids);
    }
    free(serial);
}

/* A SentencePiece-style BPE small enough to work out by hand:
 * vocab <unk> <s> </s> <0x00>..<0xFF> ▁ a b ▁a ab ▁ab; merges "▁ a", "a b", "▁a b".
 * "ab é" -> normalizer "▁ab▁é" -> ▁ab, ▁, <0xC3>, <0xA9> (é is not in vocab). */
static void test_sentencepiece(void)
{
    char path[] = "/tmp/gptq_test_tokenizer_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\"version\":\"1.0\",\"added_tokens\":["
               "{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false},"
               "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
               "{\"id\":2,\"content\":\"</s>\",\"special\":true,\"normalized\":false}],"
               "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
               "{\"type\":\"Prepend\",\"prepend\":\"\xE2\x96\x81\"},"
               "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"}]},"
               "\"pre_tokenizer\":null,"
               "\"post_processor\":{\"type\":\"TemplateProcessing\","
               "\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
               "\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
               "\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
               "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xE2\x96\x81\"},\"content\":\" \"},"
               "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
               "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
               "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,\"fuse_unk\":true,"
               "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2");
    for (int b = 0; b < 256; b++) fprintf(f, ",\"<0x%02X>\":%d", b, 3 + b);
    fprintf(f, ",\"\xE2\x96\x81\":259,\"a\":260,\"b\":261,\"\xE2\x96\x81" "a\":262,\"ab\":263,"
               "\"\xE2\x96\x81" "ab\":264},"
               "\"merges\":[\"\xE2\x96\x81 a\",\"a b\",\"\xE2\x96\x81" "a b\"]}}");
    fclose(f);
    gptq_tokenizer *tok = NULL;
    gptq_status st = gptq_tokenizer_load(path, &tok);
    remove(path);
    CHECK(st == GPTQ_OK, "inline SentencePiece tokenizer: %s", gptq_errmsg());
    if (st) return;
    int32_t *ids;
    size_t n;
    const char *text = "ab \xC3\xA9";
    int32_t expect[] = {1, 264, 259, 3 + 0xC3, 3 + 0xA9};
    CHECK(gptq_tokenizer_encode(tok, text, strlen(text), 1, &ids, &n) == GPTQ_OK && n == 5 &&
          !memcmp(ids, expect, sizeof expect), "SentencePiece encode of \"ab é\"");
    if (n == 5) {
        char *out;
        size_t len;
        /* decode keeps <s> (HF skip_special_tokens=False); Strip eats one leading space */
        CHECK(gptq_tokenizer_decode(tok, ids, n, &out, &len) == GPTQ_OK && !strcmp(out, "<s> ab \xC3\xA9"),
              "SentencePiece decode: got \"%s\"", out);
        free(out);
        /* no ids at all through the whole decoder chain (Replace, ByteFallback,
         * Fuse, Strip): "" -- under UBSan this caught pointer arithmetic on
         * the empty list's NULL buffer */
        CHECK(gptq_tokenizer_decode(tok, ids, 0, &out, &len) == GPTQ_OK && len == 0 && !out[0],
              "decode of no ids must be \"\"");
        free(out);
        const char *bytes;
        CHECK(gptq_tokenizer_token_bytes(tok, 259, 1, &bytes, &len) == GPTQ_OK && len == 0,
              "the first token's stripped space streams nothing");
        int32_t lone[] = {264, 3 + 0xC3, 260}; /* ▁ab <0xC3> a: a lone lead byte */
        CHECK(gptq_tokenizer_decode(tok, lone, 3, &out, &len) == GPTQ_OK &&
              !strcmp(out, "ab\xEF\xBF\xBD" "a"), "lone fallback byte must be U+FFFD: \"%s\"", out);
        free(out);
    }
    free(ids);
    /* "<s>" in text is an added token; the segment after it gets its own ▁ */
    int32_t expect2[] = {1, 264};
    CHECK(gptq_tokenizer_encode(tok, "<s>ab", 5, 0, &ids, &n) == GPTQ_OK && n == 2 &&
          !memcmp(ids, expect2, sizeof expect2), "\"<s>ab\" must be <s> ▁ab");
    free(ids);
    gptq_tokenizer_free(tok);
}

/* Load `json` from a temporary file; expect status `want` and a message
 * containing `needle`. */
static void expect_load_error(const char *json, gptq_status want, const char *needle)
{
    char path[] = "/tmp/gptq_test_tokenizer_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    fputs(json, f);
    fclose(f);
    gptq_tokenizer *tok = NULL;
    gptq_status st = gptq_tokenizer_load(path, &tok);
    remove(path);
    CHECK(st == want && !tok && strstr(gptq_errmsg(), needle),
          "load of %s: status %d (want %d), message \"%s\" (want it to name \"%s\")", json, (int)st,
          (int)want, gptq_errmsg(), needle);
    gptq_tokenizer_free(tok);
}

static void test_load_errors(void)
{
    expect_load_error("{\"model\": ", GPTQ_ERR_FORMAT, "line");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", GPTQ_ERR_UNSUPPORTED, "Unigram");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
                      GPTQ_ERR_FORMAT, "merges[0]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}",
                      GPTQ_ERR_FORMAT, "\"a\"");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, \"model\": {\"type\": \"BPE\", "
                      "\"vocab\": {\"a\": 0}, \"merges\": []}}", GPTQ_ERR_UNSUPPORTED, "BertPreTokenizer");
    expect_load_error("{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"model\": {\"type\": \"BPE\", "
                      "\"vocab\": {\"a\": 0}, \"merges\": []}}", GPTQ_ERR_UNSUPPORTED, "BertNormalizer");
    expect_load_error("{\"decoder\": {\"type\": \"WordPiece\"}, \"model\": {\"type\": \"BPE\", "
                      "\"vocab\": {\"a\": 0}, \"merges\": []}}", GPTQ_ERR_UNSUPPORTED, "WordPiece");
    expect_load_error("{\"post_processor\": {\"type\": \"Bogus\"}, \"model\": {\"type\": \"BPE\", "
                      "\"vocab\": {\"a\": 0}, \"merges\": []}}", GPTQ_ERR_UNSUPPORTED, "Bogus");
    /* a parse error never quotes the file's text back */
    expect_load_error("TOPSECRET", GPTQ_ERR_FORMAT, "line");
    CHECK(!strstr(gptq_errmsg(), "TOPSECRET"), "message quotes the file: %s", gptq_errmsg());
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                      "\"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                      "\"merges\": []}}", GPTQ_ERR_UNSUPPORTED, "Split regex");
}

/* calib.txt (452 KB) must encode in well under a second; 2 s is the bound
 * here so a loaded CI machine does not fail it, while a quadratic
 * regression (minutes) still does. */
static void test_speed(const gptq_tokenizer *tok, const char *dir)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/calib.txt", dir);
    char *text = read_file(path, &len);
    if (!text) return;
    struct timespec t0, t1;
    int32_t *ids = NULL;
    size_t n = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    gptq_status st = gptq_tokenizer_encode(tok, text, len, 0, &ids, &n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK(st == GPTQ_OK, "encode calib.txt: %s", gptq_errmsg());
    printf("calib.txt: %zu bytes -> %zu tokens in %.1f ms\n", len, n, ms);
    CHECK(ms < 2000.0, "calib.txt took %.1f ms to encode (bound 2000 ms)", ms);
    free(ids);
    free(text);
}

int main(void)
{
    const char *fixtures = getenv("GPTQ_FIXTURES");
    char dir[2048], path[4096];
    snprintf(dir, sizeof dir, "%s/tiny-llama", fixtures ? fixtures : "../shared/fixtures");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        printf("SKIP: %s not found (set GPTQ_FIXTURES)\n", path);
        return 77;
    }
    fclose(probe);
    gptq_tokenizer *tok = NULL;
    if (gptq_tokenizer_load(path, &tok)) {
        fprintf(stderr, "FAIL: load %s: %s\n", path, gptq_errmsg());
        return 1;
    }
    char eval_path[4096];
    size_t eval_len = 0;
    snprintf(eval_path, sizeof eval_path, "%s/eval.txt", dir);
    char *eval = read_file(eval_path, &eval_len);
    CHECK(eval != NULL, "cannot read %s", eval_path);

    test_api(tok);
    test_vectors(tok, dir);
    if (eval) {
        test_eval(tok, dir, eval, eval_len);
        test_threads(tok, eval, eval_len);
    }
    test_decode_random(tok);
    test_speed(tok, dir);
    test_sentencepiece();
    test_load_errors();

    free(eval);
    gptq_tokenizer_free(tok);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
