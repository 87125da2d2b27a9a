/* Diagnostics for the operator, on stderr (events go to the sinks, not here). */
#ifndef SW_LOG_H
#define SW_LOG_H
#include <stdbool.h>

extern bool log_verbose;
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif
