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
