/* common/options.c: reading the option tables (see options.h). */
#include "common/options.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const gptq_option *gptq_option_find(const gptq_option *table, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

/* A float in the fewest digits that read back as the same float: 0.1f is
 * "0.1", the float after 1 is "1.00000012" (not "1", which would hide why
 * a top-p of it is refused). */
static void float_text(double v, char *buf, size_t cap)
{
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if ((float)strtod(buf, NULL) == (float)v)
            return;
    }
}

/* v as the message quotes it. */
static void value_text(const gptq_option *opt, double v, char *buf, size_t cap)
{
    if (opt->type == GPTQ_OPTION_FLOAT && isfinite(v) && fabs(v) <= FLT_MAX)
        float_text(v, buf, cap);
    else if (isfinite(v) && v == floor(v) && fabs(v) < 1e18)
        snprintf(buf, cap, "%.0f", v);
    else
        snprintf(buf, cap, "%g", v);
}

void gptq_option_range_text(const gptq_option *opt, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
/* appends while there is room (a text cut short stays terminated) */
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (len < cap)                                                                             \
            len += (size_t)snprintf(buf + len, cap - len, __VA_ARGS__);                            \
    } while (0)
    if (opt->type == GPTQ_OPTION_U64) {
        ADD("0 to %" PRIu64, UINT64_MAX);
        return;
    }
    if (opt->has_extra)
        ADD("%g (%s) or ", opt->extra, opt->extra_means);
    if (opt->type == GPTQ_OPTION_INT && opt->choices) {
        int left = __builtin_popcount(opt->choices);
        for (int v = 0; v < 32; v++) {
            if (!(opt->choices & (1u << v)))
                continue;
            left--;
            ADD("%d%s", v, left > 1 ? ", " : left == 1 ? " or " : "");
        }
    } else if (opt->type == GPTQ_OPTION_INT) {
        ADD("%.0f to %.0f", opt->min, opt->max);
    } else {
        ADD("a value in %c%g, %g%c", opt->min_open ? '(' : '[', opt->min, opt->max,
            opt->max_open ? ')' : ']');
    }
#undef ADD
}

gptq_status gptq_option_refuse(const gptq_option *opt, const char *text)
{
    char range[96];
    gptq_option_range_text(opt, range, sizeof range);
    return gptq_fail(GPTQ_ERR_ARG, "%s %s: use %s", opt->name, text, range);
}

gptq_status gptq_option_check(const gptq_option *opt, double v)
{
    char text[48];
    if (opt->type == GPTQ_OPTION_FLOAT && isfinite(v) && fabs(v) <= FLT_MAX)
        v = (float)v; /* what the field will hold: the daemon reads a float off the wire */
    int ok;
    if (opt->has_extra && v == opt->extra)
        ok = 1;
    else if (opt->type == GPTQ_OPTION_U64)
        ok = v >= 0 && v < 0x1p64; /* whole or not: callers parse seeds as integers */
    else if (opt->type == GPTQ_OPTION_INT && opt->choices)
        ok = v >= 0 && v < 32 && v == floor(v) && (opt->choices & (1u << (int)v));
    else
        /* written so that NaN fails every comparison */
        ok = (opt->min_open ? v > opt->min : v >= opt->min) &&
             (opt->max_open ? v < opt->max : v <= opt->max) &&
             (opt->type != GPTQ_OPTION_INT || v == floor(v));
    if (ok)
        return GPTQ_OK;
    value_text(opt, v, text, sizeof text);
    return gptq_option_refuse(opt, text);
}

gptq_status gptq_option_set(const gptq_option *opt, void *opts, double v)
{
    if (opt->type == GPTQ_OPTION_U64)
        return gptq_fail(GPTQ_ERR_INTERNAL, "option %s: a seed is stored, not set through a "
                         "double", opt->name);
    gptq_status st = gptq_option_check(opt, v);
    if (st)
        return st;
    char *field = (char *)opts + opt->offset;
    if (opt->type == GPTQ_OPTION_INT)
        *(int *)field = (int)v; /* in range, so it fits */
    else
        *(float *)field = (float)v;
    return GPTQ_OK;
}

void gptq_options_default(const gptq_option *table, size_t n, void *opts)
{
    for (size_t i = 0; i < n; i++) {
        char *field = (char *)opts + table[i].offset;
        switch (table[i].type) {
        case GPTQ_OPTION_INT: *(int *)field = (int)table[i].def; break;
        case GPTQ_OPTION_FLOAT: *(float *)field = (float)table[i].def; break;
        case GPTQ_OPTION_U64: *(uint64_t *)field = (uint64_t)table[i].def; break;
        }
    }
}

gptq_status gptq_options_check(const gptq_option *table, size_t n, const void *opts)
{
    for (size_t i = 0; i < n; i++) {
        const char *field = (const char *)opts + table[i].offset;
        double v;
        switch (table[i].type) {
        case GPTQ_OPTION_INT: v = *(const int *)field; break;
        case GPTQ_OPTION_FLOAT: v = *(const float *)field; break;
        default: continue; /* every seed is legal */
        }
        gptq_status st = gptq_option_check(&table[i], v);
        if (st)
            return st;
    }
    return GPTQ_OK;
}

void gptq_option_default_text(const gptq_option *opt, char *buf, size_t cap)
{
    value_text(opt, opt->def, buf, cap);
}
