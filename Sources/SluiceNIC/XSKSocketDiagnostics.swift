#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import Foundation
import SluiceSystem
import Synchronization

/// One AF_XDP socket as the kernel's sock_diag reports it.
public struct XSKSocketInfo: Sendable, Equatable, Codable {
    /// The socket's inode: `socket:[inode]` in `/proc/PID/fd` names its owner.
    public var inode: UInt32
    public var ifindex: UInt32
    public var queue: UInt32
    /// The socket's UMEM runs in zero-copy mode (XDP_DU_F_ZEROCOPY).
    public var zeroCopy: Bool
    /// The owner's uid as this process's user namespace sees it; nil when
    /// the kernel sent none.
    public var uid: UInt32?

    public init(inode: UInt32, ifindex: UInt32, queue: UInt32, zeroCopy: Bool, uid: UInt32? = nil) {
        self.inode = inode
        self.ifindex = ifindex
        self.queue = queue
        self.zeroCopy = zeroCopy
        self.uid = uid
    }
}

/// AF_XDP sockets of every process, from the kernel's sock_diag
/// (`ss --xdp`). Old mlx5 doubles its channel counts while any zero-copy
/// socket is bound, whoever owns it, so Sluice's own bookkeeping is not
/// enough. Blocking: call from a thread pool.
public enum XSKSocketDiagnostics {
    /// Every AF_XDP socket bound to an interface in this network namespace, any process.
    ///
    /// Sockets created but not yet bound are left out here.
    ///
    /// Throws ``NICError/xskDiagnosticsUnavailable(detail:)`` when the kernel
    /// has no AF_XDP sock_diag (CONFIG_XDP_SOCKETS_DIAG off, as in Debian 12's
    /// kernels, or module `xsk_diag` absent), so callers can degrade.
    public static func boundSockets() throws -> [XSKSocketInfo] {
        do {
            return try dumpWithRetry()
        } catch let failure as DiagnosticsMissing {
            // The kernel already asked for the module itself
            // (request_module on "net-pf-16-proto-4-type-44"); that fails
            // where its usermode helper is disabled, and a modprobe of our
            // own may still work when we run as root. Once per process: the
            // answer does not change while the kernel runs.
            guard let attempt = ModuleLoader.shared.loadOnce() else {
                throw NICError.xskDiagnosticsUnavailable(detail: failure.detail)
            }
            do {
                return try dumpWithRetry()
            } catch let again as DiagnosticsMissing {
                throw NICError.xskDiagnosticsUnavailable(detail: "\(again.detail); \(attempt)")
            }
        }
    }

    /// Zero-copy sockets bound on `interfaceIndex` (the fact driver plugins get).
    public static func zeroCopySockets(interfaceIndex: UInt32) throws -> UInt32 {
        try zeroCopyCount(boundSockets(), interfaceIndex: interfaceIndex)
    }

    /// The queues of `interfaceIndex` some AF_XDP socket of any process is bound to.
    public static func boundQueues(interfaceIndex: UInt32) throws -> Set<UInt32> {
        Set(try boundSockets().filter { $0.ifindex == interfaceIndex }.map(\.queue))
    }

    static func zeroCopyCount(_ sockets: [XSKSocketInfo], interfaceIndex: UInt32) throws -> UInt32 {
        let count = sockets.lazy.filter { $0.ifindex == interfaceIndex && $0.zeroCopy }.count
        // A dump cannot list more sockets than a u32 counts; say so rather than trap.
        guard let result = UInt32(exactly: count) else {
            throw NICError.socketDiagnostics(what: "counting \(count) zero-copy sockets", errno: EOVERFLOW)
        }
        return result
    }

    /// Dumps until the answer can be trusted. The kernel sets
    /// NLM_F_DUMP_INTR when its socket list changed during a multi-part
    /// dump. And its xsk_diag dump ends at the first socket whose interface
    /// went away (XSK_UNBOUND; it cannot be filled), so that socket and every
    /// older one are missing: compared with the kernel's count of AF_XDP
    /// sockets in use, one missing socket is that socket alone (it was the
    /// oldest), two or more mean bound sockets may be hidden.
    private static func dumpWithRetry() throws -> [XSKSocketInfo] {
        var attempts = 0
        while true {
            attempts += 1
            let before = socketsInUse()
            let dumped: Dump
            do {
                dumped = try dump()
            } catch is DumpInterrupted where attempts < 4 {
                continue
            } catch is DumpInterrupted {
                throw NICError.socketDiagnostics(
                    what: "SOCK_DIAG_BY_FAMILY dump for AF_XDP kept being interrupted by socket changes", errno: EAGAIN)
            }
            // Without /proc the listing is taken as it is.
            guard let before, let after = socketsInUse() else { return dumped.sockets }
            // Sockets came or went meanwhile: the counts do not compare.
            if before != after && attempts < 4 { continue }
            if after - dumped.messages >= 2 {
                throw NICError.xskListIncomplete(inUse: after, listed: dumped.messages)
            }
            return dumped.sockets
        }
    }

    /// AF_XDP sockets of this thread's network namespace, bound or not, as
    /// the "XDP" row of /proc/net/protocols counts them (sock_prot_inuse);
    /// nil when that cannot be read.
    static func socketsInUse() -> Int? {
        // thread-self: a thread may have joined another namespace than the process.
        guard let text = try? String(contentsOfFile: "/proc/thread-self/net/protocols", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            guard columns.count > 2, columns[0] == "XDP" else { continue }
            guard let count = Int(columns[2]), count >= 0 else { return nil }
            return count
        }
        return nil
    }

    private struct Dump {
        var sockets: [XSKSocketInfo]
        /// Every socket the kernel reported, bound or not.
        var messages: Int
    }

    private static func dump() throws -> Dump {
        guard let socket = nl_socket_alloc() else {
            throw NICError.socketDiagnostics(what: "nl_socket_alloc", errno: ENOMEM)
        }
        defer { nl_socket_free(socket) }
        // A dump is ended by NLMSG_DONE, not by an ack.
        nl_socket_disable_auto_ack(socket)
        let connected = nl_connect(socket, NETLINK_SOCK_DIAG)
        guard connected >= 0 else {
            let code = Glibc.errno
            if connected == -NLE_PROTO_MISMATCH || code == EPROTONOSUPPORT {
                throw DiagnosticsMissing(detail: "the kernel has no NETLINK_SOCK_DIAG: \(EthtoolNetlink.libnlError(connected))")
            }
            throw NICError.socketDiagnostics(what: "nl_connect(NETLINK_SOCK_DIAG): \(EthtoolNetlink.libnlError(connected))",
                                             errno: code != 0 ? code : EIO)
        }
        // The kernel sizes dump messages after the largest buffer we read
        // with; peeking lets libnl grow its buffer rather than truncate.
        nl_socket_enable_msg_peek(socket)

        guard let message = nlmsg_alloc_simple(Int32(SOCK_DIAG_BY_FAMILY), Int32(NLM_F_REQUEST | NLM_F_DUMP)) else {
            throw NICError.socketDiagnostics(what: "nlmsg_alloc_simple", errno: ENOMEM)
        }
        defer { nlmsg_free(message) }
        var request = xdp_diag_req()
        request.sdiag_family = UInt8(AF_XDP)
        // INFO brings ifindex, queue and uid; UMEM the zero-copy flag.
        request.xdiag_show = UInt32(XDP_SHOW_INFO | XDP_SHOW_UMEM)
        let appended = nlmsg_append(message, &request, MemoryLayout<xdp_diag_req>.size, Int32(NLMSG_ALIGNTO))
        guard appended >= 0 else {
            throw NICError.socketDiagnostics(what: "nlmsg_append(xdp_diag_req): \(EthtoolNetlink.libnlError(appended))", errno: ENOMEM)
        }

        let state = DumpState()
        let unmanaged = Unmanaged.passRetained(state)
        defer { unmanaged.release() }
        let context = unmanaged.toOpaque()
        nl_socket_modify_cb(socket, NL_CB_VALID, NL_CB_CUSTOM, onDiagMessage, context)
        nl_socket_modify_err_cb(socket, NL_CB_CUSTOM, onDiagError, context)

        let sent = nl_send_auto(socket, message)
        guard sent >= 0 else {
            throw NICError.socketDiagnostics(what: "nl_send_auto(SOCK_DIAG_BY_FAMILY): \(EthtoolNetlink.libnlError(sent))", errno: EIO)
        }
        // libnl reads every part of the dump (it retries EINTR itself) and
        // returns at NLMSG_DONE or at the first error.
        let received = nl_recvmsgs_default(socket)
        if let error = state.parseError { throw error }
        if state.errno != 0 {
            // sock_diag answers ENOENT when no handler for the family is
            // registered, even after its own request_module.
            if state.errno == ENOENT || operationNotSupportedErrnos.contains(state.errno) {
                throw DiagnosticsMissing(
                    detail: "SOCK_DIAG_BY_FAMILY for AF_XDP: \(String(cString: strerror(state.errno))) (errno \(state.errno))")
            }
            throw NICError.socketDiagnostics(what: "SOCK_DIAG_BY_FAMILY for AF_XDP", errno: state.errno)
        }
        if received == -NLE_DUMP_INTR { throw DumpInterrupted() }
        guard received >= 0 else {
            throw NICError.socketDiagnostics(what: "nl_recvmsgs(SOCK_DIAG_BY_FAMILY): \(EthtoolNetlink.libnlError(received))", errno: EIO)
        }
        return Dump(sockets: state.sockets, messages: state.messages)
    }

    /// One reply message: struct xdp_diag_msg, then XDP_DIAG_* attributes.
    /// Every length and number is checked: nothing from the kernel is
    /// trusted to fit.
    /// nil for a socket bound to no interface.
    static func parse(_ header: UnsafeMutablePointer<nlmsghdr>) throws -> XSKSocketInfo? {
        let headerSize = Int32(MemoryLayout<xdp_diag_msg>.size)
        var table = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: xdpDiagMax + 1)
        // nlmsg_parse refuses a payload shorter than xdp_diag_msg and bounds
        // every attribute by the message; with no policy it ignores types
        // above XDP_DIAG_MAX that a newer kernel may add.
        let parsed = table.withUnsafeMutableBufferPointer {
            nlmsg_parse(header, headerSize, $0.baseAddress, Int32(xdpDiagMax), nil)
        }
        guard parsed >= 0 else { throw malformed("the message: \(EthtoolNetlink.libnlError(parsed))") }
        guard let body = nlmsg_data(header) else { throw malformed("no xdp_diag_msg") }
        let message = UnsafeRawPointer(body).loadUnaligned(as: xdp_diag_msg.self)
        guard message.xdiag_family == UInt8(AF_XDP) else {
            throw malformed("family \(message.xdiag_family), not AF_XDP (\(AF_XDP))")
        }

        guard let info: xdp_diag_info = try payload(table, XDP_DIAG_INFO, "XDP_DIAG_INFO") else {
            // A bound socket always has INFO when XDP_SHOW_INFO is asked for.
            throw malformed("socket \(message.xdiag_ino) has no XDP_DIAG_INFO")
        }
        // A socket that was created but never bound (XSK_READY) is listed
        // with ifindex 0 and no UMEM: it serves no queue.
        if info.ifindex == 0 { return nil }
        // The kernel's ifindex is a positive int; a queue id is below
        // real_num_rx_queues, which the core caps at a u16 (xdp_sock.queue_id).
        guard info.ifindex <= UInt32(Int32.max) else {
            throw malformed("socket \(message.xdiag_ino) has ifindex \(info.ifindex)")
        }
        guard info.queue_id <= UInt32(UInt16.max) else {
            throw malformed("socket \(message.xdiag_ino) has queue id \(info.queue_id)")
        }
        let uid: UInt32? = try payload(table, XDP_DIAG_UID, "XDP_DIAG_UID")
        // No UMEM attribute: the socket has no UMEM, so it cannot be zero-copy.
        let umem: xdp_diag_umem? = try payload(table, XDP_DIAG_UMEM, "XDP_DIAG_UMEM")
        let zeroCopy = umem.map { $0.flags & UInt32(XDP_DU_F_ZEROCOPY) != 0 } ?? false
        return XSKSocketInfo(inode: message.xdiag_ino, ifindex: info.ifindex, queue: info.queue_id,
                             zeroCopy: zeroCopy, uid: uid)
    }

    /// Attribute `type` as a `T`, nil when absent; shorter than `T` is malformed.
    private static func payload<T: BitwiseCopyable>(
        _ table: [UnsafeMutablePointer<nlattr>?], _ type: Int, _ name: String
    ) throws -> T? {
        guard type < table.count, let attribute = table[type] else { return nil }
        guard Int(nla_len(attribute)) >= MemoryLayout<T>.size, let data = nla_data(attribute) else {
            throw malformed("\(name) has \(nla_len(attribute)) bytes, expected \(MemoryLayout<T>.size)")
        }
        return UnsafeRawPointer(data).loadUnaligned(as: T.self)
    }

    private static func malformed(_ what: String) -> NICError {
        .socketDiagnostics(what: "malformed AF_XDP sock_diag reply: \(what)", errno: EPROTO)
    }
}

/// XDP_DIAG_MAX, a macro over an enum that Swift does not import.
private let xdpDiagMax = __XDP_DIAG_MAX - 1


/// ENOENT/EOPNOTSUPP from sock_diag: no AF_XDP handler in this kernel.
private struct DiagnosticsMissing: Error {
    var detail: String
}

private struct DumpInterrupted: Error {}

private final class DumpState {
    var sockets: [XSKSocketInfo] = []
    var messages = 0
    var errno: Int32 = 0
    var parseError: NICError?
}

private let onDiagMessage: nl_recvmsg_msg_cb_t = { message, context in
    let state = Unmanaged<DumpState>.fromOpaque(context!).takeUnretainedValue()
    guard state.parseError == nil, let header = nlmsg_hdr(message),
          header.pointee.nlmsg_type == UInt16(SOCK_DIAG_BY_FAMILY) else {
        return Int32(NL_SKIP.rawValue)
    }
    state.messages += 1
    do {
        if let socket = try XSKSocketDiagnostics.parse(header) { state.sockets.append(socket) }
    } catch let error as NICError {
        state.parseError = error
        return Int32(NL_STOP.rawValue)
    } catch {
        state.parseError = .socketDiagnostics(what: "\(error)", errno: EPROTO)
        return Int32(NL_STOP.rawValue)
    }
    return Int32(NL_OK.rawValue)
}

/// libnl's own mapping loses the errno (ENOENT becomes "object not
/// found"), and ENOENT is the one answer that means "no AF_XDP diag".
private let onDiagError: nl_recvmsg_err_cb_t = { _, error, context in
    let state = Unmanaged<DumpState>.fromOpaque(context!).takeUnretainedValue()
    if let error { state.errno = -error.pointee.error }
    return Int32(NL_STOP.rawValue)
}

/// `modprobe -q xsk_diag`, at most once per process.
final class ModuleLoader: Sendable {
    static let shared = ModuleLoader()
    private let attempted = Mutex(false)

    /// What the attempt did ("modprobe xsk_diag exited 1"), or nil when it
    /// was already made by an earlier call.
    func loadOnce() -> String? {
        attempted.withLock { attempted in
            guard !attempted else { return nil }
            attempted = true
            return Self.modprobe("xsk_diag")
        }
    }

    private static func modprobe(_ module: String) -> String {
        // A daemon's PATH may lack the sbin directories.
        let candidates = ["/usr/sbin/modprobe", "/sbin/modprobe"]
        guard let path = candidates.first(where: { access($0, X_OK) == 0 }) else {
            return "modprobe \(module) not tried: no modprobe in /usr/sbin or /sbin"
        }
        let argv: [UnsafeMutablePointer<CChar>?] = [path, "-q", module].map { (text: String) in strdup(text) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, nil, nil, argv, environ)
        guard spawned == 0 else {
            return "modprobe \(module) could not start: \(String(cString: strerror(spawned)))"
        }
        var status: Int32 = 0
        do {
            try retryingEINTR("waitpid(modprobe)") { waitpid(pid, &status, 0) }
        } catch {
            // SIGCHLD ignored: the child was reaped for us; its status is unknown.
            return "modprobe \(module) ran (\(error))"
        }
        // WIFEXITED / WEXITSTATUS are macros Swift does not import.
        if status & 0x7f == 0 {
            let code = (status >> 8) & 0xff
            return code == 0 ? "modprobe \(module) succeeded" : "modprobe \(module) exited \(code)"
        }
        return "modprobe \(module) was killed by signal \(status & 0x7f)"
    }
}
