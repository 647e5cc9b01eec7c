/* model/gguf.c: the GGUF file format (llama.cpp's), read. The tensor types
 * it names and their conversion to float32 are quant/ggml_blocks.c's.
 *
 * Nothing is mapped: the header (metadata and tensor infos) is read through
 * a small pread() window into memory the handle owns, and tensor data is
 * pread() into caller memory on demand, so a file that shrinks under us is
 * an error, not SIGBUS. Every count, length and offset is checked against
 * the bytes the file still has from the read position (with overflow
 * checks) before anything is allocated: an array of n elements needs at
 * least n times its element's smallest encoding, a string its length. */
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"
#include "common/file.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF is little-endian and this reader hands tensor bytes out as they are"
#endif

/* Keys and tensor names in messages are cut to 96 bytes: a hostile name may
 * be 4 KiB, and the message buffer is 1 KiB. */
#define NAME_FMT "%.96s"

enum {
    WINDOW_BYTES = 64 << 10,       /* the header is read through a window this big */
    ARENA_BLOCK_BYTES = 64 << 10,  /* strings and value arrays are carved from blocks this big */
    F32_CHUNK_BYTES = 4 << 20,     /* gptq_gguf_read_f32 reads quantized data this much at a time */
    MIN_KV_BYTES = 8 + 1 + 4 + 1,  /* key length, a 1-byte key, value type, a 1-byte value */
    MIN_TENSOR_BYTES = 8 + 1 + 4 + 8 + 4 + 8, /* name length, name, n_dims, ne[0], type, offset */
};

static const char *value_type_name(uint32_t type)
{
    static const char *const names[GPTQ_GGUF_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    return type < GPTQ_GGUF_TYPE_COUNT ? names[type] : "unknown type";
}

/* ---- the handle ------------------------------------------------------------ */

/* Strings and value arrays live in blocks freed together at close. */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
} arena_block;

/* Open addressing over item numbers (slot = item + 1, 0 = empty); the items
 * are gptq_gguf_kv or gptq_gguf_tensor, both of which start with their name. */
typedef struct name_index {
    uint32_t *slots;
    size_t mask;
} name_index;

struct gptq_gguf {
    char *name;
    int fd;
    uint32_t version, alignment;
    uint64_t file_bytes;  /* at open */
    uint64_t data_offset; /* the data section's start in the file */
    uint64_t data_bytes;  /* from data_offset to the end of the file at open */
    gptq_gguf_kv *kvs;
    size_t n_kv;
    gptq_gguf_tensor *tensors;
    size_t n_tensors;
    name_index kv_index, tensor_index;
    uint64_t n_values; /* metadata values so far, array elements included */
    arena_block *arena;
};

_Static_assert(offsetof(gptq_gguf_kv, key) == 0, "name_index reads an item's name at its start");
_Static_assert(offsetof(gptq_gguf_tensor, name) == 0, "name_index reads an item's name at its start");

static void *arena_alloc(gptq_gguf *g, size_t bytes)
{
    bytes = (bytes + 15) & ~(size_t)15;
    arena_block *b = g->arena;
    if (b && b->cap - b->used >= bytes) {
        void *p = (char *)b->data + b->used;
        b->used += bytes;
        return p;
    }
    /* big requests get a block of their own behind the current one, so the
     * current block's free space stays in use for small strings */
    size_t cap = bytes > ARENA_BLOCK_BYTES / 4 ? bytes : ARENA_BLOCK_BYTES;
    arena_block *nb = malloc(sizeof *nb + cap);
    if (!nb)
        return NULL;
    nb->cap = cap;
    nb->used = bytes;
    if (b && cap == bytes) {
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        g->arena = nb;
    }
    return nb->data;
}

/* 64-bit FNV-1a: the name index only needs a cheap, well-spread hash. */
static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

#define ITEM_NAME(items, stride, i) (*(const char *const *)((const char *)(items) + (i) * (stride)))

static int index_init(name_index *ix, size_t n)
{
    size_t slots = 16;
    while (slots < 2 * n)
        slots *= 2;
    ix->slots = calloc(slots, sizeof *ix->slots);
    ix->mask = slots - 1;
    return ix->slots ? 0 : -1;
}

/* Add item i; returns the number of an earlier item of the same name (and
 * adds nothing), or SIZE_MAX. */
static size_t index_insert(name_index *ix, const void *items, size_t stride, size_t i)
{
    const char *name = ITEM_NAME(items, stride, i);
    size_t slot = (size_t)name_hash(name) & ix->mask;
    for (; ix->slots[slot]; slot = (slot + 1) & ix->mask)
        if (!strcmp(ITEM_NAME(items, stride, ix->slots[slot] - 1), name))
            return ix->slots[slot] - 1;
    ix->slots[slot] = (uint32_t)(i + 1);
    return SIZE_MAX;
}

static const void *index_find(const name_index *ix, const void *items, size_t stride, const char *name)
{
    if (!ix->slots || !name)
        return NULL;
    for (size_t slot = (size_t)name_hash(name) & ix->mask; ix->slots[slot]; slot = (slot + 1) & ix->mask) {
        size_t i = ix->slots[slot] - 1;
        if (!strcmp(ITEM_NAME(items, stride, i), name))
            return (const char *)items + i * stride;
    }
    return NULL;
}

/* pread() until n bytes or end of file; the bytes read, or -1 with errno. */
static int64_t pread_full(int fd, void *dst, size_t n, uint64_t offset)
{
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done < ((size_t)1 << 30) ? n - done : (size_t)1 << 30;
        ssize_t got = pread(fd, (char *)dst + done, chunk, (off_t)(offset + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        done += (size_t)got;
    }
    return (int64_t)done;
}

/* ---- the header reader ------------------------------------------------------ */

typedef struct reader {
    gptq_gguf *g;
    uint64_t pos;           /* file offset of the next byte to parse */
    unsigned char *window;  /* WINDOW_BYTES of the file from window_start */
    uint64_t window_start;
    size_t window_len;
    char where[160];        /* what is being read: "metadata key 'x'", "tensor 'y'" */
} reader;

static uint64_t remaining(const reader *r) { return r->g->file_bytes - r->pos; }

static gptq_status past_end(const reader *r, const char *field, uint64_t bytes)
{
    return gptq_fail(GPTQ_ERR_FORMAT,
                     "%s: %s: %s (%llu bytes at byte %llu) runs past the end of the file (%llu bytes): "
                     "the file is truncated or not GGUF",
                     r->g->name, r->where, field, (unsigned long long)bytes, (unsigned long long)r->pos,
                     (unsigned long long)r->g->file_bytes);
}

static gptq_status shrank(const reader *r)
{
    return gptq_fail(GPTQ_ERR_IO, "%s: the file ends before byte %llu, though it had %llu bytes when opened "
                     "(truncated while being read?)",
                     r->g->name, (unsigned long long)r->pos, (unsigned long long)r->g->file_bytes);
}

/* Copy the next n bytes of the file to dst; `field` names them in errors. */
static gptq_status read_bytes(reader *r, void *dst, uint64_t n, const char *field)
{
    if (n > remaining(r))
        return past_end(r, field, n);
    unsigned char *out = dst;
    while (n > 0) {
        if (r->pos >= r->window_start && r->pos < r->window_start + r->window_len) {
            size_t at = (size_t)(r->pos - r->window_start);
            size_t take = r->window_len - at < n ? r->window_len - at : (size_t)n;
            memcpy(out, r->window + at, take);
            out += take;
            n -= take;
            r->pos += take;
            continue;
        }
        if (n >= WINDOW_BYTES) { /* a long string: straight into its memory */
            int64_t got = pread_full(r->g->fd, out, (size_t)n, r->pos);
            if (got < 0)
                return gptq_fail(GPTQ_ERR_IO, "%s: read at byte %llu failed: %s", r->g->name,
                                 (unsigned long long)r->pos, strerror(errno));
            r->pos += (uint64_t)got;
            return (uint64_t)got < n ? shrank(r) : GPTQ_OK;
        }
        uint64_t want = remaining(r) < WINDOW_BYTES ? remaining(r) : WINDOW_BYTES;
        int64_t got = pread_full(r->g->fd, r->window, (size_t)want, r->pos);
        if (got < 0)
            return gptq_fail(GPTQ_ERR_IO, "%s: read at byte %llu failed: %s", r->g->name,
                             (unsigned long long)r->pos, strerror(errno));
        r->window_start = r->pos;
        r->window_len = (size_t)got;
        if ((uint64_t)got < n) {
            r->pos += (uint64_t)got;
            return shrank(r);
        }
    }
    return GPTQ_OK;
}

static gptq_status read_u8(reader *r, uint8_t *v, const char *field) { return read_bytes(r, v, 1, field); }

static gptq_status read_u16(reader *r, uint16_t *v, const char *field) { return read_bytes(r, v, 2, field); }

static gptq_status read_u32(reader *r, uint32_t *v, const char *field) { return read_bytes(r, v, 4, field); }

static gptq_status read_u64(reader *r, uint64_t *v, const char *field) { return read_bytes(r, v, 8, field); }

/* A u64 length and that many bytes, copied into the arena NUL-terminated.
 * `max` bounds the length (keys and names), `field` names it in errors. */
static gptq_status read_string(reader *r, uint64_t max, const char *field, const char **ptr, uint64_t *len)
{
    gptq_status st;
    uint64_t n;
    char what[64];
    snprintf(what, sizeof what, "%s length", field);
    if ((st = read_u64(r, &n, what)) != GPTQ_OK)
        return st;
    if (n > remaining(r))
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: %s: %s length %llu at byte %llu runs past the end of the file (%llu bytes remain)",
                         r->g->name, r->where, field, (unsigned long long)n, (unsigned long long)(r->pos - 8),
                         (unsigned long long)remaining(r));
    if (n > max)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: %s length %llu at byte %llu exceeds the limit of %llu bytes",
                         r->g->name, r->where, field, (unsigned long long)n, (unsigned long long)(r->pos - 8),
                         (unsigned long long)max);
    char *s = arena_alloc(r->g, (size_t)n + 1);
    if (!s)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: %s: no memory for a %s of %llu bytes", r->g->name, r->where, field,
                         (unsigned long long)n);
    if ((st = read_bytes(r, s, n, field)) != GPTQ_OK)
        return st;
    s[n] = '\0';
    *ptr = s;
    *len = n;
    return GPTQ_OK;
}

/* A key or tensor name: 1..GPTQ_GGUF_MAX_NAME bytes, no NUL inside. */
static gptq_status read_name(reader *r, const char *field, const char **out)
{
    gptq_status st;
    uint64_t len = 0;
    if ((st = read_string(r, GPTQ_GGUF_MAX_NAME, field, out, &len)) != GPTQ_OK)
        return st;
    if (len == 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: the %s at byte %llu is empty", r->g->name, r->where, field,
                         (unsigned long long)(r->pos - 8));
    if (strlen(*out) != len)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: the %s '" NAME_FMT "' at byte %llu contains a NUL byte",
                         r->g->name, r->where, field, *out, (unsigned long long)(r->pos - len - 8));
    return GPTQ_OK;
}

/* The fewest bytes one value of a type takes in the file. */
static uint64_t min_value_bytes(uint32_t type)
{
    switch (type) {
    case GPTQ_GGUF_UINT8: case GPTQ_GGUF_INT8: case GPTQ_GGUF_BOOL: return 1;
    case GPTQ_GGUF_UINT16: case GPTQ_GGUF_INT16: return 2;
    case GPTQ_GGUF_UINT32: case GPTQ_GGUF_INT32: case GPTQ_GGUF_FLOAT32: return 4;
    case GPTQ_GGUF_STRING: return 8;           /* the length */
    case GPTQ_GGUF_ARRAY: return 4 + 8;        /* element type, count */
    default: return 8;                         /* UINT64, INT64, FLOAT64 */
    }
}

static gptq_status read_value(reader *r, uint32_t type, int depth, gptq_gguf_value *out);

/* An array's element type, count and elements; `depth` is its nesting
 * level (a top-level array is 1). */
static gptq_status read_array(reader *r, int depth, gptq_gguf_value *out)
{
    gptq_status st;
    gptq_gguf *g = r->g;
    uint32_t elem;
    uint64_t n;
    if (depth > GPTQ_GGUF_MAX_DEPTH)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: arrays nested %d deep at byte %llu, at most %d allowed",
                         g->name, r->where, depth, (unsigned long long)r->pos, GPTQ_GGUF_MAX_DEPTH);
    if ((st = read_u32(r, &elem, "array element type")) != GPTQ_OK)
        return st;
    if (elem >= GPTQ_GGUF_TYPE_COUNT)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: array element type %u at byte %llu is unknown (0..%d are GGUF types)",
                         g->name, r->where, elem, (unsigned long long)(r->pos - 4), GPTQ_GGUF_TYPE_COUNT - 1);
    if ((st = read_u64(r, &n, "array count")) != GPTQ_OK)
        return st;
    uint64_t min_bytes = min_value_bytes(elem);
    if (n > remaining(r) / min_bytes)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: %s: array count %llu at byte %llu: that many %s elements need at least %llu bytes each, "
                         "only %llu bytes remain in the file",
                         g->name, r->where, (unsigned long long)n, (unsigned long long)(r->pos - 8),
                         value_type_name(elem), (unsigned long long)min_bytes, (unsigned long long)remaining(r));
    if (n > GPTQ_GGUF_MAX_VALUES - g->n_values)
        return gptq_fail(GPTQ_ERR_FORMAT,
                         "%s: %s: array count %llu at byte %llu takes the metadata past %d values in all "
                         "(a model's vocabulary needs far fewer)",
                         g->name, r->where, (unsigned long long)n, (unsigned long long)(r->pos - 8),
                         GPTQ_GGUF_MAX_VALUES);
    g->n_values += n;
    gptq_gguf_value *items = NULL;
    if (n > 0 && !(items = arena_alloc(g, (size_t)n * sizeof *items)))
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: %s: no memory for an array of %llu values", g->name, r->where,
                         (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        if ((st = read_value(r, elem, depth, &items[i])) != GPTQ_OK)
            return st;
    out->v.arr.elem = (gptq_gguf_type)elem;
    out->v.arr.n = n;
    out->v.arr.items = items;
    return GPTQ_OK;
}

/* One value of `type` (already read); `depth` is the enclosing arrays'. */
static gptq_status read_value(reader *r, uint32_t type, int depth, gptq_gguf_value *out)
{
    gptq_status st;
    union {
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
    } raw;
    float f32;
    double f64;
    memset(out, 0, sizeof *out);
    out->type = (gptq_gguf_type)type;
    switch (type) {
    case GPTQ_GGUF_UINT8:
        st = read_u8(r, &raw.u8, "uint8 value");
        out->v.u = raw.u8;
        return st;
    case GPTQ_GGUF_INT8:
        st = read_u8(r, &raw.u8, "int8 value");
        out->v.i = (int8_t)raw.u8;
        return st;
    case GPTQ_GGUF_UINT16:
        st = read_u16(r, &raw.u16, "uint16 value");
        out->v.u = raw.u16;
        return st;
    case GPTQ_GGUF_INT16:
        st = read_u16(r, &raw.u16, "int16 value");
        out->v.i = (int16_t)raw.u16;
        return st;
    case GPTQ_GGUF_UINT32:
        st = read_u32(r, &raw.u32, "uint32 value");
        out->v.u = raw.u32;
        return st;
    case GPTQ_GGUF_INT32:
        st = read_u32(r, &raw.u32, "int32 value");
        out->v.i = (int32_t)raw.u32;
        return st;
    case GPTQ_GGUF_UINT64:
        return read_u64(r, &out->v.u, "uint64 value");
    case GPTQ_GGUF_INT64:
        st = read_u64(r, &raw.u64, "int64 value");
        out->v.i = (int64_t)raw.u64;
        return st;
    case GPTQ_GGUF_FLOAT32:
        st = read_bytes(r, &f32, 4, "float32 value");
        out->v.f = f32;
        return st;
    case GPTQ_GGUF_FLOAT64:
        st = read_bytes(r, &f64, 8, "float64 value");
        out->v.f = f64;
        return st;
    case GPTQ_GGUF_BOOL:
        if ((st = read_u8(r, &raw.u8, "bool value")) != GPTQ_OK)
            return st;
        if (raw.u8 > 1)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: bool value at byte %llu is %u, expected 0 or 1", r->g->name,
                             r->where, (unsigned long long)(r->pos - 1), raw.u8);
        out->v.b = raw.u8;
        return GPTQ_OK;
    case GPTQ_GGUF_STRING:
        return read_string(r, GPTQ_GGUF_MAX_STRING, "string", &out->v.str.ptr, &out->v.str.len);
    case GPTQ_GGUF_ARRAY:
        return read_array(r, depth + 1, out);
    default:
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: value type %u at byte %llu is unknown (0..%d are GGUF types)",
                         r->g->name, r->where, type, (unsigned long long)(r->pos - 4), GPTQ_GGUF_TYPE_COUNT - 1);
    }
}

/* Magic, version and the two counts, checked against the file's size. */
static gptq_status read_preamble(reader *r, uint64_t *n_tensors, uint64_t *n_kv)
{
    gptq_status st;
    gptq_gguf *g = r->g;
    unsigned char magic[4];
    snprintf(r->where, sizeof r->where, "header");
    if (g->file_bytes >= 4 && (st = read_bytes(r, magic, 4, "magic")) != GPTQ_OK)
        return st;
    if (g->file_bytes < 4 || memcmp(magic, "GGUF", 4) != 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: bad magic: a GGUF file starts with the bytes \"GGUF\" (not a GGUF file?)",
                         g->name);
    if ((st = read_u32(r, &g->version, "version")) != GPTQ_OK)
        return st;
    if (g->version == 1)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: GGUF version 1 (2023, 32-bit counts) is not supported: "
                         "convert the model again with a current llama.cpp (versions 2 and 3 are read)", g->name);
    if (g->version != 2 && g->version != 3)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: GGUF version %u is unknown (versions 2 and 3 are read)%s", g->name,
                         g->version, g->version != 0 && (g->version & 0xffff) == 0 ? "; it looks byte-swapped: big-endian files are not supported" : "");
    if ((st = read_u64(r, n_tensors, "tensor count")) != GPTQ_OK || (st = read_u64(r, n_kv, "metadata count")) != GPTQ_OK)
        return st;
    if (*n_tensors > GPTQ_GGUF_MAX_TENSORS)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor count %llu exceeds the limit of %d", g->name,
                         (unsigned long long)*n_tensors, GPTQ_GGUF_MAX_TENSORS);
    if (*n_kv > GPTQ_GGUF_MAX_KV)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: metadata count %llu exceeds the limit of %d", g->name,
                         (unsigned long long)*n_kv, GPTQ_GGUF_MAX_KV);
    /* both counts are at most 2^20 here: the products cannot overflow */
    if (*n_kv * MIN_KV_BYTES > remaining(r))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: metadata count %llu needs at least %llu bytes, the file has %llu after its header",
                         g->name, (unsigned long long)*n_kv, (unsigned long long)(*n_kv * MIN_KV_BYTES),
                         (unsigned long long)remaining(r));
    if (*n_tensors * MIN_TENSOR_BYTES > remaining(r))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor count %llu needs at least %llu bytes, the file has %llu after its header",
                         g->name, (unsigned long long)*n_tensors, (unsigned long long)(*n_tensors * MIN_TENSOR_BYTES),
                         (unsigned long long)remaining(r));
    return GPTQ_OK;
}

static gptq_status read_metadata(reader *r, uint64_t n_kv)
{
    gptq_status st;
    gptq_gguf *g = r->g;
    if (!(g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs)) || index_init(&g->kv_index, n_kv) != 0)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory for %llu metadata entries", g->name, (unsigned long long)n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        gptq_gguf_kv *kv = &g->kvs[i];
        uint32_t type;
        snprintf(r->where, sizeof r->where, "metadata entry %llu", (unsigned long long)i);
        if ((st = read_name(r, "key", &kv->key)) != GPTQ_OK)
            return st;
        snprintf(r->where, sizeof r->where, "metadata key '" NAME_FMT "'", kv->key);
        if (index_insert(&g->kv_index, g->kvs, sizeof *g->kvs, i) != SIZE_MAX)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: metadata key '" NAME_FMT "' appears twice (again as entry %llu)",
                             g->name, kv->key, (unsigned long long)i);
        if ((st = read_u32(r, &type, "value type")) != GPTQ_OK || (st = read_value(r, type, 0, &kv->value)) != GPTQ_OK)
            return st;
        g->n_kv = i + 1;
    }
    g->alignment = 32;
    const gptq_gguf_kv *align = gptq_gguf_find_kv(g, "general.alignment");
    if (align) {
        if (align->value.type != GPTQ_GGUF_UINT32)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: metadata key 'general.alignment' is a %s, expected a uint32", g->name,
                             value_type_name(align->value.type));
        uint64_t a = align->value.v.u;
        if (a == 0 || (a & (a - 1)) != 0)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: metadata key 'general.alignment' is %llu, expected a power of two",
                             g->name, (unsigned long long)a);
        g->alignment = (uint32_t)a;
    }
    return GPTQ_OK;
}

/* One tensor info: name, shape, type, offset (checked against the data
 * section later, when its start is known). */
static gptq_status read_tensor_info(reader *r, size_t i)
{
    gptq_status st;
    gptq_gguf *g = r->g;
    gptq_gguf_tensor *t = &g->tensors[i];
    uint32_t n_dims, type;
    snprintf(r->where, sizeof r->where, "tensor info %zu", i);
    if ((st = read_name(r, "tensor name", &t->name)) != GPTQ_OK)
        return st;
    snprintf(r->where, sizeof r->where, "tensor '" NAME_FMT "'", t->name);
    if (index_insert(&g->tensor_index, g->tensors, sizeof *g->tensors, i) != SIZE_MAX)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "' appears twice (again as tensor %zu)", g->name,
                         t->name, i);
    if ((st = read_u32(r, &n_dims, "n_dims")) != GPTQ_OK)
        return st;
    if (n_dims < 1 || n_dims > 4)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: n_dims is %u, expected 1..4", g->name, r->where, n_dims);
    t->n_dims = (int)n_dims;
    t->numel = 1;
    for (int d = 0; d < 4; d++)
        t->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if ((st = read_u64(r, &ne, "ne")) != GPTQ_OK)
            return st;
        /* ggml allows 0; an empty tensor has no use in a model and would
         * sit inside or between others without bytes of its own */
        if (ne == 0 || ne > INT64_MAX)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: ne[%d] is %llu, expected 1..2^63-1", g->name, r->where, d,
                             (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        if (__builtin_mul_overflow(t->numel, t->ne[d], &t->numel))
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: the element count overflows int64 at ne[%d] = %lld", g->name,
                             r->where, d, (long long)t->ne[d]);
    }
    if ((st = read_u32(r, &type, "type")) != GPTQ_OK)
        return st;
    /* the first test keeps the cast in range */
    if (type >= GPTQ_GGML_TYPE_LIMIT || gptq_ggml_block_elems((int)type) == 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: ggml type %u is unknown (a newer llama.cpp's? known: F32, F16, BF16, "
                         "Q4_0..Q8_1, Q2_K..Q8_K, IQ*, TQ*, MXFP4, I8..I64, F64)", g->name, r->where, type);
    t->type = (int)type;
    int be = gptq_ggml_block_elems(t->type), bb = gptq_ggml_block_bytes(t->type);
    if (t->ne[0] % be != 0)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: ne[0] = %lld is not a multiple of %s's block of %d elements", g->name,
                         r->where, (long long)t->ne[0], gptq_ggml_type_name(t->type), be);
    if (__builtin_mul_overflow((uint64_t)(t->numel / be), (uint64_t)bb, &t->bytes) || t->bytes > INT64_MAX)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s: %lld elements of %s overflow a 64-bit byte count", g->name, r->where,
                         (long long)t->numel, gptq_ggml_type_name(t->type));
    return read_u64(r, &t->offset, "offset");
}

static int span_cmp(const void *a, const void *b)
{
    const gptq_gguf_tensor *x = *(const gptq_gguf_tensor *const *)a, *y = *(const gptq_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every tensor aligned, inside the data section, apart from the others. */
static gptq_status check_spans(gptq_gguf *g)
{
    for (size_t i = 0; i < g->n_tensors; i++) {
        const gptq_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "': offset %llu is not a multiple of the alignment %u",
                             g->name, t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > g->data_bytes || t->bytes > g->data_bytes - t->offset)
            return gptq_fail(GPTQ_ERR_FORMAT,
                             "%s: tensor '" NAME_FMT "': offset %llu + %llu bytes runs past the data section "
                             "(%llu bytes from byte %llu): the file is truncated",
                             g->name, t->name, (unsigned long long)t->offset, (unsigned long long)t->bytes,
                             (unsigned long long)g->data_bytes, (unsigned long long)g->data_offset);
    }
    if (g->n_tensors < 2)
        return GPTQ_OK;
    const gptq_gguf_tensor **order = malloc(g->n_tensors * sizeof *order);
    if (!order)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory to sort %zu tensors", g->name, g->n_tensors);
    for (size_t i = 0; i < g->n_tensors; i++)
        order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof *order, span_cmp);
    gptq_status st = GPTQ_OK;
    for (size_t i = 1; i < g->n_tensors && st == GPTQ_OK; i++) {
        const gptq_gguf_tensor *prev = order[i - 1], *t = order[i];
        /* sorted, non-empty, each checked non-overlapping with the one
         * before: the one before reaches furthest */
        if (t->offset < prev->offset + prev->bytes)
            st = gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '" NAME_FMT "' [%llu, %llu) overlaps tensor '" NAME_FMT "' [%llu, %llu)",
                           g->name, t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->bytes),
                           prev->name, (unsigned long long)prev->offset, (unsigned long long)(prev->offset + prev->bytes));
    }
    free(order);
    return st;
}

static gptq_status read_header(reader *r)
{
    gptq_status st;
    gptq_gguf *g = r->g;
    uint64_t n_tensors, n_kv;
    if ((st = read_preamble(r, &n_tensors, &n_kv)) != GPTQ_OK || (st = read_metadata(r, n_kv)) != GPTQ_OK)
        return st;
    snprintf(r->where, sizeof r->where, "tensor infos");
    if (n_tensors * MIN_TENSOR_BYTES > remaining(r))
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor count %llu needs at least %llu bytes, the file has %llu after its metadata",
                         g->name, (unsigned long long)n_tensors, (unsigned long long)(n_tensors * MIN_TENSOR_BYTES),
                         (unsigned long long)remaining(r));
    if (!(g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors)) ||
        index_init(&g->tensor_index, n_tensors) != 0)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory for %llu tensor infos", g->name, (unsigned long long)n_tensors);
    for (size_t i = 0; i < n_tensors; i++) {
        if ((st = read_tensor_info(r, i)) != GPTQ_OK)
            return st;
        g->n_tensors = i + 1;
    }
    /* r->pos <= file size < 2^63 and alignment <= 2^31: no overflow */
    g->data_offset = (r->pos + g->alignment - 1) / g->alignment * g->alignment;
    g->data_bytes = g->file_bytes > g->data_offset ? g->file_bytes - g->data_offset : 0;
    return check_spans(g);
}

/* ---- open, close, lookups ---------------------------------------------------- */

/* Validate the file at fd (owned from here on: closed on failure). */
static gptq_status open_owned(int fd, const char *name, gptq_gguf **out)
{
    gptq_status st;
    reader r = {0};
    struct stat sb;
    gptq_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        close(fd);
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: no memory", name);
    }
    g->fd = fd;
    MEM_TRY(g->name = strdup(name), "%s: no memory", name);
    SYS_TRY(fstat(fd, &sb), GPTQ_ERR_IO, "%s: fstat", name);
    if (!S_ISREG(sb.st_mode)) {
        st = gptq_fail(GPTQ_ERR_IO, "%s: not a regular file (a GGUF model must be one: no FIFO, device or directory)",
                       name);
        goto fail;
    }
    g->file_bytes = (uint64_t)sb.st_size;
    r.g = g;
    MEM_TRY(r.window = malloc(WINDOW_BYTES), "%s: no memory for the read buffer", name);
    TRY(read_header(&r));
    free(r.window);
    *out = g;
    return GPTQ_OK;

fail:
    free(r.window);
    gptq_gguf_close(g);
    return st;
}

gptq_status gptq_gguf_open(const char *path, gptq_gguf **out)
{
    if (!out || !path)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_gguf_open: path and out must not be NULL");
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO without a writer must not hang before
     * fstat() can say it is not a regular file */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        return gptq_fail(gptq_errno_status(err), "%s: cannot open: %s", path, strerror(err));
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        int err = errno;
        close(fd);
        return gptq_fail(GPTQ_ERR_IO, "%s: fcntl: %s", path, strerror(err));
    }
    return open_owned(fd, path, out);
}

gptq_status gptq_gguf_open_fd(int fd, const char *name, gptq_gguf **out)
{
    if (!out)
        return gptq_fail(GPTQ_ERR_ARG, "gptq_gguf_open_fd: out must not be NULL");
    *out = NULL;
    char label[32];
    if (!name) {
        snprintf(label, sizeof label, "fd %d", fd);
        name = label;
    }
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        int err = errno;
        return gptq_fail(err == EBADF ? GPTQ_ERR_ARG : GPTQ_ERR_IO, "%s: cannot dup descriptor %d: %s", name, fd,
                         strerror(err));
    }
    return open_owned(own, name, out);
}

void gptq_gguf_close(gptq_gguf *g)
{
    if (!g)
        return;
    if (g->fd >= 0)
        close(g->fd);
    while (g->arena) {
        arena_block *next = g->arena->next;
        free(g->arena);
        g->arena = next;
    }
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
    free(g->kvs);
    free(g->tensors);
    free(g->name);
    free(g);
}

uint32_t gptq_gguf_version(const gptq_gguf *g) { return g ? g->version : 0; }
uint32_t gptq_gguf_alignment(const gptq_gguf *g) { return g ? g->alignment : 0; }
const char *gptq_gguf_name(const gptq_gguf *g) { return g ? g->name : NULL; }
size_t gptq_gguf_kv_count(const gptq_gguf *g) { return g ? g->n_kv : 0; }
size_t gptq_gguf_tensor_count(const gptq_gguf *g) { return g ? g->n_tensors : 0; }

const gptq_gguf_kv *gptq_gguf_kv_at(const gptq_gguf *g, size_t i)
{
    return g && i < g->n_kv ? &g->kvs[i] : NULL;
}

const gptq_gguf_tensor *gptq_gguf_tensor_at(const gptq_gguf *g, size_t i)
{
    return g && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gptq_gguf_kv *gptq_gguf_find_kv(const gptq_gguf *g, const char *key)
{
    return g ? index_find(&g->kv_index, g->kvs, sizeof *g->kvs, key) : NULL;
}

const gptq_gguf_tensor *gptq_gguf_find_tensor(const gptq_gguf *g, const char *name)
{
    return g ? index_find(&g->tensor_index, g->tensors, sizeof *g->tensors, name) : NULL;
}

int gptq_gguf_get_int(const gptq_gguf *g, const char *key, int64_t *out)
{
    const gptq_gguf_kv *kv = gptq_gguf_find_kv(g, key);
    if (!kv || !out)
        return 0;
    switch (kv->value.type) {
    case GPTQ_GGUF_UINT8: case GPTQ_GGUF_UINT16: case GPTQ_GGUF_UINT32: case GPTQ_GGUF_UINT64:
        if (kv->value.v.u > INT64_MAX)
            return 0;
        *out = (int64_t)kv->value.v.u;
        return 1;
    case GPTQ_GGUF_INT8: case GPTQ_GGUF_INT16: case GPTQ_GGUF_INT32: case GPTQ_GGUF_INT64:
        *out = kv->value.v.i;
        return 1;
    default:
        return 0;
    }
}

int gptq_gguf_get_float(const gptq_gguf *g, const char *key, double *out)
{
    const gptq_gguf_kv *kv = gptq_gguf_find_kv(g, key);
    if (!kv || !out || (kv->value.type != GPTQ_GGUF_FLOAT32 && kv->value.type != GPTQ_GGUF_FLOAT64))
        return 0;
    *out = kv->value.v.f;
    return 1;
}

int gptq_gguf_get_bool(const gptq_gguf *g, const char *key, int *out)
{
    const gptq_gguf_kv *kv = gptq_gguf_find_kv(g, key);
    if (!kv || !out || kv->value.type != GPTQ_GGUF_BOOL)
        return 0;
    *out = kv->value.v.b;
    return 1;
}

int gptq_gguf_get_string(const gptq_gguf *g, const char *key, const char **ptr, size_t *len)
{
    const gptq_gguf_kv *kv = gptq_gguf_find_kv(g, key);
    if (!kv || !ptr || !len || kv->value.type != GPTQ_GGUF_STRING)
        return 0;
    *ptr = kv->value.v.str.ptr;
    *len = (size_t)kv->value.v.str.len;
    return 1;
}

const gptq_gguf_value *gptq_gguf_get_array(const gptq_gguf *g, const char *key, gptq_gguf_type elem)
{
    const gptq_gguf_kv *kv = gptq_gguf_find_kv(g, key);
    if (!kv || kv->value.type != GPTQ_GGUF_ARRAY || kv->value.v.arr.elem != elem)
        return NULL;
    return &kv->value;
}

/* ---- tensor data -------------------------------------------------------------- */

/* bytes of tensor t from byte `from` of its data into buf. */
static gptq_status read_span(const gptq_gguf *g, const gptq_gguf_tensor *t, uint64_t from, uint64_t bytes, void *buf)
{
    uint64_t at = g->data_offset + t->offset + from;
    int64_t got = pread_full(g->fd, buf, (size_t)bytes, at);
    if (got < 0)
        return gptq_fail(GPTQ_ERR_IO, "%s: tensor '" NAME_FMT "': read of %llu bytes at byte %llu failed: %s", g->name,
                         t->name, (unsigned long long)bytes, (unsigned long long)at, strerror(errno));
    if ((uint64_t)got < bytes) {
        struct stat sb;
        long long now = fstat(g->fd, &sb) == 0 ? (long long)sb.st_size : -1;
        return gptq_fail(GPTQ_ERR_IO, "%s: tensor '" NAME_FMT "' ends at byte %llu, the file now has %lld bytes "
                         "(%llu when opened): it was truncated or replaced while open",
                         g->name, t->name, (unsigned long long)(g->data_offset + t->offset + t->bytes), now,
                         (unsigned long long)g->file_bytes);
    }
    return GPTQ_OK;
}

static gptq_status check_tensor(const gptq_gguf *g, const gptq_gguf_tensor *t, const void *buf, const char *fn)
{
    if (!g || !t || !buf)
        return gptq_fail(GPTQ_ERR_ARG, "%s: handle, tensor and buffer must not be NULL", fn);
    if (t < g->tensors || t >= g->tensors + g->n_tensors)
        return gptq_fail(GPTQ_ERR_ARG, "%s: %s: the tensor is not one of this file's (from another handle?)", fn,
                         g->name);
    if (t->bytes > SIZE_MAX)
        return gptq_fail(GPTQ_ERR_LIMIT, "%s: tensor '" NAME_FMT "' of %llu bytes does not fit the address space",
                         g->name, t->name, (unsigned long long)t->bytes);
    return GPTQ_OK;
}

gptq_status gptq_gguf_read(const gptq_gguf *g, const gptq_gguf_tensor *t, void *buf)
{
    gptq_status st = check_tensor(g, t, buf, "gptq_gguf_read");
    return st != GPTQ_OK ? st : read_span(g, t, 0, t->bytes, buf);
}

gptq_status gptq_gguf_read_f32(const gptq_gguf *g, const gptq_gguf_tensor *t, float *out)
{
    gptq_status st = check_tensor(g, t, out, "gptq_gguf_read_f32");
    if (st != GPTQ_OK)
        return st;
    if (!gptq_ggml_can_dequantize(t->type))
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: tensor '" NAME_FMT "' is %s, which this reader does not convert to "
                         "float32 (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K are)",
                         g->name, t->name, gptq_ggml_type_name(t->type));
    if (t->type == GPTQ_GGML_F32)
        return read_span(g, t, 0, t->bytes, out);
    /* whole blocks, F32_CHUNK_BYTES of them at a time, so the temporary
     * stays small however big the tensor */
    uint64_t be = (uint64_t)gptq_ggml_block_elems(t->type), bb = (uint64_t)gptq_ggml_block_bytes(t->type);
    uint64_t n_blocks = t->bytes / bb, chunk = F32_CHUNK_BYTES / bb;
    if (chunk > n_blocks)
        chunk = n_blocks;
    unsigned char *raw = malloc((size_t)(chunk * bb));
    if (!raw)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: tensor '" NAME_FMT "': no memory for a %llu-byte read buffer", g->name,
                         t->name, (unsigned long long)(chunk * bb));
    for (uint64_t done = 0; done < n_blocks && st == GPTQ_OK; done += chunk) {
        uint64_t n = n_blocks - done < chunk ? n_blocks - done : chunk;
        st = read_span(g, t, done * bb, n * bb, raw);
        if (st == GPTQ_OK)
            st = gptq_gguf_dequantize(t->type, raw, out + done * be, (int64_t)(n * be));
    }
    free(raw);
    return st;
}
