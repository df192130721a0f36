import CXDP
import Foundation
@testable import SluiceDataPath
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Each kernel-feature probe against an independent oracle on the running
/// kernel (bpftool, `genl ctrl list`, a real attach, a real bind, a
/// getsockopt round trip). Never a hard-coded state: the same tests run on
/// this host's kernel and on Debian 12's 6.1 in tools/vmlab, which differ.
final class KernelFeaturesTests: XCTestCase {
    private var lab: Lab?

    override func tearDown() {
        try? lab?.down()
    }

    private func feature(_ name: KernelFeature.Name) -> KernelFeature {
        KernelFeatures.probe().first { $0.name == name } ?? KernelFeature(name, .unknown, "not probed")
    }

    func testEveryFeatureIsProbedWithAStableNameADetailAndAConsequence() throws {
        let features = KernelFeatures.probe()
        XCTAssertEqual(features.map(\.name), KernelFeature.Name.allCases)
        XCTAssertEqual(Set(features.map(\.name.rawValue)).count, 8)
        for feature in features {
            XCTAssertNotNil(feature.name.rawValue.range(of: "^[a-z][a-z0-9_]*$", options: .regularExpression), feature.name.rawValue)
            XCTAssertFalse(feature.detail.isEmpty, "\(feature)")
            XCTAssertFalse(feature.without.isEmpty, "\(feature)")
            XCTAssertNotNil(feature.since.range(of: "^[0-9]+\\.[0-9]+$", options: .regularExpression), feature.since)
        }
        // Probed once per process and kept: what the data path decides by is what doctor shows.
        XCTAssertEqual(KernelFeatures.detected.map(\.name), KernelFeature.Name.allCases)
    }

    /// bpftool reads the same vmlinux BTF with its own parser.
    func testRxMetadataAndXDPLinkAgreeWithBpftool() throws {
        let vmlinux = "/sys/kernel/btf/vmlinux"
        let metadata = feature(.xdpRxMetadata), link = feature(.xdpLink)
        guard FileManager.default.fileExists(atPath: vmlinux) else {
            XCTAssertEqual(metadata.state, .unknown, "\(metadata)")
            XCTAssertEqual(link.state, .unknown, "\(link)")
            return
        }
        let dump = try runCommand(["bpftool", "btf", "dump", "file", vmlinux, "format", "raw"], check: true).stdout
        let lines = dump.split(separator: "\n")
        let hasTimestamp = lines.contains { $0.contains("] FUNC 'bpf_xdp_metadata_rx_timestamp' ") }
        let hasHash = lines.contains { $0.contains("] FUNC 'bpf_xdp_metadata_rx_hash' ") }
        XCTAssertEqual(metadata.state, hasTimestamp || hasHash ? .found : .missing, "\(metadata)")
        // The enumerators follow their ENUM line, indented.
        var linkTypes: [Substring] = []
        if let start = lines.firstIndex(where: { $0.contains("] ENUM 'bpf_link_type' ") }) {
            linkTypes = lines[(start + 1)...].prefix { $0.hasPrefix("\t") }.map { $0 }
        }
        XCTAssertFalse(linkTypes.isEmpty, "bpftool shows no enum bpf_link_type")
        let hasXDPLink = linkTypes.contains { $0.contains("'BPF_LINK_TYPE_XDP' ") }
        XCTAssertEqual(link.state, hasXDPLink ? .found : .missing, "\(link)")
    }

    /// iproute2's genl lists the controller's families without libnl.
    func testFeatureFlagsAgreeWithGenlCtrlList() throws {
        let families = try runCommand(["genl", "ctrl", "list"], check: true).stdout
        let hasNetdev = families.split(separator: "\n").contains { $0.contains("Name: netdev") }
        XCTAssertEqual(feature(.xdpFeatureFlags).state, hasNetdev ? .found : .missing, families)
    }

    /// veth lets a program attach while the peer's MTU exceeds one page only
    /// when the program takes fragments (veth_xdp_set): the frags program
    /// the probe loads really is a multi-buffer program.
    func testMultiBufferAgreesWithAJumboAttachOnVeth() throws {
        try Privilege.require()
        let multiBuffer = feature(.xdpMultiBuffer)
        let fragments = sluice_probe_load_xdp_drop(UInt32(BPF_F_XDP_HAS_FRAGS))
        defer { if fragments >= 0 { close(fragments) } }
        guard multiBuffer.state == .found else {
            XCTAssertEqual(multiBuffer.state, .missing, "\(multiBuffer)")
            XCTAssertLessThan(fragments, 0, "the kernel loads a frags program the probe called missing")
            return
        }
        XCTAssertGreaterThanOrEqual(fragments, 0, "the probe found multi-buffer, the load fails: \(-fragments)")
        let plain = sluice_probe_load_xdp_drop(0)
        defer { if plain >= 0 { close(plain) } }
        let lab = try Lab.up(queues: 1, prefix: "skf")
        self.lab = lab
        try lab.inGenerator(["ip", "link", "set", "dev", lab.generatorInterface, "mtu", "9000"], check: true)
        let index = Int32(if_nametoindex(lab.appInterface))
        let refused = sluice_bpf_link_create_xdp(plain, index, UInt32(XDP_FLAGS_DRV_MODE))
        if refused >= 0 { close(refused) }
        XCTAssertEqual(refused, -ERANGE, "veth takes a single-buffer program under a 9000-byte peer MTU")
        let attached = sluice_bpf_link_create_xdp(fragments, index, UInt32(XDP_FLAGS_DRV_MODE))
        XCTAssertGreaterThanOrEqual(attached, 0, "the frags program does not attach: \(-attached)")
        guard attached >= 0 else { return }
        XCTAssertTrue(try hasXDPProgram(lab), "ip link shows the frags program on \(lab.appInterface)")
        close(attached)
    }

    /// A socket bound with XDP_USE_NEED_WAKEUP where the probe found it; the
    /// fallback bind (without the flag) works on any kernel, and its fill
    /// ring never asks for a wakeup (the driver polls it). Its TX flag is no
    /// guide either way (a 6.18 kernel leaves it set from the bind, a kernel
    /// before 5.4 has none), which is why a transmitter kicks after every batch then.
    /// A one-queue lab for a socket to bind to (removed in tearDown); its app end.
    private func singleQueueLab(_ prefix: String) throws -> String {
        let lab = try Lab.up(queues: 1, prefix: prefix)
        self.lab = lab
        return lab.appInterface
    }

    /// The smallest UMEM and rings a socket takes: enough to bind.
    static var smallestGeometry: XSKGeometry {
        var geometry = XSKGeometry()
        geometry.frameCount = 64
        geometry.fillRingSize = 64; geometry.completionRingSize = 64; geometry.rxRingSize = 64; geometry.txRingSize = 64
        return geometry
    }

    func testNeedWakeupAgreesWithARealBind() throws {
        try Privilege.require()
        let needWakeup = feature(.xskNeedWakeup)
        XCTAssertNotEqual(needWakeup.state, .unknown, "\(needWakeup)")
        let interface = try singleQueueLab("skf")
        func bind(needWakeup: Bool) throws -> XSKSocket {
            try XSKSocket(interface: interface, queue: 0, geometry: Self.smallestGeometry, zeroCopy: false, driver: "veth",
                          needWakeup: needWakeup)
        }
        if needWakeup.state == .found {
            let socket = try bind(needWakeup: true)
            XCTAssertTrue(socket.needWakeup)
        } else {
            XCTAssertThrowsError(try bind(needWakeup: true), "the kernel took XDP_USE_NEED_WAKEUP the probe called missing")
        }
        let fallback = try bind(needWakeup: false)
        XCTAssertFalse(fallback.needWakeup)
        XCTAssertEqual(xsk_ring_prod__needs_wakeup(fallback.fill), 0)
        XCTAssertEqual(XSKSocket.kernelHasNeedWakeup, needWakeup.state != .missing)
    }

    /// A real copy-mode bind with XDP_USE_SG on veth: it binds with the flag
    /// where the probe found it, and without it (the refusal saying why,
    /// or `multi_buffer = "on"` failing) where not.
    func testSocketMultiBufferAgreesWithARealBind() throws {
        try Privilege.require()
        let multiBuffer = feature(.xskMultiBuffer)
        XCTAssertNotEqual(multiBuffer.state, .unknown, "\(multiBuffer)")
        let interface = try singleQueueLab("skm")
        func bind(require: Bool) throws -> XSKSocket {
            try XSKSocket(interface: interface, queue: 0, geometry: Self.smallestGeometry, zeroCopy: false, driver: "veth",
                          multiBuffer: true, requireMultiBuffer: require)
        }
        do {
            // Closed at the end of the scope: the bind below takes the same queue.
            let socket = try bind(require: false)
            XCTAssertEqual(socket.multiBuffer, multiBuffer.state == .found, "\(multiBuffer)")
            XCTAssertEqual(socket.binding.multiBufferRefusal == nil, multiBuffer.state == .found, "\(socket.binding)")
        }
        if multiBuffer.state != .found {
            XCTAssertThrowsError(try bind(require: true)) { error in
                XCTAssertTrue("\(error)".contains("XDP_USE_SG came with Linux 6.6"), "\(error)")
            }
        }
    }

    /// What the kernel does with the options beyond accepting a 0: it keeps
    /// SO_PREFER_BUSY_POLL (read back with getsockopt) and range-checks
    /// SO_BUSY_POLL_BUDGET (which has no getsockopt, even in 6.18); a kernel
    /// without them answers ENOPROTOOPT to both calls.
    func testBusyPollAgreesWithWhatTheKernelDoesWithTheOptions() throws {
        try Privilege.require("root (raising busy-poll options needs CAP_NET_ADMIN)")
        let busyPoll = feature(.busyPoll)
        XCTAssertNotEqual(busyPoll.state, .unknown, "the probe could not run as root: \(busyPoll)")
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        defer { close(descriptor) }
        func set(_ option: Int32, _ value: Int32) -> Int32 {
            var value = value
            return setsockopt(descriptor, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 ? 0 : errno
        }
        var read: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        let setPrefer = set(KernelFeatures.soPreferBusyPoll, 1)
        let getPrefer = getsockopt(descriptor, SOL_SOCKET, KernelFeatures.soPreferBusyPoll, &read, &length) == 0 ? 0 : errno
        let budgetTooLarge = set(KernelFeatures.soBusyPollBudget, 65_536)
        if busyPoll.state == .found {
            XCTAssertEqual([setPrefer, getPrefer], [0, 0], "SO_PREFER_BUSY_POLL")
            XCTAssertEqual(read, 1, "SO_PREFER_BUSY_POLL read back")
            XCTAssertEqual(set(KernelFeatures.soBusyPollBudget, 8), 0, "SO_BUSY_POLL_BUDGET 8")
            XCTAssertEqual(budgetTooLarge, EINVAL, "SO_BUSY_POLL_BUDGET beyond U16_MAX")
        } else {
            XCTAssertEqual([setPrefer, getPrefer, budgetTooLarge], [ENOPROTOOPT, ENOPROTOOPT, ENOPROTOOPT])
        }
    }

    /// Where the probe finds no XDP links, a pipeline start fails before
    /// loading anything, naming the feature and the release, not with EINVAL.
    func testMissingXDPLinksRefuseTheAttachNamingTheFeature() throws {
        let missing = KernelFeature(.xdpLink, .missing, "vmlinux BTF: enum bpf_link_type has no BPF_LINK_TYPE_XDP")
        XCTAssertThrowsError(try XDPProgram.requireLinks(missing, interface: "eth7")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("eth7"), text)
            XCTAssertTrue(text.contains("BPF links for XDP"), text)
            XCTAssertTrue(text.contains("Linux 5.9"), text)
            XCTAssertTrue(text.contains("no BPF_LINK_TYPE_XDP"), text)
            XCTAssertNil((error as? DataPathError)?.errno, "no errno to puzzle over")
        }
        XCTAssertNoThrow(try XDPProgram.requireLinks(KernelFeature(.xdpLink, .found, ""), interface: "eth7"))
        XCTAssertNoThrow(try XDPProgram.requireLinks(KernelFeature(.xdpLink, .unknown, "no BTF"), interface: "eth7"))
    }
}
