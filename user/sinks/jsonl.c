#include "jsonl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/clock.h"

void line_queue_init(struct line_queue *q, size_t max)
{
	memset(q, 0, sizeof(*q));
	q->max = max;
}

static bool queue_append(struct line_queue *q, const char *line, size_t len)
{
	size_t used = q->len - q->off;

	if (q->off && q->len + len > q->cap) {
		memmove(q->buf, q->buf + q->off, used);
		q->len = used;
		q->off = 0;
	}
	if (q->len + len > q->cap) {
		size_t cap = q->cap ? q->cap : 4096;
		char *nb;

		while (cap < q->len + len)
			cap *= 2;
		nb = realloc(q->buf, cap);
		if (!nb)
			return false;
		q->buf = nb;
		q->cap = cap;
	}
	memcpy(q->buf + q->len, line, len);
	q->len += len;
	return true;
}

void line_queue_drop(struct line_queue *q)
{
	q->gap = true;
	q->dropped++;
	q->dropped_total++;
}

bool line_queue_push(struct line_queue *q, const char *line, size_t len)
{
	size_t used = q->len - q->off;

	/* a whole line or nothing: the reader never sees half of one */
	if (!q->gap && used <= q->max && len <= q->max - used && queue_append(q, line, len))
		return true;
	line_queue_drop(q);
	return false;
}

uint64_t line_queue_gap_ready(const struct line_queue *q)
{
	return q->gap && q->len - q->off <= q->max / 2 ? q->dropped : 0;
}

bool line_queue_close_gap(struct line_queue *q, const char *line, size_t len)
{
	bool ok;

	/* the report may overstep the bound by its own size: it is one line,
	 * and without it the loss would go unsaid */
	ok = queue_append(q, line, len);
	q->gap = false;
	q->dropped = 0;
	return ok;
}

long line_queue_flush(struct line_queue *q, int fd)
{
	while (q->off < q->len) {
		ssize_t n = write(fd, q->buf + q->off, q->len - q->off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -1;
		}
		q->off += (size_t)n;
	}
	if (q->off == q->len)
		q->off = q->len = 0;
	return (long)(q->len - q->off);
}

void line_queue_free(struct line_queue *q)
{
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

int sinks_open_jsonl(struct sinks *s, const char *path, size_t queue_max)
{
	int fd, fl;

	if (!path || strcmp(path, "-") == 0) {
		fd = STDOUT_FILENO;
		s->jsonl.owns_fd = false;
	} else {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
		s->jsonl.owns_fd = true;
	}
	/* A pipe whose reader stalls must never block detection or healing. */
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	s->jsonl.fd = fd;
	line_queue_init(&s->jsonl.q, queue_max ? queue_max : SINK_QUEUE_MAX_DEFAULT);
	s->have_jsonl = true;
	return 0;
}

int sinks_reopen_jsonl(struct sinks *s, const char *path)
{
	int fd, fl;

	if (!s->have_jsonl || !s->jsonl.owns_fd)
		return 0;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	/* onto the same descriptor number: the event loop's watcher stays valid,
	 * and queued lines go to the new file */
	if (dup3(fd, s->jsonl.fd, O_CLOEXEC) < 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	close(fd);
	return 0;
}

/* One event as one line, newline included (the caller frees). */
static char *event_line(json_t *ev, size_t *len)
{
	char *line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));

	if (!line)
		return NULL;
	*len = strlen(line);
	line[(*len)++] = '\n'; /* over the NUL: the line is counted, not terminated */
	return line;
}

void sinks_emit(struct sinks *s, json_t *ev)
{
	s->emitted_total++;
	if (s->have_jsonl) {
		size_t n = 0;
		char *line = event_line(ev, &n);

		if (line)
			line_queue_push(&s->jsonl.q, line, n);
		else
			line_queue_drop(&s->jsonl.q);
		free(line);
	}
}

uint64_t sinks_gap_ready(const struct sinks *s)
{
	return s->have_jsonl ? line_queue_gap_ready(&s->jsonl.q) : 0;
}

void sinks_close_gap(struct sinks *s, json_t *report)
{
	size_t n = 0;
	char *line;

	if (!s->have_jsonl)
		return;
	line = event_line(report, &n);
	if (line)
		line_queue_close_gap(&s->jsonl.q, line, n);
	free(line);
}

uint64_t sinks_dropped_total(const struct sinks *s)
{
	return s->have_jsonl ? s->jsonl.q.dropped_total : 0;
}

bool sinks_flush(struct sinks *s)
{
	if (!s->have_jsonl || s->jsonl.broken)
		return false;
	if (line_queue_flush(&s->jsonl.q, s->jsonl.fd) < 0) {
		s->jsonl.broken = true;
		return false;
	}
	return s->jsonl.q.len > s->jsonl.q.off;
}

void sinks_drain(struct sinks *s, int timeout_ms)
{
	uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;

	while (sinks_flush(s)) {
		struct pollfd p = { .fd = s->jsonl.fd, .events = POLLOUT };
		uint64_t now = clock_mono_ns();

		if (now >= deadline)
			break;
		poll(&p, 1, (int)((deadline - now) / NSEC_PER_MSEC) + 1);
	}
}

int sinks_pending_fd(struct sinks *s)
{
	return s->have_jsonl ? s->jsonl.fd : -1;
}

void sinks_close(struct sinks *s)
{
	if (s->have_jsonl) {
		if (s->jsonl.owns_fd)
			close(s->jsonl.fd);
		line_queue_free(&s->jsonl.q);
		s->have_jsonl = false;
	}
}
