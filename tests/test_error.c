/* tests/test_error.c: the status codes are a contract (gptq/error.h): their
 * numbers travel on the wire and in gptqctl --json, their names are what
 * users read. This table is written out by hand, not derived from the
 * header, so renumbering, reusing or renaming a status fails here. Also the
 * message functions: per thread, context prepended, truncation safe. */
#include <pthread.h>
#include <string.h>

#include "gptq/error.h"
#include "testutil.h"

static const struct {
    gptq_status status;
    int number;
    const char *name;
} PINNED[] = {
    {GPTQ_OK, 0, "ok"},
    {GPTQ_ERR_ARG, 1, "bad argument"},
    {GPTQ_ERR_IO, 2, "i/o error"},
    {GPTQ_ERR_FORMAT, 3, "bad format"},
    {GPTQ_ERR_NOMEM, 4, "out of memory"},
    {GPTQ_ERR_NUMERIC, 5, "numerical failure"},
    {GPTQ_ERR_NOTFOUND, 6, "not found"},
    {GPTQ_ERR_EXISTS, 7, "already exists"},
    {GPTQ_ERR_BUSY, 8, "busy"},
    {GPTQ_ERR_UNSUPPORTED, 9, "unsupported"},
    {GPTQ_ERR_CANCELED, 10, "canceled"},
    {GPTQ_ERR_PROTOCOL, 11, "protocol error"},
    {GPTQ_ERR_PERMISSION, 12, "permission denied"},
    {GPTQ_ERR_LIMIT, 13, "limit exceeded"},
    {GPTQ_ERR_DEVICE, 14, "device error"},
    {GPTQ_ERR_UNREACHABLE, 15, "daemon unreachable"},
    {GPTQ_ERR_INTERNAL, 16, "internal error"},
};

static void *other_thread(void *arg)
{
    (void)arg;
    /* a fresh thread has no message, and setting one leaves main's alone */
    int clean = gptq_errmsg()[0] == 0;
    gptq_fail(GPTQ_ERR_IO, "thread message");
    return (void *)(intptr_t)clean;
}

int main(void)
{
    const int n = (int)(sizeof PINNED / sizeof PINNED[0]);
    CHECK(GPTQ_STATUS_COUNT == n, "%d statuses, %d pinned: pin the new one here", (int)GPTQ_STATUS_COUNT,
          n);
    for (int i = 0; i < n; i++) {
        CHECK((int)PINNED[i].status == PINNED[i].number, "%s is %d, pinned %d", PINNED[i].name,
              (int)PINNED[i].status, PINNED[i].number);
        CHECK(strcmp(gptq_status_name(PINNED[i].status), PINNED[i].name) == 0,
              "status %d is named '%s', pinned '%s'", PINNED[i].number,
              gptq_status_name(PINNED[i].status), PINNED[i].name);
    }
    CHECK(strcmp(gptq_status_name((gptq_status)-1), "unknown status") == 0 &&
              strcmp(gptq_status_name(GPTQ_STATUS_COUNT), "unknown status") == 0 &&
              strcmp(gptq_status_name((gptq_status)1000), "unknown status") == 0,
          "out-of-range statuses must be named 'unknown status'");

    /* messages */
    gptq_clear_error();
    CHECK(gptq_errmsg()[0] == 0, "cleared message is '%s'", gptq_errmsg());
    CHECK(gptq_fail(GPTQ_ERR_ARG, "bits %d: use 2, 3, 4 or 8", 5) == GPTQ_ERR_ARG,
          "gptq_fail returns its status");
    CHECK(strcmp(gptq_errmsg(), "bits 5: use 2, 3, 4 or 8") == 0, "message '%s'", gptq_errmsg());
    CHECK(gptq_fail_context(GPTQ_ERR_FORMAT, "layer %d", 3) == GPTQ_ERR_FORMAT,
          "gptq_fail_context returns its status");
    CHECK(strcmp(gptq_errmsg(), "layer 3: bits 5: use 2, 3, 4 or 8") == 0, "context message '%s'",
          gptq_errmsg());
    pthread_t t;
    void *clean = NULL;
    CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0 && pthread_join(t, &clean) == 0,
          "thread");
    CHECK(clean == (void *)1, "a new thread saw main's message");
    CHECK(strcmp(gptq_errmsg(), "layer 3: bits 5: use 2, 3, 4 or 8") == 0,
          "another thread's failure changed main's message to '%s'", gptq_errmsg());
    /* a message longer than the buffer, and context on top of it: truncated, terminated */
    char big[4096];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    gptq_fail(GPTQ_ERR_LIMIT, "%s", big);
    size_t len = strlen(gptq_errmsg());
    CHECK(len > 0 && len < sizeof big, "long message kept %zu bytes", len);
    gptq_fail_context(GPTQ_ERR_LIMIT, "%s", big);
    CHECK(strlen(gptq_errmsg()) == len, "context on a full buffer: %zu bytes, want %zu",
          strlen(gptq_errmsg()), len);
    return test_result();
}
