#ifndef SLUICE_CXDP_SHIM_H
#define SLUICE_CXDP_SHIM_H
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>
#include <linux/if_xdp.h>
#include <linux/if_link.h>
#endif
