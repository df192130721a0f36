extension Methods {
    public enum PipelineStart: ControlMethod {
        public typealias Request = OptionalInterfaceRequest
        public typealias Response = PipelineReports
        public static let name = "pipeline.start"
        public static let level = AccessLevel.admin
        public static let summary = "Start the receive pipeline of every [[interface]] (or one) with the current configuration"
        public static let arguments = [OptionalInterfaceRequest.argument]
    }

    public enum PipelineStop: ControlMethod {
        public typealias Request = OptionalInterfaceRequest
        public typealias Response = PipelineReports
        public static let name = "pipeline.stop"
        public static let level = AccessLevel.admin
        public static let summary = "Stop the receive pipelines (or one); their final counters stay in stats"
        public static let arguments = [OptionalInterfaceRequest.argument]
    }

    public enum PipelineStatus: ControlMethod {
        public static let name = "pipeline.status"
        public static let level = AccessLevel.read
        public static let summary = "Pipelines: plugin, channel → queue mapping, sockets, zero-copy, modules, counters"

        public struct Response: Codable, Sendable, Equatable {
            /// The configured processing mode and modules, for the next start.
            public var mode: String
            public var autostart: Bool
            public var modules: [String]
            public var pipelines: [PipelineReport]
            /// Interfaces whose last start failed (autostart included), until
            /// they start: a pipeline that did not start says so here too,
            /// not only in the log and the failed call's reply.
            public var failedStarts: [FailedStart]

            public init(
                mode: String, autostart: Bool, modules: [String], pipelines: [PipelineReport], failedStarts: [FailedStart] = []
            ) {
                self.mode = mode; self.autostart = autostart; self.modules = modules; self.pipelines = pipelines
                self.failedStarts = failedStarts
            }

            enum CodingKeys: String, CodingKey { case mode, autostart, modules, pipelines, failedStarts = "failed_starts" }
        }
    }
}

/// A pipeline start that failed: which interface, when, and the error.
public struct FailedStart: Codable, Sendable, Equatable {
    public var interface: String
    /// ISO 8601, e.g. `2026-01-02T03:04:05Z`.
    public var at: String
    public var error: String

    public init(interface: String, at: String, error: String) {
        self.interface = interface; self.at = at; self.error = error
    }

    enum CodingKeys: String, CodingKey { case interface, at, error }
}

/// The request of a method about every interface, or one.
public struct OptionalInterfaceRequest: Codable, Sendable, Equatable {
    public var iface: InterfaceName?
    public init(iface: InterfaceName? = nil) { self.iface = iface }
    public enum CodingKeys: String, CodingKey { case iface }

    public static let argument = ArgumentSpec(CodingKeys.iface, .string, "only this interface")
}

public struct PipelineReports: Codable, Sendable, Equatable {
    public var pipelines: [PipelineReport]
    public init(pipelines: [PipelineReport]) { self.pipelines = pipelines }
    enum CodingKeys: String, CodingKey { case pipelines }
}

/// What `pipeline.status` and `stats.get` show for one interface.
public struct PipelineReport: Codable, Sendable, Equatable {
    public struct Totals: Codable, Sendable, Equatable {
        public var rxPackets: UInt64 = 0, rxBytes: UInt64 = 0
        public var kernelDropped: UInt64 = 0, ringFull: UInt64 = 0, fillRingEmpty: UInt64 = 0
        public var handoffDrops: UInt64 = 0, passed: UInt64 = 0, dropped: UInt64 = 0
        public var transmitted: UInt64 = 0, transmitFailed: UInt64 = 0, malformed: UInt64 = 0

        public init() {}

        /// Public: a stats stream's `rates` are keyed by these names.
        public enum CodingKeys: String, CodingKey {
            case passed, dropped, transmitted, malformed
            case rxPackets = "rx_packets", rxBytes = "rx_bytes", kernelDropped = "kernel_dropped", ringFull = "ring_full"
            case fillRingEmpty = "fill_ring_empty", handoffDrops = "handoff_drops", transmitFailed = "transmit_failed"
        }
    }

    public var interface: String
    public var running: Bool
    /// Why a pipeline stopped without being asked to (the NIC changed under
    /// it and it could not start again, or the interface went away).
    public var stopReason: String?
    public var plugin: String
    /// ISO 8601, e.g. `2026-01-02T03:04:05Z`.
    public var startedAt: String
    /// Rx queues the XDP attach added that no socket reads, and why.
    public var unreadAddedQueues: String?
    public var mappings: [QueueMapping]
    public var totals: Totals
    /// Each module's counters over all sockets (count: flows merged).
    public var modules: [ModuleSnapshot]
    public var statistics: PipelineStatistics

    public init(
        interface: String, running: Bool, stopReason: String? = nil, plugin: String, startedAt: String,
        unreadAddedQueues: String?, mappings: [QueueMapping], totals: Totals, modules: [ModuleSnapshot],
        statistics: PipelineStatistics
    ) {
        self.interface = interface; self.running = running; self.stopReason = stopReason; self.plugin = plugin
        self.startedAt = startedAt; self.unreadAddedQueues = unreadAddedQueues; self.mappings = mappings
        self.totals = totals; self.modules = modules; self.statistics = statistics
    }

    enum CodingKeys: String, CodingKey {
        case interface, running, plugin, mappings, totals, modules, statistics
        case stopReason = "stop_reason", startedAt = "started_at", unreadAddedQueues = "unread_added_queues"
    }
}

/// Where one channel's traffic is picked up. Computed only by plugins, through
/// the host: the socket's bind queue, the ntuple action / RSS target and the
/// XSKMAP key must all come from here.
public struct QueueMapping: Codable, Sendable, Equatable {
    public var channel: UInt32
    public var bindQueue: UInt32
    public var steerQueue: UInt32
    public var xskmapKey: UInt32
    /// The plugin's explanation (empty when it had nothing to say).
    public var message: String

    public init(channel: UInt32, bindQueue: UInt32, steerQueue: UInt32, xskmapKey: UInt32, message: String) {
        self.channel = channel; self.bindQueue = bindQueue; self.steerQueue = steerQueue; self.xskmapKey = xskmapKey
        self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case channel, message, bindQueue = "bind_queue", steerQueue = "steer_queue", xskmapKey = "xskmap_key"
    }
}

/// A module's counters: names to values, plus optional tables (e.g. top flows).
public struct ModuleSnapshot: Codable, Sendable, Equatable {
    public var kind: String
    public var counters: [String: UInt64]
    /// Rows for tables such as the count module's top-N flows.
    public var rows: [[String: String]]

    public init(kind: String, counters: [String: UInt64], rows: [[String: String]] = []) {
        self.kind = kind; self.counters = counters; self.rows = rows
    }

    enum CodingKeys: String, CodingKey { case kind, counters, rows }
}

public struct PipelineStatistics: Codable, Sendable, Equatable {
    public var interface: String
    public var mode: ProcessingMode
    public var attachMode: XDPAttachMode
    public var programID: UInt32
    public var sockets: [SocketStatistics]
    /// The XDP program's per-queue counters (empty once stopped).
    public var xdp: [XDPQueueCounters]
    /// Whether the driver's RX metadata reaches the modules, and why (not);
    /// nil from a daemon before RX metadata.
    public var rxMetadata: RxMetadataStatus?

    public init(
        interface: String, mode: ProcessingMode, attachMode: XDPAttachMode, programID: UInt32,
        sockets: [SocketStatistics], xdp: [XDPQueueCounters], rxMetadata: RxMetadataStatus? = nil
    ) {
        self.interface = interface; self.mode = mode; self.attachMode = attachMode; self.programID = programID
        self.sockets = sockets; self.xdp = xdp; self.rxMetadata = rxMetadata
    }

    enum CodingKeys: String, CodingKey {
        case interface, mode, sockets, xdp, attachMode = "attach_mode", programID = "program_id"
        case rxMetadata = "rx_metadata"
    }
}

/// Driver RX metadata on one interface: whether Sluice's XDP program stores
/// the driver's receive timestamp and RSS hash before each frame (the
/// device-bound variant, with the XDP metadata kfuncs), and what the driver
/// answered so far.
public struct RxMetadataStatus: Codable, Sendable, Equatable {
    /// What the driver gave for one kind of metadata, judged from the XDP
    /// program's counters over all queues.
    public enum Availability: String, Codable, Sendable {
        /// The metadata variant is not loaded (`reason` says why).
        case off
        /// No frame has been redirected yet: nothing to judge by.
        case unseen
        /// At least one frame carried it.
        case provided
        /// The kfunc answered EOPNOTSUPP: the driver does not implement it.
        case unsupported
        /// The driver implements it but gave none (ENODATA, or a zero
        /// timestamp, as veth without hardware stamps).
        case absent
    }

    /// The device-bound metadata program is the one attached.
    public var inUse: Bool
    /// Why it is (or is not) in use: the probe's finding, the config, the
    /// attach mode, or the load error that made Sluice fall back.
    public var reason: String
    public var timestamp: Availability
    public var hash: Availability

    public init(inUse: Bool, reason: String, timestamp: Availability = .off, hash: Availability = .off) {
        self.inUse = inUse; self.reason = reason; self.timestamp = timestamp; self.hash = hash
    }

    enum CodingKeys: String, CodingKey { case reason, timestamp, hash, inUse = "in_use" }
}

/// Counters of one socket and its stages.
public struct SocketStatistics: Codable, Sendable, Equatable {
    public var channel: Int
    public var queue: UInt32
    public var xskmapKey: UInt32
    public var zeroCopy: Bool
    public var fallbackReason: String?
    public var rxPackets: UInt64
    public var rxBytes: UInt64
    /// RX → worker ring full: dropped at the hand-off.
    public var handoffDrops: UInt64
    public var passed: UInt64
    public var dropped: UInt64
    public var transmitted: UInt64
    /// `.transmit` verdicts the TX ring had no room for (frame recycled).
    public var transmitFailed: UInt64
    public var malformed: UInt64
    /// Frames refused on their way back to the fill ring because a module
    /// rewrote their address (a module bug; should stay 0).
    public var invalidFrames: UInt64
    public var kernel: KernelSocketStatistics
    /// This socket's module chain, in order.
    public var modules: [ModuleSnapshot]
    /// Whether the RX thread drives this socket by busy-poll kicks
    /// (`busy_poll` of its `[[interface]]`); nil from a daemon before busy polling.
    public var busyPoll: Bool?
    /// recvfrom(MSG_DONTWAIT) kicks the RX thread made on an empty RX ring
    /// instead of sleeping (busy polling only).
    public var busyPollKicks: UInt64?
    /// Times the RX thread slept in poll() (its wake-ups).
    public var pollSleeps: UInt64?
    /// Whether the socket takes packets larger than a frame as chains
    /// (bound with XDP_USE_SG); nil from a daemon before multi-buffer.
    public var multiBuffer: Bool?
    /// Packets received as a chain of frames.
    public var multiBufferPackets: UInt64?
    /// Chains refused (longer than 64 frames): their frames recycled.
    public var invalidChains: UInt64?

    public init(
        channel: Int, queue: UInt32, xskmapKey: UInt32, zeroCopy: Bool, fallbackReason: String?, rxPackets: UInt64,
        rxBytes: UInt64, handoffDrops: UInt64, passed: UInt64, dropped: UInt64, transmitted: UInt64,
        transmitFailed: UInt64, malformed: UInt64, invalidFrames: UInt64, kernel: KernelSocketStatistics,
        modules: [ModuleSnapshot], busyPoll: Bool? = nil, busyPollKicks: UInt64? = nil, pollSleeps: UInt64? = nil,
        multiBuffer: Bool? = nil, multiBufferPackets: UInt64? = nil, invalidChains: UInt64? = nil
    ) {
        self.multiBuffer = multiBuffer; self.multiBufferPackets = multiBufferPackets; self.invalidChains = invalidChains
        self.busyPoll = busyPoll; self.busyPollKicks = busyPollKicks; self.pollSleeps = pollSleeps
        self.channel = channel; self.queue = queue; self.xskmapKey = xskmapKey; self.zeroCopy = zeroCopy
        self.fallbackReason = fallbackReason; self.rxPackets = rxPackets; self.rxBytes = rxBytes
        self.handoffDrops = handoffDrops; self.passed = passed; self.dropped = dropped; self.transmitted = transmitted
        self.transmitFailed = transmitFailed; self.malformed = malformed; self.invalidFrames = invalidFrames
        self.kernel = kernel; self.modules = modules
    }

    enum CodingKeys: String, CodingKey {
        case channel, queue, passed, dropped, transmitted, malformed, kernel, modules
        case xskmapKey = "xskmap_key", zeroCopy = "zero_copy", fallbackReason = "fallback_reason"
        case rxPackets = "rx_packets", rxBytes = "rx_bytes", handoffDrops = "handoff_drops"
        case transmitFailed = "transmit_failed", invalidFrames = "invalid_frames"
        case busyPoll = "busy_poll", busyPollKicks = "busy_poll_kicks", pollSleeps = "poll_sleeps"
        case multiBuffer = "multi_buffer", multiBufferPackets = "multi_buffer_packets", invalidChains = "invalid_chains"
    }

    /// Packets that reached the socket or were counted lost on the way:
    /// received plus the kernel's drops for this socket.
    public var accounted: UInt64 { rxPackets &+ kernel.rxDropped &+ kernel.rxRingFull }
}

/// The kernel's counters of one AF_XDP socket (XDP_STATISTICS).
public struct KernelSocketStatistics: Codable, Sendable, Equatable {
    public var rxDropped: UInt64, rxInvalidDescriptors: UInt64, txInvalidDescriptors: UInt64
    public var rxRingFull: UInt64, fillRingEmpty: UInt64, txRingEmpty: UInt64

    public init(
        rxDropped: UInt64 = 0, rxInvalidDescriptors: UInt64 = 0, txInvalidDescriptors: UInt64 = 0,
        rxRingFull: UInt64 = 0, fillRingEmpty: UInt64 = 0, txRingEmpty: UInt64 = 0
    ) {
        self.rxDropped = rxDropped; self.rxInvalidDescriptors = rxInvalidDescriptors
        self.txInvalidDescriptors = txInvalidDescriptors; self.rxRingFull = rxRingFull
        self.fillRingEmpty = fillRingEmpty; self.txRingEmpty = txRingEmpty
    }

    enum CodingKeys: String, CodingKey {
        case rxDropped = "rx_dropped", rxInvalidDescriptors = "rx_invalid_descriptors"
        case txInvalidDescriptors = "tx_invalid_descriptors", rxRingFull = "rx_ring_full"
        case fillRingEmpty = "fill_ring_empty", txRingEmpty = "tx_ring_empty"
    }
}

/// Counters the XDP program keeps per rx queue, summed over CPUs.
public struct XDPQueueCounters: Codable, Sendable, Equatable {
    public var queue: Int
    /// Handed to the socket at the queue's XSKMAP key.
    public var redirected: UInt64
    /// Outside the prefilter (or on a queue Sluice does not own): to the kernel.
    public var passed: UInt64
    /// Matched, but no socket at the key: to the kernel.
    public var redirectFailed: UInt64
    /// RX metadata (0 unless the metadata program runs; nil from a daemon
    /// before it): frames that carried Sluice's metadata struct, frames with
    /// no room for it, and per kind the frames the driver could not
    /// (EOPNOTSUPP) or did not (ENODATA, zero timestamp) give it for.
    public var metadataWritten: UInt64?
    public var metadataNoRoom: UInt64?
    public var timestampUnsupported: UInt64?
    public var timestampAbsent: UInt64?
    public var hashUnsupported: UInt64?
    public var hashAbsent: UInt64?

    public init(queue: Int, redirected: UInt64, passed: UInt64, redirectFailed: UInt64) {
        self.queue = queue; self.redirected = redirected; self.passed = passed; self.redirectFailed = redirectFailed
    }

    enum CodingKeys: String, CodingKey {
        case queue, redirected, passed, redirectFailed = "redirect_failed"
        case metadataWritten = "metadata_written", metadataNoRoom = "metadata_no_room"
        case timestampUnsupported = "timestamp_unsupported", timestampAbsent = "timestamp_absent"
        case hashUnsupported = "hash_unsupported", hashAbsent = "hash_absent"
    }
}
