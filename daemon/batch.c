/* daemon/batch.c: one decode loop per model, all sequences stepped together. */
#include "daemon/batch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/interrupt.h"
#include "common/utf8.h"
#include "daemon/log.h"
#include "model/sample.h"

/* A sequence: lives on its job thread's stack while that thread waits. */
typedef struct sequence {
    const int32_t *prompt;
    int n_prompt;
    gptqd_generate_params params;
    uint32_t max_tokens;
    gptqd_job *job;
    gptq_sampler sampler;
    int slot;                 /* -1 until admitted */
    int prefilled;
    int32_t *out_ids;         /* [max_tokens] */
    uint32_t generated;
    char pending[4];          /* bytes of a character still to be completed */
    size_t n_pending;
    gptq_status status;
    char message[512];
    int done;
    struct sequence *next;    /* pending queue */
} sequence;

struct gptqd_batcher {
    const gptq_model *model;
    const gptq_tokenizer *tok;
    const gptq_model_config *cfg;
    int slots, context, vocab;
    gptq_kv *kv;
    float *logits;            /* [slots, vocab]: each slot's next-token logits */
    float *step_logits;       /* [slots, vocab]: a batched step's output */
    int32_t *step_ids;        /* [slots] */
    int *step_slots;          /* [slots] */
    sequence **active;        /* [slots], by slot */

    pthread_mutex_t lock;
    pthread_cond_t work;      /* the loop waits for sequences */
    pthread_cond_t finished;  /* job threads wait for their sequence */
    sequence *pending_head, *pending_tail;
    int n_active, stop;
    pthread_t thread;
    uint64_t steps, tokens;   /* batched steps and the tokens they decoded */
    gptq_kv_budget_fn charge; /* the owner's budget, or NULL */
    void *charge_user;
    uint64_t kv_held;         /* KV bytes held (atomic: read by any thread) */
    int peak;                 /* most sequences in one step */
};

static int is_eos(const gptq_model_config *cfg, int32_t id)
{
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_token_ids[i] == id)
            return 1;
    return 0;
}

/* ---- streaming ------------------------------------------------------------- */

/* Bytes a UTF-8 lead byte says its character has (0: not a lead byte). */
static size_t utf8_need(unsigned char b)
{
    return b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3
           : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
}

/* Streams a token as an event whose text is valid UTF-8 on its own (a
 * proto3 string; strict decoders refuse anything else): a character that
 * byte-level tokens split is held back until its last byte arrives, and
 * bytes that can never form one become U+FFFD, as decoding the whole text
 * does. The event keeps the token id even when its text is empty. */
static void stream_token(sequence *seq, int32_t id, const char *bytes, size_t len)
{
    size_t n = seq->n_pending + len;
    unsigned char stack_in[256];
    char stack_out[3 * 256 + 8];
    unsigned char *in = n <= sizeof stack_in ? stack_in : malloc(n);
    char *out = n <= sizeof stack_in ? stack_out : malloc(3 * n + 8);
    if (!in || !out) {
        if (in != stack_in)
            free(in);
        if (out != stack_out)
            free(out);
        gptqd_job_token(seq->job, id, "", 0);
        return;
    }
    memcpy(in, seq->pending, seq->n_pending);
    if (len)
        memcpy(in + seq->n_pending, bytes, len);
    size_t i = 0, o = 0;
    seq->n_pending = 0;
    while (i < n) {
        size_t k = gptq_utf8_valid_len(in + i, n - i);
        if (k) {
            memcpy(out + o, in + i, k);
            o += k;
            i += k;
            continue;
        }
        size_t bad = gptq_utf8_invalid_len(in + i, n - i);
        if (i + bad == n && bad < utf8_need(in[i])) { /* unfinished: wait for the rest */
            memcpy(seq->pending, in + i, bad);
            seq->n_pending = bad;
            break;
        }
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += bad;
    }
    gptqd_job_token(seq->job, id, out, o);
    if (in != stack_in)
        free(in);
    if (out != stack_out)
        free(out);
}

/* The end of a sequence: bytes of a character that never finished become
 * U+FFFD (an event with token -1). */
static void stream_flush(sequence *seq)
{
    if (seq->n_pending) {
        seq->n_pending = 0;
        gptqd_job_token(seq->job, -1, "\xEF\xBF\xBD", 3);
    }
}

/* ---- the loop ---------------------------------------------------------------- */

static int job_canceled(void *job)
{
    return gptqd_job_canceled(job);
}

/* Ends a sequence (loop thread, lock not held) and wakes its job thread. */
static void finish(gptqd_batcher *b, sequence *seq, gptq_status st)
{
    stream_flush(seq);
    seq->status = st;
    if (st)
        snprintf(seq->message, sizeof seq->message, "%s", gptq_errmsg());
    gptq_kv_truncate(b->kv, seq->slot, 0); /* its KV memory goes at once */
    pthread_mutex_lock(&b->lock);
    b->active[seq->slot] = NULL;
    b->n_active--;
    seq->done = 1;
    pthread_cond_broadcast(&b->finished);
    pthread_mutex_unlock(&b->lock);
}

/* Samples the next token of `seq` from its logits; streams it. Returns 1 if
 * the sequence goes on (then *token is its next input), 0 if it ended. */
static int advance(gptqd_batcher *b, sequence *seq, int32_t *token)
{
    if (gptqd_job_canceled(seq->job)) {
        finish(b, seq, gptq_fail(GPTQ_ERR_CANCELED, "generation canceled after %u tokens",
                                 seq->generated));
        return 0;
    }
    float *logits = b->logits + (size_t)seq->slot * (size_t)b->vocab;
    int32_t next = 0;
    gptq_status st = gptq_sampler_next(&seq->sampler, logits, b->vocab, &next);
    if (st) {
        finish(b, seq, st);
        return 0;
    }
    if (is_eos(b->cfg, next)) {
        finish(b, seq, GPTQ_OK);
        return 0;
    }
    seq->out_ids[seq->generated++] = next;
    const char *bytes = "";
    size_t len = 0;
    if (gptq_tokenizer_token_bytes(b->tok, next, seq->generated == 1, &bytes, &len) != GPTQ_OK)
        len = 0; /* an id the tokenizer does not know decodes to nothing */
    stream_token(seq, next, bytes, len);
    if (seq->generated >= seq->max_tokens) {
        finish(b, seq, GPTQ_OK);
        return 0;
    }
    *token = next;
    return 1;
}

/* A longrope model (Phi-3 128k, Phi-3.5) whose sequence, with the token
 * just sampled, passes the original context for the first time: its cache
 * holds keys rotated with the short factors, and transformers' generate
 * then computes the whole sequence again with the long ones. */
static int crosses_original(const gptqd_batcher *b, const sequence *seq)
{
    const int orig = b->cfg->rope_original_max_position_embeddings;
    const int64_t len = (int64_t)seq->n_prompt + seq->generated;
    return b->cfg->rope_type == GPTQ_ROPE_LONGROPE && len > orig && len - 1 <= orig;
}

/* The sequence in slot s computed again from its first token (prompt and
 * every token generated), its next-token logits into the slot's. */
static void refill(gptqd_batcher *b, sequence *seq, int s)
{
    const int n = seq->n_prompt + (int)seq->generated;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) {
        finish(b, seq, gptq_fail(GPTQ_ERR_NOMEM, "generate: out of memory"));
        return;
    }
    memcpy(ids, seq->prompt, (size_t)seq->n_prompt * sizeof *ids);
    memcpy(ids + seq->n_prompt, seq->out_ids, (size_t)seq->generated * sizeof *ids);
    gptq_kv_truncate(b->kv, s, 0);
    gptq_interrupt_set(job_canceled, seq->job);
    gptq_status st = gptq_model_forward(b->model, b->kv, ids, 1, n, &s, NULL, GPTQ_FWD_LAST_ONLY,
                                        b->logits + (size_t)s * (size_t)b->vocab);
    gptq_interrupt_set(NULL, NULL);
    free(ids);
    if (st)
        finish(b, seq, st);
}

static void *loop(void *arg)
{
    gptqd_batcher *b = arg;
    for (;;) {
        pthread_mutex_lock(&b->lock);
        while (!b->stop && b->n_active == 0 && !b->pending_head)
            pthread_cond_wait(&b->work, &b->lock);
        if (b->stop) {
            pthread_mutex_unlock(&b->lock);
            break;
        }
        /* Admit waiting sequences into free slots. */
        for (int s = 0; s < b->slots && b->pending_head; s++) {
            if (b->active[s])
                continue;
            sequence *seq = b->pending_head;
            b->pending_head = seq->next;
            if (!b->pending_head)
                b->pending_tail = NULL;
            seq->slot = s;
            b->active[s] = seq;
            b->n_active++;
        }
        pthread_mutex_unlock(&b->lock);

        /* Only this thread changes active[] entries from non-NULL (finish),
         * and job threads only add to the pending queue: no lock needed to
         * read active[] here. */
        int n_step = 0;
        for (int s = 0; s < b->slots; s++) {
            sequence *seq = b->active[s];
            if (!seq)
                continue;
            if (!seq->prefilled && gptqd_job_canceled(seq->job)) {
                finish(b, seq, gptq_fail(GPTQ_ERR_CANCELED, "generation canceled before it "
                                         "started"));
                continue;
            }
            if (!seq->prefilled) {
                /* A new sequence: its prompt alone, into its slot. */
                gptq_kv_truncate(b->kv, s, 0);
                float *logits = b->logits + (size_t)s * (size_t)b->vocab;
                /* a long prompt is many layers of work: its job's cancel
                 * (or the daemon's stop) ends it between layers */
                gptq_interrupt_set(job_canceled, seq->job);
                gptq_status st = gptq_model_forward(b->model, b->kv, seq->prompt, 1,
                                                    seq->n_prompt, &s, NULL, GPTQ_FWD_LAST_ONLY,
                                                    logits);
                gptq_interrupt_set(NULL, NULL);
                if (st) {
                    finish(b, seq, st);
                    continue;
                }
                seq->prefilled = 1;
            }
            int32_t token;
            if (!advance(b, seq, &token))
                continue;
            if (crosses_original(b, seq)) {
                refill(b, seq, s);
                continue;
            }
            b->step_ids[n_step] = token;
            b->step_slots[n_step] = s;
            n_step++;
        }
        if (n_step == 0)
            continue;
        gptq_status st = gptq_model_forward(b->model, b->kv, b->step_ids, n_step, 1,
                                            b->step_slots, NULL, GPTQ_FWD_LAST_ONLY,
                                            b->step_logits);
        b->steps++;
        b->tokens += (uint64_t)n_step;
        if (n_step > b->peak)
            b->peak = n_step;
        for (int k = 0; k < n_step; k++) {
            int s = b->step_slots[k];
            if (st)
                finish(b, b->active[s], st);
            else
                memcpy(b->logits + (size_t)s * (size_t)b->vocab,
                       b->step_logits + (size_t)k * (size_t)b->vocab,
                       (size_t)b->vocab * sizeof(float));
        }
    }
    return NULL;
}

/* The KV cache's budget: the owner's charge, and what the loop holds. */
static gptq_status kv_budget(void *user, int64_t delta)
{
    gptqd_batcher *b = user;
    gptq_status st = b->charge ? b->charge(b->charge_user, delta) : GPTQ_OK;
    if (st == GPTQ_OK)
        __atomic_add_fetch(&b->kv_held, (uint64_t)delta, __ATOMIC_RELAXED);
    return st;
}

uint64_t gptqd_batcher_kv_bytes(const gptqd_batcher *b)
{
    return __atomic_load_n(&b->kv_held, __ATOMIC_RELAXED);
}

/* The batcher's buffers and itself (its thread and sync objects are gone). */
static void batcher_free(gptqd_batcher *b)
{
    uint64_t held = __atomic_load_n(&b->kv_held, __ATOMIC_RELAXED);
    if (held && b->charge)
        b->charge(b->charge_user, -(int64_t)held);
    gptq_kv_free(b->kv);
    free(b->logits);
    free(b->step_logits);
    free(b->step_ids);
    free(b->step_slots);
    free(b->active);
    free(b);
}

gptq_status gptqd_batcher_create(const gptq_model *m, const gptq_tokenizer *tok, int slots,
                                 int context, gptq_kv_budget_fn charge, void *user,
                                 gptqd_batcher **out)
{
    gptq_status st = GPTQ_OK;
    gptqd_batcher *b = calloc(1, sizeof *b);
    if (!b)
        return gptq_fail(GPTQ_ERR_NOMEM, "decode loop: out of memory");
    b->model = m;
    b->tok = tok;
    b->cfg = gptq_model_get_config(m);
    b->slots = slots;
    b->context = context;
    b->vocab = b->cfg->vocab_size;
    size_t rows = (size_t)slots * (size_t)b->vocab;
    b->logits = malloc(rows * sizeof *b->logits);
    b->step_logits = malloc(rows * sizeof *b->step_logits);
    b->step_ids = calloc((size_t)slots, sizeof *b->step_ids);
    b->step_slots = calloc((size_t)slots, sizeof *b->step_slots);
    b->active = calloc((size_t)slots, sizeof *b->active);
    if (!b->logits || !b->step_logits || !b->step_ids || !b->step_slots || !b->active) {
        st = gptq_fail(GPTQ_ERR_NOMEM, "decode loop: out of memory");
        goto fail;
    }
    if ((st = gptq_kv_create(m, slots, context, &b->kv)))
        goto fail;
    b->charge = charge;
    b->charge_user = user;
    gptq_kv_set_budget(b->kv, kv_budget, b);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->finished, NULL);
    int rc = pthread_create(&b->thread, NULL, loop, b);
    if (rc) {
        pthread_mutex_destroy(&b->lock);
        pthread_cond_destroy(&b->work);
        pthread_cond_destroy(&b->finished);
        st = gptq_fail(GPTQ_ERR_NOMEM, "decode loop thread: %s", strerror(rc));
        goto fail;
    }
    *out = b;
    return GPTQ_OK;
fail:
    batcher_free(b);
    return st;
}

void gptqd_batcher_destroy(gptqd_batcher *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    b->stop = 1;
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->thread, NULL);
    if (b->steps)
        gptqd_log(LOG_INFO, "decode loop: %llu steps, %.2f sequences a step, at most %d",
                  (unsigned long long)b->steps, (double)b->tokens / (double)b->steps, b->peak);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->finished);
    batcher_free(b);
}

gptq_status gptqd_batcher_generate(gptqd_batcher *b, const int32_t *ids, int n_ids,
                                   const gptqd_generate_params *p, gptqd_job *job)
{
    if (n_ids >= b->context)
        return gptq_fail(GPTQ_ERR_LIMIT, "generate.prompt: %d tokens; a sequence holds at most "
                         "%d here", n_ids, b->context);
    sequence seq;
    memset(&seq, 0, sizeof seq);
    seq.prompt = ids;
    seq.n_prompt = n_ids;
    seq.params = *p;
    seq.max_tokens = (uint32_t)p->options.max_tokens; /* >= 1, checked by the library */
    if ((int)seq.max_tokens > b->context - n_ids) {
        seq.max_tokens = (uint32_t)(b->context - n_ids);
        gptqd_job_log(job, "max_tokens lowered to %u: a sequence holds %d tokens here",
                      seq.max_tokens, b->context);
    }
    seq.job = job;
    seq.slot = -1;
    gptq_status st = gptq_sampler_init(&seq.sampler, &p->options.sample);
    if (st)
        return gptq_fail_context(st, "generate");
    seq.out_ids = malloc(((size_t)seq.max_tokens + 1) * sizeof *seq.out_ids);
    if (!seq.out_ids) {
        gptq_sampler_free(&seq.sampler);
        return gptq_fail(GPTQ_ERR_NOMEM, "generate: out of memory");
    }

    pthread_mutex_lock(&b->lock);
    if (b->pending_tail)
        b->pending_tail->next = &seq;
    else
        b->pending_head = &seq;
    b->pending_tail = &seq;
    pthread_cond_signal(&b->work);
    while (!seq.done)
        pthread_cond_wait(&b->finished, &b->lock);
    pthread_mutex_unlock(&b->lock);

    gptq_sampler_free(&seq.sampler);
    st = seq.status;
    gptqd_job_result *r = gptqd_job_result_of(job);
    r->generated = seq.generated;
    r->tokens = (uint64_t)n_ids;
    size_t len = 0;
    if (seq.generated &&
        gptq_tokenizer_decode(b->tok, seq.out_ids, seq.generated, &r->text, &len) != GPTQ_OK)
        gptqd_log(LOG_WARNING, "generate: decoding the result: %s", gptq_errmsg());
    free(seq.out_ids);
    if (st)
        return gptq_fail(st, "%s", seq.message);
    return GPTQ_OK;
}
