@_exported import SluiceProtocol
import Foundation
import Logging
import SluiceModules
import SluiceProtocol
import SluiceSystem
import Synchronization

/// Channel *i* as the driver plugin maps it: the queue its socket binds to
/// and the XSKMAP key XDP uses for frames arriving on that queue.
public struct ChannelBinding: Sendable, Codable, Equatable {
    public var channel: Int
    public var bindQueue: UInt32
    public var xskmapKey: UInt32

    public init(channel: Int, bindQueue: UInt32, xskmapKey: UInt32) {
        self.channel = channel
        self.bindQueue = bindQueue
        self.xskmapKey = xskmapKey
    }

    /// Identity mapping (every driver but old mlx5).
    public static func identity(channel: Int) -> ChannelBinding {
        ChannelBinding(channel: channel, bindQueue: UInt32(channel), xskmapKey: UInt32(channel))
    }
}

/// Channel *i* mapped by the driver plugin once for each way its socket can
/// bind. Zero-copy reads the queue some drivers number apart (mlx5 before
/// Linux 6.1: its XSK queue at channels + *i*), copy mode and XDP in skb mode
/// read the channel's own queue. A socket that binds in another mode than
/// the one tried first takes that mode's binding, queue and XSKMAP key alike.
public struct ChannelPlan: Sendable, Codable, Equatable {
    public var zeroCopy: ChannelBinding
    public var copy: ChannelBinding

    public init(zeroCopy: ChannelBinding, copy: ChannelBinding) {
        self.zeroCopy = zeroCopy
        self.copy = copy
    }

    /// One binding whatever the mode (every driver but old mlx5).
    public static func same(_ binding: ChannelBinding) -> ChannelPlan { ChannelPlan(zeroCopy: binding, copy: binding) }

    public var channel: Int { zeroCopy.channel }
    public func binding(zeroCopy: Bool) -> ChannelBinding { zeroCopy ? self.zeroCopy : copy }
}

/// Whether a pipeline receives packets larger than one UMEM frame as
/// chains of frames (XDP multi-buffer: a frags-aware XDP program, sockets
/// bound with XDP_USE_SG).
public enum MultiBufferMode: String, Sendable, Codable, CaseIterable {
    /// Where the kernel and driver have it; else only frames one UMEM frame
    /// holds, and a pipeline whose MTU needs more refuses to start.
    case auto
    /// Required: the pipeline refuses to start without it.
    case on
    /// Never; a pipeline whose MTU needs it refuses to start.
    case off
}

public struct DataPathConfig: Sendable, Codable, Equatable {
    public var interface: String
    public var mode: ProcessingMode = .inline
    public var bindMode: XSKBindMode = .auto
    public var attachMode: XDPAttachMode = .native
    public var geometry = XSKGeometry()
    /// Descriptors per RX peek and per module call.
    public var batchSize = 64
    /// Entries in each RX → worker ring (power of two).
    public var handoffRingSize = 4096
    public var prefilter: Prefilter?
    /// RX thread of socket *i* runs on `rxCPUs[i % count]`; empty: not pinned.
    public var rxCPUs: [Int] = []
    public var workerCPUs: [Int] = []
    /// The driver plugin's lower bound on the XSKMAP size (e.g. 2·nch on old mlx5).
    public var minimumXSKMapEntries = 0
    /// How long an idle thread sleeps before looking at the stop flag anyway.
    public var pollTimeoutMilliseconds: Int32 = 200
    /// nil: RX threads sleep in poll() whenever their ring is empty.
    public var busyPoll: BusyPoll?
    /// Load the XDP program variant that stores the driver's RX metadata
    /// (timestamp, RSS hash) where the kernel and attach mode allow
    /// (`rx_metadata = "auto"`); false: the plain program (`"off"`).
    public var rxMetadata = true
    /// Whether a module of the chain reads RX metadata (`pcap`, `count`);
    /// false: the plain program, since nothing would read what the metadata
    /// one stores.
    public var rxMetadataReaders = true
    public var multiBuffer: MultiBufferMode = .auto

    public init(interface: String) { self.interface = interface }

    /// Preferred busy polling of every socket (af_xdp.rst, "Busy-polling").
    public struct BusyPoll: Sendable, Codable, Equatable {
        /// SO_BUSY_POLL: how long one blocking busy-poll may spin, in µs.
        public var microseconds: Int32
        /// SO_BUSY_POLL_BUDGET: packets one NAPI poll may take.
        public var budget: Int32

        public static let microsecondsRange: ClosedRange<Int32> = 1...1_000_000
        /// The kernel refuses budgets above U16_MAX.
        public static let budgetRange: ClosedRange<Int32> = 1...65535

        public init(microseconds: Int32 = 20, budget: Int32 = 64) {
            self.microseconds = microseconds
            self.budget = budget
        }
    }

    func validate() throws {
        try geometry.validate()
        guard (1...1024).contains(batchSize) else { throw DataPathError("batch size \(batchSize) is outside 1...1024") }
        guard batchSize <= Int(geometry.fillRingSize) else {
            throw DataPathError("batch size \(batchSize) exceeds the fill ring (\(geometry.fillRingSize))")
        }
        guard handoffRingSize >= 2, handoffRingSize <= 1 << 20, handoffRingSize & (handoffRingSize - 1) == 0 else {
            throw DataPathError("hand-off ring size \(handoffRingSize) is not a power of two in 2...\(1 << 20)")
        }
        guard (1...60_000).contains(pollTimeoutMilliseconds) else {
            throw DataPathError("poll timeout \(pollTimeoutMilliseconds) ms is outside 1...60000")
        }
        if let prefilter, prefilter.destinationPorts.count > Prefilter.maximumPortRanges {
            throw DataPathError("prefilter for \(interface) has \(prefilter.destinationPorts.count) port ranges; at most \(Prefilter.maximumPortRanges)")
        }
        for cpu in rxCPUs + workerCPUs where !(0..<1024).contains(cpu) {
            throw DataPathError("CPU \(cpu) is outside 0...1023")
        }
        if let busyPoll {
            guard BusyPoll.microsecondsRange.contains(busyPoll.microseconds), BusyPoll.budgetRange.contains(busyPoll.budget) else {
                throw DataPathError(
                    "busy poll of \(busyPoll.microseconds) µs, budget \(busyPoll.budget) for \(interface) is outside 1...1000000 µs, budget 1...65535")
            }
            let feature = KernelFeatures.detected(.busyPoll)
            if feature.state == .missing {
                throw DataPathError(
                    "busy_poll is on for \(interface), but this kernel has no \(feature.title) (since Linux \(feature.since); \(feature.detail)); turn busy_poll off")
            }
        }
    }
}

/// One interface's receive pipeline: Sluice's XDP program, a socket per
/// channel binding, their threads and the module chain.
///
/// `start` and `stop` are for a control thread; the data path itself runs on
/// threads the pipeline owns (never the cooperative pool or a NIO loop).
// Unchecked: the XDP program and the module chains are touched only by the
// control thread in init and in `stop` (under `state`); the threads own the rest.
public final class Pipeline: @unchecked Sendable {
    public let config: DataPathConfig
    public let bindings: [ChannelBinding]
    private let chains: [[PacketModule]]
    private let program: XDPProgram
    /// The runners until stop lets go of them, and the counters taken at
    /// stop, after the threads ended: the last word on every counter.
    private let state: Mutex<(runners: [QueueRunner], finalStatistics: PipelineStatistics?)>
    private let logger = Logger(label: "sluice.datapath")
    /// The interface's rx queues (sysfs) before the XDP program was attached
    /// and right after: virtio_net adds a queue pair per CPU for XDP_TX at
    /// attach (when they fit in its maximum), and the host delivers to the
    /// added rx queues too.
    public let rxQueuesBeforeAttach: Int
    public let rxQueuesAfterAttach: Int
    /// Queues added at attach that `queuesAddedAtAttach` planned but whose
    /// socket could not be bound or registered, with why.
    public let addedQueueFailures: [UInt32: String]

    /// Loads and attaches the XDP program, binds one socket per plan,
    /// registers each at its XSKMAP key and starts the threads.
    ///
    /// Each socket binds as `config.bindMode` asks: `auto` tries zero-copy on
    /// the plan's zero-copy queue and, refused, binds in copy mode with the
    /// plan's copy binding; `bindings` are the bindings in effect. With XDP
    /// in skb mode sockets bind in copy mode (a zero-copy queue of its own
    /// would never see the frames generic XDP redirects).
    ///
    /// `makeModules` is called once per socket, with its binding in effect:
    /// a module instance belongs to one data-path thread (the socket's RX
    /// thread, or its worker), so every socket gets a chain of its own.
    ///
    /// `queuesAddedAtAttach` is asked, with the rx queue counts before and
    /// after the attach, only when the attach added rx queues: the plans it
    /// returns (for queues in `before..<after`) are bound after `plans`. One
    /// that cannot be bound is left out and named in `addedQueueFailures`,
    /// the pipeline runs on the others.
    public init(
        config: DataPathConfig, plans: [ChannelPlan],
        queuesAddedAtAttach: (_ before: Int, _ after: Int) throws -> [ChannelPlan] = { _, _ in [] },
        makeModules: (ChannelBinding) throws -> [PacketModule]
    ) throws {
        try config.validate()
        guard !plans.isEmpty else { throw DataPathError("no channels to bind on \(config.interface)") }
        for plan in plans where plan.zeroCopy.channel != plan.copy.channel {
            throw DataPathError("a plan for \(config.interface) maps channel \(plan.zeroCopy.channel) in zero-copy but \(plan.copy.channel) in copy mode")
        }
        guard Set(plans.map(\.channel)).count == plans.count else {
            throw DataPathError("a channel of \(config.interface) is listed twice")
        }
        let bindMode: XSKBindMode
        switch (config.attachMode, config.bindMode) {
        case (.skb, .zerocopy):
            throw DataPathError("bind mode zerocopy needs XDP in native mode on \(config.interface); attach mode is skb")
        case (.skb, _): bindMode = .copy
        case (_, let mode): bindMode = mode
        }
        // Either mode's bindings must be possible before anything touches the kernel.
        for bindings in [plans.map(\.zeroCopy), plans.map(\.copy)] {
            var seenQueues = Set<UInt32>(), seenKeys = Set<UInt32>()
            for binding in bindings {
                guard seenQueues.insert(binding.bindQueue).inserted, seenKeys.insert(binding.xskmapKey).inserted else {
                    throw DataPathError("two channels on \(config.interface) bind queue \(binding.bindQueue) or XSKMAP key \(binding.xskmapKey)")
                }
            }
        }
        self.config = config
        guard let interface = try? InterfaceName(config.interface) else {
            throw DataPathError("invalid interface name '\(config.interface)'")
        }
        let rxQueues = try Self.rxQueueCount(interface)
        for binding in plans.flatMap({ bindMode == .copy ? [$0.copy] : bindMode == .zerocopy ? [$0.zeroCopy] : [$0.zeroCopy, $0.copy] })
        where Int(binding.bindQueue) >= rxQueues {
            throw DataPathError("\(config.interface) has \(rxQueues) rx queues; channel \(binding.channel) asks for queue \(binding.bindQueue)")
        }
        // Room for either binding of every plan: which one a socket takes is
        // known only once it is bound, after the program is attached.
        let candidates = plans.flatMap { [$0.zeroCopy, $0.copy] }
        let largestKey = Int(candidates.map(\.xskmapKey).max() ?? 0)
        let entries = max(rxQueues, config.minimumXSKMapEntries, largestKey + 1)
        guard entries <= XDPProgram.maximumMapEntries else {
            throw DataPathError("XSKMAP size \(entries) for \(config.interface) is outside 1...\(XDPProgram.maximumMapEntries)")
        }
        let driver = (try? NetworkDevice.driverInfo(interface).driver) ?? "the driver of \(interface)"
        let mtu = NetworkDevice.mtu(interface)
        let multiBuffer = try Self.multiBufferWanted(
            config, kernel: KernelFeatures.detected(.xdpMultiBuffer), sockets: KernelFeatures.detected(.xskMultiBuffer))
        if !multiBuffer, let mtu {
            let why = config.multiBuffer == .off
                ? "multi-buffer is off (multi_buffer = \"off\")"
                : "this kernel has no AF_XDP multi-buffer (XDP_USE_SG, Linux 6.6: \(KernelFeatures.detected(.xskMultiBuffer).detail))"
            try FrameLimit(frameSize: config.geometry.frameSize, nativeXDP: config.attachMode == .native)
                .require(mtu: mtu, interface: config.interface, why: why)
        }
        program = try XDPProgram(
            interface: config.interface, mode: config.attachMode, mapEntries: entries,
            queueToKey: [:], prefilter: config.prefilter, fragments: multiBuffer, rxMetadata: config.rxMetadata,
            rxMetadataReaders: config.rxMetadataReaders)
        logger.info("\(config.interface): driver RX metadata \(program.rxMetadata.inUse ? "in use" : "not in use"): \(program.rxMetadata.reason)")
        var runners: [QueueRunner] = []
        var chains: [[PacketModule]] = []
        var bound: [ChannelBinding] = []
        var failures: [UInt32: String] = [:]
        var rxQueuesAfterAttach = rxQueues
        do {
            rxQueuesAfterAttach = try Self.rxQueueCount(interface)
            let added = rxQueuesAfterAttach > rxQueues ? try queuesAddedAtAttach(rxQueues, rxQueuesAfterAttach) : []
            for (index, plan) in (plans + added).enumerated() {
                let isAdded = index >= plans.count
                var registered: UInt32?
                do {
                    if isAdded {
                        for binding in [plan.zeroCopy, plan.copy]
                        where !(rxQueues..<rxQueuesAfterAttach).contains(Int(binding.bindQueue)) || Int(binding.xskmapKey) >= entries {
                            throw DataPathError(
                                "queue \(binding.bindQueue), XSKMAP key \(binding.xskmapKey) is not an added queue of \(config.interface) (\(rxQueues)..<\(rxQueuesAfterAttach)) with a key in its XSKMAP of \(entries)")
                        }
                    }
                    let (socket, binding) = try Self.bind(
                        plan, mode: bindMode, interface: config.interface, geometry: config.geometry, driver: driver,
                        multiBuffer: multiBuffer, requireMultiBuffer: config.multiBuffer == .on)
                    if multiBuffer, !socket.multiBuffer, let mtu {
                        // The program hands over chains, but this socket cannot take them.
                        try FrameLimit(frameSize: config.geometry.frameSize, nativeXDP: false).require(
                            mtu: mtu, interface: config.interface,
                            why: socket.binding.multiBufferRefusal ?? "the socket is bound without XDP_USE_SG")
                    }
                    if let refusal = socket.binding.multiBufferRefusal {
                        logger.notice("\(config.interface) queue \(binding.bindQueue): no multi-buffer: \(refusal)")
                    }
                    if let clash = bound.first(where: { $0.bindQueue == binding.bindQueue || $0.xskmapKey == binding.xskmapKey }) {
                        throw DataPathError(
                            "channels \(clash.channel) and \(binding.channel) on \(config.interface) both bind queue \(binding.bindQueue) or XSKMAP key \(binding.xskmapKey)")
                    }
                    if let reason = socket.binding.fallbackReason { logger.notice("\(reason)") }
                    if let busyPoll = config.busyPoll { try socket.enableBusyPoll(busyPoll) }
                    try program.register(socketDescriptor: socket.fileDescriptor, key: binding.xskmapKey)
                    registered = binding.xskmapKey
                    let modules = try makeModules(binding)
                    let runner = try QueueRunner(
                        binding: binding, socket: socket, config: config, modules: modules,
                        rxMetadata: program.rxMetadata.inUse)
                    try program.route(queue: binding.bindQueue, key: binding.xskmapKey)
                    bound.append(binding)
                    chains.append(modules)
                    runners.append(runner)
                } catch where isAdded {
                    if let registered { program.unregister(key: registered) }
                    failures[plan.copy.bindQueue] = "\(error)"
                }
            }
        } catch {
            program.close()
            throw error
        }
        self.rxQueuesBeforeAttach = rxQueues
        self.rxQueuesAfterAttach = rxQueuesAfterAttach
        self.addedQueueFailures = failures
        self.bindings = bound
        self.state = Mutex((runners, nil))
        self.chains = chains
        for (index, runner) in runners.enumerated() {
            runner.start(
                rxCPU: config.rxCPUs.isEmpty ? nil : config.rxCPUs[index % config.rxCPUs.count],
                workerCPU: config.workerCPUs.isEmpty ? nil : config.workerCPUs[index % config.workerCPUs.count])
        }
    }

    /// One binding whatever the mode.
    public convenience init(
        config: DataPathConfig, bindings: [ChannelBinding],
        makeModules: (ChannelBinding) throws -> [PacketModule]
    ) throws {
        try self.init(config: config, plans: bindings.map(ChannelPlan.same), makeModules: makeModules)
    }

    private static func rxQueueCount(_ interface: InterfaceName) throws -> Int {
        do {
            return try NetworkDevice.queueCounts(interface).rx
        } catch {
            throw DataPathError(
                "cannot read the rx queues of \(interface) (\(NetworkDevice.queuesDirectory(interface)))", errno: error.errno)
        }
    }

    /// Binds `plan`'s socket in `mode`; returns it with the binding in effect.
    /// (Every queue it may bind was checked against the rx queues already.)
    private static func bind(
        _ plan: ChannelPlan, mode: XSKBindMode, interface: String, geometry: XSKGeometry, driver: String,
        multiBuffer: Bool, requireMultiBuffer: Bool
    ) throws -> (XSKSocket, ChannelBinding) {
        func socket(_ binding: ChannelBinding, zeroCopy: Bool) throws -> XSKSocket {
            try XSKSocket(
                interface: interface, queue: binding.bindQueue, geometry: geometry, zeroCopy: zeroCopy, driver: driver,
                multiBuffer: multiBuffer, requireMultiBuffer: requireMultiBuffer)
        }
        switch mode {
        case .copy:
            return (try socket(plan.copy, zeroCopy: false), plan.copy)
        case .zerocopy:
            return (try socket(plan.zeroCopy, zeroCopy: true), plan.zeroCopy)
        case .auto:
            do {
                return (try socket(plan.zeroCopy, zeroCopy: true), plan.zeroCopy)
            } catch let refusal as DataPathError {
                let fallback = try socket(plan.copy, zeroCopy: false)
                let moved = plan.copy.bindQueue == plan.zeroCopy.bindQueue
                    ? "" : " on queue \(plan.copy.bindQueue), XSKMAP key \(plan.copy.xskmapKey) (the copy-mode mapping)"
                fallback.noteFallback(
                    "\(driver) cannot do AF_XDP zero-copy on \(interface) queue \(plan.zeroCopy.bindQueue) ("
                        + (refusal.errno.map { "\($0.description), \($0.symbolicName)" } ?? refusal.message)
                        + "); bound in copy mode" + moved)
                return (fallback, plan.copy)
            }
        }
    }

    /// Whether to load the program frags-aware and bind with XDP_USE_SG:
    /// only where both XDP (`kernel`) and AF_XDP (`sockets`) have
    /// multi-buffer, so a kernel with the first alone (5.18 to 6.5) runs
    /// exactly as without. Unknown probes try (the bind tells).
    static func multiBufferWanted(_ config: DataPathConfig, kernel: KernelFeature, sockets: KernelFeature) throws -> Bool {
        let available = kernel.state != .missing && sockets.state != .missing
        switch config.multiBuffer {
        case .off: return false
        case .auto: return available
        case .on:
            guard available else {
                let missing = kernel.state == .missing
                    ? "\(kernel.title) (since Linux \(kernel.since); \(kernel.detail))"
                    : "\(sockets.title) (since Linux \(sockets.since); \(sockets.detail))"
                throw DataPathError(
                    "multi_buffer = \"on\" for \(config.interface), but this kernel has no \(missing): "
                        + "run Linux 6.6 or newer, or set multi_buffer = \"auto\" with an MTU one frame holds")
            }
            return true
        }
    }

    deinit { stop() }

    /// Stops the threads, detaches the program, closes the sockets and
    /// flushes the modules. Fine to call more than once.
    public func stop() {
        state.withLock { state in
            guard state.finalStatistics == nil else { return }
            for runner in state.runners where !runner.stop() {
                logger.error("data-path threads of \(config.interface) queue \(runner.binding.bindQueue) did not stop in time")
            }
            state.finalStatistics = collectStatistics(state.runners)
            for binding in bindings { program.unregister(key: binding.xskmapKey) }
            program.close()
            for chain in chains { for module in chain { module.flush() } }
            if state.runners.allSatisfy({ $0.isStopped }) { state.runners = [] }  // closes the sockets, frees the UMEMs
        }
    }

    public var programID: UInt32 { program.programID }

    /// Each socket's module chain, in the order of `bindings`.
    public var moduleChains: [[PacketModule]] { chains }

    /// Counters now, or as they were at stop.
    public func statistics() -> PipelineStatistics {
        state.withLock { $0.finalStatistics ?? collectStatistics($0.runners) }
    }

    /// Whether the driver's RX metadata reaches the modules, and why (not).
    public var rxMetadata: RxMetadataStatus { program.rxMetadataStatus(program.counters()) }

    private func collectStatistics(_ runners: [QueueRunner]) -> PipelineStatistics {
        let xdp = program.counters()
        return PipelineStatistics(
            interface: config.interface, mode: config.mode, attachMode: config.attachMode,
            programID: program.programID,
            sockets: zip(runners, chains).map { runner, chain in
                let counters = runner.counters
                return SocketStatistics(
                    channel: runner.binding.channel, queue: runner.binding.bindQueue,
                    xskmapKey: runner.binding.xskmapKey, zeroCopy: runner.socket.binding.zeroCopy,
                    fallbackReason: runner.socket.binding.fallbackReason,
                    rxPackets: counters[.rxPackets], rxBytes: counters[.rxBytes],
                    handoffDrops: counters[.handoffDrops], passed: counters[.passed],
                    dropped: counters[.dropped], transmitted: counters[.transmitted],
                    transmitFailed: counters[.transmitFailed], malformed: counters[.malformed],
                    invalidFrames: counters[.invalidFrames],
                    kernel: runner.socket.kernelStatistics(),
                    modules: chain.map { $0.snapshot() },
                    busyPoll: config.busyPoll != nil, busyPollKicks: counters[.busyPollKicks],
                    pollSleeps: counters[.pollSleeps],
                    multiBuffer: runner.socket.multiBuffer, multiBufferPackets: counters[.multiBufferPackets],
                    invalidChains: counters[.invalidChains])
            },
            xdp: xdp, rxMetadata: program.rxMetadataStatus(xdp))
    }
}

/// The largest frame one UMEM frame takes without multi-buffer, and the
/// refusal of an MTU that needs more (never a pipeline that drops them).
struct FrameLimit {
    let frameSize: Int
    /// Native XDP without frags: the driver builds the packet in one page
    /// with XDP_PACKET_HEADROOM in front and skb_shared_info behind (veth
    /// refuses the attach above it: "Peer MTU is too large to set XDP").
    let nativeXDP: Bool
    static let ethernetHeader = 14
    /// SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) on 64-bit kernels.
    static let sharedInfo = 320

    init(frameSize: UInt32, nativeXDP: Bool) {
        self.frameSize = Int(frameSize)
        self.nativeXDP = nativeXDP
    }

    /// What one AF_XDP frame holds: the frame less the kernel's headroom.
    var chunkBytes: Int { frameSize - XSKSocket.kernelHeadroom }
    /// What native XDP holds in one page, less headroom and skb_shared_info.
    static var pageBytes: Int { Int(sysconf(Int32(_SC_PAGESIZE))) - XSKSocket.kernelHeadroom - sharedInfo }
    var largestFrame: Int { nativeXDP ? min(chunkBytes, Self.pageBytes) : chunkBytes }
    var largestMTU: Int { largestFrame - Self.ethernetHeader }

    func require(mtu: Int, interface: String, why: String) throws {
        guard mtu > largestMTU else { return }
        let page = nativeXDP && Self.pageBytes < chunkBytes
            ? ", and native XDP without multi-buffer builds a packet in one page: \(Self.pageBytes) bytes"
                + " (\(Self.pageBytes + XSKSocket.kernelHeadroom + Self.sharedInfo) less 256 of headroom and \(Self.sharedInfo) of skb_shared_info)"
            : ""
        let largerFrame = frameSize < 4096 ? ", use frame_size = 4096" : ""
        throw DataPathError(
            "MTU \(mtu) of \(interface) needs frames of \(mtu + Self.ethernetHeader) bytes, but \(why): "
                + "one \(frameSize)-byte UMEM frame holds \(chunkBytes) bytes (\(frameSize) less the kernel's \(XSKSocket.kernelHeadroom) of headroom)\(page); "
                + "lower the MTU to \(largestMTU) or less (ip link set dev \(interface) mtu \(largestMTU))\(largerFrame), "
                + "or receive multi-buffer (multi_buffer = \"auto\" on Linux 6.6 or newer with a driver that has it)")
    }
}
