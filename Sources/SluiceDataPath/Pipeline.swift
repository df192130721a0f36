import Foundation
import Logging
import SluiceModules

/// Run modules on the RX thread, or on a worker fed through an SPSC ring.
public enum ProcessingMode: String, Sendable, Codable, CaseIterable {
    case inline, pipelined
}

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

    public init(interface: String) { self.interface = interface }

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
    }
}

/// Counters of one socket and its stages.
public struct SocketStatistics: Sendable, Codable, Equatable {
    public var channel: Int
    public var queue: UInt32
    public var xskmapKey: UInt32
    public var zeroCopy: Bool
    public var fallbackReason: String?
    public var rxPackets: UInt64
    public var rxBytes: UInt64
    /// RX → worker ring full: dropped at the hand-off.
    public var handoffDrops: UInt64
    public var passed: UInt64
    public var dropped: UInt64
    public var transmitted: UInt64
    /// `.transmit` verdicts the TX ring had no room for (frame recycled).
    public var transmitFailed: UInt64
    public var malformed: UInt64
    /// Frames refused on their way back to the fill ring because a module
    /// rewrote their address (a module bug; should stay 0).
    public var invalidFrames: UInt64
    public var kernel: KernelSocketStatistics
    /// This socket's module chain, in order.
    public var modules: [ModuleSnapshot]
    /// Packets that reached the socket or were counted lost on the way:
    /// received plus the kernel's drops for this socket.
    public var accounted: UInt64 { rxPackets &+ kernel.rxDropped &+ kernel.rxRingFull }
}

public struct PipelineStatistics: Sendable, Codable, Equatable {
    public var interface: String
    public var mode: ProcessingMode
    public var attachMode: XDPAttachMode
    public var programID: UInt32
    public var sockets: [SocketStatistics]
    /// The XDP program's per-queue counters (empty once stopped).
    public var xdp: [XDPQueueCounters]
}

/// One interface's receive pipeline: Sluice's XDP program, a socket per
/// channel binding, their threads and the module chain.
///
/// `start` and `stop` are for a control thread; the data path itself runs on
/// threads the pipeline owns (never the cooperative pool or a NIO loop).
public final class Pipeline: @unchecked Sendable {
    public let config: DataPathConfig
    public let bindings: [ChannelBinding]
    private let chains: [[PacketModule]]
    private let program: XDPProgram
    private var runners: [QueueRunner]
    /// Taken at stop, after the threads ended: the last word on every counter.
    private var finalStatistics: PipelineStatistics?
    private let lock = NSLock()
    private let logger = Logger(label: "sluice.datapath")

    /// Loads and attaches the XDP program, binds one socket per binding,
    /// registers each at its XSKMAP key and starts the threads.
    ///
    /// `makeModules` is called once per binding: a module instance belongs
    /// to one data-path thread (the socket's RX thread, or its worker), so
    /// every socket gets a chain of its own.
    public init(
        config: DataPathConfig, bindings: [ChannelBinding],
        makeModules: (ChannelBinding) throws -> [PacketModule]
    ) throws {
        try config.validate()
        guard !bindings.isEmpty else { throw DataPathError("no channels to bind on \(config.interface)") }
        var seenQueues = Set<UInt32>(), seenKeys = Set<UInt32>()
        for binding in bindings {
            guard seenQueues.insert(binding.bindQueue).inserted, seenKeys.insert(binding.xskmapKey).inserted else {
                throw DataPathError("two channels on \(config.interface) bind queue \(binding.bindQueue) or XSKMAP key \(binding.xskmapKey)")
            }
        }
        self.config = config
        self.bindings = bindings
        let rxQueues = try InterfaceFacts.rxQueueCount(config.interface)
        for binding in bindings where Int(binding.bindQueue) >= rxQueues {
            throw DataPathError("\(config.interface) has \(rxQueues) rx queues; channel \(binding.channel) asks for queue \(binding.bindQueue)")
        }
        let largestKey = Int(bindings.map(\.xskmapKey).max() ?? 0)
        let entries = max(rxQueues, config.minimumXSKMapEntries, largestKey + 1)
        guard entries <= XDPProgram.maximumMapEntries else {
            throw DataPathError("XSKMAP size \(entries) for \(config.interface) is outside 1...\(XDPProgram.maximumMapEntries)")
        }
        var queueToKey: [UInt32: UInt32] = [:]
        for binding in bindings { queueToKey[binding.bindQueue] = binding.xskmapKey }
        let driver = InterfaceFacts.driverName(config.interface) ?? "the driver of \(config.interface)"
        program = try XDPProgram(
            interface: config.interface, mode: config.attachMode, mapEntries: entries,
            queueToKey: queueToKey, prefilter: config.prefilter)
        var runners: [QueueRunner] = []
        var chains: [[PacketModule]] = []
        do {
            for binding in bindings {
                let modules = try makeModules(binding)
                chains.append(modules)
                let socket = try XSKSocket(
                    interface: config.interface, queue: binding.bindQueue, geometry: config.geometry,
                    bindMode: config.bindMode, driver: driver)
                if let reason = socket.binding.fallbackReason { logger.notice("\(reason)") }
                runners.append(try QueueRunner(binding: binding, socket: socket, config: config, modules: modules))
                try program.register(socketDescriptor: socket.fileDescriptor, key: binding.xskmapKey)
            }
        } catch {
            program.close()
            throw error
        }
        self.runners = runners
        self.chains = chains
        for (index, runner) in runners.enumerated() {
            runner.start(
                rxCPU: config.rxCPUs.isEmpty ? nil : config.rxCPUs[index % config.rxCPUs.count],
                workerCPU: config.workerCPUs.isEmpty ? nil : config.workerCPUs[index % config.workerCPUs.count])
        }
    }

    deinit { stop() }

    /// Stops the threads, detaches the program, closes the sockets and
    /// flushes the modules. Fine to call more than once.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard finalStatistics == nil else { return }
        for runner in runners where !runner.stop() {
            logger.error("data-path threads of \(config.interface) queue \(runner.binding.bindQueue) did not stop in time")
        }
        finalStatistics = collectStatistics()
        for binding in bindings { program.unregister(key: binding.xskmapKey) }
        program.close()
        for chain in chains { for module in chain { module.flush() } }
        if runners.allSatisfy({ $0.isStopped }) { runners = [] }  // closes the sockets, frees the UMEMs
    }

    public var programID: UInt32 { program.programID }

    /// Counters now, or as they were at stop.
    public func statistics() -> PipelineStatistics {
        lock.withLock { finalStatistics ?? collectStatistics() }
    }

    private func collectStatistics() -> PipelineStatistics {
        PipelineStatistics(
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
                    modules: chain.map { $0.snapshot() })
            },
            xdp: program.counters())
    }
}
