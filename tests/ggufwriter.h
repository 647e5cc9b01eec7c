/* tests/ggufwriter.h: a GGUF file built byte by byte, for the reader's tests
 * (test_gguf.c, test_gguf_fuzz.c). It writes whatever it is told, valid or
 * not, and records where each structural field (counts, lengths, types,
 * shapes, offsets) went so that a fuzzer can aim at them. Header-only. */
#ifndef GPTQ_TESTS_GGUFWRITER_H
#define GPTQ_TESTS_GGUFWRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GGUF_BUF_MAX_FIELDS = 1024 };

typedef struct gguf_buf {
    unsigned char *bytes;
    size_t len, cap;
    /* structural fields written so far: their offset and width (4 or 8) */
    size_t field_at[GGUF_BUF_MAX_FIELDS];
    int field_width[GGUF_BUF_MAX_FIELDS];
    int n_fields;
} gguf_buf;

static inline void gbuf_put(gguf_buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *grown = realloc(b->bytes, cap);
        if (!grown) {
            fprintf(stderr, "ggufwriter: out of memory\n");
            exit(1);
        }
        b->bytes = grown;
        b->cap = cap;
    }
    if (n)
        memcpy(b->bytes + b->len, src, n);
    b->len += n;
}

static inline void gbuf_u8(gguf_buf *b, uint8_t v) { gbuf_put(b, &v, 1); }
static inline void gbuf_u16(gguf_buf *b, uint16_t v) { gbuf_put(b, &v, 2); }
static inline void gbuf_u32(gguf_buf *b, uint32_t v) { gbuf_put(b, &v, 4); }
static inline void gbuf_u64(gguf_buf *b, uint64_t v) { gbuf_put(b, &v, 8); }
static inline void gbuf_f32(gguf_buf *b, float v) { gbuf_put(b, &v, 4); }
static inline void gbuf_f64(gguf_buf *b, double v) { gbuf_put(b, &v, 8); }

static inline void gbuf_mark(gguf_buf *b, int width)
{
    if (b->n_fields < GGUF_BUF_MAX_FIELDS) {
        b->field_at[b->n_fields] = b->len;
        b->field_width[b->n_fields++] = width;
    }
}

/* Structural fields: recorded for the fuzzer. */
static inline void gbuf_field32(gguf_buf *b, uint32_t v)
{
    gbuf_mark(b, 4);
    gbuf_u32(b, v);
}

static inline void gbuf_field64(gguf_buf *b, uint64_t v)
{
    gbuf_mark(b, 8);
    gbuf_u64(b, v);
}

/* A string: u64 length, the bytes. */
static inline void gbuf_strn(gguf_buf *b, const char *s, size_t n)
{
    gbuf_field64(b, n);
    gbuf_put(b, s, n);
}

static inline void gbuf_str(gguf_buf *b, const char *s) { gbuf_strn(b, s, strlen(s)); }

static inline void gbuf_header(gguf_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    gbuf_put(b, "GGUF", 4);
    gbuf_field32(b, version);
    gbuf_field64(b, n_tensors);
    gbuf_field64(b, n_kv);
}

/* A metadata key and its value type; the value follows. */
static inline void gbuf_key(gguf_buf *b, const char *key, uint32_t type)
{
    gbuf_str(b, key);
    gbuf_field32(b, type);
}

/* An array's element type and count; the elements follow. */
static inline void gbuf_array(gguf_buf *b, uint32_t elem, uint64_t n)
{
    gbuf_field32(b, elem);
    gbuf_field64(b, n);
}

static inline void gbuf_tensor(gguf_buf *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                               uint64_t offset)
{
    gbuf_str(b, name);
    gbuf_field32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        gbuf_field64(b, (uint64_t)ne[d]);
    gbuf_field32(b, type);
    gbuf_field64(b, offset);
}

/* Zeros up to file offset `len`. */
static inline void gbuf_zero_to(gguf_buf *b, size_t len)
{
    static const unsigned char zeros[256];
    while (b->len < len)
        gbuf_put(b, zeros, len - b->len < sizeof zeros ? len - b->len : sizeof zeros);
}

/* Zeros up to the next multiple of `alignment`; the new length. */
static inline size_t gbuf_align(gguf_buf *b, size_t alignment)
{
    gbuf_zero_to(b, (b->len + alignment - 1) / alignment * alignment);
    return b->len;
}

static inline int gbuf_write(const gguf_buf *b, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(b->bytes, 1, b->len, f);
    return (fclose(f) == 0 && n == b->len) ? 0 : -1;
}

static inline void gbuf_free(gguf_buf *b)
{
    free(b->bytes);
    memset(b, 0, sizeof *b);
}

#endif
