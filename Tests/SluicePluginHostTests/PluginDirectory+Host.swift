import Logging
import SluicePluginHost
import SluiceTestSupport

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
