/* The event loop's registry: every fd in the agent's epoll set is a watcher
 * that knows its own handler, so components add and remove fds (control
 * peers, pidfds) without the loop knowing them. */
#ifndef SW_LOOP_H
#define SW_LOOP_H
#include <stdint.h>

struct watcher;
typedef void (*watcher_fn)(struct watcher *w, uint32_t events);

struct watcher {
	int fd;
	watcher_fn fn;
	void *ctx;
};

int loop_add(int epfd, struct watcher *w, uint32_t events);
int loop_mod(int epfd, struct watcher *w, uint32_t events);
void loop_del(int epfd, struct watcher *w);
/* Waits once and runs the handlers of ready watchers; -1 on a fatal error. */
int loop_run_once(int epfd, int timeout_ms);
#endif
