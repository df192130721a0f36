import SluiceControl

extension DaemonProcess {
    /// The config tables for a daemon running one pipeline on `interface`
    /// with the plugins in `pluginDirectory`: `modules` are
    /// `[[pipeline.modules]]` tables, `interfaceOptions` more keys of the
    /// `[[interface]]` table.
    public static func pipelineConfig(
        pluginDirectory: String, interface: String, mode: String = "pipelined",
        modules: String = "", interfaceOptions: String = ""
    ) -> String {
        """
        [plugins]
        dir = "\(pluginDirectory)"

        [pipeline]
        mode = "\(mode)"
        frame_size = 2048

        \(modules)

        [[interface]]
        name = "\(interface)"
        \(interfaceOptions)
        """
    }

    /// Waits (with a deadline) until stats.get shows the pipeline running.
    public func waitForPipeline() throws {
        try waitUntil("the pipeline to run") {
            try self.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first?["running"] == true
        }
    }
}
