/* quant/options.h: the numeric options of gptq_quant_config as a table
 * (quant/config.c; docs/ARCHITECTURE.md "Options"), for the callers that
 * set them by name (model/options.c) and check them without a layer. */
#ifndef GPTQ_QUANT_OPTIONS_H
#define GPTQ_QUANT_OPTIONS_H

#include "common/options.h"
#include "gptq/quant.h"

/* bits, group-size, damp, block-size: fields of gptq_quant_config. */
extern const gptq_option gptq_quant_options[];
extern const size_t gptq_quant_n_options;

/* cfg's options on their own: each against the table, and static groups
 * against a per-channel group size. gptq_quant_config_check adds the
 * layer's checks. */
gptq_status gptq_quant_options_check(const gptq_quant_config *cfg);

#endif
