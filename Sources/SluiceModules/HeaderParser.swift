/// Parses Ethernet (with up to two 802.1Q/802.1ad tags), IPv4 (with options),
/// IPv6 (with extension headers), UDP and TCP into ``PacketHeaders``.
///
/// Every read is checked against the frame length first, and every length
/// field is checked against the bytes that are really there, so a hostile
/// frame yields a ``PacketHeaders/Malformation`` and never an out-of-bounds
/// read. The parser keeps no state and allocates nothing.
public enum HeaderParser {
    /// VLAN tags accepted in a row (802.1ad outer + 802.1Q inner).
    public static let maximumVLANTags = 2
    /// IPv6 extension headers walked before the frame counts as malformed:
    /// a bound that defeats chains crafted to loop or to exhaust the parser.
    public static let maximumExtensionHeaders = 8
    /// Frames longer than this are parsed up to this length: offsets are
    /// 16-bit, and no AF_XDP frame is this large.
    public static let maximumParsedLength = Int(UInt16.max)

    /// Bytes of a multi-buffer packet gathered for parsing when its first
    /// frame is shorter (headers nearly always fit in the first frame, read
    /// in place then). Headers reaching past them count as truncated.
    public static let gatherLength = 512

    /// Parses every frame of `batch`, writing `batch.headers[i]` and setting
    /// `batch.descriptors[i].malformed`. Returns the number of malformed frames.
    @discardableResult
    public static func parse(_ batch: PacketBatch) -> Int {
        var malformed = 0
        guard batch.chains != nil else {
            // No multi-buffer packet in the batch: every frame is contiguous.
            for index in 0..<batch.count {
                let descriptor = batch.descriptors[index]
                let frame = Frame(
                    base: UnsafeRawPointer(batch.umem + Int(truncatingIfNeeded: descriptor.address)),
                    length: min(Int(descriptor.length), maximumParsedLength))
                malformed &+= parse(frame, batch, index) ? 1 : 0
            }
            return malformed
        }
        for index in 0..<batch.count {
            malformed &+= parse(chainFrame(batch, index), batch, index) ? 1 : 0
        }
        return malformed
    }

    /// Parses `frame` into `batch.headers[index]` (in place: no 64-byte
    /// temporary per frame); returns whether it is malformed.
    @inline(__always)
    static func parse(_ frame: Frame, _ batch: PacketBatch, _ index: Int) -> Bool {
        let headers = batch.headers + index
        if parseCommonIPv4(frame, into: headers) {
            batch.descriptors[index].malformed = false
            return false
        }
        headers.pointee = PacketHeaders()
        let malformation = parseEthernet(frame, into: &headers.pointee)
        headers.pointee.malformation = malformation
        let isMalformed = malformation != .none
        batch.descriptors[index].malformed = isMalformed
        return isMalformed
    }

    /// The bytes the parser reads of packet `index` of a batch with chains:
    /// the first frame in place when the headers fit in it (or it is the
    /// whole packet), else the first bytes of the chain gathered into the
    /// batch's gather area. Lengths are checked against the whole packet.
    static func chainFrame(_ batch: PacketBatch, _ index: Int) -> Frame {
        let length = min(Int(batch.descriptors[index].length), maximumParsedLength)
        let first = batch.segment(0, of: index)
        let inPlace = min(first.count, length)
        guard inPlace < min(length, gatherLength), let gather = batch.gatherArea else {
            return Frame(base: UnsafeRawPointer(first.baseAddress!), length: inPlace, wireLength: length)
        }
        let wanted = min(length, gatherLength)
        var gathered = 0
        for segment in 0..<batch.segmentCount(at: index) where gathered < wanted {
            let bytes = batch.segment(segment, of: index)
            let take = min(bytes.count, wanted - gathered)
            (gather + gathered).copyMemory(from: bytes.baseAddress!, byteCount: take)
            gathered += take
        }
        return Frame(base: UnsafeRawPointer(gather), length: gathered, wireLength: length)
    }

    /// Parses one frame of `length` bytes at `frame`.
    public static func parse(frame: UnsafeRawPointer, length: Int) -> PacketHeaders {
        var headers = PacketHeaders()
        let frame = Frame(base: frame, length: min(max(length, 0), maximumParsedLength))
        if parseCommonIPv4(frame, into: &headers) { return headers }
        headers.malformation = parseEthernet(frame, into: &headers)
        return headers
    }

    /// The common case in one straight pass: untagged Ethernet, IPv4
    /// without options, not a fragment, UDP or TCP, well formed. Makes the
    /// same checks the general parser makes on such a frame and writes the
    /// same headers, all at once (wide loads, one store of the whole value
    /// instead of a reset and a store per field). Returns false, having
    /// written nothing, for anything else (VLAN tags, options, fragments,
    /// IPv6, other protocols, any malformation): the general parser then
    /// parses the frame from the start.
    @inline(__always)
    static func parseCommonIPv4(_ frame: Frame, into headers: UnsafeMutablePointer<PacketHeaders>) -> Bool {
        // Ethernet (14) + IPv4 without options (20) + UDP (8) readable.
        guard frame.length >= 42 else { return false }
        // EtherType 0x0800 and version 4 with a 20-byte header, one load.
        guard frame.u32(12) & 0xFFFF_FF00 == 0x0800_4500 else { return false }
        let totalLength = Int(frame.u16(16))
        // Offset 0 and no more fragments (the DF and reserved bits do not matter).
        guard frame.u16(20) & 0x3FFF == 0 else { return false }
        guard totalLength >= 28, totalLength <= frame.wireLength - 14 else { return false }
        let proto = frame.u8(23)
        let available = totalLength - 20
        let payloadOffset: Int
        if proto == 17 {
            let udpLength = Int(frame.u16(38))
            guard udpLength >= 8, udpLength <= available else { return false }
            payloadOffset = 42
        } else if proto == 6 {
            guard available >= 20, frame.length >= 54 else { return false }
            let dataOffset = Int(frame.u8(46) >> 4) &* 4
            guard dataOffset >= 20, dataOffset <= available else { return false }
            payloadOffset = 34 &+ dataOffset
        } else {
            return false
        }
        let addresses = frame.u64(26)
        let ports = frame.u32(34)
        var parsed = PacketHeaders()
        parsed.etherType = etherTypeIPv4
        parsed.ipVersion = 4
        parsed.ipProtocol = proto
        parsed.l3Offset = 14
        parsed.l4Offset = 34
        parsed.payloadOffset = UInt16(truncatingIfNeeded: payloadOffset)
        parsed.l3End = UInt16(truncatingIfNeeded: 14 &+ totalLength)
        parsed.sourcePort = UInt16(truncatingIfNeeded: ports >> 16)
        parsed.destinationPort = UInt16(truncatingIfNeeded: ports)
        parsed.sourceAddressHigh = addresses & 0xFFFF_FFFF_0000_0000
        parsed.destinationAddressHigh = addresses << 32
        headers.pointee = parsed
        return true
    }

    /// The bytes of one frame with bounds-checked big-endian reads. Callers
    /// check `has(offset, count)` first; the readers trust that check.
    @usableFromInline
    struct Frame {
        let base: UnsafeRawPointer
        /// Bytes readable at `base`.
        let length: Int
        /// The packet's length: more than `length` when only the first
        /// bytes of a multi-buffer packet are at hand. Length fields are
        /// checked against it (`fits`), reads against `length` (`has`).
        let wireLength: Int

        @inline(__always)
        init(base: UnsafeRawPointer, length: Int) {
            self.init(base: base, length: length, wireLength: length)
        }

        @inline(__always)
        init(base: UnsafeRawPointer, length: Int, wireLength: Int) {
            self.base = base
            self.length = length
            self.wireLength = wireLength
        }

        @inline(__always)
        func has(_ offset: Int, _ count: Int) -> Bool {
            offset >= 0 && count >= 0 && offset <= length && count <= length - offset
        }

        /// Whether the packet holds `count` bytes at `offset` (not all of
        /// them need be readable here).
        @inline(__always)
        func fits(_ offset: Int, _ count: Int) -> Bool {
            offset >= 0 && count >= 0 && offset <= wireLength && count <= wireLength - offset
        }

        @inline(__always)
        func u8(_ offset: Int) -> UInt8 {
            base.load(fromByteOffset: offset, as: UInt8.self)
        }

        @inline(__always)
        func u16(_ offset: Int) -> UInt16 {
            UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        }

        @inline(__always)
        func u32(_ offset: Int) -> UInt32 {
            UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        }

        @inline(__always)
        func u64(_ offset: Int) -> UInt64 {
            UInt64(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
    }

    static let etherTypeIPv4: UInt16 = 0x0800
    static let etherTypeIPv6: UInt16 = 0x86DD
    static let etherTypeVLAN: UInt16 = 0x8100  // 802.1Q
    static let etherTypeQinQ: UInt16 = 0x88A8  // 802.1ad service tag
    static let etherTypeQinQLegacy: UInt16 = 0x9100  // pre-standard QinQ, still common

    @inline(__always)
    static func isVLANTag(_ etherType: UInt16) -> Bool {
        etherType == etherTypeVLAN || etherType == etherTypeQinQ || etherType == etherTypeQinQLegacy
    }

    static func parseEthernet(_ frame: Frame, into headers: inout PacketHeaders) -> PacketHeaders.Malformation {
        guard frame.has(0, 14) else { return .truncatedEthernet }
        var etherType = frame.u16(12)
        var offset = 14
        var tags = 0
        while isVLANTag(etherType) {
            guard tags < maximumVLANTags else { return .tooManyVLANTags }
            guard frame.has(offset, 4) else { return .truncatedVLAN }
            let vlanID = frame.u16(offset) & 0x0FFF
            if tags == 0 { headers.vlanID = vlanID } else { headers.innerVLANID = vlanID }
            etherType = frame.u16(offset + 2)
            offset += 4
            tags += 1
        }
        headers.etherType = etherType
        switch etherType {
        case etherTypeIPv4:
            return parseIPv4(frame, at: offset, into: &headers)
        case etherTypeIPv6:
            return parseIPv6(frame, at: offset, into: &headers)
        default:
            // ARP, LLDP, …: not IP, not malformed.
            return .none
        }
    }

    static func parseIPv4(_ frame: Frame, at offset: Int, into headers: inout PacketHeaders) -> PacketHeaders.Malformation {
        headers.ipVersion = 4
        headers.l3Offset = UInt16(truncatingIfNeeded: offset)
        guard frame.has(offset, 20) else { return .truncatedIPv4 }
        let versionAndLength = frame.u8(offset)
        guard versionAndLength >> 4 == 4 else { return .badIPVersion }
        let headerLength = Int(versionAndLength & 0x0F) * 4
        guard headerLength >= 20 else { return .badIPv4HeaderLength }
        let totalLength = Int(frame.u16(offset + 2))
        guard totalLength >= 20 else { return .badIPv4TotalLength }
        guard headerLength <= totalLength else { return .badIPv4HeaderLength }
        // Shorter than the header says: cut off on the wire or by a snaplen.
        guard frame.fits(offset, totalLength) else { return .truncatedIPv4 }
        let end = offset + totalLength
        headers.l3End = UInt16(truncatingIfNeeded: end)
        let proto = frame.u8(offset + 9)
        headers.ipProtocol = proto
        headers.sourceAddressHigh = UInt64(frame.u32(offset + 12)) << 32
        headers.destinationAddressHigh = UInt64(frame.u32(offset + 16)) << 32
        let fragmentField = frame.u16(offset + 6)
        let fragmentOffset = fragmentField & 0x1FFF
        let moreFragments = fragmentField & 0x2000 != 0
        let l4 = offset + headerLength
        headers.l4Offset = UInt16(truncatingIfNeeded: l4)
        if fragmentOffset != 0 {
            headers.fragment = .later
            headers.payloadOffset = UInt16(truncatingIfNeeded: l4)
            return .none
        }
        if moreFragments { headers.fragment = .first }
        return parseTransport(frame, protocol: proto, at: l4, end: end, into: &headers)
    }

    static func parseIPv6(_ frame: Frame, at offset: Int, into headers: inout PacketHeaders) -> PacketHeaders.Malformation {
        headers.ipVersion = 6
        headers.l3Offset = UInt16(truncatingIfNeeded: offset)
        guard frame.has(offset, 40) else { return .truncatedIPv6 }
        guard frame.u8(offset) >> 4 == 6 else { return .badIPVersion }
        let payloadLength = Int(frame.u16(offset + 4))
        var next = frame.u8(offset + 6)
        headers.sourceAddressHigh = frame.u64(offset + 8)
        headers.sourceAddressLow = frame.u64(offset + 16)
        headers.destinationAddressHigh = frame.u64(offset + 24)
        headers.destinationAddressLow = frame.u64(offset + 32)
        // A zero payload length means a jumbogram (RFC 2675): the length is
        // in a hop-by-hop option. Such frames cannot exceed an AF_XDP frame,
        // so the frame's own length bounds the packet.
        let end: Int
        if payloadLength == 0 && next == 0 {
            end = frame.wireLength
        } else {
            guard frame.fits(offset + 40, payloadLength) else { return .truncatedIPv6 }
            end = offset + 40 + payloadLength
        }
        headers.l3End = UInt16(truncatingIfNeeded: end)
        let within = Frame(base: frame.base, length: min(end, frame.length), wireLength: end)
        var cursor = offset + 40
        var count = 0
        while true {
            headers.ipProtocol = next
            switch next {
            case 0, 43, 60, 51, 44:  // hop-by-hop, routing, destination options, AH, fragment
                guard count < maximumExtensionHeaders else { return .tooManyExtensionHeaders }
                // RFC 8200 §4.1: hop-by-hop only directly after the IPv6 header.
                guard next != 0 || count == 0 else { return .misplacedHopByHop }
                count += 1
                headers.extensionHeaderCount = UInt8(truncatingIfNeeded: count)
                let length: Int
                if next == 44 {
                    guard within.has(cursor, 8) else { return .truncatedExtensionHeader }
                    length = 8
                    let fragmentField = within.u16(cursor + 2)
                    if fragmentField >> 3 != 0 {
                        headers.fragment = .later
                        headers.ipProtocol = within.u8(cursor)
                        headers.l4Offset = UInt16(truncatingIfNeeded: cursor + 8)
                        headers.payloadOffset = headers.l4Offset
                        return .none
                    }
                    if fragmentField & 1 != 0 { headers.fragment = .first }
                } else {
                    guard within.has(cursor, 2) else { return .truncatedExtensionHeader }
                    let lengthField = Int(within.u8(cursor + 1))
                    length = next == 51 ? (lengthField + 2) * 4 : (lengthField + 1) * 8
                }
                guard within.has(cursor, length) else { return .truncatedExtensionHeader }
                next = within.u8(cursor)
                cursor += length
            default:
                headers.l4Offset = UInt16(truncatingIfNeeded: cursor)
                return parseTransport(within, protocol: next, at: cursor, end: end, into: &headers)
            }
        }
    }

    static func parseTransport(
        _ frame: Frame, protocol proto: UInt8, at offset: Int, end: Int, into headers: inout PacketHeaders
    ) -> PacketHeaders.Malformation {
        let available = end - offset
        switch proto {
        case 6:  // TCP
            guard available >= 20, frame.has(offset, 20) else { return .truncatedTCP }
            let dataOffset = Int(frame.u8(offset + 12) >> 4) * 4
            guard dataOffset >= 20, dataOffset <= available else { return .badTCPDataOffset }
            headers.sourcePort = frame.u16(offset)
            headers.destinationPort = frame.u16(offset + 2)
            headers.payloadOffset = UInt16(truncatingIfNeeded: offset + dataOffset)
        case 17:  // UDP
            guard available >= 8, frame.has(offset, 8) else { return .truncatedUDP }
            let udpLength = Int(frame.u16(offset + 4))
            // A first fragment carries only part of the datagram the length describes.
            let lengthFits = headers.fragment == .first ? udpLength >= 8 : (udpLength >= 8 && udpLength <= available)
            guard lengthFits else { return .badUDPLength }
            headers.sourcePort = frame.u16(offset)
            headers.destinationPort = frame.u16(offset + 2)
            headers.payloadOffset = UInt16(truncatingIfNeeded: offset + 8)
        default:
            // ICMP, ICMPv6, ESP, SCTP, …: the protocol number is enough; no ports.
            headers.payloadOffset = UInt16(truncatingIfNeeded: offset)
        }
        return .none
    }
}
