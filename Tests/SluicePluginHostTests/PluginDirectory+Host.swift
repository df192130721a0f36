import Logging
import SluicePluginHost
import SluiceTestSupport
import XCTest

extension PluginDirectory {
    func host() -> PluginHost {
        PluginHost(directory: path, logger: Logger(label: "test.plugins"))
    }
}

/// Facts for a veth with 4 rx queues (veth reports rx/tx channels, no combined).
func vethFacts(rxQueues: UInt32 = 4) -> DriverFacts {
    DriverFacts(
        interface: "sl-veth0", driver: "veth", driverVersion: "1.0", kernelRelease: "6.18.0",
        channels: ChannelCounts(rx: rxQueues, tx: rxQueues), maxChannels: ChannelCounts(rx: 16, tx: 16),
        sysfsRxQueues: rxQueues, sysfsTxQueues: rxQueues)
}

/// mlx5 cannot tell its queue scheme from `facts`: selection says why, and
/// `explain` fails in `prepare` with that reason and the commands to check.
func assertMlx5SchemeUndetermined(
    _ host: PluginHost, _ facts: DriverFacts, because why: String,
    file: StaticString = #filePath, line: UInt = #line
) throws {
    XCTAssertEqual(
        try host.select(facts).scores[0].reason,
        "Driver mlx5_core on \(facts.interface) uses an undetermined queue scheme: \(why).", file: file, line: line)
    XCTAssertThrowsError(try host.explain(facts, channels: [0]), file: file, line: line) { error in
        XCTAssertEqual(
            error as? PluginHostError,
            .hookRefused(
                plugin: "mlx5", hook: "prepare",
                message: "Cannot tell which mlx5 queue scheme \(facts.interface) uses because \(why); check `ethtool -l \(facts.interface)` and /sys/class/net/\(facts.interface)/queues."),
            file: file, line: line)
        XCTAssertEqual((error as? PluginHostError)?.controlErrorCode, "invalid_argument", file: file, line: line)
    }
}
