/* `sockwarden probe PATH` and `sockwarden doctor`: no BPF needed. */
#ifndef SW_PROBE_H
#define SW_PROBE_H
#include <stdbool.h>
int probe_main(const char *path, bool json, int timeout_ms);
int doctor_main(bool json);
#endif
