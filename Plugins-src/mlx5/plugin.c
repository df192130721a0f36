/*
 * mlx5: the queue schemes of the mlx5_core driver (ConnectX-4 and later).
 *
 * Before Linux 6.1 (commit 3db4c85cde7a landed in 6.1) mlx5 splits the queue ids
 * in two halves: regular RQs 0..nch-1 and zero-copy XSK RQs nch..2nch-1. A
 * zero-copy socket for channel i binds to queue nch+i, ntuple rules must use
 * `action nch+i`, the XDP program sees rx_queue_index nch+i (so that is the
 * XSKMAP key) and the XSK RQs are not in RSS. The netdev always has 2*nch
 * real rx queues (mlx5e_update_netdev_queues: nch * rq_groups), which is how
 * the old scheme is recognised even on distribution kernels that backported
 * the change under an old version number. Copy-mode sockets, and every
 * socket when XDP runs in skb mode, read the regular RQs: channel i, queue i.
 *
 * While any zero-copy socket is bound (priv->xsk.refcnt > 0) that old driver
 * lies about its channels: mlx5e_ethtool_get_channels reports combined_count
 * and max_combined doubled ("The upper half are XSK queues"), and
 * mlx5e_ethtool_set_channels fails with EINVAL ("AF_XDP is active"). sysfs
 * still shows 2*nch rx queues, so then sysfs rx == the reported channels,
 * which is also what the 6.1+ scheme looks like. The facts say how many
 * zero-copy sockets are bound; with some bound and sysfs == reported, the
 * state is decided by the tx queues (every mlx5 channel has at least one, so
 * fewer tx queues than reported channels proves the doubling) and otherwise
 * by the kernel release. The device then has half the reported channels.
 *
 * Since 6.1 the ids are the channel ids, the counts are reported as they are,
 * and the XSK RQ replaces the regular RQ of its channel in RSS.
 *
 * On any mlx5, `ethtool -N` rules work whatever the rx-ntuple-filter feature
 * says, and turning that feature on enables aRFS, which moves the kernel's own
 * flows between queues: the plugin never asks for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/driver_plugin.h"

enum queue_scheme { SCHEME_UNKNOWN, SCHEME_SPLIT, SCHEME_IDENTITY };

struct scheme_verdict {
    enum queue_scheme scheme;
    /* The receive channels the device has: the reported count, or half of
     * it when the counts are doubled. */
    uint32_t nch;
    /* ethtool reports the counts doubled (zero-copy sockets are bound). */
    int doubled;
    char why[384]; /* the evidence, to be quoted inside a sentence */
};

/* 1 for a kernel release before 6.1, 0 for 6.1 or later, -1 when the
 * release does not start with "major.minor". */
static int release__before_6_1(const char *release)
{
    char *end;
    unsigned long major, minor;
    if (release[0] < '0' || release[0] > '9')
        return -1;
    major = strtoul(release, &end, 10);
    if (*end != '.' || end[1] < '0' || end[1] > '9')
        return -1;
    minor = strtoul(end + 1, NULL, 10);
    return major < 6 || (major == 6 && minor < 1);
}

/* The doubled state: the device has half the reported channels. `evidence`
 * says why the counts are believed doubled. */
static void verdict__doubled(struct scheme_verdict *v, const struct sluice_driver_facts *facts,
                             uint32_t reported, const char *evidence)
{
    if (reported == 0 || reported % 2) {
        v->scheme = SCHEME_UNKNOWN;
        snprintf(v->why, sizeof(v->why),
                 "ethtool reports %u channels while %u zero-copy sockets are bound and %s, but mlx5 before Linux 6.1 would report an even, doubled count",
                 reported, facts->zerocopy_sockets, evidence);
        return;
    }
    v->scheme = SCHEME_SPLIT;
    v->nch = reported / 2;
    v->doubled = 1;
    snprintf(v->why, sizeof(v->why),
             "ethtool reports %u channels because mlx5 before Linux 6.1 doubles its channel counts while %u zero-copy sockets are bound, and %s; the device has %u",
             reported, facts->zerocopy_sockets, evidence, v->nch);
}

static struct scheme_verdict detect_scheme(const struct sluice_driver_facts *facts)
{
    struct scheme_verdict v = { SCHEME_UNKNOWN, 0, 0, "" };
    uint32_t reported = sluice_facts__rx_channels(facts);
    uint32_t rxq = facts->sysfs_rx_queues;
    uint32_t txq = facts->sysfs_tx_queues;
    uint32_t zc = facts->zerocopy_sockets;
    int before = release__before_6_1(facts->kernel_release);
    char evidence[160];

    if (reported > UINT32_MAX / 2) { /* nch + i must not wrap */
        snprintf(v.why, sizeof(v.why), "its channel count %u is implausible", reported);
        return v;
    }
    /* sysfs first: it reflects what the running driver really does. */
    if (reported && rxq == 2 * (uint64_t)reported) {
        v.scheme = SCHEME_SPLIT;
        v.nch = reported;
        snprintf(v.why, sizeof(v.why), "sysfs shows %u rx queues for %u channels", rxq, reported);
        return v;
    }
    if (reported && rxq == reported && zc == 0) {
        v.scheme = SCHEME_IDENTITY;
        v.nch = reported;
        snprintf(v.why, sizeof(v.why),
                 "sysfs shows %u rx queues for %u channels and no zero-copy socket is bound", rxq, reported);
        return v;
    }
    if (reported && rxq == reported) {
        /* 6.1+, or the old scheme counting double: tell them apart. Too few
         * tx queues prove the doubling even under a 6.x release number. */
        if (before == 1) {
            snprintf(evidence, sizeof(evidence), "kernel %s is before 6.1", facts->kernel_release);
            verdict__doubled(&v, facts, reported, evidence);
        } else if (txq && txq < reported) {
            snprintf(evidence, sizeof(evidence),
                     "sysfs shows only %u tx queues where every mlx5 channel has at least one", txq);
            verdict__doubled(&v, facts, reported, evidence);
        } else if (before == 0) {
            v.scheme = SCHEME_IDENTITY;
            v.nch = reported;
            snprintf(v.why, sizeof(v.why),
                     "sysfs shows %u rx queues for %u channels while %u zero-copy sockets are bound, and kernel %s is at or after 6.1, where mlx5 reports its channel counts as they are",
                     rxq, reported, zc, facts->kernel_release);
        } else {
            snprintf(v.why, sizeof(v.why),
                     "sysfs shows %u rx queues for the %u channels ethtool reports while %u zero-copy sockets are bound, which fits both mlx5 queue schemes, and kernel release '%s' has no version",
                     rxq, reported, zc, facts->kernel_release);
        }
        return v;
    }
    /* sysfs does not tell (unknown, or fits neither scheme): the release does. */
    if (before == 1 && zc > 0) {
        snprintf(evidence, sizeof(evidence),
                 "kernel %s is before 6.1 and sysfs (%u rx queues) does not tell", facts->kernel_release, rxq);
        verdict__doubled(&v, facts, reported, evidence);
        return v;
    }
    if (before >= 0) {
        v.scheme = before ? SCHEME_SPLIT : SCHEME_IDENTITY;
        v.nch = reported;
        snprintf(v.why, sizeof(v.why),
                 "kernel %s is %s 6.1 and sysfs (%u rx queues for %u channels) does not tell",
                 facts->kernel_release, before ? "before" : "at or after", rxq, reported);
        return v;
    }
    snprintf(v.why, sizeof(v.why),
             "sysfs shows %u rx queues for %u channels and kernel release '%s' has no version",
             rxq, reported, facts->kernel_release);
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
    struct scheme_verdict v = detect_scheme(facts);
    if (v.scheme == SCHEME_UNKNOWN)
        return refuse_unknown(&v, facts, msg, msg_len);
    if (channel >= v.nch) {
        if (v.doubled)
            snprintf(msg, msg_len, "Channel %u does not exist on %s: %s, so use a channel below %u.",
                     channel, facts->ifname, v.why, v.nch);
        else
            snprintf(msg, msg_len, "Channel %u does not exist on %s, which has %u channels.",
                     channel, facts->ifname, v.nch);
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
                 "%s mlx5 before Linux 6.1 delivers channel %u on its regular queue %u; only zero-copy sockets would use queue %u%s%s.",
                 facts->xdp_mode == SLUICE_XDP_MODE_SKB ? "With XDP in skb mode AF_XDP runs in copy mode, and"
                                                        : "In copy mode",
                 channel, channel, v.nch + channel, v.doubled ? "; " : "", v.doubled ? v.why : "");
        return 0;
    }
    uint32_t queue = v.nch + channel;
    map->bind_queue = map->steer_queue = map->xskmap_key = queue;
    snprintf(msg, msg_len,
             "mlx5 before Linux 6.1 serves zero-copy AF_XDP for channel %u on queue %u, so the socket, the steering action and the XSKMAP key all use %u; %s.",
             channel, queue, queue, v.why);
    return 0;
}

static int mlx5__prepare(const struct sluice_driver_facts *facts, struct sluice_requirements *req,
                         char *msg, size_t msg_len)
{
    struct scheme_verdict v = detect_scheme(facts);
    if (v.scheme == SCHEME_UNKNOWN)
        return refuse_unknown(&v, facts, msg, msg_len);
    /* A host built before rx_channels existed passes a smaller struct. */
    if (v.doubled && SLUICE_HAS_FIELD(req, struct sluice_requirements, rx_channels))
        req->rx_channels = v.nch;
    if (v.scheme == SCHEME_SPLIT && uses_xsk_rqs(facts)) {
        req->flags |= SLUICE_REQ_STEERING_REQUIRED;
        req->min_xskmap_entries = 2 * v.nch;
        snprintf(msg, msg_len,
                 "On mlx5 before Linux 6.1 the zero-copy AF_XDP queues of %s (%u-%u) are outside RSS, so only traffic that ntuple rules steer to them arrives; Sluice leaves rx-ntuple-filter off because mlx5 takes `ethtool -N %s ... action %u` rules without it and turning it on enables aRFS, which moves the kernel's own flows (VLAN matches take only the mask 0x0fff).",
                 facts->ifname, v.nch, 2 * v.nch - 1, facts->ifname, v.nch);
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
    /* Doubled counts are never the device's: "the same counts" would ask
     * for twice the channels (EINVAL from the driver), and the real count
     * is refused by the ethtool core, whose zero-copy check covers the
     * queues above it (net/ethtool/channels.c), where the XSK RQs are. */
    if (v.doubled) {
        snprintf(msg, msg_len,
                 "mlx5 before Linux 6.1 refuses every channel change on %s while %u zero-copy AF_XDP sockets are bound (EINVAL, \"AF_XDP is active\"), and the %u channels ethtool shows are its doubled count (the device has %u), so not even those can be set; close the sockets (stop the pipeline) first.",
                 facts->ifname, facts->zerocopy_sockets, sluice_facts__rx_channels(facts), v.nch);
        return -1;
    }
    /* mlx5e_ethtool_set_channels returns 0 for an unchanged count before it
     * looks at the sockets. */
    int unchanged = proposed->rx == facts->rx_channels && proposed->tx == facts->tx_channels &&
                    proposed->combined == facts->combined_channels;
    if (unchanged)
        return 0;
    if (facts->zerocopy_sockets) {
        snprintf(msg, msg_len,
                 "mlx5 before Linux 6.1 refuses every channel change on %s while %u zero-copy AF_XDP sockets are bound (EINVAL, \"AF_XDP is active\"); close the sockets (stop the pipeline) first.",
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
    .version = "1.1",
    .description = "mlx5_core (ConnectX): split XSK queue ids before Linux 6.1 (counts doubled while zero-copy sockets are bound), identity since.",
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
