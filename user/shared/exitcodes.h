/* One exit-code convention for every command (DESIGN §3). */
#ifndef SW_EXITCODES_H
#define SW_EXITCODES_H
enum {
	SW_EXIT_OK = 0,        /* success; for probe/doctor: healthy */
	SW_EXIT_UNHEALTHY = 1, /* probe/doctor found something unhealthy */
	SW_EXIT_USAGE = 2,     /* bad command line, bad config */
	SW_EXIT_ENV = 3,       /* environment: no BPF, no privilege, kernel lacks a feature */
};
#endif
