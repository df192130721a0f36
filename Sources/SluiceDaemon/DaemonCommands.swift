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
        registry.register(Methods.Status.self) { [weak self] _, context in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let config = self.config
            return .init(
                version: ControlProtocol.sluiceVersion, protocol: ControlProtocol.version, pid: getpid(),
                uptimeSeconds: self.uptimeSeconds.rounded(toPlaces: 3), startedAt: self.startedWallClock,
                configFile: self.configPath, socket: config.control.socketPath,
                stateDirectory: config.daemon.stateDirectory, clients: self.server.statistics.clients,
                commandsServed: self.server.statistics.commandsServed,
                metrics: self.metricsEndpoint.address?.description,
                you: .init(uid: context.peer.uid, level: context.peer.level))
        }
        registry.register(Methods.StatsGet.self, encoded: { [weak self] _, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            return try self.statistics()
        })
        registry.register(Methods.ConfigReload.self) { [weak self] _, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            return try await self.reload()
        }
        registry.register(Methods.Shutdown.self) { [weak self] _, context in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            self.logger.notice("shutdown requested over the control socket", metadata: [
                "uid": "\(context.peer.uid)", "pid": "\(context.peer.pid)",
            ])
            context.session.afterReplySent { [weak self] in self?.requestShutdown() }
            return .init(stopping: true)
        }
    }
}
