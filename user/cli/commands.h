/*
 * The CLI (user/cli/): one binary, `sockwarden`, whose main.c dispatches to
 * the commands declared here and to the daemon (`run`, through agent_run()
 * alone). The commands read the host (probe, doctor), ask the running agent
 * or read its state file (status), or read a journal (report); they use the
 * shared room and, for `run`'s flags, the sinks' limits. Nothing in the
 * daemon, the sinks or the shared room calls into the CLI. Each returns an
 * exit code (shared/exitcodes.h).
 */
#ifndef SW_COMMANDS_H
#define SW_COMMANDS_H
#include <stdbool.h>
#include <sys/types.h>

/* `sockwarden status [--json] [--state FILE] [--control PATH]` (status.c) */
int status_main(int argc, char **argv);
/* `sockwarden probe PATH [--json] [--timeout MS] [--pid PID]` (probe.c); no
 * BPF needed. pid > 0: PATH is resolved in PID's mount namespace. */
int probe_main(const char *path, bool json, int timeout_ms, pid_t pid);
/* `sockwarden doctor [--json]` (doctor.c), every namespace; no BPF needed */
int doctor_main(bool json);
/* `sockwarden report [FILE] [--json]` (report.c); argv[0] is "report" */
int report_command(int argc, char **argv);
#endif
