/* tests/test_daemon_map.c: shared weights through gptqd (docs/ARCHITECTURE.md "The main path" step
 * 5): three processes Map one model and read its arena; /proc/PID/smaps
 * shows the mapping shared, not private; a mapped tensor equals the
 * fixture's weights; leases are counted, block a plain unload, and a
 * killed client's lease is reclaimed within seconds; a forced unload
 * unlinks the arena while clients keep their mappings.
 * Skips (77) without $GPTQ_FIXTURES or when this build's Map is unsupported.
 * Usage: test_daemon_map PATH/TO/gptqd */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nanomsg/nn.h>

#include "common/dtype.h"
#include "gptq/error.h"
#include "model/safetensors.h"
#include "test_daemon_harness.h"
#include "testutil.h"

static Gptqd__Response *map_model(int s, const char *name)
{
    Gptqd__Request req;
    Gptqd__MapRequest body = GPTQD__MAP_REQUEST__INIT;
    td_request_init(&req);
    /* claims the parent's pid: a lease is the verified caller's all the same
     * (the killed-client check below fails if the daemon believed this) */
    req.client_pid = (uint32_t)getppid();
    body.name = (char *)name;
    req.body_case = GPTQD__REQUEST__BODY_MAP;
    req.map = &body;
    return td_call(s, &req);
}

static int leases_of(int s, const char *name)
{
    Gptqd__Request req;
    Gptqd__ListRequest body = GPTQD__LIST_REQUEST__INIT;
    td_request_init(&req);
    req.body_case = GPTQD__REQUEST__BODY_LIST;
    req.list = &body;
    Gptqd__Response *r = td_call(s, &req);
    int n = -1;
    for (size_t i = 0; r && r->list && i < r->list->n_models; i++)
        if (strcmp(r->list->models[i]->name, name) == 0)
            n = (int)r->list->models[i]->leases;
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return n;
}

static int unload(int s, const char *name, int force, char *message, size_t len)
{
    Gptqd__Request req;
    Gptqd__UnloadRequest body = GPTQD__UNLOAD_REQUEST__INIT;
    td_request_init(&req);
    body.name = (char *)name;
    body.force = force;
    req.body_case = GPTQD__REQUEST__BODY_UNLOAD;
    req.unload = &body;
    Gptqd__Response *r = td_call(s, &req);
    int status = r ? r->status : -1;
    snprintf(message, len, "%s", r ? r->message : "no reply");
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return status;
}

/* Shared and private bytes of this process's mapping of /dev/shm/<name>. */
static void smaps_of(const char *shm_name, long *shared_kb, long *private_kb, long *rss_kb)
{
    *shared_kb = *private_kb = *rss_kb = -1;
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's first line */
            in = strstr(line, shm_name) != NULL;
            continue;
        }
        long v;
        if (!in)
            continue;
        if (sscanf(line, "Rss: %ld kB", &v) == 1)
            *rss_kb = v;
        else if (sscanf(line, "Shared_Clean: %ld kB", &v) == 1)
            *shared_kb = v;
        else if (sscanf(line, "Shared_Dirty: %ld kB", &v) == 1)
            *shared_kb += v;
        else if (sscanf(line, "Private_Clean: %ld kB", &v) == 1)
            *private_kb = v;
        else if (sscanf(line, "Private_Dirty: %ld kB", &v) == 1)
            *private_kb += v;
    }
    if (f)
        fclose(f);
}

/* A mapping client: Map, map the arena read-only, check it, report on
 * `report` (one byte: 1 ok, 0 failed), then hold the lease until killed. */
static void client(const td_daemon *d, const char *fixture_weights, int report)
{
    int ok = 0;
    int s = td_connect(d, 10000);
    Gptqd__Response *r = map_model(s, "tiny");
    if (!r || r->status != 0 || r->body_case != GPTQD__RESPONSE__BODY_MAP) {
        fprintf(stderr, "client %d: map: %s\n", (int)getpid(), r ? r->message : "no reply");
        goto done;
    }
    const Gptqd__MapReply *m = r->map;
    int fd = shm_open(m->shm_name, O_RDONLY, 0);
    if (fd < 0) {
        fprintf(stderr, "client: shm_open %s: %s\n", m->shm_name, strerror(errno));
        goto done;
    }
    const unsigned char *base = mmap(NULL, m->arena_bytes, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED)
        goto done;
    volatile unsigned long sum = 0; /* touch every page */
    for (uint64_t off = 0; off < m->arena_bytes; off += 4096)
        sum += base[off];
    int table_ok = m->n_tensors > 0, embed_ok = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const Gptqd__TensorEntry *t = m->tensors[i];
        if (t->offset % 64 || t->offset + t->bytes > m->arena_bytes)
            table_ok = 0;
        if (strcmp(t->name, "model.embed_tokens.weight") == 0 && strcmp(t->dtype, "F16") == 0) {
            /* The fixture's F16 weights, resident as they are in the file. */
            gptq_safetensors *st = NULL;
            if (gptq_safetensors_open(fixture_weights, &st) == GPTQ_OK) {
                const gptq_st_tensor *ref = gptq_safetensors_find(st, t->name);
                const uint16_t *mapped = (const uint16_t *)(base + t->offset);
                embed_ok = ref && (uint64_t)ref->numel * 2 == t->bytes;
                for (int64_t k = 0; embed_ok && k < ref->numel; k += 97)
                    embed_ok = mapped[k] == ((const uint16_t *)ref->data)[k];
                gptq_safetensors_close(st);
            }
        }
    }
    long shared, private_kb, rss;
    smaps_of(m->shm_name, &shared, &private_kb, &rss);
    printf("client %d: %zu tensors, arena %llu bytes, smaps Rss %ld kB shared %ld kB private "
           "%ld kB\n", (int)getpid(), m->n_tensors, (unsigned long long)m->arena_bytes, rss,
           shared, private_kb);
    fflush(stdout);
    ok = table_ok && embed_ok && rss > 0 && private_kb == 0 && shared >= rss * 9 / 10;
    if (!ok)
        fprintf(stderr, "client %d: table %d, embed_tokens equal %d, smaps rss %ld shared %ld "
                "private %ld\n", (int)getpid(), table_ok, embed_ok, rss, shared, private_kb);
done:;
    unsigned char byte = (unsigned char)ok;
    if (write(report, &byte, 1) != 1)
        _exit(1);
    for (;;)
        pause(); /* hold the lease */
}

int main(int argc, char **argv)
{
    /* A mapping client runs as a fresh exec of this program: nanomsg's state
     * does not survive fork(). */
    if (argc == 5 && strcmp(argv[1], "--client") == 0) {
        td_daemon peer;
        memset(&peer, 0, sizeof peer);
        snprintf(peer.url, sizeof peer.url, "%s", argv[2]);
        client(&peer, argv[3], atoi(argv[4]));
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/gptqd\n", argv[0]);
        return 2;
    }
    const char *fixtures = getenv("GPTQ_FIXTURES");
    char fixdir[PATH_MAX], model[PATH_MAX + 32], weights[PATH_MAX + 64];
    if (!fixtures || !realpath(fixtures, fixdir)) {
        printf("GPTQ_FIXTURES not set or absent: skipped\n");
        return 77;
    }
    snprintf(model, sizeof model, "%s/tiny-llama", fixdir);
    snprintf(weights, sizeof weights, "%s/model.safetensors", model);
    td_daemon d;
    const char *args[] = {"--model-dir", fixdir, "--preload", NULL, NULL};
    char preload[PATH_MAX + 64];
    snprintf(preload, sizeof preload, "tiny=%s", model);
    args[3] = preload;
    if (td_start(&d, argv[1], args) < 0)
        return 1;
    int s = td_connect(&d, 10000);
    Gptqd__Response *r = map_model(s, "tiny");
    if (r && r->status == GPTQ_ERR_UNSUPPORTED) {
        printf("Map is not available in this build (%s): skipped\n", r->message);
        gptqd__response__free_unpacked(r, NULL);
        nn_close(s);
        td_stop(&d);
        return 77;
    }
    CHECK(r && r->status == 0 && r->body_case == GPTQD__RESPONSE__BODY_MAP, "map: %s",
          r ? r->message : "no reply");
    uint64_t my_lease = r && r->map ? r->map->lease : 0;
    char shm_name[256] = "";
    if (r && r->map)
        snprintf(shm_name, sizeof shm_name, "%s", r->map->shm_name);
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    /* Our own lease comes and goes with Unmap. */
    CHECK(leases_of(s, "tiny") == 1, "leases %d after one Map", leases_of(s, "tiny"));
    Gptqd__Request req;
    Gptqd__UnmapRequest un = GPTQD__UNMAP_REQUEST__INIT;
    td_request_init(&req);
    un.lease = my_lease;
    req.body_case = GPTQD__REQUEST__BODY_UNMAP;
    req.unmap = &un;
    r = td_call(s, &req);
    CHECK(r && r->status == 0, "unmap: %s", r ? r->message : "no reply");
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    r = td_call(s, &req);
    CHECK(r && r->status == GPTQ_ERR_NOTFOUND, "second unmap: %s", r ? r->message : "no reply");
    if (r)
        gptqd__response__free_unpacked(r, NULL);

    /* Three mapping processes. */
    pid_t kids[3];
    int pipes[3][2];
    for (int i = 0; i < 3; i++) {
        if (pipe(pipes[i]) < 0)
            return 1;
        kids[i] = fork();
        if (kids[i] == 0) {
            char fd[16];
            snprintf(fd, sizeof fd, "%d", pipes[i][1]);
            execl("/proc/self/exe", argv[0], "--client", d.url, weights, fd, (char *)NULL);
            _exit(127);
        }
        close(pipes[i][1]);
    }
    for (int i = 0; i < 3; i++) {
        unsigned char ok = 0;
        CHECK(read(pipes[i][0], &ok, 1) == 1 && ok == 1, "mapping client %d failed", i);
    }
    CHECK(leases_of(s, "tiny") == 3, "leases %d with 3 clients", leases_of(s, "tiny"));
    char message[512];
    int st = unload(s, "tiny", 0, message, sizeof message);
    CHECK(st == GPTQ_ERR_BUSY && strstr(message, "force"), "unload of a leased model: %d %s", st,
          message);

    /* A killed client's lease is reclaimed within seconds. */
    kill(kids[0], SIGKILL);
    waitpid(kids[0], NULL, 0);
    double t0 = td_now();
    while (leases_of(s, "tiny") != 2 && td_now() - t0 < 5)
        usleep(50000);
    printf("lease of a killed client reclaimed after %.2f s\n", td_now() - t0);
    CHECK(leases_of(s, "tiny") == 2, "leases %d after killing one client", leases_of(s, "tiny"));

    /* Forced unload: the arena's name goes, the clients live on. */
    st = unload(s, "tiny", 1, message, sizeof message);
    CHECK(st == 0, "forced unload: %s", message);
    int fd = shm_open(shm_name, O_RDONLY, 0);
    CHECK(fd < 0, "shm %s still exists after unload", shm_name);
    if (fd >= 0)
        close(fd);
    for (int i = 1; i < 3; i++) {
        CHECK(kill(kids[i], 0) == 0, "client %d died after the forced unload", i);
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
    nn_close(s);
    int code = td_stop(&d);
    CHECK(code == 0, "gptqd exit status %d", code);
    return test_result();
}
