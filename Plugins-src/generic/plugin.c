/*
 * generic: the catch-all driver-quirk plugin. Queue ids are the channel ids
 * (the rule for i40e, ice, ixgbe, igc, stmmac, virtio_net, veth and most
 * drivers), and a queue id must be below the receive channel count. It
 * scores 1 for every driver so that any plugin written for a specific
 * driver wins over it.
 *
 * Zero-copy is stricter on the drivers that build an AF_XDP queue from an rx
 * and a tx ring of the same index: their xsk_pool setup refuses a queue id
 * that is not below both the rx and the tx queue count, and the bind fails
 * later with a bare EINVAL. In ethtool's terms that limit is combined +
 * min(rx, tx) channels, the same range the ethtool core protects for
 * zero-copy sockets when channels shrink (ethnl_set_channels). The checks,
 * in the kernel sources:
 *
 *   ice         ice_xsk_pool_setup: qid >= vsi->num_rxq || qid >= vsi->num_txq
 *               ("Please use queue id in scope of combined queues count");
 *               ice_get_channels reports rx/tx as num_rxq/num_txq - combined
 *   i40e        i40e_xsk_pool_enable: qid >= vsi->num_queue_pairs, and
 *               qid >= real_num_rx_queues || qid >= real_num_tx_queues
 *   ixgbe       ixgbe_xsk_pool_enable: qid >= adapter->num_rx_queues, and
 *               qid >= real_num_rx_queues || qid >= real_num_tx_queues
 *   igc         igc_xdp_enable_pool: queue_id >= num_rx_queues ||
 *               queue_id >= num_tx_queues (channels: combined only)
 *   stmmac      stmmac_xdp_enable_pool: queue >= rx_queues_to_use ||
 *               queue >= tx_queues_to_use; stmmac_get_channels reports rx
 *               and tx counts, no combined; `ethtool -i` says st_gmac (GMAC,
 *               GMAC4), st_xgmac or st_mac100
 *   virtio_net  virtnet_xsk_pool_enable: qid >= vi->curr_queue_pairs
 *               (combined_count is curr_queue_pairs)
 *
 * Copy mode (forced, or XDP in skb mode) has no such limit.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/driver_plugin.h"

/* Known facts about drivers that share the identity scheme, reported by
 * prepare so that an operator sees them before a pipeline starts. */
struct driver_note {
    const char *driver;
    /* The name to use in messages (stmmac reports st_gmac and friends). */
    const char *family;
    uint64_t flags;
    /* Zero-copy queue ids must be below combined + min(rx, tx) channels. */
    int zc_needs_rx_and_tx;
    /* One sentence for prepare; %s, if present, is the interface name. */
    const char *advice;
};

static const struct driver_note driver_notes[] = {
    { "veth", "veth", SLUICE_REQ_COPY_MODE_ONLY, 0,
      "veth has no zero-copy AF_XDP and no ntuple steering, so sockets run in copy mode and traffic follows the sender's queue choice (XPS)." },
    { "ice", "ice", SLUICE_REQ_COMBINED_CHANNELS, 1,
      "ice takes AF_XDP queues from combined channels, so set combined channels (`ethtool -L %s combined N`) rather than rx channels." },
    { "i40e", "i40e", SLUICE_REQ_COMBINED_CHANNELS, 1,
      "i40e takes AF_XDP queues from combined channels (queue pairs), so set them with `ethtool -L %s combined N`." },
    { "ixgbe", "ixgbe", SLUICE_REQ_COMBINED_CHANNELS, 1,
      "ixgbe takes AF_XDP queues from combined channels, so set them with `ethtool -L %s combined N`." },
    { "igc", "igc", SLUICE_REQ_COMBINED_CHANNELS, 1,
      "igc takes AF_XDP queues from combined channels, so set them with `ethtool -L %s combined N`." },
    { "st_gmac", "stmmac", 0, 1,
      "stmmac takes a zero-copy AF_XDP queue from an rx and a tx queue of the same index, so keep rx and tx channels equal (`ethtool -L %s rx N tx N`)." },
    { "st_xgmac", "stmmac", 0, 1,
      "stmmac takes a zero-copy AF_XDP queue from an rx and a tx queue of the same index, so keep rx and tx channels equal (`ethtool -L %s rx N tx N`)." },
    { "st_mac100", "stmmac", 0, 1,
      "stmmac takes a zero-copy AF_XDP queue from an rx and a tx queue of the same index, so keep rx and tx channels equal (`ethtool -L %s rx N tx N`)." },
    { "virtio_net", "virtio_net", SLUICE_REQ_COMBINED_CHANNELS, 1,
      "virtio_net supports zero-copy AF_XDP receive only since Linux 6.11 and queue ids must be below the current queue pairs." },
};

static const struct driver_note *note_for(const char *driver)
{
    for (size_t i = 0; i < sizeof(driver_notes) / sizeof(driver_notes[0]); i++)
        if (strcmp(driver_notes[i].driver, driver) == 0)
            return &driver_notes[i];
    return NULL;
}

/* The receive channel count, or the sysfs queue count when the channel
 * counts are unknown (0): queue ids must stay below it. */
static uint32_t queue_limit(const struct sluice_driver_facts *facts)
{
    uint32_t channels = sluice_facts__rx_channels(facts);
    return channels ? channels : facts->sysfs_rx_queues;
}

static int zerocopy_wanted(const struct sluice_driver_facts *facts)
{
    return facts->zerocopy_requested && facts->xdp_mode != SLUICE_XDP_MODE_SKB;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

static uint32_t max_u32(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

/* Refuses a zero-copy channel the driver cannot give an rx and a tx queue:
 * returns -1 with the reason, 0 when the channel is fine. */
static int check_zerocopy_channel(const struct sluice_driver_facts *facts,
                                  const struct driver_note *note, uint32_t channel,
                                  char *msg, size_t msg_len)
{
    uint32_t combined = facts->combined_channels;
    uint32_t rx_only = facts->rx_channels, tx_only = facts->tx_channels;
    uint32_t rxq = combined + rx_only, txq = combined + tx_only;
    /* Nothing known about the channels: the host checks sysfs. */
    if (rxq == 0 && txq == 0)
        return 0;
    uint32_t limit = min_u32(rxq, txq);
    if (channel < limit)
        return 0;

    /* What `ethtool -L` must set for the channel to get both queues. */
    uint32_t wanted = channel + 1;
    char fix[160];
    if (combined > 0 || (rx_only == 0 && tx_only == 0)) {
        uint32_t needed = wanted - min_u32(rx_only, tx_only);
        uint32_t max = facts->max_combined_channels;
        if (max && needed > max)
            snprintf(fix, sizeof(fix), "at most %u combined channels are possible, so use a channel below %u",
                     max, limit);
        else
            snprintf(fix, sizeof(fix), "add combined channels (`ethtool -L %s combined %u`) or use a channel below %u",
                     facts->ifname, needed, limit);
    } else {
        uint32_t max_rx = facts->max_rx_channels, max_tx = facts->max_tx_channels;
        if ((max_rx && wanted > max_rx) || (max_tx && wanted > max_tx))
            snprintf(fix, sizeof(fix), "at most %u rx and %u tx channels are possible, so use a channel below %u",
                     max_rx, max_tx, limit);
        else
            snprintf(fix, sizeof(fix), "add channels (`ethtool -L %s rx %u tx %u`) or use a channel below %u",
                     facts->ifname, max_u32(wanted, rx_only), max_u32(wanted, tx_only), limit);
    }
    if (rx_only == 0 && tx_only == 0)
        snprintf(msg, msg_len,
                 "%s on %s binds zero-copy AF_XDP sockets only to queues below its %u combined channels, so channel %u would fail with EINVAL; %s.",
                 note->family, facts->ifname, combined, channel, fix);
    else if (combined == 0)
        snprintf(msg, msg_len,
                 "%s on %s binds zero-copy AF_XDP sockets only to queues below both its %u rx and its %u tx channels, so channel %u would fail with EINVAL; %s.",
                 note->family, facts->ifname, rx_only, tx_only, channel, fix);
    else
        snprintf(msg, msg_len,
                 "%s on %s binds zero-copy AF_XDP sockets only to queues below both its %u rx and its %u tx queues (%u combined channels, %u rx-only, %u tx-only), so channel %u would fail with EINVAL; %s.",
                 note->family, facts->ifname, rxq, txq, combined, rx_only, tx_only, channel, fix);
    return -1;
}

static int generic__match(const struct sluice_driver_facts *facts,
                          char *msg, size_t msg_len)
{
    snprintf(msg, msg_len,
             "generic maps channel i to queue i and is the fallback for any driver (%s).",
             facts->driver[0] ? facts->driver : "unknown driver");
    return 1;
}

static int generic__map_channel(const struct sluice_driver_facts *facts,
                                uint32_t channel, struct sluice_queue_map *map,
                                char *msg, size_t msg_len)
{
    /* The zero-copy limit first: it is the stricter one and names the fix. */
    const struct driver_note *note = note_for(facts->driver);
    if (note && note->zc_needs_rx_and_tx && zerocopy_wanted(facts) &&
        check_zerocopy_channel(facts, note, channel, msg, msg_len) != 0)
        return -1;
    uint32_t limit = queue_limit(facts);
    if (limit && channel >= limit) {
        snprintf(msg, msg_len,
                 "Channel %u does not exist on %s: queue ids must be below its %u receive channels.",
                 channel, facts->ifname, limit);
        return -1;
    }
    map->bind_queue = channel;
    map->steer_queue = channel;
    map->xskmap_key = channel;
    return 0;
}

static int generic__prepare(const struct sluice_driver_facts *facts,
                            struct sluice_requirements *req,
                            char *msg, size_t msg_len)
{
    const struct driver_note *note = note_for(facts->driver);
    if (note) {
        req->flags |= note->flags;
        /* Advice names the interface at most once (%s); extra arguments are
         * ignored. */
        snprintf(msg, msg_len, note->advice, facts->ifname);
    }
    return 0;
}

static const struct sluice_driver_plugin generic_plugin = {
    .sz = sizeof(struct sluice_driver_plugin),
    .abi_version = SLUICE_DRIVER_ABI_VERSION,
    .name = "generic",
    .version = "1.1",
    .description = "Identity queue mapping for any driver (queue id = channel id).",
    .match = generic__match,
    .map_channel = generic__map_channel,
    .prepare = generic__prepare,
    .check_channels_change = NULL,
};

__attribute__((visibility("default")))
const struct sluice_driver_plugin *sluice_driver_plugin_v1(void)
{
    return &generic_plugin;
}
