/*
 * Unit tests for user/shared/attribution.c: what a cgroup path says about
 * the container, pod or systemd unit a process runs in.
 *
 * Every event about an endpoint carries these as `container`, `pod` and
 * `unit` (DESIGN.md §5), and an alerting pipeline routes on them: a wrong id
 * pages the wrong team, and conmon taken for its container blames a process
 * that is not the server. The paths here are the ones each runtime writes,
 * in both the cgroupfs and the systemd cgroup-driver spellings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "shared/attribution.h"

#define ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define ID2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define POD "0b5e6f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
#define POD_ "0b5e6f2a_1c3d_4e5f_8a9b_0c1d2e3f4a5b"
#define POD2 "11111111-2222-4333-8444-555555555555"
#define POD2_ "11111111_2222_4333_8444_555555555555"

static void assert_attr(const char *path, const char *id, const char *runtime,
			const char *pod, const char *unit)
{
	struct attribution a;
	bool named = *id || *pod || *unit;

	if (attribution_from_cgroup(path, &a) != named)
		fail_msg("attribution_from_cgroup(\"%s\") returned %s", path, named ? "false" : "true");
	if (strcmp(a.container_id, id) || strcmp(a.runtime, runtime) || strcmp(a.pod_uid, pod) ||
	    strcmp(a.unit, unit))
		fail_msg("\"%s\": got id=\"%s\" runtime=\"%s\" pod=\"%s\" unit=\"%s\", "
			 "want id=\"%s\" runtime=\"%s\" pod=\"%s\" unit=\"%s\"",
			 path, a.container_id, a.runtime, a.pod_uid, a.unit, id, runtime, pod, unit);
}

static void assert_container(const char *path, const char *id, const char *runtime)
{
	assert_attr(path, id, runtime, "", "");
}

static void assert_nothing(const char *path)
{
	assert_attr(path, "", "", "", "");
}

/* ----- docker ----- */

static void test_docker_cgroupfs(void **state)
{
	(void)state;
	assert_container("/docker/" ID, ID, "docker");
	/* a subgroup the container made of its own */
	assert_container("/docker/" ID "/app", ID, "docker");
	assert_container("/docker/" ID "/", ID, "docker");
}

static void test_docker_systemd(void **state)
{
	(void)state;
	assert_container("/system.slice/docker-" ID ".scope", ID, "docker");
	/* systemd in the container: its init.scope is the container's, not a unit to name */
	assert_container("/system.slice/docker-" ID ".scope/init.scope", ID, "docker");
	assert_container("/system.slice/docker-" ID ".scope/system.slice/nginx.service", ID, "docker");
	/* rootless docker under the user's manager */
	assert_container("/user.slice/user-1000.slice/user@1000.service/app.slice/docker-" ID ".scope",
			 ID, "docker");
}

/* ----- podman ----- */

static void test_podman_cgroupfs(void **state)
{
	(void)state;
	assert_container("/libpod_parent/libpod-" ID, ID, "podman");
	assert_container("/libpod_parent/libpod-" ID "/ctr", ID, "podman");
	/* conmon is podman's monitor, not the container */
	assert_nothing("/libpod_parent/conmon");
	/* a bare id under libpod_parent is a podman pod, not a container */
	assert_nothing("/libpod_parent/" ID);
}

static void test_podman_systemd(void **state)
{
	(void)state;
	assert_container("/machine.slice/libpod-" ID ".scope", ID, "podman");
	assert_container("/machine.slice/libpod-" ID ".scope/container", ID, "podman");
	assert_container("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" ID ".scope",
			 ID, "podman");
	assert_container("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" ID
			 ".scope/container", ID, "podman");
	/* a podman pod's slice is no Kubernetes pod */
	assert_container("/machine.slice/machine-libpod_pod_" ID2 ".slice/libpod-" ID ".scope",
			 ID, "podman");
}

static void test_podman_conmon_is_not_the_container(void **state)
{
	(void)state;
	/* conmon's own scope is a unit; its id is the container's, never named for it */
	assert_attr("/machine.slice/libpod-conmon-" ID ".scope", "", "", "",
		    "libpod-conmon-" ID ".scope");
	assert_attr("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-" ID
		    ".scope", "", "", "", "libpod-conmon-" ID ".scope");
}

/* ----- cri-o ----- */

static void test_crio(void **state)
{
	(void)state;
	assert_attr("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD_
		    ".slice/crio-" ID ".scope", ID, "cri-o", POD, "");
	assert_attr("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD_
		    ".slice/crio-" ID ".scope/container", ID, "cri-o", POD, "");
	/* cgroupfs */
	assert_attr("/kubepods/besteffort/pod" POD "/crio-" ID, ID, "cri-o", POD, "");
	assert_container("/crio/" ID, ID, "cri-o");
	assert_container("/crio-" ID, ID, "cri-o");
	/* cri-o's conmon: the pod, and conmon's scope as a unit, but no container */
	assert_attr("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD_
		    ".slice/crio-conmon-" ID ".scope", "", "", POD, "crio-conmon-" ID ".scope");
}

/* ----- containerd ----- */

static void test_containerd_kubernetes_systemd(void **state)
{
	(void)state;
	assert_attr("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" POD_
		    ".slice/cri-containerd-" ID ".scope", ID, "containerd", POD, "");
	assert_attr("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD_
		    ".slice/cri-containerd-" ID ".scope", ID, "containerd", POD, "");
	/* guaranteed QoS: the pod slice sits right under kubepods.slice */
	assert_attr("/kubepods.slice/kubepods-pod" POD_ ".slice/cri-containerd-" ID ".scope",
		    ID, "containerd", POD, "");
	/* outside Kubernetes the scope still names containerd */
	assert_container("/system.slice/cri-containerd-" ID ".scope", ID, "containerd");
	assert_container("/system.slice/nerdctl-" ID ".scope", ID, "containerd");
}

static void test_containerd_kubernetes_cgroupfs(void **state)
{
	(void)state;
	/* cri-o, containerd and dockershim all write this: it says containerd */
	assert_attr("/kubepods/burstable/pod" POD "/" ID, ID, "containerd", POD, "");
	assert_attr("/kubepods/besteffort/pod" POD "/" ID, ID, "containerd", POD, "");
	assert_attr("/kubepods/pod" POD "/" ID, ID, "containerd", POD, "");
	assert_attr("/kubepods/pod" POD "/" ID "/sub", ID, "containerd", POD, "");
}

static void test_containerd_plain_namespace(void **state)
{
	(void)state;
	assert_container("/default/" ID, ID, "containerd");
	assert_container("/k8s.io/" ID, ID, "containerd");
	assert_container("/moby/" ID, ID, "containerd");
	assert_container("//default//" ID "/", ID, "containerd");
	/* only right under the root, and only under a name containerd allows */
	assert_nothing("/a/default/" ID);
	assert_nothing("/" ID);
	assert_nothing("/system.slice/" ID);
	assert_nothing("/bad..ns/" ID);
	assert_nothing("/-ns/" ID);
	assert_attr("/system.slice/foo.service/" ID, "", "", "", "foo.service");
}

/* ----- pods ----- */

static void test_pod_uids(void **state)
{
	(void)state;
	/* a process in the pod's cgroup itself: the pod, no container */
	assert_attr("/kubepods/besteffort/pod" POD, "", "", POD, "");
	assert_attr("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD_ ".slice",
		    "", "", POD, "");
	assert_attr("/kubepods.slice/kubepods-pod" POD_ ".slice", "", "", POD, "");
	/* a static pod's uid is 32 hex, the kubelet's hash of its manifest */
	assert_attr("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
		    "0123456789abcdef0123456789abcdef.slice/cri-containerd-" ID ".scope",
		    ID, "containerd", "0123456789abcdef0123456789abcdef", "");
	assert_attr("/kubepods/burstable/pod0123456789abcdef0123456789abcdef/" ID,
		    ID, "containerd", "0123456789abcdef0123456789abcdef", "");
	/* not uids: uppercase, a dash out of place, the wrong separator, short */
	assert_nothing("/kubepods/besteffort/pod0B5E6F2A-1C3D-4E5F-8A9B-0C1D2E3F4A5B");
	assert_nothing("/kubepods/besteffort/pod0b5e6f2a1-c3d-4e5f-8a9b-0c1d2e3f4a5b");
	assert_nothing("/kubepods/besteffort/pod" POD_);
	assert_nothing("/kubepods.slice/kubepods-besteffort-pod" POD ".slice");
	assert_nothing("/kubepods/besteffort/pod0b5e6f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5");
	assert_nothing("/kubepods/besteffort/pod");
	/* a systemd pod slice needs its kubepods segment */
	assert_nothing("/machine.slice/machine-pod" POD_ ".slice");
	/* without a container, a unit below the pod is named too */
	assert_attr("/kubepods/besteffort/pod" POD "/x.scope", "", "", POD, "x.scope");
}

/* ----- nesting ----- */

static void test_nested_innermost_container_wins(void **state)
{
	(void)state;
	/* docker in a pod's container: the inner id, the pod that holds it all */
	assert_attr("/kubepods/burstable/pod" POD "/" ID2 "/docker/" ID, ID, "docker", POD, "");
	assert_attr("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" POD_
		    ".slice/cri-containerd-" ID2 ".scope/docker/" ID, ID, "docker", POD, "");
	/* docker in docker */
	assert_container("/docker/" ID2 "/docker/" ID, ID, "docker");
	assert_container("/system.slice/docker-" ID2 ".scope/docker/" ID, ID, "docker");
	/* kind: a pod of the inner cluster in a node that is a docker container */
	assert_attr("/system.slice/docker-" ID2 ".scope/kubelet.slice/kubelet-kubepods.slice/"
		    "kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" POD_
		    ".slice/cri-containerd-" ID ".scope", ID, "containerd", POD, "");
	/* pods nested in pods: the one that holds the innermost container */
	assert_attr("/kubepods/pod" POD2 "/" ID2 "/kubepods/pod" POD "/" ID, ID, "containerd", POD, "");
	/* a pod below the innermost container does not hold it: not named */
	assert_attr("/kubepods/pod" POD2 "/" ID2 "/kubepods/pod" POD, ID2, "containerd", POD2, "");
	assert_container("/system.slice/docker-" ID ".scope/kubepods.slice/kubepods-pod" POD_ ".slice",
			 ID, "docker");
}

/* ----- systemd units ----- */

static void test_units(void **state)
{
	(void)state;
	assert_attr("/system.slice/nginx.service", "", "", "", "nginx.service");
	/* a delegated subgroup names the service that owns it */
	assert_attr("/system.slice/foo.service/worker", "", "", "", "foo.service");
	assert_attr("/user.slice/user-1000.slice/session-3.scope", "", "", "", "session-3.scope");
	assert_attr("/init.scope", "", "", "", "init.scope");
	/* the deepest unit wins */
	assert_attr("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-x.scope",
		    "", "", "", "app-gnome-x.scope");
	assert_attr("/user.slice/user-1000.slice/user@1000.service/init.scope", "", "", "",
		    "init.scope");
	/* escapes stay as written */
	assert_attr("/system.slice/system-getty.slice/getty@tty1.service", "", "", "",
		    "getty@tty1.service");
	assert_attr("/system.slice/foo\\x2dbar.service", "", "", "", "foo\\x2dbar.service");
	/* slices hold no processes of their own; a bare suffix is no name */
	assert_nothing("/system.slice");
	assert_nothing("/user.slice/user-1000.slice");
	assert_nothing("/system.slice/.service");
	assert_nothing("/system.slice/.scope");
	assert_nothing("/system.slice/nginx.servicex");
}

static void test_unit_too_long_names_the_enclosing_unit(void **state)
{
	char path[512], name[200];

	(void)state;
	/* 127 bytes fit the field with its NUL, 128 do not */
	memset(name, 'u', sizeof(name));
	memcpy(name + 127 - strlen(".scope"), ".scope", sizeof(".scope"));
	snprintf(path, sizeof(path), "/system.slice/%s", name);
	assert_attr(path, "", "", "", name);
	memset(name, 'u', sizeof(name));
	memcpy(name + 128 - strlen(".scope"), ".scope", sizeof(".scope"));
	snprintf(path, sizeof(path), "/system.slice/foo.service/%s", name);
	assert_attr(path, "", "", "", "foo.service");
	snprintf(path, sizeof(path), "/system.slice/%s", name);
	assert_nothing(path);
}

/* ----- ids ----- */

static void test_container_ids_are_exactly_64_lowercase_hex(void **state)
{
	char path[256];

	(void)state;
	/* 63 and 65 hex, uppercase, a non-hex byte */
	assert_attr("/system.slice/docker-" "123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		    ".scope", "", "", "", "docker-"
		    "123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope");
	assert_nothing("/docker/" ID "0");
	assert_nothing("/docker/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_nothing("/docker/0123456789abcdeg0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_nothing("/docker/abc123");
	assert_nothing("/default/" ID "0");
	/* the prefix and the suffix must be whole */
	assert_attr("/system.slice/xdocker-" ID ".scope/x", "", "", "", "xdocker-" ID ".scope");
	snprintf(path, sizeof(path), "/system.slice/docker-%s.scop", ID);
	assert_nothing(path);
	assert_nothing("/libpod_parent/libpod-" ID "-x");
	/* the id is written whole and NUL-terminated */
	{
		struct attribution a;

		assert_true(attribution_from_cgroup("/docker/" ID, &a));
		assert_int_equal(strlen(a.container_id), 64);
	}
}

/* ----- bad input ----- */

static void test_garbage_and_empty(void **state)
{
	struct attribution a;

	(void)state;
	assert_nothing("");
	assert_nothing("/");
	assert_nothing("//");
	assert_nothing("/random/path/here");
	assert_nothing("/docker");
	assert_nothing("/docker/");
	assert_nothing("/kubepods.slice");
	/* the kernel writes absolute paths only */
	assert_nothing("system.slice/nginx.service");
	assert_nothing("docker/" ID);
	assert_nothing("/../../..");
	assert_nothing("/\xff\xfe/\x01");
	/* out is cleared of what a previous call wrote */
	assert_true(attribution_from_cgroup("/kubepods/pod" POD "/" ID, &a));
	assert_false(attribution_from_cgroup("/", &a));
	assert_string_equal(a.container_id, "");
	assert_string_equal(a.runtime, "");
	assert_string_equal(a.pod_uid, "");
	assert_string_equal(a.unit, "");
	assert_true(attribution_from_cgroup("/docker/" ID, &a));
	assert_false(attribution_from_cgroup(NULL, &a));
	assert_string_equal(a.container_id, "");
}

/* an attribution between canaries: a write past its end shows */
struct guarded {
	unsigned char before[32];
	struct attribution a;
	unsigned char after[32];
};

static void assert_canaries(const struct guarded *g)
{
	for (size_t i = 0; i < sizeof(g->before); i++) {
		assert_int_equal(g->before[i], 0xa5);
		assert_int_equal(g->after[i], 0xa5);
	}
}

static void test_overlong_paths(void **state)
{
	const size_t big = 1 << 20;
	char *path = malloc(big + 512);
	struct guarded g;
	size_t n;

	(void)state;
	assert_non_null(path);
	memset(&g, 0xa5, sizeof(g));
	/* far past PATH_MAX of components, the container at the end */
	for (n = 0; n + 8 < big; n += 8)
		memcpy(path + n, "/aaaaaaa", 8);
	strcpy(path + n, "/system.slice/docker-" ID ".scope");
	assert_true(attribution_from_cgroup(path, &g.a));
	assert_string_equal(g.a.container_id, ID);
	assert_string_equal(g.a.runtime, "docker");
	assert_canaries(&g);
	/* the container near the root, a megabyte of subgroups below it */
	n = (size_t)sprintf(path, "/kubepods/pod%s/%s", POD, ID);
	while (n + 8 < big) {
		memcpy(path + n, "/bbbbbbb", 8);
		n += 8;
	}
	path[n] = 0;
	assert_true(attribution_from_cgroup(path, &g.a));
	assert_string_equal(g.a.container_id, ID);
	assert_string_equal(g.a.pod_uid, POD);
	assert_canaries(&g);
	/* one component of a megabyte, ending like a unit: too long to name */
	path[0] = '/';
	memset(path + 1, 'x', big);
	strcpy(path + big, ".service");
	assert_false(attribution_from_cgroup(path, &g.a));
	assert_canaries(&g);
	/* a megabyte of slashes, and of 64-hex components no rule owns */
	memset(path, '/', big);
	path[big] = 0;
	assert_false(attribution_from_cgroup(path, &g.a));
	for (n = (size_t)sprintf(path, "/system.slice"); n + 66 < big; n += 65) {
		path[n] = '/';
		memcpy(path + n + 1, ID, 64);
	}
	path[n] = 0;
	assert_false(attribution_from_cgroup(path, &g.a));
	assert_canaries(&g);
	free(path);
}

/* ----- /proc/PID/cgroup ----- */

static void assert_parses_to(const char *text, const char *want)
{
	char out[256];

	if (!proc_cgroup_parse(text, out, sizeof(out)))
		fail_msg("proc_cgroup_parse(\"%s\") failed, want \"%s\"", text, want);
	assert_string_equal(out, want);
}

static void test_proc_cgroup_parse(void **state)
{
	char out[16];

	(void)state;
	/* unified */
	assert_parses_to("0::/system.slice/nginx.service\n", "/system.slice/nginx.service");
	assert_parses_to("0::/system.slice/nginx.service", "/system.slice/nginx.service");
	/* hybrid: the process lives in v1 and v2 says "/" */
	assert_parses_to("12:pids:/system.slice/docker-x.scope\n"
			 "1:name=systemd:/system.slice/docker-x.scope\n0::/\n",
			 "/system.slice/docker-x.scope");
	/* hybrid, both named: v2 wins */
	assert_parses_to("1:name=systemd:/a.service\n0::/b.service\n", "/b.service");
	/* legacy v1 only, name=systemd among other names */
	assert_parses_to("3:cpu,cpuacct:/x\n1:foo,name=systemd:/c.service\n", "/c.service");
	assert_parses_to("1:name=systemdx:/x\n0::/\n", "/");
	/* the root, and a removed cgroup an exiting task still names */
	assert_parses_to("0::/\n", "/");
	assert_parses_to("0::/system.slice/gone.service (deleted)\n", "/system.slice/gone.service");
	assert_parses_to("1:name=systemd:/v1.service\n0:: (deleted)\n", "/v1.service");
	/* a path may hold ':' */
	assert_parses_to("0::/a:b/c\n", "/a:b/c");
	/* nothing to name */
	assert_false(proc_cgroup_parse("", out, sizeof(out)));
	assert_false(proc_cgroup_parse("garbage\n", out, sizeof(out)));
	assert_false(proc_cgroup_parse("3:cpu:/x\n", out, sizeof(out)));
	assert_false(proc_cgroup_parse("0::relative\n", out, sizeof(out)));
	assert_false(proc_cgroup_parse(NULL, out, sizeof(out)));
	/* the path must fit with its NUL: "/0123456789abc" is 14 bytes */
	assert_true(proc_cgroup_parse("0::/0123456789abc\n", out, 15));
	assert_string_equal(out, "/0123456789abc");
	assert_false(proc_cgroup_parse("0::/0123456789abc\n", out, 14));
	assert_string_equal(out, "");
}

static void test_proc_cgroup_path_of_self(void **state)
{
	char path[4096], tiny[1];
	struct attribution mine, want;
	bool named;

	(void)state;
	assert_true(proc_cgroup_path(getpid(), path, sizeof(path)));
	assert_int_equal(path[0], '/');
	/* attribution_of_pid is the two steps together */
	named = attribution_of_pid(getpid(), &mine);
	assert_int_equal(named, attribution_from_cgroup(path, &want));
	assert_memory_equal(&mine, &want, sizeof(mine));
	assert_false(proc_cgroup_path(getpid(), tiny, sizeof(tiny)));
}

static void test_proc_cgroup_path_of_no_process(void **state)
{
	char path[4096];
	struct attribution a;

	(void)state;
	/* above any pid_max the kernel allows (2^22) */
	assert_false(proc_cgroup_path(0x7fffffff, path, sizeof(path)));
	assert_string_equal(path, "");
	assert_false(proc_cgroup_path(0, path, sizeof(path)));
	assert_false(proc_cgroup_path(-1, path, sizeof(path)));
	memset(&a, 'x', sizeof(a));
	assert_false(attribution_of_pid(0x7fffffff, &a));
	assert_string_equal(a.container_id, "");
	assert_string_equal(a.runtime, "");
	assert_string_equal(a.pod_uid, "");
	assert_string_equal(a.unit, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_docker_cgroupfs),
		cmocka_unit_test(test_docker_systemd),
		cmocka_unit_test(test_podman_cgroupfs),
		cmocka_unit_test(test_podman_systemd),
		cmocka_unit_test(test_podman_conmon_is_not_the_container),
		cmocka_unit_test(test_crio),
		cmocka_unit_test(test_containerd_kubernetes_systemd),
		cmocka_unit_test(test_containerd_kubernetes_cgroupfs),
		cmocka_unit_test(test_containerd_plain_namespace),
		cmocka_unit_test(test_pod_uids),
		cmocka_unit_test(test_nested_innermost_container_wins),
		cmocka_unit_test(test_units),
		cmocka_unit_test(test_unit_too_long_names_the_enclosing_unit),
		cmocka_unit_test(test_container_ids_are_exactly_64_lowercase_hex),
		cmocka_unit_test(test_garbage_and_empty),
		cmocka_unit_test(test_overlong_paths),
		cmocka_unit_test(test_proc_cgroup_parse),
		cmocka_unit_test(test_proc_cgroup_path_of_self),
		cmocka_unit_test(test_proc_cgroup_path_of_no_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
