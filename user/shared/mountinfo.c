#include "mountinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paths.h"

/* "\040" and friends: mountinfo escapes space, tab, newline and backslash */
static void unescape_octal(char *s)
{
	char *o = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
}

static int add_line(struct mount_table *t, char *line)
{
	unsigned long long id;
	unsigned major, minor;
	char *save = NULL, *f[5];
	struct mount_entry *m;

	/* id parent major:minor root mountpoint ... */
	for (int i = 0; i < 5; i++) {
		f[i] = strtok_r(i ? NULL : line, " ", &save);
		if (!f[i])
			return 0;
	}
	if (sscanf(f[0], "%llu", &id) != 1 || sscanf(f[2], "%u:%u", &major, &minor) != 2)
		return 0;
	unescape_octal(f[3]);
	unescape_octal(f[4]);
	if (f[3][0] != '/' || f[4][0] != '/')
		return 0; /* a root outside the namespace's view: nothing to map */
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 32;
		void *nv = realloc(t->v, cap * sizeof(*t->v));

		if (!nv)
			return -ENOMEM;
		t->v = nv;
		t->cap = cap;
	}
	m = &t->v[t->n];
	m->mnt_id = id;
	m->major = major;
	m->minor = minor;
	m->root = strdup(f[3]);
	m->mountpoint = strdup(f[4]);
	if (!m->root || !m->mountpoint) {
		free(m->root);
		free(m->mountpoint);
		return -ENOMEM;
	}
	t->n++;
	return 0;
}

int mount_table_parse(struct mount_table *t, const char *text)
{
	char *copy = strdup(text), *line, *save = NULL;
	int rc = 0;

	memset(t, 0, sizeof(*t));
	if (!copy)
		return -ENOMEM;
	for (line = strtok_r(copy, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save))
		rc = add_line(t, line);
	free(copy);
	if (rc)
		mount_table_free(t);
	return rc;
}

int mount_table_read(struct mount_table *t, pid_t pid)
{
	char p[64], *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, rc;

	memset(t, 0, sizeof(*t));
	if (pid > 0)
		snprintf(p, sizeof(p), "/proc/%d/mountinfo", (int)pid);
	else
		snprintf(p, sizeof(p), "/proc/self/mountinfo");
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			char *nb = realloc(buf, cap ? cap * 2 : 16384);

			if (!nb) {
				free(buf);
				close(fd);
				return -ENOMEM;
			}
			buf = nb;
			cap = cap ? cap * 2 : 16384;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			rc = -errno;
			free(buf);
			close(fd);
			return rc;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	rc = mount_table_parse(t, buf);
	free(buf);
	return rc;
}

void mount_table_free(struct mount_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].root);
		free(t->v[i].mountpoint);
	}
	free(t->v);
	memset(t, 0, sizeof(*t));
}

/* Whether a mount made after t->v[i] (a later line) sits on its mount point
 * or a directory above it: then the later one hides it. */
static bool hidden_later(const struct mount_table *t, size_t i)
{
	for (size_t j = i + 1; j < t->n; j++)
		if (path_has_prefix(t->v[i].mountpoint, t->v[j].mountpoint))
			return true;
	return false;
}

const struct mount_entry *mount_table_covering(const struct mount_table *t, const char *path)
{
	const struct mount_entry *best = NULL;
	size_t best_len = 0;

	/* mountinfo lists mounts in the order they were made: the deepest
	 * mount point above path that no later mount hides */
	for (size_t i = 0; i < t->n; i++) {
		size_t l = strlen(t->v[i].mountpoint);

		if (path_has_prefix(path, t->v[i].mountpoint) && (!best || l >= best_len) &&
		    !hidden_later(t, i)) {
			best = &t->v[i];
			best_len = l;
		}
	}
	return best;
}

/* a + b, where b is a path below a's root: "/srv" + "/x" or "/" + "/x" */
static bool join_under(const char *a, const char *b, char *out, size_t len)
{
	int n = snprintf(out, len, "%s%s", strcmp(a, "/") ? a : "", *b ? b : (strcmp(a, "/") ? "" : "/"));

	return n > 0 && (size_t)n < len;
}

bool mount_table_translate(const struct mount_table *from, const struct mount_table *to,
			   const char *path, bool (*found)(const char *name, void *ctx),
			   void *ctx)
{
	const struct mount_entry *m = mount_table_covering(from, path);
	char rel[SW_PATH_MAX], name[SW_PATH_MAX];
	const char *below;

	if (!m)
		return false;
	/* the path's place in its filesystem: the mount's root + what lies below
	 * the mount point */
	below = path + (strcmp(m->mountpoint, "/") ? strlen(m->mountpoint) : 0);
	if (!join_under(m->root, below, rel, sizeof(rel)))
		return false;
	for (size_t i = to->n; i-- > 0;) {
		const struct mount_entry *t = &to->v[i];
		const char *rest;

		if (t->major != m->major || t->minor != m->minor || !path_has_prefix(rel, t->root))
			continue;
		rest = rel + (strcmp(t->root, "/") ? strlen(t->root) : 0);
		if (!join_under(t->mountpoint, rest, name, sizeof(name)))
			continue;
		if (found(name, ctx))
			return true;
	}
	return false;
}
