/* common/options.h: how a numeric option of a job is defined once
 * (docs/ARCHITECTURE.md "Options").
 *
 * A table of gptq_option describes the numeric fields of one options
 * struct: the name users see (gptqctl's --NAME, the subject of every
 * message), the default, the bounds, and so the one message a value outside
 * them gets, e.g. "nsamples 0: use 1 to 65536". The tables live with the
 * structs they describe (quant/config.c, model/options.c); this file only
 * reads them, so that the library, gptqd and gptqctl check a value with the
 * same code and say the same thing. */
#ifndef GPTQ_COMMON_OPTIONS_H
#define GPTQ_COMMON_OPTIONS_H

#include <stddef.h>

#include "gptq/error.h"

typedef enum gptq_option_type {
    GPTQ_OPTION_INT,   /* an int field; a value must be a whole number */
    GPTQ_OPTION_FLOAT, /* a float field; the value is checked as the float it becomes */
    GPTQ_OPTION_U64,   /* a uint64_t field that takes every value (seeds): never refused
                          here; callers store it themselves, a double cannot carry it */
} gptq_option_type;

typedef struct gptq_option {
    const char *name;       /* "nsamples", "group-size": gptqctl's --NAME */
    gptq_option_type type;
    size_t offset;          /* of the field in the struct the table describes */
    double def;             /* the default */
    double min, max;        /* bounds, inclusive unless min_open / max_open */
    unsigned char min_open, max_open;
    unsigned choices;       /* INT: nonzero = only the values v with bit (1u << v) set */
    unsigned char has_extra;/* one more legal value outside the bounds: */
    double extra;           /*   its value (group-size -1) */
    const char *extra_means;/*   and what it means ("per channel") */
} gptq_option;

/* The entry of table [n] called `name`, or NULL. */
const gptq_option *gptq_option_find(const gptq_option *table, size_t n, const char *name);

/* GPTQ_OK when v is a legal value of opt, else GPTQ_ERR_ARG with the
 * message "NAME V: use RANGE" ("damp 1: use a value in [0, 1)"). */
gptq_status gptq_option_check(const gptq_option *opt, double v);

/* Check v (gptq_option_check), then store it into opt's field of `opts`,
 * the struct opt's table describes. Fails for a U64 option (see its type). */
gptq_status gptq_option_set(const gptq_option *opt, void *opts, double v);

/* The refusal of a value that cannot even be held (a number given as
 * text that overflows every type, a negative seed): GPTQ_ERR_ARG with
 * "NAME TEXT: use RANGE". */
gptq_status gptq_option_refuse(const gptq_option *opt, const char *text);

/* Every field of table [n] in `opts` set to its default. */
void gptq_options_default(const gptq_option *table, size_t n, void *opts);

/* Every field of table [n] in `opts` checked; the first bad one's message. */
gptq_status gptq_options_check(const gptq_option *table, size_t n, const void *opts);

/* The default as help text shows it ("128", "0.01", "-1"), into buf[cap]. */
void gptq_option_default_text(const gptq_option *opt, char *buf, size_t cap);

/* The legal values in words, into buf[cap]: "1 to 65536", "2, 3, 4 or 8",
 * "-1 (per channel) or 1 to 65536", "a value in [0, 1)". */
void gptq_option_range_text(const gptq_option *opt, char *buf, size_t cap);

#endif
