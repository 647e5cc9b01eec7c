/* proto/wire_strings.h: the string fields of a packed protobuf message,
 * checked on the wire. protobuf-c hands a `string` field over as a C
 * string: a NUL byte inside it silently cuts it short (a name "a\0b" would
 * be taken as "a"), and it does not check UTF-8, which proto3 requires and
 * strict decoders (Python, Go) enforce, so bytes a client sent could be
 * echoed to every other client and break them. */
#ifndef GPTQ_PROTO_WIRE_STRINGS_H
#define GPTQ_PROTO_WIRE_STRINGS_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "gptq/error.h"

/* Walk msg[len] (already known to unpack as `desc`) and check every string
 * field, in nested messages too. Errors: GPTQ_ERR_ARG naming the field by
 * its path ("request.load.name: not valid UTF-8 at byte 3", "... holds a
 * NUL byte at byte 1"). `root` names the top message in that path. */
gptq_status gptq_wire_check_strings(const ProtobufCMessageDescriptor *desc, const void *msg,
                                    size_t len, const char *root);

#endif
