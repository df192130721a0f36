/*
 * generic: the catch-all driver-quirk plugin. Queue ids are the channel ids
 * (the rule for i40e, ice, ixgbe, igc, virtio_net, veth and most drivers);
 * the only rule is that a queue id must be below the receive channel count.
 * It scores 1 for every driver so that any plugin written for a specific
 * driver wins over it.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/driver_plugin.h"

/* Known facts about drivers that share the identity scheme, reported by
 * prepare so that an operator sees them before a pipeline starts. */
struct driver_note {
    const char *driver;
    uint64_t flags;
    const char *advice;
};

static const struct driver_note driver_notes[] = {
    { "veth", SLUICE_REQ_COPY_MODE_ONLY,
      "veth has no zero-copy AF_XDP and no ntuple steering, so sockets run in copy mode and traffic follows the sender's queue choice (XPS)." },
    { "ice", SLUICE_REQ_COMBINED_CHANNELS,
      "ice takes AF_XDP queues from combined channels, so set combined channels (ethtool -L IF combined N) rather than rx channels." },
    { "virtio_net", 0,
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
        snprintf(msg, msg_len, "%s", note->advice);
    }
    return 0;
}

static const struct sluice_driver_plugin generic_plugin = {
    .sz = sizeof(struct sluice_driver_plugin),
    .abi_version = SLUICE_DRIVER_ABI_VERSION,
    .name = "generic",
    .version = "1.0",
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
