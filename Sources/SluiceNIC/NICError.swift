#if canImport(Glibc)
import Glibc
#endif

/// What Sluice asked of a NIC, named as an ethtool user knows it.
public enum NICOperation: String, Codable, Equatable, Sendable {
    case driverInfo, channelsGet, channelsSet, featuresGet, featuresSet, ringsGet, ringsSet
    case privateFlagsGet, statistics, ntupleList, ntupleAdd, ntupleDelete
    case flowHashGet, flowHashSet, rssGet, rssSet

    /// The thing the driver lacks, for "veth does not support <this>".
    public var subject: String {
        switch self {
        case .driverInfo: return "driver information"
        case .channelsGet, .channelsSet: return "channels"
        case .featuresGet, .featuresSet: return "features"
        case .ringsGet, .ringsSet: return "ring parameters"
        case .privateFlagsGet: return "private flags"
        case .statistics: return "driver statistics"
        case .ntupleList, .ntupleAdd, .ntupleDelete: return "ntuple rules"
        case .flowHashGet, .flowHashSet: return "rx flow hash"
        case .rssGet, .rssSet: return "the RSS indirection table"
        }
    }

    /// The ethtool option doing the same thing.
    public var ethtoolOption: String {
        switch self {
        case .driverInfo: return "ethtool -i"
        case .channelsGet: return "ethtool -l"
        case .channelsSet: return "ethtool -L"
        case .featuresGet: return "ethtool -k"
        case .featuresSet: return "ethtool -K"
        case .ringsGet: return "ethtool -g"
        case .ringsSet: return "ethtool -G"
        case .privateFlagsGet: return "ethtool --show-priv-flags"
        case .statistics: return "ethtool -S"
        case .ntupleList: return "ethtool -n"
        case .ntupleAdd, .ntupleDelete: return "ethtool -N"
        case .flowHashGet: return "ethtool -n rx-flow-hash"
        case .flowHashSet: return "ethtool -N rx-flow-hash"
        case .rssGet: return "ethtool -x"
        case .rssSet: return "ethtool -X"
        }
    }
}

/// Every failure of the NIC library. The daemon maps `code` to the control
/// protocol's error codes and `description` to the message.
public enum NICError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No interface of that name (or it vanished mid-operation).
    case notFound(interface: String)
    /// The driver lacks the operation (both backends said EOPNOTSUPP).
    case unsupported(interface: String, driver: String, operation: NICOperation)
    /// Bad input: the message names the value and the limit.
    case invalidArgument(String)
    /// The kernel refused: errno plus its extended-ack text when it sent one.
    case kernel(operation: NICOperation, interface: String, errno: Int32, extack: String?)
    /// The `ethtool` generic netlink family is missing (old kernel, or
    /// netlink forced and unavailable).
    case netlinkUnavailable(String)
    /// The change journal could not be read or written.
    case journal(String)

    /// The control protocol's error code.
    public var code: String {
        switch self {
        case .notFound: return "not_found"
        case .unsupported: return "unsupported"
        case .invalidArgument: return "invalid_argument"
        case .kernel(_, _, let e, _) where e == EBUSY: return "busy"
        case .kernel(_, _, let e, _) where e == EPERM || e == EACCES: return "permission_denied"
        case .kernel(_, _, let e, _) where e == EINVAL || e == ERANGE: return "invalid_argument"
        case .kernel, .netlinkUnavailable, .journal: return "internal"
        }
    }

    public var description: String {
        switch self {
        case .notFound(let name):
            return "interface \(name) not found"
        case .unsupported(let name, let driver, let op):
            return "\(driver.isEmpty ? name : driver) does not support \(op.subject) (\(op.ethtoolOption)) on \(name)"
        case .invalidArgument(let message):
            return message
        case .kernel(let op, let name, let code, let extack):
            let text = String(cString: strerror(code))
            var message = "\(op.ethtoolOption) on \(name) failed: \(text) (errno \(code))"
            if let extack, !extack.isEmpty { message += ": \(extack)" }
            return message
        case .netlinkUnavailable(let why):
            return "ethtool netlink unavailable: \(why)"
        case .journal(let why):
            return "NIC change journal: \(why)"
        }
    }
}

/// errno values the kernel uses for "no such operation". ENOTSUPP (524) is
/// kernel-internal but leaks out of some drivers.
@usableFromInline
let operationNotSupportedErrnos: Set<Int32> = [EOPNOTSUPP, 524]

/// IFNAMSIZ: interface names are at most 15 bytes plus the NUL.
let interfaceNameSize = 16
