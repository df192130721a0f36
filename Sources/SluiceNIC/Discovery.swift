#if canImport(Glibc)
import Glibc
#endif
import CXDP
import Foundation
import SluiceProtocol
import SluiceSystem
import SystemPackage

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

    /// The XDP program attached to `index`, or nil when none is; nil too
    /// when the query fails (see ``queryXDPAttachment(index:)``).
    public static func xdpAttachment(index: UInt32) -> XDPAttachment? {
        (try? queryXDPAttachment(index: index)) ?? nil
    }

    /// The XDP program attached to `index`, or nil when none is. Throws
    /// when the query fails: a passing netlink error must not read as
    /// "detached" to a check that would bind a pipeline again.
    public static func queryXDPAttachment(index: UInt32) throws(SystemCallError) -> XDPAttachment? {
        guard let ifindex = Int32(exactly: index), ifindex > 0 else {
            throw SystemCallError(call: "bpf_xdp_query", errno: .operationNotSupportedByDevice)  // ENODEV
        }
        var options = sluice_xdp_query_result()
        let error = sluice_xdp_query(ifindex, &options)
        guard error == 0 else { throw SystemCallError(call: "bpf_xdp_query", errno: Errno(rawValue: -error)) }
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
