/* tests/tokenize_cli.c: tokenize a file with our tokenizer, for comparing
 * against Hugging Face `tokenizers` (tests/tokenizer_hf.py).
 *
 *   tokenize_cli TOKENIZER_JSON TEXT_FILE [--special] [--lines] [--time]
 *   tokenize_cli TOKENIZER_JSON --decode IDS_FILE
 *   tokenize_cli MODEL.gguf --export-json OUT   (the tokenizer.json gptqd makes of it)
 *
 * Encode prints one id per line; --lines encodes each line (newline kept)
 * separately and prints one output line per input line, its ids separated
 * by spaces (an empty line when it has none); --time prints
 * the encode time in milliseconds to stderr. --decode reads whitespace-
 * separated ids and prints the decoded text exactly (no newline added). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/gguf.h"
#include "model/gguf_hf.h"
#include "gptq/tokenizer.h"

static int export_json(const char *gguf, const char *out)
{
    gptq_gguf *g = NULL;
    char *json = NULL;
    size_t len = 0;
    if (gptq_gguf_open(gguf, &g) || gptq_gguf_tokenizer_json(g, &json, &len)) {
        fprintf(stderr, "tokenize_cli: %s\n", gptq_errmsg());
        gptq_gguf_close(g);
        return 1;
    }
    FILE *f = fopen(out, "wb");
    int ok = f && fwrite(json, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = 0;
    free(json);
    gptq_gguf_close(g);
    if (!ok)
        fprintf(stderr, "tokenize_cli: cannot write %s\n", out);
    return ok ? 0 : 1;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t cap = 0, n = 0;
    if (!f) return NULL;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = (n + 65536 + 1) * 2;
            char *grown = realloc(data, cap);
            if (!grown) { free(data); fclose(f); return NULL; }
            data = grown;
        }
        size_t got = fread(data + n, 1, 65536, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    data[n] = '\0';
    *len = n;
    return data;
}

static int encode_print(const gptq_tokenizer *tok, const char *text, size_t len, int special,
                        int one_line)
{
    int32_t *ids;
    size_t n;
    if (gptq_tokenizer_encode(tok, text, len, special, &ids, &n)) {
        fprintf(stderr, "tokenize_cli: %s\n", gptq_errmsg());
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        printf(one_line ? "%s%d" : "%.0s%d\n", one_line && i ? " " : "", (int)ids[i]);
    free(ids);
    return 0;
}

int main(int argc, char **argv)
{
    int special = 0, lines = 0, timing = 0, rc = 1;
    const char *decode_path = NULL;
    gptq_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len;
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_JSON TEXT_FILE [--special] [--lines] [--time]\n"
                        "       %s TOKENIZER_JSON --decode IDS_FILE\n", argv[0], argv[0]);
        return 2;
    }
    if (!strcmp(argv[2], "--export-json"))
        return argc == 4 ? export_json(argv[1], argv[3]) : 2;
    int decoding = !strcmp(argv[2], "--decode");
    for (int i = decoding ? 4 : 3; i < argc; i++) {
        if (!strcmp(argv[i], "--special")) special = 1;
        else if (!strcmp(argv[i], "--lines")) lines = 1;
        else if (!strcmp(argv[i], "--time")) timing = 1;
        else { fprintf(stderr, "tokenize_cli: unknown option %s\n", argv[i]); return 2; }
    }
    if (decoding) {
        if (argc < 4) { fprintf(stderr, "tokenize_cli: --decode needs IDS_FILE\n"); return 2; }
        decode_path = argv[3];
    }
    if (gptq_tokenizer_load(argv[1], &tok)) {
        fprintf(stderr, "tokenize_cli: %s\n", gptq_errmsg());
        return 1;
    }
    if (!(text = read_file(decode_path ? decode_path : argv[2], &len))) {
        fprintf(stderr, "tokenize_cli: cannot read %s\n", decode_path ? decode_path : argv[2]);
        goto done;
    }
    if (decode_path) {
        size_t n = 0, cap = 1024;
        int32_t *ids = malloc(cap * sizeof *ids);
        char *p = text, *end;
        char *out;
        size_t out_len;
        if (!ids) goto done;
        for (long v = strtol(p, &end, 10); end != p; v = strtol(p, &end, 10)) {
            if (n == cap) {
                int32_t *grown = realloc(ids, (cap *= 2) * sizeof *ids);
                if (!grown) { free(ids); goto done; }
                ids = grown;
            }
            ids[n++] = (int32_t)v;
            p = end;
        }
        if (gptq_tokenizer_decode(tok, ids, n, &out, &out_len)) {
            fprintf(stderr, "tokenize_cli: %s\n", gptq_errmsg());
            free(ids);
            goto done;
        }
        fwrite(out, 1, out_len, stdout);
        free(out);
        free(ids);
        rc = 0;
        goto done;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (lines) {
        size_t start = 0;
        while (start < len) {
            const char *nl = memchr(text + start, '\n', len - start);
            size_t end = nl ? (size_t)(nl - text) + 1 : len;
            if (encode_print(tok, text + start, end - start, special, 1)) goto done;
            printf("\n");
            start = end;
        }
    } else if (encode_print(tok, text, len, special, 0)) {
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (timing)
        fprintf(stderr, "encode_ms %.3f\n",
                (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    rc = 0;
done:
    free(text);
    gptq_tokenizer_free(tok);
    return rc;
}
