// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The storage of the kernel side: the one definition of every map and
 * read-only global bpf/maps.h declares, and the license, for the linked
 * object. The other objects reach them as externs; this one is linked first
 * (bpf/maps.h says why).
 */
#define SW_MAPS_DEFINE
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
