#include "privilege.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shared/log.h"

/* CAP_BPF and CAP_PERFMON arrived in Linux 5.8; older uapi headers lack them. */
#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

static const char *const cap_names[] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
};
#define N_CAP_NAMES ((int)(sizeof(cap_names) / sizeof(cap_names[0])))

const char *privilege_cap_name(int cap)
{
	return cap >= 0 && cap < N_CAP_NAMES ? cap_names[cap] : NULL;
}

uint64_t privilege_run_set(void)
{
	return PRIV_BIT(CAP_SYS_PTRACE)     /* owners: /proc/PID/fd and exe of any process */
	       | PRIV_BIT(CAP_DAC_OVERRIDE) /* other users' directories: guards, heals, /proc */
	       | PRIV_BIT(CAP_FOWNER)       /* guard links to others' sockets (protected_hardlinks) */
	       | PRIV_BIT(CAP_CHOWN)        /* re-created directories get their owner back */
	       | PRIV_BIT(CAP_FSETID)       /* ... and their setgid bit, in another's group */
	       | PRIV_BIT(CAP_SETUID)       /* setfsuid: an fd heal binds as the server's user */
	       | PRIV_BIT(CAP_SETGID);      /* setfsgid: ... and group */
}

struct capsets {
	uint64_t eff, prm, inh;
};

static int caps_get(struct capsets *c)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) != 0)
		return -errno;
	c->eff = d[0].effective | (uint64_t)d[1].effective << 32;
	c->prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
	c->inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
	return 0;
}

static int caps_set(const struct capsets *c)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = {
		{ (uint32_t)c->eff, (uint32_t)c->prm, (uint32_t)c->inh },
		{ (uint32_t)(c->eff >> 32), (uint32_t)(c->prm >> 32), (uint32_t)(c->inh >> 32) },
	};

	return syscall(SYS_capset, &h, d) == 0 ? 0 : -errno;
}

static int last_cap(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int n = -1;

	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n >= 0 && n < 64 ? n : CAP_LAST_CAP;
}

static uint64_t bounding_get(int last)
{
	uint64_t b = 0;

	for (int cap = 0; cap <= last; cap++)
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1)
			b |= PRIV_BIT(cap);
	return b;
}

int privilege_drop(struct privilege *p, const struct privilege_needs *n, char *err,
		   size_t errlen)
{
	int last = last_cap(), rc;
	struct capsets had = { 0 }, c;
	uint64_t keep;

	memset(p, 0, sizeof(*p));
	rc = caps_get(&had);
	if (rc) {
		snprintf(err, errlen, "reading the capability sets: %s", strerror(-rc));
		return rc;
	}
	p->wanted = privilege_run_set();
	if (n->signal_action)
		p->wanted |= PRIV_BIT(CAP_KILL);
	if (n->enter_netns)
		p->wanted |= PRIV_BIT(CAP_SYS_ADMIN);

	/* CAP_BPF: try the loop's own kind of map access without it (and without
	 * CAP_SYS_ADMIN, which would stand in for it); the kernel decides. */
	if (n->bpf_map_probe && (had.prm & (PRIV_BIT(CAP_BPF) | PRIV_BIT(CAP_SYS_ADMIN)))) {
		c = had;
		c.eff &= ~(PRIV_BIT(CAP_BPF) | PRIV_BIT(CAP_SYS_ADMIN));
		rc = caps_set(&c);
		if (rc) {
			snprintf(err, errlen, "lowering the effective set: %s", strerror(-rc));
			return rc;
		}
		p->bpf_needed = n->bpf_map_probe(n->ctx) == -EPERM;
		if (p->bpf_needed)
			p->wanted |= PRIV_BIT(CAP_BPF);
	}
	keep = p->wanted & had.prm;
	p->missing = p->wanted & ~had.prm;

	/* The bounding set first, while CAP_SETPCAP may still be effective: it
	 * bounds what commands run by action = exec get (they run as root). */
	if (had.prm & PRIV_BIT(CAP_SETPCAP)) {
		c = had;
		c.eff |= PRIV_BIT(CAP_SETPCAP);
		rc = caps_set(&c);
		for (int cap = 0; rc == 0 && cap <= last; cap++)
			if (!(keep & PRIV_BIT(cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 &&
			    errno != EINVAL)
				rc = -errno;
		if (rc) {
			snprintf(err, errlen, "dropping from the bounding set: %s", strerror(-rc));
			return rc;
		}
		p->bounding_dropped = true;
	}
	/* ambient capabilities would survive an exec of a non-root command */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
		rc = -errno;
		snprintf(err, errlen, "clearing the ambient set: %s", strerror(-rc));
		return rc;
	}
	c = (struct capsets){ .eff = keep, .prm = keep, .inh = 0 };
	rc = caps_set(&c);
	if (rc == 0)
		rc = caps_get(&c);
	if (rc == 0 && (c.eff != keep || c.prm != keep || c.inh != 0))
		rc = -EPERM;
	if (rc) {
		snprintf(err, errlen, "setting the capability sets: %s", strerror(-rc));
		return rc;
	}
	p->kept = keep;
	p->bounding = bounding_get(last);
	return 0;
}

void privilege_format(uint64_t caps, char *buf, size_t len)
{
	size_t off = 0;

	if (len)
		buf[0] = 0;
	for (int cap = 0; cap < 64 && off < len; cap++) {
		const char *name = privilege_cap_name(cap);
		int w;

		if (!(caps & PRIV_BIT(cap)))
			continue;
		if (name)
			w = snprintf(buf + off, len - off, "%s%s", off ? " " : "", name);
		else
			w = snprintf(buf + off, len - off, "%scap_%d", off ? " " : "", cap);
		if (w < 0)
			break;
		off += (size_t)w;
	}
}

json_t *privilege_json(uint64_t caps)
{
	json_t *arr = json_array();

	for (int cap = 0; cap < 64; cap++) {
		const char *name = privilege_cap_name(cap);
		char tmp[16];

		if (!(caps & PRIV_BIT(cap)))
			continue;
		if (!name) {
			snprintf(tmp, sizeof(tmp), "cap_%d", cap);
			name = tmp;
		}
		json_array_append_new(arr, json_string(name));
	}
	return arr;
}
