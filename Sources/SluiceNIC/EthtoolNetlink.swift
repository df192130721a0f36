#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import CSluiceShims
import Foundation
import SluiceProtocol
import Synchronization

/// The ethtool generic-netlink backend, through libnl-genl-3 (libnl builds
/// and parses every message). Blocking; requests take turns on the one
/// socket, so an instance may be shared between threads.
public final class EthtoolNetlink: Sendable {
    private let socket: Mutex<NetlinkSocket>
    /// The `ethtool` family's id (genl_ctrl_resolve).
    public let familyID: Int32

    /// Opens a socket and resolves the `ethtool` family. Throws
    /// ``NICError/netlinkUnavailable(_:)`` when the kernel has no such
    /// family (before 5.6, or built without ETHTOOL_NETLINK).
    public init() throws {
        guard let socket = nl_socket_alloc() else { throw NICError.netlinkUnavailable("nl_socket_alloc failed") }
        let connected = genl_connect(socket)
        guard connected >= 0 else {
            nl_socket_free(socket)
            throw NICError.netlinkUnavailable("genl_connect: \(Self.libnlError(connected))")
        }
        let family = genl_ctrl_resolve(socket, ETHTOOL_GENL_NAME)
        guard family >= 0 else {
            nl_socket_free(socket)
            throw NICError.netlinkUnavailable("no generic netlink family \"\(ETHTOOL_GENL_NAME)\": \(Self.libnlError(family))")
        }
        // Replies (string sets) can exceed a page.
        nl_socket_enable_msg_peek(socket)
        // libnl 3.7 has no extended-ack API: ask the kernel for the TLVs
        // ourselves and cap the echoed request so they are easy to find.
        let fd = nl_socket_get_fd(socket)
        var on: Int32 = 1
        _ = setsockopt(fd, solNetlink, Int32(NETLINK_EXT_ACK), &on, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(fd, solNetlink, Int32(NETLINK_CAP_ACK), &on, socklen_t(MemoryLayout<Int32>.size))
        self.socket = Mutex(NetlinkSocket(handle: socket))
        self.familyID = family
    }

    deinit { socket.withLock { nl_socket_free($0.handle) } }

    static func libnlError(_ code: Int32) -> String { String(cString: nl_geterror(code)) }

    // MARK: Channels

    public func channels(_ interface: String) throws -> Channels {
        try counts(.channelsGet, interface, command: ETHTOOL_MSG_CHANNELS_GET, header: ETHTOOL_A_CHANNELS_HEADER,
                   max: ETHTOOL_A_CHANNELS_MAX, attributes: Self.channelAttributes, into: Channels(), as: ChannelsChange.self)
    }

    public func setChannels(_ interface: String, _ change: ChannelsChange) throws {
        try setCounts(.channelsSet, interface, command: ETHTOOL_MSG_CHANNELS_SET, header: ETHTOOL_A_CHANNELS_HEADER,
                      attributes: Self.channelAttributes, change: change)
    }

    static let channelAttributes: [String: (count: Int, maximum: Int)] = [
        "rx": (ETHTOOL_A_CHANNELS_RX_COUNT, ETHTOOL_A_CHANNELS_RX_MAX),
        "tx": (ETHTOOL_A_CHANNELS_TX_COUNT, ETHTOOL_A_CHANNELS_TX_MAX),
        "other": (ETHTOOL_A_CHANNELS_OTHER_COUNT, ETHTOOL_A_CHANNELS_OTHER_MAX),
        "combined": (ETHTOOL_A_CHANNELS_COMBINED_COUNT, ETHTOOL_A_CHANNELS_COMBINED_MAX),
    ]

    // MARK: Rings

    public func rings(_ interface: String) throws -> Rings {
        try counts(.ringsGet, interface, command: ETHTOOL_MSG_RINGS_GET, header: ETHTOOL_A_RINGS_HEADER,
                   max: ETHTOOL_A_RINGS_MAX, attributes: Self.ringAttributes, into: Rings(), as: RingsChange.self)
    }

    public func setRings(_ interface: String, _ change: RingsChange) throws {
        try setCounts(.ringsSet, interface, command: ETHTOOL_MSG_RINGS_SET, header: ETHTOOL_A_RINGS_HEADER,
                      attributes: Self.ringAttributes, change: change)
    }

    static let ringAttributes: [String: (count: Int, maximum: Int)] = [
        "rx": (ETHTOOL_A_RINGS_RX, ETHTOOL_A_RINGS_RX_MAX),
        "rx-mini": (ETHTOOL_A_RINGS_RX_MINI, ETHTOOL_A_RINGS_RX_MINI_MAX),
        "rx-jumbo": (ETHTOOL_A_RINGS_RX_JUMBO, ETHTOOL_A_RINGS_RX_JUMBO_MAX),
        "tx": (ETHTOOL_A_RINGS_TX, ETHTOOL_A_RINGS_TX_MAX),
    ]

    /// CHANNELS_GET / RINGS_GET: every count and maximum is a u32 attribute.
    private func counts<Change: CountChangeFields>(
        _ operation: NICOperation, _ interface: String, command: Int, header: Int, max: Int,
        attributes: [String: (count: Int, maximum: Int)], into initial: Change.Value,
        as _: Change.Type
    ) throws -> Change.Value {
        var result: Change.Value?
        try request(operation, interface, command: command, header: header, reply: { attrs in
            let a = try Attributes(genl: attrs, max: max)
            var value = initial
            for field in Change.fields {
                guard let ids = attributes[field.name] else { continue }
                value[keyPath: field.current] = a.u32(ids.count)
                value[keyPath: field.maximum] = a.u32(ids.maximum)
            }
            result = value
        })
        return try unwrap(result, operation, interface)
    }

    /// CHANNELS_SET / RINGS_SET with only the counts the change names.
    private func setCounts<Change: CountChangeFields>(
        _ operation: NICOperation, _ interface: String, command: Int, header: Int,
        attributes: [String: (count: Int, maximum: Int)], change: Change
    ) throws {
        try request(operation, interface, command: command, header: header, build: { msg in
            for field in Change.fields {
                guard let ids = attributes[field.name] else { continue }
                try putU32(msg, ids.count, change[keyPath: field.change])
            }
        })
    }

    // MARK: Features

    /// Names of a string set of the device (STRSET_GET), index-ordered.
    public func strings(_ interface: String, set: UInt32, operation: NICOperation) throws -> [String] {
        var names: [String] = []
        try request(operation, interface, command: ETHTOOL_MSG_STRSET_GET, header: ETHTOOL_A_STRSET_HEADER,
                    build: { msg in
                        let sets = try nest(msg, ETHTOOL_A_STRSET_STRINGSETS)
                        let one = try nest(msg, ETHTOOL_A_STRINGSETS_STRINGSET)
                        try putU32(msg, ETHTOOL_A_STRINGSET_ID, set)
                        nla_nest_end(msg, one)
                        nla_nest_end(msg, sets)
                    }, reply: { attrs in
            let top = try Attributes(genl: attrs, max: ETHTOOL_A_STRSET_MAX)
            for stringSet in top.nested(ETHTOOL_A_STRSET_STRINGSETS) {
                let s = try Attributes(nested: stringSet, max: ETHTOOL_A_STRINGSET_MAX)
                guard s.u32(ETHTOOL_A_STRINGSET_ID) == set else { continue }
                let count = Int(min(s.u32(ETHTOOL_A_STRINGSET_COUNT), EthtoolIoctl.maximumCount))
                names = [String](repeating: "", count: count)
                for entry in s.nested(ETHTOOL_A_STRINGSET_STRINGS) {
                    let e = try Attributes(nested: entry, max: ETHTOOL_A_STRING_MAX)
                    let index = Int(e.u32(ETHTOOL_A_STRING_INDEX))
                    if index < names.count { names[index] = e.string(ETHTOOL_A_STRING_VALUE) ?? "" }
                }
            }
        })
        return names
    }

    public func features(_ interface: String) throws -> Features {
        let names = try strings(interface, set: UInt32(ETH_SS_FEATURES.rawValue), operation: .featuresGet)
        var hw = Bitset(), wanted = Bitset(), active = Bitset(), nochange = Bitset()
        try request(.featuresGet, interface, command: ETHTOOL_MSG_FEATURES_GET, header: ETHTOOL_A_FEATURES_HEADER,
                    flags: UInt32(ETHTOOL_FLAG_COMPACT_BITSETS), reply: { attrs in
            let a = try Attributes(genl: attrs, max: ETHTOOL_A_FEATURES_MAX)
            hw = try Bitset(a[ETHTOOL_A_FEATURES_HW])
            wanted = try Bitset(a[ETHTOOL_A_FEATURES_WANTED])
            active = try Bitset(a[ETHTOOL_A_FEATURES_ACTIVE])
            nochange = try Bitset(a[ETHTOOL_A_FEATURES_NOCHANGE])
        })
        let features = names.enumerated().compactMap { index, name -> Feature? in
            guard !name.isEmpty else { return nil }
            return Feature(name: name, active: active[index], requested: wanted[index],
                           changeable: hw[index] && !nochange[index])
        }
        return Features(features: features)
    }

    /// Sets kernel-named features, leaving all others as they are (a verbose
    /// bitset with a mask: only the listed bits change).
    public func setFeatures(_ interface: String, _ wanted: [String: Bool]) throws {
        try request(.featuresSet, interface, command: ETHTOOL_MSG_FEATURES_SET, header: ETHTOOL_A_FEATURES_HEADER,
                    flags: UInt32(ETHTOOL_FLAG_OMIT_REPLY), build: { msg in
                        let bitset = try nest(msg, ETHTOOL_A_FEATURES_WANTED)
                        let bits = try nest(msg, ETHTOOL_A_BITSET_BITS)
                        for (name, on) in wanted.sorted(by: { $0.key < $1.key }) {
                            let bit = try nest(msg, ETHTOOL_A_BITSET_BITS_BIT)
                            try check(nla_put_string(msg, Int32(ETHTOOL_A_BITSET_BIT_NAME), name))
                            if on { try check(nla_put_flag(msg, Int32(ETHTOOL_A_BITSET_BIT_VALUE))) }
                            nla_nest_end(msg, bit)
                        }
                        nla_nest_end(msg, bits)
                        nla_nest_end(msg, bitset)
                    })
    }

    // MARK: Private flags

    public func privateFlags(_ interface: String) throws -> [PrivateFlag] {
        var flags: [PrivateFlag] = []
        try request(.privateFlagsGet, interface, command: ETHTOOL_MSG_PRIVFLAGS_GET,
                    header: ETHTOOL_A_PRIVFLAGS_HEADER, reply: { attrs in
            let a = try Attributes(genl: attrs, max: ETHTOOL_A_PRIVFLAGS_MAX)
            let bitset = try Bitset(a[ETHTOOL_A_PRIVFLAGS_FLAGS])
            flags = bitset.names.sorted { $0.key < $1.key }.map { PrivateFlag(name: $0.value, enabled: bitset[$0.key]) }
        })
        return flags
    }

    // MARK: Requests

    private func unwrap<T>(_ value: T?, _ operation: NICOperation, _ interface: String) throws -> T {
        guard let value else {
            throw NICError.kernel(operation: operation, interface: interface, errno: EPROTO, extack: "no reply")
        }
        return value
    }

    /// Sends one ethtool request for `interface` and waits for its ack,
    /// handing every data reply to `reply`. The kernel's errno and
    /// extended-ack text become a ``NICError``.
    func request(
        _ operation: NICOperation, _ interface: String, command: Int, header: Int, flags: UInt32 = 0,
        build: (OpaquePointer) throws -> Void = { _ in },
        reply: ((UnsafeMutablePointer<nlmsghdr>) throws -> Void)? = nil
    ) throws {
        guard InterfaceName.problem(interface) == nil else { throw NICError.notFound(interface: interface) }
        guard let msg = nlmsg_alloc() else {
            throw NICError.kernel(operation: operation, interface: interface, errno: ENOMEM, extack: nil)
        }
        defer { nlmsg_free(msg) }
        guard genlmsg_put(msg, UInt32(NL_AUTO_PORT), UInt32(NL_AUTO_SEQ), familyID, 0, 0,
                          UInt8(command), UInt8(ETHTOOL_GENL_VERSION)) != nil else {
            throw NICError.kernel(operation: operation, interface: interface, errno: ENOMEM, extack: nil)
        }
        do {
            let nested = try nest(msg, header)
            try check(nla_put_string(msg, Int32(ETHTOOL_A_HEADER_DEV_NAME), interface))
            if flags != 0 { try check(nla_put_u32(msg, Int32(ETHTOOL_A_HEADER_FLAGS), flags)) }
            nla_nest_end(msg, nested)
            try build(msg)
        } catch is MessageTooLong {
            throw NICError.invalidArgument("\(operation.ethtoolOption) request for \(interface) does not fit a netlink message")
        }

        let state = RequestState(reply: reply)
        let unmanaged = Unmanaged.passRetained(state)
        defer { unmanaged.release() }
        guard let callbacks = nl_cb_alloc(NL_CB_DEFAULT) else {
            throw NICError.kernel(operation: operation, interface: interface, errno: ENOMEM, extack: nil)
        }
        defer { nl_cb_put(callbacks) }
        let context = unmanaged.toOpaque()
        nl_cb_set(callbacks, NL_CB_VALID, NL_CB_CUSTOM, onValid, context)
        nl_cb_set(callbacks, NL_CB_ACK, NL_CB_CUSTOM, onAck, context)
        nl_cb_set(callbacks, NL_CB_FINISH, NL_CB_CUSTOM, onAck, context)
        nl_cb_err(callbacks, NL_CB_CUSTOM, onError, context)

        try socket.withLock { socket in
            let sent = nl_send_auto(socket.handle, msg)
            guard sent >= 0 else {
                throw NICError.kernel(operation: operation, interface: interface, errno: EIO, extack: Self.libnlError(sent))
            }
            while !state.done {
                let received = nl_recvmsgs(socket.handle, callbacks)
                if state.done { break }
                if received < 0 {
                    throw NICError.kernel(operation: operation, interface: interface, errno: EIO,
                                          extack: Self.libnlError(received))
                }
            }
        }
        if let error = state.replyError { throw error }
        if state.errno != 0 {
            if state.errno == ENODEV { throw NICError.notFound(interface: interface) }
            throw NICError.kernel(operation: operation, interface: interface, errno: state.errno, extack: state.extack)
        }
    }
}

/// libnl's socket, reached only inside `EthtoolNetlink.socket.withLock`.
private struct NetlinkSocket: @unchecked Sendable {
    let handle: OpaquePointer
}

/// SOL_NETLINK from <bits/socket.h>, which Swift's Glibc does not export.
private let solNetlink: Int32 = 270

private struct MessageTooLong: Error {}

private func check(_ result: Int32) throws {
    if result < 0 { throw MessageTooLong() }
}

private func nest(_ msg: OpaquePointer, _ type: Int) throws -> UnsafeMutablePointer<nlattr> {
    // The ethtool family validates strictly: nests must carry NLA_F_NESTED.
    guard let start = nla_nest_start(msg, Int32(type) | Int32(NLA_F_NESTED)) else { throw MessageTooLong() }
    return start
}

private func putU32(_ msg: OpaquePointer, _ type: Int, _ value: UInt32?) throws {
    guard let value else { return }
    try check(nla_put_u32(msg, Int32(type), value))
}

private final class RequestState {
    var done = false
    var errno: Int32 = 0
    var extack: String?
    var replyError: Error?
    let reply: ((UnsafeMutablePointer<nlmsghdr>) throws -> Void)?

    init(reply: ((UnsafeMutablePointer<nlmsghdr>) throws -> Void)?) { self.reply = reply }
}

private let onValid: nl_recvmsg_msg_cb_t = { msg, context in
    let state = Unmanaged<RequestState>.fromOpaque(context!).takeUnretainedValue()
    if let reply = state.reply, state.replyError == nil, let header = nlmsg_hdr(msg) {
        do { try reply(header) } catch { state.replyError = error }
    }
    return Int32(NL_OK.rawValue)
}

private let onAck: nl_recvmsg_msg_cb_t = { _, context in
    Unmanaged<RequestState>.fromOpaque(context!).takeUnretainedValue().done = true
    return Int32(NL_STOP.rawValue)
}

private let onError: nl_recvmsg_err_cb_t = { _, error, context in
    let state = Unmanaged<RequestState>.fromOpaque(context!).takeUnretainedValue()
    state.done = true
    if let error {
        state.errno = -error.pointee.error
        var text = [CChar](repeating: 0, count: 512)
        if sluice_nlmsgerr_extack(error, &text, text.count) > 0 { state.extack = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }
    return Int32(NL_STOP.rawValue)
}

/// Parsed attributes of one message or nest (libnl's nla_parse with no
/// policy: types above `max` are ignored, lengths are bounded by libnl).
struct Attributes {
    private var table: [UnsafeMutablePointer<nlattr>?]

    init(genl header: UnsafeMutablePointer<nlmsghdr>, max: Int) throws {
        table = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: max + 1)
        let result = table.withUnsafeMutableBufferPointer {
            genlmsg_parse(header, 0, $0.baseAddress, Int32(max), nil)
        }
        guard result >= 0 else { throw NICError.netlinkUnavailable("malformed reply: \(EthtoolNetlink.libnlError(result))") }
    }

    init(nested: UnsafeMutablePointer<nlattr>, max: Int) throws {
        table = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: max + 1)
        let result = table.withUnsafeMutableBufferPointer {
            nla_parse_nested($0.baseAddress, Int32(max), nested, nil)
        }
        guard result >= 0 else { throw NICError.netlinkUnavailable("malformed reply: \(EthtoolNetlink.libnlError(result))") }
    }

    subscript(type: Int) -> UnsafeMutablePointer<nlattr>? { type < table.count ? table[type] : nil }

    func u32(_ type: Int) -> UInt32 {
        guard let a = self[type], nla_len(a) >= 4 else { return 0 }
        return nla_get_u32(a)
    }

    func has(_ type: Int) -> Bool { self[type] != nil }

    func string(_ type: Int) -> String? {
        guard let a = self[type], let data = nla_data(a) else { return nil }
        let bytes = UnsafeRawBufferPointer(start: data, count: Int(max(nla_len(a), 0)))
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The attributes inside nest `type`, in order (repeated entries).
    func nested(_ type: Int) -> [UnsafeMutablePointer<nlattr>] {
        guard let parent = self[type] else { return [] }
        return Attributes.children(of: parent)
    }

    static func children(of parent: UnsafeMutablePointer<nlattr>) -> [UnsafeMutablePointer<nlattr>] {
        var result: [UnsafeMutablePointer<nlattr>] = []
        var remaining = nla_len(parent)
        guard var position = nla_data(parent)?.assumingMemoryBound(to: nlattr.self) else { return [] }
        while nla_ok(position, remaining) != 0 {
            result.append(position)
            guard let next = nla_next(position, &remaining) else { break }
            position = next
        }
        return result
    }
}

/// An ethtool netlink bitset, compact (SIZE + VALUE words) or verbose
/// (BITS of INDEX/NAME/VALUE), as the kernel chose to send it.
struct Bitset {
    private var values: [Int: Bool] = [:]
    /// Bit names, when the bitset was verbose.
    var names: [Int: String] = [:]

    init() {}

    init(_ attribute: UnsafeMutablePointer<nlattr>?) throws {
        guard let attribute else { return }
        let a = try Attributes(nested: attribute, max: ETHTOOL_A_BITSET_MAX)
        let noMask = a.has(ETHTOOL_A_BITSET_NOMASK)
        if let value = a[ETHTOOL_A_BITSET_VALUE], let data = nla_data(value) {
            let size = Int(min(a.u32(ETHTOOL_A_BITSET_SIZE), EthtoolIoctl.maximumCount))
            let words = Int(nla_len(value)) / 4
            let raw = UnsafeRawBufferPointer(start: data, count: words * 4)
            for index in 0..<min(size, words * 32) {
                let word = raw.load(fromByteOffset: (index / 32) * 4, as: UInt32.self)
                values[index] = word & (1 << UInt32(index % 32)) != 0
            }
        } else {
            for bit in a.nested(ETHTOOL_A_BITSET_BITS) {
                let b = try Attributes(nested: bit, max: ETHTOOL_A_BITSET_BIT_MAX)
                let index = Int(b.u32(ETHTOOL_A_BITSET_BIT_INDEX))
                // Without a mask, the bits listed are the set ones.
                values[index] = noMask || b.has(ETHTOOL_A_BITSET_BIT_VALUE)
                if let name = b.string(ETHTOOL_A_BITSET_BIT_NAME) { names[index] = name }
            }
        }
    }

    subscript(index: Int) -> Bool { values[index] ?? false }
}
