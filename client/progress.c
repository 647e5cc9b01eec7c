/* client/progress.c: how gptqctl shows a running job: on a terminal, one
 * line redrawn with \r (bar, percentage, current layer/module, elapsed
 * time); otherwise plain lines a log keeps. Streamed tokens go to stdout as
 * they arrive. Everything for people goes to stderr, so stdout stays clean
 * for --json and for the completion text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/ctl.h"

enum { BAR_CELLS = 28, PLAIN_STEP_PERCENT = 5 };

struct ctl_progress {
    char *label;
    int tty;           /* stderr is a terminal: redraw one line */
    int stream_tokens; /* TOKEN events to stdout */
    int bar_shown;     /* a bar is on the terminal's current line */
    int tokens_out;    /* tokens were written to stdout */
    int last_percent;  /* plain mode: last percentage printed */
    char *last_text;   /* plain mode: last module printed */
    struct timespec start;
};

static double elapsed_s(const ctl_progress *p)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - p->start.tv_sec) + (now.tv_nsec - p->start.tv_nsec) * 1e-9;
}

ctl_progress *ctl_progress_new(const char *label, int stream_tokens)
{
    ctl_progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->label = strdup(label);
    p->tty = isatty(STDERR_FILENO);
    p->stream_tokens = stream_tokens;
    p->last_percent = -100;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    return p;
}

static void clear_bar(ctl_progress *p)
{
    if (p->bar_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->bar_shown = 0;
    }
}

void ctl_progress_free(ctl_progress *p)
{
    if (!p)
        return;
    clear_bar(p);
    if (p->tokens_out) {
        fputc('\n', stdout);
        fflush(stdout);
    }
    free(p->label);
    free(p->last_text);
    free(p);
}

static void draw_bar(ctl_progress *p, double fraction, const char *text)
{
    int percent = (int)floor(fraction * 100.0 + 1e-9);
    int cells = (int)(fraction * BAR_CELLS + 1e-9);
    char bar[BAR_CELLS + 1];
    for (int i = 0; i < BAR_CELLS; i++)
        bar[i] = i < cells ? '#' : '.';
    bar[BAR_CELLS] = '\0';
    int secs = (int)elapsed_s(p);
    fprintf(stderr, "\r%s [%s] %3d%%  %s  %d:%02d\033[K", p->label, bar, percent, text,
            secs / 60, secs % 60);
    fflush(stderr);
    p->bar_shown = 1;
}

static void plain_line(ctl_progress *p, double fraction, const char *text)
{
    int percent = (int)floor(fraction * 100.0 + 1e-9);
    int text_changed = text[0] && (!p->last_text || strcmp(text, p->last_text) != 0);
    if (!text_changed && percent < p->last_percent + PLAIN_STEP_PERCENT && percent != 100)
        return;
    if (percent == p->last_percent && !text_changed)
        return;
    fprintf(stderr, "%s: %3d%% %s (%.1f s)\n", p->label, percent, text, elapsed_s(p));
    fflush(stderr);
    p->last_percent = percent;
    if (text_changed) {
        free(p->last_text);
        p->last_text = strdup(text);
    }
}

int ctl_progress_event(void *user, const gptq_client_event *e)
{
    ctl_progress *p = user;
    switch (e->kind) {
    case GPTQ_EVENT_TOKEN:
        if (p->stream_tokens) {
            clear_bar(p);
            fputs(e->text, stdout);
            fflush(stdout);
            p->tokens_out = 1;
        }
        break;
    case GPTQ_EVENT_PROGRESS: {
        double f = e->fraction < 0 ? 0 : e->fraction > 1 ? 1 : e->fraction;
        if (p->tokens_out)
            break; /* do not draw over a completion being printed */
        if (p->tty)
            draw_bar(p, f, e->text);
        else
            plain_line(p, f, e->text);
        break;
    }
    case GPTQ_EVENT_LOG:
        clear_bar(p);
        fprintf(stderr, "%s: %s\n", p->label, e->text);
        fflush(stderr);
        break;
    }
    return 0;
}
