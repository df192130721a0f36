import SluiceControl

/// `pipeline.start|stop|status`.
extension Daemon {
    func registerPipelineCommands() {
        let pipelines = self.pipelines
        registry.register(CommandSpec(
            "pipeline.start", level: .admin,
            "Start the receive pipeline of every [[interface]] (or one) with the current configuration",
            arguments: [ArgumentSpec("iface", .string, "only this interface")]
        )) { [weak self] _, arguments in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let only = arguments.has("iface") ? try Self.interfaceName(arguments) : nil
            let config = self.config
            let reports = try await blocking { try pipelines.start(config, only: only) }
            return try WireEncoding.encode(["pipelines": reports])
        }
        register("pipeline.stop", .admin, "Stop the receive pipelines (or one); their final counters stay in stats",
                 [ArgumentSpec("iface", .string, "only this interface")]) { arguments in
            let only = arguments.has("iface") ? try Self.interfaceName(arguments) : nil
            let reports = try await blocking { try pipelines.stop(only: only) }
            return try WireEncoding.encode(["pipelines": reports])
        }
        register("pipeline.status", .read, "Pipelines: plugin, channel → queue mapping, sockets, zero-copy, modules, counters") {
            [weak self] _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let config = self.config.pipeline
            let reports = try await blocking { pipelines.reports() }
            return try WireEncoding.encode(PipelineStatus(
                mode: config.mode.rawValue, autostart: config.autostart,
                modules: config.modules.map(\.kind.rawValue), pipelines: reports))
        }
    }
}

struct PipelineStatus: Encodable {
    var mode: String
    var autostart: Bool
    var modules: [String]
    var pipelines: [PipelineReport]
}
