#ifndef SLUICE_CXDP_SHIM_H
#define SLUICE_CXDP_SHIM_H
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>
#include <linux/if_xdp.h>
#include <linux/if_link.h>

/* libbpf's option structs are built here, in C, with LIBBPF_OPTS: it sets `sz`
 * to the sizeof of the headers we compiled against and zeroes the whole struct,
 * tail padding included. Built in Swift, `sz` had to be guessed (MemoryLayout's
 * size or stride) and the padding past the last field was not guaranteed zero,
 * so libbpf 1.1 logged "bpf_xdp_query_opts has non-zero extra bytes" on every
 * start. Swift sees only plain arguments and result structs. */

/* What bpf_xdp_query() reports about an interface; attach_mode is XDP_ATTACHED_*. */
struct sluice_xdp_query_result {
    __u32 prog_id;
    __u32 drv_prog_id;
    __u32 hw_prog_id;
    __u32 skb_prog_id;
    __u8 attach_mode;
};

/* 0 or a negative errno, as bpf_xdp_query(). */
static inline int sluice_xdp_query(int ifindex, struct sluice_xdp_query_result *result)
{
    LIBBPF_OPTS(bpf_xdp_query_opts, opts);
    int error = bpf_xdp_query(ifindex, 0, &opts);
    if (error)
        return error;
    result->prog_id = opts.prog_id;
    result->drv_prog_id = opts.drv_prog_id;
    result->hw_prog_id = opts.hw_prog_id;
    result->skb_prog_id = opts.skb_prog_id;
    result->attach_mode = opts.attach_mode;
    return 0;
}

/* bpf_object__open_mem() with only object_name set; NULL with errno on failure. */
static inline struct bpf_object *sluice_bpf_object_open_mem(const void *bytes, size_t size, const char *object_name)
{
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = object_name);
    return bpf_object__open_mem(bytes, size, &opts);
}

/* bpf_link_create(BPF_XDP) with XDP_FLAGS_* in flags; a link fd or a negative errno. */
static inline int sluice_bpf_link_create_xdp(int prog_fd, int ifindex, __u32 flags)
{
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
    return bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);
}
#endif
