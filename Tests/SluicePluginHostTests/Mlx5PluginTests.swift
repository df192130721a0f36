import Foundation
import SluicePluginHost
import SluiceTestSupport
import XCTest

/// The real libsluice_mlx5.so (and libsluice_generic.so), loaded by the host,
/// over synthetic facts: no mlx5 card is needed to check its plan.
final class Mlx5PluginTests: XCTestCase {
    private var directory: PluginDirectory!
    private var host: PluginHost!

    override func setUpWithError() throws {
        directory = try PluginDirectory.withShippedPlugins()
        host = directory.host()
        XCTAssertEqual(host.list().compactMap(\.plugin?.name), ["generic", "mlx5"], "\(host.list())")
    }

    override func tearDown() {
        directory?.remove()
    }

    private func mlx5Facts(
        kernel: String, channels: UInt32 = 4, sysfsRxQueues: UInt32,
        zeroCopyRequested: Bool = true, zeroCopySockets: UInt32 = 0
    ) -> DriverFacts {
        DriverFacts(
            interface: "eth2", driver: "mlx5_core", driverVersion: kernel,
            firmwareVersion: "16.35.2000 (MT_0000000008)", kernelRelease: kernel,
            channels: ChannelCounts(combined: channels), maxChannels: ChannelCounts(combined: 63),
            sysfsRxQueues: sysfsRxQueues, sysfsTxQueues: sysfsRxQueues, xdpMode: .native,
            zeroCopyRequested: zeroCopyRequested, zeroCopySockets: zeroCopySockets)
    }

    private func assertTable(
        _ facts: DriverFacts, _ expected: [UInt32], file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let explanation = try host.explain(facts)
        XCTAssertEqual(explanation.selection.plugin.name, "mlx5", file: file, line: line)
        XCTAssertEqual(explanation.mappings.map(\.channel), Array(0..<UInt32(expected.count)), file: file, line: line)
        XCTAssertEqual(explanation.mappings.map(\.bindQueue), expected, file: file, line: line)
        XCTAssertEqual(explanation.mappings.map(\.steerQueue), expected, file: file, line: line)
        XCTAssertEqual(explanation.mappings.map(\.xskmapKey), expected, file: file, line: line)
    }

    func testOldSchemeDetectedBySysfs() throws {
        let facts = mlx5Facts(kernel: "5.15.0-91-generic", sysfsRxQueues: 8)
        try assertTable(facts, [4, 5, 6, 7])
        let explanation = try host.explain(facts, channels: [2])
        XCTAssertEqual(explanation.selection.scores.map(\.plugin), ["mlx5", "generic"])
        XCTAssertEqual(explanation.selection.scores.map(\.score), [100, 1])
        XCTAssertEqual(
            explanation.selection.scores[0].reason,
            "Driver mlx5_core on eth2 uses the pre-6.1 split queue scheme (XSK queues at channels+i): sysfs shows 8 rx queues for 4 channels.")
        XCTAssertEqual(
            explanation.mappings[0].message,
            "mlx5 before Linux 6.1 serves zero-copy AF_XDP for channel 2 on queue 6, so the socket, the steering action and the XSKMAP key all use 6; sysfs shows 8 rx queues for 4 channels.")

        let preparation = explanation.preparation
        // mlx5 takes ntuple rules without the feature; turning it on enables aRFS.
        XCTAssertFalse(preparation.needsNtuple)
        XCTAssertTrue(preparation.steeringRequired)
        XCTAssertFalse(preparation.excludeFromRSS)
        XCTAssertEqual(preparation.minXskmapEntries, 8)
        XCTAssertEqual(
            preparation.message,
            "On mlx5 before Linux 6.1 the zero-copy AF_XDP queues of eth2 (4-7) are outside RSS, so only traffic that ntuple rules steer to them arrives; Sluice leaves rx-ntuple-filter off because mlx5 takes `ethtool -N eth2 ... action 4` rules without it and turning it on enables aRFS, which moves the kernel's own flows (VLAN matches take only the mask 0x0fff).")

        // sysfs outranks the release: a 6.x number with the split layout is still split.
        try assertTable(mlx5Facts(kernel: "6.5.0-custom", sysfsRxQueues: 8), [4, 5, 6, 7])
    }

    func testOldSchemeByKernelReleaseWhenSysfsIsAmbiguous() throws {
        let facts = mlx5Facts(kernel: "5.15.0-91-generic", sysfsRxQueues: 0)
        try assertTable(facts, [4, 5, 6, 7])
        let explanation = try host.explain(facts, channels: [1])
        XCTAssertEqual(
            explanation.selection.scores[0].reason,
            "Driver mlx5_core on eth2 uses the pre-6.1 split queue scheme (XSK queues at channels+i): kernel 5.15.0-91-generic is before 6.1 and sysfs (0 rx queues for 4 channels) does not tell.")
        // The boundary is 6.1 exactly.
        try assertTable(mlx5Facts(kernel: "6.0.19", sysfsRxQueues: 0), [4, 5, 6, 7])
        try assertTable(mlx5Facts(kernel: "6.1.0", sysfsRxQueues: 0), [0, 1, 2, 3])
        // sysfs that fits neither layout (12 for 4 channels) also defers to the release.
        try assertTable(mlx5Facts(kernel: "5.4.0", sysfsRxQueues: 12), [4, 5, 6, 7])
    }

    func testBackportedDistroKernelFollowsSysfs() throws {
        // RHEL 8 says 4.18 but carries the 6.1 queue scheme: sysfs shows one rx queue per channel.
        let facts = mlx5Facts(kernel: "4.18.0-477.10.1.el8_8.x86_64", sysfsRxQueues: 4)
        try assertTable(facts, [0, 1, 2, 3])
        let explanation = try host.explain(facts, channels: [2])
        XCTAssertEqual(
            explanation.selection.scores[0].reason,
            "Driver mlx5_core on eth2 uses the 6.1+ identity queue scheme: sysfs shows 4 rx queues for 4 channels and no zero-copy socket is bound.")
        XCTAssertEqual(
            explanation.mappings[0].message,
            "mlx5 with the Linux 6.1+ queue scheme serves AF_XDP for channel 2 on queue 2.")
        XCTAssertFalse(explanation.preparation.needsNtuple)
    }

    func testNewScheme() throws {
        let facts = mlx5Facts(kernel: "6.8.0-49-generic", sysfsRxQueues: 4, zeroCopySockets: 2)
        try assertTable(facts, [0, 1, 2, 3])
        let preparation = try host.explain(facts, channels: [0]).preparation
        XCTAssertTrue(preparation.excludeFromRSS)
        XCTAssertFalse(preparation.needsNtuple)
        XCTAssertFalse(preparation.steeringRequired)
        XCTAssertEqual(preparation.minXskmapEntries, 0)
        XCTAssertEqual(
            preparation.message,
            "On mlx5 an AF_XDP socket reads its channel's queue in RSS, so exclude those channels from RSS (ethtool -X eth2 weight ..., 0 for them) or pass non-matching traffic to the kernel in XDP.")

        let lease = try host.acquire(facts)
        defer { lease.release() }
        XCTAssertEqual(
            try lease.checkChannelsChange(facts, proposed: ChannelCounts(combined: 8)),
            ChannelChangeVerdict(allowed: true, message: ""))
    }

    func testOldSchemeChannelChangeVetoedWhileZeroCopySocketsAreLive() throws {
        let live = mlx5Facts(kernel: "5.15.0-91-generic", sysfsRxQueues: 8, zeroCopySockets: 2)
        let lease = try host.acquire(live)
        defer { lease.release() }
        XCTAssertEqual(lease.plugin.name, "mlx5")
        XCTAssertEqual(
            try lease.checkChannelsChange(live, proposed: ChannelCounts(combined: 8)),
            ChannelChangeVerdict(
                allowed: false,
                message: "mlx5 before Linux 6.1 refuses every channel change on eth2 while 2 zero-copy AF_XDP sockets are bound (EINVAL, \"AF_XDP is active\"); close the sockets (stop the pipeline) first."))
        XCTAssertEqual(
            try lease.checkChannelsChange(live, proposed: ChannelCounts(combined: 4)),
            ChannelChangeVerdict(allowed: true, message: ""), "setting the same counts changes nothing")

        XCTAssertFalse(try host.checkChannelsChange(live, proposed: ChannelCounts(combined: 8)).allowed)

        let idle = mlx5Facts(kernel: "5.15.0-91-generic", sysfsRxQueues: 8, zeroCopySockets: 0)
        XCTAssertEqual(
            try lease.checkChannelsChange(idle, proposed: ChannelCounts(combined: 2)),
            ChannelChangeVerdict(
                allowed: true,
                message: "On mlx5 before Linux 6.1 changing the channel count of eth2 moves its zero-copy AF_XDP queues, so sockets and steering rules must be mapped again."))
    }

    func testOldSchemeInCopyModeUsesRegularQueues() throws {
        let facts = mlx5Facts(kernel: "5.15.0-91-generic", sysfsRxQueues: 8, zeroCopyRequested: false)
        try assertTable(facts, [0, 1, 2, 3])
        let explanation = try host.explain(facts, channels: [2])
        XCTAssertEqual(
            explanation.mappings[0].message,
            "In copy mode mlx5 before Linux 6.1 delivers channel 2 on its regular queue 2; only zero-copy sockets would use queue 6.")
        XCTAssertTrue(explanation.preparation.excludeFromRSS)
        XCTAssertFalse(explanation.preparation.needsNtuple)
    }

    func testUndecidableSchemeAndMissingChannelAreRefused() throws {
        let unknown = mlx5Facts(kernel: "", sysfsRxQueues: 6)
        try assertMlx5SchemeUndetermined(
            host, unknown, because: "sysfs shows 6 rx queues for 4 channels and kernel release '' has no version")
        let lease = try host.acquire(unknown)
        defer { lease.release() }
        XCTAssertThrowsError(try lease.mapChannel(0, facts: unknown)) { error in
            guard case .hookRefused(plugin: "mlx5", hook: "map_channel", _)? = error as? PluginHostError else {
                return XCTFail("unexpected \(error)")
            }
        }
        XCTAssertThrowsError(try host.explain(mlx5Facts(kernel: "5.15.0", sysfsRxQueues: 8), channels: [4])) { error in
            XCTAssertEqual(
                error as? PluginHostError,
                .hookRefused(
                    plugin: "mlx5", hook: "map_channel",
                    message: "Channel 4 does not exist on eth2, which has 4 channels."))
        }
    }

    func testOtherDriversGetGeneric() throws {
        var facts = mlx5Facts(kernel: "5.15.0", sysfsRxQueues: 8)
        facts.driver = "ixgbe"
        let selection = try host.select(facts)
        XCTAssertEqual(selection.plugin.name, "generic")
        XCTAssertEqual(selection.scores.map(\.plugin), ["generic", "mlx5"])
        XCTAssertEqual(selection.scores.map(\.score), [1, 0])
        XCTAssertEqual(
            selection.scores[0].reason, "generic maps channel i to queue i and is the fallback for any driver (ixgbe).")
        XCTAssertEqual(try host.explain(facts, channels: [2]).mappings[0].bindQueue, 2)
    }

    /// The what-if an operator runs before deploying on an mlx5 box.
    func testWhatIfOldAndNewSchemeForChannelTwo() throws {
        let old = DriverFacts.synthetic(driver: "mlx5_core", kernelRelease: "5.15.0", channels: 4, sysfsRxQueues: 8)
        let oldPlan = try host.explain(old, channels: [2])
        XCTAssertEqual(oldPlan.facts.interface, "what-if")
        XCTAssertTrue(oldPlan.facts.synthetic)
        XCTAssertEqual(oldPlan.selection.plugin.name, "mlx5")
        XCTAssertEqual(oldPlan.mappings[0].bindQueue, 6)
        XCTAssertEqual(oldPlan.mappings[0].xskmapKey, 6)
        XCTAssertEqual(oldPlan.mappings[0].steerQueue, 6)

        let new = DriverFacts.synthetic(driver: "mlx5_core", kernelRelease: "6.8.0", channels: 4, sysfsRxQueues: 4)
        let newPlan = try host.explain(new, channels: [2])
        XCTAssertEqual(newPlan.mappings[0].bindQueue, 2)
        XCTAssertEqual(newPlan.mappings[0].xskmapKey, 2)
        XCTAssertEqual(newPlan.mappings[0].steerQueue, 2)

        // The answer is JSON for the control socket.
        let json = try JSONEncoder().encode(oldPlan)
        let decoded = try JSONDecoder().decode(PluginExplanation.self, from: json)
        XCTAssertEqual(decoded, oldPlan)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: json) as? [String: Any])
        let mapping = try XCTUnwrap((object["mappings"] as? [[String: Any]])?.first)
        XCTAssertEqual(mapping["steer_queue"] as? Int, 6)
    }
}
