import SluiceControl

/// `pipeline.start|stop|status`.
extension Daemon {
    func registerPipelineCommands() {
        let pipelines = self.pipelines
        registry.register(Methods.PipelineStart.self) { [weak self] request, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let config = self.config
            return .init(pipelines: try await blocking { try pipelines.start(config, only: request.iface?.rawValue) })
        }
        registry.register(Methods.PipelineStop.self) { request, _ in
            .init(pipelines: try await blocking { try pipelines.stop(only: request.iface?.rawValue) })
        }
        registry.register(Methods.PipelineStatus.self) { [weak self] _, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let config = self.config.pipeline
            return .init(
                mode: config.mode.rawValue, autostart: config.autostart, modules: config.modules.map(\.kind.rawValue),
                pipelines: try await blocking { pipelines.reports() }, failedStarts: pipelines.failedStarts())
        }
    }
}
