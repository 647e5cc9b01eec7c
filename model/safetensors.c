/* model/safetensors.c: reading the safetensors file format (mmap + strict
 * header validation); the writer is model/safetensors_write.c.
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

/* 64-bit FNV-1a: the name index only needs a cheap, well-spread hash. */
static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

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
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: __metadata__ key '" GPTQ_ST_NAME_FMT "' contains a NUL byte",
                             st->path, key);
        if (!json_is_string(value))
            return gptq_fail(GPTQ_ERR_FORMAT,
                             "%s: __metadata__ value of '" GPTQ_ST_NAME_FMT "' is a JSON %s, expected a string",
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
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': %s[%zu] is a JSON %s, expected a non-negative integer",
                         st->path, name, field, i, json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': %s[%zu] is %lld, must not be negative",
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
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor name '" GPTQ_ST_NAME_FMT "' contains a NUL byte", st->path, name);
    if (name_len > GPTQ_ST_MAX_NAME_BYTES)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor name '" GPTQ_ST_NAME_FMT "...' is %zu bytes, at most %d allowed",
                         st->path, name, name_len, GPTQ_ST_MAX_NAME_BYTES);
    if (!json_is_object(obj))
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '" GPTQ_ST_NAME_FMT "' is a JSON %s, expected an object with dtype, shape and data_offsets",
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
                             "%s: tensor '" GPTQ_ST_NAME_FMT "': unexpected field '%.64s' (expected exactly dtype, shape, data_offsets)",
                             st->path, name, field);
    }
    json_t *jdtype = json_object_get(obj, "dtype");
    json_t *jshape = json_object_get(obj, "shape");
    json_t *joffsets = json_object_get(obj, "data_offsets");
    const char *missing = !jdtype ? "dtype" : !jshape ? "shape" : !joffsets ? "data_offsets" : NULL;
    if (missing)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': missing field '%s'", st->path, name, missing);

    /* dtype */
    if (!json_is_string(jdtype))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': dtype is a JSON %s, expected a string like \"F16\"",
                         st->path, name, json_type_name(jdtype));
    if (gptq_dtype_parse(json_string_value(jdtype), &e->t.dtype) != 0)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '" GPTQ_ST_NAME_FMT "': unknown dtype '%.32s' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                         st->path, name, json_string_value(jdtype));

    /* shape and element count */
    if (!json_is_array(jshape))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': shape is a JSON %s, expected an array",
                         st->path, name, json_type_name(jshape));
    size_t ndim = json_array_size(jshape);
    if (ndim > GPTQ_ST_MAX_NDIM)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': shape has %zu dimensions, at most %d supported",
                         st->path, name, ndim, GPTQ_ST_MAX_NDIM);
    e->t.ndim = (int)ndim;
    int64_t numel = 1;
    for (size_t i = 0; i < ndim; i++) {
        status = read_count(st, name, "shape", i, json_array_get(jshape, i), &e->t.shape[i]);
        if (status != GPTQ_OK)
            return status;
        if (__builtin_mul_overflow(numel, e->t.shape[i], &numel))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': element count of shape overflows int64 at dimension %zu",
                             st->path, name, i);
    }
    e->t.numel = numel;
    uint64_t need;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)gptq_dtype_size(e->t.dtype), &need))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': %lld elements of %s overflow a 64-bit byte count",
                         st->path, name, (long long)numel, gptq_dtype_name(e->t.dtype));

    /* data_offsets */
    if (!json_is_array(joffsets) || json_array_size(joffsets) != 2)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': data_offsets must be an array [begin, end]",
                         st->path, name);
    int64_t begin, end;
    if ((status = read_count(st, name, "data_offsets", 0, json_array_get(joffsets, 0), &begin)) != GPTQ_OK ||
        (status = read_count(st, name, "data_offsets", 1, json_array_get(joffsets, 1), &end)) != GPTQ_OK)
        return status;
    if (begin > end)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "': data_offsets [%lld, %lld] begin after end",
                         st->path, name, (long long)begin, (long long)end);
    if ((uint64_t)end > st->data_bytes)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "' ends at byte %lld, data section has %llu bytes",
                         st->path, name, (long long)end, (unsigned long long)st->data_bytes);
    if ((uint64_t)(end - begin) != need)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: tensor '" GPTQ_ST_NAME_FMT "': %lld element(s) of %s need %llu bytes, data_offsets [%lld, %lld] span %lld",
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
                             "%s: tensor '" GPTQ_ST_NAME_FMT "' [%llu, %llu) overlaps tensor '" GPTQ_ST_NAME_FMT "' [%llu, %llu)",
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
                return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" GPTQ_ST_NAME_FMT "' appears twice", st->path,
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
        status = gptq_fail(gptq_errno_status(err), "%s: mmap of %lld bytes failed: %s", st->path,
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
        if (gptq_st_is_metadata_key(key, key_len))
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
        return gptq_fail(GPTQ_ERR_ARG, "tensor '" GPTQ_ST_NAME_FMT "': has %lld elements, output buffer holds %zu",
                         t->name, (long long)t->numel, n);
    if (t->dtype != GPTQ_DT_F32 && t->dtype != GPTQ_DT_F16 && t->dtype != GPTQ_DT_BF16 &&
        t->dtype != GPTQ_DT_I32)
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "tensor '" GPTQ_ST_NAME_FMT "': dtype %s does not convert to float32 (F32, F16, BF16, I32 do)",
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
    snprintf(what, sizeof what, "tensor '" GPTQ_ST_NAME_FMT "'", t->name);
    convert_args a = {t, out};
    return gptq_guarded_call(convert, &a, what);
}

gptq_status gptq_st_tensor_copy(const gptq_st_tensor *t, void *out)
{
    char what[256];
    snprintf(what, sizeof what, "tensor '" GPTQ_ST_NAME_FMT "'", t->name);
    return gptq_guarded_copy(out, t->data, t->bytes, what);
}

void gptq_st_tensor_release(const gptq_st_tensor *t)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t begin = ((uintptr_t)t->data + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)t->data + t->bytes) & ~(page - 1);
    if (end > begin)
        madvise((void *)begin, end - begin, MADV_DONTNEED);
}
