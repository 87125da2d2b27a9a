/*
 * Unit tests for user/agent/flapguard.c, the circuit breaker that stops the agent
 * from fighting a process that keeps removing a socket path (DESIGN §2
 * "Flap guard": more than N heals of one path inside a window open the
 * circuit; a half-open retry follows after a back-off that doubles up to a
 * cap).
 *
 * The guard takes the time as an argument, so every test drives a fake clock
 * in nanoseconds; nothing sleeps. The helper heal() does what healer.c does:
 * flap_check(), and flap_record() only when the verdict is FLAP_ALLOW.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "shared/clock.h"
#include "agent/flapguard.h"

#define S(x) ((uint64_t)(x) * NSEC_PER_SEC)
#define MS(x) ((uint64_t)(x) * NSEC_PER_MSEC)
/* a start far from 0, so no arithmetic can hide behind small numbers */
#define T0 S(1000000)

struct fixture {
	struct flap_cfg cfg;
	struct flap_state st;
};

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	flap_cfg_default(&f.cfg);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	flap_state_release(&f->st);
	return 0;
}

static enum flap_verdict heal(struct fixture *f, uint64_t now)
{
	enum flap_verdict v = flap_check(&f->st, &f->cfg, now);

	if (v == FLAP_ALLOW)
		flap_record(&f->st, &f->cfg, now);
	return v;
}

/* Opens the circuit with five heals one second apart and a sixth: returns
 * the time of the opening. */
static uint64_t open_circuit(struct fixture *f, uint64_t start)
{
	for (int i = 0; i < 5; i++)
		assert_int_equal(heal(f, start + S(i)), FLAP_ALLOW);
	assert_int_equal(heal(f, start + S(5)), FLAP_OPENED);
	return start + S(5);
}

static void test_default_cfg_is_5_in_60s_backoff_30s_to_600s(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(f->cfg.max_heals, 5);
	assert_true(f->cfg.window_ns == S(60));
	assert_true(f->cfg.backoff_ns == S(30));
	assert_true(f->cfg.backoff_max_ns == S(600));
}

static void test_five_heals_allowed_sixth_opens_seventh_suppressed(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 5; i++) {
		assert_int_equal(heal(f, T0 + S(i)), FLAP_ALLOW);
		assert_int_equal(f->st.circuit, FLAP_CLOSED);
	}
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + S(5)), 5);
	assert_int_equal(heal(f, T0 + S(5)), FLAP_OPENED);
	assert_int_equal(f->st.circuit, FLAP_OPEN);
	assert_true(f->st.retry_at_ns == T0 + S(5) + S(30));
	assert_int_equal(heal(f, T0 + S(6)), FLAP_SUPPRESSED);
	/* a refused heal is not a heal: the count stays at 5 */
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + S(6)), 5);
}

static void test_suppressed_until_the_last_nanosecond_of_backoff(void **state)
{
	struct fixture *f = *state;
	uint64_t opened = open_circuit(f, T0);

	assert_int_equal(heal(f, opened + S(30) - 1), FLAP_SUPPRESSED);
	assert_int_equal(f->st.circuit, FLAP_OPEN);
	/* exactly at retry_at the half-open trial may run */
	assert_int_equal(heal(f, opened + S(30)), FLAP_ALLOW);
	assert_int_equal(f->st.circuit, FLAP_HALF_OPEN);
}

static void test_half_open_allows_one_trial_heal(void **state)
{
	struct fixture *f = *state;
	uint64_t opened = open_circuit(f, T0);
	uint64_t trial = opened + S(31);

	assert_int_equal(heal(f, trial), FLAP_ALLOW);
	assert_int_equal(f->st.circuit, FLAP_HALF_OPEN);
	assert_true(f->st.last_heal_ns == trial);
	/* the path is lost again soon after the trial: no second heal */
	assert_int_equal(heal(f, trial + S(1)), FLAP_OPENED);
	assert_int_equal(f->st.circuit, FLAP_OPEN);
}

static void test_flap_in_half_open_reopens_with_doubled_backoff(void **state)
{
	struct fixture *f = *state;
	uint64_t opened = open_circuit(f, T0);
	uint64_t trial = opened + S(30);
	uint64_t reopened = trial + S(10);

	assert_int_equal(heal(f, trial), FLAP_ALLOW);
	assert_int_equal(heal(f, reopened), FLAP_OPENED);
	assert_true(f->st.retry_at_ns == reopened + S(60));
	assert_int_equal(heal(f, reopened + S(60) - 1), FLAP_SUPPRESSED);
	assert_int_equal(heal(f, reopened + S(60)), FLAP_ALLOW);
	assert_int_equal(f->st.circuit, FLAP_HALF_OPEN);
}

static void test_half_open_lost_again_one_ns_before_window_end_reopens(void **state)
{
	struct fixture *f = *state;
	uint64_t trial = open_circuit(f, T0) + S(30);

	assert_int_equal(heal(f, trial), FLAP_ALLOW);
	assert_int_equal(heal(f, trial + S(60) - 1), FLAP_OPENED);
}

static void test_backoff_doubles_and_caps_at_backoff_max(void **state)
{
	struct fixture *f = *state;
	/* 30, 60, 120, 240, 480, then the 600 s cap for good */
	const uint64_t want[] = { S(30), S(60), S(120), S(240), S(480), S(600), S(600),
				  S(600) };
	uint64_t now = open_circuit(f, T0);

	assert_true(f->st.retry_at_ns - now == want[0]);
	for (size_t i = 1; i < sizeof(want) / sizeof(want[0]); i++) {
		now = f->st.retry_at_ns;
		assert_int_equal(heal(f, now), FLAP_ALLOW);          /* the trial */
		assert_int_equal(f->st.circuit, FLAP_HALF_OPEN);
		now += S(1);
		assert_int_equal(heal(f, now), FLAP_OPENED);         /* flaps again */
		if (f->st.retry_at_ns - now != want[i])
			fail_msg("opening %zu: back-off %llu s, want %llu s", i + 1,
				 (unsigned long long)((f->st.retry_at_ns - now) / NSEC_PER_SEC),
				 (unsigned long long)(want[i] / NSEC_PER_SEC));
	}
}

static void test_backoff_cap_not_a_power_of_two_multiple(void **state)
{
	struct fixture *f = *state;
	uint64_t now;

	f->cfg.backoff_max_ns = S(100);
	now = open_circuit(f, T0);
	assert_true(f->st.retry_at_ns - now == S(30));
	for (int i = 0; i < 3; i++) {
		now = f->st.retry_at_ns;
		assert_int_equal(heal(f, now), FLAP_ALLOW);
		now += S(1);
		assert_int_equal(heal(f, now), FLAP_OPENED);
	}
	/* 30, 60, then min(120, 100) = 100, and 100 again */
	assert_true(f->st.retry_at_ns - now == S(100));
}

static void test_trial_that_holds_a_window_closes_and_resets_backoff(void **state)
{
	struct fixture *f = *state;
	uint64_t opened = open_circuit(f, T0);
	uint64_t trial = opened + S(30);
	uint64_t later = trial + S(60);

	assert_int_equal(heal(f, trial), FLAP_ALLOW);
	/* the path stayed for a whole window after the trial */
	assert_int_equal(heal(f, later), FLAP_ALLOW);
	assert_int_equal(f->st.circuit, FLAP_CLOSED);
	assert_int_equal(flap_recent(&f->st, &f->cfg, later), 1);
	/* the circuit counts afresh: four more heals, then it opens again,
	 * with the first back-off, not a doubled one */
	for (int i = 1; i <= 4; i++)
		assert_int_equal(heal(f, later + S(i)), FLAP_ALLOW);
	assert_int_equal(heal(f, later + S(5)), FLAP_OPENED);
	assert_true(f->st.retry_at_ns == later + S(5) + S(30));
}

static void test_heals_spread_beyond_the_window_never_open(void **state)
{
	struct fixture *f = *state;

	/* one heal every 12 s: the 60 s window never holds more than 5 */
	for (int i = 0; i < 200; i++) {
		uint64_t now = T0 + (uint64_t)i * S(12);

		if (heal(f, now) != FLAP_ALLOW)
			fail_msg("heal %d at +%d s refused", i + 1, i * 12);
		assert_true(flap_recent(&f->st, &f->cfg, now) <= 5);
	}
	assert_int_equal(f->st.circuit, FLAP_CLOSED);
}

static void test_heals_slightly_too_close_open_on_the_sixth(void **state)
{
	struct fixture *f = *state;

	/* every 11.9 s: six heals fit in 59.5 s */
	for (int i = 0; i < 5; i++)
		assert_int_equal(heal(f, T0 + (uint64_t)i * MS(11900)), FLAP_ALLOW);
	assert_int_equal(heal(f, T0 + 5 * MS(11900)), FLAP_OPENED);
}

static void test_recent_counts_only_the_window(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(flap_recent(&f->st, &f->cfg, T0), 0);
	flap_record(&f->st, &f->cfg, T0);
	flap_record(&f->st, &f->cfg, T0 + S(10));
	flap_record(&f->st, &f->cfg, T0 + S(20));
	flap_record(&f->st, &f->cfg, T0 + S(50));
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + S(50)), 4);
	/* a heal exactly one window old is out */
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + S(60) - 1), 4);
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + S(60)), 3);
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + S(75)), 2);
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + S(109)), 1);
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + S(110)), 0);
}

static void test_recent_across_ring_wraparound(void **state)
{
	struct fixture *f = *state;
	uint64_t now = T0;

	/* more heals than the ring holds, one per second: the window holds 60 */
	for (int i = 0; i < 3 * FLAP_MAX_TRACKED + 7; i++) {
		now = T0 + (uint64_t)i * S(1);
		flap_record(&f->st, &f->cfg, now);
	}
	assert_int_equal(f->st.n, FLAP_MAX_TRACKED);
	assert_int_equal(flap_recent(&f->st, &f->cfg, now), 60);
	/* with a long window the ring's size is the limit */
	f->cfg.window_ns = S(3600);
	assert_int_equal(flap_recent(&f->st, &f->cfg, now), FLAP_MAX_TRACKED);
}

static void test_largest_configurable_max_heals_still_opens(void **state)
{
	struct fixture *f = *state;
	unsigned max = FLAP_MAX_TRACKED - 1; /* --flap-max accepts 1..63 */

	f->cfg.max_heals = max;
	for (unsigned i = 0; i < max; i++)
		assert_int_equal(heal(f, T0 + i * MS(100)), FLAP_ALLOW);
	assert_int_equal(heal(f, T0 + max * MS(100)), FLAP_OPENED);
}

static void test_max_heals_one(void **state)
{
	struct fixture *f = *state;

	f->cfg.max_heals = 1;
	assert_int_equal(heal(f, T0), FLAP_ALLOW);
	assert_int_equal(heal(f, T0 + S(59)), FLAP_OPENED);
}

static void test_max_heals_zero_is_off(void **state)
{
	struct fixture *f = *state;

	f->cfg.max_heals = 0;
	f->cfg.window_ns = S(60);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(heal(f, T0 + (uint64_t)i), FLAP_ALLOW);
}

static void test_switched_off_with_the_circuit_open_allows_at_once(void **state)
{
	struct fixture *f = *state;
	uint64_t t = open_circuit(f, T0);

	assert_int_equal(heal(f, t + 1), FLAP_SUPPRESSED);
	f->cfg.max_heals = 0; /* a reload switched it off */
	assert_int_equal(heal(f, t + 2), FLAP_ALLOW);
	assert_int_equal(f->st.circuit, FLAP_CLOSED);
	f->cfg.max_heals = 5; /* and on again: a fresh start, no back-off carried */
	assert_int_equal(f->st.backoff_ns, 0);
}

static void test_paths_are_independent(void **state)
{
	struct fixture *f = *state;
	struct flap_state other = {0};

	(void)open_circuit(f, T0);
	assert_int_equal(flap_check(&other, &f->cfg, T0 + S(6)), FLAP_ALLOW);
	assert_int_equal(other.circuit, FLAP_CLOSED);
	flap_state_release(&other);
}

/* The ring is allocated by the first heal (most endpoints never heal), and
 * released with the state. */
static void test_ring_allocated_by_the_first_heal_only(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(flap_check(&f->st, &f->cfg, T0), FLAP_ALLOW);
	assert_null(f->st.heals);
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0), 0);
	flap_record(&f->st, &f->cfg, T0);
	assert_non_null(f->st.heals);
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + 1), 1);
	flap_state_release(&f->st);
	assert_null(f->st.heals);
	assert_int_equal(f->st.circuit, FLAP_CLOSED);
	assert_int_equal(flap_recent(&f->st, &f->cfg, T0 + 1), 0);
}

static void test_circuit_names(void **state)
{
	(void)state;
	assert_string_equal(flap_circuit_name(FLAP_CLOSED), "closed");
	assert_string_equal(flap_circuit_name(FLAP_OPEN), "open");
	assert_string_equal(flap_circuit_name(FLAP_HALF_OPEN), "half_open");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_default_cfg_is_5_in_60s_backoff_30s_to_600s),
		T(test_five_heals_allowed_sixth_opens_seventh_suppressed),
		T(test_suppressed_until_the_last_nanosecond_of_backoff),
		T(test_half_open_allows_one_trial_heal),
		T(test_flap_in_half_open_reopens_with_doubled_backoff),
		T(test_half_open_lost_again_one_ns_before_window_end_reopens),
		T(test_backoff_doubles_and_caps_at_backoff_max),
		T(test_backoff_cap_not_a_power_of_two_multiple),
		T(test_trial_that_holds_a_window_closes_and_resets_backoff),
		T(test_heals_spread_beyond_the_window_never_open),
		T(test_heals_slightly_too_close_open_on_the_sixth),
		T(test_recent_counts_only_the_window),
		T(test_recent_across_ring_wraparound),
		T(test_largest_configurable_max_heals_still_opens),
		T(test_max_heals_one),
		T(test_max_heals_zero_is_off),
		T(test_switched_off_with_the_circuit_open_allows_at_once),
		T(test_paths_are_independent),
		T(test_circuit_names),
		T(test_ring_allocated_by_the_first_heal_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
