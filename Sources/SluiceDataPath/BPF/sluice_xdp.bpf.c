// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Sluice's XDP program: redirect a queue's frames to the AF_XDP socket the
 * driver plugin names, optionally only those matching a prefilter (the rest
 * go to the kernel, so SSH to the box keeps working).
 *
 * Map sizes are placeholders: the loader sets max_entries from the sysfs
 * rx-queue count (or the plugin's minimum) before loading.
 *
 * Built twice: as is (sluice_xdp), and with SLUICE_RX_METADATA defined
 * (sluice_xdp_meta.bpf.c), which also stores the driver's RX timestamp and
 * RSS hash in the frame's metadata area. The kfuncs that read them exist
 * only from Linux 6.3 and only in device-bound programs, so the loader uses
 * that variant only where the kernel has them; the plain one loads on 6.1. */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define SLUICE_MAX_PORT_RANGES 8
#define SLUICE_NO_KEY 0xFFFFFFFFu

enum sluice_protocol_bits {
    SLUICE_PROTO_UDP = 1,
    SLUICE_PROTO_TCP = 2,
    SLUICE_PROTO_ICMP = 4,
};

/* Shared with the loader (XDPProgram.swift): keep the layouts in step. */
struct sluice_prefilter {
    __u32 enabled;          /* 0: every frame goes to the socket */
    __u32 protocols;        /* sluice_protocol_bits */
    __u32 port_range_count; /* 0: any port; ranges apply to UDP/TCP destination ports */
    __u32 reserved;
    struct {
        __u16 first, last;
    } ports[SLUICE_MAX_PORT_RANGES];
};

struct sluice_queue_counters {
    __u64 redirected;      /* handed to bpf_redirect_map with a socket at the key */
    __u64 passed;          /* not matching the prefilter: to the kernel stack */
    __u64 redirect_failed; /* matched, but no socket at the key: to the kernel */
    /* The metadata variant only (zero in the plain program): */
    __u64 metadata_written;      /* struct sluice_rx_metadata stored before the frame */
    __u64 metadata_no_room;      /* bpf_xdp_adjust_meta refused: the frame goes without */
    __u64 timestamp_unsupported; /* the kfunc said EOPNOTSUPP: the driver does not provide it */
    __u64 timestamp_absent;      /* the driver had none for this frame (ENODATA, or 0) */
    __u64 hash_unsupported;
    __u64 hash_absent;
};

/* What the metadata variant stores right before the frame's first byte, in
 * the metadata area the AF_XDP socket copies into the UMEM with the frame
 * (xdp->data_meta .. xdp->data). Shared with RxMetadata in PacketBatch.swift
 * and the reader in QueueRunner.swift: keep the layouts in step. 24 bytes, a
 * multiple of 8, so the struct is as aligned as the frame. */
#define SLUICE_RX_METADATA_MAGIC 0x534c4d44u /* "SLMD" */
#define SLUICE_RX_METADATA_VERSION 1
enum sluice_rx_metadata_flags {
    SLUICE_RX_TIMESTAMP_VALID = 1,
    SLUICE_RX_HASH_VALID = 2,
};
struct sluice_rx_metadata {
    __u32 magic;     /* SLUICE_RX_METADATA_MAGIC: the reader trusts nothing else */
    __u16 version;   /* SLUICE_RX_METADATA_VERSION */
    __u16 flags;     /* sluice_rx_metadata_flags */
    __u64 timestamp; /* the driver's RX time, ns (PHC / CLOCK_TAI on real NICs) */
    __u32 hash;      /* the driver's RSS hash */
    __u32 hash_type; /* enum xdp_rss_hash_type (XDP_RSS_L4 = 8: ports were hashed) */
};

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} xsks_map SEC(".maps");

/* rx_queue_index -> XSKMAP key; SLUICE_NO_KEY for queues Sluice does not own. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} queue_to_key SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct sluice_prefilter);
} prefilter SEC(".maps");

/* Indexed by rx_queue_index. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct sluice_queue_counters);
} queue_counters SEC(".maps");

static __always_inline int port_matches(const struct sluice_prefilter *filter, __u16 port)
{
    if (filter->port_range_count == 0)
        return 1;
#pragma unroll
    for (int i = 0; i < SLUICE_MAX_PORT_RANGES; i++) {
        if (i >= filter->port_range_count)
            break;
        if (port >= filter->ports[i].first && port <= filter->ports[i].last)
            return 1;
    }
    return 0;
}

/* Whether the frame is one Sluice wants. Unparseable frames are not: the
 * kernel can drop them, and nothing the filter cannot read reaches Sluice. */
static __always_inline int wanted(struct xdp_md *ctx, const struct sluice_prefilter *filter)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return 0;
    __u16 proto = eth->h_proto;
    void *l3 = eth + 1;
    if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
        __u16 *vlan = l3; /* TCI, then the inner EtherType */
        if ((void *)(vlan + 2) > data_end)
            return 0;
        proto = vlan[1];
        l3 = vlan + 2;
    }
    __u8 l4proto;
    void *l4;
    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > data_end || ip->ihl < 5)
            return 0;
        l4proto = ip->protocol;
        l4 = (void *)ip + ip->ihl * 4;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > data_end)
            return 0;
        l4proto = ip6->nexthdr; /* extension headers: not matched */
        l4 = ip6 + 1;
    } else {
        return 0;
    }
    if (l4proto == IPPROTO_ICMP || l4proto == IPPROTO_ICMPV6)
        return (filter->protocols & SLUICE_PROTO_ICMP) != 0;
    __u32 bit = l4proto == IPPROTO_UDP ? SLUICE_PROTO_UDP : l4proto == IPPROTO_TCP ? SLUICE_PROTO_TCP : 0;
    if (!(filter->protocols & bit))
        return 0;
    /* Both UDP and TCP start with source and destination port. */
    struct udphdr *ports = l4;
    if ((void *)(ports + 1) > data_end)
        return 0;
    return port_matches(filter, bpf_ntohs(ports->dest));
}

#ifdef SLUICE_RX_METADATA
/* As the kernel declares it (include/net/xdp.h, not UAPI): the kfunc's BTF
 * prototype names the enum, and libbpf matches the extern's prototype kind
 * by kind. Only the name matters here; the values are the kernel's. */
enum xdp_rss_hash_type { XDP_RSS_TYPE_NONE = 0 };

/* Strong externs: this variant is loaded only where the probe found the
 * kfuncs in vmlinux BTF (the plain program carries none). */
extern int bpf_xdp_metadata_rx_timestamp(const struct xdp_md *ctx, __u64 *timestamp) __ksym;
extern int bpf_xdp_metadata_rx_hash(const struct xdp_md *ctx, __u32 *hash,
                                    enum xdp_rss_hash_type *rss_type) __ksym;

/* Stores the driver's timestamp and hash before the frame. Every packet
 * pointer is invalid afterwards (bpf_xdp_adjust_meta moves data_meta). */
static __always_inline void store_rx_metadata(struct xdp_md *ctx, struct sluice_queue_counters *counters)
{
    if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct sluice_rx_metadata)) != 0) {
        if (counters)
            counters->metadata_no_room++;
        return;
    }
    void *data = (void *)(long)ctx->data;
    struct sluice_rx_metadata *meta = (void *)(long)ctx->data_meta;
    if ((void *)(meta + 1) > data)
        return;
    __u64 timestamp = 0;
    __u32 hash = 0;
    enum xdp_rss_hash_type hash_type = XDP_RSS_TYPE_NONE;
    __u16 flags = 0;
    int result = bpf_xdp_metadata_rx_timestamp(ctx, &timestamp);
    /* veth answers 0 for an skb without a hardware stamp: absent too. */
    if (result == 0 && timestamp != 0)
        flags |= SLUICE_RX_TIMESTAMP_VALID;
    else if (counters && result == -EOPNOTSUPP)
        counters->timestamp_unsupported++;
    else if (counters)
        counters->timestamp_absent++;
    result = bpf_xdp_metadata_rx_hash(ctx, &hash, &hash_type);
    if (result == 0)
        flags |= SLUICE_RX_HASH_VALID;
    else if (counters && result == -EOPNOTSUPP)
        counters->hash_unsupported++;
    else if (counters)
        counters->hash_absent++;
    meta->magic = SLUICE_RX_METADATA_MAGIC;
    meta->version = SLUICE_RX_METADATA_VERSION;
    meta->flags = flags;
    meta->timestamp = timestamp;
    meta->hash = hash;
    meta->hash_type = (__u32)hash_type;
    if (counters)
        counters->metadata_written++;
}
#endif

SEC("xdp")
int sluice_xdp(struct xdp_md *ctx)
{
    __u32 queue = ctx->rx_queue_index;
    struct sluice_queue_counters *counters = bpf_map_lookup_elem(&queue_counters, &queue);
    __u32 *key = bpf_map_lookup_elem(&queue_to_key, &queue);
    if (!key || *key == SLUICE_NO_KEY)
        goto pass;
    __u32 zero = 0;
    struct sluice_prefilter *filter = bpf_map_lookup_elem(&prefilter, &zero);
    if (filter && filter->enabled && !wanted(ctx, filter))
        goto pass;
#ifdef SLUICE_RX_METADATA
    store_rx_metadata(ctx, counters);
#endif
    /* XDP_PASS as the flags argument: the action when no socket sits at the key. */
    long action = bpf_redirect_map(&xsks_map, *key, XDP_PASS);
    if (counters) {
        if (action == XDP_REDIRECT)
            counters->redirected++;
        else
            counters->redirect_failed++;
    }
    return action;
pass:
    if (counters)
        counters->passed++;
    return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
