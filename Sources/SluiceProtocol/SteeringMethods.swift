extension Methods {
    public enum SteerAdd: ControlMethod {
        public typealias Response = SteeringResult
        public static let name = "steer.add"
        public static let level = AccessLevel.admin
        public static let summary = "Add an ntuple rule (ethtool -N IF flow-type ...); dry_run shows the rule and the ethtool line"
        public static let arguments = [
            InterfaceRequest.argument,
            ArgumentSpec(Request.CodingKeys.flowType, .string, required: true, "tcp4, udp4, tcp6, udp6, ip4, ip6, ether"),
            ArgumentSpec(Request.CodingKeys.sourceAddress, .string, "source address"),
            ArgumentSpec(Request.CodingKeys.sourceAddressMask, .string, "source address mask (bits that must match)"),
            ArgumentSpec(Request.CodingKeys.destinationAddress, .string, "destination address"),
            ArgumentSpec(Request.CodingKeys.destinationAddressMask, .string, "destination address mask"),
            ArgumentSpec(Request.CodingKeys.sourcePort, UInt16.self, "source port"),
            ArgumentSpec(Request.CodingKeys.sourcePortMask, UInt16.self, "source port mask"),
            ArgumentSpec(Request.CodingKeys.destinationPort, UInt16.self, "destination port"),
            ArgumentSpec(Request.CodingKeys.destinationPortMask, UInt16.self, "destination port mask"),
            ArgumentSpec(Request.CodingKeys.sourceMAC, .string, "ether: source MAC"),
            ArgumentSpec(Request.CodingKeys.destinationMAC, .string, "ether: destination MAC"),
            ArgumentSpec(Request.CodingKeys.etherType, UInt16.self, "ether: EtherType"),
            ArgumentSpec(Request.CodingKeys.vlan, UInt16.self, "VLAN id (0-4095; with vlan_mask, the whole TCI)"),
            ArgumentSpec(Request.CodingKeys.vlanMask, UInt16.self,
                         "VLAN TCI bits that must match (default 0x0fff: the VLAN id only, which mlx5 requires)"),
            ArgumentSpec(Request.CodingKeys.queue, UInt32.self, "deliver to this queue id (as ethtool's action)"),
            ArgumentSpec(Request.CodingKeys.channel, UInt32.self, "deliver to this channel: the driver plugin picks the queue id"),
            ArgumentSpec(Request.CodingKeys.drop, .boolean, "drop matching packets"),
            ArgumentSpec(Request.CodingKeys.plugin, .string,
                         "force this driver plugin for the channel mapping (default: the interface's plugin in config, else the best score)"),
            ArgumentSpec(Request.CodingKeys.location, UInt32.self, "rule slot (default: chosen as ethtool does)"),
            ArgumentSpec(Request.CodingKeys.dryRun, .boolean, "change nothing; show the rule and the ethtool line"),
        ]

        /// The rule's fields (masks: the bits that must match), and exactly one
        /// of queue, channel (the driver plugin names the queue) and drop.
        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            /// A string, not ``NtupleFlowType``: the daemon names the flow types it accepts.
            public var flowType: String
            public var sourceAddress: String?, sourceAddressMask: String?
            public var destinationAddress: String?, destinationAddressMask: String?
            public var sourcePort: UInt16?, sourcePortMask: UInt16?
            public var destinationPort: UInt16?, destinationPortMask: UInt16?
            public var sourceMAC: String?, destinationMAC: String?, etherType: UInt16?
            public var vlan: UInt16?, vlanMask: UInt16?
            public var queue: UInt32?, channel: UInt32?, drop: Bool?
            public var plugin: String?
            public var location: UInt32?
            public var dryRun: Bool?

            public init(iface: InterfaceName, flowType: String) { self.iface = iface; self.flowType = flowType }

            public enum CodingKeys: String, CodingKey {
                case iface, flowType = "flow_type", sourceAddress = "src_ip", sourceAddressMask = "src_ip_mask"
                case destinationAddress = "dst_ip", destinationAddressMask = "dst_ip_mask"
                case sourcePort = "src_port", sourcePortMask = "src_port_mask"
                case destinationPort = "dst_port", destinationPortMask = "dst_port_mask"
                case sourceMAC = "src_mac", destinationMAC = "dst_mac", etherType = "ether_type"
                case vlan, vlanMask = "vlan_mask", queue, channel, drop, plugin, location, dryRun = "dry_run"
            }
        }
    }

    public enum SteerList: ControlMethod {
        public typealias Request = InterfaceRequest
        public typealias Response = Served<[NtupleRule]>
        public static let name = "steer.list"
        public static let level = AccessLevel.read
        public static let summary = "The interface's ntuple rules (ethtool -n)"
        public static let arguments = [InterfaceRequest.argument]
    }
}

/// The result of `steer.add` (also with `dry_run`).
public struct SteeringResult: Codable, Equatable, Sendable {
    public var interface: String
    /// The rule, with the location it got (or would get; nil when the
    /// driver picks it, or the driver cannot do ntuple at all).
    public var rule: NtupleRule
    /// The equivalent `ethtool -N ...` line.
    public var ethtoolCommand: String
    public var dryRun: Bool
    public var backend: EthtoolBackend
    /// With `channel`: the channel, the queue its mapping steers to, the
    /// mapping, whose answer it is, and the socket mode it was asked for.
    public var channel: UInt32?
    public var queue: UInt32?
    public var mapping: QueueMapping?
    public var mappingSource: MappingSource?
    public var socketMode: SocketMode?
    /// Why the rule would feed a queue nobody reads (dry runs only: a real add is refused).
    public var warning: String?

    public init(interface: String, rule: NtupleRule, ethtoolCommand: String, dryRun: Bool, backend: EthtoolBackend) {
        self.interface = interface; self.rule = rule; self.ethtoolCommand = ethtoolCommand
        self.dryRun = dryRun; self.backend = backend
    }

    enum CodingKeys: String, CodingKey {
        case interface, rule, backend, channel, queue, mapping, warning
        case ethtoolCommand = "ethtool_command", dryRun = "dry_run", mappingSource = "mapping_source", socketMode = "socket_mode"
    }
}

/// Where a matching packet goes.
public enum SteerAction: Equatable, Sendable, Codable, CustomStringConvertible {
    case queue(UInt32)
    case drop

    /// Encoded as the queue number, or the string "drop".
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let queue = try? container.decode(UInt32.self) {
            self = .queue(queue)
        } else if try container.decode(String.self) == "drop" {
            self = .drop
        } else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "action must be a queue number or \"drop\"")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .queue(let q): try container.encode(q)
        case .drop: try container.encode("drop")
        }
    }

    public var description: String {
        switch self {
        case .queue(let q): return "queue \(q)"
        case .drop: return "drop"
        }
    }
}

/// An ntuple (n-tuple / RX network flow classification) rule.
///
/// Masks are in the kernel's sense: set bits must match, and a nil mask
/// means "all bits". (`ethtool -N ... m X` takes the opposite, a don't-care
/// mask; ``ethtoolArguments`` converts.)
public struct NtupleRule: Codable, Equatable, Sendable {
    public var flowType: NtupleFlowType
    public var sourceAddress: String?
    public var sourceAddressMask: String?
    public var destinationAddress: String?
    public var destinationAddressMask: String?
    public var sourcePort: UInt16?
    public var sourcePortMask: UInt16?
    public var destinationPort: UInt16?
    public var destinationPortMask: UInt16?
    /// `ether` only.
    public var sourceMAC: String?
    public var destinationMAC: String?
    public var etherType: UInt16?
    /// VLAN to match (sets FLOW_EXT): the TCI, of which only the 12-bit
    /// VLAN id is matched unless ``vlanMask`` says otherwise, so `vlan 100`
    /// means VLAN id 100 whatever the priority bits. Without a mask the
    /// value must be a VLAN id (0...4095).
    public var vlan: UInt16?
    /// Bits of the TCI that must match (kernel sense). nil means
    /// ``NtupleRule/vlanIDMask`` (0x0fff, the VLAN id): mlx5 refuses a full
    /// 0xffff TCI mask with EINVAL. Give 0xffff to match priority and DEI too.
    public var vlanMask: UInt16?
    public var action: SteerAction
    /// The rule's slot; nil lets Sluice choose as `ethtool` does.
    public var location: UInt32?

    public init(
        flowType: NtupleFlowType,
        sourceAddress: String? = nil, sourceAddressMask: String? = nil,
        destinationAddress: String? = nil, destinationAddressMask: String? = nil,
        sourcePort: UInt16? = nil, sourcePortMask: UInt16? = nil,
        destinationPort: UInt16? = nil, destinationPortMask: UInt16? = nil,
        sourceMAC: String? = nil, destinationMAC: String? = nil, etherType: UInt16? = nil,
        vlan: UInt16? = nil, vlanMask: UInt16? = nil,
        action: SteerAction, location: UInt32? = nil
    ) {
        self.flowType = flowType
        self.sourceAddress = sourceAddress; self.sourceAddressMask = sourceAddressMask
        self.destinationAddress = destinationAddress; self.destinationAddressMask = destinationAddressMask
        self.sourcePort = sourcePort; self.sourcePortMask = sourcePortMask
        self.destinationPort = destinationPort; self.destinationPortMask = destinationPortMask
        self.sourceMAC = sourceMAC; self.destinationMAC = destinationMAC; self.etherType = etherType
        self.vlan = vlan; self.vlanMask = vlanMask
        self.action = action; self.location = location
    }

    /// The VLAN mask used when a rule gives none: the 12-bit VLAN id of the TCI.
    public static let vlanIDMask: UInt16 = 0x0FFF

    public enum CodingKeys: String, CodingKey {
        case flowType = "flow_type", sourceAddress = "source_address", sourceAddressMask = "source_address_mask"
        case destinationAddress = "destination_address", destinationAddressMask = "destination_address_mask"
        case sourcePort = "source_port", sourcePortMask = "source_port_mask"
        case destinationPort = "destination_port", destinationPortMask = "destination_port_mask"
        case sourceMAC = "source_mac", destinationMAC = "destination_mac", etherType = "ether_type"
        case vlan, vlanMask = "vlan_mask", action, location
    }

    /// The rule in one line, for logs, doctor and `nic show`:
    /// "udp4 dst-ip 10.0.0.2 dst-port 53 -> drop".
    public var summary: String {
        let words: [(String, String?)] = [
            ("src-ip", sourceAddress), ("dst-ip", destinationAddress),
            ("src-port", sourcePort.map(String.init)), ("dst-port", destinationPort.map(String.init)),
            ("src", sourceMAC), ("dst", destinationMAC),
            ("proto", etherType.map(String.init)), ("vlan", vlan.map(String.init)),
        ]
        let parts = [flowType.rawValue] + words.compactMap { word, value in value.map { "\(word) \($0.isEmpty ? "-" : $0)" } }
        return parts.joined(separator: " ") + " -> " + action.description
    }
}
