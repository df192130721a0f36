import SluiceProtocol

#if canImport(Glibc)
import Glibc
#endif

extension NtupleFlowType {
    /// The UAPI constant (TCP_V4_FLOW, ...).
    var kernelValue: UInt32 {
        switch self {
        case .tcp4: return 0x01
        case .udp4: return 0x02
        case .tcp6: return 0x05
        case .udp6: return 0x06
        case .ip4: return 0x0d  // IPV4_USER_FLOW
        case .ip6: return 0x0e  // IPV6_USER_FLOW
        case .ether: return 0x12
        }
    }

    init?(kernelValue: UInt32) {
        guard let match = Self.allCases.first(where: { $0.kernelValue == kernelValue }) else { return nil }
        self = match
    }

    var isIPv4: Bool { self == .tcp4 || self == .udp4 || self == .ip4 }
    var isIPv6: Bool { self == .tcp6 || self == .udp6 || self == .ip6 }
    var hasPorts: Bool { self == .tcp4 || self == .udp4 || self == .tcp6 || self == .udp6 }
}

extension NtupleRule {
    /// Checks that every field fits the flow type and parses.
    public func validate() throws {
        let family: Int32? = flowType.isIPv4 ? AF_INET : flowType.isIPv6 ? AF_INET6 : nil
        let addresses = [("src-ip", sourceAddress), ("src-ip mask", sourceAddressMask),
                         ("dst-ip", destinationAddress), ("dst-ip mask", destinationAddressMask)]
        for (what, text) in addresses {
            guard let text else { continue }
            guard let family else {
                throw NICError.invalidArgument("\(what) is not valid for flow-type \(flowType.rawValue)")
            }
            _ = try IPAddressBytes.parse(text, family: family, what: what)
        }
        if sourceAddressMask != nil && sourceAddress == nil || destinationAddressMask != nil && destinationAddress == nil {
            throw NICError.invalidArgument("an address mask needs its address")
        }
        if !flowType.hasPorts && (sourcePort != nil || destinationPort != nil) {
            throw NICError.invalidArgument("ports are not valid for flow-type \(flowType.rawValue) (use tcp4/udp4/tcp6/udp6)")
        }
        if sourcePortMask != nil && sourcePort == nil || destinationPortMask != nil && destinationPort == nil {
            throw NICError.invalidArgument("a port mask needs its port")
        }
        if flowType != .ether && (sourceMAC != nil || destinationMAC != nil || etherType != nil) {
            throw NICError.invalidArgument("src/dst MAC and proto are only valid for flow-type ether")
        }
        for (what, text) in [("src MAC", sourceMAC), ("dst MAC", destinationMAC)] {
            if let text { _ = try MACAddress.parse(text, what: what) }
        }
        if vlanMask != nil && vlan == nil { throw NICError.invalidArgument("a vlan mask needs a vlan") }
        if let vlan, vlanMask == nil, vlan > Self.vlanIDMask {
            // Only the VLAN id is matched by default: the other bits given would be ignored.
            throw NICError.invalidArgument(
                "vlan \(vlan) is not a VLAN id (0-4095); give vlan_mask to match priority or DEI bits of the TCI")
        }
    }
}

/// Addresses as the bytes the kernel stores (network order).
enum IPAddressBytes {
    static func parse(_ text: String, family: Int32, what: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: family == AF_INET ? 4 : 16)
        let ok = bytes.withUnsafeMutableBytes { inet_pton(family, text, $0.baseAddress) }
        guard ok == 1 else {
            throw NICError.invalidArgument("\(what) \(text) is not an IPv\(family == AF_INET ? 4 : 6) address")
        }
        return bytes
    }

    static func format(_ bytes: ArraySlice<UInt8>) -> String {
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        var text = [CChar](repeating: 0, count: 64)
        let input = Array(bytes)
        _ = input.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

enum MACAddress {
    static func parse(_ text: String, what: String) throws -> [UInt8] {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { throw NICError.invalidArgument("\(what) \(text) is not a MAC address") }
        return try parts.map { part in
            guard part.count >= 1, part.count <= 2, let byte = UInt8(part, radix: 16) else {
                throw NICError.invalidArgument("\(what) \(text) is not a MAC address")
            }
            return byte
        }
    }

    static func format<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        bytes.map { hex2($0) }.joined(separator: ":")
    }
}

func hex2(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
}
