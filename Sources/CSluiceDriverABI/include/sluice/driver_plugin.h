/*
 * sluice/driver_plugin.h: the driver-quirk plugin ABI of Sluice, version 1.
 *
 * A plugin is a shared object in the daemon's plugin directory that exports
 * one function:
 *
 *     const struct sluice_driver_plugin *sluice_driver_plugin_v1(void);
 *
 * It tells the daemon how one NIC driver numbers its AF_XDP queues. The daemon
 * (the "host") asks every loaded plugin to score an interface's facts, picks
 * the highest score (or the plugin the config forces), and then asks only that
 * plugin which queue ids to use for each channel. Those ids are used
 * everywhere at once: the AF_XDP socket's bind queue, the XSKMAP key in
 * Sluice's XDP program, and the `action` of ntuple steering rules.
 *
 * Rules for plugin authors:
 *
 *  - Every struct begins with `size_t sz`, the sizeof of the struct as the
 *    side that filled it was compiled (the libxdp "opts" idiom). The host
 *    reads only the fields of struct sluice_driver_plugin that lie within
 *    the plugin's `sz`; a plugin reads only the fields of the structs the
 *    host passes that lie within the host's `sz` (use SLUICE_HAS_FIELD for
 *    any field added after version 1; every v1 field is always present).
 *    The host zeroes every struct it passes, padding included. It refuses a
 *    plugin whose `sz` is larger than its own sizeof unless every byte
 *    beyond it is zero (libbpf's rule for opts): non-zero bytes there are
 *    fields this host would ignore. Initialise the plugin struct with a
 *    designated initialiser so that unused fields and padding are zero.
 *  - New fields are only ever appended. `abi_version` changes only for an
 *    incompatible change, which the host then refuses to load.
 *  - Hooks are pure functions of their arguments: no global state, no I/O,
 *    no blocking, no allocation that outlives the call. The host may call
 *    them from any thread, at any time, as often as it likes (for example to
 *    answer a "what-if" question about a machine it is not running on).
 *  - A NULL hook means "nothing special" (the ethtool_ops idiom); each hook
 *    documents what the host does instead.
 *  - Every hook may write one sentence an operator understands into
 *    `msg` (capacity `msg_len` bytes, always at least 1; the host passes it
 *    empty and NUL-terminates it afterwards). Use snprintf(msg, msg_len, ...).
 *  - Hooks returning int return 0 for success/allow and a non-zero value to
 *    refuse; a refusal should always come with a message saying why.
 *
 * Security: the host loads only regular files that are not world-writable,
 * from a directory that is not world-writable, and, when it runs as root,
 * only files owned by root. The code runs inside the daemon: a crashing
 * plugin crashes the daemon.
 */
#ifndef SLUICE_DRIVER_PLUGIN_H
#define SLUICE_DRIVER_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes; store it in `abi_version`. */
#define SLUICE_DRIVER_ABI_VERSION 1u

/* The name of the one symbol a plugin exports. */
#define SLUICE_DRIVER_PLUGIN_ENTRY "sluice_driver_plugin_v1"

/* True when the struct behind `ptr` (of type `type`, whose first member is
 * `size_t sz`) is large enough to contain `field`. */
#define SLUICE_HAS_FIELD(ptr, type, field)                                    \
    ((ptr)->sz >= offsetof(type, field) + sizeof(((type *)0)->field))

/* Sizes of the fixed string fields in struct sluice_driver_facts, each
 * including the terminating NUL. They match the kernel's own limits
 * (IFNAMSIZ, ETHTOOL_* in struct ethtool_drvinfo, struct utsname). */
#define SLUICE_IFNAME_LEN 16
#define SLUICE_DRIVER_LEN 32
#define SLUICE_DRIVER_VERSION_LEN 32
#define SLUICE_FIRMWARE_VERSION_LEN 32
#define SLUICE_KERNEL_RELEASE_LEN 65

/* Longest plugin name the host accepts, without the NUL. Names use only
 * letters, digits, '_', '-' and '.'. */
#define SLUICE_PLUGIN_NAME_MAX 31

/* How XDP is (or will be) attached to the interface: struct
 * sluice_driver_facts.xdp_mode. */
enum sluice_xdp_mode {
    SLUICE_XDP_MODE_NONE = 0,    /* no XDP program, or not decided yet */
    SLUICE_XDP_MODE_SKB = 1,     /* generic XDP: AF_XDP runs in copy mode */
    SLUICE_XDP_MODE_NATIVE = 2,  /* driver XDP: zero-copy possible */
    SLUICE_XDP_MODE_OFFLOAD = 3, /* offloaded to the NIC */
};

/*
 * What the host knows about one interface. The host fills every field; a
 * count it could not learn is 0 and a string it could not learn is "".
 * Synthetic facts (an operator's "what-if" question) come through the same
 * struct, so a plugin must not look anything up itself.
 */
struct sluice_driver_facts {
    /* sizeof(struct sluice_driver_facts) as the host was compiled. */
    size_t sz;
    /* Interface name, e.g. "eth0" (synthetic facts: a placeholder). */
    char ifname[SLUICE_IFNAME_LEN];
    /* Driver name from ETHTOOL_GDRVINFO, e.g. "mlx5_core", "veth". */
    char driver[SLUICE_DRIVER_LEN];
    /* Driver version from ETHTOOL_GDRVINFO (often the kernel release). */
    char driver_version[SLUICE_DRIVER_VERSION_LEN];
    /* Firmware version from ETHTOOL_GDRVINFO, e.g. "16.35.2000 (MT_0000000008)". */
    char firmware_version[SLUICE_FIRMWARE_VERSION_LEN];
    /* Running kernel release (uname -r), e.g. "5.15.0-91-generic". */
    char kernel_release[SLUICE_KERNEL_RELEASE_LEN];
    /* Current channel counts, as `ethtool -l` shows them. Receive queues
     * are numbered across combined and rx-only channels, so the number of
     * receive channels is combined_channels + rx_channels. They are what the
     * driver reports, not always what the device has: mlx5 before Linux 6.1
     * reports combined and max_combined doubled while any zero-copy socket
     * is bound; its plugin works out the truth. */
    uint32_t rx_channels;
    uint32_t tx_channels;
    uint32_t combined_channels;
    /* Maximum channel counts the driver allows (`ethtool -l`, "maximums"). */
    uint32_t max_rx_channels;
    uint32_t max_tx_channels;
    uint32_t max_combined_channels;
    /* Number of rx-N and tx-N entries under /sys/class/net/IF/queues: the
     * netdev's real_num_rx_queues / real_num_tx_queues, which is the limit
     * for AF_XDP bind queue ids. */
    uint32_t sysfs_rx_queues;
    uint32_t sysfs_tx_queues;
    /* 1 when an XDP program is attached to the interface now, else 0. */
    uint32_t xdp_attached;
    /* How XDP is or will be attached: enum sluice_xdp_mode. */
    uint32_t xdp_mode;
    /* 1 when the socket being mapped asks for zero-copy (bind mode
     * "zerocopy" or "auto"), 0 for copy mode: forced, or an "auto" bind
     * whose zero-copy attempt failed and is mapped again. With xdp_mode
     * SLUICE_XDP_MODE_SKB every socket runs in copy mode whatever this says. */
    uint32_t zerocopy_requested;
    /* Zero-copy AF_XDP sockets bound on the interface now, by any process
     * (the kernel's AF_XDP sock_diag), the pipeline's own included. */
    uint32_t zerocopy_sockets;
};

/*
 * Where channel i's traffic must be picked up: filled by map_channel. The
 * host pre-fills the identity mapping (all three fields = channel) and sets
 * `sz`; the plugin overwrites what differs. Every id must be below
 * sysfs_rx_queues or the host rejects the mapping, naming the plugin.
 */
struct sluice_queue_map {
    /* sizeof(struct sluice_queue_map) as the host was compiled. */
    size_t sz;
    /* Queue id to bind the AF_XDP socket to (struct sockaddr_xdp.sxdp_queue_id). */
    uint32_t bind_queue;
    /* Queue id to steer to: the ntuple rule's `action` and the RSS target. */
    uint32_t steer_queue;
    /* XSKMAP key: the rx_queue_index the XDP program sees for this traffic. */
    uint32_t xskmap_key;
};

/* Flags in struct sluice_requirements.flags. */
/* The host must turn the rx-ntuple-filter feature on (and journal it). */
#define SLUICE_REQ_NTUPLE_ON (1ULL << 0)
/* AF_XDP queues are outside RSS: only traffic steered by ntuple rules
 * reaches them, so a pipeline without steering rules receives nothing. */
#define SLUICE_REQ_STEERING_REQUIRED (1ULL << 1)
/* AF_XDP queues take part in RSS: exclude them from the indirection table
 * (ethtool -X) or pass non-matching traffic to the kernel in XDP. */
#define SLUICE_REQ_EXCLUDE_FROM_RSS (1ULL << 2)
/* The driver takes AF_XDP queues from combined channels only. */
#define SLUICE_REQ_COMBINED_CHANNELS (1ULL << 3)
/* The driver has no zero-copy AF_XDP: sockets run in copy mode. */
#define SLUICE_REQ_COPY_MODE_ONLY (1ULL << 4)

/*
 * What must be true before a pipeline starts: filled by prepare. The host
 * zeroes it and sets `sz`. Unknown flags are reported, not acted on.
 */
struct sluice_requirements {
    /* sizeof(struct sluice_requirements) as the host was compiled. */
    size_t sz;
    /* SLUICE_REQ_* flags. */
    uint64_t flags;
    /* Smallest XSKMAP size the keys need (0: the host's default, which is
     * sysfs_rx_queues). */
    uint32_t min_xskmap_entries;
    /* Added after version 1: write it only when SLUICE_HAS_FIELD(req,
     * struct sluice_requirements, rx_channels). The number of receive
     * channels the interface really has, when the channel counts in the
     * facts overstate it (mlx5 before Linux 6.1 reports its counts doubled
     * while zero-copy sockets are bound); the host then maps channels 0 to
     * this minus one by default. 0: the counts in the facts are right. */
    uint32_t rx_channels;
};

/* A proposed channel configuration: the argument of check_channels_change. */
struct sluice_channel_counts {
    /* sizeof(struct sluice_channel_counts) as the host was compiled. */
    size_t sz;
    uint32_t rx;
    uint32_t tx;
    uint32_t combined;
};

/*
 * The plugin itself. Return a pointer to a static const instance from
 * sluice_driver_plugin_v1(); the host never writes to it and never frees it.
 */
struct sluice_driver_plugin {
    /* sizeof(struct sluice_driver_plugin) as the plugin was compiled. */
    size_t sz;
    /* SLUICE_DRIVER_ABI_VERSION. */
    uint32_t abi_version;
    /* Unique short name, e.g. "mlx5" (see SLUICE_PLUGIN_NAME_MAX); config
     * forces a plugin by this name. Must not be NULL. */
    const char *name;
    /* The plugin's own version, e.g. "1.0" (may be NULL). */
    const char *version;
    /* One line for `sluicectl plugins list` (may be NULL). */
    const char *description;

    /*
     * How well this plugin fits the interface: 0 (or negative) = not at
     * all, higher = better; the highest score wins, ties go to the name
     * that sorts first. Conventional scores: 1 for a catch-all, 100 for the
     * exact driver. `msg` says why ("driver mlx5_core: queue scheme of ...").
     * NULL: score 0, i.e. the plugin is used only when config forces it.
     */
    int (*match)(const struct sluice_driver_facts *facts,
                 char *msg, size_t msg_len);

    /*
     * Which queue ids carry channel `channel` (0-based, counted over the
     * receive channels). Return non-zero with a message to refuse (for
     * example a channel the interface does not have).
     * NULL: identity (bind = steer = key = channel).
     */
    int (*map_channel)(const struct sluice_driver_facts *facts,
                       uint32_t channel, struct sluice_queue_map *map,
                       char *msg, size_t msg_len);

    /*
     * Preconditions for running a pipeline on the interface: set flags in
     * `req`, and put advice or a warning the operator must see in `msg`.
     * Return non-zero when the pipeline cannot run at all.
     * NULL: no requirements.
     */
    int (*prepare)(const struct sluice_driver_facts *facts,
                   struct sluice_requirements *req,
                   char *msg, size_t msg_len);

    /*
     * Whether the channel counts may change from the current ones (in
     * `facts`) to `proposed`. Return 0 to allow, non-zero to veto with a
     * message; the host then refuses the change.
     * NULL: always allowed.
     */
    int (*check_channels_change)(const struct sluice_driver_facts *facts,
                                 const struct sluice_channel_counts *proposed,
                                 char *msg, size_t msg_len);
};

/* The number of receive channels (combined + rx-only) the facts report:
 * channel ids run from 0 to this minus one, unless the driver is known to
 * overstate them (see sluice_requirements.rx_channels). */
static inline uint32_t
sluice_facts__rx_channels(const struct sluice_driver_facts *facts)
{
    return facts->combined_channels + facts->rx_channels;
}

/* The entry point every plugin exports (with default visibility). */
const struct sluice_driver_plugin *sluice_driver_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_DRIVER_PLUGIN_H */
