import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SluiceControl
import SluiceNIC
import SluicePluginHost
import SluiceSystem
import Synchronization
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// `sluiced`: wires the configuration, the control socket and (as they come)
/// the NIC, plugin and data-path services together, under
/// swift-service-lifecycle: SIGTERM/SIGINT and `shutdown` stop gracefully,
/// SIGHUP re-reads the configuration.
public final class Daemon: Sendable {
    public let configPath: String
    let logger: Logger
    let registry = CommandRegistry()
    let server: ControlServer
    /// Every NIC change goes through here: journaled before it is applied.
    let nic: NICController
    /// Driver-quirk plugins: the only place queue ids are computed.
    let plugins: PluginHost
    /// The AF_XDP receive pipelines of the configured interfaces.
    let pipelines: PipelineManager
    let startedAt = ContinuousClock.now
    let startedWallClock = time(nil)
    /// The Prometheus endpoint's bound address, once it listens.
    let metricsEndpoint = MetricsEndpoint()
    private let current: Mutex<SluiceConfig>
    private let shutdownTrigger = Mutex<(@Sendable () -> Void)?>(nil)
    /// systemd's NOTIFY_SOCKET, when started as Type=notify.
    let notifier: SystemdNotifier?
    /// The state of ``startCheckingAttachments()``.
    let attachmentCheck = Mutex(AttachmentCheck())

    /// Opens the NIC backends and loads the plugins; fails (with a message
    /// naming what) when the state directory or netlink cannot be used.
    public init(configPath: String, config: SluiceConfig) throws {
        self.configPath = configPath
        self.current = Mutex(config)
        var logger = Logger(label: "sluiced")
        logger.logLevel = config.daemon.logLevel
        self.logger = logger
        // systemd's StateDirectory= makes it in production; make it when run by hand.
        do {
            try Directory.create(config.daemon.stateDirectory, mode: 0o750)
        } catch {
            throw DaemonError(description: "cannot create the state directory \(config.daemon.stateDirectory): \(error)")
        }
        do {
            self.nic = try NICController(
                stateDirectory: config.daemon.stateDirectory,
                backend: BackendChoice(rawValue: config.nic.backend.rawValue) ?? .auto, logger: logger)
        } catch {
            throw DaemonError(description: "cannot open the NIC control backends: \(error)")
        }
        do {
            self.notifier = try SystemdNotifier.fromEnvironment()
        } catch {
            logger.warning("not talking to systemd", metadata: ["error": "\(error)"])
            self.notifier = nil
        }
        self.plugins = PluginHost(directory: config.plugins.directory, logger: logger)
        self.pipelines = PipelineManager(nic: nic, plugins: plugins, logger: logger)
        for record in plugins.list() where record.status != .loaded {
            logger.warning("plugin rejected", metadata: [
                "path": "\(record.path)", "reason": "\(record.reason ?? "")",
            ])
        }
        self.server = ControlServer(
            configuration: ControlServerConfiguration(config.control), registry: registry, logger: logger)
        registerCommands()
        server.setStatisticsProvider { [weak self] in (try? self?.statistics())?.json ?? .null }
    }

    public var config: SluiceConfig { current.withLock { $0 } }

    /// Runs until SIGTERM, SIGINT or the `shutdown` command.
    public func run() async throws {
        let control = ControlService(server: server)
        let reloader = ReloadOnSIGHUP(daemon: self)
        // First: a taken port ends the start before any NIC is touched.
        let metrics = try await metricsServices()
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: control, successTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: reloader),
                // Late in the list, so among the first to hear of a graceful shutdown.
                .init(service: NotifyStoppingOnShutdown(daemon: self)),
            ] + metrics,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        shutdownTrigger.withLock { trigger in
            trigger = { Task { await group.triggerGracefulShutdown() } }
        }
        logger.info("sluiced starting", metadata: [
            "version": "\(ControlProtocol.sluiceVersion)", "config": "\(configPath)", "pid": "\(getpid())",
        ])
        // What this kernel offers decides how pipelines bind and attach; said once, before they start.
        try await reportKernelFeatures()
        // Before any client can change a NIC: undo what a crashed run left.
        let nic = self.nic
        let recovery = try await blocking { nic.recoverAtStartup() }
        logRecovery(recovery)
        // Outside changes to values Sluice set are logged and shown in
        // nic.show; Sluice runs without the watch if netlink refuses it.
        do {
            try nic.startMonitoring { [weak self] event, _ in self?.pipelineMayBeStale(after: event) }
        } catch {
            logger.warning("not watching for outside NIC changes", metadata: ["error": "\(error)"])
        }
        startCheckingAttachments()
        await autostartPipelines()
        // Ready once clients can connect; the pipelines are up (or logged) by then.
        server.onListening { [weak self] in self?.notifyReady() }
        let logger = self.logger
        let watchdog = Task { [notifier] in await notifier?.runWatchdog(logger: logger) }
        defer { watchdog.cancel() }
        do {
            try await group.run()
        } catch {
            notifier?.notify("STOPPING=1", logger: logger)
            await stopPipelinesAndRestoreNICs()
            throw error
        }
        await stopPipelinesAndRestoreNICs()
        logger.info("sluiced stopped")
    }

    private func logRecovery(_ report: RecoveryReport) {
        switch report.kind {
        case .nothing:
            logger.debug("NIC journal: nothing to recover")
        case .restored:
            logger.notice("restored NIC changes left by a previous run that did not stop cleanly", metadata: [
                "report": "\(report.message)",
                "outcomes": "\(report.restore?.outcomes.map { "\($0.interface): \($0.status.rawValue): \($0.message)" } ?? [])",
            ])
        default:
            logger.warning("NIC journal", metadata: ["report": "\(report.message)"])
        }
    }

    /// `pipeline.autostart`: a pipeline that cannot start is logged and the
    /// daemon stays up, so that the operator can fix it and `pipeline.start`.
    private func autostartPipelines() async {
        let config = self.config
        guard config.pipeline.autostart, !config.interfaces.isEmpty else { return }
        let pipelines = self.pipelines
        do {
            _ = try await blocking { try pipelines.start(config) }
        } catch {
            logger.error("pipeline did not start; fix the cause and run `sluicectl pipeline start`", metadata: [
                "error": "\(error)",
            ])
        }
    }

    /// Pipelines stop first (their XDP program and sockets go), then every
    /// NIC change is restored.
    private func stopPipelinesAndRestoreNICs() async {
        let pipelines = self.pipelines
        stopCheckingAttachments()
        _ = try? await blocking { try pipelines.stop() }
        nic.stopMonitoring()
        await restoreNICs()
    }

    /// Graceful stop: every NIC change Sluice made goes back, unless someone
    /// changed the value since (then it is reported and left alone).
    private func restoreNICs() async {
        let nic = self.nic
        guard !nic.journalEntries.isEmpty else { return }
        guard let report = try? await blocking({ nic.restoreAll() }) else {
            logger.error("NIC restore could not run; the journal stays for the next start")
            return
        }
        // The controller logs each outcome; this is the summary line.
        logger.notice("NIC changes restored on stop", metadata: [
            "restored": "\(report.with(.restored).count)",
            "changed_outside": "\(report.with(.changedOutside).count)",
            "interface_gone": "\(report.with(.interfaceGone).count)",
            "failed": "\(report.failures.count)",
        ])
    }

    private func notifyReady() {
        let running = pipelines.reports().filter(\.running).count
        notifier?.notify(
            "READY=1",
            "STATUS=serving on \(server.configuration.socketPath), \(running) pipeline\(running == 1 ? "" : "s") running",
            logger: logger)
    }

    /// Starts a graceful shutdown, as SIGTERM would.
    func requestShutdown() {
        shutdownTrigger.withLock { $0 }?()
    }

    /// Re-reads the config file off the event loops. A broken file is
    /// rejected with the old configuration kept in force.
    @discardableResult
    func reload() async throws -> ReloadOutcome {
        let path = configPath
        let loaded: SluiceConfig
        do {
            loaded = try await NIOThreadPool.singleton.runIfActive { try SluiceConfig.load(path: path) }
        } catch {
            logger.error("config reload rejected; keeping the running configuration", metadata: [
                "config": "\(path)", "errors": "\(error)",
            ])
            throw ControlError.invalidArgument("config reload rejected, running configuration kept:\n\(error)")
        }
        let outcome = current.withLock { running -> ReloadOutcome in
            let outcome = ReloadOutcome(old: running, new: loaded)
            running = loaded
            return outcome
        }
        logger.notice("configuration reloaded", metadata: [
            "config": "\(path)",
            "changed": "\(outcome.changed.joined(separator: ","))",
            "needs_restart": "\(outcome.needsRestart.joined(separator: ","))",
        ])
        return outcome
    }

    var uptimeSeconds: Double {
        let elapsed = ContinuousClock.now - startedAt
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// How old a `stats.get` reply may be. Building one costs about a
    /// millisecond of CPU (Codable encoding of every socket and module), so
    /// 32 clients at 1,000 requests/s would take a CPU away from the data
    /// path; sharing one snapshot per interval bounds that to a few percent.
    static let statisticsMaximumAge: Duration = .milliseconds(20)
    private let statisticsCache = Mutex<(at: ContinuousClock.Instant, generation: Int, value: Encoded<Methods.StatsGet.Response>)?>(nil)

    /// Counters for `stats.get` and the `stats.subscribe` stream: at most
    /// ``statisticsMaximumAge`` old, and never older than the last pipeline
    /// start or stop. Cached encoded, so that a cache hit costs no encoding.
    func statistics() throws -> Encoded<Methods.StatsGet.Response> {
        let now = ContinuousClock.now
        let generation = pipelines.generation
        if let cached = statisticsCache.withLock({ $0 }),
           cached.generation == generation, now - cached.at < Self.statisticsMaximumAge {
            return cached.value
        }
        let value = try Encoded(Methods.StatsGet.Response(
            uptimeSeconds: uptimeSeconds.rounded(toPlaces: 3), control: server.statistics, pipelines: pipelines.reports()))
        statisticsCache.withLock { $0 = (now, generation, value) }
        return value
    }
}

public struct DaemonError: Error, CustomStringConvertible {
    public var description: String
}

/// What a reload changed, and which of the changes wait for a restart.
typealias ReloadOutcome = Methods.ConfigReload.Response

extension ReloadOutcome {
    init(old: SluiceConfig, new: SluiceConfig) {
        self.init()
        func note(_ key: String, _ differs: Bool, live: Bool) {
            guard differs else { return }
            changed.append(key)
            if !live { needsRestart.append(key) }
        }
        // The socket is bound once; its settings apply on the next start.
        note("daemon.state_dir", old.daemon.stateDirectory != new.daemon.stateDirectory, live: false)
        note("daemon.log_level", old.daemon.logLevel != new.daemon.logLevel, live: false)
        note("control", old.control != new.control, live: false)
        note("nic", old.nic != new.nic, live: false)
        note("plugins", old.plugins != new.plugins, live: false)
        note("metrics", old.metrics != new.metrics, live: false)
        // Forced plugins apply to the next command; the pipeline's settings
        // to the next pipeline.start.
        note("interface", old.interfaces != new.interfaces, live: true)
        note("pipeline", old.pipeline != new.pipeline, live: true)
    }
}

extension ControlServerConfiguration {
    init(_ control: SluiceConfig.Control) {
        self.init(
            socketPath: control.socketPath,
            socketMode: control.socketMode,
            socketGroup: control.socketGroup.gid,
            adminGroup: control.adminGroup.gid,
            maxClients: control.maxClients,
            idleTimeout: .seconds(control.idleTimeoutSeconds))
    }
}

struct ControlService: Service {
    let server: ControlServer

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await server.run()
        }
    }
}

/// Tells systemd STOPPING=1 as soon as a graceful shutdown starts (SIGTERM,
/// SIGINT or `shutdown`), before pipelines stop and NICs are restored.
struct NotifyStoppingOnShutdown: Service {
    let daemon: Daemon

    func run() async throws {
        // Waits even without systemd: a service that returned early would
        // end the group. Cancelled (the group failed), run() reports the stop.
        guard (try? await gracefulShutdown()) != nil, let notifier = daemon.notifier else { return }
        notifier.notify("STOPPING=1", "STATUS=stopping: pipelines stop, NIC changes are restored", logger: daemon.logger)
    }
}

struct ReloadOnSIGHUP: Service {
    let daemon: Daemon

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() {
            daemon.logger.info("SIGHUP: reloading configuration")
            _ = try? await daemon.reload()
        }
    }
}

extension Double {
    func rounded(toPlaces places: Int) -> Double {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        return (self * scale).rounded() / scale
    }
}
