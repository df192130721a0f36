import SluicePluginHost
import SluiceTestSupport
import XCTest

/// The real libsluice_generic.so on drivers whose zero-copy AF_XDP queue
/// needs an rx and a tx ring of the same index: a zero-copy bind beyond them
/// fails in the kernel with a bare EINVAL, so the plugin refuses it first.
final class GenericZeroCopyTests: XCTestCase {
    private var directory: PluginDirectory!
    private var host: PluginHost!

    override func setUpWithError() throws {
        directory = try PluginDirectory()
        try directory.installBuilt("libsluice_generic.so")
        host = directory.host()
    }

    override func tearDown() {
        directory?.remove()
    }

    private func facts(
        driver: String, channels: ChannelCounts, max: ChannelCounts, sysfsRx: UInt32, sysfsTx: UInt32,
        zeroCopyRequested: Bool = true, xdpMode: XDPMode = .native
    ) -> DriverFacts {
        DriverFacts(
            interface: "eth0", driver: driver, kernelRelease: "6.12.0", channels: channels, maxChannels: max,
            sysfsRxQueues: sysfsRx, sysfsTxQueues: sysfsTx, xdpMode: xdpMode,
            zeroCopyRequested: zeroCopyRequested)
    }

    private func assertRefused(
        _ facts: DriverFacts, channel: UInt32, _ message: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try host.explain(facts, channels: [channel]), file: file, line: line) { error in
            XCTAssertEqual(
                error as? PluginHostError, .hookRefused(plugin: "generic", hook: "map_channel", message: message),
                file: file, line: line)
        }
    }

    func testZeroCopyQueueIdsMustBeBelowTheCombinedChannels() throws {
        // ice with 2 rx-only channels: 6 receive channels, but only 4 with a tx ring.
        let ice = facts(
            driver: "ice", channels: ChannelCounts(rx: 2, combined: 4), max: ChannelCounts(rx: 64, tx: 64, combined: 64),
            sysfsRx: 6, sysfsTx: 4)
        XCTAssertEqual(try host.explain(ice, channels: [0, 3]).mappings.map(\.bindQueue), [0, 3])
        for channel: UInt32 in [4, 5] {
            assertRefused(
                ice, channel: channel,
                "ice on eth0 binds zero-copy AF_XDP sockets only to queues below both its 6 rx and its 4 tx queues (4 combined channels, 2 rx-only, 0 tx-only), so channel \(channel) would fail with EINVAL; add combined channels (`ethtool -L eth0 combined \(channel + 1)`) or use a channel below 4.")
        }
        // Copy mode, forced or because XDP runs in skb mode, reads any rx queue.
        var copy = ice
        copy.zeroCopyRequested = false
        XCTAssertEqual(try host.explain(copy, channels: [5]).mappings[0].bindQueue, 5)
        var skb = ice
        skb.xdpMode = .skb
        XCTAssertEqual(try host.explain(skb, channels: [4, 5]).mappings.map(\.xskmapKey), [4, 5])

        let i40e = facts(
            driver: "i40e", channels: ChannelCounts(combined: 4), max: ChannelCounts(combined: 8),
            sysfsRx: 4, sysfsTx: 4)
        XCTAssertEqual(try host.explain(i40e).mappings.map(\.steerQueue), [0, 1, 2, 3])
        assertRefused(
            i40e, channel: 4,
            "i40e on eth0 binds zero-copy AF_XDP sockets only to queues below its 4 combined channels, so channel 4 would fail with EINVAL; add combined channels (`ethtool -L eth0 combined 5`) or use a channel below 4.")
        var full = i40e
        full.maxChannels = ChannelCounts(combined: 4)
        assertRefused(
            full, channel: 4,
            "i40e on eth0 binds zero-copy AF_XDP sockets only to queues below its 4 combined channels, so channel 4 would fail with EINVAL; at most 4 combined channels are possible, so use a channel below 4.")
        let preparation = try host.explain(i40e, channels: []).preparation
        XCTAssertTrue(preparation.combinedChannels)
        XCTAssertEqual(
            preparation.message,
            "i40e takes AF_XDP queues from combined channels (queue pairs), so set them with `ethtool -L eth0 combined N`.")

        // virtio_net: combined is the current queue pairs.
        let virtio = facts(
            driver: "virtio_net", channels: ChannelCounts(combined: 2), max: ChannelCounts(combined: 8),
            sysfsRx: 2, sysfsTx: 2)
        XCTAssertEqual(try host.explain(virtio).mappings.map(\.bindQueue), [0, 1])
        assertRefused(
            virtio, channel: 3,
            "virtio_net on eth0 binds zero-copy AF_XDP sockets only to queues below its 2 combined channels, so channel 3 would fail with EINVAL; add combined channels (`ethtool -L eth0 combined 4`) or use a channel below 2.")
        var virtioCopy = virtio
        virtioCopy.zeroCopyRequested = false
        assertRefused(
            virtioCopy, channel: 3, "Channel 3 does not exist on eth0: queue ids must be below its 2 receive channels.")

        // veth has no zero-copy: unchanged (its refusals: PluginLoaderTests).
        XCTAssertEqual(try host.explain(vethFacts(rxQueues: 4)).mappings.map(\.bindQueue), [0, 1, 2, 3])
    }

    /// Every driver of issue 13's finding 6, by the name `ethtool -i` gives:
    /// a zero-copy queue id at or above the channels with a tx queue is
    /// refused naming the driver and EINVAL, the one below is bound, and
    /// copy mode reads the rx-only channel.
    func testEveryDriverWithQueuePairZeroCopyRefusesAnRxOnlyChannel() throws {
        let drivers = [("ice", "ice"), ("i40e", "i40e"), ("ixgbe", "ixgbe"), ("igc", "igc"), ("virtio_net", "virtio_net"),
                       ("st_gmac", "stmmac"), ("st_xgmac", "stmmac"), ("st_mac100", "stmmac")]
        for (driver, family) in drivers {
            let withRxOnly = facts(
                driver: driver, channels: ChannelCounts(rx: 2, combined: 4), max: ChannelCounts(rx: 8, tx: 8, combined: 8),
                sysfsRx: 6, sysfsTx: 4)
            XCTAssertEqual(try host.explain(withRxOnly, channels: [3]).mappings.map(\.bindQueue), [3], driver)
            XCTAssertThrowsError(try host.explain(withRxOnly, channels: [4]), driver) { error in
                guard case .hookRefused(plugin: "generic", hook: "map_channel", let message)? = error as? PluginHostError else {
                    return XCTFail("\(driver): \(error)")
                }
                XCTAssertTrue(message.hasPrefix("\(family) on eth0 binds zero-copy AF_XDP sockets only to queues below both its 6 rx and its 4 tx queues"), message)
                XCTAssertTrue(message.contains("channel 4 would fail with EINVAL"), message)
            }
            var copy = withRxOnly
            copy.zeroCopyRequested = false
            XCTAssertEqual(try host.explain(copy, channels: [5]).mappings.map(\.bindQueue), [5], driver)
        }
    }

    /// stmmac reports rx and tx channels, no combined ones (`ethtool -i`: st_gmac).
    func testStmmacNeedsAnRxAndATxChannel() throws {
        let stmmac = facts(
            driver: "st_gmac", channels: ChannelCounts(rx: 4, tx: 2), max: ChannelCounts(rx: 8, tx: 8),
            sysfsRx: 4, sysfsTx: 2)
        XCTAssertEqual(try host.explain(stmmac, channels: [0, 1]).mappings.map(\.bindQueue), [0, 1])
        assertRefused(
            stmmac, channel: 3,
            "stmmac on eth0 binds zero-copy AF_XDP sockets only to queues below both its 4 rx and its 2 tx channels, so channel 3 would fail with EINVAL; add channels (`ethtool -L eth0 rx 4 tx 4`) or use a channel below 2.")
        var copy = stmmac
        copy.zeroCopyRequested = false
        XCTAssertEqual(try host.explain(copy, channels: [3]).mappings[0].bindQueue, 3)
    }
}
