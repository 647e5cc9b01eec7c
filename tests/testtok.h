/* tests/testtok.h: a fixture text tokenized, for the tests that quantize or
 * evaluate the fixture model (include after testutil.h). */
#ifndef GPTQ_TESTS_TESTTOK_H
#define GPTQ_TESTS_TESTTOK_H

#include "gptq/tokenizer.h"

/* The ids of the file at `path` (no BOS), malloc'ed, their count in *n;
 * ends the program on failure (the test cannot go on without its text). */
static inline int32_t *test_tokenize_file(const gptq_tokenizer *tok, const char *path, size_t *n)
{
    size_t len;
    char *text = test_read_file(path, &len);
    int32_t *ids = NULL;
    if (!text || gptq_tokenizer_encode(tok, text, len, 0, &ids, n) != GPTQ_OK) {
        fprintf(stderr, "FAIL: tokenize %s: %s\n", path, text ? gptq_errmsg() : "cannot read it");
        exit(1);
    }
    free(text);
    return ids;
}

#endif
