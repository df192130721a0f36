import SluiceProtocol

#if canImport(Glibc)
import Glibc
#endif
import CXDP
import Foundation
import Logging
import SystemPackage

extension XDPAttachMode {
    var flags: UInt32 {
        switch self {
        case .native: return UInt32(XDP_FLAGS_DRV_MODE)
        case .skb: return UInt32(XDP_FLAGS_SKB_MODE)
        }
    }
}

/// Which traffic the XDP program hands to Sluice; the rest goes to the kernel.
public struct Prefilter: Sendable, Codable, Equatable {
    public enum TransportProtocol: String, Sendable, Codable, CaseIterable {
        case udp, tcp, icmp
        var bit: UInt32 {
            switch self {
            case .udp: return 1
            case .tcp: return 2
            case .icmp: return 4
            }
        }
    }

    public static let maximumPortRanges = 8

    public var protocols: Set<TransportProtocol>
    /// UDP/TCP destination ports; empty means any.
    public var destinationPorts: [ClosedRange<UInt16>]

    public init(protocols: Set<TransportProtocol>, destinationPorts: [ClosedRange<UInt16>] = []) {
        self.protocols = protocols
        self.destinationPorts = destinationPorts
    }
}

/// Sluice's XDP program on one interface, attached through a BPF link: the
/// kernel detaches it when the link's last descriptor closes, so a process
/// that dies (even by SIGKILL) leaves no program behind, and the attach fails
/// with EBUSY rather than replacing a program someone else attached.
public final class XDPProgram {
    public let interface: String
    public let interfaceIndex: Int32
    public let mode: XDPAttachMode
    /// Entries in each per-queue map (the XSKMAP's max_entries).
    public let mapEntries: Int
    /// Loaded frags-aware (BPF_F_XDP_HAS_FRAGS): the driver may hand it
    /// packets larger than a page, which reach AF_XDP as chains.
    public let fragments: Bool
    /// The kernel's id for the loaded program (as `ip link` and bpftool show it).
    public private(set) var programID: UInt32 = 0
    /// Whether the loaded program is the device-bound variant that stores
    /// the driver's RX metadata before each frame (``RxMetadata``), and why
    /// (not). The availability fields are filled by ``rxMetadataStatus()``.
    public private(set) var rxMetadata = RxMetadataStatus(inUse: false, reason: "")

    private var object: OpaquePointer?
    private var linkDescriptor: Int32 = -1
    private var xskMap: Int32 = -1
    private var queueToKeyMap: Int32 = -1
    private var prefilterMap: Int32 = -1
    private var countersMap: Int32 = -1

    static let noKey = UInt32.max
    public static let maximumMapEntries = 4096

    /// Loads the program with maps of `mapEntries` entries (at least the
    /// interface's rx-queue count and every key used), fills `queueToKey`
    /// (rx queue → XSKMAP key; other queues pass) and the prefilter, and
    /// attaches it.
    ///
    /// With `rxMetadata` (and `rxMetadataReaders`: a module reads it) the
    /// device-bound metadata variant is loaded where the kernel has the
    /// kfuncs and XDP attaches natively; when that load
    /// fails the plain program is loaded instead and ``rxMetadata`` says why.
    public init(
        interface: String, mode: XDPAttachMode, mapEntries: Int,
        queueToKey: [UInt32: UInt32], prefilter: Prefilter?, fragments: Bool = false,
        rxMetadata wantsRxMetadata: Bool = false, rxMetadataReaders: Bool = true
    ) throws {
        self.interface = interface
        self.mode = mode
        self.fragments = fragments
        try XDPProgram.requireLinks(KernelFeatures.detected(.xdpLink), interface: interface)
        interfaceIndex = try InterfaceFacts.index(interface)
        guard mapEntries >= 1, mapEntries <= XDPProgram.maximumMapEntries else {
            throw DataPathError("XSKMAP size \(mapEntries) for \(interface) is outside 1...\(XDPProgram.maximumMapEntries)")
        }
        for (queue, key) in queueToKey where Int(queue) >= mapEntries || Int(key) >= mapEntries {
            throw DataPathError(
                "queue \(queue) → XSKMAP key \(key) on \(interface) does not fit maps of \(mapEntries) entries")
        }
        self.mapEntries = mapEntries
        if let prefilter, prefilter.destinationPorts.count > Prefilter.maximumPortRanges {
            throw DataPathError("prefilter for \(interface) has \(prefilter.destinationPorts.count) port ranges; at most \(Prefilter.maximumPortRanges)")
        }

        let choice = XDPProgram.rxMetadataChoice(
            requested: wantsRxMetadata, readers: rxMetadataReaders, interface: interface, mode: mode,
            feature: KernelFeatures.detected(.xdpRxMetadata))
        var loaded: OpaquePointer?
        if choice.inUse {
            do {
                loaded = try XDPProgram.load(
                    EmbeddedBPF.sluice_xdp_meta, name: "sluice_xdp_meta", interface: interface,
                    mapEntries: mapEntries, fragments: fragments,
                    deviceBoundTo: try XDPProgram.deviceBoundIndex(interfaceIndex))
                rxMetadata = RxMetadataStatus(inUse: true, reason: choice.reason)
            } catch {
                rxMetadata = RxMetadataStatus(
                    inUse: false,
                    reason: "the device-bound metadata program did not load on \(interface) (\(error)); "
                        + "running the plain program without RX metadata")
                XDPProgram.logger.warning("\(rxMetadata.reason)")
            }
        } else {
            rxMetadata = RxMetadataStatus(inUse: false, reason: choice.reason)
        }
        let object = try loaded ?? XDPProgram.load(
            EmbeddedBPF.sluice_xdp, name: "sluice_xdp", interface: interface, mapEntries: mapEntries,
            fragments: fragments, deviceBoundTo: nil)
        self.object = object
        func map(_ name: String) throws -> OpaquePointer {
            guard let map = bpf_object__find_map_by_name(object, name) else {
                throw DataPathError("Sluice's XDP object has no map \(name) (build problem)")
            }
            return map
        }
        do {
            let maps = try ["xsks_map", "queue_to_key", "queue_counters"].map(map)
            xskMap = bpf_map__fd(maps[0])
            queueToKeyMap = bpf_map__fd(maps[1])
            countersMap = bpf_map__fd(maps[2])
            prefilterMap = bpf_map__fd(try map("prefilter"))
            try writeQueueMapping(queueToKey)
            try writePrefilter(prefilter)
            try attach()
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    private static let logger = Logger(label: "sluice.datapath")

    /// BPF_F_XDP_DEV_BOUND_ONLY (Linux 6.3; not in 6.1's UAPI headers): the
    /// program may use the device's XDP metadata kfuncs, and attaches to
    /// that device only.
    static let deviceBoundOnlyFlag: UInt32 = 1 << 6

    /// Test switch: set to 1, the metadata program is bound to the loopback
    /// device instead, which has no native XDP, so the kernel refuses the
    /// device-bound load as it refuses one for a driver it cannot bind to,
    /// and the fallback to the plain program runs for real. Only tests set it.
    public static let refuseDeviceBoundSwitch = "SLUICE_TEST_REFUSE_DEVICE_BOUND"

    /// The interface the metadata program is bound to: `interfaceIndex`,
    /// or loopback's under ``refuseDeviceBoundSwitch``.
    private static func deviceBoundIndex(_ interfaceIndex: Int32) throws -> Int32 {
        guard let value = getenv(refuseDeviceBoundSwitch), String(cString: value) == "1" else { return interfaceIndex }
        logger.warning("\(refuseDeviceBoundSwitch)=1: binding the metadata program to lo, which refuses it")
        return try InterfaceFacts.index("lo")
    }

    /// Whether to try the metadata variant, and the reason reported either way.
    static func rxMetadataChoice(
        requested: Bool, readers: Bool, interface: String, mode: XDPAttachMode, feature: KernelFeature
    ) -> (inUse: Bool, reason: String) {
        guard requested else { return (false, "rx_metadata = \"off\" for \(interface)") }
        guard readers else {
            return (false, "no module of the chain on \(interface) reads RX metadata (pcap and count do): the plain program costs less per packet")
        }
        guard mode == .native else {
            return (false, "XDP runs in skb (generic) mode on \(interface): device-bound programs, which the metadata kfuncs need, attach in native mode only")
        }
        guard feature.state == .found else {
            return (false, "this kernel has no \(feature.title) (since Linux \(feature.since); \(feature.detail))")
        }
        return (true, "device-bound program on \(interface) with the metadata kfuncs (\(feature.detail))")
    }

    /// Opens one of the embedded objects, sizes its per-queue maps and loads
    /// it, device-bound to `deviceBoundTo` when given. Closes it on failure.
    private static func load(
        _ base64: String, name: String, interface: String, mapEntries: Int, fragments: Bool,
        deviceBoundTo interfaceIndex: Int32?
    ) throws -> OpaquePointer {
        guard let bytes = Data(base64Encoded: base64) else {
            throw DataPathError("the embedded XDP object \(name) is not valid base64 (build problem)")
        }
        let object: OpaquePointer = try bytes.withUnsafeBytes { raw in
            try name.withCString { name in
                guard let object = sluice_bpf_object_open_mem(raw.baseAddress, raw.count, name) else {
                    throw DataPathError("opening Sluice's XDP object", errno: Errno(rawValue: Glibc.errno))
                }
                return object
            }
        }
        do {
            for mapName in ["xsks_map", "queue_to_key", "queue_counters"] {
                guard let map = bpf_object__find_map_by_name(object, mapName) else {
                    throw DataPathError("Sluice's XDP object has no map \(mapName) (build problem)")
                }
                let result = bpf_map__set_max_entries(map, UInt32(mapEntries))
                guard result == 0 else { throw DataPathError("sizing XDP map to \(mapEntries)", negativeErrno: result) }
            }
            guard let program = bpf_object__find_program_by_name(object, "sluice_xdp") else {
                throw DataPathError("Sluice's XDP object \(name) has no program sluice_xdp (build problem)")
            }
            if fragments {
                // The program reads only the first buffer's headers, which
                // is what a frags-aware program may rely on.
                let flagged = bpf_program__set_flags(program, bpf_program__flags(program) | UInt32(BPF_F_XDP_HAS_FRAGS))
                guard flagged == 0 else { throw DataPathError("declaring \(name) frags-aware", negativeErrno: flagged) }
            }
            if let interfaceIndex {
                bpf_program__set_ifindex(program, UInt32(bitPattern: interfaceIndex))
                // Or'ed in: the frags flag stays.
                let flagged = bpf_program__set_flags(program, bpf_program__flags(program) | deviceBoundOnlyFlag)
                guard flagged == 0 else { throw DataPathError("flagging \(name) device-bound", negativeErrno: flagged) }
            }
            let loaded = bpf_object__load(object)
            guard loaded == 0 else {
                throw DataPathError(
                    "loading Sluice's XDP program for \(interface) (needs CAP_BPF and CAP_NET_ADMIN; the libbpf log above says more)",
                    negativeErrno: loaded)
            }
            return object
        } catch {
            bpf_object__close(object)
            throw error
        }
    }

    /// Refuses, before anything is loaded, on a kernel the probe found
    /// without BPF links for XDP (before 5.9): attaching through netlink
    /// instead would leave the program behind when the daemon is killed.
    /// Unknown (no BTF to tell) tries the attach, which then says EINVAL.
    static func requireLinks(_ feature: KernelFeature, interface: String) throws {
        guard feature.state == .missing else { return }
        throw DataPathError(
            "cannot attach Sluice's XDP program to \(interface): this kernel has no \(feature.title), "
                + "which came with Linux \(feature.since) (\(feature.detail)); Sluice attaches only through a BPF link, "
                + "so that a killed daemon leaves no program behind: run a kernel with XDP links")
    }

    private func writeQueueMapping(_ queueToKey: [UInt32: UInt32]) throws {
        for queue in 0..<UInt32(mapEntries) {
            var queue = queue
            var key = queueToKey[queue] ?? XDPProgram.noKey
            let result = bpf_map_update_elem(queueToKeyMap, &queue, &key, UInt64(BPF_ANY))
            guard result == 0 else { throw DataPathError("setting XSKMAP key for queue \(queue) of \(interface)", negativeErrno: result) }
        }
    }

    /// Mirrors `struct sluice_prefilter` in sluice_xdp.bpf.c.
    private func writePrefilter(_ prefilter: Prefilter?) throws {
        var words = [UInt32](repeating: 0, count: 4 + Prefilter.maximumPortRanges)
        if let prefilter {
            words[0] = 1
            words[1] = prefilter.protocols.reduce(0) { $0 | $1.bit }
            words[2] = UInt32(prefilter.destinationPorts.count)
            for (index, range) in prefilter.destinationPorts.enumerated() {
                // Two __u16 in memory order: first, last (little- or big-endian alike).
                withUnsafeMutableBytes(of: &words[4 + index]) { raw in
                    raw.storeBytes(of: range.lowerBound, toByteOffset: 0, as: UInt16.self)
                    raw.storeBytes(of: range.upperBound, toByteOffset: 2, as: UInt16.self)
                }
            }
        }
        var zero: UInt32 = 0
        let result = words.withUnsafeMutableBytes { bpf_map_update_elem(prefilterMap, &zero, $0.baseAddress, UInt64(BPF_ANY)) }
        guard result == 0 else { throw DataPathError("writing the prefilter of \(interface)", negativeErrno: result) }
    }

    private func attach() throws {
        guard let program = bpf_object__find_program_by_name(object, "sluice_xdp") else {
            throw DataPathError("Sluice's XDP object has no program sluice_xdp (build problem)")
        }
        let link = sluice_bpf_link_create_xdp(bpf_program__fd(program), interfaceIndex, mode.flags)
        guard link >= 0 else {
            let errno = Errno(rawValue: -link)
            if errno == .resourceBusy || errno == .fileExists {
                throw DataPathError(foreignProgramMessage(), errno: errno)
            }
            var linkHint = errno == .invalidArgument && KernelFeatures.detected(.xdpLink).state != .found
                ? " (kernels without BPF links for XDP, before 5.9, answer EINVAL here)" : ""
            if errno == Errno(rawValue: ERANGE) && !fragments {
                linkHint = " (veth answers ERANGE when its peer's MTU needs multi-buffer: lower the peer's MTU, or see multi_buffer)"
            }
            throw DataPathError("attaching Sluice's XDP program to \(interface) in \(mode.rawValue) mode\(linkHint)", errno: errno)
        }
        linkDescriptor = link
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        if bpf_obj_get_info_by_fd(bpf_program__fd(program), &info, &length) == 0 { programID = info.id }
    }

    private func foreignProgramMessage() -> String {
        let id = XDPProgram.attachedProgramID(interfaceIndex: interfaceIndex)
        let which = id.map { " (id \($0))" } ?? ""
        if let id, XDPProgram.programName(id: id) == "sluice_xdp",
           XDPProgram.hasXDPLink(interfaceIndex: interfaceIndex, programID: id) {
            return "\(interface) already has Sluice's XDP program\(which), attached by another pipeline or sluiced; "
                + "stop that one first"
        }
        return "\(interface) already has an XDP program\(which) that Sluice did not attach; "
            + "remove it with `ip link set dev \(interface) xdp off`"
    }

    /// The id of any XDP program on the interface (driver, generic or
    /// offloaded), or nil. One query per mode: `bpf_xdp_query_id` with a
    /// mode flag answers for that mode alone.
    public static func attachedProgramID(interfaceIndex: Int32) -> UInt32? {
        for mode in [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, XDP_FLAGS_HW_MODE] {
            var id: UInt32 = 0
            if bpf_xdp_query_id(interfaceIndex, Int32(mode), &id) == 0, id != 0 { return id }
        }
        return nil
    }

    /// The name of a loaded BPF program, or nil when it cannot be read.
    static func programName(id: UInt32) -> String? {
        let descriptor = bpf_prog_get_fd_by_id(id)
        guard descriptor >= 0 else { return nil }
        defer { Glibc.close(descriptor) }
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(descriptor, &info, &length) == 0 else { return nil }
        return withUnsafeBytes(of: info.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Whether the program is attached to the interface through a BPF link
    /// (as Sluice attaches), not through netlink (as `ip link` attaches).
    static func hasXDPLink(interfaceIndex: Int32, programID: UInt32) -> Bool {
        var id: UInt32 = 0
        while bpf_link_get_next_id(id, &id) == 0 {
            let descriptor = bpf_link_get_fd_by_id(id)
            guard descriptor >= 0 else { continue }
            defer { Glibc.close(descriptor) }
            var info = bpf_link_info()
            var length = UInt32(MemoryLayout<bpf_link_info>.size)
            guard bpf_obj_get_info_by_fd(descriptor, &info, &length) == 0 else { continue }
            if info.type == BPF_LINK_TYPE_XDP.rawValue, info.prog_id == programID,
               info.xdp.ifindex == UInt32(bitPattern: interfaceIndex) {
                return true
            }
        }
        return false
    }

    /// Sends frames arriving on rx `queue` to XSKMAP `key`, or (nil) back to
    /// the kernel. Set once a socket is bound, since the queue that socket
    /// reads depends on the mode the bind ended up in.
    public func route(queue: UInt32, key: UInt32?) throws {
        guard Int(queue) < mapEntries, key.map({ Int($0) < mapEntries }) ?? true else {
            throw DataPathError(
                "queue \(queue) → XSKMAP key \(key.map(String.init) ?? "none") on \(interface) does not fit maps of \(mapEntries) entries")
        }
        var queue = queue
        var value = key ?? XDPProgram.noKey
        let result = bpf_map_update_elem(queueToKeyMap, &queue, &value, UInt64(BPF_ANY))
        guard result == 0 else { throw DataPathError("setting XSKMAP key for queue \(queue) of \(interface)", negativeErrno: result) }
    }

    /// Puts an AF_XDP socket at `key` of the XSKMAP.
    public func register(socketDescriptor: Int32, key: UInt32) throws {
        guard Int(key) < mapEntries else { throw DataPathError("XSKMAP key \(key) on \(interface) beyond \(mapEntries) entries") }
        var key = key
        var descriptor = socketDescriptor
        let result = bpf_map_update_elem(xskMap, &key, &descriptor, UInt64(BPF_ANY))
        guard result == 0 else { throw DataPathError("adding the socket at XSKMAP key \(key) of \(interface)", negativeErrno: result) }
    }

    public func unregister(key: UInt32) {
        var key = key
        _ = bpf_map_delete_elem(xskMap, &key)
    }

    /// Words of `struct sluice_queue_counters` in sluice_xdp.bpf.c, in order.
    static let counterWords = 9

    /// The per-queue counters, summed over all possible CPUs. The metadata
    /// counters stay 0 with the plain program.
    public func counters() -> [XDPQueueCounters] {
        let cpus = Int(max(1, libbpf_num_possible_cpus()))
        let words = Self.counterWords
        var values = [UInt64](repeating: 0, count: words * cpus)  // 72 bytes per CPU, already 8-aligned
        return (0..<mapEntries).map { queue in
            var key = UInt32(queue)
            let found = values.withUnsafeMutableBytes { bpf_map_lookup_elem(countersMap, &key, $0.baseAddress) } == 0
            var sums = [UInt64](repeating: 0, count: words)
            if found {
                for cpu in 0..<cpus {
                    for word in 0..<words { sums[word] &+= values[words * cpu + word] }
                }
            }
            var counters = XDPQueueCounters(queue: queue, redirected: sums[0], passed: sums[1], redirectFailed: sums[2])
            // Always there (zero from the plain program): the reply has one shape on every kernel.
            counters.metadataWritten = sums[3]
            counters.metadataNoRoom = sums[4]
            counters.timestampUnsupported = sums[5]
            counters.timestampAbsent = sums[6]
            counters.hashUnsupported = sums[7]
            counters.hashAbsent = sums[8]
            return counters
        }
    }

    /// ``rxMetadata`` with what the driver gave so far, judged from `counters`.
    public func rxMetadataStatus(_ counters: [XDPQueueCounters]) -> RxMetadataStatus {
        var status = rxMetadata
        guard status.inUse else { return status }
        status.timestamp = Self.availability(of: \.timestampUnsupported, \.timestampAbsent, in: counters)
        status.hash = Self.availability(of: \.hashUnsupported, \.hashAbsent, in: counters)
        return status
    }

    /// One kind of metadata over all queues: unseen before any frame, else
    /// unsupported once the driver said EOPNOTSUPP, provided when some frame
    /// carried it, absent when none did.
    static func availability(
        of unsupported: KeyPath<XDPQueueCounters, UInt64?>, _ absent: KeyPath<XDPQueueCounters, UInt64?>,
        in counters: [XDPQueueCounters]
    ) -> RxMetadataStatus.Availability {
        func sum(_ counter: KeyPath<XDPQueueCounters, UInt64?>) -> UInt64 {
            counters.reduce(0) { $0 &+ ($1[keyPath: counter] ?? 0) }
        }
        let written = sum(\.metadataWritten)
        if written == 0 { return .unseen }
        if sum(unsupported) > 0 { return .unsupported }
        return sum(absent) < written ? .provided : .absent
    }

    /// Detaches (closing the link) and frees the program and its maps.
    public func close() {
        if linkDescriptor >= 0 {
            // Detach now: closing alone detaches only when the last copy of
            // the descriptor goes, and a child forked by another thread holds
            // one until it execs — long enough for the next attach to meet
            // EBUSY. Kernels without BPF_LINK_DETACH detach on the close.
            _ = bpf_link_detach(linkDescriptor)
            Glibc.close(linkDescriptor)
            linkDescriptor = -1
        }
        if let object {
            bpf_object__close(object)
            self.object = nil
        }
    }
}
