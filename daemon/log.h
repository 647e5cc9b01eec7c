/* daemon/log.h: gptqd's log: lines on stderr with sd-daemon "<N>" priority
 * prefixes (sd-daemon(3)), so journald keeps each line's level. */
#ifndef GPTQD_LOG_H
#define GPTQD_LOG_H

#include <syslog.h> /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

/* Lines above `priority` (numerically greater) are dropped. */
void gptqd_log_set_level(int priority);
int gptqd_log_level(void);

/* "err", "warning", "notice", "info", "debug" (or 0..7) to a priority;
 * -1 if unknown. */
int gptqd_log_parse_level(const char *name);

/* One line (no trailing newline needed); thread-safe, one write(2) per line. */
void gptqd_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
