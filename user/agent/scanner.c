#include "scanner.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shared/clock.h"
#include "shared/log.h"
#include "shared/mountinfo.h"
#include "shared/nsroot.h"

/* The roots one gather opens, one per foreign mount namespace, closed at its
 * end: a scan looks at a container's paths inside the container. */
struct gather_roots {
	struct ns_root v[64];
	struct mount_table mounts[64]; /* each one's mount table, read once */
	bool have_mounts[64];
	struct mount_table own_mounts;
	bool have_own_mounts;
	size_t n;
};

static const struct ns_root *gather_root(struct gather_roots *g, uint32_t mntns, pid_t pid)
{
	int fd;

	for (size_t i = 0; i < g->n; i++)
		if (g->v[i].mntns == mntns)
			return g->v[i].fd >= 0 ? &g->v[i] : NULL;
	if (g->n == sizeof(g->v) / sizeof(g->v[0]))
		return NULL;
	fd = ns_root_open(pid, mntns);
	g->v[g->n] = (struct ns_root){ .mntns = mntns, .fd = fd < 0 ? -2 : fd };
	/* the table through the same holder, while its pidfd check holds */
	g->have_mounts[g->n] = fd >= 0 && mount_table_read(&g->mounts[g->n], pid) == 0 &&
			       ns_mntns_of(pid) == mntns;
	return fd >= 0 ? &g->v[g->n++] : (g->n++, NULL);
}

static void gather_roots_close(struct gather_roots *g)
{
	for (size_t i = 0; i < g->n; i++) {
		if (g->v[i].fd >= 0)
			close(g->v[i].fd);
		if (g->have_mounts[i])
			mount_table_free(&g->mounts[i]);
		g->have_mounts[i] = false;
	}
	if (g->have_own_mounts)
		mount_table_free(&g->own_mounts);
	g->have_own_mounts = false;
	g->n = 0;
}

/* The agent's own name for a file another namespace names path, if any. */
static char *gather_own_name(struct gather_roots *g, const struct ns_root *root,
			     const char *path, const struct unix_listener *l)
{
	size_t i = (size_t)(root - g->v);
	char name[SW_PATH_MAX];

	if (!g->have_mounts[i])
		return NULL;
	if (!g->have_own_mounts)
		g->have_own_mounts = mount_table_read(&g->own_mounts, 0) == 0;
	if (!g->have_own_mounts ||
	    !ns_own_name(&g->mounts[i], &g->own_mounts, path, l->vfs_dev, l->vfs_ino, name,
			 sizeof(name)))
		return NULL;
	return strdup(name);
}

/* Which namespace's endpoint a listener's path is, and whether the path
 * resolves to the listener there (DESIGN §2 "Namespaces"). */
static void item_place(struct scan_item *it, struct gather_roots *g, pid_t holder)
{
	uint32_t key = it->holder_mntns ? ns_key(it->holder_mntns) : 0;
	const struct ns_root *root;

	it->matches = listener_path_matches(&it->l, it->path);
	it->mntns = 0;
	/* the agent's own, or a file it sees at that very path (a socket in a
	 * /run every namespace shares, a directory bind-mounted in place) */
	if (!key || it->matches)
		return;
	it->mntns = key;
	root = gather_root(g, it->holder_mntns, holder);
	it->matches = root && ns_path_is(root, it->path, it->l.vfs_dev, it->l.vfs_ino);
	if (it->matches) {
		/* one file, two names: the agent's own is the endpoint's */
		char *own = gather_own_name(g, root, it->path, &it->l);

		if (own) {
			it->alias = it->path;
			it->alias_mntns = key;
			it->path = own;
			it->mntns = 0;
		}
	}
}


static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

void scan_gather(struct scan_result *out, struct discovery_source *src)
{
	struct listener_list ll = {0};
	struct gather_roots roots = { .n = 0 };

	memset(out, 0, sizeof(*out));
	out->started_ns = clock_mono_ns();
	out->err = discovery_source_list(src, &ll, &out->om, &out->stats);
	if (out->err)
		goto done;
	out->inos = calloc(ll.n ? ll.n : 1, sizeof(*out->inos));
	out->items = calloc(ll.n ? ll.n : 1, sizeof(*out->items));
	if (!out->inos || !out->items) {
		out->err = -ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < ll.n; i++)
		out->inos[i] = ll.v[i].sock_ino;
	qsort(out->inos, ll.n, sizeof(*out->inos), cmp_u64);
	for (size_t i = 0; i < ll.n; i++) {
		struct scan_item *it = &out->items[out->n];
		const struct owner_entry *oe;
		char path[SW_PATH_MAX];
		size_t n_owners;

		it->l = ll.v[i];
		oe = owner_map_find(&out->om, it->l.sock_ino, &n_owners);
		/* abstract or unbound: no path to lose */
		if (!listener_abs_path(&it->l, n_owners ? oe[0].o.pid : 0, path, sizeof(path)))
			continue;
		/* bound through a magic link: a name no one else can reach */
		if (ns_path_via_proc(path))
			continue;
		it->path = strdup(path);
		if (!it->path) {
			out->err = -ENOMEM;
			break;
		}
		/* the owner map's entries hold the owner; items point at the first */
		it->owner_entries = oe;
		it->n_owners = n_owners;
		it->holder_mntns = n_owners ? oe[0].o.mntns_ino : 0;
		if (n_owners && !it->holder_mntns)
			it->holder_mntns = ns_mntns_of(oe[0].o.pid);
		item_place(it, &roots, n_owners ? oe[0].o.pid : 0);
		out->n++;
	}
	gather_roots_close(&roots);
done:
	out->n_listeners = ll.n;
	listener_list_free(&ll);
	out->ended_ns = clock_mono_ns();
}

void scan_result_free(struct scan_result *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->items[i].path);
		free(r->items[i].alias);
	}
	free(r->items);
	free(r->inos);
	owner_map_free(&r->om);
	memset(r, 0, sizeof(*r));
}

static void *scanner_thread(void *arg)
{
	struct scanner *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		struct scan_result *r;

		while (!s->requested && !s->quit)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->quit)
			break;
		s->requested = false;
		s->in_progress = true;
		s->current_started_ns = clock_mono_ns();
		pthread_mutex_unlock(&s->mu);

		r = malloc(sizeof(*r));
		if (r) {
			s->gather(r, s->gather_ctx);
			r->started_ns = s->current_started_ns; /* as status showed it */
		}

		pthread_mutex_lock(&s->mu);
		s->in_progress = false;
		if (!r) {
			log_warn("reconcile scan: out of memory");
			continue;
		}
		s->done = r;
		/* the loop wakes on the eventfd and takes the result */
		if (eventfd_write(s->efd, 1) != 0)
			log_warn("reconcile scan: cannot wake the loop: %s", strerror(errno));
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void gather_host(struct scan_result *out, void *ctx)
{
	scan_gather(out, ctx);
}

int scanner_start(struct scanner *s, scan_gather_fn gather, void *ctx)
{
	int rc;

	memset(s, 0, sizeof(*s));
	s->gather = gather ? gather : gather_host;
	s->gather_ctx = ctx;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0)
		return -errno;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	rc = pthread_create(&s->thread, NULL, scanner_thread, s);
	if (rc) {
		close(s->efd);
		s->efd = -1;
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		return -rc;
	}
	s->running = true;
	return 0;
}

bool scanner_request(struct scanner *s)
{
	bool asked = false;

	if (!s->running)
		return false;
	pthread_mutex_lock(&s->mu);
	/* one scan at a time, and none while a result waits to be applied: a
	 * host whose scan outlasts the interval is scanned back to back */
	if (!s->requested && !s->in_progress && !s->done) {
		s->requested = true;
		asked = true;
		pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return asked;
}

struct scan_result *scanner_take(struct scanner *s)
{
	struct scan_result *r;
	eventfd_t v;

	if (!s->running)
		return NULL;
	(void)eventfd_read(s->efd, &v);
	pthread_mutex_lock(&s->mu);
	r = s->done;
	s->done = NULL;
	pthread_mutex_unlock(&s->mu);
	return r;
}

bool scanner_busy(struct scanner *s, uint64_t *started_ns)
{
	bool busy;

	if (!s->running)
		return false;
	pthread_mutex_lock(&s->mu);
	busy = s->in_progress;
	if (busy && started_ns)
		*started_ns = s->current_started_ns;
	pthread_mutex_unlock(&s->mu);
	return busy;
}

void scanner_stop(struct scanner *s)
{
	struct scan_result *r;

	if (!s->running)
		return;
	pthread_mutex_lock(&s->mu);
	s->quit = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	r = s->done;
	if (r) {
		scan_result_free(r);
		free(r);
	}
	close(s->efd);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	s->running = false;
}
