#include "loop.h"

#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>

int loop_add(int epfd, struct watcher *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, w->fd, &ev);
}

int loop_mod(int epfd, struct watcher *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	return epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev);
}

void loop_del(int epfd, struct watcher *w)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

int loop_run_once(int epfd, int timeout_ms)
{
	struct epoll_event evs[32];
	int n = epoll_wait(epfd, evs, 32, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -1;
	/* A handler may free another ready watcher (a peer closing another's
	 * rebind): handlers that free watchers defer the free to the next turn
	 * through the owner's own bookkeeping, so pointers here stay valid. */
	for (int i = 0; i < n; i++) {
		struct watcher *w = evs[i].data.ptr;

		w->fn(w, evs[i].events);
	}
	return n;
}
