/* model/json_error.h: jansson's parse error without its quote of the text.
 * jansson says "... expected near 'TOPSECRET'": a model file's parse error
 * must never show a client the contents of a file it could not read itself
 * (a symlink to a secret, say), so every reader reports errors through this. */
#ifndef GPTQ_MODEL_JSON_ERROR_H
#define GPTQ_MODEL_JSON_ERROR_H

#include <stdio.h>
#include <string.h>

#include <jansson.h>

/* e->text up to its " near '...'" part, in buf[n]; returns buf. */
static inline const char *gptq_json_error_text(const json_error_t *e, char *buf, size_t n)
{
    snprintf(buf, n, "%s", e->text);
    char *near = strstr(buf, " near ");
    if (near)
        *near = '\0';
    return buf;
}

#endif
