/*
 * mlx5: the queue schemes of the mlx5_core driver (ConnectX-4 and later).
 *
 * Before Linux 6.1 (commit 3db4c85cde7a landed in 6.1) mlx5 splits the queue ids
 * in two halves: regular RQs 0..nch-1 and zero-copy XSK RQs nch..2nch-1. A
 * zero-copy socket for channel i binds to queue nch+i, ntuple rules must use
 * `action nch+i`, the XDP program sees rx_queue_index nch+i (so that is the
 * XSKMAP key), the XSK RQs are not in RSS, and the channel count cannot
 * change while such a socket is live. The netdev then has 2*nch real rx
 * queues, which is how the old scheme is recognised even on distribution
 * kernels that backported the change under an old version number.
 *
 * Since 6.1 the ids are the channel ids, and the XSK RQ replaces the regular
 * RQ of its channel in RSS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/driver_plugin.h"

enum queue_scheme { SCHEME_UNKNOWN, SCHEME_SPLIT, SCHEME_IDENTITY };

struct scheme_verdict {
    enum queue_scheme scheme;
    char why[192]; /* the evidence, to be quoted inside a sentence */
};

/* Parses "major.minor" at the start of a kernel release. Returns 0 on
 * success. */
static int parse_release(const char *release, unsigned long *major, unsigned long *minor)
{
    char *end;
    if (release[0] < '0' || release[0] > '9')
        return -1;
    *major = strtoul(release, &end, 10);
    if (*end != '.' || end[1] < '0' || end[1] > '9')
        return -1;
    *minor = strtoul(end + 1, NULL, 10);
    return 0;
}

static struct scheme_verdict detect_scheme(const struct sluice_driver_facts *facts)
{
    struct scheme_verdict v = { SCHEME_UNKNOWN, "" };
    uint32_t nch = sluice_facts__rx_channels(facts);
    uint32_t rxq = facts->sysfs_rx_queues;
    unsigned long major, minor;

    if (nch > UINT32_MAX / 2) { /* nch + i must not wrap */
        snprintf(v.why, sizeof(v.why), "its channel count %u is implausible", nch);
        return v;
    }
    /* sysfs first: it reflects what the running driver really does. */
    if (nch && rxq == 2 * (uint64_t)nch) {
        v.scheme = SCHEME_SPLIT;
        snprintf(v.why, sizeof(v.why), "sysfs shows %u rx queues for %u channels", rxq, nch);
        return v;
    }
    if (nch && rxq == nch) {
        v.scheme = SCHEME_IDENTITY;
        snprintf(v.why, sizeof(v.why), "sysfs shows %u rx queues for %u channels", rxq, nch);
        return v;
    }
    if (parse_release(facts->kernel_release, &major, &minor) == 0) {
        int before_6_1 = major < 6 || (major == 6 && minor < 1);
        v.scheme = before_6_1 ? SCHEME_SPLIT : SCHEME_IDENTITY;
        snprintf(v.why, sizeof(v.why),
                 "kernel %s is %s 6.1 and sysfs (%u rx queues for %u channels) does not tell",
                 facts->kernel_release, before_6_1 ? "before" : "at or after", rxq, nch);
        return v;
    }
    snprintf(v.why, sizeof(v.why),
             "sysfs shows %u rx queues for %u channels and kernel release '%s' has no version",
             rxq, nch, facts->kernel_release);
    return v;
}

/* Only zero-copy sockets use the XSK RQs; in copy mode (forced, or because
 * XDP runs in skb mode) AF_XDP reads the regular RQs like any driver. */
static int uses_xsk_rqs(const struct sluice_driver_facts *facts)
{
    return facts->zerocopy_requested && facts->xdp_mode != SLUICE_XDP_MODE_SKB;
}

static int refuse_unknown(const struct scheme_verdict *v, const struct sluice_driver_facts *facts,
                          char *msg, size_t msg_len)
{
    snprintf(msg, msg_len,
             "Cannot tell which mlx5 queue scheme %s uses because %s; check `ethtool -l %s` and /sys/class/net/%s/queues.",
             facts->ifname, v->why, facts->ifname, facts->ifname);
    return -1;
}

static int mlx5__match(const struct sluice_driver_facts *facts, char *msg, size_t msg_len)
{
    if (strcmp(facts->driver, "mlx5_core") != 0)
        return 0;
    struct scheme_verdict v = detect_scheme(facts);
    const char *scheme = v.scheme == SCHEME_SPLIT    ? "the pre-6.1 split queue scheme (XSK queues at channels+i)"
                         : v.scheme == SCHEME_IDENTITY ? "the 6.1+ identity queue scheme"
                                                      : "an undetermined queue scheme";
    snprintf(msg, msg_len, "Driver mlx5_core on %s uses %s: %s.", facts->ifname, scheme, v.why);
    return 100;
}

static int mlx5__map_channel(const struct sluice_driver_facts *facts, uint32_t channel,
                             struct sluice_queue_map *map, char *msg, size_t msg_len)
{
    uint32_t nch = sluice_facts__rx_channels(facts);
    struct scheme_verdict v = detect_scheme(facts);
    if (v.scheme == SCHEME_UNKNOWN)
        return refuse_unknown(&v, facts, msg, msg_len);
    if (channel >= nch) {
        snprintf(msg, msg_len, "Channel %u does not exist on %s, which has %u channels.",
                 channel, facts->ifname, nch);
        return -1;
    }
    if (v.scheme == SCHEME_IDENTITY) {
        map->bind_queue = map->steer_queue = map->xskmap_key = channel;
        snprintf(msg, msg_len, "mlx5 with the Linux 6.1+ queue scheme serves AF_XDP for channel %u on queue %u.",
                 channel, channel);
        return 0;
    }
    if (!uses_xsk_rqs(facts)) {
        map->bind_queue = map->steer_queue = map->xskmap_key = channel;
        snprintf(msg, msg_len,
                 "In copy mode mlx5 before Linux 6.1 delivers channel %u on its regular queue %u; only zero-copy sockets would use queue %u.",
                 channel, channel, nch + channel);
        return 0;
    }
    uint32_t queue = nch + channel;
    map->bind_queue = map->steer_queue = map->xskmap_key = queue;
    snprintf(msg, msg_len,
             "mlx5 before Linux 6.1 (%s) serves zero-copy AF_XDP for channel %u on queue %u, so the socket, the steering action and the XSKMAP key all use %u.",
             v.why, channel, queue, queue);
    return 0;
}

static int mlx5__prepare(const struct sluice_driver_facts *facts, struct sluice_requirements *req,
                         char *msg, size_t msg_len)
{
    uint32_t nch = sluice_facts__rx_channels(facts);
    struct scheme_verdict v = detect_scheme(facts);
    if (v.scheme == SCHEME_UNKNOWN)
        return refuse_unknown(&v, facts, msg, msg_len);
    if (v.scheme == SCHEME_SPLIT && uses_xsk_rqs(facts)) {
        req->flags |= SLUICE_REQ_NTUPLE_ON | SLUICE_REQ_STEERING_REQUIRED;
        req->min_xskmap_entries = 2 * nch;
        snprintf(msg, msg_len,
                 "On mlx5 before Linux 6.1 the zero-copy AF_XDP queues of %s (%u-%u) are outside RSS, so only traffic that ntuple rules steer to them arrives; Sluice turns ntuple on for this.",
                 facts->ifname, nch, 2 * nch - 1);
        return 0;
    }
    req->flags |= SLUICE_REQ_EXCLUDE_FROM_RSS;
    snprintf(msg, msg_len,
             "On mlx5 an AF_XDP socket reads its channel's queue in RSS, so exclude those channels from RSS (ethtool -X %s weight ..., 0 for them) or pass non-matching traffic to the kernel in XDP.",
             facts->ifname);
    return 0;
}

static int mlx5__check_channels_change(const struct sluice_driver_facts *facts,
                                       const struct sluice_channel_counts *proposed,
                                       char *msg, size_t msg_len)
{
    struct scheme_verdict v = detect_scheme(facts);
    if (v.scheme != SCHEME_SPLIT)
        return 0;
    int unchanged = proposed->rx == facts->rx_channels && proposed->tx == facts->tx_channels &&
                    proposed->combined == facts->combined_channels;
    if (unchanged)
        return 0;
    if (facts->zerocopy_sockets) {
        snprintf(msg, msg_len,
                 "mlx5 before Linux 6.1 cannot change the channel count of %s while %u zero-copy AF_XDP sockets are open; stop the pipeline first.",
                 facts->ifname, facts->zerocopy_sockets);
        return -1;
    }
    snprintf(msg, msg_len,
             "On mlx5 before Linux 6.1 changing the channel count of %s moves its zero-copy AF_XDP queues, so sockets and steering rules must be mapped again.",
             facts->ifname);
    return 0;
}

static const struct sluice_driver_plugin mlx5_plugin = {
    .sz = sizeof(struct sluice_driver_plugin),
    .abi_version = SLUICE_DRIVER_ABI_VERSION,
    .name = "mlx5",
    .version = "1.0",
    .description = "mlx5_core (ConnectX): split XSK queue ids before Linux 6.1, identity since.",
    .match = mlx5__match,
    .map_channel = mlx5__map_channel,
    .prepare = mlx5__prepare,
    .check_channels_change = mlx5__check_channels_change,
};

__attribute__((visibility("default")))
const struct sluice_driver_plugin *sluice_driver_plugin_v1(void)
{
    return &mlx5_plugin;
}
