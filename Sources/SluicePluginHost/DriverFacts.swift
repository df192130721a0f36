@_exported import SluiceProtocol
import CSluiceDriverABI
import SluiceProtocol
import SluiceSystem

#if canImport(Glibc)
import Glibc
#endif

extension XDPMode {
    var abiValue: UInt32 {
        switch self {
        case .none: UInt32(SLUICE_XDP_MODE_NONE.rawValue)
        case .skb: UInt32(SLUICE_XDP_MODE_SKB.rawValue)
        case .native: UInt32(SLUICE_XDP_MODE_NATIVE.rawValue)
        case .offload: UInt32(SLUICE_XDP_MODE_OFFLOAD.rawValue)
        }
    }
}

extension DriverFacts {
    /// The largest channel or queue count facts may carry.
    public static let maxQueueCount: UInt32 = 65_536

    /// The name synthetic facts use for their (nonexistent) interface.
    public static let syntheticInterface = "what-if"

    /// What-if facts: `channels` combined channels on a `driver` NIC under
    /// kernel `kernelRelease`, with `sysfsRxQueues` rx queues in sysfs
    /// (0 = unknown, so plugins must decide from the kernel release).
    public static func synthetic(
        driver: String, kernelRelease: String, channels: UInt32, sysfsRxQueues: UInt32
    ) -> DriverFacts {
        DriverFacts(
            interface: syntheticInterface, driver: driver, kernelRelease: kernelRelease,
            channels: ChannelCounts(combined: channels), maxChannels: ChannelCounts(combined: channels),
            sysfsRxQueues: sysfsRxQueues, synthetic: true)
    }

    /// Facts for a real interface: the caller supplies what ethtool said,
    /// this adds the sysfs queue counts and the running kernel's release.
    public static func gather(
        interface: String, driver: String, driverVersion: String = "",
        firmwareVersion: String = "", channels: ChannelCounts,
        maxChannels: ChannelCounts = ChannelCounts(),
        sysfsNetRoot: String = NetworkDevice.sysfsRoot
    ) throws(PluginHostError) -> DriverFacts {
        guard let name = try? InterfaceName(interface) else {
            throw .invalidFacts(InterfaceName.problem(interface) ?? "invalid interface name '\(interface)'")
        }
        let queues: (rx: Int, tx: Int)
        do {
            queues = try NetworkDevice.queueCounts(name, sysfsRoot: sysfsNetRoot)
        } catch {
            throw .sysfsUnreadable(
                interface: interface, path: NetworkDevice.queuesDirectory(name, sysfsRoot: sysfsNetRoot), error: error)
        }
        return DriverFacts(
            interface: interface, driver: driver, driverVersion: driverVersion,
            firmwareVersion: firmwareVersion, kernelRelease: KernelFiles.kernelRelease(),
            channels: channels, maxChannels: maxChannels,
            // A queue count beyond UInt32 cannot happen; the listing limit bounds it.
            sysfsRxQueues: UInt32(truncatingIfNeeded: queues.rx), sysfsTxQueues: UInt32(truncatingIfNeeded: queues.tx))
    }

    /// Why these facts cannot be handed to a plugin, or nil when they can:
    /// every string must fit its fixed-size field in the C struct.
    public var problem: String? {
        if let problem = InterfaceName.problem(interface) { return problem }
        let strings: [(String, String, Int)] = [
            ("driver", driver, Int(SLUICE_DRIVER_LEN)),
            ("driver version", driverVersion, Int(SLUICE_DRIVER_VERSION_LEN)),
            ("firmware version", firmwareVersion, Int(SLUICE_FIRMWARE_VERSION_LEN)),
            ("kernel release", kernelRelease, Int(SLUICE_KERNEL_RELEASE_LEN)),
        ]
        for (what, value, capacity) in strings {
            if value.utf8.count >= capacity {
                return "\(what) '\(value.prefix(80))' is \(value.utf8.count) bytes; the plugin ABI allows \(capacity - 1)"
            }
            if value.utf8.contains(0) { return "\(what) contains a NUL byte" }
        }
        let counts: [(String, UInt32)] = [
            ("rx channels", channels.rx), ("tx channels", channels.tx), ("combined channels", channels.combined),
            ("max rx channels", maxChannels.rx), ("max tx channels", maxChannels.tx),
            ("max combined channels", maxChannels.combined),
            ("sysfs rx queues", sysfsRxQueues), ("sysfs tx queues", sysfsTxQueues),
        ]
        // No NIC comes close; the cap keeps plugin arithmetic (nch + i) far from wrapping.
        if let (what, value) = counts.first(where: { $0.1 > Self.maxQueueCount }) {
            return "\(what) \(value) exceeds \(Self.maxQueueCount)"
        }
        return nil
    }

    /// Runs `body` with these facts as the C struct. Call only after
    /// ``problem`` returned nil: strings are copied into fixed fields.
    func withABIFacts<R, E: Error>(
        _ body: (UnsafePointer<sluice_driver_facts>) throws(E) -> R
    ) throws(E) -> R {
        try withZeroedABIStruct(sluice_driver_facts.self, size: ABISize.facts) { (facts) throws(E) -> R in
            copy(interface, into: &facts.pointee.ifname)
            copy(driver, into: &facts.pointee.driver)
            copy(driverVersion, into: &facts.pointee.driver_version)
            copy(firmwareVersion, into: &facts.pointee.firmware_version)
            copy(kernelRelease, into: &facts.pointee.kernel_release)
            facts.pointee.rx_channels = channels.rx
            facts.pointee.tx_channels = channels.tx
            facts.pointee.combined_channels = channels.combined
            facts.pointee.max_rx_channels = maxChannels.rx
            facts.pointee.max_tx_channels = maxChannels.tx
            facts.pointee.max_combined_channels = maxChannels.combined
            facts.pointee.sysfs_rx_queues = sysfsRxQueues
            facts.pointee.sysfs_tx_queues = sysfsTxQueues
            facts.pointee.xdp_attached = xdpAttached ? 1 : 0
            facts.pointee.xdp_mode = xdpMode.abiValue
            facts.pointee.zerocopy_requested = zeroCopyRequested ? 1 : 0
            facts.pointee.zerocopy_sockets = zeroCopySockets
            return try body(UnsafePointer(facts))
        }
    }
}

/// Copies `string` into a fixed C char array, always NUL-terminated
/// (truncating; ``DriverFacts/problem`` rejects strings that do not fit).
private func copy<Field>(_ string: String, into field: inout Field) {
    withUnsafeMutableBytes(of: &field) { raw in
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        let bytes = Array(string.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes)
    }
}
