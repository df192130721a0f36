import SluiceProtocol

/// An address prefix such as 10.0.0.0/8 or 2001:db8::/32, as masks over
/// the two big-endian integers of ``PacketHeaders``.
public struct AddressPrefix: Sendable, Equatable, CustomStringConvertible {
    public var ipVersion: UInt8
    public var high: UInt64
    public var low: UInt64
    public var length: UInt8
    @usableFromInline var maskHigh: UInt64
    @usableFromInline var maskLow: UInt64

    /// Parses "ADDRESS" or "ADDRESS/LENGTH"; nil when either part is invalid.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddressText.parse(String(parts[0])) else { return nil }
        let maximum = address.version == 4 ? 32 : 128
        var length = maximum
        if parts.count == 2 {
            guard parts[1].utf8.count <= 3, let parsed = Int(parts[1]), (0...maximum).contains(parsed) else {
                return nil
            }
            length = parsed
        }
        ipVersion = address.version
        self.length = UInt8(length)
        maskHigh = length >= 64 ? .max : (length == 0 ? 0 : ~(UInt64.max >> UInt64(length)))
        maskLow = length <= 64 ? 0 : (length >= 128 ? .max : ~(UInt64.max >> UInt64(length - 64)))
        // Host bits set in the text ("10.1.2.3/8") are ignored, as ip-route does.
        high = address.high & maskHigh
        low = address.low & maskLow
    }

    @inline(__always)
    func contains(high otherHigh: UInt64, low otherLow: UInt64) -> Bool {
        otherHigh & maskHigh == high && otherLow & maskLow == low
    }

    public var description: String {
        "\(IPAddressText.format(version: ipVersion, high: high, low: low))/\(length)"
    }
}

/// An inclusive port range; `0...65535` matches every port.
public struct PortRange: Sendable, Equatable, CustomStringConvertible {
    public var lower: UInt16
    public var upper: UInt16

    public init(_ lower: UInt16, _ upper: UInt16) {
        self.lower = lower
        self.upper = upper
    }

    public static let any = PortRange(0, .max)
    public var isAny: Bool { lower == 0 && upper == .max }

    public var description: String { lower == upper ? String(lower) : "\(lower)-\(upper)" }
}

/// What a filter rule does with a packet it matches.
public enum FilterAction: String, Sendable, Equatable {
    /// Stop filtering; the packet goes on to the next module.
    case pass
    /// Verdict `.drop`.
    case drop
}

/// One filter rule: every field that is set must match. A rule with ports
/// matches only TCP and UDP packets that carry them, so non-first
/// fragments never match a rule with ports.
public struct FilterRule: Sendable, Equatable, CustomStringConvertible {
    public var action: FilterAction
    /// 4 or 6; nil for both. Implied by an address prefix.
    public var ipVersion: UInt8?
    public var source: AddressPrefix?
    public var destination: AddressPrefix?
    public var ipProtocol: UInt8?
    public var sourcePorts: PortRange
    public var destinationPorts: PortRange

    public init(
        action: FilterAction, ipVersion: UInt8? = nil, source: AddressPrefix? = nil,
        destination: AddressPrefix? = nil, ipProtocol: UInt8? = nil,
        sourcePorts: PortRange = .any, destinationPorts: PortRange = .any
    ) {
        self.action = action
        self.ipVersion = ipVersion ?? source?.ipVersion ?? destination?.ipVersion
        self.source = source
        self.destination = destination
        self.ipProtocol = ipProtocol
        self.sourcePorts = sourcePorts
        self.destinationPorts = destinationPorts
    }

    public var description: String {
        var parts = [action.rawValue]
        if let ipVersion { parts.append("ipv\(ipVersion)") }
        if let ipProtocol { parts.append("proto \(ipProtocol)") }
        if let source { parts.append("src \(source)") }
        if let destination { parts.append("dst \(destination)") }
        if !sourcePorts.isAny { parts.append("sport \(sourcePorts)") }
        if !destinationPorts.isAny { parts.append("dport \(destinationPorts)") }
        return parts.joined(separator: " ")
    }
}

/// Ordered 5-tuple rules, first match wins; packets no rule matches, and
/// malformed or non-IP frames, get the default action. Counts packets and
/// bytes per rule and for the default.
public final class FilterModule: PacketModule {
    public struct Options: Sendable, Equatable {
        public var rules: [FilterRule]
        public var defaultAction: FilterAction

        public init(rules: [FilterRule], defaultAction: FilterAction = .pass) {
            self.rules = rules
            self.defaultAction = defaultAction
        }

        public static let maximumRules = 4096

        static let rulesOption = ModuleOption(
            "rules", .array, default: "[]",
            "Tables of action (pass|drop), ip (4|6), src, dst, proto, sport, dport; the first match wins.")
        static let defaultOption = ModuleOption(
            "default", .string, choices: ["pass", "drop"], default: "\"pass\"", "The action when no rule matches.")

        init(_ reader: OptionReader) throws {
            let defaultAction = try reader.string(Self.defaultOption).flatMap(FilterAction.init) ?? .pass
            let items = try reader.array(Self.rulesOption) ?? []
            guard items.count <= Self.maximumRules else {
                throw reader.error("rules", "\(items.count) rules, at most \(Self.maximumRules) allowed")
            }
            var rules: [FilterRule] = []
            for (index, item) in items.enumerated() {
                rules.append(try Self.rule(kind: reader.kind, path: "rules[\(index)]", item))
            }
            self.init(rules: rules, defaultAction: defaultAction)
        }

        static let protocolNames: [String: UInt8] = ["icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132]

        static func rule(kind: ModuleKind, path: String, _ value: ModuleOptionValue) throws -> FilterRule {
            guard case .table(let table) = value else {
                throw ModuleConfigurationError(
                    kind: kind, option: path, reason: "expected a table, got \(value.typeName)")
            }
            let reader = try OptionReader(
                kind: kind, path: path, table, known: ["action", "ip", "src", "dst", "proto", "sport", "dport"])
            guard let actionText = try reader.choice("action", ["pass", "drop"]) else {
                throw ModuleConfigurationError(kind: kind, option: "\(path).action", reason: "missing (pass or drop)")
            }
            var ipVersion: UInt8?
            if let version = try reader.integer("ip", in: 4...6) {
                guard version != 5 else { throw reader.error("ip", "must be 4 or 6") }
                ipVersion = UInt8(version)
            }
            let source = try prefix(reader, "src")
            let destination = try prefix(reader, "dst")
            for (key, prefix) in [("src", source), ("dst", destination)] {
                guard let prefix else { continue }
                if let ipVersion, prefix.ipVersion != ipVersion {
                    throw reader.error(key, "IPv\(prefix.ipVersion) prefix in an IPv\(ipVersion) rule")
                }
                ipVersion = prefix.ipVersion
            }
            var ipProtocol: UInt8?
            switch reader.table["proto"] {
            case nil: break
            case .string(let name)?:
                guard let number = protocolNames[name.lowercased()] else {
                    throw reader.error(
                        "proto", "unknown protocol '\(name)'; use \(protocolNames.keys.sorted().joined(separator: ", ")) or a number")
                }
                ipProtocol = number
            case .some:
                ipProtocol = UInt8(try reader.integer("proto", in: 0...255)!)
            }
            let sourcePorts = try ports(reader, "sport")
            let destinationPorts = try ports(reader, "dport")
            if !sourcePorts.isAny || !destinationPorts.isAny {
                guard ipProtocol == nil || ipProtocol == 6 || ipProtocol == 17 else {
                    throw reader.error(sourcePorts.isAny ? "dport" : "sport", "ports need proto tcp or udp")
                }
            }
            return FilterRule(
                action: FilterAction(rawValue: actionText)!, ipVersion: ipVersion, source: source,
                destination: destination, ipProtocol: ipProtocol, sourcePorts: sourcePorts,
                destinationPorts: destinationPorts)
        }

        static func prefix(_ reader: OptionReader, _ key: String) throws -> AddressPrefix? {
            guard let text = try reader.string(key) else { return nil }
            guard let prefix = AddressPrefix(text) else {
                throw reader.error(key, "'\(text)' is not an IPv4 or IPv6 address or prefix (e.g. 10.0.0.0/8)")
            }
            return prefix
        }

        /// A port as an integer, or a port or range ("LOW-HIGH") as a string.
        static func ports(_ reader: OptionReader, _ key: String) throws -> PortRange {
            switch reader.table[key] {
            case nil:
                return .any
            case .string(let text)?:
                let bounds = text.split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count <= 2, bounds.allSatisfy({ $0.utf8.count <= 5 }),
                    let lower = UInt16(bounds[0]), let upper = UInt16(bounds[bounds.count - 1]), lower <= upper
                else {
                    throw reader.error(key, "'\(text)' is not a port or port range LOW-HIGH within 0-65535")
                }
                return PortRange(lower, upper)
            case .some:
                let port = UInt16(try reader.integer(key, in: 0...65535)!)
                return PortRange(port, port)
            }
        }
    }

    /// The rule as the data path matches it: no optionals, masks precomputed.
    @usableFromInline
    struct CompiledRule {
        var drop: Bool
        var ipVersion: UInt8  // 0 = any
        var matchProtocol: Bool
        var ipProtocol: UInt8
        var needsPorts: Bool
        var source: AddressPrefix?
        var destination: AddressPrefix?
        var sourcePorts: PortRange
        var destinationPorts: PortRange

        init(_ rule: FilterRule) {
            drop = rule.action == .drop
            ipVersion = rule.ipVersion ?? 0
            matchProtocol = rule.ipProtocol != nil
            ipProtocol = rule.ipProtocol ?? 0
            needsPorts = !rule.sourcePorts.isAny || !rule.destinationPorts.isAny
            source = rule.source
            destination = rule.destination
            sourcePorts = rule.sourcePorts
            destinationPorts = rule.destinationPorts
        }

        @inline(__always)
        func matches(_ headers: UnsafePointer<PacketHeaders>) -> Bool {
            let version = headers.pointee.ipVersion
            if ipVersion != 0 && ipVersion != version { return false }
            let proto = headers.pointee.ipProtocol
            if matchProtocol && ipProtocol != proto { return false }
            if let source, !source.contains(high: headers.pointee.sourceAddressHigh, low: headers.pointee.sourceAddressLow) {
                return false
            }
            if let destination,
                !destination.contains(
                    high: headers.pointee.destinationAddressHigh, low: headers.pointee.destinationAddressLow)
            {
                return false
            }
            if needsPorts {
                guard proto == 6 || proto == 17, headers.pointee.fragment != .later else { return false }
                let sourcePort = headers.pointee.sourcePort, destinationPort = headers.pointee.destinationPort
                guard sourcePort >= sourcePorts.lower, sourcePort <= sourcePorts.upper,
                    destinationPort >= destinationPorts.lower, destinationPort <= destinationPorts.upper
                else { return false }
            }
            return true
        }
    }

    static let descriptor = ModuleDescriptor(
        kind: .filter, summary: "Passes or drops packets by ordered 5-tuple rules; counts per rule.",
        options: [Options.rulesOption, Options.defaultOption], parse: Options.init, make: FilterModule.init(options:))

    public let kind = ModuleKind.filter.rawValue
    public let options: Options
    private let rules: UnsafeMutablePointer<CompiledRule>
    private let ruleCount: Int
    private let defaultDrops: Bool
    /// Per rule: packets, bytes; then the default's packets, bytes; then malformed/non-IP.
    private let counters: CounterArray
    private var defaultIndex: Int { ruleCount }
    private var unparsedIndex: Int { ruleCount + 1 }
    private var droppedIndex: Int { ruleCount + 2 }

    public init(options: Options) {
        self.options = options
        ruleCount = options.rules.count
        rules = .allocate(capacity: max(ruleCount, 1))
        rules.initialize(from: options.rules.map(CompiledRule.init), count: ruleCount)
        defaultDrops = options.defaultAction == .drop
        counters = CounterArray(count: (ruleCount + 3) * 2)
    }

    deinit {
        rules.deinitialize(count: ruleCount)
        rules.deallocate()
        counters.deallocate()
    }

    public func process(_ batch: PacketBatch) {
        var dropped: UInt64 = 0
        for index in 0..<batch.count {
            let descriptor = batch.descriptors[index]
            guard descriptor.verdict == .pass else { continue }
            let length = UInt64(descriptor.length)
            var drop = defaultDrops
            var slot = defaultIndex
            let headers = UnsafePointer(batch.headers + index)
            if descriptor.malformed || headers.pointee.ipVersion == 0 {
                counters.add(unparsedIndex * 2, 1)
                counters.add(unparsedIndex * 2 + 1, length)
            } else {
                for ruleIndex in 0..<ruleCount where rules[ruleIndex].matches(headers) {
                    drop = rules[ruleIndex].drop
                    slot = ruleIndex
                    break
                }
            }
            counters.add(slot * 2, 1)
            counters.add(slot * 2 + 1, length)
            if drop {
                batch.descriptors[index].verdict = .drop
                dropped &+= 1
            }
        }
        counters.add(droppedIndex * 2, dropped)
    }

    /// Counters `dropped`, `default_packets`/`default_bytes` (packets no
    /// rule matched, including `unparsed_*`: malformed and non-IP frames),
    /// and one row per rule and one for the default: `index`, `rule`,
    /// `action`, `packets`, `bytes`.
    public func snapshot() -> ModuleSnapshot {
        Self.snapshot(merging: [self])
    }

    /// One snapshot for several instances built from the same options (one
    /// per data-path thread), their counters added up.
    public static func snapshot(merging modules: [FilterModule]) -> ModuleSnapshot {
        guard let first = modules.first else { return ModuleSnapshot(kind: ModuleKind.filter.rawValue, counters: [:]) }
        precondition(modules.allSatisfy { $0.options == first.options }, "merging filters with different rules")
        func sum(_ index: Int) -> UInt64 { modules.reduce(0) { $0 &+ $1.counters.load(index) } }
        let ruleCount = first.ruleCount
        let values: [String: UInt64] = [
            "rules": UInt64(ruleCount),
            "dropped": sum(first.droppedIndex * 2),
            "default_packets": sum(first.defaultIndex * 2),
            "default_bytes": sum(first.defaultIndex * 2 + 1),
            "unparsed_packets": sum(first.unparsedIndex * 2),
            "unparsed_bytes": sum(first.unparsedIndex * 2 + 1),
        ]
        var rows: [[String: String]] = []
        for index in 0...ruleCount {
            let rule = index < ruleCount ? first.options.rules[index].description : "default"
            let action = index < ruleCount ? first.options.rules[index].action : first.options.defaultAction
            rows.append([
                "index": index < ruleCount ? String(index) : "default", "rule": rule, "action": action.rawValue,
                "packets": String(sum(index * 2)), "bytes": String(sum(index * 2 + 1)),
            ])
        }
        return ModuleSnapshot(kind: ModuleKind.filter.rawValue, counters: values, rows: rows)
    }

    /// Packets and bytes matched by rule `index` (the default is `rules.count`).
    public func matched(rule index: Int) -> (packets: UInt64, bytes: UInt64) {
        precondition(index >= 0 && index <= ruleCount)
        return (counters.load(index * 2), counters.load(index * 2 + 1))
    }
}
