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
    /// The kernel has no AF_XDP socket diagnostics (CONFIG_XDP_SOCKETS_DIAG
    /// off, or module `xsk_diag` missing): other processes' sockets cannot
    /// be seen. `detail` says what the kernel answered and whether loading
    /// the module was tried.
    case xskDiagnosticsUnavailable(detail: String)
    /// The kernel's AF_XDP socket list is cut short: `inUse` sockets exist
    /// in this namespace, `listed` were reported. A socket whose interface
    /// went away hides the ones created before it until its owner closes it.
    case xskListIncomplete(inUse: Int, listed: Int)
    /// An AF_XDP sock_diag request failed: what, and the errno.
    case socketDiagnostics(what: String, errno: Int32)
    /// `ethtool -K` went through, but the driver did not put every requested
    /// feature into effect (fixed, or dropped by a dependency). The result
    /// says, per feature, what was requested and what is active now;
    /// changes that did take effect stay in place and in the journal.
    case featuresNotApplied(FeaturesSetResult)

    /// The control protocol's error code.
    public var code: String {
        switch self {
        case .notFound: return "not_found"
        case .unsupported: return "unsupported"
        case .invalidArgument: return "invalid_argument"
        case .kernel(_, _, let e, _) where e == EBUSY: return "busy"
        case .kernel(_, _, let e, _) where e == EPERM || e == EACCES: return "permission_denied"
        case .kernel(_, _, let e, _) where e == EINVAL || e == ERANGE: return "invalid_argument"
        case .xskDiagnosticsUnavailable, .featuresNotApplied: return "unsupported"
        case .xskListIncomplete: return "busy"
        case .socketDiagnostics(_, let e) where e == EPERM || e == EACCES: return "permission_denied"
        case .kernel, .netlinkUnavailable, .journal, .socketDiagnostics: return "internal"
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
        case .xskDiagnosticsUnavailable(let detail):
            return "the kernel has no AF_XDP socket diagnostics (CONFIG_XDP_SOCKETS_DIAG); "
                + "zero-copy sockets of other processes cannot be counted (\(detail))"
        case .xskListIncomplete(let inUse, let listed):
            return "the kernel listed \(listed) of the \(inUse) AF_XDP sockets in this network namespace: "
                + "an AF_XDP socket whose interface went away hides the sockets created before it "
                + "until its owner closes it, so zero-copy sockets cannot be counted"
        case .socketDiagnostics(let what, let code):
            return "AF_XDP socket diagnostics: \(what) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .featuresNotApplied(let result):
            var text = "not every feature change took effect on \(result.interface): "
                + result.notApplied.map(\.message).joined(separator: "; ")
            let applied = result.outcomes.filter(\.applied)
            if !applied.isEmpty {
                text += ". In effect: " + applied.map { "\($0.name) \($0.active ? "on" : "off")" }.joined(separator: ", ")
            }
            return text
        }
    }
}

/// errno values the kernel uses for "no such operation". ENOTSUPP (524) is
/// kernel-internal but leaks out of some drivers.
@usableFromInline
let operationNotSupportedErrnos: Set<Int32> = [EOPNOTSUPP, 524]
