import Foundation
import SluicePluginHost
import SluiceTestSupport
import XCTest

/// Facts from a real veth with 4 rx queues in a namespace this test creates,
/// with `ethtool` as the oracle for what the daemon would pass in.
final class VethFactsTests: XCTestCase {
    private var namespace: String?
    private var holder: Process?
    private var directory: PluginDirectory?

    override func tearDown() {
        if let holder, holder.isRunning {
            holder.terminate()
            holder.waitUntilExit()
        }
        if let namespace { _ = try? SluiceTestSupport.run(["ip", "netns", "del", namespace]) }
        directory?.remove()
    }

    /// Parses `ethtool -l` output: the "Current hardware settings" RX and TX.
    private func currentChannels(_ output: String) -> ChannelCounts {
        var counts = ChannelCounts()
        var inCurrent = false
        for line in output.split(separator: "\n") {
            if line.hasPrefix("Current hardware settings") { inCurrent = true; continue }
            guard inCurrent else { continue }
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let value = UInt32(parts[1]) else { continue }
            switch parts[0] {
            case "RX": counts.rx = value
            case "TX": counts.tx = value
            case "Combined": counts.combined = value
            default: break
            }
        }
        return counts
    }

    func testCompiledPluginMapsChannelToQueuePlusTwoOnRealVeth() throws {
        try Privilege.require()
        let ns = uniqueName("slpl")
        let device = uniqueName("slpv")
        let peer = uniqueName("slpp")
        try SluiceTestSupport.run(["ip", "netns", "add", ns], check: true)
        namespace = ns
        try SluiceTestSupport.run(
            ["ip", "-n", ns, "link", "add", device, "numrxqueues", "4", "numtxqueues", "4", "type", "veth",
             "peer", "name", peer, "numrxqueues", "4", "numtxqueues", "4"],
            check: true)

        // /sys shows the namespace's devices only in a mount namespace that
        // remounted it, as `ip netns exec` does: read it through that
        // process's root.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "ip", "netns", "exec", ns, "sleep", "300"]
        try process.run()
        holder = process
        let sysfs = "/proc/\(process.processIdentifier)/root/sys/class/net"
        try waitUntil("\(device) in the sysfs of \(ns)") {
            FileManager.default.fileExists(atPath: "\(sysfs)/\(device)/queues")
        }

        let info = try SluiceTestSupport.run(["ip", "netns", "exec", ns, "ethtool", "-i", device], check: true).stdout
        let driver = try XCTUnwrap(
            info.split(separator: "\n").first { $0.hasPrefix("driver: ") }.map { String($0.dropFirst(8)) })
        XCTAssertEqual(driver, "veth")
        let channels = currentChannels(
            try SluiceTestSupport.run(["ip", "netns", "exec", ns, "ethtool", "-l", device], check: true).stdout)
        XCTAssertEqual(channels.rx, 4)

        let facts = try DriverFacts.gather(
            interface: device, driver: driver, channels: channels, sysfsNetRoot: sysfs)
        XCTAssertEqual(facts.sysfsRxQueues, 4)
        XCTAssertEqual(facts.sysfsTxQueues, 4)

        let plugins = try PluginDirectory()
        directory = plugins
        try plugins.installBuilt("libsluice_generic.so")
        try plugins.compile(testPluginSource, as: "libsluice_veth_test.so")
        let explanation = try plugins.host().explain(facts, channels: [0, 1])
        XCTAssertEqual(explanation.selection.plugin.name, "veth_test")
        XCTAssertEqual(explanation.selection.scores.map(\.score), [50, 1])
        XCTAssertEqual(explanation.mappings.map(\.bindQueue), [2, 3])
        XCTAssertEqual(explanation.mappings.map(\.steerQueue), [2, 3])
        XCTAssertEqual(explanation.mappings.map(\.xskmapKey), [2, 3])
    }
}
