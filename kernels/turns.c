/* kernels/turns.c: turns at the compute (see turns.h), shared by time.
 *
 * Each thread that computes carries the seconds of compute it has held
 * (its virtual time, as Linux's CFS keeps per task). When the compute is
 * free it goes to the waiting thread with the least virtual time (ties: who
 * came first), so jobs whose slices differ in size (a quantize's GPTQ of one
 * linear, an eval's layer over many windows) still share the machine by
 * time, not by slices. A thread that has been idle starts at most
 * TURNS_CREDIT_S behind the virtual time of the last turn granted, not from
 * its old, smaller one: a short catch-up, not a burst that starves the
 * others. */
#include "kernels/turns.h"

#include <pthread.h>
#include <time.h>

/* Compute time a thread may be behind the others and still catch up on:
 * more than the gaps between one job's slices (its own work between turns),
 * less than would let a thread back from idle hold the machine for long. */
#define TURNS_CREDIT_S 0.5
/* A thread that ends a turn while no waiter is behind it in virtual time
 * keeps first claim on the next one this long: a job that goes straight on
 * to its next slice must not lose it to a thread that merely woke first
 * (on a loaded machine the ender is often preempted in between). */
#define TURNS_GRACE_S 0.005

typedef struct waiter {
    struct waiter *next;
    double vtime;
    unsigned long ticket;
} waiter;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t next;
    waiter *waiting;         /* threads waiting for a turn */
    int busy;                /* a thread holds the turn */
    const int *claim;        /* the thread with first claim (its `held`), or NULL */
    double claim_vtime, claim_until; /* its virtual time; until when (CLOCK_REALTIME) */
    double floor;            /* virtual time of the last turn granted */
    unsigned long tickets, granted;
    int enabled;
} turns = {.lock = PTHREAD_MUTEX_INITIALIZER, .next = PTHREAD_COND_INITIALIZER};

static __thread int held;      /* nesting depth of this thread's turn */
static __thread double vtime;  /* seconds of turns this thread has held */
static __thread double since;  /* when the current turn began */

/* Seconds on `clock`: CLOCK_MONOTONIC for compute time (a wall-clock step
 * must not hand anyone a turn), CLOCK_REALTIME for the claim's deadline
 * (the condition variable's clock). */
static double now_s(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void gptq_turns_enable(void)
{
    __atomic_store_n(&turns.enabled, 1, __ATOMIC_RELEASE);
}

/* Whether w goes next among the waiters (lock held). */
static int first_in_line(const waiter *w)
{
    for (const waiter *o = turns.waiting; o; o = o->next)
        if (o != w && (o->vtime < w->vtime || (o->vtime == w->vtime && o->ticket < w->ticket)))
            return 0;
    return 1;
}

void gptq_turn_begin(void)
{
    if (held) {
        held++;
        return;
    }
    if (!__atomic_load_n(&turns.enabled, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&turns.lock);
    if (vtime < turns.floor - TURNS_CREDIT_S)
        vtime = turns.floor - TURNS_CREDIT_S;
    waiter me = {.next = turns.waiting, .vtime = vtime, .ticket = turns.tickets++};
    turns.waiting = &me;
    for (;;) {
        int claimed = turns.claim && turns.claim != &held && turns.claim_vtime <= me.vtime;
        double until = turns.claim_until;
        if (claimed && now_s(CLOCK_REALTIME) >= until)
            turns.claim = NULL, claimed = 0;
        if (!turns.busy && !claimed && first_in_line(&me))
            break;
        if (claimed && !turns.busy) {
            struct timespec ts = {(time_t)until, (long)((until - (double)(time_t)until) * 1e9)};
            pthread_cond_timedwait(&turns.next, &turns.lock, &ts);
        } else {
            pthread_cond_wait(&turns.next, &turns.lock);
        }
    }
    turns.claim = NULL;
    waiter **p = &turns.waiting;
    while (*p != &me)
        p = &(*p)->next;
    *p = me.next;
    turns.busy = 1;
    turns.granted++;
    turns.floor = vtime > turns.floor ? vtime : turns.floor;
    pthread_mutex_unlock(&turns.lock);
    held = 1;
    since = now_s(CLOCK_MONOTONIC);
}

void gptq_turn_end(void)
{
    if (held == 0 || --held > 0)
        return;
    vtime += now_s(CLOCK_MONOTONIC) - since;
    pthread_mutex_lock(&turns.lock);
    turns.busy = 0;
    int behind = 0;
    for (const waiter *o = turns.waiting; o && !behind; o = o->next)
        behind = o->vtime < vtime;
    if (!behind) {
        turns.claim = &held;
        turns.claim_vtime = vtime;
        turns.claim_until = now_s(CLOCK_REALTIME) + TURNS_GRACE_S;
    }
    pthread_cond_broadcast(&turns.next);
    pthread_mutex_unlock(&turns.lock);
}

unsigned long gptq_turns_granted(void)
{
    pthread_mutex_lock(&turns.lock);
    unsigned long n = turns.granted;
    pthread_mutex_unlock(&turns.lock);
    return n;
}
