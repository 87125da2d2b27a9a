/*
 * What the control server's files share (control.c, control_peer.c,
 * control_register.c, control_rebind.c); private to them.
 */
#ifndef SW_CONTROL_INTERNAL_H
#define SW_CONTROL_INTERNAL_H
#include "control.h"

/* control_peer.c */
int peer_sendmsg(struct ctl_peer *p, const char *buf, size_t len, int fd);
json_t *ctl_event(struct control *c, const char *name, const char *sev,
		  const struct endpoint *e);
/* The endpoint of path the peer registered, or NULL. */
struct endpoint *peer_endpoint(const struct ctl_peer *p, const char *path);
void on_peer(struct watcher *w, uint32_t events);
void on_peer_exit(struct watcher *w, uint32_t events);
void peer_bad(struct ctl_peer *p, const char *path, const char *word, const char *text);
void peer_kill(struct ctl_peer *p, const char *why, const char *reg_why);
void reply_error(struct ctl_peer *p, const char *path, const char *word,
		const char *text);
void reply_ok(struct ctl_peer *p, const char *op, const char *path);
void set_peer_owner(json_t *ev, const struct ctl_peer *p);

/* control_register.c */
void on_register(struct ctl_peer *p, const struct ctl_request *req, int *fds, int n_fds);
void on_unregister(struct ctl_peer *p, const struct ctl_request *req);
void registration_end(struct registration *r, const char *why);

/* control_rebind.c */
bool peer_holds(const struct ctl_peer *p, uint64_t sock_ino);
bool pidfd_exited(int pidfd);
uint64_t socket_inode_of_fd(int fd);
void on_adopted(struct ctl_peer *p, const struct ctl_request *req);
void rebind_failed(struct registration *r, const char *reason);

/* control_codec.c */
const char *heal_name(enum heal_mode h);

#endif
