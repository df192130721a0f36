/*
 * Template for a Sluice driver-quirk plugin. Copy this file, rename the
 * plugin, change DRIVER_NAME and the hooks, then build it out of tree:
 *
 *     cc -shared -fPIC -Wall -I/usr/local/include -o libsluice_example.so plugin.c
 *
 * (-I points at the directory holding sluice/driver_plugin.h; in a source
 * checkout that is Sources/CSluiceDriverABI/include.) See ../README.md for
 * installing and testing it with `sluicectl plugins explain`.
 *
 * The host calls the hooks with facts about one interface and uses the
 * answers for the AF_XDP socket, the XSKMAP key and ntuple steering rules at
 * once. Keep the hooks pure: no I/O, no globals, no blocking; the facts may
 * describe a machine the daemon is not running on (a what-if question).
 */
#include <stdio.h>
#include <string.h>

#include "sluice/driver_plugin.h"

/* The driver name `ethtool -i IF` shows ("driver: ..."). */
#define DRIVER_NAME "example_nic"

/*
 * match: how well this plugin fits. 0 means "not mine"; the generic plugin
 * scores 1 for everything, so anything above 1 wins over it. Say why in
 * one sentence: it is shown by `sluicectl plugins explain`.
 */
static int example__match(const struct sluice_driver_facts *facts, char *msg, size_t msg_len)
{
    if (strcmp(facts->driver, DRIVER_NAME) != 0)
        return 0;
    snprintf(msg, msg_len, "Driver %s on %s is handled by the example plugin.",
             facts->driver, facts->ifname);
    return 100;
}

/*
 * map_channel: which queue ids carry channel `channel`. The host has already
 * filled `map` with the identity mapping, so change only what differs. Every
 * id must be below facts->sysfs_rx_queues (when known) or the host rejects
 * the answer. Refuse (non-zero, with a message) a channel that cannot work.
 */
static int example__map_channel(const struct sluice_driver_facts *facts, uint32_t channel,
                                struct sluice_queue_map *map, char *msg, size_t msg_len)
{
    /* This example driver, like ice, takes AF_XDP queues from combined
     * channels only. */
    if (channel >= facts->combined_channels) {
        snprintf(msg, msg_len, "Channel %u does not exist on %s, which has %u combined channels.",
                 channel, facts->ifname, facts->combined_channels);
        return -1;
    }
    map->bind_queue = channel;  /* the socket binds here */
    map->steer_queue = channel; /* ntuple `action` and RSS target */
    map->xskmap_key = channel;  /* rx_queue_index the XDP program sees */
    return 0;
}

/*
 * prepare: what must hold before a pipeline starts. Set SLUICE_REQ_* flags
 * (the host acts on them, e.g. turns ntuple on and journals it) and give the
 * operator any warning in one sentence. Return non-zero if the pipeline
 * cannot run at all.
 */
static int example__prepare(const struct sluice_driver_facts *facts, struct sluice_requirements *req,
                            char *msg, size_t msg_len)
{
    req->flags |= SLUICE_REQ_COMBINED_CHANNELS;
    snprintf(msg, msg_len,
             "%s takes AF_XDP queues from combined channels, so set them with `ethtool -L %s combined N`.",
             facts->driver, facts->ifname);
    return 0;
}

/*
 * check_channels_change: may the channel counts change to `proposed` now?
 * Return non-zero with a message to veto (for example while zero-copy
 * sockets are live, if the driver cannot cope). Delete the hook (set it to
 * NULL below) if every change is fine.
 */
static int example__check_channels_change(const struct sluice_driver_facts *facts,
                                          const struct sluice_channel_counts *proposed,
                                          char *msg, size_t msg_len)
{
    if (facts->zerocopy_sockets && proposed->combined < facts->combined_channels) {
        snprintf(msg, msg_len,
                 "%s cannot drop channels while %u zero-copy AF_XDP sockets are open; stop the pipeline first.",
                 facts->ifname, facts->zerocopy_sockets);
        return -1;
    }
    return 0;
}

/* The plugin: a static constant the host only reads. `sz` and
 * `abi_version` let the host check that it understands this struct. */
static const struct sluice_driver_plugin example_plugin = {
    .sz = sizeof(struct sluice_driver_plugin),
    .abi_version = SLUICE_DRIVER_ABI_VERSION,
    .name = "example",  /* unique; config forces a plugin by this name */
    .version = "0.1",
    .description = "Template plugin for the example_nic driver.",
    .match = example__match,
    .map_channel = example__map_channel,
    .prepare = example__prepare,
    .check_channels_change = example__check_channels_change,
};

/* The one exported symbol. */
__attribute__((visibility("default")))
const struct sluice_driver_plugin *sluice_driver_plugin_v1(void)
{
    return &example_plugin;
}
