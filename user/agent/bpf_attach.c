#include "bpf_attach.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "sockwarden.skel.h"
#include "shared/log.h"
#include "shared/paths.h"
#include "shared/nsroot.h"

#define TRACEFS "/sys/kernel/tracing"

static uint64_t cap_effective(void)
{
	char line[256];
	uint64_t caps = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "CapEff:", 7) == 0)
			caps = strtoull(line + 7, NULL, 16);
	fclose(f);
	return caps;
}

#define CAP_BIT(n) (1ULL << (n))
#define CAP_SYS_ADMIN_BIT 21
#define CAP_PERFMON_BIT 38
#define CAP_BPF_BIT 39

int bpf_check_environment(char *why, size_t whylen)
{
	uint64_t caps = cap_effective();
	bool admin = caps & CAP_BIT(CAP_SYS_ADMIN_BIT);

	if (!admin && !((caps & CAP_BIT(CAP_BPF_BIT)) &&
			(caps & CAP_BIT(CAP_PERFMON_BIT)))) {
		snprintf(why, whylen,
			 "missing privilege: loading BPF programs needs CAP_BPF and "
			 "CAP_PERFMON (or CAP_SYS_ADMIN); run as root");
		return -EPERM;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
		snprintf(why, whylen,
			 "missing kernel BTF: /sys/kernel/btf/vmlinux is absent "
			 "(kernel built without CONFIG_DEBUG_INFO_BTF)");
		return -ENOTSUP;
	}
	return 0;
}

/* libbpf finds tracepoint ids under tracefs; a fresh machine has it unmounted. */
static int tracefs_ensure(char *why, size_t whylen)
{
	struct statfs sfs;

	if (statfs(TRACEFS, &sfs) == 0 && sfs.f_type == TRACEFS_MAGIC)
		return 0;
	if (mount("nodev", TRACEFS, "tracefs", 0, NULL) == 0) {
		log_info("mounted tracefs at %s", TRACEFS);
		return 0;
	}
	snprintf(why, whylen, "tracefs is not mounted at %s and mounting it failed: %s",
		 TRACEFS, strerror(errno));
	return -errno;
}

/* Loads and attaches a two-instruction fentry program: the cheapest honest
 * answer to "can fentry run here", asked once at start. */
bool bpf_fentry_usable(char *why, size_t whylen)
{
	struct bpf_insn insns[2] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	struct btf *vmlinux = btf__load_vmlinux_btf();
	int id, fd, link;

	if (!vmlinux) {
		snprintf(why, whylen, "no vmlinux BTF");
		return false;
	}
	id = btf__find_by_name_kind(vmlinux, "vfs_unlink", BTF_KIND_FUNC);
	btf__free(vmlinux);
	if (id < 0) {
		snprintf(why, whylen, "vfs_unlink is not in the kernel's BTF");
		return false;
	}
	LIBBPF_OPTS(bpf_prog_load_opts, opts,
		    .expected_attach_type = BPF_TRACE_FENTRY,
		    .attach_btf_id = (unsigned int)id);
	fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, "sw_probe", "GPL", insns, 2, &opts);
	if (fd < 0) {
		snprintf(why, whylen, "fentry programs cannot load here (%s)",
			 strerror(errno));
		return false;
	}
	link = bpf_link_create(fd, 0, BPF_TRACE_FENTRY, NULL);
	if (link < 0) {
		snprintf(why, whylen, "fentry programs load but cannot attach (%s)",
			 strerror(errno));
		close(fd);
		return false;
	}
	close(link);
	close(fd);
	snprintf(why, whylen, "fentry programs load and attach on this kernel");
	return true;
}

static void programs_select(struct sockwarden_bpf *s, enum attach_mode mode)
{
	bool fentry = mode == MODE_FENTRY;

	bpf_program__set_autoload(s->progs.fentry__vfs_unlink, fentry);
	bpf_program__set_autoload(s->progs.fexit__vfs_unlink, fentry);
	bpf_program__set_autoload(s->progs.fentry__vfs_rename, fentry);
	bpf_program__set_autoload(s->progs.fexit__vfs_rename, fentry);
	bpf_program__set_autoload(s->progs.fexit__unix_stream_connect, fentry);
	bpf_program__set_autoload(s->progs.fexit__unix_dgram_connect, fentry);

	bpf_program__set_autoload(s->progs.tp__enter_unlink, !fentry);
	bpf_program__set_autoload(s->progs.tp__enter_unlinkat, !fentry);
	bpf_program__set_autoload(s->progs.tp__enter_rename, !fentry);
	bpf_program__set_autoload(s->progs.tp__enter_renameat, !fentry);
	bpf_program__set_autoload(s->progs.tp__enter_renameat2, !fentry);
	bpf_program__set_autoload(s->progs.tp__exit_unlink, !fentry);
	bpf_program__set_autoload(s->progs.tp__exit_unlinkat, !fentry);
	bpf_program__set_autoload(s->progs.tp__exit_rename, !fentry);
	bpf_program__set_autoload(s->progs.tp__exit_renameat, !fentry);
	bpf_program__set_autoload(s->progs.tp__exit_renameat2, !fentry);
	bpf_program__set_autoload(s->progs.tp__enter_connect, !fentry);
	bpf_program__set_autoload(s->progs.tp__exit_connect, !fentry);

	/* discovery's iterator loads on its own (shared/discovery_iter.h):
	 * a kernel that refuses it must not fail the agent's load */
	bpf_program__set_autoload(s->progs.discover__task_file, false);
}

int bpf_agent_start(struct bpf_agent *a, enum attach_mode mode, bool any_path,
		    bool watch_all, bool redirect, ring_buffer_sample_fn on_record, void *ctx,
		    char *err, size_t errlen)
{
	char why[200];
	bool redirect_ok;
	int rc;

	memset(a, 0, sizeof(*a));
	rc = bpf_check_environment(err, errlen);
	if (rc)
		return rc;
	rc = tracefs_ensure(err, errlen);
	if (rc)
		return rc;
	if (mode == MODE_AUTO) {
		bool ok = bpf_fentry_usable(why, sizeof(why));

		a->mode = ok ? MODE_FENTRY : MODE_TRACEPOINT;
		snprintf(a->mode_reason, sizeof(a->mode_reason), "auto: %s", why);
	} else if (mode == MODE_FENTRY) {
		if (!bpf_fentry_usable(why, sizeof(why))) {
			snprintf(err, errlen, "--mode fentry: %s", why);
			return -ENOTSUP;
		}
		a->mode = mode;
		snprintf(a->mode_reason, sizeof(a->mode_reason), "requested");
	} else {
		a->mode = mode;
		snprintf(a->mode_reason, sizeof(a->mode_reason), "requested");
	}

	a->skel = sockwarden_bpf__open();
	if (!a->skel) {
		rc = -errno;
		snprintf(err, errlen, "opening the BPF object failed: %s", strerror(errno));
		return rc;
	}
	a->skel->rodata->any_path = any_path;
	a->skel->rodata->watch_all = watch_all;
	a->skel->rodata->agent_mntns = ns_self_mntns();
	programs_select(a->skel, a->mode);
	/* probed before the load: a kernel without it loads everything else */
	redirect_ok = redirect && redirect_probe(&a->redirect, cap_effective());
	if (!redirect)
		snprintf(a->redirect.reason, sizeof(a->redirect.reason),
			 "turned off (--no-redirect, or redirect = no)");
	rc = sockwarden_bpf__load(a->skel);
	if (rc) {
		snprintf(err, errlen, "loading the BPF programs (%s mode) failed: %s",
			 attach_mode_name(a->mode), strerror(-rc));
		goto fail;
	}
	rc = sockwarden_bpf__attach(a->skel);
	if (rc) {
		snprintf(err, errlen, "attaching the BPF programs (%s mode) failed: %s",
			 attach_mode_name(a->mode), strerror(-rc));
		goto fail;
	}
	redirect_start(&a->redirect, a->skel, redirect_ok);
	a->rb = ring_buffer__new(bpf_map__fd(a->skel->maps.events), on_record, ctx, NULL);
	if (!a->rb) {
		rc = -errno;
		snprintf(err, errlen, "ring buffer setup failed: %s", strerror(errno));
		goto fail;
	}
	return 0;
fail:
	bpf_agent_stop(a);
	return rc ? rc : -EINVAL;
}

void bpf_agent_stop(struct bpf_agent *a)
{
	redirect_stop(&a->redirect);
	ring_buffer__free(a->rb);
	sockwarden_bpf__destroy(a->skel);
	memset(a, 0, sizeof(*a));
}

static void *grow(void *v, size_t *cap, size_t n, size_t size, bool *oom)
{
	if (n < *cap)
		return v;
	size_t nc = *cap ? *cap * 2 : 256;
	void *nv = realloc(v, nc * size);

	if (!nv) {
		*oom = true;
		return v;
	}
	*cap = nc;
	return nv;
}

/* ----- the watch maps, kept in step with the endpoint table ----- */

/*
 * Every endpoint counts what it needs in the kernel's filters: its path in
 * watched_paths; with a listener or a --watch, its names (the socket's own
 * and its directories') in watched_names; with a listener, the inodes of its
 * socket file and recorded directories in watched_inodes. A key is in a map
 * while anything counts it, with the flags of what counts it. A sync holds
 * each endpoint against what it counted at the last one and applies the
 * difference, so a scan that changed nothing costs a walk of the table and no
 * system call. A directory's name is counted once for all the endpoints below
 * it (its node's users), the inodes of a record of directories once for all
 * the endpoints that share it (its users).
 */

/* A sync (or a removal) under way: the agent, the table, and whether a
 * count could not be made. */
struct sync_ctx {
	struct bpf_agent *a;
	struct endpoint_table *t;
	bool oom;
};

enum { AS_SOCKET, AS_ANCESTOR };

/* A watch map's fd; -1 once the maps are gone (bpf_agent_stop), when what
 * leaves the table still gives back what it counted, with nothing to apply. */
#define MAP_FD(x, map) ((x)->a->skel ? bpf_map__fd((x)->a->skel->maps.map) : -1)

static uint64_t id_hash(const struct sw_file_id *id)
{
	return (id->ino * 0x9e3779b97f4a7c15ULL) ^ id->dev;
}

/* The count of a key, made (with no users) when `make`; NULL if absent. */
static struct ep_key_count *count_find(struct sync_ctx *x, struct ep_intern *set,
				       const struct sw_file_id *id, bool make)
{
	uint64_t h = id_hash(id);
	struct ep_key_count *c;

	for (struct ep_link *l = ep_intern_chain(set, h); l; l = l->next) {
		c = (struct ep_key_count *)l;
		if (c->id.ino == id->ino && c->id.dev == id->dev)
			return c;
	}
	if (!make)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		x->oom = true;
		return NULL;
	}
	c->id = *id;
	c->link.hash = h;
	ep_intern_add(set, &c->link);
	return c;
}

static void count_drop(struct ep_intern *set, struct ep_key_count *c)
{
	ep_intern_del(set, &c->link);
	free(c);
}

static uint32_t name_flags(const struct ep_key_count *c)
{
	return (c->users[AS_SOCKET] ? SW_WATCH_SOCKET : 0) |
	       (c->users[AS_ANCESTOR] ? SW_WATCH_ANCESTOR : 0);
}

/* One more (delta 1) or one less (-1) user of a name; the map follows the
 * flags. */
static void name_count(struct sync_ctx *x, const char *name, size_t len, int as, int delta)
{
	struct sw_file_id key = { .ino = name_hash(name, len) };
	struct ep_key_count *c = count_find(x, &x->t->counted_names, &key, delta > 0);
	int fd = MAP_FD(x, watched_names);
	uint32_t before, after;
	__u64 h = key.ino;

	if (!c || (delta < 0 && !c->users[as]))
		return;
	before = name_flags(c);
	c->users[as] += (uint32_t)delta;
	after = name_flags(c);
	if (after == before)
		return;
	if (after) {
		if (fd >= 0)
			bpf_map_update_elem(fd, &h, &after, BPF_ANY);
	} else {
		if (fd >= 0)
			bpf_map_delete_elem(fd, &h);
		count_drop(&x->t->counted_names, c);
	}
}

static void inode_count(struct sync_ctx *x, const struct sw_file_id *id, int delta)
{
	struct ep_key_count *c = count_find(x, &x->t->counted_inodes, id, delta > 0);
	int fd = MAP_FD(x, watched_inodes);
	__u32 one = 1;

	if (!c || (delta < 0 && !c->users[0]))
		return;
	c->users[0] += (uint32_t)delta;
	if (delta > 0 && c->users[0] == 1 && fd >= 0)
		bpf_map_update_elem(fd, id, &one, BPF_ANY);
	if (!c->users[0]) {
		if (fd >= 0)
			bpf_map_delete_elem(fd, id);
		count_drop(&x->t->counted_inodes, c);
	}
}

/* the kernel compares s_dev, which is major << 20 | minor */
static struct sw_file_id kernel_id(uint64_t dev, uint64_t ino)
{
	return (struct sw_file_id){ .dev = (uint32_t)((major(dev) << 20) | minor(dev)),
				    .ino = ino };
}

static void path_count(struct sync_ctx *x, uint32_t mntns, const char *path, int delta)
{
	int fd = MAP_FD(x, watched_paths);
	struct sw_path_key k;

	if (fd < 0)
		return;
	memset(&k, 0, sizeof(k));
	k.mntns = mntns;
	memcpy(k.path, path, strlen(path));
	if (delta > 0) {
		struct sw_path_state ps = { .flags = 1 };

		/* the kernel's own fields (open_mask) of a path it added stay */
		bpf_map_update_elem(fd, &k, &ps, BPF_NOEXIST);
	} else {
		bpf_map_delete_elem(fd, &k);
	}
}

/* The holder's other name for e's file, in path_aliases: a connect by it
 * from its namespace counts on e. *have is what the map holds for e. */
static void alias_count(struct sync_ctx *x, const struct endpoint *e, bool path,
			struct sw_path_key *have)
{
	int fd = MAP_FD(x, path_aliases);
	struct sw_path_key want = {0}, to = {0};

	if (e->alias && path && !e->mntns && path_fits_sun_path(e->alias)) {
		want.mntns = e->alias_mntns;
		memcpy(want.path, e->alias, strlen(e->alias));
	}
	if (memcmp(&want, have, sizeof(want)) == 0 || fd < 0)
		return;
	if (have->mntns)
		bpf_map_delete_elem(fd, have);
	memset(have, 0, sizeof(*have));
	if (!want.mntns)
		return;
	memcpy(to.path, e->path, strlen(e->path));
	if (bpf_map_update_elem(fd, &want, &to, BPF_ANY) == 0)
		*have = want;
}

/* A directory's own name: its last component ("/run/app" -> "app"). */
static const char *dir_name(const struct ep_dir_node *d, size_t *len)
{
	size_t start = d->parent->len == 1 ? 1 : d->parent->len + 1;

	*len = d->len - start;
	return d->path + start;
}

/* The endpoint's names: the socket's own, the directories deeper than its
 * nodes go (EP_MAX_DEPTH), and its directories' through their nodes. */
static void names_count(struct sync_ctx *x, const struct endpoint *e, int delta)
{
	const char *s = e->path + (e->dir ? e->dir->len : 1);

	while (*s == '/')
		s++;
	while (*s) {
		const char *end = strchr(s, '/');
		size_t len = end ? (size_t)(end - s) : strlen(s);

		name_count(x, s, len, end ? AS_ANCESTOR : AS_SOCKET, delta);
		s += len;
		while (*s == '/')
			s++;
	}
	for (struct ep_dir_node *d = e->dir; d && d->depth > 0; d = d->parent) {
		size_t len;
		const char *name = dir_name(d, &len);

		if (delta > 0 && d->name_users++ == 0)
			name_count(x, name, len, AS_ANCESTOR, 1);
		else if (delta < 0 && d->name_users && --d->name_users == 0)
			name_count(x, name, len, AS_ANCESTOR, -1);
	}
}

/* The inodes a record's directories have but "/"'s: counted once for all
 * the endpoints counting the record, which they hold while they do. */
static void dirs_count(struct sync_ctx *x, struct ep_dir_rec *r, int delta)
{
	if (!r)
		return;
	if (delta > 0) {
		ep_dir_rec_hold(r);
		if (r->ino_users++)
			return;
	} else if (--r->ino_users) {
		ep_dir_rec_put(x->t, r);
		return;
	}
	for (size_t i = 1; i < r->n; i++) {
		struct sw_file_id id = kernel_id(r->d[i].dev, r->d[i].ino);

		inode_count(x, &id, delta);
	}
	if (delta < 0)
		ep_dir_rec_put(x->t, r);
}

/* An entry leaves the table: what it counted goes. */
static void sync_forget(struct endpoint *e, void *ctx)
{
	struct sync_ctx x = { .a = ctx, .t = e->table };
	struct ep_counted *c = &e->counted;

	if (c->path)
		path_count(&x, e->mntns, e->path, -1);
	if (c->alias.mntns && MAP_FD(&x, path_aliases) >= 0)
		bpf_map_delete_elem(MAP_FD(&x, path_aliases), &c->alias);
	if (c->names)
		names_count(&x, e, -1);
	if (c->file)
		inode_count(&x, &c->file_id, -1);
	dirs_count(&x, c->dirs, -1);
	memset(c, 0, sizeof(*c));
}

static void sync_endpoint(struct endpoint *e, void *ctx)
{
	struct sync_ctx *x = ctx;
	struct ep_counted *c = &e->counted;
	/* connect() is followed on every known path, listener or not */
	bool path = path_fits_sun_path(e->path);
	/* --watch paths are filtered by name before any listener is known */
	bool names = e->has_listener || (e->origin & EP_FROM_WATCH);
	bool file = e->has_listener;
	struct sw_file_id id = file ? kernel_id(e->l.vfs_dev, e->l.vfs_ino)
				    : (struct sw_file_id){0};
	struct ep_dir_rec *dirs = e->has_listener && e->n_dirs > 1 ? e->dirs : NULL;

	x->t = e->table;
	if (x->t->on_remove_ctx != x->a) {
		/* from the first sync on, removals are told */
		x->t->on_remove = sync_forget;
		x->t->on_remove_ctx = x->a;
	}
	if (path != c->path)
		path_count(x, e->mntns, e->path, path ? 1 : -1);
	alias_count(x, e, path, &c->alias);
	if (names != c->names)
		names_count(x, e, names ? 1 : -1);
	if (file != c->file || id.dev != c->file_id.dev || id.ino != c->file_id.ino) {
		/* the new first: a key both count stays */
		if (file)
			inode_count(x, &id, 1);
		if (c->file)
			inode_count(x, &c->file_id, -1);
	}
	if (dirs != c->dirs) {
		dirs_count(x, dirs, 1);
		dirs_count(x, c->dirs, -1);
	}
	*c = (struct ep_counted){ .path = path, .alias = c->alias, .names = names, .file = file,
				  .file_id = id, .dirs = dirs };
}

/*
 * The table's entries count the keys they need in the filters (their
 * `counted`, the directories' and records' users, the table's counted_*
 * sets); a sync holds each entry against what it counted at the last one and
 * applies the difference.
 */
int bpf_agent_sync(struct bpf_agent *a, const struct endpoint_table *t)
{
	struct sync_ctx x = { .a = a };

	ep_foreach(t, sync_endpoint, &x);
	return x.oom ? -ENOMEM : 0;
}

uint64_t bpf_agent_counter(struct bpf_agent *a, enum sw_counter c)
{
	int ncpu = libbpf_num_possible_cpus();
	__u32 key = c;
	uint64_t sum = 0;

	if (ncpu <= 0)
		return 0;
	__u64 vals[ncpu];
	if (bpf_map_lookup_elem(bpf_map__fd(a->skel->maps.counters), &key, vals))
		return 0;
	for (int i = 0; i < ncpu; i++)
		sum += vals[i];
	return sum;
}

/* key: the endpoint's key (ep_key_format), which names its namespace */
static void stat_key_fill(struct sw_connect_stat_key *k, const char *key, int err)
{
	const char *path = key;
	uint32_t mntns = 0;

	memset(k, 0, sizeof(*k));
	if (!ep_key_parse(key, &mntns, &path))
		path = key;
	k->path.mntns = mntns;
	memcpy(k->path.path, path, strnlen(path, SW_SUN_PATH_LEN));
	k->err = (__u32)err;
}

int bpf_agent_connect_stat(struct bpf_agent *a, const char *path, int err_index,
			   struct sw_connect_stat *out)
{
	struct sw_connect_stat_key k;

	stat_key_fill(&k, path, err_index);
	if (bpf_map_lookup_elem(bpf_map__fd(a->skel->maps.connect_stats), &k, out))
		return -errno;
	return 0;
}

size_t bpf_agent_clients(struct bpf_agent *a, const char *path, int err_index,
			 uint32_t gen, struct sw_client_key *keys,
			 struct sw_client_stat *vals, size_t max)
{
	int fd = bpf_map__fd(a->skel->maps.connect_clients);
	struct sw_client_key cur, next;
	struct sw_connect_stat_key want;
	size_t n = 0;
	void *prev = NULL;

	stat_key_fill(&want, path, err_index);
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		struct sw_client_stat v;

		cur = next;
		prev = &cur;
		if (cur.gen != gen || cur.err != want.err ||
		    memcmp(&cur.path, &want.path, sizeof(cur.path)) != 0)
			continue;
		if (bpf_map_lookup_elem(fd, &cur, &v))
			continue;
		/* keep the `max` largest, sorted by failures descending */
		size_t pos = n < max ? n : max;
		while (pos > 0 && vals[pos - 1].failures < v.failures)
			pos--;
		if (pos >= max)
			continue;
		size_t last = n < max ? n : max - 1;
		memmove(&keys[pos + 1], &keys[pos], (last - pos) * sizeof(*keys));
		memmove(&vals[pos + 1], &vals[pos], (last - pos) * sizeof(*vals));
		keys[pos] = cur;
		vals[pos] = v;
		if (n < max)
			n++;
	}
	return n;
}

void bpf_agent_clients_forget(struct bpf_agent *a, const char *path,
			      int err_index, uint32_t gen)
{
	int fd = bpf_map__fd(a->skel->maps.connect_clients);
	struct sw_client_key cur, next, *doomed = NULL;
	struct sw_connect_stat_key want;
	size_t n = 0, cap = 0;
	bool oom = false;
	void *prev = NULL;

	stat_key_fill(&want, path, err_index);
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		cur = next;
		prev = &cur;
		if (cur.gen > gen || cur.err != want.err ||
		    memcmp(&cur.path, &want.path, sizeof(cur.path)) != 0)
			continue;
		doomed = grow(doomed, &cap, n, sizeof(*doomed), &oom);
		if (n < cap)
			doomed[n++] = cur;
	}
	for (size_t i = 0; i < n; i++)
		bpf_map_delete_elem(fd, &doomed[i]);
	free(doomed);
}
