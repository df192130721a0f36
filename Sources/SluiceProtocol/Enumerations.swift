/// The enumerations the wire and the config carry, defined once here; the
/// layers that give them kernel meaning (ioctl constants, flags) extend them.

/// An enumeration carried as its raw string; a value it does not know fails
/// decoding naming every value it does.
public protocol WireEnumeration: RawRepresentable<String>, CaseIterable, Codable, Sendable {}

extension WireEnumeration {
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = Self(rawValue: text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "\"\(text.prefix(32))\" is not one of \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = value
    }
}

/// Flow types for `ethtool -N IF rx-flow-hash TYPE FIELDS`.
public enum HashFlowType: String, WireEnumeration {
    case tcp4, udp4, sctp4, ah4, esp4, tcp6, udp6, sctp6, ah6, esp6, ip4, ip6
}

/// Flow types Sluice steers (`ethtool -N IF flow-type ...`).
public enum NtupleFlowType: String, WireEnumeration {
    case tcp4, udp4, tcp6, udp6, ip4, ip6, ether
}

/// Which way a queue carries packets.
public enum QueueDirection: String, WireEnumeration { case rx, tx }

/// Which ethtool interface served a request.
public enum EthtoolBackend: String, WireEnumeration {
    case netlink, ioctl
}

/// Configured backend policy: `auto` tries netlink and falls back to ioctl
/// per operation; the others are forced.
public enum BackendChoice: String, WireEnumeration {
    case auto, netlink, ioctl
}

/// Where the XDP program runs: in the driver (`native`) or after the kernel
/// has built an skb (`skb`, generic XDP; works everywhere, slower).
public enum XDPAttachMode: String, WireEnumeration {
    case native, skb
}

/// Run modules on the RX thread, or on a worker fed through an SPSC ring.
public enum ProcessingMode: String, WireEnumeration {
    case inline, pipelined
}

/// How an AF_XDP socket binds: zero-copy (the driver DMAs into the UMEM),
/// copy (the kernel copies), or `auto` (zero-copy, else copy).
public enum XSKBindMode: String, WireEnumeration {
    case auto, zerocopy, copy
}

/// How XDP is, or will be, attached (`enum sluice_xdp_mode`).
public enum XDPMode: String, WireEnumeration {
    case none, skb, native, offload
}
