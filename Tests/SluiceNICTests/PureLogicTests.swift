import SluiceNIC
import XCTest

/// Flow-hash letters, feature aliases, per-queue statistics names and range
/// checks: no privileges needed.
final class PureLogicTests: XCTestCase {
    func testFlowHashLettersMatchEthtoolBits() throws {
        let fields = try FlowHashFields(letters: "sdfn")
        XCTAssertEqual(fields.rawValue, 0xF0)  // RXH_IP_SRC|RXH_IP_DST|RXH_L4_B_0_1|RXH_L4_B_2_3
        XCTAssertEqual(fields.letters, "sdfn")
        XCTAssertEqual(try FlowHashFields(letters: "nfds"), fields)
        XCTAssertEqual(try FlowHashFields(letters: "mvt").rawValue, 0x0E)
        XCTAssertEqual(FlowHashFields.discard.rawValue, 1 << 31)
        XCTAssertThrowsError(try FlowHashFields(letters: "sdx")) {
            XCTAssertEqual($0 as? NICError, .invalidArgument("rx-flow-hash field letter 'x' is not one of m v t s d f n r"))
        }
        XCTAssertEqual(String(decoding: try JSONEncoder().encode([fields]), as: UTF8.self), #"["sdfn"]"#)
    }

    let vethFeatures = [
        "rx-checksum", "tx-checksum-ipv4", "tx-checksum-ip-generic", "tx-checksum-ipv6",
        "tx-scatter-gather", "tx-scatter-gather-fraglist", "tx-tcp-segmentation", "tx-tcp-ecn-segmentation",
        "tx-tcp-mangleid-segmentation", "tx-tcp6-segmentation", "tx-udp-segmentation", "rx-gro", "rx-lro",
        "rx-ntuple-filter", "rx-hashing", "rx-gro-list",
    ]

    func testFeatureNamesAcceptKernelDisplayAndShortNames() throws {
        for name in ["rx-ntuple-filter", "ntuple-filters", "ntuple", "NTUPLE"] {
            XCTAssertEqual(try FeatureNames.resolve(name, available: vethFeatures, interface: "eth0"), ["rx-ntuple-filter"])
        }
        XCTAssertEqual(try FeatureNames.resolve("gro", available: vethFeatures, interface: "eth0"), ["rx-gro"])
        XCTAssertEqual(try FeatureNames.resolve("generic-receive-offload", available: vethFeatures, interface: "eth0"), ["rx-gro"])
        XCTAssertEqual(try FeatureNames.resolve("tso", available: vethFeatures, interface: "eth0"),
                       ["tx-tcp-segmentation", "tx-tcp-ecn-segmentation", "tx-tcp-mangleid-segmentation", "tx-tcp6-segmentation"])
        XCTAssertEqual(try FeatureNames.resolve("sg", available: vethFeatures, interface: "eth0"),
                       ["tx-scatter-gather", "tx-scatter-gather-fraglist"])
        XCTAssertEqual(try FeatureNames.resolve("rx-gro-list", available: vethFeatures, interface: "eth0"), ["rx-gro-list"])
        XCTAssertThrowsError(try FeatureNames.resolve("warp-drive", available: vethFeatures, interface: "vapp")) {
            XCTAssertEqual($0 as? NICError, .invalidArgument("unknown feature warp-drive on vapp"))
        }
        XCTAssertEqual(FeatureNames.displayName("rx-ntuple-filter"), "ntuple-filters")
        XCTAssertEqual(FeatureNames.displayName("rx-gro-list"), "rx-gro-list")
    }

    func testPerQueueCounterNamesOfCommonDrivers() {
        let cases: [(String, QueueDirection, UInt32, String)] = [
            ("rx_queue_0_xdp_packets", .rx, 0, "xdp_packets"),  // veth
            ("tx_queue_12_xdp_xmit", .tx, 12, "xdp_xmit"),
            ("rx-3.packets", .rx, 3, "packets"),  // i40e
            ("rxq_2_bytes", .rx, 2, "bytes"),
            ("rx5_xsk_packets", .rx, 5, "xsk_packets"),  // mlx5
            ("tx0_bytes", .tx, 0, "bytes"),
        ]
        for (name, direction, queue, field) in cases {
            let parsed = DriverStatistics.queueCounterName(name)
            XCTAssertEqual(parsed?.0, direction, name)
            XCTAssertEqual(parsed?.1, queue, name)
            XCTAssertEqual(parsed?.2, field, name)
        }
        for name in ["rx_packets", "tx_errors", "peer_ifindex", "rx_queue_x_packets", "rx_queue_1_", "rx99999999999_packets"] {
            XCTAssertNil(DriverStatistics.queueCounterName(name), name)
        }
        let stats = DriverStatistics(counters: [
            DriverCounter(name: "peer_ifindex", value: 7),
            DriverCounter(name: "rx_queue_1_xdp_packets", value: 10),
            DriverCounter(name: "rx_queue_0_xdp_packets", value: 3),
            DriverCounter(name: "rx_queue_1_xdp_bytes", value: 600),
        ])
        XCTAssertEqual(stats.queues.map(\.queue), [0, 1])
        XCTAssertEqual(stats.queue(.rx, 1, "xdp_packets"), 10)
        XCTAssertEqual(stats.queue(.rx, 1, "xdp_bytes"), 600)
        XCTAssertEqual(stats["peer_ifindex"], 7)
    }

    func testRSSEqualTable() {
        XCTAssertEqual(RSSConfiguration.equalTable(size: 8, queues: 3), [0, 1, 2, 0, 1, 2, 0, 1])
        XCTAssertEqual(RSSConfiguration.equalTable(size: 4, queues: 0), [])
    }

    func testErrorCodesAndMessages() {
        XCTAssertEqual(NICError.notFound(interface: "vapp").code, "not_found")
        XCTAssertEqual(NICError.invalidArgument("x").code, "invalid_argument")
        let unsupported = NICError.unsupported(interface: "vapp", driver: "veth", operation: .ntupleAdd)
        XCTAssertEqual(unsupported.code, "unsupported")
        XCTAssertEqual(unsupported.description, "veth does not support ntuple rules (ethtool -N) on vapp")
        let kernel = NICError.kernel(operation: .channelsSet, interface: "vapp", errno: 22, extack: "requested channel count exceeds maximum")
        XCTAssertEqual(kernel.code, "invalid_argument")
        XCTAssertEqual(kernel.description,
                       "ethtool -L on vapp failed: Invalid argument (errno 22): requested channel count exceeds maximum")
    }
}
