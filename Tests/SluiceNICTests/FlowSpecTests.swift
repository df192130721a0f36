import CSluiceShims
import SluiceNIC
import SluiceTestSupport
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
        // No vlan_mask: only the 12-bit VLAN id must match.
        XCTAssertEqual(slice(bytes, uapi.m_ext + uapi.ext_vlan_tci, 2), [0x0F, 0xFF])
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
             "ethtool -N eth0 flow-type ether src 02:aa:00:00:00:01 proto 0x0800 vlan 100 m 0xf000 action 4 loc 0"),
            (NtupleRule(flowType: .udp6, destinationAddress: "fd00::2", vlan: 5, vlanMask: 0x0FFF, action: .queue(1)), 3,
             "ethtool -N eth0 flow-type udp6 dst-ip fd00::2 vlan 5 m 0xf000 action 1 loc 3"),
            (NtupleRule(flowType: .udp4, destinationPort: 53, vlan: 0x2064, vlanMask: 0xFFFF, action: .queue(2)), 1,
             "ethtool -N eth0 flow-type udp4 dst-port 53 vlan 8292 m 0x0000 action 2 loc 1"),
        ]
        for (rule, location, expected) in lines {
            XCTAssertEqual(rule.ethtoolCommand(interface: "eth0", location: location), expected)
        }
    }

    func testVLANWithoutAMaskMatchesTheVLANIDOnly() throws {
        // mlx5 refuses a full 0xffff TCI mask with EINVAL, and "vlan 100"
        // means VLAN id 100 to an operator: the default mask is 0x0fff.
        let rule = NtupleRule(flowType: .udp4, destinationPort: 4791, vlan: 100, action: .queue(1))
        let bytes = try rule.flowSpecBytes(location: 2)
        XCTAssertEqual(u32(bytes, uapi.flow_type), 0x02 | 0x8000_0000)  // UDP_V4_FLOW | FLOW_EXT
        XCTAssertEqual(slice(bytes, uapi.h_ext + uapi.ext_vlan_tci, 2), [0x00, 0x64])
        XCTAssertEqual(slice(bytes, uapi.m_ext + uapi.ext_vlan_tci, 2), [0x0F, 0xFF])
        XCTAssertEqual(NtupleRule.vlanIDMask, 0x0FFF)
        // ethtool's m is the don't-care bits: the priority and DEI bits.
        XCTAssertEqual(rule.ethtoolCommand(interface: "eth0", location: 2),
                       "ethtool -N eth0 flow-type udp4 dst-port 4791 vlan 100 m 0xf000 action 1 loc 2")
        var decoded = try XCTUnwrap(NtupleRule(flowSpecBytes: bytes))
        decoded.location = nil
        XCTAssertEqual(decoded, rule, "the default mask decodes back to no mask")

        // A whole-TCI rule (inserted by someone else) keeps its mask.
        var full = rule
        full.vlanMask = 0xFFFF
        let fullBytes = try full.flowSpecBytes(location: 2)
        XCTAssertEqual(slice(fullBytes, uapi.m_ext + uapi.ext_vlan_tci, 2), [0xFF, 0xFF])
        XCTAssertEqual(NtupleRule(flowSpecBytes: fullBytes)?.vlanMask, 0xFFFF)

        // Priority bits without a mask would be silently ignored: refused.
        XCTAssertThrowsError(try NtupleRule(flowType: .udp4, vlan: 0x2064, action: .queue(1)).flowSpecBytes(location: 0)) {
            XCTAssertEqual($0 as? NICError, .invalidArgument(
                "vlan 8292 is not a VLAN id (0-4095); give vlan_mask to match priority or DEI bits of the TCI"))
        }
    }

    /// The line Sluice shows must be the rule it inserts: the real
    /// `ethtool` parses the line, and an LD_PRELOAD interposer catches the
    /// struct ethtool_rx_flow_spec of its ETHTOOL_SRXCLSRLINS before any
    /// device sees it (on `lo`, which would refuse it anyway).
    func testEthtoolParsesTheShownLineIntoTheSameBytes() throws {
        let oracle = try EthtoolRuleOracle()
        defer { oracle.remove() }
        let rules: [NtupleRule] = [
            NtupleRule(flowType: .udp4, sourceAddress: "10.0.0.1", destinationAddress: "10.0.0.2",
                       sourcePort: 1, destinationPort: 2, action: .queue(2)),
            NtupleRule(flowType: .tcp4, destinationPort: 80, action: .queue(3)),
            NtupleRule(flowType: .tcp6, sourceAddress: "2001:db8::1", destinationPort: 443, action: .drop),
            NtupleRule(flowType: .ip4, destinationAddress: "192.168.0.0", destinationAddressMask: "255.255.255.0",
                       action: .queue(0)),
            NtupleRule(flowType: .udp4, destinationPort: 4791, destinationPortMask: 0xFF00, action: .queue(1)),
            NtupleRule(flowType: .ether, sourceMAC: "02:AA:00:00:00:01", etherType: 0x0800, vlan: 100, action: .queue(4)),
            NtupleRule(flowType: .udp6, destinationAddress: "fd00::2", vlan: 5, vlanMask: 0x0FFF, action: .queue(1)),
            NtupleRule(flowType: .udp4, destinationPort: 4791, vlan: 100, action: .queue(1)),
            NtupleRule(flowType: .tcp4, vlan: 0x2064, vlanMask: 0xFFFF, action: .queue(1)),
            NtupleRule(flowType: .tcp4, vlan: 7, vlanMask: 0xEFFF, action: .queue(1)),
        ]
        for (index, rule) in rules.enumerated() {
            let location = UInt32(index + 1)
            let parsed = try oracle.bytes(for: rule.ethtoolArguments(location: location))
            XCTAssertEqual(parsed, try rule.flowSpecBytes(location: location),
                           rule.ethtoolCommand(interface: "lo", location: location))
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
        let queued = try JSONDecoder().decode(NtupleRule.self, from: Data(#"{"flow_type":"tcp4","action":3}"#.utf8))
        XCTAssertEqual(queued.action, .queue(3))
        XCTAssertThrowsError(try JSONDecoder().decode(NtupleRule.self, from: Data(#"{"flow_type":"tcp4","action":-1}"#.utf8)))
    }
}

/// Runs the real `ethtool -N lo ...` with an ioctl interposer that writes
/// the flow spec it would insert to a file and reports success.
final class EthtoolRuleOracle {
    let directory: String
    let library: String

    static let source = """
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <fcntl.h>
        #include <linux/ethtool.h>
        #include <linux/sockios.h>
        #include <net/if.h>
        #include <stdarg.h>
        #include <stdlib.h>
        #include <unistd.h>

        int ioctl(int fd, unsigned long request, ...)
        {
            va_list ap;
            va_start(ap, request);
            void *arg = va_arg(ap, void *);
            va_end(ap);
            if (request == SIOCETHTOOL) {
                struct ethtool_rxnfc *nfc = (struct ethtool_rxnfc *)((struct ifreq *)arg)->ifr_data;
                if (nfc->cmd == ETHTOOL_SRXCLSRLINS) {
                    const char *path = getenv("SLUICE_FLOW_SPEC_OUT");
                    int out = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
                    if (out < 0)
                        return -1;
                    ssize_t written = write(out, &nfc->fs, sizeof nfc->fs);
                    close(out);
                    return written == (ssize_t)sizeof nfc->fs ? 0 : -1;
                }
            }
            int (*next)(int, unsigned long, ...) = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
            return next(fd, request, arg);
        }
        """

    init() throws {
        directory = NSTemporaryDirectory() + uniqueName("sluice-ethtool-oracle")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let sourcePath = directory + "/capture.c"
        library = directory + "/capture.so"
        try Self.source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        try runCommand(["cc", "-O2", "-shared", "-fPIC", "-o", library, sourcePath, "-ldl"], check: true)
    }

    func bytes(for arguments: [String]) throws -> [UInt8] {
        let output = directory + "/spec.bin"
        try? FileManager.default.removeItem(atPath: output)
        try runCommand(["ethtool", "-N", "lo"] + arguments,
                environment: ["LD_PRELOAD": library, "SLUICE_FLOW_SPEC_OUT": output], check: true)
        return Array(try Data(contentsOf: URL(fileURLWithPath: output)))
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
