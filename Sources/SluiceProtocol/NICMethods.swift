extension Methods {
    public enum ChannelsGet: ControlMethod {
        public typealias Request = InterfaceRequest
        public typealias Response = Served<Channels>
        public static let name = "channels.get"
        public static let level = AccessLevel.read
        public static let summary = "Channel counts and maximums (ethtool -l)"
        public static let arguments = [InterfaceRequest.argument]
    }

    public enum ChannelsSet: ControlMethod {
        public typealias Response = Served<Channels>
        public static let name = "channels.set"
        public static let level = AccessLevel.admin
        public static let summary = "Set channel counts (ethtool -L); the driver plugin may veto"
        public static let arguments = [
            InterfaceRequest.argument,
            ArgumentSpec(Request.CodingKeys.rx, UInt32.self, "rx channels"),
            ArgumentSpec(Request.CodingKeys.tx, UInt32.self, "tx channels"),
            ArgumentSpec(Request.CodingKeys.other, UInt32.self, "other channels"),
            ArgumentSpec(Request.CodingKeys.combined, UInt32.self, "combined channels"),
        ]

        /// The counts to change; nil leaves a count alone.
        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            public var rx: UInt32?, tx: UInt32?, other: UInt32?, combined: UInt32?

            public init(iface: InterfaceName, rx: UInt32? = nil, tx: UInt32? = nil, other: UInt32? = nil, combined: UInt32? = nil) {
                self.iface = iface; self.rx = rx; self.tx = tx; self.other = other; self.combined = combined
            }

            public enum CodingKeys: String, CodingKey { case iface, rx, tx, other, combined }
        }
    }

    public enum RingsGet: ControlMethod {
        public typealias Request = InterfaceRequest
        public typealias Response = Served<Rings>
        public static let name = "rings.get"
        public static let level = AccessLevel.read
        public static let summary = "Ring sizes and maximums (ethtool -g)"
        public static let arguments = [InterfaceRequest.argument]
    }

    public enum RingsSet: ControlMethod {
        public typealias Response = Served<Rings>
        public static let name = "rings.set"
        public static let level = AccessLevel.admin
        public static let summary = "Set ring sizes (ethtool -G)"
        public static let arguments = [
            InterfaceRequest.argument,
            ArgumentSpec(Request.CodingKeys.rx, UInt32.self, "rx ring"),
            ArgumentSpec(Request.CodingKeys.rxMini, UInt32.self, "rx mini ring"),
            ArgumentSpec(Request.CodingKeys.rxJumbo, UInt32.self, "rx jumbo ring"),
            ArgumentSpec(Request.CodingKeys.tx, UInt32.self, "tx ring"),
        ]

        /// Ring sizes to change; nil leaves one alone.
        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            public var rx: UInt32?, rxMini: UInt32?, rxJumbo: UInt32?, tx: UInt32?

            public init(iface: InterfaceName, rx: UInt32? = nil, rxMini: UInt32? = nil, rxJumbo: UInt32? = nil, tx: UInt32? = nil) {
                self.iface = iface; self.rx = rx; self.rxMini = rxMini; self.rxJumbo = rxJumbo; self.tx = tx
            }

            public enum CodingKeys: String, CodingKey { case iface, rx, tx, rxMini = "rx_mini", rxJumbo = "rx_jumbo" }
        }
    }
}

/// The request of a method about one interface.
public struct InterfaceRequest: Codable, Sendable, Equatable {
    public var iface: InterfaceName
    public init(iface: InterfaceName) { self.iface = iface }
    public enum CodingKeys: String, CodingKey { case iface }

    public static let argument = ArgumentSpec(CodingKeys.iface, .string, required: true, "interface name, e.g. eth0")
}

/// A value together with the ethtool interface that produced it.
public struct Served<Value: Codable & Equatable & Sendable>: Codable, Equatable, Sendable {
    public var value: Value
    public var backend: EthtoolBackend
    public init(_ value: Value, backend: EthtoolBackend) { self.value = value; self.backend = backend }
    enum CodingKeys: String, CodingKey { case value, backend }
}

/// `ethtool -l`: channel counts and their maxima.
public struct Channels: Codable, Equatable, Sendable {
    public var maxRX: UInt32, maxTX: UInt32, maxOther: UInt32, maxCombined: UInt32
    public var rx: UInt32, tx: UInt32, other: UInt32, combined: UInt32

    public init(maxRX: UInt32 = 0, maxTX: UInt32 = 0, maxOther: UInt32 = 0, maxCombined: UInt32 = 0,
                rx: UInt32 = 0, tx: UInt32 = 0, other: UInt32 = 0, combined: UInt32 = 0) {
        self.maxRX = maxRX; self.maxTX = maxTX; self.maxOther = maxOther; self.maxCombined = maxCombined
        self.rx = rx; self.tx = tx; self.other = other; self.combined = combined
    }

    enum CodingKeys: String, CodingKey {
        case rx, tx, other, combined
        case maxRX = "max_rx", maxTX = "max_tx", maxOther = "max_other", maxCombined = "max_combined"
    }
}

/// `ethtool -g`: ring sizes and their maxima.
public struct Rings: Codable, Equatable, Sendable {
    public var rxMax: UInt32, rxMiniMax: UInt32, rxJumboMax: UInt32, txMax: UInt32
    public var rx: UInt32, rxMini: UInt32, rxJumbo: UInt32, tx: UInt32

    public init(rxMax: UInt32 = 0, rxMiniMax: UInt32 = 0, rxJumboMax: UInt32 = 0, txMax: UInt32 = 0,
                rx: UInt32 = 0, rxMini: UInt32 = 0, rxJumbo: UInt32 = 0, tx: UInt32 = 0) {
        self.rxMax = rxMax; self.rxMiniMax = rxMiniMax; self.rxJumboMax = rxJumboMax; self.txMax = txMax
        self.rx = rx; self.rxMini = rxMini; self.rxJumbo = rxJumbo; self.tx = tx
    }

    enum CodingKeys: String, CodingKey {
        case rx, tx, rxMini = "rx_mini", rxJumbo = "rx_jumbo"
        case rxMax = "rx_max", rxMiniMax = "rx_mini_max", rxJumboMax = "rx_jumbo_max", txMax = "tx_max"
    }
}

extension Methods {
    public enum FeaturesGet: ControlMethod {
        public typealias Request = InterfaceRequest
        public typealias Response = Served<Features>
        public static let name = "features.get"
        public static let level = AccessLevel.read
        public static let summary = "Offload features (ethtool -k)"
        public static let arguments = [InterfaceRequest.argument]
    }

    public enum FeaturesSet: ControlMethod {
        public typealias Response = FeaturesSetResult
        public static let name = "features.set"
        public static let level = AccessLevel.admin
        public static let summary = "Turn features on or off (ethtool -K); kernel or ethtool names"
        public static let arguments = [
            InterfaceRequest.argument,
            ArgumentSpec(Request.CodingKeys.features, .object, required: true, "e.g. {\"ntuple\": true, \"gro\": false}"),
        ]

        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            /// Feature name (the kernel's or ethtool's) to the state wanted.
            public var features: [String: Bool]
            public init(iface: InterfaceName, features: [String: Bool]) { self.iface = iface; self.features = features }
            public enum CodingKeys: String, CodingKey { case iface, features }
        }
    }

    public enum RSSGet: ControlMethod {
        public typealias Request = InterfaceRequest
        public typealias Response = Served<RSSConfiguration>
        public static let name = "rss.get"
        public static let level = AccessLevel.read
        public static let summary = "RSS indirection table and hash key (ethtool -x)"
        public static let arguments = [InterfaceRequest.argument]
    }

    public enum RSSSet: ControlMethod {
        public typealias Response = Served<RSSConfiguration>
        public static let name = "rss.set"
        public static let level = AccessLevel.admin
        public static let summary = "Set the RSS indirection table (ethtool -X): a whole table, or equal N"
        public static let arguments = [
            InterfaceRequest.argument,
            ArgumentSpec(Request.CodingKeys.table, .array, "one queue per entry, as long as the current table"),
            ArgumentSpec(Request.CodingKeys.equal, UInt32.self, in: 1...65_535, "spread over queues 0..N-1, as ethtool -X equal N"),
        ]

        /// Either a whole table or `equal`.
        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            public var table: [UInt32]?
            public var equal: UInt32?
            public init(iface: InterfaceName, table: [UInt32]? = nil, equal: UInt32? = nil) {
                self.iface = iface; self.table = table; self.equal = equal
            }
            public enum CodingKeys: String, CodingKey { case iface, table, equal }
        }
    }
}

/// One offload feature as `ethtool -k` shows it.
public struct Feature: Codable, Equatable, Sendable {
    /// The kernel's name (`rx-ntuple-filter`).
    public var name: String
    public var active: Bool
    public var requested: Bool
    /// False for what `ethtool -k` marks `[fixed]`.
    public var changeable: Bool

    public init(name: String, active: Bool, requested: Bool, changeable: Bool) {
        self.name = name; self.active = active; self.requested = requested; self.changeable = changeable
    }

    enum CodingKeys: String, CodingKey { case name, active, requested, changeable }
}

/// All features of an interface, in the kernel's order.
public struct Features: Codable, Equatable, Sendable {
    public var features: [Feature]
    public init(features: [Feature]) { self.features = features }
    enum CodingKeys: String, CodingKey { case features }

    public subscript(name: String) -> Feature? { features.first { $0.name == name } }
}

/// What became of one feature that `features.set` asked for, read back
/// from the driver after the change.
public struct FeatureOutcome: Codable, Equatable, Sendable {
    /// The kernel's name (`rx-ntuple-filter`).
    public var name: String
    /// The name the caller used (`ntuple`), which may stand for several features.
    public var requestedAs: String
    /// The state asked for.
    public var requested: Bool
    /// The state the driver has now (`ethtool -k`).
    public var active: Bool
    /// `[fixed]` in `ethtool -k`: the driver cannot change it.
    public var fixed: Bool
    /// `active == requested`.
    public var applied: Bool
    /// "requested ntuple (rx-ntuple-filter) on; it is fixed off on eth0".
    public var message: String

    public init(name: String, requestedAs: String, requested: Bool, active: Bool, fixed: Bool, message: String) {
        self.name = name; self.requestedAs = requestedAs; self.requested = requested
        self.active = active; self.fixed = fixed; self.applied = active == requested; self.message = message
    }

    enum CodingKeys: String, CodingKey { case name, requested, active, fixed, applied, message, requestedAs = "requested_as" }
}

/// The result of `features.set`: the features as read back after the
/// change (`value` and `backend`, the shape of ``Served``) and, per
/// requested feature, what was asked for and what is in effect.
public struct FeaturesSetResult: Codable, Equatable, Sendable {
    public var interface: String
    public var value: Features
    public var backend: EthtoolBackend
    public var outcomes: [FeatureOutcome]

    public init(interface: String, value: Features, backend: EthtoolBackend, outcomes: [FeatureOutcome]) {
        self.interface = interface; self.value = value; self.backend = backend; self.outcomes = outcomes
    }

    enum CodingKeys: String, CodingKey { case interface, value, backend, outcomes }

    /// Requested features that are not in effect.
    public var notApplied: [FeatureOutcome] { outcomes.filter { !$0.applied } }
}

/// RSS indirection table and hash key (`ethtool -x`).
public struct RSSConfiguration: Codable, Equatable, Sendable {
    /// Entry i names the rx queue that hash bucket i goes to.
    public var indirectionTable: [UInt32]
    /// The hash key in lowercase hex bytes separated by colons, as ethtool shows it.
    public var hashKey: String
    public var hashFunction: UInt8

    public init(indirectionTable: [UInt32], hashKey: String, hashFunction: UInt8) {
        self.indirectionTable = indirectionTable; self.hashKey = hashKey; self.hashFunction = hashFunction
    }

    enum CodingKeys: String, CodingKey {
        case indirectionTable = "indirection_table", hashKey = "hash_key", hashFunction = "hash_function"
    }

    /// A table of `size` entries spread round-robin over `queues` queues
    /// (`ethtool -X IF equal N`).
    public static func equalTable(size: Int, queues: UInt32) -> [UInt32] {
        guard queues > 0 else { return [] }
        return (0..<size).map { UInt32($0) % queues }
    }
}

extension Methods {
    public enum NICList: ControlMethod {
        public static let name = "nic.list"
        public static let level = AccessLevel.read
        public static let summary = "Interfaces: index, driver, queues, link, XDP program"

        public struct Response: Codable, Sendable, Equatable {
            public var interfaces: [InterfaceInfo]
            public init(interfaces: [InterfaceInfo]) { self.interfaces = interfaces }
            enum CodingKeys: String, CodingKey { case interfaces }
        }
    }

    public enum NICStatistics: ControlMethod {
        public typealias Request = InterfaceRequest
        public typealias Response = Served<DriverStatistics>
        public static let name = "nic.stats"
        public static let level = AccessLevel.read
        public static let summary = "Driver statistics (ethtool -S), with per-queue counters where the names say so"
        public static let arguments = [InterfaceRequest.argument]
    }

    public enum FlowHashGet: ControlMethod {
        /// ethtool's letters (`sdfn`).
        public typealias Response = Served<String>
        public static let name = "flowhash.get"
        public static let level = AccessLevel.read
        public static let summary = "Fields hashed for a flow type (ethtool -n IF rx-flow-hash TYPE)"
        public static let arguments = [
            InterfaceRequest.argument,
            ArgumentSpec(Request.CodingKeys.flowType, .string, required: true, "tcp4, udp4, tcp6, udp6, ..."),
        ]

        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            public var flowType: HashFlowType
            public init(iface: InterfaceName, flowType: HashFlowType) { self.iface = iface; self.flowType = flowType }
            public enum CodingKeys: String, CodingKey { case iface, flowType = "flow_type" }
        }
    }

    public enum FlowHashSet: ControlMethod {
        public typealias Response = Served<String>
        public static let name = "flowhash.set"
        public static let level = AccessLevel.admin
        public static let summary = "Set the hashed fields (ethtool -N IF rx-flow-hash TYPE sdfn)"
        public static let arguments = FlowHashGet.arguments + [
            ArgumentSpec(Request.CodingKeys.fields, .string, required: true, "ethtool letters: m v t s d f n r"),
        ]

        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            public var flowType: HashFlowType
            /// ethtool's letters, e.g. `sdfn`.
            public var fields: String
            public init(iface: InterfaceName, flowType: HashFlowType, fields: String) {
                self.iface = iface; self.flowType = flowType; self.fields = fields
            }
            public enum CodingKeys: String, CodingKey { case iface, fields, flowType = "flow_type" }
        }
    }
}

/// An XDP program attached to an interface.
public struct XDPAttachment: Codable, Equatable, Sendable {
    public var programID: UInt32
    /// `native` (driver), `skb` (generic), `hw` (offloaded) or `multi`.
    public var mode: String
    public init(programID: UInt32, mode: String) { self.programID = programID; self.mode = mode }
    enum CodingKeys: String, CodingKey { case mode, programID = "program_id" }
}

/// What `nic.list` shows for one interface.
public struct InterfaceInfo: Codable, Equatable, Sendable {
    public var name: String
    public var index: UInt32
    /// From ETHTOOL_GDRVINFO; empty for devices without a driver (lo).
    public var driver: String
    public var driverVersion: String
    public var firmwareVersion: String
    public var busInfo: String
    /// Entries `rx-*` / `tx-*` under /sys/class/net/IF/queues (on old mlx5
    /// with XSK, twice the channel count).
    public var rxQueues: Int
    public var txQueues: Int
    public var operState: String
    public var up: Bool
    public var mtu: UInt32
    public var macAddress: String
    public var xdp: XDPAttachment?

    public init(
        name: String, index: UInt32, driver: String, driverVersion: String, firmwareVersion: String, busInfo: String,
        rxQueues: Int, txQueues: Int, operState: String, up: Bool, mtu: UInt32, macAddress: String, xdp: XDPAttachment?
    ) {
        self.name = name; self.index = index; self.driver = driver; self.driverVersion = driverVersion
        self.firmwareVersion = firmwareVersion; self.busInfo = busInfo; self.rxQueues = rxQueues
        self.txQueues = txQueues; self.operState = operState; self.up = up; self.mtu = mtu
        self.macAddress = macAddress; self.xdp = xdp
    }

    enum CodingKeys: String, CodingKey {
        case name, index, driver, up, mtu, xdp
        case driverVersion = "driver_version", firmwareVersion = "firmware_version", busInfo = "bus_info"
        case rxQueues = "rx_queues", txQueues = "tx_queues", operState = "oper_state", macAddress = "mac_address"
    }
}

/// One counter of `ethtool -S`.
public struct DriverCounter: Codable, Equatable, Sendable {
    public var name: String
    public var value: UInt64
    public init(name: String, value: UInt64) { self.name = name; self.value = value }
    enum CodingKeys: String, CodingKey { case name, value }
}

/// The counters of one queue, keyed by the rest of the driver's name
/// (`rx_queue_2_xdp_packets` → queue 2, rx, `xdp_packets`).
public struct QueueCounters: Codable, Equatable, Sendable {
    public var direction: QueueDirection
    public var queue: UInt32
    public var counters: [String: UInt64]

    public init(direction: QueueDirection, queue: UInt32, counters: [String: UInt64]) {
        self.direction = direction; self.queue = queue; self.counters = counters
    }

    enum CodingKeys: String, CodingKey { case direction, queue, counters }
}

/// `ethtool -S`, whole and grouped per queue where the names say so.
public struct DriverStatistics: Codable, Equatable, Sendable {
    public var counters: [DriverCounter]
    public var queues: [QueueCounters]
    public init(counters: [DriverCounter], queues: [QueueCounters]) { self.counters = counters; self.queues = queues }
    enum CodingKeys: String, CodingKey { case counters, queues }

    public subscript(name: String) -> UInt64? { counters.first { $0.name == name }?.value }

    /// A queue's counter, e.g. `queue(.rx, 2, "xdp_packets")`.
    public func queue(_ direction: QueueDirection, _ queue: UInt32, _ field: String) -> UInt64? {
        queues.first { $0.direction == direction && $0.queue == queue }?.counters[field]
    }
}
