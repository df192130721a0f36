#if canImport(Glibc)
import Glibc
#endif
import CXDP
import SluiceProtocol
import SluiceSystem

/// The XDP program attached to an interface (libbpf `bpf_xdp_query`).
public struct XDPAttachment: Codable, Equatable, Sendable {
    public var programID: UInt32
    /// `native` (driver), `skb` (generic), `hw` (offloaded) or `multi`.
    public var mode: String
}

/// What `nic.list` shows for one interface.
public struct InterfaceInfo: Codable, Equatable, Sendable {
    public var name: String
    public var index: UInt32
    /// From ETHTOOL_GDRVINFO; empty for devices without a driver (lo).
    public var driver: String
    public var driverVersion: String
    public var firmwareVersion: String
    public var busInfo: String
    /// Entries `rx-*` / `tx-*` under /sys/class/net/IF/queues (on old mlx5
    /// with XSK, twice the channel count).
    public var rxQueues: Int
    public var txQueues: Int
    public var operState: String
    public var up: Bool
    public var mtu: UInt32
    public var macAddress: String
    public var xdp: XDPAttachment?
}

/// Interface discovery from sysfs, GDRVINFO and libbpf. sysfs shows the
/// network namespace it was mounted in: run under `ip netns exec`, not bare
/// setns(), to see another namespace's devices.
public enum NICDiscovery {
    public static func interfaceNames() -> [String] {
        let names = (try? Directory.names(in: NetworkDevice.sysfsRoot, limit: 65_536)) ?? []
        return names.filter { if_nametoindex($0) != 0 }.sorted { if_nametoindex($0) < if_nametoindex($1) }
    }

    public static func interfaces(ethtool: Ethtool) -> [InterfaceInfo] {
        interfaceNames().compactMap { try? interface($0, ethtool: ethtool) }
    }

    public static func interface(_ name: String, ethtool: Ethtool) throws -> InterfaceInfo {
        let validName = try ethtool.requireInterface(name)
        let index = if_nametoindex(name)
        let base = "\(NetworkDevice.sysfsRoot)/\(name)"
        func attribute(_ file: String) -> String {
            KernelFiles.read("\(base)/\(file)", limit: 4096)?.trimmingTrailingNewlines() ?? ""
        }
        let info = try? ethtool.driverInfo(name)
        let flags = UInt32(attribute("flags").dropFirst(2), radix: 16) ?? 0
        let (rx, tx) = (try? NetworkDevice.queueCounts(validName)) ?? (0, 0)
        return InterfaceInfo(
            name: name, index: index,
            driver: info?.driver ?? "", driverVersion: info?.version ?? "",
            firmwareVersion: info?.firmwareVersion ?? "", busInfo: info?.busInfo ?? "",
            rxQueues: rx, txQueues: tx,
            operState: attribute("operstate"), up: flags & UInt32(IFF_UP) != 0,
            mtu: UInt32(attribute("mtu")) ?? 0, macAddress: attribute("address"),
            xdp: xdpAttachment(index: index))
    }

    public static func xdpAttachment(index: UInt32) -> XDPAttachment? {
        guard let ifindex = Int32(exactly: index) else { return nil }
        var options = sluice_xdp_query_result()
        guard sluice_xdp_query(ifindex, &options) == 0 else { return nil }
        let mode: String
        switch UInt32(options.attach_mode) {
        case UInt32(XDP_ATTACHED_NONE): return nil
        case UInt32(XDP_ATTACHED_DRV): mode = "native"
        case UInt32(XDP_ATTACHED_SKB): mode = "skb"
        case UInt32(XDP_ATTACHED_HW): mode = "hw"
        default: mode = "multi"
        }
        let id = options.prog_id != 0 ? options.prog_id
            : max(options.drv_prog_id, options.skb_prog_id, options.hw_prog_id)
        return XDPAttachment(programID: id, mode: mode)
    }
}
