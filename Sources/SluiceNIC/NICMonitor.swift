#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import Foundation
import SluiceProtocol
import Synchronization

/// Something changed on a NIC, as the kernel announced it.
public struct NICEvent: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Equatable, Sendable {
        /// ethtool monitor group notifications.
        case channels, features, rings, privateFlags = "private_flags", otherEthtool = "other_ethtool"
        /// rtnetlink RTM_NEWLINK (state, MTU, XDP program...) and RTM_DELLINK.
        case link, linkRemoved = "link_removed"
    }

    public var kind: Kind
    public var interface: String
    public var index: UInt32
    /// For `channels`: the counts the notification carried.
    public var channels: Channels?
    /// For `link`: administratively up (IFF_UP).
    public var up: Bool?
    /// For `link`: the attached XDP program, 0 for none.
    public var xdpProgramID: UInt32?
}

/// Watches the ethtool netlink `monitor` multicast group and rtnetlink link
/// events on a thread of its own and hands typed events to `handler` (on
/// that thread). Stop it with ``stop()``; it also stops when released.
// Unchecked: the netlink sockets are used by the monitor thread alone, and
// `thread` is set once, in init, before anyone else can see the monitor.
public final class NICMonitor: @unchecked Sendable {
    private let ethtoolSocket: OpaquePointer
    private let routeSocket: OpaquePointer
    /// A pipe whose write end wakes the thread to stop it.
    private let wake: (read: Int32, write: Int32)
    private let handler: @Sendable (NICEvent) -> Void
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?
    private let stopped = Mutex(false)

    public init(handler: @escaping @Sendable (NICEvent) -> Void) throws {
        self.handler = handler
        guard let ethtoolSocket = nl_socket_alloc() else { throw NICError.netlinkUnavailable("nl_socket_alloc failed") }
        guard let routeSocket = nl_socket_alloc() else {
            nl_socket_free(ethtoolSocket)
            throw NICError.netlinkUnavailable("nl_socket_alloc failed")
        }
        self.ethtoolSocket = ethtoolSocket
        self.routeSocket = routeSocket
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0, fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0 else {
            nl_socket_free(ethtoolSocket)
            nl_socket_free(routeSocket)
            throw NICError.netlinkUnavailable("pipe: errno \(errno)")
        }
        wake = (fds[0], fds[1])
        do {
            try subscribe()
        } catch {
            nl_socket_free(ethtoolSocket)
            nl_socket_free(routeSocket)
            close(fds[0])
            close(fds[1])
            throw error
        }
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "sluice-nic-monitor"
        self.thread = thread
        thread.start()
    }

    deinit {
        stop()
        nl_socket_free(ethtoolSocket)
        nl_socket_free(routeSocket)
        close(wake.read)
        close(wake.write)
    }

    /// Stops the thread and waits for it. Idempotent.
    public func stop() {
        let wasRunning = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped && thread != nil
        }
        guard wasRunning else { return }
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
        finished.wait()
    }

    private func subscribe() throws {
        for socket in [ethtoolSocket, routeSocket] {
            // Multicast notifications carry no sequence numbers of ours.
            nl_socket_disable_seq_check(socket)
        }
        var result = genl_connect(ethtoolSocket)
        guard result >= 0 else { throw NICError.netlinkUnavailable("genl_connect: \(EthtoolNetlink.libnlError(result))") }
        let group = genl_ctrl_resolve_grp(ethtoolSocket, ETHTOOL_GENL_NAME, ETHTOOL_MCGRP_MONITOR_NAME)
        guard group >= 0 else {
            throw NICError.netlinkUnavailable("no ethtool monitor group: \(EthtoolNetlink.libnlError(group))")
        }
        result = nl_socket_add_membership(ethtoolSocket, group)
        guard result >= 0 else { throw NICError.netlinkUnavailable("ethtool monitor: \(EthtoolNetlink.libnlError(result))") }
        result = nl_connect(routeSocket, NETLINK_ROUTE)
        guard result >= 0 else { throw NICError.netlinkUnavailable("rtnetlink: \(EthtoolNetlink.libnlError(result))") }
        result = nl_socket_add_membership(routeSocket, Int32(RTNLGRP_LINK.rawValue))
        guard result >= 0 else { throw NICError.netlinkUnavailable("RTNLGRP_LINK: \(EthtoolNetlink.libnlError(result))") }
        let context = Unmanaged.passUnretained(self).toOpaque()
        nl_socket_modify_cb(ethtoolSocket, NL_CB_VALID, NL_CB_CUSTOM, onEthtoolNotification, context)
        nl_socket_modify_cb(routeSocket, NL_CB_VALID, NL_CB_CUSTOM, onLinkNotification, context)
        for socket in [ethtoolSocket, routeSocket] {
            nl_socket_enable_msg_peek(socket)
            _ = nl_socket_set_nonblocking(socket)
        }
    }

    private func loop() {
        defer { finished.signal() }
        var fds = [
            pollfd(fd: nl_socket_get_fd(ethtoolSocket), events: Int16(POLLIN), revents: 0),
            pollfd(fd: nl_socket_get_fd(routeSocket), events: Int16(POLLIN), revents: 0),
            pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            for i in fds.indices { fds[i].revents = 0 }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[2].revents != 0 { return }
            // Non-blocking sockets: nl_recvmsgs_default returns once drained.
            // An overrun (ENOBUFS) loses events but not the socket; carry on.
            if fds[0].revents != 0 { _ = nl_recvmsgs_default(ethtoolSocket) }
            if fds[1].revents != 0 { _ = nl_recvmsgs_default(routeSocket) }
        }
    }

    fileprivate func deliver(_ event: NICEvent) { handler(event) }
}

private let onEthtoolNotification: nl_recvmsg_msg_cb_t = { msg, context in
    let monitor = Unmanaged<NICMonitor>.fromOpaque(context!).takeUnretainedValue()
    guard let header = nlmsg_hdr(msg), let genl = nlmsg_data(header)?.assumingMemoryBound(to: genlmsghdr.self),
          let attributes = try? Attributes(genl: header, max: 32),
          let device = attributes[1],  // every ETHTOOL_A_*_HEADER is attribute 1
          let deviceAttributes = try? Attributes(nested: device, max: ETHTOOL_A_HEADER_MAX)
    else { return Int32(NL_OK.rawValue) }
    let kind: NICEvent.Kind
    switch Int(genl.pointee.cmd) {
    case ETHTOOL_MSG_CHANNELS_NTF: kind = .channels
    case ETHTOOL_MSG_FEATURES_NTF: kind = .features
    case ETHTOOL_MSG_RINGS_NTF: kind = .rings
    case ETHTOOL_MSG_PRIVFLAGS_NTF: kind = .privateFlags
    default: kind = .otherEthtool
    }
    var event = NICEvent(kind: kind, interface: deviceAttributes.string(ETHTOOL_A_HEADER_DEV_NAME) ?? "",
                         index: deviceAttributes.u32(ETHTOOL_A_HEADER_DEV_INDEX))
    if kind == .channels {
        var channels = Channels()
        for field in ChannelsChange.fields {
            guard let ids = EthtoolNetlink.channelAttributes[field.name] else { continue }
            channels[keyPath: field.current] = attributes.u32(ids.count)
            channels[keyPath: field.maximum] = attributes.u32(ids.maximum)
        }
        event.channels = channels
    }
    monitor.deliver(event)
    return Int32(NL_OK.rawValue)
}

private let onLinkNotification: nl_recvmsg_msg_cb_t = { msg, context in
    let monitor = Unmanaged<NICMonitor>.fromOpaque(context!).takeUnretainedValue()
    guard let header = nlmsg_hdr(msg),
          header.pointee.nlmsg_type == UInt16(RTM_NEWLINK) || header.pointee.nlmsg_type == UInt16(RTM_DELLINK),
          nlmsg_datalen(header) >= MemoryLayout<ifinfomsg>.size,
          let info = nlmsg_data(header)?.assumingMemoryBound(to: ifinfomsg.self)
    else { return Int32(NL_OK.rawValue) }
    var table = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: Int(IFLA_XDP) + 1)
    let parsed = table.withUnsafeMutableBufferPointer {
        nlmsg_parse(header, Int32(MemoryLayout<ifinfomsg>.size), $0.baseAddress, Int32(IFLA_XDP), nil)
    }
    guard parsed >= 0 else { return Int32(NL_OK.rawValue) }
    var name = ""
    if let attribute = table[Int(IFLA_IFNAME)], let data = nla_data(attribute) {
        let bytes = UnsafeRawBufferPointer(start: data, count: Int(max(nla_len(attribute), 0)))
        name = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
    let index = UInt32(bitPattern: info.pointee.ifi_index)
    if header.pointee.nlmsg_type == UInt16(RTM_DELLINK) {
        monitor.deliver(NICEvent(kind: .linkRemoved, interface: name, index: index))
        return Int32(NL_OK.rawValue)
    }
    var programID: UInt32 = 0
    if let xdp = table[Int(IFLA_XDP)], let nested = try? Attributes(nested: xdp, max: Int(IFLA_XDP_PROG_ID)) {
        programID = nested.u32(Int(IFLA_XDP_PROG_ID))
    }
    monitor.deliver(NICEvent(kind: .link, interface: name, index: index,
                             up: info.pointee.ifi_flags & UInt32(IFF_UP) != 0, xdpProgramID: programID))
    return Int32(NL_OK.rawValue)
}
