/* client/job.c: following a job: one Poll, and the blocking wait that polls
 * until the job ends, hands progress events and streamed tokens to a
 * callback as they come, and turns Ctrl-C into a Cancel. */
#include "client/internal.h"

#include <stdlib.h>
#include <string.h>

#include "proto/wire_check.h"

enum { WAIT_POLL_MS = 500 };

void gptq_client_result_free(gptq_client_result *r)
{
    if (!r)
        return;
    free(r->model);
    free(r->text);
    free(r->saved_dir);
    free(r);
}

gptq_client_result *gptq_client_result_from_wire_(const Gptqd__JobResult *w)
{
    gptq_client_result *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    static const Gptqd__JobResult empty = GPTQD__JOB_RESULT__INIT;
    if (!w)
        w = &empty;
    r->model = gptq_client_strdup_(w->model);
    r->text = gptq_client_strdup_(w->text);
    r->saved_dir = gptq_client_strdup_(w->saved_dir);
    if (!r->model || !r->text || !r->saved_dir) {
        gptq_client_result_free(r);
        return NULL;
    }
    r->perplexity = w->perplexity;
    r->tokens = w->tokens;
    r->seqlen = w->seqlen;
    r->kl = w->kl;
    r->has_kl = w->has_kl;
    r->generated = w->generated;
    r->seconds = w->seconds;
    return r;
}

void gptq_client_poll_free(gptq_client_poll_reply *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_events; i++)
        free((char *)p->events[i].text);
    free(p->events);
    free(p->result_message);
    gptq_client_result_free(p->result);
    free(p);
}

static gptq_status poll_once(gptq_client *c, gptq_job_id job, uint64_t since, uint32_t wait_ms,
                             gptq_client_poll_reply **out)
{
    gptq_status st = GPTQ_OK;
    Gptqd__Request req = GPTQD__REQUEST__INIT;
    Gptqd__PollRequest body = GPTQD__POLL_REQUEST__INIT;
    Gptqd__Response *r = NULL;
    gptq_client_poll_reply *p = NULL;
    *out = NULL;
    body.job = job;
    body.since = since;
    body.wait_ms = wait_ms;
    req.body_case = GPTQD__REQUEST__BODY_POLL;
    req.poll = &body;
    TRY(gptq_client_rpc_(c, &req, GPTQD__RESPONSE__BODY_POLL, (int)wait_ms, &r));
    const Gptqd__PollReply *w = r->poll;
    MEM_TRY(p = calloc(1, sizeof *p), "poll reply");
    p->job = w->job;
    p->state = gptq_client_state_from_wire_(w->state);
    p->next = w->next;
    p->result_status = w->result_status > 0 && w->result_status < GPTQ_STATUS_COUNT
                           ? (gptq_status)w->result_status
                           : (p->state == GPTQ_JOB_FAILED ? GPTQ_ERR_INTERNAL : GPTQ_OK);
    MEM_TRY(p->result_message = gptq_client_strdup_(w->result_message), "poll reply");
    if (w->n_events)
        MEM_TRY(p->events = calloc(w->n_events, sizeof *p->events), "poll reply");
    for (size_t i = 0; i < w->n_events; i++) {
        const Gptqd__Event *we = w->events[i];
        gptq_client_event *e = &p->events[i];
        p->n_events = i + 1;
        MEM_TRY(e->text = gptq_client_strdup_(we->text), "poll reply");
        e->job = job;
        e->seq = we->seq;
        e->kind = we->kind == GPTQD__EVENT_KIND__EVENT_PROGRESS ? GPTQ_EVENT_PROGRESS
                  : we->kind == GPTQD__EVENT_KIND__EVENT_TOKEN  ? GPTQ_EVENT_TOKEN
                                                                : GPTQ_EVENT_LOG;
        e->token = we->token;
        e->fraction = we->fraction;
        e->value = we->value;
        e->seconds = we->seconds;
    }
    if (p->state == GPTQ_JOB_DONE)
        MEM_TRY(p->result = gptq_client_result_from_wire_(w->result), "poll reply");
    *out = p;
    p = NULL;
fail:
    gptq_client_poll_free(p);
    if (r)
        gptqd__response__free_unpacked(r, NULL);
    return st;
}

gptq_status gptq_client_poll(gptq_client *c, gptq_job_id job, uint64_t since, uint32_t wait_ms,
                             gptq_client_poll_reply **out)
{
    return gptq_client_finish_(c, poll_once(c, job, since, wait_ms, out));
}

static int job_ended(gptq_job_state state)
{
    return state == GPTQ_JOB_DONE || state == GPTQ_JOB_FAILED || state == GPTQ_JOB_CANCELED;
}

gptq_status gptq_client_wait(gptq_client *c, gptq_job_id job, gptq_client_event_fn on_event,
                             void *user, volatile int *cancel, gptq_client_result **result)
{
    gptq_status st = GPTQ_OK;
    gptq_client_poll_reply *p = NULL;
    gptq_client_poll_reply *end = NULL; /* the reply that carried the end state */
    uint64_t since = 0;
    int cancel_sent = 0, want_cancel = 0;
    if (result)
        *result = NULL;
    for (;;) {
        if (!end && !cancel_sent && (want_cancel || (cancel && *cancel))) {
            /* A refusal (the job ended meanwhile, or is unknown by now) is
             * not an error: the next poll reports its end state. Only a
             * daemon we cannot reach stops the wait. */
            gptq_status cst = gptq_client_cancel(c, job);
            if (cst == GPTQ_ERR_UNREACHABLE) {
                st = gptq_fail(cst, "%s", gptq_client_errmsg(c));
                goto fail;
            }
            cancel_sent = 1;
        }
        /* After the end state, drain with wait 0: that reply may have been
         * cut at the daemon's limit of events per poll. */
        st = poll_once(c, job, since, end ? 0 : WAIT_POLL_MS, &p);
        if (st != GPTQ_OK) {
            if (!end)
                goto fail;
            st = GPTQ_OK; /* the job may be reaped once ended: keep `end` */
            break;
        }
        for (size_t i = 0; i < p->n_events; i++) {
            if (p->events[i].seq < since)
                continue; /* a repeat: the daemon resent from an older point */
            if (on_event && on_event(user, &p->events[i]))
                want_cancel = 1;
        }
        if (p->next > since)
            since = p->next;
        if (end) {
            if (p->n_events == 0 || !job_ended(p->state))
                break;
            gptq_client_poll_free(end);
        } else if (!job_ended(p->state)) {
            gptq_client_poll_free(p);
            p = NULL;
            continue;
        }
        end = p;
        p = NULL;
        if (end->n_events == 0)
            break;
    }
    switch (end->state) {
    case GPTQ_JOB_DONE:
        if (result) {
            *result = end->result;
            end->result = NULL;
        }
        st = GPTQ_OK;
        break;
    case GPTQ_JOB_CANCELED:
        st = gptq_fail(GPTQ_ERR_CANCELED, "job %llu was cancelled%s%s",
                       (unsigned long long)job, end->result_message[0] ? ": " : "",
                       end->result_message);
        break;
    default:
        st = end->result_status != GPTQ_OK ? end->result_status : GPTQ_ERR_INTERNAL;
        gptq_fail(st, "%s", end->result_message[0] ? end->result_message : gptq_status_name(st));
        break;
    }
fail:
    gptq_client_poll_free(p);
    gptq_client_poll_free(end);
    return gptq_client_finish_(c, st);
}
