#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import CXDP
import SluiceProtocol
import SystemPackage

/// An optional kernel feature Sluice looks for: whether this kernel has it,
/// and what Sluice does without it.
///
/// Found by a real probe, never by the kernel's version string: the kernels
/// users run (Debian 12's 6.1, Ubuntu 22.04's 5.15, RHEL 9's 5.14) carry
/// backports, and some builds forbid what their version would allow (BPF_PROG_RUN
/// with live frames answers EPERM even to root on some).
public struct KernelFeature: Sendable, Equatable {
    /// Stable snake_case ids: they are JSON keys in `doctor` and in logs.
    public enum Name: String, Sendable, CaseIterable {
        case xdpLiveFrames = "xdp_live_frames"
        case xdpMultiBuffer = "xdp_multi_buffer"
        case xdpFeatureFlags = "xdp_feature_flags"
        case xdpRxMetadata = "xdp_rx_metadata"
        case xdpLink = "bpf_link_xdp"
        case xskNeedWakeup = "xsk_need_wakeup"
        case xskMultiBuffer = "xsk_multi_buffer"
        case busyPoll = "busy_poll"
    }

    /// found, missing or unknown: the wire's own enumeration.
    public typealias State = KernelFeatureReport.State

    public var name: Name
    public var state: State
    /// What the probe saw: what answered, the errno, or why it could not run.
    public var detail: String

    public init(_ name: Name, _ state: State, _ detail: String) {
        self.name = name
        self.state = state
        self.detail = detail
    }

    /// What an operator searches for.
    public var title: String {
        switch name {
        case .xdpLiveFrames: return "XDP live frames (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES)"
        case .xdpMultiBuffer: return "XDP multi-buffer (BPF_F_XDP_HAS_FRAGS)"
        case .xdpFeatureFlags: return "XDP feature flags (generic netlink family \"netdev\")"
        case .xdpRxMetadata: return "XDP RX metadata kfuncs (bpf_xdp_metadata_rx_timestamp, bpf_xdp_metadata_rx_hash)"
        case .xdpLink: return "BPF links for XDP (BPF_LINK_TYPE_XDP)"
        case .xskNeedWakeup: return "AF_XDP need_wakeup (XDP_USE_NEED_WAKEUP)"
        case .xskMultiBuffer: return "AF_XDP multi-buffer (XDP_USE_SG)"
        case .busyPoll: return "preferred busy polling (SO_PREFER_BUSY_POLL, SO_BUSY_POLL_BUDGET)"
        }
    }

    /// The upstream release that brought it (distribution kernels may have it earlier).
    public var since: String {
        switch name {
        case .xdpLiveFrames, .xdpMultiBuffer: return "5.18"
        case .xdpFeatureFlags, .xdpRxMetadata: return "6.3"
        case .xdpLink: return "5.9"
        case .xskNeedWakeup: return "5.4"
        case .xskMultiBuffer: return "6.6"
        case .busyPoll: return "5.11"
        }
    }

    /// What Sluice does on a kernel without it.
    public var without: String {
        switch name {
        case .xdpLiveFrames:
            return "the traffic generator (sluice-gen) sends with its AF_XDP TX path, at about a quarter of the rate"
        case .xdpMultiBuffer:
            return "frames larger than one UMEM frame (jumbo frames) cannot reach AF_XDP sockets"
        case .xdpFeatureFlags:
            return "zero-copy ability is learned by trying the bind (and from the driver plugin's table), not asked of the driver"
        case .xdpRxMetadata:
            return "no hardware receive timestamp or RSS hash per packet: the plain XDP program runs (rx_metadata falls back), pcap stamps the receive time, count hashes the headers"
        case .xdpLink:
            return "no pipeline can start: Sluice attaches its XDP program only through a BPF link, so that a killed daemon leaves no program behind"
        case .xskNeedWakeup:
            return "sockets bind without XDP_USE_NEED_WAKEUP: the driver polls the fill ring by itself (more softirq CPU), the RX threads still sleep in poll(), and transmitting modules kick the kernel after every batch"
        case .xskMultiBuffer:
            return "packets larger than one UMEM frame cannot reach AF_XDP sockets: a pipeline whose MTU needs them refuses to start, naming the MTU, the frame size and the fixes"
        case .busyPoll:
            return "a pipeline with busy_poll = true refuses to start (turn it off: RX threads then sleep in poll() until the interrupt wakes them)"
        }
    }
}

extension KernelFeature {
    /// As `doctor` reports it.
    public var report: KernelFeatureReport {
        KernelFeatureReport(name: name.rawValue, title: title, since: since, state: state, detail: detail, without: without)
    }
}

/// The probes, one per ``KernelFeature/Name``. Each takes milliseconds and
/// leaves nothing behind: programs are loaded and closed, never attached;
/// sockets are opened, asked and closed. They block (bpf(2), netlink, a
/// few MB of BTF): run them off the event loops.
public enum KernelFeatures {
    /// This kernel's features, probed once per process on first use; the
    /// data path decides by these (need_wakeup, links) and the daemon
    /// reports them at start and in `doctor`.
    public static let detected: [KernelFeature] = probe()

    public static func detected(_ name: KernelFeature.Name) -> KernelFeature {
        detected.first { $0.name == name } ?? KernelFeature(name, .unknown, "not probed")
    }

    /// Probes every feature now, in ``KernelFeature/Name/allCases`` order.
    public static func probe() -> [KernelFeature] {
        // Parsed once (a few MB) for the two probes that read it.
        let btf = VmlinuxBTF()
        defer { btf.close() }
        return KernelFeature.Name.allCases.map { name in
            switch name {
            case .xdpLiveFrames: return probeLiveFrames()
            case .xdpMultiBuffer: return probeMultiBuffer()
            case .xdpFeatureFlags: return probeFeatureFlags()
            case .xdpRxMetadata: return probeRxMetadata(btf)
            case .xdpLink: return probeXDPLink(btf)
            case .xskNeedWakeup: return probeNeedWakeup()
            case .xskMultiBuffer: return probeSocketMultiBuffer()
            case .busyPoll: return probeBusyPoll()
            }
        }
    }

    /// An XDP_DROP program run once by BPF_PROG_RUN, first plainly (can we
    /// probe at all?), then with live frames. The refusal test is the one
    /// sluice-gen falls back on (sluice_live_frames.h), so the report and
    /// the generator agree. The one frame is dropped: nothing is sent.
    static func probeLiveFrames() -> KernelFeature {
        let name = KernelFeature.Name.xdpLiveFrames
        let program = sluice_probe_load_xdp_drop(0)
        guard program >= 0 else { return KernelFeature(name, .unknown, cannotLoadProgram(-program)) }
        defer { Glibc.close(program) }
        let plain = sluice_probe_test_run_xdp(program, 0)
        guard plain == 0 else {
            return KernelFeature(name, .unknown, "BPF_PROG_RUN of an XDP program fails even without live frames: \(describe(plain))")
        }
        let live = sluice_probe_test_run_xdp(program, UInt32(BPF_F_TEST_XDP_LIVE_FRAMES))
        if live == 0 { return KernelFeature(name, .found, "BPF_PROG_RUN ran an XDP program with live frames") }
        if sluice_xdp_live_frames_refused(live) {
            return KernelFeature(name, .missing, "BPF_PROG_RUN with live frames refused: \(describe(live))")
        }
        return KernelFeature(name, .unknown, "BPF_PROG_RUN with live frames failed: \(describe(live))")
    }

    /// The same two-instruction program loaded with and without
    /// BPF_F_XDP_HAS_FRAGS: a kernel that does not know the flag refuses it
    /// (EINVAL) while loading the plain one.
    static func probeMultiBuffer() -> KernelFeature {
        let name = KernelFeature.Name.xdpMultiBuffer
        let plain = sluice_probe_load_xdp_drop(0)
        guard plain >= 0 else { return KernelFeature(name, .unknown, cannotLoadProgram(-plain)) }
        Glibc.close(plain)
        let fragments = sluice_probe_load_xdp_drop(UInt32(BPF_F_XDP_HAS_FRAGS))
        guard fragments >= 0 else {
            return KernelFeature(name, .missing, "an XDP program with BPF_F_XDP_HAS_FRAGS is refused: \(describe(-fragments))")
        }
        Glibc.close(fragments)
        return KernelFeature(name, .found, "an XDP program with BPF_F_XDP_HAS_FRAGS loads")
    }

    /// The "netdev" generic netlink family carries the XDP feature flags
    /// (NETDEV_CMD_DEV_GET); the controller answers ENOENT for an unknown family.
    static func probeFeatureFlags() -> KernelFeature {
        let name = KernelFeature.Name.xdpFeatureFlags
        guard let socket = nl_socket_alloc() else { return KernelFeature(name, .unknown, "nl_socket_alloc failed") }
        defer { nl_socket_free(socket) }
        let connected = genl_connect(socket)
        guard connected >= 0 else {
            return KernelFeature(name, .unknown, "generic netlink: \(String(cString: nl_geterror(connected)))")
        }
        let family = genl_ctrl_resolve(socket, "netdev")
        if family >= 0 { return KernelFeature(name, .found, "generic netlink family \"netdev\" has id \(family)") }
        if family == -NLE_OBJ_NOTFOUND {
            return KernelFeature(name, .missing, "no generic netlink family \"netdev\"")
        }
        return KernelFeature(name, .unknown, "resolving the \"netdev\" family: \(String(cString: nl_geterror(family)))")
    }

    static let metadataKfuncs = ["bpf_xdp_metadata_rx_timestamp", "bpf_xdp_metadata_rx_hash"]

    /// Kfuncs are described in vmlinux BTF as FUNCs of that name.
    static func probeRxMetadata(_ btf: VmlinuxBTF) -> KernelFeature {
        let name = KernelFeature.Name.xdpRxMetadata
        guard let handle = btf.handle else { return KernelFeature(name, .unknown, btf.problem) }
        let present = metadataKfuncs.filter { sluice_btf_has_func(handle, $0) }
        if present.isEmpty { return KernelFeature(name, .missing, "vmlinux BTF has no FUNC \(metadataKfuncs.joined(separator: " or "))") }
        if present.count < metadataKfuncs.count {
            return KernelFeature(name, .found, "vmlinux BTF has only FUNC \(present.joined(separator: ", "))")
        }
        return KernelFeature(name, .found, "vmlinux BTF has FUNC \(present.joined(separator: " and "))")
    }

    /// `enum bpf_link_type` names every kind of link the kernel can make;
    /// BPF_LINK_TYPE_XDP came with XDP links. (A link_create on a made-up
    /// interface cannot tell: old and new kernels both answer EINVAL, and
    /// a real interface must not be touched by a probe.)
    static func probeXDPLink(_ btf: VmlinuxBTF) -> KernelFeature {
        let name = KernelFeature.Name.xdpLink
        guard let handle = btf.handle else { return KernelFeature(name, .unknown, btf.problem) }
        switch sluice_btf_enum_has_value(handle, "bpf_link_type", "BPF_LINK_TYPE_XDP") {
        case 1: return KernelFeature(name, .found, "vmlinux BTF: enum bpf_link_type has BPF_LINK_TYPE_XDP")
        case 0: return KernelFeature(name, .missing, "vmlinux BTF: enum bpf_link_type has no BPF_LINK_TYPE_XDP")
        default: return KernelFeature(name, .missing, "vmlinux BTF has no enum bpf_link_type (no BPF links at all)")
        }
    }

    /// XDP_MMAP_OFFSETS grew a `flags` offset per ring with need_wakeup;
    /// the kernel writes the struct it knows and sets the length to its
    /// size, which is how libxdp tells the old layout (xsk_get_mmap_offsets).
    static func probeNeedWakeup() -> KernelFeature {
        let name = KernelFeature.Name.xskNeedWakeup
        let (descriptor, failure) = probeSocket(for: name)
        if let failure { return failure }
        defer { Glibc.close(descriptor) }
        var offsets = xdp_mmap_offsets()
        var length = socklen_t(MemoryLayout<xdp_mmap_offsets>.size)
        guard getsockopt(descriptor, solXDP, XDP_MMAP_OFFSETS, &offsets, &length) == 0 else {
            return KernelFeature(name, .unknown, "getsockopt(XDP_MMAP_OFFSETS): \(describe(Glibc.errno))")
        }
        // Four rings of (producer, consumer, desc[, flags]) offsets, 8 bytes each.
        let withFlags = 4 * 4 * MemoryLayout<UInt64>.size, withoutFlags = 4 * 3 * MemoryLayout<UInt64>.size
        switch Int(length) {
        case withFlags: return KernelFeature(name, .found, "XDP_MMAP_OFFSETS has the rings' flags offsets (\(length) bytes)")
        case withoutFlags: return KernelFeature(name, .missing, "XDP_MMAP_OFFSETS has no flags offsets (\(length) bytes: the layout before 5.4)")
        default: return KernelFeature(name, .unknown, "XDP_MMAP_OFFSETS answered \(length) bytes, a layout Sluice does not know")
        }
    }

    /// An AF_XDP socket to ask, or what its absence says about `name`.
    private static func probeSocket(for name: KernelFeature.Name) -> (Int32, KernelFeature?) {
        let descriptor = socket(afXDP, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor < 0 else { return (descriptor, nil) }
        let error = Glibc.errno
        if error == EAFNOSUPPORT {
            return (-1, KernelFeature(name, .missing, "no AF_XDP sockets at all (socket: \(describe(error)))"))
        }
        return (-1, KernelFeature(name, .unknown, "cannot open an AF_XDP socket: \(describe(error))"))
    }

    /// A bind to no interface checks the flags first: a kernel without
    /// XDP_USE_SG answers EINVAL, one with it goes on to look the device up
    /// and answers ENODEV. Nothing is bound.
    static func probeSocketMultiBuffer() -> KernelFeature {
        let name = KernelFeature.Name.xskMultiBuffer
        let (descriptor, failure) = probeSocket(for: name)
        if let failure { return failure }
        defer { Glibc.close(descriptor) }
        var address = sockaddr_xdp()
        address.sxdp_family = UInt16(afXDP)
        address.sxdp_flags = XSKSocket.useScatterGather | UInt16(XDP_COPY)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_xdp>.size))
            }
        }
        let error = Glibc.errno
        switch (result, error) {
        case (0, _): return KernelFeature(name, .unknown, "a bind with XDP_USE_SG to no interface succeeded")
        case (_, EINVAL): return KernelFeature(name, .missing, "a bind with XDP_USE_SG is refused: \(describe(error))")
        case (_, ENODEV): return KernelFeature(name, .found, "a bind with XDP_USE_SG gets past the flags (\(describe(error)) for no interface)")
        default: return KernelFeature(name, .unknown, "a bind with XDP_USE_SG to no interface: \(describe(error))")
        }
    }

    /// Setting both options to 0 needs no capability (raising them needs
    /// CAP_NET_ADMIN); a kernel without them, or built without
    /// CONFIG_NET_RX_BUSY_POLL, answers ENOPROTOOPT.
    static func probeBusyPoll() -> KernelFeature {
        let name = KernelFeature.Name.busyPoll
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return KernelFeature(name, .unknown, "cannot open a UDP socket: \(describe(Glibc.errno))") }
        defer { Glibc.close(descriptor) }
        for (option, optionName) in [(soPreferBusyPoll, "SO_PREFER_BUSY_POLL"), (soBusyPollBudget, "SO_BUSY_POLL_BUDGET")] {
            var zero: Int32 = 0
            guard setsockopt(descriptor, SOL_SOCKET, option, &zero, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                let error = Glibc.errno
                return KernelFeature(name, error == ENOPROTOOPT ? .missing : .unknown, "setsockopt(\(optionName)): \(describe(error))")
            }
        }
        return KernelFeature(name, .found, "setsockopt accepts SO_PREFER_BUSY_POLL and SO_BUSY_POLL_BUDGET")
    }

    // Not in every libc's headers (glibc before 2.35 lacks the busy-poll ones).
    static let afXDP: Int32 = 44
    static let solXDP: Int32 = 283
    static let soPreferBusyPoll: Int32 = 69
    static let soBusyPollBudget: Int32 = 70

    private static func cannotLoadProgram(_ error: Int32) -> String {
        "cannot load an XDP program to probe with (needs CAP_BPF, or CAP_SYS_ADMIN before 5.8): \(describe(error))"
    }

    static func describe(_ error: Int32) -> String {
        Errno(rawValue: error).described
    }
}

/// The kernel's own BTF (/sys/kernel/btf/vmlinux), through libbpf, or why
/// it cannot be read (a kernel built without CONFIG_DEBUG_INFO_BTF).
final class VmlinuxBTF {
    private(set) var handle: OpaquePointer?
    let problem: String

    init() {
        if let loaded = btf__load_vmlinux_btf() {
            handle = loaded
            problem = ""
        } else {
            problem = "cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): \(KernelFeatures.describe(Glibc.errno))"
        }
    }

    func close() {
        if let handle { btf__free(handle) }
        handle = nil
    }

    deinit { close() }
}
