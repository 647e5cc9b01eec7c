/* proto/wire_strings.c: see wire_strings.h. The walk reads only tags and
 * lengths (the message was unpacked before, so the wire is well formed;
 * anything unexpected ends the walk quietly and unpack's verdict stands). */
#include "proto/wire_strings.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/utf8.h"

enum { MAX_DEPTH = 16 };

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

static gptq_status walk(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                        const uint8_t *end, char *path, size_t path_len, int depth)
{
    while (p < end) {
        uint64_t tag, n;
        if (varint(&p, end, &tag))
            return GPTQ_OK;
        unsigned wire = (unsigned)(tag & 7);
        uint32_t number = (uint32_t)(tag >> 3);
        if (wire == 0) {
            if (varint(&p, end, &n))
                return GPTQ_OK;
            continue;
        }
        if (wire == 1 || wire == 5) {
            size_t skip = wire == 1 ? 8 : 4;
            if ((size_t)(end - p) < skip)
                return GPTQ_OK;
            p += skip;
            continue;
        }
        if (wire != 2 || varint(&p, end, &n) || n > (uint64_t)(end - p))
            return GPTQ_OK;
        const ProtobufCFieldDescriptor *f =
            desc ? protobuf_c_message_descriptor_get_field(desc, number) : NULL;
        if (f && (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)) {
            int at = snprintf(path + path_len, 256 - path_len, ".%s", f->name);
            size_t sub_len = at > 0 && (size_t)at < 256 - path_len ? path_len + (size_t)at
                                                                    : path_len;
            if (f->type == PROTOBUF_C_TYPE_STRING) {
                const void *nul = memchr(p, '\0', (size_t)n);
                size_t bad = gptq_utf8_check((const char *)p, (size_t)n);
                if (nul)
                    return gptq_fail(GPTQ_ERR_ARG, "%s: holds a NUL byte at byte %zu", path,
                                     (size_t)((const uint8_t *)nul - p));
                if (bad < n)
                    return gptq_fail(GPTQ_ERR_ARG, "%s: not valid UTF-8 at byte %zu", path, bad);
            } else if (depth < MAX_DEPTH) {
                gptq_status st = walk(f->descriptor, p, p + n, path, sub_len, depth + 1);
                if (st)
                    return st;
            }
            path[path_len] = '\0';
        }
        p += n;
    }
    return GPTQ_OK;
}

gptq_status gptq_wire_check_strings(const ProtobufCMessageDescriptor *desc, const void *msg,
                                    size_t len, const char *root)
{
    char path[256];
    snprintf(path, sizeof path, "%s", root);
    const uint8_t *p = msg;
    return walk(desc, p, p + len, path, strlen(path), 0);
}
