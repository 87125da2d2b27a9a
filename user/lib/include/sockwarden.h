/*
 * libsockwarden: register a server's listening Unix sockets with the
 * sockwarden agent, and get a lost socket path back through the control
 * connection (docs/libsockwarden.md, protocol in docs/protocol.md).
 *
 * The library fits an existing event loop: sw_client_fd() is one file
 * descriptor (an epoll fd holding the control connection and a reconnect
 * timer) that never changes; add it to your loop once, and call
 * sw_dispatch() whenever it is readable. Nothing in the library blocks.
 *
 * Return values: functions returning int give 0 (or a non-negative value)
 * on success and a negative errno value on failure, e.g. -EINVAL; errno
 * itself is not meaningful after them. The library never aborts and never
 * raises SIGPIPE. It keeps no global state: separate clients are
 * independent, but one client must not be used from two threads at once.
 *
 * Callbacks run only from inside sw_dispatch(). A callback may call
 * sw_register() and sw_unregister(), but not sw_client_close().
 */
#ifndef SOCKWARDEN_H
#define SOCKWARDEN_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SW_API __attribute__((visibility("default")))
#else
#define SW_API
#endif

/* The agent's default control addresses. */
#define SW_ABSTRACT_NAME_DEFAULT "sockwarden"                 /* @sockwarden */
#define SW_CONTROL_PATH_DEFAULT "/run/sockwarden/control.sock"
/* The longest socket path (bytes, without the terminating NUL). */
#define SW_SOCKET_PATH_MAX 107

/* How the agent heals a registered path once it is lost. */
enum sw_heal {
	SW_HEAL_NONE = 0,   /* detection and events only */
	SW_HEAL_FD = 1,     /* the agent hands over a new socket bound to the path */
	SW_HEAL_NOTIFY = 2, /* the agent tells the server to bind the path itself */
};

/* What a status callback reports. */
enum sw_event {
	SW_EV_CONNECTED = 1,  /* detail: the agent's address ("@sockwarden" or a path) */
	SW_EV_DISCONNECTED,   /* detail: why; the library reconnects by itself */
	SW_EV_REGISTERED,     /* path: the agent confirmed the registration */
	SW_EV_UNREGISTERED,   /* path: the agent confirmed sw_unregister() */
	SW_EV_ERROR,          /* path (may be ""), detail: the agent's reason, e.g.
	                         "not_listening: the fd is not a listening AF_UNIX socket" */
	SW_EV_ADOPTED,        /* path: a rebind succeeded, `adopted` was sent;
	                         detail: "fd" or "notify" */
	SW_EV_REBIND_FAILED,  /* path, detail: a rebind that was not adopted, and why */
	SW_EV_BAD_MESSAGE,    /* detail: the agent sent a message the library
	                         could not decode; it was ignored */
};

/*
 * Called when the agent asks the server to take over `path` again (its file
 * was removed while the server still listens on it).
 *
 *   new_fd >= 0 (heal SW_HEAL_FD): a socket already bound to `path` with the
 *     server's owner and mode, not yet listening. The callback calls listen()
 *     on it, starts accepting on it (keeps draining its old listener too) and
 *     returns new_fd. The fd is the callback's from then on.
 *   new_fd == -1 (heal SW_HEAL_NOTIFY): the callback binds `path` itself (its
 *     usual start-up code, including creating a removed directory), listens,
 *     and returns its new listening fd.
 *
 * A return value >= 0 names the listener now serving `path`: the library
 * keeps a duplicate of it (later re-registrations use it) and answers the
 * agent `adopted`. A negative return (e.g. -errno) means "not adopted": no
 * answer is sent, the library closes new_fd if there was one, and the agent
 * removes its socket after its deadline (2 s by default).
 */
typedef int (*sw_rebind_cb)(void *arg, const char *path, int new_fd);

/* Reports confirmations, errors and connection changes; `path` and `detail`
 * are never NULL (possibly ""), and valid only during the call. */
typedef void (*sw_status_cb)(void *arg, enum sw_event ev, const char *path,
			     const char *detail);

/* Options for sw_client_open(); zero-initialise, then set what you need.
 * A zero or NULL field means the default. */
struct sw_client_opts {
	const char *abstract_name; /* abstract address without the '@'; default
				      "sockwarden"; "" = do not try one */
	const char *control_path;  /* fallback path; default
				      "/run/sockwarden/control.sock"; "" = none */
	sw_status_cb status_cb;    /* optional */
	void *status_arg;
	unsigned backoff_min_ms;   /* reconnect back-off: default 50 ms, */
	unsigned backoff_max_ms;   /* doubling up to 5000 ms */
};

/*
 * Creates a client. opts may be NULL (all defaults). The connection to the
 * agent is made by the first sw_dispatch() (sw_client_fd() is readable at
 * once); if the agent is not running, the client keeps retrying in the
 * background and registers everything once it gets through.
 * Returns NULL with errno set when resources are short (EMFILE, ENOMEM) or
 * an option is invalid (EINVAL, ENAMETOOLONG).
 */
SW_API struct sw_client *sw_client_open(const struct sw_client_opts *opts);

/* The one fd to poll for readability (EPOLLIN / POLLIN); the same for the
 * client's whole life, across reconnects. Do not read from it or close it. */
SW_API int sw_client_fd(const struct sw_client *c);

/*
 * Handles whatever is pending: connects or reconnects when the back-off
 * timer fires, sends queued messages, reads the agent's replies and rebinds
 * (calling the callbacks). Non-blocking; call it whenever sw_client_fd() is
 * readable (calling it more often is harmless). Returns 0, or a negative
 * errno value if the client itself is broken (e.g. -EBADF); the agent being
 * away is not an error.
 */
SW_API int sw_dispatch(struct sw_client *c);

/*
 * Registers the listening socket `listen_fd`, bound to the absolute path
 * `path`, with heal mode `heal`. The library keeps a duplicate of listen_fd
 * (close-on-exec) until sw_unregister() or sw_client_close(): unregister
 * before you close your listener, or the duplicate keeps it alive.
 * `cb` (called with `arg`) is required for SW_HEAL_FD and SW_HEAL_NOTIFY and
 * may be NULL for SW_HEAL_NONE.
 *
 * The request is sent now if the agent is connected, else as soon as it is;
 * the answer arrives through the status callback (SW_EV_REGISTERED or
 * SW_EV_ERROR). After a reconnect every registration is sent again, with the
 * current listener (the one the last adopted rebind returned). A
 * registration the agent refused stays in the list, is retried after a
 * reconnect, and is removed only by sw_unregister().
 *
 * Returns 0; -EINVAL (path not absolute or not normalised, e.g. "//", "/./",
 * a trailing '/', or not valid UTF-8; bad heal; missing callback);
 * -ENAMETOOLONG (path longer than SW_SOCKET_PATH_MAX bytes); -EBADF (listen_fd is
 * not open); -EEXIST (path is already registered by this client); -ENOMEM.
 */
SW_API int sw_register(struct sw_client *c, int listen_fd, const char *path,
		       enum sw_heal heal, sw_rebind_cb cb, void *arg);

/* Ends the registration of `path`: the library closes its duplicate of the
 * listener and tells the agent (SW_EV_UNREGISTERED confirms it). Returns 0,
 * -ENOENT (not registered by this client), -EINVAL / -ENAMETOOLONG. */
SW_API int sw_unregister(struct sw_client *c, const char *path);

/* 1 while the control connection is up, else 0. */
SW_API int sw_client_connected(const struct sw_client *c);

/* Closes the connection (the agent ends every registration of this client),
 * the duplicated listeners, the epoll fd, and frees c. NULL is allowed. */
SW_API void sw_client_close(struct sw_client *c);

/* "connected", "registered", … for logging; "unknown" for other values. */
SW_API const char *sw_event_name(enum sw_event ev);
/* "fd", "notify", "none"; NULL for other values. */
SW_API const char *sw_heal_name(enum sw_heal heal);

#ifdef __cplusplus
}
#endif
#endif /* SOCKWARDEN_H */
