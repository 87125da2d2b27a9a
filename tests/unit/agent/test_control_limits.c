/*
 * Unit tests for the control server's limits (user/agent/control_limits.c):
 * control_limits_resolve, control_idle_deadline and control_evict_pick, what
 * protects the agent from peers that never stop connecting or registering.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agent/control.h"

static void assert_limits_equal(const struct control_limits *a, const struct control_limits *b)
{
	assert_int_equal(a->max_connections, b->max_connections);
	assert_int_equal(a->max_registrations, b->max_registrations);
	assert_int_equal(a->max_registrations_per_connection, b->max_registrations_per_connection);
	assert_int_equal(a->idle_timeout_ns, b->idle_timeout_ns);
}

static void test_limits_default_when_unset(void **state)
{
	struct control_limits zero = {0};
	struct control_limits l = control_limits_resolve(&zero, UINT64_MAX);
	struct control_limits n = control_limits_resolve(NULL, UINT64_MAX);

	(void)state;
	assert_int_equal(l.max_connections, CONTROL_PEERS_MAX);
	assert_int_equal(l.max_registrations, CONTROL_REGS_TOTAL);
	assert_int_equal(l.max_registrations_per_connection, CONTROL_REGS_PER_PEER);
	assert_int_equal(l.idle_timeout_ns, CONTROL_IDLE_TIMEOUT_NS);
	assert_limits_equal(&l, &n);
}

static void test_limits_configured_values_kept(void **state)
{
	struct control_limits in = { .max_connections = 7, .max_registrations = 9,
				     .max_registrations_per_connection = 3,
				     .idle_timeout_ns = 1500000000ULL };
	struct control_limits l = control_limits_resolve(&in, UINT64_MAX);

	(void)state;
	assert_limits_equal(&l, &in);
}

static void test_limits_connections_fit_the_fd_limit(void **state)
{
	struct control_limits in = { .max_connections = 1024 };

	(void)state;
	/* 1024 open files: 256 kept back, two per connection */
	assert_int_equal(control_limits_resolve(&in, 1024).max_connections, (1024 - 256) / 2);
	/* room for all of them: unchanged */
	assert_int_equal(control_limits_resolve(&in, 256 + 2 * 1024).max_connections, 1024);
	/* no room at all still leaves one connection, never zero */
	assert_int_equal(control_limits_resolve(&in, 100).max_connections, 1);
	/* only the connection limit depends on fds */
	assert_int_equal(control_limits_resolve(&in, 100).max_registrations, CONTROL_REGS_TOTAL);
}

static void test_idle_deadline_only_without_registrations(void **state)
{
	struct ctl_peer p = { .last_active_ns = 1000 };

	(void)state;
	assert_int_equal(control_idle_deadline(&p, 50), 1050);
	/* a server's control fd: never timed out, however long it is silent */
	p.n_regs = 1;
	assert_true(control_idle_deadline(&p, 50) == UINT64_MAX);
	p.n_regs = 0;
	p.dead = true;
	assert_true(control_idle_deadline(&p, 50) == UINT64_MAX);
}

static void test_evict_pick_longest_silent_unregistered(void **state)
{
	struct ctl_peer a = { .last_active_ns = 30 }, b = { .last_active_ns = 10, .n_regs = 2 },
			c = { .last_active_ns = 20 }, d = { .last_active_ns = 5, .dead = true };

	(void)state;
	a.next = &b;
	b.next = &c;
	c.next = &d;
	/* b is older but registered, d is older but already gone */
	assert_ptr_equal(control_evict_pick(&a), &c);
	c.n_regs = 1;
	assert_ptr_equal(control_evict_pick(&a), &a);
	a.n_regs = 1;
	assert_null(control_evict_pick(&a));
	assert_null(control_evict_pick(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limits_default_when_unset),
		cmocka_unit_test(test_limits_configured_values_kept),
		cmocka_unit_test(test_limits_connections_fit_the_fd_limit),
		cmocka_unit_test(test_idle_deadline_only_without_registrations),
		cmocka_unit_test(test_evict_pick_longest_silent_unregistered),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
