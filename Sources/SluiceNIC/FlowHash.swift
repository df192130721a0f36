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

extension FlowHashFields {
    /// Parses ethtool's letters, e.g. "sdfn".
    public init(letters text: String) throws {
        guard let fields = FlowHashFields(parsing: text) else {
            let letter = text.first { FlowHashFields(parsing: String($0)) == nil } ?? "?"
            throw NICError.invalidArgument("rx-flow-hash field letter '\(letter)' is not one of m v t s d f n r")
        }
        self = fields
    }
}
