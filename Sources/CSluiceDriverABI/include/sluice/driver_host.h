/*
 * sluice/driver_host.h: the host side of the plugin ABI, for sluiced only
 * (not installed; plugins need only sluice/driver_plugin.h).
 *
 * Every struct the host hands a plugin carries `sz` = its C sizeof, the
 * number a plugin compares with its own sizeof. The host takes it from the C
 * compiler that laid the structs out, as a plugin's compiler does, rather
 * than from Swift's MemoryLayout: that agrees for imported C structs today,
 * but it is Swift's answer, not the ABI's.
 */
#ifndef SLUICE_DRIVER_HOST_H
#define SLUICE_DRIVER_HOST_H

#include <stddef.h>

#include "sluice/driver_plugin.h"

static inline size_t sluice_abi__sizeof_facts(void)
{
    return sizeof(struct sluice_driver_facts);
}

static inline size_t sluice_abi__sizeof_queue_map(void)
{
    return sizeof(struct sluice_queue_map);
}

static inline size_t sluice_abi__sizeof_requirements(void)
{
    return sizeof(struct sluice_requirements);
}

static inline size_t sluice_abi__sizeof_channel_counts(void)
{
    return sizeof(struct sluice_channel_counts);
}

static inline size_t sluice_abi__sizeof_plugin(void)
{
    return sizeof(struct sluice_driver_plugin);
}

#endif /* SLUICE_DRIVER_HOST_H */
