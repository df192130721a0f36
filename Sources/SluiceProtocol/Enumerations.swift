/// The enumerations the wire and the config carry, defined once here; the
/// layers that give them kernel meaning (ioctl constants, flags) extend them.

/// Flow types for `ethtool -N IF rx-flow-hash TYPE FIELDS`.
public enum HashFlowType: String, Codable, Equatable, Sendable, CaseIterable {
    case tcp4, udp4, sctp4, ah4, esp4, tcp6, udp6, sctp6, ah6, esp6, ip4, ip6
}

/// Flow types Sluice steers (`ethtool -N IF flow-type ...`).
public enum NtupleFlowType: String, Codable, Equatable, Sendable, CaseIterable {
    case tcp4, udp4, tcp6, udp6, ip4, ip6, ether
}

public enum QueueDirection: String, Codable, Equatable, Sendable { case rx, tx }

/// Which ethtool interface served a request.
public enum EthtoolBackend: String, Codable, Equatable, Sendable, CaseIterable {
    case netlink, ioctl
}

/// Configured backend policy: `auto` tries netlink and falls back to ioctl
/// per operation; the others are forced.
public enum BackendChoice: String, Codable, Equatable, Sendable, CaseIterable {
    case auto, netlink, ioctl
}

/// Where the XDP program runs: in the driver (`native`) or after the kernel
/// has built an skb (`skb`, generic XDP; works everywhere, slower).
public enum XDPAttachMode: String, Sendable, Codable, CaseIterable {
    case native, skb
}

/// Run modules on the RX thread, or on a worker fed through an SPSC ring.
public enum ProcessingMode: String, Sendable, Codable, CaseIterable {
    case inline, pipelined
}

/// How an AF_XDP socket binds: zero-copy (the driver DMAs into the UMEM),
/// copy (the kernel copies), or `auto` (zero-copy, else copy).
public enum XSKBindMode: String, Sendable, Codable, CaseIterable {
    case auto, zerocopy, copy
}

/// How XDP is, or will be, attached (`enum sluice_xdp_mode`).
public enum XDPMode: String, Codable, Sendable, Equatable {
    case none, skb, native, offload
}
