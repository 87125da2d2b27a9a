/*
 * The agent's event loop. Data flows one way:
 *   ring buffer / reconcile scan → endpoint table → policy (confirm, coalesce)
 *   → sinks.
 * One epoll set holds the ring buffer, the signalfd, the timers and the sink
 * fds; nothing in the loop blocks on a consumer.
 */
#include "agent.h"
#include "core.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "actions.h"
#include "coalescer.h"
#include "control.h"
#include "endpoint_json.h"
#include "endpoints.h"
#include "healer.h"
#include "loop.h"
#include "privilege.h"
#include "scanner.h"
#include "sockwarden.h"
#include "sockwarden.skel.h"
#include "shared/clock.h"
#include "shared/discovery.h"
#include "shared/events.h"
#include "shared/exitcodes.h"
#include "shared/log.h"
#include "shared/paths.h"
#include "sinks/journal.h"
#include "sinks/jsonl.h"
#include "sinks/metrics.h"
#include "sinks/state_file.h"

bool inode_set_has(const struct inode_set *s, uint64_t ino)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == ino)
			return true;
	return false;
}

void inode_set_add(struct inode_set *s, uint64_t ino)
{
	if (inode_set_has(s, ino))
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		uint64_t *nv = realloc(s->v, cap * sizeof(*nv));

		if (!nv)
			return;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = ino;
}

/* Host-wide, every path; with --watch, the watched and registered ones. */
bool path_watched(const struct agent *a, const char *path)
{
	const struct endpoint *e;

	if (a->opt->n_watch == 0)
		return true;
	/* --watch and registrations name paths of the agent's own namespace */
	e = ep_lookup(&a->eps, 0, path);
	return e && (e->origin & (EP_FROM_WATCH | EP_FROM_REGISTER));
}

/*
 * The kernel's filters follow the endpoint table. A sync visits every
 * endpoint and writes only the keys whose count changed, so what many records
 * or registrations in one turn of the loop ask for is done once, at the end
 * of the turn. A listener's own name and inode join the filters in the
 * kernel at listen() already; this adds what only the agent knows.
 */
void sync_soon(struct agent *a)
{
	a->sync_due = true;
}

static void sync_if_due(struct agent *a)
{
	if (!a->sync_due)
		return;
	a->sync_due = false;
	bpf_agent_sync(&a->bpf, &a->eps);
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct agent *a = ctx;
	const struct sw_rec_hdr *h = data;

	a->records++;
	if (size < sizeof(*h))
		return 0;
	switch (h->type) {
	case SW_REC_UNLINK:
		if (size >= sizeof(struct sw_rec_unlink))
			on_unlink(a, data);
		break;
	case SW_REC_BIND:
		if (size >= sizeof(struct sw_rec_bind))
			on_bind(a, data);
		break;
	case SW_REC_LISTEN:
		if (size >= sizeof(struct sw_rec_bind))
			on_listen(a, data);
		break;
	case SW_REC_CONNECT_FAIL:
		if (size >= sizeof(struct sw_rec_connect))
			on_connect_fail(a, data);
		break;
	case SW_REC_CONNECT_OK:
		if (size >= sizeof(struct sw_rec_connect))
			on_connect_ok(a, data);
		break;
	}
	return 0;
}

static void on_tick(struct agent *a)
{
	streaks_reconcile(a);
	coalescer_tick(&a->co, clock_mono_ns(), read_failures, a);
	report_events_lost(a);
	state_flush(a, false);
	metrics_flush(a);
}

/* ----- set-up ----- */

void timer_arm(int fd, uint64_t interval_ns)
{
	struct itimerspec its = {
		.it_interval = { (time_t)(interval_ns / NSEC_PER_SEC),
				 (long)(interval_ns % NSEC_PER_SEC) },
		.it_value = { (time_t)(interval_ns / NSEC_PER_SEC),
			      (long)(interval_ns % NSEC_PER_SEC) },
	};

	if (fd >= 0)
		timerfd_settime(fd, 0, &its, NULL);
}

static int timer_new(uint64_t interval_ns)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	timer_arm(fd, interval_ns);
	return fd;
}

static void on_rb(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;

	ring_buffer__consume(a->bpf.rb);
}

static void on_signal(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;
	struct signalfd_siginfo si;

	if (read(w->fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGHUP) {
		/* logrotate's signal: a renamed events file is let go */
		int rc = sinks_reopen_jsonl(&a->sinks, a->opt->events);

		if (rc)
			log_warn("SIGHUP: cannot reopen %s: %s", a->opt->events, strerror(-rc));
		else
			log_info("SIGHUP: events file reopened");
		agent_reload(a); /* and the configuration is read again */
		return;
	}
	a->stopping = true;
}

static bool timer_fired(int fd)
{
	uint64_t ticks;

	return read(fd, &ticks, sizeof(ticks)) > 0;
}

static void on_reconcile(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;

	/* a scan that outlasts the interval is not asked for again: the next
	 * tick after it is applied asks */
	if (timer_fired(w->fd) && !scanner_request(&a->scanner))
		log_debug("reconcile scan still under way");
}

static void on_scan_done(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;
	struct scan_result *r = scanner_take(&a->scanner);

	if (!r)
		return;
	scan_apply(a, r, false);
	scan_result_free(r);
	free(r);
	/* a scan's result is as large as the host's listeners, and was
	 * allocated in the scanner thread's arena: give its memory back */
	malloc_trim(0);
}

static void on_tick_timer(struct watcher *w, uint32_t events)
{
	if (timer_fired(w->fd))
		on_tick(w->ctx);
}

static void on_heal_timer(struct watcher *w, uint32_t events)
{
	if (timer_fired(w->fd))
		heal_due(w->ctx);
}

static void on_sink(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;

	a->sink_waiting = sinks_flush(&a->sinks);
	if (!a->sink_waiting || sinks_gap_ready(&a->sinks)) {
		report_sink_gap(a);
		a->sink_waiting = sinks_flush(&a->sinks);
	}
}

static int watch(struct agent *a, struct watcher *w, int fd, watcher_fn fn)
{
	*w = (struct watcher){ .fd = fd, .fn = fn, .ctx = a };
	return fd < 0 ? -1 : loop_add(a->epfd, w, EPOLLIN);
}

static void count_listening(struct endpoint *e, void *ctx)
{
	if (e->has_listener)
		(*(size_t *)ctx)++;
}

static void emit_started(struct agent *a)
{
	struct utsname u;
	json_t *ev = event_new(&a->env, "agent_started", "info", 0);
	size_t listening = 0;

	uname(&u);
	ep_foreach(&a->eps, count_listening, &listening);
	json_object_set_new(ev, "mode", json_string(attach_mode_name(a->bpf.mode)));
	json_object_set_new(ev, "mode_reason", json_string(a->bpf.mode_reason));
	json_object_set_new(ev, "redirect", json_boolean(a->bpf.redirect.on));
	json_object_set_new(ev, "redirect_reason", json_string(a->bpf.redirect.reason));
	json_object_set_new(ev, "discovery", json_string(discovery_source_name(&a->disc)));
	/* the agent's own namespace: endpoints elsewhere are containers' */
	json_object_set_new(ev, "mntns", json_integer(ns_self_mntns()));
	json_object_set_new(ev, "discovery_reason", json_string(a->disc.reason));
	json_object_set_new(ev, "kernel", json_string(u.release));
	json_object_set_new(ev, "watched", json_integer((json_int_t)listening));
	json_object_set_new(ev, "version", json_string(SOCKWARDEN_VERSION));
	json_object_set_new(ev, "pid", json_integer(getpid()));
	json_object_set_new(ev, "capabilities", privilege_json(a->priv.kept));
	if (a->opt->n_watch) {
		json_t *arr = json_array();

		for (size_t i = 0; i < a->opt->n_watch; i++)
			json_array_append_new(arr, json_string(a->opt->watch[i]));
		json_object_set_new(ev, "watch", arr);
	}
	emit(a, ev);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !log_verbose)
		return 0;
	if (!log_verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* For the privilege drop: the loop's own kind of map access on a held fd. */
static int bpf_map_probe(void *ctx)
{
	struct agent *a = ctx;
	int ncpu = libbpf_num_possible_cpus();
	__u32 key = SW_CNT_RINGBUF_FULL;

	if (ncpu <= 0)
		return -EINVAL;
	__u64 vals[ncpu];
	return bpf_map_lookup_elem(bpf_map__fd(a->bpf.skel->maps.counters), &key, vals) ? -errno
											 : 0;
}

/* Start-up is over (BPF attached, metrics bound): keep only what the run
 * needs (README "Operating"). */
static int drop_privileges(struct agent *a)
{
	struct privilege_needs n = { .bpf_map_probe = bpf_map_probe, .ctx = a };
	char err[256], caps[512];
	int rc;

	for (size_t i = 0; i < a->opt->paths.n; i++)
		if (a->opt->paths.v[i].action == ACTION_SIGNAL)
			n.signal_action = true;
	n.enter_netns = a->disc.chosen == DISCOVERY_PROCFS;
	rc = privilege_drop(&a->priv, &n, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "sockwarden: dropping privileges: %s\n", err);
		return rc;
	}
	privilege_format(a->priv.kept, caps, sizeof(caps));
	log_debug("capabilities kept: %s", caps[0] ? caps : "none");
	if (a->priv.missing) {
		privilege_format(a->priv.missing, caps, sizeof(caps));
		log_warn("capabilities the agent would use but was not given: %s", caps);
	}
	if (!a->priv.bounding_dropped)
		log_warn("no CAP_SETPCAP at start: the bounding set stays as given, and "
			 "commands of action = exec may get more than the agent keeps");
	return 0;
}

/* Threads keep the capabilities they are created with: they start after the
 * drop. */
static int start_threads(struct agent *a)
{
	int err = scanner_start(&a->scanner, NULL, &a->disc);

	if (err) {
		fprintf(stderr, "sockwarden: cannot start the scanner thread: %s\n",
			strerror(-err));
		return err;
	}
	if (a->opt->journal)
		a->have_journal = journal_open(&a->journal) == 0;
	if (a->opt->metrics_addr) {
		const char *why = "";
		int rc = metrics_start(&a->metrics, &why);

		if (rc) {
			fprintf(stderr, "sockwarden: --metrics %s: %s\n", a->opt->metrics_addr, why);
			return rc;
		}
	}
	return 0;
}

int agent_run(const struct agent_options *opt)
{
	struct agent a = { .opt = opt, .epfd = -1, .sigfd = -1, .reconcile_tfd = -1,
			   .tick_tfd = -1, .heal_tfd = -1, .reload_ok = true };
	struct healer_cfg hcfg = { .guards = !opt->no_guard,
				   .heal_delay_ns = opt->heal_delay_ns, .flap = opt->flap };
	char err[512];
	sigset_t mask;
	int rc, status = SW_EXIT_OK;

	log_verbose = opt->verbose;
	libbpf_set_print(libbpf_print);
	/* before any thread starts (journald, metrics): threads inherit the mask,
	 * and the signals must reach the loop's signalfd, not kill the process */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	event_env_init(&a.env);
	rc = sinks_open_jsonl(&a.sinks, opt->events, opt->events_queue);
	if (rc) {
		fprintf(stderr, "sockwarden: cannot open --events %s: %s\n", opt->events,
			strerror(-rc));
		return SW_EXIT_USAGE;
	}
	ns_roots_init(&a.roots);
	if (ep_table_init(&a.eps, 4096) || metrics_init(&a.metrics)) {
		status = SW_EXIT_ENV;
		goto cleanup;
	}
	a.eps.roots = &a.roots;
	a.started_mono_ns = clock_mono_ns();
	a.reload_ok_real_ns = clock_real_ns();
	if (opt->journal) {
		/* no journald on this host is not an error: sends are counted */
		if (access("/run/systemd/journal/socket", F_OK) != 0)
			log_warn("--journal: journald is not running here; events still go to "
				 "the other sinks");
		/* its thread starts after the privilege drop (start_threads) */
	}
	if (opt->state_file && opt->state_file[0]) {
		int prev = 0;

		rc = state_writer_open(&a.state, opt->state_file, &prev);
		if (rc && strcmp(opt->state_file, STATE_FILE_DEFAULT) == 0) {
			/* the default place is a convenience: the agent runs without it */
			log_warn("no state file: %s: %s", opt->state_file, strerror(-rc));
		} else if (rc) {
			fprintf(stderr, "sockwarden: --state %s: %s\n", opt->state_file,
				strerror(-rc));
			status = SW_EXIT_USAGE;
			goto cleanup;
		}
		if (prev)
			log_info("taking over the state file of agent pid %d, which is gone", prev);
	}
	if (opt->metrics_file && metrics_textfile(&a.metrics, opt->metrics_file) != 0) {
		status = SW_EXIT_ENV;
		goto cleanup;
	}
	if (opt->metrics_addr) {
		const char *why = "";

		/* bound now, served from a thread started after the privilege drop */
		rc = metrics_bind(&a.metrics, opt->metrics_addr, &why);
		if (rc) {
			fprintf(stderr, "sockwarden: --metrics %s: %s\n", opt->metrics_addr, why);
			status = rc == -EINVAL ? SW_EXIT_USAGE : SW_EXIT_ENV;
			goto cleanup;
		}
	}
	coalescer_init(&a.co, opt->window_ns, coalesced_emit, &a);
	if (opt->paths.n)
		a.co.window_of = window_of;
	healer_init(&a.healer, &hcfg, &a.env, healer_emit, &a);
	a.healer.guards.roots = &a.roots;
	a.healer.redirect = &a.bpf.redirect;
	umask(0); /* re-created directories get exactly their recorded modes */
	for (size_t i = 0; i < opt->n_watch; i++) {
		struct endpoint *e = ep_get_or_add(&a.eps, 0, opt->watch[i], NULL);

		if (e)
			e->origin |= EP_FROM_WATCH;
	}
	/* a path with a section in the config is one the operator watches */
	for (size_t i = 0; i < opt->paths.n; i++) {
		struct endpoint *e = ep_get_or_add(&a.eps, 0, opt->paths.v[i].path, NULL);

		if (e)
			e->origin |= EP_FROM_WATCH;
	}

	rc = bpf_agent_start(&a.bpf, opt->mode, opt->any_path, opt->n_watch == 0,
			     !opt->no_redirect, on_record, &a, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "sockwarden: %s\n", err);
		status = SW_EXIT_ENV;
		goto cleanup;
	}
	rc = discovery_source_open(&a.disc, opt->discovery);
	if (rc) {
		fprintf(stderr, "sockwarden: %s\n", a.disc.reason);
		status = SW_EXIT_ENV;
		goto cleanup;
	}
	log_debug("discovery: %s (%s)", discovery_source_name(&a.disc), a.disc.reason);
	rc = drop_privileges(&a);
	if (rc == 0)
		rc = start_threads(&a);
	if (rc) {
		status = SW_EXIT_ENV;
		goto cleanup;
	}

	a.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	a.epfd = epoll_create1(EPOLL_CLOEXEC);
	a.reconcile_tfd = timer_new(opt->reconcile_ns);
	a.tick_tfd = timer_new(TICK_NS);
	a.heal_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (a.epfd < 0 || watch(&a, &a.w_heal, a.heal_tfd, on_heal_timer) ||
	    watch(&a, &a.w_rb, ring_buffer__epoll_fd(a.bpf.rb), on_rb) ||
	    watch(&a, &a.w_sig, a.sigfd, on_signal) ||
	    watch(&a, &a.w_reconcile, a.reconcile_tfd, on_reconcile) ||
	    watch(&a, &a.w_scan, scanner_fd(&a.scanner), on_scan_done) ||
	    watch(&a, &a.w_tick, a.tick_tfd, on_tick_timer)) {
		fprintf(stderr, "sockwarden: event loop set-up failed: %s\n", strerror(errno));
		status = SW_EXIT_ENV;
		goto cleanup;
	}
	if (a.sinks.have_jsonl) {
		/* regular files never block; epoll refuses them, which is fine */
		a.w_sink = (struct watcher){ .fd = a.sinks.jsonl.fd, .fn = on_sink, .ctx = &a };
		loop_add(a.epfd, &a.w_sink, 0);
	}

	bpf_agent_sync(&a.bpf, &a.eps); /* --watch names, before the first scan */
	if (!opt->no_guard)
		healer_discover_guards(&a.healer);
	{
		struct control_hooks hooks = { ctl_emit, ctl_changed, ctl_sync, ctl_healed, agent_status,
					       &a };
		const char *why = "";

		rc = control_open(&a.ctl, a.epfd, opt->control_path, &a.eps, &a.healer,
				  &a.env, &hooks, opt->rebind_timeout_ns, &opt->control_limits,
				  &why);
		if (rc) {
			fprintf(stderr, "sockwarden: control socket: %s (%s)\n", why,
				strerror(-rc));
			status = SW_EXIT_ENV;
			goto cleanup;
		}
		a.ctl_open = true;
		a.healer.rebind = healer_rebind;
		a.healer.rebind_ctx = &a;
		if (opt->n_watch) {
			/* the agent watches and heals its own control path */
			struct endpoint *e = ep_get_or_add(&a.eps, 0, opt->control_path, NULL);

			if (e)
				e->origin |= EP_FROM_WATCH;
		}
	}
	for (size_t i = 0; i < opt->paths.n; i++)
		if (opt->paths.v[i].action != ACTION_NONE)
			a.have_actions = true;
	actions_init(&a.actions, a.epfd, &a.env, &opt->flap, ctl_emit, &a);
	reconcile_initial(&a);
	emit_started(&a);
	state_flush(&a, true);
	metrics_flush(&a);

	while (!a.stopping) {
		if (a.sinks.have_jsonl)
			loop_mod(a.epfd, &a.w_sink, a.sink_waiting ? EPOLLOUT : 0);
		heal_timer_arm(&a);
		if (loop_run_once(a.epfd, -1) < 0)
			break;
		if (a.ctl_open)
			control_tick(&a.ctl, clock_mono_ns());
		sync_if_due(&a);
	}

	/* a clean stop: drain what the kernel queued, then say goodbye */
	ring_buffer__consume(a.bpf.rb);
	{
		json_t *ev = event_new(&a.env, "agent_stopping", "info", 0);

		json_object_set_new(ev, "mode", json_string(attach_mode_name(a.bpf.mode)));
		json_object_set_new(ev, "records", json_integer((json_int_t)a.records));
		json_object_set_new(ev, "events_lost",
				    json_integer((json_int_t)bpf_agent_counter(
					    &a.bpf, SW_CNT_RINGBUF_FULL)));
		emit(&a, ev);
	}
	sinks_drain(&a.sinks, 2000);
	state_flush(&a, true);
	metrics_flush(&a);
	/* a clean stop leaves no guard behind; a crash leaves them for the next run */
	ep_foreach(&a.eps, guard_remove_visit, &a.healer);

cleanup:
	scanner_stop(&a.scanner);
	if (a.epfd >= 0)
		close(a.epfd);
	if (a.sigfd >= 0)
		close(a.sigfd);
	if (a.reconcile_tfd >= 0)
		close(a.reconcile_tfd);
	if (a.tick_tfd >= 0)
		close(a.tick_tfd);
	if (a.heal_tfd >= 0)
		close(a.heal_tfd);
	if (a.ctl_open)
		control_close(&a.ctl);
	actions_close(&a.actions);
	healer_free(&a.healer);
	if (a.bpf.skel)
		bpf_agent_stop(&a.bpf);
	discovery_source_close(&a.disc);
	diag_netns_close_all();
	coalescer_free(&a.co);
	if (a.eps.buckets)
		ep_table_free(&a.eps);
	/* after every endpoint and guard directory has given its root back */
	ns_roots_free(&a.roots);
	free(a.orphans_reported.v);
	sinks_close(&a.sinks);
	if (a.have_journal)
		journal_close(&a.journal, 1000);
	metrics_free(&a.metrics);
	state_writer_close(&a.state);
	agent_reload_free(&a);
	return status;
}
