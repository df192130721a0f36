import Foundation
import Logging
import SluiceControl
import SluiceDataPath
import SluiceModules
import SluiceNIC
import SluicePluginHost
import SluiceProtocol
import Synchronization

/// Starts and stops the receive pipelines of the configured interfaces. The
/// driver plugin, held by a lease for the pipeline's lifetime, maps every
/// channel to its bind queue and XSKMAP key; what the plugin requires before
/// start (a feature such as ntuple, for a plugin that asks) is applied
/// through the journaled NIC controller. All of it blocks: call from the
/// thread pool.
final class PipelineManager: Sendable {
    private let nic: NICController
    private let plugins: PluginHost
    private let logger: Logger
    /// Serialises start and stop, which block for a while (loading the XDP
    /// program, binding sockets, joining threads); only the thread pool takes it.
    private let operations = Mutex(())
    /// Held only briefly, so that `reports()` (stats, metrics: on the
    /// cooperative pool or an event loop) never waits for a start or stop.
    private let tables = Mutex(Tables())

    private struct Tables {
        var running: [String: RunningPipeline] = [:]
        /// The last counters of pipelines that stopped, until they start again.
        var stopped: [String: PipelineReport] = [:]
        /// The last failed start of interfaces that have not started since.
        var failedStarts: [String: FailedStart] = [:]
        /// Changes whenever a pipeline starts or stops: cached statistics that
        /// saw another generation are out of date whatever their age.
        var generation = 0

        mutating func started(_ entry: RunningPipeline, on name: String) {
            running[name] = entry
            stopped[name] = nil
            failedStarts[name] = nil
            generation += 1
        }
    }

    var generation: Int { tables.withLock { $0.generation } }

    init(nic: NICController, plugins: PluginHost, logger: Logger) {
        self.nic = nic
        self.plugins = plugins
        self.logger = logger
    }

    var runningInterfaces: [String] { tables.withLock { $0.running.keys.sorted() } }

    /// Starts the pipeline of every configured interface (or only `name`)
    /// that is not running yet. All or nothing: if one fails, those started
    /// by this call are stopped again and the error names the interface.
    func start(_ config: SluiceConfig, only name: String? = nil) throws -> [PipelineReport] {
        try operations.withLock { _ in
            let wanted = config.interfaces.filter { name == nil || $0.name == name }
            if let name, wanted.isEmpty {
                throw ControlError.notFound("\(name) is not an [[interface]] in the configuration")
            }
            guard !wanted.isEmpty else {
                throw ControlError.invalidArgument("the configuration has no [[interface]] to run a pipeline on")
            }
            var started: [String] = []
            var starting = ""
            do {
                for interface in wanted where !runningInterfaces.contains(interface.name) {
                    starting = interface.name
                    let entry = try startPipeline(interface, config.pipeline)
                    tables.withLock { $0.started(entry, on: interface.name) }
                    started.append(interface.name)
                }
            } catch {
                for name in started { _ = stopOne(name) }
                let failure = FailedStart(
                    interface: starting, at: ISO8601DateFormatter().string(from: Date()), error: "\(error)")
                tables.withLock { $0.failedStarts[starting] = failure }
                throw error
            }
            let entries = tables.withLock { tables in wanted.compactMap { tables.running[$0.name] } }
            return entries.map(PipelineReport.init)
        }
    }

    /// Stops every pipeline (or only `name`); returns their final counters.
    @discardableResult
    func stop(only name: String? = nil) throws -> [PipelineReport] {
        try operations.withLock { _ in
            let names = runningInterfaces
            if let name, !names.contains(name) {
                throw ControlError.notFound("no pipeline is running on \(name)")
            }
            return names.filter { name == nil || $0 == name }.compactMap { stopOne($0) }
        }
    }

    /// The NIC changed under `name`'s pipeline (`reason` says how): its map
    /// is derived again from live facts and its sockets bound again — a
    /// stop and a start with the same configuration — so it never runs on
    /// a stale map. When it cannot start again it stays stopped, and its
    /// report and the log say why. Nothing happens when no pipeline runs there,
    /// or, given `ifProgram`, when the pipeline running there is not the one
    /// with that XDP program (it was started again since the check).
    func rebind(_ name: String, _ config: SluiceConfig, because reason: String, ifProgram: UInt32? = nil) {
        operations.withLock { _ in
            guard runningInterfaces.contains(name) else { return }
            if let ifProgram, programID(for: name) != ifProgram { return }
            let before = tables.withLock { $0.running[name]?.held.channels.map(\.mapping.bindQueue) } ?? []
            _ = stopOne(name, because: reason)
            guard let interface = config.interfaces.first(where: { $0.name == name }) else {
                recordStop(name, "\(reason); \(name) is no longer in the configuration, so its pipeline stays stopped")
                return
            }
            do {
                let entry = try startPipeline(interface, config.pipeline)
                tables.withLock { $0.started(entry, on: name) }
                logger.notice("pipeline bound again on a new map", metadata: [
                    "interface": "\(name)", "because": "\(reason)", "queues_before": "\(before)",
                    "queues_now": "\(entry.held.channels.map(\.mapping.bindQueue))",
                ])
            } catch {
                recordStop(name, "\(reason), and the pipeline cannot start again: \(error)")
            }
        }
    }

    /// `name` is gone: its pipeline stops and says why.
    func stopForGood(_ name: String, because reason: String) {
        operations.withLock { _ in
            guard runningInterfaces.contains(name) else { return }
            _ = stopOne(name, because: reason)
            recordStop(name, reason)
        }
    }

    private func recordStop(_ name: String, _ why: String) {
        logger.error("pipeline stopped", metadata: ["interface": "\(name)", "why": "\(why)"])
        tables.withLock { tables in
            tables.stopped[name]?.stopReason = why
            tables.generation += 1
        }
    }

    /// The rx queues before and after the XDP attach of `name`'s running pipeline.
    func rxQueuesAtAttach(for name: String) -> (before: Int, after: Int)? {
        tables.withLock { tables in tables.running[name].map { ($0.pipeline.rxQueuesBeforeAttach, $0.pipeline.rxQueuesAfterAttach) } }
    }

    /// The XDP program id of `name`'s running pipeline.
    func programID(for name: String) -> UInt32? { tables.withLock { $0.running[name]?.pipeline.programID } }

    /// Running pipelines' live counters (atomic loads), then stopped ones'
    /// final counters. Never waits for a start or stop in progress.
    func reports() -> [PipelineReport] {
        let (live, final) = tables.withLock { tables in
            (tables.running.keys.sorted().compactMap { tables.running[$0] },
             tables.stopped.keys.sorted().compactMap { tables.stopped[$0] })
        }
        return live.map(PipelineReport.init) + final
    }

    /// The interfaces whose last start failed, by name.
    func failedStarts() -> [FailedStart] {
        tables.withLock { tables in tables.failedStarts.keys.sorted().compactMap { tables.failedStarts[$0] } }
    }

    /// What the plugin asked for when `name`'s pipeline started (`doctor`
    /// compares steering rules with it); nil when none runs.
    func preparation(for name: String) -> Preparation? { tables.withLock { $0.running[name]?.preparation } }

    /// Takes a steering rule just added on `name` into the running pipeline's
    /// keeping when its action is a zero-copy-only queue (at or above the
    /// receive channels the sockets were bound with) that one of the
    /// pipeline's sockets reads: once that socket is gone the NIC would drop
    /// what the rule matches, so the rule is deleted when the pipeline stops
    /// (a crash leaves it to the NIC journal, which deletes it at the next start).
    func adoptRule(_ location: UInt32?, toQueue queue: UInt32, on name: String) {
        tables.withLock { tables in
            guard var entry = tables.running[name], MappingLifeCycle.ruleLeavesWithPipeline(queue: queue, lease: entry.held)
            else { return }
            guard let location else {
                logger.warning("a rule to a zero-copy queue has no known location; it is not removed with the pipeline", metadata: [
                    "interface": "\(name)", "queue": "\(queue)",
                ])
                return
            }
            entry.rules.append(location)
            tables.running[name] = entry
        }
    }

    /// The mapping `name`'s running pipeline bound its sockets with: the
    /// authority every command that maps a channel consults first. Nil when
    /// no pipeline runs there (then fresh live facts decide).
    func lease(for name: String) -> InterfaceLease? { tables.withLock { $0.running[name]?.held } }

    // MARK: Start and stop (`operations` held)

    private func startPipeline(_ interface: SluiceConfig.Interface, _ settings: SluiceConfig.Pipeline) throws -> RunningPipeline {
        let name = interface.name
        let questions = MappingLifeCycle.questions(
            live: try Daemon.liveFacts(for: name, nic: nic), bindMode: interface.bindMode, attachMode: interface.attachMode)
        let facts = questions.zeroCopy
        let lease = try plugins.acquire(facts, forced: interface.plugin)
        do {
            let preparation = try lease.prepare(facts)
            try apply(preparation, on: name, plugin: lease.plugin.name)
            let channels = interface.channels ?? preparation.defaultChannels(for: facts)
            let (zeroCopyMappings, copyMappings) = try MappingLifeCycle.answers(for: channels, from: lease, to: questions)
            let plans = MappingLifeCycle.plans(zeroCopy: zeroCopyMappings, copy: copyMappings)
            var dataPath = try Self.dataPathConfig(interface, settings, preparation: preparation)
            try applyBusyPollSettings(interface)
            // Room in the XSKMAP for queues the attach may add (virtio_net).
            dataPath.minimumXSKMapEntries = min(XDPProgram.maximumMapEntries, max(
                dataPath.minimumXSKMapEntries, Int(facts.maxChannels.combined + facts.maxChannels.rx)))
            // Queues the attach added become more channels of the same plan,
            // mapped by the plugin from the live facts after the attach: the
            // plan and the lease stay the one owner of the mapping.
            var added: (zeroCopy: [QueueMapping], copy: [QueueMapping]) = ([], [])
            var unreadAdded: String?
            let driver = facts.driver.isEmpty ? "the driver" : facts.driver
            let pipeline = try Pipeline(config: dataPath, plans: plans, queuesAddedAtAttach: { before, after in
                let identity = zip(zeroCopyMappings, copyMappings).allSatisfy {
                    $0.bindQueue == $0.channel && $1.bindQueue == $1.channel
                }
                let decision = MappingLifeCycle.addedQueues(
                    before: before, after: after, boundQueues: Set(plans.flatMap { [$0.zeroCopy.bindQueue, $0.copy.bindQueue] }),
                    configuredChannels: interface.channels, identity: identity)
                var queues: [UInt32] = []
                switch decision {
                case .none: return []
                case .unread(let unread, let why):
                    unreadAdded = MappingLifeCycle.unreadAddedQueuesWarning(
                        interface: name, driver: driver, before: before, after: after, queues: unread, why: why)
                    return []
                case .bind(let bind): queues = bind
                }
                let zeroCopy: [QueueMapping], copy: [QueueMapping]
                do {
                    let now = MappingLifeCycle.questions(
                        live: try Daemon.liveFacts(for: name, nic: self.nic),
                        bindMode: interface.bindMode, attachMode: interface.attachMode)
                    (zeroCopy, copy) = try MappingLifeCycle.answers(for: queues, from: lease, to: now)
                } catch {
                    unreadAdded = MappingLifeCycle.unreadAddedQueuesWarning(
                        interface: name, driver: driver, before: before, after: after, queues: queues,
                        why: "the driver plugin does not map them: \(error)")
                    return []
                }
                let usedKeys = Set(plans.flatMap { [$0.zeroCopy.xskmapKey, $0.copy.xskmapKey] })
                guard zip(zeroCopy, copy).allSatisfy({ $0.bindQueue == $0.channel && $1.bindQueue == $1.channel
                    && !usedKeys.contains($0.xskmapKey) && !usedKeys.contains($1.xskmapKey) }), zeroCopy.count == queues.count
                else {
                    unreadAdded = MappingLifeCycle.unreadAddedQueuesWarning(
                        interface: name, driver: driver, before: before, after: after, queues: queues,
                        why: "the driver plugin does not map them as identity with XSKMAP keys of their own")
                    return []
                }
                added = (zeroCopy, copy)
                return MappingLifeCycle.plans(zeroCopy: zeroCopy, copy: copy)
            }, makeModules: { binding in
                try settings.modules.map { module in
                    try module.kind.descriptor.make(
                        Self.perSocketOptions(module, binding: binding, sockets: plans.count + added.copy.count))
                }
            })
            let chains = pipeline.moduleChains
            if !pipeline.addedQueueFailures.isEmpty {
                let failed = pipeline.addedQueueFailures.keys.sorted()
                unreadAdded = MappingLifeCycle.unreadAddedQueuesWarning(
                    interface: name, driver: driver, before: pipeline.rxQueuesBeforeAttach,
                    after: pipeline.rxQueuesAfterAttach, queues: failed,
                    why: "binding a socket failed (" + failed.map { "queue \($0): \(pipeline.addedQueueFailures[$0]!)" }
                        .joined(separator: "; ") + ")")
            }
            let boundChannels = Set(pipeline.bindings.map { UInt32($0.channel) })
            let addedBound = (added.zeroCopy.filter { boundChannels.contains($0.channel) },
                              added.copy.filter { boundChannels.contains($0.channel) })
            if let unreadAdded {
                logger.warning("rx queues that no socket reads", metadata: [
                    "interface": "\(name)", "driver": "\(driver)", "why": "\(unreadAdded)",
                ])
            } else if !addedBound.1.isEmpty {
                logger.notice("rx queues added at XDP attach are bound too", metadata: [
                    "interface": "\(name)", "driver": "\(driver)",
                    "rx_queues": "\(pipeline.rxQueuesBeforeAttach) → \(pipeline.rxQueuesAfterAttach)",
                    "queues": "\(addedBound.1.map(\.bindQueue))",
                ])
            }
            // The mapping in effect: per socket, the answer for the mode it bound in.
            let sockets = pipeline.statistics().sockets
            let channelsInEffect = MappingLifeCycle.inEffect(
                zeroCopy: zeroCopyMappings + addedBound.0, copy: copyMappings + addedBound.1,
                socketsBoundZeroCopy: sockets.map(\.zeroCopy), attachMode: interface.attachMode)
            for leased in channelsInEffect
            where leased.mapping.bindQueue != leased.mapping.channel || !leased.mapping.message.isEmpty {
                logger.notice("channel mapping", metadata: [
                    "interface": "\(name)", "channel": "\(leased.mapping.channel)", "queue": "\(leased.mapping.bindQueue)",
                    "xskmap_key": "\(leased.mapping.xskmapKey)", "mode": "\(leased.mode.rawValue)",
                    "plugin": "\(lease.plugin.name)", "why": "\(leased.mapping.message)",
                ])
            }
            logger.notice("pipeline started", metadata: [
                "interface": "\(name)", "plugin": "\(lease.plugin.name)", "mode": "\(dataPath.mode.rawValue)",
                "queues": "\(pipeline.bindings.map(\.bindQueue))",
                "zero_copy": "\(sockets.map(\.zeroCopy))",
            ])
            return RunningPipeline(
                interface: name, pipeline: pipeline, lease: lease,
                held: InterfaceLease(
                    interface: name, plugin: lease.plugin.name, facts: facts,
                    receiveChannels: max(
                        preparation.receiveChannels ?? facts.channels.receiveChannels,
                        addedBound.1.isEmpty ? 0 : UInt32(pipeline.rxQueuesAfterAttach)),
                    channels: channelsInEffect),
                preparation: preparation, chains: chains, startedAt: Date(), unreadAddedQueues: unreadAdded)
        } catch {
            restoreBusyPollSettings(name)
            lease.release()
            throw error
        }
    }

    /// The device settings busy polling wants, journaled (restored when the
    /// pipeline stops, the daemon stops, or at the start after a crash).
    /// A write that fails refuses the start, naming the file: without them
    /// the interrupt fights the busy poll.
    private func applyBusyPollSettings(_ interface: SluiceConfig.Interface) throws {
        guard interface.busyPoll else { return }
        for (setting, value) in [(NetDeviceSetting.napiDeferHardIRQs, interface.napiDeferHardIRQs),
                                 (.groFlushTimeout, interface.groFlushTimeoutNanoseconds)] {
            do {
                try nic.setDeviceSetting(interface.name, setting, to: UInt64(value))
            } catch {
                throw ControlError.unsupported("busy_poll on \(interface.name) needs \(setting.rawValue) = \(value): \(error)")
            }
        }
    }

    private func restoreBusyPollSettings(_ name: String) {
        for outcome in nic.restoreDeviceSettings(name).outcomes where outcome.status != .restored {
            logger.error("busy-poll device setting not restored", metadata: [
                "interface": "\(name)", "why": "\(outcome.message)",
            ])
        }
    }

    /// What the plugin's `prepare` asks for, applied (journaled) or logged.
    private func apply(_ preparation: Preparation, on name: String, plugin: String) throws {
        if !preparation.message.isEmpty {
            logger.notice("driver plugin advice", metadata: [
                "interface": "\(name)", "plugin": "\(plugin)", "advice": "\(preparation.message)",
            ])
        }
        if preparation.needsNtuple {
            do {
                _ = try nic.setFeatures(name, ["ntuple": true])
            } catch {
                throw ControlError.unsupported(
                    "the \(plugin) plugin needs ntuple filters on \(name), and turning them on failed: \(error)")
            }
        }
    }

    /// Leaves the table first, so that reports() does not read a pipeline
    /// whose threads are being joined; its final counters appear when done.
    private func stopOne(_ name: String, because reason: String? = nil) -> PipelineReport? {
        guard let entry = tables.withLock({ tables -> RunningPipeline? in
            tables.generation += 1
            return tables.running.removeValue(forKey: name)
        }) else { return nil }
        // Before the sockets close: a rule to a queue nobody reads drops traffic.
        for location in entry.rules {
            do {
                try nic.deleteRule(name, location: location)
                logger.notice("steering rule removed with the pipeline", metadata: [
                    "interface": "\(name)", "location": "\(location)",
                ])
            } catch {
                logger.error("could not remove the steering rule of the stopped pipeline; the NIC drops what it matches", metadata: [
                    "interface": "\(name)", "location": "\(location)", "error": "\(error)",
                    "fix": "ethtool -N \(name) delete \(location)",
                ])
            }
        }
        entry.pipeline.stop()
        restoreBusyPollSettings(name)
        entry.lease.release()
        var final = PipelineReport(entry)
        final.running = false
        tables.withLock { tables in
            tables.stopped[name] = final
            tables.generation += 1
        }
        logger.notice("pipeline stopped", metadata: [
            "interface": "\(name)", "received": "\(final.totals.rxPackets)", "dropped": "\(final.totals.dropped)",
            "because": "\(reason ?? "asked to")",
        ])
        return final
    }

    // MARK: Mapping config onto the data path

    static func dataPathConfig(
        _ interface: SluiceConfig.Interface, _ settings: SluiceConfig.Pipeline, preparation: Preparation
    ) throws -> DataPathConfig {
        var config = DataPathConfig(interface: interface.name)
        config.mode = settings.mode
        config.bindMode = interface.bindMode
        if preparation.copyModeOnly, config.bindMode == .auto { config.bindMode = .copy }
        config.attachMode = interface.attachMode
        config.geometry.frameSize = UInt32(settings.frameSize)
        config.geometry.frameCount = UInt32(settings.frames)
        config.geometry.rxRingSize = UInt32(settings.rxRing)
        config.geometry.txRingSize = UInt32(settings.txRing)
        config.geometry.fillRingSize = UInt32(settings.fillRing)
        config.geometry.completionRingSize = UInt32(settings.completionRing)
        config.batchSize = settings.batchSize
        config.handoffRingSize = settings.handoffRing
        config.rxCPUs = interface.rxCPUs
        config.workerCPUs = interface.workerCPUs
        config.minimumXSKMapEntries = Int(preparation.minXskmapEntries)
        config.rxMetadata = interface.rxMetadata == .auto
        config.rxMetadataReaders = settings.modules.contains { $0.kind.descriptor.readsRxMetadata }
        config.multiBuffer = interface.multiBuffer
        if interface.busyPoll {
            config.busyPoll = DataPathConfig.BusyPoll(
                microseconds: Int32(interface.busyPollMicroseconds), budget: Int32(interface.busyPollBudget))
        }
        if !interface.prefilterProtocols.isEmpty {
            let protocols = Set(interface.prefilterProtocols.map(\.transport))
            config.prefilter = Prefilter(protocols: protocols, destinationPorts: interface.prefilterPorts)
        }
        return config
    }

    /// Each socket gets its own module instances; a pcap module writes one
    /// file per socket when there are several (`capture.pcap` becomes
    /// `capture-queue3.pcap` for queue 3).
    static func perSocketOptions(
        _ module: SluiceConfig.Module, binding: ChannelBinding, sockets: Int
    ) -> [String: ModuleOptionValue] {
        var options = module.options
        if module.kind == .pcap, sockets > 1, case .string(let path)? = options["path"] {
            let url = URL(fileURLWithPath: path)
            let stem = url.deletingPathExtension().lastPathComponent
            let ext = url.pathExtension.isEmpty ? "" : "." + url.pathExtension
            options["path"] = .string(url.deletingLastPathComponent()
                .appendingPathComponent("\(stem)-queue\(binding.bindQueue)\(ext)").path)
        }
        return options
    }
}

/// One channel of a running pipeline: the plugin's answer for the mode the
/// socket really bound in.
struct LeasedChannel: Codable, Sendable, Equatable {
    var mapping: QueueMapping
    var mode: SocketMode
}

/// What a running pipeline holds on its interface: the facts its sockets
/// were bound with and, per channel, the mapping in effect. While it runs,
/// this is the answer to "which queue is channel i" for every command.
struct InterfaceLease: Codable, Sendable, Equatable {
    var interface: String
    var plugin: String
    var facts: DriverFacts
    /// The device's receive channels as the plugin counts them (old mlx5's
    /// ethtool counts double while zero-copy sockets are bound); queues at or
    /// above exist only as zero-copy AF_XDP queues.
    var receiveChannels: UInt32
    var channels: [LeasedChannel]

    func channel(_ channel: UInt32) -> LeasedChannel? { channels.first { $0.mapping.channel == channel } }
}

// Unchecked for `chains` alone: each module runs on its queue's thread, and
// the manager only takes snapshots, which read the modules' atomic counters.
struct RunningPipeline: @unchecked Sendable {
    var interface: String
    var pipeline: Pipeline
    var lease: PluginLease
    var held: InterfaceLease
    /// Locations of the steering rules that leave with this pipeline.
    var rules: [UInt32] = []
    var mappings: [QueueMapping] { held.channels.map(\.mapping) }
    var preparation: Preparation
    var chains: [[PacketModule]]
    var startedAt: Date
    /// Why rx queues the XDP attach added (virtio_net) are read by no socket.
    var unreadAddedQueues: String?
}

extension PipelineReport {
    init(_ entry: RunningPipeline) {
        let statistics = entry.pipeline.statistics()
        var totals = Totals()
        for socket in statistics.sockets {
            totals.rxPackets &+= socket.rxPackets
            totals.rxBytes &+= socket.rxBytes
            totals.kernelDropped &+= socket.kernel.rxDropped
            totals.ringFull &+= socket.kernel.rxRingFull
            totals.fillRingEmpty &+= socket.kernel.fillRingEmpty
            totals.handoffDrops &+= socket.handoffDrops
            totals.passed &+= socket.passed
            totals.dropped &+= socket.dropped
            totals.transmitted &+= socket.transmitted
            totals.transmitFailed &+= socket.transmitFailed
            totals.malformed &+= socket.malformed
        }
        self.init(
            interface: entry.interface, running: true, plugin: entry.lease.plugin.name,
            startedAt: ISO8601DateFormatter().string(from: entry.startedAt),
            unreadAddedQueues: entry.unreadAddedQueues, mappings: entry.mappings, totals: totals,
            modules: Self.merge(entry.chains), statistics: statistics)
    }

    /// One snapshot per position in the chain, summed over the sockets.
    static func merge(_ chains: [[PacketModule]]) -> [ModuleSnapshot] {
        guard let first = chains.first else { return [] }
        return first.indices.map { index in
            let column = chains.compactMap { index < $0.count ? $0[index] : nil }
            if let counts = column as? [CountModule] { return CountModule.snapshot(merging: counts) }
            if let filters = column as? [FilterModule] { return FilterModule.snapshot(merging: filters) }
            if let latencies = column as? [LatencyModule] { return LatencyModule.snapshot(merging: latencies) }
            var merged = column[0].snapshot()
            for module in column.dropFirst() {
                for (key, value) in module.snapshot().counters { merged.counters[key, default: 0] &+= value }
            }
            return merged
        }
    }
}
