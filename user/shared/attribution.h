/*
 * Where a process runs, as its cgroup path names it: the container and its
 * runtime, the Kubernetes pod, or the systemd unit (DESIGN.md §5: the
 * `container`, `pod` and `unit` fields of an event). The parsers are pure;
 * only proc_cgroup_path() and attribution_of_pid() read /proc.
 */
#ifndef SW_ATTRIBUTION_H
#define SW_ATTRIBUTION_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum { ATTR_ID_LEN = 72, ATTR_RUNTIME_LEN = 16, ATTR_POD_LEN = 40, ATTR_UNIT_LEN = 128 };

/* What a process's cgroup path says about where it runs; empty strings: not named. */
struct attribution {
	char container_id[ATTR_ID_LEN]; /* hex id as the runtime prints it (64 hex chars) */
	char runtime[ATTR_RUNTIME_LEN]; /* "docker", "containerd", "cri-o", "podman" */
	char pod_uid[ATTR_POD_LEN];     /* Kubernetes pod uid with dashes */
	char unit[ATTR_UNIT_LEN];       /* the systemd unit (.service, .scope) if no container */
};

/*
 * Parses an absolute cgroup path (as in /proc/PID/cgroup, e.g.
 * "/system.slice/docker-<id>.scope"). The innermost container wins; the pod
 * is the one that holds it. Returns true when it named anything; out is
 * always written (all empty when nothing is named). Never reads the
 * filesystem.
 */
bool attribution_from_cgroup(const char *cgroup_path, struct attribution *out);
/*
 * The process's cgroup path from /proc/PID/cgroup: the cgroup v2 line
 * ("0::PATH"), and when that is "/" or missing (a hybrid host where the
 * process lives in v1), the "name=systemd" line's path. false when the
 * process is gone, nothing is readable or the path does not fit in len.
 */
bool proc_cgroup_path(pid_t pid, char *out, size_t len);
/* proc_cgroup_path + attribution_from_cgroup; false, out all empty, when unread. */
bool attribution_of_pid(pid_t pid, struct attribution *out);
/*
 * What proc_cgroup_path() does with the text of a /proc/PID/cgroup file,
 * apart so that tests and fuzzers can feed it any text.
 */
bool proc_cgroup_parse(const char *text, char *out, size_t len);
#endif
