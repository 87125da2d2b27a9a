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
}

int bpf_agent_start(struct bpf_agent *a, enum attach_mode mode, bool any_path,
		    bool watch_all, ring_buffer_sample_fn on_record, void *ctx, char *err,
		    size_t errlen)
{
	char why[200];
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
	programs_select(a->skel, a->mode);
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
	ring_buffer__free(a->rb);
	sockwarden_bpf__destroy(a->skel);
	free(a->names.v);
	free(a->inodes);
	free(a->paths);
	memset(a, 0, sizeof(*a));
}

static int cmp_watch(const void *x, const void *y)
{
	const struct watch_entry *a = x, *b = y;

	return a->key < b->key ? -1 : a->key > b->key;
}

static int cmp_file_id(const void *x, const void *y)
{
	const struct sw_file_id *a = x, *b = y;

	if (a->dev != b->dev)
		return a->dev < b->dev ? -1 : 1;
	return a->ino < b->ino ? -1 : a->ino > b->ino;
}

static int cmp_path_key(const void *x, const void *y)
{
	return memcmp(x, y, sizeof(struct sw_path_key));
}

struct sync_build {
	struct watch_set names;
	struct sw_file_id *inodes;
	size_t n_inodes, cap_inodes;
	struct sw_path_key *paths;
	size_t n_paths, cap_paths;
	bool oom;
};

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

static void add_name(struct sync_build *b, const char *name, size_t len, uint32_t flags)
{
	b->names.v = grow(b->names.v, &b->names.cap, b->names.n, sizeof(*b->names.v), &b->oom);
	if (b->names.n < b->names.cap)
		b->names.v[b->names.n++] = (struct watch_entry){ name_hash(name, len), flags };
}

static void add_inode(struct sync_build *b, uint64_t dev, uint64_t ino)
{
	b->inodes = grow(b->inodes, &b->cap_inodes, b->n_inodes, sizeof(*b->inodes), &b->oom);
	if (b->n_inodes < b->cap_inodes) {
		/* the kernel compares s_dev, which is major << 20 | minor */
		uint32_t kdev = (uint32_t)((major(dev) << 20) | minor(dev));

		b->inodes[b->n_inodes++] = (struct sw_file_id){ .dev = kdev, .ino = ino };
	}
}

static void sync_visit(struct endpoint *e, void *ctx)
{
	struct sync_build *b = ctx;
	const char *p = e->path;

	/* connect() is followed on every known path, listener or not */
	if (path_fits_sun_path(p)) {
		b->paths = grow(b->paths, &b->cap_paths, b->n_paths, sizeof(*b->paths), &b->oom);
		if (b->n_paths < b->cap_paths) {
			memset(&b->paths[b->n_paths], 0, sizeof(*b->paths));
			memcpy(b->paths[b->n_paths].path, p, strlen(p));
			b->n_paths++;
		}
	}
	/* --watch paths are filtered by name before any listener is known */
	if (!e->has_listener && !(e->origin & EP_FROM_WATCH))
		return;
	/* every component: the socket's own name and its directories' names */
	for (const char *s = p + 1; *s;) {
		const char *end = strchr(s, '/');
		size_t len = end ? (size_t)(end - s) : strlen(s);

		add_name(b, s, len, end ? SW_WATCH_ANCESTOR : SW_WATCH_SOCKET);
		s += len;
		while (*s == '/')
			s++;
	}
	if (!e->has_listener)
		return;
	add_inode(b, e->l.vfs_dev, e->l.vfs_ino);
	for (size_t i = 1; i < e->n_dirs; i++)
		add_inode(b, e->dirs[i].dev, e->dirs[i].ino);
}

static size_t dedup(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	char *base = v;
	size_t o = 0;

	if (!n)
		return 0;
	qsort(v, n, size, cmp);
	for (size_t i = 1; i < n; i++)
		if (cmp(base + o * size, base + i * size) != 0)
			memmove(base + ++o * size, base + i * size, size);
	return o + 1;
}

/* How map_apply writes values: a u32 of flags stored in the array entries at
 * an offset, the constant 1, or a fresh sw_path_state. */
enum map_value { VALUE_FLAGS_AT, VALUE_ONE, VALUE_PATH_STATE };

/*
 * Applies the difference between the sorted `old` and `new` arrays to a map:
 * deletes what went, adds what came, rewrites only values that changed. The
 * kernel's own fields (a path's open_mask) are never overwritten.
 */
static void map_apply(int fd, const char *old, size_t n_old, const char *new,
		      size_t n_new, size_t size, enum map_value kind, size_t val_off,
		      int (*cmp)(const void *, const void *))
{
	size_t i = 0, j = 0;

	while (i < n_old || j < n_new) {
		int c = i >= n_old ? 1 : j >= n_new ? -1 : cmp(old + i * size, new + j * size);
		const char *key = new + j * size;
		__u32 flags = 1;

		if (c < 0) {
			bpf_map_delete_elem(fd, old + i * size);
			i++;
			continue;
		}
		if (kind == VALUE_FLAGS_AT)
			memcpy(&flags, key + val_off, sizeof(flags));
		if (c > 0) {
			if (kind == VALUE_PATH_STATE) {
				struct sw_path_state ps = { .flags = 1 };

				bpf_map_update_elem(fd, key, &ps, BPF_NOEXIST);
			} else {
				bpf_map_update_elem(fd, key, &flags, BPF_ANY);
			}
		} else {
			if (kind == VALUE_FLAGS_AT &&
			    memcmp(old + i * size + val_off, key + val_off, sizeof(flags)) != 0)
				bpf_map_update_elem(fd, key, &flags, BPF_ANY);
			i++;
		}
		j++;
	}
}

int bpf_agent_sync(struct bpf_agent *a, const struct endpoint_table *t)
{
	struct sync_build b = {0};
	size_t n;

	ep_foreach(t, sync_visit, &b);
	if (b.oom) {
		free(b.names.v);
		free(b.inodes);
		free(b.paths);
		return -ENOMEM;
	}
	/* one name may be a socket in one place and a directory in another;
	 * an empty table has no array at all, and qsort must not get NULL */
	if (b.names.n)
		qsort(b.names.v, b.names.n, sizeof(*b.names.v), cmp_watch);
	n = 0;
	for (size_t i = 0; i < b.names.n; i++) {
		if (n && b.names.v[n - 1].key == b.names.v[i].key)
			b.names.v[n - 1].flags |= b.names.v[i].flags;
		else
			b.names.v[n++] = b.names.v[i];
	}
	b.names.n = n;
	b.n_inodes = dedup(b.inodes, b.n_inodes, sizeof(*b.inodes), cmp_file_id);
	b.n_paths = dedup(b.paths, b.n_paths, sizeof(*b.paths), cmp_path_key);

	map_apply(bpf_map__fd(a->skel->maps.watched_names), (char *)a->names.v,
		  a->names.n, (char *)b.names.v, b.names.n, sizeof(struct watch_entry),
		  VALUE_FLAGS_AT, offsetof(struct watch_entry, flags), cmp_watch);
	map_apply(bpf_map__fd(a->skel->maps.watched_inodes), (char *)a->inodes,
		  a->n_inodes, (char *)b.inodes, b.n_inodes, sizeof(struct sw_file_id),
		  VALUE_ONE, 0, cmp_file_id);
	map_apply(bpf_map__fd(a->skel->maps.watched_paths), (char *)a->paths,
		  a->n_paths, (char *)b.paths, b.n_paths, sizeof(struct sw_path_key),
		  VALUE_PATH_STATE, 0, cmp_path_key);

	free(a->names.v);
	free(a->inodes);
	free(a->paths);
	a->names = b.names;
	a->inodes = b.inodes;
	a->n_inodes = b.n_inodes;
	a->paths = b.paths;
	a->n_paths = b.n_paths;
	return 0;
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

static void stat_key_fill(struct sw_connect_stat_key *k, const char *path, int err)
{
	memset(k, 0, sizeof(*k));
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
		    memcmp(cur.path.path, want.path.path, SW_SUN_PATH_LEN) != 0)
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
		    memcmp(cur.path.path, want.path.path, SW_SUN_PATH_LEN) != 0)
			continue;
		doomed = grow(doomed, &cap, n, sizeof(*doomed), &oom);
		if (n < cap)
			doomed[n++] = cur;
	}
	for (size_t i = 0; i < n; i++)
		bpf_map_delete_elem(fd, &doomed[i]);
	free(doomed);
}
