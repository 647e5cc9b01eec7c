/* common/file.c: see file.h. */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

gptq_status gptq_errno_status(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR: return GPTQ_ERR_NOTFOUND;
    case EACCES:
    case EPERM: return GPTQ_ERR_PERMISSION;
    case ENOMEM: return GPTQ_ERR_NOMEM;
    default: return GPTQ_ERR_IO;
    }
}

/* fd must be a regular file (want_dir 0), a folder (1) or either (-1);
 * clears O_NONBLOCK. */
static gptq_status check_type(int f, const char *path, int want_dir)
{
    struct stat sb;
    if (fstat(f, &sb) < 0)
        return gptq_fail(GPTQ_ERR_IO, "%s: %s", path, strerror(errno));
    if (want_dir > 0 && !S_ISDIR(sb.st_mode))
        return gptq_fail(GPTQ_ERR_IO, "%s: not a folder", path);
    if (!S_ISREG(sb.st_mode) && !(want_dir && S_ISDIR(sb.st_mode))) {
        return gptq_fail(GPTQ_ERR_IO, "%s: not a regular file (%s)", path,
                         S_ISDIR(sb.st_mode)    ? "a folder"
                         : S_ISFIFO(sb.st_mode) ? "a FIFO"
                         : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device"
                         : S_ISSOCK(sb.st_mode) ? "a socket"
                                                : "not a file");
    }
    int fl = fcntl(f, F_GETFL);
    if (fl >= 0)
        fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
    return GPTQ_OK;
}

gptq_status gptq_file_open_at(int dirfd, const char *path, int *fd)
{
    *fd = -1;
    int f = openat(dirfd, path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (f < 0) {
        int err = errno;
        return gptq_fail(gptq_errno_status(err), "%s: %s", path, strerror(err));
    }
    gptq_status st = check_type(f, path, 0);
    if (st) {
        close(f);
        return st;
    }
    *fd = f;
    return GPTQ_OK;
}

/* Without openat2: one component at a time, never following a link. */
static int open_walk(int rootfd, const char *rel, int flags)
{
    char comp[4096];
    int cur = rootfd, owned = 0;
    const char *p = rel;
    for (;;) {
        while (*p == '/')
            p++;
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *rest = end ? end : p + n;
        while (*rest == '/')
            rest++;
        int last = *rest == '\0';
        if (n >= sizeof comp || (n == 2 && !memcmp(p, "..", 2))) {
            errno = n >= sizeof comp ? ENAMETOOLONG : EXDEV;
            break;
        }
        memcpy(comp, n ? p : ".", n ? n : 1);
        comp[n ? n : 1] = '\0';
        int next = openat(cur, comp, last ? flags | O_NOFOLLOW
                                          : O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int err = errno;
        if (owned)
            close(cur);
        if (next < 0) {
            errno = err;
            return -1;
        }
        if (last)
            return next;
        cur = next;
        owned = 1;
        p = rest;
    }
    if (owned)
        close(cur);
    return -1;
}

gptq_status gptq_open_beneath(int rootfd, const char *rel, int want_dir, int *fd)
{
    *fd = -1;
    if (!rel[0] || rel[0] == '/')
        return gptq_fail(GPTQ_ERR_ARG, "'%s': expected a path relative to a model directory",
                         rel);
    int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (want_dir > 0 ? O_DIRECTORY : 0);
    struct open_how how = {.flags = (uint64_t)flags,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int f = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
    if (f < 0 && (errno == ENOSYS || errno == EPERM))
        f = open_walk(rootfd, rel, flags);
    if (f < 0) {
        int err = errno;
        if (err == EXDEV)
            return gptq_fail(GPTQ_ERR_PERMISSION, "%s: leads outside the model directory "
                             "(a symbolic link or '..' that escapes it)", rel);
        if (err == ELOOP)
            return gptq_fail(GPTQ_ERR_PERMISSION, "%s: a symbolic link this system cannot "
                             "follow safely (no openat2)", rel);
        return gptq_fail(gptq_errno_status(err), "%s: %s", rel, strerror(err));
    }
    gptq_status st = check_type(f, rel, want_dir);
    if (st) {
        close(f);
        return st;
    }
    *fd = f;
    return GPTQ_OK;
}

gptq_status gptq_file_open_in(int rootfd, const char *dir, const char *name, int *fd)
{
    char path[8192];
    if ((size_t)snprintf(path, sizeof path, "%s%s%s", dir, dir[0] ? "/" : "", name) >= sizeof path)
        return gptq_fail(GPTQ_ERR_ARG, "%s/%s: path too long", dir, name);
    return rootfd == AT_FDCWD ? gptq_file_open_at(AT_FDCWD, path, fd)
                              : gptq_open_beneath(rootfd, path, 0, fd);
}

gptq_status gptq_file_open(const char *path, int *fd)
{
    return gptq_file_open_at(AT_FDCWD, path, fd);
}

gptq_status gptq_file_read_fd(int fd, const char *name, size_t max_bytes, char **data,
                              size_t *len)
{
    *data = NULL;
    *len = 0;
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return gptq_fail(GPTQ_ERR_IO, "%s: %s", name, strerror(errno));
    if (sb.st_size < 0 || (uint64_t)sb.st_size > max_bytes)
        return gptq_fail(GPTQ_ERR_LIMIT, "%s: %lld bytes, more than the %zu this file may have",
                         name, (long long)sb.st_size, max_bytes);
    size_t want = (size_t)sb.st_size, got = 0;
    char *buf = malloc(want + 1);
    if (!buf)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, want + 1);
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : 0;
            free(buf);
            return gptq_fail(GPTQ_ERR_IO, "%s: %s after %zu of %zu bytes", name,
                             err ? strerror(err) : "the file ended (truncated while read?)", got,
                             want);
        }
        got += (size_t)n;
    }
    buf[want] = '\0';
    *data = buf;
    *len = want;
    return GPTQ_OK;
}

gptq_status gptq_file_read(const char *path, size_t max_bytes, char **data, size_t *len)
{
    int fd;
    gptq_status st = gptq_file_open(path, &fd);
    if (st)
        return st;
    st = gptq_file_read_fd(fd, path, max_bytes, data, len);
    close(fd);
    return st;
}

DIR *gptq_dir_stream(int fd)
{
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0)
        close(fd);
    return d;
}
