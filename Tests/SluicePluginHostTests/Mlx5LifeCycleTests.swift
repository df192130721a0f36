import SluicePluginHost
import SluiceTestSupport
import XCTest

/// One ConnectX device with 4 channels walked through its life, as the real
/// libsluice_mlx5.so answers through the host. The facts are what ethtool,
/// sysfs and sock_diag show in each state: on mlx5 before Linux 6.1, sysfs
/// always has 8 rx queues (4 regular, 4 XSK) and 4 tx queues, and while any
/// zero-copy socket is bound ethtool reports 8 channels (maximum 126).
final class Mlx5LifeCycleTests: XCTestCase {
    private var directory: PluginDirectory!
    private var host: PluginHost!

    override func setUpWithError() throws {
        directory = try PluginDirectory.withShippedPlugins()
        host = directory.host()
    }

    override func tearDown() {
        directory?.remove()
    }

    private static let oldKernel = "5.15.0-91-generic"
    private static let newKernel = "6.8.0-49-generic"

    private static func facts(
        kernel: String = oldKernel, ethtool: UInt32, ethtoolMax: UInt32, sysfsRx: UInt32, sysfsTx: UInt32 = 4,
        zeroCopySockets: UInt32, zeroCopyRequested: Bool = true, xdpMode: XDPMode = .native
    ) -> DriverFacts {
        DriverFacts(
            interface: "eth2", driver: "mlx5_core", driverVersion: kernel,
            firmwareVersion: "16.35.2000 (MT_0000000008)", kernelRelease: kernel,
            channels: ChannelCounts(combined: ethtool), maxChannels: ChannelCounts(combined: ethtoolMax),
            sysfsRxQueues: sysfsRx, sysfsTxQueues: sysfsTx, xdpAttached: zeroCopySockets > 0, xdpMode: xdpMode,
            zeroCopyRequested: zeroCopyRequested, zeroCopySockets: zeroCopySockets)
    }

    private struct Step {
        var name: String
        var facts: DriverFacts
        /// bind = steer = XSKMAP key for channels 0-3.
        var queues: [UInt32]
        /// The reported channels beyond the device's 4 (refused), if any.
        var doubled: Bool
        /// Channel counts proposed and whether the plugin allows them.
        var changes: [(ChannelCounts, Bool)]
        var steeringRequired: Bool
        var excludeFromRSS: Bool
        var minXskmapEntries: UInt32
    }

    private static let doubledWhy =
        "ethtool reports 8 channels because mlx5 before Linux 6.1 doubles its channel counts while 4 zero-copy sockets are bound, and kernel 5.15.0-91-generic is before 6.1; the device has 4"

    private static let steps: [Step] = [
        Step(name: "configured, before start",
             facts: facts(ethtool: 4, ethtoolMax: 63, sysfsRx: 8, zeroCopySockets: 0, xdpMode: .none),
             queues: [4, 5, 6, 7], doubled: false,
             changes: [(ChannelCounts(combined: 4), true), (ChannelCounts(combined: 2), true)],
             steeringRequired: true, excludeFromRSS: false, minXskmapEntries: 8),
        Step(name: "zero-copy sockets bound on every channel",
             facts: facts(ethtool: 8, ethtoolMax: 126, sysfsRx: 8, zeroCopySockets: 4),
             queues: [4, 5, 6, 7], doubled: true,
             changes: [(ChannelCounts(combined: 8), false), (ChannelCounts(combined: 4), false),
                       (ChannelCounts(combined: 2), false)],
             steeringRequired: true, excludeFromRSS: false, minXskmapEntries: 8),
        Step(name: "copy fallback while another process holds zero-copy sockets",
             facts: facts(ethtool: 8, ethtoolMax: 126, sysfsRx: 8, zeroCopySockets: 4, zeroCopyRequested: false),
             queues: [0, 1, 2, 3], doubled: true,
             changes: [(ChannelCounts(combined: 8), false), (ChannelCounts(combined: 4), false)],
             steeringRequired: false, excludeFromRSS: true, minXskmapEntries: 0),
        Step(name: "XDP in skb mode while another process holds zero-copy sockets",
             facts: facts(ethtool: 8, ethtoolMax: 126, sysfsRx: 8, zeroCopySockets: 4, xdpMode: .skb),
             queues: [0, 1, 2, 3], doubled: true,
             changes: [(ChannelCounts(combined: 2), false)],
             steeringRequired: false, excludeFromRSS: true, minXskmapEntries: 0),
        Step(name: "XDP in skb mode alone",
             facts: facts(ethtool: 4, ethtoolMax: 63, sysfsRx: 8, zeroCopySockets: 0, xdpMode: .skb),
             queues: [0, 1, 2, 3], doubled: false,
             changes: [(ChannelCounts(combined: 2), true)],
             steeringRequired: false, excludeFromRSS: true, minXskmapEntries: 0),
        Step(name: "stopped, sockets closed",
             facts: facts(ethtool: 4, ethtoolMax: 63, sysfsRx: 8, zeroCopySockets: 0),
             queues: [4, 5, 6, 7], doubled: false,
             changes: [(ChannelCounts(combined: 4), true), (ChannelCounts(combined: 8), true)],
             steeringRequired: true, excludeFromRSS: false, minXskmapEntries: 8),
        Step(name: "Linux 6.1+, zero-copy sockets bound",
             facts: facts(kernel: newKernel, ethtool: 4, ethtoolMax: 63, sysfsRx: 4, zeroCopySockets: 4),
             queues: [0, 1, 2, 3], doubled: false,
             changes: [(ChannelCounts(combined: 8), true)],
             steeringRequired: false, excludeFromRSS: true, minXskmapEntries: 0),
    ]

    func testFourChannelDeviceThroughItsLifeCycle() throws {
        for step in Self.steps {
            let facts = step.facts
            // The default plan covers the device's channels, not the doubled count.
            let explanation = try host.explain(facts)
            XCTAssertEqual(explanation.selection.plugin.name, "mlx5", step.name)
            XCTAssertEqual(explanation.mappings.map(\.channel), [0, 1, 2, 3], step.name)
            XCTAssertEqual(explanation.mappings.map(\.bindQueue), step.queues, step.name)
            XCTAssertEqual(explanation.mappings.map(\.steerQueue), step.queues, step.name)
            XCTAssertEqual(explanation.mappings.map(\.xskmapKey), step.queues, step.name)

            let refused: [UInt32] = step.doubled ? [4, 5, 6, 7] : [4]
            for channel in refused {
                XCTAssertThrowsError(try host.explain(facts, channels: [channel]), "\(step.name): channel \(channel)") { error in
                    let expected = step.doubled
                        ? "Channel \(channel) does not exist on eth2: \(Self.doubledWhy), so use a channel below 4."
                        : "Channel \(channel) does not exist on eth2, which has 4 channels."
                    XCTAssertEqual(
                        error as? PluginHostError,
                        .hookRefused(plugin: "mlx5", hook: "map_channel", message: expected), step.name)
                }
            }

            let preparation = explanation.preparation
            XCTAssertFalse(preparation.needsNtuple, "\(step.name): mlx5 must not ask for rx-ntuple-filter (aRFS)")
            XCTAssertEqual(preparation.steeringRequired, step.steeringRequired, step.name)
            XCTAssertEqual(preparation.excludeFromRSS, step.excludeFromRSS, step.name)
            XCTAssertEqual(preparation.minXskmapEntries, step.minXskmapEntries, step.name)
            XCTAssertEqual(preparation.receiveChannels, step.doubled ? 4 : nil, step.name)
            XCTAssertEqual(preparation.defaultChannels(for: facts), [0, 1, 2, 3], step.name)

            let lease = try host.acquire(facts)
            defer { lease.release() }
            XCTAssertEqual(try lease.mapChannels([0, 1, 2, 3], facts: facts).map(\.bindQueue), step.queues, step.name)
            for (proposed, allowed) in step.changes {
                let verdict = try lease.checkChannelsChange(facts, proposed: proposed)
                XCTAssertEqual(verdict.allowed, allowed, "\(step.name): \(proposed) \(verdict.message)")
                XCTAssertEqual(
                    try host.checkChannelsChange(facts, proposed: proposed), verdict, "\(step.name): \(proposed)")
            }
        }
    }

    func testDoubledCountsAreExplainedInEveryAnswer() throws {
        let bound = Self.steps[1].facts
        let explanation = try host.explain(bound, channels: [2])
        XCTAssertEqual(
            explanation.selection.scores[0].reason,
            "Driver mlx5_core on eth2 uses the pre-6.1 split queue scheme (XSK queues at channels+i): \(Self.doubledWhy).")
        XCTAssertEqual(
            explanation.mappings[0].message,
            "mlx5 before Linux 6.1 serves zero-copy AF_XDP for channel 2 on queue 6, so the socket, the steering action and the XSKMAP key all use 6; \(Self.doubledWhy).")
        XCTAssertEqual(
            explanation.preparation.message,
            "On mlx5 before Linux 6.1 the zero-copy AF_XDP queues of eth2 (4-7) are outside RSS, so only traffic that ntuple rules steer to them arrives; Sluice leaves rx-ntuple-filter off because mlx5 takes `ethtool -N eth2 ... action 4` rules without it and turning it on enables aRFS, which moves the kernel's own flows (VLAN matches take only the mask 0x0fff).")
        XCTAssertEqual(
            try host.checkChannelsChange(bound, proposed: ChannelCounts(combined: 8)),
            ChannelChangeVerdict(
                allowed: false,
                message: "mlx5 before Linux 6.1 refuses every channel change on eth2 while 4 zero-copy AF_XDP sockets are bound (EINVAL, \"AF_XDP is active\"), and the 8 channels ethtool shows are its doubled count (the device has 4), so not even those can be set; close the sockets (stop the pipeline) first."))

        let copy = Self.steps[2].facts
        XCTAssertEqual(
            try host.explain(copy, channels: [2]).mappings[0].message,
            "In copy mode mlx5 before Linux 6.1 delivers channel 2 on its regular queue 2; only zero-copy sockets would use queue 6; \(Self.doubledWhy).")
        let skb = Self.steps[3].facts
        XCTAssertEqual(
            try host.explain(skb, channels: [1]).mappings[0].message,
            "With XDP in skb mode AF_XDP runs in copy mode, and mlx5 before Linux 6.1 delivers channel 1 on its regular queue 1; only zero-copy sockets would use queue 5; \(Self.doubledWhy).")

        let new = Self.steps[6].facts
        XCTAssertEqual(
            try host.select(new).scores[0].reason,
            "Driver mlx5_core on eth2 uses the 6.1+ identity queue scheme: sysfs shows 4 rx queues for 4 channels while 4 zero-copy sockets are bound, and kernel 6.8.0-49-generic is at or after 6.1, where mlx5 reports its channel counts as they are.")
    }

    /// A 6.x version number on a kernel with the old driver (sysfs showed the
    /// split layout before any socket was bound): the tx queues still prove the
    /// doubling once zero-copy sockets are bound.
    func testTxQueuesProveDoublingWhateverTheRelease() throws {
        let idle = Self.facts(kernel: "6.5.0-custom", ethtool: 4, ethtoolMax: 63, sysfsRx: 8, zeroCopySockets: 0)
        XCTAssertEqual(try host.explain(idle).mappings.map(\.bindQueue), [4, 5, 6, 7])
        let bound = Self.facts(kernel: "6.5.0-custom", ethtool: 8, ethtoolMax: 126, sysfsRx: 8, zeroCopySockets: 2)
        try assertSplitSchemeOnFourChannels(
            bound,
            reason: "Driver mlx5_core on eth2 uses the pre-6.1 split queue scheme (XSK queues at channels+i): ethtool reports 8 channels because mlx5 before Linux 6.1 doubles its channel counts while 2 zero-copy sockets are bound, and sysfs shows only 4 tx queues where every mlx5 channel has at least one; the device has 4.")
        XCTAssertFalse(try host.checkChannelsChange(bound, proposed: ChannelCounts(combined: 4)).allowed)
    }

    /// A count mlx5 before 6.1 cannot show while doubling: refuse rather than guess.
    func testOddCountWhileBoundOnOldKernelIsUndeterminable() throws {
        let odd = Self.facts(ethtool: 7, ethtoolMax: 63, sysfsRx: 7, sysfsTx: 7, zeroCopySockets: 2)
        try assertMlx5SchemeUndetermined(
            host, odd,
            because: "ethtool reports 7 channels while 2 zero-copy sockets are bound and kernel 5.15.0-91-generic is before 6.1, but mlx5 before Linux 6.1 would report an even, doubled count")
    }

    /// sysfs unknown (0): the release decides, and zero-copy sockets on an old
    /// kernel still mean doubled counts.
    func testKernelReleaseDecidesDoublingWhenSysfsIsUnknown() throws {
        let bound = Self.facts(ethtool: 8, ethtoolMax: 126, sysfsRx: 0, sysfsTx: 0, zeroCopySockets: 4)
        try assertSplitSchemeOnFourChannels(
            bound,
            reason: "Driver mlx5_core on eth2 uses the pre-6.1 split queue scheme (XSK queues at channels+i): ethtool reports 8 channels because mlx5 before Linux 6.1 doubles its channel counts while 4 zero-copy sockets are bound, and kernel 5.15.0-91-generic is before 6.1 and sysfs (0 rx queues) does not tell; the device has 4.")
    }

    /// mlx5 read as the pre-6.1 split scheme on a 4-channel device: XSK
    /// queues 4–7, 4 receive channels, and the selection's reason word for word.
    private func assertSplitSchemeOnFourChannels(
        _ facts: DriverFacts, reason: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let explanation = try host.explain(facts)
        XCTAssertEqual(explanation.mappings.map(\.bindQueue), [4, 5, 6, 7], file: file, line: line)
        XCTAssertEqual(explanation.preparation.receiveChannels, 4, file: file, line: line)
        XCTAssertEqual(explanation.selection.scores[0].reason, reason, file: file, line: line)
    }
}
