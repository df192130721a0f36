#if canImport(Glibc)
import Glibc
#endif
import SluiceProtocol
import SluiceSystem

/// Both ethtool backends behind one policy. `auto` asks netlink first and
/// falls back to ioctl per operation when the family is missing or the
/// kernel answers EOPNOTSUPP; when both backends lack an operation the error
/// names the driver. Operations that only exist as ioctls (driver info,
/// statistics, ntuple, flow hash, RSS) always use ioctl: lab servers run
/// kernels where netlink has none of them.
///
/// Blocking: call from a thread pool, never an event loop.
public final class Ethtool: Sendable {
    public let choice: BackendChoice
    private let ioctl: EthtoolIoctl
    /// nil when the kernel has no `ethtool` genl family.
    private let netlink: EthtoolNetlink?
    /// Why netlink is unavailable, for `nic.show` and logs.
    public let netlinkProblem: String?

    public init(backend: BackendChoice = .auto) throws {
        choice = backend
        ioctl = try EthtoolIoctl()
        if backend == .ioctl {
            netlink = nil
            netlinkProblem = "ioctl forced by configuration"
            return
        }
        do {
            netlink = try EthtoolNetlink()
            netlinkProblem = nil
        } catch let error as NICError {
            if backend == .netlink { throw error }
            netlink = nil
            netlinkProblem = error.description
        }
    }

    // MARK: Reads

    public func driverInfo(_ interface: String) throws -> DriverInfo {
        try ioctlOnly(.driverInfo, interface) { try $0.driverInfo(interface) }.value
    }

    public func channels(_ interface: String) throws -> Served<Channels> {
        try route(.channelsGet, interface, netlink: { try $0.channels(interface) }, ioctl: { try $0.channels(interface) })
    }

    public func rings(_ interface: String) throws -> Served<Rings> {
        try route(.ringsGet, interface, netlink: { try $0.rings(interface) }, ioctl: { try $0.rings(interface) })
    }

    public func features(_ interface: String) throws -> Served<Features> {
        try route(.featuresGet, interface, netlink: { try $0.features(interface) }, ioctl: { try $0.features(interface) })
    }

    public func privateFlags(_ interface: String) throws -> Served<[PrivateFlag]> {
        try route(.privateFlagsGet, interface, netlink: { try $0.privateFlags(interface) },
                  ioctl: { try $0.privateFlags(interface) })
    }

    public func statistics(_ interface: String) throws -> Served<DriverStatistics> {
        try ioctlOnly(.statistics, interface) { try $0.statistics(interface) }
    }

    public func rules(_ interface: String) throws -> Served<[NtupleRule]> {
        try ioctlOnly(.ntupleList, interface) { try $0.rules(interface) }
    }

    public func flowHash(_ interface: String, flowType: HashFlowType) throws -> Served<FlowHashFields> {
        try ioctlOnly(.flowHashGet, interface) { try $0.flowHash(interface, flowType: flowType) }
    }

    public func rss(_ interface: String) throws -> Served<RSSConfiguration> {
        try ioctlOnly(.rssGet, interface) { try $0.rss(interface) }
    }

    // MARK: Writes (no journal here: NICController journals, then calls these)

    @discardableResult
    public func setChannels(_ interface: String, _ change: ChannelsChange) throws -> EthtoolBackend {
        try route(.channelsSet, interface, netlink: { try $0.setChannels(interface, change) },
                  ioctl: { try $0.setChannels(interface, change) }).backend
    }

    @discardableResult
    public func setRings(_ interface: String, _ change: RingsChange) throws -> EthtoolBackend {
        try route(.ringsSet, interface, netlink: { try $0.setRings(interface, change) },
                  ioctl: { try $0.setRings(interface, change) }).backend
    }

    /// Kernel feature names only (resolve aliases with ``FeatureNames``).
    @discardableResult
    public func setFeatures(_ interface: String, _ wanted: [String: Bool]) throws -> EthtoolBackend {
        try route(.featuresSet, interface, netlink: { try $0.setFeatures(interface, wanted) },
                  ioctl: { try $0.setFeatures(interface, wanted) }).backend
    }

    public func insertRule(_ interface: String, flowSpec: [UInt8]) throws -> UInt32 {
        try ioctlOnly(.ntupleAdd, interface) { try $0.insertRule(interface, flowSpec: flowSpec) }.value
    }

    public func deleteRule(_ interface: String, location: UInt32) throws {
        _ = try ioctlOnly(.ntupleDelete, interface) { try $0.deleteRule(interface, location: location) }
    }

    public func setFlowHash(_ interface: String, flowType: HashFlowType, fields: FlowHashFields) throws {
        _ = try ioctlOnly(.flowHashSet, interface) { try $0.setFlowHash(interface, flowType: flowType, fields: fields) }
    }

    public func setRSS(_ interface: String, indirectionTable: [UInt32]) throws {
        _ = try ioctlOnly(.rssSet, interface) { try $0.setRSS(interface, indirectionTable: indirectionTable) }
    }

    // MARK: ntuple rule table (NICController places and checks rules itself)

    /// ETHTOOL_GRXCLSRLALL as it comes: a driver's EOPNOTSUPP stays a kernel error.
    func ruleTable(_ interface: String) throws -> (tableSize: UInt32, locations: [UInt32], countData: UInt64) {
        try requireInterface(interface)
        return try ioctl.ruleLocations(interface)
    }

    /// GRXCLSRULE: the flow spec bytes at `location`, read before deleting
    /// the rule there (a driver's EOPNOTSUPP becomes `unsupported`).
    func ruleBytes(_ interface: String, location: UInt32) throws -> [UInt8] {
        try ioctlOnly(.ntupleDelete, interface) { try $0.ruleBytes(interface, location: location) }.value
    }

    // MARK: Routing

    /// The interface must exist in this network namespace.
    @discardableResult
    public func requireInterface(_ interface: String) throws -> InterfaceName {
        guard let name = try? InterfaceName(interface), if_nametoindex(interface) != 0 else {
            throw NICError.notFound(interface: interface)
        }
        return name
    }

    /// The driver name for error messages; empty when even GDRVINFO fails.
    func driverName(_ interface: String) -> String {
        (try? ioctl.driverInfo(interface).driver) ?? ""
    }

    struct Routed<T> {
        var value: T
        var backend: EthtoolBackend
    }

    private func isUnsupported(_ error: Error) -> Bool {
        if case NICError.kernel(_, _, let code, _) = error { return operationNotSupportedErrnos.contains(code) }
        return false
    }

    private func unsupported(_ operation: NICOperation, _ interface: String) -> NICError {
        .unsupported(interface: interface, driver: driverName(interface), operation: operation)
    }

    private func ioctlOnly<T>(_ operation: NICOperation, _ interface: String, _ body: (EthtoolIoctl) throws -> T) throws -> Served<T> where T: Codable & Equatable & Sendable {
        try requireInterface(interface)
        do {
            return Served(try body(ioctl), backend: .ioctl)
        } catch where isUnsupported(error) {
            throw unsupported(operation, interface)
        }
    }

    private func ioctlOnly(_ operation: NICOperation, _ interface: String, _ body: (EthtoolIoctl) throws -> Void) throws -> EthtoolBackend {
        try requireInterface(interface)
        do {
            try body(ioctl)
            return .ioctl
        } catch where isUnsupported(error) {
            throw unsupported(operation, interface)
        }
    }

    private func route<T>(
        _ operation: NICOperation, _ interface: String,
        netlink viaNetlink: ((EthtoolNetlink) throws -> T)?, ioctl viaIoctl: ((EthtoolIoctl) throws -> T)?
    ) throws -> Routed<T> {
        try requireInterface(interface)
        if choice != .ioctl, let netlink, let viaNetlink {
            do {
                return Routed(value: try viaNetlink(netlink), backend: .netlink)
            } catch where isUnsupported(error) {
                // EOPNOTSUPP: the kernel lacks the message or the driver the
                // operation; only ioctl can tell which.
                if choice == .netlink || viaIoctl == nil { throw unsupported(operation, interface) }
            }
        } else if choice == .netlink, viaNetlink != nil {
            throw NICError.netlinkUnavailable(netlinkProblem ?? "no ethtool family")
        }
        guard let viaIoctl else { throw unsupported(operation, interface) }
        do {
            return Routed(value: try viaIoctl(ioctl), backend: .ioctl)
        } catch where isUnsupported(error) {
            throw unsupported(operation, interface)
        }
    }

    private func route<T: Codable & Equatable & Sendable>(
        _ operation: NICOperation, _ interface: String,
        netlink viaNetlink: ((EthtoolNetlink) throws -> T)?, ioctl viaIoctl: ((EthtoolIoctl) throws -> T)?
    ) throws -> Served<T> {
        let routed: Routed<T> = try route(operation, interface, netlink: viaNetlink, ioctl: viaIoctl)
        return Served(routed.value, backend: routed.backend)
    }
}
