import SluiceProtocol

extension HashFlowType {
    var kernelValue: UInt32 {
        switch self {
        case .tcp4: return 0x01
        case .udp4: return 0x02
        case .sctp4: return 0x03
        case .ah4, .esp4: return 0x04  // AH_ESP_V4_FLOW, as ethtool maps both
        case .tcp6: return 0x05
        case .udp6: return 0x06
        case .sctp6: return 0x07
        case .ah6, .esp6: return 0x08
        case .ip4: return 0x10  // IPV4_FLOW
        case .ip6: return 0x11
        }
    }
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

    /// Parses ethtool's letters, e.g. "sdfn".
    public init(letters text: String) throws {
        var fields = FlowHashFields()
        for letter in text {
            guard let match = Self.letters.first(where: { $0.0 == letter }) else {
                throw NICError.invalidArgument(
                    "rx-flow-hash field letter '\(letter)' is not one of m v t s d f n r")
            }
            fields.insert(match.1)
        }
        self = fields
    }

    /// The fields as ethtool's letters, in ethtool's order.
    public var letters: String { String(Self.letters.filter { contains($0.1) }.map { $0.0 }) }
    public var description: String { letters }

    public init(from decoder: Decoder) throws {
        try self.init(letters: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(letters)
    }
}
