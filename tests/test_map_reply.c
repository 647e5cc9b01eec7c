/* tests/test_map_reply.c: gptq_map against hostile "cuda-ipc" Map replies
 * from a fake daemon (a REP socket in a thread of this process). The
 * client must refuse each with GPTQ_ERR_FORMAT and a message naming the
 * problem *before* any device call: on a machine without a GPU a device
 * call would fail with GPTQ_ERR_DEVICE instead, and on one with a GPU a
 * handle of garbage would reach cudaIpcOpenMemHandle. A well-formed reply
 * gets past the checks to the device stage (GPTQ_ERR_DEVICE: here no GPU,
 * there a handle that names nothing), never to a crash. Every refused
 * mapping gives its lease back (one Unmap each). Runs everywhere. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "gptq/client.h"
#include "gptqd.pb-c.h"
#include "testutil.h"

/* One scripted reply per model name. */
typedef struct hostile_case {
    const char *name;
    const char *want;          /* substring of the client's message */
    gptq_status status;        /* expected status */
    uint64_t arena_bytes;
    uint64_t offset, bytes;    /* of tensor "w" (F32 [4, 2]: 32 bytes) */
    size_t handle_len;
    int32_t device;
} hostile_case;

static const hostile_case cases[] = {
    {"past-end", "outside the 4096-byte arena", GPTQ_ERR_FORMAT, 4096, 4096, 32, 64, 0},
    {"wraps", "outside the 4096-byte arena", GPTQ_ERR_FORMAT, 4096, UINT64_MAX - 15, 32, 64, 0},
    {"straddles", "outside the 4096-byte arena", GPTQ_ERR_FORMAT, 4096, 4080, 32, 64, 0},
    {"size-lies", "its F32 shape needs 32", GPTQ_ERR_FORMAT, 4096, 0, 64, 64, 0},
    {"misaligned", "not a multiple of its 4-byte elements", GPTQ_ERR_FORMAT, 4096, 6, 32, 64, 0},
    {"short-handle", "CUDA IPC handle of 10 bytes", GPTQ_ERR_FORMAT, 4096, 0, 32, 10, 0},
    {"bad-device", "CUDA device -3", GPTQ_ERR_FORMAT, 4096, 0, 32, 64, -3},
    {"no-arena", "arena of 0 bytes", GPTQ_ERR_FORMAT, 0, 0, 32, 64, 0},
    /* Well-formed: passes the checks, then fails at the device. */
    {"well-formed", "cuda:0", GPTQ_ERR_DEVICE, 4096, 256, 32, 64, 0},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

static struct {
    int sock;
    pthread_t thread;
    int unmaps;
    pthread_mutex_t lock;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *fake_main(void *arg)
{
    (void)arg;
    for (;;) {
        void *msg = NULL;
        int len = nn_recv(fake.sock, &msg, NN_MSG, 0);
        if (len < 0)
            return NULL; /* socket closed */
        Gptqd__Request *q = gptqd__request__unpack(NULL, (size_t)len, msg);
        nn_freemsg(msg);
        Gptqd__Response r = GPTQD__RESPONSE__INIT;
        r.version = GPTQD__VERSION__PROTOCOL_VERSION;
        Gptqd__MapReply mr = GPTQD__MAP_REPLY__INIT;
        Gptqd__Done done = GPTQD__DONE__INIT;
        Gptqd__TensorEntry te = GPTQD__TENSOR_ENTRY__INIT;
        Gptqd__TensorEntry *tep[1] = {&te};
        int64_t shape[2] = {4, 2};
        unsigned char handle[64];
        memset(handle, 0xA5, sizeof handle);
        if (q && q->body_case == GPTQD__REQUEST__BODY_MAP) {
            const hostile_case *hc = NULL;
            for (int i = 0; i < N_CASES; i++)
                if (strcmp(cases[i].name, q->map->name) == 0)
                    hc = &cases[i];
            if (!hc) {
                r.status = GPTQ_ERR_NOTFOUND;
                r.message = "no such case";
            } else {
                r.body_case = GPTQD__RESPONSE__BODY_MAP;
                r.map = &mr;
                mr.lease = 9;
                mr.kind = "cuda-ipc";
                mr.cuda_ipc_handle.data = handle;
                mr.cuda_ipc_handle.len = hc->handle_len;
                mr.cuda_device = hc->device;
                mr.arena_bytes = hc->arena_bytes;
                mr.n_tensors = 1;
                mr.tensors = tep;
                te.name = "w";
                te.dtype = "F32";
                te.n_shape = 2;
                te.shape = shape;
                te.offset = hc->offset;
                te.bytes = hc->bytes;
                mr.config_json = "{\"model_type\": \"llama\"}";
                mr.tokenizer_path = "/nonexistent/tokenizer.json";
            }
        } else if (q && q->body_case == GPTQD__REQUEST__BODY_UNMAP) {
            pthread_mutex_lock(&fake.lock);
            fake.unmaps++;
            pthread_mutex_unlock(&fake.lock);
            r.body_case = GPTQD__RESPONSE__BODY_DONE;
            r.done = &done;
        } else {
            r.status = GPTQ_ERR_PROTOCOL;
            r.message = "the fake answers Map and Unmap only";
        }
        size_t bytes = gptqd__response__get_packed_size(&r);
        void *out = nn_allocmsg(bytes ? bytes : 1, 0);
        gptqd__response__pack(&r, out);
        if (nn_send(fake.sock, &out, NN_MSG, 0) < 0)
            nn_freemsg(out);
        if (q)
            gptqd__request__free_unpacked(q, NULL);
    }
}

static int unmaps(void)
{
    pthread_mutex_lock(&fake.lock);
    int n = fake.unmaps;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

int main(void)
{
    char dir[] = "/tmp/gptq-map-reply-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char sock[128], url[160];
    snprintf(sock, sizeof sock, "%s/fake.sock", dir);
    snprintf(url, sizeof url, "ipc://%s", sock);
    fake.sock = nn_socket(AF_SP, NN_REP);
    if (fake.sock < 0 || nn_bind(fake.sock, url) < 0) {
        fprintf(stderr, "FAIL: fake daemon on %s: %s\n", url, nn_strerror(nn_errno()));
        rmdir(dir);
        return 1;
    }
    pthread_create(&fake.thread, NULL, fake_main, NULL);

    gptq_client *c = NULL;
    CHECK_OK(gptq_client_connect(sock, &c));
    for (int i = 0; c && i < N_CASES; i++) {
        const hostile_case *hc = &cases[i];
        gptq_mapping *m = (gptq_mapping *)&m; /* must come back NULL */
        int before = unmaps();
        gptq_status st = gptq_map(c, hc->name, &m);
        const char *msg = gptq_client_errmsg(c);
        CHECK(st == hc->status && m == NULL, "case %s: expected %s, got %s: '%s'", hc->name,
              gptq_status_name(hc->status), gptq_status_name(st), msg);
        CHECK(strstr(msg, hc->want) != NULL, "case %s: message '%s' lacks '%s'", hc->name, msg,
              hc->want);
        if (hc->status == GPTQ_ERR_FORMAT)
            CHECK(strstr(msg, hc->name) != NULL, "case %s: message '%s' does not name the model",
                  hc->name, msg);
        CHECK(unmaps() == before + 1, "case %s: %d Unmap sent for the refused lease, expected 1",
              hc->name, unmaps() - before);
        printf("%-13s %s: %s\n", hc->name, gptq_status_name(st), msg);
    }
    gptq_client_close(c);
    nn_close(fake.sock); /* ends the fake's nn_recv */
    pthread_join(fake.thread, NULL);
    unlink(sock);
    rmdir(dir);
    return test_result();
}
