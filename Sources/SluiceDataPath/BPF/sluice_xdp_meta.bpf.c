// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Sluice's XDP program with driver RX metadata (timestamp, RSS hash) stored
 * before each redirected frame: the same source as sluice_xdp.bpf.c,
 * compiled with SLUICE_RX_METADATA (see there). Loaded device-bound, on
 * kernels with the metadata kfuncs only; embedded as EmbeddedBPF.sluice_xdp_meta. */
#define SLUICE_RX_METADATA 1
#include "sluice_xdp.bpf.c"
