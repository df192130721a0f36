import CSluiceShims
import SluiceNIC
import XCTest

/// ntuple rules: the struct ethtool_rx_flow_spec encoding checked byte for
/// byte against the kernel UAPI layout (offsets from C's offsetof), the
/// ethtool -N rendering checked literally, and location choice.
final class FlowSpecTests: XCTestCase {
    let uapi = sluice_flow_spec_layout()

    func testLayoutConstantsMatchKernelUAPI() {
        typealias L = FlowSpecLayout
        XCTAssertEqual(L.size, uapi.spec_size)
        XCTAssertEqual(L.flowType, uapi.flow_type)
        XCTAssertEqual(L.headerUnion, uapi.h_u)
        XCTAssertEqual(L.headerExt, uapi.h_ext)
        XCTAssertEqual(L.maskUnion, uapi.m_u)
        XCTAssertEqual(L.maskExt, uapi.m_ext)
        XCTAssertEqual(L.ringCookie, uapi.ring_cookie)
        XCTAssertEqual(L.location, uapi.location)
        XCTAssertEqual(L.ip4Source, uapi.ip4_src)
        XCTAssertEqual(L.ip4Destination, uapi.ip4_dst)
        XCTAssertEqual(L.ip4SourcePort, uapi.ip4_psrc)
        XCTAssertEqual(L.ip4DestinationPort, uapi.ip4_pdst)
        XCTAssertEqual(L.user4IPVersion, uapi.usr4_ip_ver)
        XCTAssertEqual(L.ip6Source, uapi.ip6_src)
        XCTAssertEqual(L.ip6Destination, uapi.ip6_dst)
        XCTAssertEqual(L.ip6SourcePort, uapi.ip6_psrc)
        XCTAssertEqual(L.ip6DestinationPort, uapi.ip6_pdst)
        XCTAssertEqual(L.etherDestination, uapi.eth_dest)
        XCTAssertEqual(L.etherSource, uapi.eth_source)
        XCTAssertEqual(L.etherProto, uapi.eth_proto)
        XCTAssertEqual(L.extVLANTCI, uapi.ext_vlan_tci)
        // The rxnfc that carries it: fs at 16 in a 192-byte struct on x86-64.
        XCTAssertEqual(uapi.rxnfc_fs, 16)
        XCTAssertEqual(uapi.rxnfc_size, 192)
    }

    private func u32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        bytes[offset..<offset + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
    }

    private func u64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        bytes[offset..<offset + 8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }

    private func slice(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> [UInt8] { Array(bytes[offset..<offset + count]) }

    func testUDP4RuleBytes() throws {
        let rule = NtupleRule(flowType: .udp4, sourceAddress: "10.0.0.1", destinationAddress: "192.168.1.2",
                              sourcePort: 1234, destinationPort: 4791, action: .queue(2))
        let bytes = try rule.flowSpecBytes(location: 5)
        XCTAssertEqual(bytes.count, uapi.spec_size)
        XCTAssertEqual(u32(bytes, uapi.flow_type), 0x02)  // UDP_V4_FLOW
        XCTAssertEqual(slice(bytes, uapi.h_u + uapi.ip4_src, 4), [10, 0, 0, 1])
        XCTAssertEqual(slice(bytes, uapi.h_u + uapi.ip4_dst, 4), [192, 168, 1, 2])
        XCTAssertEqual(slice(bytes, uapi.h_u + uapi.ip4_psrc, 2), [0x04, 0xD2])  // 1234, big-endian
        XCTAssertEqual(slice(bytes, uapi.h_u + uapi.ip4_pdst, 2), [0x12, 0xB7])  // 4791
        XCTAssertEqual(slice(bytes, uapi.m_u + uapi.ip4_src, 12), [UInt8](repeating: 0xFF, count: 12))
        XCTAssertEqual(bytes[uapi.m_u + uapi.ip4_tos], 0)
        XCTAssertEqual(u64(bytes, uapi.ring_cookie), 2)
        XCTAssertEqual(u32(bytes, uapi.location), 5)
        // Nothing else is set: the ext fields and padding stay zero.
        XCTAssertEqual(slice(bytes, uapi.h_ext, uapi.ext_size), [UInt8](repeating: 0, count: uapi.ext_size))
        XCTAssertEqual(slice(bytes, uapi.m_ext, uapi.ext_size), [UInt8](repeating: 0, count: uapi.ext_size))
        var decoded = try XCTUnwrap(NtupleRule(flowSpecBytes: bytes))
        XCTAssertEqual(decoded.location, 5)
        decoded.location = nil
        XCTAssertEqual(decoded, rule)
    }

    func testTCP6RuleWithMaskAndVLANBytes() throws {
        let rule = NtupleRule(flowType: .tcp6, destinationAddress: "2001:db8::1", destinationAddressMask: "ffff:ffff::",
                              destinationPort: 443, vlan: 100, action: .queue(7))
        let bytes = try rule.flowSpecBytes(location: 0)
        XCTAssertEqual(u32(bytes, uapi.flow_type), 0x05 | 0x8000_0000)  // TCP_V6_FLOW | FLOW_EXT
        XCTAssertEqual(slice(bytes, uapi.h_u + uapi.ip6_dst, 16),
                       [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1])
        XCTAssertEqual(slice(bytes, uapi.m_u + uapi.ip6_dst, 16),
                       [UInt8](repeating: 0xFF, count: 4) + [UInt8](repeating: 0, count: 12))
        XCTAssertEqual(slice(bytes, uapi.m_u + uapi.ip6_src, 16), [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(slice(bytes, uapi.h_u + uapi.ip6_pdst, 2), [0x01, 0xBB])
        XCTAssertEqual(slice(bytes, uapi.m_u + uapi.ip6_psrc, 2), [0, 0])
        XCTAssertEqual(slice(bytes, uapi.h_ext + uapi.ext_vlan_tci, 2), [0, 100])
        XCTAssertEqual(slice(bytes, uapi.m_ext + uapi.ext_vlan_tci, 2), [0xFF, 0xFF])
        XCTAssertEqual(u64(bytes, uapi.ring_cookie), 7)
        var decoded = try XCTUnwrap(NtupleRule(flowSpecBytes: bytes))
        decoded.location = nil
        XCTAssertEqual(decoded, rule)
    }

    func testIP4DropRuleSetsIPVersionAndDiscardCookie() throws {
        let rule = NtupleRule(flowType: .ip4, sourceAddress: "10.1.0.0", sourceAddressMask: "255.255.0.0", action: .drop)
        let bytes = try rule.flowSpecBytes(location: 3)
        XCTAssertEqual(u32(bytes, uapi.flow_type), 0x0d)  // IPV4_USER_FLOW
        XCTAssertEqual(bytes[uapi.h_u + uapi.usr4_ip_ver], 1)  // ETH_RX_NFC_IP4
        XCTAssertEqual(bytes[uapi.m_u + uapi.usr4_ip_ver], 0)
        XCTAssertEqual(slice(bytes, uapi.m_u + uapi.ip4_src, 4), [255, 255, 0, 0])
        XCTAssertEqual(u64(bytes, uapi.ring_cookie), sluice_rx_cls_flow_disc())
        XCTAssertEqual(NtupleRule(flowSpecBytes: bytes)?.action, .drop)
    }

    func testEtherRuleBytes() throws {
        let rule = NtupleRule(flowType: .ether, destinationMAC: "02:00:00:00:00:01", etherType: 0x88F7, action: .queue(1))
        let bytes = try rule.flowSpecBytes(location: 9)
        XCTAssertEqual(u32(bytes, uapi.flow_type), 0x12)
        XCTAssertEqual(slice(bytes, uapi.h_u + uapi.eth_dest, 6), [2, 0, 0, 0, 0, 1])
        XCTAssertEqual(slice(bytes, uapi.m_u + uapi.eth_dest, 6), [UInt8](repeating: 0xFF, count: 6))
        XCTAssertEqual(slice(bytes, uapi.m_u + uapi.eth_source, 6), [UInt8](repeating: 0, count: 6))
        XCTAssertEqual(slice(bytes, uapi.h_u + uapi.eth_proto, 2), [0x88, 0xF7])
        var decoded = try XCTUnwrap(NtupleRule(flowSpecBytes: bytes))
        decoded.location = nil
        XCTAssertEqual(decoded, rule)
    }

    func testInvalidRulesAreRefusedNamingTheField() {
        let cases: [(NtupleRule, String)] = [
            (NtupleRule(flowType: .udp4, sourceAddress: "2001:db8::1", action: .queue(1)), "src-ip 2001:db8::1 is not an IPv4 address"),
            (NtupleRule(flowType: .ip4, destinationPort: 80, action: .queue(1)), "ports are not valid for flow-type ip4 (use tcp4/udp4/tcp6/udp6)"),
            (NtupleRule(flowType: .tcp4, sourceMAC: "02:00:00:00:00:01", action: .queue(1)), "src/dst MAC and proto are only valid for flow-type ether"),
            (NtupleRule(flowType: .ether, destinationMAC: "02:00:00:00:00", action: .queue(1)), "dst MAC 02:00:00:00:00 is not a MAC address"),
            (NtupleRule(flowType: .ether, sourceAddress: "10.0.0.1", action: .queue(1)), "src-ip is not valid for flow-type ether"),
        ]
        for (rule, message) in cases {
            XCTAssertThrowsError(try rule.flowSpecBytes(location: 0)) { error in
                XCTAssertEqual(error as? NICError, .invalidArgument(message))
            }
        }
    }

    func testEthtoolCommandLinesAreLiterallyEthtools() {
        let lines: [(NtupleRule, UInt32?, String)] = [
            (NtupleRule(flowType: .udp4, sourceAddress: "10.0.0.1", destinationAddress: "10.0.0.2",
                        sourcePort: 1, destinationPort: 2, action: .queue(2)), 5,
             "ethtool -N eth0 flow-type udp4 src-ip 10.0.0.1 dst-ip 10.0.0.2 src-port 1 dst-port 2 action 2 loc 5"),
            (NtupleRule(flowType: .tcp4, destinationPort: 80, action: .queue(3)), 1023,
             "ethtool -N eth0 flow-type tcp4 dst-port 80 action 3 loc 1023"),
            (NtupleRule(flowType: .tcp6, sourceAddress: "2001:0db8:0:0::1", destinationPort: 443, action: .drop), nil,
             "ethtool -N eth0 flow-type tcp6 src-ip 2001:db8::1 dst-port 443 action -1"),
            (NtupleRule(flowType: .ip4, destinationAddress: "192.168.0.0", destinationAddressMask: "255.255.255.0",
                        action: .queue(0)), 7,
             "ethtool -N eth0 flow-type ip4 dst-ip 192.168.0.0 m 0.0.0.255 action 0 loc 7"),
            (NtupleRule(flowType: .udp4, destinationPort: 4791, destinationPortMask: 0xFF00, action: .queue(1)), 2,
             "ethtool -N eth0 flow-type udp4 dst-port 4791 m 0x00ff action 1 loc 2"),
            (NtupleRule(flowType: .ether, sourceMAC: "02:AA:00:00:00:01", etherType: 0x0800, vlan: 100, action: .queue(4)), 0,
             "ethtool -N eth0 flow-type ether src 02:aa:00:00:00:01 proto 0x0800 vlan 100 action 4 loc 0"),
            (NtupleRule(flowType: .udp6, destinationAddress: "fd00::2", vlan: 5, vlanMask: 0x0FFF, action: .queue(1)), 3,
             "ethtool -N eth0 flow-type udp6 dst-ip fd00::2 vlan 5 m 0xf000 action 1 loc 3"),
        ]
        for (rule, location, expected) in lines {
            XCTAssertEqual(rule.ethtoolCommand(interface: "eth0", location: location), expected)
        }
    }

    // MARK: Location choice (ethtool's rxclass.c: rmgr_find_empty_slot)

    func testDriverThatChoosesGetsLocAny() throws {
        // RX_CLS_LOC_SPECIAL in GRXCLSRLCNT's data (e.g. sfc, mvpp2).
        let chosen = try RuleLocation.choose(requested: nil, countData: 0x8000_0000 | 1024, tableSize: 1024,
                                             occupied: [1023, 1022], interface: "eth0")
        XCTAssertEqual(chosen, 0xFFFF_FFFF)
    }

    func testDriverWithoutSpecialGetsTheHighestFreeSlotLikeEthtool() throws {
        // mlx5-like: a table of 8, the two lowest-priority slots taken.
        XCTAssertEqual(try RuleLocation.choose(requested: nil, countData: 8, tableSize: 8, occupied: [7, 6, 2],
                                               interface: "eth0"), 5)
        XCTAssertEqual(try RuleLocation.choose(requested: nil, countData: 8, tableSize: 8, occupied: [],
                                               interface: "eth0"), 7)
        // Across a 64-bit word boundary, as rmgr's bitmap walk does.
        XCTAssertEqual(try RuleLocation.choose(requested: nil, countData: 130, tableSize: 130,
                                               occupied: Array(64..<130), interface: "eth0"), 63)
    }

    func testFullTableIsAnErrorNamingTheInterface() {
        XCTAssertThrowsError(try RuleLocation.choose(requested: nil, countData: 4, tableSize: 4, occupied: [0, 1, 2, 3],
                                                     interface: "vapp")) { error in
            XCTAssertEqual(error as? NICError,
                           .invalidArgument("no free ntuple rule location on vapp: all 4 slots are used"))
        }
    }

    func testRequestedLocationIsUsedButNotOverAnotherRuleOrPastTheTable() throws {
        XCTAssertEqual(try RuleLocation.choose(requested: 3, countData: 8, tableSize: 8, occupied: [7], interface: "eth0"), 3)
        XCTAssertThrowsError(try RuleLocation.choose(requested: 7, countData: 8, tableSize: 8, occupied: [7], interface: "eth0")) {
            XCTAssertEqual($0 as? NICError, .invalidArgument("loc 7 is already used by a rule on eth0"))
        }
        XCTAssertThrowsError(try RuleLocation.choose(requested: 8, countData: 8, tableSize: 8, occupied: [], interface: "eth0")) {
            XCTAssertEqual($0 as? NICError, .invalidArgument("loc 8 exceeds the rule table size 8 for eth0"))
        }
    }

    func testRuleJSONShape() throws {
        let rule = NtupleRule(flowType: .udp4, destinationPort: 53, action: .drop, location: 4)
        let json = String(decoding: try JSONEncoder().encode(rule), as: UTF8.self)
        XCTAssertTrue(json.contains("\"action\":\"drop\""), json)
        XCTAssertEqual(try JSONDecoder().decode(NtupleRule.self, from: Data(json.utf8)), rule)
        let queued = try JSONDecoder().decode(NtupleRule.self, from: Data(#"{"flowType":"tcp4","action":3}"#.utf8))
        XCTAssertEqual(queued.action, .queue(3))
        XCTAssertThrowsError(try JSONDecoder().decode(NtupleRule.self, from: Data(#"{"flowType":"tcp4","action":-1}"#.utf8)))
    }
}
