import Foundation
import Logging
import SluiceControl
import SluiceDataPath
import SluiceModules
import SluiceNIC
import SluicePluginHost

/// Starts and stops the receive pipelines of the configured interfaces. The
/// driver plugin, held by a lease for the pipeline's lifetime, maps every
/// channel to its bind queue and XSKMAP key; what the plugin requires before
/// start (e.g. ntuple on old mlx5) is applied through the journaled NIC
/// controller. All of it blocks: call from the thread pool.
final class PipelineManager: @unchecked Sendable {
    private let nic: NICController
    private let plugins: PluginHost
    private let logger: Logger
    /// Serialises start and stop, which block for a while (loading the XDP
    /// program, binding sockets, joining threads); only the thread pool takes it.
    private let operations = NSLock()
    /// Guards the two tables below, and is held only briefly, so that
    /// `reports()` (stats, metrics: on the cooperative pool or an event loop)
    /// never waits for a start or stop.
    private let lock = NSLock()
    private var running: [String: RunningPipeline] = [:]
    /// The last counters of pipelines that stopped, until they start again.
    private var stopped: [String: PipelineReport] = [:]
    /// Changes whenever a pipeline starts or stops: cached statistics that
    /// saw another generation are out of date whatever their age.
    private var generationCounter = 0
    var generation: Int { lock.withLock { generationCounter } }

    init(nic: NICController, plugins: PluginHost, logger: Logger) {
        self.nic = nic
        self.plugins = plugins
        self.logger = logger
    }

    var runningInterfaces: [String] { lock.withLock { running.keys.sorted() } }

    /// Starts the pipeline of every configured interface (or only `name`)
    /// that is not running yet. All or nothing: if one fails, those started
    /// by this call are stopped again and the error names the interface.
    func start(_ config: SluiceConfig, only name: String? = nil) throws -> [PipelineReport] {
        try operations.withLock {
            let wanted = config.interfaces.filter { name == nil || $0.name == name }
            if let name, wanted.isEmpty {
                throw ControlError.notFound("\(name) is not an [[interface]] in the configuration")
            }
            guard !wanted.isEmpty else {
                throw ControlError.invalidArgument("the configuration has no [[interface]] to run a pipeline on")
            }
            var started: [String] = []
            do {
                for interface in wanted where !runningInterfaces.contains(interface.name) {
                    let entry = try startPipeline(interface, config.pipeline)
                    lock.withLock {
                        running[interface.name] = entry
                        stopped[interface.name] = nil
                        generationCounter += 1
                    }
                    started.append(interface.name)
                }
            } catch {
                for name in started { _ = stopOne(name) }
                throw error
            }
            let entries = lock.withLock { wanted.compactMap { running[$0.name] } }
            return entries.map(PipelineReport.init)
        }
    }

    /// Stops every pipeline (or only `name`); returns their final counters.
    @discardableResult
    func stop(only name: String? = nil) throws -> [PipelineReport] {
        try operations.withLock {
            let names = runningInterfaces
            if let name, !names.contains(name) {
                throw ControlError.notFound("no pipeline is running on \(name)")
            }
            return names.filter { name == nil || $0 == name }.compactMap(stopOne)
        }
    }

    /// Running pipelines' live counters (atomic loads), then stopped ones'
    /// final counters. Never waits for a start or stop in progress.
    func reports() -> [PipelineReport] {
        let (live, final) = lock.withLock {
            (running.keys.sorted().compactMap { running[$0] }, stopped.keys.sorted().compactMap { stopped[$0] })
        }
        return live.map(PipelineReport.init) + final
    }

    /// What the plugin asked for when `name`'s pipeline started (`doctor`
    /// compares steering rules with it); nil when none runs.
    func preparation(for name: String) -> Preparation? { lock.withLock { running[name]?.preparation } }

    // MARK: Start and stop (`operations` held)

    private func startPipeline(_ interface: SluiceConfig.Interface, _ settings: SluiceConfig.Pipeline) throws -> RunningPipeline {
        let name = interface.name
        var facts = try Daemon.facts(for: name, nic: nic)
        facts.zeroCopyRequested = interface.bindMode != .copy
        let lease = try plugins.acquire(facts, forced: interface.plugin)
        do {
            let preparation = try lease.prepare(facts)
            try apply(preparation, on: name, plugin: lease.plugin.name)
            let channels = interface.channels ?? Array(0..<facts.channels.receiveChannels)
            let mappings = try lease.mapChannels(channels, facts: facts)
            let bindings = mappings.map {
                ChannelBinding(channel: Int($0.channel), bindQueue: $0.bindQueue, xskmapKey: $0.xskmapKey)
            }
            for mapping in mappings where mapping.bindQueue != mapping.channel || !mapping.message.isEmpty {
                logger.notice("channel mapping", metadata: [
                    "interface": "\(name)", "channel": "\(mapping.channel)", "queue": "\(mapping.bindQueue)",
                    "xskmap_key": "\(mapping.xskmapKey)", "plugin": "\(lease.plugin.name)", "why": "\(mapping.message)",
                ])
            }
            let dataPath = try Self.dataPathConfig(interface, settings, preparation: preparation)
            var chains: [[PacketModule]] = []
            let pipeline = try Pipeline(config: dataPath, bindings: bindings) { binding in
                let chain = try settings.modules.map { module in
                    try ModuleFactory.make(
                        kind: module.kind,
                        options: Self.perSocketOptions(module, binding: binding, sockets: bindings.count))
                }
                chains.append(chain)
                return chain
            }
            logger.notice("pipeline started", metadata: [
                "interface": "\(name)", "plugin": "\(lease.plugin.name)", "mode": "\(dataPath.mode.rawValue)",
                "queues": "\(bindings.map(\.bindQueue))",
                "zero_copy": "\(pipeline.statistics().sockets.map(\.zeroCopy))",
            ])
            return RunningPipeline(
                interface: name, pipeline: pipeline, lease: lease, mappings: mappings, preparation: preparation,
                chains: chains, startedAt: Date())
        } catch {
            lease.release()
            throw error
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
    private func stopOne(_ name: String) -> PipelineReport? {
        guard let entry = lock.withLock({ () -> RunningPipeline? in
            generationCounter += 1
            return running.removeValue(forKey: name)
        }) else { return nil }
        entry.pipeline.stop()
        entry.lease.release()
        var final = PipelineReport(entry)
        final.running = false
        lock.withLock {
            stopped[name] = final
            generationCounter += 1
        }
        logger.notice("pipeline stopped", metadata: [
            "interface": "\(name)", "received": "\(final.totals.rxPackets)", "dropped": "\(final.totals.dropped)",
        ])
        return final
    }

    // MARK: Mapping config onto the data path

    static func dataPathConfig(
        _ interface: SluiceConfig.Interface, _ settings: SluiceConfig.Pipeline, preparation: Preparation
    ) throws -> DataPathConfig {
        var config = DataPathConfig(interface: interface.name)
        config.mode = settings.mode == .inline ? .inline : .pipelined
        config.bindMode = XSKBindMode(rawValue: interface.bindMode.rawValue) ?? .auto
        if preparation.copyModeOnly, config.bindMode == .auto { config.bindMode = .copy }
        config.attachMode = XDPAttachMode(rawValue: interface.attachMode.rawValue) ?? .native
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
        if !interface.prefilterProtocols.isEmpty {
            // The XDP program treats ICMP and ICMPv6 as one class.
            let protocols = Set(interface.prefilterProtocols.map { proto -> Prefilter.TransportProtocol in
                switch proto {
                case .udp: return .udp
                case .tcp: return .tcp
                case .icmp, .icmpv6: return .icmp
                }
            })
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
        if module.kind == "pcap", sockets > 1, case .string(let path)? = options["path"] {
            let url = URL(fileURLWithPath: path)
            let stem = url.deletingPathExtension().lastPathComponent
            let ext = url.pathExtension.isEmpty ? "" : "." + url.pathExtension
            options["path"] = .string(url.deletingLastPathComponent()
                .appendingPathComponent("\(stem)-queue\(binding.bindQueue)\(ext)").path)
        }
        return options
    }
}

struct RunningPipeline {
    var interface: String
    var pipeline: Pipeline
    var lease: PluginLease
    var mappings: [QueueMapping]
    var preparation: Preparation
    var chains: [[PacketModule]]
    var startedAt: Date
}

/// What `pipeline.status` and `stats.get` show for one interface.
struct PipelineReport: Encodable, Sendable {
    struct Totals: Encodable, Sendable {
        var rxPackets: UInt64 = 0, rxBytes: UInt64 = 0
        var kernelDropped: UInt64 = 0, ringFull: UInt64 = 0, fillRingEmpty: UInt64 = 0
        var handoffDrops: UInt64 = 0, passed: UInt64 = 0, dropped: UInt64 = 0
        var transmitted: UInt64 = 0, transmitFailed: UInt64 = 0, malformed: UInt64 = 0
    }

    var interface: String
    var running: Bool
    var plugin: String
    var startedAt: Date
    var mappings: [QueueMapping]
    var totals: Totals
    /// Each module's counters over all sockets (count: flows merged).
    var modules: [ModuleSnapshot]
    var statistics: PipelineStatistics

    init(_ entry: RunningPipeline) {
        let statistics = entry.pipeline.statistics()
        interface = entry.interface
        running = true
        plugin = entry.lease.plugin.name
        startedAt = entry.startedAt
        mappings = entry.mappings
        self.statistics = statistics
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
        self.totals = totals
        modules = Self.merge(entry.chains)
    }

    /// One snapshot per position in the chain, summed over the sockets.
    static func merge(_ chains: [[PacketModule]]) -> [ModuleSnapshot] {
        guard let first = chains.first else { return [] }
        return first.indices.map { index in
            let column = chains.compactMap { index < $0.count ? $0[index] : nil }
            if let counts = column as? [CountModule] { return CountModule.snapshot(merging: counts) }
            if let filters = column as? [FilterModule] { return FilterModule.snapshot(merging: filters) }
            var merged = column[0].snapshot()
            for module in column.dropFirst() {
                for (key, value) in module.snapshot().counters { merged.counters[key, default: 0] &+= value }
            }
            return merged
        }
    }
}
