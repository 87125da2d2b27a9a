/*
 * The daemon (`sockwarden run`): user/agent/ owns the event loop and every
 * component it wires (the BPF loader, the endpoint table, discovery's scans,
 * the coalescer, the healer and its guards, the control server, the actions).
 * It uses the shared room (user/shared/) and the sinks (user/sinks/); nothing
 * in either calls back into it. The CLI starts it through agent_run() alone.
 */
#ifndef SW_AGENT_H
#define SW_AGENT_H
#include "shared/config.h"

int agent_run(const struct agent_options *opt);
#endif
