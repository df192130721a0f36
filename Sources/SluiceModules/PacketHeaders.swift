/// The headers of one frame as parsed by ``HeaderParser``: offsets into the
/// frame and the 5-tuple, in a fixed-size value with no references so that a
/// batch's worth lives in one preallocated array.
public struct PacketHeaders: Sendable, Equatable {
    /// EtherType after any 802.1Q/802.1ad tags (host byte order).
    public var etherType: UInt16 = 0
    /// VLAN id of the outermost tag, or 0xFFFF when untagged.
    public var vlanID: UInt16 = 0xFFFF
    /// 4, 6, or 0 when the frame carries neither.
    public var ipVersion: UInt8 = 0
    /// Transport protocol (IPPROTO_*) after IPv6 extension headers; 0 if none.
    public var ipProtocol: UInt8 = 0
    /// Offsets from the frame start; 0 when the layer is absent.
    public var l3Offset: UInt16 = 0
    public var l4Offset: UInt16 = 0
    public var payloadOffset: UInt16 = 0
    /// Ports in host byte order (0 when not TCP/UDP).
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0
    /// Addresses as 16 bytes each (IPv4 in the first 4 bytes, rest zero), as
    /// two integers each so the value stays trivially copyable.
    public var sourceAddressHigh: UInt64 = 0
    public var sourceAddressLow: UInt64 = 0
    public var destinationAddressHigh: UInt64 = 0
    public var destinationAddressLow: UInt64 = 0
    /// Why the frame is malformed, or `.none`.
    public var malformation: Malformation = .none

    public init() {}

    public enum Malformation: UInt8, Sendable {
        case none = 0
        case truncatedEthernet, truncatedVLAN, truncatedIPv4, badIPv4HeaderLength, badIPv4TotalLength
        case truncatedIPv6, truncatedExtensionHeader, tooManyExtensionHeaders
        case truncatedTCP, badTCPDataOffset, truncatedUDP, badUDPLength
    }
}
