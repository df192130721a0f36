#if canImport(Glibc)
import Glibc
#endif

/// `struct ethtool_rx_flow_spec` as bytes, laid out as the kernel UAPI
/// (linux/ethtool.h) has it on every Linux ABI: no field needs more than
/// natural alignment, so offsets are the same on 32- and 64-bit. The tests
/// check every offset against C's offsetof.
public enum FlowSpecLayout {
    public static let size = 168
    public static let flowType = 0, headerUnion = 4, headerExt = 56, maskUnion = 76, maskExt = 128
    public static let ringCookie = 152, location = 160
    // Inside union ethtool_flow_union.
    public static let ip4Source = 0, ip4Destination = 4, ip4SourcePort = 8, ip4DestinationPort = 10
    public static let user4IPVersion = 13
    public static let ip6Source = 0, ip6Destination = 16, ip6SourcePort = 32, ip6DestinationPort = 34
    public static let etherDestination = 0, etherSource = 6, etherProto = 12
    // Inside struct ethtool_flow_ext.
    public static let extVLANTCI = 10

    static let flowExt: UInt32 = 0x8000_0000
    static let flowMACExt: UInt32 = 0x4000_0000
    static let flowRSS: UInt32 = 0x2000_0000
    static let ringCookieDiscard: UInt64 = .max
    static let ethRXNFCIP4: UInt8 = 1
}

/// Where the address and port fields of an IP flow type sit inside
/// union ethtool_flow_union (ports only for TCP/UDP).
struct IPFieldLayout {
    var family: Int32
    var addressLength: Int
    var source: Int, destination: Int
    var sourcePort: Int?, destinationPort: Int?

    init?(_ type: NtupleFlowType) {
        typealias L = FlowSpecLayout
        if type.isIPv4 {
            (family, addressLength, source, destination) = (AF_INET_, 4, L.ip4Source, L.ip4Destination)
            (sourcePort, destinationPort) = (L.ip4SourcePort, L.ip4DestinationPort)
        } else if type.isIPv6 {
            (family, addressLength, source, destination) = (AF_INET6_, 16, L.ip6Source, L.ip6Destination)
            (sourcePort, destinationPort) = (L.ip6SourcePort, L.ip6DestinationPort)
        } else {
            return nil
        }
        if !type.hasPorts { (sourcePort, destinationPort) = (nil, nil) }
    }
}

/// A little buffer writer that stores integers in host or network order.
struct ByteWriter {
    var bytes: [UInt8]

    mutating func host32(_ value: UInt32, at offset: Int) { put(value.littleEndianBytes(host: true), at: offset) }
    mutating func host64(_ value: UInt64, at offset: Int) { put(value.littleEndianBytes(host: true), at: offset) }
    mutating func be16(_ value: UInt16, at offset: Int) { put([UInt8(value >> 8), UInt8(value & 0xFF)], at: offset) }
    mutating func put(_ data: [UInt8], at offset: Int) {
        bytes.replaceSubrange(offset..<offset + data.count, with: data)
    }
}

struct ByteReader {
    var bytes: [UInt8]

    func host32(at offset: Int) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[offset..<offset + 4]) }
        return value
    }
    func host64(at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[offset..<offset + 8]) }
        return value
    }
    func be16(at offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }
    func slice(_ offset: Int, _ count: Int) -> ArraySlice<UInt8> { bytes[offset..<offset + count] }
}

extension FixedWidthInteger {
    /// The value's bytes in host order (`host: true`), which is what the
    /// ioctl structures hold for plain __u32/__u64 fields.
    func littleEndianBytes(host: Bool) -> [UInt8] {
        withUnsafeBytes(of: self) { Array($0) }
    }
}

extension NtupleRule {
    /// The rule as `struct ethtool_rx_flow_spec` bytes. `location` is the slot
    /// to use (the rule's own, or one chosen by ``RuleLocation``).
    public func flowSpecBytes(location: UInt32) throws -> [UInt8] {
        try validate()
        typealias L = FlowSpecLayout
        var w = ByteWriter(bytes: [UInt8](repeating: 0, count: L.size))
        var flowType = self.flowType.kernelValue
        let h = L.headerUnion, m = L.maskUnion

        func address(_ text: String?, _ mask: String?, at offset: Int, family: Int32, what: String) throws {
            guard let text else { return }
            let value = try IPAddressBytes.parse(text, family: family, what: what)
            let maskBytes = try mask.map { try IPAddressBytes.parse($0, family: family, what: "\(what) mask") }
                ?? [UInt8](repeating: 0xFF, count: value.count)
            w.put(value, at: h + offset)
            w.put(maskBytes, at: m + offset)
        }
        func port(_ value: UInt16?, _ mask: UInt16?, at offset: Int?) {
            guard let value, let offset else { return }
            w.be16(value, at: h + offset)
            w.be16(mask ?? 0xFFFF, at: m + offset)
        }

        if let ip = IPFieldLayout(self.flowType) {
            try address(sourceAddress, sourceAddressMask, at: ip.source, family: ip.family, what: "src-ip")
            try address(destinationAddress, destinationAddressMask, at: ip.destination, family: ip.family, what: "dst-ip")
            port(sourcePort, sourcePortMask, at: ip.sourcePort)
            port(destinationPort, destinationPortMask, at: ip.destinationPort)
            if self.flowType == .ip4 {
                // usr_ip4_spec.ip_ver must be ETH_RX_NFC_IP4 with a zero mask.
                w.put([L.ethRXNFCIP4], at: h + L.user4IPVersion)
            }
        }
        if self.flowType == .ether {
            if let sourceMAC {
                w.put(try MACAddress.parse(sourceMAC, what: "src MAC"), at: h + L.etherSource)
                w.put([UInt8](repeating: 0xFF, count: 6), at: m + L.etherSource)
            }
            if let destinationMAC {
                w.put(try MACAddress.parse(destinationMAC, what: "dst MAC"), at: h + L.etherDestination)
                w.put([UInt8](repeating: 0xFF, count: 6), at: m + L.etherDestination)
            }
            if let etherType {
                w.be16(etherType, at: h + L.etherProto)
                w.be16(0xFFFF, at: m + L.etherProto)
            }
        }
        if let vlan {
            flowType |= L.flowExt
            w.be16(vlan, at: L.headerExt + L.extVLANTCI)
            w.be16(vlanMask ?? Self.vlanIDMask, at: L.maskExt + L.extVLANTCI)
        }
        w.host32(flowType, at: L.flowType)
        switch action {
        case .queue(let q): w.host64(UInt64(q), at: L.ringCookie)
        case .drop: w.host64(L.ringCookieDiscard, at: L.ringCookie)
        }
        w.host32(location, at: L.location)
        return w.bytes
    }

    /// Decodes a rule the kernel returned (ETHTOOL_GRXCLSRULE). Rules of
    /// flow types Sluice does not model come back as nil.
    public init?(flowSpecBytes bytes: [UInt8]) {
        typealias L = FlowSpecLayout
        guard bytes.count >= L.size else { return nil }
        let r = ByteReader(bytes: bytes)
        let rawType = r.host32(at: L.flowType)
        guard let type = NtupleFlowType(kernelValue: rawType & ~(L.flowExt | L.flowMACExt | L.flowRSS)) else {
            return nil
        }
        let cookie = r.host64(at: L.ringCookie)
        // The low 32 bits are the queue; higher bits select a VF, which
        // Sluice never sets.
        let action: SteerAction = cookie == L.ringCookieDiscard ? .drop : .queue(UInt32(truncatingIfNeeded: cookie))
        self.init(flowType: type, action: action, location: r.host32(at: L.location))
        let h = L.headerUnion, m = L.maskUnion

        func address(at offset: Int, count: Int) -> (String?, String?) {
            let mask = r.slice(m + offset, count)
            guard mask.contains(where: { $0 != 0 }) else { return (nil, nil) }
            let full = mask.allSatisfy { $0 == 0xFF }
            return (IPAddressBytes.format(r.slice(h + offset, count)), full ? nil : IPAddressBytes.format(mask))
        }
        func port(at offset: Int?) -> (UInt16?, UInt16?) {
            guard let offset else { return (nil, nil) }
            let mask = r.be16(at: m + offset)
            guard mask != 0 else { return (nil, nil) }
            return (r.be16(at: h + offset), mask == 0xFFFF ? nil : mask)
        }
        if let ip = IPFieldLayout(type) {
            (sourceAddress, sourceAddressMask) = address(at: ip.source, count: ip.addressLength)
            (destinationAddress, destinationAddressMask) = address(at: ip.destination, count: ip.addressLength)
            (sourcePort, sourcePortMask) = port(at: ip.sourcePort)
            (destinationPort, destinationPortMask) = port(at: ip.destinationPort)
        }
        if type == .ether {
            if r.slice(m + L.etherSource, 6).contains(where: { $0 != 0 }) {
                sourceMAC = MACAddress.format(r.slice(h + L.etherSource, 6))
            }
            if r.slice(m + L.etherDestination, 6).contains(where: { $0 != 0 }) {
                destinationMAC = MACAddress.format(r.slice(h + L.etherDestination, 6))
            }
            if r.be16(at: m + L.etherProto) != 0 { etherType = r.be16(at: h + L.etherProto) }
        }
        if rawType & L.flowExt != 0 {
            let mask = r.be16(at: L.maskExt + L.extVLANTCI)
            if mask != 0 {
                let tci = r.be16(at: L.headerExt + L.extVLANTCI)
                vlan = tci
                // nil only where it encodes back to the same bytes.
                vlanMask = mask == Self.vlanIDMask && tci <= Self.vlanIDMask ? nil : mask
            }
        }
    }

    /// The arguments of the equivalent `ethtool -N IF ...` call, in the
    /// order of ethtool's man page. `location` nil omits `loc` (the driver
    /// chooses). Masks are printed in ethtool's don't-care sense.
    public func ethtoolArguments(location: UInt32?) -> [String] {
        var args = ["flow-type", flowType.rawValue]
        if let sourceMAC { args += ["src", sourceMAC.lowercased()] }
        if let destinationMAC { args += ["dst", destinationMAC.lowercased()] }
        if let etherType { args += ["proto", "0x" + hex4(etherType)] }
        let family = flowType.isIPv4 ? AF_INET_ : AF_INET6_
        func address(_ name: String, _ value: String?, _ mask: String?) {
            guard let value else { return }
            args += [name, canonicalAddress(value, family: family)]
            if let mask, let bytes = try? IPAddressBytes.parse(mask, family: family, what: name) {
                args += ["m", IPAddressBytes.format(ArraySlice(bytes.map { ~$0 }))]
            }
        }
        func port(_ name: String, _ value: UInt16?, _ mask: UInt16?) {
            guard let value else { return }
            args += [name, String(value)]
            if let mask { args += ["m", "0x" + hex4(~mask)] }
        }
        address("src-ip", sourceAddress, sourceAddressMask)
        address("dst-ip", destinationAddress, destinationAddressMask)
        port("src-port", sourcePort, sourcePortMask)
        port("dst-port", destinationPort, destinationPortMask)
        if let vlan {
            // Always with its mask: ethtool's default is the whole TCI, Sluice's the VLAN id.
            args += ["vlan", String(vlan), "m", "0x" + hex4(~(vlanMask ?? Self.vlanIDMask))]
        }
        switch action {
        case .queue(let q): args += ["action", String(q)]
        case .drop: args += ["action", "-1"]
        }
        if let location { args += ["loc", String(location)] }
        return args
    }

    /// `ethtool -N IF flow-type ... action N loc L`
    public func ethtoolCommand(interface: String, location: UInt32?) -> String {
        (["ethtool", "-N", interface] + ethtoolArguments(location: location)).joined(separator: " ")
    }
}

private func canonicalAddress(_ text: String, family: Int32) -> String {
    guard let bytes = try? IPAddressBytes.parse(text, family: family, what: "") else { return text }
    return IPAddressBytes.format(ArraySlice(bytes))
}

private func hex4(_ value: UInt16) -> String { hex2(UInt8(value >> 8)) + hex2(UInt8(value & 0xFF)) }

let AF_INET_ = Int32(AF_INET)
let AF_INET6_ = Int32(AF_INET6)

/// Rule placement exactly as the `ethtool` program (rxclass.c) does it.
public enum RuleLocation {
    /// RX_CLS_LOC_ANY: the driver picks the slot.
    public static let any: UInt32 = 0xFFFF_FFFF
    /// RX_CLS_LOC_SPECIAL, set in ETHTOOL_GRXCLSRLCNT's `data` by drivers
    /// that choose locations themselves.
    public static let specialFlag: UInt64 = 0x8000_0000

    /// The location to insert a rule at.
    /// - Parameters:
    ///   - requested: the caller's `loc`, used as given (after a range and
    ///     collision check: a driver would silently replace the rule there).
    ///   - countData: `data` from ETHTOOL_GRXCLSRLCNT.
    ///   - tableSize: `data` from ETHTOOL_GRXCLSRLALL (the rule table size).
    ///   - occupied: the locations GRXCLSRLALL listed.
    /// - Returns: ``any`` when the driver sets RX_CLS_LOC_SPECIAL; otherwise
    ///   the highest free slot below `tableSize`, as ethtool's
    ///   rmgr_find_empty_slot() starts at the end (lowest priority). mlx5
    ///   refuses RX_CLS_LOC_ANY, which is why this matters.
    public static func choose(
        requested: UInt32?, countData: UInt64, tableSize: UInt32, occupied: [UInt32], interface: String
    ) throws -> UInt32 {
        let taken = Set(occupied)
        let driverSelects = countData & specialFlag != 0
        if let requested {
            if !driverSelects && requested >= tableSize {
                throw NICError.invalidArgument(
                    "loc \(requested) exceeds the rule table size \(tableSize) for \(interface)")
            }
            if taken.contains(requested) {
                throw NICError.invalidArgument("loc \(requested) is already used by a rule on \(interface)")
            }
            return requested
        }
        if driverSelects { return any }
        var candidate = tableSize
        while candidate > 0 {
            candidate -= 1
            if !taken.contains(candidate) { return candidate }
        }
        throw NICError.invalidArgument(
            "no free ntuple rule location on \(interface): all \(tableSize) slots are used")
    }
}
