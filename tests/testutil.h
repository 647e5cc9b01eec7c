/* tests/testutil.h: the few helpers every test program shares: CHECK that
 * prints expected/got/where, fixture paths that skip (exit 77) when the
 * fixtures are absent, a seeded RNG. Header-only so each test stays one file. */
#ifndef GPTQ_TESTUTIL_H
#define GPTQ_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int test_failures;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            test_failures++;                                                                      \
        }                                                                                         \
    } while (0)

/* CHECK that a gptq_status call succeeded; prints the error message. */
#define CHECK_OK(call)                                                                            \
    do {                                                                                          \
        gptq_status st_ = (call);                                                                 \
        if (st_ != GPTQ_OK) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,              \
                    gptq_status_name(st_), gptq_errmsg());                                        \
            test_failures++;                                                                      \
        }                                                                                         \
    } while (0)

static inline int test_result(void)
{
    if (test_failures)
        fprintf(stderr, "%d check(s) failed\n", test_failures);
    return test_failures ? 1 : 0;
}

/* $GPTQ_FIXTURES/<rel>, or exit 77 (skip) when the fixtures are absent. */
static inline const char *fixture_path(const char *rel)
{
    static char buf[8][4096];
    static int next;
    const char *root = getenv("GPTQ_FIXTURES");
    struct stat sb;
    if (!root || stat(root, &sb) != 0) {
        printf("SKIP: fixtures not found (GPTQ_FIXTURES=%s)\n", root ? root : "(unset)");
        exit(77);
    }
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", root, rel);
    if (stat(p, &sb) != 0) {
        printf("SKIP: fixture %s not found\n", p);
        exit(77);
    }
    return p;
}

/* A whole file, NUL-terminated, in malloc'ed memory (caller frees); its
 * length in *len. NULL if it cannot be read. */
static inline char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? (char *)malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

/* The real pretrained model scripts/fetch-models caches
 * (SmolLM2-135M-Instruct.Q4_1.gguf): $GPTQ_SMOLLM2, else in $GPTQ_CACHE, else
 * ${XDG_CACHE_HOME:-$HOME/.cache}/gptqd; exit 77 (skip) when it is absent. */
static inline const char *real_model_path(void)
{
    static char path[4096];
    const char *env = getenv("GPTQ_SMOLLM2"), *cache = getenv("GPTQ_CACHE");
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    const char *file = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
    struct stat sb;
    if (env && env[0])
        snprintf(path, sizeof path, "%s", env);
    else if (cache && cache[0])
        snprintf(path, sizeof path, "%s/%s", cache, file);
    else if (xdg && xdg[0])
        snprintf(path, sizeof path, "%s/gptqd/%s", xdg, file);
    else
        snprintf(path, sizeof path, "%s/.cache/gptqd/%s", home ? home : "", file);
    if (stat(path, &sb) != 0) {
        printf("SKIP: the real model is not at %s (run scripts/fetch-models)\n", path);
        exit(77);
    }
    return path;
}

/* splitmix64: small, seeded, identical everywhere. */
static inline uint64_t test_rand_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline double test_rand_uniform(uint64_t *s) /* [0, 1) */
{
    return (double)(test_rand_u64(s) >> 11) * 0x1p-53;
}

static inline double test_rand_normal(uint64_t *s)
{
    double u = test_rand_uniform(s), v = test_rand_uniform(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

#endif
