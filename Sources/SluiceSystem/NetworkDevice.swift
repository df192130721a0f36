#if canImport(Glibc)
import Glibc
#endif
import CSluiceShims
import SluiceProtocol
import SystemPackage

/// `ethtool -i`.
public struct DriverInfo: Codable, Equatable, Sendable {
    public var driver: String
    public var version: String
    public var firmwareVersion: String
    public var busInfo: String
    public var statisticsCount: UInt32
    public var privateFlagsCount: UInt32
}

/// What the kernel tells about one network device outside the ethtool
/// library proper: the NIC library, the plugin host and the data path all
/// read the queue counts and the driver here.
public enum NetworkDevice {
    public static let sysfsRoot = "/sys/class/net"

    /// `/sys/class/net/IF/queues` under `sysfsRoot`.
    public static func queuesDirectory(_ interface: InterfaceName, sysfsRoot: String = sysfsRoot) -> String {
        "\(sysfsRoot)/\(interface)/queues"
    }

    /// Counts the `rx-N` and `tx-N` entries in `/sys/class/net/IF/queues`:
    /// the netdev's real rx/tx queue counts, the limit for AF_XDP queue ids
    /// (old mlx5 counts its XSK queues too, so XSKMAP keys nch+i fit).
    /// Run in the interface's network namespace with /sys remounted
    /// (`ip netns exec`), or the counts belong to another interface.
    public static func queueCounts(
        _ interface: InterfaceName, sysfsRoot: String = sysfsRoot
    ) throws(SystemCallError) -> (rx: Int, tx: Int) {
        let names = try Directory.names(in: queuesDirectory(interface, sysfsRoot: sysfsRoot), limit: 65_536)
        return (names.lazy.filter { $0.hasPrefix("rx-") }.count, names.lazy.filter { $0.hasPrefix("tx-") }.count)
    }

    /// The interface's MTU (`/sys/class/net/IF/mtu`), or nil when it
    /// cannot be read.
    public static func mtu(_ interface: InterfaceName, sysfsRoot: String = sysfsRoot) -> Int? {
        KernelFiles.read("\(sysfsRoot)/\(interface)/mtu", limit: 32).flatMap { Int($0.trimmingTrailingNewlines()) }
    }

    /// `/sys/class/net/IF/<setting>` under `sysfsRoot`.
    public static func settingPath(_ interface: InterfaceName, _ setting: NetDeviceSetting, sysfsRoot: String = sysfsRoot) -> String {
        "\(sysfsRoot)/\(interface)/\(setting.rawValue)"
    }

    /// The decimal value of a NAPI setting in sysfs. Throws with the path
    /// (ENOENT: a kernel without the file).
    public static func setting(_ interface: InterfaceName, _ setting: NetDeviceSetting) throws(SystemCallError) -> UInt64 {
        let path = settingPath(interface, setting)
        guard let text = KernelFiles.read(path, limit: 64) else {
            throw SystemCallError(call: "reading \(path)", errno: Errno(rawValue: Glibc.errno))
        }
        guard let value = UInt64(text.trimmingTrailingNewlines()) else {
            throw SystemCallError(call: "reading \(path) (not a number: \(text.prefix(20)))", errno: .invalidArgument)
        }
        return value
    }

    /// Writes a NAPI setting (needs CAP_NET_ADMIN). Throws with the path.
    public static func setSetting(_ interface: InterfaceName, _ setting: NetDeviceSetting, to value: UInt64) throws(SystemCallError) {
        let path = settingPath(interface, setting)
        let fd = try retryingEINTR("opening \(path) for writing") { open(path, O_WRONLY | O_CLOEXEC) }
        defer { close(fd) }
        let text = Array("\(value)\n".utf8)
        let written = try retryingEINTR("writing \(value) to \(path)") {
            text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
        guard written == text.count else {
            throw SystemCallError(call: "writing \(value) to \(path) (short write)", errno: .ioError)
        }
    }

    /// A socket for the ethtool ioctl. ethtool(8) uses an AF_INET datagram
    /// socket: any socket would do, but this one exists on every kernel.
    public static func ethtoolSocket() throws(SystemCallError) -> Int32 {
        try retryingEINTR("socket(AF_INET, SOCK_DGRAM)") {
            socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
    }

    /// ETHTOOL_GDRVINFO through `socket` (an ``ethtoolSocket()``), or
    /// through one opened for the call.
    public static func driverInfo(_ interface: InterfaceName, socket: Int32? = nil) throws(SystemCallError) -> DriverInfo {
        let fd = if let socket { socket } else { try ethtoolSocket() }
        defer { if socket == nil { close(fd) } }
        var info = sluice_driver_info()
        try retryingEINTR("SIOCETHTOOL ethtool -i \(interface)") {
            sluice_ethtool_driver_info(fd, interface.rawValue, &info)
        }
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return DriverInfo(
            driver: text(info.driver), version: text(info.version),
            firmwareVersion: text(info.firmware_version), busInfo: text(info.bus_info),
            statisticsCount: info.statistics_count, privateFlagsCount: info.private_flags_count)
    }
}
