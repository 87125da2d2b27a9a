#include "attribution.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The ids every runtime here prints: 32 random bytes in lowercase hex. */
#define CONTAINER_ID_HEX 64
/* 8-4-4-4-12 */
#define UUID_CHARS 36
/* A static pod's uid is the kubelet's hash of its manifest, not a UUID. */
#define STATIC_POD_UID_HEX 32
/* /proc/PID/cgroup: a line per hierarchy (about a dozen), each path under PATH_MAX */
#define PROC_CGROUP_MAX (1 << 20)

/* A component of a cgroup path; it points into the path and is not NUL-terminated. */
struct comp {
	const char *s;
	size_t len;
};

static bool has_prefix(const char *s, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	return len >= n && memcmp(s, lit, n) == 0;
}

static bool has_suffix(const char *s, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	return len >= n && memcmp(s + len - n, lit, n) == 0;
}

static bool comp_is(const struct comp *c, const char *lit)
{
	return c->len == strlen(lit) && memcmp(c->s, lit, c->len) == 0;
}

static bool is_lower_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool is_container_id(const char *s, size_t len)
{
	return len == CONTAINER_ID_HEX && is_lower_hex(s, len);
}

static void copy_field(char *dst, size_t dstlen, const char *s, size_t len)
{
	if (len >= dstlen)
		len = dstlen - 1;
	memcpy(dst, s, len);
	dst[len] = 0;
}

/*
 * The component that ends at *end, trailing slashes skipped; *end moves to
 * its first byte, so that calling again yields its parent. Walking a path
 * this way never copies it, so its length does not matter.
 */
static bool prev_comp(const char *path, const char **end, struct comp *c)
{
	const char *e = *end, *b;

	while (e > path && e[-1] == '/')
		e--;
	if (e == path)
		return false;
	b = e;
	while (b > path && b[-1] != '/')
		b--;
	c->s = b;
	c->len = (size_t)(e - b);
	*end = b;
	return true;
}

/* Whether only slashes come before s: the component at s is the path's first. */
static bool is_first(const char *path, const char *s)
{
	while (s > path && s[-1] == '/')
		s--;
	return s == path;
}

/*
 * A pod uid as the kubelet writes it into a cgroup name: a UUID whose dashes
 * are `sep`, or a static pod's 32 hex. Written to out with dashes; out is
 * left alone when s is no uid.
 */
static bool pod_uid_parse(const char *s, size_t len, char sep, char out[ATTR_POD_LEN])
{
	if (len == STATIC_POD_UID_HEX && is_lower_hex(s, len)) {
		copy_field(out, ATTR_POD_LEN, s, len);
		return true;
	}
	if (len != UUID_CHARS)
		return false;
	for (size_t i = 0; i < len; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != sep : !is_lower_hex(s + i, 1))
			return false;
	}
	for (size_t i = 0; i < len; i++)
		out[i] = (char)(s[i] == sep ? '-' : s[i]);
	out[len] = 0;
	return true;
}

/* cgroupfs driver: "pod<uid>", the uid with its dashes. */
static bool pod_of_cgroupfs(const struct comp *c, char out[ATTR_POD_LEN])
{
	return has_prefix(c->s, c->len, "pod") &&
	       pod_uid_parse(c->s + 3, c->len - 3, '-', out);
}

/*
 * systemd driver: "kubepods[-<qos>]-pod<uid>.slice". A dash is systemd's
 * slice nesting, so the kubelet writes the uid's dashes as underscores. The
 * "kubepods" segment need not come first: kind's nodes, for one, name them
 * "kubelet-kubepods-besteffort-pod<uid>.slice".
 */
static bool pod_of_systemd(const struct comp *c, char out[ATTR_POD_LEN])
{
	size_t n, d, seg;
	bool kubepods = false;

	if (!has_suffix(c->s, c->len, ".slice"))
		return false;
	n = c->len - strlen(".slice");
	for (d = n; d > 0 && c->s[d - 1] != '-'; d--)
		;
	if (d == 0 || !has_prefix(c->s + d, n - d, "pod"))
		return false;
	/* the segments before the pod's, "-" apart */
	for (size_t i = 0; i < d - 1; i = seg + 1) {
		for (seg = i; seg < d - 1 && c->s[seg] != '-'; seg++)
			;
		if (seg - i == strlen("kubepods") && memcmp(c->s + i, "kubepods", seg - i) == 0)
			kubepods = true;
	}
	return kubepods && pod_uid_parse(c->s + d + 3, n - d - 3, '_', out);
}

static bool pod_of(const struct comp *c, char out[ATTR_POD_LEN])
{
	return pod_of_cgroupfs(c, out) || pod_of_systemd(c, out);
}

/*
 * A containerd namespace as containerd validates them (alphanumerics, single
 * '.', '_' or '-' between them, "default", "k8s.io", "moby"), and not a
 * systemd unit or slice, whose names have the same shape.
 */
static bool is_containerd_namespace(const struct comp *c)
{
	if (c->len == 0 || has_suffix(c->s, c->len, ".slice") ||
	    has_suffix(c->s, c->len, ".scope") || has_suffix(c->s, c->len, ".service"))
		return false;
	for (size_t i = 0; i < c->len; i++) {
		char ch = c->s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			     (ch >= '0' && ch <= '9');

		if (alnum)
			continue;
		if ((ch != '.' && ch != '_' && ch != '-') || i == 0 || i + 1 == c->len)
			return false;
		if (c->s[i + 1] == '.' || c->s[i + 1] == '_' || c->s[i + 1] == '-')
			return false;
	}
	return true;
}

/* Components that are a container's whole cgroup: <prefix><64 hex><suffix>. */
static const struct {
	const char *prefix, *suffix, *runtime;
} wrapped[] = {
	{ "docker-", ".scope", "docker" },
	{ "libpod-", ".scope", "podman" },
	{ "libpod-", "", "podman" },			/* cgroupfs: /libpod_parent/libpod-<id> */
	{ "crio-", ".scope", "cri-o" },
	{ "crio-", "", "cri-o" },			/* cgroupfs: .../pod<uid>/crio-<id> */
	{ "cri-containerd-", ".scope", "containerd" },
	{ "nerdctl-", ".scope", "containerd" },		/* nerdctl on the systemd driver */
};

/*
 * The runtime of a component that is a bare 64-hex id, by its parent, or
 * NULL. Under a cgroupfs pod directory the name alone cannot tell containerd
 * from cri-o or dockershim (all three write /kubepods/<qos>/pod<uid>/<id>):
 * it says "containerd", today's usual runtime there. Under libpod_parent a
 * bare id is a podman pod, not a container.
 */
static const char *bare_id_runtime(const char *path, const struct comp *parent)
{
	char pod[ATTR_POD_LEN];

	if (!parent)
		return NULL;
	if (comp_is(parent, "docker"))
		return "docker";
	if (comp_is(parent, "crio"))
		return "cri-o";
	if (comp_is(parent, "libpod_parent"))
		return NULL;
	if (pod_of_cgroupfs(parent, pod))
		return "containerd";
	/* plain containerd (ctr, nerdctl on cgroupfs): /<namespace>/<id> */
	if (is_first(path, parent->s) && is_containerd_namespace(parent))
		return "containerd";
	return NULL;
}

/* Whether c is a container's cgroup; if so it fills out's id and runtime. */
static bool container_of(const char *path, const struct comp *c, const struct comp *parent,
			 struct attribution *out)
{
	const char *runtime = NULL;
	const char *id = NULL;

	for (size_t i = 0; i < sizeof(wrapped) / sizeof(*wrapped) && !runtime; i++) {
		size_t pl = strlen(wrapped[i].prefix), sl = strlen(wrapped[i].suffix);

		/* "libpod-conmon-<id>.scope" and "crio-conmon-<id>.scope" fail here:
		 * "conmon-<id>" is no id, and conmon is not the container */
		if (c->len != pl + CONTAINER_ID_HEX + sl ||
		    !has_prefix(c->s, c->len, wrapped[i].prefix) ||
		    !has_suffix(c->s, c->len, wrapped[i].suffix) ||
		    !is_container_id(c->s + pl, CONTAINER_ID_HEX))
			continue;
		runtime = wrapped[i].runtime;
		id = c->s + pl;
	}
	if (!runtime && is_container_id(c->s, c->len)) {
		runtime = bare_id_runtime(path, parent);
		id = c->s;
	}
	if (!runtime)
		return false;
	copy_field(out->container_id, sizeof(out->container_id), id, CONTAINER_ID_HEX);
	copy_field(out->runtime, sizeof(out->runtime), runtime, strlen(runtime));
	return true;
}

/* A systemd unit that can hold processes; one too long for out is not named. */
static bool is_unit(const struct comp *c)
{
	return c->len < ATTR_UNIT_LEN &&
	       ((c->len > strlen(".service") && has_suffix(c->s, c->len, ".service")) ||
		(c->len > strlen(".scope") && has_suffix(c->s, c->len, ".scope")));
}

bool attribution_from_cgroup(const char *cgroup_path, struct attribution *out)
{
	char pod_below[ATTR_POD_LEN] = "";
	const char *end;
	struct comp c;
	bool have, container = false;

	memset(out, 0, sizeof(*out));
	/* the kernel writes absolute paths only */
	if (!cgroup_path || cgroup_path[0] != '/')
		return false;
	end = cgroup_path + strlen(cgroup_path);
	/* deepest first, so that the innermost container wins */
	have = prev_comp(cgroup_path, &end, &c);
	while (have) {
		const char *pend = end;
		struct comp parent;
		bool have_parent = prev_comp(cgroup_path, &pend, &parent);

		if (container) {
			/* the pod is the one that holds the container */
			if (pod_of(&c, out->pod_uid))
				break;
		} else if (container_of(cgroup_path, &c, have_parent ? &parent : NULL, out)) {
			container = true;
		} else {
			if (!pod_below[0])
				pod_of(&c, pod_below);
			if (!out->unit[0] && is_unit(&c))
				copy_field(out->unit, sizeof(out->unit), c.s, c.len);
		}
		c = parent;
		end = pend;
		have = have_parent;
	}
	if (container) {
		/* a unit inside a container (its init.scope) is the container's own */
		out->unit[0] = 0;
	} else {
		memcpy(out->pod_uid, pod_below, sizeof(out->pod_uid));
	}
	return container || out->pod_uid[0] || out->unit[0];
}

/* Whether a comma-separated controller list names `want`. */
static bool lists_controller(const char *s, size_t len, const char *want)
{
	size_t wl = strlen(want);

	while (len > 0) {
		const char *comma = memchr(s, ',', len);
		size_t n = comma ? (size_t)(comma - s) : len;

		if (n == wl && memcmp(s, want, wl) == 0)
			return true;
		if (!comma)
			break;
		len -= n + 1;
		s = comma + 1;
	}
	return false;
}

bool proc_cgroup_parse(const char *text, char *out, size_t len)
{
	static const char deleted[] = " (deleted)";
	const char *v2 = NULL, *sd = NULL, *pick;
	size_t v2len = 0, sdlen = 0, picklen;
	const char *line = text;

	if (len > 0)
		out[0] = 0;
	if (!text)
		return false;
	/* "hierarchy-id:controllers:path"; a path may hold ':' but never '\n'
	 * (cgroup_mkdir() refuses it) */
	while (*line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		const char *c1 = memchr(line, ':', n);
		const char *c2 = c1 ? memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - line)) : NULL;

		if (c2) {
			const char *p = c2 + 1;
			size_t pl = n - (size_t)(p - line);

			if (!v2 && c1 - line == 1 && line[0] == '0' && c2 == c1 + 1) {
				/* the kernel marks a removed v2 cgroup an exiting task still names */
				if (has_suffix(p, pl, deleted))
					pl -= strlen(deleted);
				v2 = p;
				v2len = pl;
			} else if (!sd && lists_controller(c1 + 1, (size_t)(c2 - c1 - 1), "name=systemd")) {
				sd = p;
				sdlen = pl;
			}
		}
		line += n + (nl ? 1 : 0);
	}
	if (v2 && (v2len == 0 || v2[0] != '/'))
		v2 = NULL;
	if (sd && (sdlen == 0 || sd[0] != '/'))
		sd = NULL;
	/* on a hybrid host the v2 line says "/" of a process that lives in v1 */
	if (v2 && !(v2len == 1 && sd)) {
		pick = v2;
		picklen = v2len;
	} else if (sd) {
		pick = sd;
		picklen = sdlen;
	} else {
		return false;
	}
	if (picklen >= len)
		return false;
	memcpy(out, pick, picklen);
	out[picklen] = 0;
	return true;
}

/* All of /proc/PID/cgroup, NUL-terminated and malloc'd, or NULL. */
static char *read_proc_cgroup(pid_t pid)
{
	char p[40];
	size_t cap = 4096, n = 0;
	char *buf;
	int fd;

	if (pid <= 0)
		return NULL;
	snprintf(p, sizeof(p), "/proc/%d/cgroup", (int)pid);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	buf = malloc(cap);
	while (buf) {
		ssize_t r;

		if (cap - n < 2) {
			char *bigger = cap < PROC_CGROUP_MAX ? realloc(buf, cap * 2) : NULL;

			if (!bigger) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = bigger;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			/* ESRCH: the process went away between open and read */
			free(buf);
			buf = NULL;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (buf)
		buf[n] = 0;
	return buf;
}

bool proc_cgroup_path(pid_t pid, char *out, size_t len)
{
	char *text = read_proc_cgroup(pid);
	bool ok;

	if (!text) {
		if (len > 0)
			out[0] = 0;
		return false;
	}
	ok = proc_cgroup_parse(text, out, len);
	free(text);
	return ok;
}

bool attribution_of_pid(pid_t pid, struct attribution *out)
{
	/* the kernel fails the read of a path of PATH_MAX or more */
	char path[PATH_MAX];

	memset(out, 0, sizeof(*out));
	if (!proc_cgroup_path(pid, path, sizeof(path)))
		return false;
	return attribution_from_cgroup(path, out);
}
