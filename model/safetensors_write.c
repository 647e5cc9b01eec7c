/* model/safetensors_write.c: writing the safetensors file format
 * (model/safetensors.h): tensors ordered by element size then name, as the
 * reference writer lays them out, header padded to 8 bytes, written to a
 * temporary file and renamed into place, then the folder synced. */
#include "model/safetensors.h"

#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

typedef struct writer_tensor {
    char *name;
    gptq_dtype dtype;
    int ndim;
    int64_t shape[GPTQ_ST_MAX_NDIM];
    const void *data; /* borrowed */
    size_t bytes;
} writer_tensor;

struct gptq_st_writer {
    writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
    json_t *names;    /* set of added names (O(1) duplicate check) */
    json_t *metadata; /* object of string -> string */
};

gptq_status gptq_st_writer_create(gptq_st_writer **out)
{
    if (!out)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_st_writer_create: out must not be NULL");
    gptq_st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->names = json_object()) || !(w->metadata = json_object())) {
        gptq_st_writer_destroy(w);
        *out = NULL;
        return gptq_fail(GPTQ_ERR_NOMEM, "safetensors writer: no memory");
    }
    *out = w;
    return GPTQ_OK;
}

void gptq_st_writer_destroy(gptq_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    json_decref(w->names);
    json_decref(w->metadata);
    free(w);
}

gptq_status gptq_st_writer_add(gptq_st_writer *w, const char *name, gptq_dtype dtype, int ndim,
                               const int64_t *shape, const void *data)
{
    if (!w || !name)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_st_writer_add: writer and name must not be NULL");
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len > GPTQ_ST_MAX_NAME_BYTES)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor name '" GPTQ_ST_NAME_FMT "' is %zu bytes, must be 1..%d",
                         name, name_len, GPTQ_ST_MAX_NAME_BYTES);
    if (gptq_st_is_metadata_key(name, name_len))
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: '__metadata__' is reserved, not a tensor name");
    if ((unsigned)dtype >= GPTQ_DT_COUNT)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" GPTQ_ST_NAME_FMT "': dtype %d is not a gptq_dtype",
                         name, (int)dtype);
    if (ndim < 0 || ndim > GPTQ_ST_MAX_NDIM || (ndim > 0 && !shape))
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" GPTQ_ST_NAME_FMT "': ndim %d, must be 0..%d with a shape",
                         name, ndim, GPTQ_ST_MAX_NDIM);
    uint64_t numel = 1, bytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" GPTQ_ST_NAME_FMT "': shape[%d] = %lld is negative",
                             name, i, (long long)shape[i]);
        if (__builtin_mul_overflow(numel, (uint64_t)shape[i], &numel))
            return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" GPTQ_ST_NAME_FMT "': element count overflows", name);
    }
    if (__builtin_mul_overflow(numel, (uint64_t)gptq_dtype_size(dtype), &bytes) || bytes > INT64_MAX ||
        bytes > SIZE_MAX)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" GPTQ_ST_NAME_FMT "': byte count overflows", name);
    if (bytes > 0 && !data)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" GPTQ_ST_NAME_FMT "': data is NULL", name);
    if (json_object_get(w->names, name))
        return gptq_fail(GPTQ_ERR_EXISTS, "safetensors writer: tensor '" GPTQ_ST_NAME_FMT "' was already added", name);

    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        writer_tensor *grown = realloc(w->tensors, cap * sizeof *grown);
        if (!grown)
            return gptq_fail(GPTQ_ERR_NOMEM, "safetensors writer: no memory for %zu tensors", cap);
        w->tensors = grown;
        w->cap_tensors = cap;
    }
    writer_tensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return gptq_fail(GPTQ_ERR_NOMEM, "safetensors writer: no memory");
    /* jansson refuses keys that are not UTF-8; finding out now names the
     * caller that added the tensor, not the later write. */
    if (json_object_set_new(w->names, name, json_true()) != 0) {
        free(t->name);
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor name '" GPTQ_ST_NAME_FMT "' is not valid UTF-8", name);
    }
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->data = data;
    t->bytes = (size_t)bytes;
    w->n_tensors++;
    return GPTQ_OK;
}

gptq_status gptq_st_writer_set_metadata(gptq_st_writer *w, const char *key, const char *value)
{
    if (!w || !key || !value)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_st_writer_set_metadata: writer, key and value must not be NULL");
    json_t *s = json_string(value);
    if (!s)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: metadata value of '" GPTQ_ST_NAME_FMT "' is not valid UTF-8", key);
    if (json_object_set_new(w->metadata, key, s) != 0)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: metadata key '" GPTQ_ST_NAME_FMT "' is not valid UTF-8", key);
    return GPTQ_OK;
}

/* The reference writer's order: largest element size first, then by name,
 * so that packing without gaps keeps every tensor aligned to its element
 * size once the data section is 8-byte aligned. */
static int writer_order_cmp(const void *a, const void *b)
{
    const writer_tensor *x = *(const writer_tensor *const *)a, *y = *(const writer_tensor *const *)b;
    size_t sx = gptq_dtype_size(x->dtype), sy = gptq_dtype_size(y->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The header JSON, padded with spaces so that 8 + *bytes is a multiple of 8,
 * in *out (malloc'd, not NUL-terminated; the caller frees it). */
static gptq_status build_header(const gptq_st_writer *w, writer_tensor *const *order, char **out,
                                size_t *bytes)
{
    char *text = NULL, *padded = NULL;
    json_t *root = json_object();
    if (!root)
        goto nomem;
    if (json_object_size(w->metadata) > 0 && json_object_set(root, "__metadata__", w->metadata) != 0)
        goto nomem;
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = order[i];
        uint64_t end;
        if (__builtin_add_overflow(offset, (uint64_t)t->bytes, &end) || end > INT64_MAX) {
            json_decref(root);
            return gptq_fail(GPTQ_ERR_LIMIT, "data section exceeds 2^63 bytes at tensor '" GPTQ_ST_NAME_FMT "'", t->name);
        }
        /* Each container is attached before it is filled, so that root owns
         * everything and one json_decref(root) frees it on any failure
         * (the *_new setters drop their value when they fail). */
        json_t *obj = json_object();
        if (json_object_set_new(root, t->name, obj) != 0 ||
            json_object_set_new(obj, "dtype", json_string(gptq_dtype_name(t->dtype))) != 0)
            goto nomem;
        json_t *shape = json_array();
        if (json_object_set_new(obj, "shape", shape) != 0)
            goto nomem;
        for (int d = 0; d < t->ndim; d++)
            if (json_array_append_new(shape, json_integer(t->shape[d])) != 0)
                goto nomem;
        json_t *offsets = json_array();
        if (json_object_set_new(obj, "data_offsets", offsets) != 0 ||
            json_array_append_new(offsets, json_integer((json_int_t)offset)) != 0 ||
            json_array_append_new(offsets, json_integer((json_int_t)end)) != 0)
            goto nomem;
        offset = end;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        goto nomem;
    size_t len = strlen(text), padded_len = (len + 7) & ~(size_t)7;
    padded = malloc(padded_len);
    if (!padded)
        goto nomem;
    memcpy(padded, text, len);
    memset(padded + len, ' ', padded_len - len);
    free(text);
    json_decref(root);
    *out = padded;
    *bytes = padded_len;
    return GPTQ_OK;

nomem:
    free(text);
    json_decref(root);
    return gptq_fail(GPTQ_ERR_NOMEM, "no memory for the header");
}

static int write_all(int fd, const void *buf, size_t bytes)
{
    const char *p = buf;
    while (bytes > 0) {
        size_t chunk = bytes < ((size_t)1 << 30) ? bytes : (size_t)1 << 30;
        ssize_t n = write(fd, p, chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n;
        bytes -= (size_t)n;
    }
    return 0;
}

/* fsync the directory holding `path`, so that the rename itself is durable. */
static int fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

gptq_status gptq_st_writer_write(gptq_st_writer *w, const char *path)
{
    return gptq_st_writer_write_at(w, AT_FDCWD, path, path);
}

gptq_status gptq_st_writer_write_at(gptq_st_writer *w, int dirfd, const char *name,
                                    const char *path)
{
    gptq_status status;
    writer_tensor **order = NULL;
    char *header = NULL, *tmp = NULL;
    int fd = -1;
    if (!w || !name || !*name || !path)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_st_writer_write: writer and path must not be NULL or empty");

    order = malloc((w->n_tensors ? w->n_tensors : 1) * sizeof *order);
    if (!order) {
        status = gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory", path);
        goto fail;
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        order[i] = &w->tensors[i];
    if (w->n_tensors > 1)
        qsort(order, w->n_tensors, sizeof *order, writer_order_cmp);
    size_t header_bytes = 0;
    if ((status = build_header(w, order, &header, &header_bytes)) != GPTQ_OK) {
        gptq_fail_context(status, "%s", path);
        goto fail;
    }

    if (asprintf(&tmp, "%s.tmp.%ld", name, (long)getpid()) < 0) {
        tmp = NULL;
        status = gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory", path);
        goto fail;
    }
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        int err = errno;
        status = gptq_fail(gptq_errno_status(err), "%s: cannot create temporary file %s: %s%s", path, tmp,
                           strerror(err), err == EEXIST ? " (another writer, or left by a crash: remove it)" : "");
        free(tmp);
        tmp = NULL; /* not ours to remove */
        goto fail;
    }
    unsigned char length[8];
    for (int i = 0; i < 8; i++)
        length[i] = (unsigned char)((uint64_t)header_bytes >> (8 * i));
    int rc = write_all(fd, length, 8) || write_all(fd, header, header_bytes);
    for (size_t i = 0; rc == 0 && i < w->n_tensors; i++)
        rc = order[i]->bytes ? write_all(fd, order[i]->data, order[i]->bytes) : 0;
    if (rc != 0) {
        int err = errno;
        status = gptq_fail(GPTQ_ERR_IO, "%s: writing %s failed: %s", path, tmp, strerror(err));
        goto fail;
    }
    if (fsync(fd) != 0) {
        int err = errno;
        status = gptq_fail(GPTQ_ERR_IO, "%s: fsync of %s failed: %s", path, tmp, strerror(err));
        goto fail;
    }
    rc = close(fd);
    fd = -1;
    if (rc != 0) {
        int err = errno;
        status = gptq_fail(GPTQ_ERR_IO, "%s: closing %s failed: %s", path, tmp, strerror(err));
        goto fail;
    }
    if (renameat(dirfd, tmp, dirfd, name) != 0) {
        int err = errno;
        status = gptq_fail(gptq_errno_status(err), "%s: rename from %s failed: %s", path, tmp, strerror(err));
        goto fail;
    }
    free(tmp);
    tmp = NULL; /* renamed: nothing left to remove */
    if (dirfd == AT_FDCWD ? fsync_parent(path) != 0 : fsync(dirfd) != 0) {
        int err = errno;
        status = gptq_fail(GPTQ_ERR_IO, "%s: written, but fsync of its directory failed: %s", path, strerror(err));
        goto fail;
    }
    free(order);
    free(header);
    return GPTQ_OK;

fail:
    if (fd >= 0)
        close(fd);
    if (tmp)
        unlinkat(dirfd, tmp, 0);
    free(tmp);
    free(order);
    free(header);
    return status;
}
