import SluiceControl

#if canImport(Glibc)
import Glibc
#endif

extension Daemon {
    /// The daemon's own commands; the NIC, plugin and pipeline commands are
    /// registered by their own files beside this one.
    func registerCommands() {
        registerNICCommands()
        registerPluginCommands()
        registerPipelineCommands()
        registerDoctorCommands()
        registry.register(CommandSpec("status", level: .read, "Daemon version, pid, uptime, socket and clients")) {
            [weak self] context, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let config = self.config
            return [
                "version": .string(ControlProtocol.sluiceVersion),
                "protocol": JSONValue(ControlProtocol.version),
                "pid": JSONValue(getpid()),
                "uptime_seconds": .double(self.uptimeSeconds.rounded(toPlaces: 3)),
                "started_at": JSONValue(self.startedWallClock),
                "config_file": .string(self.configPath),
                "socket": .string(config.control.socketPath),
                "state_dir": .string(config.daemon.stateDirectory),
                "clients": JSONValue(self.server.statistics.clients),
                "commands_served": JSONValue(self.server.statistics.commandsServed),
                "metrics": self.metricsEndpoint.address.map { .string($0.description) } ?? .null,
                "you": ["uid": JSONValue(context.peer.uid), "level": .string(context.peer.level.rawValue)],
            ]
        }
        registry.register(CommandSpec("stats.get", level: .read, "Counters: uptime, control socket, pipelines (per socket, per module)")) {
            [weak self] _, _ in
            self?.statistics() ?? .null
        }
        registry.register(CommandSpec(
            "config.reload", level: .admin,
            "Re-read the config file (as SIGHUP); a broken file is rejected and the running config kept")
        ) { [weak self] _, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            return try JSONValue(encoding: try await self.reload())
        }
        registry.register(CommandSpec(
            "shutdown", level: .admin, "Stop the daemon gracefully (as SIGTERM): restores every NIC change")
        ) { [weak self] context, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            self.logger.notice("shutdown requested over the control socket", metadata: [
                "uid": "\(context.peer.uid)", "pid": "\(context.peer.pid)",
            ])
            context.session.afterReplySent { [weak self] in self?.requestShutdown() }
            return ["stopping": true]
        }
    }
}
