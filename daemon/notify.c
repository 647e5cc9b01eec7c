/* daemon/notify.c: sd_notify messages for Type=notify. */
#include "daemon/notify.h"

#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "daemon/log.h"

static char last_status[512];

uint64_t gptqd_notify_init(void)
{
    uint64_t usec = 0;
    int r = sd_watchdog_enabled(0, &usec);
    if (r < 0) {
        gptqd_log(LOG_WARNING, "watchdog: bad WATCHDOG_USEC/WATCHDOG_PID (%s); watchdog off",
                  strerror(-r));
        return 0;
    }
    if (r == 0)
        return 0;
    gptqd_log(LOG_INFO, "watchdog: every %llu ms", (unsigned long long)(usec / 2000));
    return usec / 2;
}

static void send_line(const char *text)
{
    int r = sd_notify(0, text);
    if (r < 0)
        gptqd_log(LOG_WARNING, "sd_notify(%.40s): %s", text, strerror(-r));
}

void gptqd_notify_ready(const char *status_line)
{
    char text[600];
    snprintf(text, sizeof text, "READY=1\nSTATUS=%s", status_line);
    snprintf(last_status, sizeof last_status, "%s", status_line);
    send_line(text);
}

void gptqd_notify_status(const char *status_line)
{
    if (strcmp(status_line, last_status) == 0)
        return;
    snprintf(last_status, sizeof last_status, "%s", status_line);
    char text[600];
    snprintf(text, sizeof text, "STATUS=%s", status_line);
    send_line(text);
}

void gptqd_notify_watchdog(void) { send_line("WATCHDOG=1"); }

void gptqd_notify_stopping(void) { send_line("STOPPING=1\nSTATUS=stopping"); }
