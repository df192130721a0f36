import CXDP
import Foundation
import SluiceNIC
import SluiceTestSupport
import XCTest

/// Per-queue driver statistics (ETHTOOL_GSTATS) on veth after traffic. veth
/// counts rx_queue_N_xdp_packets only while an XDP program is attached, so
/// the test attaches a two-instruction XDP_PASS program, steers the peer's
/// transmit queue with XPS and checks the queue that got the packets.
final class StatisticsTests: VethTestCase {
    var programFD: Int32 = -1
    var attachedIndex: Int32 = 0

    override func tearDown() {
        if attachedIndex != 0 { _ = bpf_xdp_detach(attachedIndex, 0, nil) }
        if programFD >= 0 { close(programFD) }
        super.tearDown()
    }

    /// `r0 = XDP_PASS; exit`, loaded with libbpf.
    private func loadXDPPass() throws -> Int32 {
        let instructions: [UInt8] = [
            0xB7, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,  // BPF_ALU64|BPF_MOV|BPF_K r0 = 2
            0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // BPF_JMP|BPF_EXIT
        ]
        let fd = instructions.withUnsafeBytes { raw in
            bpf_prog_load(BPF_PROG_TYPE_XDP, "sluice_test", "GPL",
                          raw.baseAddress!.assumingMemoryBound(to: bpf_insn.self), 2, nil)
        }
        guard fd >= 0 else { throw XCTSkip("cannot load an XDP program here: errno \(-fd)") }
        return fd
    }

    func testPerQueueCountersShowTheQueueThatGotTheTraffic() throws {
        let device = lab.device, peer = lab.peer
        try SluiceTestSupport.run(["sysctl", "-qw", "net.ipv6.conf.\(device).disable_ipv6=1"], check: true)
        try lab.inNamespace(["sysctl", "-qw", "net.ipv6.conf.\(peer).disable_ipv6=1"])
        try SluiceTestSupport.run(["ip", "addr", "add", "10.213.0.1/24", "dev", device], check: true)
        try lab.inNamespace(["ip", "addr", "add", "10.213.0.2/24", "dev", peer])
        // XPS on the peer: CPU 0 transmits on tx-2 (so the device receives
        // on rx-2), CPU 1 on tx-3.
        for queue in 0..<4 {
            let mask = queue == 2 ? "1" : queue == 3 ? "2" : "0"
            try lab.inNamespace(["sh", "-c", "echo \(mask) > /sys/class/net/\(peer)/queues/tx-\(queue)/xps_cpus"])
        }

        programFD = try loadXDPPass()
        let index = Int32(if_nametoindex(device))
        let attached = bpf_xdp_attach(index, programFD, UInt32(XDP_FLAGS_DRV_MODE), nil)
        XCTAssertEqual(attached, 0, "bpf_xdp_attach: errno \(-attached)")
        attachedIndex = index

        try SluiceTestSupport.run(["ip", "link", "set", device, "up"], check: true)
        try lab.inNamespace(["ip", "link", "set", peer, "up"])
        let controller = try NICController(stateDirectory: NSTemporaryDirectory() + uniqueName("sluice-state"))
        let info = try controller.interface(device)
        XCTAssertEqual(info.xdp?.mode, "native")
        XCTAssertNotNil(info.xdp?.programID)

        let before = try controller.statistics(device)
        XCTAssertEqual(before.backend, .ioctl)
        let count = 20
        try lab.inNamespace(["taskset", "-c", "0", "ping", "-q", "-c", "\(count)", "-i", "0.01", "-W", "1", "10.213.0.1"])
        let after = try waitFor("rx queue 2 to count \(count) XDP packets") { () -> DriverStatistics? in
            let stats = try controller.statistics(device).value
            return (stats.queue(.rx, 2, "xdp_packets") ?? 0) - (before.value.queue(.rx, 2, "xdp_packets") ?? 0)
                >= UInt64(count) ? stats : nil
        }
        let reference = try XCTUnwrap(before.value.queue(.rx, 0, "xdp_packets"))
        XCTAssertEqual(after.queue(.rx, 0, "xdp_packets"), reference, "queue 0 got nothing")
        XCTAssertEqual(after.queues.filter { $0.direction == .rx }.map(\.queue), [0, 1, 2, 3])
        // The same numbers as `ethtool -S`.
        let ethtoolText = try lab.ethtool("-S", device)
        let line = ethtoolText.split(separator: "\n").first { $0.contains("rx_queue_2_xdp_packets:") }
        let shown = try XCTUnwrap(line.flatMap { UInt64($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) })
        XCTAssertGreaterThanOrEqual(shown, after.queue(.rx, 2, "xdp_packets") ?? .max)
    }
}
