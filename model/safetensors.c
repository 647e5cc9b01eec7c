/* model/safetensors.c: the safetensors file format, read (mmap + strict
 * header validation) and written (atomically, in the reference layout).
 *
 * Reading trusts nothing in the file: every length and offset is checked
 * against the mapping, with overflow checks, before a pointer is formed, so a
 * hostile file yields GPTQ_ERR_FORMAT and a message, never a fault. */
#include "model/safetensors.h"

#include "common/file.h"
#include "common/sigbus.h"
#include "model/json_error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader hands out the bytes as they are"
#endif

/* Tensor names in messages are cut to this many bytes: a hostile name may be
 * long, and the message buffer is 1 KiB. */
#define NAME_FMT "%.160s"

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

static gptq_status errno_status(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR: return GPTQ_ERR_NOTFOUND;
    case EACCES:
    case EPERM: return GPTQ_ERR_PERMISSION;
    case ENOMEM: return GPTQ_ERR_NOMEM;
    default: return GPTQ_ERR_IO;
    }
}

/* 64-bit FNV-1a: the name index only needs a cheap, well-spread hash. */
static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* ---- reader -------------------------------------------------------------- */

typedef struct st_entry {
    gptq_st_tensor t; /* first, so &entry->t is what callers see */
    uint64_t begin;   /* [begin, end) relative to the data section */
    uint64_t end;
} st_entry;

struct gptq_safetensors {
    char *path;
    void *map; /* the whole file, PROT_READ */
    size_t map_bytes;
    const unsigned char *data; /* the data section, inside map */
    uint64_t data_bytes;
    st_entry *tensors; /* sorted by begin offset */
    size_t n_tensors;
    uint32_t *index; /* open addressing, power-of-two size; slot = tensor + 1, 0 = empty */
    size_t index_slots;
    char **meta_keys;
    char **meta_values;
    size_t n_meta;
};

static int is_metadata_key(const char *key, size_t key_len)
{
    return key_len == 12 && memcmp(key, "__metadata__", 12) == 0;
}

static gptq_status read_metadata(gptq_safetensors *st, json_t *meta)
{
    if (!json_is_object(meta))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: __metadata__ is a JSON %s, expected an object of strings",
                         st->path, json_type_name(meta));
    size_t n = json_object_size(meta);
    st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
    st->meta_values = calloc(n ? n : 1, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory for %zu metadata entries", st->path, n);
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach(meta, key, key_len, value)
    {
        if (strlen(key) != key_len)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: __metadata__ key '" NAME_FMT "' contains a NUL byte",
                             st->path, key);
        if (!json_is_string(value))
            return gptq_fail(GPTQ_ERR_FORMAT,
                             "%s: __metadata__ value of '" NAME_FMT "' is a JSON %s, expected a string",
                             st->path, key, json_type_name(value));
        if (st->n_meta >= n)
            return gptq_fail(GPTQ_ERR_INTERNAL, "%s: __metadata__ grew while being read", st->path);
        st->meta_keys[st->n_meta] = strdup(key);
        st->meta_values[st->n_meta] = strdup(json_string_value(value));
        st->n_meta++;
        if (!st->meta_keys[st->n_meta - 1] || !st->meta_values[st->n_meta - 1])
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory for metadata", st->path);
    }
    return GPTQ_OK;
}

/* A JSON integer >= 0, or an error naming the field. */
static gptq_status read_count(const gptq_safetensors *st, const char *name, const char *field,
                              size_t i, json_t *v, int64_t *out)
{
    if (!json_is_integer(v))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': %s[%zu] is a JSON %s, expected a non-negative integer",
                         st->path, name, field, i, json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': %s[%zu] is %lld, must not be negative",
                         st->path, name, field, i, (long long)x);
    *out = (int64_t)x;
    return GPTQ_OK;
}

/* Validate one header entry `name: obj` and fill `e`. */
static gptq_status read_tensor(const gptq_safetensors *st, const char *name, size_t name_len,
                               json_t *obj, st_entry *e)
{
    gptq_status status;
    if (name_len == 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: a tensor has an empty name", st->path);
    if (strlen(name) != name_len)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor name '" NAME_FMT "' contains a NUL byte", st->path, name);
    if (name_len > GPTQ_ST_MAX_NAME_BYTES)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor name '" NAME_FMT "...' is %zu bytes, at most %d allowed",
                         st->path, name, name_len, GPTQ_ST_MAX_NAME_BYTES);
    if (!json_is_object(obj))
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '" NAME_FMT "' is a JSON %s, expected an object with dtype, shape and data_offsets",
                         st->path, name, json_type_name(obj));

    const char *field;
    size_t field_len;
    json_t *v;
    json_object_keylen_foreach(obj, field, field_len, v)
    {
        int known = strlen(field) == field_len &&
                    (!strcmp(field, "dtype") || !strcmp(field, "shape") || !strcmp(field, "data_offsets"));
        if (!known)
            return gptq_fail(GPTQ_ERR_FORMAT,
                             "%s: tensor '" NAME_FMT "': unexpected field '%.64s' (expected exactly dtype, shape, data_offsets)",
                             st->path, name, field);
    }
    json_t *jdtype = json_object_get(obj, "dtype");
    json_t *jshape = json_object_get(obj, "shape");
    json_t *joffsets = json_object_get(obj, "data_offsets");
    const char *missing = !jdtype ? "dtype" : !jshape ? "shape" : !joffsets ? "data_offsets" : NULL;
    if (missing)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': missing field '%s'", st->path, name, missing);

    /* dtype */
    if (!json_is_string(jdtype))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': dtype is a JSON %s, expected a string like \"F16\"",
                         st->path, name, json_type_name(jdtype));
    if (gptq_dtype_parse(json_string_value(jdtype), &e->t.dtype) != 0)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '" NAME_FMT "': unknown dtype '%.32s' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                         st->path, name, json_string_value(jdtype));

    /* shape and element count */
    if (!json_is_array(jshape))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': shape is a JSON %s, expected an array",
                         st->path, name, json_type_name(jshape));
    size_t ndim = json_array_size(jshape);
    if (ndim > GPTQ_ST_MAX_NDIM)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': shape has %zu dimensions, at most %d supported",
                         st->path, name, ndim, GPTQ_ST_MAX_NDIM);
    e->t.ndim = (int)ndim;
    int64_t numel = 1;
    for (size_t i = 0; i < ndim; i++) {
        status = read_count(st, name, "shape", i, json_array_get(jshape, i), &e->t.shape[i]);
        if (status != GPTQ_OK)
            return status;
        if (__builtin_mul_overflow(numel, e->t.shape[i], &numel))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': element count of shape overflows int64 at dimension %zu",
                             st->path, name, i);
    }
    e->t.numel = numel;
    uint64_t need;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)gptq_dtype_size(e->t.dtype), &need))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': %lld elements of %s overflow a 64-bit byte count",
                         st->path, name, (long long)numel, gptq_dtype_name(e->t.dtype));

    /* data_offsets */
    if (!json_is_array(joffsets) || json_array_size(joffsets) != 2)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': data_offsets must be an array [begin, end]",
                         st->path, name);
    int64_t begin, end;
    if ((status = read_count(st, name, "data_offsets", 0, json_array_get(joffsets, 0), &begin)) != GPTQ_OK ||
        (status = read_count(st, name, "data_offsets", 1, json_array_get(joffsets, 1), &end)) != GPTQ_OK)
        return status;
    if (begin > end)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': data_offsets [%lld, %lld] begin after end",
                         st->path, name, (long long)begin, (long long)end);
    if ((uint64_t)end > st->data_bytes)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "' ends at byte %lld, data section has %llu bytes",
                         st->path, name, (long long)end, (unsigned long long)st->data_bytes);
    if ((uint64_t)(end - begin) != need)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '" NAME_FMT "': %lld element(s) of %s need %llu bytes, data_offsets [%lld, %lld] span %lld",
                         st->path, name, (long long)numel, gptq_dtype_name(e->t.dtype), (unsigned long long)need,
                         (long long)begin, (long long)end, (long long)(end - begin));

    e->begin = (uint64_t)begin;
    e->end = (uint64_t)end;
    e->t.data = st->data + begin;
    e->t.bytes = (size_t)need;
    e->t.name = strdup(name);
    if (!e->t.name)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory for tensor names", st->path);
    return GPTQ_OK;
}

static int entry_cmp(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

/* Sort by begin and reject overlapping spans. Empty tensors may sit at the
 * boundary between two others but not inside one. */
static gptq_status check_overlaps(gptq_safetensors *st)
{
    if (st->n_tensors > 1)
        qsort(st->tensors, st->n_tensors, sizeof *st->tensors, entry_cmp);
    const st_entry *furthest = NULL; /* the tensor reaching furthest so far */
    for (size_t i = 0; i < st->n_tensors; i++) {
        const st_entry *e = &st->tensors[i];
        if (furthest && e->begin < furthest->end)
            return gptq_fail(GPTQ_ERR_FORMAT,
                             "%s: tensor '" NAME_FMT "' [%llu, %llu) overlaps tensor '" NAME_FMT "' [%llu, %llu)",
                             st->path, e->t.name, (unsigned long long)e->begin, (unsigned long long)e->end,
                             furthest->t.name, (unsigned long long)furthest->begin,
                             (unsigned long long)furthest->end);
        if (!furthest || e->end >= furthest->end)
            furthest = e;
    }
    return GPTQ_OK;
}

static gptq_status build_index(gptq_safetensors *st)
{
    size_t slots = 16;
    while (slots < 2 * st->n_tensors)
        slots *= 2;
    if (st->n_tensors >= UINT32_MAX)
        return gptq_fail(GPTQ_ERR_LIMIT, "%s: %zu tensors, too many to index", st->path, st->n_tensors);
    st->index = calloc(slots, sizeof *st->index);
    if (!st->index)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory for the tensor index", st->path);
    st->index_slots = slots;
    for (size_t i = 0; i < st->n_tensors; i++) {
        size_t slot = (size_t)name_hash(st->tensors[i].t.name) & (slots - 1);
        while (st->index[slot]) {
            if (!strcmp(st->tensors[st->index[slot] - 1].t.name, st->tensors[i].t.name))
                return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "' appears twice", st->path,
                                 st->tensors[i].t.name);
            slot = (slot + 1) & (slots - 1);
        }
        st->index[slot] = (uint32_t)(i + 1);
    }
    return GPTQ_OK;
}

/* Map the open file fd and check the length prefix; sets st->data /
 * data_bytes and returns the header bytes in *header, *header_bytes. */
static gptq_status map_file(gptq_safetensors *st, int fd, const char **header, size_t *header_bytes)
{
    gptq_status status;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        status = gptq_fail(GPTQ_ERR_IO, "%s: fstat failed: %s", st->path, strerror(err));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        status = gptq_fail(GPTQ_ERR_FORMAT, "%s: not a regular file", st->path);
        goto fail;
    }
    if (sb.st_size < 8) {
        status = gptq_fail(GPTQ_ERR_FORMAT,
                           "%s: file has %lld bytes, a safetensors file starts with an 8-byte header length",
                           st->path, (long long)sb.st_size);
        goto fail;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        status = gptq_fail(GPTQ_ERR_LIMIT, "%s: file of %lld bytes does not fit the address space", st->path,
                           (long long)sb.st_size);
        goto fail;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        int err = errno;
        status = gptq_fail(errno_status(err), "%s: mmap of %lld bytes failed: %s", st->path,
                           (long long)sb.st_size, strerror(err));
        goto fail;
    }
    st->map = map;
    st->map_bytes = (size_t)sb.st_size;

    /* The length and the header are read with pread, not through the
     * mapping: the file may be truncated under us at any time, and only
     * guarded copies (common/sigbus.h) may touch mapped pages. */
    const unsigned char *base = map;
    unsigned char prefix[8];
    uint64_t length = 0;
    if (pread(fd, prefix, 8, 0) != 8)
        return gptq_fail(GPTQ_ERR_IO, "%s: cannot read the header length", st->path);
    for (int i = 0; i < 8; i++)
        length |= (uint64_t)prefix[i] << (8 * i);
    uint64_t after = (uint64_t)st->map_bytes - 8;
    if (length == 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: header length is 0, expected a JSON header", st->path);
    if (length > GPTQ_ST_MAX_HEADER_BYTES)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes (corrupt file?)",
                         st->path, (unsigned long long)length, (unsigned long long)GPTQ_ST_MAX_HEADER_BYTES);
    if (length > after)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes follow it)",
                         st->path, (unsigned long long)length, (unsigned long long)after);
    char *copy = malloc((size_t)length + 1);
    if (!copy)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory for a %llu-byte header", st->path,
                         (unsigned long long)length);
    size_t got = 0;
    while (got < length) {
        ssize_t n = pread(fd, copy + got, (size_t)length - got, (off_t)(8 + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(copy);
            return gptq_fail(GPTQ_ERR_IO, "%s: the header ends early (file truncated?)", st->path);
        }
        got += (size_t)n;
    }
    *header = copy;
    *header_bytes = (size_t)length;
    st->data = base + 8 + length;
    st->data_bytes = after - length;
    return GPTQ_OK;

fail:
    return status;
}

gptq_status gptq_safetensors_open(const char *path, gptq_safetensors **out)
{
    if (!out || !path)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_safetensors_open: path and out must not be NULL");
    *out = NULL;
    int fd;
    gptq_status st = gptq_file_open(path, &fd);
    if (st)
        return st;
    st = gptq_safetensors_open_fd(fd, path, out);
    close(fd);
    return st;
}

gptq_status gptq_safetensors_open_fd(int fd, const char *path, gptq_safetensors **out)
{
    gptq_status status;
    json_t *root = NULL;
    gptq_safetensors *st = NULL;
    const char *header = NULL;
    if (!out || !path)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_safetensors_open_fd: path and out must not be NULL");
    *out = NULL;

    st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        status = gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory", path);
        goto fail;
    }
    size_t header_bytes = 0;
    if ((status = map_file(st, fd, &header, &header_bytes)) != GPTQ_OK)
        goto fail;

    json_error_t jerr;
    root = json_loadb(header, header_bytes, JSON_REJECT_DUPLICATES, &jerr);
    free((char *)header);
    header = NULL;
    if (!root) {
        char why[160];
        status = gptq_fail(GPTQ_ERR_FORMAT, "%s: header is not valid JSON: %s (header byte %d)", path,
                           gptq_json_error_text(&jerr, why, sizeof why), jerr.position);
        goto fail;
    }
    if (!json_is_object(root)) {
        status = gptq_fail(GPTQ_ERR_FORMAT, "%s: header is a JSON %s, expected an object", path,
                           json_type_name(root));
        goto fail;
    }

    size_t n = json_object_size(root);
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    if (!st->tensors) {
        status = gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory for %zu tensors", path, n);
        goto fail;
    }
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach(root, key, key_len, value)
    {
        if (is_metadata_key(key, key_len))
            status = read_metadata(st, value);
        else if (st->n_tensors >= n)
            status = gptq_fail(GPTQ_ERR_INTERNAL, "%s: header grew while being read", path);
        else if ((status = read_tensor(st, key, key_len, value, &st->tensors[st->n_tensors])) == GPTQ_OK)
            st->n_tensors++;
        if (status != GPTQ_OK)
            goto fail;
    }
    if ((status = check_overlaps(st)) != GPTQ_OK || (status = build_index(st)) != GPTQ_OK)
        goto fail;

    json_decref(root);
    *out = st;
    return GPTQ_OK;

fail:
    free((char *)header);
    json_decref(root);
    gptq_safetensors_close(st);
    return status;
}

void gptq_safetensors_close(gptq_safetensors *st)
{
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->map_bytes);
    for (size_t i = 0; i < st->n_tensors; i++)
        free((char *)st->tensors[i].t.name);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->tensors);
    free(st->index);
    free(st->path);
    free(st);
}

size_t gptq_safetensors_count(const gptq_safetensors *st) { return st ? st->n_tensors : 0; }

const gptq_st_tensor *gptq_safetensors_at(const gptq_safetensors *st, size_t i)
{
    return st && i < st->n_tensors ? &st->tensors[i].t : NULL;
}

const gptq_st_tensor *gptq_safetensors_find(const gptq_safetensors *st, const char *name)
{
    if (!st || !name || !st->index)
        return NULL;
    size_t mask = st->index_slots - 1;
    for (size_t slot = (size_t)name_hash(name) & mask; st->index[slot]; slot = (slot + 1) & mask) {
        const gptq_st_tensor *t = &st->tensors[st->index[slot] - 1].t;
        if (!strcmp(t->name, name))
            return t;
    }
    return NULL;
}

const char *gptq_safetensors_metadata(const gptq_safetensors *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key))
            return st->meta_values[i];
    return NULL;
}

const char *gptq_safetensors_path(const gptq_safetensors *st) { return st ? st->path : NULL; }

gptq_status gptq_st_tensor_to_f32(const gptq_st_tensor *t, float *out, size_t n)
{
    if (!t || (!out && n))
        return gptq_fail(GPTQ_ERR_ARG, "gptq_st_tensor_to_f32: tensor and output must not be NULL");
    if ((uint64_t)t->numel != (uint64_t)n)
        return gptq_fail(GPTQ_ERR_ARG, "tensor '" NAME_FMT "': has %lld elements, output buffer holds %zu",
                         t->name, (long long)t->numel, n);
    if (t->dtype != GPTQ_DT_F32 && t->dtype != GPTQ_DT_F16 && t->dtype != GPTQ_DT_BF16 &&
        t->dtype != GPTQ_DT_I32)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "tensor '" NAME_FMT "': dtype %s does not convert to float32 (F32, F16, BF16, I32 do)",
                         t->name, gptq_dtype_name(t->dtype));
    return gptq_st_tensor_convert(t, out);
}

typedef struct convert_args {
    const gptq_st_tensor *t;
    float *out;
} convert_args;

static void convert(void *ctx)
{
    convert_args *a = ctx;
    gptq_dtype_to_f32(a->t->dtype, a->t->data, a->out, (size_t)a->t->numel);
}

gptq_status gptq_st_tensor_convert(const gptq_st_tensor *t, float *out)
{
    char what[256];
    snprintf(what, sizeof what, "tensor '" NAME_FMT "'", t->name);
    convert_args a = {t, out};
    return gptq_guarded_call(convert, &a, what);
}

gptq_status gptq_st_tensor_copy(const gptq_st_tensor *t, void *out)
{
    char what[256];
    snprintf(what, sizeof what, "tensor '" NAME_FMT "'", t->name);
    return gptq_guarded_copy(out, t->data, t->bytes, what);
}

/* ---- writer -------------------------------------------------------------- */

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
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor name '" NAME_FMT "' is %zu bytes, must be 1..%d",
                         name, name_len, GPTQ_ST_MAX_NAME_BYTES);
    if (is_metadata_key(name, name_len))
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: '__metadata__' is reserved, not a tensor name");
    if ((unsigned)dtype >= GPTQ_DT_COUNT)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" NAME_FMT "': dtype %d is not a gptq_dtype",
                         name, (int)dtype);
    if (ndim < 0 || ndim > GPTQ_ST_MAX_NDIM || (ndim > 0 && !shape))
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" NAME_FMT "': ndim %d, must be 0..%d with a shape",
                         name, ndim, GPTQ_ST_MAX_NDIM);
    uint64_t numel = 1, bytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" NAME_FMT "': shape[%d] = %lld is negative",
                             name, i, (long long)shape[i]);
        if (__builtin_mul_overflow(numel, (uint64_t)shape[i], &numel))
            return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" NAME_FMT "': element count overflows", name);
    }
    if (__builtin_mul_overflow(numel, (uint64_t)gptq_dtype_size(dtype), &bytes) || bytes > INT64_MAX ||
        bytes > SIZE_MAX)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" NAME_FMT "': byte count overflows", name);
    if (bytes > 0 && !data)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor '" NAME_FMT "': data is NULL", name);
    if (json_object_get(w->names, name))
        return gptq_fail(GPTQ_ERR_EXISTS, "safetensors writer: tensor '" NAME_FMT "' was already added", name);

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
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: tensor name '" NAME_FMT "' is not valid UTF-8", name);
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
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: metadata value of '" NAME_FMT "' is not valid UTF-8", key);
    if (json_object_set_new(w->metadata, key, s) != 0)
        return gptq_fail(GPTQ_ERR_ARG, "safetensors writer: metadata key '" NAME_FMT "' is not valid UTF-8", key);
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
            return gptq_fail(GPTQ_ERR_LIMIT, "data section exceeds 2^63 bytes at tensor '" NAME_FMT "'", t->name);
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
        status = gptq_fail(errno_status(err), "%s: cannot create temporary file %s: %s%s", path, tmp,
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
        status = gptq_fail(errno_status(err), "%s: rename from %s failed: %s", path, tmp, strerror(err));
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

void gptq_st_tensor_release(const gptq_st_tensor *t)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t begin = ((uintptr_t)t->data + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)t->data + t->bytes) & ~(page - 1);
    if (end > begin)
        madvise((void *)begin, end - begin, MADV_DONTNEED);
}
