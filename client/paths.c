/* client/paths.c: paths sent to the daemon are made absolute here, because
 * gptqd resolves them in its own working directory, not the caller's. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/ctl.h"

char *ctl_absolute_path(const char *verb, const char *path)
{
    char *resolved = realpath(path, NULL);
    if (resolved)
        return resolved;
    if (errno != ENOENT) {
        /* Exists but unreadable to us, or a loop: let the daemon judge a
         * plain absolute form (it may have other permissions). */
        if (errno != EACCES && errno != ENOTDIR) {
            fprintf(stderr, "gptqctl %s: %s: %s\n", verb, path, strerror(errno));
            return NULL;
        }
    }
    if (path[0] == '/')
        return strdup(path);
    /* Not there yet (a save directory): join with the working directory. */
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "gptqctl %s: getcwd: %s\n", verb, strerror(errno));
        return NULL;
    }
    char *out = NULL;
    if (asprintf(&out, "%s/%s", cwd, path) < 0) {
        fprintf(stderr, "gptqctl %s: out of memory\n", verb);
        return NULL;
    }
    return out;
}
