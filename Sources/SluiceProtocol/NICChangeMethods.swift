extension Methods {
    public enum NICShow: ControlMethod {
        public typealias Request = InterfaceRequest
        public typealias Response = InterfaceDetails
        public static let name = "nic.show"
        public static let level = AccessLevel.read
        public static let summary = "One interface: driver, queues, channels, rings, features, Sluice's changes and outside changes"
        public static let arguments = [InterfaceRequest.argument]
    }

    public enum NICRestore: ControlMethod {
        public typealias Response = RestoreReport
        public static let name = "nic.restore"
        public static let level = AccessLevel.admin
        public static let summary = "Undo every NIC change Sluice made (values changed since by others are left alone)"
    }
}

/// What `nic.show` reports for one interface.
public struct InterfaceDetails: Codable, Equatable, Sendable {
    public var interface: InterfaceInfo
    public var channels: Served<Channels>?
    public var rings: Served<Rings>?
    public var features: Served<Features>?
    /// Why a part is missing ("veth does not support ring parameters (ethtool -g) on ...").
    public var problems: [String]
    /// Sluice's journaled changes on this interface, oldest first.
    public var changes: [JournalEntry]
    /// Values Sluice set that someone else changed since (needs monitoring).
    public var outsideChanges: [String]

    public init(
        interface: InterfaceInfo, channels: Served<Channels>?, rings: Served<Rings>?, features: Served<Features>?,
        problems: [String], changes: [JournalEntry], outsideChanges: [String]
    ) {
        self.interface = interface; self.channels = channels; self.rings = rings; self.features = features
        self.problems = problems; self.changes = changes; self.outsideChanges = outsideChanges
    }

    enum CodingKeys: String, CodingKey {
        case interface, channels, rings, features, problems, changes, outsideChanges = "outside_changes"
    }
}

/// What happened to one journaled change on restore.
public struct RestoreOutcome: Codable, Equatable, Sendable {
    public enum Status: String, WireEnumeration {
        case restored
        /// Someone else changed the value after Sluice: left alone.
        case changedOutside = "changed_outside"
        case interfaceGone = "interface_gone"
        case failed
    }

    public var status: Status
    public var interface: String
    public var message: String
    public var entry: JournalEntry

    public init(status: Status, interface: String, message: String, entry: JournalEntry) {
        self.status = status; self.interface = interface; self.message = message; self.entry = entry
    }

    enum CodingKeys: String, CodingKey { case status, interface, message, entry }
}

public struct RestoreReport: Codable, Equatable, Sendable {
    public var outcomes: [RestoreOutcome] = []

    public init() {}

    public func with(_ status: RestoreOutcome.Status) -> [RestoreOutcome] { outcomes.filter { $0.status == status } }
    public var failures: [RestoreOutcome] { with(.failed) }

    enum CodingKeys: String, CodingKey { case outcomes }
}

/// One change in Sluice's NIC journal.
public struct JournalEntry: Codable, Equatable, Sendable {
    public var sequence: UInt64
    public var interface: String
    public var change: JournaledChange

    public init(sequence: UInt64, interface: String, change: JournaledChange) {
        self.sequence = sequence; self.interface = interface; self.change = change
    }

    enum CodingKeys: String, CodingKey { case sequence, interface, change }
}

/// One change Sluice made to a NIC, with the value it replaced. Journaled
/// (durably) before the change is applied. On the wire and in the journal:
/// `{"rule_added": {"location": 3, "rule": {...}}}`.
public enum JournaledChange: Codable, Equatable, Sendable {
    case channels(original: ChannelsChange, applied: ChannelsChange)
    case rings(original: RingsChange, applied: RingsChange)
    case feature(name: String, original: Bool, applied: Bool)
    /// An ntuple rule Sluice inserted; location nil only between journaling
    /// and the insert when the driver picks the location.
    case ruleAdded(location: UInt32?, rule: NtupleRule)
    /// A rule Sluice deleted (restore puts it back).
    case ruleDeleted(location: UInt32, rule: NtupleRule)
    case flowHash(flowType: HashFlowType, original: FlowHashFields, applied: FlowHashFields)
    case rss(original: [UInt32], applied: [UInt32])
    /// A value in /sys/class/net/IF (busy polling's companions). Journals
    /// written before it have no such entries and decode as before.
    case sysfs(setting: NetDeviceSetting, original: UInt64, applied: UInt64)

    enum CodingKeys: String, CodingKey {
        case channels, rings, feature, rss, sysfs, ruleAdded = "rule_added", ruleDeleted = "rule_deleted", flowHash = "flow_hash"
    }

    enum FlowHashCodingKeys: String, CodingKey { case flowType = "flow_type", original, applied }
}

extension JournaledChange {
    /// The change in one line, for logs, restore reports and `nic show`:
    /// "channels rx 4 -> 2", "feature rx-gro on -> off",
    /// "rule added at loc 5: udp4 dst-port 53 -> drop".
    public var summary: String {
        func text(_ value: CustomStringConvertible?) -> String {
            guard let value, !value.description.isEmpty else { return "-" }
            return value.description
        }
        func counts(_ kind: String, _ counts: [(name: String, original: UInt32?, applied: UInt32?)]) -> String {
            let parts = counts.filter { $0.applied != nil }.map { "\($0.name) \(text($0.original)) -> \(text($0.applied))" }
            return "\(kind) \(parts.joined(separator: ", "))"
        }
        switch self {
        case let .channels(original, applied):
            return counts("channels", [
                ("combined", original.combined, applied.combined), ("other", original.other, applied.other),
                ("rx", original.rx, applied.rx), ("tx", original.tx, applied.tx),
            ])
        case let .rings(original, applied):
            return counts("rings", [
                ("rx", original.rx, applied.rx), ("rx_jumbo", original.rxJumbo, applied.rxJumbo),
                ("rx_mini", original.rxMini, applied.rxMini), ("tx", original.tx, applied.tx),
            ])
        case let .feature(name, original, applied):
            return "feature \(text(name)) \(original ? "on" : "off") -> \(applied ? "on" : "off")"
        case let .flowHash(flowType, original, applied):
            return "rx-flow-hash \(flowType.rawValue) \(text(original.letters)) -> \(text(applied.letters))"
        case let .rss(original, applied):
            return "RSS indirection table (\(applied.count) entries, was \(original.count))"
        case let .sysfs(setting, original, applied):
            return "\(setting.rawValue) \(original) -> \(applied)"
        case let .ruleAdded(location, rule):
            return "rule added at loc \(text(location)): \(rule.summary)"
        case let .ruleDeleted(location, rule):
            return "rule deleted at loc \(location): \(rule.summary)"
        }
    }
}

/// A per-device NAPI setting in /sys/class/net/IF that Sluice sets (and
/// journals) for busy polling, as the kernel's af_xdp.rst recommends.
public enum NetDeviceSetting: String, Codable, Sendable, CaseIterable {
    /// Interrupts the driver keeps masked after a NAPI poll that found work.
    case napiDeferHardIRQs = "napi_defer_hard_irqs"
    /// Nanoseconds before the deferred interrupt's watchdog fires.
    case groFlushTimeout = "gro_flush_timeout"
}

/// `ethtool -L`: the counts to change; nil leaves a count alone.
public struct ChannelsChange: Codable, Equatable, Sendable {
    public var rx: UInt32?, tx: UInt32?, other: UInt32?, combined: UInt32?

    public init() {}

    public init(rx: UInt32? = nil, tx: UInt32? = nil, other: UInt32? = nil, combined: UInt32? = nil) {
        self.rx = rx; self.tx = tx; self.other = other; self.combined = combined
    }

    enum CodingKeys: String, CodingKey { case rx, tx, other, combined }
}

/// `ethtool -G`: ring sizes to change; nil leaves one alone.
public struct RingsChange: Codable, Equatable, Sendable {
    public var rx: UInt32?, rxMini: UInt32?, rxJumbo: UInt32?, tx: UInt32?

    public init() {}

    public init(rx: UInt32? = nil, rxMini: UInt32? = nil, rxJumbo: UInt32? = nil, tx: UInt32? = nil) {
        self.rx = rx; self.rxMini = rxMini; self.rxJumbo = rxJumbo; self.tx = tx
    }

    enum CodingKeys: String, CodingKey { case rx, tx, rxMini = "rx_mini", rxJumbo = "rx_jumbo" }
}

/// Header fields the NIC hashes for RSS, spelled with ethtool's letters
/// (`sdfn` = IP source, IP destination, L4 bytes 0-1, L4 bytes 2-3).
public struct FlowHashFields: OptionSet, Hashable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let l2Destination = FlowHashFields(rawValue: 1 << 1)  // m
    public static let vlan = FlowHashFields(rawValue: 1 << 2)  // v
    public static let l3Protocol = FlowHashFields(rawValue: 1 << 3)  // t
    public static let sourceIP = FlowHashFields(rawValue: 1 << 4)  // s
    public static let destinationIP = FlowHashFields(rawValue: 1 << 5)  // d
    public static let l4Bytes0And1 = FlowHashFields(rawValue: 1 << 6)  // f
    public static let l4Bytes2And3 = FlowHashFields(rawValue: 1 << 7)  // n
    public static let discard = FlowHashFields(rawValue: 1 << 31)  // r

    static let letters: [(Character, FlowHashFields)] = [
        ("m", .l2Destination), ("v", .vlan), ("t", .l3Protocol), ("s", .sourceIP),
        ("d", .destinationIP), ("f", .l4Bytes0And1), ("n", .l4Bytes2And3), ("r", .discard),
    ]

    /// The fields `text` spells in ethtool's letters, e.g. "sdfn"; nil when
    /// a letter is not one of m v t s d f n r.
    public init?(parsing text: String) {
        var fields = FlowHashFields()
        for letter in text {
            guard let match = Self.letters.first(where: { $0.0 == letter }) else { return nil }
            fields.insert(match.1)
        }
        self = fields
    }

    /// The fields as ethtool's letters, in ethtool's order.
    public var letters: String { String(Self.letters.filter { contains($0.1) }.map { $0.0 }) }
    public var description: String { letters }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let fields = FlowHashFields(parsing: text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "\"\(text.prefix(16))\" is not rx-flow-hash letters (m v t s d f n r)")
        }
        self = fields
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(letters)
    }
}
