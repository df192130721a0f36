import Foundation
import SluiceControl
import SluiceDataPath
import SluiceNIC

#if canImport(Glibc)
import Glibc
#endif

/// `doctor`, `trace.subscribe`, `trace.unsubscribe`.
extension Daemon {
    /// At most this many trace events per connection per 200 ms tick; the
    /// rest are reported as lost rather than queued without bound.
    static let traceEventsPerTick = 512

    func registerDoctorCommands() {
        registry.register(Methods.Doctor.self) { [weak self] request, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let findings = try await self.doctor(
                only: request.iface?.rawValue, sampleMilliseconds: request.sampleMilliseconds ?? 1000)
            let features = try await blocking { KernelFeatures.detected }
            return DoctorReport(findings: findings, kernelFeatures: features)
        }
        registry.register(Methods.TraceSubscribe.self) { [weak self] request, context in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let only = request.iface?.rawValue
            let events = try Self.traceEventNames(request.events)
            let subscription: TraceSubscription
            // Filtered in the kernel to the interfaces asked for; without
            // one, to those Sluice owns now (and events without an interface).
            let ifindexes = Self.ifindexes(only.map { [$0] } ?? self.ownedInterfaces())
            if let only, ifindexes.isEmpty { throw ControlError.notFound("no interface named \(only)") }
            do {
                subscription = try await blocking { try TraceHub.shared.subscribe(events: events, ifindexes: ifindexes) }
            } catch let error as TraceError {
                throw ControlError.unsupported(error.description)
            }
            let interfaces = only.map { [$0] } ?? self.ownedInterfaces()
            let id = context.requestID
            // The closure owns the subscription: when the stream ends (unsubscribe,
            // replaced, or the connection closed) the closure goes and its deinit
            // gives the events back.
            context.session.startStream(name: "trace", id: id, interval: .milliseconds(200)) {
                [weak session = context.session, weak self] in
                guard let session, let self else { return nil }
                let owned = only.map { [$0] } ?? self.ownedInterfaces()
                guard let (events, lost) = try? await blocking({ () -> ([TraceEvent], UInt64) in
                    let (events, lost) = subscription.next()
                    return (Self.named(events, owned: owned, everyInterface: only == nil), lost)
                }) else { return nil }
                let sent = events.prefix(Self.traceEventsPerTick)
                for event in sent {
                    guard let data = try? JSONValue(encoding: event) else { continue }
                    try? await session.send(ControlMessage.event(id: id, name: "trace", data: data))
                }
                let dropped = lost &+ UInt64(events.count - sent.count)
                if dropped > 0, let data = try? JSONValue(encoding: TraceEvent(event: "lost", count: dropped)) {
                    try? await session.send(ControlMessage.event(id: id, name: "trace", data: data))
                }
                return nil
            }
            return .init(subscribed: "trace", events: subscription.events, interfaces: try interfaces.map(InterfaceName.init))
        }
        registry.register(Methods.TraceUnsubscribe.self) { _, context in
            .init(unsubscribed: context.session.stopStream(name: "trace"))
        }
    }

    /// Interfaces with a pipeline or an [[interface]] entry.
    func ownedInterfaces() -> [String] {
        Array(Set(pipelines.runningInterfaces + config.interfaces.map(\.name))).sorted()
    }

    static func ifindexes(_ names: [String]) -> Set<UInt32> {
        Set(names.map { if_nametoindex($0) }.filter { $0 != 0 })
    }

    static func traceEventNames(_ values: [String]?) throws -> [String]? {
        guard let values else { return nil }
        guard values.count <= 32 else {
            throw ControlError.invalidArgument("events has \(values.count) elements, at most 32 allowed")
        }
        return try values.map { text in
            let name = text.hasPrefix("xdp:") ? String(text.dropFirst(4)) : text
            guard !name.isEmpty, name.utf8.count <= 64, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" })
            else {
                throw ControlError.invalidArgument("event \"\(text.prefix(64))\" is not an xdp tracepoint name")
            }
            return name
        }
    }

    /// Keeps the events of `owned` interfaces, naming them; events without an
    /// interface (e.g. a failed attach) only when watching every interface.
    static func named(_ events: [TraceEvent], owned: [String], everyInterface: Bool) -> [TraceEvent] {
        var names: [UInt32: String] = [:]
        for name in owned {
            let index = if_nametoindex(name)
            if index != 0 { names[index] = name }
        }
        return events.compactMap { event in
            guard let index = event.ifindex, index != 0 else { return everyInterface ? event : nil }
            guard let name = names[index] else { return nil }
            var named = event
            named.iface = name
            return named
        }
    }

    /// Gathers every interface's facts off the cooperative pool, watches the
    /// xdp failure tracepoints for a short sample, and diagnoses.
    func doctor(only: String?, sampleMilliseconds: Int) async throws -> [DoctorFinding] {
        let config = self.config
        let names = only.map { [$0] } ?? ownedInterfaces()
        guard !names.isEmpty else {
            return [DoctorFinding(severity: .error, interface: "", queue: nil,
                                  title: "no interface is configured and no pipeline runs", evidence: [],
                                  fix: "add an [[interface]] to the config, then `sluicectl reload && sluicectl pipeline start`")]
        }
        var traceProblem: String?
        var subscription: TraceSubscription?
        do {
            subscription = try await blocking {
                let available = Set(try TraceInstance.locate().availableEvents())
                return try TraceHub.shared.subscribe(
                    events: TraceEvent.failureEvents.filter(available.contains), ifindexes: Self.ifindexes(names))
            }
        } catch {
            traceProblem = "\(error)"
        }
        if subscription != nil, sampleMilliseconds > 0 {
            try await Task.sleep(for: .milliseconds(sampleMilliseconds))
        }
        let traced = subscription, sampleProblem = traceProblem
        let nic = self.nic, pipelines = self.pipelines
        return try await blocking {
            defer { traced?.release() }
            let events = traced.map { _ in TraceHub.shared.recentFailures() } ?? []
            let reports = pipelines.reports()
            var findings: [DoctorFinding] = []
            for name in names {
                let gathered = Self.doctorInput(
                    name, config: config, nic: nic, reports: reports)
                guard var input = gathered.input else {
                    findings += gathered.missing.map { [$0] } ?? []
                    continue
                }
                input.receiveChannels = try? self.receiveChannels(name)
                input.traceEvents = events
                input.traceProblem = sampleProblem
                if let preparation = pipelines.preparation(for: name) {
                    input.pipeline?.steeringRequired = preparation.steeringRequired
                }
                findings += Doctor.diagnose(input)
            }
            return Doctor.sorted(findings)
        }
    }

    private static func doctorInput(
        _ name: String, config: SluiceConfig, nic: NICController, reports: [PipelineReport]
    ) -> (input: DoctorInput?, missing: DoctorFinding?) {
        let configured = config.interfaces.first { $0.name == name }
        let info: InterfaceInfo
        do {
            info = try nic.interface(name)
        } catch {
            return (nil, DoctorFinding(
                severity: .error, interface: name, queue: nil, title: "\(name) cannot be read", evidence: ["\(error)"],
                fix: "ip link show \(name)"))
        }
        var input = DoctorInput(interface: name, ifindex: info.index, configured: configured != nil, rxQueues: info.rxQueues)
        input.driver = info.driver
        input.attachedProgramID = info.xdp?.programID
        input.attachedMode = info.xdp?.mode
        input.outsideChanges = nic.outsideChanges(name)
        input.boundQueues = try? XSKSocketDiagnostics.boundQueues(interfaceIndex: info.index)
        do {
            for queue in try nic.statistics(name).value.queues where queue.direction == .rx {
                input.driverQueues[queue.queue] = queue.counters
            }
        } catch {
            input.driverStatisticsProblem = "\(error)"
        }
        do {
            input.rules = try nic.rules(name).value.map { rule in
                if case .queue(let queue) = rule.action {
                    return DoctorInput.Rule(location: rule.location, queue: queue, summary: rule.summary)
                }
                return DoctorInput.Rule(location: rule.location, queue: nil, summary: rule.summary)
            }
        } catch {
            input.rulesProblem = "\(error)"
        }
        if let report = reports.first(where: { $0.interface == name }) {
            let statistics = report.statistics
            input.pipeline = DoctorInput.Pipeline(
                running: report.running, plugin: report.plugin, attachMode: statistics.attachMode.rawValue,
                programID: statistics.programID,
                mappings: report.mappings.map {
                    DoctorInput.Mapping(channel: $0.channel, bindQueue: $0.bindQueue, steerQueue: $0.steerQueue)
                },
                sockets: statistics.sockets.map {
                    DoctorInput.Socket(
                        channel: $0.channel, queue: $0.queue, zeroCopy: $0.zeroCopy, fallbackReason: $0.fallbackReason,
                        rxPackets: $0.rxPackets, kernelDropped: $0.kernel.rxDropped, ringFull: $0.kernel.rxRingFull,
                        fillRingEmpty: $0.kernel.fillRingEmpty)
                },
                program: statistics.xdp.compactMap { counters in
                    UInt32(exactly: counters.queue).map {
                        DoctorInput.QueueProgramCounters(
                            queue: $0, redirected: counters.redirected, passed: counters.passed,
                            redirectFailed: counters.redirectFailed)
                    }
                },
                prefilter: !(configured?.prefilterProtocols.isEmpty ?? true),
                bindMode: configured?.bindMode.rawValue ?? "auto")
            input.pipeline?.unreadAddedQueues = report.running ? report.unreadAddedQueues : nil
            input.pipeline?.rxMetadata = statistics.rxMetadata
            input.pipeline?.rxMetadataMode = configured?.rxMetadata.rawValue ?? "auto"
            if statistics.rxMetadata?.inUse == true {
                let sum = { (counter: (XDPQueueCounters) -> UInt64?) in statistics.xdp.reduce(0) { $0 &+ (counter($1) ?? 0) } }
                input.pipeline?.rxMetadataCounters = [
                    ("metadata written", sum(\.metadataWritten)), ("no room", sum(\.metadataNoRoom)),
                    ("timestamp unsupported", sum(\.timestampUnsupported)), ("timestamp absent", sum(\.timestampAbsent)),
                    ("hash unsupported", sum(\.hashUnsupported)), ("hash absent", sum(\.hashAbsent)),
                ]
            }
        }
        return (input, nil)
    }
}

typealias DoctorReport = Methods.Doctor.Response

extension DoctorReport {
    init(findings: [DoctorFinding], kernelFeatures: [KernelFeature]) {
        self.init(findings: findings, kernelFeatures: kernelFeatures.map(\.report))
    }
}
