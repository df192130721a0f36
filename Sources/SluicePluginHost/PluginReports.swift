import CSluiceDriverABI
import SluiceProtocol

/// How well one plugin fits an interface, and the plugin's own reason.
public struct PluginScore: Codable, Sendable, Equatable {
    public var plugin: String
    public var score: Int32
    public var reason: String
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

    /// What a plugin without a prepare hook requires: nothing.
    public static let none = Preparation(sluice_requirements(), message: "")

    init(_ req: sluice_requirements, message: String) {
        var rest = req.flags
        func take(_ flag: UInt64) -> Bool {
            defer { rest &= ~flag }
            return req.flags & flag != 0
        }
        needsNtuple = take(SLUICE_REQ_NTUPLE_ON)
        steeringRequired = take(SLUICE_REQ_STEERING_REQUIRED)
        excludeFromRSS = take(SLUICE_REQ_EXCLUDE_FROM_RSS)
        combinedChannels = take(SLUICE_REQ_COMBINED_CHANNELS)
        copyModeOnly = take(SLUICE_REQ_COPY_MODE_ONLY)
        unknownFlags = rest
        minXskmapEntries = req.min_xskmap_entries
        receiveChannels = req.rx_channels > 0 ? req.rx_channels : nil
        self.message = message
    }

    /// The channels a pipeline on `facts` maps when config names none: every
    /// receive channel the interface has.
    public func defaultChannels(for facts: DriverFacts) -> [UInt32] {
        let known = receiveChannels ?? facts.channels.receiveChannels
        return Array(0..<(known > 0 ? known : facts.sysfsRxQueues))
    }
}

/// The plugin's answer to a proposed channel change.
public struct ChannelChangeVerdict: Codable, Sendable, Equatable {
    public var allowed: Bool
    public var message: String

    public init(allowed: Bool, message: String) {
        self.allowed = allowed
        self.message = message
    }
}

/// `plugins.explain`: the chosen plugin, why, the facts it saw, and the
/// per-channel mapping with the preconditions.
public struct PluginExplanation: Codable, Sendable, Equatable {
    public var facts: DriverFacts
    public var selection: PluginSelection
    public var mappings: [QueueMapping]
    public var preparation: Preparation
}
