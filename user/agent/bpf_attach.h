/*
 * Loading the BPF side: probe the kernel once, pick the attach mode, then
 * open → configure (rodata, autoload) → load → attach. Also keeps the kernel's
 * watch maps in step with the endpoint table.
 */
#ifndef SW_BPF_ATTACH_H
#define SW_BPF_ATTACH_H
#include <bpf/libbpf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "endpoints.h"
#include "redirect.h"
#include "sockwarden.h"
#include "shared/config.h"

struct sockwarden_bpf;

struct bpf_agent {
	struct sockwarden_bpf *skel;
	struct ring_buffer *rb;
	enum attach_mode mode;
	char mode_reason[256];
	struct redirect redirect; /* the connect redirect, when the kernel has it */
	/* what the kernel's filters hold is counted per key in the endpoint
	 * table (ep_counted), so a sync applies differences only */
};

/* Environment checks; on failure fills `why` with what exactly is missing. */
int bpf_check_environment(char *why, size_t whylen);
/* Whether fentry programs can load and attach here (reason filled either way). */
bool bpf_fentry_usable(char *why, size_t whylen);
int bpf_agent_start(struct bpf_agent *a, enum attach_mode mode, bool any_path,
		    bool watch_all, bool redirect, ring_buffer_sample_fn on_record, void *ctx,
		    char *err, size_t errlen);
void bpf_agent_stop(struct bpf_agent *a);
/* Brings watched_names, watched_inodes and watched_paths in line with t. */
int bpf_agent_sync(struct bpf_agent *a, const struct endpoint_table *t);
uint64_t bpf_agent_counter(struct bpf_agent *a, enum sw_counter c);
int bpf_agent_connect_stat(struct bpf_agent *a, const char *path, int err_index,
			   struct sw_connect_stat *out);
/* Per-client failures of one streak, largest first. */
size_t bpf_agent_clients(struct bpf_agent *a, const char *path, int err_index,
			 uint32_t gen, struct sw_client_key *keys,
			 struct sw_client_stat *vals, size_t max);
/* Forget a streak's client entries once reported. */
void bpf_agent_clients_forget(struct bpf_agent *a, const char *path,
			      int err_index, uint32_t gen);
#endif
