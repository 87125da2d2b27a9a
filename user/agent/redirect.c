#include "redirect.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockwarden.h"
#include "redirect.skel.h"
#include "sockwarden.skel.h"
#include "shared/log.h"

/* enum bpf_attach_type's BPF_CGROUP_UNIX_CONNECT (Linux 6.7): Debian 12's
 * <linux/bpf.h> predates it; the kernel's BTF names it (checked below). */
#define SW_BPF_CGROUP_UNIX_CONNECT 49

/* The mount point of the cgroup v2 hierarchy: /sys/fs/cgroup, or
 * /sys/fs/cgroup/unified on hybrid hosts. */
static bool cgroup2_mountpoint(char *out, size_t len)
{
	char line[4096];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char mp[1024];
		const char *sep = strstr(line, " - ");

		if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
			continue;
		if (sscanf(line, "%*u %*u %*s %*s %1023s", mp) == 1 && strlen(mp) < len) {
			strcpy(out, mp);
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* Whether the kernel's BTF has an enumerator or a function of this name. */
static bool btf_has(const struct btf *btf, const char *name, bool func)
{
	if (func)
		return btf__find_by_name_kind(btf, name, BTF_KIND_FUNC) > 0;
	for (__u32 id = 1; id < btf__type_cnt(btf); id++) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		const struct btf_enum *e;

		if (!btf_is_enum(t))
			continue;
		e = btf_enum(t);
		for (__u16 i = 0; i < btf_vlen(t); i++)
			if (strcmp(btf__name_by_offset(btf, e[i].name_off), name) == 0)
				return e[i].val == SW_BPF_CGROUP_UNIX_CONNECT;
	}
	return false;
}

bool redirect_probe(struct redirect *r, uint64_t cap_eff)
{
	struct btf *btf;
	bool ok;

	memset(r, 0, sizeof(*r));
	r->map_fd = -1;
	/* a cgroup sock_addr program loads and attaches with CAP_NET_ADMIN
	 * (12) or CAP_SYS_ADMIN (21); without either the rest loads alone */
	if (!(cap_eff & (1ULL << 12)) && !(cap_eff & (1ULL << 21))) {
		snprintf(r->reason, sizeof(r->reason),
			 "no CAP_NET_ADMIN: cgroup programs cannot load");
		return false;
	}
	btf = btf__load_vmlinux_btf();
	if (!btf) {
		snprintf(r->reason, sizeof(r->reason), "no kernel BTF");
		return false;
	}
	ok = btf_has(btf, "BPF_CGROUP_UNIX_CONNECT", false);
	if (!ok)
		snprintf(r->reason, sizeof(r->reason),
			 "the kernel has no cgroup/connect_unix programs (Linux 6.7+)");
	else if (!(ok = btf_has(btf, "bpf_sock_addr_set_sun_path", true)))
		snprintf(r->reason, sizeof(r->reason),
			 "the kernel lacks the kfunc bpf_sock_addr_set_sun_path");
	else if (!(ok = cgroup2_mountpoint(r->cgroup, sizeof(r->cgroup))))
		snprintf(r->reason, sizeof(r->reason), "no cgroup v2 hierarchy is mounted");
	btf__free(btf);
	return ok;
}

/* The redirect's own object, sharing the main object's redirects and
 * counters; 0 or -errno with r->reason saying what failed. */
static int redirect_load(struct redirect *r, struct sockwarden_bpf *main)
{
	int rc;

	r->skel = redirect_bpf__open();
	if (!r->skel) {
		rc = -errno;
		snprintf(r->reason, sizeof(r->reason), "opening its BPF object failed: %s",
			 strerror(-rc));
		return rc;
	}
	r->skel->rodata->agent_mntns = main->rodata->agent_mntns;
	bpf_program__set_expected_attach_type(r->skel->progs.cg__connect_unix,
					      SW_BPF_CGROUP_UNIX_CONNECT);
	rc = bpf_map__reuse_fd(r->skel->maps.redirects, bpf_map__fd(main->maps.redirects));
	if (!rc)
		rc = bpf_map__reuse_fd(r->skel->maps.counters, bpf_map__fd(main->maps.counters));
	if (!rc)
		rc = redirect_bpf__load(r->skel);
	if (rc)
		snprintf(r->reason, sizeof(r->reason), "loading its program failed: %s",
			 strerror(-rc));
	return rc;
}

void redirect_start(struct redirect *r, struct sockwarden_bpf *main, bool wanted)
{
	int cg;

	r->map_fd = bpf_map__fd(main->maps.redirects);
	if (!wanted || redirect_load(r, main) != 0)
		return;
	cg = open(r->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0) {
		snprintf(r->reason, sizeof(r->reason), "cannot open %s: %s", r->cgroup,
			 strerror(errno));
		return;
	}
	/* a bpf_link, not bpf_prog_attach: a legacy attachment outlives the
	 * process, and a redirect without its agent is a misroute waiting */
	r->link = bpf_program__attach_cgroup(r->skel->progs.cg__connect_unix, cg);
	close(cg);
	if (!r->link) {
		snprintf(r->reason, sizeof(r->reason), "attaching at %s failed: %s", r->cgroup,
			 strerror(errno));
		return;
	}
	r->on = true;
	snprintf(r->reason, sizeof(r->reason), "cgroup/connect_unix at %s", r->cgroup);
}

void redirect_stop(struct redirect *r)
{
	bpf_link__destroy(r->link);
	r->link = NULL;
	redirect_bpf__destroy(r->skel);
	r->skel = NULL;
	r->on = false;
}

static void key_fill(struct sw_path_key *k, uint32_t mntns, const char *path)
{
	memset(k, 0, sizeof(*k));
	k->mntns = mntns;
	memcpy(k->path, path, strnlen(path, SW_SUN_PATH_LEN));
}

int redirect_arm(struct redirect *r, uint32_t mntns, const char *path, const char *guard)
{
	struct sw_redirect v = {0}, cur;
	struct sw_path_key k;
	size_t len = strlen(guard);

	if (!r->on)
		return -ENOTSUP;
	if (len == 0 || len >= SW_SUN_PATH_LEN || strlen(path) >= SW_SUN_PATH_LEN)
		return -ENAMETOOLONG;
	key_fill(&k, mntns, path);
	/* the kernel's own fields (lost, the count) of an entry armed before stay */
	if (bpf_map_lookup_elem(r->map_fd, &k, &cur) == 0 && cur.guard_len == len &&
	    memcmp(cur.guard, guard, len) == 0)
		return 0;
	v.guard_len = (uint32_t)len;
	memcpy(v.guard, guard, len);
	return bpf_map_update_elem(r->map_fd, &k, &v, BPF_ANY) ? -errno : 0;
}

void redirect_mark(struct redirect *r, uint32_t mntns, const char *path, bool lost)
{
	struct sw_redirect v;
	struct sw_path_key k;

	if (!r->on)
		return;
	key_fill(&k, mntns, path);
	if (bpf_map_lookup_elem(r->map_fd, &k, &v) != 0 || v.lost == (uint32_t)lost)
		return;
	/* the count the kernel keeps in the entry: a connect counted between
	 * the read and the write is lost to the count, never misrouted */
	v.lost = lost;
	bpf_map_update_elem(r->map_fd, &k, &v, BPF_EXIST);
}

uint64_t redirect_count(struct redirect *r, uint32_t mntns, const char *path, bool *lost)
{
	struct sw_redirect v;
	struct sw_path_key k;

	if (lost)
		*lost = false;
	if (!r->on)
		return 0;
	key_fill(&k, mntns, path);
	if (bpf_map_lookup_elem(r->map_fd, &k, &v) != 0)
		return 0;
	if (lost)
		*lost = v.lost;
	return v.redirected;
}

uint64_t redirect_disarm(struct redirect *r, uint32_t mntns, const char *path)
{
	struct sw_path_key k;
	uint64_t n = redirect_count(r, mntns, path, NULL);

	if (!r->on)
		return 0;
	key_fill(&k, mntns, path);
	bpf_map_delete_elem(r->map_fd, &k);
	return n;
}
