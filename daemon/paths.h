/* daemon/paths.h: which files a client may name. Every path in a request
 * (load, calibration and evaluation texts, save directories) must resolve,
 * symlinks followed, to a place inside one of the configured model
 * directories; anything else is refused before any file is opened. */
#ifndef GPTQD_PATHS_H
#define GPTQD_PATHS_H

#include <stddef.h>

#include "daemon/conf.h"
#include "gptq/error.h"

/* An existing file or folder `path` to read. On success `resolved`
 * (PATH_MAX bytes) holds its real path. `field` names the request field in
 * messages. Errors: GPTQ_ERR_NOTFOUND, GPTQ_ERR_PERMISSION. */
gptq_status gptqd_path_for_reading(const gptqd_conf *conf, const char *field, const char *path,
                                   char *resolved);

/* A folder `path` to create or replace: its parent must exist inside a
 * model directory. `resolved` gets parent's real path + "/" + last name. */
gptq_status gptqd_path_for_writing(const gptqd_conf *conf, const char *field, const char *path,
                                   char *resolved);

#endif
