/* model/gguf.h: the GGUF file format (llama.cpp's, Ollama's), read.
 *
 * A GGUF file is: magic "GGUF", u32 version (2 or 3), u64 tensor count, u64
 * metadata count; the metadata as (string key, u32 type, value) triples;
 * the tensor infos as (string name, u32 n_dims, u64 ne[n_dims], u32
 * ggml_type, u64 offset); padding to `general.alignment` (default 32); the
 * data section, each tensor at its offset (a multiple of the alignment)
 * from the section's start. Strings are a u64 length and that many bytes
 * (no NUL); arrays a u32 element type, a u64 count and the elements, and
 * may nest. Everything is little-endian. ne[0] is the fastest-varying
 * dimension: a [rows, cols] matrix in row-major order has ne = {cols, rows}.
 *
 * The reader trusts nothing in the file: every count, length, type and
 * offset is checked against the file's size (with overflow checks) before
 * anything is allocated or read, so a hostile file gives GPTQ_ERR_FORMAT and
 * a message naming the field, never a fault or an allocation the file's own
 * bytes cannot back. Metadata and tensor infos are read into owned memory
 * when the file is opened; tensor data is read on demand with pread() into
 * caller memory, so a file truncated or rewritten while open gives an error
 * (GPTQ_ERR_IO / GPTQ_ERR_FORMAT), not SIGBUS. Messages never quote the
 * file's contents beyond key and tensor names (cut to 96 bytes).
 *
 * A handle is immutable once open: any number of threads may read tensors
 * and metadata through it at once. */
#ifndef GPTQ_MODEL_GGUF_H
#define GPTQ_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "gptq/error.h"
#include "quant/ggml_blocks.h" /* the tensor types (ggml_type) */

#ifdef __cplusplus
extern "C" {
#endif

/* Metadata value types, numbered as in the file. */
typedef enum gptq_gguf_type {
    GPTQ_GGUF_UINT8 = 0,
    GPTQ_GGUF_INT8 = 1,
    GPTQ_GGUF_UINT16 = 2,
    GPTQ_GGUF_INT16 = 3,
    GPTQ_GGUF_UINT32 = 4,
    GPTQ_GGUF_INT32 = 5,
    GPTQ_GGUF_FLOAT32 = 6,
    GPTQ_GGUF_BOOL = 7,
    GPTQ_GGUF_STRING = 8,
    GPTQ_GGUF_ARRAY = 9,
    GPTQ_GGUF_UINT64 = 10,
    GPTQ_GGUF_INT64 = 11,
    GPTQ_GGUF_FLOAT64 = 12,
    GPTQ_GGUF_TYPE_COUNT
} gptq_gguf_type;

/* A metadata value. Scalars are widened (u, i, f, b by type); strings point
 * into the handle and are not NUL-terminated; an array holds `n` values of
 * one type `elem`, each a gptq_gguf_value (nested arrays likewise; items is
 * NULL when n is 0). Strings are followed by a NUL byte in memory, which
 * makes them printable as C strings when they hold no NUL themselves. */
typedef struct gptq_gguf_value gptq_gguf_value;
struct gptq_gguf_value {
    gptq_gguf_type type;
    union {
        uint64_t u;  /* UINT8..UINT64 */
        int64_t i;   /* INT8..INT64 */
        double f;    /* FLOAT32, FLOAT64 */
        int b;       /* BOOL: 0 or 1 (a byte other than 0/1 is a format error) */
        struct {
            const char *ptr;
            uint64_t len;
        } str;       /* STRING */
        struct {
            gptq_gguf_type elem;
            uint64_t n;
            const gptq_gguf_value *items;
        } arr;       /* ARRAY */
    } v;
};

typedef struct gptq_gguf_kv {
    const char *key; /* NUL-terminated (a key holding a NUL byte is a format error) */
    gptq_gguf_value value;
} gptq_gguf_kv;

typedef struct gptq_gguf_tensor {
    const char *name; /* NUL-terminated (a NUL inside is a format error) */
    int type;         /* gptq_ggml_type */
    int n_dims;       /* 1..4 */
    int64_t ne[4];    /* ne[0] fastest, each >= 1 (ggml allows 0; an empty
                         tensor is refused here); entries past n_dims are 1 */
    int64_t numel;    /* product of ne */
    uint64_t offset;  /* from the data section's start; a multiple of the alignment */
    uint64_t bytes;   /* numel / block_elems * block_bytes (ne[0] a multiple of block_elems) */
} gptq_gguf_tensor;

typedef struct gptq_gguf gptq_gguf;

/* Sanity bounds on what a file may declare (each also bounded by the file's
 * size): metadata entries, tensors, array nesting (a top-level array is
 * depth 1). Values and strings bound the memory a header can make the
 * reader allocate: each value in memory is a gptq_gguf_value (32 bytes)
 * however few bytes it takes in the file. */
enum {
    GPTQ_GGUF_MAX_KV = 1 << 20,
    GPTQ_GGUF_MAX_TENSORS = 1 << 20,
    GPTQ_GGUF_MAX_DEPTH = 8,
    GPTQ_GGUF_MAX_NAME = 4096,       /* bytes of a key or tensor name */
    GPTQ_GGUF_MAX_VALUES = 1 << 24,  /* metadata values in all, array elements included */
    GPTQ_GGUF_MAX_STRING = 1 << 28,  /* bytes of one string value */
};

/* Open and validate the GGUF file `path` (O_RDONLY|O_NONBLOCK|O_CLOEXEC,
 * regular files only). *out owns everything until gptq_gguf_close.
 * Errors: GPTQ_ERR_NOTFOUND / GPTQ_ERR_PERMISSION / GPTQ_ERR_IO (cannot open
 * or read; not a regular file), GPTQ_ERR_FORMAT (bad magic or version, a
 * count, length, type, shape, offset or alignment the file cannot hold, two
 * tensors overlapping or sharing a name, a key repeated: the message names
 * the field), GPTQ_ERR_NOMEM. *out is NULL on error. */
gptq_status gptq_gguf_open(const char *path, gptq_gguf **out);

/* The same on an open descriptor (the caller keeps its fd; the handle
 * dup()s it). `name` labels messages (a path, usually). */
gptq_status gptq_gguf_open_fd(int fd, const char *name, gptq_gguf **out);

/* Close the file and free everything; NULL is a no-op. */
void gptq_gguf_close(gptq_gguf *g);

uint32_t gptq_gguf_version(const gptq_gguf *g);
uint32_t gptq_gguf_alignment(const gptq_gguf *g);
/* Label given at open (the path). */
const char *gptq_gguf_name(const gptq_gguf *g);

size_t gptq_gguf_kv_count(const gptq_gguf *g);
const gptq_gguf_kv *gptq_gguf_kv_at(const gptq_gguf *g, size_t i); /* NULL past the end */
const gptq_gguf_kv *gptq_gguf_find_kv(const gptq_gguf *g, const char *key); /* NULL if absent */

size_t gptq_gguf_tensor_count(const gptq_gguf *g);
const gptq_gguf_tensor *gptq_gguf_tensor_at(const gptq_gguf *g, size_t i); /* file order */
const gptq_gguf_tensor *gptq_gguf_find_tensor(const gptq_gguf *g, const char *name);

/* Read tensor t's t->bytes raw bytes into buf (caller memory of at least
 * t->bytes). Errors: GPTQ_ERR_IO (a read failed or the file is now shorter
 * than the tensor's end: named). */
gptq_status gptq_gguf_read(const gptq_gguf *g, const gptq_gguf_tensor *t, void *buf);

/* Read tensor t and convert it to float32 out[t->numel] (ne[0] fastest).
 * Errors: gptq_gguf_read's, GPTQ_ERR_UNSUPPORTED (a type
 * gptq_ggml_can_dequantize refuses: named), GPTQ_ERR_NOMEM. */
gptq_status gptq_gguf_read_f32(const gptq_gguf *g, const gptq_gguf_tensor *t, float *out);


/* Typed lookups for the common case; each returns 1 and sets *out when the
 * key exists with a compatible type (any integer type within range for
 * get_int; FLOAT32/FLOAT64 for get_float; STRING for get_string, which
 * gives a pointer into the handle and its length), else 0. */
int gptq_gguf_get_int(const gptq_gguf *g, const char *key, int64_t *out);
int gptq_gguf_get_float(const gptq_gguf *g, const char *key, double *out);
int gptq_gguf_get_bool(const gptq_gguf *g, const char *key, int *out);
int gptq_gguf_get_string(const gptq_gguf *g, const char *key, const char **ptr, size_t *len);
/* The array at key with elements of type elem (NULL if absent or otherwise). */
const gptq_gguf_value *gptq_gguf_get_array(const gptq_gguf *g, const char *key,
                                           gptq_gguf_type elem);

#ifdef __cplusplus
}
#endif
#endif
