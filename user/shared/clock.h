/* Time sources. The coalescer and the endpoint table take times as arguments so
 * their tests can drive them without sleeping; only the agent reads clocks. */
#ifndef SW_CLOCK_H
#define SW_CLOCK_H
#include <stdint.h>
#include <stddef.h>

#define NSEC_PER_SEC 1000000000ULL
#define NSEC_PER_MSEC 1000000ULL

uint64_t clock_mono_ns(void);
uint64_t clock_real_ns(void);
/* RFC 3339 in UTC with nanoseconds: 2026-11-23T14:26:09.123456789Z */
void clock_format_rfc3339(uint64_t real_ns, char *out, size_t outlen);
#endif
