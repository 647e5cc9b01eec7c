/* model/safetensors.h: the safetensors file format, read and written.
 *
 * A safetensors file is: u64 little-endian header length N, N bytes of JSON
 * ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * optional "__metadata__": {string: string}}), then the data section; the
 * offsets are relative to the start of the data section.
 *
 * The reader mmaps the file read-only and checks every header field against
 * the file before anything points into it, so a tensor handed out is always
 * inside the mapping and its size matches its shape and dtype. The writer
 * writes the layout the reference library (huggingface/safetensors) writes:
 * tensors packed without gaps, largest element size first, the data section
 * 8-byte aligned by padding the header with spaces, so that every tensor is
 * aligned to its element size. */
#ifndef GPTQ_MODEL_SAFETENSORS_H
#define GPTQ_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/dtype.h"
#include "gptq/error.h"

/* Tensor names in messages are cut to this many bytes: a hostile name may be
 * long, and the message buffer is 1 KiB. */
#define GPTQ_ST_NAME_FMT "%.160s"

/* 1 when the header key[key_len] is the reserved "__metadata__". */
static inline int gptq_st_is_metadata_key(const char *key, size_t key_len)
{
    return key_len == 12 && memcmp(key, "__metadata__", 12) == 0;
}

#ifdef __cplusplus
extern "C" {
#endif

enum {
    GPTQ_ST_MAX_NDIM = 8,
    GPTQ_ST_MAX_NAME_BYTES = 1024,
};

/* Largest header the reader accepts (100 MiB, as the reference library). */
#define GPTQ_ST_MAX_HEADER_BYTES ((uint64_t)100 << 20)

typedef struct gptq_st_tensor {
    const char *name;                /* NUL-terminated, owned by the file handle */
    gptq_dtype dtype;
    int ndim;                        /* 0 (scalar) .. GPTQ_ST_MAX_NDIM */
    int64_t shape[GPTQ_ST_MAX_NDIM]; /* entries past ndim are 0 */
    int64_t numel;                   /* product of shape (1 for a scalar) */
    const void *data;                /* inside the read-only mapping; little-endian */
    size_t bytes;                    /* numel * gptq_dtype_size(dtype) */
} gptq_st_tensor;

typedef struct gptq_safetensors gptq_safetensors;

/* Open and validate `path`. On success *out owns the mapping, the names and
 * the metadata; free it with gptq_safetensors_close(). Every pointer handed
 * out by the accessors below stays valid until then. Tensor data is in a
 * mapping of the file: read it only with gptq_st_tensor_convert / _copy.
 * Errors: GPTQ_ERR_NOTFOUND / GPTQ_ERR_PERMISSION / GPTQ_ERR_IO when the file
 * cannot be opened (regular files only: common/file.h) or mapped, GPTQ_ERR_FORMAT (message names the file, the
 * tensor or field, and what is wrong) when the header is not a valid
 * safetensors header for this file, GPTQ_ERR_NOMEM. *out is NULL on error.
 * The header is read with pread; a file truncated while open makes the
 * readers below fail with GPTQ_ERR_IO, never SIGBUS. */
gptq_status gptq_safetensors_open(const char *path, gptq_safetensors **out);

/* The same on an open file (the caller keeps fd; the mapping outlives it).
 * `path` labels messages. */
gptq_status gptq_safetensors_open_fd(int fd, const char *path, gptq_safetensors **out);

/* Unmap and free everything; NULL is a no-op. */
void gptq_safetensors_close(gptq_safetensors *st);

/* Number of tensors. */
size_t gptq_safetensors_count(const gptq_safetensors *st);

/* Tensor i in file order (ascending begin offset), NULL if i >= count. */
const gptq_st_tensor *gptq_safetensors_at(const gptq_safetensors *st, size_t i);

/* The tensor named `name` (hash lookup), NULL if absent. */
const gptq_st_tensor *gptq_safetensors_find(const gptq_safetensors *st, const char *name);

/* The __metadata__ value for `key`, NULL if absent. Owned by st. */
const char *gptq_safetensors_metadata(const gptq_safetensors *st, const char *key);

/* The path the file was opened with. Owned by st. */
const char *gptq_safetensors_path(const gptq_safetensors *st);

/* Convert tensor `t` to float32 into out[n] (caller-owned).
 * Errors: GPTQ_ERR_ARG if n != t->numel, GPTQ_ERR_UNSUPPORTED if the dtype
 * is not F32, F16, BF16 or I32. */
gptq_status gptq_st_tensor_to_f32(const gptq_st_tensor *t, float *out, size_t n);

/* t's data converted to float32 out[t->numel] (F32/F16/BF16/I32), or its
 * bytes copied to out[t->bytes], reading the mapping under a SIGBUS guard
 * (common/sigbus.h): a file truncated while open gives GPTQ_ERR_IO naming
 * the tensor instead of killing the process. The one safe way to read
 * t->data. */
gptq_status gptq_st_tensor_convert(const gptq_st_tensor *t, float *out);
gptq_status gptq_st_tensor_copy(const gptq_st_tensor *t, void *out);

/* Tell the kernel the pages of t's data (those wholly inside it) are not
 * needed now (madvise MADV_DONTNEED on the read-only mapping): they leave
 * the process's resident set and are read from the file again if touched. */
void gptq_st_tensor_release(const gptq_st_tensor *t);

/* ---- writer ------------------------------------------------------------- */

typedef struct gptq_st_writer gptq_st_writer;

/* A new empty writer in *out; free with gptq_st_writer_destroy().
 * Errors: GPTQ_ERR_NOMEM. */
gptq_status gptq_st_writer_create(gptq_st_writer **out);

/* Free the writer (not the borrowed tensor data); NULL is a no-op. */
void gptq_st_writer_destroy(gptq_st_writer *w);

/* Add tensor `name` (copied) of `dtype` and shape[ndim] whose little-endian
 * bytes are at `data` (borrowed: must stay valid and unchanged until
 * gptq_st_writer_write returns; may be NULL only for a tensor of 0 bytes).
 * Errors: GPTQ_ERR_ARG for an empty, too long, non-UTF-8 or reserved name
 * ("__metadata__"), a bad dtype, ndim outside 0..8, a negative dimension or
 * a size that overflows; GPTQ_ERR_EXISTS if the name was already added;
 * GPTQ_ERR_NOMEM. */
gptq_status gptq_st_writer_add(gptq_st_writer *w, const char *name, gptq_dtype dtype, int ndim,
                               const int64_t *shape, const void *data);

/* Set __metadata__[key] = value (both copied; replaces an earlier value).
 * Errors: GPTQ_ERR_ARG for NULL or non-UTF-8 strings, GPTQ_ERR_NOMEM. */
gptq_status gptq_st_writer_set_metadata(gptq_st_writer *w, const char *key, const char *value);

/* Write the file atomically: to "<path>.tmp.<pid>" in the same directory,
 * fsync, rename over `path`, fsync the directory. On failure the temporary
 * file is removed and `path` is untouched (except when only the final
 * directory fsync fails: the new file is then in place, and the status says
 * so). The writer can be written again or destroyed afterwards.
 * Errors: GPTQ_ERR_IO / GPTQ_ERR_PERMISSION (message names the path and the
 * call that failed), GPTQ_ERR_NOMEM. */
gptq_status gptq_st_writer_write(gptq_st_writer *w, const char *path);

/* The same for file `name` in the folder open at dirfd (AT_FDCWD: name is
 * a path); `path` names it in messages. */
gptq_status gptq_st_writer_write_at(gptq_st_writer *w, int dirfd, const char *name,
                                    const char *path);

#ifdef __cplusplus
}
#endif
#endif
