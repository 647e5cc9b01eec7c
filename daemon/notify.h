/* daemon/notify.h: the systemd side of gptqd (sd_notify(3)): READY=1 once
 * the socket is bound and preloads are resident, STATUS= lines, WATCHDOG=1
 * from the main loop, STOPPING=1 on shutdown. Without NOTIFY_SOCKET every
 * call does nothing. */
#ifndef GPTQD_NOTIFY_H
#define GPTQD_NOTIFY_H

#include <stdint.h>

/* Reads the watchdog interval (sd_watchdog_enabled); returns the interval
 * in microseconds at which WATCHDOG=1 should be sent (half the timeout),
 * or 0 when the watchdog is off. */
uint64_t gptqd_notify_init(void);

void gptqd_notify_ready(const char *status_line);
/* Sends STATUS= only when the line differs from the last one sent. */
void gptqd_notify_status(const char *status_line);
void gptqd_notify_watchdog(void);
void gptqd_notify_stopping(void);

#endif
