#include "clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t clock_read(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

uint64_t clock_mono_ns(void) { return clock_read(CLOCK_MONOTONIC); }
uint64_t clock_real_ns(void) { return clock_read(CLOCK_REALTIME); }

void clock_format_rfc3339(uint64_t real_ns, char *out, size_t outlen)
{
	time_t secs = (time_t)(real_ns / NSEC_PER_SEC);
	struct tm tm;
	char date[32];

	/* gmtime_r fails only past year 2^31; the epoch then, not garbage */
	if (!gmtime_r(&secs, &tm))
		memset(&tm, 0, sizeof(tm));
	if (!strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm))
		date[0] = 0;
	snprintf(out, outlen, "%s.%09lluZ", date,
		 (unsigned long long)(real_ns % NSEC_PER_SEC));
}
