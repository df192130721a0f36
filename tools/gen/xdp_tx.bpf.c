// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* sluice-gen's transmitter: run by BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES,
 * every XDP_TX leaves the generator veth as a real frame. The UDP source port
 * walks over `flows` values from `base_port` so a receiver sees several flows;
 * the counter is per CPU, so one generator thread per CPU needs no atomics.
 * The template's UDP checksum is 0 (allowed for IPv4), so no checksum fix-up. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the loader before load (read-only data: the verifier folds it). The
 * only variable in .rodata, so the loader writes it at offset 0; keep the
 * layout in step with struct gen_config in gen.c. */
volatile const struct {
    __u32 flows;
    __u32 base_port;
    __u32 stamp; /* --stamp: the send time after the payload's 8-byte magic */
} config = { 1, 9000, 0 };

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} sent SEC(".maps");

SEC("xdp")
int sluice_gen_tx(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    __u32 key = 0;
    __u64 *counter = bpf_map_lookup_elem(&sent, &key);
    if (!counter)
        return XDP_ABORTED;
    __u64 sequence = (*counter)++;
    if (config.flows > 1) {
        struct ethhdr *eth = data;
        struct iphdr *ip = (void *)(eth + 1);
        struct udphdr *udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > end)
            return XDP_ABORTED;
        udp->source = bpf_htons((__u16)(config.base_port + sequence % config.flows));
    }
    if (config.stamp) {
        /* CLOCK_MONOTONIC, as the receiver's clock_gettime reads it. */
        __u8 *stamp = data + sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) + 8;
        if ((void *)(stamp + 8) > end)
            return XDP_ABORTED;
        __u64 now = bpf_ktime_get_ns();
        __builtin_memcpy(stamp, &now, sizeof now);
    }
    return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
