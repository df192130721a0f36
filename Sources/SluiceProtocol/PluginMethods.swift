extension Methods {
    public enum PluginsList: ControlMethod {
        public typealias Response = PluginListing
        public static let name = "plugins.list"
        public static let level = AccessLevel.read
        public static let summary = "Plugin files: loaded, or rejected with the reason"
    }

    public enum PluginsReload: ControlMethod {
        public typealias Response = PluginListing
        public static let name = "plugins.reload"
        public static let level = AccessLevel.admin
        public static let summary = "Rescan the plugin directory; busy while a pipeline uses a plugin"
    }
}

/// The plugin directory and every file in it.
public struct PluginListing: Codable, Sendable, Equatable {
    public var directory: String
    public var plugins: [PluginRecord]

    public init(directory: String, plugins: [PluginRecord]) {
        self.directory = directory; self.plugins = plugins
    }

    enum CodingKeys: String, CodingKey { case directory, plugins }
}

/// A loaded plugin, as listings and explanations show it.
public struct PluginInfo: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    public var description: String
    public var path: String
    /// Hooks the plugin implements (the others mean "nothing special").
    public var hooks: [String]

    public init(name: String, version: String, description: String, path: String, hooks: [String]) {
        self.name = name; self.version = version; self.description = description; self.path = path
        self.hooks = hooks
    }

    enum CodingKeys: String, CodingKey { case name, version, description, path, hooks }
}

/// One file in the plugin directory: loaded, or rejected with the reason.
public struct PluginRecord: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case loaded, rejected }
    public var path: String
    public var status: Status
    /// Set when loaded.
    public var plugin: PluginInfo?
    /// Set when rejected: the exact reason, naming the file or directory.
    public var reason: String?
    /// Pipelines currently holding a lease on this plugin.
    public var leases: Int

    public init(path: String, status: Status, plugin: PluginInfo?, reason: String?, leases: Int) {
        self.path = path; self.status = status; self.plugin = plugin; self.reason = reason; self.leases = leases
    }

    enum CodingKeys: String, CodingKey { case path, status, plugin, reason, leases }
}

extension Methods {
    public enum PluginsExplain: ControlMethod {
        public static let name = "plugins.explain"
        public static let level = AccessLevel.read
        public static let summary = """
            Which plugin handles an interface and why, its facts, and per channel the bind queue, steer queue \
            and XSKMAP key. Without iface: what-if for synthetic facts (driver, kernel_release, channels, sysfs_rx_queues)
            """
        public static let arguments = [
            ArgumentSpec(Request.CodingKeys.iface, .string, "interface to explain"),
            ArgumentSpec(Request.CodingKeys.driver, .string, "what-if: driver name, e.g. mlx5_core"),
            ArgumentSpec(Request.CodingKeys.kernelRelease, .string, "what-if: kernel release, e.g. 5.15.0-91-generic"),
            ArgumentSpec(Request.CodingKeys.channels, UInt32.self, in: 1...65_536, "what-if: combined channel count"),
            ArgumentSpec(Request.CodingKeys.sysfsRxQueues, UInt32.self, in: 0...65_536,
                         "what-if: rx-* entries in sysfs (0: unknown)"),
            ArgumentSpec(Request.CodingKeys.channel, UInt32.self, "explain only this channel"),
            ArgumentSpec(Request.CodingKeys.plugin, .string,
                         "force this plugin (default: the interface's plugin in config, else the best score)"),
        ]

        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName?
            public var driver: String?, kernelRelease: String?, channels: UInt32?, sysfsRxQueues: UInt32?
            public var channel: UInt32?
            public var plugin: String?

            public init(
                iface: InterfaceName? = nil, driver: String? = nil, kernelRelease: String? = nil, channels: UInt32? = nil,
                sysfsRxQueues: UInt32? = nil, channel: UInt32? = nil, plugin: String? = nil
            ) {
                self.iface = iface; self.driver = driver; self.kernelRelease = kernelRelease; self.channels = channels
                self.sysfsRxQueues = sysfsRxQueues; self.channel = channel; self.plugin = plugin
            }

            public enum CodingKeys: String, CodingKey {
                case iface, driver, channels, channel, plugin
                case kernelRelease = "kernel_release", sysfsRxQueues = "sysfs_rx_queues"
            }
        }

        /// The explanation, where its mapping came from and, from a running
        /// pipeline, the mode each channel's socket bound in.
        public struct Response: Codable, Sendable, Equatable {
            public var facts: DriverFacts
            public var selection: PluginSelection
            public var mappings: [QueueMapping]
            public var preparation: Preparation
            public var source: MappingSource
            /// Channel number (as a string) to the socket's mode.
            public var socketModes: [String: SocketMode]?

            public init(_ explanation: PluginExplanation, source: MappingSource, socketModes: [String: SocketMode]? = nil) {
                facts = explanation.facts; selection = explanation.selection; mappings = explanation.mappings
                preparation = explanation.preparation; self.source = source; self.socketModes = socketModes
            }

            enum CodingKeys: String, CodingKey {
                case facts, selection, mappings, preparation, source, socketModes = "socket_modes"
            }
        }
    }
}

/// Where a channel mapping came from, as replies show it (`mapping_source`, `source`).
public enum MappingSource: String, WireEnumeration {
    /// The running pipeline's socket for the channel.
    case pipeline
    /// The plugin, asked with the interface's live facts (no socket of ours reads it).
    case liveFacts = "live_facts"
    /// The plugin, asked about synthetic facts.
    case whatIf = "what_if"
}

/// How a running pipeline's socket reads its channel.
public enum SocketMode: String, WireEnumeration {
    case zeroCopy = "zerocopy"
    case copy
    /// Copy mode behind XDP in skb (generic) mode.
    case skb
}

/// `plugins.explain`: the chosen plugin, why, the facts it saw, and the
/// per-channel mapping with the preconditions.
public struct PluginExplanation: Codable, Sendable, Equatable {
    public var facts: DriverFacts
    public var selection: PluginSelection
    public var mappings: [QueueMapping]
    public var preparation: Preparation

    public init(facts: DriverFacts, selection: PluginSelection, mappings: [QueueMapping], preparation: Preparation) {
        self.facts = facts; self.selection = selection; self.mappings = mappings; self.preparation = preparation
    }

    enum CodingKeys: String, CodingKey { case facts, selection, mappings, preparation }
}

/// How well one plugin fits an interface, and the plugin's own reason.
public struct PluginScore: Codable, Sendable, Equatable {
    public var plugin: String
    public var score: Int32
    public var reason: String
    public init(plugin: String, score: Int32, reason: String) { self.plugin = plugin; self.score = score; self.reason = reason }
    enum CodingKeys: String, CodingKey { case plugin, score, reason }
}

/// Which plugin handles an interface and why.
public struct PluginSelection: Codable, Sendable, Equatable {
    public var plugin: PluginInfo
    /// True when config forced the plugin by name.
    public var forced: Bool
    /// Every loaded plugin's score, best first (ties: by name).
    public var scores: [PluginScore]
    /// One sentence: why this plugin was chosen.
    public var why: String

    public init(plugin: PluginInfo, forced: Bool, scores: [PluginScore], why: String) {
        self.plugin = plugin; self.forced = forced; self.scores = scores; self.why = why
    }

    enum CodingKeys: String, CodingKey { case plugin, forced, scores, why }
}

/// What must hold before a pipeline runs on the interface (`prepare`).
public struct Preparation: Codable, Sendable, Equatable {
    /// Turn the rx-ntuple-filter feature on (and journal it).
    public var needsNtuple: Bool
    /// Only steered traffic reaches the AF_XDP queues.
    public var steeringRequired: Bool
    /// Advice: keep the AF_XDP channels out of RSS, or pass other traffic in XDP.
    public var excludeFromRSS: Bool
    /// The driver takes AF_XDP queues from combined channels only.
    public var combinedChannels: Bool
    /// No zero-copy: sockets run in copy mode.
    public var copyModeOnly: Bool
    /// Requirement bits this host does not know, as the plugin set them.
    public var unknownFlags: UInt64
    /// The XSKMAP must have at least this many entries (0: default).
    public var minXskmapEntries: UInt32
    /// The receive channels the interface really has when the facts
    /// overstate them (mlx5 before Linux 6.1 reports its counts doubled while
    /// zero-copy sockets are bound); nil when the facts are right. Channels
    /// 0 to this minus one are the ones to map by default.
    public var receiveChannels: UInt32?
    /// Advice or warning for the operator (empty when none).
    public var message: String

    public init(
        needsNtuple: Bool, steeringRequired: Bool, excludeFromRSS: Bool, combinedChannels: Bool, copyModeOnly: Bool,
        unknownFlags: UInt64, minXskmapEntries: UInt32, receiveChannels: UInt32?, message: String
    ) {
        self.needsNtuple = needsNtuple; self.steeringRequired = steeringRequired; self.excludeFromRSS = excludeFromRSS
        self.combinedChannels = combinedChannels; self.copyModeOnly = copyModeOnly; self.unknownFlags = unknownFlags
        self.minXskmapEntries = minXskmapEntries; self.receiveChannels = receiveChannels; self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case message
        case needsNtuple = "needs_ntuple", steeringRequired = "steering_required", excludeFromRSS = "exclude_from_rss"
        case combinedChannels = "combined_channels", copyModeOnly = "copy_mode_only", unknownFlags = "unknown_flags"
        case minXskmapEntries = "min_xskmap_entries", receiveChannels = "receive_channels"
    }
}

/// Channel counts as `ethtool -l` shows them.
public struct ChannelCounts: Codable, Sendable, Equatable, Hashable {
    public var rx: UInt32
    public var tx: UInt32
    public var combined: UInt32

    public init(rx: UInt32 = 0, tx: UInt32 = 0, combined: UInt32 = 0) { self.rx = rx; self.tx = tx; self.combined = combined }

    enum CodingKeys: String, CodingKey { case rx, tx, combined }

    /// Receive queues are numbered across combined and rx-only channels.
    /// Saturates rather than wrapping (facts with such counts are refused).
    public var receiveChannels: UInt32 {
        let (sum, overflow) = combined.addingReportingOverflow(rx)
        return overflow ? .max : sum
    }
}

/// What plugins are told about an interface (`struct sluice_driver_facts`).
/// Driver and channel counts come from the caller (the daemon asks SluiceNIC);
/// SluicePluginHost's `gather` adds the sysfs queue counts and the kernel
/// release, and `synthetic` builds a what-if question about a machine Sluice
/// is not running on.
public struct DriverFacts: Codable, Sendable, Equatable {
    public var interface: String
    public var driver: String
    public var driverVersion: String
    public var firmwareVersion: String
    public var kernelRelease: String
    public var channels: ChannelCounts
    public var maxChannels: ChannelCounts
    /// `rx-*` / `tx-*` entries under `/sys/class/net/IF/queues`; 0 = unknown.
    public var sysfsRxQueues: UInt32
    public var sysfsTxQueues: UInt32
    public var xdpAttached: Bool
    public var xdpMode: XDPMode
    /// The socket being mapped asks for zero-copy (bind mode `zerocopy` or
    /// `auto`); false for copy mode, including an `auto` bind whose
    /// zero-copy attempt failed and is mapped again.
    public var zeroCopyRequested: Bool
    /// Zero-copy AF_XDP sockets bound on the interface now, by any process
    /// (the kernel's AF_XDP sock_diag). mlx5 before Linux 6.1 reports its
    /// channel counts doubled while there are any.
    public var zeroCopySockets: UInt32
    /// True when the facts describe a hypothetical machine (what-if).
    public var synthetic: Bool

    public init(
        interface: String, driver: String, driverVersion: String = "",
        firmwareVersion: String = "", kernelRelease: String,
        channels: ChannelCounts, maxChannels: ChannelCounts = ChannelCounts(),
        sysfsRxQueues: UInt32, sysfsTxQueues: UInt32 = 0,
        xdpAttached: Bool = false, xdpMode: XDPMode = .none,
        zeroCopyRequested: Bool = true, zeroCopySockets: UInt32 = 0,
        synthetic: Bool = false
    ) {
        self.interface = interface; self.driver = driver; self.driverVersion = driverVersion
        self.firmwareVersion = firmwareVersion; self.kernelRelease = kernelRelease; self.channels = channels
        self.maxChannels = maxChannels; self.sysfsRxQueues = sysfsRxQueues; self.sysfsTxQueues = sysfsTxQueues
        self.xdpAttached = xdpAttached; self.xdpMode = xdpMode; self.zeroCopyRequested = zeroCopyRequested
        self.zeroCopySockets = zeroCopySockets; self.synthetic = synthetic
    }

    enum CodingKeys: String, CodingKey {
        case interface, driver, channels, synthetic
        case driverVersion = "driver_version", firmwareVersion = "firmware_version", kernelRelease = "kernel_release"
        case maxChannels = "max_channels", sysfsRxQueues = "sysfs_rx_queues", sysfsTxQueues = "sysfs_tx_queues"
        case xdpAttached = "xdp_attached", xdpMode = "xdp_mode", zeroCopyRequested = "zero_copy_requested"
        case zeroCopySockets = "zero_copy_sockets"
    }
}
