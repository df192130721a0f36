/// The headers of one frame as parsed by ``HeaderParser``: offsets into the
/// frame and the 5-tuple, in a fixed-size value with no references so that a
/// batch's worth lives in one preallocated array.
public struct PacketHeaders: Sendable, Equatable {
    /// EtherType after any 802.1Q/802.1ad tags (host byte order).
    public var etherType: UInt16 = 0
    /// VLAN id of the outermost tag, or 0xFFFF when untagged.
    public var vlanID: UInt16 = 0xFFFF
    /// VLAN id of the second tag (802.1ad QinQ: the customer tag), or 0xFFFF.
    public var innerVLANID: UInt16 = 0xFFFF
    /// 4, 6, or 0 when the frame carries neither.
    public var ipVersion: UInt8 = 0
    /// Transport protocol (IPPROTO_*) after IPv6 extension headers; 0 if none.
    /// For a non-first fragment it is still the fragmented protocol, but
    /// there are no ports (they are in the first fragment only).
    public var ipProtocol: UInt8 = 0
    /// Offsets from the frame start; 0 when the layer is absent.
    public var l3Offset: UInt16 = 0
    public var l4Offset: UInt16 = 0
    public var payloadOffset: UInt16 = 0
    /// Where the IP packet ends (IPv4 total length / IPv6 payload length):
    /// Ethernet padding after it is not part of the packet.
    public var l3End: UInt16 = 0
    /// Ports in host byte order (0 when not TCP/UDP).
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0
    /// Addresses as 16 bytes each, read as two big-endian integers: byte 0
    /// of the address is the most significant byte of `…High`. IPv4 fills
    /// the top 4 bytes of `…High`, the rest is zero. Two integers each so the
    /// value stays trivially copyable and prefix matching is a mask and compare.
    public var sourceAddressHigh: UInt64 = 0
    public var sourceAddressLow: UInt64 = 0
    public var destinationAddressHigh: UInt64 = 0
    public var destinationAddressLow: UInt64 = 0
    /// IPv6 extension headers walked (hop-by-hop, routing, fragment,
    /// destination options, AH).
    public var extensionHeaderCount: UInt8 = 0
    public var fragment: Fragment = .none
    /// Why the frame is malformed, or `.none`.
    public var malformation: Malformation = .none

    public init() {}

    /// Whether the IP packet is a fragment, and which.
    public enum Fragment: UInt8, Sendable {
        case none = 0
        /// Offset 0, more fragments follow: carries the transport header.
        case first
        /// Offset > 0: no transport header, so no ports.
        case later
    }

    public enum Malformation: UInt8, Sendable, CaseIterable {
        case none = 0
        case truncatedEthernet, truncatedVLAN, tooManyVLANTags
        case truncatedIPv4, badIPVersion, badIPv4HeaderLength, badIPv4TotalLength
        case truncatedIPv6, truncatedExtensionHeader, tooManyExtensionHeaders, misplacedHopByHop
        case truncatedTCP, badTCPDataOffset, truncatedUDP, badUDPLength

        /// A stable name for counters and logs.
        public var name: String {
            switch self {
            case .none: return "none"
            case .truncatedEthernet: return "truncated_ethernet"
            case .truncatedVLAN: return "truncated_vlan"
            case .tooManyVLANTags: return "too_many_vlan_tags"
            case .truncatedIPv4: return "truncated_ipv4"
            case .badIPVersion: return "bad_ip_version"
            case .badIPv4HeaderLength: return "bad_ipv4_header_length"
            case .badIPv4TotalLength: return "bad_ipv4_total_length"
            case .truncatedIPv6: return "truncated_ipv6"
            case .truncatedExtensionHeader: return "truncated_extension_header"
            case .tooManyExtensionHeaders: return "too_many_extension_headers"
            case .misplacedHopByHop: return "misplaced_hop_by_hop"
            case .truncatedTCP: return "truncated_tcp"
            case .badTCPDataOffset: return "bad_tcp_data_offset"
            case .truncatedUDP: return "truncated_udp"
            case .badUDPLength: return "bad_udp_length"
            }
        }
    }
}
