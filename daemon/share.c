/* daemon/share.c: POSIX shared-memory arenas holding resident weights. */
#include "daemon/share.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <grp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/wire_check.h"
#include "common/dtype.h"
#include "daemon/log.h"

enum { ARENA_ALIGN = 64 };

struct gptqd_arena {
    char name[128];
    int fd;
    unsigned char *base;
    size_t map_bytes;  /* our mapping */
    size_t bytes;      /* the object's size (shrunk to the used pages once filled) */
    size_t used;
};

static atomic_uint arena_counter;

gptq_status gptqd_arena_create(const char *name, size_t bytes, const char *group,
                               gptqd_arena **out)
{
    gptq_status st = GPTQ_OK;
    long page = sysconf(_SC_PAGESIZE);
    size_t size = (bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
    gptqd_arena *a = calloc(1, sizeof *a);
    MEM_TRY(a, "arena for %s", name);
    a->fd = -1;
    a->base = MAP_FAILED;
    snprintf(a->name, sizeof a->name, "/gptqd-%d-%s-%u", (int)getpid(), name,
             atomic_fetch_add(&arena_counter, 1));
    /* O_EXCL: a stale object of a previous daemon with our pid is not reused. */
    SYS_TRY(a->fd = shm_open(a->name, O_RDWR | O_CREAT | O_EXCL, 0640), GPTQ_ERR_IO,
            "shm_open %s", a->name);
    SYS_TRY(fchmod(a->fd, 0640), GPTQ_ERR_IO, "fchmod %s", a->name);
    if (group) {
        struct group *gr = getgrnam(group);
        if (!gr || fchown(a->fd, (uid_t)-1, gr->gr_gid) < 0)
            gptqd_log(LOG_WARNING, "shm %s: cannot give it to group %s; only this user can "
                      "map it", a->name, group);
    }
    SYS_TRY(ftruncate(a->fd, (off_t)size), GPTQ_ERR_NOMEM, "shm %s: %zu bytes", a->name, size);
    a->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, 0);
    if (a->base == MAP_FAILED) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "mmap shm %s (%zu bytes): %s", a->name, size,
                       strerror(errno));
        goto fail;
    }
    a->bytes = a->map_bytes = size;
    *out = a;
    return GPTQ_OK;
fail:
    gptqd_arena_destroy(a);
    return st;
}

void gptqd_arena_destroy(gptqd_arena *a)
{
    if (!a)
        return;
    if (a->base != MAP_FAILED)
        munmap(a->base, a->map_bytes);
    if (a->fd >= 0) {
        close(a->fd);
        shm_unlink(a->name);
    }
    free(a);
}

void *gptqd_arena_alloc(gptqd_arena *a, size_t bytes)
{
    size_t start = (a->used + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (start > a->bytes || bytes > a->bytes - start)
        return NULL;
    a->used = start + bytes;
    return a->base + start;
}

size_t gptqd_arena_used(const gptqd_arena *a) { return a->used; }
const char *gptqd_arena_name(const gptqd_arena *a) { return a->name; }

static void *arena_alloc_cb(void *ctx, size_t bytes) { return gptqd_arena_alloc(ctx, bytes); }

gptq_status gptqd_share_model(gptq_model **model, const char *name, const char *group,
                              gptqd_arena **out)
{
    *out = NULL;
    /* Arena size: every tensor rounded up to the alignment, plus slack for
     * buffers copy_with allocates beyond the tensor table (none expected). */
    size_t need = 0, n = gptq_model_tensor_count(*model);
    for (size_t i = 0; i < n; i++) {
        const gptq_model_tensor *t = gptq_model_tensor_at(*model, i);
        need += (t->bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    }
    need += (size_t)1 << 20;
    gptqd_arena *arena = NULL;
    gptq_status st = gptqd_arena_create(name, need, group, &arena);
    if (st)
        return st;
    gptq_model *copy = NULL;
    st = gptq_model_copy_with(*model, arena_alloc_cb, arena, &copy);
    if (st) {
        gptqd_arena_destroy(arena);
        return gptq_fail_context(st, "model %s: weights into shared memory %s (%zu bytes)", name,
                                 gptqd_arena_name(arena), need);
    }
    gptq_model_free(*model);
    *model = copy;
    *out = arena;
    /* Give back the slack: clients map exactly the pages that hold weights
     * (our own mapping stays as it was; nothing reads past `used`). */
    long page = sysconf(_SC_PAGESIZE);
    size_t size = (arena->used + (size_t)page - 1) / (size_t)page * (size_t)page;
    if (size < arena->bytes && ftruncate(arena->fd, (off_t)size) == 0)
        arena->bytes = size;
    gptqd_log(LOG_INFO, "model %s: %zu tensors, %.1f MiB in shared memory %s", name, n,
              (double)arena->used / (1024.0 * 1024.0), arena->name);
    return GPTQ_OK;
}

gptq_status gptqd_export_table(const gptq_model *model, const void *base, size_t used,
                               const char *arena_label, gptqd_export *out)
{
    size_t n = gptq_model_tensor_count(model);
    out->tensors = calloc(n ? n : 1, sizeof *out->tensors);
    out->n_tensors = 0;
    if (!out->tensors)
        return gptq_fail(GPTQ_ERR_NOMEM, "map: out of memory");
    /* Addresses compared as integers: for a device arena they are device
     * pointers, never dereferenced here. */
    uintptr_t lo = (uintptr_t)base, hi = lo + used;
    for (size_t i = 0; i < n; i++) {
        const gptq_model_tensor *t = gptq_model_tensor_at(model, i);
        uintptr_t data = (uintptr_t)t->data;
        if (data < lo || data > hi || t->bytes > hi - data || t->ndim < 0 || t->ndim > 4) {
            free(out->tensors);
            out->tensors = NULL;
            return gptq_fail(GPTQ_ERR_INTERNAL, "map: tensor '%s' does not lie in the arena %s",
                             t->name, arena_label);
        }
        gptqd_export_tensor *e = &out->tensors[i];
        e->name = t->name;
        e->dtype = gptq_dtype_name(t->dtype);
        e->ndim = t->ndim;
        memcpy(e->shape, t->shape, sizeof e->shape);
        e->offset = (uint64_t)(data - lo);
        e->bytes = t->bytes;
    }
    out->n_tensors = n;
    return GPTQ_OK;
}

gptq_status gptqd_arena_export(const gptqd_arena *arena, const gptq_model *model,
                               gptqd_export *out)
{
    memset(out, 0, sizeof *out);
    gptq_status st = gptqd_export_table(model, arena->base, arena->used, arena->name, out);
    if (st)
        return st;
    out->kind = "shm";
    out->shm_name = arena->name;
    out->arena_bytes = arena->bytes;
    return GPTQ_OK;
}

/* shm_unlink the arenas in /dev/shm of daemons `keep` says no to. */
static void unlink_arenas(int (*drop)(int pid), const char *why)
{
    DIR *dir = opendir("/dev/shm");
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        int pid = 0, n = 0;
        if (sscanf(e->d_name, "gptqd-%d-%n", &pid, &n) != 1 || n == 0 || pid <= 0)
            continue;
        char path[300];
        struct stat sb;
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        if (stat(path, &sb) < 0 || sb.st_uid != geteuid() || !drop(pid))
            continue;
        char name[300];
        snprintf(name, sizeof name, "/%s", e->d_name);
        if (shm_unlink(name) == 0 && why)
            gptqd_log(LOG_NOTICE, "removed %s, %s %d", name, why, pid);
    }
    closedir(dir);
}

/* Another daemon's, and it no longer runs (or not ours to judge). */
static int stale(int pid)
{
    return pid != (int)getpid() && kill(pid, 0) != 0 && errno == ESRCH;
}

static int own(int pid)
{
    return pid == (int)getpid();
}

void gptqd_share_reap_stale(void)
{
    unlink_arenas(stale, "left by gptqd which no longer runs:");
}

void gptqd_share_unlink_own(void)
{
    unlink_arenas(own, NULL);
}
